"""What importing levopt costs and changes: no optional heavy dependency is loaded before it is
needed (cvxpy for convex optimization, numpyro for calibration, scipy.stats for predictive checks),
and no JAX setting is changed. Checked in a fresh interpreter; the import time itself is measured
by ``benchmarks/bench_repeat.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

DEFERRED = ("cvxpy", "numpyro", "scipy.stats")

PROBE = """
import json, sys, jax
settings = lambda: {{"x64": jax.config.jax_enable_x64, "cache_dir": jax.config.jax_compilation_cache_dir,
                    "min_compile_s": jax.config.jax_persistent_cache_min_compile_time_secs}}
before = settings()
import {module}
print(json.dumps({{"loaded": [m for m in {deferred!r} if m in sys.modules],
                  "unchanged": settings() == before}}))
"""


def probe(module: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_COMPILATION_CACHE_DIR", "JAX_ENABLE_X64")}
    code = PROBE.format(module=module, deferred=list(DEFERRED))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_levopt_defers_heavy_dependencies_and_changes_no_setting():
    result = probe("levopt")
    assert result["loaded"] == [], f"import levopt loaded {result['loaded']}"
    assert result["unchanged"]


def test_cli_import_defers_heavy_dependencies():
    result = probe("levopt.cli")
    assert result["loaded"] == [], f"import levopt.cli loaded {result['loaded']}"
    assert result["unchanged"]


def test_probe_sees_a_loaded_module():
    # The probe can fail: a module that does import one of them is reported.
    assert "cvxpy" in probe("levopt.optimize.convex, cvxpy")["loaded"]
