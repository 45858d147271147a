"""Time the MMRM kernel against ``nlme::gls`` on demo-sized data (267 subjects x 8 visits).

Same simulated data (89 per arm, 8 post-baseline visits, about 10% of visits missing at random)
in Python and in one Rscript process, for both covariance structures; R runs ``gls`` with its
default controls (``nlminb``). Per-fit times are the median of repeated runs. Prints one line
per structure: our time, R's time and the ratio R / ours (above 1: faster than R), and whether
ours meets the target of issue #3 (unstructured under 300 ms, compound symmetry under 100 ms).

    python3 benchmarks/mmrm_vs_r.py [--reps N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from stalwart.analysis.kernels.mmrm import mmrm
from validation.mmrm_cases import simulate

TARGET_S = {"unstructured": 0.300, "compound_symmetry": 0.100}

R_SCRIPT = r"""
suppressMessages(library(nlme))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); reps <- as.integer(args[2])
d$visitf <- factor(d$visit); d$arm <- factor(d$arm); d$cb <- d$base - mean(d$base)
fits <- list(
  unstructured = function() gls(y ~ 0 + arm:visitf + cb:visitf, data = d, method = "REML",
    correlation = corSymm(form = ~ visit | id), weights = varIdent(form = ~ 1 | visitf)),
  compound_symmetry = function() gls(y ~ 0 + arm:visitf + cb:visitf, data = d,
    method = "REML", correlation = corCompSymm(form = ~ 1 | id)))
for (name in names(fits)) {
  times <- sapply(seq_len(reps), function(i) system.time(fits[[name]]())[["elapsed"]])
  cat(name, median(times), "\n")
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    data = simulate(2024, 267, visits=8, p_missing=0.1)
    print(f"data: {data['id'].nunique()} subjects, {len(data)} rows, 8 visits")
    ours: dict[str, float] = {}
    for cov in ("unstructured", "compound_symmetry"):
        timer = timeit.Timer(
            lambda cov=cov: mmrm(
                data["y"],
                data["id"],
                data["visit"],
                data["arm"],
                data["base"],
                control_level="A",
                covariance=cov,
            )
        )
        ours[cov] = float(np.median(timer.repeat(repeat=args.reps, number=1)))
    rscript = shutil.which("Rscript")
    if rscript is None:
        for cov, t in ours.items():
            print(f"{cov:18s} ours {t * 1e3:8.1f} ms   R: Rscript not found")
        return
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        data.to_csv(csv, index=False, float_format="%.17g")
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        done = subprocess.run(
            [rscript, "--vanilla", str(script), str(csv), str(args.reps)],
            capture_output=True,
            text=True,
            check=True,
        )
    r_times = {line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines()}
    for cov, t in ours.items():
        r = r_times[cov]
        met = "met" if t < TARGET_S[cov] else "MISSED"
        print(
            f"{cov:18s} ours {t * 1e3:8.1f} ms   nlme::gls {r * 1e3:8.1f} ms   R/ours {r / t:6.1f}"
            f"   target < {TARGET_S[cov] * 1e3:.0f} ms {met}"
        )


if __name__ == "__main__":
    main()
