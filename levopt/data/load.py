"""Loading and validating price history and funding rates from files in common layouts.

Supported price layouts (detected from the file, overridable with ``timestamp_col``/``price_col``):

* Yahoo Finance CSV: ``Date, Open, High, Low, Close, Adj Close, Volume`` (any case);
* Binance kline CSV, with or without a header: open time (ms, or us since 2025), open, high, low,
  close, volume, close time, ...;
* ccxt OHLCV lists ``[[ms, open, high, low, close, volume], ...]`` saved as JSON or CSV;
* CryptoDataDownload exports: a banner line before the header, rows newest first;
* Parquet files written by ``levopt data fetch`` (or any table with a timestamp column/index).

Timestamps are bar open times in UTC; numeric epochs are read as seconds, milliseconds,
microseconds or nanoseconds according to their magnitude, naive date strings as UTC.

Errors name the file, the row and the problem. For CSV files the row is the 1-based line number
in the file (a banner is line 1, the header the next line); for JSON and Parquet it is the 1-based
record number.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from levopt.errors import ConfigError, DataError

MIN_ROWS = 30
"""Fewest price rows :func:`load_prices` accepts (29 returns are too few to estimate anything)."""

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")

_TIME_NAMES = ("timestamp", "open_time", "opentime", "date", "datetime", "time", "unix", "ts")
_CLOSE_NAMES = ("close", "adj_close", "adjclose", "price", "close_price")
_HEADERLESS_NAMES = ("timestamp", "open", "high", "low", "close", "volume")
Format = Literal["csv", "parquet", "json"]


@dataclass(frozen=True)
class _Raw:
    """A table as read from disk: string or numeric cells and the file row of each record."""

    table: pd.DataFrame
    rows: np.ndarray  # (n,) 1-based row numbers in the file
    header_row: int | None  # 1-based line of the header (CSV with a header)
    name: str  # file name for messages


def _norm(name: Any) -> str:
    return re.sub(r"[\s_\-]+", "_", str(name).strip().lower())


def _detect_format(path: Path, fmt: str | None) -> Format:
    if fmt is not None:
        if fmt not in ("csv", "parquet", "json"):
            raise DataError(f"{path.name}: unknown format {fmt!r}; allowed: csv, parquet, json")
        return fmt  # type: ignore[return-value]
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix == ".json":
        return "json"
    return "csv"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_text(path: Path) -> str:
    """The text of a CSV or JSON data file (UTF-8, or UTF-16 with a byte-order mark).

    Raises:
        DataError: the file cannot be read, is empty, or is binary (a NUL byte: e.g. a Parquet
            file without its extension).
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path.name}: cannot read the file ({exc.strerror or exc})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path.name}: invalid UTF-16 text at byte {exc.start}") from None
    if not data.strip():
        raise DataError(f"{path.name}: the file is empty")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise DataError(
            f"{path.name}: a binary file (NUL byte at offset {nul}), not CSV or JSON text; "
            "a Parquet file needs the extension .parquet (or format: parquet)"
        )
    # Non-UTF-8 bytes (a Latin-1 header) become U+FFFD: numbers and dates are ASCII either way.
    return data.decode("utf-8-sig", errors="replace")


_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def _sniff(lines: list[str]) -> str:
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _fields(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:  # e.g. a stray NUL-free control sequence the csv module refuses
        return [line]


def _records(
    lines: list[str], start: int, delimiter: str, name: str, skip_header: bool
) -> tuple[list[list[str]], list[int]]:
    """The non-blank lines after ``start`` split into fields, each with as many fields as line
    ``start`` (the header, or the first record), with their 1-based line numbers.

    Raises:
        DataError: naming the first line with another number of fields (malformed or cut short).
    """
    width = len(_fields(lines[start], delimiter))
    records: list[list[str]] = [] if skip_header else [_fields(lines[start], delimiter)]
    rows: list[int] = [] if skip_header else [start + 1]
    for i in range(start + 1, len(lines)):
        fields = _fields(lines[i], delimiter)
        if all(not f.strip() for f in fields):
            continue  # blank lines (and lines of empty fields) are not records
        if len(fields) != width:
            what = "the header" if skip_header else "the first row"
            sep = _DELIMITER_NAMES.get(delimiter, repr(delimiter))
            raise DataError(
                f"{name} line {i + 1}: {len(fields)} {sep}-separated fields, {what} (line {start + 1}) "
                f"has {width}: the line is malformed or cut short"
            )
        records.append(fields)
        rows.append(i + 1)
    return records, rows


def _unique_names(names: list[str]) -> list[str]:
    """Header names with empty ones named ``column_<j>`` and repeats suffixed ``.1``, ``.2`` (as pandas)."""
    out: list[str] = []
    seen: dict[str, int] = {}
    for j, raw in enumerate(names):
        name = raw.strip() or f"column_{j + 1}"
        base = name
        while name in seen:
            seen[base] += 1
            name = f"{base}.{seen[base]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


def _read_csv(path: Path) -> _Raw:
    lines = _read_text(path).splitlines()
    delimiter = _sniff(lines)
    # Skip banner lines (CryptoDataDownload puts its URL on line 1) and leading blank lines:
    # the table starts at the first line with more than one field.
    start = next((i for i, line in enumerate(lines) if len(_fields(line, delimiter)) > 1), None)
    if start is None:
        raise DataError(
            f"{path.name}: no table found (no line has more than one field separated by a comma, "
            "semicolon or tab)"
        )
    first = _fields(lines[start], delimiter)
    has_header = not _is_number(first[0].strip())
    records, rows = _records(lines, start, delimiter, path.name, skip_header=has_header)
    if has_header:
        columns = _unique_names(first)
    else:
        columns = [
            _HEADERLESS_NAMES[j] if j < len(_HEADERLESS_NAMES) else f"column_{j + 1}"
            for j in range(len(first))
        ]
        if len(first) == 2:
            columns = ["timestamp", "close"]
    table = pd.DataFrame(records, columns=columns, dtype=str)
    return _Raw(table, np.asarray(rows, dtype=int), start + 1 if has_header else None, path.name)


def read_frame(path: str | Path) -> pd.DataFrame:
    """A CSV (header on its first line; comma, semicolon or tab) or Parquet table, with pandas'
    type inference: the reader of data files that are plain tables of numbers (the bootstrap
    model's returns or prices).

    Raises:
        DataError: naming the file, and the line for a CSV line with another number of fields than
            the header; also for empty, binary or unreadable files.
    """
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        return _parquet(path)
    text = _read_text(path)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip())
    delimiter = _sniff(lines[start:])
    _records(lines, start, delimiter, path.name, skip_header=True)
    try:
        return pd.read_csv(io.StringIO(text), sep=delimiter)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path.name}: cannot read as CSV ({first})") from None


def _read_json(path: Path) -> _Raw:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path.name} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{path.name}: JSON nested too deeply to be a table of prices") from None
    if isinstance(data, dict):
        # {"data": [...]} or {"ohlcv": [...]} wrappers
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(
                f"{path.name}: expected a list of OHLCV records, got an object with keys {sorted(data)}"
            )
        data = lists[0]
    if not isinstance(data, list) or not data:
        raise DataError(f"{path.name}: expected a non-empty list of OHLCV records")
    if all(isinstance(r, list | tuple) for r in data):
        width = max(len(r) for r in data)
        for i, r in enumerate(data):
            if len(r) != width:
                raise DataError(
                    f"{path.name} row {i + 1}: has {len(r)} fields, the other records have {width}"
                )
        names = [
            _HEADERLESS_NAMES[j] if j < len(_HEADERLESS_NAMES) else f"column_{j + 1}" for j in range(width)
        ]
        if width == 2:
            names = ["timestamp", "close"]
        table = pd.DataFrame(data, columns=names, dtype=object)
    elif all(isinstance(r, dict) for r in data):
        table = pd.DataFrame.from_records(data)
    else:
        raise DataError(f"{path.name}: records must all be lists [ms, o, h, l, c, v] or all be objects")
    return _Raw(table, np.arange(1, len(table) + 1), None, path.name)


def _parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path.name}: cannot read as Parquet ({first})") from None


def _read_parquet(path: Path) -> _Raw:
    table = _parquet(path)
    if isinstance(table.index, pd.DatetimeIndex):
        table = table.reset_index(names=table.index.name or "timestamp")
    else:
        table = table.reset_index(drop=True)
    return _Raw(table, np.arange(1, len(table) + 1), None, path.name)


def _find_column(
    raw: _Raw,
    override: str | None,
    candidates: tuple[str, ...],
    what: str,
    required: bool,
    option: str | None = None,
) -> str | None:
    """The column named ``override``, else the first of ``candidates`` (any case and spacing).
    ``option`` is how the caller names the override (``price_col``, ``--column``) for the message."""
    columns = list(raw.table.columns)
    where = f"{raw.name} row {raw.header_row} (header)" if raw.header_row else raw.name
    if override is not None:
        for c in columns:
            if c == override or _norm(c) == _norm(override):
                return c
        raise DataError(f"{where}: no column {override!r} ({what}); columns are {[str(c) for c in columns]}")
    normalized = {_norm(c): c for c in columns}
    for name in candidates:
        if name in normalized:
            return normalized[name]
    if required:
        fix = f"name it with the {option} option" if option else "rename it to one of those"
        raise DataError(
            f"{where}: no {what} column (looked for {', '.join(candidates)}); columns are "
            f"{[str(c) for c in columns]}; {fix}"
        )
    return None


def _epoch_unit(values: np.ndarray) -> str:
    """Unit of numeric epoch timestamps from their magnitude (dates between 1973 and 5138)."""
    m = float(np.nanmedian(np.abs(values)))
    if m < 1e11:
        return "s"
    if m < 1e14:
        return "ms"
    if m < 1e17:
        return "us"
    return "ns"


def parse_timestamps(values: pd.Series, rows: np.ndarray, name: str, column: str) -> pd.DatetimeIndex:
    """UTC timestamps from epoch numbers (unit by magnitude) or date strings (naive = UTC)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ts = pd.to_datetime(values, utc=True)
    else:
        as_text = values.astype(str).str.strip()
        numbers = pd.to_numeric(as_text, errors="coerce")
        if numbers.notna().all():
            arr = numbers.to_numpy(dtype=float)
            unit = _epoch_unit(arr)
            ts = pd.to_datetime(np.round(arr).astype(np.int64), unit=unit, utc=True)
            ts = pd.Series(ts)
        else:
            ts = pd.to_datetime(as_text, utc=True, errors="coerce", format="ISO8601")
            if ts.isna().any():
                ts = pd.to_datetime(as_text, utc=True, errors="coerce", format="mixed")
        bad = np.flatnonzero(pd.isna(ts).to_numpy())
        if bad.size:
            i = bad[0]
            raise DataError(f"{name} row {rows[i]}: cannot parse {column} {values.iloc[i]!r} as a timestamp")
    return pd.DatetimeIndex(ts).as_unit("ns")


def _parse_numbers(
    values: pd.Series, rows: np.ndarray, name: str, column: str, *, positive: bool, allow_missing: bool
) -> np.ndarray:
    text = values.astype(str).str.strip()
    arr = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    missing = text.isin(["", "nan", "NaN", "None", "null", "<NA>"]).to_numpy()
    for i in np.flatnonzero(~np.isfinite(arr) | (arr <= 0 if positive else arr < 0)):
        if missing[i]:
            if allow_missing:
                continue
            raise DataError(f"{name} row {rows[i]}: {column} is missing")
        if np.isnan(arr[i]):
            raise DataError(f"{name} row {rows[i]}: {column} {values.iloc[i]!r} is not a number")
        if not np.isfinite(arr[i]):
            raise DataError(f"{name} row {rows[i]}: {column} is {arr[i]} (prices must be finite)")
        kind = "positive" if positive else "non-negative"
        raise DataError(f"{name} row {rows[i]}: {column} {arr[i]:g} is not {kind}")
    return arr


def order_rows(index: pd.DatetimeIndex, rows: np.ndarray, name: str) -> np.ndarray:
    """Positions that sort the rows by time, after checking the file's order.

    A file whose rows are all strictly decreasing (newest first, as CryptoDataDownload writes them)
    is reversed; otherwise every row must come strictly after the previous one. A single row out
    of place, or a repeated timestamp, is an error: it is more likely a corrupted file than a
    sorting convention.
    """
    n = len(index)
    values = index.as_unit("ns").asi8
    diffs = np.diff(values)
    if n > 1 and np.all(diffs < 0):
        return np.arange(n)[::-1]
    newest_first = n > 1 and np.sum(diffs < 0) > np.sum(diffs > 0)
    bad = np.flatnonzero(diffs >= 0) if newest_first else np.flatnonzero(diffs <= 0)
    if bad.size:
        i = bad[0] + 1
        cur, prev = index[i], index[i - 1]
        if diffs[i - 1] == 0:
            j = i - 1
            raise DataError(
                f"{name} row {rows[i]}: timestamp {_fmt_ts(cur)} duplicates row {rows[j]}: timestamps must be unique"
            )
        if newest_first:
            raise DataError(
                f"{name} row {rows[i]}: timestamp {_fmt_ts(cur)} is not before the previous row "
                f"({_fmt_ts(prev)}) in a file sorted newest first: rows must be sorted"
            )
        raise DataError(
            f"{name} row {rows[i]}: timestamp {_fmt_ts(cur)} is not after the previous row ({_fmt_ts(prev)}): "
            "rows must be sorted"
        )
    return np.arange(n)


def _fmt_ts(ts: pd.Timestamp) -> str:
    if ts.hour == ts.minute == ts.second == 0 and ts.microsecond == 0 and ts.nanosecond == 0:
        return ts.strftime("%Y-%m-%d")
    return ts.strftime("%Y-%m-%d %H:%M:%S")


def _read_raw(path: Path, fmt: str | None) -> _Raw:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file (a directory?); give a CSV, JSON or Parquet file")
    kind = _detect_format(path, fmt)
    return {"csv": _read_csv, "json": _read_json, "parquet": _read_parquet}[kind](path)


def load_prices(
    path: str | Path,
    *,
    timestamp_col: str | None = None,
    price_col: str | None = None,
    fmt: Format | None = None,
    drop_last_partial: bool = False,
    min_rows: int = MIN_ROWS,
    option_names: tuple[str, str] = ("timestamp_col", "price_col"),
) -> pd.DataFrame:
    """Read and validate a price history.

    Args:
        path: CSV, JSON (ccxt OHLCV list) or Parquet file; the format follows the extension
            unless ``fmt`` is given.
        timestamp_col: the bar-open time column (default: the first of timestamp, open_time,
            date, datetime, time, unix, ts, any case; headerless files use the first column).
        price_col: the close price column (default: close, then adj close, then price).
        drop_last_partial: drop the last row, the bar still open when the file was saved
            (a file written during the day ends in an incomplete daily bar).
        min_rows: fewest rows accepted (after dropping the partial bar).
        option_names: how the caller spells the ``timestamp_col`` and ``price_col`` overrides
            (``--column`` on a command line): a missing column's message names them.

    Returns:
        A DataFrame indexed by a UTC ``DatetimeIndex`` named ``timestamp`` (sorted, unique) with
        float columns ``close`` and, where the file has them, ``open``, ``high``, ``low``,
        ``volume``. ``df.attrs["source"]`` holds the file name.

    Raises:
        DataError: naming the file, the row and the problem (missing column, unparseable or
            unsorted or duplicate timestamp, non-positive or non-finite price, too few rows).
    """
    raw = _read_raw(Path(path), fmt)
    name = raw.name
    close_col = _find_column(raw, price_col, _CLOSE_NAMES, "close price", True, option_names[1])
    time_col = _find_column(raw, timestamp_col, _TIME_NAMES, "timestamp", True, option_names[0])
    if len(raw.table) == 0:
        raise DataError(f"{name}: no price rows, at least {min_rows} are needed")
    index = parse_timestamps(raw.table[time_col], raw.rows, name, str(time_col))

    columns: dict[str, np.ndarray] = {}
    for field in PRICE_COLUMNS:
        col = close_col if field == "close" else None
        if field != "close":
            col = _find_column(raw, None, (field,), field, required=False)
            if col is None and field == "volume":
                col = next((c for c in raw.table.columns if _norm(c).startswith("volume")), None)
        if col is None:
            continue
        columns[field] = _parse_numbers(
            raw.table[col],
            raw.rows,
            name,
            str(col),
            positive=field != "volume",
            allow_missing=field == "volume",
        )

    order = order_rows(index, raw.rows, name)
    df = pd.DataFrame({k: v[order] for k, v in columns.items()}, index=index[order])
    df.index.name = "timestamp"
    if drop_last_partial and len(df):
        df = df.iloc[:-1]
    if len(df) < min_rows:
        first, last = raw.rows.min(), raw.rows.max()
        raise DataError(
            f"{name} rows {first}-{last}: only {len(df)} price rows"
            f"{' after dropping the last partial bar' if drop_last_partial else ''}, at least {min_rows} are needed"
        )
    df.attrs["source"] = name
    return df


def infer_frequency(index: pd.DatetimeIndex) -> pd.Timedelta:
    """The bar spacing: the most common difference between consecutive timestamps."""
    if len(index) < 2:
        raise DataError("cannot infer the bar frequency from fewer than 2 rows")
    diffs = pd.Series(np.diff(pd.DatetimeIndex(index).as_unit("ns").asi8))
    return pd.Timedelta(int(diffs.mode().iloc[0]), unit="ns")


_FREQ = re.compile(r"^\s*(\d+(?:\.\d+)?)?\s*(s|sec|m|min|h|d|w)\s*$", re.IGNORECASE)
_FREQ_UNITS = {"s": "s", "sec": "s", "m": "min", "min": "min", "h": "h", "d": "D", "w": "W"}


def parse_frequency(text: str | pd.Timedelta) -> pd.Timedelta:
    """``'1d'``, ``'4h'``, ``'15m'`` (minutes, as in ccxt), ``'1w'`` -> Timedelta."""
    if isinstance(text, pd.Timedelta):
        return text
    m = _FREQ.match(str(text))
    if not m:
        raise DataError(f"cannot read frequency {text!r}; use e.g. 1d, 4h, 1h, 15m, 1w")
    count = float(m.group(1) or 1)
    unit = _FREQ_UNITS[m.group(2).lower()]
    if unit == "W":
        return pd.Timedelta(days=7 * count)
    return pd.Timedelta(count, unit=unit)


def format_frequency(step: pd.Timedelta) -> str:
    """Inverse of :func:`parse_frequency` for whole units: Timedelta(hours=4) -> '4h'."""
    seconds = step.total_seconds()
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def detect_gaps(
    df: pd.DataFrame | pd.DatetimeIndex, frequency: str | pd.Timedelta | None = None
) -> pd.DataFrame:
    """Missing bars: one row per gap, with the last bar before it and the first bar after it.

    Args:
        df: prices from :func:`load_prices` (or their index).
        frequency: the expected bar spacing (default: :func:`infer_frequency`).

    Returns:
        DataFrame with columns ``before``, ``after`` (timestamps) and ``missing`` (number of
        bars absent between them); empty when the series is regular.
    """
    index = pd.DatetimeIndex(df if isinstance(df, pd.DatetimeIndex) else df.index).as_unit("ns")
    step = infer_frequency(index) if frequency is None else parse_frequency(frequency)
    diffs = np.diff(index.asi8)
    where = np.flatnonzero(diffs > step.value)
    return pd.DataFrame(
        {
            "before": index[where],
            "after": index[where + 1],
            "missing": (np.round(diffs[where] / step.value) - 1).astype(int),
        }
    )


def resample_close(df: pd.DataFrame, frequency: str | pd.Timedelta) -> pd.Series:
    """Close prices of coarser bars: the last close in each bin, bins labelled by their open time.

    Bins are aligned to the Unix epoch (so daily bins start at 00:00 UTC; weekly bins on Monday).
    A trailing bin that the data do not cover to its end is dropped (its close would be a partial
    bar), and so are empty bins (gaps).
    """
    target = parse_frequency(frequency)
    step = infer_frequency(df.index)
    name = df.attrs.get("source", "prices")
    if target < step:
        raise DataError(
            f"{name}: cannot resample {format_frequency(step)} bars to the finer frequency {frequency}"
        )
    if target.value % step.value:
        raise DataError(
            f"{name}: frequency {frequency} is not a whole number of {format_frequency(step)} bars"
        )
    origin = (
        pd.Timestamp("1970-01-05", tz="UTC") if target.value % pd.Timedelta(days=7).value == 0 else "epoch"
    )
    grouped = df["close"].resample(target, origin=origin, label="left", closed="left")
    close = grouped.last()
    last_seen = (
        pd.Series(df.index, index=df.index)
        .resample(target, origin=origin, label="left", closed="left")
        .last()
    )
    close = close[close.notna()]
    if len(close) and last_seen.loc[close.index[-1]] + step < close.index[-1] + target:
        close = close.iloc[:-1]
    close.attrs = dict(df.attrs)
    return close


def log_returns(df: pd.DataFrame, frequency: str | pd.Timedelta | None = None) -> pd.Series:
    """Log-returns of the close, optionally after resampling to ``frequency`` (e.g. '1d', '4h').

    A return is labelled by the open time of the bar it ends in. Returns across gaps in the data
    span the gap (they are not dropped); :func:`detect_gaps` reports them.

    Returns:
        Series ``log_return`` with ``attrs["step"]`` (Timedelta of one return) and ``attrs["source"]``.
    """
    close = resample_close(df, frequency) if frequency is not None else df["close"]
    step = parse_frequency(frequency) if frequency is not None else infer_frequency(df.index)
    r = np.log(close.astype(float)).diff().iloc[1:]
    r.name = "log_return"
    r.attrs = {"step": step, "source": df.attrs.get("source", "prices")}
    return r


# ---------------------------------------------------------------------------------------------
# Several assets


def load_wide_prices(
    path: str | Path,
    *,
    columns: list[str] | None = None,
    timestamp_col: str | None = None,
    fmt: Format | None = None,
    drop_last_partial: bool = False,
) -> list[pd.Series]:
    """Close prices of each asset in a file: one series per price column of a wide table
    (``timestamp, BTC, ETH, ...``), or the close column of a one-asset file (any layout that
    :func:`load_prices` reads).

    A wide table is one without a close column (close, adj close, price); its price columns are
    ``columns`` if given, else every column but the timestamp whose cells are all numbers or empty.
    An empty cell is a bar without a price for that asset (histories of different lengths);
    :func:`align_prices` drops it.

    Returns:
        Series of positive floats named by asset (the column, or the file's stem for a one-asset
        file), indexed by UTC ``timestamp``, sorted and without missing values; each has
        ``attrs["source"]`` the file name.

    Raises:
        DataError: naming the file and row, as :func:`load_prices` (unknown column, unparseable,
            unsorted or duplicate timestamp, non-positive or non-finite price).
    """
    raw = _read_raw(Path(path), fmt)
    name = raw.name
    if columns is None and _find_column(raw, None, _CLOSE_NAMES, "close price", required=False):
        df = load_prices(path, timestamp_col=timestamp_col, fmt=fmt, drop_last_partial=drop_last_partial)
        close = df["close"].rename(Path(path).stem)
        close.attrs = {"source": name}
        return [close]
    time_col = _find_column(raw, timestamp_col, _TIME_NAMES, "timestamp", True, "timestamp_col")
    if columns is not None:
        chosen = [_find_column(raw, c, (), "price", True) for c in columns]
    else:
        chosen = [c for c in raw.table.columns if c != time_col and _numeric_or_empty(raw.table[c])]
    if not chosen:
        raise DataError(f"{name}: no price columns besides the timestamp {time_col!r}")
    index = parse_timestamps(raw.table[time_col], raw.rows, name, str(time_col))
    order = order_rows(index, raw.rows, name)
    out = []
    for col in chosen:
        values = _parse_numbers(raw.table[col], raw.rows, name, str(col), positive=True, allow_missing=True)
        series = pd.Series(values[order], index=index[order], name=str(col))
        if drop_last_partial and len(series):
            series = series.iloc[:-1]
        series = series.dropna()
        series.index.name = "timestamp"
        series.attrs = {"source": name}
        out.append(series)
    return out


def _numeric_or_empty(values: pd.Series) -> bool:
    text = values.astype(str).str.strip()
    empty = text.isin(["", "nan", "NaN", "None", "null", "<NA>"])
    return bool((~empty).any() and pd.to_numeric(text[~empty], errors="coerce").notna().all())


@dataclass(frozen=True)
class AlignedPrices:
    """Close prices of several assets on the timestamps they all have.

    Attributes:
        close: ``(rows, assets)`` positive floats, one column per asset (unique names), indexed by
            the common UTC ``timestamp``.
        dropped: asset -> how many of its timestamps are not shared by every asset (dropped).
        sources: asset -> the file (or frame) it came from.
    """

    close: pd.DataFrame
    dropped: dict[str, int]
    sources: dict[str, str]


def align_prices(series: list[pd.Series], *, field: str = "data", min_rows: int = MIN_ROWS) -> AlignedPrices:
    """Align the close prices of several assets on their common timestamps (an inner join).

    Args:
        series: one close-price Series per asset with a UTC DatetimeIndex (e.g. from
            :func:`load_wide_prices` or ``load_prices(...)["close"]``); repeated names get a
            suffix ``_2``, ``_3``.
        field: how the caller names its input in errors (``--data``, ``model.calibrate.data``).
        min_rows: fewest common timestamps accepted.

    Raises:
        ConfigError: naming ``field``: no timestamps in common, or fewer than ``min_rows``.
    """
    names: list[str] = []
    for s in series:
        base = str(s.name) if s.name is not None else "asset"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
    common = series[0].index
    for s in series[1:]:
        common = common.intersection(s.index)
    sources = {n: str(s.attrs.get("source", n)) for n, s in zip(names, series, strict=True)}
    spans = ", ".join(f"{sources[n]} {_span(s.index)}" for n, s in zip(names, series, strict=True))
    if len(common) == 0:
        raise ConfigError(field, f"the price histories have no timestamps in common ({spans})")
    if len(common) < min_rows:
        raise ConfigError(
            field, f"only {len(common)} timestamps in common, at least {min_rows} are needed ({spans})"
        )
    close = pd.DataFrame({n: s.reindex(common).to_numpy(float) for n, s in zip(names, series, strict=True)})
    close.index = pd.DatetimeIndex(common, name="timestamp")
    dropped = {n: int(len(s) - len(common)) for n, s in zip(names, series, strict=True)}
    return AlignedPrices(close, dropped, sources)


def _span(index: pd.Index) -> str:
    if len(index) == 0:
        return "(no rows)"
    return f"{_fmt_ts(index[0])}..{_fmt_ts(index[-1])}"


# ---------------------------------------------------------------------------------------------
# Funding rates

_FUNDING_TIME_NAMES = ("fundingtime", "funding_time_ms", "timestamp", "time", "datetime", "date")
_FUNDING_RATE_NAMES = ("fundingrate", "funding_rate", "rate")


def load_funding(path: str | Path, *, fmt: Format | None = None) -> pd.Series:
    """Read a funding-rate history (decimal rate per funding interval, paid by longs if > 0).

    Layouts: Binance API (``fundingTime`` in ms, ``fundingRate``), split date and time columns
    (``funding_date``, ``funding_time``, ``fundingRate``), ccxt records (``timestamp``,
    ``fundingRate``) or any timestamp column with a ``funding_rate``/``rate`` column. Times are
    rounded to the minute (Binance stamps events a few milliseconds late).

    Returns:
        Series ``funding_rate`` indexed by UTC event time, sorted and unique.
    """
    raw = _read_raw(Path(path), fmt)
    name = raw.name
    normalized = {_norm(c): c for c in raw.table.columns}
    rate_col = _find_column(raw, None, _FUNDING_RATE_NAMES, "funding rate", required=True)
    if "funding_date" in normalized and "funding_time" in normalized:
        stamp = (
            raw.table[normalized["funding_date"]].astype(str).str.strip()
            + " "
            + raw.table[normalized["funding_time"]].astype(str).str.strip()
        )
        index = parse_timestamps(stamp, raw.rows, name, "funding_date + funding_time")
    else:
        time_col = _find_column(raw, None, _FUNDING_TIME_NAMES, "timestamp", required=True)
        index = parse_timestamps(raw.table[time_col], raw.rows, name, str(time_col))
    index = index.round("min")
    text = raw.table[rate_col].astype(str).str.strip()
    rates = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(rates))
    if bad.size:
        i = bad[0]
        raise DataError(
            f"{name} row {raw.rows[i]}: {rate_col} {raw.table[rate_col].iloc[i]!r} is not a finite number"
        )
    order = order_rows(index, raw.rows, name)
    out = pd.Series(rates[order], index=index[order], name="funding_rate")
    out.index.name = "timestamp"
    if len(out) < 2:
        raise DataError(f"{name}: {len(out)} funding events, at least 2 are needed")
    out.attrs["source"] = name
    return out


def annualized_funding(series: pd.Series, periods_per_year: float | None = None) -> float:
    r"""Mean funding rate as an annual rate (what a 1x long pays per year, decimal).

    .. math:: \bar f_{year} = \bar f \cdot N,\qquad N = 365\,\text{days} / \Delta

    with Δ the most common spacing of the events (8 h on Binance: N = 1095), so that the result
    plugs into ``market.funding_rate``.
    """
    if periods_per_year is None:
        periods_per_year = pd.Timedelta(days=365) / infer_frequency(series.index)
    return float(series.mean() * periods_per_year)


def years_of(step: pd.Timedelta) -> float:
    """Length of a bar in years (365-day year, as the simulator)."""
    return step.total_seconds() / (365.0 * 86400.0)


def steps_per_day_of(step: pd.Timedelta) -> float:
    """Bars per day (1 for daily bars, 6 for 4-hour bars)."""
    return 86400.0 / step.total_seconds() if step.total_seconds() > 0 else math.inf
