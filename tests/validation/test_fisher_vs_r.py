"""Fisher's exact test against R ``fisher.test`` on many 2x2 tables, one R call.

R solves the conditional MLE and the interval limits with ``uniroot`` at its default tolerance
(about 1e-4 on a transformed scale), so its printed estimate and limits are only good to about
3-4 significant digits. The R script therefore also runs ``fisher.test`` itself with ``uniroot``
tightened to 1e-14 (same code, same equations); that version is compared at 1e-8, the stock one
to within uniroot's tolerance (2.5e-4 absolute on ``or`` below 1, on ``1 / or`` above 1; that is
up to 9% relative for limits near 1e-4). p-values need no root finding: 1e-10.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.fisher import fisher_exact, fisher_exact_proportions
from validation.rscript import run_r

# a, b, c, d as R's matrix(c(a, c, b, d), 2): table[1, 1] = a, table[1, 2] = b
TABLES = np.array(
    [
        [3, 1, 1, 3],
        [10, 2, 3, 15],
        [0, 5, 5, 0],  # odds ratio 0
        [5, 0, 0, 5],  # odds ratio inf
        [0, 0, 3, 4],  # one possible table
        [0, 0, 0, 0],
        [12, 1, 164, 90],  # STALWART: events (12 of 176 vs 1 of 91)
        [1, 0, 0, 0],
        [50, 30, 400, 700],
        [2, 7, 8, 2],
        [0, 3, 20, 17],  # AE with no events in one arm
        [1, 1, 100, 1],
        [25, 20, 151, 71],
        [7, 0, 169, 91],
    ]
)
ALTERNATIVES = ("two-sided", "less", "greater")
CONF_LEVELS = (0.95, 0.90)

R_CODE = r"""
tight <- stats::fisher.test
environment(tight) <- list2env(
  list(uniroot = function(f, interval, ...) {
    stats::uniroot(f, interval, ..., tol = 1e-14, maxiter = 10000)
  }),
  parent = asNamespace("stats")
)
out <- list()
for (i in seq_len(nrow(tabs))) {
  m <- matrix(c(tabs$a[i], tabs$c[i], tabs$b[i], tabs$d[i]), 2)
  for (alt in c("two.sided", "less", "greater")) {
    for (conf in c(0.95, 0.90)) {
      key <- paste(i, alt, conf)
      stock <- fisher.test(m, alternative = alt, conf.level = conf)
      exact <- tight(m, alternative = alt, conf.level = conf)
      out[[paste(key, "p")]] <- stock$p.value
      out[[paste(key, "stock")]] <- c(stock$estimate, stock$conf.int)
      out[[paste(key, "tight")]] <- c(exact$estimate, exact$conf.int)
    }
  }
}
"""


@pytest.fixture(scope="module")
def r_results() -> dict[str, np.ndarray]:
    return run_r(R_CODE, tabs=pd.DataFrame(TABLES, columns=["a", "b", "c", "d"]))


def _r_key(i: int, alternative: str, conf: float) -> str:
    alt = "two.sided" if alternative == "two-sided" else alternative
    return f"{i + 1} {alt} {conf:g}"


@pytest.mark.parametrize("conf", CONF_LEVELS)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_all_tables_in_one_call_match_fisher_test(
    r_results: dict[str, np.ndarray], alternative: str, conf: float
) -> None:
    tables = TABLES.reshape(-1, 2, 2)
    ours = fisher_exact(tables, alternative=alternative, conf_level=conf)  # type: ignore[arg-type]
    assert ours.p_value.shape == (len(TABLES),)
    for i in range(len(TABLES)):
        key = _r_key(i, alternative, conf)
        np.testing.assert_allclose(ours.p_value[i], r_results[f"{key} p"][0], rtol=1e-10)
        estimate = np.array([ours.odds_ratio[i], ours.ci_low[i], ours.ci_high[i]])
        tight = r_results[f"{key} tight"]
        np.testing.assert_array_equal(np.isinf(estimate), np.isinf(tight))
        finite = np.isfinite(tight)
        np.testing.assert_allclose(estimate[finite], tight[finite], rtol=1e-8, atol=1e-12)
        # stock R: uniroot's absolute tolerance ~1.2e-4 acts on ncp when < 1, on 1 / ncp above
        stock = r_results[f"{key} stock"]
        big = stock[finite] > 1
        scale = np.where(big, 1.0 / np.where(big, stock[finite], 1.0), stock[finite])
        ours_scale = np.where(big, 1.0 / np.where(big, estimate[finite], 1.0), estimate[finite])
        np.testing.assert_allclose(ours_scale, scale, rtol=0, atol=2.5e-4)


def test_proportions_helper_and_stalwart_events(r_results: dict[str, np.ndarray]) -> None:
    # 12 of 176 on IL-2 vs 1 of 91 on no therapy, as proportions: two-sided p = 0.067
    ours = fisher_exact_proportions(12, 176, 1, 91)
    key = _r_key(6, "two-sided", 0.95)
    np.testing.assert_allclose(float(ours.p_value), r_results[f"{key} p"][0], rtol=1e-10)
    np.testing.assert_allclose(float(ours.odds_ratio), r_results[f"{key} tight"][0], rtol=1e-8)
    assert float(ours.p_value) == pytest.approx(0.067, abs=5e-4)
    # many AE terms at once: the numbers of one table at a time (up to summation order)
    many = fisher_exact_proportions([12, 7, 0], [176, 176, 176], [1, 0, 3], [91, 91, 91])
    for j, (x1, x2) in enumerate([(12, 1), (7, 0), (0, 3)]):
        one = fisher_exact_proportions(x1, 176, x2, 91)
        assert many.p_value[j] == pytest.approx(float(one.p_value), rel=1e-12)
        assert many.ci_high[j] == pytest.approx(float(one.ci_high), rel=1e-12)
