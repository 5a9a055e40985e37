"""State-dependent policies replayed on recorded engine paths.

The engine's per-step leverage records (``simulate_chunk(..., record=True)``) are compared with the
policies' rules recomputed outside the engine from the same paths' log-returns
(``simulate_returns`` draws the same random numbers): EWMA estimates by ``pandas.Series.ewm`` and
the leverage rules written out in numpy. Markets have no fees, so the recorded gross leverage after
a rebalance is exactly |target|, and equal cash and borrow rates, so the signed notional can be read
back from the change in equity.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import make_config

import levopt
from levopt.engine import BLOCK, simulate_chunk, simulate_returns
from levopt.paths import Garch
from levopt.problem import STREAM_PATHS

RATE = 0.05
MARKET = {
    "borrow_rate": RATE,
    "cash_rate": RATE,
    "fee": 0.0,
    "maintenance_margin": 0.0,
    "liquidation_fee": 0.0,
}
MODELS = {
    "gbm": {"kind": "gbm", "mu": 0.4, "sigma": 0.8},
    # Volatility clustering and fat tails move the EWMA further from its starting value.
    "garch_t": {
        "kind": "garch",
        "mu": 0.3,
        "omega": 4.9e-5,
        "alpha": 0.10,
        "beta": 0.85,
        "dist": "t",
        "nu": 5.0,
    },
}
RTOL = 1e-10
"""float64 recursions in two implementations differ by a few ulp per step; 1e-10 leaves room for
the ~100-step accumulation and nothing else."""


def recorded(cfg: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, object]:
    """Equity and gross leverage ``(steps, paths)`` after each step's rebalance, the same paths'
    log-returns ``(paths, steps)``, and the built problem, for the paths of one block that were
    never liquidated (a liquidation stops the rebalancing that the checks replay)."""
    problem = levopt.build(cfg)
    key = problem.key(STREAM_PATHS)
    outcome, traj = jax.jit(
        lambda k: simulate_chunk(
            k,
            jnp.zeros((), jnp.int32),
            problem.model,
            problem.policy,
            problem.market,
            n_blocks=1,
            steps=problem.cfg.steps,
            dt=problem.cfg.dt,
            dtype=problem.dtype,
            ruin_floor=problem.cfg.ruin_floor,
            record=True,
        )
    )(key)
    alive = ~np.asarray(outcome.liquidated)
    assert alive.mean() > 0.9
    x = simulate_returns(
        key, problem.model, paths=BLOCK, steps=problem.cfg.steps, dt=problem.cfg.dt, dtype=problem.dtype
    )
    equity, lev = np.asarray(traj.equity)[:, alive], np.asarray(traj.leverage)[:, alive]
    return equity, lev, np.asarray(x)[alive, :, 0], problem


def initial_state(problem) -> tuple[float, float]:
    """The model's annualized volatility and drift at t = 0 (what the policies start from)."""
    model = problem.model
    if isinstance(model, Garch):
        var = float(model.h0[0]) / problem.cfg.dt
    else:
        var = float(model.sigma[0]) ** 2
    return var, float(model.mu[0])


def pandas_ewma(values: np.ndarray, start: float, decay: float) -> np.ndarray:
    """EWMA after each observation (reference: pandas, adjust=False, seeded by prepending ``start``)."""
    series = pd.Series(np.concatenate([[start], values]))
    return series.ewm(alpha=1.0 - decay, adjust=False).mean().to_numpy()[1:]


def signed_leverage(equity: np.ndarray, x: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Net leverage held over steps 1..T-1, read back from equity (hand-written accounting).

    With fees 0 and cash rate = borrow rate = r, W' = W + N (e^x - 1) + (W - N) rho with
    rho = expm1(r dt), so N = (W' - W (1 + rho)) / (e^x - 1 - rho). Also returns the denominator,
    which sets the rounding error of the reconstruction.
    """
    rho = np.expm1(RATE * dt)
    w, w_next = equity[:-1], equity[1:]
    den = np.expm1(x[1:]) - rho
    return (w_next - w * (1 + rho)) / den / w, den


@pytest.mark.parametrize("model", list(MODELS))
def test_vol_target_ewma_matches_pandas(model):
    target_vol, cap, half_life = 0.8, 1.5, 2.0
    cfg = make_config(
        paths=BLOCK,
        horizon_days=120,
        model=MODELS[model],
        market=MARKET,
        policy={
            "kind": "vol_target",
            "target_vol": target_vol,
            "max_leverage": cap,
            "estimator": "ewma",
            "half_life_days": half_life,
            "rebalance": 1,
        },
    )
    equity, lev, x, problem = recorded(cfg)
    dt = problem.cfg.dt
    # Half-life h days: the weight on the past halves after h x steps_per_day steps (closed form).
    decay = 0.5 ** (1.0 / (half_life * cfg["steps_per_day"]))
    assert problem.policy.decay == pytest.approx(decay, rel=1e-15)
    var0, _ = initial_state(problem)
    expected = np.empty_like(lev)
    for p in range(x.shape[0]):
        var = pandas_ewma(x[p] ** 2 / dt, var0, decay)
        expected[:, p] = np.minimum(target_vol / np.sqrt(var), cap)
    # Step t observes its return, then trades to the next target; the last step has no trade.
    np.testing.assert_allclose(lev[:-1], expected[:-1], rtol=RTOL, atol=0)
    # Both branches of the min are exercised.
    capped = expected[:-1] == cap
    assert 0.05 < capped.mean() < 0.95
    # The position is long: equity moves with the return times the target.
    held, den = signed_leverage(equity, x.T, dt)
    ok = np.abs(den) > 1e-4
    err = 1e3 * np.finfo(float).eps / np.abs(den[ok])
    assert np.all(np.abs(held[ok] - expected[:-1][ok]) < err + RTOL * np.abs(expected[:-1][ok]))


@pytest.mark.parametrize("model", list(MODELS))
def test_fractional_kelly_ewma_matches_pandas(model):
    fraction, cap, half_life = 0.5, 3.0, 5.0
    cfg = make_config(
        paths=BLOCK,
        horizon_days=120,
        model=MODELS[model],
        market=MARKET,
        policy={
            "kind": "fractional_kelly",
            "fraction": fraction,
            "max_leverage": cap,
            "half_life_days": half_life,
            "rebalance": 1,
        },
    )
    equity, lev, x, problem = recorded(cfg)
    dt = problem.cfg.dt
    decay = 0.5 ** (1.0 / (half_life * cfg["steps_per_day"]))
    var0, mu0 = initial_state(problem)
    expected = np.empty_like(lev)
    for p in range(x.shape[0]):
        var = pandas_ewma(x[p] ** 2 / dt, var0, decay)
        # The drift EWMA tracks the log-return drift, which starts at mu - sigma^2 / 2.
        drift = pandas_ewma(x[p] / dt, mu0 - var0 / 2, decay)
        # Kelly in arithmetic terms: (mu_hat - r) / sigma_hat^2 with mu_hat = log drift + sigma^2/2.
        expected[:, p] = np.clip(fraction * (drift + var / 2 - RATE) / var, -cap, cap)
    want = expected[:-1]
    np.testing.assert_allclose(lev[:-1], np.abs(want), rtol=RTOL, atol=0)
    # Estimates move enough to visit both caps and the interior.
    assert np.any(want == cap) and np.any(want == -cap) and np.any(np.abs(want) < cap)
    # Signs: a short target holds a short position.
    held, den = signed_leverage(equity, x.T, dt)
    ok = np.abs(den) > 1e-4
    err = 1e3 * np.finfo(float).eps / np.abs(den[ok])
    assert np.all(np.abs(held[ok] - want[ok]) < err + RTOL * np.abs(want[ok]))


def test_cppi_leverage_hits_its_cap_exactly():
    multiplier, floor, cap = 10.0, 0.8, 1.5
    cfg = make_config(
        paths=BLOCK,
        horizon_days=180,
        model=MODELS["gbm"],
        market=MARKET,
        policy={
            "kind": "cppi",
            "multiplier": multiplier,
            "floor": floor,
            "max_leverage": cap,
            "rebalance": 1,
        },
    )
    equity, lev, _, _ = recorded(cfg)
    w, got = equity[:-1], lev[:-1]
    # Black & Perold: exposure m (W - F) with F = floor x W_0 (W_0 = 1), capped at max_leverage x W.
    uncapped = multiplier * np.maximum(w - floor, 0.0) / w
    binds = uncapped > cap
    assert 0.05 < binds.mean() < 0.95
    # The capped leverage is the cap itself, to rounding of notional / equity.
    np.testing.assert_allclose(got[binds], cap, rtol=4 * np.finfo(float).eps, atol=0)
    np.testing.assert_allclose(got[~binds], uncapped[~binds], rtol=RTOL, atol=1e-14)
