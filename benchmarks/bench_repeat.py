"""Repeat runs: what a second call, a second process and a lighter import save, on this machine.

Sections:

* simulate — ``levopt.simulate(config)`` (10,000 x 365 GARCH(1,1) paths, normal shocks, and GBM,
  float64) called repeatedly in one process, against what it did before it was compiled once per
  shape: the engine's ``simulate_returns`` called eagerly, which re-traces and re-compiles its scan
  on every call (``before``, reproduced here with the same config -> model -> key steps). First
  call and median (best) of interleaved repeats, the XLA compilations of each repeated call
  (``jax.monitoring``) and the largest difference between the two answers.
* cache — the persistent compilation cache (``levopt.cache``) across processes: ``levopt
  evaluate`` of a small config (10,000 paths x 30 days) and, unless skipped, ``levopt run
  configs/quickstart.yaml``, each run from the shell in a fresh process with ``LEVOPT_CACHE_DIR``
  pointing at an empty directory (cold), then again (warm), and with ``LEVOPT_CACHE_DIR=off``. The
  same evaluate through the Python API in a fresh process reports where the time goes: import,
  tracing, lowering, XLA compilation (or loading from the cache), cache hits and misses.
* import — wall time of ``python -c "import levopt"`` and of ``import levopt.cli`` (median of
  interleaved runs) against ``import levopt, cvxpy, numpyro, scipy.stats`` (what ``import levopt``
  loaded before those imports were deferred to first use), and which heavy modules each loads.

Every ratio is measured within the same run. The machine is shared: absolute times move with its
load (recorded at start and end), ratios much less.

Writes ``benchmarks/results/repeat.json`` and prints markdown tables.

Usage::

    .venv/bin/python benchmarks/bench_repeat.py                    # ~4 min on the shared 2-core machine
    .venv/bin/python benchmarks/bench_repeat.py --skip quickstart  # ~1.5 min
    .venv/bin/python benchmarks/bench_repeat.py --quick            # small sizes, no quick start
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

NAME = "repeat"
RESULTS = HERE / "results"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SECTIONS = ("simulate", "cache", "quickstart", "import")

MODELS = {
    # BTC-like GARCH(1,1) with normal shocks (the quick start's parameters without the t tails).
    "garch": {"kind": "garch", "mu": 0.3, "omega": 3.8e-5, "alpha": 0.13, "beta": 0.85, "h0": 2.54e-3},
    "gbm": {"kind": "gbm", "mu": 0.0, "sigma": 0.8},
}

EVALUATE_CONFIG = {
    "name": "bench_repeat",
    "seed": 0,
    "paths": 10_000,
    "horizon_days": 30,
    "precision": "float64",
    "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.8},
    "market": {"funding_rate": 0.1, "fee": 0.0005, "maintenance_margin": 0.005},
    "policy": {"kind": "constant", "leverage": 3.0, "rebalance": 1},
}

HEAVY = ("cvxpy", "numpyro", "scipy.stats", "matplotlib", "pandas", "optax", "ray")

COMPILE_EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "backend_s",
}
CACHE_EVENTS = {
    "/jax/compilation_cache/cache_hits": "cache_hits",
    "/jax/compilation_cache/cache_misses": "cache_misses",
}


class Events:
    """Compile durations and cache events from ``jax.monitoring`` (one listener per process)."""

    def __init__(self) -> None:
        import jax

        self.seconds: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        jax.monitoring.register_event_duration_secs_listener(self._duration)
        jax.monitoring.register_event_listener(self._event)

    def _duration(self, event: str, duration: float, **_: Any) -> None:
        if event in COMPILE_EVENTS:
            self.seconds[COMPILE_EVENTS[event]] += duration
            self.counts[COMPILE_EVENTS[event]] += 1

    def _event(self, event: str, **_: Any) -> None:
        if event in CACHE_EVENTS:
            self.counts[CACHE_EVENTS[event]] += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            **{k: self.seconds[k] for k in COMPILE_EVENTS.values()},
            "compiles": self.counts["backend_s"],
            **{k: self.counts[k] for k in CACHE_EVENTS.values()},
        }


def diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    return {k: after[k] - before[k] for k in after}


# --------------------------------------------------------------------------------------------
# simulate: repeated calls in one process
# --------------------------------------------------------------------------------------------


def simulate_before(config: dict[str, Any]) -> Any:
    """``levopt.simulate`` as it was: the same steps, the engine's function called eagerly."""
    import jax
    import numpy as np

    from levopt.config import load_config
    from levopt.engine import simulate_returns
    from levopt.problem import STREAM_PATHS, build_model, dtype_of

    with jax.enable_x64(True):
        cfg = load_config(config)
        model = build_model(cfg)
        key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), STREAM_PATHS)
        x = simulate_returns(key, model, paths=cfg.paths, steps=cfg.steps, dt=cfg.dt, dtype=dtype_of(cfg))
        x = np.asarray(x)
        return x[..., 0] if x.shape[-1] == 1 else x


def bench_simulate(paths: int, days: int, repeats: int, events: Events) -> list[dict[str, Any]]:
    import numpy as np

    import levopt

    ways = {"before": simulate_before, "after": levopt.simulate}
    rows = []
    for model, section in MODELS.items():
        config = {"seed": 0, "paths": paths, "horizon_days": days, "precision": "float64", "model": section}
        first, times, compiles, answers = {}, {w: [] for w in ways}, {w: [] for w in ways}, {}
        for way, fn in ways.items():
            t0 = time.perf_counter()
            answers[way] = fn(config)
            first[way] = time.perf_counter() - t0
        for i in range(repeats):
            # A new seed each repeat: new keys must not recompile either.
            cfg = dict(config, seed=i + 1)
            for way, fn in ways.items():
                e0 = events.snapshot()
                t0 = time.perf_counter()
                fn(cfg)
                times[way].append(time.perf_counter() - t0)
                compiles[way].append(diff(events.snapshot(), e0)["compiles"])
        row = {
            "model": model,
            "paths": paths,
            "steps": days,
            "precision": "float64",
            "first_s": first,
            "repeat_s": times,
            "median_s": {w: statistics.median(times[w]) for w in ways},
            "best_s": {w: min(times[w]) for w in ways},
            "compiles_per_repeat": {w: statistics.median(compiles[w]) for w in ways},
            "max_abs_diff": float(np.max(np.abs(answers["after"] - answers["before"]))),
        }
        row["speedup_repeat"] = row["median_s"]["before"] / row["median_s"]["after"]
        rows.append(row)
        print(
            f"  simulate {model} {paths:,} x {days}: before {row['median_s']['before']:.3f} s/call "
            f"({row['compiles_per_repeat']['before']:.0f} compilations), after {row['median_s']['after']:.3f} s/call "
            f"({row['compiles_per_repeat']['after']:.0f}): {row['speedup_repeat']:.1f}x; "
            f"max |diff| {row['max_abs_diff']:.1e}",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------------------------
# cache: fresh processes, cold and warm
# --------------------------------------------------------------------------------------------


def child_evaluate(config_path: str) -> dict[str, Any]:
    """In a fresh process: import levopt, evaluate the config; where the time went."""
    t0 = time.perf_counter()
    events = Events()
    import levopt
    from levopt.cache import enable_compilation_cache

    t1 = time.perf_counter()
    result = levopt.evaluate(config_path)
    t2 = time.perf_counter()
    return {
        "import_s": t1 - t0,
        "evaluate_s": t2 - t1,
        "cache_dir": str(enable_compilation_cache()),
        **events.snapshot(),
        "metrics": result["metrics"],
    }


def env_with(cache: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env["LEVOPT_CACHE_DIR"] = cache
    return env


def timed(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return wall, out.stdout


def cli(*args: str) -> list[str]:
    # What the `levopt` console script runs.
    return [sys.executable, "-c", "import sys; from levopt.cli import main; sys.exit(main())", *args]


def cache_entries(path: Path) -> int:
    return sum(1 for p in path.iterdir() if p.name.endswith("-cache")) if path.exists() else 0


def bench_cache(tmp: Path, config: dict[str, Any], quickstart: bool, runs: int) -> dict[str, Any]:
    import yaml

    cfg_path = tmp / "evaluate.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    res: dict[str, Any] = {"evaluate_config": config}

    # The Python API in fresh processes: where the time goes.
    api_dir = tmp / "cache_api"
    api = {}
    for label, cache in (("off", "off"), ("cold", str(api_dir)), ("warm", str(api_dir))):
        _, out = timed([sys.executable, __file__, "--child-evaluate", str(cfg_path)], env_with(cache), 600)
        api[label] = json.loads(out.strip().splitlines()[-1])
        api[label]["entries_after"] = cache_entries(api_dir) if cache != "off" else None
        r = api[label]
        print(
            f"  API evaluate, cache {label}: import {r['import_s']:.2f} s, evaluate {r['evaluate_s']:.2f} s "
            f"(trace {r['trace_s']:.2f}, lower {r['lower_s']:.2f}, XLA {r['backend_s']:.2f} s, "
            f"{r['compiles']} programs, {r['cache_hits']} hits, {r['cache_misses']} written)",
            flush=True,
        )
    res["api"] = api
    res["api_identical"] = api["off"]["metrics"] == api["cold"]["metrics"] == api["warm"]["metrics"]

    # The shell: what a user waits for.
    commands = {"evaluate": lambda out: cli("evaluate", str(cfg_path), "--out", str(out / "evaluate.json"))}
    if quickstart:
        commands["quickstart"] = lambda out: cli("run", str(QUICKSTART), "--out", str(out / "quickstart"))
    shell = {}
    for name, make in commands.items():
        cache_dir = tmp / f"cache_{name}"
        # Each repeat starts from an empty cache: cold, then warm, and (evaluate) off in between;
        # the quick start, a minute a run, runs once cold and once warm.
        order = [("cold", str(cache_dir)), ("off", "off"), ("warm", str(cache_dir))]
        if name != "evaluate":
            order = [order[0], order[2]]
        walls: dict[str, list[float]] = {label: [] for label, _ in order}
        n = runs if name == "evaluate" else 1
        for i in range(n):
            if cache_dir.exists():
                for p in cache_dir.iterdir():
                    p.unlink()
            for label, cache in order:
                out = tmp / f"out_{name}_{label}_{i}"
                out.mkdir()
                wall, _ = timed(make(out), env_with(cache), 1200)
                walls[label].append(wall)
                print(f"  shell {name}, cache {label}: {wall:.2f} s", flush=True)
        shell[name] = {
            "wall_s": walls,
            "median_s": {k: statistics.median(v) for k, v in walls.items()},
            "entries": cache_entries(cache_dir),
            "bytes": sum(p.stat().st_size for p in cache_dir.iterdir()),
        }
        m = shell[name]["median_s"]
        shell[name]["cold_over_warm"] = m["cold"] / m["warm"]
        shell[name]["off_over_warm"] = m["off"] / m["warm"] if "off" in m else None
    res["shell"] = shell
    return res


# --------------------------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------------------------


IMPORTS = {
    "import levopt": "import levopt",
    "import levopt.cli": "import levopt.cli",
    "import levopt + what it loaded before (cvxpy, numpyro, scipy.stats)": (
        "import levopt, cvxpy, numpyro, scipy.stats"
    ),
}


def bench_import(runs: int) -> dict[str, Any]:
    env = env_with("off")
    walls: dict[str, list[float]] = {k: [] for k in IMPORTS}
    for _ in range(runs):
        for label, stmt in IMPORTS.items():
            wall, _ = timed([sys.executable, "-c", stmt], env, 300)
            walls[label].append(wall)
    probe = f"import sys, json; {{}}; print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    loaded = {}
    for label in ("import levopt", "import levopt.cli"):
        _, out = timed([sys.executable, "-c", probe.format(IMPORTS[label])], env, 300)
        loaded[label] = json.loads(out.strip().splitlines()[-1])
    res = {
        "wall_s": walls,
        "median_s": {k: statistics.median(v) for k, v in walls.items()},
        "best_s": {k: min(v) for k, v in walls.items()},
        "heavy_modules_loaded": loaded,
    }
    for label, t in res["median_s"].items():
        print(f"  {label}: {t:.2f} s (best {res['best_s'][label]:.2f})", flush=True)
    return res


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['arch']}), {m['cores']} cores, {m['memory_gib']} GiB; jax "
        f"{res['versions'].get('jax', '?')} ({m['jax_backend']}); {res['date']}; load average (1 min) "
        f"{res['load_average_start'][0]:.1f} at start, {res['load_average_end'][0]:.1f} at end.",
        "",
    ]
    if "simulate" in res:
        lines += [
            "`levopt.simulate`, repeated calls in one process (new seed each call), seconds, median (best):",
            "",
            "| model | paths x steps | before: first | before: repeat | after: first | after: repeat "
            "| repeat speed-up | compilations per repeat (before / after) | max abs diff |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
        ]
        for r in res["simulate"]:
            lines.append(
                f"| {r['model']} | {r['paths']:,} x {r['steps']} | {r['first_s']['before']:.2f} | "
                f"{r['median_s']['before']:.3f} ({r['best_s']['before']:.3f}) | {r['first_s']['after']:.2f} | "
                f"{r['median_s']['after']:.3f} ({r['best_s']['after']:.3f}) | **{r['speedup_repeat']:.1f}x** | "
                f"{r['compiles_per_repeat']['before']:.0f} / {r['compiles_per_repeat']['after']:.0f} | "
                f"{r['max_abs_diff']:.1e} |"
            )
        lines.append("")
    if "cache" in res:
        c = res["cache"]
        lines += [
            "Persistent compilation cache, fresh process each run, from the shell (seconds, median):",
            "",
            "| command | cache off | cold (empty cache) | warm | cold / warm | off / warm | entries | size |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, s in c["shell"].items():
            cmd = (
                "`levopt evaluate` 10,000 x 30"
                if name == "evaluate"
                else "`levopt run configs/quickstart.yaml`"
            )
            off = s["median_s"].get("off")
            off_s = "-" if off is None else f"{off:.2f}"
            off_ratio = "-" if off is None else f"{s['off_over_warm']:.1f}x"
            lines.append(
                f"| {cmd} | {off_s} | {s['median_s']['cold']:.2f} | {s['median_s']['warm']:.2f} | "
                f"**{s['cold_over_warm']:.1f}x** | {off_ratio} | {s['entries']} | {s['bytes'] / 2**20:.1f} MiB |"
            )
        lines += [
            "",
            "The same evaluate through the Python API, fresh process (seconds):",
            "",
            "| cache | import | evaluate | trace | lower | XLA compile or cache load | programs | hits | written |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for label, r in c["api"].items():
            lines.append(
                f"| {label} | {r['import_s']:.2f} | {r['evaluate_s']:.2f} | {r['trace_s']:.2f} | {r['lower_s']:.2f} "
                f"| {r['backend_s']:.2f} | {r['compiles']} | {r['cache_hits']} | {r['cache_misses']} |"
            )
        lines += ["", f"Same metrics with the cache off, cold and warm: {c['api_identical']}.", ""]
    if "import" in res:
        i = res["import"]
        lines += [
            "Import (fresh interpreter, wall seconds, median (best) of interleaved runs):",
            "",
            "| statement | s |",
            "| --- | ---: |",
        ]
        for label, t in i["median_s"].items():
            lines.append(f"| `{IMPORTS[label]}` | {t:.2f} ({i['best_s'][label]:.2f}) |")
        lines += [""]
        for label, mods in i["heavy_modules_loaded"].items():
            lines.append(f"`{label}` loads: {', '.join(mods) or 'none'} (of {', '.join(HEAVY)}).")
        lines.append("")
    return "\n".join(lines)


def summary(res: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in res.get("simulate", []):
        rows.append(
            {
                "metric": f"levopt.simulate {r['model']} {r['paths']:,} x {r['steps']} repeat call, before / after",
                "value": round(r["speedup_repeat"], 2),
                "unit": "x",
            }
        )
    for name, s in res.get("cache", {}).get("shell", {}).items():
        rows.append(
            {
                "metric": f"levopt {'evaluate' if name == 'evaluate' else 'run quickstart'} cold / warm cache",
                "value": round(s["cold_over_warm"], 2),
                "unit": "x",
            }
        )
    if "import" in res:
        med = res["import"]["median_s"]
        before = med["import levopt + what it loaded before (cvxpy, numpyro, scipy.stats)"]
        rows.append(
            {
                "metric": "import levopt, with the deferred imports / without",
                "value": round(before / med["import levopt"], 2),
                "unit": "x",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child-evaluate"]:
        print(json.dumps(child_evaluate(argv[1]), default=float))
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, no quick start (~1 minute)")
    ap.add_argument("--skip", action="append", default=[], choices=SECTIONS, help="leave a section out")
    ap.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    args = ap.parse_args(argv)
    skip = set(args.skip) | ({"quickstart"} if args.quick else set())
    paths, days, repeats = (2_048, 90, 3) if args.quick else (10_000, 365, 5)
    config = dict(EVALUATE_CONFIG, paths=2_048) if args.quick else EVALUATE_CONFIG

    from _common import finish, machine
    from bench_engine import versions

    res: dict[str, Any] = {
        "name": NAME,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "load_average_start": os.getloadavg(),
    }
    t_start = time.perf_counter()
    print(f"bench_repeat: {res['machine']['cpu']}, {res['machine']['cores']} cores", flush=True)
    if "simulate" not in skip:
        # This process's own compilations go nowhere persistent: the section measures the
        # in-process reuse of compiled programs, not the disk cache.
        os.environ["LEVOPT_CACHE_DIR"] = "off"
        res["simulate"] = bench_simulate(paths, days, repeats, Events())
    if "cache" not in skip:
        with tempfile.TemporaryDirectory(prefix="bench_repeat_") as tmp:
            res["cache"] = bench_cache(
                Path(tmp), config, "quickstart" not in skip, runs=1 if args.quick else 2
            )
    if "import" not in skip:
        res["import"] = bench_import(runs=3 if args.quick else 5)
    finish(res, args.out, t_start, markdown, summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
