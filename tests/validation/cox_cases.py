"""Seeded survival data sets for the Cox and Firth validation suites (known truth and edge cases).

Every generator takes a seed and returns a data frame with ``time``, ``event``, covariates
``x1..xp`` and, where asked, a stratum ``s`` and a cluster ``cl``; the same frame goes to our
kernel and, as CSV, to R.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def simulate(
    seed: int,
    n: int,
    beta: list[float],
    *,
    rounding: float | None = None,
    n_strata: int = 0,
    n_clusters: int = 0,
    censor_max: float = 3.0,
) -> pd.DataFrame:
    """Exponential event times with hazard ``exp(x' beta)`` (x1 binary, the rest normal).

    ``rounding`` coarsens times to a grid (tied times); strata shift the baseline hazard
    (doubling per stratum); clusters share a gamma frailty of variance 0.5.
    """
    rng = np.random.default_rng(seed)
    p = len(beta)
    x = np.column_stack([rng.integers(0, 2, n)] + [rng.normal(size=n) for _ in range(p - 1)])
    hazard = np.exp(x @ np.asarray(beta, dtype=float))
    frame = pd.DataFrame({f"x{j + 1}": x[:, j].astype(float) for j in range(p)})
    if n_strata:
        frame["s"] = rng.integers(0, n_strata, n)
        hazard = hazard * 2.0 ** frame["s"].to_numpy()
    if n_clusters:
        frame["cl"] = rng.integers(0, n_clusters, n)
        frailty = rng.gamma(2.0, 0.5, n_clusters)
        hazard = hazard * frailty[frame["cl"].to_numpy()]
    event_time = rng.exponential(1.0 / hazard)
    censor = rng.uniform(0.0, censor_max, n)
    time = np.minimum(event_time, censor)
    if rounding is not None:
        time = np.ceil(time / rounding) * rounding
    frame.insert(0, "event", (event_time <= censor).astype(int))
    frame.insert(0, "time", time)
    return frame


def stalwart_sparse(seed: int, control_events: int = 1) -> pd.DataFrame:
    """STALWART's sparse comparison: 12 events among 176 on IL-2 (``x1 = 1``) against
    ``control_events`` among 91 on no therapy (``x1 = 0``).

    Follow-up is administrative, uniform over 0.5-2.5 years (the trial stopped early); event
    times are uniform within each subject's follow-up, in days.
    """
    rng = np.random.default_rng(seed)
    arm = np.repeat([1.0, 0.0], [176, 91])
    follow_up = np.round(rng.uniform(0.5, 2.5, arm.size) * 365.25)
    event = np.zeros(arm.size, dtype=int)
    event[rng.choice(176, 12, replace=False)] = 1
    event[176 + rng.choice(91, control_events, replace=False)] = 1
    time = np.where(event == 1, np.ceil(rng.uniform(0.02, 1.0, arm.size) * follow_up), follow_up)
    return pd.DataFrame({"time": time, "event": event, "x1": arm})


def single_event(seed: int, n: int = 40) -> pd.DataFrame:
    """One event, a continuous covariate, and the event's covariate inside the range of its
    risk set, so the maximum likelihood estimate is finite."""
    rng = np.random.default_rng(seed)
    time = np.sort(rng.uniform(0.0, 10.0, n))
    x = rng.normal(size=n)
    event = np.zeros(n, dtype=int)
    event[n // 4] = 1
    x[n // 4] = float(np.median(x[n // 4 :])) + 0.1
    return pd.DataFrame({"time": time, "event": event, "x1": x})
