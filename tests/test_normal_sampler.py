"""The normal sampler of the path models (:func:`levopt.paths._student_t.normal`, Box-Muller on
open-grid threefry uniforms) against scipy.stats.norm, and the engine's chunk independence with it.

Monte Carlo tolerances are Z standard errors (conftest); the seeds are fixed, so the tests are
deterministic.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z, make_config
from scipy import stats

import levopt
from levopt.paths._student_t import normal
from levopt.problem import STREAM_PATHS

KEY = jax.random.key(20260101)
N = 400_000
_normal = jax.jit(normal, static_argnums=(1, 2))


def draws(dtype, n: int = N, seed: int = 0) -> np.ndarray:
    return np.asarray(_normal(jax.random.fold_in(KEY, seed), (n,), dtype), dtype=np.float64)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_kolmogorov_smirnov_against_scipy(dtype):
    z = draws(dtype)
    assert stats.kstest(z, stats.norm.cdf).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_moments_within_standard_errors(dtype):
    z = draws(dtype, seed=1)
    n = len(z)
    # E Z^k and the standard deviation of Z^k for the standard normal: Var Z^k = E Z^2k - (E Z^k)^2.
    normal_moment = {1: 0.0, 2: 1.0, 3: 0.0, 4: 3.0, 6: 15.0, 8: 105.0}
    for k in (1, 2, 3, 4):
        sd = math.sqrt(normal_moment[2 * k] - normal_moment[k] ** 2)
        assert abs(np.mean(z**k) - normal_moment[k]) < Z * sd / math.sqrt(n), k


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_tails_and_their_bound(dtype):
    z = draws(dtype, seed=2)
    n = len(z)
    for c in (2.0, 3.0, 4.0):
        p = 2 * stats.norm.sf(c)
        assert abs(np.mean(np.abs(z) > c) - p) < Z * math.sqrt(p * (1 - p) / n), c
    # The radius of the open grid of m mantissa bits is at most sqrt(2 (m + 1) log 2).
    m = jnp.finfo(dtype).nmant
    assert np.max(np.abs(z)) <= math.sqrt(2 * (m + 1) * math.log(2)) * (1 + 1e-6)
    assert np.all(np.isfinite(z))


def test_the_two_halves_of_a_pair_are_uncorrelated_and_draws_have_the_dtype():
    z = _normal(KEY, (2, N // 2), jnp.float64)  # cosines then sines of the same pairs
    r = np.corrcoef(np.asarray(z[0]), np.asarray(z[1]))[0, 1]
    assert abs(r) < Z / math.sqrt(N // 2)
    assert _normal(KEY, (256, 1), jnp.float32).dtype == jnp.float32
    # The numbers depend on the key and the count only, not on the shape they are laid out in.
    np.testing.assert_array_equal(
        _normal(KEY, (256, 2), jnp.float32).ravel(), _normal(KEY, (512,), jnp.float32)
    )
    assert not np.array_equal(
        _normal(KEY, (512,), jnp.float32), _normal(jax.random.fold_in(KEY, 1), (512,), jnp.float32)
    )


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "gbm", "mu": 0.2, "sigma": 0.7},
        {"kind": "merton", "mu": 0.1, "sigma": 0.5, "lam": 5.0, "jump_mean": -0.05, "jump_std": 0.1},
        {"kind": "garch", "mu": 0.2, "omega": 3.8e-5, "alpha": 0.12, "beta": 0.85},
    ],
    ids=lambda m: m["kind"],
)
def test_outcomes_do_not_depend_on_chunk_size(model):
    out = {}
    for chunk in (512, 2048):
        problem = levopt.build(make_config(paths=2048, horizon_days=20, chunk_size=chunk, model=model))
        out[chunk] = problem.simulate(problem.key(STREAM_PATHS))
    for field in ("wealth", "survival", "max_drawdown", "liq_log_wealth"):
        np.testing.assert_array_equal(getattr(out[512], field), getattr(out[2048], field), err_msg=field)


def test_a_float64_request_without_x64_gives_float32_normals():
    """As jax.random does: the bit layout follows the dtype the arrays get, not the one asked for."""
    with jax.enable_x64(False):
        z = normal(KEY, (N,), jnp.float64)
    assert z.dtype == jnp.float32
    z = np.asarray(z, dtype=np.float64)
    assert stats.kstest(z, stats.norm.cdf).pvalue > 1e-3
