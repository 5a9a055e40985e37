"""GPU benchmark: levopt's engine at 10,000,000 paths x 365 daily steps on one accelerator.

Measured, in float32 and float64, each in its own process (so that each peak memory is its own and
a failure, e.g. out of memory, costs only its row):

* cases — path-steps/s of ``levopt.evaluate`` with a config dict: GBM held (``rebalance: never``),
  GBM rebalanced daily, and the quick start's GJR-GARCH-t rebalanced daily (constant 2x, funding,
  fees, maintenance margin). ``chunk_size`` 2^20 (recorded): ``evaluate`` streams its metrics chunk
  by chunk, so memory is bounded by the chunk, not by the 10M paths. The metrics are the moment
  ones (log growth, mean return, liquidation probability, drawdown): quantiles (VaR, CVaR) would
  simulate a second time. The first call compiles; the throughput is from the calls after it.
* rng — the random-number limit: ``jax.random.normal`` of the same count (paths x steps), drawn
  chunk by chunk inside a ``fori_loop`` and consumed by a sum that XLA fuses with the generator, so
  nothing is materialized. Each case's throughput is reported as a share of it (a GBM path-step
  needs one normal; a GARCH-t path-step one normal and one gamma draw, so its ceiling is lower).
* gradient — ``jax.value_and_grad`` of the mean log growth with respect to a 52-segment leverage
  schedule (GBM, daily rebalancing) against the forward pass at the same size, with the noise drawn
  once and passed in, as the optax optimizer does (``levopt/optimize/gradient.py``); 2^20 paths x
  365, halved until it fits in memory.
* sweep — ``levopt.run_sweep`` of 64 points (8 volatilities x 8 leverages, GBM daily, 131,072 paths
  x 365 each, the sweep's largest vmapped batch size): seconds per point of a second run (the first
  compiles).
* peak memory — ``jax.devices()[0].memory_stats()["peak_bytes_in_use"]`` where the backend reports
  it (GPU, TPU), else the host's peak resident set size.

Writes ``benchmarks/results/gpu.json`` (device, driver and JAX versions, every figure) and prints a
markdown table. A time budget (default 420 s, each measurement allowed to overrun it by 30 s, of the
8 minutes a run may take) skips what is left once it is spent, saying so.

Usage::

    .venv/bin/python benchmarks/gpu.py                  # one GPU, full sizes, under 8 minutes
    .venv/bin/python benchmarks/gpu.py --quick --out /tmp/gpu.json   # tiny sizes, CPU, seconds
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DTYPES = ("float32", "float64")
SEGMENTS = 52

MARKET = {"funding_rate": 0.10, "fee": 0.0005, "slippage": 0.0002, "maintenance_margin": 0.005}
GBM = {"kind": "gbm", "mu": 0.0, "sigma": 0.8}
GARCH_T = {  # the quick start's model (configs/quickstart.yaml)
    "kind": "garch",
    "mu": 0.30,
    "omega": 3.8e-5,
    "alpha": 0.13,
    "beta": 0.85,
    "gamma": -0.02,
    "dist": "t",
    "nu": 3.2,
    "h0": 2.54e-3,
}
CASES = {
    "gbm_static": (GBM, "never", "GBM, held (rebalance never)"),
    "gbm_daily": (GBM, 1, "GBM, rebalanced daily"),
    "garch_t_daily": (GARCH_T, 1, "GJR-GARCH-t (nu 3.2), rebalanced daily"),
}
METRICS = ["log_growth", "mean_return", "liquidation_probability", "max_drawdown"]
SWEEP_GRID = {
    "model.sigma": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "policy.leverage": [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0],
}


def sizes(quick: bool) -> dict[str, Any]:
    """Problem sizes: full (one GPU) or quick (CPU, a few seconds)."""
    if quick:
        return {
            "paths": 2_048,
            "steps": 5,
            "chunk_size": 1_024,
            "repeats": 1,
            "grad_paths": [512],
            "sweep_grid": {k: v[:2] for k, v in SWEEP_GRID.items()},
            "sweep_paths": 256,
        }
    return {
        "paths": 10_000_000,
        "steps": 365,
        "chunk_size": 1 << 20,
        "repeats": 2,
        "grad_paths": [1 << 20, 1 << 19, 1 << 18],
        "sweep_grid": SWEEP_GRID,
        "sweep_paths": 1 << 17,
    }


# --------------------------------------------------------------------------------------------
# measurements (each runs in a child process, or in-process with --in-process)
# --------------------------------------------------------------------------------------------


def peak_memory() -> dict[str, Any]:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return {"peak_bytes": int(stats["peak_bytes_in_use"]), "kind": "device"}
    # ru_maxrss is in KiB on Linux.
    return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "kind": "host_rss"}


def device_info() -> dict[str, Any]:
    import jax
    import jaxlib

    from levopt.cache import cache_dir
    from levopt.problem import versions

    d = jax.devices()[0]
    stats = d.memory_stats() or {}
    try:
        env = jax.print_environment_info(return_string=True)
    except Exception as exc:  # informational only
        env = f"unavailable: {exc}"
    return {
        "backend": jax.default_backend(),
        "devices": [str(x) for x in jax.devices()],
        "device_kind": getattr(d, "device_kind", str(d)),
        "device_count": jax.device_count(),
        "memory_limit_bytes": stats.get("bytes_limit"),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "levopt_versions": versions(),
        "environment": env,
        "levopt_cache_dir": str(cache_dir()),
        "cpu_count": os.cpu_count(),
    }


def case_config(case: str, dtype: str, sz: dict[str, Any]) -> dict[str, Any]:
    model, rebalance, _ = CASES[case]
    return {
        "name": f"gpu_{case}_{dtype}",
        "seed": 0,
        "paths": sz["paths"],
        "horizon_days": sz["steps"],
        "steps_per_day": 1,
        "precision": dtype,
        "chunk_size": sz["chunk_size"],
        "model": dict(model),
        "market": dict(MARKET),
        "policy": {"kind": "constant", "leverage": 2.0, "rebalance": rebalance},
        "metrics": list(METRICS),
    }


def measure_case(case: str, dtype: str, sz: dict[str, Any]) -> dict[str, Any]:
    import levopt

    cfg = case_config(case, dtype, sz)
    t0 = time.perf_counter()
    first = levopt.evaluate(cfg)
    first_s = time.perf_counter() - t0
    runs = []
    for _ in range(sz["repeats"] if first_s < 60 else 1):  # a slow case is timed once
        t0 = time.perf_counter()
        result = levopt.evaluate(cfg)
        runs.append(time.perf_counter() - t0)
    best = min(runs)
    return {
        "case": case,
        "dtype": dtype,
        "paths": cfg["paths"],
        "steps": cfg["horizon_days"],
        "chunk_size": cfg["chunk_size"],
        "first_call_s": first_s,
        "run_s": runs,
        "best_s": best,
        "median_s": statistics.median(runs),
        "path_steps_per_s": cfg["paths"] * cfg["horizon_days"] / best,
        "metrics": result["metrics"],
        "same_as_first": result["metrics"] == first["metrics"],
        "evaluate_timings": result.get("timings"),
        **peak_memory(),
    }


def measure_rng(dtype: str, sz: dict[str, Any]) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    chunk, steps = sz["chunk_size"], sz["steps"]
    n_chunks = math.ceil(sz["paths"] / chunk)
    dt = jnp.dtype(dtype)

    @jax.jit
    def total(key: jax.Array) -> jax.Array:
        def body(i, acc):
            z = jax.random.normal(jax.random.fold_in(key, i), (chunk, steps), dt)
            return acc + jnp.sum(z)

        return jax.lax.fori_loop(0, n_chunks, body, jnp.zeros((), dt))

    with jax.enable_x64(dtype == "float64"):
        key = jax.random.PRNGKey(0)
        t0 = time.perf_counter()
        jax.block_until_ready(total(key))
        first_s = time.perf_counter() - t0
        runs = []
        for i in range(max(2, sz["repeats"])):
            t0 = time.perf_counter()
            value = float(jax.block_until_ready(total(jax.random.PRNGKey(i + 1))))
            runs.append(time.perf_counter() - t0)
    count = n_chunks * chunk * steps
    best = min(runs)
    return {
        "dtype": dtype,
        "normals": count,
        "first_call_s": first_s,
        "run_s": runs,
        "best_s": best,
        "normals_per_s": count / best,
        # The sum of `count` standard normals: |value| / sqrt(count) is a z-score.
        "z_of_sum": value / math.sqrt(count),
        **peak_memory(),
    }


def schedule_config(dtype: str, paths: int, steps: int) -> dict[str, Any]:
    segments = min(SEGMENTS, steps)
    return {
        "seed": 0,
        "paths": paths,
        "horizon_days": steps,
        "precision": dtype,
        "model": dict(GBM),
        "market": dict(MARKET),
        "policy": {"kind": "schedule", "segments": segments, "leverage": 2.0, "rebalance": 1},
    }


def measure_gradient(dtype: str, sz: dict[str, Any]) -> dict[str, Any]:
    import jax

    too_large = []
    for paths in sz["grad_paths"]:
        try:
            with jax.enable_x64(True):  # float32 stays float32: every array carries its dtype
                return {**_gradient_at(paths, dtype, sz), "too_large": too_large}
        except Exception as exc:  # out of memory: try fewer paths
            if "RESOURCE_EXHAUSTED" not in str(exc) and "out of memory" not in str(exc).lower():
                raise
            too_large.append({"paths": paths, "error": str(exc).splitlines()[0][:300]})
    raise RuntimeError(f"the gradient did not fit in memory at any size: {too_large}")


def _gradient_at(paths: int, dtype: str, sz: dict[str, Any]) -> dict[str, Any]:
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    import levopt
    from levopt.objectives import get_metric

    problem = levopt.build(schedule_config(dtype, paths, sz["steps"]))
    key, ctx = problem.key(0), problem.ctx
    log_growth = get_metric("log_growth").fn
    segments = min(SEGMENTS, sz["steps"])
    w0 = jnp.asarray(np.linspace(1.5, 3.0, segments), problem.dtype)

    def objective(w: jax.Array, noise: Any) -> jax.Array:
        policy = eqx.tree_at(lambda p: p.weights, problem.policy, w.reshape(segments, 1))
        return jnp.mean(log_growth(problem.simulate(key, policy=policy, noise=noise), ctx))

    # As optimize_gradient: the search's noise is drawn once and passed in (common random numbers).
    noise = jax.block_until_ready(jax.jit(lambda k: problem.draw_noise(k, paths))(key))
    t0 = time.perf_counter()
    fwd = jax.jit(objective).lower(w0, noise).compile()
    t1 = time.perf_counter()
    vg = jax.jit(jax.value_and_grad(objective)).lower(w0, noise).compile()
    t2 = time.perf_counter()
    jax.block_until_ready(fwd(w0, noise))
    jax.block_until_ready(vg(w0, noise))
    t_f, t_g = [], []
    for _ in range(max(2, sz["repeats"])):  # interleaved
        s = time.perf_counter()
        value = float(jax.block_until_ready(fwd(w0, noise)))
        t_f.append(time.perf_counter() - s)
        s = time.perf_counter()
        value_g, grad = jax.block_until_ready(vg(w0, noise))
        t_g.append(time.perf_counter() - s)
    grad = np.asarray(grad)
    return {
        "dtype": dtype,
        "paths": paths,
        "steps": sz["steps"],
        "segments": segments,
        "compile_forward_s": t1 - t0,
        "compile_grad_s": t2 - t1,
        "forward_s": t_f,
        "grad_s": t_g,
        "forward_best_s": min(t_f),
        "grad_best_s": min(t_g),
        "grad_over_forward": min(t_g) / min(t_f),
        "forward_path_steps_per_s": paths * sz["steps"] / min(t_f),
        "value": value,
        "value_matches": abs(float(value_g) - value) <= 1e-5 * max(1.0, abs(value)),
        "grad_finite": bool(np.all(np.isfinite(grad))),
        "grad_norm": float(np.linalg.norm(grad)),
        **peak_memory(),
    }


def sweep_config(sz: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "gpu_sweep",
        "seed": 0,
        "paths": sz["sweep_paths"],
        "horizon_days": sz["steps"],
        "precision": "float32",
        "chunk_size": sz["sweep_paths"],
        "model": dict(GBM),
        "market": dict(MARKET),
        "policy": {"kind": "constant", "leverage": 2.0, "rebalance": 1},
        "metrics": list(METRICS),
        "sweep": sz["sweep_grid"],
    }


def measure_sweep(sz: dict[str, Any]) -> dict[str, Any]:
    import levopt

    cfg = sweep_config(sz)
    points = math.prod(len(v) for v in cfg["sweep"].values())
    walls = []
    with tempfile.TemporaryDirectory(prefix="levopt_gpu_sweep_") as tmp:
        for i in range(2):  # the first compiles
            t0 = time.perf_counter()
            frame = levopt.run_sweep(cfg, Path(tmp) / f"run{i}")
            walls.append(time.perf_counter() - t0)
    assert len(frame) == points, (len(frame), points)
    return {
        "points": points,
        "paths": cfg["paths"],
        "steps": cfg["horizon_days"],
        "precision": cfg["precision"],
        "grid": {k: len(v) for k, v in cfg["sweep"].items()},
        "first_s": walls[0],
        "second_s": walls[1],
        "s_per_point": walls[1] / points,
        "path_steps_per_s": points * cfg["paths"] * cfg["horizon_days"] / walls[1],
        **peak_memory(),
    }


def measure(job: list[str], sz: dict[str, Any]) -> dict[str, Any]:
    kind, *args = job
    if kind == "info":
        return device_info()
    if kind == "case":
        return measure_case(args[0], args[1], sz)
    if kind == "rng":
        return measure_rng(args[0], sz)
    if kind == "gradient":
        return measure_gradient(args[0], sz)
    if kind == "sweep":
        return measure_sweep(sz)
    raise ValueError(f"unknown job {job}")


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------


def jobs(quick: bool) -> list[list[str]]:
    """Every measurement; ``quick`` keeps each kind and both dtypes but not every combination
    (compiling dominates a tiny run): each case in one dtype, alternating, one gradient."""
    if quick:
        cases = [["case", c, DTYPES[i % 2]] for i, c in enumerate(CASES)]
        gradients = [["gradient", DTYPES[1]]]
    else:
        cases = [["case", c, d] for c in CASES for d in DTYPES]
        gradients = [["gradient", d] for d in DTYPES]
    # GARCH-t last: its gamma draws make it the slowest, so a spent budget skips it, not the rest.
    slow = [j for j in cases if j[1] == "garch_t_daily"]
    fast = [j for j in cases if j not in slow]
    return [["info"], *[["rng", d] for d in DTYPES], *fast, *gradients, ["sweep"], *slow]


def run_job(job: list[str], quick: bool, in_process: bool, timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    if in_process:
        try:
            res = measure(job, sizes(quick))
        except Exception as exc:
            res = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:500]}"}
    else:
        cmd = [sys.executable, __file__, "--child", json.dumps(job)] + (["--quick"] if quick else [])
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            res = {"error": f"timed out after {timeout:.0f} s"}
        else:
            lines = out.stdout.strip().splitlines()
            if out.returncode == 0 and lines:
                res = json.loads(lines[-1])
            else:
                res = {"error": f"exit {out.returncode}: {out.stderr.strip()[-1500:]}"}
    res["job"] = job
    res["wall_s"] = time.perf_counter() - t0
    return res


def assemble(results: list[dict[str, Any]], sz: dict[str, Any]) -> dict[str, Any]:
    by = {tuple(r["job"]): r for r in results}
    rng = {d: by.get(("rng", d), {"error": "skipped (time budget)"}) for d in DTYPES}
    cases = []
    for c in CASES:
        for d in DTYPES:
            r = dict(by.get(("case", c, d), {"error": "skipped (time budget, or --quick)"}))
            rate, limit = r.get("path_steps_per_s"), rng[d].get("normals_per_s")
            if rate and limit:
                r["share_of_rng_limit"] = rate / limit
            r.setdefault("case", c)
            r.setdefault("dtype", d)
            r["label"] = CASES[c][2]
            cases.append(r)
    gradient = [
        {"dtype": d, **by.get(("gradient", d), {"error": "skipped (time budget, or --quick)"})}
        for d in DTYPES
    ]
    return {
        "device": by.get(("info",), {}),
        "sizes": sz,
        "rng": [dict(rng[d], dtype=d) for d in DTYPES],
        "cases": cases,
        "gradient": gradient,
        "sweep": by.get(("sweep",), {"error": "skipped (time budget)"}),
    }


def gib(x: Any) -> str:
    return f"{x / 2**30:.2f}" if isinstance(x, (int, float)) else "-"


def fmt(x: Any, spec: str) -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "-"


def markdown(res: dict[str, Any]) -> str:
    dev = res["device"]
    sz = res["sizes"]
    lines = [
        f"Device: {dev.get('device_kind', '?')} x {dev.get('device_count', '?')} ({dev.get('backend', '?')}), "
        f"jax {dev.get('jax', '?')}; {res['date']}; {sz['paths']:,} paths x {sz['steps']} steps, "
        f"chunk_size {sz['chunk_size']:,}{' (quick)' if res['quick'] else ''}.",
        "",
        "| case | dtype | path-steps/s | share of RNG limit | best s | first call s | peak memory GiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in res["cases"]:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['dtype']} | {r['error'][:80]} | | | | |")
            continue
        lines.append(
            f"| {r['label']} | {r['dtype']} | {r['path_steps_per_s']:.3g} | "
            f"{fmt(r.get('share_of_rng_limit'), '.1%')} | {r['best_s']:.3f} | {r['first_call_s']:.2f} | "
            f"{gib(r['peak_bytes'])} ({r['kind']}) |"
        )
    lines += [
        "",
        "| random-number limit | dtype | normals/s | best s | peak memory GiB |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in res["rng"]:
        if "error" in r or "normals_per_s" not in r:
            lines.append(
                f"| `jax.random.normal`, fused sum | {r['dtype']} | {r.get('error', 'skipped')[:80]} | | |"
            )
            continue
        lines.append(
            f"| `jax.random.normal`, fused sum | {r['dtype']} | {r['normals_per_s']:.3g} | {r['best_s']:.3f} | "
            f"{gib(r['peak_bytes'])} ({r['kind']}) |"
        )
    lines += [
        "",
        "| gradient of | dtype | paths | forward s | value_and_grad s | grad / forward | peak memory GiB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in res["gradient"]:
        if "error" in r:
            lines.append(f"| mean log growth, schedule | {r['dtype']} | {r['error'][:80]} | | | | |")
            continue
        lines.append(
            f"| mean log growth, {r['segments']}-segment schedule, GBM daily | {r['dtype']} | {r['paths']:,} | {r['forward_best_s']:.3f} | {r['grad_best_s']:.3f} "
            f"| {r['grad_over_forward']:.2f}x | {gib(r['peak_bytes'])} ({r['kind']}) |"
        )
    s = res["sweep"]
    lines.append("")
    if "error" in s:
        lines.append(f"Sweep: {s['error'][:200]}")
    else:
        lines.append(
            f"Sweep: {s['points']} points x {s['paths']:,} paths x {s['steps']} steps ({s['precision']}): "
            f"{s['second_s']:.2f} s ({s['s_per_point'] * 1e3:.1f} ms per point, {s['path_steps_per_s']:.3g} "
            f"path-steps/s); first run (compiling) {s['first_s']:.2f} s; peak {gib(s['peak_bytes'])} GiB ({s['kind']})."
        )
    if res.get("skipped"):
        lines += ["", f"Skipped (time budget): {', '.join(' '.join(j) for j in res['skipped'])}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes on any backend (a smoke test, seconds)")
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="start no measurement after this (each may overrun 30 s)",
    )
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="run every measurement in this process (default with --quick; peak memory is then cumulative)",
    )
    ap.add_argument("--allow-cpu", action="store_true", help="run the full sizes even without an accelerator")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(args.child), sizes(args.quick)), default=float))
        return 0

    in_process = args.in_process or args.quick
    t_start = time.perf_counter()
    deadline = t_start + args.budget_s
    results, skipped = [], []
    for job in jobs(args.quick):
        left = deadline - time.perf_counter()
        if left <= 0 and job != ["info"]:
            skipped.append(job)
            continue
        r = run_job(job, args.quick, in_process, timeout=max(left, 0.0) + 30.0)
        results.append(r)
        status = r.get("error", "ok")
        print(f"  {' '.join(job)}: {r['wall_s']:.1f} s, {status[:200]}", flush=True)
        if job == ["info"]:
            if "error" in r:
                print(f"gpu.py: cannot start JAX: {r['error']}", file=sys.stderr)
                return 1
            if r["backend"] == "cpu" and not (args.quick or args.allow_cpu):
                print(
                    "gpu.py: no accelerator found (JAX backend: cpu); run with --quick for a CPU smoke "
                    "test or --allow-cpu to insist",
                    file=sys.stderr,
                )
                return 2
    res = {
        "name": "gpu",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "in_process": in_process,
        "budget_s": args.budget_s,
        "metrics": METRICS,
        **assemble(results, sizes(args.quick)),
        "skipped": skipped,
        "errors": [{"job": r["job"], "error": r["error"]} for r in results if "error" in r],
        "wall_s": time.perf_counter() - t_start,
    }
    res["markdown"] = markdown(res)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print()
    print(res["markdown"])
    print(f"wrote {args.out} ({res['wall_s']:.0f} s)")
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
