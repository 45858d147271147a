"""Randomization: allocation lists (stratified permuted blocks) and their assignment."""
