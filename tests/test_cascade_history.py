"""A crowd reconstructed from open-interest history (levopt.cascade.history).

References: an account-by-account simulation written in the test (every account with its own
entry price, leverage and size, liquidated when a bar's low or high reaches its level, closed pro
rata) against the module's cohort arithmetic; a surviving fraction worked out by hand for a band
of entries; scipy's SLSQP for the simplex least squares of the leverage fit.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from levopt.cascade import CascadeParams, init_crowd, liquidation_offset, open_interest, parse_cascade
from levopt.cascade.history import LONG, SHORT, Bars, fit_shares, reconstruct, side_book
from levopt.errors import ConfigError

LEVERAGE = np.array([3.0, 10.0, 25.0])
M = 0.005


def point_bars(close: np.ndarray, amount: np.ndarray) -> Bars:
    end = pd.date_range("2025-01-01", periods=len(close), freq="h", tz="UTC")
    c = np.log(close)
    return Bars(end=end, close=c, low=c, high=c, amount=amount, value=amount * close)


def account_reference(bars: Bars, side: int) -> np.ndarray:
    """Liquidated notional per class and bar from individual accounts (entries at bar closes)."""
    n, T = LEVERAGE.size, len(bars.end)
    offsets = liquidation_offset(LEVERAGE, M, side)
    liquidated = np.zeros((n, T))
    for j in range(n):
        accounts = [[bars.close[0], bars.amount[0]]]  # cohort 0 at the first close (no spread)
        for t in range(1, T):
            extreme = bars.low[t] if side == LONG else bars.high[t]
            for acc in accounts:
                level = acc[0] + offsets[j]
                hit = extreme <= level if side == LONG else extreme >= level
                if acc[1] > 0 and hit:
                    liquidated[j, t] += acc[1] * math.exp(level)
                    acc[1] = 0.0
            held = sum(a[1] for a in accounts)
            if bars.amount[t] > held:
                accounts.append([bars.close[t], bars.amount[t] - held])
            else:
                for acc in accounts:
                    acc[1] *= bars.amount[t] / held
    return liquidated


@pytest.mark.parametrize("side", [LONG, SHORT])
def test_cohorts_match_an_account_by_account_simulation(side):
    rng = np.random.default_rng(7)
    T = 300
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, T)))
    amount = 1e6 * np.exp(np.cumsum(rng.normal(0.0, 0.03, T)))
    bars = point_bars(close, amount)
    book = side_book(bars, liquidation_offset(LEVERAGE, M, side), side, entry_spread=0.0)
    expected = account_reference(bars, side)
    assert expected[2].sum() > 0 and expected[1].sum() > 0, "the path must liquidate the levered classes"
    np.testing.assert_allclose(book.liquidated, expected, rtol=1e-12, atol=1e-6)
    # Every class holds the last bar's open interest.
    np.testing.assert_allclose(book.units.sum(axis=1), amount[-1], rtol=1e-12)


def test_a_band_of_entries_survives_in_proportion_by_hand():
    """Cohort 0 spread uniformly over ±s around the first close; the next bar's low cuts it."""
    s, drop = 0.05, -0.08
    close = np.log(np.array([100.0, 100.0]))
    bars = Bars(
        end=pd.date_range("2025-01-01", periods=2, freq="D", tz="UTC"),
        close=close,
        low=np.array([close[0], close[0] + drop]),
        high=close,
        amount=np.array([1.0, 1.0]),
        value=np.array([100.0, 100.0]),
    )
    offset = liquidation_offset(LEVERAGE, M, LONG)
    book = side_book(bars, offset, LONG, entry_spread=s)
    for j, d in enumerate(offset):
        # At the start, entries e with e + d < 0 survive: [−s, min(s, −d)]; after the drop,
        # those with e + d < drop: [−s, min(s, drop − d)] (clipped at −s).
        start = min(s, -d) + s
        after = min(max(drop - d, -s), s) + s
        kept = after / start
        # The unit quantity was spread over the starting survivors; the liquidated part lies
        # between the two cuts, valued at the level of its middle.
        cut0, cut1 = min(s, -d), min(max(drop - d, -s), s)
        value = (1.0 - kept) * 100.0 * math.exp(0.5 * (cut0 + cut1) + d)
        assert book.liquidated[j, 1] == pytest.approx(value, rel=1e-12, abs=1e-15)
        # Survivors plus the re-entry fill the bar's open interest again.
        assert book.units[j].sum() == pytest.approx(1.0, rel=1e-12)
        assert book.units[j, 0] == pytest.approx(kept, rel=1e-12)


def test_pro_rata_closing_scales_every_cohort():
    close = np.full(4, 50.0)
    amount = np.array([1.0, 3.0, 1.5, 1.5])
    book = side_book(point_bars(close, amount), liquidation_offset(LEVERAGE, M, LONG), LONG, 0.0)
    # Bar 1: 2 enter beside the 1 held; bar 2: half of each closes; bar 3: nothing happens.
    np.testing.assert_allclose(book.units[:, :4], np.tile([0.5, 1.0, 0.0, 0.0], (3, 1)), rtol=1e-12)
    assert not book.liquidated.any()


def _simplex_slsqp(P, y):
    n = P.shape[1]
    res = minimize(
        lambda w: np.sum((P @ w - y) ** 2),
        np.full(n, 1.0 / n),
        jac=lambda w: 2.0 * P.T @ (P @ w - y),
        bounds=[(0.0, 1.0)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}],
        method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return res.x, float(np.sum((P @ res.x - y) ** 2))


@pytest.mark.parametrize("seed", range(6))
def test_simplex_fit_matches_scipy_and_recovers_exact_shares(seed):
    rng = np.random.default_rng(seed)
    P = rng.gamma(0.5, 1.0, (40, 4)) * (rng.random((40, 4)) < 0.6)
    y = rng.gamma(0.5, 1.0, 40)
    w, ssr = fit_shares(P, y)
    ref, ref_ssr = _simplex_slsqp(P, y)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0, abs=1e-12)
    # The exact answer is never worse than the iterative one, and they are the same point.
    assert ssr <= ref_ssr * (1 + 1e-9) + 1e-12
    np.testing.assert_allclose(w, ref, atol=1e-5)
    truth = rng.dirichlet(np.ones(4))
    recovered, resid = fit_shares(P, P @ truth)
    np.testing.assert_allclose(recovered, truth, atol=1e-9)
    assert resid == pytest.approx(0.0, abs=1e-18)


# --- from files, through the config ---------------------------------------------------------------


def write_history(tmp_path, shares=None, hours=240, seed=3):
    """Hourly OHLC bars, open interest and (with ``shares``) the liquidations those shares cause."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2025-03-01", tz="UTC")
    opens = pd.date_range(start, periods=hours, freq="h")
    r = rng.normal(0.0, 0.012, hours)
    r[150:156] = -0.03  # a sell-off that reaches the levered longs
    close = 80_000.0 * np.exp(np.cumsum(r))
    prev = np.concatenate([[close[0]], close[:-1]])
    high = np.maximum(prev, close) * np.exp(np.abs(rng.normal(0, 0.003, hours)))
    low = np.minimum(prev, close) * np.exp(-np.abs(rng.normal(0, 0.003, hours)))
    pd.DataFrame(
        {
            "timestamp": opens.strftime("%Y-%m-%d %H:%M:%S"),
            "open": prev,
            "high": high,
            "low": low,
            "close": close,
        }
    ).to_csv(tmp_path / "bars.csv", index=False)
    amount = 90_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, hours)))
    ends = opens + pd.Timedelta(hours=1)
    pd.DataFrame(
        {
            "timestamp": (ends.asi8 // 1_000_000),
            "openInterestAmount": amount,
            "openInterestValue": amount * close,
        }
    ).to_csv(tmp_path / "oi.csv", index=False)
    return ends


def crowd_block(tmp_path, **data):
    return {
        "crowd": {
            "leverage": {3: 0.25, 10: 0.25, 25: 0.25, 50: 0.25},
            "entry_spread": 0.02,
            "data": {"open_interest": "oi.csv", "prices": "bars.csv", **data},
        },
        "impact": {"kind": "linear", "permanent": 0.3, "daily_volume": 2e10},
        "range": 1.5,
    }


def test_fitted_shares_reproduce_the_liquidations_they_caused(tmp_path):
    ends = write_history(tmp_path)
    truth = {3: 0.5, 10: 0.3, 25: 0.0, 50: 0.2}
    made = reconstruct(
        parse_cascade(crowd_block(tmp_path)).crowd.model_copy(update={"leverage": truth}), tmp_path
    )
    predicted = made.predicted()
    events = pd.DataFrame(
        {"timestamp": ends.strftime("%Y-%m-%d %H:%M:%S"), "long": predicted[:, 0], "short": predicted[:, 1]}
    )
    events[(events["long"] > 0) | (events["short"] > 0)].to_csv(tmp_path / "liq.csv", index=False)
    assert predicted[:, 0].sum() > 0
    cfg = parse_cascade(crowd_block(tmp_path, liquidations="liq.csv"))
    fitted = reconstruct(cfg.crowd, tmp_path)
    assert fitted.fitted
    np.testing.assert_allclose(fitted.shares, list(truth.values()), atol=1e-8)
    assert fitted.fit["r2"] == pytest.approx(1.0, abs=1e-10)
    # A half-reported history is scaled back up by reported_fraction.
    events["long"] *= 0.5
    events["short"] *= 0.5
    events.to_csv(tmp_path / "half.csv", index=False)
    half = reconstruct(
        parse_cascade(crowd_block(tmp_path, liquidations="half.csv", reported_fraction=0.5)).crowd, tmp_path
    )
    np.testing.assert_allclose(half.shares, list(truth.values()), atol=1e-8)


def test_a_data_crowd_starts_with_the_last_open_interest(tmp_path):
    write_history(tmp_path)
    params = CascadeParams.from_config(crowd_block(tmp_path), jnp.float64, base_dir=tmp_path)
    oi = pd.read_csv(tmp_path / "oi.csv")
    last = float(oi["openInterestValue"].iloc[-1])
    assert float(params.long_oi) == pytest.approx(last, rel=1e-12)
    long_oi, short_oi = open_interest(init_crowd(params), params)
    # Notional read back from the level grid, which takes each bin's levels as uniform: a band
    # of entries narrower than a bin (one hour's range) is misplaced by at most the bin width h,
    # so the read-back is within a factor e^{±h} (h = 2·1.5/400).
    h = 2 * 1.5 / 400
    assert float(long_oi) == pytest.approx(last, rel=math.expm1(h))
    assert float(short_oi) == pytest.approx(last, rel=math.expm1(h))
    for weight in (params.entries.weight_long, params.entries.weight_short):
        np.testing.assert_allclose(np.asarray(weight).sum(axis=1), 1.0, rtol=1e-12)


def test_a_data_crowd_runs_through_the_engine(tmp_path):
    import levopt

    write_history(tmp_path)
    base = {
        "seed": 1,
        "paths": 64,
        "horizon_days": 5,
        "steps_per_day": 24,
        "precision": "float64",
        "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.8},
    }
    plain = levopt.simulate(base)
    still = crowd_block(tmp_path)
    still["impact"]["permanent"] = 0.0
    np.testing.assert_array_equal(levopt.simulate({**base, "cascade": still}, base_dir=tmp_path), plain)
    moved = levopt.simulate({**base, "cascade": crowd_block(tmp_path)}, base_dir=tmp_path)
    assert np.abs(moved - plain).max() > 0
    # Results report the reconstruction beside any calibration.
    policy = {"kind": "constant", "leverage": 2.0}
    problem = levopt.build({**base, "policy": policy, "cascade": crowd_block(tmp_path)}, base_dir=tmp_path)
    crowd = problem.calibration["crowd"]
    last = float(pd.read_csv(tmp_path / "oi.csv")["openInterestValue"].iloc[-1])
    assert crowd["open_interest"] == pytest.approx(last, rel=1e-12) and crowd["bars"] == 240


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"as_of": "not a time"}, "cascade.crowd.data.as_of"),
        ({"as_of": "2020-01-01"}, "cascade.crowd.data"),
        ({"lookback_days": 0.0}, "cascade.crowd.data.lookback_days"),
        ({"reported_fraction": 1.5}, "cascade.crowd.data.reported_fraction"),
        ({"surprise": 1}, "cascade.crowd.data.surprise"),
    ],
)
def test_bad_history_settings_name_the_field(tmp_path, change, field):
    write_history(tmp_path)
    with pytest.raises(ConfigError) as err:
        CascadeParams.from_config(crowd_block(tmp_path, **change), jnp.float64, base_dir=tmp_path)
    assert err.value.field == field, str(err.value)


def test_open_interest_is_required_without_history():
    with pytest.raises(ConfigError) as err:
        parse_cascade({"crowd": {"short_oi": 1e9}, "impact": {"daily_volume": 1e10}})
    assert err.value.field == "cascade.crowd.long_oi"


def test_a_range_too_narrow_for_the_reconstructed_levels(tmp_path):
    write_history(tmp_path)
    block = crowd_block(tmp_path)
    block["crowd"]["leverage"] = {10: 0.5, 50: 0.5}
    block["range"] = 0.13  # covers the parametric check (0.1 + 0.02) but not the data's spread
    with pytest.raises(ConfigError) as err:
        CascadeParams.from_config(block, jnp.float64, base_dir=tmp_path)
    assert err.value.field == "cascade.range"
