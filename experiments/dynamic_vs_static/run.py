"""Dynamic against static leverage under GJR-GARCH-t after a volatility shock (see README.md).

Optimizes three policies with :func:`levopt.runner.run` (log-growth under a 1% liquidation cap,
90 days starting at 3.5x the unconditional variance): the best constant leverage, a 12-segment
schedule and volatility targeting. Each is tested on the same fresh out-of-sample paths (common
random numbers), so the paired differences of log-growth get their own standard errors.
Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/dynamic_vs_static/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import jax  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import levopt  # noqa: E402
from levopt.config import read_yaml  # noqa: E402
from levopt.objectives.metrics import log_growth  # noqa: E402
from levopt.problem import STREAM_OUT_OF_SAMPLE  # noqa: E402
from levopt.runner import run  # noqa: E402

HERE = Path(__file__).resolve().parent
POLICIES = ("constant", "schedule", "vol_target", "vol_target_ewma")
LABELS = {
    "constant": "best constant",
    "schedule": "12-segment schedule",
    "vol_target": "vol target (GARCH sigma_t)",
    "vol_target_ewma": "vol target (EWMA sigma, 10-day half-life)",
}
COLORS = {
    "constant": "tab:gray",
    "schedule": "tab:blue",
    "vol_target": "tab:orange",
    "vol_target_ewma": "tab:brown",
}
METRICS = ("log_growth", "cvar95", "liquidation_probability", "max_drawdown")


def load(name: str, quick: bool) -> dict[str, Any]:
    cfg = read_yaml(HERE / f"config_{name}.yaml")
    if quick:
        cfg["paths"] = 4000
        cfg["optimizer"]["paths"] = 2000
    return cfg


def fixed(cfg: dict[str, Any], policy: dict[str, Any]) -> dict[str, Any]:
    """The config with its free policy parameters set to the optimized values."""
    out = copy.deepcopy({k: v for k, v in cfg.items() if k not in ("objective", "optimizer")})
    out["policy"].update(policy)
    return out


def per_path_growth(cfg: dict[str, Any]) -> np.ndarray:
    """Per-path log-growth of a fixed policy on the out-of-sample paths of ``levopt.runner.run``."""
    problem = levopt.build(cfg)
    key = problem.key(STREAM_OUT_OF_SAMPLE)
    return np.asarray(jax.jit(lambda k: log_growth(problem.simulate(k), problem.ctx))(key))


def expected_vol_path(model: dict[str, Any], steps: int) -> np.ndarray:
    """Annualized sqrt(E[h_t]), E[h_t] = hbar + (alpha + beta + gamma/2)^t (h0 - hbar), t = 0..steps."""
    persistence = model["alpha"] + model["beta"] + model.get("gamma", 0.0) / 2
    hbar = model["omega"] / (1 - persistence)
    t = np.arange(steps + 1)
    return np.sqrt((hbar + persistence**t * (model["h0"] - hbar)) * 365)


def search(x: Any) -> str:
    if x.method == "optax":
        return f"optax, {x.iterations} iterations{'' if x.converged else ', not converged'}"
    return x.method


def table(rows: pd.DataFrame, diffs: dict[str, tuple[float, float]]) -> str:
    lines = [
        "| policy | optimized parameters | log-growth (/yr), out of sample | minus constant (paired) "
        "| in sample | CVaR 95% (90-day loss) | P(liquidation) | E[max drawdown] | search |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, x in rows.iterrows():
        d, dse = diffs[x.policy]
        lines.append(
            f"| {LABELS[x.policy]} | {x.params} | {x.log_growth:.3f} ± {x.log_growth_se:.3f} "
            f"| {'—' if x.policy == 'constant' else f'{d:+.3f} ± {dse:.3f}'} | {x.in_sample_log_growth:.3f} "
            f"| {x.cvar95:.3f} ± {x.cvar95_se:.3f} | {x.liquidation_probability:.2g} ± {x.liquidation_probability_se:.1g} "
            f"| {x.max_drawdown:.3f} ± {x.max_drawdown_se:.3f} | {search(x)} |"
        )
    return "\n".join(lines) + "\n"


def describe(name: str, policy: dict[str, Any]) -> str:
    if name == "schedule":
        return "leverage per 7.5 days: " + ", ".join(f"{v:.2f}" for v in policy["leverage"])
    if name.startswith("vol_target"):
        return f"target_vol {policy['target_vol']:.3f} (max leverage 5)"
    return f"leverage {policy['leverage']:.3f}"


def figure(results: dict[str, dict[str, Any]], rows: pd.DataFrame, cfg: dict[str, Any], path: Path) -> None:
    steps = round(cfg["horizon_days"] * cfg["steps_per_day"])
    days = np.arange(steps + 1) / cfg["steps_per_day"]
    vol = expected_vol_path(cfg["model"], steps)
    drift = cfg["model"]["mu"] - cfg["market"]["funding_rate"] - cfg["market"]["borrow_rate"]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [1.5, 1, 1]})

    ax = axes[0]
    sched = np.asarray(results["schedule"]["policy"]["leverage"])
    edges = np.linspace(0, cfg["horizon_days"], sched.size + 1)
    ax.stairs(sched, edges, baseline=None, color=COLORS["schedule"], lw=2, label=LABELS["schedule"])
    ax.axhline(
        results["constant"]["policy"]["leverage"], color=COLORS["constant"], lw=2, label=LABELS["constant"]
    )
    traj = results["vol_target"]["trajectories"]
    q = np.asarray(traj["leverage"])
    t_days = np.asarray(traj["days"])
    ax.plot(t_days, q[2], color=COLORS["vol_target"], lw=1.5, label="vol target (GARCH): median leverage")
    ax.fill_between(
        t_days,
        q[0],
        q[4],
        color=COLORS["vol_target"],
        alpha=0.15,
        lw=0,
        label="vol target (GARCH): 5-95% of paths",
    )
    q_ewma = np.asarray(results["vol_target_ewma"]["trajectories"]["leverage"])
    ax.plot(
        t_days, q_ewma[2], color=COLORS["vol_target_ewma"], lw=1.5, label="vol target (EWMA): median leverage"
    )
    ax.plot(days, drift / vol**2, "k--", lw=1, label="myopic Kelly (mu - funding)/E[sigma_t^2]")
    ax.set_xlabel("day")
    ax.set_ylabel("leverage")
    ax.set_ylim(0, max(2.0, float(np.nanmax(q[4]))) * 1.45)
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.plot(days, vol, color="tab:red", lw=1.5, ls=":", label="sqrt(E[h_t]) annualized (right axis)")
    ax2.set_ylabel("expected conditional volatility (/yr)", color="tab:red")
    ax2.set_ylim(0, vol.max() * 1.1)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="upper right", ncol=2)
    ax.set_title("leverage over time vs the expected GARCH volatility path")

    x = np.arange(len(POLICIES))
    ax = axes[1]
    r = rows.set_index("policy").loc[list(POLICIES)]
    ax.bar(x, r.log_growth, yerr=2 * r.log_growth_se, color=[COLORS[p] for p in POLICIES], capsize=4)
    ax.set_xticks(x, [LABELS[p].replace(" (", "\n(").replace(", ", ",\n") for p in POLICIES], fontsize=7)
    for i, p in enumerate(POLICIES):
        if p != "constant":
            ax.annotate(
                f"{r.minus_constant[p]:+.3f}\n± {r.minus_constant_se[p]:.3f}",
                (x[i], r.log_growth[p] + 2 * r.log_growth_se[p]),
                ha="center",
                va="bottom",
                fontsize=7.5,
                xytext=(0, 3),
                textcoords="offset points",
            )
    ax.set_ylim(0, float((r.log_growth + 2 * r.log_growth_se).max()) * 1.25)
    ax.set_ylabel("annualized log-growth, out of sample (±2 s.e.)")
    ax.set_title("growth (labels: paired difference to the constant, ± s.e.)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax = axes[2]
    width = 0.38
    ax.bar(
        x - width / 2,
        r.cvar95,
        width,
        yerr=2 * r.cvar95_se,
        capsize=3,
        color=[COLORS[p] for p in POLICIES],
        label="CVaR 95% of the 90-day loss",
    )
    ax.bar(
        x + width / 2,
        r.max_drawdown,
        width,
        yerr=2 * r.max_drawdown_se,
        capsize=3,
        color=[COLORS[p] for p in POLICIES],
        alpha=0.5,
        hatch="//",
        label="E[max drawdown]",
    )
    ax.set_xticks(x, [LABELS[p].replace(" (", "\n(").replace(", ", ",\n") for p in POLICIES], fontsize=7)
    ax.set_title("risk")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="2000 search and 4000 test paths")
    parser.add_argument(
        "--replot", action="store_true", help="redraw table and figure from the saved results"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "sweeps" / "policies.json"
    if args.replot:
        frame = pd.read_csv(args.out / "results.csv")
        frame["params"] = [
            describe(p, json.loads(j)) for p, j in zip(frame.policy, frame.params_json, strict=True)
        ]
        diffs = {
            p: (d, se)
            for p, d, se in zip(frame.policy, frame.minus_constant, frame.minus_constant_se, strict=True)
        }
        text = table(frame, diffs)
        (args.out / "table.md").write_text(text)
        figure(json.loads(saved.read_text()), frame, load("constant", args.quick), args.out / "figure.png")
        print(text)
        return
    results, rows, growth = {}, [], {}
    for name in POLICIES:
        cfg = load(name, args.quick)
        res = run(cfg)
        results[name] = res
        oos, ins = res["out_of_sample"], res["in_sample"]
        rows.append(
            {
                "policy": name,
                "params": describe(name, res["policy"]),
                "params_json": json.dumps(res["policy"]),
                **{m: oos["metrics"][m] for m in METRICS},
                **{f"{m}_se": oos["stderr"][m] for m in METRICS},
                "in_sample_log_growth": ins["metrics"]["log_growth"],
                "iterations": res["optimizer"]["iterations"],
                "converged": res["optimizer"]["converged"],
                "wall_s": res["optimizer"]["wall_s"],
                "method": res["optimizer"].get("method", "optax"),
            }
        )
        growth[name] = per_path_growth(fixed(cfg, res["policy"]))
        print(f"{name}: {res['policy']} log_growth {oos['metrics']['log_growth']:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    n = growth["constant"].size
    diffs = {
        p: (
            float(np.mean(growth[p] - growth["constant"])),
            float(np.std(growth[p] - growth["constant"], ddof=1) / np.sqrt(n)),
        )
        for p in POLICIES
    }
    frame["minus_constant"] = [diffs[p][0] for p in frame.policy]
    frame["minus_constant_se"] = [diffs[p][1] for p in frame.policy]
    # The per-path re-simulation must reproduce run()'s out-of-sample numbers (same key, same paths).
    for p in POLICIES:
        assert abs(growth[p].mean() - frame.set_index("policy").loc[p, "log_growth"]) < 1e-9, p
    frame.drop(columns="params").to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(
        json.dumps(
            {p: {"policy": r["policy"], "trajectories": r["trajectories"]} for p, r in results.items()}
        )
    )
    text = table(frame, diffs)
    (args.out / "table.md").write_text(text)
    figure(results, frame, load("constant", args.quick), args.out / "figure.png")
    print(text)


if __name__ == "__main__":
    main()
