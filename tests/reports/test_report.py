"""Tests of the HTML trial report: structure, self-containment, numbers that match the data."""

from __future__ import annotations

import datetime as dt
import math
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.flow import Flow
from stalwart.analysis.recompute import published_counts, recompute_published
from stalwart.analysis.results import (
    ContinuousComparison,
    PlanResult,
    Randomized,
    TimeToEventComparison,
)
from stalwart.errors import AnalysisError
from stalwart.protocol.load import load_protocol
from stalwart.protocol.schema import Protocol
from stalwart.published import ComparisonRow
from stalwart.reports.report import (
    format_p,
    render_report,
    write_report,
)

SECTION_IDS = (
    "provenance",
    "flow",
    "baseline",
    "cd4-by-week",
    "primary",
    "time-to-event",
    "adverse-events",
)

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


# -- fixture data ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return load_protocol().protocol


def make_datasets(protocol: Protocol, per_arm: int = 10, seed: int = 7) -> TrialDatasets:
    """~30 participants over the protocol's arms with every ADaM column the contract names.

    The last arm has no opportunistic events and the control arm no adverse events.
    """
    rng = np.random.default_rng(seed)
    codes = [a.code for a in protocol.arms]
    names = {a.code: a.name for a in protocol.arms}
    sites = protocol.sites[:4]
    adsl_rows, adlb_rows, adtte_rows, adae_rows = [], [], [], []
    weeks = [v.day // 7 for v in protocol.visits]
    start = dt.date(2006, 1, 9)
    subject = 0
    for a, code in enumerate(codes):
        for _ in range(per_arm):
            subject += 1
            site = sites[subject % len(sites)]
            usubjid = f"STALWART-{site.code}-{subject:04d}"
            randdt = start + dt.timedelta(days=int(rng.integers(0, 700)))
            base_cd4 = float(np.round(rng.normal(650, 150)))
            base_vl = float(np.round(rng.normal(4.0, 0.6), 2))
            discontinued = subject % 7 == 0
            lstcndt = randdt + dt.timedelta(days=int(rng.integers(300, 1000)))
            adsl_rows.append(
                {
                    "USUBJID": usubjid,
                    "SITEID": site.code,
                    "COUNTRY": site.country,
                    "AGE": int(rng.integers(20, 65)),
                    "SEX": "F" if rng.random() < 0.3 else "M",
                    "ARMCD": code,
                    "ARM": names[code],
                    "RANDDT": pd.Timestamp(randdt),
                    "BASECD4": base_cd4,
                    "BASEVL": base_vl,
                    "EOSSTT": "DISCONTINUED" if discontinued else "COMPLETED",
                    "DCSREAS": "Withdrew consent" if discontinued else "",
                    "DTHFL": "",
                    "LSTCNDT": pd.Timestamp(lstcndt),
                    "ITTFL": "Y",
                }
            )
            gain = 60.0 * a
            for week in [*weeks, 48]:
                if week > 0 and rng.random() < 0.1:
                    continue  # a missed visit
                visit = "ENTRY" if week == 0 else f"WK{week:02d}"
                adt = randdt + dt.timedelta(days=7 * week)
                cd4 = (
                    base_cd4 if week == 0 else float(np.round(base_cd4 + gain + rng.normal(0, 80)))
                )
                vl = base_vl if week == 0 else float(np.round(base_vl + rng.normal(0, 0.3), 2))
                for paramcd, param, aval, base in (
                    ("CD4", "CD4+ count (cells/mm3)", cd4, base_cd4),
                    ("CD4PCT", "CD4+ percent (%)", float(np.round(rng.uniform(20, 40), 1)), 30.0),
                    ("LHIVRNA", "log10 HIV RNA (log10 copies/mL)", vl, base_vl),
                ):
                    adlb_rows.append(
                        {
                            "USUBJID": usubjid,
                            "ARMCD": code,
                            "PARAMCD": paramcd,
                            "PARAM": param,
                            "AVISIT": visit,
                            "AVISITN": week,
                            "ADT": pd.Timestamp(adt),
                            "ADY": 7 * week,
                            "AVAL": aval,
                            "BASE": base,
                            "CHG": aval - base,
                            "ABLFL": "Y" if week == 0 else "",
                            "BLQFL": "",
                        }
                    )
            event = a < len(codes) - 1 and rng.random() < 0.3
            days = float(rng.integers(30, 900))
            adtte_rows.append(
                {
                    "USUBJID": usubjid,
                    "ARMCD": code,
                    "PARAMCD": "ODDEATH",
                    "PARAM": "Time to first opportunistic event or death (days)",
                    "STARTDT": pd.Timestamp(randdt),
                    "ADT": pd.Timestamp(randdt + dt.timedelta(days=days)),
                    "AVAL": days,
                    "CNSR": 0 if event else 1,
                    "EVNTDESC": "Pneumocystis pneumonia" if event else "Last contact",
                }
            )
            if code != protocol.control_arm:
                for _ in range(int(rng.integers(0, 4))):
                    astdt = randdt + dt.timedelta(days=int(rng.integers(7, 200)))
                    adae_rows.append(
                        {
                            "USUBJID": usubjid,
                            "ARMCD": code,
                            "AEDECOD": str(rng.choice(["Fever", "Fatigue", "Myalgia", "Rash"])),
                            "AETOXGR": int(rng.integers(1, 5)),
                            "ASTDT": pd.Timestamp(astdt),
                            "AENDT": pd.Timestamp(astdt + dt.timedelta(days=3)),
                            "AEREL": "POSSIBLE",
                            "AESER": "Y" if rng.random() < 0.1 else "N",
                        }
                    )
    return TrialDatasets(
        adsl=pd.DataFrame(adsl_rows),
        adlb=pd.DataFrame(adlb_rows),
        adtte=pd.DataFrame(adtte_rows),
        adae=pd.DataFrame(adae_rows),
    )


def make_results(protocol: Protocol, datasets: TrialDatasets) -> dict[str, Any]:
    """A results.json body (provenance and the plan's sections) for the datasets."""
    control = protocol.control_arm
    others = [a.code for a in protocol.arms if not a.control]
    by_arm = datasets.adsl["ARMCD"].value_counts().to_dict()
    primary = [
        ContinuousComparison(
            endpoint="CD4",
            week=32,
            arm=arm,
            control=control,
            n={arm: 9, control: 8},
            mean={arm: 712.25, control: 640.5},
            method=method,
            difference=71.75,
            ci_low=-12.5,
            ci_high=156.0,
            p_value=p,
            se=None,
            df=None,
            test=test,
            adjusted_mean={arm: 715.55, control: 643.8} if method == "ancova" else None,
        )
        for i, arm in enumerate(others)
        for method, test, p in (
            ("ancova", "ANCOVA", 0.0004 if i == 0 else 0.0123),
            ("ttest", "Welch two-sample t-test", 0.2),
        )
    ]
    pooled = "+".join(others)
    tte = [
        TimeToEventComparison(
            parameter="ODDEATH",
            arm=pooled,
            control=control,
            events={pooled: 3, control: 4},
            n={pooled: 20, control: 10},
            method="cox_efron",
            hazard_ratio=0.37,
            ci_low=0.08,
            ci_high=1.66,
            p_value=0.19,
        ),
        TimeToEventComparison(
            parameter="ODDEATH",
            arm=others[-1],
            control=control,
            events={others[-1]: 0, control: 4},
            n={others[-1]: 10, control: 10},
            method="logrank",
            hazard_ratio=None,
            ci_low=None,
            ci_high=None,
            p_value=0.04,
        ),
    ]
    plan = PlanResult(
        randomized=Randomized(total=len(datasets.adsl), by_arm=by_arm),
        primary=tuple(primary),
        time_to_event=tuple(tte),
        km=(),
    )
    return {
        "provenance": {
            "protocol": protocol.study.id,
            "protocol_version": protocol.study.version,
            "software_version": "0.1.0",
            "seed": 20050101,
            "data_sha256": "ab" * 32,
            "created": "2024-05-01T12:00:00+00:00",
        },
        **plan.to_dict(),
    }


def make_flow(protocol: Protocol, datasets: TrialDatasets) -> Flow:
    adsl = datasets.adsl
    codes = [a.code for a in protocol.arms]
    return Flow(
        screened=len(adsl) + 9,
        screen_failures=9,
        failure_reasons={"CD4+ count >= 300 cells/mm3": 6, "On continuous <ART>": 3},
        randomized={c: int((adsl["ARMCD"] == c).sum()) for c in codes},
        completed={
            c: int(((adsl["ARMCD"] == c) & (adsl["EOSSTT"] == "COMPLETED")).sum()) for c in codes
        },
        discontinued={
            c: {
                "Withdrew consent": int(
                    ((adsl["ARMCD"] == c) & (adsl["EOSSTT"] == "DISCONTINUED")).sum()
                )
            }
            for c in codes
        },
        analysed_primary={c: 8 for c in codes},
    )


@pytest.fixture(scope="module")
def datasets(protocol: Protocol) -> TrialDatasets:
    return make_datasets(protocol)


@pytest.fixture(scope="module")
def results(protocol: Protocol, datasets: TrialDatasets) -> dict[str, Any]:
    return make_results(protocol, datasets)


@pytest.fixture(scope="module")
def flow(protocol: Protocol, datasets: TrialDatasets) -> Flow:
    return make_flow(protocol, datasets)


COMPARISON = [
    ComparisonRow("Participants randomized", "267", "30", "Tavel et al. 2010, abstract"),
    ComparisonRow("Opportunistic events or deaths", "8", "7", "Tavel et al. 2010"),
]


@pytest.fixture(scope="module")
def page(protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow) -> str:
    return render_report(protocol, datasets, results, flow, COMPARISON)


# -- a small HTML reader ---------------------------------------------------------------------------


class Page(HTMLParser):
    """Collects ids, attributes, tag balance and the text of every table cell."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.attributes: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(text)
        self.close()
        if self.stack:
            self.problems.append(f"unclosed: {self.stack}")

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        for key, value in values.items():
            self.attributes.append((tag, key, value))
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "table":
            self._table = values.get("id", f"table-{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
            self.tables[self._table].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for key, value in attrs:
            self.attributes.append((tag, key, value or ""))
            if key == "id":
                self.ids.append(value or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def table(self, table_id: str) -> list[list[str]]:
        return self.tables[table_id]

    def row(self, table_id: str, label: str) -> list[str]:
        for row in self.tables[table_id]:
            if row and row[0] == label:
                return row[1:]
        raise KeyError(f"{table_id}: no row {label!r}")


@pytest.fixture(scope="module")
def parsed(page: str) -> Page:
    return Page(page)


def n_pct(n: int, d: int) -> str:
    return f"{n} ({100 * n / d:.1f}%)"


# -- structure -------------------------------------------------------------------------------------


def test_page_parses_with_balanced_tags(page: str, parsed: Page) -> None:
    assert page.lstrip().startswith("<!DOCTYPE html>")
    assert parsed.problems == []
    assert parsed.tags.count("html") == 1


def test_every_section_has_its_id_and_a_heading(parsed: Page) -> None:
    for section in (*SECTION_IDS, "comparison"):
        assert section in parsed.ids, section
        assert f"{section}-heading" in parsed.ids, section


def test_ids_are_unique(parsed: Page) -> None:
    duplicates = {i for i in parsed.ids if parsed.ids.count(i) > 1}
    assert duplicates == set()


def test_figures_are_embedded_inline(page: str, parsed: Page) -> None:
    assert parsed.tags.count("svg") >= 3  # CONSORT, CD4 by week, Kaplan-Meier
    assert parsed.tags.count("figure") >= 3
    assert parsed.tags.count("figcaption") == parsed.tags.count("figure")
    assert parsed.tags.count("title") == 1 + parsed.tags.count("svg")  # page + each svg
    assert "fig-consort" in parsed.ids
    assert "fig-mean-cd4" in parsed.ids
    assert "fig-km-oddeath" in parsed.ids


def test_no_external_references(parsed: Page) -> None:
    for tag, key, value in parsed.attributes:
        if key in ("src", "href", "xlink:href", "action", "data"):
            assert not value.lower().startswith(("http:", "https:", "//")), (tag, key, value)
            if key == "src":
                assert value.startswith("data:"), (tag, value)
    assert "script" not in parsed.tags
    assert "link" not in parsed.tags


def test_no_url_anywhere_in_the_page(page: str) -> None:
    assert "http://" not in page
    assert "https://" not in page


def test_arm_names_from_protocol_in_protocol_order(
    page: str, parsed: Page, protocol: Protocol
) -> None:
    header = parsed.table("table-baseline")[0]
    labels = [cell.split(" (n = ")[0] for cell in header[1:]]
    assert labels == [a.name for a in protocol.arms] + ["Total"]
    for arm in protocol.arms:
        assert arm.name in page


def test_renamed_and_reordered_arms_follow_the_protocol(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    arms = [a.model_copy(update={"name": f"Arm «{a.code}» & co"}) for a in reversed(protocol.arms)]
    changed = protocol.model_copy(update={"arms": arms})
    parsed = Page(render_report(changed, datasets, results, flow))
    header = parsed.table("table-flow")[0]
    assert header[1:] == [a.name for a in arms] + ["Total"]
    for arm in protocol.arms:
        assert arm.name not in " ".join(header)


def test_comparison_section_only_when_given(
    protocol: Protocol,
    datasets: TrialDatasets,
    results: dict[str, Any],
    flow: Flow,
    parsed: Page,
) -> None:
    assert parsed.row("table-comparison", "Participants randomized") == [
        "267",
        "30",
        "Tavel et al. 2010, abstract",
    ]
    without = Page(render_report(protocol, datasets, results, flow))
    assert "comparison" not in without.ids
    assert all(section in without.ids for section in SECTION_IDS)


def test_provenance_is_shown(parsed: Page, page: str) -> None:
    for text in ("STALWART", "1.0.0", "0.1.0", "20050101", "ab" * 32, "2024-05-01T12:00:00+00:00"):
        assert text in page
    assert "provenance" in parsed.ids


def test_unset_seed_reads_not_set(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    unseeded = {**results, "provenance": {**results["provenance"], "seed": None}}
    assert "not set" in render_report(protocol, datasets, unseeded, flow)


def test_text_is_escaped(page: str, parsed: Page) -> None:
    assert "On continuous <ART>" not in page
    assert "On continuous &lt;ART&gt;" in page
    assert parsed.row("table-screening", "On continuous <ART>") == ["3"]


# -- the numbers -----------------------------------------------------------------------------------


def test_flow_table_matches_flow(parsed: Page, flow: Flow, protocol: Protocol) -> None:
    codes = [a.code for a in protocol.arms]
    randomized = [flow.randomized[c] for c in codes]
    assert parsed.row("table-flow", "Randomized") == [str(n) for n in randomized] + [
        str(sum(randomized))
    ]
    withdrew = [flow.discontinued[c]["Withdrew consent"] for c in codes]
    assert parsed.row("table-flow", "Withdrew consent") == [str(n) for n in withdrew] + [
        str(sum(withdrew))
    ]
    assert parsed.row("table-screening", "Screened") == [str(flow.screened)]
    assert parsed.row("table-screening", "Screen failures") == ["9"]
    assert parsed.row("table-screening", "CD4+ count >= 300 cells/mm3") == ["6"]


def test_baseline_n_per_arm(parsed: Page, datasets: TrialDatasets, protocol: Protocol) -> None:
    adsl = datasets.adsl
    expected = [str(int((adsl["ARMCD"] == a.code).sum())) for a in protocol.arms]
    assert parsed.row("table-baseline", "Participants, n") == [*expected, str(len(adsl))]


def test_baseline_values_match_the_data(
    parsed: Page, datasets: TrialDatasets, protocol: Protocol
) -> None:
    adsl = datasets.adsl
    groups = [adsl[adsl["ARMCD"] == a.code] for a in protocol.arms] + [adsl]
    cd4 = parsed.row("table-baseline", "Baseline CD4+ count (cells/mm3), mean (SD)")
    median = parsed.row("table-baseline", "Baseline CD4+ count (cells/mm3), median [IQR]")
    age = parsed.row("table-baseline", "Age (years), mean (SD)")
    rna = parsed.row("table-baseline", "Baseline HIV RNA (log10 copies/mL), mean (SD)")
    female = parsed.row("table-baseline", "Female")
    for i, g in enumerate(groups):
        values = g["BASECD4"].to_list()
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
        assert cd4[i] == f"{mean:.0f} ({sd:.0f})"
        q1, q2, q3 = np.percentile(values, [25, 50, 75])
        assert median[i] == f"{q2:.0f} [{q1:.0f}, {q3:.0f}]"
        assert age[i] == f"{g['AGE'].mean():.1f} ({g['AGE'].std():.1f})"
        assert rna[i] == f"{g['BASEVL'].mean():.2f} ({g['BASEVL'].std():.2f})"
        assert female[i] == n_pct(int((g["SEX"] == "F").sum()), len(g))
    for country in adsl["COUNTRY"].unique():
        row = parsed.row("table-baseline", country)
        assert row[-1] == n_pct(int((adsl["COUNTRY"] == country).sum()), len(adsl))


def test_cd4_n_table_counts_measurements_to_week_32(
    parsed: Page, datasets: TrialDatasets, protocol: Protocol
) -> None:
    table = parsed.table("table-n-cd4")
    assert table[0][1:] == [arm.name for arm in protocol.arms]
    assert [row[0] for row in table[1:]] == [f"Week {w}" for w in range(0, 33, 4)]  # no week 48
    adlb = datasets.adlb
    for w in range(0, 33, 4):
        counts = [
            str(
                int(
                    (
                        (adlb["PARAMCD"] == "CD4")
                        & (adlb["ARMCD"] == arm.code)
                        & (adlb["AVISITN"] == w)
                    ).sum()
                )
            )
            for arm in protocol.arms
        ]
        assert parsed.row("table-n-cd4", f"Week {w}") == counts


def test_cd4_figure_data_has_t_intervals(
    parsed: Page, datasets: TrialDatasets, protocol: Protocol
) -> None:
    from scipy import stats

    adlb = datasets.adlb
    arm = protocol.arms[1]
    values = adlb.loc[
        (adlb["PARAMCD"] == "CD4") & (adlb["ARMCD"] == arm.code) & (adlb["AVISITN"] == 32), "AVAL"
    ].to_numpy()
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(len(values))
    half = stats.t.ppf(0.975, len(values) - 1) * se
    cell = parsed.row("table-mean-cd4", "Week 32")[1]
    assert cell == f"{mean:.0f} ({mean - half:.0f} to {mean + half:.0f})"


def test_primary_table(parsed: Page, protocol: Protocol) -> None:
    control = protocol.arms[0]
    heading, *rows = parsed.table("table-primary")[1:]
    assert heading == ["CD4+ count at week 32"] + [""] * 7
    assert len(rows) == 4
    assert rows[0][0] == f"{protocol.arms[1].name} vs {control.name}"
    # the ANCOVA row shows the least-squares means its difference is made of, the t-test row
    # the observed means
    assert rows[0][1] == "ANCOVA, adjusted for baseline (least-squares means)"
    assert rows[0][2:] == ["9 / 8", "715.5", "643.8", "71.8", "-12.5 to 156.0", "<0.001"]
    assert rows[1][1] == "t-test (observed means)"
    assert rows[1][2:5] == ["9 / 8", "712.2", "640.5"]
    assert rows[1][-1] == "0.200"
    assert rows[2][0] == f"{protocol.arms[2].name} vs {control.name}"
    assert rows[2][-1] == "0.012"


def test_an_ancova_without_a_t_test_gets_a_row_of_observed_means(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    ancova_only = dict(results, primary=[r for r in results["primary"] if r["method"] == "ancova"])
    rows = Page(render_report(protocol, datasets, ancova_only, flow)).table("table-primary")[2:]
    assert [r[1] for r in rows[:2]] == [
        "ANCOVA, adjusted for baseline (least-squares means)",
        "Observed means (no model)",
    ]
    assert rows[1][2:] == ["9 / 8", "712.2", "640.5", "—", "—", "—"]


def test_time_to_event_table_and_zero_event_arm(
    parsed: Page, protocol: Protocol, datasets: TrialDatasets
) -> None:
    heading, *rows = parsed.table("table-time-to-event")[1:]
    assert heading[0] == "Time to first opportunistic event or death"
    pooled_name = " + ".join(a.name for a in protocol.arms[1:]) + " (pooled)"
    assert rows[0][0] == f"{pooled_name} vs {protocol.arms[0].name}"
    assert rows[0][1:] == ["Cox (Efron ties)", "3 / 20", "4 / 10", "0.37", "0.08 to 1.66", "0.190"]
    assert rows[1][1:] == ["Log-rank", "0 / 10", "4 / 10", "—", "—", "0.040"]
    # the at-risk table starts with everyone at risk
    at_risk = parsed.table("table-at-risk-oddeath")
    assert at_risk[0][1] == "0"
    adtte = datasets.adtte
    for arm in protocol.arms:
        row = parsed.row("table-at-risk-oddeath", arm.name)
        assert row[0] == str(int((adtte["ARMCD"] == arm.code).sum()))
        counts = [int(c) for c in row]
        assert counts == sorted(counts, reverse=True)
    # numbers at risk at 12 months, computed independently
    months = [float(c) for c in at_risk[0][1:]]
    assert months[:3] == [0.0, 6.0, 12.0]
    arm = protocol.arms[2]
    days = adtte.loc[adtte["ARMCD"] == arm.code, "AVAL"]
    assert parsed.row("table-at-risk-oddeath", arm.name)[2] == str(
        int((days / (365.25 / 12) >= 12).sum())
    )


def test_adverse_events_by_term_and_grade(
    parsed: Page, datasets: TrialDatasets, protocol: Protocol
) -> None:
    adsl, adae = datasets.adsl, datasets.adae
    for i, arm in enumerate(protocol.arms):
        n = int((adsl["ARMCD"] == arm.code).sum())
        events = adae[adae["ARMCD"] == arm.code]
        assert parsed.row("table-ae-terms", "Any adverse event")[i] == n_pct(
            events["USUBJID"].nunique(), n
        )
        for term in ("Fever", "Fatigue", "Myalgia", "Rash"):
            assert parsed.row("table-ae-terms", term)[i] == n_pct(
                events.loc[events["AEDECOD"] == term, "USUBJID"].nunique(), n
            )
        serious = events.loc[events["AESER"] == "Y", "USUBJID"].nunique()
        assert parsed.row("table-ae-terms", "Any serious adverse event")[i] == n_pct(serious, n)
        severe = events.loc[events["AETOXGR"] >= 3, "USUBJID"].nunique()
        assert parsed.row("table-ae-terms", "Any grade 3 or higher")[i] == n_pct(severe, n)
        worst = events.groupby("USUBJID")["AETOXGR"].max()
        for grade in range(1, 6):
            label = [r[0] for r in parsed.table("table-ae-grades")[1:]][grade - 1]
            assert label.startswith(f"Grade {grade}")
            assert parsed.row("table-ae-grades", label)[i] == n_pct(int((worst == grade).sum()), n)
    control = protocol.arms[0]
    assert parsed.row("table-ae-terms", "Any adverse event")[0] == "0 (0.0%)"
    assert parsed.row("table-ae-grades", "No adverse event")[0] == n_pct(
        int((adsl["ARMCD"] == control.code).sum()), int((adsl["ARMCD"] == control.code).sum())
    )
    terms = [r[0] for r in parsed.table("table-ae-terms")[1:]]
    assert (
        terms.index("Fever") < terms.index("Fatigue") < terms.index("Myalgia") < terms.index("Rash")
    )  # protocol order


def test_no_adverse_events_and_no_events_at_all(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    quiet = TrialDatasets(
        adsl=datasets.adsl,
        adlb=datasets.adlb,
        adtte=datasets.adtte.assign(CNSR=1),
        adae=datasets.adae.iloc[0:0],
    )
    parsed = Page(render_report(protocol, quiet, results, flow))
    assert parsed.problems == []
    assert parsed.row("table-ae-terms", "Any adverse event")[-1] == n_pct(0, len(datasets.adsl))


def test_empty_lab_and_time_to_event_data_render_a_note(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    bare = TrialDatasets(
        datasets.adsl, datasets.adlb.iloc[0:0], datasets.adtte.iloc[0:0], datasets.adae
    )
    page = render_report(protocol, bare, {**results, "time_to_event": []}, flow)
    assert "No CD4 measurements" in page
    assert "No ODDEATH records" in page
    assert Page(page).problems == []


def test_blank_sex_reads_not_recorded(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    adsl = datasets.adsl.assign(SEX="")
    bundle = TrialDatasets(adsl, datasets.adlb, datasets.adtte, datasets.adae)
    parsed = Page(render_report(protocol, bundle, results, flow))
    assert parsed.row("table-baseline", "Not recorded")[-1] == n_pct(len(adsl), len(adsl))
    with pytest.raises(KeyError):
        parsed.row("table-baseline", "Female")


def test_analysis_flag_excludes_rows_from_the_cd4_figure(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    adlb = datasets.adlb.assign(ANL01FL=np.where(datasets.adlb["AVISITN"] == 4, "", "Y"))
    flagged = TrialDatasets(datasets.adsl, adlb, datasets.adtte, datasets.adae)
    stubs = [
        row[0] for row in Page(render_report(protocol, flagged, results, flow)).table("table-n-cd4")
    ]
    assert "Week 4" not in stubs
    assert "Week 8" in stubs


def test_p_value_formatting() -> None:
    assert format_p(0.0004) == "<0.001"
    assert format_p(1e-12) == "<0.001"
    assert format_p(0.001) == "0.001"
    assert format_p(0.0123) == "0.012"
    assert format_p(0.5) == "0.500"
    assert format_p(1.0) == "1.000"
    assert format_p(None) == "—"
    assert format_p(float("nan")) == "—"


# -- errors and writing ----------------------------------------------------------------------------


def test_missing_column_raises_analysis_error(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    broken = TrialDatasets(
        datasets.adsl.drop(columns=["BASECD4"]), datasets.adlb, datasets.adtte, datasets.adae
    )
    with pytest.raises(AnalysisError, match=r"adsl lacks column\(s\) BASECD4"):
        render_report(protocol, broken, results, flow)


def test_unknown_arm_code_raises_analysis_error(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    broken = TrialDatasets(
        datasets.adsl, datasets.adlb, datasets.adtte, datasets.adae.assign(ARMCD="PLACEBO")
    )
    with pytest.raises(AnalysisError, match="PLACEBO"):
        render_report(protocol, broken, results, flow)


def test_results_that_are_not_a_results_body_are_refused(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    without_primary = {k: v for k, v in results.items() if k != "primary"}
    with pytest.raises(AnalysisError, match="'primary' section is missing"):
        render_report(protocol, datasets, without_primary, flow)
    unknown = {**results, "primary": [{**results["primary"][0], "estimate": 1.0}]}
    with pytest.raises(AnalysisError, match="unknown keys"):
        render_report(protocol, datasets, unknown, flow)


def test_write_report_creates_the_file(
    tmp_path: Path,
    protocol: Protocol,
    datasets: TrialDatasets,
    results: dict[str, Any],
    flow: Flow,
    page: str,
) -> None:
    target = write_report(
        tmp_path / "out" / "report.html", protocol, datasets, results, flow, COMPARISON
    )
    assert target == tmp_path / "out" / "report.html"
    assert target.read_text(encoding="utf-8") == page  # deterministic for the same inputs


def test_no_figures_left_open(page: str) -> None:
    import matplotlib.pyplot as plt

    assert plt.get_fignums() == []


def test_recomputed_panel_shows_each_test_and_the_published_row(
    protocol: Protocol, datasets: TrialDatasets, results: dict[str, Any], flow: Flow
) -> None:
    counts = published_counts("STALWART")
    assert counts is not None
    rows = recompute_published(counts)
    parsed = Page(render_report(protocol, datasets, results, flow, recomputed=(counts, rows)))
    assert "recomputed" in parsed.ids
    published = parsed.row("table-recomputed", "Published")
    assert published[:4] == ["hazard ratio", "5.84", "0.59 to 43.57", "0.009"]
    table = parsed.table("table-recomputed")
    labels = [r[0] for r in table[1:]]
    assert len(labels) == len(rows) + 1
    assert sum("(closest p)" in label for label in labels) == 1
    fisher = next(r for r in rows if r.method.startswith("Fisher"))
    assert parsed.row("table-recomputed", fisher.method)[3] == f"{fisher.p_value:.3f}"
    without = Page(render_report(protocol, datasets, results, flow))
    assert "recomputed" not in without.ids


def test_km_captions_name_the_grouping_they_show() -> None:
    """The open report pools the arms: its Kaplan-Meier captions must not say "by arm"."""
    from stalwart.protocol.load import load_protocol
    from stalwart.reports.report_outcomes import km_sections
    from stalwart.reports.report_tables import Arms

    protocol = load_protocol().protocol
    adtte = pd.DataFrame(
        {
            "USUBJID": ["S-1", "S-2", "S-3"],
            "ARMCD": ["ALL", "ALL", "ALL"],
            "PARAMCD": ["ODDEATH"] * 3,
            "AVAL": [30.0, 200.0, 400.0],
            "CNSR": [0, 1, 1],
        }
    )
    (pooled,) = km_sections(protocol, adtte, Arms.pooled())
    assert "all arms pooled" in pooled.caption and "by arm" not in pooled.caption
    assert pooled.at_risk is not None and "by arm" not in pooled.at_risk.caption
    by_arm = km_sections(protocol, adtte.assign(ARMCD="NOTHER"), Arms.of(protocol))[0]
    assert "by arm" in by_arm.caption
