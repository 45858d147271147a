"""Censored HIV RNA by arm against R: Tobit vs ``survreg``, substitution vs ``lm``, one R call.

``survreg`` runs with ``rel.tolerance = 1e-12`` so that its own convergence error stays below the
1e-7 relative tolerance used here (at its default 1e-9 its estimates can differ by ~1e-6).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.censored import substitution_by_arm, tobit_by_arm
from validation.rscript import require_r_package, run_r

RTOL = 1e-7


def _simulated(
    seed: int, means: dict[str, float], n: int, sd: float, limits: tuple[float, ...]
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    arm = rng.choice(np.array(list(means)), n)
    log10_rna = np.array([means[a] for a in arm]) + sd * rng.standard_normal(n)
    limit = rng.choice(np.array(limits), n)
    rna = np.round(10.0**log10_rna)
    below = rna < limit
    return pd.DataFrame(
        {"rna": np.where(below, np.nan, rna), "below": below, "limit": limit, "arm": arm}
    )


CASES: dict[str, tuple[pd.DataFrame, object]] = {
    "two_arms": (_simulated(1, {"IL2": 4.3, "NOTHER": 4.1}, 120, 0.7, (50.0,)), "NOTHER"),
    "stalwart_three_arms": (
        _simulated(2, {"NOTHER": 4.2, "IL2": 4.4, "IL2ART": 1.9}, 267, 0.8, (50.0,)),
        "NOTHER",
    ),
    "two_assays": (
        _simulated(3, {"NOTHER": 3.0, "IL2": 3.2, "IL2ART": 2.2}, 200, 0.9, (50.0, 400.0)),
        "IL2",
    ),
    "no_censoring": (_simulated(4, {"A": 5.0, "B": 4.8}, 60, 0.5, (10.0,)), "A"),
    "heavy_censoring": (_simulated(5, {"NOTHER": 3.8, "IL2ART": 1.4}, 90, 0.6, (50.0,)), "NOTHER"),
}
CASES["numeric_arms"] = (
    CASES["two_arms"][0].assign(arm=lambda d: np.where(d["arm"] == "IL2", 2, 1)),
    1,
)

R_CODE = r"""
library(survival)
out <- list()
for (id in unique(rna$id)) {
  d <- rna[rna$id == id, ]
  d$below <- as.logical(d$below)
  d$arm <- relevel(factor(d$arm), as.character(d$reference[1]))
  d$y <- log10(ifelse(d$below, d$limit, d$rna))
  k <- nlevels(d$arm)
  contrast <- cbind(1, rbind(0, diag(k - 1)))
  fit <- survreg(Surv(y, !below, type = "left") ~ arm, data = d, dist = "gaussian",
                 control = survreg.control(rel.tolerance = 1e-12, maxiter = 200))
  v <- vcov(fit)
  tab <- summary(fit)$table
  out[[paste(id, "tobit coef")]] <- coef(fit)
  out[[paste(id, "tobit vcov")]] <- v
  out[[paste(id, "tobit scale")]] <- fit$scale
  out[[paste(id, "tobit loglik")]] <- fit$loglik[2]
  out[[paste(id, "tobit p")]] <- tab[2:k, "p"]
  out[[paste(id, "tobit z")]] <- tab[2:k, "z"]
  out[[paste(id, "tobit means")]] <- contrast %*% coef(fit)
  vb <- v[1:k, 1:k]
  out[[paste(id, "tobit means se")]] <- sqrt(diag(contrast %*% vb %*% t(contrast)))
  out[[paste(id, "tobit ci")]] <- confint(fit)[2:k, ]
  for (rule in c("half", "limit")) {
    d$ys <- ifelse(d$below, log10(d$limit / if (rule == "half") 2 else 1), log10(d$rna))
    lfit <- lm(ys ~ arm, data = d)
    st <- summary(lfit)$coefficients
    key <- paste(id, rule)
    out[[paste(key, "coef")]] <- coef(lfit)
    out[[paste(key, "se")]] <- st[, "Std. Error"]
    out[[paste(key, "p")]] <- st[2:k, "Pr(>|t|)"]
    out[[paste(key, "ci")]] <- confint(lfit)[2:k, ]
    out[[paste(key, "sigma")]] <- summary(lfit)$sigma
    out[[paste(key, "loglik")]] <- as.numeric(logLik(lfit))
    out[[paste(key, "means")]] <- contrast %*% coef(lfit)
    out[[paste(key, "means se")]] <- sqrt(diag(contrast %*% vcov(lfit) %*% t(contrast)))
  }
}
"""


@pytest.fixture(scope="module")
def r_results() -> dict[str, np.ndarray]:
    require_r_package("survival")
    frames = [
        frame.assign(id=name, reference=str(reference), rna=frame["rna"].fillna(-1.0))
        for name, (frame, reference) in CASES.items()
    ]
    return run_r(R_CODE, rna=pd.concat(frames, ignore_index=True))


def _columns(case: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, object]:
    frame, reference = CASES[case]
    return (
        frame["rna"].to_numpy(float),
        frame["below"].to_numpy(bool),
        frame["limit"].to_numpy(float),
        frame["arm"].to_numpy(),
        reference,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_tobit_matches_survreg(r_results: dict[str, np.ndarray], case: str) -> None:
    rna, below, limit, arm, reference = _columns(case)
    ours = tobit_by_arm(rna, below, limit, arm, reference=reference)
    r = {
        key.removeprefix(f"{case} tobit "): v
        for key, v in r_results.items()
        if key.startswith(f"{case} tobit ")
    }
    k = len(ours.arms)
    coef = r["coef"]
    np.testing.assert_allclose(ours.mean[0], coef[0], rtol=RTOL)
    np.testing.assert_allclose(ours.difference, coef[1:], rtol=RTOL)
    vcov = r["vcov"].reshape(k + 1, k + 1)
    np.testing.assert_allclose(ours.difference_se, np.sqrt(np.diag(vcov)[1:k]), rtol=RTOL)
    np.testing.assert_allclose(ours.log_sigma_se, np.sqrt(vcov[k, k]), rtol=RTOL)
    np.testing.assert_allclose(ours.sigma, r["scale"][0], rtol=RTOL)
    np.testing.assert_allclose(ours.loglik, r["loglik"][0], rtol=1e-10)
    np.testing.assert_allclose(ours.statistic, r["z"], rtol=RTOL)
    np.testing.assert_allclose(ours.p_value, r["p"], rtol=1e-6)
    np.testing.assert_allclose(ours.mean, r["means"], rtol=RTOL)
    np.testing.assert_allclose(ours.mean_se, r["means se"], rtol=RTOL)
    ci = r["ci"].reshape(2, k - 1)  # R fills the (k-1) x 2 matrix by column
    np.testing.assert_allclose(ours.ci_low, ci[0], rtol=RTOL)
    np.testing.assert_allclose(ours.ci_high, ci[1], rtol=RTOL)
    assert ours.n.sum() == rna.size and ours.n_below.sum() == below.sum()


@pytest.mark.parametrize("rule", ["half", "limit"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_substitution_matches_lm(r_results: dict[str, np.ndarray], case: str, rule: str) -> None:
    rna, below, limit, arm, reference = _columns(case)
    ours = substitution_by_arm(rna, below, limit, arm, rule=rule, reference=reference)  # type: ignore[arg-type]
    key = f"{case} {rule}"
    k = len(ours.arms)
    np.testing.assert_allclose(ours.difference, r_results[f"{key} coef"][1:], rtol=1e-9)
    np.testing.assert_allclose(ours.difference_se, r_results[f"{key} se"][1:], rtol=1e-9)
    np.testing.assert_allclose(ours.p_value, r_results[f"{key} p"], rtol=1e-8)
    ci = r_results[f"{key} ci"].reshape(2, k - 1)
    np.testing.assert_allclose(ours.ci_low, ci[0], rtol=1e-9)
    np.testing.assert_allclose(ours.ci_high, ci[1], rtol=1e-9)
    np.testing.assert_allclose(ours.sigma, r_results[f"{key} sigma"][0], rtol=1e-9)
    np.testing.assert_allclose(ours.loglik, r_results[f"{key} loglik"][0], rtol=1e-9)
    np.testing.assert_allclose(ours.mean, r_results[f"{key} means"], rtol=1e-9)
    np.testing.assert_allclose(ours.mean_se, r_results[f"{key} means se"], rtol=1e-9)
    assert ours.df == rna.size - k


def test_tobit_corrects_the_substitution_bias() -> None:
    # known truth: arm means 4.0 and 1.5, SD 0.8, limit 50 copies/mL (log10 1.70): the
    # ART-like arm is mostly below the limit; Tobit recovers its mean, substitution does not
    frame = _simulated(11, {"NOTHER": 4.0, "IL2ART": 1.5}, 4000, 0.8, (50.0,))
    cols = (frame["rna"], frame["below"], frame["limit"], frame["arm"].to_numpy())
    tobit = tobit_by_arm(*cols, reference="NOTHER")
    half = substitution_by_arm(*cols, reference="NOTHER", rule="half")
    assert abs(tobit.mean[1] - 1.5) < 4 * tobit.mean_se[1]
    assert abs(tobit.sigma - 0.8) < 0.05
    assert abs(half.mean[1] - 1.5) > 10 * half.mean_se[1]
