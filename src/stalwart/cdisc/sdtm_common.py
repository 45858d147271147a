"""What every SDTM domain derivation shares: identifiers, dates, study days, EPOCH, finishing.

``finish`` sorts a domain by its keys, numbers ``--SEQ`` within USUBJID, orders the variables as
SDTMIG 3.4 lists them and refuses a domain that lacks a Required or Expected variable or leaves a
Required one empty: the conformance a rules engine checks first is checked here, on export.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.cdisc.sdtmig import ig_variables, order_by_ig
from stalwart.cdisc.trial_design import epoch_of, treatment_epoch_end, visit_schedule
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.errors import ExportError
from stalwart.protocol.schema import Protocol

__all__ = [
    "EPOCH",
    "ID",
    "VISIT",
    "epochs",
    "finish",
    "iso",
    "rfstdtc",
    "study_day",
    "visit_columns",
]

ID = (
    Variable("STUDYID", "Study Identifier"),
    Variable("DOMAIN", "Domain Abbreviation"),
    Variable("USUBJID", "Unique Subject Identifier"),
)
VISIT = (
    Variable("VISITNUM", "Visit Number", "Num"),
    Variable("VISIT", "Visit Name"),
    Variable("VISITDY", "Planned Study Day of Visit", "Num"),
)
EPOCH = Variable("EPOCH", "Epoch")


def iso(values: pd.Series) -> pd.Series:
    """ISO 8601 dates as text (empty when missing)."""
    return pd.to_datetime(values).dt.strftime("%Y-%m-%d").fillna("")


def study_day(dates: pd.Series, reference: pd.Series) -> pd.Series:
    """SDTM --DY: the reference date is day 1, the day before it day -1."""
    delta = (pd.to_datetime(dates) - pd.to_datetime(reference)).dt.days
    return delta.where(delta < 0, delta + 1).astype(float)


def rfstdtc(extract: StoreExtract) -> pd.Series:
    """Randomization date (RFSTDTC) by USUBJID."""
    return extract.participants.set_index("usubjid")["randomization_date"]


def epochs(
    protocol: Protocol, extract: StoreExtract, usubjid: pd.Series, dates: pd.Series
) -> pd.Series:
    """EPOCH of each record from its date, the subject's arm and the protocol's epochs."""
    p = extract.participants.set_index("usubjid")
    ends = treatment_epoch_end(protocol)
    day = (pd.to_datetime(dates) - pd.to_datetime(usubjid.map(p["randomization_date"]))).dt.days
    end = usubjid.map(p["arm"]).map(ends)
    out = [
        "" if pd.isna(d) or pd.isna(e) else epoch_of(int(d), int(e))
        for d, e in zip(day, end, strict=True)
    ]
    return pd.Series(out, index=usubjid.index, dtype=object)


def visit_columns(protocol: Protocol, codes: pd.Series) -> pd.DataFrame:
    """VISITNUM, VISIT and VISITDY of visit codes, numbered as TV numbers them."""
    schedule = {v.code: v for v in visit_schedule(protocol)}
    return pd.DataFrame(
        {
            "VISITNUM": codes.map(lambda c: float(schedule[c].visitnum)),
            "VISIT": codes.map(lambda c: schedule[c].name),
            "VISITDY": codes.map(lambda c: float(schedule[c].visitdy)),
        },
        index=codes.index,
    )


def finish(
    name: str,
    label: str,
    variables: tuple[Variable, ...],
    frame: pd.DataFrame,
    keys: tuple[str, ...],
    structure: str,
    klass: str,
) -> Dataset:
    """Sort by the keys, number --SEQ, order the variables as the IG does, check the core."""
    frame = frame.sort_values(list(keys), kind="mergesort").reset_index(drop=True)
    by_name = {v.name: v for v in variables}
    names = order_by_ig(name, list(by_name))
    seq = f"{name}SEQ"
    if seq in by_name:
        frame[seq] = (frame.groupby("USUBJID").cumcount() + 1).astype(float)
    spec = ig_variables(name)
    missing = [v for v, s in spec.items() if s.core in ("Req", "Exp") and v not in by_name]
    if missing:
        raise ExportError(f"{name} lacks the SDTMIG Required/Expected variables {missing}")
    for v in names:
        if spec[v].core == "Req" and len(frame):
            col = frame[v]
            empty = col.isna() | (col.astype(str) == "") if col.dtype == object else col.isna()
            if bool(np.any(empty)):
                raise ExportError(f"{name}.{v} is Required but empty in {int(empty.sum())} rows")
    frame = frame[names]
    return Dataset(name, label, tuple(by_name[n] for n in names), frame, keys, structure, klass)
