"""capture/ as drawn: the service above the workflows, the context below them, no import circle.

Read from the source (every ``import``, those under ``TYPE_CHECKING`` included), so a workflow
that reaches back up into ``service.py`` fails here before it can form a circle at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CAPTURE = Path(__file__).parents[2] / "src" / "stalwart" / "capture"
WORKFLOWS = ("enrolment", "followup", "records", "exports", "queries", "signatures", "reviews")
"""The modules ``service.CaptureService`` composes."""


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CAPTURE.glob("*.py")) if p.stem != "__init__"}


def _capture_imports(path: Path) -> set[str]:
    """The capture modules ``path`` imports, by name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["stalwart", "capture"] and len(parts) > 2:
                found.add(parts[2])
    return found & set(_modules())


def test_no_capture_module_imports_the_service() -> None:
    importers = [name for name, path in _modules().items() if "service" in _capture_imports(path)]
    assert importers == []


@pytest.mark.parametrize("module", ["context", "writes", "audit", "transaction", "tables"])
def test_the_floor_imports_no_workflow(module: str) -> None:
    assert _capture_imports(_modules()[module]) & {*WORKFLOWS, "service", "users"} == set()


def test_capture_imports_form_no_circle() -> None:
    graph = {name: _capture_imports(path) - {name} for name, path in _modules().items()}
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in trail, " -> ".join((*trail, name))
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, (*trail, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
