"""The plan's longitudinal section: a continuous endpoint at every planned visit, by MMRM.

For each ``[[analysis.longitudinal]]`` entry the ADLB rows of the endpoint at the planned visits
(with a value and, unless ``baseline = "none"``, a baseline) go into one REML MMRM
(:func:`stalwart.analysis.kernels.mmrm.mmrm`, ``nlme::gls``) with every arm in the model, and
each comparison is read off as treated minus control LS mean at each visit. A comparison whose
treated side pools arms (``"IL2+IL2ART"``) gets its own fit with those arms as one group.

When the planned covariance (unstructured) cannot be fitted, the fit is repeated with
``fallback_covariance`` (compound symmetry) and every record of that fit carries the reason in
``note``; an error of the fallback fit (an arm with no values at a visit, say) stands.

Every record also carries the contrast's Kenward-Roger inference (``kenward_roger``: standard
error from the adjusted covariance, df, interval, p) beside the plan's ``df_method`` results,
which stay as they were.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.comparisons import analysis_comparisons
from stalwart.analysis.datasets.adlb import analysed
from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.kernels.mmrm import MmrmResult, mmrm
from stalwart.analysis.results import LongitudinalComparison
from stalwart.errors import AnalysisError
from stalwart.jsonable import finite_or_none
from stalwart.protocol.analysis_plan import LongitudinalAnalysis, treated_arms
from stalwart.protocol.schema import Protocol

__all__ = ["longitudinal_analyses"]


def _rows(protocol: Protocol, datasets: TrialDatasets, spec: LongitudinalAnalysis) -> pd.DataFrame:
    endpoint = protocol.endpoint(spec.endpoint)
    assert endpoint.test is not None  # a continuous endpoint (the protocol's validation)
    paramcd = protocol.lab_item(endpoint.test).paramcd
    adlb = datasets.adlb
    rows = adlb[
        (adlb["PARAMCD"] == paramcd)
        & adlb["AVISIT"].isin(spec.visits)
        & analysed(adlb)  # the plan's out_of_window rule
    ]
    rows = rows[rows["AVAL"].notna()]
    return rows if spec.baseline == "none" else rows[rows["BASE"].notna()]


def _fit(
    spec: LongitudinalAnalysis, rows: pd.DataFrame, pooled: str | None
) -> tuple[MmrmResult, str, str | None]:
    """One MMRM of ``rows``; returns the result, the covariance fitted and a fallback note."""
    arm = rows["ARMCD"].astype(str).to_numpy()
    if pooled is not None:
        arm = np.where(np.isin(arm, treated_arms(pooled)), pooled, arm)
    weeks = rows["AVISITN"].to_numpy(int)

    def fit(covariance: str) -> MmrmResult:
        return mmrm(
            rows["AVAL"].to_numpy(float),
            rows["USUBJID"].astype(str).to_numpy(),
            weeks,
            arm,
            None if spec.baseline == "none" else rows["BASE"].to_numpy(float),
            covariance=covariance,  # type: ignore[arg-type]
            baseline_term=spec.baseline,
            df_method=spec.df_method,
            kenward_roger=True,
        )

    try:
        return fit(spec.covariance), spec.covariance, None
    except AnalysisError as exc:
        fallback = spec.fallback_covariance
        if fallback is None or fallback == spec.covariance:
            raise AnalysisError(f"longitudinal {spec.endpoint}: {exc}") from exc
        try:
            result = fit(fallback)
        except AnalysisError as again:
            raise AnalysisError(f"longitudinal {spec.endpoint}: {again}") from again
        note = (
            f"{spec.covariance} covariance could not be fitted ({exc}); refitted with "
            f"{fallback} as the plan's fallback_covariance says"
        )
        return result, fallback, note


def longitudinal_analyses(
    protocol: Protocol, datasets: TrialDatasets
) -> tuple[LongitudinalComparison, ...]:
    """Each planned comparison at each visit, from one MMRM per grouping of the arms."""
    out: list[LongitudinalComparison] = []
    for spec in protocol.analysis.longitudinal:
        rows = _rows(protocol, datasets, spec)
        if rows.empty:
            raise AnalysisError(
                f"longitudinal {spec.endpoint}: no values at the planned visits {spec.visits}"
            )
        codes = {protocol.visit(code).day // 7: code for code in spec.visits}
        fits: dict[str, tuple[MmrmResult, str, str | None]] = {}
        for comparison in analysis_comparisons("longitudinal", spec):
            treated, control = comparison.arm, comparison.control
            key = treated if comparison.pooled else ""
            if key not in fits:
                fits[key] = _fit(spec, rows, treated if key else None)
            result, covariance, note = fits[key]
            contrast = result.contrast(treated, control)
            kr = result.contrast(treated, control, "kenward-roger")
            levels = list(result.levels)
            it, ic = levels.index(treated), levels.index(control)
            for j, week in enumerate(result.visits):
                out.append(
                    LongitudinalComparison(
                        endpoint=spec.endpoint,
                        visit=codes[int(week)],
                        week=int(week),
                        arm=treated,
                        control=control,
                        method=spec.method,
                        covariance=covariance,
                        covariance_planned=spec.covariance,
                        baseline=result.baseline_term,
                        df_method=spec.df_method,
                        n={
                            treated: int(result.n_obs[it, j]),
                            control: int(result.n_obs[ic, j]),
                        },
                        ls_mean={
                            treated: finite_or_none(result.ls_means[it, j]),
                            control: finite_or_none(result.ls_means[ic, j]),
                        },
                        ls_mean_se={
                            treated: finite_or_none(result.ls_means_se[it, j]),
                            control: finite_or_none(result.ls_means_se[ic, j]),
                        },
                        difference=finite_or_none(contrast.difference[j]),
                        se=finite_or_none(contrast.se[j]),
                        df=finite_or_none(contrast.df[j]),
                        ci_low=finite_or_none(contrast.ci_low[j]),
                        ci_high=finite_or_none(contrast.ci_high[j]),
                        p_value=finite_or_none(contrast.p_value[j]),
                        log_likelihood=finite_or_none(result.log_likelihood),
                        note=note,
                        kenward_roger={
                            "se": finite_or_none(kr.se[j]),
                            "df": finite_or_none(kr.df[j]),
                            "ci_low": finite_or_none(kr.ci_low[j]),
                            "ci_high": finite_or_none(kr.ci_high[j]),
                            "p_value": finite_or_none(kr.p_value[j]),
                        },
                    )
                )
    return tuple(out)
