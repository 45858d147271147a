"""The ``stalwart`` command line: a thin layer, each command one library call.

Errors raised on purpose by the library (``StalwartError``) are printed as one clear message and
exit with the error's ``exit_code``: 1, or 2 for unusable input datasets (``DatasetError``), like
usage errors (Typer's own, 2); a failed audit verification also exits 1.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from stalwart import __version__
from stalwart.cli_progress import stage_progress
from stalwart.errors import StalwartError

__all__ = ["app", "main"]

app = typer.Typer(
    name="stalwart",
    help="Run the STALWART randomized trial end to end from one protocol file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(
    help="The audit trail: verify its hash chain and the data it covers.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
randomization_app = typer.Typer(
    help="The randomization design: simulate it before go-live.", no_args_is_help=True
)
app.add_typer(randomization_app, name="randomization")
user_app = typer.Typer(help="User accounts of a trial database.", no_args_is_help=True)
app.add_typer(user_app, name="user")

out_console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        "-d",
        envvar="STALWART_DATABASE_URL",
        help="SQLAlchemy URL, e.g. sqlite:///trial.db or postgresql+psycopg://user@host/db.",
    ),
]


def _friendly(func: F) -> F:
    """Print a StalwartError as one message and exit 1, instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except StalwartError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False,
) -> None:
    if version:
        out_console.print(f"stalwart {__version__}")
        raise typer.Exit(0)


@app.command()
@_friendly
def demo(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for the database, results.json and report.html."),
    ] = Path("stalwart-demo"),
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the randomization lists and the simulation; same seed, same results."
        ),
    ] = 1,
    database: DatabaseOption = None,
    force: Annotated[
        bool,
        typer.Option(
            help="Replace OUT/stalwart.db even if OUT is not a previous demo run's folder "
            "(a previous demo run there is replaced without it)."
        ),
    ] = False,
    protocol: Annotated[
        Path | None,
        typer.Option(help="A protocol .toml to run instead of the packaged STALWART protocol."),
    ] = None,
    via_http: Annotated[
        bool,
        typer.Option(
            "--via-http",
            help="Play the sites through the HTTP API of a local server the demo starts.",
        ),
    ] = False,
) -> None:
    """Run the STALWART study end to end on simulated sites and report it.

    Example: stalwart demo --seed 1 --out demo-out --via-http
    """
    from stalwart.demo import run_demo

    with stage_progress(err_console) as progress:
        outcome = run_demo(
            out,
            seed=seed,
            database_url=database,
            force=force,
            progress=progress,
            protocol=protocol,
            via_http=via_http,
        )
    table = Table(title="STALWART: published vs this run", show_lines=False)
    for column in ("Quantity", "Published", "This run"):
        table.add_column(column)
    for row in outcome.analysis.comparison:
        table.add_row(row.quantity, row.published, row.this_run)
    out_console.print(table)
    if outcome.replaced:
        out_console.print(f"replaced the previous demo run in {outcome.out}")
    out_console.print(
        f"screened {outcome.played.screened}, randomized {outcome.played.randomized}, "
        f"{outcome.played.writes} service writes; finished in {outcome.seconds:.1f} s"
    )
    out_console.print(f"database: {outcome.database_url}")
    out_console.print(f"results:  {outcome.results_path}")
    out_console.print(f"report:   {outcome.report_path}")


@app.command()
@_friendly
def init(
    database: DatabaseOption = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol .toml (default: the packaged STALWART protocol).")
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the allocation lists (keep it secret; only its fingerprint is stored)."
        ),
    ] = 0,
) -> None:
    """Create a new trial database from a protocol file: schema, sites, allocation lists.

    Example: stalwart init --database sqlite:///trial.db --protocol my-study.toml --seed 8123
    """
    from stalwart.capture.db import create_schema, open_engine, resolve_database_url
    from stalwart.capture.service import initialize_trial
    from stalwart.protocol.load import load_protocol

    loaded = load_protocol(protocol)
    engine = open_engine(resolve_database_url(database))
    try:
        create_schema(engine)
        initialize_trial(engine, loaded, seed=seed, actor="cli")
    finally:
        engine.dispose()
    p = loaded.protocol
    out_console.print(
        f"initialized {p.study.id} {p.study.version}: {len(p.arms)} arms, "
        f"{len(p.sites)} sites (protocol sha256 {loaded.sha256[:12]}...)"
    )


@app.command("validate")
@_friendly
def validate_protocol(
    protocol: Annotated[Path, typer.Argument(help="Protocol .toml file.")],
) -> None:
    """Validate a protocol file and list every problem found.

    Example: stalwart validate my-study.toml
    """
    from stalwart.protocol.load import load_protocol

    loaded = load_protocol(protocol)
    out_console.print(
        f"{protocol}: valid ({loaded.protocol.study.id} "
        f"{loaded.protocol.study.version}, sha256 {loaded.sha256[:12]}...)"
    )


@audit_app.command("verify")
@_friendly
def audit_verify(
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check the audit hash chain and every data row against it; exit 1 on the first mismatch.

    Example: stalwart audit verify --database sqlite:///demo-out/stalwart.db
    """
    from stalwart.capture.audit import verify_audit
    from stalwart.capture.db import open_engine, resolve_database_url
    from stalwart.capture.service import CaptureService

    engine = open_engine(resolve_database_url(database))
    try:
        CaptureService.open(engine)
        report = verify_audit(engine)
    finally:
        engine.dispose()
    if as_json:
        finding = None if report.finding is None else report.finding.__dict__
        out_console.print_json(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "rows": report.rows,
                    "head_hash": report.head_hash,
                    "finding": finding,
                }
            )
        )
    elif report.ok:
        out_console.print(
            f"audit chain verified: {report.records} records, {report.rows} data "
            f"rows, head {report.head_hash[:16]}..."
        )
    if not report.ok:
        assert report.finding is not None
        err_console.print(
            f"[bold red]audit verification failed:[/] {report.finding.message}", highlight=False
        )
        raise typer.Exit(1)


@randomization_app.command("check")
@_friendly
def randomization_check(
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol .toml (default: the packaged STALWART protocol).")
    ] = None,
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


@app.command()
@_friendly
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
        str, typer.Option(help="Where blocks run: local, processes or dask.")
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address, e.g. tcp://host:8786 (default: LocalCluster)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes or LocalCluster workers (default: CPU cores).")
    ] = None,
    protocol: Annotated[
        Path | None, typer.Option(help="Protocol .toml (default: the packaged STALWART protocol).")
    ] = None,
    fidelity: Annotated[
        str,
        typer.Option(
            help="outcomes: draw only what the analyses read (CD4 at baseline and week 32, "
            "events, dropout), from the same model; full: every record (HIV RNA, AEs)."
        ),
    ] = "outcomes",
) -> None:
    """Simulate replicate trials and write their operating characteristics to OUT/oc.json.

    Runs the plan's primary (week-32 CD4: ANCOVA and Welch) and time-to-event (Cox, log-rank)
    analyses on every replicate, vectorized, under the scenario and its null (no treatment
    effect): power, type I error, CD4 differences, events, hazard ratios, interim looks.
    --fidelity outcomes (default) and full give the same distributions; outcomes is faster.

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
        )
    oc = outcome.oc
    table = Table(title=f"Operating characteristics, {replicates} replicates, seed {seed}")
    for column in ("Endpoint", "Comparison", "Method", "Estimate (2.5-97.5%)", "Power", "Type I"):
        table.add_column(column)
    null_rows = {(r["endpoint"], r["arm"], r["method"]): r for r in oc["type_I_error"]}
    for row in [*oc["alternative"]["primary"], *oc["alternative"]["time_to_event"]]:
        dist = row.get("difference") or row.get("hazard_ratio")
        estimate = (
            ""
            if dist is None or dist["median"] is None
            else f"{dist['median']:.3g} ({dist['q025']:.3g} to {dist['q975']:.3g})"
        )
        null = null_rows.get((row["endpoint"], row["arm"], row["method"]))
        table.add_row(
            row["endpoint"],
            f"{row['arm']} vs {row['control']}",
            row["method"],
            estimate,
            f"{row['power']:.3f}",
            "" if null is None else f"{null['type_I_error']:.3f}",
        )
    out_console.print(table)
    out_console.print(f"{outcome.seconds:.1f} s ({oc['run']['executor']}); oc: {outcome.oc_path}")
    for figure in outcome.figures:
        out_console.print(f"figure: {figure}")


@user_app.command("add")
@_friendly
def user_add(
    username: Annotated[str, typer.Option("--username", "-u", help="Login name.")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            "-r",
            help="admin, data_manager, site_coordinator, investigator, monitor, "
            "endpoint_reviewer, statistician_blinded, statistician_unblinded or dsmb.",
        ),
    ],
    database: DatabaseOption = None,
    site: Annotated[
        str | None, typer.Option("--site", "-s", help="Site code (site roles only).")
    ] = None,
    full_name: Annotated[str | None, typer.Option("--name", help="Full name.")] = None,
) -> None:
    """Add a user account; the password comes from STALWART_PASSWORD or a prompt.

    The first admin is made this way, by whoever runs the database.

    Example: stalwart user add --database sqlite:///trial.db --username alice --role admin
    """
    import os

    from stalwart.capture.db import open_engine, resolve_database_url
    from stalwart.capture.service import CaptureService
    from stalwart.capture.users import UserStore

    password = os.environ.get("STALWART_PASSWORD") or typer.prompt(
        f"password for {username}", hide_input=True, confirmation_prompt=True
    )
    engine = open_engine(resolve_database_url(database))
    try:
        CaptureService.open(engine)
        account = UserStore(engine).add_user(
            username, password, role, "cli", site=site, full_name=full_name
        )
    finally:
        engine.dispose()
    where = f" at {account.site}" if account.site else ""
    out_console.print(f"added user {account.username} ({account.role}{where})")


@app.command()
@_friendly
def serve(
    database: DatabaseOption = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    pool_size: Annotated[
        int | None,
        typer.Option(
            help="PostgreSQL connections of each worker, 4 unless given (writes queue on one "
            "audit chain: a few per core is enough).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the trial database: JSON API (/api, docs at /docs), pages (/), health (/healthz).

    Example: stalwart serve --database postgresql+psycopg://user@db/trial --port 8000
    """
    import os

    import uvicorn

    from stalwart.capture.db import resolve_database_url

    url = resolve_database_url(database, Path.cwd())
    if workers < 1:
        raise typer.BadParameter("--workers must be at least 1")
    if pool_size is not None and pool_size < 1:
        raise typer.BadParameter("--pool-size must be at least 1")
    from stalwart.web.server import POOL_SIZE_ENV, check_database

    check_database(url)  # a bad URL or an empty database fails before the server starts
    os.environ["STALWART_DATABASE_URL"] = url
    if pool_size is not None:
        os.environ[POOL_SIZE_ENV] = str(pool_size)
    uvicorn.run(
        "stalwart.web.server:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )


@app.command()
@_friendly
def analyze(
    adam: Annotated[
        Path,
        typer.Option(help="Folder of CDISC ADaM datasets: adsl and adtte and/or BDS, XPT or CSV."),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json.")] = Path(
        "stalwart-analysis"
    ),
    control: Annotated[
        str | None,
        typer.Option(help="Control arm (default: the arm named placebo/control, else the first)."),
    ] = None,
    arm_var: Annotated[
        str | None,
        typer.Option(
            "--arm-var", help="ADSL arm variable (default: TRT01P, else ARM, else ARMCD)."
        ),
    ] = None,
    population: Annotated[
        str | None,
        typer.Option(
            help="ADSL population flag whose subjects (value Y) are analysed, e.g. SAFFL."
        ),
    ] = None,
    bds: Annotated[
        list[str] | None,
        typer.Option(
            help="BDS dataset to analyse by visit, repeatable (default: every ad* with PARAMCD, "
            "AVAL and AVISIT other than ADSL, ADTTE, ADAE)."
        ),
    ] = None,
) -> None:
    """Analyse a foreign trial from its CDISC ADaM files and write OUT/results.json.

    ADTTE, per PARAMCD: Cox (Efron) hazard ratio of each arm vs control with 95% CI, Wald, LR and
    score p; log-rank p (pairwise and across all arms); Kaplan-Meier medians with log-log CIs.
    CNSR as ADaM: 1 censored. Each BDS dataset (ADLB, questionnaires), per PARAMCD and analysis
    visit: ANCOVA AVAL ~ arm + BASE (when BASE exists) and Welch's t-test. Arms come from ADSL.

    Example: stalwart analyze --adam ../shared/data/cdiscpilot01/adam --out pilot --population ITTFL
    """
    from stalwart.analysis.foreign import run_adam_analysis

    results, path = run_adam_analysis(
        adam, out, arm_var=arm_var, control=control, population=population, bds=bds
    )
    table = Table(title=f"{results.study or 'ADaM'}: {' vs '.join(results.arms)}")
    for column in ("Parameter", "Comparison", "Method", "Estimate (95% CI)", "p"):
        table.add_column(column)
    for tte in results.time_to_event:
        estimate = (
            ""
            if tte.hazard_ratio is None
            else f"HR {tte.hazard_ratio:.3g} ({tte.ci_low:.3g} to {tte.ci_high:.3g})"
        )
        p = "" if tte.p_value is None else f"{tte.p_value:.3g}"
        table.add_row(tte.parameter, f"{tte.arm} vs {tte.control}", tte.method, estimate, p)
    for row in results.continuous:
        estimate = (
            ""
            if row.difference is None
            else f"{row.difference:.3g} ({row.ci_low:.3g} to {row.ci_high:.3g})"
        )
        p = "" if row.p_value is None else f"{row.p_value:.3g}"
        table.add_row(
            f"{row.parameter} {row.visit}", f"{row.arm} vs {row.control}", row.method, estimate, p
        )
    out_console.print(table)
    for note in results.notes:
        out_console.print(f"note: {note}", highlight=False)
    out_console.print(f"results: {path}")


@app.command()
@_friendly
def report(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report files.")],
    database: DatabaseOption = None,
    closed: Annotated[
        bool,
        typer.Option(
            "--closed/--open", help="Closed report by arm (unblinded roles only), or open (pooled)."
        ),
    ] = False,
    fmt: Annotated[str, typer.Option("--format", help="html, pdf or both.")] = "both",
    protocol: Annotated[
        Path | None,
        typer.Option(help="Protocol .toml the database must run (default: the database's own)."),
    ] = None,
) -> None:
    """Write the DSMB report (HTML and PDF) of a frozen data snapshot named by its hash.

    Example: stalwart report --database sqlite:///demo-out/stalwart.db --out reports --closed
    """
    from stalwart.capture.db import resolve_database_url
    from stalwart.outputs.study_report import build_report_from_url
    from stalwart.protocol.load import load_protocol

    expected = None if protocol is None else load_protocol(protocol)
    files = build_report_from_url(
        resolve_database_url(database), out, closed=closed, fmt=fmt, protocol=expected
    )
    out_console.print(f"{files.version} report of snapshot {files.snapshot}")
    for path in (files.html, files.pdf):
        if path is not None:
            out_console.print(f"wrote {path}", highlight=False)
    pages = "" if files.pages is None else f", {files.pages} PDF pages"
    out_console.print(f"{files.seconds:.1f} s{pages}")


@app.command("export")
@_friendly
def export_(
    kind: Annotated[str, typer.Argument(help="sdtm, adam, odm or define.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the files.")] = Path(
        "stalwart-export"
    ),
    database: DatabaseOption = None,
    protocol: Annotated[
        Path | None,
        typer.Option(help="Protocol .toml the database must run (default: the database's own)."),
    ] = None,
) -> None:
    """Export the trial database as CDISC SDTM or ADaM (XPT v5, CSV, Define-XML 2.0) or ODM 1.3.2.

    Example: stalwart export sdtm --database sqlite:///demo-out/stalwart.db --out sdtm
    """
    from stalwart.capture.db import open_engine, resolve_database_url
    from stalwart.outputs.cdisc import export_cdisc

    engine = open_engine(resolve_database_url(database))
    try:
        summary = export_cdisc(kind, engine, out, protocol)
    finally:
        engine.dispose()
    for path in summary.files:
        rows = summary.rows.get(path.stem.upper())
        out_console.print(
            f"wrote {path}" + ("" if rows is None else f" ({rows} rows)"), highlight=False
        )


@app.command("import")
@_friendly
def import_(
    kind: Annotated[str, typer.Argument(help="odm (the only import format).")],
    file: Annotated[Path, typer.Argument(help="The ODM file `stalwart export odm` wrote.")],
    database: DatabaseOption = None,
) -> None:
    """Restore a trial database from its ODM export into an empty database (same data hash).

    Example: stalwart import odm backup/stalwart.odm.xml --database sqlite:///restored.db
    """
    from stalwart.capture.audit import data_sha256
    from stalwart.capture.db import open_engine, resolve_database_url
    from stalwart.errors import ExportError
    from stalwart.outputs.odm_import import import_odm

    if kind != "odm":
        raise ExportError(f"unknown import format {kind!r}; use odm")
    engine = open_engine(resolve_database_url(database))
    try:
        summary = import_odm(file, engine)
        digest = data_sha256(engine)
    finally:
        engine.dispose()
    out_console.print(
        f"restored {summary.records} audit records, {sum(summary.rows.values())} rows; "
        f"chain head {summary.head_hash[:16]}..., data sha256 {digest}",
        highlight=False,
    )


@app.command()
@_friendly
def backup(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The backup file to write (ODM 1.3.2 XML).")
    ],
    database: DatabaseOption = None,
) -> None:
    """Back up a trial database to one ODM file: every row and the audit chain, exactly.

    The database's audit chain must verify first. The file is written whole or not at all (an
    older file at OUT is replaced only by a complete backup). User passwords and login tokens
    are not in it. `stalwart restore` reads it.

    Example: stalwart backup --database sqlite:///trial.db --out backups/trial.odm.xml
    """
    import os
    import tempfile

    from stalwart.capture.audit import data_sha256
    from stalwart.capture.db import open_engine, resolve_database_url
    from stalwart.capture.service import CaptureService
    from stalwart.errors import ConfigurationError
    from stalwart.outputs.odm import export_odm

    if out.is_dir():
        raise ConfigurationError(f"--out {out} is a folder: give the backup file's name")
    engine = open_engine(resolve_database_url(database))
    try:
        loaded = CaptureService.open(engine).loaded
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        os.close(fd)
        try:
            export_odm(engine, loaded, Path(staging))
            Path(staging).replace(out)
        finally:
            Path(staging).unlink(missing_ok=True)
        digest = data_sha256(engine)
    finally:
        engine.dispose()
    out_console.print(f"backed up to {out}; data sha256 {digest}", highlight=False)


@app.command()
@_friendly
def restore(
    file: Annotated[Path, typer.Argument(help="The backup file `stalwart backup` wrote.")],
    database: DatabaseOption = None,
) -> None:
    """Restore a backup into a new, empty database: the same data sha256; audit verify passes.

    The file is read and every record's hash checked before the database is touched; a missing,
    corrupt or altered file, or a database that already holds data, is refused and nothing is
    written.

    Example: stalwart restore backups/trial.odm.xml --database sqlite:///restored.db
    """
    from stalwart.capture.audit import data_sha256
    from stalwart.capture.db import open_engine, resolve_database_url
    from stalwart.outputs.odm_import import read_odm, restore_odm

    url = resolve_database_url(database)
    checked = read_odm(file)
    engine = open_engine(url)
    try:
        summary = restore_odm(checked, engine)
        digest = data_sha256(engine)
    finally:
        engine.dispose()
    out_console.print(
        f"restored {summary.records} audit records, {sum(summary.rows.values())} rows from "
        f"{file}; chain head {summary.head_hash[:16]}..., data sha256 {digest}",
        highlight=False,
    )


def main() -> None:
    """Entry point of the ``stalwart`` script."""
    app(prog_name="stalwart")


if __name__ == "__main__":  # pragma: no cover
    main()
