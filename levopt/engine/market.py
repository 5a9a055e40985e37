"""Venue rules: financing, funding, trading costs and maintenance margin — each defined once.

The functions below take an array namespace ``xp`` (``jax.numpy`` or ``cvxpy``) so the same
definition drives the Monte Carlo engine and the convex programs; ``tests/test_convex.py`` checks
that the two agree.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import Field, model_validator

from levopt.schema import StrictModel


class MarketConfig(StrictModel):
    """Venue and financing parameters (all rates annualized, decimals)."""

    borrow_rate: float = Field(0.0, ge=0, description="interest on notional above equity")
    cash_rate: float = Field(0.0, ge=0, description="interest earned on idle cash (leverage < 1)")
    funding_rate: float = Field(
        0.0, description="perpetual funding on the whole notional, paid by longs when positive"
    )
    fee: float = Field(0.0, ge=0, lt=1, description="trading fee per unit of traded notional")
    slippage: float = Field(0.0, ge=0, lt=1, description="slippage per unit of traded notional")
    maintenance_margin: float = Field(0.005, ge=0, lt=1, description="maintenance margin rate")
    liquidation_fee: float = Field(0.0, ge=0, lt=1, description="charged on notional at liquidation")

    @model_validator(mode="after")
    def _no_arbitrage(self):
        if self.borrow_rate < self.cash_rate:
            raise ValueError(
                f"borrow_rate ({self.borrow_rate}) must be >= cash_rate ({self.cash_rate}); "
                "otherwise borrowing to hold cash is an arbitrage"
            )
        return self


class Market(eqx.Module):
    """Market parameters as arrays (so sweeps can ``vmap`` over them)."""

    borrow_rate: Array
    cash_rate: Array
    funding_rate: Array
    fee: Array
    slippage: Array
    maintenance_margin: Array
    liquidation_fee: Array

    @classmethod
    def from_config(cls, cfg: MarketConfig, dtype: Any) -> Market:
        return cls(**{k: jnp.asarray(v, dtype) for k, v in cfg.model_dump().items()})

    @property
    def trading_cost_rate(self) -> Array:
        return self.fee + self.slippage


def financing(cash: Any, cash_growth: Any, borrow_growth: Any, xp: Any = jnp) -> Any:
    """Interest on the cash balance over one period.

    ``cash`` = equity - net notional; positive cash earns ``cash_growth`` (e.g. expm1(r_c dt)),
    negative cash (borrowed) pays ``borrow_growth``. Written as min(c*a, c*b), which equals the
    piecewise rule when b >= a and is concave in ``cash`` — hence usable in a convex program.
    """
    return xp.minimum(cash * cash_growth, cash * borrow_growth)


def funding_payment(net_notional: Any, funding_rate: Any, dt: Any) -> Any:
    """Perpetual funding over ``dt`` years: longs pay ``funding_rate`` x notional (shorts receive)."""
    return -funding_rate * dt * net_notional


def trading_cost(traded: Any, rate: Any, xp: Any = jnp) -> Any:
    """Fee plus slippage on the absolute traded notional (summed over assets)."""
    return rate * xp.sum(xp.abs(traded))


def maintenance_requirement(gross_notional: Any, maintenance_margin: Any) -> Any:
    """Maintenance margin on the gross notional; below it the position is liquidated."""
    return maintenance_margin * gross_notional


def liquidation_price_ratio(leverage: float, maintenance_margin: float) -> float:
    """Price ratio S/S_0 at which a static long of leverage L opened at S_0 is liquidated.

    Equity 1 + L(u - 1) meets maintenance mm L u at u = (L - 1) / (L (1 - mm)) (no fees or interest).
    """
    return float(np.clip((leverage - 1) / (leverage * (1 - maintenance_margin)), 0.0, None))
