"""The four analysis datasets of a trial, derived together from one store extract."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy.engine import Engine

from stalwart.analysis.datasets.adae import derive_adae
from stalwart.analysis.datasets.adlb import derive_adlb
from stalwart.analysis.datasets.adsl import derive_adsl
from stalwart.analysis.datasets.adtte import derive_adtte
from stalwart.analysis.datasets.source import StoreExtract, read_store
from stalwart.protocol.schema import Protocol

__all__ = ["EndpointReviewCounts", "TrialDatasets", "derive_datasets", "load_datasets"]


@dataclass(frozen=True)
class EndpointReviewCounts:
    """Reported opportunistic events and deaths by review verdict, and which ones ADTTE counts.

    ``rule`` is the protocol's ``analysis.event_review``: under ``confirmed_only`` the
    ``awaiting`` and ``rejected`` events are not events of the analysis. It is ``"not_reviewed"``
    when the extract carries no verdicts (an imported source): every reported event counts.
    """

    rule: str
    reported: int
    confirmed: int
    rejected: int
    awaiting: int

    @classmethod
    def of(cls, protocol: Protocol, extract: StoreExtract) -> EndpointReviewCounts:
        """Count the extract's clinical events by their ``review`` verdict."""
        ce = extract.clinical_events
        if "review" not in ce.columns:
            return cls("not_reviewed", len(ce), 0, 0, len(ce))
        confirmed = int((ce["review"] == "CONFIRMED").sum())
        rejected = int((ce["review"] == "REJECTED").sum())
        return cls(
            rule=protocol.analysis.event_review,
            reported=len(ce),
            confirmed=confirmed,
            rejected=rejected,
            awaiting=len(ce) - confirmed - rejected,
        )

    def as_json(self) -> dict[str, Any]:
        """The ``endpoint_review`` block of results.json."""
        counted = self.confirmed if self.rule == "confirmed_only" else self.reported
        return {
            "rule": self.rule,
            "reported": self.reported,
            "confirmed": self.confirmed,
            "rejected": self.rejected,
            "awaiting_review": self.awaiting,
            "counted": counted,
        }


@dataclass(frozen=True)
class TrialDatasets:
    """ADaM-like tables with CDISC variable names: ADSL, ADLB, ADTTE, ADAE.

    ``endpoint_review`` says how many reported events the endpoints count and how many await
    review or were rejected (None when the datasets did not come from a store extract).
    """

    adsl: pd.DataFrame
    adlb: pd.DataFrame
    adtte: pd.DataFrame
    adae: pd.DataFrame
    endpoint_review: EndpointReviewCounts | None = None


def derive_datasets(protocol: Protocol, extract: StoreExtract) -> TrialDatasets:
    """Derive every analysis dataset from an extract of the store."""
    adsl = derive_adsl(protocol, extract)
    return TrialDatasets(
        adsl=adsl,
        adlb=derive_adlb(protocol, extract, adsl),
        adtte=derive_adtte(protocol, extract, adsl),
        adae=derive_adae(extract, adsl),
        endpoint_review=EndpointReviewCounts.of(protocol, extract),
    )


def load_datasets(protocol: Protocol, engine: Engine) -> tuple[TrialDatasets, StoreExtract]:
    """Read the store and derive the datasets; the extract is returned for flow counts."""
    extract = read_store(engine)
    return derive_datasets(protocol, extract), extract
