"""The returns a calibration conditions on: one asset's log-returns, or several assets' on the
timestamps they share, with where they came from and what was dropped to align them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from levopt.data.load import (
    Format,
    align_prices,
    detect_gaps,
    format_frequency,
    infer_frequency,
    load_prices,
    load_wide_prices,
    log_returns,
    parse_frequency,
    resample_close,
    years_of,
)
from levopt.errors import ConfigError, DataError

PriceInput = str | Path | pd.DataFrame | pd.Series


@dataclass(frozen=True)
class Returns:
    """Per-step log-returns with their provenance.

    Attributes:
        values: ``(T,)`` decimal log-returns of one asset, or ``(T, n_assets)`` of several.
        dt: years per return.
        source, start, end: the file(s) (comma-separated) and the first and last bar's time.
        n_gaps: missing bars (returns that span more than one step).
        assets: names of the columns of a multi-asset ``values``.
        sources: the file (or frame) of each asset.
        dropped: asset -> timestamps of its history not shared by every asset (dropped to align).
    """

    values: np.ndarray
    dt: float
    source: str | None = None
    start: str | None = None
    end: str | None = None
    n_gaps: int = 0
    assets: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    dropped: dict[str, int] = field(default_factory=dict)


def check_step(name: str, step: pd.Timedelta, steps_per_day: float) -> None:
    """GARCH parameters are per step: the data's bars must be the simulation's steps.

    Raises:
        ConfigError: ``model.calibrate.frequency``, saying how to resample or which steps_per_day fits.
    """
    dt, dt_sim = years_of(step), 1.0 / (365.0 * steps_per_day)
    if abs(dt - dt_sim) > 1e-6 * dt_sim:
        sim = format_frequency(pd.Timedelta(days=1 / steps_per_day))
        raise ConfigError(
            "model.calibrate.frequency",
            f"{name} gives {format_frequency(step)} returns but the simulation steps are {sim} "
            f"(steps_per_day: {steps_per_day:g}); GARCH parameters are per step, so resample with "
            f"frequency: {sim} or set steps_per_day: {86400 / step.total_seconds():g}",
        )


def single_returns(
    data: PriceInput | np.ndarray,
    *,
    kind: str,
    steps_per_day: float,
    column: str | None,
    frequency: str | None,
    drop_last_partial: bool,
    start: str | None,
    end: str | None,
    timestamp_col: str | None = None,
) -> Returns:
    """One asset's returns from a price file, a price frame/series or an array of returns."""
    dt_sim = 1.0 / (365.0 * steps_per_day)
    if isinstance(data, np.ndarray | list | tuple):
        values = np.asarray(data, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(values)):
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"returns: element {i} is {values[i]} (returns must be finite)")
        return Returns(values, dt_sim)
    if isinstance(data, pd.Series) and not isinstance(data.index, pd.DatetimeIndex):
        return single_returns(
            data.to_numpy(),
            kind=kind,
            steps_per_day=steps_per_day,
            column=None,
            frequency=None,
            drop_last_partial=False,
            start=None,
            end=None,
        )
    if isinstance(data, str | Path):
        prices = load_prices(
            data, price_col=column, timestamp_col=timestamp_col, drop_last_partial=drop_last_partial
        )
        source = str(data)
    elif isinstance(data, pd.DataFrame):
        prices, source = data, data.attrs.get("source")
    else:  # a Series of prices with a DatetimeIndex
        prices, source = data.to_frame("close"), data.attrs.get("source")
    name = Path(source).name if source else "prices"
    prices = _date_range(prices, start, end, name)
    r = log_returns(prices, frequency)
    step = r.attrs["step"]
    if kind == "garch":
        check_step(name, step, steps_per_day)
    gaps = detect_gaps(
        prices.index if frequency is None else r.index, step if frequency else infer_frequency(prices.index)
    )
    return Returns(
        r.to_numpy(np.float64),
        years_of(step),
        source,
        str(r.index[0] - step),
        str(r.index[-1]),
        int(len(gaps)),
    )


def _date_range(prices: pd.DataFrame, start: str | None, end: str | None, name: str) -> pd.DataFrame:
    if start is None and end is None:
        return prices
    lo = pd.Timestamp(start, tz="UTC") if start is not None else None
    hi = pd.Timestamp(end, tz="UTC") if end is not None else None
    prices = prices.loc[lo:hi]
    if len(prices) < 3:
        raise DataError(f"{name}: only {len(prices)} rows between start {start} and end {end}")
    return prices


def is_price_input(data: Any) -> bool:
    """Whether ``data`` names prices (a file, a frame, or a list of them) rather than returns."""
    if isinstance(data, list | tuple):
        return len(data) > 0 and all(isinstance(d, PriceInput) for d in data)
    return isinstance(data, PriceInput)


def multi_returns(
    data: PriceInput | list[PriceInput] | np.ndarray,
    *,
    steps_per_day: float,
    column: str | list[str] | None = None,
    frequency: str | None = None,
    drop_last_partial: bool = False,
    start: str | None = None,
    end: str | None = None,
    timestamp_col: str | None = None,
    fmt: Format | None = None,
    field: str = "data",
) -> Returns:
    """Several assets' returns, ``(T, n_assets)``, on the timestamps all of them have.

    Args:
        data: an array ``(steps, assets)`` of per-step log-returns (at ``steps_per_day``); a price
            file with one price column per asset (a wide table, see
            :func:`levopt.data.load.load_wide_prices`); several price files, one asset each (their
            close); or price frames/series with a DatetimeIndex.
        column: the close column of each file (a name), or the asset columns of a wide file (a list).
        frequency, drop_last_partial, start, end, timestamp_col, fmt: as for one asset;
            ``start``/``end`` apply to the aligned prices, ``fmt`` to every file.
        field: how the caller names ``data`` in errors (``--data``, ``model.calibrate.data``).

    Returns:
        :class:`Returns` with ``assets``, ``sources`` and ``dropped`` (timestamps of each asset's
        history not shared by all, which alignment drops).

    Raises:
        ConfigError: naming ``field``: fewer than two assets, no timestamps in common, a non-finite
            value (with the file and row, or the array element), malformed files.
    """
    if not is_price_input(data):
        return _array_returns(data, steps_per_day, field)
    try:
        series = _asset_prices(data, column, timestamp_col, fmt, drop_last_partial, field)
        if frequency is not None:
            series = [_resampled(s, frequency) for s in series]
        aligned = align_prices(series, field=field)
        close = _date_range(aligned.close, start, end, "aligned prices")
        step = parse_frequency(frequency) if frequency is not None else infer_frequency(close.index)
        gaps = detect_gaps(close.index, step)
    except DataError as exc:
        raise ConfigError(field, str(exc)) from None
    assets = tuple(close.columns)
    sources = tuple(aligned.sources[a] for a in assets)
    check_step(", ".join(dict.fromkeys(Path(s).name for s in sources)), step, steps_per_day)
    r = np.diff(np.log(close.to_numpy(np.float64)), axis=0)
    return Returns(
        r,
        years_of(step),
        ", ".join(dict.fromkeys(sources)),
        str(close.index[0]),
        str(close.index[-1]),
        int(len(gaps)),
        assets,
        sources,
        dict(aligned.dropped),
    )


def _array_returns(data: Any, steps_per_day: float, field: str) -> Returns:
    try:
        values = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            field, f"not numeric ({exc}); allowed: (steps, assets) log-returns or price files"
        ) from None
    if values.ndim != 2:
        raise ConfigError(field, f"returns of shape {values.shape}; allowed: (steps, assets) log-returns")
    _check_assets(values.shape[1], [f"column {j}" for j in range(values.shape[1])], field)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        i, j = bad[0]
        raise ConfigError(field, f"row {i}, asset {j} is {values[i, j]}; allowed: finite log-returns")
    assets = tuple(f"asset_{j}" for j in range(values.shape[1]))
    return Returns(values, 1.0 / (365.0 * steps_per_day), assets=assets)


def _check_assets(n: int, names: list[str], field: str) -> None:
    if n < 2:
        what = f"{n} asset ({', '.join(names)})" if n else "no asset"
        raise ConfigError(
            field,
            f"{what}; dcc_garch needs at least 2: give several price files (repeat --data) or one file "
            "with a price column per asset",
        )


def _asset_prices(
    data: PriceInput | list[PriceInput],
    column: str | list[str] | None,
    timestamp_col: str | None,
    fmt: Format | None,
    drop_last_partial: bool,
    field: str,
) -> list[pd.Series]:
    """One close-price Series per asset (named), from files and frames."""
    items = list(data) if isinstance(data, list | tuple) else [data]
    several = len(items) > 1
    out: list[pd.Series] = []
    for item in items:
        if isinstance(item, str | Path):
            if isinstance(column, str) or several:
                df = load_prices(
                    item,
                    price_col=column if isinstance(column, str) else None,
                    timestamp_col=timestamp_col,
                    fmt=fmt,
                    drop_last_partial=drop_last_partial,
                )
                close = df["close"].rename(Path(item).stem)
                close.attrs = {"source": str(item)}
                out.append(close)
            else:
                for s in load_wide_prices(
                    item,
                    columns=column,
                    timestamp_col=timestamp_col,
                    fmt=fmt,
                    drop_last_partial=drop_last_partial,
                ):
                    s.attrs = {"source": str(item)}
                    out.append(s)
        else:
            out.extend(_frame_prices(item, field))
    _check_assets(len(out), [str(s.name) for s in out], field)
    return out


def _frame_prices(frame: pd.DataFrame | pd.Series, field: str) -> list[pd.Series]:
    source = str(frame.attrs.get("source", "prices"))
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise ConfigError(field, f"{source}: prices need a DatetimeIndex (or give an array of returns)")
    if isinstance(frame, pd.Series):
        cols = [frame.rename(frame.name if frame.name is not None else Path(source).stem)]
    elif "close" in frame.columns:
        cols = [frame["close"].rename(Path(source).stem)]
    else:
        cols = [frame[c] for c in frame.columns]
    out = []
    for s in cols:
        values = s.to_numpy(np.float64)
        bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
        if bad.size:
            i = bad[0]
            raise ConfigError(
                field, f"{source} {s.name} at {s.index[i]}: price {values[i]}; allowed: finite, > 0"
            )
        s = s.astype(np.float64)
        s.attrs = {"source": source}
        out.append(s)
    return out


def _resampled(close: pd.Series, frequency: str) -> pd.Series:
    frame = close.to_frame("close")
    frame.attrs = dict(close.attrs)
    out = resample_close(frame, frequency).rename(close.name)
    out.attrs = dict(close.attrs)
    return out


def check_enough_returns(returns: Returns) -> None:
    """At least 20 returns, and every asset's vary."""
    n = returns.values.shape[0]
    if n < 20:
        raise DataError(f"{returns.source or 'returns'}: {n} returns, at least 20 are needed to calibrate")
    flat = np.std(returns.values, axis=0).reshape(-1)
    if np.any(flat == 0):
        which = returns.assets[int(np.flatnonzero(flat == 0)[0])] if returns.assets else None
        what = f"{which}: " if which else ""
        raise DataError(f"{returns.source or 'returns'}: {what}all returns are equal; nothing to calibrate")
