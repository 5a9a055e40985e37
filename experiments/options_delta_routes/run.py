"""Options against perpetuals: the same bullish delta through a perpetual, a call and a call spread.

Question: a trader wants an initial delta of D times the equity (delta notional / equity = D) for
30 days. Is it better to buy it as a perpetual of leverage D, as long calls, or as a call spread,
judged by log growth, mean return, CVaR, liquidation and drawdown?

Setup (``config.yaml``). For each target D in ``targets`` and each model (GBM with sigma = the
implied vol; GJR-GARCH-t with the implied vol from the model's variance forecast):

* ``perp``: a perpetual long of leverage D opened at t = 0 and held 30 days (never rebalanced);
* ``call``: q = D / Delta_c long calls of strike ``call_strike`` expiring at the horizon;
* ``spread``: q = D / (Delta_1 - Delta_2) long calls of strike ``spread_strikes[0]`` and as many
  short calls of strike ``spread_strikes[1]``, under Deribit's standard margin and under scenario
  (portfolio) margin (two routes).

Deltas and premiums are Black-76 at S_0 = 1 and ``implied_vol`` (zero rates: the perpetual is the
forward). Each route is built once at unit size and scaled to q on the same paths (common random
numbers), so routes and targets differ by their book only. A route is infeasible at D when its
premium with fees (for the spread: the net debit q(C_1 - C_2) plus the fee on both legs) is not
below the equity, or when the opening book is already at its maintenance margin (liquidated at
t = 0). Legs expiring at the horizon settle before that step's margin check.

Assumptions: the fee (``market.fee``) is charged on the perpetual's notional and on the options'
premium (levopt's rule; Deribit charges 0.03% of the underlying capped at 12.5% of the premium);
no funding, borrow or cash interest; the perpetual's liquidation probability is the engine's
Brownian-bridge estimate (continuous monitoring) and its daily-check value is shown beside it, while
option books are checked at the daily closes only (no bridge for an option book). Simple-return
CVaR: the mean loss, as a fraction of the initial equity, in the worst 5% or 1% of outcomes. Standard
errors: per-path means (growth, return, P(liq), drawdown) and 20 batch means (CVaR); differences
from the perpetual use the paired per-path values.

Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/options_delta_routes/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import math
import time
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
from levopt.options import greeks  # noqa: E402
from levopt.problem import STREAM_PATHS  # noqa: E402

HERE = Path(__file__).resolve().parent
EXTRA = (
    "name",
    "targets",
    "expiry_days",
    "implied_vol",
    "call_strike",
    "spread_strikes",
    "garch",
    "garch_implied_vol",
)
ROUTES = {
    "perp": "perpetual",
    "call": "long call",
    "spread_standard": "call spread, standard margin",
    "spread_scenario": "call spread, scenario margin",
}
BOOK_METRICS = {"delta_leverage": ("delta_leverage", {}), "elasticity": ("elasticity", {})}
DAYS_PER_YEAR = 365.0


def unit_book(cfg: dict[str, Any]) -> dict[str, float]:
    """Black-76 deltas and premiums at t = 0 of the legs (S_0 = 1, zero rates)."""
    t = cfg["expiry_days"] / DAYS_PER_YEAR
    iv = cfg["implied_vol"]
    k1, k2 = cfg["spread_strikes"]
    out = {}
    for name, k in (("call", cfg["call_strike"]), ("long", k1), ("short", k2)):
        g = greeks(1.0, k, iv, t, "call")
        out[f"{name}_delta"], out[f"{name}_premium"] = float(g.delta), float(g.price)
    return out


def route_config(cfg: dict[str, Any], model: str, route: str) -> dict[str, Any]:
    """The levopt config of one route at unit size (q = 1, or leverage 1 for the perpetual)."""
    c = copy.deepcopy({k: v for k, v in cfg.items() if k not in EXTRA})
    if model == "garch":
        c["model"] = dict(cfg["garch"])
    if route == "perp":
        c["policy"] = {"kind": "constant", "leverage": 1.0, "rebalance": "never"}
        return c
    days = cfg["expiry_days"]
    if route == "call":
        legs = [{"type": "call", "strike": cfg["call_strike"], "expiry_days": days, "quantity": 1.0}]
    else:
        k1, k2 = cfg["spread_strikes"]
        legs = [
            {"type": "call", "strike": k1, "expiry_days": days, "quantity": 1.0},
            {"type": "call", "strike": k2, "expiry_days": days, "quantity": -1.0},
        ]
        c["market"]["margin"] = route.removeprefix("spread_")
    iv = (
        dict(cfg["garch_implied_vol"])
        if model == "garch"
        else {"kind": "constant", "value": cfg["implied_vol"]}
    )
    c["policy"] = {"kind": "options", "legs": legs, "hedge": {"rebalance": "never"}, "implied_vol": iv}
    return c


def sizing(route: str, target: float, unit: dict[str, float], fee: float) -> tuple[float, float]:
    """Quantity (or leverage) giving initial delta ``target``, and the premium paid with fees."""
    if route == "perp":
        return target, 0.0
    if route == "call":
        q = target / unit["call_delta"]
        return q, q * unit["call_premium"] * (1 + fee)
    q = target / (unit["long_delta"] - unit["short_delta"])
    net = q * (unit["long_premium"] - unit["short_premium"])
    return q, net + fee * q * (unit["long_premium"] + unit["short_premium"])


def per_path_growth(outcome: Any, years: float, floor: float) -> np.ndarray:
    """Each path's contribution to the annualized log growth (the metric is their mean)."""
    w = np.maximum(np.asarray(outcome.wealth, float), floor)
    return (np.asarray(outcome.survival) * np.log(w) + np.asarray(outcome.liq_log_wealth)) / years


def run_model(cfg: dict[str, Any], model: str) -> list[dict[str, Any]]:
    unit = unit_book(cfg)
    fee = float(cfg["market"]["fee"])
    rows, perp_growth = [], {}
    # The paths depend on the model and the seed only: every route sees these prices.
    prices = np.exp(np.cumsum(levopt.simulate(route_config(cfg, model, "perp")), axis=1))
    for route in ROUTES:
        c = route_config(cfg, model, route)
        problem = levopt.build(c)
        key = problem.key(STREAM_PATHS)
        years = problem.cfg.years
        floor = problem.cfg.ruin_floor
        for target in cfg["targets"]:
            t0 = time.perf_counter()
            q, premium = sizing(route, float(target), unit, fee)
            row: dict[str, Any] = {
                "model": model,
                "route": route,
                "target_delta": float(target),
                "quantity": q,
                "premium": premium,
            }
            if route != "perp" and premium >= 1.0:
                rows.append(row | {"status": "infeasible: premium >= equity"})
                continue
            outcome = problem.simulate(key, policy=problem.policy.scaled(q))
            extra = BOOK_METRICS if route != "perp" else None
            m = problem.metrics(outcome, extra)
            steps = np.asarray(outcome.liquidation_step)
            at_open = bool(np.all(steps == 0))
            row["status"] = "infeasible: liquidated at open" if at_open else "ok"
            row |= m["metrics"] | {f"{k}_se": v for k, v in m["stderr"].items()}
            liq = steps > 0
            row["median_liquidation_day"] = float(np.median(steps[liq])) if liq.any() else float("nan")
            at_liq = prices[liq, steps[liq] - 1]  # S_t / S_0 at the liquidating step's close
            row["liquidated_above_start"] = float(np.mean(at_liq > 1.0)) if liq.any() else float("nan")
            g = per_path_growth(outcome, years, floor)
            if route == "perp":
                perp_growth[target] = g
            else:
                d = g - perp_growth[target]
                row["growth_vs_perp"] = float(d.mean())
                row["growth_vs_perp_se"] = float(d.std(ddof=1) / math.sqrt(d.size))
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            print(
                f"{model:5s} {route:16s} D={target:<4g} q={q:6.3f} prem={premium:6.3f} {row['status']:28s} "
                f"growth={row['log_growth']:+.4f}±{row['log_growth_se']:.4f} "
                f"mean={row['mean_return']:+.4f} cvar99={row['cvar99']:.4f} "
                f"P(liq)={row['liquidation_probability']:.4f}",
                flush=True,
            )
    return rows


def fmt(r: pd.Series, name: str, digits: int = 4) -> str:
    v, se = r.get(name), r.get(f"{name}_se")
    if v is None or not np.isfinite(v):
        return "—"
    if se is None or not np.isfinite(se):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ± {se:.{digits}f}"


def table(res: pd.DataFrame) -> str:
    lines = []
    titles = {"gbm": "GBM, implied vol = sigma = 0.68", "garch": "GJR-GARCH-t, implied vol = model forecast"}
    for model, d in res.groupby("model", sort=False):
        lines += [
            f"### {titles[model]}",
            "",
            "| delta D | route | size q | premium | status | log growth (/yr) | vs perp (paired) | mean return "
            "| CVaR95 | CVaR99 | P(liq) | P(liq) daily | liq.: median day / above S_0 | max drawdown "
            "| mean delta lev. |",
            "|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for _, r in d.sort_values(["target_delta", "route"], key=_route_order).iterrows():
            ok = r.status == "ok"
            cells = [
                f"{r.target_delta:g}",
                ROUTES[r.route],
                f"{r.quantity:.2f}",
                "—" if r.route == "perp" else f"{r.premium:.3f}",
                r.status,
            ]
            if ok:
                cells += [
                    fmt(r, "log_growth", 3),
                    "" if r.route == "perp" else fmt(r, "growth_vs_perp", 3),
                    fmt(r, "mean_return"),
                    fmt(r, "cvar95"),
                    fmt(r, "cvar99"),
                    fmt(r, "liquidation_probability"),
                    fmt(r, "liquidation_probability_discrete"),
                    "—"
                    if not np.isfinite(r.median_liquidation_day)
                    else f"{r.median_liquidation_day:g} / {r.liquidated_above_start:.0%}",
                    fmt(r, "max_drawdown"),
                    "—" if r.route == "perp" else f"{r.delta_leverage:.2f}",
                ]
            else:
                cells += ["—"] * 10
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _route_order(s: pd.Series) -> pd.Series:
    order = {name: i for i, name in enumerate(ROUTES)}
    return s.map(order) if s.name == "route" else s


def figure(res: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5), sharex=True)
    titles = {"gbm": "GBM (implied vol = σ)", "garch": "GJR-GARCH-t (implied vol = forecast)"}
    panels = [
        ("log_growth", "log growth (per year)"),
        ("cvar99", "CVaR 99% (mean loss in worst 1%, of equity)"),
        ("liquidation_probability", "P(liquidation within 30 days)"),
    ]
    styles = {"perp": "o-", "call": "s-", "spread_standard": "^--", "spread_scenario": "v-"}
    for i, model in enumerate(("gbm", "garch")):
        d = res[(res.model == model) & (res.status == "ok")]
        for j, (col, label) in enumerate(panels):
            ax = axes[i, j]
            for route, name in ROUTES.items():
                e = d[d.route == route].sort_values("target_delta")
                if e.empty:
                    continue
                ax.errorbar(
                    e.target_delta,
                    e[col],
                    yerr=2 * e[f"{col}_se"],
                    fmt=styles[route],
                    capsize=2,
                    ms=4,
                    label=name,
                )
            ax.set_title(f"{titles[model]}: {label}", fontsize=9)
            ax.grid(alpha=0.3)
            if i == 1:
                ax.set_xlabel("target initial delta leverage D (delta notional / equity)")
            if col == "log_growth":
                ax.axhline(0, color="k", lw=0.6)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("The same initial delta, 30 days: perpetual, call (K 1.05), call spread (1.0/1.15); ±2 s.e.")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="500 paths")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    if args.quick:
        cfg["paths"] = 500
    with jax.enable_x64(True):
        unit = unit_book(cfg)
        print({k: round(v, 5) for k, v in unit.items()})
        rows = run_model(cfg, "gbm") + run_model(cfg, "garch")
    res = pd.DataFrame(rows)
    for k, v in unit.items():
        res[k] = v
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    text = table(res)
    (args.out / "table.md").write_text(text)
    figure(res, args.out / "figure.png")
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
