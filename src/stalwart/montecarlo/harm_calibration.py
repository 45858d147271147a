"""The DSMB harm boundary calibrated by simulation under "no excess", so its level is nominal.

Why: the harm rule is one-sided on the pooled log-rank ``z = (O - E) / sqrt(V)`` of the IL-2 arms
against no therapy. STALWART expects a handful of opportunistic events or deaths (about 3 at the
parameter file's values, about 10 over the posterior, fewer at the interim looks), allocated
2:1. With ``d`` events and no excess each event falls in the treated arms with probability about
2/3, so ``O - E`` moves by ``+1/3`` or ``-2/3``: the null distribution of ``z`` is discrete and
skewed to the left, its upper tail thinner than the normal one (all ``d`` events treated gives
only ``z = sqrt(d / 2)``: 2.01 needs 8 of 8). The Lan-DeMets boundary (normal theory) therefore
crossed with probability 0.0121 at a nominal 0.025 (20,000 replicates over the posterior), and
never at the parameter file's values: a boundary that cannot fire is no safety rule. An exact
conditional test does not help: given ``d`` its size is the largest binomial tail at or below
the level, just as conservative.

What: the boundary keeps the log-rank z and the alpha-spending function, and sets its z values
by simulation. ``replicates`` trials of the study's scenario with no IL-2 excess hazard
(``il2_event_hazard_ratio = 1``, everything else the scenario's, an independent seed) give each
look's z; :func:`calibrate` takes, look by look, the lowest boundary whose cumulative crossing
frequency among those trials does not exceed the spending function's cumulative alpha (alpha
unused at an early look, for want of events, passes to the next, as the cumulative target
implies). Unconditionally on the number of events the crossing probability is then the nominal
one, up to one atom of the discrete z and the Monte Carlo error of the calibration. The boundary
depends on the design's expected events, so each parameter mode calibrates its own: the fixed
values, and with ``--uncertainty posterior`` the posterior (each calibration stream at its
draw). A look where no z value can meet its budget has the boundary infinity (``null`` in
oc.json): nothing crosses there.

Measured (``stalwart simulate --replicates 20000 --seed 20 --harm none --uncertainty
posterior``): crossing 0.0244 at the parameter file's values (MC SE 0.0011; boundary z 1.44,
1.44, 1.48: about 1, 2 and 3 events expected at the looks) and 0.0245 over the posterior
(between-stream MC SE 0.0013; z 1.95, 1.94, 1.89: about 3, 6 and 10 events), nominal 0.025;
the normal-theory boundary is 2.96, 2.36, 2.01. The price of an unconditional level on so few
events is a boundary that, at the file's low event rate, flags 4 or 5 events all in the IL-2
arms: a DSMB should read a crossing with the event counts beside it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.analysis.kernels.groupseq import alpha_spending, group_sequential_bounds
from stalwart.montecarlo.engine import Columns
from stalwart.montecarlo.scenarios import LookPlan

__all__ = [
    "NO_EXCESS",
    "calibrate",
    "calibration_seed",
    "calibration_summary",
    "harm_z",
    "with_boundary",
]

FloatArray = npt.NDArray[np.float64]

NO_EXCESS: dict[str, Any] = {"il2_event_hazard_ratio": 1.0}
"""The override giving the calibration scenario: IL-2 does not change the event hazard."""

_SEED_TAG = 0x4841524D  # "HARM": the calibration's seed is independent of the study's


def calibration_seed(seed: int) -> int:
    """The calibration run's seed: a function of the study's, and independent of it."""
    return int(np.random.SeedSequence([seed, _SEED_TAG]).generate_state(1)[0])


def harm_z(columns: Columns, k_looks: int) -> FloatArray:
    """Each replicate's log-rank z at each look, shape ``(replicates, looks)``."""
    return np.column_stack([columns[f"gs|harm_z|{k}"] for k in range(1, k_looks + 1)])


def calibrate(z: FloatArray, cumulative_alpha: npt.ArrayLike) -> tuple[float, ...]:
    """Per-look z boundaries whose cumulative crossing frequency in ``z`` is at most the target.

    ``z`` is ``(replicates, looks)`` (NaN: no event, never crosses). At look ``k`` the
    boundary is the midpoint between the lowest z value that keeps the cumulative share of
    replicates crossed by look ``k`` at or below ``cumulative_alpha[k]`` and the next lower
    value (``inf`` where not even the highest fits).
    """
    target = np.asarray(cumulative_alpha, dtype=np.float64)
    r, k_looks = z.shape
    if target.shape != (k_looks,):
        raise ValueError(f"cumulative_alpha needs {k_looks} values, got {target.shape}")
    crossed = np.zeros(r, dtype=bool)
    out: list[float] = []
    for k in range(k_looks):
        budget = math.floor(target[k] * r + 1e-9) - int(crossed.sum())
        column = z[:, k]
        values = np.sort(column[~crossed & np.isfinite(column)])[::-1]
        boundary = math.inf
        if budget > 0 and values.size:
            distinct, first = np.unique(-values, return_index=True)  # descending z, first index
            counts = np.append(first[1:], values.size)  # replicates with z >= each value
            fits = np.nonzero(counts <= budget)[0]
            if fits.size:
                i = int(fits[-1])
                low = -distinct[i]
                below = -distinct[i + 1] if i + 1 < distinct.size else low - 1.0
                boundary = float((low + below) / 2.0)
        out.append(boundary)
        with np.errstate(invalid="ignore"):
            crossed |= column >= boundary
    return tuple(out)


def with_boundary(looks: LookPlan, z: FloatArray) -> LookPlan:
    """``looks`` with its harm boundary calibrated on the no-excess ``z`` (or as it is for a
    normal-theory boundary)."""
    if looks.harm_boundary != "calibrated":
        return looks
    rates = tuple(float(t) for t in looks.information_rates)
    spent = alpha_spending(rates, float(looks.harm_alpha), sided=1, spending=looks.harm_spending)  # type: ignore[arg-type]
    return dataclasses.replace(looks, harm_critical_z=calibrate(z, spent))


def calibration_summary(looks: LookPlan, z: FloatArray, seed: int) -> dict[str, Any]:
    """What oc.json says about a calibrated boundary: values, their normal-theory counterparts,
    the cumulative crossing in the calibration run against the spending target."""
    rates = tuple(float(t) for t in looks.information_rates)
    normal = group_sequential_bounds(
        rates,
        float(looks.harm_alpha),
        sided=1,
        spending=looks.harm_spending,  # type: ignore[arg-type]
    )
    assert looks.harm_critical_z is not None
    bounds = np.asarray(looks.harm_critical_z)
    crossed = np.zeros(z.shape[0], dtype=bool)
    cumulative = []
    for k in range(z.shape[1]):
        with np.errstate(invalid="ignore"):
            crossed |= z[:, k] >= bounds[k]
        cumulative.append(float(crossed.mean()))
    return {
        "method": "simulation under no IL-2 excess hazard (il2_event_hazard_ratio = 1), "
        "lowest boundary per look whose cumulative crossing <= the spending target",
        "replicates": int(z.shape[0]),
        "seed": seed,
        "harm_critical_z": bounds.tolist(),
        "normal_theory_critical_z": normal.critical_values.tolist(),
        "target_cumulative_alpha": normal.alpha_spent.tolist(),
        "calibration_cumulative_crossing": cumulative,
        "share_with_an_event": [float(np.mean(np.isfinite(z[:, k]))) for k in range(z.shape[1])],
    }
