"""Streaming metrics (levopt.objectives.streaming, levopt.estimate) against independent references.

References: numpy's mean/variance for the running moments; a sort of all atoms at once, written
here, for VaR/CVaR (the definition: the smallest loss whose cumulative probability reaches the
level, and Rockafellar–Uryasev's minimum); and the in-memory metrics of the full outcome array
(levopt's own jnp implementation — a consistency check that the stream reproduces it).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import levopt.estimate as estimate_mod
import levopt.objectives.streaming as streaming
from levopt.estimate import estimate
from levopt.objectives import STDERR_BATCHES
from levopt.objectives.streaming import (
    Moments,
    TailSearch,
    WindowRequest,
    merge_partials,
    merge_tail,
    reduce_atoms,
    reduce_tail,
)
from levopt.problem import STREAM_PATHS
from levopt.runner import build


def _reference_var_cvar(losses: np.ndarray, weights: np.ndarray, level: float) -> tuple[float, float]:
    order = np.argsort(losses, kind="stable")
    ell, w = losses[order], weights[order]
    cum = np.cumsum(w)
    a = ell[min(int(np.searchsorted(cum, level * cum[-1])), ell.size - 1)]
    return float(a), float(a + np.sum(w * np.maximum(ell - a, 0.0)) / (cum[-1] * (1 - level)))


def _search(losses, weights, paths, level, chunk=1000):
    """Stream atoms (k per path, atom i of path i % paths) through a TailSearch in chunks."""
    k = losses.size // paths
    path_of = np.arange(losses.size) % paths
    search = TailSearch(level, paths)
    first = path_of < chunk
    search.start(losses[first], weights[first], chunk)
    passes = 0
    while not search.done:
        request, total = search.request(), {}
        for start in range(0, paths, chunk):
            sel = (path_of >= start) & (path_of < start + chunk)
            total = merge_partials(
                total, reduce_atoms(request, losses[sel], weights[sel], path_of[sel], paths // STDERR_BATCHES)
            )
        search.resolve(total)
        passes += 1
    assert k >= 1
    return search, passes


@pytest.mark.parametrize("cap", [1 << 15, 64])
@pytest.mark.parametrize("level", [0.5, 0.95, 0.99])
def test_single_pass_windows_equal_full_sort(level, cap, monkeypatch):
    """Windows around the pilot's quantile, narrowed as paths arrive (often, with a small cap),
    give the exact VaR and CVaR of every group."""
    monkeypatch.setattr(streaming, "WINDOW_CAP", cap)
    rng = np.random.default_rng(4)
    paths = 20_000
    ell = np.concatenate([rng.standard_t(3, size=paths), np.full(paths, 4.0)])
    w = np.concatenate([np.full(paths, 0.95), rng.uniform(0, 0.1, paths)])
    w[rng.integers(0, 2 * paths, 300)] = 0.0
    keep = w > 0
    search = _windowed_kept(ell, w, paths, level)
    assert search.done
    var, cvar = _reference_var_cvar(ell[keep], w[keep], level)
    assert search.value("var") == var
    assert search.value("cvar") == pytest.approx(cvar, rel=1e-12)
    n = paths // STDERR_BATCHES
    groups = [
        _reference_var_cvar(*[a[np.tile((np.arange(paths) // n) == g, 2) & keep] for a in (ell, w)], level)
        for g in range(STDERR_BATCHES)
    ]
    assert search.stderr("cvar") == pytest.approx(
        np.std([g[1] for g in groups], ddof=1) / math.sqrt(20), rel=1e-9
    )


def _windowed_kept(ell, w, paths, level, pilot=None):
    # Zero-weight atoms are dropped before reduction, as levopt.estimate does.
    path_of = np.arange(ell.size) % paths
    keep = w > 0
    request_src = pilot if pilot is not None else (ell[(path_of < 1000) & keep], w[(path_of < 1000) & keep])
    request = WindowRequest.from_pilot(*request_src, level, 1000)
    acc = None
    for start in range(0, paths, 1000):
        sel = (path_of >= start) & (path_of < start + 1000) & keep
        acc = merge_tail(acc, reduce_tail(request, ell[sel], w[sel], path_of[sel], paths, start, 1000))
    search = TailSearch(level, paths)
    search.adopt(acc)
    return search


def test_window_that_misses_the_quantile_falls_back_to_exact_passes():
    """A pilot from elsewhere puts the window in the wrong place: the single pass resolves nothing
    and the histogram passes still find the exact quantile."""
    rng = np.random.default_rng(5)
    paths = 10_000
    ell, w = rng.normal(size=paths), np.ones(paths)
    search = _windowed_kept(ell, w, paths, 0.95, pilot=(rng.normal(3.0, 0.1, 1000), np.ones(1000)))
    assert not search.done
    search.start(ell[:1000], w[:1000], 1000)
    while not search.done:
        search.resolve(reduce_atoms(search.request(), ell, w, np.arange(paths), paths // STDERR_BATCHES))
    var, cvar = _reference_var_cvar(ell, w, 0.95)
    assert search.value("var") == var
    assert search.value("cvar") == pytest.approx(cvar, rel=1e-12)


def test_moments_merge_equals_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_t(3, size=10_001) * 1e3 + 1e6  # large offset: a naive sum of squares loses digits
    merged = Moments()
    for part in np.array_split(x, [3, 4, 500, 7000]):
        merged = merged.merge(Moments.of(part))
    assert merged.n == x.size
    assert merged.mean == pytest.approx(np.mean(x), rel=1e-15)
    assert merged.stderr == pytest.approx(np.std(x, ddof=1) / math.sqrt(x.size), rel=1e-12)


@pytest.mark.parametrize("level", [0.5, 0.95, 0.99])
def test_tail_search_equals_full_sort(level):
    rng = np.random.default_rng(1)
    paths = 20_000
    # Two atoms per path as in the engine: a continuous one and a tied "liquidation" atom with a
    # small weight, plus atoms of zero weight, which never decide a quantile.
    ell = np.concatenate([rng.normal(size=paths), np.full(paths, 3.0)])
    w = np.concatenate([np.full(paths, 0.97), rng.uniform(0, 0.06, paths)])
    w[rng.integers(0, 2 * paths, 500)] = 0.0
    search, _ = _search(ell, w, paths, level)
    var, cvar = _reference_var_cvar(ell[w > 0], w[w > 0], level)
    assert search.value("var") == var
    assert search.value("cvar") == pytest.approx(cvar, rel=1e-12)
    # Batch means: group g holds paths [g n, (g + 1) n).
    n = paths // STDERR_BATCHES
    groups = [
        _reference_var_cvar(*[a[np.tile((np.arange(paths) // n) == g, 2) & (w > 0)] for a in (ell, w)], level)
        for g in range(STDERR_BATCHES)
    ]
    assert search.stderr("var") == pytest.approx(
        np.std([g[0] for g in groups], ddof=1) / math.sqrt(20), rel=1e-9
    )
    assert search.stderr("cvar") == pytest.approx(
        np.std([g[1] for g in groups], ddof=1) / math.sqrt(20), rel=1e-9
    )


def test_tail_search_refines_crowded_bins_and_resolves_ties(monkeypatch):
    """A bin with more atoms than the cap is subdivided; a bin of identical losses resolves at once."""
    monkeypatch.setattr(streaming, "COLLECT_CAP", 50)
    rng = np.random.default_rng(2)
    paths = 30_000
    ell = np.round(rng.normal(size=paths), 2)  # many ties
    ell[: paths // 4] = 13.8  # a quarter of the paths ruined at the same loss
    w = np.ones(paths)
    for level in (0.6, 0.8, 0.999):
        search, passes = _search(ell, w, paths, level, chunk=700)
        var, cvar = _reference_var_cvar(ell, w, level)
        assert passes >= 2
        assert search.value("var") == var
        assert search.value("cvar") == pytest.approx(cvar, rel=1e-12)


def _config(**over):
    cfg = dict(
        seed=3,
        paths=30_000,
        horizon_days=20,
        chunk_size=4096,
        precision="float64",
        model=dict(kind="garch", mu=0.0, omega=2e-5, alpha=0.08, beta=0.9, gamma=0.02, dist="t", nu=4.0),
        market=dict(maintenance_margin=0.005, funding_rate=0.1, fee=0.0005),
        policy=dict(kind="constant", leverage=4.0, rebalance=1),
        metrics=[
            "log_growth",
            "mean_return",
            "cvar",
            "var",
            {"metric": "cvar", "level": 0.99, "label": "cvar99"},
            {"metric": "var", "returns": "simple", "label": "var_simple"},
            "liquidation_probability",
            "liquidation_probability_discrete",
            "max_drawdown",
        ],
    )
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def garch_problem():
    problem = build(_config())
    return problem, problem.key(STREAM_PATHS)


def test_stream_equals_in_memory_metrics(garch_problem):
    """Several chunks streamed give the in-memory metrics of the whole outcome array."""
    problem, key = garch_problem
    in_memory = problem.metrics(problem.simulate(key))
    streamed = estimate(problem, key)
    for label, value in in_memory["metrics"].items():
        assert streamed["metrics"][label] == pytest.approx(value, rel=1e-12, abs=1e-15), label
        assert streamed["stderr"][label] == pytest.approx(in_memory["stderr"][label], rel=1e-9), label
    assert streamed["metrics"]["var"] == in_memory["metrics"]["var"]  # an atom, selected exactly


def test_regenerated_chunks_equal_kept_chunks(garch_problem, monkeypatch):
    """Past the memory budget the quantile pass regenerates chunks from their keys: same numbers."""
    problem, key = garch_problem
    kept = estimate(problem, key)
    monkeypatch.setattr(estimate_mod, "RETAIN_BYTES", 0)
    assert estimate(problem, key) == kept


def test_chunk_size_changes_only_rounding():
    a = estimate(*_built(chunk_size=2048))
    b = estimate(*_built(chunk_size=8192))
    for label, value in a["metrics"].items():
        assert b["metrics"][label] == pytest.approx(value, rel=1e-12, abs=1e-15), label


def _built(**over):
    problem = build(_config(**over))
    return problem, problem.key(STREAM_PATHS)


def test_user_statistic_without_tail_form_falls_back_to_memory():
    import levopt

    @levopt.objective("median_wealth_test", aggregate="statistic")
    def median_wealth(outcome, ctx):
        import jax.numpy as jnp

        return jnp.median(outcome.wealth)

    problem, key = _built(paths=5000, metrics=["median_wealth_test", "log_growth"])
    streamed = estimate(problem, key)
    in_memory = problem.metrics(problem.simulate(key))
    assert streamed == in_memory


_DEVICES_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from levopt.estimate import estimate
    from levopt.problem import STREAM_PATHS
    from levopt.runner import build
    cfg = json.loads(sys.argv[1])
    problem = build(cfg)
    key = problem.key(STREAM_PATHS)
    one = estimate(problem, key, devices=jax.devices()[:1])
    four = estimate(problem, key, devices=jax.devices())
    print(json.dumps({"devices": len(jax.devices()), "same": one == four, "one": one}))
    """
)


def test_sharded_over_devices_is_identical():
    """Chunks spread over 4 forced CPU devices give bit-identical numbers to one device."""
    import json

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    cfg = _config(paths=12_000, chunk_size=2048, horizon_days=10)
    out = subprocess.run(
        [sys.executable, "-c", _DEVICES_SCRIPT, json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["same"]
    reference = estimate(*_built(paths=12_000, chunk_size=2048, horizon_days=10))
    assert result["one"] == json.loads(json.dumps(reference))


def test_ray_evaluation_is_identical(ray_local):
    """Path blocks as tasks on a local Ray instance: the same numbers as the local run."""
    import levopt

    cfg = _config(paths=9000, chunk_size=1024, horizon_days=5)
    local = levopt.evaluate(cfg)
    with warnings.catch_warnings():
        # Ray forks its raylet from a process where JAX threads already run; harmless here.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        remote = levopt.evaluate(cfg, executor="ray")
    assert remote["metrics"] == local["metrics"]
    assert remote["stderr"] == local["stderr"]


def test_no_atom_with_positive_weight_gives_nan_not_an_error():
    search = _windowed_kept(np.ones(2000), np.zeros(2000), 2000, 0.95)
    assert search.done
    assert math.isnan(search.value("var")) and math.isnan(search.value("cvar"))
