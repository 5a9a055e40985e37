"""Optimizers: gradients through the simulation (optax) and scenario convex programs (cvxpy).

Both take a built :class:`~levopt.problem.Problem` and an
:class:`~levopt.config.ObjectiveConfig`, and read every fact about a metric from the catalogue
(:mod:`levopt.objectives`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.config import CvxpyConfig, ObjectiveConfig, parse_optimizer
from levopt.errors import ConfigError, InfeasibleError, SolverError
from levopt.optimize.convex import ConvexProblem, ConvexResult, solve_convex
from levopt.optimize.gradient import (
    GradientResult,
    Progress,
    SearchProgress,
    optimize_gradient,
    set_params,
)
from levopt.optimize.options import check_static_book, option_scenarios, scenario_market
from levopt.optimize.scenarios import (
    Scenarios,
    scenario_wealth,
    scenarios_from_returns,
    scenarios_from_simulation,
)
from levopt.policies import Bounds
from levopt.precision import scoped_x64
from levopt.problem import STREAM_PATHS, Problem

__all__ = [
    "ConvexProblem",
    "ConvexResult",
    "Found",
    "GradientResult",
    "Progress",
    "Scenarios",
    "SearchProgress",
    "optimize_gradient",
    "optimize_policy",
    "scenario_wealth",
    "scenarios_from_returns",
    "scenarios_from_simulation",
    "solve_convex",
]


@dataclass
class Found:
    """An optimized policy with its in-sample metrics, the optimizer's report, and the optima of
    the searches rerun on independent sets of paths (``replicates``, the first being this one)."""

    policy: Any
    params: dict[str, np.ndarray]
    in_sample: dict[str, Any]
    optimizer: dict[str, Any]
    replicates: list[dict[str, np.ndarray]] = field(default_factory=list)

    def spread(self) -> dict[str, np.ndarray]:
        """Standard deviation of each parameter over the replicate optima (NaN with fewer than two):
        the Monte Carlo error of the reported optimum, which used one of those sets of paths."""
        ok = [r for r in self.replicates if r is not None]
        if len(ok) < 2:
            return {n: np.full(np.shape(v), np.nan) for n, v in self.params.items()}
        return {
            n: np.std(np.stack([np.asarray(r[n], float) for r in ok]), axis=0, ddof=1) for n in self.params
        }


@scoped_x64
def optimize_policy(problem: Problem, objective: ObjectiveConfig, progress: Progress | None = None) -> Found:
    """Run the config's optimizer (``optimizer.method``) on the problem's free policy parameters,
    then rerun the search on ``optimizer.replicates - 1`` further independent sets of paths
    (scenarios) to measure how well the optimum is determined.

    ``progress``, if given, receives a :class:`SearchProgress` when each search starts (step 0)
    and after each block of iterations (each solve, for cvxpy), tagged with the search's number.
    """
    opt = parse_optimizer(problem.cfg.optimizer)
    budget = problem.cfg.policy_config_typed().weight_budget
    key = problem.key(STREAM_PATHS)
    found = _search(problem, objective, opt, budget, key, progress=_tagged(progress, 1, opt))
    found.replicates = [found.params]
    for r in range(1, opt.replicates):
        try:
            again = _search(
                problem,
                objective,
                opt,
                budget,
                jax.random.fold_in(key, r),
                replicate=True,
                progress=_tagged(progress, r + 1, opt),
            )
        except (InfeasibleError, SolverError):
            # Those paths admit no solution: the replicate counts as missing, not as an error.
            found.replicates.append(None)
            continue
        found.replicates.append(again.params)
    found.optimizer["replicates"] = opt.replicates
    return found


def _tagged(progress: Progress | None, search: int, opt: Any) -> Progress | None:
    """``progress`` with the search's number filled in; announces the search's start (step 0)."""
    if progress is None:
        return None
    steps = 1 if isinstance(opt, CvxpyConfig) else opt.steps

    def report(p: SearchProgress) -> None:
        progress(p._replace(search=search, searches=opt.replicates))

    report(SearchProgress(0, steps, float("nan"), float("nan")))
    return report


def _search(
    problem: Problem,
    objective: ObjectiveConfig,
    opt: Any,
    budget: float | None,
    key: jax.Array,
    replicate: bool = False,
    progress: Progress | None = None,
) -> Found:
    """One search on the paths (scenarios) of ``key``; a replicate skips the in-sample metrics."""
    if isinstance(opt, CvxpyConfig):
        return _optimize_convex(problem, objective, opt, budget, key, replicate, progress)
    res = optimize_gradient(problem, objective, opt, budget=budget, key=key, progress=progress)
    paths = opt.paths or min(problem.cfg.paths, 20_000)
    metrics = {}
    if not replicate:
        outcome = problem.simulate(key, policy=res.policy, paths=paths)
        metrics = problem.metrics(outcome, objective.reported()) | {"paths": paths}
    report = {
        "method": "optax",
        "iterations": res.iterations,
        "converged": res.converged,
        "wall_s": res.wall_s,
    }
    return Found(res.policy, res.params, metrics, report | {"history": res.history})


def _optimize_convex(
    problem: Problem,
    objective: ObjectiveConfig,
    opt: CvxpyConfig,
    budget: float | None,
    key: jax.Array,
    replicate: bool = False,
    progress: Progress | None = None,
) -> Found:
    options = problem.policy.instrument == "options"
    if not problem.policy.static and not options:
        raise ConfigError(
            "optimizer.method",
            "cvxpy optimizes static weights: use policy kind 'constant' (or a static option book), "
            "or method 'optax'",
        )
    goal = objective.goal
    if goal.resolve(objective.goal_field).higher_is_better != (objective.sign > 0):
        verb = "minimize" if objective.sign > 0 else "maximize"
        raise ConfigError(objective.goal_field, f"the convex layer can only {verb} {goal.metric}")
    _check_convex_market(problem)
    scen, bounds, market, cost = _convex_scenarios(problem, opt, key, replicate)
    convex = ConvexProblem(
        objective={"metric": goal.metric, **goal.options},
        constraints=[{"metric": c.metric, c.sense: c.limit, **c.options} for c in objective.constraints],
        lower=bounds.lower.tolist(),
        upper=bounds.upper.tolist(),
        budget=budget,
        solver=opt.solver,
    )
    res = solve_convex(convex, scen, market)
    if progress is not None:
        worst = max((max(0.0, -_slack(r)) for r in res.constraints), default=0.0)
        progress(SearchProgress(1, 1, float(res.value), worst, done=True))
    weights = np.asarray(res.weights, float)
    name = "weights"
    if cost is not None:
        name, weights = "quantity", weights / cost
    policy = set_params(problem.policy, {name: jnp.asarray(weights, problem.dtype)})
    in_sample = {
        # Keyed like the simulated metrics, so the constraint report finds its in-sample value.
        "metrics": {goal.key: res.value}
        | {c.key: r.value for c, r in zip(objective.constraints, res.constraints, strict=True)},
        "scenarios": scen.n_scenarios,
        "period_years": scen.years,
    }
    return Found(
        policy,
        {name: weights},
        in_sample,
        {
            "method": "cvxpy",
            "iterations": res.iterations,
            "converged": res.status == "optimal",
            "wall_s": res.wall_time,
            "status": res.status,
            "solver": res.solver,
            "solve_time_s": res.solve_time,
        },
    )


def _convex_scenarios(
    problem: Problem, opt: CvxpyConfig, key: jax.Array, replicate: bool
) -> tuple[Any, Bounds, Any, np.ndarray | None]:
    """The program's scenarios, weight bounds and market, and for an option book the legs'
    premiums (its weights are premium notionals w = q C, :mod:`levopt.optimize.options`)."""
    if problem.policy.instrument == "options":
        bounds = check_static_book(problem)
        if opt.scenarios == "data":
            raise ConfigError(
                "optimizer.scenarios", "an option book needs simulated paths; allowed: a number"
            )
        scen, cost = option_scenarios(problem, key, int(opt.scenarios))
        bounds = Bounds(np.asarray(bounds.lower) * cost, np.asarray(bounds.upper) * cost)
        return scen, bounds, scenario_market(problem), cost
    bounds = problem.free.get("weights")
    if bounds is None:
        raise ConfigError("policy", "no free parameters: write weights (or leverage) as {init, min, max}")
    if opt.scenarios != "data":
        return scenarios_from_simulation(problem, key, int(opt.scenarios)), bounds, problem.market, None
    returns = problem.model.data_returns()
    if returns is None:
        raise ConfigError(
            "optimizer.scenarios", "'data' needs a model built from a data file (kind 'bootstrap')"
        )
    if replicate:
        # A replicate resamples the data's rows with replacement (a bootstrap of the scenarios).
        rows = np.asarray(jax.random.randint(key, (returns.shape[0],), 0, returns.shape[0]))
        returns = returns[rows]
    return scenarios_from_returns(returns, "simple", problem.cfg.dt), bounds, problem.market, None


def _check_convex_market(problem: Problem) -> None:
    """Refuse venue features the one-period programs cannot express, naming the key (the tiers'
    maximum leverage is already in the weights' bounds, see levopt.problem.build_problem)."""
    market = problem.cfg.market
    for key, used in (
        ("margin_mode", market.mode == "isolated"),
        ("basis", market.basis is not None),
        ("funding", market.funding is not None and market.funding.kind != "constant"),
    ):
        if used:
            raise ConfigError(
                f"market.{key}",
                "the convex layer models cross margin with a constant funding rate on the traded price; "
                "use optimizer.method: optax",
            )


def _slack(report: Any) -> float:
    """A convex constraint's slack relative to its limit (negative when violated)."""
    gap = report.limit - report.value if report.side == "max" else report.value - report.limit
    return gap / max(abs(report.limit), 1e-3)
