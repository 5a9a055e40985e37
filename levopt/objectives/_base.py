"""Metric registry and Monte Carlo standard errors.

A metric maps an :class:`~levopt.engine.Outcome` to a number, differentiably. A metric function that
returns a per-path array is the mean of that quantity; its standard error is the sample standard
deviation over sqrt(paths). A metric returning a scalar (quantiles, CVaR) gets a batch-means
standard error: the metric on ``STDERR_BATCHES`` disjoint groups of paths, whose spread over
sqrt(groups) estimates its error.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

from levopt.engine import Outcome
from levopt.errors import ConfigError
from levopt.registry import Registry

STDERR_BATCHES = 20
RUIN_FLOOR = 1e-6
"""Default floor on W_T / W_0 inside logarithms, so a wipe-out costs log(1e-6) = -13.8, not -inf."""


@dataclass(frozen=True)
class Context:
    """What metrics need besides the outcome: horizon in years (365-day year), the ruin floor."""

    years: float
    ruin_floor: float = RUIN_FLOOR


@dataclass(frozen=True)
class Metric:
    """A registered metric. ``fn(outcome, ctx, **options)`` returns a scalar, or per-path values
    whose mean is the metric."""

    name: str
    fn: Callable[..., Array]
    higher_is_better: bool = True

    def options(self) -> set[str]:
        params = list(inspect.signature(self.fn).parameters)[2:]
        return set(params)

    def check_options(self, options: dict[str, Any], field: str) -> None:
        unknown = set(options) - self.options()
        if unknown:
            allowed = ", ".join(sorted(self.options())) or "none"
            raise ConfigError(field, f"unknown option(s) {sorted(unknown)} for metric {self.name!r}; allowed: {allowed}")

    def value(self, outcome: Outcome, ctx: Context, **options: Any) -> Array:
        out = self.fn(outcome, ctx, **options)
        return jnp.mean(out) if out.ndim else out

    def stderr(self, outcome: Outcome, ctx: Context, **options: Any) -> Array:
        values = self.fn(outcome, ctx, **options)
        if values.ndim:
            return jnp.std(values, ddof=1) / jnp.sqrt(values.shape[0])
        n = outcome.wealth.shape[0] // STDERR_BATCHES
        if n < 2:
            return jnp.asarray(jnp.nan)
        batched = jax.tree.map(lambda a: a[: n * STDERR_BATCHES].reshape((STDERR_BATCHES, n)), outcome)
        values = jax.vmap(lambda o: self.fn(o, ctx, **options))(batched)
        # Each group holds 1/B of the paths: the full-sample error is std(groups) / sqrt(B).
        return jnp.std(values, ddof=1) / jnp.sqrt(STDERR_BATCHES)


METRICS: Registry[Metric] = Registry("metric")


def objective(name: str, *, higher_is_better: bool = True):
    """Register ``fn(outcome, ctx, **options)`` as a metric usable in configs and objectives.

    Example::

        @levopt.objective("p_loss", higher_is_better=False)
        def p_loss(outcome, ctx):
            return (outcome.survival * (outcome.wealth < 1) + (1 - outcome.survival)).astype(float)
    """

    def decorator(fn: Callable[..., Array]) -> Callable[..., Array]:
        METRICS.register(name)(Metric(name, fn, higher_is_better))
        return fn

    return decorator


def get_metric(name: str, field: str = "metric") -> Metric:
    """A registered metric, or a metric function given as ``package.module:function``."""
    found = METRICS.get(name, field)
    if isinstance(found, Metric):
        return found
    if callable(found):
        return Metric(name, found)
    raise ConfigError(field, f"{name!r} is not a metric function")


def metric_arrays(
    outcome: Outcome, ctx: Context, specs: dict[str, tuple[str, dict[str, Any]]]
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Traceable values and standard errors of several metrics (``specs``: label -> (metric, options))."""
    metrics = {label: (get_metric(name), options) for label, (name, options) in specs.items()}
    values = {label: m.value(outcome, ctx, **opts) for label, (m, opts) in metrics.items()}
    errors = {label: m.stderr(outcome, ctx, **opts) for label, (m, opts) in metrics.items()}
    return values, errors


def _hashable(options: dict[str, Any]) -> tuple:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


@partial(jax.jit, static_argnums=(1, 2))
def _metric_arrays_jit(outcome: Outcome, ctx: Context, frozen: tuple) -> tuple[dict[str, Array], dict[str, Array]]:
    return metric_arrays(outcome, ctx, {label: (name, dict(opts)) for label, name, opts in frozen})


def evaluate_metrics(
    outcome: Outcome, ctx: Context, specs: dict[str, tuple[str, dict[str, Any]]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Values and standard errors of several metrics as floats, in the order of ``specs``."""
    frozen = tuple((label, name, _hashable(options)) for label, (name, options) in specs.items())
    values, errors = _metric_arrays_jit(outcome, ctx, frozen)
    return {k: float(values[k]) for k in specs}, {k: float(errors[k]) for k in specs}
