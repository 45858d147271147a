"""Kenward-Roger small-sample inference for the MMRM: adjusted covariance of the fixed effects and
the degrees of freedom of a contrast.

Kenward & Roger (1997), as R's ``pbkrtest`` computes it (``vcovAdj``, ``get_Lb_ddf``; the method
``lmerTest`` and SAS ``DDFM=KR`` use), with the covariance parameters ``gamma`` taken linearly, so
that the second derivatives of ``Sigma`` vanish (``R_ij = 0``):

* unstructured: ``gamma`` the distinct elements ``Sigma_ab`` (``a <= b``), ``G_ab = dSigma/dgamma_ab
  = E_ab + E_ba``;
* compound symmetry: ``Sigma = tau2 J + sigma2 I``, ``G = (J, I)`` (lme4's random intercept).

With ``T_i = Sigma_i^-1 X_i`` (subject ``i``'s visits)::

    P_k  = -sum_i T_i' G_k T_i
    Q_kl =  sum_i T_i' G_k Sigma_i^-1 G_l T_i
    IE_kl = sum_i tr(G_k Sigma_i^-1 G_l Sigma_i^-1) - 2 tr(Phi Q_kl) + tr(Phi P_k Phi P_l)
    W = 2 IE^-1                                        (expected information of the REML fit)
    Phi_A = Phi + 2 Phi [sum_kl W_kl (Q_kl - P_k Phi P_l)] Phi

and for a contrast ``l`` (one row), ``v = l Phi l'``, ``g_k = l Phi P_k Phi l'``, ``A = g' W g /
v^2``; the degrees of freedom are pbkrtest's ``4 + 3 / (rho - 1)`` with ``rho = (1 - A)^2 (1 - A/2)
/ ((1 - A)^2 (1 - 2A))`` (which reduces to ``2 / A``), the standard error ``sqrt(l Phi_A l')``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels.mmrm_reml import Grid
from stalwart.errors import AnalysisError

__all__ = ["KenwardRoger", "kenward_roger", "linear_covariance_basis"]

FloatArray = npt.NDArray[np.float64]


def linear_covariance_basis(structure: str, t: int) -> FloatArray:
    """``dSigma/dgamma_k`` of each linear covariance parameter, shape ``(k, t, t)``."""
    if structure == "compound_symmetry":
        return np.stack([np.ones((t, t)), np.eye(t)])
    if structure == "unstructured":
        pairs = [(a, b) for a in range(t) for b in range(a, t)]
        basis = np.zeros((len(pairs), t, t))
        for k, (a, b) in enumerate(pairs):
            basis[k, a, b] = basis[k, b, a] = 1.0
        return basis
    raise AnalysisError(f"Kenward-Roger: unknown covariance structure {structure!r}")


@dataclass(frozen=True)
class KenwardRoger:
    """``coef_cov`` (``Phi``), ``coef_cov_adjusted`` (``Phi_A``), ``p`` (``P_k``, shape ``(k, p,
    p)``) and ``w`` (``W``, ``(k, k)``): what :meth:`contrast` needs."""

    coef_cov: FloatArray
    coef_cov_adjusted: FloatArray
    p: FloatArray
    w: FloatArray

    def contrast(self, lmat: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Standard error (from ``Phi_A``) and Kenward-Roger degrees of freedom of each row of
        ``lmat``."""
        phi = self.coef_cov
        var = np.einsum("vi,ij,vj->v", lmat, phi, lmat)
        left = lmat @ phi  # (v, p)
        g = np.einsum("vi,kij,vj->vk", left, self.p, left)
        a = np.einsum("vk,kl,vl->v", g, self.w, g) / var**2
        # pbkrtest's Lb_ddf with q = 1 (A1 = A2 = a), written out as it does
        b = 0.5 * (a + 6.0 * a)
        gg = (2.0 * a - 5.0 * a) / (3.0 * a)
        denom = 3.0 + 2.0 * (1.0 - gg)
        c1, c2, c3 = gg / denom, (1.0 - gg) / denom, (3.0 - gg) / denom
        rho = (1.0 - a) ** 2 * (1.0 + c1 * b) / ((1.0 - c2 * b) ** 2 * (1.0 - c3 * b))
        df = 4.0 + 3.0 / (rho - 1.0)
        se = np.sqrt(np.einsum("vi,ij,vj->v", lmat, self.coef_cov_adjusted, lmat))
        return se, df


def kenward_roger(
    grid: Grid, covariance: FloatArray, coef_cov: FloatArray, structure: str
) -> KenwardRoger:
    """The Kenward-Roger components of a fit: ``grid`` holds the design on the visit grid (on
    the scale of ``coef_cov``), ``covariance`` the REML estimate of ``Sigma``."""
    t = covariance.shape[0]
    basis = linear_covariance_basis(structure, t)
    k, p = basis.shape[0], grid.x.shape[2]
    p_mats = np.zeros((k, p, p))
    q_mats = np.zeros((k, k, p, p))
    trace = np.zeros((k, k))
    for j, mask in enumerate(grid.masks):
        idx = np.flatnonzero(mask)
        m, n = idx.size, int(grid.counts[j])
        rows = slice(int(grid.starts[j]), int(grid.starts[j]) + n)
        inverse = np.linalg.inv(covariance[np.ix_(idx, idx)])
        tt = np.matmul(inverse, grid.x[rows][:, idx, :]).reshape(n, m * p)  # T_i, flattened
        # sum_i T_i[a, p] T_i[b, q], as (a b) x (p q)
        outer = (tt.T @ tt).reshape(m, p, m, p).transpose(0, 2, 1, 3).reshape(m * m, p * p)
        g = basis[:, idx][:, :, idx]  # (k, m, m)
        p_mats -= (g.reshape(k, m * m) @ outer).reshape(k, p, p)
        h = np.matmul(g, inverse)  # G_k Sigma^-1
        middle = np.matmul(h[:, None], g[None, :]).reshape(k * k, m * m)  # G_k S^-1 G_l
        q_mats += (middle @ outer).reshape(k, k, p, p)
        trace += n * (h.reshape(k, m * m) @ h.transpose(0, 2, 1).reshape(k, m * m).T)
    phi = coef_cov
    phi_p = np.matmul(phi, p_mats)  # Phi P_k
    flat = phi_p.reshape(k, p * p)
    info = (
        trace
        - 2.0 * (q_mats.reshape(k * k, p * p) @ phi.ravel()).reshape(k, k)
        + flat @ phi_p.transpose(0, 2, 1).reshape(k, p * p).T
    )
    try:
        w = 2.0 * np.linalg.inv(info)
    except np.linalg.LinAlgError:
        w = 2.0 * np.linalg.pinv(info)
    pphip = np.matmul(p_mats[:, None], phi_p[None, :])  # P_k Phi P_l
    uu = np.tensordot(w, q_mats - pphip, axes=([0, 1], [0, 1]))
    uu = 0.5 * (uu + uu.T)
    adjusted = phi + 2.0 * phi @ uu @ phi
    return KenwardRoger(phi, 0.5 * (adjusted + adjusted.T), p_mats, w)
