"""ADTTE: time from randomization to the first event of each time-to-event endpoint.

An endpoint's events are the clinical events whose category it lists (for STALWART: an
opportunistic event or death). Under the protocol's ``analysis.event_review = "confirmed_only"``
(the default) only events the endpoint reviewer confirmed count: an event awaiting review or
rejected is not an event, and the participant is followed on (``"all_reported"`` counts every
reported event; so does an extract that carries no review verdicts). Without an event the time
is censored (CNSR = 1, as ADaM) at the last contact
date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.protocol.schema import Protocol

__all__ = ["counted_events", "derive_adtte"]


def counted_events(protocol: Protocol, extract: StoreExtract) -> pd.DataFrame:
    """The reported clinical events the analysis counts, under ``analysis.event_review``.

    An extract without a ``review`` column comes from a source with no endpoint review (an
    imported or hand-made extract): its events are counted as reported.
    """
    ce = extract.clinical_events
    if protocol.analysis.event_review == "all_reported" or "review" not in ce.columns:
        return ce
    return ce[ce["review"] == "CONFIRMED"]


def derive_adtte(protocol: Protocol, extract: StoreExtract, adsl: pd.DataFrame) -> pd.DataFrame:
    """One row per participant and time-to-event endpoint."""
    terms = {e.code: e.term for e in protocol.forms.CE.events}
    frames = []
    for endpoint in protocol.endpoints:
        if endpoint.kind != "time_to_event":
            continue
        ce = counted_events(protocol, extract)
        qualifying = ce[ce["category"].isin(endpoint.event_categories)]
        first = qualifying.sort_values(["usubjid", "onset_date"]).groupby("usubjid").first()
        start = adsl["RANDDT"]
        event_date = pd.to_datetime(adsl["USUBJID"].map(first["onset_date"]))
        code = adsl["USUBJID"].map(first["event_code"])
        has_event = event_date.notna()
        adt = event_date.where(has_event, adsl["LSTCNDT"])
        frames.append(
            pd.DataFrame(
                {
                    "USUBJID": adsl["USUBJID"],
                    "ARMCD": adsl["ARMCD"],
                    "PARAMCD": endpoint.id,
                    "PARAM": endpoint.description,
                    "STARTDT": start,
                    "ADT": adt,
                    "AVAL": (adt - start).dt.days.astype(float),
                    "CNSR": np.where(has_event, 0, 1),
                    "EVNTDESC": np.where(has_event, code.map(terms).fillna(""), "LAST CONTACT"),
                }
            )
        )
    if not frames:
        return pd.DataFrame(
            columns=[
                "USUBJID",
                "ARMCD",
                "PARAMCD",
                "PARAM",
                "STARTDT",
                "ADT",
                "AVAL",
                "CNSR",
                "EVNTDESC",
            ]
        )
    return pd.concat(frames, ignore_index=True)
