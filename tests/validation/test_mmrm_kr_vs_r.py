"""Kenward-Roger inference of the MMRM against R.

R's ``mmrm`` package is not in Debian, so the references are:

* compound symmetry: ``pbkrtest`` (``vcovAdj``, ``get_Lb_ddf``) on ``lme4::lmer(y ~ 0 + arm:visitf
  + cb:visitf + (1 | id), REML = TRUE)`` fitted to convergence (bobyqa, ``rhoend = 1e-12``);
* unstructured: a by-hand R computation of Kenward & Roger's formulas, written afresh in R below
  (``kr_by_hand``: ``P``, ``Q``, the expected REML information, ``W``, ``Phi_A`` and the df of
  each contrast, as ``pbkrtest`` writes them), on the estimates of ``nlme::gls`` (``corSymm`` +
  ``varIdent``, nlminb tightened to ``rel.tol = 1e-14``); the same by-hand code also runs on the
  compound-symmetry ``gls`` fit, as a check of the code itself against ``pbkrtest``.

Data: simulated cases of :mod:`validation.mmrm_cases`, the public ``nlme::BodyWeight`` data (rat
body weight by diet over nine weeks; compound symmetry), and the demo trial's own week-4 to
week-32 CD4 MMRM (unstructured, as the analysis plan fits it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.datasets.bundle import derive_datasets
from stalwart.analysis.kernels.mmrm import MmrmResult, mmrm
from stalwart.capture.db import open_engine
from stalwart.play.demo import run_demo
from stalwart.reports.snapshot import take_snapshot
from validation.mmrm_cases import simulate
from validation.rscript import require_r_package, run_r

RTOL = 1e-6

R_KR = r"""
kr_by_hand <- function(X, id, vi, Sigma, Phi, basis) {
  # Kenward-Roger (1997) with linear covariance parameters: P, Q, expected information, W,
  # Phi_A; returns Phi_A, and P and W for the df of a contrast
  k <- length(basis); p <- ncol(X)
  P <- lapply(1:k, function(i) matrix(0, p, p))
  Q <- lapply(1:(k * k), function(i) matrix(0, p, p))
  K <- matrix(0, k, k)
  for (s in unique(id)) {
    r <- which(id == s); v <- vi[r]
    Si <- solve(Sigma[v, v, drop = FALSE])
    Ti <- Si %*% X[r, , drop = FALSE]
    GT <- lapply(basis, function(g) g[v, v, drop = FALSE] %*% Ti)  # G_a T_i
    GS <- lapply(basis, function(g) g[v, v, drop = FALSE] %*% Si)  # G_a Sigma_i^-1
    for (a in 1:k) {
      P[[a]] <- P[[a]] - crossprod(Ti, GT[[a]])
      left <- crossprod(GT[[a]], Si)  # T_i' G_a Sigma_i^-1
      for (b in 1:k) {
        Q[[(a - 1) * k + b]] <- Q[[(a - 1) * k + b]] + left %*% GT[[b]]
        K[a, b] <- K[a, b] + sum(GS[[a]] * t(GS[[b]]))
      }
    }
  }
  IE <- matrix(0, k, k)
  for (a in 1:k) for (b in 1:k)
    IE[a, b] <- K[a, b] - 2 * sum(diag(Phi %*% Q[[(a - 1) * k + b]])) +
      sum(diag(Phi %*% P[[a]] %*% Phi %*% P[[b]]))
  W <- 2 * solve(IE)
  U <- matrix(0, p, p)
  for (a in 1:k) for (b in 1:k)
    U <- U + W[a, b] * (Q[[(a - 1) * k + b]] - P[[a]] %*% Phi %*% P[[b]])
  list(PhiA = Phi + 2 * Phi %*% U %*% Phi, P = P, W = W)
}
kr_df <- function(L, Phi, kr) {
  # df of a one-row contrast, Kenward & Roger's formulas with q = 1
  Theta <- t(L) %*% solve(L %*% Phi %*% t(L)) %*% L
  k <- length(kr$P); A1 <- 0; A2 <- 0
  for (a in 1:k) for (b in 1:k) {
    ua <- Theta %*% Phi %*% kr$P[[a]] %*% Phi; ub <- Theta %*% Phi %*% kr$P[[b]] %*% Phi
    A1 <- A1 + kr$W[a, b] * sum(diag(ua)) * sum(diag(ub))
    A2 <- A2 + kr$W[a, b] * sum(diag(ua %*% ub))
  }
  B <- (A1 + 6 * A2) / 2; g <- (2 * A1 - 5 * A2) / (3 * A2)
  c1 <- g / (3 + 2 * (1 - g)); c2 <- (1 - g) / (3 + 2 * (1 - g)); c3 <- (3 - g) / (3 + 2 * (1 - g))
  rho <- (1 - A2)^2 * (1 + c1 * B) / ((1 - c2 * B)^2 * (1 - c3 * B))
  4 + 3 / (rho - 1)
}
tight_gls <- function(...) {
  for (tol in c(1e-14, 1e-13, 1e-12, 1e-11)) {
    g <- nlme::gls
    environment(g) <- list2env(list(nlminb = function(start, objective, ..., control)
      stats::nlminb(start, objective, ..., control = modifyList(control, list(rel.tol = tol,
        eval.max = 10000)))), parent = asNamespace("nlme"))
    fit <- tryCatch(g(...), error = function(e) NULL)
    if (!is.null(fit)) return(fit)
  }
  nlme::gls(...)
}
suppressPackageStartupMessages({library(nlme); library(pbkrtest)})
out <- list()
for (name in strsplit(names_csv, ",")[[1]]) {
  d <- get(name)
  un <- structures[[name]] == "unstructured"
  arms <- sort(unique(as.character(d$arm)))
  d$arm <- factor(d$arm, levels = arms)
  vl <- sort(unique(d$visit)); nv <- length(vl)
  d$visitf <- factor(d$visit, levels = vl)
  d$cb <- d$base - mean(d$base)
  d <- d[order(d$id, d$visit), ]
  f <- y ~ 0 + arm:visitf + cb:visitf
  cells <- as.vector(t(outer(arms, vl, function(a, v) paste0("arm", a, ":visitf", v))))
  ord <- c(cells, paste0("visitf", vl, ":cb"))
  contrasts <- function(names) {
    L <- matrix(0, nv * (length(arms) - 1), length(names))
    for (a in 2:length(arms)) for (j in 1:nv) {
      L[(a - 2) * nv + j, match(paste0("arm", arms[a], ":visitf", vl[j]), names)] <- 1
      L[(a - 2) * nv + j, match(paste0("arm", arms[1], ":visitf", vl[j]), names)] <- -1
    }
    L
  }
  d$vn <- as.integer(d$visitf)
  fit <- if (un) tight_gls(f, data = d, method = "REML",
                          correlation = corSymm(form = ~ vn | id),
                          weights = varIdent(form = ~ 1 | visitf))
         else tight_gls(f, data = d, method = "REML",
                        correlation = corCompSymm(form = ~ 1 | id))
  X <- model.matrix(f, d)[, ord]
  Phi <- vcov(fit)[ord, ord]
  complete <- names(which(table(d$id) == nv))[1]
  Sigma <- as.matrix(getVarCov(fit, individual = complete))
  basis <- if (un) {
    b <- list()
    for (i in 1:nv) for (j in i:nv) {
      m <- matrix(0, nv, nv); m[i, j] <- 1; m[j, i] <- 1; b[[length(b) + 1]] <- m
    }
    b
  } else list(matrix(1, nv, nv), diag(nv))
  kr <- kr_by_hand(X, d$id, as.integer(d$visitf), Sigma, Phi, basis)
  L <- contrasts(ord)
  out[[paste(name, "hand_df")]] <- sapply(1:nrow(L),
                                          function(r) kr_df(L[r, , drop = FALSE], Phi, kr))
  out[[paste(name, "hand_se")]] <- sqrt(diag(L %*% kr$PhiA %*% t(L)))
  if (!un) {
    m <- lme4::lmer(update(f, . ~ . + (1 | id)), data = d, REML = TRUE,
                    control = lme4::lmerControl(optimizer = "bobyqa",
                                                optCtrl = list(rhoend = 1e-12)))
    Lm <- contrasts(names(lme4::fixef(m)))
    PhiA <- as.matrix(vcovAdj(m))
    out[[paste(name, "pbkrtest_df")]] <- sapply(1:nrow(Lm),
                                              function(r) get_Lb_ddf(m, Lm[r, , drop = FALSE]))
    out[[paste(name, "pbkrtest_se")]] <- sqrt(diag(Lm %*% PhiA %*% t(Lm)))
  }
}
"""


def _body_weight() -> pd.DataFrame:
    """``nlme::BodyWeight`` as the MMRM's long format: day 1 the baseline, then weekly visits."""
    data = run_r(
        "d <- nlme::BodyWeight; out <- list(rat = as.integer(as.character(d$Rat)), "
        "time = d$Time, weight = d$weight, diet = as.integer(as.character(d$Diet)))"
    )
    frame = pd.DataFrame({k: data[k] for k in ("rat", "time", "weight", "diet")})
    base = frame[frame["time"] == 1].set_index("rat")["weight"]
    visits = frame[frame["time"].isin([8, 15, 22, 29, 36, 43, 50, 57, 64])]
    return pd.DataFrame(
        {
            "id": visits["rat"].astype(int),
            "visit": visits["time"].astype(int),
            "arm": "D" + visits["diet"].astype(int).astype(str),
            "base": visits["rat"].map(base).astype(float),
            "y": visits["weight"].astype(float),
        }
    ).reset_index(drop=True)


def _demo_cd4(folder: Path) -> pd.DataFrame:
    """The demo trial's CD4 by week (4 to 32) with its baseline: what its longitudinal MMRM fits."""
    run_demo(folder, seed=1)
    engine = open_engine(f"sqlite:///{folder / 'stalwart.db'}")
    try:
        snapshot = take_snapshot(engine)
    finally:
        engine.dispose()
    protocol = snapshot.loaded.protocol
    adlb = derive_datasets(protocol, snapshot.extract).adlb
    # the control arm first ("A", the reference of the contrasts), the others in protocol order
    others = [code for code in protocol.arm_codes if code != protocol.control_arm]
    letters = dict(zip([protocol.control_arm, *others], "ABCDEFG", strict=False))
    rows = adlb[
        (adlb["PARAMCD"] == "CD4")
        & adlb["AVAL"].notna()
        & adlb["BASE"].notna()
        & adlb["AVISITN"].astype(float).between(4, 32)
    ]
    codes = {code: i for i, code in enumerate(sorted(rows["USUBJID"].unique()))}
    return pd.DataFrame(
        {
            "id": rows["USUBJID"].map(codes).astype(int),
            "visit": rows["AVISITN"].astype(int),
            "arm": rows["ARMCD"].map(letters),
            "base": rows["BASE"].astype(float),
            "y": rows["AVAL"].astype(float),
        }
    ).reset_index(drop=True)


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[pd.DataFrame, str]]:
    return {
        "simcs": (simulate(3, 150, visits=4, structure="cs"), "compound_symmetry"),
        "simun": (simulate(1, 200, visits=5), "unstructured"),
        "bodyweight": (_body_weight(), "compound_symmetry"),
        "demo": (_demo_cd4(tmp_path_factory.mktemp("demo")), "unstructured"),
    }


@pytest.fixture(scope="module")
def r_results(cases: dict[str, tuple[pd.DataFrame, str]]) -> dict[str, np.ndarray]:
    require_r_package("pbkrtest")
    names = ",".join(cases)
    structures = ", ".join(f'{k} = "{v[1]}"' for k, v in cases.items())
    code = f'names_csv <- "{names}"\nstructures <- list({structures})\n' + R_KR
    return run_r(code, timeout=900, **{k: v[0] for k, v in cases.items()})


def _fit(data: pd.DataFrame, covariance: str) -> MmrmResult:
    control = sorted(data["arm"].unique())[0]
    return mmrm(
        data["y"],
        data["id"],
        data["visit"],
        data["arm"],
        data["base"],
        control_level=control,
        covariance=covariance,  # type: ignore[arg-type]
        df_method="kenward-roger",
    )


def _ours(result: MmrmResult) -> tuple[np.ndarray, np.ndarray]:
    df = np.concatenate([c.df for c in result.contrasts])
    se = np.concatenate([c.se for c in result.contrasts])
    return df, se


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simcs", "bodyweight"])
def test_compound_symmetry_matches_pbkrtest(name, cases, r_results) -> None:
    df, se = _ours(_fit(*cases[name]))
    np.testing.assert_allclose(df, r_results[f"{name} pbkrtest_df"], rtol=RTOL)
    np.testing.assert_allclose(se, r_results[f"{name} pbkrtest_se"], rtol=RTOL)
    # the by-hand R code agrees with pbkrtest: it is a fair reference where pbkrtest cannot go
    np.testing.assert_allclose(
        r_results[f"{name} hand_df"], r_results[f"{name} pbkrtest_df"], rtol=RTOL
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simun", "demo", "simcs", "bodyweight"])
def test_kenward_roger_matches_the_by_hand_r_computation(name, cases, r_results) -> None:
    df, se = _ours(_fit(*cases[name]))
    np.testing.assert_allclose(df, r_results[f"{name} hand_df"], rtol=RTOL)
    np.testing.assert_allclose(se, r_results[f"{name} hand_se"], rtol=RTOL)
