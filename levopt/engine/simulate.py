r"""The margin engine: a fused ``lax.scan`` over time that turns path-model returns and a leverage
policy into account equity, with financing, fees, maintenance margin and liquidation.

Accounting of one path (equity normalized to W_0 = 1), per step of length dt:

* positions N_i (notional, signed) move with the price: N_i <- N_i e^{x_i};
* cash C = W - sum N_i, taken at the start of the step, earns C (e^{r_c dt} - 1) at ``cash_rate``
  when positive and pays C (e^{r_b dt} - 1) at ``borrow_rate`` when negative;
  funding -``funding_rate`` x dt x sum N_i is paid on the start-of-step net notional (perpetuals);
* ``fee + slippage`` is charged on every traded notional, the opening trade included; a rebalance
  sets N_i = w_i x W from the equity before its own cost;
* the position is liquidated when W <= mm * sum |N_i|: closed, ``liquidation_fee`` x notional charged,
  equity floored at 0, the account stays in cash afterwards (earning ``cash_rate``). A close in a
  step without a jump happens at the maintenance level, leaving (mm - lf) x the gross notional at
  the level; in a step with a jump it leaves max(W_end - lf x gross notional at the close, 0).

Shorts. A short is a negative notional on the same margin account, which holds the asset rather than
a contract: selling short |N| adds the sale's proceeds to the cash, so with collateral (equity) W
the cash is C = W + |N| > 0, and the proceeds earn ``cash_rate`` alongside the collateral. There is
no charge for borrowing the asset; ``borrow_rate`` applies only to negative cash, i.e. when the net
notional sum N_i exceeds the equity, so a pure short never pays it. Funding follows the sign of the
net notional: with ``funding_rate`` > 0 longs pay it and shorts receive it (a negative rate reverses
both); the rate is one for all assets, so long and short legs of equal size pay none. Maintenance
margin is on the gross notional, so a short is liquidated when the price rises: a static short of
leverage L without costs at the price ratio u* = (1 + L) / (L (1 + mm)), a barrier crossed upwards.
A perpetual contract has no sale proceeds and no loan: its equity W + sum N_i (e^{x_i} - 1) less
funding is this account with ``cash_rate`` = ``borrow_rate`` = 0; with collateral earning r, setting
both rates to r and ``funding_rate`` to f - r gives it to first order in r dt (interest r (W - sum
N) plus funding -(f - r) sum N is r W - f sum N; compounding leaves sum N (r dt)^2 / 2 a step).

Continuous monitoring. Within a step the log-price is treated as a Brownian bridge between its end
points with the model's conditional step variance v, and the liquidation level is a log-price
barrier b; the probability that the bridge touched b is exp(-2 (0 - b)(x - b) / v) (one asset;
several assets use the portfolio's gross-normalized P&L as an arithmetic Brownian motion). Each
path carries its survival probability s = prod (1 - p_t) and the probability-weighted outcome of
being liquidated in each step (equity at the liquidation level, or the post-jump equity when the
step jumped). The outcome is thus a two-atom mixture per path, smooth in the policy parameters:
survival (weight s_T, the simulated terminal wealth) and liquidation (weight 1 - s_T).

Randomness: the noise of path p at step t is drawn from ``fold_in(fold_in(key, p // BLOCK), t)``,
so every path's numbers are the same whatever the chunk size, path count or device count.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from levopt.cascade import CascadeParams, OwnAccount, cascade_step, init_crowd
from levopt.engine.book import (
    Book,
    Exposure,
    add_exposure,
    empty_exposure,
    hedge_notional,
    implied_vols,
    next_log_iv,
    opening_legs,
    price_legs,
    requirement,
    roll_legs,
)
from levopt.engine.market import (
    HOURS_PER_YEAR,
    Market,
    financing,
    funding_payment,
    settled_funding,
    trading_cost,
)
from levopt.paths import PathModel
from levopt.policies import Policy

BLOCK = 256
"""Paths per random-number block; chunks are whole numbers of blocks."""


class Outcome(NamedTuple):
    """Per-path results of a simulation (arrays with a leading ``paths`` axis; W_0 = 1).

    Attributes:
        wealth: W_T / W_0 of the simulated path, liquidation checked at steps only.
        liquidated: bool, the step check liquidated the path.
        liquidation_step: int, the step (1-based) of that liquidation; 0 at the opening trade, -1 none.
        max_drawdown: largest peak-to-trough fall of the simulated path's equity, in [0, 1].
        survival: probability that continuous monitoring never liquidated the path (bridge).
        liq_log_wealth: sum over steps of P(liquidated in the step) x log(W_T) given that event
            (equity at liquidation, floored at ``ruin_floor``, grown at the cash rate to T).
        liq_wealth: the same sum for W_T.
        liq_drawdown: the same sum for the maximum drawdown.
        capped: int, how many of the path's trades the venue's maximum leverage scaled down.
        cascade: :class:`CascadeTotals` with a ``cascade:`` block, else None.
        exposure: an option book's :class:`~levopt.engine.book.Exposure`, else None.
    """

    wealth: Array
    liquidated: Array
    liquidation_step: Array
    max_drawdown: Array
    survival: Array
    liq_log_wealth: Array
    liq_wealth: Array
    liq_drawdown: Array
    capped: Array
    cascade: CascadeTotals | None = None
    exposure: Exposure | None = None


class CascadeTotals(NamedTuple):
    """Per-path read-outs of the crowd's liquidation cascade over the horizon (``Outcome.cascade``,
    None without a ``cascade:`` block).

    Attributes:
        exogenous_move: Σ_t |x_t|, the path model's absolute log-returns summed.
        total_move: Σ_t |y_t|, the same for the cascaded log-returns.
        crowd_liquidated: the crowd's notional liquidated, settlement currency (the account's own
            liquidation excluded).
        largest_cascade: max_t |y_t − x_t|, the largest endogenous part of one step's move.
        crowd_leverage: the crowd's notional-weighted leverage averaged over the steps.
        runaway: some step's cascade crossed a bin whose local gain is at least 1.
        off_grid: the price left the crowd's grid of liquidation levels.
    """

    exogenous_move: Array
    total_move: Array
    crowd_liquidated: Array
    largest_cascade: Array
    crowd_leverage: Array
    runaway: Array
    off_grid: Array


class Trajectory(NamedTuple):
    """Per-step records of a few paths (``(steps, paths)`` arrays), for plots."""

    equity: Array
    leverage: Array


class _Carry(NamedTuple):
    wealth: Array
    notional: Array
    alive: Array
    liq_step: Array
    peak: Array
    max_dd: Array
    survival: Array
    # The liquidated branch's (log W_T, W_T, drawdown) sums, stacked: one array, so one kernel
    # updates all three per step instead of three kernels each re-reading the step's inputs.
    liq: Array
    model_state: Any
    policy_state: Any
    capped: Array
    # Venue state, None in the flat-rate market: the mark basis per asset, the funding rate per
    # interval, and in isolated mode each position's margin account and the wallet's free cash.
    basis: Any = None
    funding: Any = None
    free_cash: Any = None
    # With a cascade block: the crowd on its level grid and the path's CascadeTotals.
    crowd: Any = None
    cascade: Any = None
    # Isolated accounts' cumulative P&L (fees and liquidations included, margin transfers not).
    pnl: Any = None
    # An option book's legs (levopt.engine.book.Book).
    book: Any = None


class _Venue(NamedTuple):
    """Per-step venue inputs of one path: basis and funding noise, the path's funding parameters."""

    basis_z: Any = None  # (n, 3): OU normal, jump uniform, jump-size normal
    funding_z: Any = None  # (2,) normals: fast and slow component
    funding: Any = None  # FundingProcess of this path
    iv_z: Any = None  # () normal: the stochastic implied vol's own shock


MARKET_STREAM = 0x6D61726B
"""``fold_in`` tag of the venue's random numbers (basis, funding), apart from the path model's."""


def _crossing_probability(x: Array, barrier: Array, var: Array, downward: Array) -> Array:
    """P(a Brownian bridge from 0 to ``x`` with variance ``var`` touches ``barrier``) (0 if none)."""
    var = jnp.maximum(var, jnp.finfo(x.dtype).tiny)
    # A barrier on the wrong side of the start (costs already took equity below maintenance) is
    # crossed at once.
    crossed = jnp.where(downward, (x <= barrier) | (barrier >= 0), (x >= barrier) | (barrier <= 0))
    exponent = -2.0 * jnp.abs(barrier) * jnp.abs(x - barrier) / var
    return jnp.where(crossed, 1.0, jnp.exp(jnp.where(crossed, 0.0, exponent)))


def liquidation_level(
    n: Array, w: Array, carry_cost: Array, market: Market, tiers: Any
) -> tuple[Array, Array]:
    """Price ratio u at which one position's equity meets its maintenance, and the equity left
    there after the liquidation fee (``tiers``: the asset's (rates, amounts, bounds), or None).

    Equity w + c + n (u − 1) against |n| u MMR_k − A_k: for a long u = (n − w − c − A_k) / (n (1 − MMR_k)),
    for a short the same with 1 + MMR_k. With tiers, every tier's solution is formed and the one
    whose notional |n| u lies in the tier is taken (equity minus requirement is monotone in u, so
    exactly one is consistent; the venues' own re-selection, see levopt.venues.liquidation_price).
    """
    long = n > 0
    if tiers is None:
        mm = market.maintenance_margin
        denom = jnp.where(long, n * (1 - mm), n * (1 + mm))
        level = (n - w - carry_cost) / jnp.where(denom != 0, denom, 1.0)
        return level, (mm - market.liquidation_fee) * jnp.abs(n) * level
    rates, amounts, bounds = tiers
    denom = jnp.where(long, n * (1 - rates), n * (1 + rates))
    levels = (n - w - carry_cost - amounts) / jnp.where(denom != 0, denom, 1.0)
    at = jnp.abs(n) * levels
    lower = jnp.concatenate([jnp.zeros((1,), at.dtype), bounds])
    upper = jnp.concatenate([bounds, jnp.full((1,), jnp.inf, at.dtype)])
    inside = (at > lower) & (at <= upper)
    k = jnp.where(jnp.any(inside), jnp.argmax(inside), jnp.sum(jnp.abs(n) > bounds))
    level = levels[k]
    # Written as the flat case's (mm − lf) |n| u, less the amount, so that one tier is that case.
    return level, (rates[k] - market.liquidation_fee) * jnp.abs(n) * level - amounts[k]


def _step_correlation(model: PathModel, out: Any) -> Array:
    """The step's correlation factor: the model's own, or the one its step reported (DCC)."""
    return model.corr_chol if out.corr_chol is None else out.corr_chol


def _asset_tiers(market: Market, i: int | Array) -> Any:
    if market.tiers is None:
        return None
    t = market.tiers
    return t.rates[i], t.amounts[i], t.bounds[i]


def _bridge(
    alive: Array,
    x: Array,
    var: Array,
    n: Array,
    w: Array,
    carry_cost: Array,
    market: Market,
    corr_chol: Array,
) -> tuple[Array, Array, Array]:
    """Brownian-bridge probability that the step crossed the liquidation level, whether the path has
    such a level, and the equity left at that level after the liquidation fee.

    ``x``, ``var``: the step's log-change of the monitored (mark) price per asset and its variance;
    ``n``, ``w``: notional and equity at the start of the step, on the mark price; ``corr_chol``:
    the step's correlation factor (several assets).
    """
    gross = jnp.sum(jnp.abs(n))
    if n.shape[0] == 1:
        # One asset: the liquidation level is an exact log-price barrier.
        level, w_at_level = liquidation_level(n[0], w, carry_cost, market, _asset_tiers(market, 0))
        has_barrier = alive & (gross > 0) & (level > 0)
        barrier = jnp.log(jnp.where(level > 0, level, 1.0))
        p_bridge = _crossing_probability(x[0], barrier, var[0], n[0] > 0)
        return p_bridge, has_barrier, jnp.maximum(jnp.where(has_barrier, w_at_level, 0.0), 0.0)
    return _portfolio_bridge(alive, x, var, n, w, carry_cost, market, corr_chol)


def _portfolio_bridge(
    alive: Array,
    x: Array,
    var: Array,
    n: Array,
    w: Array,
    carry_cost: Array,
    market: Market,
    corr_chol: Array,
) -> tuple[Array, Array, Array]:
    """The bridge for several assets, on the distance to liquidation D = C + Σ c_i e^{x_i}.

    With C = W + cost − Σ N_i + Σ A_i the cash after the step's costs plus the tiers' maintenance
    amounts and c_i = N_i (1 − MMR_i sign N_i), D is equity minus the maintenance requirement on the
    current notional (in the current tiers), so D = 0 is the liquidation level whatever the book.
    When every c_i has one sign and C the other (a levered long, or a short), the level is
    log|S| = log|C| for S = Σ c_i e^{x_i}, and log S is bridged as a Brownian motion with the step
    variance of its weights c_i / S_0: exact for one asset and for perfectly correlated assets.
    Otherwise (a long/short book) D itself is bridged as an arithmetic Brownian motion with the
    step variance of Σ c_i x_i.
    """
    gross = jnp.sum(jnp.abs(n))
    vol = jnp.sqrt(var)
    rates, amounts = market.rates_at(n)
    c = n * (1 - rates * jnp.sign(n))
    cash = w + carry_cost - jnp.sum(n)
    if market.tiers is not None:
        cash = cash + jnp.sum(amounts)
    s0 = jnp.sum(c)
    s_end = jnp.sum(c * jnp.exp(x))
    one_sided = (jnp.all(c >= 0) | jnp.all(c <= 0)) & (s0 * cash < 0)
    safe_s0 = jnp.where(s0 != 0, s0, 1.0)
    # Geometric branch: log(S/S_0) against log(−C/S_0), downward for a long book.
    ratio = jnp.where(one_sided, -cash / safe_s0, 1.0)
    log_var = jnp.sum((corr_chol.T @ (c / safe_s0 * vol)) ** 2)
    log_end = jnp.log(jnp.where(one_sided & (s_end / safe_s0 > 0), s_end / safe_s0, 1.0))
    p_log = _crossing_probability(log_end, jnp.log(jnp.where(ratio > 0, ratio, 1.0)), log_var, s0 > 0)
    # Arithmetic branch: D from D_0 to D_end against 0.
    d0 = cash + s0
    p_arith = _crossing_probability(s_end - s0, -d0, jnp.sum((corr_chol.T @ (c * vol)) ** 2), jnp.array(True))
    has_barrier = alive & (gross > 0) & (d0 > 0)
    p_bridge = jnp.where(one_sided, p_log, p_arith)
    # At the level every notional has moved by about the same factor (exactly so for one asset).
    gross_at_level = gross * jnp.where(one_sided & has_barrier, ratio, 1.0)
    if market.tiers is None:
        w_at_level = (market.maintenance_margin - market.liquidation_fee) * gross_at_level
    else:
        n_at_level = n * jnp.where(one_sided & has_barrier, ratio, 1.0)
        w_at_level = market.requirement(n_at_level) - market.liquidation_fee * gross_at_level
    return p_bridge, has_barrier, jnp.maximum(w_at_level, 0.0)


def _settlements(t: Array, dt: float, interval_hours: float, dtype: Any) -> Array:
    """Funding settlements in the step (t dt, (t + 1) dt], the first at one interval after t = 0."""
    r = dt * HOURS_PER_YEAR / interval_hours
    eps = 1e-6 * max(1.0, r)
    tf = t.astype(dtype)
    return jnp.floor((tf + 1) * r + eps) - jnp.floor(tf * r + eps)


def _funding_cost(
    net: Array, funding_rate: Array, t: Array, dt: float, market: Market, venue: _Venue, f: Any
) -> Array:
    """Funding of the step on the start-of-step net notional: accrued, or settled at the venue's times."""
    if market.funding is None:
        return funding_payment(net, funding_rate, dt)
    settled = _settlements(t, dt, market.funding_interval_hours, net.dtype)  # type: ignore[arg-type]
    rate = venue.funding.mean if not market.funding_stochastic else venue.funding.rate(f)
    return settled_funding(net, rate, settled)


def _capped_target(n_target: Array, equity: Array, tiers: Any, market: Market) -> tuple[Array, Array]:
    """Scale a target down so its initial margin Σ |N_i| / max leverage_i fits in ``equity``.

    Returns the target and whether the cap bound. Scaling down can only move positions into
    lower tiers, whose maximum leverage is at least as high, so the scaled book fits.
    """
    if market.tiers is None:
        return n_target, jnp.zeros((), bool)
    im = jnp.sum(market.tiers.initial_margin(n_target))
    bound = im > equity * (1 + 1e-9)
    scale = jnp.where(bound, jnp.maximum(equity, 0.0) / jnp.where(im > 0, im, 1.0), 1.0)
    return n_target * scale, bound


def _capped_each(n_target: Array, margin: Array, market: Market) -> tuple[Array, Array]:
    """Isolated accounts: scale each position down so its initial margin fits its own ``margin``;
    returns the positions and whether any cap bound."""
    if market.tiers is None:
        return n_target, jnp.zeros((), bool)
    im = market.tiers.initial_margin(n_target)
    over = im > margin * (1 + 1e-9)
    return jnp.where(over, n_target * margin / jnp.where(im > 0, im, 1.0), n_target), jnp.any(over)


def _rebalance(
    alive: Array,
    t: Array,
    w: Array,
    n: Array,
    model: PathModel,
    model_state: Any,
    policy: Policy,
    policy_state: Any,
    market: Market,
    steps: int,
    dt: float,
) -> tuple[Array, Array, Array]:
    """Trade back to the policy's target when a rebalance is due, paying fees and slippage; the
    target is capped at the venue's maximum leverage (the third output says whether it bound)."""
    due = alive & ((t + 1) % policy.rebalance_every == 0) & (t + 1 < steps)
    mu_next = model.mean_return()
    vol_next = model.current_vol(model_state, dt)
    n_target = policy.target(policy_state, t + 1, w, vol_next, mu_next) * w
    n_target, bound = _capped_target(n_target, w, market.tiers, market)
    cost = trading_cost(n_target - n, market.trading_cost_rate)
    return jnp.where(due, w - cost, w), jnp.where(due, n_target, n), due & bound


def _venue_moves(
    carry: _Carry, venue: _Venue, x: Array, vol: Array, gap: Array, market: Market, dt: float
) -> tuple[Any, Array, Array, Array, Array, Array]:
    """The step's basis and funding: (new basis, mark factor at start and end, monitored log-change
    and its variance, gap); without a basis the mark is the traded price."""
    if market.basis is None:
        one = jnp.ones_like(x)
        return None, one, one, x, vol**2, gap
    b0 = carry.basis
    z = venue.basis_z
    b1, jumped = market.basis.step(b0, z[:, 0], z[:, 1], z[:, 2], dt)
    var = vol**2 + market.basis.step_variance(dt)
    return b1, jnp.exp(b0), jnp.exp(b1), x + b1 - b0, var, gap | jnp.any(jumped)


def _next_funding(carry: _Carry, venue: _Venue, x: Array, vol: Array, market: Market, dt: float) -> Any:
    if not market.funding_stochastic:
        return carry.funding
    r = dt * HOURS_PER_YEAR / market.funding_interval_hours  # type: ignore[operator]
    z_return = x[0] / jnp.maximum(vol[0], jnp.finfo(x.dtype).tiny)
    return venue.funding.step(carry.funding, z_return, venue.funding_z, r)


def _carry_cost(cash: Array, net: Array, t: Array, market: Market, venue: _Venue, f: Any, dt: float) -> Array:
    """Interest on ``cash`` and funding on the ``net`` notional over the step (elementwise)."""
    interest = financing(cash, jnp.expm1(market.cash_rate * dt), jnp.expm1(market.borrow_rate * dt))
    return interest + _funding_cost(net, market.funding_rate, t, dt, market, venue, f)


def _on_mark(
    market: Market, m0: Array, m1: Array, w: Array, n: Array, w_end: Array, n_end: Array, total: Any
):
    """Equity and notional on the mark price, at the start and end of the step; ``total`` sums the
    positions of one account (cross) or leaves them apart (isolated accounts)."""
    if market.basis is None:
        return w, n, w_end, n_end
    n_mark0, n_mark_end = n * m0, n_end * m1
    return w + total(n_mark0 - n), n_mark0, w_end + total(n_mark_end - n_end), n_mark_end


def _liquidation_equity(
    market: Market, gap: Array, w_mark: Array, gross_end: Array, w_at_level: Array
) -> Array:
    """Equity after a liquidation: at the maintenance level for continuous moves, post-gap for jumps."""
    w_gap = jnp.maximum(w_mark - market.liquidation_fee * gross_end, 0.0)
    return jnp.where(gap, jnp.minimum(w_gap, w_at_level), w_at_level)


def _advance(
    carry: _Carry, venue: _Venue, x: Array, vol: Array, market: Market, dt: float, total: Array, **fields: Any
) -> _Carry:
    """The next carry: ``fields`` replaced, drawdown updated on the wallet's ``total`` equity, and
    the funding rate moved on."""
    peak = jnp.maximum(carry.peak, total)
    return carry._replace(
        peak=peak,
        max_dd=jnp.maximum(carry.max_dd, 1.0 - total / peak),
        funding=_next_funding(carry, venue, x, vol, market, dt),
        **fields,
    )


def _step_path(
    carry: _Carry,
    noise: Any,
    venue: _Venue,
    t: Array,
    model: PathModel,
    policy: Policy,
    market: Market,
    steps: int,
    dt: float,
    ruin_floor: float,
) -> _Carry:
    """Advance one path by one step (vmapped over paths by the caller)."""
    if policy.instrument == "options":
        return _step_options(carry, noise, venue, t, model, policy, market, steps, dt, ruin_floor)
    if market.margin_mode == "isolated":
        return _step_isolated(carry, noise, venue, t, model, policy, market, steps, dt, ruin_floor)
    model_state, out = model.step(carry.model_state, noise, dt)
    x, vol = out.log_return, out.vol
    w, n = carry.wealth, carry.notional

    # Financing and funding on the start-of-step balances; exact compounding within the step.
    carry_cost = _carry_cost(w - jnp.sum(n), jnp.sum(n), t, market, venue, carry.funding, dt)
    x, cascade, jumped = _cascade(carry, x, out.gap, n, w, carry_cost, carry.alive, market, t, dt)
    n_end = n * jnp.exp(x)
    w_end = w + jnp.sum(n_end - n) + carry_cost

    # Liquidation is checked, and bridged, on the mark price = traded price × e^basis.
    basis, m0, m1, x_mark, var_mark, gap = _venue_moves(carry, venue, x, vol, jumped, market, dt)
    w_mark0, n_mark0, w_mark, n_mark_end = _on_mark(market, m0, m1, w, n, w_end, n_end, jnp.sum)
    hit = carry.alive & (w_mark <= market.requirement(n_mark_end))
    p_bridge, has_barrier, w_at_level = _bridge(
        carry.alive, x_mark, var_mark, n_mark0, w_mark0, carry_cost, market, _step_correlation(model, out)
    )
    p = jnp.where(hit, 1.0, jnp.where(has_barrier, p_bridge, 0.0))
    w_liq = _liquidation_equity(market, gap, w_mark, jnp.sum(jnp.abs(n_mark_end)), w_at_level)

    # Liquidated-branch outcome, grown at the cash rate to the horizon.
    w_liq_T = w_liq * jnp.exp(market.cash_rate * ((steps - t - 1) * dt))
    dd_liq = jnp.maximum(carry.max_dd, 1.0 - w_liq / carry.peak)
    branch = jnp.stack([jnp.log(jnp.maximum(w_liq_T, ruin_floor)), w_liq_T, dd_liq])

    # The simulated path (step checks): liquidate, or trade back to the policy's target.
    w_next = jnp.where(hit, w_liq, w_end)
    n_next = jnp.where(hit, jnp.zeros_like(n_end), n_end)
    alive = carry.alive & ~hit
    policy_state = policy.observe(carry.policy_state, x, w_next)
    capped = carry.capped
    if policy.rebalance_every > 0:
        w_next, n_next, bound = _rebalance(
            alive, t, w_next, n_next, model, model_state, policy, policy_state, market, steps, dt
        )
        capped = capped + bound.astype(capped.dtype)
    return _advance(
        carry, venue, x, vol, market, dt, w_next,
        wealth=w_next, notional=n_next, alive=alive,
        liq_step=jnp.where(hit, (t + 1).astype(jnp.int32), carry.liq_step),
        survival=carry.survival * (1.0 - p), liq=carry.liq + carry.survival * p * branch,
        model_state=model_state, policy_state=policy_state, capped=capped, basis=basis, **cascade,
    )  # fmt: skip


def _cascade(
    carry: _Carry,
    x: Array,
    gap: Array,
    n: Array,
    w: Array,
    carry_cost: Array,
    alive: Array,
    market: Market,
    t: Array,
    dt: float,
) -> tuple[Array, dict[str, Any], Array]:
    """The step's log-return through the crowd's liquidation cascade, the carry's cascade fields,
    and whether the step gapped (``x``, no fields and the model's ``gap`` without a ``cascade:``
    block).

    A step whose move the cascade extended counts as a gap: forced flow jumps the price through
    the levels, so an account liquidated in it is filled at the step's end (post-cascade) price,
    not at its own level (conservative where the exogenous move alone reached the level first).

    One asset: ``n``, ``w``, ``carry_cost`` are the account's (the first isolated account's)
    notional, equity and carrying cost at the start of the step. The account joins the step's flow
    at its liquidation level with its notional there, in the settlement currency
    (``market.account_equity`` × n u), so its own forced sale moves the price when it is material.
    """
    if market.cascade is None:
        return x, {}, gap
    level, _ = liquidation_level(n[0], w, carry_cost, market, _asset_tiers(market, 0))
    active = alive & (n[0] != 0) & (level > 0)
    u = jnp.where(active, level, 1.0)
    own = OwnAccount(
        level=carry.crowd.log_price + jnp.log(u),
        notional=jnp.where(active, n[0] * u * market.account_equity, 0.0),
    )
    y, info, crowd = cascade_step(x[0], carry.crowd, market.cascade, dt_hours=dt * HOURS_PER_YEAR, own=own)
    tot = carry.cascade
    totals = CascadeTotals(
        exogenous_move=tot.exogenous_move + jnp.abs(x[0]),
        total_move=tot.total_move + jnp.abs(y),
        crowd_liquidated=tot.crowd_liquidated + info.long_liquidated + info.short_liquidated,
        largest_cascade=jnp.maximum(tot.largest_cascade, jnp.abs(y - x[0])),
        crowd_leverage=tot.crowd_leverage + (info.crowd_leverage - tot.crowd_leverage) / (t + 1),
        runaway=tot.runaway | info.runaway,
        off_grid=tot.off_grid | info.off_grid,
    )
    return y[None].astype(x.dtype), {"crowd": crowd, "cascade": totals}, gap | (y != x[0])


def _cascade_start(market: Market, dtype: Any) -> dict[str, Any]:
    """The crowd at t = 0 and empty :class:`CascadeTotals` (nothing without a cascade block)."""
    if market.cascade is None:
        return {}
    zero = jnp.zeros((), dtype)
    no = jnp.zeros((), bool)
    return {
        "crowd": init_crowd(market.cascade),
        "cascade": CascadeTotals(zero, zero, zero, zero, zero, no, no),
    }


def _open_options(
    model: PathModel,
    policy: Policy,
    market: Market,
    model_state: Any,
    policy_state: Any,
    funding: Any,
    dt: float,
    dtype: Any,
    ruin_floor: float,
) -> _Carry:
    """An option book after its opening trades: the legs bought or sold at the implied vol (the
    premium moves cash into the legs' value, so equity falls by the fees only) and, when hedging,
    the perpetual at minus the legs' delta; liquidated at once if that leaves equity at or below
    the maintenance margin."""
    one, zero = jnp.ones((), dtype), jnp.zeros((), dtype)
    log_iv, vols, g = opening_legs(policy, model, model_state, dt)
    log_iv = log_iv.astype(dtype)
    book = Book(
        strike=policy.strike.astype(dtype),
        expiry=policy.expiry.astype(dtype),
        quantity=policy.quantity.astype(dtype),
        mark=g.price.astype(dtype),
        log_price=zero,
        log_iv=log_iv,
        exposure=empty_exposure(dtype),
    )
    n0 = hedge_notional(book, g) if policy.rebalance_every > 0 else jnp.zeros((1,), dtype)
    cost = market.trading_cost_rate * (jnp.sum(jnp.abs(book.quantity) * g.price) + jnp.sum(jnp.abs(n0)))
    w0 = one - cost
    req = requirement(market, book, g, vols, zero, n0, policy.omega, dt)
    hit = (req > 0) & (w0 <= req)
    gross = jnp.sum(jnp.abs(n0)) + jnp.sum(jnp.abs(book.quantity))
    w0 = jnp.where(hit, jnp.maximum(w0 - market.liquidation_fee * gross, 0.0), w0)
    book = book._replace(
        quantity=jnp.where(hit, 0.0, book.quantity),
        exposure=add_exposure(book.exposure, book, g, n0, w0, ~hit),
    )
    return _Carry(
        wealth=w0,
        notional=jnp.where(hit, 0.0, n0),
        alive=~hit,
        liq_step=jnp.where(hit, 0, -1).astype(jnp.int32),
        peak=one,
        max_dd=jnp.maximum(zero, 1.0 - w0),
        survival=jnp.where(hit, zero, one),
        liq=jnp.where(hit, jnp.stack([jnp.log(jnp.maximum(w0, ruin_floor)), w0, 1.0 - w0]), zero),
        model_state=model_state,
        policy_state=policy_state,
        capped=jnp.zeros((), jnp.int32),
        funding=funding,
        book=book,
    )


def _step_options(
    carry: _Carry,
    noise: Any,
    venue: _Venue,
    t: Array,
    model: PathModel,
    policy: Policy,
    market: Market,
    steps: int,
    dt: float,
    ruin_floor: float,
) -> _Carry:
    """One step of an option book with its perpetual hedge (cross margin, one asset).

    The legs are marked at the step's end price and implied vol; the account is liquidated, at the
    step's check, when equity falls to the maintenance margin (:func:`levopt.engine.book.requirement`;
    a book of fully paid long options needs none and is never liquidated): everything closes at
    its mark, ``liquidation_fee`` is charged on the underlying notional of the perpetual and of
    the legs. No Brownian bridge: an option book's equity is not a barrier in the log-price, so
    ``survival`` is the step checks' 0 or 1. Legs at expiry settle at their intrinsic value before
    the check (they need no margin); legs due to roll are replaced (fees on both trades); then the
    hedge is traded when due.
    """
    model_state, out = model.step(carry.model_state, noise, dt)
    x, vol = out.log_return, out.vol
    w, n, book = carry.wealth, carry.notional, carry.book
    omega = policy.omega
    t1 = (t + 1).astype(w.dtype) * dt
    cash = w - jnp.sum(n) - jnp.sum(book.quantity * book.mark)
    carry_cost = _carry_cost(cash, jnp.sum(n), t, market, venue, carry.funding, dt)
    n_end = n * jnp.exp(x)
    z_return = x[0] / jnp.maximum(vol[0], jnp.finfo(x.dtype).tiny)
    z_iv = jnp.zeros_like(z_return) if venue.iv_z is None else venue.iv_z
    log_iv = next_log_iv(policy, book.log_iv, z_return, z_iv, dt)
    # A leg whose expiry falls within rounding of the step's end settles at it.
    expiry = jnp.where(jnp.abs(book.expiry - t1) <= 1e-9 * dt, t1, book.expiry)
    moved = book._replace(log_price=book.log_price + x[0], log_iv=log_iv, expiry=expiry)
    vols = implied_vols(policy, model, model_state, dt, log_iv, moved.expiry - t1)
    g = price_legs(moved, vols, t1, omega)
    w_end = w + jnp.sum(n_end - n) + carry_cost + jnp.sum(book.quantity * (g.price - book.mark))

    # Legs expiring at this step settle into cash first: they carry no margin at the check.
    settled = moved.expiry <= t1
    open_legs = moved._replace(quantity=jnp.where(settled, 0.0, book.quantity))
    req = requirement(market, open_legs, g, vols, t1, n_end, omega, dt)
    # Negative equity is bankruptcy even with nothing left to margin (a short leg settled deep in
    # the money): the account closes at zero, as a venue's liquidation engine would close it.
    hit = carry.alive & (((req > 0) & (w_end <= req)) | (w_end < 0))
    spot = jnp.exp(moved.log_price)
    gross = jnp.sum(jnp.abs(n_end)) + jnp.sum(jnp.abs(open_legs.quantity)) * spot
    w_liq = jnp.maximum(w_end - market.liquidation_fee * gross, 0.0)
    w_liq_T = w_liq * jnp.exp(market.cash_rate * ((steps - t - 1) * dt))
    dd_liq = jnp.maximum(carry.max_dd, 1.0 - w_liq / carry.peak)
    branch = jnp.stack([jnp.log(jnp.maximum(w_liq_T, ruin_floor)), w_liq_T, dd_liq])
    p = hit.astype(w.dtype)

    quantity = jnp.where(settled | hit, 0.0, book.quantity)
    moved = moved._replace(quantity=quantity, mark=g.price)
    alive = carry.alive & ~hit
    w_next = jnp.where(hit, w_liq, w_end)
    n_next = jnp.where(hit, jnp.zeros_like(n_end), n_end)
    moved, g, w_next, n_next = _trade_book(
        policy, model, model_state, market, moved, g, vols, w_next, n_next, alive, t, t1, steps, dt
    )
    moved = moved._replace(exposure=add_exposure(moved.exposure, moved, g, n_next, w_next, alive))
    policy_state = policy.observe(carry.policy_state, x, w_next)
    return _advance(
        carry, venue, x, vol, market, dt, w_next,
        wealth=w_next, notional=n_next, alive=alive,
        liq_step=jnp.where(hit, (t + 1).astype(jnp.int32), carry.liq_step),
        survival=carry.survival * (1.0 - p), liq=carry.liq + carry.survival * p * branch,
        model_state=model_state, policy_state=policy_state, book=moved,
    )  # fmt: skip


def _trade_book(
    policy: Policy,
    model: PathModel,
    model_state: Any,
    market: Market,
    book: Book,
    g: Any,
    vols: Array,
    w: Array,
    n: Array,
    alive: Array,
    t: Array,
    t1: Array,
    steps: int,
    dt: float,
) -> tuple[Book, Any, Array, Array]:
    """Rolls due and the hedge due at the end of a step, paying the trading fee on the options'
    value and the perpetual's notional; returns the book, its Greeks, equity and perpetual."""
    rate = market.trading_cost_rate
    if policy.roll_before is not None:
        vols_new = implied_vols(policy, model, model_state, dt, book.log_iv, policy.expiry)
        book, traded, rolled = roll_legs(policy, book, g, vols_new, t1, policy.omega)
        w = w - jnp.where(alive, rate * traded, 0.0)
        g = price_legs(book, jnp.where(rolled, vols_new, vols), t1, policy.omega)
    if policy.rebalance_every > 0:
        due = alive & ((t + 1) % policy.rebalance_every == 0) & (t + 1 < steps)
        target = hedge_notional(book, g)
        cost = trading_cost(target - n, rate)
        w = jnp.where(due, w - cost, w)
        n = jnp.where(due, target, n)
    return book, g, w, n


def _isolated_bridge(
    market: Market, alive: Array, x_mark: Array, var_mark: Array, n: Array, e: Array, carry_cost: Array
) -> tuple[Array, Array, Array]:
    """Per isolated account: bridge crossing probability, whether it has a level, equity left there."""
    if market.tiers is None:
        levels, w_at_level = jax.vmap(lambda ni, ei, ci: liquidation_level(ni, ei, ci, market, None))(
            n, e, carry_cost
        )
    else:
        tiers = (market.tiers.rates, market.tiers.amounts, market.tiers.bounds)
        levels, w_at_level = jax.vmap(lambda ni, ei, ci, ti: liquidation_level(ni, ei, ci, market, ti))(
            n, e, carry_cost, tiers
        )
    has_barrier = alive & (n != 0) & (levels > 0)
    barrier = jnp.log(jnp.where(levels > 0, levels, 1.0))
    p_bridge = _crossing_probability(x_mark, barrier, var_mark, n > 0)
    return p_bridge, has_barrier, jnp.maximum(jnp.where(has_barrier, w_at_level, 0.0), 0.0)


def _account_requirements(market: Market, notional: Array) -> Array:
    """Maintenance margin of each isolated account ``(n,)`` (one position each)."""
    if market.tiers is None:
        return market.maintenance_margin * jnp.abs(notional)
    rate, amount = market.tiers.at(notional)
    return jnp.abs(notional) * rate - amount


def _step_isolated(
    carry: _Carry,
    noise: Any,
    venue: _Venue,
    t: Array,
    model: PathModel,
    policy: Policy,
    market: Market,
    steps: int,
    dt: float,
    ruin_floor: float,
) -> _Carry:
    """One step in isolated margin: each position i is its own margin account (equity E_i, the
    margin posted to it plus its P&L), the rest of the wallet is free cash F earning ``cash_rate``.

    Each account is the one-asset cross account above (financing, funding, mark, bridge, closing
    at the level); its liquidation closes it alone. ``wealth`` holds the accounts' equities
    ``(n,)``, ``alive``/``survival`` are per account, and ``liq`` ``(n, 2)`` holds each account's
    probability-weighted (liquidation equity grown to T, drawdown at it); :func:`_isolated_outcome`
    combines them at the horizon.
    """
    model_state, out = model.step(carry.model_state, noise, dt)
    x, vol = out.log_return, out.vol
    e, n = carry.wealth, carry.notional
    carry_cost = _carry_cost(e - n, n, t, market, venue, carry.funding, dt)
    x, cascade, jumped = _cascade(carry, x, out.gap, n, e[0], carry_cost[0], carry.alive[0], market, t, dt)
    free_cash = carry.free_cash * jnp.exp(market.cash_rate * dt)
    n_end = n * jnp.exp(x)
    e_end = e + (n_end - n) + carry_cost

    basis, m0, m1, x_mark, var_mark, gap = _venue_moves(carry, venue, x, vol, jumped, market, dt)
    e_mark0, n_mark0, e_mark, n_mark_end = _on_mark(market, m0, m1, e, n, e_end, n_end, lambda a: a)
    hit = carry.alive & (n != 0) & (e_mark <= _account_requirements(market, n_mark_end))
    p_bridge, has_barrier, w_at_level = _isolated_bridge(
        market, carry.alive, x_mark, var_mark, n_mark0, e_mark0, carry_cost
    )
    p = jnp.where(hit, 1.0, jnp.where(has_barrier, p_bridge, 0.0))
    w_liq = _liquidation_equity(market, gap, e_mark, jnp.abs(n_mark_end), w_at_level)

    w_liq_T = w_liq * jnp.exp(market.cash_rate * ((steps - t - 1) * dt))
    total_end = free_cash + jnp.sum(e_end)
    dd_liq = jnp.maximum(carry.max_dd, 1.0 - (total_end - e_end + w_liq) / carry.peak)
    # The branch "account i liquidated in this step" differs from the simulated wallet by
    # P_{t−1} − E_{t−1} + L_t g_t − P_T (see _isolated_outcome); the part known now is summed.
    branch = jnp.stack([carry.pnl - e + w_liq_T, dd_liq], axis=-1)
    liq = carry.liq + (carry.survival * p)[:, None] * branch

    e_next = jnp.where(hit, w_liq, e_end)
    pnl = carry.pnl + (e_next - e)
    n_next = jnp.where(hit, jnp.zeros_like(n_end), n_end)
    alive = carry.alive & ~hit
    policy_state = policy.observe(carry.policy_state, x, free_cash + jnp.sum(e_next))
    capped = carry.capped
    if policy.rebalance_every > 0:
        e_next, n_next, free_cash, cost, bound = _rebalance_isolated(
            alive, t, e_next, n_next, free_cash, model, model_state, policy, policy_state, market, steps, dt
        )
        pnl = pnl - cost
        capped = capped + bound.astype(capped.dtype)
    first_hit = jnp.any(hit) & (carry.liq_step < 0)
    return _advance(
        carry, venue, x, vol, market, dt, free_cash + jnp.sum(e_next),
        wealth=e_next, notional=n_next, alive=alive,
        liq_step=jnp.where(first_hit, (t + 1).astype(jnp.int32), carry.liq_step),
        survival=carry.survival * (1.0 - p), liq=liq, model_state=model_state,
        policy_state=policy_state, capped=capped, basis=basis, free_cash=free_cash, pnl=pnl, **cascade,
    )  # fmt: skip


def _rebalance_isolated(
    alive: Array,
    t: Array,
    e: Array,
    n: Array,
    free_cash: Array,
    model: PathModel,
    model_state: Any,
    policy: Policy,
    policy_state: Any,
    market: Market,
    steps: int,
    dt: float,
) -> tuple[Array, Array, Array, Array, Array]:
    """Isolated rebalance: open accounts are re-margined to their share of the wallet and resized
    to the policy's target, each capped at its tier's maximum leverage on its own margin; closed
    (liquidated) accounts stay closed, their residual equity stays in them as cash. Returns the
    accounts, notionals, free cash, each account's trading cost and whether the cap bound."""
    due = jnp.any(alive) & ((t + 1) % policy.rebalance_every == 0) & (t + 1 < steps)
    total = free_cash + jnp.sum(e)
    n_target = policy.target(
        policy_state, t + 1, total, model.current_vol(model_state, dt), model.mean_return()
    )
    n_target = jnp.where(alive, n_target * total, 0.0)
    margin = jnp.where(alive, market.isolated_margin * total, e)
    # A closed account's target is 0, so only open accounts can bind.
    n_target, bound = _capped_each(n_target, margin, market)
    cost = jnp.abs(n_target - n) * market.trading_cost_rate
    e_new = jnp.where(alive, margin - cost, e)
    free_new = total - jnp.sum(jnp.where(alive, margin, e))
    return (
        jnp.where(due, e_new, e),
        jnp.where(due, n_target, n),
        jnp.where(due, free_new, free_cash),
        jnp.where(due & alive, cost, 0.0),
        due & bound,
    )


def _open_path(
    model: PathModel, policy: Policy, market: Market, venue: _Venue, dt: float, dtype: Any, ruin_floor: float
) -> _Carry:
    """State of one path after the opening trade at t = 0."""
    n_assets = model.n_assets
    model_state = model.init(dtype)
    vol, mu = model.current_vol(model_state, dt), model.mean_return()
    policy_state = policy.init(n_assets, dtype, vol, mu)
    one = jnp.ones((), dtype)
    zero = jnp.zeros((), dtype)
    target = policy.target(policy_state, jnp.zeros((), jnp.int32), one, vol, mu)
    n0 = jnp.broadcast_to(target, (n_assets,)).astype(dtype)
    basis = None if market.basis is None else jnp.broadcast_to(market.basis.init, (n_assets,)).astype(dtype)
    funding = None if not market.funding_stochastic else venue.funding.start().astype(dtype)
    mark = jnp.ones_like(n0) if basis is None else jnp.exp(basis)
    if policy.instrument == "options":
        return _open_options(model, policy, market, model_state, policy_state, funding, dt, dtype, ruin_floor)
    if market.margin_mode == "isolated":
        carry = _open_isolated(n0, model_state, policy_state, market, basis, funding, mark, dtype)
        return carry._replace(**_cascade_start(market, dtype))
    n0, bound = _capped_target(n0, one, market.tiers, market)
    w0 = one - trading_cost(n0, market.trading_cost_rate)
    if basis is None:
        hit = w0 <= market.requirement(n0)
    else:
        hit = w0 + jnp.sum(n0 * mark - n0) <= market.requirement(n0 * mark)
    gross = jnp.sum(jnp.abs(n0 * mark)) if basis is not None else jnp.sum(jnp.abs(n0))
    w0 = jnp.where(hit, jnp.maximum(w0 - market.liquidation_fee * gross, 0.0), w0)
    return _Carry(
        wealth=w0,
        notional=jnp.where(hit, jnp.zeros_like(n0), n0),
        alive=~hit,
        liq_step=jnp.where(hit, 0, -1).astype(jnp.int32),
        peak=one,
        max_dd=jnp.maximum(zero, 1.0 - w0),
        survival=jnp.where(hit, zero, one),
        liq=jnp.where(hit, jnp.stack([jnp.log(jnp.maximum(w0, ruin_floor)), w0, 1.0 - w0]), zero),
        model_state=model_state,
        policy_state=policy_state,
        capped=bound.astype(jnp.int32),
        basis=basis,
        funding=funding,
        **_cascade_start(market, dtype),
    )


def _open_isolated(
    n0: Array,
    model_state: Any,
    policy_state: Any,
    market: Market,
    basis: Any,
    funding: Any,
    mark: Array,
    dtype: Any,
) -> _Carry:
    one = jnp.ones((), dtype)
    margin = market.isolated_margin.astype(dtype)
    n0, bound = _capped_each(n0, margin, market)
    e0 = margin - jnp.abs(n0) * market.trading_cost_rate
    nm = n0 * mark
    hit = (n0 != 0) & (e0 + (nm - n0) <= _account_requirements(market, nm))
    e0 = jnp.where(hit, jnp.maximum(e0 - market.liquidation_fee * jnp.abs(nm), 0.0), e0)
    free = one - jnp.sum(margin)
    total = free + jnp.sum(e0)
    zero = jnp.zeros_like(e0)
    return _Carry(
        wealth=e0,
        notional=jnp.where(hit, zero, n0),
        alive=~hit,
        liq_step=jnp.where(jnp.any(hit), 0, -1).astype(jnp.int32),
        peak=one,
        max_dd=jnp.maximum(0.0, 1.0 - total).astype(dtype),
        survival=jnp.where(hit, zero, jnp.ones_like(e0)),
        liq=jnp.where(
            hit[:, None], jnp.stack([e0 - margin, jnp.broadcast_to(1.0 - total, e0.shape)], -1), 0.0
        ),
        model_state=model_state,
        policy_state=policy_state,
        capped=bound.astype(jnp.int32),
        basis=basis,
        funding=funding,
        free_cash=free,
        pnl=e0 - margin,
    )


def _isolated_outcome(final: _Carry, ruin_floor: float) -> tuple[Array, Array, Array, Array, Array]:
    """(wealth, survival, liq_log_wealth, liq_wealth, liq_drawdown) of isolated accounts at T.

    Account i survives continuous monitoring with probability s_i. If it is liquidated in step t
    (probability w_it = s_{i,t−1} p_it), it ends with L_it (its equity at the level, grown at the
    cash rate to T) instead of its start-of-step equity E_{i,t−1} plus every later P&L of the
    account, P_{i,T} − P_{i,t−1} (P the account's cumulative P&L; margin moved to and from the
    wallet at rebalances is not P&L). So the wallet of that branch is W_T + Δ_it with
    Δ_it = P_{i,t−1} − E_{i,t−1} + L_it − P_{i,T}, taken at its conditional mean
    Δ̄_i = Σ_t w_it Δ_it / (1 − s_i): the other accounts are held as simulated (exact for a held
    position; with rebalancing, their sizes would have followed the smaller wallet). Treating the
    accounts' crossings as independent given the path (exact for independent assets), a subset S
    is liquidated with probability Π_{i∈S} (1 − s_i) Π_{i∉S} s_i and leaves
    W_T(S) = max(W_T + Σ_{i∈S} Δ̄_i, 0); the liquidated branch sums over S ≠ ∅.
    """
    s = final.survival
    e = final.wealth
    n_assets = s.shape[0]
    q = 1.0 - s
    mean_delta = final.liq[:, 0] / jnp.where(q > 0, q, 1.0) - final.pnl
    mean_dd = final.liq[:, 1] / jnp.where(q > 0, q, 1.0)
    subsets = jnp.asarray(
        [[(m >> i) & 1 for i in range(n_assets)] for m in range(1, 2**n_assets)], dtype=bool
    )  # (2^n − 1, n)
    prob = jnp.prod(jnp.where(subsets, q, s), axis=-1)
    wealth = final.free_cash + jnp.sum(e)
    wealth_s = jnp.maximum(wealth + jnp.sum(jnp.where(subsets, mean_delta, 0.0), axis=-1), 0.0)
    dd_s = jnp.maximum(
        jnp.max(jnp.where(subsets, mean_dd, 0.0), axis=-1),
        jnp.maximum(final.max_dd, 1.0 - wealth_s / final.peak),
    )
    return (
        wealth,
        jnp.prod(s),
        jnp.sum(prob * jnp.log(jnp.maximum(wealth_s, ruin_floor))),
        jnp.sum(prob * wealth_s),
        jnp.sum(prob * dd_s),
    )


def _block_noise(
    key: Array, t: Array, block_ids: Array, block_model: PathModel, batched: bool, dtype: Any
) -> Any:
    """Noise of step ``t`` for whole blocks of paths, flattened to ``(n_blocks * BLOCK, ...)``."""

    def one_block(block: Array, m: PathModel) -> Any:
        return m.noise(jax.random.fold_in(jax.random.fold_in(key, block), t), BLOCK, dtype)

    noise = jax.vmap(one_block, in_axes=(0, 0 if batched else None))(block_ids, block_model)
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), noise)


def _venue_noise(key: Array, t: Array, block_ids: Array, n_assets: int, dtype: Any) -> _Venue:
    """The venue's random numbers of step ``t`` (basis: normal, uniform, normal per asset; funding:
    two normals), from a stream apart from the path model's, so adding a basis or a stochastic
    funding rate leaves the price paths unchanged."""
    base = jax.random.fold_in(key, MARKET_STREAM)

    def one_block(block: Array) -> tuple[Array, Array]:
        k = jax.random.fold_in(jax.random.fold_in(base, block), t)
        k1, k2 = jax.random.split(k)
        z = jax.random.normal(k1, (BLOCK, n_assets, 3), dtype)
        # The middle column is a uniform for the jump indicator.
        u = jax.random.uniform(k2, (BLOCK, n_assets), dtype)
        return z.at[:, :, 1].set(u), jax.random.normal(jax.random.fold_in(k, 1), (BLOCK, 2), dtype)

    bz, fz = jax.vmap(one_block)(block_ids)
    return _Venue(basis_z=bz.reshape((-1, n_assets, 3)), funding_z=fz.reshape((-1, 2)))


IV_STREAM = 0x69766F6C
"""``fold_in`` tag of a stochastic implied volatility's own shocks, apart from the venue's."""


def _iv_noise(key: Array, t: Array, block_ids: Array, dtype: Any) -> Array:
    """One normal per path for step ``t``'s stochastic implied volatility."""
    base = jax.random.fold_in(key, IV_STREAM)
    z = jax.vmap(
        lambda b: jax.random.normal(jax.random.fold_in(jax.random.fold_in(base, b), t), (BLOCK,), dtype)
    )(block_ids)
    return z.reshape(-1)


def _per_block(path_model: PathModel, n_blocks: int, batched: bool) -> PathModel:
    if not batched:
        return path_model
    return jax.tree.map(lambda a: a.reshape((n_blocks, BLOCK) + a.shape[1:]), path_model)


def _path_params(model: Any, first_path: Array, n: int, n_draws: int | None) -> Any:
    """The model of each path: shared, or draw ``p % n_draws`` of a batched model."""
    if n_draws is None or model is None:
        return model
    idx = (first_path + jnp.arange(n)) % n_draws
    return jax.tree.map(lambda a: a[idx], model)


def simulate_chunk(
    key: Array,
    first_block: Array,
    model: PathModel,
    policy: Policy,
    market: Market,
    *,
    n_blocks: int,
    steps: int,
    dt: float,
    dtype: Any,
    ruin_floor: float,
    n_draws: int | None = None,
    record: bool = False,
    noise: Any = None,
) -> tuple[Outcome, Trajectory | None]:
    """Simulate ``n_blocks * BLOCK`` consecutive paths starting at block ``first_block``.

    ``noise``, if given, is the pre-drawn output of :func:`draw_noise` for these paths (leading
    axes ``(steps, n_blocks * BLOCK)``): the search of an optimizer reuses it at every iteration.
    """
    n = n_blocks * BLOCK
    block_ids = first_block + jnp.arange(n_blocks)
    path_model = _path_params(model, first_block * BLOCK, n, n_draws)
    batched = n_draws is not None
    in_model = 0 if batched else None
    block_model = _per_block(path_model, n_blocks, batched)

    venue_params = _path_params(market.funding, first_block * BLOCK, n, market.funding_draws)
    in_venue = 0 if market.funding_draws is not None else None
    open_all = jax.vmap(
        lambda m, f: _open_path(m, policy, market, _Venue(funding=f), dt, dtype, ruin_floor),
        in_axes=(in_model, in_venue),
        axis_size=n,
    )
    carry0 = open_all(path_model, venue_params)
    step_all = jax.vmap(
        lambda c, z, v, t, m: _step_path(c, z, v, t, m, policy, market, steps, dt, ruin_floor),
        in_axes=(0, 0, _Venue(0, 0, in_venue, 0), None, in_model),
    )
    n_assets = model.n_assets

    def venue_inputs(t: Array) -> _Venue:
        iv_z = (
            _iv_noise(key, t, block_ids, dtype) if getattr(policy, "iv_kind", None) == "stochastic" else None
        )
        if market.basis is None and not market.funding_stochastic:
            return _Venue(funding=venue_params, iv_z=iv_z)
        return _venue_noise(key, t, block_ids, n_assets, dtype)._replace(funding=venue_params, iv_z=iv_z)

    def draw(t: Array) -> Any:
        return _block_noise(key, t, block_ids, block_model, batched, dtype)

    @jax.checkpoint
    def body(state: tuple[_Carry, Any], inputs: Any):
        carry, z = state
        t, given = inputs
        if given is None:
            # The next step's noise is drawn here and carried, which makes XLA materialize it once
            # instead of re-deriving it inside every fusion that reads it.
            z, z_next = z, draw(t + 1)
        else:
            z, z_next = given, z
        new = step_all(carry, z, venue_inputs(t), t, path_model)
        rec = None
        if record:
            equity = new.wealth if new.free_cash is None else new.free_cash + jnp.sum(new.wealth, axis=-1)
            lev = jnp.sum(jnp.abs(new.notional), axis=-1) / jnp.maximum(equity, jnp.finfo(dtype).tiny)
            rec = Trajectory(equity, lev)
        return (new, z_next), rec

    first = draw(jnp.zeros((), jnp.int32)) if noise is None else None
    (final, _), traj = jax.lax.scan(body, (carry0, first), (jnp.arange(steps, dtype=jnp.int32), noise))
    return _outcome(final, market, ruin_floor), traj


def _outcome(final: _Carry, market: Market, ruin_floor: float) -> Outcome:
    """The per-path :class:`Outcome` of the final carries (isolated accounts combined)."""
    if market.margin_mode == "isolated":
        wealth, survival, liq_log, liq_w, liq_dd = jax.vmap(lambda c: _isolated_outcome(c, ruin_floor))(final)
        return Outcome(
            wealth=wealth,
            liquidated=~jnp.all(final.alive, axis=-1),
            liquidation_step=final.liq_step,
            max_drawdown=final.max_dd,
            survival=survival,
            liq_log_wealth=liq_log,
            liq_wealth=liq_w,
            liq_drawdown=liq_dd,
            capped=final.capped,
            cascade=final.cascade,
        )
    return Outcome(
        wealth=final.wealth,
        liquidated=~final.alive,
        liquidation_step=final.liq_step,
        max_drawdown=final.max_dd,
        survival=final.survival,
        liq_log_wealth=final.liq[:, 0],
        liq_wealth=final.liq[:, 1],
        liq_drawdown=final.liq[:, 2],
        capped=final.capped,
        cascade=final.cascade,
        exposure=None if final.book is None else final.book.exposure,
    )


def plan_chunks(paths: int, chunk_size: int | None) -> tuple[int, int]:
    """(blocks per chunk, number of chunks) covering ``paths`` paths."""
    blocks_needed = math.ceil(paths / BLOCK)
    per_chunk = blocks_needed if chunk_size is None else max(1, min(blocks_needed, chunk_size // BLOCK))
    n_chunks = math.ceil(blocks_needed / per_chunk)
    # Equal chunks of at most chunk_size, with the least padding.
    return math.ceil(blocks_needed / n_chunks), n_chunks


def simulate_outcome(
    key: Array,
    model: PathModel,
    policy: Policy,
    market: Market,
    *,
    paths: int,
    steps: int,
    dt: float,
    dtype: Any,
    ruin_floor: float,
    chunk_size: int | None = 32768,
    n_draws: int | None = None,
    noise: Any = None,
) -> Outcome:
    """Per-path outcomes of ``paths`` simulated accounts, processed in chunks of bounded memory.

    Traceable (usable inside ``jit`` and ``grad``): chunks run under ``lax.map`` with the step
    body rematerialized, so reverse-mode memory is one chunk's worth of carries.

    Args:
        key: PRNG key; path p uses blocks derived from it, independent of ``chunk_size``.
        model: path model; with ``n_draws`` its array leaves have a leading axis of parameter
            draws and path p uses draw ``p % n_draws``.
        policy, market: the leverage policy and the venue's rules.
        paths, steps, dt: number of paths, of steps and step length in years.
        chunk_size: paths per chunk (rounded to whole blocks of ``BLOCK``).
        noise: pre-drawn noise from :func:`draw_noise` (then all paths form one chunk).

    Returns:
        An :class:`Outcome` with arrays of length ``paths``.
    """
    per_chunk, n_chunks = plan_chunks(paths, None if noise is not None else chunk_size)

    def one_chunk(c: Array) -> Outcome:
        outcome, _ = simulate_chunk(
            key,
            c * per_chunk,
            model,
            policy,
            market,
            n_blocks=per_chunk,
            steps=steps,
            dt=dt,
            dtype=dtype,
            ruin_floor=ruin_floor,
            n_draws=n_draws,
            noise=noise,
        )
        return outcome

    if n_chunks == 1:
        out = one_chunk(jnp.zeros((), jnp.int32))
    else:
        out = jax.lax.map(jax.checkpoint(one_chunk), jnp.arange(n_chunks, dtype=jnp.int32))
        out = jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), out)
    return jax.tree.map(lambda a: a[:paths], out)


simulate_outcome_jit = jax.jit(
    simulate_outcome, static_argnames=("paths", "steps", "dt", "dtype", "ruin_floor", "chunk_size", "n_draws")
)
""":func:`simulate_outcome` compiled once per shape and setting, reused across calls."""


def draw_noise(
    key: Array, model: PathModel, *, paths: int, steps: int, dtype: Any, n_draws: int | None = None
) -> Any:
    """All the noise of ``paths`` paths (rounded up to whole blocks), leading axes ``(steps, paths)``."""
    n_blocks = math.ceil(paths / BLOCK)
    path_model = _path_params(model, jnp.zeros((), jnp.int32), n_blocks * BLOCK, n_draws)
    block_model = _per_block(path_model, n_blocks, n_draws is not None)
    block_ids = jnp.arange(n_blocks)
    return jax.lax.map(
        lambda t: _block_noise(key, t, block_ids, block_model, n_draws is not None, dtype),
        jnp.arange(steps, dtype=jnp.int32),
    )


def simulate_returns(
    key: Array,
    model: PathModel,
    *,
    paths: int,
    steps: int,
    dt: float,
    dtype: Any,
    n_draws: int | None = None,
    cascade: CascadeParams | None = None,
) -> Array:
    """Log-returns ``(paths, steps, n_assets)`` of the path model, with the engine's random numbers;
    with ``cascade`` (one asset) the returns after the crowd's liquidation cascade (no account of
    one's own in the flow)."""
    n_blocks = math.ceil(paths / BLOCK)
    n = n_blocks * BLOCK
    path_model = _path_params(model, jnp.zeros((), jnp.int32), n, n_draws)
    batched = n_draws is not None
    in_model = 0 if batched else None
    block_model = _per_block(path_model, n_blocks, batched)
    block_ids = jnp.arange(n_blocks)

    def cascaded(x: Array, crowd: Any) -> tuple[Array, Any]:
        y, _, crowd = cascade_step(x[0], crowd, cascade, dt_hours=dt * HOURS_PER_YEAR)
        return y[None].astype(x.dtype), crowd

    def body(state: Any, t: Array):
        model_state, crowd = state
        noise = _block_noise(key, t, block_ids, block_model, batched, dtype)
        model_state, out = jax.vmap(lambda s, z, m: m.step(s, z, dt), in_axes=(0, 0, in_model))(
            model_state, noise, path_model
        )
        x = out.log_return
        if cascade is not None:
            x, crowd = jax.vmap(cascaded)(x, crowd)
        return (model_state, crowd), x

    state0 = jax.vmap(lambda m: m.init(dtype), in_axes=(in_model,), axis_size=n)(path_model)
    crowd0 = None if cascade is None else jax.vmap(lambda _: init_crowd(cascade))(jnp.arange(n))
    _, x = jax.lax.scan(body, (state0, crowd0), jnp.arange(steps, dtype=jnp.int32))
    return jnp.swapaxes(x, 0, 1)[:paths]


simulate_returns_jit = jax.jit(simulate_returns, static_argnames=("paths", "steps", "dt", "dtype", "n_draws"))
""":func:`simulate_returns` compiled once per model structure, shape and setting, reused across calls
(new keys and parameter values included): ``levopt.simulate`` calls it."""
