"""Fixtures of the CDISC export tests (the trial is made in ``tests/cdisc_export.py``)."""

from __future__ import annotations

from cdisc_export import cdisc_trial

__all__ = ["cdisc_trial"]
