"""Maximum-likelihood GARCH/GJR filtered to the last bar (levopt.calibrate.garch_mle).

References, independent of the code under test: ``arch``'s likelihood and optimizer; a numpy
simulator written here (the true conditional variances of the data); scipy.stats densities; the
engine's own simulation of the fitted config. Monte Carlo tolerances are in standard errors (Z).
"""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z
from scipy import stats

import levopt
from levopt.calibrate import GarchFit, filter_garch, fit_garch_mle
from levopt.engine import simulate_returns
from levopt.errors import ConfigError

HOURLY = 1 / (365 * 24)
N_OBS = 2000


def garch_params(vol: float, *, alpha: float, beta: float, gamma: float = 0.0, mu: float = 0.0) -> dict:
    """Config parameters of a GARCH with annualized long-run volatility ``vol`` on hourly steps."""
    persistence = alpha + beta + gamma / 2
    return {
        "mu": mu,
        "omega": vol**2 * HOURLY * (1 - persistence),
        "alpha": alpha,
        "beta": beta,
        "gamma": gamma,
    }


TRUE = {
    ("normal", False): garch_params(0.6, alpha=0.08, beta=0.89, mu=0.2),
    ("t", True): garch_params(0.6, alpha=0.05, beta=0.89, gamma=0.06, mu=0.2) | {"nu": 5.0},
}


def simulate(params: dict, n: int, seed: int, dist: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    """``(r, h)``: n log-returns r_t = μΔ − h_t/2 + √h_t ε_t and the n + 1 true conditional variances
    (h_{n+1} is the variance of the step after the data), started at ω / (1 − P)."""
    rng = np.random.default_rng(seed)
    if dist == "t":
        nu = params["nu"]
        eps = rng.standard_t(nu, n) * math.sqrt((nu - 2) / nu)
    else:
        eps = rng.standard_normal(n)
    mu, omega, alpha, beta, gamma = (params[k] for k in ("mu", "omega", "alpha", "beta", "gamma"))
    h = np.empty(n + 1)
    h[0] = omega / (1 - alpha - beta - gamma / 2)
    r = np.empty(n)
    for t in range(n):
        shock = math.sqrt(h[t]) * eps[t]
        r[t] = mu * HOURLY - 0.5 * h[t] + shock
        h[t + 1] = omega + (alpha + gamma * (shock < 0)) * shock**2 + beta * h[t]
    return r, h


def loglik_scipy(r: np.ndarray, params: dict, dist: str) -> float:
    """ℓ at ``params`` from filter_garch's variances and scipy.stats densities."""
    h, _ = filter_garch(r, params, dt=HOURLY)
    loc = params["mu"] * HOURLY - h / 2
    if dist == "t":
        nu = params["nu"]
        return float(np.sum(stats.t.logpdf(r, nu, loc, np.sqrt(h * (nu - 2) / nu))))
    return float(np.sum(stats.norm.logpdf(r, loc, np.sqrt(h))))


# --- against arch -------------------------------------------------------------------------------------

ARCH_SCALE = 1e4  # arch fits ARCH_SCALE * r, whose sd is about 1 (arch's recommended range)


def arch_loglik(model, params: dict, backcast: float) -> float:
    """arch's log-likelihood of the decimal returns at our parameters, with arch's recursion started
    from ``backcast`` (decimal variance) and arch's constant mean set to μΔ − V/2, V = ω/(1 − P)."""
    c = ARCH_SCALE
    v = params["omega"] / (1 - params["alpha"] - params["beta"] - params["gamma"] / 2)
    gjr = model.volatility.num_params == 4
    vol = [params["omega"] * c**2, params["alpha"]] + ([params["gamma"]] if gjr else []) + [params["beta"]]
    resids = np.asarray(model.resids(np.array([c * (params["mu"] * HOURLY - v / 2)])))
    sigma2 = np.zeros_like(resids)
    bounds = model.volatility.variance_bounds(resids)
    model.volatility.compute_variance(np.array(vol), resids, sigma2, backcast * c**2, bounds)
    dist_params = np.array([params["nu"]]) if "nu" in params else np.array([])
    return float(model.distribution.loglikelihood(dist_params, resids, sigma2)) + resids.size * math.log(c)


def from_arch(res, dt: float) -> dict:
    """arch's estimates in our convention (μ annualized with the −V/2 term undone, decimal ω)."""
    p, c = res.params, ARCH_SCALE
    out = {"omega": p["omega"] / c**2, "alpha": p["alpha[1]"], "beta": p["beta[1]"]}
    out["gamma"] = p.get("gamma[1]", 0.0)
    v = out["omega"] / (1 - out["alpha"] - out["beta"] - out["gamma"] / 2)
    out["mu"] = (p["mu"] / c + v / 2) / dt
    if "nu" in p:
        out["nu"] = p["nu"]
    return out


@pytest.mark.parametrize(("dist", "gjr"), [("normal", False), ("t", True)])
def test_likelihood_and_maximum_agree_with_arch(dist, gjr):
    """Reference: ``arch`` (GARCH p=1, o=0/1, q=1, constant mean), its likelihood and its optimizer.

    The conventions differ in two places. (i) arch's mean is a constant, ours μΔ − h_t/2: the data
    have a per-step sd of 1e-4, so the difference (h_t − V)/2 is ~5e-5 of a step's sd and changes ℓ
    by ~1e-3. (ii) arch starts its recursion from a fixed ``backcast`` b, we from V(θ) = ω/(1 − P):
    with b = V(θ̂) the two likelihoods coincide at our maximum θ̂ but differ elsewhere. So rather
    than compare the maxima directly we evaluate each implementation's maximum under the other's
    likelihood. With gap(θ) = ℓ_ours(θ) − ℓ_arch(θ; b) and both optimizers exact,

        gap(θ_arch) ≤ ℓ_ours(θ̂) − ℓ_arch(θ_arch) ≤ gap(θ̂),

    the lower bound because θ̂ maximizes ours, the upper because θ_arch maximizes arch's. The
    parameters then differ by at most d = sqrt(2 (gap(θ̂) − gap(θ_arch))) of our standard errors
    (ℓ_ours(θ̂) − ℓ_ours(θ_arch) ≤ gap(θ̂) − gap(θ_arch) bounds the quadratic form ½ δᵀ I δ), plus
    0.05 for the optimizers' tolerances and the quadratic approximation. The standard errors are
    both inverse observed information (arch's ``classic``); the block of (ω, α, β[, γ][, ν]) does not
    depend on how the mean is parameterized, so they agree up to the conventions' shift (< 0.5 s.e.)
    and the two numerical Hessians: within 10%.
    """
    from arch import arch_model

    truth = garch_params(0.0107, alpha=0.08 - (0.03 if gjr else 0), beta=0.89, gamma=0.06 if gjr else 0)
    truth |= {"nu": 5.0} if dist == "t" else {}
    r, _ = simulate(truth, N_OBS, seed=11, dist=dist)
    assert 0.5e-4 < r.std() < 2e-4
    fit = fit_garch_mle(r, dt=HOURLY, dist=dist, gjr=gjr)
    b = fit.params["omega"] / (1 - fit.params["alpha"] - fit.params["beta"] - fit.params["gamma"] / 2)
    model = arch_model(
        ARCH_SCALE * r, mean="Constant", vol="GARCH", p=1, o=int(gjr), q=1, dist=dist, rescale=False
    )
    res = model.fit(disp="off", cov_type="classic", backcast=b * ARCH_SCALE**2, options={"ftol": 1e-14})
    theirs = from_arch(res, HOURLY)
    max_arch = res.loglikelihood + N_OBS * math.log(ARCH_SCALE)
    assert arch_loglik(model, theirs, b) == pytest.approx(max_arch, abs=1e-8)  # the evaluation is arch's

    gap_ours = loglik_scipy(r, fit.params, dist) - arch_loglik(model, fit.params, b)
    gap_theirs = loglik_scipy(r, theirs, dist) - arch_loglik(model, theirs, b)
    assert abs(gap_ours) < 0.01, gap_ours  # the same likelihood where both start from V(θ̂)
    tol = 1e-4  # the optimizers' tolerance on ℓ
    assert gap_theirs - tol <= fit.loglik - max_arch <= gap_ours + tol, (gap_theirs, fit.loglik - max_arch)

    bound = math.sqrt(2 * max(gap_ours - gap_theirs, 0.0)) + 0.05
    arch_names = {"omega": "omega", "alpha": "alpha[1]", "beta": "beta[1]", "gamma": "gamma[1]", "nu": "nu"}
    for name, se in fit.stderr.items():
        if name == "mu" or (name == "gamma" and not gjr):
            continue
        assert abs(fit.params[name] - theirs[name]) < bound * se, (name, fit.params[name], theirs[name], se)
        arch_se = res.std_err[arch_names[name]] / (ARCH_SCALE**2 if name == "omega" else 1)
        assert 0.9 < se / arch_se < 1.1, (name, se, arch_se)


# --- filtering --------------------------------------------------------------------------------------


def test_filter_with_true_parameters_reproduces_the_simulated_variances():
    """Reference: the numpy simulator's own variances (h_1 = ω/(1 − P), GJR indicator on the shock)."""
    for (dist, _), truth in TRUE.items():
        r, h = simulate(truth, 500, seed=3, dist=dist)
        filtered, h_next = filter_garch(r, truth, dt=HOURLY)
        np.testing.assert_allclose(filtered, h[:-1], rtol=1e-12)
        assert h_next == pytest.approx(h[-1], rel=1e-12)


def coverage_study(seeds: range) -> tuple[np.ndarray, np.ndarray]:
    """(h_next − true h_{T+1}) / h_next_stderr over seeds, alternating normal GARCH and t GJR fits."""
    z = []
    for seed in seeds:
        dist, gjr = ("normal", False) if seed % 2 == 0 else ("t", True)
        r, h = simulate(TRUE[dist, gjr], N_OBS, seed=seed, dist=dist)
        fit = fit_garch_mle(r, dt=HOURLY, dist=dist, gjr=gjr)
        z.append((fit.h_next - h[-1]) / fit.h_next_stderr)
    z = np.array(z)
    return z, np.abs(z) < 1.96


def assert_calibrated(z: np.ndarray, covered: np.ndarray) -> None:
    """The standard errors are right in two ways. Coverage: the number of ±1.96 s.e. intervals that
    cover is not improbably low for Binomial(n, 0.95). Scale: Σ z² is in neither tail of χ²_n (z is
    close to N(0, 1): sd 0.98 in a study of 200 fits); for 40 fits that catches an s.e. off by a
    factor 2 (Σ z² times 4 or divided by 4 leaves [14, 84]), which 40 coverage indicators may not.
    Each tail probability must exceed 6e-5, the false-failure rate of a Z = 4 check."""
    k, n = int(covered.sum()), covered.size
    assert stats.binom.cdf(k, n, 0.95) > 6e-5, (k, n)
    chi2 = float(np.sum(z**2))
    assert stats.chi2.sf(chi2, n) > 6e-5 and stats.chi2.cdf(chi2, n) > 6e-5, (chi2, n)


def test_h_next_covers_the_true_next_variance():
    """Reference: the true conditional variance of the step after the data, from the simulator.

    Filtering with the true parameters gives it exactly (the previous test), so the error of
    ``h_next`` is the parameter-estimation error that ``h_next_stderr`` (delta method) measures:
    each error is within Z standard errors, ±1.96 s.e. covers about 95% of 40 fits and Σ z² is a
    plausible χ²_40 (a study of 100 fits per model gave coverage 95% and 95%, sd(z) 0.98;
    ``test_h_next_coverage_study`` repeats it on 100 fits)."""
    z, covered = coverage_study(range(40))
    assert np.all(np.abs(z) < Z), z
    assert_calibrated(z, covered)


@pytest.mark.slow  # 100 fits, ~40 s
def test_h_next_coverage_study():
    """As above over 100 fits (50 of each model)."""
    z, covered = coverage_study(range(1000, 1100))
    assert np.all(np.abs(z) < Z + 0.5), z  # the maximum of 100 |z| exceeds Z with probability ~0.6%
    assert_calibrated(z, covered)


def test_volatility_spike_raises_h_next():
    """Five returns of 8 sample sds appended to the data: the filtered variance of the next step
    rises more than fourfold, refitted or filtered with the old parameters (the point of filtering
    to now); α ≈ 0.08 predicts about 20 times the long-run variance."""
    r, _ = simulate(TRUE["normal", False], N_OBS, seed=5)
    before = fit_garch_mle(r, dt=HOURLY)
    spike = 8 * r.std() * np.array([1.0, -1.0, 1.0, -1.0, -1.0])
    after = fit_garch_mle(np.concatenate([r, spike]), dt=HOURLY)
    assert after.n_obs == before.n_obs + 5
    assert after.h_next > 4 * before.h_next, (after.h_next, before.h_next)
    _, filtered = filter_garch(np.concatenate([r, spike]), before.params, dt=HOURLY)
    assert filtered > 4 * before.h_next
    assert after.vol_next > 2 * after.vol_long_run


def test_filter_garch_reproduces_the_fit():
    """``filter_garch`` with the fitted params gives the fit's variances bit for bit; the fit's ℓ is
    the likelihood of those variances (scipy densities); ``window`` is the fit of the last returns."""
    r, _ = simulate(TRUE["t", True], N_OBS, seed=7, dist="t")
    fit = fit_garch_mle(r, dt=HOURLY, dist="t", gjr=True)
    assert isinstance(fit, GarchFit) and fit.h.shape == (N_OBS,) and fit.n_obs == N_OBS
    h, h_next = filter_garch(r, fit.params, dt=HOURLY)
    np.testing.assert_array_equal(h, fit.h)
    assert h_next == fit.h_next
    assert fit.loglik == pytest.approx(loglik_scipy(r, fit.params, "t"), rel=1e-12)
    # A model config is accepted as params too.
    assert filter_garch(r, fit.model_config(), dt=HOURLY)[1] == fit.h_next
    windowed = fit_garch_mle(
        np.concatenate([np.full(50, np.nan), r]), dt=HOURLY, dist="t", gjr=True, window=N_OBS
    )
    assert windowed.params == fit.params and windowed.h_next == fit.h_next


# --- the fit as a levopt config ---------------------------------------------------------------------


def test_model_config_starts_the_engine_at_h_next():
    """Reference: the engine. The built model's initial state is ``h_next``, its current
    (annualized) volatility √(h_next/Δ), the first step's vol √h_next, and 20,000 simulated first
    steps have variance h_next within Z standard errors (s.e. of a sample variance of t_ν shocks,
    h·√((κ − 1)/n) with kurtosis κ = 3 + 6/(ν − 4))."""
    r, _ = simulate(TRUE["t", True], N_OBS, seed=9, dist="t")
    fit = fit_garch_mle(r, dt=HOURLY, dist="t", gjr=True)
    section = fit.model_config()
    assert set(section) == {"kind", "mu", "omega", "alpha", "beta", "gamma", "dist", "nu", "h0"}
    assert section["h0"] == fit.h_next and section["nu"] == fit.params["nu"]
    cfg = {
        "paths": 256,
        "horizon_days": 1,
        "steps_per_day": 24,
        "model": section,
        "policy": {"kind": "constant", "leverage": 1.0},
    }
    problem = levopt.build(cfg)
    model, dt = problem.model, problem.cfg.dt
    assert dt == pytest.approx(HOURLY, rel=1e-15)
    h0 = model.init(jnp.float64)
    np.testing.assert_allclose(np.asarray(h0), [fit.h_next], rtol=1e-15)
    np.testing.assert_allclose(
        np.asarray(model.current_vol(h0, dt)), [math.sqrt(fit.h_next / dt)], rtol=1e-12
    )
    _, out = model.step(h0, model.noise(jax.random.PRNGKey(0), 1, jnp.float64), dt)
    np.testing.assert_allclose(np.asarray(out.vol), [math.sqrt(fit.h_next)], rtol=1e-12)

    n = 20_000
    x = np.asarray(simulate_returns(jax.random.PRNGKey(1), model, paths=n, steps=1, dt=dt, dtype=jnp.float64))
    nu = fit.params["nu"]
    kurtosis = 3 + 6 / (nu - 4) if nu > 4.5 else pytest.fail(f"nu {nu} too small for the check")
    se = fit.h_next * math.sqrt((kurtosis - 1) / n)
    assert abs(x[:, 0, 0].var() - fit.h_next) < Z * se

    # Without h0 the simulation starts at the unconditional variance.
    plain = levopt.build(cfg | {"model": fit.model_config(h0=False)}).model
    v = fit.params["omega"] / (1 - fit.persistence)
    np.testing.assert_allclose(np.asarray(plain.init(jnp.float64)), [v], rtol=1e-12)
    # The summary is strict JSON.
    summary = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert summary["h_next"] == fit.h_next and summary["stderr"]["nu"] == fit.stderr["nu"]
    assert set(summary["params"]) == set(fit.params)


def test_normal_fit_reports_gamma_fixed_and_no_nu():
    r, _ = simulate(TRUE["normal", False], 500, seed=13)
    fit = fit_garch_mle(r, dt=HOURLY)
    assert set(fit.params) == set(fit.stderr) == {"mu", "omega", "alpha", "beta", "gamma"}
    assert fit.params["gamma"] == 0.0 and fit.stderr["gamma"] == 0.0
    assert all(math.isfinite(v) and v > 0 for k, v in fit.stderr.items() if k != "gamma")
    assert "nu" not in fit.model_config() and levopt.build(
        {
            "horizon_days": 1,
            "steps_per_day": 24,
            "model": fit.model_config(),
            "policy": {"kind": "constant", "leverage": 1.0},
        }
    )


# --- bad input --------------------------------------------------------------------------------------

GOOD = np.random.default_rng(0).standard_normal(300) * 0.01


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"returns": GOOD[:50]}, "returns", "at least 100"),
        ({"returns": np.where(np.arange(300) == 7, np.nan, GOOD)}, "returns", "element 7"),
        ({"returns": np.where(np.arange(300) == 7, np.inf, GOOD)}, "returns", "finite"),
        ({"returns": GOOD.reshape(100, 3)}, "returns", "1-D"),
        ({"returns": np.zeros(300)}, "returns", "equal"),
        ({"dist": "cauchy"}, "dist", "allowed: normal, t"),
        ({"dist": "student_t"}, "dist", "allowed: normal, t"),
        ({"window": 10}, "window", ">= 100"),
        ({"window": 150.0}, "window", "integer"),
        ({"dt": 0.0}, "dt", "> 0"),
        ({"dt": float("nan")}, "dt", "> 0"),
    ],
)
def test_bad_input_names_the_argument(kwargs, field, words):
    args = {"returns": GOOD, "dt": HOURLY} | kwargs
    with pytest.raises(ConfigError, match=words) as err:
        fit_garch_mle(args.pop("returns"), **args)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mu": 0.0, "alpha": 0.1, "beta": 0.8}, "params.omega"),
        ({"mu": 0.0, "omega": 1e-6, "alpha": 0.1, "beta": 0.9}, "params.beta"),
        ({"mu": 0.0, "omega": -1e-6, "alpha": 0.1, "beta": 0.8}, "params.omega"),
        ({"mu": 0.0, "omega": 1e-6, "alpha": 0.1, "beta": 0.8, "gamma": -0.2}, "params.gamma"),
        ({"mu": 0.0, "omega": 1e-6, "alpha": 0.1, "beta": 0.8, "sigma": 0.5}, "params.sigma"),
        ({"mu": [0.0, 0.1], "omega": 1e-6, "alpha": 0.1, "beta": 0.8}, "params.mu"),
    ],
)
def test_filter_garch_rejects_bad_params(params, field):
    with pytest.raises(ConfigError) as err:
        filter_garch(GOOD, params, dt=HOURLY)
    assert err.value.field == field
