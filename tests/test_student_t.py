"""The Student-t sampler of GARCH-t (Bailey's polar method in trigonometric form) against scipy.

References: scipy.stats.t, f and multivariate_t (distributions), the closed form of E|T| and its
derivative in nu (gradients), JAX's threefry (random words, bit for bit). Distribution checks are
Kolmogorov-Smirnov tests that pass when p > P_MIN; each is paired with the alternative it must
reject at that threshold on the same number of draws, so the check can fail. Moments and gradients
are within Z standard errors of their sample means.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z, make_config
from scipy import special, stats

import levopt
from levopt.engine import simulate_outcome_jit, simulate_returns
from levopt.paths import Garch
from levopt.paths._student_t import _random_words, open_uniform, sin_pi, student_t, student_t_noise
from levopt.problem import STREAM_PATHS

P_MIN = 1e-4
"""KS p-value below which a sample is declared not to follow the reference distribution."""

DTYPES = [jnp.float32, jnp.float64]
KEY = jax.random.PRNGKey(11)


def draws(nu: float, n: int, dim: int = 1, dtype=jnp.float64, seed: int = 0) -> np.ndarray:
    """``(n, dim)`` standard t_nu draws (identity scale) as float64."""
    noise = _noise(jax.random.fold_in(KEY, seed), n, dim, dtype)
    return np.asarray(student_t(noise, jnp.asarray(nu, dtype)), dtype=np.float64)


_noise = jax.jit(student_t_noise, static_argnums=(1, 2, 3))


def abs_mean(nu: float) -> float:
    """E|T| for T ~ t_nu (nu > 1): 2 sqrt(nu) Γ((nu+1)/2) / (sqrt(π) (nu - 1) Γ(nu/2))."""
    log = math.log(2) + 0.5 * math.log(nu) + special.gammaln((nu + 1) / 2)
    log -= 0.5 * math.log(math.pi) + math.log(nu - 1) + special.gammaln(nu / 2)
    return math.exp(log)


def d_abs_mean(nu: float) -> float:
    """d/dnu E|T|, from the derivative of the log of :func:`abs_mean`."""
    dlog = 0.5 / nu + 0.5 * special.digamma((nu + 1) / 2) - 1 / (nu - 1) - 0.5 * special.digamma(nu / 2)
    return abs_mean(nu) * dlog


# --- building blocks ------------------------------------------------------------------------------


@pytest.mark.skipif(not jax.config.jax_threefry_partitionable, reason="words follow partitionable threefry")
def test_random_words_are_jax_threefry_words():
    key = jax.random.fold_in(KEY, 3)
    hi, lo = _random_words(key, (300, 2), 32)
    split = jax.random.key_data(jax.random.split(key, (300, 2)))
    np.testing.assert_array_equal(hi, split[..., 0])
    np.testing.assert_array_equal(lo, split[..., 1])
    a, b = _random_words(key, (300, 2), 64)
    bits = jax.random.bits(key, (2, 300, 2), jnp.uint64)
    np.testing.assert_array_equal(a, bits[0])
    np.testing.assert_array_equal(b, bits[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_open_uniform_lies_on_the_open_symmetric_grid(dtype):
    m = jnp.finfo(dtype).nmant
    u = np.concatenate([np.asarray(a, np.float64) for a in open_uniform(KEY, (200_000,), dtype)])
    k = u * 2.0**m - 0.5
    np.testing.assert_array_equal(k, np.round(k))
    assert k.min() >= 0 and k.max() <= 2**m - 1
    assert stats.kstest(u, "uniform").pvalue > P_MIN
    # The other key implementation goes through jax.random.split: still uniform.
    v = np.asarray(open_uniform(jax.random.key(1, impl="rbg"), (200_000,), dtype)[0], np.float64)
    assert 0 < v.min() and v.max() < 1 and stats.kstest(v, "uniform").pvalue > P_MIN


@pytest.mark.parametrize("dtype", DTYPES)
def test_sin_pi_within_a_few_ulp(dtype):
    x = np.linspace(-0.5, 0.5, 100_001).astype(dtype)
    exact = np.sin(np.pi * x.astype(np.longdouble))
    err = np.abs(np.asarray(sin_pi(jnp.asarray(x)), np.longdouble) - exact)
    assert np.max(err / np.spacing(np.abs(exact).astype(dtype) + np.finfo(dtype).tiny)) <= 4


# --- one dimension ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nu", [2.05, 2.5, 5.0, 50.0])
def test_univariate_is_student_t(nu, dtype):
    t = draws(nu, 200_000, dtype=dtype)[:, 0]
    assert stats.kstest(t, stats.t(nu).cdf).pvalue > P_MIN
    # Power: a 5% error in scale is rejected on as many draws.
    assert stats.kstest(t, stats.t(nu, scale=1.05).cdf).pvalue < P_MIN


@pytest.mark.parametrize("nu", [2.5, 10.0])
def test_tails_at_the_1e3_quantile(nu):
    """P(|T| > q) for the two-sided 1e-3 quantile: a binomial count within Z standard errors."""
    n, p = 2_000_000, 1e-3
    t = draws(nu, n, seed=1)[:, 0]
    q = stats.t(nu).ppf(1 - p / 2)
    count = np.count_nonzero(np.abs(t) > q)
    assert abs(count - n * p) < Z * math.sqrt(n * p * (1 - p))


@pytest.mark.parametrize("nu", [2.5, 5.0, 50.0])
def test_mean_absolute_value(nu):
    t = np.abs(draws(nu, 400_000, seed=2)[:, 0])
    assert abs(t.mean() - abs_mean(nu)) < Z * t.std(ddof=1) / math.sqrt(t.size)


@pytest.mark.parametrize("nu", [10.0, 50.0])
def test_variance(nu):
    """E[T^2] = nu / (nu - 2); the standard error of the mean of T^2 needs E[T^4] < inf (nu > 4)."""
    t2 = draws(nu, 400_000, seed=3)[:, 0] ** 2
    assert abs(t2.mean() - nu / (nu - 2)) < Z * t2.std(ddof=1) / math.sqrt(t2.size)


def test_no_loop_in_the_sampler():
    """Every lane does the same fixed work: no rejection loop (the old gamma sampler had one)."""
    for dim in (1, 3):
        jaxpr = str(jax.make_jaxpr(lambda k, d=dim: student_t_noise(k, 256, d, jnp.float32))(KEY))
        assert "while" not in jaxpr and "cond" not in jaxpr


# --- several dimensions -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("dim", "nu"), [(2, 3.0), (3, 2.5), (4, 8.0), (5, 4.0)])
def test_multivariate_radius_and_marginals(dim, nu, dtype):
    """|T|^2 / d ~ F(d, nu) (one shared mixing variable) and every coordinate ~ t_nu."""
    t = draws(nu, 100_000, dim, dtype, seed=4)
    assert stats.kstest((t**2).sum(axis=1) / dim, stats.f(dim, nu).cdf).pvalue > P_MIN
    for i in range(dim):
        assert stats.kstest(t[:, i], stats.t(nu).cdf).pvalue > P_MIN
    # Power: independent t coordinates (a mixing variable each) have the right marginals only.
    separate = draws(nu, 100_000 * dim, 1, dtype, seed=5).reshape(-1, dim)
    assert stats.kstest((separate**2).sum(axis=1) / dim, stats.f(dim, nu).cdf).pvalue < P_MIN


@pytest.mark.parametrize(
    ("corr", "nu"),
    [([[1.0, 0.6], [0.6, 1.0]], 4.0), ([[1.0, -0.3, 0.5], [-0.3, 1.0, 0.2], [0.5, 0.2, 1.0]], 3.0)],
)
def test_garch_shocks_against_scipy_multivariate_t(corr, nu):
    """The model's correlated unit-variance shocks against scipy.stats.multivariate_t draws with
    shape corr (nu - 2) / nu: two-sample KS on the product of the first two coordinates and on the
    maximum coordinate, and the Mahalanobis radius against F(d, nu)."""
    n, d = 100_000, len(corr)
    cfg = Garch.Config(omega=1e-5, alpha=[0.1] * d, beta=0.8, dist="t", nu=nu, corr=corr)
    model = Garch.from_config(cfg, 1 / 365, jnp.float64)
    eps = np.asarray(jax.vmap(model.standardized_shock)(model.noise(KEY, n, jnp.float64)))
    shape = np.asarray(corr) * (nu - 2) / nu
    ref = stats.multivariate_t(np.zeros(d), shape, df=nu).rvs(n, random_state=np.random.default_rng(0))
    assert stats.ks_2samp(eps[:, 0] * eps[:, 1], ref[:, 0] * ref[:, 1]).pvalue > P_MIN
    assert stats.ks_2samp(eps.max(axis=1), ref.max(axis=1)).pvalue > P_MIN
    radius = np.einsum("ni,ij,nj->n", eps, np.linalg.inv(shape), eps) / d
    assert stats.kstest(radius, stats.f(d, nu).cdf).pvalue > P_MIN
    # Power: the same correlation applied to independent t coordinates changes the product's law.
    indep = stats.t(nu, scale=math.sqrt((nu - 2) / nu)).rvs((n, d), random_state=np.random.default_rng(1))
    indep = indep @ np.linalg.cholesky(corr).T
    assert stats.ks_2samp(indep[:, 0] * indep[:, 1], ref[:, 0] * ref[:, 1]).pvalue < P_MIN


# --- gradients in nu ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nu", [3.0, 5.0, 20.0])
def test_pathwise_gradient_of_mean_absolute_value(nu, dtype):
    """Per-draw d|T|/dnu averages to d/dnu E|T| (closed form), within Z standard errors."""
    n = 400_000
    noise = _noise(jax.random.fold_in(KEY, 6), n, 1, dtype)
    grad = jax.vmap(jax.grad(lambda v, z: jnp.abs(student_t(z, v)[0])), in_axes=(None, 0))
    g = np.asarray(grad(jnp.asarray(nu, dtype), noise), np.float64)
    assert np.all(np.isfinite(g))
    assert abs(g.mean() - d_abs_mean(nu)) < Z * g.std(ddof=1) / math.sqrt(n)


@pytest.mark.parametrize("nu", [3.0, 8.0])
def test_gradient_of_garch_shock_scale(nu):
    """Through the model: E|eps| = sqrt((nu - 2) / nu) E|T| for the unit-variance shock."""
    n = 400_000
    model = Garch.from_config(
        Garch.Config(omega=1e-5, alpha=0.1, beta=0.8, dist="t", nu=nu), 1 / 365, jnp.float64
    )
    noise = model.noise(jax.random.fold_in(KEY, 7), n, jnp.float64)

    def abs_shock(v, z):
        return jnp.abs(eqx.tree_at(lambda m: m.nu, model, v).standardized_shock(z)[0])

    g = np.asarray(jax.vmap(jax.grad(abs_shock), in_axes=(None, 0))(jnp.asarray(nu), noise))
    c = math.sqrt((nu - 2) / nu)
    exact = c * d_abs_mean(nu) + abs_mean(nu) / (nu**2 * c)
    assert abs(g.mean() - exact) < Z * g.std(ddof=1) / math.sqrt(n)


def test_gradient_of_multivariate_second_moment():
    """E|T|^2 = d nu / (nu - 2) in d dimensions: derivative -2 d / (nu - 2)^2."""
    n, d, nu = 400_000, 3, 10.0
    noise = _noise(jax.random.fold_in(KEY, 8), n, d, jnp.float64)
    grad = jax.vmap(jax.grad(lambda v, z: jnp.sum(student_t(z, v) ** 2)), in_axes=(None, 0))
    g = np.asarray(grad(jnp.asarray(nu), noise))
    assert abs(g.mean() + 2 * d / (nu - 2) ** 2) < Z * g.std(ddof=1) / math.sqrt(n)


def test_gradient_through_garch_paths_matches_finite_differences():
    """d/dnu of the mean realized variance of simulated GARCH-t paths: autodiff against a central
    difference on the same random numbers (they do not depend on nu, so the sample mean is a
    smooth function of nu and the two agree to the difference's O(h^2) error)."""
    model = Garch.from_config(
        Garch.Config(omega=2e-5, alpha=0.1, beta=0.85, dist="t", nu=4.0), 1 / 365, jnp.float64
    )

    @jax.jit
    def realized_variance(nu):
        m = eqx.tree_at(lambda m: m.nu, model, nu)
        x = simulate_returns(KEY, m, paths=1024, steps=50, dt=1 / 365, dtype=jnp.float64)
        return jnp.mean(jnp.sum(x**2, axis=1))

    nu, h = jnp.asarray(4.0), 1e-4
    fd = (realized_variance(nu + h) - realized_variance(nu - h)) / (2 * h)
    np.testing.assert_allclose(jax.grad(realized_variance)(nu), fd, rtol=1e-6)


# --- reproducibility in the engine ------------------------------------------------------------------

GARCH_T = {"kind": "garch", "mu": 0.1, "omega": 2e-5, "alpha": 0.1, "beta": 0.85, "dist": "t", "nu": 4.0}


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_outcomes_do_not_depend_on_chunk_size(precision):
    out = {}
    for chunk in (1024, 4096):
        problem = levopt.build(
            make_config(paths=4096, horizon_days=30, precision=precision, chunk_size=chunk, model=GARCH_T)
        )
        out[chunk] = problem.simulate(problem.key(STREAM_PATHS))
    for field in ("wealth", "survival", "max_drawdown", "liq_log_wealth"):
        np.testing.assert_array_equal(getattr(out[1024], field), getattr(out[4096], field), err_msg=field)
    again = problem.simulate(problem.key(STREAM_PATHS))
    np.testing.assert_array_equal(again.wealth, out[4096].wealth)


def test_per_path_nu_uses_its_own_draw_and_no_one_elses():
    """A batched model with nu per draw: path p's returns are those of draw p % 3 simulated alone
    (to rounding: gathered per-path parameters and broadcast scalars compile to differently ordered
    arithmetic), and its outcome does not depend on the chunk size."""
    problem = levopt.build(make_config(paths=2048, horizon_days=20, model=GARCH_T))
    nus = jnp.asarray([2.5, 5.0, 40.0])
    batched = jax.tree.map(lambda a: jnp.stack([a] * 3), problem.model)
    batched = eqx.tree_at(lambda m: m.nu, batched, nus)
    key, cfg = problem.key(STREAM_PATHS), problem.cfg
    kw = {"paths": 2048, "steps": cfg.steps, "dt": cfg.dt, "dtype": jnp.float64}
    everything = np.asarray(simulate_returns(key, batched, n_draws=3, **kw))
    for i in range(3):
        alone = np.asarray(simulate_returns(key, eqx.tree_at(lambda m: m.nu, problem.model, nus[i]), **kw))
        np.testing.assert_allclose(everything[i::3], alone[i::3], rtol=1e-12, atol=1e-15)
    outcomes = [
        simulate_outcome_jit(
            key,
            batched,
            problem.policy,
            problem.market,
            ruin_floor=cfg.ruin_floor,
            chunk_size=chunk,
            n_draws=3,
            **kw,
        ).wealth
        for chunk in (512, 2048)
    ]
    np.testing.assert_array_equal(outcomes[0], outcomes[1])
