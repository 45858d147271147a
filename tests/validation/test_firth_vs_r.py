"""Firth-penalized Cox regression against an independent computation in R (one Rscript run).

R's coxphf is not in Debian, so the reference is built from R's own Cox likelihood: the
penalized log partial likelihood at ``b`` is ``fit$loglik[2] + 0.5 log det(solve(fit$var))``
of ``coxph(..., init = b, iter.max = 0)`` (the likelihood and information at ``b``, no
iterations; computed as ``-0.5 log det(fit$var)``, the same number, because ``solve`` fails on
the 1e24-conditioned variance of the x2 * 1e6 case; ``coxph.fit``, which coxph calls, is used
inside the loops for speed and checked against the ``coxph`` form at the estimate). In R it is
maximized with ``optimize`` (one coefficient) or ``optim`` + Newton polishing on central
differences (two); the penalized likelihood-ratio statistic of each coefficient is
``2 (max l* - max l* with b_j = 0)``; the profile limits are ``uniroot`` solutions of
``2 (max l* - profile l*(b_j)) = qchisq(0.95, 1)``, the other coefficient maximized by
``optimize``. Everything is compared to 1e-6 relative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.kernels.cox import cox_ph
from stalwart.analysis.kernels.firth import FirthCoxResult, firth_cox
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


def _frames() -> dict[str, pd.DataFrame]:
    two = simulate(8, 80, [0.8, -0.4], rounding=0.25)
    big, tiny = two.copy(), two.copy()
    big["x2"] *= 1e6
    tiny["x2"] *= 1e-6
    return {
        "small": simulate(7, 60, [0.7], rounding=0.5),
        "two": two,
        "stalwart": stalwart_sparse(5),
        "noevents": stalwart_sparse(6, control_events=0),
        "strata": simulate(9, 120, [0.5], rounding=0.5, n_strata=2),
        "single": single_event(4),
        "big": big,
        "tiny": tiny,
    }


FRAMES = _frames()
X1, X2 = ("x1",), ("x1", "x2")
CASES = {
    f"{name}_{ties}": Case(name, xs, ties, strata)
    for name, xs, strata, all_ties in [
        ("small", X1, False, True),
        ("two", X2, False, True),
        ("stalwart", X1, False, True),
        ("noevents", X1, False, True),
        ("strata", X1, True, False),
        ("single", X1, False, False),
        ("big", X2, False, False),
        ("tiny", X2, False, False),
    ]
    for ties in (("breslow", "efron") if all_ties else ("breslow",))
}

R_CODE = r"""
library(survival)
penalized <- function(x, y, st, b, ties) {
  fit <- coxph.fit(x, y, strata = st, offset = NULL, init = b, weights = NULL, method = ties,
                   control = coxph.control(iter.max = 0), rownames = NULL)
  fit$loglik[2] - 0.5 * determinant(fit$var)$modulus[[1]]  # = 0.5 log det(solve(var))
}
maximize <- function(f, start) {
  k <- length(start)
  if (k == 1) {
    o <- optimize(f, c(start - 15, start + 15), maximum = TRUE, tol = 1e-12)
    return(list(par = o$maximum, value = o$objective))
  }
  par <- optim(start, function(v) -f(v), method = "BFGS",
               control = list(reltol = 1e-15, maxit = 1000))$par
  h <- 1e-4
  for (it in 1:6) {  # Newton polish on central differences
    g <- numeric(k)
    H <- matrix(0, k, k)
    for (i in 1:k) {
      e <- replace(numeric(k), i, h)
      g[i] <- (f(par + e) - f(par - e)) / (2 * h)
      for (j in 1:k) {
        e2 <- replace(numeric(k), j, h)
        H[i, j] <- (f(par + e + e2) - f(par + e - e2) - f(par - e + e2) + f(par - e - e2)) /
          (4 * h * h)
      }
    }
    par <- par - solve(H, g)
  }
  list(par = par, value = f(par))
}
firth_case <- function(key, d, xs, ties, strat) {
  x <- as.matrix(d[, xs, drop = FALSE])
  storage.mode(x) <- "double"
  y <- Surv(d$time, d$event)
  st <- if (strat) as.integer(factor(d$s)) else NULL
  p <- length(xs)
  sdx <- apply(x, 2, sd)
  pl <- function(u) penalized(x, y, st, u / sdx, ties)  # u: coefficients times sd(x)
  top <- maximize(pl, rep(0, p))
  u_hat <- top$par
  b_hat <- u_hat / sdx
  fit <- coxph.fit(x, y, strata = st, offset = NULL, init = b_hat, weights = NULL,
                   method = ties, control = coxph.control(iter.max = 0), rownames = NULL)
  form <- as.formula(paste("Surv(time, event) ~", paste(c(xs, if (strat) "strata(s)"),
                                                        collapse = " + ")))
  full <- suppressWarnings(coxph(form, data = d, ties = ties, init = b_hat,
                                 control = coxph.control(iter.max = 0)))
  profile <- function(j, v) {
    if (p == 1) return(pl(v))
    maximize(function(w) { u <- numeric(p); u[j] <- v; u[-j] <- w; pl(u) }, u_hat[-j])$value
  }
  chi2 <- sapply(seq_len(p), function(j) 2 * (top$value - profile(j, 0)))
  q <- qchisq(0.95, 1)
  lo <- hi <- numeric(p)
  for (j in seq_len(p)) {
    g <- function(v) 2 * (top$value - profile(j, v)) - q
    w <- 2 * sqrt(fit$var[j, j]) * sdx[j]
    lo[j] <- uniroot(g, c(u_hat[j] - w, u_hat[j]), extendInt = "downX", tol = 1e-11)$root
    hi[j] <- uniroot(g, c(u_hat[j], u_hat[j] + w), extendInt = "upX", tol = 1e-11)$root
  }
  pl0 <- pl(rep(0, p))
  res <- list(coef = b_hat, se = sqrt(diag(fit$var)), log_ci_low = lo / sdx,
              log_ci_high = hi / sdx, chi2 = chi2, p = pchisq(chi2, 1, lower.tail = FALSE),
              loglik = top$value, loglik_null = pl0,
              loglik_coxph = full$loglik[2] - 0.5 * determinant(full$var)$modulus[[1]],
              lr = 2 * (top$value - pl0), lr_p = pchisq(2 * (top$value - pl0), p,
                                                        lower.tail = FALSE))
  names(res) <- paste0(key, "__", names(res))
  res
}
out <- list()
"""


def _r_call(key: str, case: Case) -> str:
    xs = ", ".join(f'"{x}"' for x in case.xs)
    strat = str(case.strata).upper()
    return f'out <- c(out, firth_case("{key}", d_{case.frame}, c({xs}), "{case.ties}", {strat}))'


@pytest.fixture(scope="module")
def r_results() -> dict[str, np.ndarray]:
    require_r_package("survival")
    code = R_CODE + "\n".join(_r_call(key, case) for key, case in CASES.items())
    return run_r(code, **{f"d_{name}": frame for name, frame in FRAMES.items()})


def _fit(case: Case) -> FirthCoxResult:
    frame = FRAMES[case.frame]
    return firth_cox(
        frame["time"],
        frame["event"],
        frame[list(case.xs)].to_numpy(),
        ties=case.ties,  # type: ignore[arg-type]
        strata=frame["s"] if case.strata else None,
        names=case.xs,
    )


def _close(ours: object, ref: np.ndarray, rtol: float = RTOL, atol: float = 0.0) -> None:
    actual = np.atleast_1d(np.asarray(ours, dtype=float))
    np.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol)


@pytest.mark.parametrize("key", list(CASES))
def test_firth_matches_r(r_results: dict[str, np.ndarray], key: str) -> None:
    r = {k.split("__")[1]: v for k, v in r_results.items() if k.startswith(f"{key}__")}
    ours = _fit(CASES[key])
    assert ours.converged
    # R's formulation through coxph() agrees with the coxph.fit loop at the estimate
    _close(r["loglik_coxph"], r["loglik"], rtol=1e-12)
    _close(ours.coef, r["coef"])
    _close(ours.se, r["se"])
    _close([ours.loglik_null, ours.loglik], np.concatenate([r["loglik_null"], r["loglik"]]), 1e-10)
    _close(ours.lr_statistic, r["lr"])
    _close(ours.lr_p_value, r["lr_p"])
    # chi2 and p: 1e-6 relative, or 1e-9 absolute where the statistic itself is ~0
    _close(ours.chi2, r["chi2"], atol=1e-9)
    _close(ours.p_value, r["p"], atol=1e-9)
    for limit, ref in [(ours.ci_low, r["log_ci_low"]), (ours.ci_high, r["log_ci_high"])]:
        # a ratio per unit of x2 * 1e-6 is exp(-7e5): 0 in double precision; compare the rest
        shown = limit > 0.0
        _close(np.log(limit[shown]), ref[shown])
        assert np.all(np.exp(ref[~shown]) == 0.0)


def test_stalwart_sparse_case_is_finite_where_cox_diverges(
    r_results: dict[str, np.ndarray],
) -> None:
    # no events on no therapy: ordinary Cox flags a monotone likelihood (no upper limit),
    # Firth gives a finite estimate and finite penalized profile limits
    frame = FRAMES["noevents"]
    ordinary = cox_ph(frame["time"], frame["event"], frame["x1"], profile_ci=True)
    assert ordinary.monotone_likelihood and ordinary.profile_ci_high is not None
    assert np.isinf(ordinary.profile_ci_high[0])
    firth = _fit(CASES["noevents_breslow"])
    assert np.all(np.isfinite([firth.coef[0], firth.se[0], firth.ci_low[0], firth.ci_high[0]]))
    assert 1.0 < firth.ci_low[0] < firth.hazard_ratio[0] < firth.ci_high[0]
    _close(firth.coef, r_results["noevents_breslow__coef"])
    # the published sparse comparison: 12/176 vs 1/91 events; the estimate shrinks towards 1
    sparse = _fit(CASES["stalwart_breslow"])
    plain = cox_ph(
        FRAMES["stalwart"]["time"], FRAMES["stalwart"]["event"], FRAMES["stalwart"]["x1"]
    )
    assert 0.0 < sparse.coef[0] < plain.coef[0]


def test_unestimable_cases_raise() -> None:
    frame = FRAMES["small"]
    with pytest.raises(AnalysisError, match="no events"):
        firth_cox(frame["time"], np.zeros(len(frame)), frame["x1"])
    with pytest.raises(AnalysisError, match="no variation"):
        firth_cox(frame["time"], frame["event"], np.ones(len(frame)))
