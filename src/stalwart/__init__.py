"""stalwart: run a randomized clinical trial end to end from one protocol file."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__`` on first use: reading the installed metadata costs a command that never
    prints it (``stalwart --help``) a tenth of a second."""
    if name != "__version__":
        raise AttributeError(f"module 'stalwart' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("stalwart")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
