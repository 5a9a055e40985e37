"""Helpers shared by the benchmark scripts: the machine's description and writing the results."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax


def machine() -> dict[str, Any]:
    model_name = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model_name = line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            mem_gib = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": model_name,
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "jax_backend": jax.default_backend(),
        "jax_devices": [str(d) for d in jax.devices()],
    }


def finish(
    res: dict[str, Any],
    out: Path,
    t_start: float,
    markdown: Callable[[dict], str],
    summary: Callable[[dict], list],
    default: Callable[[Any], Any] = float,
) -> int:
    """Stamp the run's wall time and load, render its tables, write ``out`` and print them."""
    res["wall_s"] = time.perf_counter() - t_start
    res["load_average_end"] = os.getloadavg()
    res["markdown"] = markdown(res)
    res["summary"] = summary(res)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=default) + "\n")
    print()
    print(res["markdown"])
    print(f"wrote {out} ({res['wall_s']:.0f} s)")
    return 0
