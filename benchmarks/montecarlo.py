"""Replicate trials per second per core: the Monte Carlo pipeline, its random-number floor, and
the same figures of a baseline checkout in the same run.

Measured in one run, on one core (``OMP_NUM_THREADS=1``; CPU seconds of this process, so other
load on a shared machine disturbs the figures less than wall time would):

1. **vectorized**: ``--replicates`` STALWART trials simulated by
   :class:`~stalwart.simulate.vectorized.ReplicateSimulator` (entry and week-32 labs only) and
   analysed by the batched kernels: week-32 CD4 ANCOVA for each IL-2 arm vs NOTHER, Cox (Efron)
   and log-rank for pooled IL-2 vs NOTHER. Reported as the whole pipeline, the simulator alone
   and the analyses alone, for each fidelity (``outcomes``, the default of ``stalwart
   simulate``: only what the analyses read; ``full``: every record).
2. **engine**: what ``stalwart simulate`` runs per block: the simulator as the study builds it
   (:meth:`~stalwart.montecarlo.engine.TrialSpec.simulator`) and every analysis of the plan
   (:func:`~stalwart.montecarlo.engine.analyse`: ANCOVA and Welch per IL-2 arm, Cox, Firth and
   log-rank per time-to-event comparison, the group-sequential looks).
3. **random-number floor**: the simulator's generators are recorded (every call: method, size,
   arguments) while it draws the engine's replicates, then the same calls are replayed on fresh
   generators of the same kind (PCG64) and timed: the cost of drawing the numbers alone, which
   no implementation of this random stream can go below. Printed with the simulator's ratio to it.
4. **loop**: the analyses of 1. one trial at a time with statsmodels (``OLS``) and lifelines
   (``CoxPHFitter``, ``logrank_test``) on ``--loop-replicates`` trials, extrapolated. Skipped,
   saying so, where statsmodels or lifelines is not installed (a plain install lacks them).
5. **Dask scaling**: ``run_study`` on a LocalCluster with 2 workers vs 1. Skipped where
   ``distributed`` is not installed, or with ``--skip-dask``.

With ``--baseline SRC`` (the ``src`` folder of another checkout, e.g. the main branch's) or
``--baseline-ref REF`` (a git revision of this repository, its ``src`` extracted to a temporary
folder), 1-3 are also measured for that code, in a child process on the same machine in the same
run, and printed beside this code's figures (before / after). ``--command-replicates N`` also
times the whole command ``stalwart simulate --replicates N --seed 1`` (alternative and null) for
each code: wall seconds and CPU seconds of the child process.

Usage: OMP_NUM_THREADS=1 python benchmarks/montecarlo.py [--replicates 5000]
       [--baseline-ref main] [--command-replicates 20000] [--loop-replicates 200]
       [--dask-replicates 4000] [--skip-dask]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from stalwart.analysis.kernels.batched import (
    batched_ancova,
    batched_cox,
    batched_logrank,
    event_times,
)
from stalwart.montecarlo.engine import TrialSpec, analyse
from stalwart.montecarlo.executors import available_cores
from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import load_parameters
from stalwart.simulate.vectorized import ReplicateData, ReplicateSimulator

REPO = Path(__file__).resolve().parent.parent


def vectorized_analyses(data: ReplicateData) -> dict[str, np.ndarray]:
    """ANCOVA per IL-2 arm, Cox and log-rank pooled: every replicate at once."""
    y = data.cd4[:, :, data.visit("WK32")]
    base = data.baseline_cd4
    complete = np.isfinite(y)
    arm = data.arm.astype(np.int64)
    out = {}
    for treated in (1, 2):
        out[f"ancova{treated}"] = batched_ancova(y, arm, base, complete, treated, 0).p_value
    time_, event = data.time_to_event()
    times = event_times(time_, event, arm > 0, np.ones(arm.shape, dtype=bool))
    out["cox"] = batched_cox(times).p_value
    out["logrank"] = batched_logrank(times).p_value
    return out


def loop_analyses(data: ReplicateData, replicates: int) -> dict[str, list[float]]:
    """The same analyses one trial at a time with statsmodels and lifelines."""
    import statsmodels.api as sm
    from lifelines import CoxPHFitter
    from lifelines.statistics import logrank_test

    y_all = data.cd4[:, :, data.visit("WK32")]
    time_all, event_all = data.time_to_event()
    out: dict[str, list[float]] = {"ancova1": [], "ancova2": [], "cox": [], "logrank": []}
    for r in range(replicates):
        keep = np.isfinite(y_all[r])
        arm = data.arm[r][keep]
        design = np.column_stack(
            [np.ones(keep.sum()), arm == 1, arm == 2, data.baseline_cd4[r][keep]]
        ).astype(float)
        fit = sm.OLS(y_all[r][keep], design).fit()
        out["ancova1"].append(float(fit.pvalues[1]))
        out["ancova2"].append(float(fit.pvalues[2]))
        frame = pd.DataFrame(
            {"T": time_all[r], "E": event_all[r].astype(int), "x": (data.arm[r] > 0).astype(int)}
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                cph = CoxPHFitter().fit(frame, "T", "E")
                out["cox"].append(float(cph.summary["p"].iloc[0]))
            except Exception:  # lifelines fails where a group has no events
                out["cox"].append(float("nan"))
            treated = frame["x"] == 1
            lr = logrank_test(
                frame["T"][treated], frame["T"][~treated], frame["E"][treated], frame["E"][~treated]
            )
        out["logrank"].append(float(lr.p_value))
    return out


def dask_seconds(workers: int, replicates: int) -> float:
    from stalwart.montecarlo.executors import DaskExecutor
    from stalwart.montecarlo.study import run_study

    with DaskExecutor(workers) as dask, tempfile.TemporaryDirectory() as tmp:
        run_study(Path(tmp), replicates=200, seed=9, executor=dask, block=100)  # warm workers
        started = time.perf_counter()
        run_study(Path(tmp), replicates=replicates, seed=1, executor=dask)
        return time.perf_counter() - started


class _Recorder:
    """A generator that records every call made on it (method, arguments) and passes it on."""

    def __init__(self, generator: np.random.Generator) -> None:
        self._generator = generator
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._generator, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            return method(*args, **kwargs)

        return call


@contextlib.contextmanager
def recording() -> Iterator[list[_Recorder]]:
    """Every generator the simulator makes (``np.random.default_rng``) recorded."""
    made: list[_Recorder] = []
    original = np.random.default_rng

    def default_rng(seed: Any = None) -> Any:
        recorder = _Recorder(original(seed))
        made.append(recorder)
        return recorder

    np.random.default_rng = default_rng  # type: ignore[assignment]
    try:
        yield made
    finally:
        np.random.default_rng = original


def _cpu() -> float:
    return time.process_time()


def measure(replicates: int, block: int) -> dict[str, Any]:
    """Every figure of 1-3 for the code imported (this checkout's, or the baseline's)."""
    out: dict[str, Any] = {}
    for fidelity in ("full", "outcomes"):
        simulator = ReplicateSimulator(
            load_protocol().protocol, load_parameters(), visits=["WK32"], fidelity=fidelity
        )
        vectorized_analyses(simulator.simulate(100, 99))  # warm-up
        sim_s = ana_s = 0.0
        for start in range(0, replicates, block):
            t0 = _cpu()
            data = simulator.simulate(min(block, replicates - start), 1, start)
            t1 = _cpu()
            vectorized_analyses(data)
            sim_s += t1 - t0
            ana_s += _cpu() - t1
        out[fidelity] = {"simulate": sim_s, "analyses": ana_s, "replicates": replicates}
    spec = TrialSpec(load_protocol().protocol, load_parameters(), seed=1)
    simulator = spec.simulator()
    analyse(simulator.simulate(100, 99), simulator.protocol, spec.looks)  # warm-up
    sim_s = ana_s = 0.0
    for start in range(0, replicates, block):
        t0 = _cpu()
        data = simulator.simulate(min(block, replicates - start), 1, start)
        t1 = _cpu()
        analyse(data, simulator.protocol, spec.looks)
        sim_s += t1 - t0
        ana_s += _cpu() - t1
    out["engine"] = {"simulate": sim_s, "analyses": ana_s, "replicates": replicates}
    floor_replicates = min(replicates, 2000)
    with recording() as made:
        simulator.simulate(floor_replicates, 1)
    numbers = 0
    best = float("inf")
    for _ in range(3):  # the fastest of three replays
        t0 = _cpu()
        for index, recorder in enumerate(made):
            generator = np.random.Generator(np.random.PCG64(index))
            for name, args, kwargs in recorder.calls:
                getattr(generator, name)(*args, **kwargs)
        best = min(best, _cpu() - t0)
    for recorder in made:
        generator = np.random.Generator(np.random.PCG64(0))
        for name, args, kwargs in recorder.calls:
            numbers += int(np.size(getattr(generator, name)(*args, **kwargs)))
    out["floor"] = {
        "seconds": best,
        "replicates": floor_replicates,
        "numbers": numbers,
        "calls": sum(len(r.calls) for r in made),
    }
    return out


def _rate(replicates: int, seconds: float) -> float:
    return replicates / seconds if seconds > 0 else float("nan")


def report(figures: dict[str, dict[str, Any]]) -> None:
    """Print 1-3 for each code measured (``after``, and ``before`` where a baseline ran)."""
    names = list(figures)
    width = 12
    head = "".join(f"{n:>{width}}" for n in names)
    print(f"replicate trials/s/core (CPU time, one process)   {head}")
    rows = [
        ("full", "vectorized, full fidelity: whole pipeline", "whole"),
        ("full", "  simulator alone", "simulate"),
        ("outcomes", "vectorized, outcomes fidelity: whole pipeline", "whole"),
        ("outcomes", "  simulator alone", "simulate"),
        ("outcomes", "  analyses alone (2 ANCOVA + Cox + log-rank)", "analyses"),
        ("engine", "stalwart simulate's engine: whole pipeline", "whole"),
        ("engine", "  simulator alone (outcomes)", "simulate"),
        ("engine", "  every analysis of the plan + looks", "analyses"),
    ]
    for part, label, what in rows:
        cells = ""
        for name in names:
            f = figures[name][part]
            seconds = f["simulate"] + f["analyses"] if what == "whole" else f[what]
            cells += f"{_rate(f['replicates'], seconds):>{width},.0f}"
        print(f"{label:<50}{cells}")
    cells = ""
    for name in names:
        floor = figures[name]["floor"]
        cells += f"{_rate(floor['replicates'], floor['seconds']):>{width},.0f}"
    print(f"{'random-number floor (the draws alone, replayed)':<50}{cells}")
    cells = ""
    for name in names:
        f, floor = figures[name]["engine"], figures[name]["floor"]
        per_sim = f["simulate"] / f["replicates"]
        per_floor = floor["seconds"] / floor["replicates"]
        cells += f"{per_sim / per_floor:>{width - 1}.1f}x"
    print(f"{'  simulator / floor':<50}{cells}")
    floor = figures[names[-1]]["floor"]
    print(
        f"  the floor draws {floor['numbers'] / floor['replicates']:,.0f} numbers per replicate "
        f"in {floor['calls'] / floor['replicates'] * 100:,.0f} generator calls per stream of "
        "100 replicates (PCG64)"
    )
    cells = ""
    for name in names:
        f, floor = figures[name]["engine"], figures[name]["floor"]
        per_floor = floor["seconds"] / floor["replicates"]
        cells += f"{_rate(1, per_floor + f['analyses'] / f['replicates']):>{width},.0f}"
    print(f"{'  ceiling: the floor + the analyses, nothing else':<50}{cells}")
    print(
        "targets: >= 10,000 replicate trials/s/core; >= 100x the loop. While the results stay "
        "byte-identical the draws stay the same: no pipeline can beat the floor, nor the "
        "ceiling without faster analyses"
    )


def baseline_source(args: argparse.Namespace, stack: contextlib.ExitStack) -> Path | None:
    if args.baseline:
        return Path(args.baseline).resolve()
    if not args.baseline_ref:
        return None
    folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", args.baseline_ref, "src"],
        check=True,
        capture_output=True,
    ).stdout
    tar = folder / "src.tar"
    tar.write_bytes(archive)
    with tarfile.open(tar) as opened:
        opened.extractall(folder, filter="data")
    return folder / "src"


def _child_env(source: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(source), "OMP_NUM_THREADS": "1"}


def command_seconds(source: Path, replicates: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``stalwart simulate --replicates N --seed 1`` with ``source``."""
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(
            [
                *(sys.executable, "-m", "stalwart", "simulate"),
                *("--replicates", str(replicates), "--seed", "1", "--out", tmp),
            ],
            check=True,
            capture_output=True,
            env=_child_env(source),
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=5000)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--loop-replicates", type=int, default=200)
    parser.add_argument("--dask-replicates", type=int, default=4000)
    parser.add_argument("--skip-dask", action="store_true")
    parser.add_argument("--baseline", help="src folder of the code to compare against")
    parser.add_argument("--baseline-ref", help="git revision whose src to compare against")
    parser.add_argument("--command-replicates", type=int, default=0)
    parser.add_argument("--summary", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.replicates, args.block)))
        return
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for a one-core figure")
    with contextlib.ExitStack() as stack:
        source = baseline_source(args, stack)
        figures: dict[str, dict[str, Any]] = {}
        if source is not None:
            child = subprocess.run(
                [
                    *(sys.executable, __file__, "--json"),
                    *("--replicates", str(args.replicates), "--block", str(args.block)),
                ],
                check=True,
                capture_output=True,
                text=True,
                env=_child_env(source),
            )
            figures["before"] = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"before: {source}")
        figures["after"] = measure(args.replicates, args.block)
        print(f"after: {Path(sys.modules['stalwart'].__file__ or '').parent.parent}")
        print(f"{args.replicates} replicates, blocks of {args.block}; uptime load: {_load()}")
        report(figures)
        if args.command_replicates:
            n = args.command_replicates
            print(
                f"whole command: stalwart simulate --replicates {n} --seed 1 ({n} trials under "
                f"the alternative, {n} under the null, {n} calibrating the harm boundary; "
                f"default executor, {available_cores()} cores)"
                + (", target < 8 s wall" if n == 20_000 else "")
            )
            codes = ([("before", source)] if source is not None else []) + [("after", _src())]
            for name, code in codes:
                wall, cpu = command_seconds(code, n)
                figures[name]["command"] = {"replicates": n, "wall": wall, "cpu": cpu}
                print(
                    f"  {name:<7} {wall:7.1f} s wall, {cpu:7.1f} s CPU "
                    f"({3 * n / cpu:,.0f} replicate trials per CPU second)"
                    + ((": met" if wall < 8 else ": missed") if n == 20_000 else "")
                )
        if args.summary is not None:
            args.summary.write_text(json.dumps(figures), encoding="utf-8")
    loop_comparison(args)
    if args.skip_dask:
        return
    if importlib.util.find_spec("distributed") is None:
        print("Dask scaling: skipped (distributed is not installed: pip install .[dask])")
        return
    one = dask_seconds(1, args.dask_replicates)
    two = dask_seconds(2, args.dask_replicates)
    trials = 2 * args.dask_replicates
    print(f"Dask LocalCluster, full study ({args.dask_replicates} + null replicates, looks):")
    print(f"  1 worker  {one:6.2f} s ({trials / one:7,.0f} trials/s)")
    print(f"  2 workers {two:6.2f} s ({trials / two:7,.0f} trials/s); scaling {one / two:.2f}x")
    print(f"  cores on this machine: {os.cpu_count()}")


def _src() -> Path:
    return Path(sys.modules["stalwart"].__file__ or "").resolve().parent.parent


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def loop_comparison(args: argparse.Namespace) -> None:
    """The vectorized analyses against a per-trial loop with statsmodels and lifelines."""
    missing = [m for m in ("statsmodels", "lifelines") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"per-trial loop comparison: skipped ({', '.join(missing)} not installed)")
        return
    simulator = ReplicateSimulator(
        load_protocol().protocol, load_parameters(), visits=["WK32"], fidelity="outcomes"
    )
    n = max(args.loop_replicates, 1)
    data = simulator.simulate(max(n, 500), 1)
    t0 = _cpu()
    sim_check = simulator.simulate(max(n, 500), 1)
    sim_s = (_cpu() - t0) / data.n_replicates
    t0 = _cpu()
    check = vectorized_analyses(sim_check)
    ana_s = (_cpu() - t0) / data.n_replicates
    t0 = _cpu()
    loop = loop_analyses(data, n)
    loop_s = (_cpu() - t0) / n
    agree = np.nanmax(np.abs(np.array(loop["ancova1"]) - check["ancova1"][:n]))
    print(f"per-trial loop (statsmodels OLS + lifelines Cox + log-rank), {n} trials timed:")
    print(f"  analyses         {1 / loop_s:9,.1f} replicate trials/s/core (extrapolated)")
    print(f"  analyses ratio   {loop_s / ana_s:9,.0f}x vectorized / loop")
    print(f"  pipeline ratio   {(loop_s + sim_s) / (ana_s + sim_s):9,.0f}x vs simulate + loop")
    print(f"  largest ANCOVA p-value difference vs statsmodels: {agree:.1e}")


if __name__ == "__main__":
    main()
