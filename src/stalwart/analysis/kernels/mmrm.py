"""Mixed model for repeated measures (MMRM): arm x visit means under a covariance across visits.

The model, fitted by REML, is R's::

    nlme::gls(y ~ 0 + arm:visit + base:visit, method = "REML",
              correlation = corSymm(form = ~ visit_index | subject),    # "unstructured"
              weights = varIdent(form = ~ 1 | visit))
    nlme::gls(..., correlation = corCompSymm(form = ~ 1 | subject))     # "compound_symmetry"

``base:visit`` (a baseline slope per visit, ``baseline_term="by_visit"``, the default as in most
MMRM analysis plans) or ``base`` (one slope, ``baseline_term="common"``). Each subject contributes
the visits it has (missing at random); no imputation. Compound symmetry with a positive
correlation is also ``lme4::lmer(y ~ ... + (1 | subject), REML = TRUE)``.

LS means are taken, as ``emmeans`` does, with the baseline at its mean over the rows of the fit
(so a subject counts once per visit it has); they are the arm x visit coefficients because the
baseline enters centred at that mean. Contrasts are treated minus control at each visit.

Degrees of freedom (``df_method``):

* ``"residual"``: ``N - p`` (observations minus fixed effects) for every test, as
  ``summary.gls`` and ``emmeans(mode = "df.error")``: the numbers match nlme.
* ``"satterthwaite"``: per contrast ``2 v^2 / (g' H^-1 g)`` with ``v`` the contrast's variance,
  ``g`` its gradient in the covariance parameters and ``H`` the Hessian of ``-l``, as
  ``lmerTest`` (and the ``mmrm`` package, SAS ``DDFM=SATTERTHWAITE``) do. Kenward-Roger (SAS
  ``DDFM=KR``, ``pbkrtest``) also inflates the covariance of the fixed effects for the
  uncertainty in the covariance parameters:
* ``"kenward-roger"``: standard errors from the adjusted covariance ``Phi_A`` and Kenward-Roger
  degrees of freedom, as ``pbkrtest`` (:mod:`stalwart.analysis.kernels.mmrm_kr`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import linalg

from stalwart.analysis.kernels._distributions import t_ppf, t_sf
from stalwart.analysis.kernels.mmrm_kr import KenwardRoger
from stalwart.analysis.kernels.mmrm_kr import kenward_roger as kenward_roger_parts
from stalwart.analysis.kernels.mmrm_reml import (
    CovarianceMap,
    Reml,
    compound_symmetry_map,
    make_grid,
    maximize,
    unstructured_map,
)
from stalwart.errors import AnalysisError
from stalwart.jsonable import jsonable

__all__ = ["DF_METHODS", "MmrmContrast", "MmrmResult", "mmrm"]

Covariance = Literal["unstructured", "compound_symmetry"]
BaselineTerm = Literal["by_visit", "common", "none"]
DfMethod = Literal["residual", "satterthwaite", "kenward-roger"]
DF_METHODS: tuple[str, ...] = ("residual", "satterthwaite", "kenward-roger")
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MmrmContrast:
    """Treated minus control LS mean at each visit.

    Attributes
    ----------
    treatment_level, control_level : object
        The arms compared.
    visits : tuple
        Visit labels, in order.
    difference, se, df, statistic, ci_low, ci_high, p_value : numpy.ndarray
        Per visit: estimate, standard error, degrees of freedom (``df_method``), t statistic,
        two-sided ``1 - alpha`` confidence limits and two-sided p-value.
    alpha : float
        One minus the confidence level.
    """

    treatment_level: Any
    control_level: Any
    visits: tuple[Any, ...]
    difference: FloatArray
    se: FloatArray
    df: FloatArray
    statistic: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    p_value: FloatArray
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-serialisable values (non-finite floats become None)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class MmrmResult:
    """Result of :func:`mmrm`.

    Attributes
    ----------
    levels, visits : tuple
        Arms and visits (sorted), the axes of ``ls_means``.
    covariance_structure, baseline_term, df_method : str
        The options fitted.
    coef_names : tuple of str
        ``arm[a]:visit[t]`` (the LS means) then ``baseline:visit[t]`` or ``baseline``.
    coef, coef_cov, coef_se : numpy.ndarray
        Fixed effects, their covariance ``(X' V^-1 X)^-1`` (R: ``vcov(fit)``) and SEs.
    covariance : numpy.ndarray
        Estimated covariance across visits (R: ``getVarCov(fit)`` for a complete subject).
    log_likelihood : float
        REML log-likelihood (R: ``logLik(fit)``).
    ls_means, ls_means_se : numpy.ndarray
        Shape ``(arms, visits)``, baseline at ``baseline_mean``.
    n_obs : numpy.ndarray
        Observations per arm and visit.
    contrasts : tuple of MmrmContrast
        Every other arm minus ``control_level`` (empty when no control was named).
    df_residual : float
        ``N - p``.
    n_subjects, n_observations : int
        Subjects and rows used.
    baseline_mean : float
        The baseline value of the LS means (NaN without baseline).
    iterations : int
        Optimiser iterations.
    theta, theta_hessian, coef_cov_gradient : numpy.ndarray
        Covariance parameters (internal scale), the Hessian of ``-l`` in them, and the gradient
        of ``coef_cov`` in them: what :meth:`contrast` needs for Satterthwaite degrees of freedom.
    coef_cov_adjusted, kr_p, kr_w : numpy.ndarray
        Kenward-Roger's ``Phi_A``, ``P_k`` and ``W`` (empty unless ``df_method`` is
        ``"kenward-roger"``).
    alpha : float
        One minus the confidence level.
    """

    levels: tuple[Any, ...]
    visits: tuple[Any, ...]
    covariance_structure: str
    baseline_term: str
    df_method: str
    coef_names: tuple[str, ...]
    coef: FloatArray
    coef_cov: FloatArray
    coef_se: FloatArray
    covariance: FloatArray
    log_likelihood: float
    ls_means: FloatArray
    ls_means_se: FloatArray
    n_obs: npt.NDArray[np.int64]
    contrasts: tuple[MmrmContrast, ...]
    df_residual: float
    n_subjects: int
    n_observations: int
    baseline_mean: float
    iterations: int
    theta: FloatArray
    theta_hessian: FloatArray
    coef_cov_gradient: FloatArray
    alpha: float
    coef_cov_adjusted: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))
    kr_p: FloatArray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    kr_w: FloatArray = field(default_factory=lambda: np.zeros((0, 0)))

    @property
    def correlation(self) -> FloatArray:
        """The correlation matrix of ``covariance``."""
        sd = np.sqrt(np.diag(self.covariance))
        result: FloatArray = self.covariance / np.outer(sd, sd)
        return result

    def contrast(
        self, treatment_level: Any, control_level: Any, df_method: str | None = None
    ) -> MmrmContrast:
        """``treatment_level`` minus ``control_level`` at each visit, with the fit's
        ``df_method`` or another (``"kenward-roger"`` needs a fit that computed its parts)."""
        method = self.df_method if df_method is None else df_method
        if method not in DF_METHODS:
            raise AnalysisError(f"df_method must be one of {', '.join(DF_METHODS)}, got {method!r}")
        if method == "kenward-roger" and self.kr_w.size == 0:
            raise AnalysisError(
                "this MMRM fit has no Kenward-Roger components: fit with "
                "df_method='kenward-roger' or kenward_roger=True"
            )
        if method == "satterthwaite" and self.coef_cov_gradient.size == 0:
            raise AnalysisError(
                "this MMRM fit has no Satterthwaite components: fit with df_method='satterthwaite'"
            )
        levels = list(self.levels)
        for label, value in (
            ("treatment_level", treatment_level),
            ("control_level", control_level),
        ):
            if value not in levels:
                raise AnalysisError(f"{label} {value!r} is not an arm of the model ({levels})")
        n_visits = len(self.visits)
        it, ic = levels.index(treatment_level), levels.index(control_level)
        lmat = np.zeros((n_visits, self.coef.size))
        lmat[np.arange(n_visits), it * n_visits + np.arange(n_visits)] = 1.0
        lmat[np.arange(n_visits), ic * n_visits + np.arange(n_visits)] = -1.0
        diff = lmat @ self.coef
        var = np.einsum("vi,ij,vj->v", lmat, self.coef_cov, lmat)
        se = np.sqrt(var)
        df = np.full(n_visits, self.df_residual)
        if method == "satterthwaite":
            grad = np.einsum("vi,kij,vj->vk", lmat, self.coef_cov_gradient, lmat)
            spread = np.einsum("vk,kl,vl->v", grad, np.linalg.inv(self.theta_hessian), grad)
            df = 2.0 * var**2 / spread
        elif method == "kenward-roger":
            kr = KenwardRoger(self.coef_cov, self.coef_cov_adjusted, self.kr_p, self.kr_w)
            se, df = kr.contrast(lmat)
        stat = diff / se
        q = t_ppf(1.0 - self.alpha / 2.0, df)
        return MmrmContrast(
            treatment_level=treatment_level,
            control_level=control_level,
            visits=self.visits,
            difference=diff,
            se=se,
            df=df,
            statistic=stat,
            ci_low=diff - q * se,
            ci_high=diff + q * se,
            p_value=2.0 * t_sf(np.abs(stat), df),
            alpha=self.alpha,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-serialisable values (non-finite floats become None)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "contrasts":
                out[f.name] = [c.to_dict() for c in value]
            else:
                out[f.name] = jsonable(value)
        return out


def _numeric(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise AnalysisError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing or non-finite values; drop those rows first")
    return arr


def _codes(values: npt.ArrayLike, name: str, n: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size != n:
        raise AnalysisError(f"{name} must be one-dimensional with {n} values, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing values; drop those rows first")
    if arr.dtype.kind == "O" and any(v is None or v != v for v in arr.tolist()):
        raise AnalysisError(f"{name} contains missing values; drop those rows first")
    try:
        levels, codes = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise AnalysisError(f"{name} labels must be sortable: {exc}") from exc
    return levels, codes.reshape(-1)


@dataclass(frozen=True)
class _Data:
    y: FloatArray
    subject: npt.NDArray[np.int64]
    visit: npt.NDArray[np.int64]
    arm: npt.NDArray[np.int64]
    baseline: FloatArray | None
    n_subjects: int
    levels: npt.NDArray[Any]
    visits: npt.NDArray[Any]


def _prepare(
    y: npt.ArrayLike,
    subject: npt.ArrayLike,
    visit: npt.ArrayLike,
    group: npt.ArrayLike,
    baseline: npt.ArrayLike | None,
) -> _Data:
    ya = _numeric(y, "y")
    n = ya.size
    if n == 0:
        raise AnalysisError("y is empty: the MMRM needs observations")
    subjects, s = _codes(subject, "subject", n)
    visits, v = _codes(visit, "visit", n)
    levels, g = _codes(group, "group", n)
    base = None if baseline is None else _numeric(baseline, "baseline")
    if base is not None and base.size != n:
        raise AnalysisError(f"baseline has {base.size} values but y has {n}")
    order = np.lexsort((v, s))
    s, v, g, ya = s[order], v[order], g[order], ya[order]
    base = None if base is None else base[order]
    same = (s[1:] == s[:-1]) & (v[1:] == v[:-1])
    if np.any(same):
        k = int(np.flatnonzero(same)[0])
        raise AnalysisError(
            f"subject {subjects.tolist()[s[k]]!r} has two rows at visit "
            f"{visits.tolist()[v[k]]!r}: keep one value per subject and visit"
        )
    first = np.concatenate([[True], s[1:] != s[:-1]])
    for name, codes in (("group", g), ("baseline", base)):
        if codes is not None and np.any(codes != np.repeat(codes[first], np.bincount(s))):
            k = int(np.flatnonzero(codes != np.repeat(codes[first], np.bincount(s)))[0])
            raise AnalysisError(
                f"{name} changes within subject {subjects.tolist()[s[k]]!r}: it must be one "
                "value per subject"
            )
    return _Data(ya, s, v, g, base, subjects.size, levels, visits)


def _design(data: _Data, baseline_term: BaselineTerm) -> tuple[FloatArray, list[str], float, int]:
    """Cell-means columns (arm x visit), then the centred baseline (per visit or common)."""
    n, k, t = data.y.size, data.levels.size, data.visits.size
    names = [f"arm[{a}]:visit[{v}]" for a in data.levels.tolist() for v in data.visits.tolist()]
    cells = np.zeros((n, k * t))
    cells[np.arange(n), data.arm * t + data.visit] = 1.0
    if data.baseline is None or baseline_term == "none":
        return cells, names, math.nan, 0
    mean = float(data.baseline.mean())
    centred = data.baseline - mean
    if baseline_term == "common":
        return np.column_stack([cells, centred]), [*names, "baseline"], mean, 1
    slopes = np.zeros((n, t))
    slopes[np.arange(n), data.visit] = centred
    names += [f"baseline:visit[{v}]" for v in data.visits.tolist()]
    return np.column_stack([cells, slopes]), names, mean, 1


def _check_support(
    data: _Data, counts: npt.NDArray[np.int64], covariance: Covariance, per_visit: int
) -> None:
    """Every arm at every visit; enough subjects per visit (and pair) for the covariance."""
    empty = np.argwhere(counts == 0)
    if empty.size:
        a, v = empty[0]
        raise AnalysisError(
            f"arm {data.levels.tolist()[a]!r} has no observations at visit "
            f"{data.visits.tolist()[v]!r}: its LS mean is not estimable; drop the visit or the arm"
        )
    if covariance != "unstructured":
        return
    per = counts.sum(axis=0)
    for v, count in enumerate(per.tolist()):
        if count <= per_visit:
            raise AnalysisError(
                f"visit {data.visits.tolist()[v]!r} has {count} observations, too few to "
                f"estimate its variance beside its {per_visit} fixed effects; drop the visit "
                "or use covariance = 'compound_symmetry'"
            )
    seen = np.zeros((data.n_subjects, data.visits.size))
    seen[data.subject, data.visit] = 1.0
    pairs = seen.T @ seen
    lonely = np.argwhere(pairs == 0)
    if lonely.size:
        a, b = lonely[0]
        raise AnalysisError(
            f"no subject has values at both {data.visits.tolist()[a]!r} and "
            f"{data.visits.tolist()[b]!r}: their correlation is not estimable; use "
            "covariance = 'compound_symmetry'"
        )


def _start_covariance(resid: FloatArray, data: _Data) -> FloatArray:
    """Pairwise-available covariance of OLS residuals, shrunk towards its diagonal until PD."""
    t = data.visits.size
    wide = np.zeros((data.n_subjects, t))
    seen = np.zeros((data.n_subjects, t))
    wide[data.subject, data.visit] = resid
    seen[data.subject, data.visit] = 1.0
    pairs = np.maximum(seen.T @ seen, 1.0)
    cov = (wide.T @ wide) / pairs
    var = np.maximum(np.diag(cov), 1e-8 * max(float(np.max(np.diag(cov))), 1e-300))
    sd = np.sqrt(var)
    corr = np.clip(cov / np.outer(sd, sd), -0.95, 0.95)
    np.fill_diagonal(corr, 1.0)
    for _ in range(60):
        if np.linalg.eigvalsh(corr).min() > 1e-3:
            break
        corr = 0.5 * corr + 0.5 * np.eye(t)
    result: FloatArray = corr * np.outer(sd, sd)
    return result


def _coef_cov_gradient(
    reml: Reml, cmap: CovarianceMap, theta: FloatArray, unscale: FloatArray
) -> FloatArray:
    """``d (X'V^-1X)^-1 / d theta_j`` (analytic), on the caller's scale."""
    cov, d_cov = cmap.sigma(theta)
    grad = reml.coef_cov_gradient(cov, d_cov)
    if grad is None:
        return np.full((theta.size, reml.p, reml.p), math.nan)
    result: FloatArray = grad * unscale
    return result


def _weakest_visit(cmap: CovarianceMap, theta: FloatArray, data: _Data) -> str:
    """Where the covariance is near singular: the visit that loads most on it, and its count."""
    cov = cmap.sigma(theta)[0]
    if not np.all(np.isfinite(cov)) or data.visits.size < 2:
        return ""
    sd = np.sqrt(np.diag(cov))
    values, vectors = np.linalg.eigh(cov / np.outer(sd, sd))
    if values[0] > 1e-6:
        return ""
    v = int(np.argmax(np.abs(vectors[:, 0]) / np.sqrt(np.bincount(data.visit))))
    count = int(np.sum(data.visit == v))
    return f" (visit {data.visits.tolist()[v]!r}, {count} observations)"


def mmrm(
    y: npt.ArrayLike,
    subject: npt.ArrayLike,
    visit: npt.ArrayLike,
    group: npt.ArrayLike,
    baseline: npt.ArrayLike | None = None,
    *,
    control_level: Any = None,
    covariance: Covariance = "unstructured",
    baseline_term: BaselineTerm = "by_visit",
    df_method: DfMethod = "residual",
    alpha: float = 0.05,
    kenward_roger: bool = False,
) -> MmrmResult:
    """Fit an MMRM by REML and return LS means by arm and visit and contrasts against control.

    Matches ``nlme::gls`` with ``corSymm`` + ``varIdent`` (``"unstructured"``) or
    ``corCompSymm`` (``"compound_symmetry"``), ``method = "REML"``: fixed effects, ``vcov``,
    ``logLik``; LS means and contrasts as ``emmeans(fit, ~ arm | visit, mode = "df.error")``.

    Parameters
    ----------
    y : array_like
        Outcome, one row per subject and post-baseline visit present (long format).
    subject, visit, group : array_like
        Subject id, visit label (sortable: the visit order) and arm of each row.
    baseline : array_like, optional
        Baseline value of the outcome on each row (constant within subject).
    control_level : object, optional
        Arm every other arm is compared with in ``contrasts``.
    covariance : {"unstructured", "compound_symmetry"}
        Covariance across a subject's visits.
    baseline_term : {"by_visit", "common", "none"}
        A baseline slope per visit (``base:visit``), one slope (``base``), or no baseline.
    df_method : {"residual", "satterthwaite", "kenward-roger"}
        Degrees of freedom of tests and intervals (see the module docstring).
    alpha : float
        One minus the confidence level.
    kenward_roger : bool
        Compute the Kenward-Roger components even when ``df_method`` is another, so that
        ``contrast(..., df_method="kenward-roger")`` can report both.

    Returns
    -------
    MmrmResult

    Raises
    ------
    AnalysisError
        Bad or mismatched inputs, two rows for a subject at one visit, an arm without data at a
        visit, a visit (unstructured: or a pair of visits) with too few subjects, a
        rank-deficient design, or an optimisation that does not reach a proper maximum (the
        message says so; compound symmetry is the usual fallback).
    """
    if covariance not in ("unstructured", "compound_symmetry"):
        raise AnalysisError(
            f"covariance must be 'unstructured' or 'compound_symmetry', got {covariance!r}"
        )
    if baseline_term not in ("by_visit", "common", "none"):
        raise AnalysisError(
            f"baseline_term must be 'by_visit', 'common' or 'none', got {baseline_term!r}"
        )
    if df_method not in DF_METHODS:
        raise AnalysisError(f"df_method must be one of {', '.join(DF_METHODS)}, got {df_method!r}")
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    data = _prepare(y, subject, visit, group, baseline)
    if control_level is not None and control_level not in data.levels.tolist():
        raise AnalysisError(
            f"control_level {control_level!r} does not occur in group ({data.levels.tolist()})"
        )
    x, names, base_mean, has_base = _design(data, baseline_term)
    n, p = x.shape
    k, t = data.levels.size, data.visits.size
    counts = np.zeros((k, t), dtype=np.int64)
    np.add.at(counts, (data.arm, data.visit), 1)
    _check_support(data, counts, covariance, k + (has_base if baseline_term == "by_visit" else 0))
    if n <= p:
        raise AnalysisError(f"the MMRM needs more observations ({n}) than fixed effects ({p})")
    col_scale = np.linalg.norm(x, axis=0)
    xs = x / np.where(col_scale > 0, col_scale, 1.0)
    q, r = linalg.qr(xs, mode="economic")
    weak = [names[j] for j in range(p) if not abs(r[j, j]) > 1e-9]
    if weak:
        raise AnalysisError(
            "the MMRM design is rank-deficient (a baseline with no spread at a visit?): "
            + ", ".join(weak)
        )
    resid = data.y - xs @ linalg.solve_triangular(r, q.T @ data.y)
    y_scale = float(np.sqrt(np.mean(resid**2)))
    if not y_scale > 1e-12 * max(float(np.max(np.abs(data.y))), 1e-300):
        raise AnalysisError("the model fits y exactly: there is no residual variance to model")
    ys = data.y / y_scale
    cmap = unstructured_map(t) if covariance == "unstructured" else compound_symmetry_map(t)
    reml = Reml(make_grid(data.subject, data.visit, ys, xs, data.n_subjects, t), n, p, t)
    fit = maximize(reml, cmap, cmap.start(_start_covariance(resid / y_scale, data)))
    if not fit.converged:
        raise AnalysisError(
            f"the {covariance.replace('_', ' ')} MMRM did not converge after {fit.iterations} "
            f"iterations: {fit.message}{_weakest_visit(cmap, fit.theta, data)}; try "
            "covariance = 'compound_symmetry'"
        )
    sigma_s = cmap.sigma(fit.theta)[0]
    beta_s, cov_s = reml.beta(sigma_s)
    unscale = y_scale**2 / np.outer(col_scale, col_scale)
    coef = beta_s * y_scale / col_scale
    coef_cov = cov_s * unscale
    ll = fit.log_likelihood - (n - p) * math.log(y_scale) - float(np.log(col_scale).sum())
    grad = (
        _coef_cov_gradient(reml, cmap, fit.theta, unscale)
        if df_method == "satterthwaite"
        else np.zeros((0, p, p))
    )
    cells = slice(0, k * t)
    result = MmrmResult(
        levels=tuple(data.levels.tolist()),
        visits=tuple(data.visits.tolist()),
        covariance_structure=covariance,
        baseline_term=baseline_term if has_base else "none",
        df_method=df_method,
        coef_names=tuple(names),
        coef=coef,
        coef_cov=coef_cov,
        coef_se=np.sqrt(np.diag(coef_cov)),
        covariance=sigma_s * y_scale**2,
        log_likelihood=ll,
        ls_means=coef[cells].reshape(k, t),
        ls_means_se=np.sqrt(np.diag(coef_cov)[cells]).reshape(k, t),
        n_obs=counts,
        contrasts=(),
        df_residual=float(n - p),
        n_subjects=int(np.unique(data.subject).size),
        n_observations=int(n),
        baseline_mean=base_mean,
        iterations=fit.iterations,
        theta=fit.theta,
        theta_hessian=fit.hessian,
        coef_cov_gradient=grad,
        alpha=float(alpha),
    )
    if df_method == "kenward-roger" or kenward_roger:
        grid = make_grid(data.subject, data.visit, data.y, x, data.n_subjects, t)
        kr = kenward_roger_parts(grid, result.covariance, coef_cov, covariance)
        result = replace(result, coef_cov_adjusted=kr.coef_cov_adjusted, kr_p=kr.p, kr_w=kr.w)
    if control_level is None:
        return result
    contrasts = tuple(
        result.contrast(level, control_level) for level in result.levels if level != control_level
    )
    return replace(result, contrasts=contrasts)
