"""Group-sequential boundaries against R ``rpact::getDesignGroupSequential`` and ``mvtnorm``.

Critical values, cumulative alpha spent and stage levels are compared with rpact at 1e-6
(absolute, on the z scale). rpact integrates with a fixed 91-point Newton-Cotes grid per look, so
when two looks are very close (information 0.50 and 0.51 below) its later boundaries are off by
up to ~2e-5; there the boundaries are checked instead against ``mvtnorm::pmvnorm`` (Miwa's
algorithm, an independent multivariate-normal integral): the probability of crossing by each
look, computed in R from our boundaries, must equal the alpha to be spent (1e-9).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.groupseq import group_sequential_bounds
from validation.rscript import require_r_package, run_r

DESIGNS: list[tuple[tuple[float, ...], float, int, str]] = [
    ((0.5, 1.0), 0.025, 1, "obrien-fleming"),
    ((0.5, 1.0), 0.05, 2, "pocock"),
    ((1 / 3, 2 / 3, 1.0), 0.05, 2, "obrien-fleming"),
    ((1 / 3, 2 / 3, 1.0), 0.025, 1, "pocock"),
    ((0.25, 0.5, 0.75, 1.0), 0.025, 1, "obrien-fleming"),
    ((0.25, 0.5, 0.75, 1.0), 0.05, 2, "pocock"),
    ((0.2, 0.4, 0.6, 0.8, 1.0), 0.05, 2, "obrien-fleming"),
    ((0.2, 0.4, 0.6, 0.8, 1.0), 0.025, 1, "pocock"),
    ((0.2, 0.45, 0.7, 0.85, 1.0), 0.025, 1, "obrien-fleming"),  # unequal fractions
    ((0.3, 0.55, 1.0), 0.05, 1, "obrien-fleming"),
    ((0.15, 0.6, 1.0), 0.025, 2, "pocock"),
    ((0.4, 0.7, 0.9, 1.0), 0.05, 2, "obrien-fleming"),
]
CLOSE_LOOKS = ((0.1, 0.5, 0.51, 1.0), 0.05, 2, "obrien-fleming")
RPACT_TYPE = {"obrien-fleming": "asOF", "pocock": "asP"}

R_CODE = r"""
library(rpact)
library(mvtnorm)
out <- list()
for (i in unique(designs$id)) {
  d <- designs[designs$id == i, ]
  g <- getDesignGroupSequential(informationRates = d$t, alpha = d$alpha[1], sided = d$sided[1],
                                typeOfDesign = d$type[1])
  out[[paste(i, "critical")]] <- g$criticalValues
  out[[paste(i, "spent")]] <- g$alphaSpent
  out[[paste(i, "levels")]] <- g$stageLevels
  # independent check of OUR boundaries: P(cross by look k) under H0, by Miwa's algorithm
  t <- d$t
  crossed <- numeric(length(t))
  for (k in seq_along(t)) {
    sigma <- outer(t[1:k], t[1:k], function(a, b) sqrt(pmin(a, b) / pmax(a, b)))
    upper <- d$ours[1:k]
    lower <- if (d$sided[1] == 2) -upper else rep(-Inf, k)
    crossed[k] <- 1 - pmvnorm(lower = lower, upper = upper, sigma = sigma,
                              algorithm = Miwa(steps = 4096))[1]
  }
  out[[paste(i, "mvn crossed")]] <- crossed
}
"""


@pytest.fixture(scope="module")
def r_results() -> dict[str, np.ndarray]:
    require_r_package("rpact")
    require_r_package("mvtnorm")
    rows = []
    for i, (rates, alpha, sided, spending) in enumerate([*DESIGNS, CLOSE_LOOKS]):
        ours = group_sequential_bounds(rates, alpha, sided=sided, spending=spending)  # type: ignore[arg-type]
        rows.append(
            pd.DataFrame(
                {
                    "id": i,
                    "t": rates,
                    "alpha": alpha,
                    "sided": sided,
                    "type": RPACT_TYPE[spending],
                    "ours": ours.critical_values,
                }
            )
        )
    return run_r(R_CODE, designs=pd.concat(rows, ignore_index=True))


@pytest.mark.parametrize("i", range(len(DESIGNS)))
def test_matches_rpact(r_results: dict[str, np.ndarray], i: int) -> None:
    rates, alpha, sided, spending = DESIGNS[i]
    ours = group_sequential_bounds(rates, alpha, sided=sided, spending=spending)  # type: ignore[arg-type]
    np.testing.assert_allclose(ours.critical_values, r_results[f"{i} critical"], rtol=0, atol=1e-6)
    # rpact reports alpha(t) at the last look as alpha - 1e-8 (its tolerance)
    np.testing.assert_allclose(ours.alpha_spent, r_results[f"{i} spent"], rtol=0, atol=2e-8)
    np.testing.assert_allclose(ours.nominal_p, sided * r_results[f"{i} levels"], rtol=1e-5)
    np.testing.assert_allclose(ours.alpha_spent, r_results[f"{i} mvn crossed"], rtol=0, atol=1e-9)


def test_close_looks_match_an_independent_integral(r_results: dict[str, np.ndarray]) -> None:
    i = len(DESIGNS)
    rates, alpha, sided, spending = CLOSE_LOOKS
    ours = group_sequential_bounds(rates, alpha, sided=sided, spending=spending)  # type: ignore[arg-type]
    np.testing.assert_allclose(ours.alpha_spent, r_results[f"{i} mvn crossed"], rtol=0, atol=1e-9)
    gap = np.abs(ours.critical_values - r_results[f"{i} critical"])
    assert gap[:2].max() < 1e-6  # rpact is exact while the looks are well apart
    assert gap.max() < 1e-4  # and within its grid error after the close pair
