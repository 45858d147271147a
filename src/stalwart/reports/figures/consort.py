"""The CONSORT participant-flow diagram, drawn as SVG directly so that its boxes stay text.

Screening, exclusions with reasons and randomization, then one column per arm: allocated,
discontinued (with reasons), completed and analysed.
"""

from __future__ import annotations

import html
import itertools
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from stalwart.reports.figures.render import EmbeddedFigure, check_ident

__all__ = ["ConsortArm", "consort_diagram"]

_FONT = 12
_LINE = 15
_PAD = 8
_CHAR_WIDTH = 7.0  # average glyph width at 12 px, for wrapping
_NEQ = "\u00a0=\u00a0"  # " = " that wrapping never splits
_COL_WIDTH = 220
_GAP = 20


@dataclass(frozen=True)
class ConsortArm:
    """The CONSORT counts of one arm, in the order the diagram shows them."""

    label: str
    randomized: int
    discontinued: Mapping[str, int] = field(default_factory=dict)
    completed: int = 0
    analysed: int = 0


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    width: float
    lines: tuple[tuple[str, bool], ...]  # (text, bold)

    @property
    def height(self) -> float:
        return _box_height(len(self.lines))

    @property
    def bottom(self) -> float:
        return self.y + self.height

    @property
    def centre(self) -> float:
        return self.x + self.width / 2


def _box_height(n_lines: int) -> float:
    return 2 * _PAD + n_lines * _LINE


def _wrap(text: str, width: float, bold: bool = False, indent: str = "") -> list[tuple[str, bool]]:
    chars = max(8, int((width - 2 * _PAD) / _CHAR_WIDTH))
    lines = textwrap.wrap(text, chars, subsequent_indent=indent) or [""]
    return [(line, bold) for line in lines]


def _reason_lines(
    title: str, total: int, reasons: Mapping[str, int], width: float
) -> list[tuple[str, bool]]:
    lines = _wrap(f"{title} (n{_NEQ}{total})", width, bold=True)
    for reason, count in reasons.items():
        lines += _wrap(f"• {reason} (n{_NEQ}{count})", width, indent="  ")
    return lines


def _svg_box(box: _Box) -> str:
    parts = [
        f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.width:.1f}" '
        f'height="{box.height:.1f}" rx="3" fill="#ffffff" stroke="#333333" stroke-width="1"/>'
    ]
    for i, (text, bold) in enumerate(box.lines):
        y = box.y + _PAD + (i + 1) * _LINE - 4
        weight = ' font-weight="bold"' if bold else ""
        parts.append(f'<text x="{box.x + _PAD:.1f}" y="{y:.1f}"{weight}>{html.escape(text)}</text>')
    return "\n".join(parts)


def _svg_line(x1: float, y1: float, x2: float, y2: float, ident: str, arrow: bool = True) -> str:
    end = f' marker-end="url(#{ident}-arrow)"' if arrow else ""
    return (
        f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
        f'stroke="#333333" stroke-width="1"{end}/>'
    )


def consort_diagram(
    screened: int,
    screen_failures: int,
    failure_reasons: Mapping[str, int],
    arms: Sequence[ConsortArm],
    *,
    ident: str = "fig-consort",
    title: str = "CONSORT flow diagram",
    description: str = "",
) -> EmbeddedFigure:
    """A CONSORT-style flow diagram as inline SVG: screening, exclusions with reasons, randomized,
    then per arm allocated, discontinued (with reasons), completed and analysed."""
    check_ident(ident)
    if not arms:
        raise ValueError("a CONSORT diagram needs at least one arm")
    k = len(arms)
    width = max(k * (_COL_WIDTH + _GAP) + _GAP, 740)
    centre = width / 2
    randomized = sum(a.randomized for a in arms)

    top = _Box(
        centre - 140,
        10,
        280,
        tuple(_wrap(f"Assessed for eligibility (n{_NEQ}{screened})", 280, bold=True)),
    )
    excl_x = centre + 60
    excl_width = min(300, width - excl_x - 10)
    excluded = _Box(
        excl_x,
        top.bottom + 15,
        excl_width,
        tuple(_reason_lines("Excluded", screen_failures, failure_reasons, excl_width)),
    )
    rand = _Box(
        centre - 140,
        max(top.bottom, excluded.bottom) + 25,
        280,
        tuple(_wrap(f"Randomized (n{_NEQ}{randomized})", 280, bold=True)),
    )
    split_y = rand.bottom + 20
    left = (width - (k * _COL_WIDTH + (k - 1) * _GAP)) / 2
    columns = [
        [
            _wrap(arm.label, _COL_WIDTH, bold=True)
            + _wrap(f"Allocated (n{_NEQ}{arm.randomized})", _COL_WIDTH),
            _reason_lines(
                "Discontinued main study",
                sum(arm.discontinued.values()),
                arm.discontinued,
                _COL_WIDTH,
            ),
            _wrap(f"Completed main study (n{_NEQ}{arm.completed})", _COL_WIDTH),
            _wrap(f"Analysed, primary endpoint (n{_NEQ}{arm.analysed})", _COL_WIDTH),
        ]
        for arm in arms
    ]
    boxes: list[list[_Box]] = [[] for _ in arms]
    y = split_y + 20
    for row in range(4):
        tallest = max(_box_height(len(col[row])) for col in columns)
        for j, col in enumerate(columns):
            x = left + j * (_COL_WIDTH + _GAP)
            boxes[j].append(_Box(x, y, _COL_WIDTH, tuple(col[row])))
        y += tallest + 22
    height = y - 10

    parts = [
        f'<svg width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'id="{ident}" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        # an explicit width keeps the aspect ratio in WeasyPrint too (height: auto beside a
        # max-width alone gives a square box there); 680px is the width of an A4 page's text
        f'style="width: {min(width, 680):.0f}px; max-width: 100%; height: auto" '
        f'font-family="DejaVu Sans, Arial, Helvetica, sans-serif" font-size="{_FONT}">',
        f'<title id="{ident}-title">{html.escape(title)}</title>',
        f'<desc id="{ident}-desc">{html.escape(description)}</desc>',
        f'<defs><marker id="{ident}-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#333333"/></marker></defs>',
        _svg_box(top),
        _svg_box(excluded),
        _svg_box(rand),
        _svg_line(centre, top.bottom, centre, rand.y, ident),
        _svg_line(
            centre,
            excluded.y + excluded.height / 2,
            excluded.x,
            excluded.y + excluded.height / 2,
            ident,
        ),
        _svg_line(centre, rand.bottom, centre, split_y, ident, arrow=False),
    ]
    centres = [column[0].centre for column in boxes]
    parts.append(_svg_line(min(centres), split_y, max(centres), split_y, ident, arrow=False))
    for column in boxes:
        first = column[0]
        parts.append(_svg_line(first.centre, split_y, first.centre, first.y, ident))
        for upper, lower in itertools.pairwise(column):
            parts.append(_svg_line(upper.centre, upper.bottom, lower.centre, lower.y, ident))
        parts.extend(_svg_box(box) for box in column)
    parts.append("</svg>")
    markup = "\n".join(parts) + "\n"
    standalone = markup.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    return EmbeddedFigure(markup=markup, data=standalone.encode("utf-8"), mime="image/svg+xml")
