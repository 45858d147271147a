"""Read one ADaM file into a table: SAS XPT by pyreadstat, CSV by pandas' C parser.

The rules of :mod:`stalwart.cdisc.adam_io` for a file's values, applied at the speed of the
file's distinct values: a CSV is read as text, then each column's distinct values are stripped
and parsed once (text, a date, or numbers when every value is one) and spread back by integer
code; an XPT's character columns are checked for dates once per distinct value. The element-wise
rule (``csv_column_elementwise``) is what the fast path must equal; it also reads a column that
holds a value other than text (a short row read as missing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from stalwart.errors import DatasetError

__all__ = [
    "csv_column",
    "csv_column_elementwise",
    "objects",
    "read_csv_frame",
    "read_xpt_frame",
    "sha256_of",
]

# CSV variables always read as text, whatever their values look like
_TEXT = re.compile(
    r"^(USUBJID|SUBJID|STUDYID|SITEID|SITEGR\d*|PARAMCD|PARAM|AVISIT|AVALC|DTYPE|ARM|ARMCD|"
    r"ACTARM|ACTARMCD|TRT\d\d[PA]|TRTP|TRTA|EVNTDESC|.*FL)$"
)
_CSV_DATE = re.compile(r"^.*DT$")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _distinct(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1: missing) and distinct values in order of first appearance: derive once."""
    codes, uniques = pd.factorize(values.to_numpy(object))
    return codes, np.asarray(uniques, dtype=object)


def objects(items: Sequence[object]) -> np.ndarray:
    """A one-dimensional object array of ``items`` (numpy would turn dates into datetime64)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def read_xpt_frame(path: Path, name: str) -> tuple[pd.DataFrame, dict[str, str], str]:
    import pyreadstat  # only for XPT input: a CSV-only analysis does not load it

    try:
        frame, meta = pyreadstat.read_xport(str(path))
    except (pyreadstat.ReadstatError, pyreadstat.PyreadstatError, UnicodeError, OSError) as exc:
        raise DatasetError(
            f"{name}: {path} is not a readable SAS transport (XPT) file ({exc}); export it "
            "again as XPT (version 5 or 8), or give the dataset as CSV",
            dataset=name,
        ) from exc
    labels = {k: v or "" for k, v in (meta.column_names_to_labels or {}).items()}
    for column in frame.columns:
        if frame[column].dtype == object:
            values = frame[column]
            codes, uniques = _distinct(values)
            if any(isinstance(v, dt.date) for v in uniques):
                # the last entry, None, is what code -1 (missing) takes
                dates = objects([*(v if isinstance(v, dt.date) else None for v in uniques), None])
                frame[column] = pd.Series(dates[codes], index=values.index, dtype=object)
            else:
                frame[column] = values.fillna("").astype(str)
    return frame, labels, meta.file_label or ""


def _csv_date(value: str, name: str, variable: str) -> dt.date | None:
    text = value.strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%d%b%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise DatasetError(
        f"{name}.{variable}: {value!r} is not a date; write dates as YYYY-MM-DD (ISO 8601) or "
        "DDMONYYYY (SAS DATE9)",
        dataset=name,
        variable=variable,
    )


def csv_column(raw: pd.Series, name: str, column: str) -> pd.Series:
    """One CSV column as read: text stripped, a date, or numbers when every value is one.

    Each distinct value is stripped and parsed once. A column with a value that is not text
    (a short row read as missing), or no rows, takes the element-wise path: same result, slower.
    """
    strings = raw.to_numpy(object)
    if not len(strings) or infer_dtype(strings, skipna=False) != "string":
        return csv_column_elementwise(raw, name, column)
    if _TEXT.match(column):
        return pd.Series(
            objects([v.strip() for v in strings]), index=raw.index, name=raw.name, dtype="str"
        )
    codes, uniques = pd.factorize(strings)
    stripped = objects([v.strip() for v in uniques])
    if _CSV_DATE.match(column):
        dates = objects([_csv_date(v, name, column) for v in stripped])
        return pd.Series(dates[codes], index=raw.index, name=raw.name, dtype=object)
    blank = stripped == ""
    candidates = stripped.copy()
    candidates[blank] = None
    numbers = pd.to_numeric(candidates, errors="coerce")
    if not bool((~np.isnan(numbers) | blank).all()):
        return pd.Series(stripped[codes], index=raw.index, name=raw.name, dtype="str")
    if bool((np.abs(numbers) >= 2.0**53).any()):
        # integers past 2**53 may round differently parsed alone than among decimals
        return csv_column_elementwise(raw, name, column)
    return pd.Series(
        np.asarray(numbers, dtype=float)[codes], index=raw.index, name=raw.name, dtype=float
    )


def csv_column_elementwise(raw: pd.Series, name: str, column: str) -> pd.Series:
    values = raw.astype("str").str.strip()
    if _TEXT.match(column):
        return values
    if _CSV_DATE.match(column):
        return values.map(lambda v: _csv_date(v, name, column))
    numbers = pd.to_numeric(values.replace("", None), errors="coerce")
    parsed = numbers.notna() | (values == "")
    return numbers.astype(float) if parsed.all() else values


def read_csv_frame(path: Path, name: str) -> pd.DataFrame:
    try:
        raw = pd.read_csv(path, dtype=object, keep_default_na=False, encoding="utf-8")
    except (UnicodeError, pd.errors.ParserError, pd.errors.EmptyDataError, OSError) as exc:
        raise DatasetError(
            f"{name}: {path} is not a readable CSV file ({exc}); write it as UTF-8 CSV with one "
            "header row of CDISC variable names",
            dataset=name,
        ) from exc
    raw.columns = [str(c).strip().upper() for c in raw.columns]
    frame = pd.DataFrame(index=raw.index)
    for column in raw.columns:
        frame[column] = csv_column(raw[column], name, column)
    return frame
