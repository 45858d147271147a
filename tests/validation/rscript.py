"""Run R on files and read its numbers back: the independent reference for the validation suite.

A test passes data frames (written as CSV) and R code that leaves a named list ``out`` of numeric
vectors; each element comes back as a float array, written by R with 17 significant digits so
nothing is lost in transit. R is found on PATH (Debian's r-base-core); outside CI a missing R
skips the test with the reason, in CI it fails, because the suite exists to compare against R.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_EPILOGUE = r"""
.con <- file(.out_path, open = "w")
for (.name in names(out)) {
  .v <- as.numeric(unlist(out[[.name]]))
  writeLines(paste(c(.name, formatC(.v, digits = 17, format = "g")), collapse = "\t"), .con)
}
close(.con)
"""


def rscript_path() -> str:
    """Path of Rscript; skips (fails in CI) when R is not installed."""
    path = shutil.which("Rscript")
    if path is None:
        reason = "Rscript not found: install r-base-core r-cran-survival r-cran-lme4 r-cran-rpact"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def require_r_package(name: str) -> None:
    """Skip (fail in CI) when an R package is missing."""
    code = f'quit(status = if (requireNamespace("{name}", quietly = TRUE)) 0 else 3)'
    done = subprocess.run([rscript_path(), "-e", code], capture_output=True, check=False)
    if done.returncode != 0:
        reason = f"R package {name} is not installed (Debian: r-cran-{name.lower()})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def run_r(code: str, timeout: float = 300.0, **frames: pd.DataFrame) -> dict[str, np.ndarray]:
    """Run ``code`` in R with each frame read from CSV as a data.frame of the same name.

    ``code`` must assign ``out <- list(name = numeric, ...)``; NA and NaN come back as NaN,
    Inf as inf. Raises AssertionError with R's stderr when R fails.
    """
    rscript = rscript_path()
    with tempfile.TemporaryDirectory(prefix="stalwart-r-") as tmp:
        root = Path(tmp)
        prologue = ["options(digits = 17)"]
        for name, frame in frames.items():
            path = root / f"{name}.csv"
            frame.to_csv(path, index=False, float_format="%.17g")
            prologue.append(f'{name} <- read.csv("{path.as_posix()}", stringsAsFactors = FALSE)')
        out_path = root / "out.tsv"
        prologue.append(f'.out_path <- "{out_path.as_posix()}"')
        script = root / "script.R"
        script.write_text("\n".join(prologue) + "\n" + code + "\n" + _EPILOGUE)
        done = subprocess.run(
            [rscript, "--vanilla", str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"R failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        values: dict[str, np.ndarray] = {}
        for line in out_path.read_text().splitlines():
            name, *numbers = line.split("\t")
            values[name] = np.array(
                [float(x.replace("NA", "nan")) for x in numbers if x != ""], dtype=float
            )
        return values
