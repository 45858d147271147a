"""Time ``stalwart analyze`` against R doing the same work, whole process against whole process.

Makes an ADaM of N participants (``adsl.csv`` and ``adtte.csv``, two arms, one PARAMCD; default
1,000,000) and times, in one run:

* ``stalwart analyze --adam DIR`` as a fresh process (imports, CSV reading, checks, the arm join,
  Cox with Wald/LR/score, log-rank, Kaplan-Meier medians with log-log CIs, results.json);
* one ``Rscript`` process doing the same work: ``read.csv`` both files, ``merge`` by USUBJID,
  ``summary(coxph(..., ties = "efron"))`` (Wald, LR and score), ``survdiff``, and
  ``survfit(..., conf.type = "log-log")`` medians;
* optionally the same command on another source tree (``--before /work/main/src``: the code
  before a change), on the same data in the same run, and checks that its results.json is the
  same as ours but for the creation time;
* ``stalwart --help`` and the import of what ``analyze`` loads, each a fresh process.

Prints each time, the ratio ours / R (target: at most 0.5) and before / after.

    python3 benchmarks/analyze_vs_r.py [--n 1000000] [--repeat 1] [--before /work/main/src]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SRC = Path(__file__).resolve().parents[1] / "src"

R_SCRIPT = r"""
suppressMessages(library(survival))
dir <- commandArgs(trailingOnly = TRUE)[1]
adsl <- read.csv(file.path(dir, "adsl.csv"), stringsAsFactors = FALSE)
adtte <- read.csv(file.path(dir, "adtte.csv"), stringsAsFactors = FALSE)
adtte$TRT01P <- NULL
d <- merge(adtte, adsl[, c("USUBJID", "TRT01P")], by = "USUBJID")
d$arm <- relevel(factor(d$TRT01P), "Placebo")
fit <- summary(coxph(Surv(AVAL, 1 - CNSR) ~ arm, data = d, ties = "efron"))
lr <- survdiff(Surv(AVAL, 1 - CNSR) ~ arm, data = d)
km <- survfit(Surv(AVAL, 1 - CNSR) ~ arm, data = d, conf.type = "log-log")
cat("HR", fit$conf.int[1, 1], "Wald", fit$waldtest["pvalue"], "LR", fit$logtest["pvalue"],
    "score", fit$sctest["pvalue"], "logrank", 1 - pchisq(lr$chisq, 1), "\n")
print(quantile(km, 0.5))
"""


def make_adam(folder: Path, n: int, seed: int = 1) -> None:
    """Write ``adsl.csv`` and ``adtte.csv`` of ``n`` participants (two arms, one PARAMCD)."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("BENCH-", np.char.zfill(np.arange(1, n + 1).astype(str), 7))
    treated = rng.random(n) < 0.5
    arm = np.where(treated, "Drug", "Placebo")
    armcd = np.where(treated, "DRUG", "PBO")
    armn = np.where(treated, "2", "1")
    site = np.char.add("S", np.char.zfill(rng.integers(1, 300, n).astype(str), 3))
    age = rng.integers(18, 90, n).astype(str)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    itt = np.where(rng.random(n) < 0.99, "Y", "N")
    day = rng.integers(0, 1500, n)
    randdt = (np.datetime64("2020-01-01") + day).astype(str)
    with (folder / "adsl.csv").open("w", encoding="utf-8") as handle:
        handle.write(
            "STUDYID,USUBJID,SUBJID,SITEID,ARM,ARMCD,TRT01P,TRT01PN,AGE,SEX,ITTFL,RANDDT\n"
        )
        rows = zip(ids, site, arm, armcd, arm, armn, age, sex, itt, randdt, strict=True)
        handle.writelines(
            f"BENCH,{u},{u[6:]},{s},{a},{c},{p},{pn},{g},{x},{f},{r}\n"
            for u, s, a, c, p, pn, g, x, f, r in rows
        )
    hazard = np.where(treated, 0.7, 1.0) * 0.0005
    event_time = rng.exponential(1 / hazard)
    censor_time = rng.uniform(200, 1800, n)
    aval = np.minimum(event_time, censor_time).round(1)
    cnsr = (event_time > censor_time).astype(int)
    order = rng.permutation(n)  # ADTTE in another order than ADSL: the join has work to do
    with (folder / "adtte.csv").open("w", encoding="utf-8") as handle:
        handle.write("STUDYID,USUBJID,PARAMCD,PARAM,AVAL,CNSR,EVNTDESC,TRT01P\n")
        handle.writelines(
            f"BENCH,{ids[i]},OS,Overall survival,{aval[i]:g},{cnsr[i]},"
            f"{'CENSORED' if cnsr[i] else 'DEATH'},{arm[i]}\n"
            for i in order
        )


@dataclass(frozen=True)
class Timing:
    """Wall-clock and CPU seconds (user + system): on a shared machine CPU is the steadier."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:7.2f} s wall {self.cpu:7.2f} s CPU"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict[str, str]) -> tuple[Timing, str]:
    """Time one fresh process running ``command``; its standard output."""
    cpu, start = _children_cpu(), time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    timing = Timing(time.perf_counter() - start, _children_cpu() - cpu)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return timing, done.stdout


def _best(command: list[str], env: dict[str, str], repeat: int) -> tuple[Timing, str]:
    runs = [_timed(command, env) for _ in range(repeat)]
    return min(runs, key=lambda run: run[0].cpu)


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def _results(path: Path) -> dict[str, object]:
    body = json.loads(path.read_text(encoding="utf-8"))
    body["provenance"].pop("created", None)
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="participants (default 1e6)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command (best kept)")
    parser.add_argument("--before", type=Path, help="a source tree to compare with (e.g. main's)")
    parser.add_argument("--data", type=Path, help="reuse (or make) the ADaM in this folder")
    parser.add_argument("--no-r", action="store_true", help="skip R")
    parser.add_argument("--summary", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="stalwart-analyze-bench-"))
    data = args.data or scratch / "adam"
    data.mkdir(parents=True, exist_ok=True)
    if not (data / "adsl.csv").exists():
        start = time.perf_counter()
        make_adam(data, args.n)
        print(f"made {args.n:,} participants in {time.perf_counter() - start:.1f} s: {data}")
    n = sum(1 for _ in (data / "adsl.csv").open(encoding="utf-8")) - 1
    py = sys.executable
    trees = {"after": SRC} | ({"before": args.before.resolve()} if args.before else {})

    print("\nimports, a fresh process each (best of 3 by CPU)")
    imports = "import stalwart.cli.main, stalwart.cdisc.foreign"
    for label, src in trees.items():
        helps = _best([py, "-m", "stalwart", "--help"], _env(src), 3)[0]
        loads = _best([py, "-c", imports], _env(src), 3)[0]
        print(f"  {label:6} stalwart --help {helps}   analyze's imports {loads}")

    print(f"\nwhole process on {n:,} participants (best of {args.repeat} by CPU)")
    ours: dict[str, Timing] = {}
    for label, src in trees.items():
        out = scratch / f"out-{label}"
        command = [py, "-m", "stalwart", "analyze", "--adam", str(data), "--out", str(out)]
        ours[label] = _best(command, _env(src), args.repeat)[0]
        print(f"  stalwart analyze ({label:6}): {ours[label]}")
    status = 0
    if "before" in ours:
        same = _results(scratch / "out-after" / "results.json") == _results(
            scratch / "out-before" / "results.json"
        )
        print(
            f"  before / after: {ours['before'].wall / ours['after'].wall:.1f}x wall, "
            f"{ours['before'].cpu / ours['after'].cpu:.1f}x CPU; results.json "
            f"{'identical' if same else 'DIFFERENT'} (creation time aside)"
        )
        status = 0 if same else 1
    rscript = shutil.which("Rscript")
    if args.no_r or rscript is None:
        print("  R: skipped" + ("" if args.no_r else " (Rscript not found)"))
    else:
        script = scratch / "analyze.R"
        script.write_text(R_SCRIPT, encoding="utf-8")
        r_time, r_out = _best([rscript, str(script), str(data)], dict(os.environ), args.repeat)
        print(f"  Rscript (read.csv, merge, coxph, survdiff, survfit): {r_time}")
        print(
            f"  ours / R: {ours['after'].wall / r_time.wall:.2f} wall, "
            f"{ours['after'].cpu / r_time.cpu:.2f} CPU (target <= 0.5)"
        )
        after = json.loads((scratch / "out-after" / "results.json").read_text(encoding="utf-8"))
        cox = next(t for t in after["time_to_event"] if t["method"] == "cox_efron")
        print(
            f"\n  ours: HR {cox['hazard_ratio']:.6g} Wald p {cox['p_value']:.6g} "
            f"LR p {cox['lr_p_value']:.6g} score p {cox['score_p_value']:.6g}"
        )
        print("  R:    " + r_out.strip().replace("\n", "\n        "))
    if args.summary is not None:
        figures = {f"stalwart_{k}": {"wall": t.wall, "cpu": t.cpu} for k, t in ours.items()}
        if not args.no_r and rscript is not None:
            figures["r"] = {"wall": r_time.wall, "cpu": r_time.cpu}
        args.summary.write_text(json.dumps({"participants": n, **figures}), encoding="utf-8")
    shutil.rmtree(scratch, ignore_errors=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
