"""Every speed target of the speed issue, measured in one run, each against its reference.

Runs the three benchmarks one after another on this machine, each in its own process with its
full output shown, then prints one table: target, reference, measured figure, met or missed.

1. ``analyze_vs_r.py``: ``stalwart analyze`` on 1,000,000 participants (ADSL + ADTTE CSV)
   against R doing the same work (read.csv, merge, coxph with Wald/LR/score, survdiff, survfit
   medians with log-log CIs): our whole process <= 0.5 x R's.
2. ``montecarlo.py --command-replicates 20000``: replicate trials/s/core of ``stalwart
   simulate``'s pipeline (>= 10,000), beside the random-number floor of its draws, and the whole
   command ``stalwart simulate --replicates 20000 --seed 1`` (< 8 s wall).
3. ``command_speed.py``: ``demo --seed 1`` (< 30 s), ``report --closed --format both`` on the
   demo (< 10 s), ``export sdtm`` and ``export adam`` (< 5 s each).

With ``--baseline SRC`` (another checkout's ``src``) each benchmark also measures that code in
the same run and checks that its results are the same (results.json, oc.json numbers, exports).
Needs a plain install plus the test extras; R (Debian's r-base-core with r-cran-survival) for
the first comparison, which is skipped, saying so, without ``Rscript``.

    python benchmarks/targets.py [--baseline /path/to/other/src] [--participants 1000000]
        [--replicates 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _run(script: str, arguments: list[str], summary: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one benchmark, its output shown as it comes; the figures it wrote to ``summary``."""
    print(f"\n=== {script} {' '.join(arguments)}", flush=True)
    done = subprocess.run(
        [sys.executable, str(HERE / script), *arguments, "--summary", str(summary)],
        env=env,
        check=False,
    )
    if done.returncode != 0 or not summary.exists():
        print(f"=== {script} failed ({done.returncode}); its targets are reported as not measured")
        return {}
    figures: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    return figures


def _engine_rate(figures: dict[str, Any]) -> float:
    engine = figures["engine"]
    return float(engine["replicates"] / (engine["simulate"] + engine["analyses"]))


def _floor_rate(figures: dict[str, Any]) -> float:
    floor = figures["floor"]
    return float(floor["replicates"] / floor["seconds"])


def table(analyze: dict[str, Any], montecarlo: dict[str, Any], commands: dict[str, Any]) -> None:
    """The targets, measured figure beside each, met or missed."""
    rows: list[tuple[str, str, str, bool | None]] = []
    if "r" in analyze:
        ours, r = analyze["stalwart_after"], analyze["r"]
        ratio = ours["wall"] / r["wall"]
        rows.append(
            (
                f"analyze {analyze['participants']:,} participants <= 0.5 x R",
                f"{ours['wall']:.1f} s vs R {r['wall']:.1f} s wall",
                f"{ratio:.2f} x R (CPU {ours['cpu'] / r['cpu']:.2f})",
                ratio <= 0.5,
            )
        )
    else:
        rows.append(("analyze <= 0.5 x R", "not measured", "R or the run missing", None))
    if montecarlo:
        after = montecarlo["after"]
        rate = _engine_rate(after)
        rows.append(
            (
                "Monte Carlo >= 10,000 trials/s/core",
                f"random-number floor {_floor_rate(after):,.0f}/s",
                f"{rate:,.0f} trials/s/core",
                rate >= 10_000,
            )
        )
        if "command" in after:
            command = after["command"]
            rows.append(
                (
                    f"simulate --replicates {command['replicates']} < 8 s",
                    f"{_cores()} cores",
                    f"{command['wall']:.1f} s wall, {command['cpu']:.1f} s CPU",
                    command["wall"] < 8.0,
                )
            )
    else:
        rows.append(("Monte Carlo and simulate", "not measured", "the benchmark failed", None))
    targets = {"demo": 30.0, "report": 10.0, "export sdtm": 5.0, "export adam": 5.0}
    runs = commands.get("this tree", {})
    for command, target in targets.items():
        run = runs.get(command)
        if run is None or run.get("error"):
            why = run["error"] if run else "not measured"
            rows.append((f"{command} < {target:.0f} s", "", f"skipped: {why}", None))
            continue
        rows.append(
            (
                f"{command} < {target:.0f} s",
                "",
                f"{run['wall']:.1f} s wall, {run['cpu']:.1f} s CPU",
                run["wall"] < target,
            )
        )
    print(f"\n{'target':<42}{'reference':<34}{'measured':<36}verdict")
    for target_text, reference, measured, met in rows:
        verdict = "not measured" if met is None else ("met" if met else "MISSED")
        print(f"{target_text:<42}{reference:<34}{measured:<36}{verdict}")
    print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another src tree to compare with")
    parser.add_argument("--participants", type=int, default=1_000_000)
    parser.add_argument("--replicates", type=int, default=20_000)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    before = ["--before", str(args.baseline.resolve())] if args.baseline else []
    baseline = ["--baseline", str(args.baseline.resolve())] if args.baseline else []
    with tempfile.TemporaryDirectory(prefix="stalwart-targets-") as scratch:
        out = Path(scratch)
        analyze = _run(
            "analyze_vs_r.py", ["--n", str(args.participants), *before], out / "a.json", env
        )
        montecarlo = _run(
            "montecarlo.py",
            [
                *("--replicates", "2000", "--skip-dask", "--loop-replicates", "50"),
                *("--command-replicates", str(args.replicates), *baseline),
            ],
            out / "m.json",
            {**env, "OMP_NUM_THREADS": "1"},
        )
        commands = _run("command_speed.py", baseline, out / "c.json", env)
    table(analyze, montecarlo, commands)


if __name__ == "__main__":
    main()
