"""How the optimal leverage of a daily-rebalanced BTC perpetual moves with the funding rate (see README.md).

Runs the sweeps of ``config_gbm.yaml`` and ``config_garch.yaml`` (each point: maximize log-growth
over a constant leverage under a 1% liquidation-probability cap with the gradient optimizer, then
evaluate out of sample), and checks each optimum against

* the Kelly closed form (mu - r - funding)/sigma^2 (GBM), and
* the exact optimum of the optimizer's own objective on the same 4000 search paths, drawn with
  :func:`levopt.simulate` (same key) and re-implemented in numpy (:func:`mean_log_wealth`),
  maximized by a scalar search; and the same on 10 fresh sets of 4000 paths, which estimates the
  true optimum and the sampling error of one search.

Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/funding_sensitivity/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402

import levopt  # noqa: E402
from levopt.config import read_yaml  # noqa: E402
from levopt.sweep import run_sweep  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = ("gbm", "garch")
LABELS = {"gbm": "GBM", "garch": "GJR-GARCH-t"}
COLORS = {"gbm": "tab:blue", "garch": "tab:green"}


def load(model: str, quick: bool) -> dict[str, Any]:
    cfg = read_yaml(HERE / f"config_{model}.yaml")
    if quick:
        cfg["paths"] = 4000
        cfg["optimizer"]["paths"] = 2000
        cfg["sweep"] = {"market.funding_rate": [0.0, 0.13, 0.30]}
    return cfg


def step_variance(x: np.ndarray, model: dict[str, Any], dt: float) -> np.ndarray:
    """Conditional variance of each simulated daily log-return: sigma^2 dt (gbm), or the GARCH
    recursion h_{t+1} = omega + (alpha + gamma 1[eps_t < 0]) h_t eps_t^2 + beta h_t run on the
    returns themselves (eps_t = (x_t - mu dt + h_t/2)/sqrt(h_t), as in levopt.paths.garch)."""
    if model["kind"] == "gbm":
        return np.full_like(x, model["sigma"] ** 2 * dt)
    a, b, g = model["alpha"], model["beta"], model.get("gamma", 0.0)
    h = np.empty_like(x)
    h[:, 0] = model.get("h0") or model["omega"] / (1 - a - b - g / 2)
    for t in range(x.shape[1] - 1):
        eps = (x[:, t] - model["mu"] * dt + h[:, t] / 2) / np.sqrt(h[:, t])
        h[:, t + 1] = model["omega"] + (a + g * (eps < 0)) * h[:, t] * eps**2 + b * h[:, t]
    return h


def mean_log_wealth(
    f: float, x: np.ndarray, h: np.ndarray, funding: float, dt: float, mm: float, floor: float = 1e-6
) -> float:
    """The engine's log-growth estimator (times T) for daily rebalancing to leverage f, in numpy.

    Each day W' = W (1 + f R - f funding dt), R = e^x - 1. The liquidation price ratio is
    u* = (f - 1 + f funding dt)/(f (1 - mm)); the day is liquidated for sure when the close is
    below it, otherwise with the Brownian-bridge probability exp(-2 (-b)(x - b)/h), b = log u*.
    A path is a mixture: it survives with probability prod(1 - p) (terminal wealth W_T), or is
    liquidated on day t with probability s_{t-1} p_t, leaving mm f u* W_{t-1} in cash
    (levopt.engine.simulate, without fees and interest on cash).
    """
    gross = np.expm1(x)
    step = 1.0 + f * gross - f * funding * dt
    hit = step <= mm * f * (1.0 + gross)
    level = (f - 1 + f * funding * dt) / (f * (1 - mm)) if f > 0 else 0.0
    if level > 0:
        b = np.log(level)
        p = np.where(hit | (x <= b), 1.0, np.exp(-2.0 * (-b) * np.maximum(x - b, 0.0) / h))
    else:
        p = np.zeros_like(x)
    log_w = np.cumsum(np.log(np.maximum(step, 1e-300)), axis=1)
    log_w_prev = np.concatenate([np.zeros((x.shape[0], 1)), log_w[:, :-1]], axis=1)
    survival = np.cumprod(1.0 - p, axis=1)
    s_prev = np.concatenate([np.ones((x.shape[0], 1)), survival[:, :-1]], axis=1)
    lo = np.log(floor)
    liq = np.maximum(np.log(max(mm * f * level, 1e-300)) + log_w_prev, lo) if level > 0 else np.zeros_like(x)
    per_path = survival[:, -1] * np.maximum(log_w[:, -1], lo) + np.sum(s_prev * p * liq, axis=1)
    return float(np.mean(per_path))


def growth_optimum(
    x: np.ndarray, h: np.ndarray, funding: float, dt: float, bounds: tuple[float, float], mm: float
) -> float:
    """argmax_f of :func:`mean_log_wealth` by a bounded scalar search."""
    res = minimize_scalar(
        lambda f: -mean_log_wealth(f, x, h, funding, dt, mm),
        bounds=bounds,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(res.x)


def sample_optima(cfg: dict[str, Any], fundings: list[float], groups: int) -> tuple[dict, dict, dict]:
    """The exact optimum on the optimizer's own search paths, and on ``groups`` fresh sets of as many.

    ``levopt.simulate`` with the config's seed and the search's path count draws exactly the
    optimizer's search paths (same key); seed + 1 draws fresh paths, split into groups whose
    spread gives the sampling error of an optimum found on one set of search paths.
    """
    base = copy.deepcopy({k: v for k, v in cfg.items() if k not in ("sweep", "objective", "optimizer")})
    n = cfg["optimizer"]["paths"]
    dt = 1.0 / (365.0 * base["steps_per_day"])
    bounds = (cfg["policy"]["leverage"]["min"], cfg["policy"]["leverage"]["max"])
    mm = cfg["market"]["maintenance_margin"]
    search = levopt.simulate(base | {"paths": n})  # (paths, steps) daily log-returns
    fresh = levopt.simulate(base | {"paths": n * groups, "seed": base["seed"] + 1})
    h_search, h_fresh = step_variance(search, base["model"], dt), step_variance(fresh, base["model"], dt)
    fresh, h_fresh = fresh.reshape(groups, n, -1), h_fresh.reshape(groups, n, -1)
    on_search, mean, se = {}, {}, {}
    for funding in fundings:
        on_search[funding] = growth_optimum(search, h_search, funding, dt, bounds, mm)
        per_group = np.array(
            [growth_optimum(g, hg, funding, dt, bounds, mm) for g, hg in zip(fresh, h_fresh, strict=True)]
        )
        mean[funding], se[funding] = per_group.mean(), per_group.std(ddof=1) / np.sqrt(groups)
        # the sampling error of ONE set of search paths is per_group.std(ddof=1)
        se[funding] = (se[funding], per_group.std(ddof=1))
    return on_search, mean, se


def run_model(model: str, out: Path, quick: bool) -> pd.DataFrame:
    cfg = load(model, quick)
    frame = run_sweep(cfg, out / "sweeps" / model, resume=True)
    fundings = frame["market.funding_rate"].tolist()
    exact, fresh, fresh_se = sample_optima(cfg, fundings, groups=4 if quick else 10)
    m, mkt = cfg["model"], cfg["market"]
    res = pd.DataFrame(
        {
            "model": model,
            "funding": fundings,
            "leverage": frame["policy.leverage"],
            "leverage_sample_optimum": [exact[f] for f in fundings],
            "leverage_fresh_optimum": [fresh[f] for f in fundings],
            "leverage_fresh_optimum_se": [fresh_se[f][0] for f in fundings],
            "leverage_one_sample_sd": [fresh_se[f][1] for f in fundings],
            "converged": frame["converged"],
            "iterations": frame["iterations"],
            "wall_s": frame["wall_s"],
        }
    )
    # Kelly with the model's drift and average variance (for garch: omega/(1 - persistence) per step).
    if model == "gbm":
        var = m["sigma"] ** 2
    else:
        var = m["omega"] / (1 - m["alpha"] - m["beta"] - m.get("gamma", 0.0) / 2) * 365 * cfg["steps_per_day"]
    res["leverage_kelly"] = [(m["mu"] - mkt["borrow_rate"] - f) / var for f in fundings]
    res["g_kelly"] = [
        mkt["borrow_rate"] + (m["mu"] - mkt["borrow_rate"] - f) ** 2 / (2 * var) for f in fundings
    ]
    for name in ("log_growth", "cvar95", "max_drawdown", "liquidation_probability"):
        res[name] = frame[f"metrics.{name}"]
        res[f"{name}_se"] = frame[f"stderr.{name}"]
    return res


def table(res: pd.DataFrame) -> str:
    lines = [
        "| model | funding (/yr) | Kelly (mu - funding)/sigma^2 | optimizer (4,000 search paths) "
        "| exact optimum, same search paths | exact optimum, fresh paths | log-growth at the optimizer's leverage, "
        "out of sample | CVaR 95% (1-yr loss) | P(liquidation) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, x in res.iterrows():
        lines.append(
            f"| {LABELS[x.model]} | {x.funding:.2f} | {x.leverage_kelly:.3f} | {x.leverage:.3f} "
            f"| {x.leverage_sample_optimum:.3f} | {x.leverage_fresh_optimum:.3f} ± {x.leverage_fresh_optimum_se:.3f} "
            f"| {x.log_growth:.3f} ± {x.log_growth_se:.3f} | {x.cvar95:.3f} ± {x.cvar95_se:.3f} "
            f"| {x.liquidation_probability:.2g} ± {x.liquidation_probability_se:.1g} |"
        )
    return "\n".join(lines) + "\n"


def figure(res: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.3))
    g = res[res.model == "gbm"]
    grid = np.linspace(0, g.funding.max() * 1.05, 100)
    slope = (g.leverage_kelly.iloc[0] - g.leverage_kelly.iloc[-1]) / (g.funding.iloc[-1] - g.funding.iloc[0])
    ax = axes[0]
    ax.plot(
        grid,
        g.leverage_kelly.iloc[0] - slope * (grid - g.funding.iloc[0]),
        "k-",
        lw=1.2,
        label="Kelly (mu - funding)/sigma^2, sigma = 0.68",
    )
    for m in MODELS:
        d = res[res.model == m]
        ax.plot(d.funding, d.leverage, "o", color=COLORS[m], label=f"{LABELS[m]}: optimizer")
        ax.errorbar(
            d.funding,
            d.leverage_fresh_optimum,
            yerr=2 * d.leverage_fresh_optimum_se,
            fmt="s",
            mfc="none",
            ms=6,
            capsize=2,
            color=COLORS[m],
            label=f"{LABELS[m]}: exact optimum, fresh paths (±2 s.e.)",
        )
    ax.axvline(0.13, color="grey", ls=":", lw=1)
    ax.text(0.132, ax.get_ylim()[0] + 0.02, "BTCUSDT mean\n2019-2025", fontsize=7, color="grey", va="bottom")
    ax.set_xlabel("funding rate paid by longs (per year)")
    ax.set_ylabel("optimal constant leverage (daily rebalancing)")
    ax.set_title("optimal leverage vs funding (mu = 0.5, vol 68%)")
    ax.legend(fontsize=7.5)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.plot(g.funding, g.g_kelly, "k-", lw=1.2, label="closed form at Kelly: (mu - funding)^2/(2 sigma^2)")
    for m in MODELS:
        d = res[res.model == m]
        ax.errorbar(
            d.funding,
            d.log_growth,
            yerr=2 * d.log_growth_se,
            fmt="o-",
            ms=4,
            capsize=2,
            color=COLORS[m],
            label=f"{LABELS[m]}: out of sample (±2 s.e.)",
        )
    ax.set_xlabel("funding rate paid by longs (per year)")
    ax.set_ylabel("annualized log-growth at the optimum")
    ax.set_title("growth left after funding")
    ax.legend(fontsize=7.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument(
        "--quick", action="store_true", help="3 funding rates, 2000 search and 4000 test paths"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    res = pd.concat([run_model(m, args.out, args.quick) for m in MODELS], ignore_index=True)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    text = table(res)
    (args.out / "table.md").write_text(text)
    figure(res, args.out / "figure.png")
    print(text)
    print(
        f"optimizer wall time per point: {res.wall_s.min():.0f}-{res.wall_s.max():.0f} s; "
        f"all converged: {bool(res.converged.all())}"
    )


if __name__ == "__main__":
    main()
