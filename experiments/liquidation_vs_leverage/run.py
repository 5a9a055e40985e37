"""Liquidation probability of a static BTC long held 30 days, against leverage (see README.md).

Runs the three sweep configs (``config_{gbm,merton,garch}.yaml``, the same as
``levopt run CONFIG --out DIR``), adds the closed-form first-passage probability for GBM and writes
``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/liquidation_vs_leverage/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.stats import norm  # noqa: E402

from levopt.config import read_yaml  # noqa: E402
from levopt.engine.market import liquidation_price_ratio  # noqa: E402
from levopt.sweep import run_sweep  # noqa: E402

HERE = Path(__file__).resolve().parent
MODELS = ("gbm", "merton", "garch")
LABELS = {"gbm": "GBM", "merton": "Merton jumps", "garch": "GJR-GARCH-t"}
COLORS = {"gbm": "tab:blue", "merton": "tab:red", "garch": "tab:green"}


def first_passage(leverage: float, mu: float, sigma: float, years: float, mm: float) -> float:
    """P(min_{t<=T} log S_t/S_0 <= b) under GBM, b = log((L-1)/(L(1-mm))) (DOMAIN.md)."""
    ratio = liquidation_price_ratio(leverage, mm)
    if ratio <= 0:
        return 0.0
    b, nu, s = math.log(ratio), mu - 0.5 * sigma**2, sigma * math.sqrt(years)
    return float(
        norm.cdf((b - nu * years) / s) + math.exp(2 * nu * b / sigma**2) * norm.cdf((b + nu * years) / s)
    )


def run_model(model: str, out: Path, quick: bool) -> pd.DataFrame:
    cfg = read_yaml(HERE / f"config_{model}.yaml")
    if quick:
        cfg["paths"] = 4000
    frame = run_sweep(cfg, out / "sweeps" / model, resume=True)
    frame = frame.assign(model=model)
    if model == "gbm":
        m, mkt = cfg["model"], cfg["market"]
        frame["closed_form"] = [
            first_passage(lev, m["mu"], m["sigma"], cfg["horizon_days"] / 365, mkt["maintenance_margin"])
            for lev in frame["policy.leverage"]
        ]
    return frame


def num(x: float) -> str:
    return "0" if x == 0 else f"{x:.2g}" if abs(x) < 1e-3 else f"{x:.4f}"


def fmt(p: float, se: float) -> str:
    return f"{num(p)} ± {num(se)}" if se > 0 else num(p)


def table(frame: pd.DataFrame, mm: float) -> str:
    wide = {m: frame[frame.model == m].set_index("policy.leverage") for m in MODELS}
    lines = [
        "| leverage | liq. price S/S0 | GBM closed form | GBM bridge | GBM daily | Merton bridge | Merton daily "
        "| GARCH-t bridge | GARCH-t daily |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lev in wide["gbm"].index:
        cells = [
            f"{lev:g}x",
            f"{liquidation_price_ratio(lev, mm):.3f}",
            num(wide["gbm"].loc[lev, "closed_form"]),
        ]
        for m in MODELS:
            row = wide[m].loc[lev]
            cells.append(fmt(row["metrics.liquidation_probability"], row["stderr.liquidation_probability"]))
            cells.append(
                fmt(
                    row["metrics.liquidation_probability_discrete"],
                    row["stderr.liquidation_probability_discrete"],
                )
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(frame: pd.DataFrame, closed_form: tuple[np.ndarray, np.ndarray], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, log_y in zip(axes, (False, True), strict=True):
        for m in MODELS:
            d = frame[frame.model == m].sort_values("policy.leverage")
            lev = d["policy.leverage"].to_numpy()
            p, se = (
                d["metrics.liquidation_probability"].to_numpy(),
                d["stderr.liquidation_probability"].to_numpy(),
            )
            ax.plot(lev, p, "-o", ms=3, color=COLORS[m], label=f"{LABELS[m]}, continuous (bridge)")
            ax.fill_between(lev, p - 2 * se, p + 2 * se, color=COLORS[m], alpha=0.15, lw=0)
            ax.plot(
                lev,
                d["metrics.liquidation_probability_discrete"],
                "--",
                color=COLORS[m],
                lw=1.2,
                label=f"{LABELS[m]}, daily checks",
            )
        ax.plot(*closed_form, "k:", lw=2, label="GBM first passage (closed form)")
        ax.set_xscale("log")
        ax.set_xticks([1.5, 2, 3, 5, 10, 20, 50], ["1.5", "2", "3", "5", "10", "20", "50"])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("leverage L (static long, opened once)")
        ax.grid(alpha=0.3, which="both")
        if log_y:
            ax.set_yscale("log")
            ax.set_ylim(1e-4, 1.2)
            ax.set_title("same, log scale (band: ±2 s.e.)")
        else:
            ax.set_ylim(0, 1)
            ax.set_ylabel("P(liquidated within 30 days)")
            ax.set_title("BTC long held 30 days, maintenance margin 0.4%")
            ax.legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="4000 paths per point")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    frame = pd.concat([run_model(m, args.out, args.quick) for m in MODELS], ignore_index=True)
    gbm = read_yaml(HERE / "config_gbm.yaml")
    mm = gbm["market"]["maintenance_margin"]
    grid = np.geomspace(1.5, 50, 200)
    curve = np.array(
        [
            first_passage(x, gbm["model"]["mu"], gbm["model"]["sigma"], gbm["horizon_days"] / 365, mm)
            for x in grid
        ]
    )
    cols = [
        "model",
        "policy.leverage",
        "metrics.liquidation_probability",
        "stderr.liquidation_probability",
        "metrics.liquidation_probability_discrete",
        "stderr.liquidation_probability_discrete",
        "closed_form",
    ]
    frame[cols].to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    text = table(frame, mm)
    (args.out / "table.md").write_text(text)
    figure(frame, (grid, curve), args.out / "figure.png")
    print(text)


if __name__ == "__main__":
    main()
