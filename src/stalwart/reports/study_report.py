"""The DSMB study report: HTML and PDF (WeasyPrint), open or closed, from a frozen snapshot.

* **Open** (pooled): every arm pooled into one group before any table or figure is made; no
  comparison between arms, no by-arm table, one Kaplan-Meier curve, CONSORT totals only. For
  anyone overseeing the trial (blinded statisticians, data managers, the sponsor).
* **Closed** (by arm): everything by arm, the analysis plan's comparisons, the forest plot and
  the published figures beside this run's. For unblinded roles only (the DSMB and the unblinded
  statistician); the web app enforces that, the command line trusts whoever holds the database.

Both come from one :class:`~stalwart.reports.snapshot.Snapshot`: the store read once, in one
transaction, and named by its data hash. The hash, the protocol and software versions, the time
generated and OPEN or CLOSED stand in every HTML section and in the header and footer of every
PDF page (CSS ``@page`` margin boxes). Everything is rendered in memory first; files are written
only when all of it succeeded, so bad input leaves nothing behind.

:func:`build_report` (``stalwart report``) uses the machine's second core: forked children
(:mod:`~stalwart.reports._forked`) run the closed report's analysis plan while the parent builds
the other sections, and render the PDF, having imported WeasyPrint while the parent read the
store. The page and the PDF are the same as made in one process (the web app's way).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gc
import logging
import re
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import jinja2
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from stalwart import __version__
from stalwart.analysis.datasets.bundle import TrialDatasets, derive_datasets
from stalwart.analysis.flow import Flow, flow_counts
from stalwart.analysis.recompute import published_counts, recompute_published
from stalwart.analysis.results import PlanResult
from stalwart.capture.db import open_engine
from stalwart.errors import ConfigurationError
from stalwart.protocol.load import LoadedProtocol
from stalwart.protocol.schema import Protocol
from stalwart.published import published_comparison
from stalwart.reports._forked import Worker, fork_worker
from stalwart.reports.report import template_environment
from stalwart.reports.report_dsmb import (
    POOLED,
    ae_grade_table,
    event_listing,
    forest_figures,
    longitudinal_table,
    pool_datasets,
    pool_flow,
    safety_table,
)
from stalwart.reports.report_monitoring import (
    accrual_by_site,
    accrual_table,
    data_quality_table,
    death_listing,
    deviation_listing,
    deviation_table,
    exposure_table,
    sae_listing,
    scheduled_visits,
)
from stalwart.reports.report_outcomes import LabSection, km_sections, lab_section
from stalwart.reports.report_participants import (
    ae_tables,
    baseline_table,
    check_datasets,
    consort_figure,
    flow_tables,
)
from stalwart.reports.report_sections import (
    comparison_table,
    primary_table,
    recomputed_table,
    tte_table,
)
from stalwart.reports.report_tables import Arms
from stalwart.reports.snapshot import Snapshot, take_snapshot

__all__ = [
    "FORMATS",
    "ReportFiles",
    "ReportFormat",
    "build_report",
    "build_report_from_url",
    "render_pdf",
    "render_study_report",
]

ReportFormat = Literal["html", "pdf", "both"]
"""What ``build_report`` writes: the HTML page, the PDF, or both."""

FORMATS: tuple[str, ...] = get_args(ReportFormat)


@dataclass(frozen=True)
class ReportFiles:
    """What ``build_report`` wrote: the files (None for a format not asked for) and the snapshot
    they came from."""

    snapshot: str
    closed: bool
    html: Path | None
    pdf: Path | None
    pages: int | None
    seconds: float

    @property
    def version(self) -> str:
        """``OPEN`` or ``CLOSED``."""
        return "CLOSED" if self.closed else "OPEN"


def _check_format(fmt: str) -> ReportFormat:
    if fmt not in FORMATS:
        raise ConfigurationError(
            f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)} (--format)"
        )
    return fmt  # type: ignore[return-value]


def _css_string(value: object) -> str:
    """``value`` as the body of a CSS double-quoted string (for ``@page`` ``content``)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return text.replace("\n", " ").replace("\r", " ")


def _environment() -> jinja2.Environment:
    env = template_environment()
    env.filters["css_string"] = _css_string
    return env


def _stamp(snapshot: Snapshot, closed: bool, generated: dt.datetime) -> dict[str, str]:
    study = snapshot.loaded.protocol.study
    return {
        "version": "CLOSED" if closed else "OPEN",
        "snapshot": snapshot.data_sha256,
        "protocol": f"{study.id} {study.version}",
        "software": f"stalwart {__version__}",
        "generated": generated.isoformat(timespec="seconds"),
        "cutoff": snapshot.cutoff.isoformat(),
        "lock": snapshot.lock,
    }


def _provenance(snapshot: Snapshot, closed: bool, generated: dt.datetime) -> list[tuple[str, str]]:
    study = snapshot.loaded.protocol.study
    return [
        ("Report", "CLOSED (by arm)" if closed else "OPEN (arms pooled)"),
        ("Data cut-off (latest date in the data)", snapshot.cutoff.isoformat()),
        ("Data snapshot (SHA-256 of the data)", snapshot.data_sha256),
        ("Audit chain head", f"record {snapshot.audit_sequence}, {snapshot.audit_head}"),
        ("Data lock", snapshot.lock),
        ("Protocol", f"{study.id} version {study.version}"),
        ("Protocol SHA-256", snapshot.loaded.sha256),
        ("Software version", f"stalwart {__version__}"),
        ("Snapshot taken", snapshot.taken_at.isoformat(timespec="seconds")),
        ("Generated", generated.isoformat(timespec="seconds")),
    ]


def _lab_sections(protocol: Protocol, datasets: TrialDatasets, arms: Arms) -> list[LabSection]:
    cd4 = lab_section(protocol, datasets.adlb, arms, parameter="CD4")
    rna = lab_section(
        protocol,
        datasets.adlb,
        arms,
        parameter="LHIVRNA",
        label="log10 HIV RNA",
        unit="log10 copies/mL",
    )
    return [cd4, rna]


def _review_counts(datasets: TrialDatasets) -> Mapping[str, Any] | None:
    counts = getattr(datasets, "endpoint_review", None)
    as_json = getattr(counts, "as_json", None)
    return as_json() if callable(as_json) else None


PlanInputs = tuple[Protocol, TrialDatasets, Flow, Arms]
PlanSections = tuple[PlanResult | None, dict[str, Any]]


def _prepare_plan() -> None:
    """Import what the analysis plan runs on (the models, scipy.optimize, the design) in the
    process that runs it, before its data are ready."""
    import stalwart.analysis.plan
    import stalwart.reports.report_interim  # noqa: F401


def _plan_sections(inputs: PlanInputs) -> PlanSections:
    """The closed report's analysis plan and the sections built on it (the forest plots aside).

    An interim look: a section the data cannot support yet is named in ``not_estimable``, not
    fatal.
    """
    from stalwart.analysis.plan import analyze_available
    from stalwart.reports.report_interim import interim_section

    protocol, datasets, flow, arms = inputs
    plan, not_estimable = analyze_available(protocol, datasets)
    sections: dict[str, Any] = {
        "not_estimable": not_estimable,
        "interim": interim_section(protocol, plan, arms),
    }
    if plan is None:
        return plan, sections
    sections.update(
        primary=primary_table(protocol, plan.primary, arms),
        secondary=primary_table(
            protocol,
            plan.secondary,
            arms,
            key="secondary",
            caption="Secondary endpoints: each arm compared with the control arm",
        )
        if plan.secondary
        else None,
        longitudinal=longitudinal_table(protocol, plan.longitudinal, arms),
        tte=tte_table(protocol, plan.time_to_event, arms),
        safety=safety_table(plan.safety, arms),
        comparison=comparison_table(
            published_comparison(
                protocol.study.id, plan.to_dict(), flow.completed, protocol.arm_codes
            )
        ),
    )
    counts = published_counts(protocol.study.id)
    if counts is not None:
        tests = recompute_published(counts, alpha=protocol.analysis.alpha)
        sections["recomputed"] = recomputed_table(counts, tests)
    return plan, sections


def _context(
    snapshot: Snapshot,
    closed: bool,
    generated: dt.datetime,
    planner: Worker[PlanInputs, PlanSections] | None = None,
) -> dict[str, Any]:
    """The template's context. A closed report's analysis plan is computed by ``planner`` (a
    forked child, :mod:`~stalwart.reports._forked`) while this process builds the other
    sections; None computes it here."""
    protocol = snapshot.loaded.protocol
    by_arm = derive_datasets(protocol, snapshot.extract)
    check_datasets(by_arm, Arms.of(protocol))
    flow = flow_counts(protocol, snapshot.extract, by_arm)
    analysis: Worker[PlanInputs, PlanSections] | None = None
    if closed:
        arms = Arms.of(protocol)
        datasets = by_arm
        analysis = planner or fork_worker(_prepare_plan, _plan_sections, fork=False)
        analysis.send((protocol, datasets, flow, arms))
    else:
        arms = Arms.pooled(POOLED, "All participants")
        datasets = pool_datasets(by_arm)
        flow = pool_flow(flow)
    try:
        context = _sections(snapshot, closed, generated, datasets, flow, arms)
    except BaseException:
        if analysis is not None:
            analysis.cancel()
        raise
    if analysis is not None:
        plan, sections = analysis.result()
        context.update(sections)
        if plan is not None:
            context["forest"] = forest_figures(protocol, plan, arms)
    return context


def _sections(
    snapshot: Snapshot,
    closed: bool,
    generated: dt.datetime,
    datasets: TrialDatasets,
    flow: Flow,
    arms: Arms,
) -> dict[str, Any]:
    """Every section but the analysis plan's (None or empty until it is added)."""
    protocol = snapshot.loaded.protocol
    screening, flow_table = flow_tables(flow, arms)
    ae_terms, ae_grades = ae_tables(protocol, datasets.adsl, datasets.adae, arms)
    visits = scheduled_visits(protocol, snapshot.extract, snapshot.cutoff)
    return {
        "study": protocol.study,
        "closed": closed,
        "stamp": _stamp(snapshot, closed, generated),
        "provenance": _provenance(snapshot, closed, generated),
        "randomized_total": len(datasets.adsl),
        "consort": consort_figure(flow, arms),
        "screening": screening,
        "flow_table": flow_table,
        "baseline": baseline_table(protocol, datasets.adsl, arms),
        "labs": _lab_sections(protocol, datasets, arms),
        "km_sections": km_sections(protocol, datasets.adtte, arms),
        "ae_terms": ae_terms,
        "ae_grades": ae_grades,
        "ae_term_grade": ae_grade_table(protocol, datasets.adsl, datasets.adae, arms),
        "listing": event_listing(
            protocol, snapshot.events, datasets.adsl, arms if closed else None
        ),
        "review_counts": _review_counts(datasets),
        "accrual": accrual_table(protocol, snapshot.extract, snapshot.cutoff),
        "accrual_site": accrual_by_site(protocol, snapshot.extract),
        "data_quality": data_quality_table(
            protocol, snapshot.extract, snapshot.cutoff, snapshot.queries, snapshot.taken_at, visits
        ),
        "deviations": deviation_table(protocol, snapshot.extract, snapshot.cutoff, arms, visits),
        "deviation_listing": deviation_listing(
            protocol, snapshot.extract, snapshot.cutoff, arms, visits
        )
        if closed
        else None,
        "exposure": exposure_table(protocol, snapshot.extract, arms) if closed else None,
        "sae_listing": sae_listing(snapshot.extract, arms if closed else None),
        "death_listing": death_listing(snapshot.extract, arms if closed else None),
        "interim": None,
        "primary": None,
        "secondary": None,
        "longitudinal": None,
        "tte": None,
        "forest": [],
        "safety": None,
        "comparison": None,
        "recomputed": None,
        "not_estimable": {},
    }


def render_study_report(
    snapshot: Snapshot,
    closed: bool,
    generated: dt.datetime | None = None,
    *,
    parallel: bool = False,
) -> str:
    """The open (``closed=False``) or closed report of ``snapshot`` as one self-contained HTML
    page; ``generated`` (default now, UTC) is the time it shows. ``parallel`` computes the
    closed report's analysis in a second process meanwhile (where fork is available and the
    process runs no other thread), for the same page."""
    when = generated or dt.datetime.now(dt.UTC)
    planner = fork_worker(_prepare_plan, _plan_sections) if parallel and closed else None
    try:
        context = _context(snapshot, closed, when, planner)
    except BaseException:
        if planner is not None:
            planner.cancel()
        raise
    return _environment().get_template("study_report.html.j2").render(context)


_INLINE_SVG = re.compile(r"<svg\b([^>]*)>.*?</svg>", re.DOTALL)
_ATTRIBUTE = re.compile(r'\s(id|style)="([^"]*)"')
_NAMESPACES = (
    ("xmlns", "http://www.w3.org/2000/svg"),
    ("xmlns:xlink", "http://www.w3.org/1999/xlink"),
)


def _svg_image(match: re.Match[str]) -> str:
    """One inline ``<svg>`` figure as an ``<img>`` of the same SVG document (a data URI).

    WeasyPrint draws both with the same SVG renderer, to the same PDF bytes; but inline, every
    element of the figure (thousands: one per marker, tick and path) also goes through its HTML
    parser and CSS cascade, a sixth of the PDF's time. The ``<img>`` keeps the ``id`` and
    ``style`` that size the figure on the page. A figure that is not well-formed XML on its own
    stays inline.
    """
    svg, attributes = match.group(0), match.group(1)
    declared = "".join(
        f' {name}="{uri}"' for name, uri in _NAMESPACES if f"{name}=" not in attributes
    )
    document = "<svg" + declared + svg[len("<svg") :]
    try:
        ElementTree.fromstring(document)
    except ElementTree.ParseError:
        return svg
    uri = "data:image/svg+xml;base64," + base64.b64encode(document.encode("utf-8")).decode("ascii")
    kept = "".join(f' {name}="{value}"' for name, value in _ATTRIBUTE.findall(attributes))
    return f'<img{kept} src="{uri}">'


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block (back on after, if it was on).

    Building a report allocates millions of short-lived objects (WeasyPrint's boxes, above all),
    which reference counting frees; the collector's passes over them and over everything the
    command has loaded cost about a tenth of the PDF's time, for a few MB of memory more.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _prepare_pdf() -> None:
    """Import WeasyPrint (half a second) before the page to render is ready; where it is
    missing, :func:`render_pdf` says so."""
    with contextlib.suppress(ImportError):
        import weasyprint  # noqa: F401


def render_pdf(html: str) -> tuple[bytes, int]:
    """The PDF (A4, WeasyPrint) of a report page, and its number of pages.

    The inline SVG figures go to WeasyPrint as SVG images (:func:`_svg_image`): the same drawing,
    in about a sixth less time.
    """
    import weasyprint

    # WeasyPrint logs every CSS property it does not support (the screen-only ones) as a warning
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    with _gc_paused():
        document = weasyprint.HTML(string=_INLINE_SVG.sub(_svg_image, html)).render()
        data = document.write_pdf()
    if data is None:  # pragma: no cover - write_pdf returns bytes when given no target
        raise RuntimeError("WeasyPrint returned no PDF")
    return data, len(document.pages)


def build_report(
    engine: Engine,
    out: Path,
    *,
    closed: bool = False,
    fmt: str = "both",
    protocol: LoadedProtocol | None = None,
) -> ReportFiles:
    """Take a snapshot of the store and write its open or closed report into ``out``.

    Files are named ``dsmb-{open|closed}-{first 12 hex digits of the snapshot}.{html|pdf}``.

    Parameters
    ----------
    engine
        An engine of an initialized trial database.
    out
        Folder for the report (created when missing; must not be a file).
    closed
        The closed (by arm) version; otherwise the open one (arms pooled).
    fmt
        ``html``, ``pdf`` or ``both``.
    protocol
        The protocol the report is for; the database must have been initialized from it. None
        takes the database's own.

    Raises
    ------
    ConfigurationError
        An unknown ``fmt``, or ``out`` is a file.
    DatabaseError
        No trial in the database, or a database of another protocol (version).
    AnalysisError
        No randomized participant, or data the analysis cannot use.
    """
    started = time.perf_counter()
    kind = _check_format(fmt)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {out} is a file, not a folder: give a folder")
    with _gc_paused():
        # the PDF's process starts first: it imports WeasyPrint while this one reads the store
        # and the plan's process imports the models
        renderer = fork_worker(_prepare_pdf, render_pdf) if kind in ("pdf", "both") else None
        planner = fork_worker(_prepare_plan, _plan_sections) if closed else None
        try:
            snapshot = take_snapshot(engine, protocol)
            when = dt.datetime.now(dt.UTC)
            context = _context(snapshot, closed, when, planner)
            html = _environment().get_template("study_report.html.j2").render(context)
        except BaseException:
            for worker in (planner, renderer):  # the planner holds no copy of the renderer's pipes
                if worker is not None:
                    worker.cancel()
            raise
        pdf, pages = renderer.call(html) if renderer is not None else (None, None)
    stem = f"dsmb-{'closed' if closed else 'open'}-{snapshot.short_name}"
    out.mkdir(parents=True, exist_ok=True)
    html_path = pdf_path = None
    if kind in ("html", "both"):
        html_path = out / f"{stem}.html"
        html_path.write_text(html, encoding="utf-8")
    if pdf is not None:
        pdf_path = out / f"{stem}.pdf"
        pdf_path.write_bytes(pdf)
    return ReportFiles(
        snapshot.data_sha256, closed, html_path, pdf_path, pages, time.perf_counter() - started
    )


def build_report_from_url(
    url: str,
    out: Path,
    *,
    closed: bool = False,
    fmt: str = "both",
    protocol: LoadedProtocol | None = None,
) -> ReportFiles:
    """:func:`build_report` on the database at ``url`` (``stalwart report``).

    A SQLite URL must name an existing file: opening a missing one would create an empty
    database, and a report must change nothing.
    """
    _check_format(fmt)
    try:
        parsed = make_url(url)
    except ArgumentError:  # not a URL: open_engine below gives the typed error
        parsed = None
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or not Path(database).is_file():
            raise ConfigurationError(
                f"no SQLite database at {database or url!r}: give the URL of an existing trial "
                "database, e.g. sqlite:///demo-out/stalwart.db"
            )
    engine = open_engine(url)
    try:
        return build_report(engine, out, closed=closed, fmt=fmt, protocol=protocol)
    finally:
        engine.dispose()
