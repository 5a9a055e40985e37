"""Benchmark of the gradient optimizer's building blocks on this machine.

Sections:

* gradient — wall time of ``jax.value_and_grad`` of the mean ``log_growth`` objective with respect
  to a 52-segment leverage ``schedule`` (rebalanced daily, 365 steps, float64, every cost term on)
  against one forward evaluation of the same objective, compile excluded, median of interleaved
  repeats; for GBM and GARCH(1,1)-t. Two ways of feeding the noise: pre-drawn and passed in (what
  ``levopt.optimize.gradient.optimize_gradient`` does: common random numbers, one chunk) and drawn
  inside the scan (what ``levopt.evaluate`` does).
* finite differences — the same gradient by central finite differences of the numpy reference
  (:mod:`numpy_engine`, driven by the very same shocks): 2 x 52 forward evaluations, timed in full
  (or for a subset of the parameters and scaled, with ``--fd-params``), and the relative error
  between the JAX gradient and the finite-difference one.
* run — wall time of a whole ``levopt.runner.run`` of ``configs/quickstart.yaml`` (search, out-of-
  sample evaluation, trajectories, leverage profile), run twice in one process; the time spent
  tracing, lowering and compiling (from ``jax.monitoring`` events) is reported apart, with the
  functions compiled in each run.

Writes ``benchmarks/results/optimize.json`` and prints markdown tables.

Usage::

    .venv/bin/python benchmarks/bench_optimize.py            # full run (~3 minutes on 2 idle cores)
    .venv/bin/python benchmarks/bench_optimize.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpy_engine as ne  # noqa: E402
from _common import finish, machine  # noqa: E402
from bench_engine import GARCH_T, GBM, MARKET, timed, versions  # noqa: E402

import levopt  # noqa: E402  (enables float64)
from levopt.objectives import get_metric  # noqa: E402

NAME = "optimize"
RESULTS = HERE / "results"
QUICKSTART = HERE.parent / "configs" / "quickstart.yaml"
SEGMENTS = 52
MODELS = {"gbm": GBM, "garch_t": GARCH_T}
MODES = {"given": "noise pre-drawn, passed in (optimizer)", "drawn": "noise drawn in the scan (evaluate)"}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


class CompileTimes:
    """Seconds spent tracing, lowering to MLIR and compiling with XLA, from ``jax.monitoring``.

    A listener cannot be removed, so one instance is registered per process and ``window()``
    collects what happens inside a ``with`` block: ``{"trace_s", "lower_s", "backend_s",
    "total_s", "compiles", "functions"}`` (functions: ``{name: [XLA seconds, compilations]}``).
    """

    EVENTS = {
        "/jax/core/compile/jaxpr_trace_duration": "trace_s",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
        "/jax/core/compile/backend_compile_duration": "backend_s",
    }
    _instance: CompileTimes | None = None

    def __init__(self) -> None:
        self._active: list[dict[str, Any]] = []
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    @classmethod
    def get(cls) -> CompileTimes:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _on_event(self, event: str, duration: float, **kwargs: Any) -> None:
        field = self.EVENTS.get(event)
        if field is None:
            return
        for rec in self._active:
            rec[field] += duration
            if field == "backend_s":
                rec["compiles"] += 1
                fn = rec["functions"][str(kwargs.get("fun_name", "?"))]
                fn[0] += duration
                fn[1] += 1

    @contextlib.contextmanager
    def window(self):
        rec: dict[str, Any] = {"trace_s": 0.0, "lower_s": 0.0, "backend_s": 0.0, "compiles": 0}
        rec["functions"] = defaultdict(lambda: [0.0, 0])
        self._active.append(rec)
        try:
            yield rec
        finally:
            self._active.remove(rec)
            # Tracing events of nested jits are nested in their parent's: the sum is an upper bound.
            rec["total_s"] = rec["trace_s"] + rec["lower_s"] + rec["backend_s"]
            rec["functions"] = dict(sorted(rec["functions"].items(), key=lambda kv: -kv[1][0]))


def schedule_config(model: str, paths: int, steps: int) -> dict[str, Any]:
    # A scalar leverage broadcast to the segments; the benchmark sets the weights itself.
    return {
        "seed": 0,
        "paths": paths,
        "horizon_days": steps,
        "steps_per_day": 1,
        "precision": "float64",
        "model": dict(MODELS[model]),
        "market": dict(MARKET),
        "policy": {"kind": "schedule", "segments": SEGMENTS, "leverage": 2.0, "rebalance": 1},
    }


def initial_schedule() -> np.ndarray:
    """The point where the gradient is taken: 1.5x rising to 3x over the year."""
    return np.linspace(1.5, 3.0, SEGMENTS)


def numpy_model(m: dict[str, Any]) -> ne.GBM | ne.Garch:
    if m["kind"] == "gbm":
        return ne.GBM(m["mu"], m["sigma"])
    return ne.Garch(m["mu"], m["omega"], m["alpha"], m["beta"], m.get("gamma", 0.0), m.get("nu"))


def numpy_noise_from_engine(
    noise: Any, paths: int, nu: float | None = None
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``draw_noise``'s ``(steps, paths, ...)`` output as the reference's ``(paths, steps)`` arrays
    (Student-t noise as (t, 1), with t = cos(theta) sqrt(nu expm1(2E / nu)))."""
    if isinstance(noise, dict) and "exponential" in noise:
        cos = np.asarray(noise["direction"])[..., 0].T[:paths]
        e = np.asarray(noise["exponential"])[..., 0].T[:paths]
        t = np.ascontiguousarray(cos * np.sqrt(nu * np.expm1(2 * e / nu)))
        return t, np.ones_like(t)
    if isinstance(noise, dict):
        return np.ascontiguousarray(np.asarray(noise["z"])[..., 0].T[:paths])
    return np.ascontiguousarray(np.asarray(noise)[..., 0].T[:paths])


def numpy_log_growth(o: ne.Outcome, years: float, ruin_floor: float) -> float:
    """Mean of ``levopt.objectives.metrics.log_growth`` over paths, in numpy."""
    return float(np.mean((o.survival * np.log(np.maximum(o.wealth, ruin_floor)) + o.liq_log_wealth) / years))


def load_average() -> float:
    return os.getloadavg()[0]


# --------------------------------------------------------------------------------------------
# gradient and finite differences
# --------------------------------------------------------------------------------------------


def bench_gradient(
    model: str, paths: int, steps: int, repeats: int, fd_params: int | None, fd_step: float
) -> dict[str, Any]:
    problem = levopt.build(schedule_config(model, paths, steps))
    cfg, key, ctx = problem.cfg, problem.key(0), problem.ctx
    log_growth = get_metric("log_growth").fn
    w0 = jnp.asarray(initial_schedule(), problem.dtype)

    def objective(w: jax.Array, noise: Any) -> jax.Array:
        policy = eqx.tree_at(lambda p: p.weights, problem.policy, w.reshape(SEGMENTS, 1))
        return jnp.mean(log_growth(problem.simulate(key, policy=policy, noise=noise), ctx))

    # As optimize_gradient: the search's noise is drawn once (its time is not part of a step).
    noise = jax.block_until_ready(jax.jit(lambda k: problem.draw_noise(k, paths))(key))
    row: dict[str, Any] = {"model": model, "paths": paths, "steps": steps, "segments": SEGMENTS, "modes": {}}
    grads = {}
    for mode in MODES:
        nz = noise if mode == "given" else None
        t0 = time.perf_counter()
        fwd = jax.jit(objective).lower(w0, nz).compile()
        t1 = time.perf_counter()
        vg = jax.jit(jax.value_and_grad(objective)).lower(w0, nz).compile()
        t2 = time.perf_counter()
        value = float(fwd(w0, nz))
        value_vg, g = jax.block_until_ready(vg(w0, nz))  # warm-up
        t_f, t_g = [], []
        for _ in range(repeats):  # interleaved, so that background load hits both alike
            t_f.append(timed(partial(fwd, w0, nz)))
            t_g.append(timed(partial(vg, w0, nz)))
        grads[mode] = np.asarray(g)
        row["modes"][mode] = {
            "forward_compile_s": t1 - t0,
            "grad_compile_s": t2 - t1,
            "forward_s": t_f,
            "grad_s": t_g,
            "ratio": statistics.median(t_g) / statistics.median(t_f),
            "ratio_best": min(t_g) / min(t_f),
            "value": value,
            "value_from_grad": float(value_vg),
        }
        print(
            f"  {model:8s} {mode}: forward {statistics.median(t_f):.3f} s, value_and_grad "
            f"{statistics.median(t_g):.3f} s, ratio {row['modes'][mode]['ratio']:.2f} "
            f"(compile {t1 - t0:.1f} + {t2 - t1:.1f} s)",
            flush=True,
        )
    row["grad_modes_max_abs_diff"] = float(np.max(np.abs(grads["given"] - grads["drawn"])))

    # Central finite differences of the numpy reference on the same shocks.
    np_noise = numpy_noise_from_engine(noise, paths, MODELS[model].get("nu"))
    ref_model, market = numpy_model(MODELS[model]), ne.Market(**MARKET)

    def f_np(w: np.ndarray) -> float:
        out = ne.simulate(
            ref_model, ne.schedule_targets(w, steps), market, paths=paths, steps=steps, dt=cfg.dt,
            noise=np_noise, rebalance_every=1, dtype=np.float64, ruin_floor=cfg.ruin_floor,
        )  # fmt: skip
        return numpy_log_growth(out, cfg.years, cfg.ruin_floor)

    w_np = np.asarray(w0)
    load0 = load_average()
    t0 = time.perf_counter()
    value_np = f_np(w_np)
    t_value = time.perf_counter() - t0
    idx = list(range(SEGMENTS)) if fd_params is None or fd_params >= SEGMENTS else _spread(fd_params)
    fd = np.full(SEGMENTS, np.nan)
    evals = []
    t0 = time.perf_counter()
    for i in idx:
        e = np.zeros(SEGMENTS)
        e[i] = fd_step
        ta = time.perf_counter()
        up = f_np(w_np + e)
        tb = time.perf_counter()
        down = f_np(w_np - e)
        tc = time.perf_counter()
        evals += [tb - ta, tc - tb]
        fd[i] = (up - down) / (2 * fd_step)
    t_fd = time.perf_counter() - t0
    full = len(idx) == SEGMENTS
    t_fd_full = t_fd * SEGMENTS / len(idx)
    g = grads["given"]
    sel = np.asarray(idx)
    diff = g[sel] - fd[sel]
    t_vg = statistics.median(row["modes"]["given"]["grad_s"])
    row["finite_difference"] = {
        "step": fd_step,
        "params_evaluated": len(idx),
        "full": full,
        "wall_s": t_fd,
        "wall_s_full": t_fd_full,
        "evaluations": 2 * len(idx),
        "numpy_forward_s": evals,
        "numpy_value_s": t_value,
        "numpy_value": value_np,
        "value_abs_diff": abs(value_np - row["modes"]["given"]["value"]),
        "ratio_fd_over_jax_grad": t_fd_full / t_vg,
        "rel_error_l2": float(np.linalg.norm(diff) / np.linalg.norm(fd[sel])),
        "rel_error_max": float(np.max(np.abs(diff)) / np.max(np.abs(fd[sel]))),
        "grad_jax": g.tolist(),
        "grad_fd": fd.tolist(),
        "load_average": [load0, load_average()],
    }
    fdr = row["finite_difference"]
    print(
        f"  {model:8s} numpy FD ({len(idx)} of {SEGMENTS} parameters{'' if full else ', scaled'}): "
        f"{t_fd_full:.1f} s = {fdr['ratio_fd_over_jax_grad']:.0f}x JAX value_and_grad; "
        f"numpy forward {statistics.median(evals):.3f} s; grad rel. error {fdr['rel_error_l2']:.2e} (L2), "
        f"{fdr['rel_error_max']:.2e} (max)",
        flush=True,
    )
    return row


def _spread(n: int) -> list[int]:
    """``n`` segment indices spread over the schedule (first and last included)."""
    return sorted({round(i * (SEGMENTS - 1) / max(n - 1, 1)) for i in range(n)})


# --------------------------------------------------------------------------------------------
# a whole run of the quick-start config
# --------------------------------------------------------------------------------------------


def bench_run(overrides: dict[str, Any], runs: int) -> dict[str, Any]:
    import yaml

    from levopt.config import load_config, set_dotted
    from levopt.runner import run

    data = yaml.safe_load(QUICKSTART.read_text())
    for k, v in overrides.items():
        set_dotted(data, k, v)
    config = load_config(data)
    out: dict[str, Any] = {
        "config": str(QUICKSTART.relative_to(HERE.parent)),
        "overrides": overrides,
        "runs": [],
    }
    compile_times = CompileTimes.get()
    for i in range(runs):
        with compile_times.window() as comp:
            t0 = time.perf_counter()
            result = run(config, base_dir=QUICKSTART.parent)
            wall = time.perf_counter() - t0
        opt = result["optimizer"]
        rec = {
            "wall_s": wall,
            "compile": comp,
            "optimizer_wall_s": opt.get("wall_s"),
            "iterations": opt.get("iterations"),
            "converged": opt.get("converged"),
            "policy": result["policy"],
            "out_of_sample": result["out_of_sample"]["metrics"],
            "load_average": load_average(),
        }
        out["runs"].append(rec)
        print(
            f"  run {i + 1}: {wall:.1f} s, of which trace+lower+compile {comp['total_s']:.1f} s "
            f"({comp['compiles']} XLA compilations, backend {comp['backend_s']:.1f} s); "
            f"optimizer {opt.get('wall_s', float('nan')):.1f} s, {opt.get('iterations')} iterations",
            flush=True,
        )
    first, last = out["runs"][0]["policy"], out["runs"][-1]["policy"]
    out["identical_policy"] = first == last
    return out


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _med_best(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} ({min(xs):.3f})"


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['arch']}), {m['cores']} cores, {m['memory_gib']} GiB; "
        f"jax {res['versions'].get('jax', '?')} ({m['jax_backend']}); {res['date']}"
        f"{' (quick)' if res['quick'] else ''}; load average (1 min) {res['load_average_start'][0]:.1f} at start, "
        f"{res['load_average_end'][0]:.1f} at end.",
        "",
    ]
    if res.get("gradient"):
        r0 = res["gradient"][0]
        lines += [
            f"Gradient of mean log_growth w.r.t. a {SEGMENTS}-segment schedule (rebalanced daily, float64, "
            f"{r0['paths']:,} paths x {r0['steps']} steps, all costs on); seconds, median (best) of "
            f"{len(r0['modes']['given']['forward_s'])} interleaved repeats, compile excluded:",
            "",
            "| model | noise | forward s | value_and_grad s | grad / forward | compile s (fwd + grad) |",
            "| --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for r in res["gradient"]:
            for mode, label in MODES.items():
                d = r["modes"][mode]
                lines.append(
                    f"| {r['model']} | {label} | {_med_best(d['forward_s'])} | {_med_best(d['grad_s'])} | "
                    f"{d['ratio']:.2f}x ({d['ratio_best']:.2f}x) | {d['forward_compile_s']:.1f} + "
                    f"{d['grad_compile_s']:.1f} |"
                )
        lines += [
            "",
            f"Central finite differences of the numpy reference on the same shocks (2 x {SEGMENTS} forward "
            "evaluations) against JAX value_and_grad (noise passed in):",
            "",
            "| model | FD params timed | FD wall s | numpy forward s (median) | JAX value_and_grad s | FD / JAX | "
            "rel. error L2 | rel. error max | value diff |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in res["gradient"]:
            fd = r["finite_difference"]
            timed_params = (
                f"all {SEGMENTS}"
                if fd["full"]
                else f"{fd['params_evaluated']} (scaled x{SEGMENTS / fd['params_evaluated']:.1f})"
            )
            lines.append(
                f"| {r['model']} | {timed_params} | {fd['wall_s_full']:.1f} | "
                f"{statistics.median(fd['numpy_forward_s']):.3f} | "
                f"{statistics.median(r['modes']['given']['grad_s']):.3f} | {fd['ratio_fd_over_jax_grad']:.0f}x | "
                f"{fd['rel_error_l2']:.1e} | {fd['rel_error_max']:.1e} | {fd['value_abs_diff']:.1e} |"
            )
    if res.get("run"):
        rr = res["run"]
        ov = ", ".join(f"{k}={v}" for k, v in rr["overrides"].items())
        lines += [
            "",
            f"Whole `levopt.runner.run` of `{rr['config']}`{f' ({ov})' if ov else ''}, twice in one process; "
            "compile = tracing + lowering + XLA compilation (jax.monitoring events):",
            "",
            "| run | wall s | compile s | XLA compilations | wall - compile s | optimizer s | iterations | "
            "converged |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for i, r in enumerate(rr["runs"], 1):
            c = r["compile"]
            lines.append(
                f"| {i} | {r['wall_s']:.1f} | {c['total_s']:.1f} | {c['compiles']} | "
                f"{r['wall_s'] - c['total_s']:.1f} | {r['optimizer_wall_s']:.1f} | {r['iterations']} | "
                f"{r['converged']} |"
            )
        last = rr["runs"][-1]["compile"]["functions"]
        if last:
            top = ", ".join(f"`{k}` {v[0]:.1f} s ({v[1]}x)" for k, v in list(last.items())[:6])
            lines += ["", f"Compiled again in the last run (XLA seconds, compilations): {top}."]
        lines.append(f"Same optimized policy in every run: {rr['identical_policy']}.")
    return "\n".join(lines) + "\n"


def summary(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in res.get("gradient", []):
        d = r["modes"]["given"]
        out.append(
            {
                "metric": f"value_and_grad / forward, {r['model']} {SEGMENTS}-segment schedule",
                "value": round(d["ratio"], 2),
                "unit": "x",
                "detail": f"{r['paths']:,} x {r['steps']} float64, noise passed in; drawn in the scan "
                f"{r['modes']['drawn']['ratio']:.2f}x",
            }
        )
        fd = r["finite_difference"]
        out.append(
            {
                "metric": f"numpy central FD / JAX value_and_grad, {r['model']}",
                "value": round(fd["ratio_fd_over_jax_grad"], 1),
                "unit": "x",
                "detail": f"{fd['evaluations']} numpy evaluations{'' if fd['full'] else ' (scaled)'}; "
                f"gradient rel. error {fd['rel_error_l2']:.1e}",
            }
        )
    if res.get("run"):
        for i, r in enumerate(res["run"]["runs"], 1):
            out.append(
                {
                    "metric": f"levopt.runner.run quickstart, run {i}",
                    "value": round(r["wall_s"], 1),
                    "unit": "s",
                    "detail": f"compile {r['compile']['total_s']:.1f} s, {r['iterations']} iterations",
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test, ~1 minute)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["gradient", "run"], help="sections not to run")
    ap.add_argument(
        "--fd-params",
        type=int,
        default=None,
        help=f"finite-difference only this many of the {SEGMENTS} parameters and scale the time "
        "(default: all, or 8 with --quick)",
    )
    ap.add_argument(
        "--fd-step",
        type=float,
        default=1e-7,
        help="finite-difference step (default 1e-7: larger steps straddle the kinks of |traded| in the fees)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    args = ap.parse_args(argv)

    if args.quick:
        paths, steps, repeats = 2048, 365, 2
        fd_params = args.fd_params or 8
        # A shorter search on fewer paths; the same code path as the full run.
        run_overrides = {"optimizer.steps": 20, "optimizer.paths": 2000, "paths": 4000}
    else:
        paths, steps, repeats = 8192, 365, 5
        fd_params = args.fd_params
        run_overrides = {}

    res: dict[str, Any] = {
        "name": NAME,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "market": MARKET,
        "models": MODELS,
        "initial_schedule": initial_schedule().tolist(),
        "engine_source_sha256": hashlib.sha256(
            (HERE.parent / "levopt/engine/simulate.py").read_bytes()
        ).hexdigest(),
        "load_average_start": os.getloadavg(),
    }
    t_start = time.perf_counter()
    print(f"bench_optimize: {res['machine']['cpu']}, {res['machine']['cores']} cores, jax {jax.__version__}")
    CompileTimes.get()
    if "gradient" not in args.skip:
        res["gradient"] = [bench_gradient(m, paths, steps, repeats, fd_params, args.fd_step) for m in MODELS]
    if "run" not in args.skip:
        res["run"] = bench_run(run_overrides, runs=2)
    return finish(res, args.out, t_start, markdown, summary, default=_json_default)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return str(x)


if __name__ == "__main__":
    raise SystemExit(main())
