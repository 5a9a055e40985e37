"""Price history and funding rates: loading and validating files, fetching through ccxt with a cache.

ccxt, an optional extra, is imported by the fetch functions when they run.
"""

from __future__ import annotations

from levopt.data.fetch import (
    FetchError,
    MissingDependencyError,
    fetch_funding_history,
    fetch_ohlcv_history,
    update_funding_cache,
    update_ohlcv_cache,
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
    "fetch_ohlcv_history",
    "infer_frequency",
    "load_funding",
    "load_prices",
    "log_returns",
    "parse_frequency",
    "resample_close",
    "update_funding_cache",
    "update_ohlcv_cache",
]
