"""Commands of the audit trail: verify it (against signed checkpoints), make the checkpoint key,
write a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from stalwart.cli.common import DatabaseOption, err_console, opened_engine, out_console

__all__ = ["audit_checkpoint", "audit_keygen", "audit_verify"]

KeyOption = Annotated[
    str,
    typer.Option(
        "--key",
        help="The Ed25519 signing key: a PEM file `audit keygen` wrote, or env:NAME for one held "
        "in environment variable NAME. Never keep it in or beside the trial database.",
    ),
]


def audit_keygen(
    private: Annotated[Path, typer.Option("--private", help="File for the signing key (new).")],
    public: Annotated[Path, typer.Option("--public", help="File for the public key (new).")],
) -> None:
    """Make the key pair that signs audit checkpoints; give the public key to whoever verifies.

    Example: stalwart audit keygen --private /secure/checkpoint.key --public checkpoint.pub
    """
    from stalwart.capture.anchor import generate_keys

    key_id = generate_keys(private, public)
    out_console.print(
        f"wrote signing key {private} (owner-only) and public key {public}; key id {key_id}. "
        "Keep the signing key off the database server's disks and backups.",
        highlight=False,
    )


def audit_checkpoint(
    key: KeyOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the checkpoint files.")],
    database: DatabaseOption = None,
) -> None:
    """Sign the audit chain's current head into a new checkpoint file of OUT.

    The chain must extend the newest checkpoint of OUT signed by the same key (checked from
    there, or from the first record): a rewritten chain is never signed.

    Example: stalwart audit checkpoint --database sqlite:///trial.db --key /secure/cp.key --out cps
    """
    from stalwart.capture.anchor import load_private_key, write_checkpoint
    from stalwart.capture.service import CaptureService

    signing = load_private_key(key)
    with opened_engine(database) as engine:
        CaptureService.open(engine)
        cp = write_checkpoint(engine, signing, out)
    out_console.print(
        f"wrote {cp.path}: record {cp.sequence}, head {cp.head_hash[:16]}...", highlight=False
    )


def audit_verify(
    database: DatabaseOption = None,
    checkpoints: Annotated[
        Path | None,
        typer.Option(help="Folder of signed checkpoints the chain must agree with."),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", help="The checkpoints' public key (PEM file or env:NAME)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Check the audit hash chain, every data row against it and, with --checkpoints, the chain
    against each signed checkpoint; exit 1 on the first mismatch.

    Example: stalwart audit verify --database sqlite:///trial.db --checkpoints cps
    --public-key checkpoint.pub
    """
    from stalwart.capture.anchor import load_public_key, read_checkpoints
    from stalwart.capture.audit import Anchor, verify_audit
    from stalwart.capture.service import CaptureService
    from stalwart.errors import ConfigurationError

    anchors: list[Anchor] = []
    if (checkpoints is None) != (public_key is None):
        raise ConfigurationError("give --checkpoints and --public-key together")
    if checkpoints is not None and public_key is not None:
        signed = read_checkpoints(checkpoints, load_public_key(public_key))
        anchors = [Anchor(c.sequence, c.head_hash, c.label) for c in signed]
    with opened_engine(database) as engine:
        CaptureService.open(engine)
        report = verify_audit(engine, anchors)
    if as_json:
        finding = None if report.finding is None else report.finding.__dict__
        out_console.print_json(
            json.dumps(
                {
                    "ok": report.ok,
                    "records": report.records,
                    "rows": report.rows,
                    "head_hash": report.head_hash,
                    "checkpoints": len(anchors),
                    "finding": finding,
                }
            )
        )
    elif report.ok:
        against = f", agrees with {len(anchors)} signed checkpoints" if anchors else ""
        out_console.print(
            f"audit chain verified: {report.records} records, {report.rows} data "
            f"rows, head {report.head_hash[:16]}...{against}"
        )
    if not report.ok:
        assert report.finding is not None
        err_console.print(
            f"[bold red]audit verification failed:[/] {report.finding.message}", highlight=False
        )
        raise typer.Exit(1)
