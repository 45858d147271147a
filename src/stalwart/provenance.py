"""Provenance carried by every result: which protocol, which data, which software, which seed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from stalwart import __version__
from stalwart.protocol.schema import Protocol

__all__ = ["provenance"]


def provenance(
    protocol: Protocol, data_sha256: str, seed: int | None, protocol_sha256: str
) -> dict[str, Any]:
    """The ``provenance`` block of results.json."""
    return {
        "protocol": protocol.study.id,
        "protocol_version": protocol.study.version,
        "protocol_sha256": protocol_sha256,
        "software_version": __version__,
        "seed": seed,
        "data_sha256": data_sha256,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
