"""Piecewise-constant leverage over equal time segments."""

from __future__ import annotations

from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp
from jax import Array
from pydantic import Field

from levopt.errors import ConfigError
from levopt.policies._base import (
    Bounds,
    LeverageOrWeightsConfig,
    Policy,
    rebalance_steps,
    register_policy,
    resolve_param,
)


class ScheduleConfig(LeverageOrWeightsConfig):
    kind: str = "schedule"
    segments: int = Field(12, ge=1)
    rebalance: Literal["never"] | int = 1


@register_policy("schedule")
class Schedule(Policy):
    r"""Leverage ``w[k]`` during segment k = floor(t * segments / steps) of the horizon.

    The natural dynamic policy for a deterministic view of time-varying risk (e.g. volatility mean
    reverting after a shock under GARCH). ``leverage`` is one number per segment (one asset), or a
    single number broadcast to all segments; ``weights`` is per segment and asset.
    """

    Config = ScheduleConfig
    weights: Array  # (segments, n_assets)
    steps: int = eqx.field(static=True, default=1)

    @classmethod
    def from_config(cls, cfg: ScheduleConfig, n_assets: int, steps: int, dt: float, dtype: Any, **_: Any):
        if cfg.segments > steps:
            raise ConfigError("policy.segments", f"{cfg.segments} segments but only {steps} steps; allowed: <= {steps}")
        name = "weights" if cfg.weights is not None else "leverage"
        if name == "leverage" and n_assets != 1:
            raise ConfigError("policy.leverage", f"the model has {n_assets} assets: give 'weights' instead")
        spec = cfg.weights if cfg.weights is not None else cfg.leverage
        # One asset: a number or one value per segment; several: per segment and asset.
        shape = (cfg.segments,) if n_assets == 1 else (cfg.segments, n_assets)
        value, bounds = resolve_param(spec, shape, f"policy.{name}")
        value = value.reshape(cfg.segments, n_assets)
        if bounds is not None:
            bounds = Bounds(bounds.lower.reshape(value.shape), bounds.upper.reshape(value.shape))
        policy = cls(rebalance_every=rebalance_steps(cfg.rebalance), weights=jnp.asarray(value, dtype), steps=steps)
        return policy, ({"weights": bounds} if bounds is not None else {})

    def segment(self, t: Array) -> Array:
        segments = self.weights.shape[0]
        return jnp.minimum(t * segments // self.steps, segments - 1)

    def target(self, state, t, equity, model_vol, model_mu) -> Array:
        return self.weights[self.segment(t)]

