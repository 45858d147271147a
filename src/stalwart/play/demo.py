"""``stalwart demo``: the whole study on one machine, from an empty database to the report.

1. create a trial database (SQLite ``OUT/stalwart.db`` unless a URL is given) from the protocol;
2. play the simulated sites through the capture service (screening to end of follow-up, then
   endpoint review of every reported event); with ``via_http`` through the HTTP API of a server
   started on a free local port, as logged-in site coordinators and an endpoint reviewer;
3. derive the analysis datasets and run the analysis plan on what was captured;
4. write ``OUT/results.json`` and ``OUT/report.html``.

A demo folder is marked as one (``OUT/.stalwart-demo``), so running the demo again with the same
``--out`` replaces the previous demo run there, as a user expects, and says so; a database in a
folder that is not a demo run is never replaced without ``--force``.

Same seed, same data, same results (the provenance's creation time aside), in process or via
HTTP (then the database also holds the play's user accounts, so ``data_sha256`` differs).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stalwart.analysis.datasets.bundle import TrialDatasets, load_datasets
from stalwart.analysis.flow import Flow, flow_counts
from stalwart.analysis.plan import run_plan
from stalwart.analysis.recompute import (
    PublishedCounts,
    RecomputedTest,
    published_counts,
    recompute_published,
)
from stalwart.capture.audit import data_sha256
from stalwart.capture.db import create_schema, open_engine, resolve_database_url
from stalwart.capture.locks import trial_lock_label
from stalwart.capture.sealing import AllocationKey, generate_allocation_key
from stalwart.capture.service import CaptureService, initialize_trial
from stalwart.errors import ConfigurationError
from stalwart.play.sites import PlayedTrial, Progress, play_trial
from stalwart.protocol.load import load_protocol
from stalwart.protocol.schema import Protocol
from stalwart.provenance import provenance
from stalwart.published import ComparisonRow, published_comparison
from stalwart.reports.report import write_report
from stalwart.simulate.parameters import ModelParameters, load_parameters
from stalwart.simulate.posterior import posterior_medians
from stalwart.simulate.vectorized import apply_scenario

__all__ = ["AnalysisOutcome", "DemoOutcome", "analyze_database", "demo_parameters", "run_demo"]


@dataclass(frozen=True)
class AnalysisOutcome:
    """Results of the analysis plan on a database, with what they were computed from."""

    results: dict[str, Any]
    datasets: TrialDatasets
    flow: Flow
    comparison: list[ComparisonRow]
    recomputed: tuple[PublishedCounts, list[RecomputedTest]] | None = None


@dataclass(frozen=True)
class DemoOutcome:
    """What ``run_demo`` made and where."""

    out: Path
    database_url: str
    results_path: Path
    report_path: Path
    analysis: AnalysisOutcome
    played: PlayedTrial
    seconds: float
    replaced: bool = False
    """A previous demo run in ``out`` was replaced."""


def analyze_database(engine: Engine, seed: int | None = None) -> AnalysisOutcome:
    """Run the analysis plan of the database's own protocol on its data."""
    service = CaptureService.open(engine)
    protocol = service.protocol
    datasets, extract = load_datasets(protocol, engine)
    body = run_plan(protocol, datasets)
    results = {
        "provenance": provenance(protocol, data_sha256(engine), seed, service.loaded.sha256),
        **body,
    }
    # the final analysis names the lock it ran on (or that it ran on live data)
    results["provenance"]["data_lock"] = trial_lock_label(engine)
    if datasets.endpoint_review is not None:
        results["endpoint_review"] = datasets.endpoint_review.as_json()
    flow = flow_counts(protocol, extract, datasets)
    comparison = published_comparison(
        protocol.study.id, results, flow.completed, protocol.arm_codes
    )
    counts = published_counts(protocol.study.id)
    recomputed = (
        None
        if counts is None
        else (counts, recompute_published(counts, alpha=protocol.analysis.alpha))
    )
    return AnalysisOutcome(results, datasets, flow, comparison, recomputed)


DEMO_MARKER = ".stalwart-demo"
"""File marking a folder as a demo run's output (so a later demo run may replace it)."""

ALLOCATION_KEY_FILE = "allocation.key"
"""The demo's allocation key (its lists are sealed, ``capture.sealing``), in its folder: a real
trial keeps its key away from the database."""

DEMO_OUTPUTS = (
    "stalwart.db",
    "stalwart.db-wal",
    "stalwart.db-shm",
    "results.json",
    "report.html",
    ALLOCATION_KEY_FILE,
)
"""The files a demo run writes into its folder."""


def _prepare_database(out: Path, database_url: str | None, force: bool) -> tuple[str, bool]:
    """The database URL, and whether a previous demo run in ``out`` was replaced."""
    url = resolve_database_url(database_url, out)
    default = database_url is None and url.endswith(str((out / "stalwart.db").resolve()))
    replaced = False
    if default and (out / "stalwart.db").exists():
        if not (force or (out / DEMO_MARKER).is_file()):
            raise ConfigurationError(
                f"{out / 'stalwart.db'} already exists and {out} is not a demo run's folder: "
                "choose another --out, or pass --force to replace it"
            )
        for name in DEMO_OUTPUTS:
            (out / name).unlink(missing_ok=True)
        replaced = True
    (out / DEMO_MARKER).write_text(
        "A stalwart demo run's folder: `stalwart demo` replaces its database and outputs.\n",
        encoding="utf-8",
    )
    return url, replaced


def _require_empty(engine: Engine) -> None:
    if "trial" in sa.inspect(engine).get_table_names():
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT count(*) FROM trial")).scalar_one():
                raise ConfigurationError(
                    "the database already holds a trial: give an empty database for the demo"
                )


def demo_parameters(protocol: Protocol) -> ModelParameters:
    """The model the demo plays its trial with: the parameter file with each calibrated
    parameter at its posterior median (the shipped sample, ``simulate/posterior.csv``), not the
    file's old exact fit to the published figures (an IL-2 excess that never ends)."""
    _, params = apply_scenario(protocol, load_parameters(), posterior_medians())
    return params


def _play_via_http(
    engine: Engine,
    protocol: Protocol,
    seed: np.random.SeedSequence,
    progress: Progress | None,
    key: AllocationKey,
) -> PlayedTrial:
    """Create the play's users, start a local server and play the sites through its API."""
    from stalwart.play.http_port import HttpPort, LocalServer, create_play_users

    credentials = create_play_users(engine, protocol)
    with (
        LocalServer(engine, allocation_key=key) as server,
        HttpPort.login(server.url, protocol, credentials) as port,
    ):
        return play_trial(port, demo_parameters(protocol), seed, progress)


def run_demo(
    out: Path,
    seed: int = 1,
    database_url: str | None = None,
    force: bool = False,
    progress: Progress | None = None,
    protocol: Path | None = None,
    via_http: bool = False,
) -> DemoOutcome:
    """Run the demo study end to end; see the module docstring.

    ``protocol`` replaces the packaged STALWART protocol (a variant with another sample size or
    sites, say); the simulation parameters are STALWART's at the posterior medians
    (:func:`demo_parameters`). ``via_http`` plays the sites through
    the API of a local server (uvicorn in a thread) instead of calling the service in process.
    """
    if seed < 0:
        raise ConfigurationError(f"--seed must be a non-negative integer, got {seed}")
    started = time.perf_counter()
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    url, replaced = _prepare_database(out, database_url, force)
    report = progress or (lambda stage, done, total: None)
    engine = open_engine(url)
    try:
        _require_empty(engine)
        create_schema(engine)
        loaded = load_protocol(protocol)
        randomization_seed, play_seed = np.random.SeedSequence(seed).spawn(2)
        # the demo seals its allocation lists like a real trial, its key kept in its folder
        (out / ALLOCATION_KEY_FILE).unlink(missing_ok=True)
        key = generate_allocation_key(out / ALLOCATION_KEY_FILE)
        initialize_trial(
            engine,
            loaded,
            seed=int(randomization_seed.generate_state(1)[0]),
            actor="demo",
            # the demo's seed is public (results.json): a salt derived from it keeps the data
            # hash reproducible; a real trial's salt is random (stalwart init)
            salt=hashlib.sha256(f"stalwart-demo-salt:{seed}".encode()).digest()[:16],
            allocation_key=key,
        )
        if via_http:
            played = _play_via_http(engine, loaded.protocol, play_seed, progress, key)
        else:
            service = CaptureService.open(engine, allocation_key=key)
            played = play_trial(service, demo_parameters(loaded.protocol), play_seed, progress)
        report("analysis plan", 0, 1)
        analysis = analyze_database(engine, seed)
        report("analysis plan", 1, 1)
    finally:
        engine.dispose()
    report("results and report", 0, 1)
    results_path = out / "results.json"
    results_path.write_text(json.dumps(analysis.results, indent=2) + "\n", encoding="utf-8")
    report_path = write_report(
        out / "report.html",
        loaded.protocol,
        analysis.datasets,
        analysis.results,
        analysis.flow,
        analysis.comparison,
        analysis.recomputed,
    )
    report("results and report", 1, 1)
    return DemoOutcome(
        out,
        url,
        results_path,
        report_path,
        analysis,
        played,
        time.perf_counter() - started,
        replaced,
    )
