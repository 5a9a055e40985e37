"""Benchmark of the Bayesian DCC-GARCH calibration (``calibrate(..., model="dcc_garch")``).

Data: the last 2,500 daily log-returns of BTC-USD (Yahoo) and ETH/USDT (Binance) from
``../shared/data`` (``btc_usd_daily.csv``, ``eth_usd_daily.csv``), aligned on their common days
with each file's last (partial) bar dropped; when those files are absent, 2,500 steps simulated
from a DCC-GARCH by a numpy recursion (the test suite's).

* timing — NUTS (500 warmup + 500 draws x 2 chains, run one after the other, dense mass matrix):
  the first call in this process with an empty compilation cache (compilation included; the
  target is < 60 s on this machine) and a second call with another seed (the compiled program
  reused);
* the posterior of the DCC parameters and each asset's GARCH margin, with r̂, ESS, divergences;
* the posterior predictive check of the correlations (30-day rolling correlation, the correlation
  on the worst decile of equal-weight days), when the ``dcc_garch`` path model is installed.

Writes ``benchmarks/results/dcc_calibration.json`` and prints a markdown table.

Usage::

    .venv/bin/python benchmarks/bench_dcc_calibration.py            # full run (a few minutes)
    .venv/bin/python benchmarks/bench_dcc_calibration.py --quick    # 1,000 returns, 200 + 200 draws
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
NAME = "dcc_calibration"
DATA = HERE.parents[1] / "shared" / "data"
FILES = ("btc_usd_daily.csv", "eth_usd_daily.csv")
TARGET_S = 60.0

# An empty compilation cache: the first call's time includes compiling the sampler.
os.environ["LEVOPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="levopt-bench-dcc-")

import _common  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from levopt.calibrate import calibrate, posterior_predictive_check  # noqa: E402
from levopt.calibrate.returns import Returns, multi_returns  # noqa: E402
from levopt.data.load import align_prices, load_wide_prices  # noqa: E402
from levopt.errors import ConfigError  # noqa: E402

SYNTHETIC = {
    "mu": [0.3, 0.4],
    "omega": [4.9e-5, 8.0e-5],
    "alpha": [0.10, 0.09],
    "beta": [0.85, 0.87],
    "corr": [[1.0, 0.7], [0.7, 1.0]],
    "dcc_alpha": 0.05,
    "dcc_beta": 0.90,
}


def real_returns(n_obs: int) -> Returns | None:
    """The last ``n_obs`` aligned daily returns of BTC and ETH, or None without the files."""
    paths = [DATA / f for f in FILES]
    if not all(p.is_file() for p in paths):
        return None
    series = [s for p in paths for s in load_wide_prices(p, drop_last_partial=True)]
    common = align_prices(series).close.index
    start = str(common[-(n_obs + 1)].date())
    return multi_returns(paths, steps_per_day=1, drop_last_partial=True, start=start)


def synthetic_returns(n_obs: int, seed: int = 0) -> Returns:
    """DCC-GARCH returns from a numpy recursion (normal shocks), as tests/test_calibrate_dcc.py."""
    rng = np.random.default_rng(seed)
    p = {k: np.asarray(v, float) for k, v in SYNTHETIC.items()}
    a, b, qbar = SYNTHETIC["dcc_alpha"], SYNTHETIC["dcc_beta"], p["corr"]
    h, q, dt = p["omega"] / (1 - p["alpha"] - p["beta"]), qbar.copy(), 1 / 365
    out = np.empty((n_obs, 2))
    for t in range(n_obs):
        d = 1 / np.sqrt(np.diag(q))
        eps = np.linalg.cholesky(q * np.outer(d, d)) @ rng.standard_normal(2)
        out[t] = p["mu"] * dt - h / 2 + np.sqrt(h) * eps
        q = (1 - a - b) * qbar + a * np.outer(eps, eps) + b * q
        h = p["omega"] + p["alpha"] * h * eps**2 + p["beta"] * h
    return Returns(out, dt, source="synthetic", assets=("asset_0", "asset_1"))


def timed_fit(returns: Returns, seed: int, nuts: dict[str, int]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = calibrate(returns, "dcc_garch", seed=seed, **nuts)
    return result, time.perf_counter() - t0


def posterior_table(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keep = [
        k for k, v in summary.items() if isinstance(v, dict) and "mean" in v and v.get("r_hat") is not None
    ]
    keep += [
        f"derived.{k}" for k in ("dcc_persistence", "vol_long_run[0]", "vol_long_run[1]", "corr_last[0,1]")
    ]
    out = {}
    for k in keep:
        s = summary["derived"][k.split(".", 1)[1]] if k.startswith("derived.") else summary[k]
        out[k] = {f: s[f] for f in ("mean", "sd", "q05", "q95", "r_hat", "ess")}
    return out


def ppc_section(result: Any, paths: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        ppc = posterior_predictive_check(result, jax.random.PRNGKey(1), n_paths=paths)
    except ConfigError as exc:  # the dcc_garch path model is not installed
        return {"skipped": str(exc)}
    keep = ("corr[0,1]", "rolling_corr_mean[0,1]", "rolling_corr_q05[0,1]", "rolling_corr_q95[0,1]")
    keep += ("rolling_corr_sd[0,1]", "tail_corr[0,1]")
    return {
        "seconds": time.perf_counter() - t0,
        "n_paths": ppc["n_paths"],
        "statistics": {k: ppc["statistics"][k] for k in keep},
    }


def markdown(res: dict[str, Any]) -> str:
    t, m = res["timing"], res["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['arch']}), {m['cores']} cores, load average {m['load_average_1m']:.1f} "
        f"at the start{' (quick run)' if res['quick'] else ''}.",
        "",
        f"DCC-GARCH calibration of {t['n_obs']:,} daily returns x {t['n_assets']} assets ({res['data']}; "
        f"{t['warmup']} warmup + {t['samples']} draws x {t['chains']} chains):",
        "",
        "| call | seconds | max r̂ | min ESS | divergences | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, label in (("first", "first (compile included)"), ("second", "repeat (compiled)")):
        d = t[name]
        target = f"< {TARGET_S:.0f} s: {'met' if t['meets_target'] else 'NOT met'}" if name == "first" else ""
        lines.append(
            f"| {label} | {d['seconds']:.1f} | {d['max_r_hat']:.4f} | {d['min_ess']:.0f} | "
            f"{d['divergences']} | {target} |"
        )
    lines += [
        "",
        "| parameter | mean | sd | 5% | 95% | r̂ | ESS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, s in res["posterior"].items():
        lines.append(
            f"| {k} | {s['mean']:.4g} | {s['sd']:.3g} | {s['q05']:.4g} | {s['q95']:.4g} | "
            f"{s['r_hat']:.4f} | {s['ess']:.0f} |"
        )
    ppc = res["ppc"]
    if "statistics" in ppc:
        lines += [
            "",
            f"Posterior predictive check ({ppc['n_paths']} simulated series; p = P(simulated >= data)):",
            "",
            "| statistic | data | simulated mean | 5% | 95% | p |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for k, s in ppc["statistics"].items():
            lines.append(
                f"| {k} | {s['realized']:.3f} | {s['mean']:.3f} | {s['q05']:.3f} | {s['q95']:.3f} | "
                f"{s['p_value']:.2f} |"
            )
    else:
        lines += ["", f"Posterior predictive check skipped: {ppc['skipped']}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1,000 returns, 200 + 200 draws (a smoke test)")
    args = parser.parse_args()
    n_obs = 1000 if args.quick else 2500
    nuts = (
        {"warmup": 200, "samples": 200, "chains": 2}
        if args.quick
        else {"warmup": 500, "samples": 500, "chains": 2}
    )
    mach = _common.machine() | {"load_average_1m": os.getloadavg()[0]}
    t_start = time.perf_counter()
    returns = real_returns(n_obs)
    data = (
        f"BTC and ETH daily, {returns.start[:10]} to {returns.end[:10]}" if returns else "synthetic DCC-GARCH"
    )
    returns = returns or synthetic_returns(n_obs)
    first, first_s = timed_fit(returns, 0, nuts)
    second, second_s = timed_fit(returns, 1, nuts)

    def diag(result: Any, seconds: float) -> dict[str, Any]:
        d = result.summary["diagnostics"]
        keys = ("max_r_hat", "min_ess", "divergences", "problems")
        return {"seconds": seconds, "sampler_s": result.seconds} | {k: d[k] for k in keys}

    timing = {
        "n_obs": int(returns.values.shape[0]),
        "n_assets": int(returns.values.shape[1]),
        **nuts,
        "first": diag(first, first_s),
        "second": diag(second, second_s),
        "target_s": TARGET_S,
        "meets_target": first_s < TARGET_S,
    }
    res = {
        "name": NAME,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": mach,
        "data": data,
        "assets": list(returns.assets),
        "alignment": first.summary.get("alignment"),
        "timing": timing,
        "posterior": posterior_table(first.summary),
        "ppc": ppc_section(first, 100 if args.quick else 200),
    }
    from levopt.problem import versions

    res["versions"] = versions()

    def summary(r: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {
                "metric": "DCC-GARCH calibration, first call (compile included)",
                "value": round(r["timing"]["first"]["seconds"], 1),
                "unit": "s",
                "detail": f"{r['timing']['n_obs']} returns x {r['timing']['n_assets']} assets, target < 60 s",
            },
            {
                "metric": "DCC-GARCH calibration, repeat",
                "value": round(r["timing"]["second"]["seconds"], 1),
                "unit": "s",
            },
            {"metric": "DCC-GARCH max r-hat", "value": round(r["timing"]["first"]["max_r_hat"], 4)},
            {"metric": "DCC-GARCH min ESS", "value": round(r["timing"]["first"]["min_ess"])},
        ]

    _common.finish(res, RESULTS / f"{NAME}.json", t_start, markdown, summary)


if __name__ == "__main__":
    sys.exit(main())
