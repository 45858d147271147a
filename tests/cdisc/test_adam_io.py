"""Reading a foreign trial's ADaM files: formats, names, checks on entry, arms from ADSL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from stalwart.cdisc import adam_io
from stalwart.cdisc.adam_io import ARM, choose_control, load_adam, read_dataset
from stalwart.errors import DatasetError, StalwartError


def _adsl(
    arms: tuple[str, ...] = ("Placebo", "Drug A", "Drug B"), per_arm: int = 3
) -> pd.DataFrame:
    rows = []
    for i, arm in enumerate(arms):
        for j in range(per_arm):
            rows.append(
                {
                    "STUDYID": "S1",
                    "USUBJID": f"S1-{i}{j}",
                    "TRT01P": arm,
                    "ARM": arm,
                    "SAFFL": "Y",
                    "EFFFL": "Y" if j else "N",
                    "TRTSDT": dt.date(2020, 1, 1 + j),
                }
            )
    return pd.DataFrame(rows)


def _adtte(adsl: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "USUBJID": adsl["USUBJID"],
            "PARAMCD": "TTE",
            "AVAL": [float(10 + i) for i in range(len(adsl))],
            "CNSR": [float(i % 2) for i in range(len(adsl))],
            "TRTP": "wrong arm copy",
        }
    )


def _write(
    folder: Path, name: str, frame: pd.DataFrame, labels: dict[str, str] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        formats = {c: "DATE9" for c in frame.columns if c.endswith("DT")}
        column_labels = [(labels or {}).get(c, c) for c in frame.columns]
        pyreadstat.write_xport(
            frame,
            str(path),
            table_name=Path(name).stem.upper()[:8],
            column_labels=column_labels,
            variable_format=formats,
        )
    return path


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    adsl = _adsl()
    _write(tmp_path, "adsl.xpt", adsl, {"USUBJID": "Unique Subject Identifier"})
    _write(tmp_path, "adtte.xpt", _adtte(adsl))
    return tmp_path


def test_xpt_keeps_labels_and_reads_dates_as_dates(folder: Path) -> None:
    adsl = read_dataset(folder / "adsl.xpt")
    assert adsl.name == "ADSL"
    assert adsl.labels["USUBJID"] == "Unique Subject Identifier"
    assert adsl.frame["TRTSDT"].iloc[0] == dt.date(2020, 1, 1)
    assert len(adsl.sha256) == 64


def test_csv_reads_dates_numbers_and_text(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "usubjid": ["001", "002"],
            "SITEID": ["701", "702"],
            "TRTSDT": ["2014-01-02", "05FEB2014"],
            "AVAL": ["1.5", ""],
            "ANL01FL": ["Y", ""],
        }
    )
    ds = read_dataset(_write(tmp_path, "ADLB.CSV", frame))
    assert ds.name == "ADLB"
    assert list(ds.frame["USUBJID"]) == ["001", "002"]  # upper-cased name, kept as text
    assert list(ds.frame["SITEID"]) == ["701", "702"]
    assert list(ds.frame["TRTSDT"]) == [dt.date(2014, 1, 2), dt.date(2014, 2, 5)]
    assert ds.frame["AVAL"].iloc[0] == 1.5 and pd.isna(ds.frame["AVAL"].iloc[1])
    assert list(ds.frame["ANL01FL"]) == ["Y", ""]


def test_csv_with_a_bad_date_names_the_variable(tmp_path: Path) -> None:
    path = _write(tmp_path, "adsl.csv", pd.DataFrame({"USUBJID": ["1"], "TRTSDT": ["1/2/14"]}))
    with pytest.raises(DatasetError, match=r"ADSL\.TRTSDT: '1/2/14' is not a date; write"):
        read_dataset(path)


def test_file_names_are_case_insensitive(tmp_path: Path) -> None:
    adsl = _adsl()
    _write(tmp_path, "ADSL.XPT", adsl)
    _write(tmp_path, "AdTtE.csv", _adtte(adsl))
    inputs = load_adam(tmp_path)
    assert inputs.adtte is not None and len(inputs.adtte.frame) == 9


def test_a_dataset_in_two_files_is_refused(folder: Path) -> None:
    _write(folder, "ADSL.csv", _adsl())
    with pytest.raises(DatasetError, match=r"ADSL is in .* twice"):
        load_adam(folder)


def test_xpt_reader_errors_become_dataset_errors(tmp_path: Path) -> None:
    (tmp_path / "adsl.xpt").write_text("this is not a SAS transport file\n")
    with pytest.raises(DatasetError, match="not a readable SAS transport") as caught:
        load_adam(tmp_path)
    assert isinstance(caught.value.__cause__, pyreadstat.ReadstatError)
    assert isinstance(caught.value, StalwartError) and caught.value.exit_code == 2


def test_missing_folder_and_missing_adsl(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_adam(tmp_path / "nowhere")
    _write(tmp_path, "adtte.xpt", _adtte(_adsl()))
    with pytest.raises(DatasetError, match=r"no ADSL in .*add adsl.xpt"):
        load_adam(tmp_path)


def test_adtte_without_cnsr_names_dataset_variable_and_fix(tmp_path: Path) -> None:
    adsl = _adsl()
    _write(tmp_path, "adsl.xpt", adsl)
    _write(tmp_path, "adtte.xpt", _adtte(adsl).drop(columns="CNSR"))
    with pytest.raises(DatasetError, match=r"^ADTTE has no CNSR: .*add CNSR to adtte.xpt") as err:
        load_adam(tmp_path)
    assert (err.value.dataset, err.value.variable) == ("ADTTE", "CNSR")


def test_cnsr_other_than_0_or_1_is_refused(tmp_path: Path) -> None:
    adsl = _adsl()
    tte = _adtte(adsl)
    tte.loc[0, "CNSR"] = 2.0
    _write(tmp_path, "adsl.xpt", adsl)
    _write(tmp_path, "adtte.xpt", tte)
    with pytest.raises(DatasetError, match="CNSR is 0 for an event and 1 for a censored"):
        load_adam(tmp_path)


def test_arm_comes_from_adsl_not_from_the_bds_copy(folder: Path) -> None:
    inputs = load_adam(folder)
    assert inputs.arm_variable == "TRT01P"
    assert inputs.adtte is not None
    joined = inputs.adtte.frame.set_index("USUBJID")[ARM]
    expected = inputs.adsl.frame.set_index("USUBJID")[ARM]
    assert joined.sort_index().equals(expected.sort_index())
    assert set(inputs.adtte.frame["TRTP"]) == {"wrong arm copy"}


def test_arm_variable_falls_back_to_arm_then_armcd(tmp_path: Path) -> None:
    adsl = _adsl().drop(columns="TRT01P")
    _write(tmp_path, "adsl.xpt", adsl)
    _write(tmp_path, "adtte.xpt", _adtte(adsl))
    assert load_adam(tmp_path).arm_variable == "ARM"
    with pytest.raises(DatasetError, match=r"ADSL has no TRT01A, the --arm-var given; .*ARM"):
        load_adam(tmp_path, arm_var="trt01a")


def test_population_flag_filters_adsl_and_every_dataset(folder: Path) -> None:
    inputs = load_adam(folder, population="efffl")
    assert len(inputs.adsl.frame) == 6 and inputs.population == "EFFFL"
    assert inputs.adtte is not None and len(inputs.adtte.frame) == 6
    assert any("EFFFL = 'Y': 6 of 9" in note for note in inputs.notes)


def test_unknown_population_flag_lists_the_flags_present(folder: Path) -> None:
    with pytest.raises(DatasetError, match="no population flag ITTFL; flags present: SAFFL, EFFFL"):
        load_adam(folder, population="ITTFL")


def test_control_defaults_to_placebo_and_unknown_control_lists_arms(folder: Path) -> None:
    inputs = load_adam(folder)
    assert inputs.control == "Placebo"
    assert inputs.arms == ("Drug A", "Drug B", "Placebo")
    with pytest.raises(DatasetError, match="'Drug C' is not an arm; the arms are: 'Drug A'"):
        load_adam(folder, control="Drug C")
    assert load_adam(folder, control="Drug B").control == "Drug B"


def test_control_choice_without_a_placebo_and_with_two() -> None:
    control, note = choose_control(["B", "A"], None)
    assert control == "B" and note is not None and "first in sort order" in note
    assert choose_control(["Drug", "Standard control"], None)[0] == "Standard control"
    with pytest.raises(DatasetError, match=r"more than one arm says placebo/control.*--control"):
        choose_control(["Placebo 1", "Placebo 2", "Drug"], None)


def test_bds_discovery_and_the_bds_option(folder: Path) -> None:
    lab = pd.DataFrame(
        {"USUBJID": ["S1-00"], "PARAMCD": ["ALT"], "AVAL": [1.0], "AVISIT": ["Week 2"]}
    )
    _write(folder, "adlb.xpt", lab)
    _write(folder, "adfoo.csv", pd.DataFrame({"USUBJID": ["S1-00"], "X": [1]}))  # not a BDS
    assert [d.name for d in load_adam(folder).bds] == ["ADLB"]
    assert load_adam(folder, bds=["adlb"]).bds[0].name == "ADLB"
    with pytest.raises(DatasetError, match="ADFOO has no PARAMCD"):
        load_adam(folder, bds=["adfoo"])
    with pytest.raises(DatasetError, match=r"--bds adqs: no adqs.xpt or .csv in the folder"):
        load_adam(folder, bds=["adqs"])


def test_a_subject_missing_from_adsl_is_refused(folder: Path) -> None:
    lab = pd.DataFrame(
        {"USUBJID": ["S9-99"], "PARAMCD": ["ALT"], "AVAL": [1.0], "AVISIT": ["Week 2"]}
    )
    _write(folder, "adlb.xpt", lab)
    with pytest.raises(DatasetError, match="ADLB has 1 USUBJID absent from ADSL"):
        load_adam(folder)


def test_adsl_alone_is_not_enough(tmp_path: Path) -> None:
    _write(tmp_path, "adsl.xpt", _adsl())
    with pytest.raises(DatasetError, match="no ADTTE and no BDS dataset"):
        load_adam(tmp_path)


def test_public_names() -> None:
    assert set(adam_io.__all__) == {
        "ARM",
        "AdamDataset",
        "AdamInputs",
        "choose_control",
        "find_datasets",
        "load_adam",
        "read_dataset",
        "require_variables",
    }
