"""The margin engine and the venue rules it applies."""

from levopt.engine.market import Market, MarketConfig
from levopt.engine.simulate import BLOCK, Outcome, Trajectory, simulate_chunk, simulate_outcome, simulate_returns

__all__ = ["BLOCK", "Market", "MarketConfig", "Outcome", "Trajectory", "simulate_chunk", "simulate_outcome", "simulate_returns"]
