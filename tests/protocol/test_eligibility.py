"""Screening answers: validation of each item, and eligibility criterion by criterion."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stalwart.errors import ValidationError
from stalwart.protocol.eligibility import evaluate_eligibility, validate_screening_answers
from stalwart.protocol.load import LoadedProtocol, load_protocol
from stalwart.protocol.schema import Protocol

PROTOCOL: Protocol = load_protocol().protocol
Answers = Callable[..., dict[str, object]]

# criterion -> (the single answer that breaks it, the reason text)
BREAKERS = {
    "IN1": ({"hiv_positive": False}, "IN1 not met: HIV infected"),
    "IN2": ({"cd4": 299}, "IN2 not met: CD4+ count >= 300 cells/mm3"),
    "IN3": ({"haart_access": False}, "IN3 not met: Access to a HAART regimen"),
    "IN4": ({"age": 17}, "IN4 not met: Age 18 years or older"),
    "EX1": ({"on_continuous_art": True}, "EX1 excluded: On continuous antiretroviral therapy"),
    "EX2": (
        {"arv_within_12_months": True},
        "EX2 excluded: Antiretroviral drug within 1 year before entry",
    ),
    "EX3": ({"prior_il2": True}, "EX3 excluded: Prior aldesleukin (IL-2)"),
    "EX4": ({"prior_aids": True}, "EX4 excluded: History of an AIDS-defining illness"),
    "EX5": (
        {"immunomodulator_8_weeks": True},
        "EX5 excluded: Corticosteroids, chemotherapy or immunomodulators within 8 weeks",
    ),
}


def _verdict(answers: dict[str, object]) -> list[str]:
    return evaluate_eligibility(PROTOCOL, validate_screening_answers(PROTOCOL, answers))


def test_every_criterion_has_a_breaker() -> None:
    assert set(BREAKERS) == {c.id for c in PROTOCOL.eligibility}


def test_eligible_answers_are_eligible(eligible_answers: Answers) -> None:
    answers = eligible_answers()
    assert _verdict(answers) == []
    values = validate_screening_answers(PROTOCOL, answers)
    assert values == answers
    assert isinstance(values["age"], int) and isinstance(values["cd4"], float)


@pytest.mark.parametrize("criterion", sorted(BREAKERS))
def test_each_criterion_alone_refuses(eligible_answers: Answers, criterion: str) -> None:
    change, reason = BREAKERS[criterion]
    assert _verdict(eligible_answers(**change)) == [reason]


def test_all_reasons_listed_in_protocol_order(eligible_answers: Answers) -> None:
    change: dict[str, object] = {}
    for c, _ in BREAKERS.values():
        change |= c
    assert _verdict(eligible_answers(**change)) == [BREAKERS[c.id][1] for c in PROTOCOL.eligibility]


@pytest.mark.parametrize(
    ("cd4", "eligible"),
    [(299, False), (299.99, False), (300, True), (300.0, True), (0, False), (5000, True)],
)
def test_cd4_boundary(eligible_answers: Answers, cd4: float, eligible: bool) -> None:
    assert (_verdict(eligible_answers(cd4=cd4)) == []) is eligible


@pytest.mark.parametrize(("age", "eligible"), [(17, False), (18, True), (18.0, True), (120, True)])
def test_age_boundary(eligible_answers: Answers, age: float, eligible: bool) -> None:
    assert (_verdict(eligible_answers(age=age)) == []) is eligible


def test_missing_answer_names_the_item(eligible_answers: Answers) -> None:
    answers = eligible_answers()
    del answers["prior_aids"]
    with pytest.raises(ValidationError) as info:
        validate_screening_answers(PROTOCOL, answers)
    assert info.value.field == "screening.prior_aids"
    assert "required" in info.value.message


def test_unknown_answer_names_the_item(eligible_answers: Answers) -> None:
    with pytest.raises(ValidationError) as info:
        validate_screening_answers(PROTOCOL, {**eligible_answers(), "weight": 70})
    assert info.value.field == "screening.weight"
    assert "not a screening item" in info.value.message


@pytest.mark.parametrize(
    ("item", "value", "fragment"),
    [
        ("hiv_positive", "yes", "answer yes or no"),
        ("hiv_positive", 1, "answer yes or no"),
        ("cd4", "450", "enter a number in cells/mm3"),
        ("cd4", True, "enter a number in cells/mm3"),
        ("cd4", None, "enter a number in cells/mm3"),
        ("cd4", -1, "outside the valid range 0 to 5,000"),
        ("cd4", 5000.5, "outside the valid range 0 to 5,000"),
        ("cd4", math.nan, "enter a number in cells/mm3"),
        ("cd4", math.inf, "outside the valid range"),
        ("age", 35.5, "is a whole number"),
        ("age", math.inf, "is a whole number"),
        ("age", -math.inf, "is a whole number"),
        ("age", math.nan, "enter a number in years"),
        ("age", 121, "outside the valid range 0 to 120"),
        pytest.param("age", 10**400, "outside the valid range 0 to 120", id="age-huge-int"),
        ("sex", "X", "'X' is not an answer of Sex; choose one of ['F', 'M']"),
        ("sex", "", "an answer is required"),
        ("sex", 1, "an answer is required"),
    ],
)
def test_wrong_answer_names_the_item(
    eligible_answers: Answers, item: str, value: object, fragment: str
) -> None:
    with pytest.raises(ValidationError) as info:
        validate_screening_answers(PROTOCOL, eligible_answers(**{item: value}))
    assert info.value.field == f"screening.{item}"
    assert fragment in info.value.message
    assert str(info.value).startswith(f"screening.{item}: ")


anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(item=st.sampled_from([i.name for i in PROTOCOL.screening_items]), value=anything)
def test_any_answer_is_accepted_or_refused_naming_the_item(
    eligible_answers: Answers, item: str, value: object
) -> None:
    answers = eligible_answers()
    answers[item] = value
    try:
        values = validate_screening_answers(PROTOCOL, answers)
    except ValidationError as exc:
        assert exc.field == f"screening.{item}"
        return
    # accepted: the value kept its meaning and the verdict can be computed
    assert values[item] == value
    assert isinstance(evaluate_eligibility(PROTOCOL, values), list)


def test_packaged_fixture_agrees(packaged: LoadedProtocol, eligible_answers: Answers) -> None:
    assert evaluate_eligibility(packaged.protocol, eligible_answers()) == []
