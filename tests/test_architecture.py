"""The house as drawn: each package imports only packages of its own layer or below.

The layers, top to bottom, follow the data flow (README "Layout"): the command line over the
demo and the site players, over the sites' web system, over the reports, over CDISC files in and
out, over the Monte Carlo design, over analysis and simulation (independent of each other), over
the store, over randomization, over the protocol, over a foundation of small shared modules.
Every ``import`` and ``from ... import`` in ``src/stalwart`` counts, those inside functions (lazy
imports) included: a lazy import is still a dependency. A new package must be placed here.
"""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "stalwart"

LAYERS: list[tuple[str, ...]] = [
    ("__main__",),
    ("cli",),
    ("play",),
    ("web",),
    ("reports",),
    ("cdisc",),
    ("montecarlo",),
    ("analysis", "simulate"),
    ("capture",),
    ("randomization", "provenance", "published"),
    ("protocol",),
    ("errors", "jsonable", "__init__"),
]
"""Top to bottom. Packages in one tuple may not import each other (they are independent),
except the foundation's modules, which may import each other."""

FOUNDATION = LAYERS[-1]


def _level() -> dict[str, int]:
    return {name: i for i, names in enumerate(LAYERS) for name in names}


def _unit(path: Path) -> str:
    """The package (or top-level module) a source file belongs to."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """The stalwart units ``path`` imports, lazily or not."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "stalwart":
                names = [f"stalwart.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "stalwart":
                found.add(parts[1] if len(parts) > 1 else "__init__")
    return found


def _sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "migrations" not in p.parts)


def test_every_package_is_in_a_layer() -> None:
    level = _level()
    unplaced = sorted({_unit(p) for p in _sources()} - set(level))
    assert not unplaced, f"place these in tests/test_architecture.py LAYERS: {unplaced}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_runs_up_or_across(path: Path) -> None:
    level = _level()
    unit = _unit(path)
    if unit not in level:
        pytest.skip("not placed yet: see test_every_package_is_in_a_layer")
    wrong = []
    for imported in sorted(_imports(path) - {unit}):
        if imported not in level:
            continue  # a missing unit fails test_every_package_is_in_a_layer
        if level[imported] < level[unit]:
            wrong.append(f"{imported} (a layer above {unit})")
        elif level[imported] == level[unit] and unit not in FOUNDATION:
            wrong.append(f"{imported} (beside {unit}: they are independent)")
    assert not wrong, f"{path.relative_to(SRC)} imports {', '.join(wrong)}"


MAX_LINES = 600
"""Small modules named for the domain noun: split along a real seam before this."""


def test_no_module_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(SRC)): n
        for path in _sources()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these along a real seam: {long}"


@pytest.mark.parametrize(
    "path",
    [p for p in _sources() if p.stem != "__main__"],  # importing one runs the command line
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_every_module_declares_its_public_names(path: Path) -> None:
    """``__all__`` in every module (a package's ``__init__`` that only documents is exempt), and
    every name it lists exists."""
    parts = path.relative_to(SRC).with_suffix("").parts
    dotted = parts[:-1] if parts[-1] == "__init__" else parts
    name = ".".join(("stalwart", *dotted))
    module = importlib.import_module(name)
    public = [
        n
        for n, v in vars(module).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "annotations"
    ]
    if parts[-1] == "__init__" and not public:
        return
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a capture module importing the web layer is found."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from stalwart.web.app import create_app\n")
    assert _imports(module) == {"web"}
    assert _level()["web"] < _level()["capture"]
