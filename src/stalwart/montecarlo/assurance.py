"""Assurance: the probability of success integrated over the posterior of the model's parameters.

``stalwart simulate --uncertainty posterior`` runs each job twice: at the parameter file's fixed
values (power) and with each stream of replicates at a draw of the packaged posterior sample
(:mod:`~stalwart.simulate.posterior`), which gives the assurance (O'Hagan, Stevens & Campbell,
Pharm Stat 2005). The streams sharing a draw make its replicates correlated, so the Monte Carlo
standard error of an assurance is the between-stream one: the standard deviation of the
streams' success rates over the square root of their number.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.analysis.comparisons import comparison_key
from stalwart.errors import ConfigurationError
from stalwart.montecarlo.engine import Columns
from stalwart.montecarlo.sequential import HARM
from stalwart.protocol.schema import Protocol
from stalwart.simulate.parameters import ModelParameters
from stalwart.simulate.posterior import default_posterior_path, load_posterior_sample
from stalwart.simulate.vectorized import STREAM_REPLICATES, apply_scenario

__all__ = ["UNCERTAINTIES", "add_assurance", "posterior_draws", "uncertainty_provenance"]

UNCERTAINTIES = ("fixed", "posterior")
"""``--uncertainty``: the parameter file's values only, or also the posterior sample's."""

Draws = tuple[tuple[tuple[str, float], ...], ...]


def posterior_draws(uncertainty: str, protocol: Protocol, params: ModelParameters) -> Draws:
    """The posterior sample as scenario overrides (empty for ``fixed``), checked on one draw."""
    if uncertainty not in UNCERTAINTIES:
        raise ConfigurationError(
            f"--uncertainty must be one of {', '.join(UNCERTAINTIES)}, got {uncertainty!r}"
        )
    if uncertainty == "fixed":
        return ()
    names, sample = load_posterior_sample()
    draws = tuple(tuple(zip(names, map(float, row), strict=True)) for row in sample)
    apply_scenario(protocol, params, dict(draws[0]))
    return draws


def uncertainty_provenance(n_draws: int) -> dict[str, Any]:
    """What oc.json says about the posterior sample used."""
    path = default_posterior_path()

    return {
        "mode": "posterior",
        "sample": path.name,
        "sample_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "draws": n_draws,
        "unit": f"one draw per stream of {STREAM_REPLICATES} replicates, chosen by seed and stream",
    }


def _stream_se(hits: npt.NDArray[np.bool_]) -> float:
    streams = -(-hits.size // STREAM_REPLICATES)
    if streams < 2:
        return math.nan
    means = [
        float(hits[k * STREAM_REPLICATES : (k + 1) * STREAM_REPLICATES].mean())
        for k in range(streams)
    ]
    return float(np.std(means, ddof=1) / math.sqrt(streams))


def add_assurance(
    alternative: dict[str, Any], posterior: dict[str, Any], columns: Columns, alpha: float
) -> None:
    """Put each comparison's assurance (and its between-stream MC SE) beside its power, and the
    harm boundary's crossing probability over the posterior beside the fixed one."""
    rows = {
        (r["endpoint"], r["arm"], r["method"]): r
        for r in [*posterior["primary"], *posterior["time_to_event"]]
    }
    for row in [*alternative["primary"], *alternative["time_to_event"]]:
        match = rows.get((row["endpoint"], row["arm"], row["method"]))
        if match is None:
            continue
        label = f"{row['arm']} vs {row['control']}"
        p = columns[f"{comparison_key(row['endpoint'], label, row['method'])}|p_value"]
        with np.errstate(invalid="ignore"):
            hits = np.isfinite(p) & (p < alpha)
        row["assurance"] = match["power"]
        row["assurance_mc_se"] = _stream_se(hits)
    gs, post_gs = alternative.get("group_sequential"), posterior.get("group_sequential")
    if gs is not None and post_gs is not None:
        crossed = columns["gs|harm_look"] > 0
        harm = gs["harm"]
        harm["crossing"] = float(harm["harm_cumulative"][-1])
        harm["assurance_crossing"] = float(crossed.mean())
        harm["assurance_crossing_mc_se"] = _stream_se(crossed)
        stopped = columns["gs|stop_reason"] == HARM
        gs["trial"]["assurance_stop_harm"] = float(stopped.mean())
