"""The plan's two-arm analyses with a leading replicate axis: one call analyses many trials.

Each function takes arrays shaped ``(replicate, participant)`` and returns one value per
replicate, equal (to rounding) to the single-trial kernel run on that replicate's participants:

* :mod:`~stalwart.analysis.kernels.batched.continuous`: :func:`batched_welch_ttest` (R
  ``t.test``) and :func:`batched_ancova` (R ``lm(y ~ arm + baseline)``);
* :mod:`~stalwart.analysis.kernels.batched.survival`: :func:`event_times`, then
  :func:`batched_logrank` (R ``survdiff``) and :func:`batched_cox` (R
  ``coxph(Surv(time, event) ~ treated, ties = "efron")``).

Which participants a replicate analyses is a boolean ``include`` mask, so comparisons of a
subset of arms, complete cases and interim looks are masks, never copies. A replicate whose data
cannot support the analysis (an arm without values, no events) is flagged ``estimable = False``
with NaN estimates, instead of raising as the single-trial kernels do: in a Monte Carlo study such
trials are counted, not fatal.
"""

from stalwart.analysis.kernels.batched.continuous import (
    BatchedAncova,
    BatchedTwoSample,
    batched_ancova,
    batched_welch_ttest,
)
from stalwart.analysis.kernels.batched.survival import (
    BatchedCox,
    BatchedLogRank,
    EventTimes,
    batched_cox,
    batched_firth_hazard_ratio,
    batched_logrank,
    event_times,
)

__all__ = [
    "BatchedAncova",
    "BatchedCox",
    "BatchedLogRank",
    "BatchedTwoSample",
    "EventTimes",
    "batched_ancova",
    "batched_cox",
    "batched_firth_hazard_ratio",
    "batched_logrank",
    "batched_welch_ttest",
    "event_times",
]
