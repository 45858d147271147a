"""Figures of the trial reports, rendered for embedding in one self-contained HTML page.

* :mod:`~stalwart.reports.figures.render`: rendering and inline embedding shared by all figures
  (:class:`~stalwart.reports.figures.render.EmbeddedFigure`, arm colours, markers).
* :mod:`~stalwart.reports.figures.course`: a lab parameter's mean by week and arm (CD4+ count,
  HIV RNA).
* :mod:`~stalwart.reports.figures.survival`: Kaplan-Meier curves and numbers at risk.
* :mod:`~stalwart.reports.figures.forest`: forest plots of differences and hazard ratios.
* :mod:`~stalwart.reports.figures.consort`: the CONSORT participant-flow diagram.
"""

from __future__ import annotations

import matplotlib

# before any submodule imports pyplot: draw off screen, no display needed
matplotlib.use("Agg")

__all__: list[str] = []
