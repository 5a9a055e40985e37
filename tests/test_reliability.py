"""Every user error is one line and exit code 2, checked before any computation; internal errors
are one line naming the file with the traceback (exit code 1); JSON is strict; no run is lost or
overwritten by another.

Each test here started as a probe that failed: a traceback, an error raised after the whole
simulation had run, or a result file overwritten.
"""

from __future__ import annotations

import copy
import json
import math
import os
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from levopt.cli import main
from levopt.config import (
    CalibratedModelConfig,
    CalibrateSpec,
    CvxpyConfig,
    OptaxConfig,
    load_config,
    set_dotted,
)
from levopt.data import load_prices
from levopt.engine import MarketConfig
from levopt.errors import ConfigError, DataError, ResourceError
from levopt.io import MAX_TEXT_BYTES, dumps_json, read_text, write_json
from levopt.outputs import ERROR_LOG, canonical
from levopt.paths import MODELS
from levopt.policies import POLICIES
from levopt.resources import check_memory, check_memory_all, needs
from levopt.results import SweepMeta
from levopt.sweep import SweepRunner

TINY = {
    "seed": 0,
    "paths": 256,
    "horizon_days": 2,
    "chunk_size": 256,
    "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.5},
    "policy": {"kind": "constant", "leverage": 1.5, "rebalance": "never"},
    "metrics": ["log_growth", "liquidation_probability"],
}


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["levopt", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    code = exc.value.code
    return (0 if code is None else code), captured.out, captured.err


def one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def user_error(monkeypatch, capsys, *args: str) -> str:
    """Run the CLI, expect exit code 2 and one line on stderr; return that line."""
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2, err
    return one_line(err)


@pytest.fixture
def tiny_file(tmp_path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture
def no_compute(monkeypatch):
    """Fail the test if a simulation or an optimization starts (errors must come before)."""

    def boom(*args, **kwargs):
        raise AssertionError("the computation started before the input was checked")

    monkeypatch.setattr("levopt.cli.run_evaluate", boom)
    monkeypatch.setattr("levopt.cli.run_optimize", boom)
    monkeypatch.setattr("levopt.calibrate.cli.calibrate", boom)
    monkeypatch.setattr("levopt.calibrate.cli.calibrate_config", boom)


def _can_create_in(directory: Path) -> bool:
    try:
        (directory / ".probe").write_text("")
    except OSError:
        return False
    (directory / ".probe").unlink()
    return True


@pytest.fixture
def unwritable_dir(tmp_path) -> Path:
    """A directory in which no file can be created: a read-only one, or /sys for root."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _can_create_in(locked):
            yield locked
            return
        for candidate in (Path("/sys"), Path("/proc")):
            if candidate.is_dir() and not _can_create_in(candidate):
                yield candidate
                return
        pytest.skip("no unwritable directory on this machine (root on a system without /sys)")
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------------------------
# Config files


def test_binary_config_is_one_line(monkeypatch, capsys, tmp_path, no_compute):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(b"paths: 10\n" + bytes(range(256)))
    line = user_error(monkeypatch, capsys, "evaluate", path)
    assert "config" in line and "binary" in line and "cfg.yaml" in line


def test_config_in_another_encoding_names_the_byte(monkeypatch, capsys, tmp_path, no_compute):
    path = tmp_path / "latin.yaml"
    path.write_bytes("paths: 256\nname: été\n".encode("latin-1"))
    line = user_error(monkeypatch, capsys, "run", path, "--out", tmp_path / "out")
    assert "not UTF-8" in line and "0xe9" in line and "line 2" in line
    assert not (tmp_path / "out").exists()


def test_utf8_config_with_a_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + yaml.safe_dump(TINY | {"name": "été"}).encode())
    assert load_config(path).name == "été"


def test_huge_config_is_refused_before_reading(monkeypatch, capsys, tmp_path, no_compute):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(MAX_TEXT_BYTES + 1)  # sparse: nothing is actually written
    line = user_error(monkeypatch, capsys, "evaluate", path)
    assert "config" in line and f"{MAX_TEXT_BYTES:,}" in line and "10 MiB" in line


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("paths: [1, 2\n", "line 2, column 1"),
        ("- 1\n- 2\n", "must be a mapping of keys, got a list"),
        ("", "got an empty file"),
    ],
)
def test_bad_yaml_is_one_line(monkeypatch, capsys, tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert expected in user_error(monkeypatch, capsys, "evaluate", path)


def test_directory_as_config(monkeypatch, capsys, tmp_path):
    assert "is a directory" in user_error(monkeypatch, capsys, "evaluate", tmp_path)


def test_read_text_names_the_field(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\xff\xfe[")
    with pytest.raises(ConfigError, match=r"^--positions: .*not UTF-8 text"):
        read_text(path, "--positions")


@pytest.mark.parametrize(
    ("override", "field", "allowed"),
    [
        ("model.sigma=abc", "model.sigma", "valid number"),
        ("model.sigma=.nan", "model.sigma", "finite"),
        ("paths=3000000000", "paths", "2147483647"),
        ("seed=99999999999999999999", "seed", "less than or equal"),
        ("horizon_days=1.0e+300", "horizon_days", "32-bit"),
        ("model..sigma=1", "--set", "empty key"),
        ("model.sigma=[1, 2", "model.sigma", "cannot parse"),
        ("optimizer.method=[1]", "optimizer.method", "allowed: optax, cvxpy"),
        ("optimizer.paths=0", "optimizer.paths", "greater than 0"),
    ],
)
def test_set_overrides_name_the_field(monkeypatch, capsys, tiny_file, no_compute, override, field, allowed):
    line = user_error(monkeypatch, capsys, "evaluate", tiny_file, "--set", override)
    assert field in line and allowed in line, line


# ---------------------------------------------------------------------------------------------
# Non-finite numbers in every numeric field


def _has_float(annotation) -> bool:
    return annotation is float or any(_has_float(a) for a in typing.get_args(annotation))


def _float_fields(schema) -> list[str]:
    return [name for name, info in schema.model_fields.items() if _has_float(info.annotation)]


def _numeric_cases() -> list[tuple[str, dict, str]]:
    """(id, base config, dotted field) for every float field of every config schema."""
    cases = []
    for f in _float_fields(type(load_config(TINY))):
        cases.append((f, TINY, f))
    for f in _float_fields(MarketConfig):
        cases.append((f"market.{f}", TINY, f"market.{f}"))
    for kind in MODELS:
        cls = MODELS.get(kind)
        for f in _float_fields(cls.Config):
            cases.append((f"{kind}.{f}", TINY | {"model": dict(cls.example)}, f"model.{f}"))
    for kind in POLICIES:
        cls = POLICIES.get(kind)
        for f in _float_fields(cls.Config):
            cases.append((f"{kind}.{f}", TINY | {"policy": dict(cls.example)}, f"policy.{f}"))
    for method, schema in (("optax", OptaxConfig), ("cvxpy", CvxpyConfig)):
        for f in _float_fields(schema):
            cases.append((f"{method}.{f}", TINY | {"optimizer": {"method": method}}, f"optimizer.{f}"))
    calibrated = {"kind": "garch", "dist": "t", "calibrate": {"data": "prices.csv"}}
    for f in _float_fields(CalibrateSpec):
        cases.append((f"calibrate.{f}", TINY | {"model": calibrated}, f"model.calibrate.{f}"))
    for f in _float_fields(CalibratedModelConfig):
        cases.append((f"calibrated.{f}", TINY | {"model": calibrated}, f"model.{f}"))
    free = {"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}}
    for f in ("init", "min", "max"):
        cases.append((f"free.{f}", TINY | {"policy": free}, f"policy.leverage.{f}"))
    objective = {"maximize": "log_growth", "constraints": [{"metric": "cvar", "level": 0.95, "max": 0.2}]}
    for f in ("max", "level"):
        cases.append((f"constraint.{f}", TINY | {"objective": objective}, f"objective.constraints.0.{f}"))
    return cases


NUMERIC_CASES = _numeric_cases()


def test_the_numeric_cases_cover_every_schema():
    """The introspection finds the fields (a schema renamed away from float would drop out)."""
    fields = {case[2] for case in NUMERIC_CASES}
    assert {"horizon_days", "market.funding_rate", "model.sigma", "model.omega", "model.block"} <= fields
    assert {"policy.target_vol", "optimizer.learning_rate", "model.calibrate.target_accept"} <= fields
    assert len(NUMERIC_CASES) > 50


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("base", "field"), [c[1:] for c in NUMERIC_CASES], ids=[c[0] for c in NUMERIC_CASES])
def test_non_finite_numbers_are_rejected_with_the_field_named(base, field, value):
    data = copy.deepcopy(base)
    if field.startswith("objective.constraints.0."):
        data["objective"]["constraints"][0][field.rsplit(".", 1)[1]] = value
        field = "objective.constraints"
    else:
        set_dotted(data, field, value)
    with pytest.raises(ConfigError) as info:
        load_config(data)
    assert field in str(info.value) and "\n" not in str(info.value)


def test_non_finite_metric_option_and_sweep_value():
    with pytest.raises(ConfigError, match=r"metrics\[0\].*level"):
        load_config(TINY | {"metrics": [{"metric": "cvar", "level": math.nan}]})
    cfg = load_config(TINY | {"sweep": {"model.sigma": [0.5, math.inf]}})
    with pytest.raises(ConfigError, match=r"sweep point 1 \(model.sigma=inf\).*model.sigma"):
        SweepRunner(cfg, Path("unused"))


def test_non_finite_cli_numbers(monkeypatch, capsys, tmp_path, no_compute):
    base = ["liq-price", "--venue", "binance_usdm", "--side", "long", "--entry-price", "60000"]
    line = user_error(monkeypatch, capsys, *base, "--quantity", "nan", "--wallet-balance", "1000")
    assert "quantity" in line and "finite" in line
    line = user_error(monkeypatch, capsys, *base, "--quantity", "1", "--wallet-balance", "inf")
    assert "--wallet-balance" in line and "finite" in line
    prices = tmp_path / "p.csv"
    prices.write_text("x")
    line = user_error(monkeypatch, capsys, "calibrate", "--data", prices, "--steps-per-day", "nan")
    assert "--steps-per-day" in line and "finite" in line


# ---------------------------------------------------------------------------------------------
# Usage errors


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["evaluate"], "Missing argument"),
        (["evaluate", "x.yaml", "--bogus"], "No such option: --bogus"),
        (["nosuch"], "No such command"),
        (["calibrate", "--warmup", "0"], "--warmup"),
        (["calibrate", "--seed", str(2**64)], "--seed"),
    ],
)
def test_usage_errors_are_one_line(monkeypatch, capsys, args, expected):
    assert expected in user_error(monkeypatch, capsys, *args)


# ---------------------------------------------------------------------------------------------
# Output paths, checked before computing


def test_unwritable_out_fails_before_the_simulation(
    monkeypatch, capsys, tiny_file, unwritable_dir, no_compute
):
    line = user_error(monkeypatch, capsys, "evaluate", tiny_file, "--out", unwritable_dir / "r" / "x.json")
    assert line.startswith("error: --out:") and "cannot write" in line
    line = user_error(monkeypatch, capsys, "run", tiny_file, "--out", unwritable_dir / "run")
    assert line.startswith("error: --out:") and str(unwritable_dir) in line


def test_out_of_the_wrong_kind(monkeypatch, capsys, tiny_file, tmp_path, no_compute):
    a_file = tmp_path / "taken"
    a_file.write_text("notes")
    line = user_error(monkeypatch, capsys, "run", tiny_file, "--out", a_file)
    assert "is a file" in line and "directory" in line
    line = user_error(monkeypatch, capsys, "run", tiny_file, "--out", a_file / "below")
    assert "is a file, not a directory" in line
    line = user_error(monkeypatch, capsys, "evaluate", tiny_file, "--out", tmp_path)
    assert "is a directory" in line
    assert a_file.read_text() == "notes"


def test_evaluate_does_not_overwrite_another_file(monkeypatch, capsys, tiny_file, tmp_path, no_compute):
    other = tmp_path / "mine.json"
    other.write_text('{"something": "else"}')
    line = user_error(monkeypatch, capsys, "evaluate", tiny_file, "--out", other)
    assert "exists" in line and "--force" in line
    assert json.loads(other.read_text()) == {"something": "else"}


def test_run_directory_reruns_refusals_and_force(monkeypatch, capsys, tiny_file, tmp_path):
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "run", tiny_file, "--out", out, "--no-report", "-q")
    assert code == 0, err
    # The same config again is a re-run.
    code, _, err = run_cli(monkeypatch, capsys, "run", tiny_file, "--out", out, "--no-report", "-q")
    assert code == 0, err
    first = json.loads((out / "results.json").read_text())
    # Another config is refused, before anything runs, and the directory is untouched.
    with monkeypatch.context() as m:
        m.setattr("levopt.cli.run_evaluate", lambda *a, **k: pytest.fail("computed"))
        line = user_error(
            monkeypatch, capsys, "run", tiny_file, "--out", out, "--set", "seed=1", "--no-report"
        )
    assert "holds a run of a different config" in line and "--force" in line
    assert json.loads((out / "results.json").read_text()) == first
    code, _, err = run_cli(
        monkeypatch, capsys, "run", tiny_file, "--out", out, "--set", "seed=1", "--no-report", "--force", "-q"
    )
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == 1
    # evaluate --out onto a result of the same config is a re-run too.
    code, _, err = run_cli(
        monkeypatch, capsys, "evaluate", tiny_file, "--set", "seed=1", "--out", out / "results.json", "-q"
    )
    assert code == 0, err


def test_sweep_directory_of_another_sweep_needs_force(monkeypatch, capsys, tmp_path, no_compute):
    out = tmp_path / "sweep"
    first = load_config(TINY | {"sweep": {"model.sigma": [0.4, 0.6]}})
    second = load_config(TINY | {"sweep": {"model.sigma": [0.4, 0.8]}})
    write_json(
        out / "sweep.json",
        SweepMeta(
            keys=["model.sigma"], points=2, config=first.model_dump(mode="json", exclude_none=True)
        ).to_dict(),
    )
    SweepRunner(first, out)  # the same sweep: accepted
    with pytest.raises(ConfigError, match="holds a sweep of a different config"):
        SweepRunner(second, out)
    with pytest.raises(ConfigError, match="holds a sweep of a different config"):
        SweepRunner(second, out, resume=True)
    assert SweepRunner(second, out, force=True).force
    path = tmp_path / "second.yaml"
    path.write_text(yaml.safe_dump(second.model_dump(mode="json", exclude_none=True)))
    line = user_error(monkeypatch, capsys, "run", path, "--out", out, "--no-report")
    assert line.startswith("error: --out:") and "--force" in line
    # A single run into a sweep's directory, and a sweep into a run's directory, are refused too.
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump(TINY))
    assert "holds a sweep" in user_error(monkeypatch, capsys, "run", single, "--out", out, "--no-report")


def test_finished_sweep_points_need_resume_or_force(tmp_path):
    cfg = load_config(TINY | {"sweep": {"model.sigma": [0.4, 0.6]}})
    runner = SweepRunner(cfg, tmp_path)
    write_json(runner.point_file(runner.points[0]), {"placeholder": True})
    with pytest.raises(ConfigError, match="--resume to continue it, --force to compute them again"):
        SweepRunner(cfg, tmp_path)
    assert SweepRunner(cfg, tmp_path, resume=True).finished() == {runner.points[0].point_id}
    SweepRunner(cfg, tmp_path, force=True)


def test_calibration_directory_is_checked_before_sampling(monkeypatch, capsys, tmp_path, no_compute):
    prices = tmp_path / "prices.csv"
    _price_frame(60).to_csv(prices, index=False)
    out = tmp_path / "cal"
    write_json(out / "posterior.json", {"model": "garch", "diagnostics": {}, "request": {"data": "other"}})
    line = user_error(monkeypatch, capsys, "calibrate", "--data", prices, "--out", out)
    assert "holds a calibration of a different data or settings" in line
    run_dir = tmp_path / "run"
    write_json(run_dir / "results.json", {"config": TINY})
    assert "holds a run" in user_error(monkeypatch, capsys, "calibrate", "--data", prices, "--out", run_dir)


def test_calibration_from_a_config_is_checked_before_sampling(monkeypatch, capsys, tmp_path, no_compute):
    _price_frame(60).to_csv(tmp_path / "prices.csv", index=False)
    cfg = TINY | {"model": {"kind": "garch", "calibrate": {"data": "prices.csv", "warmup": 5, "samples": 5}}}
    path = tmp_path / "cal.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "cal"
    write_json(out / "posterior.json", {"model": "garch", "diagnostics": {}})
    line = user_error(monkeypatch, capsys, "calibrate", path, "--out", out)
    assert line.startswith("error: --out:") and "--force" in line
    line = user_error(monkeypatch, capsys, "calibrate", path, "--column", "Close")
    assert line.startswith("error: --column:") and "config's model section" in line


def test_predictive_check_too_large_for_memory():
    from levopt.calibrate.cli import _check_ppc_memory

    with pytest.raises(ResourceError, match=r"^--ppc-paths: 2,000,000,000 series of 1,000,000 returns"):
        _check_ppc_memory(2_000_000_000, 1_000_000)
    _check_ppc_memory(200, 1_000)


def test_report_and_fetch_paths(monkeypatch, capsys, tmp_path):
    assert "does not exist" in user_error(monkeypatch, capsys, "report", tmp_path / "none")
    (tmp_path / "f").write_text("")
    assert "is a file" in user_error(monkeypatch, capsys, "report", tmp_path / "f")
    base = ["data", "fetch", "--symbol", "BTC/USDT"]
    line = user_error(monkeypatch, capsys, *base, "--out", tmp_path)
    assert line.startswith("error: --out:") and "is a directory" in line
    line = user_error(monkeypatch, capsys, *base, "--out", tmp_path / "x.parquet", "--since", "yesterday-ish")
    assert line.startswith("error: --since:") and "yesterday-ish" in line


# ---------------------------------------------------------------------------------------------
# Data files


def _price_frame(n: int) -> pd.DataFrame:
    close = 30_000 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.03, n)))
    return pd.DataFrame(
        {"Date": pd.date_range("2021-01-01", periods=n, freq="D").strftime("%Y-%m-%d"), "Close": close}
    )


def _malformed_csv(tmp_path: Path, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    _price_frame(60).to_csv(path, index=False)
    lines = path.read_text().splitlines()
    lines[10] += ",1,2"  # line 11 has two fields too many
    path.write_text("\n".join(lines) + "\n")
    return path


def test_malformed_price_line_via_calibrate(monkeypatch, capsys, tmp_path, no_compute):
    path = _malformed_csv(tmp_path)
    line = user_error(
        monkeypatch, capsys, "calibrate", "--data", path, "--model", "garch", "--out", tmp_path / "c"
    )
    assert "prices.csv line 11: 4 comma-separated fields, the header (line 1) has 2" in line


def test_malformed_returns_line_via_a_bootstrap_config(monkeypatch, capsys, tmp_path, no_compute):
    data = tmp_path / "returns.csv"
    rows = ["r", *(f"{x:.5f}" for x in np.random.default_rng(1).normal(0, 0.02, 40))]
    rows[7] = "0.01;0.02,0.03"
    data.write_text("\n".join(rows) + "\n")
    config = tmp_path / "boot.yaml"
    config.write_text(yaml.safe_dump(TINY | {"model": {"kind": "bootstrap", "data": "returns.csv"}}))
    line = user_error(monkeypatch, capsys, "evaluate", config)
    assert "returns.csv line 8: 2 comma-separated fields, the header (line 1) has 1" in line


def test_calibrate_missing_column_names_the_flag(monkeypatch, capsys, tmp_path, no_compute):
    path = tmp_path / "prices.csv"
    _price_frame(60).rename(columns={"Close": "Last"}).to_csv(path, index=False)
    line = user_error(monkeypatch, capsys, "calibrate", "--data", path, "--out", tmp_path / "c")
    assert "no close price column" in line and "--column" in line and "price_col" not in line
    with pytest.raises(DataError, match="price_col"):  # the Python API names its argument
        load_prices(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        (b"\n \n", "the file is empty"),
        (b"PAR1\x00\x01\x02binary", "binary file (NUL byte at offset 4)"),
        (b"Date|Close\n2021-01-01|1\n2021-01-02|2\n", "no table found"),
        (b"Date,Close\n2021-01-01,1\n2021-01-02\n", "line 3: 1 comma-separated fields"),
    ],
    ids=["empty", "blank", "binary", "delimiter", "short-line"],
)
def test_bad_data_files_are_one_readable_error(tmp_path, content, expected):
    path = tmp_path / "prices.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=None) as info:
        load_prices(path)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_utf16_and_semicolon_csv_are_read(tmp_path):
    frame = _price_frame(40)
    path = tmp_path / "excel.csv"
    path.write_bytes(frame.to_csv(index=False, sep=";").encode("utf-16"))
    loaded = load_prices(path)
    np.testing.assert_allclose(loaded["close"].to_numpy(), frame["Close"].to_numpy())


def test_binary_json_and_parquet_data(tmp_path):
    (tmp_path / "p.json").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match="binary file"):
        load_prices(tmp_path / "p.json")
    (tmp_path / "p.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"p.parquet: cannot read as Parquet \(") as info:
        load_prices(tmp_path / "p.parquet")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Memory


def test_oversized_chunk_is_refused_before_compiling(monkeypatch, capsys, tiny_file, no_compute):
    line = user_error(
        monkeypatch,
        capsys,
        "evaluate",
        tiny_file,
        "--set",
        "paths=1000000000",
        "--set",
        "chunk_size=1000000000",
    )
    assert line.startswith("error: chunk_size: 1,000,000,000 paths need about") and "allowed: at most" in line


def test_oversized_search_is_refused_before_compiling(monkeypatch, capsys, tmp_path, no_compute):
    cfg = TINY | {
        "policy": {"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}},
        "objective": {"maximize": "log_growth"},
        "optimizer": {"method": "optax", "paths": 1_000_000_000},
    }
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(cfg))
    line = user_error(monkeypatch, capsys, "run", path, "--out", tmp_path / "r", "--no-report")
    assert line.startswith("error: optimizer.paths: 1,000,000,000 paths") and "gradient search" in line
    cvx = cfg | {"optimizer": {"method": "cvxpy", "scenarios": 1_000_000_000}}
    path.write_text(yaml.safe_dump(cvx))
    line = user_error(monkeypatch, capsys, "run", path, "--out", tmp_path / "r", "--no-report")
    assert line.startswith("error: optimizer.scenarios: 1,000,000,000 scenarios")


def test_python_api_checks_memory_before_compiling():
    """levopt.evaluate and levopt.run refuse what would not fit, as the CLI does."""
    import levopt

    with pytest.raises(ResourceError, match=r"^chunk_size: "):
        levopt.evaluate(TINY | {"paths": 10**9, "chunk_size": 10**9})
    search = TINY | {
        "policy": {"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}},
        "objective": {"maximize": "log_growth"},
        "optimizer": {"method": "optax", "paths": 1_000_000_000},
    }
    with pytest.raises(ResourceError, match=r"^optimizer.paths: "):
        levopt.run(search)


def test_what_fits_does_fit():
    """The largest value the message offers passes the same check; one block more does not."""
    cfg = load_config(TINY | {"paths": 10**8, "chunk_size": 10**8})
    available = (50e6, "memory")
    with pytest.raises(ResourceError) as info:
        check_memory(cfg, available=available)
    most = int(str(info.value).split("at most ")[1].split(" ")[0].replace(",", ""))
    assert most > 0 and most % 256 == 0
    check_memory(load_config(TINY | {"paths": 10**8, "chunk_size": most}), available=available)
    with pytest.raises(ResourceError):
        check_memory(load_config(TINY | {"paths": 10**8, "chunk_size": most + 256}), available=available)


def test_estimates_follow_the_model_state_and_noise():
    gbm = needs(load_config(TINY))[0].per_unit
    garch = needs(load_config(TINY | {"model": dict(MODELS.get("garch").example)}))[0].per_unit
    two_assets = {
        "model": {"kind": "gbm", "sigma": [0.5, 0.6]},
        "policy": {"kind": "constant", "weights": [0.5, 0.5]},
    }
    two = needs(load_config(TINY | two_assets))[0].per_unit
    assert garch > gbm and two > gbm
    f32 = needs(load_config(TINY | {"precision": "float32"}))[0].per_unit
    assert f32 < gbm


def test_sweep_points_are_checked_once_per_structure(monkeypatch):
    calls = []
    monkeypatch.setattr("levopt.resources.check_memory", lambda cfg, base, available: calls.append(cfg))
    configs = [load_config(TINY | {"model": {"kind": "gbm", "sigma": s}}) for s in (0.3, 0.4, 0.5)]
    configs.append(load_config(TINY | {"paths": 512}))
    check_memory_all(configs)
    assert len(calls) == 2


# ---------------------------------------------------------------------------------------------
# Internal errors, memory exhaustion, interrupts


def test_internal_error_is_one_line_with_the_traceback_in_the_run_directory(
    monkeypatch, capsys, tiny_file, tmp_path
):
    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr("levopt.cli.run_evaluate", bug)
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "run", tiny_file, "--out", out, "--no-report")
    line = one_line(err)
    assert code == 1
    assert "internal error" in line and "ZeroDivisionError" in line and str(out / ERROR_LOG) in line
    log = (out / ERROR_LOG).read_text()
    assert "Traceback" in log and "def bug" not in line and "1 / 0" in log


def test_internal_error_without_a_run_directory_goes_to_a_temporary_file(monkeypatch, capsys, tiny_file):
    monkeypatch.setattr("levopt.cli.run_evaluate", lambda *a, **k: {}["missing"])
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", tiny_file)
    line = one_line(err)
    assert code == 1 and "KeyError" in line
    log = Path(line.rsplit("traceback is in ", 1)[1].strip())
    try:
        assert "Traceback" in log.read_text()
    finally:
        log.unlink()


def test_exhausted_memory_is_a_user_error(monkeypatch, capsys, tiny_file, tmp_path):
    class XlaRuntimeError(RuntimeError):
        pass

    def oom(*args, **kwargs):
        raise XlaRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 64000000000 bytes.\nmore")

    monkeypatch.setattr("levopt.cli.run_evaluate", oom)
    line = user_error(monkeypatch, capsys, "run", tiny_file, "--out", tmp_path / "r", "--no-report")
    assert "out of memory" in line and "chunk_size" in line and ERROR_LOG in line


def test_keyboard_interrupt_exits_130(monkeypatch, capsys, tiny_file):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("levopt.cli.run_evaluate", interrupted)
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", tiny_file)
    assert code == 130 and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# Strict JSON and atomic files


def _strict(text: str):
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_null(tmp_path):
    data = {
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "np": np.float32("inf"),
        "array": np.array([1.0, np.inf, np.nan]),
        "nested": [{"x": (math.inf, 2)}],
    }
    assert _strict(dumps_json(data)) == {
        "nan": None,
        "inf": None,
        "ninf": None,
        "np": None,
        "array": [1.0, None, None],
        "nested": [{"x": [None, 2]}],
    }
    write_json(tmp_path / "r.json", data)
    assert _strict((tmp_path / "r.json").read_text())["inf"] is None
    assert canonical({"a": (1, math.nan)}) == {"a": [1, None]}


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = write_json(tmp_path / "r.json", {"kept": 1})
    with pytest.raises(TypeError):
        write_json(path, {"unserializable": object()})
    assert json.loads(path.read_text()) == {"kept": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_results_with_null_read_back(tmp_path, monkeypatch, capsys, tiny_file):
    """Readers take null wherever a number can be undefined (a one-path standard error)."""
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(monkeypatch, capsys, "evaluate", tiny_file, "--out", out)
    assert code == 0, err
    data = _strict(out.read_text())
    data["stderr"] = {k: None for k in data["stderr"]}
    data["metrics"]["log_growth"] = None
    out.write_text(json.dumps(data))
    from levopt.results import read_result

    result = read_result(out)
    assert math.isnan(result.metrics["log_growth"]) and all(math.isnan(v) for v in result.stderr.values())
    assert os.path.getsize(out) > 0
