r"""Built-in metrics of the simulated outcome.

The outcome of each path is a two-atom mixture (see :mod:`levopt.engine.simulate`): it survives
continuous monitoring with probability s (terminal wealth W) or is liquidated (wealth from the
liquidation branch). Expectations below are over paths and atoms; all are differentiable.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp
from jax import Array

from levopt.engine import Outcome
from levopt.objectives._base import Context, objective


def _liq_weight(o: Outcome) -> Array:
    return 1.0 - o.survival


def _safe_div(num: Array, den: Array) -> Array:
    ok = den > 1e-12
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


@objective("log_growth")
def log_growth(o: Outcome, ctx: Context) -> Array:
    r"""Annualized expected log-growth (Kelly): E[log(W_T/W_0)] / T, W_T floored at the ruin floor."""
    survive = o.survival * jnp.log(jnp.maximum(o.wealth, ctx.ruin_floor))
    return (survive + o.liq_log_wealth) / ctx.years


@objective("mean_return")
def mean_return(o: Outcome, ctx: Context) -> Array:
    """Expected simple return over the horizon, E[W_T/W_0 - 1]."""
    return o.survival * o.wealth + o.liq_wealth - 1.0


@objective("liquidation_probability", higher_is_better=False)
def liquidation_probability(o: Outcome, ctx: Context) -> Array:
    """Probability of liquidation under continuous monitoring (Brownian-bridge estimate)."""
    return _liq_weight(o)


@objective("liquidation_probability_discrete", higher_is_better=False)
def liquidation_probability_discrete(o: Outcome, ctx: Context) -> Array:
    """Probability of liquidation when margin is checked at the simulation steps only."""
    return o.liquidated.astype(o.wealth.dtype)


@objective("max_drawdown", higher_is_better=False)
def max_drawdown(o: Outcome, ctx: Context) -> Array:
    """Expected maximum drawdown of equity over the horizon (fraction of the running peak)."""
    return o.survival * o.max_drawdown + o.liq_drawdown


def loss_atoms(o: Outcome, ctx: Context, returns: Literal["log", "simple"]) -> tuple[Array, Array]:
    """Losses and probability weights of the 2 x paths outcome atoms (weights sum to 1)."""
    q = _liq_weight(o)
    if returns == "log":
        loss_survive = -jnp.log(jnp.maximum(o.wealth, ctx.ruin_floor))
        loss_liq = -_safe_div(o.liq_log_wealth, q)
    elif returns == "simple":
        loss_survive = 1.0 - o.wealth
        loss_liq = 1.0 - _safe_div(o.liq_wealth, q)
    else:
        raise ValueError(f"returns must be 'log' or 'simple', got {returns!r}")
    n = o.wealth.shape[0]
    return jnp.concatenate([loss_survive, loss_liq]), jnp.concatenate([o.survival, q]) / n


def weighted_var(losses: Array, weights: Array, level: float) -> Array:
    """Value-at-risk: the smallest loss whose cumulative probability reaches ``level``."""
    order = jnp.argsort(losses)
    cum = jnp.cumsum(weights[order])
    idx = jnp.clip(jnp.searchsorted(cum, level * cum[-1]), 0, losses.shape[0] - 1)
    return losses[order][idx]


@objective("var", higher_is_better=False)
def value_at_risk(o: Outcome, ctx: Context, level: float = 0.95, returns: Literal["log", "simple"] = "log") -> Array:
    """Value-at-risk at ``level`` of the loss -log(W_T/W_0) (or -(W_T/W_0 - 1) with simple returns)."""
    losses, weights = loss_atoms(o, ctx, returns)
    return weighted_var(losses, weights, level)


@objective("cvar", higher_is_better=False)
def conditional_value_at_risk(
    o: Outcome, ctx: Context, level: float = 0.95, returns: Literal["log", "simple"] = "log"
) -> Array:
    r"""Conditional value-at-risk (expected shortfall) of the loss at ``level``.

    Rockafellar–Uryasev: CVaR = min_a a + E[(loss - a)_+] / (1 - level), attained at a = VaR. On a
    finite sample the probability above the VaR atom is not exactly 1 - level, so the gradient keeps
    the term through a: it is then the exact derivative of the estimator.

    Reference: R. T. Rockafellar, S. Uryasev, "Optimization of conditional value-at-risk",
    J. Risk 2 (2000).
    """
    losses, weights = loss_atoms(o, ctx, returns)
    a = weighted_var(losses, weights, level)
    return a + jnp.sum(weights * jnp.maximum(losses - a, 0.0)) / (jnp.sum(weights) * (1.0 - level))
