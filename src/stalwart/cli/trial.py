"""Commands that make, check and serve a trial database: demo, init, validate, user add, serve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stalwart.cli.common import (
    DatabaseOption,
    ProtocolOption,
    err_console,
    opened_engine,
    out_console,
)
from stalwart.cli.progress import stage_progress

__all__ = ["demo", "init", "serve", "user_add", "validate_protocol"]


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
    from stalwart.play.demo import run_demo

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
    from stalwart.cli.design import model_check_table

    out_console.print(model_check_table())
    table = Table(
        title=f"This demo run: one simulated trial (seed {seed}, model at the posterior "
        "medians); one draw, not the model's prediction",
        show_lines=False,
    )
    for column in ("Quantity", "This run"):
        table.add_column(column)
    for row in outcome.analysis.comparison:
        table.add_row(row.quantity, row.this_run)
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


def init(
    database: DatabaseOption = None,
    protocol: ProtocolOption = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the allocation lists (default: a new 128-bit seed from the operating "
            "system's generator). Keep it secret: only a salted, slow fingerprint is stored.",
            show_default=False,
        ),
    ] = None,
    allocation_key: Annotated[
        Path | None,
        typer.Option(
            help="Seal the allocation lists: the arms are stored encrypted under this key "
            "(created, owner-only, when the file does not exist). Keep it off the database "
            "server's disks and backups; `serve --allocation-key` needs it.",
            show_default=False,
        ),
    ] = None,
    seed_file: Annotated[
        Path | None,
        typer.Option(
            help="Write the drawn seed to this new file (owner-only) instead of showing it.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a new trial database from a protocol file: schema, sites, allocation lists.

    Without --seed a 128-bit seed is drawn and shown once (or written to --seed-file): it
    regenerates the allocation lists, so keep it where the trial statistician's sealed
    documents are, never beside the database.

    Example: stalwart init --database sqlite:///trial.db --protocol my-study.toml
    --seed-file /secure/trial-seed.txt
    """
    import os
    import secrets

    from stalwart.capture.db import create_schema
    from stalwart.capture.service import initialize_trial
    from stalwart.errors import ConfigurationError
    from stalwart.protocol.load import load_protocol

    if seed is not None and seed_file is not None:
        raise ConfigurationError("give --seed or --seed-file, not both")
    if seed_file is not None and (seed_file.exists() or not seed_file.parent.is_dir()):
        raise ConfigurationError(f"--seed-file {seed_file}: give a new file in an existing folder")
    loaded = load_protocol(protocol)
    key = None
    if allocation_key is not None:
        from stalwart.capture.sealing import generate_allocation_key, load_allocation_key

        if allocation_key.exists():
            key = load_allocation_key(str(allocation_key))
        else:
            key = generate_allocation_key(allocation_key)
            out_console.print(f"wrote a new allocation key to {allocation_key} (owner-only)")
    drawn = seed is None
    chosen = secrets.randbits(128) if seed is None else seed
    with opened_engine(database) as engine:
        create_schema(engine)
        initialize_trial(engine, loaded, seed=chosen, actor="cli", allocation_key=key)
    p = loaded.protocol
    out_console.print(
        f"initialized {p.study.id} {p.study.version}: {len(p.arms)} arms, "
        f"{len(p.sites)} sites (protocol sha256 {loaded.sha256[:12]}...)"
    )
    if drawn and seed_file is not None:
        fd = os.open(seed_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{chosen}\n")
        out_console.print(f"wrote the randomization seed to {seed_file} (owner-only)")
    elif drawn:
        out_console.print(
            f"randomization seed: {chosen}\nIt is shown only now and is not stored: keep it "
            "sealed (it regenerates the allocation lists), e.g. with the trial statistician.",
            highlight=False,
        )


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

    from stalwart.capture.service import CaptureService
    from stalwart.capture.users import UserStore

    password = os.environ.get("STALWART_PASSWORD") or typer.prompt(
        f"password for {username}", hide_input=True, confirmation_prompt=True
    )
    with opened_engine(database) as engine:
        CaptureService.open(engine)
        account = UserStore(engine).add_user(
            username, password, role, "cli", site=site, full_name=full_name
        )
    where = f" at {account.site}" if account.site else ""
    out_console.print(f"added user {account.username} ({account.role}{where})")


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
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies",
            help="Mark the session cookie Secure and send HSTS: the site is served over HTTPS "
            "(e.g. behind a TLS proxy).",
        ),
    ] = False,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated addresses or networks of the proxies whose X-Forwarded-For "
            "and X-Forwarded-Proto are trusted ('*': any); none unless given, so a client's "
            "own X-Forwarded-For is ignored.",
            show_default=False,
        ),
    ] = None,
    allocation_key: Annotated[
        str | None,
        typer.Option(
            help="The key of the trial's sealed allocation lists (the file `stalwart init "
            "--allocation-key` wrote, or env:NAME): randomization opens one slot with it.",
            show_default=False,
        ),
    ] = None,
    checkpoint_key: Annotated[
        str | None,
        typer.Option(
            help="Sign audit checkpoints with this Ed25519 key (PEM file or env:NAME; see "
            "`stalwart audit keygen`), held outside the database.",
            show_default=False,
        ),
    ] = None,
    checkpoint_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the checkpoints go: a folder on another disk or a mounted object store.",
            show_default=False,
        ),
    ] = None,
    checkpoint_records: Annotated[
        int, typer.Option(help="Write a checkpoint after this many new audit records.")
    ] = 1000,
    checkpoint_minutes: Annotated[
        float,
        typer.Option(help="...or after this many minutes, when any record was appended."),
    ] = 5.0,
) -> None:
    """Serve the trial database: JSON API (/api, docs at /docs), pages (/), liveness (/healthz),
    readiness (/readyz).

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
    from stalwart.web.server import (
        POOL_SIZE_ENV,
        SECURE_COOKIES_ENV,
        check_database,
        trusted_proxies,
    )

    try:
        proxies = trusted_proxies(forwarded_allow_ips)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--forwarded-allow-ips") from None
    check_database(url)  # a bad URL or an empty database fails before the server starts
    if (checkpoint_key is None) != (checkpoint_dir is None):
        raise typer.BadParameter("give --checkpoint-key and --checkpoint-dir together")
    stop_checkpoints = None
    if checkpoint_key is not None and checkpoint_dir is not None:
        stop_checkpoints = _start_checkpoints(
            url, checkpoint_key, checkpoint_dir, checkpoint_records, checkpoint_minutes
        )
    os.environ["STALWART_DATABASE_URL"] = url
    if allocation_key is not None:
        from stalwart.capture.sealing import load_allocation_key
        from stalwart.web.server import ALLOCATION_KEY_ENV

        load_allocation_key(allocation_key)  # a missing or bad key fails before the server starts
        os.environ[ALLOCATION_KEY_ENV] = allocation_key
    if pool_size is not None:
        os.environ[POOL_SIZE_ENV] = str(pool_size)
    os.environ[SECURE_COOKIES_ENV] = "1" if secure_cookies else ""
    try:
        uvicorn.run(
            "stalwart.web.server:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            # without trusted proxies uvicorn reads no proxy header: request.client is the peer
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )
    finally:
        if stop_checkpoints is not None:
            stop_checkpoints()


def _start_checkpoints(
    url: str, key: str, folder: Path, records: int, minutes: float
) -> Callable[[], None]:
    """Start the checkpoint writer in a thread of this (the serving) process; returns its stop,
    which writes a last checkpoint when the chain grew since the previous one."""
    import threading

    from stalwart.capture.anchor import Checkpointer, load_private_key
    from stalwart.capture.db import open_engine

    signing = load_private_key(key)
    if records < 1 or minutes <= 0:
        raise typer.BadParameter("--checkpoint-records and --checkpoint-minutes must be positive")
    engine = open_engine(url)
    writer = Checkpointer(
        engine,
        signing,
        folder,
        every_records=records,
        every_seconds=minutes * 60,
        report=lambda line: err_console.print(line, highlight=False),
    )
    writer.tick()  # a chain that does not extend the folder's last checkpoint is reported now
    thread = threading.Thread(target=writer.run, name="audit-checkpoints", daemon=True)
    thread.start()

    def stop() -> None:
        writer.stop.set()
        thread.join(timeout=60)
        engine.dispose()

    return stop
