"""SDTM DV (protocol deviations) from capture's deviations log.

Choices, with the reason:

* One record per logged deviation of a randomized participant. A deviation logged before
  randomization (consent given after the screening procedures of a person never randomized) has
  no USUBJID, which every SDTM subject domain requires: it is not in DV, and the reviewer's guide
  says how many there are.
* DVTERM is the log's description (what happened, with the visit and dates the system wrote);
  DVCAT the log's category (after ICH E3's grouping of deviations); DVSCAT how the deviation came
  to light: ``DETECTED`` by the data capture system when the data revealing it were saved, or
  ``REPORTED`` by a site or monitor. DVDECOD is left out: CDISC publishes no controlled
  terminology for it and the protocol defines no coded deviation list.
* EPOCH and DVSTDY come from the deviation's date as for the other events (study day 1 is
  RFSTDTC, the randomization date).
* XPORT v5 carries ASCII text of at most 200 characters: DVTERM is folded to ASCII (accents
  dropped, any other character ``?``) on one line and, when longer, cut to 200 characters ending
  in ``...``; the full text stays in the log (and the ODM export).
"""

from __future__ import annotations

import unicodedata

import numpy as np
import pandas as pd

from stalwart.analysis.datasets.source import StoreExtract
from stalwart.cdisc.sdtm_common import EPOCH, ID, epochs, finish, rfstdtc, study_day
from stalwart.cdisc.xpt import Dataset, Variable
from stalwart.protocol.schema import Protocol

__all__ = ["XPT_TEXT_LIMIT", "derive_dv", "xpt_text"]

XPT_TEXT_LIMIT = 200
"""The longest character value XPORT v5 carries."""


def xpt_text(value: str, limit: int = XPT_TEXT_LIMIT) -> str:
    """``value`` as XPORT v5 carries it: ASCII, one line, at most ``limit`` characters."""
    folded = unicodedata.normalize("NFKD", value)
    ascii_ = "".join(c if c.isascii() else "?" for c in folded if not unicodedata.combining(c))
    text = " ".join(ascii_.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def derive_dv(protocol: Protocol, extract: StoreExtract) -> Dataset:
    """DV: one record per protocol deviation of a randomized participant."""
    variables = (
        *ID,
        Variable("DVSEQ", "Sequence Number", "Num"),
        Variable("DVTERM", "Protocol Deviation Term"),
        Variable("DVCAT", "Category for Protocol Deviation"),
        Variable("DVSCAT", "Subcategory for Protocol Deviation"),
        EPOCH,
        Variable("DVSTDTC", "Start Date/Time of Deviation"),
        Variable("DVSTDY", "Study Day of Start of Deviation Event", "Num"),
    )
    log = extract.deviations
    dv = log[log["USUBJID"].astype(str) != ""]
    usubjid = dv["USUBJID"].astype(str)
    frame = pd.DataFrame(
        {
            "STUDYID": protocol.study.id,
            "DOMAIN": "DV",
            "USUBJID": usubjid,
            "DVSEQ": np.nan,
            "DVTERM": dv["DVTERM"].astype(str).map(xpt_text),
            "DVCAT": dv["DVCAT"].astype(str),
            "DVSCAT": dv["SOURCE"].astype(str),
            "EPOCH": epochs(protocol, extract, usubjid, dv["DVSTDTC"]),
            "DVSTDTC": dv["DVSTDTC"].astype(str),
            "DVSTDY": study_day(dv["DVSTDTC"], usubjid.map(rfstdtc(extract))),
        },
        index=dv.index,
    )
    return finish(
        "DV",
        "Protocol Deviations",
        variables,
        frame,
        ("STUDYID", "USUBJID", "DVSTDTC", "DVCAT", "DVTERM"),
        "One record per protocol deviation per subject",
        "EVENTS",
    )
