"""The ``objective:`` and ``optimizer:`` sections of a config.

Goals and constraints reference the metric catalogue with :class:`~levopt.objectives.MetricRef`,
the same type as the entries of ``metrics:``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from levopt.config.limits import MAX_INDEX
from levopt.errors import ConfigError
from levopt.objectives import MetricRef
from levopt.schema import StrictModel, format_validation_error


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
    def limit(self) -> float:
        return self.max if self.max is not None else self.min  # type: ignore[return-value]

    @property
    def sense(self) -> Literal["max", "min"]:
        return "max" if self.max is not None else "min"

    def violation(self, value: float) -> float:
        """Positive when the constraint is violated, in the metric's units."""
        return value - self.limit if self.sense == "max" else self.limit - value


class ObjectiveConfig(StrictModel):
    """``{maximize | minimize: METRIC, constraints: [...]}``."""

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
    def goal_field(self) -> str:
        return "objective.maximize" if self.maximize is not None else "objective.minimize"

    @property
    def sign(self) -> float:
        """+1 to maximize, -1 to minimize."""
        return 1.0 if self.maximize is not None else -1.0

    def outcome_constraints(self) -> list[Constraint]:
        """Constraints on simulated outcomes (the rest bound the policy's weights)."""
        return [c for c in self.constraints if c.resolve("").on_outcomes]

    def reported(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """The goal and the outcome constraints as ``label -> (metric, options)``."""
        labelled = {c.key: c.spec() for c in self.outcome_constraints()}
        if self.goal.resolve("").on_outcomes:
            labelled[self.goal.key] = self.goal.spec()
        return labelled


class OptaxConfig(StrictModel):
    """Gradient search through the simulation (augmented Lagrangian + L-BFGS or Adam)."""

    method: Literal["optax"] = "optax"
    solver: Literal["lbfgs", "adam"] = "lbfgs"
    steps: int = Field(500, ge=1, le=MAX_INDEX, description="maximum gradient steps")
    learning_rate: float = Field(0.05, gt=0, description="Adam's step size (lbfgs uses a line search)")
    paths: int | None = Field(
        None, gt=0, le=MAX_INDEX, description="paths of the search (default: min(paths, 20000))"
    )
    inner_steps: int = Field(20, ge=1, le=MAX_INDEX, description="steps between multiplier updates")
    penalty: float = Field(10.0, gt=0, description="initial augmented-Lagrangian penalty")
    tol: float = Field(1e-3, gt=0, description="relative parameter change per block that counts as converged")
    feasibility_tol: float = Field(1e-3, gt=0, description="relative constraint violation accepted")
    replicates: int = Field(
        4,
        ge=1,
        le=MAX_INDEX,
        description="independent sets of search paths; the spread of their optima is the policy's s.e.",
    )


class CvxpyConfig(StrictModel):
    """Scenario-based convex program for static allocations."""

    method: Literal["cvxpy"] = "cvxpy"
    solver: str = "CLARABEL"
    scenarios: Annotated[int, Field(ge=1, le=MAX_INDEX)] | Literal["data"] = 20000
    replicates: int = Field(
        4,
        ge=1,
        le=MAX_INDEX,
        description="independent scenario sets; the spread of their optima is the policy's s.e.",
    )


def parse_objective(cfg_objective: dict[str, Any] | None) -> ObjectiveConfig:
    """Validate an ``objective`` section against the metric catalogue; errors name the field."""
    if cfg_objective is None:
        raise ConfigError("objective", "required key is missing (e.g. {maximize: log_growth})")
    try:
        obj = ObjectiveConfig.model_validate(cfg_objective)
    except ValidationError as exc:
        raise format_validation_error(exc, "objective") from None
    obj.goal.resolve(obj.goal_field)
    for i, c in enumerate(obj.constraints):
        c.resolve(f"objective.constraints[{i}]")
    return obj


def parse_optimizer(cfg_optimizer: dict[str, Any] | None) -> OptaxConfig | CvxpyConfig:
    raw = dict(cfg_optimizer or {"method": "optax"})
    method = raw.get("method", "optax")
    schema = {"optax": OptaxConfig, "cvxpy": CvxpyConfig}.get(method) if isinstance(method, str) else None
    if schema is None:
        raise ConfigError("optimizer.method", f"unknown method {method!r}; allowed: optax, cvxpy")
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise format_validation_error(exc, "optimizer") from None
