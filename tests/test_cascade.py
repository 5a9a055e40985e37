"""levopt.cascade: the levered crowd, price impact of forced flow and the cascade inside one step.

Each check names its independent reference: the geometric-series closed form of a uniform crowd
under linear impact (and what "running through" the crowd gives), the liquidation level solved
from equity = maintenance with scipy's brentq, the square-root fixed point found by brentq on a
numpy rebuild of the liquidated-notional curve, the monotone iteration y ← x − I(F(y)) that the
cascade is defined as the limit of, the re-lever trade worked out by hand, and central finite
differences for the gradients.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

from levopt.cascade import (
    CascadeParams,
    CrowdState,
    OwnAccount,
    cascade_step,
    grid_edges,
    init_crowd,
    liquidation_offset,
    parse_cascade,
    relever_flow,
)
from levopt.errors import ConfigError

V = 2e10  # daily volume, settlement currency
NO_OWN = OwnAccount(jnp.asarray(0.0), jnp.asarray(0.0))

# Compiling a step takes seconds on a small CPU: tests share a few jitted functions whose
# arguments keep one structure (the default four leverage classes, an own account of zero size).


_step = jax.jit(
    lambda x, crowd, params, dt_hours, own: cascade_step(x, crowd, params, dt_hours=dt_hours, own=own)
)


def step(x, crowd, params, dt_hours=24.0, own=NO_OWN):
    """``cascade_step`` compiled once per dtype and impact kind: every argument cast to the
    parameters' dtype (a Python float would be traced apart from an array)."""
    cast = lambda a: jnp.asarray(a, params.dtype)  # noqa: E731
    return _step(cast(x), jax.tree.map(cast, crowd), params, cast(dt_hours), jax.tree.map(cast, own))


init = jax.jit(init_crowd)


def make_params(kind: str = "linear", dtype=jnp.float64, crowd=None, impact=None, **top) -> CascadeParams:
    base_impact = (
        {"kind": "linear", "permanent": 0.5, "daily_volume": V}
        if kind == "linear"
        else {"kind": "sqrt", "coefficient": 1.0, "daily_vol": 0.035, "daily_volume": V}
    )
    cfg = {
        "crowd": {"long_oi": 8e9, "short_oi": 6e9, **(crowd or {})},
        "impact": {**base_impact, **(impact or {})},
        **top,
    }
    return CascadeParams.from_config(cfg, dtype)


def uniform_band(params: CascadeParams, density: float, width: float) -> CrowdState:
    """A crowd of longs only, liquidation levels uniform over [−width, 0) at ``density`` per unit
    of log-price (width a whole number of bins; the start price is a bin edge)."""
    edges = np.asarray(grid_edges(params))
    a, b = edges[:-1], edges[1:]
    inside = (a >= -width - 1e-12) & (b <= 1e-12)
    notional = np.where(inside, density * (b - a), 0.0)
    start = init(params)
    return start._replace(long_notional=jnp.asarray(notional, params.dtype))


def numpy_liquidated(crowd: CrowdState, params: CascadeParams, masses=()):
    """F(y) rebuilt independently: the cumulative notional at the bin edges interpolated linearly
    (uniform density within bins), plus point masses ``(level, notional)`` at or above y."""
    edges = np.asarray(grid_edges(params))
    n = np.asarray(crowd.long_notional)
    above = np.concatenate([np.cumsum(n[::-1])[::-1], [0.0]])

    def F(y: float) -> float:
        return float(np.interp(y, edges, above)) + sum(m for level, m in masses if level >= y)

    return F


# --- the economic rules -------------------------------------------------------------------------


@pytest.mark.parametrize("side", [1, -1])
@pytest.mark.parametrize("leverage", [1.5, 3.0, 10.0, 50.0])
@pytest.mark.parametrize("maintenance", [0.0, 0.004, 0.01])
def test_liquidation_level_solves_equity_equals_maintenance(side, leverage, maintenance):
    entry, qty = 100.0, 2.0
    margin = qty * entry / leverage

    def excess(price: float) -> float:  # equity − maintenance·notional, isolated, no fees
        return margin + side * qty * (price - entry) - maintenance * qty * price

    lo, hi = (1e-9, entry) if side == 1 else (entry, 10 * entry)
    price = brentq(excess, lo, hi, xtol=1e-14, rtol=1e-15)
    assert math.log(price / entry) == pytest.approx(
        float(liquidation_offset(leverage, maintenance, side)), abs=1e-12
    )
    assert float(liquidation_offset(jnp.asarray(leverage), maintenance, side, xp=jnp)) == pytest.approx(
        math.log(price / entry), abs=1e-12
    )


def test_relever_trade_by_hand():
    # Long: notional 100 at 5x (equity 20); +10% → notional 110, equity 30, target 150: buy 40.
    buy, new = relever_flow(100.0, 5.0, math.log(1.1), 1)
    assert float(buy) == pytest.approx(40.0, rel=1e-12) and float(new) == pytest.approx(150.0, rel=1e-12)
    # Long, −10%: notional 90, equity 10, target 50: sell 40.
    buy, new = relever_flow(100.0, 5.0, math.log(0.9), 1)
    assert float(buy) == pytest.approx(-40.0, rel=1e-12) and float(new) == pytest.approx(50.0, rel=1e-12)
    # Short 100 at 5x; −10%: notional 90, equity 20 + 10 = 30, target 150: sells 60 more.
    buy, new = relever_flow(100.0, 5.0, math.log(0.9), -1)
    assert float(buy) == pytest.approx(-60.0, rel=1e-12) and float(new) == pytest.approx(150.0, rel=1e-12)
    # Short, +10%: notional 110, equity 10, target 50: buys back 60.
    buy, new = relever_flow(100.0, 5.0, math.log(1.1), -1)
    assert float(buy) == pytest.approx(60.0, rel=1e-12) and float(new) == pytest.approx(50.0, rel=1e-12)


def test_relever_flow_enters_the_next_step_with_its_impact():
    """Re-levering classes at 5x and 10x that last re-levered 10% lower: their purchase, by hand,
    moves the price by λB/V at the start of the next step (no other crowd, no liquidation)."""
    mix = {2: 0.0, 5: 0.5, 10: 0.5, 25: 0.0}
    params = make_params(crowd={"long_oi": 0.0, "short_oi": 0.0, "leverage": mix})
    crowd = init(params)._replace(
        log_price=jnp.asarray(math.log(1.1)),
        target_long=jnp.asarray([0.0, 100e6, 50e6, 0.0]),
        target_short=jnp.asarray([0.0, 80e6, 0.0, 0.0]),
    )
    y, info, new = step(0.0, crowd, params, 24.0)
    expected = 4 * 100e6 * 0.1 + 9 * 50e6 * 0.1 + 6 * 80e6 * 0.1  # (L−1)N·0.1 longs, (L+1)N·0.1 shorts
    assert float(info.relever_flow) == pytest.approx(expected, rel=1e-12)
    assert float(y) == pytest.approx(0.5 * expected / V, rel=1e-12)
    assert float(new.target_long[1]) == pytest.approx(100e6 * (5 * 1.1 - 4), rel=1e-12)
    assert float(new.target_price) == pytest.approx(math.log(1.1), rel=1e-15)


# --- closed forms of the cascade -----------------------------------------------------------------


@pytest.mark.parametrize("gain", [0.1, 0.5, 0.9, 0.99])
def test_uniform_crowd_amplifies_by_the_geometric_series(gain):
    """Density d per unit of log-price over [−W, 0), linear impact λ/V: y = x/(1 − λd/V) while that
    stays in the band; past it the whole band is sold, y = x − λN/V with N = dW."""
    params = make_params(crowd={"long_oi": 0.0, "short_oi": 0.0})
    lam, width = 0.5, 0.2
    d = gain * V / lam
    crowd = uniform_band(params, d, width)
    total = d * width
    for x in [-1e-4, -0.003, -0.02, -0.05, -0.1, -0.3]:
        y, info, _ = step(x, crowd, params, 1.0)
        inside = x / (1 - gain)
        expected = inside if inside >= -width else x - lam * total / V
        assert float(y) == pytest.approx(expected, rel=1e-11, abs=1e-13), x
        assert float(info.multiplier) == pytest.approx(expected / x, rel=1e-10)
        sold = -d * expected if inside >= -width else total
        assert float(info.long_liquidated) == pytest.approx(sold, rel=1e-10)
        assert not bool(info.runaway)


@pytest.mark.parametrize("gain", [1.0, 1.5, 4.0])
def test_supercritical_crowd_runs_to_the_end_of_the_band(gain):
    """λd/V ≥ 1: the residual y − x + λF(y)/V never falls to zero inside the band, so the whole band
    is sold and the price lands below it at y = x − λN/V (N = dW), whatever the size of x."""
    params = make_params(crowd={"long_oi": 0.0, "short_oi": 0.0})
    lam, width = 0.5, 0.2
    d = gain * V / lam
    crowd = uniform_band(params, d, width)
    for x in [-1e-6, -0.01, -0.15]:
        y, info, new = step(x, crowd, params, 1.0)
        assert float(y) == pytest.approx(x - gain * width, rel=1e-12)
        assert float(info.long_liquidated) == pytest.approx(d * width, rel=1e-12)
        assert float(jnp.sum(new.long_notional)) <= 1e-6 * d * width
        assert bool(info.runaway) and not bool(info.off_grid)
    # Past the end of the grid (range 1): the endogenous part is cut at the grid's edge, reported.
    y, info, _ = step(-0.9, crowd, params)
    assert float(y) == pytest.approx(-1.0, rel=1e-12) and bool(info.off_grid)
    # The exogenous move alone is never cut.
    y, info, _ = step(-1.3, crowd, params)
    assert float(y) == -1.3 and bool(info.off_grid)


def test_own_account_adds_its_notional_where_the_move_reaches_it():
    """A point mass M at level ℓ₀ inside a uniform band: once x/(1 − g) ≤ ℓ₀, y = (x − λM/V)/(1 − g)."""
    params = make_params(crowd={"long_oi": 0.0, "short_oi": 0.0})
    gain, lam, width, level, mass = 0.4, 0.5, 0.3, -0.05, 2e9
    crowd = uniform_band(params, gain * V / lam, width)
    own = OwnAccount(jnp.asarray(level), jnp.asarray(mass))
    for x in [-0.02, -0.029, -0.031, -0.06]:
        y, info, _ = step(x, crowd, params, 1.0, own)
        reached = x / (1 - gain) <= level
        expected = (x - lam * mass / V) / (1 - gain) if reached else x / (1 - gain)
        assert float(y) == pytest.approx(expected, rel=1e-11), x
        assert bool(info.own_liquidated) == reached
        # The own account's flow moves the price but is not the crowd's liquidation.
        assert float(info.long_liquidated) == pytest.approx(-expected * gain * V / lam, rel=1e-10)
    # A short account above the price is untouched by a fall.
    y, info, _ = step(-0.06, crowd, params, 1.0, OwnAccount(jnp.asarray(0.01), jnp.asarray(-mass)))
    assert float(y) == pytest.approx(-0.06 / (1 - gain), rel=1e-11) and not bool(info.own_liquidated)


def test_temporary_impact_relaxes_with_its_e_folding_time():
    """Permanent 0.3 and temporary 0.2: the first step's impact is 40% temporary; with x = 0 next, the
    price rebounds by D(e^{−Δt/τ} − 1) and D decays to De^{−Δt/τ}."""
    params = make_params(
        crowd={"long_oi": 0.0, "short_oi": 0.0},
        impact={"permanent": 0.3, "temporary": 0.2, "decay_hours": 2.0},
    )
    gain, width = 0.6, 0.2
    crowd = uniform_band(params, gain * V / 0.5, width)
    y1, _, crowd = step(-0.02, crowd, params, 1.0)
    assert float(y1) == pytest.approx(-0.02 / (1 - gain), rel=1e-12)
    d1 = 0.4 * (float(y1) + 0.02)
    assert float(crowd.displacement) == pytest.approx(d1, rel=1e-12)
    y2, _, crowd = step(0.0, crowd, params, 1.0)
    assert float(y2) == pytest.approx(d1 * math.expm1(-0.5), rel=1e-12)
    assert float(crowd.displacement) == pytest.approx(d1 * math.exp(-0.5), rel=1e-12)


def test_sqrt_impact_agrees_with_brentq():
    """Square-root law: the exact per-bin solution against brentq on y − x + Yσ√(F(y)/V), bracketed
    at the first sign change of a fine scan downward from x (the largest root below x)."""
    params = make_params("sqrt", crowd={"target_share": 0.0})
    crowd = init(params)
    F = numpy_liquidated(crowd, params)
    c = 1.0 * 0.035 / math.sqrt(V)

    def h(y: float, x: float) -> float:
        return y - x + c * math.sqrt(F(y))

    for x in [-0.004, -0.02, -0.045, -0.07, -0.12]:
        grid = np.linspace(x, x - 0.5, 200_001)
        values = np.array([h(g, x) for g in grid[::50]])
        k = int(np.argmax(values <= 0))
        lo, hi = grid[::50][k], grid[::50][k - 1]
        fine = np.linspace(hi, lo, 51)
        kf = int(np.argmax(np.array([h(g, x) for g in fine]) <= 0))
        reference = brentq(h, fine[kf], fine[kf - 1], args=(x,), xtol=1e-15, rtol=1e-14)
        y, _, _ = step(x, crowd, params, 24.0)
        assert float(y) == pytest.approx(reference, abs=1e-12), x


@pytest.mark.parametrize("kind", ["linear", "sqrt"])
def test_cascade_is_the_limit_of_the_monotone_iteration(kind):
    """With re-levering classes and an own account (point masses): y ← x − I(F(y)) from y = x,
    with I written out here (c·F or c·√F)."""
    params = make_params(kind, crowd={"target_share": 0.3})
    crowd = init(params)
    m = float(params.maintenance)
    offsets = [float(liquidation_offset(lev, m, 1)) for lev in np.asarray(params.leverage)]
    own_level, own_mass = -0.06, 3e8
    masses = [
        (o, float(n) * math.exp(o)) for o, n in zip(offsets, np.asarray(crowd.target_long), strict=True)
    ]
    F = numpy_liquidated(crowd, params, [*masses, (own_level, own_mass)])
    if kind == "linear":
        c = 0.5 / V
        law = lambda q: c * q  # noqa: E731
    else:
        c = 1.0 * 0.035 / math.sqrt(V)
        law = lambda q: c * math.sqrt(q)  # noqa: E731
    for x in [-0.005, -0.02, -0.04, -0.09]:
        y = x
        for _ in range(100_000):
            nxt = x - law(F(y))
            if abs(nxt - y) < 1e-16:
                break
            y = nxt
        got, info, _ = step(x, crowd, params, 24.0, OwnAccount(jnp.asarray(own_level), jnp.asarray(own_mass)))
        assert float(got) == pytest.approx(nxt, abs=1e-13), x
        assert bool(info.own_liquidated) == (nxt <= own_level)


def test_rises_mirror_falls_with_the_shorts():
    """Shorts whose levels are the longs' reflected through the start price: the mirrored move."""
    params = make_params(crowd={"target_share": 0.0})
    longs = init(params)
    down = longs._replace(short_notional=jnp.zeros_like(longs.short_notional))
    up = longs._replace(
        long_notional=jnp.zeros_like(longs.long_notional), short_notional=longs.long_notional[::-1]
    )
    for x in [-0.01, -0.05, -0.2]:
        y_down, i_down, _ = step(x, down, params, 24.0)
        y_up, i_up, _ = step(-x, up, params, 24.0)
        assert float(y_down) < x
        assert float(y_up) == pytest.approx(-float(y_down), rel=1e-12)
        assert float(i_up.short_liquidated) == pytest.approx(float(i_down.long_liquidated), rel=1e-12)


# --- identities and monotonicity -----------------------------------------------------------------

ZERO_IMPACT = [
    ("linear", {"permanent": 0.0, "temporary": 0.0}, {}),
    ("sqrt", {"coefficient": 0.0, "temporary_fraction": 0.5}, {}),
    ("linear", {"permanent": 0.8, "temporary": 0.3}, {"long_oi": 0.0, "short_oi": 0.0}),
    ("sqrt", {"coefficient": 2.0}, {"long_oi": 0.0, "short_oi": 0.0}),
]


@pytest.mark.parametrize(("kind", "impact", "crowd"), ZERO_IMPACT)
def test_no_impact_or_no_crowd_leaves_the_move_bit_for_bit(kind, impact, crowd):
    """Over paths of eight steps with re-levering and refill; without impact even an own account
    liquidated along the way changes nothing (with impact it would: it is flow)."""
    params = make_params(kind, impact=impact, crowd={"target_share": 0.4, "refill_days": 0.5, **crowd})
    rng = np.random.default_rng(0)
    size = jnp.asarray(0.0 if crowd else 1e9)
    hit = False
    for xs in [
        np.array([0.0, -0.0, 0.6, -0.6, 1e-300, -1e-300, 0.03, -0.05]),
        *rng.normal(0.0, 0.08, (3, 8)),
    ]:
        state = init(params)
        for x in xs:
            y, info, state = step(x, state, params, 8.0, OwnAccount(state.log_price - 0.02, size))
            assert np.array_equal(np.asarray(y), x) and np.signbit(y) == np.signbit(x), (x, y)
            hit |= bool(info.own_liquidated)
    assert hit == (float(size) > 0)


def test_multiplier_grows_with_leverage_and_open_interest():
    """The default mix with every leverage scaled by k (crowd leverage up), then open interest up."""
    x = -0.03
    by_leverage, crowd_lev = [], []
    for k in (1.0, 1.5, 2.0, 3.0, 4.0):
        params = make_params(crowd={"leverage": {2 * k: 0.3, 5 * k: 0.4, 10 * k: 0.2, 25 * k: 0.1}})
        crowd = init(params)
        by_leverage.append(float(step(x, crowd, params)[1].multiplier))
        crowd_lev.append(float(step(0.0, crowd, params)[1].crowd_leverage))  # at the start price
    assert all(b > a for a, b in zip(crowd_lev, crowd_lev[1:], strict=False)), crowd_lev
    assert all(b > a for a, b in zip(by_leverage, by_leverage[1:], strict=False)), by_leverage
    by_oi = []
    for oi in (0.0, 1e9, 2e9, 4e9, 8e9, 16e9):
        params = make_params(crowd={"long_oi": oi})
        by_oi.append(float(step(x, init(params), params)[1].multiplier))
    assert all(b > a for a, b in zip(by_oi, by_oi[1:], strict=False)), by_oi
    assert by_oi[0] == 1.0


# --- the crowd -----------------------------------------------------------------------------------


def test_starting_crowd_holds_its_open_interest_and_leverage():
    """Read through a step's report at x = 0, which moves nothing (no impact, no flow)."""
    mix = {2: 0.0, 5: 0.5, 10: 0.5, 25: 0.0}
    params = make_params(crowd={"leverage": mix, "target_share": 1.0})
    y, info, _ = step(0.0, init(params), params)
    assert float(y) == 0.0
    assert float(info.long_open_interest) == pytest.approx(8e9, rel=1e-12)
    assert float(info.short_open_interest) == pytest.approx(6e9, rel=1e-12)
    assert float(info.crowd_leverage) == pytest.approx(7.5, rel=1e-12)
    held = make_params(crowd={"entry_spread": 0.08})
    _, info, _ = step(0.0, init(held), held)
    # Notional from the per-bin uniform level density, against OI at the start price: within
    # the within-bin error of e^{−ℓ} (bin width h = 0.005: relative error below h²/8).
    assert float(info.long_open_interest) == pytest.approx(8e9, rel=1e-5)
    assert float(info.short_open_interest) == pytest.approx(6e9, rel=1e-5)


def test_liquidated_notional_leaves_the_crowd_and_refills():
    params = make_params(crowd={"refill_days": 1.0, "target_share": 0.25})
    crowd = init(params)
    m = float(params.maintenance)
    at_level = np.exp([float(liquidation_offset(lev, m, 1)) for lev in np.asarray(params.leverage)])

    def held(c):
        return float(np.sum(np.asarray(c.long_notional)) + np.sum(np.asarray(c.target_long) * at_level))

    y, info, after = step(-0.06, crowd, params)
    assert held(crowd) - held(after) == pytest.approx(float(info.long_liquidated), rel=1e-12)
    assert float(after.refill_long) == pytest.approx(float(info.long_liquidated), rel=1e-15)
    # No long level is left above the new price.
    edges = np.asarray(grid_edges(params))
    assert np.all(np.asarray(after.long_notional)[edges[:-1] >= float(after.log_price)] == 0.0)
    # The next step re-enters 1 − e^{−1} of the queue at the new price.
    _, info2, again = step(0.0, after, params)
    assert float(info2.refilled) == pytest.approx(float(after.refill_long) * -math.expm1(-1.0), rel=1e-12)
    assert float(again.target_price) == pytest.approx(float(after.log_price), abs=1e-15)


def test_steps_batch_over_paths_with_vmap():
    params = make_params(crowd={"target_share": 0.2, "refill_days": 2.0})
    xs = jnp.asarray([-0.07, -0.01, 0.0, 0.02, 0.09])
    crowd = init(params)
    batched = jax.jit(jax.vmap(step, in_axes=(0, None, None)))(xs, crowd, params)[0]
    single = [float(step(x, crowd, params)[0]) for x in xs]
    np.testing.assert_allclose(np.asarray(batched), single, rtol=1e-14, atol=1e-16)


# --- gradients -----------------------------------------------------------------------------------


def _perturbed(params: CascadeParams, extra: CrowdState, x, dt_hours):
    """One step from the starting crowd plus ``extra`` (a state displaced in every field), reduced
    to one number that weighs the move, the reported liquidations and every field of the new state
    (fixed pseudo-random weights on the bins, so that an error in any bin shows)."""
    crowd = jax.tree.map(jnp.add, init_crowd(params), extra)
    own = OwnAccount(crowd.log_price - 0.02, jnp.asarray(2e8, params.dtype))
    y, info, new = cascade_step(x, crowd, params, dt_hours=dt_hours, own=own)
    w = jnp.sin(jnp.arange(params.bins, dtype=params.dtype))
    return (
        y
        + (info.long_liquidated + info.short_liquidated + new.refill_long + 0.5 * new.refill_short) / 1e10
        + (w @ new.long_notional + w[::-1] @ new.short_notional) / 1e10
        + (jnp.sum(new.target_long) + 2.0 * jnp.sum(new.target_short)) / 1e10
        + 3.0 * new.displacement
        + 0.1 * new.log_price
    )


one_step = jax.jit(jax.value_and_grad(_perturbed, argnums=(0, 1, 2)))


def _displacement(params: CascadeParams, seed: int) -> CrowdState:
    """Price 3% above the start (the re-levering classes off target), a displaced temporary impact,
    a refill queue, and extra notional on both sides of the grid."""
    rng = np.random.default_rng(seed)
    edges = np.linspace(-params.half_width, params.half_width, params.bins + 1)
    a, b = edges[:-1], edges[1:]
    p, tiny = 0.03, 1e-6  # masks away from the price's bin edge, alike in float32 and float64
    n = len(a)
    dtype = params.dtype
    return CrowdState(
        log_price=jnp.asarray(p, dtype),
        long_notional=jnp.asarray(np.where((b <= p - tiny) & (a > -0.3), rng.uniform(0, 4e7, n), 0.0), dtype),
        short_notional=jnp.asarray(np.where((a >= p + tiny) & (b < 0.3), rng.uniform(0, 4e7, n), 0.0), dtype),
        target_long=jnp.asarray(rng.uniform(0, 2e8, 4), dtype),
        target_short=jnp.asarray(rng.uniform(0, 2e8, 4), dtype),
        target_price=jnp.asarray(0.0, dtype),
        displacement=jnp.asarray(-0.01, dtype),
        refill_long=jnp.asarray(1e9, dtype),
        refill_short=jnp.asarray(5e8, dtype),
    )


def _replaced(tree, name: str, value: np.ndarray):
    return eqx.tree_at(lambda t: getattr(t, name), tree, jnp.asarray(value, getattr(tree, name).dtype))


def _directional(f, tree, name: str, grads, rng) -> tuple[float, float]:
    """(gradient · v, central difference along v) for a field: per element of small fields, along
    a random direction for the bins."""
    value = np.asarray(getattr(tree, name), float)
    g = np.asarray(getattr(grads, name), float)
    v = rng.normal(size=value.shape) * np.maximum(np.abs(value), 1e-2 if value.ndim == 0 else 1e6)
    h = 1e-6
    fd = (f(_replaced(tree, name, value + h * v)) - f(_replaced(tree, name, value - h * v))) / (2 * h)
    return float(np.sum(g * v)), fd


@pytest.mark.parametrize("kind", ["linear", "sqrt"])
@pytest.mark.parametrize("x", [-0.04, 0.05])
def test_gradients_match_central_differences(kind, x):
    """d/d(every parameter, every state field, x) of one step from a displaced state: re-levering,
    refill, temporary impact, an own account and the cascade (the implicit-function gradient)."""
    impact = {"temporary": 0.2, "decay_hours": 6.0} if kind == "linear" else {"temporary_fraction": 0.3}
    params = make_params(kind, impact=impact, crowd={"target_share": 0.2, "refill_days": 1.0})
    extra = _displacement(params, 1)
    _, (g_params, g_extra, g_x) = one_step(params, extra, x, 12.0)

    def value(p=params, e=extra, x=x) -> float:
        return float(one_step(p, e, x, 12.0)[0])

    h = 1e-7
    assert float(g_x) == pytest.approx((value(x=x + h) - value(x=x - h)) / (2 * h), rel=1e-6)
    rng = np.random.default_rng(0)
    checked = 0
    for name in [f for f in PARAM_FIELDS if np.any(np.asarray(getattr(params, f)) != 0)]:
        for i in np.ndindex(np.shape(getattr(params, name))):
            value_i = np.asarray(getattr(params, name), float)
            e = np.zeros_like(value_i)
            e[i] = 1e-5 * max(abs(value_i[i]), 1e-2)
            fd = (
                value(p=_replaced(params, name, value_i + e)) - value(p=_replaced(params, name, value_i - e))
            ) / (2 * e[i])
            g = float(np.asarray(getattr(g_params, name))[i])
            scale = max(abs(value_i[i]), 1e-2)  # elasticities: parameters span 1e-3 to 1e10
            assert g * scale == pytest.approx(fd * scale, rel=1e-5, abs=1e-9), (name, i)
            checked += 1
    for name in CrowdState._fields:
        g, fd = _directional(lambda e: value(e=e), extra, name, g_extra, rng)
        assert np.isfinite(g) and g == pytest.approx(fd, rel=1e-5, abs=1e-10), name
    assert checked >= 15


PARAM_FIELDS = [
    "long_oi",
    "short_oi",
    "leverage",
    "shares",
    "maintenance",
    "entry_spread",
    "target_share",
    "refill_hours",
    "daily_volume",
    "permanent",
    "temporary",
    "coefficient",
    "daily_vol",
    "temporary_fraction",
    "decay_hours",
]


@pytest.mark.parametrize("kind", ["linear", "sqrt"])
def test_float32_gradients_are_finite_and_close_to_float64(kind):
    crowd = {"target_share": 0.2, "refill_days": 1.0}
    p64, p32 = make_params(kind, crowd=crowd), make_params(kind, dtype=jnp.float32, crowd=crowd)
    v64, (g64, e64, x64) = one_step(p64, _displacement(p64, 1), -0.04, 12.0)
    v32, (g32, e32, x32) = one_step(p32, _displacement(p32, 1), jnp.float32(-0.04), jnp.float32(12.0))
    assert v32.dtype == jnp.float32 and float(v32) == pytest.approx(float(v64), rel=1e-4)
    assert x32.dtype == jnp.float32 and float(x32) == pytest.approx(float(x64), rel=1e-3)
    for tree32, tree64, names in [(g32, g64, PARAM_FIELDS), (e32, e64, CrowdState._fields)]:
        for name in names:
            a, b = np.asarray(getattr(tree32, name)), np.asarray(getattr(tree64, name))
            assert a.dtype == np.float32 and np.all(np.isfinite(a)), name
            np.testing.assert_allclose(a, b, rtol=2e-2, atol=1e-3 * np.max(np.abs(b)) + 1e-30, err_msg=name)


# --- configuration -------------------------------------------------------------------------------

GOOD = {"crowd": {"long_oi": 1e9, "short_oi": 1e9}, "impact": {"permanent": 0.3, "daily_volume": 1e10}}


def _with(path: str, value):
    cfg = {"crowd": dict(GOOD["crowd"]), "impact": dict(GOOD["impact"])}
    section, _, key = path.partition(".")
    if key:
        cfg[section][key] = value
    else:
        cfg[section] = value
    return cfg


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("crowd.long_oi", -1.0, "cascade.crowd.long_oi"),
        ("crowd.short_oi", float("nan"), "cascade.crowd.short_oi"),
        ("crowd.leverage", {2: 0.5, 5: 0.4}, "cascade.crowd.leverage"),
        ("crowd.leverage", {1: 0.5, 5: 0.5}, "cascade.crowd.leverage"),
        ("crowd.leverage", {2: 1.2, 5: -0.2}, "cascade.crowd.leverage"),
        ("crowd.leverage", {}, "cascade.crowd.leverage"),
        ("crowd.maintenance", 1.0, "cascade.crowd.maintenance"),
        ("crowd.maintenance", 0.05, "cascade.crowd.maintenance"),  # ≥ 1/25: liquidated at entry
        ("crowd.entry_spread", -0.01, "cascade.crowd.entry_spread"),
        ("crowd.target_share", 1.5, "cascade.crowd.target_share"),
        ("crowd.refill_days", 0.0, "cascade.crowd.refill_days"),
        ("crowd.depth", 1.0, "cascade.crowd.depth"),
        ("impact.permanent", -0.1, "cascade.impact.permanent"),
        ("impact.temporary", float("inf"), "cascade.impact.temporary"),
        ("impact.daily_volume", 0.0, "cascade.impact.daily_volume"),
        ("impact.decay_hours", 0.0, "cascade.impact.decay_hours"),
        ("impact.kind", "cubic", "cascade.impact.kind"),
        ("impact.coefficient", 0.8, "cascade.impact.coefficient"),  # a sqrt key under kind linear
        ("bins", 1, "cascade.bins"),
        ("range", 0.5, "cascade.range"),  # the 2x longs' levels lie 0.74 below the start
    ],
)
def test_bad_input_names_the_field(path, value, field):
    cfg = {**GOOD, path: value} if "." not in path else _with(path, value)
    with pytest.raises(ConfigError) as err:
        parse_cascade(cfg)
    assert err.value.field == field, str(err.value)


def test_sqrt_keys_and_negative_coefficient():
    with pytest.raises(ConfigError, match=r"^cascade\.impact\.coefficient"):
        parse_cascade({**GOOD, "impact": {"kind": "sqrt", "coefficient": -1.0, "daily_volume": 1e10}})
    cfg = parse_cascade({**GOOD, "impact": {"kind": "sqrt", "coefficient": 0.8, "daily_volume": 1e10}})
    assert cfg.impact.coefficient == 0.8 and cfg.crowd.leverage == {2.0: 0.3, 5.0: 0.4, 10.0: 0.2, 25.0: 0.1}


def test_an_account_past_its_liquidation_price_closes_instead_of_re_levering():
    """A re-levering class whose move since its last trade passed its liquidation price has no
    equity: its new notional is 0 and its trade closes what it held (never a negative position)."""
    for side, move in ((1, -0.2), (-1, 0.2)):  # 10x: a 20% move wipes out either side
        buy, new = relever_flow(1e9, 10.0, move, side)
        assert float(new) == 0.0 and float(buy) == pytest.approx(-side * 1e9 * math.exp(move), rel=1e-12)
    buy, new = relever_flow(1e9, 10.0, -0.05, 1)  # within its margin: the usual trade
    assert float(buy) == pytest.approx(9 * 1e9 * math.expm1(-0.05), rel=1e-12) and float(new) > 0
