"""Live market and account data through ccxt: recent closed bars, funding rates, open positions.

What a "position risk now" check reads before it computes anything:

* :func:`live_candles`: the latest closed OHLCV bars of a perpetual, paginated, the bar still open
  left out, as a frame shaped like :func:`levopt.data.load_prices` returns, with a
  :class:`FeedReport` saying how fresh and complete it is;
* :func:`live_funding`: recent funding rates, shaped like :func:`levopt.data.load_funding` returns;
* :func:`account_positions`: the account's open positions and wallet balance, read with the
  venue's API key taken from the environment (``LEVOPT_<VENUE>_API_KEY`` and
  ``LEVOPT_<VENUE>_API_SECRET``, e.g. ``LEVOPT_BINANCE_USDM_API_KEY``). Only ``fetch_*`` methods
  of the exchange are ever called: nothing is written to the account, so a read-only key is enough;
* :func:`feed_report`: the same health check for any price frame, e.g. a saved file read with
  :func:`levopt.data.load_prices`.

Every request goes through :func:`levopt.data.fetch.call_exchange`, so a ccxt error arrives as a
one-line :class:`~levopt.data.FetchError`; ccxt itself is imported only when an exchange is made
(:class:`~levopt.data.MissingDependencyError` names the ``fetch`` extra when it is missing).
Callers and tests may pass their own ``exchange`` object instead.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from levopt.data.fetch import (
    FetchError,
    call_exchange,
    exchange_id,
    fetch_funding_history,
    fetch_ohlcv_history,
    make_exchange,
    timeframe_ms,
    to_ms,
)
from levopt.data.load import detect_gaps, format_frequency, infer_frequency, parse_frequency
from levopt.errors import ConfigError, DataError
from levopt.venues.fetch import CCXT_IDS, ccxt_id, ccxt_symbol, venue_symbol

STALE_BARS = 2.0
"""A feed whose last bar closed more than this many bar lengths ago is reported stale."""

Now = str | dt.datetime | pd.Timestamp | int | None
"""A point in time: a date string (UTC when naive), a datetime or Timestamp, ms since the epoch,
or None for the clock."""


@dataclass(frozen=True)
class FeedReport:
    """What a price feed held and how healthy it is.

    Attributes:
        source: where the bars came from ("ccxt binanceusdm BTC/USDT:USDT 1h", or a file name).
        first: ISO UTC open time of the first bar ("2025-06-01T00:00:00Z").
        last: ISO UTC open time of the last bar.
        bars: number of bars.
        frequency: the bar length ("1h").
        gaps: bars missing inside the window (between ``first`` and ``last``).
        stale_bars: (now − close time of the last bar) / bar length. About 0 for a live feed, up to
            1 just before the next bar closes; above :data:`STALE_BARS` the feed is stale; below 0
            the last bar was still open at ``now`` (its close is not final).
        warnings: one-line messages for a human: stale feed, gaps, a partial last bar, a shorter
            history than asked for. Empty for a healthy feed.
    """

    source: str
    first: str
    last: str
    bars: int
    frequency: str
    gaps: int
    stale_bars: float
    warnings: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        """True when the last bar closed more than :data:`STALE_BARS` bar lengths ago."""
        return self.stale_bars > STALE_BARS

    def summary(self) -> str:
        """One line: source, bars, window, gaps and freshness."""
        return (
            f"{self.source}: {self.bars} {self.frequency} bars {self.first} to {self.last}, "
            f"{self.gaps} missing, last bar closed {self.stale_bars:.1f} bars ago"
        )


# ---------------------------------------------------------------------------------------------
# Helpers


def _utc(now: Now) -> pd.Timestamp:
    """``now`` as a UTC Timestamp (nanosecond unit); None is the clock."""
    if now is None:
        return pd.Timestamp.now(tz="UTC").as_unit("ns")
    if isinstance(now, int | np.integer) and not isinstance(now, bool):
        return pd.Timestamp(int(now), unit="ms", tz="UTC").as_unit("ns")
    ts = pd.Timestamp(now)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("ns")


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _exchange(venue: str, exchange: Any) -> Any:
    """The caller's exchange, or a new one for the venue (public endpoints, ccxt rate limiting)."""
    return exchange if exchange is not None else make_exchange(ccxt_id(venue))


def _number(value: Any) -> float | None:
    """A finite float, or None for a missing or unreadable value (ccxt serves None or strings)."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


class _Served:
    """Delegates to an exchange, noting the newest bar its ``fetch_ohlcv`` served, so that a bar
    still open (left out by :func:`fetch_ohlcv_history`) can be reported."""

    def __init__(self, exchange: Any):
        self._exchange = exchange
        self.newest: int | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._exchange, name)

    def fetch_ohlcv(self, *args: Any, **kwargs: Any) -> Any:
        rows = self._exchange.fetch_ohlcv(*args, **kwargs)
        for row in rows or []:
            stamp = _number(row[0]) if len(row) else None
            if stamp is not None and (self.newest is None or stamp > self.newest):
                self.newest = int(stamp)
        return rows


# ---------------------------------------------------------------------------------------------
# Feed health


def feed_report(
    frame: pd.DataFrame | pd.Series,
    *,
    source: str,
    now: Now = None,
    frequency: str | pd.Timedelta | None = None,
) -> FeedReport:
    """How fresh and complete a bar series is: missing bars, age of the last bar, a partial last bar.

    With Δ the bar length (``frequency``, else the most common spacing, :func:`infer_frequency`)
    and t_last the open time of the last bar,

        stale_bars = (now − (t_last + Δ)) / Δ,

    so a feed that is up to date has 0 ≤ stale_bars < 1. A gap is a difference between
    consecutive bars larger than Δ; it hides round(difference / Δ) − 1 bars
    (:func:`levopt.data.detect_gaps`).

    Args:
        frame: bars indexed by their UTC open time, as :func:`levopt.data.load_prices` or
            :func:`live_candles` return them (a naive index is read as UTC).
        source: what the bars are, for the report (a file name, "ccxt binanceusdm BTC/USDT:USDT 1h").
        now: the time to measure staleness against (default: the clock).
        frequency: the bar length, e.g. "1h" (default: inferred; needed for a single bar).

    Returns:
        A :class:`FeedReport`; ``warnings`` names a stale feed (stale_bars > :data:`STALE_BARS`),
        missing bars and a last bar still open at ``now``.

    Raises:
        DataError: no bars, or a single bar without ``frequency``.
    """
    index = pd.DatetimeIndex(frame.index)
    index = (index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")).as_unit("ns")
    if len(index) == 0:
        raise DataError(f"{source}: no bars to report on")
    try:
        step = parse_frequency(frequency) if frequency is not None else infer_frequency(index)
    except DataError as exc:
        raise DataError(f"{source}: {exc}; pass the bar length (frequency='1h')") from None
    freq = format_frequency(step)
    holes = detect_gaps(index, step)
    gaps = int(holes["missing"].sum())
    at = _utc(now)
    last_close = index[-1] + step
    stale_bars = float((at - last_close) / step)

    warnings: list[str] = []
    if stale_bars > STALE_BARS:
        warnings.append(
            f"stale feed: the last {freq} bar closed {stale_bars:.1f} bars ago, at {_iso(last_close)} "
            f"(now {_iso(at)}); later prices are unknown"
        )
    if stale_bars < 0:
        warnings.append(
            f"partial bar: the last {freq} bar (opened {_iso(index[-1])}) was still open at {_iso(at)}, "
            "so its close is not final; drop it (load_prices(..., drop_last_partial=True))"
        )
    if gaps:
        worst = int(holes["missing"].idxmax())
        warnings.append(
            f"gaps: {gaps} missing {freq} bar{'s' if gaps != 1 else ''} in {len(holes)} "
            f"gap{'s' if len(holes) != 1 else ''}, the largest {int(holes['missing'].iloc[worst])} "
            f"after {_iso(holes['before'].iloc[worst])}"
        )
    return FeedReport(
        source=source,
        first=_iso(index[0]),
        last=_iso(index[-1]),
        bars=len(index),
        frequency=freq,
        gaps=gaps,
        stale_bars=stale_bars,
        warnings=tuple(warnings),
    )


# ---------------------------------------------------------------------------------------------
# Market data


def live_candles(  # long because its docstring states the window rule and every argument and error
    venue: str,
    symbol: str,
    *,
    timeframe: str = "1h",
    bars: int = 24 * 365,
    exchange: Any = None,
    now: Now = None,
    limit: int = 1000,
) -> tuple[pd.DataFrame, FeedReport]:
    """The latest ``bars`` closed OHLCV bars of a perpetual, with a report on the feed's health.

    The window is the ``bars`` bar lengths Δ before t₀, the start of the bar open at ``now``
    (t₀ = ⌊now / Δ⌋·Δ): the closed bars that close after t₀ − bars·Δ are kept, at most ``bars`` of
    them (a bar opening off the epoch grid, e.g. a weekly bar opening on Monday, counts when it
    closes inside the window). The exchange is paged ``limit`` bars at a time
    (:func:`levopt.data.fetch_ohlcv_history`) and the bar still open at ``now`` is left out. A feed
    that stopped before ``now`` gives fewer bars (the report says stale and short).

    Args:
        venue: a levopt venue (binance_usdm, bybit_linear, hyperliquid) or a ccxt exchange id.
        symbol: the venue's symbol (BTCUSDT; BTC on Hyperliquid) or ccxt's (BTC/USDT:USDT).
        timeframe: the bar length, as ccxt spells it (1m, 15m, 1h, 4h, 1d).
        bars: how many closed bars to return (default: a year of hourly bars). A venue serving
            less history (Hyperliquid keeps 5000 bars) returns fewer, with a warning.
        exchange: a ccxt exchange object (default: a new, unauthenticated one for ``venue``).
        now: the time the open bar is judged against (default: the clock).
        limit: bars per request.

    Returns:
        (frame, report): the frame as :func:`levopt.data.load_prices` returns one: indexed by a UTC
        ``DatetimeIndex`` named ``timestamp`` (bar open times, sorted, unique) with float columns
        open, high, low, close, volume, and ``attrs["source"]`` = ``report.source``
        ("ccxt binanceusdm BTC/USDT:USDT 1h"); the report as :func:`feed_report`, its warnings
        also naming the open bar left out and a history shorter than asked for.

    Raises:
        ConfigError: unknown venue, symbol or timeframe, or ``bars`` < 1.
        FetchError: a request failed, the exchange serves no OHLCV bars, returned none, or served
            a close that is not a positive number.
        MissingDependencyError: ccxt is not installed (and no ``exchange`` was given).
    """
    if isinstance(bars, bool) or not isinstance(bars, int | np.integer) or bars < 1:
        raise ConfigError("bars", f"{bars!r}; allowed: a whole number of bars >= 1")
    step_ms = timeframe_ms(timeframe)
    unified = ccxt_symbol(symbol, venue)
    ex = _exchange(venue, exchange)
    at = _utc(now)
    now_ms = to_ms(at)
    window_start = now_ms // step_ms * step_ms - int(bars) * step_ms
    served = _Served(ex)
    frame = fetch_ohlcv_history(
        served, unified, timeframe, window_start - step_ms, now_ms=now_ms, limit=limit
    )
    closes_inside = frame.index > pd.Timestamp(window_start - step_ms, unit="ms", tz="UTC")
    frame = frame[closes_inside].iloc[-int(bars) :].copy()
    ident = exchange_id(ex)
    source = f"ccxt {ident} {unified} {timeframe}"
    if frame.empty:
        raise FetchError(f"{ident} returned no closed {timeframe} bars of {unified} before {_iso(at)}")
    bad = np.flatnonzero(~(frame["close"].to_numpy() > 0))
    if bad.size:
        i = bad[0]
        raise FetchError(
            f"{source}: bar {_iso(frame.index[i])} has close {frame['close'].iloc[i]!r}; prices must be positive"
        )
    frame.index = pd.DatetimeIndex(frame.index).as_unit("ns")
    frame.index.name = "timestamp"
    frame.attrs = {"source": source}

    report = feed_report(frame, source=source, now=at, frequency=timeframe)
    extra: list[str] = []
    if (
        served.newest is not None
        and served.newest + step_ms > now_ms
        and served.newest > to_ms(frame.index[-1])
    ):
        opened = pd.Timestamp(served.newest, unit="ms", tz="UTC")
        extra.append(f"partial bar dropped: the {timeframe} bar opened {_iso(opened)} is still open")
    if len(frame) < bars:
        extra.append(
            f"short history: {ident} served {len(frame)} closed {timeframe} bars of {unified}, not {bars}"
        )
    return frame, dataclasses.replace(report, warnings=report.warnings + tuple(extra))


def live_funding(
    venue: str,
    symbol: str,
    *,
    since_days: float = 90,
    exchange: Any = None,
    now: Now = None,
    limit: int = 1000,
) -> pd.Series:
    """Funding rates of a perpetual over the last ``since_days`` days, as :func:`levopt.data.load_funding` reads them.

    Events come from ccxt's ``fetch_funding_rate_history`` (:func:`levopt.data.fetch_funding_history`,
    paginated) from now − since_days up to ``now``; their times are rounded to the minute as
    :func:`~levopt.data.load_funding` rounds them (Binance stamps events a few milliseconds late).

    Args:
        venue: a levopt venue or a ccxt exchange id.
        symbol: the venue's symbol or ccxt's.
        since_days: how far back to read (Binance and Bybit pay every 8 hours: 90 days ≈ 270 events;
            Hyperliquid every hour).
        exchange: a ccxt exchange object (default: a new, unauthenticated one for ``venue``).
        now: the end of the window (default: the clock).
        limit: events per request.

    Returns:
        Series ``funding_rate`` (decimal rate per funding interval, paid by longs when > 0) indexed
        by a UTC ``DatetimeIndex`` named ``timestamp``, sorted and unique, ``attrs["source"]``
        "ccxt <id> <symbol> funding".

    Raises:
        ConfigError: unknown venue or symbol, or ``since_days`` not > 0.
        FetchError: a request failed, the exchange has no funding history, or it served fewer
            than 2 events in the window.
        MissingDependencyError: ccxt is not installed (and no ``exchange`` was given).
    """
    days = _number(since_days)
    if days is None or days <= 0:
        raise ConfigError("since_days", f"{since_days!r}; allowed: a number of days > 0")
    unified = ccxt_symbol(symbol, venue)
    ex = _exchange(venue, exchange)
    at = _utc(now)
    start = to_ms(at - pd.Timedelta(days=days))
    rates = fetch_funding_history(ex, unified, start, until=to_ms(at) + 1, limit=limit)
    ident = exchange_id(ex)
    if len(rates) < 2:
        raise FetchError(
            f"{ident} served {len(rates)} funding event{'s' if len(rates) != 1 else ''} of {unified} "
            f"in the {days:g} days before {_iso(at)}, at least 2 are needed; read more days (since_days)"
        )
    index = pd.DatetimeIndex(rates.index).as_unit("ns").round("min")
    out = pd.Series(rates.to_numpy(dtype=float), index=index, name="funding_rate")
    out = out[~out.index.duplicated(keep="last")].sort_index()
    out.index.name = "timestamp"
    out.attrs = {"source": f"ccxt {ident} {unified} funding"}
    return out


# ---------------------------------------------------------------------------------------------
# Account


def credential_variables(venue: str) -> tuple[str, str]:
    """The environment variables :func:`account_positions` reads for ``venue``: its API key and secret.

    ``LEVOPT_<VENUE>_API_KEY`` and ``LEVOPT_<VENUE>_API_SECRET`` with <VENUE> the levopt venue name
    in capitals (``LEVOPT_BINANCE_USDM_API_KEY``, ``LEVOPT_BYBIT_LINEAR_API_KEY``,
    ``LEVOPT_HYPERLIQUID_API_KEY``; a ccxt id such as okx gives ``LEVOPT_OKX_API_KEY``). On
    Hyperliquid the key is the account's wallet address and the secret is not needed.
    """
    ident = ccxt_id(venue)
    name = next((v for v, i in CCXT_IDS.items() if i == ident), ident)
    stem = "LEVOPT_" + re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").upper()
    return f"{stem}_API_KEY", f"{stem}_API_SECRET"


def _credentials(venue: str, env: Mapping[str, str]) -> dict[str, str]:
    """ccxt's credential attributes, read from ``env``; a missing required one is a ConfigError."""
    ident = ccxt_id(venue)
    key_var, secret_var = credential_variables(venue)
    names = {"API_KEY": key_var, "API_SECRET": secret_var}
    out: dict[str, str] = {}
    for attribute, suffix, required in _ACCOUNTS.get(ident, _OTHER_ACCOUNT).credentials:
        var = names[suffix]
        value = str(env.get(var) or "").strip()
        if value:
            out[attribute] = value
        elif required:
            what = "account (wallet) address" if attribute == "walletAddress" else f"API {suffix[4:].lower()}"
            raise ConfigError(
                var,
                f"not set; export the {what} of your {ident} account in {var} "
                "(read-only permissions are enough: levopt only reads positions and the balance)",
            )
    return out


def _margin_mode(raw: Mapping[str, Any], ex: Any, unified: str, cache: dict[str, str], hint: str) -> str:
    """``cross`` or ``isolated``: ccxt's marginMode, else its ``isolated`` flag, else Bybit's
    ``tradeMode`` (0 cross, 1 isolated), else ``fetch_margin_mode`` where the exchange has it."""
    mode = raw.get("marginMode")
    if mode is None and isinstance(raw.get("isolated"), bool):
        mode = "isolated" if raw["isolated"] else "cross"
    info = raw.get("info") if isinstance(raw.get("info"), Mapping) else {}
    if mode is None and str(info.get("tradeMode", "")).strip() in ("0", "1"):
        mode = "isolated" if str(info["tradeMode"]).strip() == "1" else "cross"
    if mode is None and (getattr(ex, "has", None) or {}).get("fetchMarginMode"):
        if unified not in cache:
            served = call_exchange(ex, "fetch_margin_mode", unified, auth_hint=hint)
            cache[unified] = served.get("marginMode") if isinstance(served, Mapping) else None
        mode = cache[unified]
    if mode not in ("cross", "isolated"):
        raise FetchError(
            f"{exchange_id(ex)} position {unified}: margin mode {mode!r}; levopt models cross and isolated margin"
        )
    return str(mode)


def _position(raw: Mapping[str, Any], venue: str, ex: Any, cache: dict[str, str], hint: str) -> dict | None:
    """One ccxt position structure as levopt's dict; None for an empty (zero-size) position."""
    ident = exchange_id(ex)
    unified = raw.get("symbol")
    if not unified:
        raise FetchError(f"{ident} fetch_positions: a position without a symbol")
    contracts = _number(raw.get("contracts"))
    if contracts is None or contracts == 0:
        return None
    side = raw.get("side")
    if side not in ("long", "short"):
        side = "long" if contracts > 0 else "short"
    quantity = abs(contracts) * (_number(raw.get("contractSize")) or 1.0)
    entry = _number(raw.get("entryPrice"))
    if entry is None or entry <= 0:
        raise FetchError(
            f"{ident} position {unified}: entry price {raw.get('entryPrice')!r} is not a positive number"
        )
    mark = _number(raw.get("markPrice"))
    notional = _number(raw.get("notional"))
    if mark is None and notional:
        mark = abs(notional) / quantity
    if mark is None or mark <= 0:
        raise FetchError(f"{ident} position {unified}: no mark price (markPrice {raw.get('markPrice')!r})")
    margin_mode = _margin_mode(raw, ex, unified, cache, hint)
    leverage = _number(raw.get("leverage"))
    initial = _number(raw.get("initialMargin"))
    if leverage is None and initial and notional:
        leverage = abs(notional) / initial  # Binance positionRisk v3 serves no leverage
    isolated_margin = None
    if margin_mode == "isolated":
        isolated_margin = _number(raw.get("positionMargin"))
        collateral, upnl = _number(raw.get("collateral")), _number(raw.get("unrealizedPnl"))
        if isolated_margin is None and collateral is not None:
            isolated_margin = collateral - (upnl or 0.0)
        if isolated_margin is None:
            isolated_margin = initial
    return {
        "symbol": venue_symbol(str(unified), venue),
        "side": side,
        "quantity": quantity,
        "entry_price": entry,
        "mark_price": mark,
        "leverage": leverage,
        "margin_mode": margin_mode,
        "isolated_margin": isolated_margin,
    }


def _ccxt_total(balance: Mapping[str, Any], settle: str) -> float | None:
    """ccxt's ``total`` of the currency (Bybit: the coin's ``walletBalance``)."""
    total = balance.get("total")
    if isinstance(total, Mapping) and settle in total:
        return _number(total[settle])
    account = balance.get(settle)
    return _number(account.get("total")) if isinstance(account, Mapping) else None


def _binance_wallet(balance: Mapping[str, Any], settle: str) -> float | None:
    """``crossWalletBalance`` (else ``walletBalance``) of the asset in Binance's raw
    GET /fapi/v3/account response; ccxt's total there is the margin balance, P&L included."""
    info = balance.get("info") if isinstance(balance.get("info"), Mapping) else {}
    assets = info.get("assets") if isinstance(info.get("assets"), list) else []
    asset = next((a for a in assets if isinstance(a, Mapping) and a.get("asset") == settle), None)
    if asset is None:
        return None
    return _number(asset.get("crossWalletBalance", asset.get("walletBalance")))


def _hyperliquid_wallet(balance: Mapping[str, Any], settle: str) -> float | None:
    """Hyperliquid's cross account value (``crossMarginSummary.accountValue`` of clearinghouseState)
    less the unrealized P&L of the cross positions listed in the same response."""
    info = balance.get("info") if isinstance(balance.get("info"), Mapping) else {}
    summary = info.get("crossMarginSummary")
    value = _number(summary.get("accountValue")) if isinstance(summary, Mapping) else None
    if value is None:
        return None
    for entry in info.get("assetPositions") or []:
        pos = entry.get("position") if isinstance(entry, Mapping) else None
        if isinstance(pos, Mapping) and (pos.get("leverage") or {}).get("type") == "cross":
            value -= _number(pos.get("unrealizedPnl")) or 0.0
    return value


class _Account(NamedTuple):
    """What reading an account takes on one venue.

    Attributes:
        credentials: (ccxt attribute, variable suffix, required) for each credential.
        settle: the wallet's currency when neither a symbol nor the positions name one.
        wallet: the wallet balance backing cross positions, unrealized P&L excluded (the WB of the
            venues' liquidation formulas), from ccxt's balance structure; None if not served.
    """

    credentials: tuple[tuple[str, str, bool], ...]
    settle: str
    wallet: Callable[[Mapping[str, Any], str], float | None]


_KEY_AND_SECRET = (("apiKey", "API_KEY", True), ("secret", "API_SECRET", True))
_ACCOUNTS: Mapping[str, _Account] = MappingProxyType(
    {
        "binanceusdm": _Account(_KEY_AND_SECRET, "USDT", _binance_wallet),
        "bybit": _Account(_KEY_AND_SECRET, "USDT", _ccxt_total),
        # Positions and balance are public reads of an account address: the "API key" is the
        # wallet address; the secret (the private key) is not needed.
        "hyperliquid": _Account(
            (("walletAddress", "API_KEY", True), ("privateKey", "API_SECRET", False)),
            "USDC",
            _hyperliquid_wallet,
        ),
    }
)
"""ccxt id → how its account is read; other ccxt ids read as :data:`_OTHER_ACCOUNT`."""
_OTHER_ACCOUNT = _Account(_KEY_AND_SECRET, "USDT", _ccxt_total)


def account_positions(  # long because its docstring lists the ccxt fields read and the credentials
    venue: str,
    symbol: str | None = None,
    *,
    exchange: Any = None,
    env: Mapping[str, str] = os.environ,
) -> tuple[list[dict[str, Any]], float | None]:
    """The account's open positions and wallet balance, read (never written) through ccxt.

    Calls ``fetch_positions`` (ccxt's position structure: symbol, side, contracts, contractSize,
    entryPrice, markPrice, notional, leverage, marginMode, positionMargin, collateral,
    unrealizedPnl, initialMargin), ``fetch_margin_mode`` where a position does not say its margin
    mode (Bybit) and ``fetch_balance``; no other method of the exchange is called, so a read-only
    API key is enough.

    Credentials come from the environment only: ``LEVOPT_<VENUE>_API_KEY`` and
    ``LEVOPT_<VENUE>_API_SECRET`` (:func:`credential_variables`; on Hyperliquid the key is the
    wallet address and no secret is needed). They are read when no ``exchange`` is passed; a
    passed exchange is used as it is, with whatever credentials it holds.

    Args:
        venue: a levopt venue (binance_usdm, bybit_linear, hyperliquid) or a ccxt exchange id.
        symbol: only this symbol's positions (the venue's spelling or ccxt's); default: all.
        exchange: a ccxt exchange holding the account's credentials (default: one made for
            ``venue`` with the credentials in ``env``).
        env: where the credentials are read (default: ``os.environ``).

    Returns:
        (positions, wallet). Each position is a dict: ``symbol`` (the venue's own, BTCUSDT),
        ``side`` ("long" | "short"), ``quantity`` (> 0, base units: contracts × contractSize),
        ``entry_price``, ``mark_price``, ``leverage`` (the position's setting; notional / initial
        margin where the venue serves none; None if neither), ``margin_mode``
        ("cross" | "isolated") and ``isolated_margin`` (isolated positions: the margin held, P&L
        excluded: ccxt's positionMargin, else collateral − unrealizedPnl; None when cross).
        ``wallet`` is the settlement currency's wallet balance backing cross positions, unrealized
        P&L excluded (the WB of the venues' liquidation formulas): on Binance the asset's
        ``crossWalletBalance`` (GET /fapi/v3/account; ccxt's total there includes P&L), on
        Hyperliquid the cross account value less the cross positions' unrealized P&L, elsewhere
        ccxt's total (Bybit: the coin's ``walletBalance``); None when the exchange serves no
        balance or none in that currency. The settlement currency is the symbol's, else the
        positions' (when they share one), else the venue's usual one (USDT; USDC on Hyperliquid).

    Raises:
        ConfigError: unknown venue or symbol, or a credential variable not set (the message names it).
        FetchError: a request failed (a refused key names the variables to check), the exchange
            serves no positions, or a position lacks its entry or mark price or has a margin mode
            other than cross and isolated.
        MissingDependencyError: ccxt is not installed (and no ``exchange`` was given).
    """
    unified = ccxt_symbol(symbol, venue) if symbol is not None else None
    key_var, secret_var = credential_variables(venue)
    if exchange is None:
        credentials = _credentials(venue, env)
        ex = make_exchange(ccxt_id(venue))
        for attribute, value in credentials.items():
            setattr(ex, attribute, value)
    else:
        ex = exchange
    ident = exchange_id(ex)
    rules = _ACCOUNTS.get(ident, _OTHER_ACCOUNT)
    hint = f"; check {key_var} and {secret_var} (a key with read permission for futures)"
    has = getattr(ex, "has", None) or {}
    if not has.get("fetchPositions", True):
        raise FetchError(f"{ident} serves no positions through ccxt (fetchPositions)")
    args = ([unified],) if unified is not None else ()
    served = call_exchange(ex, "fetch_positions", *args, auth_hint=hint) or []
    cache: dict[str, str] = {}
    positions = []
    settles = set()
    for raw in served:
        if not isinstance(raw, Mapping) or (unified is not None and raw.get("symbol") != unified):
            continue
        pos = _position(raw, venue, ex, cache, hint)
        if pos is not None:
            positions.append(pos)
            settles.add(str(raw["symbol"]).partition(":")[2].partition("-")[0])
    if unified is not None:
        settle = unified.partition(":")[2].partition("-")[0] or unified.partition("/")[2]
    elif len(settles) == 1 and "" not in settles:
        settle = settles.pop()
    else:
        settle = rules.settle
    wallet = None
    if has.get("fetchBalance", True):
        balance = call_exchange(ex, "fetch_balance", auth_hint=hint)
        wallet = rules.wallet(balance, settle) if isinstance(balance, Mapping) else None
    return positions, wallet
