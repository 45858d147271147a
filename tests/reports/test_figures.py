"""Tests of the report's figures: the data they draw, their embedding markup, no figure leaks."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from stalwart.errors import AnalysisError
from stalwart.reports.figures.consort import ConsortArm, consort_diagram
from stalwart.reports.figures.course import mean_by_visit_figure, summarize_by_visit
from stalwart.reports.figures.survival import KMGroup, km_figure, km_step_data, regular_times

ARMS = [("A", "Arm A"), ("B", "Arm B costs $5 & <more>")]


@pytest.fixture(autouse=True)
def no_figure_leak() -> Iterator[None]:
    before = set(plt.get_fignums())
    yield
    assert set(plt.get_fignums()) == before


@pytest.fixture
def summary() -> pd.DataFrame:
    values = pd.DataFrame(
        {
            "ARMCD": ["A"] * 6 + ["B"] * 4,
            "AVISITN": [0, 0, 0, 4, 4, 4, 0, 0, 4, 4],
            "AVAL": [1.0, 2.0, 3.0, 10.0, 14.0, np.nan, 5.0, 7.0, 8.0, 8.0],
        }
    )
    return summarize_by_visit(values)


# -- data ------------------------------------------------------------------------------------------


def test_km_steps_on_a_hand_computed_example() -> None:
    # t:  2  3  3  5  8 ; event: 1 1 0 1 0
    # t=2: 5 at risk, 1 event -> 4/5 = 0.8
    # t=3: 4 at risk, 1 event (1 censored after) -> 0.8 * 3/4 = 0.6
    # t=5: 2 at risk, 1 event -> 0.6 * 1/2 = 0.3 ; t=8 censored: the curve runs on flat
    x, y = km_step_data([3, 2, 8, 5, 3], [1, 1, 0, 1, 0])
    np.testing.assert_allclose(x, [0, 2, 3, 5, 8])
    np.testing.assert_allclose(y, [1.0, 0.8, 0.6, 0.3, 0.3])


def test_km_steps_without_events_stay_at_one() -> None:
    x, y = km_step_data([4.0, 1.0], [0, 0])
    np.testing.assert_allclose(x, [0, 4])
    np.testing.assert_allclose(y, [1, 1])


def test_km_steps_of_no_observations() -> None:
    x, y = km_step_data([], [])
    np.testing.assert_allclose(x, [0])
    np.testing.assert_allclose(y, [1])


def test_km_steps_reject_bad_input() -> None:
    with pytest.raises(AnalysisError, match="event must be one-dimensional with 2 values"):
        km_step_data([1, 2], [1])
    with pytest.raises(AnalysisError, match="negative"):
        km_step_data([-1, 2], [1, 0])
    with pytest.raises(AnalysisError, match="only 0"):
        km_figure([KMGroup("bad", [1.0], [2])], at_times=[0], title="t", description="d")


def test_numbers_at_risk_from_the_km_figure() -> None:
    group = KMGroup("Example", time=[3, 2, 8, 5, 3], event=[1, 1, 0, 1, 0])
    empty = KMGroup("Nobody", time=[], event=[])
    figure, at_risk = km_figure(
        [group, empty], at_times=[0, 3, 6, 9], title="KM", description="d", ident="km-test"
    )
    # at risk at t: still in follow-up just before t (time >= t)
    assert at_risk == [[5, 4, 1, 0], [0, 0, 0, 0]]
    assert figure.markup.startswith("<svg")


def test_summarize_by_visit_uses_t_intervals(summary: pd.DataFrame) -> None:
    row = summary[(summary["ARMCD"] == "A") & (summary["AVISITN"] == 0)].iloc[0]
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(2.0)
    assert row["sd"] == pytest.approx(1.0)
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert row["ci_low"] == pytest.approx(2.0 - half)
    assert row["ci_high"] == pytest.approx(2.0 + half)
    missing_dropped = summary[(summary["ARMCD"] == "A") & (summary["AVISITN"] == 4)].iloc[0]
    assert missing_dropped["n"] == 2
    assert missing_dropped["mean"] == pytest.approx(12.0)
    constant = summary[(summary["ARMCD"] == "B") & (summary["AVISITN"] == 4)].iloc[0]
    assert constant["ci_low"] == pytest.approx(8.0)


def test_summarize_by_visit_single_value_has_no_interval() -> None:
    out = summarize_by_visit(pd.DataFrame({"ARMCD": ["A"], "AVISITN": [0], "AVAL": [3.0]}))
    assert out.loc[0, "n"] == 1
    assert math.isnan(out.loc[0, "ci_low"])


def test_summarize_by_visit_checks_confidence() -> None:
    with pytest.raises(ValueError, match="confidence"):
        summarize_by_visit(pd.DataFrame({"ARMCD": [], "AVISITN": [], "AVAL": []}), 95)


def test_regular_times() -> None:
    np.testing.assert_allclose(regular_times(29.3), [0, 6, 12, 18, 24])
    np.testing.assert_allclose(regular_times(7.0), [0, 1, 2, 3, 4, 5, 6, 7])
    np.testing.assert_allclose(regular_times(100.0), [0, 24, 48, 72, 96])
    np.testing.assert_allclose(regular_times(0.0), [0])


# -- rendering -------------------------------------------------------------------------------------


def test_mean_by_visit_svg(summary: pd.DataFrame) -> None:
    fig = mean_by_visit_figure(
        summary,
        ARMS,
        ylabel="CD4 (cells/mm3)",
        title="Mean <CD4>",
        description="by week",
        ident="fig-cd4",
    )
    assert fig.mime == "image/svg+xml"
    assert fig.data.startswith(b"<?xml")
    assert len(fig.data) > 1000
    markup = fig.markup
    assert markup.startswith("<svg ")
    assert '<title id="fig-cd4-title">Mean &lt;CD4&gt;</title>' in markup
    assert 'aria-labelledby="fig-cd4-title fig-cd4-desc"' in markup
    assert "http" not in markup  # no namespace URLs, no metadata links
    assert "Arm B costs $5 &amp; &lt;more&gt;" in markup  # "$" kept out of mathtext
    ids = re.findall(r'\bid="([^"]+)"', markup)
    assert ids and all(i.startswith("fig-cd4") for i in ids)
    refs = re.findall(r'href="#([^"]+)"', markup) + re.findall(r"url\(#([^)]+)\)", markup)
    assert refs and set(refs) <= set(ids)


def test_mean_by_visit_png(summary: pd.DataFrame) -> None:
    fig = mean_by_visit_figure(
        summary, ARMS, ylabel="y", title="t", description="d", ident="fig-png", fmt="png"
    )
    assert fig.mime == "image/png"
    assert fig.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert fig.markup.startswith('<img id="fig-png" src="data:image/png;base64,')
    assert 'alt="t. d"' in fig.markup


def test_two_figures_do_not_share_ids(summary: pd.DataFrame) -> None:
    first = mean_by_visit_figure(summary, ARMS, ylabel="y", title="t", description="d", ident="one")
    second = mean_by_visit_figure(
        summary, ARMS, ylabel="y", title="t", description="d", ident="two"
    )
    ids_one = set(re.findall(r'\bid="([^"]+)"', first.markup))
    ids_two = set(re.findall(r'\bid="([^"]+)"', second.markup))
    assert ids_one and ids_two and not ids_one & ids_two


def test_rendering_is_deterministic(summary: pd.DataFrame) -> None:
    def render() -> str:
        return mean_by_visit_figure(
            summary, ARMS, ylabel="y", title="t", description="d", ident="same"
        ).markup

    assert render() == render()


def test_bad_ident_and_format_are_rejected(summary: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="ident"):
        mean_by_visit_figure(
            summary, ARMS, ylabel="y", title="t", description="d", ident='x" onload="y'
        )
    with pytest.raises(ValueError, match="format"):
        mean_by_visit_figure(summary, ARMS, ylabel="y", title="t", description="d", fmt="gif")  # type: ignore[arg-type]


def test_km_figure_with_a_zero_event_arm() -> None:
    groups = [
        KMGroup("Events", time=[1.0, 2.0, 5.0], event=[1, 0, 1]),
        KMGroup("No events", time=[3.0, 4.0], event=[False, False]),
    ]
    figure, at_risk = km_figure(
        groups, at_times=[0, 2, 4], title="KM <x>", description="d", ident="km-zero"
    )
    assert at_risk == [[3, 2, 1], [2, 2, 1]]
    assert "KM &lt;x&gt;" in figure.markup
    assert len(figure.data) > 1000


def test_consort_diagram_counts_and_escaping() -> None:
    arms = [
        ConsortArm("No therapy", 91, {"Withdrew <consent>": 3}, 85, 80),
        ConsortArm("IL-2 alone", 89, {}, 89, 84),
    ]
    fig = consort_diagram(
        110,
        19,
        {"CD4 < 300": 12, "Prior IL-2": 7},
        arms,
        ident="consort",
        title="Flow & diagram",
        description="desc",
    )
    lines = re.findall(r"<text [^>]*>([^<]*)</text>", fig.markup)
    text = " ".join(lines).replace("\u00a0", " ") + fig.markup
    for expected in (
        "Assessed for eligibility (n = 110)",
        "Excluded (n = 19)",
        "CD4 &lt; 300 (n = 12)",
        "Randomized (n = 180)",
        "Allocated (n = 91)",
        "Withdrew &lt;consent&gt; (n = 3)",
        "Discontinued main study (n = 0)",
        "Completed main study (n = 89)",
        "Analysed, primary endpoint (n = 84)",
        '<title id="consort-title">Flow &amp; diagram</title>',
    ):
        assert expected in text, expected
    assert fig.data.startswith(b'<svg xmlns="http://www.w3.org/2000/svg"')
    assert "http" not in fig.markup
    assert re.findall(r"url\(#([^)]+)\)", fig.markup) == ["consort-arrow"] * len(
        re.findall(r"marker-end", fig.markup)
    )


def test_consort_needs_an_arm() -> None:
    with pytest.raises(ValueError, match="at least one arm"):
        consort_diagram(1, 0, {}, [])


def test_a_forest_plot_keeps_every_label_and_prints_each_estimate() -> None:
    """Long labels are wrapped and kept whole (the saved image holds everything drawn);
    estimates and intervals are printed as text; log-axis ticks read as plain numbers."""
    from stalwart.reports.figures.forest import ForestRow, forest_figure, plain_number

    short = forest_figure(
        [ForestRow("A vs B", 2.0, 0.5, 8.0)],
        reference=1.0,
        log_scale=True,
        xlabel="Hazard ratio",
        title="t",
        description="d",
        ident="fig-short",
    )
    long_label = "An arm with a very long name indeed, " * 3 + "vs control"
    long = forest_figure(
        [ForestRow(long_label, 2.0, 0.5, 8.0), ForestRow("not estimable row", None, None, None)],
        reference=1.0,
        log_scale=True,
        xlabel="Hazard ratio (Cox), 95% CI, log scale; below 1 favours the arm " * 2,
        title="t",
        description="d",
        ident="fig-long",
    )

    assert "An arm with a very long name indeed," in long.markup
    assert "vs control" in long.markup  # the label's end is drawn, not cut
    assert "favours the arm" in long.markup and "2.00 (0.50 to 8.00)" in short.markup
    for text in ("2.00 (0.50 to 8.00)", "not estimable", ">0.5<", ">1<", ">2<", ">5<"):
        assert text in long.markup, text
    assert "10^" not in long.markup and "mathdefault" not in long.markup
    assert [plain_number(v) for v in (0.5, 1.0, 10.0)] == ["0.5", "1", "10"]
