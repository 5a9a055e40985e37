"""The policy interface: target leverage per asset as a function of time and account state.

A policy is a frozen pytree whose array fields are its parameters. Each parameter in a config is
either a number (fixed) or ``{init, min, max}`` (free, optimized by :mod:`levopt.optimize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import equinox as eqx
import numpy as np
from jax import Array
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from levopt.errors import ConfigError
from levopt.registry import Registry

PolicyState = Any


class FreeParam(BaseModel):
    """A parameter left to the optimizer: start at ``init``, stay within ``[min, max]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    init: float | list[float] | list[list[float]]
    min: float | list[float] | list[list[float]] | None = None
    max: float | list[float] | list[list[float]] | None = None


Param = float | list[float] | list[list[float]] | FreeParam


@dataclass(frozen=True)
class Bounds:
    """Box bounds of a free parameter, broadcast to its shape (``-inf``/``inf`` when open)."""

    lower: np.ndarray
    upper: np.ndarray


def resolve_param(spec: Param, shape: tuple[int, ...], field: str) -> tuple[np.ndarray, Bounds | None]:
    """Initial value (broadcast to ``shape``) and bounds (None when fixed) of a parameter spec."""

    def broadcast(value: Any, what: str) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        try:
            return np.broadcast_to(arr, shape).astype(float)
        except ValueError:
            raise ConfigError(field, f"{what} must be a number or a list of {shape[0] if shape else 1}, got {value!r}") from None

    if not isinstance(spec, FreeParam):
        return broadcast(spec, "value"), None
    init = broadcast(spec.init, "init")
    lower = broadcast(-np.inf if spec.min is None else spec.min, "min")
    upper = broadcast(np.inf if spec.max is None else spec.max, "max")
    if np.any(lower >= upper):
        raise ConfigError(field, f"min must be < max, got min={spec.min}, max={spec.max}")
    if np.any(init < lower) or np.any(init > upper):
        raise ConfigError(field, f"init {spec.init} must lie within [min, max] = [{spec.min}, {spec.max}]")
    return init, Bounds(lower, upper)


class PolicyConfig(BaseModel):
    """Base of policy schemas: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: str
    rebalance: Literal["never"] | int = 1

    @field_validator("rebalance")
    @classmethod
    def _positive(cls, v):
        if v != "never" and v < 1:
            raise ValueError(f"must be 'never' or an integer >= 1 (steps between rebalances), got {v!r}")
        return v


class LeverageOrWeightsConfig(PolicyConfig):
    """Schemas holding either ``leverage`` (one asset, long) or ``weights`` (per asset, signed)."""

    leverage: Param | None = None
    weights: Param | None = None

    @field_validator("leverage")
    @classmethod
    def _long_only(cls, v: Param | None) -> Param | None:
        values = [v.init, v.min] if isinstance(v, FreeParam) else [v]
        if any(x is not None and np.any(np.asarray(x, float) < 0) for x in values):
            raise ValueError(f"must be >= 0 (use 'weights' for short positions), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_of(self):
        if (self.leverage is None) == (self.weights is None):
            raise ValueError("give exactly one of 'leverage' (one asset) or 'weights' (per asset)")
        return self


class Policy(eqx.Module):
    """Abstract policy. ``target`` returns the leverage per asset (notional / equity).

    ``rebalance_every`` is 0 for a position opened at t = 0 and held, else the number of steps
    between trades back to the target.
    """

    Config: ClassVar[type[PolicyConfig]]
    rebalance_every: int = eqx.field(static=True)

    @classmethod
    def from_config(
        cls, cfg: PolicyConfig, n_assets: int, steps: int, dt: float, dtype: Any, **context: Any
    ) -> tuple[Policy, dict[str, Bounds]]:
        """Build the policy and the bounds of its free parameters (by field name).

        ``context`` may hold ``market`` (the :class:`~levopt.engine.MarketConfig`), for policies
        that need the financing rate.
        """
        raise NotImplementedError

    def init(self, n_assets: int, dtype: Any, model_vol: Array, model_mu: Array) -> PolicyState:
        """State at t = 0; estimators start from the model's ``(n_assets,)`` volatility and drift."""
        return ()

    def observe(self, state: PolicyState, log_return: Array, equity: Array) -> PolicyState:
        """Update the policy's estimators with the step's ``(n_assets,)`` log-return."""
        return state

    def target(self, state: PolicyState, t: Array, equity: Array, model_vol: Array, model_mu: Array) -> Array:
        """``(n_assets,)`` target leverage at step ``t`` (before the step's return).

        ``model_vol`` and ``model_mu`` are the path model's annualized conditional volatility and
        drift for the coming step, for policies that use the model's view.
        """
        raise NotImplementedError


POLICIES: Registry[type[Policy]] = Registry("policy")


def register_policy(name: str):
    """Class decorator registering a :class:`Policy` under ``name`` (the config's ``kind``)."""
    return POLICIES.register(name)


def rebalance_steps(rebalance: Literal["never"] | int) -> int:
    return 0 if rebalance == "never" else int(rebalance)
