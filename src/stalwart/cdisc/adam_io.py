"""Read a foreign trial's CDISC ADaM datasets (SAS XPT or CSV) into checked tables.

A folder holds ``adsl`` and any of ``adtte``, ``adlb`` and other BDS datasets, each as
``NAME.xpt`` (SAS transport v5/v8, read by pyreadstat) or ``NAME.csv`` (one header row, CDISC
variable names). File names are matched case-insensitively; a dataset present in both forms is
refused rather than guessed. Every dataset is checked on entry for the variables the analysis
needs, and every failure (an unreadable file, a missing variable, an option naming an arm or a
flag the data does not hold) is a :class:`~stalwart.errors.DatasetError` that says what to fix.

Choices (documented here because the issue left them open):

* **Which BDS datasets.** Every dataset other than ADSL, ADTTE and ADAE that has ``PARAMCD``,
  ``AVAL`` and ``AVISIT`` is analysed as a BDS (so ADLB and e.g. ADQSCIBC); ``bds=`` names the
  ones to use instead, and then a named one that is absent or lacks those variables is an error.
* **Arm.** The arm comes from ADSL by ``USUBJID``, never from the copy a BDS carries (it may hold
  TRTA or a different coding). The variable is ``arm_var``; when not given, the first of
  ``TRT01P``, ``ARM``, ``ARMCD`` that ADSL has. Subjects with a blank arm (screen failures) are
  left out, with a note.
* **Control.** ``control`` when given (an arm, or its ARMCD, TRT01P, ARM or TRT01PN); else the
  single arm whose name says placebo/control, the packaged protocol's control arm (by ARMCD)
  when STUDYID is its study, the lowest TRT01PN, or the first arm in sort order, with a note
  (:mod:`~stalwart.cdisc.adam_arms`); two arms that both say placebo/control is an error.
* **Time to event.** ADTTE must have records; every AVAL finite and non-negative, CNSR 0 or 1.
  A record of an analysed subject without AVAL or CNSR is an error naming the subject: dropping
  a randomized subject silently would change the analysis population.
* **Population.** ``population`` names an ADSL flag (SAFFL, ITTFL, EFFFL, ...); only subjects with
  value ``"Y"`` are kept, in ADSL and so in every dataset joined to it.
* **Dates.** XPT numeric variables with a SAS date format come back as ``datetime.date``; in CSV a
  variable whose name ends in ``DT`` is parsed as an ISO 8601 date (``2014-01-02``) or a SAS
  ``DATE9`` date (``02JAN2014``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from stalwart.cdisc.adam_arms import arm_aliases, choose_control
from stalwart.cdisc.adam_files import objects, read_csv_frame, read_xpt_frame, sha256_of
from stalwart.errors import DatasetError

__all__ = [
    "ARM",
    "AdamDataset",
    "AdamInputs",
    "choose_control",
    "find_datasets",
    "load_adam",
    "read_dataset",
    "require_variables",
]

ARM = "_ARM"
"""Column added to every dataset: the subject's arm, joined from ADSL by USUBJID."""

_ARM_FALLBACK = ("TRT01P", "ARM", "ARMCD")
_NOT_BDS = frozenset({"ADSL", "ADTTE", "ADAE"})
_BDS_VARIABLES = ("USUBJID", "PARAMCD", "AVAL", "AVISIT")
_TTE_VARIABLES = ("USUBJID", "PARAMCD", "AVAL", "CNSR")
_EXTENSIONS = (".xpt", ".csv")


@dataclass(frozen=True)
class AdamDataset:
    """One ADaM dataset as read: its table, variable labels and where it came from.

    Attributes
    ----------
    name : str
        Dataset name in upper case (the file name without extension), e.g. ``"ADTTE"``.
    path : pathlib.Path
        The file read.
    frame : pandas.DataFrame
        The records; character variables as ``str`` (missing is ``""``), numbers as float,
        dates as ``datetime.date`` (missing is None).
    labels : Mapping[str, str]
        Variable label by variable name (the XPT labels; empty for CSV).
    label : str
        Dataset label ("" when the file has none).
    sha256 : str
        SHA-256 of the file's bytes, for provenance.
    """

    name: str
    path: Path
    frame: pd.DataFrame
    labels: Mapping[str, str] = field(default_factory=dict)
    label: str = ""
    sha256: str = ""


@dataclass(frozen=True)
class AdamInputs:
    """The checked inputs of a foreign analysis, arms joined from ADSL.

    Attributes
    ----------
    adsl : AdamDataset
        ADSL restricted to the population and to subjects with an arm; column :data:`ARM`.
    adtte : AdamDataset or None
        ADTTE restricted to those subjects, with :data:`ARM`.
    bds : tuple of AdamDataset
        The BDS datasets analysed (ADLB, questionnaires, ...), restricted likewise, with
        :data:`ARM`.
    arm_variable : str
        The ADSL variable the arms come from.
    arms : tuple of str
        Arms in sort order.
    control : str
        The control arm.
    population : str or None
        The ADSL flag the subjects were selected by.
    notes : tuple of str
        What was chosen or dropped on the way, in words.
    files : tuple of AdamDataset
        Every dataset file read, as read (unfiltered), for provenance.
    arm_codes : Mapping[str, str]
        Each arm's ARMCD, when ADSL has an ARMCD that maps one-to-one onto the arms.
    """

    adsl: AdamDataset
    adtte: AdamDataset | None
    bds: tuple[AdamDataset, ...]
    arm_variable: str
    arms: tuple[str, ...]
    control: str
    population: str | None
    notes: tuple[str, ...]
    files: tuple[AdamDataset, ...]
    arm_codes: Mapping[str, str] = field(default_factory=dict)


def find_datasets(folder: Path) -> dict[str, Path]:
    """Dataset files of ``folder`` by upper-case name: ``*.xpt`` and ``*.csv``, any case.

    Raises
    ------
    DatasetError
        The folder does not exist, or a dataset is there twice (``adsl.xpt`` and ``ADSL.csv``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(
            f"ADaM folder {folder} does not exist or is not a folder: give --adam the folder "
            "that holds adsl.xpt (or adsl.csv) and adtte/adlb"
        )
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in _EXTENSIONS:
            continue
        name = path.stem.upper()
        if name in found:
            raise DatasetError(
                f"{name} is in {folder} twice ({found[name].name} and {path.name}): "
                "keep one file per dataset",
                dataset=name,
            )
        found[name] = path
    return found


def read_dataset(path: Path, name: str | None = None) -> AdamDataset:
    """Read one ADaM dataset from an XPT or CSV file (by extension).

    Variable names come back in upper case; pyreadstat's errors become
    :class:`~stalwart.errors.DatasetError` naming the file.
    """
    path = Path(path)
    label = (name or path.stem).upper()
    suffix = path.suffix.lower()
    if suffix not in _EXTENSIONS:
        raise DatasetError(
            f"{label}: {path.name} is neither .xpt nor .csv; give SAS transport or CSV files",
            dataset=label,
        )
    if suffix == ".xpt":
        frame, labels, file_label = read_xpt_frame(path, label)
    else:
        frame, labels, file_label = read_csv_frame(path, label), {}, ""
    frame.columns = [str(c).upper() for c in frame.columns]
    labels = {k.upper(): v for k, v in labels.items()}
    return AdamDataset(label, path, frame, labels, file_label, sha256_of(path))


def require_variables(dataset: AdamDataset, variables: Sequence[str], why: str) -> None:
    """Raise DatasetError naming the first of ``variables`` that ``dataset`` lacks."""
    for variable in variables:
        if variable not in dataset.frame.columns:
            raise DatasetError(
                f"{dataset.name} has no {variable}: {why}; add {variable} to "
                f"{dataset.path.name} (variables present: {', '.join(dataset.frame.columns)})",
                dataset=dataset.name,
                variable=variable,
            )


def _arm_variable(adsl: AdamDataset, arm_var: str | None) -> str:
    columns = adsl.frame.columns
    if arm_var is not None:
        if arm_var.upper() not in columns:
            present = [c for c in columns if re.match(r"^(TRT\d\d[PA]|ARM|ARMCD|ACTARM\w*)$", c)]
            raise DatasetError(
                f"ADSL has no {arm_var.upper()}, the --arm-var given; arm variables present: "
                f"{', '.join(present) or 'none'}",
                dataset="ADSL",
                variable=arm_var.upper(),
            )
        return arm_var.upper()
    for candidate in _ARM_FALLBACK:
        if candidate in columns:
            return candidate
    raise DatasetError(
        "ADSL has no TRT01P, ARM or ARMCD: name the variable holding each subject's arm with "
        "--arm-var",
        dataset="ADSL",
        variable="TRT01P",
    )


def _stripped_text(values: pd.Series) -> pd.Series:
    """``values.astype(str).str.strip()``, at the speed of a loop over the strings."""
    text = values.astype(str)
    strings = text.to_numpy(object)
    if not len(strings) or infer_dtype(strings, skipna=False) != "string":
        return text.str.strip()
    return pd.Series(objects([v.strip() for v in strings]), index=text.index, dtype=text.dtype)


def _arm_labels(values: pd.Series) -> pd.Series:
    """Arm values as text (a numeric arm coding 1.0 reads "1")."""
    if values.dtype.kind == "f":
        return values.map(lambda v: "" if pd.isna(v) else f"{v:g}")
    return _stripped_text(values)


def _population(adsl: pd.DataFrame, population: str | None) -> tuple[np.ndarray, str | None]:
    """Which ADSL records the population flag keeps (all without one), and a note."""
    if population is None:
        return np.ones(len(adsl), dtype=bool), None
    flag = population.upper()
    if flag not in adsl.columns:
        flags = [c for c in adsl.columns if c.endswith("FL")]
        raise DatasetError(
            f"ADSL has no population flag {flag}; flags present: {', '.join(flags) or 'none'}",
            dataset="ADSL",
            variable=flag,
        )
    codes, uniques = pd.factorize(adsl[flag].astype(str).to_numpy(object))
    # per distinct value; the last entry is what a missing value (code -1) takes
    kept = np.array([*(str(v).strip().upper() == "Y" for v in uniques), False])[codes]
    return kept, f"population {flag} = 'Y': {int(kept.sum())} of {len(adsl)} ADSL subjects"


@dataclass(frozen=True)
class _Subjects:
    """ADSL's subjects for the join: every USUBJID (stripped, unique) and, by its position,
    the row of the analysed ADSL that holds it (-1: left out by the population or arm)."""

    ids: pd.Index
    row: np.ndarray


def _subjects(
    adsl: AdamDataset, arm_var: str | None, population: str | None
) -> tuple[AdamDataset, str, list[str], _Subjects]:
    require_variables(adsl, ("USUBJID",), "every analysis joins the arm from ADSL by USUBJID")
    variable = _arm_variable(adsl, arm_var)
    frame = adsl.frame.copy()
    frame["USUBJID"] = _stripped_text(frame["USUBJID"])
    ids = pd.Index(frame["USUBJID"])
    if not ids.is_unique:
        duplicated = frame["USUBJID"][frame["USUBJID"].duplicated()]
        raise DatasetError(
            f"ADSL has {len(duplicated)} repeated USUBJID (first {duplicated.iloc[0]!r}): ADSL "
            "holds one record per subject",
            dataset="ADSL",
            variable="USUBJID",
        )
    notes: list[str] = []
    kept, note = _population(frame, population)
    if note:
        notes.append(note)
    frame[ARM] = _arm_labels(frame[variable])
    blank = kept & (frame[ARM] == "").to_numpy(bool)
    if blank.any():
        notes.append(f"{int(blank.sum())} ADSL subjects with a blank {variable} left out")
        kept &= ~blank
    frame = frame[kept]
    row = np.full(len(kept), -1, dtype=np.intp)
    row[kept] = np.arange(int(kept.sum()))
    dataset = AdamDataset(adsl.name, adsl.path, frame, adsl.labels, adsl.label, adsl.sha256)
    return dataset, variable, notes, _Subjects(ids, row)


def _join_arm(dataset: AdamDataset, adsl: pd.DataFrame, subjects: _Subjects) -> AdamDataset:
    """Replace whatever arm ``dataset`` carries by ADSL's, keeping the analysed subjects only.

    The join is by integer position: each record's USUBJID is looked up once in ADSL's; records
    keep their order, as an inner merge on USUBJID keeps the left's.
    """
    frame = dataset.frame.drop(columns=[ARM], errors="ignore")
    usubjid = _stripped_text(frame["USUBJID"])
    position = subjects.ids.get_indexer(usubjid)
    unknown = position < 0
    if unknown.any():
        strangers = sorted(set(usubjid[unknown]))
        raise DatasetError(
            f"{dataset.name} has {len(strangers)} USUBJID absent from ADSL (first "
            f"{strangers[0]!r}): ADSL must hold every subject; check both come from one study",
            dataset=dataset.name,
            variable="USUBJID",
        )
    row = subjects.row[position]
    kept = row >= 0
    frame = frame.assign(USUBJID=usubjid)[kept].reset_index(drop=True)
    frame[ARM] = adsl[ARM].take(row[kept]).reset_index(drop=True)
    return AdamDataset(
        dataset.name, dataset.path, frame, dataset.labels, dataset.label, dataset.sha256
    )


def _check_tte(adtte: AdamDataset) -> None:
    require_variables(adtte, _TTE_VARIABLES, "a time-to-event analysis needs it")
    frame = adtte.frame
    if frame.empty:
        raise DatasetError(
            f"ADTTE ({adtte.path.name}) has variables but no records: export the time-to-event "
            "records, or remove the file to analyse the BDS datasets alone",
            dataset="ADTTE",
        )
    for variable in ("AVAL", "CNSR"):
        if frame[variable].dtype.kind not in "fi":
            raise DatasetError(
                f"ADTTE.{variable} is not numeric; {variable} must hold numbers",
                dataset="ADTTE",
                variable=variable,
            )
    bad = frame["CNSR"].dropna()
    bad = bad[~bad.isin([0, 1])]
    if len(bad):
        raise DatasetError(
            f"ADTTE.CNSR holds {bad.iloc[0]:g}: CNSR is 0 for an event and 1 for a censored time "
            "(ADaM); recode other censoring codes to 1",
            dataset="ADTTE",
            variable="CNSR",
        )
    infinite = frame[np.isinf(frame["AVAL"].to_numpy(float))]
    if len(infinite):
        row = infinite.iloc[0]
        raise DatasetError(
            f"ADTTE.AVAL is {row['AVAL']} for USUBJID {row['USUBJID']} (PARAMCD "
            f"{row['PARAMCD']}): AVAL must be a finite time; write the time of the event or of "
            "censoring",
            dataset="ADTTE",
            variable="AVAL",
        )
    if (frame["AVAL"] < 0).any():
        raise DatasetError(
            "ADTTE.AVAL has negative times: AVAL is the time from the origin (STARTDT)",
            dataset="ADTTE",
            variable="AVAL",
        )
    repeated = frame.duplicated(["USUBJID", "PARAMCD"])
    if repeated.any():
        row = frame[repeated].iloc[0]
        raise DatasetError(
            f"ADTTE has two records of PARAMCD {row['PARAMCD']} for USUBJID {row['USUBJID']}: "
            "ADTTE holds one record per subject and parameter",
            dataset="ADTTE",
        )


def _require_complete(adtte: AdamDataset) -> None:
    """Refuse a record of an analysed subject without AVAL or CNSR (it would drop the subject)."""
    for variable in ("AVAL", "CNSR"):
        missing = adtte.frame[adtte.frame[variable].isna()]
        if len(missing):
            row = missing.iloc[0]
            raise DatasetError(
                f"ADTTE.{variable} is missing for {len(missing)} record(s) of analysed subjects "
                f"(first USUBJID {row['USUBJID']}, PARAMCD {row['PARAMCD']}): every randomized "
                f"subject needs a time (AVAL) and a censoring flag (CNSR; 1 = censored at the "
                f"last contact), or leave the subject out of the population with --population",
                dataset="ADTTE",
                variable=variable,
            )


def _pick_bds(
    found: Mapping[str, Path], read: dict[str, AdamDataset], bds: Sequence[str] | None
) -> list[AdamDataset]:
    chosen: list[AdamDataset] = []
    if bds is not None:
        for raw in bds:
            name = raw.strip().upper()
            if name not in found:
                raise DatasetError(
                    f"--bds {raw}: no {raw.lower()}.xpt or .csv in the folder; datasets present: "
                    f"{', '.join(sorted(found))}",
                    dataset=name,
                )
            dataset = read.setdefault(name, read_dataset(found[name], name))
            require_variables(dataset, _BDS_VARIABLES, "a BDS analysis by visit needs it")
            chosen.append(dataset)
        return chosen
    for name, path in sorted(found.items()):
        if name in _NOT_BDS:
            continue
        dataset = read.setdefault(name, read_dataset(path, name))
        if all(v in dataset.frame.columns for v in _BDS_VARIABLES):
            chosen.append(dataset)
    return chosen


def load_adam(
    folder: Path,
    *,
    arm_var: str | None = None,
    control: str | None = None,
    population: str | None = None,
    bds: Sequence[str] | None = None,
) -> AdamInputs:
    """Read and check a folder of ADaM datasets; join each subject's arm from ADSL.

    Parameters
    ----------
    folder : pathlib.Path
        Folder with ``adsl`` and ``adtte`` and/or BDS datasets, as XPT or CSV.
    arm_var : str, optional
        ADSL variable of the arm (default: TRT01P, else ARM, else ARMCD).
    control : str, optional
        The control arm, by label or by ARMCD/TRT01P/ARM/TRT01PN (default: see
        :func:`~stalwart.cdisc.adam_arms.choose_control`).
    population : str, optional
        ADSL flag selecting the subjects (value ``"Y"``), e.g. ``"SAFFL"``.
    bds : sequence of str, optional
        BDS datasets to analyse by name (default: every ad* with PARAMCD, AVAL and AVISIT).

    Raises
    ------
    DatasetError
        Anything missing or unusable, with what to fix.
    """
    found = find_datasets(folder)
    if "ADSL" not in found:
        raise DatasetError(
            f"no ADSL in {folder}: add adsl.xpt (or adsl.csv), the one-record-per-subject "
            f"dataset the arms come from (files found: {', '.join(sorted(found)) or 'none'})",
            dataset="ADSL",
        )
    read: dict[str, AdamDataset] = {"ADSL": read_dataset(found["ADSL"], "ADSL")}
    adsl, variable, notes, subjects = _subjects(read["ADSL"], arm_var, population)
    arms = sorted(set(adsl.frame[ARM]))
    aliases = arm_aliases(adsl.frame, ARM)
    studyid = ""
    if "STUDYID" in adsl.frame.columns and len(adsl.frame):
        studyid = str(adsl.frame["STUDYID"].iloc[0]).strip()
    chosen_control, note = choose_control(arms, control, aliases, studyid)
    if note:
        notes.append(note)
    adtte = None
    if "ADTTE" in found:
        raw_tte = read.setdefault("ADTTE", read_dataset(found["ADTTE"], "ADTTE"))
        _check_tte(raw_tte)
        adtte = _join_arm(raw_tte, adsl.frame, subjects)
        _require_complete(adtte)
    bds_sets = []
    for dataset in _pick_bds(found, read, bds):
        if dataset.frame["AVAL"].dtype.kind not in "fi":
            raise DatasetError(
                f"{dataset.name}.AVAL is not numeric; analyse character results (AVALC) "
                f"elsewhere, or leave {dataset.name} out with --bds",
                dataset=dataset.name,
                variable="AVAL",
            )
        bds_sets.append(_join_arm(dataset, adsl.frame, subjects))
    if adtte is None and not bds_sets:
        raise DatasetError(
            f"{folder} has ADSL but no ADTTE and no BDS dataset (PARAMCD, AVAL, AVISIT): add "
            "adtte.xpt or adlb.xpt",
            dataset="ADTTE",
        )
    files = tuple(read[name] for name in sorted(read))
    return AdamInputs(
        adsl,
        adtte,
        tuple(bds_sets),
        variable,
        tuple(arms),
        chosen_control,
        None if population is None else population.upper(),
        tuple(notes),
        files,
        {label: code for code, label in aliases.get("ARMCD", {}).items()},
    )
