r"""Bias of the engine's multi-asset Brownian-bridge liquidation probability, against a fine grid.

Within a step, the engine treats the gross-normalized P&L of a book of several assets as an
arithmetic Brownian motion started at the step's opening with the opening variance, and its
liquidation barrier as (mm G - W) / G with the opening gross G (see ``levopt.engine.simulate``).
This script measures what that approximation costs on realistic two-asset books (BTC/ETH-like
GBM: sigma 0.6 / 0.8, correlation 0.8), held 30 days with daily steps, no costs.

Reference (written here in numpy, independent of the engine): the same Brownian paths on a fine
grid of ``k`` sub-steps per day, with

* the margin check W <= mm * sum |N_i| at every fine step (discrete monitoring, converges to the
  continuous-monitoring probability from below, with an O(sqrt(h)) gap);
* a bridge on the distance to liquidation D = W - mm * sum |N_i| (a function of the log-prices X):
  within a fine sub-step D is treated as an arithmetic Brownian motion with the local variance
  g' C g h, g_i = dD/dX_i = N_i (1 - mm sign N_i), C the annualized covariance; the sub-step's
  crossing probability is exp(-2 D_start D_end / var). Its error is O(h) (the local variance and
  the curvature of D change by O(sqrt(h)) within a sub-step near the barrier), so with fine grids
  of k and 2k sub-steps per day on the same paths, 2 q_{2k} - q_k removes the leading term
  (Richardson); that extrapolation is the reference continuous-monitoring probability.

Common random numbers: the fine standard normals z (k_max sub-steps per day) are drawn once; the
engine's daily noise is their daily sum / sqrt(k_max), its fine-grid noise their pairwise sum /
sqrt(2), so the engine and every reference see the same Brownian path and the bias is estimated
from paired per-path differences (small standard errors).

Writes ``benchmarks/results/bridge_bias.json`` and prints a markdown table.

Usage::

    .venv/bin/python benchmarks/bridge_bias.py            # 65,536 paths (~14 minutes on 2 busy cores)
    .venv/bin/python benchmarks/bridge_bias.py --quick    # 8,192 paths, a smoke run
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
NAME = "bridge_bias"

DAYS = 30
DT = 1 / 365
MODEL = {"kind": "gbm", "mu": [0.0, 0.0], "sigma": [0.6, 0.8], "corr": [[1.0, 0.8], [0.8, 1.0]]}
BOOKS: dict[str, tuple[list[float], float]] = {
    "long 3/2, mm 0.5%": ([3.0, 2.0], 0.005),
    "long 3/2, mm 1%": ([3.0, 2.0], 0.01),
    "long/short 4/-2, mm 0.5%": ([4.0, -2.0], 0.005),
    "long/short 4/-2, mm 1%": ([4.0, -2.0], 0.01),
}
FINE = 96
"""Sub-steps per day of the finest reference grid (the engine's fine grid has FINE // 2)."""


def reference_liquidation(
    z: np.ndarray,
    weights: np.ndarray,
    mu: np.ndarray,
    sigma: np.ndarray,
    corr: np.ndarray,
    mm: float,
    h: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Liquidation of a static book on a fine grid: (bridge probability, discrete flag) per path.

    Args:
        z: ``(steps, paths, n)`` standard normals; the log-return of a sub-step is
            (mu - sigma^2/2) h + sigma sqrt(h) chol(corr) z.
        weights: ``(n,)`` signed notionals per unit of initial equity (no costs, W_0 = 1).
        mu, sigma, corr: the GBM's annualized drift, volatility and correlation.
        mm: maintenance margin rate on the current gross notional.
        h: sub-step length in years.

    Returns:
        The probability that the continuously monitored account was liquidated (bridge on the
        distance to liquidation at every sub-step) and whether a sub-step check liquidated it.
    """
    weights, mu, sigma = (np.asarray(a, dtype=float) for a in (weights, mu, sigma))
    corr = np.asarray(corr, dtype=float)
    cov = np.outer(sigma, sigma) * corr
    scale_t = (sigma * math.sqrt(h))[:, None] * np.linalg.cholesky(corr)
    # Log-prices at the grid points 0..steps, shape (steps + 1, paths, n).
    log_price = np.cumsum((mu - sigma**2 / 2) * h + z @ scale_t.T, axis=0)
    log_price = np.concatenate([np.zeros((1,) + log_price.shape[1:]), log_price])
    notional = weights * np.exp(log_price)
    equity = 1.0 + np.sum(notional - weights, axis=-1)
    distance = equity - mm * np.sum(np.abs(notional), axis=-1)  # liquidated where <= 0
    g = notional[:-1] * (1 - mm * np.sign(weights))  # dD/dX_i at each sub-step's start
    var = np.sum((g @ cov) * g, axis=-1) * h
    start, end = distance[:-1], distance[1:]
    crossed = (start <= 0) | (end <= 0)
    exponent = np.where(crossed, 0.0, -2 * start * end / np.maximum(var, np.finfo(float).tiny))
    survival = np.prod(1.0 - np.where(crossed, 1.0, np.exp(exponent)), axis=0)
    return 1.0 - survival, np.any(distance <= 0, axis=0)


def _engine(
    weights: list[float], mm: float, steps_per_day: int, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The engine's (bridge liquidation probability, discrete flag) per path on the given noise."""
    import levopt
    from levopt.problem import STREAM_PATHS

    cfg = {
        "seed": 0,
        "paths": noise.shape[1],
        "horizon_days": DAYS,
        "steps_per_day": steps_per_day,
        "precision": "float64",
        "model": MODEL,
        "market": {
            "borrow_rate": 0.0,
            "cash_rate": 0.0,
            "fee": 0.0,
            "maintenance_margin": mm,
            "liquidation_fee": 0.0,
        },
        "policy": {"kind": "constant", "weights": weights, "rebalance": "never"},
    }
    problem = levopt.build(cfg)
    o = problem.simulate(problem.key(STREAM_PATHS), noise=noise)
    return 1.0 - np.asarray(o.survival), np.asarray(o.liquidated)


def _paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))


def run(paths: int, chunk: int, seed: int) -> dict[str, Any]:
    mu, sigma = np.asarray(MODEL["mu"]), np.asarray(MODEL["sigma"])
    corr = np.asarray(MODEL["corr"])
    h_fine = DT / FINE
    fields = ["eng_day", "eng_day_disc", "eng_fine", "eng_fine_disc", "ref_fine", "ref_half", "disc_fine"]
    acc = {name: {f: [] for f in fields + ["disc_half", "mismatch"]} for name in BOOKS}
    t0 = time.perf_counter()
    for c in range(paths // chunk):
        rng = np.random.default_rng([seed, c])
        z = rng.standard_normal((DAYS * FINE, chunk, 2))
        z_half = (z[0::2] + z[1::2]) / math.sqrt(2)
        z_day = z.reshape(DAYS, FINE, chunk, 2).sum(axis=1) / math.sqrt(FINE)
        for name, (weights, mm) in BOOKS.items():
            a = acc[name]
            q, d = _engine(weights, mm, 1, z_day)
            a["eng_day"].append(q)
            a["eng_day_disc"].append(d)
            q, d = _engine(weights, mm, FINE // 2, z_half)
            a["eng_fine"].append(q)
            a["eng_fine_disc"].append(d)
            q, d = reference_liquidation(z, weights, mu, sigma, corr, mm, h_fine)
            a["ref_fine"].append(q)
            a["disc_fine"].append(d)
            q_half, d_half = reference_liquidation(z_half, weights, mu, sigma, corr, mm, 2 * h_fine)
            a["ref_half"].append(q_half)
            a["disc_half"].append(d_half)
            a["mismatch"].append(d_half != a["eng_fine_disc"][-1])
        print(f"chunk {c + 1}/{paths // chunk} done ({time.perf_counter() - t0:.0f} s)", flush=True)

    books = {}
    for name, (weights, mm) in BOOKS.items():
        a = {k: np.concatenate(v).astype(float) for k, v in acc[name].items()}
        reference = 2 * a["ref_fine"] - a["ref_half"]  # Richardson: the reference's error is O(h)
        n = reference.size
        bias, bias_se = _paired(a["eng_day"], reference)
        fine_bias, fine_bias_se = _paired(a["eng_fine"], reference)
        ref_step, ref_step_se = _paired(a["ref_fine"], a["ref_half"])
        ref_p = float(reference.mean())
        books[name] = {
            "weights": weights,
            "maintenance_margin": mm,
            "reference": ref_p,
            "reference_se": float(reference.std(ddof=1) / math.sqrt(n)),
            "reference_fine": float(a["ref_fine"].mean()),
            "reference_fine_minus_half": ref_step,
            "reference_fine_minus_half_se": ref_step_se,
            "engine_daily_bridge": float(a["eng_day"].mean()),
            "engine_daily_discrete": float(a["eng_day_disc"].mean()),
            "engine_fine_bridge": float(a["eng_fine"].mean()),
            "engine_fine_discrete": float(a["eng_fine_disc"].mean()),
            "discrete_fine": float(a["disc_fine"].mean()),
            "discrete_half": float(a["disc_half"].mean()),
            "engine_vs_numpy_discrete_mismatches": int(a["mismatch"].sum()),
            "bias": bias,
            "bias_se": bias_se,
            "relative_bias": bias / ref_p,
            "relative_bias_se": bias_se / ref_p,
            "bias_engine_fine": fine_bias,
            "bias_engine_fine_se": fine_bias_se,
        }
    return books


def markdown(res: dict[str, Any]) -> str:
    k = res["settings"]["fine_substeps_per_day"]
    lines = [
        f"Liquidation probability, 30 days, {res['settings']['paths']:,} paths (common random numbers); "
        f"reference: Richardson extrapolation of a bridge on the distance to liquidation at "
        f"{k // 2} and {k} sub-steps/day.",
        "",
        "| book | reference | engine daily bridge | bias ± s.e. | relative bias | engine daily discrete "
        f"| discrete {k}/day | engine {k // 2}/day bridge bias |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, b in res["books"].items():
        lines.append(
            f"| {name} | {b['reference']:.4f} ± {b['reference_se']:.4f} | {b['engine_daily_bridge']:.4f} "
            f"| {b['bias']:+.5f} ± {b['bias_se']:.5f} | {100 * b['relative_bias']:+.2f}% "
            f"± {100 * b['relative_bias_se']:.2f}% | {b['engine_daily_discrete']:.4f} "
            f"| {b['discrete_fine']:.4f} | {b['bias_engine_fine']:+.5f} ± {b['bias_engine_fine_se']:.5f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8,192 paths")
    parser.add_argument("--paths", type=int, default=None)
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args(argv)
    chunk = 4096
    paths = args.paths or (8192 if args.quick else 65536)
    paths = max(chunk, paths // chunk * chunk)

    sys.path.insert(0, str(HERE))
    from _common import finish, machine

    import levopt  # noqa: F401  (levopt's entry points scope float64 themselves)

    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "machine": machine(),
        "settings": {
            "paths": paths,
            "seed": args.seed,
            "horizon_days": DAYS,
            "model": MODEL,
            "fine_substeps_per_day": FINE,
            "engine_fine_substeps_per_day": FINE // 2,
            "precision": "float64",
        },
    }
    res["books"] = run(paths, chunk, args.seed)

    def summary(r: dict) -> list:
        return [
            {
                "metric": f"bridge bias, {name}",
                "value": b["relative_bias"],
                "unit": "relative",
                "detail": f"{b['bias']:+.5f} ± {b['bias_se']:.5f} on p = {b['reference']:.4f}",
            }
            for name, b in r["books"].items()
        ]

    return finish(res, HERE / "results" / f"{NAME}.json", t_start, markdown, summary)


if __name__ == "__main__":
    raise SystemExit(main())
