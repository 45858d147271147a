"""SAS transport (XPORT v5) and CSV files of CDISC datasets, names, labels and lengths checked.

A ``Dataset`` is a frame plus the metadata a submission needs: the dataset's name and label, each
variable's label, type and display format, and the sort keys. ``write_dataset`` checks the
SAS v5 limits (names of at most 8 upper-case characters, labels of at most 40, character values of
at most 200 ASCII bytes) before anything is written, then writes ``name.xpt`` through pyreadstat
(character lengths are the longest value, as the SDTM guidance asks) and ``csv/name.csv``.

Dates: SDTM keeps ISO 8601 character ``--DTC`` variables; ADaM's ``*DT`` variables are numeric SAS
dates (days since 1960-01-01) with the ``DATE9.`` format, written from pandas datetimes here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyreadstat

from stalwart.errors import ExportError

__all__ = [
    "SAS_EPOCH",
    "Dataset",
    "Variable",
    "char_length",
    "check_dataset",
    "read_xpt",
    "write_dataset",
]

SAS_EPOCH = pd.Timestamp("1960-01-01")
"""Day 0 of SAS dates."""

_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,7}$")


@dataclass(frozen=True)
class Variable:
    """One column's metadata: ``kind`` is ``"Char"``, ``"Num"`` or ``"Date"`` (numeric SAS date)."""

    name: str
    label: str
    kind: str = "Char"
    codelist: tuple[str, ...] = ()
    origin: str = "Derived"

    @property
    def numeric(self) -> bool:
        """Whether the XPT variable is numeric (SAS dates are)."""
        return self.kind in ("Num", "Date")


@dataclass(frozen=True)
class Dataset:
    """A CDISC dataset: ``frame`` holds exactly the ``variables``, in their order."""

    name: str
    label: str
    variables: tuple[Variable, ...]
    frame: pd.DataFrame
    keys: tuple[str, ...]
    structure: str
    klass: str
    standard: str = "SDTM"
    extra: dict[str, str] = field(default_factory=dict)

    def variable(self, name: str) -> Variable:
        """The metadata of variable ``name``."""
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)


def char_length(values: pd.Series) -> int:
    """The storage length of a character variable: its longest value in bytes, at least 1."""
    text = values.fillna("").astype(str).tolist()
    if not text:
        return 1
    if "".join(text).isascii():  # one byte a character: no value need be encoded
        return max(1, *map(len, text))
    return max(1, *(len(s.encode("utf-8")) for s in text))


def check_dataset(ds: Dataset) -> None:
    """Raise ``ExportError`` unless ``ds`` fits SAS XPORT v5 and its frame matches its metadata."""
    where = f"dataset {ds.name}"
    if not _NAME.match(ds.name) or len(ds.label) > 40:
        raise ExportError(
            f"{where}: names must be 1-8 upper-case letters, digits or _ and labels at most 40 "
            f"characters (label {ds.label!r})"
        )
    names = [v.name for v in ds.variables]
    if list(ds.frame.columns) != names:
        raise ExportError(f"{where}: columns {list(ds.frame.columns)} differ from {names}")
    missing = [k for k in ds.keys if k not in names]
    if missing:
        raise ExportError(f"{where}: sort keys {missing} are not variables")
    for v in ds.variables:
        if not _NAME.match(v.name):
            raise ExportError(f"{where}: variable name {v.name!r} is not a SAS v5 name")
        if len(v.label) > 40 or not v.label.isascii():
            raise ExportError(f"{where}: label of {v.name} is over 40 characters: {v.label!r}")
        if v.kind == "Char":
            text = ds.frame[v.name].fillna("").astype(str)
            if not "".join(text.tolist()).isascii():
                raise ExportError(f"{where}: {v.name} holds non-ASCII text; XPORT v5 is ASCII")
            if char_length(text) > 200:
                raise ExportError(f"{where}: {v.name} has values over 200 characters")


def _xpt_frame(ds: Dataset) -> tuple[pd.DataFrame, dict[str, str]]:
    out = pd.DataFrame(index=ds.frame.index)
    formats: dict[str, str] = {}
    for v in ds.variables:
        col = ds.frame[v.name]
        if v.kind == "Date":
            days = (pd.to_datetime(col) - SAS_EPOCH).dt.days
            out[v.name] = days.astype(float)
            formats[v.name] = "DATE9."
        elif v.kind == "Num":
            out[v.name] = pd.to_numeric(col).astype(float)
        else:
            # Python strings (object), not pandas' string array: pyreadstat reads every value
            # one by one, and a string array hands each out through a slow __getitem__
            out[v.name] = col.fillna("").astype(str).astype(object)
    return out.reset_index(drop=True), formats


def _csv_frame(ds: Dataset) -> pd.DataFrame:
    out = ds.frame.copy()
    for v in ds.variables:
        if v.kind == "Date":
            out[v.name] = pd.to_datetime(out[v.name]).dt.strftime("%Y-%m-%d")
    return out


def write_dataset(ds: Dataset, folder: Path) -> tuple[Path, Path]:
    """Write ``folder/<name>.xpt`` (XPORT v5) and ``folder/csv/<name>.csv``; returns both paths.

    The CSV files sit in their own folder so that ``folder`` holds one file per dataset, as
    readers of a submission folder (``stalwart analyze --adam``) expect.
    """
    check_dataset(ds)
    frame, formats = _xpt_frame(ds)
    xpt = folder / f"{ds.name.lower()}.xpt"
    (folder / "csv").mkdir(exist_ok=True)
    csv = folder / "csv" / f"{ds.name.lower()}.csv"
    try:
        pyreadstat.write_xport(
            frame,
            str(xpt),
            file_label=ds.label,
            column_labels={v.name: v.label for v in ds.variables},
            table_name=ds.name,
            file_format_version=5,
            variable_format=formats or None,
        )
    except pyreadstat.ReadstatError as exc:
        raise ExportError(f"cannot write {xpt.name}: {exc}") from None
    _csv_frame(ds).to_csv(csv, index=False, lineterminator="\n")
    return xpt, csv


def read_xpt(path: Path, encoding: str | None = None) -> tuple[pd.DataFrame, dict[str, object]]:
    """Read an XPT file: the frame (dates as pandas datetimes) and its metadata.

    ``encoding`` is the character values' (ours are ASCII; SAS files often Windows-1252).
    The metadata holds ``name``, ``label``, ``labels`` (by variable), ``lengths`` (storage bytes)
    and ``types`` (``"Char"``/``"Num"``).
    """
    try:
        frame, meta = pyreadstat.read_xport(str(path), encoding=encoding)
    except (pyreadstat.ReadstatError, OSError) as exc:
        raise ExportError(f"cannot read {path}: {exc}") from None
    for name, fmt in meta.original_variable_types.items():
        if (fmt or "").upper().startswith("DATE") and frame[name].dtype == object:
            frame[name] = pd.to_datetime(frame[name])
    types = {
        c: "Num" if meta.readstat_variable_types[c] in ("double", "int") else "Char"
        for c in meta.column_names
    }
    return frame, {
        "name": meta.table_name,
        "label": meta.file_label,
        "labels": dict(meta.column_names_to_labels),
        "lengths": dict(meta.variable_storage_width),
        "types": types,
    }
