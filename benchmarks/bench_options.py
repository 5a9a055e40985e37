"""Cost of an option book in the engine: a 4-leg book against a perpetual-only run.

The same model (GBM, 8,192 paths x 90 daily steps, float32) is simulated with a daily-rebalanced
perpetual (the baseline), a static long call, a 4-leg iron condor delta-hedged daily with the
perpetual under Deribit's standard margin, and the same condor under scenario (portfolio) margin
(27 repricings of every leg per step). Compile excluded; median of interleaved repeats, so
background load hits every case alike.

Writes ``benchmarks/results/options.json``.

Usage::

    .venv/bin/python benchmarks/bench_options.py            # ~2 min
    .venv/bin/python benchmarks/bench_options.py --quick    # 1,024 paths, 2 repeats
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
}
CONDOR = [
    {"type": "call", "strike": 1.1, "expiry_days": 120, "quantity": -1.0},
    {"type": "call", "strike": 1.3, "expiry_days": 120, "quantity": 1.0},
    {"type": "put", "strike": 0.9, "expiry_days": 120, "quantity": -1.0},
    {"type": "put", "strike": 0.7, "expiry_days": 120, "quantity": 1.0},
]
IV = {"kind": "constant", "value": 0.7}


def cases() -> dict[str, dict]:
    condor = {"kind": "options", "legs": CONDOR, "hedge": {"rebalance": 1}, "implied_vol": IV}
    return {
        "perpetual 2x, daily": {"policy": {"kind": "constant", "leverage": 2.0, "rebalance": 1}},
        "1 long call, static": {
            "policy": {
                "kind": "options",
                "legs": [{"type": "call", "strike": 1.1, "expiry_days": 120, "quantity": 2.0}],
                "implied_vol": IV,
            }
        },
        "4-leg condor, hedged, standard margin": {"policy": condor},
        "4-leg condor, hedged, scenario margin": {
            "policy": condor,
            "market": BASE["market"] | {"margin": "scenario"},
        },
    }


def timed(problem, paths: int) -> float:
    key = problem.key(STREAM_PATHS)
    t = time.perf_counter()
    problem.simulate(key, paths=paths).wealth.block_until_ready()
    return time.perf_counter() - t


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "options.json")
    args = parser.parse_args()
    paths, repeats = (1024, 2) if args.quick else (8192, 5)
    t_start = time.perf_counter()
    problems = {}
    for name, extra in cases().items():
        problems[name] = levopt.build(BASE | {"paths": paths} | extra)
        timed(problems[name], paths)  # compile
    times: dict[str, list[float]] = {name: [] for name in problems}
    for _ in range(repeats):
        for name, problem in problems.items():
            times[name].append(timed(problem, paths))
    steps = paths * BASE["horizon_days"]
    base = statistics.median(times["perpetual 2x, daily"])
    rows = {
        name: {
            "median_s": statistics.median(t),
            "path_steps_per_s": steps / statistics.median(t),
            "ratio_to_perpetual": statistics.median(t) / base,
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
        f"### Option books ({res['paths']:,} paths x {res['steps']} steps, float32, median of {res['repeats']})",
        "",
        "| case | median s | path-steps/s | x perpetual |",
        "|---|---:|---:|---:|",
    ]
    for name, r in res["cases"].items():
        lines.append(
            f"| {name} | {r['median_s']:.3f} | {r['path_steps_per_s']:,.0f} | {r['ratio_to_perpetual']:.2f} |"
        )
    return "\n".join(lines)


def summary(res: dict) -> list:
    c = res["cases"]
    return [
        (
            "4-leg hedged / perpetual",
            f"{c['4-leg condor, hedged, standard margin']['ratio_to_perpetual']:.1f}x",
        ),
        (
            "scenario / standard margin",
            f"{c['4-leg condor, hedged, scenario margin']['median_s'] / c['4-leg condor, hedged, standard margin']['median_s']:.1f}x",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())
