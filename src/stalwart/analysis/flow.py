"""Participant flow (CONSORT counts) from the store extract and the analysis datasets."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from stalwart.analysis.datasets.adlb import analysed as analysed_rows
from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.datasets.source import StoreExtract
from stalwart.protocol.schema import Protocol

__all__ = ["Flow", "flow_counts"]


@dataclass(frozen=True)
class Flow:
    """CONSORT-style participant counts; per-arm dicts are keyed by arm code (ARMCD)."""

    screened: int
    screen_failures: int
    failure_reasons: dict[str, int]
    randomized: dict[str, int]
    completed: dict[str, int]
    discontinued: dict[str, dict[str, int]]
    analysed_primary: dict[str, int]


def flow_counts(protocol: Protocol, extract: StoreExtract, datasets: TrialDatasets) -> Flow:
    """Screened, screen failures with reasons, and by arm: randomized, completed, analysed."""
    screening = extract.screening
    failures = screening[~screening["eligible"].astype(bool)]
    reasons: Counter[str] = Counter()
    for listed in failures["reasons"]:
        reasons.update(listed)
    adsl = datasets.adsl
    arms = protocol.arm_codes
    primary = protocol.analysis.primary[0]
    endpoint = protocol.endpoint(primary.endpoint)
    adlb = datasets.adlb
    analysed = adlb[
        (adlb["AVISIT"] == endpoint.visit)
        & analysed_rows(adlb)
        & adlb["AVAL"].notna()
        & adlb["BASE"].notna()
        & (adlb["PARAMCD"] == (endpoint.test or ""))
    ]
    discontinued: dict[str, dict[str, int]] = {}
    for arm in arms:
        rows = adsl[(adsl["ARMCD"] == arm) & (adsl["EOSSTT"] == "DISCONTINUED")]
        discontinued[arm] = {str(k): int(v) for k, v in rows["DCSREAS"].value_counts().items()}
    return Flow(
        screened=len(screening),
        screen_failures=len(failures),
        failure_reasons=dict(reasons.most_common()),
        randomized={a: int((adsl["ARMCD"] == a).sum()) for a in arms},
        completed={
            a: int(((adsl["ARMCD"] == a) & (adsl["EOSSTT"] == "COMPLETED")).sum()) for a in arms
        },
        discontinued=discontinued,
        analysed_primary={a: int((analysed["ARMCD"] == a).sum()) for a in arms},
    )
