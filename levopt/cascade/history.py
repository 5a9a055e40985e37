r"""A crowd reconstructed from open-interest history, its leverage mix fitted to liquidations.

The venues publish how much is open, not who holds it at which leverage. Over a window of bars
this module infers the standing crowd with the bookkeeping that liquidation maps are built on:

* each leverage class :math:`L` holds the share :math:`w_L` of the open interest at every bar;
* when a class's live quantity is below its share of the bar's open interest, the difference
  enters during that bar, at entry log-prices spread uniformly between the bar's low and high
  (at its close when the bars have no range);
* when it is above, every account of the class closes the same fraction (pro rata);
* an account is liquidated in the first later bar whose low (high, for a short) crosses its
  level :math:`e + \delta_L`, :math:`\delta_L` = :func:`~levopt.cascade.liquidation_offset`;
* the open interest already open at the window's first bar entered uniformly within
  ``±entry_spread`` of that bar's close (the parametric crowd's assumption), less what that
  close has already liquidated.

Longs and shorts are two such books on the same open interest. Because every class is its own
book held at :math:`w_L` of the open interest, the liquidations the window predicts are linear in
the shares, :math:`\hat y_t = \sum_L w_L P_{L,t}`, and the shares that best reproduce a
liquidation history (least squares over the simplex :math:`w \ge 0, \sum w = 1`) are found
exactly by solving the equality-constrained problem on every support set.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from levopt.cascade.config import LONG, SHORT, CrowdConfig, CrowdDataConfig, liquidation_offset
from levopt.data.crowd import load_liquidations, load_open_interest
from levopt.data.load import infer_frequency, load_prices
from levopt.errors import ConfigError, DataError

MIN_BARS = 2


@dataclass(frozen=True)
class Bars:
    """The window's price bars with the open interest at each bar's end.

    Attributes:
        end: ``(T,)`` bar end times (UTC).
        close, low, high: ``(T,)`` log-prices (low = high = close without ranges).
        amount: ``(T,)`` open interest in units of the asset at each bar's end.
        value: ``(T,)`` the same in the settlement currency.
    """

    end: pd.DatetimeIndex
    close: np.ndarray
    low: np.ndarray
    high: np.ndarray
    amount: np.ndarray
    value: np.ndarray


@dataclass(frozen=True)
class SideBook:
    """One side of the reconstructed crowd at the window's end, per leverage class and cohort.

    Attributes:
        lo, hi: ``(n, K)`` surviving entry log-prices of each class's cohorts, relative to the
            last close (``hi <= lo`` for a cohort that is gone).
        units: ``(n, K)`` quantity of each cohort of a book holding all the open interest.
        liquidated: ``(n, T)`` notional liquidated in each bar by each class's book, settlement
            currency (a book holding all the open interest; scale by the share).
    """

    lo: np.ndarray
    hi: np.ndarray
    units: np.ndarray
    liquidated: np.ndarray


@dataclass(frozen=True)
class CrowdHistory:
    """The crowd standing at the end of a window of history.

    Attributes:
        as_of: the window's last bar end (UTC).
        price: the last close, settlement currency.
        open_interest: open interest at ``as_of``, settlement currency (one side).
        leverage: ``(n,)`` leverage classes; shares: ``(n,)`` their shares of the open interest
            (fitted when ``fitted``).
        fitted: whether the shares were fitted to a liquidation history.
        long, short: the two books (:class:`SideBook`).
        bars: the window (:class:`Bars`).
        observed: ``(T, 2)`` long and short liquidations recorded in each bar (divided by the
            reported fraction), or None without a liquidation history.
        fit: the fit's figures (``r2``, ``rmse``, totals), or None.
    """

    as_of: pd.Timestamp
    price: float
    open_interest: float
    leverage: np.ndarray
    shares: np.ndarray
    fitted: bool
    long: SideBook
    short: SideBook
    bars: Bars
    observed: np.ndarray | None = None
    fit: dict[str, Any] | None = field(default=None)

    def predicted(self) -> np.ndarray:
        """``(T, 2)`` long and short notional the window's moves liquidate with these shares."""
        return np.stack([self.shares @ self.long.liquidated, self.shares @ self.short.liquidated], axis=1)

    def entry_weights(self, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(lo, hi, weight)`` of one side: entry bands relative to the last close and, per class,
        each cohort's share of that class's quantity, i.e. of its notional at the last close
        (rows sum to one)."""
        book = self.long if side == LONG else self.short
        total = book.units.sum(axis=1, keepdims=True)
        weight = np.divide(book.units, total, out=np.zeros_like(book.units), where=total > 0)
        return book.lo, np.maximum(book.hi, book.lo), weight

    def summary(self) -> dict[str, Any]:
        """The reconstruction in a few numbers (strict-JSON friendly)."""
        out: dict[str, Any] = {
            "as_of": self.as_of.isoformat(),
            "bars": len(self.bars.end),
            "price": self.price,
            "open_interest": self.open_interest,
            "leverage": {f"{lev:g}": float(w) for lev, w in zip(self.leverage, self.shares, strict=True)},
            "fitted": self.fitted,
            "predicted_liquidations": dict(
                zip(("long", "short"), self.predicted().sum(axis=0).tolist(), strict=True)
            ),
        }
        if self.observed is not None:
            out["observed_liquidations"] = dict(
                zip(("long", "short"), self.observed.sum(axis=0).tolist(), strict=True)
            )
        if self.fit is not None:
            out["fit"] = dict(self.fit)
        return out


def side_book(bars: Bars, offsets: np.ndarray, side: int, entry_spread: float) -> SideBook:
    r"""Run one side's books, one per leverage class, through the window (see the module text).

    Cohort 0 is the open interest at the first bar; cohort :math:`k \ge 1` enters during bar
    :math:`k`. A long cohort's survivors are its entries below :math:`M_k - \delta_L`,
    :math:`M_k` the lowest low since it entered (the first close for cohort 0); a short's are
    those above :math:`X_k - \delta_L`, :math:`X_k` the highest high.

    Args:
        bars: the window.
        offsets: ``(n,)`` liquidation offsets :math:`\delta_L` of the classes for this side.
        side: +1 longs, −1 shorts.
        entry_spread: half-width of cohort 0's entries around the first close.

    Returns:
        The side's :class:`SideBook` for books each holding all the open interest.
    """
    T, n = len(bars.end), offsets.shape[0]
    lo = np.concatenate([[bars.close[0] - entry_spread], bars.low[1:]])
    hi = np.concatenate([[bars.close[0] + entry_spread], bars.high[1:]])
    # The extreme price each cohort has seen since it entered (a new cohort has seen none).
    reach = np.full(T, np.inf if side == LONG else -np.inf)
    reach[0] = bars.close[0]
    cut, alive = _survivors(lo, hi, reach, offsets, side)
    units = np.zeros((n, T))
    # Cohort 0 holds the first bar's open interest in its surviving part.
    units[:, 0] = bars.amount[0]
    liquidated = np.zeros((n, T))
    for t in range(1, T):
        extreme = bars.low[t] if side == LONG else bars.high[t]
        reach[:t] = np.minimum(reach[:t], extreme) if side == LONG else np.maximum(reach[:t], extreme)
        new_cut, now = _survivors(lo, hi, reach, offsets, side)
        keep = np.divide(now, alive, out=np.zeros_like(now), where=alive > 0)
        gone = units * (1.0 - keep)
        # Valued at the liquidated accounts' levels: the middle of the band's crossed part.
        level = 0.5 * (cut + new_cut) + offsets[:, None]
        liquidated[:, t] = np.sum(gone * np.exp(level), axis=1)
        units = units * keep
        cut, alive = new_cut, now
        held = units.sum(axis=1)
        target = bars.amount[t]
        units[:, t] = np.maximum(target - held, 0.0)
        scale = np.divide(target, held, out=np.ones_like(held), where=held > target)
        units[:, :t] *= scale[:, None]
    last = bars.close[-1]
    if side == LONG:
        band_lo, band_hi = np.broadcast_to(lo - last, (n, T)), cut - last
    else:
        band_lo, band_hi = cut - last, np.broadcast_to(hi - last, (n, T))
    return SideBook(lo=np.array(band_lo), hi=np.array(band_hi), units=units, liquidated=liquidated)


def _survivors(
    lo: np.ndarray, hi: np.ndarray, reach: np.ndarray, offsets: np.ndarray, side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Where each class's cohorts end and what fraction of them is left, ``(n, K)`` each.

    A long survives while its level lies under the lowest price seen, i.e. its entry lies under
    ``reach - offset``: the survivors are ``[lo, cut]``; a short's are ``[cut, hi]``. A cohort
    entered at one price (``lo == hi``) survives whole or not at all.
    """
    edge = reach[None, :] - offsets[:, None]
    lo_, hi_ = lo[None, :], hi[None, :]
    cut = np.clip(edge, lo_, hi_)
    width = hi_ - lo_
    part = (cut - lo_) if side == LONG else (hi_ - cut)
    point = (edge > lo_) if side == LONG else (edge < hi_)
    alive = np.where(width > 0, part / np.where(width > 0, width, 1.0), point.astype(float))
    return cut, alive


def fit_shares(columns: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, float]:
    r"""Least squares over the simplex: :math:`\min_w \lVert Pw - y\rVert^2` with :math:`w \ge 0`,
    :math:`\sum w = 1`, solved exactly.

    The minimum lies on some support set :math:`S` where it is the minimum with the equality
    constraint alone (the KKT system of :math:`P_S`); every support set is solved and the best
    feasible one kept, so the answer is the global minimum of this convex problem (ties, as when
    two columns are equal, resolve to the least-norm solution on the smaller support).

    Args:
        columns: ``(m, n)`` matrix :math:`P`, one column per class.
        observed: ``(m,)`` :math:`y`.

    Returns:
        ``(w, ssr)``: the shares and the residual sum of squares.
    """
    m, n = columns.shape
    scale = max(float(np.abs(columns).max()), float(np.abs(observed).max()), 1e-300)
    P, y = columns / scale, observed / scale
    best, best_ssr = None, np.inf
    for size in range(1, n + 1):
        for support in itertools.combinations(range(n), size):
            cols = P[:, support]
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = 2.0 * cols.T @ cols
            kkt[:size, size] = kkt[size, :size] = 1.0
            rhs = np.concatenate([2.0 * cols.T @ y, [1.0]])
            sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:size]
            if np.any(sol < -1e-12):
                continue
            w = np.zeros(n)
            w[list(support)] = np.maximum(sol, 0.0)
            w /= w.sum()
            ssr = float(np.sum((P @ w - y) ** 2))
            if ssr < best_ssr * (1.0 - 1e-12):
                best, best_ssr = w, ssr
    return best, best_ssr * scale**2


def load_bars(data: CrowdDataConfig, base_dir: str | Path = ".") -> Bars:
    """The window of bars a :class:`CrowdDataConfig` names, with the open interest at each bar's
    end (the last observation at or before it)."""
    oi = load_open_interest(_path(base_dir, data.open_interest))
    if data.prices is not None:
        prices = load_prices(_path(base_dir, data.prices))
        step = infer_frequency(prices.index)
        end = prices.index + step
        close = prices["close"].to_numpy(float)
        low = prices["low"].to_numpy(float) if "low" in prices else close
        high = prices["high"].to_numpy(float) if "high" in prices else close
    else:
        priced = oi["price"].to_numpy(float)
        if not np.all(np.isfinite(priced) & (priced > 0)):
            raise DataError(
                f"{oi.attrs.get('source', data.open_interest)}: no price for every row (value / amount); "
                "allowed: both open-interest columns in every row, or crowd.data.prices"
            )
        end, close = oi.index, priced
        low = high = close
    as_of = _as_of(data, oi.index[-1])
    window = (end > as_of - pd.Timedelta(days=data.lookback_days)) & (end <= as_of)
    window &= end >= oi.index[0]
    if window.sum() < MIN_BARS:
        raise ConfigError(
            "cascade.crowd.data",
            f"{int(window.sum())} bars with open interest in the {data.lookback_days:g} days to {as_of}; "
            f"allowed: a window holding at least {MIN_BARS} (check as_of, lookback_days and the files' dates)",
        )
    end = end[window]
    at = oi.index.searchsorted(end, side="right") - 1
    value = oi["open_interest"].to_numpy(float)[at]
    close, low, high = close[window], low[window], high[window]
    amount = oi["open_interest_amount"].to_numpy(float)[at]
    amount = np.where(np.isfinite(amount), amount, value / close)
    return Bars(
        end=end,
        close=np.log(close),
        low=np.log(np.minimum(low, close)),
        high=np.log(np.maximum(high, close)),
        amount=amount,
        value=value,
    )


def _path(base_dir: str | Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p


def _as_of(data: CrowdDataConfig, last: pd.Timestamp) -> pd.Timestamp:
    if data.as_of is None:
        return last
    try:
        ts = pd.Timestamp(data.as_of)
    except (ValueError, TypeError):
        ts = pd.NaT
    if pd.isna(ts):
        raise ConfigError(
            "cascade.crowd.data.as_of", f"{data.as_of!r}; allowed: a UTC time such as 2025-10-10T21:00"
        )
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def observed_liquidations(path: Path, bars: Bars, reported_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 2)`` recorded long and short liquidations per bar (an event belongs to the bar whose
    end is the first at or after it), divided by the reported fraction, and a ``(T,)`` mask of
    the bars the file covers."""
    events = load_liquidations(path)
    end = bars.end
    # A bar starts where the one before it ended; the first is as long as the second.
    starts = end[:-1].insert(0, end[0] - (end[1] - end[0]))
    slot = end.searchsorted(events.index, side="left")
    inside = (slot < len(end)) & ((slot > 0) | (events.index > starts[0]))
    observed = np.zeros((len(bars.end), 2))
    np.add.at(observed, slot[inside], events[["long", "short"]].to_numpy(float)[inside])
    covered = (end >= events.index[0]) & (starts <= events.index[-1])
    return observed / reported_fraction, np.asarray(covered)


def reconstruct(crowd: CrowdConfig, base_dir: str | Path = ".") -> CrowdHistory:
    """The crowd of a ``crowd:`` block with ``data`` (see the module text): the books, the
    leverage shares (fitted to the liquidation history when one is given) and the fit's figures."""
    data = crowd.data
    if data is None:
        raise ValueError("reconstruct needs crowd.data")
    bars = load_bars(data, base_dir)
    leverage = np.asarray(list(crowd.leverage), float)
    shares = np.asarray(list(crowd.leverage.values()), float)
    books = {
        side: side_book(bars, liquidation_offset(leverage, crowd.maintenance, side), side, crowd.entry_spread)
        for side in (LONG, SHORT)
    }
    observed = fit = None
    fitted = False
    if data.liquidations is not None:
        observed, covered = observed_liquidations(
            _path(base_dir, data.liquidations), bars, data.reported_fraction
        )
        if not covered.any():
            raise ConfigError(
                "cascade.crowd.data.liquidations",
                f"{data.liquidations} has no event inside the window ending {bars.end[-1]}; "
                "allowed: a history overlapping the open-interest window",
            )
        P = np.concatenate([books[LONG].liquidated[:, covered].T, books[SHORT].liquidated[:, covered].T])
        y = np.concatenate([observed[covered, 0], observed[covered, 1]])
        if data.fit_leverage:
            if not np.any(P > 0):
                raise ConfigError(
                    "cascade.crowd.data.liquidations",
                    "the window's prices liquidate none of the leverage classes, so the liquidations "
                    "cannot tell them apart; allowed: a longer lookback_days, higher leverages in "
                    "crowd.leverage, or fit_leverage: false",
                )
            shares, ssr = fit_shares(P, y)
            fitted = True
        else:
            ssr = float(np.sum((P @ shares - y) ** 2))
        sst = float(np.sum((y - y.mean()) ** 2))
        fit = {
            "bars": int(covered.sum()),
            "r2": 1.0 - ssr / sst if sst > 0 else None,
            "rmse": float(np.sqrt(ssr / y.size)),
        }
    return CrowdHistory(
        as_of=bars.end[-1],
        price=float(np.exp(bars.close[-1])),
        open_interest=float(bars.value[-1]),
        leverage=leverage,
        shares=shares,
        fitted=fitted,
        long=books[LONG],
        short=books[SHORT],
        bars=bars,
        observed=observed,
        fit=fit,
    )


@functools.lru_cache(maxsize=16)
def _reconstruct_cached(crowd_json: str, base_dir: str, stamps: tuple) -> CrowdHistory:
    del stamps  # part of the key only: a file changed on disk is read again
    return reconstruct(CrowdConfig.model_validate_json(crowd_json), base_dir)


def crowd_history(crowd: CrowdConfig, base_dir: str | Path = ".") -> CrowdHistory:
    """:func:`reconstruct`, computed once per block and set of files (a sweep builds the market
    many times)."""
    data = crowd.data
    files = [data.open_interest, data.prices, data.liquidations]
    stamps = []
    for f in files:
        if f is None:
            continue
        p = _path(base_dir, f)
        try:
            st = p.stat()
            stamps.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append((str(p), None, None))
    return _reconstruct_cached(crowd.model_dump_json(), str(base_dir), tuple(stamps))
