"""Where the CDISC pilot data lives, for the tests that run on it.

The real CDISCPILOT01 SDTM/ADaM files sit beside the repository (``../shared/data/cdiscpilot01``)
and are never copied into it; ``STALWART_CDISCPILOT`` may point elsewhere. Outside CI a missing
folder skips the test with the reason; in CI it fails, because those tests must run there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pilot_root() -> Path:
    """The cdiscpilot01 folder (holding sdtm/ and adam/)."""
    override = os.environ.get("STALWART_CDISCPILOT")
    return Path(override) if override else REPO_ROOT.parent / "shared/data/cdiscpilot01"


def pilot_adam() -> Path:
    """The pilot's ADaM folder; skips (fails in CI) when it is absent."""
    folder = pilot_root() / "adam"
    if not (folder / "adsl.xpt").is_file():
        reason = (
            f"CDISC pilot ADaM data not found at {folder}: put cdiscpilot01 beside the repository "
            "or set STALWART_CDISCPILOT"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return folder
