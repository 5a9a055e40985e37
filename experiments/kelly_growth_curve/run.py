"""The Kelly growth curve, its risk, and fractional Kelly under GBM (see README.md).

Sweeps the daily-rebalanced leverage f = c f* (f* = (mu - r)/sigma^2) of ``config.yaml`` for two
financing rates r (borrow = cash = r) with :func:`levopt.sweep.run_sweep`, adds the probability of
a 50% drawdown as a user metric, compares the simulated log-growth with the closed form
r + f(mu - r) - f^2 sigma^2/2, and checks g(c f*)/g(f*) = c(2 - c) at r = 0 on common random
numbers. Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/kelly_growth_curve/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import levopt  # noqa: E402
from levopt.config import read_yaml  # noqa: E402
from levopt.objectives import METRICS  # noqa: E402
from levopt.objectives.metrics import log_growth  # noqa: E402
from levopt.problem import STREAM_PATHS  # noqa: E402
from levopt.sweep import run_sweep  # noqa: E402

HERE = Path(__file__).resolve().parent
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5)
TABLE_FRACTIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
RATES = (0.0, 0.05)
DRAWDOWN = 0.5

if "drawdown_50" not in METRICS:

    @levopt.objective("drawdown_50", higher_is_better=False)
    def drawdown_50(o, ctx):
        """P(max drawdown >= 50% within the horizon); a liquidated path counts as one (its equity ends near 0)."""
        return o.survival * (o.max_drawdown >= DRAWDOWN) + (1.0 - o.survival)


def config_for(base: dict[str, Any], r: float, paths: int | None) -> tuple[dict[str, Any], float]:
    cfg = copy.deepcopy(base)
    mu, sigma = cfg["model"]["mu"], cfg["model"]["sigma"]
    f_star = (mu - r) / sigma**2
    cfg["market"].update(borrow_rate=r, cash_rate=r)
    cfg["metrics"] = [*cfg["metrics"], "drawdown_50"]
    cfg["sweep"] = {"policy.leverage": [c * f_star for c in FRACTIONS]}
    if paths:
        cfg["paths"] = paths
    return cfg, f_star


def control_variate(cfg: dict[str, Any], f_star: float) -> pd.DataFrame:
    """Log-growth on the sweep's paths with the underlying's log-return as a control variate.

    The sweep evaluates every point on the same paths (key ``STREAM_PATHS``), so all its estimates
    share one draw of the sample mean of log(S_T/S_0). Here the same paths are simulated once more
    to keep the per-path log-growth l_f. At leverage 1 the account holds no cash, so Y = l_1 =
    log(S_T/S_0)/T at any r, and its mean mu - sigma^2/2 is known. The estimator mean(l_f) - beta (mean(Y) -
    E Y), beta = cov(l_f, Y)/var(Y), removes that shared error; standard errors from the residuals.
    The ratio g(c f*)/g(f*) gets a delta-method standard error from the same residuals.
    """
    single = {k: v for k, v in cfg.items() if k != "sweep"}
    problem = levopt.build(single)
    key = problem.key(STREAM_PATHS)
    per_path = jax.jit(lambda pol: log_growth(problem.simulate(key, policy=pol), problem.ctx))

    def growth(f: float) -> np.ndarray:
        policy = eqx.tree_at(lambda p: p.weights, problem.policy, jnp.full_like(problem.policy.weights, f))
        return np.asarray(per_path(policy))

    y = growth(1.0)
    mean_y = cfg["model"]["mu"] - 0.5 * cfg["model"]["sigma"] ** 2
    n = y.size
    est, resid = {}, {}
    for c in FRACTIONS:
        ell = growth(c * f_star)
        cov = np.cov(ell, y)
        beta = cov[0, 1] / cov[1, 1]
        est[c] = ell.mean() - beta * (y.mean() - mean_y)
        resid[c] = ell - beta * y
    rows = []
    for c in FRACTIONS:
        ratio = est[c] / est[1.0]
        rows.append(
            {
                "c": c,
                "g_cv": est[c],
                "g_cv_se": np.std(resid[c], ddof=1) / np.sqrt(n),
                "ratio": ratio,
                "ratio_se": np.std(resid[c] - ratio * resid[1.0], ddof=1) / np.sqrt(n) / abs(est[1.0]),
            }
        )
    return pd.DataFrame(rows)


def tidy(frame: pd.DataFrame, r: float, f_star: float, mu: float, sigma: float) -> pd.DataFrame:
    f = frame["policy.leverage"].to_numpy()
    out = pd.DataFrame({"r": r, "c": np.round(f / f_star, 6), "leverage": f})
    out["g_closed_form"] = r + f * (mu - r) - 0.5 * f**2 * sigma**2
    out["g_daily"] = daily_growth(f, r, mu, sigma, 1 / 365)
    for m in ("log_growth", "cvar95", "max_drawdown", "drawdown_50", "liquidation_probability"):
        out[m] = frame[f"metrics.{m}"].to_numpy()
        out[f"{m}_se"] = frame[f"stderr.{m}"].to_numpy()
    if r == 0:
        # Infinite-horizon P(wealth ever falls to half of W0) for r = 0: x^(2/c - 1) (Thorp 2006, §7).
        with np.errstate(divide="ignore"):
            out["p_ever_half_closed_form"] = np.where(out.c < 2, 0.5 ** (2 / out.c - 1), 1.0)
    return out


def pm(v: float, se: float, digits: int = 3) -> str:
    if v == 0 and se == 0:
        return "0 (no path)"
    return f"{v:.{digits}f} ± {se:.{digits}f}"


def daily_growth(f: np.ndarray, r: float, mu: float, sigma: float, dt: float) -> np.ndarray:
    """Exact annualized E log-growth of daily rebalancing to leverage f (Gauss-Hermite quadrature).

    One step: W'/W = 1 + f (e^x - 1) + (1 - f)(e^{r dt} - 1), x ~ N((mu - sigma^2/2) dt, sigma^2 dt).
    """
    z, w = np.polynomial.hermite_e.hermegauss(80)
    x = (mu - 0.5 * sigma**2) * dt + sigma * np.sqrt(dt) * z
    f = np.asarray(f, float)[:, None]
    step = 1 + f * np.expm1(x) + (1 - f) * np.expm1(r * dt)
    # Nodes beyond about 12 standard deviations can ruin a 2.5x account; their weight is < 1e-30,
    # so flooring wealth there (as the simulation does, at 1e-6) changes nothing visible.
    return (w / w.sum() * np.log(np.maximum(step, 1e-6))).sum(axis=1) / dt


def pm_fine(v: float, se: float) -> str:
    return f"{v:.4f} ± {se:.1g}"


def tables(res: pd.DataFrame) -> str:
    lines = []
    for r in RATES:
        d = res[(res.r == r) & res.c.isin(TABLE_FRACTIONS)]
        ratio_cols = r == 0
        lines += [
            f"**Growth, r = {r:g}** (f* = (mu - r)/sigma^2 = {d.leverage[d.c == 1].iloc[0]:.3f}; one year, "
            f"{int(res.attrs['paths'])} paths; ± one Monte Carlo standard error)",
            "",
            "| c = f/f* | leverage f | g closed form (continuous) | g exact, daily rebalancing | g simulated "
            "| g simulated, control variate"
            + (" | g(cf*)/g(f*) simulated (c.v.) | c(2-c) |" if ratio_cols else " |"),
            "|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if ratio_cols else ""),
        ]
        for _, x in d.iterrows():
            row = (
                f"| {x.c:g} | {x.leverage:.3f} | {x.g_closed_form:.4f} | {x.g_daily:.4f} "
                f"| {pm(x.log_growth, x.log_growth_se)} | {pm_fine(x.g_cv, x.g_cv_se)} |"
            )
            if ratio_cols:
                row += f" {pm_fine(x.ratio, x.ratio_se)} | {x.c * (2 - x.c):.4f} |"
            lines.append(row)
        lines.append("")
    d = res[(res.r == 0) & res.c.isin(TABLE_FRACTIONS)]
    lines += [
        "**Risk over one year, r = 0** (CVaR of the simple loss 1 - W_T/W_0 at 95%; drawdowns from the running peak "
        "of daily equity)",
        "",
        "| c = f/f* | leverage f | CVaR 95% | E[max drawdown] | P(max drawdown >= 50%) "
        "| P(ever <= W0/2), closed form, infinite horizon |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for _, x in d.iterrows():
        lines.append(
            f"| {x.c:g} | {x.leverage:.3f} | {pm(x.cvar95, x.cvar95_se)} | {pm(x.max_drawdown, x.max_drawdown_se)} "
            f"| {pm(x.drawdown_50, x.drawdown_50_se)} | {x.p_ever_half_closed_form:.3f} |"
        )
    lines += [
        "",
        "Largest liquidation probability over all points (maintenance margin 0.5%): "
        f"{res.liquidation_probability.max():.2g}.",
    ]
    return "\n".join(lines) + "\n"


def figure(res: pd.DataFrame, mu: float, sigma: float, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ax = axes[0]
    for r, color in zip(RATES, ("tab:blue", "tab:orange"), strict=True):
        d = res[res.r == r]
        grid = np.linspace(0, d.leverage.max() * 1.02, 200)
        ax.plot(
            grid,
            r + grid * (mu - r) - 0.5 * grid**2 * sigma**2,
            color=color,
            lw=1.5,
            label=f"closed form, r = {r:g}",
        )
        ax.errorbar(
            d.leverage,
            d.log_growth,
            yerr=2 * d.log_growth_se,
            fmt="o",
            mfc="none",
            ms=5,
            color=color,
            capsize=2,
            label=f"simulated (±2 s.e.), r = {r:g}",
        )
        ax.plot(d.leverage, d.g_cv, "x", color=color, ms=6, label=f"simulated, control variate, r = {r:g}")
        ax.axvline((mu - r) / sigma**2, color=color, ls=":", lw=1)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("leverage f (rebalanced daily); dotted: f*")
    ax.set_ylabel("annualized log-growth g(f)")
    ax.set_title(f"Kelly growth curve, GBM mu = {mu:g}, sigma = {sigma:g}")
    ax.legend(fontsize=7.5)
    ax.grid(alpha=0.3)

    ax = axes[1]
    d = res[(res.r == 0) & (res.c > 0) & (res.c <= 2)]
    cc = np.linspace(0, 2.1, 200)
    ax.plot(cc, cc * (2 - cc), "k-", lw=1.2, label="c(2 - c)")
    ax.errorbar(
        d.c,
        d.ratio,
        yerr=2 * d.ratio_se,
        fmt="o",
        color="tab:blue",
        capsize=2,
        label="simulated g(cf*)/g(f*), r = 0 (±2 s.e.)",
    )
    ax.set_xlabel("fraction of Kelly c = f/f*")
    ax.set_ylabel("share of the Kelly growth")
    ax.set_title("fractional Kelly: growth kept")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[2]
    d = res[res.r == 0]
    for m, label, color in (
        ("cvar95", "CVaR 95% of the 1-year loss", "tab:red"),
        ("max_drawdown", "E[max drawdown]", "tab:purple"),
        ("drawdown_50", "P(max drawdown >= 50%)", "tab:brown"),
    ):
        ax.errorbar(d.c, d[m], yerr=2 * d[f"{m}_se"], fmt="-o", ms=3, color=color, capsize=2, label=label)
    ax.plot(d.c[d.c > 0], d.p_ever_half_closed_form[d.c > 0], "k:", label="P(ever <= W0/2), infinite horizon")
    ax.set_xlabel("fraction of Kelly c = f/f*  (r = 0)")
    ax.set_title("risk over one year")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="2000 paths instead of the config's")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    base = read_yaml(HERE / "config.yaml")
    mu, sigma = base["model"]["mu"], base["model"]["sigma"]
    parts = []
    for r in RATES:
        cfg, f_star = config_for(base, r, 2000 if args.quick else None)
        frame = run_sweep(cfg, args.out / "sweeps" / f"r{r:g}", resume=True)
        cv = control_variate(cfg, f_star)
        parts.append(tidy(frame, r, f_star, mu, sigma).merge(cv, on="c"))
    res = pd.concat(parts, ignore_index=True)
    res.attrs["paths"] = cfg["paths"]
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    text = tables(res)
    (args.out / "table.md").write_text(text)
    figure(res, mu, sigma, args.out / "figure.png")
    print(text)


if __name__ == "__main__":
    main()
