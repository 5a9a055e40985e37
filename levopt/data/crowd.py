"""Loading open-interest and liquidation histories: what a crowd of levered accounts is
reconstructed from.

Open interest is one observation per timestamp, in the settlement currency (its value) and in
units of the asset (its amount). Liquidations are either events (one forced order each) or
totals per bar; both load into the same shape: the notional liquidated from longs and from shorts.

Files are CSV, JSON or Parquet as in :mod:`levopt.data.load`, columns matched in any case and
spacing; errors name the file, the row (the 1-based line in a CSV file, the record number in JSON
and Parquet) and the column, and say what is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from levopt.data.load import Format, _find_column, _norm, _Raw, _read_raw, order_rows, parse_timestamps
from levopt.errors import DataError

_MISSING = ("", "nan", "NaN", "None", "null", "<NA>")
_NON_NEGATIVE = "allowed: a finite number >= 0"


def _where(raw: _Raw) -> str:
    return f"{raw.name} row {raw.header_row} (header)" if raw.header_row else raw.name


def _columns(raw: _Raw) -> list[str]:
    return [str(c) for c in raw.table.columns]


def _numbers(raw: _Raw, column: Any, *, required: bool) -> np.ndarray:
    """Finite floats >= 0 of one column; an empty cell is NaN, or an error when ``required``."""
    values = raw.table[column]
    text = values.astype(str).str.strip()
    out = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, copy=True)
    missing = text.isin(_MISSING).to_numpy() | values.isna().to_numpy()
    for i in np.flatnonzero(~np.isfinite(out) | (out < 0)):
        where = f"{raw.name} row {raw.rows[i]}: {column}"
        if missing[i]:
            if not required:
                out[i] = np.nan
                continue
            raise DataError(f"{where} is missing; {_NON_NEGATIVE}")
        if np.isnan(out[i]):
            raise DataError(f"{where} {values.iloc[i]!r} is not a number; {_NON_NEGATIVE}")
        if not np.isfinite(out[i]):
            raise DataError(f"{where} is {out[i]}; {_NON_NEGATIVE}")
        raise DataError(f"{where} {out[i]:g} is negative; {_NON_NEGATIVE}")
    return out


# ---------------------------------------------------------------------------------------------
# Open interest

_OI_TIME_NAMES = ("timestamp", "create_time", "time", "datetime", "date", "open_time", "ts", "unix")
_OI_VALUE_NAMES = (
    "open_interest",
    "open_interest_value",
    "openinterestvalue",
    "sum_open_interest_value",
    "sumopeninterestvalue",
    "open_interest_usd",
)
_OI_AMOUNT_NAMES = ("open_interest_amount", "openinterestamount", "sum_open_interest", "sumopeninterest")
_OI_PRICE_NAMES = ("price", "close")
_OI_ALLOWED = (
    "a value in the settlement currency (open_interest, openInterestValue, sum_open_interest_value, "
    "sumOpenInterestValue) >= 0, or an amount (open_interest_amount, openInterestAmount, "
    "sum_open_interest, sumOpenInterest) with a price or close column"
)


def load_open_interest(path: str | Path, *, fmt: Format | None = None) -> pd.DataFrame:
    """Read an open-interest history.

    Layouts (columns in any case):

    * ccxt open-interest records: ``timestamp`` (ms), ``openInterestAmount``,
      ``openInterestValue`` (either may be empty, not both);
    * Binance futures "metrics" files (data.binance.vision): ``create_time``,
      ``sum_open_interest`` (base units), ``sum_open_interest_value`` (USD), other columns ignored;
    * Binance REST ``openInterestHist``: ``timestamp``, ``sumOpenInterest``, ``sumOpenInterestValue``;
    * generic: a timestamp column with ``open_interest`` (the value) and/or
      ``open_interest_amount``; an amount alone needs a ``price`` or ``close`` column, and the
      value is then amount × price.

    Args:
        path: CSV, JSON or Parquet file; the format follows the extension unless ``fmt`` is given.

    Returns:
        DataFrame indexed by a UTC ``DatetimeIndex`` named ``timestamp`` (sorted, unique) with
        float columns ``open_interest`` (value in the settlement currency, >= 0),
        ``open_interest_amount`` (base units; NaN where the file has none) and ``price``
        (value / amount where the amount is > 0, else NaN). ``attrs["source"]`` is the file name.

    Raises:
        DataError: naming the file, the row and the column: no value (and no amount with a price),
            a negative, non-finite or unparseable number, an unsorted or repeated timestamp, fewer
            than 2 rows.
    """
    raw = _read_raw(Path(path), fmt)
    name = raw.name
    time_col = _find_column(raw, None, _OI_TIME_NAMES, "timestamp", required=True)
    value_col = _find_column(raw, None, _OI_VALUE_NAMES, "open-interest value", required=False)
    amount_col = _find_column(raw, None, _OI_AMOUNT_NAMES, "open-interest amount", required=False)
    price_col = _find_column(raw, None, _OI_PRICE_NAMES, "price", required=False)
    if value_col is None and (amount_col is None or price_col is None):
        have = f"only {amount_col!r}, in base units" if amount_col is not None else "no open-interest column"
        raise DataError(
            f"{_where(raw)}: {have}; the value in the settlement currency is needed; allowed: "
            f"{_OI_ALLOWED}; columns are {_columns(raw)}"
        )
    n = len(raw.table)
    if n < 2:
        raise DataError(f"{name}: {n} open-interest row{'' if n == 1 else 's'}, at least 2 are needed")
    index = parse_timestamps(raw.table[time_col], raw.rows, name, str(time_col))
    cells = {c: _numbers(raw, c, required=False) for c in (value_col, amount_col) if c is not None}
    nan = np.full(n, np.nan)
    given, amount = cells.get(value_col, nan), cells.get(amount_col, nan)
    value = given
    if price_col is not None and amount_col is not None and np.isnan(given).any():
        cells[price_col] = _numbers(raw, price_col, required=False)
        value = np.where(np.isnan(given), amount * cells[price_col], given)
    bad = np.flatnonzero(np.isnan(value))
    if bad.size:
        i = bad[0]
        empty = " and ".join(str(c) for c, v in cells.items() if np.isnan(v[i]))
        no_price = "" if price_col is not None or amount_col is None else ", no price column"
        raise DataError(
            f"{name} row {raw.rows[i]}: no open-interest value ({empty} empty{no_price}); allowed: {_OI_ALLOWED}"
        )
    price = np.divide(value, amount, out=np.full(n, np.nan), where=amount > 0)
    order = order_rows(index, raw.rows, name)
    out = pd.DataFrame(
        {"open_interest": value[order], "open_interest_amount": amount[order], "price": price[order]},
        index=index[order],
    )
    out.index.name = "timestamp"
    out.attrs["source"] = name
    return out


# ---------------------------------------------------------------------------------------------
# Liquidations

_LIQ_TIME_NAMES = ("timestamp", "time", "updatetime", "updatedtime", "t", "datetime", "date", "ts", "unix")
_BYBIT_TIME_NAMES = ("updatedtime", "t")
_PRICE_NAMES = ("averageprice", "avgprice", "average_price", "avg_price", "price", "p")
_QTY_NAMES = ("size", "qty", "quantity", "amount", "v")
# Ways to the notional of one event, in order of preference: every group must have a column.
_NOTIONAL_ROUTES: tuple[tuple[tuple[str, ...], ...], ...] = (
    (("quotevalue", "quote_value", "notional"),),
    (("basevalue", "base_value"), _PRICE_NAMES),
    (("contracts",), ("contractsize", "contract_size"), _PRICE_NAMES),
    (("executedqty", "executed_qty"), _PRICE_NAMES),
    (("origqty", "orig_qty"), _PRICE_NAMES),
    (_QTY_NAMES, _PRICE_NAMES),
)
_NOTIONAL_ALLOWED = (
    "quoteValue, or a price (price, averagePrice, avgPrice) times baseValue, contracts × contractSize, "
    "executedQty, origQty or size"
)
# Aggregated files: long<stem> and short<stem>, compared without underscores.
_AGGREGATED_STEMS = ("", "usd", "liquidations", "liquidation", "liquidationsusd", "liquidationusd")


def load_liquidations(path: str | Path, *, fmt: Format | None = None) -> pd.DataFrame:
    """Read a liquidation history: events, or totals per bar.

    Event layouts (one forced order per row):

    * ccxt liquidation records: ``timestamp`` (ms), ``side``, ``quoteValue``; without a quote
      value, ``baseValue`` × ``price`` or ``contracts`` × ``contractSize`` × ``price``;
    * Binance ``forceOrder`` records: ``time`` (ms; or ``updateTime``), ``side``, a price
      (``averagePrice``, ``avgPrice`` or ``price``) times ``executedQty`` (or ``origQty``);
    * Bybit liquidation stream records: ``updatedTime`` or ``T`` (ms), ``side`` (or ``S``),
      ``size`` (or ``v``), ``price`` (or ``p``).

    Sides: ``long`` and ``short`` are always the side of the liquidated position. ``buy`` and
    ``sell`` (any case) depend on the venue and are told apart by the columns: a file with an
    ``updatedTime`` or ``T`` column is Bybit's liquidation stream, where ``Buy`` means a long
    position was liquidated (Bybit's documented convention); in any other file they are the side
    of the liquidation order, as on Binance, where ``SELL`` closes a long. Events of zero notional
    (an order that filled nothing) are dropped; events need not be in time order (streams
    interleave) and are sorted stably.

    Aggregated layout: a timestamp column and two columns of liquidated notional, long and short:
    ``long``/``short``, ``long_usd``/``short_usd``, ``long_liquidations``/``short_liquidations``,
    ``longLiquidationUsd``/``shortLiquidationUsd`` and the like.

    Args:
        path: CSV, JSON or Parquet file; the format follows the extension unless ``fmt`` is given.

    Returns:
        DataFrame indexed by UTC ``timestamp`` (sorted; repeated timestamps are separate events)
        with float columns ``long`` and ``short``: the notional liquidated in the settlement
        currency, finite and >= 0 (an event row has one of them > 0). ``attrs["source"]`` is the
        file name.

    Raises:
        DataError: naming the file, the row and the column: no side or notional columns, an
            unknown side, a negative, non-finite or unparseable number, no rows.
    """
    raw = _read_raw(Path(path), fmt)
    out = _liquidation_frame(raw)
    if len(out) == 0:
        n = len(raw.table)
        why = f"none of its {n} events has a positive notional" if n else "no rows"
        raise DataError(f"{raw.name}: no liquidations ({why}); at least 1 is needed")
    return out


def liquidations_from_records(records: list[dict[str, Any]], name: str) -> pd.DataFrame:
    """Liquidation records (dicts in a layout of :func:`load_liquidations`, e.g. ccxt's) in the
    shape :func:`load_liquidations` returns; ``name`` stands for the file in errors."""
    table = pd.DataFrame.from_records(records)
    return _liquidation_frame(_Raw(table, np.arange(1, len(table) + 1), None, name))


def _liquidation_frame(raw: _Raw) -> pd.DataFrame:
    """The ``long``/``short`` frame of a table read by :mod:`levopt.data.load` (possibly empty)."""
    time_col = _find_column(raw, None, _LIQ_TIME_NAMES, "timestamp", required=True)
    side_col = _find_column(raw, None, ("side",), "side", required=False)
    if side_col is None and "S" in raw.table.columns:  # Bybit's allLiquidation stream
        side_col = "S"
    if side_col is not None:
        notional = _event_notional(raw)
        is_long = _long_side(raw, side_col)
        long = np.where(is_long, notional, 0.0)
        short = np.where(is_long, 0.0, notional)
        keep = notional > 0
    else:
        long_col, short_col = _aggregated_columns(raw)
        long = _numbers(raw, long_col, required=True)
        short = _numbers(raw, short_col, required=True)
        keep = np.ones(len(raw.table), dtype=bool)
    if len(raw.table) == 0:
        index = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]")
    else:
        index = parse_timestamps(raw.table[time_col], raw.rows, raw.name, str(time_col))[keep]
    order = np.argsort(index.asi8, kind="stable")
    out = pd.DataFrame({"long": long[keep][order], "short": short[keep][order]}, index=index[order])
    out.index.name = "timestamp"
    out.attrs["source"] = raw.name
    return out


def _event_notional(raw: _Raw) -> np.ndarray:
    """Notional of each event by the first route whose columns are all filled in its row."""
    notional = np.full(len(raw.table), np.nan)
    used: list[str] = []
    for route in _NOTIONAL_ROUTES:
        cols = [_find_column(raw, None, names, "notional", required=False) for names in route]
        if any(c is None for c in cols):
            continue
        used.extend(str(c) for c in cols if str(c) not in used)
        product = np.prod([_numbers(raw, c, required=False) for c in cols], axis=0)
        notional = np.where(np.isnan(notional), product, notional)
    if not used:
        raise DataError(
            f"{_where(raw)}: no liquidated notional columns; allowed: {_NOTIONAL_ALLOWED}; "
            f"columns are {_columns(raw)}"
        )
    bad = np.flatnonzero(np.isnan(notional))
    if bad.size:
        raise DataError(
            f"{raw.name} row {raw.rows[bad[0]]}: no liquidated notional ({' / '.join(used)} missing); "
            f"allowed: {_NOTIONAL_ALLOWED}"
        )
    return notional


def _long_side(raw: _Raw, column: Any) -> np.ndarray:
    """Whether each event liquidated a long (see :func:`load_liquidations` for buy and sell)."""
    bybit = any(_norm(c) in _BYBIT_TIME_NAMES for c in raw.table.columns)
    longs = {"long", "buy" if bybit else "sell"}
    shorts = {"short", "sell" if bybit else "buy"}
    text = raw.table[column].astype(str).str.strip().str.lower()
    bad = np.flatnonzero(~text.isin(longs | shorts).to_numpy())
    if bad.size:
        i = bad[0]
        convention = (
            "Buy = a long liquidated, as in Bybit's liquidation stream"
            if bybit
            else "SELL = a long liquidated, as a Binance order side"
        )
        raise DataError(
            f"{raw.name} row {raw.rows[i]}: {column} {raw.table[column].iloc[i]!r} is not a side; "
            f"allowed: long, short, buy, sell (any case; {convention})"
        )
    return text.isin(longs).to_numpy()


def _aggregated_columns(raw: _Raw) -> tuple[Any, Any]:
    keys = {_norm(c).replace("_", ""): c for c in raw.table.columns}
    for stem in _AGGREGATED_STEMS:
        if f"long{stem}" in keys and f"short{stem}" in keys:
            return keys[f"long{stem}"], keys[f"short{stem}"]
    for stem in _AGGREGATED_STEMS:
        for have, swap in ((f"long{stem}", ("long", "short")), (f"short{stem}", ("short", "long"))):
            if have in keys:
                need = re.sub(f"(?i)^{swap[0]}", swap[1], str(keys[have]))
                raise DataError(
                    f"{_where(raw)}: column {keys[have]!r} without its partner {need!r}; allowed: a long "
                    f"and a short column of liquidated notional; columns are {_columns(raw)}"
                )
    raise DataError(
        f"{_where(raw)}: neither a side column (side) for liquidation events nor long and short "
        "columns of liquidated notional (long/short, long_usd/short_usd, long_liquidations/"
        f"short_liquidations, longLiquidationUsd/shortLiquidationUsd); columns are {_columns(raw)}"
    )
