"""The model's 95% predictive intervals of STALWART's published figures, from the simulator."""

from __future__ import annotations

import hashlib

import pytest

from stalwart.errors import ConfigurationError
from stalwart.montecarlo.predictive import PUBLISHED, predictive, shipped_predictive
from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import load_parameters
from stalwart.simulate.posterior import default_posterior_path


@pytest.fixture(scope="module")
def shipped() -> dict:
    return shipped_predictive()


def test_every_published_figure_falls_inside_its_predictive_interval(shipped) -> None:
    intervals = shipped["intervals"]
    assert set(intervals) == set(PUBLISHED)
    for name, row in intervals.items():
        assert row["published"] == PUBLISHED[name]
        assert row["q025"] <= row["published"] <= row["q975"], name
        assert row["inside"], name
        assert row["replicates"] == shipped["settings"]["draws"] * shipped["settings"]["per_draw"]
    # intervals, not one run: the CD4 difference's spans parameter and sampling uncertainty
    cd4 = intervals["CD4 difference IL2"]
    assert cd4["q975"] - cd4["q025"] > 100


def test_the_shipped_intervals_are_of_the_shipped_sample_and_protocol(shipped) -> None:
    settings = shipped["settings"]
    sample = default_posterior_path().read_bytes()
    assert settings["posterior_sample_sha256"] == hashlib.sha256(sample).hexdigest()
    # the protocol's sha256 is recorded, not required: its comments change often; its design is
    assert len(settings["protocol_sha256"]) == 64
    assert settings["sample_size"] == load_protocol().protocol.study.sample_size
    assert settings["parameters_fingerprint"] == load_parameters().fingerprint()
    assert settings["sample_size"] == 267 and settings["draws"] >= 400


def test_the_intervals_are_reproducible_from_the_code() -> None:
    # a reduced run by the same code: same seed, same figures; finite, ordered intervals
    first = predictive(draws=8, per_draw=2, seed=3)
    assert first == predictive(draws=8, per_draw=2, seed=3)
    for row in first["intervals"].values():
        assert row["q025"] <= row["median"] <= row["q975"]
        assert row["replicates"] == 16
    assert sum(first["intervals"][f"randomized {a}"]["median"] for a in ("NOTHER", "IL2")) < 267


@pytest.mark.parametrize("args", [(0, 5, 1), (4, 0, 1), (4, 101, 1), (4, 5, -1)])
def test_bad_settings_are_refused(args) -> None:
    with pytest.raises(ConfigurationError, match="draws >= 1"):
        predictive(*args)
