"""The ``stalwart`` command line, a thin layer over the library: see ``main``."""

from stalwart.cli.main import app, main

__all__ = ["app", "main"]
