"""The dcc_garch path model: its reductions to garch, a hand-written recursion, its stationary
moments, the engine's use of each step's correlation, and bad input."""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z, make_config

import levopt
from levopt.errors import ConfigError
from levopt.paths.dcc import DccGarch, DccGarchConfig, correlation_of
from levopt.problem import STREAM_PATHS

MARGINS = {
    "mu": [0.2, 0.1],
    "omega": [2e-5, 3e-5],
    "alpha": [0.08, 0.1],
    "beta": [0.9, 0.85],
    "gamma": [0.02, 0.04],
}
CORR = [[1.0, 0.7], [0.7, 1.0]]
BOOK = {"kind": "constant", "weights": [2.0, 1.5], "rebalance": 1}


def _config(model: dict, policy: dict | None = None, paths: int = 2048) -> dict:
    return make_config(
        paths=paths,
        horizon_days=60,
        model=model,
        policy=policy or BOOK,
        market={"maintenance_margin": 0.05, "fee": 0.0005, "borrow_rate": 0.05, "liquidation_fee": 0.01},
    )


def _outcome(cfg: dict):
    problem = levopt.build(cfg)
    return problem.simulate(problem.key(STREAM_PATHS), paths=cfg["paths"])


@pytest.mark.parametrize("dist", [{"dist": "normal"}, {"dist": "t", "nu": 5.0}])
def test_one_asset_is_garch_number_for_number(dist):
    one = {"mu": 0.2, "omega": 2e-5, "alpha": 0.08, "beta": 0.9, "gamma": 0.02} | dist
    policy = {"kind": "constant", "leverage": 3.0, "rebalance": 1}
    garch = _config({"kind": "garch"} | one, policy)
    dcc = _config({"kind": "dcc_garch", "dcc_alpha": 0.05, "dcc_beta": 0.9} | one, policy)
    assert np.array_equal(levopt.simulate(garch), levopt.simulate(dcc))
    a, b = _outcome(garch), _outcome(dcc)
    for field in ("wealth", "survival", "liq_log_wealth"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("dist", [{"dist": "normal"}, {"dist": "t", "nu": 5.0}])
def test_zero_dynamics_is_constant_correlation(dist):
    """a = b = 0: Q_t = Q̄, so the model is garch with corr = Q̄ (to rounding: the two take the
    Cholesky factor of the same matrix with numpy and with JAX)."""
    garch = _config({"kind": "garch", "corr": CORR} | MARGINS | dist)
    dcc = _config({"kind": "dcc_garch", "corr": CORR, "dcc_alpha": 0.0, "dcc_beta": 0.0} | MARGINS | dist)
    np.testing.assert_allclose(levopt.simulate(garch), levopt.simulate(dcc), rtol=1e-12, atol=1e-15)
    a, b = _outcome(garch), _outcome(dcc)
    for field in ("wealth", "survival", "liq_log_wealth"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-10, atol=1e-12)


def _numpy_dcc(z: np.ndarray, qbar: np.ndarray, a: float, b: float, p: dict, h0: np.ndarray, dt: float):
    """Engle's recursion written out with numpy from standard normal z_t ``(steps, n)``: the
    log-returns and each step's R_t."""
    mu, omega, alpha, beta, gamma = (np.asarray(p[k]) for k in ("mu", "omega", "alpha", "beta", "gamma"))
    q, h = qbar.copy(), h0.copy()
    returns, corrs = [], []
    for zt in z:
        scale = np.diag(1 / np.sqrt(np.diag(q)))
        r = scale @ q @ scale
        eps = np.linalg.cholesky(r) @ zt
        returns.append(mu * dt - h / 2 + np.sqrt(h) * eps)
        corrs.append(r)
        h = omega + (alpha + gamma * (eps < 0)) * h * eps**2 + beta * h
        q = (1 - a - b) * qbar + a * np.outer(eps, eps) + b * q
    return np.array(returns), np.array(corrs)


def test_step_against_a_hand_written_recursion():
    """60 steps of one path from given normal draws: returns and R_t as Engle's recursion (2002)."""
    cfg = DccGarchConfig(kind="dcc_garch", corr=CORR, dcc_alpha=0.06, dcc_beta=0.9, **MARGINS)
    dt = 1 / 365
    model = DccGarch.from_config(cfg, dt, jnp.float64)
    z = np.random.default_rng(3).standard_normal((60, 2)) * 2.0  # large shocks move Q visibly

    def body(state, zt):
        corr = correlation_of(state[1])
        state, out = model.step(state, {"z": zt}, dt)
        return state, (out.log_return, corr, out.corr_chol)

    _, (x, corr, chol) = jax.lax.scan(body, model.init(jnp.float64), jnp.asarray(z))
    h0 = np.asarray(model.unconditional_variance())
    want_x, want_r = _numpy_dcc(z, np.array(CORR), 0.06, 0.9, MARGINS, h0, dt)
    np.testing.assert_allclose(x, want_x, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(corr, want_r, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.einsum("tij,tkj->tik", chol, chol), want_r, rtol=1e-12, atol=1e-15)
    assert np.ptp(want_r[:, 0, 1]) > 0.1  # the correlation did move


def test_stationary_moments():
    """At stationarity: E[Q_ii] = 1, E[Q_ij] (1 − b) = (1 − a − b) q̄_ij + a E[R_ij] (E[ε εᵀ | past]
    = R_t), and each margin's E[h] = ω / (1 − α − β − γ/2); within Z standard errors of the
    per-path time averages (paths independent). E[R_ij] itself sits below q̄_ij: the normalization
    of Q is non-linear (Aielli 2013), which the test reports rather than hides."""
    a, b, dt, paths, steps, burn = 0.05, 0.9, 1 / 365, 2000, 500, 150
    cfg = DccGarchConfig(kind="dcc_garch", corr=CORR, dcc_alpha=a, dcc_beta=b, **MARGINS)
    model = DccGarch.from_config(cfg, dt, jnp.float64)

    def body(state, key):
        noise = model.noise(key, paths, jnp.float64)
        nxt, _ = jax.vmap(lambda s, n: model.step(s, n, dt))(state, noise)
        return nxt, (
            state[0],
            state[1][:, 0, 1],
            state[1][:, 0, 0],
            jax.vmap(correlation_of)(state[1])[:, 0, 1],
        )

    state0 = jax.vmap(lambda _: model.init(jnp.float64))(jnp.arange(paths))
    _, (h, q01, q00, r01) = jax.lax.scan(body, state0, jax.random.split(jax.random.key(7), steps))

    def check(series, target, name):
        per_path = np.asarray(series)[burn:].mean(axis=0)
        se = per_path.std(axis=0, ddof=1) / math.sqrt(paths)
        assert np.all(np.abs(per_path.mean(axis=0) - target) < Z * se), (
            name,
            per_path.mean(axis=0),
            target,
            se,
        )

    check(h, np.asarray(model.unconditional_variance()), "h")
    check(q00, 1.0, "Q_00")
    check(np.asarray(q01) * (1 - b) - a * np.asarray(r01), (1 - a - b) * CORR[0][1], "Q_01 identity")
    per_path = np.asarray(r01)[burn:].mean(axis=0)
    bias, se = float(per_path.mean() - CORR[0][1]), float(per_path.std(ddof=1) / math.sqrt(paths))
    # Below q̄ beyond the Monte Carlo error (measured −0.007, 15 s.e.). No closed form gives its
    # size: the lower bound is a coarse regression guard (three times the measured bias).
    assert -0.02 < bias < -Z * se, (bias, se)


def test_the_bridge_reads_each_steps_correlation():
    """The multi-asset bridge uses the correlation the step reports: replacing the model's constant
    factor changes a garch book's survival but not a dcc_garch book's."""
    policy = {"kind": "constant", "weights": [4.0, -2.0], "rebalance": 1}  # long/short: correlation matters
    out = {}
    for kind, extra in (("garch", {}), ("dcc_garch", {"dcc_alpha": 0.05, "dcc_beta": 0.9})):
        problem = levopt.build(_config({"kind": kind, "corr": CORR} | MARGINS | extra, policy, paths=512))
        key = problem.key(STREAM_PATHS)
        base = problem.simulate(key, paths=512).survival
        identity = eqx.tree_at(lambda m: m.corr_chol, problem.model, jnp.eye(2))
        moved = dataclasses.replace(problem, model=identity).simulate(key, paths=512).survival
        out[kind] = (base, moved)
    assert not np.allclose(*out["garch"])
    assert np.array_equal(*out["dcc_garch"])


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"dcc_alpha": 0.5, "dcc_beta": 0.6}, "dcc_alpha + dcc_beta must be < 1"),
        ({"dcc_alpha": -0.1}, "dcc_alpha"),
        ({"corr": [[1.0, 1.2], [1.2, 1.0]]}, "model.corr"),
        ({"corr": [[1.0, 0.9, 0.9], [0.9, 1.0, -0.9], [0.9, -0.9, 1.0]]}, "model.corr"),
    ],
)
def test_bad_input_names_the_field(change, field):
    model = {"kind": "dcc_garch", "corr": CORR, "dcc_alpha": 0.05, "dcc_beta": 0.9} | MARGINS | change
    if len(model["corr"]) == 3:
        model |= {k: v + [v[-1]] for k, v in MARGINS.items()}
    with pytest.raises((ConfigError, ValueError), match=field.replace("+", r"\+")):
        levopt.build(_config(model, {"kind": "constant", "weights": [1.0] * len(model["corr"])}))
