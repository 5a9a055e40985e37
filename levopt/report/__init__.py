"""Pictures and a self-contained HTML report of a run directory, from its saved results only.

``make_report(DIR)`` reads whatever ``levopt run | evaluate | sweep | calibrate`` left in ``DIR``,
draws the PNG pictures next to it and writes ``DIR/report.html`` (images embedded, no network).
Nothing is re-simulated.
"""

from __future__ import annotations

from levopt.report.html import make_report, render_report
from levopt.report.plots import make_plots

__all__ = ["make_plots", "make_report", "render_report"]
