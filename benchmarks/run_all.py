"""Run every ``benchmarks/bench_*.py`` and assemble ``benchmarks/results/summary.{md,json}``.

Each benchmark script is run in its own process (``python benchmarks/bench_NAME.py [--quick]``)
and writes ``benchmarks/results/NAME.json``. The summary is then built from every JSON file found
in ``benchmarks/results/`` (including ones from earlier runs), using from each file, in order of
preference:

* ``"markdown"``: a markdown fragment (tables) written by the script;
* ``"summary"``: a list of ``{"metric", "value", "unit"?, "detail"?}`` rows;
* otherwise its numeric and string leaves, flattened to ``dotted.key: value`` rows.

plus ``"date"``, ``"quick"`` and ``"machine"`` when present.

Usage::

    .venv/bin/python benchmarks/run_all.py                 # everything, full sizes
    .venv/bin/python benchmarks/run_all.py --quick         # smoke run, small sizes
    .venv/bin/python benchmarks/run_all.py --only engine   # one script (repeatable)
    .venv/bin/python benchmarks/run_all.py --summary-only  # rebuild the summary from results/
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
SUMMARY_FILES = ("summary.json",)
MAX_FLAT_ROWS = 40


def discover() -> dict[str, Path]:
    """``{NAME: path}`` of the ``bench_NAME.py`` scripts present."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}


def normalize(name: str) -> str:
    return Path(name).name.removesuffix(".py").removeprefix("bench_")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:")), cpu
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    vers = {}
    for pkg in ("jax", "jaxlib", "numpy", "cvxpy", "numpyro"):
        try:
            vers[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return {
        "cpu": cpu,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "python": platform.python_version(),
        "versions": vers,
    }


def run_scripts(
    names: list[str], scripts: dict[str, Path], quick: bool, timeout: float
) -> list[dict[str, Any]]:
    runs = []
    for name in names:
        cmd = [sys.executable, str(scripts[name])] + (["--quick"] if quick else [])
        print(f"=== {name}: {' '.join(cmd[1:])}", flush=True)
        t0, started = time.perf_counter(), time.time()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        wall = time.perf_counter() - t0
        out = RESULTS / f"{name}.json"
        produced = out.is_file() and out.stat().st_mtime >= started - 1  # written by this run
        runs.append({"name": name, "returncode": rc, "wall_s": round(wall, 1), "wrote_json": produced})
        print(
            f"=== {name}: exit {rc} in {wall:.0f} s{'' if produced else f' (no results/{name}.json)'}",
            flush=True,
        )
    return runs


def flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(obj, dict):
        return [kv for k, v in obj.items() for kv in flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(obj, list):
        if len(obj) > 20 and all(isinstance(v, int | float) for v in obj):
            return []  # raw timing samples and the like: leave them to the JSON
        return [kv for i, v in enumerate(obj) for kv in flatten(v, f"{prefix}[{i}]")]
    if isinstance(obj, bool | int | float | str) or obj is None:
        return [(prefix, obj)]
    return [(prefix, str(obj))]


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def section(name: str, data: dict[str, Any]) -> str:
    lines = [f"## {name}", ""]
    meta = []
    if data.get("date"):
        meta.append(f"date {data['date']}")
    if data.get("quick"):
        meta.append("**quick run (small sizes)**")
    m = data.get("machine")
    if isinstance(m, dict) and "cpu" in m:
        meta.append(f"{m.get('cpu')}, {m.get('cores')} cores")
    if meta:
        lines += ["; ".join(meta), ""]
    if isinstance(data.get("markdown"), str):
        lines.append(data["markdown"].rstrip())
    elif isinstance(data.get("summary"), list) and data["summary"]:
        rows = [r for r in data["summary"] if isinstance(r, dict)]
        lines += ["| metric | value | unit | detail |", "| --- | ---: | --- | --- |"]
        lines += [
            f"| {r.get('metric', '')} | {fmt(r.get('value', ''))} | {r.get('unit', '')} | {r.get('detail', '')} |"
            for r in rows
        ]
    else:
        skip = {"date", "quick", "machine", "versions", "name"}
        flat = [(k, v) for k, v in flatten({k: v for k, v in data.items() if k not in skip})]
        lines += ["| key | value |", "| --- | --- |"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in flat[:MAX_FLAT_ROWS]]
        if len(flat) > MAX_FLAT_ROWS:
            lines.append(f"\n({len(flat) - MAX_FLAT_ROWS} more values in results/{name}.json)")
    return "\n".join(lines) + "\n"


def assemble(runs: list[dict[str, Any]] | None) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.name in SUMMARY_FILES:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            data = {"error": f"unreadable: {exc}"}
        found[path.stem] = data if isinstance(data, dict) else {"value": data}
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    mach = machine()
    summary = {
        "assembled": now,
        "machine": mach,
        "runs": runs or [],
        "benchmarks": {
            name: {k: data.get(k) for k in ("date", "quick", "summary") if k in data}
            | {"file": f"results/{name}.json"}
            for name, data in found.items()
        },
    }
    md = [
        "# levopt benchmarks",
        "",
        f"Assembled {now} from `benchmarks/results/*.json` on {mach['cpu']} ({mach['arch']}), "
        f"{mach['cores']} cores, {mach['memory_gib']} GiB; "
        + ", ".join(f"{k} {v}" for k, v in mach["versions"].items())
        + ".",
        "",
    ]
    if runs:
        md += ["| script | exit | wall s | wrote JSON |", "| --- | --- | ---: | --- |"]
        md += [
            f"| bench_{r['name']}.py | {r['returncode']} | {r['wall_s']} | {r['wrote_json']} |" for r in runs
        ]
        md.append("")
    if not found:
        md.append("No results yet: run `python benchmarks/run_all.py`.")
    md += [section(name, data) for name, data in found.items()]
    md_path, json_path = RESULTS / "summary.md", RESULTS / "summary.json"
    md_path.write_text("\n".join(md))
    json_path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return md_path, json_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run levopt's benchmark scripts and assemble a summary.")
    ap.add_argument(
        "--quick", action="store_true", help="pass --quick to every script (small sizes, smoke run)"
    )
    ap.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only bench_NAME.py (repeatable; 'engine', 'bench_engine' or 'bench_engine.py')",
    )
    ap.add_argument(
        "--summary-only", action="store_true", help="run nothing; rebuild the summary from results/"
    )
    ap.add_argument("--timeout", type=float, default=3600, help="seconds allowed per script (default 3600)")
    args = ap.parse_args(argv)

    scripts = discover()
    runs = None
    if not args.summary_only:
        names = [normalize(n) for n in args.only] if args.only else list(scripts)
        unknown = [n for n in names if n not in scripts]
        if unknown:
            print(
                f"run_all: no benchmarks/bench_{unknown[0]}.py; available: {', '.join(scripts) or 'none'}",
                file=sys.stderr,
            )
            return 2
        runs = run_scripts(names, scripts, args.quick, args.timeout)
    md_path, json_path = assemble(runs)
    print(f"wrote {md_path.relative_to(ROOT)} and {json_path.relative_to(ROOT)}")
    return 0 if all(r["returncode"] == 0 for r in runs or []) else 1


if __name__ == "__main__":
    raise SystemExit(main())
