"""Price and funding loaders on small fixture files in each layout, their error messages, and the
ccxt fetcher driven by a fake exchange (no network)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FakeNetworkError, install_fake_ccxt
from scipy import stats

from levopt.data import (
    annualized_funding,
    detect_gaps,
    infer_frequency,
    load_funding,
    load_prices,
    log_returns,
    parse_frequency,
)
from levopt.data.fetch import (
    FetchError,
    MissingDependencyError,
    fetch_ohlcv_history,
    perpetual_symbol,
    update_funding_cache,
    update_ohlcv_cache,
)
from levopt.errors import DataError, LevoptError

FIXTURES = Path(__file__).parent / "fixtures"
DAY_MS = 86_400_000


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# ---------------------------------------------------------------------------------------------
# Layouts


@pytest.mark.parametrize(
    ("name", "rows", "first", "last", "first_close", "columns"),
    [
        ("yahoo_daily.csv", 40, "2021-01-01", "2021-02-09", 30312.64, "open high low close volume"),
        (
            "binance_klines_4h.csv",
            60,
            "2021-03-01 00:00",
            "2021-03-10 20:00",
            30170.63,
            "open high low close volume",
        ),
        ("ccxt_ohlcv_1d.json", 45, "2022-06-01", "2022-07-15", 31894.22, "open high low close volume"),
        ("cdd_hourly.csv", 50, "2022-08-01 00:00", "2022-08-03 01:00", None, "open high low close volume"),
    ],
)
def test_layouts(name, rows, first, last, first_close, columns):
    df = load_prices(FIXTURES / name)
    assert len(df) == rows
    assert df.index[0] == utc(first) and df.index[-1] == utc(last)
    assert str(df.index.tz) == "UTC" and df.index.is_monotonic_increasing and df.index.is_unique
    assert list(df.columns) == columns.split()
    assert df.dtypes.eq(np.float64).all()
    if first_close is not None:
        assert df["close"].iloc[0] == first_close


def test_cryptodatadownload_is_reversed_to_oldest_first():
    df = load_prices(FIXTURES / "cdd_hourly.csv")
    lines = (FIXTURES / "cdd_hourly.csv").read_text().splitlines()
    newest = lines[2].split(",")  # line 1 banner, line 2 header
    assert df.index[-1] == pd.Timestamp(int(newest[0]), unit="s", tz="UTC")
    assert df["close"].iloc[-1] == float(newest[6])
    assert df["volume"].iloc[-1] == float(newest[7])  # the first volume column, "Volume BTC"
    assert infer_frequency(df.index) == pd.Timedelta(hours=1)


def test_price_column_override_and_case(tmp_path):
    text = (FIXTURES / "yahoo_daily.csv").read_text().replace("Adj Close", "ADJ CLOSE")
    lines = text.splitlines()
    # make Adj Close differ from Close on one row, then ask for it by name in another case
    fields = lines[5].split(",")
    fields[5] = "12345.0"
    lines[5] = ",".join(fields)
    path = tmp_path / "prices.csv"
    path.write_text("\n".join(lines) + "\n")
    assert load_prices(path)["close"].iloc[4] != 12345.0  # line 6 is the 5th record
    assert load_prices(path, price_col="adj close")["close"].iloc[4] == 12345.0


def test_binance_with_header_and_ccxt_csv_match_headerless(tmp_path):
    base = load_prices(FIXTURES / "binance_klines_4h.csv")
    header = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
    with_header = tmp_path / "klines.csv"
    with_header.write_text(header + "\n" + (FIXTURES / "binance_klines_4h.csv").read_text())
    pd.testing.assert_frame_equal(load_prices(with_header), base, check_freq=False)
    records = json.loads((FIXTURES / "ccxt_ohlcv_1d.json").read_text())
    ccxt_csv = tmp_path / "ccxt.csv"
    ccxt_csv.write_text("\n".join(",".join(str(v) for v in r) for r in records) + "\n")
    pd.testing.assert_frame_equal(
        load_prices(ccxt_csv), load_prices(FIXTURES / "ccxt_ohlcv_1d.json"), check_freq=False
    )


@pytest.mark.parametrize("scale", [1, 1_000, 1_000_000])
def test_epoch_units_by_magnitude(tmp_path, scale):
    """Seconds, milliseconds and microseconds since the epoch give the same timestamps."""
    df = load_prices(FIXTURES / "yahoo_daily.csv")
    seconds = df.index.as_unit("ns").asi8 // 1_000_000_000
    path = tmp_path / "unix.csv"
    pd.DataFrame({"unix": seconds * scale, "close": df["close"].to_numpy()}).to_csv(path, index=False)
    out = load_prices(path)
    assert (out.index == df.index).all()


def test_parquet_round_trip(tmp_path):
    df = load_prices(FIXTURES / "yahoo_daily.csv")
    path = tmp_path / "prices.parquet"
    df.to_parquet(path)
    pd.testing.assert_frame_equal(load_prices(path), df, check_freq=False)
    # a timestamp column instead of an index
    df.reset_index().to_parquet(tmp_path / "flat.parquet")
    pd.testing.assert_frame_equal(load_prices(tmp_path / "flat.parquet"), df, check_freq=False)


def test_drop_last_partial():
    full = load_prices(FIXTURES / "yahoo_daily.csv")
    cut = load_prices(FIXTURES / "yahoo_daily.csv", drop_last_partial=True)
    pd.testing.assert_frame_equal(cut, full.iloc[:-1])


# ---------------------------------------------------------------------------------------------
# Bad data: one line naming the file, the row (line number) and the problem


def _edit(tmp_path: Path, edit, name: str = "prices.csv", source: str = "yahoo_daily.csv") -> Path:
    lines = (FIXTURES / source).read_text().splitlines()
    lines = edit(lines)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _set_field(lines: list[str], line_no: int, col: int, value: str) -> list[str]:
    fields = lines[line_no - 1].split(",")
    fields[col] = value
    lines[line_no - 1] = ",".join(fields)
    return lines


def _swap(lines: list[str], a: int, b: int) -> list[str]:
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    return lines


def _duplicate_date(lines: list[str]) -> list[str]:
    date = lines[10].split(",")[0]  # line 11
    return _set_field(lines, 12, 0, date)


BAD_CASES = {
    "unsorted": (
        lambda ls: _swap(ls, 16, 17),
        ["row 17", "2021-01-15", "is not after the previous row (2021-01-16)", "rows must be sorted"],
    ),
    "duplicate": (lambda ls: _duplicate_date(ls), ["row 12", "2021-01-10", "duplicates row 11", "unique"]),
    "zero_price": (lambda ls: _set_field(ls, 8, 4, "0"), ["row 8", "Close 0 is not positive"]),
    "negative_price": (lambda ls: _set_field(ls, 9, 1, "-3.5"), ["row 9", "Open -3.5 is not positive"]),
    "not_a_number": (lambda ls: _set_field(ls, 20, 4, "n/a"), ["row 20", "Close 'n/a' is not a number"]),
    "empty_price": (lambda ls: _set_field(ls, 21, 4, ""), ["row 21", "Close is missing"]),
    "infinite_price": (lambda ls: _set_field(ls, 22, 4, "inf"), ["row 22", "Close is inf", "finite"]),
    "bad_timestamp": (
        lambda ls: _set_field(ls, 5, 0, "2021-13-45"),
        ["row 5", "cannot parse Date '2021-13-45'"],
    ),
    "too_few_rows": (lambda ls: ls[:11], ["rows 2-11", "only 10 price rows", "at least 30"]),
    "missing_column": (
        lambda ls: [",".join(f for j, f in enumerate(line.split(",")) if j not in (4, 5)) for line in ls],
        [
            "row 1 (header)",
            "no close price column",
            "columns are ['Date', 'Open', 'High', 'Low', 'Volume']",
            "price_col",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_data_is_one_readable_error(tmp_path, case):
    edit, expected = BAD_CASES[case]
    path = _edit(tmp_path, edit)
    with pytest.raises(DataError) as info:
        load_prices(path)
    message = str(info.value)
    assert message.startswith("prices.csv ")
    assert "\n" not in message
    for part in expected:
        assert part in message, message


def test_missing_override_column_is_named(tmp_path):
    with pytest.raises(DataError, match=r"yahoo_daily.csv row 1 \(header\): no column 'Mid' \(close price\)"):
        load_prices(FIXTURES / "yahoo_daily.csv", price_col="Mid")


def test_reversed_file_with_one_row_out_of_place_is_an_error(tmp_path):
    """Newest-first files are reversed only when every row is in reverse order."""
    path = _edit(tmp_path, lambda ls: _swap(ls, 10, 11), name="cdd.csv", source="cdd_hourly.csv")
    with pytest.raises(
        DataError, match=r"cdd.csv row 11: timestamp .* is not before the previous row .* newest first"
    ):
        load_prices(path)


def test_missing_file():
    with pytest.raises(DataError, match="file not found"):
        load_prices(FIXTURES / "nope.csv")


# ---------------------------------------------------------------------------------------------
# Gaps, returns, resampling


def test_detect_gaps(tmp_path):
    path = _edit(tmp_path, lambda ls: ls[:10] + ls[13:20] + ls[21:])  # drop lines 11-13 and 21
    df = load_prices(path)
    gaps = detect_gaps(df)
    assert list(gaps["missing"]) == [3, 1]
    assert gaps["before"].iloc[0] == utc("2021-01-09") and gaps["after"].iloc[0] == utc("2021-01-13")
    assert detect_gaps(load_prices(FIXTURES / "yahoo_daily.csv")).empty


def test_log_returns_and_daily_resampling_of_4h_bars():
    df = load_prices(FIXTURES / "binance_klines_4h.csv")  # 10 whole days of 4h bars
    r4 = log_returns(df)
    np.testing.assert_allclose(r4.to_numpy(), np.diff(np.log(df["close"].to_numpy())))
    assert r4.attrs["step"] == pd.Timedelta(hours=4)
    daily = log_returns(df, "1d")
    closes = df["close"].to_numpy().reshape(10, 6)[:, -1]  # the 20:00 bar closes each day
    np.testing.assert_allclose(daily.to_numpy(), np.diff(np.log(closes)))
    assert daily.attrs["step"] == pd.Timedelta(days=1) and len(daily) == 9
    # a last day covered only to 16:00 is a partial bin: dropped
    assert len(log_returns(df.iloc[:-1], "1d")) == 8
    # the sum of 4h returns over whole days equals the daily returns
    np.testing.assert_allclose(r4.iloc[5:].to_numpy().reshape(9, 6).sum(axis=1), daily.to_numpy())


def test_resampling_to_a_finer_frequency_is_an_error():
    df = load_prices(FIXTURES / "yahoo_daily.csv")
    with pytest.raises(DataError, match="cannot resample 1d bars to the finer frequency 4h"):
        log_returns(df, "4h")


@pytest.mark.parametrize(("text", "expected"), [("1d", "1D"), ("4h", "4h"), ("15m", "15min"), ("1w", "7D")])
def test_parse_frequency(text, expected):
    assert parse_frequency(text) == pd.Timedelta(expected)


# ---------------------------------------------------------------------------------------------
# Funding


def test_funding_layouts_agree_and_are_rounded_to_the_minute():
    api = load_funding(FIXTURES / "funding_api.csv")
    split = load_funding(FIXTURES / "funding_split.csv")
    ccxt = load_funding(FIXTURES / "ccxt_funding.json")
    pd.testing.assert_series_equal(api, split)
    pd.testing.assert_series_equal(api, ccxt)
    assert (api.index == pd.date_range("2023-01-01", periods=36, freq="8h", tz="UTC")).all()
    assert annualized_funding(api) == pytest.approx(api.mean() * 1095, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# The shared real data (skipped when ../shared/data is absent)


def test_real_btc_daily(shared_data):
    df = load_prices(shared_data / "btc_usd_daily.csv", drop_last_partial=True)
    assert len(df) == 4090 and df.index[0] == utc("2014-09-18") and detect_gaps(df).empty
    r = log_returns(df).to_numpy()
    # DOMAIN.md: annualized volatility 68%, excess kurtosis 11.8
    assert np.std(r, ddof=1) * np.sqrt(365) == pytest.approx(0.678, abs=0.001)
    assert stats.kurtosis(r) == pytest.approx(11.8, abs=0.1)


def test_real_hourly_and_4h(shared_data):
    hourly = load_prices(shared_data / "btc_usd_hourly.csv")  # banner line, newest first
    assert len(hourly) == 37387 and hourly.index[0] == utc("2018-05-15 06:00") and detect_gaps(hourly).empty
    four = load_prices(shared_data / "btcusdt_4h.csv")
    gaps = detect_gaps(four)
    assert len(gaps) == 8  # Binance outages listed in the data README
    assert (gaps["before"].iloc[0], gaps["after"].iloc[0]) == (
        utc("2018-02-08 00:00"),
        utc("2018-02-09 08:00"),
    )


def test_real_funding(shared_data):
    s = load_funding(shared_data / "btcusdt_funding_8h.csv")
    assert len(s) == 6579 and s.index.minute.max() == 0 and s.index.second.max() == 0
    assert s.mean() == pytest.approx(0.000118, abs=5e-7)
    assert annualized_funding(s) == pytest.approx(0.1296, abs=0.0005)  # README: about 12.96% a year


# ---------------------------------------------------------------------------------------------
# Fetching through a fake ccxt


class FakeExchange:
    """Serves the recorded responses in tests/fixtures like ccxt's binance: pages of ``limit``."""

    id = "binance"
    has = {"fetchOHLCV": True, "fetchFundingRateHistory": True}
    ohlcv = json.loads((FIXTURES / "ccxt_ohlcv_1d.json").read_text())
    funding = json.loads((FIXTURES / "ccxt_funding.json").read_text())

    def __init__(self, options=None):
        self.options = options
        self.calls: list[tuple] = []

    def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
        self.calls.append(("ohlcv", symbol, timeframe, since, limit))
        rows = [r for r in self.ohlcv if since is None or r[0] >= since]
        return [list(r) for r in rows[: limit or 500]]

    def fetch_funding_rate_history(self, symbol=None, since=None, limit=None, params=None):
        self.calls.append(("funding", symbol, since, limit))
        rows = [r for r in self.funding if since is None or r["timestamp"] >= since]
        return [dict(r) for r in rows[: limit or 100]]


@pytest.fixture
def fake_ccxt(monkeypatch):
    return install_fake_ccxt(monkeypatch, {"binance": FakeExchange})


def test_fetch_paginates_and_leaves_out_the_open_bar():
    ex = FakeExchange()
    first = FakeExchange.ohlcv[0][0]
    now = FakeExchange.ohlcv[-1][0] + DAY_MS // 2  # the last bar is still open
    df = fetch_ohlcv_history(ex, "BTC/USDT", "1d", first, limit=10, now_ms=now)
    assert len(df) == 44
    # pages of 10 from the first bar, then one request after bar 44 that returns only the open bar
    assert [c[3] for c in ex.calls] == [first + k * 10 * DAY_MS for k in range(5)] + [first + 44 * DAY_MS]
    np.testing.assert_array_equal(df["close"].to_numpy(), [r[4] for r in FakeExchange.ohlcv[:44]])


def test_cache_resumes_after_its_last_bar(tmp_path):
    out = tmp_path / "btc.parquet"
    first = FakeExchange.ohlcv[0][0]
    ex = FakeExchange()
    df, new = update_ohlcv_cache(ex, out, "BTC/USDT", "1d", first, until=first + 20 * DAY_MS, limit=7)
    assert len(df) == new == 20
    ex2 = FakeExchange()
    df2, new2 = update_ohlcv_cache(ex2, out, "BTC/USDT", "1d", first, limit=7)
    assert new2 == 25 and len(df2) == 45
    assert ex2.calls[0][3] == first + 20 * DAY_MS  # resumed, not refetched
    pd.testing.assert_frame_equal(
        load_prices(out), load_prices(FIXTURES / "ccxt_ohlcv_1d.json"), check_freq=False
    )
    with pytest.raises(DataError, match="holds timeframe '1d', not '4h'"):
        update_ohlcv_cache(FakeExchange(), out, "BTC/USDT", "4h", first)


def test_funding_cache(tmp_path):
    out = tmp_path / "funding.parquet"
    rates, new = update_funding_cache(FakeExchange(), out, "BTC/USDT:USDT", "2023-01-01", limit=10)
    assert new == 36
    pd.testing.assert_series_equal(load_funding(out), load_funding(FIXTURES / "funding_api.csv"))
    ex = FakeExchange()
    _, again = update_funding_cache(ex, out, "BTC/USDT:USDT", "2023-01-01")
    assert again == 0 and len(ex.calls) == 1
    assert perpetual_symbol("BTC/USDT") == "BTC/USDT:USDT"


def test_exchange_without_funding_history(tmp_path):
    ex = FakeExchange()
    ex.has = {"fetchOHLCV": True}
    with pytest.raises(FetchError, match="no funding-rate history"):
        update_funding_cache(ex, tmp_path / "f.parquet", "BTC/USDT:USDT", "2023-01-01")


def test_ccxt_errors_become_one_line(fake_ccxt):
    ex = FakeExchange()

    def fail(*args, **kwargs):
        raise FakeNetworkError("binance GET https://api.binance.com/api/v3/klines 503\nService Unavailable")

    ex.fetch_ohlcv = fail
    with pytest.raises(FetchError) as info:
        fetch_ohlcv_history(ex, "BTC/USDT", "1d", "2022-06-01")
    assert "\n" not in str(info.value) and "FakeNetworkError" in str(info.value) and "503" in str(info.value)


def test_missing_ccxt_is_one_line(monkeypatch):
    from levopt.data.fetch import make_exchange

    monkeypatch.setitem(sys.modules, "ccxt", None)  # import ccxt raises ImportError
    with pytest.raises(MissingDependencyError) as info:
        make_exchange("binance")
    assert isinstance(info.value, LevoptError)
    assert "\n" not in str(info.value) and "pip install 'levopt[fetch]'" in str(info.value)


def test_fetch_command(tmp_path, fake_ccxt):
    from typer.testing import CliRunner

    from levopt.data.cli import data_app

    out = tmp_path / "btc.parquet"
    args = [
        "fetch",
        "--symbol",
        "BTC/USDT",
        "--since",
        "2022-06-01",
        "--out",
        str(out),
        "--funding",
        "--limit",
        "20",
    ]
    result = CliRunner().invoke(data_app, args)
    assert result.exit_code == 0, result.output
    assert len(load_prices(out)) == 45
    assert len(load_funding(tmp_path / "btc_funding.parquet")) == 36
    assert fake_ccxt[0].options == {"enableRateLimit": True}
    assert {c[1] for c in fake_ccxt[0].calls if c[0] == "funding"} == {"BTC/USDT:USDT"}

    info = CliRunner().invoke(data_app, ["info", str(FIXTURES / "binance_klines_4h.csv")])
    assert info.exit_code == 0 and "60 rows, 4h bars" in info.output and "gaps: 0" in info.output
