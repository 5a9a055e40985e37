"""Fuzz test of the command line: whatever the input, ``levopt`` exits with 0 or 2, prints no
traceback (an error is one line), and every JSON it writes, to a file or to stdout, is strict JSON
whose numbers are finite or null.

The CLI runs in-process (``levopt.cli.main`` with ``sys.argv`` patched, ``SystemExit`` caught), so an
example costs what the command computes, not a Python start.

Strategies
----------
* ``configs``: tiny valid configs (paths 64-512, horizon 1-2 days, ``chunk_size`` 256) over a few
  structures (model gbm, garch or bootstrap; policy constant or vol_target), numbers drawn inside
  their allowed ranges. The structures are few on purpose: each one compiles the engine once.
* ``mutated``: a valid config with one to three mutations: an unknown key (random unicode text); a
  known key, top-level or inside model/market/policy, set to a wrong type (text, bytes, list,
  mapping, null, bool), to NaN or ±inf, a negative number, or a huge one (1e308, 10**30); the
  ``sweep``/``objective``/``optimizer``/``metrics`` sections set to junk.
* ``config_file``: the config as YAML (unicode kept), with a UTF-8 byte-order mark, truncated at a
  random byte, encoded as Latin-1, or replaced by random bytes.
* ``overrides``: zero to two ``--set KEY=VALUE`` with a known dotted key or random text, and a value
  from YAML scalars, broken YAML, non-finite and out-of-range numbers, or random text.
* ``returns_file`` (the bootstrap model's data) and ``prices_file`` (``levopt data info``): valid
  CSV, or malformed: a line with an extra or a missing field, another delimiter, a non-number,
  a return <= -100%, binary bytes, an empty file, a header only.
* ``liq-price``: any float (NaN, ±inf, huge, negative) for each number, valid and invalid venue,
  side and mode.

Budget: ``max_examples`` per test below, no per-example deadline (the first example of a structure
compiles the engine, seconds on a loaded machine; a hang is caught by the suite's timeout instead);
examples are derandomized so CI sees the same ones (set ``LEVOPT_FUZZ_RANDOM=1`` to explore new
ones, ``LEVOPT_FUZZ_EXAMPLES=N`` for more). Measured on 2 cores shared with other jobs (load 4):
15-25 s for the file, with or without the compilation cache (``LEVOPT_CACHE_DIR=off``), at most
40 s under heavier load; 5 s of it is importing levopt. In exploring mode, a few hundred examples
found three bugs fixed with this file: a non-text ``kind`` crashing the registry, NaN correlations
from a constant column of bootstrap data, and an error line broken in two by a U+001E in a key.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from levopt.cli import main

RANDOM = bool(os.environ.get("LEVOPT_FUZZ_RANDOM"))
EXAMPLES = int(os.environ.get("LEVOPT_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int):
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        derandomize=not RANDOM,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# ---------------------------------------------------------------------------------------------
# Running the CLI and checking what it did


def run_cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["levopt", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = 0 if exc.code is None else exc.code
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def _refuse(token: str):
    raise AssertionError(f"non-standard JSON constant {token}")


def assert_strict_json(text: str, where: str) -> None:
    """Parse ``text`` refusing NaN/Infinity tokens; every number must be finite (1e999 is not)."""
    data = json.loads(text, parse_constant=_refuse)

    def walk(value, path):
        if isinstance(value, float):
            assert math.isfinite(value), f"{where}: {path} = {value}"
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}[{i}]")

    walk(data, "")


def check(args: list[str], written: list[Path] = ()) -> int:
    """Run the CLI and check the contract; return the exit code."""
    code, out, err = run_cli(args)
    assert code in (0, 2), f"exit code {code} for levopt {args}:\n{err}"
    assert "Traceback" not in out + err, err
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), f"levopt {args}:\n{err}"
        return code
    if out.strip().startswith(("{", "[")):
        assert_strict_json(out, "stdout")
    for path in written:
        if path.is_file():
            assert_strict_json(path.read_text(encoding="utf-8"), str(path))
    return code


# ---------------------------------------------------------------------------------------------
# Strategies


def finite(lo: float, hi: float):
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


models = st.one_of(
    st.builds(lambda mu, s: {"kind": "gbm", "mu": mu, "sigma": s}, finite(-1, 1), finite(0.05, 2)),
    st.builds(
        lambda mu, o, a, b: {"kind": "garch", "mu": mu, "omega": o, "alpha": a, "beta": b},
        finite(-0.5, 0.5),
        finite(1e-6, 1e-4),
        finite(0.01, 0.2),
        finite(0.5, 0.78),
    ),
    st.builds(lambda block: {"kind": "bootstrap", "data": "returns.csv", "block": block}, finite(1, 10)),
)
policies = st.one_of(
    st.builds(lambda lev: {"kind": "constant", "leverage": lev, "rebalance": "never"}, finite(0, 5)),
    st.builds(
        lambda tv, ml: {"kind": "vol_target", "target_vol": tv, "max_leverage": ml},
        finite(0.1, 1),
        finite(1, 5),
    ),
)
configs = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**31),
        "paths": st.integers(64, 512),
        "horizon_days": st.sampled_from([1, 2]),
        "chunk_size": st.just(256),
        "model": models,
        "policy": policies,
        "market": st.fixed_dictionaries(
            {"fee": finite(0, 0.01), "funding_rate": finite(-0.5, 0.5), "maintenance_margin": finite(0, 0.05)}
        ),
        "metrics": st.just(["log_growth", "cvar", "liquidation_probability", "max_drawdown"]),
    }
)

bad_values = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 10**30, -(10**30), -1, -0.5, 0]),
    st.text(max_size=8),
    st.binary(max_size=8),
    st.none(),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)
top_keys = ["seed", "paths", "horizon_days", "steps_per_day", "precision", "chunk_size", "ruin_floor", "name"]
sections = ["model", "market", "policy", "metrics", "objective", "optimizer", "sweep"]


@st.composite
def mutated(draw) -> dict:
    cfg = draw(configs)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "section", "nested", "unknown"]))
        if where == "top":
            cfg[draw(st.sampled_from(top_keys))] = draw(bad_values)
        elif where == "section":
            cfg[draw(st.sampled_from(sections))] = draw(bad_values)
        elif where == "unknown":
            cfg[draw(st.text(min_size=1, max_size=6))] = draw(bad_values)
        else:
            section = draw(st.sampled_from(["model", "market", "policy"]))
            if isinstance(cfg.get(section), dict):
                keys = [*cfg[section], "kind", "sigma", "leverage", "rebalance", "borrow_rate", "corr"]
                cfg[section][draw(st.sampled_from(keys))] = draw(bad_values)
    return cfg


@st.composite
def config_file(draw, cfg: dict) -> bytes:
    text = yaml.safe_dump(cfg, allow_unicode=True).encode()
    how = draw(st.sampled_from(["yaml"] * 5 + ["bom", "truncated", "latin-1", "bytes"]))
    if how == "bom":
        return b"\xef\xbb\xbf" + text
    if how == "truncated":
        return text[: draw(st.integers(0, len(text)))]
    if how == "latin-1":
        return text.decode().encode("latin-1", errors="replace") + "\nname: é\n".encode("latin-1")
    if how == "bytes":
        return draw(st.binary(max_size=64))
    return text


override_keys = st.one_of(
    st.sampled_from(
        ["paths", "seed", "horizon_days", "chunk_size", "precision", "model.sigma", "model.kind"]
        + ["policy.leverage", "market.fee", "metrics", "sweep", "optimizer.paths", "name", "model..x"]
    ),
    st.text(max_size=6),
)
override_values = st.one_of(
    st.sampled_from(
        [".nan", ".inf", "-.inf", "-1", "0", "0.5", "abc", "[1, 2", "{a: 1}", "", "null", "true", "1e400"]
        + ["[0.4, .nan]", "{model.sigma: [0.3]}", "ünïcödé", "float16", "3000000000", "\x00"]
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Nd",)), max_size=8),
)
overrides = st.lists(st.builds(lambda k, v: f"{k}={v}", override_keys, override_values), max_size=2)


@st.composite
def returns_file(draw) -> bytes:
    values = draw(st.lists(finite(-0.2, 0.2), min_size=2, max_size=30))
    lines = ["r", *(f"{v:.6g}" for v in values)]
    how = draw(
        st.sampled_from(
            ["valid"] * 4 + ["extra", "missing", "delimiter", "nan", "ruin", "bytes", "empty", "header"]
        )
    )
    i = draw(st.integers(1, len(lines) - 1))
    if how == "extra":
        lines[i] += ",1"
    elif how == "missing":
        lines[0] = "r,s"
        lines[1:] = [f"{line},0.01" for line in lines[1:]]
        lines[i] = lines[i].split(",")[0]
    elif how == "delimiter":
        lines = [line.replace(".", ",") + ";1" for line in lines]
    elif how == "nan":
        lines[i] = draw(st.sampled_from(["nan", "inf", "abc", "1e999"]))
    elif how == "ruin":
        lines[i] = "-1.5"
    elif how == "bytes":
        return draw(st.binary(max_size=40))
    elif how == "empty":
        return b""
    elif how == "header":
        lines = lines[:1]
    return ("\n".join(lines) + "\n").encode()


@st.composite
def prices_file(draw) -> bytes:
    n = draw(st.integers(30, 45))
    closes = draw(st.lists(finite(1, 1e6), min_size=n, max_size=n))
    lines = ["Date,Close"] + [
        f"2021-{1 + i // 28:02d}-{1 + i % 28:02d},{c:.6g}" for i, c in enumerate(closes)
    ]
    how = draw(
        st.sampled_from(["valid", "extra", "missing", "semicolon", "pipe", "text", "bytes", "empty", "dup"])
    )
    i = draw(st.integers(1, n))
    if how == "extra":
        lines[i] += ",7"
    elif how == "missing":
        lines[i] = lines[i].split(",")[0]
    elif how == "semicolon":
        lines = [line.replace(",", ";") for line in lines]
    elif how == "pipe":
        lines = [line.replace(",", "|") for line in lines]
    elif how == "text":
        lines[i] = lines[i].split(",")[0] + "," + draw(st.text(max_size=5)).replace("\n", " ")
    elif how == "bytes":
        return draw(st.binary(max_size=60))
    elif how == "empty":
        return b""
    elif how == "dup":
        lines[i] = lines[1]
    return ("\n".join(lines) + "\n").encode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Tests


def _run_config(cfg: dict, data, sets: list[str], returns: bytes, command: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = tmp / "cfg.yaml"
        path.write_bytes(data.draw(config_file(cfg)))
        (tmp / "returns.csv").write_bytes(returns)
        args = [command.split()[0], str(path)]
        for item in sets:
            args += ["--set", item]
        written: list[Path] = []
        if command == "evaluate --out":
            written.append(tmp / "result.json")
            args += ["--out", str(written[0])]
        elif command == "run":
            written.append(tmp / "run" / "results.json")
            args += ["--out", str(tmp / "run"), "--no-report"]
        check(args, written)


cases = {
    "cfg": st.one_of(configs, configs, mutated()),
    "data": st.data(),
    "sets": st.one_of(st.just([]), st.just([]), overrides),
    "returns": returns_file(),
}


@fuzz_settings(25)
@given(**cases, command=st.sampled_from(["evaluate", "evaluate --out"]))
def test_evaluate_exits_0_or_2(cfg, data, sets, returns, command):
    _run_config(cfg, data, sets, returns, command)


@fuzz_settings(15)
@given(**cases)
def test_run_exits_0_or_2(cfg, data, sets, returns):
    _run_config(cfg, data, sets, returns, "run")


@fuzz_settings(40)
@given(content=prices_file(), option=st.sampled_from([[], ["--price-col", "Close"], ["--price-col", "Mid"]]))
def test_data_info_exits_0_or_2(content, option):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prices.csv"
        path.write_bytes(content)
        check(["data", "info", str(path), *option])


numbers = st.one_of(st.floats(), st.sampled_from([0.0, -1.0, 1e-300, 1e300]), finite(0.1, 1e5))


@fuzz_settings(60)
@given(
    venue=st.sampled_from(["binance_usdm", "hyperliquid", "bybit_linear", "nowhere"]),
    side=st.sampled_from(["long", "short", "flat"]),
    mode=st.sampled_from(["isolated", "cross", "portfolio"]),
    quantity=numbers,
    entry=numbers,
    wallet=numbers,
    extra=st.lists(
        st.tuples(st.sampled_from(["--maintenance-rate", "--maintenance-amount", "--max-leverage"]), numbers),
        max_size=2,
        unique_by=lambda t: t[0],
    ),
)
def test_liq_price_exits_0_or_2(venue, side, mode, quantity, entry, wallet, extra):
    args = ["liq-price", "--venue", venue, "--side", side, "--mode", mode]
    args += ["--quantity", repr(quantity), "--entry-price", repr(entry), "--wallet-balance", repr(wallet)]
    for flag, value in extra:
        args += [flag, repr(value)]
    code, out, err = run_cli(args)
    assert code in (0, 2), err
    assert "Traceback" not in out + err
    if code == 0:
        assert math.isfinite(float(out.strip().splitlines()[-1]))


def test_the_contract_checks_can_fail():
    """The checks above catch what they are meant to: a NaN token, an infinity, a traceback."""
    with pytest.raises(AssertionError):
        assert_strict_json('{"a": NaN}', "x")
    with pytest.raises(AssertionError):
        assert_strict_json('{"a": [1e999]}', "x")
    assert_strict_json('{"a": null, "b": [1.5, -2]}', "x")
    code, _, err = run_cli(["evaluate", "/nonexistent/levopt.yaml"])
    assert code == 2 and err.startswith("error: config:")
