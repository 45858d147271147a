"""Screening answers of a person eligible under the packaged protocol (a plain helper).

The ``eligible_answers`` fixture hands out ``eligible_answers_of``; hypothesis tests and module
level helpers import it directly.
"""

from __future__ import annotations


def eligible_answers_of(**overrides: object) -> dict[str, object]:
    """Screening answers of a person who meets every criterion of the packaged protocol."""
    answers: dict[str, object] = {
        "age": 35,
        "sex": "M",
        "hiv_positive": True,
        "cd4": 520.0,
        "hiv_rna": 20000.0,
        "on_continuous_art": False,
        "arv_within_12_months": False,
        "prior_il2": False,
        "haart_access": True,
        "prior_aids": False,
        "immunomodulator_8_weeks": False,
    }
    unknown = set(overrides) - set(answers)
    assert not unknown, f"not screening items: {unknown}"
    answers.update(overrides)
    return answers
