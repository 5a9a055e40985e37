"""Benchmark of the margin engine (``levopt.engine.simulate_outcome``) on this machine.

Sections:

* throughput — path-steps/s of the jit-compiled simulation that ``levopt.runner.evaluate`` runs
  (compile excluded, median of repeats) for GBM static 5x, GBM daily-rebalanced 3x and GARCH-t
  daily-rebalanced 3x, in float32 and float64, against the numpy reference
  (:mod:`numpy_engine`, random numbers from ``numpy.random.default_rng`` included) timed in the
  same run, repeats interleaved so that background load hits both alike; and against the
  random-number limit: ``jax.random.normal`` drawing the same count of numbers (paths x steps,
  one step's draws for all paths at a time, summed so that nothing is materialized), timed in the
  same interleaved rounds — each case's share of it is the fraction of the engine's time that
  drawing its normals alone would take;
* chunk sweep — the same for several ``chunk_size`` values (GBM static 5x);
* memory — peak RSS (``getrusage(RUSAGE_CHILDREN).ru_maxrss`` of a fresh subprocess) and wall
  time of 10,000,000 paths x 365 steps, GBM static 5x, float32 and float64, default chunk size;
* gradient — wall time of ``jax.grad`` of the mean ``log_growth`` with respect to a constant
  leverage against one forward evaluation (in a subprocess, with its peak RSS).

Writes ``benchmarks/results/engine.json`` and prints markdown tables.

Usage::

    .venv/bin/python benchmarks/bench_engine.py            # full run (several minutes)
    .venv/bin/python benchmarks/bench_engine.py --quick    # small sizes, a smoke test
    # one case's throughput only, at a chosen size, written elsewhere:
    .venv/bin/python benchmarks/bench_engine.py --skip chunks memory gradient \
        --cases garch_t_daily_3x --paths 65536 --out /tmp/engine.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpy_engine as ne  # noqa: E402
from _common import finish, machine  # noqa: E402

import levopt  # noqa: E402

# Float64 configs need JAX's x64 mode where this script compiles and calls the simulation (outside
# levopt's scoped entry points); this process is a benchmark, so setting it globally is harmless.
jax.config.update("jax_enable_x64", True)

NAME = "engine"
RESULTS = HERE / "results"
STEPS = 365

# A realistic venue: every cost term is exercised (the work per step does not depend on values).
MARKET = {
    "borrow_rate": 0.08,
    "cash_rate": 0.03,
    "funding_rate": 0.10,
    "fee": 0.0005,
    "slippage": 0.0002,
    "maintenance_margin": 0.005,
    "liquidation_fee": 0.005,
}
GBM = {"kind": "gbm", "mu": 0.2, "sigma": 0.7}
# BTC-like daily GARCH(1,1)-t (DOMAIN.md: alpha ~ 0.12, beta ~ 0.85, 68% annualized volatility).
GARCH_T = {"kind": "garch", "mu": 0.2, "omega": 3.8e-5, "alpha": 0.12, "beta": 0.85, "dist": "t", "nu": 4.0}

SECTIONS = {
    "throughput": ("throughput",),
    "chunks": ("chunk_sweep", "best_chunk_size"),
    "memory": ("memory", "memory_limit_bytes", "memory_ok"),
    "gradient": ("gradient",),
}
"""Result keys of each section (``--skip SECTION --merge`` keeps them from the previous run)."""

CASES: dict[str, dict[str, Any]] = {
    "gbm_static_5x": {"model": GBM, "leverage": 5.0, "rebalance": "never"},
    "gbm_daily_3x": {"model": GBM, "leverage": 3.0, "rebalance": 1},
    "garch_t_daily_3x": {"model": GARCH_T, "leverage": 3.0, "rebalance": 1},
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def config(case: str, *, paths: int, steps: int, precision: str, chunk_size: int = 32768) -> dict[str, Any]:
    spec = CASES[case]
    return {
        "seed": 0,
        "paths": paths,
        "horizon_days": steps,
        "steps_per_day": 1,
        "precision": precision,
        "chunk_size": chunk_size,
        "model": dict(spec["model"]),
        "market": dict(MARKET),
        "policy": {"kind": "constant", "leverage": spec["leverage"], "rebalance": spec["rebalance"]},
    }


def numpy_case(case: str) -> tuple[ne.GBM | ne.Garch, float, int]:
    spec = CASES[case]
    m = spec["model"]
    if m["kind"] == "gbm":
        model: ne.GBM | ne.Garch = ne.GBM(m["mu"], m["sigma"])
    else:
        model = ne.Garch(m["mu"], m["omega"], m["alpha"], m["beta"], m.get("gamma", 0.0), m.get("nu"))
    rebalance = 0 if spec["rebalance"] == "never" else int(spec["rebalance"])
    return model, spec["leverage"], rebalance


def versions() -> dict[str, str]:
    from levopt.problem import versions as lv

    return lv()


def computed_paths(paths: int, chunk_size: int) -> int:
    """Paths the engine actually simulates (whole chunks of whole 256-path blocks)."""
    from levopt.engine.simulate import BLOCK, plan_chunks

    per_chunk, n_chunks = plan_chunks(paths, chunk_size)
    return per_chunk * n_chunks * BLOCK


def compiled_simulation(cfg: dict[str, Any]):
    """``jax.jit(problem.simulate)`` as in ``levopt.runner.evaluate``, compiled ahead of time."""
    problem = levopt.build(cfg)
    key = problem.key(0)
    t0 = time.perf_counter()
    compiled = jax.jit(problem.simulate).lower(key).compile()
    return problem, key, compiled, time.perf_counter() - t0


def rng_limit(paths: int, steps: int, precision: str, sampler: str = "jax"):
    """The random-number limit: ``paths`` x ``steps`` standard normals, compiled.

    One step's draws for all paths at a time (the key folded with the step), reduced by a sum
    inside a ``lax.scan`` over steps, so the count is the engine's and nothing is materialized
    beyond one step. ``sampler``: ``"jax"`` for ``jax.random.normal`` (the limit the share refers
    to), ``"levopt"`` for the sampler the path models use (Box-Muller on written-out threefry,
    :func:`levopt.paths._student_t.normal`). Returns ``(key, compiled)``.
    """
    from levopt.paths._student_t import normal

    dtype = jnp.float64 if precision == "float64" else jnp.float32
    draw = jax.random.normal if sampler == "jax" else normal

    def draw_all(key: jax.Array) -> jax.Array:
        def body(acc: jax.Array, t: jax.Array) -> tuple[jax.Array, None]:
            z = draw(jax.random.fold_in(key, t), (paths,), dtype)
            return acc + jnp.sum(z), None

        return jax.lax.scan(body, jnp.zeros((), dtype), jnp.arange(steps, dtype=jnp.int32))[0]

    key = jax.random.key(0)
    return key, jax.jit(draw_all).lower(key).compile()


def timed(fn) -> float:
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def peak_rss_of(cmd: list[str], timeout: float) -> tuple[dict[str, Any], float, float]:
    """Run ``cmd`` in a fresh launcher process; (child's JSON line, ru_maxrss in bytes, wall s).

    The launcher reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` after waiting for the child, so
    each measurement starts from zero whatever ran before in this process.
    """
    launcher = (
        "import resource, subprocess, sys, json, time\n"
        "t0 = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "wall = time.perf_counter() - t0\n"
        "sys.stderr.write(p.stderr[-4000:])\n"
        "print(json.dumps({'rc': p.returncode, 'stdout': p.stdout, 'wall_s': wall,\n"
        "  'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", launcher, *cmd], capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"launcher failed: {out.stderr[-2000:]}")
    rep = json.loads(out.stdout.strip().splitlines()[-1])
    if rep["rc"] != 0:
        raise RuntimeError(f"child failed (rc {rep['rc']}): {out.stderr[-2000:]}")
    child = json.loads(rep["stdout"].strip().splitlines()[-1])
    return child, rep["maxrss_kib"] * 1024, rep["wall_s"]


def proc_status() -> dict[str, float]:
    """Current and peak resident memory of this process (GB), from /proc/self/status."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def numpy_run(case: str, paths: int, steps: int, dtype: Any, seed: int) -> ne.Outcome:
    """The numpy reference for ``case``, random numbers from ``default_rng(seed)`` drawn per step."""
    model, lev, rebalance = numpy_case(case)
    return ne.simulate(
        model,
        lev,
        ne.Market(**MARKET),
        paths=paths,
        steps=steps,
        dt=1 / 365,
        rebalance_every=rebalance,
        noise=ne.numpy_noise(model, paths, dtype, seed),
        dtype=dtype,
    )


def bench_throughput(
    paths: dict[str, int], steps: int, repeats: int, dtypes: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for case in paths:
        n = paths[case]
        for precision in dtypes:
            np_dtype = np.float64 if precision == "float64" else np.float32
            cfg = config(case, paths=n, steps=steps, precision=precision)
            _, key, compiled, compile_s = compiled_simulation(cfg)
            jax.block_until_ready(compiled(key))  # warm-up (allocations, thread pool)
            lim_key, limit = rng_limit(n, steps, precision)
            _, own_limit = rng_limit(n, steps, precision, "levopt")
            jax.block_until_ready((limit(lim_key), own_limit(lim_key)))

            t_jax, t_np, t_lim, t_own = [], [], [], []
            for r in range(repeats):  # interleaved, so that background load hits all alike
                t_jax.append(timed(partial(compiled, key)))
                t_lim.append(timed(partial(limit, lim_key)))
                t_own.append(timed(partial(own_limit, lim_key)))
                t_np.append(timed(partial(numpy_run, case, n, steps, np_dtype, seed=r)))
            jm, nm, lm = statistics.median(t_jax), statistics.median(t_np), statistics.median(t_lim)
            row = {
                "case": case,
                "precision": precision,
                "paths": n,
                "steps": steps,
                "chunk_size": cfg["chunk_size"],
                "computed_paths": computed_paths(n, cfg["chunk_size"]),
                "jax_compile_s": compile_s,
                "jax_s": t_jax,
                "numpy_s": t_np,
                "rng_limit_s": t_lim,
                "levopt_rng_limit_s": t_own,
                "jax_path_steps_per_s": n * steps / jm,
                "numpy_path_steps_per_s": n * steps / nm,
                "rng_limit_normals_per_s": n * steps / lm,
                "ratio": nm / jm,
                # Throughput as a share of jax.random.normal alone drawing the same count, and of
                # the path models' own normal sampler alone.
                "rng_limit_share": lm / jm,
                "levopt_rng_limit_share": statistics.median(t_own) / jm,
            }
            rows.append(row)
            print(
                f"  throughput {case:17s} {precision}: jax {row['jax_path_steps_per_s'] / 1e6:7.1f} M/s  "
                f"numpy {row['numpy_path_steps_per_s'] / 1e6:6.1f} M/s  ratio {row['ratio']:.2f}  "
                f"RNG limit {row['rng_limit_normals_per_s'] / 1e6:7.1f} M/s  share {row['rng_limit_share']:.2f} "
                f"(of levopt's sampler {row['levopt_rng_limit_share']:.2f})",
                flush=True,
            )
    return rows


def bench_chunks(
    case: str, paths: int, steps: int, chunks: list[int], repeats: int, dtypes: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for precision in dtypes:
        compiled_by_chunk = {}
        for chunk in chunks:
            _, key, compiled, compile_s = compiled_simulation(
                config(case, paths=paths, steps=steps, precision=precision, chunk_size=chunk)
            )
            jax.block_until_ready(compiled(key))
            compiled_by_chunk[chunk] = (key, compiled, compile_s)
        times: dict[int, list[float]] = {c: [] for c in chunks}
        for _ in range(repeats):  # round-robin over chunk sizes
            for chunk, (key, compiled, _) in compiled_by_chunk.items():
                times[chunk].append(timed(partial(compiled, key)))
        for chunk in chunks:
            med = statistics.median(times[chunk])
            rows.append(
                {
                    "case": case,
                    "precision": precision,
                    "paths": paths,
                    "steps": steps,
                    "chunk_size": chunk,
                    "computed_paths": computed_paths(paths, chunk),
                    "compile_s": compiled_by_chunk[chunk][2],
                    "times_s": times[chunk],
                    "path_steps_per_s": paths * steps / med,
                }
            )
            print(
                f"  chunk {chunk:7d} {precision}: {paths * steps / med / 1e6:7.1f} M path-steps/s", flush=True
            )
    return rows


def memory_child(precision: str, paths: int, steps: int) -> dict[str, Any]:
    """In a fresh process: evaluate GBM static 5x at the default chunk size, report stage memory."""
    from levopt.objectives import get_metric

    stages = {"after_import": proc_status()}
    t0 = time.perf_counter()
    problem, key, compiled, compile_s = compiled_simulation(
        config("gbm_static_5x", paths=paths, steps=steps, precision=precision)
    )
    stages["after_compile"] = proc_status()
    t1 = time.perf_counter()
    outcome = jax.block_until_ready(compiled(key))
    sim_s = time.perf_counter() - t1
    stages["after_simulate"] = proc_status()
    growth = float(jnp.mean(get_metric("log_growth").fn(outcome, problem.ctx)))
    stages["after_metric"] = proc_status()
    out_bytes = sum(int(np.prod(a.shape)) * a.dtype.itemsize for a in outcome)
    return {
        "precision": precision,
        "paths": paths,
        "steps": steps,
        "chunk_size": problem.cfg.chunk_size,
        "compile_s": compile_s,
        "simulate_s": sim_s,
        "total_in_process_s": time.perf_counter() - t0,
        "outcome_bytes": out_bytes,
        "mean_log_growth": growth,
        "stages_gb": stages,
    }


def bench_memory(paths: int, steps: int, dtypes: list[str], timeout: float) -> list[dict[str, Any]]:
    rows = []
    for precision in dtypes:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--memory-child",
            precision,
            str(paths),
            str(steps),
        ]
        child, rss, wall = peak_rss_of(cmd, timeout)
        row = child | {
            "peak_rss_bytes": rss,
            "wall_s": wall,
            "path_steps_per_s": paths * steps / child["simulate_s"],
        }
        rows.append(row)
        print(
            f"  memory {precision}: {paths:,} x {steps}: peak RSS {rss / 1e9:.2f} GB, wall {wall:.1f} s "
            f"(simulate {child['simulate_s']:.1f} s, outcome arrays {child['outcome_bytes'] / 1e9:.2f} GB)",
            flush=True,
        )
    return rows


def grad_child(case: str, precision: str, paths: int, steps: int, repeats: int) -> dict[str, Any]:
    """In a fresh process: jax.grad of mean log_growth w.r.t. a constant leverage vs a forward pass."""
    import equinox as eqx

    from levopt.objectives import get_metric

    log_growth = get_metric("log_growth").fn
    problem = levopt.build(config(case, paths=paths, steps=steps, precision=precision))
    key = problem.key(0)
    lev0 = jnp.asarray(CASES[case]["leverage"], problem.dtype)

    def objective(lev: jax.Array, key: jax.Array) -> jax.Array:
        policy = eqx.tree_at(lambda p: p.weights, problem.policy, jnp.reshape(lev, (1,)))
        return jnp.mean(log_growth(problem.simulate(key, policy=policy), problem.ctx))

    t0 = time.perf_counter()
    fwd = jax.jit(objective).lower(lev0, key).compile()
    t1 = time.perf_counter()
    grd = jax.jit(jax.value_and_grad(objective)).lower(lev0, key).compile()
    t2 = time.perf_counter()
    value = float(fwd(lev0, key))
    _, g = grd(lev0, key)
    t_f, t_g = [], []
    for _ in range(repeats):
        t_f.append(timed(partial(fwd, lev0, key)))
        t_g.append(timed(partial(grd, lev0, key)))
    # Central finite difference with common random numbers, as a sanity check of the gradient.
    h = 1e-4 if precision == "float64" else 1e-2
    fd = (float(fwd(lev0 + h, key)) - float(fwd(lev0 - h, key))) / (2 * h)
    return {
        "case": case,
        "precision": precision,
        "paths": paths,
        "steps": steps,
        "chunk_size": problem.cfg.chunk_size,
        "forward_compile_s": t1 - t0,
        "grad_compile_s": t2 - t1,
        "forward_s": t_f,
        "grad_s": t_g,
        "ratio": statistics.median(t_g) / statistics.median(t_f),
        "value": value,
        "grad": float(g),
        "finite_difference": fd,
        "peak_rss_in_process_gb": proc_status().get("VmHWM"),
    }


def bench_grad(
    cases: list[str], precision: str, paths: int, steps: int, repeats: int, timeout: float
) -> list[dict[str, Any]]:
    rows = []
    for case in cases:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--grad-child",
            case,
            precision,
            str(paths),
            str(steps),
            str(repeats),
        ]
        child, rss, wall = peak_rss_of(cmd, timeout)
        row = child | {"peak_rss_bytes": rss, "wall_s": wall}
        rows.append(row)
        print(
            f"  grad {case} {precision}: forward {statistics.median(child['forward_s']):.2f} s, value_and_grad "
            f"{statistics.median(child['grad_s']):.2f} s, ratio {child['ratio']:.2f}, peak RSS {rss / 1e9:.2f} GB "
            f"(grad {child['grad']:.4f}, finite difference {child['finite_difference']:.4f})",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _rate(work: float, times: list[float]) -> tuple[float, float]:
    """(median, best) rate in millions per second of ``work`` done in each of ``times``."""
    return work / statistics.median(times) / 1e6, work / min(times) / 1e6


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['arch']}), {m['cores']} cores, {m['memory_gib']} GiB; "
        f"jax {res['versions'].get('jax', '?')} ({m['jax_backend']}), numpy {res['versions'].get('numpy', '?')}; "
        f"{res['date']}{' (quick)' if res['quick'] else ''}; load average (1 min) "
        f"{res['load_average_start'][0]:.1f} at start, {res['load_average_end'][0]:.1f} at end.",
        *(
            [
                f"Sections {', '.join(res['merged_from']['sections'])} are from the run of {res['merged_from']['date']}."
            ]
            if res.get("merged_from")
            else []
        ),
        "",
        "Throughput in M path-steps/s, compile excluded, as median (best) of the repeats, JAX, numpy "
        "and the RNG limit interleaved; numpy includes its RNG. RNG limit: M normals/s of "
        "`jax.random.normal` alone drawing the same count (one step for all paths at a time, summed); "
        "share = JAX throughput / RNG limit; levopt RNG: the same for the models' own sampler "
        "(Box-Muller on written-out threefry), and the share of it:",
        "",
        "| case | dtype | paths x steps | JAX | numpy | JAX / numpy | RNG limit | share of limit | "
        "levopt RNG | share of it | JAX compile s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in res["throughput"]:
        work = r["paths"] * r["steps"]
        (jm, jb), (nm, nb) = _rate(work, r["jax_s"]), _rate(work, r["numpy_s"])
        limit = ""
        for field in ("rng_limit_s", "levopt_rng_limit_s"):
            if r.get(field):
                lm, lb = _rate(work, r[field])
                limit += f"{lm:.1f} ({lb:.1f}) | {jm / lm:.2f} ({jb / lb:.2f}) | "
            else:
                limit += "- | - | "
        limit = limit.removesuffix(" | ")
        lines.append(
            f"| {r['case']} | {r['precision']} | {r['paths']:,} x {r['steps']} | {jm:.1f} ({jb:.1f}) | "
            f"{nm:.1f} ({nb:.1f}) | {jm / nm:.2f}x ({jb / nb:.2f}x) | {limit} | {r['jax_compile_s']:.1f} |"
        )
    if res.get("chunk_sweep"):
        dtypes = sorted({r["precision"] for r in res["chunk_sweep"]})
        by = {(r["chunk_size"], r["precision"]): r for r in res["chunk_sweep"]}
        chunks = sorted({r["chunk_size"] for r in res["chunk_sweep"]})
        r0 = res["chunk_sweep"][0]
        lines += [
            "",
            f"Chunk size ({r0['case']}, {r0['paths']:,} x {r0['steps']}; M path-steps/s, median (best)):",
            "",
            "| chunk_size | " + " | ".join(dtypes) + " |",
            "| ---: | " + " | ".join("---:" for _ in dtypes) + " |",
        ]
        for c in chunks:
            cells = []
            for d in dtypes:
                row = by[(c, d)]
                med, best = _rate(row["paths"] * row["steps"], row["times_s"])
                cells.append(f"{med:.1f} ({best:.1f})")
            lines.append(f"| {c:,} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(
            "Fastest (best-of): " + ", ".join(f"{d}: {c:,}" for d, c in res["best_chunk_size"].items()) + "."
        )
    if res.get("memory"):
        lines += [
            "",
            "Peak memory (GBM static 5x, default chunk size, fresh subprocess):",
            "",
            "| dtype | paths x steps | peak RSS GB | outcome arrays GB | wall s | simulate s | M path-steps/s |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in res["memory"]:
            lines.append(
                f"| {r['precision']} | {r['paths']:,} x {r['steps']} | {r['peak_rss_bytes'] / 1e9:.2f} | "
                f"{r['outcome_bytes'] / 1e9:.2f} | {r['wall_s']:.1f} | {r['simulate_s']:.1f} | "
                f"{r['path_steps_per_s'] / 1e6:.1f} |"
            )
    if res.get("gradient"):
        lines += [
            "",
            "Gradient of mean log_growth w.r.t. leverage: value_and_grad vs forward, median (best) of the repeats:",
            "",
            "| case | dtype | paths x steps | forward s | value_and_grad s | ratio | peak RSS GB | grad | finite diff |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in res["gradient"]:
            f_med, f_min = statistics.median(r["forward_s"]), min(r["forward_s"])
            g_med, g_min = statistics.median(r["grad_s"]), min(r["grad_s"])
            lines.append(
                f"| {r['case']} | {r['precision']} | {r['paths']:,} x {r['steps']} | {f_med:.2f} ({f_min:.2f}) | "
                f"{g_med:.2f} ({g_min:.2f}) | {g_med / f_med:.2f}x ({g_min / f_min:.2f}x) | "
                f"{r['peak_rss_bytes'] / 1e9:.2f} | {r['grad']:.4f} | {r['finite_difference']:.4f} |"
            )
    return "\n".join(lines) + "\n"


def summary(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Headline numbers for ``benchmarks/results/summary.md`` (see run_all.py)."""
    out = []
    for r in res["throughput"]:
        work = r["paths"] * r["steps"]
        (jm, jb), (nm, nb) = _rate(work, r["jax_s"]), _rate(work, r["numpy_s"])
        out.append(
            {
                "metric": f"{r['case']} {r['precision']} JAX / numpy",
                "value": round(jm / nm, 2),
                "unit": "x",
                "detail": f"median {jm:.1f} vs {nm:.1f} M path-steps/s; best-of ratio {jb / nb:.2f}x",
            }
        )
        if r.get("rng_limit_s"):
            lm, lb = _rate(work, r["rng_limit_s"])
            out.append(
                {
                    "metric": f"{r['case']} {r['precision']} share of the RNG limit",
                    "value": round(jm / lm, 2),
                    "unit": "",
                    "detail": f"jax.random.normal alone {lm:.1f} M normals/s; best-of share {jb / lb:.2f}",
                }
            )
    for d, c in res.get("best_chunk_size", {}).items():
        out.append({"metric": f"fastest chunk_size {d}", "value": c, "unit": "paths"})
    for r in res.get("memory", []):
        out.append(
            {
                "metric": f"peak RSS {r['paths']:,} x {r['steps']} {r['precision']}",
                "value": round(r["peak_rss_bytes"] / 1e9, 2),
                "unit": "GB",
                "detail": f"wall {r['wall_s']:.0f} s",
            }
        )
    for r in res.get("gradient", []):
        out.append(
            {
                "metric": f"grad / forward {r['case']} {r['precision']}",
                "value": round(statistics.median(r["grad_s"]) / statistics.median(r["forward_s"]), 2),
                "unit": "x",
                "detail": f"best-of ratio {min(r['grad_s']) / min(r['forward_s']):.2f}x",
            }
        )
    return out


def best_chunk_sizes(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Fastest chunk size per dtype, by best-of time (the least disturbed by background load)."""
    return {
        d: min((r for r in rows if r["precision"] == d), key=lambda r: min(r["times_s"]))["chunk_size"]
        for d in sorted({r["precision"] for r in rows})
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--memory-child"]:
        print(json.dumps(memory_child(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    if argv[:1] == ["--grad-child"]:
        print(json.dumps(grad_child(argv[1], argv[2], int(argv[3]), int(argv[4]), int(argv[5]))))
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test, ~1 minute)")
    ap.add_argument("--skip", nargs="*", default=[], choices=list(SECTIONS), help="sections not to run")
    ap.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    ap.add_argument("--cases", nargs="*", choices=list(CASES), help="throughput cases to run (default: all)")
    ap.add_argument("--paths", type=int, help="paths of every throughput case (default: per case)")
    ap.add_argument(
        "--merge", action="store_true", help="keep from an existing --out the sections that --skip skips"
    )
    ap.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: rewrite the tables of --out from its raw times",
    )
    args = ap.parse_args(argv)

    if args.render:
        res = json.loads(args.out.read_text())
        if res.get("chunk_sweep"):
            res["best_chunk_size"] = best_chunk_sizes(res["chunk_sweep"])
        res["markdown"], res["summary"] = markdown(res), summary(res)
        args.out.write_text(json.dumps(res, indent=2, default=float) + "\n")
        print(res["markdown"])
        return 0

    dtypes = ["float32", "float64"]
    if args.quick:
        steps, repeats = 30, 2
        tp_paths = dict.fromkeys(CASES, 8192)
        sweep = ("gbm_static_5x", 8192, [2048, 4096, 8192], steps)
        mem_paths, grad_paths, grad_repeats = 200_000, 4096, 2
    else:
        steps, repeats = STEPS, 3
        # GARCH-t keeps the 32,768 paths it had when its sampler was slow, for comparable records.
        tp_paths = {"gbm_static_5x": 200_000, "gbm_daily_3x": 200_000, "garch_t_daily_3x": 32_768}
        # 2^17 paths: every chunk size below tiles it exactly (no padding bias between them); 120
        # steps, as path-steps/s does not depend on the horizon (the scan's work is per step).
        sweep = ("gbm_static_5x", 131_072, [8192, 16384, 32768, 65536, 131072], 120)
        mem_paths, grad_paths, grad_repeats = 10_000_000, 65_536, 4

    res: dict[str, Any] = {
        "name": NAME,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "market": MARKET,
        "cases": CASES,
        # levopt is edited concurrently: record which engine source these numbers are for.
        "engine_source_sha256": hashlib.sha256(
            (HERE.parent / "levopt/engine/simulate.py").read_bytes()
        ).hexdigest(),
    }
    # The machine may be shared: the load average says how much the timings were disturbed.
    res["load_average_start"] = os.getloadavg()
    t_start = time.perf_counter()
    print(
        f"bench_engine: {res['machine']['cpu']}, {res['machine']['cores']} cores, jax {res['versions'].get('jax')}",
        flush=True,
    )
    if args.paths is not None:
        tp_paths = dict.fromkeys(tp_paths, args.paths)
    if args.cases:
        tp_paths = {case: tp_paths[case] for case in args.cases}
    if "throughput" not in args.skip:
        res["throughput"] = bench_throughput(tp_paths, steps, repeats, dtypes)
    else:
        res["throughput"] = []
    if "chunks" not in args.skip:
        case, paths, chunks, sweep_steps = sweep
        res["chunk_sweep"] = bench_chunks(case, paths, sweep_steps, chunks, repeats, dtypes)
        res["best_chunk_size"] = best_chunk_sizes(res["chunk_sweep"])
    if "memory" not in args.skip:
        res["memory"] = bench_memory(mem_paths, steps, dtypes, timeout=900)
        res["memory_limit_bytes"] = 4e9
        res["memory_ok"] = all(r["peak_rss_bytes"] < 4e9 for r in res["memory"])
    if "gradient" not in args.skip:
        res["gradient"] = bench_grad(
            ["gbm_static_5x", "gbm_daily_3x"], "float64", grad_paths, steps, grad_repeats, timeout=600
        )
    if args.merge and args.out.is_file():
        old = json.loads(args.out.read_text())
        for section, keys in SECTIONS.items():
            if section in args.skip:
                res.update({k: old[k] for k in keys if k in old})
        res["merged_from"] = {"date": old.get("date"), "sections": args.skip}
    return finish(res, args.out, t_start, markdown, summary)


if __name__ == "__main__":
    raise SystemExit(main())
