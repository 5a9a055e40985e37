"""Does account size change the best leverage of a BTCUSDT perpetual on Binance tiers? (README.md)

For each account equity in ``config.yaml``:

1. the growth-optimal daily-rebalanced constant leverage (maximize log_growth s.t.
   P(liquidation) <= 1%), found by ``levopt.run``;
2. the largest daily-rebalanced leverage whose P(liquidation) over the year stays <= 1%, read off a
   grid of ``levopt.evaluate`` calls (same paths at every leverage), and the tier's own maximum
   leverage at that notional;

and the same two on the flat-rate market (one maintenance rate, no tiers, no account size).
Writes ``results.csv``, ``grid.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/account_size_leverage/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import levopt  # noqa: E402
from levopt.config import read_yaml  # noqa: E402
from levopt.errors import ConfigError  # noqa: E402
from levopt.venues import get_venue  # noqa: E402

HERE = Path(__file__).resolve().parent
CAP = 0.01  # the liquidation-probability limit


def tier_max_leverage(notional: float, symbol: str = "BTCUSDT") -> float:
    """The venue's maximum leverage for a position of this notional (its tier's)."""
    for b in get_venue("binance_usdm").tables[symbol].brackets:
        if notional <= b.cap:
            return b.max_leverage
    return float("nan")


def largest_allowed(equity: float) -> float:
    """The largest leverage L with L <= max_leverage(tier of L x equity), on a 0.01 grid."""
    grid = np.arange(0.01, 125.0, 0.01)
    ok = [L for L in grid if L <= tier_max_leverage(L * equity)]
    return float(max(ok))


def problem(cfg: dict[str, Any], equity: float | None) -> dict[str, Any]:
    """The levopt config for one account size (None: the flat-rate market)."""
    c = {
        k: copy.deepcopy(v)
        for k, v in cfg.items()
        if k not in ("equities", "flat_maintenance_margin", "leverage_grid")
    }
    if equity is None:
        c["market"] = {
            "funding_rate": cfg["market"]["funding_rate"],
            "maintenance_margin": cfg["flat_maintenance_margin"],
        }
        c["metrics"] = [m for m in c["metrics"] if m != "leverage_capped"]
    else:
        c["market"]["account_equity"] = float(equity)
    return c


def optimize(c: dict[str, Any]) -> dict[str, Any]:
    r = levopt.run(c, profiles=False)
    m, s = r["out_of_sample"]["metrics"], r["out_of_sample"]["stderr"]
    return {
        "opt_leverage": r["policy"]["leverage"],
        "opt_leverage_se": r["policy_stderr"]["leverage"],
        "opt_log_growth": m["log_growth"],
        "opt_log_growth_se": s["log_growth"],
        "opt_liq_prob": m["liquidation_probability"],
        "opt_cvar95": m["cvar95"],
        "converged": r["optimizer"]["converged"],
    }


def frontier(c: dict[str, Any], grid: np.ndarray) -> tuple[pd.DataFrame, dict[str, float]]:
    """P(liquidation) on a leverage grid, and the largest leverage with P <= CAP (linear
    interpolation; its s.e. from the probability's s.e. over the local slope)."""
    rows = []
    c = {k: v for k, v in c.items() if k not in ("objective", "optimizer")}
    for L in grid:
        c["policy"] = {"kind": "constant", "leverage": float(L), "rebalance": 1}
        try:
            r = levopt.evaluate(c)
        except ConfigError:  # above the tier's maximum leverage at the opening notional
            break
        rows.append(
            {
                "leverage": L,
                "liq_prob": r["metrics"]["liquidation_probability"],
                "liq_prob_se": r["stderr"]["liquidation_probability"],
                "capped": r["metrics"].get("leverage_capped", 0.0),
            }
        )
        if rows[-1]["liq_prob"] > 5 * CAP:  # well past the limit: the rest of the grid adds nothing
            break
    g = pd.DataFrame(rows)
    above = np.nonzero(g.liq_prob.to_numpy() > CAP)[0]
    if len(above) == 0 or above[0] == 0:  # never reaches CAP before the venue refuses the leverage
        return g, {
            "max_safe_leverage": float(g.leverage.iloc[-1]),
            "max_safe_leverage_se": 0.0,
            "limited_by": "tier cap",
        }
    i = above[0]
    (l0, p0), (l1, p1) = g.iloc[i - 1][["leverage", "liq_prob"]], g.iloc[i][["leverage", "liq_prob"]]
    L = l0 + (CAP - p0) * (l1 - l0) / (p1 - p0)
    se = float(np.interp(L, g.leverage, g.liq_prob_se)) * (l1 - l0) / (p1 - p0)
    return g, {"max_safe_leverage": L, "max_safe_leverage_se": se, "limited_by": "P(liq) = 1%"}


def figure(res: pd.DataFrame, grids: dict[str, pd.DataFrame], path: Path) -> None:
    v, flat = res[res.market == "binance_usdm"], res[res.market == "flat 0.5%"].iloc[0]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    ax = axes[0]
    ax.errorbar(
        v.equity,
        v.opt_leverage,
        yerr=2 * v.opt_leverage_se,
        fmt="o-",
        capsize=2,
        label="growth-optimal (Binance tiers)",
    )
    ax.axhline(flat.opt_leverage, color="grey", ls="--", label="growth-optimal, flat 0.5% MMR")
    ax.plot(v.equity, v.max_safe_leverage, "s-", color="tab:red", label="largest with P(liq) <= 1% (tiers)")
    ax.axhline(flat.max_safe_leverage, color="tab:red", ls=":", label="largest with P(liq) <= 1%, flat")
    ax.plot(v.equity, v.tier_max_leverage_at_safe, "k^--", ms=5, label="tier max leverage at that notional")
    ax.set_xscale("log")
    ax.set_xlabel("account equity (USDT)")
    ax.set_ylabel("leverage")
    ax.set_title("leverage vs account size (daily rebalanced)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    ax.loglog(v.equity, v.opt_leverage * v.equity, "o-", label="growth-optimal notional")
    ax.loglog(
        v.equity,
        v.max_safe_leverage * v.equity,
        "s-",
        color="tab:red",
        label="largest notional with P(liq) <= 1%",
    )
    ax.set_xlabel("account equity (USDT)")
    ax.set_ylabel("notional (USDT)")
    ax.set_title("notional vs account size")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax = axes[2]
    for name, g in grids.items():
        ax.plot(g.leverage, g.liq_prob, label=name, ls=":" if name.startswith("flat") else "-")
    ax.axhline(CAP, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1)
    ax.set_xlabel("daily-rebalanced leverage")
    ax.set_ylabel("P(liquidation within a year)")
    ax.set_title("liquidation risk by account size")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(res: pd.DataFrame) -> str:
    lines = [
        "| market | equity (USDT) | growth-optimal leverage | its notional (USDT) | log-growth at it | "
        "largest leverage with P(liq) <= 1% | its notional (USDT) | maintenance margin ÷ notional there | tier max leverage there | bound by |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, x in res.iterrows():
        eq = "any" if x.market.startswith("flat") else f"{x.equity:,.0f}"
        lines.append(
            f"| {x.market} | {eq} | {x.opt_leverage:.3f} ± {x.opt_leverage_se:.3f} | "
            f"{'' if x.market.startswith('flat') else f'{x.opt_leverage * x.equity:,.0f}'} | {x.opt_log_growth:.3f} ± {x.opt_log_growth_se:.3f} | "
            f"{x.max_safe_leverage:.2f} ± {x.max_safe_leverage_se:.2f} | "
            f"{'' if x.market.startswith('flat') else f'{x.max_safe_leverage * x.equity:,.0f}'} | {x.mmr_at_safe:.2%} | "
            f"{x.tier_max_leverage_at_safe:g} | {x.limited_by} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="3 account sizes, fewer paths, coarser grid")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    equities = [float(e) for e in cfg["equities"]]
    g = cfg["leverage_grid"]
    grid = np.arange(g["start"], g["stop"] + 1e-9, g["step"])
    if args.quick:
        equities, cfg["paths"], cfg["optimizer"]["paths"], grid = [1e4, 1e6, 5e7], 1000, 500, grid[::4]
    rows, grids = [], {}
    table_ = get_venue("binance_usdm").tables["BTCUSDT"]
    for equity in [*equities, None]:
        c = problem(cfg, equity)
        row = {"market": "flat 0.5%" if equity is None else "binance_usdm", "equity": equity or np.nan}
        row |= optimize(c)
        g_, fr = frontier(c, grid)
        row |= fr
        grids["flat 0.5%" if equity is None else f"{equity:,.0g} USDT"] = g_
        if equity is None:
            row |= {"mmr_at_safe": cfg["flat_maintenance_margin"], "tier_max_leverage_at_safe": np.inf}
        else:
            n = fr["max_safe_leverage"] * equity
            row |= {
                "mmr_at_safe": table_[table_.index(n)].maintenance_margin(n)
                / n,  # effective rate incl. the amount
                "tier_max_leverage_at_safe": tier_max_leverage(n),
                "largest_allowed_leverage": largest_allowed(equity),
            }
        rows.append(row)
        print(row, flush=True)
    res = pd.DataFrame(rows)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    pd.concat([d.assign(case=k) for k, d in grids.items()]).to_csv(
        args.out / "grid.csv", index=False, float_format="%.6g"
    )
    text = table(res)
    (args.out / "table.md").write_text(text)
    figure(res, grids, args.out / "figure.png")
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
