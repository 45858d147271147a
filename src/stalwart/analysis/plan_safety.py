"""The plan's safety section: participants with an adverse event, compared by Fisher's exact test.

For each ``[[analysis.safety]]`` entry and comparison, every listed AE term and every "any AE of
grade >= g" threshold becomes a 2x2 table (participants with / without, treated vs control; a
participant counts once however many such AEs they had) and all tables are tested in one call
of :func:`stalwart.analysis.kernels.fisher.fisher_exact_proportions` (R ``fisher.test``).
Denominators are the randomized participants of each side (ADSL).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stalwart.analysis.comparisons import analysis_comparisons
from stalwart.analysis.datasets.bundle import TrialDatasets
from stalwart.analysis.kernels.fisher import fisher_exact_proportions
from stalwart.analysis.results import SafetyComparison
from stalwart.errors import AnalysisError
from stalwart.jsonable import finite_or_none
from stalwart.protocol.analysis_plan import SafetyAnalysis
from stalwart.protocol.schema import Protocol

__all__ = ["safety_analyses"]


def _items(spec: SafetyAnalysis, ae: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """(label, row mask of ADAE) for each term and each grade threshold."""
    items = [(term, ae["AEDECOD"] == term) for term in spec.terms]
    grade = pd.to_numeric(ae["AETOXGR"], errors="coerce")
    items += [(f"Any AE of grade >= {g}", grade >= g) for g in spec.any_grade_at_least]
    return items


def safety_analyses(protocol: Protocol, datasets: TrialDatasets) -> tuple[SafetyComparison, ...]:
    """Each planned AE proportion, treated vs control, with Fisher's exact test."""
    out: list[SafetyComparison] = []
    adsl = datasets.adsl
    for spec in protocol.analysis.safety:
        ae = datasets.adae
        if spec.treatment_emergent and "TRTEMFL" in ae.columns:
            ae = ae[ae["TRTEMFL"] == "Y"]
        items = _items(spec, ae)
        for comparison in analysis_comparisons("safety", spec):
            treated, control, arms = comparison.arm, comparison.control, comparison.treated
            n_t = int(adsl["ARMCD"].isin(arms).sum())
            n_c = int((adsl["ARMCD"] == control).sum())
            if n_t == 0 or n_c == 0:
                raise AnalysisError(
                    f"safety {spec.endpoint}: {treated} vs {control} needs randomized "
                    f"participants on both sides, found {n_t} and {n_c}"
                )
            in_t = ae["ARMCD"].isin(arms)
            in_c = ae["ARMCD"] == control
            e_t = np.array([ae.loc[m & in_t, "USUBJID"].nunique() for _, m in items], dtype=int)
            e_c = np.array([ae.loc[m & in_c, "USUBJID"].nunique() for _, m in items], dtype=int)
            if not items:
                continue
            test = fisher_exact_proportions(
                e_t, n_t, e_c, n_c, conf_level=1.0 - protocol.analysis.alpha
            )
            for k, (label, _) in enumerate(items):
                out.append(
                    SafetyComparison(
                        endpoint=spec.endpoint,
                        term=label,
                        arm=treated,
                        control=control,
                        n={treated: n_t, control: n_c},
                        events={treated: int(e_t[k]), control: int(e_c[k])},
                        proportion={treated: e_t[k] / n_t, control: e_c[k] / n_c},
                        difference=finite_or_none(e_t[k] / n_t - e_c[k] / n_c),
                        odds_ratio=finite_or_none(test.odds_ratio[k]),
                        ci_low=finite_or_none(test.ci_low[k]),
                        ci_high=finite_or_none(test.ci_high[k]),
                        p_value=finite_or_none(test.p_value[k]),
                    )
                )
    return tuple(out)
