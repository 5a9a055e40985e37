"""Piecewise-constant leverage over equal time segments."""

from __future__ import annotations

import math
from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp
from jax import Array
from pydantic import Field

from levopt.errors import ConfigError
from levopt.fmt import flat, fmt_lev, fmt_number, num
from levopt.policies._base import (
    Bounds,
    HoldsWeights,
    LeverageOrWeightsConfig,
    rebalance_steps,
    register_policy,
    resolve_param,
)


class ScheduleConfig(LeverageOrWeightsConfig):
    kind: str = "schedule"
    segments: int = Field(12, ge=1)
    rebalance: Literal["never"] | int = 1


@register_policy("schedule")
class Schedule(HoldsWeights):
    r"""Leverage ``w[k]`` during segment k = floor(t * segments / steps) of the horizon.

    The natural dynamic policy for a deterministic view of time-varying risk (e.g. volatility mean
    reverting after a shock under GARCH). ``leverage`` is one number per segment (one asset), or a
    single number broadcast to all segments; ``weights`` is per segment and asset.
    """

    Config = ScheduleConfig
    segmented = True
    example = {"kind": "schedule", "leverage": [1.0, 2.0], "segments": 2}
    weights: Array  # (segments, n_assets)
    steps: int = eqx.field(static=True, default=1)

    @classmethod
    def from_config(
        cls, cfg: ScheduleConfig, n_assets: int, steps: int, dt: float, dtype: Any, *, market: Any = None
    ):
        if cfg.segments > steps:
            raise ConfigError(
                "policy.segments", f"{cfg.segments} segments but only {steps} steps; allowed: <= {steps}"
            )
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
        policy = cls(
            rebalance_every=rebalance_steps(cfg.rebalance), weights=jnp.asarray(value, dtype), steps=steps
        )
        return policy, ({"weights": bounds} if bounds is not None else {})

    def segment(self, t: Array) -> Array:
        segments = self.weights.shape[0]
        return jnp.minimum(t * segments // self.steps, segments - 1)

    def target(self, state, t, equity, model_vol, model_mu) -> Array:
        return self.weights[self.segment(t)]

    @classmethod
    def describe(cls, values: dict[str, Any], spec: dict[str, Any], horizon_days: float, rebalance: str):
        """ "Follow a 12-segment leverage schedule ..." and a table of the segments with their days."""
        lev = values.get("leverage", values.get("weights"))
        is_weights = "leverage" not in values and "weights" in values
        rows_in = lev if isinstance(lev, list) else [lev]
        segments = int(num(spec.get("segments", len(rows_in)))) or len(rows_in)
        if len(rows_in) == 1 and segments > 1:
            rows_in = rows_in * segments
        per_seg = [(flat(r) or [math.nan]) for r in rows_in]
        n_assets = max(len(r) for r in per_seg)
        gross = [sum(abs(w) for w in r) for r in per_seg]
        n = len(per_seg)
        span = f" over {fmt_number(horizon_days, 4)} days" if math.isfinite(horizon_days) else ""
        what = "gross leverage" if n_assets > 1 or is_weights else "leverage"
        text = (
            f"Follow a {n}-segment leverage schedule{span}: {what} from {fmt_lev(min(gross))} to "
            f"{fmt_lev(max(gross))} (mean {fmt_lev(sum(gross) / n)}), {rebalance}."
        )
        columns = ["segment", "days"] + (
            ["leverage"] if n_assets == 1 else [f"asset {a + 1}" for a in range(n_assets)] + ["gross"]
        )
        rows = []
        for i, r in enumerate(per_seg):
            days = (
                f"{horizon_days * i / n:.4g}–{horizon_days * (i + 1) / n:.4g}"
                if math.isfinite(horizon_days)
                else "–"
            )
            rows.append(
                [str(i + 1), days] + [fmt_lev(w) for w in r] + ([fmt_lev(gross[i])] if n_assets > 1 else [])
            )
        return text, {"columns": columns, "rows": rows}
