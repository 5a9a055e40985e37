"""Memory bounded by chunk_size whatever the path count: streamed metrics up to 10^8 paths x 365.

Each size runs ``levopt.evaluate`` (streamed, :mod:`levopt.estimate`) in a fresh process and records
its peak resident memory (``ru_maxrss`` of the child) and wall time; at the sizes where it fits,
the in-memory method (every per-path outcome kept, then the metrics) runs in another fresh process
on the same config, and the two sets of metrics are compared.

Case: GBM (sigma 0.6), leverage 2x held (``rebalance: never``), float32, the default metrics (including VaR
and CVaR, which take a second, regenerating pass once the reduced chunks exceed
``levopt.estimate.RETAIN_BYTES``).

Usage::

    python benchmarks/bench_streaming.py                      # 1e6, 1e7, 1e8 paths (long)
    python benchmarks/bench_streaming.py --paths 1000000 4000000 --memory-upto 4000000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import finish, machine  # noqa: E402
from bench_engine import peak_rss_of  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "streaming.json"


def config(paths: int, steps: int, chunk_size: int, precision: str) -> dict[str, Any]:
    return {
        "seed": 0,
        "paths": paths,
        "horizon_days": steps,
        "precision": precision,
        "chunk_size": chunk_size,
        "model": {"kind": "gbm", "mu": 0.0, "sigma": 0.6},
        "market": {"maintenance_margin": 0.005, "funding_rate": 0.1, "liquidation_fee": 0.002},
        "policy": {"kind": "constant", "leverage": 2.0, "rebalance": "never"},
    }


def child(method: str, cfg: dict[str, Any]) -> dict[str, Any]:
    import jax

    import levopt
    from levopt.problem import STREAM_PATHS
    from levopt.runner import build

    t0 = time.perf_counter()
    if method == "stream":
        result = levopt.evaluate(cfg)
        metrics, stderr = result["metrics"], result["stderr"]
    else:
        with jax.enable_x64(True):
            problem = build(cfg)
            outcome = jax.block_until_ready(problem.simulate(problem.key(STREAM_PATHS)))
            est = problem.metrics(outcome)
        metrics, stderr = est["metrics"], est["stderr"]
    return {"method": method, "metrics": metrics, "stderr": stderr, "in_process_s": time.perf_counter() - t0}


def measure(method: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, json.dumps(cfg)]
    out, rss, wall = peak_rss_of(cmd, timeout)
    row = out | {"paths": cfg["paths"], "steps": cfg["horizon_days"], "peak_rss_bytes": rss, "wall_s": wall}
    row["path_steps_per_s"] = cfg["paths"] * cfg["horizon_days"] / out["in_process_s"]
    print(
        f"  {method:6s} {cfg['paths']:>11,} x {cfg['horizon_days']}: peak RSS {rss / 1e9:5.2f} GB, "
        f"wall {wall:7.1f} s ({row['path_steps_per_s'] / 1e6:.1f} M path-steps/s)",
        flush=True,
    )
    return row


def compare(a: dict[str, float], b: dict[str, float]) -> float:
    """Largest relative difference between two sets of numbers."""
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-300) for k in a)


def in_stderr(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest difference of two sets of metrics in units of the standard error."""
    return max(abs(a["metrics"][k] - b["metrics"][k]) / max(b["stderr"][k], 1e-300) for k in a["metrics"])


def markdown(res: dict[str, Any]) -> str:
    lines = [
        f"Streamed metrics, GBM 2x held, {res['precision']}, chunk_size {res['chunk_size']:,} "
        f"(load average at start {res['load_average_start'][0]:.1f})",
        "",
        "| method | paths x steps | peak RSS (GB) | wall (s) | M path-steps/s |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['method']} | {r['paths']:,} x {r['steps']} | {r['peak_rss_bytes'] / 1e9:.2f} | "
            f"{r['wall_s']:.1f} | {r['path_steps_per_s'] / 1e6:.1f} |"
        )
    for c in res["comparisons"]:
        lines.append(
            f"\nAt {c['paths']:,} paths: largest relative difference stream vs in memory "
            f"{c['max_rel_diff']:.2e} (metrics; {c['max_diff_in_stderr']:.1e} standard errors), "
            f"{c['max_rel_diff_stderr']:.2e} (standard errors)."
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CONFIG"), help=argparse.SUPPRESS)
    parser.add_argument("--paths", type=int, nargs="+", default=[10**6, 10**7, 10**8])
    parser.add_argument("--steps", type=int, default=365)
    parser.add_argument("--chunk-size", type=int, default=1 << 16)
    parser.add_argument("--precision", default="float32", choices=("float32", "float64"))
    parser.add_argument("--memory-upto", type=int, default=10**7, help="largest size also run in memory")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], json.loads(args.child[1]))))
        return 0
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "name": "streaming",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "precision": args.precision,
        "chunk_size": args.chunk_size,
        "load_average_start": os.getloadavg(),
        "rows": [],
        "comparisons": [],
    }
    for paths in args.paths:
        cfg = config(paths, args.steps, args.chunk_size, args.precision)
        stream = measure("stream", cfg, args.timeout)
        res["rows"].append(stream)
        if paths <= args.memory_upto:
            memory = measure("memory", cfg, args.timeout)
            res["rows"].append(memory)
            res["comparisons"].append(
                {
                    "paths": paths,
                    "max_rel_diff": compare(stream["metrics"], memory["metrics"]),
                    "max_rel_diff_stderr": compare(stream["stderr"], memory["stderr"]),
                    "max_diff_in_stderr": in_stderr(stream, memory),
                }
            )
    return finish(
        res,
        args.out,
        t_start,
        markdown,
        lambda r: [
            f"{row['method']} {row['paths']:,}: {row['peak_rss_bytes'] / 1e9:.2f} GB" for row in r["rows"]
        ],
    )


if __name__ == "__main__":
    raise SystemExit(main())
