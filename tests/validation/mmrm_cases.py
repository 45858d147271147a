"""Seeded repeated-measures data with known truth for the MMRM validation (long format).

``simulate`` draws subjects in arms ``A`` (control), ``B`` and ``C``, a baseline, and ``visits``
post-baseline values from a multivariate normal with an unstructured covariance (variance rising
over visits, correlation decaying with distance) or compound symmetry; the arm effect grows over
visits. Values go missing at random: each visit with probability ``p_missing``, and after a low
previous value (dropout that depends on observed data only, so MAR).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["simulate"]


def simulate(
    seed: int,
    n_subjects: int,
    visits: int = 5,
    p_missing: float = 0.1,
    structure: str = "unstructured",
    baseline_scale: float = 1.0,
) -> pd.DataFrame:
    """Long data: columns ``id, arm, visit, base, y`` (visit 1..visits)."""
    rng = np.random.default_rng(seed)
    arm = rng.choice(np.array(["A", "B", "C"]), size=n_subjects)
    base = rng.normal(500.0, 100.0, n_subjects)
    t = np.arange(1, visits + 1)
    if structure == "unstructured":
        sd = 60.0 + 10.0 * t
        corr = 0.8 ** np.abs(t[:, None] - t[None, :])
        cov = corr * np.outer(sd, sd)
    else:
        cov = 80.0**2 * (0.5 * np.eye(visits) + 0.5)
    effect = {"A": 0.0, "B": 15.0, "C": 40.0}
    mean = (
        100.0
        + 0.7 * base[:, None]
        + np.array([effect[a] for a in arm])[:, None] * t[None, :] / visits
        + 5.0 * t[None, :]
    )
    y = mean + rng.multivariate_normal(np.zeros(visits), cov, size=n_subjects)
    keep = rng.uniform(size=y.shape) > p_missing
    for j in range(1, visits):
        keep[:, j] &= ~((y[:, j - 1] < np.quantile(y[:, j - 1], 0.1)) & keep[:, j - 1])
    keep[:, 0] |= ~keep.any(axis=1)
    ids, cols = np.nonzero(keep)
    return pd.DataFrame(
        {
            "id": ids + 1,
            "arm": arm[ids],
            "visit": t[cols],
            "base": base[ids] * baseline_scale,
            "y": y[ids, cols],
        }
    )
