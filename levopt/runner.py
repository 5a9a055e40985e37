"""Config -> problem -> simulation or optimization -> typed results (the top of the library)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from levopt.calibrate import funding_from_calibration, model_from_calibration
from levopt.cascade import CascadeParams
from levopt.cascade.history import crowd_history
from levopt.config import Config, config_dir, load_config, parse_objective
from levopt.engine.simulate import simulate_returns_jit
from levopt.estimate import estimate
from levopt.objectives import get_metric
from levopt.optimize import Found, Progress, optimize_policy
from levopt.precision import scoped_x64
from levopt.problem import (
    STREAM_OUT_OF_SAMPLE,
    STREAM_PATHS,
    Problem,
    build_model,
    build_problem,
    dtype_of,
    report_specs,
    versions,
)
from levopt.profiles import leverage_profile, trajectory_quantiles
from levopt.resources import check_memory
from levopt.results import ConstraintResult, EvaluateResult, RunResult, parameter_label

ConfigSource = Config | dict | str | Path


@scoped_x64
def build(config: ConfigSource, *, base_dir: str | Path | None = None) -> Problem:
    """Validate a config and build its model, policy and market arrays.

    A model section with a ``calibrate`` block is calibrated first (numpyro NUTS) and its posterior
    becomes the model. Relative data paths resolve against ``base_dir`` (default: the config
    file's directory, or the working directory for a dict or a :class:`Config`).
    """
    cfg = load_config(config)
    base = config_dir(config, base_dir)
    funding_draws, calibration = None, None
    funding = cfg.market.funding
    if funding is not None and funding.calibrate is not None:
        funding_draws, funding_summary = funding_from_calibration(cfg, base)
        calibration = {"funding": funding_summary}
    if cfg.cascade is not None and cfg.cascade.crowd.data is not None:
        # The crowd reconstructed from history is reported like a calibration.
        calibration = {"crowd": crowd_history(cfg.cascade.crowd, base).summary()} | (calibration or {})
    if "calibrate" in cfg.model:
        model, n_draws, model_calibration = model_from_calibration(cfg, dtype_of(cfg), base)
        calibration = model_calibration | (calibration or {})
        return build_problem(
            cfg, base, model=model, n_draws=n_draws, calibration=calibration, funding_draws=funding_draws
        )
    return build_problem(cfg, base, calibration=calibration, funding_draws=funding_draws)


def _check_memory(config: ConfigSource, base_dir: str | Path | None) -> None:
    """Refuse, before compiling, a config whose computation would not fit in memory."""
    check_memory(load_config(config), config_dir(config, base_dir))


@scoped_x64
def evaluate(
    config: ConfigSource,
    *,
    base_dir: str | Path | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Simulate a config's policy and report its metrics with Monte Carlo standard errors.

    Memory stays bounded by ``chunk_size`` whatever ``paths`` is (:mod:`levopt.estimate`): the
    chunks run on every local JAX device, or as tasks on a Ray cluster with ``executor="ray"``
    (``address``: ``host:port``; None starts a local Ray instance) — with identical numbers.

    Returns:
        ``{"metrics", "stderr", "config", "seed", "versions", "timings"}`` (an
        :class:`~levopt.results.EvaluateResult`) — what ``levopt evaluate`` writes as JSON.
    """
    t0 = time.perf_counter()
    _check_memory(config, base_dir)
    problem = build(config, base_dir=base_dir)
    cfg = problem.cfg
    t_build = time.perf_counter()
    info: dict[str, Any] = {}
    estimates = estimate(problem, problem.key(STREAM_PATHS), executor=executor, address=address, info=info)
    t_end = time.perf_counter()
    return EvaluateResult(
        **estimates,
        config=cfg.resolved(),
        seed=cfg.seed,
        versions=versions(),
        timings={
            "build_s": t_build - t0,
            "simulate_s": t_end - t_build,
            "total_s": t_end - t0,
            "path_steps_per_s": cfg.paths * cfg.steps / max(t_end - t_build, 1e-12),
            **{k: v for k, v in info.items() if v is not None},
        },
        calibration=problem.calibration,
    ).to_dict()


@scoped_x64
def simulate(config: ConfigSource, *, base_dir: str | Path | None = None) -> np.ndarray:
    """Log-returns of the config's path model: ``(paths, steps)``, or ``(paths, steps, assets)``.

    Paths depend on the model only (and on the crowd of a ``cascade:`` block, which they then pass
    through): ``policy`` and ``market`` may be left out of the config.
    """
    cfg = load_config(config)
    base = config_dir(config, base_dir)
    dtype = dtype_of(cfg)
    if "calibrate" in cfg.model:
        model, n_draws, _ = model_from_calibration(cfg, dtype, base)
    else:
        model, n_draws = build_model(cfg, base), None
    key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), STREAM_PATHS)
    # Compiled once per model structure and shape: a repeated call pays the computation only.
    cascade = None
    if cfg.cascade is not None:
        cascade = CascadeParams.from_config(cfg.cascade, dtype, n_assets=model.n_assets, base_dir=base)
    x = simulate_returns_jit(
        key, model, paths=cfg.paths, steps=cfg.steps, dt=cfg.dt, dtype=dtype, n_draws=n_draws, cascade=cascade
    )
    x = np.asarray(x)
    return x[..., 0] if x.shape[-1] == 1 else x


def _constraint_results(
    problem: Problem, found: Found, objective: Any, out_of_sample: dict[str, Any]
) -> list:
    """Each constraint's value out of sample, its standard error and whether it holds."""
    _, where = report_specs(problem.cfg, objective.reported())
    results = []
    for c in objective.constraints:
        label = c.key
        metric = get_metric(c.metric)
        if metric.on_outcomes:
            value, se = out_of_sample["metrics"][where[label]], out_of_sample["stderr"][where[label]]
            in_sample = found.in_sample["metrics"].get(
                where[label], found.in_sample["metrics"].get(label, value)
            )
        else:
            value = float(metric.weights_fn(np.asarray(found.policy.position_weights()), **c.options))
            se, in_sample = 0.0, value
        violation = c.violation(value)
        results.append(
            ConstraintResult(
                metric=label,
                sense=c.sense,
                limit=c.limit,
                value=value,
                stderr=se,
                in_sample=in_sample,
                # Holds out of sample up to Monte Carlo error (two standard errors).
                satisfied=bool(violation <= 2 * (se if se == se else 0.0)),
                strictly_satisfied=bool(violation <= 0),
            )
        )
    return results


IDENTIFIED_SPREAD = 0.1
"""A parameter whose s.e. over the replicate searches exceeds this fraction of its allowed range
(or of its value, when the range is open) is reported as not identified."""


def _spread_report(problem: Problem, found: Found) -> tuple[dict[str, Any], list[str]]:
    """``policy_stderr`` (the spread of the replicate optima, under the policy's reported names and
    shapes) and the parameters the objective does not pin down (``name`` or ``name[i]``)."""
    policy_cfg = problem.cfg.policy_config_typed()
    spread = found.spread()
    loose: list[str] = []
    for name, se in spread.items():
        value = np.asarray(found.params[name], float)
        bounds = problem.free[name]
        width = np.where(np.isfinite(bounds.upper - bounds.lower), bounds.upper - bounds.lower, np.abs(value))
        ((shown, reported),) = problem.policy.report_params({name: value}, policy_cfg).items()
        bad = np.reshape(se > IDENTIFIED_SPREAD * width, np.shape(reported))
        loose += [parameter_label(shown, i) for i in np.ndindex(bad.shape) if bad[i]]
    return problem.policy.report_params(spread, policy_cfg), loose


@scoped_x64
def run(
    config: ConfigSource,
    *,
    profiles: bool = True,
    base_dir: str | Path | None = None,
    progress: Progress | None = None,
    executor: str = "local",
    address: str | None = None,
) -> dict[str, Any]:
    """Optimize the config's policy (``objective`` + ``optimizer``) and evaluate it out of sample.

    With ``profiles`` the result also holds ``trajectories`` (equity and leverage quantiles over
    time) and ``leverage_profile`` (growth and risk with the policy's leverage scaled), for plots.
    ``progress`` is called as the searches advance (:func:`~levopt.optimize.optimize_policy`).
    ``executor``/``address``: where the out-of-sample paths run, as for :func:`evaluate`.

    Returns:
        ``{"policy", "in_sample", "out_of_sample", "constraints", "optimizer", "config", "seed",
        "versions"}`` (a :class:`~levopt.results.RunResult`) — what ``levopt run`` writes to
        ``results.json``.
    """
    t0 = time.perf_counter()
    _check_memory(config, base_dir)
    problem = build(config, base_dir=base_dir)
    cfg = problem.cfg
    objective = parse_objective(cfg.objective)
    found = optimize_policy(problem, objective, progress=progress)
    key = problem.key(STREAM_OUT_OF_SAMPLE)
    out_of_sample = estimate(
        problem, key, found.policy, objective.reported(), executor=executor, address=address
    )
    policy_stderr, not_identified = _spread_report(problem, found)
    return RunResult(
        policy=problem.policy.report_params(found.params, cfg.policy_config_typed()),
        policy_stderr=policy_stderr,
        not_identified=not_identified,
        in_sample=found.in_sample,
        out_of_sample=out_of_sample,
        constraints=_constraint_results(problem, found, objective, out_of_sample),
        optimizer=found.optimizer | {"wall_s": found.optimizer.get("wall_s", time.perf_counter() - t0)},
        config=cfg.resolved(),
        seed=cfg.seed,
        versions=versions(),
        trajectories=trajectory_quantiles(problem, found.policy, key) if profiles else None,
        leverage_profile=leverage_profile(problem, found.policy, key) if profiles else None,
        timings={"total_s": time.perf_counter() - t0},
        calibration=problem.calibration,
    ).to_dict()
