"""Outputs: the HTML report and its figures."""
