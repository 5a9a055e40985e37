"""Compiled programs are reused: within a process (``levopt.simulate`` compiles once per model
structure and shape) and across processes (JAX's persistent compilation cache, in the directory
``LEVOPT_CACHE_DIR`` names; :mod:`levopt.cache`).

The cross-process tests run levopt in fresh interpreters, since JAX reads the cache settings once
per process; their evidence is JAX's own cache events (entries written, entries loaded), not
timings: how much faster a warm cache makes a run is measured by ``benchmarks/bench_repeat.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

import levopt
from levopt.cache import ENV_VAR, cache_dir
from levopt.config import load_config
from levopt.engine import simulate_returns
from levopt.engine.simulate import simulate_returns_jit
from levopt.problem import STREAM_PATHS, build_model, dtype_of

GARCH = {"kind": "garch", "mu": 0.3, "omega": 3.8e-5, "alpha": 0.13, "beta": 0.85, "h0": 2.54e-3}


def garch_config(seed: int = 0, **model: float) -> dict:
    # A shape no other test uses, so that the first call here is a real first call.
    return {
        "seed": seed,
        "paths": 300,
        "horizon_days": 23,
        "precision": "float64",
        "model": {**GARCH, **model},
    }


class XlaCompiles:
    """Counts XLA compilations (``jax.monitoring``; one listener for the whole session)."""

    count = 0
    _registered = False

    @classmethod
    def start(cls) -> type[XlaCompiles]:
        if not cls._registered:
            jax.monitoring.register_event_duration_secs_listener(cls._on_event)
            cls._registered = True
        return cls

    @classmethod
    def _on_event(cls, event: str, duration: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            cls.count += 1


def test_simulate_compiles_once_and_gives_the_same_numbers():
    compiles = XlaCompiles.start()
    first = levopt.simulate(garch_config(seed=0))
    size = simulate_returns_jit._cache_size()

    # Another seed and other parameter values: the same program, nothing traced or compiled.
    before = compiles.count
    second = levopt.simulate(garch_config(seed=1, omega=4.0e-5, beta=0.84))
    again = levopt.simulate(garch_config(seed=0))
    assert compiles.count == before, "a repeated levopt.simulate compiled again"
    assert simulate_returns_jit._cache_size() == size
    assert second.shape == first.shape == (300, 23)
    assert not np.array_equal(second, first)
    np.testing.assert_array_equal(again, first)

    # The numbers are those of the engine's function called eagerly (how levopt.simulate ran
    # before): the compiled program is the same computation.
    cfg = load_config(garch_config(seed=0))
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), STREAM_PATHS)
    eager = simulate_returns(
        key, build_model(cfg), paths=cfg.paths, steps=cfg.steps, dt=cfg.dt, dtype=dtype_of(cfg)
    )
    np.testing.assert_allclose(first, np.asarray(eager)[..., 0], rtol=1e-12, atol=0)


def test_simulate_compiles_again_for_a_new_shape():
    compiles = XlaCompiles.start()
    levopt.simulate(garch_config())
    before = compiles.count
    x = levopt.simulate(dict(garch_config(), paths=301))
    assert x.shape == (301, 23)
    assert compiles.count > before  # the counter sees compilations: the test above can fail


# --------------------------------------------------------------------------------------------
# Where the cache lives (resolved from the environment; nothing is enabled here)
# --------------------------------------------------------------------------------------------


def test_cache_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"
    monkeypatch.setenv(ENV_VAR, "~/somewhere")
    assert cache_dir() == Path.home() / "somewhere"
    for off in ("off", "OFF", " off "):
        monkeypatch.setenv(ENV_VAR, off)
        assert cache_dir() is None
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "levopt"
    monkeypatch.setenv(ENV_VAR, "")
    assert cache_dir() == tmp_path / "xdg" / "levopt"


# --------------------------------------------------------------------------------------------
# The persistent cache, in fresh processes
# --------------------------------------------------------------------------------------------

CHILD = """
import json, sys, jax

events = {"requests": 0, "hits": 0, "written": 0}
names = {
    "/jax/compilation_cache/compile_requests_use_cache": "requests",
    "/jax/compilation_cache/cache_hits": "hits",
    "/jax/compilation_cache/cache_misses": "written",
}
jax.monitoring.register_event_listener(lambda e, **_: e in names and events.__setitem__(names[e], events[names[e]] + 1))
import levopt

before = jax.config.jax_compilation_cache_dir
x = levopt.simulate(json.loads(sys.argv[1]))
print(json.dumps({"dir_before": before, "dir_after": jax.config.jax_compilation_cache_dir,
                  "sum": float(x.sum()), **events}))
"""

SMALL = {"seed": 3, "paths": 256, "horizon_days": 5, "precision": "float64", "model": GARCH}


def run_child(env_changes: dict[str, str | None], tmp_path: Path) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "JAX_COMPILATION_CACHE_DIR")}
    # A private home and cache root: nothing the test does lands in the user's real cache.
    env.update({"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    for k, v in env_changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(SMALL)], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def entries(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def test_second_process_loads_the_compiled_programs(tmp_path):
    cache = tmp_path / "cache"
    first, _ = run_child({ENV_VAR: str(cache)}, tmp_path)
    # Importing levopt set nothing; its first computation pointed JAX at the directory.
    assert first["dir_before"] is None
    assert first["dir_after"] == str(cache)
    assert first["written"] > 0 and first["hits"] == 0
    written = entries(cache)
    assert len(written) >= first["written"]

    second, _ = run_child({ENV_VAR: str(cache)}, tmp_path)
    # Every program the second process needed came from the cache: XLA compiled nothing.
    assert second["requests"] > 0
    assert second["hits"] == second["requests"] == first["written"]
    assert second["written"] == 0
    assert second["sum"] == first["sum"]
    assert len(entries(cache)) == len(written)
    assert entries(tmp_path / "xdg") == [] and entries(tmp_path / "home") == []


def test_default_directory_is_the_user_cache(tmp_path):
    result, _ = run_child({ENV_VAR: None}, tmp_path)
    assert result["dir_after"] == str(tmp_path / "xdg" / "levopt")
    assert result["written"] > 0
    assert len(entries(tmp_path / "xdg" / "levopt")) >= result["written"]


def test_off_writes_nothing(tmp_path):
    result, stderr = run_child({ENV_VAR: "off"}, tmp_path)
    assert result["dir_after"] is None
    # (JAX still counts "requests" with no directory set: it asks, finds no cache, compiles.)
    assert result["hits"] == result["written"] == 0
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert "CacheWarning" not in stderr


def test_unwritable_directory_warns_once_and_runs_without_cache(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result, stderr = run_child({ENV_VAR: str(blocker / "cache")}, tmp_path)
    assert result["dir_after"] is None and result["written"] == 0
    warnings = [line for line in stderr.splitlines() if "CacheWarning" in line]
    assert len(warnings) == 1, stderr
    assert "compilation cache disabled" in warnings[0] and ENV_VAR in warnings[0]
    assert result["sum"] == float(levopt.simulate(SMALL).sum())


def test_a_cache_the_process_configured_itself_is_kept(tmp_path):
    own = tmp_path / "jax_own"
    # The process's own full choice, threshold included: with JAX's 1 s default whether anything is
    # written would depend on how fast this machine compiles.
    changes = {
        "JAX_COMPILATION_CACHE_DIR": str(own),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        ENV_VAR: str(tmp_path / "levopt_cache"),
    }
    result, _ = run_child(changes, tmp_path)
    assert result["dir_before"] == result["dir_after"] == str(own)
    assert result["written"] > 0 and len(entries(own)) >= result["written"]
    assert not (tmp_path / "levopt_cache").exists()
    assert entries(tmp_path / "xdg") == []
