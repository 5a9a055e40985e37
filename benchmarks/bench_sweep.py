"""Benchmark of evaluate-only sweeps (``levopt.sweep.run_sweep``) on this machine.

A 27-point grid (``model.sigma`` x ``market.borrow_rate`` x ``policy.leverage``, GBM, 3x3x3, every
point 8,192 paths x 90 daily steps, daily rebalancing, fees, funding and margin as in the engine
benchmark but no interest on cash, float64).

Sections:

* devices — points/s of the whole sweep (``run_sweep``: batching, simulation, metrics and the
  per-point result files) on 1 CPU device and on 2 forced CPU devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=2``), each in its own fresh subprocess. The
  sweep runs twice in each process and the second is timed; the time spent tracing, lowering and
  compiling (``jax.monitoring`` events) is reported apart, since the sweep compiles again on every
  call. The results of the two device counts must be identical, number for number.
* batching — in the 1-device process, the batched (vmapped) sweep against evaluating the 27 points
  one by one with ``levopt.evaluate`` (as a user would, each call compiling its own programs); and,
  compilation excluded, a one-by-one loop over one program compiled once for all points (the
  simulation and the metrics of ``levopt.evaluate`` with the point's arrays as arguments) against
  the same computation vmapped over the 27 stacked points in one call (what
  ``levopt.sweep.evaluate_batch`` runs): the batching gain itself. All must equal the sweep's
  numbers (relative 1e-12).

On a 2-core machine, 2 forced devices share the same 2 cores: the device comparison checks that
sharding gives the same numbers; its speed is not a multi-device speedup.

Writes ``benchmarks/results/sweep.json`` and prints markdown tables.

Usage::

    .venv/bin/python benchmarks/bench_sweep.py            # full run (~2-3 minutes on 2 idle cores)
    .venv/bin/python benchmarks/bench_sweep.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

NAME = "sweep"
RESULTS = HERE / "results"
SWEEP = {
    "model.sigma": [0.4, 0.6, 0.8],
    "market.borrow_rate": [0.0, 0.1, 0.2],
    "policy.leverage": [2.0, 3.0, 5.0],
}
DEVICE_COUNTS = (1, 2)


def sweep_config(paths: int, steps: int) -> dict[str, Any]:
    from bench_engine import MARKET

    return {
        "name": "bench_sweep",
        "seed": 0,
        "paths": paths,
        "horizon_days": steps,
        "steps_per_day": 1,
        "precision": "float64",
        "model": {"kind": "gbm", "mu": 0.2, "sigma": 0.6},
        # No interest on cash: the swept borrow rate starts at 0 (and must stay >= the cash rate).
        "market": dict(MARKET, cash_rate=0.0),
        "policy": {"kind": "constant", "leverage": 3.0, "rebalance": 1},
        "sweep": SWEEP,
    }


# --------------------------------------------------------------------------------------------
# the child process: one device count
# --------------------------------------------------------------------------------------------


def child(paths: int, steps: int, batching: bool) -> dict[str, Any]:
    """Run the sweep twice (and, with ``batching``, the one-by-one baselines) in this process."""
    import jax
    from bench_optimize import CompileTimes

    import levopt  # noqa: F401  (enables float64)
    from levopt.io import read_json
    from levopt.sweep import run_sweep

    compile_times = CompileTimes.get()
    cfg = sweep_config(paths, steps)
    out: dict[str, Any] = {
        "devices": len(jax.devices()),
        "device_kinds": [str(d) for d in jax.devices()],
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        frame = None
        for i in range(2):
            target = Path(tmp) / f"run{i}"
            with compile_times.window() as comp:
                t0 = time.perf_counter()
                frame = run_sweep(cfg, target)
                wall = time.perf_counter() - t0
            results = [read_json(f) for f in sorted((target / "points").glob("*/results.json"))]
            timings = [r["timings"] for r in results]
            # evaluate_batch reports, per point, its batch's wall time / batch size (compile included).
            batches = sorted(
                {(t["batch_points"], round(t["simulate_s"] * t["batch_points"], 9)) for t in timings}
            )
            out["runs"].append(
                {
                    "wall_s": wall,
                    "points": len(frame),
                    "compile": comp,
                    "batch_sizes": [b[0] for b in batches],
                    "batches_wall_s": sum(b[1] for b in batches),
                    "devices_reported": sorted({t["devices"] for t in timings}),
                }
            )
            print(
                f"    [{out['devices']} device(s)] sweep {i + 1}: {wall:.2f} s for {len(frame)} points, of which "
                f"compile {comp['total_s']:.2f} s ({comp['compiles']} XLA compilations); batches "
                f"{[b[0] for b in batches]}",
                file=sys.stderr,
                flush=True,
            )
        cols = [c for c in frame.columns if c.startswith(("metrics.", "stderr."))]
        frame = frame.sort_values("point")
        out["table"] = {c: frame[c].tolist() for c in ["point", *SWEEP, *cols]}
    if batching:
        out["batching"] = one_by_one(cfg, out["table"])
    return out


def one_by_one(cfg: dict[str, Any], table: dict[str, list]) -> dict[str, Any]:
    """The 27 points one at a time: ``levopt.evaluate`` as is, and with one program compiled once."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from bench_optimize import CompileTimes

    import levopt
    from levopt.config import load_config
    from levopt.engine import simulate_outcome
    from levopt.objectives import metric_arrays
    from levopt.problem import STREAM_PATHS
    from levopt.sweep import expand

    compile_times = CompileTimes.get()
    _, points = expand(load_config(cfg))
    configs = [p.config for p in points]
    labels = [c.removeprefix("metrics.") for c in table if c.startswith("metrics.")]

    # 1. levopt.evaluate, one call per point (each call traces and compiles its own programs).
    with compile_times.window() as comp:
        t0 = time.perf_counter()
        results = [levopt.evaluate(c) for c in configs]
        wall_eval = time.perf_counter() - t0
    evaluate_values = {k: [r["metrics"][k] for r in results] for k in labels}

    # 2. The same computation with the point's arrays as arguments: compiled once, called 27 times.
    problems = [levopt.build(c) for c in configs]
    first = problems[0]
    c0, specs, key = first.cfg, first.cfg.metric_specs(), first.key(STREAM_PATHS)

    def simulate(model, policy, market):
        return simulate_outcome(
            key, model, policy, market, paths=c0.paths, steps=c0.steps, dt=c0.dt, dtype=first.dtype,
            ruin_floor=c0.ruin_floor, chunk_size=c0.chunk_size, n_draws=first.n_draws,
        )  # fmt: skip

    args0 = (first.model, first.policy, first.market)
    t0 = time.perf_counter()
    sim = jax.jit(simulate).lower(*args0).compile()
    outcome0 = sim(*args0)
    metrics = jax.jit(lambda o: metric_arrays(o, first.ctx, specs)).lower(outcome0).compile()
    compile_once_s = time.perf_counter() - t0
    jax.block_until_ready(metrics(outcome0))  # warm-up
    t0 = time.perf_counter()
    once_values: dict[str, list[float]] = {k: [] for k in labels}
    for p in problems:
        values, _ = metrics(sim(p.model, p.policy, p.market))
        for k in labels:
            once_values[k].append(float(values[k]))
    wall_once = time.perf_counter() - t0

    # 3. The batched computation of the sweep (as levopt.sweep.evaluate_batch: the points' arrays
    #    stacked and vmapped), all 27 points in one call, compiled once beforehand.
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[(p.model, p.policy, p.market) for p in problems])

    def batched(items):
        return jax.vmap(lambda item: metric_arrays(simulate(*item), first.ctx, specs))(items)

    t0 = time.perf_counter()
    batch_fn = jax.jit(batched).lower(stacked).compile()
    compile_batch_s = time.perf_counter() - t0
    jax.block_until_ready(batch_fn(stacked))  # warm-up
    t0 = time.perf_counter()
    values, _ = jax.block_until_ready(batch_fn(stacked))
    wall_batch = time.perf_counter() - t0
    batch_values = {k: np.asarray(values[k]).tolist() for k in labels}

    def max_rel_diff(values: dict[str, list[float]]) -> float:
        worst = 0.0
        for k in labels:
            a, b = values[k], table[f"metrics.{k}"]
            worst = max(worst, max(abs(x - y) / max(abs(y), 1e-300) for x, y in zip(a, b, strict=True)))
        return worst

    out = {
        "points": len(configs),
        "evaluate_wall_s": wall_eval,
        "evaluate_compile": comp,
        "evaluate_simulate_s": [r["timings"]["simulate_s"] for r in results],
        "compiled_once_compile_s": compile_once_s,
        "compiled_once_wall_s": wall_once,
        "evaluate_max_rel_diff": max_rel_diff(evaluate_values),
        "compiled_once_max_rel_diff": max_rel_diff(once_values),
        "batched_compile_s": compile_batch_s,
        "batched_wall_s": wall_batch,
        "batched_max_rel_diff": max_rel_diff(batch_values),
    }
    print(
        f"    one by one: levopt.evaluate {wall_eval:.2f} s (compile {comp['total_s']:.2f} s); compiled once "
        f"{wall_once:.2f} s (+ {compile_once_s:.2f} s compile); batched compiled once {wall_batch:.2f} s "
        f"(+ {compile_batch_s:.2f} s compile); max rel. diff to the sweep {out['evaluate_max_rel_diff']:.1e} / "
        f"{out['compiled_once_max_rel_diff']:.1e} / {out['batched_max_rel_diff']:.1e}",
        file=sys.stderr,
        flush=True,
    )
    return out


# --------------------------------------------------------------------------------------------
# the parent: one subprocess per device count
# --------------------------------------------------------------------------------------------


def run_child(devices: int, paths: int, steps: int, batching: bool, timeout: float) -> dict[str, Any]:
    flags = [
        f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(paths),
        str(steps),
        str(int(batching)),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child with {devices} device(s) failed (rc {proc.returncode})")
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    rep["process_wall_s"] = time.perf_counter() - t0
    if rep["devices"] != devices:
        raise RuntimeError(f"asked for {devices} device(s), the child saw {rep['devices']}")
    return rep


def compare_tables(a: dict[str, list], b: dict[str, list]) -> dict[str, Any]:
    """Number-for-number comparison of two sweeps' tables (same columns, same order of points)."""
    cols = [c for c in a if c.startswith(("metrics.", "stderr."))]
    mismatched = [c for c in cols if a[c] != b.get(c)]
    worst = 0.0
    for c in cols:
        for x, y in zip(a[c], b.get(c, []), strict=False):
            if x != y:
                worst = max(worst, abs(x - y) / max(abs(y), 1e-300))
    return {"columns": len(cols), "identical": not mismatched and a["point"] == b["point"],
            "mismatched_columns": mismatched, "max_rel_diff": worst}  # fmt: skip


def points_per_s(points: int, seconds: float) -> float:
    return points / seconds if seconds > 0 else math.nan


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['arch']}), {m['cores']} cores, {m['memory_gib']} GiB; "
        f"jax {res['versions'].get('jax', '?')}; {res['date']}{' (quick)' if res['quick'] else ''}; load average "
        f"(1 min) {res['load_average_start'][0]:.1f} at start, {res['load_average_end'][0]:.1f} at end.",
        "",
        f"27-point evaluate-only sweep (GBM, {res['paths']:,} paths x {res['steps']} steps per point, daily "
        "rebalancing, float64), `run_sweep` run twice per process, the second timed; compile = tracing + lowering "
        "+ XLA compilation within it:",
        "",
        "| CPU devices | sweep wall s | points/s | compile s | XLA compilations | wall - compile s | points/s "
        "without compile | batches | first run wall s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for d in res["devices"]:
        r, first = d["runs"][-1], d["runs"][0]
        c = r["compile"]
        lines.append(
            f"| {d['devices']} | {r['wall_s']:.2f} | {points_per_s(r['points'], r['wall_s']):.1f} | "
            f"{c['total_s']:.2f} | {c['compiles']} | {r['wall_s'] - c['total_s']:.2f} | "
            f"{points_per_s(r['points'], r['wall_s'] - c['total_s']):.1f} | {r['batch_sizes']} | "
            f"{first['wall_s']:.2f} |"
        )
    cmp_ = res["identical"]
    lines += [
        "",
        f"1 vs 2 devices: {cmp_['columns']} metric and standard-error columns, "
        + (
            "**identical** number for number."
            if cmp_["identical"]
            else f"DIFFERENT (max rel. {cmp_['max_rel_diff']:.1e})."
        )
        + " (2 forced devices share the machine's 2 cores: this checks the sharding, not a speedup.)",
    ]
    b = res.get("batching")
    if b:
        sweep = res["devices"][0]["runs"][-1]
        sweep_nc = sweep["wall_s"] - sweep["compile"]["total_s"]
        n = b["points"]
        lines += [
            "",
            "Batched sweep vs one point at a time (1 device, same process):",
            "",
            "| way | wall s | points/s | compile s | max rel. diff to the sweep |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| `run_sweep` (vmapped batches, result files) | {sweep['wall_s']:.2f} | "
            f"{points_per_s(n, sweep['wall_s']):.1f} | {sweep['compile']['total_s']:.2f} | 0 |",
            f"| `levopt.evaluate` x {n} | {b['evaluate_wall_s']:.2f} | {points_per_s(n, b['evaluate_wall_s']):.1f} | "
            f"{b['evaluate_compile']['total_s']:.2f} | {b['evaluate_max_rel_diff']:.0e} |",
            f"| `run_sweep`, compile excluded | {sweep_nc:.2f} | {points_per_s(n, sweep_nc):.1f} | - | 0 |",
            f"| one point at a time, one program compiled once, {n} calls | {b['compiled_once_wall_s']:.2f} | "
            f"{points_per_s(n, b['compiled_once_wall_s']):.1f} | ({b['compiled_once_compile_s']:.2f} before) | "
            f"{b['compiled_once_max_rel_diff']:.0e} |",
            f"| all {n} points vmapped in one call, compiled once | {b['batched_wall_s']:.2f} | "
            f"{points_per_s(n, b['batched_wall_s']):.1f} | ({b['batched_compile_s']:.2f} before) | "
            f"{b['batched_max_rel_diff']:.0e} |",
            "",
            f"Batching gain: {b['evaluate_wall_s'] / sweep['wall_s']:.1f}x for `run_sweep` over `levopt.evaluate` "
            f"one by one, as a user runs them (compilation included); without compilation, the vmapped "
            f"computation is {b['compiled_once_wall_s'] / b['batched_wall_s']:.2f}x a compiled-once loop, and "
            f"`run_sweep` spends {sweep_nc - b['batched_wall_s']:.2f} s besides compiling and computing "
            "(building each point's problem, writing its results file, rebuilding results.parquet after "
            "every point).",
        ]
    return "\n".join(lines) + "\n"


def summary(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for d in res["devices"]:
        r = d["runs"][-1]
        out.append(
            {
                "metric": f"27-point sweep, {d['devices']} CPU device(s)",
                "value": round(points_per_s(r["points"], r["wall_s"]), 2),
                "unit": "points/s",
                "detail": f"{r['wall_s']:.2f} s, compile {r['compile']['total_s']:.2f} s; "
                f"{res['paths']:,} x {res['steps']} per point",
            }
        )
    out.append(
        {"metric": "1 vs 2 devices identical", "value": str(res["identical"]["identical"]), "unit": ""}
    )
    b = res.get("batching")
    if b:
        sweep = res["devices"][0]["runs"][-1]
        sweep_nc = sweep["wall_s"] - sweep["compile"]["total_s"]
        out.append(
            {
                "metric": "batched sweep vs levopt.evaluate one by one",
                "value": round(b["evaluate_wall_s"] / sweep["wall_s"], 1),
                "unit": "x",
                "detail": f"{b['evaluate_wall_s']:.1f} s vs {sweep['wall_s']:.1f} s",
            }
        )
        out.append(
            {
                "metric": "vmapped batch vs compiled-once loop, compile excluded",
                "value": round(b["compiled_once_wall_s"] / b["batched_wall_s"], 2),
                "unit": "x",
                "detail": f"{b['compiled_once_wall_s']:.2f} s vs {b['batched_wall_s']:.2f} s; run_sweep without "
                f"compile {sweep_nc:.2f} s",
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print(json.dumps(child(int(argv[1]), int(argv[2]), bool(int(argv[3]))), default=float))
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test, ~1 minute)")
    ap.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    args = ap.parse_args(argv)
    paths, steps = (2048, 30) if args.quick else (8192, 90)

    from _common import finish, machine
    from bench_engine import versions

    res: dict[str, Any] = {
        "name": NAME,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "paths": paths,
        "steps": steps,
        "sweep": SWEEP,
        "config": sweep_config(paths, steps),
        "load_average_start": os.getloadavg(),
    }
    t_start = time.perf_counter()
    print(f"bench_sweep: {res['machine']['cpu']}, {res['machine']['cores']} cores", flush=True)
    res["devices"] = []
    for n in DEVICE_COUNTS:
        rep = run_child(n, paths, steps, batching=(n == 1), timeout=1200)
        res["devices"].append(rep)
        r = rep["runs"][-1]
        print(
            f"  {n} device(s): {r['wall_s']:.2f} s for {r['points']} points "
            f"({points_per_s(r['points'], r['wall_s']):.1f} points/s), compile {r['compile']['total_s']:.2f} s",
            flush=True,
        )
    res["identical"] = compare_tables(res["devices"][0]["table"], res["devices"][1]["table"])
    one = res["devices"][0]
    if "batching" in one:
        res["batching"] = one.pop("batching")
    print(f"  1 vs 2 devices identical: {res['identical']['identical']}", flush=True)
    finish(res, args.out, t_start, markdown, summary)
    return 0 if res["identical"]["identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
