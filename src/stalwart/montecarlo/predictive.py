"""The model's 95% predictive interval of each published STALWART figure, from the simulator.

Each replicate is a whole STALWART (the protocol's design: 267 randomized by its allocation
rules) simulated by the vectorized model at a draw of the shipped posterior sample (``draws``
rows chosen at random by the seed, ``per_draw`` trials at each, from the start of their own
random stream) and analysed by the plan: the
week-32 CD4 ANCOVA differences, the participants with an opportunistic event or death per arm,
and those completing the main study. The 2.5%, 50% and 97.5% quantiles over the replicates are
each figure's 95% posterior predictive interval, with parameter uncertainty and the trial's own
sampling variation together; a published figure inside its interval is one the model could have
produced. (:mod:`stalwart.simulate.posterior_checks` gives the same intervals from the
likelihood's expectations with binomial and normal noise; these are the simulator's own.)

The intervals are computed once and shipped (``simulate/posterior_report/predictive.json``,
read by :func:`shipped_predictive`) so that ``stalwart demo`` prints them at no cost;
``python -m stalwart.montecarlo.predictive`` regenerates them (default 400 draws x 5 trials,
seed 20).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from stalwart.analysis.comparisons import plan_comparisons
from stalwart.errors import ConfigurationError
from stalwart.jsonable import jsonable
from stalwart.montecarlo.assurance import posterior_draws
from stalwart.montecarlo.engine import TrialSpec, analyse
from stalwart.protocol.load import load_protocol
from stalwart.simulate.equations import FloatArray
from stalwart.simulate.parameters import load_parameters
from stalwart.simulate.posterior import default_posterior_path
from stalwart.simulate.vectorized import STREAM_REPLICATES

__all__ = ["PUBLISHED", "default_predictive_path", "main", "predictive", "shipped_predictive"]

PUBLISHED: dict[str, float] = {
    "randomized NOTHER": 91,
    "randomized IL2": 89,
    "randomized IL2ART": 87,
    "CD4 difference IL2": 134,
    "CD4 difference IL2ART": 133,
    "events IL-2 pooled": 12,
    "events NOTHER": 1,
    "completed NOTHER": 83,
    "completed IL2": 78,
    "completed IL2ART": 74,
}
"""STALWART's published figures (stalwart.published.toml, stalwart-paper.md): randomized and
completed per arm [REGISTRY], week-32 CD4 differences and events [PAPER]. The 267 randomized
is the design's sample size, not a prediction."""


def default_predictive_path() -> Path:
    """The shipped intervals (``simulate/posterior_report/predictive.json``)."""
    return Path(str(resources.files("stalwart.simulate") / "posterior_report" / "predictive.json"))


def _replicate_figures(spec: TrialSpec, index: int, n: int) -> dict[str, FloatArray]:
    """``n`` trials of the spec (at one posterior draw): each published figure per trial."""
    simulator = spec.simulator()
    data = simulator.simulate(n, spec.seed, index * STREAM_REPLICATES)
    protocol = simulator.protocol
    columns = analyse(data, protocol)
    out: dict[str, FloatArray] = {}
    for arm, code in enumerate(data.arms):
        mine = data.arm == arm
        out[f"randomized {code}"] = mine.sum(axis=1).astype(float)
        out[f"completed {code}"] = (mine & data.completed).sum(axis=1).astype(float)
    for comparison in plan_comparisons(protocol):
        if comparison.kind == "primary" and len(comparison.treated) == 1:
            key = f"CD4 difference {comparison.treated[0]}"
            out[key] = np.asarray(columns[f"{comparison.key('ancova')}|difference"], float)
        elif comparison.kind == "time_to_event" and len(comparison.treated) > 1:
            prefix = comparison.key()
            out["events IL-2 pooled"] = np.asarray(columns[f"{prefix}|events_treated"], float)
            out[f"events {comparison.control}"] = np.asarray(
                columns[f"{prefix}|events_control"], float
            )
    return out


def predictive(draws: int = 400, per_draw: int = 5, seed: int = 20) -> dict[str, Any]:
    """The 95% predictive interval of each published figure over ``draws x per_draw``
    simulated trials, with what they were computed from.

    Raises
    ------
    ConfigurationError
        ``draws`` or ``per_draw`` below 1 (or ``per_draw`` above a stream), or a negative seed.
    """
    if not (draws >= 1 and 1 <= per_draw <= STREAM_REPLICATES and seed >= 0):
        raise ConfigurationError(
            f"draws >= 1, per_draw from 1 to {STREAM_REPLICATES} and seed >= 0, got "
            f"{draws}, {per_draw}, {seed}"
        )
    loaded = load_protocol()
    params = load_parameters()
    sample = posterior_draws("posterior", loaded.protocol, params)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x50524544]))
    rows = rng.choice(len(sample), size=min(draws, len(sample)), replace=False)
    base = TrialSpec(loaded.protocol, params, seed, {}, fidelity="outcomes")
    parts = [
        _replicate_figures(replace(base, overrides=dict(sample[row])), i, per_draw)
        for i, row in enumerate(rows)
    ]
    values = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    intervals: dict[str, dict[str, Any]] = {}
    for name, published in PUBLISHED.items():
        x = values[name][np.isfinite(values[name])]
        low, mid, high = np.quantile(x, [0.025, 0.5, 0.975])
        intervals[name] = {
            "published": published,
            "median": float(mid),
            "q025": float(low),
            "q975": float(high),
            "inside": bool(low <= published <= high),
            "replicates": int(x.size),
        }
    path = default_posterior_path()
    return {
        "settings": {
            "draws": int(rows.size),
            "per_draw": per_draw,
            "seed": seed,
            "posterior_sample": path.name,
            "posterior_sample_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "parameters_fingerprint": params.fingerprint(),
            "protocol_sha256": loaded.sha256,
            "sample_size": loaded.protocol.study.sample_size,
        },
        "intervals": intervals,
    }


def shipped_predictive() -> dict[str, Any]:
    """The shipped intervals (see the module)."""
    path = default_predictive_path()
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read {path}: regenerate it with python -m stalwart.montecarlo.predictive"
        ) from exc
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """Compute the intervals and write them (``--out``, default the shipped file)."""
    parser = argparse.ArgumentParser(prog="python -m stalwart.montecarlo.predictive")
    parser.add_argument("--out", type=Path, default=default_predictive_path())
    parser.add_argument("--draws", type=int, default=400)
    parser.add_argument("--per-draw", type=int, default=5)
    parser.add_argument("--seed", type=int, default=20)
    args = parser.parse_args(argv)
    report = predictive(args.draws, args.per_draw, args.seed)
    text = json.dumps(jsonable(report), indent=2) + "\n"
    args.out.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
