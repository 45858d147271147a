"""Commands that read a trial's data out or back in: analyze, report, export, import, backup,
restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stalwart.cli.common import DatabaseOption, opened_engine, out_console

__all__ = ["analyze", "backup", "export_", "import_", "report", "restore"]


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

    Example: stalwart analyze --adam stalwart-demo/adam --out analysis --population ITTFL
    """
    from stalwart.cdisc.foreign import run_adam_analysis

    results, path = run_adam_analysis(
        adam, out, arm_var=arm_var, control=control, population=population, bds=bds
    )
    table = Table(title=f"{results.study or 'ADaM'}: {' vs '.join(results.arms)}")
    for column in ("Parameter", "Comparison", "Method", "Estimate (95% CI)", "p"):
        table.add_column(column)
    for tte in results.time_to_event:
        estimate = (
            "HR not estimable"
            if tte.hazard_ratio is None
            else f"HR {tte.hazard_ratio:.3g} ({tte.ci_low:.3g} to {tte.ci_high:.3g})"
        )
        if tte.method == "logrank":
            estimate = ""
        p = "" if tte.p_value is None else f"{tte.p_value:.3g}"
        if tte.p_value is None and tte.lr_p_value is not None:
            p = f"LR {tte.lr_p_value:.3g}, score {tte.score_p_value or float('nan'):.3g}"
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
    from stalwart.protocol.load import load_protocol
    from stalwart.reports.study_report import build_report_from_url

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
    meddra: Annotated[
        Path | None,
        typer.Option(
            help="MedAscii folder of a MedDRA release you hold (llt.asc, mdhier.asc): codes the "
            "AE terms (sdtm, define). Without it AEDECOD is the protocol's term list, said so."
        ),
    ] = None,
) -> None:
    """Export the trial database as CDISC SDTM (SDTMIG 3.4, Define-XML 2.1, reviewer's guide) or
    ADaM (XPT v5, CSV, Define-XML 2.0) or ODM 1.3.2.

    Example: stalwart export sdtm --database sqlite:///demo-out/stalwart.db --out sdtm
    """
    from stalwart.cdisc.export import export_cdisc

    with opened_engine(database) as engine:
        summary = export_cdisc(kind, engine, out, protocol, meddra)
    for path in summary.files:
        rows = summary.rows.get(path.stem.upper())
        out_console.print(
            f"wrote {path}" + ("" if rows is None else f" ({rows} rows)"), highlight=False
        )


def import_(
    kind: Annotated[str, typer.Argument(help="odm (the only import format).")],
    file: Annotated[Path, typer.Argument(help="The ODM file `stalwart export odm` wrote.")],
    database: DatabaseOption = None,
) -> None:
    """Restore a trial database from its ODM export into an empty database (same data hash).

    Example: stalwart import odm backup/stalwart.odm.xml --database sqlite:///restored.db
    """
    from stalwart.capture.audit import data_sha256
    from stalwart.cdisc.odm_import import import_odm
    from stalwart.errors import ExportError

    if kind != "odm":
        raise ExportError(f"unknown import format {kind!r}; use odm")
    with opened_engine(database) as engine:
        summary = import_odm(file, engine)
        digest = data_sha256(engine)
    out_console.print(
        f"restored {summary.records} audit records, {sum(summary.rows.values())} rows; "
        f"chain head {summary.head_hash[:16]}..., data sha256 {digest}",
        highlight=False,
    )


def backup(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The backup file to write (ODM 1.3.2 XML).")
    ],
    database: DatabaseOption = None,
) -> None:
    """Back up a trial database to one ODM file: every row and the audit chain, exactly.

    The database's audit chain must verify first. The file is written whole or not at all (an
    older file at OUT is replaced only by a complete backup). It is read from one snapshot, so
    writes may go on; the data sha256 printed is that snapshot's, which a restore reproduces.
    User passwords and login tokens are not in it. `stalwart restore` reads it.

    Example: stalwart backup --database sqlite:///trial.db --out backups/trial.odm.xml
    """
    from stalwart.cdisc.odm import write_backup

    with opened_engine(database) as engine:
        done = write_backup(engine, out)
    out_console.print(
        f"backed up to {out}; data sha256 {done.data_sha256}; {done.records} audit records, "
        f"chain head {done.head_hash[:16]}... (one snapshot: a restore gives this sha256)",
        highlight=False,
    )


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
    from stalwart.capture.db import resolve_database_url
    from stalwart.cdisc.odm_import import read_odm, restore_odm

    url = resolve_database_url(database)  # a bad URL is refused before the file is read
    checked = read_odm(file)
    with opened_engine(url) as engine:
        summary = restore_odm(checked, engine)
        digest = data_sha256(engine)
    out_console.print(
        f"restored {summary.records} audit records, {sum(summary.rows.values())} rows from "
        f"{file}; chain head {summary.head_hash[:16]}..., data sha256 {digest}",
        highlight=False,
    )
