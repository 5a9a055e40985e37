"""The AR(1) funding-rate calibration (levopt.calibrate.funding): the simulator against closed-form
moments, recovery of known parameters, an independent OLS reference (numpy's lstsq), Student-t
shocks, the real Binance BTCUSDT history, bad input and the ``levopt calibrate --model funding`` CLI.

Monte Carlo tolerances are Z = 4 standard errors (conftest.Z). For a posterior the standard error
of a draw-average is its Monte Carlo s.e. sd/√ESS; that the posterior sd is the sampling s.e. of
the estimate is Bernstein–von Mises (the data here are long: T ≥ 1000).
"""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import SHARED_DATA, Z

from levopt.calibrate.funding import (
    FundingFit,
    fit_funding,
    fit_funding_mle,
    ppc_statistics,
    simulate_funding,
)
from levopt.data.load import annualized_funding, load_funding
from levopt.errors import ConfigError

TRUTH = {"mean": 1e-4, "phi": 0.9, "vol": 5e-5}
T = 2000
NUTS = {"num_warmup": 300, "num_samples": 300, "num_chains": 2}
BTC_FUNDING = SHARED_DATA / "btcusdt_funding_8h.csv"
PPC_STATS = {"mean", "sd", "acf_1", "acf_24", "frac_positive", "q01", "q99"}


def _series(params: dict, n: int, seed: int) -> np.ndarray:
    """n rates of the AR(1) model started at its mean (f_0 = mean)."""
    return np.concatenate([[params["mean"]], simulate_funding(seed, params, n - 1)])


def _ols(f: np.ndarray) -> dict[str, float]:
    """The conditional MLE of a normal AR(1) written out: OLS of f_k on (1, f_{k-1}) (Hamilton 1994, §5.2)."""
    x = np.column_stack([np.ones(f.size - 1), f[:-1]])
    (a, b), *_ = np.linalg.lstsq(x, f[1:], rcond=None)
    rss = np.sum((f[1:] - x @ np.array([a, b])) ** 2)
    return {"mean": a / (1 - b), "phi": b, "vol": math.sqrt(rss / (f.size - 1))}


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


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"rates": np.full(29, 1e-4) + np.arange(29) * 1e-6}, "rates"),
        ({"rates": np.r_[np.full(40, 1e-4), np.nan]}, "rates"),
        ({"rates": np.full(100, 1e-4)}, "rates"),
        ({"dist": "t"}, "dist"),
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


@pytest.mark.parametrize(
    "extra,field",
    [(["--dist", "t"], "--dist"), (["--gjr"], "--gjr"), (["--column", "nope"], "--column")],
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
