"""The CDISC export tests' trial: one small simulated trial, exported once per session.

``cdisc_trial`` runs the demo on the packaged protocol with 30 participants (a few seconds) and
exports it as SDTM, ADaM and ODM into a session folder; tests read those files and must not
change them. ``tests/cdisc/conftest.py`` and the R validation test import the fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from stalwart.capture.db import open_engine
from stalwart.cdisc.export import export_cdisc
from stalwart.play.demo import run_demo
from stalwart.protocol.load import default_protocol_path


@dataclass(frozen=True)
class CdiscTrial:
    """The small trial's database and its exports (``sdtm``, ``adam``, ``odm`` folders)."""

    url: str
    engine: Engine
    protocol_path: Path
    sdtm: Path
    adam: Path
    odm: Path


@pytest.fixture(scope="session")
def cdisc_trial(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CdiscTrial]:
    root = tmp_path_factory.mktemp("cdisc")
    text = default_protocol_path().read_text(encoding="utf-8")
    assert "sample_size = 267" in text
    protocol = root / "small.toml"
    protocol.write_text(text.replace("sample_size = 267", "sample_size = 30"), encoding="utf-8")
    outcome = run_demo(root / "demo", seed=8, protocol=protocol)  # events in two arms
    engine = open_engine(outcome.database_url)
    folders = {kind: root / kind for kind in ("sdtm", "adam", "odm")}
    for kind, folder in folders.items():
        export_cdisc(kind, engine, folder)
    yield CdiscTrial(outcome.database_url, engine, protocol, **folders)
    engine.dispose()
