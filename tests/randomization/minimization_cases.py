"""Protocol variants with a minimization design, shared by the minimization tests."""

from __future__ import annotations

from stalwart.protocol.load import LoadedProtocol, parse_protocol

MINIMIZATION_BLOCK = """[randomization]
method = "minimization"

[randomization.minimization]
probability = {probability}
imbalance = "{imbalance}"
list_length = {list_length}
factors = [
  {{ name = "site", weight = {site_weight} }},
  {{ name = "cd4", weight = {cd4_weight}, cuts = [500] }},
]

"""


def minimization_text(
    packaged_text: str,
    *,
    probability: float = 0.8,
    imbalance: str = "range",
    list_length: int = 400,
    cd4_weight: float = 1,
    site_weight: float = 1,
) -> str:
    """The packaged protocol with its permuted blocks replaced by minimization on site and CD4."""
    start = packaged_text.index("[randomization]")
    end = packaged_text.index("# Screening form items")
    block = MINIMIZATION_BLOCK.format(
        probability=probability,
        imbalance=imbalance,
        list_length=list_length,
        cd4_weight=cd4_weight,
        site_weight=site_weight,
    )
    return packaged_text[:start] + block + packaged_text[end:]


def minimization_protocol(packaged_text: str, **changes: object) -> LoadedProtocol:
    """``minimization_text`` parsed."""
    return parse_protocol(minimization_text(packaged_text, **changes), source="minimization")  # type: ignore[arg-type]
