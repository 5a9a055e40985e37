"""``levopt liq-price``: the liquidation price of one position, printed on stdout; ``levopt data tiers``:
a venue's current tier table, downloaded through ccxt into a cached CSV file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from levopt.errors import ConfigError
from levopt.io import read_text
from levopt.outputs import check_target
from levopt.venues import VENUES, BracketTable, liquidation_price
from levopt.venues.fetch import CCXT_IDS, tiers_cache_path, update_tiers_cache


def load_positions(
    path: Path, keys: str = "side, quantity, entry_price", field: str = "--positions"
) -> list[dict[str, Any]]:
    """Positions from a JSON or YAML file: a list of mappings, or a mapping with a ``positions``
    list; ``keys`` names what each mapping holds, for the message when it is not such a list."""
    text = read_text(path, field)
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(field, f"{path}: not valid JSON ({exc})") from None
        except RecursionError:
            raise ConfigError(field, f"{path}: nested too deeply to be a list of positions") from None
    else:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark is not None else ""
            raise ConfigError(field, f"{path}: not valid YAML ({where}{problem})") from None
    if isinstance(doc, dict) and set(doc) == {"positions"}:
        doc = doc["positions"]
    if not isinstance(doc, list) or not all(isinstance(p, dict) for p in doc):
        raise ConfigError(field, f"{path}: expected a list of positions (mappings with {keys})")
    return doc


_CROSS_KEYS = "side, quantity, entry_price, mark_price, maintenance_rate, maintenance_amount"


_FLAGS = {
    name: "--" + name.replace("_", "-")
    for name in (
        "venue",
        "side",
        "quantity",
        "entry_price",
        "wallet_balance",
        "mode",
        "maintenance_rate",
        "maintenance_amount",
        "max_leverage",
        "symbol",
    )
}


def liq_price_command(
    venue: Annotated[
        str, typer.Option("--venue", help=f"Venue rule set: {', '.join(VENUES)}.", show_default=False)
    ],
    side: Annotated[str, typer.Option("--side", help="long or short.", show_default=False)],
    quantity: Annotated[
        float, typer.Option("--quantity", help="Position size in base-asset units.", show_default=False)
    ],
    entry_price: Annotated[
        float, typer.Option("--entry-price", help="Average entry price.", show_default=False)
    ],
    wallet_balance: Annotated[
        float,
        typer.Option(
            "--wallet-balance", help="Isolated: the position's margin; cross: the wallet.", show_default=False
        ),
    ],
    mode: Annotated[str, typer.Option("--mode", help="isolated or cross.")] = "isolated",
    maintenance_rate: Annotated[
        Optional[float],  # noqa: UP045 - typer needs Optional here
        typer.Option("--maintenance-rate", help="Fix the bracket's maintenance margin rate (Binance MMR)."),
    ] = None,
    maintenance_amount: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--maintenance-amount", help="Fix the bracket's maintenance amount (Binance cum)."),
    ] = None,
    max_leverage: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option("--max-leverage", help="Hyperliquid: the asset's maximum leverage."),
    ] = None,
    symbol: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(
            "--symbol", help="Instrument whose tier table applies (default: the venue's, e.g. BTCUSDT)."
        ),
    ] = None,
    positions_file: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--positions", help="Cross mode: JSON or YAML list of the other positions."),
    ] = None,
) -> None:
    """Print the mark price at which the position's margin meets the venue's maintenance requirement."""
    others = load_positions(positions_file, _CROSS_KEYS) if positions_file is not None else []
    try:
        price = liquidation_price(
            venue,
            side=side,
            quantity=quantity,
            entry_price=entry_price,
            wallet_balance=wallet_balance,
            mode=mode,
            maintenance_rate=maintenance_rate,
            maintenance_amount=maintenance_amount,
            max_leverage=max_leverage,
            other_positions=others,
            symbol=symbol,
        )
    except ConfigError as exc:
        # The Python API names its arguments; the command line names its flags.
        head, _, rest = exc.field.partition(".")
        if head in _FLAGS and not rest:
            raise ConfigError(_FLAGS[head], str(exc).removeprefix(f"{exc.field}: ")) from None
        raise
    if price == 0.0:
        typer.echo("the position cannot be liquidated at any positive price", err=True)
    typer.echo(f"{price:.12g}")


_TIERS_FLAGS = {"venue": "--venue", "symbol": "--symbol", "out": "--out", "max_age_hours": "--max-age"}
_SHOWN_TIERS = 6


def _amount_text(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:,.0f}" if x.is_integer() else f"{x:,.6g}"


def _tier_lines(table: BracketTable, limit: int = _SHOWN_TIERS) -> list[str]:
    """The first ``limit`` tiers as aligned text columns (notional, maintenance rate and amount, leverage)."""
    head = ("tier", "floor", "cap", "MMR", "amount", "max lev")
    rows = [
        (
            str(i),
            _amount_text(b.floor),
            _amount_text(b.cap),
            f"{b.maintenance_rate * 100:.4g}%",
            _amount_text(b.maintenance_amount),
            f"{b.max_leverage:g}x",
        )
        for i, b in enumerate(table.brackets[:limit], start=1)
    ]
    widths = [max(len(r[c]) for r in (head, *rows)) for c in range(len(head))]
    lines = [
        "  " + "  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)) for r in (head, *rows)
    ]
    if len(table) > limit:
        lines.append(f"  ... {len(table) - limit} more in the file")
    return lines


def tiers_command(
    venue: Annotated[
        str,
        typer.Option("--venue", help=f"{', '.join(CCXT_IDS)}, or a ccxt exchange id.", show_default=False),
    ],
    symbol: Annotated[
        str,
        typer.Option(
            "--symbol",
            help="The venue's symbol (BTCUSDT; BTC on Hyperliquid) or ccxt's (BTC/USDT:USDT).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Optional[Path],  # noqa: UP045 - typer needs Optional here
        typer.Option("--out", help="CSV file (default: ~/.cache/levopt/tiers/<venue>_<symbol>.csv)."),
    ] = None,
    max_age: Annotated[
        float,
        typer.Option("--max-age", min=0.0, help="Hours a saved table stays current (0: always download)."),
    ] = 24.0,
    force: Annotated[
        bool, typer.Option("--force", help="Download even when the saved table is current.")
    ] = False,
) -> None:
    """Download a venue's current leverage and margin tiers through ccxt into a dated CSV file (cached).

    The file reads back with levopt.venues.load_brackets; its path is printed on stdout.
    """
    try:
        target = out if out is not None else tiers_cache_path(venue, symbol)
        check_target(target, "--out", "file")
        result = update_tiers_cache(venue, symbol, out=target, max_age_hours=max_age, force=force)
    except ConfigError as exc:
        # The Python API names its arguments; the command line names its flags.
        if exc.field in _TIERS_FLAGS:
            message = str(exc).removeprefix(f"{exc.field}: ").replace("force a download", "pass --force")
            raise ConfigError(_TIERS_FLAGS[exc.field], message) from None
        raise
    table = result.table
    what = f"{len(table)} tiers of {table.symbol or symbol} on {venue}"
    if result.fetched:
        typer.echo(f"fetched {what} ({table.source}); saved {result.path}", err=True)
    else:
        typer.echo(
            f"cached: {what}, saved {result.age_hours:.1f} h ago (--max-age {max_age:g} h; --force downloads again)",
            err=True,
        )
    for line in _tier_lines(table):
        typer.echo(line, err=True)
    typer.echo(str(result.path))
