"""Simulation of the study: the calibrated participant model and the sites that play it."""
