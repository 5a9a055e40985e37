"""The margin engine's accounting against references written here: first passage of a short,
exact equity paths at zero volatility, and the equity left after a liquidation.

The deterministic references (``reference_account``) keep the account as units of each asset and
a cash balance, the way a broker's statement does, rather than as the engine's notional and
equity; they share with the engine only the stated conventions (interest continuously compounded
on the start-of-step cash balance, funding on the start-of-step net notional, fee and slippage on
traded notional, target notional set from the equity before the trading cost).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z, make_config
from scipy import stats

import levopt
from levopt.engine import draw_noise, simulate_chunk, simulate_returns
from levopt.problem import STREAM_PATHS

DAYS = 30
DT = 1 / 365
STILL = {"kind": "gbm", "mu": 0.0, "sigma": 0.0}


# --- references ---------------------------------------------------------------------------------


def first_passage_up(b: float, mu: float, sigma: float, T: float) -> float:
    """P(max_{t<=T} X_t >= b), X_t = nu t + sigma W_t, nu = mu - sigma^2/2, b > 0 (reflection
    principle with drift; e.g. Borodin & Salminen, Handbook of Brownian Motion, 1.1.4)."""
    nu = mu - sigma**2 / 2
    s = sigma * math.sqrt(T)
    return stats.norm.cdf((-b + nu * T) / s) + math.exp(2 * nu * b / sigma**2) * stats.norm.cdf(
        (-b - nu * T) / s
    )


def reference_account(
    log_prices,
    target,
    rebalance=None,
    *,
    cash_rate=0.0,
    borrow_rate=0.0,
    funding=0.0,
    cost=0.0,
    mm=0.0,
    lf=0.0,
    dt=DT,
):
    """Equity and gross leverage after each step of one account, kept as units and cash.

    Args:
        log_prices: ``(K + 1, n)`` log S_t/S_0 at the steps (row 0 is zero).
        target: ``target(i)`` the ``(n,)`` leverage (signed notional / equity) wanted at time i.
        rebalance: trade back to the target every this many steps (not at the horizon), or None.

    Returns:
        ``(equity (K,), leverage (K,), liquidation step or -1)``; W_0 = 1.
    """
    prices = np.exp(np.asarray(log_prices, float))
    steps = prices.shape[0] - 1
    # Opening trade: buy (or sell short) units worth the target notional; the fee comes out of cash.
    units = np.asarray(target(0), float) / prices[0]
    cash = 1.0 - units @ prices[0] - cost * np.abs(units) @ prices[0]
    liq_step, equity, leverage = -1, [], []
    for i in range(1, steps + 1):
        # Interest on the start-of-step balance: deposits earn cash_rate, a debit pays borrow_rate.
        rate = cash_rate if cash >= 0 else borrow_rate
        cash *= math.exp(rate * dt)
        # Funding on the net value of the positions at the start of the step: a long pays it.
        cash -= funding * dt * (units @ prices[i - 1])
        value = cash + units @ prices[i]
        gross = np.abs(units) @ prices[i]
        if liq_step < 0 and gross > 0 and value <= mm * gross:
            # The price moved continuously from prices[i-1] to prices[i]; the venue closes the
            # position where equity meets maintenance, cash + q s = mm |q| s, and charges lf |q| s.
            (q,) = units
            s_level = cash / (mm * abs(q) - q)
            cash = max((mm - lf) * abs(q) * s_level, 0.0)
            units = np.zeros_like(units)
            liq_step = i
        elif liq_step < 0 and rebalance is not None and i % rebalance == 0 and i < steps:
            wealth = cash + units @ prices[i]
            new_units = np.asarray(target(i), float) * wealth / prices[i]
            traded = new_units - units
            cash -= traded @ prices[i] + cost * np.abs(traded) @ prices[i]
            units = new_units
        wealth = cash + units @ prices[i]
        equity.append(wealth)
        leverage.append(np.abs(units) @ prices[i] / wealth)
    return np.array(equity), np.array(leverage), liq_step


def straight_line(mu, steps=DAYS, dt=DT):
    """log S_t/S_0 of a zero-volatility GBM: mu t (one column per asset)."""
    mu = np.atleast_1d(np.asarray(mu, float))
    return np.arange(steps + 1)[:, None] * mu[None, :] * dt


# --- engine helpers -----------------------------------------------------------------------------


@partial(jax.jit, static_argnames=("steps", "dt", "dtype"))
def _one_block(key, model, policy, market, steps, dt, dtype):
    return simulate_chunk(
        key,
        jnp.zeros((), jnp.int32),
        model,
        policy,
        market,
        n_blocks=1,
        steps=steps,
        dt=dt,
        dtype=dtype,
        ruin_floor=1e-9,
        record=True,
    )


_returns = jax.jit(simulate_returns, static_argnames=("paths", "steps", "dt", "dtype", "n_draws"))
_noise = jax.jit(draw_noise, static_argnames=("paths", "steps", "dtype", "n_draws"))


def engine_path(cfg: dict):
    """Outcome fields and per-step equity and leverage of path 0 (all paths agree at sigma = 0)."""
    problem = levopt.build(cfg)
    outcome, traj = _one_block(
        problem.key(STREAM_PATHS),
        problem.model,
        problem.policy,
        problem.market,
        problem.cfg.steps,
        problem.cfg.dt,
        problem.dtype,
    )
    equity, leverage = np.asarray(traj.equity), np.asarray(traj.leverage)
    np.testing.assert_array_equal(equity, equity[:, :1] * np.ones_like(equity))
    first = {k: np.asarray(v)[0] for k, v in outcome._asdict().items() if v is not None}
    return first, equity[:, 0], leverage[:, 0]


def deterministic(model=STILL, **market):
    return dict(model=model, market={"maintenance_margin": 0.0, **market}, paths=256)


def assert_path(cfg, equity, leverage, liq_step=-1):
    got, got_equity, got_leverage = engine_path(cfg)
    np.testing.assert_allclose(got_equity, equity, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got_leverage, leverage, rtol=1e-12, atol=1e-13)
    assert got["wealth"] == pytest.approx(equity[-1], rel=1e-12, abs=1e-13)
    assert int(got["liquidation_step"]) == liq_step
    return got


# --- 1. shorts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("L", [3.0, 8.0])
@pytest.mark.parametrize("mu", [-0.5, 0.5])
def test_short_liquidation_probability_matches_upper_first_passage(L, mu):
    sigma, mm = 0.8, 0.005
    cfg = make_config(
        paths=16384,
        model={"kind": "gbm", "mu": mu, "sigma": sigma},
        market__maintenance_margin=mm,
        policy={"kind": "constant", "weights": [-L], "rebalance": "never"},
    )
    problem = levopt.build(cfg)
    o = problem.simulate(problem.key(STREAM_PATHS))
    # Reference: a short of notional L on equity 1 has equity 1 + L(1 - u) and notional L u at the
    # price ratio u, which meet maintenance at u* = (1 + L) / (L (1 + mm)): first passage of the
    # log-price up through b = log u* > 0, in closed form.
    b = math.log((1 + L) / (L * (1 + mm)))
    expected = first_passage_up(b, mu, sigma, DAYS / 365)
    per_path = 1.0 - np.asarray(o.survival)
    # Each path's estimate is the crossing probability given its daily closes (a Brownian bridge),
    # so its variance is at most the binomial p(1 - p); the standard error is the sample one.
    se = per_path.std(ddof=1) / math.sqrt(per_path.size)
    assert abs(per_path.mean() - expected) < Z * se
    # Checking at the daily closes only misses the crossings between them.
    discrete = np.asarray(o.liquidated, float)
    assert expected - discrete.mean() > Z * discrete.std(ddof=1) / math.sqrt(discrete.size)


@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_short_receives_funding(mu):
    L, f = 3.0, 0.2
    cfg = make_config(
        **deterministic({"kind": "gbm", "mu": mu, "sigma": 0.0}, funding_rate=f),
        policy={"kind": "constant", "weights": [-L], "rebalance": "never"},
    )
    # Reference: a units-and-cash recursion; at mu = 0 the notional stays L and the short simply
    # collects L f dt each day: W_T = 1 + L f T.
    equity, leverage, _ = reference_account(straight_line(mu), lambda i: [-L], funding=f)
    got = assert_path(cfg, equity, leverage)
    if mu == 0.0:
        assert got["wealth"] == pytest.approx(1 + L * f * DAYS / 365, rel=1e-12)
        assert np.all(np.diff(equity) > 0)


def test_short_proceeds_earn_the_cash_rate_and_borrow_rate_is_not_charged():
    L, c, r_cash, f = 3.0, 0.001, 0.04, 0.1
    policy = {"kind": "constant", "weights": [-L], "rebalance": "never"}
    # Reference (closed form, price fixed): the cash balance is the collateral plus the sale's
    # proceeds less the fee, C_0 = 1 + L - c L, compounding at the cash rate, plus each day's funding
    # L f dt compounding from the day it is received; equity = C_T - L.
    K = DAYS
    closed = (1 + L - c * L) * math.exp(r_cash * K * DT) - L
    closed += sum(L * f * DT * math.exp(r_cash * (K - i) * DT) for i in range(1, K + 1))
    wealth = []
    for borrow in (0.04, 0.5):
        cfg = make_config(
            **deterministic(cash_rate=r_cash, borrow_rate=borrow, fee=c, funding_rate=f), policy=policy
        )
        got, _, _ = engine_path(cfg)
        wealth.append(got["wealth"])
    assert wealth[0] == pytest.approx(closed, rel=1e-12)
    # The cash balance of a short is positive, so the borrow rate never applies.
    assert wealth[1] == wealth[0]

    # With the price moving and the rates apart: the units-and-cash recursion.
    mu = 0.4
    cfg = make_config(
        **deterministic(
            {"kind": "gbm", "mu": mu, "sigma": 0.0},
            cash_rate=r_cash,
            borrow_rate=0.15,
            fee=c,
            slippage=0.0005,
            funding_rate=f,
        ),
        policy={"kind": "constant", "weights": [-L], "rebalance": 1},
    )
    equity, leverage, _ = reference_account(
        straight_line(mu), lambda i: [-L], 1, cash_rate=r_cash, borrow_rate=0.15, funding=f, cost=c + 0.0005
    )
    assert_path(cfg, equity, leverage)


# --- 2. deterministic accounting ----------------------------------------------------------------


@pytest.mark.parametrize(
    "L,rebalance,funding",
    [
        (3.0, 1, 0.0),  # borrows N - W at the borrow rate
        (0.5, 1, 0.0),  # lends W - N at the cash rate
        (1.02, None, -0.5),  # longs receive funding: the cash balance turns from debit to deposit
    ],
)
def test_borrow_and_cash_rates(L, rebalance, funding):
    mu, r_cash, r_borrow = 0.3, 0.03, 0.12
    cfg = make_config(
        **deterministic(
            {"kind": "gbm", "mu": mu, "sigma": 0.0},
            cash_rate=r_cash,
            borrow_rate=r_borrow,
            funding_rate=funding,
        ),
        policy={"kind": "constant", "leverage": L, "rebalance": rebalance or "never"},
    )
    equity, leverage, _ = reference_account(
        straight_line(mu), lambda i: [L], rebalance, cash_rate=r_cash, borrow_rate=r_borrow, funding=funding
    )
    assert_path(cfg, equity, leverage)
    if funding:
        # The case is only a check of the sign switch if the balance does switch.
        prices = np.exp(straight_line(mu)[:, 0])
        cash = equity - L * prices[1:]
        assert cash[0] < 0 < cash[-1]


def test_funding_is_paid_on_net_notional():
    mu, w, f = [0.5, -0.3], [2.0, -1.0], 0.2
    cfg = make_config(
        **deterministic({"kind": "gbm", "mu": mu, "sigma": [0.0, 0.0]}, funding_rate=f, borrow_rate=0.07),
        policy={"kind": "constant", "weights": w, "rebalance": "never"},
    )
    equity, leverage, _ = reference_account(straight_line(mu), lambda i: w, funding=f, borrow_rate=0.07)
    assert_path(cfg, equity, leverage)
    # Funding on the gross notional would differ by about 2 f T (|2| + |-1| versus 2 - 1).
    equity_gross, _, _ = reference_account(
        straight_line(mu), lambda i: np.abs(w), funding=f, borrow_rate=0.07
    )
    assert abs(equity[-1] - equity_gross[-1]) > 1e-3


@pytest.mark.parametrize("k", [1, 3])
def test_fee_and_slippage_on_every_rebalance(k):
    mu, L, fee, slip = 0.6, 3.0, 0.0004, 0.0003
    cfg = make_config(
        **deterministic(
            {"kind": "gbm", "mu": mu, "sigma": 0.0}, fee=fee, slippage=slip, borrow_rate=0.1, cash_rate=0.02
        ),
        policy={"kind": "constant", "leverage": L, "rebalance": k},
    )
    equity, leverage, _ = reference_account(
        straight_line(mu), lambda i: [L], k, cash_rate=0.02, borrow_rate=0.1, cost=fee + slip
    )
    assert_path(cfg, equity, leverage)
    free, _, _ = reference_account(straight_line(mu), lambda i: [L], k, cash_rate=0.02, borrow_rate=0.1)
    # A trade back to L after a rise g buys L (L - 1) g and pays (fee + slip) on it: about 2e-4 here.
    assert free[-1] - equity[-1] > 1e-4


def test_schedule_policy():
    mu, levels, segments = 0.2, [1.0, 3.0, 0.5], 3
    cfg = make_config(
        **deterministic(
            {"kind": "gbm", "mu": mu, "sigma": 0.0},
            fee=0.0005,
            slippage=0.0002,
            borrow_rate=0.1,
            cash_rate=0.03,
        ),
        policy={"kind": "schedule", "leverage": levels, "segments": segments, "rebalance": 1},
    )

    # Segment of time i: floor(i * segments / K), the last one closed at the horizon.
    def target(i):
        return [levels[min(i * segments // DAYS, segments - 1)]]

    equity, leverage, _ = reference_account(
        straight_line(mu), target, 1, cash_rate=0.03, borrow_rate=0.1, cost=0.0007
    )
    assert_path(cfg, equity, leverage)
    # After each trade the leverage is the segment's (up to the fee just paid).
    np.testing.assert_allclose(leverage[[5, 15, 25]], levels, rtol=3e-3)


@pytest.mark.parametrize("side", ["long", "short"])
def test_deterministic_liquidation_with_fee(side):
    L, mm, lf, r_cash, r_borrow, f = 5.0, 0.05, 0.02, 0.02, 0.1, 0.05
    mu = -5.0 if side == "long" else 5.0
    w = L if side == "long" else -L
    cfg = make_config(
        **deterministic(
            {"kind": "gbm", "mu": mu, "sigma": 0.0},
            cash_rate=r_cash,
            borrow_rate=r_borrow,
            funding_rate=f,
            fee=0.001,
            maintenance_margin=mm,
            liquidation_fee=lf,
        ),
        policy={"kind": "constant", "weights": [w], "rebalance": "never"},
    )
    equity, leverage, liq_step = reference_account(
        straight_line(mu),
        lambda i: [w],
        cash_rate=r_cash,
        borrow_rate=r_borrow,
        funding=f,
        cost=0.001,
        mm=mm,
        lf=lf,
    )
    # Without costs the price ratio u* = (L -/+ 1)/(L (1 -/+ mm)) is reached at step
    # ceil(log u* / (mu dt)) = 13 (long) or 10 (short); the costs do not move it past a day.
    u_star = (L - 1) / (L * (1 - mm)) if side == "long" else (L + 1) / (L * (1 + mm))
    assert liq_step == math.ceil(math.log(u_star) / (mu * DT))
    got = assert_path(cfg, equity, leverage, liq_step)
    assert got["liquidated"] and got["survival"] == 0.0
    # Continuous monitoring sees the same certain crossing: its liquidated branch is the whole path.
    assert got["liq_wealth"] == pytest.approx(equity[-1], rel=1e-12)
    # Once closed, the account is all cash and earns the cash rate to the horizon (closed form).
    grown = equity[liq_step - 1] * math.exp(r_cash * (DAYS - liq_step) * DT)
    assert got["wealth"] == pytest.approx(grown, rel=1e-12)


# --- 3. liquidation outcomes --------------------------------------------------------------------


@pytest.mark.parametrize("side", ["long", "short"])
def test_diffusion_liquidation_leaves_maintenance_minus_fee(side):
    L, mm, lf = 10.0, 0.02, 0.01
    w = L if side == "long" else -L
    cfg = make_config(
        paths=16384,
        model={"kind": "gbm", "mu": 0.0, "sigma": 0.8},
        market={"maintenance_margin": mm, "liquidation_fee": lf},
        policy={"kind": "constant", "weights": [w], "rebalance": "never"},
    )
    problem = levopt.build(cfg)
    o = problem.simulate(problem.key(STREAM_PATHS))
    # Closed form: the level u* is the same price on every step of a static position without
    # costs, so every liquidation, checked at a step or crossed between two, leaves
    # (mm - lf) L u*, with u* = (L - 1)/(L (1 - mm)) for a long and (L + 1)/(L (1 + mm)) for a short.
    u_star = (L - 1) / (L * (1 - mm)) if side == "long" else (L + 1) / (L * (1 + mm))
    left = (mm - lf) * L * u_star
    # liq_wealth sums P(liquidated in step) x equity left over the steps: left x (1 - survival),
    # compared in absolute terms since 1 - survival loses its relative precision near zero.
    q = 1.0 - np.asarray(o.survival)
    assert np.mean(q > 1e-3) > 0.5
    np.testing.assert_allclose(np.asarray(o.liq_wealth), left * q, rtol=1e-12, atol=1e-15)
    liquidated = np.asarray(o.liquidated)
    assert liquidated.mean() > 0.2
    np.testing.assert_allclose(np.asarray(o.wealth)[liquidated], left, rtol=1e-12)


@pytest.mark.parametrize("side", ["long", "short"])
def test_jump_gap_through_leaves_post_jump_equity_minus_fee(side):
    L, mm, lf = 5.0, 0.05, 0.02
    w, jump_mean = (L, -0.15) if side == "long" else (-L, 0.15)
    model = {"kind": "merton", "mu": 0.0, "sigma": 0.5, "lam": 20.0, "jump_mean": jump_mean, "jump_std": 0.1}
    cfg = make_config(
        paths=4096,
        model=model,
        market={"maintenance_margin": mm, "liquidation_fee": lf},
        policy={"kind": "constant", "weights": [w], "rebalance": "never"},
    )
    problem = levopt.build(cfg)
    key, n, K, dt = problem.key(STREAM_PATHS), cfg["paths"], problem.cfg.steps, problem.cfg.dt
    o = problem.simulate(key)
    x = np.asarray(_returns(key, problem.model, paths=n, steps=K, dt=dt, dtype=problem.dtype))[..., 0]

    # Which steps jumped, from the same random numbers: the count is the Poisson(lam dt) quantile of
    # the uniform (scipy), and the Merton step rebuilt from the noise must give the engine's returns.
    noise = _noise(key, problem.model, paths=n, steps=K, dtype=problem.dtype)
    noise = jax.tree.map(lambda a: np.asarray(a)[:, :n, 0].T, noise)
    lam, m, s, sigma = model["lam"], model["jump_mean"], model["jump_std"], model["sigma"]
    count = stats.poisson.ppf(noise["u"], lam * dt)
    k = math.expm1(m + s**2 / 2)
    rebuilt = (-(sigma**2) / 2 - lam * k) * dt + sigma * math.sqrt(dt) * noise["z"]
    rebuilt += count * m + np.sqrt(count) * s * noise["zj"]
    np.testing.assert_allclose(x, rebuilt, rtol=0, atol=1e-12)

    # Reference: equity of the static position 1 + w (S_t - 1), notional |w| S_t; the margin is
    # checked at the closes (step i is the first with equity <= mm x notional).
    prices = np.exp(np.cumsum(x, axis=1))
    equity = 1 + w * (prices - 1)
    notional = abs(w) * prices
    below = equity <= mm * notional
    ref_step = np.where(below.any(axis=1), below.argmax(axis=1) + 1, -1)
    np.testing.assert_array_equal(np.asarray(o.liquidation_step), ref_step)
    liquidated = ref_step > 0
    np.testing.assert_array_equal(np.asarray(o.liquidated), liquidated)

    rows = np.nonzero(liquidated)[0]
    at = ref_step[rows] - 1
    jumped = count[rows, at] > 0
    # A jump closes the position after the gap: what is left at the close, less the fee on the
    # post-jump notional, floored at zero (the insurance fund takes the rest).
    gap_left = np.maximum(equity[rows, at] - lf * notional[rows, at], 0.0)
    # A diffusion step is closed at the maintenance level: (mm - lf) |w| u*.
    u_star = (L - 1) / (L * (1 - mm)) if side == "long" else (L + 1) / (L * (1 + mm))
    expected = np.where(jumped, gap_left, (mm - lf) * L * u_star)
    np.testing.assert_allclose(np.asarray(o.wealth)[rows], expected, rtol=1e-12, atol=1e-14)
    # All three cases occur: a jump that leaves something, one through zero, and a diffusion close.
    assert np.sum(jumped & (gap_left > 0)) >= 20
    assert np.sum(jumped & (gap_left == 0)) >= 20
    assert np.sum(~jumped) >= 20
    # And the gap cases leave less than the maintenance-level close would.
    assert np.all(gap_left[jumped] < (mm - lf) * L * u_star)
