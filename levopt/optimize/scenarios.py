r"""One-period scenarios of a static allocation, and the wealth they give.

A :class:`Scenarios` holds, for each of S equally likely (or weighted) outcomes of one period of
length T years, the assets' simple returns and the price relatives at which funding is paid. The
end-of-period wealth of weights ``w`` (notional / equity at the start of the period, W_0 = 1) is
:func:`scenario_wealth`, written once with the venue rules of :mod:`levopt.engine.market` and an
array namespace ``xp`` so the same code is the cvxpy expression of the convex programs and the
numpy evaluation of their solutions.

The accounting is the margin engine's (:mod:`levopt.engine.simulate`) for a position opened at
the start of the period and held for its K steps of length dt = T / K:

* the opening trade costs c·Σ|w_i| (c = fee + slippage), paid from cash, so the cash balance after
  it is C_0 = 1 − Σ w_i − c·Σ|w_i|;
* each step, the cash balance C_t earns exp(r_c dt) − 1 when positive and pays exp(r_b dt) − 1 when
  negative (:func:`~levopt.engine.market.financing`), and funding −f·dt·Σ_i w_i A_{t,i} is paid
  from it on the start-of-step notional (:func:`~levopt.engine.market.funding_payment`), where
  A_{t,i} = S_{t,i}/S_{0,i} is the price relative at the start of step t (A_0 = 1);
* W = C_K + Σ_i w_i (1 + R_i).

While the cash balance keeps one sign during the period (always true when funding is zero; for a
long position paying funding once it borrows, or a short receiving it once it lends) this sums to

.. math::

    W = 1 - c\sum_i|w_i| + w^\top R
        + \min_{g \in \{c,\,b\}} \Big( C_0 G_g - f T\, w^\top \tilde A^{(g)} \Big),
    \qquad G_g = e^{r_g T} - 1,\quad
    \tilde A^{(g)} = \frac1K \sum_{t=0}^{K-1} e^{r_g (K-1-t) dt} A_t ,

the funding paid at step t being financed at the account's rate until the period ends. With
f = 0 (or equal rates and uncompounded prices) the minimum is ``financing(C_0, G_c, G_b)`` plus
−f T w·Ā. Each branch is affine in w except C_0, which is concave, and min(·) of concave functions
is concave; so W is concave in w and log W is an exponential-cone expression.
When the cash balance changes sign within the period the formula overstates the interest by
second-order terms (f·r·T²); the single-step period (K = 1) is exact in every case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np

from levopt.engine.market import Market, MarketConfig, financing, funding_payment, trading_cost
from levopt.engine.simulate import simulate_returns_jit
from levopt.errors import ConfigError, DataError

__all__ = [
    "Scenarios",
    "market_rates",
    "scenario_wealth",
    "scenarios_from_paths",
    "scenarios_from_returns",
    "scenarios_from_simulation",
    "steps_per_period",
]


class MarketRates(NamedTuple):
    """The venue's rates as floats (annualized; ``trading`` = fee + slippage per unit traded)."""

    trading: float
    cash: float
    borrow: float
    funding: float


def market_rates(market: Market | MarketConfig | Mapping[str, float] | None) -> MarketRates:
    """Floats of the rates the one-period accounting needs, from any form of market spec.

    ``None`` is the frictionless market (all rates zero). A :class:`~levopt.engine.market.Market`
    with batched (vmapped) fields is rejected: a convex program takes one market.
    """
    if market is None:
        market = MarketConfig()
    elif isinstance(market, Mapping):
        market = MarketConfig(**market)
    if isinstance(market, MarketConfig):
        return MarketRates(
            market.fee + market.slippage, market.cash_rate, market.borrow_rate, market.funding_rate
        )

    def scalar(name: str) -> float:
        value = np.asarray(getattr(market, name), dtype=float)
        if value.size != 1:
            raise ConfigError(
                f"market.{name}", f"needs one value for a convex program, got shape {value.shape}"
            )
        return float(value.reshape(()))

    return MarketRates(
        scalar("fee") + scalar("slippage"), scalar("cash_rate"), scalar("borrow_rate"), scalar("funding_rate")
    )


@dataclass(frozen=True, eq=False)
class Scenarios:
    r"""S outcomes of one period of ``years`` years for n assets (float64 arrays).

    Attributes:
        returns: ``(S, n)`` simple returns R_i = S_{T,i}/S_{0,i} − 1 over the period.
        mean_price: ``(S, n)`` time-average over the period's steps of the price relative at the
            start of each step, Ā = (1/K) Σ_t S_t/S_0 (funding is paid on the start-of-step
            notional w_i Ā_i per unit time). Ones for one-step periods.
        years: the period's length T in years.
        weights: ``(S,)`` scenario probabilities π_s (sum 1), or ``None`` for 1/S each.
        mean_price_cash, mean_price_borrow: ``(S, n)`` the same average with each step's funding
            carried to the period end at the cash (borrow) rate, Ã = (1/K) Σ_t e^{r (K−1−t) dt} A_t;
            ``None`` means "equal to ``mean_price``" (exact for one-step periods or zero rates).
        compounded_at: ``(cash_rate, borrow_rate)`` those averages were computed at; using the
            scenarios with a market of other rates and non-zero funding is an error.
        total_loss: returns of −1 are outcomes, not errors (an option that expires worthless).
    """

    returns: np.ndarray
    mean_price: np.ndarray
    years: float
    weights: np.ndarray | None = None
    mean_price_cash: np.ndarray | None = None
    mean_price_borrow: np.ndarray | None = None
    compounded_at: tuple[float, float] | None = None
    total_loss: bool = False

    def __post_init__(self) -> None:
        returns = _matrix(self.returns, "scenarios.returns")
        s, n = returns.shape
        below = returns < -1.0 if self.total_loss else returns <= -1.0
        if np.any(below):
            row = int(np.argmax(np.any(below, axis=1)))
            raise DataError(f"scenarios.returns: row {row} has a simple return <= -1 (price at or below 0)")
        object.__setattr__(self, "returns", returns)
        for name in ("mean_price", "mean_price_cash", "mean_price_borrow"):
            value = getattr(self, name)
            if value is None:
                continue
            arr = _matrix(value, f"scenarios.{name}")
            if arr.shape != (s, n):
                raise DataError(f"scenarios.{name}: shape {arr.shape} differs from returns' {(s, n)}")
            if np.any(arr <= 0):
                raise DataError(f"scenarios.{name}: price relatives must be > 0")
            object.__setattr__(self, name, arr)
        if (self.mean_price_cash is None) != (self.mean_price_borrow is None):
            raise ConfigError("scenarios", "give both mean_price_cash and mean_price_borrow, or neither")
        if self.mean_price_cash is not None and self.compounded_at is None:
            raise ConfigError("scenarios.compounded_at", "required with mean_price_cash / mean_price_borrow")
        if not (isinstance(self.years, (int, float)) and math.isfinite(self.years) and self.years > 0):
            raise ConfigError("scenarios.years", f"must be a number > 0, got {self.years!r}")
        object.__setattr__(self, "years", float(self.years))
        if self.weights is not None:
            pi = np.asarray(self.weights, dtype=np.float64)
            if pi.shape != (s,) or not np.all(np.isfinite(pi)) or np.any(pi < 0):
                raise DataError(
                    f"scenarios.weights: need {s} finite probabilities >= 0, got shape {pi.shape}"
                )
            if abs(pi.sum() - 1.0) > 1e-9:
                raise DataError(f"scenarios.weights: must sum to 1, got {pi.sum():.12g}")
            object.__setattr__(self, "weights", pi)

    @property
    def n_scenarios(self) -> int:
        return self.returns.shape[0]

    @property
    def n_assets(self) -> int:
        return self.returns.shape[1]

    @property
    def probabilities(self) -> np.ndarray:
        """``(S,)`` probabilities π_s (uniform when ``weights`` is None)."""
        if self.weights is None:
            return np.full(self.n_scenarios, 1.0 / self.n_scenarios)
        return self.weights


def _matrix(value: Any, field: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(f"{field}: need a (scenarios, assets) matrix, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        row = int(np.argmax(~np.all(np.isfinite(arr), axis=1)))
        raise DataError(f"{field}: row {row} is not finite")
    return np.ascontiguousarray(arr)


def scenario_wealth(
    w: Any, scen: Scenarios, market: Market | MarketConfig | Mapping | None, xp: Any = np
) -> Any:
    r"""End-of-period wealth W_s of weights ``w`` in every scenario (W_0 = 1).

    .. math::

        W = 1 - c\sum_i|w_i| + w^\top R + \min_{g\in\{c,b\}}\big(C_0 G_g - fT\,w^\top\tilde A^{(g)}\big),
        \quad C_0 = 1 - \sum_i w_i - c\sum_i |w_i|

    (see the module docstring for the derivation from the margin engine's per-step rules). Built
    from :func:`~levopt.engine.market.trading_cost`, :func:`~levopt.engine.market.financing` and
    :func:`~levopt.engine.market.funding_payment`, so it is concave in ``w``.

    Args:
        w: ``(n,)`` weights: a numpy array, or a cvxpy variable/expression with ``xp=cvxpy``.
        scen: the period's scenarios.
        market: the venue's rates (:class:`Market`, :class:`MarketConfig`, a mapping or None).
        xp: ``numpy`` or ``cvxpy``.

    Returns:
        ``(S,)`` wealth (numpy array or cvxpy expression).
    """
    r = market_rates(market)
    years = scen.years
    cost = trading_cost(w, r.trading, xp) if r.trading else 0.0
    cash = 1.0 - xp.sum(w) - cost
    g_cash, g_borrow = math.expm1(r.cash * years), math.expm1(r.borrow * years)
    if r.funding == 0.0:
        carry = financing(cash, g_cash, g_borrow, xp)
    elif scen.mean_price_cash is None:
        carry = financing(cash, g_cash, g_borrow, xp) + funding_payment(scen.mean_price, r.funding, years) @ w
    else:
        if not np.allclose(scen.compounded_at, (r.cash, r.borrow), rtol=1e-12, atol=1e-15):
            raise ConfigError(
                "market",
                f"the scenarios carry funding compounded at (cash, borrow) rates {scen.compounded_at}, "
                f"the market has ({r.cash}, {r.borrow}); rebuild them with this market",
            )
        # Funding is paid from the cash balance, which is financed at one rate or the other.
        carry = xp.minimum(
            financing(cash, g_cash, g_cash, xp) + funding_payment(scen.mean_price_cash, r.funding, years) @ w,
            financing(cash, g_borrow, g_borrow, xp)
            + funding_payment(scen.mean_price_borrow, r.funding, years) @ w,
        )
    return 1.0 - cost + scen.returns @ w + carry


def scenarios_from_paths(
    log_returns: Any,
    dt: float,
    market: Market | MarketConfig | Mapping | None = None,
    weights: np.ndarray | None = None,
) -> Scenarios:
    r"""One-period scenarios from per-step log-returns ``(S, K, n)`` (or ``(S, K)``).

    R = exp(Σ_t x_t) − 1; Ā = mean over t of A_t = exp(Σ_{u<t} x_u) (start-of-step price
    relative, A_0 = 1). With a ``market`` whose cash or borrow rate is non-zero, also the averages
    compounded at those rates (see :class:`Scenarios`), which make :func:`scenario_wealth` with
    non-zero funding equal to the margin engine's wealth.
    """
    x = np.asarray(log_returns, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[1] < 1:
        raise DataError(f"log_returns: need shape (scenarios, steps, assets), got {x.shape}")
    k = x.shape[1]
    total = x.sum(axis=1)
    start = np.cumsum(x, axis=1)
    start -= x  # exclusive cumulative sum: the log price relative at the start of each step
    np.exp(start, out=start)
    mean_price = start.mean(axis=1)
    extra: dict[str, Any] = {}
    r = market_rates(market)
    if k > 1 and (r.cash != 0.0 or r.borrow != 0.0):
        remaining = (k - 1 - np.arange(k)) * dt
        extra = {
            "mean_price_cash": np.einsum("skn,k->sn", start, np.exp(r.cash * remaining)) / k,
            "mean_price_borrow": np.einsum("skn,k->sn", start, np.exp(r.borrow * remaining)) / k,
            "compounded_at": (r.cash, r.borrow),
        }
    return Scenarios(np.expm1(total), mean_price, k * dt, weights, **extra)


def steps_per_period(problem: Any) -> int:
    """Steps in one period of the problem's policy: its rebalancing interval, or the horizon."""
    every = int(getattr(problem.policy, "rebalance_every", 0))
    steps = problem.cfg.steps
    return steps if every <= 0 else min(every, steps)


def scenarios_from_simulation(
    problem: Any, key: Any, n_scenarios: int, period_steps: int | None = None
) -> Scenarios:
    """Scenarios of one period drawn from a built problem's path model with the engine's numbers.

    Uses :func:`levopt.engine.simulate_returns`, whose path p draws the same noise as path p of
    ``problem.simulate(key)``: with ``period_steps`` equal to the horizon, ``scenario_wealth`` of
    the policy's weights reproduces the simulator's terminal wealth path by path.

    Args:
        problem: a :class:`levopt.runner.Problem` (from :func:`levopt.runner.build`).
        key: PRNG key.
        n_scenarios: S, the number of paths.
        period_steps: steps per period K; default the policy's rebalancing interval, or the whole
            horizon for ``rebalance: never``. For stateful models (GARCH) the period is the first
            K steps from the model's initial state.

    Returns:
        :class:`Scenarios` with ``years = K * dt`` and funding averages compounded at the
        problem's market rates.
    """
    cfg = problem.cfg
    k = steps_per_period(problem) if period_steps is None else int(period_steps)
    if k < 1:
        raise ConfigError("period_steps", f"must be >= 1, got {period_steps}")
    if n_scenarios < 1:
        raise ConfigError("n_scenarios", f"must be >= 1, got {n_scenarios}")
    x = simulate_returns_jit(
        key,
        problem.model,
        paths=n_scenarios,
        steps=k,
        dt=cfg.dt,
        dtype=problem.dtype,
        n_draws=problem.n_draws,
    )
    return scenarios_from_paths(np.asarray(x), cfg.dt, problem.market)


def scenarios_from_returns(
    matrix: Any, kind: Literal["simple", "log"] = "simple", years: float = 1.0 / 365.0, weights: Any = None
) -> Scenarios:
    """Historical (or any given) returns as scenarios: each row of ``matrix`` is one outcome.

    Args:
        matrix: ``(S, n)`` (or ``(S,)``) returns over one period of ``years`` years.
        kind: ``"simple"`` (R) or ``"log"`` (log(1 + R)).
        years: the period's length (e.g. 1/365 for daily rows).
        weights: optional ``(S,)`` probabilities.

    Funding is paid on the opening notional (mean price relative 1), as for a one-step period.
    """
    if kind not in ("simple", "log"):
        raise ConfigError("kind", f"must be 'simple' or 'log', got {kind!r}")
    arr = _matrix(matrix, "returns")
    returns = np.expm1(arr) if kind == "log" else arr
    return Scenarios(returns, np.ones_like(returns), years, weights)
