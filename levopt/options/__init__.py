"""European option pricing: Black-76 and Black–Scholes values, Greeks, and inverse (coin-margined)
options as listed on Deribit. All functions are JAX: broadcasting, ``jit``/``vmap``/``grad``-able,
float32 or float64 following the inputs."""

from levopt.options.inverse import inverse_greeks, inverse_price
from levopt.options.pricing import (
    KINDS,
    Greeks,
    black76,
    black_scholes,
    check_option_inputs,
    elasticity,
    greeks,
    option_sign,
)

__all__ = [
    "KINDS",
    "Greeks",
    "black76",
    "black_scholes",
    "check_option_inputs",
    "elasticity",
    "greeks",
    "inverse_greeks",
    "inverse_price",
    "option_sign",
]
