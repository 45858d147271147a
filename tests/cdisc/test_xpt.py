"""SAS XPORT v5 writing: limits checked before writing, values and metadata read back exactly."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stalwart.cdisc.xpt import Dataset, Variable, check_dataset, read_xpt, write_dataset
from stalwart.errors import ExportError

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from make_golden import tiny_dataset

GOLDEN = Path(__file__).parent / "golden" / "tiny.xpt"
_STAMP = re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d")


def test_tiny_dataset_matches_the_golden_file_but_for_its_timestamps(tmp_path: Path) -> None:
    xpt, _ = write_dataset(tiny_dataset(), tmp_path)
    ours, golden = xpt.read_bytes(), GOLDEN.read_bytes()
    assert len(ours) == len(golden)
    assert _STAMP.sub(b"<stamp>", ours) == _STAMP.sub(b"<stamp>", golden)
    assert len(_STAMP.findall(golden)) >= 2  # the header does carry stamps we masked


def test_values_labels_lengths_and_dates_read_back(tmp_path: Path) -> None:
    ds = tiny_dataset()
    xpt, csv = write_dataset(ds, tmp_path)
    frame, meta = read_xpt(xpt)
    assert meta["name"] == "TINY" and meta["label"] == "A tiny dataset"
    assert list(frame.columns) == ["STUDYID", "USUBJID", "AVAL", "ADT"]
    assert meta["labels"]["AVAL"] == "Analysis Value"
    assert meta["lengths"]["USUBJID"] == len("TINY-0003")  # longest value, not a fixed 200
    assert meta["types"] == {"STUDYID": "Char", "USUBJID": "Char", "AVAL": "Num", "ADT": "Num"}
    assert frame["AVAL"].iloc[0] == 0.1 and frame["AVAL"].iloc[1] == 2.5  # exact doubles
    assert np.isnan(frame["AVAL"].iloc[2])
    assert list(pd.to_datetime(frame["ADT"])) == list(ds.frame["ADT"])
    text = csv.read_text().splitlines()
    assert text[0] == "STUDYID,USUBJID,AVAL,ADT" and text[2].endswith(",1960-01-01")


def test_doubles_survive_the_ibm_float_conversion(tmp_path: Path) -> None:
    rng = np.random.default_rng(20240601)
    values = np.concatenate([rng.normal(0, 1e3, 200), rng.lognormal(0, 5, 200), [1 / 3, -2.0]])
    frame = pd.DataFrame({"X": values})
    ds = Dataset("T", "t", (Variable("X", "x", "Num"),), frame, (), "rows", "OTHER")
    back, _ = read_xpt(write_dataset(ds, tmp_path)[0])
    assert np.array_equal(back["X"].to_numpy(), values)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "TOOLONGNAME"}, "names must be"),
        ({"label": "L" * 41}, "names must be"),
        (
            {"variables": (Variable("lower", "x"),), "frame": pd.DataFrame({"lower": ["a"]})},
            "not a SAS v5 name",
        ),
        ({"variables": (Variable("X", "x" * 41),)}, "over 40"),
        ({"frame": pd.DataFrame({"X": ["caf\u00e9"]})}, "non-ASCII"),
        ({"frame": pd.DataFrame({"X": ["a" * 201]})}, "over 200"),
        ({"frame": pd.DataFrame({"Y": ["a"]})}, "differ from"),
        ({"keys": ("Z",)}, "sort keys"),
    ],
)
def test_what_xport_v5_cannot_hold_is_refused_before_writing(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    base: dict[str, object] = {
        "name": "T",
        "label": "t",
        "variables": (Variable("X", "x"),),
        "frame": pd.DataFrame({"X": ["a"]}),
        "keys": (),
        "structure": "rows",
        "klass": "OTHER",
    }
    ds = Dataset(**{**base, **change})  # type: ignore[arg-type]
    with pytest.raises(ExportError, match=message):
        check_dataset(ds)
    with pytest.raises(ExportError):
        write_dataset(ds, tmp_path)
    assert list(tmp_path.iterdir()) == []
