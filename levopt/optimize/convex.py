r"""The convex layer: static allocations optimized on scenarios with cvxpy.

A static allocation holds weights w (notional / equity, per asset) over one period; its wealth in
scenario s is the concave function W_s(w) of :func:`~levopt.optimize.scenarios.scenario_wealth`,
which applies the same venue rules as the Monte Carlo engine. On scenarios with probabilities π_s
the metrics with a convex form in the catalogue (:class:`~levopt.objectives.ConvexForm`) are convex
or concave in w, so an objective and constraints built from them form a convex program (an
exponential-cone program when a log appears, an LP otherwise). The built-in ones:

=================  ===========================================================  ============================
metric             definition on scenarios                                      usable as
=================  ===========================================================  ============================
``log_growth``     Σ_s π_s log W_s / T   (annualized Kelly growth)               objective (max), ``min``
``mean_return``    Σ_s π_s W_s − 1                                               objective (max), ``min``
``cvar``           min_a a + Σ_s π_s (ℓ_s − a)_+ / (1 − β),                      objective (min), ``max``
                   ℓ = −log W (``returns: log``) or 1 − W (``simple``)
``gross_leverage`` Σ_i |w_i|                                                     objective (min), ``max``
``kelly_drawdown`` log Σ_s π_s exp(−λ log W_s),  λ = log β / log α               objective (min), ``max`` (0)
=================  ===========================================================  ============================

plus per-asset bounds ``lower <= w <= upper`` and a budget Σ w_i = b. CVaR is the
Rockafellar–Uryasev linear program (an exponential cone per scenario with log losses, since
−log W is convex). ``kelly_drawdown <= 0`` is Busseti, Ryu & Boyd's risk-constrained Kelly
condition: when the period's bet is repeated, P(min_t W_t < α) ≤ β. Value-at-risk, liquidation
probability and expected maximum drawdown are not convex functions of w; asking for them raises
:class:`~levopt.errors.ConfigError` naming the alternative (the catalogue's ``not_convex``). A
metric maximized must be concave (higher is better), one minimized convex; constraints bound
concave metrics below and convex ones above.

Periods. For a policy that rebalances every k steps, one period is k steps and the annualized
growth of the rebalanced strategy under an i.i.d. model is E log W / T, so the one-period program
is the multi-period one (the opening cost c·Σ|w| is charged each period, an upper bound on the
cost of the smaller rebalancing trades; pass a market with zero fee to ignore it). For
``rebalance: never`` the period is the whole horizon and the metrics are the simulator's.

Compilation. A program is built once per (problem structure, scenario set, market) and kept in a
:class:`ProgramCache` owned by the calling thread (or one passed in);
the constraint limits and the budget are cvxpy Parameters (DPP), so sweeping a limit re-solves
without re-canonicalizing. The scenario matrices enter as constants: as Parameters, cvxpy's DPP
tensor would need one column per matrix entry (gigabytes for 20 000 × 3).

References:
    R. T. Rockafellar, S. Uryasev, "Optimization of conditional value-at-risk", J. Risk 2(3), 2000.
    E. Busseti, E. K. Ryu, S. Boyd, "Risk-constrained Kelly gambling", J. Investing 25(3), 2016.
    J. L. Kelly, "A new interpretation of information rate", Bell Syst. Tech. J. 35, 1956.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from levopt.engine.market import Market, MarketConfig
from levopt.errors import ConfigError, InfeasibleError, SolverError
from levopt.objectives import Metric, get_metric
from levopt.optimize.scenarios import (
    Scenarios,
    market_rates,
    scenario_wealth,
    scenarios_from_paths,
    scenarios_from_returns,
    scenarios_from_simulation,
    steps_per_period,
)

if TYPE_CHECKING:
    import cvxpy as cp

__all__ = [
    "ConstraintReport",
    "ConvexProblem",
    "ConvexResult",
    "Scenarios",
    "evaluate_metric",
    "scenario_wealth",
    "scenarios_from_paths",
    "scenarios_from_returns",
    "scenarios_from_simulation",
    "solve_convex",
    "steps_per_period",
]

# cvxpy is imported where a program is built or solved, not with this module: `import levopt`
# (and every command but a cvxpy optimization) does without its ~0.3 s import.


def _statuses() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """cvxpy's solve statuses: (solved, infeasible, unbounded)."""
    import cvxpy as cp

    return (
        (cp.OPTIMAL, cp.OPTIMAL_INACCURATE),
        (cp.INFEASIBLE, cp.INFEASIBLE_INACCURATE),
        (cp.UNBOUNDED, cp.UNBOUNDED_INACCURATE),
    )


@dataclass(frozen=True)
class _Spec:
    """A parsed metric: name, options, and for constraints the side ('min'/'max') and limit."""

    metric: str
    options: tuple[tuple[str, Any], ...] = ()
    side: str | None = None
    limit: float | None = None
    sense: str | None = None  # objectives: "max"/"min"; None = the metric's better direction

    @property
    def entry(self) -> Metric:
        return get_metric(self.metric)

    @property
    def direction(self) -> str:
        return self.sense or ("max" if self.entry.higher_is_better else "min")

    @property
    def opts(self) -> dict[str, Any]:
        return dict(self.options)

    def describe(self) -> str:
        opts = ", ".join(f"{k} {v}" for k, v in self.options)
        if self.side is None:
            head = self.metric if self.sense is None else f"{self.sense}imize {self.metric}"
        else:
            head = f"{self.metric} {self.side} {self.limit:g}"
        return f"{head} ({opts})" if opts else head

    def structure(self) -> tuple:
        return (self.metric, self.options, self.side, self.direction)


def _wrong_side(metric: Metric, side: str) -> str:
    bound = "a lower" if side == "min" else "an upper"
    shape = "concave" if metric.higher_is_better else "convex"
    return f"{bound} limit on {metric.name} is not convex ({metric.name} is {shape} in the weights)"


def _parse_metric(entry: str | Mapping[str, Any], where: str, constraint: bool) -> list[_Spec]:
    """A goal or constraint entry checked against the catalogue's convex forms."""
    if isinstance(entry, str):
        entry = {"metric": entry}
    if not isinstance(entry, Mapping) or "metric" not in entry:
        raise ConfigError(where, f"expected a metric name or a mapping with 'metric', got {entry!r}")
    body = {k: v for k, v in entry.items() if k != "label"}
    name = body.pop("metric")
    metric = get_metric(name, f"{where}.metric")
    if metric.convex is None:
        why = metric.not_convex or "has no convex form; use optimizer.method: optax"
        raise ConfigError(f"{where}.metric", f"{name!r}: {why}")
    limits = {side: body.pop(side) for side in ("min", "max") if side in body}
    options = tuple(sorted(metric.check_options(body, where).items()))
    if not constraint:
        if limits:
            raise ConfigError(where, f"an objective takes no min/max, got {sorted(limits)}")
        return [_Spec(name, options)]
    if not limits and metric.convex.default_max is not None:
        limits = {"max": metric.convex.default_max}
    allowed = "min" if metric.higher_is_better else "max"
    if not limits:
        raise ConfigError(where, f"a constraint on {name} needs {allowed}")
    specs = []
    for side, value in limits.items():
        if side != allowed:
            raise ConfigError(f"{where}.{side}", _wrong_side(metric, side))
        if not (isinstance(value, (int, float)) and math.isfinite(value)):
            raise ConfigError(f"{where}.{side}", f"must be a finite number, got {value!r}")
        specs.append(_Spec(name, options, side, float(value)))
    return specs


@dataclass(frozen=True)
class ConvexProblem:
    """An objective and constraints over one-period scenarios (see the module docstring).

    Args:
        objective: a metric name or ``{metric, **options}``; optimized in its better direction
            (``log_growth``/``mean_return`` maximized, ``cvar``/``gross_leverage``/
            ``kelly_drawdown`` minimized).
        constraints: ``{metric, min | max, **options}`` entries, e.g.
            ``{metric: cvar, max: 0.1, level: 0.95, returns: log}``,
            ``{metric: gross_leverage, max: 3}``, ``{metric: kelly_drawdown, alpha: 0.7, beta: 0.1}``.
        lower, upper: per-asset bounds on w (a number or a list of n; None for none).
        budget: Σ w_i = budget when given (1 for a fully invested long-only portfolio).
        solver: an installed cvxpy solver (default ``CLARABEL``).
        solver_options: keyword arguments passed to the solver.

    Example:
        >>> prob = ConvexProblem("log_growth", [{"metric": "cvar", "max": 0.05}])
        >>> result = solve_convex(prob, scenarios, market)  # doctest: +SKIP
    """

    objective: str | Mapping[str, Any] = "log_growth"
    constraints: Sequence[Mapping[str, Any]] = ()
    lower: float | Sequence[float] | None = None
    upper: float | Sequence[float] | None = None
    budget: float | None = None
    solver: str = "CLARABEL"
    solver_options: Mapping[str, Any] | None = None
    _objective: _Spec = field(init=False, repr=False)
    _constraints: tuple[_Spec, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        obj = _parse_metric(self.objective, "objective", constraint=False)[0]
        if isinstance(self.constraints, (str, Mapping)):
            raise ConfigError("objective.constraints", "must be a list of {metric, min|max, ...} entries")
        cons: list[_Spec] = []
        for i, entry in enumerate(self.constraints):
            cons.extend(_parse_metric(entry, f"objective.constraints[{i}]", constraint=True))
        if self.budget is not None and not (
            isinstance(self.budget, (int, float)) and math.isfinite(self.budget)
        ):
            raise ConfigError("policy.budget", f"must be a finite number, got {self.budget!r}")
        object.__setattr__(self, "_objective", obj)
        object.__setattr__(self, "_constraints", tuple(cons))
        object.__setattr__(self, "solver", str(self.solver).upper())

    def bounds(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` broadcast to n assets (±inf where open)."""

        def vec(value: Any, name: str, default: float) -> np.ndarray:
            arr = np.asarray(default if value is None else value, dtype=float)
            try:
                return np.broadcast_to(arr, (n,)).astype(float)
            except ValueError:
                raise ConfigError(
                    f"optimizer.{name}", f"must be a number or a list of {n}, got {value!r}"
                ) from None

        lo, hi = vec(self.lower, "lower", -np.inf), vec(self.upper, "upper", np.inf)
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo > hi):
            raise ConfigError(
                "optimizer.lower", f"must be <= upper elementwise, got lower={self.lower}, upper={self.upper}"
            )
        return lo, hi


@dataclass(frozen=True)
class ConstraintReport:
    """A constraint at the solution: ``value`` (same units as the metric), ``limit``, ``side``."""

    constraint: str
    metric: str
    side: str
    limit: float
    value: float
    satisfied: bool
    binding: bool
    dual: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ConvexResult:
    """The solution of a :class:`ConvexProblem`.

    Attributes:
        weights: ``(n,)`` optimal weights (leverage per asset).
        objective: the objective's description; ``value`` its value at ``weights`` evaluated on
            the scenarios in numpy (``log_growth`` annualized, ``mean_return`` and ``cvar`` per
            period, as the simulator's metrics over a ``rebalance: never`` horizon).
        constraints: one :class:`ConstraintReport` per constraint (budget and bounds excluded).
        status: cvxpy's status (``optimal`` or ``optimal_inaccurate``).
        solver, iterations, solve_time: the solver, its iteration count and its own time (s).
        setup_time: wall time outside the solver: building and canonicalizing the program on its
            first solve, applying new parameter values and reading the solution on later ones.
        wall_time: total wall time of :func:`solve_convex` (s).
    """

    weights: np.ndarray
    objective: str
    value: float
    constraints: tuple[ConstraintReport, ...]
    status: str
    solver: str
    iterations: int | None
    solve_time: float | None
    setup_time: float
    wall_time: float

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["weights"] = self.weights.tolist()
        out["constraints"] = [c.to_dict() for c in self.constraints]
        return out


# --------------------------------------------------------------------------------------------
# Metrics: one definition as a cvxpy expression, one as a numpy evaluation.


def evaluate_metric(spec: str | Mapping[str, Any], w: Any, scen: Scenarios, market: Any = None) -> float:
    """The value of a convex-layer metric at weights ``w`` on the scenarios (numpy).

    ``log_growth`` and log ``cvar``/``kelly_drawdown`` are −inf/+inf when some W_s <= 0.
    """
    return _metric_value(
        _parse_metric(spec, "metric", constraint=False)[0], np.asarray(w, float), scen, market
    )


@dataclass(frozen=True)
class ScenarioValues:
    """Numpy values a metric's convex form is evaluated on (see :class:`~levopt.objectives.ConvexForm`)."""

    w: np.ndarray
    wealth: np.ndarray
    log_wealth: np.ndarray
    pi: np.ndarray
    years: float
    ruined: bool


def _metric_value(spec: _Spec, w: np.ndarray, scen: Scenarios, market: Any) -> float:
    wealth = scenario_wealth(w, scen, market, np)
    pi = scen.probabilities
    with np.errstate(divide="ignore", invalid="ignore"):
        log_w = np.where(wealth > 0, np.log(np.where(wealth > 0, wealth, 1.0)), -np.inf)
    ruined = bool(np.any((wealth <= 0) & (pi > 0)))
    log_w = np.where(pi > 0, log_w, 0.0)  # zero-probability scenarios do not count
    values = ScenarioValues(w, wealth, log_w, pi, scen.years, ruined)
    return float(spec.entry.convex.value(values, **spec.opts))


class _Builder:
    """A scenario program: the cvxpy variable ``w``, the expressions ``wealth`` and ``log_wealth``
    over one (S, n) scenario set, the probabilities ``pi``, the period ``years`` and the module
    ``cp``, on which each metric's convex form builds its expression."""

    def __init__(self, scen: Scenarios, market: Any):
        self.scen = scen
        self.w = self.cp.Variable(scen.n_assets, name="w")
        self.wealth = scenario_wealth(self.w, scen, market, self.cp)
        self._log_wealth: cp.Expression | None = None
        self.pi = scen.probabilities
        self.years = scen.years

    @property
    def cp(self) -> ModuleType:
        """The cvxpy module."""
        import cvxpy

        return cvxpy

    @property
    def log_wealth(self) -> cp.Expression:
        # One expression object, so cvxpy canonicalizes log W once (one exponential cone per
        # scenario) however many metrics use it.
        if self._log_wealth is None:
            self._log_wealth = self.cp.log(self.wealth)
        return self._log_wealth

    def expression(self, spec: _Spec) -> cp.Expression:
        return spec.entry.convex.expression(self, **spec.opts)


@dataclass
class _Compiled:
    problem: cp.Problem
    w: cp.Variable
    limits: list[cp.Parameter]
    constraints: list[cp.Constraint]
    budget: cp.Parameter | None
    scen: Scenarios  # held so the cache key's id() stays unique


class ProgramCache:
    """Compiled programs, least recently used first out, keyed by problem structure, scenario set
    and market.

    A compiled program is solved in place (its parameters are set, then it is solved), so a cache
    belongs to one thread: :func:`solve_convex` uses one per thread unless given one.
    """

    def __init__(self, size: int = 8):
        self.size = size
        self._programs: OrderedDict[tuple, _Compiled] = OrderedDict()

    def get(self, key: tuple) -> _Compiled | None:
        hit = self._programs.get(key)
        if hit is not None:
            self._programs.move_to_end(key)
        return hit

    def put(self, key: tuple, compiled: _Compiled) -> None:
        self._programs[key] = compiled
        while len(self._programs) > self.size:
            self._programs.popitem(last=False)


_PER_THREAD = threading.local()


def thread_cache() -> ProgramCache:
    """The calling thread's own :class:`ProgramCache`."""
    cache = getattr(_PER_THREAD, "cache", None)
    if cache is None:
        cache = _PER_THREAD.cache = ProgramCache()
    return cache


def _compile(problem: ConvexProblem, scen: Scenarios, market: Any, cache: ProgramCache) -> _Compiled:
    n = scen.n_assets
    lower, upper = problem.bounds(n)
    rates = market_rates(market)
    key = (
        problem._objective.structure(),
        tuple(c.structure() for c in problem._constraints),
        tuple(lower),
        tuple(upper),
        problem.budget is None,
        id(scen),
        rates,
    )
    hit = cache.get(key)
    if hit is not None:
        return hit
    import cvxpy as cp

    b = _Builder(scen, market)
    obj = problem._objective
    expr = b.expression(obj)
    objective = cp.Maximize(expr) if obj.direction == "max" else cp.Minimize(expr)
    limits, metric_cons = [], []
    for spec in problem._constraints:
        p = cp.Parameter(name=f"{spec.metric}_{spec.side}")
        e = b.expression(spec)
        metric_cons.append(e <= p if spec.side == "max" else e >= p)
        limits.append(p)
    structural = []
    if np.any(np.isfinite(lower)):
        idx = np.flatnonzero(np.isfinite(lower))
        structural.append(b.w[idx] >= lower[idx])
    if np.any(np.isfinite(upper)):
        idx = np.flatnonzero(np.isfinite(upper))
        structural.append(b.w[idx] <= upper[idx])
    budget = None
    if problem.budget is not None:
        budget = cp.Parameter(name="budget")
        structural.append(cp.sum(b.w) == budget)
    compiled = _Compiled(
        cp.Problem(objective, metric_cons + structural), b.w, limits, metric_cons, budget, scen
    )
    cache.put(key, compiled)
    return compiled


def _check_solver(name: str) -> None:
    import cvxpy as cp

    installed = cp.installed_solvers()
    if name not in installed:
        raise ConfigError(
            "optimizer.solver", f"{name!r} is not installed; installed cvxpy solvers: {', '.join(installed)}"
        )


_RETRY = {"CLARABEL": {"max_step_fraction": 0.9}}
"""Settings tried after a failed solve: Clarabel's default step (0.99) stalls ("insufficient
progress") on some exponential-cone programs, e.g. minimizing a log-loss CVaR over 10^4 scenarios,
which a shorter step solves."""


def _solve_with_retry(prob: cp.Problem, solver: str, options: dict[str, Any]) -> tuple[str | None, str]:
    """Solve; on a solver failure retry once with safer settings. Returns (status or None, failure)."""
    import cvxpy as cp

    solved, infeasible, unbounded = _statuses()
    attempts = [options]
    retry = _RETRY.get(solver, {})
    if retry and not set(retry) & set(options):
        attempts.append({**options, **retry})
    failure = ""
    for opts in attempts:
        try:
            with warnings.catch_warnings():
                # An inaccurate solve is reported in the result's status instead.
                warnings.filterwarnings("ignore", message=".*[Ss]olution may be inaccurate.*")
                prob.solve(solver=solver, **opts)
        except cp.error.SolverError as exc:
            msg = str(exc)
            if "support" in msg:
                raise ConfigError(
                    "optimizer.solver",
                    f"{solver} cannot solve this program ({msg.splitlines()[0]}); use CLARABEL or SCS",
                ) from None
            failure = msg.splitlines()[0] if msg else "no message"
            continue
        if prob.status in solved + infeasible + unbounded:
            return prob.status, ""
        failure = f"status {prob.status!r}"
    return None, failure


def _constraint_reports(
    problem: ConvexProblem, compiled: _Compiled, w: np.ndarray, scenarios: Scenarios, market: Any
) -> tuple[ConstraintReport, ...]:
    reports = []
    for spec, con in zip(problem._constraints, compiled.constraints, strict=True):
        value = _metric_value(spec, w, scenarios, market)
        scale = max(1.0, abs(spec.limit))
        slack = (spec.limit - value) if spec.side == "max" else (value - spec.limit)
        dual = None if con.dual_value is None else float(np.asarray(con.dual_value).reshape(-1)[0])
        reports.append(
            ConstraintReport(
                constraint=spec.describe(),
                metric=spec.metric,
                side=spec.side,
                limit=spec.limit,
                value=value,
                satisfied=bool(slack >= -1e-6 * scale),
                binding=bool(abs(slack) <= 1e-5 * scale),
                dual=dual,
            )
        )
    return tuple(reports)


def solve_convex(
    problem: ConvexProblem,
    scenarios: Scenarios,
    market: Market | MarketConfig | Mapping[str, float] | None = None,
    *,
    diagnose: bool = True,
    cache: ProgramCache | None = None,
) -> ConvexResult:
    r"""Solve a convex static-allocation problem on one-period scenarios.

    Maximizes (or minimizes) the objective metric of the weights w subject to the constraints,
    with the wealth of every scenario given by
    :func:`~levopt.optimize.scenarios.scenario_wealth` (the margin engine's accounting).

    Args:
        problem: objective, constraints, bounds, budget and solver.
        scenarios: the period's scenarios (e.g. :func:`scenarios_from_simulation`).
        market: the venue's rates (``problem.market`` of a built config); None = frictionless.
        diagnose: on infeasibility, re-solve to find the binding constraint and the best
            achievable value of its metric (costs one extra solve per constraint).
        cache: where compiled programs are kept for re-solving (default: the thread's own).

    Returns:
        A :class:`ConvexResult`.

    Raises:
        ConfigError: unknown or non-convex metric, bad option, or a solver that is not installed
            or cannot handle the program's cones.
        InfeasibleError: the constraints cannot all hold; the message names the constraint, the
            best achievable value of its metric and the weights attaining it.
        SolverError: unbounded objective (with the constraint to add) or a solver failure.
    """
    t0 = time.perf_counter()
    _check_solver(problem.solver)
    cache = thread_cache() if cache is None else cache
    compiled = _compile(problem, scenarios, market, cache)
    for p, spec in zip(compiled.limits, problem._constraints, strict=True):
        p.value = spec.limit
    if compiled.budget is not None:
        compiled.budget.value = float(problem.budget)
    status, failure = _solve_with_retry(compiled.problem, problem.solver, dict(problem.solver_options or {}))
    if status is None:
        raise SolverError(
            f"solver {problem.solver} failed on {problem._objective.describe()} with {scenarios.n_scenarios} "
            f"scenarios ({failure}); try solver='SCS', fewer scenarios, or tighter leverage bounds"
        )
    stats = compiled.problem.solver_stats
    _, infeasible, unbounded = _statuses()
    if status in infeasible:
        msg = _diagnose(problem, scenarios, market, cache) if diagnose else "the constraints cannot all hold"
        raise InfeasibleError(msg)
    if status in unbounded:
        raise SolverError(
            f"the objective {problem._objective.describe()} is unbounded: the weights can grow without limit "
            "on these scenarios; add {metric: gross_leverage, max: L} or per-asset bounds (lower/upper)"
        )
    w = np.asarray(compiled.w.value, dtype=float)
    reports = _constraint_reports(problem, compiled, w, scenarios, market)
    wall = time.perf_counter() - t0
    solve_time = getattr(stats, "solve_time", None)
    return ConvexResult(
        weights=w,
        objective=problem._objective.describe(),
        value=_metric_value(problem._objective, w, scenarios, market),
        constraints=reports,
        status=status,
        solver=problem.solver,
        iterations=getattr(stats, "num_iters", None),
        solve_time=solve_time,
        setup_time=max(wall - (solve_time or 0.0), 0.0),
        wall_time=wall,
    )


# --------------------------------------------------------------------------------------------
# Diagnosis of infeasible problems.


def _to_entry(spec: _Spec) -> dict[str, Any]:
    entry: dict[str, Any] = {"metric": spec.metric, **spec.opts}
    if spec.side is not None:
        entry[spec.side] = spec.limit
    return entry


def _best(
    problem: ConvexProblem,
    spec: _Spec,
    others: Sequence[_Spec],
    scen: Scenarios,
    market: Any,
    cache: ProgramCache,
):
    """Best achievable value of ``spec``'s metric (toward its limit) under ``others``; None if none."""
    sub = replace(
        problem, objective={"metric": spec.metric, **spec.opts}, constraints=[_to_entry(o) for o in others]
    )
    direction = "min" if spec.side == "max" else "max"
    object.__setattr__(sub, "_objective", replace(sub._objective, sense=direction))
    try:
        res = solve_convex(sub, scen, market, diagnose=False, cache=cache)
    except (InfeasibleError, SolverError):
        return None
    return res.value, res.weights


def _diagnose(problem: ConvexProblem, scen: Scenarios, market: Any, cache: ProgramCache) -> str:
    cons = problem._constraints
    structural = replace(problem, objective="gross_leverage", constraints=[])
    try:
        solve_convex(structural, scen, market, diagnose=False, cache=cache)
    except InfeasibleError:
        lo, hi = problem.bounds(scen.n_assets)
        return (
            f"the bounds and budget admit no weights: budget {problem.budget} must lie within "
            f"[sum(lower), sum(upper)] = [{lo.sum():g}, {hi.sum():g}]"
        )
    except SolverError:
        pass
    messages, alone = [], []
    for i, spec in enumerate(cons):
        others = cons[:i] + cons[i + 1 :]
        best = _best(problem, spec, others, scen, market, cache)
        word = "lowest" if spec.side == "max" else "highest"
        fix = "raise the limit" if spec.side == "max" else "lower the limit"
        if best is not None:
            value, w = best
            violated = value > spec.limit if spec.side == "max" else value < spec.limit
            if violated:
                given = " given the other constraints" if others else ""
                messages.append(
                    f"{spec.describe()} is infeasible: the {word} achievable {spec.metric}{given} is "
                    f"{value:.6g} (at w={np.array2string(w, precision=4, separator=', ')}); {fix} to {value:.6g} or beyond"
                )
                continue
        if others:
            solo = _best(problem, spec, [], scen, market, cache)
            if solo is not None:
                alone.append(
                    f"{spec.metric} {spec.side} {spec.limit:g}: {word} achievable alone {solo[0]:.6g}"
                )
    if messages:
        return "; ".join(messages)
    if alone:
        return (
            "the constraints are jointly infeasible though each holds on its own ("
            + "; ".join(alone)
            + "); relax one"
        )
    return (
        "no weights allowed by the bounds, budget and gross_leverage limit keep W > 0 in every scenario, "
        "which log metrics (log_growth, kelly_drawdown, cvar with returns: log) need; widen the bounds, "
        "lower the budget or leverage, or use returns: simple"
    )
