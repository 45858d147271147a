"""Kenward-Roger inference of the MMRM: what holds whatever the data (the comparison with R's
pbkrtest and a by-hand R computation is in tests/validation/test_mmrm_kr_vs_r.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stalwart.analysis.kernels.mmrm import mmrm
from stalwart.analysis.kernels.mmrm_kr import linear_covariance_basis
from stalwart.errors import AnalysisError
from validation.mmrm_cases import simulate


def _fit(data, **kw):
    return mmrm(
        data["y"], data["id"], data["visit"], data["arm"], data["base"], control_level="A", **kw
    )


@pytest.mark.parametrize("covariance", ["unstructured", "compound_symmetry"])
def test_kenward_roger_widens_the_standard_errors_and_cuts_the_df(covariance: str) -> None:
    """Phi_A is Phi plus a positive semi-definite term; the df lie below the residual df."""
    data = simulate(7, 60, visits=4)
    kr = _fit(data, covariance=covariance, df_method="kenward-roger")
    plain = _fit(data, covariance=covariance)
    assert np.all(np.linalg.eigvalsh(kr.coef_cov_adjusted - kr.coef_cov) > -1e-9)
    for ours, base in zip(kr.contrasts, plain.contrasts, strict=True):
        np.testing.assert_allclose(ours.difference, base.difference, rtol=1e-12)
        assert np.all(ours.se >= base.se)
        assert np.all(ours.df < plain.df_residual)
        assert all(math.isfinite(v) for v in ours.p_value)


def test_both_inferences_from_one_fit() -> None:
    data = simulate(8, 60, visits=3)
    both = _fit(data, kenward_roger=True)
    kr = _fit(data, df_method="kenward-roger")
    assert both.df_method == "residual"
    np.testing.assert_allclose(both.contrast("B", "A").df, np.full(3, both.df_residual))
    np.testing.assert_allclose(
        both.contrast("B", "A", "kenward-roger").df, kr.contrast("B", "A").df, rtol=1e-12
    )


def test_an_inference_the_fit_did_not_prepare_is_refused_with_the_fix() -> None:
    result = _fit(simulate(9, 45, visits=3))
    with pytest.raises(AnalysisError, match="kenward_roger=True"):
        result.contrast("B", "A", "kenward-roger")
    with pytest.raises(AnalysisError, match="df_method='satterthwaite'"):
        result.contrast("B", "A", "satterthwaite")
    with pytest.raises(AnalysisError, match="df_method must be one of"):
        result.contrast("B", "A", "containment")
    with pytest.raises(AnalysisError, match="df_method must be one of"):
        _fit(simulate(9, 45, visits=3), df_method="between-within")  # type: ignore[arg-type]


def test_linear_covariance_basis() -> None:
    basis = linear_covariance_basis("unstructured", 3)
    assert basis.shape == (6, 3, 3)
    np.testing.assert_array_equal(basis.sum(axis=0), np.ones((3, 3)))  # each element once
    cs = linear_covariance_basis("compound_symmetry", 3)
    np.testing.assert_array_equal(cs[0] * 2.0 + cs[1] * 3.0, 2.0 + 3.0 * np.eye(3))
    with pytest.raises(AnalysisError, match="unknown covariance"):
        linear_covariance_basis("toeplitz", 3)
