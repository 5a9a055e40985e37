"""``levopt position`` / ``levopt.position_risk``: an open position's risk now.

References: the engine itself through ``levopt.evaluate`` of the returned config (same numbers), the
venue's liquidation-price calculator (checked against the venues' worked examples in
tests/test_venues.py), and synthetic GARCH data whose true conditional variance is known.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_reliability import run_cli, user_error
from test_venue_live import FakeExchange, FakeNetworkError, candles, fake_ccxt, only_reads  # noqa: F401

import levopt
from levopt.errors import ConfigError
from levopt.position import PositionRequest, parse_horizon, parse_position, position_risk
from levopt.venues import liquidation_price

GARCH = {"omega": 2e-6, "alpha": 0.08, "beta": 0.9}


def garch_prices(n: int, seed: int = 0, spike: int = 0, price0: float = 60_000.0) -> pd.DataFrame:
    """Hourly closes from a GARCH(1,1) with normal shocks (the simulator's convention, mu = 0),
    optionally ending in ``spike`` bars of eight times the usual size."""
    rng = np.random.default_rng(seed)
    h = GARCH["omega"] / (1 - GARCH["alpha"] - GARCH["beta"])
    x = np.empty(n)
    for t in range(n):
        x[t] = -0.5 * h + math.sqrt(h) * rng.standard_normal()
        e = x[t] + 0.5 * h
        h = GARCH["omega"] + GARCH["alpha"] * e**2 + GARCH["beta"] * h
    if spike:
        x[-spike:] = (
            8
            * math.sqrt(GARCH["omega"] / (1 - GARCH["alpha"] - GARCH["beta"]))
            * np.sign(rng.standard_normal(spike))
        )
    close = price0 * np.exp(np.concatenate([[0.0], np.cumsum(x)]))
    index = pd.date_range("2024-01-01", periods=n + 1, freq="h", tz="UTC")
    return pd.DataFrame({"close": close}, index=index.rename("timestamp"))


def write_prices(path: Path, frame: pd.DataFrame) -> Path:
    out = frame.reset_index()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S")
    out.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def prices(tmp_path_factory) -> Path:
    return write_prices(tmp_path_factory.mktemp("position") / "btc.csv", garch_prices(2000))


ASK = {"wallet_balance": 20_000.0, "horizon": "24h", "window": "60d", "paths": 4096, "dist": "normal"}


def test_position_numbers_are_the_engine_s_and_the_venue_s(prices):
    """The reported probability, VaR and CVaR are levopt.evaluate of the returned config (same
    numbers); the liquidation price is the venue calculator's."""
    price = float(pd.read_csv(prices)["close"].iloc[-1])
    r = position_risk([f"long 3 @ {price * 0.99:.2f}"], prices=prices, **ASK)
    e = levopt.evaluate(r["config"])
    assert r["liquidation_probability"] == e["metrics"]["liquidation_probability"]
    assert r["liquidation_probability_stderr"] == e["stderr"]["liquidation_probability"]
    assert r["var"] == pytest.approx(e["metrics"]["var"] * r["equity"], rel=1e-15)
    assert r["cvar"] == pytest.approx(e["metrics"]["cvar"] * r["equity"], rel=1e-15)
    want = liquidation_price(
        "binance_usdm", side="long", quantity=3, entry_price=round(price * 0.99, 2), wallet_balance=20_000
    )
    assert r["liquidation_price"] == want
    # The account as the engine sees it: equity = wallet + unrealized P&L, leverage = notional / equity.
    assert r["equity"] == pytest.approx(20_000 + 3 * (price - round(price * 0.99, 2)))
    assert r["config"]["policy"]["leverage"] == pytest.approx(3 * price / r["equity"])
    assert 0 < r["liquidation_probability"] < 0.5
    assert r["distance"]["pct"] < 0
    assert r["model"]["window"]["returns"] == 60 * 24


def test_the_suggested_leverage_respects_the_cap_and_the_trade_gets_there(prices):
    price = float(pd.read_csv(prices)["close"].iloc[-1])
    r = position_risk([f"long 3 @ {price:.2f}"], prices=prices, drift=30.0, liquidation_cap=0.02, **ASK)
    s = r["suggested"]
    assert s["liquidation_probability"] <= 0.02
    # Kelly with drift 30/yr (about 34x at this volatility) is far above the cap: the cap binds.
    assert s["bound_by"] == "liquidation_cap"
    held = 3.0
    signed = held + (1 if s["trade"]["side"] == "buy" else -1) * s["trade"]["quantity"]
    assert signed == pytest.approx(s["quantity"], rel=1e-9)
    # The engine agrees that the suggested leverage is at the cap: a little more breaks it.
    cfg = dict(
        r["config"], policy={"kind": "constant", "leverage": s["leverage"] * 1.25, "rebalance": "never"}
    )
    assert levopt.evaluate(cfg)["metrics"]["liquidation_probability"] > 0.02


def test_a_volatility_spike_raises_the_filtered_variance_and_the_probability(tmp_path):
    calm = garch_prices(2000, seed=1)
    spiked = garch_prices(2000, seed=1, spike=6)
    ask = dict(ASK, paths=4096)
    price_calm, price_spiked = calm["close"].iloc[-1], spiked["close"].iloc[-1]
    # The same leverage on both: entry at the last price, 5x of the wallet.
    q_calm, q_spiked = 5 * 20_000 / price_calm, 5 * 20_000 / price_spiked
    a = position_risk([f"long {q_calm} @ {price_calm}"], prices=calm, **ask)
    b = position_risk([f"long {q_spiked} @ {price_spiked}"], prices=spiked, **ask)
    assert b["model"]["vol_now_annual"] > 3 * a["model"]["vol_now_annual"]
    se = math.hypot(a["liquidation_probability_stderr"], b["liquidation_probability_stderr"])
    assert b["liquidation_probability"] - a["liquidation_probability"] > 4 * se


def test_watch_reuses_the_fit_and_reports_what_changed(tmp_path, monkeypatch):
    frame = garch_prices(1500, seed=2)
    path = write_prices(tmp_path / "live.csv", frame.iloc[:-1])
    price = frame["close"].iloc[-2]
    request = PositionRequest.from_cli(
        positions=[f"long 2 @ {price:.2f}"], positions_file=None, wallet_balance=30_000.0, venue="binance_usdm",
        symbol=None, mode="cross", horizon="12h", data=path, funding=None, fetch=False, account=False,
        timeframe="1h", window="45d", dist="normal", gjr=False, bayes=False, drift=None, liquidation_cap=0.01,
        level=0.99, paths=2048, seed=0,
    )  # fmt: skip
    first, state = request.answer()
    sleeps = []

    def fake_sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 2:  # the second check finds a new bar
            write_prices(path, frame)

    monkeypatch.setattr("levopt.position.time.sleep", fake_sleep)
    result, changes = next(request.watch(state, 30.0))
    assert sleeps == [30.0, 30.0]
    assert result["as_of"] > first["as_of"]
    assert result["model"]["params"] == first["model"]["params"]  # re-filtered, not refitted
    assert result["model"]["vol_now_annual"] != first["model"]["vol_now_annual"]
    assert changes.startswith(result["as_of"]) and "P(liq)" in changes


# --- the command line ------------------------------------------------------------------------------


def test_cli_json_answer(monkeypatch, capsys, prices):
    price = float(pd.read_csv(prices)["close"].iloc[-1])
    code, out, err = run_cli(
        monkeypatch, capsys, "position", "--position", f"short 1.5 @ {price:.2f}", "--wallet-balance", "15000",
        "--data", prices, "--window", "60d", "--paths", "2048", "--dist", "normal", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["positions"][0]["side"] == "short" and doc["notional"] < 0
    assert doc["liquidation_price"] > price
    for key in ("liquidation_probability", "var", "cvar", "funding", "suggested", "model", "feed", "config"):
        assert key in doc


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--position", "sideways 2 @ 60000"], "--position.side"),
        (["--position", "long two @ 60000"], "--position.quantity"),
        (["--position", "long 2 @ -5"], "--position.entry_price"),
        (["--position", "long 2 @ 0"], "--position.entry_price"),
        (["--position", "long 2"], "--position"),
        (["--position", "long 50 @ 60000"], "--wallet-balance"),
        (["--position", "long 2 @ 60000", "--symbol", "DOGEBTC"], "--symbol"),
        (["--position", "long 2 @ 60000", "--horizon", "soon"], "--horizon"),
        (["--position", "long 2 @ 60000", "--horizon", "90m"], "horizon"),
        (["--position", "long 2 @ 60000", "--liquidation-cap", "2"], "--liquidation-cap"),
    ],
)
def test_cli_bad_input_is_one_line_naming_the_field(monkeypatch, capsys, prices, args, field):
    line = user_error(
        monkeypatch,
        capsys,
        "position",
        "--wallet-balance",
        "1000",
        "--data",
        prices,
        "--window",
        "60d",
        *args,
    )
    assert line.startswith(f"error: {field}"), line


def test_cli_without_data_or_wallet(monkeypatch, capsys):
    line = user_error(
        monkeypatch, capsys, "position", "--position", "long 1 @ 60000", "--wallet-balance", "5000"
    )
    assert line.startswith("error: --data")
    line = user_error(monkeypatch, capsys, "position", "--position", "long 1 @ 60000", "--data", "x.csv")
    assert line.startswith("error: --wallet-balance")


# --- live data through a fake exchange -------------------------------------------------------------


def fake_exchange(n: int = 24 * 50) -> FakeExchange:
    ex = FakeExchange()
    ex.page = 500
    ex.candles = candles(n)
    ex.funding = [
        {"timestamp": candles(1)[0][0] + k * 8 * 3_600_000, "fundingRate": 1e-4, "symbol": "BTC/USDT:USDT"}
        for k in range(n // 8)
    ]
    return ex


def test_fetch_reads_candles_and_funding_and_reports_a_stale_feed(monkeypatch):
    ex = fake_exchange()
    last_close_ms = ex.candles[-1][0] + 3_600_000
    now = pd.Timestamp(last_close_ms + 5 * 3_600_000, unit="ms", tz="UTC")
    price = ex.candles[-2][4]
    request = PositionRequest(None, _settings("12h", "30d"), fetch=True, exchange=ex, now=now)._with(
        venue="binance_usdm", symbol="BTCUSDT", mode="cross"
    )
    request.account = levopt.position.Account.checked(
        [f"long 1 @ {price}"], 10_000, "binance_usdm", "BTCUSDT", "cross"
    )
    result, _ = request.answer()
    assert {c[0] for c in ex.calls} >= {"fetch_ohlcv", "fetch_funding_rate_history"}
    only_reads(ex)
    assert result["feed"]["stale_bars"] == pytest.approx(5.0)
    assert any(w.startswith("stale feed") for w in result["feed"]["warnings"])
    assert result["funding"]["annual_rate"] == pytest.approx(1e-4 * 3 * 365)
    assert result["model"]["window"]["returns"] > 0


def test_account_positions_read_from_the_exchange(monkeypatch):
    ex = fake_exchange()
    price = ex.candles[-2][4]
    ex.positions = [
        {"symbol": "BTC/USDT:USDT", "contracts": 0.5, "contractSize": 1.0, "side": "long", "entryPrice": price,
         "markPrice": price, "notional": 0.5 * price, "leverage": 5, "marginMode": "cross", "unrealizedPnl": 0.0,
         "initialMargin": 0.1 * price, "info": {}},
    ]  # fmt: skip
    ex.balance = {
        "USDT": {"total": 8000.0, "free": 8000.0},
        "total": {"USDT": 8000.0},
        "info": {
            "totalCrossWalletBalance": "8000",
            "assets": [{"asset": "USDT", "crossWalletBalance": "8000"}],
        },
    }
    now = pd.Timestamp(ex.candles[-1][0] + 3_600_000, unit="ms", tz="UTC")
    request = PositionRequest(
        None, _settings("12h", "30d"), fetch=True, read_account=True, exchange=ex, now=now
    )._with(venue="binance_usdm", symbol="BTCUSDT", mode="cross")
    result, _ = request.answer()
    only_reads(ex)
    assert result["positions"][0]["quantity"] == 0.5
    assert result["positions"][0]["side"] == "long"


@pytest.mark.usefixtures("fake_ccxt")
def test_an_exchange_error_is_one_line(monkeypatch, capsys):
    def broken(self, *args, **kwargs):
        raise FakeNetworkError("503 Service Unavailable\nretry later")

    monkeypatch.setattr(FakeExchange, "fetch_ohlcv", broken)
    line = user_error(
        monkeypatch, capsys, "position", "--position", "long 1 @ 60000", "--wallet-balance", "9000", "--fetch"
    )
    assert "503 Service Unavailable" in line and "retry later" not in line


def _settings(horizon: str, window: str):
    from levopt.position import _settings as make

    return make(horizon, window, "normal", False, False, None, 0.01, 0.99, 2048, 0)


def test_parsers():
    assert parse_horizon("24h") == 24 and parse_horizon("7d") == 168 and parse_horizon("90m") == 1.5
    p = parse_position("short 0.5 @ 3100 ETHUSDT")
    assert (p.side, p.quantity, p.entry_price, p.symbol) == ("short", 0.5, 3100.0, "ETHUSDT")
    assert parse_position({"side": "LONG", "quantity": "1_000", "entry_price": 2}).quantity == 1000
    with pytest.raises(ConfigError, match="^position.quantity"):
        parse_position("long -1 @ 5")


@pytest.mark.slow
def test_bayes_answer_is_the_engine_s_with_the_posterior():
    """--bayes: NUTS on the window, each path its own draw started from its filtered variance; the
    answer is still levopt.evaluate of the returned (calibrating) config."""
    frame = garch_prices(1500, seed=3)
    price = frame["close"].iloc[-1]
    r = position_risk([f"long 4 @ {price}"], prices=frame, bayes=True, **dict(ASK, window="45d", paths=2048))
    assert r["model"]["method"].startswith("posterior")
    assert r["model"]["calibration"]["uncertainty"] == "posterior"
    assert r["model"]["vol_now_annual"] > 0 and r["distance"]["daily_sd"] > 0
    e = levopt.evaluate(r["config"])
    assert r["liquidation_probability"] == e["metrics"]["liquidation_probability"]


def test_cli_watch_stops_cleanly_on_ctrl_c(monkeypatch, capsys, prices):
    price = float(pd.read_csv(prices)["close"].iloc[-1])

    def interrupted(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr("levopt.position.time.sleep", interrupted)
    code, out, err = run_cli(
        monkeypatch, capsys, "position", "--position", f"long 1 @ {price:.2f}", "--wallet-balance", "20000",
        "--data", prices, "--window", "60d", "--paths", "1024", "--dist", "normal", "--watch", "30s",
    )  # fmt: skip
    assert code == 0, err
    assert "stopped watching" in err and "Traceback" not in err
    assert "liquidation price" in err  # the first answer's table was shown


def test_cli_positions_file_nets_the_legs(monkeypatch, capsys, prices, tmp_path):
    """Two long legs and a short one on one symbol: the answer holds the net position, and its
    liquidation price is the calculator's for the net quantity at the remaining legs' entry."""
    price = float(pd.read_csv(prices)["close"].iloc[-1])
    legs = tmp_path / "legs.yaml"
    legs.write_text(
        "positions:\n"
        f"  - {{side: long, quantity: 2, entry_price: {price:.2f}}}\n"
        f"  - {{side: long, quantity: 1, entry_price: {price * 1.02:.2f}}}\n"
        f"  - {{side: short, quantity: 0.5, entry_price: {price * 0.99:.2f}}}\n"
    )
    code, out, err = run_cli(
        monkeypatch, capsys, "position", "--positions", legs, "--wallet-balance", "30000", "--data", prices,
        "--window", "60d", "--paths", "1024", "--dist", "normal", "--json", "--quiet",
    )  # fmt: skip
    assert code == 0, err
    doc = json.loads(out)
    assert doc["notional"] == pytest.approx(2.5 * price)
    entry = (2 * round(price, 2) + round(price * 1.02, 2)) / 3
    # The short leg closed against the longs at the net entry: its P&L vs its own entry joins the wallet.
    wallet = 30_000 - 0.5 * (entry - round(price * 0.99, 2))
    want = liquidation_price(
        "binance_usdm", side="long", quantity=2.5, entry_price=entry, wallet_balance=wallet
    )
    assert doc["liquidation_price"] == pytest.approx(want, rel=1e-12)
