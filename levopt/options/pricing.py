r"""Black-76 and Black–Scholes prices and Greeks of European options, in JAX.

Every function takes array-like inputs that broadcast against each other, returns arrays of the
broadcast shape, and works under ``jit``, ``vmap`` and ``grad``. The floating dtype follows the
inputs (float32 by default, float64 inside ``jax.enable_x64(True)`` or with float64 arrays). The
option ``kind`` is a Python string, ``"call"`` or ``"put"``: a caller that wraps these functions
in its own ``jit`` marks it static (``jax.jit(black76, static_argnames="kind")``) or closes over
it. Each function runs one compiled kernel, built once per broadcast shape and dtype and shared by
calls and puts.

Notation (Black 1976):

.. math::

    s = \sigma\sqrt{T},\qquad
    d_1 = \frac{\ln(F/K) + s^2/2}{s},\qquad d_2 = d_1 - s,\qquad
    V = D\,\omega\,[F\,N(\omega d_1) - K\,N(\omega d_2)],

with :math:`F` the forward (or futures, or perpetual) price for the expiry, :math:`K` the strike,
:math:`\sigma` the annualized volatility, :math:`T` the time to expiry in years, :math:`D` the
discount factor to expiry and :math:`\omega = +1` for a call, :math:`-1` for a put.

Degenerate inputs. When :math:`s = 0` (``expiry <= 0`` or ``vol <= 0``) the option is worth its
discounted intrinsic value :math:`D\max(\omega(F - K), 0)`, the limit of the formula. The smooth
branch is evaluated on placeholder inputs there (the "double ``where``"), so neither the value
nor its gradient is NaN.

References:
    F. Black, "The pricing of commodity contracts", J. Financial Economics 3 (1976) 167–179.
    J. C. Hull, *Options, Futures, and Other Derivatives*, chapters on Black–Scholes–Merton,
    futures options and the Greek letters.
    E. G. Haug, *The Complete Guide to Option Pricing Formulas*, 2nd ed. (2007), ch. 1–2.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from jax.scipy.special import ndtr
from jax.typing import ArrayLike

from levopt.errors import ConfigError

KINDS = ("call", "put")
"""The option kinds understood by every function of this package."""

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


class Greeks(NamedTuple):
    r"""An option's value and its sensitivities, each of the broadcast input shape.

    For a linear (USD-margined) option from :func:`greeks`:

    Attributes:
        price: :math:`V`, in the currency of the strike.
        delta: :math:`\partial V/\partial F`, with respect to the forward.
        gamma: :math:`\partial^2 V/\partial F^2`.
        vega: :math:`\partial V/\partial\sigma`, per unit of volatility (multiply by 0.01 for one
            vol point).
        theta: :math:`-\partial V/\partial T` at fixed :math:`F, K, \sigma, D`: the change of value
            per year of calendar time; negative for a long option.
        vanna: :math:`\partial^2 V/\partial F\,\partial\sigma`.
        volga: :math:`\partial^2 V/\partial\sigma^2` (also called vomma).

    :func:`levopt.options.inverse_greeks` returns the same fields for coin-margined options, in
    coin units; its docstring states their definitions.
    """

    price: Array
    delta: Array
    gamma: Array
    vega: Array
    theta: Array
    vanna: Array
    volga: Array


def option_sign(kind: str) -> float:
    """``+1.0`` for ``"call"``, ``-1.0`` for ``"put"``; any other value raises ``ConfigError("kind", ...)``."""
    if kind == "call":
        return 1.0
    if kind == "put":
        return -1.0
    raise ConfigError("kind", f"must be 'call' or 'put', got {kind!r}")


def _inputs(kind: str, *args: ArrayLike) -> list[Array]:
    """The inputs as arrays of one floating dtype (the promotion of theirs) broadcast to one
    shape, followed by the sign of ``kind`` as a scalar of that dtype.

    Passing the sign as a value and normalizing dtypes and shapes here means the compiled kernels
    below are built once per shape and dtype, shared by calls and puts and by Python scalars and
    arrays alike.
    """
    omega = option_sign(kind)
    dtype = jnp.result_type(*args, float)
    arrays = jnp.broadcast_arrays(*(jnp.asarray(a, dtype) for a in args))
    return [*arrays, jnp.asarray(omega, dtype)]


class _Black(NamedTuple):
    """Shared intermediate quantities; on non-``live`` entries the smooth ones are placeholders."""

    forward: Array
    strike: Array
    discount: Array
    omega: Array  # +1 call, -1 put
    live: Array  # s > 0: the smooth formula applies
    vol: Array  # vol where live, else 1
    sqrt_t: Array  # sqrt(expiry) where live, else 1
    s: Array  # vol * sqrt(expiry) where live, else 1
    d1: Array
    d2: Array
    pdf_d1: Array  # standard normal density at d1


def _black(forward, strike, vol, expiry, discount, omega) -> _Black:
    positive = (expiry > 0) & (vol > 0)
    # The double-where: give the smooth branch harmless inputs wherever it is not used, so that
    # sqrt(0), log and divisions by zero never enter the gradient.
    vol_safe = jnp.where(positive, vol, 1.0)
    sqrt_t = jnp.sqrt(jnp.where(positive, expiry, 1.0))
    s_raw = vol_safe * sqrt_t
    live = positive & (s_raw > 0)  # s can underflow to 0 for tiny positive inputs
    s = jnp.where(live, s_raw, 1.0)
    d1 = jnp.log(forward / strike) / s + 0.5 * s
    d2 = d1 - s
    pdf_d1 = _INV_SQRT_2PI * jnp.exp(-0.5 * d1 * d1)
    return _Black(forward, strike, discount, omega, live, vol_safe, sqrt_t, s, d1, d2, pdf_d1)


def _price(b: _Black) -> Array:
    w = b.omega
    smooth = b.discount * w * (b.forward * ndtr(w * b.d1) - b.strike * ndtr(w * b.d2))
    intrinsic = b.discount * jnp.maximum(w * (b.forward - b.strike), 0.0)
    return jnp.where(b.live, smooth, intrinsic)


def _greeks(b: _Black) -> Greeks:
    w, D, F, live = b.omega, b.discount, b.forward, b.live
    zero = jnp.zeros_like(b.d1)
    moneyness = w * (F - b.strike)
    step = jnp.where(moneyness > 0, 1.0, jnp.where(moneyness == 0, 0.5, 0.0))
    delta = jnp.where(live, w * D * ndtr(w * b.d1), w * D * step)
    gamma = jnp.where(live, D * b.pdf_d1 / (F * b.s), zero)
    vega_smooth = D * F * b.pdf_d1 * b.sqrt_t
    vega = jnp.where(live, vega_smooth, zero)
    theta = jnp.where(live, -D * F * b.pdf_d1 * b.vol / (2.0 * b.sqrt_t), zero)
    vanna = jnp.where(live, -D * b.pdf_d1 * b.d2 / b.vol, zero)
    volga = jnp.where(live, vega_smooth * b.d1 * b.d2 / b.vol, zero)
    return Greeks(_price(b), delta, gamma, vega, theta, vanna, volga)


def _linear_greeks(forward, strike, vol, expiry, discount, omega) -> Greeks:
    """:func:`greeks` on the normalized inputs of :func:`_inputs`, for use inside kernels."""
    return _greeks(_black(forward, strike, vol, expiry, discount, omega))


def leg_greeks(forward: Array, strike: Array, vol: Array, expiry: Array, omega: Array) -> Greeks:
    """Black-76 value and Greeks of legs given by arrays (``omega`` +1 call, −1 put), undiscounted,
    for use inside traced code: no input checks; an expired leg (``expiry <= 0``) is worth its
    intrinsic value, with a step delta and no gamma or vega."""
    dtype = jnp.result_type(forward, strike, vol, expiry, omega, float)
    f, k, v, t, w = jnp.broadcast_arrays(
        *(jnp.asarray(a, dtype) for a in (forward, strike, vol, expiry, omega))
    )
    return _linear_greeks(f, k, v, t, jnp.ones_like(f), w)


@jax.jit
def _black76_kernel(forward, strike, vol, expiry, discount, omega):
    return _price(_black(forward, strike, vol, expiry, discount, omega))


@jax.jit
def _black_scholes_kernel(spot, strike, vol, expiry, rate, dividend, omega):
    forward = spot * jnp.exp((rate - dividend) * expiry)
    return _price(_black(forward, strike, vol, expiry, jnp.exp(-rate * expiry), omega))


_greeks_kernel = jax.jit(_linear_greeks)


@jax.jit
def _elasticity_kernel(forward, strike, vol, expiry, discount, omega):
    g = _linear_greeks(forward, strike, vol, expiry, discount, omega)
    positive = g.price > 0
    safe_price = jnp.where(positive, g.price, 1.0)
    return jnp.where(positive, g.delta * forward / safe_price, omega * jnp.inf)


def black76(
    forward: ArrayLike,
    strike: ArrayLike,
    vol: ArrayLike,
    expiry: ArrayLike,
    kind: str = "call",
    discount: ArrayLike = 1.0,
) -> Array:
    r"""Black-76 value of a European option on a forward, futures or perpetual price.

    .. math::

        V = D\,\omega\,[F\,N(\omega d_1) - K\,N(\omega d_2)],\qquad
        d_{1,2} = \frac{\ln(F/K) \pm \sigma^2 T/2}{\sigma\sqrt T},

    :math:`\omega = \pm 1` for a call/put; at :math:`\sigma\sqrt T = 0` the discounted intrinsic
    value :math:`D\max(\omega(F-K), 0)`.

    Args:
        forward: forward price :math:`F` for the option's expiry (> 0).
        strike: strike :math:`K` (> 0).
        vol: annualized volatility :math:`\sigma` of the forward (>= 0).
        expiry: time to expiry :math:`T` in years (<= 0 means expired: intrinsic value).
        kind: ``"call"`` or ``"put"``.
        discount: discount factor :math:`D` from expiry to today, e.g. :math:`e^{-rT}`.

    Returns:
        The option value, in the currency of ``forward`` and ``strike``, of the broadcast shape.

    Example:
        >>> float(black76(20.0, 20.0, 0.25, 4 / 12, "call", math.exp(-0.09 * 4 / 12)))  # doctest: +ELLIPSIS
        1.116...

    References:
        F. Black (1976), J. Financial Economics 3, 167–179; Hull, *Options, Futures, and Other
        Derivatives*, "Black's model" for futures options.
    """
    return _black76_kernel(*_inputs(kind, forward, strike, vol, expiry, discount))


def black_scholes(
    spot: ArrayLike,
    strike: ArrayLike,
    vol: ArrayLike,
    expiry: ArrayLike,
    rate: ArrayLike = 0.0,
    dividend: ArrayLike = 0.0,
    kind: str = "call",
) -> Array:
    r"""Black–Scholes–Merton value of a European option on a spot price with a continuous yield.

    Expressed through Black-76 with

    .. math:: F = S\,e^{(r - q)T},\qquad D = e^{-rT}.

    The yield :math:`q` is a dividend yield for a stock, the foreign rate for a currency, or the
    interest earned by holding the coin (lending rate, staking yield) for a crypto asset; the
    cost of carry of Haug's generalized formula is :math:`b = r - q`.

    Args:
        spot: spot price :math:`S` (> 0).
        strike: strike :math:`K` (> 0).
        vol: annualized volatility :math:`\sigma` (>= 0).
        expiry: time to expiry :math:`T` in years.
        rate: continuously compounded risk-free rate :math:`r` of the strike currency.
        dividend: continuous yield :math:`q` of the underlying.
        kind: ``"call"`` or ``"put"``.

    Returns:
        The option value, of the broadcast shape.

    Example:
        >>> float(black_scholes(42.0, 40.0, 0.2, 0.5, rate=0.1))  # doctest: +ELLIPSIS
        4.759...

    References:
        F. Black, M. Scholes, J. Political Economy 81 (1973); R. C. Merton, Bell J. Economics 4
        (1973); Haug (2007), ch. 1.
    """
    return _black_scholes_kernel(*_inputs(kind, spot, strike, vol, expiry, rate, dividend))


def greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    vol: ArrayLike,
    expiry: ArrayLike,
    kind: str = "call",
    discount: ArrayLike = 1.0,
) -> Greeks:
    r"""Black-76 value and closed-form Greeks, sharing one evaluation of :math:`d_1, d_2`.

    With :math:`n` the standard normal density and :math:`s = \sigma\sqrt T`:

    .. math::

        \Delta &= \partial V/\partial F = \omega D\,N(\omega d_1) \\
        \Gamma &= \partial^2 V/\partial F^2 = D\,n(d_1) / (F s) \\
        \mathcal V &= \partial V/\partial\sigma = D\,F\,n(d_1)\sqrt T \\
        \Theta &= -\partial V/\partial T = -D\,F\,n(d_1)\,\sigma / (2\sqrt T) \\
        \text{vanna} &= \partial^2 V/\partial F\partial\sigma = -D\,n(d_1)\,d_2/\sigma \\
        \text{volga} &= \partial^2 V/\partial\sigma^2 = \mathcal V\,d_1 d_2/\sigma

    Conventions:

    * delta and gamma are with respect to the forward :math:`F`, not the spot. For a spot
      :math:`S` with :math:`F = S e^{(r-q)T}`: :math:`\Delta_S = \Delta\,F/S`,
      :math:`\Gamma_S = \Gamma\,(F/S)^2`, :math:`\text{vanna}_S = \text{vanna}\,F/S`.
    * vega and volga are per unit of volatility (0.01 vol = one vol point).
    * theta is per year of calendar time and is the decay at fixed :math:`F`, :math:`K`,
      :math:`\sigma` and :math:`D` (negative for a long option). When the discount factor is
      :math:`e^{-rT}` the full calendar theta adds :math:`rV`; for a spot underlying with carry it
      also moves :math:`F` — ``-jax.grad(black_scholes, argnums=3)`` gives that one.
    * At :math:`s = 0` (expired, or zero vol) the value is the discounted intrinsic value, delta is
      :math:`\omega D` in the money, 0 out of the money and :math:`\omega D/2` at the money (the
      zero-vol limit), and the other Greeks are 0.

    These are the derivatives of :func:`black76` that ``jax.grad`` computes, in closed form.

    Args:
        forward, strike, vol, expiry, kind, discount: as in :func:`black76`.

    Returns:
        :class:`Greeks`, each field of the broadcast input shape.

    References:
        Hull, *Options, Futures, and Other Derivatives*, "The Greek letters"; Haug (2007), ch. 2
        (generalized Black–Scholes Greeks with cost of carry :math:`b = 0` for Black-76).
    """
    return _greeks_kernel(*_inputs(kind, forward, strike, vol, expiry, discount))


def elasticity(
    forward: ArrayLike,
    strike: ArrayLike,
    vol: ArrayLike,
    expiry: ArrayLike,
    kind: str = "call",
    discount: ArrayLike = 1.0,
) -> Array:
    r"""Option elasticity (leverage) :math:`\Omega = \Delta\,F/V = \partial\ln V/\partial\ln F`.

    The percentage change of the option value per percentage change of the underlying: a call's
    :math:`\Omega \ge 1`, a put's :math:`\Omega \le 0`. Because :math:`F \propto S` at fixed
    rates, it is the same measured on the spot (:math:`\Delta_S S/V`), and the discount factor
    cancels. Where the value is 0 (an expired or zero-vol option out of the money) the elasticity
    is :math:`\omega\cdot\infty`; the gradient there is 0, not NaN.

    Args:
        forward, strike, vol, expiry, kind, discount: as in :func:`black76`.

    Returns:
        :math:`\Omega`, of the broadcast input shape.

    References:
        Haug (2007), ch. 2, "Elasticity"; Hull, *Options, Futures, and Other Derivatives*.
    """
    return _elasticity_kernel(*_inputs(kind, forward, strike, vol, expiry, discount))


def check_option_inputs(
    forward: ArrayLike,
    strike: ArrayLike,
    vol: ArrayLike,
    expiry: ArrayLike,
    kind: str = "call",
    discount: ArrayLike = 1.0,
    *,
    prefix: str = "",
) -> None:
    """Validate option parameters from a configuration, before any compilation.

    Requires ``forward``, ``strike``, ``vol``, ``expiry`` and ``discount`` finite and > 0
    element-wise and ``kind`` in :data:`KINDS`. The pricing functions themselves also accept
    ``vol = 0`` and ``expiry <= 0`` (they return the intrinsic-value limit); a configured option
    should not rely on that. Call it on concrete values (NumPy arrays or Python numbers), not on
    traced arrays inside ``jit``.

    Args:
        forward, strike, vol, expiry, kind, discount: as in :func:`black76`.
        prefix: prepended to the field names in errors, e.g. ``"policy.option."``.

    Raises:
        ConfigError: naming the first offending field, the value and what is allowed.
    """
    if kind not in KINDS:
        raise ConfigError(f"{prefix}kind", f"must be 'call' or 'put', got {kind!r}")
    fields = {"forward": forward, "strike": strike, "vol": vol, "expiry": expiry, "discount": discount}
    for name, value in fields.items():
        if isinstance(value, jax.core.Tracer):
            raise TypeError("check_option_inputs needs concrete values: call it before jit, not inside")
        try:
            array = np.asarray(value, dtype=float)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"{prefix}{name}", f"must be a number or an array of numbers, got {value!r}"
            ) from err
        bad = ~(np.isfinite(array) & (array > 0))
        if bad.any():
            where = f" at index {tuple(int(i) for i in np.argwhere(bad)[0])}" if array.ndim else ""
            first = float(array[bad].flat[0])
            raise ConfigError(f"{prefix}{name}", f"must be finite and > 0, got {first!r}{where}")
