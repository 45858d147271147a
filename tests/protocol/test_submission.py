"""The protocol file's ``[submission]`` block and AE form lists: bad entries refused, named."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from pydantic import ValidationError

from stalwart.protocol.load import default_protocol_path
from stalwart.protocol.schema import Protocol


def _data() -> dict[str, Any]:
    return tomllib.loads(default_protocol_path().read_text(encoding="utf-8"))


def test_the_packaged_protocol_states_its_submission_facts() -> None:
    p = Protocol.model_validate(_data())
    assert p.submission is not None
    assert set(p.submission.normal_ranges) <= {i.name for i in p.forms.LAB.items}
    assert set(p.submission.dose_forms) == set(p.treatments)
    assert p.forms.AE.seriousness[0] == "AESDTH"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["submission"]["normal_ranges"].update({"ALT": {"low": 1}}), "no LAB item"),
        (lambda d: d["submission"]["normal_ranges"].update({"CD4": {}}), "low, high or both"),
        (
            lambda d: d["submission"]["normal_ranges"].update({"CD4": {"low": 9, "high": 1}}),
            "below",
        ),
        (lambda d: d["submission"]["dose_forms"].update({"XYZ": "TABLET"}), "no treatment"),
        (
            lambda d: d["submission"]["trial_summary"].append({"parameter": "FOO", "value": "x"}),
            "not a TS parameter",
        ),
        (lambda d: d["submission"].update({"ct_version": "March 2024"}), "ct_version"),
        (lambda d: d["forms"]["AE"].update({"seriousness": ["AESICK"]}), "seriousness criteria"),
        (lambda d: d["forms"]["AE"].update({"sae_report_days": -1}), "sae_report_days"),
    ],
)
def test_a_bad_submission_block_is_refused(change: Any, message: str) -> None:
    data = _data()
    change(data)
    with pytest.raises(ValidationError, match=message):
        Protocol.model_validate(data)


def test_a_protocol_without_the_block_still_loads() -> None:
    data = _data()
    del data["submission"]
    for key in ("outcomes", "actions", "seriousness", "sae_report_days"):
        del data["forms"]["AE"][key]
    p = Protocol.model_validate(data)
    assert p.submission is None and "FATAL" in p.forms.AE.outcomes
