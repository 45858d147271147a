"""Commands that design the trial before go-live: randomization check, simulate (Monte Carlo)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from stalwart.cli.common import ProtocolOption, err_console, out_console
from stalwart.cli.progress import stage_progress

__all__ = ["model_check_table", "randomization_check", "simulate"]


def randomization_check(
    protocol: ProtocolOption = None,
    participants: Annotated[
        int | None,
        typer.Option(help="Participants per simulated trial (default: the study's sample_size)."),
    ] = None,
    replicates: Annotated[int, typer.Option(help="Simulated trials.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the simulation; same seed, same figures.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Simulate the protocol's randomization: imbalance and predictability (convergence guessing).

    Reports final imbalance overall and per stratum (per factor level for minimization), the
    maximum running imbalance, and the expected proportion of correct guesses of a guesser who
    names the arm allocated least so far; mean, 5%, 50%, 95% quantiles and maximum over the
    simulated trials, as R's randomizeR defines them.

    Example: stalwart randomization check --participants 267 --replicates 1000 --seed 1
    """
    from stalwart.protocol.load import load_protocol
    from stalwart.provenance import provenance
    from stalwart.randomization.checks import check_design

    loaded = load_protocol(protocol)
    report = check_design(
        loaded.protocol, participants=participants, replicates=replicates, seed=seed
    )
    if as_json:
        origin = provenance(loaded.protocol, "", seed, loaded.sha256)
        del origin["data_sha256"]  # simulated participants: no stored data
        out_console.print_json(json.dumps(report.to_dict() | {"provenance": origin}))
        return
    table = Table(
        title=f"{loaded.protocol.study.id} {report.method}: {report.participants} participants, "
        f"{report.replicates} simulated trials, seed {report.seed}",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in ("Measure", "Scope", "Mean", "P5", "P50", "P95", "Max"):
        table.add_column(
            column,
            justify="left" if column in ("Measure", "Scope") else "right",
            no_wrap=True,
        )
    for row in report.rows:
        s = row.summary
        table.add_row(
            row.measure, row.scope, *(f"{v:.3g}" for v in (s.mean, s.q05, s.median, s.q95, s.max))
        )
    out_console.print(table)
    if report.exhausted:
        err_console.print(
            f"[bold yellow]warning:[/] the allocation list runs out in "
            f"{report.exhausted:.1%} of simulated trials; lengthen it in the protocol",
            highlight=False,
        )


def simulate(
    replicates: Annotated[int, typer.Option(help="Replicate trials per scenario.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed; same seed, same oc.json numbers.")] = 1,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for oc.json (and power-curve figures).")
    ] = Path("stalwart-oc"),
    scenario: Annotated[
        Path | None,
        typer.Option(help="Scenario .toml: overrides, null, sweep, group-sequential looks."),
    ] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="Where blocks run: auto (processes on every core from 4,000 trials, else "
            "local), local, processes or dask. The numbers are the same on each."
        ),
    ] = "auto",
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address, e.g. tcp://host:8786 (default: LocalCluster)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes or LocalCluster workers (default: CPU cores).")
    ] = None,
    protocol: ProtocolOption = None,
    fidelity: Annotated[
        str,
        typer.Option(
            help="outcomes: draw only what the analyses read (CD4 at baseline and week 32, "
            "events, dropout), from the same model; full: every record (HIV RNA, AEs)."
        ),
    ] = "outcomes",
    harm: Annotated[
        str | None,
        typer.Option(
            help="IL-2 harm course on top of the scenario: none (no excess), cycles (during "
            "each cycle and 28 days after), persistent (first dose to end of follow-up)."
        ),
    ] = None,
    uncertainty: Annotated[
        str,
        typer.Option(
            help="fixed: the parameter file's values; posterior: also draw each replicate "
            "stream's parameters from the posterior sample and report assurance beside power."
        ),
    ] = "fixed",
) -> None:
    """Simulate replicate trials and write their operating characteristics to OUT/oc.json.

    Runs the plan's primary (week-32 CD4: ANCOVA and Welch) and time-to-event (Cox, log-rank)
    analyses on every replicate, vectorized, under the scenario and its null (no treatment
    effect): power, type I error, CD4 differences, events, hazard ratios, interim looks.
    --fidelity outcomes (default) and full give the same distributions; outcomes is faster.

    --uncertainty posterior adds the assurance of each test and of the DSMB harm boundary
    (parameters drawn from the posterior sample); --harm picks IL-2's harm time course.

    Example: stalwart simulate --replicates 20000 --seed 1 --out oc-out
    """
    from stalwart.montecarlo.study import run_study

    with stage_progress(err_console, width=20) as progress:
        outcome = run_study(
            out,
            replicates=replicates,
            seed=seed,
            scenario=scenario,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            protocol=protocol,
            progress=progress,
            fidelity=fidelity,
            harm=harm,
            uncertainty=uncertainty,
        )
    oc = outcome.oc
    table = Table(title=f"Operating characteristics, {replicates} replicates, seed {seed}")
    assured = "assurance" in oc
    columns = ["Endpoint", "Comparison", "Method", "Estimate (2.5-97.5%)", "Power", "Type I"]
    for column in [*columns, *(["Assurance"] if assured else [])]:
        table.add_column(column)
    null_rows = {(r["endpoint"], r["arm"], r["method"]): r for r in oc["type_I_error"]}
    for row in [*oc["alternative"]["primary"], *oc["alternative"]["time_to_event"]]:
        null = null_rows.get((row["endpoint"], row["arm"], row["method"]))
        table.add_row(
            row["endpoint"],
            f"{row['arm']} vs {row['control']}",
            row["method"],
            _estimates(row),
            f"{row['power']:.3f}",
            "" if null is None else f"{null['type_I_error']:.3f}",
            *([f"{row['assurance']:.3f}"] if assured and "assurance" in row else []),
        )
    out_console.print(table)
    _print_harm_boundary(oc)
    out_console.print(f"{outcome.seconds:.1f} s ({oc['run']['executor']}); oc: {outcome.oc_path}")
    for figure in outcome.figures:
        out_console.print(f"figure: {figure}")


def _z(values: list[float | None]) -> str:
    return " / ".join("never" if v is None or not math.isfinite(v) else f"{v:.2f}" for v in values)


def _print_harm_boundary(oc: dict[str, Any]) -> None:
    """The DSMB harm boundary's z values (calibrated or normal theory), its crossing
    probability at the fixed values and over the posterior, against its nominal level."""
    gs = oc["alternative"].get("group_sequential")
    if gs is None:
        return
    design, harm = gs["design"], gs["harm"]
    kind = design.get("harm_boundary", "normal")
    text = (
        f"DSMB harm boundary ({kind}"
        + (
            f", normal theory {_z(design['harm_critical_z_normal_theory'])}"
            if kind == "calibrated"
            else ""
        )
        + f"): z >= {_z(design['harm_critical_z'])}; crossed {harm['harm_cumulative'][-1]:.3f} "
        f"at the fixed values"
    )
    if "assurance_crossing" in harm:
        boundary = oc["assurance"]["alternative"]["group_sequential"]["design"]
        text += (
            f", {harm['assurance_crossing']:.3f} over the posterior "
            f"(z >= {_z(boundary['harm_critical_z'])})"
        )
    out_console.print(text + f"; nominal {design['harm_alpha']:g} under no IL-2 excess")


def _interval(dist: dict[str, Any] | None) -> str:
    if dist is None or dist.get("median") is None:
        return "none"
    return f"{dist['median']:.3g} ({dist['q025']:.3g} to {dist['q975']:.3g})"


def _estimates(row: dict[str, Any]) -> str:
    """A row's estimate: the difference, or both hazard-ratio summaries, each saying its cover."""
    if "difference" in row:
        return _interval(row["difference"])
    if "hazard_ratio" not in row:
        return ""
    cox, firth = row["hazard_ratio"], row.get("hazard_ratio_all")
    text = f"Cox {_interval(cox)}, {cox['not_estimable']:.1%} not estimable"
    if firth is not None:
        text += f"; Firth {_interval(firth)} over the {firth['covered']:.1%} with an event"
    return text


def _pi(row: dict[str, Any], digits: str = ".3g") -> str:
    return f"{row['median']:{digits}} ({row['q025']:{digits}} to {row['q975']:{digits}})"


def model_check_table() -> Table:
    """Each published STALWART figure beside the model's 95% posterior predictive interval (the
    simulator's, shipped: :mod:`stalwart.montecarlo.predictive`), and the two held-out figures
    beside theirs (:mod:`stalwart.simulate.posterior_checks`), never one run's value."""
    from stalwart.montecarlo.predictive import shipped_predictive
    from stalwart.simulate.posterior_checks import shipped_report

    predicted = shipped_predictive()
    settings = predicted["settings"]
    report = shipped_report()
    table = Table(
        title="STALWART published vs the model's 95% predictive intervals "
        f"({settings['draws'] * settings['per_draw']} simulated trials over the posterior)"
    )
    for column in ("Figure", "Published", "Model median (95% PI)", "Inside", "Role"):
        table.add_column(column)
    table.add_row("randomized, total", str(settings["sample_size"]), "design", "", "design")
    for name, row in predicted["intervals"].items():
        role = "allocation" if name.startswith("randomized") else "fitted (likelihood)"
        table.add_row(
            name, f"{row['published']:g}", _pi(row), "yes" if row["inside"] else "NO", role
        )
    vanguard = report["held_out"]["uk_vanguard_cd4_auc_difference"]
    pi = vanguard["model_predictive"]
    table.add_row(
        "UK-Vanguard CD4 AUC difference, 24 wk",
        f"{vanguard['estimate']:g} ({vanguard['ci_low']:g} to {vanguard['ci_high']:g})",
        _pi(pi),
        "yes" if pi["inside"] else "NO",
        "held out",
    )
    matched = vanguard.get("dose_matched_7_5_miu")
    if matched is not None:
        table.add_row(
            "UK-Vanguard, 7.5 MIU arm only",
            f"{matched['estimate']:g} (SE {matched['sampling_se']:.3g})",
            _pi(matched["model_predictive"]),
            "yes" if matched["model_predictive"]["inside"] else "NO",
            "held out",
        )
    extension = report["held_out"]["stalwart_extension_hazard_ratio"]
    hr = extension.get("model_predictive", extension["model_hazard_ratio"])
    inside = hr["inside"] if "inside" in hr else extension["inside_published_ci"]
    table.add_row(
        "STALWART post-IL-2 follow-up HR",
        f"{extension['estimate']:g} ({extension['ci_low']:g} to {extension['ci_high']:g})",
        _pi(hr),
        "yes" if inside else "NO",
        "held out",
    )
    return table
