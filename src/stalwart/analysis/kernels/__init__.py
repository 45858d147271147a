"""Pure NumPy/SciPy statistical kernels, each matching a named R function.

* :mod:`~stalwart.analysis.kernels.ttest`: Welch and pooled two-sample t-tests (``t.test``).
* :mod:`~stalwart.analysis.kernels.ancova`: ANCOVA treatment contrast and LS means
  (``lm`` + ``emmeans``).
* :mod:`~stalwart.analysis.kernels.km`: Kaplan-Meier estimate with log-log confidence limits
  (``survival::survfit``).
* :mod:`~stalwart.analysis.kernels.logrank`: k-sample and stratified log-rank test
  (``survival::survdiff``).
* :mod:`~stalwart.analysis.kernels.cox`: Cox proportional hazards model with Efron or Breslow
  ties (``survival::coxph``).

The kernels take plain arrays, never print, and raise
:class:`stalwart.errors.AnalysisError` when the data cannot support the analysis.
"""
