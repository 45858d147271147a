"""stalwart: run a randomized clinical trial end to end from one protocol file."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("stalwart")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
