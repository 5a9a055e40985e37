"""Metrics and differentiable objectives of simulated outcomes, in the :data:`METRICS` registry."""

from levopt.objectives import metrics
from levopt.objectives._base import (
    METRICS,
    RUIN_FLOOR,
    Context,
    Metric,
    evaluate_metrics,
    get_metric,
    metric_arrays,
    objective,
)

DEFAULT_METRICS = (
    "log_growth",
    "mean_return",
    "cvar",
    "var",
    "liquidation_probability",
    "liquidation_probability_discrete",
    "max_drawdown",
)

__all__ = ["DEFAULT_METRICS", "METRICS", "RUIN_FLOOR", "Context", "Metric", "evaluate_metrics", "get_metric", "metric_arrays", "metrics", "objective"]
