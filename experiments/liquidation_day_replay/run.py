"""A stylized replay of the 10 October 2025 liquidation cascade (README.md).

One BTC-equivalent asset, a crowd of levered accounts built from the stated assumptions
(``config.yaml``, ``market``), and an exogenous sell-off path over 40 one-minute steps. Each step
calls ``levopt.cascade.cascade_step``: the exogenous move liquidates the accounts whose levels it
crosses, their forced flow moves the price (linear impact, half of it temporary), which liquidates
more. Reports the liquidated notional (longs, shorts) and the price path, for the noise-free path
and as Monte Carlo means over exogenous noise (with standard errors), for the base case and one
assumption changed at a time; and the depth at which the noise-free path liquidates the reported
$6.93B, alone and for a range of levered shares of the open interest (with the fall each pair
gives). Writes ``results.csv``, ``table.md``, ``depth_curve.csv``, ``matching_pairs.csv``,
``cascade_block.yaml`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/liquidation_day_replay/run.py [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
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
import yaml  # noqa: E402

from levopt.cascade import CascadeParams, cascade_step, crowd_leverage, init_crowd  # noqa: E402
from levopt.config import read_yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
MINUTE_HOURS = 1.0 / 60.0


def cascade_block(m: dict[str, Any], impact: dict[str, Any] | None = None) -> dict[str, Any]:
    """The levopt ``cascade:`` block of the stated market assumptions."""
    levered = float(m["aggregate_open_interest"]) * float(m["levered_share"])
    v = float(m["daily_volume"])
    if impact is None:
        lam = 0.01 / float(m["depth_usd_per_percent"]) * v  # c = 1% per depth USD; lambda = c V
        tmp = float(m["temporary_share"])
        impact = {
            "kind": "linear",
            "permanent": lam * (1 - tmp),
            "temporary": lam * tmp,
            "decay_hours": float(m["decay_minutes"]) / 60.0,
            "daily_volume": v,
        }
    return {
        "crowd": {
            "long_oi": levered * float(m["long_share"]),
            "short_oi": levered * (1 - float(m["long_share"])),
            "leverage": {float(k): float(s) for k, s in m["leverage"].items()},
            "maintenance": float(m["maintenance"]),
            "entry_spread": float(m["entry_spread"]),
            "target_share": 0.0,
            "refill_days": None,
        },
        "impact": impact,
        "bins": int(m["bins"]),
        "range": float(m["range"]),
    }


def exogenous(shock: dict[str, Any], steps: int, paths: int, seed: int) -> np.ndarray:
    """(paths, steps) exogenous one-minute log-returns: the shock spread evenly over its first
    minutes plus independent normal noise (paths = 0: the noise-free path alone, shape (1, steps))."""
    drift = np.where(np.arange(steps) < shock["minutes"], float(shock["total"]) / shock["minutes"], 0.0)
    if paths == 0:
        return drift[None, :]
    z = np.random.default_rng(seed).standard_normal((paths, steps))
    return drift[None, :] + float(shock["noise_per_minute"]) * z


@jax.jit
def _replay(params: CascadeParams, x: jax.Array, dt_hours: jax.Array):
    """Per path and step: the move, the longs' and shorts' liquidated notional (vmapped over paths)."""

    def path(xs):
        def body(crowd, xt):
            y, info, crowd = cascade_step(xt, crowd, params, dt_hours=dt_hours)
            return crowd, (y, info.long_liquidated, info.short_liquidated, info.runaway, info.off_grid)

        return jax.lax.scan(body, init_crowd(params), xs)[1]

    return jax.vmap(path)(x)


def replay(block: dict[str, Any], x: np.ndarray, dt_hours: float = MINUTE_HOURS) -> dict[str, np.ndarray]:
    params = CascadeParams.from_config(block, jnp.float64)
    y, lo, sh, run, off = _replay(params, jnp.asarray(x, jnp.float64), jnp.asarray(dt_hours, jnp.float64))
    return {
        "move": np.asarray(y),
        "long": np.asarray(lo),
        "short": np.asarray(sh),
        "runaway": np.asarray(run),
        "off_grid": np.asarray(off),
    }


def summarize(r: dict[str, np.ndarray], prefix: str) -> dict[str, float]:
    """Totals per path, and their means with standard errors over paths (one path: no s.e.)."""
    long_, short = r["long"].sum(1), r["short"].sum(1)
    total = long_ + short
    logp = np.cumsum(r["move"], axis=1)
    n = total.size
    se = (lambda v: v.std(ddof=1) / math.sqrt(n)) if n > 1 else (lambda v: float("nan"))  # noqa: E731
    share = long_.mean() / total.mean() if total.mean() > 0 else float("nan")
    # Ratio estimator's s.e. by the delta method: var(L - share T) / (n mean(T)^2).
    share_se = se(long_ - share * total) / total.mean() if total.mean() > 0 else float("nan")
    out = {
        "liquidated": total.mean(),
        "liquidated_se": se(total),
        "long_liquidated": long_.mean(),
        "long_liquidated_se": se(long_),
        "short_liquidated": short.mean(),
        "short_liquidated_se": se(short),
        "long_share": share,
        "long_share_se": share_se,
        "move_40min": logp[:, -1].mean(),
        "move_40min_se": se(logp[:, -1]),
        "lowest": logp.min(1).mean(),
        "lowest_se": se(logp.min(1)),
        "peak_minute": (r["long"] + r["short"]).max(1).mean(),
        "peak_minute_se": se((r["long"] + r["short"]).max(1)),
        "runaway_share": r["runaway"].any(1).mean(),
        "off_grid_share": r["off_grid"].any(1).mean(),
    }
    return {f"{prefix}{k}": v for k, v in out.items()}


def implied_depth(m: dict[str, Any], x0: np.ndarray, target: float) -> tuple[float, float, pd.DataFrame]:
    """Depth (USD per 1%) at which the noise-free path liquidates ``target``: a curve over depth,
    then bisection between its two points that bracket the target (the liquidated notional falls
    with depth; it can jump where the crowd turns critical, and then no depth hits the target)."""
    rows = []
    for d in np.geomspace(0.5e9, 8e9, 33):
        r = replay(cascade_block(m | {"depth_usd_per_percent": d}), x0)
        rows.append(
            {
                "depth_usd_per_percent": d,
                "liquidated": (r["long"] + r["short"]).sum(),
                "lowest": np.cumsum(r["move"]).min(),
                "runaway": bool(r["runaway"].any()),
                "off_grid": bool(r["off_grid"].any()),
            }
        )
    curve = pd.DataFrame(rows)
    above = curve[curve.liquidated >= target]
    below = curve[curve.liquidated < target]
    if above.empty or below.empty:
        return float("nan"), float("nan"), curve
    lo, hi = above.depth_usd_per_percent.max(), below.depth_usd_per_percent.min()
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        r = replay(cascade_block(m | {"depth_usd_per_percent": mid}), x0)
        lo, hi = (mid, hi) if (r["long"] + r["short"]).sum() >= target else (lo, mid)
    r_lo = replay(cascade_block(m | {"depth_usd_per_percent": lo}), x0)
    r_hi = replay(cascade_block(m | {"depth_usd_per_percent": hi}), x0)
    gap = (r_lo["long"] + r_lo["short"]).sum() - (r_hi["long"] + r_hi["short"]).sum()
    return math.sqrt(lo * hi), gap, curve


def matching_pairs(m: dict[str, Any], x0: np.ndarray, target: float, shares: list[float]) -> pd.DataFrame:
    """For each levered share of the open interest, the depth at which the noise-free path
    liquidates ``target``, and the fall it then gives: two unknowns, one reported number each."""
    rows = []
    for share in shares:
        mm = m | {"levered_share": share}
        depth, gap, _ = implied_depth(mm, x0, target)
        row = {"levered_share": share, "depth_usd_per_percent": depth, "jump_at_depth": gap}
        if np.isfinite(depth):
            r = replay(cascade_block(mm | {"depth_usd_per_percent": depth}), x0)
            logp = np.cumsum(r["move"][0])
            row |= {
                "liquidated": (r["long"] + r["short"]).sum(),
                "lowest": logp.min(),
                "move_40min": logp[-1],
            }
        rows.append(row)
    return pd.DataFrame(rows)


def scenarios(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any], dict | None, int]]:
    """(label, market, shock, impact override or None, steps the 40 minutes are split into)."""
    m, s, sens = cfg["market"], cfg["shock"], cfg["sensitivity"]
    none = {"kind": "linear", "permanent": 0.0, "daily_volume": float(m["daily_volume"])}
    out = [("base", m, s, None, cfg["steps"]), ("no impact (exogenous move only)", m, s, none, cfg["steps"])]
    for d in sens["depth_usd_per_percent"]:
        out.append(
            (f"depth {d / 1e9:g}B USD per 1%", m | {"depth_usd_per_percent": d}, s, None, cfg["steps"])
        )
    for name, mix in sens["leverage"].items():
        mean = sum(float(k) * v for k, v in mix.items())
        out.append((f"leverage mix {name} (mean {mean:.1f}x)", m | {"leverage": mix}, s, None, cfg["steps"]))
    for v in sens["levered_share"]:
        out.append((f"levered share {v:.0%} of OI", m | {"levered_share": v}, s, None, cfg["steps"]))
    for v in sens["shock_total"]:
        out.append((f"exogenous shock {v:+.0%}", m, s | {"total": v}, None, cfg["steps"]))
    for v in sens["temporary_share"]:
        out.append((f"temporary share {v:.0%}", m | {"temporary_share": v}, s, None, cfg["steps"]))
        out.append((f"temporary share {v:.0%}, one 40-minute step", m | {"temporary_share": v}, s, None, 1))
    sq = sens["sqrt_law"]
    sqrt = {
        "kind": "sqrt",
        "coefficient": sq["coefficient"],
        "daily_vol": sq["daily_vol"],
        "daily_volume": float(m["daily_volume"]),
    }
    out.append((f"sqrt law Y={sq['coefficient']:g}, 40 one-minute steps", m, s, sqrt, cfg["steps"]))
    out.append((f"sqrt law Y={sq['coefficient']:g}, one 40-minute step", m, s, sqrt, 1))
    return out


def figure(
    base: dict[str, Any], x0: np.ndarray, xs: np.ndarray, curve: pd.DataFrame, cfg: dict[str, Any], path: Path
) -> None:
    rep = cfg["reported"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    minutes = np.arange(cfg["steps"] + 1)
    ax = axes[0]
    price = float(rep["start_price"]) * np.exp(np.concatenate([[0.0], np.cumsum(base["det"]["move"][0])]))
    exo = float(rep["start_price"]) * np.exp(np.concatenate([[0.0], np.cumsum(x0[0])]))
    mc = float(rep["start_price"]) * np.exp(
        np.concatenate([np.zeros((xs.shape[0], 1)), np.cumsum(base["mc"]["move"], 1)], 1)
    )
    lo, hi = np.quantile(mc, [0.05, 0.95], axis=0)
    ax.fill_between(minutes, lo, hi, color="tab:blue", alpha=0.2, label="with cascade, 5-95% over the noise")
    ax.plot(minutes, price, color="tab:blue", label="with cascade, noise-free path")
    ax.plot(minutes, exo, color="grey", ls="--", label="exogenous shock alone")
    ax.axhline(rep["low_binance"], color="tab:red", lw=0.8, ls=":", label="reported low, Binance spot")
    ax.axhline(rep["low_yahoo"], color="tab:red", lw=0.8, label="reported low, Yahoo BTC-USD")
    ax.set_xlabel("minutes after 20:50 UTC")
    ax.set_ylabel("BTC-equivalent price (USD)")
    ax.set_title("price")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[1]
    cum = np.cumsum(base["mc"]["long"] + base["mc"]["short"], 1) / 1e9
    ax.fill_between(
        minutes[1:],
        *np.quantile(cum, [0.05, 0.95], axis=0),
        color="tab:orange",
        alpha=0.25,
        label="5-95% over the noise",
    )
    ax.plot(minutes[1:], cum.mean(0), color="tab:orange", label="Monte Carlo mean")
    ax.plot(
        minutes[1:],
        np.cumsum(base["det"]["long"][0] + base["det"]["short"][0]) / 1e9,
        color="k",
        lw=0.8,
        label="noise-free path",
    )
    ax.axhline(rep["liquidated_40min"] / 1e9, color="tab:red", ls="--", label="reported, 40 min")
    ax.set_xlabel("minutes after 20:50 UTC")
    ax.set_ylabel("cumulative liquidated notional (billion USD)")
    ax.set_title("liquidations (base assumptions)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = axes[2]
    ax.plot(
        curve.depth_usd_per_percent / 1e9,
        curve.liquidated / 1e9,
        "o-",
        ms=3,
        color="tab:purple",
        label="noise-free path",
    )
    off = curve[curve.off_grid]
    ax.plot(
        off.depth_usd_per_percent / 1e9,
        off.liquidated / 1e9,
        "x",
        color="k",
        ms=7,
        label="price left the level grid (not represented)",
    )
    ax.axhline(rep["liquidated_40min"] / 1e9, color="tab:red", ls="--", label="reported, 40 min")
    ax.axvline(float(cfg["market"]["depth_usd_per_percent"]) / 1e9, color="k", lw=0.8, label="base depth")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks([0.5, 1, 2, 4, 8], ["0.5", "1", "2", "4", "8"])
    ax.set_yticks([4, 7, 10, 20, 40], ["4", "7", "10", "20", "40"])
    ax.minorticks_off()
    ax.set_xlabel("depth: forced selling that moves the price 1% (billion USD)")
    ax.set_ylabel("liquidated in 40 min (billion USD)")
    ax.set_title("noise-free path: liquidations against depth")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pm(value: float, se: float, scale: float = 1.0, unit: str = "", pct: bool = False) -> str:
    """``value ± se`` to the s.e.'s first significant digit (at least two decimals)."""
    if pct:
        value, se, unit = 100 * value, 100 * se, "%"
    value, se = value / scale, se / scale
    digits = max(2, -int(math.floor(math.log10(se)))) if se > 0 else 2
    return f"{value:.{digits}f}{unit} ± {se:.{digits}f}{unit}"


def table(res: pd.DataFrame, rep: dict[str, Any]) -> str:
    lines = [
        "| case | liquidated in 40 min, noise-free (USD) | liquidated, Monte Carlo mean (USD) | long share | "
        "move at 40 min (log) | lowest point (log) | largest minute (USD) | paths with a runaway bin | paths off the grid |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, r in res.iterrows():
        lines.append(
            f"| {r.case} | {r.det_liquidated / 1e9:.2f}B | {pm(r.mc_liquidated, r.mc_liquidated_se, 1e9, 'B')} | "
            f"{pm(r.mc_long_share, r.mc_long_share_se, pct=True)} | {pm(r.mc_move_40min, r.mc_move_40min_se)} | "
            f"{pm(r.mc_lowest, r.mc_lowest_se)} | {pm(r.mc_peak_minute, r.mc_peak_minute_se, 1e9, 'B')} | "
            f"{r.mc_runaway_share:.0%} | {r.mc_off_grid_share:.0%} |"
        )
    lo_b = math.log(rep["low_binance"] / rep["start_price"])
    lo_y = math.log(rep["low_yahoo"] / rep["start_price"])
    lines.append(
        f"| **reported** | | {rep['liquidated_40min'] / 1e9:.2f}B (40 min; {rep['liquidated_14h'] / 1e9:.2f}B in 14 h) | "
        f"{rep['long_share_14h']:.1%} (14 h) | | {lo_y:+.3f} to {lo_b:+.3f} | {rep['peak_minute'] / 1e9:.2f}B | | |"
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="200 Monte Carlo paths")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    if args.quick:
        cfg["paths"] = 200
    rep = {k: float(v) for k, v in cfg["reported"].items()}
    cfg["reported"] = rep
    steps, paths, seed = int(cfg["steps"]), int(cfg["paths"]), int(cfg["seed"])
    with jax.enable_x64(True):
        block = cascade_block(cfg["market"])
        (args.out / "cascade_block.yaml").write_text(
            "# The levopt cascade: block of the base assumptions (written by run.py)\n"
            + yaml.safe_dump({"cascade": block}, sort_keys=False)
        )
        params = CascadeParams.from_config(block, jnp.float64)
        print("cascade block:", block)
        print(
            "crowd leverage at the start (notional-weighted):",
            float(crowd_leverage(init_crowd(params), params)),
        )
        rows, base = [], None
        for label, m, shock, impact, n_steps in scenarios(cfg):
            t = time.perf_counter()
            b = cascade_block(m, impact)
            x0 = exogenous(shock, steps, 0, seed)
            xs = exogenous(shock, steps, paths, seed)  # the same noise in every case
            if n_steps != steps:  # the same exogenous path, summed into n_steps steps
                k = steps // n_steps
                x0, xs = x0.reshape(1, n_steps, k).sum(2), xs.reshape(paths, n_steps, k).sum(2)
            dt = MINUTE_HOURS * steps / n_steps
            det, mc = replay(b, x0, dt), replay(b, xs, dt)
            row = {
                "case": label,
                **summarize(det, "det_"),
                **summarize(mc, "mc_"),
                "seconds": time.perf_counter() - t,
            }
            rows.append(row)
            if label == "base":
                base = {"det": det, "mc": mc, "x0": x0, "xs": xs}
            print(
                {
                    k: (round(v, 4) if isinstance(v, float) else v)
                    for k, v in row.items()
                    if not k.startswith("det_") or k == "det_liquidated"
                },
                flush=True,
            )
        depth, gap, curve = implied_depth(cfg["market"], base["x0"], rep["liquidated_40min"])
        pairs = matching_pairs(
            cfg["market"],
            base["x0"],
            rep["liquidated_40min"],
            [float(v) for v in cfg["matching_levered_share"]],
        )
    res = pd.DataFrame(rows)
    res["implied_depth_usd_per_percent"] = depth
    res["implied_depth_jump"] = gap
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    curve.to_csv(args.out / "depth_curve.csv", index=False, float_format="%.6g")
    pairs.to_csv(args.out / "matching_pairs.csv", index=False, float_format="%.6g")
    text = table(res, rep)
    text += (
        f"\nDepth at which the noise-free path liquidates the reported {rep['liquidated_40min'] / 1e9:.2f}B: "
        f"{depth / 1e9:.3f}B USD per 1% (the liquidated notional jumps by {gap / 1e9:.2f}B across it).\n"
    )
    text += (
        "\nLevered share of the open interest and depth that together liquidate the reported "
        f"{rep['liquidated_40min'] / 1e9:.2f}B on the noise-free path, and the fall they give "
        f"(reported low: {math.log(rep['low_yahoo'] / rep['start_price']):+.3f} Yahoo, "
        f"{math.log(rep['low_binance'] / rep['start_price']):+.3f} Binance spot):\n\n"
        "| levered share of OI | depth (USD per 1%) | lowest point (log) | move at 40 min (log) |\n|---:|---:|---:|---:|\n"
    )
    for r in pairs.itertuples():
        if np.isfinite(r.depth_usd_per_percent):
            text += f"| {r.levered_share:.0%} | {r.depth_usd_per_percent / 1e9:.2f}B | {r.lowest:+.3f} | {r.move_40min:+.3f} |\n"
        else:
            text += f"| {r.levered_share:.0%} | none in 0.5B-8B | | |\n"
    (args.out / "table.md").write_text(text)
    figure(base, base["x0"], base["xs"], curve, cfg, args.out / "figure.png")
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
