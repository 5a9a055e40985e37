"""Config -> PRNG keys -> model, policy and market -> simulation -> results."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.config import Config, load_config
from levopt.engine import Market, Outcome, draw_noise, simulate_outcome_jit, simulate_returns
from levopt.errors import ConfigError
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

    def simulate(
        self, key: jax.Array, policy: Policy | None = None, paths: int | None = None, noise: Any = None
    ) -> Outcome:
        cfg = self.cfg
        return simulate_outcome_jit(
            key, self.model, self.policy if policy is None else policy, self.market,
            paths=paths or cfg.paths, steps=cfg.steps, dt=cfg.dt, dtype=self.dtype,
            ruin_floor=cfg.ruin_floor, chunk_size=cfg.chunk_size, n_draws=self.n_draws, noise=noise,
        )

    def draw_noise(self, key: jax.Array, paths: int) -> Any:
        return draw_noise(key, self.model, paths=paths, steps=self.cfg.steps, dtype=self.dtype, n_draws=self.n_draws)


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
        extra = {"base_dir": Path(cfg._base_dir)} if "base_dir" in inspect.signature(model_cls.from_config).parameters else {}
        model = model_cls.from_config(cfg.model_config_typed(), cfg.dt, dtype, **extra)
    policy_cls = POLICIES.get(cfg.policy["kind"], "policy.kind")
    policy, free = policy_cls.from_config(
        cfg.policy_config_typed(), model.n_assets, cfg.steps, cfg.dt, dtype, market=cfg.market
    )
    market = Market.from_config(cfg.market, dtype)
    check_opening(cfg, policy)
    return Problem(cfg, model, policy, free, market, dtype, n_draws, calibration)


def check_opening(cfg: Config, policy: Policy) -> None:
    """Reject a position that the maintenance margin would liquidate at the opening trade.

    Applies to policies holding explicit weights (constant, schedule: its first segment); the
    opening of state-dependent policies is an outcome of the simulation.
    """
    weights = getattr(policy, "weights", None)
    if weights is None:
        return
    opening = np.asarray(weights, float)
    opening = opening if opening.ndim == 1 else opening.reshape(-1, opening.shape[-1])[0]
    gross = float(np.sum(np.abs(opening)))
    mkt = cfg.market
    equity = 1.0 - (mkt.fee + mkt.slippage) * gross
    if gross > 0 and equity <= mkt.maintenance_margin * gross:
        raise ConfigError(
            "market.maintenance_margin",
            f"{mkt.maintenance_margin} liquidates a {gross:g}x position at open "
            f"(equity after fees {equity:.4f} <= margin {mkt.maintenance_margin * gross:.4f}); "
            f"allowed: < {equity / gross:.4f} at this leverage, or lower the leverage",
        )


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
    outcome = jax.block_until_ready(problem.simulate(problem.key(STREAM_PATHS)))
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


def _report_params(problem: Problem, params: dict[str, np.ndarray]) -> dict[str, Any]:
    """Optimized parameters under the config's own names (``leverage`` for one asset)."""
    spec = problem.cfg.policy
    out: dict[str, Any] = {}
    for name, value in params.items():
        value = np.asarray(value, float)
        if name == "weights" and "leverage" in spec:
            out["leverage"] = value.reshape(-1).tolist() if value.size > 1 else float(value.reshape(-1)[0])
        else:
            out[name] = value.tolist()
    return out


def _canonical(name: str, options: dict[str, Any]) -> tuple:
    """A metric with its options, defaults filled in (``cvar`` equals ``cvar(level=0.95)``)."""
    from levopt.objectives import get_metric

    params = list(inspect.signature(get_metric(name).fn).parameters.values())[2:]
    full = {p.name: p.default for p in params} | options
    return name, tuple(sorted(full.items()))


def _report_specs(problem: Problem, extra: dict[str, tuple[str, dict[str, Any]]]) -> tuple[dict, dict[str, str]]:
    """The config's metrics plus ``extra`` ones not already among them, and where each extra label
    is reported (``cvar(level=0.95)`` is reported as ``cvar``)."""
    specs = dict(problem.cfg.metric_specs())
    known = {_canonical(name, opts): label for label, (name, opts) in specs.items()}
    where = {}
    for label, spec in extra.items():
        where[label] = known.setdefault(_canonical(*spec), label)
        specs.setdefault(where[label], spec)
    return specs, where


def _metric_report(problem: Problem, outcome: Outcome, extra: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    specs, _ = _report_specs(problem, extra)
    metrics, stderr = evaluate_metrics(outcome, problem.ctx, specs)
    return {"metrics": metrics, "stderr": stderr}


def run(config: Config | dict | str | Path, *, profiles: bool = True) -> dict[str, Any]:
    """Optimize the config's policy (``objective`` + ``optimizer``) and evaluate it out of sample.

    With ``profiles`` the result also holds ``trajectories`` (equity and leverage quantiles over
    time) and ``leverage_profile`` (growth and risk with the policy's leverage scaled), for plots.

    Returns:
        ``{"policy", "in_sample", "out_of_sample", "constraints", "optimizer", "config", "seed",
        "versions"}`` — what ``levopt run`` writes to ``results.json``.
    """
    from levopt.optimize import optimize_policy
    from levopt.optimize.spec import PARAMETER_CONSTRAINTS, parse_objective

    t0 = time.perf_counter()
    problem = build(config)
    cfg = problem.cfg
    objective = parse_objective(cfg.objective)
    found = optimize_policy(problem, objective)
    policy = found.policy
    labelled = {c.label(): (c.metric, c.options) for c in objective.constraints if c.metric not in PARAMETER_CONSTRAINTS}
    labelled[objective.goal.label()] = (objective.goal.metric, objective.goal.options)
    oos_outcome = jax.block_until_ready(problem.simulate(problem.key(STREAM_OUT_OF_SAMPLE), policy=policy))
    out_of_sample = _metric_report(problem, oos_outcome, labelled)
    _, where = _report_specs(problem, labelled)
    constraints = []
    for c in objective.constraints:
        label = c.label()
        if c.metric in PARAMETER_CONSTRAINTS:
            value = float(np.max(np.sum(np.abs(np.atleast_2d(np.asarray(policy.weights))), axis=-1)))
            se = 0.0
        else:
            value, se = out_of_sample["metrics"][where[label]], out_of_sample["stderr"][where[label]]
        violation = c.violation(value)
        constraints.append(
            {
                "metric": label, "sense": c.sense, "limit": c.limit, "value": value, "stderr": se,
                "in_sample": found.in_sample["metrics"].get(where.get(label, label), found.in_sample["metrics"].get(label, value)),
                # Holds out of sample up to Monte Carlo error (two standard errors).
                "satisfied": bool(violation <= 2 * (se if se == se else 0.0)),
                "strictly_satisfied": bool(violation <= 0),
            }
        )
    from levopt.profiles import leverage_profile, trajectory_quantiles

    profile_key = problem.key(STREAM_OUT_OF_SAMPLE)
    return {
        "policy": _report_params(problem, found.params),
        "in_sample": found.in_sample,
        "out_of_sample": out_of_sample,
        "constraints": constraints,
        "optimizer": found.optimizer | {"wall_s": found.optimizer.get("wall_s", time.perf_counter() - t0)},
        "config": cfg.resolved(),
        "seed": cfg.seed,
        "versions": versions(),
        **(
            {"trajectories": trajectory_quantiles(problem, policy, profile_key),
             "leverage_profile": leverage_profile(problem, policy, profile_key)}
            if profiles else {}
        ),
        "timings": {"total_s": time.perf_counter() - t0},
        **({"calibration": problem.calibration} if problem.calibration is not None else {}),
    }
