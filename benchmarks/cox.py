"""Time our Cox fit (Efron ties) against R's survival::coxph, lifelines and statsmodels.

For each size and number of covariates, simulates one data set (x1 binary, the rest normal,
exponential event times over up to 3 years, uniform censoring, times in whole days as a trial
records them, so ~1,100 distinct times and heavy ties; ``--grid continuous`` for nearly all
distinct) and fits it with every tool in this one run:

- ours: ``stalwart.analysis.kernels.cox.cox_ph(time, event, X)`` (wall time; peak memory of the
  fit from ``tracemalloc`` in a second, untimed call; NumPy reports its buffers to it);
- R: ``survival::coxph(Surv(time, event) ~ ., ties = "efron")`` via Rscript on a CSV file,
  timing only the fit inside R with ``system.time`` (reading the file is not timed);
- lifelines ``CoxPHFitter().fit`` and statsmodels ``PHReg(..., ties="efron").fit()``.

Small sizes are timed as the best of a few repeats. Prints each time, the ratio of each
reference's time to ours, our peak memory, and the largest coefficient difference from R.
Target: at 1e6 rows, at most half of R's time and a peak under 2 GB.

Usage: python benchmarks/cox.py [--sizes 1e4,1e5,1e6] [--covariates 2,10]
                                [--skip lifelines,statsmodels,r] [--grid day|continuous]
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from stalwart.analysis.kernels.cox import cox_ph

R_SCRIPT = r"""
suppressMessages(library(survival))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
reps <- as.integer(args[2])
best <- Inf
for (i in seq_len(reps)) {
  elapsed <- system.time(fit <- coxph(Surv(time, event) ~ ., data = d, ties = "efron"))[["elapsed"]]
  best <- min(best, elapsed)
}
cat(sprintf("%.17g", c(best, coef(fit))), sep = "\n")
"""


def simulate(seed: int, n: int, p: int, grid: str = "day") -> pd.DataFrame:
    """Survival data with known log hazard ratios spread over [-0.3, 0.5].

    ``grid="day"``: times in whole days (heavy ties); ``"continuous"``: on a 1e-6 year grid
    (almost all distinct, yet never closer than R's ``timefix`` would merge).
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    x[:, 0] = rng.integers(0, 2, n)
    beta = np.linspace(0.5, -0.3, p)
    event_time = rng.exponential(1.0 / np.exp(x @ beta))
    censor = rng.uniform(0.0, 3.0, n)
    frame = pd.DataFrame(x, columns=[f"x{j + 1}" for j in range(p)])
    frame.insert(0, "event", (event_time <= censor).astype(int))
    years = np.minimum(event_time, censor)
    time = np.ceil(years * 365.25) if grid == "day" else np.round(years, 6) + 1e-6
    frame.insert(0, "time", time)
    return frame


def best_time(fit: Callable[[], object], repeats: int) -> tuple[float, object]:
    best, result = math.inf, None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fit()
        best = min(best, time.perf_counter() - started)
    return best, result


def ours(frame: pd.DataFrame, repeats: int) -> tuple[float, float, np.ndarray]:
    time_ = frame["time"].to_numpy()
    event = frame["event"].to_numpy()
    x = frame.drop(columns=["time", "event"]).to_numpy()
    seconds, result = best_time(lambda: cox_ph(time_, event, x), repeats)
    tracemalloc.start()
    cox_ph(time_, event, x)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20, result.coef  # type: ignore[attr-defined]


def r_time(frame: pd.DataFrame, repeats: int) -> tuple[float, np.ndarray]:
    with tempfile.TemporaryDirectory(prefix="stalwart-bench-") as folder:
        data = Path(folder) / "data.csv"
        script = Path(folder) / "fit.R"
        frame.to_csv(data, index=False, float_format="%.17g")
        script.write_text(R_SCRIPT)
        done = subprocess.run(
            ["Rscript", "--vanilla", str(script), str(data), str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        )
    numbers = np.array([float(v) for v in done.stdout.split()])
    return float(numbers[0]), numbers[1:]


def lifelines_time(frame: pd.DataFrame, repeats: int) -> float:
    from lifelines import CoxPHFitter

    with np.errstate():  # lifelines changes NumPy's error state globally
        seconds, _ = best_time(lambda: CoxPHFitter().fit(frame, "time", "event"), repeats)
    return seconds


def statsmodels_time(frame: pd.DataFrame, repeats: int) -> float:
    from statsmodels.duration.hazard_regression import PHReg

    x = frame.drop(columns=["time", "event"]).to_numpy()

    def fit() -> object:
        return PHReg(frame["time"], x, status=frame["event"], ties="efron").fit()

    return best_time(fit, repeats)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1e4,1e5,1e6", help="rows, comma-separated")
    parser.add_argument("--covariates", default="2,10", help="covariate counts, comma-separated")
    parser.add_argument("--skip", default="", help="any of lifelines,statsmodels,r")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--grid", choices=["day", "continuous"], default="day", help="time resolution"
    )
    args = parser.parse_args()
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    counts = [int(c) for c in args.covariates.split(",") if c]
    skip = {s.strip().lower() for s in args.skip.split(",") if s.strip()}
    for package in ("lifelines", "statsmodels"):
        if package not in skip and importlib.util.find_spec(package) is None:
            print(f"{package} not installed: skipping its comparison")
            skip.add(package)
    if "r" not in skip and shutil.which("Rscript") is None:
        print("Rscript not found: skipping R")
        skip.add("r")
    header = (
        f"{'rows':>9} {'p':>3} {'ours s':>8} {'R s':>8} {'R/ours':>7} {'lifel. s':>9} "
        f"{'lif/ours':>8} {'statsm. s':>9} {'sm/ours':>7} {'peak MB':>8} {'|b-bR|':>8}"
    )
    print(header)
    for n in sizes:
        for p in counts:
            frame = simulate(args.seed, n, p, args.grid)
            repeats = 5 if n <= 100_000 else 1
            ours_s, peak_mb, coef = ours(frame, repeats)
            r_s, diff = math.nan, math.nan
            if "r" not in skip:
                r_s, r_coef = r_time(frame, repeats)
                diff = float(np.max(np.abs(coef - r_coef)))
            lif_s = lifelines_time(frame, repeats) if "lifelines" not in skip else math.nan
            sm_s = statsmodels_time(frame, repeats) if "statsmodels" not in skip else math.nan
            print(
                f"{n:>9} {p:>3} {ours_s:>8.3f} {r_s:>8.3f} {r_s / ours_s:>7.1f} "
                f"{lif_s:>9.3f} {lif_s / ours_s:>8.1f} {sm_s:>9.3f} {sm_s / ours_s:>7.1f} "
                f"{peak_mb:>8.0f} {diff:>8.1e}",
                flush=True,
            )


if __name__ == "__main__":
    main()
