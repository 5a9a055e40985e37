r"""A vectorized numpy reference of ``levopt.engine.simulate_outcome`` for one asset.

Independent of levopt (imports numpy only): it re-implements, from the accounting written in the
engine's module docstring, the same per-path computation for a single-asset GBM or GARCH(1,1)/GJR
(normal or Student-t shocks) under a constant-leverage policy, static (``rebalance_every=0``) or
traded back to the target every ``k`` steps. It loops over steps and holds arrays over paths.

Accounting of one path (W_0 = 1), per step of length dt, with notional N and equity W:

* cash C = W - N earns ``cash_rate`` when positive, pays ``borrow_rate`` when negative, compounded
  exactly within the step: financing = min(C expm1(r_c dt), C expm1(r_b dt));
  funding = -f dt N (longs pay when f > 0);
* N_end = N e^x, W_end = W + N_end - N + financing + funding;
* discrete check: W_end <= mm |N_end| liquidates (the simulated path) at the maintenance level;
* continuous monitoring: the liquidation price ratio u* solves W + cost + N(u - 1) = mm |N| u,
  i.e. u* = (N - W - cost) / (N (1 - mm sign N)); with barrier b = log u* and the step's
  conditional variance v, a Brownian bridge from 0 to x touches b with probability
  exp(-2 |b| |x - b| / v) (1 if x is beyond b). Survival s <- s (1 - p); the liquidation branch
  collects p s x (equity at the level (mm - lf) |N| u*, floored at 0, grown at the cash rate to T);
* a rebalance at step end (t + 1 a multiple of k, before the horizon) trades N to L W and pays
  (fee + slippage) |traded|.

The leverage L is a constant, or a per-step array of targets (a piecewise-constant schedule, see
:func:`schedule_targets`): the opening trade uses L[0] and the rebalance after step t uses L[t + 1].

Noise is an input: a ``(paths, steps)`` array of standard normals (plus, for Student-t GARCH, the
chi-square mixing variable w = chi2(nu)/nu), or a callback ``t -> z_t`` (or ``t -> (z_t, w_t)``).
That way the reference can be driven by exactly the JAX engine's random numbers (tests) or by
``numpy.random.default_rng`` (benchmarks, see :func:`numpy_noise`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Market:
    """Venue rules (annualized rates, decimals); field names match ``levopt.engine.MarketConfig``."""

    borrow_rate: float = 0.0
    cash_rate: float = 0.0
    funding_rate: float = 0.0
    fee: float = 0.0
    slippage: float = 0.0
    maintenance_margin: float = 0.005
    liquidation_fee: float = 0.0


@dataclass(frozen=True)
class GBM:
    """log S_{t+dt}/S_t = (mu - sigma^2/2) dt + sigma sqrt(dt) z (annualized mu, sigma)."""

    mu: float
    sigma: float


@dataclass(frozen=True)
class Garch:
    """r_t = mu dt - h_t/2 + sqrt(h_t) eps_t; h_{t+1} = omega + (alpha + gamma 1[eps<0]) h eps^2 + beta h.

    ``omega``, ``alpha``, ``beta``, ``gamma`` in per-step variance units; ``nu`` is None for normal
    shocks, else Student-t shocks eps = z sqrt((nu - 2) / nu / w), w = chi2(nu)/nu.
    ``h0`` defaults to the unconditional variance omega / (1 - alpha - beta - gamma/2).
    """

    mu: float
    omega: float
    alpha: float
    beta: float
    gamma: float = 0.0
    nu: float | None = None
    h0: float | None = None

    @property
    def initial_variance(self) -> float:
        if self.h0 is not None:
            return self.h0
        return self.omega / (1.0 - self.alpha - self.beta - self.gamma / 2.0)


class Outcome(NamedTuple):
    """Per-path results, same fields and meaning as ``levopt.engine.Outcome`` (arrays of ``paths``)."""

    wealth: np.ndarray
    liquidated: np.ndarray
    liquidation_step: np.ndarray
    max_drawdown: np.ndarray
    survival: np.ndarray
    liq_log_wealth: np.ndarray
    liq_wealth: np.ndarray
    liq_drawdown: np.ndarray


StepNoise = np.ndarray | tuple[np.ndarray, np.ndarray]
Noise = np.ndarray | tuple[np.ndarray, np.ndarray] | Callable[[int], StepNoise]


def numpy_noise(
    model: GBM | Garch, paths: int, dtype=np.float64, seed: int | None = 0
) -> Callable[[int], StepNoise]:
    """A per-step noise callback drawing from ``numpy.random.default_rng(seed)`` (benchmarks)."""
    rng = np.random.default_rng(seed)
    t_shocks = isinstance(model, Garch) and model.nu is not None

    def draw(t: int) -> StepNoise:
        z = rng.standard_normal(paths, dtype=dtype)
        if not t_shocks:
            return z
        w = rng.standard_gamma(model.nu / 2.0, paths, dtype=dtype)
        w /= model.nu / 2.0  # chi2(nu) / nu
        return z, w

    return draw


def schedule_targets(values, steps: int) -> np.ndarray:
    """Per-step leverage targets ``(steps,)`` of a piecewise-constant schedule of ``len(values)``
    equal segments: step t uses ``values[k]``, k = min(floor(t * segments / steps), segments - 1),
    as ``levopt.policies.Schedule``."""
    values = np.asarray(values, dtype=float).reshape(-1)
    segments = values.shape[0]
    t = np.arange(steps)
    return values[np.minimum(t * segments // steps, segments - 1)]


def _noise_at(noise: Noise, t: int) -> StepNoise:
    if callable(noise):
        return noise(t)
    if isinstance(noise, tuple):
        return noise[0][:, t], noise[1][:, t]
    return noise[:, t]


def simulate(
    model: GBM | Garch,
    leverage: float | np.ndarray,
    market: Market,
    *,
    paths: int,
    steps: int,
    dt: float,
    noise: Noise,
    rebalance_every: int = 0,
    dtype=np.float64,
    ruin_floor: float = 1e-6,
) -> Outcome:
    """Simulate ``paths`` accounts holding ``leverage`` x equity of one asset for ``steps`` steps.

    Args:
        model: :class:`GBM` or :class:`Garch` parameters.
        leverage: target notional / equity (negative: short), or a ``(steps,)`` array of per-step
            targets (e.g. from :func:`schedule_targets`): the opening trade uses ``leverage[0]``,
            the rebalance after step t uses ``leverage[t + 1]``.
        market: venue rules.
        paths, steps, dt: number of paths, of steps, and step length in years.
        noise: ``(paths, steps)`` standard normals, a ``(z, w)`` pair for Student-t GARCH, or a
            callback ``t -> z_t`` / ``t -> (z_t, w_t)`` returning ``(paths,)`` arrays.
        rebalance_every: 0 for open-and-hold, else steps between trades back to ``leverage``.
        dtype: ``np.float64`` or ``np.float32`` (all arithmetic in it).
        ruin_floor: floor on W_T inside the logarithm of the liquidation branch.

    Returns:
        An :class:`Outcome` of ``(paths,)`` arrays.
    """
    f = np.dtype(dtype).type
    mm, lf = f(market.maintenance_margin), f(market.liquidation_fee)
    trade_rate = f(market.fee + market.slippage)
    # Per-step growth of positive / negative cash; funding per unit of net notional.
    cash_growth = f(math.expm1(market.cash_rate * dt))
    borrow_growth = f(math.expm1(market.borrow_rate * dt))
    funding = f(-market.funding_rate * dt)
    lev_arr = np.asarray(leverage, dtype=f)
    if lev_arr.ndim == 0:
        lev_steps = None
        lev = f(lev_arr)
    else:
        if lev_arr.shape != (steps,):
            raise ValueError(
                f"leverage must be a number or a ({steps},) array of targets, got shape {lev_arr.shape}"
            )
        lev_steps = lev_arr
        lev = lev_steps[0]
    tiny = np.finfo(f).tiny
    one, zero = f(1.0), f(0.0)

    # Opening trade at t = 0 (a position liquidated at once stays in cash).
    w0 = one - trade_rate * abs(lev)
    dead0 = bool(w0 <= mm * abs(lev))
    if dead0:
        w0 = max(w0 - lf * abs(lev), zero)
    wealth = np.full(paths, w0, f)
    notional = np.full(paths, zero if dead0 else lev, f)
    alive = np.full(paths, not dead0)
    liq_step = np.full(paths, 0 if dead0 else -1, np.int32)
    peak = np.ones(paths, f)
    max_dd = np.full(paths, max(zero, one - w0), f)
    survival = np.full(paths, zero if dead0 else one, f)
    liq_log = np.full(paths, math.log(max(w0, ruin_floor)) if dead0 else 0.0, f)
    liq_wealth = np.full(paths, w0 if dead0 else zero, f)
    liq_dd = np.full(paths, one - w0 if dead0 else zero, f)

    garch = isinstance(model, Garch)
    if garch:
        h = np.full(paths, model.initial_variance, f)
        t_scale = None if model.nu is None else f(math.sqrt((model.nu - 2.0) / model.nu))
    else:
        step_vol = f(model.sigma * math.sqrt(dt))
        drift = f((model.mu - 0.5 * model.sigma**2) * dt)
        step_var = max(step_vol * step_vol, tiny)
    mu_dt = f(model.mu * dt)

    for t in range(steps):
        shock = _noise_at(noise, t)
        if garch:
            if t_scale is None:
                eps = np.asarray(shock, f)
            else:
                z, w_mix = shock
                eps = z * (t_scale / np.sqrt(w_mix))
            vol = np.sqrt(h)
            x = mu_dt - f(0.5) * h + vol * eps
            var = np.maximum(h, tiny)
            h = model.omega + (model.alpha + model.gamma * (eps < 0)) * h * eps * eps + model.beta * h
            h = h.astype(f, copy=False)
        else:
            x = drift + step_vol * np.asarray(shock, f)
            var = step_var

        # Financing and funding on the start-of-step balances.
        cash = wealth - notional
        cost = np.minimum(cash * cash_growth, cash * borrow_growth) + funding * notional
        n_end = notional * np.exp(x)
        w_end = wealth + (n_end - notional) + cost
        gross = np.abs(notional)
        hit = alive & (w_end <= mm * np.abs(n_end))

        # Continuous monitoring: the liquidation price ratio u* and its log-barrier.
        long = notional > 0
        denom = notional * np.where(long, one - mm, one + mm)
        ratio = (notional - wealth - cost) / np.where(denom != 0, denom, one)
        barrier_on = alive & (gross > 0) & (ratio > 0)
        barrier = np.log(np.where(ratio > 0, ratio, one))
        # A barrier already on the wrong side of the start is crossed at once.
        beyond = (long & ((x <= barrier) | (barrier >= 0))) | (~long & ((x >= barrier) | (barrier <= 0)))
        with np.errstate(over="ignore"):
            p_cross = np.exp(f(-2.0) * np.abs(barrier) * np.abs(x - barrier) / var)
        p_cross = np.where(beyond, one, p_cross)
        p = np.where(hit, one, np.where(barrier_on, p_cross, zero))

        # Liquidation branch: equity at the maintenance level, grown in cash to the horizon.
        gross_at_level = gross * np.where(barrier_on, ratio, one)
        w_liq = np.maximum((mm - lf) * gross_at_level, zero)
        w_liq_T = w_liq * f(math.exp(market.cash_rate * (steps - t - 1) * dt))
        dd_liq = np.maximum(max_dd, one - w_liq / peak)
        weight = survival * p
        liq_log += weight * np.log(np.maximum(w_liq_T, f(ruin_floor)))
        liq_wealth += weight * w_liq_T
        liq_dd += weight * dd_liq
        survival *= one - p

        # The simulated path: liquidated at the level, or carried on (and rebalanced when due).
        wealth = np.where(hit, w_liq, w_end)
        notional = np.where(hit, zero, n_end)
        alive &= ~hit
        liq_step[hit] = t + 1
        if rebalance_every > 0 and (t + 1) % rebalance_every == 0 and t + 1 < steps:
            target = (lev if lev_steps is None else lev_steps[t + 1]) * wealth
            traded = trade_rate * np.abs(target - notional)
            wealth = np.where(alive, wealth - traded, wealth)
            notional = np.where(alive, target, notional)

        peak = np.maximum(peak, wealth)
        max_dd = np.maximum(max_dd, one - wealth / peak)

    return Outcome(
        wealth=wealth,
        liquidated=liq_step >= 0,
        liquidation_step=liq_step,
        max_drawdown=max_dd,
        survival=survival,
        liq_log_wealth=liq_log,
        liq_wealth=liq_wealth,
        liq_drawdown=liq_dd,
    )
