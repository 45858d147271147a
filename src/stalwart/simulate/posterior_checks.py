"""What the posterior predicts: STALWART's published figures and two figures it was not fitted to.

* :func:`predictive_intervals`: for each posterior draw, a new STALWART of the published size
  (binomial event and completion counts, the CD4 differences with their standard errors); the
  2.5 and 97.5% quantiles are each published figure's 95% posterior predictive interval.
* :func:`held_out_checks`: UK-Vanguard's CD4 AUC difference through 24 weeks (IL-2 without ART,
  5-day cycles every 8 weeks; +116 (51-181), calibration-evidence.md E3/E5), predicted as the
  time-averaged IL-2 CD4 gain over days 0-168 of cycles on the protocol's IL-2 calendar, with
  Vanguard's own sampling error (its CI's half-width / 1.96) added, and against its 7.5 MIU arm
  alone (+128.4, p 0.002: the dose STALWART probably used); and STALWART's extended follow-up
  after IL-2 stopped (HR 1.45 (0.38-5.45), E5): the model's hazard ratio there is the IL-2 ratio
  where the excess window reaches past the end of the main study, else 1, times the extension's
  own sampling error (log-HR SE from its CI). Both are predictive intervals over the draws.

``python -m stalwart.simulate.posterior_checks`` samples the posterior, writes ``posterior.csv``
beside the parameters (or ``--sample PATH``) and a report folder with ``posterior.json`` and
``prior_vs_posterior.png``, and prints the diagnostics, the intervals and the checks.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

from stalwart.errors import ConfigurationError
from stalwart.protocol.calendar import participant_calendar
from stalwart.protocol.load import load_protocol
from stalwart.simulate.cycles import IL2_TREATMENT, treatment_cycles
from stalwart.simulate.equations import FloatArray, il2_cd4_kernel
from stalwart.simulate.parameters import load_parameters
from stalwart.simulate.posterior import (
    Posterior,
    default_posterior_path,
    diagnostics,
    load_priors,
    sample_posterior,
    write_posterior_sample,
)

__all__ = [
    "EXTENSION_HR",
    "VANGUARD",
    "VANGUARD_75",
    "held_out_checks",
    "main",
    "predictive_intervals",
]

VANGUARD = {"estimate": 116.0, "ci_low": 51.0, "ci_high": 181.0, "weeks": 24}
"""UK-Vanguard (PLoS Clin Trials 2006): CD4 AUC difference through 24 weeks, IL-2 vs control,
both doses pooled (4.5 and 7.5 MIU twice daily)."""

VANGUARD_75 = {"estimate": 128.4, "p_value": 0.002}
"""UK-Vanguard's 7.5 MIU twice-daily arm vs control (the dose ESPRIT used and STALWART, "ESPRIT
002", probably used: unverified); its standard error follows from the p-value."""

EXTENSION_HR = {"estimate": 1.45, "ci_low": 0.38, "ci_high": 5.45}
"""STALWART extended follow-up after IL-2 stopped: opportunistic disease or death, IL-2 vs none."""


def _se_from_ci(low: float, high: float, log: bool = False) -> float:
    """The standard error behind a published 95% interval (on the log scale for a ratio)."""
    if log:
        return (math.log(high) - math.log(low)) / (2 * 1.959964)
    return (high - low) / (2 * 1.959964)


def default_report_path() -> Path:
    """The report of the shipped posterior sample (``posterior_report/posterior.json``)."""
    return Path(str(resources.files("stalwart.simulate") / "posterior_report" / "posterior.json"))


def shipped_report() -> dict[str, Any]:
    """The diagnostics, predictive intervals and held-out checks of the shipped sample."""
    path = default_report_path()
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"cannot read {path}: regenerate it with python -m stalwart.simulate.posterior_checks"
        ) from exc
    return report


def _interval(values: FloatArray, published: float) -> dict[str, float | bool]:
    low, mid, high = np.quantile(values, [0.025, 0.5, 0.975])
    return {
        "published": published,
        "median": float(mid),
        "q025": float(low),
        "q975": float(high),
        "inside": bool(low <= published <= high),
    }


def predictive_intervals(
    posterior: Posterior, sample: Sequence[Mapping[str, float]], seed: int = 1
) -> dict[str, dict[str, float | bool]]:
    """95% posterior predictive interval of each published figure (see the module)."""
    rng = np.random.default_rng(seed)
    data = posterior.priors.data
    control, treated = data["events"]["control"], data["events"]["treated"]
    cd4 = {k: v for k, v in data["cd4"].items() if isinstance(v, dict)}
    done = {k: v for k, v in data["completion"].items() if isinstance(v, dict)}
    draws: dict[str, list[float]] = {}
    for values in sample:
        expected = posterior.expectations(values)
        events = expected["events"]
        p_treated = float(np.mean([events[a] for a in treated["arms"]]))
        draws.setdefault("events treated", []).append(rng.binomial(treated["n"], p_treated))
        draws.setdefault("events control", []).append(
            rng.binomial(control["n"], events[control["arm"]])
        )
        for arm, figure in cd4.items():
            draws.setdefault(f"CD4 difference {arm}", []).append(
                rng.normal(expected["cd4"][arm], figure["se"])
            )
        for arm, figure in done.items():
            draws.setdefault(f"completed {arm}", []).append(
                rng.binomial(figure["n"], expected["completion"][arm])
            )
    published = {
        "events treated": treated["events"],
        "events control": control["events"],
        **{f"CD4 difference {a}": f["difference"] for a, f in cd4.items()},
        **{f"completed {a}": f["completed"] for a, f in done.items()},
    }
    return {k: _interval(np.asarray(draws[k], float), float(v)) for k, v in published.items()}


def _vanguard_gain(posterior: Posterior, values: Mapping[str, float]) -> float:
    """Time-averaged IL-2 CD4 gain over 24 weeks of cycles on the IL-2 arm's calendar."""
    params = posterior.model_parameters(
        {k: v for k, v in values.items() if k.startswith("il2_cd4")}
    )
    protocol = posterior.protocol
    arm = next(a.code for a in protocol.arms if a.treatments == ["IL2"])
    calendar = participant_calendar(protocol, arm, protocol.study.accrual_start)
    starts = [c.days(IL2_TREATMENT)[0] for c in treatment_cycles(protocol, calendar)]
    starts = [s - starts[0] for s in starts]
    days = np.arange(0.0, 7.0 * VANGUARD["weeks"] + 1.0)
    taken = (1.0 - params.cycle_not_started_probability.value) * (
        params.administration_taken_probability.value
    )
    path = sum(il2_cd4_kernel(params, days - s) for s in starts)
    return float(params.il2_cd4_persistent_gain_per_cycle.value * taken * np.mean(path))


def held_out_checks(
    posterior: Posterior, sample: Sequence[Mapping[str, float]], seed: int = 2
) -> dict[str, dict[str, Any]]:
    """The two held-out predictions beside their published intervals.

    Each is a posterior predictive interval: the model's expectation at each draw plus the
    published study's own sampling error (its standard error from its interval, or from its
    p-value), so "inside" asks whether the published figure is one the model could have
    produced. Neither figure enters the likelihood.

    * UK-Vanguard: the time-averaged IL-2 CD4 gain over 24 weeks of cycles every 8 weeks
      (the area under the change curve over 24 weeks, computed on the model's continuous path:
      Vanguard's visit days are not known); also against its 7.5 MIU arm (dose-matched).
    * STALWART's extension: the model's hazard ratio for opportunistic disease or death after
      IL-2 stopped (1 unless a draw's excess window reaches the extension) times the sampling
      error of the extension's log hazard ratio (its 95% interval: SE 0.68, about 9 events).
    """
    rng = np.random.default_rng(seed)
    sampling_se = _se_from_ci(VANGUARD["ci_low"], VANGUARD["ci_high"])
    gains = np.array([_vanguard_gain(posterior, v) for v in sample])
    noise = rng.standard_normal(gains.size)
    predicted = gains + sampling_se * noise
    se_75 = VANGUARD_75["estimate"] / float(special.ndtri(1.0 - VANGUARD_75["p_value"] / 2.0))
    predicted_75 = gains + se_75 * noise
    protocol = posterior.protocol
    study = protocol.study
    # the extension began after the main study's follow-up; the last IL-2 dose came at least
    # that long before for everyone randomized by the end of accrual
    gap = (study.follow_up_end - study.accrual_end).days
    ratios = np.array(
        [
            v.get("il2_event_hazard_ratio", 1.0)
            if v.get("il2_excess_hazard_window_days", math.inf) > gap
            else 1.0
            for v in sample
        ]
    )
    log_se = _se_from_ci(EXTENSION_HR["ci_low"], EXTENSION_HR["ci_high"], log=True)
    predicted_hr = ratios * np.exp(log_se * rng.standard_normal(ratios.size))
    low, mid, high = np.quantile(ratios, [0.025, 0.5, 0.975])
    return {
        "uk_vanguard_cd4_auc_difference": {
            **{k: v for k, v in VANGUARD.items()},
            "sampling_se": sampling_se,
            "model_expected": _interval(gains, VANGUARD["estimate"]),
            "model_predictive": _interval(predicted, VANGUARD["estimate"]),
            "dose_matched_7_5_miu": {
                **VANGUARD_75,
                "sampling_se": se_75,
                "model_predictive": _interval(predicted_75, VANGUARD_75["estimate"]),
            },
        },
        "stalwart_extension_hazard_ratio": {
            **EXTENSION_HR,
            "sampling_se_log_hr": log_se,
            "model_hazard_ratio": {"median": float(mid), "q025": float(low), "q975": float(high)},
            "model_predictive": _interval(predicted_hr, EXTENSION_HR["estimate"]),
            "inside_published_ci": bool(EXTENSION_HR["ci_low"] <= mid <= EXTENSION_HR["ci_high"]),
            "days_from_last_accrual_to_extension": gap,
        },
    }


def _plot(posterior: Posterior, draws: FloatArray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    priors = posterior.priors.priors
    rng = np.random.default_rng(0)
    columns = 3
    rows = math.ceil(len(priors) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(12, 3.2 * rows))
    for ax, (j, prior) in zip(axes.ravel(), enumerate(priors), strict=False):
        post = draws[..., j].ravel()
        prior_draws = prior.draw(rng, 20000)
        hi = float(np.quantile(np.concatenate([post, prior_draws]), 0.995))
        lo = float(np.quantile(np.concatenate([post, prior_draws]), 0.005))
        bins = np.linspace(lo, hi, 50)
        ax.hist(prior_draws, bins=bins, density=True, alpha=0.5, label="prior")
        ax.hist(post, bins=bins, density=True, alpha=0.6, label="posterior")
        ax.set_title(prior.name, fontsize=9)
    for ax in axes.ravel()[len(priors) :]:
        ax.axis("off")
    axes.ravel()[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _vanguard_verdict(vanguard: Mapping[str, Any]) -> str:
    """What the UK-Vanguard check says, in words, including where it does not fit well."""
    expected = vanguard["model_expected"]
    off = expected["median"] / vanguard["estimate"] - 1.0
    text = (
        f"The model's expectation is {abs(off):.0%} {'above' if off > 0 else 'below'} "
        f"Vanguard's estimate (median {expected['median']:.3g} vs {vanguard['estimate']:g}): "
        "the check passes on Vanguard's wide interval, not on a close fit."
        if abs(off) > 0.2
        else f"The model's expectation is within 20% of Vanguard's estimate ({off:+.0%})."
    )
    matched = vanguard.get("dose_matched_7_5_miu")
    if matched is not None:
        pi = matched["model_predictive"]
        text += (
            f" Against Vanguard's 7.5 MIU arm alone ({matched['estimate']:g}, SE "
            f"{matched['sampling_se']:.3g} from p {matched['p_value']:g}; STALWART's dose is "
            f"unverified): {pi['median']:.3g} ({pi['q025']:.3g} to {pi['q975']:.3g}), inside "
            f"{'yes' if pi['inside'] else 'NO'}."
        )
    return text


def _extension_predictive(extension: Mapping[str, Any]) -> str:
    pi = extension.get("model_predictive")
    if pi is None:
        return "."
    return (
        f"; with the extension's own sampling error (log-HR SE "
        f"{extension['sampling_se_log_hr']:.2f}) the predicted HR is {pi['median']:.3g} "
        f"({pi['q025']:.3g} to {pi['q975']:.3g}): inside {'yes' if pi['inside'] else 'NO'}. "
        "The model has no mechanism for harm after the excess window (CD4 gains do not lower the "
        "hazard, as in ESPRIT/SILCAAT), so it predicts no effect; 1.45 is compatible with that."
    )


def _note(report: dict[str, Any]) -> str:
    """The report as a markdown note (README.md beside posterior.json)."""
    s = report["settings"]
    run = f"--warmup {s['warmup']} --draws {s['draws']} --checks {s['checks']}"
    lines = [
        "# Posterior calibration of the STALWART model: the note",
        "",
        f"Generated by `python -m stalwart.simulate.posterior_checks {run}` (seed {s['seed']},",
        f"{s['chains']} chains): `../posterior.csv` (the sample `stalwart simulate --uncertainty",
        "posterior` draws from), `posterior.json` (all below, unrounded) and",
        "`prior_vs_posterior.png`.",
        "Priors, each with its source, and the data (STALWART's published counts, entering",
        "through their likelihood) are in `../priors.toml`. No published figure is an exact",
        "target.",
        "",
        "## Diagnostics (split R-hat, effective sample size; BDA3 11.4-11.5)",
        "",
        "| parameter | posterior median (95% interval) | R-hat | ESS |",
        "|---|---|---|---|",
    ]
    for name, v in report["diagnostics"].items():
        lines.append(
            f"| {name} | {v['median']:.4g} ({v['q025']:.4g} to {v['q975']:.4g}) "
            f"| {v['rhat']:.3f} | {v['ess']:.0f} |"
        )
    acceptance = ", ".join(f"{a:.2f}" for a in report["acceptance"])
    lines += [
        "",
        f"Acceptance per chain: {acceptance}.",
        "",
        f"## Published figures: 95% posterior predictive intervals ({s['checks']} draws)",
        "",
        "From the likelihood's expectations with binomial and normal noise. The simulator's own",
        "intervals (whole trials over the posterior, what `stalwart demo` prints) are in",
        "`predictive.json` (`python -m stalwart.montecarlo.predictive`).",
        "",
        "| figure | published | model median (95% PI) | inside |",
        "|---|---|---|---|",
    ]
    for name, v in report["predictive_intervals"].items():
        lines.append(
            f"| {name} | {v['published']:g} | {v['median']:.3g} ({v['q025']:.3g} to "
            f"{v['q975']:.3g}) | {'yes' if v['inside'] else 'NO'} |"
        )
    vanguard = report["held_out"]["uk_vanguard_cd4_auc_difference"]
    extension = report["held_out"]["stalwart_extension_hazard_ratio"]
    expected, predicted = vanguard["model_expected"], vanguard["model_predictive"]
    ratio = extension["model_hazard_ratio"]
    lines += [
        "",
        "## Held-out checks (not in the likelihood; nothing tuned towards them)",
        "",
        "* UK-Vanguard CD4 AUC difference through 24 weeks, IL-2 without ART: published "
        f"{vanguard['estimate']:g} ({vanguard['ci_low']:g} to {vanguard['ci_high']:g}); model "
        f"expectation {expected['median']:.3g} ({expected['q025']:.3g} to "
        f"{expected['q975']:.3g}), with Vanguard's sampling error {predicted['median']:.3g} "
        f"({predicted['q025']:.3g} to {predicted['q975']:.3g}): inside "
        f"{'yes' if predicted['inside'] else 'NO'}. " + _vanguard_verdict(vanguard),
        "* STALWART's extended follow-up after IL-2 stopped: published HR "
        f"{extension['estimate']:g} ({extension['ci_low']:g} to {extension['ci_high']:g}); model "
        f"HR {ratio['median']:.3g} ({ratio['q025']:.3g} to {ratio['q975']:.3g}) "
        + (
            "(no draw's excess window reaches the extension, which began "
            if ratio["q975"] == 1.0 == ratio["q025"]
            else "(the draws whose excess window reaches the extension keep their ratio; it began "
        )
        + f"{extension['days_from_last_accrual_to_extension']} or more days after the last dose)"
        + _extension_predictive(extension),
        "",
        "![prior vs posterior](prior_vs_posterior.png)",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Sample the posterior and write the sample, diagnostics, checks and plot."""
    parser = argparse.ArgumentParser(prog="python -m stalwart.simulate.posterior_checks")
    parser.add_argument("--sample", type=Path, default=default_posterior_path())
    parser.add_argument("--report", type=Path, default=default_report_path().parent)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--checks", type=int, default=400, help="draws used for the checks")
    args = parser.parse_args(argv)
    posterior = Posterior(load_priors(), load_parameters(), load_protocol().protocol)
    draws, acceptance = sample_posterior(
        posterior, chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed
    )
    names = posterior.priors.names
    write_posterior_sample(args.sample, names, draws)
    flat = draws.reshape(-1, len(names))
    pick = np.random.default_rng(args.seed).choice(len(flat), min(args.checks, len(flat)), False)
    sample = [dict(zip(names, flat[i], strict=True)) for i in pick]
    report = {
        "settings": vars(args) | {"sample": str(args.sample), "report": str(args.report)},
        "acceptance": acceptance.tolist(),
        "diagnostics": diagnostics(names, draws),
        "predictive_intervals": predictive_intervals(posterior, sample),
        "held_out": held_out_checks(posterior, sample),
    }
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / "posterior.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.report / "README.md").write_text(_note(report))
    _plot(posterior, draws, args.report / "prior_vs_posterior.png")
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
