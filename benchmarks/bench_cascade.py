"""Cost of the crowd's liquidation cascade in the engine: a cascaded run against the plain one.

The same config (GBM, daily-rebalanced 4x, 8,192 paths x 90 daily steps, float32) is simulated
without a ``cascade:`` block and with crowds of 50, 200 and 800 bins, and with 200 bins at open
interest 1e9, 1e10 and 1e11 (more accounts in the crowd: the same arrays, other numbers). Compile
excluded; median of interleaved repeats, so background load hits every case alike. The ratio
to the plain run is the cost of the cascade; the claim checked is that it grows with the bins
and not with the open interest.

Writes ``benchmarks/results/cascade.json``.

Usage::

    .venv/bin/python benchmarks/bench_cascade.py            # ~2-4 min
    .venv/bin/python benchmarks/bench_cascade.py --quick    # 1,024 paths, 2 repeats
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import finish, machine  # noqa: E402

import levopt  # noqa: E402
from levopt.problem import STREAM_PATHS  # noqa: E402

BASE = {
    "seed": 0,
    "horizon_days": 90,
    "precision": "float32",
    "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.7},
    "market": {"maintenance_margin": 0.005, "fee": 0.0004},
    "policy": {"kind": "constant", "leverage": 4.0, "rebalance": 1},
}


def crowd(bins: int, oi: float) -> dict:
    return {
        "crowd": {"long_oi": oi, "short_oi": 0.8 * oi, "leverage": {3: 0.3, 10: 0.4, 25: 0.3}},
        "impact": {"kind": "linear", "permanent": 0.3, "daily_volume": 10 * oi},
        "bins": bins,
    }


def cases() -> dict[str, dict | None]:
    out: dict[str, dict | None] = {"plain": None}
    for bins in (50, 200, 800):
        out[f"bins {bins}, OI 1e10"] = crowd(bins, 1e10)
    for oi in (1e9, 1e11):
        out[f"bins 200, OI {oi:.0e}"] = crowd(200, oi)
    return out


def timed(problem, paths: int) -> float:
    key = problem.key(STREAM_PATHS)
    t = time.perf_counter()
    problem.simulate(key, paths=paths).wealth.block_until_ready()
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cascade.json")
    args = parser.parse_args()
    paths, repeats = (1024, 2) if args.quick else (8192, 5)
    t_start = time.perf_counter()
    problems = {}
    for name, block in cases().items():
        cfg = BASE | {"paths": paths} | ({"cascade": block} if block else {})
        problems[name] = levopt.build(cfg)
        timed(problems[name], paths)  # compile
    times: dict[str, list[float]] = {name: [] for name in problems}
    for _ in range(repeats):
        for name, problem in problems.items():
            times[name].append(timed(problem, paths))
    steps = paths * BASE["horizon_days"]
    plain = statistics.median(times["plain"])
    rows = {
        name: {
            "median_s": statistics.median(t),
            "path_steps_per_s": steps / statistics.median(t),
            "ratio_to_plain": statistics.median(t) / plain,
        }
        for name, t in times.items()
    }
    res = {
        "machine": machine(),
        "paths": paths,
        "steps": BASE["horizon_days"],
        "repeats": repeats,
        "cases": rows,
    }
    return finish(res, args.out, t_start, markdown, summary)


def markdown(res: dict) -> str:
    lines = [
        f"### Cascade cost ({res['paths']:,} paths x {res['steps']} steps, float32, median of {res['repeats']})",
        "",
        "| case | median s | path-steps/s | x plain |",
        "|---|---:|---:|---:|",
    ]
    for name, r in res["cases"].items():
        lines.append(
            f"| {name} | {r['median_s']:.3f} | {r['path_steps_per_s']:,.0f} | {r['ratio_to_plain']:.2f} |"
        )
    return "\n".join(lines)


def summary(res: dict) -> list:
    c = res["cases"]
    return [
        ("cascade 200 bins / plain", f"{c['bins 200, OI 1e10']['ratio_to_plain']:.1f}x"),
        (
            "800 bins / 50 bins",
            f"{c['bins 800, OI 1e10']['median_s'] / c['bins 50, OI 1e10']['median_s']:.1f}x",
        ),
        (
            "OI 1e11 / OI 1e9 (200 bins)",
            f"{c['bins 200, OI 1e+11']['median_s'] / c['bins 200, OI 1e+09']['median_s']:.2f}x",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
