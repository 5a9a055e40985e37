"""``levopt position``: the first answer from a year of hourly bars, and each ``--watch`` update.

A fresh process (``python -m levopt.cli position ...``, the command a trader types, compilation
cache off) answers "long 2 BTC, 24 h horizon" from the last 8,761 hourly closes of
``../shared/data/btc_usd_hourly.csv`` (Bitstamp, to 2022-08-20) and the BTCUSDT funding history:
the wall time of the whole command (import, reading, GJR-free GARCH-t MLE, 20,000 paths, the
leverage search) is the first-answer time. Then, in one process, the answer is repeated on the
same data with one new bar at a time (:func:`levopt.position.answer` with the previous state, as
``--watch`` does): the fit is re-filtered, not refitted, and the compiled programs are reused.

Targets (issue "Position risk now"): first answer under 20 s, each update under 1 s, on this
machine. Writes ``benchmarks/results/position.json``.

Usage::

    .venv/bin/python benchmarks/bench_position.py            # ~1-2 min
    .venv/bin/python benchmarks/bench_position.py --quick    # 3 updates
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import finish, machine  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
PRICES = SHARED / "btc_usd_hourly.csv"
FUNDING = SHARED / "btcusdt_funding_8h.csv"
HOURS_PER_YEAR = 8760


def year_of_bars(out: Path, extra: int) -> tuple[Path, object]:
    """The last year (+ ``extra`` bars held back for the updates) of hourly closes as a CSV."""
    from levopt.data import load_prices

    frame = load_prices(PRICES)
    tail = frame.iloc[-(HOURS_PER_YEAR + 1 + extra) :]
    first = tail.iloc[: HOURS_PER_YEAR + 1]
    first[["close"]].to_csv(out)
    return out, tail


def first_answer(path: Path, price: float) -> dict[str, float]:
    env = dict(os.environ, LEVOPT_CACHE_DIR="off")
    cmd = [
        sys.executable, "-m", "levopt.cli", "position", "--position", f"long 2 @ {price:.2f}",
        "--wallet-balance", f"{0.5 * 2 * price:.2f}", "--data", str(path), "--funding", str(FUNDING),
        "--horizon", "24h", "--quiet", "--json",
    ]  # fmt: skip
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    import json

    doc = json.loads(out.stdout)
    return {
        "wall_s": wall,
        **{f"{k}": v for k, v in doc["timings"].items()},
        "p_liq": doc["liquidation_probability"],
    }


def updates(tail, price: float, n: int) -> list[float]:
    from levopt.data import load_funding
    from levopt.position import Account, _settings, answer

    account = Account.checked([f"long 2 @ {price:.2f}"], 0.5 * 2 * price, "binance_usdm", None, "cross")
    settings = _settings("24h", "365d", "t", False, False, None, 0.01, 0.99, 20_000, 0)
    funding = load_funding(FUNDING)
    frame = tail.iloc[: HOURS_PER_YEAR + 1]
    _, state = answer(account, settings, frame, funding, {})
    times = []
    for k in range(1, n + 1):
        frame = tail.iloc[k : HOURS_PER_YEAR + 1 + k]
        t0 = time.perf_counter()
        _, state = answer(account, settings, frame, funding, {}, previous=state)
        times.append(time.perf_counter() - t0)
    return times


def markdown(res: dict) -> str:
    f, u = res["first"], res["updates_s"]
    return "\n".join(
        [
            "| measure | value | target |",
            "| --- | ---: | ---: |",
            f"| first answer, fresh process (wall) | {f['wall_s']:.1f} s | < 20 s |",
            f"| of which model fit / simulation + search | {f['model_s']:.1f} s / {f['simulate_s']:.1f} s | |",
            f"| watch update, median of {len(u)} (max) | {statistics.median(u):.2f} s ({max(u):.2f} s) | < 1 s |",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 updates")
    args = parser.parse_args()
    if args.quick:
        args.updates = 3
    if not PRICES.is_file() or not FUNDING.is_file():
        print(f"skipped: {PRICES} or {FUNDING} is missing")
        return 0
    t_start = time.perf_counter()
    res: dict = {"machine": machine(), "load_average_start": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        path, tail = year_of_bars(Path(tmp) / "btc_1y.csv", args.updates)
        price = float(tail["close"].iloc[HOURS_PER_YEAR])
        res["first"] = first_answer(path, price)
        res["updates_s"] = updates(tail, price, args.updates)
    return finish(
        res,
        HERE / "results" / "position.json",
        t_start,
        markdown,
        lambda r: [r["first"]["wall_s"], statistics.median(r["updates_s"])],
    )


if __name__ == "__main__":
    raise SystemExit(main())
