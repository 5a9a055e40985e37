"""Exchange rule sets (tiered maintenance margin, leverage, funding) and exact liquidation prices.

Venues are looked up by name in :data:`VENUES`: ``binance_usdm``, ``hyperliquid``, ``bybit_linear``.
Their tier tables ship as dated CSV files under ``levopt/venues/data/``; :func:`load_brackets`
reads a user's table and :meth:`Venue.with_brackets` puts it in place. :func:`fetch_brackets`
downloads a venue's current tiers through ccxt, :func:`write_brackets` saves a table as such a file
and :func:`update_tiers_cache` does both, keeping the file as a cache (``levopt data tiers``).
:func:`live_candles`, :func:`live_funding` and :func:`account_positions` read recent bars, funding
rates and an account's open positions through ccxt (read only; API keys from
``LEVOPT_<VENUE>_API_KEY`` and ``LEVOPT_<VENUE>_API_SECRET``); :func:`feed_report` says how fresh
and complete a price series is.
"""

from levopt.venues._brackets import (
    COLUMNS,
    Bracket,
    BracketTable,
    format_brackets,
    load_brackets,
    parse_brackets,
    write_brackets,
)
from levopt.venues._liquidation import liquidation_price
from levopt.venues._margin import bracket_for, bracket_index, maintenance_margin, max_leverage
from levopt.venues._venue import BINANCE_USDM, BYBIT_LINEAR, HYPERLIQUID, VENUES, Venue, get_venue
from levopt.venues.fetch import (
    CCXT_IDS,
    TierCache,
    ccxt_symbol,
    fetch_brackets,
    tiers_cache_dir,
    tiers_cache_path,
    update_tiers_cache,
    venue_symbol,
)
from levopt.venues.live import (
    STALE_BARS,
    FeedReport,
    account_positions,
    credential_variables,
    feed_report,
    live_candles,
    live_funding,
)

__all__ = [
    "BINANCE_USDM",
    "BYBIT_LINEAR",
    "CCXT_IDS",
    "COLUMNS",
    "HYPERLIQUID",
    "STALE_BARS",
    "VENUES",
    "Bracket",
    "BracketTable",
    "FeedReport",
    "TierCache",
    "Venue",
    "account_positions",
    "bracket_for",
    "bracket_index",
    "ccxt_symbol",
    "credential_variables",
    "feed_report",
    "fetch_brackets",
    "format_brackets",
    "get_venue",
    "liquidation_price",
    "live_candles",
    "live_funding",
    "load_brackets",
    "maintenance_margin",
    "max_leverage",
    "parse_brackets",
    "tiers_cache_dir",
    "tiers_cache_path",
    "update_tiers_cache",
    "venue_symbol",
    "write_brackets",
]
