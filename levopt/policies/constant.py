"""Constant leverage (one asset) or constant weights (several assets)."""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import field_validator, model_validator

from levopt.errors import ConfigError
from levopt.policies._base import (
    Bounds,
    FreeParam,
    Param,
    Policy,
    PolicyConfig,
    rebalance_steps,
    register_policy,
    resolve_param,
)


class ConstantConfig(PolicyConfig):
    kind: str = "constant"
    leverage: Param | None = None
    weights: Param | None = None
    rebalance: Literal["never"] | int = "never"
    budget: float | None = None

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


@register_policy("constant")
class Constant(Policy):
    r"""Hold leverage ``w_i`` = notional_i / equity, re-established every ``rebalance`` steps.

    With ``rebalance: never`` the position is opened at t = 0 and held, so leverage drifts with
    the price (the static crypto position). Gross leverage is sum |w_i|.
    """

    Config = ConstantConfig
    weights: Array

    @classmethod
    def from_config(cls, cfg: ConstantConfig, n_assets: int, steps: int, dt: float, dtype: Any, **_: Any):
        name = "weights" if cfg.weights is not None else "leverage"
        spec = cfg.weights if cfg.weights is not None else cfg.leverage
        if name == "leverage" and n_assets != 1:
            raise ConfigError("policy.leverage", f"the model has {n_assets} assets: give 'weights' instead")
        value, bounds = resolve_param(spec, (n_assets,), f"policy.{name}")
        free: dict[str, Bounds] = {"weights": bounds} if bounds is not None else {}
        policy = cls(rebalance_every=rebalance_steps(cfg.rebalance), weights=jnp.asarray(value, dtype))
        return policy, free

    def target(self, state, t, equity, model_vol, model_mu) -> Array:
        return self.weights
