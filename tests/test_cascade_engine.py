"""The crowd's liquidation cascade inside the engine: exact reductions, the wiring against
cascade_step applied by hand, the account's own flow, the systemic metrics, gradients, bad input."""

from __future__ import annotations

import copy
import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import Z, make_config
from test_reliability import user_error

import levopt
from levopt.cascade import CascadeParams, cascade_step, init_crowd
from levopt.errors import ConfigError
from levopt.problem import STREAM_PATHS

CROWD = {
    "crowd": {"long_oi": 6e9, "short_oi": 4e9, "leverage": {3: 0.3, 10: 0.4, 25: 0.3}, "entry_spread": 0.03},
    "impact": {"kind": "linear", "permanent": 0.6, "daily_volume": 2e10},
    "bins": 120,
    "range": 0.8,
}
BASE = make_config(
    paths=1024,
    horizon_days=20,
    model={"kind": "gbm", "mu": 0.0, "sigma": 0.8},
    market={"maintenance_margin": 0.005, "fee": 0.0004, "liquidation_fee": 0.005},
    policy={"kind": "constant", "leverage": 4.0, "rebalance": 1},
)
FIELDS = ("wealth", "survival", "liq_log_wealth", "liq_wealth", "max_drawdown", "liquidated")


def _with(cfg: dict, **changes) -> dict:
    out = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        node = out
        *head, last = dotted.split("__")
        for k in head:
            node = node.setdefault(k, {})
        node[last] = value
    return out


def _outcome(cfg: dict):
    problem = levopt.build(cfg)
    return problem, problem.simulate(problem.key(STREAM_PATHS))


@pytest.mark.parametrize(
    ("change", "mode"),
    [
        ({"cascade__impact__permanent": 0.0}, "cross"),
        ({"cascade__impact__permanent": 0.0}, "isolated"),
        # No crowd and an account too small to move anything (its flow rounds away).
        (
            {
                "cascade__crowd__long_oi": 0.0,
                "cascade__crowd__short_oi": 0.0,
                "market__account_equity": 1e-300,
            },
            "cross",
        ),
    ],
    ids=["zero impact, cross", "zero impact, isolated", "no crowd"],
)
def test_no_impact_is_todays_engine_bit_for_bit(change, mode):
    base = copy.deepcopy(BASE)
    if mode == "isolated":
        base["market"] |= {"venue": "binance_usdm", "symbol": "BTCUSDT", "margin_mode": "isolated"}
        base["market"].pop("maintenance_margin")
    cfg = _with(base | {"cascade": CROWD}, **change)
    _, plain = _outcome(base)
    _, cascaded = _outcome(cfg)
    for field in FIELDS:
        assert np.array_equal(getattr(plain, field), getattr(cascaded, field)), field
    assert np.array_equal(levopt.simulate(base), levopt.simulate(_with(cfg)))
    np.testing.assert_array_equal(cascaded.cascade.total_move, cascaded.cascade.exogenous_move)


def test_the_engines_returns_are_cascade_step_applied_to_the_models():
    """Consistency of the wiring: levopt.simulate with a cascade block equals the model's returns
    passed through cascade_step step by step in the test (same crowd, no account)."""
    cfg = _with(BASE | {"cascade": CROWD}, paths=64)
    plain = levopt.simulate(_with(BASE, paths=64))
    cascaded = levopt.simulate(cfg)
    with jax.enable_x64(True):
        params = CascadeParams.from_config(CROWD, jnp.float64)

        def path(x):
            def body(crowd, xt):
                y, _, crowd = cascade_step(xt, crowd, params, dt_hours=24.0)
                return crowd, y

            return jax.lax.scan(body, init_crowd(params), x)[1]

        want = np.asarray(jax.vmap(path)(jnp.asarray(plain)))
    np.testing.assert_allclose(cascaded, want, rtol=1e-12, atol=1e-15)
    assert np.abs(cascaded - plain).max() > 1e-3  # the crowd did move the price


@pytest.mark.slow  # experiments/cascade_fat_tails measures the same across crowds
def test_cascaded_returns_have_fatter_tails_than_their_gaussian_inputs():
    """Kurtosis and downside skew from Gaussian inputs: the sample excess kurtosis of 20,480 daily
    GBM returns has s.e. sqrt(24/n) = 0.034; with a long-heavy crowd it must exceed Z of them."""
    cfg = _with(BASE | {"cascade": CROWD}, paths=1024)
    x = levopt.simulate(cfg).ravel()
    z = (x - x.mean()) / x.std()
    excess, skew, se_k, se_s = (z**4).mean() - 3, (z**3).mean(), np.sqrt(24 / x.size), np.sqrt(6 / x.size)
    assert excess > Z * se_k and skew < -Z * se_s, (excess, skew)


def _metric(cfg: dict, name: str, **options) -> tuple[float, float]:
    problem, outcome = _outcome(cfg)
    out = problem.metrics(outcome, {name: (name, options)})
    return out["metrics"][name], out["stderr"][name]


def test_multiplier_grows_with_crowd_leverage_and_open_interest():
    """Paired paths (same noise): more leverage in the mix, or more open interest, amplify more."""
    values = []
    for mix in ({2: 0.8, 5: 0.2}, {2: 0.2, 10: 0.4, 25: 0.4}, {10: 0.2, 25: 0.8}):
        values.append(_metric(BASE | {"cascade": _with(CROWD, crowd__leverage=mix)}, "cascade_multiplier")[0])
    assert values[0] < values[1] < values[2], values
    by_oi = [
        _metric(
            BASE | {"cascade": _with(CROWD, crowd__long_oi=oi, crowd__short_oi=oi)}, "cascade_multiplier"
        )[0]
        for oi in (1e9, 4e9, 8e9)
    ]
    assert by_oi[0] < by_oi[1] < by_oi[2], by_oi


def test_a_material_account_moves_the_price_with_its_own_liquidation():
    """No crowd: only the account's own forced sale adds to a move, on paths where it is liquidated,
    by at most λ·N/V (linear impact of its notional N ≤ 10 × equity at the level)."""
    empty = _with(CROWD, crowd__long_oi=0.0, crowd__short_oi=0.0)
    static = {"kind": "constant", "leverage": 10.0, "rebalance": "never"}
    extra = {}
    for equity in (1e3, 2e9):
        cfg = BASE | {
            "cascade": empty,
            "policy": static,
            "market": BASE["market"] | {"account_equity": equity},
        }
        _, o = _outcome(cfg)
        added = np.asarray(o.cascade.total_move - o.cascade.exogenous_move)
        assert np.all(added[~np.asarray(o.liquidated)] == 0) and np.all(o.cascade.crowd_liquidated == 0)
        extra[equity] = added.max()
    assert 0 < extra[1e3] <= 0.6 * 10 * 1e3 / 2e10
    assert extra[2e9] > 1e4 * extra[1e3]  # a 2e10 position sold into a 2e10 daily volume


def test_gradients_through_the_cascade_match_finite_differences():
    """d log-growth / d(leverage scale) and d(λ): autodiff (implicit function theorem inside each
    step) against central differences on the same paths, float64; one compiled gradient for both."""
    problem = levopt.build(BASE | {"cascade": CROWD | {"bins": 40}, "paths": 128, "horizon_days": 8})
    key = problem.key(STREAM_PATHS)
    growth = levopt.METRICS.get("log_growth")

    def f(scale, lam):
        market = eqx.tree_at(lambda m: m.cascade.permanent, problem.market, lam)
        moved = dataclasses.replace(problem, market=market)
        return growth.value(moved.simulate(key, policy=problem.policy.scaled(scale), paths=128), problem.ctx)

    with jax.enable_x64(True):
        at = (jnp.asarray(1.0, jnp.float64), jnp.asarray(0.6, jnp.float64))
        grads = jax.grad(f, argnums=(0, 1))(*at)
        h, f0 = 1e-5, float(f(*at))

        def central(i, step):
            up = [a + step * (k == i) for k, a in enumerate(at)]
            down = [a - step * (k == i) for k, a in enumerate(at)]
            return float((f(*up) - f(*down)) / (2 * step))

        for i, g in enumerate(grads):
            fd, fd2 = central(i, h), central(i, 2 * h)
            # The central difference's error: truncation O(h²), estimated by Richardson from the
            # step 2h (|fd − fd2| / 3), plus rounding of f (float64) divided by the step.
            tol = Z * (abs(fd - fd2) / 3 + 64 * np.finfo(float).eps * max(abs(f0), 1.0) / h)
            assert np.isfinite(g) and abs(float(g) - fd) <= tol, (i, g, fd, tol)


def test_systemic_metrics_are_reported():
    cfg = BASE | {"cascade": CROWD}
    metrics = levopt.evaluate(cfg)["metrics"]
    assert {"cascade_multiplier", "crowd_liquidated"} <= set(metrics)
    assert metrics["cascade_multiplier"] >= 1.0 and metrics["crowd_liquidated"] > 0
    p, se = _metric(cfg, "cascade_probability", threshold=0.1)  # median largest step cascade: 0.11
    assert 0 < p < 1 and se > 0
    lev, _ = _metric(cfg, "crowd_leverage")
    assert 1 < lev < 25


def test_a_crowd_metric_without_a_crowd_is_a_config_error():
    with pytest.raises(ConfigError, match=r"metrics\[0\]: cascade_multiplier reads the crowd"):
        levopt.build(BASE | {"metrics": ["cascade_multiplier"]})
    with pytest.raises(ConfigError, match="cascade: the crowd trades one asset"):
        levopt.build(
            BASE
            | {
                "cascade": CROWD,
                "model": {"kind": "gbm", "mu": [0.0, 0.0], "sigma": [0.8, 0.7]},
                "policy": {"kind": "constant", "weights": [1.0, 1.0]},
            }
        )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"crowd": {"long_oi": -1.0, "short_oi": 1e9}}, "cascade.crowd.long_oi"),
        (
            {"crowd": {"long_oi": 1e9, "short_oi": 1e9, "leverage": {2: 0.5, 5: 0.4}}},
            "cascade.crowd.leverage",
        ),
        ({"impact": {"kind": "linear", "permanent": -0.1, "daily_volume": 1e10}}, "cascade.impact.permanent"),
        ({"impact": {"kind": "linear", "daily_volume": -5.0}}, "cascade.impact.daily_volume"),
        (
            {"impact": {"kind": "sqrt", "coefficient": 1.0, "daily_volume": 1e10, "decay_hours": 0}},
            "cascade.impact.decay_hours",
        ),
    ],
)
def test_bad_cascade_input_exits_2_naming_the_field(change, field, tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE | {"cascade": CROWD | change, "paths": 256}))
    line = user_error(monkeypatch, capsys, "evaluate", str(path), "--out", str(tmp_path / "out"))
    assert line.startswith(field) or field in line, line


def test_a_runaway_leverage_loop_stays_finite_and_is_reported():
    """25x accounts re-levering every day into their own impact grow without bound; the endogenous
    part of a move is cut at the grid's edge, every number stays finite and cascade_off_grid says so."""
    loop = _with(CROWD, crowd__target_share=0.3, crowd__refill_days=3.0, impact__temporary=0.1)
    cfg = _with(BASE | {"cascade": loop}, paths=256, horizon_days=30)
    problem, outcome = _outcome(cfg)
    for leaf in jax.tree.leaves(outcome):
        assert np.all(np.isfinite(np.asarray(leaf, float)))
    share, _ = _metric(cfg, "cascade_off_grid")
    assert share > 0
    x = levopt.simulate(cfg)
    assert np.all(np.isfinite(x)) and np.all(np.abs(np.cumsum(x, axis=1)) < 50)


def test_an_account_liquidated_inside_a_cascade_is_filled_after_it():
    """Without impact a held long is closed at its level (equity mm x notional there, the same on
    every liquidated path); inside a cascade the forced flow jumps the price through the level, so
    the close fills at the step's post-cascade price: never above that equity, on some paths below."""
    crowd = _with(
        CROWD, crowd__long_oi=12e9, crowd__short_oi=8e9, crowd__leverage={15: 0.3, 25: 0.4, 35: 0.3}
    )
    crowd = _with(crowd, impact__permanent=0.3)
    cfg = BASE | {
        "market": {"maintenance_margin": 0.005, "fee": 0.0, "liquidation_fee": 0.0},
        "policy": {"kind": "constant", "leverage": 2.2, "rebalance": "never"},
    }
    _, plain = _outcome(cfg | {"cascade": _with(crowd, impact__permanent=0.0)})
    hit = np.asarray(plain.liquidated)
    at_level = np.asarray(plain.wealth)[hit]
    assert hit.any() and np.ptp(at_level) < 1e-12 and at_level[0] > 0
    _, cascaded = _outcome(cfg | {"cascade": crowd})
    filled = np.asarray(cascaded.wealth)[np.asarray(cascaded.liquidated)]
    assert np.all(filled <= at_level[0] * (1 + 1e-12)) and np.any(filled < 0.5 * at_level[0])
