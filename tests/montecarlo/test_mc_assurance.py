"""Assurance beside power: the between-stream Monte Carlo error and the uncertainty option."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stalwart.errors import ConfigurationError
from stalwart.montecarlo.assurance import _stream_se, posterior_draws
from stalwart.protocol.load import load_protocol
from stalwart.simulate.parameters import load_parameters


def test_stream_se_is_the_between_stream_error() -> None:
    hits = np.repeat([True, False, True, True], 100)  # streams of 100 share a draw
    means = np.array([1.0, 0.0, 1.0, 1.0])
    assert _stream_se(hits) == pytest.approx(np.std(means, ddof=1) / 2.0)
    assert math.isnan(_stream_se(np.ones(50, dtype=bool)))  # one stream: no estimate


def test_fixed_means_no_draws_and_a_bad_mode_is_refused() -> None:
    protocol, params = load_protocol().protocol, load_parameters()
    assert posterior_draws("fixed", protocol, params) == ()
    with pytest.raises(ConfigurationError, match="--uncertainty must be one of fixed, posterior"):
        posterior_draws("bayes", protocol, params)
