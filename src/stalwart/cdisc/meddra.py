"""MedDRA coding of adverse events from a release the sponsor holds (MedDRA is licensed).

stalwart ships no MedDRA. A sponsor with a MedDRA subscription points the export at the ASCII
folder of its release (``MedAscii``: ``llt.asc``, ``mdhier.asc``, ``meddra_release.asc``):
``stalwart export sdtm --meddra PATH/MedAscii``. A verbatim term (AETERM) is coded when it is,
case aside, the name of a current lowest level term; the LLT's preferred term gives AEDECOD and
its primary-SOC path the hierarchy (AEHLT, AEHLGT, AEBODSYS/AESOC and their codes). A term that
matches no LLT keeps AEDECOD = the protocol's term and empty codes, and is listed in the
reviewer's guide for manual coding.

Without a release, AEDECOD is the protocol's term list (not MedDRA) and every hierarchy variable
is empty; the define.xml names the dictionary as the protocol's term list, never as MedDRA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stalwart.errors import ConfigurationError

__all__ = ["MEDDRA_CODES", "MEDDRA_VARIABLES", "MedDRA", "code_terms", "load_meddra"]

MEDDRA_VARIABLES: dict[str, str] = {
    "AELLT": "Lowest Level Term",
    "AELLTCD": "Lowest Level Term Code",
    "AEDECOD": "Dictionary-Derived Term",
    "AEPTCD": "Preferred Term Code",
    "AEHLT": "High Level Term",
    "AEHLTCD": "High Level Term Code",
    "AEHLGT": "High Level Group Term",
    "AEHLGTCD": "High Level Group Term Code",
    "AEBODSYS": "Body System or Organ Class",
    "AEBDSYCD": "Body System or Organ Class Code",
    "AESOC": "Primary System Organ Class",
    "AESOCCD": "Primary System Organ Class Code",
}
"""The AE variables a MedDRA coding fills (name -> label), AEDECOD among them."""
MEDDRA_CODES = ("AELLTCD", "AEPTCD", "AEHLTCD", "AEHLGTCD", "AEBDSYCD", "AESOCCD")
"""The numeric ones (SDTMIG types MedDRA codes as Num)."""


@dataclass(frozen=True)
class MedDRA:
    """A loaded MedDRA release: its version and each current LLT's coding, by lower-case name."""

    version: str
    codings: dict[str, dict[str, str]]


def _rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise ConfigurationError(
            f"{path} is missing: point --meddra at the MedAscii folder of a MedDRA release "
            "(it holds llt.asc, mdhier.asc and meddra_release.asc)"
        )
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line.rstrip("\n").split("$") for line in text.splitlines() if line.strip()]


def load_meddra(folder: Path) -> MedDRA:
    """Read a MedDRA release's ASCII files; ``ConfigurationError`` naming a missing or bad file."""
    release = _rows(folder / "meddra_release.asc")
    version = release[0][0] if release and release[0] else ""
    hierarchy: dict[str, list[str]] = {}
    for r in _rows(folder / "mdhier.asc"):
        if len(r) < 12 or not r[0].isdigit():
            raise ConfigurationError(f"{folder / 'mdhier.asc'} is not a MedDRA mdhier file")
        if r[11] == "Y":  # the primary SOC path of the preferred term
            hierarchy[r[0]] = r
    codings: dict[str, dict[str, str]] = {}
    for r in _rows(folder / "llt.asc"):
        if len(r) < 10 or not r[0].isdigit():
            raise ConfigurationError(f"{folder / 'llt.asc'} is not a MedDRA llt file")
        if r[9] != "Y" or r[2] not in hierarchy:  # non-current LLTs are not coded to
            continue
        h = hierarchy[r[2]]
        codings[r[1].strip().lower()] = {
            "AELLT": r[1],
            "AELLTCD": r[0],
            "AEDECOD": h[4],
            "AEPTCD": h[0],
            "AEHLT": h[5],
            "AEHLTCD": h[1],
            "AEHLGT": h[6],
            "AEHLGTCD": h[2],
            "AEBODSYS": h[7],
            "AEBDSYCD": h[3],
            "AESOC": h[7],
            "AESOCCD": h[3],
        }
    if not codings:
        raise ConfigurationError(f"{folder} holds no current MedDRA lowest level terms")
    return MedDRA(version, codings)


def code_terms(
    verbatim: pd.Series, protocol_term: pd.Series, meddra: MedDRA | None
) -> dict[str, pd.Series]:
    """The MedDRA columns of each AE: coded from ``meddra``, else AEDECOD the protocol's term."""
    out = {
        name: pd.Series(np.nan if name in MEDDRA_CODES else "", index=verbatim.index)
        for name in MEDDRA_VARIABLES
    }
    out["AEDECOD"] = protocol_term.str.upper()
    if meddra is None:
        return out
    found = verbatim.fillna("").str.strip().str.lower().map(meddra.codings)
    for name in MEDDRA_VARIABLES:
        coded = found.map(lambda c, n=name: c[n] if isinstance(c, dict) else None)
        if name in MEDDRA_CODES:
            coded = pd.to_numeric(coded)
        out[name] = coded.where(coded.notna(), out[name])
    return out
