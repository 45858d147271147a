"""ADLB (BDS): CD4, CD4 % and log10 HIV RNA by analysis visit, with baseline and change.

Analysis visits are the protocol's scheduled visits (``visits``); cycle, extended follow-up and
unscheduled labs stay in the store but are not analysis visits of this plan. Each row says how
its visit is used: AWTARGET, AWLO and AWHI are the visit's target day and window (study days,
day 0 the randomization), and ANL01FL = "Y" marks the value analysed at that visit: one
recorded outside the window is analysed only when the plan's ``out_of_window`` is ``include``.
HIV RNA below the assay limit is flagged (BLQFL = "Y") and imputed by the plan's
``hiv_rna_below_limit`` rule. Each LAB item of the protocol is one parameter: its PARAMCD and
PARAM are the item's ``paramcd`` and ``param``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.adsl import log10_hiv_rna
from stalwart.analysis.datasets.source import StoreExtract
from stalwart.protocol.schema import Protocol

__all__ = ["analysed", "derive_adlb"]


def analysed(adlb: pd.DataFrame) -> pd.Series:
    """Which ADLB rows are analysed at their visit (ANL01FL = "Y"); all of them in a BDS
    dataset without ANL01FL (one read from elsewhere that does not flag its records)."""
    if "ANL01FL" not in adlb.columns:
        return pd.Series(True, index=adlb.index)
    return adlb["ANL01FL"] == "Y"


def derive_adlb(protocol: Protocol, extract: StoreExtract, adsl: pd.DataFrame) -> pd.DataFrame:
    """One row per participant, parameter and scheduled visit that has a result."""
    visits = {v.code: v for v in protocol.visits}
    items = {item.name: item for item in protocol.forms.LAB.items}
    labs = extract.labs[
        extract.labs["visit_code"].isin(visits) & extract.labs["test_code"].isin(items)
    ].copy()
    columns = [
        "USUBJID",
        "ARMCD",
        "PARAMCD",
        "PARAM",
        "AVISIT",
        "AVISITN",
        "AWTARGET",
        "AWLO",
        "AWHI",
        "ADT",
        "ADY",
        "AVAL",
        "BASE",
        "CHG",
        "ABLFL",
        "BLQFL",
        "ANL01FL",
    ]
    if labs.empty:
        return pd.DataFrame(columns=columns)
    hiv = labs["test_code"] == "HIVRNA"
    aval = labs["value"].astype(float)
    aval[hiv] = log10_hiv_rna(
        labs.loc[hiv, "value"],
        labs.loc[hiv, "below_limit"],
        labs.loc[hiv, "limit_value"],
        protocol.analysis.hiv_rna_below_limit,
    )
    subj = adsl.set_index("USUBJID")
    adt = pd.to_datetime(labs["visit_date"])
    randdt = labs["usubjid"].map(subj["RANDDT"])
    out = pd.DataFrame(
        {
            "USUBJID": labs["usubjid"],
            "ARMCD": labs["usubjid"].map(subj["ARMCD"]),
            "PARAMCD": labs["test_code"].map(lambda t: items[t].paramcd),
            "PARAM": labs["test_code"].map(lambda t: items[t].param),
            "AVISIT": labs["visit_code"],
            "AVISITN": labs["visit_code"].map(lambda c: visits[c].day // 7).astype(int),
            "AWTARGET": labs["visit_code"].map(lambda c: visits[c].day).astype(int),
            "AWLO": labs["visit_code"]
            .map(lambda c: visits[c].day - visits[c].window_before)
            .astype(int),
            "AWHI": labs["visit_code"]
            .map(lambda c: visits[c].day + visits[c].window_after)
            .astype(int),
            "ADT": adt,
            "ADY": (adt - randdt).dt.days.astype(int),
            "AVAL": aval.astype(float),
            "BLQFL": np.where(labs["below_limit"].astype(bool), "Y", ""),
        }
    )
    baseline_visit = protocol.visits[0].code
    out["ABLFL"] = np.where(out["AVISIT"] == baseline_visit, "Y", "")
    base = out[out["ABLFL"] == "Y"].set_index(["USUBJID", "PARAMCD"])["AVAL"]
    keys = pd.MultiIndex.from_frame(out[["USUBJID", "PARAMCD"]])
    out["BASE"] = base.reindex(keys).to_numpy()
    out["CHG"] = np.where(out["ABLFL"] == "Y", np.nan, out["AVAL"] - out["BASE"])
    inside = (out["ADY"] >= out["AWLO"]) & (out["ADY"] <= out["AWHI"])
    used = inside | (protocol.analysis.out_of_window == "include")
    out["ANL01FL"] = np.where(used, "Y", "")
    return out[columns].sort_values(["USUBJID", "PARAMCD", "AVISITN"]).reset_index(drop=True)
