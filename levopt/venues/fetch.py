"""A venue's current leverage and margin tiers, downloaded through ccxt and saved as a dated table.

ccxt serves tiers in its unified "leverage tiers structure" (ccxt Manual, "Leverage Tiers
Structure"): one mapping per tier with ``tier``, ``currency``, ``minNotional``, ``maxNotional``,
``maintenanceMarginRate``, ``maxLeverage`` and the venue's raw ``info``. A tier becomes a row of a
:class:`~levopt.venues.BracketTable` as

    floor = minNotional,   cap = maxNotional (inf where the last tier has none),
    maintenance_rate = maintenanceMarginRate,   max_leverage = maxLeverage,
    maintenance_amount = the venue's own figure in ``info`` where it serves one (Binance ``cum``,
        GET /fapi/v1/leverageBracket; Bybit ``mmDeduction``, GET /v5/market/risk-limit),
        else the continuous chaining A_n = floor_n × (MMR_n − MMR_{n−1}) + A_{n−1}.

The figures are kept as served. A table that does not start at zero, is not contiguous, or whose
maintenance amounts make the requirement jump at a boundary is refused with one line naming the
symbol, the row and the rule; it is never repaired. Nothing is rounded: :func:`write_brackets`
writes each number as text that reads back to the same float.

ccxt is imported only when a download runs (:func:`levopt.data.fetch.import_ccxt`); a saved table
younger than ``max_age_hours`` is read back without it (:func:`update_tiers_cache`).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from levopt.cache import user_cache_root
from levopt.data.fetch import (
    FetchError,
    MissingDependencyError,
    call_exchange,
    exchange_id,
    import_ccxt,
    make_exchange,
    perpetual_symbol,
)
from levopt.errors import ConfigError
from levopt.venues._brackets import BracketTable, load_brackets, write_brackets
from levopt.venues._venue import VENUES

CCXT_IDS: Mapping[str, str] = MappingProxyType(
    {"binance_usdm": "binanceusdm", "bybit_linear": "bybit", "hyperliquid": "hyperliquid"}
)
"""levopt venue name → ccxt exchange id."""

_ENDPOINTS = {
    "binanceusdm": (
        "Binance USDⓈ-M GET /fapi/v1/leverageBracket, https://developers.binance.com/docs/derivatives/"
        "usds-margined-futures/account/rest-api/Notional-and-Leverage-Brackets"
    ),
    "bybit": "Bybit V5 GET /v5/market/risk-limit, https://bybit-exchange.github.io/docs/v5/market/risk-limit",
}
"""The venue endpoint behind ccxt's tiers, named in the saved table's ``# source:`` line."""

_AMOUNT_KEYS = ("cum", "mmDeduction")
"""Keys of a tier's raw ``info`` holding the venue's maintenance amount: Binance "cum", Bybit
"mmDeduction" (an empty string on tiers where Bybit serves none; the amount is then chained)."""

_NATIVE = {"binanceusdm": "concat", "binance": "concat", "bybit": "concat", "hyperliquid": "base"}
"""How a venue spells a linear perpetual: base + quote (BTCUSDT), or the base alone (Hyperliquid's BTC)."""

_QUOTES = ("USDT", "USDC")
_HYPERLIQUID_QUOTE = "USDC"


class TierCache(NamedTuple):
    """What :func:`update_tiers_cache` did.

    Attributes:
        table: the tiers, as read back from ``path``.
        path: the CSV file.
        fetched: True when downloaded now, False when the saved file was current.
        age_hours: the saved file's age when it was read (0 when fetched now).
    """

    table: BracketTable
    path: Path
    fetched: bool
    age_hours: float


# ---------------------------------------------------------------------------------------------
# Names: levopt venues, ccxt ids and symbols


def ccxt_id(venue: str) -> str:
    """The ccxt exchange id of a levopt venue (:data:`CCXT_IDS`); a ccxt exchange id is kept as is.

    Raises:
        ConfigError: (field ``venue``) neither a levopt venue nor one of ccxt's exchange ids.
    """
    if venue in CCXT_IDS:
        return CCXT_IDS[venue]
    if venue in CCXT_IDS.values():
        return venue
    allowed = f"{', '.join(CCXT_IDS)}, or a ccxt exchange id"
    try:
        known = getattr(import_ccxt(), "exchanges", ())
    except MissingDependencyError:
        raise ConfigError(
            "venue", f"unknown venue {venue!r}; allowed: {allowed} (with ccxt installed)"
        ) from None
    if venue in known:
        return venue
    raise ConfigError("venue", f"unknown venue {venue!r}; allowed: {allowed} (e.g. okx)")


def _venue_name(ident: str) -> str:
    """The levopt venue name of a ccxt id, or the id where levopt has no venue for it."""
    return next((name for name, i in CCXT_IDS.items() if i == ident), ident)


def _unified(symbol: str, ident: str) -> str:
    text = str(symbol).strip()
    if not text:
        raise ConfigError("symbol", "empty; allowed: e.g. BTCUSDT, or a ccxt symbol such as BTC/USDT:USDT")
    if "/" in text:
        return perpetual_symbol(text)
    style = _NATIVE.get(ident)
    if style == "base":
        return f"{text}/{_HYPERLIQUID_QUOTE}:{_HYPERLIQUID_QUOTE}"
    if style == "concat":
        upper = text.upper()
        quote = next((q for q in _QUOTES if upper.endswith(q) and len(upper) > len(q)), None)
        if quote is not None:
            return f"{upper[: -len(quote)]}/{quote}:{quote}"
        raise ConfigError(
            "symbol",
            f"{symbol!r} names no quote currency levopt knows; allowed: a symbol ending in "
            f"{' or '.join(_QUOTES)} (BTCUSDT), or a ccxt symbol (BTC/USDT:USDT)",
        )
    raise ConfigError(
        "symbol",
        f"{symbol!r}: levopt knows no native symbols of {ident}; allowed: a ccxt symbol (BTC/USDT:USDT)",
    )


def _native(unified: str, ident: str) -> str:
    pair, _, settle = unified.partition(":")
    base, _, quote = pair.partition("/")
    style = _NATIVE.get(ident)
    if style == "base":
        return base
    if style == "concat":
        expiry = settle.partition("-")[2]
        return f"{base}{quote}" + (f"_{expiry}" if expiry else "")
    return unified


def ccxt_symbol(symbol: str, venue: str) -> str:
    """ccxt's unified symbol of a linear perpetual named as the venue names it, or as ccxt does.

    BTCUSDT → BTC/USDT:USDT on Binance and Bybit; BTC → BTC/USDC:USDC on Hyperliquid; a unified
    symbol is kept, a spot pair getting its perpetual's settle currency (BTC/USDT → BTC/USDT:USDT).

    Raises:
        ConfigError: an unknown venue, or a native symbol that cannot be mapped.
    """
    return _unified(symbol, ccxt_id(venue))


def venue_symbol(symbol: str, venue: str) -> str:
    """The venue's own name of a symbol (the key of :attr:`Venue.tables`): BTC/USDT:USDT → BTCUSDT,
    BTC/USDC:USDC → BTC on Hyperliquid; venues levopt does not know keep the unified symbol."""
    ident = ccxt_id(venue)
    return _native(_unified(symbol, ident), ident)


# ---------------------------------------------------------------------------------------------
# Download


def _request(exchange: Any, method: str, *args: Any) -> Any:
    """Call ``exchange.method(*args)``; ccxt's errors become one-line :class:`FetchError`s."""
    return call_exchange(exchange, method, *args, auth_hint=_AUTH_HINT)


_AUTH_HINT = (
    "; the venue serves its tiers to signed requests only: in Python, pass fetch_brackets a ccxt "
    "exchange made with your apiKey and secret"
)


def _download(exchange: Any, unified: str) -> tuple[list[Any], str]:
    """The exchange's tiers of ``unified`` and the ccxt method that served them."""
    has = getattr(exchange, "has", None) or {}
    ident = exchange_id(exchange)
    if has.get("fetchMarketLeverageTiers"):
        method = "fetch_market_leverage_tiers"
        tiers = _request(exchange, method, unified)
    elif has.get("fetchLeverageTiers"):
        method = "fetch_leverage_tiers"
        by_symbol = _request(exchange, method, [unified])
        tiers = by_symbol.get(unified) if isinstance(by_symbol, Mapping) else None
    else:
        raise FetchError(
            f"{ident} serves no leverage tiers through ccxt (neither fetchMarketLeverageTiers nor "
            "fetchLeverageTiers); use levopt's shipped table, or write one and read it with load_brackets"
        )
    if not tiers:
        raise FetchError(f"{ident} {method}: no tiers for {unified}")
    if not isinstance(tiers, Sequence) or not all(isinstance(t, Mapping) for t in tiers):
        raise FetchError(f"{ident} {method}: tiers of {unified} are not a list of ccxt tier structures")
    return list(tiers), method


def _row(tier: Mapping[str, Any], *, last: bool) -> dict[str, Any]:
    """One ccxt tier as a row of :meth:`BracketTable.from_rows`; a missing value stays missing."""
    info = tier.get("info") if isinstance(tier.get("info"), Mapping) else {}
    cap = tier.get("maxNotional")
    return {
        "floor": tier.get("minNotional"),
        "cap": math.inf if cap is None and last else cap,
        "maintenance_rate": tier.get("maintenanceMarginRate"),
        "maintenance_amount": next((info[k] for k in _AMOUNT_KEYS if k in info), None),
        "max_leverage": tier.get("maxLeverage"),
    }


def fetch_brackets(exchange: Any, symbol: str, *, venue: str | None = None) -> BracketTable:
    """Download the current tiers of one symbol through ccxt as a validated :class:`BracketTable`.

    Calls ``exchange.fetch_market_leverage_tiers(symbol)`` where the exchange has it
    (``exchange.has["fetchMarketLeverageTiers"]``), else ``fetch_leverage_tiers([symbol])``, and
    maps ccxt's tier structures onto the table's columns (module docstring): maintenance amounts
    are the venue's own (Binance ``cum``, Bybit ``mmDeduction``) where it serves them, else chained
    continuously, A_n = floor_n × (MMR_n − MMR_{n−1}) + A_{n−1}. A missing maintenance rate is
    1 / (2 × max_leverage) only on venues whose rule that is (Hyperliquid); elsewhere it is refused.

    Args:
        exchange: a ccxt exchange instance (:func:`levopt.data.fetch.make_exchange`), or any object
            with its ``id``, ``has`` and tier methods.
        symbol: the venue's symbol (BTCUSDT; BTC on Hyperliquid) or ccxt's (BTC/USDT:USDT).
        venue: the levopt venue or ccxt id whose symbol spelling applies (default: the exchange's id).

    Returns:
        The table, with ``symbol`` the venue's own name (BTCUSDT), ``source`` the ccxt method and
        venue endpoint, and ``published`` the UTC date of the download.

    Raises:
        FetchError: the exchange has no tiers in ccxt, a request failed, or the tiers it served are
            not a valid table (one line naming the symbol, the row and the rule broken).
        ConfigError: a symbol that cannot be mapped.
    """
    ident = exchange_id(exchange)
    style_id = CCXT_IDS.get(venue, venue) if venue else ident
    unified = _unified(symbol, style_id)
    native = _native(unified, style_id)
    tiers, method = _download(exchange, unified)
    rows = [_row(t, last=i == len(tiers) - 1) for i, t in enumerate(tiers)]
    name = _venue_name(style_id)
    no_rate = next((i for i, r in enumerate(rows, start=1) if r["maintenance_rate"] is None), None)
    if no_rate is not None and not (
        name in VENUES and VENUES.get(name, field="venue").leverage_sets_maintenance
    ):
        # from_rows would take Hyperliquid's 1/(2 × max_leverage); only that venue's rule says so.
        raise FetchError(
            f"{ident} {method}({unified}) tier {no_rate}: no maintenanceMarginRate, and {name}'s maintenance "
            "is not set by its leverage; nothing saved"
        )
    source = f"ccxt {ident} {method}" + (f", {_ENDPOINTS[ident]}" if ident in _ENDPOINTS else "")
    published = dt.datetime.now(dt.timezone.utc).date().isoformat()
    try:
        return BracketTable.from_rows(rows, symbol=native, source=source, published=published)
    except ConfigError as exc:
        raise FetchError(
            f"{ident} {method}({unified}) served tiers levopt does not accept, nothing saved: {exc}"
        ) from None


# ---------------------------------------------------------------------------------------------
# The cache


def tiers_cache_dir() -> Path:
    """Where downloaded tier tables are kept: ``tiers/`` in levopt's user cache directory.

    That directory is ``platformdirs.user_cache_dir("levopt")`` when platformdirs is installed,
    else ``$XDG_CACHE_HOME/levopt`` or ``~/.cache/levopt`` (as :mod:`levopt.cache` finds it).
    ``LEVOPT_CACHE_DIR`` moves JAX's compilation cache only; it does not move these tables.
    """
    return user_cache_root() / "tiers"


def tiers_cache_path(venue: str, symbol: str) -> Path:
    """The default file of a venue's tiers: ``<tiers_cache_dir()>/<venue>_<symbol>.csv``, named
    like the shipped tables (``binance_usdm_BTCUSDT.csv``)."""
    ident = ccxt_id(venue)
    native = _native(_unified(symbol, ident), ident)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", native).strip("-")
    return tiers_cache_dir() / f"{_venue_name(ident)}_{safe}.csv"


def _read_saved(path: Path, native: str, max_age_hours: float) -> TierCache | None:
    """The saved table when it is current (younger than ``max_age_hours``), else None."""
    age = (time.time() - path.stat().st_mtime) / 3600.0
    fresh = age < max_age_hours
    try:
        table = load_brackets(path)
    except ConfigError as exc:
        if not fresh:
            return None
        raise ConfigError(
            "out",
            f"{path} is a current download but not a bracket table ({exc}); delete it or force a download",
        ) from None
    if table.symbol and table.symbol != native:
        raise ConfigError(
            "out",
            f"{path} holds the tiers of {table.symbol}, not {native}; use another file or force a download",
        )
    return TierCache(table, path, False, age) if fresh else None


def update_tiers_cache(
    venue: str,
    symbol: str,
    *,
    out: str | Path | None = None,
    max_age_hours: float = 24.0,
    force: bool = False,
    exchange: Any = None,
) -> TierCache:
    """The venue's tiers from a saved file younger than ``max_age_hours``, else downloaded and saved.

    A current file is read with :func:`load_brackets` and the network is not touched (ccxt need not
    be installed). Otherwise :func:`fetch_brackets` downloads the tiers and :func:`write_brackets`
    saves them with ``# venue:``, ``# symbol:``, ``# source:`` (ccxt method and venue endpoint),
    ``# published:`` (UTC date of the download) and notes saying how each column was obtained.

    Args:
        venue: a levopt venue (``binance_usdm``, ``bybit_linear``, ``hyperliquid``) or a ccxt id.
        symbol: the venue's symbol (BTCUSDT; BTC on Hyperliquid) or ccxt's (BTC/USDT:USDT).
        out: the CSV file (default: :func:`tiers_cache_path`).
        max_age_hours: how long a saved table stays current; 0 downloads every time.
        force: download even when the saved table is current.
        exchange: a ccxt exchange to use (default: :func:`levopt.data.fetch.make_exchange`), e.g.
            one made with API keys where the venue serves its tiers to signed requests only.

    Returns:
        A :class:`TierCache`.

    Raises:
        ConfigError: unknown venue or symbol, a negative ``max_age_hours``, or a current file at
            ``out`` that is not a table of this symbol (fields ``venue``, ``symbol``, ``max_age_hours``, ``out``).
        FetchError, MissingDependencyError: as :func:`fetch_brackets` and :func:`make_exchange`.
    """
    ident = ccxt_id(venue)
    unified = _unified(symbol, ident)
    native = _native(unified, ident)
    if not max_age_hours >= 0:
        raise ConfigError("max_age_hours", f"{max_age_hours}; allowed: hours >= 0")
    path = Path(out) if out is not None else tiers_cache_path(ident, unified)
    if path.exists() and not force:
        saved = _read_saved(path, native, max_age_hours)
        if saved is not None:
            return saved
    ex = exchange if exchange is not None else make_exchange(ident)
    table = fetch_brackets(ex, unified, venue=ident)
    now = dt.datetime.now(dt.timezone.utc)
    version = getattr(sys.modules.get("ccxt"), "__version__", None)
    notes = (
        f"fetched {now:%Y-%m-%dT%H:%M:%SZ} from {exchange_id(ex)} for {unified} through ccxt"
        + (f" {version}" if version else ""),
        "floor, cap, maintenance_rate and max_leverage as served (ccxt minNotional, maxNotional, "
        "maintenanceMarginRate, maxLeverage; an open last cap as inf); maintenance_amount as served where the "
        "venue gives one (Binance cum, Bybit mmDeduction), else amount_n = floor_n x (MMR_n - MMR_n-1) + amount_n-1",
    )
    write_brackets(table, path, venue=_venue_name(ident), notes=notes)
    return TierCache(load_brackets(path), path, True, 0.0)
