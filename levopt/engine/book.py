r"""Option legs in the engine: implied volatility on the path, marks, settlement, rolls, the delta
hedge, margin and exposures (one path; :mod:`levopt.engine.simulate` runs the step).

Units: the asset's price is relative to S_0 = 1 and the account's equity to W_0 = 1, so a leg of
``quantity`` q is q units of the underlying per unit of initial equity and its value is
:math:`q\,V(S_t, K, \sigma_t, \tau)`, V the Black-76 value of one option on one unit (the
perpetual is the forward: zero rates). The account's equity is its cash plus the perpetual's P&L
plus the legs' marks; cash earns or pays the market's rates like any other.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import Array

from levopt.engine.market import Market
from levopt.options.margin import book_maintenance
from levopt.options.pricing import Greeks, leg_greeks
from levopt.paths import PathModel
from levopt.policies import Policy


class Exposure(NamedTuple):
    r"""Per-path sums and maxima of the book's exposures over the steps it was open (t = 0 included).

    Each step contributes, on equity W after its trades: the delta-notional leverage
    :math:`|\sum_i q_i\Delta_i S + N|/W`, the book's elasticity
    :math:`\sum_i q_i\Delta_i S / \sum_i q_i V_i` (0 when the legs are worth nothing), the dollar
    gamma :math:`\sum_i q_i\Gamma_i S^2/W` (the P&L of a squared return r² is half of it times r²)
    and the dollar vega :math:`0.01\sum_i q_i\nu_i/W` (the P&L of one volatility point). Means are
    ``*_sum / count``; maxima are of absolute values.
    """

    count: Array
    delta_leverage_sum: Array
    delta_leverage_max: Array
    elasticity_sum: Array
    elasticity_max: Array
    gamma_sum: Array
    gamma_max: Array
    vega_sum: Array
    vega_max: Array


class Book(NamedTuple):
    """The legs of one path: terms, quantities, marks, the log-price and the implied-vol state.

    Attributes:
        strike: ``(k,)`` strikes relative to S_0.
        expiry: ``(k,)`` expiry times, years from t = 0.
        quantity: ``(k,)`` quantities (0 once a leg has settled or the account was liquidated).
        mark: ``(k,)`` value of one option of each leg at the current price and implied vol.
        log_price: log(S_t / S_0).
        log_iv: log of the stochastic implied volatility (unused by the other kinds).
        exposure: :class:`Exposure` so far.
    """

    strike: Array
    expiry: Array
    quantity: Array
    mark: Array
    log_price: Array
    log_iv: Array
    exposure: Exposure


def implied_vols(
    policy: Policy, model: PathModel, model_state: Any, dt: float, log_iv: Array, remaining: Array
) -> Array:
    """``(k,)`` implied volatility of each leg with ``remaining`` years to expiry (see
    :class:`~levopt.policies.options.ImpliedVolConfig`)."""
    if policy.iv_kind == "constant":
        return jnp.broadcast_to(policy.iv_value, remaining.shape)
    if policy.iv_kind == "stochastic":
        return jnp.broadcast_to(jnp.exp(log_iv), remaining.shape)
    horizon = jnp.maximum(remaining, dt)
    forecast = model.forecast_vol(model_state, dt, horizon)
    return jnp.broadcast_to(forecast, remaining.shape) * (1.0 + policy.iv_premium)


def opening_legs(
    policy: Policy, model: PathModel, model_state: Any, dt: float
) -> tuple[Array, Array, Greeks]:
    """The legs at t = 0: the starting log implied vol (the stochastic kind's state), each leg's
    implied vol and its Black-76 value and Greeks at S_0 = 1 — what the premium is paid at."""
    log_iv = jnp.log(jnp.where(policy.iv_value > 0, policy.iv_value, 1.0))
    vols = implied_vols(policy, model, model_state, dt, log_iv, policy.expiry)
    return log_iv, vols, leg_greeks(1.0, policy.strike, vols, policy.expiry, policy.omega)


def next_log_iv(policy: Policy, log_iv: Array, z_return: Array, z_own: Array, dt: float) -> Array:
    r"""The stochastic implied vol one step on: an Ornstein–Uhlenbeck step of :math:`\log\sigma`
    towards :math:`\log` ``value``, exact in the step length, its shock
    :math:`\rho z_{return} + \sqrt{1-\rho^2} z_{own}`."""
    if policy.iv_kind != "stochastic":
        return log_iv
    k, xi, rho = policy.iv_mean_reversion, policy.iv_vol_of_vol, policy.iv_correlation
    decay = jnp.exp(-k * dt)
    # Variance of the exact OU step, (1 − e^{−2kΔ}) / 2k, → Δ as k → 0.
    var = jnp.where(k > 0, -jnp.expm1(-2 * k * dt) / (2 * jnp.where(k > 0, k, 1.0)), dt)
    level = jnp.log(policy.iv_value)
    eps = rho * z_return + jnp.sqrt(1 - rho**2) * z_own
    return level + (log_iv - level) * decay + xi * jnp.sqrt(var) * eps


def price_legs(book: Book, vols: Array, t_years: Array, omega: Array) -> Greeks:
    """Black-76 value and Greeks of one option of each leg at the book's price and time."""
    return leg_greeks(jnp.exp(book.log_price), book.strike, vols, book.expiry - t_years, omega)


def requirement(
    market: Market, book: Book, g: Greeks, vols: Array, t_years: Array, perp: Array, omega: Array, dt: float
) -> Array:
    """Maintenance margin of the legs and the perpetual notional ``perp`` (market.margin's rule)."""
    spot = jnp.exp(book.log_price)
    return book_maintenance(
        market.option_margin,
        spot,
        book.strike,
        book.expiry - t_years,
        vols,
        g.price,
        book.quantity,
        omega,
        perp / spot,
        market.maintenance_margin,
        min_expiry=dt,
    )


def hedge_notional(book: Book, g: Greeks) -> Array:
    """``(1,)`` perpetual notional that cancels the legs' delta: :math:`-\\sum_i q_i\\Delta_i S`."""
    return jnp.reshape(-jnp.sum(book.quantity * g.delta) * jnp.exp(book.log_price), (1,))


def add_exposure(
    exposure: Exposure, book: Book, g: Greeks, perp: Array, equity: Array, alive: Array
) -> Exposure:
    """One step's exposures (:class:`Exposure`) added for an open account."""
    spot = jnp.exp(book.log_price)
    q = book.quantity
    safe_w = jnp.where(equity > 0, equity, 1.0)
    option_delta = jnp.sum(q * g.delta) * spot
    value = jnp.sum(q * g.price)
    delta_lev = jnp.abs(option_delta + jnp.sum(perp)) / safe_w
    elasticity = jnp.where(jnp.abs(value) > 0, option_delta / jnp.where(jnp.abs(value) > 0, value, 1.0), 0.0)
    gamma = jnp.sum(q * g.gamma) * spot**2 / safe_w
    vega = 0.01 * jnp.sum(q * g.vega) / safe_w
    on = alive & (equity > 0)

    def add(total: Array, x: Array) -> Array:
        return total + jnp.where(on, x, 0.0)

    def top(current: Array, x: Array) -> Array:
        return jnp.maximum(current, jnp.where(on, jnp.abs(x), 0.0))

    e = exposure
    return Exposure(
        count=e.count + on.astype(e.count.dtype),
        delta_leverage_sum=add(e.delta_leverage_sum, delta_lev),
        delta_leverage_max=top(e.delta_leverage_max, delta_lev),
        elasticity_sum=add(e.elasticity_sum, elasticity),
        elasticity_max=top(e.elasticity_max, elasticity),
        gamma_sum=add(e.gamma_sum, gamma),
        gamma_max=top(e.gamma_max, gamma),
        vega_sum=add(e.vega_sum, vega),
        vega_max=top(e.vega_max, vega),
    )


def empty_exposure(dtype: Any) -> Exposure:
    zero = jnp.zeros((), dtype)
    return Exposure(*(zero for _ in Exposure._fields))


def roll_legs(
    policy: Policy, book: Book, g: Greeks, vols_new: Array, t_years: Array, omega: Array
) -> tuple[Book, Array, Array]:
    """Close each leg due for its roll at its mark and open one of the original life and moneyness
    at the current price. Returns the book (new terms and marks), the traded option value (for
    fees: old and new legs) and which legs rolled."""
    if policy.roll_before is None:
        return book, jnp.zeros((), book.mark.dtype), jnp.zeros(book.quantity.shape, bool)
    remaining = book.expiry - t_years
    due = (book.quantity != 0) & (remaining > 0) & (remaining <= policy.roll_before + 1e-12)
    spot = jnp.exp(book.log_price)
    strike = jnp.where(due, policy.strike * spot, book.strike)
    expiry = jnp.where(due, t_years + policy.expiry, book.expiry)
    new = leg_greeks(spot, strike, vols_new, policy.expiry, omega)
    mark = jnp.where(due, new.price, g.price)
    traded = jnp.sum(jnp.where(due, jnp.abs(book.quantity) * (g.price + new.price), 0.0))
    return book._replace(strike=strike, expiry=expiry, mark=mark), traded, due
