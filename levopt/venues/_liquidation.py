"""The exact liquidation price of a linear perpetual position under a venue's published rules."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from levopt.errors import ConfigError
from levopt.venues._margin import maintenance_margin as _table_maintenance
from levopt.venues._venue import Venue, get_venue

SIDES = {"long": 1, "short": -1}
MODES = ("isolated", "cross")
_POSITION_KEYS = (
    "side",
    "quantity",
    "entry_price",
    "mark_price",
    "maintenance_rate",
    "maintenance_amount",
    "symbol",
)


@dataclass(frozen=True)
class _Tiers:
    """Inner boundaries (length k − 1), rates and amounts (length k) of the position's tiers."""

    bounds: tuple[float, ...]
    rates: tuple[float, ...]
    amounts: tuple[float, ...]

    def maintenance(self, notional: float) -> float:
        k = bisect_left(self.bounds, notional)
        return notional * self.rates[k] - self.amounts[k]


def _number(field: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, f"{value!r} is not a number; allowed: a finite number") from None
    if not math.isfinite(x):
        raise ConfigError(field, f"{x}; allowed: a finite number")
    if positive and not x > 0:
        raise ConfigError(field, f"{x:g}; allowed: a number > 0")
    if nonnegative and not x >= 0:
        raise ConfigError(field, f"{x:g}; allowed: a number ≥ 0")
    return x


def _rate(field: str, value: Any) -> float:
    x = _number(field, value)
    if not 0 < x < 1:
        raise ConfigError(field, f"{x:g}; allowed: a fraction of notional in (0, 1)")
    return x


def _side(field: str, value: Any) -> int:
    if not isinstance(value, str) or value not in SIDES:
        raise ConfigError(field, f"{value!r}; allowed: long, short")
    return SIDES[value]


def _position_tiers(
    venue: Venue,
    symbol: str | None,
    maintenance_rate: Any,
    maintenance_amount: Any,
    max_leverage: Any,
) -> _Tiers:
    if max_leverage is not None:
        if not venue.leverage_sets_maintenance:
            raise ConfigError(
                "max_leverage",
                f"{venue.name} does not derive maintenance from maximum leverage; allowed: omit it, or pass "
                "maintenance_rate (and maintenance_amount) to fix the bracket",
            )
        if maintenance_rate is not None or maintenance_amount is not None:
            raise ConfigError(
                "max_leverage",
                "fixes the maintenance rate itself; allowed: max_leverage or maintenance_rate, not both",
            )
        lev = _number("max_leverage", max_leverage)
        if not lev >= 1:
            raise ConfigError("max_leverage", f"{lev:g}; allowed: a leverage ≥ 1")
        return _Tiers((), (1.0 / (2.0 * lev),), (0.0,))
    if maintenance_rate is not None:
        amount = (
            0.0
            if maintenance_amount is None
            else _number("maintenance_amount", maintenance_amount, nonnegative=True)
        )
        return _Tiers((), (_rate("maintenance_rate", maintenance_rate),), (amount,))
    if maintenance_amount is not None:
        raise ConfigError(
            "maintenance_amount", "needs maintenance_rate; allowed: both, maintenance_rate alone, or neither"
        )
    table = venue.table(symbol)
    rates = tuple(b.maintenance_rate for b in table)
    return _Tiers(table.boundaries, rates, tuple(b.maintenance_amount for b in table))


def _other_positions(venue: Venue, positions: Any) -> tuple[float, float]:
    """(TMM₁, UPNL₁): maintenance margin and unrealized P&L, at mark, of the other cross positions."""
    if isinstance(positions, (str, bytes, Mapping)) or not isinstance(positions, Sequence):
        raise ConfigError("other_positions", f"expected a list of positions, got {type(positions).__name__}")
    total_mm = 0.0
    total_upnl = 0.0
    for i, pos in enumerate(positions):
        where = f"other_positions[{i}]"
        if not isinstance(pos, Mapping):
            raise ConfigError(where, f"expected a mapping with keys {', '.join(_POSITION_KEYS)}")
        unknown = sorted(set(pos) - set(_POSITION_KEYS))
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}", f"unknown key; allowed: {', '.join(_POSITION_KEYS)}")
        for key in ("side", "quantity", "entry_price", "mark_price"):
            if key not in pos:
                raise ConfigError(
                    f"{where}.{key}",
                    "missing; allowed: a position with side, quantity, entry_price and mark_price",
                )
        side = _side(f"{where}.side", pos["side"])
        qty = _number(f"{where}.quantity", pos["quantity"], positive=True)
        entry = _number(f"{where}.entry_price", pos["entry_price"], positive=True)
        mark = _number(f"{where}.mark_price", pos["mark_price"], positive=True)
        notional = qty * mark
        if pos.get("maintenance_rate") is not None:
            rate = _rate(f"{where}.maintenance_rate", pos["maintenance_rate"])
            amount = pos.get("maintenance_amount")
            amount = (
                0.0 if amount is None else _number(f"{where}.maintenance_amount", amount, nonnegative=True)
            )
            mm = notional * rate - amount
        elif pos.get("symbol") is not None:
            if pos.get("maintenance_amount") is not None:
                raise ConfigError(
                    f"{where}.maintenance_amount", "needs maintenance_rate; allowed: both, or symbol alone"
                )
            try:
                mm = float(_table_maintenance(venue, pos["symbol"], notional))
            except ConfigError as exc:
                raise ConfigError(f"{where}.symbol", str(exc).partition(": ")[2]) from None
        else:
            raise ConfigError(
                f"{where}.maintenance_rate",
                f"missing; allowed: a rate in (0, 1) (with maintenance_amount), or a symbol with a {venue.name} table",
            )
        total_mm += mm
        total_upnl += side * qty * (mark - entry)
    return total_mm, total_upnl


def _checked_position(
    venue: Venue, side: Any, quantity: Any, entry_price: Any, wallet_balance: Any, mode: Any
) -> tuple[int, float, float, float]:
    """(Side, Q, EP, WB) of the position, after checking the mode is one the venue documents."""
    s = _side("side", side)
    q = _number("quantity", quantity, positive=True)
    ep = _number("entry_price", entry_price, positive=True)
    wb = _number("wallet_balance", wallet_balance, nonnegative=True)
    if mode not in MODES:
        raise ConfigError("mode", f"{mode!r}; allowed: isolated, cross")
    if mode not in venue.modes:
        raise ConfigError(
            "mode", f"{venue.name} documents no {mode} liquidation price; allowed: {', '.join(venue.modes)}"
        )
    return s, q, ep, wb


def _cross_totals(venue: Venue, mode: str, other_positions: Any) -> tuple[float, float]:
    """(TMM₁, UPNL₁): zero in isolated mode, where other positions are refused."""
    if mode == "isolated":
        if other_positions:
            raise ConfigError(
                "other_positions", "apply in cross mode only; allowed: mode='cross', or no other positions"
            )
        return 0.0, 0.0
    return _other_positions(venue, other_positions)


def _solve_price(
    venue: Venue, tiers: _Tiers, *, s: int, q: float, ep: float, wb: float, tmm: float, upnl: float
) -> float:
    """The liquidation price once inputs are checked; a long's is floored at 0."""
    equity_at_entry = wb + upnl
    entry_requirement = tmm + tiers.maintenance(q * ep)
    if equity_at_entry - entry_requirement < -1e-9 * max(1.0, q * ep):
        raise ConfigError(
            "wallet_balance",
            f"{wb:g} leaves equity {equity_at_entry:.2f} below the maintenance requirement {entry_requirement:.2f} "
            f"at the entry price; allowed: a balance of at least {wb + entry_requirement - equity_at_entry:.2f}",
        )
    if venue.maintenance_basis == "entry":
        price = ep - s * (equity_at_entry - entry_requirement) / q
    else:
        price = _tiered_price(tiers, s=s, q=q, ep=ep, equity_at_entry=equity_at_entry, tmm=tmm)
    return float(max(price, 0.0)) if s > 0 else float(price)


def _tiered_price(tiers: _Tiers, *, s: int, q: float, ep: float, equity_at_entry: float, tmm: float) -> float:
    """Solve inside the one tier where equity minus requirement changes sign at the liquidation notional."""

    # gap(P) = equity − requirement, increasing in P for a long and decreasing for a short.
    def gap(p: float) -> float:
        return equity_at_entry + s * q * (p - ep) - tmm - tiers.maintenance(q * p)

    k = len(tiers.rates) - 1
    for j, bound in enumerate(tiers.bounds):
        g = gap(bound / q)
        if (s > 0 and g >= 0) or (s < 0 and g <= 0):
            k = j
            break
    return (equity_at_entry - tmm - s * q * ep + tiers.amounts[k]) / (q * tiers.rates[k] - s * q)


def liquidation_price(
    venue: str | Venue,
    *,
    side: str,
    quantity: float,
    entry_price: float,
    wallet_balance: float,
    mode: str = "isolated",
    maintenance_rate: float | None = None,
    maintenance_amount: float | None = None,
    max_leverage: float | None = None,
    other_positions: Sequence[Mapping[str, Any]] = (),
    symbol: str | None = None,
) -> float:
    """Mark price at which a position's margin falls to the venue's maintenance requirement.

    With Side = +1 for a long and −1 for a short, Q the quantity, EP the entry price and WB the
    wallet balance (isolated: the position's margin), the position is liquidated at the price P
    where equity meets the requirement,

        WB + UPNL₁ + Side·Q·(P − EP) = TMM₁ + MM(Q·P),

    TMM₁ and UPNL₁ being the maintenance margin and unrealized P&L of the *other* positions at
    their mark prices (cross mode; zero in isolated mode). With MM(N) = N·MMR − cum in N's tier
    this is Binance's

        LP = (WB − TMM₁ + UPNL₁ + cum − Side·Q·EP) / (Q·MMR − Side·Q)

    (Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", one-way mode),
    and with MMR = l = 1/(2 × max leverage), cum = 0 it is Hyperliquid's
    ``price − side × margin_available / size / (1 − l × side)`` with margin_available =
    collateral − size·price·l (Hyperliquid Docs "Liquidations"). Bybit's isolated formula
    (Help Center "Liquidation Price (USDT Contract)") holds the maintenance margin at the entry
    notional: LP = EP − Side·(WB − MM(Q·EP))/Q.

    Where the tier at the liquidation notional Q·P differs from the tier at entry, the venues
    recompute with that tier. Equity minus requirement is strictly monotone in P (slope
    Side·Q − Q·MMR with 0 < MMR < 1), so exactly one tier is consistent; it is found by
    evaluating the gap at the tier boundaries and solving inside the tier where it changes sign,
    which is the fixed point of the venues' recomputation.

    Args:
        venue: ``"binance_usdm"``, ``"hyperliquid"``, ``"bybit_linear"``, another registered name,
            or a :class:`Venue` (e.g. with user tables from ``Venue.with_brackets``).
        side: ``"long"`` or ``"short"``.
        quantity: position size in base-asset units, > 0.
        entry_price: average entry price, > 0.
        wallet_balance: isolated: the margin of this position; cross: the wallet balance.
        mode: ``"isolated"`` or ``"cross"`` (the venue must document it: Bybit is isolated only).
        maintenance_rate: fixes the bracket's MMR instead of looking it up (no tier search).
        maintenance_amount: the fixed bracket's maintenance amount ("cum"); default 0.
        max_leverage: Hyperliquid: the asset's maximum leverage, giving l = 1/(2·max_leverage).
        other_positions: cross mode: mappings with ``side``, ``quantity``, ``entry_price``,
            ``mark_price`` and either ``maintenance_rate`` (+ optional ``maintenance_amount``) or
            a ``symbol`` whose tier table on this venue gives the requirement at mark.
        symbol: the instrument whose table is used; default the venue's (``"BTCUSDT"``/``"BTC"``).

    Returns:
        The liquidation mark price. A long that can never be liquidated (its margin covers the
        requirement at every positive price, e.g. fully collateralized) returns 0.0. A short
        always has a finite liquidation price: its loss grows without bound as the price rises
        while the maintenance rate stays below one, so no infinity is ever returned.

    Raises:
        ConfigError: unknown venue or symbol, side not long/short, quantity or prices ≤ 0,
            non-finite numbers, conflicting overrides, or a wallet already below the maintenance
            requirement at the entry price; the field is named as in this signature.

    Example:
        >>> round(liquidation_price("bybit_linear", side="long", quantity=1, entry_price=20_000,
        ...                         wallet_balance=400), 2)
        19700.0
    """
    v = get_venue(venue)
    s, q, ep, wb = _checked_position(v, side, quantity, entry_price, wallet_balance, mode)
    tiers = _position_tiers(v, symbol, maintenance_rate, maintenance_amount, max_leverage)
    tmm, upnl = _cross_totals(v, mode, other_positions)
    return _solve_price(v, tiers, s=s, q=q, ep=ep, wb=wb, tmm=tmm, upnl=upnl)
