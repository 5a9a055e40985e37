"""Benchmark of path generation (``levopt.engine.simulate_returns``) on this machine.

Sections:

* throughput — path-steps/s of ``jax.jit(simulate_returns)`` (compile excluded, reported apart)
  for GBM, Merton jump-diffusion, GARCH(1,1) with normal shocks and GJR-GARCH with Student-t
  shocks, in float64 and float32, against a vectorized numpy implementation of the same models
  written here (random numbers from ``numpy.random.default_rng`` drawn inside the timed region),
  repeats interleaved; the two are checked to give the same return variance within Monte Carlo
  error.
* arch — GARCH(1,1)-normal and GJR-GARCH-t paths from the ``arch`` package
  (``arch_model(...).simulate(params, nobs, burn=0)``, one path per call, so N calls) against
  levopt generating the same N x T returns in one call; the unconditional variance of the two is
  compared within Monte Carlo error (paths are independent: the standard error comes from the
  spread of the per-path sample variances).

Writes ``benchmarks/results/paths.json`` and prints markdown tables.

Usage::

    .venv/bin/python benchmarks/bench_paths.py            # full run (~3 minutes on 2 idle cores)
    .venv/bin/python benchmarks/bench_paths.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import statistics
import sys
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from _common import finish, machine  # noqa: E402
from bench_engine import timed, versions  # noqa: E402

import levopt  # noqa: E402  (enables float64)
from levopt.engine import simulate_returns  # noqa: E402

NAME = "paths"
RESULTS = HERE / "results"
DT = 1 / 365
Z = 4.0  # tolerance of the Monte Carlo checks, in standard errors

# BTC-like daily parameters (configs/quickstart.yaml, DOMAIN.md): 68% annualized volatility.
MODELS: dict[str, dict[str, Any]] = {
    "gbm": {"kind": "gbm", "mu": 0.2, "sigma": 0.7},
    # Ten jumps a year of -5% +- 10% on top of a 60% diffusion.
    "merton": {"kind": "merton", "mu": 0.2, "sigma": 0.6, "lam": 10.0, "jump_mean": -0.05, "jump_std": 0.1},
    "garch_normal": {"kind": "garch", "mu": 0.2, "omega": 3.8e-5, "alpha": 0.12, "beta": 0.85},
    # The quick-start model (GJR-GARCH-t ML fit on BTC), started at its unconditional variance.
    "gjr_t": {
        "kind": "garch",
        "mu": 0.3,
        "omega": 3.8e-5,
        "alpha": 0.13,
        "beta": 0.85,
        "gamma": -0.02,
        "dist": "t",
        "nu": 3.2,
    },
}


# --------------------------------------------------------------------------------------------
# numpy implementations of the same models (vectorized over paths; GARCH loops over time)
# --------------------------------------------------------------------------------------------


def numpy_returns(name: str, paths: int, steps: int, dtype: Any, seed: int) -> np.ndarray:
    """Log-returns ``(paths, steps)`` of model ``name`` drawn with ``numpy.random.default_rng``."""
    m = MODELS[name]
    rng = np.random.default_rng(seed)
    f = np.dtype(dtype).type
    if m["kind"] == "gbm":
        z = rng.standard_normal((paths, steps), dtype=dtype)
        return f((m["mu"] - 0.5 * m["sigma"] ** 2) * DT) + f(m["sigma"] * math.sqrt(DT)) * z
    if m["kind"] == "merton":
        lam, jm, js = m["lam"], m["jump_mean"], m["jump_std"]
        k = math.expm1(jm + 0.5 * js**2)
        z = rng.standard_normal((paths, steps), dtype=dtype)
        count = rng.poisson(lam * DT, (paths, steps)).astype(dtype)
        zj = rng.standard_normal((paths, steps), dtype=dtype)
        x = f((m["mu"] - 0.5 * m["sigma"] ** 2 - lam * k) * DT) + f(m["sigma"] * math.sqrt(DT)) * z
        x += count * f(jm) + np.sqrt(count) * f(js) * zj
        return x
    # GARCH / GJR: the variance recursion runs over time, with arrays over paths.
    omega, alpha, beta, gamma = (f(m.get(k, 0.0)) for k in ("omega", "alpha", "beta", "gamma"))
    nu = m.get("nu")
    h = np.full(paths, omega / (1 - alpha - beta - gamma / 2), dtype)
    mu_dt = f(m["mu"] * DT)
    z = rng.standard_normal((steps, paths), dtype=dtype)
    if nu is not None:
        # Student-t scaled to unit variance: z sqrt((nu - 2) / nu / w), w = chi2(nu) / nu.
        w = rng.standard_gamma(nu / 2, (steps, paths), dtype=dtype) / f(nu / 2)
        z *= np.sqrt(f((nu - 2) / nu) / w)
    x = np.empty((steps, paths), dtype)
    for t in range(steps):
        eps = z[t]
        x[t] = mu_dt - f(0.5) * h + np.sqrt(h) * eps
        h = omega + (alpha + gamma * (eps < 0)) * h * eps * eps + beta * h
    return np.ascontiguousarray(x.T)  # the layout simulate_returns returns


def compiled_returns(name: str, paths: int, steps: int, precision: str):
    """``jax.jit(simulate_returns)`` for the model, compiled ahead of time; (fn, key, compile s)."""
    cfg = {
        "seed": 0,
        "paths": paths,
        "horizon_days": steps,
        "steps_per_day": 1,
        "precision": precision,
        "model": dict(MODELS[name]),
        "policy": {"kind": "constant", "leverage": 1.0},
    }
    problem = levopt.build(cfg)
    key = problem.key(0)

    def fn(key):
        return simulate_returns(key, problem.model, paths=paths, steps=steps, dt=DT, dtype=problem.dtype)

    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(key).compile()
    return compiled, key, time.perf_counter() - t0


def per_path_variance(x: np.ndarray) -> tuple[float, float]:
    """Mean over paths of the per-path sample variance, and its standard error (paths independent)."""
    v = np.var(np.asarray(x, np.float64), axis=1, ddof=1)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.shape[0]))


def iid_variance(x: np.ndarray) -> tuple[float, float]:
    """Sample variance of i.i.d. draws and its standard error sqrt((m4 - s^4) / n)."""
    x = np.asarray(x, np.float64).ravel()
    d = x - x.mean()
    s2 = float(np.mean(d * d))
    return s2, float(math.sqrt(max(np.mean(d**4) - s2 * s2, 0.0) / x.size))


def unconditional_variance(name: str) -> float | None:
    """Variance of one step's log-return (diffusion + jumps, or omega / (1 - persistence))."""
    m = MODELS[name]
    if m["kind"] == "gbm":
        return m["sigma"] ** 2 * DT
    if m["kind"] == "merton":
        return (m["sigma"] ** 2 + m["lam"] * (m["jump_mean"] ** 2 + m["jump_std"] ** 2)) * DT
    return m["omega"] / (1 - m["alpha"] - m["beta"] - m.get("gamma", 0.0) / 2)


def finite_fourth_moment(name: str) -> bool:
    """Whether the return variance has a finite-variance estimator (GARCH: beta^2 + 2 a b + k a^2 < 1)."""
    m = MODELS[name]
    if m["kind"] != "garch":
        return True
    nu = m.get("nu")
    if nu is not None and nu <= 4:
        return False
    kappa = 3.0 if nu is None else 3.0 * (nu - 2) / (nu - 4)
    a = m["alpha"] + max(m.get("gamma", 0.0), 0.0)
    return m["beta"] ** 2 + 2 * a * m["beta"] + kappa * a * a < 1


def per_path_log_variance(x: np.ndarray) -> tuple[float, float]:
    """Mean over paths of log(per-path sample variance) and its standard error: a statistic with
    finite variance even when the returns have no 4th moment (heavy-tailed GARCH-t)."""
    v = np.log(np.var(np.asarray(x, np.float64), axis=1, ddof=1))
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.shape[0]))


def variance_check(name: str, a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """The two samples ``a`` (levopt) and ``b`` give the same return variance within Z standard errors.

    When the variance estimator itself has infinite variance (GARCH-t with BTC-like persistence)
    there is no standard error for it: the check is then on the mean log per-path variance
    (``statistic: log_variance``), which compares the two distributions, not the theory.
    """
    if finite_fourth_moment(name):
        statistic = "variance"
        estimator = iid_variance if MODELS[name]["kind"] in ("gbm", "merton") else per_path_variance
    else:
        statistic, estimator = "log_variance", per_path_log_variance
    va, sa = estimator(a)
    vb, sb = estimator(b)
    z = (va - vb) / math.sqrt(sa * sa + sb * sb)
    out = {
        "statistic": statistic,
        "theory": unconditional_variance(name),
        "levopt": va,
        "levopt_se": sa,
        "other": vb,
        "other_se": sb,
        "z": z,
        "pass": bool(abs(z) < Z),
    }
    if statistic == "log_variance":
        out["levopt_variance"], out["other_variance"] = per_path_variance(a)[0], per_path_variance(b)[0]
        # The mean is at the mercy of a single path: the median and the largest per-path variance.
        va_p, vb_p = (np.var(np.asarray(x, np.float64), axis=1, ddof=1) for x in (a, b))
        out["levopt_median_variance"], out["other_median_variance"] = (
            float(np.median(va_p)),
            float(np.median(vb_p)),
        )
        out["levopt_max_variance"], out["other_max_variance"] = float(va_p.max()), float(vb_p.max())
    return out


# --------------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------------


def bench_throughput(
    sizes: dict[str, int], steps: int, repeats: int, dtypes: list[str]
) -> list[dict[str, Any]]:
    rows = []
    for name, paths in sizes.items():
        for precision in dtypes:
            np_dtype = np.float64 if precision == "float64" else np.float32
            compiled, key, compile_s = compiled_returns(name, paths, steps, precision)
            x_jax = np.asarray(jax.block_until_ready(compiled(key)))[..., 0]  # warm-up, kept for the check
            x_np = numpy_returns(name, paths, steps, np_dtype, seed=0)
            check = variance_check(name, x_jax, x_np)
            del x_jax, x_np
            t_jax, t_np = [], []
            for r in range(repeats):
                t_jax.append(timed(partial(compiled, key)))
                t_np.append(timed(partial(numpy_returns, name, paths, steps, np_dtype, r + 1)))
            row = {
                "model": name,
                "precision": precision,
                "paths": paths,
                "steps": steps,
                "jax_compile_s": compile_s,
                "jax_s": t_jax,
                "numpy_s": t_np,
                "jax_path_steps_per_s": paths * steps / statistics.median(t_jax),
                "numpy_path_steps_per_s": paths * steps / statistics.median(t_np),
                "ratio": statistics.median(t_np) / statistics.median(t_jax),
                "variance_check": check,
            }
            rows.append(row)
            zs = f"{check['statistic']} z {check['z']:+.1f}"
            print(
                f"  throughput {name:12s} {precision}: jax {row['jax_path_steps_per_s'] / 1e6:7.1f} M/s  "
                f"numpy {row['numpy_path_steps_per_s'] / 1e6:6.1f} M/s  ratio {row['ratio']:.2f}  "
                f"({zs}; compile {compile_s:.1f} s)",
                flush=True,
            )
    return rows


def arch_params(name: str) -> tuple[dict[str, Any], list[float]]:
    """``arch_model`` keyword arguments and the parameter vector of model ``name``."""
    m = MODELS[name]
    mu = m["mu"] * DT  # arch's constant mean per step (levopt: mu dt - h/2; the variance is the same)
    if m.get("gamma", 0.0) != 0.0:
        spec = {"vol": "GARCH", "p": 1, "o": 1, "q": 1}
        params = [mu, m["omega"], m["alpha"], m["gamma"], m["beta"]]
    else:
        spec = {"vol": "GARCH", "p": 1, "q": 1}
        params = [mu, m["omega"], m["alpha"], m["beta"]]
    if m.get("dist") == "t":
        spec["dist"] = "t"
        params.append(m["nu"])
    return spec, params


def arch_paths(name: str, paths: int, steps: int, seed: int) -> np.ndarray:
    """``paths`` independent paths from ``arch``: one ``simulate`` call per path (its API)."""
    from arch.univariate import Normal, StudentsT, arch_model

    spec, params = arch_params(name)
    am = arch_model(None, mean="Constant", **spec)
    rng = np.random.default_rng(seed)
    am.distribution = StudentsT(seed=rng) if spec.get("dist") == "t" else Normal(seed=rng)
    out = np.empty((paths, steps))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in range(paths):
            out[p] = am.simulate(params, steps, burn=0)["data"].to_numpy()
    return out


def bench_arch(names: list[str], paths: int, steps: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        compiled, key, compile_s = compiled_returns(name, paths, steps, "float64")
        x_jax = np.asarray(jax.block_until_ready(compiled(key)))[..., 0]
        arch_paths(name, 2, steps, seed=1)  # warm-up: imports, first-call overheads
        t_jax = [timed(partial(compiled, key)) for _ in range(repeats)]
        t0 = time.perf_counter()
        x_arch = arch_paths(name, paths, steps, seed=0)
        t_arch = time.perf_counter() - t0
        t_jax += [timed(partial(compiled, key)) for _ in range(repeats)]  # before and after arch's loop
        check = variance_check(name, x_jax, x_arch)
        row = {
            "model": name,
            "paths": paths,
            "steps": steps,
            "arch_s": t_arch,
            "jax_s": t_jax,
            "jax_compile_s": compile_s,
            "ratio": t_arch / statistics.median(t_jax),
            "arch_params": arch_params(name)[1],
            "variance_check": check,
        }
        rows.append(row)
        print(
            f"  arch {name:12s}: arch {t_arch:.1f} s, levopt {statistics.median(t_jax):.3f} s "
            f"(compile {compile_s:.1f} s), ratio {row['ratio']:.0f}x; {check['statistic']} levopt "
            f"{check['levopt']:.4e} arch {check['other']:.4e} (z {check['z']:+.1f}), theory {check['theory']:.4e}",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _fmt_var(c: dict[str, Any]) -> str:
    verdict = f"z {c['z']:+.1f}, {'ok' if c['pass'] else 'FAIL'}"
    if c["statistic"] == "log_variance":
        return (
            f"variance {c['levopt_variance']:.3e} vs {c['other_variance']:.3e} (no standard error: infinite "
            f"4th moment; per-path median {c['levopt_median_variance']:.2e} vs {c['other_median_variance']:.2e}, "
            f"max {c['levopt_max_variance']:.2g} vs {c['other_max_variance']:.2g}); mean log variance "
            f"{c['levopt']:.3f} ± {c['levopt_se']:.3f} vs {c['other']:.3f} ± {c['other_se']:.3f} ({verdict})"
        )
    return f"{c['levopt']:.3e} ± {c['levopt_se']:.1e} vs {c['other']:.3e} ± {c['other_se']:.1e} ({verdict})"


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['arch']}), {m['cores']} cores, {m['memory_gib']} GiB; "
        f"jax {res['versions'].get('jax', '?')} ({m['jax_backend']}), numpy {res['versions'].get('numpy', '?')}, "
        f"arch {res.get('arch_version', '?')}; {res['date']}{' (quick)' if res['quick'] else ''}; load average "
        f"(1 min) {res['load_average_start'][0]:.1f} at start, {res['load_average_end'][0]:.1f} at end.",
        "",
    ]
    if res.get("throughput"):
        lines += [
            "Path generation, M path-steps/s, median (best) of interleaved repeats; JAX compile excluded, "
            "numpy includes its RNG; variance of the returns, JAX vs numpy:",
            "",
            "| model | dtype | paths x steps | JAX | numpy | JAX / numpy | JAX compile s | variance JAX vs numpy |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in res["throughput"]:
            work = r["paths"] * r["steps"] / 1e6
            jm, jb = work / statistics.median(r["jax_s"]), work / min(r["jax_s"])
            nm, nb = work / statistics.median(r["numpy_s"]), work / min(r["numpy_s"])
            lines.append(
                f"| {r['model']} | {r['precision']} | {r['paths']:,} x {r['steps']} | {jm:.1f} ({jb:.1f}) | "
                f"{nm:.1f} ({nb:.1f}) | {jm / nm:.2f}x | {r['jax_compile_s']:.1f} | "
                f"{_fmt_var(r['variance_check'])} |"
            )
    if res.get("arch"):
        r0 = res["arch"][0]
        lines += [
            "",
            f"GARCH paths against `arch` ({r0['paths']:,} paths x {r0['steps']} steps, float64; arch: one "
            "`simulate(params, nobs, burn=0)` call per path; levopt: one jitted `simulate_returns` call, "
            "compile excluded, median of repeats before and after arch's loop):",
            "",
            "| model | arch s | levopt s | arch / levopt | levopt compile s | unconditional variance | "
            "levopt vs arch |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for r in res["arch"]:
            c = r["variance_check"]
            lines.append(
                f"| {r['model']} | {r['arch_s']:.1f} | {statistics.median(r['jax_s']):.3f} | {r['ratio']:.0f}x | "
                f"{r['jax_compile_s']:.1f} | {c['theory']:.3e} | {_fmt_var(c)} |"
            )
    return "\n".join(lines) + "\n"


def summary(res: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in res.get("throughput", []):
        out.append(
            {
                "metric": f"simulate_returns {r['model']} {r['precision']} JAX / numpy",
                "value": round(r["ratio"], 2),
                "unit": "x",
                "detail": f"{r['jax_path_steps_per_s'] / 1e6:.1f} vs {r['numpy_path_steps_per_s'] / 1e6:.1f} "
                f"M path-steps/s",
            }
        )
    for r in res.get("arch", []):
        c = r["variance_check"]
        out.append(
            {
                "metric": f"arch / levopt, {r['model']} {r['paths']:,} x {r['steps']}",
                "value": round(r["ratio"], 1),
                "unit": "x",
                "detail": f"arch {r['arch_s']:.1f} s vs {statistics.median(r['jax_s']):.3f} s; {c['statistic']} "
                f"check {'ok' if c['pass'] else 'FAIL'} (z {c['z']:+.1f})",
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test, ~1 minute)")
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["throughput", "arch"], help="sections not to run"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / f"{NAME}.json")
    args = ap.parse_args(argv)

    dtypes = ["float64", "float32"]
    if args.quick:
        steps, repeats = 365, 2
        sizes = dict.fromkeys(MODELS, 4096)
        arch_n, arch_t, arch_repeats = 256, 1000, 1
    else:
        steps, repeats = 365, 3
        # GJR-t draws its chi-square mixing variable with jax.random.gamma, ~30x a normal draw on
        # CPU (see the engine benchmark): fewer paths keep the run within minutes.
        sizes = {"gbm": 65_536, "merton": 65_536, "garch_normal": 65_536, "gjr_t": 16_384}
        # arch takes ~2.5-3.5 ms per 1,000-step path here: 4,096 paths ~ 10-15 s per model.
        arch_n, arch_t, arch_repeats = 4096, 1000, 2

    from importlib.metadata import version

    res: dict[str, Any] = {
        "name": NAME,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "arch_version": version("arch"),
        "models": MODELS,
        "dt": DT,
        "load_average_start": os.getloadavg(),
    }
    t_start = time.perf_counter()
    print(f"bench_paths: {res['machine']['cpu']}, {res['machine']['cores']} cores, jax {jax.__version__}")
    if "throughput" not in args.skip:
        res["throughput"] = bench_throughput(sizes, steps, repeats, dtypes)
    if "arch" not in args.skip:
        res["arch"] = bench_arch(["garch_normal", "gjr_t"], arch_n, arch_t, arch_repeats)
    return finish(res, args.out, t_start, markdown, summary)


if __name__ == "__main__":
    raise SystemExit(main())
