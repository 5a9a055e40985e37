"""The convex layer against the simulator, closed forms and independent cvxpy programs.

Monte Carlo tolerances are Z standard errors (conftest.Z), with the standard errors derived below
(delta method for optima, influence functions for CVaR); solver tolerances are Clarabel's 1e-8.
"""

from __future__ import annotations

import math
import re

import cvxpy as cp
import jax
import numpy as np
import pytest
from conftest import Z
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate, optimize, stats

import levopt
from levopt.engine import simulate_outcome
from levopt.errors import ConfigError, DataError, InfeasibleError, SolverError
from levopt.optimize.convex import (
    ConvexProblem,
    Scenarios,
    evaluate_metric,
    scenario_wealth,
    scenarios_from_paths,
    scenarios_from_returns,
    scenarios_from_simulation,
    solve_convex,
)

CORR3 = [[1.0, 0.5, 0.3], [0.5, 1.0, 0.4], [0.3, 0.4, 1.0]]
GBM1 = {"kind": "gbm", "mu": 0.5, "sigma": 0.8}
GBM3 = {"kind": "gbm", "mu": [0.5, 0.3, 0.2], "sigma": [0.8, 0.6, 0.5], "corr": CORR3}


def build(model: dict, market: dict, policy: dict, horizon_days: float = 30, paths: int = 1024):
    cfg = {
        "seed": 7,
        "paths": paths,
        "horizon_days": horizon_days,
        "steps_per_day": 1,
        "precision": "float64",
        "model": model,
        "market": {"maintenance_margin": 0.0, **market},
        "policy": policy,
    }
    return levopt.build(cfg)


def normal_expectation(f, mean: float, var: float, nodes: int = 201) -> float:
    """E f(X), X ~ N(mean, var), by Gauss–Hermite quadrature (smooth f)."""
    x, w = hermegauss(nodes)
    return float(np.sum(w * f(mean + math.sqrt(var) * x)) / math.sqrt(2 * math.pi))


# ------------------------------------------------------------------------------------------------
# Shared accounting: scenario_wealth == the margin engine's terminal wealth, path by path.

AGREEMENT = {
    "long_2x": (
        GBM1 | {"mu": 0.3, "sigma": 0.5},
        {"kind": "constant", "leverage": 2.0, "rebalance": "never"},
    ),
    "long_half": (
        GBM1 | {"mu": 0.3, "sigma": 0.5},
        {"kind": "constant", "leverage": 0.5, "rebalance": "never"},
    ),
    "long_short_3": (
        GBM3 | {"sigma": [0.5, 0.4, 0.3]},
        {"kind": "constant", "weights": [1.2, -0.4, 0.7], "rebalance": "never"},
    ),
}
MARKET = {"borrow_rate": 0.08, "cash_rate": 0.03, "funding_rate": 0.11, "fee": 0.0004, "slippage": 0.0003}

# Problem.simulate's call, jitted with the model, policy and market as arguments so that cases of
# the same shapes share one compilation.
_simulate_outcome = jax.jit(
    simulate_outcome, static_argnames=("paths", "steps", "dt", "dtype", "ruin_floor", "chunk_size", "n_draws")
)


def simulate(problem, key):
    cfg = problem.cfg
    return _simulate_outcome(
        key,
        problem.model,
        problem.policy,
        problem.market,
        paths=cfg.paths,
        steps=cfg.steps,
        dt=cfg.dt,
        dtype=problem.dtype,
        ruin_floor=cfg.ruin_floor,
        chunk_size=cfg.chunk_size,
        n_draws=problem.n_draws,
    )


@pytest.mark.parametrize("case", sorted(AGREEMENT))
def test_scenario_wealth_matches_simulator(case):
    model, policy = AGREEMENT[case]
    problem = build(model, MARKET, policy)
    key = problem.key(0)
    outcome = simulate(problem, key)
    assert not bool(np.any(outcome.liquidated)), "choose a setup without liquidation (mm = 0)"
    scen = scenarios_from_simulation(problem, key, problem.cfg.paths)
    assert scen.years == pytest.approx(30 / 365) and scen.mean_price_cash is not None
    w = np.asarray(problem.policy.weights)
    wealth = scenario_wealth(w, scen, problem.market, np)
    np.testing.assert_allclose(wealth, np.asarray(outcome.wealth), rtol=0, atol=1e-10)
    # The same function as a cvxpy expression gives the same numbers.
    var = cp.Variable(w.size)
    var.value = w
    np.testing.assert_allclose(
        scenario_wealth(var, scen, problem.market, cp).value, wealth, rtol=0, atol=1e-12
    )


def test_one_step_scenarios_need_no_compounding():
    problem = build(GBM1, MARKET, {"kind": "constant", "leverage": 3.0, "rebalance": 1}, horizon_days=1)
    key = problem.key(0)
    scen = scenarios_from_simulation(problem, key, problem.cfg.paths)
    assert scen.mean_price_cash is None and np.all(scen.mean_price == 1.0)
    wealth = scenario_wealth(np.array([3.0]), scen, problem.market)
    np.testing.assert_allclose(wealth, np.asarray(simulate(problem, key).wealth), rtol=0, atol=1e-12)


def test_compounded_funding_needs_matching_market():
    x = np.random.default_rng(0).normal(0.0, 0.02, (50, 10, 2))
    scen = scenarios_from_paths(x, 1 / 365, MARKET)
    assert scen.compounded_at == (0.03, 0.08)
    scenario_wealth(np.array([1.0, 0.5]), scen, MARKET)
    with pytest.raises(ConfigError, match="rebuild them with this market"):
        scenario_wealth(np.array([1.0, 0.5]), scen, MARKET | {"cash_rate": 0.01})


# ------------------------------------------------------------------------------------------------
# Kelly: the sample optimum against the exact one-period optimum and (mu - r) / sigma^2.


def kelly_one_period(mu: float, sigma: float, r: float, years: float) -> tuple[float, float]:
    """Exact optimum of E log(1 + G + w (R - G)) under GBM and the delta-method sd of the optimum
    of its sample average over one scenario: sd = sqrt(Var g) / |E g'|, g = (R - G) / W."""
    m, v, g_r = (mu - sigma**2 / 2) * years, sigma**2 * years, math.expm1(r * years)

    def foc(w, power=1):
        return lambda x: ((np.expm1(x) - g_r) / (1 + g_r + w * (np.expm1(x) - g_r))) ** power

    w = optimize.brentq(lambda w: normal_expectation(foc(w), m, v), 0.0, 1.0, xtol=1e-14)
    return w, math.sqrt(normal_expectation(foc(w, 2), m, v)) / normal_expectation(foc(w, 2), m, v)


@pytest.mark.parametrize("period_days", [1, 30])
def test_kelly_leverage(period_days):
    mu, sigma, r, n_scen, n_sets = 0.5, 0.8, 0.05, 20000, 2
    market = {"borrow_rate": r, "cash_rate": r}
    problem = build(
        GBM1, market, {"kind": "constant", "leverage": 1.0, "rebalance": period_days}, horizon_days=60
    )
    years = period_days / 365
    w_exact, sd_one = kelly_one_period(mu, sigma, r, years)
    sd = sd_one / math.sqrt(n_scen)
    # The discrete-period optimum differs from the continuous-time (mu - r) / sigma^2 by O(dt):
    # the bias halves with the period and is far below the Monte Carlo error.
    kelly = (mu - r) / sigma**2
    bias = w_exact - kelly
    half = kelly_one_period(mu, sigma, r, years / 2)[0] - kelly
    assert bias / half == pytest.approx(2.0, rel=0.02)
    assert abs(bias) < 0.1 * sd
    estimates = []
    for i in range(n_sets):
        scen = scenarios_from_simulation(problem, jax.random.fold_in(problem.key(0), i), n_scen)
        assert scen.years == pytest.approx(years)
        res = solve_convex(ConvexProblem("log_growth"), scen, problem.market)
        w = res.weights[0]
        # The solver found the sample optimum: its first-order condition holds far below MC error.
        wealth = scenario_wealth(res.weights, scen, problem.market)
        y = scen.returns[:, 0] - math.expm1(r * years)
        assert abs(np.mean(y / wealth) / np.mean((y / wealth) ** 2)) < 1e-3 * sd
        assert abs(w - w_exact) < Z * sd
        estimates.append(w)
    assert abs(np.mean(estimates) - w_exact) < Z * sd / math.sqrt(n_sets)
    assert abs(np.mean(estimates) - kelly) < Z * sd / math.sqrt(n_sets) + abs(bias)


# ------------------------------------------------------------------------------------------------
# A hand-written cvxpy program of the CVaR-constrained Kelly problem gives the same solution.


def direct_cvar_kelly(R, years, fee, cash_rate, borrow_rate, level, limit):
    """CVaR-constrained Kelly written from scratch: plain Variables, cp.log, Rockafellar–Uryasev."""
    s, n = R.shape
    w, a = cp.Variable(n), cp.Variable()
    cash = 1 - cp.sum(w) - fee * cp.norm1(w)
    interest = cp.minimum(cash * math.expm1(cash_rate * years), cash * math.expm1(borrow_rate * years))
    log_wealth = cp.log(cash + cp.sum(w) + R @ w + interest)
    cvar = a + cp.sum(cp.pos(-log_wealth - a)) / (s * (1 - level))
    prob = cp.Problem(cp.Maximize(cp.sum(log_wealth) / (s * years)), [cvar <= limit])
    prob.solve(solver="CLARABEL")
    assert prob.status == cp.OPTIMAL
    return w.value, prob.value


@pytest.mark.parametrize("model", ["one_asset", "three_assets"])
def test_matches_direct_cvxpy(model):
    market = {"borrow_rate": 0.07, "cash_rate": 0.03, "fee": 0.0005, "slippage": 0.0005}
    spec = GBM1 if model == "one_asset" else GBM3
    problem = build(
        spec,
        market,
        {"kind": "constant", "leverage": 1.0, "rebalance": 7}
        if model == "one_asset"
        else {"kind": "constant", "weights": [0.3, 0.3, 0.3], "rebalance": 7},
    )
    scen = scenarios_from_simulation(problem, problem.key(0), 5000)
    level = 0.95
    kelly = solve_convex(ConvexProblem("log_growth"), scen, problem.market)
    limit = 0.5 * evaluate_metric({"metric": "cvar", "level": level}, kelly.weights, scen, problem.market)
    ours = solve_convex(
        ConvexProblem("log_growth", [{"metric": "cvar", "max": limit, "level": level, "returns": "log"}]),
        scen,
        problem.market,
    )
    w_direct, obj_direct = direct_cvar_kelly(scen.returns, scen.years, 0.001, 0.03, 0.07, level, limit)
    assert np.all(
        (np.abs(ours.weights - w_direct) <= 1e-4)
        | (np.abs(ours.weights - w_direct) <= 0.01 * np.abs(w_direct))
    )
    assert abs(ours.value - obj_direct) <= 1e-6
    (report,) = ours.constraints
    assert report.binding and report.satisfied and report.value == pytest.approx(limit, abs=1e-6)
    assert ours.value < kelly.value


# ------------------------------------------------------------------------------------------------
# Minimum CVaR of normal returns = the normal CVaR of the minimum-variance portfolio.

MU3 = np.array([0.010, 0.020, 0.030])
SD3 = np.array([0.040, 0.070, 0.100])


def test_min_cvar_normal_returns():
    beta, target, n_scen = 0.95, 0.022, 20000
    cov = np.outer(SD3, SD3) * np.array(CORR3)
    k = stats.norm.pdf(stats.norm.ppf(beta)) / (1 - beta)
    # Population: min-variance portfolio at the target (long-only, budget 1), analytic normal CVaR.
    wv = cp.Variable(3)
    qp = cp.Problem(cp.Minimize(cp.quad_form(wv, cov)), [MU3 @ wv == target, cp.sum(wv) == 1, wv >= 0])
    qp.solve(solver="CLARABEL")
    s_star = math.sqrt(qp.value)
    cvar_star = -target + k * s_star
    # ... which is the population min-CVaR (the target binds): min -mu.w + k |L'w| s.t. mu.w >= target.
    chol = np.linalg.cholesky(cov)
    wc = cp.Variable(3)
    mean_con = MU3 @ wc >= target
    socp = cp.Problem(cp.Minimize(-MU3 @ wc + k * cp.norm(chol.T @ wc)), [mean_con, cp.sum(wc) == 1, wc >= 0])
    socp.solve(solver="CLARABEL")
    assert socp.value == pytest.approx(cvar_star, abs=1e-7)
    nu = float(mean_con.dual_value)  # d CVaR* / d target
    # Sampling sd of the optimal sample CVaR: influence function of CVaR at w* plus nu x the
    # influence of the sample mean through the (binding) target constraint.
    q = -target + s_star * stats.norm.ppf(beta)

    def influence_sq(loss):
        return (q + max(loss - q, 0.0) / (1 - beta) - cvar_star + nu * (loss + target)) ** 2

    density = stats.norm(-target, s_star).pdf
    var_if = sum(
        integrate.quad(lambda x: influence_sq(x) * density(x), lo, hi, epsabs=1e-14)[0]
        for lo, hi in [(-target - 12 * s_star, q), (q, -target + 12 * s_star)]
    )
    sd = math.sqrt(var_if / n_scen)
    rng = np.random.default_rng(2024)
    returns = rng.multivariate_normal(MU3, cov, size=n_scen)
    scen = scenarios_from_returns(returns, "simple", years=1 / 12)
    problem = ConvexProblem(
        {"metric": "cvar", "level": beta, "returns": "simple"},
        [{"metric": "mean_return", "min": target}],
        lower=0.0,
        budget=1.0,
    )
    res = solve_convex(problem, scen)
    assert res.constraints[0].binding
    assert np.sum(res.weights) == pytest.approx(1.0, abs=1e-8) and np.all(res.weights >= -1e-8)
    assert abs(res.value - cvar_star) < Z * sd, (res.value, cvar_star, sd)


# ------------------------------------------------------------------------------------------------
# Busseti, Ryu & Boyd: risk-constrained Kelly bounds the drawdown probability.


def test_risk_constrained_kelly():
    mu, sigma, alpha, beta, n_scen = 0.5, 0.8, 0.7, 0.1, 10000
    lam = math.log(beta) / math.log(alpha)
    problem = build(GBM1, {}, {"kind": "constant", "leverage": 1.0, "rebalance": 1}, horizon_days=60)
    scen = scenarios_from_simulation(problem, problem.key(3), n_scen)
    drawdown = {"metric": "kelly_drawdown", "alpha": alpha, "beta": beta}
    kelly = solve_convex(ConvexProblem("log_growth"), scen)
    assert evaluate_metric(drawdown, kelly.weights, scen) > 0  # full Kelly violates the bound
    res = solve_convex(ConvexProblem("log_growth", [drawdown]), scen)
    (report,) = res.constraints
    assert report.satisfied and report.binding and abs(report.value) < 1e-6
    w = res.weights[0]
    # Exact one-period solution of E[W^-lambda] = 1 and the delta-method sd of the sample root.
    dt = 1 / 365
    m, v = (mu - sigma**2 / 2) * dt, sigma**2 * dt
    moment = lambda w, p=1: normal_expectation(lambda x: (1 + w * np.expm1(x)) ** (-lam * p), m, v)
    w_exact = optimize.brentq(lambda w: moment(w) - 1, 1e-3, kelly.weights[0], xtol=1e-14)
    slope = normal_expectation(lambda x: -lam * np.expm1(x) * (1 + w_exact * np.expm1(x)) ** (-lam - 1), m, v)
    sd = math.sqrt(moment(w_exact, 2) - 1) / abs(slope) / math.sqrt(n_scen)
    assert abs(w - w_exact) < Z * sd
    # Continuous time: fractional Kelly with c = 2 / (1 + lambda), i.e. w = 2 f* / (1 + lambda).
    assert w_exact == pytest.approx(2 * mu / sigma**2 / (1 + lam), rel=0.01)
    # Repeated bets drawn from the scenarios: W^-lambda is a supermartingale, so by Ville's
    # inequality P(min_t W_t < alpha) <= alpha^lambda = beta at any horizon.
    rng = np.random.default_rng(11)
    years = 10

    def ruin_probability(weight: float, paths: int) -> float:
        log_w = np.log(scenario_wealth(np.array([weight]), scen, None))
        level, low = np.zeros(paths), np.zeros(paths)
        for _ in range(years):
            level = level[:, None] + np.cumsum(log_w[rng.integers(0, n_scen, (paths, 365))], axis=1)
            low = np.minimum(low, level.min(axis=1))
            level = level[:, -1]
        return float(np.mean(low < math.log(alpha)))

    paths = 4000
    se = math.sqrt(beta * (1 - beta) / paths)
    assert ruin_probability(w, paths) <= beta + Z * se
    # Full Kelly (c = 1) breaks it: alpha^(2/c - 1) = 0.7 over an infinite horizon.
    assert ruin_probability(kelly.weights[0], 1000) > beta + Z * math.sqrt(beta * (1 - beta) / 1000)


# ------------------------------------------------------------------------------------------------
# Errors: infeasible constraints report the best achievable value; unbounded programs say why.


@pytest.fixture(scope="module")
def normal_scenarios() -> Scenarios:
    cov = np.outer(SD3, SD3) * np.array(CORR3)
    returns = np.random.default_rng(5).multivariate_normal(MU3, cov, size=2000)
    return scenarios_from_returns(returns, "simple", years=1 / 12)


def number_after(text: str, phrase: str) -> float:
    match = re.search(re.escape(phrase) + r" (-?[0-9.]+(?:e[-+]?[0-9]+)?)", text)
    assert match, text
    return float(match.group(1))


def test_infeasible_cvar_reports_lowest_achievable(normal_scenarios):
    structural = {"lower": 0.0, "budget": 1.0}
    cvar = {"metric": "cvar", "level": 0.95, "returns": "log"}
    problem = ConvexProblem("log_growth", [cvar | {"max": 0.01}], **structural)
    with pytest.raises(InfeasibleError) as err:
        solve_convex(problem, normal_scenarios)
    msg = str(err.value)
    assert "cvar max 0.01" in msg and "raise the limit" in msg
    best = solve_convex(ConvexProblem(cvar, **structural), normal_scenarios)
    assert number_after(msg, "the lowest achievable cvar is") == pytest.approx(best.value, rel=1e-5)


def test_infeasible_pair_and_structure(normal_scenarios):
    problem = ConvexProblem(
        "mean_return",
        [{"metric": "log_growth", "min": 0.30}, {"metric": "cvar", "max": 0.10, "returns": "simple"}],
        lower=0.0,
        budget=1.0,
    )
    with pytest.raises(InfeasibleError, match="given the other constraints") as err:
        solve_convex(problem, normal_scenarios)
    assert "log_growth min 0.3" in str(err.value)
    with pytest.raises(InfeasibleError, match=r"budget 1\.0 must lie within"):
        solve_convex(ConvexProblem("log_growth", upper=0.2, budget=1.0), normal_scenarios)
    with pytest.raises(InfeasibleError, match="keep W > 0 in every scenario"):
        solve_convex(ConvexProblem("log_growth", lower=50.0), normal_scenarios)


def test_unbounded_suggests_leverage_limit(normal_scenarios):
    with pytest.raises(SolverError, match="gross_leverage"):
        solve_convex(ConvexProblem("mean_return"), normal_scenarios)
    res = solve_convex(
        ConvexProblem("mean_return", [{"metric": "gross_leverage", "max": 3}]), normal_scenarios
    )
    assert np.sum(np.abs(res.weights)) == pytest.approx(3, abs=1e-6)
    assert res.weights[2] == pytest.approx(3, abs=1e-6)  # all in the highest mean


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"objective": "var"}, "use {metric: cvar}"),
        ({"constraints": [{"metric": "liquidation_probability", "max": 0.01}]}, "optax"),
        ({"constraints": [{"metric": "log_growth", "max": 1.0}]}, "not convex"),
        ({"constraints": [{"metric": "cvar", "max": 0.1, "level": 1.5}]}, r"constraints\[0\]\.level"),
        ({"constraints": [{"metric": "cvar", "max": 0.1, "alpha": 0.5}]}, "unknown option of cvar"),
        ({"constraints": [{"metric": "kelly_drawdown", "alpha": 0.5}]}, "beta"),
        ({"objective": "sharpe"}, "allowed: .*cvar, .*gross_leverage"),
    ],
)
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ConvexProblem(**kwargs)


def test_unknown_solver_lists_installed(normal_scenarios):
    with pytest.raises(ConfigError, match="CLARABEL"):
        solve_convex(ConvexProblem("log_growth", solver="NOSUCH"), normal_scenarios)


def test_limit_sweep_reuses_compiled_program(normal_scenarios):
    from levopt.optimize import convex

    values, programs = [], set()
    for limit in (0.04, 0.06, 0.08):
        problem = ConvexProblem("log_growth", [{"metric": "cvar", "max": limit}], lower=0.0, upper=2.0)
        res = solve_convex(problem, normal_scenarios)
        assert res.constraints[0].binding
        values.append(res.value)
        compiled = convex._compile(
            problem, normal_scenarios, None, convex.thread_cache()
        )  # the cached program
        assert compiled.problem.is_dpp() and compiled.limits[0].value == limit
        programs.add(id(compiled.problem))
    assert len(programs) == 1
    assert values[0] < values[1] < values[2]


def test_scenarios_from_returns_and_validation():
    x = np.array([[0.01, -0.02], [0.0, 0.03]])
    log_scen = scenarios_from_returns(x, "log", years=1 / 365)
    np.testing.assert_allclose(log_scen.returns, np.expm1(x))
    assert np.all(log_scen.mean_price == 1.0)
    with pytest.raises(DataError, match="row 1"):
        scenarios_from_returns([[0.1], [-1.0]], "simple")
    with pytest.raises(DataError, match="sum to 1"):
        Scenarios(np.zeros((2, 1)), np.ones((2, 1)), 1.0, weights=np.array([0.5, 0.6]))
    weighted = Scenarios(np.array([[0.1], [-0.05]]), np.ones((2, 1)), 1.0, weights=np.array([0.25, 0.75]))
    assert evaluate_metric("mean_return", [2.0], weighted) == pytest.approx(2 * (0.025 - 0.0375))
