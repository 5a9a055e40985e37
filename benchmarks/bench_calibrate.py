"""Benchmark of the Bayesian GARCH calibration (``levopt.calibrate.calibrate``) on this machine.

Sections:

* timing — NUTS calibration of a GARCH(1,1) on 2,500 simulated daily returns (500 warmup +
  500 draws x 2 chains, run sequentially): the first call in this process (compilation included,
  the target is < 60 s on a 2-core CPU) and a second call on other data of the same length (the
  compiled program reused), against ``arch``'s maximum-likelihood fit of the same returns timed
  in the same run (first call and median of 5);
* coverage — the frequentist coverage of the 90% credible intervals (5%–95% posterior quantiles)
  over repeated fits to synthetic series simulated from known parameters; a calibrated posterior
  covers the truth in about 90% of fits (binomial standard error sqrt(0.9·0.1/n)). The 90% Wald
  intervals of ``arch``'s MLE (estimate ± 1.645 standard errors) on the same series are reported
  alongside.

Writes ``benchmarks/results/calibrate.json`` and prints markdown tables.

Usage::

    .venv/bin/python benchmarks/bench_calibrate.py            # full run (several minutes)
    .venv/bin/python benchmarks/bench_calibrate.py --quick    # small sizes, a smoke test
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NAME = "calibrate"

import _common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import levopt  # noqa: E402, F401  (enables float64)
from levopt.calibrate import CalibrationWarning, calibrate  # noqa: E402
from levopt.engine import simulate_returns  # noqa: E402
from levopt.paths import Garch  # noqa: E402

DT = 1.0 / 365.0
TRUTH = {"mu": 0.2, "omega": 4.9e-5, "alpha": 0.10, "beta": 0.85}
"""GARCH(1,1) of a BTC-like asset: 60% long-run annualized volatility, persistence 0.95."""
Z90 = 1.6448536269514722  # standard normal 95% quantile: the half-width of a 90% interval


def truth_table(truth: dict[str, float] = TRUTH) -> dict[str, float]:
    persistence = truth["alpha"] + truth["beta"] + truth.get("gamma", 0.0) / 2
    return truth | {
        "persistence": persistence,
        "vol_long_run": float(np.sqrt(truth["omega"] / (1 - persistence) / DT)),
    }


def simulate_series(n_series: int, n_obs: int, seed: int, truth: dict[str, float] = TRUTH) -> np.ndarray:
    """``(n_series, n_obs)`` independent daily GARCH return series (each starts at the
    unconditional variance, as the likelihood assumes)."""
    model = Garch.from_config(Garch.Config(**truth), DT, jnp.float64)
    x = simulate_returns(
        jax.random.PRNGKey(seed), model, paths=n_series, steps=n_obs, dt=DT, dtype=jnp.float64
    )
    return np.asarray(x)[..., 0]


def arch_fit(returns: np.ndarray) -> Any:
    from arch import arch_model

    return arch_model(returns * 100, mean="Constant", vol="GARCH", p=1, q=1, dist="normal").fit(disp="off")


def arch_params(fit: Any) -> dict[str, tuple[float, float]]:
    """arch's estimates and standard errors in levopt units (omega: percent² -> decimal²)."""
    p, se = fit.params, fit.std_err
    return {
        "omega": (p["omega"] / 1e4, se["omega"] / 1e4),
        "alpha": (p["alpha[1]"], se["alpha[1]"]),
        "beta": (p["beta[1]"], se["beta[1]"]),
    }


def bench_timing(n_obs: int, warmup: int, samples: int, chains: int, seed: int) -> dict[str, Any]:
    series = simulate_series(2, n_obs, seed)
    out: dict[str, Any] = {"n_obs": n_obs, "warmup": warmup, "samples": samples, "chains": chains}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CalibrationWarning)
        t0 = time.perf_counter()
        first = calibrate(series[0], "garch", warmup=warmup, samples=samples, chains=chains, seed=0)
        out["first_call_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = calibrate(series[1], "garch", warmup=warmup, samples=samples, chains=chains, seed=1)
        out["second_call_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit = arch_fit(series[0])
    out["arch_first_s"] = time.perf_counter() - t0
    repeats = []
    for _ in range(5):
        t0 = time.perf_counter()
        arch_fit(series[0])
        repeats.append(time.perf_counter() - t0)
    out["arch_median_s"] = statistics.median(repeats)
    out["diagnostics"] = {"first": first.summary["diagnostics"], "second": second.summary["diagnostics"]}
    mle = arch_params(fit)
    out["posterior_vs_mle"] = {
        k: {
            "posterior_mean": first.summary[k]["mean"],
            "posterior_sd": first.summary[k]["sd"],
            "mle": mle[k][0],
            "mle_se": mle[k][1],
            "z": (first.summary[k]["mean"] - mle[k][0]) / first.summary[k]["sd"],
        }
        for k in mle
    }
    out["target_s"] = 60.0
    out["meets_target"] = out["first_call_s"] < out["target_s"]
    return out


def coverage_study(
    n_fits: int = 40,
    n_obs: int = 2000,
    warmup: int = 300,
    samples: int = 300,
    chains: int = 2,
    seed: int = 100,
    truth: dict[str, float] = TRUTH,
) -> dict[str, Any]:
    """Coverage of the 90% credible intervals over ``n_fits`` synthetic series.

    Returns:
        ``{"coverage": {param: fraction}, "arch_coverage": {...}, "mean_width": {...},
        "binomial_se", "n_fits", ...}``.
    """
    series = simulate_series(n_fits, n_obs, seed, truth)
    target = truth_table(truth)
    names = ["mu", "omega", "alpha", "beta", "persistence", "vol_long_run"]
    hits = {k: [] for k in names}
    widths = {k: [] for k in names}
    arch_hits = {k: [] for k in ("omega", "alpha", "beta")}
    r_hats, divergences, seconds = [], [], []
    for i in range(n_fits):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            t0 = time.perf_counter()
            res = calibrate(series[i], "garch", warmup=warmup, samples=samples, chains=chains, seed=seed + i)
            seconds.append(time.perf_counter() - t0)
        s = res.summary | res.summary["derived"]
        for k in names:
            hits[k].append(s[k]["q05"] <= target[k] <= s[k]["q95"])
            widths[k].append(s[k]["q95"] - s[k]["q05"])
        r_hats.append(res.summary["diagnostics"]["max_r_hat"])
        divergences.append(res.summary["diagnostics"]["divergences"])
        try:
            mle = arch_params(arch_fit(series[i]))
        except Exception:  # arch not installed or failed: leave its coverage out
            mle = {}
        for k, (est, se) in mle.items():
            arch_hits[k].append(abs(est - target[k]) <= Z90 * se)
    return {
        "n_fits": n_fits,
        "n_obs": n_obs,
        "warmup": warmup,
        "samples": samples,
        "chains": chains,
        "truth": target,
        "coverage": {k: float(np.mean(v)) for k, v in hits.items()},
        "arch_coverage": {k: float(np.mean(v)) for k, v in arch_hits.items() if v},
        "mean_width": {k: float(np.mean(v)) for k, v in widths.items()},
        "binomial_se": float(np.sqrt(0.9 * 0.1 / n_fits)),
        "max_r_hat": float(np.max(r_hats)),
        "fits_with_divergences": int(np.sum(np.asarray(divergences) > 0)),
        "median_fit_s": float(np.median(seconds)),
        "first_fit_s": float(seconds[0]),
    }


def machine() -> dict[str, Any]:
    return _common.machine() | {"load_average_1m": os.getloadavg()[0]}


def markdown(timing: dict[str, Any], coverage: dict[str, Any], mach: dict[str, Any], quick: bool) -> str:
    lines = [
        f"Machine: {mach['cpu']} ({mach['arch']}), {mach['cores']} cores, load average "
        f"{mach['load_average_1m']:.1f} at the start{' (quick run)' if quick else ''}.",
        "",
        f"GARCH(1,1) calibration time on {timing['n_obs']:,} daily returns "
        f"({timing['warmup']} warmup + {timing['samples']} draws x {timing['chains']} chains):",
        "",
        "| method | first call s (compile included) | repeat s | target |",
        "| --- | ---: | ---: | --- |",
        f"| levopt NUTS (numpyro) | {timing['first_call_s']:.1f} | {timing['second_call_s']:.1f} | "
        f"< {timing['target_s']:.0f} s: {'met' if timing['meets_target'] else 'NOT met'} |",
        f"| arch MLE | {timing['arch_first_s']:.3f} | {timing['arch_median_s']:.3f} (median of 5) | |",
        "",
        "Posterior mean vs arch MLE on the same returns (z = difference / posterior sd):",
        "",
        "| parameter | posterior mean | posterior sd | MLE | MLE s.e. | z |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, v in timing["posterior_vs_mle"].items():
        lines.append(
            f"| {k} | {v['posterior_mean']:.4g} | {v['posterior_sd']:.3g} | {v['mle']:.4g} | {v['mle_se']:.3g} | "
            f"{v['z']:+.2f} |"
        )
    lines += [
        "",
        f"Coverage of 90% intervals over {coverage['n_fits']} fits of {coverage['n_obs']:,} simulated daily "
        f"returns ({coverage['warmup']} + {coverage['samples']} x {coverage['chains']}; binomial s.e. "
        f"{coverage['binomial_se']:.3f}; max r-hat {coverage['max_r_hat']:.3f}, fits with divergences "
        f"{coverage['fits_with_divergences']}, median fit {coverage['median_fit_s']:.1f} s):",
        "",
        "| parameter | truth | posterior 5-95% coverage | mean interval width | arch Wald 90% coverage |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for k, cov in coverage["coverage"].items():
        arch_cov = coverage["arch_coverage"].get(k)
        lines.append(
            f"| {k} | {coverage['truth'][k]:.4g} | {cov:.3f} | {coverage['mean_width'][k]:.3g} | "
            f"{'' if arch_cov is None else f'{arch_cov:.3f}'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--fits", type=int, default=None, help="coverage fits (default 40, quick 4)")
    args = parser.parse_args()
    quick = args.quick
    mach = machine()
    t_start = time.perf_counter()
    if quick:
        timing = bench_timing(n_obs=1000, warmup=200, samples=200, chains=2, seed=7)
        coverage = coverage_study(n_fits=args.fits or 4, n_obs=1000, warmup=200, samples=200)
    else:
        timing = bench_timing(n_obs=2500, warmup=500, samples=500, chains=2, seed=7)
        coverage = coverage_study(n_fits=args.fits or 40, n_obs=2000, warmup=500, samples=500)
    md = markdown(timing, coverage, mach, quick)
    from levopt.io import write_json
    from levopt.problem import versions

    summary = [
        {
            "metric": "GARCH calibration, first call (compile included)",
            "value": round(timing["first_call_s"], 1),
            "unit": "s",
            "detail": f"{timing['n_obs']} returns, target < 60 s",
        },
        {"metric": "GARCH calibration, repeat", "value": round(timing["second_call_s"], 1), "unit": "s"},
        {"metric": "arch MLE (median of 5)", "value": round(timing["arch_median_s"], 3), "unit": "s"},
    ] + [
        {
            "metric": f"90% interval coverage: {k}",
            "value": round(v, 3),
            "detail": f"{coverage['n_fits']} fits",
        }
        for k, v in coverage["coverage"].items()
    ]
    result = {
        "name": NAME,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": mach,
        "versions": versions(),
        "timing": timing,
        "coverage": coverage,
        "wall_s": time.perf_counter() - t_start,
        "markdown": md,
        "summary": summary,
    }
    write_json(RESULTS / f"{NAME}.json", result)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
