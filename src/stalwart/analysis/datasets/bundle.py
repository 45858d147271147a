"""The four analysis datasets of a trial, derived together from one store extract."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sqlalchemy.engine import Engine

from stalwart.analysis.datasets.adae import derive_adae
from stalwart.analysis.datasets.adlb import derive_adlb
from stalwart.analysis.datasets.adsl import derive_adsl
from stalwart.analysis.datasets.adtte import derive_adtte
from stalwart.analysis.datasets.source import StoreExtract, read_store
from stalwart.protocol.schema import Protocol

__all__ = ["TrialDatasets", "derive_datasets", "load_datasets"]


@dataclass(frozen=True)
class TrialDatasets:
    """ADaM-like tables with CDISC variable names: ADSL, ADLB, ADTTE, ADAE."""

    adsl: pd.DataFrame
    adlb: pd.DataFrame
    adtte: pd.DataFrame
    adae: pd.DataFrame


def derive_datasets(protocol: Protocol, extract: StoreExtract) -> TrialDatasets:
    """Derive every analysis dataset from an extract of the store."""
    adsl = derive_adsl(protocol, extract)
    return TrialDatasets(
        adsl=adsl,
        adlb=derive_adlb(protocol, extract, adsl),
        adtte=derive_adtte(protocol, extract, adsl),
        adae=derive_adae(extract, adsl),
    )


def load_datasets(protocol: Protocol, engine: Engine) -> tuple[TrialDatasets, StoreExtract]:
    """Read the store and derive the datasets; the extract is returned for flow counts."""
    extract = read_store(engine)
    return derive_datasets(protocol, extract), extract
