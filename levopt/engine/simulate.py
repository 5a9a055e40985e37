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

from levopt.engine.market import Market, financing, funding_payment, maintenance_requirement, trading_cost
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
    """

    wealth: Array
    liquidated: Array
    liquidation_step: Array
    max_drawdown: Array
    survival: Array
    liq_log_wealth: Array
    liq_wealth: Array
    liq_drawdown: Array


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


def _crossing_probability(x: Array, barrier: Array, var: Array, downward: Array) -> Array:
    """P(a Brownian bridge from 0 to ``x`` with variance ``var`` touches ``barrier``) (0 if none)."""
    var = jnp.maximum(var, jnp.finfo(x.dtype).tiny)
    # A barrier on the wrong side of the start (costs already took equity below maintenance) is
    # crossed at once.
    crossed = jnp.where(downward, (x <= barrier) | (barrier >= 0), (x >= barrier) | (barrier <= 0))
    exponent = -2.0 * jnp.abs(barrier) * jnp.abs(x - barrier) / var
    return jnp.where(crossed, 1.0, jnp.exp(jnp.where(crossed, 0.0, exponent)))


def _bridge(
    alive: Array,
    x: Array,
    vol: Array,
    n: Array,
    w: Array,
    carry_cost: Array,
    mm: Array,
    model: PathModel,
) -> tuple[Array, Array, Array]:
    """Brownian-bridge probability that the step crossed the liquidation level, whether the path has
    such a level, and the gross notional at it."""
    gross = jnp.sum(jnp.abs(n))
    if n.shape[0] == 1:
        # One asset: the liquidation level is an exact log-price barrier.
        long = n[0] > 0
        denom = jnp.where(long, n[0] * (1 - mm), n[0] * (1 + mm))
        level = (n[0] - w - carry_cost) / jnp.where(denom != 0, denom, 1.0)
        has_barrier = alive & (gross > 0) & (level > 0)
        barrier = jnp.log(jnp.where(level > 0, level, 1.0))
        p_bridge = _crossing_probability(x[0], barrier, vol[0] ** 2, long)
        gross_at_level = gross * jnp.where(has_barrier, level, 1.0)
    else:
        p_bridge, has_barrier, gross_at_level = _portfolio_bridge(alive, x, vol, n, w, carry_cost, mm, model)
    return p_bridge, has_barrier, gross_at_level


def _portfolio_bridge(
    alive: Array, x: Array, vol: Array, n: Array, w: Array, carry_cost: Array, mm: Array, model: PathModel
) -> tuple[Array, Array, Array]:
    """The bridge for several assets, on the distance to liquidation D = C + Σ c_i e^{x_i}.

    With C = W + cost − Σ N_i the cash after the step's costs and c_i = N_i (1 − mm sign N_i), D is
    equity minus the maintenance requirement on the current notional, so D = 0 is the liquidation
    level whatever the book. When every c_i has one sign and C the other (a levered long, or a
    short), the level is log|S| = log|C| for S = Σ c_i e^{x_i}, and log S is bridged as a Brownian
    motion with the step variance of its weights c_i / S_0: exact for one asset and for perfectly
    correlated assets. Otherwise (a long/short book) D itself is bridged as an arithmetic
    Brownian motion with the step variance of Σ c_i x_i.
    """
    gross = jnp.sum(jnp.abs(n))
    c = n * (1 - mm * jnp.sign(n))
    cash = w + carry_cost - jnp.sum(n)
    s0 = jnp.sum(c)
    s_end = jnp.sum(c * jnp.exp(x))
    one_sided = (jnp.all(c >= 0) | jnp.all(c <= 0)) & (s0 * cash < 0)
    safe_s0 = jnp.where(s0 != 0, s0, 1.0)
    # Geometric branch: log(S/S_0) against log(−C/S_0), downward for a long book.
    ratio = jnp.where(one_sided, -cash / safe_s0, 1.0)
    log_var = jnp.sum((model.corr_chol.T @ (c / safe_s0 * vol)) ** 2)
    log_end = jnp.log(jnp.where(one_sided & (s_end / safe_s0 > 0), s_end / safe_s0, 1.0))
    p_log = _crossing_probability(log_end, jnp.log(jnp.where(ratio > 0, ratio, 1.0)), log_var, s0 > 0)
    # Arithmetic branch: D from D_0 to D_end against 0.
    d0 = cash + s0
    p_arith = _crossing_probability(
        s_end - s0, -d0, jnp.sum((model.corr_chol.T @ (c * vol)) ** 2), jnp.array(True)
    )
    has_barrier = alive & (gross > 0) & (d0 > 0)
    p_bridge = jnp.where(one_sided, p_log, p_arith)
    # At the level every notional has moved by about the same factor (exactly so for one asset).
    gross_at_level = gross * jnp.where(one_sided & has_barrier, ratio, 1.0)
    return p_bridge, has_barrier, gross_at_level


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
) -> tuple[Array, Array]:
    """Trade back to the policy's target when a rebalance is due, paying fees and slippage."""
    due = alive & ((t + 1) % policy.rebalance_every == 0) & (t + 1 < steps)
    mu_next = model.mean_return()
    vol_next = model.current_vol(model_state, dt)
    n_target = policy.target(policy_state, t + 1, w, vol_next, mu_next) * w
    cost = trading_cost(n_target - n, market.trading_cost_rate)
    return jnp.where(due, w - cost, w), jnp.where(due, n_target, n)


def _step_path(
    carry: _Carry,
    noise: Any,
    t: Array,
    model: PathModel,
    policy: Policy,
    market: Market,
    steps: int,
    dt: float,
    ruin_floor: float,
) -> _Carry:
    """Advance one path by one step (vmapped over paths by the caller)."""
    model_state, out = model.step(carry.model_state, noise, dt)
    x, vol = out.log_return, out.vol
    w, n = carry.wealth, carry.notional
    mm, lf = market.maintenance_margin, market.liquidation_fee

    # Financing on the start-of-step balances; exact compounding within the step.
    cash = w - jnp.sum(n)
    carry_cost = financing(cash, jnp.expm1(market.cash_rate * dt), jnp.expm1(market.borrow_rate * dt))
    carry_cost = carry_cost + funding_payment(jnp.sum(n), market.funding_rate, dt)
    n_end = n * jnp.exp(x)
    w_end = w + jnp.sum(n_end - n) + carry_cost
    gross_end = jnp.sum(jnp.abs(n_end))
    hit = carry.alive & (w_end <= maintenance_requirement(gross_end, mm))
    p_bridge, has_barrier, gross_at_level = _bridge(carry.alive, x, vol, n, w, carry_cost, mm, model)
    p = jnp.where(hit, 1.0, jnp.where(has_barrier, p_bridge, 0.0))

    # Equity after liquidation: at the maintenance level for continuous moves, post-gap for jumps.
    w_at_level = jnp.maximum((mm - lf) * gross_at_level, 0.0)
    w_gap = jnp.maximum(w_end - lf * gross_end, 0.0)
    w_liq = jnp.where(out.gap, jnp.minimum(w_gap, w_at_level), w_at_level)

    # Liquidated-branch outcome, grown at the cash rate to the horizon.
    remaining = (steps - t - 1) * dt
    w_liq_T = w_liq * jnp.exp(market.cash_rate * remaining)
    dd_liq = jnp.maximum(carry.max_dd, 1.0 - w_liq / carry.peak)
    weight = carry.survival * p
    liq = carry.liq + weight * jnp.stack([jnp.log(jnp.maximum(w_liq_T, ruin_floor)), w_liq_T, dd_liq])

    # The simulated path (step checks): liquidate, or trade back to the policy's target.
    w_next = jnp.where(hit, w_liq, w_end)
    n_next = jnp.where(hit, jnp.zeros_like(n_end), n_end)
    alive = carry.alive & ~hit
    policy_state = policy.observe(carry.policy_state, x, w_next)
    if policy.rebalance_every > 0:
        w_next, n_next = _rebalance(
            alive, t, w_next, n_next, model, model_state, policy, policy_state, market, steps, dt
        )

    peak = jnp.maximum(carry.peak, w_next)
    max_dd = jnp.maximum(carry.max_dd, 1.0 - w_next / peak)
    return _Carry(
        wealth=w_next,
        notional=n_next,
        alive=alive,
        liq_step=jnp.where(hit, (t + 1).astype(jnp.int32), carry.liq_step),
        peak=peak,
        max_dd=max_dd,
        survival=carry.survival * (1.0 - p),
        liq=liq,
        model_state=model_state,
        policy_state=policy_state,
    )


def _open_path(
    model: PathModel, policy: Policy, market: Market, dt: float, dtype: Any, ruin_floor: float
) -> _Carry:
    """State of one path after the opening trade at t = 0."""
    n_assets = model.n_assets
    model_state = model.init(dtype)
    vol, mu = model.current_vol(model_state, dt), model.mean_return()
    policy_state = policy.init(n_assets, dtype, vol, mu)
    one = jnp.ones((), dtype)
    target = policy.target(policy_state, jnp.zeros((), jnp.int32), one, vol, mu)
    n0 = jnp.broadcast_to(target, (n_assets,)).astype(dtype)
    w0 = one - trading_cost(n0, market.trading_cost_rate)
    gross = jnp.sum(jnp.abs(n0))
    hit = w0 <= maintenance_requirement(gross, market.maintenance_margin)
    w0 = jnp.where(hit, jnp.maximum(w0 - market.liquidation_fee * gross, 0.0), w0)
    zero = jnp.zeros((), dtype)
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
    )


def _block_noise(
    key: Array, t: Array, block_ids: Array, block_model: PathModel, batched: bool, dtype: Any
) -> Any:
    """Noise of step ``t`` for whole blocks of paths, flattened to ``(n_blocks * BLOCK, ...)``."""

    def one_block(block: Array, m: PathModel) -> Any:
        return m.noise(jax.random.fold_in(jax.random.fold_in(key, block), t), BLOCK, dtype)

    noise = jax.vmap(one_block, in_axes=(0, 0 if batched else None))(block_ids, block_model)
    return jax.tree.map(lambda a: a.reshape((-1,) + a.shape[2:]), noise)


def _per_block(path_model: PathModel, n_blocks: int, batched: bool) -> PathModel:
    if not batched:
        return path_model
    return jax.tree.map(lambda a: a.reshape((n_blocks, BLOCK) + a.shape[1:]), path_model)


def _path_params(model: PathModel, first_path: Array, n: int, n_draws: int | None) -> PathModel:
    """The model of each path: shared, or draw ``p % n_draws`` of a batched model."""
    if n_draws is None:
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

    open_all = jax.vmap(
        lambda m: _open_path(m, policy, market, dt, dtype, ruin_floor), in_axes=(in_model,), axis_size=n
    )
    carry0 = open_all(path_model)
    step_all = jax.vmap(
        lambda c, z, t, m: _step_path(c, z, t, m, policy, market, steps, dt, ruin_floor),
        in_axes=(0, 0, None, in_model),
    )

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
        new = step_all(carry, z, t, path_model)
        rec = None
        if record:
            lev = jnp.sum(jnp.abs(new.notional), axis=-1) / jnp.maximum(new.wealth, jnp.finfo(dtype).tiny)
            rec = Trajectory(new.wealth, lev)
        return (new, z_next), rec

    first = draw(jnp.zeros((), jnp.int32)) if noise is None else None
    (final, _), traj = jax.lax.scan(body, (carry0, first), (jnp.arange(steps, dtype=jnp.int32), noise))
    outcome = Outcome(
        wealth=final.wealth,
        liquidated=~final.alive,
        liquidation_step=final.liq_step,
        max_drawdown=final.max_dd,
        survival=final.survival,
        liq_log_wealth=final.liq[:, 0],
        liq_wealth=final.liq[:, 1],
        liq_drawdown=final.liq[:, 2],
    )
    return outcome, traj


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
    key: Array, model: PathModel, *, paths: int, steps: int, dt: float, dtype: Any, n_draws: int | None = None
) -> Array:
    """Log-returns ``(paths, steps, n_assets)`` of the path model, with the engine's random numbers."""
    n_blocks = math.ceil(paths / BLOCK)
    n = n_blocks * BLOCK
    path_model = _path_params(model, jnp.zeros((), jnp.int32), n, n_draws)
    batched = n_draws is not None
    in_model = 0 if batched else None
    block_model = _per_block(path_model, n_blocks, batched)
    block_ids = jnp.arange(n_blocks)

    def body(state: Any, t: Array):
        noise = _block_noise(key, t, block_ids, block_model, batched, dtype)
        state, out = jax.vmap(lambda s, z, m: m.step(s, z, dt), in_axes=(0, 0, in_model))(
            state, noise, path_model
        )
        return state, out.log_return

    state0 = jax.vmap(lambda m: m.init(dtype), in_axes=(in_model,), axis_size=n)(path_model)
    _, x = jax.lax.scan(body, state0, jnp.arange(steps, dtype=jnp.int32))
    return jnp.swapaxes(x, 0, 1)[:paths]


simulate_returns_jit = jax.jit(simulate_returns, static_argnames=("paths", "steps", "dt", "dtype", "n_draws"))
""":func:`simulate_returns` compiled once per model structure, shape and setting, reused across calls
(new keys and parameter values included): ``levopt.simulate`` calls it."""
