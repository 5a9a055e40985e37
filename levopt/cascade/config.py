"""The ``cascade:`` config block: the levered crowd, the price-impact law and the level grid.

Every key is checked before anything is compiled: pydantic checks each value (unknown keys, NaN and
±inf are errors, through :class:`levopt.schema.StrictModel`), :meth:`CascadeConfig.check` the rules
that tie keys together, and :func:`parse_cascade` turns either kind of failure into one
:class:`levopt.errors.ConfigError` naming the field (``cascade.crowd.leverage``, ...).

Units: open interest and volume in the settlement currency (USD for a USD-margined perpetual);
log-price distances as natural logs (0.05 is about 5%); times in hours or days as named.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationError, field_validator

from levopt.errors import ConfigError
from levopt.schema import StrictModel, format_validation_error

DEFAULT_LEVERAGE_MIX: dict[float, float] = {2.0: 0.3, 5.0: 0.4, 10.0: 0.2, 25.0: 0.1}
"""Share of the crowd's open interest at each leverage when ``crowd.leverage`` is not given."""

DEFAULT_DAILY_VOL = 0.035
"""Daily volatility of BTC for the square-root law: 68% a year (daily log-returns 2014-09 to
2025-11, ``shared/data``) divided by √365."""

LONG, SHORT = 1, -1
"""The sign of a side, as ``liquidation_offset`` takes it."""

SHARE_TOLERANCE = 1e-9
"""How far the leverage shares may sum from one."""


class CrowdDataConfig(StrictModel):
    r"""A crowd reconstructed from open-interest history (:mod:`levopt.cascade.history`).

    Over the window of ``lookback_days`` ending at ``as_of``, every rise of open interest is new
    accounts entering at that bar's prices (uniformly between its low and high), every fall is
    accounts closing pro rata, and an account is liquidated when the bars' lows (highs, for a
    short) cross its level. Each leverage class is one such book holding its share of the open
    interest. Open interest already open at the window's start is spread over ``±entry_spread``
    around the first close, as the parametric crowd is.

    Attributes:
        open_interest: open-interest history file (CSV, JSON or Parquet; the layouts of
            :func:`levopt.data.load_open_interest`), relative paths from the config's directory.
        prices: price bars (:func:`levopt.data.load_prices`; with ``high`` and ``low`` columns
            entries spread over each bar's range); null: the open-interest file's own price
            (value / amount), entries at that price.
        liquidations: liquidation history (:func:`levopt.data.load_liquidations`); with it the
            shares of ``crowd.leverage`` are fitted to the liquidations the price path causes.
        lookback_days: length of the window, days.
        as_of: end of the window, a UTC time (null: the last open-interest observation); the
            crowd is the one standing then, and the simulation starts at that price.
        fit_leverage: fit the leverage shares when ``liquidations`` is given (false: only compare).
        reported_fraction: the share of liquidations the file records (venues publish part of
            them); observed notional is divided by it before the fit.
    """

    open_interest: str = Field(description="open-interest history file")
    prices: str | None = Field(None, description="price bars file (default: the OI file's price)")
    liquidations: str | None = Field(None, description="liquidation history file")
    lookback_days: float = Field(30.0, gt=0, le=3650, description="window length, days")
    # YAML reads an unquoted 2025-10-10T20:00 as a datetime: both spellings are one time.
    as_of: datetime | date | str | None = Field(
        None, description="end of the window, UTC (default: last OI row)"
    )
    fit_leverage: bool = Field(True, description="fit the leverage shares to the liquidations")
    reported_fraction: float = Field(1.0, gt=0, le=1, description="share of liquidations recorded")


MAX_FITTED_CLASSES = 12
"""Most leverage classes whose shares a liquidation history can fit (the fit is exact over every
support set, 2^n of them)."""


class CrowdConfig(StrictModel):
    r"""The levered accounts whose forced flow moves the price (isolated margin, no fees).

    Each account is a linear perpetual position with leverage :math:`L` at entry and maintenance
    rate :math:`m` on its current notional. A long entered at log-price :math:`e` is liquidated at
    log-price :math:`e + \log\frac{1 - 1/L}{1 - m}`, a short at :math:`e + \log\frac{1 + 1/L}{1 + m}`
    (:func:`levopt.cascade.liquidation_offset`). Entry log-prices are spread uniformly over
    ``±entry_spread`` around the start price; accounts whose level the start price has already
    crossed are left out and the rest of their leverage class scaled up, so that ``long_oi``,
    ``short_oi`` and the leverage shares hold at the start.

    With ``data`` the crowd's entries come from history instead (:class:`CrowdDataConfig`); the
    open interest then defaults to the history's last value on both sides.

    Attributes:
        long_oi: open interest of the levered longs at the start price, in the settlement currency
            (required without ``data``).
        short_oi: the same for the shorts.
        leverage: leverage at entry → share of the open interest (shares ≥ 0 summing to one,
            leverages > 1); both sides use the same mix.
        maintenance: maintenance-margin rate of the crowd's accounts, a fraction of notional in
            [0, 1); it must be below 1/L for every leverage L of the mix.
        entry_spread: half-width, in log-price, of the band of entry prices (0: every account
            entered at the start price).
        target_share: fraction of each leverage class that re-levers to its leverage at every step
            (the leverage loop); the rest holds its position until liquidated.
        refill_days: liquidated open interest re-enters at the current price with the same
            leverage mix, at the rate 1/refill_days (an exponential with this mean time, in days);
            null: never.
        data: reconstruct the entries (and fit the leverage shares) from history.
    """

    long_oi: float | None = Field(None, ge=0, description="levered long open interest, settlement currency")
    short_oi: float | None = Field(None, ge=0, description="levered short open interest, settlement currency")
    leverage: dict[float, float] = Field(
        default_factory=lambda: dict(DEFAULT_LEVERAGE_MIX),
        description="leverage at entry -> share of open interest",
    )
    maintenance: float = Field(0.005, ge=0, lt=1, description="maintenance-margin rate")
    entry_spread: float = Field(0.05, ge=0, le=1, description="half-width of entry log-prices")
    target_share: float = Field(0.0, ge=0, le=1, description="fraction re-levering every step")
    refill_days: float | None = Field(None, gt=0, description="mean time for liquidated OI to re-enter")
    data: CrowdDataConfig | None = Field(None, description="reconstruct the crowd from history")

    @field_validator("leverage")
    @classmethod
    def _mix(cls, v: dict[float, float]) -> dict[float, float]:
        if not v:
            raise ValueError("empty; allowed: a mapping leverage -> share such as {2: 0.5, 10: 0.5}")
        for lev, share in v.items():
            if not math.isfinite(lev) or not lev > 1:
                raise ValueError(f"leverage {lev:g}; allowed: leverages > 1")
            if not math.isfinite(share) or share < 0:
                raise ValueError(f"share {share:g} at leverage {lev:g}; allowed: shares >= 0")
        total = math.fsum(v.values())
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"shares sum to {total:.12g}; allowed: shares summing to 1")
        return dict(sorted(v.items()))


IMPACT_KEYS: dict[str, frozenset[str]] = {
    "linear": frozenset({"permanent", "temporary"}),
    "sqrt": frozenset({"coefficient", "daily_vol", "temporary_fraction"}),
}
"""The keys that belong to one kind of impact only."""


class ImpactConfig(StrictModel):
    r"""Price impact of the forced flow, as a move of the log-price.

    ``linear`` (Kyle 1985; Almgren & Chriss 2000): a net sale of notional :math:`Q` moves the
    log-price by :math:`-(\lambda_p + \lambda_t)\,Q/V` at once, of which :math:`\lambda_t Q/V`
    is temporary. ``sqrt`` (Almgren, Thum, Hauptmann & Li 2005; Tóth et al. 2011; on BTC Donier &
    Bonart 2015): :math:`-Y\sigma_{day}\sqrt{Q/V}`, of which the fraction ``temporary_fraction``
    is temporary. The temporary part relaxes as :math:`e^{-t/\tau}`, :math:`\tau` = ``decay_hours``
    (an e-folding time; the half-life is :math:`\tau\ln 2`).

    Attributes:
        kind: ``linear`` or ``sqrt``.
        daily_volume: :math:`V`, the traded volume per day in the settlement currency (> 0).
        permanent: linear: :math:`\lambda_p` ≥ 0, the log-price move per day's volume sold.
        temporary: linear: :math:`\lambda_t` ≥ 0, in the same units, the part that decays.
        coefficient: sqrt: :math:`Y` ≥ 0 (of order 1 empirically).
        daily_vol: sqrt: :math:`\sigma_{day}`, the daily volatility of log-returns (the engine may
            pass the path model's current value instead).
        temporary_fraction: sqrt: the part of the move that decays, in [0, 1].
        decay_hours: :math:`\tau` > 0, the e-folding time of the temporary part, in hours.
    """

    kind: Literal["linear", "sqrt"] = "linear"
    daily_volume: float = Field(gt=0, description="traded volume per day, settlement currency")
    permanent: float = Field(0.0, ge=0, description="linear: log move per day's volume, permanent")
    temporary: float = Field(0.0, ge=0, description="linear: log move per day's volume, decaying")
    coefficient: float = Field(1.0, ge=0, description="sqrt: Y in Y·σ_day·√(Q/V)")
    daily_vol: float = Field(DEFAULT_DAILY_VOL, gt=0, description="sqrt: daily volatility σ_day")
    temporary_fraction: float = Field(0.0, ge=0, le=1, description="sqrt: decaying part of the move")
    decay_hours: float = Field(1.0, gt=0, description="e-folding time of temporary impact, hours")


class CascadeConfig(StrictModel):
    """The ``cascade:`` block: a crowd, its price impact, and the grid of liquidation levels.

    Attributes:
        crowd: the levered accounts (:class:`CrowdConfig`).
        impact: the impact law (:class:`ImpactConfig`).
        bins: number of bins of the fixed grid of liquidation log-levels (cost per step ∝ bins).
        range: half-width of the grid in log-price around the start price; levels beyond it are
            not represented, and the grid must hold every level of the starting crowd.
    """

    crowd: CrowdConfig
    impact: ImpactConfig
    bins: int = Field(400, ge=2, le=1_000_000, description="bins of the level grid")
    range: float = Field(1.0, gt=0, le=20, description="half-width of the grid in log-price")

    def check(self, prefix: str = "cascade") -> None:
        """Rules that tie keys together, raising a :class:`ConfigError` that names the field."""
        impact = self.impact
        for kind, keys in IMPACT_KEYS.items():
            # A key at its default is no stray (a resolved config, dumped and read back, has them all).
            given = {
                k
                for k in keys & impact.model_fields_set
                if getattr(impact, k) != ImpactConfig.model_fields[k].default
            }
            stray = sorted(given) if kind != impact.kind else []
            if stray:
                raise ConfigError(
                    f"{prefix}.impact.{stray[0]}",
                    f"applies to impact kind {kind}; allowed with kind {self.impact.kind}: "
                    f"{', '.join(sorted(IMPACT_KEYS[self.impact.kind]))}",
                )
        crowd = self.crowd
        if crowd.data is None:
            for side in ("long_oi", "short_oi"):
                if getattr(crowd, side) is None:
                    raise ConfigError(
                        f"{prefix}.crowd.{side}",
                        "missing; allowed: open interest >= 0 in the settlement currency, or "
                        "crowd.data to take it from history",
                    )
        elif crowd.data.liquidations is not None and crowd.data.fit_leverage:
            if len(crowd.leverage) > MAX_FITTED_CLASSES:
                raise ConfigError(
                    f"{prefix}.crowd.leverage",
                    f"{len(crowd.leverage)} classes; allowed with a fitted mix: at most {MAX_FITTED_CLASSES}",
                )
        top = max(crowd.leverage)
        if not crowd.maintenance < 1.0 / top:
            raise ConfigError(
                f"{prefix}.crowd.maintenance",
                f"{crowd.maintenance:g} liquidates a {top:g}x account at entry; allowed: a rate below "
                f"1/{top:g} = {1.0 / top:.6g}",
            )
        reach = max(
            abs(float(liquidation_offset(lev, crowd.maintenance, side)))
            for lev in crowd.leverage
            for side in (1, -1)
        )
        reach += crowd.entry_spread
        if not reach < self.range:
            raise ConfigError(
                f"{prefix}.range",
                f"{self.range:g}; the crowd's liquidation levels reach {reach:.4g} in log-price from the "
                f"start; allowed: range > {reach:.4g} (or drop the lowest leverages)",
            )


def liquidation_offset(leverage: Any, maintenance: Any, side: Any, xp: Any = np) -> Any:
    r"""Log-distance from entry to liquidation of an isolated linear perpetual account, no fees.

    .. math:: \log\frac{P_{liq}}{P_e} = \log\frac{1 - s/L}{1 - s\,m},\qquad s = +1\ \text{long},
        \ -1\ \text{short}.

    Derivation: the account holds quantity :math:`q` bought (sold) at :math:`P_e` with margin
    :math:`W = qP_e/L`. Its equity at price :math:`P` is :math:`W + s\,q(P - P_e)`, and it is
    liquidated when the equity falls to :math:`m\,qP`:
    :math:`qP_e/L + s\,q(P - P_e) = m\,qP` gives :math:`P(s - m) = sP_e(1 - s/L)`, i.e. the
    ratio above (Binance, "How to calculate liquidation price of USDⓈ-M contracts", isolated
    mode with no maintenance amount).

    Args:
        leverage: :math:`L > 1` at entry.
        maintenance: :math:`m \in [0, 1/L)`.
        side: +1 for a long, −1 for a short (broadcasts).
        xp: the array namespace, ``numpy`` (default) or ``jax.numpy``.

    Returns:
        The log-price offset, negative for a long and positive for a short.
    """
    return xp.log1p(-side / leverage) - xp.log1p(-side * maintenance)


def parse_cascade(section: Mapping[str, Any], prefix: str = "cascade") -> CascadeConfig:
    """Validate a ``cascade:`` mapping into a :class:`CascadeConfig`, or raise a
    :class:`~levopt.errors.ConfigError` naming the offending field (``cascade.impact.permanent``)."""
    if isinstance(section, CascadeConfig):
        cfg = section
    else:
        if not isinstance(section, Mapping):
            raise ConfigError(
                prefix, f"expected a mapping with keys crowd, impact, got {type(section).__name__}"
            )
        try:
            cfg = CascadeConfig.model_validate(dict(section))
        except ValidationError as exc:
            raise format_validation_error(exc, prefix) from None
    cfg.check(prefix)
    return cfg
