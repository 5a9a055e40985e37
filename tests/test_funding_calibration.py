"""The funding-rate calibration (levopt.calibrate.funding): the simulator against closed-form
moments, recovery of known parameters, an independent OLS reference (numpy's lstsq), Student-t
shocks, the real Binance BTCUSDT history, bad input and the ``levopt calibrate --model funding`` CLI;
for the two-factor model (a slow and a fast AR(1) summed), its likelihood against scipy's
multivariate normal with the model's autocovariance and against the exact AR(1) likelihood, the
simulated autocorrelation against the closed form, recovery, and the real history's lag-24
autocorrelation that the AR(1) misses.

Monte Carlo tolerances are Z = 4 standard errors (conftest.Z). For a posterior the standard error
of a draw-average is its Monte Carlo s.e. sd/√ESS; that the posterior sd is the sampling s.e. of
the estimate is Bernstein–von Mises (the data here are long: T ≥ 1000).
"""

from __future__ import annotations

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, Z, make_config
from scipy.linalg import toeplitz
from scipy.stats import multivariate_normal, norm

from levopt.calibrate.funding import (
    FundingFit,
    fit_funding,
    fit_funding_mle,
    kalman_loglik,
    ppc_statistics,
    simulate_funding,
    two_factor_loglik,
)
from levopt.calibrate.posterior import funding_from_calibration
from levopt.config import load_config
from levopt.data.load import annualized_funding, load_funding
from levopt.errors import ConfigError

TRUTH = {"mean": 1e-4, "phi": 0.9, "vol": 5e-5}
T = 2000
NUTS = {"num_warmup": 300, "num_samples": 300, "num_chains": 2}
BTC_FUNDING = SHARED_DATA / "btcusdt_funding_8h.csv"
PPC_STATS = {"mean", "sd", "acf_1", "acf_24", "frac_positive", "q01", "q99"}

# Two factors, near the BTCUSDT posterior: 79% of the variance in the slow component.
TWO = {"mean": 1e-4, "phi": 0.3, "vol": 1e-4, "slow_phi": 0.98, "slow_vol": 4e-5}
T_TWO = 3000
NUTS_TWO = {"num_warmup": 300, "num_samples": 300, "num_chains": 2}
# Its five correlated parameters give an ESS of ~250 from these 2 x 300 draws, at which split r̂
# fluctuates by about 0.01: the sampler's r̂ > 1.01 warning is expected now and then, so these tests
# assert r̂ < 1.05 and ESS > 100 themselves and let the recovery checks be the evidence.
QUIET_R_HAT = pytest.mark.filterwarnings("ignore:calibration. r_hat:levopt.calibrate.fit.CalibrationWarning")
LOGLIK_ARGS = ("mean", "phi", "vol", "slow_phi", "slow_vol")


def _series(params: dict, n: int, seed: int) -> np.ndarray:
    """n rates of the AR(1) model started at its mean (f_0 = mean)."""
    return np.concatenate([[params["mean"]], simulate_funding(seed, params, n - 1)])


def _ols(f: np.ndarray) -> dict[str, float]:
    """The conditional MLE of a normal AR(1) written out: OLS of f_k on (1, f_{k-1}) (Hamilton 1994, §5.2)."""
    x = np.column_stack([np.ones(f.size - 1), f[:-1]])
    (a, b), *_ = np.linalg.lstsq(x, f[1:], rcond=None)
    rss = np.sum((f[1:] - x @ np.array([a, b])) ** 2)
    return {"mean": a / (1 - b), "phi": b, "vol": math.sqrt(rss / (f.size - 1))}


def _gamma(p: dict, lags: np.ndarray) -> np.ndarray:
    """The two-factor autocovariance γ(h) = v_s² φ_s^h/(1 − φ_s²) + v² φ^h/(1 − φ²)."""
    h = np.asarray(lags, float)
    slow = p["slow_vol"] ** 2 * p["slow_phi"] ** h / (1 - p["slow_phi"] ** 2)
    return slow + p["vol"] ** 2 * p["phi"] ** h / (1 - p["phi"] ** 2)


def _two_factor_series(p: dict, n: int, seed: int) -> np.ndarray:
    """n rates of the two-factor model, both components started from their stationary laws (written
    here, independently of simulate_funding)."""
    rng = np.random.default_rng(seed)
    slow = rng.normal(0.0, p["slow_vol"] / math.sqrt(1 - p["slow_phi"] ** 2))
    fast = rng.normal(0.0, p["vol"] / math.sqrt(1 - p["phi"] ** 2))
    out = np.empty(n)
    for k in range(n):
        if k:
            slow = p["slow_phi"] * slow + p["slow_vol"] * rng.standard_normal()
            fast = p["phi"] * fast + p["vol"] * rng.standard_normal()
        out[k] = p["mean"] + slow + fast
    return out


def _mcse(fit: FundingFit, name: str) -> float:
    s = fit.summary[name]
    return s["sd"] / math.sqrt(s["ess"])


@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    return _series(TRUTH, T, seed=1)


@pytest.fixture(scope="module")
def synthetic_fit(synthetic) -> FundingFit:
    return fit_funding(synthetic, seed=0, **NUTS)


# --- the simulator ------------------------------------------------------------------------------


@pytest.mark.parametrize("df", [None, 6.0])
def test_simulated_moments_match_closed_form(df):
    """E[f_n | f_0] = μ + φⁿ(f_0 − μ) and Var[f_n | f_0] = s²(1 − φ²ⁿ)/(1 − φ²) with s² the shock
    variance (v² for normal shocks, v²ν/(ν − 2) for t_ν): within Z s.e. over d independent paths
    (the variance's s.e. from the sample fourth moment)."""
    d, n, f0 = 40_000, 30, 4e-4
    params = TRUTH | ({"df": df} if df else {})
    x = simulate_funding(7, params, n, f0=f0)
    assert x.shape == (n,)  # scalar parameters: one path
    paths = simulate_funding(7, {k: np.full(d, v) for k, v in params.items()}, n, f0=f0)
    assert paths.shape == (d, n)
    shock_var = TRUTH["vol"] ** 2 * (df / (df - 2) if df else 1.0)
    phi, mu = TRUTH["phi"], TRUTH["mean"]
    last = paths[:, -1]
    mean_exact = mu + phi**n * (f0 - mu)
    var_exact = shock_var * (1 - phi ** (2 * n)) / (1 - phi**2)
    assert abs(last.mean() - mean_exact) <= Z * math.sqrt(var_exact / d)
    dev = last - last.mean()
    var_se = math.sqrt((np.mean(dev**4) - np.mean(dev**2) ** 2) / d)
    assert abs(last.var() - var_exact) <= Z * var_se


def test_simulate_is_deterministic_and_caps():
    a = simulate_funding(3, TRUTH, 500)
    assert np.array_equal(a, simulate_funding(3, TRUTH, 500))
    assert not np.array_equal(a, simulate_funding(4, TRUTH, 500))
    key = jax.random.PRNGKey(3)
    assert np.array_equal(simulate_funding(key, TRUTH, 50), simulate_funding(key, TRUTH, 50))
    capped = simulate_funding(3, TRUTH | {"vol": 1e-3}, 2000, cap=7.5e-4)
    assert np.max(np.abs(capped)) == pytest.approx(7.5e-4) and np.mean(np.abs(capped) == 7.5e-4) > 0.1
    with pytest.raises(ConfigError, match="^params: missing phi"):
        simulate_funding(0, {"mean": 0.0, "vol": 1.0}, 10)
    with pytest.raises(ConfigError, match="^cap:"):
        simulate_funding(0, TRUTH, 10, cap=-1.0)


# --- recovery and an independent reference -------------------------------------------------------


def test_recovers_known_parameters(synthetic_fit):
    """The posterior mean is within Z posterior sd of the truth (plus Z Monte Carlo s.e.), the
    sampler converged, and the draws and summaries carry the contract's names."""
    fit = synthetic_fit
    assert set(fit.draws) == {"mean", "phi", "vol"} and fit.dist == "normal" and fit.n_obs == T
    assert all(v.shape == (NUTS["num_samples"] * NUTS["num_chains"],) for v in fit.draws.values())
    d = fit.diagnostics
    assert d["divergences"] == 0 and d["max_r_hat"] <= 1.01 and d["min_ess"] > 100
    for name, truth in TRUTH.items():
        s = fit.summary[name]
        assert abs(s["mean"] - truth) <= Z * math.hypot(s["sd"], _mcse(fit, name)), (name, s, truth)
    # The posterior sd is the asymptotic s.e. of the conditional MLE (Hamilton 1994, ch. 7–8, at the
    # posterior means): within Z Monte Carlo s.e. of an sd estimate, sd/√(2 ESS), plus 5% for the
    # O(1/√T) terms the asymptotic formulas drop.
    p = fit.point()
    asymptotic = {
        "mean": p["vol"] / ((1 - p["phi"]) * math.sqrt(T - 1)),
        "phi": math.sqrt((1 - p["phi"] ** 2) / (T - 1)),
        "vol": p["vol"] / math.sqrt(2 * (T - 1)),
    }
    for name, se in asymptotic.items():
        s = fit.summary[name]
        assert s["sd"] == pytest.approx(se, rel=Z / math.sqrt(2 * s["ess"]) + 0.05), name
    assert fit.point() == {k: pytest.approx(fit.summary[k]["mean"]) for k in TRUTH}
    assert fit.annualized_mean() == pytest.approx(fit.summary["mean"]["mean"] * 1095)


def test_posterior_and_mle_agree_with_ols(synthetic, synthetic_fit):
    """The conditional MLE equals OLS (to the optimizer's precision, 1e-6 relative); the posterior
    mean is within Z Monte Carlo s.e. + 0.25 posterior sd of it: under weak priors posterior mean −
    MLE = O(1/T), about 0.02 sd at T = 2000, so 0.25 sd leaves room for the skew of φ's posterior."""
    ols = _ols(synthetic)
    mle = fit_funding_mle(synthetic)
    assert set(mle) == {"mean", "phi", "vol"}
    for name, ref in ols.items():
        assert mle[name] == pytest.approx(ref, rel=1e-6), name
        s = synthetic_fit.summary[name]
        assert abs(s["mean"] - ref) <= Z * _mcse(synthetic_fit, name) + 0.25 * s["sd"], (name, s, ref)


def test_ppc_observed_statistics_are_the_data_s(synthetic, synthetic_fit):
    ppc = synthetic_fit.ppc
    assert set(ppc) == PPC_STATS
    d = synthetic - synthetic.mean()
    direct = {
        "mean": synthetic.mean(),
        "sd": synthetic.std(ddof=1),
        "acf_1": np.sum(d[1:] * d[:-1]) / np.sum(d * d),
        "acf_24": np.sum(d[24:] * d[:-24]) / np.sum(d * d),
        "frac_positive": np.mean(synthetic > 0),
        "q01": np.quantile(synthetic, 0.01),
        "q99": np.quantile(synthetic, 0.99),
    }
    for name, value in direct.items():
        s = ppc[name]
        assert s["observed"] == pytest.approx(value, rel=1e-12), name
        assert s["q05"] <= s["q50"] <= s["q95"] and 0 <= s["p_value"] <= 1
    assert ppc_statistics(synthetic[None, :])["acf_24"][0] == pytest.approx(direct["acf_24"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::levopt.calibrate.fit.CalibrationWarning")
def test_interval_coverage():
    """90% credible intervals cover the truth in 90% of repeated datasets (T = 1000 each): with
    n = 100 fits the coverage's binomial s.e. is √(0.9·0.1/100) = 0.03 and the check is
    |coverage − 0.9| ≤ Z s.e. = 0.12, for each parameter. Short chains (300 draws) cross r̂ = 1.01
    in a few fits; those fits count as they are, so the study measures the settings as used."""
    n_fits, covered = 100, dict.fromkeys(TRUTH, 0)
    for i in range(n_fits):
        fit = fit_funding(_series(TRUTH, 1000, seed=1000 + i), seed=i, ppc_draws=0, **NUTS)
        for name, truth in TRUTH.items():
            covered[name] += fit.summary[name]["q05"] <= truth <= fit.summary[name]["q95"]
    se = math.sqrt(0.9 * 0.1 / n_fits)
    for name, count in covered.items():
        assert abs(count / n_fits - 0.9) <= Z * se, (name, count)


# --- Student-t shocks ------------------------------------------------------------------------------


@pytest.mark.slow
def test_student_t_recovers_degrees_of_freedom():
    """On t₄ shocks the posterior of df is within Z sd of 4; on normal shocks the t MLE's 1/df is
    within Z s.e. of 0, the s.e. being 1/√(1.5 T) (the efficient Fisher information of 1/ν at the
    normal limit is 3/2 per observation, with the scale estimated)."""
    truth = TRUTH | {"df": 4.0}
    data = _series(truth, T, seed=2)
    fit = fit_funding(data, dist="student_t", seed=0, ppc_draws=50, **NUTS)
    assert set(fit.draws) == {"mean", "phi", "vol", "df"}
    for name, value in truth.items():
        s = fit.summary[name]
        assert abs(s["mean"] - value) <= Z * math.hypot(s["sd"], _mcse(fit, name)), (name, s)
    mle = fit_funding_mle(data, dist="student_t")
    assert abs(mle["df"] - 4.0) <= Z * fit.summary["df"]["sd"]
    normal_data = _series(TRUTH, T, seed=3)
    assert 1 / fit_funding_mle(normal_data, dist="student_t")["df"] <= Z / math.sqrt(1.5 * (T - 1))


# --- the two-factor model ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_factor_series() -> np.ndarray:
    return _two_factor_series(TWO, T_TWO, seed=11)


@pytest.fixture(scope="module")
def two_factor_fit(two_factor_series) -> FundingFit:
    return fit_funding(two_factor_series, model="two_factor", seed=0, ppc_draws=50, **NUTS_TWO)


@functools.cache
def _grad(loglik):
    """The compiled gradient of a two-factor log-likelihood in its five parameters."""
    return jax.jit(jax.grad(loglik, argnums=(1, 2, 3, 4, 5)))


@pytest.mark.parametrize(
    "params",
    [
        TWO,
        TWO | {"phi": -0.5, "slow_phi": 0.2},  # a negatively correlated fast component
        TWO | {"phi": 0.97, "slow_phi": 0.98},  # two nearly equal components
        TWO | {"slow_phi": 0.9999, "slow_vol": 1e-6},  # a slow level near a unit root
        TWO | {"phi": 0.0, "slow_phi": 0.0},  # white noise: the continuants' root r₋ is 0
    ],
)
def test_two_factor_likelihood_is_the_multivariate_normal(params):
    """The Kalman filter and the tridiagonal form both equal scipy's multivariate normal log-density
    with Σ_ij = γ(|i − j|) on T = 50 rates (to 1e-8; values are of order 400), and their gradients
    agree (the tridiagonal form is what the sampler differentiates)."""
    y = _two_factor_series(params, 50, seed=5)
    sigma = toeplitz(_gamma(params, np.arange(y.size)))
    reference = multivariate_normal(np.full(y.size, params["mean"]), sigma).logpdf(y)
    with jax.enable_x64(True):
        yj, args = jnp.asarray(y), [jnp.asarray(params[k], jnp.float64) for k in LOGLIK_ARGS]
        assert float(kalman_loglik(yj, *args)) == pytest.approx(reference, rel=0, abs=1e-8)
        assert float(two_factor_loglik(yj, *args)) == pytest.approx(reference, rel=0, abs=1e-8)
        kalman_grad = np.array(_grad(kalman_loglik)(yj, *args))
        fast_grad = np.array(_grad(two_factor_loglik)(yj, *args))
    np.testing.assert_allclose(fast_grad, kalman_grad, rtol=1e-7, atol=1e-9 * np.max(np.abs(kalman_grad)))


def test_two_factor_likelihood_long_series_and_float32():
    """At the length of the real history the two forms still agree (1e-9 relative: the closed-form
    determinant's terms ρ^T underflow there), and float32 rates give a float32 value within 1e-5
    relative of float64's."""
    y = _two_factor_series(TWO, 6000, seed=9)
    with jax.enable_x64(True):
        yj, args = jnp.asarray(y), [jnp.asarray(TWO[k], jnp.float64) for k in LOGLIK_ARGS]
        kalman = float(kalman_loglik(yj, *args))
        fast = float(two_factor_loglik(yj, *args))
    assert fast == pytest.approx(kalman, rel=1e-9)
    single = two_factor_loglik(jnp.asarray(y, jnp.float32), *(np.float32(TWO[k]) for k in LOGLIK_ARGS))
    assert single.dtype == jnp.float32 and float(single) == pytest.approx(fast, rel=1e-5)


def test_no_slow_shocks_is_the_exact_ar1_likelihood():
    """With slow_vol = 0 both forms are the exact Gaussian AR(1) likelihood written out (Hamilton
    1994, §5.2): f_0 ~ N(μ, v²/(1 − φ²)), then f_k | f_{k−1} ~ N(μ + φ(f_{k−1} − μ), v²)."""
    f = _series(TRUTH, 50, seed=6)
    mu, phi, vol = TRUTH["mean"], TRUTH["phi"], TRUTH["vol"]
    exact = norm.logpdf(f[0], mu, vol / math.sqrt(1 - phi**2)) + np.sum(
        norm.logpdf(f[1:], mu + phi * (f[:-1] - mu), vol)
    )
    with jax.enable_x64(True):
        for slow_phi in (0.5, 0.99):
            args = (jnp.asarray(f), mu, phi, vol, slow_phi, 0.0)
            assert float(kalman_loglik(*args)) == pytest.approx(exact, rel=0, abs=1e-8), slow_phi
            assert float(two_factor_loglik(*args)) == pytest.approx(exact, rel=0, abs=1e-8), slow_phi


def test_two_factor_simulated_autocorrelation_matches_gamma():
    """ρ(h) = γ(h)/γ(0) at lags 1 and 24 (and γ(0)) from d independent paths after a burn-in of 600
    steps (φ_s^1200 ≈ 3e-11 of the start remains): per path the averages a_i of (f_k − μ)(f_{k+h} − μ)
    and b_i of (f_k − μ)² over L steps; ρ̂ = ā/b̄ with the ratio estimator's s.e.
    sd(a − ρ̂ b)/(b̄√d). An AR(1) with the same ρ(1) = 0.83 has ρ(24) = 0.013, the model 0.48."""
    d, burn, n = 2000, 600, 1000
    paths = simulate_funding(8, {k: np.full(d, v) for k, v in TWO.items()}, burn + n + 24)
    x = paths[:, burn:] - TWO["mean"]
    b = np.mean(x[:, :n] ** 2, axis=1)
    assert abs(b.mean() - _gamma(TWO, 0)) <= Z * b.std(ddof=1) / math.sqrt(d)
    for lag in (1, 24):
        a = np.mean(x[:, :n] * x[:, lag : n + lag], axis=1)
        rho = a.mean() / b.mean()
        se = np.std(a - rho * b, ddof=1) / (b.mean() * math.sqrt(d))
        assert abs(rho - _gamma(TWO, lag) / _gamma(TWO, 0)) <= Z * se, (lag, rho, se)


def test_two_factor_simulation_start_cap_and_errors():
    """From f_0 the slow component starts at 0 and the fast one at f_0 − μ: E[f_n | f_0] =
    μ + φⁿ(f_0 − μ) and Var = v²(1 − φ²ⁿ)/(1 − φ²) + v_s²(1 − φ_s²ⁿ)/(1 − φ_s²), within Z s.e.;
    slow_vol = 0 reproduces the AR(1) path of the same seed; the cap clips the rate, not the state."""
    d, n, f0 = 40_000, 5, 4e-4
    last = simulate_funding(4, {k: np.full(d, v) for k, v in TWO.items()}, n, f0=f0)[:, -1]
    phi, slow_phi = TWO["phi"], TWO["slow_phi"]
    var = TWO["vol"] ** 2 * (1 - phi ** (2 * n)) / (1 - phi**2)
    var += TWO["slow_vol"] ** 2 * (1 - slow_phi ** (2 * n)) / (1 - slow_phi**2)
    assert abs(last.mean() - (TWO["mean"] + phi**n * (f0 - TWO["mean"]))) <= Z * math.sqrt(var / d)
    dev = last - last.mean()
    assert abs(last.var() - var) <= Z * math.sqrt((np.mean(dev**4) - np.mean(dev**2) ** 2) / d)

    no_slow = TRUTH | {"slow_phi": 0.9, "slow_vol": 0.0}
    np.testing.assert_allclose(
        simulate_funding(3, no_slow, 300, f0=f0), simulate_funding(3, TRUTH, 300, f0=f0), atol=1e-18
    )
    free = simulate_funding(3, TWO | {"vol": 1e-3}, 2000)
    capped = simulate_funding(3, TWO | {"vol": 1e-3}, 2000, cap=7.5e-4)
    assert np.mean(np.abs(free) > 7.5e-4) > 0.1 and np.array_equal(capped, np.clip(free, -7.5e-4, 7.5e-4))
    with pytest.raises(ConfigError, match="^params: slow_phi without slow_vol"):
        simulate_funding(0, TRUTH | {"slow_phi": 0.9}, 10)
    with pytest.raises(ConfigError, match="^params.df: "):
        simulate_funding(0, TWO | {"df": 5.0}, 10)
    with pytest.raises(ConfigError, match="^params.slow_vol: "):
        simulate_funding(0, TWO | {"slow_vol": -1e-5}, 10)


@QUIET_R_HAT
def test_two_factor_recovers_known_parameters(two_factor_series, two_factor_fit):
    """T = 3000: each posterior mean is within Z posterior sd (plus Z Monte Carlo s.e.) of the truth,
    the sampler converged, the draws keep slow_phi > phi and carry the contract's names; the exact
    MLE (L-BFGS on the same likelihood, from its own starts) is within 0.5 posterior sd + Z MC s.e.
    of the posterior mean (their difference is O(1/√T) sd under weak priors; 0.5 leaves room for the
    skew of slow_phi's posterior near its bound)."""
    fit = two_factor_fit
    assert fit.model == "two_factor" and fit.dist == "normal" and fit.n_obs == T_TWO
    assert set(fit.draws) == set(TWO) and set(fit.summary) == set(TWO) and set(fit.ppc) == PPC_STATS
    assert np.all(fit.draws["slow_phi"] > fit.draws["phi"])
    d = fit.diagnostics
    assert d["divergences"] == 0 and d["max_r_hat"] < 1.05 and d["min_ess"] > 100, d
    for name, truth in TWO.items():
        s = fit.summary[name]
        assert abs(s["mean"] - truth) <= Z * math.hypot(s["sd"], _mcse(fit, name)), (name, s, truth)
    share = _gamma(TWO | {"vol": 0.0}, 0) / _gamma(TWO, 0)
    s = fit.derived()["slow_share"]
    assert abs(s["mean"] - share) <= Z * s["sd"], (s, share)
    mle = fit_funding_mle(two_factor_series, model="two_factor")
    assert set(mle) == set(TWO)
    for name, value in mle.items():
        s = fit.summary[name]
        assert abs(s["mean"] - value) <= 0.5 * s["sd"] + Z * _mcse(fit, name), (name, s, value)
    out = fit.to_dict()
    assert out["model"] == "funding_two_factor" and set(out["point"]) == set(TWO)
    json.dumps(out, allow_nan=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::levopt.calibrate.fit.CalibrationWarning")
def test_two_factor_interval_coverage():
    """90% credible intervals of the two-factor model cover the truth in 90% of 100 repeated
    datasets (T = 3000 each), |coverage − 0.9| ≤ Z·√(0.9·0.1/100) = 0.12 for each parameter."""
    n_fits, covered = 100, dict.fromkeys(TWO, 0)
    for i in range(n_fits):
        data = _two_factor_series(TWO, T_TWO, seed=2000 + i)
        fit = fit_funding(data, model="two_factor", seed=i, ppc_draws=0, **NUTS_TWO)
        for name, truth in TWO.items():
            covered[name] += fit.summary[name]["q05"] <= truth <= fit.summary[name]["q95"]
    se = math.sqrt(0.9 * 0.1 / n_fits)
    for name, count in covered.items():
        assert abs(count / n_fits - 0.9) <= Z * se, (name, count)


def test_two_factor_refuses_student_t_shocks():
    rates = _series(TRUTH, 100, seed=0)
    for call in (fit_funding, fit_funding_mle):
        with pytest.raises(ConfigError, match="^dist: student_t shocks apply to model ar1 only"):
            call(rates, model="two_factor", dist="student_t")


@QUIET_R_HAT
def test_config_calibration_passes_the_kind_through(tmp_path, two_factor_series, two_factor_fit):
    """market.funding kind two_factor with a calibrate block: the engine gets slow_phi and slow_vol
    draws from the same posterior as the library call (same data, seed and settings)."""
    _write_funding_csv(tmp_path / "funding.csv", two_factor_series)
    calibrate = {"data": "funding.csv", "draws": 64} | {
        k.removeprefix("num_"): v for k, v in NUTS_TWO.items()
    }
    cfg = load_config(make_config(market__funding={"kind": "two_factor", "calibrate": calibrate}))
    draws, summary = funding_from_calibration(cfg, tmp_path)
    assert set(draws) == set(TWO) and all(v.shape == (64,) for v in draws.values())
    assert summary["model"] == "funding_two_factor" and "draws" not in summary
    assert summary["point"] == pytest.approx(two_factor_fit.point(), rel=1e-12)
    # Student-t shocks exist for the AR(1) only: the config is refused when it is loaded.
    student = calibrate | {"dist": "student_t"}
    with pytest.raises(
        ConfigError, match=r"^market\.funding: kind two_factor is calibrated with normal shocks"
    ):
        load_config(make_config(market__funding={"kind": "two_factor", "calibrate": student}))


# --- the real history ---------------------------------------------------------------------------


@pytest.mark.skipif(not BTC_FUNDING.is_file(), reason="shared/data/btcusdt_funding_8h.csv is not available")
def test_real_btcusdt_funding():
    """Binance BTCUSDT 2019-09..2025-09: the sampler converges, the long-run mean is the data's
    (≈ 13 %/yr), and the predictive check reports every statistic; it flags the 8-day
    autocorrelation, which an AR(1) with φ ≈ 0.79 (φ²⁴ ≈ 0.004) cannot produce."""
    series = load_funding(BTC_FUNDING)
    fit = fit_funding(BTC_FUNDING, seed=0, **NUTS)
    assert fit.n_obs == len(series) and fit.interval_hours == 8.0
    assert fit.diagnostics["max_r_hat"] < 1.05 and fit.diagnostics["divergences"] == 0
    s = fit.summary["mean"]
    assert abs(s["mean"] - series.mean()) <= Z * math.hypot(s["sd"], _mcse(fit, "mean"))
    assert abs(fit.annualized_mean() - annualized_funding(series)) <= Z * 1095 * s["sd"]
    assert set(fit.ppc) == PPC_STATS
    assert all(0 <= v["p_value"] <= 1 for v in fit.ppc.values())
    assert fit.ppc["acf_24"]["p_value"] < 0.01
    json.dumps(fit.to_dict(), allow_nan=False)


@pytest.mark.slow
@pytest.mark.skipif(not BTC_FUNDING.is_file(), reason="shared/data/btcusdt_funding_8h.csv is not available")
@QUIET_R_HAT
def test_real_btcusdt_funding_two_factor():
    """The two-factor model on the same history: the sampler converges and the predictive check no
    longer rejects the 8-day autocorrelation (observed 0.43), nor the mean, sd and lag-1
    autocorrelation. Still rejected (not asserted): the share of positive rates and the 1%/99%
    quantiles — funding sits at Binance's 0.01 % floor most of the time and has fat tails, which
    a Gaussian process does not produce."""
    fit = fit_funding(BTC_FUNDING, model="two_factor", seed=0, **NUTS_TWO)
    d = fit.diagnostics
    assert d["max_r_hat"] < 1.05 and d["divergences"] == 0 and d["min_ess"] > 100, d
    assert fit.model == "two_factor" and np.all(fit.draws["slow_phi"] > fit.draws["phi"])
    for name in ("mean", "sd", "acf_1", "acf_24"):
        assert 0.01 < fit.ppc[name]["p_value"] < 0.99, (name, fit.ppc[name])
    json.dumps(fit.to_dict(), allow_nan=False)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"rates": np.full(29, 1e-4) + np.arange(29) * 1e-6}, "rates"),
        ({"rates": np.r_[np.full(40, 1e-4), np.nan]}, "rates"),
        ({"rates": np.full(100, 1e-4)}, "rates"),
        ({"dist": "t"}, "dist"),
        ({"model": "arma"}, "model"),
        ({"model": "two_factor", "dist": "student_t"}, "dist"),
        ({"interval_hours": 0.0}, "interval_hours"),
        ({"interval_hours": float("nan")}, "interval_hours"),
        ({"num_samples": 2}, "num_samples"),
        ({"ppc_draws": -1}, "ppc_draws"),
    ],
)
def test_bad_input_names_the_argument(kwargs, field):
    args = {"rates": _series(TRUTH, 100, seed=0)} | kwargs
    with pytest.raises(ConfigError, match=f"^{field}: "):
        fit_funding(**args)


def test_interval_must_match_the_data_s_spacing():
    index = pd.date_range("2024-01-01", periods=100, freq="4h", tz="UTC")
    rates = pd.Series(_series(TRUTH, 100, seed=0), index=index)
    with pytest.raises(ConfigError, match=r"^interval_hours: 8, but the rates are 4 h apart"):
        fit_funding(rates)
    with pytest.raises(ConfigError, match="^dist: "):
        fit_funding_mle(rates, dist="cauchy")


# --- the CLI ------------------------------------------------------------------------------------


def _write_funding_csv(path, rates: np.ndarray, rate_column: str = "fundingRate") -> None:
    stamps = pd.date_range("2020-01-01", periods=rates.size, freq="8h", tz="UTC")
    pd.DataFrame(
        {
            "symbol": "BTCUSDT",
            "funding_date": stamps.strftime("%Y-%m-%d"),
            "funding_time": stamps.strftime("%H:%M:%S"),
            rate_column: [repr(float(r)) for r in rates],
        }
    ).to_csv(path, index=False)


def _strict(text: str):
    def refuse(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def test_calibrate_funding_command(tmp_path, synthetic, synthetic_fit):
    """The CLI writes strict JSON holding the same posterior as the library call with the same
    data and seed (the series round-trips through the CSV exactly)."""
    import typer
    from typer.testing import CliRunner

    from levopt.calibrate.cli import calibrate_command

    app = typer.Typer()
    app.command("calibrate")(calibrate_command)
    app.command("noop")(lambda: None)  # a second command keeps "calibrate" as a subcommand
    _write_funding_csv(tmp_path / "funding.csv", synthetic)
    settings = ["--warmup", "300", "--samples", "300", "--chains", "2", "--seed", "0"]
    out = tmp_path / "out"
    args = ["calibrate", "--model", "funding", "--data", str(tmp_path / "funding.csv"), "--out", str(out)]
    result = CliRunner().invoke(app, args + settings)
    assert result.exit_code == 0, result.output
    written = _strict((out / "funding_calibration.json").read_text())
    assert written["dist"] == "normal" and written["interval_hours"] == 8.0 and written["n_obs"] == T
    assert written["point"] == pytest.approx(synthetic_fit.point(), rel=1e-12)
    assert set(written["ppc"]) == PPC_STATS and len(written["draws"]["phi"]) == 600
    assert written["request"]["model"] == "funding"

    _write_funding_csv(tmp_path / "custom.csv", synthetic, rate_column="premium")
    custom = ["--data", str(tmp_path / "custom.csv"), "--column", "premium", "--out", str(tmp_path / "c")]
    result = CliRunner().invoke(
        app, ["calibrate", "--model", "funding", *custom, *settings, "--ppc-paths", "0"]
    )
    assert result.exit_code == 0, result.output
    written = _strict((tmp_path / "c" / "funding_calibration.json").read_text())
    assert written["point"] == pytest.approx(synthetic_fit.point(), rel=1e-12) and written["ppc"] == {}


@QUIET_R_HAT
def test_calibrate_funding_two_factor_command(tmp_path, two_factor_series, two_factor_fit):
    """``--funding-model two_factor`` writes the two-factor posterior, the same as the library call."""
    import typer
    from typer.testing import CliRunner

    from levopt.calibrate.cli import calibrate_command

    app = typer.Typer()
    app.command("calibrate")(calibrate_command)
    app.command("noop")(lambda: None)
    _write_funding_csv(tmp_path / "funding.csv", two_factor_series)
    settings = ["--warmup", "300", "--samples", "300", "--chains", "2", "--seed", "0", "--ppc-paths", "50"]
    args = ["calibrate", "--model", "funding", "--funding-model", "two_factor"]
    args += ["--data", str(tmp_path / "funding.csv"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, args + settings)
    assert result.exit_code == 0, result.output
    written = _strict((tmp_path / "out" / "funding_calibration.json").read_text())
    assert written["model"] == "funding_two_factor" and written["request"]["funding_model"] == "two_factor"
    assert written["point"] == pytest.approx(two_factor_fit.point(), rel=1e-12)
    assert set(written["draws"]) == set(TWO) and set(written["derived"]) >= {"slow_share"}


@pytest.mark.parametrize(
    "extra,field",
    [
        (["--dist", "t"], "--dist"),
        (["--gjr"], "--gjr"),
        (["--column", "nope"], "--column"),
        (["--funding-model", "arma"], "--funding-model"),
        (["--funding-model", "two_factor", "--dist", "student_t"], "--dist"),
    ],
)
def test_calibrate_funding_command_errors_are_one_line(tmp_path, monkeypatch, capsys, extra, field):
    from levopt.cli import main

    _write_funding_csv(tmp_path / "funding.csv", _series(TRUTH, 100, seed=0))
    argv = ["levopt", "calibrate", "--model", "funding", "--data", str(tmp_path / "funding.csv")]
    monkeypatch.setattr("sys.argv", [*argv, "--out", str(tmp_path / "out"), *extra])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and f"{field}:" in err, err
    assert not (tmp_path / "out" / "funding_calibration.json").exists()


def test_funding_model_option_needs_model_funding(tmp_path, monkeypatch, capsys):
    from levopt.cli import main

    _write_funding_csv(tmp_path / "funding.csv", _series(TRUTH, 100, seed=0))
    argv = ["levopt", "calibrate", "--model", "garch", "--data", str(tmp_path / "funding.csv")]
    monkeypatch.setattr("sys.argv", [*argv, "--out", str(tmp_path / "out"), "--funding-model", "two_factor"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1 and "--funding-model:" in err, err
