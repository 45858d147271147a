"""The lock: requirements/lock.txt pins every dependency, agrees with pyproject.toml, and is what
is installed (the README's commands and .ci/run install it as a pip constraints file).

``.ci/run-newest`` runs the tests on the newest releases instead and sets ``STALWART_UNLOCKED=1``:
only then is "installed = locked" not checked.
"""

from __future__ import annotations

import os
import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[1]
LOCK = ROOT / "requirements" / "lock.txt"
PIN = re.compile(r"^([A-Za-z0-9_.\[\]-]+)==([^\s;]+)\s*(?:;\s*(.+))?$")
BOOTSTRAP = {"pip", "setuptools", "wheel", "stalwart"}
"""Installed with any venv (or the project itself): not part of the lock."""


def _locked() -> dict[str, tuple[str, str | None]]:
    """Locked name -> (version, environment marker or None)."""
    locked: dict[str, tuple[str, str | None]] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, f"requirements/lock.txt: not a pin: {line!r}"
        locked[canonicalize_name(match[1])] = (match[2], match[3])
    return locked


def _applies(marker: str | None) -> bool:
    return marker is None or Requirement(f"x; {marker}").marker.evaluate()  # type: ignore[union-attr]


def _direct() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [
        Requirement(r)
        for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]
    ]


def test_every_direct_dependency_is_locked_within_its_range() -> None:
    locked = _locked()
    for requirement in _direct():
        if not _applies(str(requirement.marker) if requirement.marker else None):
            continue
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is in pyproject.toml but not locked: run .ci/refresh-lock"
        version = locked[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{name}=={version} in the lock is outside pyproject.toml's {requirement.specifier}"
        )


def test_every_direct_dependency_has_an_upper_bound() -> None:
    unbounded = [
        str(r)
        for r in _direct()
        if not any(spec.operator in ("<", "<=", "==", "~=") for spec in r.specifier)
    ]
    assert not unbounded, f"give these an upper bound (the next untested major): {unbounded}"


@pytest.mark.skipif(
    os.environ.get("STALWART_UNLOCKED") == "1",
    reason="STALWART_UNLOCKED=1: .ci/run-newest tests the newest releases, not the lock",
)
def test_the_installed_versions_are_the_locked_ones() -> None:
    wrong = {
        name: f"locked {version}, installed {installed}"
        for name, (version, marker) in _locked().items()
        if _applies(marker)
        and (installed := _installed_version(name)) is not None
        and installed != version
    }
    missing = sorted(
        name
        for name, (_, marker) in _locked().items()
        if _applies(marker) and _installed_version(name) is None
    )
    assert not wrong, f"installed versions differ from requirements/lock.txt: {wrong}"
    assert not missing, f"locked but not installed: {missing}"


@pytest.mark.skipif(
    os.environ.get("CI") != "true" or os.environ.get("STALWART_UNLOCKED") == "1",
    reason="a developer's venv may hold tools of their own; CI's fresh venv holds the lock only",
)
def test_nothing_beyond_the_lock_is_installed_in_ci() -> None:
    locked = _locked()
    extra = sorted(
        f"{name}=={dist.version}"
        for dist in metadata.distributions()
        if (name := canonicalize_name(dist.metadata["Name"])) not in locked
        and name not in BOOTSTRAP
    )
    assert not extra, f"installed but not in requirements/lock.txt: {extra}"


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
