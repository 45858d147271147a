"""The protocol schema: the facts of the packaged STALWART protocol, and each model's own checks."""

from __future__ import annotations

import datetime as dt
import tomllib
from typing import Any

import pydantic
import pytest

from stalwart.errors import ProtocolError
from stalwart.protocol.analysis_plan import Endpoint
from stalwart.protocol.load import LoadedProtocol, parse_protocol
from stalwart.protocol.schema import (
    FormItem,
    Protocol,
    Randomization,
    ScreeningItem,
    Study,
    Treatment,
)


@pytest.fixture(scope="module")
def protocol(packaged: LoadedProtocol) -> Protocol:
    return packaged.protocol


@pytest.fixture()
def data(packaged_text: str) -> dict[str, Any]:
    """The packaged protocol as plain TOML data, to mutate."""
    return tomllib.loads(packaged_text)


# -- facts of the packaged protocol -------------------------------------------------------------
def test_three_arms_one_to_one_to_one_with_one_control(protocol: Protocol) -> None:
    assert protocol.arm_codes == ["NOTHER", "IL2", "IL2ART"]
    assert [a.ratio for a in protocol.arms] == [1, 1, 1]
    assert [a.code for a in protocol.arms if a.control] == ["NOTHER"]
    assert protocol.control_arm == "NOTHER"
    assert protocol.arm("NOTHER").treatments == []
    assert protocol.arm("IL2").treatments == ["IL2"]
    assert protocol.arm("IL2ART").treatments == ["IL2", "ART"]


def test_study_identity_and_calendar(protocol: Protocol) -> None:
    s = protocol.study
    assert s.id == "STALWART" and s.blinding == "open-label"
    assert "NCT00110812" in s.registry_ids
    assert s.sample_size == 267
    assert (s.accrual_start, s.accrual_end, s.follow_up_end) == (
        dt.date(2005, 12, 1),
        dt.date(2008, 6, 30),
        dt.date(2009, 2, 28),
    )


def test_il2_twice_daily_five_days_every_eight_weeks_three_cycles(protocol: Protocol) -> None:
    il2 = protocol.treatments["IL2"]
    assert il2.administrations_per_day == 2
    assert il2.cycle_days == [0, 1, 2, 3, 4]
    assert il2.cycle_interval_weeks == 8
    assert il2.cycles == 3
    assert il2.anchor is None
    assert il2.route == "SC"


def test_art_ten_days_around_il2_anchored_on_il2(protocol: Protocol) -> None:
    art = protocol.treatments["ART"]
    assert art.anchor == "IL2"
    assert art.cycle_days == list(range(-3, 7))
    assert len(art.cycle_days) == 10
    assert art.administrations_per_day == 1
    assert (art.cycles, art.cycle_interval_weeks, art.first_cycle_day) == (None, None, None)


def test_visits_entry_to_week_32_with_windows(protocol: Protocol) -> None:
    visits = [(v.code, v.day, v.window_before, v.window_after) for v in protocol.visits]
    assert visits == [
        ("ENTRY", 0, 0, 0),
        ("WK04", 28, 7, 7),
        ("WK08", 56, 7, 7),
        ("WK12", 84, 7, 7),
        ("WK16", 112, 7, 7),
        ("WK20", 140, 7, 7),
        ("WK24", 168, 7, 7),
        ("WK28", 196, 7, 7),
        ("WK32", 224, 7, 14),
    ]
    assert protocol.visit("WK32").name == "Week 32 (primary)"
    assert [(c.code, c.treatment, c.cycle_day) for c in protocol.cycle_visits] == [
        ("PRECYC", "IL2", -2),
        ("ENDCYC", "IL2", 4),
    ]
    assert protocol.follow_up.extended_visit_interval_weeks == 16


def test_randomization_and_forms(protocol: Protocol) -> None:
    r = protocol.randomization
    assert (r.method, r.block_sizes, r.strata) == ("permuted_blocks", [3, 6], ["site"])
    assert len(protocol.sites) == 9 and protocol.sites[0].code == "US01"
    assert protocol.lab_item("HIVRNA").lower_limit == 50
    assert protocol.lab_item("CD4").lower_limit is None
    assert protocol.lab_item("CD4").required and not protocol.lab_item("CD4PCT").required
    assert (protocol.forms.AE.min_grade, protocol.forms.AE.max_grade) == (1, 5)
    assert [e.code for e in protocol.forms.CE.events if e.category == "DEATH"] == ["DEATH"]


def test_endpoints_and_plan(protocol: Protocol) -> None:
    cd4 = protocol.endpoint("CD4")
    assert (cd4.kind, cd4.test, cd4.visit, cd4.baseline_visit) == (
        "continuous",
        "CD4",
        "WK32",
        "ENTRY",
    )
    assert protocol.endpoint("ODDEATH").event_categories == ["OPPORTUNISTIC", "DEATH"]
    assert protocol.analysis.primary[0].comparisons == [["IL2", "NOTHER"], ["IL2ART", "NOTHER"]]
    assert ["IL2+IL2ART", "NOTHER"] in protocol.analysis.time_to_event[0].comparisons


@pytest.mark.parametrize(
    ("lookup", "key"),
    [("arm", "PLACEBO"), ("visit", "WK99"), ("endpoint", "NOPE"), ("lab_item", "ALT")],
)
def test_lookups_raise_key_error(protocol: Protocol, lookup: str, key: str) -> None:
    with pytest.raises(KeyError, match=key):
        getattr(protocol, lookup)(key)


def test_models_are_frozen(protocol: Protocol) -> None:
    with pytest.raises(pydantic.ValidationError):
        protocol.study.sample_size = 1  # type: ignore[misc]


def test_round_trip_through_model_dump(protocol: Protocol) -> None:
    again = Protocol.model_validate(protocol.model_dump())
    assert again == protocol


# -- whole-protocol validation on mutated data --------------------------------------------------
def _errors(data: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        Protocol.model_validate(data)
    return str(info.value)


def test_plain_data_validates(data: dict[str, Any]) -> None:
    assert Protocol.model_validate(data).study.id == "STALWART"


def test_no_control_arm(data: dict[str, Any]) -> None:
    data["arms"][0]["control"] = False
    assert "exactly one arm must have control = true" in _errors(data)


def test_duplicate_arm_and_site_codes(data: dict[str, Any]) -> None:
    data["arms"][2]["code"] = "IL2"
    data["sites"][1]["code"] = "US01"
    text = _errors(data)
    assert "arms: duplicate code 'IL2'" in text
    assert "sites: duplicate code 'US01'" in text


def test_visit_codes_may_not_take_the_unscheduled_prefix(data: dict[str, Any]) -> None:
    data["cycle_visits"][0]["code"] = "UNSPRE"
    data["visits"][2]["code"] = "WK04"
    text = _errors(data)
    assert "'UNSPRE' starts with 'UNS', reserved for unscheduled visits" in text
    assert "visits: duplicate code 'WK04'" in text


def test_arm_with_unknown_treatment(data: dict[str, Any]) -> None:
    data["arms"][1]["treatments"] = ["IL7"]
    assert "arms.IL2.treatments: unknown treatment 'IL7'" in _errors(data)


def test_stratum_must_be_site_or_screening_item(data: dict[str, Any]) -> None:
    data["randomization"]["strata"] = ["site", "region"]
    assert "randomization.strata: 'region' is neither 'site' nor a screening item" in _errors(data)


def test_rule_on_unknown_item_and_boolean_rule_needing_bool(data: dict[str, Any]) -> None:
    data["eligibility"][0]["rule"]["item"] = "hiv"
    data["eligibility"][4]["rule"]["value"] = "yes"
    text = _errors(data)
    assert "eligibility.IN1.rule.item: 'hiv' is not a screening item" in text
    assert "eligibility.EX1.rule.value: on_continuous_art needs true/false" in text


def test_anchor_must_exist_and_not_be_anchored(data: dict[str, Any]) -> None:
    data["treatments"]["ART"]["anchor"] = "IL7"
    assert "treatments.ART.anchor: unknown treatment" in _errors(data)


def test_anchor_chain_refused(data: dict[str, Any]) -> None:
    data["treatments"]["EXTRA"] = dict(data["treatments"]["ART"], anchor="ART")
    assert "treatments.EXTRA.anchor: an anchor cannot be anchored" in _errors(data)


def test_cycle_visit_with_unknown_treatment(data: dict[str, Any]) -> None:
    data["cycle_visits"][0]["treatment"] = "IL7"
    assert "cycle_visits.PRECYC.treatment: unknown treatment" in _errors(data)


def test_visit_days_must_increase_and_start_at_zero(data: dict[str, Any]) -> None:
    data["visits"][0]["day"] = 1
    assert "the first visit must be on day 0" in _errors(data)
    data["visits"][0]["day"] = 0
    data["visits"][2]["day"] = 28
    assert "visits: days must be strictly increasing" in _errors(data)


@pytest.mark.parametrize(("after", "overlaps"), [(20, False), (21, True)])
def test_window_overlap_boundary(data: dict[str, Any], after: int, overlaps: bool) -> None:
    # WK04 (day 28) ends on day 28 + after; WK08 (day 56, 7 before) starts on day 49.
    data["visits"][1]["window_after"] = after
    if overlaps:
        assert "visits: windows of WK04 and WK08 overlap" in _errors(data)
    else:
        assert Protocol.model_validate(data).visit("WK04").window_after == after


def test_visit_with_unknown_form(data: dict[str, Any]) -> None:
    data["visits"][3]["forms"] = ["LAB", "ECG"]
    assert "visits.WK12.forms: unknown form 'ECG'" in _errors(data)


def test_endpoint_references(data: dict[str, Any]) -> None:
    data["endpoints"][0]["baseline_visit"] = "SCREEN"
    data["endpoints"][1]["test"] = "ALT"
    text = _errors(data)
    assert "endpoints.CD4.baseline_visit: unknown visit" in text
    assert "endpoints.HIVRNA.test: 'ALT' is not a LAB item" in text


def test_analysis_of_unknown_endpoint_and_pooled_unknown_arm(data: dict[str, Any]) -> None:
    data["analysis"]["primary"][0]["endpoint"] = "VL"
    data["analysis"]["time_to_event"][0]["comparisons"][0] = ["IL2+IL7", "NOTHER"]
    text = _errors(data)
    assert "analysis.VL: unknown endpoint" in text
    assert "analysis.ODDEATH.comparisons: unknown arm 'IL7'" in text


# -- models' own checks -------------------------------------------------------------------------
def _study(**kw: Any) -> dict[str, Any]:
    base = {
        "id": "S",
        "title": "t",
        "version": "1",
        "phase": "II",
        "design": "d",
        "blinding": "open-label",
        "sample_size": 10,
        "accrual_start": "2005-01-01",
        "accrual_end": "2006-01-01",
        "follow_up_end": "2007-01-01",
    }
    return base | kw


def test_study_dates_in_order() -> None:
    Study.model_validate(_study(follow_up_end="2006-01-01"))  # equal bounds are fine
    with pytest.raises(pydantic.ValidationError, match="accrual_start <= accrual_end"):
        Study.model_validate(_study(accrual_end="2004-12-31"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("id", "stalwart"), ("id", "A" * 21), ("sample_size", 0), ("blinding", "blind")],
)
def test_study_field_constraints(field: str, value: Any) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        Study.model_validate(_study(**{field: value}))


def test_randomization_block_sizes_positive_and_present() -> None:
    ok = {"method": "permuted_blocks", "block_sizes": [3], "list_length_per_stratum": 1}
    assert Randomization.model_validate(ok).strata == ["site"]
    with pytest.raises(pydantic.ValidationError, match="block sizes must be positive"):
        Randomization.model_validate(ok | {"block_sizes": [3, 0]})
    with pytest.raises(pydantic.ValidationError, match="block_sizes"):
        Randomization.model_validate(ok | {"block_sizes": []})
    with pytest.raises(pydantic.ValidationError, match="list_length_per_stratum"):
        Randomization.model_validate(ok | {"list_length_per_stratum": 0})


def _treatment(**kw: Any) -> dict[str, Any]:
    base = {
        "name": "X",
        "route": "PO",
        "dose": 1,
        "dose_unit": "mg",
        "administrations_per_day": 1,
        "cycle_days": [0, 1],
        "cycle_interval_weeks": 4,
        "cycles": 2,
        "first_cycle_day": 0,
    }
    return base | kw


def test_treatment_needs_own_cycles_or_anchor() -> None:
    assert Treatment.model_validate(_treatment()).cycles == 2
    with pytest.raises(pydantic.ValidationError, match="needs cycle_interval_weeks"):
        Treatment.model_validate(_treatment(cycles=None))
    with pytest.raises(pydantic.ValidationError, match="takes its cycles from its anchor"):
        Treatment.model_validate(_treatment(anchor="IL2"))
    anchored = _treatment(anchor="IL2", cycle_interval_weeks=None, cycles=None)
    anchored["first_cycle_day"] = None
    assert Treatment.model_validate(anchored).anchor == "IL2"


def test_treatment_days_unique_and_dose_positive() -> None:
    with pytest.raises(pydantic.ValidationError, match="repeats a day"):
        Treatment.model_validate(_treatment(cycle_days=[0, 1, 1]))
    with pytest.raises(pydantic.ValidationError, match="dose"):
        Treatment.model_validate(_treatment(dose=0))


def test_items_bounds_choices_and_units() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"min 10\.0 is greater than max 1\.0"):
        ScreeningItem.model_validate(
            {"name": "x", "label": "X", "type": "number", "min": 10, "max": 1}
        )
    with pytest.raises(pydantic.ValidationError, match="a choice item needs choices"):
        ScreeningItem.model_validate({"name": "x", "label": "X", "type": "choice"})
    with pytest.raises(pydantic.ValidationError, match="numeric item ALT needs a unit"):
        FormItem.model_validate({"name": "ALT", "label": "ALT", "type": "number"})
    with pytest.raises(pydantic.ValidationError, match="lower_limit"):
        FormItem.model_validate(
            {"name": "ALT", "label": "ALT", "type": "number", "unit": "U/L", "lower_limit": 0}
        )


# -- LAB items as ADLB parameters ----------------------------------------------------------------
def test_lab_items_carry_their_adlb_parameter(protocol: Protocol) -> None:
    assert [(i.name, i.paramcd, i.param) for i in protocol.forms.LAB.items] == [
        ("CD4", "CD4", "CD4+ count (cells/mm3)"),
        ("CD4PCT", "CD4PCT", "CD4+ percent (%)"),
        ("HIVRNA", "LHIVRNA", "log10 HIV RNA (log10 copies/mL)"),
    ]


def test_a_lab_item_without_paramcd_takes_its_name_and_label_with_unit() -> None:
    alt = {"name": "ALT", "label": "Alanine aminotransferase", "type": "number", "unit": "U/L"}
    item = FormItem.model_validate(alt)
    assert (item.paramcd, item.param) == ("ALT", "Alanine aminotransferase (U/L)")
    note = FormItem.model_validate({"name": "NOTE", "label": "Note", "type": "text"})
    assert (note.paramcd, note.param) == ("NOTE", "Note")


@pytest.mark.parametrize("paramcd", ["lhivrna", "LOG10HIVRNA", "1HIVRNA", "HIV-RNA", ""])
def test_a_bad_paramcd_is_refused_naming_the_item(packaged_text: str, paramcd: str) -> None:
    text = packaged_text.replace('paramcd = "LHIVRNA"', f'paramcd = "{paramcd}"')
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    (problem,) = info.value.problems
    assert problem.startswith("forms.LAB.items.2.paramcd:")
    assert f"PARAMCD {paramcd!r} must be 1 to 8 upper-case letters" in problem


def test_a_name_too_long_for_a_paramcd_asks_for_one() -> None:
    platelets = {"name": "PLATELETS", "label": "Platelets", "type": "number", "unit": "10^9/L"}
    with pytest.raises(pydantic.ValidationError, match="give the item a paramcd"):
        FormItem.model_validate(platelets)


def test_endpoint_fields_for_kind() -> None:
    with pytest.raises(pydantic.ValidationError, match="needs test, visit and baseline_visit"):
        Endpoint.model_validate({"id": "E", "kind": "continuous", "description": "d", "test": "X"})
    with pytest.raises(pydantic.ValidationError, match="needs event_categories"):
        Endpoint.model_validate({"id": "E", "kind": "time_to_event", "description": "d"})


# -- minimization -------------------------------------------------------------------------------
def _minimization(data: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """``data`` with minimization on site and categorised CD4 instead of permuted blocks."""
    data["randomization"] = {
        "method": "minimization",
        "minimization": {
            "probability": 0.8,
            "list_length": 400,
            "factors": [{"name": "site"}, {"name": "cd4", "weight": 2, "cuts": [500]}],
        }
        | settings,
    }
    return data


def test_loader_names_each_bad_minimization_field(packaged_text: str) -> None:
    start = packaged_text.index("[randomization]")
    end = packaged_text.index("# Screening form items")
    block = """[randomization]
method = "minimization"

[randomization.minimization]
probability = 0.25
list_length = 300
factors = [{ name = "site", weight = -1 }, { name = "region" }]

"""
    with pytest.raises(ProtocolError) as info:
        parse_protocol(packaged_text[:start] + block + packaged_text[end:])
    problems = info.value.problems
    assert any(p.startswith("randomization.minimization.factors.0.weight:") for p in problems)
    # the cross-field checks run once each field is valid on its own
    block = block.replace("weight = -1", "weight = 1")
    with pytest.raises(ProtocolError) as info:
        parse_protocol(packaged_text[:start] + block + packaged_text[end:])
    text = str(info.value)
    assert "randomization.minimization.factors.1.name: 'region' is neither" in text
    assert "randomization.minimization.probability: 0.25 must be greater than 1/3" in text


def test_minimization_is_a_method_beside_permuted_blocks(data: dict[str, Any]) -> None:
    r = Protocol.model_validate(_minimization(data)).randomization
    assert r.method == "minimization" and r.block_sizes is None
    assert r.minimization is not None
    assert (r.minimization.probability, r.minimization.imbalance) == (0.8, "range")
    assert [(f.name, f.weight, f.cuts) for f in r.minimization.factors] == [
        ("site", 1.0, None),
        ("cd4", 2.0, [500.0]),
    ]
    with pytest.raises(ValueError, match="has no permuted blocks"):
        _ = r.permuted_blocks


def test_the_packaged_protocol_keeps_permuted_blocks(protocol: Protocol) -> None:
    r = protocol.randomization
    assert r.minimization is None
    assert r.permuted_blocks == ([3, 6], 300)


@pytest.mark.parametrize(
    ("factor", "fragment"),
    [
        (
            {"name": "region"},
            "randomization.minimization.factors.1.name: 'region' is neither 'site' nor an item "
            "of the screening form",
        ),
        (
            {"name": "cd4"},
            "randomization.minimization.factors.1.cuts: 'cd4' is a number item; give cuts",
        ),
        (
            {"name": "sex", "cuts": [1]},
            "randomization.minimization.factors.1.cuts: 'sex' has levels of its own; remove cuts",
        ),
        (
            {"name": "cd4", "cuts": [6000]},
            "randomization.minimization.factors.1.cuts: [6000.0] lie outside the range of 'cd4'",
        ),
        ({"name": "cd4", "cuts": [500, 350]}, "strictly increasing"),
        ({"name": "cd4", "cuts": []}, "strictly increasing"),
        ({"name": "site"}, "randomization.minimization.factors: duplicate code 'site'"),
        (
            {"name": "cd4", "weight": -1, "cuts": [500]},
            "greater than or equal to 0",
        ),
    ],
)
def test_bad_minimization_factor(
    data: dict[str, Any], factor: dict[str, Any], fragment: str
) -> None:
    _minimization(data)
    data["randomization"]["minimization"]["factors"][1] = factor
    assert fragment in _errors(data)


def test_negative_weight_names_the_field(data: dict[str, Any]) -> None:
    _minimization(data)
    data["randomization"]["minimization"]["factors"][0]["weight"] = -0.5
    with pytest.raises(pydantic.ValidationError) as info:
        Protocol.model_validate(data)
    (error,) = info.value.errors()
    assert error["loc"] == ("randomization", "minimization", "factors", 0, "weight")


@pytest.mark.parametrize("probability", [0.3, 1 / 3, 0.0, -1.0, 1.0001, 2])
def test_probability_outside_one_over_k_to_one(data: dict[str, Any], probability: float) -> None:
    text = _errors(_minimization(data, probability=probability))
    assert "randomization.minimization.probability" in text
    if 0 < probability <= 1:
        assert "must be greater than 1/3" in text


@pytest.mark.parametrize("probability", [0.34, 0.8, 1.0])
def test_probability_inside(data: dict[str, Any], probability: float) -> None:
    r = Protocol.model_validate(_minimization(data, probability=probability)).randomization
    assert r.minimization is not None and r.minimization.probability == probability


def test_two_arms_allow_probability_above_one_half(data: dict[str, Any]) -> None:
    data["arms"] = data["arms"][:2]
    data["analysis"]["primary"][0]["comparisons"] = [["IL2", "NOTHER"]]
    data["analysis"]["time_to_event"][0]["comparisons"] = [["IL2", "NOTHER"]]
    for section in ("secondary", "longitudinal", "safety"):
        data["analysis"][section][0]["comparisons"] = [["IL2", "NOTHER"]]
    assert "greater than 1/2" in _errors(_minimization(data, probability=0.5))
    Protocol.model_validate(_minimization(data, probability=0.51))


def test_unknown_method_and_measure(data: dict[str, Any]) -> None:
    data["randomization"]["method"] = "urn"
    text = _errors(data)
    assert "randomization.method" in text and "'permuted_blocks' or 'minimization'" in text
    data["randomization"]["method"] = "permuted_blocks"
    _minimization(data, imbalance="sd")
    assert "randomization.minimization.imbalance" in _errors(data)


def test_fields_that_do_not_belong_to_the_method(data: dict[str, Any]) -> None:
    blocks = dict(data["randomization"])
    _minimization(data)
    data["randomization"]["block_sizes"] = [3]
    assert "block_sizes apply to method 'permuted_blocks' only" in _errors(data)
    _minimization(data)
    data["randomization"]["strata"] = ["site"]
    assert "strata apply to method 'permuted_blocks' only" in _errors(data)
    data["randomization"] = {"method": "minimization"}
    assert "needs a [randomization.minimization] table" in _errors(data)
    data["randomization"] = blocks | {
        "minimization": {"probability": 0.8, "list_length": 1, "factors": [{"name": "site"}]}
    }
    assert "applies to method 'minimization' only" in _errors(data)
    data["randomization"] = {"method": "permuted_blocks", "block_sizes": [3]}
    assert "needs list_length_per_stratum" in _errors(data)
