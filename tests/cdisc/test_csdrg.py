"""The reviewer's guide (cSDRG) the SDTM export writes: deviations and the CORE findings it expects.

The rows it says CORE-000885/000886 will report are counted here from the exported DM and EX
(subjects with no EX record and no ARMNRS), independently of the guide's own code.
"""

from __future__ import annotations

import re

import pytest

from cdisc_export import CdiscTrial
from stalwart.cdisc.csdrg import ENGINE_FINDINGS, near_reserved_armcd
from stalwart.cdisc.xpt import read_xpt


def _guide(trial: CdiscTrial) -> str:
    return (trial.sdtm / "csdrg.html").read_text(encoding="utf-8")


def test_the_untreated_arm_is_explained_and_not_confused_with_nottrt(
    cdisc_trial: CdiscTrial,
) -> None:
    text = _guide(cdisc_trial)
    assert "Arm NOTHER (No therapy) is a planned arm without study treatment" in text
    assert "not CDISC&#x27;s reserved NOTTRT" in text
    assert "one letter from" not in text  # NOTHER is two letters from NOTTRT
    dm, _ = read_xpt(cdisc_trial.sdtm / "dm.xpt")
    never = int((dm["ARMNRS"] == "ASSIGNED, NOT TREATED").sum())
    armed = int((dm["ARMCD"] != "NOTHER").sum())
    if never:
        assert f"Of the {armed} subjects randomized to an arm with study treatment, {never}" in text
    else:
        assert f"All {armed} subjects randomized to an arm with study treatment received" in text


def test_the_rows_it_announces_for_885_and_886_are_those_of_the_data(
    cdisc_trial: CdiscTrial,
) -> None:
    dm, _ = read_xpt(cdisc_trial.sdtm / "dm.xpt")
    ex, _ = read_xpt(cdisc_trial.sdtm / "ex.xpt")
    without = dm[(dm["ARMNRS"] == "") & ~dm["USUBJID"].isin(set(ex["USUBJID"]))]
    assert len(without) == (dm["ARMCD"] == "NOTHER").sum() > 0
    text = _guide(cdisc_trial)
    for rule in ("CORE-000885", "CORE-000886"):
        row = re.search(f"<td>{rule}</td><td>([^<]*)</td>", text)
        assert row is not None and row.group(1) == str(len(without)), rule
    for rule in ENGINE_FINDINGS:
        assert f"<td>{rule}</td>" in text


@pytest.mark.parametrize(
    ("code", "near"),
    [
        ("NOTRT", ["NOTTRT"]),
        ("nottrt", ["NOTTRT"]),
        ("NOTTRTX", ["NOTTRT"]),
        ("XOTTRT", ["NOTTRT"]),
        ("NOTHER", []),
        ("SCRNFAL", ["SCRNFAIL"]),
        ("UNPLAN", ["UNPLAN"]),
        ("IL2", []),
    ],
)
def test_arm_codes_near_a_reserved_code_are_flagged(code: str, near: list[str]) -> None:
    assert near_reserved_armcd(code) == near
