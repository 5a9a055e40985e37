"""levopt.options.margin: Deribit standard margin and scenario (portfolio) margin.

References, each independent of the code under test: the worked figures Deribit publishes (the
"Linear Perpetual" margin table; the example response of its API method ``private/pme/simulate``,
reproduced number for number), an independent implementation's test of the option rule, a second
Black-76 written here with scipy.stats.norm for the scenario grid, put–call parity (a hedged book
loses nothing in any scenario), and monotonicity and continuity of the documented formulas.
"""

from __future__ import annotations

from datetime import datetime, timezone

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from levopt.errors import ConfigError
from levopt.options import (
    DERIBIT_SCENARIOS,
    DERIBIT_SOL_FUTURES,
    ScenarioRules,
    black76,
    future_margin,
    inverse_greeks,
    inverse_price,
    scenario_margin,
    shocked_vols,
    standard_book_margin,
    standard_option_margin,
)

SATOSHI = 1e-8
CENT = 0.005
# A zero futures position: books with and without it share one compiled kernel (same shapes).
NO_FUTURE = {"future_size": [0.0], "future_expiry": [0.0]}


def scipy_black76(F, K, sigma, T, kind):
    """Black-76 at zero rates with scipy.stats.norm, intrinsic value at zero volatility."""
    w = 1.0 if kind == "call" else -1.0
    F, K, sigma = np.broadcast_arrays(np.asarray(F, float), np.asarray(K, float), np.asarray(sigma, float))
    s = sigma * np.sqrt(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(F / K) + 0.5 * s * s) / s
        d2 = d1 - s
        smooth = w * (F * norm.cdf(w * d1) - K * norm.cdf(w * d2))
    return np.where(s > 0, smooth, np.maximum(w * (F - K), 0.0))


def hand_vols(sigma, T):
    """Deribit's three volatility scenarios (down, same, up), from the rule in the module docstring."""
    days = T * 365.0
    power = 0.3 if days < 30 else 0.13
    f = (30.0 / max(days, 1.0)) ** power
    return [max(sigma * (1 - 0.25 * f), 0.0), sigma, max(sigma * (1 + 0.5 * f), 0.5)]


# --- Deribit's published worked examples -----------------------------------------------------------


def test_deribit_linear_perpetual_margin_table():
    """Deribit support, "Linear Perpetual" (support.deribit.com/hc/en-us/articles/25944738177565,
    consulted 2026-12-01), "Standard Margin IM & MM examples": BTC_USDC at 100,000 and SOL_USDC at 200.
    The coin amounts are the margin in the underlying, the USDC amounts the same at the price; the
    BTC schedule also appears, with the same 25 and 350 BTC figures, in Deribit's older futures page
    (legacy.deribit.com/pages/docs/futures)."""
    btc = 100_000.0
    # size (BTC): (IM in BTC, IM in USDC)
    for size, im_coin, im_usd in [(0.0, 0.0, 0.0), (25.0, 0.53125, 53_125.0), (350.0, 13.125, 1_312_500.0)]:
        for signed in (size, -size):  # a short needs the same margin as a long
            assert float(future_margin(signed, btc, inverse=True).initial) == pytest.approx(
                im_coin, abs=SATOSHI
            )
            assert float(future_margin(signed, btc, inverse=False).initial) == pytest.approx(im_usd, abs=CENT)
    assert float(future_margin(25.0, btc, inverse=True).maintenance) == pytest.approx(0.28125, abs=SATOSHI)
    assert float(future_margin(25.0, btc, inverse=False).maintenance) == pytest.approx(28_125.0, abs=CENT)

    sol = 200.0
    for size, im_coin, im_usd in [(25.0, 1.003125, 200.625), (6000.0, 420.0, 84_000.0)]:
        assert float(
            future_margin(size, sol, inverse=True, rules=DERIBIT_SOL_FUTURES).initial
        ) == pytest.approx(im_coin, abs=SATOSHI)
        assert float(
            future_margin(size, sol, inverse=False, rules=DERIBIT_SOL_FUTURES).initial
        ) == pytest.approx(im_usd, abs=CENT)
    mm = future_margin(25.0, sol, inverse=False, rules=DERIBIT_SOL_FUTURES).maintenance
    assert float(mm) == pytest.approx(100.625, abs=CENT)


# The example response of Deribit's API method private/pme/simulate
# (docs.deribit.com/api-reference/account-management/private-simulate), BTC book, timestamp
# 1718619740501 ms (2024-06-17 10:22:20 UTC): a perpetual and the 28 June 2024 future.
PME_PERPETUAL = 0.314538364
PME_FUTURE = -0.001187534
PME_PERPETUAL_VECTOR = [
    -0.05991206933333334,
    -0.04289159509090909,
    -0.027351162086956524,
    -0.013105765166666668,
    0.0,
    0.012097629384615385,
    0.023299138074074074,
    0.033700538999999995,
    0.043384601931034494,
]
PME_FUTURE_VECTOR = [
    0.0002261969523809524,
    0.00016193645454545456,
    0.00010326382608695652,
    0.00004948058333333334,
    0.0,
    -0.00004567438461538462,
    -0.00008796548148148148,
    -0.0001272357857142857,
    -0.00016379779310344832,
]
PME_AGGREGATED = [
    -0.05968587238095239,
    -0.04272965863636364,
    -0.02724789826086957,
    -0.013056284583333334,
    0.0,
    0.0,
    0.0,
    0.0,
    0.0,
]


def _pme_future_expiry() -> float:
    now = datetime.fromtimestamp(1718619740.501, tz=timezone.utc)
    expiry = datetime(2024, 6, 28, 8, tzinfo=timezone.utc)  # Deribit futures expire at 08:00 UTC
    return (expiry - now).total_seconds() / (365.0 * 86400.0)


def _futures_only(size, expiry):
    return scenario_margin(
        65_910.57, [], [], [], [], (), inverse=True, future_size=size, future_expiry=expiry
    )


def test_deribit_pme_simulate_risk_vectors():
    """Each instrument's "initial_risk_vectors" entry of Deribit's private/pme/simulate example: 27
    values, 9 price buckets from -16% to +16% times 3 volatility scenarios (equal for futures)."""
    for size, expiry, vector in [
        (PME_PERPETUAL, 0.0, PME_PERPETUAL_VECTOR),
        (PME_FUTURE, _pme_future_expiry(), PME_FUTURE_VECTOR),
    ]:
        # (a second, empty position keeps the shapes of the two-instrument book below)
        pnl = np.asarray(_futures_only([size, 0.0], [expiry, 0.0]).pnl)
        assert pnl.shape == (9, 3)
        np.testing.assert_allclose(pnl.ravel(), np.repeat(vector, 3), rtol=1e-12, atol=1e-15)


def test_deribit_pme_simulate_margins():
    """The example's "aggregated_risk_vectors" (the book's P&L with gains counted as 0), its
    worst case (0.05968587238095239, bucket 1 on the left: the -16% move), roll shock
    (0.00315725898), risk-matrix margin (0.06284313098, the initial margin of the positions) and
    maintenance margin (0.050274504784 = 0.8 × risk-matrix margin), each to the satoshi."""
    m = _futures_only([PME_PERPETUAL, PME_FUTURE], [0.0, _pme_future_expiry()])
    np.testing.assert_allclose(
        np.minimum(np.asarray(m.pnl), 0.0).ravel(), np.repeat(PME_AGGREGATED, 3), atol=1e-15
    )
    assert float(m.worst_loss) == pytest.approx(0.05968587238095239, abs=1e-15)
    assert DERIBIT_SCENARIOS.price_moves()[int(m.worst_scenario) // 3] == pytest.approx(-0.16)
    assert float(m.roll_shock) == pytest.approx(0.00315725898, abs=1e-12)
    assert float(m.initial) == pytest.approx(0.06284313098, abs=SATOSHI)
    assert float(m.maintenance) == pytest.approx(0.050274504784, abs=SATOSHI)


def test_deribit_price_grid_has_nine_buckets():
    """Deribit support, "Portfolio Margin": +/-16% in 9 evenly spaced buckets including 0."""
    np.testing.assert_allclose(DERIBIT_SCENARIOS.price_moves(), np.arange(-16, 17, 4) / 100.0, atol=1e-15)


# --- standard option margin ------------------------------------------------------------------------


def test_standard_option_margin_independent_implementation():
    """The figures of an independent open-source implementation's test of Deribit's rule
    (DeribitOptionMarginModelTest, a Lean-based C# engine): BTC at 10,000, strike 9,000, mark
    0.025 BTC. Short call: IM (0.15 + 0.025) BTC = 1,750 USD, MM (0.075 + 0.025) = 1,000 USD; short
    put (1,000 out of the money, so max(0.15 - 0.1, 0.1) = 0.1): IM 1,250 USD, MM 1,000 USD; long: 0."""
    S, K, mark = 10_000.0, 9_000.0, 0.025
    cases = {("call", -1.0): (1_750.0, 1_000.0), ("put", -1.0): (1_250.0, 1_000.0)}
    cases |= {("call", 1.0): (0.0, 0.0), ("put", 1.0): (0.0, 0.0)}
    for (kind, q), (im_usd, mm_usd) in cases.items():
        coin = standard_option_margin(S, K, mark, q, kind, inverse=True)
        assert float(coin.initial) * S == pytest.approx(im_usd, abs=CENT)
        assert float(coin.maintenance) * S == pytest.approx(mm_usd, abs=CENT)
        usd = standard_option_margin(S, K, mark * S, q, kind, inverse=False)  # linear, mark in USD
        assert float(usd.initial) == pytest.approx(im_usd, abs=CENT)
        assert float(usd.maintenance) == pytest.approx(mm_usd, abs=CENT)


def test_standard_option_margin_formulas_by_hand():
    """The documented formulas, evaluated by hand for a short position of 3 options."""
    S = 60_000.0
    # Call 63,000 (OTM 3,000): IM = max(0.15 - 0.05, 0.1) + m = 0.1 + m; MM = 0.075 + m.
    m = standard_option_margin(S, 63_000.0, 0.02, -3.0, "call", inverse=True)
    assert float(m.initial) == pytest.approx(3 * (0.10 + 0.02), abs=1e-12)
    assert float(m.maintenance) == pytest.approx(3 * (0.075 + 0.02), abs=1e-12)
    # Call 61,200 (OTM 1,200): 0.15 - 0.02 = 0.13.
    m = standard_option_margin(S, 61_200.0, 0.03, -3.0, "call", inverse=True)
    assert float(m.initial) == pytest.approx(3 * (0.13 + 0.03), abs=1e-12)
    # Deep in-the-money inverse put (strike 250,000, mark 3.2 BTC): MM = max(0.075, 0.075 * 3.2)
    # + 3.2 = 3.44 exceeds 0.15 + 3.2 = 3.35, so the put's IM is its MM.
    m = standard_option_margin(S, 250_000.0, 3.2, -3.0, "put", inverse=True)
    assert float(m.maintenance) == pytest.approx(3 * 3.44, abs=1e-12)
    assert float(m.initial) == pytest.approx(3 * 3.44, abs=1e-12)
    # In the money, strike 70,000, mark 0.2: IM = 0.15 + 0.2, MM = 0.075 + 0.2.
    m = standard_option_margin(S, 70_000.0, 0.2, -3.0, "put", inverse=True)
    assert float(m.initial) == pytest.approx(3 * 0.35, abs=1e-12)
    assert float(m.maintenance) == pytest.approx(3 * 0.275, abs=1e-12)


def test_linear_form_is_inverse_form_at_the_underlying_price():
    rng = np.random.default_rng(0)
    n = 200
    S = rng.uniform(20_000, 100_000, n)
    K = S * np.exp(rng.uniform(-0.8, 0.8, n))
    mark_coin = rng.uniform(0.0, 1.5, n)
    q = rng.uniform(-5, 5, n)
    for kind in ("call", "put"):
        coin = standard_option_margin(S, K, mark_coin, q, kind, inverse=True)
        usd = standard_option_margin(S, K, mark_coin * S, q, kind, inverse=False)
        np.testing.assert_allclose(np.asarray(usd.initial), np.asarray(coin.initial) * S, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(usd.maintenance), np.asarray(coin.maintenance) * S, rtol=1e-12)
        assert np.all(np.asarray(coin.initial) >= np.asarray(coin.maintenance))


def test_long_options_need_no_margin_and_lose_at_most_their_premium():
    rng = np.random.default_rng(1)
    n = 64
    F = rng.uniform(20_000, 100_000, n)
    K = F * np.exp(rng.uniform(-0.5, 0.5, n))
    T = rng.uniform(1 / 365, 1.0, n)
    vol = rng.uniform(0.2, 1.5, n)
    q = rng.uniform(0.1, 3.0, n)
    kinds = ["call" if i % 2 else "put" for i in range(n)]
    is_call = np.array([k == "call" for k in kinds])
    for inverse in (True, False):
        price = inverse_price if inverse else black76
        mark = np.where(is_call, price(F, K, vol, T, "call"), price(F, K, vol, T, "put"))
        m = standard_option_margin(F, K, mark, q, kinds, inverse=inverse)
        assert np.all(np.asarray(m.initial) == 0.0) and np.all(np.asarray(m.maintenance) == 0.0)
        # Scenario margin: a long-only book can lose no more than its value in any scenario
        # (books of two legs on one forward; the shapes of other tests' books, to share kernels).
        for b in range(0, 16, 2):
            legs = slice(b, b + 2)
            f = F[b]
            args = (f, K[legs], vol[legs], T[legs])
            value = np.where(is_call[legs], price(*args, "call"), price(*args, "put"))
            s = scenario_margin(
                f, K[legs], T[legs], vol[legs], q[legs], kinds[legs], inverse=inverse, **NO_FUTURE
            )
            assert float(s.worst_loss) <= float(np.sum(q[legs] * value)) * (1 + 1e-12)


def test_short_call_margin_falls_as_the_strike_moves_out_of_the_money_until_the_floor():
    """IM − mark = max(0.15 − OTM/S, 0.10): continuous, non-increasing in the strike, and flat at
    0.10 from 5% out of the money on; the same mirrored for puts. With the mark given by the
    model (falling with the strike) the requirement is still non-increasing."""
    S = 50_000.0
    strikes = np.linspace(40_000.0, 70_000.0, 3001)
    step = strikes[1] - strikes[0]
    call = np.asarray(standard_option_margin(S, strikes, 0.0, -1.0, "call", inverse=True).initial)
    assert np.all(np.diff(call) <= 0.0)
    assert np.max(np.abs(np.diff(call))) <= step / S * (1 + 1e-9)  # Lipschitz: no jump
    np.testing.assert_allclose(call[strikes >= 1.05 * S], 0.10, atol=1e-15)
    np.testing.assert_allclose(call[strikes <= S], 0.15, atol=1e-15)
    put = np.asarray(standard_option_margin(S, strikes, 0.0, -1.0, "put", inverse=True).initial)
    assert np.all(np.diff(put) >= 0.0)
    np.testing.assert_allclose(put[strikes <= 0.95 * S], 0.10, atol=1e-15)
    mark = np.asarray(inverse_price(S, strikes, 0.6, 30 / 365, "call"))
    with_mark = np.asarray(standard_option_margin(S, strikes, mark, -1.0, "call", inverse=True).initial)
    assert np.all(np.diff(with_mark) <= 1e-15)


def test_book_margin_is_the_sum_of_positions():
    S = 60_000.0
    K = np.array([55_000.0, 65_000.0, 60_000.0])
    mark = np.array([0.09, 0.02, 0.05])
    q = np.array([-2.0, -1.0, 3.0])
    kinds = ("put", "call", "call")
    book = standard_book_margin(S, K, mark, q, kinds, inverse=True, future_size=[10.0, -4.0])
    legs = standard_option_margin(S, K, mark, q, kinds, inverse=True)
    fut = future_margin(np.array([10.0, -4.0]), S, inverse=True)
    assert float(book.initial) == pytest.approx(float(legs.initial.sum() + fut.initial.sum()), rel=1e-14)
    assert float(book.maintenance) == pytest.approx(
        float(legs.maintenance.sum() + fut.maintenance.sum()), rel=1e-14
    )


# --- scenario margin -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inverse", "T", "sigma"),
    [(True, 10 / 365, 0.6), (False, 10 / 365, 0.6), (True, 0.5, 0.55), (False, 90 / 365, 0.2)],
)
def test_scenario_margin_of_a_short_call_by_hand(inverse, T, sigma):
    """A short call repriced on the 9 × 3 grid with the scipy Black-76 above and the volatility
    scenarios computed by hand (short and long expiries; at sigma = 0.2 the up shock hits the 0.5
    floor). Roll shock by hand: |q (Δ − c)| coins or |q F Δ| USD times max(0.01, e^{0.075 T} − 1)."""
    F, K, q = 64_000.0, 70_000.0, -2.5
    moves = np.linspace(-0.16, 0.16, 9)
    vols = hand_vols(sigma, T)

    def value(f, s):
        v = scipy_black76(f, K, s, T, "call")
        return v / f if inverse else v

    expected = np.array([[q * (value(F * (1 + u), s) - value(F, sigma)) for s in vols] for u in moves])
    m = scenario_margin(F, K, T, sigma, q, "call", inverse=inverse)
    np.testing.assert_allclose(np.asarray(m.pnl), expected, rtol=1e-10, atol=1e-12 * (1 if inverse else F))
    d1 = (np.log(F / K) + 0.5 * sigma**2 * T) / (sigma * np.sqrt(T))
    delta = norm.cdf(d1)
    sens = q * (delta - value(F, sigma)) if inverse else q * F * delta
    roll = abs(sens) * max(0.01, np.expm1(0.075 * T))
    assert float(m.roll_shock) == pytest.approx(roll, rel=1e-10)
    assert float(m.initial) == pytest.approx(max(-expected.min(), 0.0) + roll, rel=1e-10)
    assert float(m.maintenance) == pytest.approx(0.8 * float(m.initial), rel=1e-14)
    assert abs(float(m.pnl[4, 1])) <= 1e-15 * (1 if inverse else F)  # no move, same volatility


def test_shocked_vols_at_thirty_days():
    """At 30 days (30/d)^p = 1 whatever the power: down 0.75 σ, up 1.5 σ (above the 0.5 floor)."""
    v = np.asarray(shocked_vols(0.8, 30 / 365))
    np.testing.assert_allclose(v, [0.6, 0.8, 1.2], rtol=1e-12)


def test_hedged_books_need_no_scenario_margin():
    """Same-strike short and long calls cancel; so does a long call, a short put and a short
    future of the same expiry (put–call parity: linear, the future of 1 coin; inverse, of K/F
    coins, since the coin value of the pair is 1 − K/F). Both P&L grid and roll shock vanish."""
    F, K, T, sigma = 64_000.0, 60_000.0, 45 / 365, 0.7
    for inverse in (True, False):
        # (a zero future gives the shapes of the second book: one compiled kernel serves both)
        m = scenario_margin(
            F, [K, K], T, sigma, [-1.5, 1.5], "call", inverse=inverse, future_size=[0.0], future_expiry=[T]
        )
        scale = 1.0 if inverse else F
        assert float(m.initial) <= 1e-15 * scale and np.all(np.abs(np.asarray(m.pnl)) <= 1e-15 * scale)
    for inverse, hedge in ((False, -1.0), (True, -K / F)):
        m = scenario_margin(
            F,
            [K, K],
            T,
            sigma,
            [1.0, -1.0],
            ("call", "put"),
            inverse=inverse,
            future_size=[hedge],
            future_expiry=[T],
        )
        scale = 1.0 if inverse else F
        np.testing.assert_allclose(np.asarray(m.pnl), 0.0, atol=1e-12 * scale)
        assert float(m.roll_shock) == pytest.approx(0.0, abs=1e-12 * scale)
        assert float(m.initial) == pytest.approx(0.0, abs=2e-12 * scale)


def test_scenario_margin_is_at_most_the_sum_of_the_legs():
    """Netting can only help: the worst loss of a book is at most the sum of its legs' worst losses."""
    rng = np.random.default_rng(3)
    n = 8
    F = 64_000.0
    K = F * np.exp(rng.uniform(-0.3, 0.3, n))
    T = rng.uniform(2 / 365, 0.6, n)
    vol = rng.uniform(0.3, 1.0, n)
    q = rng.uniform(-2, 2, n)
    kinds = tuple("call" if x > 0.5 else "put" for x in rng.uniform(size=n))
    book = scenario_margin(F, K, T, vol, q, kinds, inverse=True)
    legs = sum(
        float(scenario_margin(F, K[i], T[i], vol[i], q[i], kinds[i], inverse=True).worst_loss)
        for i in range(n)
    )
    assert float(book.worst_loss) <= legs + 1e-12


def test_gradients_are_finite():
    F, K, T, vol = 64_000.0, np.array([60_000.0, 70_000.0]), np.array([0.05, 0.3]), np.array([0.6, 0.5])
    q = jnp.array([-1.0, 0.5])
    kinds = ("put", "call")
    for inverse in (True, False):
        mark = np.array([0.05, 0.02]) * (1.0 if inverse else F)

        def scenario(f, x, inv=inverse):
            return scenario_margin(f, K, T, vol, x, kinds, inverse=inv, **NO_FUTURE).initial

        def standard(f, x, inv=inverse, mk=mark):
            return standard_option_margin(f, K, mk, x, kinds, inverse=inv).initial.sum()

        for margin in (scenario, standard):
            grad_f, grad_q = jax.jit(jax.grad(margin, argnums=(0, 1)))(F, q)
            assert np.isfinite(float(grad_f)) and np.all(np.isfinite(np.asarray(grad_q)))
            assert float(jnp.abs(grad_q).sum()) > 0.0
            if margin is scenario and inverse:  # the short leg's derivative against a central difference
                h = 1e-6
                up, down = (float(scenario(F, q.at[0].add(d))) for d in (h, -h))
                assert float(grad_q[0]) == pytest.approx((up - down) / (2 * h), rel=1e-6)


def test_jit_vmap_and_float32():
    K, T, vol, q = (
        np.array([60_000.0, 70_000.0]),
        np.array([0.05, 0.3]),
        np.array([0.6, 0.5]),
        np.array([-1.0, 0.5]),
    )
    kinds = ("put", "call")
    forwards = jnp.linspace(50_000.0, 80_000.0, 7)
    batched = jax.jit(jax.vmap(lambda f: scenario_margin(f, K, T, vol, q, kinds, inverse=True).initial))(
        forwards
    )
    loop = [
        float(scenario_margin(float(f), K, T, vol, q, kinds, inverse=True, **NO_FUTURE).initial)
        for f in forwards
    ]
    np.testing.assert_allclose(np.asarray(batched), loop, rtol=1e-12)

    f32 = [
        np.float32(64_000.0),
        K.astype(np.float32),
        T.astype(np.float32),
        vol.astype(np.float32),
        q.astype(np.float32),
    ]
    m32 = scenario_margin(*f32, kinds, inverse=True)
    m64 = scenario_margin(64_000.0, K, T, vol, q, kinds, inverse=True)
    assert (
        m32.initial.dtype == jnp.float32 and m32.pnl.dtype == jnp.float32 and m64.initial.dtype == jnp.float64
    )
    assert float(m32.initial) == pytest.approx(float(m64.initial), rel=1e-4)
    s32 = standard_option_margin(
        np.float32(64_000.0),
        K.astype(np.float32),
        np.float32(0.03),
        q.astype(np.float32),
        kinds,
        inverse=True,
    )
    assert s32.initial.dtype == jnp.float32
    assert future_margin(np.float32(2.0), np.float32(64_000.0), inverse=True).initial.dtype == jnp.float32


def test_custom_grid():
    rules = ScenarioRules(price_range=0.3, price_steps=6, maintenance_fraction=0.5)
    m = scenario_margin(64_000.0, 64_000.0, 0.1, 0.6, -1.0, "put", inverse=False, rules=rules)
    assert m.pnl.shape == (13, 3)
    assert float(m.maintenance) == pytest.approx(0.5 * float(m.initial), rel=1e-14)


def test_inverse_sensitivity_is_the_coin_delta():
    """The roll shock's inverse sensitivity Δ − c is levopt's coin delta (inverse_greeks)."""
    F, K, T, sigma, q = 64_000.0, 66_000.0, 0.4, 0.6, -1.0
    m = scenario_margin(F, K, T, sigma, q, "call", inverse=True)
    coin_delta = float(inverse_greeks(F, K, sigma, T, "call").delta)
    assert float(m.roll_shock) == pytest.approx(abs(q * coin_delta) * np.expm1(0.075 * T), rel=1e-12)


# --- configuration errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"forward": 0.0}, "forward"),
        ({"forward": np.full((2, 2), 64_000.0)}, "forward"),  # a 2-d book: vmap over books instead
        ({"strike": -1.0}, "strike"),
        ({"expiry": 0.0}, "expiry"),
        ({"vol": float("nan")}, "vol"),
        ({"quantity": float("inf")}, "quantity"),
        ({"kind": "straddle"}, "kind"),
        ({"kind": ("call", "butterfly")}, "kind[1]"),
        ({"future_size": [1.0], "future_price": [0.0]}, "future_price"),
        ({"future_size": [1.0], "future_expiry": [-0.1]}, "future_expiry"),
    ],
)
def test_scenario_margin_bad_inputs_name_the_field(overrides, field):
    args = {"forward": 64_000.0, "strike": [60_000.0, 70_000.0], "expiry": 0.1, "vol": 0.6, "quantity": -1.0}
    args |= {"kind": "call"}
    args |= overrides
    kind = args.pop("kind")
    forward, strike, expiry, vol, quantity = (
        args.pop(k) for k in ("forward", "strike", "expiry", "vol", "quantity")
    )
    with pytest.raises(ConfigError) as err:
        scenario_margin(forward, strike, expiry, vol, quantity, kind, inverse=False, **args)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"forward": -5.0}, "forward"),
        ({"strike": 0.0}, "strike"),
        ({"mark": -0.01}, "mark"),
        ({"quantity": float("nan")}, "quantity"),
        ({"kind": "binary"}, "kind"),
    ],
)
def test_standard_margin_bad_inputs_name_the_field(overrides, field):
    args = {
        "forward": 64_000.0,
        "strike": 60_000.0,
        "mark": 0.02,
        "quantity": -1.0,
        "kind": "put",
    } | overrides
    with pytest.raises(ConfigError) as err:
        standard_option_margin(**args, inverse=True)
    assert err.value.field == field
    with pytest.raises(ConfigError) as err:
        future_margin(1.0, 0.0, inverse=False)
    assert err.value.field == "price"
