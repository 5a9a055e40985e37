"""Price history and funding rates: loading and validating files, fetching through ccxt with a cache.

Names are imported on first use (PEP 562), so ``levopt.data.cli`` stays light to import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_EXPORTS = {
    "annualized_funding": "levopt.data.load",
    "detect_gaps": "levopt.data.load",
    "infer_frequency": "levopt.data.load",
    "load_funding": "levopt.data.load",
    "load_prices": "levopt.data.load",
    "log_returns": "levopt.data.load",
    "parse_frequency": "levopt.data.load",
    "resample_close": "levopt.data.load",
    "FetchError": "levopt.data.fetch",
    "MissingDependencyError": "levopt.data.fetch",
    "fetch_funding_history": "levopt.data.fetch",
    "fetch_ohlcv_history": "levopt.data.fetch",
    "update_funding_cache": "levopt.data.fetch",
    "update_ohlcv_cache": "levopt.data.fetch",
}

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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'levopt.data' has no attribute {name!r}")
