"""The plan's secondary, longitudinal and safety sections: packaged values, defaults, errors."""

from __future__ import annotations

import tomllib
from typing import Any

import pydantic
import pytest

from stalwart.errors import ProtocolError
from stalwart.protocol.analysis_plan import LongitudinalAnalysis
from stalwart.protocol.load import LoadedProtocol, parse_protocol
from stalwart.protocol.schema import Protocol


@pytest.fixture()
def data(packaged_text: str) -> dict[str, Any]:
    return tomllib.loads(packaged_text)


def test_packaged_plan_has_mmrm_on_cd4_hiv_rna_secondary_and_ae_safety(
    packaged: LoadedProtocol,
) -> None:
    plan = packaged.protocol.analysis
    (mmrm,) = plan.longitudinal
    assert (mmrm.endpoint, mmrm.method, mmrm.covariance) == ("CD4", "mmrm", "unstructured")
    assert mmrm.fallback_covariance == "compound_symmetry"
    post_baseline = [v.code for v in packaged.protocol.visits[1:]]
    assert mmrm.visits == post_baseline
    assert mmrm.comparisons == plan.primary[0].comparisons
    (secondary,) = plan.secondary
    assert secondary.endpoint == "HIVRNA" and secondary.methods == ["ancova", "ttest"]
    (safety,) = plan.safety
    assert "Fever" in safety.terms and safety.any_grade_at_least == [3]


def test_a_protocol_without_the_new_sections_still_validates(packaged_text: str) -> None:
    text = packaged_text[: packaged_text.index("[[analysis.secondary]]")]
    plan = parse_protocol(text).protocol.analysis
    assert (plan.secondary, plan.longitudinal, plan.safety) == ([], [], [])


def test_longitudinal_defaults() -> None:
    spec = LongitudinalAnalysis(endpoint="CD4", visits=["WK04"], comparisons=[["IL2", "NOTHER"]])
    assert (spec.method, spec.covariance, spec.fallback_covariance) == (
        "mmrm",
        "unstructured",
        "compound_symmetry",
    )
    assert (spec.baseline, spec.df_method) == ("by_visit", "residual")


def _problems(data: dict[str, Any]) -> str:
    with pytest.raises(pydantic.ValidationError) as info:
        Protocol.model_validate(data)
    return str(info.value)


def test_bad_longitudinal_visits_and_endpoint_are_named(data: dict[str, Any]) -> None:
    spec = data["analysis"]["longitudinal"][0]
    spec["visits"] = ["ENTRY", "WK04", "WK99", "WK04"]
    text = _problems(data)
    assert "analysis.longitudinal.CD4.visits: unknown visit 'WK99'" in text
    assert "analysis.longitudinal.CD4.visits: 'ENTRY' is the baseline visit" in text
    assert "analysis.longitudinal.CD4.visits: duplicate code 'WK04'" in text
    spec["visits"] = ["WK04"]
    spec["endpoint"] = "ODDEATH"
    assert "analysis.longitudinal.ODDEATH.endpoint: a time_to_event endpoint" in _problems(data)


def test_bad_safety_terms_grades_and_arms_are_named(data: dict[str, Any]) -> None:
    spec = data["analysis"]["safety"][0]
    spec["terms"] = ["Fever", "Hiccups"]
    spec["any_grade_at_least"] = [7]
    spec["comparisons"] = [["IL3", "NOTHER"]]
    text = _problems(data)
    assert "analysis.safety.AE.terms: 'Hiccups' is not a term of forms.AE.terms" in text
    assert "analysis.safety.AE.any_grade_at_least: 7 lies outside the AE grades 1 to 5" in text
    assert "analysis.AE.comparisons: unknown arm 'IL3'" in text


def test_field_level_errors_name_the_field(packaged_text: str) -> None:
    text = packaged_text.replace('covariance = "unstructured"', 'covariance = "toeplitz"')
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    assert any(p.startswith("analysis.longitudinal.0.covariance:") for p in info.value.problems)
    text = packaged_text.replace('endpoint = "HIVRNA"', 'endpoint = "AE"')
    with pytest.raises(ProtocolError, match=r"analysis\.secondary\.AE\.endpoint: a safety"):
        parse_protocol(text)
