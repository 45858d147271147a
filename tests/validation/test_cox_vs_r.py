"""Cox regression against R ``survival::coxph`` on the same data (one Rscript run for all cases).

Each case is fitted in R with ``coxph(Surv(time, event) ~ x1 + ... [+ strata(s)], ties = ...)``
(Wald, likelihood-ratio and score tests from ``summary(fit)``), again with ``robust = TRUE``
(``+ cluster(cl)`` where the case has clusters) for the sandwich variance and ``fit$rscore``,
and the profile-likelihood limits are found in R by ``uniroot`` on the profile log partial
likelihood: ``coxph.fit`` with the profiled covariate as an offset (R's own likelihood; the
survival package has no profile confidence interval). Everything is compared to 1e-6 relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.cox import CoxResult, cox_ph
from stalwart.errors import AnalysisError
from validation.cox_cases import simulate, single_event, stalwart_sparse
from validation.rscript import require_r_package, run_r

RTOL = 1e-6


@dataclass(frozen=True)
class Case:
    frame: str
    xs: tuple[str, ...]
    ties: str
    strata: bool = False
    cluster: bool = False


def _frames() -> dict[str, pd.DataFrame]:
    ties2 = simulate(2, 300, [0.7, -0.3], rounding=0.1)
    big, tiny = ties2.copy(), ties2.copy()
    big["x2"] *= 1e6
    tiny["x2"] *= 1e-6
    return {
        "sim1": simulate(1, 200, [0.5]),
        "ties2": ties2,
        "strata5": simulate(
            3, 400, [0.4, -0.2, 0.3, 0.0, 0.6], rounding=0.25, n_strata=3, n_clusters=100
        ),
        "single": single_event(4),
        "stalwart": stalwart_sparse(5),
        "big": big,
        "tiny": tiny,
        "noevents": stalwart_sparse(6, control_events=0),
    }


FRAMES = _frames()
X5 = ("x1", "x2", "x3", "x4", "x5")
CASES = {
    f"{name}_{ties}": Case(name, xs, ties, strata, cluster)
    for name, xs, strata, cluster in [
        ("sim1", ("x1",), False, False),
        ("ties2", ("x1", "x2"), False, False),
        ("strata5", X5, True, True),
        ("single", ("x1",), False, False),
        ("stalwart", ("x1",), False, False),
        ("big", ("x1", "x2"), False, False),
        ("tiny", ("x1", "x2"), False, False),
    ]
    for ties in ("efron", "breslow")
}
MONOTONE = {f"noevents_{ties}": Case("noevents", ("x1",), ties) for ties in ("efron", "breslow")}

R_HELPERS = r"""
library(survival)
tight <- coxph.control(eps = 1e-11, iter.max = 100)
formula_of <- function(xs, strat, cl) {
  terms <- c(xs, if (strat) "strata(s)", if (cl) "cluster(cl)")
  as.formula(paste("Surv(time, event) ~", paste(terms, collapse = " + ")))
}
# profile log partial likelihood of coefficient j at b: the others maximized by coxph.fit
# with x_j * b as an offset (with one covariate: the likelihood at b, iter.max = 0)
profile_loglik <- function(d, xs, j, b, ties, strat) {
  y <- Surv(d$time, d$event)
  st <- if (strat) as.integer(factor(d$s)) else NULL
  x <- as.matrix(d[, xs, drop = FALSE])
  storage.mode(x) <- "double"
  fit <- if (length(xs) == 1) {
    coxph.fit(x, y, strata = st, offset = NULL, init = b, weights = NULL, method = ties,
              control = coxph.control(iter.max = 0), rownames = NULL)
  } else {
    suppressWarnings(coxph.fit(x[, -j, drop = FALSE], y, strata = st, offset = b * x[, j],
                               init = NULL, weights = NULL, method = ties, control = tight,
                               rownames = NULL))
  }
  fit$loglik[2]
}
cox_case <- function(key, d, xs, ties, strat, cl) {
  warned <- FALSE
  fit <- withCallingHandlers(
    coxph(formula_of(xs, strat, FALSE), data = d, ties = ties),
    warning = function(w) {
      if (grepl("infinite", conditionMessage(w))) warned <<- TRUE
      invokeRestart("muffleWarning")
    })
  s <- summary(fit)
  res <- list(coef = coef(fit), se = sqrt(diag(vcov(fit))), p = s$coefficients[, "Pr(>|z|)"],
              ci_low = s$conf.int[, 3], ci_high = s$conf.int[, 4], loglik = fit$loglik,
              lr = 2 * diff(fit$loglik), score = fit$score, wald = fit$wald.test,
              monotone = as.numeric(warned))
  res$wald_solve <- drop(coef(fit) %*% solve(vcov(fit), coef(fit)))
  for (test in c("lr", "score", "wald"))
    res[[paste0(test, "_p")]] <- pchisq(res[[test]], length(xs), lower.tail = FALSE)
  rfit <- suppressWarnings(coxph(formula_of(xs, strat, cl), data = d, ties = ties, robust = TRUE))
  rs <- summary(rfit)
  res <- c(res, list(robust_se = sqrt(diag(vcov(rfit))), naive_se = sqrt(diag(rfit$naive.var)),
                     robust_p = rs$coefficients[, "Pr(>|z|)"], robust_ci_low = rs$conf.int[, 3],
                     robust_ci_high = rs$conf.int[, 4], robust_wald = rfit$wald.test,
                     robust_wald_solve = drop(coef(rfit) %*% solve(rfit$var, coef(rfit))),
                     rscore = rfit$rscore,
                     n_clusters = length(unique(if (cl) d$cl else seq_len(nrow(d))))))
  # the robust score test in exact arithmetic: score residuals at beta = 0, collapsed
  fit0 <- coxph(formula_of(xs, strat, FALSE), data = d, ties = ties, init = rep(0, length(xs)),
                control = coxph.control(iter.max = 0), model = TRUE)
  r0 <- rowsum(as.matrix(residuals(fit0, type = "score")), if (cl) d$cl else seq_len(nrow(d)))
  u0 <- colSums(r0)
  res$rscore_solve <- drop(u0 %*% solve(crossprod(r0), u0))
  q <- qchisq(0.95, 1)
  b <- coef(fit)
  se <- sqrt(diag(fit$var))
  lmax <- fit$loglik[2]
  lo <- hi <- numeric(length(xs))
  for (j in seq_along(xs)) {
    g <- function(v) 2 * (lmax - profile_loglik(d, xs, j, v, ties, strat)) - q
    w <- min(2 * se[j], 3 / sd(d[[xs[j]]]))
    lo[j] <- uniroot(g, c(b[j] - w, b[j]), extendInt = "downX", tol = 1e-13, maxiter = 500)$root
    far <- b[j] + 40 / sd(d[[xs[j]]])
    hi[j] <- if (warned && g(far) < 0) Inf else
      uniroot(g, c(b[j], b[j] + w), extendInt = "upX", tol = 1e-13, maxiter = 500)$root
  }
  res$profile_low <- exp(lo)
  res$profile_high <- exp(hi)
  names(res) <- paste0(key, "__", names(res))
  res
}
out <- list()
"""


def _r_call(key: str, case: Case) -> str:
    xs = ", ".join(f'"{x}"' for x in case.xs)
    strat, cl = str(case.strata).upper(), str(case.cluster).upper()
    return (
        f'out <- c(out, cox_case("{key}", d_{case.frame}, c({xs}), "{case.ties}", {strat}, {cl}))'
    )


R_EDGES = r"""
# all censored and one arm only: R leaves the coefficient NA (not estimable)
censored <- transform(d_sim1, event = 0)
out$censored_coef <- coef(coxph(Surv(time, event) ~ x1, data = censored))
onearm <- transform(d_sim1, x1 = 1)
out$onearm_coef <- coef(coxph(Surv(time, event) ~ x1, data = onearm))
"""


@pytest.fixture(scope="module")
def r_results() -> dict[str, np.ndarray]:
    require_r_package("survival")
    lines = [_r_call(key, case) for key, case in {**CASES, **MONOTONE}.items()]
    code = R_HELPERS + "\n".join(lines) + R_EDGES
    return run_r(code, **{f"d_{name}": frame for name, frame in FRAMES.items()})


def _fit(case: Case, **options: object) -> CoxResult:
    frame = FRAMES[case.frame]
    return cox_ph(
        frame["time"],
        frame["event"],
        frame[list(case.xs)].to_numpy(),
        ties=case.ties,  # type: ignore[arg-type]
        strata=frame["s"] if case.strata else None,
        names=case.xs,
        **options,  # type: ignore[arg-type]
    )


def _close(ours: object, ref: np.ndarray, rtol: float = RTOL) -> None:
    np.testing.assert_allclose(np.atleast_1d(np.asarray(ours, dtype=float)), ref, rtol=rtol)


def _close_ratio(ours: np.ndarray, ref: np.ndarray) -> None:
    """Hazard-ratio limits compared on the log scale (relative on the coefficient scale).

    A ratio per unit of x2 * 1e-6 is exp(-3e5): 0 in double precision, here and in R.
    """
    with np.errstate(divide="ignore"):
        _close(np.log(ours), np.log(ref))


@pytest.mark.parametrize("key", list(CASES))
def test_estimates_and_tests_match_r(r_results: dict[str, np.ndarray], key: str) -> None:
    r = {name: r_results[f"{key}__{name}"] for name in ("coef", "se", "p", "ci_low", "ci_high")}
    ours = _fit(CASES[key])
    _close(ours.coef, r["coef"])
    _close(ours.se, r["se"])
    _close(ours.p_value, r["p"])
    _close_ratio(ours.ci_low, r["ci_low"])
    _close_ratio(ours.ci_high, r["ci_high"])
    _close([ours.loglik_null, ours.loglik], r_results[f"{key}__loglik"], rtol=1e-10)
    _close(ours.wald_statistic, r_results[f"{key}__wald_solve"])
    # R's fit$wald.test and fit$rscore (coxph.wtest) factor unscaled matrices with
    # toler.chol = 1.8e-12: with x2 in units of 1e-6 ("big": variance ~1e-13) R drops a
    # coefficient from them; the *_solve statistics are R's exact forms of the same tests
    tests = ("lr", "score") if CASES[key].frame == "big" else ("lr", "score", "wald")
    for stat in tests:
        _close(getattr(ours, f"{stat}_statistic"), r_results[f"{key}__{stat}"])
        _close(getattr(ours, f"{stat}_p_value"), r_results[f"{key}__{stat}_p"])
    assert not ours.monotone_likelihood and r_results[f"{key}__monotone"][0] == 0.0


@pytest.mark.parametrize("key", list(CASES))
def test_robust_variance_matches_r(r_results: dict[str, np.ndarray], key: str) -> None:
    case = CASES[key]
    frame = FRAMES[case.frame]
    ours = _fit(case, robust=True, cluster=frame["cl"] if case.cluster else None)
    assert ours.robust
    _close(ours.se, r_results[f"{key}__robust_se"])
    _close(ours.naive_se, r_results[f"{key}__naive_se"])
    _close(ours.p_value, r_results[f"{key}__robust_p"])
    _close_ratio(ours.ci_low, r_results[f"{key}__robust_ci_low"])
    _close_ratio(ours.ci_high, r_results[f"{key}__robust_ci_high"])
    _close(ours.wald_statistic, r_results[f"{key}__robust_wald_solve"])
    _close(ours.robust_score_statistic, r_results[f"{key}__rscore_solve"])
    if case.frame != "big":  # see test_estimates_and_tests_match_r
        _close(ours.wald_statistic, r_results[f"{key}__robust_wald"])
        _close(ours.robust_score_statistic, r_results[f"{key}__rscore"])
    assert ours.n_clusters == int(r_results[f"{key}__n_clusters"][0])


@pytest.mark.parametrize("key", list(CASES))
def test_profile_likelihood_limits_match_r(r_results: dict[str, np.ndarray], key: str) -> None:
    ours = _fit(CASES[key], profile_ci=True)
    assert ours.profile_ci_low is not None and ours.profile_ci_high is not None
    _close_ratio(ours.profile_ci_low, r_results[f"{key}__profile_low"])
    _close_ratio(ours.profile_ci_high, r_results[f"{key}__profile_high"])
    ok = ours.profile_ci_high > 0.0  # not underflowed
    assert np.all(np.log(ours.profile_ci_low[ok]) < ours.coef[ok])
    assert np.all(ours.coef[ok] < np.log(ours.profile_ci_high[ok]))


@pytest.mark.parametrize("key", list(MONOTONE))
def test_monotone_likelihood_flagged_like_r(r_results: dict[str, np.ndarray], key: str) -> None:
    # 12 events on IL-2, none on no therapy: R warns "coefficient may be infinite" and stops at
    # a large coefficient; the likelihood (at its supremum), the LR and score tests and the
    # finite (lower) profile limit agree, the upper profile limit does not exist in either.
    ours = _fit(MONOTONE[key], profile_ci=True, robust=True)
    assert ours.monotone_likelihood and r_results[f"{key}__monotone"][0] == 1.0
    assert ours.coef[0] > 5.0 and r_results[f"{key}__coef"][0] > 5.0
    _close([ours.loglik_null, ours.loglik], r_results[f"{key}__loglik"], rtol=1e-8)
    _close(ours.lr_statistic, r_results[f"{key}__lr"], rtol=1e-6)
    _close(ours.lr_p_value, r_results[f"{key}__lr_p"], rtol=1e-5)
    _close(ours.score_statistic, r_results[f"{key}__score"])
    _close(ours.score_p_value, r_results[f"{key}__score_p"])
    _close(ours.robust_score_statistic, r_results[f"{key}__rscore"])
    assert ours.profile_ci_low is not None and ours.profile_ci_high is not None
    _close(ours.profile_ci_low, r_results[f"{key}__profile_low"])
    assert np.isinf(ours.profile_ci_high[0]) and np.isinf(r_results[f"{key}__profile_high"][0])


def test_unestimable_cases_raise_where_r_gives_na(r_results: dict[str, np.ndarray]) -> None:
    frame = FRAMES["sim1"]
    assert np.isnan(r_results["censored_coef"][0]) and np.isnan(r_results["onearm_coef"][0])
    with pytest.raises(AnalysisError, match="no events"):
        cox_ph(frame["time"], np.zeros(len(frame)), frame["x1"])
    with pytest.raises(AnalysisError, match="no variation"):
        cox_ph(frame["time"], frame["event"], np.ones(len(frame)))


def test_cases_cover_what_they_claim() -> None:
    # guard the data: ties present where claimed, the sparse counts of STALWART, one event
    ties2, stalwart, single = FRAMES["ties2"], FRAMES["stalwart"], FRAMES["single"]
    assert ties2.loc[ties2.event == 1, "time"].duplicated().sum() > 50
    assert stalwart.groupby("x1").event.sum().to_dict() == {0.0: 1, 1.0: 12}
    assert (stalwart.x1 == 1).sum() == 176 and (stalwart.x1 == 0).sum() == 91
    assert FRAMES["noevents"].groupby("x1").event.sum().to_dict() == {0.0: 0, 1.0: 12}
    assert single.event.sum() == 1
    assert FRAMES["strata5"].s.nunique() == 3 and FRAMES["strata5"].cl.nunique() > 90
