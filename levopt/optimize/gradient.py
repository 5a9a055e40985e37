r"""Gradient layer: optimize policy parameters by differentiating through the simulation.

Constrained problems  max_theta f(theta)  s.t.  g_i(theta) <= 0,  h_j(theta) = 0  are solved by the
augmented Lagrangian method (Hestenes 1969; Powell 1969; Nocedal & Wright 2006, §17.4): Adam steps
on

    L(theta) = -f + sum_i (rho/2) [max(0, lambda_i/rho + g_i)^2 - (lambda_i/rho)^2]
                  + sum_j (mu_j h_j + (rho/2) h_j^2),

with the multipliers updated after each block of ``inner_steps`` (lambda <- max(0, lambda + rho g))
and rho raised while the violation does not shrink fast enough. Box bounds are enforced by reparameterization (a scaled sigmoid,
or softplus for one-sided bounds). The paths are fixed during the search (common random numbers),
so the objective is a deterministic smooth function of theta. Constraint values are scaled by their
limits so that one tolerance fits all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from levopt.config import Constraint, ObjectiveConfig, OptaxConfig
from levopt.engine import simulate_outcome
from levopt.errors import ConfigError, InfeasibleError, SolverError
from levopt.objectives import Context, MetricRef, get_metric, hashable
from levopt.policies import Bounds, Policy
from levopt.precision import scoped_x64
from levopt.problem import Problem

EPS = 1e-6


def to_unconstrained(value: np.ndarray, bounds: Bounds) -> np.ndarray:
    """The search variable of a bounded parameter; an element with ``lower == upper`` (held fixed
    among free ones, e.g. one leg of an option book) maps to 0 and back to its bound."""
    lo, hi = bounds.lower, bounds.upper
    both, lower, upper = np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo), np.isfinite(hi)
    with np.errstate(all="ignore"):
        frac = np.clip((value - lo) / (hi - lo), EPS, 1 - EPS)
        from_lo = np.log(np.expm1(np.maximum(value - lo, EPS)))
        from_hi = np.log(np.expm1(np.maximum(hi - value, EPS)))
        theta = np.where(
            both, np.log(frac / (1 - frac)), np.where(lower, from_lo, np.where(upper, from_hi, value))
        )
        return np.where(lo == hi, 0.0, theta)


def from_unconstrained(theta: jax.Array, bounds: Bounds) -> jax.Array:
    lo, hi = jnp.asarray(bounds.lower, theta.dtype), jnp.asarray(bounds.upper, theta.dtype)
    both, lower, upper = jnp.isfinite(lo) & jnp.isfinite(hi), jnp.isfinite(lo), jnp.isfinite(hi)
    safe_lo, safe_hi = jnp.where(lower, lo, 0.0), jnp.where(upper, hi, 0.0)
    boxed = safe_lo + (safe_hi - safe_lo) * jax.nn.sigmoid(theta)
    value = jnp.where(
        both,
        boxed,
        jnp.where(
            lower, safe_lo + jax.nn.softplus(theta), jnp.where(upper, safe_hi - jax.nn.softplus(theta), theta)
        ),
    )
    return jnp.where(lo == hi, safe_lo, value)


def set_params(policy: Policy, values: dict[str, jax.Array]) -> Policy:
    names = list(values)
    return eqx.tree_at(lambda p: [getattr(p, n) for n in names], policy, [values[n] for n in names])


class SearchProgress(NamedTuple):
    """Where a search stands, reported from the host between compiled blocks of iterations.

    Attributes:
        step: iterations done so far in this search.
        steps: its iteration budget (``optimizer.steps``; a convex solve counts as one step).
        objective: the goal metric at the current parameters, on the search's own paths
            (NaN before the first block).
        max_violation: largest constraint violation, relative to its limit (0 when feasible).
        search: which of the ``searches`` independent searches this is (1-based; the replicate
            searches follow the first one).
        searches: how many searches the optimization runs (``optimizer.replicates``).
        done: the search has stopped (converged, out of steps, or solved).
    """

    step: int
    steps: int
    objective: float
    max_violation: float
    search: int = 1
    searches: int = 1
    done: bool = False


Progress = Callable[[SearchProgress], None]
"""A progress callback: called with a :class:`SearchProgress` after each block of iterations."""


@dataclass
class GradientResult:
    params: dict[str, np.ndarray]
    policy: Policy
    iterations: int
    converged: bool
    wall_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Terms:
    """What the search evaluates: the goal and the constraints as (metric, options) pairs."""

    goal: MetricRef
    sign: float
    outcome_constraints: list[Constraint]
    weight_limits: list[Constraint]
    budget: float | None


def _terms(objective: ObjectiveConfig, budget: float | None, policy: Policy) -> _Terms:
    """Split the constraints into those on simulated outcomes and those on the policy's weights."""
    if not objective.goal.resolve(objective.goal_field).on_outcomes:
        raise ConfigError(
            objective.goal_field,
            f"{objective.goal.metric!r} is not defined on simulated outcomes; "
            "optimize it with optimizer.method: cvxpy",
        )
    outcome, on_weights = [], []
    for i, c in enumerate(objective.constraints):
        metric = c.resolve(f"objective.constraints[{i}]")
        if metric.on_outcomes:
            outcome.append(c)
        elif metric.weights_fn is not None and policy.position_weights() is not None:
            on_weights.append(c)
        else:
            where = (
                "bounds the weights of a constant or schedule policy"
                if metric.weights_fn
                else "is defined on one-period scenarios only; use optimizer.method: cvxpy"
            )
            raise ConfigError(f"objective.constraints[{i}].metric", f"{c.metric!r} {where}")
    if budget is not None and policy.position_weights() is None:
        raise ConfigError(
            "policy.budget", "a budget fixes the sum of a policy's weights; this policy has none"
        )
    return _Terms(objective.goal, objective.sign, outcome, on_weights, budget)


def _scale(c: Constraint) -> float:
    return max(abs(c.limit), 1e-3)


@scoped_x64
def optimize_gradient(
    problem: Problem,
    objective: ObjectiveConfig,
    opt: OptaxConfig,
    budget: float | None = None,
    key: jax.Array | None = None,
    progress: Progress | None = None,
) -> GradientResult:
    """Maximize (or minimize) the objective over the policy's free parameters.

    Args:
        problem: a :class:`~levopt.problem.Problem` whose policy has free parameters.
        objective: goal and constraints. Constraints on metrics of the weights (``gross_leverage``)
            bound the policy's weights directly.
        opt: search settings. ``budget`` fixes sum w (an equality constraint).
        key: PRNG key of the search paths (common random numbers).
        progress: called on the host after each block of ``inner_steps`` iterations (the blocks
            are compiled; between them the host updates the multipliers anyway, so reporting
            costs no extra device round trip).

    Returns:
        The optimized parameters, the policy, iterations, convergence flag and the history.

    Raises:
        SolverError: a non-finite gradient (naming the step and parameter).
        InfeasibleError: a constraint cannot be met; the message gives the best achievable value.
    """
    if not problem.free:
        raise SolverError("the policy has no free parameters: write one as {init, min, max} to optimize it")
    t0 = time.perf_counter()
    terms = _terms(objective, budget, problem.policy)
    paths = opt.paths or min(problem.cfg.paths, 20_000)
    key = problem.key(0) if key is None else key
    setup, data = _search_inputs(problem, terms, opt, key, paths)
    names = list(problem.free)
    theta0 = {
        n: jnp.asarray(
            to_unconstrained(np.asarray(getattr(problem.policy, n), float), problem.free[n]), problem.dtype
        )
        for n in names
    }
    # Common random numbers: the search's noise is drawn once and reused at every step.
    noise = jax.jit(lambda k: problem.draw_noise(k, paths))(key)
    theta, it, converged, history = _augmented_lagrangian(
        problem, terms, opt, setup, data, noise, theta0, progress
    )
    policy = _policy_of(setup, theta, problem.policy)
    params = {n: np.asarray(getattr(policy, n)) for n in names}
    result = GradientResult(params, policy, it, converged, time.perf_counter() - t0, history)
    _check_feasible(problem, terms, opt, result, key)
    return result


def _search_inputs(
    problem: Problem, terms: _Terms, opt: OptaxConfig, key: jax.Array, paths: int
) -> tuple[_Setup, _Data]:
    """The static description of a search (hashable: one compiled program per structure) and its arrays."""
    cfg = problem.cfg
    names = list(problem.free)
    all_cons = terms.outcome_constraints + terms.weight_limits
    setup = _Setup(
        names=tuple(names),
        bounds=tuple(
            (
                tuple(problem.free[n].lower.reshape(-1)),
                tuple(problem.free[n].upper.reshape(-1)),
                problem.free[n].lower.shape,
            )
            for n in names
        ),
        goal=(terms.goal.metric, hashable(terms.goal.options)),
        sign=terms.sign,
        constraints=tuple((c.metric, hashable(c.options)) for c in terms.outcome_constraints),
        weight_constraints=tuple((c.metric, hashable(c.options)) for c in terms.weight_limits),
        has_budget=terms.budget is not None,
        solver=opt.solver,
        learning_rate=opt.learning_rate,
        inner_steps=opt.inner_steps,
        steps=cfg.steps,
        dt=cfg.dt,
        paths=paths,
        ruin_floor=cfg.ruin_floor,
        years=cfg.years,
        n_draws=problem.n_draws,
        dtype=np.dtype(problem.dtype).name,
    )
    as_array = lambda xs: jnp.asarray(xs, problem.dtype)  # noqa: E731
    data = _Data(
        key=key,
        model=problem.model,
        market=problem.market,
        policy=problem.policy,
        limits=as_array([c.limit for c in all_cons]),
        scales=as_array([_scale(c) for c in all_cons]),
        signs=as_array([1.0 if c.sense == "max" else -1.0 for c in all_cons]),
        budget=as_array(terms.budget if terms.budget is not None else 0.0),
    )
    return setup, data


def _augmented_lagrangian(
    problem: Problem,
    terms: _Terms,
    opt: OptaxConfig,
    setup: _Setup,
    data: _Data,
    noise: Any,
    theta: dict,
    progress: Progress | None = None,
) -> tuple[dict, int, bool, list[dict[str, Any]]]:
    """Blocks of inner steps with multiplier and penalty updates between them, until the parameters
    stop moving while feasible. Returns the parameters, the steps taken, convergence and the history."""
    names = list(problem.free)
    all_cons = terms.outcome_constraints + terms.weight_limits
    lam = jnp.zeros((len(all_cons),), problem.dtype)
    mu = jnp.zeros((), problem.dtype)
    rho = jnp.asarray(opt.penalty, problem.dtype)
    labels = [c.key for c in all_cons]
    history: list[dict[str, Any]] = []
    last_params, last_violation = None, np.inf
    it = 0
    while it < opt.steps:
        theta, losses, finite, n_run, (f, values, g, eq) = _block(setup, theta, lam, mu, rho, noise, data)
        ran = np.asarray(losses)[: int(n_run)]
        _check_finite(ran, np.asarray(finite)[: int(n_run)], it, names)
        it += int(n_run)
        violation = max(float(np.max(np.asarray(g), initial=0.0)), abs(float(eq)))
        history.append(
            {
                "step": it,
                "objective": float(f),
                "lagrangian": float(ran[-1]),
                "max_violation": violation,
                "constraints": dict(zip(labels, np.asarray(values).tolist(), strict=True)),
                **({"budget_residual": float(eq)} if terms.budget is not None else {}),
            }
        )
        lam = jnp.maximum(0.0, lam + rho * g)
        mu = mu + rho * eq
        if violation > 0.25 * last_violation and violation > opt.feasibility_tol:
            rho = jnp.minimum(rho * 4.0, 1e6)
        last_violation = violation
        params_now = {n: np.asarray(from_unconstrained(theta[n], problem.free[n])) for n in names}
        settled = (
            last_params is not None
            and violation <= opt.feasibility_tol
            and _settled(params_now, last_params, opt.tol)
        )
        if progress is not None:
            progress(SearchProgress(it, opt.steps, float(f), violation, done=settled or it >= opt.steps))
        if settled:
            return theta, it, True, history
        last_params = params_now
    return theta, it, False, history


def _settled(now: dict[str, np.ndarray], last: dict[str, np.ndarray], tol: float) -> bool:
    """Every parameter moved by at most ``tol`` relative to max(1, |value|) over the last block."""
    return all(np.max(np.abs(now[n] - last[n]) / np.maximum(1.0, np.abs(now[n]))) <= tol for n in now)


@dataclass(frozen=True)
class _Setup:
    """Everything static about a search: hashable, so searches of equal structure share one
    compiled program (e.g. the points of a sweep)."""

    names: tuple[str, ...]
    bounds: tuple[tuple[tuple[float, ...], tuple[float, ...], tuple[int, ...]], ...]
    goal: tuple[str, tuple]
    sign: float
    constraints: tuple[tuple[str, tuple], ...]
    weight_constraints: tuple[tuple[str, tuple], ...]
    has_budget: bool
    solver: str
    learning_rate: float
    inner_steps: int
    steps: int
    dt: float
    paths: int
    ruin_floor: float
    years: float
    n_draws: int | None
    dtype: str

    def bound(self, i: int) -> Bounds:
        lower, upper, shape = self.bounds[i]
        return Bounds(np.asarray(lower).reshape(shape), np.asarray(upper).reshape(shape))


class _Data(eqx.Module):
    """The arrays of a search (traced, so changing them does not recompile)."""

    key: jax.Array
    model: Any
    market: Any
    policy: Any
    limits: jax.Array
    scales: jax.Array
    signs: jax.Array
    budget: jax.Array


def _policy_of(s: _Setup, theta: dict[str, jax.Array], policy: Policy) -> Policy:
    return set_params(policy, {n: from_unconstrained(theta[n], s.bound(i)) for i, n in enumerate(s.names)})


def _evaluate(s: _Setup, theta: dict[str, jax.Array], noise: Any, d: _Data):
    policy = _policy_of(s, theta, d.policy)
    dtype = jnp.dtype(s.dtype)
    outcome = simulate_outcome(
        d.key,
        d.model,
        policy,
        d.market,
        paths=s.paths,
        steps=s.steps,
        dt=s.dt,
        dtype=dtype,
        ruin_floor=s.ruin_floor,
        n_draws=s.n_draws,
        noise=noise,
    )
    ctx = Context(s.years, s.ruin_floor)
    f = get_metric(s.goal[0]).value(outcome, ctx, **dict(s.goal[1]))
    values = [get_metric(name).value(outcome, ctx, **dict(opts)) for name, opts in s.constraints]
    weights = policy.position_weights()
    values += [get_metric(name).weights_fn(weights, **dict(opts)) for name, opts in s.weight_constraints]
    eq = jnp.sum(weights) - d.budget if s.has_budget and weights is not None else jnp.zeros((), dtype)
    stacked = jnp.stack(values) if values else jnp.zeros((0,), dtype)
    g = d.signs * (stacked - d.limits) / d.scales
    return f, stacked, g, eq


def _lagrangian(s: _Setup, theta, lam, mu, rho, noise, d: _Data):
    f, values, g, eq = _evaluate(s, theta, noise, d)
    shifted = jnp.maximum(0.0, lam / rho + g)
    penalty = jnp.sum(rho / 2 * (shifted**2 - (lam / rho) ** 2)) + mu * eq + rho / 2 * eq**2
    return -s.sign * f + penalty


GRAD_TOL = 1e-9
"""An inner block stops early once max |gradient| <= GRAD_TOL * (1 + |Lagrangian|)."""


@partial(jax.jit, static_argnums=0)
def _block(s: _Setup, theta, lam, mu, rho, noise, d: _Data):
    """Up to ``inner_steps`` iterations on the augmented Lagrangian for fixed multipliers.

    Returns the new parameters, the Lagrangian per iteration, whether each iteration's gradient
    was finite per parameter, the number of iterations run and the metrics at the new parameters.
    """
    fun = lambda th: _lagrangian(s, th, lam, mu, rho, noise, d)  # noqa: E731
    if s.solver == "lbfgs":
        tx = optax.lbfgs(linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=15))
        value_and_grad = optax.value_and_grad_from_state(fun)
    else:
        tx = optax.adam(s.learning_rate)
        value_and_grad = lambda th, state: jax.value_and_grad(fun)(th)  # noqa: E731
    dtype = jnp.dtype(s.dtype)
    losses0 = jnp.full((s.inner_steps,), jnp.nan, dtype)
    finite0 = jnp.ones((s.inner_steps, len(s.names)), bool)

    def cond(carry):
        i, _, _, _, _, small = carry
        return (i < s.inner_steps) & ~small

    def body(carry):
        i, th, state, losses, finite, _ = carry
        value, grad = value_and_grad(th, state=state)
        ok = jnp.stack([jnp.all(jnp.isfinite(grad[n])) for n in s.names])
        gmax = jnp.max(jnp.stack([jnp.max(jnp.abs(grad[n])) for n in s.names]))
        small = (gmax <= GRAD_TOL * (1 + jnp.abs(value))) | ~jnp.all(ok) | ~jnp.isfinite(value)
        updates, new_state = tx.update(grad, state, th, value=value, grad=grad, value_fn=fun)
        new_th = jax.tree.map(lambda a, b: jnp.where(small, a, b), th, optax.apply_updates(th, updates))
        return i + 1, new_th, new_state, losses.at[i].set(value), finite.at[i].set(ok), small

    init = (jnp.zeros((), jnp.int32), theta, tx.init(theta), losses0, finite0, jnp.zeros((), bool))
    n_run, theta, _, losses, finite, _ = jax.lax.while_loop(cond, body, init)
    return theta, losses, finite, n_run, _evaluate(s, theta, noise, d)


def _check_finite(losses: np.ndarray, finite: np.ndarray, done: int, names: list[str]) -> None:
    """Stop at the first step of a block whose objective or gradient was NaN or infinite."""
    for i in range(losses.shape[0]):
        step = done + i + 1
        bad = [n for n, ok in zip(names, finite[i], strict=True) if not ok]
        if bad:
            raise SolverError(
                f"non-finite gradient at step {step} in parameter {bad[0]}: the objective or a constraint "
                "is not differentiable there; tighten the parameter's bounds or change the metric"
            )
        if not np.isfinite(losses[i]):
            raise SolverError(
                f"the objective became {losses[i]} at step {step}; check the model and the bounds"
            )


def _check_feasible(
    problem: Problem, terms: _Terms, opt: OptaxConfig, result: GradientResult, key: jax.Array
) -> None:
    """Raise InfeasibleError when a violated constraint cannot be met at all by the policy."""
    last = result.history[-1]["constraints"] if result.history else {}
    for c in terms.outcome_constraints:
        value = last.get(c.key)
        if value is None or c.violation(value) <= opt.feasibility_tol * _scale(c):
            continue
        alone = ObjectiveConfig.model_validate(
            {("minimize" if c.sense == "max" else "maximize"): {"metric": c.metric, **c.options}}
        )
        best = optimize_gradient(
            problem,
            alone,
            opt.model_copy(update={"steps": min(opt.steps, 300)}),
            budget=terms.budget,
            key=key,
        )
        best_value = best.history[-1]["objective"] if best.history else value
        if c.violation(best_value) > opt.feasibility_tol * _scale(c):
            raise InfeasibleError(
                f"constraint {c.key} {c.sense} {c.limit:g} cannot be met: the best achievable value is "
                f"{best_value:.6g} (optimizing it alone over the policy's free parameters); "
                f"{'raise' if c.sense == 'max' else 'lower'} the limit or widen the parameter bounds"
            )
