"""``levopt data``: fetch price history (and funding, open interest, liquidations) through ccxt into
Parquet caches, and check data files.

ccxt (the ``fetch`` extra) is imported when ``fetch`` runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import pandas as pd
import typer

from levopt.data.fetch import (
    make_exchange,
    perpetual_symbol,
    require_history,
    timeframe_ms,
    to_ms,
    update_funding_cache,
    update_liquidation_cache,
    update_ohlcv_cache,
    update_open_interest_cache,
)
from levopt.data.load import (
    detect_gaps,
    format_frequency,
    infer_frequency,
    load_prices,
    log_returns,
    years_of,
)
from levopt.errors import ConfigError
from levopt.outputs import check_target

data_app = typer.Typer(
    help="Price data: fetch OHLCV bars, funding, open interest and liquidations through ccxt (cached in "
    "Parquet), check files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _echo(message: str) -> None:
    typer.echo(message, err=True)


@data_app.command("fetch")
def fetch(
    symbol: Annotated[
        str, typer.Option("--symbol", help="ccxt market symbol, e.g. BTC/USDT.", show_default=False)
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Parquet cache file; an existing one is extended.", show_default=False),
    ],
    exchange: Annotated[str, typer.Option("--exchange", help="ccxt exchange id.")] = "binance",
    timeframe: Annotated[
        str, typer.Option("--timeframe", help="Bar length: 1m, 15m, 1h, 4h, 1d, 1w.")
    ] = "1d",
    since: Annotated[str, typer.Option("--since", help="First bar (UTC date or datetime).")] = "2020-01-01",
    until: Annotated[
        Optional[str], typer.Option("--until", help="Stop before this time (default: now).")  # noqa: UP045
    ] = None,
    funding: Annotated[
        bool, typer.Option("--funding", help="Also fetch the perpetual's funding-rate history.")
    ] = False,
    funding_symbol: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--funding-symbol",
            help="Perpetual symbol for --funding, --open-interest and --liquidations "
            "(default: BTC/USDT -> BTC/USDT:USDT).",
        ),
    ] = None,
    funding_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--funding-out", help="Funding cache file (default: <out>_funding.parquet)."),
    ] = None,
    open_interest: Annotated[
        bool,
        typer.Option("--open-interest", help="Also fetch the perpetual's open interest every --timeframe."),
    ] = False,
    open_interest_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--open-interest-out", help="Open-interest cache (default: <out>_open_interest.parquet)."
        ),
    ] = None,
    liquidations: Annotated[
        bool, typer.Option("--liquidations", help="Also fetch the perpetual's liquidations (few exchanges).")
    ] = False,
    liquidations_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--liquidations-out", help="Liquidation cache (default: <out>_liquidations.parquet)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Bars per request.")] = 1000,
) -> None:
    """Download OHLCV bars (and funding, open interest, liquidations of the perpetual) into Parquet
    files; re-running resumes after their last rows."""

    # Validate every input and output before any request.
    timeframe_ms(timeframe)
    _check_time("--since", since)
    if until is not None:
        _check_time("--until", until)
    check_target(out, "--out", "file")
    targets = _extra_targets(
        out,
        {"funding": funding_out, "open_interest": open_interest_out, "liquidations": liquidations_out},
        {"funding": funding, "open_interest": open_interest, "liquidations": liquidations},
    )
    ex = make_exchange(exchange)
    for kind in targets:
        require_history(ex, kind)
    bars, n_new = update_ohlcv_cache(ex, out, symbol, timeframe, since, until=until, limit=limit)
    _echo(
        f"{out}: {len(bars)} {timeframe} bars of {symbol} on {exchange} "
        f"({bars.index[0]:%Y-%m-%d %H:%M} .. {bars.index[-1]:%Y-%m-%d %H:%M} UTC), {n_new} new"
    )
    perp = funding_symbol or perpetual_symbol(symbol)
    for kind, target in targets.items():
        _echo(f"{target}: {_fetch_history(ex, kind, target, perp, timeframe, since, until, limit)}")


_EXTRA_FLAGS = {
    "funding": "--funding-out",
    "open_interest": "--open-interest-out",
    "liquidations": "--liquidations-out",
}


def _extra_targets(out: Path, given: dict[str, Path | None], wanted: dict[str, bool]) -> dict[str, Path]:
    """The cache file of each history asked for besides the bars (default ``<out>_<kind>.parquet``),
    each checked writable and apart from the others."""
    seen = {out.resolve(): "--out"}
    targets: dict[str, Path] = {}
    for kind, flag in _EXTRA_FLAGS.items():
        if not wanted[kind]:
            continue
        path = given[kind] or out.with_name(f"{out.stem}_{kind}.parquet")
        named = flag if given[kind] is not None else "--out"
        check_target(path, named, "file")
        if path.resolve() in seen:
            raise ConfigError(
                named, f"{path} is also the file of {seen[path.resolve()]}; allowed: a file of its own"
            )
        seen[path.resolve()] = flag if given[kind] is not None else f"the default of {flag}"
        targets[kind] = path
    return targets


def _fetch_history(
    ex: Any, kind: str, target: Path, perp: str, timeframe: str, since: str, until: str | None, limit: int
) -> str:
    """Fetch one history of the perpetual into ``target``; what it now holds, in words."""
    if kind == "funding":
        rates, n = update_funding_cache(ex, target, perp, since, until=until, limit=limit)
        return f"{len(rates)} funding rates of {perp}, {n} new"
    if kind == "open_interest":
        # Binance serves at most 500 periods a request.
        oi, n = update_open_interest_cache(
            ex, target, perp, timeframe, since, until=until, limit=min(limit, 500)
        )
        return f"{len(oi)} {timeframe} open-interest rows of {perp}, {n} new"
    events, n = update_liquidation_cache(ex, target, perp, since, until=until, limit=limit)
    return (
        f"{len(events)} liquidations of {perp} ({events['long'].sum():,.0f} long, "
        f"{events['short'].sum():,.0f} short), {n} new"
    )


def _check_time(flag: str, text: str) -> None:
    try:
        ok = not pd.isna(pd.Timestamp(text)) and to_ms(text) is not None
    except (ValueError, OverflowError, TypeError):
        ok = False
    if not ok:
        raise ConfigError(
            flag, f"cannot read {text!r} as a UTC date or time; allowed: e.g. 2020-01-01 or 2020-01-01T08:00"
        )


@data_app.command("info")
def info(
    path: Annotated[Path, typer.Argument(help="Price file (CSV, JSON or Parquet).", show_default=False)],
    timestamp_col: Annotated[Optional[str], typer.Option("--timestamp-col")] = None,  # noqa: UP045
    price_col: Annotated[Optional[str], typer.Option("--price-col")] = None,  # noqa: UP045
) -> None:
    """Load and validate a price file; print its range, bar length, gaps and return statistics."""

    df = load_prices(
        path,
        timestamp_col=timestamp_col,
        price_col=price_col,
        option_names=("--timestamp-col", "--price-col"),
    )
    step = infer_frequency(df.index)
    gaps = detect_gaps(df, step)
    r = log_returns(df).to_numpy()
    per_year = 1.0 / years_of(step)
    typer.echo(f"{path.name}: {len(df)} rows, {format_frequency(step)} bars, {df.index[0]} .. {df.index[-1]}")
    typer.echo(f"columns: {', '.join(df.columns)}")
    typer.echo(
        f"log-returns: annualized vol {np.std(r, ddof=1) * np.sqrt(per_year):.4f}, "
        f"mean {np.mean(r) * per_year:.4f} a year (365-day year)"
    )
    typer.echo(f"gaps: {len(gaps)} ({int(gaps['missing'].sum()) if len(gaps) else 0} missing bars)")
    for row in gaps.head(20).itertuples():
        typer.echo(f"  {row.before} -> {row.after} ({row.missing} missing)")
