"""Open-interest and liquidation histories: the loaders on small files in each layout (values
against hand computation), their error messages, and the ccxt fetchers driven by a fake exchange
(no network), through the library and ``levopt data fetch``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FakeNetworkError, install_fake_ccxt

from levopt.data import (
    fetch_liquidation_history,
    fetch_open_interest_history,
    load_liquidations,
    load_open_interest,
    update_liquidation_cache,
    update_open_interest_cache,
)
from levopt.data.fetch import FetchError, update_ohlcv_cache
from levopt.errors import DataError

HOUR_MS = 3_600_000
T0 = 1_672_531_200_000  # 2023-01-01 00:00 UTC


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def write(tmp_path: Path, name: str, content: str | list | dict) -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


# ---------------------------------------------------------------------------------------------
# Open interest: layouts


def test_ccxt_open_interest_records(tmp_path):
    records = [
        {
            "symbol": "BTC/USDT:USDT",
            "openInterestAmount": 80_000.0,
            "openInterestValue": 1_320_000_000.0,
            "timestamp": T0,
            "datetime": "2023-01-01T00:00:00.000Z",
            "info": {"symbol": "BTCUSDT"},
        },
        {
            "symbol": "BTC/USDT:USDT",
            "openInterestAmount": None,
            "openInterestValue": 1.5e9,
            "timestamp": T0 + HOUR_MS,
        },
        {
            "symbol": "BTC/USDT:USDT",
            "openInterestAmount": 0.0,
            "openInterestValue": 0.0,
            "timestamp": T0 + 2 * HOUR_MS,
        },
    ]
    oi = load_open_interest(write(tmp_path, "oi.json", records))
    assert list(oi.columns) == ["open_interest", "open_interest_amount", "price"]
    assert oi.index.name == "timestamp" and str(oi.index.tz) == "UTC"
    assert list(oi.index) == [utc("2023-01-01 00:00"), utc("2023-01-01 01:00"), utc("2023-01-01 02:00")]
    np.testing.assert_array_equal(oi["open_interest"], [1.32e9, 1.5e9, 0.0])
    np.testing.assert_array_equal(oi["open_interest_amount"], [80_000.0, np.nan, 0.0])
    # price = value / amount where the amount is positive
    np.testing.assert_array_equal(oi["price"], [16_500.0, np.nan, np.nan])
    assert oi.attrs["source"] == "oi.json"


def test_binance_metrics_file(tmp_path):
    text = (
        "create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
        "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n"
        "2023-01-21 00:05:00,BTCUSDT,106000.5,2400000000.0,1.2,1.1,1.3,0.9\n"
        "2023-01-21 00:10:00,BTCUSDT,106100.0,2403000000.0,1.2,1.1,1.3,0.9\n"
    )
    oi = load_open_interest(write(tmp_path, "BTCUSDT-metrics-2023-01-21.csv", text))
    assert list(oi.index) == [utc("2023-01-21 00:05"), utc("2023-01-21 00:10")]
    np.testing.assert_array_equal(oi["open_interest"], [2.4e9, 2.403e9])
    np.testing.assert_array_equal(oi["open_interest_amount"], [106_000.5, 106_100.0])
    np.testing.assert_allclose(oi["price"], [2.4e9 / 106_000.5, 2.403e9 / 106_100.0], rtol=1e-15)


def test_binance_open_interest_hist(tmp_path):
    # the REST answer, numbers as strings
    rows = [
        {"symbol": "BTCUSDT", "sumOpenInterest": "20.5", "sumOpenInterestValue": "410000", "timestamp": T0},
        {
            "symbol": "BTCUSDT",
            "sumOpenInterest": "21",
            "sumOpenInterestValue": "441000",
            "timestamp": T0 + 300_000,
        },
    ]
    oi = load_open_interest(write(tmp_path, "hist.json", rows))
    np.testing.assert_array_equal(oi["open_interest"], [410_000.0, 441_000.0])
    np.testing.assert_array_equal(oi["price"], [20_000.0, 21_000.0])
    assert oi.index[1] == utc("2023-01-01 00:05")


def test_generic_amount_times_price_and_newest_first(tmp_path):
    text = "Timestamp,Open_Interest_Amount,Close\n2023-01-02,10,30000\n2023-01-01,12,25000\n"
    oi = load_open_interest(write(tmp_path, "oi.csv", text))
    assert list(oi.index) == [utc("2023-01-01"), utc("2023-01-02")]  # newest-first file reversed
    np.testing.assert_array_equal(oi["open_interest"], [12 * 25_000.0, 10 * 30_000.0])
    np.testing.assert_array_equal(oi["price"], [25_000.0, 30_000.0])


def test_generic_value_only_and_parquet(tmp_path):
    frame = pd.DataFrame(
        {"open_interest": [5e8, 6e8, 7e8]},
        index=pd.DatetimeIndex(
            pd.to_datetime([T0, T0 + HOUR_MS, T0 + 2 * HOUR_MS], unit="ms", utc=True), name="timestamp"
        ),
    )
    frame.to_parquet(tmp_path / "oi.parquet")
    oi = load_open_interest(tmp_path / "oi.parquet")
    np.testing.assert_array_equal(oi["open_interest"], [5e8, 6e8, 7e8])
    assert oi["open_interest_amount"].isna().all() and oi["price"].isna().all()
    # the same as CSV read through fmt
    csv = write(tmp_path, "oi.txt", "ts,open_interest\n1672531200,1\n1672534800,2\n")
    assert list(load_open_interest(csv, fmt="csv")["open_interest"]) == [1.0, 2.0]


# ---------------------------------------------------------------------------------------------
# Open interest: bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "timestamp,open_interest\n2023-01-01,100\n2023-01-02,-5\n",
            "oi.csv row 3: open_interest -5 is negative; allowed: a finite number >= 0",
        ),
        ("timestamp,open_interest\n2023-01-01,100\n2023-01-02,inf\n", "oi.csv row 3: open_interest is inf"),
        (
            "timestamp,open_interest\n2023-01-01,NaN\n2023-01-02,1\n",
            "oi.csv row 2: no open-interest value (open_interest empty); allowed: a value in the settlement "
            "currency (open_interest, openInterestValue",
        ),
        (
            "timestamp,open_interest\n2023-01-01,1\n2023-01-02,abc\n",
            "oi.csv row 3: open_interest 'abc' is not a number",
        ),
        (
            "timestamp,open_interest_amount\n2023-01-01,1\n2023-01-02,2\n",
            "oi.csv row 1 (header): only 'open_interest_amount', in base units; the value in the "
            "settlement currency is needed; allowed: a value in the settlement currency (open_interest,",
        ),
        ("timestamp,volume\n2023-01-01,1\n2023-01-02,2\n", "oi.csv row 1 (header): no open-interest column"),
        ("timestamp,open_interest\n2023-01-01,1\n", "oi.csv: 1 open-interest row, at least 2 are needed"),
        (
            "timestamp,open_interest\n2023-01-01,1\n2023-01-01,2\n",
            "oi.csv row 3: timestamp 2023-01-01 duplicates row 2",
        ),
        (
            "timestamp,open_interest_amount,price\n2023-01-01,1,10\n2023-01-02,2,\n",
            "oi.csv row 3: no open-interest value (price empty); allowed:",
        ),
        ("when,open_interest\n2023-01-01,1\n2023-01-02,2\n", "oi.csv row 1 (header): no timestamp column"),
    ],
)
def test_open_interest_errors(tmp_path, text, message):
    with pytest.raises(DataError) as info:
        load_open_interest(write(tmp_path, "oi.csv", text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_open_interest_error_in_json_names_the_record(tmp_path):
    rows = [
        {"timestamp": T0, "openInterestAmount": 1, "openInterestValue": 2},
        {"timestamp": T0 + 1, "openInterestAmount": None, "openInterestValue": None},
    ]
    with pytest.raises(DataError, match=r"^oi.json row 2: no open-interest value \(openInterestValue and "):
        load_open_interest(write(tmp_path, "oi.json", rows))
    rows[1]["openInterestAmount"] = 3  # an amount, but nothing to value it at
    with pytest.raises(DataError, match=r"^oi.json row 2: .*\(openInterestValue empty, no price column\)"):
        load_open_interest(write(tmp_path, "oi.json", rows))


# ---------------------------------------------------------------------------------------------
# Liquidations: layouts


def test_ccxt_liquidation_records(tmp_path):
    records = [
        {"timestamp": T0, "side": "long", "quoteValue": 5000.0, "baseValue": 0.25, "price": 20_000.0},
        {"timestamp": T0 + 10, "side": "short", "quoteValue": None, "baseValue": 0.5, "price": 21_000.0},
        {
            "timestamp": T0 + 10,
            "side": "SHORT",
            "quoteValue": None,
            "baseValue": None,
            "contracts": 3,
            "contractSize": 0.001,
            "price": 20_000.0,
            "info": {"raw": 1},
        },
    ]
    liq = load_liquidations(write(tmp_path, "liq.json", records))
    assert list(liq.columns) == ["long", "short"] and liq.index.name == "timestamp"
    assert list(liq.index) == [pd.Timestamp(T0 + k, unit="ms", tz="UTC") for k in (0, 10, 10)]
    np.testing.assert_allclose(liq["long"], [5000.0, 0.0, 0.0])
    np.testing.assert_allclose(liq["short"], [0.0, 0.5 * 21_000, 3 * 0.001 * 20_000], rtol=1e-15)
    assert liq.attrs["source"] == "liq.json"


def test_binance_force_orders(tmp_path):
    # allForceOrders (CSV): notional = averagePrice × executedQty; SELL closes a long
    text = (
        "symbol,price,origQty,executedQty,averagePrice,status,timeInForce,type,side,time\n"
        "BTCUSDT,19000,0.5,0.4,19100,FILLED,IOC,LIMIT,SELL,1672531200000\n"
        "BTCUSDT,21000,1.0,1.0,20900,FILLED,IOC,LIMIT,BUY,1672531260000\n"
        "BTCUSDT,21000,1.0,0,0,EXPIRED,IOC,LIMIT,BUY,1672531270000\n"
    )
    liq = load_liquidations(write(tmp_path, "force.csv", text))
    assert len(liq) == 2  # the order that filled nothing is no liquidation
    np.testing.assert_array_equal(liq["long"], [19_100 * 0.4, 0.0])
    np.testing.assert_array_equal(liq["short"], [0.0, 20_900 * 1.0])
    # forceOrders (JSON): avgPrice, time and updateTime
    rows = [
        {
            "avgPrice": "100.5",
            "executedQty": "2",
            "origQty": "3",
            "price": "99",
            "side": "SELL",
            "time": T0,
            "updateTime": T0 + 5,
        },
        {
            "avgPrice": "101",
            "executedQty": None,
            "origQty": "3",
            "price": "99",
            "side": "buy",
            "time": T0 + 1,
            "updateTime": T0 + 6,
        },
    ]
    liq = load_liquidations(write(tmp_path, "force.json", rows))
    assert list(liq.index.asi8 // 1_000_000) == [T0, T0 + 1]  # time, not updateTime
    np.testing.assert_array_equal(liq["long"], [201.0, 0.0])
    np.testing.assert_array_equal(liq["short"], [0.0, 303.0])  # origQty when executedQty is empty


def test_bybit_liquidation_stream(tmp_path):
    # Bybit: Buy = a long position was liquidated (the opposite of Binance's order side)
    message = {
        "topic": "liquidation.BTCUSDT",
        "type": "snapshot",
        "ts": T0 + 99,
        "data": [
            {"updatedTime": T0 + 50, "symbol": "BTCUSDT", "side": "Sell", "size": "0.2", "price": "20100"},
            {"updatedTime": T0, "symbol": "BTCUSDT", "side": "Buy", "size": "0.5", "price": "20000"},
        ],
    }
    liq = load_liquidations(write(tmp_path, "bybit.json", message))
    assert list(liq.index.asi8 // 1_000_000) == [T0, T0 + 50]  # sorted
    np.testing.assert_array_equal(liq["long"], [10_000.0, 0.0])
    np.testing.assert_array_equal(liq["short"], [0.0, 0.2 * 20_100])
    # allLiquidation: T, s (symbol), S (side), v (size), p (price)
    text = "T,s,S,v,p\n1672531200000,BTCUSDT,Buy,2,100\n1672531200000,BTCUSDT,Sell,1,101\n"
    liq = load_liquidations(write(tmp_path, "all.csv", text))
    assert liq.index[0] == liq.index[1]  # events may share a timestamp
    np.testing.assert_array_equal(liq["long"], [200.0, 0.0])
    np.testing.assert_array_equal(liq["short"], [0.0, 101.0])


@pytest.mark.parametrize(
    ("long", "short"),
    [
        ("long_liquidations", "short_liquidations"),
        ("longLiquidationUsd", "shortLiquidationUsd"),
        ("Long", "Short"),
        ("long_usd", "short_usd"),
    ],
)
def test_aggregated_liquidations(tmp_path, long, short):
    text = f"date,{long},{short}\n2023-01-02,5,0\n2023-01-01,1.5,2.5\n2023-01-03,0,0\n"
    liq = load_liquidations(write(tmp_path, "agg.csv", text))
    assert list(liq.index) == [utc("2023-01-01"), utc("2023-01-02"), utc("2023-01-03")]
    np.testing.assert_array_equal(liq["long"], [1.5, 5.0, 0.0])
    np.testing.assert_array_equal(liq["short"], [2.5, 0.0, 0.0])


def test_aggregated_parquet(tmp_path):
    index = pd.DatetimeIndex(pd.to_datetime([T0, T0, T0 + 1], unit="ms", utc=True), name="timestamp")
    pd.DataFrame({"long": [1.0, 0.0, 3.0], "short": [0.0, 2.0, 0.0]}, index=index).to_parquet(
        tmp_path / "l.parquet"
    )
    liq = load_liquidations(tmp_path / "l.parquet")
    assert list(liq["long"]) == [1.0, 0.0, 3.0] and list(liq["short"]) == [0.0, 2.0, 0.0]


# ---------------------------------------------------------------------------------------------
# Liquidations: bad input


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "l.csv",
            "timestamp,side,quoteValue\n1672531200000,long,5\n1672531200001,both,5\n",
            "l.csv row 3: side 'both' is not a side; allowed: long, short, buy, sell (any case; "
            "SELL = a long liquidated, as a Binance order side)",
        ),
        (
            "l.csv",
            "updatedTime,side,size,price\n1672531200000,Buy,1,5\n1672531200001,hold,1,5\n",
            "l.csv row 3: side 'hold' is not a side; allowed: long, short, buy, sell (any case; "
            "Buy = a long liquidated, as in Bybit's liquidation stream)",
        ),
        (
            "l.csv",
            "time,side,executedQty,avgPrice\n1672531200000,SELL,-1,5\n",
            "l.csv row 2: executedQty -1 is negative; allowed: a finite number >= 0",
        ),
        (
            "l.csv",
            "time,side,executedQty,avgPrice\n1672531200000,SELL,1,inf\n",
            "l.csv row 2: avgPrice is inf; allowed: a finite number >= 0",
        ),
        (
            "l.csv",
            "time,side,executedQty,avgPrice\n1672531200000,SELL,1,5\n1672531200001,SELL,1,\n",
            "l.csv row 3: no liquidated notional (executedQty / avgPrice missing)",
        ),
        (
            "l.csv",
            "time,side,qty_usd\n1672531200000,SELL,1\n",
            "l.csv row 1 (header): no liquidated notional columns; allowed: quoteValue, or a price",
        ),
        (
            "l.csv",
            "time,long_usd,short_usd\n2023-01-01,1,nan\n",
            "l.csv row 2: short_usd is missing; allowed: a finite number >= 0",
        ),
        (
            "l.csv",
            "time,long_usd,short_usd\n2023-01-01,1,-inf\n",
            "l.csv row 2: short_usd is -inf; allowed: a finite number >= 0",
        ),
        (
            "l.csv",
            "time,long_usd,total\n2023-01-01,1,2\n",
            "column 'long_usd' without its partner 'short_usd'",
        ),
        ("l.csv", "time,amount\n2023-01-01,1\n", "neither a side column (side) for liquidation events nor"),
        ("l.csv", "time,long,short\n", "l.csv: no liquidations (no rows); at least 1 is needed"),
        (
            "l.json",
            [{"timestamp": T0, "side": None, "quoteValue": 1}],
            "l.json row 1: side None is not a side",
        ),
    ],
)
def test_liquidation_errors(tmp_path, name, text, message):
    with pytest.raises(DataError) as info:
        load_liquidations(write(tmp_path, name, text))
    assert message in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Fetching through a fake ccxt


def _oi_records(n: int, *, value: bool = True) -> list[dict]:
    return [
        {
            "symbol": "BTC/USDT:USDT",
            "openInterestAmount": 1000.0 + k,
            "openInterestValue": (1000.0 + k) * (20_000 + 10 * k) if value else None,
            "timestamp": T0 + k * HOUR_MS,
        }
        for k in range(n)
    ]


# events with three at one millisecond, spread over several pages
LIQUIDATIONS = [
    {"timestamp": T0 + t, "side": side, "quoteValue": q, "price": 20_000.0}
    for t, side, q in [
        (0, "long", 100.0),
        (5, "short", 200.0),
        (5, "long", 300.0),
        (5, "sell", 400.0),
        (9, "buy", 500.0),
        (12, "long", 600.0),
        (40, "short", 700.0),
    ]
]


class FakeExchange:
    """A ccxt exchange serving hourly open interest, liquidation events and hourly bars."""

    id = "binance"
    has = {
        "fetchOHLCV": True,
        "fetchFundingRateHistory": True,
        "fetchOpenInterestHistory": True,
        "fetchLiquidations": True,
    }
    open_interest = _oi_records(50)
    liquidations = LIQUIDATIONS
    ohlcv = [
        [T0 + k * HOUR_MS, 20_000.0 + k, 20_100.0 + k, 19_900.0 + k, 20_050.0 + k, 5.0] for k in range(60)
    ]

    def __init__(self, options=None):
        self.options = options
        self.calls: list[tuple] = []

    def fetch_open_interest_history(self, symbol, timeframe="1h", since=None, limit=None, params=None):
        self.calls.append(("open_interest", symbol, timeframe, since, limit))
        rows = [r for r in self.open_interest if since is None or r["timestamp"] >= since]
        return [dict(r) for r in rows[: limit or 30]]

    def fetch_liquidations(self, symbol, since=None, limit=None, params=None):
        self.calls.append(("liquidations", symbol, since, limit))
        rows = [r for r in self.liquidations if since is None or r["timestamp"] >= since]
        return [dict(r) for r in rows[: limit or 100]]

    def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        self.calls.append(("ohlcv", symbol, timeframe, since, limit))
        rows = [r for r in self.ohlcv if since is None or r[0] >= since]
        return [list(r) for r in rows[: limit or 500]]


@pytest.fixture
def fake_ccxt(monkeypatch):
    return install_fake_ccxt(monkeypatch, {"binance": FakeExchange})


def test_open_interest_pages():
    ex = FakeExchange()
    oi = fetch_open_interest_history(ex, "BTC/USDT:USDT", "1h", T0, limit=7)
    assert len(oi) == 50 and list(oi.columns) == ["open_interest", "open_interest_amount"]
    # pages of 7 from the first hour, then one that comes back empty
    assert [c[3] for c in ex.calls] == [T0 + 7 * k * HOUR_MS for k in range(8)] + [T0 + 50 * HOUR_MS]
    assert oi["open_interest"].iloc[3] == 1003.0 * 20_030
    assert oi["open_interest_amount"].iloc[-1] == 1049.0
    assert oi.index[-1] == pd.Timestamp(T0 + 49 * HOUR_MS, unit="ms", tz="UTC")
    until = fetch_open_interest_history(FakeExchange(), "BTC/USDT:USDT", "1h", T0, until=T0 + 10 * HOUR_MS)
    assert len(until) == 10


def test_open_interest_skips_empty_windows_before_the_first_record():
    class Windowed(FakeExchange):
        # answers [since, since + limit periods), as ccxt's Binance asks for
        def fetch_open_interest_history(self, symbol, timeframe="1h", since=None, limit=None, params=None):
            self.calls.append(("open_interest", symbol, timeframe, since, limit))
            return [dict(r) for r in self.open_interest if since <= r["timestamp"] < since + limit * HOUR_MS]

    ex = Windowed()
    oi = fetch_open_interest_history(ex, "BTC/USDT:USDT", "1h", T0 - 25 * HOUR_MS, limit=10)
    assert len(oi) == 50
    assert [c[3] for c in ex.calls][:4] == [
        T0 - 25 * HOUR_MS,
        T0 - 15 * HOUR_MS,
        T0 - 5 * HOUR_MS,
        T0 + 5 * HOUR_MS,
    ]


def test_open_interest_in_base_units_is_valued_at_the_bars():
    ex = FakeExchange()
    ex.open_interest = _oi_records(5, value=False)  # as Bybit's linear perpetuals
    oi = fetch_open_interest_history(ex, "BTC/USDT:USDT", "1h", T0)
    # value = amount × the open of the bar starting at the observation
    np.testing.assert_array_equal(oi["open_interest"], [(1000.0 + k) * (20_000.0 + k) for k in range(5)])
    assert {c[1] for c in ex.calls if c[0] == "ohlcv"} == {"BTC/USDT:USDT"}


def test_open_interest_cache_resumes_and_loads_back(tmp_path):
    out = tmp_path / "oi.parquet"
    ex = FakeExchange()
    oi, new = update_open_interest_cache(ex, out, "BTC/USDT:USDT", "1h", T0, until=T0 + 20 * HOUR_MS, limit=8)
    assert len(oi) == new == 20
    ex2 = FakeExchange()
    oi2, new2 = update_open_interest_cache(ex2, out, "BTC/USDT:USDT", "1h", T0, limit=8)
    assert new2 == 30 and len(oi2) == 50
    assert ex2.calls[0][3] == T0 + 20 * HOUR_MS  # resumed after the cached last row, not refetched
    loaded = load_open_interest(out)
    pd.testing.assert_frame_equal(loaded[["open_interest", "open_interest_amount"]], oi2, check_freq=False)
    np.testing.assert_allclose(loaded["price"], [20_000 + 10 * k for k in range(50)], rtol=1e-12)
    assert loaded.attrs["source"] == "oi.parquet"
    with pytest.raises(DataError, match="holds timeframe '1h', not '4h'"):
        update_open_interest_cache(FakeExchange(), out, "BTC/USDT:USDT", "4h", T0)


def test_liquidations_page_through_a_shared_millisecond():
    for limit in (3, 4, 100):  # a page holds the 3 events of one millisecond
        ex = FakeExchange()
        liq = fetch_liquidation_history(ex, "BTC/USDT:USDT", T0, limit=limit)
        assert len(liq) == len(LIQUIDATIONS), limit  # each event once
        # long: long 100, long 300, sell 400 (order side), long 600; short: 200, buy 500, 700
        assert liq["long"].sum() == 1400.0 and liq["short"].sum() == 1400.0
        assert (liq.index.asi8 // 1_000_000 - T0).tolist() == [0, 5, 5, 5, 9, 12, 40]
    ex = FakeExchange()
    fetch_liquidation_history(ex, "BTC/USDT:USDT", T0, limit=4)
    # each page starts at the millisecond of the last event received
    assert [c[2] - T0 for c in ex.calls] == [0, 5, 9, 40]
    liq = fetch_liquidation_history(FakeExchange(), "BTC/USDT:USDT", T0 + 1, until=T0 + 10)
    assert len(liq) == 4


def test_liquidations_full_page_in_one_millisecond_moves_on():
    ex = FakeExchange()
    ex.liquidations = [dict(LIQUIDATIONS[0], timestamp=T0) for _ in range(3)] + [LIQUIDATIONS[-1]]
    liq = fetch_liquidation_history(ex, "BTC/USDT:USDT", T0, limit=2)
    assert len(liq) == 3  # the third event of T0 is beyond what a page can reach
    assert [c[2] - T0 for c in ex.calls] == [0, 0, 1, 40]


def test_liquidation_cache_resumes_and_loads_back(tmp_path):
    out = tmp_path / "liq.parquet"
    ex = FakeExchange()
    liq, new = update_liquidation_cache(ex, out, "BTC/USDT:USDT", T0, until=T0 + 6, limit=3)
    assert new == 4 and len(liq) == 4
    ex2 = FakeExchange()
    liq2, new2 = update_liquidation_cache(ex2, out, "BTC/USDT:USDT", T0, limit=3)
    assert new2 == 3 and len(liq2) == 7
    assert ex2.calls[0][2] == T0 + 6  # after the millisecond of the last cached event
    pd.testing.assert_frame_equal(
        load_liquidations(out),
        fetch_liquidation_history(FakeExchange(), "BTC/USDT:USDT", T0),
        check_freq=False,
    )
    bars = tmp_path / "bars.parquet"
    update_ohlcv_cache(FakeExchange(), bars, "BTC/USDT:USDT", "1h", T0)
    with pytest.raises(DataError, match="bars.parquet: not a levopt liquidation cache"):
        update_liquidation_cache(FakeExchange(), bars, "BTC/USDT:USDT", T0)


@pytest.mark.parametrize(
    ("feature", "call", "message"),
    [
        (
            "fetchOpenInterestHistory",
            lambda ex, tmp: update_open_interest_cache(ex, tmp / "o.parquet", "BTC/USDT:USDT", "1h", T0),
            "binance has no open-interest history in ccxt (fetchOpenInterestHistory); drop --open-interest",
        ),
        (
            "fetchLiquidations",
            lambda ex, tmp: update_liquidation_cache(ex, tmp / "l.parquet", "BTC/USDT:USDT", T0),
            "binance has no public liquidation history in ccxt (fetchLiquidations), as most exchanges; "
            "drop --liquidations and load a CSV of the venue's liquidations instead",
        ),
    ],
)
def test_exchange_without_the_history(tmp_path, feature, call, message):
    ex = FakeExchange()
    ex.has = {k: v for k, v in FakeExchange.has.items() if k != feature}
    with pytest.raises(FetchError) as info:
        call(ex, tmp_path)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)
    assert ex.calls == [] and not any(tmp_path.iterdir())


@pytest.mark.parametrize("method", ["fetch_open_interest_history", "fetch_liquidations"])
def test_ccxt_errors_become_one_line(fake_ccxt, method):
    ex = FakeExchange()

    def fail(*args, **kwargs):
        raise FakeNetworkError("binance GET https://fapi.binance.com/futures/data 400\n{'code': -1130}")

    setattr(ex, method, fail)
    with pytest.raises(FetchError) as info:
        if method == "fetch_liquidations":
            fetch_liquidation_history(ex, "BTC/USDT:USDT", T0)
        else:
            fetch_open_interest_history(ex, "BTC/USDT:USDT", "1h", T0)
    text = str(info.value)
    assert "\n" not in text and f"binance {method}: FakeNetworkError: binance GET" in text
    if method == "fetch_open_interest_history":
        assert "Binance's 30 days: a later --since may help" in text


# ---------------------------------------------------------------------------------------------
# levopt data fetch


def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from levopt.cli import main

    monkeypatch.setattr("sys.argv", ["levopt", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    return (0 if exc.value.code is None else exc.value.code), captured.out, captured.err


def user_error(monkeypatch, capsys, *args) -> str:
    code, _, err = run_cli(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_fetch_command(monkeypatch, capsys, tmp_path, fake_ccxt):
    out = tmp_path / "btc.parquet"
    base = ["data", "fetch", "--symbol", "BTC/USDT", "--timeframe", "1h", "--out", out]
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        *base,
        "--since",
        "2023-01-01",
        "--open-interest",
        "--liquidations",
        "--limit",
        "20",
    )
    assert code == 0, err
    assert "btc_open_interest.parquet: 50 1h open-interest rows of BTC/USDT:USDT, 50 new" in err
    assert "btc_liquidations.parquet: 7 liquidations of BTC/USDT:USDT (1,400 long, 1,400 short), 7 new" in err
    assert len(load_open_interest(tmp_path / "btc_open_interest.parquet")) == 50
    assert len(load_liquidations(tmp_path / "btc_liquidations.parquet")) == 7
    calls = fake_ccxt[0].calls
    assert {c[1] for c in calls if c[0] in ("open_interest", "liquidations")} == {"BTC/USDT:USDT"}
    assert {c[4] for c in calls if c[0] == "open_interest"} == {20}
    # explicit files and a perpetual symbol of one's own
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        *base,
        "--since",
        "2023-01-01",
        "--open-interest",
        "--open-interest-out",
        tmp_path / "oi.parquet",
        "--liquidations-out",  # given without --liquidations: not fetched
        tmp_path / "unused.parquet",
        "--funding-symbol",
        "BTC/USDT:USDT",
    )
    assert code == 0, err
    assert (tmp_path / "oi.parquet").exists() and not (tmp_path / "unused.parquet").exists()


def test_fetch_command_bad_flags(monkeypatch, capsys, tmp_path, fake_ccxt):
    base = ["data", "fetch", "--symbol", "BTC/USDT", "--out", tmp_path / "btc.parquet"]
    (tmp_path / "d").mkdir()
    line = user_error(monkeypatch, capsys, *base, "--open-interest", "--open-interest-out", tmp_path / "d")
    assert line.startswith("error: --open-interest-out:") and "is a directory" in line
    line = user_error(
        monkeypatch, capsys, *base, "--liquidations", "--liquidations-out", tmp_path / "btc.parquet"
    )
    assert line.startswith("error: --liquidations-out:") and "is also the file of --out" in line
    line = user_error(
        monkeypatch,
        capsys,
        *base,
        "--funding",
        "--open-interest",
        "--open-interest-out",
        tmp_path / "btc_funding.parquet",
    )
    assert "is also the file of the default of --funding-out; allowed: a file of its own" in line
    line = user_error(monkeypatch, capsys, *base, "--liquidations-out")
    assert line.startswith("error:") and "--liquidations-out" in line
    line = user_error(monkeypatch, capsys, *base, "--open-interest", "--timeframe", "3x")
    assert line.startswith("error: --timeframe:")
    assert fake_ccxt == []  # all before any exchange was made


def test_fetch_command_checks_the_exchange_before_any_request(monkeypatch, capsys, tmp_path):
    class NoLiquidations(FakeExchange):
        has = {"fetchOHLCV": True, "fetchOpenInterestHistory": True}

    made = install_fake_ccxt(monkeypatch, {"binance": NoLiquidations})
    out = tmp_path / "btc.parquet"
    line = user_error(
        monkeypatch, capsys, "data", "fetch", "--symbol", "BTC/USDT", "--out", out, "--liquidations"
    )
    assert line.startswith("error: binance has no public liquidation history in ccxt (fetchLiquidations)")
    assert made[0].calls == [] and not out.exists()
