"""Pictures and a self-contained HTML report of a run directory, from its saved results only.

``make_report(DIR)`` reads whatever ``levopt run | evaluate | sweep | calibrate`` left in ``DIR``,
draws the PNG pictures next to it and writes ``DIR/report.html`` (images embedded, no network).
Nothing is re-simulated. The wording of numbers (metric titles, values rounded to their standard
errors, degenerate standard errors in words) is shared with the terminal (:mod:`levopt.terminal`).
"""

from __future__ import annotations

from levopt.report._inputs import (
    describe_policy,
    fmt_metric,
    goal,
    metric_style,
    metric_title,
    policy_class,
    rebalance_words,
    round_to_stderr,
    stderr_state,
)
from levopt.report.html import make_report, render_report
from levopt.report.plots import make_plots

__all__ = [
    "describe_policy",
    "fmt_metric",
    "goal",
    "make_plots",
    "make_report",
    "metric_style",
    "metric_title",
    "policy_class",
    "rebalance_words",
    "render_report",
    "round_to_stderr",
    "stderr_state",
]
