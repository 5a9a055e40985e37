"""Constant against stochastic (AR(1)) funding for a BTCUSDT perpetual long (README.md).

Three funding cases: the constant 13%/yr, the AR(1) calibrated on the funding file (posterior
draws), and an AR(1) at the posterior means with innovations correlated ``rally_corr`` with BTC's
returns. For each: the growth-optimal daily-rebalanced leverage (log_growth s.t. P(liq) <= 1%) and
the metrics at fixed leverages, daily rebalanced and held (static). Skips when the data is missing.
Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/stochastic_funding/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import levopt  # noqa: E402
from levopt.config import read_yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
EXTRA = ("funding_data", "calibrate", "rally_corr", "fixed_leverage")


def cases(cfg: dict[str, Any]) -> tuple[dict[str, dict | None], dict[str, Any]]:
    """market.funding of each case (None: the constant rate), and the calibration summary."""
    calibrated = {"kind": "ar1", "calibrate": {"data": cfg["funding_data"], **cfg["calibrate"]}}
    calibrated_two = {"calibrate": calibrated["calibrate"]}
    probe = {k: v for k, v in cfg.items() if k not in (*EXTRA, "objective", "optimizer")}
    probe = copy.deepcopy(probe) | {"paths": 256, "policy": {"kind": "constant", "leverage": 1.0}}
    probe["market"]["funding"] = calibrated
    cal = levopt.build(probe).calibration["funding"]
    post = {k: cal["summary"][k]["mean"] for k in ("mean", "phi", "vol")}
    return {
        "constant 13%/yr": None,
        "AR(1), posterior draws": calibrated,
        "AR(1), posterior means": {"kind": "ar1", **post},
        f"AR(1), posterior means, corr {cfg['rally_corr']}": {
            "kind": "ar1",
            **post,
            "corr": cfg["rally_corr"],
        },
        # Funding regimes: a slow component (half-life of days) under the fast one.
        "two-factor, posterior draws": {"kind": "two_factor", **calibrated_two},
    }, cal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="1000 paths, a smaller posterior sample")
    args = parser.parse_args()
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    if not Path(cfg["funding_data"]).exists():
        sys.exit(
            f"skipped: the funding file {cfg['funding_data']} is missing (set funding_data in config.yaml)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        cfg["paths"], cfg["optimizer"]["paths"] = 1000, 500
        cfg["calibrate"] = {"draws": 20, "warmup": 100, "samples": 100}
    fundings, cal = cases(cfg)
    s = cal["summary"]
    print(
        "posterior (per 8 h):",
        {k: (s[k]["mean"], s[k]["sd"]) for k in s},
        "annualized mean",
        cal["annualized_mean"],
    )
    base = {k: v for k, v in cfg.items() if k not in EXTRA}
    rows = []
    for name, funding in fundings.items():
        c = copy.deepcopy(base)
        if funding is not None:
            c["market"].pop("funding_rate")
            c["market"]["funding"] = funding
        r = levopt.run(c, profiles=False)
        m, se = r["out_of_sample"]["metrics"], r["out_of_sample"]["stderr"]
        rows.append(
            {
                "funding": name,
                "policy": "growth-optimal (daily)",
                "leverage": r["policy"]["leverage"],
                "leverage_se": r["policy_stderr"]["leverage"],
                **m,
                **{f"{k}_se": v for k, v in se.items()},
            }
        )
        print(rows[-1], flush=True)
        ev = {k: v for k, v in c.items() if k not in ("objective", "optimizer")}
        for reb in (1, "never"):
            for lev in cfg["fixed_leverage"]:
                ev["policy"] = {"kind": "constant", "leverage": lev, "rebalance": reb}
                r = levopt.evaluate(ev)
                rows.append(
                    {
                        "funding": name,
                        "policy": f"{lev:g}x {'daily' if reb == 1 else 'static'}",
                        "leverage": lev,
                        "leverage_se": 0.0,
                        **r["metrics"],
                        **{f"{k}_se": v for k, v in r["stderr"].items()},
                    }
                )
                print(rows[-1], flush=True)
    res = pd.DataFrame(rows)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    lines = [
        "| funding | policy | leverage | P(liquidation) | log-growth | CVaR 95% (1-yr loss) | E[W_T/W_0 - 1] |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for _, x in res.iterrows():
        lines.append(
            f"| {x.funding} | {x.policy} | {x.leverage:.3f} ± {x.leverage_se:.3f} | "
            f"{x.liquidation_probability:.4f} ± {x.liquidation_probability_se:.4f} | {x.log_growth:.3f} ± {x.log_growth_se:.3f} | "
            f"{x.cvar95:.3f} ± {x.cvar95_se:.3f} | {x.mean_return:.3f} ± {x.mean_return_se:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(text)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    opt = res[res.policy.str.startswith("growth")]
    axes[0].errorbar(range(len(opt)), opt.leverage, yerr=2 * opt.leverage_se, fmt="o", capsize=3)
    axes[0].set_xticks(range(len(opt)), opt.funding, rotation=15, fontsize=7)
    axes[0].set_ylabel("growth-optimal leverage (±2 s.e.)")
    axes[0].set_title("optimal leverage by funding model")
    fixed = res[~res.policy.str.startswith("growth")]
    for name, d in fixed.groupby("funding", sort=False):
        axes[1].errorbar(
            d.policy,
            d.liquidation_probability,
            yerr=2 * d.liquidation_probability_se,
            fmt="o-",
            capsize=3,
            label=name,
        )
    axes[1].set_ylabel("P(liquidation within a year)")
    axes[1].set_title("liquidation risk at fixed leverage")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out / "figure.png", dpi=120)
    plt.close(fig)
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
