"""The JAX margin engine against an independent numpy implementation of the same accounting.

``benchmarks/numpy_engine.py`` re-implements, with numpy and a loop over steps, the single-asset
engine (financing, funding, fees, maintenance margin, liquidation at the level, Brownian-bridge
survival and the liquidation-branch accumulators, drawdown). Driven by exactly the engine's random
numbers (path p at step t uses row p % BLOCK of ``model.noise(fold_in(fold_in(key, p // BLOCK), t))``),
the two must agree path by path to 1e-9 in float64. The reference itself is checked against closed
forms (first-passage probability of GBM, equity left at a liquidation).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z
from scipy import stats

import levopt
from levopt.engine import BLOCK, simulate_returns

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "numpy_engine.py"
_spec = importlib.util.spec_from_file_location("numpy_engine", _PATH)
ne = importlib.util.module_from_spec(_spec)
sys.modules["numpy_engine"] = ne
_spec.loader.exec_module(ne)

PATHS = 300  # with chunk_size 256: two chunks, the second one padded
STEPS = 120
COSTS = {
    "borrow_rate": 0.08,
    "cash_rate": 0.03,
    "funding_rate": 0.10,
    "fee": 0.0005,
    "slippage": 0.0002,
    "maintenance_margin": 0.005,
    "liquidation_fee": 0.005,
}
NO_COSTS = {
    "borrow_rate": 0.0,
    "cash_rate": 0.0,
    "funding_rate": 0.0,
    "fee": 0.0,
    "maintenance_margin": 0.005,
    "liquidation_fee": 0.0,
}
GARCH = {"mu": 0.2, "omega": 3.8e-5, "alpha": 0.12, "beta": 0.85}

# name: (model config, policy config, market, discrete liquidations expected: True / False / None = either)
CASES = {
    "gbm_static_5x": (
        {"kind": "gbm", "mu": 0.1, "sigma": 0.8},
        {"leverage": 5.0, "rebalance": "never"},
        NO_COSTS,
        True,
    ),
    "gbm_static_5x_costs": (
        {"kind": "gbm", "mu": 0.1, "sigma": 0.8},
        {"leverage": 5.0, "rebalance": "never"},
        COSTS,
        True,
    ),
    "gbm_daily_3x_costs": (
        {"kind": "gbm", "mu": 0.1, "sigma": 0.8},
        {"leverage": 3.0, "rebalance": 1},
        COSTS,
        None,
    ),
    "gbm_weekly_3x_costs": (
        {"kind": "gbm", "mu": 0.1, "sigma": 1.2},
        {"leverage": 3.0, "rebalance": 7},
        COSTS,
        True,
    ),
    "gbm_short_2x_costs": (
        {"kind": "gbm", "mu": 0.1, "sigma": 0.8},
        {"weights": [-2.0], "rebalance": "never"},
        COSTS,
        True,
    ),
    "gbm_half_in_cash": (
        {"kind": "gbm", "mu": 0.1, "sigma": 0.8},
        {"leverage": 0.5, "rebalance": 3},
        COSTS,
        False,
    ),
    "garch_daily_3x_costs": (
        {"kind": "garch", "gamma": 0.03, **GARCH},
        {"leverage": 3.0, "rebalance": 1},
        COSTS,
        None,
    ),
    "garch_t_5step_4x_costs": (
        {"kind": "garch", "dist": "t", "nu": 4.0, **GARCH},
        {"leverage": 4.0, "rebalance": 5},
        COSTS,
        True,
    ),
}


def config(model: dict, policy: dict, market: dict, **top) -> dict:
    return {
        "seed": 7,
        "paths": PATHS,
        "horizon_days": STEPS,
        "steps_per_day": 1,
        "precision": "float64",
        "chunk_size": 256,
        "model": model,
        "market": market,
        "policy": {"kind": "constant", **policy},
        **top,
    }


def numpy_model(model: dict) -> ne.GBM | ne.Garch:
    if model["kind"] == "gbm":
        return ne.GBM(model["mu"], model["sigma"])
    return ne.Garch(
        model["mu"], model["omega"], model["alpha"], model["beta"], model.get("gamma", 0.0), model.get("nu")
    )


def engine_noise(
    model, key: jax.Array, paths: int, steps: int, dtype
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The engine's random numbers as ``(paths, steps)`` arrays: z, or (t, 1) for Student-t GARCH.

    Path p at step t is row p % BLOCK of ``model.noise(fold_in(fold_in(key, p // BLOCK), t), BLOCK)``.
    """
    n_blocks = math.ceil(paths / BLOCK)

    def one_step(t):
        return jax.vmap(
            lambda b: model.noise(jax.random.fold_in(jax.random.fold_in(key, b), t), BLOCK, dtype)
        )(jnp.arange(n_blocks))

    noise = jax.jit(jax.vmap(one_step))(jnp.arange(steps))
    flat = jax.tree.map(lambda a: np.asarray(a).reshape(steps, n_blocks * BLOCK, -1)[..., 0].T[:paths], noise)
    if isinstance(flat, dict) and "exponential" in flat:
        # Student-t: T = cos(theta) sqrt(nu expm1(2E / nu)), fed to the reference as z with w = 1.
        nu = float(model.nu)
        t = flat["direction"] * np.sqrt(nu * np.expm1(2 * flat["exponential"] / nu))
        return t, np.ones_like(t)
    if isinstance(flat, dict):
        return flat["z"]
    return flat


def numpy_returns(model: ne.GBM | ne.Garch, noise, dt: float) -> np.ndarray:
    """Log-returns implied by the noise (the path models' transitions, written out in numpy)."""
    z, w = noise if isinstance(noise, tuple) else (noise, None)
    if isinstance(model, ne.GBM):
        return (model.mu - 0.5 * model.sigma**2) * dt + model.sigma * math.sqrt(dt) * z
    eps = z if w is None else z * np.sqrt((model.nu - 2) / model.nu / w)
    h = np.full(z.shape[0], model.initial_variance)
    x = np.empty_like(z)
    for t in range(z.shape[1]):
        x[:, t] = model.mu * dt - 0.5 * h + np.sqrt(h) * eps[:, t]
        h = model.omega + (model.alpha + model.gamma * (eps[:, t] < 0)) * h * eps[:, t] ** 2 + model.beta * h
    return x


@pytest.mark.parametrize("name", list(CASES))
def test_engine_matches_numpy_reference(name):
    model_cfg, policy_cfg, market, expect_liquidations = CASES[name]
    problem = levopt.build(config(model_cfg, policy_cfg, market))
    cfg = problem.cfg
    key = problem.key(0)
    engine = jax.jit(problem.simulate)(key)

    noise = engine_noise(problem.model, key, PATHS, STEPS, jnp.float64)
    model = numpy_model(model_cfg)
    # The reproduced noise is the engine's: its returns are simulate_returns'.
    x_engine = np.asarray(
        simulate_returns(key, problem.model, paths=PATHS, steps=STEPS, dt=cfg.dt, dtype=jnp.float64)
    )[..., 0]
    np.testing.assert_allclose(numpy_returns(model, noise, cfg.dt), x_engine, rtol=0, atol=1e-12)

    lev = policy_cfg.get("leverage", (policy_cfg.get("weights") or [None])[0])
    rebalance = 0 if policy_cfg["rebalance"] == "never" else policy_cfg["rebalance"]
    ref = ne.simulate(
        model,
        lev,
        ne.Market(**market),
        paths=PATHS,
        steps=STEPS,
        dt=cfg.dt,
        noise=noise,
        rebalance_every=rebalance,
        dtype=np.float64,
        ruin_floor=cfg.ruin_floor,
    )
    for field in ("liquidated", "liquidation_step"):
        np.testing.assert_array_equal(np.asarray(getattr(engine, field)), getattr(ref, field), err_msg=field)
    for field in ("wealth", "max_drawdown", "survival", "liq_log_wealth", "liq_wealth", "liq_drawdown"):
        np.testing.assert_allclose(
            np.asarray(getattr(engine, field)), getattr(ref, field), rtol=0, atol=1e-11, err_msg=field
        )
    # The comparison exercises what it claims to: liquidations and partial bridge weights.
    if expect_liquidations is not None:
        assert ref.liquidated.any() == expect_liquidations
    if expect_liquidations:
        assert np.any((ref.survival > 0) & (ref.survival < 1))


def test_numpy_reference_float32_close_to_float64():
    model, lev, market = ne.GBM(0.1, 0.8), 3.0, ne.Market(**COSTS)
    z = np.random.default_rng(1).standard_normal((2000, STEPS))
    out = {
        dt: ne.simulate(
            model,
            lev,
            market,
            paths=2000,
            steps=STEPS,
            dt=1 / 365,
            noise=z.astype(dt),
            rebalance_every=1,
            dtype=dt,
        )
        for dt in (np.float32, np.float64)
    }
    assert out[np.float32].wealth.dtype == np.float32
    np.testing.assert_allclose(out[np.float32].wealth, out[np.float64].wealth, rtol=1e-4)
    np.testing.assert_allclose(out[np.float32].survival, out[np.float64].survival, atol=1e-4)


def test_numpy_reference_against_closed_forms():
    """Static long, no costs: bridge-weighted liquidation probability = GBM first passage (in
    standard errors), and a liquidated account keeps mm x notional at the level, mm (L-1)/(1-mm)."""
    mu, sigma, lev, mm, days, n = 0.1, 0.8, 5.0, 0.005, 90, 20000
    dt, T = 1 / 365, days / 365
    out = ne.simulate(
        ne.GBM(mu, sigma),
        lev,
        ne.Market(maintenance_margin=mm),
        paths=n,
        steps=days,
        dt=dt,
        noise=ne.numpy_noise(ne.GBM(mu, sigma), n, np.float64, seed=3),
    )
    q = 1.0 - out.survival
    b = math.log((lev - 1) / (lev * (1 - mm)))
    nu = mu - sigma**2 / 2
    s = sigma * math.sqrt(T)
    exact = stats.norm.cdf((b - nu * T) / s) + math.exp(2 * nu * b / sigma**2) * stats.norm.cdf(
        (b + nu * T) / s
    )
    assert abs(q.mean() - exact) < Z * q.std(ddof=1) / math.sqrt(n)
    # Step checks see fewer liquidations than continuous monitoring.
    assert out.liquidated.mean() < q.mean()
    assert out.liquidated.any()
    np.testing.assert_allclose(out.wealth[out.liquidated], mm * (lev - 1) / (1 - mm), rtol=1e-12)
    # Liquidation-branch wealth given liquidation is the same constant (no fee, no interest).
    np.testing.assert_allclose(out.liq_wealth, q * mm * (lev - 1) / (1 - mm), rtol=1e-9, atol=1e-15)


# 52 segments between 1x and 5x. (Kept at a mean of ~3x: `config.check_opening` adds up the
# segments of a one-asset schedule as if they were one gross position.)
SCHEDULE = 1.0 + 4.0 * np.sin(np.linspace(0.0, 3.0, 52)) ** 2


@pytest.mark.parametrize(
    ("model_cfg", "rebalance"),
    [({"kind": "gbm", "mu": 0.1, "sigma": 1.2}, 3), ({"kind": "garch", "dist": "t", "nu": 4.0, **GARCH}, 1)],
    ids=["gbm_every_3", "garch_t_daily"],
)
def test_engine_matches_numpy_reference_with_52_segment_schedule(model_cfg, rebalance):
    """A piecewise-constant schedule (``levopt.policies.Schedule``) against the reference driven by
    its per-step targets (segment k = floor(t * 52 / steps)), path by path to 1e-9."""
    cfg_dict = config(model_cfg, {}, COSTS)
    cfg_dict["policy"] = {
        "kind": "schedule",
        "segments": 52,
        "leverage": SCHEDULE.tolist(),
        "rebalance": rebalance,
    }
    problem = levopt.build(cfg_dict)
    key = problem.key(0)
    engine = jax.jit(problem.simulate)(key)

    noise = engine_noise(problem.model, key, PATHS, STEPS, jnp.float64)
    targets = ne.schedule_targets(SCHEDULE, STEPS)
    assert targets.shape == (STEPS,) and targets[0] == SCHEDULE[0] and targets[-1] == SCHEDULE[-1]
    ref = ne.simulate(
        numpy_model(model_cfg),
        targets,
        ne.Market(**COSTS),
        paths=PATHS,
        steps=STEPS,
        dt=problem.cfg.dt,
        noise=noise,
        rebalance_every=rebalance,
        dtype=np.float64,
        ruin_floor=problem.cfg.ruin_floor,
    )
    for field in ("liquidated", "liquidation_step"):
        np.testing.assert_array_equal(np.asarray(getattr(engine, field)), getattr(ref, field), err_msg=field)
    for field in ("wealth", "max_drawdown", "survival", "liq_log_wealth", "liq_wealth", "liq_drawdown"):
        np.testing.assert_allclose(
            np.asarray(getattr(engine, field)), getattr(ref, field), rtol=0, atol=1e-11, err_msg=field
        )
    assert ref.liquidated.any() and np.any((ref.survival > 0) & (ref.survival < 1))
    # The schedule matters: a constant policy at the mean target gives other numbers.
    const = ne.simulate(
        numpy_model(model_cfg),
        float(SCHEDULE.mean()),
        ne.Market(**COSTS),
        paths=PATHS,
        steps=STEPS,
        dt=problem.cfg.dt,
        noise=noise,
        rebalance_every=rebalance,
    )
    assert np.max(np.abs(const.wealth - ref.wealth)) > 1e-3
