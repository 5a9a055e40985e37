"""A book of European options on the path model's asset, optionally delta-hedged with the perpetual.

The policy holds the legs' terms and sizes, the hedge schedule and the implied-volatility model; the
engine prices, margins, settles and rolls the legs (:mod:`levopt.engine.simulate`, with
:mod:`levopt.options` for the formulas). Strikes are relative to the price at t = 0 (S_0 = 1) and
quantities are in units of the underlying per unit of initial equity (negative: short).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import Field, field_validator, model_validator

from levopt.errors import ConfigError
from levopt.fmt import fmt_number
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
from levopt.schema import StrictModel

DAYS_PER_YEAR = 365.0
IV_KINDS = ("constant", "model", "stochastic")


class LegConfig(StrictModel):
    """One option leg: ``type`` call or put, ``strike`` relative to S_0, ``expiry_days`` from t = 0,
    ``quantity`` in units of the underlying per unit of initial equity (< 0 short); ``strike`` and
    ``quantity`` may be free ``{init, min, max}``."""

    type: Literal["call", "put"]
    strike: Param
    expiry_days: float = Field(gt=0)
    quantity: Param

    @field_validator("strike")
    @classmethod
    def _positive(cls, v: Param) -> Param:
        values = [v.init, v.min] if isinstance(v, FreeParam) else [v]
        if any(x is not None and np.any(np.asarray(x, float) <= 0) for x in values):
            raise ValueError(f"must be > 0 (relative to the price at t = 0), got {v!r}")
        return v


class HedgeConfig(StrictModel):
    """Delta-hedge the book with the perpetual every ``rebalance`` steps, or never."""

    rebalance: Literal["never"] | int = "never"

    @field_validator("rebalance")
    @classmethod
    def _steps(cls, v):
        if v != "never" and v < 1:
            raise ValueError(f"must be 'never' or an integer >= 1 (steps between hedges), got {v!r}")
        return v


class ImpliedVolConfig(StrictModel):
    r"""The implied volatility the legs are priced and marked at.

    * ``constant``: ``value`` throughout.
    * ``model``: the path model's forecast volatility over each leg's remaining life times
      ``1 + premium`` (with GARCH it moves with the conditional variance).
    * ``stochastic``: :math:`\log\sigma` mean-reverts to :math:`\log` ``value`` at rate
      ``mean_reversion`` (per year) with volatility ``vol_of_vol`` (per √year), its shocks
      correlated ``correlation`` with the asset's return shocks (negative: implied vol rises as
      the price falls); it starts at ``value``.
    """

    kind: Literal["constant", "model", "stochastic"]
    value: float | None = Field(None, description="implied vol (constant), start and level (stochastic)")
    premium: float = Field(0.0, gt=-1, description="model: implied over forecast vol, minus one")
    vol_of_vol: float = Field(1.0, ge=0, description="stochastic: volatility of log implied vol")
    mean_reversion: float = Field(4.0, ge=0, description="stochastic: rate of return to value, per year")
    correlation: float = Field(-0.5, ge=-1, le=1, description="stochastic: with the return shocks")

    @model_validator(mode="after")
    def _value(self):
        if self.kind != "model":
            if self.value is None:
                raise ValueError(f"kind {self.kind} needs 'value' (an implied volatility > 0)")
            if not self.value > 0:
                raise ValueError(f"value must be > 0, got {self.value!r}")
        elif self.value is not None:
            raise ValueError("kind model takes the path model's forecast; drop 'value' (use premium)")
        return self


class OptionsConfig(PolicyConfig):
    kind: str = "options"
    rebalance: Literal["never"] | int = "never"
    legs: list[LegConfig] = Field(min_length=1)
    hedge: HedgeConfig = HedgeConfig()
    implied_vol: ImpliedVolConfig
    roll_days_before: float | None = Field(None, ge=0, description="roll a leg this many days before expiry")

    @model_validator(mode="after")
    def _roll(self):
        if self.rebalance != "never":
            raise ValueError("an options book trades through hedge.rebalance; drop 'rebalance'")
        if self.roll_days_before is not None:
            for i, leg in enumerate(self.legs):
                if not self.roll_days_before < leg.expiry_days:
                    raise ValueError(
                        f"roll_days_before {self.roll_days_before:g} is not below legs[{i}].expiry_days "
                        f"{leg.expiry_days:g}; allowed: fewer days than every leg's life"
                    )
        return self


@register_policy("options")
class Options(Policy):
    r"""Hold option legs (and a delta hedge in the perpetual), priced with Black-76.

    The premium :math:`\sum_i q_i V_i(0)` is paid from equity at t = 0 at the implied volatility,
    with the trading fee on it; legs are marked at each step's implied volatility, settle into
    cash at expiry (or roll ``roll_days_before`` expiry into a new leg of the same life and
    moneyness), and the account is liquidated when its equity falls to the maintenance margin of
    the venue's option rule. With ``hedge.rebalance: k`` the perpetual is traded every k steps to
    the notional :math:`-\sum_i q_i \Delta_i S_t`. Optimized values are reported as ``quantity``
    and ``strike``, one entry per leg.
    """

    Config = OptionsConfig
    example: ClassVar[dict[str, Any]] = {
        "kind": "options",
        "legs": [{"type": "call", "strike": 1.1, "expiry_days": 20, "quantity": 2.0}],
        "hedge": {"rebalance": 1},
        "implied_vol": {"kind": "constant", "value": 0.8},
    }
    instrument: ClassVar[str] = "options"
    leverage_fields: ClassVar[tuple[str, ...]] = ("quantity",)
    omega: Array  # (legs,) +1 call, −1 put
    strike: Array  # (legs,) relative to S_0
    quantity: Array  # (legs,) units of the underlying per unit of initial equity
    expiry: Array  # (legs,) years from t = 0
    iv_value: Array
    iv_premium: Array
    iv_vol_of_vol: Array
    iv_mean_reversion: Array
    iv_correlation: Array
    iv_kind: str = eqx.field(static=True, default="constant")
    roll_before: float | None = eqx.field(static=True, default=None)

    @classmethod
    def from_config(
        cls, cfg: OptionsConfig, n_assets: int, steps: int, dt: float, dtype: Any, *, market: Any = None
    ):
        if n_assets != 1:
            raise ConfigError("policy.kind", f"options are on one asset; the model has {n_assets}")
        free: dict[str, Bounds] = {}
        values: dict[str, list[float]] = {"strike": [], "quantity": []}
        bounds: dict[str, list[tuple[float, float]]] = {"strike": [], "quantity": []}
        for i, leg in enumerate(cfg.legs):
            if leg.expiry_days / DAYS_PER_YEAR < dt * (1 - 1e-9):
                raise ConfigError(
                    f"policy.legs.{i}.expiry_days",
                    f"{leg.expiry_days:g} days is shorter than one step ({dt * DAYS_PER_YEAR:g} days); "
                    "allowed: at least one step",
                )
            for name in ("strike", "quantity"):
                value, b = resolve_param(getattr(leg, name), (), f"policy.legs.{i}.{name}")
                values[name].append(float(value))
                bounds[name].append((float(b.lower), float(b.upper)) if b is not None else None)
        for name in ("strike", "quantity"):
            if any(b is not None for b in bounds[name]):
                # A fixed leg among free ones keeps its value: bounds [v, v].
                lo = [b[0] if b is not None else v for b, v in zip(bounds[name], values[name], strict=True)]
                hi = [b[1] if b is not None else v for b, v in zip(bounds[name], values[name], strict=True)]
                free[name] = Bounds(np.asarray(lo), np.asarray(hi))
        iv = cfg.implied_vol
        arr = lambda v: jnp.asarray(v, dtype)  # noqa: E731
        policy = cls(
            rebalance_every=rebalance_steps(cfg.hedge.rebalance),
            omega=arr([1.0 if leg.type == "call" else -1.0 for leg in cfg.legs]),
            strike=arr(values["strike"]),
            quantity=arr(values["quantity"]),
            expiry=arr([leg.expiry_days / DAYS_PER_YEAR for leg in cfg.legs]),
            iv_value=arr(iv.value if iv.value is not None else 0.0),
            iv_premium=arr(iv.premium),
            iv_vol_of_vol=arr(iv.vol_of_vol),
            iv_mean_reversion=arr(iv.mean_reversion),
            iv_correlation=arr(iv.correlation),
            iv_kind=iv.kind,
            roll_before=None if cfg.roll_days_before is None else cfg.roll_days_before / DAYS_PER_YEAR,
        )
        return policy, free

    def target(self, state, t, equity, model_vol, model_mu) -> Array:
        """No perpetual position of its own: the engine sizes the hedge from the legs' deltas."""
        return jnp.zeros((1,), self.quantity.dtype)

    @classmethod
    def describe(cls, values: dict[str, Any], spec: dict[str, Any], horizon_days: float, rebalance: str):
        legs = spec.get("legs") or []
        rows = []
        for i, leg in enumerate(legs):
            # Optimized values come per field, one entry per leg (``quantity: [q0, q1, ...]``).
            strike = _leg_value(values.get("strike"), i, leg.get("strike"))
            qty = _leg_value(values.get("quantity"), i, leg.get("quantity"))
            rows.append([leg.get("type"), _num(strike), leg.get("expiry_days"), _num(qty)])
        hedge = (spec.get("hedge") or {}).get("rebalance", "never")
        text = f"Option book of {len(rows)} leg(s); delta hedge: {'none' if hedge == 'never' else f'every {hedge} steps'}."
        return text, {"columns": ["type", "strike", "expiry_days", "quantity"], "rows": rows}


def _leg_value(optimized: Any, i: int, given: Any) -> Any:
    if isinstance(optimized, list | tuple) and i < len(optimized):
        return optimized[i]
    return given


def _num(v: Any) -> Any:
    if isinstance(v, dict):
        v = v.get("init")
    try:
        return fmt_number(float(v))
    except (TypeError, ValueError):
        return v
