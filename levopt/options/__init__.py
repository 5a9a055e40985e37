"""European option pricing: Black-76 and Black–Scholes values, Greeks, and inverse (coin-margined)
options as listed on Deribit. All functions are JAX: broadcasting, ``jit``/``vmap``/``grad``-able,
float32 or float64 following the inputs."""

from levopt.options.inverse import inverse_greeks, inverse_price
from levopt.options.margin import (
    DERIBIT_BTC_FUTURES,
    DERIBIT_OPTIONS,
    DERIBIT_SCENARIOS,
    DERIBIT_SOL_FUTURES,
    FutureMarginRules,
    Margin,
    OptionMarginRules,
    ScenarioMargin,
    ScenarioRules,
    future_margin,
    scenario_margin,
    shocked_vols,
    standard_book_margin,
    standard_option_margin,
)
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
    "DERIBIT_BTC_FUTURES",
    "DERIBIT_OPTIONS",
    "DERIBIT_SCENARIOS",
    "DERIBIT_SOL_FUTURES",
    "KINDS",
    "FutureMarginRules",
    "Greeks",
    "Margin",
    "OptionMarginRules",
    "ScenarioMargin",
    "ScenarioRules",
    "black76",
    "black_scholes",
    "check_option_inputs",
    "elasticity",
    "future_margin",
    "greeks",
    "inverse_greeks",
    "inverse_price",
    "option_sign",
    "scenario_margin",
    "shocked_vols",
    "standard_book_margin",
    "standard_option_margin",
]
