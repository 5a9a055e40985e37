r"""Built-in metrics: each defined once, with its convex form where it has one.

The outcome of each path is a two-atom mixture (see :mod:`levopt.engine.simulate`): it survives
continuous monitoring with probability s (terminal wealth W) or is liquidated (wealth from the
liquidation branch). Expectations below are over paths and atoms; all are differentiable.

Convex forms act on one-period scenario wealth W_s(w) with probabilities π_s (see
:mod:`levopt.optimize.convex`): log-growth Σ π log W / T and mean return Σ π W − 1 are concave,
CVaR (Rockafellar–Uryasev), gross leverage Σ|w| and Busseti–Ryu–Boyd's drawdown risk are convex.

References:
    R. T. Rockafellar, S. Uryasev, "Optimization of conditional value-at-risk", J. Risk 2(3), 2000.
    E. Busseti, E. K. Ryu, S. Boyd, "Risk-constrained Kelly gambling", J. Investing 25(3), 2016.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import Field
from scipy.special import logsumexp

from levopt.engine import Outcome
from levopt.objectives._base import Context, ConvexForm, Metric, TailForm, objective, register_metric

Level = Annotated[float, Field(gt=0, lt=1)]
Returns = Literal["log", "simple"]

_SIMULATED_ONLY = "is not convex in the weights (it needs the simulated paths); use optimizer.method: optax"


def _liq_weight(o: Outcome) -> Array:
    return 1.0 - o.survival


def _safe_div(num: Array, den: Array) -> Array:
    ok = den > 1e-12
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


# --- log-growth ---------------------------------------------------------------------------------


def _log_growth_value(v: Any) -> float:
    return -math.inf if v.ruined else float(v.pi @ v.log_wealth / v.years)


@objective(
    "log_growth",
    description="annualized expected log-growth E[log W_T/W_0]/T",
    unit="pct_yr",
    aggregate="mean",
    convex=ConvexForm(lambda s: s.pi @ s.log_wealth / s.years, _log_growth_value),
)
def log_growth(o: Outcome, ctx: Context) -> Array:
    r"""Annualized expected log-growth (Kelly): E[log(W_T/W_0)] / T, W_T floored at the ruin floor."""
    survive = o.survival * jnp.log(jnp.maximum(o.wealth, ctx.ruin_floor))
    return (survive + o.liq_log_wealth) / ctx.years


# --- mean return --------------------------------------------------------------------------------


@objective(
    "mean_return",
    description="expected return over the horizon E[W_T/W_0 − 1]",
    unit="pct",
    aggregate="mean",
    convex=ConvexForm(lambda s: s.pi @ s.wealth - 1.0, lambda v: float(v.pi @ v.wealth - 1.0)),
)
def mean_return(o: Outcome, ctx: Context) -> Array:
    """Expected simple return over the horizon, E[W_T/W_0 - 1]."""
    return o.survival * o.wealth + o.liq_wealth - 1.0


# --- liquidation and drawdown -------------------------------------------------------------------


@objective(
    "liquidation_probability",
    higher_is_better=False,
    description="probability of liquidation (continuous monitoring)",
    unit="pct",
    aggregate="mean",
    not_convex=f"liquidation probability {_SIMULATED_ONLY}",
)
def liquidation_probability(o: Outcome, ctx: Context) -> Array:
    """Probability of liquidation under continuous monitoring (Brownian-bridge estimate)."""
    return _liq_weight(o)


@objective(
    "liquidation_probability_discrete",
    higher_is_better=False,
    description="probability of liquidation (checked at steps)",
    unit="pct",
    aggregate="mean",
    not_convex=f"liquidation probability {_SIMULATED_ONLY}",
)
def liquidation_probability_discrete(o: Outcome, ctx: Context) -> Array:
    """Probability of liquidation when margin is checked at the simulation steps only."""
    return o.liquidated.astype(o.wealth.dtype)


@objective(
    "leverage_capped",
    higher_is_better=False,
    description="share of paths whose trades the venue's maximum leverage scaled down",
    unit="pct",
    aggregate="mean",
    not_convex="the venue's leverage cap binds on simulated paths; use optimizer.method: optax",
)
def leverage_capped(o: Outcome, ctx: Context) -> Array:
    """Fraction of paths where the tier's maximum leverage capped the policy at least once."""
    return (o.capped > 0).astype(o.wealth.dtype)


# --- the crowd's liquidation cascade (a cascade: block) -----------------------------------------

_CROWD = "it reads the simulated crowd; use optimizer.method: optax"


@objective(
    "cascade_multiplier",
    higher_is_better=False,
    description="cascade multiplier: total absolute move over the exogenous one",
    unit="num",
    aggregate="mean",
    not_convex=f"the cascade multiplier {_CROWD}",
    requires="cascade",
)
def cascade_multiplier(o: Outcome, ctx: Context) -> Array:
    r"""Σ_t |y_t| / Σ_t |x_t| on each path: how much the crowd's forced flow amplified the path
    model's moves (1: not at all; a uniform crowd of density d under linear impact λ gives
    1/(1 − λd) on every step that reaches it)."""
    c = o.cascade
    return _safe_div(c.total_move, c.exogenous_move) + (c.exogenous_move <= 1e-12)


@objective(
    "crowd_liquidated",
    higher_is_better=False,
    description="crowd notional liquidated over the horizon (settlement currency)",
    unit="num",
    aggregate="mean",
    not_convex=f"the crowd's liquidations {_CROWD}",
    requires="cascade",
)
def crowd_liquidated(o: Outcome, ctx: Context) -> Array:
    """Notional of the crowd's positions liquidated over the horizon, in the settlement currency
    (longs and shorts, at their liquidation prices; the account's own liquidation excluded)."""
    return o.cascade.crowd_liquidated


@objective(
    "cascade_probability",
    higher_is_better=False,
    description="probability that one step's cascade adds more than `threshold` to the move",
    unit="pct",
    aggregate="mean",
    not_convex=f"the cascade probability {_CROWD}",
    requires="cascade",
)
def cascade_probability(
    o: Outcome, ctx: Context, threshold: Annotated[float, Field(gt=0, lt=10)] = 0.05
) -> Array:
    """P(max_t |y_t − x_t| > threshold): some step's endogenous part of the move (the cascade
    beyond the path model's own return) exceeds ``threshold`` in log-price (0.05: about 5%)."""
    return (o.cascade.largest_cascade > threshold).astype(o.wealth.dtype)


@objective(
    "cascade_off_grid",
    higher_is_better=False,
    description="share of paths whose price left the crowd's grid of liquidation levels",
    unit="pct",
    aggregate="mean",
    not_convex=f"the crowd's grid {_CROWD}",
    requires="cascade",
)
def cascade_off_grid(o: Outcome, ctx: Context) -> Array:
    """Fraction of paths whose price left the crowd's grid (``cascade.range``) at some step: beyond
    it no liquidation level is represented and the endogenous part of a move is cut at the grid's
    edge. Well above zero, widen ``range`` or question the crowd (a runaway leverage loop)."""
    return o.cascade.off_grid.astype(o.wealth.dtype)


@objective(
    "crowd_leverage",
    higher_is_better=False,
    description="the crowd's notional-weighted leverage, averaged over the horizon",
    unit="lev",
    aggregate="mean",
    not_convex=f"the crowd's leverage {_CROWD}",
    requires="cascade",
)
def crowd_leverage(o: Outcome, ctx: Context) -> Array:
    """The crowd's notional-weighted mean leverage, averaged over the steps of each path."""
    return o.cascade.crowd_leverage


_BOOK = "it reads the option book's Greeks along the paths; use optimizer.method: optax"
Stat = Literal["mean", "max"]


def _exposure(o: Outcome, total: Array, top: Array, stat: str) -> Array:
    """The mean over the steps the book was open, or the largest absolute value."""
    if stat == "max":
        return top
    count = o.exposure.count
    return total / jnp.where(count > 0, count, 1.0)


@objective(
    "delta_leverage",
    higher_is_better=False,
    description="delta-notional leverage |Σ q Δ S + hedge| / equity of an option book (stat: mean or max)",
    unit="lev",
    aggregate="mean",
    not_convex=f"the delta leverage {_BOOK}",
    requires="options",
)
def delta_leverage(o: Outcome, ctx: Context, stat: Stat = "mean") -> Array:
    """The book's net delta in notional over equity at each step (after its trades): the leverage
    of the linear position with the same first-order exposure; mean over the steps or maximum."""
    e = o.exposure
    return _exposure(o, e.delta_leverage_sum, e.delta_leverage_max, stat)


@objective(
    "elasticity",
    higher_is_better=False,
    description="elasticity Σ q Δ S / Σ q V of the option legs (stat: mean or max of |.|)",
    unit="num",
    aggregate="mean",
    not_convex=f"the elasticity {_BOOK}",
    requires="options",
)
def elasticity(o: Outcome, ctx: Context, stat: Stat = "mean") -> Array:
    """Ω = ΔS/V of the legs together: the percentage move of the book's value per percent move of
    the underlying (a call's built-in leverage); 0 while the legs are worth nothing."""
    e = o.exposure
    return _exposure(o, e.elasticity_sum, e.elasticity_max, stat)


@objective(
    "dollar_gamma",
    higher_is_better=False,
    description="dollar gamma Σ q Γ S² / equity of an option book (stat: mean or max of |.|)",
    unit="num",
    aggregate="mean",
    not_convex=f"the dollar gamma {_BOOK}",
    requires="options",
)
def dollar_gamma(o: Outcome, ctx: Context, stat: Stat = "mean") -> Array:
    """Σ q Γ S² over equity: a return r moves the book by about ½ × this × r² beyond its delta
    (positive long gamma, negative short)."""
    e = o.exposure
    return _exposure(o, e.gamma_sum, e.gamma_max, stat)


@objective(
    "dollar_vega",
    higher_is_better=False,
    description="dollar vega 0.01 Σ q ν / equity: P&L per implied-vol point (stat: mean or max of |.|)",
    unit="num",
    aggregate="mean",
    not_convex=f"the dollar vega {_BOOK}",
    requires="options",
)
def dollar_vega(o: Outcome, ctx: Context, stat: Stat = "mean") -> Array:
    """The book's P&L, as a fraction of equity, for one point (0.01) of implied volatility."""
    e = o.exposure
    return _exposure(o, e.vega_sum, e.vega_max, stat)


@objective(
    "max_drawdown",
    higher_is_better=False,
    description="expected maximum drawdown of equity",
    unit="pct",
    aggregate="mean",
    not_convex="the expected maximum drawdown is not a convex function of one period's weights; use "
    "{metric: kelly_drawdown, alpha, beta} (bounds P(min wealth < alpha) <= beta) or optimizer.method: optax",
)
def max_drawdown(o: Outcome, ctx: Context) -> Array:
    """Expected maximum drawdown of equity over the horizon (fraction of the running peak)."""
    return o.survival * o.max_drawdown + o.liq_drawdown


# --- VaR and CVaR -------------------------------------------------------------------------------


def loss_atoms(o: Outcome, ctx: Context, returns: Returns = "log") -> tuple[Array, Array]:
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


@objective(
    "var",
    higher_is_better=False,
    description="value-at-risk of the log-loss over the horizon",
    unit="pct",
    aggregate="statistic",
    not_convex="value-at-risk is not convex in the weights; use {metric: cvar} (CVaR >= VaR, its tightest "
    "convex upper bound)",
    tail=TailForm(loss_atoms, "var"),
)
def value_at_risk(o: Outcome, ctx: Context, level: Level = 0.95, returns: Returns = "log") -> Array:
    """Value-at-risk at ``level`` of the loss -log(W_T/W_0) (or -(W_T/W_0 - 1) with simple returns)."""
    losses, weights = loss_atoms(o, ctx, returns)
    return weighted_var(losses, weights, level)


def cvar_of_scenarios(losses: np.ndarray, probs: np.ndarray, level: float) -> float:
    """Exact minimum over a of a + Σ π (ℓ − a)_+ / (1 − β): attained at the β-quantile a = VaR."""
    order = np.argsort(losses)
    cum = np.cumsum(probs[order])
    idx = min(int(np.searchsorted(cum, level * cum[-1])), losses.size - 1)
    a = losses[order][idx]
    return float(a + np.sum(probs * np.maximum(losses - a, 0.0)) / (1.0 - level))


def _cvar_expression(s: Any, level: Level = 0.95, returns: Returns = "log") -> Any:
    loss = -s.log_wealth if returns == "log" else 1.0 - s.wealth
    a = s.cp.Variable(name="var")
    return a + s.pi @ s.cp.pos(loss - a) / (1.0 - level)


def _cvar_value(v: Any, level: float = 0.95, returns: Returns = "log") -> float:
    if returns == "simple":
        return cvar_of_scenarios(1.0 - v.wealth, v.pi, level)
    return math.inf if v.ruined else cvar_of_scenarios(-v.log_wealth, v.pi, level)


@objective(
    "cvar",
    higher_is_better=False,
    description="expected shortfall of the log-loss over the horizon",
    unit="pct",
    aggregate="statistic",
    convex=ConvexForm(_cvar_expression, _cvar_value),
    tail=TailForm(loss_atoms, "cvar"),
)
def conditional_value_at_risk(
    o: Outcome, ctx: Context, level: Level = 0.95, returns: Returns = "log"
) -> Array:
    r"""Conditional value-at-risk (expected shortfall) of the loss at ``level``.

    Rockafellar–Uryasev: CVaR = min_a a + E[(loss - a)_+] / (1 - level), attained at a = VaR. On a
    finite sample the probability above the VaR atom is not exactly 1 - level, so the gradient keeps
    the term through a: it is then the exact derivative of the estimator. The convex form is the
    same minimum with a as a variable of the program (an exponential cone per scenario with log
    losses, since −log W is convex).
    """
    losses, weights = loss_atoms(o, ctx, returns)
    a = weighted_var(losses, weights, level)
    return a + jnp.sum(weights * jnp.maximum(losses - a, 0.0)) / (jnp.sum(weights) * (1.0 - level))


# --- metrics of the weights and of one period's scenarios ---------------------------------------


def _gross(weights: Array) -> Array:
    """Largest gross leverage Σ_i |w_i| over the policy's rows (segments of a schedule)."""
    return jnp.max(jnp.sum(jnp.abs(jnp.atleast_2d(weights)), axis=-1))


register_metric(
    Metric(
        "gross_leverage",
        higher_is_better=False,
        description="largest gross leverage Σ|w|",
        unit="lev",
        convex=ConvexForm(lambda s: s.cp.norm1(s.w), lambda v: float(np.sum(np.abs(v.w)))),
        weights_fn=_gross,
    )
)


def _kelly_drawdown_expression(s: Any, alpha: Level, beta: Level) -> Any:
    # Busseti, Ryu & Boyd: log Σ_s π_s exp(−λ log W_s) <= 0 with λ = log β / log α.
    lam = math.log(beta) / math.log(alpha)
    log_pi = np.log(np.maximum(s.pi, np.finfo(float).tiny))
    return s.cp.log_sum_exp(log_pi - lam * s.log_wealth)


def _kelly_drawdown_value(v: Any, alpha: float, beta: float) -> float:
    if v.ruined:
        return math.inf
    lam = math.log(beta) / math.log(alpha)
    return float(logsumexp(-lam * v.log_wealth, b=v.pi))


register_metric(
    Metric(
        "kelly_drawdown",
        higher_is_better=False,
        description="Busseti–Ryu–Boyd drawdown risk log E[W^−λ]; <= 0 bounds P(min W < α) by β",
        convex=ConvexForm(_kelly_drawdown_expression, _kelly_drawdown_value, default_max=0.0),
        example=(("alpha", 0.7), ("beta", 0.1)),
    )
)
