"""Others can open our XPT files: R's ``foreign::read.xport`` and ``haven::read_xpt`` read every
SDTM and ADaM export.

R reads each file and writes it back as text (numbers with 17 significant digits); the names,
row counts, character values and numbers (SAS dates as day numbers since 1960-01-01: haven gives
them as R dates, converted back here) must equal what we wrote.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cdisc_export import CdiscTrial, cdisc_trial
from stalwart.cdisc.xpt import SAS_EPOCH, read_xpt
from validation.rscript import require_r_package, run_r

__all__ = ["cdisc_trial"]

R_CODE = """
files <- strsplit(Sys.getenv("XPT_FILES"), ";")[[1]]
for (f in files) {
  d <- as.data.frame(READ(f))
  for (v in names(d)) {
    if (inherits(d[[v]], "Date")) d[[v]] <- as.numeric(d[[v]] - as.Date("1960-01-01"))
    if (is.numeric(d[[v]])) d[[v]] <- ifelse(is.na(d[[v]]), "NA", sprintf("%.17g", d[[v]]))
  }
  write.csv(d, paste0(f, ".R.csv"), row.names = FALSE, na = "NA")
}
out <- list(files = length(files))
"""


def _xpt_files(trial: CdiscTrial) -> list[Path]:
    return sorted(trial.sdtm.glob("*.xpt")) + sorted(trial.adam.glob("*.xpt"))


READERS = {"foreign": "foreign::read.xport", "haven": "haven::read_xpt"}


@pytest.mark.parametrize("package", sorted(READERS))
def test_r_reads_every_exported_xpt_file(
    cdisc_trial: CdiscTrial, tmp_path: Path, package: str
) -> None:
    require_r_package(package)
    files = []
    for path in _xpt_files(cdisc_trial):  # copies: R writes its reading beside each file
        copy = tmp_path / f"{path.parent.name}_{path.name}"
        copy.write_bytes(path.read_bytes())
        files.append(copy)
    assert len(files) == 13 + 4
    code = f'Sys.setenv(XPT_FILES = "{";".join(p.as_posix() for p in files)}")\n'
    code += R_CODE.replace("READ", READERS[package])
    out = run_r(code)
    assert out["files"][0] == len(files)
    for path in files:
        ours, meta = read_xpt(path)
        theirs = pd.read_csv(f"{path}.R.csv", dtype=str, keep_default_na=False)
        assert list(theirs.columns) == list(ours.columns), path.name
        assert len(theirs) == len(ours), path.name
        types = meta["types"]
        for column in ours.columns:
            if types[column] == "Char":  # type: ignore[index]
                assert list(theirs[column]) == list(ours[column].fillna("")), (path, column)
                continue
            values = ours[column]
            if pd.api.types.is_datetime64_any_dtype(values):
                values = (values - SAS_EPOCH).dt.days.astype(float)
            r_values = theirs[column].replace("NA", "nan").astype(float).to_numpy()
            assert np.array_equal(r_values, values.to_numpy(float), equal_nan=True), (
                path.name,
                column,
            )
