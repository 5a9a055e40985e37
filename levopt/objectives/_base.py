"""The metric catalogue: every fact about a metric in one definition.

A :class:`Metric` carries its name, its direction (higher or lower is better), how reports label it
and in which unit, its evaluator on simulated outcomes, how its value and standard error are
aggregated, its options with their allowed values, and optionally its convex form on one-period
scenario wealth (for the convex layer) or its value on the policy's weights alone. The gradient
layer, the convex layer, sweeps and the report all read this catalogue; adding a metric is one
:func:`objective` (or :func:`register_metric`) call.

Aggregation. ``aggregate="mean"``: the evaluator returns per-path values, the metric is their mean
and its standard error the sample standard deviation over sqrt(paths). ``aggregate="statistic"``:
the evaluator returns a scalar of the whole sample (quantiles, CVaR); its standard error comes from
batch means: the metric on ``STDERR_BATCHES`` disjoint groups of paths, whose spread over
sqrt(groups) estimates its error. ``"auto"`` (user metrics) decides by the returned shape.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any, Literal

import jax
import jax.numpy as jnp
from jax import Array
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from levopt.engine import Outcome
from levopt.errors import ConfigError
from levopt.registry import Registry

STDERR_BATCHES = 20
RUIN_FLOOR = 1e-6
"""Default floor on W_T / W_0 inside logarithms, so a wipe-out costs log(1e-6) = -13.8, not -inf."""

Unit = Literal["pct", "pct_yr", "lev", "num"]
"""How reports show a metric: a fraction as percent, a fraction per year as %/yr, a leverage, a number."""


@dataclass(frozen=True)
class Context:
    """What metrics need besides the outcome: horizon in years (365-day year), the ruin floor."""

    years: float
    ruin_floor: float = RUIN_FLOOR


@dataclass(frozen=True)
class ConvexForm:
    """A metric as a function of static weights on one-period scenarios (see :mod:`levopt.optimize.convex`).

    Attributes:
        expression: ``(s, **options) -> cvxpy expression`` on a scenario program ``s`` (attributes
            ``w``, ``wealth``, ``log_wealth``, ``pi``, ``years`` and the module ``cp``): concave when
            higher is better, convex otherwise — so it can be maximized (or bounded below) and
            minimized (or bounded above) respectively.
        value: ``(v, **options) -> float``, the same metric in numpy on scenario values ``v``
            (``w``, ``wealth``, ``log_wealth`` (−inf where W <= 0), ``pi``, ``years``, ``ruined``).
        default_max: the upper limit a constraint takes when it gives neither ``min`` nor ``max``.
    """

    expression: Callable[..., Any]
    value: Callable[..., float]
    default_max: float | None = None


@dataclass(frozen=True)
class TailForm:
    """A quantile statistic of weighted loss atoms, so it can be computed exactly in a stream.

    Attributes:
        atoms: ``(outcome, ctx, **options) -> (losses, weights)``: the paths' loss atoms and their
            probabilities (options without ``level``): arrays of length k × paths, atom i
            belonging to path i mod paths (k atoms per path; weights in any common scale).
        statistic: ``"var"`` (the smallest loss whose cumulative probability reaches ``level``) or
            ``"cvar"`` (Rockafellar–Uryasev expected shortfall at ``level``).

    :mod:`levopt.objectives.streaming` finds the quantile by regenerating the atoms in a second pass
    (see there), so memory stays bounded whatever the path count.
    """

    atoms: Callable[..., tuple[Array, Array]]
    statistic: Literal["var", "cvar"]


@dataclass(frozen=True)
class Metric:
    """One catalogue entry (see the module docstring).

    Attributes:
        name: the name configs use.
        fn: ``fn(outcome, ctx, **options)``, per-path values or a scalar statistic; None for metrics
            that are not defined on simulated outcomes (e.g. ``gross_leverage``, ``kelly_drawdown``).
        higher_is_better: the metric's natural direction.
        description: what it is, in words, for reports and the terminal.
        unit: how reports format it (:data:`Unit`).
        aggregate: ``"mean"``, ``"statistic"`` or ``"auto"`` (decided by the evaluator's output).
        convex: the convex form, or None when the metric is not convex in static weights.
        weights_fn: ``weights_fn(weights, **options)``, the metric of the policy's weights alone
            (a constraint on parameters rather than on outcomes), or None.
        not_convex: why the convex layer cannot use it and what to use instead.
        example: options to exercise it with (the conformance tests run every metric with them).
        tail: for a quantile statistic of loss atoms, its :class:`TailForm` (streamed exactly).
        requires: a part of the experiment the metric reads besides the account (``"cascade"``: the
            crowd of a ``cascade:`` block, ``Outcome.cascade``; ``"options"``: an option book's
            exposures, ``Outcome.exposure``), or None.
    """

    name: str
    fn: Callable[..., Array] | None = None
    higher_is_better: bool = True
    description: str = ""
    unit: Unit = "num"
    aggregate: Literal["mean", "statistic", "auto"] = "auto"
    convex: ConvexForm | None = None
    weights_fn: Callable[..., Array] | None = None
    not_convex: str | None = None
    example: tuple[tuple[str, Any], ...] = ()
    tail: TailForm | None = None
    requires: Literal["cascade", "options"] | None = None

    def __post_init__(self) -> None:
        if self.fn is None and self.convex is None and self.weights_fn is None:
            raise ValueError(f"metric {self.name!r} needs an evaluator: fn, convex or weights_fn")

    # -- options -------------------------------------------------------------------------------

    @cached_property
    def _parameters(self) -> list[inspect.Parameter]:
        """The options: the keyword parameters of the evaluator after its fixed arguments."""
        if self.fn is not None:
            source, skip = self.fn, 2
        elif self.weights_fn is not None:
            source, skip = self.weights_fn, 1
        else:
            source, skip = self.convex.expression, 1  # type: ignore[union-attr]
        params = list(inspect.signature(source).parameters.values())[skip:]
        try:
            hints = typing.get_type_hints(source, include_extras=True)
        except Exception:  # unresolvable annotations in user code: options are then untyped
            hints = {}
        return [p.replace(annotation=hints.get(p.name, Any)) for p in params]

    def defaults(self) -> dict[str, Any]:
        """Option defaults (``None`` for an option without one)."""
        return {
            p.name: (None if p.default is inspect.Parameter.empty else p.default) for p in self._parameters
        }

    @cached_property
    def _options_model(self) -> type[BaseModel]:
        fields = {
            p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default)
            for p in self._parameters
        }
        return create_model(
            f"{self.name}_options", __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields
        )

    def check_options(self, options: Mapping[str, Any], field: str) -> dict[str, Any]:
        """Validate options against the evaluator's signature; returns them with defaults filled.

        Raises:
            ConfigError: an unknown option, a missing one, or a value out of its allowed range,
                naming ``field.option``.
        """
        try:
            checked = self._options_model.model_validate(dict(options))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(p.name for p in self._parameters) or "none"
                raise ConfigError(
                    f"{field}.{key}", f"unknown option of {self.name}; allowed: {allowed}"
                ) from None
            msg = err["msg"].removeprefix("Value error, ")
            raise ConfigError(f"{field}.{key}", f"{msg} (got {err.get('input')!r})") from None
        return checked.model_dump()

    # -- values on simulated outcomes ----------------------------------------------------------

    @property
    def on_outcomes(self) -> bool:
        return self.fn is not None

    def _per_path(self, out: Array) -> bool:
        return self.aggregate == "mean" or (self.aggregate == "auto" and out.ndim > 0)

    def check_requires(self, outcome: Outcome) -> None:
        """A metric of the crowd on an outcome without one is a config error, raised while tracing."""
        if self.requires == "cascade" and outcome.cascade is None:
            raise ConfigError("metric", f"{self.name} reads the crowd: allowed with a cascade: block")
        if self.requires == "options" and outcome.exposure is None:
            raise ConfigError(
                "metric", f"{self.name} reads an option book: allowed with policy.kind: options"
            )

    def value(self, outcome: Outcome, ctx: Context, **options: Any) -> Array:
        if self.fn is None:
            raise ConfigError("metric", f"{self.name!r} is not defined on simulated outcomes")
        self.check_requires(outcome)
        out = self.fn(outcome, ctx, **options)
        return jnp.mean(out) if self._per_path(out) else out

    def stderr(self, outcome: Outcome, ctx: Context, **options: Any) -> Array:
        if self.fn is None:
            raise ConfigError("metric", f"{self.name!r} is not defined on simulated outcomes")
        self.check_requires(outcome)
        values = self.fn(outcome, ctx, **options)
        if self._per_path(values):
            return jnp.std(values, ddof=1) / jnp.sqrt(values.shape[0])
        n = outcome.wealth.shape[0] // STDERR_BATCHES
        if n < 2:
            return jnp.asarray(jnp.nan)
        batched = jax.tree.map(lambda a: a[: n * STDERR_BATCHES].reshape((STDERR_BATCHES, n)), outcome)
        values = jax.vmap(lambda o: self.fn(o, ctx, **options))(batched)
        # Each group holds 1/B of the paths: the full-sample error is std(groups) / sqrt(B).
        return jnp.std(values, ddof=1) / jnp.sqrt(STDERR_BATCHES)


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    """Add a :class:`Metric` to the catalogue under its name; returns it."""
    return METRICS.register(metric.name)(metric)


def objective(
    name: str,
    *,
    higher_is_better: bool = True,
    description: str = "",
    unit: Unit = "num",
    aggregate: Literal["mean", "statistic", "auto"] = "auto",
    convex: ConvexForm | None = None,
    not_convex: str | None = None,
    tail: TailForm | None = None,
    requires: Literal["cascade", "options"] | None = None,
) -> Callable[[Callable[..., Array]], Callable[..., Array]]:
    """Register ``fn(outcome, ctx, **options)`` as a metric usable in configs and objectives.

    Example::

        @levopt.objective("p_loss", higher_is_better=False, unit="pct")
        def p_loss(outcome, ctx):
            return outcome.survival * (outcome.wealth < 1) + (1 - outcome.survival)
    """

    def decorator(fn: Callable[..., Array]) -> Callable[..., Array]:
        register_metric(
            Metric(
                name,
                fn,
                higher_is_better,
                description or (fn.__doc__ or "").strip().split("\n")[0],
                unit,
                aggregate,
                convex,
                None,
                not_convex,
                tail=tail,
                requires=requires,
            )
        )
        return fn

    return decorator


def get_metric(name: str, field: str = "metric") -> Metric:
    """A catalogue entry, or a metric function given as ``package.module:function``."""
    found = METRICS.get(name, field)
    if isinstance(found, Metric):
        return found
    if callable(found):
        return Metric(name, found)
    raise ConfigError(field, f"{name!r} is not a metric function")


class MetricRef(BaseModel):
    """A reference to a catalogue metric with its options, the type of every ``metrics:`` entry,
    ``objective`` goal and constraint: ``cvar`` or ``{metric: cvar, level: 0.99, label: cvar99}``.

    Keys other than ``metric`` and ``label`` are the metric's options.
    """

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)
    metric: str
    label: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def key(self) -> str:
        """Where results report it: the label, else ``metric`` or ``metric(option=value,...)``."""
        if self.label:
            return self.label
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.metric}({opts})" if opts else self.metric

    def resolve(self, field: str) -> Metric:
        """The catalogue entry, with the options checked (errors name ``field``)."""
        metric = get_metric(self.metric, f"{field}.metric" if field else "metric")
        metric.check_options(self.options, field)
        return metric

    def spec(self) -> tuple[str, dict[str, Any]]:
        return self.metric, self.options


def hashable(options: Mapping[str, Any]) -> tuple:
    """Options as a sorted, hashable tuple (lists become tuples)."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in options.items()))


MetricSpecs = dict[str, tuple[str, dict[str, Any]]]
"""label -> (metric name, options): the metrics one computation reports."""


def metric_arrays(
    outcome: Outcome, ctx: Context, specs: MetricSpecs
) -> tuple[dict[str, Array], dict[str, Array]]:
    """Traceable values and standard errors of several metrics."""
    metrics = {label: (get_metric(name), options) for label, (name, options) in specs.items()}
    values = {label: m.value(outcome, ctx, **opts) for label, (m, opts) in metrics.items()}
    errors = {label: m.stderr(outcome, ctx, **opts) for label, (m, opts) in metrics.items()}
    return values, errors


def freeze_specs(specs: MetricSpecs) -> tuple:
    """``specs`` as a hashable tuple, for static arguments of compiled functions."""
    return tuple((label, name, hashable(options)) for label, (name, options) in specs.items())


def thaw_specs(frozen: tuple) -> MetricSpecs:
    return {label: (name, dict(opts)) for label, name, opts in frozen}


@partial(jax.jit, static_argnums=(1, 2))
def _metric_arrays_jit(
    outcome: Outcome, ctx: Context, frozen: tuple
) -> tuple[dict[str, Array], dict[str, Array]]:
    return metric_arrays(outcome, ctx, thaw_specs(frozen))


def evaluate_metrics(
    outcome: Outcome, ctx: Context, specs: MetricSpecs
) -> tuple[dict[str, float], dict[str, float]]:
    """Values and standard errors of several metrics as floats, in the order of ``specs``."""
    values, errors = _metric_arrays_jit(outcome, ctx, freeze_specs(specs))
    return {k: float(values[k]) for k in specs}, {k: float(errors[k]) for k in specs}
