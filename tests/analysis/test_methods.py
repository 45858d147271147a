"""The method registry: every method a protocol may name has one entry, and nothing else does."""

from __future__ import annotations

from typing import get_args

import pytest

from stalwart.analysis.methods import CONTINUOUS_METHODS, METHODS, TIME_TO_EVENT_METHODS
from stalwart.protocol.analysis_plan import PrimaryAnalysis, TimeToEventAnalysis


def _names(model: type, field: str) -> set[str]:
    (literal,) = get_args(model.model_fields[field].annotation)  # list[Literal[...]]
    return set(get_args(literal))


@pytest.mark.parametrize(
    ("model", "registry"),
    [(PrimaryAnalysis, CONTINUOUS_METHODS), (TimeToEventAnalysis, TIME_TO_EVENT_METHODS)],
)
def test_the_registry_has_exactly_the_protocol_s_method_names(
    model: type, registry: dict[str, object]
) -> None:
    assert set(registry) == _names(model, "methods")


def test_every_method_has_a_label_and_both_kernels() -> None:
    for name, method in METHODS.items():
        assert method.label and method.short_label, name
        assert callable(method.single) and callable(method.batched), name
