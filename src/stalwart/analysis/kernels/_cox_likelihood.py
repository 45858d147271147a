"""The stratified Cox partial likelihood, shared by the Cox and Firth kernels.

:func:`cox_design` validates the data of a Cox model, centres and scales the covariates (the
model is invariant to this; the kernels report on the original scale) and indexes each stratum
once (:class:`Stratum`). :class:`PartialLikelihood` is the log partial likelihood of R
``survival::coxph`` with Efron or Breslow ties, its score and information summed over strata,
and the score residuals (R ``residuals(fit, "score")``) that the robust variance sums.

The risk-set sums are computed in ``O(n log n)``: one sort, block sums per distinct event time
(``np.add.reduceat``), then reverse cumulative sums over those times; nothing loops over rows or
event times. Efron's correction is vectorised over the events: the ``l``-th of ``d`` tied events
at a time uses the denominator ``R0 - (l/d) D0``, where ``R0`` is the risk-set sum and ``D0`` the
sum over the tied events; Breslow is the special case ``l/d = 0``. The information is never
formed per risk set: it is accumulated as ``X' diag(w * c) X`` with ``c`` a cumulative sum of
per-event-time weights, so the memory is ``O(n p)``. Only strata are looped over.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stalwart.errors import AnalysisError

__all__ = [
    "BoolArray",
    "CoxDesign",
    "FloatArray",
    "IntpArray",
    "PartialLikelihood",
    "RiskSets",
    "Stratum",
    "cox_design",
    "index_stratum",
    "label_codes",
    "reverse_cumsum",
    "risk_sets",
    "stratum_derivatives",
    "stratum_score_residuals",
]

FloatArray = npt.NDArray[np.float64]
IntpArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Stratum:
    """Index structures for one stratum, rows sorted by time (computed once per fit).

    Rows before the first event time are dropped: they are in no risk set. Covariates are held
    transposed (``p x n``) so that per-covariate passes run over contiguous memory.
    """

    rows: IntpArray  # original row of each sorted row
    zt: FloatArray  # standardized covariates, p x n, columns sorted by time
    event_rows: IntpArray  # rows that are events
    block_start: IntpArray  # per distinct event time: first row (any status) at that time
    event_group: IntpArray  # per event: index of its distinct event time
    event_group_first: IntpArray  # per distinct event time: first position within event_rows
    tied: FloatArray  # per distinct event time: number of events d
    frac: FloatArray  # per event: l/d (Efron) or 0 (Breslow)
    zt_event: FloatArray  # covariates of the events, p x n_events
    z_event_sum: FloatArray  # sum of z over events
    efron: bool  # whether any event has l/d > 0

    @property
    def z(self) -> FloatArray:
        """Covariates as ``n x p`` (a transposed view)."""
        return self.zt.T


def index_stratum(
    rows: IntpArray, zt: FloatArray, time: FloatArray, event: BoolArray, ties: str
) -> Stratum:
    """Index one stratum whose rows (``zt`` columns, ``time``, ``event``) are sorted by time."""
    start = int(np.searchsorted(time, time[int(np.argmax(event))], side="left"))
    rows, zt, time, event = rows[start:], zt[:, start:], time[start:], event[start:]
    new_time = np.empty(time.size, dtype=bool)
    new_time[0] = True
    np.not_equal(time[1:], time[:-1], out=new_time[1:])
    time_group = np.cumsum(new_time) - 1
    time_start = np.flatnonzero(new_time)
    event_rows = np.flatnonzero(event)
    eg = time_group[event_rows]
    first = np.flatnonzero(np.concatenate(([True], eg[1:] != eg[:-1])))
    d = np.diff(np.append(first, eg.size))
    event_group = np.repeat(np.arange(first.size), d)
    if ties == "efron":
        position = np.arange(eg.size) - np.repeat(first, d)
        frac = position / np.repeat(d, d).astype(np.float64)
    else:
        frac = np.zeros(eg.size)
    zt_event = np.ascontiguousarray(zt[:, event_rows])
    return Stratum(
        rows=rows,
        zt=zt,
        event_rows=event_rows,
        block_start=time_start[eg[first]],
        event_group=event_group,
        event_group_first=first,
        tied=d.astype(np.float64),
        frac=frac,
        zt_event=zt_event,
        z_event_sum=zt_event.sum(axis=1),
        efron=bool(np.any(frac > 0.0)),
    )


def reverse_cumsum(a: FloatArray, axis: int = 0) -> FloatArray:
    """Sums from each position to the end along ``axis``: risk-set sums from block sums."""
    flipped = np.flip(a, axis=axis)
    return np.flip(np.cumsum(flipped, axis=axis), axis=axis)


def stratum_derivatives(
    s: Stratum, beta: FloatArray, work: FloatArray
) -> tuple[float, FloatArray, FloatArray]:
    """Log partial likelihood, score and information contributed by one stratum.

    Only ``p x (distinct event times)`` arrays are formed besides one ``p x n`` scratch
    buffer ``work`` (reused across iterations): with per-event scalars ``1/phi_l`` the sums
    over events of the risk-set means and their outer products reduce to sums over times.
    """
    eta = beta @ s.zt
    shift = float(eta.max())
    w = np.exp(eta - shift)  # the shift cancels in every ratio
    wz = np.multiply(s.zt, w, out=work)
    r0 = reverse_cumsum(np.add.reduceat(w, s.block_start))
    r1 = reverse_cumsum(np.add.reduceat(wz, s.block_start, axis=1), axis=1)
    g, f, ev, first = s.event_group, s.frac, s.event_rows, s.event_group_first
    n_groups = first.size
    w_ev = w[ev]
    phi = r0[g]
    if s.efron:
        d0 = np.add.reduceat(w_ev, first)
        d1 = np.add.reduceat(s.zt_event * w_ev, first, axis=1)
        phi = phi - f * d0[g]
    with np.errstate(divide="ignore", invalid="ignore"):
        loglik = float(eta[ev].sum() - shift * ev.size - np.log(phi).sum())
        inv_phi = 1.0 / phi
        c1 = np.bincount(g, weights=inv_phi, minlength=n_groups)
        score = s.z_event_sum - r1 @ c1
        mean_outer = (r1 * np.bincount(g, weights=inv_phi * inv_phi, minlength=n_groups)) @ r1.T
    marks = np.zeros(w.size)
    marks[s.block_start] = c1
    weight = w * np.cumsum(marks)
    if s.efron:
        f_inv = f * inv_phi
        c2 = np.bincount(g, weights=f_inv, minlength=n_groups)
        score += d1 @ c2
        cross = (r1 * np.bincount(g, weights=f_inv * inv_phi, minlength=n_groups)) @ d1.T
        tied = (d1 * np.bincount(g, weights=f_inv * f_inv, minlength=n_groups)) @ d1.T
        mean_outer += tied - cross - cross.T
        weight[ev] -= w_ev * c2[g]
    information = np.multiply(s.zt, weight, out=work) @ s.zt.T - mean_outer
    return loglik, score, information


@dataclass(frozen=True)
class RiskSets:
    """Per-event quantities at one ``beta``: weights, Efron denominators and risk-set means."""

    eta: FloatArray
    shift: float
    w: FloatArray  # exp(eta - shift) per row
    phi: FloatArray  # per event: R0 - f D0
    abar: FloatArray  # per event: (R1 - f D1) / phi, n_events x p


def risk_sets(s: Stratum, beta: FloatArray) -> RiskSets:
    """Per-event risk-set means (``n_events x p``), for residuals and the Firth penalty."""
    eta = beta @ s.zt
    shift = float(eta.max())
    w = np.exp(eta - shift)
    wz = s.zt * w
    r0 = reverse_cumsum(np.add.reduceat(w, s.block_start))
    r1 = reverse_cumsum(np.add.reduceat(wz, s.block_start, axis=1), axis=1).T
    w_ev = w[s.event_rows]
    d0 = np.add.reduceat(w_ev, s.event_group_first)
    d1 = np.add.reduceat(s.zt_event * w_ev, s.event_group_first, axis=1).T
    g, f = s.event_group, s.frac
    phi = r0[g] - f * d0[g]
    with np.errstate(divide="ignore", invalid="ignore"):
        abar = (r1[g] - f[:, None] * d1[g]) / phi[:, None]
    return RiskSets(eta=eta, shift=shift, w=w, phi=phi, abar=abar)


def stratum_score_residuals(s: Stratum, beta: FloatArray) -> FloatArray:
    """Score residuals of the stratum's rows, in sorted order (R ``residuals(fit, "score")``).

    Row ``i`` gets ``delta_i (z_i - mean of the abar of its tied events)`` minus
    ``w_i sum_l c_il (z_i - abar_l) / phi_l`` over the event terms ``l`` whose risk set holds
    ``i``, with ``c_il = 1 - l/d`` when ``i`` is one of the tied events (Efron) and 1 otherwise.
    They sum to the score.
    """
    r = risk_sets(s, beta)
    g, ev, first, z = s.event_group, s.event_rows, s.event_group_first, s.z
    inv_phi = 1.0 / r.phi
    f_inv_phi = s.frac * inv_phi
    n_groups = first.size
    h1 = np.bincount(g, weights=inv_phi, minlength=n_groups)
    h2 = np.add.reduceat(r.abar * inv_phi[:, None], first, axis=0)
    c2 = np.bincount(g, weights=f_inv_phi, minlength=n_groups)
    c2v = np.add.reduceat(r.abar * f_inv_phi[:, None], first, axis=0)
    tied_mean = np.add.reduceat(r.abar, first, axis=0) / s.tied[:, None]
    marks = np.zeros(r.w.size)
    marks[s.block_start] = h1
    marks2 = np.zeros(z.shape)
    marks2[s.block_start] = h2
    resid = -r.w[:, None] * (z * np.cumsum(marks)[:, None] - np.cumsum(marks2, axis=0))
    resid[ev] += z[ev] - tied_mean[g] + r.w[ev, None] * (z[ev] * c2[g, None] - c2v[g])
    return resid


class PartialLikelihood:
    """The partial likelihood summed over strata, in standardized covariates."""

    def __init__(self, strata: list[Stratum], p: int, n: int) -> None:
        self.strata = strata
        self.p = p
        self.n = n
        self._work = [np.empty(s.zt.shape) for s in strata]  # scratch, reused every call

    def __call__(self, beta: FloatArray) -> tuple[float, FloatArray, FloatArray]:
        loglik = 0.0
        score = np.zeros(self.p)
        information = np.zeros((self.p, self.p))
        for s, work in zip(self.strata, self._work, strict=True):
            ll, u, i = stratum_derivatives(s, beta, work)
            loglik += ll
            score += u
            information += i
        return loglik, score, information

    def score_residuals(self, beta: FloatArray) -> FloatArray:
        """Score residuals per original row (zero for rows in no risk set)."""
        resid = np.zeros((self.n, self.p))
        for s in self.strata:
            resid[s.rows] = stratum_score_residuals(s, beta)
        return resid


def _as_float(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnalysisError(f"{name} must be numeric: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing or non-finite values; remove them first")
    return arr


def _validate(
    time: npt.ArrayLike, event: npt.ArrayLike, x: npt.ArrayLike
) -> tuple[FloatArray, BoolArray, FloatArray]:
    t = _as_float(time, "time")
    e = _as_float(event, "event")
    xa = _as_float(x, "X")
    if xa.ndim == 1:
        xa = xa[:, None]
    if t.ndim != 1 or e.ndim != 1 or xa.ndim != 2:
        raise AnalysisError("time and event must be one-dimensional and X at most two-dimensional")
    if not t.size == e.size == xa.shape[0]:
        raise AnalysisError(
            f"mismatched lengths: time {t.size}, event {e.size}, X has {xa.shape[0]} rows"
        )
    if xa.shape[1] == 0:
        raise AnalysisError("X has no columns; a Cox model needs at least one covariate")
    if np.any(t < 0):
        raise AnalysisError("time contains negative values; times must be >= 0")
    if not np.all((e == 0.0) | (e == 1.0)):
        raise AnalysisError("event must contain only 0 (censored) and 1 (event)")
    if not np.any(e == 1.0):
        raise AnalysisError("there are no events; the Cox model cannot be fitted")
    return t, e == 1.0, xa


def label_codes(values: npt.ArrayLike | None, n: int, name: str) -> IntpArray | None:
    """Integer codes ``0..k-1`` of a label per row, or None when not given."""
    if values is None:
        return None
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size != n:
        raise AnalysisError(f"{name} must be one-dimensional with {n} values, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise AnalysisError(f"{name} contains missing values; remove them first")
    if arr.dtype.kind == "O" and any(v is None or v != v for v in arr.tolist()):
        raise AnalysisError(f"{name} contains missing values; remove them first")
    return np.unique(arr, return_inverse=True)[1].astype(np.intp).reshape(-1)


def _standardize(zt: FloatArray, names: tuple[str, ...]) -> FloatArray:
    """Centre and scale the rows of ``zt`` (``p x n``) in place; return the scales."""
    zt -= zt.mean(axis=1)[:, None]
    scale: FloatArray = np.sqrt(np.einsum("ij,ij->i", zt, zt) / zt.shape[1])
    flat = [names[j] for j in range(zt.shape[0]) if not scale[j] > 0.0]
    if flat:
        raise AnalysisError(f"covariate(s) with no variation cannot be estimated: {flat}")
    zt /= scale[:, None]
    correlation = (zt @ zt.T) / zt.shape[1]
    if np.linalg.eigvalsh(correlation)[0] < 1e-10:
        raise AnalysisError(f"the covariates {list(names)} are collinear; drop a redundant one")
    return scale


@dataclass(frozen=True)
class CoxDesign:
    """Validated data in standardized covariates, split into indexed strata."""

    names: tuple[str, ...]
    scale: FloatArray
    event: BoolArray
    strata: list[Stratum]
    n: int
    p: int


def cox_design(
    time: npt.ArrayLike,
    event: npt.ArrayLike,
    x: npt.ArrayLike,
    ties: str,
    strata: npt.ArrayLike | None,
    alpha: float,
    names: Sequence[str] | None,
) -> CoxDesign:
    """Validate the inputs and build the per-stratum index structures (one sort)."""
    if ties not in ("efron", "breslow"):
        raise AnalysisError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"alpha must lie strictly between 0 and 1, got {alpha}")
    t, e, xa = _validate(time, event, x)
    n, p = xa.shape
    labels = tuple(names) if names is not None else tuple(f"x{j + 1}" for j in range(p))
    if len(labels) != p:
        raise AnalysisError(f"names has {len(labels)} entries but X has {p} columns")
    codes = label_codes(strata, n, "strata")
    order = np.argsort(t, kind="stable") if codes is None else np.lexsort((t, codes))
    zt = np.empty((p, n))  # p x n, sorted: one gather per covariate, then views
    for j in range(p):
        np.take(xa[:, j], order, out=zt[j])
    scale = _standardize(zt, labels)
    ts, es = t[order], e[order]
    bounds = [0, n] if codes is None else [0, *(np.flatnonzero(np.diff(codes[order])) + 1), n]
    parts = [
        index_stratum(order[lo:hi], zt[:, lo:hi], ts[lo:hi], es[lo:hi], ties)
        for lo, hi in itertools.pairwise(bounds)
        if np.any(es[lo:hi])
    ]
    return CoxDesign(names=labels, scale=scale, event=e, strata=parts, n=n, p=p)
