"""The design check: measures against closed forms, the simulation against the trial's own lists.

References, computed here independently of the code under test:

* convergence guessing of permuted blocks of size ``2m`` (two arms): Blackwell & Hodges (1957),
  expected correct guesses per block ``m - 1/2 + 2**(2m-1) / C(2m, m)`` (0.75 per allocation for
  ``m = 1``), checked here by enumerating every block order; three arms, blocks of 3:
  ``(1/3 + 1/2 + 1) / 3 = 11/18``;
* complete randomization: a guess is right with probability ``1/K``; the final imbalance of two
  arms is ``|S_n|`` of a simple random walk, ``E|S_n| = n C(n, n/2) / 2**n`` (n even), and the
  expected maximum ``E max_i |S_i|`` comes from the walk's exact distribution (dynamic
  programming over position and running maximum).
"""

from __future__ import annotations

import itertools
import json
import math
import tomllib
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from randomization.minimization_cases import minimization_text
from stalwart.cli import app
from stalwart.errors import ConfigurationError
from stalwart.protocol.schema import Protocol
from stalwart.randomization import checks
from stalwart.randomization.allocation import allocation_lists, stratum_keys
from stalwart.randomization.checks import (
    DesignCheck,
    Summary,
    check_design,
    convergence_guesses,
    imbalance,
    running_imbalance,
)


def _protocol(text: str, *, arms: int = 3, sites: int | None = None, **rand: Any) -> Protocol:
    """A variant of a protocol text: fewer arms or sites, other randomization settings."""
    data = tomllib.loads(text)
    if arms == 2:
        data["arms"] = data["arms"][:2]
        for section in ("primary", "secondary", "longitudinal", "time_to_event", "safety"):
            for spec in data["analysis"].get(section, []):
                spec["comparisons"] = [["IL2", "NOTHER"]]
    if sites is not None:
        data["sites"] = data["sites"][:sites]
    data["randomization"].update(rand)
    return Protocol.model_validate(data)


def _complete(packaged_text: str, arms: int) -> Protocol:
    """Complete randomization: minimization with every weight zero (all arms always tied)."""
    return _protocol(minimization_text(packaged_text, cd4_weight=0, site_weight=0), arms=arms)


def _within(value: float, summary: Summary, sd: float, replicates: int) -> None:
    """The simulated mean agrees with ``value`` within 4.5 Monte Carlo standard errors."""
    assert abs(summary.mean - value) <= 4.5 * sd / math.sqrt(replicates), (summary.mean, value)


def _cs_block(order: tuple[int, ...], k: int) -> Fraction:
    """Expected correct convergence guesses over one sequence, by hand: fewest so far, ties 1/m."""
    counts = [0] * k
    total = Fraction(0)
    for arm in order:
        low = min(counts)
        tied = [j for j in range(k) if counts[j] == low]
        total += Fraction(1, len(tied)) if arm in tied else 0
        counts[arm] += 1
    return total


# -- the measures on fixed sequences ---------------------------------------------------------------
def test_measures_of_a_written_out_sequence() -> None:
    arms = np.array([[0, 0, 1, 0, 1, 1, 1]])
    np.testing.assert_array_equal(running_imbalance(arms, [1, 1]), [[1, 2, 1, 2, 1, 0, 1]])
    assert imbalance(arms, [1, 1]).tolist() == [1.0]
    # guesses A A B A B B B: tie 1/2, B 0, B 1, B 0, B 1, B 1, tie 1/2 -> 4 of 7
    assert convergence_guesses(arms, [1, 1])[0] == pytest.approx(4 / 7)
    assert _cs_block((0, 0, 1, 0, 1, 1, 1), 2) == 4
    members = np.array([[True, True, False, False, True, True, True]])
    assert imbalance(arms, [1, 1], members).tolist() == [1.0]  # A 2, B 3


def test_guessing_within_groups_sees_only_the_group() -> None:
    # two interleaved sites, each alternating A B A B: overall the sequence is A A B B A A B B
    arms = np.array([[0, 0, 1, 1, 0, 0, 1, 1]])
    sites = np.array([[0, 1, 0, 1, 0, 1, 0, 1]])
    assert convergence_guesses(arms, [1, 1], sites)[0] == pytest.approx(0.75)
    assert convergence_guesses(arms, [1, 1])[0] == pytest.approx(
        float(_cs_block(tuple(arms[0]), 2)) / 8
    )


def test_unequal_ratio_imbalance_per_unit_of_ratio() -> None:
    # 2:1, counts (4, 2) balanced; (5, 2) off by half an allocation of the 2-arm
    assert imbalance(np.array([[0, 0, 1, 0, 0, 1]]), [2, 1]).tolist() == [0.0]
    assert imbalance(np.array([[0, 0, 1, 0, 0, 1, 0]]), [2, 1]).tolist() == [0.5]


# -- closed forms through the whole check ----------------------------------------------------------
def test_blocks_of_two_two_arms_three_quarters_exactly(packaged_text: str) -> None:
    protocol = _protocol(packaged_text, arms=2, sites=1, block_sizes=[2], strata=["site"])
    report = check_design(protocol, participants=40, replicates=200, seed=3)
    for scope in ("overall", "within site"):
        s = report.row("correct guesses", scope)
        assert (s.mean, s.q05, s.max) == (0.75, 0.75, 0.75)
    assert report.row("final imbalance", "overall").max == 0.0
    assert report.row("max running imbalance", "overall") == Summary(1.0, 1.0, 1.0, 1.0, 1.0)


def test_blocks_of_three_three_arms_eleven_eighteenths(packaged_text: str) -> None:
    assert sum(_cs_block(o, 3) for o in itertools.permutations(range(3))) / 6 == Fraction(11, 6)
    protocol = _protocol(packaged_text, sites=1, block_sizes=[3])
    report = check_design(protocol, participants=30, replicates=100, seed=4)
    assert report.row("correct guesses", "within site").mean == pytest.approx(11 / 18, abs=1e-12)
    assert report.row("correct guesses", "within site").max == pytest.approx(11 / 18, abs=1e-12)


def test_blocks_of_four_blackwell_hodges(packaged_text: str) -> None:
    orders = set(itertools.permutations((0, 0, 1, 1)))
    per_block = sum(_cs_block(o, 2) for o in orders) / len(orders)
    m = 2
    assert per_block == m - Fraction(1, 2) + Fraction(2 ** (2 * m - 1), math.comb(2 * m, m))
    expected = float(per_block) / 4  # 17/24
    sd = float(np.std([float(_cs_block(o, 2)) / 4 for o in orders])) / math.sqrt(25)
    protocol = _protocol(packaged_text, arms=2, sites=1, block_sizes=[4])
    report = check_design(protocol, participants=100, replicates=2000, seed=5)
    _within(expected, report.row("correct guesses", "overall"), sd, 2000)
    assert report.row("max running imbalance", "overall").max == 2.0


def test_complete_randomization_two_arms(packaged_text: str) -> None:
    n, replicates = 20, 4000
    report = check_design(
        _complete(packaged_text, 2), participants=n, replicates=replicates, seed=6
    )
    # a guess is right with probability 1/2 whatever was seen; per-trial sd of the proportion
    _within(0.5, report.row("correct guesses", "overall"), 0.5 / math.sqrt(n), replicates)
    # E|S_n| and E max_i |S_i| of the simple random walk
    mean_abs = n * math.comb(n, n // 2) / 2**n
    sd_abs = math.sqrt(n - mean_abs**2)
    _within(mean_abs, report.row("final imbalance", "overall"), sd_abs, replicates)
    dist: Counter[tuple[int, int]] = Counter({(0, 0): 1})
    for _ in range(n):
        step: Counter[tuple[int, int]] = Counter()
        for (s, top), ways in dist.items():
            for t in (s - 1, s + 1):
                step[(t, max(top, abs(t)))] += ways
        dist = step
    e_max = sum(top * w for (_, top), w in dist.items()) / 2**n
    sd_max = math.sqrt(sum(top**2 * w for (_, top), w in dist.items()) / 2**n - e_max**2)
    _within(e_max, report.row("max running imbalance", "overall"), sd_max, replicates)


def test_complete_randomization_three_arms(packaged_text: str) -> None:
    n, replicates = 30, 2000
    report = check_design(
        _complete(packaged_text, 3), participants=n, replicates=replicates, seed=7
    )
    sd = math.sqrt(1 / 3 * 2 / 3 / n)
    _within(1 / 3, report.row("correct guesses", "overall"), sd, replicates)
    _within(1 / 3, report.row("correct guesses", "within site"), sd, replicates)


def test_minimization_balances_margins_better_than_blocks_by_site(packaged_text: str) -> None:
    mini = _protocol(minimization_text(packaged_text, probability=0.8))
    blocks = _protocol(packaged_text)
    a = check_design(mini, participants=267, replicates=300, seed=8)
    b = check_design(blocks, participants=267, replicates=300, seed=8)
    rows = {r.scope for r in a.rows if r.measure == "final imbalance"}
    assert {"overall", "site=US01", "cd4=<500", "cd4=>=500", "worst stratum"} <= rows
    assert a.row("final imbalance", "overall").mean < b.row("final imbalance", "overall").mean
    assert a.method == "minimization" and b.method == "permuted_blocks"


def test_deterministic_minimization_on_one_factor_keeps_each_level_within_one(
    packaged_text: str,
) -> None:
    protocol = _protocol(
        minimization_text(packaged_text, probability=1.0, cd4_weight=0), arms=2, sites=3
    )
    report = check_design(protocol, participants=90, replicates=200, seed=9)
    for site in ("US01", "GB01", "DE01"):
        assert report.row("final imbalance", f"site={site}").max <= 1.0
    # with p = 1 each site's sequence is blocks of two: a tie (1/2) then a sure guess (1); a site
    # with an odd count ends on a tie, so each of the 3 sites loses at most 1/4 of a guess
    within = report.row("correct guesses", "within site")
    assert within.q05 >= 0.75 - 3 * 0.25 / 90 and within.max == 0.75


# -- the simulation is the trial's own mechanism ---------------------------------------------------
def test_a_simulated_trial_uses_the_lists_a_set_up_with_its_seed_makes(packaged: Any) -> None:
    protocol = _protocol(packaged.text, strata=["site", "sex"])
    sim = checks._simulate_blocks(protocol, 120, 11, 0, 2)
    codes = protocol.arm_codes
    for rep in range(2):
        lists = allocation_lists(protocol, checks._replicate_seed(11, rep))
        for index, key in enumerate(stratum_keys(protocol)):
            mine = sim.arms[rep][sim.strata[rep] == index]
            assert [codes[a] for a in mine] == [s.arm for s in lists[key][: len(mine)]]
    report = check_design(protocol, participants=120, replicates=20, seed=11)
    assert {r.scope for r in report.rows if r.measure == "correct guesses"} == {
        "overall",
        "within site",
        "within stratum",
    }


def test_same_seed_same_figures(packaged_text: str) -> None:
    mini = _protocol(minimization_text(packaged_text))
    a = check_design(mini, participants=50, replicates=30, seed=12)
    assert a == check_design(mini, participants=50, replicates=30, seed=12)
    assert a != check_design(mini, participants=50, replicates=30, seed=13)


def test_list_exhaustion_is_reported(packaged_text: str) -> None:
    short = _protocol(packaged_text, sites=1, block_sizes=[3], list_length_per_stratum=3)
    assert check_design(short, participants=4, replicates=5).exhausted == 1.0
    assert check_design(short, participants=3, replicates=5).exhausted == 0.0
    mini = _protocol(minimization_text(packaged_text, list_length=10))
    assert check_design(mini, participants=11, replicates=3).exhausted == 1.0
    assert check_design(mini, participants=10, replicates=3).exhausted == 0.0


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"participants": 0}, "participants must be a whole number >= 1, got 0"),
        ({"replicates": -2}, "replicates must be a whole number >= 1, got -2"),
        ({"seed": -1}, "seed must be a whole number >= 0, got -1"),
        ({"seed": 1.5}, "seed must be a whole number >= 0, got 1.5"),
    ],
)
def test_bad_arguments(packaged: Any, kw: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_design(packaged.protocol, **kw)
    assert fragment in str(info.value)


def test_to_dict_is_json(packaged: Any) -> None:
    report = check_design(packaged.protocol, participants=12, replicates=3)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["method"] == "permuted_blocks" and data["participants"] == 12
    assert {"measure", "scope", "summary"} == set(data["rows"][0])
    assert isinstance(report, DesignCheck)


# -- the command -----------------------------------------------------------------------------------
runner = CliRunner()


def test_command_prints_a_table_and_json(tmp_path: Path, packaged_text: str) -> None:
    path = tmp_path / "mini.toml"
    path.write_text(minimization_text(packaged_text), encoding="utf-8")
    table = runner.invoke(
        app, ["randomization", "check", "--protocol", str(path), "--replicates", "20"]
    )
    assert table.exit_code == 0, table.output
    assert "minimization" in table.output and "correct guesses" in table.output
    assert "cd4=<500" in table.output
    out = runner.invoke(
        app, ["randomization", "check", "--participants", "30", "--replicates", "10", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["participants"], data["replicates"], data["seed"]) == (30, 10, 1)
    assert len(data["provenance"]["protocol_sha256"]) == 64
    assert data["provenance"]["seed"] == 1 and "software_version" in data["provenance"]


def test_command_errors_are_one_clear_message(tmp_path: Path, packaged_text: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(minimization_text(packaged_text, probability=0.3), encoding="utf-8")
    bad = runner.invoke(app, ["randomization", "check", "--protocol", str(path)])
    assert bad.exit_code == 1
    assert "randomization.minimization.probability" in bad.output
    assert "Traceback" not in bad.output
    zero = runner.invoke(app, ["randomization", "check", "--replicates", "0"])
    assert zero.exit_code == 1 and "replicates must be" in zero.output
    short = tmp_path / "short.toml"
    short.write_text(minimization_text(packaged_text, list_length=5), encoding="utf-8")
    warned = runner.invoke(
        app, ["randomization", "check", "--protocol", str(short), "--replicates", "2"]
    )
    assert warned.exit_code == 0 and "runs out in 100.0%" in warned.output
