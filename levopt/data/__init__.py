"""Price history, funding rates, open interest and liquidations: loading and validating files,
fetching through ccxt with a cache.

ccxt, an optional extra, is imported by the fetch functions when they run.
"""

from __future__ import annotations

from levopt.data.crowd import load_liquidations, load_open_interest
from levopt.data.fetch import (
    FetchError,
    MissingDependencyError,
    fetch_funding_history,
    fetch_liquidation_history,
    fetch_ohlcv_history,
    fetch_open_interest_history,
    update_funding_cache,
    update_liquidation_cache,
    update_ohlcv_cache,
    update_open_interest_cache,
)
from levopt.data.load import (
    annualized_funding,
    detect_gaps,
    infer_frequency,
    load_funding,
    load_prices,
    log_returns,
    parse_frequency,
    resample_close,
)

__all__ = [
    "FetchError",
    "MissingDependencyError",
    "annualized_funding",
    "detect_gaps",
    "fetch_funding_history",
    "fetch_liquidation_history",
    "fetch_ohlcv_history",
    "fetch_open_interest_history",
    "infer_frequency",
    "load_funding",
    "load_liquidations",
    "load_open_interest",
    "load_prices",
    "log_returns",
    "parse_frequency",
    "resample_close",
    "update_funding_cache",
    "update_liquidation_cache",
    "update_ohlcv_cache",
    "update_open_interest_cache",
]
