"""Signed checkpoints (``capture.anchor``): keys, the checkpoint file, and the server's writer.

The attacks the checkpoints catch are in ``tests/reliability/test_rel_anchor.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from stalwart.capture.anchor import (
    Checkpointer,
    generate_keys,
    load_private_key,
    load_public_key,
    read_checkpoints,
    write_checkpoint,
)
from stalwart.capture.audit import Anchor, verify_audit
from stalwart.capture.service import CaptureService
from stalwart.errors import ConfigurationError


def test_keys_are_new_files_and_the_private_one_is_owner_only(tmp_path: Path) -> None:
    private, public = tmp_path / "k", tmp_path / "k.pub"
    key_id = generate_keys(private, public)
    assert len(key_id) == 16
    assert private.stat().st_mode & 0o077 == 0
    with pytest.raises(ConfigurationError, match="exists"):
        generate_keys(private, tmp_path / "other.pub")
    assert load_public_key(str(public)) is not None
    with pytest.raises(ConfigurationError, match="not an unencrypted PEM private key"):
        load_private_key(str(public))


def test_a_key_from_an_environment_variable(tmp_path: Path, monkeypatch: Any) -> None:
    generate_keys(tmp_path / "k", tmp_path / "k.pub")
    monkeypatch.setenv("CP_KEY", (tmp_path / "k").read_text())
    assert load_private_key("env:CP_KEY") is not None
    with pytest.raises(ConfigurationError, match=r"CP_KEY2 .* is not set"):
        load_private_key("env:CP_KEY2")


def test_a_checkpoint_is_small_self_contained_and_verifies(
    trial: CaptureService, engine: Engine, enrol: Any, tmp_path: Path
) -> None:
    generate_keys(tmp_path / "k", tmp_path / "k.pub")
    key = load_private_key(str(tmp_path / "k"))
    enrol(trial, "US01")
    cp = write_checkpoint(engine, key, tmp_path / "cps")
    assert cp.path is not None and cp.path.stat().st_size < 1024
    doc = json.loads(cp.path.read_text())
    assert doc["checkpoint"]["records"] == doc["checkpoint"]["sequence"] == cp.sequence
    assert doc["checkpoint"]["study"] == "STALWART"
    (read,) = read_checkpoints(tmp_path / "cps", load_public_key(str(tmp_path / "k.pub")))
    assert read.head_hash == cp.head_hash
    report = verify_audit(engine, [Anchor(read.sequence, read.head_hash, read.label)])
    assert report.ok and report.records == cp.sequence
    # a checkpoint of a longer chain than the database holds is contradicted
    ahead = Anchor(cp.sequence + 5, "a" * 64, "later")
    finding = verify_audit(engine, [ahead]).finding
    assert finding is not None and "later is contradicted" in finding.message


def test_the_server_writer_signs_every_n_records_or_after_m_seconds(
    trial: CaptureService, engine: Engine, enrol: Any, tmp_path: Path
) -> None:
    generate_keys(tmp_path / "k", tmp_path / "k.pub")
    now = [0.0]
    lines: list[str] = []
    writer = Checkpointer(
        engine,
        load_private_key(str(tmp_path / "k")),
        tmp_path / "cps",
        every_records=10**6,
        every_seconds=60,
        report=lines.append,
        clock=lambda: now[0],
    )
    assert writer.tick() is None  # neither enough records nor enough time
    now[0] = 61.0
    first = writer.tick()
    assert first is not None
    now[0] = 100.0
    assert writer.tick() is None  # the chain did not grow
    enrol(trial, "US01")
    grown = verify_audit(engine).records - first.sequence
    assert grown > 0
    assert writer.tick() is None  # grown, but 60 s have not passed since the last one
    writer.every_records = grown
    second = writer.tick()  # enough records
    assert second is not None and second.sequence == first.sequence + grown
    assert lines == []
    assert len(list((tmp_path / "cps").glob("*.json"))) == 2
