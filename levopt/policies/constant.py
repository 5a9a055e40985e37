"""Constant leverage (one asset) or constant weights (several assets)."""

from __future__ import annotations

from typing import Any, Literal

import jax.numpy as jnp
from jax import Array

from levopt.errors import ConfigError
from levopt.fmt import flat, fmt_lev
from levopt.policies._base import (
    Bounds,
    HoldsWeights,
    LeverageOrWeightsConfig,
    rebalance_steps,
    register_policy,
    resolve_param,
)


class ConstantConfig(LeverageOrWeightsConfig):
    kind: str = "constant"
    rebalance: Literal["never"] | int = "never"
    budget: float | None = None

    @property
    def weight_budget(self) -> float | None:
        return self.budget


@register_policy("constant")
class Constant(HoldsWeights):
    r"""Hold leverage ``w_i`` = notional_i / equity, re-established every ``rebalance`` steps.

    With ``rebalance: never`` the position is opened at t = 0 and held, so leverage drifts with
    the price (the static crypto position). Gross leverage is sum |w_i|.
    """

    Config = ConstantConfig
    example = {"kind": "constant", "leverage": 2.0, "rebalance": 1}
    static = True
    weights: Array

    @classmethod
    def from_config(
        cls, cfg: ConstantConfig, n_assets: int, steps: int, dt: float, dtype: Any, *, market: Any = None
    ):
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

    @classmethod
    def describe(cls, values: dict[str, Any], spec: dict[str, Any], horizon_days: float, rebalance: str):
        lev = values.get("leverage", values.get("weights"))
        weights = flat(lev)
        if weights is None:
            return f"Hold leverage {lev}, {rebalance}.", None
        if len(weights) == 1:
            return f"Hold {fmt_lev(weights[0])} leverage, {rebalance}.", None
        legs = ", ".join(f"asset {i + 1}: {fmt_lev(w)}" for i, w in enumerate(weights))
        return f"Hold {legs} (gross {fmt_lev(sum(abs(w) for w in weights))}), {rebalance}.", None
