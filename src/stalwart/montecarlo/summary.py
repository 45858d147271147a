"""Operating characteristics: per-replicate results of a scenario reduced to the figures of oc.json.

Conventions (stated in oc.json too):

* intervals are the 2.5% and 97.5% quantiles over replicates (``numpy.quantile``, linear);
* power (or type I error under the null) is the share of *all* replicates with ``p < alpha``;
  a replicate whose analysis is not estimable (an arm without values, no events in a group)
  counts as not significant, and the share not estimable is reported beside it;
* the Cox hazard ratio's distribution is over the replicates where it is finite, with the share
  where it is not (no event on a side: those with the largest or smallest ratios, so it is
  biased); ``hazard_ratio_all`` is the Firth-penalized Cox estimate, finite in every replicate
  with an event, summarised over all of them (``covered``: their share);
* Monte Carlo standard error of a proportion ``p`` over ``R`` replicates: ``sqrt(p (1-p) / R)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from stalwart.analysis.comparisons import Comparison
from stalwart.analysis.methods import TIME_TO_EVENT_METHODS
from stalwart.jsonable import finite_or_none
from stalwart.montecarlo.engine import Columns
from stalwart.montecarlo.scenarios import LookPlan
from stalwart.montecarlo.sequential import (
    EFFICACY,
    HARM,
    NO_STOP,
    boundaries,
    harm_critical_values,
)

__all__ = ["distribution", "proportion", "summarize", "type_one_error"]


def distribution(values: npt.ArrayLike) -> dict[str, float | None]:
    """Mean, median and 2.5/97.5% quantiles of the finite values (None when there are none)."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"mean": None, "median": None, "q025": None, "q975": None}
    q025, median, q975 = np.quantile(arr, [0.025, 0.5, 0.975])
    return {
        "mean": finite_or_none(float(arr.mean())),
        "median": finite_or_none(float(median)),
        "q025": finite_or_none(float(q025)),
        "q975": finite_or_none(float(q975)),
    }


def proportion(hits: npt.ArrayLike) -> dict[str, float]:
    """Share of true values and its Monte Carlo standard error."""
    arr = np.asarray(hits, dtype=bool)
    p = float(arr.mean()) if arr.size else math.nan
    return {"estimate": p, "mc_se": math.sqrt(p * (1.0 - p) / arr.size) if arr.size else math.nan}


def summarize(
    columns: Columns,
    comparisons: list[Comparison],
    arms: tuple[str, ...],
    alpha: float,
    looks: LookPlan,
) -> dict[str, Any]:
    """Operating characteristics of one scenario (see the module for the conventions)."""
    replicates = int(next(iter(columns.values())).shape[0])
    by_arm = {a: distribution(columns[f"randomized|{a}"]) for a in arms}
    total = sum(columns[f"randomized|{a}"] for a in arms)
    out: dict[str, Any] = {
        "replicates": replicates,
        "randomized": {"total": distribution(total), "by_arm": by_arm},
        "primary": [],
        "time_to_event": [],
        "events_by_arm": {},
    }
    for comparison in comparisons:
        if comparison.kind == "primary":
            out["primary"].extend(_primary(columns, comparison, alpha))
        else:
            events = f"{comparison.endpoint} events"
            if comparison.endpoint not in out["events_by_arm"]:
                out["events_by_arm"][comparison.endpoint] = {
                    a: distribution(columns[f"{events}|{a}"]) for a in arms
                }
            out["time_to_event"].extend(_time_to_event(columns, comparison, alpha))
    if "gs|stop_look" in columns:
        out["group_sequential"] = _sequential(columns, comparisons, looks, alpha)
    return out


def _power(columns: Columns, key: str, alpha: float) -> dict[str, Any]:
    p = columns[f"{key}|p_value"]
    with np.errstate(invalid="ignore"):
        hits = np.isfinite(p) & (p < alpha)
    share = proportion(hits)
    return {
        "power": share["estimate"],
        "power_mc_se": share["mc_se"],
        "not_estimable": float(1.0 - np.mean(columns[f"{key}|estimable"])),
    }


def _primary(columns: Columns, comparison: Comparison, alpha: float) -> list[dict[str, Any]]:
    prefix = comparison.key()
    rows = []
    for method in comparison.methods:
        key = comparison.key(method)
        rows.append(
            {
                "endpoint": comparison.endpoint,
                "arm": comparison.arm,
                "control": comparison.control,
                "method": method,
                "n_analysed": {
                    "treated": distribution(columns[f"{prefix}|n_treated"]),
                    "control": distribution(columns[f"{prefix}|n_control"]),
                },
                "difference": distribution(columns[f"{key}|difference"]),
                **_power(columns, key, alpha),
            }
        )
    return rows


def _time_to_event(columns: Columns, comparison: Comparison, alpha: float) -> list[dict[str, Any]]:
    prefix = comparison.key()
    events = {
        "treated": distribution(columns[f"{prefix}|events_treated"]),
        "control": distribution(columns[f"{prefix}|events_control"]),
    }
    rows = []
    for method in comparison.methods:
        key = comparison.key(method)
        row: dict[str, Any] = {
            "endpoint": comparison.endpoint,
            "arm": comparison.arm,
            "control": comparison.control,
            "method": method,
            "events": events,
            **_power(columns, key, alpha),
        }
        if TIME_TO_EVENT_METHODS[method].hazard_ratio:
            hr = columns[f"{key}|hazard_ratio"]
            row["hazard_ratio"] = {
                "estimator": "Cox (maximum partial likelihood), replicates where it is finite",
                **{k: v for k, v in distribution(hr).items() if k != "mean"},
                "not_estimable": row["not_estimable"],
            }
            firth = columns[f"{key}|firth_hazard_ratio"]
            row["hazard_ratio_all"] = {
                "estimator": "Firth-penalized Cox (Heinze & Schemper 2001), every replicate "
                "with an event",
                **{k: v for k, v in distribution(firth).items() if k != "mean"},
                "covered": float(np.mean(np.isfinite(firth))),
            }
        rows.append(row)
    return rows


def _by_look(looks: npt.NDArray[np.int64], k_looks: int) -> list[float]:
    return [float(np.mean(looks == k)) for k in range(1, k_looks + 1)]


def _sequential(
    columns: Columns, comparisons: list[Comparison], looks: LookPlan, alpha: float
) -> dict[str, Any]:
    rates = tuple(float(t) for t in looks.information_rates)
    k_looks = len(rates)
    efficacy = boundaries(rates, alpha, 2, looks.spending)
    harm = boundaries(rates, float(looks.harm_alpha), 1, looks.harm_spending)
    harm_z = harm_critical_values(looks)
    primary = []
    for comparison in comparisons:
        if comparison.kind != "primary":
            continue
        first = columns[f"{comparison.key()}|gs_efficacy_look"]
        reject = columns[f"{comparison.key()}|gs_reject_look"]
        by_look = _by_look(first, k_looks)
        primary.append(
            {
                "endpoint": comparison.endpoint,
                "arm": comparison.arm,
                "control": comparison.control,
                "method": "ancova",
                "efficacy_by_look": by_look,
                "efficacy_cumulative": list(np.cumsum(by_look)),
                "early_efficacy": float(np.mean((first > 0) & (first < k_looks))),
                "reject_either_direction": proportion(reject > 0),
            }
        )
    harm_looks = columns["gs|harm_look"]
    harm_by_look = _by_look(harm_looks, k_looks)
    stop, reason = columns["gs|stop_look"], columns["gs|stop_reason"]
    return {
        "design": {
            **looks.to_dict(),
            "efficacy_alpha": alpha,
            "efficacy_sided": 2,
            "efficacy_critical_z": efficacy.critical_values.tolist(),
            "harm_critical_z": harm_z.tolist(),
            "harm_critical_z_normal_theory": harm.critical_values.tolist(),
            "efficacy_statistic": "ANCOVA t on the z scale by its p-value; efficacy when z >= c",
            "harm_statistic": "log-rank z = (O - E) / sqrt(V), treated arms; harm when z >= h "
            "(h calibrated by simulation under no IL-2 excess when harm_boundary is "
            "'calibrated', else normal theory)",
        },
        "information_realised": [
            float(np.nanmean(columns[f"gs|information|{k}"])) for k in range(1, k_looks + 1)
        ],
        "safety_events": [
            float(np.mean(columns[f"gs|safety_events|{k}"])) for k in range(1, k_looks + 1)
        ],
        "primary": primary,
        "harm": {
            "endpoint": next(c.endpoint for c in comparisons if c.kind == "time_to_event"),
            "comparison": next(c.label for c in comparisons if c.kind == "time_to_event"),
            "harm_by_look": harm_by_look,
            "harm_cumulative": list(np.cumsum(harm_by_look)),
        },
        "trial": {
            "rule": "stop at the first look crossing harm or any efficacy boundary; harm first",
            "stop_efficacy_by_look": _by_look(np.where(reason == EFFICACY, stop, 0), k_looks),
            "stop_harm_by_look": _by_look(np.where(reason == HARM, stop, 0), k_looks),
            "no_crossing": float(np.mean(reason == NO_STOP)),
            "expected_looks": float(np.mean(stop)),
        },
    }


def type_one_error(null: dict[str, Any], alpha: float) -> list[dict[str, Any]]:
    """Type I error of each test from the null scenario's power, against alpha."""
    rows = []
    replicates = int(null["replicates"])
    bound = 2.0 * math.sqrt(alpha * (1.0 - alpha) / replicates)
    for row in [*null["primary"], *null["time_to_event"]]:
        rate = float(row["power"])
        rows.append(
            {
                "endpoint": row["endpoint"],
                "arm": row["arm"],
                "control": row["control"],
                "method": row["method"],
                "type_I_error": rate,
                "mc_se": row["power_mc_se"],
                "not_estimable": row["not_estimable"],
                "within_2_mc_se_of_alpha": abs(rate - alpha) <= bound,
            }
        )
    gs = null.get("group_sequential")
    if gs is not None:
        for row in gs["primary"]:
            rate = float(row["reject_either_direction"]["estimate"])
            rows.append(
                {
                    "endpoint": row["endpoint"],
                    "arm": row["arm"],
                    "control": row["control"],
                    "method": "ancova, group-sequential",
                    "type_I_error": rate,
                    "mc_se": row["reject_either_direction"]["mc_se"],
                    "not_estimable": None,
                    "within_2_mc_se_of_alpha": abs(rate - alpha) <= bound,
                }
            )
    return rows
