"""Posterior summaries and convergence diagnostics (split r̂, ESS, divergent transitions)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

R_HAT_MAX = 1.01
"""Split r̂ above this triggers a :class:`CalibrationWarning` (Vehtari et al. 2021 recommend 1.01)."""


class CalibrationWarning(UserWarning):
    """The sampler did not converge cleanly (r̂ > 1.01 or divergent transitions): more warmup or
    samples, a simpler model, or more data may help; the posterior is reported anyway."""


def summarize_draws(x: np.ndarray) -> dict[str, float | None]:
    """Mean, sd, 5% and 95% quantiles, split r̂ and ESS of ``(chains, samples)`` draws.

    r̂ and ESS are numpyro's split Gelman–Rubin statistic and effective sample size
    (Gelman et al., Bayesian Data Analysis, 3rd ed., §11.4–11.5); ``None`` for a constant
    (fixed) parameter.
    """

    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1)
    constant = flat.size > 0 and np.ptp(flat) == 0
    out: dict[str, float | None] = {
        # A constant (fixed) parameter reports its value exactly, not a rounded mean of copies.
        "mean": float(flat[0]) if constant else float(flat.mean()),
        "sd": 0.0 if constant or flat.size < 2 else float(flat.std(ddof=1)),
        "q05": float(np.quantile(flat, 0.05)),
        "q95": float(np.quantile(flat, 0.95)),
        "r_hat": None,
        "ess": None,
    }
    if np.ptp(flat) > 0 and x.shape[1] >= 4:
        from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

        out["r_hat"] = float(split_gelman_rubin(x))
        out["ess"] = float(effective_sample_size(x))
    return out


def check_diagnostics(
    summary: Mapping[str, Mapping[str, Any]], divergences: int, r_hat_max: float = R_HAT_MAX
) -> list[str]:
    """Problems with a run (r̂ above ``r_hat_max``, divergent transitions), each also warned as a
    :class:`CalibrationWarning`."""
    problems = []
    bad = {
        k: v["r_hat"]
        for k, v in summary.items()
        if v.get("r_hat") is not None and not v["r_hat"] <= r_hat_max
    }
    if bad:
        worst = max(bad, key=lambda k: bad[k])
        problems.append(f"r_hat {bad[worst]:.3f} > {r_hat_max} for {worst} ({len(bad)} parameter(s) above)")
    if divergences > 0:
        problems.append(f"{divergences} divergent transition(s)")
    for p in problems:
        warnings.warn(
            f"calibration: {p}; increase warmup/samples, simplify the model or check the data",
            CalibrationWarning,
            stacklevel=4,
        )
    return problems


def diagnostics_block(
    stats: Mapping[str, Mapping[str, Any]], diverging: np.ndarray, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """The summary's ``diagnostics``: largest r̂, smallest ESS over ``stats``, divergences, the NUTS
    settings and the problems (each warned as a :class:`CalibrationWarning`)."""
    r_hats = [v["r_hat"] for v in stats.values() if v["r_hat"] is not None]
    ess = [v["ess"] for v in stats.values() if v["ess"] is not None]
    n_div = int(np.sum(diverging))
    return {
        "max_r_hat": max(r_hats) if r_hats else None,
        "min_ess": min(ess) if ess else None,
        "divergences": n_div,
        "chains": int(settings["chains"]),
        "warmup": int(settings["warmup"]),
        "samples": int(settings["samples"]),
        "seed": settings.get("seed"),
        "problems": check_diagnostics(stats, n_div),
    }
