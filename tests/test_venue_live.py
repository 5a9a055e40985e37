"""levopt.venues.live: recent bars, funding and account positions through a fake ccxt (no network).

The fake exchange serves ccxt's unified structures: OHLCV rows ``[ms, open, high, low, close,
volume]`` in pages smaller than the ``limit`` asked for (as venues cap them), funding-rate records
(``timestamp``, ``fundingRate``), position structures (contracts, contractSize, side, entryPrice,
markPrice, notional, leverage, marginMode, positionMargin, collateral, unrealizedPnl,
initialMargin) and balance structures with the venue's raw response in ``info``. It records every
call, and its write methods (orders, leverage, margin) record themselves separately, so a test can
check that nothing but ``fetch_*`` was called.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FakeAuthenticationError, FakeNetworkError, install_fake_ccxt

from levopt.data import FetchError, MissingDependencyError, load_funding, load_prices
from levopt.errors import ConfigError, LevoptError
from levopt.venues import (
    STALE_BARS,
    account_positions,
    credential_variables,
    feed_report,
    live_candles,
    live_funding,
)

FIXTURES = Path(__file__).parent / "fixtures"
HOUR_MS = 3_600_000
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
KEYS = {"LEVOPT_BINANCE_USDM_API_KEY": "key-123", "LEVOPT_BINANCE_USDM_API_SECRET": "secret-456"}


def candles(n: int, *, start: int = T0, skip: tuple[int, ...] = ()) -> list[list[float]]:
    """``n`` hourly bars from ``start`` (bar indices in ``skip`` left out) with random-walk prices."""
    rng = np.random.default_rng(7)
    close = 60_000 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    rows = []
    for i in range(n):
        if i in skip:
            continue
        c = round(float(close[i]), 2)
        o = round(float(close[i - 1]), 2) if i else c
        rows.append([start + i * HOUR_MS, o, max(o, c) + 5.25, min(o, c) - 4.75, c, round(10 + i * 0.37, 3)])
    return rows


class FakeExchange:
    """A ccxt exchange serving canned data; ``page`` caps every response as a venue caps pages."""

    id = "binanceusdm"
    has = {
        "fetchOHLCV": True,
        "fetchFundingRateHistory": True,
        "fetchPositions": True,
        "fetchBalance": True,
        "fetchMarginMode": True,
    }

    def __init__(self, options=None):
        self.options = options
        self.calls: list[tuple] = []
        self.writes: list[str] = []
        self.page = 100
        self.candles: list[list[float]] = []
        self.funding: list[dict] = []
        self.positions: list[dict] = []
        self.balance: dict = {}
        self.margin_mode = "cross"
        self.error: Exception | None = None

    def _call(self, *record):
        self.calls.append(record)
        if self.error is not None:
            raise self.error

    def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        self._call("fetch_ohlcv", symbol, timeframe, since, limit)
        rows = [r for r in self.candles if since is None or r[0] >= since]
        return [list(r) for r in rows[: min(limit or 500, self.page)]]

    def fetch_funding_rate_history(self, symbol=None, since=None, limit=None, params=None):
        self._call("fetch_funding_rate_history", symbol, since, limit)
        rows = [r for r in self.funding if since is None or r["timestamp"] >= since]
        return [dict(r) for r in rows[: min(limit or 100, self.page)]]

    def fetch_positions(self, symbols=None, params=None):
        self._call("fetch_positions", symbols)
        return [dict(p) for p in self.positions]

    def fetch_balance(self, params=None):
        self._call("fetch_balance")
        return json.loads(json.dumps(self.balance))

    def fetch_margin_mode(self, symbol, params=None):
        self._call("fetch_margin_mode", symbol)
        return {"info": {}, "symbol": symbol, "marginMode": self.margin_mode}

    # Methods that would change the account: none may ever be called.
    def _write(self, name):
        self.writes.append(name)
        return {}

    def create_order(self, *args, **kwargs):
        return self._write("create_order")

    def cancel_order(self, *args, **kwargs):
        return self._write("cancel_order")

    def cancel_all_orders(self, *args, **kwargs):
        return self._write("cancel_all_orders")

    def edit_order(self, *args, **kwargs):
        return self._write("edit_order")

    def set_leverage(self, *args, **kwargs):
        return self._write("set_leverage")

    def set_margin_mode(self, *args, **kwargs):
        return self._write("set_margin_mode")

    def set_position_mode(self, *args, **kwargs):
        return self._write("set_position_mode")

    def add_margin(self, *args, **kwargs):
        return self._write("add_margin")

    def transfer(self, *args, **kwargs):
        return self._write("transfer")


@pytest.fixture
def fake_ccxt(monkeypatch):
    """A fake ``ccxt`` module whose exchange classes record the instances made."""
    return install_fake_ccxt(
        monkeypatch, dict.fromkeys(["binanceusdm", "bybit", "hyperliquid"], FakeExchange)
    )


def only_reads(ex: FakeExchange) -> None:
    assert ex.writes == []
    assert ex.calls and all(c[0].startswith("fetch_") for c in ex.calls), ex.calls


# ---------------------------------------------------------------------------------------------
# 1. candles


def test_candles_paginate_drop_the_open_bar_and_match_load_prices(tmp_path):
    ex = FakeExchange()
    ex.candles = candles(251)  # bars 0..250; bar 250 opens at T0 + 250 h and is still open
    now = T0 + 250 * HOUR_MS + 20 * 60_000
    frame, report = live_candles("binance_usdm", "BTCUSDT", timeframe="1h", bars=200, exchange=ex, now=now)

    fetches = [c for c in ex.calls if c[0] == "fetch_ohlcv"]
    assert len(fetches) >= 3  # pages of 100: several requests
    assert {c[1] for c in fetches} == {"BTC/USDT:USDT"}
    assert [c[3] for c in fetches] == sorted(c[3] for c in fetches)  # each page after the last
    assert len(frame) == 200
    assert frame.index[0] == pd.Timestamp(T0 + 50 * HOUR_MS, unit="ms", tz="UTC")
    assert frame.index[-1] == pd.Timestamp(T0 + 249 * HOUR_MS, unit="ms", tz="UTC")  # 250 is open

    # The same rows written to a CSV file read back identically with load_prices.
    rows = ex.candles[50:250]
    csv = tmp_path / "btc_1h.csv"
    csv.write_text(
        "timestamp,open,high,low,close,volume\n" + "".join(",".join(map(repr, r)) + "\n" for r in rows)
    )
    saved = load_prices(csv)
    pd.testing.assert_series_equal(frame["close"], saved["close"], check_freq=False)
    pd.testing.assert_frame_equal(frame, saved, check_freq=False)
    assert frame.index.dtype == saved.index.dtype and frame.index.name == "timestamp"
    assert frame.attrs["source"] == report.source == "ccxt binanceusdm BTC/USDT:USDT 1h"

    assert report.bars == 200 and report.gaps == 0 and report.frequency == "1h"
    assert report.first == "2024-06-03T02:00:00Z" and report.last == "2024-06-11T09:00:00Z"
    assert report.stale_bars == pytest.approx(20 / 60)
    assert len(report.warnings) == 1 and report.warnings[0].startswith("partial bar dropped")
    assert "2024-06-11T10:00:00Z" in report.warnings[0]
    only_reads(ex)

    ex2 = FakeExchange()
    ex2.candles = candles(251)
    short, short_report = live_candles("binance_usdm", "BTCUSDT", bars=400, exchange=ex2, now=now)
    assert len(short) == 250
    assert any(w.startswith("short history") and "250" in w and "400" in w for w in short_report.warnings)


def test_bars_off_the_epoch_grid_count_once():
    ex = FakeExchange()
    ex.candles = candles(100, start=T0 + 30 * 60_000)  # hourly bars opening at hh:30
    now = T0 + 99 * HOUR_MS + 50 * 60_000  # inside the last bar, opened 99:30
    frame, report = live_candles("binance_usdm", "BTCUSDT", bars=24, exchange=ex, now=now)
    assert len(frame) == 24 and report.bars == 24
    assert frame.index[-1] == pd.Timestamp(T0 + 98 * HOUR_MS + 30 * 60_000, unit="ms", tz="UTC")


def test_candle_arguments_are_checked():
    ex = FakeExchange()
    with pytest.raises(ConfigError, match="bars"):
        live_candles("binance_usdm", "BTCUSDT", bars=0, exchange=ex)
    with pytest.raises(ConfigError, match="timeframe"):
        live_candles("binance_usdm", "BTCUSDT", timeframe="1 hour", exchange=ex)
    with pytest.raises(FetchError, match="no closed 1h bars"):
        live_candles("binance_usdm", "BTCUSDT", exchange=ex, now=T0)
    assert ex.calls and ex.writes == []


# ---------------------------------------------------------------------------------------------
# 2. feed health


def test_stale_feed_is_reported():
    ex = FakeExchange()
    ex.candles = candles(48)  # the last bar opens at T0 + 47 h and closes at T0 + 48 h
    now = T0 + 53 * HOUR_MS  # 5 hours after that close
    frame, report = live_candles("binance_usdm", "BTCUSDT", bars=40, exchange=ex, now=now)
    assert len(frame) == 35 and report.gaps == 0  # the window's last 5 hours have no bars
    assert report.stale_bars == pytest.approx(5.0)
    assert report.stale and report.stale_bars > STALE_BARS
    stale = [w for w in report.warnings if w.startswith("stale feed")]
    assert len(stale) == 1 and "5.0 bars ago" in stale[0] and "\n" not in stale[0]
    assert len(report.warnings) == 2 and report.warnings[1].startswith("short history: binanceusdm served 35")


def test_gappy_and_healthy_saved_files(tmp_path):
    def saved(rows, name):
        path = tmp_path / name
        path.write_text(
            "timestamp,open,high,low,close,volume\n" + "".join(",".join(map(repr, r)) + "\n" for r in rows)
        )
        return load_prices(path)

    gappy = saved(candles(60, skip=(10, 11, 30)), "gappy.csv")
    now = pd.Timestamp(T0 + 60 * HOUR_MS + 10 * 60_000, unit="ms", tz="UTC")
    report = feed_report(gappy, source="gappy.csv", now=now)
    assert report.gaps == 3 and report.bars == 57 and report.frequency == "1h"
    assert report.stale_bars == pytest.approx(10 / 60)
    assert len(report.warnings) == 1
    assert report.warnings[0].startswith(
        "gaps: 3 missing 1h bars in 2 gaps, the largest 2 after 2024-06-01T09:00:00Z"
    )

    healthy = saved(candles(60), "healthy.csv")
    report = feed_report(healthy, source="healthy.csv", now=now)
    assert report.gaps == 0 and report.warnings == () and not report.stale
    assert report.first == "2024-06-01T00:00:00Z" and report.last == "2024-06-03T11:00:00Z"
    assert "60 1h bars" in report.summary()

    # Saved during the last bar: its close is not final.
    during = feed_report(healthy, source="healthy.csv", now=now - pd.Timedelta(minutes=40))
    assert during.stale_bars < 0 and len(during.warnings) == 1
    assert during.warnings[0].startswith("partial bar") and "drop_last_partial" in during.warnings[0]


# ---------------------------------------------------------------------------------------------
# 3. funding


def test_funding_is_read_as_load_funding_reads_it():
    records = json.loads((FIXTURES / "ccxt_funding.json").read_text())
    ex = FakeExchange()
    ex.page = 10
    ex.funding = records
    now = pd.Timestamp(records[-1]["timestamp"], unit="ms", tz="UTC") + pd.Timedelta(hours=1)
    rates = live_funding("binance_usdm", "BTCUSDT", since_days=30, exchange=ex, now=now)
    expected = load_funding(FIXTURES / "ccxt_funding.json")
    pd.testing.assert_series_equal(rates, expected)
    assert rates.index.second.max() == 0  # stamps a few ms late rounded to the minute, as load_funding
    assert len([c for c in ex.calls if c[0] == "fetch_funding_rate_history"]) > 3  # paginated
    assert {c[1] for c in ex.calls} == {"BTC/USDT:USDT"}
    assert rates.attrs["source"] == "ccxt binanceusdm BTC/USDT:USDT funding"

    ex = FakeExchange()
    ex.funding = records
    recent = live_funding("binance_usdm", "BTCUSDT", since_days=2, exchange=ex, now=now)
    pd.testing.assert_series_equal(recent, expected[expected.index >= now - pd.Timedelta(days=2)])
    assert len(recent) == 6
    only_reads(ex)

    with pytest.raises(FetchError, match="at least 2 are needed"):
        live_funding("binance_usdm", "BTCUSDT", since_days=0.2, exchange=ex, now=now)
    with pytest.raises(ConfigError, match="since_days"):
        live_funding("binance_usdm", "BTCUSDT", since_days=0, exchange=ex, now=now)


# ---------------------------------------------------------------------------------------------
# 4. positions


def binance_account(ex: FakeExchange) -> None:
    ex.positions = [
        {  # positionRisk v3: no leverage, cross: notional / initial margin gives it
            "symbol": "BTC/USDT:USDT",
            "side": "long",
            "contracts": 0.5,
            "contractSize": 1.0,
            "entryPrice": 60_000.0,
            "markPrice": 61_000.0,
            "notional": 30_500.0,
            "leverage": None,
            "initialMargin": 3_050.0,
            "marginMode": "cross",
            "collateral": 8_000.0,
            "unrealizedPnl": 500.0,
            "info": {"symbol": "BTCUSDT"},
        },
        {  # isolated: the margin held is collateral less unrealized P&L
            "symbol": "ETH/USDT:USDT",
            "side": "short",
            "contracts": 4.0,
            "contractSize": 1.0,
            "entryPrice": 3_000.0,
            "markPrice": 2_900.0,
            "notional": 11_600.0,
            "leverage": 5.0,
            "marginMode": "isolated",
            "positionMargin": None,
            "collateral": 2_800.0,
            "unrealizedPnl": 400.0,
            "info": {"symbol": "ETHUSDT"},
        },
        {"symbol": "SOL/USDT:USDT", "side": None, "contracts": 0.0, "entryPrice": 0.0, "marginMode": "cross"},
    ]
    ex.balance = {
        "info": {
            "assets": [
                {"asset": "USDC", "walletBalance": "5.0", "crossWalletBalance": "5.0"},
                {"asset": "USDT", "walletBalance": "10500.0", "crossWalletBalance": "8100.0"},
            ]
        },
        "USDT": {"free": 6000.0, "used": 5450.0, "total": 11400.0},  # ccxt: margin balance, P&L in
        "total": {"USDT": 11400.0, "USDC": 5.0},
    }


def test_positions_parsed_keys_from_env_and_nothing_written(fake_ccxt, monkeypatch):
    monkeypatch.delenv("LEVOPT_BINANCE_USDM_API_KEY", raising=False)
    monkeypatch.setattr(FakeExchange, "__init__", _with_account(FakeExchange.__init__, binance_account))
    positions, wallet = account_positions("binance_usdm", env=dict(KEYS))

    (ex,) = fake_ccxt
    assert (ex.apiKey, ex.secret) == ("key-123", "secret-456")
    assert ex.options == {"enableRateLimit": True}
    assert positions == [
        {
            "symbol": "BTCUSDT",
            "side": "long",
            "quantity": 0.5,
            "entry_price": 60_000.0,
            "mark_price": 61_000.0,
            "leverage": pytest.approx(10.0),
            "margin_mode": "cross",
            "isolated_margin": None,
        },
        {
            "symbol": "ETHUSDT",
            "side": "short",
            "quantity": 4.0,
            "entry_price": 3_000.0,
            "mark_price": 2_900.0,
            "leverage": 5.0,
            "margin_mode": "isolated",
            "isolated_margin": pytest.approx(2_400.0),
        },
    ]
    assert wallet == 8_100.0  # Binance's cross wallet balance, not ccxt's P&L-inclusive total
    only_reads(ex)

    eth, wallet = account_positions("binance_usdm", "ETHUSDT", env=dict(KEYS))
    assert [p["symbol"] for p in eth] == ["ETHUSDT"] and wallet == 8_100.0
    assert fake_ccxt[1].calls[0] == ("fetch_positions", ["ETH/USDT:USDT"])
    only_reads(fake_ccxt[1])

    # The key is read from the mapping passed in, never from os.environ; each missing one is named.
    monkeypatch.setenv("LEVOPT_BINANCE_USDM_API_KEY", "from-os-environ")
    monkeypatch.setenv("LEVOPT_BINANCE_USDM_API_SECRET", "from-os-environ")
    with pytest.raises(ConfigError, match="LEVOPT_BINANCE_USDM_API_KEY: not set") as info:
        account_positions("binance_usdm", env={})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="LEVOPT_BINANCE_USDM_API_SECRET: not set"):
        account_positions("binance_usdm", env={"LEVOPT_BINANCE_USDM_API_KEY": "key-123"})
    assert len(fake_ccxt) == 2  # no exchange made without credentials
    assert credential_variables("bybit_linear") == (
        "LEVOPT_BYBIT_LINEAR_API_KEY",
        "LEVOPT_BYBIT_LINEAR_API_SECRET",
    )


def _with_account(init, fill):
    def __init__(self, options=None):
        init(self, options)
        fill(self)

    return __init__


def test_bybit_and_hyperliquid_positions_and_wallets(fake_ccxt):
    bybit = FakeExchange()
    bybit.id = "bybit"
    bybit.positions = [
        {  # Bybit's structure leaves marginMode None: fetch_margin_mode says it
            "symbol": "BTC/USDT:USDT",
            "side": "short",
            "contracts": 20.0,
            "contractSize": 0.01,  # contracts of 0.01 BTC: 0.2 BTC
            "entryPrice": 65_000.0,
            "markPrice": 64_000.0,
            "notional": 12_800.0,
            "leverage": 20.0,
            "marginMode": None,
            "collateral": 900.0,
            "unrealizedPnl": 200.0,
            "info": {},
        }
    ]
    bybit.balance = {"info": {}, "USDT": {"total": 2_500.0}, "total": {"USDT": 2_500.0}}
    positions, wallet = account_positions("bybit_linear", "BTCUSDT", exchange=bybit)
    assert positions[0]["margin_mode"] == "cross" and positions[0]["isolated_margin"] is None
    assert positions[0]["symbol"] == "BTCUSDT" and positions[0]["side"] == "short"
    assert positions[0]["quantity"] == pytest.approx(0.2)
    assert wallet == 2_500.0
    assert ("fetch_margin_mode", "BTC/USDT:USDT") in bybit.calls
    only_reads(bybit)
    bybit.margin_mode = "portfolio"
    with pytest.raises(FetchError, match="margin mode 'portfolio'"):
        account_positions("bybit_linear", exchange=bybit)

    hl = FakeExchange()
    hl.id = "hyperliquid"
    hl.positions = [
        {
            "symbol": "BTC/USDC:USDC",
            "side": "long",
            "contracts": 0.3,
            "contractSize": None,  # Hyperliquid serves sizes in coins
            "entryPrice": 60_000.0,
            "markPrice": 62_000.0,
            "leverage": 10.0,
            "marginMode": "isolated",
            "positionMargin": 1_800.0,
            "collateral": 2_400.0,
            "unrealizedPnl": 600.0,
        }
    ]
    hl.balance = {
        "info": {
            "crossMarginSummary": {"accountValue": "5150.0"},
            "assetPositions": [
                {"position": {"coin": "BTC", "unrealizedPnl": "600.0", "leverage": {"type": "isolated"}}},
                {"position": {"coin": "ETH", "unrealizedPnl": "150.0", "leverage": {"type": "cross"}}},
            ],
        },
        "USDC": {"total": 7_550.0},
        "total": {"USDC": 7_550.0},
    }
    positions, wallet = account_positions("hyperliquid", exchange=hl)
    assert positions == [
        {
            "symbol": "BTC",
            "side": "long",
            "quantity": 0.3,
            "entry_price": 60_000.0,
            "mark_price": 62_000.0,
            "leverage": 10.0,
            "margin_mode": "isolated",
            "isolated_margin": 1_800.0,
        }
    ]
    assert wallet == 5_000.0  # cross account value less the cross positions' unrealized P&L
    only_reads(hl)
    assert credential_variables("hyperliquid")[0] == "LEVOPT_HYPERLIQUID_API_KEY"


# ---------------------------------------------------------------------------------------------
# 5. errors


def test_api_errors_are_one_line(fake_ccxt, monkeypatch):
    ex = FakeExchange()
    ex.error = FakeNetworkError(
        "binanceusdm GET https://fapi.binance.com/fapi/v1/klines 503\nService Unavailable"
    )
    with pytest.raises(FetchError) as info:
        live_candles("binance_usdm", "BTCUSDT", exchange=ex, now=T0)
    text = str(info.value)
    assert "\n" not in text and "FakeNetworkError" in text and "503" in text and "fetch_ohlcv" in text

    with pytest.raises(FetchError) as info:
        live_funding("binance_usdm", "BTCUSDT", exchange=ex, now=T0)
    assert "\n" not in str(info.value) and "fetch_funding_rate_history" in str(info.value)

    monkeypatch.setattr(FakeExchange, "__init__", _with_account(FakeExchange.__init__, binance_account))
    ex = FakeExchange()
    ex.error = FakeAuthenticationError(
        'binanceusdm {"code":-2015,"msg":"Invalid API-key, IP, or permissions"}\nmore'
    )
    with pytest.raises(FetchError) as info:
        account_positions("binance_usdm", exchange=ex)
    text = str(info.value)
    assert "\n" not in text and "FakeAuthenticationError" in text and "-2015" in text
    assert "LEVOPT_BINANCE_USDM_API_KEY" in text and "LEVOPT_BINANCE_USDM_API_SECRET" in text
    assert isinstance(info.value, LevoptError)
    assert ex.writes == []


def test_missing_ccxt_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ccxt", None)  # import ccxt raises ImportError
    with pytest.raises(MissingDependencyError) as info:
        live_candles("binance_usdm", "BTCUSDT")
    assert "\n" not in str(info.value) and "pip install 'levopt[fetch]'" in str(info.value)
    with pytest.raises(MissingDependencyError):
        account_positions("binance_usdm", env=dict(KEYS))
