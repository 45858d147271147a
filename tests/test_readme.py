"""README.md's commands: the two commands are the ones .ci/run and the lock use, and the examples
after the demo run as written (on a demo of a smaller variant of the protocol, for time)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stalwart.cli import app
from stalwart.protocol.load import default_protocol_path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
runner = CliRunner()


def _blocks(heading: str) -> list[str]:
    """The ```sh blocks of the README section under ``heading``."""
    section = README.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)


def test_the_two_commands_install_the_lock_and_ci_runs_the_second() -> None:
    demo, tests = (block.strip() for block in _blocks("Two commands"))
    for command in (demo, tests):
        assert command.startswith("python3 -m venv .venv && ")
        assert "-c requirements/lock.txt" in command
    assert demo.endswith(".venv/bin/stalwart demo --seed 1")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert f"\n{tests}\n" in ci, ".ci/run must run the README's test command exactly"


@pytest.mark.slow
def test_the_examples_after_the_demo_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (example,) = _blocks("After the demo")
    small = tmp_path / "small.toml"
    text = default_protocol_path().read_text(encoding="utf-8")
    small.write_text(text.replace("sample_size = 267", "sample_size = 30"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    demo = runner.invoke(app, ["demo", "--seed", "1", "--protocol", str(small)])
    assert demo.exit_code == 0, demo.output
    lines = [line for line in example.splitlines() if line.strip()]
    assert len(lines) >= 5
    for line in lines:
        words = shlex.split(line)
        assert words[0] == "stalwart", line
        if words[1] in ("report", "export"):
            words += ["--protocol", str(small)]
        result = runner.invoke(app, words[1:])
        assert result.exit_code == 0, f"{line}\n{result.output}"
    assert (tmp_path / "stalwart-demo" / "analysis" / "results.json").exists()
    assert list((tmp_path / "stalwart-demo" / "dsmb").glob("*.pdf"))
