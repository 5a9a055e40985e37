"""Constant against dynamic (DCC) correlation for a cross-margined BTC + ETH book (README.md).

Cases: DCC-GARCH-t calibrated on the two daily price files (each path its own posterior draw), the
same at the posterior means, and the constant-correlation model (dcc_alpha = dcc_beta = 0, corr =
Q̄, the same posterior-mean margins). For each: the growth-optimal cross-margined weights
(log_growth s.t. P(liq) <= 1%), the metrics of a 3x book daily rebalanced and held, and the
correlation of simulated histories as long as the data (30-day rolling, and on the worst decile of
equal-weight days) against the realized one. Skips when the data is missing. Writes
``results.csv``, ``correlation.csv``, ``table.md`` and ``figure.png``.

Usage::

    .venv/bin/python experiments/dcc_correlation/run.py [--out DIR] [--quick]
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
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import levopt  # noqa: E402
from levopt.config import read_yaml  # noqa: E402
from levopt.data import load_prices  # noqa: E402

HERE = Path(__file__).resolve().parent
EXTRA = ("fixed_book", "tail_paths")
WINDOW = 30


def realized_returns(cfg: dict[str, Any]) -> np.ndarray:
    """``(days, 2)`` daily log-returns of the two files on their common dates from ``start``."""
    cal = cfg["model"]["calibrate"]
    closes = [load_prices(p)["close"].rename(str(i)) for i, p in enumerate(cal["data"])]
    frame = pd.concat(closes, axis=1, join="inner").sort_index()
    frame = frame[frame.index >= pd.Timestamp(cal["start"], tz=frame.index.tz)]
    return np.diff(np.log(frame.to_numpy()), axis=0)


def correlations(x: np.ndarray) -> dict[str, float]:
    """Of one ``(days, 2)`` history: mean and 5%/95% quantiles of the 30-day rolling correlation,
    and the correlation on the worst 10% of equal-weight days."""
    r = pd.DataFrame(x)
    rolling = r[0].rolling(WINDOW).corr(r[1]).dropna().to_numpy()
    ew = x.mean(axis=1)
    worst = x[ew <= np.quantile(ew, 0.1)]
    return {
        "rolling_mean": float(rolling.mean()),
        "rolling_q05": float(np.quantile(rolling, 0.05)),
        "rolling_q95": float(np.quantile(rolling, 0.95)),
        "worst_decile": float(np.corrcoef(worst.T)[0, 1]),
        "full_sample": float(np.corrcoef(x.T)[0, 1]),
    }


def cases(cfg: dict[str, Any]) -> tuple[dict[str, dict], dict[str, Any]]:
    """The model section of each case, and the calibration summary."""
    probe = {k: v for k, v in cfg.items() if k not in (*EXTRA, "objective", "optimizer")}
    probe = copy.deepcopy(probe) | {"paths": 256}
    problem = levopt.build(probe)
    summary = {k: v for k, v in problem.calibration.items() if isinstance(v, dict) and "mean" in v}
    mean = {k: v["mean"] for k, v in summary.items()}

    def per_asset(name: str) -> list[float]:
        return [mean[f"{name}[0]"], mean[f"{name}[1]"]]

    margins = {
        "kind": "dcc_garch",
        "dist": "t",
        "mu": cfg["model"]["mu"],
        "omega": per_asset("omega"),
        "alpha": per_asset("alpha"),
        "beta": per_asset("beta"),
        "nu": mean["nu"],
        "corr": [[1.0, mean["corr[0,1]"]], [mean["corr[0,1]"], 1.0]],
    }
    return {
        "DCC, posterior draws": cfg["model"],
        "DCC, posterior means": margins | {"dcc_alpha": mean["dcc_alpha"], "dcc_beta": mean["dcc_beta"]},
        "constant correlation": margins | {"dcc_alpha": 0.0, "dcc_beta": 0.0},
    }, summary


def _optimum_row(name: str, c: dict[str, Any], label: str) -> dict[str, Any]:
    r = levopt.run(c, profiles=False)
    m, se = r["out_of_sample"]["metrics"], r["out_of_sample"]["stderr"]
    w, w_se = r["policy"]["weights"], r["policy_stderr"]["weights"]
    return {"model": name, "policy": label, "w_btc": w[0], "w_eth": w[1], "w_btc_se": w_se[0],
            "w_eth_se": w_se[1], **m, **{f"{k}_se": v for k, v in se.items()}}  # fmt: skip


def book_rows(name: str, c: dict[str, Any], book: list[float]) -> list[dict[str, Any]]:
    """The growth-optimal book, the largest book by mean return within the liquidation cap (where
    the margin binds), and the fixed 3x book daily rebalanced and held."""
    rows = [_optimum_row(name, c, "growth-optimal (daily)")]
    largest = copy.deepcopy(c)
    largest["objective"]["maximize"] = "mean_return"
    rows.append(_optimum_row(name, largest, "largest mean return, P(liq) <= 1% (daily)"))
    ev = {k: v for k, v in c.items() if k not in ("objective", "optimizer")}
    for reb in (1, "never"):
        ev["policy"] = {"kind": "constant", "weights": book, "rebalance": reb}
        r = levopt.evaluate(ev)
        rows.append({"model": name, "policy": f"3x book {'daily' if reb == 1 else 'held'}", "w_btc": book[0],
                     "w_eth": book[1], "w_btc_se": 0.0, "w_eth_se": 0.0, **r["metrics"],
                     **{f"{k}_se": v for k, v in r["stderr"].items()}})  # fmt: skip
    for row in rows:
        print(row, flush=True)
    return rows


def paired_difference(base: dict[str, Any], dynamic: dict, constant: dict, book: list[float]) -> list[dict]:
    """P(liquidation) of the 3x book, DCC at the posterior means minus constant correlation, on the
    same paths (both models draw the same noise): mean and s.e. of the per-path difference."""
    rows = []
    for reb in (1, "never"):
        ev = {k: v for k, v in base.items() if k not in ("objective", "optimizer")}
        ev["policy"] = {"kind": "constant", "weights": book, "rebalance": reb}
        liq = []
        for model in (dynamic, constant):
            problem = levopt.build(copy.deepcopy(ev) | {"model": model})
            liq.append(1.0 - np.asarray(problem.simulate(problem.key(1)).survival))
        d = liq[0] - liq[1]
        rows.append({"book": f"3x {'daily' if reb == 1 else 'held'}", "dcc": liq[0].mean(), "constant": liq[1].mean(),
                     "difference": d.mean(), "difference_se": d.std(ddof=1) / np.sqrt(d.size)})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def tail_rows(name: str, model: dict[str, Any], cfg: dict[str, Any], days: int, real: dict) -> dict[str, Any]:
    """Correlations of ``tail_paths`` simulated histories of ``days`` days: mean, s.e. over
    histories, and the share of histories below the realized value (a predictive p-value)."""
    sims = levopt.simulate({"seed": 1, "paths": cfg["tail_paths"], "horizon_days": days, "model": model})
    per = pd.DataFrame([correlations(x) for x in sims])
    row: dict[str, Any] = {"model": name}
    for k in per.columns:
        row[k] = per[k].mean()
        row[f"{k}_se"] = per[k].std(ddof=1) / np.sqrt(len(per))
        row[f"{k}_below_realized"] = float((per[k] < real[k]).mean())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--quick", action="store_true", help="fewer paths and posterior draws")
    args = parser.parse_args()
    t0 = time.perf_counter()
    cfg = read_yaml(HERE / "config.yaml")
    missing = [p for p in cfg["model"]["calibrate"]["data"] if not Path(p).exists()]
    if missing:
        sys.exit(f"skipped: the price files {missing} are missing (set model.calibrate.data in config.yaml)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.quick:
        cfg["paths"], cfg["optimizer"]["paths"], cfg["tail_paths"] = 1000, 500, 40
        cfg["model"]["calibrate"] |= {"warmup": 100, "samples": 100}
    real_x = realized_returns(cfg)
    real = correlations(real_x)
    print("realized:", real, flush=True)
    models, summary = cases(cfg)
    print({k: (round(v["mean"], 5), round(v["sd"], 5)) for k, v in summary.items()}, flush=True)
    base = {k: v for k, v in cfg.items() if k not in EXTRA}
    rows, tails = [], [{"model": "realized", **real}]
    for name, model in models.items():
        rows += book_rows(name, copy.deepcopy(base) | {"model": model}, cfg["fixed_book"])
        tails.append(tail_rows(name, model, cfg, len(real_x), real))
        print(tails[-1], flush=True)
    pairs = paired_difference(
        base, models["DCC, posterior means"], models["constant correlation"], cfg["fixed_book"]
    )
    res, corr = pd.DataFrame(rows), pd.DataFrame(tails)
    res.to_csv(args.out / "results.csv", index=False, float_format="%.6g")
    corr.to_csv(args.out / "correlation.csv", index=False, float_format="%.6g")
    text = table(res, corr, summary, len(real_x), pairs)
    (args.out / "table.md").write_text(text)
    figure(corr, args.out / "figure.png")
    print(text)
    print(f"wall time {time.perf_counter() - t0:.0f} s")


def table(res: pd.DataFrame, corr: pd.DataFrame, summary: dict, days: int, pairs: list[dict]) -> str:
    pm = lambda k: f"{summary[k]['mean']:.3f} ± {summary[k]['sd']:.3f}"  # noqa: E731
    lines = [
        f"Posterior ({days} daily returns): dcc_alpha {pm('dcc_alpha')}, dcc_beta {pm('dcc_beta')}, "
        f"Q̄ correlation {pm('corr[0,1]')}, nu {pm('nu')}",
        "",
        "| model | policy | w BTC | w ETH | P(liquidation) | log-growth | CVaR 95% (90-day loss) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for _, x in res.iterrows():
        lines.append(
            f"| {x.model} | {x.policy} | {x.w_btc:.2f} ± {x.w_btc_se:.2f} | {x.w_eth:.2f} ± {x.w_eth_se:.2f} | "
            f"{x.liquidation_probability:.4f} ± {x.liquidation_probability_se:.4f} | "
            f"{x.log_growth:.3f} ± {x.log_growth_se:.3f} | {x.cvar95:.3f} ± {x.cvar95_se:.3f} |"
        )
    lines += [
        "",
        "| history | 30-day rolling corr: mean | 5% | 95% | corr on worst 10% of days | full sample |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for _, x in corr.iterrows():
        if x.model == "realized":
            vals = [
                f"{x[k]:.3f}"
                for k in ("rolling_mean", "rolling_q05", "rolling_q95", "worst_decile", "full_sample")
            ]
        else:
            vals = [
                f"{x[k]:.3f} ± {x[k + '_se']:.3f} ({100 * x[k + '_below_realized']:.0f}% below realized)"
                for k in ("rolling_mean", "rolling_q05", "rolling_q95", "worst_decile", "full_sample")
            ]
        lines.append(f"| {x.model} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "| 3x book | P(liq), DCC at posterior means | P(liq), constant correlation | paired difference |",
        "|---|---:|---:|---:|",
    ]
    for p in pairs:
        lines.append(
            f"| {p['book']} | {p['dcc']:.4f} | {p['constant']:.4f} | {p['difference']:+.4f} ± {p['difference_se']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def figure(corr: pd.DataFrame, path: Path) -> None:
    keys = ["rolling_q05", "rolling_mean", "rolling_q95", "worst_decile", "full_sample"]
    fig, ax = plt.subplots(figsize=(9, 4.3))
    for i, (_, x) in enumerate(corr.iterrows()):
        err = None if x.model == "realized" else [2 * x[k + "_se"] for k in keys]
        ax.errorbar(np.arange(len(keys)) + 0.12 * (i - 1.5), [x[k] for k in keys], yerr=err, fmt="o", capsize=3,
                    label=x.model)  # fmt: skip
    ax.set_xticks(
        range(len(keys)), ["rolling 5%", "rolling mean", "rolling 95%", "worst 10% of days", "full sample"]
    )
    ax.set_ylabel("BTC-ETH correlation of daily returns (±2 s.e.)")
    ax.set_title("simulated histories against the realized one")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
