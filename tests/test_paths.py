"""Path models against closed forms: moments, Merton's option series, GARCH variance, t shocks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z, make_config
from scipy import stats

import levopt
from levopt.paths import Garch
from levopt.problem import STREAM_PATHS


def terminal_log_returns(cfg: dict) -> np.ndarray:
    x = levopt.simulate(cfg)
    return x.sum(axis=1)


def test_gbm_moments():
    mu, sigma, days = 0.3, 0.8, 60
    x = terminal_log_returns(
        make_config(paths=40000, horizon_days=days, model={"kind": "gbm", "mu": mu, "sigma": sigma})
    )
    T, n = days / 365, x.size
    mean, var = x.mean(), x.var(ddof=1)
    assert abs(mean - (mu - sigma**2 / 2) * T) < Z * math.sqrt(sigma**2 * T / n)
    assert abs(var - sigma**2 * T) < Z * sigma**2 * T * math.sqrt(2 / (n - 1))
    growth = np.exp(x)
    assert abs(growth.mean() - math.exp(mu * T)) < Z * growth.std(ddof=1) / math.sqrt(n)


TWO_ASSETS = {"kind": "constant", "weights": [0.5, 0.5]}


def test_gbm_multi_asset_covariance():
    cov = [[0.64, 0.24], [0.24, 0.36]]
    x = levopt.simulate(
        make_config(
            paths=30000,
            horizon_days=10,
            model={"kind": "gbm", "mu": [0.1, 0.0], "cov": cov},
            policy=TWO_ASSETS,
        )
    )
    assert x.shape == (30000, 10, 2)
    T, n = 10 / 365, 30000
    total = x.sum(axis=1)
    rho = np.corrcoef(total.T)[0, 1]
    assert abs(rho - 0.5) < Z * (1 - 0.5**2) / math.sqrt(n)
    for i in range(2):
        assert abs(total[:, i].var(ddof=1) - cov[i][i] * T) < Z * cov[i][i] * T * math.sqrt(2 / n)
    same = levopt.simulate(
        make_config(
            paths=30000,
            horizon_days=10,
            model={"kind": "gbm", "mu": [0.1, 0.0], "sigma": [0.8, 0.6], "corr": [[1, 0.5], [0.5, 1]]},
            policy=TWO_ASSETS,
        )
    )
    np.testing.assert_allclose(same, x, rtol=1e-12, atol=1e-15)


def merton_call(s, k, r, sigma, T, lam, m, v, terms=60):
    """Merton (1976): Poisson-weighted Black–Scholes prices."""
    kappa = math.exp(m + v**2 / 2) - 1
    lam_p = lam * (1 + kappa)
    price = 0.0
    for n in range(terms):
        sig_n = math.sqrt(sigma**2 + n * v**2 / T)
        r_n = r - lam * kappa + n * math.log(1 + kappa) / T
        d1 = (math.log(s / k) + (r_n + sig_n**2 / 2) * T) / (sig_n * math.sqrt(T))
        bs = s * stats.norm.cdf(d1) - k * math.exp(-r_n * T) * stats.norm.cdf(d1 - sig_n * math.sqrt(T))
        price += math.exp(-lam_p * T) * (lam_p * T) ** n / math.factorial(n) * bs
    return price


@pytest.mark.parametrize("strike", [0.8, 1.0, 1.25])
def test_merton_call_matches_series(strike):
    r, sigma, lam, m, v, days = 0.05, 0.6, 4.0, -0.1, 0.15, 90
    model = {"kind": "merton", "mu": r, "sigma": sigma, "lam": lam, "jump_mean": m, "jump_std": v}
    x = terminal_log_returns(make_config(paths=60000, horizon_days=days, model=model))
    T = days / 365
    payoff = math.exp(-r * T) * np.maximum(np.exp(x) - strike, 0.0)
    expected = merton_call(1.0, strike, r, sigma, T, lam, m, v)
    assert abs(payoff.mean() - expected) < Z * payoff.std(ddof=1) / math.sqrt(x.size)
    growth = np.exp(x)
    assert abs(growth.mean() - math.exp(r * T)) < Z * growth.std(ddof=1) / math.sqrt(x.size)


@pytest.mark.parametrize(
    "params",
    [
        {"omega": 2e-5, "alpha": 0.1, "beta": 0.85},
        {"omega": 2e-5, "alpha": 0.05, "beta": 0.85, "gamma": 0.1},
        {"omega": 2e-5, "alpha": 0.1, "beta": 0.85, "dist": "t", "nu": 6.0},
    ],
)
def test_garch_unconditional_variance(params):
    x = levopt.simulate(
        make_config(paths=4000, horizon_days=250, model={"kind": "garch", "mu": 0.0, **params})
    )
    h_bar = params["omega"] / (1 - params["alpha"] - params["beta"] - params.get("gamma", 0.0) / 2)
    # Paths are independent: the per-path mean square is an i.i.d. sample; its mean estimates E[x^2].
    per_path = (x**2).mean(axis=1)
    se = per_path.std(ddof=1) / math.sqrt(per_path.size)
    # E[x^2] = E[h] + E[h^2]/4 (the -h/2 drift term); E[h^2] = E[x^4]/kurtosis(eps) up to terms of
    # order h^3, so the bias is estimated from the same sample.
    nu = params.get("nu")
    kurtosis = 3.0 if nu is None else 3.0 * (nu - 2) / (nu - 4)
    bias = (x**4).mean() / kurtosis / 4
    assert abs(per_path.mean() - h_bar) < Z * se + bias


def test_t_shocks_have_unit_variance_and_t_shape():
    nu = 5.0
    cfg = make_config(
        model={"kind": "garch", "omega": 1e-5, "alpha": 0.1, "beta": 0.8, "dist": "t", "nu": nu}
    )
    model = levopt.build(cfg).model
    noise = model.noise(jax.random.PRNGKey(3), 200_000, jnp.float64)
    eps = np.asarray(jax.vmap(model.standardized_shock)(noise))[:, 0]
    kurtosis = 3 + 6 / (nu - 4)
    assert abs(eps.var() - 1) < Z * math.sqrt((kurtosis - 1) / eps.size)
    scaled = stats.t(df=nu, scale=math.sqrt((nu - 2) / nu))
    assert stats.kstest(eps, scaled.cdf).pvalue > 1e-4


def test_float32_matches_float64_within_mc_error():
    out = {}
    for precision in ("float32", "float64"):
        out[precision] = levopt.evaluate(make_config(precision=precision, paths=30000))
    for name in ("log_growth", "liquidation_probability", "mean_return", "max_drawdown"):
        a, b = out["float32"], out["float64"]
        tol = Z * math.hypot(a["stderr"][name], b["stderr"][name])
        assert abs(a["metrics"][name] - b["metrics"][name]) < tol, name


def test_garch_starts_at_h0_when_given():
    model = levopt.build(
        make_config(model={"kind": "garch", "omega": 1e-5, "alpha": 0.1, "beta": 0.8, "h0": 4e-4})
    ).model
    assert isinstance(model, Garch)
    np.testing.assert_allclose(np.asarray(model.init(jnp.float64)), [4e-4])


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "gbm", "mu": 0.2, "sigma": 0.8},
        {"kind": "garch", "mu": 0.1, "omega": 2e-5, "alpha": 0.08, "beta": 0.9, "gamma": 0.02},
    ],
)
def test_float32_matches_float64_path_by_path_on_the_same_noise(model):
    """Reference: the float64 run on the same noise. Each step adds a few float32 roundings to
    log-wealth (|δ| <= c·eps32 with c ~ 8 operations), so after n steps the terminal log-wealth
    agrees to 8·n·eps32 per path; an error in the float32 path (a lost term, a wrong cast) is far
    larger."""
    base = make_config(
        paths=512,
        horizon_days=60,
        model=model,
        policy={"kind": "constant", "leverage": 2.0, "rebalance": 1},
        market={"maintenance_margin": 0.0, "borrow_rate": 0.05, "cash_rate": 0.02, "fee": 0.0005},
    )
    p64 = levopt.build(base | {"precision": "float64"})
    p32 = levopt.build(base | {"precision": "float32"})
    key = p64.key(STREAM_PATHS)
    noise64 = p64.draw_noise(key, 512)
    noise32 = jax.tree.map(
        lambda a: a.astype(np.float32) if np.issubdtype(a.dtype, np.floating) else a, noise64
    )
    w64 = np.asarray(p64.simulate(key, noise=noise64, paths=512).wealth)
    w32 = np.asarray(p32.simulate(key, noise=noise32, paths=512).wealth)
    assert w32.dtype == np.float32
    bound = 8 * p64.cfg.steps * np.finfo(np.float32).eps
    np.testing.assert_array_less(np.abs(np.log(w32.astype(float)) - np.log(w64)), bound)
