"""The margin engine and the venue rules it applies."""

from levopt.engine.market import Market, MarketConfig
from levopt.engine.simulate import (
    BLOCK,
    CascadeTotals,
    Outcome,
    Trajectory,
    draw_noise,
    liquidation_level,
    simulate_chunk,
    simulate_outcome,
    simulate_outcome_jit,
    simulate_returns,
)

__all__ = [
    "BLOCK",
    "CascadeTotals",
    "draw_noise",
    "liquidation_level",
    "Market",
    "MarketConfig",
    "Outcome",
    "Trajectory",
    "simulate_chunk",
    "simulate_outcome",
    "simulate_outcome_jit",
    "simulate_returns",
]
