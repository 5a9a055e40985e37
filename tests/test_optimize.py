"""The gradient layer against closed forms and against the convex layer on identical scenarios."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from conftest import Z, make_config
from scipy import optimize as sopt
from test_engine import first_passage, kelly_discrete

import levopt
from levopt.config import parse_objective
from levopt.errors import InfeasibleError, SolverError
from levopt.optimize import ConvexProblem, optimize_policy, scenarios_from_simulation, solve_convex
from levopt.problem import STREAM_PATHS
from levopt.runner import build, run


def optimize(cfg: dict):
    problem = build(cfg)
    return problem, optimize_policy(problem, parse_objective(problem.cfg.objective))


def test_kelly_leverage_matches_closed_form():
    mu, sigma, r, paths, days = 0.5, 0.8, 0.05, 5000, 365
    cfg = make_config(
        paths=paths,
        horizon_days=days,
        model={"kind": "gbm", "mu": mu, "sigma": sigma},
        market={"borrow_rate": r, "cash_rate": r, "maintenance_margin": 0.0},
        policy={"kind": "constant", "leverage": {"init": 1.5, "min": 0.0, "max": 4.0}, "rebalance": 1},
        objective={"maximize": "log_growth"},
        optimizer={"method": "optax", "replicates": 1, "steps": 400, "paths": paths},
    )
    _, found = optimize(cfg)
    lev = float(found.params["weights"][0])
    # argmax of the sample growth: its error is (d growth/df)/(d2 growth/df2) ~ N(0, 1/(sigma^2 N T)).
    se = 1 / (sigma * math.sqrt(paths * days / 365))
    f_discrete = sopt.minimize_scalar(
        lambda f: -kelly_discrete(f, mu, sigma, r, 1 / 365), bounds=(0, 3), method="bounded"
    ).x
    assert abs(lev - f_discrete) < Z * se
    assert abs(f_discrete - (mu - r) / sigma**2) < 0.01
    assert found.optimizer["converged"]


def test_liquidation_cap_lands_on_first_passage_boundary():
    mu, sigma, mm, cap, paths = 0.3, 0.8, 0.005, 0.05, 10000
    cfg = make_config(
        paths=paths,
        model={"kind": "gbm", "mu": mu, "sigma": sigma},
        market__maintenance_margin=mm,
        policy={"kind": "constant", "leverage": {"init": 2.0, "min": 1.0, "max": 20.0}, "rebalance": "never"},
        objective={
            "maximize": "mean_return",
            "constraints": [{"metric": "liquidation_probability", "max": cap}],
        },
        optimizer={"method": "optax", "replicates": 1, "steps": 600, "paths": paths},
    )
    _, found = optimize(cfg)
    lev = float(found.params["weights"][0])
    T = 30 / 365
    boundary = sopt.brentq(lambda L: first_passage(L, mm, mu, sigma, T) - cap, 1.01, 20)
    slope = (
        first_passage(boundary + 1e-4, mm, mu, sigma, T) - first_passage(boundary - 1e-4, mm, mu, sigma, T)
    ) / 2e-4
    # The estimated probability at the boundary errs by at most its binomial sd; map it through the slope.
    se_lev = math.sqrt(cap * (1 - cap) / paths) / slope
    assert abs(lev - boundary) < Z * se_lev
    assert found.in_sample["metrics"]["liquidation_probability"] == pytest.approx(cap, rel=0.01)


# Three assets take ~35 s: a long study; one asset keeps the agreement in the default run.
@pytest.mark.parametrize("n_assets", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_gradient_and_convex_layers_agree_on_identical_scenarios(n_assets):
    if n_assets == 1:
        model = {"kind": "gbm", "mu": 0.8, "sigma": 0.7}
        policy = {"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 5.0}, "rebalance": "never"}
    else:
        model = {
            "kind": "gbm",
            "mu": [0.9, 0.6, 0.3],
            "sigma": [0.8, 0.6, 0.4],
            "corr": [[1, 0.6, 0.3], [0.6, 1, 0.4], [0.3, 0.4, 1]],
        }
        policy = {
            "kind": "constant",
            "weights": {"init": [0.5, 0.5, 0.5], "min": 0.0, "max": 4.0},
            "rebalance": "never",
        }
    objective = {"maximize": "log_growth", "constraints": [{"metric": "cvar", "level": 0.95, "max": 0.3}]}
    paths = 2048
    cfg = make_config(
        paths=paths,
        horizon_days=30,
        model=model,
        policy=policy,
        objective=objective,
        market={"borrow_rate": 0.08, "cash_rate": 0.02, "fee": 0.0005, "maintenance_margin": 0.0},
        optimizer={
            "method": "optax",
            "replicates": 1,
            "steps": 400,
            "paths": paths,
            "tol": 1e-6,
            "feasibility_tol": 1e-6,
        },
    )
    problem, found = optimize(cfg)
    scen = scenarios_from_simulation(problem, problem.key(STREAM_PATHS), paths)
    convex = solve_convex(
        ConvexProblem(
            "log_growth",
            [{"metric": "cvar", "level": 0.95, "max": 0.3}],
            lower=0.0,
            upper=5.0 if n_assets == 1 else 4.0,
        ),
        scen,
        problem.market,
    )
    w_grad, w_cvx = np.asarray(found.params["weights"]).reshape(-1), convex.weights
    # Derived tolerance: both solve one program on the same scenarios (mm = 0: the simulator's
    # wealth is the scenario wealth). The gradient layer stops with the CVaR constraint met to
    # feasibility_tol relative to its limit, which moves the optimal value by at most the
    # multiplier times that slack (first order), plus the solvers' own precision (1e-8).
    gap = 2 * abs(convex.constraints[0].dual) * 1e-6 * 0.3 + 1e-8
    assert abs(found.in_sample["metrics"]["log_growth"] - convex.value) <= gap
    # The weights: exact up to the same first-order slack in one asset; with three assets the
    # optimum is flat along the CVaR boundary (a value gap of 1e-7 allows weights 1e-3 apart), so
    # they are compared to 1% of the largest weight.
    assert np.allclose(w_grad, w_cvx, rtol=0, atol=0.01 * np.max(np.abs(w_cvx)))


def test_infeasible_cap_reports_best_achievable_value():
    cfg = make_config(
        paths=2048,
        policy={"kind": "constant", "leverage": {"init": 6.0, "min": 5.0, "max": 10.0}, "rebalance": "never"},
        objective={
            "maximize": "log_growth",
            "constraints": [{"metric": "liquidation_probability", "max": 1e-6}],
        },
        optimizer={"method": "optax", "replicates": 1, "steps": 150, "paths": 2048},
    )
    with pytest.raises(InfeasibleError, match=r"best achievable value is") as info:
        optimize(cfg)
    # Reference: the lowest liquidation probability is at the lowest leverage allowed (5x), the
    # GBM first-passage probability; the search estimates it on its 2048 paths (binomial s.e.).
    best = float(re.search(r"best achievable value is ([0-9.e-]+)", str(info.value)).group(1))
    p = first_passage(5.0, 0.005, 0.0, 0.8, 30 / 365)
    assert abs(best - p) < Z * math.sqrt(p * (1 - p) / 2048), (best, p)


def test_nan_appearing_mid_search_is_named_with_its_step_and_parameter():
    """The objective is the mean return (increasing in leverage) times a factor that is exactly 1
    while E[W] < 1.05 and NaN beyond: Adam's fixed steps raise the leverage from 0.5 across
    E[W] = 1.05 (leverage ~1.2 at 4.2% drift over the horizon) after a few dozen steps."""

    @levopt.objective("test_nan_past_threshold")
    def nan_past(outcome, ctx):
        import jax.numpy as jnp

        m = jnp.mean(outcome.wealth)
        return (m - 1.0) + 0.0 * jnp.sqrt(1.05 - m)

    cfg = make_config(
        paths=512,
        model={"kind": "gbm", "mu": 0.5, "sigma": 0.3},
        market={"maintenance_margin": 0.0},
        policy={"kind": "constant", "leverage": {"init": 0.5, "min": 0.0, "max": 5.0}, "rebalance": "never"},
        objective={"maximize": "test_nan_past_threshold"},
        optimizer={"method": "optax", "solver": "adam", "learning_rate": 0.05, "replicates": 1, "steps": 200},
    )
    with pytest.raises(
        SolverError, match=r"non-finite gradient at step ([2-9]|[1-9]\d+) in parameter weights"
    ):
        optimize(cfg)


def test_non_finite_gradient_is_reported_with_step_and_parameter():
    @levopt.objective("test_nan_after_three")
    def explodes(outcome, ctx):
        import jax.numpy as jnp

        return jnp.sqrt(jnp.mean(outcome.wealth) - 1.2)

    cfg = make_config(
        paths=512,
        policy={"kind": "constant", "leverage": {"init": 2.0, "min": 0.0, "max": 5.0}, "rebalance": "never"},
        objective={"maximize": "test_nan_after_three"},
        optimizer={"method": "optax", "replicates": 1, "steps": 10, "paths": 512},
    )
    with pytest.raises(SolverError, match=r"step 1"):
        optimize(cfg)


@pytest.mark.slow  # two optimizations on 3,000 x 120-day GARCH paths (~35 s)
def test_schedule_rises_as_garch_volatility_mean_reverts():
    """Starting at 3x the long-run variance, the optimal leverage schedule increases over time and
    beats the best constant leverage out of sample."""
    omega, alpha, beta = 4e-5, 0.08, 0.9
    h_bar = omega / (1 - alpha - beta)
    # Kelly leverage ~ mu / variance, the variance decaying from 3 h_bar (half-life ~34 days): with
    # mu = 1 the segments' optima are about 0.6, 1.0, 1.2, 1.3x, while each is found from 3,000 search
    # paths to about 1 / (sigma sqrt(paths x 30 days)) ~ 0.075x -- the first two differ by > 3 s.e.
    model = {"kind": "garch", "mu": 1.0, "omega": omega, "alpha": alpha, "beta": beta, "h0": 3 * h_bar}
    base = dict(
        paths=20000,
        horizon_days=120,
        model=model,
        market={"borrow_rate": 0.05, "cash_rate": 0.0, "maintenance_margin": 0.0},
        objective={"maximize": "log_growth"},
    )
    sched = run(
        make_config(
            **base,
            policy={
                "kind": "schedule",
                "segments": 4,
                "leverage": {"init": 1.0, "min": 0.0, "max": 6.0},
                "rebalance": 1,
            },
            optimizer={"method": "optax", "replicates": 1, "steps": 300, "paths": 3000},
        ),
        profiles=False,
    )
    const = run(
        make_config(
            **base,
            policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 6.0}, "rebalance": 1},
            optimizer={"method": "optax", "replicates": 1, "steps": 300, "paths": 3000},
        ),
        profiles=False,
    )
    lev = np.asarray(sched["policy"]["leverage"])
    # Rising: the first (most volatile) segment holds the least leverage, and the trend is upward.
    assert lev[0] < lev[1:].min() and np.polyfit(np.arange(lev.size), lev, 1)[0] > 0, lev
    g_s, g_c = (
        sched["out_of_sample"]["metrics"]["log_growth"],
        const["out_of_sample"]["metrics"]["log_growth"],
    )
    se = math.hypot(
        sched["out_of_sample"]["stderr"]["log_growth"], const["out_of_sample"]["stderr"]["log_growth"]
    )
    # Both are evaluated on the same fresh paths, so the independent-errors bound is conservative.
    assert g_s > g_c - Z * se and g_s > g_c, (g_s, g_c, se)


def test_run_result_contract(tmp_path):
    cfg = make_config(
        paths=2048,
        model={"kind": "gbm", "mu": 0.3, "sigma": 0.8},
        policy={"kind": "constant", "leverage": {"init": 2.0, "min": 1.0, "max": 10.0}, "rebalance": "never"},
        objective={
            "maximize": "log_growth",
            "constraints": [
                {"metric": "liquidation_probability", "max": 0.02},
                {"metric": "cvar", "level": 0.95, "max": 0.5},
            ],
        },
        optimizer={"method": "optax", "replicates": 1, "steps": 200, "paths": 2048},
    )
    res = run(cfg)
    assert set(res) >= {
        "policy",
        "in_sample",
        "out_of_sample",
        "constraints",
        "optimizer",
        "config",
        "seed",
        "versions",
    }
    assert set(res["out_of_sample"]) == {"metrics", "stderr"}
    assert set(res["optimizer"]) >= {"method", "iterations", "converged", "wall_s"}
    assert [c["metric"] for c in res["constraints"]] == ["liquidation_probability", "cvar(level=0.95)"]
    for c in res["constraints"]:
        assert set(c) >= {"metric", "limit", "value", "satisfied"}
    assert isinstance(res["policy"]["leverage"], float)
    assert run(cfg)["policy"] == res["policy"]


def test_policy_stderr_has_the_policy_shape_and_flags_a_flat_objective():
    """References: with zero drift and no costs or liquidation, E[W_T] = 1 at every leverage, so the
    expected return is flat and the optimum found is noise of the paths (flagged); the Kelly leverage
    under drift is pinned down: its spread over replicates is about 1/(σ sqrt(N T)) = 0.065 for
    8192 paths over 60 days, a third of the flagging threshold (a tenth of the range [0, 2])."""
    base = make_config(
        paths=8192,
        horizon_days=60,
        market={"maintenance_margin": 0.0},
        policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 2.0}, "rebalance": 1},
        optimizer={"method": "optax", "replicates": 3, "steps": 40},
    )
    flat = run(
        base | {"model": {"kind": "gbm", "mu": 0.0, "sigma": 0.3}, "objective": {"maximize": "mean_return"}},
        profiles=False,
    )
    assert np.shape(flat["policy_stderr"]["leverage"]) == np.shape(flat["policy"]["leverage"]) == ()
    assert flat["optimizer"]["replicates"] == 3
    assert flat["not_identified"] == ["leverage"], flat["policy_stderr"]
    kelly = run(
        base | {"model": {"kind": "gbm", "mu": 0.4, "sigma": 0.6}, "objective": {"maximize": "log_growth"}},
        profiles=False,
    )
    assert kelly["not_identified"] == []
    assert 0 < kelly["policy_stderr"]["leverage"] < 0.2
