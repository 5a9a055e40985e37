"""Option books in the engine (policy kind ``options``): premium, marks, settlement, rolls, the delta
hedge, margin and liquidation, exposures.

References: the expectation of a call payoff under GBM in closed form (written with scipy), the
account worked out path by path in numpy from Black-76 written with scipy (settlement, rolls with
fees, the first step at which equity meets Deribit's maintenance rule), the (hedge interval)^½ law
of discrete-hedging error, and the GARCH variance term structure summed step by step.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z
from scipy.stats import norm

import levopt
from levopt.errors import ConfigError
from levopt.paths.garch import variance_term_structure
from levopt.problem import STREAM_PATHS


def b76(f, k, sigma, t, kind="call"):
    """Black-76, zero rates, written from the formula."""
    t = np.maximum(t, 0.0)
    w = 1.0 if kind == "call" else -1.0
    with np.errstate(divide="ignore", invalid="ignore"):
        s = sigma * np.sqrt(t)
        d1 = np.log(f / k) / s + 0.5 * s
        smooth = w * (f * norm.cdf(w * d1) - k * norm.cdf(w * (d1 - s)))
    return np.where(t > 0, smooth, np.maximum(w * (f - k), 0.0))


def b76_delta(f, k, sigma, t):
    s = sigma * np.sqrt(t)
    return norm.cdf(np.log(f / k) / s + 0.5 * s)


def book(legs, iv=0.8, hedge="never", **extra):
    return {
        "kind": "options",
        "legs": legs,
        "hedge": {"rebalance": hedge},
        "implied_vol": {"kind": "constant", "value": iv},
        **extra,
    }


def config(policy, *, sigma=0.8, mu=0.0, paths=4096, days=30, per_day=1, market=None, **top):
    return {
        "seed": 3,
        "paths": paths,
        "horizon_days": days,
        "steps_per_day": per_day,
        "precision": "float64",
        "model": {"kind": "gbm", "mu": mu, "sigma": sigma},
        "market": {"fee": 0.0, "maintenance_margin": 0.005, **(market or {})},
        "policy": policy,
        **top,
    }


def outcome_and_prices(cfg):
    problem = levopt.build(cfg)
    out = problem.simulate(problem.key(STREAM_PATHS))
    x = levopt.simulate(cfg)
    return out, np.exp(np.cumsum(x, axis=1))


@pytest.mark.parametrize(
    ("mu", "iv_spec"), [(0.0, 0.8), (0.6, 0.6), (0.6, {"kind": "model", "premium": 0.25})]
)
def test_static_call_returns_its_payoff_less_its_premium(mu, iv_spec):
    """Held to expiry: W_T = 1 + q((S_T − K)⁺ − C_0) on every path, and its mean is
    q(E[(S_T − K)⁺] − C_0) with the expectation under the model's drift (0 at μ = 0, iv = σ)."""
    q, k, days, sigma = 2.0, 1.1, 30, 0.8
    policy = book([{"type": "call", "strike": k, "expiry_days": days, "quantity": q}])
    policy["implied_vol"] = iv_spec if isinstance(iv_spec, dict) else {"kind": "constant", "value": iv_spec}
    iv = sigma * 1.25 if isinstance(iv_spec, dict) else iv_spec
    cfg = config(policy, mu=mu, days=days)
    out, prices = outcome_and_prices(cfg)
    T = days / 365
    c0 = float(b76(1.0, k, iv, T))
    expected_paths = 1.0 + q * (np.maximum(prices[:, -1] - k, 0.0) - c0)
    np.testing.assert_allclose(np.asarray(out.wealth), expected_paths, rtol=1e-10, atol=1e-12)
    assert not np.asarray(out.liquidated).any()
    r = levopt.evaluate({**cfg, "metrics": ["mean_return"]})
    forward = math.exp(mu * T)
    payoff = float(b76(forward, k, sigma, T))  # E[(S_T − K)⁺] = Black-76 at the drifted forward
    expected = q * (payoff - c0)
    assert abs(r["metrics"]["mean_return"] - expected) < Z * r["stderr"]["mean_return"], (r, expected)
    if mu == 0.0 and iv_spec == sigma:
        assert expected == 0.0


def test_delta_hedged_short_call_error_falls_like_the_root_of_the_interval():
    """Implied vol = σ, no fees: the hedged short call's P&L has mean 0 and a standard deviation
    ∝ (hedge interval)^½ (Boyle & Emanuel 1980; Derman & Kamal 1999)."""
    sigma, days, per_day = 0.6, 8, 48
    leg = [{"type": "call", "strike": 1.0, "expiry_days": days, "quantity": -1.0}]
    stds, logs = {}, {}
    for k in (1, 4, 16):
        cfg = config(book(leg, iv=sigma, hedge=k), sigma=sigma, days=days, per_day=per_day, paths=8192)
        problem = levopt.build(cfg)
        pnl = np.asarray(problem.simulate(problem.key(STREAM_PATHS)).wealth) - 1.0
        n = pnl.size
        assert abs(pnl.mean()) < Z * pnl.std(ddof=1) / math.sqrt(n)
        stds[k] = pnl.std(ddof=1)
        kurt = np.mean((pnl - pnl.mean()) ** 4) / np.var(pnl) ** 2
        # Standard error of log(s) from the sample's own kurtosis: sqrt((κ − 1) / 4n).
        logs[k] = math.sqrt((kurt - 1) / (4 * n))
    slope = math.log(stds[16] / stds[1]) / math.log(16)
    se = math.sqrt(logs[1] ** 2 + logs[16] ** 2) / math.log(16)
    assert abs(slope - 0.5) < Z * se, (stds, slope, se)
    assert stds[1] < stds[4] < stds[16]


def test_short_calls_are_liquidated_where_equity_meets_the_maintenance_margin():
    """A deterministic rally (σ = 0): the account worked out in numpy, liquidated at the first step
    where 1 + q(V_t − V_0) <= |q|(0.075 S_t + V_t) (Deribit's short-call maintenance, linear)."""
    q, k, iv, mu, days = -4.0, 1.0, 0.8, 4.0, 30
    legs = [{"type": "call", "strike": k, "expiry_days": 60, "quantity": q}]
    cfg = config(book(legs, iv=iv), sigma=0.0, mu=mu, paths=256, days=days, market={"liquidation_fee": 0.002})
    problem = levopt.build(cfg)
    out = problem.simulate(problem.key(STREAM_PATHS))
    dt = 1 / 365
    t = np.arange(days + 1) * dt
    s = np.exp(mu * t)
    v = b76(s, k, iv, 60 / 365 - t)
    w = 1.0 + q * (v - v[0])
    req = abs(q) * (0.075 * s + v)
    first = int(np.argmax(w <= req))
    assert first > 0 and (w <= req).any()
    assert np.all(np.asarray(out.liquidation_step) == first)
    w_liq = max(w[first] - 0.002 * abs(q) * s[first], 0.0)
    np.testing.assert_allclose(np.asarray(out.wealth), w_liq, rtol=1e-10)
    assert float(np.asarray(out.survival).max()) == 0.0


def test_fully_paid_long_options_are_never_liquidated():
    legs = [
        {"type": "call", "strike": 1.3, "expiry_days": 20, "quantity": 4.0},
        {"type": "put", "strike": 0.7, "expiry_days": 20, "quantity": 4.0},
    ]
    cfg = config(book(legs, iv=1.5), sigma=1.5, days=30, market={"maintenance_margin": 0.5})
    problem = levopt.build(cfg)
    out = problem.simulate(problem.key(STREAM_PATHS))
    assert not np.asarray(out.liquidated).any()
    assert np.all(np.asarray(out.survival) == 1.0)
    # Worthless at expiry on some paths: the premium (with the legs' cost below 1) is all they lose.
    premium = 4.0 * (float(b76(1.0, 1.3, 1.5, 20 / 365)) + float(b76(1.0, 0.7, 1.5, 20 / 365, "put")))
    assert premium < 1.0
    assert float(np.asarray(out.wealth).min()) == pytest.approx(1.0 - premium, rel=1e-9)


def test_rolls_and_fees_by_hand():
    """σ = 0, μ > 0: a 10-day call rolled 2 days before expiry into a new 10-day call of the same
    moneyness, the fee on every option trade, settled against a numpy account."""
    q, k, iv, mu, fee, days = 1.5, 1.05, 0.7, 1.0, 0.003, 30
    legs = [{"type": "call", "strike": k, "expiry_days": 10, "quantity": q}]
    cfg = config(
        book(legs, iv=iv, roll_days_before=2), sigma=0.0, mu=mu, paths=256, days=days, market={"fee": fee}
    )
    out, _ = outcome_and_prices(cfg)
    dt = 1 / 365
    strike, expiry = k, 10 * dt
    w = 1.0 - fee * q * float(b76(1.0, strike, iv, expiry))
    mark = float(b76(1.0, strike, iv, expiry))
    for step in range(1, days + 1):
        t = step * dt
        s = math.exp(mu * t)
        value = float(b76(s, strike, iv, expiry - t))
        w += q * (value - mark)
        mark = value
        if 0 < expiry - t <= 2 * dt + 1e-12:
            strike, expiry = k * s, t + 10 * dt
            new = float(b76(s, strike, iv, 10 * dt))
            w -= fee * q * (value + new)
            mark = new
    np.testing.assert_allclose(np.asarray(out.wealth), w, rtol=1e-10)


def test_exposures_against_the_greeks_by_hand():
    """Price held at 1 (σ = μ = 0): each step's elasticity ΔS/V and dollar gamma qΓS²/W from
    scipy's Black-76, averaged over the steps t = 0..T."""
    q, k, iv, days = 3.0, 1.0, 0.9, 5
    legs = [{"type": "call", "strike": k, "expiry_days": 20, "quantity": q}]
    cfg = config(book(legs, iv=iv), sigma=0.0, paths=256, days=days)
    metrics = [
        "elasticity",
        {"metric": "elasticity", "stat": "max", "label": "elasticity_max"},
        "dollar_gamma",
        "dollar_vega",
        "delta_leverage",
    ]
    r = levopt.evaluate({**cfg, "metrics": metrics})["metrics"]
    tau = 20 / 365 - np.arange(days + 1) / 365
    v = b76(1.0, k, iv, tau)
    delta = b76_delta(1.0, k, iv, tau)
    s = iv * np.sqrt(tau)
    pdf = norm.pdf(0.5 * s)
    gamma = pdf / s
    vega = pdf * np.sqrt(tau)
    w = 1.0 + q * (v - v[0])
    assert r["elasticity"] == pytest.approx(np.mean(delta / v), rel=1e-9)
    assert r["elasticity_max"] == pytest.approx(np.max(delta / v), rel=1e-9)
    assert r["dollar_gamma"] == pytest.approx(np.mean(q * gamma / w), rel=1e-9)
    assert r["dollar_vega"] == pytest.approx(np.mean(0.01 * q * vega / w), rel=1e-9)
    assert r["delta_leverage"] == pytest.approx(np.mean(q * delta / w), rel=1e-9)


def test_garch_forecast_vol_is_the_mean_of_the_expected_variances():
    model = levopt.build(
        config(book([{"type": "call", "strike": 1.0, "expiry_days": 30, "quantity": 1.0}]), paths=256)
        | {"model": {"kind": "garch", "mu": 0.0, "omega": 2e-5, "alpha": 0.08, "beta": 0.9, "gamma": 0.02}}
    ).model
    dt, h = 1 / 365, 3e-3
    phi = 0.08 + 0.9 + 0.01
    h_bar = 2e-5 / (1 - phi)
    for n in (1, 7, 30, 200):
        expected = np.mean([h_bar + phi**j * (h - h_bar) for j in range(n)])
        got = float(variance_term_structure(model, jnp.asarray([h]), dt, jnp.asarray(n * dt))[0])
        assert got == pytest.approx(math.sqrt(expected / dt), rel=1e-10)


@pytest.mark.parametrize(
    ("leg", "iv", "field"),
    [
        ({"type": "straddle"}, 0.8, "policy.legs.0.type"),
        ({"strike": 0.0}, 0.8, "policy.legs.0.strike"),
        ({"strike": -1.0}, 0.8, "policy.legs.0.strike"),
        ({"expiry_days": 0.0}, 0.8, "policy.legs.0.expiry_days"),
        ({"expiry_days": 0.5}, 0.8, "policy.legs.0.expiry_days"),  # shorter than a one-day step
        ({}, 0.0, "policy.implied_vol"),
        ({}, -0.2, "policy.implied_vol"),
        ({"quantity": 40.0}, 0.8, "policy.legs.0.quantity"),  # premium above the equity
    ],
)
def test_bad_option_books_name_the_field(leg, iv, field):
    base = {"type": "call", "strike": 1.0, "expiry_days": 30, "quantity": 1.0}
    cfg = config(book([{**base, **leg}], iv=iv), paths=256)
    with pytest.raises(ConfigError) as err:
        levopt.build(cfg)
    assert err.value.field.startswith(field), str(err.value)


def test_bad_option_book_on_the_command_line_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    import yaml

    from levopt.cli import main

    cfg = config(book([{"type": "call", "strike": 1.0, "expiry_days": 30, "quantity": 40.0}]), paths=256)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr("sys.argv", ["levopt", "evaluate", str(path), "--out", str(tmp_path / "out.json")])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1 and "policy.legs.0.quantity" in err[0], err


def test_convex_and_gradient_layers_agree_on_a_static_book():
    """Two long calls held to expiry, Kelly: the cvxpy program over premium notionals and the
    gradient search over quantities solve one problem on the same paths (same key, same count)."""
    from levopt.config import parse_objective
    from levopt.optimize import ConvexProblem, optimize_policy, solve_convex
    from levopt.optimize.options import option_scenarios, scenario_market

    legs = [
        {"type": "call", "strike": 1.0, "expiry_days": 30, "quantity": {"init": 0.5, "min": 0.0, "max": 5.0}},
        {"type": "call", "strike": 1.2, "expiry_days": 30, "quantity": {"init": 0.5, "min": 0.0, "max": 5.0}},
    ]
    paths = 4096
    cfg = config(book(legs, iv=0.7), mu=0.6, sigma=0.8, paths=paths, market={"fee": 0.0005})
    cfg["objective"] = {"maximize": "log_growth"}
    cfg["optimizer"] = {"method": "optax", "replicates": 1, "steps": 600, "paths": paths, "tol": 1e-8}
    problem = levopt.build(cfg)
    found = optimize_policy(problem, parse_objective(problem.cfg.objective))
    scen, cost = option_scenarios(problem, problem.key(STREAM_PATHS), paths)
    res = solve_convex(
        ConvexProblem("log_growth", [], lower=[0.0, 0.0], upper=(5.0 * cost).tolist()),
        scen,
        scenario_market(problem),
    )
    q_cvx = np.asarray(res.weights) / cost
    q_grad = np.asarray(found.params["quantity"]).reshape(-1)
    assert np.all((q_cvx > 0.1) & (q_cvx < 4.9)), q_cvx  # an interior optimum: the bounds decide nothing
    # Within 1% (measured: 1e-7 apart, the two solvers' own precision).
    np.testing.assert_allclose(q_grad, q_cvx, rtol=0.01)
    # The program's optimal value is the simulator's log-growth at its quantities.
    # Both solve one unconstrained program on the same paths: the values differ by the solvers'
    # own precision, 1e-8 as in test_optimize (measured: 2e-16).
    assert abs(found.in_sample["metrics"]["log_growth"] - res.value) <= 1e-8
    # Through the config: optimizer.method cvxpy solves the same program on the same paths.
    cfg["optimizer"] = {"method": "cvxpy", "scenarios": paths, "replicates": 1}
    through = levopt.build(cfg)
    found_cvx = optimize_policy(through, parse_objective(through.cfg.objective))
    np.testing.assert_allclose(np.asarray(found_cvx.params["quantity"]), q_cvx, rtol=1e-9)


def test_the_convex_layer_refuses_books_it_does_not_model():
    from levopt.config import parse_objective
    from levopt.optimize import optimize_policy

    free = {"init": 0.5, "min": 0.0, "max": 5.0}
    cases = [
        ({"expiry_days": 20}, {}, "policy.legs.0.expiry_days"),
        ({"quantity": {"init": 0.5, "min": -1.0, "max": 5.0}}, {}, "policy.legs.0.quantity"),
        ({"strike": {"init": 1.0, "min": 0.8, "max": 1.2}}, {}, "policy.legs"),
        ({}, {"hedge": {"rebalance": 1}}, "policy.hedge.rebalance"),
    ]
    for leg, extra, field in cases:
        policy = book([{"type": "call", "strike": 1.0, "expiry_days": 30, "quantity": free, **leg}]) | extra
        cfg = config(policy, paths=256) | {
            "objective": {"maximize": "log_growth"},
            "optimizer": {"method": "cvxpy", "scenarios": 256, "replicates": 1},
        }
        problem = levopt.build(cfg)
        with pytest.raises(ConfigError) as err:
            optimize_policy(problem, parse_objective(problem.cfg.objective))
        assert err.value.field == field, str(err.value)


def test_scenario_margin_liquidates_where_the_portfolio_rule_says():
    """market.margin: scenario. The same deterministic rally as above; each step's requirement is
    levopt.options.scenario_margin of the book (reproduced against Deribit's published
    portfolio-margin example in test_options_margin)."""
    from levopt.options import scenario_margin

    q, k, iv, mu, days = -4.0, 1.0, 0.8, 4.0, 30
    legs = [{"type": "call", "strike": k, "expiry_days": 60, "quantity": q}]
    cfg = config(book(legs, iv=iv), sigma=0.0, mu=mu, paths=256, days=days, market={"margin": "scenario"})
    problem = levopt.build(cfg)
    out = problem.simulate(problem.key(STREAM_PATHS))
    dt = 1 / 365
    t = np.arange(days + 1) * dt
    s = np.exp(mu * t)
    v = b76(s, k, iv, 60 / 365 - t)
    w = 1.0 + q * (v - v[0])
    req = np.array(
        [
            float(
                scenario_margin(
                    np.array([si]), np.array([k]), np.array([60 / 365 - ti]), np.array([iv]), np.array([q]),
                    "call", inverse=False, future_size=np.zeros(1), future_price=si,
                ).maintenance
            )
            for si, ti in zip(s, t, strict=True)
        ]
    )  # fmt: skip
    hit = w <= req
    assert hit.any() and not hit[0]
    assert np.all(np.asarray(out.liquidation_step) == int(np.argmax(hit)))


def test_market_margin_applies_to_option_books_only():
    cfg = config({"kind": "constant", "leverage": 2.0}, paths=256, market={"margin": "scenario"})
    with pytest.raises(ConfigError) as err:
        levopt.build(cfg)
    assert err.value.field == "market.margin"


def test_stochastic_implied_vol_without_vol_of_vol_is_the_constant_one():
    legs = [{"type": "call", "strike": 1.05, "expiry_days": 20, "quantity": 2.0}]
    constant = config(book(legs, iv=0.7, hedge=1), paths=512, days=10)
    still = dict(constant)
    still["policy"] = constant["policy"] | {
        "implied_vol": {"kind": "stochastic", "value": 0.7, "vol_of_vol": 0.0, "mean_reversion": 3.0}
    }
    a = levopt.build(constant)
    b = levopt.build(still)
    wa = np.asarray(a.simulate(a.key(STREAM_PATHS)).wealth)
    wb = np.asarray(b.simulate(b.key(STREAM_PATHS)).wealth)
    np.testing.assert_allclose(wb, wa, rtol=1e-12)
    moving = dict(constant)
    moving["policy"] = constant["policy"] | {
        "implied_vol": {"kind": "stochastic", "value": 0.7, "vol_of_vol": 1.5, "correlation": -0.7}
    }
    c = levopt.build(moving)
    wc = np.asarray(c.simulate(c.key(STREAM_PATHS)).wealth)
    assert np.abs(wc - wa).max() > 1e-3


def test_a_run_reports_each_legs_optimized_quantity_and_its_spread(tmp_path):
    legs = [
        {
            "type": "call",
            "strike": 1.1,
            "expiry_days": 10,
            "quantity": {"init": -0.5, "min": -2.0, "max": 0.0},
        },
        {"type": "put", "strike": 0.9, "expiry_days": 10, "quantity": -0.5},
    ]
    cfg = config(book(legs, iv=0.9, hedge=1), sigma=0.7, paths=512, days=10, precision="float32")
    cfg["objective"] = {"maximize": "log_growth"}
    cfg["optimizer"] = {"method": "optax", "replicates": 2, "steps": 20, "paths": 512}
    result = levopt.run(cfg, profiles=False)
    assert len(result["policy"]["quantity"]) == 2 and result["policy"]["quantity"][1] == -0.5
    assert -2.0 <= result["policy"]["quantity"][0] <= 0.0
    assert len(result["policy_stderr"]["quantity"]) == 2


def test_an_exposure_metric_binds_as_a_constraint():
    """Maximize growth of a cheap call (iv below σ, drift up) with its mean dollar vega capped:
    unconstrained the growth-optimal size exceeds the cap, so the cap binds at the optimum."""
    from levopt.config import parse_objective
    from levopt.optimize import optimize_policy

    legs = [
        {"type": "call", "strike": 1.0, "expiry_days": 20, "quantity": {"init": 0.2, "min": 0.0, "max": 4.0}}
    ]
    cfg = config(book(legs, iv=0.6), mu=0.8, sigma=0.8, paths=1024, days=20)
    cap = 0.001
    cfg["objective"] = {"maximize": "log_growth", "constraints": [{"metric": "dollar_vega", "max": cap}]}
    cfg["optimizer"] = {
        "method": "optax",
        "replicates": 1,
        "steps": 300,
        "paths": 1024,
        "feasibility_tol": 1e-4,
    }
    problem = levopt.build(cfg)
    found = optimize_policy(problem, parse_objective(problem.cfg.objective))
    vega = found.in_sample["metrics"]["dollar_vega"]
    # On the boundary within the optimizer's feasibility_tol (measured: 1 + 3e-5 x cap).
    assert vega == pytest.approx(cap, rel=cfg["optimizer"]["feasibility_tol"]), found.in_sample
    free = levopt.build({**cfg, "objective": {"maximize": "log_growth"}})
    unconstrained = optimize_policy(free, parse_objective(free.cfg.objective))
    assert float(unconstrained.params["quantity"][0]) > float(found.params["quantity"][0])


def test_legs_expiring_at_a_step_settle_before_its_margin_check():
    """A short call expiring at the horizon on a deterministic rally: sized so that it survives
    every check while open and would fail a check that still margined it on its expiry step
    (|q|(0.075 S + intrinsic)); it settles instead, into 1 + q((S_T − K)⁺ − C_0)."""
    k, iv, mu, days = 1.0, 0.8, 3.0, 10
    dt = 1 / 365
    t = np.arange(days + 1) * dt
    s = np.exp(mu * t)
    v = b76(s, k, iv, days * dt - t)
    chosen = None
    for q in -np.linspace(0.5, 8.0, 300):
        w = 1.0 + q * (v - v[0])
        req = abs(q) * (0.075 * s + v)
        if np.all(w[:-1] > req[:-1]) and w[-1] <= req[-1] and w[-1] > 0:
            chosen = (q, w[-1])
            break
    assert chosen is not None, "no size survives the open steps yet fails a margined expiry"
    q, w_final = chosen
    legs = [{"type": "call", "strike": k, "expiry_days": days, "quantity": float(q)}]
    cfg = config(book(legs, iv=iv), sigma=0.0, mu=mu, paths=256, days=days, market={"liquidation_fee": 0.002})
    problem = levopt.build(cfg)
    out = problem.simulate(problem.key(STREAM_PATHS))
    assert not np.asarray(out.liquidated).any()
    np.testing.assert_allclose(np.asarray(out.wealth), w_final, rtol=1e-10)


def test_the_premium_check_is_on_the_net_debit():
    """A call spread whose long leg alone costs more than the equity but whose net debit fits
    builds; the same long leg alone is refused."""
    c1, c2 = float(b76(1.0, 1.0, 0.68, 30 / 365)), float(b76(1.0, 1.15, 0.68, 30 / 365))
    q = 0.95 / (c1 - c2)  # net debit 0.95 of the equity, long leg above 1
    assert q * c1 > 1.0
    spread = [
        {"type": "call", "strike": 1.0, "expiry_days": 30, "quantity": q},
        {"type": "call", "strike": 1.15, "expiry_days": 30, "quantity": -q},
    ]
    levopt.build(config(book(spread, iv=0.68), paths=256, market={"margin": "scenario"}))
    with pytest.raises(ConfigError) as err:
        levopt.build(config(book(spread[:1], iv=0.68), paths=256))
    assert err.value.field == "policy.legs.0.quantity"


def test_a_settlement_that_leaves_negative_equity_closes_the_account_at_zero():
    """A 2-day short call on a deterministic rally of 35% a day: it passes the check after day 1
    and settles on day 2 so deep in the money that equity would be negative; the account is
    closed there at zero instead (a venue does not let an account's equity stay below zero)."""
    k, iv, a = 1.0, 0.8, 0.35
    dt = 1 / 365
    s1, s2 = math.exp(a), math.exp(2 * a)
    v0, v1 = float(b76(1.0, k, iv, 2 * dt)), float(b76(s1, k, iv, dt))
    low, high = 1.0 / (s2 - k - v0), 1.0 / (2 * v1 - v0 + 0.075 * s1)
    assert low < high
    q = -0.5 * (low + high)
    legs = [{"type": "call", "strike": k, "expiry_days": 2, "quantity": q}]
    cfg = config(book(legs, iv=iv), sigma=0.0, mu=a * 365, paths=256, days=2)
    problem = levopt.build(cfg)
    out = problem.simulate(problem.key(STREAM_PATHS))
    assert 1.0 + q * (s2 - k - v0) < 0
    assert np.all(np.asarray(out.liquidation_step) == 2)
    assert np.all(np.asarray(out.wealth) == 0.0)
