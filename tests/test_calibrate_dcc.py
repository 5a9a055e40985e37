"""Bayesian DCC-GARCH calibration (levopt.calibrate with model="dcc_garch").

References, independent of the code under test: a numpy simulator of the DCC recursion written
here (Engle 2002, eqs. 21-22) that also returns the true conditional variances and residuals;
scipy.stats' multivariate normal and t densities, step by step; a two-step maximum-likelihood
estimate written here with scipy.optimize (per-asset GARCH, then DCC on the standardized
residuals); pandas' rolling correlation.

Tolerances: with T = 1500 observations the posterior is close to normal around the maximum of the
likelihood (Bernstein-von Mises), so a posterior mean lies within a few posterior sd of the truth
(Z = 4 sd, as tests/test_calibrate.py) and, as the two-step estimator is consistent for the same
parameters, within 2 sd of it (the bound tests/test_calibrate.py uses against arch's MLE).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import Z
from scipy import optimize, stats

from levopt.calibrate import calibrate
from levopt.calibrate.models import dcc_log_likelihood, sample_correlation
from levopt.calibrate.ppc import correlation_statistics, rolling_correlation
from levopt.data.load import align_prices, load_wide_prices
from levopt.errors import ConfigError

DT = 1 / 365
N_OBS = 1500
NUTS = {"warmup": 300, "samples": 300, "chains": 2}
TRUE = {
    "mu": [0.2, 0.3],
    "omega": [4.9e-5, 7.0e-5],
    "alpha": [0.08, 0.06],
    "beta": [0.88, 0.90],
    "corr": [[1.0, 0.6], [0.6, 1.0]],
    "dcc_alpha": 0.06,
    "dcc_beta": 0.90,
}
"""Two BTC/ETH-like assets: 60% and 76% long-run volatility, correlation 0.6 around which the
DCC recursion moves with persistence 0.96."""
CONFIG_KEYS = {"kind", "mu", "omega", "alpha", "beta", "gamma", "dist", "corr", "dcc_alpha", "dcc_beta"}


def simulate_dcc(params: dict, n: int, seed: int, nu: float | None = None) -> dict[str, np.ndarray]:
    """n steps of DCC-GARCH: r_t = mu dt - h_t/2 + sqrt(h_t) eps_t, eps_t = L_t z_t with
    R_t = L_t L_t' from Q_t (Q_1 = Q̄), z_t standard normal, or multivariate t (one chi-square
    per step) scaled to unit variance. Returns r, the true h and eps."""
    rng = np.random.default_rng(seed)
    mu, omega, alpha, beta = (np.asarray(params[k], float) for k in ("mu", "omega", "alpha", "beta"))
    gamma = np.asarray(params.get("gamma", np.zeros_like(alpha)), float)
    qbar, a, b = np.asarray(params["corr"], float), params["dcc_alpha"], params["dcc_beta"]
    k = len(omega)
    h = omega / (1 - alpha - beta - gamma / 2)
    q = qbar.copy()
    r, hs, es = np.empty((n, k)), np.empty((n, k)), np.empty((n, k))
    for t in range(n):
        d = 1 / np.sqrt(np.diag(q))
        eps = np.linalg.cholesky(q * np.outer(d, d)) @ rng.standard_normal(k)
        if nu is not None:
            eps *= np.sqrt((nu - 2) / rng.chisquare(nu))
        r[t], hs[t], es[t] = mu * DT - h / 2 + np.sqrt(h) * eps, h, eps
        q = (1 - a - b) * qbar + a * np.outer(eps, eps) + b * q
        h = omega + (alpha + gamma * (eps < 0)) * h * eps**2 + beta * h
    return {"r": r, "h": hs, "eps": es}


def write_prices(path, returns: np.ndarray, start: str, name: str = "close") -> None:
    prices = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    index = pd.date_range(start, periods=len(prices), freq="D", tz="UTC")
    pd.DataFrame({"timestamp": index.strftime("%Y-%m-%d"), name: prices}).to_csv(path, index=False)


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return simulate_dcc(TRUE, N_OBS, seed=3)


@pytest.fixture(scope="module")
def fit(data):
    return calibrate(data["r"], "dcc_garch", seed=1, **NUTS)


# --- the likelihood against scipy ----------------------------------------------------------------


def _residuals(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(k, k)) / np.sqrt(k) + np.eye(k)
    eps = rng.standard_t(6, size=(n, k)) @ mix.T
    eps /= eps.std(axis=0)
    return eps, np.asarray(sample_correlation(jnp.asarray(eps)))


@pytest.mark.parametrize("k", [2, 3, 10])
def test_constant_correlation_when_a_and_b_are_zero(k):
    """a = b = 0: R_t = Q̄ at every step, the likelihood of i.i.d. N(0, Q̄) (and of the unit-variance
    multivariate t, scale matrix Q̄ (ν − 2)/ν); k = 10 takes the library Cholesky, not the unrolled one."""
    eps, qbar = _residuals(400, k, seed=k)
    normal, _ = dcc_log_likelihood(jnp.asarray(eps), 0.0, 0.0, jnp.asarray(qbar))
    expected = stats.multivariate_normal(np.zeros(k), qbar).logpdf(eps).sum()
    assert float(normal) == pytest.approx(expected, abs=1e-8)
    nu = 5.0
    t, _ = dcc_log_likelihood(jnp.asarray(eps), 0.0, 0.0, jnp.asarray(qbar), jnp.asarray(nu))
    expected_t = stats.multivariate_t(np.zeros(k), qbar * (nu - 2) / nu, df=nu).logpdf(eps).sum()
    assert float(t) == pytest.approx(expected_t, abs=1e-8)


def test_dcc_likelihood_follows_the_recursion():
    """a, b > 0: the sum of scipy's N(0, R_t) log-densities with R_t from a numpy loop over the
    recursion, and the correlation after the data."""
    eps, qbar = _residuals(300, 3, seed=0)
    a, b = 0.07, 0.9
    q, expected = qbar.copy(), 0.0
    for e in eps:
        d = 1 / np.sqrt(np.diag(q))
        expected += stats.multivariate_normal(np.zeros(3), q * np.outer(d, d)).logpdf(e)
        q = (1 - a - b) * qbar + a * np.outer(e, e) + b * q
    got, corr_next = dcc_log_likelihood(jnp.asarray(eps), a, b, jnp.asarray(qbar))
    assert float(got) == pytest.approx(expected, abs=1e-8)
    d = 1 / np.sqrt(np.diag(q))
    np.testing.assert_allclose(np.asarray(corr_next), q * np.outer(d, d), atol=1e-12)


def test_model_likelihood_with_gjr_margins_and_t_shocks():
    """The numpyro model's likelihood factor at given parameters (GJR margins, multivariate t, three
    assets) equals a numpy computation: each asset's GJR recursion from its unconditional variance,
    Q̄ the sample correlation of the residuals, R_t by a loop, scipy's multivariate t density of
    the residuals minus ½ Σ log h (the Jacobian of r -> ε)."""
    from numpyro.handlers import seed, substitute, trace

    from levopt.calibrate.models import dcc_garch_model

    params = {
        "mu": np.array([0.2, 0.1, -0.1]),
        "omega": np.array([4e-5, 6e-5, 3e-5]),
        "alpha": np.array([0.05, 0.08, 0.03]),
        "gamma": np.array([0.06, -0.02, 0.04]),
        "beta": np.array([0.88, 0.85, 0.9]),
    }
    corr = [[1.0, 0.6, 0.3], [0.6, 1.0, 0.4], [0.3, 0.4, 1.0]]
    nu, a, b = 5.0, 0.04, 0.93
    r = simulate_dcc(params | {"corr": corr, "dcc_alpha": a, "dcc_beta": b}, 400, seed=4, nu=nu)["r"]
    scale = r.std(axis=0, ddof=1) / np.sqrt(DT)
    # the latent sites of these parameters (the inverse of the model's map)
    p = params["alpha"] + params["beta"] + params["gamma"] / 2
    share = (params["alpha"] + params["gamma"] / 2) / p
    latent = {
        "sharpe": params["mu"] / scale,
        "vol_long_run": np.sqrt(params["omega"] / (1 - p) / DT),
        "persistence": p,
        "arch_share": share,
        "asymmetry": params["alpha"] / (2 * share * p),
        "dcc_persistence": a + b,
        "dcc_share": a / (a + b),
        "nu": nu,
    }
    model = seed(substitute(dcc_garch_model, data={k: jnp.asarray(v) for k, v in latent.items()}), 0)
    tr = trace(model).get_trace(jnp.asarray(r), DT, jnp.asarray(scale), dist_name="t", gjr=True)
    for name, value in params.items():
        np.testing.assert_allclose(np.asarray(tr[name]["value"]), value, rtol=1e-12, atol=1e-15)
    got = float(tr["obs"]["fn"].log_prob(tr["obs"]["value"]))

    h = params["omega"] / (1 - p)
    hs, eps = np.empty_like(r), np.empty_like(r)
    for t in range(len(r)):
        e = r[t] - params["mu"] * DT + h / 2
        hs[t], eps[t] = h, e / np.sqrt(h)
        h = params["omega"] + (params["alpha"] + params["gamma"] * (e < 0)) * e**2 + params["beta"] * h
    s = eps.T @ eps / len(eps)
    qbar = s / np.sqrt(np.outer(np.diag(s), np.diag(s)))
    q, expected = qbar.copy(), -0.5 * np.sum(np.log(hs))
    for e in eps:
        d = 1 / np.sqrt(np.diag(q))
        expected += stats.multivariate_t(np.zeros(3), q * np.outer(d, d) * (nu - 2) / nu, df=nu).logpdf(e)
        q = (1 - a - b) * qbar + a * np.outer(e, e) + b * q
    assert got == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(np.asarray(tr["corr"]["value"]), qbar, atol=1e-12)


# --- the posterior ------------------------------------------------------------------------------------


def test_recovers_known_parameters(fit):
    """The truth lies within Z posterior sd of the posterior mean (one data set; the coverage over
    many is test_interval_coverage)."""
    s = fit.summary
    for name in ("dcc_alpha", "dcc_beta"):
        assert abs(s[name]["mean"] - TRUE[name]) < Z * s[name]["sd"], (name, s[name])
    for name in ("omega", "alpha", "beta"):
        for i in range(2):
            p = s[f"{name}[{i}]"]
            assert abs(p["mean"] - TRUE[name][i]) < Z * p["sd"], (name, i, p)
    d = fit.summary["diagnostics"]
    assert d["max_r_hat"] < 1.05 and d["divergences"] == 0, d


def test_draws_satisfy_the_constraints(fit):
    d = fit.draws
    a, b = d["dcc_alpha"], d["dcc_beta"]
    assert np.all(a >= 0) and np.all(b >= 0) and np.all(a + b < 1)
    assert np.all(d["alpha"] + d["beta"] + d["gamma"] / 2 < 1) and np.all(d["omega"] > 0)
    corr = d["corr"]
    assert corr.shape == (fit.n_draws, 2, 2)
    np.testing.assert_allclose(np.diagonal(corr, axis1=1, axis2=2), 1.0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(corr) > 0)


def _garch_nll(x: np.ndarray, r: np.ndarray, var: float) -> float:
    """Negative log-likelihood of one asset's GARCH(1,1), normal shocks, h_1 = ω/(1 − α − β);
    x = (mu, omega / var, alpha, beta)."""
    mu, omega, alpha, beta = x[0], x[1] * var, x[2], x[3]
    if alpha + beta >= 1 or omega <= 0:
        return 1e10
    h = omega / (1 - alpha - beta)
    total = 0.0
    for rt in r:
        e = rt - mu * DT + h / 2
        total += math.log(2 * math.pi * h) + e * e / h
        h = omega + alpha * e * e + beta * h
    return 0.5 * total


def _garch_filter(x: np.ndarray, r: np.ndarray, var: float) -> np.ndarray:
    mu, omega, alpha, beta = x[0], x[1] * var, x[2], x[3]
    h, eps = omega / (1 - alpha - beta), np.empty_like(r)
    for t, rt in enumerate(r):
        e = rt - mu * DT + h / 2
        eps[t] = e / math.sqrt(h)
        h = omega + alpha * e * e + beta * h
    return eps


def _dcc_nll(x: np.ndarray, eps: np.ndarray, qbar: np.ndarray) -> float:
    """Negative correlation log-likelihood of two assets under DCC(a, b), written out for 2 x 2."""
    a, b = x
    if a < 0 or b < 0 or a + b >= 1:
        return 1e10
    q11, q12, q22 = 1.0, qbar[0, 1], 1.0
    total = 0.0
    for e1, e2 in eps:
        rho = q12 / math.sqrt(q11 * q22)
        det = 1 - rho * rho
        total += math.log(det) + (e1 * e1 - 2 * rho * e1 * e2 + e2 * e2) / det
        q11 = (1 - a - b) + a * e1 * e1 + b * q11
        q12 = (1 - a - b) * qbar[0, 1] + a * e1 * e2 + b * q12
        q22 = (1 - a - b) + a * e2 * e2 + b * q22
    return 0.5 * total


def two_step_mle(r: np.ndarray) -> dict[str, np.ndarray | float]:
    """Engle's (2002) two-step estimator: each asset's GARCH(1,1) by maximum likelihood, then
    (a, b) by maximizing the correlation likelihood of the standardized residuals with Q̄ their
    sample correlation."""
    out: dict[str, list] = {"mu": [], "omega": [], "alpha": [], "beta": []}
    eps = np.empty_like(r)
    for i in range(r.shape[1]):
        var = float(np.var(r[:, i]))
        best = min(
            (
                optimize.minimize(
                    _garch_nll,
                    [0.0, 1 - p, p * 0.1, p * 0.9],
                    args=(r[:, i], var),
                    method="Nelder-Mead",
                    options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 4000},
                )
                for p in (0.9, 0.97)
            ),
            key=lambda res: res.fun,
        )
        for k, v in zip(("mu", "omega", "alpha", "beta"), best.x, strict=True):
            out[k].append(v * var if k == "omega" else v)
        eps[:, i] = _garch_filter(best.x, r[:, i], var)
    s = eps.T @ eps / len(eps)
    qbar = s / np.sqrt(np.outer(np.diag(s), np.diag(s)))
    dcc = optimize.minimize(
        _dcc_nll, [0.05, 0.9], args=(eps, qbar), method="Nelder-Mead", options={"xatol": 1e-7}
    )
    return {k: np.asarray(v) for k, v in out.items()} | {
        "dcc_alpha": dcc.x[0],
        "dcc_beta": dcc.x[1],
        "corr": qbar[0, 1],
    }


def test_agrees_with_two_step_mle(fit, data):
    """Posterior means within 2 posterior sd of the two-step MLE (mu is compared too: both use the
    drift of r = mu dt - h/2 + ...)."""
    mle = two_step_mle(data["r"])
    s = fit.summary
    for name in ("dcc_alpha", "dcc_beta"):
        assert abs(s[name]["mean"] - mle[name]) < 2 * s[name]["sd"], (name, s[name], mle[name])
    for name in ("mu", "omega", "alpha", "beta"):
        for i in range(2):
            p = s[f"{name}[{i}]"]
            assert abs(p["mean"] - mle[name][i]) < 2 * p["sd"], (name, i, p, mle[name][i])
    # Q̄ is the sample correlation of the residuals in both: it moves with the GARCH parameters only
    corr = s["corr[0,1]"]
    assert abs(corr["mean"] - mle["corr"]) < 2 * corr["sd"] + 1e-3, (corr, mle["corr"])


# --- the posterior as configs and path models ----------------------------------------------------


def test_posterior_as_model_configs(fit):
    """Each draw and the mean are configs of the dcc_garch path model with the contract's keys, in
    the garch model's per-step units; h0 is the variance filtered to the end of the data on request."""
    from levopt.paths.dcc import DccGarch

    mean = fit.model_config()
    assert set(mean) == CONFIG_KEYS
    assert mean["dcc_alpha"] == pytest.approx(fit.summary["dcc_alpha"]["mean"])
    assert mean["omega"][1] == pytest.approx(fit.summary["omega[1]"]["mean"])
    assert mean["corr"][0][1] == mean["corr"][1][0] == pytest.approx(fit.summary["corr[0,1]"]["mean"])
    last = fit.model_config(7, initial_variance="last")
    assert set(last) == CONFIG_KEYS | {"h0"}
    np.testing.assert_allclose(last["h0"], fit.draws["h_last"][7])
    assert last["dcc_beta"] == fit.draws["dcc_beta"][7]
    for cfg in (mean, last):
        DccGarch.Config.model_validate(cfg)
    one = fit.to_model("mean")
    assert isinstance(one, DccGarch) and one.n_assets == 2
    idx = np.arange(0, fit.n_draws, 50)
    batched = fit.to_model("posterior", jnp.float32, draws=idx)
    assert all(leaf.shape[0] == len(idx) and leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(batched))
    third = DccGarch.from_config(
        DccGarch.Config.model_validate(fit.model_config(int(idx[3]))), DT, jnp.float32
    )
    for got, want in zip(jax.tree.leaves(batched), jax.tree.leaves(third), strict=True):
        np.testing.assert_array_equal(np.asarray(got[3]), np.asarray(want))


def test_correlation_statistics_against_pandas():
    r = simulate_dcc(TRUE, 300, seed=9)["r"]
    stats_ = correlation_statistics(r, window=30, tail=0.1)
    rolling = pd.Series(r[:, 0]).rolling(30).corr(pd.Series(r[:, 1])).dropna().to_numpy()
    np.testing.assert_allclose(rolling_correlation(r[None, :, 0], r[None, :, 1], 30)[0], rolling, atol=1e-10)
    assert stats_["rolling_corr_mean[0,1]"][0] == pytest.approx(rolling.mean(), abs=1e-10)
    assert stats_["rolling_corr_q05[0,1]"][0] == pytest.approx(np.quantile(rolling, 0.05), abs=1e-10)
    assert stats_["corr[0,1]"][0] == pytest.approx(np.corrcoef(r.T)[0, 1], abs=1e-12)
    ew = np.mean(np.expm1(r), axis=1)
    worst = ew <= np.quantile(ew, 0.1)
    assert worst.sum() == 30
    assert stats_["tail_corr[0,1]"][0] == pytest.approx(np.corrcoef(r[worst].T)[0, 1], abs=1e-12)


# --- data ------------------------------------------------------------------------------------------


def write_pair(tmp_path, r: np.ndarray, seed: int = 0) -> tuple:
    """Two price files whose common days carry the returns ``r``: A starts 5 days earlier, B ends
    3 days later; each file's last (partial) bar is dropped when read, so A loses 5 days to the
    alignment and B 2."""
    rng = np.random.default_rng(seed)
    a, b = tmp_path / "A.csv", tmp_path / "B.csv"
    write_prices(a, np.concatenate([rng.normal(0, 0.03, 5), r[:, 0], rng.normal(0, 0.03, 1)]), "2019-12-27")
    write_prices(b, np.concatenate([r[:, 1], rng.normal(0, 0.03, 3)]), "2020-01-01")
    return a, b


def test_aligned_files_and_wide_file(tmp_path, data):
    from levopt.calibrate.returns import multi_returns

    a, b = write_pair(tmp_path, data["r"][:200])
    got = multi_returns([a, b], steps_per_day=1, drop_last_partial=True)
    assert got.assets == ("A", "B") and got.dropped == {"A": 5, "B": 2} and got.n_gaps == 0
    np.testing.assert_allclose(got.values, data["r"][:200], atol=1e-12)
    assert got.start.startswith("2020-01-01") and got.values.shape == (200, 2)
    wide = tmp_path / "wide.csv"
    frame = pd.concat([load_wide_prices(a)[0].rename("BTC"), load_wide_prices(b)[0].rename("ETH")], axis=1)
    frame.index = frame.index.strftime("%Y-%m-%d")
    frame.rename_axis("date").reset_index().to_csv(wide, index=False)  # empty cells where one is missing
    series = load_wide_prices(wide)
    assert [s.name for s in series] == ["BTC", "ETH"]
    aligned = align_prices(series)
    assert aligned.dropped == {"BTC": 5, "ETH": 2}  # nothing dropped as partial here
    from_wide = multi_returns(wide, steps_per_day=1)
    np.testing.assert_allclose(from_wide.values[:200], data["r"][:200], atol=1e-12)


def test_bad_inputs_name_the_field(tmp_path, data):
    r = data["r"][:100]
    a, b = write_pair(tmp_path, r)
    late = tmp_path / "late.csv"
    write_prices(late, r[:, 0], "2030-01-01")
    with pytest.raises(ConfigError, match=r"^data: the price histories have no timestamps in common"):
        calibrate([a, late], "dcc_garch")
    with pytest.raises(ConfigError, match=r"^data: 1 asset \(A\); dcc_garch needs at least 2"):
        calibrate(a, "dcc_garch")
    with pytest.raises(ConfigError, match=r"^data: 1 asset"):
        calibrate(r[:, :1], "dcc_garch")
    bad = r.copy()
    bad[17, 1] = np.nan
    with pytest.raises(ConfigError, match=r"^data: row 17, asset 1 is nan"):
        calibrate(bad, "dcc_garch")
    text = b.read_text().splitlines()
    text[10] = text[10].split(",")[0] + ",inf"
    b.write_text("\n".join(text) + "\n")
    with pytest.raises(ConfigError, match=r"^data: B.csv row 11: close is inf"):
        calibrate([a, b], "dcc_garch")
    with pytest.raises(ConfigError, match=r"^model.mu: 3 values for 2 assets"):
        calibrate(r, "dcc_garch", fixed={"mu": [0.0, 0.1, 0.2]})


def test_calibrated_config_section():
    from levopt.config import check_model_section

    spec = check_model_section(
        {"kind": "dcc_garch", "dist": "t", "mu": [0.0, 0.1], "calibrate": {"data": ["a.csv", "b.csv"]}}
    )
    assert spec.fixed == {"mu": [0.0, 0.1]} and spec.calibrate.data == ["a.csv", "b.csv"]
    with pytest.raises(ConfigError, match="model.dcc_alpha: estimated by the calibration"):
        check_model_section({"kind": "dcc_garch", "dcc_alpha": 0.1, "calibrate": {"data": "w.csv"}})
    with pytest.raises(ConfigError, match="kind dcc_garch only"):
        check_model_section({"kind": "garch", "calibrate": {"data": ["a.csv", "b.csv"]}})


# --- the command line and a config -------------------------------------------------------------


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    from levopt.cli import main

    monkeypatch.setattr("sys.argv", ["levopt", "calibrate", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err.strip()


def test_calibrate_command_with_two_files(tmp_path, monkeypatch, capsys, data):
    """Two --data files, aligned: the posterior names dcc_alpha and dcc_beta, reports what the
    alignment dropped, and the predictive check compares the rolling and tail correlations."""
    a, b = write_pair(tmp_path, data["r"])
    out = tmp_path / "out"
    nuts = [f"--{k}={v}" for k, v in NUTS.items()]
    code, err = run_cli(
        monkeypatch, capsys, "--model", "dcc_garch", "--data", str(a), "--data", str(b), *nuts,
        "--ppc-paths", "32", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    post = json.loads((out / "posterior.json").read_text())
    assert {"dcc_alpha", "dcc_beta", "corr[0,1]", "omega[0]", "omega[1]"} <= set(post)
    assert post["assets"] == ["A", "B"] and post["alignment"] == {"dropped": {"A": 5, "B": 2}}
    assert post["n_obs"] == N_OBS and post["data"] == [str(a), str(b)]
    draws = pd.read_parquet(out / "draws.parquet")
    assert {"dcc_alpha", "dcc_beta", "corr[0,1]", "h_last[1]"} <= set(draws.columns)
    ppc = json.loads((out / "ppc.json").read_text())
    assert ppc["window"] == 30 and ppc["assets"] == ["A", "B"]
    table = ppc["statistics"]
    for name in ("rolling_corr_mean[0,1]", "rolling_corr_q05[0,1]", "tail_corr[0,1]", "annual_vol[1]"):
        assert 0 <= table[name]["p_value"] <= 1 and table[name]["q05"] <= table[name]["q95"], name
    realized = correlation_statistics(data["r"])
    assert table["tail_corr[0,1]"]["realized"] == pytest.approx(
        float(realized["tail_corr[0,1]"][0]), abs=1e-9
    )


@pytest.mark.parametrize(
    "case,message",
    [
        ("no_common", "--data: the price histories have no timestamps in common"),
        ("one_asset", "--data: 1 asset (A)"),
        ("non_finite", "--data: B.csv row 11: close is inf"),
        ("garch_two_files", "--data: 2 files given; --model garch takes one"),
    ],
)
def test_calibrate_command_bad_inputs(tmp_path, monkeypatch, capsys, data, case, message):
    a, b = write_pair(tmp_path, data["r"][:100])
    args = ["--model", "dcc_garch", "--data", str(a), "--data", str(b)]
    if case == "no_common":
        write_prices(b, data["r"][:100, 1], "2030-01-01")
    elif case == "one_asset":
        args = args[:4]
    elif case == "non_finite":
        lines = b.read_text().splitlines()
        lines[10] = lines[10].split(",")[0] + ",inf"
        b.write_text("\n".join(lines) + "\n")
    else:
        args[1] = "garch"
    code, err = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out" / "posterior.json").exists()


def test_model_from_calibration(tmp_path, data):
    """A config's calibrate block with two files builds a DccGarch with a leading axis of draws."""
    from levopt.calibrate import model_from_calibration
    from levopt.config import load_config
    from levopt.paths.dcc import DccGarch

    write_pair(tmp_path, data["r"])
    cfg = load_config(
        {
            "seed": 7,
            "paths": 256,
            "horizon_days": 10,
            "model": {
                "kind": "dcc_garch",
                "calibrate": {"data": ["A.csv", "B.csv"], **NUTS, "initial_variance": "last"},
                "uncertainty": "posterior",
            },
            "policy": {"kind": "constant", "leverage": 1.0},
        }
    )
    model, n_draws, summary = model_from_calibration(cfg, jnp.float64, tmp_path)
    assert isinstance(model, DccGarch) and n_draws == NUTS["samples"] * NUTS["chains"]
    assert summary["alignment"]["dropped"] == {"A": 5, "B": 2} and summary["uncertainty"] == "posterior"
    assert all(leaf.shape[0] == n_draws for leaf in jax.tree.leaves(model))


# --- slow statistical studies ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::levopt.calibrate.fit.CalibrationWarning")
def test_interval_coverage():
    """90% credible intervals (5%-95% posterior quantiles) cover the true parameters in about 90% of
    fits to independent data sets. Over n fits the coverage has binomial s.e. sqrt(0.9 * 0.1 / n)
    (0.087 for n = 12); the bound is the 0.1% quantile of Binomial(n, 0.9) / n. Engle's Q̄
    targeting makes the DCC's b slightly biased downwards in samples of this size (Aielli 2013),
    which the bound leaves room for."""
    n_fits = 12
    names = ["dcc_alpha", "dcc_beta"] + [f"{k}[{i}]" for k in ("omega", "alpha", "beta") for i in range(2)]
    truth = {"dcc_alpha": TRUE["dcc_alpha"], "dcc_beta": TRUE["dcc_beta"]}
    truth |= {f"{k}[{i}]": TRUE[k][i] for k in ("omega", "alpha", "beta") for i in range(2)}
    covered = dict.fromkeys(names, 0)
    for seed in range(n_fits):
        r = simulate_dcc(TRUE, N_OBS, seed=100 + seed)["r"]
        s = calibrate(r, "dcc_garch", seed=seed, **NUTS).summary
        for name in names:
            covered[name] += s[name]["q05"] <= truth[name] <= s[name]["q95"]
    lower = stats.binom.ppf(0.001, n_fits, 0.9) / n_fits
    for name, count in covered.items():
        assert count / n_fits >= lower, (name, count, n_fits, lower)


@pytest.mark.slow
def test_recovers_student_t():
    """Multivariate t shocks with one ν: ν, a and b recovered within Z posterior sd."""
    nu = 6.0
    r = simulate_dcc(TRUE, 2000, seed=5, nu=nu)["r"]
    fit = calibrate(r, "dcc_garch", dist="t", seed=0, **NUTS)
    s = fit.summary
    for name, value in (("nu", nu), ("dcc_alpha", TRUE["dcc_alpha"]), ("dcc_beta", TRUE["dcc_beta"])):
        assert abs(s[name]["mean"] - value) < Z * s[name]["sd"], (name, s[name])
    assert fit.model_config()["dist"] == "t" and fit.model_config()["nu"] == pytest.approx(s["nu"]["mean"])
