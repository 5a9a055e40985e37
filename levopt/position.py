"""Position risk now: the trader's open position(s) on a venue, answered from recent prices.

One call turns a held position into the questions a trader asks every morning:

1. the venue's **liquidation price** (:func:`levopt.venues.liquidation_price`, isolated or cross
   with the other positions) and the distance to it in today's standard deviations;
2. a **volatility model filtered to now**: GARCH/GJR (normal or Student-t) fitted to the recent
   returns by maximum likelihood (or NUTS with ``bayes``), its conditional variance carried to the
   bar after the last one, so the simulation starts from today's variance, not the long-run one;
3. the **probability of liquidation within the horizon** under continuous monitoring, VaR and CVaR
   of the account over the horizon and the funding expected — all from ``levopt.evaluate`` of an
   equivalent config (returned with the answer, so the numbers can be reproduced);
4. the **leverage that maximizes log-growth with the liquidation probability capped** (1% by
   default) over the horizon, and the trade that gets there: the current book scaled by one factor,
   found by a one-dimensional search on common random numbers with the compiled engine (so
   ``--watch`` updates reuse it).

The account is normalized as the engine is: equity W = wallet + unrealized P&L at the last close,
each position's notional N_i = side_i × quantity_i × price_i, leverage N_i / W.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pandas as pd

from levopt.cache import user_cache_root
from levopt.calibrate import GarchFit, filter_garch, fit_garch_mle
from levopt.data.load import (
    annualized_funding,
    infer_frequency,
    load_funding,
    load_prices,
    log_returns,
    parse_frequency,
)
from levopt.errors import ConfigError, DataError
from levopt.estimate import estimate
from levopt.objectives import get_metric
from levopt.precision import scoped_x64
from levopt.problem import STREAM_PATHS
from levopt.runner import build
from levopt.venues import (
    account_positions,
    feed_report,
    get_venue,
    liquidation_price,
    live_candles,
    live_funding,
)
from levopt.venues.cli import load_positions

SIDES = {"long": 1.0, "short": -1.0}
HOURS_PER_YEAR = 365.0 * 24.0


@dataclass(frozen=True)
class Position:
    """One open position: ``side`` long or short, ``quantity`` > 0 in base units, its entry price."""

    side: str
    quantity: float
    entry_price: float
    symbol: str | None = None

    @property
    def sign(self) -> float:
        return SIDES[self.side]


_POSITION_TEXT = re.compile(
    r"^\s*(?P<side>[A-Za-z]+)\s+(?P<qty>[^\s@]+)\s*(?:@|\s)\s*(?P<price>[^\s@]+)(?:\s+(?P<symbol>\S+))?\s*$"
)


def parse_position(spec: Position | Mapping[str, Any] | str, field: str = "position") -> Position:
    """A :class:`Position` from itself, a mapping (side, quantity, entry_price[, symbol]) or text
    ``"long 2 @ 60000"`` (``"short 0.5 3100 ETHUSDT"`` also reads).

    Raises:
        ConfigError: naming ``field`` and what is allowed, for a side that is not long/short, a
            quantity that is not a positive number or an entry price ≤ 0.
    """
    if isinstance(spec, Position):
        side, qty, price, symbol = spec.side, spec.quantity, spec.entry_price, spec.symbol
    elif isinstance(spec, Mapping):
        unknown = sorted(set(spec) - {"side", "quantity", "entry_price", "symbol"})
        if unknown:
            raise ConfigError(
                f"{field}.{unknown[0]}", "unknown key; allowed: side, quantity, entry_price, symbol"
            )
        missing = [k for k in ("side", "quantity", "entry_price") if k not in spec]
        if missing:
            raise ConfigError(f"{field}.{missing[0]}", "required key is missing")
        side, qty, price, symbol = spec["side"], spec["quantity"], spec["entry_price"], spec.get("symbol")
    elif isinstance(spec, str):
        m = _POSITION_TEXT.match(spec)
        if m is None:
            raise ConfigError(
                field, f"{spec!r}; allowed: 'SIDE QUANTITY @ ENTRY_PRICE [SYMBOL]', e.g. 'long 2 @ 60000'"
            )
        side, qty, price, symbol = m["side"], m["qty"], m["price"], m["symbol"]
    else:
        raise ConfigError(
            field, f"expected text like 'long 2 @ 60000' or a mapping, got {type(spec).__name__}"
        )
    side = str(side).strip().lower()
    if side not in SIDES:
        raise ConfigError(f"{field}.side", f"{side!r}; allowed: long, short")
    return Position(
        side,
        _positive(qty, f"{field}.quantity", "a quantity in base-asset units > 0"),
        _positive(price, f"{field}.entry_price", "a price > 0"),
        None if symbol is None else str(symbol),
    )


def _positive(value: Any, field: str, allowed: str) -> float:
    try:
        x = float(str(value).replace("_", "").replace(",", "")) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, f"{value!r} is not a number; allowed: {allowed}") from None
    if isinstance(value, bool) or not math.isfinite(x) or x <= 0:
        raise ConfigError(field, f"{value!r}; allowed: {allowed}")
    return x


def _seconds(text: Any, bare_unit: str, field: str, example: str) -> float:
    """A duration in seconds, as :func:`levopt.data.parse_frequency` reads it (``m`` is minutes);
    a bare number is in ``bare_unit``."""
    if isinstance(text, bool):
        raise ConfigError(field, f"{text!r}; allowed: a duration like {example}")
    if isinstance(text, int | float) or re.fullmatch(r"\s*[0-9]*\.?[0-9]+\s*", str(text)):
        text = f"{float(text)}{bare_unit}"
    try:
        return parse_frequency(str(text)).total_seconds()
    except DataError:
        raise ConfigError(field, f"{text!r}; allowed: a duration like {example}") from None


def parse_horizon(horizon: str | float | int, field: str = "horizon") -> float:
    """Hours in ``"24h"``, ``"7d"``, ``"90m"``, ``"2w"`` (a bare number is hours)."""
    hours = _seconds(horizon, "h", field, "24h, 7d, 90m, 2w") / 3600.0
    if not (math.isfinite(hours) and 0 < hours <= 24 * 366):
        raise ConfigError(field, f"{horizon!r}; allowed: more than 0 and at most a year")
    return hours


def _frame(prices: Any, field: str = "--data") -> pd.DataFrame:
    if isinstance(prices, pd.DataFrame):
        return prices
    if isinstance(prices, str | Path):
        try:
            return load_prices(prices)
        except DataError as exc:
            raise ConfigError(field, str(exc)) from None
    raise ConfigError("prices", f"expected a price file or a DataFrame, got {type(prices).__name__}")


def _funding_series(funding: Any) -> pd.Series | float | None:
    if funding is None or isinstance(funding, pd.Series):
        return funding
    if isinstance(funding, int | float) and not isinstance(funding, bool):
        if not math.isfinite(funding):
            raise ConfigError("funding", f"{funding!r}; allowed: a finite annual rate")
        return float(funding)
    try:
        return load_funding(funding)
    except DataError as exc:
        raise ConfigError("--funding", str(exc)) from None


def parse_interval(text: str, field: str = "interval") -> float:
    """Seconds in ``"30s"``, ``"5m"``, ``"1h"`` (a bare number is seconds), at least one second."""
    seconds = _seconds(text, "s", field, "30s, 5m, 1h")
    if not seconds >= 1:
        raise ConfigError(field, f"{text!r}; allowed: at least 1s")
    return seconds


@dataclass(frozen=True)
class Account:
    """The account being asked about: its positions on one symbol, wallet, venue and margin mode."""

    positions: tuple[Position, ...]
    wallet: float
    venue: str
    symbol: str
    mode: str

    @classmethod
    def checked(
        cls, positions: Sequence[Any], wallet_balance: Any, venue: str, symbol: str | None, mode: str
    ) -> Account:
        if not positions:
            raise ConfigError("position", "no position given; allowed: one or more, e.g. 'long 2 @ 60000'")
        many = len(positions) > 1
        parsed = tuple(
            parse_position(p, f"position[{i}]" if many else "position") for i, p in enumerate(positions)
        )
        wallet = _positive(
            wallet_balance, "wallet_balance", "the wallet balance (isolated: the position's margin) > 0"
        )
        v = get_venue(venue)
        sym = symbol or parsed[0].symbol or v.default_symbol
        for i, p in enumerate(parsed):
            if p.symbol is not None and p.symbol != sym:
                raise ConfigError(
                    f"position[{i}].symbol",
                    f"{p.symbol!r} differs from {sym!r}; allowed: positions on one symbol (netted as in the "
                    "venue's one-way mode)",
                )
        try:
            v.table(sym)
        except ConfigError as exc:
            raise ConfigError("symbol", str(exc).removeprefix(f"{exc.field}: ")) from None
        if mode not in ("isolated", "cross"):
            raise ConfigError("mode", f"{mode!r}; allowed: isolated, cross")
        if mode not in v.modes:
            raise ConfigError("mode", f"{v.name} documents no {mode} margin; allowed: {', '.join(v.modes)}")
        if mode == "isolated" and many:
            raise ConfigError("mode", "isolated margin holds one position; allowed: mode cross for several")
        account = cls(parsed, wallet, v.name, sym, mode)
        if account.net()[0] == 0:
            raise ConfigError("position", "the positions net to zero; nothing is at risk")
        # A wallet already below maintenance at the entry is refused by the venue's calculator.
        account.liquidation_price()
        return account

    def net(self) -> tuple[float, float]:
        """(signed quantity, entry price) of the net position (one-way mode: legs on one symbol net)."""
        q = sum(p.sign * p.quantity for p in self.positions)
        same = [p for p in self.positions if p.sign * q > 0] or list(self.positions)
        qty = sum(p.quantity for p in same)
        return q, sum(p.quantity * p.entry_price for p in same) / qty

    def equity(self, price: float) -> float:
        """Wallet plus the unrealized P&L of every position at ``price``."""
        return self.wallet + sum(p.sign * p.quantity * (price - p.entry_price) for p in self.positions)

    def liquidation_price(self) -> float:
        """The venue's liquidation price of the net position (legs closed against each other are
        realized at the net position's entry, their difference folded into the wallet)."""
        q, entry = self.net()
        wallet = self.wallet + sum(p.sign * p.quantity * (entry - p.entry_price) for p in self.positions)
        try:
            return liquidation_price(
                self.venue, side="long" if q > 0 else "short", quantity=abs(q), entry_price=entry,
                wallet_balance=wallet, mode=self.mode, symbol=self.symbol,
            )  # fmt: skip
        except ConfigError as exc:
            if exc.field == "wallet_balance":
                raise ConfigError("wallet_balance", str(exc).removeprefix("wallet_balance: ")) from None
            raise


@dataclass(frozen=True)
class _Settings:
    """How the question is answered (fixed across ``--watch`` updates)."""

    hours: float
    window_days: float
    dist: str
    gjr: bool
    bayes: bool
    drift: float | None
    cap: float
    level: float
    paths: int
    seed: int


def equivalent_config(
    account: Account,
    settings: _Settings,
    model: dict[str, Any],
    price: float,
    bar: pd.Timedelta,
    funding_rate: float,
) -> dict[str, Any]:
    """The levopt config whose ``evaluate`` is this answer: the account at the last close, held."""
    q, _ = account.net()
    equity = account.equity(price)
    per_day = round(86400.0 / bar.total_seconds())
    return {
        "seed": settings.seed,
        "paths": settings.paths,
        "horizon_days": settings.hours / 24.0,
        "steps_per_day": per_day,
        "precision": "float64",
        "model": model,
        "market": {
            "venue": account.venue,
            "symbol": account.symbol,
            "account_equity": equity,
            "margin_mode": account.mode,
            "funding_rate": funding_rate,
        },
        # A short is a negative weight (the constant policy's ``leverage`` is a long's).
        "policy": {"kind": "constant", **_leverage_key(q * price / equity), "rebalance": "never"},
        "metrics": [
            "liquidation_probability",
            "log_growth",
            "mean_return",
            {"metric": "var", "level": settings.level, "returns": "simple"},
            {"metric": "cvar", "level": settings.level, "returns": "simple"},
        ],
    }


FUNDING_STALE = pd.Timedelta(days=7)
"""A funding history ending this long before (or after) the last price bar is reported."""


def _with_funding_warning(feed: dict[str, Any], funding: Any, last_bar: pd.Timestamp) -> dict[str, Any]:
    if not isinstance(funding, pd.Series) or abs(funding.index[-1] - last_bar) <= FUNDING_STALE:
        return feed
    gap = (last_bar - funding.index[-1]).total_seconds() / 86400.0
    where = "before" if gap > 0 else "after"
    warning = (
        f"funding history ends {funding.index[-1].isoformat()}, {abs(gap):.0f} days {where} the last price bar; "
        "its rate may not be today's"
    )
    return feed | {"warnings": [*feed.get("warnings", []), warning]}


def _leverage_key(leverage: float) -> dict[str, Any]:
    return {"leverage": leverage} if leverage >= 0 else {"weights": [leverage]}


def _steps(hours: float, bar: pd.Timedelta) -> int:
    steps_f = hours * 3600.0 / bar.total_seconds()
    steps = round(steps_f)
    if steps < 1 or abs(steps - steps_f) > 1e-9:
        raise ConfigError(
            "horizon", f"{hours:g} h is not a whole number of the data's {bar} bars; allowed: a multiple"
        )
    per_day = 86400.0 / bar.total_seconds()
    if abs(per_day - round(per_day)) > 1e-9:
        raise ConfigError(
            "--data", f"bars of {bar} do not divide a day; allowed: bars from 1 minute to 1 day"
        )
    return steps


def _funding_rate(funding: pd.Series | float | None, venue: str) -> dict[str, Any]:
    """The annual funding rate to simulate: the mean of the history's last 30 days, or as given."""
    interval = get_venue(venue).funding_interval_hours
    if funding is None:
        return {"annual_rate": 0.0, "interval_hours": interval, "source": "none given: 0"}
    if isinstance(funding, float):
        return {"annual_rate": funding, "interval_hours": interval, "source": "given"}
    recent = funding[funding.index >= funding.index[-1] - pd.Timedelta(days=30)]
    use = recent if len(recent) >= 2 else funding
    return {
        "annual_rate": annualized_funding(use),
        "interval_hours": interval,
        "source": f"mean of {len(use)} rates to {funding.index[-1].isoformat()}",
        "last_rate": float(funding.iloc[-1]),
    }


@dataclass(frozen=True)
class _Model:
    """The volatility model filtered to now: its config section and what the answer reports."""

    section: dict[str, Any]
    report: dict[str, Any]
    fit: GarchFit | None  # the MLE fit, re-filtered on new bars (None with bayes)
    daily_sd: float


def _mle_model(
    fit: GarchFit, settings: _Settings, per_day: int, first: str, last: str, bar: pd.Timedelta
) -> _Model:
    section = fit.model_config()
    if settings.drift is not None:
        section["mu"] = float(settings.drift)
    vol_se = 0.5 * fit.h_next_stderr / math.sqrt(fit.h_next * fit.dt) if fit.h_next > 0 else None
    report = {
        "kind": "gjr" if fit.gjr else "garch",
        "dist": fit.dist,
        "method": "maximum likelihood",
        "window": {"first": first, "last": last, "returns": fit.n_obs, "bar": str(bar)},
        "params": fit.params,
        "stderr": fit.stderr,
        "vol_now_annual": fit.vol_next,
        "vol_now_annual_stderr": vol_se,
        "vol_long_run_annual": fit.vol_long_run,
        "drift_annual": section["mu"],
    }
    return _Model(section, report, fit, math.sqrt(fit.h_next * per_day))


def _bayes_model(frame: pd.DataFrame, settings: _Settings, window: int, bar: pd.Timedelta) -> _Model:
    """The posterior as the config's calibrated model: NUTS on the window, each path a draw started
    from that draw's variance filtered to the last bar (``initial_variance: last``)."""
    cache = user_cache_root() / "position"
    cache.mkdir(parents=True, exist_ok=True)
    # Named by content: the config points at exactly these prices, and runs never share a file.
    closes = frame[["close"]]
    digest = hashlib.sha256(closes.index.asi8.tobytes() + closes["close"].to_numpy().tobytes()).hexdigest()[
        :16
    ]
    path = cache / f"prices-{digest}.parquet"
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        closes.to_parquet(tmp)
        os.replace(tmp, path)
    start = frame.index[-window - 1].isoformat()
    section: dict[str, Any] = {
        "kind": "garch",
        "dist": settings.dist,
        "calibrate": {
            "data": str(path),
            "start": start,
            "drop_last_partial": False,
            "gjr": settings.gjr,
            "initial_variance": "last",
            "warmup": 400,
            "samples": 400,
        },
        "uncertainty": "posterior",
    }
    report = {
        "kind": "gjr" if settings.gjr else "garch",
        "dist": settings.dist,
        "method": "posterior (NUTS), one draw per path",
        "window": {"first": start, "last": frame.index[-1].isoformat(), "returns": window, "bar": str(bar)},
    }
    return _Model(section, report, None, math.nan)


class PositionRequest:
    """A position question and where its data come from, answered once or on every new bar."""

    def __init__(
        self,
        account: Account | None,
        settings: _Settings,
        *,
        prices: Any = None,
        funding: Any = None,
        fetch: bool = False,
        read_account: bool = False,
        timeframe: str = "1h",
        exchange: Any = None,
        now: Any = None,
    ):
        self.account = account
        self.settings = settings
        self.prices = prices
        self.funding = funding
        self.fetch = fetch
        self.read_account = read_account
        self.timeframe = timeframe
        self.exchange = exchange
        # The time the live feed is read at (None: the clock); tests and replays fix it.
        self.now = now

    @classmethod
    def from_cli(
        cls,
        *,
        positions: Sequence[str],
        positions_file: Path | None,
        wallet_balance: float | None,
        venue: str,
        symbol: str | None,
        mode: str,
        horizon: str,
        data: Path | None,
        funding: Path | None,
        fetch: bool,
        account: bool,
        timeframe: str,
        window: str,
        dist: str,
        gjr: bool,
        bayes: bool,
        drift: float | None,
        liquidation_cap: float,
        level: float,
        paths: int,
        seed: int,
    ) -> PositionRequest:
        """Check every flag before anything is read or computed; each error names its flag."""
        specs: list[Any] = list(positions)
        if positions_file is not None:
            specs += load_positions(Path(positions_file))
        settings = _settings(
            horizon, window, dist, gjr, bayes, drift, liquidation_cap, level, paths, seed, cli=True
        )
        if data is None and not fetch:
            raise ConfigError(
                "--data", "no market data; allowed: --data FILE (price bars), or --fetch (ccxt)"
            )
        if data is not None and fetch:
            raise ConfigError("--fetch", "give --data or --fetch, not both")
        if account and (specs or wallet_balance is not None):
            raise ConfigError(
                "--account",
                "reads the positions and wallet from the exchange; drop --position/--wallet-balance",
            )
        acct = None
        if not account:
            if wallet_balance is None:
                raise ConfigError(
                    "--wallet-balance", "required (cross: the wallet; isolated: the position's margin)"
                )
            try:
                acct = Account.checked(specs, wallet_balance, venue, symbol, mode)
            except ConfigError as exc:
                raise ConfigError(_flag(exc.field), str(exc).removeprefix(f"{exc.field}: ")) from None
        else:
            get_venue(venue)
        return cls(
            acct, settings, prices=data, funding=funding, fetch=fetch or account, read_account=account,
            timeframe=timeframe,
        )._with(venue=venue, symbol=symbol, mode=mode)  # fmt: skip

    def _with(self, **where: Any) -> PositionRequest:
        self.where = where
        return self

    # -- data ------------------------------------------------------------------------------------

    def _market(self) -> tuple[pd.DataFrame, pd.Series | float | None, dict[str, Any]]:
        account = self.account
        venue = account.venue if account else self.where["venue"]
        symbol = account.symbol if account else (self.where.get("symbol") or get_venue(venue).default_symbol)
        if self.fetch and self.prices is None:
            bars = int(self.settings.window_days * 86400 / _timeframe_seconds(self.timeframe)) + 2
            frame, report = live_candles(
                venue, symbol, timeframe=self.timeframe, bars=bars, exchange=self.exchange, now=self.now
            )
            funding = (
                self.funding
                if self.funding is not None
                else live_funding(venue, symbol, exchange=self.exchange, now=self.now)
            )
            return frame, _funding_series(funding), _feed(report)
        frame = _frame(self.prices)
        report = feed_report(frame, source=str(frame.attrs.get("source", "prices")))
        return frame, _funding_series(self.funding), _feed(report)

    def _account(self) -> Account:
        if not self.read_account:
            assert self.account is not None
            return self.account
        venue, symbol, mode = self.where["venue"], self.where.get("symbol"), self.where["mode"]
        found, wallet = account_positions(venue, symbol, exchange=self.exchange)
        if not found:
            raise ConfigError("--account", f"no open position on {venue}{' ' + symbol if symbol else ''}")
        symbols = {p["symbol"] for p in found}
        if len(symbols) > 1:
            raise ConfigError(
                "--symbol", f"positions on {', '.join(sorted(symbols))}; allowed: name one with --symbol"
            )
        mode = found[0].get("margin_mode") or mode
        if mode == "isolated":
            wallet = found[0].get("isolated_margin") or wallet
        if wallet is None:
            raise ConfigError(
                "--account", "the exchange reported no wallet balance; give --wallet-balance instead"
            )
        specs = [{k: p[k] for k in ("side", "quantity", "entry_price", "symbol")} for p in found]
        return Account.checked(specs, wallet, venue, symbols.pop(), mode)

    # -- answers ---------------------------------------------------------------------------------

    def answer(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The answer now and the state a ``watch`` continues from."""
        frame, funding, feed = self._market()
        account = self._account()
        result, state = answer(account, self.settings, frame, funding, feed)
        return result, state

    def watch(self, state: dict[str, Any], interval: float) -> Iterator[tuple[dict[str, Any], str]]:
        """Every ``interval`` seconds, re-read the data; on a new bar, re-filter and answer again
        (the model's parameters and the compiled programs are reused). Yields (answer, changes)."""
        while True:
            time.sleep(interval)
            frame, funding, feed = self._market()
            if frame.index[-1] <= state["last_bar"]:
                continue
            account = self._account()
            result, new_state = answer(account, self.settings, frame, funding, feed, previous=state)
            yield result, describe_changes(state["result"], result)
            state = new_state


def _timeframe_seconds(timeframe: str) -> float:
    try:
        return parse_frequency(timeframe).total_seconds()
    except DataError:
        raise ConfigError("--timeframe", f"{timeframe!r}; allowed: 1m, 5m, 15m, 1h, 4h, 1d, ...") from None


_FLAGS = {
    "position": "--position",
    "wallet_balance": "--wallet-balance",
    "symbol": "--symbol",
    "mode": "--mode",
    "horizon": "--horizon",
}


def _flag(field: str) -> str:
    head, _, rest = field.partition(".")
    base = head.split("[")[0]
    if base in _FLAGS:
        return _FLAGS[base] + field[len(base) :]
    return field


def _settings(
    horizon: Any, window: Any, dist: str, gjr: bool, bayes: bool, drift: Any, cap: Any, level: Any,
    paths: Any, seed: Any, *, cli: bool = False,
) -> _Settings:  # fmt: skip
    name = (lambda f: "--" + f.replace("_", "-")) if cli else (lambda f: f)
    hours = parse_horizon(horizon, name("horizon"))
    window_days = parse_horizon(window, name("window")) / 24.0 if isinstance(window, str) else float(window)
    if not (math.isfinite(window_days) and window_days > 0):
        raise ConfigError(name("window"), f"{window!r}; allowed: a duration like 365d")
    if dist not in ("t", "normal"):
        raise ConfigError(name("dist"), f"{dist!r}; allowed: t, normal")
    if drift is not None and not (isinstance(drift, int | float) and math.isfinite(drift)):
        raise ConfigError(name("drift"), f"{drift!r}; allowed: a finite annual drift")
    if not (isinstance(cap, int | float) and 0 < cap < 1):
        raise ConfigError(name("liquidation_cap"), f"{cap!r}; allowed: a probability in (0, 1)")
    if not (isinstance(level, int | float) and 0.5 <= level < 1):
        raise ConfigError(name("level"), f"{level!r}; allowed: a level in [0.5, 1)")
    if not (isinstance(paths, int) and 256 <= paths <= 10_000_000):
        raise ConfigError(name("paths"), f"{paths!r}; allowed: 256 to 10,000,000")
    if not (isinstance(seed, int) and 0 <= seed < 2**31):
        raise ConfigError(name("seed"), f"{seed!r}; allowed: 0 to 2^31 − 1")
    return _Settings(hours, window_days, dist, gjr, bayes, drift, float(cap), float(level), paths, seed)


@scoped_x64
def answer(
    account: Account,
    settings: _Settings,
    frame: pd.DataFrame,
    funding: pd.Series | float | None,
    feed: dict[str, Any],
    previous: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answer for ``account`` on the price history ``frame``; ``previous`` (a watch state)
    re-filters its fitted model on the new bars instead of fitting again."""
    t0 = time.perf_counter()
    bar = infer_frequency(frame.index)
    _steps(settings.hours, bar)
    per_day = round(86400.0 / bar.total_seconds())
    window = max(2, int(round(settings.window_days * per_day)))
    returns = log_returns(frame).to_numpy()[-window:]
    last = frame.index[-1].isoformat()
    model = _model_now(settings, frame, returns, bar, previous)
    price = float(frame["close"].iloc[-1])
    _check_alive(account, price, last)
    fund = _funding_rate(funding, account.venue)
    feed = _with_funding_warning(feed, funding, frame.index[-1])
    cfg = equivalent_config(account, settings, model.section, price, bar, fund["annual_rate"])
    t_fit = time.perf_counter()
    problem = build(cfg)
    estimates = estimate(problem, problem.key(STREAM_PATHS))
    equity = account.equity(price)
    q, _ = account.net()
    notional = q * price
    report = dict(model.report)
    daily_sd = model.daily_sd
    if settings.bayes and problem.calibration is not None:
        derived = problem.calibration.get("derived") or {}
        vol_last, vol_long = derived.get("vol_last") or {}, derived.get("vol_long_run") or {}
        if vol_last.get("mean"):
            report["vol_now_annual"] = vol_last["mean"]
            report["vol_now_annual_stderr"] = vol_last.get("sd")
            daily_sd = vol_last["mean"] / math.sqrt(365.0)
        report["vol_long_run_annual"] = vol_long.get("mean")
        report["calibration"] = problem.calibration
    liq = account.liquidation_price()
    suggested = _suggest(problem, settings, price, equity, q)
    t_end = time.perf_counter()
    result = _result(
        account, settings, last, price, equity, notional, liq, daily_sd, estimates, fund, suggested
    )
    result |= {
        "model": report,
        "feed": feed,
        "config": cfg,
        "timings": {"model_s": t_fit - t0, "simulate_s": t_end - t_fit, "total_s": t_end - t0},
    }
    state = {"fit": model.fit, "last_bar": frame.index[-1], "result": result}
    return result, state


def _model_now(
    settings: _Settings, frame: pd.DataFrame, returns: np.ndarray, bar: pd.Timedelta, previous: Any
) -> _Model:
    """The volatility model filtered to the last bar: the posterior (``bayes``), the previous
    answer's fit re-filtered (a watch update), or a new maximum-likelihood fit."""
    if settings.bayes:
        return _bayes_model(frame, settings, len(returns), bar)
    per_day = round(86400.0 / bar.total_seconds())
    dt = bar.total_seconds() / (365.0 * 86400.0)
    if previous is not None and previous.get("fit") is not None:
        fit = _refilter(previous["fit"], returns)
    else:
        try:
            fit = fit_garch_mle(returns, dt=dt, dist=settings.dist, gjr=settings.gjr)
        except ConfigError as exc:
            field = "--window" if exc.field == "returns" else exc.field
            raise ConfigError(field, str(exc).removeprefix(f"{exc.field}: ")) from None
    first = frame.index[-len(returns) - 1].isoformat()
    return _mle_model(fit, settings, per_day, first, frame.index[-1].isoformat(), bar)


def _result(
    account: Account,
    settings: _Settings,
    last: str,
    price: float,
    equity: float,
    notional: float,
    liq: float,
    daily_sd: float,
    estimates: dict[str, Any],
    fund: dict[str, Any],
    suggested: dict[str, Any],
) -> dict[str, Any]:
    """The answer's account, liquidation, risk and funding fields (the engine's fractions of equity
    turned into the account's currency)."""
    m, se = estimates["metrics"], estimates["stderr"]
    return {
        "venue": account.venue,
        "symbol": account.symbol,
        "mode": account.mode,
        "as_of": last,
        "price": price,
        "horizon_hours": settings.hours,
        "positions": [dict(p.__dict__) for p in account.positions],
        "wallet_balance": account.wallet,
        "equity": equity,
        "notional": notional,
        "leverage": notional / equity,
        "liquidation_price": liq,
        "distance": {
            "pct": (liq / price - 1.0) * 100.0 if liq > 0 else None,
            "daily_sd": abs(math.log(liq / price)) / daily_sd if liq > 0 and daily_sd > 0 else None,
        },
        "liquidation_probability": m["liquidation_probability"],
        "liquidation_probability_stderr": se["liquidation_probability"],
        "var": m["var"] * equity,
        "var_stderr": se["var"] * equity,
        "cvar": m["cvar"] * equity,
        "cvar_stderr": se["cvar"] * equity,
        "level": settings.level,
        "expected_pnl": m["mean_return"] * equity,
        "expected_pnl_stderr": se["mean_return"] * equity,
        "funding": fund | {"expected_cost": fund["annual_rate"] * notional * settings.hours / HOURS_PER_YEAR},
        "suggested": suggested,
    }


def _check_alive(account: Account, price: float, when: str) -> None:
    """A position already past its liquidation price at the last close is refused."""
    liq = account.liquidation_price()
    q, _ = account.net()
    if (q > 0 and price <= liq) or (q < 0 and price >= liq):
        raise ConfigError(
            "wallet_balance",
            f"{account.wallet:g} leaves the position past its liquidation price {liq:,.2f} at the last close "
            f"{price:,.2f} ({when}); allowed: a wallet that keeps equity above maintenance at the last price",
        )


def _refilter(fit: GarchFit, returns: np.ndarray) -> GarchFit:
    """The same parameters filtered through the latest returns (the variance of the next bar)."""
    h, h_next = filter_garch(returns, fit.params, dt=fit.dt)
    # The parameter uncertainty's effect on h_next scales with h_next to first order.
    scale = h_next / fit.h_next if fit.h_next > 0 else 1.0
    return dataclasses.replace(
        fit, h=h, h_next=h_next, h_next_stderr=fit.h_next_stderr * scale, n_obs=len(returns)
    )


def _suggest(problem: Any, settings: _Settings, price: float, equity: float, q: float) -> dict[str, Any]:
    """The growth-optimal scaling of the held book with the liquidation probability capped, and the trade."""
    sign = 1.0 if q > 0 else -1.0
    max_lev = float(problem.market.tiers.max_weights()[0]) if problem.market.tiers is not None else 100.0
    key = jax.random.fold_in(problem.key(STREAM_PATHS), SEARCH_STREAM)
    best, info = search_leverage(
        problem, key, sign=sign, max_leverage=max_lev, liquidation_cap=settings.cap,
        paths=min(settings.paths, SEARCH_PATHS),
    )  # fmt: skip
    target = best * equity
    delta = target - q * price
    return {
        "leverage": best,
        "notional": target,
        "quantity": abs(target) / price,
        "side": "long" if best > 0 else ("short" if best < 0 else "flat"),
        "trade": {
            "side": "buy" if delta > 0 else "sell",
            "quantity": abs(delta) / price,
            "notional": abs(delta),
        },
        "liquidation_cap": settings.cap,
        "max_leverage": max_lev,
        "bound_by": info["bound_by"],
        "log_growth": info["log_growth"],
        "liquidation_probability": info["liquidation_probability"],
        "search_paths": info["paths"],
    }


SEARCH_STREAM = 7
"""``fold_in`` tag of the suggestion search's paths (apart from the reported estimates')."""
SEARCH_PATHS = 4096
"""Paths of the suggestion search (common random numbers across its evaluations)."""


def search_leverage(
    problem: Any, key: jax.Array, *, sign: float, max_leverage: float, liquidation_cap: float, paths: int
) -> tuple[float, dict[str, Any]]:
    """Signed leverage L = sign × x, x ∈ [0, max_leverage], maximizing log-growth subject to
    P(liquidation) ≤ ``liquidation_cap`` on ``paths`` paths (common random numbers).

    A held position's liquidation probability rises with |L|, so the feasible set is [0, x_c], x_c
    found by bisection; log-growth is concave in L for a held position, so its maximum on [0, x_c]
    is found by golden-section search. Each evaluation reuses the engine's compiled program (the
    policy is an argument of it, not a constant), so a repeated answer costs only the paths.
    """
    base = problem.policy
    unit = float(np.asarray(base.opening_weights(), float).reshape(-1)[0])
    growth, liq = get_metric("log_growth"), get_metric("liquidation_probability")
    memo: dict[float, tuple[float, float]] = {}

    def at(x: float) -> tuple[float, float]:
        if x not in memo:
            policy = base.scaled(jax.numpy.asarray(sign * x / unit, problem.dtype))
            out = problem.simulate(key, policy=policy, paths=paths)
            memo[x] = (float(growth.value(out, problem.ctx)), float(liq.value(out, problem.ctx)))
        return memo[x]

    hi, bound_by = max_leverage, "max_leverage"
    if at(hi)[1] > liquidation_cap:
        lo = 0.0
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if at(mid)[1] <= liquidation_cap else (lo, mid)
        hi, bound_by = lo, "liquidation_cap"
    # Golden-section search: each step keeps one interior point, so it costs one evaluation.
    g = (math.sqrt(5) - 1) / 2
    a, b = 0.0, hi
    c, d = b - g * (b - a), a + g * (b - a)
    for _ in range(GOLDEN_STEPS):
        if at(c)[0] >= at(d)[0]:
            b, d = d, c
            c = b - g * (b - a)
        else:
            a, c = c, d
            d = a + g * (b - a)
    x = 0.5 * (a + b)
    best = max((x, hi, 0.0), key=lambda k: at(k)[0])
    if best != hi:
        bound_by = "growth"
    return sign * best, {
        "bound_by": bound_by,
        "log_growth": at(best)[0],
        "liquidation_probability": at(best)[1],
        "paths": paths,
    }


BISECTION_STEPS = 11
GOLDEN_STEPS = 14


def describe_changes(before: dict[str, Any], after: dict[str, Any]) -> str:
    """One line: the new bar's time and what moved since the previous answer."""
    parts = [
        f"{after['as_of']}: price {after['price']:,.6g} ({(after['price'] / before['price'] - 1) * 100:+.2f}%)"
    ]
    for key, label, scale, unit in (
        ("liquidation_probability", "P(liq)", 100.0, "%"),
        ("cvar", "CVaR", 1.0, ""),
    ):
        parts.append(f"{label} {before[key] * scale:.3g}{unit} → {after[key] * scale:.3g}{unit}")
    vb, va = before["model"].get("vol_now_annual"), after["model"].get("vol_now_annual")
    if vb and va:
        parts.append(f"vol {vb * 100:.3g}% → {va * 100:.3g}%")
    sb, sa = before["suggested"]["leverage"], after["suggested"]["leverage"]
    parts.append(f"suggested {sb:.3g}x → {sa:.3g}x")
    return "; ".join(parts)


def position_risk(
    positions: Sequence[Position | Mapping[str, Any] | str],
    *,
    wallet_balance: float,
    prices: pd.DataFrame | str | Path,
    venue: str = "binance_usdm",
    symbol: str | None = None,
    mode: str = "cross",
    horizon: str | float = "24h",
    funding: pd.Series | str | Path | float | None = None,
    window: str | float = "365d",
    dist: str = "t",
    gjr: bool = False,
    bayes: bool = False,
    drift: float | None = None,
    liquidation_cap: float = 0.01,
    level: float = 0.99,
    paths: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """The risk of held position(s) over ``horizon``, from the symbol's recent price history.

    Args:
        positions: one or more positions on ``symbol`` (text ``"long 2 @ 60000"``, mappings with
            ``side``, ``quantity``, ``entry_price``, or :class:`Position`); several are netted.
        wallet_balance: cross: the wallet; isolated: the position's margin (as
            :func:`levopt.venues.liquidation_price`).
        prices: the symbol's bars (a file :func:`levopt.data.load_prices` reads, or its DataFrame);
            the last close is the price now and the bar length the simulation step.
        venue, symbol, mode: the venue's rule set, the instrument and the margin mode.
        horizon: ``"24h"``, ``"7d"``: a whole number of bars.
        funding: funding history (file or Series; the mean of its last 30 days is simulated) or an
            annual rate; default 0.
        window: calibration window, ``"365d"`` or days.
        dist, gjr: GARCH shocks (``"t"`` or ``"normal"``) and the GJR asymmetry.
        bayes: the NUTS posterior instead of the maximum-likelihood fit (each path its own draw).
        drift: annualized drift to simulate; default the model's estimate.
        liquidation_cap: the largest liquidation probability over the horizon the suggested
            leverage may carry.
        level: VaR/CVaR level; paths, seed: Monte Carlo paths and seed.

    Returns:
        The answer as a strict-JSON-ready dict (the fields ``levopt position --json`` prints):
        ``price``, ``as_of``, ``equity``, ``notional``, ``leverage``, ``liquidation_price``,
        ``distance`` (percent and today's daily standard deviations), ``liquidation_probability``
        (+ ``_stderr``), ``var``/``cvar`` (account currency over the horizon, + s.e.),
        ``expected_pnl``, ``funding`` (rate simulated, expected cost), ``suggested`` (leverage,
        notional, the trade), ``model`` (kind, window, parameters, volatility now and long-run),
        ``feed`` (data health) and ``config`` (the equivalent config: ``levopt evaluate`` of it
        gives the same liquidation probability, VaR and CVaR).
    """
    settings = _settings(horizon, window, dist, gjr, bayes, drift, liquidation_cap, level, paths, seed)
    account = Account.checked(list(positions), wallet_balance, venue, symbol, mode)
    frame = _frame(prices, "prices")
    feed = _feed(feed_report(frame, source=str(frame.attrs.get("source", "prices"))))
    return answer(account, settings, frame, _funding_series(funding), feed)[0]


def _feed(report: Any) -> dict[str, Any]:
    """A :class:`~levopt.venues.FeedReport` as plain JSON values."""
    out = dataclasses.asdict(report)
    out["warnings"] = list(out.get("warnings") or ())
    return out
