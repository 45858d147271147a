"""The control arm of a foreign ADaM and the other names its arms go by (ARMCD, TRT01PN)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from stalwart.cdisc import adam_arms
from stalwart.cdisc.adam_arms import arm_aliases, choose_control
from stalwart.cdisc.adam_io import ARM, load_adam
from stalwart.errors import DatasetError

# the STALWART arms as our ADaM export writes them: TRT01PN in the protocol's order
STALWART = (
    ("NOTHER", "No therapy", 1.0),
    ("IL2", "IL-2 alone", 2.0),
    ("IL2ART", "IL-2 with peri-cycle ART", 3.0),
)


def _adsl(study: str = "STALWART", arms=STALWART, per_arm: int = 4) -> pd.DataFrame:
    rows = [
        {
            "STUDYID": study,
            "USUBJID": f"{study}-{code}-{j}",
            "ARMCD": code,
            "TRT01P": name,
            "TRT01PN": number,
        }
        for code, name, number in arms
        for j in range(per_arm)
    ]
    return pd.DataFrame(rows)


def _folder(tmp_path: Path, adsl: pd.DataFrame) -> Path:
    adsl.to_csv(tmp_path / "adsl.csv", index=False)
    tte = pd.DataFrame(
        {
            "USUBJID": adsl["USUBJID"],
            "PARAMCD": "OI",
            "AVAL": [float(10 + i) for i in range(len(adsl))],
            "CNSR": [float(i % 3 == 0) for i in range(len(adsl))],
        }
    )
    tte.to_csv(tmp_path / "adtte.csv", index=False)
    return tmp_path


def test_the_plans_control_is_found_by_armcd_on_our_own_study(tmp_path: Path) -> None:
    inputs = load_adam(_folder(tmp_path, _adsl()))
    assert inputs.arm_variable == "TRT01P" and inputs.control == "No therapy"
    assert any("ARMCD NOTHER, the control of the STALWART protocol" in n for n in inputs.notes)
    assert dict(inputs.arm_codes) == {name: code for code, name, _ in STALWART}


def test_control_accepts_the_label_the_code_and_the_number(tmp_path: Path) -> None:
    folder = _folder(tmp_path, _adsl())
    for given in ("No therapy", "NOTHER", " NOTHER ", "1"):
        assert load_adam(folder, control=given).control == "No therapy"
    assert load_adam(folder, control="IL2ART").control == "IL-2 with peri-cycle ART"
    assert load_adam(folder, arm_var="ARMCD", control="No therapy").control == "NOTHER"
    with pytest.raises(DatasetError, match=r"'XYZ' is not an arm.*ARMCD: IL2, IL2ART, NOTHER"):
        load_adam(folder, control="XYZ")


def test_another_study_without_placebo_takes_the_lowest_trt01pn(tmp_path: Path) -> None:
    arms = (("B", "Beta", 2.0), ("A", "Zeta", 1.0))
    inputs = load_adam(_folder(tmp_path, _adsl("OTHER", arms)))
    assert inputs.control == "Zeta"
    assert any("lowest TRT01PN" in note for note in inputs.notes)


def test_a_code_that_splits_an_arm_is_no_alias() -> None:
    frame = _adsl()
    frame.loc[0, "ARMCD"] = "NOTRT2"  # one No therapy subject coded differently
    frame[ARM] = frame["TRT01P"]
    aliases = arm_aliases(frame, ARM)
    assert "ARMCD" not in aliases and aliases["TRT01PN"]["1"] == "No therapy"
    frame.loc[1, "ARMCD"] = ""
    assert "ARMCD" not in arm_aliases(frame, ARM)


def test_defaults_without_aliases() -> None:
    assert choose_control(["B", "A"], None)[0] == "B"
    assert (
        choose_control(["Drug", "Placebo"], None, {"ARMCD": {"D": "Drug", "P": "Placebo"}})[0]
        == "Placebo"
    )
    # the packaged protocol's study, but no ARMCD to find its control by: the first in order
    control, note = choose_control(["IL-2 alone", "No therapy"], None, {}, "STALWART")
    assert control == "IL-2 alone" and note is not None and "first in sort order" in note
    with pytest.raises(DatasetError, match="holds no subject"):
        choose_control([], None)


def test_public_names() -> None:
    assert set(adam_arms.__all__) == {"ALIAS_VARIABLES", "arm_aliases", "choose_control"}
