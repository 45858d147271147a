"""Analyse a foreign trial from its CDISC ADaM datasets with the same kernels as the plan.

``stalwart analyze --adam DIR`` runs here. The method choices mirror ``analysis.plan`` so that
our own ADaM export, fed back in, gives the numbers of the analysis from the store:

* ADTTE, per PARAMCD and per arm against the control (the two arms' records only): Cox
  proportional hazards with Efron ties, Wald CI and p, likelihood-ratio and score p
  (R ``coxph(Surv(AVAL, 1 - CNSR) ~ arm, ties = "efron")``); the log-rank test (R ``survdiff``);
  and a k-group log-rank across all arms. Kaplan-Meier per arm with the median and its log-log
  CI (R ``survfit(..., conf.type = "log-log")`` then ``quantile``). CNSR is ADaM's: 1 censored,
  0 event. No events give a record with a note and no estimate, as in the plan; no events on one
  side give no hazard ratio (it is infinite) but the likelihood-ratio and score p-values, which
  remain valid. With three or more arms every comparison is a two-arm fit (a note says so).
* Each BDS dataset (ADLB, questionnaires), per PARAMCD and analysis visit (records with
  ANL01FL = "Y" where the variable exists; baseline records, ABLFL = "Y", are the covariate and
  not an outcome), per arm against the control: when BASE exists, ANCOVA ``AVAL ~ arm + BASE``
  over all arms (R ``lm``) and Welch's t-test (R ``t.test``) on complete cases, as the plan's two
  methods; without BASE, Welch's t-test alone. A comparison the data cannot support (fewer than
  two values on a side) gives a record with a note.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pandas as pd

from stalwart.analysis.kernels.ancova import ancova
from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.km import kaplan_meier
from stalwart.analysis.kernels.logrank import logrank_test
from stalwart.analysis.kernels.ttest import welch_ttest
from stalwart.cdisc.adam_io import ARM, AdamDataset, AdamInputs, load_adam
from stalwart.errors import AnalysisError, ConfigurationError, DatasetError
from stalwart.jsonable import finite_or_none

__all__ = [
    "ContinuousComparison",
    "ForeignResults",
    "KmSummary",
    "LogrankOverall",
    "TteComparison",
    "analyze_adam",
    "analyze_inputs",
    "run_adam_analysis",
]

_R = TypeVar("_R", "TteComparison", "LogrankOverall", "KmSummary", "ContinuousComparison")


@dataclass(frozen=True)
class TteComparison:
    """One arm against the control on one ADTTE parameter, by one method.

    ``method`` is ``"cox_efron"`` (hazard ratio with Wald CI and p; ``lr_p_value`` and
    ``score_p_value``) or ``"logrank"`` (``p_value`` and ``chi2``). ``note`` says why the
    estimates are empty when they are.
    """

    parameter: str
    arm: str
    control: str
    method: str
    n: Mapping[str, int]
    events: Mapping[str, int]
    hazard_ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None
    lr_p_value: float | None = None
    score_p_value: float | None = None
    chi2: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class LogrankOverall:
    """The k-group log-rank test across every arm with records of one ADTTE parameter."""

    parameter: str
    arms: tuple[str, ...]
    n: Mapping[str, int]
    events: Mapping[str, int]
    chi2: float | None = None
    df: int | None = None
    p_value: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class KmSummary:
    """Kaplan-Meier median (log-log CI) of one arm on one ADTTE parameter."""

    parameter: str
    arm: str
    n: int
    events: int
    median: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class ContinuousComparison:
    """One arm against the control on one BDS parameter at one analysis visit, by one method.

    ``method`` is ``"ancova"`` (``AVAL ~ arm + BASE``, all arms in the model; ``adjusted_mean``
    holds the two LS means) or ``"ttest"`` (Welch). ``n`` and ``mean`` are per side, of the
    records the method used.
    """

    dataset: str
    parameter: str
    visit: str
    visitnum: float | None
    arm: str
    control: str
    method: str
    n: Mapping[str, int]
    mean: Mapping[str, float | None]
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    se: float | None = None
    df: float | None = None
    adjusted_mean: Mapping[str, float | None] | None = None
    test: str | None = None
    note: str | None = None


@dataclass(frozen=True)
class ForeignResults:
    """Everything ``stalwart analyze --adam`` found; ``to_dict()`` is the body of results.json.

    ``arm_codes`` gives each arm's ARMCD when ADSL has one (arms are keyed by ``arm_variable``).
    """

    study: str
    arm_variable: str
    arms: tuple[str, ...]
    control: str
    population: str | None
    randomized: Mapping[str, int]
    time_to_event: tuple[TteComparison, ...]
    logrank_overall: tuple[LogrankOverall, ...]
    km: tuple[KmSummary, ...]
    continuous: tuple[ContinuousComparison, ...]
    notes: tuple[str, ...]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    arm_codes: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: tuples as lists, the per-arm counts under ``randomized``."""
        body: dict[str, Any] = _listed(asdict(self))
        body["randomized"] = {"total": sum(self.randomized.values()), "by_arm": body["randomized"]}
        return body


def _listed(value: Any) -> Any:
    """Tuples (and tuples inside dicts and lists) as lists, as JSON reads them back."""
    if isinstance(value, dict):
        return {k: _listed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_listed(v) for v in value]
    return value


# ---------------------------------------------------------------- time to event


@dataclass(frozen=True)
class _TteRows:
    """One ADTTE parameter's records as arrays, derived once: time, event, arm as an integer.

    ``arm`` indexes ``arms`` (sorted as the analysis sorts them), so that selecting an arm
    compares integers, and integer codes passed as the log-rank's groups sort as the labels do.
    """

    time: npt.NDArray[np.float64]
    event: npt.NDArray[np.bool_]
    arm: npt.NDArray[np.intp]
    arms: tuple[str, ...]
    """Every record's arm is one of ``arms`` (ADTTE's arm is joined from ADSL's arms)."""

    @classmethod
    def of(cls, rows: pd.DataFrame, arms: Sequence[str]) -> _TteRows:
        codes = pd.Categorical(rows[ARM], categories=list(arms)).codes.astype(np.intp)
        return cls(
            rows["AVAL"].to_numpy(float), rows["CNSR"].to_numpy(float) == 0, codes, tuple(arms)
        )

    def code(self, arm: str) -> int:
        return self.arms.index(arm)


def _counts(
    rows: _TteRows, mask: npt.NDArray[np.bool_] | None, arms: Sequence[str]
) -> tuple[dict[str, int], dict[str, int]]:
    arm = rows.arm if mask is None else rows.arm[mask]
    event = rows.event if mask is None else rows.event[mask]
    n_all = np.bincount(arm, minlength=len(rows.arms))
    d_all = np.bincount(arm, weights=event, minlength=len(rows.arms))
    n = {a: int(n_all[rows.code(a)]) for a in arms}
    events = {a: int(d_all[rows.code(a)]) for a in arms}
    return n, events


def _compare_tte(
    parameter: str, rows: _TteRows, arm: str, control: str, method: str, alpha: float
) -> TteComparison:
    treated, controls = rows.code(arm), rows.code(control)
    mask = (rows.arm == treated) | (rows.arm == controls)
    n, events = _counts(rows, mask, [arm, control])
    base = TteComparison(parameter, arm, control, method, n, events)
    empty = [a for a in (arm, control) if n[a] == 0]
    if empty:
        return _with(base, note=f"{empty[0]} has no records of {parameter}: not estimable")
    if events[arm] + events[control] == 0:
        return _with(base, note=f"no events in {arm} or {control}: not estimable")
    time = rows.time[mask]
    event = rows.event[mask].astype(float)
    is_treated = (rows.arm[mask] == treated).astype(float)
    if method == "logrank":
        lr = logrank_test(time, event, is_treated)
        return _with(base, p_value=finite_or_none(lr.p_value), chi2=finite_or_none(lr.chi2))
    try:
        cox = cox_ph(time, event, is_treated.reshape(-1, 1), ties="efron", alpha=alpha)
    except AnalysisError as exc:
        return _with(base, test="Wald", note=f"Cox model not estimable: {exc}")
    if min(events[arm], events[control]) == 0:
        # monotone likelihood: no finite hazard ratio (R: "coefficient may be infinite"), but
        # the likelihood-ratio and score tests at beta = 0 are valid, as in R's summary
        none = arm if events[arm] == 0 else control
        return _with(
            base,
            test="Wald",
            lr_p_value=finite_or_none(cox.lr_p_value),
            score_p_value=finite_or_none(cox.score_p_value),
            note=f"no events in {none}: the hazard ratio and its Wald test are not estimable; "
            "the likelihood-ratio and score p-values are valid",
        )
    return _with(
        base,
        hazard_ratio=finite_or_none(cox.hazard_ratio[0]),
        ci_low=finite_or_none(cox.ci_low[0]),
        ci_high=finite_or_none(cox.ci_high[0]),
        p_value=finite_or_none(cox.p_value[0]),
        test="Wald",
        lr_p_value=finite_or_none(cox.lr_p_value),
        score_p_value=finite_or_none(cox.score_p_value),
    )


def _with(record: _R, **changes: Any) -> _R:
    return replace(record, **changes)


def _logrank_overall(parameter: str, rows: _TteRows, arms: Sequence[str]) -> LogrankOverall:
    n_by_code = np.bincount(rows.arm, minlength=len(rows.arms))
    present = tuple(a for a in arms if n_by_code[rows.code(a)] > 0)
    n, events = _counts(rows, None, present)
    base = LogrankOverall(parameter, present, n, events)
    if len(present) < 2:
        return _with(base, note=f"{len(present)} arm with records of {parameter}: no comparison")
    if sum(events.values()) == 0:
        return _with(base, note="no events: not estimable")
    # the arm's integer code sorts as its label does: the same groups in the same order
    lr = logrank_test(rows.time, rows.event.astype(float), rows.arm)
    return _with(
        base, chi2=finite_or_none(lr.chi2), df=int(lr.df), p_value=finite_or_none(lr.p_value)
    )


def _km(parameter: str, rows: _TteRows, arm: str, alpha: float) -> KmSummary:
    mine = rows.arm == rows.code(arm)
    record = KmSummary(parameter, arm, int(mine.sum()), int(rows.event[mine].sum()))
    if not record.n:
        return record
    res = kaplan_meier(rows.time[mine], rows.event[mine].astype(float), alpha)
    return _with(
        record,
        median=finite_or_none(res.median),
        ci_low=finite_or_none(res.median_ci_low),
        ci_high=finite_or_none(res.median_ci_high),
    )


def _tte_analyses(
    adtte: AdamDataset, arms: Sequence[str], control: str, alpha: float
) -> tuple[list[TteComparison], list[LogrankOverall], list[KmSummary]]:
    comparisons: list[TteComparison] = []
    overall: list[LogrankOverall] = []
    km: list[KmSummary] = []
    frame = adtte.frame
    for parameter in sorted(set(pd.unique(frame["PARAMCD"].astype(str).to_numpy(object)))):
        rows = _TteRows.of(frame[frame["PARAMCD"] == parameter], arms)
        for arm in arms:
            if arm == control:
                continue
            for method in ("cox_efron", "logrank"):
                comparisons.append(_compare_tte(parameter, rows, arm, control, method, alpha))
        overall.append(_logrank_overall(parameter, rows, arms))
        km.extend(_km(parameter, rows, arm, alpha) for arm in arms)
    return comparisons, overall, km


# ---------------------------------------------------------------- BDS by visit


def _analysis_records(dataset: AdamDataset) -> pd.DataFrame:
    frame = dataset.frame
    if "ANL01FL" in frame.columns:
        frame = frame[frame["ANL01FL"].astype(str).str.strip().str.upper() == "Y"]
    if "ABLFL" in frame.columns:
        frame = frame[frame["ABLFL"].astype(str).str.strip().str.upper() != "Y"]
    frame = frame[(frame["AVISIT"].astype(str).str.strip() != "") & frame["AVAL"].notna()]
    repeated = frame.duplicated(["USUBJID", "PARAMCD", "AVISIT"])
    if repeated.any():
        row = frame[repeated].iloc[0]
        raise DatasetError(
            f"{dataset.name} has two analysis records of PARAMCD {row['PARAMCD']} at "
            f"{row['AVISIT']} for USUBJID {row['USUBJID']}: flag the one to analyse with "
            "ANL01FL = 'Y'",
            dataset=dataset.name,
            variable="ANL01FL",
        )
    return frame


def _visits(rows: pd.DataFrame) -> list[tuple[str, float | None]]:
    names = sorted(set(rows["AVISIT"].astype(str)))
    if "AVISITN" not in rows.columns or rows["AVISITN"].dtype.kind not in "fi":
        return [(v, None) for v in names]
    order = rows.groupby("AVISIT")["AVISITN"].min()
    keyed = [(v, finite_or_none(order.get(v))) for v in names]
    return sorted(keyed, key=lambda item: (math.inf if item[1] is None else item[1], item[0]))


def _continuous(
    key: tuple[str, str, str, float | None],
    rows: pd.DataFrame,
    arm: str,
    control: str,
    method: str,
    alpha: float,
) -> ContinuousComparison:
    x = rows[rows[ARM] == arm]["AVAL"].to_numpy(float)
    y = rows[rows[ARM] == control]["AVAL"].to_numpy(float)
    base = ContinuousComparison(
        *key,
        arm=arm,
        control=control,
        method=method,
        n={arm: len(x), control: len(y)},
        mean={
            arm: finite_or_none(x.mean()) if len(x) else None,
            control: finite_or_none(y.mean()) if len(y) else None,
        },
    )
    if len(x) < 2 or len(y) < 2:
        return _with(base, note=f"needs at least 2 values per side, found {len(x)} and {len(y)}")
    try:
        if method == "ttest":
            res = welch_ttest(x, y, alpha=alpha)
            return _with(
                base,
                difference=finite_or_none(res.difference),
                ci_low=finite_or_none(res.ci_low),
                ci_high=finite_or_none(res.ci_high),
                p_value=finite_or_none(res.p_value),
                se=finite_or_none(res.se),
                df=finite_or_none(res.df),
                test="Welch two-sample t-test",
            )
        anc = ancova(
            rows["AVAL"].to_numpy(float),
            rows[ARM].to_numpy(str),
            rows["BASE"].to_numpy(float),
            treatment_level=arm,
            control_level=control,
            alpha=alpha,
        )
    except AnalysisError as exc:
        return _with(base, note=f"not estimable: {exc}")
    return _with(
        base,
        difference=finite_or_none(anc.difference),
        ci_low=finite_or_none(anc.ci_low),
        ci_high=finite_or_none(anc.ci_high),
        p_value=finite_or_none(anc.p_value),
        se=finite_or_none(anc.se),
        df=finite_or_none(anc.df),
        adjusted_mean={
            str(k): finite_or_none(v)
            for k, v in zip(anc.levels, anc.adjusted_means, strict=True)
            if k in (arm, control)
        },
        test="ANCOVA: AVAL ~ arm + BASE",
    )


def _bds_analyses(
    dataset: AdamDataset, arms: Sequence[str], control: str, alpha: float, notes: list[str]
) -> list[ContinuousComparison]:
    out: list[ContinuousComparison] = []
    frame = _analysis_records(dataset)
    for parameter in sorted(set(frame["PARAMCD"].astype(str))):
        rows = frame[frame["PARAMCD"] == parameter]
        has_base = "BASE" in rows.columns and bool(rows["BASE"].notna().any())
        if "BASE" in rows.columns and not has_base:
            notes.append(f"{dataset.name} {parameter}: BASE is empty, Welch t-test only")
        methods = ("ancova", "ttest") if has_base else ("ttest",)
        if has_base:
            # complete cases, as the plan: a value at the visit and a baseline
            rows = rows[rows["BASE"].notna()]
        for visit, visitnum in _visits(rows):
            at_visit = rows[rows["AVISIT"] == visit]
            key = (dataset.name, parameter, visit, visitnum)
            for arm in arms:
                if arm == control:
                    continue
                out.extend(
                    _continuous(key, at_visit, arm, control, method, alpha) for method in methods
                )
    return out


# ---------------------------------------------------------------- driver


def _provenance(inputs: AdamInputs, options: Mapping[str, Any]) -> dict[str, Any]:
    from stalwart import __version__

    files = [
        {
            "dataset": d.name,
            "file": d.path.name,
            "sha256": d.sha256,
            "records": len(d.frame),
            "label": d.label,
        }
        for d in inputs.files
    ]
    combined = hashlib.sha256("".join(d.sha256 for d in inputs.files).encode()).hexdigest()
    return {
        "source": "CDISC ADaM",
        "software_version": __version__,
        "seed": None,
        "data_sha256": combined,
        "inputs": files,
        "options": dict(options),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def analyze_inputs(
    inputs: AdamInputs, alpha: float = 0.05, options: Mapping[str, Any] | None = None
) -> ForeignResults:
    """Run every analysis on checked inputs (see :func:`analyze_adam`)."""
    if not 0.0 < alpha < 1.0:
        raise ConfigurationError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    notes = list(inputs.notes)
    arms, control = inputs.arms, inputs.control
    if len(arms) < 2:
        notes.append(f"one arm only ({arms[0]}): no comparison, Kaplan-Meier only")
    if len(arms) > 2:
        notes.append(
            f"{len(arms)} arms: each cox_efron hazard ratio and pairwise logrank is a two-arm fit "
            f"on that arm's and {control}'s records only (not one model of all arms); "
            "logrank_overall is the test across all arms"
        )
    tte: list[TteComparison] = []
    overall: list[LogrankOverall] = []
    km: list[KmSummary] = []
    if inputs.adtte is not None:
        tte, overall, km = _tte_analyses(inputs.adtte, arms, control, alpha)
    continuous: list[ContinuousComparison] = []
    for dataset in inputs.bds:
        continuous.extend(_bds_analyses(dataset, arms, control, alpha, notes))
    frame = inputs.adsl.frame
    study = ""
    if "STUDYID" in frame.columns and len(frame):
        study = str(frame["STUDYID"].iloc[0])
    return ForeignResults(
        study=study,
        arm_variable=inputs.arm_variable,
        arms=arms,
        control=control,
        population=inputs.population,
        randomized={a: int((frame[ARM] == a).sum()) for a in arms},
        time_to_event=tuple(tte),
        logrank_overall=tuple(overall),
        km=tuple(km),
        continuous=tuple(continuous),
        notes=tuple(notes),
        provenance=_provenance(inputs, {**(options or {}), "alpha": alpha}),
        arm_codes=dict(inputs.arm_codes),
    )


def analyze_adam(
    folder: Path,
    *,
    arm_var: str | None = None,
    control: str | None = None,
    population: str | None = None,
    bds: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> ForeignResults:
    """Analyse the ADaM datasets of ``folder``: ADTTE by Cox, log-rank and KM; BDS by visit.

    Parameters are those of :func:`stalwart.cdisc.adam_io.load_adam`, plus ``alpha`` (one
    minus the confidence level of every interval). Raises DatasetError on unusable input.
    """
    inputs = load_adam(folder, arm_var=arm_var, control=control, population=population, bds=bds)
    options = {
        "adam": str(folder),
        "arm_var": arm_var,
        "control": control,
        "population": population,
        "bds": None if bds is None else list(bds),
    }
    return analyze_inputs(inputs, alpha=alpha, options=options)


def run_adam_analysis(
    folder: Path,
    out: Path,
    *,
    arm_var: str | None = None,
    control: str | None = None,
    population: str | None = None,
    bds: Sequence[str] | None = None,
    alpha: float = 0.05,
) -> tuple[ForeignResults, Path]:
    """Analyse ``folder`` and write ``out/results.json``; nothing is written if anything fails."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file: give a folder for results.json")
    results = analyze_adam(
        folder, arm_var=arm_var, control=control, population=population, bds=bds, alpha=alpha
    )
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / "results.json"
        partial = out / f".results.json.{os.getpid()}.tmp"
        partial.write_text(json.dumps(results.to_dict(), indent=2) + "\n", encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        raise ConfigurationError(f"cannot write results to {out}: {exc}") from exc
    return results, path
