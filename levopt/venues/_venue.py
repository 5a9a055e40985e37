"""Venue rule sets, registered by name in :data:`VENUES`.

A :class:`Venue` is one fact in one place: the tier tables per symbol, which notional the
maintenance requirement of a liquidation is measured at, which margin modes it documents, its
liquidation fee and funding schedule, and the documents these come from. Users add a venue with
``VENUES.register("name")(Venue(...))`` or point at one with ``"package.module:attribute"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Literal

from levopt.errors import ConfigError
from levopt.registry import Registry
from levopt.venues._brackets import BracketTable, parse_brackets

MaintenanceBasis = Literal["liquidation", "entry"]


@dataclass(frozen=True)
class Venue:
    """An exchange's margin and liquidation rules for linear (quote-settled) perpetuals.

    Attributes:
        name: registry name, e.g. ``"binance_usdm"``.
        label: human-readable name.
        settlement: the margin/settlement currency of the shipped tables.
        tables: symbol → :class:`BracketTable` (maintenance rate, amount, maximum leverage and
            hence initial margin, per tier).
        default_symbol: the symbol used when a call names none.
        maintenance_rule: the venue's maintenance-margin formula, in words, with its source.
        maintenance_basis: ``"liquidation"`` when the requirement at liquidation is evaluated at
            the liquidation price (Binance, Hyperliquid), ``"entry"`` when the venue's published
            liquidation price holds the maintenance margin computed at the entry notional (Bybit).
        modes: the margin modes whose liquidation price the venue documents.
        leverage_sets_maintenance: True where maintenance is half the initial margin at the
            asset's maximum leverage (Hyperliquid), so that ``max_leverage`` alone fixes it.
        liquidation_fee_rate: fee charged on the liquidated notional, where the venue publishes
            one flat rate; ``None`` where the sources consulted give none (see ``clearance``).
        clearance: what the venue keeps on liquidation, in words.
        funding_interval_hours: hours between funding payments.
        funding_cap: the largest absolute funding rate per interval; ``None`` when not published
            as one number for the venue.
        references: documents the rules above come from.
    """

    name: str
    label: str
    settlement: str
    tables: Mapping[str, BracketTable]
    default_symbol: str
    maintenance_rule: str
    maintenance_basis: MaintenanceBasis = "liquidation"
    modes: tuple[str, ...] = ("isolated", "cross")
    leverage_sets_maintenance: bool = False
    liquidation_fee_rate: float | None = None
    clearance: str = ""
    funding_interval_hours: float = 8.0
    funding_cap: float | None = None
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", MappingProxyType(dict(self.tables)))
        object.__setattr__(self, "modes", tuple(self.modes))
        object.__setattr__(self, "references", tuple(self.references))
        if self.maintenance_basis not in ("liquidation", "entry"):
            raise ConfigError("maintenance_basis", f"{self.maintenance_basis!r}; allowed: liquidation, entry")
        bad_modes = [m for m in self.modes if m not in ("isolated", "cross")]
        if bad_modes or not self.modes:
            raise ConfigError("modes", f"{self.modes!r}; allowed: a non-empty subset of isolated, cross")
        if self.default_symbol not in self.tables:
            raise ConfigError(
                "default_symbol",
                f"{self.default_symbol!r} has no table; allowed: {', '.join(self.tables) or '(none)'}",
            )
        if not self.funding_interval_hours > 0:
            raise ConfigError("funding_interval_hours", f"{self.funding_interval_hours}; allowed: > 0")

    def __hash__(self) -> int:
        # The tables are a read-only mapping; hash their items so a venue can be a static jit argument.
        return hash((self.name, tuple(self.tables.items()), self.maintenance_basis, self.modes))

    @property
    def symbols(self) -> tuple[str, ...]:
        """Symbols with a tier table, in the order they were given."""
        return tuple(self.tables)

    def table(self, symbol: str | None = None) -> BracketTable:
        """The tier table of ``symbol`` (default: :attr:`default_symbol`)."""
        key = self.default_symbol if symbol is None else symbol
        try:
            return self.tables[key]
        except (KeyError, TypeError):
            raise ConfigError(
                "symbol",
                f"no tier table for {key!r} on {self.name}; allowed: {', '.join(self.symbols)}, or a table "
                "added with Venue.with_brackets (liquidation_price also accepts maintenance_rate instead)",
            ) from None

    def with_brackets(self, symbol: str, table: BracketTable) -> Venue:
        """A copy of this venue whose table for ``symbol`` is ``table`` (e.g. from ``load_brackets``)."""
        if not isinstance(table, BracketTable):
            raise ConfigError(
                "table", f"expected a BracketTable (see load_brackets), got {type(table).__name__}"
            )
        return dataclasses.replace(self, tables={**self.tables, symbol: table})


VENUES: Registry[Venue] = Registry("venue")
"""Venue rule sets by name: ``binance_usdm``, ``hyperliquid``, ``bybit_linear``."""


def get_venue(venue: str | Venue) -> Venue:
    """A :class:`Venue` from itself, a registered name or a ``"package.module:attribute"`` path."""
    if isinstance(venue, Venue):
        return venue
    if not isinstance(venue, str):
        raise ConfigError(
            "venue", f"expected a venue name, got {type(venue).__name__}; allowed: {', '.join(VENUES)}"
        )
    found = VENUES.get(venue, field="venue")
    if not isinstance(found, Venue):
        raise ConfigError("venue", f"{venue!r} is a {type(found).__name__}, not a levopt.venues.Venue")
    return found


def _shipped(filename: str) -> BracketTable:
    text = resources.files("levopt.venues").joinpath("data", filename).read_text(encoding="utf-8")
    return parse_brackets(text, fmt="csv", where=f"levopt/venues/data/{filename}")


_BINANCE_FAQ = (
    'Binance FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts", '
    "https://www.binance.com/en/support/faq/b3c689c1f50a44cabb3a84e663b81d93"
)
_HL_LIQ = (
    'Hyperliquid Docs "Liquidations", https://hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations'
)
_HL_TIERS = (
    'Hyperliquid Docs "Margin tiers", https://hyperliquid.gitbook.io/hyperliquid-docs/trading/margin-tiers'
)
_BYBIT_LIQ = 'Bybit Help Center "Liquidation Price (USDT Contract)"'
_BYBIT_TIERS = 'Bybit "Margin Parameters", https://www.bybit.com/en/announcement-info/margin-parameters'

BINANCE_USDM = VENUES.register("binance_usdm")(
    Venue(
        name="binance_usdm",
        label="Binance USDⓈ-M perpetuals",
        settlement="USDT",
        tables={
            "BTCUSDT": _shipped("binance_usdm_BTCUSDT.csv"),
            "ETHUSDT": _shipped("binance_usdm_ETHUSDT.csv"),
        },
        default_symbol="BTCUSDT",
        maintenance_rule=(
            "maintenance margin = notional × MMR − cum of the notional's bracket, notional at mark price; "
            "liquidation when margin balance ≤ maintenance margin (" + _BINANCE_FAQ + ")"
        ),
        maintenance_basis="liquidation",
        modes=("isolated", "cross"),
        clearance=(
            "a liquidation clearance fee goes to the insurance fund; its rate is not part of the sources "
            "consulted, so none is shipped"
        ),
        funding_interval_hours=8.0,
        references=(
            _BINANCE_FAQ,
            "Binance announcement 2021-03-18, https://www.binance.com/en/support/announcement/86cf9aa472574b8cb2e05bb751c2a9a6",
        ),
    )
)

HYPERLIQUID = VENUES.register("hyperliquid")(
    Venue(
        name="hyperliquid",
        label="Hyperliquid perpetuals",
        settlement="USDC",
        tables={"BTC": _shipped("hyperliquid_BTC.csv"), "ETH": _shipped("hyperliquid_ETH.csv")},
        default_symbol="BTC",
        maintenance_rule=(
            "maintenance margin = half the initial margin at the tier's maximum leverage, rate l = 1/(2 × max "
            "leverage), less the tier's maintenance deduction (" + _HL_LIQ + "; " + _HL_TIERS + ")"
        ),
        maintenance_basis="liquidation",
        modes=("isolated", "cross"),
        leverage_sets_maintenance=True,
        clearance=(
            "book liquidations charge no separate fee; a backstop liquidation (equity below 2/3 of maintenance) "
            "hands the position and its margin to the liquidator vault, so the maintenance margin is not returned"
        ),
        funding_interval_hours=1.0,
        funding_cap=0.04,
        references=(
            _HL_LIQ,
            _HL_TIERS,
            (
                'Hyperliquid Docs "Funding": paid hourly, capped at 4% per hour (as replicated in HyENA Docs '
                '"Funding Rates", https://docs.hyena.trade/trading/funding-rates)'
            ),
        ),
    )
)

BYBIT_LINEAR = VENUES.register("bybit_linear")(
    Venue(
        name="bybit_linear",
        label="Bybit USDT perpetuals",
        settlement="USDT",
        tables={"BTCUSDT": _shipped("bybit_linear_BTCUSDT.csv")},
        default_symbol="BTCUSDT",
        maintenance_rule=(
            "maintenance margin = position value × MMR − maintenance margin deduction of the risk-limit tier, "
            "position value at the entry price in the isolated liquidation price ("
            + _BYBIT_LIQ
            + "; "
            + _BYBIT_TIERS
            + ")"
        ),
        maintenance_basis="entry",
        modes=("isolated",),
        clearance="the position is closed at the bankruptcy price; the margin between liquidation and bankruptcy is kept",
        funding_interval_hours=8.0,
        references=(_BYBIT_LIQ, _BYBIT_TIERS),
    )
)
