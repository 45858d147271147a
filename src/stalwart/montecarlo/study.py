"""The ``stalwart simulate`` study: operating characteristics of the design, written to oc.json.

:func:`run_study` simulates ``replicates`` trials of the scenario (the calibrated model unless a
scenario file says otherwise) and as many of its null scenario (the same with no treatment
effect, :data:`~stalwart.montecarlo.scenarios.NULL_OVERRIDES`), plus each point of a sweep,
analyses each replicate by the plan with the batched kernels, and writes ``OUT/oc.json``
(and ``OUT/power_curve.svg``/``.png`` with a sweep). All scenarios use the same seed: common
random numbers, so a sweep's curve is smooth and the null differs from the alternative only by
the effects. The numbers depend only on the protocol, parameters, scenario file, seed and
replicate counts, never on the executor or the number of workers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from stalwart import __version__
from stalwart.analysis.comparisons import plan_comparisons
from stalwart.errors import ConfigurationError
from stalwart.jsonable import jsonable
from stalwart.montecarlo.assurance import add_assurance, posterior_draws, uncertainty_provenance
from stalwart.montecarlo.engine import Columns, TrialSpec
from stalwart.montecarlo.executors import BlockTask, Executor, make_executor
from stalwart.montecarlo.harm_calibration import (
    NO_EXCESS,
    calibration_seed,
    calibration_summary,
    harm_z,
    with_boundary,
)
from stalwart.montecarlo.scenarios import ScenarioFile, load_scenario_file, with_harm
from stalwart.montecarlo.summary import summarize, type_one_error
from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import default_parameters_path, load_parameters
from stalwart.simulate.vectorized import FIDELITIES, STREAM_REPLICATES

__all__ = ["CONVENTIONS", "StudyOutcome", "run_study"]

CONVENTIONS = {
    "interval": "2.5% and 97.5% quantiles over replicates",
    "power": "share of all replicates with p < alpha; not estimable counts as not significant",
    "hazard_ratio": "Cox estimate over the replicates where it is finite (not_estimable: the "
    "share left out, where a side has no event; biased towards 1)",
    "hazard_ratio_all": "Firth-penalized Cox estimate over every replicate with an event "
    "(covered: their share); finite where the Cox one is not",
    "type_I_error": "power of each test under the null scenario (no treatment effect)",
    "mc_se": "Monte Carlo standard error sqrt(p (1 - p) / replicates)",
    "null_scenario": "the scenario with [null] applied: IL-2 CD4 gain 0 and event hazard ratio 1",
    "harm_boundary": "calibrated: the DSMB boundary's z values set by simulation under no IL-2 "
    "excess (an independent run of --replicates trials, one per parameter mode) so that its "
    "crossing probability there is harm_alpha; design.group_sequential.harm_calibration "
    "(assurance.harm_calibration over the posterior) gives them beside the normal-theory ones",
}

StageProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, as the demo's."""


@dataclass(frozen=True)
class StudyOutcome:
    """What :func:`run_study` wrote and how long it took."""

    oc: dict[str, Any]
    oc_path: Path
    figures: tuple[Path, ...]
    seconds: float


@dataclass(frozen=True)
class _Job:
    label: str
    overrides: dict[str, Any]
    replicates: int
    sweep_value: Any = None


def run_study(
    out: Path,
    *,
    replicates: int,
    seed: int,
    scenario: Path | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    protocol: Path | None = None,
    block: int = 5 * STREAM_REPLICATES,
    progress: StageProgress | None = None,
    scheduler_timeout: float = 5.0,
    fidelity: str = "outcomes",
    harm: str | None = None,
    uncertainty: str = "fixed",
) -> StudyOutcome:
    """Run the Monte Carlo study and write ``out/oc.json`` (see the module).

    Raises
    ------
    ConfigurationError
        A replicate count below 1, a negative seed, a bad scenario file, an unknown executor, an
        unreachable scheduler, or ``out`` being a file; nothing is written then.

    ``executor`` is a name of :data:`~stalwart.montecarlo.executors.EXECUTORS` (built with
    ``workers`` and ``scheduler``, closed after the run) or an executor to use as it is.
    ``fidelity`` is the simulator's (:data:`~stalwart.simulate.vectorized.FIDELITIES`):
    ``outcomes`` (default) draws only what the analyses read, from the same model; ``full``
    draws every record. ``harm`` names a time course of IL-2's excess event hazard
    (:data:`~stalwart.montecarlo.scenarios.HARM_SCENARIOS`) applied on top of the scenario.
    ``uncertainty="posterior"`` runs every job again with each replicate stream's parameters
    drawn from the packaged posterior sample (:mod:`~stalwart.simulate.posterior`): oc.json
    then gives the assurance beside each power, and under ``assurance`` the whole summaries.
    """
    started = time.perf_counter()
    _check_options(out, replicates, seed, fidelity)
    loaded = load_protocol(protocol)
    params = load_parameters()
    chosen = (
        ScenarioFile()
        if scenario is None
        else load_scenario_file(scenario, loaded.protocol, params)
    )
    chosen = with_harm(chosen, harm)
    jobs = _jobs(chosen, replicates)
    fixed = len(jobs)
    posterior = posterior_draws(uncertainty, loaded.protocol, params)
    if posterior:
        jobs += [replace(job, label=f"{job.label} (posterior)") for job in jobs]
    base = TrialSpec(loaded.protocol, params, seed, {}, chosen.looks, fidelity)
    calibration = _calibration_specs(base, chosen, posterior)
    total = sum(job.replicates for job in jobs) + replicates * len(calibration)
    runner = (
        executor
        if isinstance(executor, Executor)
        else make_executor(
            executor, workers, scheduler, timeout=scheduler_timeout, replicates=total
        )
    )
    try:
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress("replicate trials", done, total)

        if progress is not None:
            progress("replicate trials", 0, total)
        k_looks = len(chosen.looks.information_rates)
        cal_z = [
            harm_z(columns, k_looks)
            for columns in _run(runner, [(s, replicates) for s in calibration], block, advance)
        ]
        looks = [with_boundary(chosen.looks, z) for z in cal_z] or [chosen.looks]
        specs = [
            replace(
                base,
                overrides=job.overrides,
                looks=looks[-1] if i >= fixed else looks[0],
                posterior=posterior if i >= fixed else (),
            )
            for i, job in enumerate(jobs)
        ]
        counts = [(spec, job.replicates) for spec, job in zip(specs, jobs, strict=True)]
        results = _run(runner, counts, block, advance)
        run = runner.describe()
    finally:
        if runner is not executor:
            runner.close()
    columns = dict(zip((job.label for job in jobs), results, strict=True))
    harm_calibration = [
        calibration_summary(look, z, spec.seed)
        for look, z, spec in zip(looks, cal_z, calibration, strict=False)
    ]
    summaries = []
    for job, spec in zip(jobs, specs, strict=True):
        design, _ = spec.design()
        summaries.append(
            summarize(
                columns[job.label],
                plan_comparisons(design),
                tuple(a.code for a in design.arms),
                design.analysis.alpha,
                spec.looks,
            )
        )
    alpha = loaded.protocol.analysis.alpha
    seconds = time.perf_counter() - started
    oc: dict[str, Any] = {
        "provenance": {
            "protocol": loaded.protocol.study.id,
            "protocol_version": loaded.protocol.study.version,
            "protocol_sha256": loaded.sha256,
            "parameters_file": default_parameters_path().name,
            "parameters_sha256": hashlib.sha256(default_parameters_path().read_bytes()).hexdigest(),
            "parameters_fingerprint": params.fingerprint(),
            "software_version": __version__,
            "seed": seed,
            "replicates": replicates,
            "scenario": chosen.to_dict(),
            "engine": "stalwart.simulate.vectorized + analysis.kernels.batched",
            "fidelity": fidelity,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        },
        "run": {**run, "block_replicates": block, "seconds": round(seconds, 3)},
        "conventions": {**CONVENTIONS, "alpha": alpha},
        "design": {
            "sample_size": summaries[0]["randomized"]["total"]["mean"],
            "arms": [a.code for a in loaded.protocol.arms],
            "group_sequential": {
                **chosen.looks.to_dict(),
                **({"harm_calibration": harm_calibration[0]} if harm_calibration else {}),
            },
        },
        "alternative": summaries[0],
        "null": summaries[1],
        "type_I_error": type_one_error(summaries[1], alpha),
    }
    figures: tuple[Path, ...] = ()
    if chosen.sweep is not None:
        oc["power_curve"] = _power_curve(chosen, jobs[2:fixed], summaries[2:fixed])
    if posterior:
        _add_posterior(oc, jobs, summaries, columns, fixed, len(posterior), alpha)
        if harm_calibration:
            oc["assurance"]["harm_calibration"] = harm_calibration[-1]
    out.mkdir(parents=True, exist_ok=True)
    if chosen.sweep is not None:
        from stalwart.montecarlo.figures import power_curve_figure

        figures = power_curve_figure(oc["power_curve"], out)
    oc_path = out / "oc.json"
    oc_path.write_text(json.dumps(jsonable(oc), indent=2) + "\n", encoding="utf-8")
    return StudyOutcome(oc, oc_path, figures, seconds)


def _jobs(chosen: ScenarioFile, replicates: int) -> list[_Job]:
    """The alternative, its null and each point of the sweep, at the parameter file's values."""
    jobs = [
        _Job("alternative", chosen.overrides, replicates),
        _Job("null", chosen.null_overrides, replicates),
    ]
    for value, overrides in chosen.sweep_overrides():
        count = chosen.sweep.replicates if chosen.sweep and chosen.sweep.replicates else replicates
        jobs.append(_Job(f"sweep {value}", overrides, count, value))
    return jobs


def _calibration_specs(
    base: TrialSpec, chosen: ScenarioFile, posterior: tuple[Any, ...]
) -> list[TrialSpec]:
    """The harm boundary's calibration runs (:mod:`~stalwart.montecarlo.harm_calibration`): the
    scenario with no IL-2 excess at an independent seed, at the fixed values and, with a
    posterior sample, over it; none for a normal-theory boundary. They run before the jobs,
    and each parameter mode's jobs use the boundary its run gives (a sweep's too)."""
    if chosen.looks.harm_boundary != "calibrated":
        return []
    spec = replace(
        base,
        seed=calibration_seed(base.seed),
        overrides={**chosen.overrides, **NO_EXCESS},
        harm_only=True,
    )
    return [spec, replace(spec, posterior=posterior)] if posterior else [spec]


def _check_options(out: Path, replicates: int, seed: int, fidelity: str) -> None:
    for name, value, least in (("--replicates", replicates, 1), ("--seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigurationError(f"{name} must be a whole number >= {least}, got {value}")
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file, not a folder")
    if fidelity not in FIDELITIES:
        raise ConfigurationError(
            f"--fidelity must be one of {', '.join(FIDELITIES)}, got {fidelity!r}"
        )


def _run(
    runner: Executor,
    specs: list[tuple[TrialSpec, int]],
    block: int,
    advance: Callable[[int], None],
) -> list[Columns]:
    """Each spec's replicates, run in blocks by the executor and joined in replicate order."""
    if not specs:
        return []
    tasks = [
        BlockTask(spec, first, min(block, count - first))
        for spec, count in specs
        for first in range(0, count, block)
    ]
    results = runner.map(tasks, advance)
    out = []
    for spec, _ in specs:
        parts = [r for t, r in zip(tasks, results, strict=True) if t.spec is spec]
        out.append({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    return out


def _power_curve(
    chosen: ScenarioFile, jobs: list[_Job], summaries: list[dict[str, Any]]
) -> dict[str, Any]:
    assert chosen.sweep is not None
    rows = []
    for job, summary in zip(jobs, summaries, strict=True):
        for row in [*summary["primary"], *summary["time_to_event"]]:
            rows.append(
                {
                    "value": job.sweep_value,
                    "endpoint": row["endpoint"],
                    "arm": row["arm"],
                    "control": row["control"],
                    "method": row["method"],
                    "power": row["power"],
                    "power_mc_se": row["power_mc_se"],
                    "replicates": job.replicates,
                }
            )
    return {"parameter": chosen.sweep.parameter, "values": list(chosen.sweep.values), "rows": rows}


def _add_posterior(
    oc: dict[str, Any],
    jobs: list[_Job],
    summaries: list[dict[str, Any]],
    columns: dict[str, Columns],
    fixed: int,
    n_draws: int,
    alpha: float,
) -> None:
    """The posterior jobs' summaries under ``assurance``; each assurance beside its power."""
    oc["provenance"]["uncertainty"] = uncertainty_provenance(n_draws)
    oc["conventions"]["assurance"] = (
        "share of replicates with p < alpha when each stream's parameters are drawn from the "
        "posterior sample; mc_se between streams"
    )
    oc["assurance"] = {
        "alternative": summaries[fixed],
        "null": summaries[fixed + 1],
        "type_I_error": type_one_error(summaries[fixed + 1], alpha),
    }
    add_assurance(oc["alternative"], summaries[fixed], columns[jobs[fixed].label], alpha)
    for row in oc.get("power_curve", {}).get("rows", []):
        at = next(j for j in range(fixed + 2, len(jobs)) if jobs[j].sweep_value == row["value"])
        summary = summaries[at]
        row["assurance"] = next(
            (
                float(other["power"])
                for other in [*summary["primary"], *summary["time_to_event"]]
                if all(other[k] == row[k] for k in ("endpoint", "arm", "method"))
            ),
            None,
        )
