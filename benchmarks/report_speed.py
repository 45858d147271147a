"""Time the closed DSMB report (HTML and PDF) of a trial database, phase by phase.

Each run is a fresh Python process (imports included, as ``stalwart report`` pays them) that
prints the seconds of each phase: snapshot, HTML (datasets, analysis, tables, figures), PDF
(WeasyPrint) and the total. ``--baseline SRC`` also times another source tree (e.g. the main
checkout's ``src``) in the same run, alternating the two, so that the figures before and after a
change are measured under the same load. Target: under 10 s for the demo trial.

    python3 benchmarks/report_speed.py --database sqlite:///demo-out/stalwart.db \\
        [--baseline /work/main/src] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

TARGET_S = 10.0

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from stalwart.capture.db import open_engine
from stalwart.reports.study_report import render_pdf, render_study_report
from stalwart.reports.snapshot import take_snapshot
t1 = time.perf_counter()
engine = open_engine(sys.argv[1])
snapshot = take_snapshot(engine)
t2 = time.perf_counter()
html = render_study_report(snapshot, True)
t3 = time.perf_counter()
pdf, pages = render_pdf(html)
t4 = time.perf_counter()
print(json.dumps({"imports": t1 - t0, "snapshot": t2 - t1, "html": t3 - t2, "pdf": t4 - t3,
                  "total": t4 - t0, "pages": pages}))
"""


def _run(src: Path, database: str) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(src), MPLBACKEND="Agg")
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, database],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="SQLAlchemy URL of a trial database")
    parser.add_argument("--baseline", type=Path, help="another src tree to time beside this one")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    trees = {"this tree": Path(__file__).resolve().parents[1] / "src"}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.reps):
        for name, src in trees.items():
            runs[name].append(_run(src, args.database))
    for name, results in runs.items():
        median = {key: statistics.median(r[key] for r in results) for key in results[0]}
        verdict = "meets" if median["total"] < TARGET_S else "misses"
        print(
            f"{name:10s} ({trees[name]}): total {median['total']:.1f} s = imports "
            f"{median['imports']:.1f} + snapshot {median['snapshot']:.1f} + html "
            f"{median['html']:.1f} + pdf {median['pdf']:.1f}; {int(median['pages'])} pages; "
            f"{verdict} the {TARGET_S:g} s target (median of {len(results)})"
        )


if __name__ == "__main__":
    main()
