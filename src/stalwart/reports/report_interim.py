"""The interim monitoring display of the closed DSMB report: where the observed statistics stand
against the group-sequential plan's boundaries.

The plan is the design's :data:`~stalwart.montecarlo.scenarios.DEFAULT_LOOKS` (the protocol file
holds none): looks at planned information fractions, Lan-DeMets efficacy boundaries (two-sided at
the analysis plan's alpha) and the DSMB's harm boundary (one-sided, on the safety endpoint's
log-rank statistic). Both are computed by
:func:`~stalwart.analysis.kernels.groupseq.group_sequential_bounds` (checked against rpact), as
the design simulation (:mod:`stalwart.montecarlo.sequential`) uses them; the statistics are put on
the z scale the same way:

* efficacy, each primary ANCOVA comparison: ``z = sign(difference) Phi^-1(1 - p/2)``, at
  information fraction ``t`` = participants analysed for the primary endpoint over the planned
  sample size;
* harm, the first time-to-event comparison: ``z = sign(log HR) sqrt(chi2)`` of the log-rank test
  (positive: more events on the treated arms), at the same ``t``.

The store does not record which looks the DSMB has held, so the boundary shown at this look is
the one a first look at ``t`` spends: ``Phi^-1(1 - alpha(t)/2)`` (efficacy), ``Phi^-1(1 -
alpha_harm(t))`` (harm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from stalwart.analysis.kernels._distributions import norm_isf
from stalwart.analysis.kernels.groupseq import alpha_spending, group_sequential_bounds
from stalwart.analysis.results import PlanResult
from stalwart.montecarlo.scenarios import DEFAULT_LOOKS, LookPlan
from stalwart.protocol.schema import Protocol
from stalwart.reports.figures.render import EmbeddedFigure, plain_label, render_figure
from stalwart.reports.report_tables import Arms, Row, Table, fmt_num

__all__ = ["InterimSection", "interim_section"]


@dataclass(frozen=True)
class InterimSection:
    """The monitoring figure and its table; ``figure`` None with ``reason`` when the data cannot
    support a look yet."""

    figure: EmbeddedFigure | None
    table: Table | None
    reason: str
    information: float


def _first_look_bound(t: float, alpha: float, sided: int, spending: str) -> float:
    spent = float(alpha_spending(np.array([t]), alpha, sided=sided, spending=spending)[0])  # type: ignore[arg-type]
    return float(norm_isf(spent / sided)) if spent > 0 else math.inf


def interim_section(
    protocol: Protocol, plan: PlanResult | None, arms: Arms, looks: LookPlan = DEFAULT_LOOKS
) -> InterimSection:
    """The observed z of each primary comparison and of the harm test against the boundaries."""
    target = protocol.study.sample_size
    primary = [r for r in (plan.primary if plan else ()) if r.method == "ancova"]
    analysed = max((sum(r.n.values()) for r in primary), default=0)
    information = 0.0
    if plan is not None and primary:
        by_arm = {arm: 0 for arm in arms.codes}
        for r in primary:
            by_arm.update({k: int(v) for k, v in r.n.items()})
        analysed = sum(by_arm.values())
        information = min(analysed / target, 1.0)
    if plan is None or not primary or information <= 0:
        return InterimSection(
            None,
            None,
            "No primary-endpoint comparison is estimable yet: the interim monitoring display "
            "needs participants with a value at the primary visit in every arm.",
            information,
        )
    alpha = protocol.analysis.alpha
    rates = tuple(float(t) for t in looks.information_rates)
    efficacy = group_sequential_bounds(rates, alpha, sided=2, spending=looks.spending)  # type: ignore[arg-type]
    harm = group_sequential_bounds(rates, looks.harm_alpha, sided=1, spending=looks.harm_spending)  # type: ignore[arg-type]
    c_now = _first_look_bound(information, alpha, 2, looks.spending)
    h_now = _first_look_bound(information, looks.harm_alpha, 1, looks.harm_spending)
    rows: list[Row] = []
    points: list[tuple[str, float]] = []
    for r in primary:
        if r.p_value is None or r.difference is None:
            continue
        z = math.copysign(float(norm_isf(r.p_value / 2)), r.difference)
        label = f"{arms.label(r.arm)} vs {arms.label(r.control)}"
        points.append((label, z))
        crossed = "yes" if abs(z) >= c_now else "no"
        rows.append(Row(f"Efficacy: {label}", (fmt_num(z, 2), fmt_num(c_now, 2), crossed)))
    logrank = [r for r in (plan.time_to_event if plan else ()) if r.method == "logrank"]
    harm_z: tuple[str, float] | None = None
    chi2 = logrank[0].chi2 if logrank else None
    if logrank and chi2 is not None:
        record = logrank[0]
        cox = [
            r
            for r in plan.time_to_event
            if r.method.startswith("cox") and (r.arm, r.control) == (record.arm, record.control)
        ]
        sign = 1.0 if cox and (cox[0].hazard_ratio or 1.0) >= 1.0 else -1.0
        harm_z = (
            f"{arms.label(record.arm)} vs {arms.label(record.control)}",
            sign * math.sqrt(max(float(chi2), 0.0)),
        )
        crossed = "yes" if harm_z[1] >= h_now else "no"
        rows.append(Row(f"Harm: {harm_z[0]}", (fmt_num(harm_z[1], 2), fmt_num(h_now, 2), crossed)))
    fig, (left, right) = plt.subplots(1, 2, figsize=(7.0, 3.8), layout="constrained")
    try:
        t = np.asarray(efficacy.information_rates)
        left.plot(t, efficacy.critical_values, "k-o", markersize=4, label="Efficacy boundary")
        left.plot(t, -efficacy.critical_values, "k-o", markersize=4)
        for i, (label, z) in enumerate(points):
            left.plot(
                [information],
                [z],
                marker="s^Dv"[i % 4],
                linestyle="none",
                markersize=7,
                label=plain_label(label),
            )
        left.axhline(0, color="#888888", linewidth=0.8)
        left.set_title("Efficacy (primary endpoint)", fontsize=9)
        right.plot(
            t, harm.critical_values, "-o", color="#9b1c1c", markersize=4, label="Harm boundary"
        )
        if harm_z is not None:
            right.plot([information], [harm_z[1]], "s", markersize=7, label=plain_label(harm_z[0]))
        right.axhline(0, color="#888888", linewidth=0.8)
        right.set_title("Harm (time to event, log-rank)", fontsize=9)
        for ax in (left, right):
            ax.set_xlim(0, 1.05)
            ax.set_xlabel("Information fraction", fontsize=8)
            ax.set_ylabel("z", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(color="#dddddd", linewidth=0.6)
            ax.legend(
                fontsize=6.5,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.2),
                frameon=False,
                ncols=1,
            )
        top = max([3.5, *(abs(z) + 0.5 for _, z in points)])
        left.set_ylim(-top, top)
        if harm_z is not None:
            right.set_ylim(min(0.0, harm_z[1] - 0.5), max(3.5, harm_z[1] + 0.5))
        description = "; ".join(f"{label}: z = {z:.2f}" for label, z in points)
        figure = render_figure(
            fig,
            ident="fig-interim",
            title="Interim monitoring: observed z against the group-sequential boundaries",
            description=f"Information fraction {information:.2f}. {description}.",
            fmt="svg",
        )
    finally:
        plt.close(fig)
    looks_text = ", ".join(f"{r:g}" for r in rates)
    names = {"obrien-fleming": "O'Brien-Fleming", "pocock": "Pocock"}
    spending = names.get(looks.spending, looks.spending)
    harm_spending = names.get(looks.harm_spending, looks.harm_spending)
    table = Table(
        id="table-interim",
        caption=f"Interim monitoring at information fraction {information:.2f} "
        f"({analysed} of {target} participants analysed for the primary endpoint)",
        stub="Test",
        columns=("Observed z", "Boundary at this look", "Crossed"),
        rows=tuple(rows),
        note=f"Plan: looks at information fractions {looks_text}; efficacy: Lan-DeMets "
        f"{spending}-type spending, two-sided alpha {alpha:g}; harm: "
        f"{harm_spending}-type spending, one-sided alpha {looks.harm_alpha:g}. "
        "Efficacy z from the ANCOVA p-value with the sign of the difference; harm z from the "
        "log-rank chi-square with the sign of the log hazard ratio (positive: more events on "
        "the treated arms). The boundary at this look is the one a first look at this "
        "information spends (earlier looks are not recorded in the store).",
    )
    return InterimSection(figure, table, "", information)
