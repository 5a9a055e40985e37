r"""Posterior predictive checks: does the calibrated model reproduce the data's volatility,
tails and volatility clustering?

For each statistic T the check simulates series of the data's length, each from one posterior
draw (with the engine's random numbers), and reports the realized T(y), the predictive mean and
5–95% interval of T(y_rep), and the posterior predictive p-value P(T(y_rep) >= T(y)) (Gelman,
Meng & Stern 1996; Gelman et al., Bayesian Data Analysis, 3rd ed., §6.3). p-values near 0 or 1 say
the model does not reproduce that feature of the data.

Several assets (dcc_garch) add, per asset, the one-asset statistics (``annual_vol[i]``, ...) and,
per pair i < j, statistics of how they move together (:func:`correlation_statistics`): the
correlation over the whole series, the mean, sd and 5%/95% quantiles over time of the rolling
correlation in a :data:`ROLLING_WINDOW`-step window, and the correlation on the worst decile of
steps of the equal-weight portfolio (where the correlation that matters for a leveraged book is
measured: crashes are joint; Longin & Solnik, "Extreme correlation of international equity
markets", J. Finance 56, 2001).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.calibrate.fit import CalibrationResult
from levopt.engine import simulate_returns
from levopt.precision import scoped_x64
from levopt.results import parameter_label

ACF_LAGS = (1, 2, 3, 4, 5)
ROLLING_WINDOW = 30
"""Steps in the rolling-correlation window of the multi-asset check (a month of daily returns)."""
TAIL_QUANTILE = 0.1
"""The tail-correlation statistic uses the steps whose equal-weight return is in this lowest quantile."""


def return_statistics(x: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """Statistics of log-return series ``x`` (``(paths, T)`` or ``(T,)``), one value per series.

    * ``annual_vol``: sample standard deviation / sqrt(dt);
    * ``excess_kurtosis``: Fisher's (biased) sample excess kurtosis;
    * ``acf_sq_k``: lag-k sample autocorrelation of the squared returns (volatility clustering).
    """
    from scipy import stats  # imported here: `import levopt` does without scipy.stats (~0.3 s)

    x = np.atleast_2d(np.asarray(x, np.float64))
    out = {
        "annual_vol": x.std(axis=1, ddof=1) / np.sqrt(dt),
        "excess_kurtosis": stats.kurtosis(x, axis=1, fisher=True, bias=True),
    }
    y = x**2
    y = y - y.mean(axis=1, keepdims=True)
    denom = np.sum(y**2, axis=1)
    denom = np.where(denom > 0, denom, np.nan)
    for k in ACF_LAGS:
        out[f"acf_sq_{k}"] = np.sum(y[:, k:] * y[:, :-k], axis=1) / denom
    return out


def rolling_correlation(x: np.ndarray, y: np.ndarray, window: int = ROLLING_WINDOW) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` (``(paths, T)``) in every window of ``window``
    consecutive steps: ``(paths, T - window + 1)``, from running sums (NaN for a constant window)."""

    def sums(z: np.ndarray) -> np.ndarray:
        c = np.concatenate([np.zeros(z.shape[:-1] + (1,)), np.cumsum(z, axis=-1)], axis=-1)
        return c[..., window:] - c[..., :-window]

    w = float(window)
    sx, sy = sums(x), sums(y)
    cov = sums(x * y) - sx * sy / w
    var = (sums(x * x) - sx**2 / w) * (sums(y * y) - sy**2 / w)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, cov / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def _masked_correlation(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pearson correlation of x and y (``(paths, T)``) over the steps where ``mask`` holds."""
    k = mask.sum(axis=-1)
    mx = np.sum(x * mask, axis=-1) / k
    my = np.sum(y * mask, axis=-1) / k
    dx, dy = (x - mx[:, None]) * mask, (y - my[:, None]) * mask
    var = np.sum(dx**2, axis=-1) * np.sum(dy**2, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, np.sum(dx * dy, axis=-1) / np.sqrt(np.where(var > 0, var, 1.0)), np.nan)


def correlation_statistics(
    x: np.ndarray, window: int = ROLLING_WINDOW, tail: float = TAIL_QUANTILE
) -> dict[str, np.ndarray]:
    """Co-movement statistics of multi-asset log-returns ``x`` (``(paths, T, n)`` or ``(T, n)``),
    one value per series and pair i < j:

    * ``corr[i,j]``: the sample correlation over the whole series;
    * ``rolling_corr_mean[i,j]``, ``rolling_corr_sd[i,j]``, ``rolling_corr_q05[i,j]``,
      ``rolling_corr_q95[i,j]``: mean, sd and 5%/95% quantiles over time of the rolling
      correlation in ``window`` steps (:func:`rolling_correlation`);
    * ``tail_corr[i,j]``: the correlation over the steps whose equal-weight return
      mean_i(exp(x_i) − 1) is at or below its ``tail`` quantile (the worst decile of steps).
    """
    x = np.asarray(x, np.float64)
    x = x[None] if x.ndim == 2 else x
    ew = np.mean(np.expm1(x), axis=-1)
    worst = ew <= np.quantile(ew, tail, axis=-1, keepdims=True)
    every = np.ones(ew.shape, bool)
    out: dict[str, np.ndarray] = {}
    n = x.shape[-1]
    for i in range(n):
        for j in range(i + 1, n):
            a, b = x[..., i], x[..., j]
            rc = rolling_correlation(a, b, window)
            pair = {
                "corr": _masked_correlation(a, b, every),
                "rolling_corr_mean": np.nanmean(rc, axis=-1),
                "rolling_corr_sd": np.nanstd(rc, axis=-1, ddof=1),
                "rolling_corr_q05": np.nanquantile(rc, 0.05, axis=-1),
                "rolling_corr_q95": np.nanquantile(rc, 0.95, axis=-1),
                "tail_corr": _masked_correlation(a, b, worst),
            }
            out |= {parameter_label(k, (i, j)): v for k, v in pair.items()}
    return out


def _per_asset_statistics(x: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """:func:`return_statistics` of each asset of ``x`` (``(paths, T, n)`` or ``(T, n)``), labelled ``name[i]``."""
    x = np.asarray(x, np.float64)
    x = x[None] if x.ndim == 2 else x
    out: dict[str, np.ndarray] = {}
    for i in range(x.shape[-1]):
        out |= {parameter_label(k, (i,)): v for k, v in return_statistics(x[..., i], dt).items()}
    return out


@scoped_x64
def posterior_predictive_check(
    result: CalibrationResult, key: jax.Array, n_paths: int = 200, dtype: Any = jnp.float64
) -> dict[str, Any]:
    """Compare the data with series simulated from ``n_paths`` posterior draws (evenly spaced).

    Returns:
        ``{"n_paths", "n_obs", "statistics": {name: {realized, mean, q05, q95, p_value}}}``; with
        several assets also ``assets``, ``window`` and ``tail_quantile`` (module docstring).
    """

    n_obs = int(result.returns.values.shape[0])
    idx = np.unique(np.linspace(0, result.n_draws - 1, min(n_paths, result.n_draws)).round().astype(int))
    model = result.to_model("posterior", dtype, draws=idx)
    sim = simulate_returns(
        key, model, paths=n_paths, steps=n_obs, dt=result.returns.dt, dtype=dtype, n_draws=len(idx)
    )
    sim = np.asarray(sim)
    dt = result.returns.dt
    multi = result.returns.values.ndim == 2
    extra: dict[str, Any] = {}
    if multi:
        realized = _per_asset_statistics(result.returns.values, dt) | correlation_statistics(
            result.returns.values
        )
        predicted = _per_asset_statistics(sim, dt) | correlation_statistics(sim)
        extra = {"assets": list(result.assets), "window": ROLLING_WINDOW, "tail_quantile": TAIL_QUANTILE}
    else:
        realized = return_statistics(result.returns.values, dt)
        predicted = return_statistics(sim[..., 0], dt)
    table = {}
    for name, value in realized.items():
        reps = predicted[name][np.isfinite(predicted[name])]
        obs = float(value[0])
        table[name] = {
            "realized": obs,
            "mean": float(np.mean(reps)),
            "q05": float(np.quantile(reps, 0.05)),
            "q95": float(np.quantile(reps, 0.95)),
            "p_value": float(np.mean(reps >= obs)),
        }
    return {
        "n_paths": int(n_paths),
        "n_draws_used": int(len(idx)),
        "n_obs": n_obs,
        **extra,
        "statistics": table,
    }
