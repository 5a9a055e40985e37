"""Policies and the bootstrap model against closed forms and their defining rules."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from conftest import Z, make_config
from test_engine import kelly_discrete

import levopt
from levopt.engine import simulate_chunk
from levopt.problem import STREAM_PATHS


def growth(cfg: dict) -> tuple[float, float]:
    res = levopt.evaluate(cfg)
    return res["metrics"]["log_growth"], res["stderr"]["log_growth"]


GBM = {"kind": "gbm", "mu": 0.4, "sigma": 0.8}
MARKET = {"borrow_rate": 0.05, "cash_rate": 0.05, "maintenance_margin": 0.0}


@pytest.mark.parametrize(
    "policy,leverage",
    [
        ({"kind": "vol_target", "target_vol": 0.4, "max_leverage": 5.0, "estimator": "model"}, 0.5),
        ({"kind": "vol_target", "target_vol": 2.0, "max_leverage": 1.5, "estimator": "model"}, 1.5),
        # A half-life far beyond the horizon keeps the EWMA at its prior (the model's values).
        ({"kind": "fractional_kelly", "fraction": 0.5, "half_life_days": 1e9}, 0.5 * (0.4 - 0.05) / 0.64),
    ],
)
def test_policies_reduce_to_constant_leverage_under_gbm(policy, leverage):
    cfg = make_config(paths=8000, horizon_days=365, model=GBM, market=MARKET, policy=policy)
    got, se = growth(cfg)
    assert abs(got - kelly_discrete(leverage, 0.4, 0.8, 0.05, 1 / 365)) < Z * se


def test_cppi_keeps_equity_near_its_floor():
    floor = 0.8
    cfg = make_config(
        paths=2048,
        horizon_days=180,
        model=GBM,
        market=MARKET,
        policy={"kind": "cppi", "multiplier": 3.0, "floor": floor, "max_leverage": 5.0, "rebalance": 1},
    )
    problem = levopt.build(cfg)
    _, traj = jax.jit(
        lambda k: simulate_chunk(
            k,
            jax.numpy.zeros((), jax.numpy.int32),
            problem.model,
            problem.policy,
            problem.market,
            n_blocks=8,
            steps=problem.cfg.steps,
            dt=problem.cfg.dt,
            dtype=problem.dtype,
            ruin_floor=1e-6,
            record=True,
        )
    )(problem.key(STREAM_PATHS))
    equity = np.asarray(traj.equity)
    # Exposure 3 x cushion: a daily move of -d cuts the cushion by 3d, so the floor is breached only
    # by a one-day fall of a third of the position (about 7 daily sigmas at 80%/yr).
    assert equity.min() >= floor
    lev = np.asarray(traj.leverage)
    cushion = (equity - floor) / equity
    np.testing.assert_allclose(lev[:-1], np.clip(3 * cushion[:-1], 0, 5), atol=1e-9)


def test_bootstrap_resamples_rows_in_blocks(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.standard_t(4, size=(500, 2)) * 0.02
    path = tmp_path / "returns.csv"
    np.savetxt(path, data, delimiter=",", header="a,b", comments="")
    block = 8.0
    cfg = make_config(
        paths=4000,
        horizon_days=50,
        model={"kind": "bootstrap", "data": str(path), "returns": "log", "block": block},
        policy={"kind": "constant", "weights": [0.5, 0.5]},
    )
    x = levopt.simulate(cfg)
    assert x.shape == (4000, 50, 2)
    rows = {tuple(np.round(r, 12)) for r in data}
    assert all(tuple(np.round(r, 12)) in rows for r in x[:50].reshape(-1, 2))
    # Every simulated step is a data row: the per-step mean matches the data mean within MC error.
    flat = x[:, :, 0].reshape(-1)
    per_path = x[:, :, 0].mean(axis=1)
    assert abs(flat.mean() - data[:, 0].mean()) < Z * per_path.std(ddof=1) / math.sqrt(per_path.size)
    # Consecutive steps continue a block (the next row) with probability 1 - 1/block, plus a restart
    # that happens to land on the next row; each step decides afresh, so the indicators are i.i.d.
    index = {tuple(np.round(r, 12)): i for i, r in enumerate(data)}
    idx = np.array([[index[tuple(np.round(r, 12))] for r in path_rows] for path_rows in x[:400]])
    follows = (np.diff(idx, axis=1) % len(data)) == 1
    p = 1 - 1 / block + 1 / block / len(data)
    assert abs(follows.mean() - p) < Z * math.sqrt(p * (1 - p) / follows.size)


@pytest.mark.slow  # an optimization study (~25 s)
def test_optimizing_vol_target_finds_the_kelly_volatility():
    """With the model's volatility, leverage = target_vol / sigma: the optimal target is sigma f*."""
    from scipy import optimize as sopt

    paths, mu, sigma, r = 4000, 0.4, 0.8, 0.05
    cfg = make_config(
        paths=paths,
        horizon_days=365,
        model=GBM,
        market=MARKET,
        policy={
            "kind": "vol_target",
            "target_vol": {"init": 0.2, "min": 0.05, "max": 2.0},
            "max_leverage": 10.0,
            "estimator": "model",
        },
        objective={"maximize": "log_growth"},
        optimizer={"method": "optax", "replicates": 1, "steps": 200, "paths": paths},
    )
    res = levopt.run(cfg, profiles=False)
    f_star = sopt.minimize_scalar(
        lambda f: -kelly_discrete(f, mu, sigma, r, 1 / 365), bounds=(0, 3), method="bounded"
    ).x
    # The argmax of the sample growth in leverage has sd 1/(sigma sqrt(N T)); in target_vol, sigma times that.
    se = sigma / (sigma * math.sqrt(paths))
    assert abs(res["policy"]["target_vol"] - sigma * f_star) < Z * se
