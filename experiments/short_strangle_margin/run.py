"""Short strangle sizing: Deribit's scenario (portfolio) margin against its standard margin.

Question: a trader sells a 30-day strangle (short call 1.15, short put 0.85, both s units per unit
of equity) and collects the implied-vol premium. How much premium does each size earn, how likely
is the account to be liquidated, and when: early, in volatility spikes? How large may the strangle
be under each margin rule, for growth or for a cap on the probability of liquidation?

Setup (``config.yaml``): GJR-GARCH-t paths with BTC-like daily parameters (as in
``experiments/liquidation_vs_leverage/config_garch.yaml``: alpha 0.12, beta 0.85, gamma -0.02,
nu 3.2, unconditional vol 68%, drift 0.5 a year), daily steps, 30 days; options priced and marked at
the model's forecast vol over each leg's remaining life times 1.1 (``implied_vol: {kind: model,
premium: 0.1}``), so a variance spike raises the marks of the short legs; the legs expire at the
horizon and settle at their intrinsic value. No hedge. Fee 0.05% of the premium, liquidation fee
0.2% of the legs' underlying notional, no funding or interest.

Steps:

1. A grid of sizes under each margin rule (``market.margin: standard | scenario``), every size on
   the same paths (the book is built once and scaled): log growth, mean return (the premium
   earned net of the payoffs), CVaR 95% and 99% of the simple return, P(liquidation) (margin
   checked at the daily closes: option books have no Brownian bridge) and maximum drawdown, with
   Monte Carlo standard errors. For the liquidated paths: the median day, the share liquidated
   within ``early_days``, where the price was (beyond a strike or between), and the implied vol at
   the liquidating close against its starting value. The implied vol is recomputed in numpy from the
   paths' log-returns (the GARCH recursion and its variance forecast).
2. Symmetric sizes from the grid: the growth-optimal size (vertex of a parabola through the best
   grid point and its neighbours) and, for each cap, the largest size whose P(liquidation) is at
   most the cap (linear interpolation of P between grid points; s.e. by the delta method,
   s.e.(P) / slope). The growth-optimal size under a cap is the smaller of the two (log growth is
   unimodal in the size on the grid), so a cap above the growth peak's P(liq) does not bind. Each
   size is then simulated on the same paths.
3. levopt's gradient search (``levopt.run``, optax, augmented Lagrangian): maximize log growth
   subject to P(liquidation) <= cap over both legs' quantities, each free in [-size_max, 0] (the
   search cannot tie the two legs into one size), evaluated out of sample on ``paths`` paths. The
   search's paths and steps are set per margin rule (``optax.optimizer``): through the scenario
   margin each step costs about 20 times more, so that search is shorter, on fewer paths, and starts
   from the standard rule's optimum under the same cap (the other starts at ``optax.init``). Each
   found book, and the standard rule's book under the scenario rule, is also simulated on the
   grid's paths, for paired comparisons (and the count of paths wiped out, W_T = 0, which the log
   growth floors at 1e-6, and of those closed on the expiry day).

Assumptions beyond config.yaml: the scenario margin's implied vol is the legs' own (model) implied
vol; a gap through the margin at a daily check closes the account at W = 0; at expiry the legs
settle before the check, and an account whose equity the settlement leaves negative is closed at
zero (liquidated; levopt's rule).

Writes ``results.csv`` (the grid), ``optima.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/short_strangle_margin/run.py [--out DIR] [--quick] [--figure-only]
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
from levopt.problem import STREAM_PATHS  # noqa: E402

HERE = Path(__file__).resolve().parent
EXTRA = ("name", "margins", "sizes", "caps", "early_days", "optax")
DAYS_PER_YEAR = 365.0


def levopt_config(cfg: dict[str, Any], margin: str) -> dict[str, Any]:
    c = copy.deepcopy({k: v for k, v in cfg.items() if k not in EXTRA})
    c["market"]["margin"] = margin
    return c


def implied_vol_paths(cfg: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """``(paths, steps + 1)`` implied vol of a leg expiring at the horizon, at t = 0 and at each close:
    the GARCH variance forecast over the remaining life (levopt.paths.garch.variance_term_structure)
    times 1 + premium, from the conditional variances recovered from the log-returns ``x``."""
    m = cfg["model"]
    dt = 1.0 / (DAYS_PER_YEAR * cfg["steps_per_day"])
    mu, omega, alpha, beta, gamma = (float(m[k]) for k in ("mu", "omega", "alpha", "beta", "gamma"))
    phi = alpha + beta + gamma / 2
    h_bar = omega / (1 - phi)
    paths, steps = x.shape
    h = np.empty((paths, steps + 1))
    h[:, 0] = h_bar
    for t in range(steps):
        eps = (x[:, t] - mu * dt + 0.5 * h[:, t]) / np.sqrt(h[:, t])
        h[:, t + 1] = omega + (alpha + gamma * (eps < 0)) * h[:, t] * eps**2 + beta * h[:, t]
    n = np.maximum(steps - np.arange(steps + 1), 1.0)  # steps left to expiry (at least one)
    mean = h_bar + (h - h_bar) * (1 - phi**n) / (n * (1 - phi))
    return np.sqrt(mean / dt) * (1 + cfg["policy"]["implied_vol"]["premium"])


def timing(outcome: Any, x: np.ndarray, iv: np.ndarray, early: int) -> dict[str, float]:
    """When and where the liquidated paths were liquidated (``x``: the paths' log-returns)."""
    steps = np.asarray(outcome.liquidation_step)
    liq = steps > 0
    if not liq.any():
        return {"liquidated_paths": 0}
    s = steps[liq]
    price = np.exp(np.cumsum(x[liq], axis=1))[np.arange(s.size), s - 1]
    return {
        "liquidated_paths": int(liq.sum()),
        "median_liquidation_day": float(np.median(s)),
        "early_share": float(np.mean(s <= early)),
        "above_call_strike": float(np.mean(price > 1.15)),
        "below_put_strike": float(np.mean(price < 0.85)),
        "iv_ratio_at_liquidation": float(np.median(iv[liq, s] / iv[liq, 0])),
        "abs_return_liquidation_day": float(np.median(np.abs(x[liq, s - 1]))),
    }


class Sizes:
    """One margin rule: the strangle built at unit size and scaled on fixed paths."""

    def __init__(self, c: dict[str, Any], x: np.ndarray, iv: np.ndarray, early: int):
        self.problem = levopt.build(c)
        self.key = self.problem.key(STREAM_PATHS)
        self.x, self.iv, self.early = x, iv, early
        self.margin = c["market"]["margin"]

    def __call__(self, size: float) -> dict[str, Any]:
        t0 = time.perf_counter()
        p = self.problem
        outcome = p.simulate(self.key, policy=p.policy.scaled(size))
        m = p.metrics(outcome)
        row = {"margin": self.margin, "size": float(size)}
        row |= m["metrics"] | {f"{k}_se": v for k, v in m["stderr"].items()}
        steps = np.asarray(outcome.liquidation_step)
        row["liquidated_at_open"] = bool(np.all(steps == 0))
        # Paths whose equity was gone at a daily check (a gap through the margin, or a settlement at
        # expiry into a negative equity): closed at W_T = 0, log floored at ruin_floor (1e-6 = -13.8).
        wealth = np.asarray(outcome.wealth)
        row["wiped_out_paths"] = int(np.sum(wealth <= 0.0))
        row["expiry_wiped_out_paths"] = int(np.sum((wealth <= 0.0) & (steps == self.x.shape[1])))
        row["min_wealth"] = float(wealth.min())
        row |= timing(outcome, self.x, self.iv, self.early)
        row["seconds"] = time.perf_counter() - t0
        return row


def cap_size(grid: pd.DataFrame, cap: float) -> tuple[float, float]:
    """Largest size with P(liq) <= cap: linear interpolation between the grid points bracketing the
    cap, and its s.e. s.e.(P)/slope (delta method)."""
    g = grid[~grid.liquidated_at_open].sort_values("size")
    p, s = g.liquidation_probability.to_numpy(), g["size"].to_numpy()
    above = np.nonzero(p > cap)[0]
    if above.size == 0:
        return float(s[-1]), float("nan")
    i = int(above[0])
    if i == 0:
        return float("nan"), float("nan")
    slope = (p[i] - p[i - 1]) / (s[i] - s[i - 1])
    star = s[i - 1] + (cap - p[i - 1]) / slope
    se = math.sqrt(cap * (1 - cap) / grid.attrs["paths"]) / slope
    return float(star), float(se)


def growth_peak(grid: pd.DataFrame) -> float:
    """Vertex of the parabola through the best grid point of log growth and its two neighbours."""
    g = grid[~grid.liquidated_at_open].sort_values("size").reset_index(drop=True)
    i = int(g.log_growth.idxmax())
    if i == 0 or i == len(g) - 1:
        return float(g["size"][i])
    s = g["size"][i - 1 : i + 2].to_numpy()
    f = g.log_growth[i - 1 : i + 2].to_numpy()
    a, b, _ = np.polyfit(s, f, 2)
    return float(-b / (2 * a)) if a < 0 else float(s[1])


def optax_config(
    cfg: dict[str, Any], margin: str, cap: float, start: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The search's config; ``start``: the legs' initial quantities (default ``optax.init`` each)."""
    c = levopt_config(cfg, margin)
    o = cfg["optax"]
    for i, leg in enumerate(c["policy"]["legs"]):
        init = o["init"] if start is None else min(max(start[i], -o["size_max"]), 0.0)
        leg["quantity"] = {"init": init, "min": -o["size_max"], "max": 0.0}
    c["objective"] = {
        "maximize": "log_growth",
        "constraints": [{"metric": "liquidation_probability", "max": cap}],
    }
    c["optimizer"] = dict(o["optimizer"][margin])
    return c


def optax_search(
    cfg: dict[str, Any], margin: str, cap: float, start: tuple[float, float] | None = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    method = "optax (both legs free)" + ("" if start is None else ", warm start")
    row: dict[str, Any] = {"margin": margin, "cap": cap, "method": method}
    try:
        r = levopt.run(optax_config(cfg, margin, cap, start), profiles=False)
    except levopt.LevoptError as err:
        return row | {"error": f"{type(err).__name__}: {err}", "seconds": time.perf_counter() - t0}
    pol = r["policy"]
    q = pol.get("quantity") or [pol.get("legs.0.quantity"), pol.get("legs.1.quantity")]
    oos = r["out_of_sample"]
    row |= {
        "call_quantity": float(np.ravel(q)[0]),
        "put_quantity": float(np.ravel(q)[1]),
        "converged": r["optimizer"].get("converged"),
        "iterations": r["optimizer"].get("iterations"),
        "in_sample_liquidation_probability": r["in_sample"]["metrics"].get("liquidation_probability"),
        "in_sample_log_growth": r["in_sample"]["metrics"].get("log_growth"),
        "cap_holds_out_of_sample": r["constraints"][0]["satisfied"],  # within 2 s.e.
    }
    row |= oos["metrics"] | {f"{k}_se": v for k, v in oos["stderr"].items()}
    row["seconds"] = time.perf_counter() - t0
    return row


def on_grid_paths(
    cfg: dict[str, Any],
    margin: str,
    cap: float,
    book: tuple[float, float],
    method: str,
    x: np.ndarray,
    iv: np.ndarray,
    early: int,
) -> dict[str, Any]:
    """A book of (call, put) quantities simulated under ``margin`` on the grid's paths."""
    fixed = levopt_config(cfg, margin)
    for leg, q in zip(fixed["policy"]["legs"], book, strict=True):
        leg["quantity"] = q
    row = {"method": method, "cap": cap, "how": "on the grid's paths, under this rule"}
    row |= Sizes(fixed, x, iv, early)(1.0)
    return row | {"call_quantity": book[0], "put_quantity": book[1]}


def figure(grid: pd.DataFrame, optima: pd.DataFrame, caps: list[float], early: int, path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    colors = {"standard": "tab:red", "scenario": "tab:blue"}
    panels = [
        (axes[0, 0], "mean_return", "mean return over 30 days (of equity)"),
        (axes[0, 1], "liquidation_probability", "P(liquidation within 30 days)"),
        (axes[1, 0], "log_growth", "log growth (per year)"),
    ]
    for ax, col, label in panels:
        for margin, d in grid.groupby("margin"):
            d = d.sort_values("size")
            ok = d[~d.liquidated_at_open]
            ax.errorbar(
                ok["size"], ok[col], yerr=2 * ok[f"{col}_se"], fmt="o-", ms=4, capsize=2,
                color=colors[margin], label=f"{margin} margin",
            )  # fmt: skip
            dead = d[d.liquidated_at_open]
            if not dead.empty:
                ax.plot(
                    dead["size"], dead[col], "x", color=colors[margin], label=f"{margin}: liquidated at open"
                )
        ax.set_xlabel("strangle size s (units short of each leg per unit of equity)")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 1].set_yscale("log")
    axes[0, 1].set_ylim(1e-4, 1.5)
    for cap in caps:
        axes[0, 1].axhline(cap, color="k", lw=0.7, ls=":")
    axes[1, 0].set_ylim(max(grid.log_growth.min(), -6), None)
    axes[1, 0].axhline(0, color="k", lw=0.6)
    sym = optima[optima.method.str.startswith("symmetric")]
    for _, r in sym[sym.cap.isna()].iterrows():
        axes[1, 0].axvline(r["size"], color=colors[r.margin], lw=0.8, ls="--")
    axes[0, 0].legend(fontsize=8)
    ax = axes[1, 1]
    share = ax.twinx()
    for margin, d in grid.groupby("margin"):
        d = d[(~d.liquidated_at_open) & (d.liquidated_paths > 0)].sort_values("size")
        ax.plot(d["size"], d.iv_ratio_at_liquidation, "s-", color=colors[margin], label=f"{margin}: IV ratio")
        share.plot(
            d["size"], d.early_share, "o--", color=colors[margin], alpha=0.6, label=f"{margin}: early share"
        )
    ax.set_yscale("log")
    ax.set_xlabel("strangle size s")
    ax.set_ylabel("IV at liquidation / IV at t = 0, median (solid)")
    share.set_ylabel(f"share liquidated within {early} days (dashed)")
    share.set_ylim(0, 1)
    ax.set_title("when the liquidated paths were liquidated", fontsize=10)
    ax.grid(alpha=0.3)
    lines = ax.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], fontsize=8)
    fig.suptitle("Short 30-day strangle (call 1.15 / put 0.85) on GJR-GARCH-t paths: ±2 s.e.")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pm(v: Any, se: Any, digits: int = 4) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    if se is None or not np.isfinite(se):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ± {se:.{digits}f}"


def count(r: pd.Series, name: str) -> str:
    v = r.get(name, np.nan)
    return "—" if not np.isfinite(v) else f"{v:.0f}"


def table(grid: pd.DataFrame, optima: pd.DataFrame, early: int) -> str:
    lines = [
        "### Grid of sizes",
        "",
        "| margin | size | log growth (/yr) | mean return | CVaR95 | CVaR99 | P(liq) | wiped out | of which at expiry "
        f"| max drawdown | liq. day (median) | liq. within {early} d | beyond call / put strike "
        "| IV at liq. / IV(0) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in grid.sort_values(["margin", "size"], ascending=[False, True]).iterrows():
        if r.liquidated_at_open:
            lines.append(
                f"| {r.margin} | {r['size']:g} | liquidated at open (margin above equity) |" + " |" * 11
            )
            continue
        liq = r.liquidated_paths > 0
        lines.append(
            f"| {r.margin} | {r['size']:g} | {pm(r.log_growth, r.log_growth_se, 3)} | "
            f"{pm(r.mean_return, r.mean_return_se)} | {pm(r.cvar95, r.cvar95_se)} | {pm(r.cvar99, r.cvar99_se)} | "
            f"{pm(r.liquidation_probability, r.liquidation_probability_se)} | {r.wiped_out_paths:.0f} | "
            f"{r.expiry_wiped_out_paths:.0f} | {pm(r.max_drawdown, r.max_drawdown_se)} | "
            + (
                f"{r.median_liquidation_day:g} | {r.early_share:.0%} | {r.above_call_strike:.0%} / "
                f"{r.below_put_strike:.0%} | {r.iv_ratio_at_liquidation:.2f} |"
                if liq
                else "— | — | — | — |"
            )
        )
    lines += [
        "",
        "### Optimal sizes",
        "",
        "| margin | method | P(liq) cap | size s (call / put) | log growth (/yr) | mean return | CVaR99 | P(liq) "
        "| wiped out | of which at expiry | max drawdown | search |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for _, r in optima.iterrows():
        cap = "none" if not np.isfinite(r.cap) else f"{r.cap:.0%}"
        if isinstance(r.get("error"), str):
            lines.append(f"| {r.margin} | {r.method} | {cap} | — | — | — | — | — | — | — | — | {r.error} |")
            continue
        if r.method.startswith("symmetric"):
            size = f"{r['size']:.3f}" + (
                f" ± {r.size_se:.3f}" if np.isfinite(r.get("size_se", np.nan)) else ""
            )
            how = r.how
        elif r.method in ("standard rule's optimum", "optax book"):
            size, how = f"{-r.call_quantity:.3f} / {-r.put_quantity:.3f}", r.how
        else:
            size = f"{-r.call_quantity:.3f} / {-r.put_quantity:.3f}"
            how = (
                f"{int(r.iterations)} steps, converged: {r.converged}; in-sample P(liq) "
                f"{r.in_sample_liquidation_probability:.4f}, log growth {r.in_sample_log_growth:.3f}; "
                f"cap holds out of sample (2 s.e.): {r.cap_holds_out_of_sample}"
            )
        lines.append(
            f"| {r.margin} | {r.method} | {cap} | {size} | {pm(r.log_growth, r.log_growth_se, 3)} | "
            f"{pm(r.mean_return, r.mean_return_se)} | {pm(r.cvar99, r.cvar99_se)} | "
            f"{pm(r.liquidation_probability, r.liquidation_probability_se)} | "
            f"{count(r, 'wiped_out_paths')} | {count(r, 'expiry_wiped_out_paths')} | "
            f"{pm(r.max_drawdown, r.max_drawdown_se)} | {how} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="400 paths, 6 sizes, a short search")
    parser.add_argument("--figure-only", action="store_true", help="redraw figure.png from the saved CSVs")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    if args.figure_only:
        res, opt = pd.read_csv(args.out / "results.csv"), pd.read_csv(args.out / "optima.csv")
        figure(res, opt, [float(c) for c in cfg["caps"]], int(cfg["early_days"]), args.out / "figure.png")
        return
    sizes = [float(s) for s in cfg["sizes"]]
    caps = [float(c) for c in cfg["caps"]]
    early = int(cfg["early_days"])
    if args.quick:
        cfg["paths"], sizes = 400, [0.2, 0.5, 1.0, 2.0, 4.0, 6.0]
        for margin in cfg["margins"]:
            cfg["optax"]["optimizer"][margin] |= {"steps": 10, "paths": 256}
    rows, optima = [], []
    with jax.enable_x64(True):
        x = levopt.simulate(levopt_config(cfg, "standard"))
        iv = implied_vol_paths(cfg, x)
        for margin in cfg["margins"]:
            sizer = Sizes(levopt_config(cfg, margin), x, iv, early)
            grid = []
            for s in sizes:
                row = sizer(s)
                grid.append(row)
                print(
                    f"{margin:8s} s={s:<5g} growth={row['log_growth']:+.4f}±{row['log_growth_se']:.4f} "
                    f"mean={row['mean_return']:+.4f}±{row['mean_return_se']:.4f} "
                    f"P(liq)={row['liquidation_probability']:.4f} open={row['liquidated_at_open']} "
                    f"({row['seconds']:.1f} s)",
                    flush=True,
                )
            g = pd.DataFrame(grid)
            g.attrs["paths"] = cfg["paths"]
            rows += grid
            peak = growth_peak(g)
            found = [
                (
                    "symmetric, growth-optimal",
                    None,
                    peak,
                    float("nan"),
                    "parabola through the best 3 grid points",
                )
            ]
            for cap in caps:
                s_cap, se = cap_size(g, cap)
                found.append(
                    (
                        "symmetric, largest within cap",
                        cap,
                        s_cap,
                        se,
                        "P(liq) = cap, interpolated on the grid",
                    )
                )
                if np.isfinite(s_cap) and s_cap < peak:  # the cap binds: growth falls towards it
                    found.append(("symmetric, growth-optimal", cap, s_cap, se, "the cap binds: the cap size"))
            for method, cap, s, se, how in found:
                row = {
                    "method": method,
                    "how": how,
                    "cap": float("nan") if cap is None else cap,
                    "size_se": se,
                }
                row |= sizer(s) if np.isfinite(s) else {"margin": margin, "size": s}
                optima.append(row)
            for cap in caps:
                # The scenario rule's (costlier) search starts from the standard rule's optimum.
                prev = [
                    r
                    for r in optima
                    if r["margin"] == "standard" and r.get("cap") == cap and r["method"].startswith("optax")
                ]
                start = None
                if margin != "standard" and prev and "call_quantity" in prev[0]:
                    start = (prev[0]["call_quantity"], prev[0]["put_quantity"])
                    optima.append(
                        on_grid_paths(cfg, margin, cap, start, "standard rule's optimum", x, iv, early)
                    )
                row = optax_search(cfg, margin, cap, start)
                optima.append(row)
                print({k: v for k, v in row.items() if not k.endswith("_se")}, flush=True)
                if "call_quantity" in row:
                    book = (row["call_quantity"], row["put_quantity"])
                    optima.append(on_grid_paths(cfg, margin, cap, book, "optax book", x, iv, early))
    res = pd.DataFrame(rows)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    opt = pd.DataFrame(optima)
    opt.to_csv(args.out / "optima.csv", index=False, float_format="%.6g")
    text = table(res, opt, early)
    (args.out / "table.md").write_text(text)
    figure(res, opt, caps, early, args.out / "figure.png")
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
