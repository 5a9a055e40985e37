"""Cross against isolated margin for a BTC + ETH perpetual book on Binance USD-M (README.md).

Evaluates the daily-rebalanced book of ``config.yaml`` at each gross leverage under cross margin
and isolated margin with several splits of the wallet, and prints the GBM parameters estimated
from the shared daily price files over their common window (for reference; the config's are used).
Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/isolated_vs_cross/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import levopt  # noqa: E402
from levopt.config import read_yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path("/work/shared/data")


def estimate_gbm() -> str:
    """Annualized vol of daily log-returns and their correlation, BTC and ETH, common window."""
    btc, eth = DATA / "btc_usd_daily.csv", DATA / "eth_usd_daily.csv"
    if not (btc.exists() and eth.exists()):
        return "price files not found; using the config's parameters"
    b = (
        pd.read_csv(btc, usecols=["Date", "close"])
        .rename(columns={"Date": "date", "close": "btc"})
        .set_index("date")
    )
    e = (
        pd.read_csv(eth, usecols=["timestamp", "close"])
        .rename(columns={"timestamp": "date", "close": "eth"})
        .set_index("date")
    )
    both = b.join(e, how="inner").sort_index()
    x = np.log(both).diff().dropna()
    vol = x.std() * np.sqrt(365)
    return (
        f"common window {x.index[0]}..{x.index[-1]} ({len(x)} daily returns): vol BTC {vol.iloc[0]:.3f}, "
        f"ETH {vol.iloc[1]:.3f}, corr {x.corr().iloc[0, 1]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="1000 paths, gross 2 and 6")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(estimate_gbm())
    cfg = read_yaml(HERE / "config.yaml")
    gross, modes = cfg.pop("gross"), cfg.pop("modes")
    if args.quick:
        cfg["paths"], gross = 1000, [2, 6]
    w = np.asarray(cfg["policy"]["weights"], float)
    rows = []
    for reb, g in [(reb, g) for reb in (1, "never") for g in gross]:
        for name, mode in modes.items():
            c = copy.deepcopy(cfg)
            c["policy"]["rebalance"] = reb
            c["market"] |= mode
            c["policy"]["weights"] = (w * g / w.sum()).tolist()
            r = levopt.evaluate(c)
            m, s = r["metrics"], r["stderr"]
            rows.append(
                {
                    "rebalance": "daily" if reb == 1 else "static",
                    "gross": g,
                    "mode": name,
                    **{k: m[k] for k in m},
                    **{f"{k}_se": s[k] for k in s},
                }
            )
            print(rows[-1], flush=True)
    res = pd.DataFrame(rows)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    lines = [
        "| rebalancing | gross leverage | margin | P(liquidation) | log-growth | CVaR 95% (1-yr loss) | E[W_T/W_0 - 1] |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for _, x in res.iterrows():
        lines.append(
            f"| {x.rebalance} | {x.gross:g} | {x['mode']} | {x.liquidation_probability:.4f} ± {x.liquidation_probability_se:.4f} | "
            f"{x.log_growth:.3f} ± {x.log_growth_se:.3f} | {x.cvar95:.3f} ± {x.cvar95_se:.3f} | "
            f"{x.mean_return:.3f} ± {x.mean_return_se:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(text)
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for row, reb in zip(axes, ("daily", "static"), strict=True):
        for name in modes:
            d = res[(res["mode"] == name) & (res.rebalance == reb)]
            for ax, k in zip(row, ("liquidation_probability", "log_growth", "cvar95"), strict=True):
                ax.errorbar(d.gross, d[k], yerr=2 * d[f"{k}_se"], fmt="o-", capsize=2, label=name)
        for ax, t in zip(
            row,
            ("P(liquidation within a year)", "annualized log-growth", "CVaR 95% of the 1-yr loss"),
            strict=True,
        ):
            ax.set_xlabel(f"gross leverage (BTC:ETH = 1.5:1), {reb}")
            ax.set_title(f"{t}, {reb}")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "figure.png", dpi=120)
    plt.close(fig)
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
