"""ADAE: adverse events with the participant's arm, DAIDS grade and treatment-emergent flag."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract

__all__ = ["derive_adae"]


def derive_adae(extract: StoreExtract, adsl: pd.DataFrame) -> pd.DataFrame:
    """One row per reported adverse event."""
    ae = extract.adverse_events
    subj = adsl.set_index("USUBJID")
    start = pd.to_datetime(ae["start_date"])
    return pd.DataFrame(
        {
            "USUBJID": ae["usubjid"],
            "ARMCD": ae["usubjid"].map(subj["ARMCD"]),
            "AEDECOD": ae["term"],
            "AETOXGR": ae["grade"].astype(int),
            "ASTDT": start,
            "AENDT": pd.to_datetime(ae["end_date"]),
            "AEREL": ae["related"],
            "AESER": np.where(ae["serious"].astype(bool), "Y", "N"),
            "TRTEMFL": np.where(start >= ae["usubjid"].map(subj["RANDDT"]), "Y", ""),
        }
    ).reset_index(drop=True)
