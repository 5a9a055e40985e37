"""The terminal: metric, policy and constraint tables with units, values rounded to their standard
errors, degenerate standard errors in words; ``--quiet`` and ``--json``; the optimizer's progress."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import make_config
from rich.console import Console
from rich.progress import Progress

import levopt
from levopt.cli import main
from levopt.io import write_json
from levopt.optimize import SearchProgress
from levopt.report import fmt_metric, round_to_stderr
from levopt.terminal import (
    SearchBar,
    constraints_table,
    json_text,
    metrics_table,
    policy_table,
    run_summary,
)


def _text(renderable, width: int = 160) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def _row(text: str, start: str) -> str:
    """The table row whose first cell starts with ``start``."""
    rows = [line for line in text.splitlines() if line.strip("│ ").startswith(start)]
    assert rows, f"no row {start!r} in\n{text}"
    return rows[0]


def _strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which strict JSON parsers reject."""

    def refuse(token: str):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value,se,expected",
    [
        (1.3124, 0.4123, ("1.31", "0.41")),
        (28.31, 1.04, ("28.3", "1.0")),
        (1.0, 0.0996, ("1.00", "0.10")),  # the s.e. rounds up to 0.10: still 2 significant digits
        (-0.0012345, 0.00045678, ("−0.00123", "0.00046")),
        (123456.0, 7890.0, ("123,500", "7,900")),
    ],
)
def test_values_are_rounded_to_two_digits_of_their_stderr(value, se, expected):
    assert round_to_stderr(value, se) == expected


def test_degenerate_stderr_is_said_in_words_not_printed():
    # Every tail path an identical liquidation: batch means agree to rounding, s.e. ~ 4e-16.
    value, err = fmt_metric("cvar", 0.99531, 3.8e-16)
    assert value == "99.5 %" and err == "± 0 (all tail paths identical)"
    assert fmt_metric("liquidation_probability", 0.0, 0.0) == ("0 %", "± 0 (same on every path)")
    assert fmt_metric("gross_leverage", 0.33, 0.0) == ("0.33x", "exact (not simulated)")
    # Small but genuine: a relative s.e. of 1e-9 is printed.
    assert fmt_metric("mean_return", 0.01, 1e-11)[1] == "± 0.0000000010"


METRICS = {
    "log_growth": 0.013124,
    "mean_return": 0.010513,
    "cvar": 0.28311,
    "cvar(level=0.99)": 0.99531,
    "liquidation_probability": 0.0,
    "max_drawdown": 0.0972987,
}
STDERR = {
    "log_growth": 0.004123,
    "mean_return": 0.000905,
    "cvar": 0.01042,
    "cvar(level=0.99)": 3.8e-16,
    "liquidation_probability": 0.0,
    "max_drawdown": 0.000483,
}


def test_metrics_table_has_units_levels_horizons_and_rounding():
    text = _text(metrics_table("out of sample", METRICS, STDERR, {"horizon_days": 90}))
    growth = _row(text, "expected log-growth")
    assert "1.31 %/yr" in growth and "± 0.41" in growth
    cvar = _row(text, "CVaR 95% of 90-day log-loss")
    assert "28.3 %" in cvar and "± 1.0" in cvar
    tail = _row(text, "CVaR 99% of 90-day log-loss")
    assert "99.5 %" in tail and "0 (all tail paths identical)" in tail
    assert "0 (same on every path)" in _row(text, "liquidation probability over 90 days")
    assert "1.051 %" in _row(text, "mean return over 90 days")  # 1.0513 ± 0.0905 %
    assert "9.730 %" in _row(text, "expected max drawdown over 90 days")  # ± 0.048 %
    assert "e-16" not in text and "10⁻¹⁶" not in text and "0.28311" not in text


def _schedule_result(n_assets: int = 1) -> dict:
    lev = [0.1398, 0.3354, 0.3337, 0.3325]
    se = [0.099, 0.067, 0.0049, 0.047]
    if n_assets == 1:
        policy, stderr = {"leverage": lev}, {"leverage": se}
        spec = {"kind": "schedule", "segments": 4, "leverage": {"init": 1, "min": 0, "max": 5}}
        loose, model = ["leverage[0]"], {"kind": "gbm"}
    else:
        policy = {"weights": [[w, w / 2] for w in lev]}
        stderr = {"weights": [[e, e / 2] for e in se]}
        spec = {"kind": "schedule", "segments": 4, "weights": {"init": [1, 1], "min": 0, "max": 5}}
        loose, model = ["weights[0,1]"], {"kind": "bootstrap", "columns": ["BTC", "ETH"]}
    return {
        "policy": policy,
        "policy_stderr": stderr,
        "not_identified": loose,
        "optimizer": {
            "method": "optax",
            "iterations": 60,
            "converged": True,
            "wall_s": 15.7,
            "replicates": 4,
        },
        "config": {"horizon_days": 90, "policy": spec, "model": model},
    }


def test_policy_table_shows_segments_with_days_stderr_and_flags():
    text = _text(policy_table(_schedule_result()))
    first = _row(text, "1 ")
    assert "0–22.5" in first and "0.140x" in first and "± 0.099" in first and "not identified" in first
    third = _row(text, "3 ")
    assert "45–67.5" in third and "0.3337x" in third and "± 0.0049" in third
    assert "not identified" not in third
    assert "over 4 independent searches" in text


def test_policy_table_names_the_assets():
    text = _text(policy_table(_schedule_result(n_assets=2)))
    header = next(line for line in text.splitlines() if "segment" in line)
    assert "BTC" in header and "ETH" in header
    first = _row(text, "1 ")
    assert "0.140x" in first and "0.070x" in first and "ETH not identified" in first


def test_constraints_table_gives_limit_value_stderr_and_status():
    result = {
        "config": {"horizon_days": 90},
        "constraints": [
            {
                "metric": "liquidation_probability",
                "sense": "max",
                "limit": 0.01,
                "value": 0.0,
                "stderr": 0.0,
                "in_sample": 0.0,
                "satisfied": True,
                "strictly_satisfied": True,
            },
            {
                "metric": "cvar(level=0.95)",
                "sense": "max",
                "limit": 0.25,
                "value": 0.2759,
                "stderr": 0.0095,
                "in_sample": 0.2721,
                "satisfied": False,
                "strictly_satisfied": False,
            },
        ],
    }
    text = _text(constraints_table(result))
    liq = _row(text, "liquidation probability over 90 days")
    assert "≤ 1.00 %" in liq and "0 (same on every path)" in liq and liq.rstrip(" │").endswith("ok")
    cvar = _row(text, "CVaR 95% of 90-day log-loss")
    assert "≤ 25.0 %" in cvar and "27.59 %" in cvar and "± 0.95" in cvar and "violated" in cvar


# --- progress -----------------------------------------------------------------------------------

SMALL_RUN = make_config(
    paths=2048,
    horizon_days=20,
    model={"kind": "gbm", "mu": 0.3, "sigma": 0.8},
    policy={
        "kind": "schedule",
        "segments": 2,
        "leverage": {"init": 1.0, "min": 0.0, "max": 4.0},
        "rebalance": 1,
    },
    objective={"maximize": "log_growth", "constraints": [{"metric": "cvar", "level": 0.95, "max": 0.3}]},
    optimizer={"method": "optax", "steps": 60, "inner_steps": 10, "paths": 1024, "replicates": 2},
)


@pytest.fixture(scope="module")
def small_run() -> tuple[dict, list[SearchProgress]]:
    reports: list[SearchProgress] = []
    result = levopt.run(SMALL_RUN, profiles=False, progress=reports.append)
    return result, reports


def test_progress_is_reported_with_increasing_steps(small_run):
    result, reports = small_run
    assert [r.search for r in reports] == sorted(r.search for r in reports)
    assert {r.search for r in reports} == {1, 2} and all(r.searches == 2 for r in reports)
    for search in (1, 2):
        mine = [r for r in reports if r.search == search]
        steps = [r.step for r in mine]
        assert steps[0] == 0 and math.isnan(mine[0].objective)  # announced before the first block
        assert len(steps) >= 3 and all(b > a for a, b in zip(steps, steps[1:], strict=False))
        assert all(math.isfinite(r.objective) for r in mine[1:])
        assert mine[-1].done and not any(r.done for r in mine[:-1])
        assert all(r.steps == 60 for r in mine)
    # The first search's reports are its history: the same steps and objective values.
    first = [r for r in reports if r.search == 1][1:]
    history = result["optimizer"]["history"]
    assert [r.step for r in first] == [h["step"] for h in history]
    assert [r.objective for r in first] == [h["objective"] for h in history]
    assert first[-1].step == result["optimizer"]["iterations"]


def test_convex_layer_reports_each_solve():
    cfg = make_config(
        paths=1024,
        horizon_days=10,
        policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}, "rebalance": "never"},
        objective={"maximize": "log_growth", "constraints": [{"metric": "cvar", "max": 0.2}]},
        optimizer={"method": "cvxpy", "scenarios": 1000, "replicates": 2},
    )
    reports: list[SearchProgress] = []
    result = levopt.run(cfg, profiles=False, progress=reports.append)
    assert [(r.search, r.step, r.steps, r.done) for r in reports] == [
        (1, 0, 1, False),
        (1, 1, 1, True),
        (2, 0, 1, False),
        (2, 1, 1, True),
    ]
    assert reports[1].objective == result["in_sample"]["metrics"]["log_growth"]
    assert all(r.max_violation <= 1e-6 for r in reports if r.done)


def test_search_bar_counts_iterations_over_all_searches(small_run):
    _, reports = small_run
    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    bar = SearchBar(progress, SMALL_RUN)
    completed = []
    for report in reports:
        bar(report)
        task = progress.tasks[0]
        completed.append(task.completed)
        assert task.total == 2 * 60
    assert completed == sorted(completed) and completed[-1] == 2 * 60
    assert bar.title == "expected log-growth"


def test_run_summary_reads_like_the_answer(small_run):
    result, _ = small_run
    text = _text(run_summary(result, "small"))
    assert "Follow a 2-segment leverage schedule over 20 days" in text
    assert "%/yr" in _row(text, "expected log-growth") and "x" in _row(text, "1 ")
    assert "CVaR 95% of 20-day log-loss" in text and "≤ 30.0 %" in text
    assert "optimizer: optax" in text and "2 searches" in text


# --- the command line ---------------------------------------------------------------------------


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["levopt", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def evaluate_config(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(make_config(paths=512)))
    return path


def test_evaluate_json_is_strict_and_alone_on_stdout(monkeypatch, capsys, evaluate_config, tmp_path):
    out = tmp_path / "result.json"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "evaluate", str(evaluate_config), "--json", "--out", str(out)
    )
    assert code == 0, stderr
    printed = _strict_json(stdout)
    assert printed == json.loads(out.read_text())
    assert set(printed) >= {"metrics", "stderr", "config", "seed"}
    assert "expected log-growth" in stderr and stderr.rstrip().endswith(f"wrote {out}")


def test_evaluate_quiet_prints_only_the_path_written(monkeypatch, capsys, evaluate_config, tmp_path):
    out = tmp_path / "result.json"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "evaluate", str(evaluate_config), "--quiet", "--out", str(out)
    )
    assert code == 0 and stdout == ""
    assert stderr.strip() == f"wrote {out}"
    code, stdout, stderr = run_cli(monkeypatch, capsys, "evaluate", str(evaluate_config), "--quiet", "--json")
    assert code == 0 and stderr == "" and set(_strict_json(stdout)) >= {"metrics", "stderr"}


def test_errors_still_show_when_quiet(monkeypatch, capsys, evaluate_config):
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "evaluate", str(evaluate_config), "--quiet", "--set", "paths=-1"
    )
    assert code == 2 and stdout == "" and "paths" in stderr


def test_run_json_and_quiet(monkeypatch, capsys, tmp_path):
    cfg = make_config(
        paths=1024,
        horizon_days=10,
        policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}, "rebalance": 1},
        objective={"maximize": "log_growth"},
        optimizer={"method": "optax", "steps": 20, "replicates": 1},
    )
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(
        monkeypatch, capsys, "run", str(path), "--out", str(out), "--no-report", "--quiet", "--json"
    )
    assert code == 0, stderr
    printed = _strict_json(stdout)
    saved = json.loads((out / "results.json").read_text())
    assert printed == saved and set(printed) >= {"policy", "out_of_sample", "optimizer"}
    # One replicate: the policy's standard error is NaN, written as null, never as NaN.
    assert printed["policy_stderr"]["leverage"] is None
    assert stderr.strip() == f"wrote {out / 'results.json'}"


def test_json_text_writes_nan_and_infinities_as_result_files_do(tmp_path):
    data = {"a": math.nan, "b": [math.inf, -math.inf], "c": np.float64(1.5), "d": np.arange(2)}
    write_json(tmp_path / "r.json", data)
    assert _strict_json(json_text(data)) == json.loads((tmp_path / "r.json").read_text())
    assert _strict_json(json_text(data))["c"] == 1.5
