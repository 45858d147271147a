"""``run_demo`` end to end on a small variant of the STALWART protocol, on both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from stalwart.capture.audit import verify_audit
from stalwart.capture.db import open_engine
from stalwart.errors import ConfigurationError, DatabaseError
from stalwart.play.demo import run_demo
from stalwart.protocol.load import default_protocol_path

ARMS = ["NOTHER", "IL2", "IL2ART"]


@pytest.fixture(scope="module")
def small_protocol(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """STALWART with 45 participants, so a full demo runs in a few seconds."""
    text = default_protocol_path().read_text(encoding="utf-8")
    assert "sample_size = 267" in text
    path = tmp_path_factory.mktemp("protocol") / "small.toml"
    path.write_text(text.replace("sample_size = 267", "sample_size = 45"), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def small_run(small_protocol: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, seed=3, protocol=small_protocol)


def test_results_json_follows_the_contract(small_run) -> None:
    results = json.loads(small_run.results_path.read_text())
    prov = results["provenance"]
    assert set(prov) >= {
        "protocol",
        "protocol_version",
        "software_version",
        "seed",
        "data_sha256",
        "created",
    }
    assert prov["protocol"] == "STALWART" and prov["seed"] == 3 and len(prov["data_sha256"]) == 64
    assert prov["data_lock"] == "no lock: live data"  # the final analysis names its lock
    assert results["randomized"]["total"] == 45
    assert sum(results["randomized"]["by_arm"].values()) == 45
    assert set(results["randomized"]["by_arm"]) == set(ARMS)
    primary = results["primary"]
    assert {(r["arm"], r["method"]) for r in primary} == {
        (a, m) for a in ("IL2", "IL2ART") for m in ("ancova", "ttest")
    }
    for row in primary:
        assert row["endpoint"] == "CD4" and row["week"] == 32 and row["control"] == "NOTHER"
        assert row["ci_low"] < row["difference"] < row["ci_high"]
        assert 0 <= row["p_value"] <= 1
        assert set(row["n"]) == {row["arm"], "NOTHER"} and set(row["mean"]) == set(row["n"])
    for row in results["time_to_event"]:
        assert row["parameter"] == "ODDEATH" and row["control"] == "NOTHER"
        assert row["method"] in ("cox_efron", "logrank")
        assert set(row) >= {"events", "n", "hazard_ratio", "ci_low", "ci_high", "p_value"}
    pooled = [r for r in results["time_to_event"] if r["arm"] == "IL2+IL2ART"]
    assert {r["method"] for r in pooled} == {"cox_efron", "logrank"}


def test_report_and_database_are_written_and_the_audit_verifies(small_run) -> None:
    html = small_run.report_path.read_text()
    assert "<html" in html and "Kaplan" in html
    engine = open_engine(small_run.database_url)
    try:
        report = verify_audit(engine)
    finally:
        engine.dispose()
    assert report.ok, report.finding
    assert report.records > 45


def test_same_seed_same_results(small_run, small_protocol: Path, tmp_path: Path) -> None:
    again = run_demo(tmp_path / "again", seed=3, protocol=small_protocol)
    first = json.loads(small_run.results_path.read_text())
    second = json.loads(again.results_path.read_text())
    first["provenance"].pop("created")
    second["provenance"].pop("created")
    assert first == second


def test_other_seed_other_data(small_run, small_protocol: Path, tmp_path: Path) -> None:
    other = run_demo(tmp_path / "other", seed=4, protocol=small_protocol)
    assert (
        other.analysis.results["provenance"]["data_sha256"]
        != small_run.analysis.results["provenance"]["data_sha256"]
    )


def test_runs_on_the_given_database_url(db_url: str, small_protocol: Path, tmp_path: Path) -> None:
    outcome = run_demo(tmp_path, seed=5, database_url=db_url, protocol=small_protocol)
    assert outcome.database_url == db_url
    assert outcome.analysis.results["randomized"]["total"] == 45


def test_a_second_run_in_the_same_folder_replaces_the_first(
    small_protocol: Path, tmp_path: Path
) -> None:
    first = run_demo(tmp_path, seed=3, protocol=small_protocol)
    assert not first.replaced
    again = run_demo(tmp_path, seed=4, protocol=small_protocol)
    assert again.replaced and again.database_url == first.database_url
    engine = open_engine(again.database_url)
    try:
        with engine.connect() as conn:
            trials = conn.execute(sa.text("SELECT count(*) FROM trial")).scalar_one()
    finally:
        engine.dispose()
    assert trials == 1  # replaced, not added to
    results = json.loads(again.results_path.read_text())
    assert results["provenance"]["seed"] == 4


def test_a_database_in_a_folder_that_is_not_a_demo_run_is_refused_unless_forced(
    small_protocol: Path, tmp_path: Path
) -> None:
    (tmp_path / "stalwart.db").write_bytes(b"somebody's trial")
    with pytest.raises(ConfigurationError, match="not a demo run's folder"):
        run_demo(tmp_path, seed=3, protocol=small_protocol)
    assert (tmp_path / "stalwart.db").read_bytes() == b"somebody's trial"
    assert not (tmp_path / "results.json").exists()
    forced = run_demo(tmp_path, seed=3, protocol=small_protocol, force=True)
    assert forced.replaced and forced.results_path.exists()


@pytest.mark.parametrize(
    "url", ["nonsense://", "mysql://u@127.0.0.1/x", "postgresql://root@127.0.0.1:1/x"]
)
def test_bad_database_url_is_a_clear_error(url: str, tmp_path: Path) -> None:
    with pytest.raises((ConfigurationError, DatabaseError)) as info:
        run_demo(tmp_path, seed=1, database_url=url)
    assert "database" in str(info.value).lower() or "url" in str(info.value).lower()
    assert not (tmp_path / "results.json").exists()


def test_negative_seed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="seed"):
        run_demo(tmp_path, seed=-1)


def test_endpoint_review_is_reported_and_every_event_confirmed(small_run) -> None:
    review = small_run.analysis.results["endpoint_review"]
    assert review["rule"] == "confirmed_only"
    assert review["reported"] == review["confirmed"] == review["counted"] > 0
    assert review["rejected"] == review["awaiting_review"] == 0
    assert small_run.played.reviewed == review["reported"]
    adtte = small_run.analysis.datasets.adtte
    pooled_events = int((adtte[adtte["PARAMCD"] == "ODDEATH"]["CNSR"] == 0).sum())
    assert 0 < pooled_events <= review["confirmed"]


def test_via_http_gives_the_same_results(
    db_url: str, small_run, small_protocol: Path, tmp_path: Path
) -> None:
    """The sites played through a live server's API (on SQLite and PostgreSQL) give the same
    analysis as the in-process play; only the provenance's data hash differs (user accounts)."""
    outcome = run_demo(
        tmp_path, seed=3, database_url=db_url, protocol=small_protocol, via_http=True
    )
    direct = {k: v for k, v in small_run.analysis.results.items() if k != "provenance"}
    http = {k: v for k, v in outcome.analysis.results.items() if k != "provenance"}
    assert http == direct
    assert outcome.played == small_run.played
    engine = open_engine(db_url)
    try:
        assert verify_audit(engine).ok
        with engine.connect() as conn:
            actors = set(conn.execute(sa.text("SELECT DISTINCT actor FROM audit_record")).scalars())
    finally:
        engine.dispose()
    # the forms were posted by the logged-in site users, not by a system actor
    assert "coordinator@us01" in actors and "endpoint.reviewer" in actors


def test_the_demo_plays_at_the_posterior_medians_not_the_old_exact_fit() -> None:
    from stalwart.play.demo import demo_parameters
    from stalwart.protocol.load import load_protocol
    from stalwart.simulate.parameters import load_parameters
    from stalwart.simulate.posterior import posterior_medians

    medians = posterior_medians()
    params = demo_parameters(load_protocol().protocol)
    for name, value in medians.items():
        key, _, code = name.partition(".")
        entry = getattr(params, key)
        got = entry[code].value if code else entry.value
        assert got == pytest.approx(value), name
    old = load_parameters()
    # the file's persistent excess (36525 days) and exact 12/176 fit are not what the demo plays
    assert old.il2_excess_hazard_window_days.value > 10_000
    assert params.il2_excess_hazard_window_days.value < 365
    assert params.il2_event_hazard_ratio.value < old.il2_event_hazard_ratio.value
