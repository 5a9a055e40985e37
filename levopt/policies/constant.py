"""Constant leverage (one asset) or constant weights (several assets)."""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp
from jax import Array

from levopt.errors import ConfigError
from levopt.policies._base import (
    Bounds,
    LeverageOrWeightsConfig,
    Policy,
    rebalance_steps,
    register_policy,
    resolve_param,
)


class ConstantConfig(LeverageOrWeightsConfig):
    kind: str = "constant"
    rebalance: Literal["never"] | int = "never"
    budget: float | None = None


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
