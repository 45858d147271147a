"""Results become strict JSON: arrays as lists, NumPy scalars as numbers, NaN and infinity null."""

from __future__ import annotations

import json
import math

import numpy as np

from stalwart.jsonable import finite_or_none, jsonable


def test_float_arrays_become_lists_with_null_for_non_finite_values() -> None:
    value = np.array([[1.5, np.nan], [-np.inf, 2.0]])
    assert jsonable(value) == [[1.5, None], [None, 2.0]]


def test_other_arrays_become_plain_lists() -> None:
    assert jsonable(np.array([1, 2], dtype=np.int64)) == [1, 2]
    assert jsonable(np.array([True, False])) == [True, False]
    assert jsonable(np.array(["A", "B"])) == ["A", "B"]


def test_numpy_scalars_become_python_scalars() -> None:
    converted = [jsonable(v) for v in (np.float64(0.25), np.int64(3), np.bool_(True))]
    assert converted == [0.25, 3, True]
    assert [type(v) for v in converted] == [float, int, bool]
    assert jsonable(np.float64(np.nan)) is None


def test_containers_are_converted_recursively_with_string_keys() -> None:
    value = {1: (np.float64(math.inf), [np.int64(2), "x"]), "arm": {"n": np.int64(4)}}
    assert jsonable(value) == {"1": [None, [2, "x"]], "arm": {"n": 4}}


def test_the_result_is_strict_json() -> None:
    value = {"estimate": np.array([np.nan, 1.0]), "p": float("nan"), "ok": None, "label": "IL-2"}
    text = json.dumps(jsonable(value), allow_nan=False)
    assert text == '{"estimate": [null, 1.0], "p": null, "ok": null, "label": "IL-2"}'


def test_finite_or_none() -> None:
    assert finite_or_none(None) is None
    assert finite_or_none(math.nan) is None
    assert finite_or_none(-math.inf) is None
    assert finite_or_none(np.float64(0.5)) == 0.5
    assert type(finite_or_none(np.float64(0.5))) is float
