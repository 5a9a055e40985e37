"""Optimal constant leverage with and without parameter uncertainty (see README.md).

Calibrates the config's GARCH-t model to a price history once per mode through ``levopt.build``
(the same path as ``levopt evaluate``), then sweeps the leverage with common random numbers:

* ``posterior``: path p simulates posterior draw p % n_draws (parameter uncertainty integrated);
* ``mean``: every path uses the posterior-mean parameters (plug-in).

Usage::

    .venv/bin/python experiments/parameter_uncertainty/run.py --data ../shared/data/btc_usd_daily.csv

Writes ``results.json`` next to this script (or ``--out``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import levopt
from levopt.config import load_config, read_yaml
from levopt.io import write_json
from levopt.objectives import evaluate_metrics, get_metric
from levopt.problem import STREAM_PATHS

HERE = Path(__file__).resolve().parent


def sweep(cfg_dict: dict[str, Any], mode: str, leverages: np.ndarray) -> dict[str, Any]:
    d = copy.deepcopy(cfg_dict)
    d["model"]["uncertainty"] = mode
    t0 = time.perf_counter()
    problem = levopt.build(load_config(d))
    t_build = time.perf_counter() - t0
    key = problem.key(STREAM_PATHS)  # the same paths (common random numbers) for every leverage
    simulate = jax.jit(lambda policy: problem.simulate(key, policy=policy))
    specs = problem.cfg.metric_specs()
    per_path_growth = get_metric("log_growth").fn
    rows, growth_paths = [], []
    for lev in leverages:
        policy = eqx.tree_at(lambda p: p.weights, problem.policy, jnp.full_like(problem.policy.weights, lev))
        outcome = simulate(policy)
        metrics, stderr = evaluate_metrics(outcome, problem.ctx, specs)
        growth_paths.append(np.asarray(per_path_growth(outcome, problem.ctx)))
        rows.append({"leverage": float(lev), "metrics": metrics, "stderr": stderr})
        print(
            f"  {mode:9s} L={lev:5.2f} log_growth {metrics['log_growth']:+.4f} ± {stderr['log_growth']:.4f} "
            f"liq {metrics['liquidation_probability']:.4f}",
            file=sys.stderr,
            flush=True,
        )
    growth = np.array([r["metrics"]["log_growth"] for r in rows])
    best = int(np.argmax(growth))
    return {
        "mode": mode,
        "rows": rows,
        "argmax_leverage": float(leverages[best]),
        "max_log_growth": float(growth[best]),
        "n_draws": problem.n_draws,
        "calibration": problem.calibration,
        "build_s": t_build,
        "total_s": time.perf_counter() - t0,
        "_growth_paths": np.stack(growth_paths),  # (leverages, paths), for paired comparisons
    }


def paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean of a - b and its standard error over paths simulated with the same random numbers."""
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


def add_paired_comparisons(results: dict[str, Any]) -> None:
    """Posterior-draws minus posterior-mean growth at each leverage, and within each mode the
    growth at every leverage minus that at the mode's argmax (paired standard errors)."""
    post, mean = results["posterior"].pop("_growth_paths"), results["mean"].pop("_growth_paths")
    for i, row in enumerate(results["posterior"]["rows"]):
        row["minus_mean_mode"] = dict(zip(("value", "stderr"), paired(post[i], mean[i]), strict=True))
    for mode, g in (("posterior", post), ("mean", mean)):
        best = int(np.argmax(g.mean(axis=1)))
        for i, row in enumerate(results[mode]["rows"]):
            row["minus_argmax"] = dict(zip(("value", "stderr"), paired(g[i], g[best]), strict=True))


def markdown(results: dict[str, Any]) -> str:
    post, mean = results["posterior"], results["mean"]
    cal = post["calibration"]
    lines = [
        f"Data: `{Path(cal['data']).name}`, {cal['n_obs']} daily log-returns {cal['range'][0][:10]} .. "
        f"{cal['range'][1][:10]}; GARCH(1,1)-t posterior ({cal['diagnostics']['chains']} chains x "
        f"{cal['diagnostics']['samples']} draws; max r-hat {cal['diagnostics']['max_r_hat']:.3f}, "
        f"min ESS {cal['diagnostics']['min_ess']:.0f}, divergences {cal['diagnostics']['divergences']}):",
        "",
        "| parameter | posterior mean | sd | 5% | 95% |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in ("mu", "omega", "alpha", "beta", "nu"):
        s = cal[name]
        lines.append(f"| {name} | {s['mean']:.4g} | {s['sd']:.3g} | {s['q05']:.4g} | {s['q95']:.4g} |")
    for name, s in cal["derived"].items():
        lines.append(f"| {name} | {s['mean']:.4g} | {s['sd']:.3g} | {s['q05']:.4g} | {s['q95']:.4g} |")
    cfg = results["config"]
    lines += [
        "",
        f"Constant leverage rebalanced daily, {cfg['paths']:,} paths x {cfg['horizon_days']} days, funding "
        f"{cfg['market']['funding_rate']:.0%} a year, fee {cfg['market']['fee']:.2%}, maintenance margin "
        f"{cfg['market']['maintenance_margin']:.2%}; the same random numbers for every row and both columns. "
        "log_growth is E[log W_T]/T a year (± one standard error); P(liq) is the probability of "
        "liquidation within the year (continuous monitoring).",
        "",
        "| leverage | log_growth, posterior draws | log_growth, posterior mean | draws - mean (paired) | "
        "P(liq), posterior draws | P(liq), posterior mean |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for rp, rm in zip(post["rows"], mean["rows"], strict=True):
        mark_p = " **(max)**" if rp["leverage"] == post["argmax_leverage"] else ""
        mark_m = " **(max)**" if rm["leverage"] == mean["argmax_leverage"] else ""
        lines.append(
            f"| {rp['leverage']:.2f} | {rp['metrics']['log_growth']:+.4f} ± {rp['stderr']['log_growth']:.4f}{mark_p} | "
            f"{rm['metrics']['log_growth']:+.4f} ± {rm['stderr']['log_growth']:.4f}{mark_m} | "
            f"{rp['minus_mean_mode']['value']:+.4f} ± {rp['minus_mean_mode']['stderr']:.4f} | "
            f"{rp['metrics']['liquidation_probability']:.4f} | {rm['metrics']['liquidation_probability']:.4f} |"
        )

    def runner_up(mode: dict[str, Any]) -> str:
        best = mode["argmax_leverage"]
        others = [r for r in mode["rows"] if r["leverage"] != best]
        nearest = min(others, key=lambda r: abs(r["minus_argmax"]["value"]))
        d = nearest["minus_argmax"]
        return f"next best {nearest['leverage']:.2f}x is {d['value']:+.4f} ± {d['stderr']:.4f} (paired)"

    lines += [
        "",
        f"Argmax leverage: posterior draws **{post['argmax_leverage']:.2f}x** "
        f"(log_growth {post['max_log_growth']:+.4f}; {runner_up(post)}), posterior mean "
        f"**{mean['argmax_leverage']:.2f}x** (log_growth {mean['max_log_growth']:+.4f}; {runner_up(mean)}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="price file (e.g. ../shared/data/btc_usd_daily.csv)")
    parser.add_argument("--config", default=str(HERE / "config.yaml"))
    parser.add_argument("--paths", type=int, default=None, help="override the config's paths")
    parser.add_argument("--leverages", default="0.25:3.0:0.25", help="start:stop:step (inclusive)")
    parser.add_argument(
        "--initial-variance",
        choices=("unconditional", "last"),
        default=None,
        help="override model.calibrate.initial_variance",
    )
    parser.add_argument("--out", default=str(HERE / "results.json"))
    args = parser.parse_args()

    cfg_dict = read_yaml(args.config)
    cfg_dict["model"]["calibrate"]["data"] = str(Path(args.data).resolve())
    if args.paths is not None:
        cfg_dict["paths"] = args.paths
    if args.initial_variance is not None:
        cfg_dict["model"]["calibrate"]["initial_variance"] = args.initial_variance
    start, stop, step = (float(x) for x in args.leverages.split(":"))
    leverages = np.round(np.arange(start, stop + step / 2, step), 6)

    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "config": load_config(copy.deepcopy(cfg_dict)).resolved(),
        "leverages": leverages,
    }
    for mode in ("posterior", "mean"):
        results[mode] = sweep(cfg_dict, mode, leverages)
    add_paired_comparisons(results)
    # one point through `levopt.evaluate` itself (the grid point nearest the config's leverage):
    # the sweep reproduces it exactly
    lev = float(leverages[np.argmin(np.abs(leverages - float(cfg_dict["policy"]["leverage"])))])
    check_cfg = copy.deepcopy(cfg_dict)
    check_cfg["policy"]["leverage"] = lev
    check = levopt.evaluate(load_config(check_cfg))
    row = next(r for r in results["posterior"]["rows"] if abs(r["leverage"] - lev) < 1e-9)
    results["evaluate_check"] = {
        "leverage": lev,
        "evaluate": check["metrics"],
        "sweep": row["metrics"],
        "equal": all(
            abs(check["metrics"][k] - row["metrics"][k]) <= 1e-9 * max(1.0, abs(row["metrics"][k]))
            for k in row["metrics"]
        ),
    }
    results["total_s"] = time.perf_counter() - t0
    md = markdown(results)
    results["markdown"] = md
    write_json(args.out, results)
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
