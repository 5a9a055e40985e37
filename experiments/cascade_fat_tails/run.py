"""Endogenous fat tails: Gaussian daily returns through a crowd of levered accounts (README.md).

The path model is GBM (Gaussian log-returns, excess kurtosis 0). ``levopt.simulate`` passes every
step's return through the crowd's liquidation cascade (``cascade:`` block of ``config.yaml``).
For crowds of rising leverage at fixed open interest and impact, for rising open interest at a
fixed mix, and for the zero-impact control (the inputs themselves), it reports the excess kurtosis
and skewness of the pooled daily log-returns, their 1% and 99% quantiles and the cascade
multiplier, each with a bootstrap standard error over paths (paths are independent; the days of
one path are not, since they share the crowd). The same paths (seed) are used in every case.
Writes ``results.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/cascade_fat_tails/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import copy
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

HERE = Path(__file__).resolve().parent
EXTRA = ("name", "mean_leverage", "open_interest", "refill_variant_days", "bootstrap")
LONG_SHARE = 0.6  # of the total open interest in the open-interest sweep
QUANTILE_RESAMPLES = 100  # resamples for the quantiles' s.e. (each sorts all returns)


def mix(mean: float) -> dict[float, float]:
    """Leverage mix {0.6 M: 0.3, M: 0.4, 1.4 M: 0.3}: its notional-weighted mean at entry is M."""
    return {round(0.6 * mean, 6): 0.3, float(mean): 0.4, round(1.4 * mean, 6): 0.3}


def case(base: dict[str, Any], **change: Any) -> dict[str, Any]:
    """A levopt config: the base with cascade keys changed (crowd.<key> or impact.<key>)."""
    c = copy.deepcopy({k: v for k, v in base.items() if k not in EXTRA})
    for dotted, value in change.items():
        part, key = dotted.split("__")
        c["cascade"][part][key] = value
    return c


def start_crowd(c: dict[str, Any]) -> tuple[float, float, float]:
    """At the start price: the crowd's notional-weighted current leverage (entries are spread around
    it), and the largest local gain c d of its longs' and of its shorts' levels (d the notional per
    unit of log-price in a bin, c the linear impact per USD; a cascade that reaches a gain of 1 or
    more runs through the band)."""
    with jax.enable_x64(True):
        params = CascadeParams.from_config(c["cascade"], jnp.float64)
        crowd = init_crowd(params)
        width = float(np.diff(np.asarray(grid_edges(params)))[0])
        scale = float(ImpactLaw.of(params).scale)
        gain = [
            scale * float(np.max(np.asarray(n))) / width for n in (crowd.long_notional, crowd.short_notional)
        ]
        return float(crowd_leverage(crowd, params)), gain[0], gain[1]


class Bootstrap:
    """Statistics of pooled daily returns with standard errors from resampling whole paths.

    The same ``b`` resamples (path indices) serve every case, so differences between cases are
    paired. Moments use per-path power sums, so a resample costs one matrix product."""

    def __init__(self, paths: int, b: int, seed: int):
        rng = np.random.default_rng(seed)
        self.idx = rng.integers(0, paths, size=(b, paths))
        self.counts = np.stack([np.bincount(i, minlength=paths) for i in self.idx]).astype(float)

    @staticmethod
    def _moments(s: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Skewness and excess kurtosis from power sums s[..., k] = sum of y^(k+1) over n values."""
        m1, r2, r3, r4 = (s[..., k] / n for k in range(4))
        c2 = r2 - m1**2
        c3 = r3 - 3 * m1 * r2 + 2 * m1**3
        c4 = r4 - 4 * m1 * r3 + 6 * m1**2 * r2 - 3 * m1**4
        return c3 / c2**1.5, c4 / c2**2 - 3.0

    def stats(self, y: np.ndarray, x: np.ndarray, half_width: float) -> tuple[dict[str, float], np.ndarray]:
        """y: (paths, days) cascaded log-returns; x: the same paths' exogenous (GBM) returns.
        Returns the statistics and the resampled (skewness, excess kurtosis), shape (b, 2)."""
        y = np.asarray(y, np.float64)
        x = np.asarray(x, np.float64)
        centered = y - y.mean()  # power sums of centred values: no cancellation in float64
        sums = np.stack([(centered**k).sum(1) for k in (1, 2, 3, 4)], axis=1)  # (paths, 4)
        skew, kurt = self._moments(sums.sum(0), np.asarray(float(y.size)))
        bs_skew, bs_kurt = self._moments(self.counts @ sums, np.asarray(float(y.size)))
        q = {lv: np.quantile(y, lv) for lv in (0.01, 0.99)}
        bq = {lv: np.array([np.quantile(y[i], lv) for i in self.idx[:QUANTILE_RESAMPLES]]) for lv in q}
        ratio = np.abs(y).sum(1) / np.abs(x).sum(1)  # the cascade_multiplier metric, path by path
        max_abs = np.abs(np.cumsum(y, axis=1)).max(1)
        return {
            "excess_kurtosis": kurt,
            "excess_kurtosis_se": bs_kurt.std(ddof=1),
            "skewness": skew,
            "skewness_se": bs_skew.std(ddof=1),
            "q01": q[0.01],
            "q01_se": bq[0.01].std(ddof=1),
            "q99": q[0.99],
            "q99_se": bq[0.99].std(ddof=1),
            "daily_sd": y.std(),
            "multiplier": ratio.mean(),
            "multiplier_se": ratio.std(ddof=1) / np.sqrt(ratio.size),
            "largest_day_drop": y.min(),
            "off_grid_share": float((max_abs >= half_width).mean()),
            "max_abs_log_price": float(max_abs.max()),
        }, np.stack([bs_skew, bs_kurt], axis=1)


def figure(res: pd.DataFrame, samples: dict[str, np.ndarray], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    res = res.assign(oi_billions=res.open_interest / 1e9)
    control = res[res.sweep == "control"].iloc[0]
    for ax, sweep, xcol, xlabel in (
        (axes[0], "leverage", "mean_leverage", "crowd mean leverage at entry (mix 0.6M / M / 1.4M)"),
        (axes[1], "open interest", "oi_billions", "crowd open interest (billion USD, 60% long)"),
    ):
        for refill, ls, tag in ((False, "-", ""), (True, "--", ", refill 3 d")):
            d = res[(res.sweep == sweep) & (res.refill == refill)]
            if d.empty:
                continue
            ax.errorbar(
                d[xcol],
                d.excess_kurtosis,
                yerr=2 * d.excess_kurtosis_se,
                fmt="o" + ls,
                color="tab:blue",
                capsize=2,
                label="excess kurtosis" + tag,
                alpha=1 if not refill else 0.6,
            )
            ax.errorbar(
                d[xcol],
                d.skewness,
                yerr=2 * d.skewness_se,
                fmt="s" + ls,
                color="tab:red",
                capsize=2,
                label="skewness" + tag,
                alpha=1 if not refill else 0.6,
            )
        ax.axhline(control.excess_kurtosis, color="k", lw=0.8)
        ax.axhspan(
            control.excess_kurtosis - 2 * control.excess_kurtosis_se,
            control.excess_kurtosis + 2 * control.excess_kurtosis_se,
            color="grey",
            alpha=0.3,
            label="GBM input (zero impact), ±2 s.e.",
        )
        ax.set_xscale("log")
        ticks = sorted(res.loc[res.sweep == sweep, xcol].unique())
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("moment of daily log-returns")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_title("fixed OI 1e10 USD: rising crowd leverage (error bars ±2 s.e.)")
    axes[1].set_title("fixed mix (mean 10x): rising open interest")
    ax = axes[2]
    bins = np.linspace(-0.3, 0.3, 121)
    for label, y in samples.items():
        h, e = np.histogram(y, bins=bins, density=True)
        ax.semilogy(0.5 * (e[1:] + e[:-1]), np.where(h > 0, h, np.nan), label=label)
    ax.set_xlabel("daily log-return")
    ax.set_ylabel("density (log scale)")
    ax.set_title("pooled daily returns")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(res: pd.DataFrame) -> str:
    lines = [
        "| sweep | crowd | refill | crowd leverage at start | largest local gain c·d, longs / shorts "
        "| excess kurtosis | its change from the input "
        "| skewness | its change from the input | 1% quantile | 99% quantile | cascade multiplier | paths off the grid |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in res.iterrows():
        lev = "—" if np.isnan(r.start_leverage) else f"{r.start_leverage:.2f}"
        gain = "—" if np.isnan(r.max_gain_long) else f"{r.max_gain_long:.2f} / {r.max_gain_short:.2f}"
        lines.append(
            f"| {r.sweep} | {r.label} | {'3 d' if r.refill else 'none'} | {lev} | {gain} | "
            f"{r.excess_kurtosis:.3f} ± {r.excess_kurtosis_se:.3f} | "
            f"{r.excess_kurtosis_change:+.3f} ± {r.excess_kurtosis_change_se:.3f} | "
            f"{r.skewness:.3f} ± {r.skewness_se:.3f} | {r.skewness_change:+.3f} ± {r.skewness_change_se:.3f} | "
            f"{r.q01:.4f} ± {r.q01_se:.4f} | {r.q99:.4f} ± {r.q99_se:.4f} | "
            f"{r.multiplier:.4f} ± {r.multiplier_se:.4f} | {r.off_grid_share:.2%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="1,000 paths, 100 resamples")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    if args.quick:
        cfg["paths"], cfg["bootstrap"] = 1000, 100
    boot = Bootstrap(cfg["paths"], cfg["bootstrap"], cfg["seed"])
    half_width = float(cfg["cascade"]["range"])
    base_oi = float(cfg["cascade"]["crowd"]["long_oi"]) + float(cfg["cascade"]["crowd"]["short_oi"])

    control = case(cfg, impact__permanent=0.0)
    x = np.asarray(levopt.simulate(control))  # zero impact: exactly the GBM returns
    runs: list[tuple[str, str, bool, dict[str, Any], float, float]] = [
        ("control", "zero impact (GBM input)", False, control, float("nan"), base_oi)
    ]
    refill = cfg["refill_variant_days"]
    for days in (None, refill):
        for m in cfg["mean_leverage"]:
            c = case(cfg, crowd__leverage=mix(m), crowd__refill_days=days)
            runs.append(("leverage", f"mean {m:g}x, OI {base_oi:.3g}", days is not None, c, m, base_oi))
    for oi in map(float, cfg["open_interest"]):
        if oi == base_oi:
            continue  # the leverage sweep's mean-10x row
        c = case(
            cfg,
            crowd__leverage=mix(10),
            crowd__long_oi=LONG_SHARE * oi,
            crowd__short_oi=(1 - LONG_SHARE) * oi,
        )
        runs.append(("open interest", f"mean 10x, OI {oi:.3g}", False, c, 10.0, oi))

    rows, samples = [], {"GBM input (zero impact)": x.ravel()}
    for sweep, label, refilled, c, m, oi in runs:
        t = time.perf_counter()
        y = x if sweep == "control" else np.asarray(levopt.simulate(c))
        lev, gain_long, gain_short = start_crowd(c) if sweep != "control" else (float("nan"),) * 3
        row = {
            "sweep": sweep,
            "label": label,
            "refill": refilled,
            "mean_leverage": m,
            "open_interest": oi,
            "start_leverage": lev,
            "max_gain_long": gain_long,
            "max_gain_short": gain_short,
        }
        stats, resampled = boot.stats(y, x, half_width)
        row |= stats
        if sweep == "control":
            reference = (stats, resampled)
        # Paired with the control (same paths, same resamples): the crowd's own contribution.
        diff = resampled - reference[1]
        row["skewness_change"] = stats["skewness"] - reference[0]["skewness"]
        row["skewness_change_se"] = diff[:, 0].std(ddof=1)
        row["excess_kurtosis_change"] = stats["excess_kurtosis"] - reference[0]["excess_kurtosis"]
        row["excess_kurtosis_change_se"] = diff[:, 1].std(ddof=1)
        row["seconds"] = time.perf_counter() - t
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        if not refilled and (m == max(cfg["mean_leverage"]) or oi == max(cfg["open_interest"])):
            samples[label] = y.ravel()
    res = pd.DataFrame(rows)
    # The mean-10x row belongs to both sweeps: copy it into the open-interest sweep for the table and figure.
    shared = res[(res.sweep == "leverage") & (~res.refill) & (res.mean_leverage == 10)].assign(
        sweep="open interest"
    )
    res = pd.concat([res, shared], ignore_index=True)
    res = res.sort_values(["sweep", "refill", "open_interest", "mean_leverage"], kind="stable")
    order = {"control": 0, "leverage": 1, "open interest": 2}
    res = res.sort_values("sweep", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    text = table(res)
    (args.out / "table.md").write_text(text)
    figure(res, samples, args.out / "figure.png")
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
