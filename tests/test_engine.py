"""The margin engine against closed forms: Kelly growth, first-passage liquidation, gradients."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z, make_config
from scipy import stats

import levopt
from levopt.engine import simulate_outcome
from levopt.objectives import get_metric
from levopt.problem import STREAM_PATHS


def kelly_continuous(f, mu, sigma, r):
    return r + f * (mu - r) - f**2 * sigma**2 / 2


def kelly_discrete(f, mu, sigma, r, dt):
    """Exact growth of daily rebalancing: E log(1 + f(e^x - 1) + (1 - f) expm1(r dt)) / dt, by quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    x = (mu - sigma**2 / 2) * dt + sigma * math.sqrt(dt) * nodes
    wealth = 1 + f * np.expm1(x) + (1 - f) * math.expm1(r * dt)
    return float(np.sum(weights * np.log(wealth)) / math.sqrt(2 * math.pi) / dt)


@pytest.mark.parametrize("f", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_kelly_growth_curve(f):
    mu, sigma, r = 0.4, 0.6, 0.05
    cfg = make_config(
        paths=20000,
        horizon_days=365,
        model={"kind": "gbm", "mu": mu, "sigma": sigma},
        market={"borrow_rate": r, "cash_rate": r, "maintenance_margin": 0.0},
        policy={"kind": "constant", "leverage": f, "rebalance": 1},
    )
    res = levopt.evaluate(cfg)
    got, se = res["metrics"]["log_growth"], res["stderr"]["log_growth"]
    discrete = kelly_discrete(f, mu, sigma, r, 1 / 365)
    continuous = kelly_continuous(f, mu, sigma, r)
    assert abs(got - discrete) < Z * se
    # The daily-rebalanced curve differs from the continuous-time one only by the O(dt) term.
    assert abs(got - continuous) < Z * se + abs(discrete - continuous)
    assert abs(discrete - continuous) < 0.01


@pytest.mark.parametrize("f", [0.5, 2.0, 4.0])
def test_zero_volatility_gives_exact_deterministic_growth(f):
    mu, r = 0.3, 0.08
    cfg = make_config(
        paths=256,
        horizon_days=365,
        model={"kind": "gbm", "mu": mu, "sigma": 0.0},
        market={"borrow_rate": r, "cash_rate": r, "maintenance_margin": 0.0},
        policy={"kind": "constant", "leverage": f, "rebalance": 1},
    )
    res = levopt.evaluate(cfg)
    dt = 1 / 365
    exact = 365 * math.log(1 + f * math.expm1(mu * dt) + (1 - f) * math.expm1(r * dt))
    assert res["metrics"]["log_growth"] == pytest.approx(exact, rel=1e-12, abs=1e-13)
    assert res["stderr"]["log_growth"] < 1e-12
    # Against the continuous-time curve r + f(mu - r) the gap is the second-order term of log(1 + .).
    second_order = dt / 2 * abs(f * mu**2 - (f - 1) * r**2 - (f * mu - (f - 1) * r) ** 2)
    assert abs(exact - (r + f * (mu - r))) < 1.1 * second_order


def first_passage(L, mm, mu, sigma, T):
    """P(min_{t<=T} log S_t/S_0 <= b) for GBM, b = log((L-1)/(L(1-mm)))."""
    b = math.log((L - 1) / (L * (1 - mm)))
    nu = mu - sigma**2 / 2
    s = sigma * math.sqrt(T)
    return stats.norm.cdf((b - nu * T) / s) + math.exp(2 * nu * b / sigma**2) * stats.norm.cdf(
        (b + nu * T) / s
    )


@pytest.mark.parametrize("L,mu", [(3.0, 0.0), (5.0, 0.0), (10.0, 0.5), (5.0, -0.5)])
def test_liquidation_probability_matches_first_passage(L, mu):
    sigma, mm, days = 0.8, 0.005, 30
    cfg = make_config(
        paths=40000,
        model={"kind": "gbm", "mu": mu, "sigma": sigma},
        policy__leverage=L,
        market__maintenance_margin=mm,
    )
    res = levopt.evaluate(cfg)
    m, se = res["metrics"], res["stderr"]
    expected = first_passage(L, mm, mu, sigma, days / 365)
    assert abs(m["liquidation_probability"] - expected) < Z * se["liquidation_probability"]
    # Checking only at daily closes misses intraday crossings: clearly lower.
    gap = expected - m["liquidation_probability_discrete"]
    assert gap > Z * se["liquidation_probability_discrete"]


def test_jump_gaps_through_to_bankruptcy_and_floor_at_zero():
    model = {"kind": "merton", "mu": 0.0, "sigma": 0.3, "lam": 20.0, "jump_mean": -0.3, "jump_std": 0.05}
    cfg = make_config(paths=4096, model=model, policy__leverage=10.0, market__liquidation_fee=0.01)
    problem = levopt.build(cfg)
    o = jax.jit(problem.simulate)(problem.key(STREAM_PATHS))
    wealth = np.asarray(o.wealth)
    assert wealth.min() == 0.0 and np.all(wealth >= 0)
    # A 10x long loses everything on a -30% jump: most liquidations end at zero equity.
    liquidated = np.asarray(o.liquidated)
    assert liquidated.mean() > 0.5 and np.mean(wealth[liquidated] == 0.0) > 0.5


def test_fee_and_liquidation_fee_accounting():
    # sigma = 0: a held 2x position pays the opening fee once and nothing else.
    cfg = make_config(
        paths=256, model={"kind": "gbm", "mu": 0.0, "sigma": 0.0}, policy__leverage=2.0, market__fee=0.001
    )
    assert levopt.evaluate(cfg)["metrics"]["mean_return"] == pytest.approx(-0.002, abs=1e-14)
    # Funding on a 2x long notional at 10%/yr for 30 days (notional constant since sigma = 0).
    cfg = make_config(
        paths=256,
        model={"kind": "gbm", "mu": 0.0, "sigma": 0.0},
        policy__leverage=2.0,
        market__funding_rate=0.1,
    )
    assert levopt.evaluate(cfg)["metrics"]["mean_return"] == pytest.approx(-2 * 0.1 * 30 / 365, rel=1e-12)


def test_same_seed_same_numbers_and_chunking_invariance():
    cfg = make_config(paths=3000)
    a, b = levopt.evaluate(cfg), levopt.evaluate(cfg)
    assert a["metrics"] == b["metrics"] and a["stderr"] == b["stderr"]
    c = levopt.evaluate(make_config(paths=3000, chunk_size=512))
    np.testing.assert_allclose(list(c["metrics"].values()), list(a["metrics"].values()), rtol=1e-12)
    d = levopt.evaluate(make_config(paths=3000, seed=1))
    assert d["metrics"]["log_growth"] != a["metrics"]["log_growth"]


def _metric_of_leverage(name: str, cfg: dict):
    problem = levopt.build(cfg)
    metric = get_metric(name)
    key = problem.key(STREAM_PATHS)

    def f(lev):
        policy = jax.tree.map(lambda w: jnp.full_like(w, lev), problem.policy)
        outcome = simulate_outcome(
            key,
            problem.model,
            policy,
            problem.market,
            paths=problem.cfg.paths,
            steps=problem.cfg.steps,
            dt=problem.cfg.dt,
            dtype=problem.dtype,
            ruin_floor=problem.cfg.ruin_floor,
            chunk_size=problem.cfg.chunk_size,
        )
        return metric.value(outcome, problem.ctx)

    return jax.jit(f)


@pytest.mark.parametrize("name", ["log_growth", "liquidation_probability", "cvar", "max_drawdown"])
@pytest.mark.parametrize("rebalance", ["never", 1])
def test_gradient_matches_central_difference(name, rebalance):
    cfg = make_config(paths=2048, market__fee=0.0005, market__borrow_rate=0.1, policy__rebalance=rebalance)
    f = _metric_of_leverage(name, cfg)
    L, h = 5.0, 1e-5
    grad = float(jax.grad(f)(L))
    fd = float((f(L + h) - f(L - h)) / (2 * h))
    assert math.isfinite(grad)
    assert grad == pytest.approx(fd, rel=1e-4, abs=1e-8)
