r"""Inverse (coin-margined) options, as listed on Deribit: premium and settlement in the coin.

An inverse BTC call with strike :math:`K` (USD) pays :math:`\max(S_T - K, 0)/S_T` BTC at expiry:
the USD payoff of a vanilla call, converted to coin at the settlement price. Its value in coin is
the USD value divided by the coin's USD price. With the coin as numeraire (the Radon–Nikodym
factor is :math:`S_T/F`, so a payoff of :math:`X/S_T` coins is worth :math:`E^Q[X]/F` coins before
discounting), :math:`B` the undiscounted Black-76 value on the USD forward :math:`F` and :math:`q`
the interest rate earned on the coin:

.. math:: c = e^{-qT}\,\frac{B(F, K, \sigma, T)}{F} = \frac{V}{F},

where :math:`V` is :func:`~levopt.options.black76` with ``discount`` :math:`= e^{-qT}`. This is
also the USD value :math:`e^{-rT}B` divided by the spot :math:`S = F e^{-(r-q)T}`. Deribit quotes
implied volatility on the forward (Deribit support, "Inverse Options"); with the coin's rate taken
as 0, ``discount = 1`` and :math:`c = B/F`.

Delta. Deribit reports an option's delta in coin as the Black–Scholes (USD) delta minus the
option's mark price in coin: "Net Transaction Delta = Black Scholes Delta − Mark Price of
Options" (Deribit API documentation, ``delta_total``). Its FAQ example: a call of delta 0.50 bought
for 0.10 BTC adds 0.40 to the account's delta, because the 0.10 BTC paid would itself have gained
in USD with the price. That is the sensitivity of the coin price to a relative move of the forward:

.. math:: \Delta_c = \Delta - c = F\,\frac{\partial c}{\partial F}
   = \frac{\partial c}{\partial \ln F},

the number of coins of USD exposure the option adds to a coin-margined account on top of its
equity. A call struck at 0 is worth one coin (at zero coin rate) and has :math:`\Delta_c = 0`; a
long inverse put deep in the money has :math:`\Delta_c \approx -K/F < -1`.
"""

from __future__ import annotations

import jax
from jax import Array
from jax.typing import ArrayLike

from levopt.options.pricing import Greeks, _black, _inputs, _linear_greeks, _price


def _inverse_greeks(forward, strike, vol, expiry, discount, omega) -> Greeks:
    g = _linear_greeks(forward, strike, vol, expiry, discount, omega)
    price = g.price / forward
    delta = g.delta - price
    return Greeks(
        price=price,
        delta=delta,
        gamma=g.gamma - delta / forward,
        vega=g.vega / forward,
        theta=g.theta / forward,
        vanna=g.vanna - g.vega / forward,
        volga=g.volga / forward,
    )


_inverse_greeks_kernel = jax.jit(_inverse_greeks)


@jax.jit
def _inverse_price_kernel(forward, strike, vol, expiry, discount, omega):
    return _price(_black(forward, strike, vol, expiry, discount, omega)) / forward


def inverse_price(
    forward: ArrayLike,
    strike: ArrayLike,
    vol: ArrayLike,
    expiry: ArrayLike,
    kind: str = "call",
    discount: ArrayLike = 1.0,
) -> Array:
    r"""Value in coin of an inverse (coin-settled) European option: :math:`c = V/F`.

    :math:`V` is :func:`~levopt.options.black76` with the same arguments. Pass the coin's own
    discount factor :math:`e^{-qT}` as ``discount`` (1 at a zero coin rate); then :math:`c` is the
    USD value of the linear option, :math:`e^{-rT}B`, divided by the spot price, and with equal
    USD and coin rates (both 0, say) :math:`c\,F` is that USD value itself.

    Args:
        forward: USD forward price :math:`F` of the coin for the expiry (> 0).
        strike: strike :math:`K` in USD (> 0).
        vol: annualized volatility :math:`\sigma` of the forward (>= 0).
        expiry: time to expiry :math:`T` in years.
        kind: ``"call"`` or ``"put"``.
        discount: the coin's discount factor to expiry.

    Returns:
        The premium in coin per option on one coin, of the broadcast shape.

    References:
        Deribit support, "Inverse Options" (premium in the base currency, implied volatility on
        the forward).
    """
    return _inverse_price_kernel(*_inputs(kind, forward, strike, vol, expiry, discount))


def inverse_greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    vol: ArrayLike,
    expiry: ArrayLike,
    kind: str = "call",
    discount: ArrayLike = 1.0,
) -> Greeks:
    r"""Coin price and Greeks of an inverse option, in coin, with Deribit's delta.

    With :math:`c = V/F` the coin price and :math:`V, \Delta, \Gamma, \mathcal V, \Theta`, vanna,
    volga the linear Black-76 quantities of :func:`~levopt.options.greeks`:

    .. math::

        \text{price} &= c = V/F \\
        \text{delta} &= \Delta_c = \Delta - c = F\,\partial c/\partial F
            \quad\text{(Deribit's delta, in coin)} \\
        \text{gamma} &= \partial\Delta_c/\partial F = \Gamma - \Delta_c/F \\
        \text{vega} &= \partial c/\partial\sigma = \mathcal V/F \\
        \text{theta} &= -\partial c/\partial T = \Theta/F \\
        \text{vanna} &= \partial\Delta_c/\partial\sigma = \text{vanna} - \mathcal V/F \\
        \text{volga} &= \partial^2 c/\partial\sigma^2 = \text{volga}/F

    delta, gamma and vanna describe the coin delta :math:`\Delta_c` a hedger offsets with
    futures; vega, theta and volga are sensitivities of the coin premium (per unit of vol, per
    year, at fixed forward and discount). Deribit's screens show vega, theta and gamma in the
    linear (USD) convention instead; those are the fields of :func:`~levopt.options.greeks`.

    Args:
        forward, strike, vol, expiry, kind, discount: as in :func:`inverse_price`.

    Returns:
        :class:`~levopt.options.Greeks` with the fields above, of the broadcast input shape.

    References:
        Deribit API documentation, ``delta_total`` ("Net Transaction Delta = Black Scholes Delta −
        Mark Price of Options") and FAQ "What does Delta Total in the account summary mean?".
    """
    return _inverse_greeks_kernel(*_inputs(kind, forward, strike, vol, expiry, discount))
