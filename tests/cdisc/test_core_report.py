"""CDISC's rules engine (CORE) on the SDTM export: no finding the reviewer's guide does not explain.

The CORE test runs when CORE is set up on the machine (``shared/tools/cdisc-core/setup.sh`` into
a work folder named by ``STALWART_CORE_WORK``) and is skipped otherwise, saying how to set it up.
The report reader is tested on a report written here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cdisc_export import CdiscTrial
from stalwart.cdisc.core_report import CoreSetup, core_setup, rule_counts, run_core
from stalwart.cdisc.csdrg import ENGINE_FINDINGS

TOOLS = Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "cdisc-core"


def test_the_export_passes_core_but_for_the_explained_findings(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    setup = core_setup(TOOLS)
    if not isinstance(setup, CoreSetup):
        pytest.skip(setup)  # before the trial is made: a skip costs nothing
    cdisc_trial: CdiscTrial = request.getfixturevalue("cdisc_trial")
    counts = rule_counts(run_core(setup, cdisc_trial.sdtm, tmp_path / "core"))
    left = {rule: rows for rule, rows in counts.items() if rule not in ENGINE_FINDINGS}
    assert left == {}, f"CORE findings the reviewer's guide does not explain: {left}"
    guide = (cdisc_trial.sdtm / "csdrg.html").read_text(encoding="utf-8")
    for rule, rows in re.findall(r"<td>(CORE-\d+)</td><td>(\d+)</td>", guide):
        assert counts.get(rule, 0) == int(rows), (rule, rows, counts)  # the guide's announced rows


def test_rule_counts_add_the_rows_of_each_rule(tmp_path: Path) -> None:
    report = tmp_path / "core.json"
    summary = [
        {"core_id": "CORE-000767", "dataset": "AE", "issues": 12, "message": "m"},
        {"core_id": "CORE-000767", "dataset": "DS", "issues": 3, "message": "m"},
        {"core_id": "CORE-000761", "dataset": "TS", "issues": 1, "message": "m"},
    ]
    report.write_text(json.dumps({"Issue_Summary": summary}), encoding="utf-8")
    assert rule_counts(report) == {"CORE-000761": 1, "CORE-000767": 15}


def test_a_missing_setup_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STALWART_CORE_WORK", raising=False)
    assert "STALWART_CORE_WORK" in str(core_setup(TOOLS))
    monkeypatch.setenv("STALWART_CORE_WORK", str(tmp_path))
    assert "no CORE set-up" in str(core_setup(TOOLS))
    (tmp_path / "venv").mkdir()
    assert "run.sh" in str(core_setup(tmp_path / "nowhere"))
