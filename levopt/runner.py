"""Config -> PRNG keys -> model, policy and market -> simulation -> results."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.config import Config, load_config
from levopt.engine import Market, Outcome, simulate_outcome, simulate_returns
from levopt.objectives import Context, evaluate_metrics
from levopt.paths import MODELS, PathModel
from levopt.policies import POLICIES, Bounds, Policy

STREAM_PATHS, STREAM_OUT_OF_SAMPLE, STREAM_CALIBRATION = 0, 1, 2
"""Independent random streams derived from the config's seed by ``fold_in``."""


@dataclass(frozen=True)
class Problem:
    """Everything a simulation needs, built from a validated config."""

    cfg: Config
    model: PathModel
    policy: Policy
    free: dict[str, Bounds]
    market: Market
    dtype: Any
    n_draws: int | None = None
    calibration: dict[str, Any] | None = None

    @property
    def ctx(self) -> Context:
        return Context(self.cfg.years, self.cfg.ruin_floor)

    def key(self, stream: int) -> jax.Array:
        return jax.random.fold_in(jax.random.PRNGKey(self.cfg.seed), stream)

    def simulate(self, key: jax.Array, policy: Policy | None = None, paths: int | None = None) -> Outcome:
        cfg = self.cfg
        return simulate_outcome(
            key, self.model, self.policy if policy is None else policy, self.market,
            paths=paths or cfg.paths, steps=cfg.steps, dt=cfg.dt, dtype=self.dtype,
            ruin_floor=cfg.ruin_floor, chunk_size=cfg.chunk_size, n_draws=self.n_draws,
        )


def build(config: Config | dict | str | Path) -> Problem:
    """Validate a config and build its model, policy and market arrays."""
    cfg = load_config(config)
    dtype = jnp.float64 if cfg.precision == "float64" else jnp.float32
    calibration, n_draws = None, None
    if "calibrate" in cfg.model:
        from levopt.calibrate import model_from_calibration

        model, n_draws, calibration = model_from_calibration(cfg, dtype)
    else:
        model_cls = MODELS.get(cfg.model["kind"], "model.kind")
        model = model_cls.from_config(cfg.model_config_typed(), cfg.dt, dtype)
    policy_cls = POLICIES.get(cfg.policy["kind"], "policy.kind")
    policy, free = policy_cls.from_config(cfg.policy_config_typed(), model.n_assets, cfg.steps, cfg.dt, dtype)
    market = Market.from_config(cfg.market, dtype)
    return Problem(cfg, model, policy, free, market, dtype, n_draws, calibration)


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("levopt", "jax", "jaxlib", "optax", "numpyro", "cvxpy", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out["backend"] = jax.default_backend()
    return out


def evaluate(config: Config | dict | str | Path) -> dict[str, Any]:
    """Simulate a config's policy and report its metrics with Monte Carlo standard errors.

    Returns:
        ``{"metrics", "stderr", "config", "seed", "versions", "timings"}`` — what
        ``levopt evaluate`` writes as JSON.
    """
    t0 = time.perf_counter()
    problem = build(config)
    cfg = problem.cfg
    t_build = time.perf_counter()
    outcome = jax.block_until_ready(jax.jit(problem.simulate)(problem.key(STREAM_PATHS)))
    t_sim = time.perf_counter()
    metrics, stderr = evaluate_metrics(outcome, problem.ctx, cfg.metric_specs())
    t_end = time.perf_counter()
    result = {
        "metrics": metrics,
        "stderr": stderr,
        "config": cfg.resolved(),
        "seed": cfg.seed,
        "versions": versions(),
        "timings": {
            "build_s": t_build - t0,
            "simulate_s": t_sim - t_build,
            "metrics_s": t_end - t_sim,
            "total_s": t_end - t0,
            "path_steps_per_s": cfg.paths * cfg.steps / max(t_sim - t_build, 1e-12),
        },
    }
    if problem.calibration is not None:
        result["calibration"] = problem.calibration
    return result


def simulate(config: Config | dict | str | Path) -> np.ndarray:
    """Log-returns of the config's path model: ``(paths, steps)``, or ``(paths, steps, assets)``."""
    problem = build(config)
    cfg = problem.cfg
    x = simulate_returns(
        problem.key(STREAM_PATHS), problem.model, paths=cfg.paths, steps=cfg.steps, dt=cfg.dt,
        dtype=problem.dtype, n_draws=problem.n_draws,
    )
    x = np.asarray(x)
    return x[..., 0] if x.shape[-1] == 1 else x
