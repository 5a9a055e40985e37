r"""Bayesian calibration of the funding rate as a stationary AR(1) process.

Per funding interval k (rates are decimals per interval: 0.0001 is 0.01 % per 8 h),

.. math::
    f_k = \mu + \phi\,(f_{k-1} - \mu) + v\,\varepsilon_k,\qquad
    \varepsilon_k \sim N(0, 1)\ \ \text{or}\ \ t_\nu\ \text{(unit scale)},

so that ``mean`` = μ is the long-run rate, ``phi`` = φ the persistence per interval (half-life
ln ½ / ln φ intervals), ``vol`` = v the scale of the shocks (their sd for normal shocks; for
Student-t shocks the sd is v·√(ν/(ν − 2))) and ``df`` = ν. These four names, all per interval,
are the contract with the simulator, which reads posterior draws under them.

The likelihood is the conditional one given the first observation f_0 (Hamilton 1994, §5.2):

.. math::
    \log p(f_1, \dots, f_{T-1} \mid f_0) = \sum_{k=1}^{T-1} \log g\big((f_k - \mu - \phi(f_{k-1} - \mu))/v\big) - (T-1)\log v,

with g the standard normal or t_ν density; for normal shocks its maximum is the OLS regression
of f_k on (1, f_{k−1}) with v̂² = RSS/(T − 1) (Hamilton 1994, §5.2).

Priors, weakly informative and scaled to the data (f̄ and s the sample mean and sd, s_Δ the sd of
the first differences); the sampler runs on (f − f̄)/s, where every scale is of order one:

======================  =======================================================================
``mean``                ``Normal(f̄, 10 s)``
``phi``                 ``Uniform(-0.99, 0.999)`` (stationary; a unit root is excluded)
``vol``                 ``HalfNormal(2 s_Δ)``: v ≤ s_Δ·√((1 + φ)/2) ≤ s_Δ for a stationary AR(1)
``df``                  ``ν − 2 ~ Gamma(2, 0.1)`` (Juárez & Steel 2010, shifted to ν > 2 as the
                        GARCH model's ν in :mod:`levopt.calibrate.models`)
======================  =======================================================================

References:
    J. D. Hamilton, *Time Series Analysis*, Princeton University Press (1994), ch. 5 (maximum
    likelihood of ARMA processes; §5.2: the exact and conditional likelihood of a Gaussian AR(1)).
    M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler", JMLR 15 (2014).
    A. Gelman et al., *Bayesian Data Analysis*, 3rd ed. (2013), ch. 6 (posterior predictive checks).
    M. A. Juárez, M. F. J. Steel, J. Business & Economic Statistics 28 (2010) (the ν prior).
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from levopt.calibrate.fit import check_diagnostics, nuts_scan, summarize_draws
from levopt.data.load import infer_frequency, load_funding, order_rows, parse_timestamps, read_frame
from levopt.errors import ConfigError, DataError, SolverError
from levopt.io import dumps_json
from levopt.precision import scoped_x64

DISTS = ("normal", "student_t")
"""Shock distributions: ``normal`` or ``student_t`` (unit-scale t_ν times ``vol``)."""

PARAMS: dict[str, tuple[str, ...]] = {
    "normal": ("mean", "phi", "vol"),
    "student_t": ("mean", "phi", "vol", "df"),
}
"""The parameters each shock distribution estimates (all per funding interval)."""

MIN_OBS = 30
"""Fewest rates a calibration accepts."""

PHI_BOUNDS = (-0.99, 0.999)
"""Support of ``phi``: stationary, with a unit root excluded (``mean`` is undefined there)."""

MEAN_PRIOR_SDS = 10.0
VOL_PRIOR_DIFF_SDS = 2.0
DF_PRIOR = (2.0, 0.1)  # Gamma(shape, rate) of df - 2

PPC_LAGS = (1, 24)
"""Autocorrelation lags of the predictive check (24 intervals: 8 days at 8 h)."""

_TIME_NAMES = ("fundingtime", "funding_time_ms", "timestamp", "time", "datetime", "date")


@dataclass(frozen=True)
class FundingFit:
    """The posterior of the AR(1) funding model given one rate series.

    Attributes:
        draws: parameter -> ``(chains * samples,)`` draws (chain-major), per interval:
            ``mean``, ``phi``, ``vol`` (and ``df`` for ``student_t``).
        summary: parameter -> :func:`levopt.calibrate.fit.summarize_draws` (``mean``, ``sd``,
            ``q05``, ``q95``, ``r_hat``, ``ess``).
        diagnostics: ``divergences``, ``max_r_hat``, ``min_ess``, ``seconds`` (sampler wall time,
            compilation included), ``problems`` and the sampler settings.
        ppc: statistic -> ``{observed, q05, q50, q95, p_value}`` (:func:`funding_ppc`).
        interval_hours: hours between funding events.
        n_obs: number of rates (the likelihood conditions on the first and uses n_obs − 1).
        source: the file the rates came from, if any.
        dist: ``normal`` or ``student_t``.
    """

    draws: dict[str, np.ndarray]
    summary: dict[str, dict]
    diagnostics: dict
    ppc: dict
    interval_hours: float
    n_obs: int
    source: str | None
    dist: str

    @property
    def periods_per_year(self) -> float:
        """Funding events in a 365-day year (1095 at 8 h)."""
        return 365.0 * 24.0 / self.interval_hours

    def point(self) -> dict[str, float]:
        """Posterior means of the parameters, per interval (a valid parameter set: the supports
        are convex)."""
        return {k: float(np.mean(self.draws[k])) for k in PARAMS[self.dist]}

    def annualized_mean(self) -> float:
        """Posterior mean of ``mean`` times the events a year: the funding a 1x long pays a year."""
        return float(np.mean(self.draws["mean"])) * self.periods_per_year

    def derived(self) -> dict[str, dict[str, float | None]]:
        """Summaries of ``annualized_mean`` and ``stationary_sd`` (the sd of f_k, per interval:
        v/√(1 − φ²), times √(ν/(ν − 2)) for t shocks), as :func:`summarize_draws` of the draws."""
        d = self.draws
        shock_sd = d["vol"] * (np.sqrt(d["df"] / (d["df"] - 2.0)) if self.dist == "student_t" else 1.0)
        out = {
            "annualized_mean": d["mean"] * self.periods_per_year,
            "stationary_sd": shock_sd / np.sqrt(1.0 - d["phi"] ** 2),
        }
        chains = int(self.diagnostics.get("chains", 1))
        return {k: summarize_draws(v.reshape(chains, -1)) for k, v in out.items()}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for strict JSON: every number finite or ``None``; draws as lists."""
        out = {
            "model": "funding_ar1",
            "dist": self.dist,
            "interval_hours": self.interval_hours,
            "n_obs": self.n_obs,
            "source": self.source,
            "point": self.point(),
            "annualized_mean": self.annualized_mean(),
            "summary": self.summary,
            "derived": self.derived(),
            "diagnostics": self.diagnostics,
            "ppc": self.ppc,
            "draws": self.draws,
        }
        # levopt.io's writer is the one definition of strict JSON (NaN/inf -> None, numpy -> lists).
        return json.loads(dumps_json(out, indent=None))


# --- data ----------------------------------------------------------------------------------------


def read_funding(path: str | Path, column: str | None = None, *, field: str = "column") -> pd.Series:
    """A funding-rate series from a file: :func:`levopt.data.load_funding` when ``column`` is None,
    else that column of a CSV or Parquet table, sorted by its time column when there is one
    (``fundingTime``, ``timestamp``, ``time``, ``datetime``, ``date``, or ``funding_date`` +
    ``funding_time``), in file order otherwise.

    Raises:
        ConfigError: naming ``field`` when the table has no such column.
        DataError: a file that cannot be read, a rate that is not a finite number.
    """
    if column is None:
        series = load_funding(path)
        series.attrs["source"] = str(path)
        return series
    table = read_frame(path)
    name = Path(path).name
    if column not in table.columns:
        raise ConfigError(
            field, f"{name} has no column {column!r}; columns are {[str(c) for c in table.columns]}"
        )
    rows = np.arange(len(table)) + 2  # the header is line 1
    rates = pd.to_numeric(table[column].astype(str).str.strip(), errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~np.isfinite(rates))
    if bad.size:
        i = bad[0]
        raise DataError(f"{name} row {rows[i]}: {column} {table[column].iloc[i]!r} is not a finite number")
    normalized = {str(c).strip().lower(): c for c in table.columns if c != column}
    if "funding_date" in normalized and "funding_time" in normalized:
        stamps = (
            table[normalized["funding_date"]].astype(str)
            + " "
            + table[normalized["funding_time"]].astype(str)
        )
        index = parse_timestamps(stamps, rows, name, "funding_date + funding_time")
    else:
        time_col = next((normalized[n] for n in _TIME_NAMES if n in normalized), None)
        index = None if time_col is None else parse_timestamps(table[time_col], rows, name, str(time_col))
    if index is None:
        series = pd.Series(rates, name="funding_rate")
    else:
        order = order_rows(index, rows, name)
        series = pd.Series(rates[order], index=index[order].round("min"), name="funding_rate")
    series.attrs["source"] = str(path)
    return series


def _rates_from(rates: Any, interval_hours: float | None) -> tuple[np.ndarray, str | None]:
    """The rates as a finite float64 vector of at least :data:`MIN_OBS`, and their source; a series
    with a time index must be spaced ``interval_hours`` apart (when given)."""
    source = None
    if isinstance(rates, str | Path):
        rates = read_funding(rates)
    if isinstance(rates, pd.Series):
        source = rates.attrs.get("source")
        if isinstance(rates.index, pd.DatetimeIndex) and len(rates) > 1 and interval_hours is not None:
            hours = infer_frequency(rates.index).total_seconds() / 3600.0
            if abs(hours - interval_hours) > 1e-6 * interval_hours:
                raise ConfigError(
                    "interval_hours",
                    f"{interval_hours:g}, but the rates are {hours:g} h apart; allowed: the data's "
                    f"spacing (interval_hours={hours:g})",
                )
        rates = rates.to_numpy()
    try:
        f = np.asarray(rates, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(
            "rates", "not numbers; allowed: an array, a pandas Series or a funding file"
        ) from None
    if f.ndim != 1:
        raise ConfigError("rates", f"shape {f.shape}; allowed: one series (a 1-d array)")
    if f.size < MIN_OBS:
        raise ConfigError("rates", f"{f.size} rates; allowed: at least {MIN_OBS}")
    if not np.all(np.isfinite(f)):
        i = int(np.flatnonzero(~np.isfinite(f))[0])
        raise ConfigError("rates", f"element {i} is {f[i]}; allowed: finite numbers only")
    if np.ptp(f) == 0:
        raise ConfigError("rates", f"all {f.size} rates equal {f[0]:g}; allowed: a series that varies")
    return f, source


def _check_dist(dist: str) -> None:
    if dist not in DISTS:
        raise ConfigError("dist", f"unknown shock distribution {dist!r}; allowed: {', '.join(DISTS)}")


def _check_int(name: str, value: Any, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lowest:
        raise ConfigError(name, f"{value!r}; allowed: an integer >= {lowest}")
    return int(value)


# --- the model and its sampler --------------------------------------------------------------------


def _ar1_model(y: jax.Array, vol_scale: jax.Array, *, dist: str) -> None:
    """The AR(1) model of the standardized rates y = (f − f̄)/s (priors: the module docstring)."""
    import numpyro
    import numpyro.distributions as nd

    dtype = y.dtype
    one = jnp.ones((), dtype)
    mean = numpyro.sample("mean", nd.Normal(0.0 * one, MEAN_PRIOR_SDS * one))
    phi = numpyro.sample("phi", nd.Uniform(PHI_BOUNDS[0] * one, PHI_BOUNDS[1] * one))
    vol = numpyro.sample("vol", nd.HalfNormal(vol_scale))
    loc = mean + phi * (y[:-1] - mean)
    if dist == "student_t":
        shape, rate = (jnp.asarray(v, dtype) for v in DF_PRIOR)
        df = numpyro.sample(
            "df",
            nd.TransformedDistribution(nd.Gamma(shape, rate), nd.transforms.AffineTransform(2.0 * one, one)),
        )
        numpyro.sample("obs", nd.StudentT(df, loc, vol), obs=y[1:])
    else:
        numpyro.sample("obs", nd.Normal(loc, vol), obs=y[1:])


@functools.partial(jax.jit, static_argnames=("dist", "warmup", "samples", "chains", "target_accept"))
def _nuts_chains(
    key: jax.Array,
    y: jax.Array,
    vol_scale: jax.Array,
    *,
    dist: str,
    warmup: int,
    samples: int,
    chains: int,
    target_accept: float,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """All chains as one compiled program, as :func:`levopt.calibrate.fit.run_nuts` does for the
    price models: numpyro's functional NUTS driven by ``lax.scan``, chains one after another,
    each started at the median of 15 prior draws; compiled once per data length and settings."""
    model = functools.partial(_ar1_model, dist=dist)
    draws, diverging, _ = nuts_scan(
        key, model, (y, vol_scale), warmup=warmup, samples=samples, chains=chains, target_accept=target_accept
    )
    return draws, diverging


def _standardize(f: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``((f − f̄)/s, f̄, s)`` with s the sample sd."""
    center, scale = float(np.mean(f)), float(np.std(f, ddof=1))
    return (f - center) / scale, center, scale


def _to_rates(z: dict[str, np.ndarray], center: float, scale: float) -> dict[str, np.ndarray]:
    """Parameters of the standardized series back in rates per interval."""
    out = {"mean": center + scale * z["mean"], "phi": z["phi"], "vol": scale * z["vol"]}
    if "df" in z:
        out["df"] = z["df"]
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def _sample_posterior(
    key: jax.Array, f: np.ndarray, dist: str, warmup: int, samples: int, chains: int
) -> tuple[dict[str, np.ndarray], int]:
    """NUTS on the standardized rates: ``(chains, samples)`` draws per parameter in rates per
    interval, and the number of divergent transitions."""
    y, center, scale = _standardize(f)
    vol_scale = VOL_PRIOR_DIFF_SDS * float(np.std(np.diff(y), ddof=1))
    raw, diverging = _nuts_chains(
        key,
        jnp.asarray(y, jnp.float64),
        jnp.asarray(vol_scale, jnp.float64),
        dist=dist,
        warmup=warmup,
        samples=samples,
        chains=chains,
        target_accept=0.8,
    )
    by_chain = _to_rates({k: np.asarray(v) for k, v in raw.items()}, center, scale)
    return by_chain, int(np.sum(np.asarray(diverging)))


@scoped_x64
def fit_funding(
    rates: np.ndarray | pd.Series | str | Path,
    *,
    interval_hours: float = 8.0,
    dist: str = "normal",
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    seed: int = 0,
    ppc_draws: int = 200,
    source: str | None = None,
) -> FundingFit:
    r"""Posterior of the AR(1) funding model by NUTS, with a posterior predictive check.

    Args:
        rates: decimal funding rates per interval, oldest first: an array, a Series (as
            :func:`levopt.data.load_funding` returns; with a time index, its spacing must be
            ``interval_hours``) or a funding file.
        interval_hours: hours between funding events (8 on Binance); only annualization uses it.
        dist: shocks ``normal`` or ``student_t``.
        num_warmup, num_samples, num_chains: NUTS settings (chains run one after another).
        seed: ``PRNGKey(seed)`` is split into the sampler's key and the predictive check's.
        ppc_draws: posterior draws the predictive check simulates a series for (0: none).
        source: where the rates came from (default: the file, or the Series' ``attrs``).

    Returns:
        :class:`FundingFit`; a :class:`~levopt.calibrate.fit.CalibrationWarning` is issued when
        r̂ > 1.01 or a transition diverged.

    Raises:
        ConfigError: naming the argument: fewer than :data:`MIN_OBS` rates, a non-finite or
            constant series, an unknown ``dist``, ``interval_hours`` ≤ 0 or unlike the data's.

    Example:
        >>> fit = fit_funding("btcusdt_funding_8h.csv", dist="student_t")
        >>> fit.point()["phi"], fit.annualized_mean(), fit.ppc["acf_24"]["p_value"]
    """
    _check_dist(dist)
    if not (isinstance(interval_hours, int | float) and math.isfinite(interval_hours) and interval_hours > 0):
        raise ConfigError("interval_hours", f"{interval_hours!r}; allowed: a finite number of hours > 0")
    warmup = _check_int("num_warmup", num_warmup, 1)
    samples = _check_int("num_samples", num_samples, 4)
    chains = _check_int("num_chains", num_chains, 1)
    ppc_draws = _check_int("ppc_draws", ppc_draws, 0)
    seed = _check_int("seed", seed, 0)
    f, found = _rates_from(rates, float(interval_hours))
    k_nuts, k_ppc = jax.random.split(jax.random.PRNGKey(seed))
    t0 = time.perf_counter()
    by_chain, n_div = _sample_posterior(k_nuts, f, dist, warmup, samples, chains)
    seconds = time.perf_counter() - t0
    summary = {k: summarize_draws(by_chain[k]) for k in PARAMS[dist]}
    r_hats = [s["r_hat"] for s in summary.values() if s["r_hat"] is not None]
    ess = [s["ess"] for s in summary.values() if s["ess"] is not None]
    diagnostics = {
        "divergences": n_div,
        "max_r_hat": max(r_hats) if r_hats else None,
        "min_ess": min(ess) if ess else None,
        "seconds": seconds,
        "problems": check_diagnostics(summary, n_div),
        "chains": chains,
        "warmup": warmup,
        "samples": samples,
        "seed": seed,
    }
    draws = {k: v.reshape(-1) for k, v in by_chain.items()}
    ppc = funding_ppc(k_ppc, f, draws, n_draws=ppc_draws) if ppc_draws else {}
    return FundingFit(
        draws, summary, diagnostics, ppc, float(interval_hours), int(f.size), source or found, dist
    )


# --- maximum likelihood ---------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("dist",))
def _neg_loglik(theta: jax.Array, y: jax.Array, *, dist: str) -> jax.Array:
    """Mean negative conditional log-likelihood of standardized rates; ``theta`` is
    ``(mean, phi, log vol)`` and, for t shocks, ``log(df − 2)``."""
    mean, phi, log_vol = theta[0], theta[1], theta[2]
    e = (y[1:] - mean - phi * (y[:-1] - mean)) / jnp.exp(log_vol)
    if dist == "student_t":
        df = 2.0 + jnp.exp(theta[3])
        log_g = (
            jax.scipy.special.gammaln((df + 1) / 2)
            - jax.scipy.special.gammaln(df / 2)
            - 0.5 * jnp.log(df * jnp.pi)
            - (df + 1) / 2 * jnp.log1p(e**2 / df)
        )
    else:
        log_g = -0.5 * (jnp.log(2 * jnp.pi) + e**2)
    return -(jnp.mean(log_g) - log_vol)


def _minimize(y: np.ndarray, start: np.ndarray, dist: str) -> np.ndarray:
    from scipy.optimize import minimize

    yj = jnp.asarray(y, jnp.float64)
    value_and_grad = jax.value_and_grad(_neg_loglik)

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = value_and_grad(jnp.asarray(theta, jnp.float64), yj, dist=dist)
        return float(v), np.asarray(g, np.float64)

    bounds = [(None, None), PHI_BOUNDS, (None, None)] + ([(None, None)] if dist == "student_t" else [])
    res = minimize(
        fun,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000},
    )
    if not np.all(np.isfinite(res.x)) or not np.isfinite(res.fun):
        raise SolverError(f"funding MLE ({dist}): the optimizer ended at a non-finite point ({res.message})")
    return np.asarray(res.x, np.float64)


@scoped_x64
def fit_funding_mle(rates: np.ndarray | pd.Series | str | Path, *, dist: str = "normal") -> dict[str, float]:
    r"""Conditional maximum-likelihood estimate of the AR(1) funding model (scipy's L-BFGS-B with
    the likelihood's exact gradient; ``phi`` bounded to :data:`PHI_BOUNDS`).

    For normal shocks the maximum is the OLS regression of f_k on (1, f_{k−1}) (Hamilton 1994,
    §5.2): φ̂ the slope, μ̂ = intercept/(1 − φ̂), v̂² = RSS/(T − 1); the optimizer starts from the
    Yule–Walker estimate, not from that solution. Student-t starts from the normal estimate and ν = 8.

    Returns:
        ``{"mean", "phi", "vol"}`` (and ``"df"``) per interval, ready for :func:`simulate_funding`.
    """
    _check_dist(dist)
    f, _ = _rates_from(rates, None)
    y, center, scale = _standardize(f)
    r1 = float(np.sum(y[1:] * y[:-1]) / np.sum(y * y))
    phi0 = float(np.clip(r1, PHI_BOUNDS[0] + 0.01, PHI_BOUNDS[1] - 0.01))
    theta = _minimize(y, np.array([0.0, phi0, 0.5 * math.log(1.0 - phi0**2)]), "normal")
    if dist == "student_t":
        theta = _minimize(y, np.append(theta, math.log(6.0)), "student_t")
    z = {"mean": theta[0], "phi": theta[1], "vol": math.exp(theta[2])}
    if dist == "student_t":
        z["df"] = 2.0 + math.exp(theta[3])
    return {k: float(v) for k, v in _to_rates(z, center, scale).items()}


# --- simulation and the predictive check ----------------------------------------------------------


def _generator(key_or_seed: Any) -> np.random.Generator:
    """A numpy Generator from a seed, a Generator, or a JAX PRNG key (its key data seeds it)."""
    if isinstance(key_or_seed, np.random.Generator):
        return key_or_seed
    if isinstance(key_or_seed, int | np.integer) and not isinstance(key_or_seed, bool):
        if key_or_seed < 0:
            raise ConfigError("key_or_seed", f"{key_or_seed}; allowed: a seed >= 0, a Generator or a JAX key")
        return np.random.default_rng(int(key_or_seed))
    if isinstance(key_or_seed, jax.Array):
        data = (
            jax.random.key_data(key_or_seed)
            if jnp.issubdtype(key_or_seed.dtype, jax.dtypes.prng_key)
            else key_or_seed
        )
        return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())
    raise ConfigError(
        "key_or_seed", f"{type(key_or_seed).__name__}; allowed: a seed >= 0, a Generator or a JAX key"
    )


def _checked_params(params: dict) -> dict[str, np.ndarray]:
    missing = [k for k in ("mean", "phi", "vol") if k not in params]
    if missing:
        raise ConfigError(
            "params", f"missing {', '.join(missing)}; required: mean, phi, vol (df for t shocks)"
        )
    out = {k: np.asarray(params[k], np.float64) for k in ("mean", "phi", "vol", "df") if k in params}
    for k, v in out.items():
        if not np.all(np.isfinite(v)):
            raise ConfigError(f"params.{k}", "not finite; allowed: finite numbers")
    if np.any(out["vol"] < 0):
        raise ConfigError("params.vol", f"{np.min(out['vol']):g}; allowed: >= 0")
    if "df" in out and np.any(out["df"] <= 0):
        raise ConfigError("params.df", f"{np.min(out['df']):g}; allowed: > 0")
    return out


def simulate_funding(
    key_or_seed: Any, params: dict, n: int, f0: float | np.ndarray | None = None, cap: float | None = None
) -> np.ndarray:
    r"""Paths of the AR(1) funding model: f_k = μ + φ(f_{k−1} − μ) + v ε_k, k = 1..n.

    Args:
        key_or_seed: a seed, a ``numpy.random.Generator`` or a JAX PRNG key.
        params: ``mean``, ``phi``, ``vol`` (and ``df``: Student-t shocks with ``df`` degrees of
            freedom, scaled by ``vol``; normal shocks without it), per interval; scalars give one
            path, arrays of shape ``(d,)`` (posterior draws) give ``d`` paths, path i with draw i.
        n: number of funding events simulated after ``f0``.
        f0: the rate before the first simulated one (default: ``mean``); a scalar or ``(d,)``.
        cap: when given, every rate is clipped to [−cap, cap] before the next step uses it, as a
            venue's funding cap clips the rate that is paid and then observed.

    Returns:
        ``(n,)`` or ``(d, n)`` float64 rates per interval, ``f0`` excluded.
    """
    rng = _generator(key_or_seed)
    p = _checked_params(params)
    n = _check_int("n", n, 1)
    if cap is not None and not (math.isfinite(cap) and cap > 0):
        raise ConfigError("cap", f"{cap!r}; allowed: a finite number > 0")
    shape = np.broadcast_shapes(*(v.shape for v in p.values()))
    mean, phi, vol = (np.broadcast_to(p[k], shape) for k in ("mean", "phi", "vol"))
    if "df" in p:
        eps = rng.standard_t(np.broadcast_to(p["df"], shape)[..., None], size=(*shape, n))
    else:
        eps = rng.standard_normal((*shape, n))
    shocks = vol[..., None] * eps
    x = np.array(np.broadcast_to(mean if f0 is None else np.asarray(f0, np.float64), shape), np.float64)
    out = np.empty((*shape, n))
    for k in range(n):
        x = mean + phi * (x - mean) + shocks[..., k]
        if cap is not None:
            x = np.clip(x, -cap, cap)
        out[..., k] = x
    return out


def _acf(x: np.ndarray, lag: int) -> np.ndarray:
    """Sample autocorrelation at ``lag`` of each row (Box & Jenkins' estimator)."""
    d = x - x.mean(axis=-1, keepdims=True)
    return np.sum(d[..., lag:] * d[..., :-lag], axis=-1) / np.sum(d * d, axis=-1)


def ppc_statistics(x: np.ndarray) -> dict[str, np.ndarray]:
    """The predictive check's statistics of each row of ``x`` (rates per interval)."""
    out = {"mean": x.mean(axis=-1), "sd": x.std(axis=-1, ddof=1)}
    out |= {f"acf_{lag}": _acf(x, lag) for lag in PPC_LAGS}
    out["frac_positive"] = np.mean(x > 0, axis=-1)
    out["q01"] = np.quantile(x, 0.01, axis=-1)
    out["q99"] = np.quantile(x, 0.99, axis=-1)
    return out


def funding_ppc(
    key_or_seed: Any, rates: np.ndarray, draws: dict[str, np.ndarray], *, n_draws: int = 200
) -> dict[str, dict[str, float]]:
    """Posterior predictive check (Gelman et al. 2013, ch. 6): for ``n_draws`` posterior draws
    (evenly spaced through the draws) simulate a series as long as the data from the observed
    f_0, and compare :func:`ppc_statistics` with the data's.

    Returns:
        statistic -> ``{observed, q05, q50, q95, p_value}``: the predictive quantiles and
        P(simulated ≥ observed); a p-value near 0 or 1 marks a feature the model misses.
    """
    f = np.asarray(rates, np.float64)
    total = next(iter(draws.values())).shape[0]
    idx = np.round(np.linspace(0, total - 1, n_draws)).astype(int)
    sub = {k: np.asarray(v)[idx] for k, v in draws.items()}
    sims = simulate_funding(key_or_seed, sub, f.size - 1, f0=f[0])
    sims = np.concatenate([np.full((n_draws, 1), f[0]), sims], axis=1)
    observed, simulated = ppc_statistics(f), ppc_statistics(sims)
    out = {}
    for name, sim in simulated.items():
        q05, q50, q95 = np.quantile(sim, [0.05, 0.5, 0.95])
        out[name] = {
            "observed": float(observed[name]),
            "q05": float(q05),
            "q50": float(q50),
            "q95": float(q95),
            "p_value": float(np.mean(sim >= observed[name])),
        }
    return out
