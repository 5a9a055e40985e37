"""Download OHLCV bars, funding rates, open interest and liquidations through ccxt, each cached in a
Parquet file that later runs extend.

ccxt is an optional dependency (``pip install 'levopt[fetch]'``); it is imported only here, when a
fetch is requested. Everything below takes the exchange object as an argument, so tests drive it
with a fake exchange and never touch the network.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from levopt.data.crowd import liquidations_from_records
from levopt.data.load import parse_frequency
from levopt.errors import ConfigError, DataError, LevoptError
from levopt.io import atomic_write_bytes

OHLCV_COLUMNS = ("open", "high", "low", "close", "volume")
MAX_PAGES = 100_000
"""Safety bound on requests in one fetch (a buggy exchange that never advances cannot loop forever)."""


class MissingDependencyError(LevoptError):
    """An optional dependency is not installed; the message says how to install it."""


class FetchError(LevoptError):
    """The exchange refused or failed a request (network, rate limit, unknown symbol)."""


def import_ccxt() -> Any:
    """The ``ccxt`` module, or a one-line :class:`MissingDependencyError`."""
    try:
        import ccxt
    except ImportError:
        raise MissingDependencyError(
            "fetching data needs ccxt, which is not installed: pip install ccxt (or the extra, pip install 'levopt[fetch]')"
        ) from None
    return ccxt


def make_exchange(name: str) -> Any:
    """A ccxt exchange instance with ccxt's own rate limiting enabled."""
    ccxt = import_ccxt()
    cls = getattr(ccxt, name, None)
    if cls is None or not isinstance(cls, type):
        known = getattr(ccxt, "exchanges", [])
        hint = f" ({len(known)} known, e.g. binance, bybit, okx, kraken)" if known else ""
        raise ConfigError("--exchange", f"unknown exchange {name!r}{hint}")
    return cls({"enableRateLimit": True})


def call_exchange(exchange: Any, method: str, *args: Any, auth_hint: str = "", **kwargs: Any) -> Any:
    """Call an exchange method, turning ccxt's errors into one-line :class:`FetchError`s
    (``auth_hint`` is appended when the exchange refused an unsigned or badly signed request)."""
    try:
        return getattr(exchange, method)(*args, **kwargs)
    except Exception as exc:
        ccxt_base = _ccxt_base_error()
        if ccxt_base is not None and isinstance(exc, ccxt_base):
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            auth = getattr(sys.modules.get("ccxt"), "AuthenticationError", None)
            hint = auth_hint if auth is not None and isinstance(exc, auth) else ""
            raise FetchError(
                f"{exchange_id(exchange)} {method}: {type(exc).__name__}: {first}{hint}"
            ) from None
        raise


def _ccxt_base_error() -> type[BaseException] | None:

    module = sys.modules.get("ccxt")
    return getattr(module, "BaseError", None) if module is not None else None


def exchange_id(exchange: Any) -> str:
    """The ccxt id of an exchange object (its class name for a stand-in)."""
    return str(getattr(exchange, "id", type(exchange).__name__))


def timeframe_ms(timeframe: str) -> int:
    """Length of a ccxt timeframe string ('1m', '4h', '1d', '1w') in milliseconds."""
    try:
        return int(parse_frequency(timeframe).total_seconds() * 1000)
    except DataError:
        raise ConfigError(
            "--timeframe", f"cannot read {timeframe!r}; use e.g. 1m, 15m, 1h, 4h, 1d, 1w"
        ) from None


def to_ms(when: str | pd.Timestamp | int) -> int:
    """Milliseconds since the epoch of a date string (UTC), a Timestamp, or ms already."""
    if isinstance(when, int | np.integer):
        return int(when)
    ts = pd.Timestamp(when)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def fetch_ohlcv_history(
    exchange: Any,
    symbol: str,
    timeframe: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 1000,
    now_ms: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """All complete bars from ``since`` (inclusive) to ``until`` (exclusive), page by page.

    Each request asks for ``limit`` bars starting at the bar after the last one received, until
    the exchange returns nothing new. The bar still open at ``now_ms`` (default: the clock) is
    left out, so a cache never holds a partial bar.

    Returns:
        DataFrame indexed by UTC bar open time with float columns open, high, low, close, volume.
    """
    if not getattr(exchange, "has", {}).get("fetchOHLCV", True):
        raise FetchError(f"{exchange_id(exchange)} does not provide OHLCV bars (fetchOHLCV)")
    step = timeframe_ms(timeframe)
    start = to_ms(since)
    stop = to_ms(until) if until is not None else None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rows: list[list[float]] = []
    cursor = start
    for _ in range(MAX_PAGES):
        batch = call_exchange(exchange, "fetch_ohlcv", symbol, timeframe, since=cursor, limit=limit)
        batch = [list(b[:6]) for b in batch or [] if b[0] >= cursor]
        batch = [b for b in batch if (stop is None or b[0] < stop) and b[0] + step <= now]
        if not batch:
            break
        rows.extend(batch)
        cursor = int(batch[-1][0]) + step
        if progress is not None:
            progress(len(rows), cursor)
        if stop is not None and cursor >= stop:
            break
    return _ohlcv_frame(rows)


def _ohlcv_frame(rows: list[list[float]]) -> pd.DataFrame:
    arr = np.asarray(rows, dtype=float).reshape(-1, 6)
    index = pd.DatetimeIndex(
        pd.to_datetime(arr[:, 0].astype(np.int64), unit="ms", utc=True), name="timestamp"
    )
    df = pd.DataFrame(arr[:, 1:], index=index, columns=list(OHLCV_COLUMNS))
    return df[~df.index.duplicated(keep="last")].sort_index()


_HISTORIES = {
    "funding": (
        "fetchFundingRateHistory",
        "has no funding-rate history in ccxt (fetchFundingRateHistory); "
        "drop --funding or use an exchange with perpetuals (binance, bybit, okx)",
    ),
    "open_interest": (
        "fetchOpenInterestHistory",
        "has no open-interest history in ccxt (fetchOpenInterestHistory); "
        "drop --open-interest or use an exchange that serves it (binance, bybit, okx)",
    ),
    "liquidations": (
        "fetchLiquidations",
        "has no public liquidation history in ccxt (fetchLiquidations), as most exchanges; "
        "drop --liquidations and load a CSV of the venue's liquidations instead "
        "(levopt.data.load_liquidations reads the Binance, Bybit and ccxt layouts)",
    ),
}
"""kind -> (the ccxt ``has`` key that serves it, what to say when the exchange lacks it)."""


def require_history(exchange: Any, kind: str) -> None:
    """Check that ``exchange`` serves the history ``kind`` (funding, open_interest, liquidations)
    before any request.

    Raises:
        FetchError: one line naming the exchange, the ccxt capability and what to do instead.
    """
    feature, missing = _HISTORIES[kind]
    if not getattr(exchange, "has", {}).get(feature):
        raise FetchError(f"{exchange_id(exchange)} {missing}")


def fetch_funding_history(
    exchange: Any,
    symbol: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 1000,
) -> pd.Series:
    """Funding-rate events from ``since`` on, paginated like :func:`fetch_ohlcv_history`.

    Returns:
        Series ``funding_rate`` (decimal per funding interval) indexed by UTC event time.
    """
    require_history(exchange, "funding")
    cursor = to_ms(since)
    stop = to_ms(until) if until is not None else None
    times: list[int] = []
    rates: list[float] = []
    for _ in range(MAX_PAGES):
        batch = call_exchange(exchange, "fetch_funding_rate_history", symbol, since=cursor, limit=limit)
        batch = [b for b in batch or [] if b.get("timestamp") is not None and b["timestamp"] >= cursor]
        batch = [b for b in batch if stop is None or b["timestamp"] < stop]
        if not batch:
            break
        times.extend(int(b["timestamp"]) for b in batch)
        rates.extend(float(b["fundingRate"]) for b in batch)
        cursor = int(batch[-1]["timestamp"]) + 1
    index = pd.DatetimeIndex(
        pd.to_datetime(np.asarray(times, dtype=np.int64), unit="ms", utc=True), name="timestamp"
    )
    out = pd.Series(np.asarray(rates, dtype=float), index=index, name="funding_rate")
    return out[~out.index.duplicated(keep="last")].sort_index()


def _write_parquet(path: Path, frame: pd.DataFrame, attrs: dict[str, Any]) -> None:
    frame = frame.copy()
    frame.attrs = dict(attrs)
    buf = io.BytesIO()
    frame.to_parquet(buf)
    atomic_write_bytes(path, buf.getvalue())


def _read_cache(path: Path, attrs: dict[str, Any]) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        cached = pd.read_parquet(path)
    except Exception as exc:
        raise DataError(
            f"{path.name}: cannot read the cached Parquet file ({exc}); delete it to refetch"
        ) from None
    for key, value in attrs.items():
        if key in cached.attrs and cached.attrs[key] != value:
            raise DataError(
                f"{path.name}: holds {key} {cached.attrs[key]!r}, not {value!r}; use another --out file or delete it"
            )
    if not isinstance(cached.index, pd.DatetimeIndex):
        raise DataError(f"{path.name}: not a levopt price cache (no timestamp index); use another --out file")
    cached.index = cached.index.as_unit("ns")
    return cached


def _resume_ms(cached: pd.DataFrame | None, since: str | int, after_ms: int) -> int:
    """Where a fetch into a cache starts: ``since``, or ``after_ms`` past its last row."""
    start = to_ms(since)
    if cached is not None and len(cached):
        start = max(start, int(cached.index[-1].value // 1_000_000) + after_ms)
    return start


def _store(
    out: Path, attrs: dict[str, Any], parts: list[Any], empty: str, *, events: bool = False
) -> pd.DataFrame:
    """Cached and new rows merged, sorted and written to ``out``; a later duplicate timestamp
    replaces an earlier one unless the rows are ``events`` (several may share a time)."""
    frames = [f for f in parts if f is not None and len(f)]
    if not frames:
        raise FetchError(empty)
    merged = pd.concat(frames)
    if events:
        merged = merged.iloc[np.argsort(merged.index.asi8, kind="stable")]
    else:
        merged = merged[~merged.index.duplicated(keep="last")].sort_index()
    _write_parquet(out, merged, attrs)
    return merged


def update_ohlcv_cache(
    exchange: Any,
    out: str | Path,
    symbol: str,
    timeframe: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 1000,
    now_ms: int | None = None,
) -> tuple[pd.DataFrame, int]:
    """Fetch bars into the Parquet file ``out``, resuming after its last bar if it exists.

    Returns:
        (all bars in the file after the update, number of new bars).
    """
    out = Path(out)
    attrs = {"exchange": exchange_id(exchange), "symbol": symbol, "timeframe": timeframe}
    cached = _read_cache(out, attrs)
    start = _resume_ms(cached, since, timeframe_ms(timeframe))
    new = fetch_ohlcv_history(exchange, symbol, timeframe, start, until=until, limit=limit, now_ms=now_ms)
    empty = f"{attrs['exchange']} returned no {timeframe} bars for {symbol} since {since}"
    return _store(out, attrs, [cached, new], empty), len(new)


def update_funding_cache(
    exchange: Any,
    out: str | Path,
    symbol: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 1000,
) -> tuple[pd.Series, int]:
    """Fetch funding rates into the Parquet file ``out`` (column ``funding_rate``), resuming."""
    out = Path(out)
    attrs = {"exchange": exchange_id(exchange), "symbol": symbol, "kind": "funding"}
    cached = _read_cache(out, attrs)
    start = _resume_ms(cached, since, 1)
    new = fetch_funding_history(exchange, symbol, start, until=until, limit=limit)
    parts = [cached[["funding_rate"]] if cached is not None else None, new.to_frame("funding_rate")]
    empty = f"{attrs['exchange']} returned no funding rates for {symbol} since {since}"
    return _store(out, attrs, parts, empty)["funding_rate"], len(new)


def fetch_open_interest_history(
    exchange: Any,
    symbol: str,
    timeframe: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 500,
) -> pd.DataFrame:
    """Open interest every ``timeframe`` from ``since`` (inclusive) to ``until`` (exclusive).

    Pages as :func:`fetch_ohlcv_history`. Until the first record arrives an empty page skips
    ``limit`` periods ahead, since some exchanges answer a window of ``limit`` periods after
    ``since`` (ccxt's Binance does) and have nothing that far back: Binance serves only the last
    30 days of this history. Records with an amount but no value (Bybit's linear perpetuals give
    base units only) are valued at the open of the symbol's bar at that time, fetched with
    :func:`fetch_ohlcv_history`; records left without a value are dropped.

    Returns:
        DataFrame indexed by UTC ``timestamp`` with float columns ``open_interest`` (value in the
        settlement currency) and ``open_interest_amount`` (base units, NaN where not given).

    Raises:
        FetchError: the exchange lacks ``fetchOpenInterestHistory``, or a request failed (one line).
    """
    require_history(exchange, "open_interest")
    step = timeframe_ms(timeframe)
    cursor = to_ms(since)
    stop = to_ms(until) if until is not None else None
    end = stop if stop is not None else int(time.time() * 1000)
    records: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        try:
            page = call_exchange(
                exchange, "fetch_open_interest_history", symbol, timeframe, since=cursor, limit=limit
            )
        except FetchError as exc:
            if records:
                raise
            raise FetchError(
                f"{exc} (open-interest history reaches back a limited time, Binance's 30 days: "
                "a later --since may help)"
            ) from None
        page = [r for r in page or [] if r.get("timestamp") is not None and r["timestamp"] >= cursor]
        page = sorted(
            (r for r in page if stop is None or r["timestamp"] < stop), key=lambda r: r["timestamp"]
        )
        if page:
            records.extend(page)
            cursor = int(page[-1]["timestamp"]) + step
        elif records:
            break
        else:
            cursor += limit * step
        if cursor >= end:
            break
    frame = _open_interest_frame(records)
    if frame["open_interest"].isna().any():
        frame = _value_from_bars(exchange, symbol, timeframe, frame)
    return frame


def _number(value: Any) -> float:
    return float(value) if value is not None else np.nan


def _open_interest_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    times = np.asarray([int(r["timestamp"]) for r in records], dtype=np.int64)
    index = pd.DatetimeIndex(pd.to_datetime(times, unit="ms", utc=True), name="timestamp")
    frame = pd.DataFrame(
        {
            "open_interest": [_number(r.get("openInterestValue")) for r in records],
            "open_interest_amount": [_number(r.get("openInterestAmount")) for r in records],
        },
        index=index,
        dtype=float,
    )
    frame = frame[frame.notna().any(axis=1)]
    return frame[~frame.index.duplicated(keep="last")].sort_index()


def _value_from_bars(exchange: Any, symbol: str, timeframe: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Fill missing values with amount × the open of the bar holding the timestamp."""
    step = timeframe_ms(timeframe)
    first = int(frame.index[0].value // 1_000_000)
    last = int(frame.index[-1].value // 1_000_000)
    bars = fetch_ohlcv_history(exchange, symbol, timeframe, first, until=last + step)
    price = bars["open"].reindex(frame.index, method="ffill", tolerance=pd.Timedelta(step, unit="ms"))
    frame = frame.copy()
    frame["open_interest"] = frame["open_interest"].fillna(frame["open_interest_amount"] * price)
    return frame[frame["open_interest"].notna()]


def update_open_interest_cache(
    exchange: Any,
    out: str | Path,
    symbol: str,
    timeframe: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 500,
) -> tuple[pd.DataFrame, int]:
    """Fetch open interest into the Parquet file ``out``, resuming after its last row
    (:func:`levopt.data.load_open_interest` reads it).

    Returns:
        (all rows in the file after the update, number of new rows).
    """
    out = Path(out)
    attrs = {
        "exchange": exchange_id(exchange),
        "symbol": symbol,
        "timeframe": timeframe,
        "kind": "open_interest",
    }
    columns = ["open_interest", "open_interest_amount"]
    cached = _read_cache(out, attrs)
    _check_columns(cached, out, columns, "open-interest")
    start = _resume_ms(cached, since, timeframe_ms(timeframe))
    new = fetch_open_interest_history(exchange, symbol, timeframe, start, until=until, limit=limit)
    parts = [f[columns] if f is not None else None for f in (cached, new)]
    empty = f"{attrs['exchange']} returned no open interest for {symbol} since {since}"
    return _store(out, attrs, parts, empty), len(new)


def _check_columns(cached: pd.DataFrame | None, out: Path, columns: list[str], what: str) -> None:
    if cached is not None and not set(columns) <= set(cached.columns):
        raise DataError(
            f"{out.name}: not a levopt {what} cache (columns {list(cached.columns)}, not {columns}); "
            "use another file or delete it"
        )


def fetch_liquidation_history(
    exchange: Any,
    symbol: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 1000,
) -> pd.DataFrame:
    """Liquidation events from ``since`` (inclusive) to ``until`` (exclusive), page by page.

    Several events can share a millisecond, so each page starts at the last one received and
    skips the events of that millisecond already taken. ccxt's ``side`` is read as
    :func:`levopt.data.load_liquidations` reads it: long/short is the liquidated position,
    buy/sell the side of the liquidation order (sell = a long liquidated). Few exchanges serve
    public liquidation history through ccxt; Binance and Bybit do not.

    Returns:
        DataFrame in the shape of :func:`levopt.data.load_liquidations`: float columns ``long``
        and ``short`` (notional in the settlement currency) indexed by UTC ``timestamp``.

    Raises:
        FetchError: the exchange lacks ``fetchLiquidations``, or a request failed (one line).
        DataError: a record without a side or notional.
    """
    require_history(exchange, "liquidations")
    cursor = to_ms(since)
    stop = to_ms(until) if until is not None else None
    records: list[dict[str, Any]] = []
    taken = 0  # events at the cursor's millisecond already in records
    for _ in range(MAX_PAGES):
        page = call_exchange(exchange, "fetch_liquidations", symbol, since=cursor, limit=limit)
        page = [r for r in page or [] if r.get("timestamp") is not None and r["timestamp"] >= cursor]
        page = sorted(
            (r for r in page if stop is None or r["timestamp"] < stop), key=lambda r: r["timestamp"]
        )
        fresh = [r for r in page if r["timestamp"] == cursor][taken:]
        fresh += [r for r in page if r["timestamp"] > cursor]
        if not fresh:
            if len(page) < limit or page[-1]["timestamp"] != cursor:
                break
            cursor, taken = cursor + 1, 0  # a whole page in one millisecond: the rest is out of reach
            continue
        records.extend(fresh)
        last = int(fresh[-1]["timestamp"])
        taken = (taken if last == cursor else 0) + sum(1 for r in fresh if r["timestamp"] == last)
        cursor = last
    if not records:
        empty = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name="timestamp")
        return pd.DataFrame({"long": [], "short": []}, index=empty, dtype=float)
    return liquidations_from_records(records, f"{exchange_id(exchange)} {symbol} liquidations")


def update_liquidation_cache(
    exchange: Any,
    out: str | Path,
    symbol: str,
    since: str | int,
    *,
    until: str | int | None = None,
    limit: int = 1000,
) -> tuple[pd.DataFrame, int]:
    """Fetch liquidations into the Parquet file ``out``, resuming after the millisecond of its
    last event (:func:`levopt.data.load_liquidations` reads it).

    Returns:
        (all events in the file after the update, number of new events).
    """
    out = Path(out)
    attrs = {"exchange": exchange_id(exchange), "symbol": symbol, "kind": "liquidations"}
    columns = ["long", "short"]
    cached = _read_cache(out, attrs)
    _check_columns(cached, out, columns, "liquidation")
    start = _resume_ms(cached, since, 1)
    new = fetch_liquidation_history(exchange, symbol, start, until=until, limit=limit)
    parts = [f[columns] if f is not None else None for f in (cached, new)]
    empty = f"{attrs['exchange']} returned no liquidations for {symbol} since {since}"
    return _store(out, attrs, parts, empty, events=True), len(new)


def perpetual_symbol(symbol: str) -> str:
    """The ccxt linear-perpetual symbol of a spot pair: 'BTC/USDT' -> 'BTC/USDT:USDT'."""
    if ":" in symbol or "/" not in symbol:
        return symbol
    return f"{symbol}:{symbol.split('/')[1]}"
