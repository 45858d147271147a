"""Published STALWART figures set beside a run's own: the "published vs this run" table.

The published values are read from ``protocol/studies/<study>.published.toml`` and used only for
this labelled comparison; they never feed the simulation or the analysis.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["ComparisonRow", "published_comparison"]


@dataclass(frozen=True)
class ComparisonRow:
    """One published figure and the same quantity from this run."""

    quantity: str
    published: str
    this_run: str
    source: str


def _p(p: float | None) -> str:
    if p is None:
        return "NA"
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def _this_run(key: str, results: dict[str, Any], completed: dict[str, int], arms: list[str]) -> str:
    if key == "randomized_total":
        return str(results["randomized"]["total"])
    if key == "randomized_by_arm":
        return " / ".join(str(results["randomized"]["by_arm"].get(a, 0)) for a in arms)
    if key == "completed_by_arm":
        return " / ".join(str(completed.get(a, 0)) for a in arms)
    if key.startswith("cd4_diff_"):
        arm = key.removeprefix("cd4_diff_")
        row = next(
            (r for r in results["primary"] if r["arm"] == arm and r["method"] == "ancova"), None
        )
        if row is None:
            return "NA"
        return (
            f"{row['difference']:+.0f} ({row['ci_low']:+.0f} to {row['ci_high']:+.0f}), "
            f"{_p(row['p_value'])} [ANCOVA]"
        )
    pooled = next(
        (r for r in results["time_to_event"] if "+" in r["arm"] and r["method"] == "cox_efron"),
        None,
    )
    if pooled is None:
        return "NA"
    if key == "events":
        return f"{pooled['events'][pooled['arm']]} / {pooled['events'][pooled['control']]}"
    if pooled["hazard_ratio"] is None or pooled["ci_low"] is None:
        return "not estimable (" + str(pooled.get("note", "no events")) + ")"
    logrank = next(
        (
            r
            for r in results["time_to_event"]
            if r["arm"] == pooled["arm"] and r["method"] == "logrank"
        ),
        None,
    )
    text = (
        f"{pooled['hazard_ratio']:.2f} ({pooled['ci_low']:.2f}-{pooled['ci_high']:.2f}), "
        f"Wald {_p(pooled['p_value'])}"
    )
    if logrank is not None:
        text += f", log-rank {_p(logrank['p_value'])}"
    return text


def published_comparison(
    study_id: str, results: dict[str, Any], completed: dict[str, int], arms: list[str]
) -> list[ComparisonRow]:
    """Each published figure of the study beside this run's; empty if none are on file."""
    name = f"{study_id.lower()}.published.toml"
    path = resources.files("stalwart.protocol") / "studies" / name
    if not path.is_file():
        return []
    figures = tomllib.loads(path.read_text(encoding="utf-8"))["figures"]
    return [
        ComparisonRow(
            f["quantity"],
            f["published"],
            _this_run(f["key"], results, completed, arms),
            f["source"],
        )
        for f in figures
    ]
