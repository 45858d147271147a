"""Run the real demo for many seeds and print how its figures sit against the published ones.

Each seed runs ``stalwart.play.demo.run_demo`` end to end (SQLite, the simulated sites writing
through the capture service, the analysis plan on what was captured), so the figures below come
from real runs, never from the model alone. Prints, per seed and averaged over seeds:

- the week-32 CD4 difference (ANCOVA) of each IL-2 arm vs no therapy (published +134, +133);
- participants with an opportunistic event or death, IL-2 pooled vs no therapy (12 vs 1);
- completers by arm (83 / 78 / 74);
- the demo's wall time (target: under 60 s).

Usage: python benchmarks/demo_calibration.py [--seeds 20] [--first 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def one_seed(seed: int) -> dict[str, Any]:
    from stalwart.play.demo import run_demo

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        outcome = run_demo(Path(folder), seed=seed)
        seconds = time.perf_counter() - started
    results = outcome.analysis.results
    diff = {r["arm"]: r["difference"] for r in results["primary"] if r["method"] == "ancova"}
    pooled = next(
        r for r in results["time_to_event"] if "+" in r["arm"] and r["method"] == "cox_efron"
    )
    return {
        "seed": seed,
        "seconds": seconds,
        "diff_IL2": diff["IL2"],
        "diff_IL2ART": diff["IL2ART"],
        "events_il2": pooled["events"][pooled["arm"]],
        "events_notrt": pooled["events"][pooled["control"]],
        "hr": pooled["hazard_ratio"],
        "completed": outcome.analysis.flow.completed,
        "randomized": results["randomized"]["by_arm"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    seeds = list(range(args.first, args.first + args.seeds))
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(one_seed, seeds))
    print(
        f"{'seed':>4} {'secs':>6} {'IL2-NOTHER':>10} {'IL2ART-NOTHER':>13} "
        f"{'events IL2/NOTHER':>17} {'HR':>7}  completed NOTHER/IL2/IL2ART"
    )
    for r in rows:
        c = r["completed"]
        hr = "NA" if r["hr"] is None else f"{r['hr']:.2f}"
        print(
            f"{r['seed']:>4} {r['seconds']:>6.1f} {r['diff_IL2']:>+10.1f} "
            f"{r['diff_IL2ART']:>+13.1f}"
            f" {r['events_il2']:>8} / {r['events_notrt']:<6} {hr:>7}  "
            f"{c['NOTHER']} / {c['IL2']} / {c['IL2ART']}"
        )

    def mean_se(key: str) -> str:
        values = [float(r[key]) for r in rows]
        se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
        return f"{statistics.fmean(values):.1f} (SE {se:.1f})"

    print()
    print(f"over {len(rows)} seeds (mean, SE of the mean):")
    print(f"  week-32 CD4 difference IL2 - NOTHER    {mean_se('diff_IL2'):>22}   published +134")
    print(f"  week-32 CD4 difference IL2ART - NOTHER {mean_se('diff_IL2ART'):>22}   published +133")
    print(f"  participants with OD/death, IL-2 pooled {mean_se('events_il2'):>20}   published 12")
    print(f"  participants with OD/death, NOTHER       {mean_se('events_notrt'):>20}   published 1")
    for arm, published in (("NOTHER", 83), ("IL2", 78), ("IL2ART", 74)):
        done = [r["completed"][arm] for r in rows]
        print(f"  completed {arm:<6} {statistics.fmean(done):>30.1f}   published {published}")
    secs = [r["seconds"] for r in rows]
    print(
        f"  demo wall time: median {statistics.median(secs):.1f} s, max {max(secs):.1f} s"
        f" ({args.workers} runs at a time on this machine)"
    )


if __name__ == "__main__":
    main()
