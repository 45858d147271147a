"""The command line: help with examples, exit codes, and clear errors instead of tracebacks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stalwart.cli import app
from stalwart.protocol.load import default_protocol_path

runner = CliRunner()
COMMANDS = [
    ["demo"],
    ["init"],
    ["validate"],
    ["audit", "verify"],
    ["randomization", "check"],
    ["simulate"],
    ["serve"],
    ["user", "add"],
    ["user", "list"],
    ["user", "reset-password"],
    ["user", "deactivate"],
    ["user", "reactivate"],
    ["analyze"],
    ["report"],
    ["export"],
    ["import"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Example: stalwart" in result.output


def test_every_command_is_in_the_readme() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for command in COMMANDS:
        assert f"stalwart {' '.join(command)}" in readme


@pytest.fixture()
def small_protocol(tmp_path: Path) -> Path:
    text = default_protocol_path().read_text(encoding="utf-8")
    path = tmp_path / "small.toml"
    path.write_text(text.replace("sample_size = 267", "sample_size = 24"), encoding="utf-8")
    return path


def test_demo_then_audit_verify_then_tamper(tmp_path: Path, small_protocol: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["demo", "--seed", "2", "--out", str(out), "--protocol", str(small_protocol)]
    )
    assert result.exit_code == 0, result.output
    assert "published vs the model's 95% predictive intervals" in result.output
    assert "held out" in result.output and "This demo run: one simulated trial" in result.output
    assert (out / "results.json").exists() and (out / "report.html").exists()
    # not a terminal: each stage is printed as lines as it runs, then the time at the end
    for stage in (
        "people screened at the sites",
        "participants randomized",
        "follow-up forms captured",
        "events adjudicated",
        "analysis plan",
        "results and report",
    ):
        assert stage in result.stderr, result.stderr
    assert "finished in" in result.output
    url = f"sqlite:///{out / 'stalwart.db'}"
    ok = runner.invoke(app, ["audit", "verify", "--database", url])
    assert ok.exit_code == 0, ok.output
    assert "audit chain verified" in ok.output
    with sqlite3.connect(out / "stalwart.db") as conn:
        conn.execute("UPDATE lab_result SET value = value + 1 WHERE id = 1")
    bad = runner.invoke(app, ["audit", "verify", "--database", url])
    assert bad.exit_code == 1
    assert "lab_result id 1" in bad.output


def test_init_then_init_again_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trial.db'}"
    first = runner.invoke(app, ["init", "--database", url, "--seed", "11"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["init", "--database", url, "--seed", "11"])
    assert second.exit_code == 1
    assert "already holds a trial" in second.output


def test_init_draws_a_128_bit_seed_and_shows_it_once_or_writes_it(tmp_path: Path) -> None:
    import sqlite3

    from stalwart.randomization.allocation import seed_matches

    url = f"sqlite:///{tmp_path / 'a.db'}"
    shown = runner.invoke(app, ["init", "--database", url])
    assert shown.exit_code == 0, shown.output
    seed = int(shown.output.split("randomization seed: ")[1].split()[0])
    assert seed.bit_length() > 64  # drawn from 128 bits: not 0, not a small number
    with sqlite3.connect(tmp_path / "a.db") as conn:
        (fingerprint,) = conn.execute("SELECT randomization_seed_sha256 FROM trial").fetchone()
    assert seed_matches(seed, fingerprint) and not seed_matches(0, fingerprint)
    assert str(seed) not in (tmp_path / "a.db").read_bytes().decode("latin-1")
    secret = tmp_path / "seed.txt"
    written = runner.invoke(
        app, ["init", "--database", f"sqlite:///{tmp_path / 'b.db'}", "--seed-file", str(secret)]
    )
    assert written.exit_code == 0, written.output
    flat = written.output.replace("\n", "")
    assert "randomization seed:" not in flat and str(secret) in flat
    assert int(secret.read_text()) != seed and secret.stat().st_mode & 0o077 == 0
    again = runner.invoke(
        app, ["init", "--database", f"sqlite:///{tmp_path / 'c.db'}", "--seed-file", str(secret)]
    )
    assert again.exit_code == 1 and "give a new file" in " ".join(again.output.split())
    assert not (tmp_path / "c.db").exists() or (tmp_path / "c.db").stat().st_size == 0


def test_validate_names_the_bad_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        default_protocol_path().read_text().replace("block_sizes = [3, 6]", "block_sizes = [4, 6]")
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "block_sizes" in result.output and "Traceback" not in result.output
    good = runner.invoke(app, ["validate", str(default_protocol_path())])
    assert good.exit_code == 0 and "valid" in good.output


@pytest.mark.parametrize("url", ["not a url", "sqlite:////no/such/folder/x.db"])
def test_bad_database_url_exits_1_with_a_message(url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", "--database", url])
    assert result.exit_code == 1
    assert "error:" in result.output and "Traceback" not in result.output


def test_audit_verify_on_a_database_without_a_trial(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = runner.invoke(app, ["audit", "verify", "--database", url])
    assert result.exit_code == 1
    assert "stalwart init" in result.output


def test_bad_flag_is_a_usage_error() -> None:
    result = runner.invoke(app, ["demo", "--seed", "many"])
    assert result.exit_code == 2


def test_model_check_table_shows_intervals_and_held_out_checks() -> None:
    from rich.console import Console

    from stalwart.cli.design import model_check_table

    console = Console(width=200, record=True)
    console.print(model_check_table())
    text = console.export_text()
    assert "UK-Vanguard CD4 AUC difference" in text and "116 (51 to 181)" in text
    assert "post-IL-2 follow-up HR" in text and "1.45 (0.38 to 5.45)" in text
    assert text.count("likelihood") == 7 and text.count("held out") == 3
    assert text.count("allocation") == 3 and "design" in text
    for figure in ("CD4 difference IL2", "events IL-2 pooled", "events NOTHER", "completed IL2"):
        assert figure in text
    assert "NO" not in text.split()  # every published figure inside its interval
