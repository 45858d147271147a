"""Data capture: the store, its service functions with edit checks, and the audit chain."""
