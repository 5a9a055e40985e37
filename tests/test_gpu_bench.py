"""``benchmarks/gpu.py`` runs: its quick mode (tiny sizes, on the CPU) measures every kind of figure
the GPU run records, writes them where it is told, and one measurement also runs as a child
process, as each does on a GPU. No GPU figure is checked here, only that the script cannot rot."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def gpu():
    spec = importlib.util.spec_from_file_location("levopt_gpu_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_quick_run_writes_every_figure(gpu, tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--quick", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["quick"] and res["errors"] == [] and res["skipped"] == []
    dev = res["device"]
    assert dev["backend"] == "cpu" and dev["jax"] and dev["device_kind"]
    assert res["sizes"]["chunk_size"] == gpu.sizes(True)["chunk_size"]

    for r in res["rng"]:
        assert positive(r["normals_per_s"]) and positive(r["peak_bytes"])
        # The fused sum really adds standard normals: it is N(0, count).
        assert abs(r["z_of_sum"]) < 5

    measured = [r for r in res["cases"] if "error" not in r]
    assert {r["case"] for r in measured} == set(gpu.CASES)
    assert {r["dtype"] for r in measured} == set(gpu.DTYPES)
    for r in measured:
        assert positive(r["path_steps_per_s"]) and positive(r["share_of_rng_limit"])
        assert r["path_steps_per_s"] == pytest.approx(r["paths"] * r["steps"] / r["best_s"])
        assert r["same_as_first"] and r["chunk_size"] == res["sizes"]["chunk_size"]
        assert set(r["metrics"]) == set(gpu.METRICS)
        assert all(math.isfinite(v) for v in r["metrics"].values())

    (grad,) = [r for r in res["gradient"] if "error" not in r]
    assert positive(grad["grad_over_forward"]) and grad["grad_finite"] and grad["value_matches"]
    assert grad["grad_norm"] > 0

    sweep = res["sweep"]
    assert sweep["points"] == math.prod(len(v) for v in res["sizes"]["sweep_grid"].values()) == 4
    assert positive(sweep["s_per_point"])
    assert "path-steps/s" in res["markdown"]


def test_a_measurement_runs_as_a_child_process(gpu):
    r = gpu.run_job(["rng", "float32"], quick=True, in_process=False, timeout=600)
    assert "error" not in r, r.get("error")
    assert positive(r["normals_per_s"]) and r["kind"] in ("device", "host_rss")


def test_full_run_refuses_a_cpu(gpu, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--in-process", "--out", str(out)]) == 2
    assert "no accelerator" in capsys.readouterr().err
    assert not out.exists()
