"""Replicate trials per second per core: the vectorized Monte Carlo engine vs a per-trial loop.

Measured in one run, on one core (``OMP_NUM_THREADS=1``):

1. **vectorized**: ``--replicates`` STALWART trials simulated by
   :class:`~stalwart.simulate.vectorized.ReplicateSimulator` (entry and week-32 labs only) and
   analysed by the batched kernels: week-32 CD4 ANCOVA for each IL-2 arm vs NOTHER, Cox (Efron)
   and log-rank for pooled IL-2 vs NOTHER. Reported as the whole pipeline, the simulator alone
   and the analyses alone, for each fidelity (``outcomes``, the default of ``stalwart
   simulate``: only what the analyses read; ``full``: every record).
2. **loop**: the same analyses of the same simulated trials (the outcomes mode's), one trial
   at a time, with statsmodels (``OLS`` of ``cd4 ~ arm + baseline``) and lifelines (``CoxPHFitter``,
   ``logrank_test``), on ``--loop-replicates`` trials; the rate is extrapolated (per trial
   cost is constant). The ratio is vectorized analyses / loop analyses, and the whole pipeline
   against simulate-vectorized-then-loop.
3. **Dask scaling**: ``stalwart.montecarlo.study.run_study`` on a LocalCluster with 2 workers vs
   1 worker (``--dask-replicates`` each, the full study: scenario + null, looks); the ratio of
   wall times (ideal 2.0 on 2 free cores).

Usage: OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/montecarlo.py [--replicates 5000]
       [--loop-replicates 200] [--dask-replicates 4000] [--skip-dask]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from stalwart.analysis.kernels.batched import (
    batched_ancova,
    batched_cox,
    batched_logrank,
    event_times,
)
from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import load_parameters
from stalwart.simulate.vectorized import ReplicateData, ReplicateSimulator


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=5000)
    parser.add_argument("--block", type=int, default=1000)
    parser.add_argument("--loop-replicates", type=int, default=200)
    parser.add_argument("--dask-replicates", type=int, default=4000)
    parser.add_argument("--skip-dask", action="store_true")
    args = parser.parse_args()
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: set OMP_NUM_THREADS=1 for a one-core figure")

    for fidelity in ("full", "outcomes"):  # the last one's figures feed the loop ratio
        simulator = ReplicateSimulator(
            load_protocol().protocol, load_parameters(), visits=["WK32"], fidelity=fidelity
        )
        vectorized_analyses(simulator.simulate(100, 99))  # warm-up
        sim_s = ana_s = 0.0
        total = 0
        first: ReplicateData | None = None
        for start in range(0, args.replicates, args.block):
            t0 = time.perf_counter()
            data = simulator.simulate(min(args.block, args.replicates - start), 1, start)
            t1 = time.perf_counter()
            vectorized_analyses(data)
            t2 = time.perf_counter()
            sim_s += t1 - t0
            ana_s += t2 - t1
            total += data.n_replicates
            first = first or data
        assert first is not None
        whole = total / (sim_s + ana_s)
        print(f"vectorized, fidelity {fidelity}, {total} replicates (simulate + 2 ANCOVA + Cox")
        print("  + log-rank each):")
        print(f"  whole pipeline   {whole:9,.0f} replicate trials/s/core")
        print(f"  simulator alone  {total / sim_s:9,.0f} replicate trials/s/core")
        print(f"  analyses alone   {total / ana_s:9,.0f} replicate trials/s/core")

    missing = [m for m in ("statsmodels", "lifelines") if importlib.util.find_spec(m) is None]
    if missing:  # a plain install: skip the loop comparison, say so, and go on
        print(f"per-trial loop comparison skipped: {' and '.join(missing)} not installed")
    else:
        n_loop = min(args.loop_replicates, first.n_replicates)
        started = time.perf_counter()
        loop = loop_analyses(first, n_loop)
        loop_s = (time.perf_counter() - started) / n_loop
        loop_rate = 1.0 / loop_s
        check = vectorized_analyses(first)
        agree = np.nanmax(np.abs(np.array(loop["ancova1"]) - check["ancova1"][:n_loop]))
        print(
            f"per-trial loop (statsmodels OLS + lifelines Cox + log-rank), {n_loop} trials timed:"
        )
        print(f"  analyses         {loop_rate:9,.1f} replicate trials/s/core (extrapolated)")
        print(f"  analyses ratio   {total / ana_s / loop_rate:9,.0f}x vectorized / loop")
        pipeline_loop = 1.0 / (sim_s / total + loop_s)
        print(f"  pipeline ratio   {whole / pipeline_loop:9,.0f}x vs vectorized simulate + loop")
        print(f"  largest ANCOVA p-value difference vs statsmodels: {agree:.1e}")
    print("targets: >= 10,000 replicate trials/s/core; >= 100x the loop")

    if not args.skip_dask:
        one = dask_seconds(1, args.dask_replicates)
        two = dask_seconds(2, args.dask_replicates)
        trials = 2 * args.dask_replicates
        print(f"Dask LocalCluster, full study ({args.dask_replicates} + null replicates, looks):")
        print(f"  1 worker  {one:6.2f} s ({trials / one:7,.0f} trials/s)")
        print(f"  2 workers {two:6.2f} s ({trials / two:7,.0f} trials/s); scaling {one / two:.2f}x")
        print(f"  cores on this machine: {os.cpu_count()}")


if __name__ == "__main__":
    main()
