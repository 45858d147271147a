"""Pure NumPy/SciPy statistical kernels, each matching a named R function.

* :mod:`~stalwart.analysis.kernels.ttest`: Welch and pooled two-sample t-tests (``t.test``).
* :mod:`~stalwart.analysis.kernels.ancova`: ANCOVA treatment contrast and LS means
  (``lm`` + ``emmeans``).
* :mod:`~stalwart.analysis.kernels.mmrm`: mixed model for repeated measures, arm x visit means
  and contrasts under a covariance across visits (``nlme::gls(method = "REML")``).
* :mod:`~stalwart.analysis.kernels.km`: Kaplan-Meier estimate, confidence limits and quantiles
  (``survival::survfit``, ``quantile.survfit``).
* :mod:`~stalwart.analysis.kernels.logrank`: k-sample and stratified log-rank test
  (``survival::survdiff``).
* :mod:`~stalwart.analysis.kernels.exact`: exact conditional test and CI of a Poisson rate ratio
  (``poisson.test``).
* :mod:`~stalwart.analysis.kernels.fisher`: Fisher's exact test, conditional odds ratio and CI,
  over many 2x2 tables at once (``fisher.test``).
* :mod:`~stalwart.analysis.kernels.censored`: log10 HIV RNA below the assay limit, by substitution
  (``lm``) or a left-censored normal model (``survival::survreg``).
* :mod:`~stalwart.analysis.kernels.groupseq`: Lan-DeMets alpha-spending boundaries
  (``rpact::getDesignGroupSequential``).
* :mod:`~stalwart.analysis.kernels.cox`: Cox proportional hazards model with Efron or Breslow
  ties, robust (sandwich) variance and profile-likelihood limits (``survival::coxph``).
* :mod:`~stalwart.analysis.kernels.firth`: Firth-penalized Cox regression with penalized
  likelihood-ratio tests and profile limits (``coxphf::coxphf``).
* :mod:`~stalwart.analysis.kernels.batched`: the t-test, ANCOVA, log-rank and Cox kernels with a
  leading replicate axis, for the Monte Carlo study (each module names its R call).

The kernels take plain arrays, never print, and raise
:class:`stalwart.errors.AnalysisError` when the data cannot support the analysis.
"""
