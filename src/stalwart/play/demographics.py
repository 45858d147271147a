"""Self-reported race and ethnicity on the simulated screening forms.

The disease model does not depend on race or ethnicity, so the simulator leaves them at a choice
item's first value; a simulated site instead records what a person reports, drawn from its own
random stream (the other draws, and so the trial's numbers, are the same as without it). The
shares are a [DEFAULT] of ours, not a fact of the study: about ESPRIT's baseline (76% white) for
race, one in ten Hispanic or Latino. A value the protocol's item does not offer is never drawn.
"""

from __future__ import annotations

import numpy as np

from stalwart.protocol.schema import Protocol

__all__ = ["REPORTED_SHARES", "reported_answers"]

REPORTED_SHARES: dict[str, dict[str, float]] = {
    "race": {
        "WHITE": 0.74,
        "BLACK OR AFRICAN AMERICAN": 0.12,
        "ASIAN": 0.08,
        "AMERICAN INDIAN OR ALASKA NATIVE": 0.01,
        "NATIVE HAWAIIAN OR OTHER PACIFIC ISLANDER": 0.01,
        "NOT REPORTED": 0.02,
    },
    "ethnicity": {"HISPANIC OR LATINO": 0.1, "NOT HISPANIC OR LATINO": 0.9},
}
"""Screening item -> reported value -> share (renormalised over the values the item offers)."""


def reported_answers(
    protocol: Protocol, answers: dict[str, object], rng: np.random.Generator
) -> dict[str, object]:
    """``answers`` with each choice item of ``REPORTED_SHARES`` drawn as a person reports it."""
    out = dict(answers)
    for item in protocol.screening_items:
        shares = REPORTED_SHARES.get(item.name)
        if item.type != "choice" or shares is None or not item.choices:
            continue
        offered = [c for c in item.choices if c in shares]
        if not offered:
            continue
        weights = np.array([shares[c] for c in offered])
        out[item.name] = offered[int(rng.choice(len(offered), p=weights / weights.sum()))]
    return out
