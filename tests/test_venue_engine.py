"""The engine on a venue's rules: tiered maintenance, isolated and cross margin, mark price, funding
settled at intervals and as a process.

Independent references: the venues' calculator (``levopt.venues.liquidation_price``, checked against
the venues' published worked examples in tests/test_venues.py), closed forms written here
(deterministic funding, first passage of GBM), and exact reductions to the flat-rate engine (which
tests/test_numpy_reference.py checks against a second implementation).
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_reliability import user_error

import levopt
from levopt.calibrate import CalibrationWarning
from levopt.engine import Market, MarketConfig, liquidation_level
from levopt.errors import ConfigError
from levopt.venues import liquidation_price, maintenance_margin

BASE = {
    "paths": 8192,
    "horizon_days": 30,
    "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.8},
    "policy": {"kind": "constant", "leverage": 4.0},
    "metrics": ["log_growth", "mean_return", "liquidation_probability", "liquidation_probability_discrete"],
}


def _outcome(cfg: dict, paths: int | None = None):
    problem = levopt.build(cfg)
    return problem, problem.simulate(problem.key(0), paths=paths)


def _metrics(cfg: dict) -> dict:
    return levopt.evaluate(cfg)["metrics"]


def _one_tier(tmp_path, rate: float = 0.005, name: str = "one.csv") -> str:
    path = tmp_path / name
    path.write_text(f"floor,cap,maintenance_rate,maintenance_amount,max_leverage\n0,inf,{rate},0,125\n")
    return str(path)


# --- exact reductions -------------------------------------------------------------------------------


def test_one_bracket_is_the_flat_rate_market_exactly(tmp_path):
    flat = _outcome(BASE)[1]
    venue = dict(BASE, market={"venue": "binance_usdm", "brackets": _one_tier(tmp_path)})
    tiered = _outcome(venue)[1]
    for name in ("wealth", "survival", "liq_log_wealth", "liq_wealth", "liq_drawdown", "max_drawdown"):
        np.testing.assert_array_equal(
            np.asarray(getattr(flat, name)), np.asarray(getattr(tiered, name)), name
        )


def test_one_bracket_per_asset_matches_the_flat_book(tmp_path):
    model = {"kind": "gbm", "mu": [0.0, 0.0], "sigma": [0.6, 0.9], "corr": [[1, 0.5], [0.5, 1]]}
    cfg = dict(BASE, model=model, policy={"kind": "constant", "weights": [2.0, 1.5]})
    flat = _outcome(cfg)[1]
    one = _one_tier(tmp_path)
    tiered = _outcome(dict(cfg, market={"venue": "binance_usdm", "brackets": [one, one]}))[1]
    # Σ_i mm |N_i| against mm Σ_i |N_i|: equal up to the rounding of the sum's order.
    for name in ("wealth", "survival", "liq_wealth"):
        np.testing.assert_allclose(
            np.asarray(getattr(flat, name)), np.asarray(getattr(tiered, name)), rtol=1e-12
        )


def test_zero_basis_is_todays_engine_exactly():
    plain = _outcome(dict(BASE, market={"funding_rate": 0.1, "borrow_rate": 0.05}))[1]
    zero = _outcome(dict(BASE, market={"funding_rate": 0.1, "borrow_rate": 0.05, "basis": {"vol": 0.0}}))[1]
    for name in plain._fields:
        np.testing.assert_array_equal(np.asarray(getattr(plain, name)), np.asarray(getattr(zero, name)), name)


# --- tiers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("equity", [10_000.0, 3_000_000.0])
def test_tiered_requirement_equals_the_venue_table(equity):
    cfg = MarketConfig(venue="binance_usdm", account_equity=equity)
    market = Market.from_config(cfg, jnp.float64, n_assets=1)
    rng = np.random.default_rng(0)
    for notional in rng.uniform(0, 30_000_000, 200):
        got = float(market.requirement(jnp.asarray([notional / equity]))) * equity
        want = float(maintenance_margin("binance_usdm", "BTCUSDT", notional))
        assert got == pytest.approx(want, rel=1e-12, abs=1e-6)


@pytest.mark.parametrize(
    ("side", "wallet"),
    [("long", 2_000.0), ("long", 20_000.0), ("long", 100_000.0), ("short", 3_000.0), ("short", 250_000.0)],
)
def test_engine_liquidation_level_is_the_venue_liquidation_price(side, wallet):
    """The barrier of the one-asset bridge equals the venue calculator's price (bracket re-selection)."""
    equity, quantity, entry = wallet, 2.0, 60_000.0
    cfg = MarketConfig(venue="binance_usdm", account_equity=equity)
    market = Market.from_config(cfg, jnp.float64, n_assets=1)
    t = market.tiers
    sign = 1.0 if side == "long" else -1.0
    n = sign * quantity * entry / equity
    level, _ = liquidation_level(
        jnp.asarray(n), jnp.asarray(1.0), jnp.asarray(0.0), market, (t.rates[0], t.amounts[0], t.bounds[0])
    )
    want = liquidation_price(
        "binance_usdm", side=side, quantity=quantity, entry_price=entry, wallet_balance=wallet
    )
    assert float(level) * entry == pytest.approx(want, rel=1e-10)


def test_leverage_gradient_across_a_bracket_boundary():
    """d metric / d leverage by autodiff matches central differences on the same paths, on both
    sides of Binance's 50,000 USDT boundary (5x of 10,000)."""
    cfg = dict(BASE, paths=4096, market={"venue": "binance_usdm", "account_equity": 10_000})
    problem = levopt.build(cfg)
    key = problem.key(0)
    from levopt.objectives import get_metric

    def metric(lev, name):
        policy = problem.policy.__class__(rebalance_every=0, weights=jnp.reshape(lev, (1,)))
        out = problem.simulate(key, policy=policy)
        return get_metric(name).value(out, problem.ctx)

    def central(lev, name, h):
        return (float(metric(jnp.asarray(lev + h), name)) - float(metric(jnp.asarray(lev - h), name))) / (
            2 * h
        )

    with jax.enable_x64(True):
        for name in ("log_growth", "liquidation_probability"):
            for lev in (4.9, 4.999, 5.001, 5.1):
                g = float(jax.grad(metric)(jnp.asarray(lev), name))
                h = 1e-4
                fd, fd2 = central(lev, name, h), central(lev, name, 2 * h)
                # Same paths, so no Monte Carlo error: the central difference's truncation error
                # C h² is about |fd(2h) − fd(h)| / 3 (Richardson); allow three times that, plus
                # rounding of order eps |f| / h.
                f = abs(float(metric(jnp.asarray(lev), name)))
                tol = abs(fd2 - fd) + 1e3 * np.finfo(float).eps * max(f, 1.0) / h
                assert math.isfinite(g)
                assert abs(g - fd) <= tol, (name, lev, g, fd, tol)


def test_opening_above_the_tier_maximum_is_a_config_error():
    cfg = dict(
        BASE,
        policy={"kind": "constant", "leverage": 30.0},
        market={"venue": "binance_usdm", "account_equity": 100_000},
    )
    # 3,000,000 notional is in the 1M–10M tier: at most 20x.
    with pytest.raises(ConfigError, match=r"policy.leverage: 30x .* above the 20x allowed in BTCUSDT tier 4"):
        levopt.build(cfg)
    ok = dict(cfg, policy={"kind": "constant", "leverage": 20.0})
    levopt.build(ok)


def test_dynamic_policy_is_capped_at_the_tier_maximum_and_reported():
    policy = {"kind": "vol_target", "target_vol": 20.0, "max_leverage": 200.0, "rebalance": 1}
    cfg = dict(BASE, paths=512, policy=policy, market={"venue": "binance_usdm", "account_equity": 2_000_000})
    cfg["metrics"] = ["leverage_capped"]
    problem = levopt.build(cfg)
    from levopt.engine import simulate_chunk

    with jax.enable_x64(True):
        out, traj = simulate_chunk(
            problem.key(0),
            jnp.zeros((), jnp.int32),
            problem.model,
            problem.policy,
            problem.market,
            n_blocks=2,
            steps=problem.cfg.steps,
            dt=problem.cfg.dt,
            dtype=jnp.float64,
            ruin_floor=1e-6,
            record=True,
        )
    # Every step but the last ends with a rebalance (the last row has drifted with the price).
    lev = np.asarray(traj.leverage)[:-1]
    wealth = np.asarray(traj.equity)[:-1]
    notional = lev * wealth * 2_000_000
    # The tier's maximum leverage at each notional, from the shipped table, by hand.
    caps = np.array([50e3, 250e3, 1e6, 10e6, 20e6, 50e6, 100e6, 200e6, 300e6, 500e6])
    maxlev = np.array([125, 100, 50, 20, 10, 5, 4, 3, 2, 1], float)
    table = levopt.venues.get_venue("binance_usdm").table("BTCUSDT")
    np.testing.assert_array_equal(np.array([b.max_leverage for b in table]), maxlev)
    np.testing.assert_array_equal(np.array([b.cap for b in table]), caps)
    allowed = maxlev[np.minimum(np.searchsorted(caps, notional, side="left"), 9)]
    assert np.all(lev <= allowed * (1 + 1e-9))
    assert np.all(np.asarray(out.capped) > 0)
    assert levopt.evaluate(cfg)["metrics"]["leverage_capped"] == 1.0


# --- isolated and cross ------------------------------------------------------------------------


def test_isolated_independent_positions_multiply_their_survival():
    """P(any liquidated) = 1 − Π (1 − p_i) for independent assets in isolated mode (within MC error)."""
    sigmas, weights, margins = [0.9, 0.7], [1.0, 1.0], [0.2, 0.25]
    model = {"kind": "gbm", "mu": [0.0, 0.0], "sigma": sigmas, "corr": [[1, 0], [0, 1]]}
    book = dict(
        BASE,
        paths=16384,
        model=model,
        policy={"kind": "constant", "weights": weights},
        market={"margin_mode": "isolated", "isolated_margin": margins},
    )
    p_book, se_book = _liq(book)
    singles = []
    for i in range(2):
        single = dict(
            BASE,
            paths=16384,
            seed=100 + i,
            model={"kind": "gbm", "mu": 0.0, "sigma": sigmas[i]},
            policy={"kind": "constant", "leverage": weights[i]},
            market={"margin_mode": "isolated", "isolated_margin": margins[i]},
        )
        singles.append(_liq(single))
    p = 1 - (1 - singles[0][0]) * (1 - singles[1][0])
    se = math.sqrt(
        se_book**2 + ((1 - singles[1][0]) * singles[0][1]) ** 2 + ((1 - singles[0][0]) * singles[1][1]) ** 2
    )
    assert 0.05 < p_book < 0.95
    assert abs(p_book - p) < 4 * se, (p_book, p, se)


def _liq(cfg: dict) -> tuple[float, float]:
    r = levopt.evaluate(cfg)
    return r["metrics"]["liquidation_probability"], r["stderr"]["liquidation_probability"]


def test_isolated_liquidation_loses_at_most_its_margin():
    """A 10x position on a tenth of the wallet: whatever the jumps, the rest of the wallet stays."""
    model = {"kind": "merton", "mu": 0.0, "sigma": 0.8, "lam": 20.0, "jump_mean": -0.15, "jump_std": 0.1}
    cfg = dict(
        BASE,
        model=model,
        policy={"kind": "constant", "leverage": 1.0},
        market={"margin_mode": "isolated", "isolated_margin": 0.1, "liquidation_fee": 0.01},
    )
    _, out = _outcome(cfg)
    q = 1 - np.asarray(out.survival)
    assert q.mean() > 0.5
    assert np.min(np.asarray(out.wealth)[np.asarray(out.liquidated)]) >= 0.9
    # Branches of probability below 1e-6 are left out: their conditional mean is a ratio of sums of
    # that size, accurate to about 1e-16 / q (their weight in any metric is below 1e-6 × that).
    has = q > 1e-6
    assert np.all(np.asarray(out.liq_wealth)[has] / q[has] >= 0.9 - 1e-9)
    # 1x cross margin on the same paths is a different bet: it loses with the price, never liquidated.
    _, cross = _outcome(dict(cfg, market={}))
    assert np.max(1 - np.asarray(cross.survival)) == 0.0
    assert np.min(np.asarray(cross.wealth)) < 0.5


def test_isolated_single_position_with_the_whole_wallet_is_cross():
    cfg = dict(BASE, market={"margin_mode": "isolated"})
    _, iso = _outcome(cfg)
    _, cross = _outcome(BASE)
    np.testing.assert_allclose(np.asarray(iso.survival), np.asarray(cross.survival), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(iso.wealth), np.asarray(cross.wealth), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(iso.liq_wealth), np.asarray(cross.liq_wealth), rtol=1e-9, atol=1e-15
    )


# --- mark price ------------------------------------------------------------------------------------


def test_a_basis_blow_out_liquidates_a_position_the_trade_price_would_not():
    calm = dict(
        BASE, model={"kind": "gbm", "mu": 0.0, "sigma": 0.05}, policy={"kind": "constant", "leverage": 10.0}
    )
    p_calm = _metrics(calm)["liquidation_probability"]
    assert p_calm < 1e-6
    # Mark-price dislocations of about −15%, a few a month: a 10x long is liquidated on the mark.
    basis = {"kappa": 200.0, "jump_rate": 60.0, "jump_mean": -0.15, "jump_vol": 0.02}
    result = levopt.evaluate(dict(calm, market={"basis": basis}))
    p_mark, se = result["metrics"]["liquidation_probability"], result["stderr"]["liquidation_probability"]
    # At least one jump in 30 days liquidates: 1 − e^{−λT}, less the paths whose only jump is
    # smaller than the −10.04% the 10x long survives (log u* = log(9 / 9.95), a z-score above
    # (0.15 − 0.1004) / 0.02), a bias bounded by P(one jump) × P(that jump is too small).
    lam_t = 60.0 * 30 / 365
    expected = 1 - math.exp(-lam_t)
    too_small = 0.5 * math.erfc(((0.15 + math.log(9 / 9.95)) / 0.02) / math.sqrt(2))
    bias = lam_t * math.exp(-lam_t) * too_small
    assert abs(p_mark - expected) <= 4 * se + bias, (p_mark, expected, se, bias)


# --- funding ---------------------------------------------------------------------------------------


def test_funding_settled_every_8h_against_a_hand_computed_account():
    """σ = 0, hourly steps: 3 settlements a day of f·8/8760 on the notional, nothing else."""
    f, lev, days = 0.3, 3.0, 2
    cfg = {
        "paths": 256,
        "horizon_days": days,
        "steps_per_day": 24,
        "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.0},
        "policy": {"kind": "constant", "leverage": lev},
        "market": {"funding_rate": f, "funding_interval_hours": 8},
    }
    _, out = _outcome(cfg)
    per = f * 8 / (365 * 24)
    assert np.asarray(out.wealth)[0] == pytest.approx(1 - 3 * days * per * lev, rel=1e-12)


def test_funding_settled_every_8h_matches_continuous_accrual_in_expectation():
    cfg = dict(
        BASE,
        horizon_days=10,
        steps_per_day=24,
        paths=8192,
        model={"kind": "gbm", "mu": 0.0, "sigma": 0.6},
        policy={"kind": "constant", "leverage": 2.0},
    )
    _, cont = _outcome(dict(cfg, market={"funding_rate": 0.5}))
    _, disc = _outcome(dict(cfg, market={"funding_rate": 0.5, "funding_interval_hours": 8}))
    d = np.asarray(disc.wealth) - np.asarray(cont.wealth)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert abs(d.mean()) < 4 * se + 1e-12, (d.mean(), se)
    # And the funding itself is of the expected size: against no funding at all.
    _, none = _outcome(cfg)
    paid = np.asarray(none.wealth) - np.asarray(disc.wealth)
    # E[S_t] = S_0 with mu = 0, so the notional at each settlement is 2 on average.
    assert abs(paid.mean() - 0.5 * 2.0 * 10 / 365) < 4 * paid.std(ddof=1) / math.sqrt(paid.size)


def test_stochastic_funding_pays_its_mean_and_is_capped():
    cfg = dict(
        BASE,
        horizon_days=30,
        paths=8192,
        model={"kind": "gbm", "mu": 0.0, "sigma": 0.3},
        policy={"kind": "constant", "leverage": 2.0},
    )
    mean = 0.0003  # per 8 h
    _, ar1 = _outcome(
        dict(cfg, market={"funding": {"kind": "ar1", "mean": mean, "phi": 0.95, "vol": 0.0004}})
    )
    _, const = _outcome(dict(cfg, market={"funding_rate": mean * 365 * 3, "funding_interval_hours": 8}))
    d = np.asarray(ar1.wealth) - np.asarray(const.wealth)
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert se > 0
    assert abs(d.mean()) < 4 * se
    # A cap below the mean pays the cap every interval.
    cap = 0.0001
    _, capped = _outcome(
        dict(
            cfg,
            model={"kind": "gbm", "mu": 0.0, "sigma": 0.0},
            market={"funding": {"kind": "ar1", "mean": mean, "phi": 0.5, "vol": 0.0, "cap": cap}},
        )
    )
    assert np.asarray(capped.wealth)[0] == pytest.approx(1 - 90 * cap * 2.0, rel=1e-9)


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("market", "field"),
    [
        ({"venue": "nowhere"}, "market.venue"),
        ({"venue": "binance_usdm", "symbol": "DOGEBTC"}, "market.symbol"),
        ({"venue": "binance_usdm", "maintenance_margin": 0.01}, "market.maintenance_margin"),
        ({"venue": "bybit_linear", "margin_mode": "cross"}, "market.margin_mode"),
        ({"symbol": "BTCUSDT"}, "market.symbol"),
        ({"margin_mode": "isolated", "isolated_margin": 1.5}, "market.isolated_margin"),
        ({"isolated_margin": 0.5}, "market.isolated_margin"),
        ({"funding": {"kind": "ar1"}}, "market.funding"),
        ({"funding": {"kind": "constant", "phi": 0.5}}, "market.funding"),
    ],
)
def test_bad_market_names_the_field(market, field):
    with pytest.raises(ConfigError) as err:
        levopt.build(dict(BASE, market=market))
    assert str(err.value).startswith(field), str(err.value)


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ("floor,cap,maintenance_rate,max_leverage\n0,50000,0.004,125\n40000,inf,0.005,100\n", "floor"),
        (
            "floor,cap,maintenance_rate,maintenance_amount,max_leverage\n0,50000,0.004,0,125\n50000,inf,0.005,0,100\n",
            "maintenance_amount",
        ),
    ],
)
def test_cli_bad_bracket_table_exits_2_with_one_line(monkeypatch, capsys, tmp_path, table, field):
    (tmp_path / "tiers.csv").write_text(table)
    config = tmp_path / "c.yaml"
    config.write_text(
        "paths: 256\nmodel: {kind: gbm, mu: 0, sigma: 0.5}\npolicy: {kind: constant, leverage: 2}\n"
        "market: {venue: binance_usdm, brackets: tiers.csv}\n"
    )
    line = user_error(monkeypatch, capsys, "evaluate", config, "--out", tmp_path / "out")
    assert line.startswith(f"error: market.brackets.{field}"), line


def test_cli_leverage_above_the_tier_maximum_exits_2(monkeypatch, capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "paths: 256\nmodel: {kind: gbm, mu: 0, sigma: 0.5}\npolicy: {kind: constant, leverage: 150}\n"
        "market: {venue: binance_usdm, account_equity: 100}\n"
    )
    line = user_error(monkeypatch, capsys, "evaluate", config, "--out", tmp_path / "out")
    assert "policy.leverage: 150x" in line and "125x" in line


def test_calibrated_funding_feeds_posterior_draws_to_the_paths(tmp_path):
    """A funding file → NUTS posterior → one draw per path: the funding paid matches the draws."""
    rng = np.random.default_rng(3)
    f = np.empty(600)
    f[0] = 1e-4
    for k in range(1, f.size):
        f[k] = 1e-4 + 0.8 * (f[k - 1] - 1e-4) + 5e-5 * rng.standard_normal()
    times = np.datetime64("2024-01-01T00:00") + np.arange(f.size) * np.timedelta64(8, "h")
    lines = ["timestamp,funding_rate"] + [f"{t},{v:.10f}" for t, v in zip(times, f, strict=True)]
    (tmp_path / "funding.csv").write_text("\n".join(lines) + "\n")
    calibrate = {"data": str(tmp_path / "funding.csv"), "draws": 64, "warmup": 150, "samples": 150}
    cfg = dict(
        BASE,
        paths=2048,
        model={"kind": "gbm", "mu": 0.0, "sigma": 0.0},
        policy={"kind": "constant", "leverage": 1.0},
        market={"funding": {"kind": "ar1", "calibrate": calibrate}},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        problem = levopt.build(cfg)
    assert problem.market.funding.mean.shape == (64,)
    assert problem.calibration["funding"]["summary"]["phi"]["mean"] == pytest.approx(0.8, abs=0.1)
    out = problem.simulate(problem.key(0))
    paid = 1 - np.asarray(out.wealth)  # σ = 0, 1x: only funding moves the wealth
    draw = np.arange(paid.size) % 64
    means = np.asarray(problem.market.funding.mean)[draw]
    # 90 settlements, starting at the draw's mean: E[paid] = 90 × mean for each draw.
    d = paid - 90 * means
    assert abs(d.mean()) < 4 * d.std(ddof=1) / math.sqrt(d.size)


# --- optimizers ------------------------------------------------------------------------------------


def test_max_weights_from_the_tiers_by_hand():
    """At 10,000 USDT the largest position is 500,000 (50x, tier 3); at 20M it is 80M (4x, tier 7)."""
    for equity, expected in ((10_000.0, 50.0), (20_000_000.0, 4.0)):
        market = Market.from_config(MarketConfig(venue="binance_usdm", account_equity=equity), jnp.float64)
        assert market.tiers.max_weights()[0] == pytest.approx(expected)


def test_both_optimizers_stop_at_the_tiers_maximum_leverage():
    """With Kelly far above the cap (mu/σ² = 33x), both layers hold the 4x that 20M USDT may open."""
    cfg = {
        "paths": 4000,
        "horizon_days": 30,
        "model": {"kind": "gbm", "mu": 3.0, "sigma": 0.3},
        "market": {"venue": "binance_usdm", "account_equity": 20_000_000},
        "policy": {"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 30.0}},
        "objective": {"maximize": "log_growth"},
        "metrics": ["log_growth"],
    }
    optax = levopt.run(dict(cfg, optimizer={"method": "optax", "steps": 150, "paths": 2000}), profiles=False)
    convex = levopt.run(dict(cfg, optimizer={"method": "cvxpy", "scenarios": 2000}), profiles=False)
    lev_optax = optax["policy"]["leverage"]
    lev_convex = convex["policy"]["leverage"]
    assert lev_convex == pytest.approx(4.0, rel=1e-4)
    assert lev_optax == pytest.approx(4.0, rel=1e-3)


def test_convex_layer_refuses_what_it_cannot_model():
    cfg = dict(
        BASE,
        policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}},
        market={"margin_mode": "isolated", "isolated_margin": 0.5},
        objective={"maximize": "log_growth"},
        optimizer={"method": "cvxpy", "scenarios": 500},
    )
    with pytest.raises(ConfigError, match=r"^market.margin_mode: the convex layer"):
        levopt.run(cfg, profiles=False)


def test_rebalanced_isolated_book_never_loses_more_than_the_wallet():
    """Daily re-margined isolated accounts: every liquidated branch keeps a wallet ≥ 0, so simple
    losses stay within 100%; and a branch loses at most the liquidated account's margin at the last
    rebalance plus its P&L since (checked against the simulated wallet)."""
    model = {"kind": "gbm", "mu": [0.5, 0.5], "sigma": [0.68, 0.85], "corr": [[1, 0.8], [0.8, 1]]}
    cfg = dict(
        BASE,
        horizon_days=365,
        paths=4096,
        model=model,
        policy={"kind": "constant", "weights": [4.8, 3.2], "rebalance": 1},
        market={"margin_mode": "isolated", "isolated_margin": [0.5, 0.5]},
        metrics=[{"metric": "cvar", "level": 0.95, "returns": "simple"}],
    )
    _, out = _outcome(cfg)
    q = 1 - np.asarray(out.survival)
    assert q.mean() > 0.3
    assert np.min(np.asarray(out.liq_wealth)) >= 0.0
    assert levopt.evaluate(cfg)["metrics"]["cvar"] <= 1.0


def test_two_factor_funding_moments_against_the_closed_form():
    """The rate the engine charges each step (σ = 0, a 1x position: the wealth falls by exactly the
    funding) has the two-factor process's conditional mean and variance:
    E[f_t] − mean = phi^k u_0, Var f_t = vol² (1 − phi^{2k}) / (1 − phi²) + slow_vol² (1 − slow_phi^{2k}) / (1 − slow_phi²),
    k = 3t intervals after the start (daily steps, 8-hour settlements)."""
    from levopt.engine import simulate_chunk

    mean, u0, phi, vol, slow_phi, slow_vol = 1e-4, 2e-4, 0.8, 1e-4, 0.99, 3e-5
    funding = {"kind": "two_factor", "mean": mean, "init": mean + u0, "phi": phi, "vol": vol}
    funding |= {"slow_phi": slow_phi, "slow_vol": slow_vol}
    cfg = dict(
        BASE,
        horizon_days=20,
        model={"kind": "gbm", "mu": 0.0, "sigma": 0.0},
        policy={"kind": "constant", "leverage": 1.0},
        market={"funding": funding, "funding_interval_hours": 8},
    )
    problem = levopt.build(cfg)
    with jax.enable_x64(True):
        _, traj = simulate_chunk(
            problem.key(0), jnp.zeros((), jnp.int32), problem.model, problem.policy, problem.market,
            n_blocks=32, steps=20, dt=problem.cfg.dt, dtype=jnp.float64, ruin_floor=1e-6, record=True,
        )  # fmt: skip
    equity = np.concatenate([np.ones((1, 32 * 256)), np.asarray(traj.equity)])
    paid = (equity[:-1] - equity[1:]) / 3  # three settlements a step, at the step's starting rate
    for t in (1, 4, 12):
        k = 3 * t
        want_mean = mean + phi**k * u0
        want_var = vol**2 * (1 - phi ** (2 * k)) / (1 - phi**2)
        want_var += slow_vol**2 * (1 - slow_phi ** (2 * k)) / (1 - slow_phi**2)
        x = paid[t]
        se_mean = math.sqrt(want_var / x.size)
        assert abs(x.mean() - want_mean) < 4 * se_mean, t
        # Var of the sample variance of normal draws: 2 σ⁴ / (n − 1).
        assert abs(x.var(ddof=1) - want_var) < 4 * want_var * math.sqrt(2 / (x.size - 1)), t
