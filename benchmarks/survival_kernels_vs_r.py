"""Time the survival, exact, censored and group-sequential kernels against the R they match.

Each workload runs on the same data in Python and in one Rscript process; per-call times are the
median of repeated runs (Python: ``timeit``; R: ``system.time`` over a loop). Prints one line per
workload: our time, R's time and the ratio R / ours (above 1: faster than R).

    python3 benchmarks/survival_kernels_vs_r.py [--quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from stalwart.analysis.kernels.censored import tobit_by_arm
from stalwart.analysis.kernels.exact import rate_ratio_exact_test
from stalwart.analysis.kernels.fisher import fisher_exact
from stalwart.analysis.kernels.groupseq import group_sequential_bounds
from stalwart.analysis.kernels.km import kaplan_meier
from stalwart.analysis.kernels.logrank import logrank_test

R_SCRIPT = r"""
suppressMessages({library(survival); library(rpact)})
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; reps <- as.integer(args[2])
surv <- read.csv(file.path(dir, "surv.csv"))
aes <- read.csv(file.path(dir, "aes.csv"))
counts <- read.csv(file.path(dir, "counts.csv"))
rna <- read.csv(file.path(dir, "rna.csv"))
rna$below <- as.logical(rna$below)
rna$arm <- relevel(factor(rna$arm), "NOTHER")
rna$y <- log10(ifelse(rna$below, 50, rna$rna))
per_call <- function(expr_fun, n) {
  times <- replicate(3, system.time(for (i in seq_len(n)) expr_fun())[["elapsed"]] / n)
  median(times)
}
cat("km", per_call(function() {
  f <- survfit(Surv(time, event) ~ 1, data = surv, conf.type = "log-log")
  quantile(f, c(0.25, 0.5, 0.75))
}, reps), "\n")
cat("logrank", per_call(function() {
  survdiff(Surv(time, event) ~ group + strata(stratum), data = surv)
}, reps), "\n")
cat("fisher", per_call(function() {
  for (j in seq_len(nrow(aes))) fisher.test(matrix(c(aes$x1[j], aes$n1[j] - aes$x1[j],
                                                     aes$x2[j], aes$n2[j] - aes$x2[j]), 2))
}, 1), "\n")
cat("exact", per_call(function() {
  for (j in seq_len(nrow(counts))) poisson.test(c(counts$d1[j], counts$d0[j]), c(5632, 2912))
}, 1), "\n")
cat("tobit", per_call(function() {
  survreg(Surv(y, !below, type = "left") ~ arm, data = rna, dist = "gaussian")
}, reps), "\n")
cat("groupseq", per_call(function() {
  getDesignGroupSequential(informationRates = c(0.2, 0.4, 0.6, 0.8, 1), alpha = 0.05,
                           sided = 2, typeOfDesign = "asOF")
}, reps), "\n")
"""


def _per_call(func: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(func, number=number, repeat=3)) / number


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps = 5 if args.quick else 20
    rscript = shutil.which("Rscript")
    if rscript is None:
        print(
            "Rscript not found; install r-base-core r-cran-survival r-cran-rpact", file=sys.stderr
        )
        return 2
    rng = np.random.default_rng(2024)
    n = 5000
    group = rng.integers(0, 3, n)
    event_time = rng.exponential(30.0 / (1 + 0.3 * group))
    censor = rng.uniform(0, 60, n)
    surv = pd.DataFrame(
        {
            "time": np.ceil(np.minimum(event_time, censor)),
            "event": (event_time <= censor).astype(int),
            "group": group,
            "stratum": rng.integers(0, 4, n),
        }
    )
    n_terms = 500
    aes = pd.DataFrame(
        {
            "x1": rng.binomial(176, rng.uniform(0, 0.3, n_terms)),
            "n1": 176,
            "x2": rng.binomial(91, rng.uniform(0, 0.3, n_terms)),
            "n2": 91,
        }
    )
    n_trials = 2000
    counts = pd.DataFrame({"d1": rng.poisson(10, n_trials), "d0": rng.poisson(2, n_trials)})
    arm = rng.choice(np.array(["NOTHER", "IL2", "IL2ART"]), 267)
    log_rna = np.select([arm == "NOTHER", arm == "IL2"], [4.1, 4.3], 2.0) + 0.8 * rng.normal(
        size=267
    )
    below = 10.0**log_rna < 50
    rna = pd.DataFrame({"rna": np.where(below, 50.0, 10.0**log_rna), "below": below, "arm": arm})

    with tempfile.TemporaryDirectory() as tmp:
        for name, frame in {"surv": surv, "aes": aes, "counts": counts, "rna": rna}.items():
            frame.to_csv(Path(tmp) / f"{name}.csv", index=False)
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        done = subprocess.run(
            [rscript, "--vanilla", str(script), tmp, str(reps)],
            capture_output=True,
            text=True,
            check=True,
        )
    r_times = {line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines()}

    t, e = surv["time"].to_numpy(), surv["event"].to_numpy()
    tables = np.stack(
        [
            np.stack([aes.x1, aes.x2], axis=-1),
            np.stack([aes.n1 - aes.x1, aes.n2 - aes.x2], axis=-1),
        ],
        axis=-2,
    )
    ours = {
        "km": _per_call(lambda: kaplan_meier(t, e), reps),
        "logrank": _per_call(
            lambda: logrank_test(t, e, surv["group"].to_numpy(), strata=surv["stratum"].to_numpy()),
            reps,
        ),
        "fisher": _per_call(lambda: fisher_exact(tables), 1),
        "exact": _per_call(
            lambda: rate_ratio_exact_test(
                counts.d1.to_numpy(), 5632.0, counts.d0.to_numpy(), 2912.0
            ),
            1,
        ),
        "tobit": _per_call(
            lambda: tobit_by_arm(
                np.where(below, np.nan, rna.rna), below, 50.0, arm, reference="NOTHER"
            ),
            reps,
        ),
        "groupseq": _per_call(
            lambda: group_sequential_bounds([0.2, 0.4, 0.6, 0.8, 1.0], 0.05, sided=2), reps
        ),
    }
    labels = {
        "km": f"Kaplan-Meier + quantiles, n={n} (survfit + quantile)",
        "logrank": f"log-rank, 3 groups x 4 strata, n={n} (survdiff)",
        "fisher": f"Fisher exact, {n_terms} AE tables in one call (fisher.test loop)",
        "exact": f"exact rate ratio, {n_trials} replicate trials (poisson.test loop)",
        "tobit": "Tobit, 267 results, 3 arms (survreg)",
        "groupseq": "O'Brien-Fleming spending, 5 looks, two-sided (rpact)",
    }
    print(f"{'workload':<66} {'ours ms':>9} {'R ms':>9} {'R/ours':>7}")
    for key, label in labels.items():
        print(
            f"{label:<66} {ours[key] * 1e3:9.2f} {r_times[key] * 1e3:9.2f} "
            f"{r_times[key] / ours[key]:7.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
