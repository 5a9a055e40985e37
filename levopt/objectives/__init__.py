"""The metric catalogue (:data:`METRICS`): differentiable metrics of simulated outcomes, with their
direction, report label and unit, standard errors and convex forms."""

from levopt.objectives import metrics
from levopt.objectives._base import (
    METRICS,
    RUIN_FLOOR,
    STDERR_BATCHES,
    Context,
    ConvexForm,
    Metric,
    MetricRef,
    MetricSpecs,
    TailForm,
    evaluate_metrics,
    freeze_specs,
    get_metric,
    hashable,
    metric_arrays,
    objective,
    register_metric,
    thaw_specs,
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

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "RUIN_FLOOR",
    "STDERR_BATCHES",
    "Context",
    "ConvexForm",
    "Metric",
    "MetricRef",
    "MetricSpecs",
    "TailForm",
    "evaluate_metrics",
    "freeze_specs",
    "get_metric",
    "hashable",
    "metric_arrays",
    "metrics",
    "objective",
    "register_metric",
    "thaw_specs",
]
