"""Gamma scalping: the P&L of a delta-hedged long straddle against the textbook attribution.

Question: a trader buys an at-the-money straddle at implied vol sigma_imp, holds it to expiry and
delta-hedges it with the perpetual every k hours. How much of each path's P&L does the textbook
attribution 1/2 sum_t Gamma_t S_t^2 (r_t^2 - sigma_imp^2 dt) explain, what is the mean P&L when
the realized vol differs from the implied one, and how do the hedge interval and fees change the
mean and the spread?

Setup (``config.yaml``): GBM with mu = 0 and sigma = 0.68, hourly steps, a 10-day straddle (call
and put, strike 1.0 = S_0, quantity 1 each per unit of equity) bought at t = 0 at implied vol
sigma_imp in ``implied_vols`` (0.8 sigma, sigma, 1.2 sigma; constant), held to expiry; the engine
trades the perpetual to minus the legs' Black-76 delta at t = 0 and every k steps (k in
``hedge_every``); fee in ``fees`` on the premium and on each hedge trade's notional; no funding,
no interest. Every configuration runs on the same paths (common random numbers).

Per path, from the engine: P&L = W_T - 1. From the same paths' log-returns (``levopt.simulate``),
in numpy: Gamma_t = the straddle's Black-76 gamma at sigma_imp, at the step's opening price S_t and
remaining life T - t dt (``levopt.options.greeks``), and

* the per-step attribution  A = 1/2 sum_t Gamma_t S_t^2 (r_t^2 - sigma_imp^2 dt), r_t the simple
  return of step t (the textbook formula of continuous hedging, the same for every k);
* the per-hedge attribution A_k = 1/2 sum_j Gamma_j S_j^2 (R_j^2 - sigma_imp^2 k dt), R_j the
  return over the j-th hedge interval (the same expansion at the hedge dates).

Regression of P&L on each (OLS: slope with its s.e., intercept, R^2).

Closed form of the mean. With mu = 0 the perpetual's price is a martingale, so the hedge's gains
sum_t Delta_t (S_{t+1} - S_t) have mean 0 whatever the hedge times, and without fees

    E[P&L] = E[payoff] - premium = sum_legs [B76(1, K, sigma, T) - B76(1, K, sigma_imp, T)]

exactly, for every k (to first order 2 vega (sigma - sigma_imp), or
1/2 (sigma^2 - sigma_imp^2) E[int Gamma S^2 dt]). The fee on the premium, fee x premium, is known at
t = 0; the fee on the hedge trades is path-dependent and is measured as the paired difference of
the runs with and without fees.

Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/gamma_scalping/run.py [--out DIR] [--quick]
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
from levopt.options import black76, greeks  # noqa: E402
from levopt.problem import STREAM_PATHS  # noqa: E402

HERE = Path(__file__).resolve().parent
EXTRA = ("name", "implied_vols", "hedge_every", "fees")
DAYS_PER_YEAR = 365.0


def levopt_config(cfg: dict[str, Any], iv: float, k: int, fee: float) -> dict[str, Any]:
    c = copy.deepcopy({key: v for key, v in cfg.items() if key not in EXTRA})
    c["policy"]["implied_vol"] = {"kind": "constant", "value": iv}
    c["policy"]["hedge"] = {"rebalance": k}
    c["market"]["fee"] = fee
    return c


def dollar_gamma(cfg: dict[str, Any], prices: np.ndarray, iv: float, dt: float) -> np.ndarray:
    """``(paths, steps)`` sum over legs of q Gamma S^2 at each step's opening price and remaining life."""
    paths, steps = prices.shape[0], prices.shape[1] - 1
    s = prices[:, :-1]
    total = np.zeros((paths, steps))
    for leg in cfg["policy"]["legs"]:
        tau = leg["expiry_days"] / DAYS_PER_YEAR - np.arange(steps) * dt
        g = np.asarray(greeks(s, leg["strike"], iv, tau[None, :], leg["type"]).gamma)
        total += leg["quantity"] * g * s**2
    return total


def attribution(gs2: np.ndarray, prices: np.ndarray, iv: float, dt: float, k: int) -> np.ndarray:
    """1/2 sum_j Gamma_j S_j^2 (R_j^2 - iv^2 k dt) over hedge intervals of k steps (k = 1: per step)."""
    steps = gs2.shape[1]
    starts = np.arange(0, steps, k)
    ends = np.minimum(starts + k, steps)
    r = prices[:, ends] / prices[:, starts] - 1.0
    return 0.5 * np.sum(gs2[:, starts] * (r**2 - iv**2 * (ends - starts) * dt), axis=1)


def ols(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Slope (with its s.e.), intercept and R^2 of y on x."""
    xc, yc = x - x.mean(), y - y.mean()
    slope = float(np.sum(xc * yc) / np.sum(xc**2))
    resid = yc - slope * xc
    n = x.size
    se = math.sqrt(np.sum(resid**2) / (n - 2) / np.sum(xc**2))
    r2 = 1.0 - float(np.sum(resid**2) / np.sum(yc**2))
    return {"slope": slope, "slope_se": se, "intercept": float(y.mean() - slope * x.mean()), "r2": r2}


def closed_form(cfg: dict[str, Any], iv: float) -> dict[str, float]:
    """Exact mean P&L without fees (mu = 0), its vega approximation and the opening premium."""
    sigma = float(cfg["model"]["sigma"])
    exact = premium = vega = 0.0
    for leg in cfg["policy"]["legs"]:
        t, k, q = leg["expiry_days"] / DAYS_PER_YEAR, leg["strike"], leg["quantity"]
        v_iv = float(black76(1.0, k, iv, t, leg["type"]))
        exact += q * (float(black76(1.0, k, sigma, t, leg["type"])) - v_iv)
        premium += q * v_iv
        vega += q * float(greeks(1.0, k, iv, t, leg["type"]).vega)
    return {"closed_form_mean": exact, "vega_approx": vega * (sigma - iv), "premium": premium}


def figure(res: pd.DataFrame, scatter: dict[tuple, tuple], cfg: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(13, 10.5))
    colors = dict(zip(cfg["implied_vols"], ("tab:blue", "tab:green", "tab:red"), strict=True))
    sigma = cfg["model"]["sigma"]
    k_max = max(cfg["hedge_every"])
    panels = [
        (axes[0, 0], 1, 0, "hedged every hour: per-step attribution A", "A = ½ Σ_t Γ_t S_t² (r_t² − σ_imp² Δt), hourly"),
        (axes[0, 1], k_max, 0, f"hedged every {k_max} h: the same per-step A", "A (hourly steps)"),
        (
            axes[1, 0], k_max, 1, f"hedged every {k_max} h: per-hedge attribution A_k",
            f"A_k = ½ Σ_j Γ_j S_j² (R_j² − σ_imp² kΔt), {k_max}-hour intervals",
        ),
    ]  # fmt: skip
    for ax, k, which, title, xlabel in panels:
        lo, hi = np.inf, -np.inf
        for iv in cfg["implied_vols"]:
            a, pnl = scatter[(iv, k)][which], scatter[(iv, k)][2]
            ax.scatter(
                a, pnl, s=3, alpha=0.35, color=colors[iv], label=f"σ_imp = {iv:g} ({iv / sigma:.1f} σ)"
            )
            lo, hi = min(lo, a.min(), pnl.min()), max(hi, a.max(), pnl.max())
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="P&L = attribution")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("P&L of the hedged straddle (of equity), fee 0")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, markerscale=4)
    ax = axes[1, 1]
    for j, iv in enumerate(cfg["implied_vols"]):
        for fee, style in zip(cfg["fees"], ("o-", "s--"), strict=True):
            d = res[(res.implied_vol == iv) & (res.fee == fee)].sort_values("hedge_every")
            x = d.hedge_every * (1 + 0.06 * (j - 1)) * (1.02 if fee > 0 else 1.0)
            ax.errorbar(
                x, d.mean_pnl, yerr=d.sd_pnl, fmt=style, capsize=3, color=colors[iv], ms=4,
                label=f"σ_imp {iv:g}, fee {fee * 1e4:g} bp",
            )  # fmt: skip
        cf = res[(res.implied_vol == iv)].closed_form_mean.iloc[0]
        ax.axhline(cf, color=colors[iv], lw=0.7, ls=":")
    ax.set_xscale("log")
    ax.set_xticks(cfg["hedge_every"], [f"{k} h" for k in cfg["hedge_every"]])
    ax.minorticks_off()
    ax.set_xlabel("hedge interval")
    ax.set_ylabel("P&L: mean ± s.d. over paths (dotted: exact mean without fees)")
    ax.set_title("mean and spread against the hedge interval", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(
        f"Delta-hedged long ATM straddle, {cfg['horizon_days']} days, hourly GBM steps, σ = {sigma:g} "
        "(3,000 paths shown in the scatters)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(res: pd.DataFrame) -> str:
    lines = [
        "| σ_imp | hedge every | fee | mean P&L | exact mean (no fee) | z | fee drag: premium + hedges "
        "| s.d. P&L | per-step attribution: slope, R² | per-hedge attribution: slope, R² | P&L − A_k: mean, s.d. |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in res.sort_values(["implied_vol", "fee", "hedge_every"]).iterrows():
        drag = (
            "—" if r.fee == 0 else f"{r.premium_fee:.5f} + {r.hedge_fee_drag:.5f} ± {r.hedge_fee_drag_se:.5f}"
        )
        lines.append(
            f"| {r.implied_vol:g} | {r.hedge_every:g} h | {r.fee * 1e4:g} bp | {r.mean_pnl:.5f} ± {r.mean_pnl_se:.5f} | "
            f"{r.closed_form_mean:.5f} | {'' if r.fee else f'{r.z_vs_closed_form:+.2f}'} | {drag} | {r.sd_pnl:.5f} | "
            f"{r.step_slope:.3f} ± {r.step_slope_se:.3f}, {r.step_r2:.3f} | "
            f"{r.hedge_slope:.3f} ± {r.hedge_slope_se:.3f}, {r.hedge_r2:.3f} | "
            f"{r.resid_mean:.5f} ± {r.resid_mean_se:.5f}, {r.resid_sd:.5f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="300 paths")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    if args.quick:
        cfg["paths"] = 300
    ivs = [float(v) for v in cfg["implied_vols"]]
    ks = [int(k) for k in cfg["hedge_every"]]
    fees = [float(f) for f in cfg["fees"]]
    dt = 1.0 / (DAYS_PER_YEAR * cfg["steps_per_day"])
    rows, scatter = [], {}
    with jax.enable_x64(True):
        x = levopt.simulate(levopt_config(cfg, ivs[0], ks[0], 0.0))
        prices = np.concatenate([np.ones((x.shape[0], 1)), np.exp(np.cumsum(x, axis=1))], axis=1)
        for k in ks:
            problem = levopt.build(levopt_config(cfg, ivs[0], k, 0.0))
            key = problem.key(STREAM_PATHS)
            for iv in ivs:
                gs2 = dollar_gamma(cfg, prices, iv, dt)
                a_step = attribution(gs2, prices, iv, dt, 1)
                a_hedge = attribution(gs2, prices, iv, dt, k)
                cf = closed_form(cfg, iv)
                base = None
                for fee in fees:
                    t = time.perf_counter()
                    p = levopt.build(levopt_config(cfg, iv, k, fee))  # same structure: no recompilation
                    out = p.simulate(key)
                    pnl = np.asarray(out.wealth, float) - 1.0
                    assert not np.asarray(out.liquidated).any()
                    n = pnl.size
                    row = {"implied_vol": iv, "hedge_every": k, "fee": fee, **cf}
                    row |= {
                        "mean_pnl": float(pnl.mean()),
                        "mean_pnl_se": float(pnl.std(ddof=1) / math.sqrt(n)),
                        "sd_pnl": float(pnl.std(ddof=1)),
                        "premium_fee": fee * cf["premium"],
                        "gamma_form": float(
                            0.5 * (cfg["model"]["sigma"] ** 2 - iv**2) * np.mean(gs2.sum(axis=1) * dt)
                        ),
                    }
                    expected = cf["closed_form_mean"] - row["premium_fee"]
                    if base is None:
                        base = pnl
                        row |= {"hedge_fee_drag": 0.0, "hedge_fee_drag_se": 0.0}
                    else:
                        d = base - pnl - row["premium_fee"]
                        row |= {
                            "hedge_fee_drag": float(d.mean()),
                            "hedge_fee_drag_se": float(d.std(ddof=1) / math.sqrt(n)),
                        }
                        expected -= row["hedge_fee_drag"]
                    row["z_vs_closed_form"] = (row["mean_pnl"] - expected) / row["mean_pnl_se"]
                    row |= {f"step_{key_}": v for key_, v in ols(a_step, pnl).items()}
                    row |= {f"hedge_{key_}": v for key_, v in ols(a_hedge, pnl).items()}
                    row["resid_sd"] = float(np.std(pnl - a_hedge, ddof=1))
                    # What the attribution misses on average (E[A_k] is about 0 at sigma_imp = sigma,
                    # so this tests the mean P&L there with the attribution as a control variate).
                    row["resid_mean"] = float(np.mean(pnl - a_hedge))
                    row["resid_mean_se"] = row["resid_sd"] / math.sqrt(n)
                    row["mean_step_attribution"] = float(a_step.mean())
                    row["seconds"] = time.perf_counter() - t
                    rows.append(row)
                    if fee == 0.0:  # the figure shows the first 3,000 paths
                        scatter[(iv, k)] = (a_step[:3000], a_hedge[:3000], pnl[:3000])
                    print(
                        f"iv={iv:g} k={k:<2d} fee={fee:g}: mean={row['mean_pnl']:+.5f}±{row['mean_pnl_se']:.5f} "
                        f"(exact {cf['closed_form_mean']:+.5f}) sd={row['sd_pnl']:.5f} "
                        f"slope={row['step_slope']:.3f} R2={row['step_r2']:.3f} "
                        f"R2_k={row['hedge_r2']:.3f} ({row['seconds']:.1f} s)",
                        flush=True,
                    )
    res = pd.DataFrame(rows)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    text = table(res)
    (args.out / "table.md").write_text(text)
    figure(res, scatter, cfg, args.out / "figure.png")
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
