"""The ``objective:`` and ``optimizer:`` sections of a config."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from levopt.config import format_validation_error
from levopt.errors import ConfigError
from levopt.objectives import get_metric


class MetricRef(BaseModel):
    """A metric name with its options: ``cvar`` or ``{metric: cvar, level: 0.99}``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    metric: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.metric}({opts})" if opts else self.metric


class Constraint(MetricRef):
    """``{metric: NAME, max: LIMIT}`` or ``{metric: NAME, min: LIMIT}`` plus the metric's options."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_limit(self):
        if (self.min is None) == (self.max is None):
            raise ValueError(f"constraint on {self.metric!r} needs exactly one of 'min' or 'max'")
        return self

    @property
    def options(self) -> dict[str, Any]:
        return {k: v for k, v in (self.model_extra or {}).items()}

    @property
    def limit(self) -> float:
        return self.max if self.max is not None else self.min  # type: ignore[return-value]

    @property
    def sense(self) -> Literal["max", "min"]:
        return "max" if self.max is not None else "min"

    def violation(self, value: float) -> float:
        """Positive when the constraint is violated, in the metric's units."""
        return value - self.limit if self.sense == "max" else self.limit - value


class ObjectiveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    maximize: str | MetricRef | None = None
    minimize: str | MetricRef | None = None
    constraints: list[Constraint] = []

    @model_validator(mode="after")
    def _one_goal(self):
        if (self.maximize is None) == (self.minimize is None):
            raise ValueError("give exactly one of 'maximize' or 'minimize'")
        return self

    @property
    def goal(self) -> MetricRef:
        goal = self.maximize if self.maximize is not None else self.minimize
        return MetricRef(metric=goal) if isinstance(goal, str) else goal  # type: ignore[arg-type]

    @property
    def sign(self) -> float:
        """+1 to maximize, -1 to minimize."""
        return 1.0 if self.maximize is not None else -1.0


class OptaxConfig(BaseModel):
    """Gradient search through the simulation (augmented Lagrangian + Adam)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["optax"] = "optax"
    solver: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int = Field(500, ge=1, description="maximum gradient steps")
    learning_rate: float = Field(0.05, gt=0, description="Adam's step size (lbfgs uses a line search)")
    paths: int | None = Field(None, gt=0, description="paths of the search (default: min(paths, 20000))")
    inner_steps: int = Field(20, ge=1, description="steps between multiplier updates")
    penalty: float = Field(10.0, gt=0, description="initial augmented-Lagrangian penalty")
    tol: float = Field(1e-3, gt=0, description="relative parameter change per block that counts as converged")
    feasibility_tol: float = Field(1e-3, gt=0, description="relative constraint violation accepted")


class CvxpyConfig(BaseModel):
    """Scenario-based convex program for static allocations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    method: Literal["cvxpy"] = "cvxpy"
    solver: str = "CLARABEL"
    scenarios: int | Literal["data"] = 20000


def parse_objective(cfg_objective: dict[str, Any] | None) -> ObjectiveConfig:
    if cfg_objective is None:
        raise ConfigError("objective", "required key is missing (e.g. {maximize: log_growth})")
    try:
        obj = ObjectiveConfig.model_validate(cfg_objective)
    except ValidationError as exc:
        raise format_validation_error(exc, "objective") from None
    get_metric(obj.goal.metric, "objective").check_options(obj.goal.options, "objective")
    for i, c in enumerate(obj.constraints):
        field = f"objective.constraints[{i}]"
        if c.metric in PARAMETER_CONSTRAINTS:
            continue
        get_metric(c.metric, field).check_options(c.options, field)
    return obj


PARAMETER_CONSTRAINTS = ("gross_leverage",)
"""Constraints on the policy's weights rather than on simulated outcomes."""


def parse_optimizer(cfg_optimizer: dict[str, Any] | None) -> OptaxConfig | CvxpyConfig:
    raw = dict(cfg_optimizer or {"method": "optax"})
    method = raw.get("method", "optax")
    schema = {"optax": OptaxConfig, "cvxpy": CvxpyConfig}.get(method)
    if schema is None:
        raise ConfigError("optimizer.method", f"unknown method {method!r}; allowed: optax, cvxpy")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, "optimizer") from None
