"""The ``stalwart`` command line: a thin layer, each command one library call.

Errors raised on purpose by the library (``StalwartError``) are printed as one clear message and
exit with status 1; a failed audit verification also exits 1. Usage errors exit 2 (Typer's own).
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
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stalwart import __version__
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
            raise typer.Exit(1) from None

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
    force: Annotated[bool, typer.Option(help="Replace OUT/stalwart.db if it exists.")] = False,
    protocol: Annotated[
        Path | None,
        typer.Option(help="A protocol .toml to run instead of the packaged STALWART protocol."),
    ] = None,
) -> None:
    """Run the STALWART study end to end on simulated sites and report it.

    Example: stalwart demo --seed 1 --out demo-out
    """
    from stalwart.demo import run_demo

    with Progress(
        TextColumn("{task.description:<30}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        outcome = run_demo(
            out, seed=seed, database_url=database, force=force, progress=progress, protocol=protocol
        )
    table = Table(title="STALWART: published vs this run", show_lines=False)
    for column in ("Quantity", "Published", "This run"):
        table.add_column(column)
    for row in outcome.analysis.comparison:
        table.add_row(row.quantity, row.published, row.this_run)
    out_console.print(table)
    out_console.print(
        f"screened {outcome.played.screened}, randomized {outcome.played.randomized}, "
        f"{outcome.played.writes} service writes, {outcome.seconds:.1f} s"
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


def main() -> None:
    """Entry point of the ``stalwart`` script."""
    app(prog_name="stalwart")


if __name__ == "__main__":  # pragma: no cover
    main()
