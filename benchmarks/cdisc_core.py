"""Print CDISC CORE's findings by rule for an SDTM export (default: the demo trial's).

CORE runs offline from a work folder set up by ``shared/tools/cdisc-core/setup.sh`` and named by
``STALWART_CORE_WORK``. With ``--sdtm FOLDER`` the folder is validated as it is; without it the
demo (seed 1) runs into a temporary folder, is exported as SDTM and validated. Prints one line per
rule (rows reported, datasets) and the totals; for comparison, CDISC's own SDTM-MSG v2.0 sample
shows 23 rules (660 rows) under the same setup.

Usage: STALWART_CORE_WORK=/path/core-work python benchmarks/cdisc_core.py [--sdtm FOLDER] [--seed 1]

Measured on the demo (seed 1, 267 subjects; CORE from the shared/tools/cdisc-core setup, SDTMIG
3.4, CT 2015-12-18): 4 rules, 2938 rows: CORE-000741 1 (TS; the rule asks for TSPARMCD PCLASS,
CDISC CT's code is PCLAS), CORE-000767 2759 (AE, CE, DS; engine noise, one per coded record),
CORE-000885 and CORE-000886 89 each (DM; the no-therapy arm, no EX by design). Each is explained
in the export's csdrg.html. CDISC's SDTM-MSG v2.0 sample: 23 rules, 660 rows (767: 18 rows).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from stalwart.cdisc.core_report import CoreSetup, core_setup, rule_counts, run_core

TOOLS = Path(__file__).resolve().parents[1].parent / "shared" / "tools" / "cdisc-core"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdtm", type=Path, help="an SDTM folder (default: export the demo)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup = core_setup(TOOLS)
    if not isinstance(setup, CoreSetup):
        print(f"CDISC CORE comparison skipped: {setup}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.sdtm
        if folder is None:
            from stalwart.capture.db import open_engine
            from stalwart.cdisc.export import export_cdisc
            from stalwart.play.demo import run_demo

            outcome = run_demo(Path(tmp) / "demo", seed=args.seed)
            folder = Path(tmp) / "sdtm"
            export_cdisc("sdtm", open_engine(outcome.database_url), folder)
        started = time.perf_counter()
        report = run_core(setup, folder, Path(tmp) / "core")
        seconds = time.perf_counter() - started
        datasets: dict[str, set[str]] = defaultdict(set)
        for row in json.loads(report.read_text(encoding="utf-8"))["Issue_Summary"]:
            datasets[row["core_id"]].add(row["dataset"])
        counts = rule_counts(report)
    for rule, rows in counts.items():
        print(f"{rule:12} {rows:7d} rows  {', '.join(sorted(datasets[rule]))}")
    print(f"{len(counts)} rules, {sum(counts.values())} rows ({seconds:.0f} s of CORE on {folder})")


if __name__ == "__main__":
    main()
