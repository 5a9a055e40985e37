"""``levopt data tiers`` and levopt.venues.fetch: a venue's tiers through ccxt, saved and read back.

A fake ccxt module serves tiers shaped as ccxt's unified "leverage tiers structure" (minNotional,
maxNotional, maintenanceMarginRate, maxLeverage, and the venue's raw ``info``), with the figures of
levopt's shipped tables: Binance's 2021 BTCUSDT brackets with their ``cum`` (the raw bracket of GET
/fapi/v1/leverageBracket) and Bybit's BTCUSDT risk limits with an empty ``mmDeduction`` (GET
/v5/market/risk-limit). No test touches the network.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeAuthenticationError, FakeNetworkError, install_fake_ccxt
from typer.testing import CliRunner

from levopt.cli import app, main
from levopt.data.fetch import FetchError
from levopt.errors import ConfigError
from levopt.venues import (
    BINANCE_USDM,
    BYBIT_LINEAR,
    COLUMNS,
    BracketTable,
    ccxt_symbol,
    fetch_brackets,
    load_brackets,
    tiers_cache_path,
    update_tiers_cache,
    venue_symbol,
    write_brackets,
)

DATA = Path(__file__).resolve().parents[1] / "levopt" / "venues" / "data"


def shipped_rows(name: str) -> list[dict[str, str]]:
    """The numeric rows of a shipped table as the strings in the file (not through load_brackets)."""
    lines = [line for line in (DATA / name).read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def binance_tiers(rows: list[dict[str, str]]) -> list[dict]:
    """ccxt binanceusdm's tiers: the raw bracket (strings, as Binance sends them) kept in ``info``."""
    out = []
    for i, r in enumerate(rows, start=1):
        info = {
            "bracket": str(i),
            "initialLeverage": r["max_leverage"],
            "notionalCap": r["cap"],
            "notionalFloor": r["floor"],
            "maintMarginRatio": r["maintenance_rate"],
        }
        if "maintenance_amount" in r:
            info["cum"] = f"{float(r['maintenance_amount']):.1f}"
        out.append(
            {
                "tier": float(i),
                "symbol": "BTC/USDT:USDT",
                "currency": "USDT",
                "minNotional": float(r["floor"]),
                "maxNotional": float(r["cap"]),
                "maintenanceMarginRate": float(r["maintenance_rate"]),
                "maxLeverage": float(r["max_leverage"]),
                "info": info,
            }
        )
    return out


def bybit_tiers(rows: list[dict[str, str]]) -> list[dict]:
    """ccxt bybit's tiers: minNotional is the previous riskLimitValue; mmDeduction empty."""
    out = []
    for i, r in enumerate(rows, start=1):
        info = {
            "id": i,
            "symbol": "BTCUSDT",
            "riskLimitValue": r["cap"],
            "maintenanceMargin": r["maintenance_rate"],
            "maxLeverage": r["max_leverage"],
            "mmDeduction": "",
        }
        out.append(
            {
                "tier": i,
                "symbol": "BTC/USDT:USDT",
                "currency": "USDT",
                "minNotional": float(r["floor"]),
                "maxNotional": float(r["cap"]),
                "maintenanceMarginRate": float(r["maintenance_rate"]),
                "maxLeverage": float(r["max_leverage"]),
                "info": info,
            }
        )
    return out


class FakeExchange:
    """Counts its calls; serves ``tiers`` through the method its ``has`` declares."""

    id = "fake"
    has: dict = {}
    tiers: list[dict] = []
    error: Exception | None = None

    def __init__(self, options=None):
        self.options = options
        self.calls: list[tuple] = []

    def _serve(self):
        if self.error is not None:
            raise self.error
        return [dict(t) for t in self.tiers]

    def fetch_leverage_tiers(self, symbols=None, params=None):
        self.calls.append(("fetch_leverage_tiers", symbols))
        return {s: self._serve() for s in symbols}

    def fetch_market_leverage_tiers(self, symbol, params=None):
        self.calls.append(("fetch_market_leverage_tiers", symbol))
        return self._serve()


class FakeBinance(FakeExchange):
    id = "binanceusdm"
    has = {"fetchLeverageTiers": True, "fetchMarketLeverageTiers": False}
    tiers = binance_tiers(shipped_rows("binance_usdm_BTCUSDT.csv"))


class FakeBybit(FakeExchange):
    id = "bybit"
    has = {"fetchLeverageTiers": True, "fetchMarketLeverageTiers": True}
    tiers = bybit_tiers(shipped_rows("bybit_linear_BTCUSDT.csv"))


@pytest.fixture
def fake_ccxt(monkeypatch, tmp_path):
    """A fake ``ccxt`` module; returns the exchanges it made. The user cache goes to tmp_path."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "platformdirs", None)  # the XDG rule, whether or not it is installed
    classes = {FakeBinance.id: FakeBinance, FakeBybit.id: FakeBybit}
    return install_fake_ccxt(
        monkeypatch, classes, ["binanceusdm", "bybit", "hyperliquid", "okx"], __version__="0.0-fake"
    )


def columns_equal(a: BracketTable, b: BracketTable) -> None:
    for name in COLUMNS:
        np.testing.assert_array_equal(a.column(name), b.column(name), err_msg=name)


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["levopt", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# fetch_brackets


def test_binance_tiers_with_cum_are_the_shipped_table():
    ex = FakeBinance()
    before = dt.datetime.now(dt.timezone.utc).date().isoformat()
    table = fetch_brackets(ex, "BTCUSDT", venue="binance_usdm")
    after = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert ex.calls == [("fetch_leverage_tiers", ["BTC/USDT:USDT"])]
    columns_equal(table, BINANCE_USDM.table("BTCUSDT"))
    assert table.symbol == "BTCUSDT"
    assert table.source.startswith(
        "ccxt binanceusdm fetch_leverage_tiers, Binance USDⓈ-M GET /fapi/v1/leverageBracket"
    )
    assert table.published in (before, after)  # the UTC date of the download


def test_served_cum_is_used_not_recomputed():
    """A served amount that differs from the chaining by less than levopt's one-cent tolerance is
    kept as served (the chained value would be 1300)."""
    ex = FakeBinance()
    ex.tiers = binance_tiers(shipped_rows("binance_usdm_BTCUSDT.csv"))
    ex.tiers[2]["info"]["cum"] = "1300.004"
    table = fetch_brackets(ex, "BTC/USDT:USDT")
    assert table[2].maintenance_amount == 1300.004


def test_tiers_without_amounts_chain_continuously():
    ex = FakeBybit()
    table = fetch_brackets(ex, "BTCUSDT", venue="bybit_linear")
    assert ex.calls == [("fetch_market_leverage_tiers", "BTC/USDT:USDT")]
    # The recursion written out by hand: A_1 = 0, A_n = floor_n (MMR_n - MMR_{n-1}) + A_{n-1}.
    rows = shipped_rows("bybit_linear_BTCUSDT.csv")
    expected = [0.0]
    for prev, row in zip(rows, rows[1:], strict=False):
        mmr, mmr_prev = float(row["maintenance_rate"]), float(prev["maintenance_rate"])
        expected.append(float(row["floor"]) * (mmr - mmr_prev) + expected[-1])
    np.testing.assert_allclose(table.column("maintenance_amount"), expected, rtol=1e-12, atol=1e-9)
    # ... which are Bybit's published deductions (Bybit "Margin Parameters", the shipped table).
    np.testing.assert_allclose(
        table.column("maintenance_amount"),
        BYBIT_LINEAR.table("BTCUSDT").column("maintenance_amount"),
        atol=1e-6,
    )
    assert table.source.endswith("https://bybit-exchange.github.io/docs/v5/market/risk-limit")


def test_open_last_cap_is_inf_and_mmdeduction_is_read():
    ex = FakeBybit()
    ex.tiers = bybit_tiers(shipped_rows("bybit_linear_BTCUSDT.csv"))[:3]
    ex.tiers[-1]["maxNotional"] = None
    ex.tiers[1]["info"]["mmDeduction"] = "1200"
    ex.tiers[2]["info"]["mmDeduction"] = "3020"
    table = fetch_brackets(ex, "BTCUSDT")
    assert table[-1].cap == math.inf
    assert table.column("maintenance_amount").tolist() == [0.0, 1200.0, 3020.0]


@pytest.mark.parametrize(
    ("row", "key", "value", "words"),
    [
        (2, "cum", "1200.0", ["maintenance_amount", "row 3", "1300.00"]),
        (3, "minNotional", 1_100_000.0, ["floor", "row 4", "previous cap"]),
    ],
)
def test_an_inconsistent_table_is_refused_in_one_line(row, key, value, words):
    ex = FakeBinance()
    ex.tiers = binance_tiers(shipped_rows("binance_usdm_BTCUSDT.csv"))
    if key == "cum":
        ex.tiers[row]["info"][key] = value
    else:
        ex.tiers[row][key] = value
    with pytest.raises(FetchError) as info:
        fetch_brackets(ex, "BTCUSDT")
    message = str(info.value)
    assert "\n" not in message and "BTCUSDT" in message and "nothing saved" in message
    for word in words:
        assert word in message


def test_a_missing_rate_is_derived_only_where_leverage_sets_it():
    # Hyperliquid Docs "Margin tiers": maintenance rate = 1 / (2 x max leverage).
    ex = FakeExchange()
    ex.id, ex.has = "hyperliquid", {"fetchMarketLeverageTiers": True}
    ex.tiers = [
        {
            "minNotional": 0.0,
            "maxNotional": 150e6,
            "maintenanceMarginRate": None,
            "maxLeverage": 40.0,
            "info": {},
        },
        {
            "minNotional": 150e6,
            "maxNotional": None,
            "maintenanceMarginRate": None,
            "maxLeverage": 20.0,
            "info": {},
        },
    ]
    table = fetch_brackets(ex, "BTC")
    assert ex.calls == [("fetch_market_leverage_tiers", "BTC/USDC:USDC")]
    assert table.column("maintenance_rate").tolist() == [1 / 80, 1 / 40]
    assert table.column("maintenance_amount").tolist() == [0.0, 150e6 * (1 / 40 - 1 / 80)]
    ex.id = "bybit"
    with pytest.raises(FetchError, match="tier 1: no maintenanceMarginRate"):
        fetch_brackets(ex, "BTC/USDC:USDC")


def test_exchange_without_tiers_and_ccxt_errors_are_one_line(fake_ccxt):
    ex = FakeExchange()
    ex.id, ex.has = "hyperliquid", {"fetchLeverageTiers": False, "fetchMarketLeverageTiers": False}
    with pytest.raises(FetchError, match="serves no leverage tiers through ccxt"):
        fetch_brackets(ex, "BTC")
    ex = FakeBinance()
    ex.error = FakeAuthenticationError('binanceusdm requires "apiKey" credential\nmore')
    with pytest.raises(FetchError) as info:
        fetch_brackets(ex, "BTCUSDT")
    assert "\n" not in str(info.value) and "signed requests" in str(info.value)
    ex.tiers = []
    ex.error = None
    with pytest.raises(FetchError, match="no tiers for BTC/USDT:USDT"):
        fetch_brackets(ex, "BTCUSDT")


@pytest.mark.parametrize(
    ("venue", "symbol", "unified", "native"),
    [
        ("binance_usdm", "BTCUSDT", "BTC/USDT:USDT", "BTCUSDT"),
        ("binance_usdm", "ethusdc", "ETH/USDC:USDC", "ETHUSDC"),
        ("binanceusdm", "BTC/USDT", "BTC/USDT:USDT", "BTCUSDT"),
        ("bybit_linear", "BTCUSDT", "BTC/USDT:USDT", "BTCUSDT"),
        ("hyperliquid", "BTC", "BTC/USDC:USDC", "BTC"),
        ("hyperliquid", "BTC/USDC:USDC", "BTC/USDC:USDC", "BTC"),
    ],
)
def test_symbol_mapping(venue, symbol, unified, native):
    assert ccxt_symbol(symbol, venue) == unified
    assert venue_symbol(symbol, venue) == native


def test_symbol_and_venue_errors(fake_ccxt):
    with pytest.raises(ConfigError, match="ending in USDT or USDC") as info:
        ccxt_symbol("BTCEUR", "binance_usdm")
    assert info.value.field == "symbol"
    assert ccxt_symbol("BTC/USDT:USDT", "okx") == "BTC/USDT:USDT"  # a ccxt id: unified symbols only
    with pytest.raises(ConfigError, match="no native symbols of okx"):
        ccxt_symbol("BTCUSDT", "okx")
    with pytest.raises(ConfigError, match="unknown venue 'binance_usd'") as info:
        ccxt_symbol("BTCUSDT", "binance_usd")
    assert info.value.field == "venue"


# ---------------------------------------------------------------------------------------------
# write_brackets


def test_write_then_load_gives_the_same_table(tmp_path):
    table = fetch_brackets(FakeBinance(), "BTCUSDT")
    path = write_brackets(table, tmp_path / "t.csv", venue="binance_usdm", notes=["one", "two\nlines"])
    back = load_brackets(path)
    columns_equal(back, table)
    assert (back.symbol, back.source, back.published) == (table.symbol, table.source, table.published)
    text = path.read_text()
    assert text.startswith("# venue: binance_usdm\n# symbol: BTCUSDT\n# source: ccxt binanceusdm")
    assert "# note: two lines\n" in text


def test_write_round_trips_awkward_floats_exactly(tmp_path):
    rows = [
        {"floor": 0, "cap": 12_345.678901234567, "maintenance_rate": 0.00123456789, "max_leverage": 100 / 3},
        {"floor": 12_345.678901234567, "cap": math.inf, "maintenance_rate": 0.1 + 0.2, "max_leverage": 1.5},
    ]
    table = BracketTable.from_rows(rows, symbol="X", source="s", published="2026-01-01")
    back = load_brackets(write_brackets(table, tmp_path / "x.csv"))
    columns_equal(back, table)


# ---------------------------------------------------------------------------------------------
# The cache and the command


def test_cli_writes_the_table_and_a_second_run_is_cached(fake_ccxt, tmp_path):
    runner = CliRunner()
    args = ["data", "tiers", "--venue", "binance_usdm", "--symbol", "BTCUSDT"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    path = tmp_path / "cache" / "levopt" / "tiers" / "binance_usdm_BTCUSDT.csv"
    assert (
        result.stdout.strip().splitlines()[-1]
        == str(path)
        == str(tiers_cache_path("binance_usdm", "BTCUSDT"))
    )
    n = len(BINANCE_USDM.table("BTCUSDT"))
    assert f"fetched {n} tiers of BTCUSDT on binance_usdm" in result.stderr
    assert (
        "   1" in result.stderr and "125x" in result.stderr and f"{n - 6} more in the file" in result.stderr
    )
    columns_equal(load_brackets(path), BINANCE_USDM.table("BTCUSDT"))
    assert "# published: " in path.read_text() and "through ccxt 0.0-fake" in path.read_text()
    assert len(fake_ccxt) == 1 and len(fake_ccxt[0].calls) == 1
    assert fake_ccxt[0].options == {"enableRateLimit": True}

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"cached: {n} tiers" in again.stderr and again.stdout.strip() == str(path)
    assert len(fake_ccxt) == 1  # no exchange made, no request sent

    for extra in (["--force"], ["--max-age", "0"]):
        assert runner.invoke(app, [*args, *extra]).exit_code == 0
    assert len(fake_ccxt) == 3

    day_old = time.time() - 25 * 3600
    os.utime(path, (day_old, day_old))
    assert runner.invoke(app, args).exit_code == 0
    assert len(fake_ccxt) == 4
    assert runner.invoke(app, [*args, "--max-age", "48"]).exit_code == 0
    assert len(fake_ccxt) == 4


def test_cache_is_read_without_ccxt(fake_ccxt, tmp_path, monkeypatch, capsys):
    out = tmp_path / "bybit.csv"
    first = update_tiers_cache("bybit_linear", "BTCUSDT", out=out)
    assert first.fetched and first.path == out and len(first.table) == len(BYBIT_LINEAR.table("BTCUSDT"))
    monkeypatch.setitem(sys.modules, "ccxt", None)  # import ccxt now fails
    code, stdout, stderr = run_cli(
        monkeypatch,
        capsys,
        "data",
        "tiers",
        "--venue",
        "bybit_linear",
        "--symbol",
        "BTCUSDT",
        "--out",
        str(out),
    )
    assert code == 0 and stdout.strip() == str(out) and "cached" in stderr
    code, _, stderr = run_cli(
        monkeypatch,
        capsys,
        "data",
        "tiers",
        "--venue",
        "bybit_linear",
        "--symbol",
        "BTCUSDT",
        "--out",
        str(out),
        "--force",
    )
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "pip install 'levopt[fetch]'" in stderr


def test_a_file_of_another_symbol_is_not_taken_for_the_cache(fake_ccxt, tmp_path):
    out = tmp_path / "t.csv"
    update_tiers_cache("binance_usdm", "BTCUSDT", out=out)
    with pytest.raises(ConfigError, match="holds the tiers of BTCUSDT, not ETHUSDT") as info:
        update_tiers_cache("binance_usdm", "ETHUSDT", out=out)
    assert info.value.field == "out"
    assert update_tiers_cache("binance_usdm", "ETHUSDT", out=out, force=True).fetched
    result = CliRunner().invoke(
        app, ["data", "tiers", "--venue", "binance_usdm", "--symbol", "BTCUSDT", "--out", str(out)]
    )
    assert isinstance(result.exception, ConfigError) and result.exception.field == "--out"
    assert "holds the tiers of ETHUSDT, not BTCUSDT; use another file or pass --force" in str(
        result.exception
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--venue", "binance_usd", "--symbol", "BTCUSDT"],
            ["--venue: unknown venue 'binance_usd'", "binance_usdm"],
        ),
        (["--venue", "binance_usdm", "--symbol", "BTCEUR"], ["--symbol:", "USDT or USDC"]),
        (["--venue", "binance_usdm", "--symbol", "BTCUSDT", "--max-age", "-1"], ["--max-age"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(fake_ccxt, monkeypatch, capsys, args, words):
    code, stdout, stderr = run_cli(monkeypatch, capsys, "data", "tiers", *args)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    for word in words:
        assert word in stderr


def test_exchange_errors_are_one_line_exit_2_and_write_nothing(fake_ccxt, monkeypatch, capsys, tmp_path):
    out = tmp_path / "t.csv"
    FakeBinance.error = FakeNetworkError(
        "binanceusdm GET https://fapi.binance.com/fapi/v1/leverageBracket 503\nBusy"
    )
    try:
        code, _, stderr = run_cli(
            monkeypatch,
            capsys,
            "data",
            "tiers",
            "--venue",
            "binance_usdm",
            "--symbol",
            "BTCUSDT",
            "--out",
            str(out),
        )
    finally:
        FakeBinance.error = None
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert "FakeNetworkError" in stderr and "503" in stderr and not out.exists()
