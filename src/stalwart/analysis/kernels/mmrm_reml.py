"""REML likelihood of a multivariate normal repeated-measures model, and its maximisation.

The engine behind :mod:`stalwart.analysis.kernels.mmrm`. Subject ``i`` contributes the visits it
has, ``y_i ~ N(X_i beta, Sigma[P_i, P_i])`` (missing at random), and the restricted
log-likelihood is the one ``nlme::gls(method = "REML")`` reports::

    l(theta) = -1/2 [(N - p) log(2 pi) + sum_i log|V_i| + log|X' V^-1 X| + r' V^-1 r]

with ``r = y - X beta_hat(theta)``. There is no ``+ 1/2 log|X'X|`` term (as in nlme and lme4),
so the value depends on the scale of the fixed effects' columns; it does not depend on the
parameterisation of the covariance.

Every subject sits on the full grid of ``T`` visits, its missing visits zero rows of ``y`` and
``X``; a missingness pattern's ``Sigma[P, P]^-1`` is inverted once, embedded in a ``T x T`` matrix
(zeros at the missing visits), so one evaluation is a few batched NumPy calls over the distinct
patterns and over subjects, without a Python loop over either. Gradient and Hessian in ``Sigma``
are analytic (with ``P = V^-1 - V^-1 X (X'V^-1X)^-1 X'V^-1``)::

    dl/dS_ab        = -1/2 tr(P E_ab) + 1/2 y'P E_ab P y
    d2l/dS_ab dS_cd =  1/2 tr(P E_ab P E_cd) - y'P E_ab P E_cd P y

(``E_ab`` the unit matrix at ``(a, b)``, acting on each subject's block); the chain rule through
the parameterisation gives the gradient and Hessian in ``theta``. The maximiser is Newton's
method on that exact Hessian (Fisher scoring where it is not positive definite), with step
halving; a quasi-Newton path is the fallback where Newton does not reach a proper maximum.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import linalg, optimize

__all__ = [
    "CovarianceMap",
    "Fit",
    "Grid",
    "Reml",
    "compound_symmetry_map",
    "make_grid",
    "maximize",
    "unstructured_map",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Grid:
    """Subjects on the full grid of ``T`` visits, sorted by visit pattern.

    ``masks`` (k, T) the distinct visit patterns, ``pattern`` (m,) each subject's row of
    ``masks`` (ascending), ``counts`` (k,) subjects per pattern and ``starts`` (k,) the first
    subject of each, ``y`` (m, T) and ``x`` (m, T, p) with zeros at missing visits.
    """

    masks: BoolArray
    pattern: IntArray
    counts: FloatArray
    starts: IntArray
    y: FloatArray
    x: FloatArray


def make_grid(
    subject: IntArray, visit: IntArray, y: FloatArray, x: FloatArray, n_subjects: int, t: int
) -> Grid:
    """Arrange long rows (subject codes ``0..n_subjects-1``, one row per visit) on the grid."""
    seen = np.zeros((n_subjects, t), dtype=bool)
    seen[subject, visit] = True
    present = np.flatnonzero(seen.any(axis=1))
    slot = np.full(n_subjects, -1, dtype=np.int64)
    slot[present] = np.arange(present.size)
    m = present.size
    wide_y = np.zeros((m, t))
    wide_x = np.zeros((m, t, x.shape[1]))
    wide_y[slot[subject], visit] = y
    wide_x[slot[subject], visit] = x
    masks, pattern = np.unique(seen[present], axis=0, return_inverse=True)
    pattern = pattern.reshape(-1).astype(np.int64)
    order = np.argsort(pattern, kind="stable")
    counts = np.bincount(pattern, minlength=masks.shape[0])
    return Grid(
        masks=masks,
        pattern=pattern[order],
        counts=counts.astype(float),
        starts=np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        y=wide_y[order],
        x=wide_x[order],
    )


@dataclass(frozen=True)
class CovarianceMap:
    """A covariance parameterisation.

    ``sigma(theta) -> (Sigma, dSigma/dtheta_j stacked)``; ``curvature(theta, g)`` is
    ``sum_ab g_ab d2 Sigma_ab / dtheta_j dtheta_k`` for a symmetric ``g`` (the second-order
    term of the chain rule); ``start(cov)`` the parameters of a covariance matrix.
    """

    n_params: int
    sigma: Callable[[FloatArray], tuple[FloatArray, FloatArray]]
    curvature: Callable[[FloatArray, FloatArray], FloatArray]
    start: Callable[[FloatArray], FloatArray]


def unstructured_map(t: int) -> CovarianceMap:
    """``Sigma = L L'`` with ``L`` lower triangular, its diagonal on the log scale.

    Spans every positive-definite matrix, the same model as ``corSymm`` + ``varIdent`` in nlme
    (whose parameters are a different, equivalent map).
    """
    rows, cols = np.tril_indices(t)
    diag = rows == cols
    k = rows.size
    same_col = cols[:, None] == cols[None, :]

    def lower_of(theta: FloatArray) -> FloatArray:
        lower = np.zeros((t, t))
        with np.errstate(over="ignore"):
            lower[rows, cols] = np.where(diag, np.exp(theta), theta)
        return lower

    def sigma(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        lower = lower_of(theta)
        cov = lower @ lower.T
        d_lower = np.zeros((k, t, t))
        d_lower[np.arange(k), rows, cols] = np.where(diag, lower[rows, cols], 1.0)
        d_cov = d_lower @ lower.T
        return cov, d_cov + np.swapaxes(d_cov, 1, 2)

    def curvature(theta: FloatArray, g: FloatArray) -> FloatArray:
        # d2 Sigma = dL_j dL_k' + dL_k dL_j' (+ dSigma_j where j = k is a log-diagonal entry)
        lower = lower_of(theta)
        s = np.where(diag, lower[rows, cols], 1.0)
        out: FloatArray = 2.0 * np.outer(s, s) * g[rows[:, None], rows[None, :]] * same_col
        first = 2.0 * (g @ lower)[rows, cols] * s
        out[np.arange(k), np.arange(k)] += np.where(diag, first, 0.0)
        return out

    def start(cov: FloatArray) -> FloatArray:
        lower = np.linalg.cholesky(cov)
        vals = lower[rows, cols]
        return np.where(diag, np.log(np.where(diag, vals, 1.0)), vals)

    return CovarianceMap(k, sigma, curvature, start)


def compound_symmetry_map(t: int) -> CovarianceMap:
    """``Sigma = s2 ((1 - rho) I + rho J)``, ``theta = (log s2, logit of rho on its range)``.

    ``rho`` lies in ``(-1/(t-1), 1)``, the range where ``Sigma`` is positive definite (as
    ``nlme::corCompSymm``); with one visit only the variance is estimated.
    """
    eye, ones = np.eye(t), np.ones((t, t))
    low = -1.0 / (t - 1) if t > 1 else 0.0

    def parts(theta: FloatArray) -> tuple[float, float, float]:
        s2 = math.exp(min(float(theta[0]), 700.0))
        e = 1.0 / (1.0 + math.exp(-min(max(float(theta[1]), -700.0), 700.0))) if t > 1 else 0.0
        return s2, e, low + (1.0 - low) * e

    def sigma(theta: FloatArray) -> tuple[FloatArray, FloatArray]:
        s2, e, rho = parts(theta)
        if t == 1:
            cov = np.array([[s2]])
            return cov, cov[None]
        cov = s2 * ((1.0 - rho) * eye + rho * ones)
        d_rho = (1.0 - low) * e * (1.0 - e)
        return cov, np.stack([cov, s2 * d_rho * (ones - eye)])

    def curvature(theta: FloatArray, g: FloatArray) -> FloatArray:
        s2, e, rho = parts(theta)
        if t == 1:
            return np.array([[s2 * float(g[0, 0])]])
        cov = s2 * ((1.0 - rho) * eye + rho * ones)
        off = float(np.sum(g * (ones - eye)))
        d_rho = (1.0 - low) * e * (1.0 - e)
        d2_rho = d_rho * (1.0 - 2.0 * e)
        cross = s2 * d_rho * off
        return np.array([[float(np.sum(g * cov)), cross], [cross, s2 * d2_rho * off]])

    def start(cov: FloatArray) -> FloatArray:
        s2 = float(np.mean(np.diag(cov)))
        if t == 1:
            return np.array([math.log(s2)])
        sd = np.sqrt(np.diag(cov))
        corr = cov / np.outer(sd, sd)
        rho = float(np.mean(corr[~np.eye(t, dtype=bool)]))
        e = min(max((rho - low) / (1.0 - low), 0.05), 0.95)
        return np.array([math.log(s2), math.log(e / (1.0 - e))])

    return CovarianceMap(2 if t > 1 else 1, sigma, curvature, start)


@dataclass(frozen=True)
class _State:
    """What one pass over the data leaves for the derivatives: per-pattern ``W`` (k, T, T),
    ``G = W X`` and ``H = G L_A^-T`` per subject (m, T, p), ``u = P y`` (m, T), ``L_A``."""

    w: FloatArray
    g: FloatArray
    h: FloatArray
    u: FloatArray
    a_chol: FloatArray
    value: float


class Reml:
    """The REML log-likelihood of ``grid`` over ``Sigma``, with ``n`` rows and ``p`` effects."""

    def __init__(self, grid: Grid, n: int, p: int, t: int) -> None:
        self.grid = grid
        self.n = n
        self.p = p
        self.t = t
        self._outer = grid.masks[:, :, None] & grid.masks[:, None, :]
        self._eye = np.eye(t)
        self._xt = np.ascontiguousarray(np.swapaxes(grid.x, 1, 2))

    def _weights(self, cov: FloatArray) -> tuple[FloatArray, float] | None:
        """Embedded ``Sigma[P, P]^-1`` per pattern and ``sum_i log|V_i|``; None if not PD."""
        if not np.all(np.isfinite(cov)):
            return None
        padded = np.where(self._outer, cov, self._eye)
        chol = _cholesky(padded)
        if chol is None:
            return None
        logdet = 2.0 * float(self.grid.counts @ np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1))
        inv = np.linalg.inv(chol)
        w = (np.swapaxes(inv, 1, 2) @ inv) * self._outer
        return w, logdet

    def _state(self, cov: FloatArray) -> _State | None:
        # Products are batched per subject (T x p blocks), small enough for BLAS to run them on
        # one thread: a threaded GEMM per call costs more than it saves at this size.
        weights = self._weights(cov)
        if weights is None:
            return None
        w, logdet = weights
        grid = self.grid
        ws = w[grid.pattern]
        g = ws @ grid.x
        a = (self._xt @ g).sum(axis=0)
        a_chol = _cholesky(0.5 * (a + a.T))
        if a_chol is None:
            return None
        b = np.einsum("mti,mt->i", g, grid.y)
        beta = linalg.cho_solve((a_chol, True), b)
        r = grid.y - np.einsum("mti,i->mt", grid.x, beta)
        u = np.einsum("mab,mb->ma", ws, r)
        quad = float(np.sum(r * u))
        logdet_a = 2.0 * float(np.log(np.diag(a_chol)).sum())
        value = -0.5 * ((self.n - self.p) * _LOG_2PI + logdet + logdet_a + quad)
        a_root = linalg.solve_triangular(a_chol, np.eye(self.p), lower=True)
        return _State(w, g, g @ a_root.T, u, a_chol, value)

    def value(self, cov: FloatArray) -> float:
        """The log-likelihood at ``Sigma``; ``-inf`` outside the positive-definite cone."""
        state = self._state(cov)
        return -math.inf if state is None else state.value

    def derivatives(
        self, cov: FloatArray, hessian: bool
    ) -> tuple[float, FloatArray, FloatArray, FloatArray] | None:
        """``l``, ``dl/dSigma`` (T, T), and if asked ``d2l/dSigma2`` and the expected
        information ``1/2 tr(P E_ab P E_cd)``, both (T^2, T^2) over ``(a, b), (c, d)``.

        None outside the positive-definite cone; without ``hessian`` the last two are empty.
        """
        state = self._state(cov)
        if state is None:
            return None
        grid, t = self.grid, self.t
        m = grid.y.shape[0]
        c = state.h @ np.swapaxes(state.h, 1, 2)  # diagonal blocks of W X A^-1 X' W
        uu = (state.u[:, :, None] * state.u[:, None, :]).reshape(m, t * t)
        c_sum = np.add.reduceat(c, grid.starts, axis=0)
        uu_sum = np.add.reduceat(uu, grid.starts, axis=0).reshape(-1, t, t)
        w_sum = np.einsum("k,kab->ab", grid.counts, state.w)
        grad = -0.5 * (w_sum - c_sum.sum(axis=0) - uu_sum.sum(axis=0))
        if not hessian:
            return state.value, grad, np.zeros((0, 0)), np.zeros((0, 0))
        info = 0.5 * self._trace_term(state, c_sum)
        quad = self._quadratic_term(state, uu_sum)
        return state.value, grad, info - quad, info

    def _trace_term(self, state: _State, c_sum: FloatArray) -> FloatArray:
        """``tr(P E_ab P E_cd)`` as (T^2, T^2), ``P = W - Q`` with ``Q = W X A^-1 X' W``."""
        t, w, counts = self.t, state.w, self.grid.counts
        k = w.shape[0]
        wf = w.reshape(k, t * t)
        # tr(W E_ab W E_cd) - tr(Q E_ab W E_cd) - tr(W E_ab Q E_cd): sums of X[b,c] Y[d,a]
        left = wf.T @ (counts[:, None] * wf - c_sum.reshape(k, t * t))
        left -= c_sum.reshape(k, t * t).T @ wf
        bcda = left.reshape(t, t, t, t)  # [b, c, d, a]
        # tr(Q E_ab Q E_cd) = <M_ab, M_dc> with M_ab = sum_s h_sa h_sb'
        m, p = state.h.shape[0], self.p
        hf = state.h.reshape(m, t * p)
        mm = (hf.T @ hf).reshape(t, p, t, p).transpose(0, 2, 1, 3).reshape(t * t, p * p)
        cross = (mm @ mm.T).reshape(t, t, t, t)  # [a, b, d, c]
        total = bcda.transpose(3, 0, 1, 2) + cross.transpose(0, 1, 3, 2)
        return total.reshape(t * t, t * t)

    def _quadratic_term(self, state: _State, uu_sum: FloatArray) -> FloatArray:
        """``y'P E_ab P E_cd P y`` as (T^2, T^2)."""
        t, w = self.t, state.w
        k = w.shape[0]
        # z_ab' W z_cd = sum_s W_s[a,c] u_s[b] u_s[d]
        acbd = (w.reshape(k, t * t).T @ uu_sum.reshape(k, t * t)).reshape(t, t, t, t)
        # minus q_ab' q_cd with q_ab = sum_s h_sa u_sb
        q = np.einsum("mai,mb->abi", state.h, state.u).reshape(t * t, self.p)
        out: FloatArray = acbd.transpose(0, 2, 1, 3).reshape(t * t, t * t) - q @ q.T
        return out

    def beta(self, cov: FloatArray) -> tuple[FloatArray, FloatArray]:
        """GLS estimate of the fixed effects and ``(X' V^-1 X)^-1`` at ``Sigma``."""
        state = self._state(cov)
        assert state is not None
        m, t, p = self.grid.y.shape[0], self.t, self.p
        a_inv = linalg.cho_solve((state.a_chol, True), np.eye(p))
        b = state.g.reshape(m * t, p).T @ self.grid.y.reshape(m * t)
        return a_inv @ b, 0.5 * (a_inv + a_inv.T)

    def coef_cov_gradient(self, cov: FloatArray, d_cov: FloatArray) -> FloatArray | None:
        """``d (X'V^-1X)^-1 / d theta_j = A^-1 (X'W dSigma_j W X) A^-1``, stacked over ``j``."""
        state = self._state(cov)
        if state is None:
            return None
        m, t, p = self.grid.y.shape[0], self.t, self.p
        a_inv = linalg.cho_solve((state.a_chol, True), np.eye(p))
        gf = state.g.reshape(m, t * p)
        nn = (gf.T @ gf).reshape(t, p, t, p).transpose(0, 2, 1, 3).reshape(t * t, p * p)
        mid = (d_cov.reshape(-1, t * t) @ nn).reshape(-1, p, p)
        out: FloatArray = a_inv @ mid @ a_inv
        return out


def _cholesky(mats: FloatArray) -> FloatArray | None:
    try:
        result = np.asarray(np.linalg.cholesky(mats), dtype=np.float64)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(result)):
        return None
    return result


@dataclass(frozen=True)
class Fit:
    """Where :func:`maximize` stopped: parameters, ``l``, gradient and Hessian of ``-l``."""

    theta: FloatArray
    log_likelihood: float
    gradient: FloatArray
    hessian: FloatArray
    iterations: int
    converged: bool
    message: str


@dataclass(frozen=True)
class _Point:
    """``-l``, its gradient, Hessian and expected information in ``theta`` at one point."""

    theta: FloatArray
    value: float
    grad: FloatArray
    hess: FloatArray
    info: FloatArray


class _Objective:
    """``-l(theta)`` with its analytic derivatives, through a covariance map."""

    def __init__(self, reml: Reml, cmap: CovarianceMap) -> None:
        self.reml = reml
        self.cmap = cmap

    def value_and_grad(self, theta: FloatArray) -> tuple[float, FloatArray]:
        point = self.point(theta, hessian=False)
        return point.value, point.grad

    def hessian(self, theta: FloatArray) -> FloatArray:
        return self.point(theta, hessian=True).hess

    def point(self, theta: FloatArray, hessian: bool = True) -> _Point:
        k = theta.size
        cov, d_cov = self.cmap.sigma(theta)
        found = self.reml.derivatives(cov, hessian)
        if found is None:
            nan = np.full((k, k), math.nan)
            return _Point(theta, math.inf, np.zeros(k), nan, nan)
        ll, g_sigma, h_sigma, i_sigma = found
        d = d_cov.reshape(k, -1)
        grad = -(d @ g_sigma.reshape(-1))
        if not hessian:
            return _Point(theta, -ll, grad, np.zeros((k, k)), np.zeros((k, k)))
        hess = -(d @ h_sigma @ d.T) - self.cmap.curvature(theta, g_sigma)
        info = d @ i_sigma @ d.T
        return _Point(theta, -ll, grad, 0.5 * (hess + hess.T), 0.5 * (info + info.T))


def _direction(point: _Point) -> FloatArray | None:
    """Newton step on the exact Hessian, or Fisher scoring where it is not positive definite."""
    for mat in (point.hess, point.info):
        chol = _cholesky(mat) if np.all(np.isfinite(mat)) else None
        if chol is not None:
            step = linalg.cho_solve((chol, True), point.grad)
            if np.all(np.isfinite(step)) and float(step @ point.grad) > 0.0:
                return np.asarray(step, dtype=np.float64)
    return None


def _newton(obj: _Objective, point: _Point, gtol: float, max_steps: int) -> tuple[_Point, int]:
    """Newton (or scoring) steps with step halving until the gradient is negligible.

    Stops below ``gtol * 1e-3``, or once below ``gtol`` where a step no longer halves the
    gradient (rounding has the last word), or where no step lowers ``-l``.
    """
    steps = 0
    while steps < max_steps and math.isfinite(point.value):
        size = float(np.max(np.abs(point.grad)))
        if size < gtol * 1e-3:
            break
        step = _direction(point)
        if step is None:
            break
        scale = 1.0
        while scale > 1e-6:
            cand = obj.point(point.theta - scale * step)
            if cand.value <= point.value + 1e-12 * abs(point.value):
                break
            scale *= 0.5
        else:
            break
        point, steps = cand, steps + 1
        if size < gtol and not float(np.max(np.abs(point.grad))) < 0.5 * size:
            break
    return point, steps


def _diagnose(cmap: CovarianceMap, point: _Point, gtol: float, note: str) -> str:
    """``"converged"``, or why the point is not a proper maximum."""
    if not math.isfinite(point.value):
        return "the covariance left the positive-definite region"
    cov = cmap.sigma(point.theta)[0]
    sd = np.sqrt(np.diag(cov))
    if np.linalg.eigvalsh(cov / np.outer(sd, sd)).min() < 1e-6:
        return (
            "the covariance runs to a singular matrix (a visit's values a linear function of "
            "other visits'): too few subjects at a visit for this structure"
        )
    grad = point.grad
    if not np.max(np.abs(grad)) < gtol * 10:
        return f"the gradient is still {np.max(np.abs(grad)):.3g} ({note})"
    hess = point.hess
    eig = np.linalg.eigvalsh(hess) if np.all(np.isfinite(hess)) else np.array([-1.0])
    if not eig.min() > 1e-8 * max(1.0, eig.max()):
        return "the Hessian is not positive definite (a correlation at +/-1 or a variance at 0)"
    return "converged"


def _quasi_newton(obj: _Objective, start: FloatArray, gtol: float) -> tuple[_Point, int, str]:
    """The slow, sure path: BFGS, then a trust region on the exact Hessian where BFGS stalls."""
    res = optimize.minimize(
        obj.value_and_grad, start, jac=True, method="BFGS", options={"gtol": gtol, "maxiter": 2000}
    )
    theta = np.asarray(res.x, dtype=float)
    value, grad = obj.value_and_grad(theta)
    iterations = int(res.nit)
    message = str(res.message)
    if math.isfinite(value) and np.max(np.abs(grad)) > gtol:
        try:
            res = optimize.minimize(
                obj.value_and_grad,
                theta,
                jac=True,
                hess=obj.hessian,
                method="trust-exact",
                options={"gtol": gtol, "maxiter": 200},
            )
        except (ValueError, np.linalg.LinAlgError):
            # The exact Hessian is not finite on the way (a covariance at the edge of the
            # positive-definite region): keep the BFGS point; _diagnose says why it is no maximum.
            message = f"{message}; the trust region met a Hessian that is not finite"
        else:
            message = str(res.message)
            if res.fun <= value:
                theta = np.asarray(res.x, dtype=float)
                iterations += int(res.nit)
    point, steps = _newton(obj, obj.point(theta), gtol, 20)
    return point, iterations + steps, message


def maximize(reml: Reml, cmap: CovarianceMap, start: FloatArray, gtol: float = 1e-8) -> Fit:
    """Maximise the REML log-likelihood: Newton's method from ``start`` on the exact Hessian.

    Where that does not reach a proper maximum, BFGS from ``start`` (then a trust region on the
    exact Hessian, then Newton steps) tries again and has the last word. ``converged`` requires
    a gradient below ``gtol`` (max norm, on the caller's standardised scale), a positive-definite
    Hessian of ``-l`` and a non-singular covariance (a strict interior maximum, not a boundary).
    """
    obj = _Objective(reml, cmap)
    point, iterations = _newton(obj, obj.point(start), gtol, 100)
    message = _diagnose(cmap, point, gtol, "Newton's method stalled")
    if message != "converged":
        point, more, note = _quasi_newton(obj, start, gtol)
        iterations += more
        message = _diagnose(cmap, point, gtol, note)
    return Fit(
        point.theta,
        -point.value,
        point.grad,
        point.hess,
        iterations,
        message == "converged",
        message,
    )
