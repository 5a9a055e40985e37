"""Optimizers: gradients through the simulation (optax) and scenario convex programs (cvxpy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from levopt.errors import ConfigError
from levopt.optimize.convex import ConvexProblem, ConvexResult, solve_convex
from levopt.optimize.gradient import GradientResult, optimize_gradient
from levopt.optimize.scenarios import (
    Scenarios,
    scenario_wealth,
    scenarios_from_returns,
    scenarios_from_simulation,
)
from levopt.optimize.spec import PARAMETER_CONSTRAINTS, ObjectiveConfig, parse_optimizer
from levopt.policies import Constant

__all__ = [
    "ConvexProblem", "ConvexResult", "GradientResult", "Scenarios", "optimize_gradient", "optimize_policy",
    "scenario_wealth", "scenarios_from_returns", "scenarios_from_simulation", "solve_convex",
]

NATURAL_DIRECTION = {"log_growth": 1.0, "mean_return": 1.0, "cvar": -1.0, "gross_leverage": -1.0, "kelly_drawdown": -1.0}


@dataclass
class Found:
    """An optimized policy with its in-sample metrics and the optimizer's report."""

    policy: Any
    params: dict[str, np.ndarray]
    in_sample: dict[str, Any]
    optimizer: dict[str, Any]


def optimize_policy(problem: Any, objective: ObjectiveConfig) -> Found:
    """Run the config's optimizer (``optimizer.method``) on the problem's free policy parameters."""
    from levopt.runner import STREAM_PATHS, _metric_report

    opt = parse_optimizer(problem.cfg.optimizer)
    budget = getattr(problem.cfg.policy_config_typed(), "budget", None)
    if opt.method == "optax":
        key = problem.key(STREAM_PATHS)
        res = optimize_gradient(problem, objective, opt, budget=budget, key=key)
        paths = opt.paths or min(problem.cfg.paths, 20_000)
        labelled = {c.label(): (c.metric, c.options) for c in objective.constraints if c.metric not in PARAMETER_CONSTRAINTS}
        labelled[objective.goal.label()] = (objective.goal.metric, objective.goal.options)
        outcome = problem.simulate(key, policy=res.policy, paths=paths)
        return Found(
            res.policy, res.params, _metric_report(problem, outcome, labelled) | {"paths": paths},
            {"method": "optax", "iterations": res.iterations, "converged": res.converged, "wall_s": res.wall_s,
             "history": res.history},
        )
    return _optimize_convex(problem, objective, opt, budget)


def _optimize_convex(problem: Any, objective: ObjectiveConfig, opt: Any, budget: float | None) -> Found:
    from levopt.paths import Bootstrap
    from levopt.runner import STREAM_PATHS

    if not isinstance(problem.policy, Constant):
        raise ConfigError("optimizer.method", "cvxpy optimizes static weights: use policy kind 'constant', or method 'optax'")
    goal = objective.goal
    natural = NATURAL_DIRECTION.get(goal.metric)
    if natural is not None and natural != objective.sign:
        verb = "maximize" if natural > 0 else "minimize"
        raise ConfigError("objective", f"the convex layer can only {verb} {goal.metric}")
    bounds = problem.free.get("weights")
    if bounds is None:
        raise ConfigError("policy", "no free parameters: write weights (or leverage) as {init, min, max}")
    if opt.scenarios == "data":
        if not isinstance(problem.model, Bootstrap):
            raise ConfigError("optimizer.scenarios", "'data' needs model kind 'bootstrap' (the file's rows are the scenarios)")
        scen = scenarios_from_returns(np.expm1(np.asarray(problem.model.log_returns)), "simple", problem.cfg.dt)
    else:
        scen = scenarios_from_simulation(problem, problem.key(STREAM_PATHS), int(opt.scenarios))
    convex = ConvexProblem(
        objective={"metric": goal.metric, **goal.options},
        constraints=[{"metric": c.metric, c.sense: c.limit, **c.options} for c in objective.constraints],
        lower=bounds.lower.tolist(), upper=bounds.upper.tolist(), budget=budget, solver=opt.solver,
    )
    res = solve_convex(convex, scen, problem.market)
    weights = np.asarray(res.weights, float)
    policy = problem.policy.__class__(rebalance_every=problem.policy.rebalance_every, weights=jax.numpy.asarray(weights, problem.dtype))
    in_sample = {
        "metrics": {goal.label(): res.value} | {c.constraint: c.value for c in res.constraints},
        "scenarios": scen.n_scenarios,
        "period_years": scen.years,
    }
    return Found(
        policy, {"weights": weights}, in_sample,
        {"method": "cvxpy", "iterations": res.iterations, "converged": res.status == "optimal", "wall_s": res.wall_time,
         "status": res.status, "solver": res.solver, "solve_time_s": res.solve_time},
    )
