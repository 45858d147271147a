"""Rendering of the report figures for embedding in one self-contained HTML page.

Each public figure function draws with matplotlib (Agg backend, no display needed), closes its
figure before returning, and hands back an :class:`EmbeddedFigure`: the raw image (SVG text or
PNG bytes) and the HTML markup that embeds it inline, an ``<svg>`` element with ``<title>`` and
``<desc>`` or an ``<img>`` with a ``data:`` URI and ``alt`` text. Nothing refers to an external
resource. The CONSORT flow diagram is drawn as SVG directly, so that its boxes stay readable text.

Element ids inside an inline SVG are prefixed with the figure's ``ident`` so that several figures
share one page without clashing; ``ident`` must therefore be unique within the page.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from typing import Literal

import matplotlib
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "ARM_COLOURS",
    "LINESTYLES",
    "MARKERS",
    "EmbeddedFigure",
    "FigureFormat",
    "check_ident",
    "legend_above",
    "plain_label",
    "render_figure",
]

FigureFormat = Literal["svg", "png"]
"""How a figure is embedded: inline SVG (default, vector, prints sharply) or a base64 PNG."""

ARM_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
"""Okabe-Ito colours (colour-blind safe), given to arms in protocol order."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X")
"""Marker of each arm's line, in protocol order."""

LINESTYLES = ("-", "--", "-.", ":", "-", "--", "-.")
"""Line style of each arm's line, in protocol order (arms stay apart without colour)."""


@dataclass(frozen=True)
class EmbeddedFigure:
    """A rendered figure: ``markup`` goes into the HTML as is; ``data`` is the image itself."""

    markup: str
    data: bytes
    mime: str


def plain_label(text: str) -> str:
    """Text for a matplotlib label: ``$`` would otherwise start mathtext."""
    return text.replace("$", r"\$")


def check_ident(ident: str) -> None:
    """Raise ValueError unless ``ident`` can prefix element ids (a letter, then [A-Za-z0-9_-])."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", ident):
        raise ValueError(
            f"figure ident {ident!r} must start with a letter and hold only letters, digits, "
            "'-' and '_' (it prefixes element ids in the page)"
        )


_SVG_ID = re.compile(r'\bid="([^"]+)"')
_SVG_HREF = re.compile(r'href="#([^"]+)"')
_SVG_URL = re.compile(r"url\(#([^)]+)\)")


def _inline_svg(svg: str, ident: str, title: str, description: str) -> str:
    """Make matplotlib's standalone SVG document fit for inline use in HTML.

    Drops the XML prolog, doctype, RDF metadata and namespace declarations (HTML parses inline
    SVG without them), prefixes every id and every reference to one with ``ident``, and adds an
    accessible name (``<title>``) and description (``<desc>``).
    """
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(?::\w+)?="[^"]*"', "", svg)
    svg = _SVG_ID.sub(lambda m: f'id="{ident}-{m.group(1)}"', svg)
    svg = _SVG_HREF.sub(lambda m: f'href="#{ident}-{m.group(1)}"', svg)
    svg = _SVG_URL.sub(lambda m: f"url(#{ident}-{m.group(1)})", svg)
    head_end = svg.index(">") + 1
    head = svg[: head_end - 1]
    head += (
        f' id="{ident}" role="img" aria-labelledby="{ident}-title {ident}-desc" '
        'style="width: 100%; height: auto">'
    )
    labels = (
        f'<title id="{ident}-title">{html.escape(title)}</title>'
        f'<desc id="{ident}-desc">{html.escape(description)}</desc>'
    )
    return head + labels + svg[head_end:].rstrip() + "\n"


_PAD_INCHES = 0.04
"""Margin around everything drawn: figures are saved with ``bbox_inches="tight"``, so that no
label is cut at the figure's edge (a long axis or tick label grows the image instead; the page
scales it to its width)."""


def render_figure(
    fig: Figure, *, ident: str, title: str, description: str, fmt: FigureFormat
) -> EmbeddedFigure:
    """Render and close ``fig`` as an :class:`EmbeddedFigure` (SVG inline or a PNG data URI)."""
    try:
        if fmt == "svg":
            text_buffer = io.StringIO()
            with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": ident}):
                fig.savefig(
                    text_buffer,
                    format="svg",
                    metadata={"Date": None},
                    bbox_inches="tight",
                    pad_inches=_PAD_INCHES,
                )
            svg = text_buffer.getvalue()
            return EmbeddedFigure(
                markup=_inline_svg(svg, ident, title, description),
                data=svg.encode("utf-8"),
                mime="image/svg+xml",
            )
        if fmt == "png":
            byte_buffer = io.BytesIO()
            fig.savefig(
                byte_buffer,
                format="png",
                dpi=150,
                metadata={"Software": None},
                bbox_inches="tight",
                pad_inches=_PAD_INCHES,
            )
            data = byte_buffer.getvalue()
            uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            alt = html.escape(f"{title}. {description}".strip(" ."), quote=True)
            return EmbeddedFigure(
                markup=f'<img id="{ident}" src="{uri}" alt="{alt}" style="max-width: 100%">',
                data=data,
                mime="image/png",
            )
        raise ValueError(f"figure format must be 'svg' or 'png', got {fmt!r}")
    finally:
        plt.close(fig)


def legend_above(fig: Figure, ax: Axes) -> None:
    """One legend row above the axes, clear of the data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(
            handles,
            labels,
            loc="outside upper center",
            ncols=min(len(handles), 3),
            frameon=False,
        )
