"""The power-curve figure of a sweep: power of each test against the swept value, and its
assurance (dashed) when the study ran with ``--uncertainty posterior``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

__all__ = ["power_curve_figure"]


def power_curve_figure(curve: dict[str, Any], out: Path) -> tuple[Path, ...]:
    """Draw ``curve`` (oc.json's ``power_curve``) to ``out/power_curve.svg`` and ``.png``."""
    values = curve["values"]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    position = {repr(v): (v if numeric else i) for i, v in enumerate(values)}
    series: dict[str, list[tuple[float, float, float]]] = {}
    for row in curve["rows"]:
        label = f"{row['endpoint']} {row['arm']} vs {row['control']} ({row['method']})"
        series.setdefault(label, []).append(
            (position[repr(row["value"])], row["power"], row["power_mc_se"])
        )
    assured: dict[str, list[tuple[float, float]]] = {}
    for row in curve["rows"]:
        if row.get("assurance") is not None:
            label = f"{row['endpoint']} {row['arm']} vs {row['control']} ({row['method']})"
            assured.setdefault(label, []).append((position[repr(row["value"])], row["assurance"]))
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, points in series.items():
        points.sort()
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        errs = [1.96 * p[2] for p in points]
        line = ax.errorbar(xs, ys, yerr=errs, marker="o", markersize=3, capsize=2, label=label)
        if label in assured:  # assurance: the same test over the posterior, dashed
            pts = sorted(assured[label])
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                linestyle="--",
                marker="s",
                markersize=3,
                color=line.lines[0].get_color(),
                label=f"{label}, assurance",
            )
    ax.axhline(0.8, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(curve["parameter"])
    ax.set_ylabel("power; dashed: assurance (share of replicates with p < alpha)")
    if not numeric:
        ax.set_xticks(range(len(values)), [str(v) for v in values], rotation=20)
    ax.set_title(f"Power by {curve['parameter']} (bars: 95% Monte Carlo interval)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    paths = (out / "power_curve.svg", out / "power_curve.png")
    fig.savefig(paths[0], format="svg", metadata={"Date": None})
    fig.savefig(paths[1], format="png", dpi=120)
    plt.close(fig)
    return paths
