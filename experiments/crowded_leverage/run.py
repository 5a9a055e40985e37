"""Crowded leverage: the largest safe static leverage next to a crowd of levered accounts (README.md).

For each cell of crowd mean leverage x open interest (``config.yaml``), and without any crowd, the
largest static long leverage L* (opened once, held 30 days) whose probability of liquidation is at
most ``cap``. P(L) is computed by the engine (Brownian-bridge liquidation probability) on the same
paths at every L (one seed: common random numbers), so it is a smooth deterministic function of L;
the root of P(L) = cap is bracketed on a 0.5 grid and refined by regula falsi (Illinois). Its
standard error is the delta method, s.e.(P) / P'(L*). One cell is repeated with a large account.
Writes ``results.csv``, ``evaluations.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/crowded_leverage/run.py [--out DIR] [--quick]
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
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import levopt  # noqa: E402
from levopt.cascade import CascadeParams, ImpactLaw, crowd_leverage, grid_edges, init_crowd  # noqa: E402
from levopt.config import read_yaml  # noqa: E402
from levopt.problem import STREAM_PATHS  # noqa: E402

HERE = Path(__file__).resolve().parent
EXTRA = ("name", "cap", "crowd_mean_leverage", "open_interest", "leverage_start", "large_account")
LONG_SHARE = 0.6
TOL = 0.005  # leverage tolerance of the root search (well below its Monte Carlo s.e.)
P_TOL = 0.05  # ... or stop when P is within 5% of the cap (5e-4, a third of its s.e.)
SLOPE_STEP = 0.02  # leverage step of the finite difference that gives P'(L*)


def mix(mean: float) -> dict[float, float]:
    """Leverage mix {0.6 M: 0.3, M: 0.4, 1.4 M: 0.3} (notional-weighted mean M at entry)."""
    return {round(0.6 * mean, 6): 0.3, float(mean): 0.4, round(1.4 * mean, 6): 0.3}


def cell(
    cfg: dict[str, Any], mean: float | None, oi: float | None, equity: float | None = None
) -> dict[str, Any]:
    """The levopt config of one cell (mean None: no crowd, no cascade block)."""
    c = copy.deepcopy({k: v for k, v in cfg.items() if k not in EXTRA})
    if equity is not None:
        c["market"]["account_equity"] = float(equity)
    if mean is None:
        del c["cascade"]
        c["market"].pop("account_equity")  # without a crowd the account's size plays no part
        c["metrics"] = ["liquidation_probability"]
        return c
    crowd = c["cascade"]["crowd"]
    crowd |= {"leverage": mix(mean), "long_oi": LONG_SHARE * oi, "short_oi": (1 - LONG_SHARE) * oi}
    return c


def start_leverage(c: dict[str, Any]) -> float:
    """The crowd's notional-weighted current leverage at the start price."""
    with jax.enable_x64(True):
        params = CascadeParams.from_config(c["cascade"], jnp.float64)
        return float(crowd_leverage(init_crowd(params), params))


class Frontier:
    """P(liquidation) of the static long as a function of its leverage, on fixed paths."""

    def __init__(self, c: dict[str, Any]):
        self.problem = levopt.build(c)
        self.key = self.problem.key(STREAM_PATHS)
        self.seen: dict[float, dict[str, Any]] = {}
        self.per_path: dict[float, np.ndarray] = {}  # each path's liquidation probability

    def __call__(self, lev: float) -> dict[str, Any]:
        lev = round(float(lev), 6)
        if lev not in self.seen:
            p = self.problem
            outcome = p.simulate(self.key, policy=p.policy.scaled(lev))
            out = p.metrics(outcome)
            self.seen[lev] = {
                "leverage": lev,
                **out["metrics"],
                **{f"{k}_se": v for k, v in out["stderr"].items()},
            }
            self.per_path[lev] = 1.0 - np.asarray(outcome.survival, np.float64)
        return self.seen[lev]

    def prob(self, lev: float) -> float:
        return self(lev)["liquidation_probability"]

    def largest_safe(self, cap: float, start: tuple[float, float]) -> dict[str, Any]:
        """The L* with P(L*) = cap: a bracket on a 0.5 grid, bisection while P at its lower end is
        below cap/10, then Illinois regula falsi on log P (nearly linear in L near the cap), then
        one linear step to the cap at the local slope P'(L*) (a finite difference)."""
        lo, hi = start
        while self.prob(lo) > cap:
            lo, hi = lo - 0.5, lo
        while self.prob(hi) <= cap:
            lo, hi = hi, hi + 0.5

        def g(lev: float) -> float:
            return math.log(max(self.prob(lev), 1e-300)) - math.log(cap)

        glo, ghi, side = g(lo), g(hi), 0
        for _ in range(12):
            if self.prob(lo) < cap / 10:  # log P is far from linear where P is tiny: bisect there
                mid = 0.5 * (lo + hi)
            else:
                mid = (lo * ghi - hi * glo) / (ghi - glo)
                mid = min(max(mid, lo + TOL / 4), hi - TOL / 4)
            gm = g(mid)
            if abs(self.prob(mid) - cap) < P_TOL * cap or hi - lo <= TOL:
                break
            if gm > 0:
                hi, ghi = mid, gm
                if side == -1:
                    glo /= 2
                side = -1
            else:
                lo, glo = mid, gm
                if side == 1:
                    ghi /= 2
                side = 1
        star = min(self.seen, key=lambda v: abs(self.prob(v) - cap))
        # Local slope of P at L*: a forward difference on the same paths (P is smooth in L).
        slope = (self.prob(star + SLOPE_STEP) - self.prob(star)) / SLOPE_STEP
        row = self(star)
        p = self.per_path[star]
        return {
            "largest_safe_leverage": star + (cap - row["liquidation_probability"]) / slope,
            "largest_safe_leverage_se": p.std(ddof=1) / math.sqrt(p.size) / slope,
            "star": star,
            "slope": slope,
            "evaluations": len(self.seen),
            **{f"at_{k}": v for k, v in row.items() if k != "leverage"},
        }


def closed_form(cfg: dict[str, Any], cap: float) -> float:
    """L* for GBM under continuous monitoring (DOMAIN.md: first passage of a drifted Brownian
    motion below b = log((1 - 1/L)/(1 - m)))."""
    mu, sigma = cfg["model"]["mu"], cfg["model"]["sigma"]
    m, t = cfg["market"]["maintenance_margin"], cfg["horizon_days"] / 365.0
    nu = mu - sigma**2 / 2
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))  # noqa: E731

    def prob(lev: float) -> float:
        b = math.log((1 - 1 / lev) / (1 - m))
        s = sigma * math.sqrt(t)
        return phi((b - nu * t) / s) + math.exp(2 * nu * b / sigma**2) * phi((b + nu * t) / s)

    lo, hi = 1.01, 50.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if prob(mid) <= cap else (lo, mid)
    return 0.5 * (lo + hi)


def barrier_shift(c: dict[str, Any], no_crowd_star: float) -> float:
    """L* predicted by moving the no-crowd barrier by the crowd's permanent impact.

    With linear permanent impact and no refill, a fall that has taken the price to y has liquidated
    the long notional F(y) with levels in [y, 0), so y = x - c F(y) (c = lambda / V): the cascaded
    price reaches b exactly when the exogenous one reaches x*(b) = min over y in [b, 0] of
    y + c F(y). The user's level b must therefore satisfy x*(b) = b0, b0 the no-crowd level at L*.
    Short liquidations in rallies (which push the price up) are left out, so this is a lower bound
    in spirit; the bridge and the discrete steps are the engine's only."""
    with jax.enable_x64(True):
        params = CascadeParams.from_config(c["cascade"], jnp.float64)
        notional = np.asarray(init_crowd(params).long_notional)
        edges = np.asarray(grid_edges(params))
        scale = float(ImpactLaw.of(params).scale)
    m = c["market"]["maintenance_margin"]
    lo, hi = edges[:-1], np.minimum(edges[1:], 0.0)
    y = np.linspace(-0.99, 0.0, 20001)
    frac = np.clip(
        (hi[None, :] - np.maximum(lo[None, :], y[:, None])) / np.maximum(hi - lo, 1e-300)[None, :], 0, 1
    )
    f = (frac * np.where(hi > lo, notional, 0.0)[None, :]).sum(1)  # F(y) on the grid of y
    x_star = np.minimum.accumulate((y + scale * f)[::-1])[::-1]  # min over [y, 0] of y' + c F(y')
    b0 = math.log((1 - 1 / no_crowd_star) / (1 - m))
    b = y[np.searchsorted(x_star, b0)]  # x_star is non-decreasing in y
    return 1.0 / (1.0 - (1 - m) * math.exp(b))


def figure(res: pd.DataFrame, evals: pd.DataFrame, cap: float, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    base = res[res.case == "no crowd"].iloc[0]
    grid = res[res.case == "crowd"]
    ax = axes[0]
    for oi, d in grid.groupby("open_interest"):
        ax.errorbar(
            d.crowd_mean_leverage,
            d.largest_safe_leverage,
            yerr=2 * d.largest_safe_leverage_se,
            fmt="o-",
            capsize=2,
            label=f"crowd OI {oi / 1e9:g}B USD",
        )
    ax.axhline(base.largest_safe_leverage, color="k", ls="--", label="no crowd")
    ax.set_xscale("log")
    ax.set_xticks([5, 10, 25], ["5", "10", "25"])
    ax.minorticks_off()
    ax.set_xlabel("crowd mean leverage at entry")
    ax.set_ylabel(f"largest static leverage with P(liq, 30 d) <= {cap:.0%}")
    ax.set_title("safe leverage next to the crowd (±2 s.e.)")
    ax.legend(fontsize=7, loc="center", bbox_to_anchor=(0.5, 0.34), ncol=2)
    ax.grid(alpha=0.3)
    ax = axes[1]
    for mean, d in grid.groupby("crowd_mean_leverage"):
        ax.errorbar(
            d.open_interest / 1e9,
            d.largest_safe_leverage,
            yerr=2 * d.largest_safe_leverage_se,
            fmt="s-",
            capsize=2,
            label=f"crowd mean {mean:g}x",
        )
    ax.axhline(base.largest_safe_leverage, color="k", ls="--", label="no crowd")
    ax.set_xlabel("crowd open interest (billion USD, 60% long)")
    ax.set_ylabel("largest safe static leverage")
    ax.set_title("the same against open interest")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax = axes[2]
    for label, d in evals[evals.case != "large account"].groupby("label", sort=False):
        d = d.sort_values("leverage")
        ax.plot(d.leverage, d.liquidation_probability, ".-", lw=0.8, ms=3, label=label)
    ax.axhline(cap, color="k", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 0.3)
    ax.set_xlabel("user's static leverage")
    ax.set_ylabel("P(liquidation within 30 days)")
    ax.set_title("the evaluations of the root search")
    ax.legend(fontsize=6, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(res: pd.DataFrame) -> str:
    lines = [
        "| case | crowd mean leverage at entry (at start) | crowd OI (USD) | account equity (USD) "
        "| largest safe static leverage | change (paired s.e.) | barrier-shift prediction | P(liq) there "
        "| cascade multiplier there | crowd liquidated there (USD) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in res.iterrows():
        crowd = "—" if r.case == "no crowd" else f"{r.crowd_mean_leverage:g}x ({r.start_leverage:.1f})"
        oi = "0" if r.case == "no crowd" else f"{r.open_interest / 1e9:g}B"
        eq = "any" if r.case == "no crowd" else f"{r.account_equity:,.0f}"
        if r.case == "crowd":
            change = f"{r.change_vs_no_crowd:+.3f} ± {r.change_se:.3f} vs no crowd"
        elif r.case == "large account":
            change = f"{r.change_vs_crowd:+.3f} ± {r.change_se:.3f} vs the same cell, small account"
        else:
            change = ""
        mult = (
            "—"
            if r.case == "no crowd"
            else f"{r.at_cascade_multiplier:.4f} ± {r.at_cascade_multiplier_se:.4f}"
        )
        liq = (
            "—"
            if r.case == "no crowd"
            else f"{r.at_crowd_liquidated / 1e9:.3f}B ± {r.at_crowd_liquidated_se / 1e9:.3f}B"
        )
        pred = "" if np.isnan(r.barrier_shift_prediction) else f"{r.barrier_shift_prediction:.3f}"
        lines.append(
            f"| {r.case} | {crowd} | {oi} | {eq} | {r.largest_safe_leverage:.3f} ± {r.largest_safe_leverage_se:.3f} | "
            f"{change} | {pred} | {r.at_liquidation_probability:.4f} ± {r.at_liquidation_probability_se:.4f} | {mult} | {liq} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="1,000 paths, 2 x 2 cells")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    cap = float(cfg["cap"])
    means = [float(m) for m in cfg["crowd_mean_leverage"]]
    ois = [float(o) for o in cfg["open_interest"]]
    if args.quick:
        cfg["paths"], means, ois = 1000, means[::2], ois[::2]
    start = tuple(float(v) for v in cfg["leverage_start"])
    small = float(cfg["market"]["account_equity"])
    big = dict(cfg["large_account"])
    if args.quick:  # the large account's cell must be one of the grid's
        big |= {"crowd_mean_leverage": means[0], "open_interest": ois[0]}
    cases = [("no crowd", None, None, None)]
    cases += [("crowd", m, oi, small) for oi in ois for m in means]
    cases += [
        (
            "large account",
            float(big["crowd_mean_leverage"]),
            float(big["open_interest"]),
            float(big["account_equity"]),
        )
    ]
    rows, evals, linear = [], [], {}
    for name, mean, oi, equity in cases:
        t = time.perf_counter()
        c = cell(cfg, mean, oi, equity)
        frontier = Frontier(c)
        row = {
            "case": name,
            "crowd_mean_leverage": mean,
            "open_interest": oi,
            "account_equity": equity,
            "start_leverage": float("nan") if mean is None else start_leverage(c),
        }
        row |= frontier.largest_safe(cap, start)
        # Each path's contribution to L* (delta method): paired differences between cases share paths.
        linear[(name, mean, oi)] = frontier.per_path[row["star"]] / row["slope"]
        twin = ("crowd", mean, oi) if name == "large account" else ("no crowd", None, None)
        if twin in linear and name != "no crowd":
            d = linear[(name, mean, oi)] - linear[twin]
            ref = next(r for r in rows if (r["case"], r["crowd_mean_leverage"], r["open_interest"]) == twin)
            row["change_vs_" + twin[0].replace(" ", "_")] = (
                row["largest_safe_leverage"] - ref["largest_safe_leverage"]
            )
            row["change_se"] = d.std(ddof=1) / math.sqrt(d.size)
            if name == "large account":  # the same leverage as the small account's: its own P(liq)
                at = frontier(ref["largest_safe_leverage"])
                row |= {f"at_small_L_{k}": v for k, v in at.items() if k != "leverage"}
        row["seconds"] = time.perf_counter() - t
        rows.append(row)
        label = name if mean is None else f"{mean:g}x, {oi / 1e9:g}B"
        evals += [{"case": name, "label": label, **e} for e in frontier.seen.values()]
        print({k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    res = pd.DataFrame(rows)
    res["closed_form_no_crowd"] = closed_form(cfg, cap)
    engine_base = float(res.loc[res.case == "no crowd", "largest_safe_leverage"].iloc[0])
    res["barrier_shift_prediction"] = [
        float("nan")
        if r.case == "no crowd"
        else barrier_shift(cell(cfg, r.crowd_mean_leverage, r.open_interest), engine_base)
        for r in res.itertuples()
    ]
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    ev = pd.DataFrame(evals)
    ev.to_csv(args.out / "evaluations.csv", index=False, float_format="%.6g")
    text = table(res)
    text += f"\nClosed form without crowd (GBM, continuous monitoring): L* = {closed_form(cfg, cap):.3f}.\n"
    (args.out / "table.md").write_text(text)
    figure(res, ev, cap, args.out / "figure.png")
    print(text)
    print(f"closed form without crowd (continuous monitoring): L* = {closed_form(cfg, cap):.4f}")
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
