"""Venue rules: financing, funding, trading costs and maintenance margin — each defined once.

The functions below take an array namespace ``xp`` (``jax.numpy`` or ``cvxpy``) so the same
definition drives the Monte Carlo engine and the convex programs; ``tests/test_convex.py`` checks
that the two agree.

A market is either the flat-rate market (one maintenance rate on the gross notional, funding
accrued continuously) or a venue's (``market.venue``): maintenance margin tiered by each position's
notional in the settlement currency (:mod:`levopt.venues`), cross or isolated margin, funding
settled at the venue's interval as a constant or a stochastic (AR(1)) rate, and liquidation
checked on a mark price that carries a mean-reverting basis. Without those keys every number is
the flat-rate market's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import Field, model_validator

from levopt.cascade import CascadeConfig, CascadeParams
from levopt.errors import ConfigError
from levopt.schema import StrictModel
from levopt.venues import BracketTable, get_venue, load_brackets

HOURS_PER_YEAR = 365.0 * 24.0
DEFAULT_ACCOUNT_EQUITY = 10_000.0
"""Account equity W_0 in the settlement currency when a venue is given without ``account_equity``."""
MAX_ISOLATED_ASSETS = 10
"""Isolated margin enumerates the 2^n liquidated/surviving combinations of n positions."""


class BasisConfig(StrictModel):
    """Mark price = traded price × exp(basis), the basis an Ornstein–Uhlenbeck process with jumps.

    db = −kappa·b·dt + vol·dW + J·dN, N a Poisson process of intensity ``jump_rate`` and
    J ~ Normal(jump_mean, jump_vol²); one independent basis per asset.
    """

    kappa: float = Field(50.0, ge=0, description="mean reversion per year (half-life ln 2 / kappa)")
    vol: float = Field(0.0, ge=0, description="annualized volatility of the basis")
    init: float = Field(0.0, gt=-1, lt=1, description="basis at t = 0 (log mark / traded)")
    jump_rate: float = Field(0.0, ge=0, description="basis jumps per year")
    jump_mean: float = Field(0.0, gt=-1, lt=1, description="mean basis jump")
    jump_vol: float = Field(0.0, ge=0, lt=1, description="standard deviation of a basis jump")


class FundingCalibrationConfig(StrictModel):
    """Calibrate the AR(1) funding process on a funding-rate file (posterior draws feed the paths)."""

    data: str = Field(description="funding-rate file (CSV/Parquet/JSON), rates per interval")
    column: str | None = None
    dist: Literal["normal", "student_t"] = "normal"
    draws: int = Field(200, ge=1, le=100_000, description="posterior draws used by the paths")
    warmup: int = Field(500, ge=10, le=100_000)
    samples: int = Field(500, ge=10, le=100_000)
    chains: int = Field(2, ge=1, le=64)


class FundingConfig(StrictModel):
    """Funding as a process, rates per funding interval (decimals; 0.0001 = 0.01% per 8 h).

    ``constant``: the market's ``funding_rate`` (annualized) settled at each interval.
    ``ar1``: f_k = mean + u_k, u_k = phi u_{k−1} + vol ε_k, ε_k correlated ``corr`` with the step's
    standardized return of the first asset; the rate paid is clipped to ±``cap``.
    ``two_factor``: f_k = mean + s_k + u_k with a slow component s_k = slow_phi s_{k−1} +
    slow_vol η_k (funding regimes) on top of the fast one. Either is calibrated from a funding
    file with ``calibrate`` (levopt.calibrate.fit_funding).
    """

    kind: Literal["constant", "ar1", "two_factor"] = "constant"
    mean: float | None = Field(None, gt=-0.1, lt=0.1, description="long-run rate per interval")
    phi: float = Field(0.0, gt=-1, lt=1, description="autocorrelation per interval")
    vol: float = Field(0.0, ge=0, lt=0.1, description="innovation standard deviation per interval")
    corr: float = Field(0.0, ge=-1, le=1, description="correlation of innovations with returns")
    cap: float | None = Field(None, gt=0, lt=1, description="largest |rate| per interval (venue cap)")
    init: float | None = Field(None, gt=-0.1, lt=0.1, description="rate at t = 0 (default: mean)")
    slow_phi: float = Field(0.0, gt=-1, lt=1, description="two_factor: slow component's autocorrelation")
    slow_vol: float = Field(0.0, ge=0, lt=0.1, description="two_factor: slow component's innovation sd")
    calibrate: FundingCalibrationConfig | None = None

    @model_validator(mode="after")
    def _consistent(self):
        given = self.model_fields_set - {"kind", "cap"}
        if self.kind == "constant" and given:
            raise ValueError(
                f"{sorted(given)[0]} applies to kinds ar1 and two_factor; a constant rate is "
                "market.funding_rate (annualized)"
            )
        slow = {"slow_phi", "slow_vol"} & self.model_fields_set
        if self.kind == "ar1" and slow:
            raise ValueError(f"{sorted(slow)[0]} applies to kind two_factor")
        if self.kind != "constant" and self.calibrate is None and self.mean is None:
            raise ValueError(f"kind {self.kind} needs mean (rate per interval) or a calibrate block")
        if self.calibrate is not None and {"mean", "phi", "vol", *slow} & self.model_fields_set:
            raise ValueError("give either the process's parameters or calibrate, not both")
        if self.kind == "two_factor" and self.calibrate is not None and self.calibrate.dist != "normal":
            raise ValueError(
                "kind two_factor is calibrated with normal shocks; allowed: calibrate.dist normal"
            )
        return self


class MarketConfig(StrictModel):
    """Venue and financing parameters (all rates annualized, decimals)."""

    borrow_rate: float = Field(0.0, ge=0, description="interest on notional above equity")
    cash_rate: float = Field(0.0, ge=0, description="interest earned on idle cash (leverage < 1)")
    funding_rate: float = Field(
        0.0, description="perpetual funding on the whole notional, paid by longs when positive"
    )
    fee: float = Field(0.0, ge=0, lt=1, description="trading fee per unit of traded notional")
    slippage: float = Field(0.0, ge=0, lt=1, description="slippage per unit of traded notional")
    maintenance_margin: float = Field(0.005, ge=0, lt=1, description="maintenance margin rate")
    liquidation_fee: float = Field(0.0, ge=0, lt=1, description="charged on notional at liquidation")
    venue: str | None = Field(None, description="venue rule set (levopt.venues), e.g. binance_usdm")
    symbol: str | list[str] | None = Field(None, description="the venue's symbol, one per asset")
    brackets: str | list[str] | None = Field(
        None, description="tier table file(s) (CSV/YAML) replacing the venue's, one per asset"
    )
    margin_mode: Literal["cross", "isolated"] | None = Field(None, description="cross (default) or isolated")
    account_equity: float | None = Field(
        None, gt=0, description="initial equity in the settlement currency (tiers are absolute)"
    )
    isolated_margin: float | list[float] | None = Field(
        None, description="isolated: fraction of the wallet posted to each position"
    )
    funding_interval_hours: float | None = Field(
        None, gt=0, le=24 * 365, description="funding settled every this many hours (venue's by default)"
    )
    funding: FundingConfig | None = None
    basis: BasisConfig | None = None
    margin: Literal["standard", "scenario"] | None = Field(
        None, description="option books: Deribit's standard margin (default) or scenario (portfolio) margin"
    )

    @model_validator(mode="after")
    def _no_arbitrage(self):
        if self.borrow_rate < self.cash_rate:
            raise ValueError(
                f"borrow_rate ({self.borrow_rate}) must be >= cash_rate ({self.cash_rate}); "
                "otherwise borrowing to hold cash is an arbitrage"
            )
        return self

    def check(self, n_assets: int = 1, *, cascade: bool = False) -> None:
        """Checks across keys, naming the field (run when the market is built, before compiling);
        ``cascade``: the experiment has a ``cascade:`` block (the account's size then matters)."""
        self._check_venue(cascade)
        self._check_isolated(n_assets)

    def _check_venue(self, cascade: bool = False) -> None:
        if self.venue is None:
            for key in ("symbol", "brackets", "account_equity"):
                if key == "account_equity" and cascade:
                    continue
                if getattr(self, key) is not None:
                    allowed = "set market.venue" + (" or a cascade: block" if key == "account_equity" else "")
                    raise ConfigError(f"market.{key}", f"applies with market.venue; allowed: {allowed}")
            return
        venue = get_venue_checked(self.venue)
        if "maintenance_margin" in self.model_fields_set:
            raise ConfigError(
                "market.maintenance_margin",
                f"set by {venue.name}'s tiers; allowed: leave it out with market.venue "
                "(market.brackets replaces the tiers)",
            )
        if self.brackets is None:
            for s in _as_list(self.symbol):
                if s not in venue.tables:
                    raise ConfigError(
                        "market.symbol",
                        f"{s!r} has no tier table on {venue.name}; allowed: {', '.join(venue.symbols)} "
                        "(or market.brackets)",
                    )
        if self.margin_mode is not None and self.margin_mode not in venue.modes:
            raise ConfigError(
                "market.margin_mode",
                f"{venue.name} documents no {self.margin_mode} margin; allowed: {', '.join(venue.modes)}",
            )

    def _check_isolated(self, n_assets: int) -> None:
        if self.mode == "isolated" and n_assets > MAX_ISOLATED_ASSETS:
            raise ConfigError(
                "market.margin_mode",
                f"isolated margin for {n_assets} assets; allowed: at most {MAX_ISOLATED_ASSETS} assets",
            )
        if self.isolated_margin is None:
            return
        if self.margin_mode != "isolated":
            raise ConfigError("market.isolated_margin", "applies with margin_mode: isolated")
        values = _per_asset(self.isolated_margin, n_assets, "market.isolated_margin", None, broadcast=True)
        if any(not (0 < m <= 1) for m in values) or sum(values) > 1 + 1e-12:
            raise ConfigError(
                "market.isolated_margin",
                f"{self.isolated_margin}; allowed: fractions of the wallet in (0, 1] summing to at most 1",
            )

    @property
    def mode(self) -> str:
        return self.margin_mode or "cross"

    @property
    def tiered(self) -> bool:
        return self.venue is not None

    def interval_hours(self) -> float | None:
        """Hours between funding settlements; None = accrued continuously (the flat-rate market)."""
        if self.funding_interval_hours is not None:
            return self.funding_interval_hours
        if self.venue is not None:
            return get_venue(self.venue).funding_interval_hours
        if self.funding is not None:
            return 8.0
        return None

    def asset_labels(self, n_assets: int) -> list[str]:
        """What names each asset's tier table in messages: its symbol, or its ``brackets`` file."""
        if self.brackets is not None:
            return [Path(f).name for f in _per_asset(self.brackets, n_assets, "market.brackets", None)]
        venue = get_venue_checked(self.venue)  # type: ignore[arg-type]
        return list(
            _per_asset(
                self.symbol, n_assets, "market.symbol", venue.default_symbol if n_assets == 1 else None
            )
        )

    def equity(self) -> float:
        return self.account_equity if self.account_equity is not None else DEFAULT_ACCOUNT_EQUITY


def get_venue_checked(name: str) -> Any:
    try:
        return get_venue(name)
    except ConfigError as exc:
        raise ConfigError("market.venue", str(exc).removeprefix(f"{exc.field}: ")) from None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _per_asset(value: Any, n_assets: int, field: str, default: Any, *, broadcast: bool = False) -> list[Any]:
    """One entry per asset: a list of n entries, or one entry (for one asset, or every asset when
    ``broadcast``)."""
    values = _as_list(value) or [default]
    if len(values) == 1 and n_assets > 1 and not isinstance(value, list):
        if not broadcast or values[0] is None:
            raise ConfigError(field, f"one value for {n_assets} assets; allowed: a list of {n_assets}")
        values = values * n_assets
    if len(values) != n_assets:
        raise ConfigError(field, f"{len(values)} entries for {n_assets} assets; allowed: one per asset")
    return values


def bracket_tables(cfg: MarketConfig, n_assets: int, base_dir: str | Path = ".") -> list[BracketTable]:
    """The tier table of each asset: the venue's for its symbol, or the file in ``market.brackets``."""
    venue = get_venue_checked(cfg.venue)  # type: ignore[arg-type]
    if cfg.brackets is not None:
        files = _per_asset(cfg.brackets, n_assets, "market.brackets", None)
        out = []
        for f in files:
            path = Path(f) if Path(f).is_absolute() else Path(base_dir) / f
            try:
                out.append(load_brackets(path))
            except ConfigError as exc:
                raise ConfigError(
                    f"market.brackets.{exc.field}", str(exc).removeprefix(f"{exc.field}: ")
                ) from None
        return out
    return [venue.table(s) for s in cfg.asset_labels(n_assets)]


class Tiers(eqx.Module):
    """Tier tables of the positions, normalized by the account equity (W_0 = 1).

    Shapes ``(n_assets, K)`` (``bounds``: ``(n_assets, K − 1)``), shorter tables padded with
    their last tier and infinite boundaries. Tier k of asset i holds |N_i| in (bound_{k−1}, bound_k].
    """

    bounds: Array
    rates: Array
    amounts: Array
    max_leverage: Array

    @classmethod
    def from_tables(cls, tables: list[BracketTable], equity: float, dtype: Any) -> Tiers:
        k = max(len(t) for t in tables)

        def padded(t: BracketTable, column: str, scale: float) -> list[float]:
            values = list(t.column(column) / scale)
            return values + [values[-1]] * (k - len(values))

        bounds = [[b / equity for b in t.boundaries] + [math.inf] * (k - len(t)) for t in tables]
        return cls(
            bounds=jnp.asarray(np.array(bounds, dtype=np.float64).reshape(len(tables), k - 1), dtype),
            rates=jnp.asarray([padded(t, "maintenance_rate", 1.0) for t in tables], dtype),
            amounts=jnp.asarray([padded(t, "maintenance_amount", equity) for t in tables], dtype),
            max_leverage=jnp.asarray([padded(t, "max_leverage", 1.0) for t in tables], dtype),
        )

    def tier(self, notional: Array) -> Array:
        """Tier index of each position (``(n,)`` notionals, sign ignored): boundaries below |N_i|."""
        return jnp.sum(jnp.abs(notional)[:, None] > self.bounds, axis=-1)

    def at(self, notional: Array) -> tuple[Array, Array]:
        """(MMR, maintenance amount) of each position's tier."""
        k = self.tier(notional)[:, None]
        rate = jnp.take_along_axis(self.rates, k, axis=-1)[:, 0]
        amount = jnp.take_along_axis(self.amounts, k, axis=-1)[:, 0]
        return rate, amount

    def requirement(self, notional: Array) -> Array:
        """Σ_i |N_i| MMR_i − A_i: continuous, piecewise linear in each |N_i| (see levopt.venues)."""
        rate, amount = self.at(notional)
        return jnp.sum(jnp.abs(notional) * rate - amount)

    def max_weights(self) -> np.ndarray:
        """Per asset the largest |N_i| (per unit of equity) the tiers allow a position on its own:
        max over tiers k of min(cap_k, max leverage_k) where that exceeds floor_k.

        The allowed notionals form one interval from 0 (a tier cut short by its leverage limit
        leaves the next, lower-leverage tiers empty), so this is the bound of a single position.
        """
        bounds = np.asarray(self.bounds, float)
        lev = np.asarray(self.max_leverage, float)
        n, k = lev.shape
        lower = np.concatenate([np.zeros((n, 1)), bounds], axis=1)
        upper = np.concatenate([bounds, np.full((n, 1), np.inf)], axis=1)
        hi = np.minimum(upper, lev)
        return np.max(np.where(hi > lower, hi, 0.0), axis=1)

    def initial_margin(self, notional: Array) -> Array:
        """Per position |N_i| / (maximum leverage of its tier)."""
        k = self.tier(notional)[:, None]
        return jnp.abs(notional) / jnp.take_along_axis(self.max_leverage, k, axis=-1)[:, 0]


class Basis(eqx.Module):
    """Parameters of the mark-price basis (see :class:`BasisConfig`), as arrays."""

    kappa: Array
    vol: Array
    init: Array
    jump_rate: Array
    jump_mean: Array
    jump_vol: Array

    def step(self, b: Array, z: Array, u: Array, zj: Array, dt: float) -> tuple[Array, Array]:
        """Exact OU transition over dt plus at most one jump (probability 1 − e^{−λ dt}).

        Returns the new basis and whether it jumped (a gap for the liquidation check).
        """
        decay = jnp.exp(-self.kappa * dt)
        sd = jnp.sqrt(self.step_variance(dt))
        jumped = u < -jnp.expm1(-self.jump_rate * dt)
        b_new = b * decay + sd * z + jnp.where(jumped, self.jump_mean + self.jump_vol * zj, 0.0)
        return b_new, jumped

    def step_variance(self, dt: float) -> Array:
        """Variance of the continuous part of the basis change over one step (from b = 0):
        vol² (1 − e^{−2κdt}) / (2κ), → vol² dt as κ → 0."""
        kdt = self.kappa * dt
        scale = jnp.where(kdt > 1e-8, -jnp.expm1(-2 * kdt) / (2 * jnp.where(kdt > 1e-8, kdt, 1.0)), 1.0)
        return self.vol**2 * dt * scale


def _ar1_over(phi: Array, vol: Array, intervals: float) -> tuple[Array, Array]:
    """(phi^n, sd of the innovation sum) of an AR(1) over n = ``intervals`` steps (n may be < 1)."""
    phi_n = jnp.sign(phi) ** intervals * jnp.abs(phi) ** intervals
    small = jnp.abs(phi) < 1e-12
    var_ratio = jnp.where(small, 1.0, (1 - phi_n**2) / jnp.where(small, 1.0, 1 - phi**2))
    return phi_n, vol * jnp.sqrt(var_ratio)


class FundingProcess(eqx.Module):
    """Funding rate per settlement interval: f_k = mean + s_k + u_k, paid as clip(f_k, ±cap).

    u is the fast AR(1) (``phi``, ``vol``, innovations correlated ``corr`` with returns), s the
    slow one (``slow_phi``, ``slow_vol``; zero for ``ar1``). The state is (u, s), left unclipped:
    the venue caps the rate paid, not the premium that drives it. Leaves may carry a leading axis
    of posterior draws (path p uses draw p % draws).
    """

    mean: Array
    phi: Array
    vol: Array
    corr: Array
    cap: Array
    init: Array
    slow_phi: Array
    slow_vol: Array

    def start(self) -> Array:
        """The state (u, s) at t = 0: the rate ``init``, all of it in the fast component."""
        return jnp.stack([self.init - self.mean, jnp.zeros_like(self.init)])

    def rate(self, state: Array) -> Array:
        return jnp.clip(self.mean + state[0] + state[1], -self.cap, self.cap)

    def step(self, state: Array, z_return: Array, z_own: Array, intervals: float) -> Array:
        """The state ``intervals`` settlement intervals later (exact AR(1) aggregation of each)."""
        phi_n, sd = _ar1_over(self.phi, self.vol, intervals)
        slow_n, slow_sd = _ar1_over(self.slow_phi, self.slow_vol, intervals)
        eps = self.corr * z_return + jnp.sqrt(1 - self.corr**2) * z_own[0]
        return jnp.stack([phi_n * state[0] + sd * eps, slow_n * state[1] + slow_sd * z_own[1]])


class Market(eqx.Module):
    """Market parameters as arrays (so sweeps can ``vmap`` over them).

    The venue's parts are ``None`` in the flat-rate market: ``tiers`` (maintenance and maximum
    leverage by notional), ``isolated_margin`` (isolated mode: the wallet fraction of each
    position), ``basis`` (mark price) and ``funding`` (funding settled every
    ``funding_interval_hours``; ``None`` = continuous accrual at ``funding_rate``). ``cascade``:
    the crowd and price impact of a ``cascade:`` block (:mod:`levopt.cascade`), with
    ``account_equity`` the account's size W_0 in the settlement currency (its own forced flow).
    """

    borrow_rate: Array
    cash_rate: Array
    funding_rate: Array
    fee: Array
    slippage: Array
    maintenance_margin: Array
    liquidation_fee: Array
    tiers: Tiers | None = None
    isolated_margin: Array | None = None
    basis: Basis | None = None
    funding: FundingProcess | None = None
    cascade: CascadeParams | None = None
    account_equity: Array | None = None
    margin_mode: str = eqx.field(static=True, default="cross")
    option_margin: str = eqx.field(static=True, default="standard")
    funding_interval_hours: float | None = eqx.field(static=True, default=None)
    funding_stochastic: bool = eqx.field(static=True, default=False)
    funding_draws: int | None = eqx.field(static=True, default=None)

    @classmethod
    def from_config(
        cls,
        cfg: MarketConfig,
        dtype: Any,
        *,
        n_assets: int = 1,
        base_dir: str | Path = ".",
        funding_draws: dict[str, np.ndarray] | None = None,
        position_weights: Any = None,
        cascade: CascadeConfig | None = None,
    ) -> Market:
        """Arrays of a market config for a book of ``n_assets``.

        ``funding_draws``: posterior draws of the AR(1) funding parameters (``mean``, ``phi``,
        ``vol``, each ``(draws,)``) from a calibration. ``position_weights``: the policy's opening
        weights, for the default isolated margins (each position's share of the gross notional).
        ``cascade``: the experiment's ``cascade:`` block (one asset only).
        """
        cfg.check(n_assets, cascade=cascade is not None)
        cascade_params = equity = None
        if cascade is not None:
            cascade_params = CascadeParams.from_config(cascade, dtype, n_assets=n_assets, base_dir=base_dir)
            equity = jnp.asarray(cfg.equity(), dtype)
        flat = {k: jnp.asarray(getattr(cfg, k), dtype) for k in _FLAT_FIELDS}
        tiers = None
        if cfg.tiered:
            tiers = Tiers.from_tables(bracket_tables(cfg, n_assets, base_dir), cfg.equity(), dtype)
        isolated = None
        if cfg.mode == "isolated":
            isolated = jnp.asarray(_isolated_margins(cfg, n_assets, position_weights), dtype)
        basis = None
        if cfg.basis is not None:
            basis = Basis(**{k: jnp.asarray(v, dtype) for k, v in cfg.basis.model_dump().items()})
        interval = cfg.interval_hours()
        funding, stochastic, n_draws = None, False, None
        if interval is not None:
            funding, stochastic, n_draws = _funding_process(cfg, interval, dtype, funding_draws)
        return cls(
            **flat,
            tiers=tiers,
            isolated_margin=isolated,
            basis=basis,
            funding=funding,
            cascade=cascade_params,
            account_equity=equity,
            margin_mode=cfg.mode,
            option_margin=cfg.margin or "standard",
            funding_interval_hours=interval,
            funding_stochastic=stochastic,
            funding_draws=n_draws,
        )

    @property
    def trading_cost_rate(self) -> Array:
        return self.fee + self.slippage

    def requirement(self, notional: Array) -> Array:
        """Maintenance margin of positions ``(n,)``: flat rate on the gross notional, or tiered."""
        if self.tiers is None:
            return maintenance_requirement(jnp.sum(jnp.abs(notional)), self.maintenance_margin)
        return self.tiers.requirement(notional)

    def rates_at(self, notional: Array) -> tuple[Array, Array]:
        """(MMR_i, amount_i) in force for each position ``(n,)`` (flat: the one rate, no amount)."""
        if self.tiers is None:
            mm = jnp.broadcast_to(self.maintenance_margin, notional.shape)
            return mm, jnp.zeros_like(mm)
        return self.tiers.at(notional)


_FLAT_FIELDS = (
    "borrow_rate",
    "cash_rate",
    "funding_rate",
    "fee",
    "slippage",
    "maintenance_margin",
    "liquidation_fee",
)


def _isolated_margins(cfg: MarketConfig, n_assets: int, weights: Any) -> list[float]:
    if cfg.isolated_margin is not None:
        values = _per_asset(cfg.isolated_margin, n_assets, "market.isolated_margin", None, broadcast=True)
        return [float(m) for m in values]
    if weights is None:
        return [1.0 / n_assets] * n_assets
    gross = np.abs(np.asarray(weights, float)).reshape(-1)
    gross = np.broadcast_to(gross, (n_assets,)) if gross.size == 1 else gross
    total = float(np.sum(gross))
    return [float(g / total) for g in gross] if total > 0 else [1.0 / n_assets] * n_assets


def _funding_process(
    cfg: MarketConfig, interval: float, dtype: Any, draws: dict[str, np.ndarray] | None
) -> tuple[FundingProcess, bool, int | None]:
    f = cfg.funding or FundingConfig()
    venue_cap = get_venue(cfg.venue).funding_cap if cfg.venue is not None else None
    cap = f.cap if f.cap is not None else (venue_cap if venue_cap is not None else math.inf)
    if f.kind == "constant":
        per_interval = cfg.funding_rate * interval / HOURS_PER_YEAR
        if abs(per_interval) > cap:
            raise ConfigError(
                "market.funding_rate",
                f"{cfg.funding_rate} is {per_interval:.6g} per {interval:g} h, beyond the cap {cap:g}; "
                f"allowed: |rate| ≤ {cap * HOURS_PER_YEAR / interval:.6g} a year",
            )
        params = dict(mean=per_interval, phi=0.0, vol=0.0, corr=0.0, cap=cap, init=per_interval)
        params |= dict(slow_phi=0.0, slow_vol=0.0)
        return FundingProcess(**{k: jnp.asarray(v, dtype) for k, v in params.items()}), False, None
    if draws is not None:
        n = len(np.asarray(draws["mean"]))
        mean = np.asarray(draws["mean"], float)
        zeros = np.zeros(n)
        proc = FundingProcess(
            mean=jnp.asarray(mean, dtype),
            phi=jnp.asarray(draws["phi"], dtype),
            vol=jnp.asarray(draws["vol"], dtype),
            corr=jnp.full((n,), f.corr, dtype),
            cap=jnp.full((n,), cap, dtype),
            init=jnp.asarray(np.full(n, f.init) if f.init is not None else mean, dtype),
            slow_phi=jnp.asarray(draws.get("slow_phi", zeros), dtype),
            slow_vol=jnp.asarray(draws.get("slow_vol", zeros), dtype),
        )
        return proc, True, n
    if f.mean is None:
        raise ConfigError(
            "market.funding.calibrate", "the calibration's draws were not supplied (use levopt.build)"
        )
    init = f.init if f.init is not None else f.mean
    params = dict(mean=f.mean, phi=f.phi, vol=f.vol, corr=f.corr, cap=cap, init=init)
    params |= dict(slow_phi=f.slow_phi, slow_vol=f.slow_vol)
    return FundingProcess(**{k: jnp.asarray(v, dtype) for k, v in params.items()}), True, None


def financing(cash: Any, cash_growth: Any, borrow_growth: Any, xp: Any = jnp) -> Any:
    """Interest on the cash balance over one period.

    ``cash`` = equity - net notional; positive cash earns ``cash_growth`` (e.g. expm1(r_c dt)),
    negative cash (borrowed) pays ``borrow_growth``. Written as min(c*a, c*b), which equals the
    piecewise rule when b >= a and is concave in ``cash`` — hence usable in a convex program.
    """
    return xp.minimum(cash * cash_growth, cash * borrow_growth)


def funding_payment(net_notional: Any, funding_rate: Any, dt: Any) -> Any:
    """Perpetual funding over ``dt`` years: longs pay ``funding_rate`` x notional (shorts receive)."""
    return -funding_rate * dt * net_notional


def settled_funding(net_notional: Any, rate_per_interval: Any, settlements: Any) -> Any:
    """Funding settled ``settlements`` times in a step at ``rate_per_interval`` on the net notional
    (longs pay a positive rate): the venue's discrete form of :func:`funding_payment`."""
    return -rate_per_interval * settlements * net_notional


def trading_cost(traded: Any, rate: Any, xp: Any = jnp) -> Any:
    """Fee plus slippage on the absolute traded notional (summed over assets)."""
    return rate * xp.sum(xp.abs(traded))


def maintenance_requirement(gross_notional: Any, maintenance_margin: Any) -> Any:
    """Maintenance margin on the gross notional; below it the position is liquidated."""
    return maintenance_margin * gross_notional


def liquidation_price_ratio(leverage: float, maintenance_margin: float) -> float:
    """Price ratio S/S_0 at which a static long of leverage L opened at S_0 is liquidated.

    Equity 1 + L(u - 1) meets maintenance mm L u at u = (L - 1) / (L (1 - mm)) (no fees or interest).
    """
    return float(np.clip((leverage - 1) / (leverage * (1 - maintenance_margin)), 0.0, None))
