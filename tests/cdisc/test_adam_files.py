"""Reading one ADaM file: the per-distinct-value CSV reader against the value-by-value rule."""

from __future__ import annotations

import random
from pathlib import Path

import pandas as pd
import pytest

from stalwart.cdisc import adam_files
from stalwart.errors import DatasetError

# messy CSV cells: blanks, padding, numbers the parser may or may not take, dates, text
_CELLS = (
    "",
    " ",
    "1",
    " 2.5 ",
    "1e3",
    "inf",
    "-Infinity",
    "nan",
    "NA",
    "x",
    "\xa03",
    "2014-01-02",
    "02JAN2014",
    " 2014-1-2",
    "True",
    "12345678901234567890",
    "0.1",
    "-0",
    "+7",
    ".5",
    "1_0",
)


@pytest.mark.parametrize("seed", range(8))
def test_csv_columns_read_per_distinct_value_as_value_by_value(tmp_path: Path, seed: int) -> None:
    """The reader derives each distinct value once; it must give what stripping and parsing
    every value one by one gives, dtypes, values and the first error alike."""
    rng = random.Random(seed)
    columns = ["USUBJID", "AVAL", "ADT", "ITTFL", "X", "AGE"]
    path = tmp_path / "adx.csv"
    for case in range(25):
        pool = rng.sample(_CELLS, rng.randint(1, 5))
        rows = [",".join(rng.choice(pool) for _ in columns) for _ in range(rng.randint(0, 6))]
        if case % 7 == 0:
            rows.append("S1-1")  # a short row: its other cells read as missing
        path.write_text("\n".join([",".join(columns), *rows]) + "\n", encoding="utf-8")
        raw = pd.read_csv(path, dtype=object, keep_default_na=False, encoding="utf-8")
        for column in columns:
            try:
                expected = adam_files.csv_column_elementwise(raw[column], "ADX", column)
            except DatasetError as exc:
                with pytest.raises(DatasetError) as raised:
                    adam_files.csv_column(raw[column], "ADX", column)
                assert str(raised.value) == str(exc)
                continue
            got = adam_files.csv_column(raw[column], "ADX", column)
            pd.testing.assert_series_equal(got, expected, check_exact=True)
            assert [repr(v) for v in got] == [repr(v) for v in expected], (column, rows)
