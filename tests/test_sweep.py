"""Sweeps: batching, resume after interruption, identical numbers on 1 or 2 devices and on Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import yaml
from conftest import make_config
from test_config_cli import run_cli

import levopt
from levopt.io import read_json
from levopt.sweep import SweepRunner, run_sweep

SWEEP = {
    "model.sigma": [0.4, 0.6, 0.8],
    "market.borrow_rate": [0.0, 0.1, 0.2],
    "policy.leverage": [2.0, 3.0, 5.0],
}
NUMBERS = ["metrics.log_growth", "metrics.liquidation_probability", "metrics.cvar", "stderr.log_growth"]


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "sweep.yaml"
    path.write_text(yaml.safe_dump(make_config(paths=512, sweep=SWEEP)))
    return path


@pytest.fixture(scope="module")
def baseline(sweep_file, tmp_path_factory):
    return run_sweep(sweep_file, tmp_path_factory.mktemp("base"))


def test_grid_has_one_row_per_point_and_matches_evaluate(baseline, sweep_file):
    assert len(baseline) == 27 and baseline["point"].tolist() == list(range(27))
    assert set(baseline.columns) >= {
        "model.sigma",
        "market.borrow_rate",
        "policy.leverage",
        *NUMBERS,
        "wall_s",
    }
    row = baseline[
        (baseline["model.sigma"] == 0.6)
        & (baseline["market.borrow_rate"] == 0.1)
        & (baseline["policy.leverage"] == 5.0)
    ]
    single = levopt.evaluate(
        make_config(
            paths=512,
            model={"kind": "gbm", "mu": 0.0, "sigma": 0.6},
            market__borrow_rate=0.1,
            policy__leverage=5.0,
        )
    )
    assert row["metrics.log_growth"].item() == pytest.approx(single["metrics"]["log_growth"], rel=1e-12)


def test_interrupted_sweep_resumes_without_recomputing(baseline, sweep_file, tmp_path):
    first = SweepRunner(levopt.load_config(sweep_file), tmp_path, limit=10)
    first.run()
    assert first.computed == 10
    files = sorted((tmp_path / "points").glob("*/results.json"))
    stamps = {f: f.stat().st_mtime_ns for f in files}
    second = SweepRunner(levopt.load_config(sweep_file), tmp_path, resume=True)
    frame = second.run()
    assert second.computed == 17 and len(frame) == 27
    assert all(f.stat().st_mtime_ns == t for f, t in stamps.items())
    pd.testing.assert_frame_equal(frame[NUMBERS], baseline[NUMBERS], check_exact=True)


def test_two_forced_cpu_devices_give_identical_numbers(baseline, sweep_file, tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-m", "levopt.cli", "run", str(sweep_file), "--out", str(tmp_path), "--no-report"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(tmp_path / "results.parquet")
    pd.testing.assert_frame_equal(frame[NUMBERS], baseline[NUMBERS], check_exact=True)
    point = next((tmp_path / "points").glob("*/results.json"))
    assert read_json(point)["timings"]["devices"] == 2


def test_local_ray_instance_gives_identical_numbers(baseline, sweep_file, tmp_path, ray_local):
    with warnings.catch_warnings():
        # Ray forks its raylet from a process where JAX threads already run; harmless here.
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        frame = run_sweep(sweep_file, tmp_path, executor="ray")
    pd.testing.assert_frame_equal(frame[NUMBERS], baseline[NUMBERS], check_exact=True)


@pytest.mark.parametrize(
    "args,field",
    [
        (["--set", "sweep={model.sigmaa: [0.5]}"], "sweep.model.sigmaa"),
        (["--set", "sweep={model.sigma: []}"], "sweep.model.sigma"),
        (["--set", "sweep={volatility: [1, 2]}"], "sweep.volatility"),
        (["--executor", "dask"], "--executor"),
        (["--executor", "ray", "--address", "127.0.0.1:1"], "--address"),
    ],
)
def test_bad_sweep_input_is_one_line_and_keeps_finished_points(
    monkeypatch, capsys, sweep_file, tmp_path, args, field
):
    SweepRunner(levopt.load_config(sweep_file), tmp_path, limit=2, batch=2).run()
    before = sorted(p.name for p in (tmp_path / "points").iterdir())
    code, _, err = run_cli(
        monkeypatch, capsys, "run", str(sweep_file), "--out", str(tmp_path), "--resume", "--no-report", *args
    )
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and field in lines[0], err
    assert sorted(p.name for p in (tmp_path / "points").iterdir()) == before


def test_rerun_without_resume_refuses_to_overwrite(monkeypatch, capsys, sweep_file, tmp_path):
    SweepRunner(levopt.load_config(sweep_file), tmp_path, limit=1, batch=1).run()
    code, _, err = run_cli(monkeypatch, capsys, "run", str(sweep_file), "--out", str(tmp_path), "--no-report")
    assert code == 2 and "--resume" in err
