"""Pure tier look-ups for the simulation engine: maintenance margin, bracket, maximum leverage.

Each takes an array namespace ``xp`` (numpy by default; ``jax.numpy`` works, so the functions can
sit inside ``jit``/``vmap``/``grad``) and returns an array of the notional's shape and float dtype.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from levopt.venues._brackets import Bracket
from levopt.venues._venue import Venue, get_venue


def bracket_index(venue: str | Venue, symbol: str | None, notional: Any, *, xp: ModuleType = np) -> Any:
    """0-based tier of each notional: tier n holds floor_n < |notional| ≤ cap_n.

    Notionals above the last cap map to the last tier (the venue would refuse the position; the
    requirement is extrapolated with the last tier's rate).

    Args:
        venue: a :class:`Venue` or registered name.
        symbol: the instrument; ``None`` for the venue's default.
        notional: position notional(s) in the settlement currency, any shape; the sign is ignored.
        xp: array namespace.

    Returns:
        Integer array of the notional's shape.
    """
    table = get_venue(venue).table(symbol)
    # Multiplying by 1.0 promotes integers to the default float and keeps float32 float32.
    n = xp.abs(xp.asarray(notional) * 1.0)
    return xp.searchsorted(xp.asarray(table.boundaries, dtype=n.dtype), n, side="left")


def _column_at(
    venue: str | Venue, symbol: str | None, notional: Any, xp: ModuleType, column: str
) -> tuple[Any, Any]:
    """(|notional| as float, the tier table's ``column`` at each notional's tier)."""
    n = xp.abs(xp.asarray(notional) * 1.0)
    values = xp.asarray(get_venue(venue).table(symbol).column(column), dtype=n.dtype)
    return n, values[bracket_index(venue, symbol, n, xp=xp)]


def maintenance_margin(venue: str | Venue, symbol: str | None, notional: Any, *, xp: ModuleType = np) -> Any:
    """Maintenance margin of a position of the given notional: N × MMR_n − A_n in N's tier n.

    Because the maintenance amounts chain as A_n = floor_n (MMR_n − MMR_{n−1}) + A_{n−1} (checked
    when a table is built), the result is continuous and piecewise linear in N, with slope MMR_n
    (Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts"; Hyperliquid
    Docs "Margin tiers"; Bybit "Margin Parameters").

    Args:
        venue: a :class:`Venue` or registered name.
        symbol: the instrument; ``None`` for the venue's default.
        notional: position notional(s) |quantity| × price, any shape; the sign is ignored.
        xp: array namespace (numpy or jax.numpy).

    Returns:
        Array of the notional's shape and float dtype.

    Example:
        >>> float(maintenance_margin("binance_usdm", "BTCUSDT", 500_000.0))  # 500,000 × 1% − 1,300
        3700.0
    """
    n, rate = _column_at(venue, symbol, notional, xp, "maintenance_rate")
    _, amount = _column_at(venue, symbol, n, xp, "maintenance_amount")
    return n * rate - amount


def max_leverage(venue: str | Venue, symbol: str | None, notional: Any, *, xp: ModuleType = np) -> Any:
    """The largest leverage the venue allows for a position of this notional (its tier's limit).

    Args:
        venue: a :class:`Venue` or registered name.
        symbol: the instrument; ``None`` for the venue's default.
        notional: position notional(s), any shape; the sign is ignored.
        xp: array namespace.

    Returns:
        Float array of the notional's shape; initial margin at that leverage is notional / leverage.
    """
    return _column_at(venue, symbol, notional, xp, "max_leverage")[1]


def bracket_for(venue: str | Venue, symbol: str | None, notional: float) -> Bracket:
    """The :class:`Bracket` (tier) holding a scalar notional: floor < |notional| ≤ cap.

    Notionals above the last cap get the last tier.
    """
    table = get_venue(venue).table(symbol)
    return table[table.index(float(notional))]
