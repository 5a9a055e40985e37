"""levopt.options: Black-76 / Black–Scholes values, Greeks, elasticity and inverse (Deribit) options.

Each test names its independent reference: published worked examples (Hull; Haug), closed forms
written here with scipy.stats.norm, put–call parity, JAX autodiff of the price, central finite
differences, and Deribit's documented delta convention.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from levopt.errors import ConfigError
from levopt.options import (
    KINDS,
    Greeks,
    black76,
    black_scholes,
    check_option_inputs,
    elasticity,
    greeks,
    inverse_greeks,
    inverse_price,
)


@pytest.fixture(autouse=True)
def _x64():
    # Reference comparisons need float64; float32 inputs stay float32 inside this context.
    with jax.enable_x64(True):
        yield


def random_inputs(seed: int, n: int = 64):
    """Forwards, strikes (within ±60% log-moneyness), vols, expiries and discount factors."""
    rng = np.random.default_rng(seed)
    forward = rng.uniform(50.0, 150.0, n)
    strike = forward * np.exp(rng.uniform(-0.6, 0.6, n))
    vol = rng.uniform(0.1, 1.2, n)
    expiry = rng.uniform(0.02, 2.0, n)
    discount = np.exp(-rng.uniform(0.0, 0.1, n) * expiry)
    return forward, strike, vol, expiry, discount


def scipy_black76(F, K, sigma, T, D, kind):
    """Second, independent implementation: textbook Black-76 value and Greeks with scipy.stats.norm."""
    w = 1.0 if kind == "call" else -1.0
    s = sigma * np.sqrt(T)
    d1 = (np.log(F / K) + 0.5 * s * s) / s
    d2 = d1 - s
    price = D * w * (F * norm.cdf(w * d1) - K * norm.cdf(w * d2))
    delta = D * w * norm.cdf(w * d1)
    gamma = D * norm.pdf(d1) / (F * s)
    vega = D * F * norm.pdf(d1) * np.sqrt(T)
    theta = -D * F * norm.pdf(d1) * sigma / (2.0 * np.sqrt(T))
    vanna = -D * norm.pdf(d1) * d2 / sigma
    volga = vega * d1 * d2 / sigma
    return Greeks(price, delta, gamma, vega, theta, vanna, volga)


# --- published reference values -------------------------------------------------------------


def test_hull_black_scholes_example():
    # Reference: Hull, "Options, Futures, and Other Derivatives", Black–Scholes–Merton worked
    # example (Example 15.6 in the 9th edition): S = 42, K = 40, r = 10%, sigma = 20%, T = 0.5
    # gives c = 4.76, p = 0.81.
    call = black_scholes(42.0, 40.0, 0.2, 0.5, rate=0.1, kind="call")
    put = black_scholes(42.0, 40.0, 0.2, 0.5, rate=0.1, kind="put")
    assert round(float(call), 2) == 4.76
    assert round(float(put), 2) == 0.81


def test_hull_black76_futures_option_example():
    # Reference: Hull, "Options, Futures, and Other Derivatives", Black's model for futures
    # options: F = 20, K = 20, r = 9%, sigma = 25%, T = 4 months gives 1.12 for the put (and,
    # at the money, the same for the call).
    T = 4.0 / 12.0
    D = math.exp(-0.09 * T)
    for kind in KINDS:
        assert round(float(black76(20.0, 20.0, 0.25, T, kind, D)), 2) == 1.12


@pytest.mark.parametrize(
    ("spot", "strike", "expiry", "rate", "carry", "vol", "kind", "expected"),
    [
        # Haug (2007) ch. 1, Black–Scholes example: c = 2.1334.
        (60.0, 65.0, 0.25, 0.08, 0.08, 0.30, "call", 2.1334),
        # Haug (2007) ch. 1, Merton (continuous dividend yield q = 5%) example: p = 2.4648.
        (100.0, 95.0, 0.5, 0.10, 0.05, 0.20, "put", 2.4648),
        # Haug (2007) ch. 1, Black-76 example (carry b = 0): c = p = 1.7011.
        (19.0, 19.0, 0.75, 0.10, 0.0, 0.28, "call", 1.7011),
        (19.0, 19.0, 0.75, 0.10, 0.0, 0.28, "put", 1.7011),
    ],
)
def test_haug_prices(spot, strike, expiry, rate, carry, vol, kind, expected):
    # Reference: E. G. Haug, "The Complete Guide to Option Pricing Formulas", 2nd ed., worked
    # examples quoted to 4 decimals; carry b = r - q, so dividend = rate - carry.
    value = black_scholes(spot, strike, vol, expiry, rate=rate, dividend=rate - carry, kind=kind)
    assert abs(float(value) - expected) < 5e-5


def test_haug_greeks():
    # Reference: Haug (2007), ch. 2, the generalized Black–Scholes Greeks examples (spot S,
    # cost of carry b, F = S e^{bT}, D = e^{-rT}); Greeks with respect to the spot follow from
    # ours (w.r.t. the forward) by the chain rule: dF/dS = F/S.
    def forward_greeks(S, K, T, r, b, sigma, kind):
        F = S * math.exp(b * T)
        return F / S, greeks(F, K, sigma, T, kind, math.exp(-r * T))

    # Delta, futures option (b = 0): call 0.5946, put -0.3566.
    _, g = forward_greeks(105.0, 100.0, 0.5, 0.10, 0.0, 0.36, "call")
    assert abs(float(g.delta) - 0.5946) < 5e-5
    _, g = forward_greeks(105.0, 100.0, 0.5, 0.10, 0.0, 0.36, "put")
    assert abs(float(g.delta) + 0.3566) < 5e-5
    # Gamma (b = r = 10%): 0.0278.
    ratio, g = forward_greeks(55.0, 60.0, 0.75, 0.10, 0.10, 0.30, "call")
    assert abs(float(g.gamma) * ratio**2 - 0.0278) < 5e-5
    # Vega (r = 10.5%, b = 6.95%): 18.5027; vega is the same with respect to spot or forward.
    _, g = forward_greeks(55.0, 60.0, 0.75, 0.105, 0.0695, 0.30, "call")
    assert abs(float(g.vega) - 18.5027) < 5e-5
    # DdeltaDvol (vanna), r = b = 5%: -1.0008 per unit of vol.
    ratio, g = forward_greeks(90.0, 80.0, 0.25, 0.05, 0.05, 0.20, "call")
    assert abs(float(g.vanna) * ratio + 1.0008) < 5e-5
    # Theta of a put with carry (r = 7%, b = 2%): -31.1924 per year. Our Greeks' theta holds F and
    # D fixed; Haug's moves them with T too: minus the T-derivative of black_scholes, taken here
    # by a central difference (step 1e-6 year, error ~1e-8).
    h = 1e-6
    up = black_scholes(430.0, 405.0, 0.20, 0.0833 + h, 0.07, 0.07 - 0.02, "put")
    down = black_scholes(430.0, 405.0, 0.20, 0.0833 - h, 0.07, 0.07 - 0.02, "put")
    assert abs(-float(up - down) / (2 * h) + 31.1924) < 5e-5


def test_against_scipy_closed_forms():
    # Reference: the textbook Black-76 formulas evaluated with scipy.stats.norm (scipy_black76).
    F, K, sigma, T, D = random_inputs(0)
    for kind in KINDS:
        ours = greeks(F, K, sigma, T, kind, D)
        ref = scipy_black76(F, K, sigma, T, D, kind)
        for name in Greeks._fields:
            np.testing.assert_allclose(
                getattr(ours, name), getattr(ref, name), rtol=1e-10, atol=1e-12, err_msg=name
            )
        np.testing.assert_allclose(black76(F, K, sigma, T, kind, D), ref.price, rtol=1e-12, atol=1e-12)


def test_black_scholes_is_black76_on_the_forward():
    # Reference: scipy closed form of Black–Scholes–Merton with dividend yield (Merton 1973),
    # c = S e^{-qT} N(d1) - K e^{-rT} N(d2), written here directly on the spot.
    rng = np.random.default_rng(1)
    S, K = rng.uniform(50, 150, 32), rng.uniform(50, 150, 32)
    sigma, T = rng.uniform(0.1, 1.0, 32), rng.uniform(0.05, 2.0, 32)
    r, q = rng.uniform(-0.02, 0.1, 32), rng.uniform(0.0, 0.08, 32)
    d1 = (np.log(S / K) + (r - q + 0.5 * sigma**2) * T) / (sigma * np.sqrt(T))
    d2 = d1 - sigma * np.sqrt(T)
    call = S * np.exp(-q * T) * norm.cdf(d1) - K * np.exp(-r * T) * norm.cdf(d2)
    put = K * np.exp(-r * T) * norm.cdf(-d2) - S * np.exp(-q * T) * norm.cdf(-d1)
    np.testing.assert_allclose(black_scholes(S, K, sigma, T, r, q, "call"), call, rtol=1e-11)
    np.testing.assert_allclose(black_scholes(S, K, sigma, T, r, q, "put"), put, rtol=1e-11)


# --- no-arbitrage identities ----------------------------------------------------------------


def test_put_call_parity():
    # Reference: put–call parity for European options on a forward, C - P = D (F - K)
    # (Hull, "Properties of stock options"); it holds whatever the volatility model.
    F, K, sigma, T, D = random_inputs(2)
    lhs = black76(F, K, sigma, T, "call", D) - black76(F, K, sigma, T, "put", D)
    np.testing.assert_allclose(lhs, D * (F - K), rtol=1e-10, atol=1e-10)
    # Delta parity: Delta_call - Delta_put = D; the other Greeks agree for calls and puts.
    gc, gp = greeks(F, K, sigma, T, "call", D), greeks(F, K, sigma, T, "put", D)
    np.testing.assert_allclose(gc.delta - gp.delta, D, rtol=1e-12)
    for name in ("gamma", "vega", "theta", "vanna", "volga"):
        np.testing.assert_allclose(getattr(gc, name), getattr(gp, name), rtol=1e-10, atol=1e-12, err_msg=name)


# --- Greeks against derivatives of the price --------------------------------------------------


def autodiff(price, F, K, sigma, T, D):
    """Value, first derivatives in (F, vol, T) and the Hessian in (F, vol) of ``price(F, vol, T, K, D)``,
    by JAX reverse mode (forward-over-reverse for the Hessian), one option at a time, vmapped."""

    def one(f, k, v, t, d):
        value, first = jax.value_and_grad(price, argnums=(0, 1, 2))(f, v, t, k, d)
        second = jax.hessian(price, argnums=(0, 1))(f, v, t, k, d)
        return value, first, second

    return jax.jit(jax.vmap(one))(*map(jnp.asarray, (F, K, sigma, T, D)))


@pytest.mark.parametrize("kind", KINDS)
def test_greeks_match_autodiff(kind):
    # Reference: JAX reverse-mode derivatives of the price function itself.
    F, K, sigma, T, D = random_inputs(3)
    ours = greeks(F, K, sigma, T, kind, D)
    value, (dF, dv, dT), ((dFF, dFv), (_, dvv)) = autodiff(
        lambda f, v, t, k, d: black76(f, k, v, t, kind, d), F, K, sigma, T, D
    )
    ref = Greeks(value, dF, dFF, dv, -dT, dFv, dvv)
    for name in Greeks._fields:
        np.testing.assert_allclose(
            getattr(ours, name), getattr(ref, name), rtol=1e-9, atol=1e-12, err_msg=name
        )


@pytest.mark.parametrize("kind", KINDS)
def test_greeks_match_finite_differences(kind):
    # Reference: central finite differences of the price in float64, relative steps 1e-5 for
    # first derivatives and 1e-3 for second ones (truncation ~1e-6 relative, rounding ~1e-7).
    F, K, sigma, T, D = (jnp.asarray(a) for a in random_inputs(4))
    g = greeks(F, K, sigma, T, kind, D)

    def V(f=F, v=sigma, t=T):
        return black76(f, K, v, t, kind, D)

    hF, hv, ht = 1e-5 * F, 1e-5 * sigma, 1e-5 * T
    fd_delta = (V(f=F + hF) - V(f=F - hF)) / (2 * hF)
    fd_vega = (V(v=sigma + hv) - V(v=sigma - hv)) / (2 * hv)
    fd_theta = -(V(t=T + ht) - V(t=T - ht)) / (2 * ht)
    HF, Hv = 1e-3 * F, 1e-3 * sigma
    fd_gamma = (V(f=F + HF) - 2 * V() + V(f=F - HF)) / HF**2
    fd_volga = (V(v=sigma + Hv) - 2 * V() + V(v=sigma - Hv)) / Hv**2
    fd_vanna = (
        V(f=F + HF, v=sigma + Hv)
        - V(f=F + HF, v=sigma - Hv)
        - V(f=F - HF, v=sigma + Hv)
        + V(f=F - HF, v=sigma - Hv)
    ) / (4 * HF * Hv)
    np.testing.assert_allclose(g.delta, fd_delta, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(g.vega, fd_vega, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(g.theta, fd_theta, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(g.gamma, fd_gamma, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(g.vanna, fd_vanna, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g.volga, fd_volga, rtol=1e-4, atol=1e-5)


# --- degenerate inputs ----------------------------------------------------------------------


def test_expired_and_zero_vol_give_discounted_intrinsic_without_nan():
    # Reference: the payoff D * max(w (F - K), 0) (the s -> 0 limit of the formula), and the
    # sub-gradient 1/2 at the money that the zero-vol limit of N(d1) = N(s/2) gives.
    # Seven cases, repeated to the batch size of the other tests so that compiled kernels are reused.
    F = jnp.resize(jnp.array([80.0, 100.0, 120.0, 80.0, 100.0, 120.0, 100.0]), 64)
    sigma = jnp.resize(jnp.array([0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]), 64)
    T = jnp.resize(jnp.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, -0.5]), 64)
    K, D = jnp.full(64, 100.0), jnp.full(64, 0.95)

    @jax.jit
    def derivatives(*args):
        # The value is elementwise, so the gradient of its sum holds the elementwise derivatives.
        return {
            kind: jax.grad(
                lambda f, k, v, t, d, kind=kind: black76(f, k, v, t, kind, d).sum(), argnums=(0, 1, 2, 3, 4)
            )(*args)
            for kind in KINDS
        }

    derivs = derivatives(F, K, sigma, T, D)
    for kind in KINDS:
        w = 1.0 if kind == "call" else -1.0
        intrinsic = 0.95 * np.maximum(w * (np.asarray(F) - 100.0), 0.0)
        np.testing.assert_allclose(black76(F, K, sigma, T, kind, D), intrinsic, atol=1e-12)
        first = derivs[kind]
        assert all(np.all(np.isfinite(x)) for x in first)
        step = np.where(w * (np.asarray(F) - 100.0) > 0, 1.0, np.where(np.asarray(F) == 100.0, 0.5, 0.0))
        np.testing.assert_allclose(first[0], w * 0.95 * step, atol=1e-12)

        g = greeks(F, K, sigma, T, kind, D)
        assert all(np.all(np.isfinite(x)) for x in g)
        np.testing.assert_allclose(g.delta, first[0], atol=1e-12)
        for name in ("gamma", "vega", "theta", "vanna", "volga"):
            np.testing.assert_array_equal(getattr(g, name), 0.0, err_msg=name)


def test_small_vol_and_expiry_approach_intrinsic():
    # Reference: continuity at s -> 0; with s = 1e-4 the time value of an option 20% away from
    # the money is below any double-precision resolution.
    for kind in KINDS:
        for F in (80.0, 120.0):
            tiny = black76(F, 100.0, 1e-4, 1.0, kind, 0.9)
            expired = black76(F, 100.0, 0.5, 0.0, kind, 0.9)
            assert abs(float(tiny) - float(expired)) < 1e-12


# --- inverse (coin-margined) options --------------------------------------------------------


def test_inverse_price_times_forward_is_linear_price():
    # Reference: c = V / F (Deribit "Inverse Options": coin premium = USD value / underlying price).
    F, K, sigma, T, D = random_inputs(5)
    for kind in KINDS:
        c = inverse_price(F, K, sigma, T, kind, D)
        np.testing.assert_allclose(c * F, black76(F, K, sigma, T, kind, D), rtol=1e-12)
        np.testing.assert_allclose(inverse_greeks(F, K, sigma, T, kind, D).price, c, rtol=1e-12)


def test_inverse_settlement_matches_deribit_example():
    # Reference: Deribit support, "Inverse Options": a call struck at 100,000 settles at a
    # delivery price of 125,000 for 25,000 USD per BTC, i.e. 25,000 / 125,000 = 0.2 BTC.
    assert abs(float(inverse_price(125_000.0, 100_000.0, 0.6, 0.0, "call")) - 0.2) < 1e-12
    assert float(inverse_price(125_000.0, 100_000.0, 0.6, 0.0, "put")) == 0.0


def test_inverse_delta_is_deribit_net_delta():
    # Reference: Deribit API documentation (delta_total): "Net Transaction Delta = Black Scholes
    # Delta - Mark Price of Options", with the mark price in coin (zero rates, as Deribit quotes).
    F, K, sigma, T, _ = random_inputs(6)
    D = np.ones_like(F)
    for kind in KINDS:
        usd = greeks(F, K, sigma, T, kind, D)
        coin = inverse_greeks(F, K, sigma, T, kind, D)
        np.testing.assert_allclose(coin.delta, usd.delta - usd.price / F, rtol=1e-12, atol=1e-14)


def test_deribit_faq_delta_example():
    # Reference: Deribit FAQ, "What does Delta Total in the account summary mean?": a call with
    # delta 0.50 bought for 0.10 BTC increases the account's delta by 0.40. Build such a call
    # (zero rates, as Deribit quotes): N(d1) = 0.5 needs ln(F/K) = -s^2/2, and then
    # c = 0.5 - e^{s^2/2} N(-s) (K/F = e^{s^2/2}); solve c = 0.10 for s.
    s = brentq(lambda s: 0.5 - math.exp(0.5 * s * s) * norm.cdf(-s) - 0.10, 1e-3, 2.0)
    F, T = 60_000.0, 0.25
    K, sigma = F * math.exp(0.5 * s * s), s / math.sqrt(T)
    usd = greeks(F, K, sigma, T, "call")
    coin = inverse_greeks(F, K, sigma, T, "call")
    assert abs(float(usd.delta) - 0.50) < 1e-12
    assert abs(float(coin.price) - 0.10) < 1e-12
    assert abs(float(coin.delta) - 0.40) < 1e-12
    # The same FAQ's reasoning in USD: per $1 the option gains Delta = 0.5 USD and the 0.10 coin
    # paid for it would have gained 0.10 USD (central difference of the coin value times F).
    h = 1.0
    usd_gain = (
        float(inverse_price(F + h, K, sigma, T)) * (F + h)
        - float(inverse_price(F - h, K, sigma, T)) * (F - h)
    ) / (2 * h)
    assert abs(usd_gain - float(coin.price) - 0.40) < 1e-8


def test_zero_strike_inverse_call_is_one_coin_with_zero_delta():
    # Reference: Deribit's explanation of Delta Total: a call struck at 0 is worth 1 BTC whatever
    # the price, so its net (coin) delta is 0 although its Black–Scholes delta is 1.
    coin = inverse_greeks(60_000.0, 1e-6, 0.8, 0.5, "call")
    assert abs(float(coin.price) - 1.0) < 1e-10  # exactly 1 - K/F
    assert abs(float(coin.delta)) < 1e-10  # exactly K/F


@pytest.mark.parametrize("kind", KINDS)
def test_inverse_greeks_match_autodiff(kind):
    # Reference: JAX derivatives of inverse_price c: delta = F dc/dF, gamma and vanna the F- and
    # vol-derivatives of that delta, vega/theta/volga derivatives of c.
    F, K, sigma, T, D = random_inputs(7)
    c, (cF, cv, cT), ((cFF, cFv), (_, cvv)) = autodiff(
        lambda f, v, t, k, d: inverse_price(f, k, v, t, kind, d), F, K, sigma, T, D
    )
    # delta = F c_F; gamma = d(F c_F)/dF = c_F + F c_FF; vanna = d(F c_F)/dvol = F c_Fvol.
    ref = Greeks(c, F * cF, cF + F * cFF, cv, -cT, F * cFv, cvv)
    ours = inverse_greeks(F, K, sigma, T, kind, D)
    for name in Greeks._fields:
        np.testing.assert_allclose(
            getattr(ours, name), getattr(ref, name), rtol=1e-9, atol=1e-14, err_msg=name
        )
    # Expired and zero-vol inverse options: finite; in the money c = D w (F - K)/F, so the coin
    # delta F dc/dF is w D K/F, and 0 out of the money.
    w = 1.0 if kind == "call" else -1.0
    F = np.resize([90.0, 110.0], 64)  # repeated to the batch size used above: no new compilation
    dead = inverse_greeks(
        F, np.full(64, 100.0), np.resize([0.0, 0.4], 64), np.resize([1.0, 0.0], 64), kind, np.full(64, 0.9)
    )
    assert all(np.all(np.isfinite(x)) for x in dead)
    itm = w * (F - 100.0) > 0
    np.testing.assert_allclose(dead.delta, np.where(itm, w * 0.9 * 100.0 / F, 0.0), atol=1e-14)


# --- elasticity -----------------------------------------------------------------------------


def test_elasticity():
    # Reference: Omega = d ln V / d ln F, by central differences of log(black76) in log F.
    F, K, sigma, T, D = random_inputs(8)
    h = 1e-5
    for kind in KINDS:
        omega = elasticity(F, K, sigma, T, kind, D)
        up, down = (
            black76(F * math.exp(h), K, sigma, T, kind, D),
            black76(F * math.exp(-h), K, sigma, T, kind, D),
        )
        np.testing.assert_allclose(omega, (np.log(up) - np.log(down)) / (2 * h), rtol=1e-7)
        assert np.all(omega >= 1.0) if kind == "call" else np.all(omega <= 0.0)
    # Expired or zero-vol: F/(F - K) in the money; worthless options have infinite elasticity and a
    # finite gradient.
    F, vol, T = jnp.array([80.0, 120.0]), jnp.array([0.0, 0.5]), jnp.array([1.0, 0.0])
    for kind, expected in (("call", [math.inf, 6.0]), ("put", [-4.0, -math.inf])):
        value, slope = jax.jvp(lambda f, kind=kind: elasticity(f, 100.0, vol, T, kind), (F,), (jnp.ones(2),))
        np.testing.assert_allclose(value, expected)
        assert np.all(np.isfinite(slope))


# --- JAX transformations, shapes and dtypes -------------------------------------------------


def test_jit_vmap_grad_and_broadcasting():
    # Reference: eager evaluation of the same function, and the scipy closed forms.
    F = jnp.linspace(80.0, 120.0, 4)
    K = jnp.array([[90.0], [100.0], [110.0]])
    eager = black76(F, K, 0.5, 0.25, "put", 0.99)
    assert eager.shape == (3, 4)
    mapped = jax.jit(jax.vmap(lambda k: black76(F, k, 0.5, 0.25, "put", 0.99)))(K[:, 0])
    np.testing.assert_allclose(mapped, eager, rtol=1e-14)
    grad = jax.jit(jax.vmap(jax.grad(black76, argnums=(0, 2)), in_axes=(0, None, None, None)))(
        F, 100.0, 0.5, 0.25
    )
    ref = scipy_black76(np.asarray(F), 100.0, 0.5, 0.25, 1.0, "call")
    np.testing.assert_allclose(grad[0], ref.delta, rtol=1e-12)
    np.testing.assert_allclose(grad[1], ref.vega, rtol=1e-12)


def test_float32_close_to_float64():
    # Reference: the float64 evaluation of the same inputs; float32 keeps about 6 significant
    # digits, less on Greeks that cancel (theta, vanna near d2 = 0), hence the absolute terms.
    F, K, sigma, T, D = random_inputs(9)
    f32 = [jnp.asarray(a, jnp.float32) for a in (F, K, sigma, T, D)]
    for kind in KINDS:
        lo = greeks(*f32[:4], kind, f32[4])
        hi = greeks(F, K, sigma, T, kind, D)
        assert all(x.dtype == jnp.float32 for x in lo)
        assert all(x.dtype == jnp.float64 for x in hi)
        for name in Greeks._fields:
            scale = np.max(np.abs(getattr(hi, name)))
            np.testing.assert_allclose(
                getattr(lo, name), getattr(hi, name), rtol=1e-4, atol=1e-5 * scale, err_msg=name
            )
    lo_inv = inverse_greeks(*f32[:4], "call", f32[4])
    assert all(x.dtype == jnp.float32 for x in lo_inv)
    np.testing.assert_allclose(
        lo_inv.price, inverse_greeks(F, K, sigma, T, "call", D).price, rtol=1e-4, atol=1e-7
    )
    # Python scalars follow JAX's default float; float32 scalars give float32 values and gradients,
    # finite at degenerate inputs too.
    assert black76(100.0, 100.0, 0.5, 1.0).dtype == jnp.float64
    one, zero = jnp.float32(1.0), jnp.float32(0.0)
    for vol, expiry in ((0.5 * one, one), (zero, one), (0.5 * one, zero)):
        grads = jax.grad(black76, argnums=(0, 1, 2, 3))(100 * one, 100 * one, vol, expiry)
        assert all(np.isfinite(x) and x.dtype == jnp.float32 for x in grads)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("forward", {"forward": 0.0}),
        ("strike", {"strike": -5.0}),
        ("strike", {"strike": [100.0, float("nan")]}),
        ("vol", {"vol": 0.0}),
        ("expiry", {"expiry": -1.0}),
        ("discount", {"discount": float("inf")}),
        ("kind", {"kind": "straddle"}),
    ],
)
def test_bad_inputs_raise_config_error_naming_the_field(field, kwargs):
    # Reference: levopt's error contract (ConfigError names the field, the value and the rule).
    args = {"forward": 100.0, "strike": 100.0, "vol": 0.5, "expiry": 0.25, "kind": "call", "discount": 1.0}
    args.update(kwargs)
    with pytest.raises(ConfigError) as info:
        check_option_inputs(**args)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert ("> 0" in str(info.value)) or ("'call' or 'put'" in str(info.value))
    with pytest.raises(ConfigError) as info:
        check_option_inputs(**args, prefix="policy.option.")
    assert info.value.field == f"policy.option.{field}"


def test_valid_inputs_pass_and_bad_kind_raises_in_pricers():
    # Reference: levopt's error contract; the pricers reject an unknown kind before tracing.
    check_option_inputs(np.array([100.0, 50.0]), 100.0, np.array([0.2, 0.9]), 0.5, "put", 0.99)
    with pytest.raises(ConfigError, match="kind"):
        check_option_inputs(100.0, 100.0, 0.5, 0.25, "Call")
    for fn in (black76, greeks, elasticity, inverse_price, inverse_greeks):
        with pytest.raises(ConfigError) as info:
            fn(100.0, 100.0, 0.5, 0.25, "digital")
        assert info.value.field == "kind"
    with pytest.raises(ConfigError) as info:
        black_scholes(100.0, 100.0, 0.5, 0.25, kind="digital")
    assert info.value.field == "kind"
    # Values are checked on concrete inputs, before compilation; traced ones are refused.
    with pytest.raises(TypeError, match="before jit"):
        jax.jit(lambda f: check_option_inputs(f, 100.0, 0.5, 0.25))(100.0)
