"""Bayesian calibration: agreement with arch's maximum likelihood, recovery of known parameters,
the Merton truncation, posterior -> simulation, determinism and the CLI.

Tolerances come from the posterior itself: with ~2000 observations the posterior is close to
normal around the MLE (Bernstein–von Mises), so the posterior mean and the MLE differ by a small
fraction of a posterior standard deviation; we allow 2 sd as the task states. Monte Carlo error of
a posterior mean is sd / sqrt(ESS).
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import Z
from scipy import stats

import levopt
from levopt.calibrate import CalibrationWarning, calibrate, check_diagnostics, model_from_calibration
from levopt.calibrate.fit import summarize_draws
from levopt.calibrate.models import LAM_PRIOR_LOG_SD, LAM_PRIOR_MEDIAN, MAX_JUMPS, merton_log_density
from levopt.config import config_dir, load_config
from levopt.engine import simulate_returns
from levopt.errors import ConfigError
from levopt.paths import GBM, Garch

DT = 1 / 365
NUTS = {"warmup": 500, "samples": 1000, "chains": 2}
ignore_convergence = pytest.mark.filterwarnings("ignore::levopt.calibrate.fit.CalibrationWarning")


def simulate_path(model, n: int, seed: int) -> np.ndarray:
    x = simulate_returns(jax.random.PRNGKey(seed), model, paths=1, steps=n, dt=DT, dtype=jnp.float64)
    return np.asarray(x)[0, :, 0]


def write_prices(path, returns: np.ndarray, start: str = "2020-01-01", freq: str = "D") -> None:
    prices = 20000.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    index = pd.date_range(start, periods=len(prices), freq=freq, tz="UTC")
    pd.DataFrame({"timestamp": index.strftime("%Y-%m-%d %H:%M:%S"), "close": prices}).to_csv(
        path, index=False
    )


GARCH_TRUE = {"mu": 0.2, "omega": 4.9e-5, "alpha": 0.10, "beta": 0.85}  # 60% long-run vol, persistence 0.95
GJR_TRUE = {"mu": 0.2, "omega": 4.9e-5, "alpha": 0.05, "gamma": 0.10, "beta": 0.85}


@pytest.fixture(scope="module")
def garch_returns() -> np.ndarray:
    return simulate_path(Garch.from_config(Garch.Config(**GARCH_TRUE), DT, jnp.float64), 2000, seed=11)


@pytest.fixture(scope="module")
def garch_fit(garch_returns):
    return calibrate(garch_returns, "garch", seed=1, **NUTS)


def arch_mle(returns: np.ndarray, gjr: bool) -> dict[str, float]:
    from arch import arch_model

    fit = arch_model(returns * 100, mean="Constant", vol="GARCH", p=1, o=int(gjr), q=1, dist="normal").fit(
        disp="off"
    )
    p = fit.params
    out = {"omega": p["omega"] / 1e4, "alpha": p["alpha[1]"], "beta": p["beta[1]"]}  # percent^2 -> decimal^2
    if gjr:
        out["gamma"] = p["gamma[1]"]
    return out


def assert_matches_mle(summary: dict, mle: dict[str, float]) -> None:
    for name, value in mle.items():
        s = summary[name]
        assert s["r_hat"] < 1.05, (name, s)
        assert abs(s["mean"] - value) < 2 * s["sd"], (name, s["mean"], value, s["sd"])


def test_garch_agrees_with_arch_mle(garch_fit, garch_returns):
    """mu is not compared: arch's constant mean is E[r] while ours is the drift of r = mu dt - h/2 + ..."""
    assert_matches_mle(garch_fit.summary, arch_mle(garch_returns, gjr=False))
    assert garch_fit.summary["gamma"]["mean"] == 0.0
    # and the truth is inside the posterior (4 sd)
    for name in ("omega", "alpha", "beta"):
        s = garch_fit.summary[name]
        assert abs(s["mean"] - GARCH_TRUE[name]) < Z * s["sd"], name


@pytest.mark.slow  # NUTS on GJR (~15 s); test_garch_agrees_with_arch_mle covers the default run
def test_gjr_agrees_with_arch_mle():
    returns = simulate_path(Garch.from_config(Garch.Config(**GJR_TRUE), DT, jnp.float64), 2000, seed=12)
    fit = calibrate(returns, "garch", gjr=True, seed=2, **NUTS)
    assert_matches_mle(fit.summary, arch_mle(returns, gjr=True))
    assert fit.summary["derived"]["persistence"]["q95"] < 1.0


def test_stationarity_by_construction(garch_fit):
    d = garch_fit.draws
    assert np.all(d["alpha"] >= 0) and np.all(d["beta"] >= 0) and np.all(d["alpha"] + d["gamma"] >= 0)
    assert np.all(d["alpha"] + d["beta"] + d["gamma"] / 2 < 1) and np.all(d["omega"] > 0)


GBM_TRUE = {"mu": 0.0, "sigma": 0.8}


@pytest.fixture(scope="module")
def gbm_returns() -> np.ndarray:
    """1001 daily returns: 1000 when a price file of them loses its last (partial) bar."""
    return simulate_path(GBM.from_config(GBM.Config(**GBM_TRUE), DT, jnp.float64), 1001, seed=3)


def test_gbm_recovers_sigma(gbm_returns):
    r = gbm_returns[:1000]
    n = len(r)
    fit = calibrate(r, "gbm", seed=0, **NUTS)
    s = fit.summary["sigma"]
    mle = np.std(r) / np.sqrt(DT)
    assert abs(s["mean"] - GBM_TRUE["sigma"]) < Z * s["sd"]
    # posterior mean = MLE + O(sd / sqrt(n)) (prior and skewness), plus Monte Carlo error sd / sqrt(ESS)
    assert abs(s["mean"] - mle) < s["sd"] * (0.1 + Z / np.sqrt(s["ess"]))
    # posterior sd = the MLE's asymptotic standard error sigma / sqrt(2 n), up to the Monte Carlo
    # error of an sd estimate, about 1 / sqrt(2 ESS) relative
    assert s["sd"] == pytest.approx(mle / np.sqrt(2 * n), rel=Z / np.sqrt(2 * s["ess"]))


def test_same_seed_same_summary_and_fixed_parameters(gbm_returns):
    r = gbm_returns[:1000]
    a = calibrate(r, "gbm", fixed={"mu": 0.1}, seed=5, **NUTS)
    b = calibrate(r, "gbm", fixed={"mu": 0.1}, seed=5, **NUTS)
    c = calibrate(r, "gbm", fixed={"mu": 0.1}, seed=6, **NUTS)
    assert a.summary == b.summary
    for name in a.draws:
        np.testing.assert_array_equal(a.draws[name], b.draws[name])
    assert a.summary["sigma"]["mean"] != c.summary["sigma"]["mean"]
    assert a.summary["mu"] == {
        "mean": 0.1,
        "sd": 0.0,
        "q05": 0.1,
        "q95": 0.1,
        "r_hat": None,
        "ess": None,
        "fixed": True,
    }
    with pytest.raises(ConfigError, match="model.sigma: cannot be fixed when calibrating gbm; fixable: mu"):
        calibrate(r, "gbm", fixed={"sigma": 0.5})


def test_merton_truncation():
    """P(N > MAX_JUMPS) in one daily step is negligible at the prior's 99.9% quantile of lam, and
    the truncated likelihood equals a much longer series at prior draws."""
    lam_999 = LAM_PRIOR_MEDIAN * np.exp(LAM_PRIOR_LOG_SD * stats.norm.ppf(0.999))
    assert stats.poisson.sf(MAX_JUMPS, lam_999 * DT) < 1e-10
    rng = np.random.default_rng(0)
    r = jnp.asarray(rng.standard_t(3, 1000) * 0.03)
    density = jax.jit(merton_log_density, static_argnames="max_jumps")
    for _ in range(20):
        lam = float(np.exp(np.log(LAM_PRIOR_MEDIAN) + LAM_PRIOR_LOG_SD * rng.normal()))
        args = (
            0.3,
            rng.lognormal(np.log(0.6), 0.5),
            lam,
            rng.normal(0, 0.03),
            rng.lognormal(np.log(0.09), 0.75),
        )
        short = float(jnp.sum(density(r, *args, DT)))
        long = float(jnp.sum(density(r, *args, DT, max_jumps=40)))
        assert abs(short - long) < 1e-9 * abs(long)


def test_merton_density_is_a_density():
    """The Poisson-mixture density integrates to 1 and has the model's mean, E[r] = (mu - sigma²/2) dt
    + lam dt (m - k) with k = exp(m + s²/2) - 1."""
    mu, sigma, lam, m, s, dt = 0.5, 0.6, 40.0, -0.03, 0.08, DT
    x = jnp.linspace(-1.0, 1.0, 200_001)
    p = np.asarray(jnp.exp(merton_log_density(x, mu, sigma, lam, m, s, dt)))
    h = float(x[1] - x[0])
    assert np.sum(p) * h == pytest.approx(1.0, abs=1e-9)
    k = np.expm1(m + s**2 / 2)
    assert np.sum(p * np.asarray(x)) * h == pytest.approx(
        (mu - sigma**2 / 2) * dt + lam * dt * (m - k), abs=1e-9
    )


def test_diagnostics_warn():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(2, 500))
    bad = good + np.array([[0.0], [1.0]])  # two chains centred apart
    assert summarize_draws(good)["r_hat"] < 1.01
    with pytest.warns(CalibrationWarning, match="r_hat .* > 1.01 for x"):
        problems = check_diagnostics({"x": summarize_draws(bad)}, divergences=0)
    assert len(problems) == 1
    with pytest.warns(CalibrationWarning, match="3 divergent"):
        check_diagnostics({"x": summarize_draws(good)}, divergences=3)
    from numpyro.diagnostics import split_gelman_rubin

    assert summarize_draws(bad)["r_hat"] == pytest.approx(float(split_gelman_rubin(bad)))


def test_to_model(garch_fit):
    n = garch_fit.n_draws
    assert n == NUTS["samples"] * NUTS["chains"]
    model = garch_fit.to_model("posterior", jnp.float32)
    leaves = {k: getattr(model, k) for k in ("mu", "omega", "alpha", "beta", "gamma", "h0")}
    assert all(v.shape == (n, 1) and v.dtype == jnp.float32 for v in leaves.values())
    assert model.nu.shape == (n,) and bool(jnp.all(jnp.isinf(model.nu)))
    assert model.corr_chol.shape == (n, 1, 1)
    np.testing.assert_allclose(
        np.asarray(model.h0[:, 0]),
        garch_fit.draws["omega"]
        / (1 - garch_fit.draws["alpha"] - garch_fit.draws["beta"] - garch_fit.draws["gamma"] / 2),
        rtol=1e-6,
    )
    mean = garch_fit.to_model("mean")
    expected = Garch.from_config(Garch.Config(**garch_fit.mean_params()), DT, jnp.float64)
    for name in ("mu", "omega", "alpha", "beta", "gamma", "h0"):
        np.testing.assert_allclose(getattr(mean, name), getattr(expected, name))
    last = garch_fit.to_model("mean", initial_variance="last")
    assert float(last.h0[0]) == pytest.approx(float(np.mean(garch_fit.draws["h_last"])))


def _config(data: str, uncertainty: str, kind: str = "garch", **model) -> dict:
    return {
        "seed": 7,
        "paths": 512,
        "horizon_days": 20,
        "model": {"kind": kind, **model, "calibrate": {"data": data, **NUTS}, "uncertainty": uncertainty},
        "market": {"maintenance_margin": 0.005},
        "policy": {"kind": "constant", "leverage": 2.0, "rebalance": 1},
        "metrics": ["log_growth", "liquidation_probability"],
    }


def test_model_from_calibration_and_evaluate(tmp_path, gbm_returns):
    path = tmp_path / "prices.csv"
    write_prices(path, gbm_returns)
    # a data path relative to the config file's directory
    (tmp_path / "cfg.yaml").write_text(json.dumps(_config("prices.csv", "posterior", kind="gbm", mu=0.1)))
    cfg = load_config(tmp_path / "cfg.yaml")
    model, n_draws, summary = model_from_calibration(cfg, jnp.float32, config_dir(tmp_path / "cfg.yaml"))
    assert n_draws == NUTS["samples"] * NUTS["chains"]
    assert model.mu.shape == model.sigma.shape == (n_draws, 1) and model.corr_chol.shape == (n_draws, 1, 1)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(model))
    assert summary["mu"]["fixed"] and summary["n_obs"] == 1000 and summary["data"] == str(path)
    assert summary["uncertainty"] == "posterior"

    posterior = levopt.evaluate(_config(str(path), "posterior", kind="gbm", mu=0.1))
    mean = levopt.evaluate(_config(str(path), "mean", kind="gbm", mu=0.1))
    assert (
        posterior["calibration"]["uncertainty"] == "posterior"
        and mean["calibration"]["uncertainty"] == "mean"
    )
    # the calibration stream depends on the seed only, not on how the posterior is used
    assert mean["calibration"]["sigma"] == posterior["calibration"]["sigma"] == summary["sigma"]
    for result in (posterior, mean):
        assert np.isfinite(result["metrics"]["log_growth"])
        assert result["config"]["model"]["calibrate"]["data"] == str(path)


def test_frequency_must_match_steps_for_garch(tmp_path, garch_returns):
    path = tmp_path / "prices_4h.csv"
    write_prices(path, garch_returns[:300], freq="4h")
    cfg = load_config(_config(str(path), "mean"))
    with pytest.raises(
        ConfigError, match=r"model.calibrate.frequency: .* gives 4h returns but the simulation steps are 1d"
    ):
        model_from_calibration(cfg, jnp.float64)


def test_calibrated_config_errors():
    with pytest.raises(ConfigError, match="model.alpha: estimated by the calibration"):
        load_config(_config("x.csv", "mean", alpha=0.1))
    bad = _config("x.csv", "mean")
    bad["model"]["calibrate"]["warmpu"] = 10
    with pytest.raises(ConfigError, match=r"model.calibrate.warmpu: unknown key"):
        load_config(bad)
    with pytest.raises(ConfigError, match="model.uncertainty"):
        load_config(_config("x.csv", "sometimes"))


def test_calibrate_command(tmp_path, gbm_returns):
    import typer
    from typer.testing import CliRunner

    from levopt.calibrate.cli import calibrate_command

    app = typer.Typer()
    app.command("calibrate")(calibrate_command)
    app.command("noop")(lambda: None)  # a second command keeps "calibrate" as a subcommand
    r = gbm_returns
    write_prices(tmp_path / "prices.csv", r)
    out = tmp_path / "out"
    args = [
        "calibrate",
        "--data",
        str(tmp_path / "prices.csv"),
        "--model",
        "gbm",
        "--out",
        str(out),
        "--warmup",
        str(NUTS["warmup"]),
        "--samples",
        str(NUTS["samples"]),
        "--chains",
        str(NUTS["chains"]),
        "--ppc-paths",
        "64",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    posterior = json.loads((out / "posterior.json").read_text())
    assert set(posterior["sigma"]) >= {"mean", "sd", "q05", "q95", "r_hat", "ess"}
    assert posterior["n_obs"] == 1000  # 1001 returns, the last (possibly partial) bar dropped
    draws = pd.read_parquet(out / "draws.parquet")
    assert (
        list(draws.columns) == ["chain", "draw", "mu", "sigma"]
        and len(draws) == NUTS["samples"] * NUTS["chains"]
    )
    ppc = json.loads((out / "ppc.json").read_text())["statistics"]
    assert set(ppc) == {
        "annual_vol",
        "excess_kurtosis",
        "acf_sq_1",
        "acf_sq_2",
        "acf_sq_3",
        "acf_sq_4",
        "acf_sq_5",
    }
    realized_vol = np.std(r[:-1], ddof=1) / np.sqrt(DT)
    assert ppc["annual_vol"]["realized"] == pytest.approx(realized_vol)
    assert ppc["annual_vol"]["q05"] < realized_vol < ppc["annual_vol"]["q95"]
    assert all(0 <= s["p_value"] <= 1 for s in ppc.values())

    both = CliRunner().invoke(app, ["calibrate", str(tmp_path / "x.yaml"), "--data", "y.csv"])
    assert isinstance(both.exception, ConfigError)


@pytest.mark.slow
@ignore_convergence
def test_interval_coverage():
    """90% credible intervals cover the true GARCH parameters in about 90% of repeated fits;
    the bound is the 0.1% quantile of Binomial(n, 0.9)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_calibrate.py"
    spec = importlib.util.spec_from_file_location("bench_calibrate", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    n_fits = 20
    report = bench.coverage_study(n_fits=n_fits, n_obs=1500, warmup=300, samples=300, seed=100)
    lower = stats.binom.ppf(0.001, n_fits, 0.9) / n_fits
    for name, cov in report["coverage"].items():
        assert cov >= lower, (name, cov, lower)


@pytest.mark.slow
@ignore_convergence
def test_merton_recovers_parameters():
    from levopt.paths import Merton

    truth = {"mu": 0.2, "sigma": 0.5, "lam": 20.0, "jump_mean": -0.02, "jump_std": 0.08}
    r = simulate_path(Merton.from_config(Merton.Config(**truth), DT, jnp.float64), 3000, seed=4)
    fit = calibrate(r, "merton", seed=0, warmup=500, samples=500, chains=2)
    for name in ("sigma", "lam", "jump_std"):
        s = fit.summary[name]
        assert abs(s["mean"] - truth[name]) < Z * s["sd"], (name, s)


@pytest.mark.slow
@ignore_convergence
def test_real_btc_garch_t_agrees_with_arch(shared_data):
    """GARCH(1,1)-t on BTC daily (../shared/data): posterior means within 2 sd of arch's MLE."""
    from arch import arch_model

    fit = calibrate(
        shared_data / "btc_usd_daily.csv", "garch", dist="t", drop_last_partial=True, seed=0, **NUTS
    )
    r = fit.returns.values
    assert fit.summary["n_obs"] == 4089
    p = arch_model(r * 100, mean="Constant", vol="GARCH", p=1, q=1, dist="t").fit(disp="off").params
    mle = {"omega": p["omega"] / 1e4, "alpha": p["alpha[1]"], "beta": p["beta[1]"], "nu": p["nu"]}
    assert_matches_mle(fit.summary, mle)
