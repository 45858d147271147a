"""Running CDISC's Open Rules Engine (CORE) on an SDTM folder and reading its report.

CORE is not a dependency of stalwart: it is set up beside it (``shared/tools/cdisc-core``'s
``setup.sh`` into a work folder) and run through that folder's ``run.sh``. ``STALWART_CORE_WORK``
names the work folder and ``STALWART_CORE_TOOLS`` the folder of ``run.sh`` (default: the
``shared/tools/cdisc-core`` beside the repository); :func:`core_setup` says what is missing, so a
test can skip with that reason. :func:`run_core` runs the engine; :func:`rule_counts` reads the
report's ``Issue_Summary`` as rows per rule.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stalwart.errors import ConfigurationError

__all__ = ["CoreSetup", "core_setup", "rule_counts", "run_core"]


@dataclass(frozen=True)
class CoreSetup:
    """Where CORE is: its work folder (from ``setup.sh``) and the folder of ``run.sh``."""

    work: Path
    tools: Path


def core_setup(default_tools: Path) -> CoreSetup | str:
    """The CORE setup named by the environment, or the reason there is none (a sentence)."""
    work = os.environ.get("STALWART_CORE_WORK")
    if not work:
        return (
            "CORE is not set up: run shared/tools/cdisc-core/setup.sh into a work folder and set "
            "STALWART_CORE_WORK to it"
        )
    tools = Path(os.environ.get("STALWART_CORE_TOOLS", str(default_tools)))
    if not (Path(work) / "venv").is_dir():
        return f"STALWART_CORE_WORK={work} holds no CORE set-up (no venv/): run setup.sh into it"
    if not (tools / "run.sh").is_file():
        return f"no run.sh in {tools}: set STALWART_CORE_TOOLS to the cdisc-core tools folder"
    return CoreSetup(Path(work), tools)


def run_core(setup: CoreSetup, sdtm: Path, out_prefix: Path, timeout: float = 1200) -> Path:
    """Validate the SDTM folder with CORE; the JSON report's path (``ConfigurationError`` if the
    engine fails, with the end of its output)."""
    done = subprocess.run(
        ["bash", str(setup.tools / "run.sh"), str(setup.work), str(sdtm), str(out_prefix)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    report = out_prefix.with_name(out_prefix.name + ".json")
    if done.returncode != 0 or not report.is_file():
        raise ConfigurationError(
            f"CORE failed on {sdtm} (exit {done.returncode}): {(done.stderr or done.stdout)[-800:]}"
        )
    return report


def rule_counts(report: Path) -> dict[str, int]:
    """Rows reported per CORE rule (all datasets together), from a CORE JSON report."""
    summary = json.loads(report.read_text(encoding="utf-8")).get("Issue_Summary", [])
    counts: Counter[str] = Counter()
    for row in summary:
        counts[str(row["core_id"])] += int(row["issues"])
    return dict(sorted(counts.items()))
