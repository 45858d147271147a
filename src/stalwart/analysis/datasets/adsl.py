"""ADSL: one row per randomized participant, with baseline values and how follow-up ended."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.protocol.schema import Protocol

__all__ = ["derive_adsl", "derive_last_contact", "log10_hiv_rna"]


def log10_hiv_rna(
    value: pd.Series, below_limit: pd.Series, limit: pd.Series, rule: str
) -> pd.Series:
    """log10 HIV RNA with values below the assay limit imputed by the SAP rule.

    ``half_limit`` puts a censored value at log10(limit / 2), ``limit`` at log10(limit).
    """
    factor = 0.5 if rule == "half_limit" else 1.0
    raw = np.where(below_limit.astype(bool), limit.astype(float) * factor, value.astype(float))
    return pd.Series(np.log10(raw), index=value.index)


def derive_last_contact(extract: StoreExtract) -> pd.Series:
    """Last date each participant was known alive or had data (LSTCNDT), indexed by USUBJID."""
    parts = [
        extract.participants.set_index("usubjid")["randomization_date"],
        extract.labs.groupby("usubjid")["visit_date"].max(),
        extract.doses.groupby("usubjid")["dose_date"].max(),
        extract.clinical_events.groupby("usubjid")["onset_date"].max(),
        extract.adverse_events.groupby("usubjid")["start_date"].max(),
        extract.dispositions.set_index("usubjid")["disposition_date"],
    ]
    frames = [pd.to_datetime(p) for p in parts if len(p)]
    combined = pd.concat(frames, axis=1)
    return combined.max(axis=1).rename("LSTCNDT")


def _baseline(extract: StoreExtract, protocol: Protocol, test: str) -> pd.Series:
    visit = protocol.visits[0].code
    labs = extract.labs
    rows = labs[(labs["visit_code"] == visit) & (labs["test_code"] == test)]
    if test == "HIVRNA":
        values = log10_hiv_rna(
            rows["value"],
            rows["below_limit"],
            rows["limit_value"],
            protocol.analysis.hiv_rna_below_limit,
        )
    else:
        values = rows["value"].astype(float)
    return pd.Series(values.to_numpy(), index=rows["usubjid"].to_numpy(), dtype=float)


def derive_adsl(protocol: Protocol, extract: StoreExtract) -> pd.DataFrame:
    """Subject-level dataset: demographics, arm, baseline CD4 and HIV RNA, disposition."""
    p = extract.participants
    names = {a.code: a.name for a in protocol.arms}
    disp = extract.dispositions.set_index("usubjid")
    status = (
        p["usubjid"].map(disp["status"])
        if len(disp)
        else pd.Series(None, index=p.index, dtype=object)
    )
    end_date = (
        p["usubjid"].map(disp["disposition_date"])
        if len(disp)
        else pd.Series(pd.NaT, index=p.index)
    )
    deaths = extract.clinical_events[extract.clinical_events["category"] == "DEATH"]
    death_date = (
        p["usubjid"].map(deaths.set_index("usubjid")["onset_date"])
        if len(deaths)
        else (pd.Series(pd.NaT, index=p.index))
    )
    last = derive_last_contact(extract)
    adsl = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "USUBJID": p["usubjid"],
            "SUBJID": p["usubjid"].str.removeprefix(f"{protocol.study.id}-"),  # as DM: site-number
            "SITEID": p["site"],
            "COUNTRY": p["country"],
            "SCRNUM": p["screening_number"],
            "AGE": p["answers"].map(lambda a: int(a["age"]))
            if "age" in _items(protocol)
            else np.nan,
            "SEX": p["answers"].map(lambda a: str(a["sex"])) if "sex" in _items(protocol) else "",
            "ARMCD": p["arm"],
            "ARM": p["arm"].map(names),
            "TRT01P": p["arm"].map(names),
            "RANDDT": pd.to_datetime(p["randomization_date"]),
            "ITTFL": "Y",
            "BASECD4": p["usubjid"].map(_baseline(extract, protocol, "CD4")).astype(float),
            "BASEVL": p["usubjid"].map(_baseline(extract, protocol, "HIVRNA")).astype(float),
            "EOSSTT": np.where(
                status.isna(),
                "ONGOING",
                np.where(status == "COMPLETED", "COMPLETED", "DISCONTINUED"),
            ),
            "DCSREAS": np.where(status.isna() | (status == "COMPLETED"), "", status.fillna("")),
            "EOSDT": pd.to_datetime(end_date),
            "DTHFL": np.where(death_date.notna(), "Y", ""),
            "DTHDT": pd.to_datetime(death_date),
            "LSTCNDT": pd.to_datetime(p["usubjid"].map(last)),
        }
    )
    return adsl.reset_index(drop=True)


def _items(protocol: Protocol) -> set[str]:
    return {i.name for i in protocol.screening_items}
