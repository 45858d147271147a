"""Statistical analysis of the trial: pure numerical kernels and the analysis datasets they read.

The :mod:`stalwart.analysis.kernels` subpackage holds NumPy/SciPy implementations of the tests and
models the statistical analysis plan names (t-tests, ANCOVA, Kaplan-Meier, log-rank, Cox), each
validated against an independent reference implementation.
"""
