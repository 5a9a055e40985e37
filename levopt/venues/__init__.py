"""Exchange rule sets (tiered maintenance margin, leverage, funding) and exact liquidation prices.

Venues are looked up by name in :data:`VENUES`: ``binance_usdm``, ``hyperliquid``, ``bybit_linear``.
Their tier tables ship as dated CSV files under ``levopt/venues/data/``; :func:`load_brackets`
reads a user's table and :meth:`Venue.with_brackets` puts it in place.
"""

from levopt.venues._brackets import COLUMNS, Bracket, BracketTable, load_brackets, parse_brackets
from levopt.venues._liquidation import liquidation_price
from levopt.venues._margin import bracket_for, bracket_index, maintenance_margin, max_leverage
from levopt.venues._venue import BINANCE_USDM, BYBIT_LINEAR, HYPERLIQUID, VENUES, Venue, get_venue

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "COLUMNS",
    "HYPERLIQUID",
    "VENUES",
    "Bracket",
    "BracketTable",
    "Venue",
    "bracket_for",
    "bracket_index",
    "get_venue",
    "liquidation_price",
    "load_brackets",
    "maintenance_margin",
    "max_leverage",
    "parse_brackets",
]
