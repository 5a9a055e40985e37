"""NUTS on the calibration models, convergence diagnostics, and the posterior as path models."""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from levopt.calibrate.models import FIXABLE, estimated_params, model_function
from levopt.data.load import (
    detect_gaps,
    format_frequency,
    infer_frequency,
    load_prices,
    log_returns,
    years_of,
)
from levopt.errors import ConfigError, DataError
from levopt.paths import GBM, Garch, Merton, PathModel

R_HAT_MAX = 1.01
"""Split r̂ above this triggers a :class:`CalibrationWarning` (Vehtari et al. 2021 recommend 1.01)."""

MODEL_CLASSES: dict[str, type[PathModel]] = {"gbm": GBM, "merton": Merton, "garch": Garch}


class CalibrationWarning(UserWarning):
    """The sampler did not converge cleanly (r̂ > 1.01 or divergent transitions): more warmup or
    samples, a simpler model, or more data may help; the posterior is reported anyway."""


@dataclass(frozen=True)
class Returns:
    """Per-step log-returns with their provenance."""

    values: np.ndarray  # (T,) decimal log-returns
    dt: float  # years per return
    source: str | None = None
    start: str | None = None
    end: str | None = None
    n_gaps: int = 0


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


@functools.partial(
    jax.jit,
    static_argnames=("kind", "dist", "gjr", "fixed_names", "warmup", "samples", "chains", "target_accept"),
)
def _nuts_chains(
    key: jax.Array,
    returns: jax.Array,
    dt: jax.Array,
    scale: jax.Array,
    fixed_values: tuple[jax.Array, ...],
    *,
    kind: str,
    dist: str,
    gjr: bool,
    fixed_names: tuple[str, ...],
    warmup: int,
    samples: int,
    chains: int,
    target_accept: float,
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """All chains of one calibration as a single compiled program (chains run one after another).

    numpyro's functional NUTS (``numpyro.infer.hmc.hmc``) driven by ``lax.scan``: initialization,
    warmup adaptation and sampling are traced once per model structure and data length, so
    repeated calibrations (other data, seeds or fixed values) reuse the compiled program.
    """
    model = model_function(kind, dist, gjr)
    args = (returns, dt, scale, dict(zip(fixed_names, fixed_values, strict=True)))
    return nuts_scan(
        key, model, args, warmup=warmup, samples=samples, chains=chains, target_accept=target_accept
    )


def nuts_scan(
    key: jax.Array, model: Any, args: tuple, *, warmup: int, samples: int, chains: int, target_accept: float
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """NUTS chains of a numpyro ``model(*args)`` traced as one program (call it inside ``jit``).

    Each chain starts at the median of 15 prior draws, adapts for ``warmup`` transitions and keeps
    ``samples``; chains run one after another (``lax.map``). Returns the constrained draws
    ``(chains, samples)`` per site, the divergence flags and the tree sizes.
    """
    # numpyro is imported when a calibration runs: `import levopt` does without its ~0.5 s import.
    from numpyro.infer import init_to_median
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    def one_chain(chain_key: jax.Array):
        k_init, k_run = jax.random.split(chain_key)
        info = initialize_model(
            k_init,
            model,
            model_args=args,
            init_strategy=init_to_median(num_samples=15),
            dynamic_args=True,
            validate_grad=False,
        )
        init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
        state = init_kernel(
            info.param_info,
            num_warmup=warmup,
            target_accept_prob=target_accept,
            model_args=args,
            rng_key=k_run,
        )

        def step(s, _):
            s = sample_kernel(s, model_args=args)
            return s, (s.z, s.diverging, s.num_steps)

        _, (z, diverging, num_steps) = jax.lax.scan(step, state, None, length=warmup + samples)
        z = jax.tree.map(lambda a: a[warmup:], z)
        return jax.vmap(info.postprocess_fn(*args))(z), diverging[warmup:], num_steps[warmup:]

    return jax.lax.map(one_chain, jax.random.split(key, chains))


def run_nuts(
    kind: str,
    returns: np.ndarray,
    dt: float,
    key: jax.Array,
    *,
    dist: str = "normal",
    gjr: bool = False,
    fixed: Mapping[str, float] | None = None,
    warmup: int = 500,
    samples: int = 500,
    chains: int = 2,
    target_accept: float = 0.8,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sample the posterior of a calibration model with NUTS (Hoffman & Gelman 2014; numpyro's
    implementation with step-size and diagonal mass-matrix adaptation during warmup).

    Each chain starts from its own initial point (the median of 15 prior draws under the chain's
    key) and the chains run sequentially.

    Returns:
        ``(draws, diverging)``: every sample and deterministic site as a ``(chains, samples, ...)``
        array and the ``(chains, samples)`` divergence flags.
    """
    fixed = dict(fixed or {})
    names = tuple(sorted(fixed))
    draws, diverging, _tree_sizes = _nuts_chains(
        key,
        jnp.asarray(returns, jnp.float64),
        jnp.asarray(dt, jnp.float64),
        jnp.asarray(np.std(returns, ddof=1) / np.sqrt(dt), jnp.float64),
        tuple(jnp.asarray(fixed[k], jnp.float64) for k in names),
        kind=kind,
        dist=dist,
        gjr=gjr,
        fixed_names=names,
        warmup=int(warmup),
        samples=int(samples),
        chains=int(chains),
        target_accept=float(target_accept),
    )
    return {k: np.asarray(v) for k, v in draws.items()}, np.asarray(diverging)


@dataclass(frozen=True)
class CalibrationResult:
    """Posterior of a path model's parameters given a return series.

    Attributes:
        kind: ``gbm``, ``merton`` or ``garch``.
        dist, gjr: the GARCH shock distribution and asymmetry (ignored for gbm/merton).
        draws: config key -> ``(chains * samples,)`` draws in path-model config units (a fixed
            parameter repeats its value); garch adds ``h_last``, the conditional variance of the
            first step after the data.
        summary: :func:`calibration_summary`'s dict (what ``posterior.json`` holds).
        returns: the data the posterior conditions on.
        chains: number of chains (the draws are chain-major).
        fixed: parameters held fixed.
        seconds: wall time of the sampler, compilation included (kept out of ``summary`` so that
            the summary is a deterministic function of data, settings and seed).
    """

    kind: str
    dist: str
    gjr: bool
    draws: dict[str, np.ndarray]
    summary: dict[str, Any]
    returns: Returns
    chains: int
    fixed: dict[str, float] = field(default_factory=dict)
    seconds: float = float("nan")

    @property
    def n_draws(self) -> int:
        return int(next(iter(self.draws.values())).shape[0])

    @property
    def params(self) -> tuple[str, ...]:
        return estimated_params(self.kind, self.dist)

    def mean_params(self) -> dict[str, float]:
        """Posterior means of the path-model parameters (config units)."""
        return {k: float(np.mean(self.draws[k])) for k in self.params}

    def to_frame(self) -> pd.DataFrame:
        """Draws as a table: columns chain, draw and one per parameter (what ``draws.parquet`` holds)."""
        n = self.n_draws
        per_chain = n // self.chains
        cols = {
            "chain": np.repeat(np.arange(self.chains), per_chain),
            "draw": np.tile(np.arange(per_chain), self.chains),
        }
        cols |= {k: np.asarray(v, np.float64) for k, v in self.draws.items()}
        return pd.DataFrame(cols)

    def to_model(
        self,
        uncertainty: Literal["mean", "posterior"] = "mean",
        dtype: Any = jnp.float64,
        *,
        initial_variance: Literal["unconditional", "last"] = "unconditional",
        h0: float | None = None,
        draws: np.ndarray | None = None,
    ) -> PathModel:
        """The path model of the posterior.

        Args:
            uncertainty: ``mean``: one model at the posterior mean of each parameter (a valid
                model: the constraint sets are convex). ``posterior``: every array leaf gets a
                leading axis of posterior draws, for the engine's ``n_draws`` (path p uses
                draw p % n_draws).
            initial_variance: garch only: start at each draw's unconditional variance, or at the
                variance filtered through the data (``last``: a forecast from the end of the data).
            h0: garch only: a fixed initial variance (per step), overriding ``initial_variance``.
            draws: indices of the draws to use with ``posterior`` (default: all).
        """
        cls = MODEL_CLASSES[self.kind]
        if uncertainty == "mean":
            params = self.mean_params()
            if self.kind == "garch":
                params["dist"] = self.dist
                if h0 is not None:
                    params["h0"] = h0
                elif initial_variance == "last":
                    params["h0"] = float(np.mean(self.draws["h_last"]))
            return cls.from_config(cls.Config(kind=self.kind, **params), self.returns.dt, dtype)
        if uncertainty != "posterior":
            raise ConfigError("model.uncertainty", f"unknown value {uncertainty!r}; allowed: mean, posterior")
        idx = np.arange(self.n_draws) if draws is None else np.asarray(draws)
        d = len(idx)
        col = lambda name: jnp.asarray(np.asarray(self.draws[name], np.float64)[idx].reshape(d, 1), dtype)  # noqa: E731
        corr_chol = jnp.ones((d, 1, 1), dtype)
        if self.kind == "gbm":
            return GBM(mu=col("mu"), sigma=col("sigma"), corr_chol=corr_chol)
        if self.kind == "merton":
            return Merton(
                mu=col("mu"),
                sigma=col("sigma"),
                lam=col("lam"),
                jump_mean=col("jump_mean"),
                jump_std=col("jump_std"),
                corr_chol=corr_chol,
            )
        persistence = np.asarray(self.draws["alpha"] + self.draws["beta"] + self.draws["gamma"] / 2)[idx]
        if h0 is not None:
            start = np.full(d, h0)
        elif initial_variance == "last":
            start = np.asarray(self.draws["h_last"])[idx]
        else:
            start = np.asarray(self.draws["omega"])[idx] / (1 - persistence)
        nu = np.asarray(self.draws["nu"])[idx] if self.dist == "t" else np.full(d, np.inf)
        return Garch(
            mu=col("mu"),
            omega=col("omega"),
            alpha=col("alpha"),
            beta=col("beta"),
            gamma=col("gamma"),
            nu=jnp.asarray(nu, dtype),
            h0=jnp.asarray(start.reshape(d, 1), dtype),
            corr_chol=corr_chol,
            dist=self.dist,
        )


def _returns_from(
    data: str | Path | pd.DataFrame | pd.Series | np.ndarray,
    *,
    kind: str,
    steps_per_day: float,
    column: str | None,
    frequency: str | None,
    drop_last_partial: bool,
    start: str | None,
    end: str | None,
    timestamp_col: str | None = None,
) -> Returns:

    dt_sim = 1.0 / (365.0 * steps_per_day)
    if isinstance(data, np.ndarray | list | tuple):
        values = np.asarray(data, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(values)):
            i = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"returns: element {i} is {values[i]} (returns must be finite)")
        return Returns(values, dt_sim)
    if isinstance(data, pd.Series) and not isinstance(data.index, pd.DatetimeIndex):
        return _returns_from(
            data.to_numpy(),
            kind=kind,
            steps_per_day=steps_per_day,
            column=None,
            frequency=None,
            drop_last_partial=False,
            start=None,
            end=None,
        )
    if isinstance(data, str | Path):
        prices = load_prices(
            data, price_col=column, timestamp_col=timestamp_col, drop_last_partial=drop_last_partial
        )
        source = str(data)
    elif isinstance(data, pd.DataFrame):
        prices, source = data, data.attrs.get("source")
    else:  # a Series of prices with a DatetimeIndex
        prices, source = data.to_frame("close"), data.attrs.get("source")
    name = Path(source).name if source else "prices"
    if start is not None or end is not None:
        lo = pd.Timestamp(start, tz="UTC") if start is not None else None
        hi = pd.Timestamp(end, tz="UTC") if end is not None else None
        prices = prices.loc[lo:hi]
        if len(prices) < 3:
            raise DataError(f"{name}: only {len(prices)} rows between start {start} and end {end}")
    r = log_returns(prices, frequency)
    step = r.attrs["step"]
    dt = years_of(step)
    if kind == "garch" and abs(dt - dt_sim) > 1e-6 * dt_sim:
        sim = format_frequency(pd.Timedelta(days=1 / steps_per_day))
        raise ConfigError(
            "model.calibrate.frequency",
            f"{name} gives {format_frequency(step)} returns but the simulation steps are {sim} "
            f"(steps_per_day: {steps_per_day:g}); GARCH parameters are per step, so resample with "
            f"frequency: {sim} or set steps_per_day: {86400 / step.total_seconds():g}",
        )
    gaps = detect_gaps(
        prices.index if frequency is None else r.index, step if frequency else infer_frequency(prices.index)
    )
    return Returns(
        r.to_numpy(np.float64), dt, source, str(r.index[0] - step), str(r.index[-1]), int(len(gaps))
    )


def calibration_summary(
    kind: str,
    dist: str,
    gjr: bool,
    draws: Mapping[str, np.ndarray],
    diverging: np.ndarray,
    returns: Returns,
    settings: Mapping[str, Any],
    fixed: Mapping[str, float],
) -> dict[str, Any]:
    """``{param: {mean, sd, q05, q95, r_hat, ess}, "derived": {...}, "diagnostics": {...}, "n_obs", "data", ...}``.

    Parameters are in path-model config units: ``mu``, ``sigma`` annualized, ``lam`` jumps a year,
    jump sizes in log-price, GARCH ``omega`` in per-step decimal variance and ``alpha``, ``beta``,
    ``gamma`` per step. ``derived`` adds the GARCH persistence α + β + γ/2, the long-run annualized
    volatility and the annualized volatility at the end of the data.
    """
    params = estimated_params(kind, dist)
    out: dict[str, Any] = {"model": kind}
    if kind == "garch":
        out |= {"dist": dist, "gjr": gjr}
    per_param = {}
    for name in params:
        per_param[name] = summarize_draws(draws[name])
        if name in fixed:
            per_param[name]["fixed"] = True
    out |= per_param
    derived: dict[str, Any] = {}
    if kind == "garch":
        persistence = draws["alpha"] + draws["beta"] + draws["gamma"] / 2
        derived["persistence"] = summarize_draws(persistence)
        derived["vol_long_run"] = summarize_draws(np.sqrt(draws["omega"] / (1 - persistence) / returns.dt))
        derived["vol_last"] = summarize_draws(np.sqrt(draws["h_last"] / returns.dt))
    elif kind == "merton":
        total = draws["sigma"] ** 2 + draws["lam"] * (draws["jump_mean"] ** 2 + draws["jump_std"] ** 2)
        derived["vol_total"] = summarize_draws(np.sqrt(total))
    if derived:
        out["derived"] = derived
    all_stats = per_param | derived
    r_hats = [v["r_hat"] for v in all_stats.values() if v["r_hat"] is not None]
    ess = [v["ess"] for v in all_stats.values() if v["ess"] is not None]
    n_div = int(np.sum(diverging))
    out["diagnostics"] = {
        "max_r_hat": max(r_hats) if r_hats else None,
        "min_ess": min(ess) if ess else None,
        "divergences": n_div,
        "chains": int(settings["chains"]),
        "warmup": int(settings["warmup"]),
        "samples": int(settings["samples"]),
        "seed": settings.get("seed"),
        "problems": check_diagnostics(all_stats, n_div),
    }
    out["n_obs"] = int(returns.values.shape[0])
    out["data"] = returns.source
    out["range"] = [returns.start, returns.end] if returns.start else None
    out["step_years"] = returns.dt
    out["gaps"] = returns.n_gaps
    out["fixed"] = dict(fixed)
    return out


def calibrate(
    data: str | Path | pd.DataFrame | pd.Series | np.ndarray,
    model: str = "garch",
    dist: str = "normal",
    gjr: bool = False,
    steps_per_day: float = 1,
    *,
    fixed: Mapping[str, float] | None = None,
    warmup: int = 500,
    samples: int = 500,
    chains: int = 2,
    seed: int = 0,
    key: jax.Array | None = None,
    target_accept: float = 0.8,
    column: str | None = None,
    timestamp_col: str | None = None,
    frequency: str | None = None,
    drop_last_partial: bool = False,
    start: str | None = None,
    end: str | None = None,
) -> CalibrationResult:
    r"""Bayesian calibration of a path model to a price history or a return series, by NUTS.

    Args:
        data: a price file (any layout :func:`levopt.data.load_prices` reads), a price
            DataFrame/Series with a DatetimeIndex, or an array of per-step log-returns (taken to
            be at ``steps_per_day``).
        model: ``gbm``, ``merton`` or ``garch``.
        dist, gjr: GARCH shocks (``normal`` or ``t``) and the GJR asymmetry term.
        steps_per_day: the simulation's step; GARCH needs returns at exactly this frequency
            (resample with ``frequency``), gbm/merton parameters are annualized so any works.
        fixed: parameters held at a value instead of estimated (``mu``; merton ``jump_mean``;
            garch ``nu``).
        warmup, samples, chains: NUTS settings (chains run sequentially).
        seed, key: the PRNG key is ``key`` if given, else ``PRNGKey(seed)``.
        column, timestamp_col, frequency, drop_last_partial, start, end: how to read the file:
            price column, time column, resampling ('1d', '4h'), dropping the last partial bar,
            and the date range kept (inclusive).

    Returns:
        :class:`CalibrationResult`; a :class:`CalibrationWarning` is issued when r̂ > 1.01 or a
        transition diverged.

    Example:
        >>> res = calibrate("btc_usd_daily.csv", model="garch", dist="t", drop_last_partial=True)
        >>> res.summary["alpha"]["mean"], res.to_model("posterior").alpha.shape
    """
    fixed = _checked_fixed(model, dist, fixed)
    returns = _returns_from(
        data,
        kind=model,
        steps_per_day=steps_per_day,
        column=column,
        frequency=frequency,
        drop_last_partial=drop_last_partial,
        start=start,
        end=end,
        timestamp_col=timestamp_col,
    )
    _check_enough_returns(returns)
    seed_used = seed if key is None else None
    key = jax.random.PRNGKey(seed) if key is None else key
    draws_by_chain, diverging, seconds = _sample_posterior(
        model,
        dist,
        gjr,
        fixed,
        returns,
        key,
        warmup=warmup,
        samples=samples,
        chains=chains,
        target_accept=target_accept,
    )
    settings = {"warmup": warmup, "samples": samples, "chains": chains, "seed": seed_used}
    summary = calibration_summary(model, dist, gjr, draws_by_chain, diverging, returns, settings, fixed)
    flat = {k: v.reshape(-1) for k, v in draws_by_chain.items()}
    return CalibrationResult(model, dist, gjr, flat, summary, returns, chains, fixed, seconds)


def _checked_fixed(model: str, dist: str, fixed: Mapping[str, float] | None) -> dict[str, float]:
    """The fixed parameters as floats, once the model, shocks and each fixed name are known to fit."""
    if model not in MODEL_CLASSES:
        raise ConfigError("model.kind", f"cannot calibrate {model!r}; allowed: gbm, merton, garch")
    if dist not in ("normal", "t"):
        raise ConfigError("model.dist", f"unknown shock distribution {dist!r}; allowed: normal, t")
    out = {k: float(v) for k, v in (fixed or {}).items()}
    allowed = FIXABLE[model] if not (model == "garch" and dist == "normal") else ("mu",)
    for k in out:
        if k not in allowed:
            raise ConfigError(
                f"model.{k}", f"cannot be fixed when calibrating {model}; fixable: {', '.join(allowed)}"
            )
    if "nu" in out and out["nu"] <= 2:
        raise ConfigError("model.nu", f"must be > 2 (finite variance), got {out['nu']}")
    return out


def _check_enough_returns(returns: Returns) -> None:
    n = returns.values.shape[0]
    if n < 20:
        raise DataError(f"{returns.source or 'returns'}: {n} returns, at least 20 are needed to calibrate")
    if np.std(returns.values) == 0:
        raise DataError(f"{returns.source or 'returns'}: all returns are equal; nothing to calibrate")


def _sample_posterior(
    model: str,
    dist: str,
    gjr: bool,
    fixed: Mapping[str, float],
    returns: Returns,
    key: jax.Array,
    *,
    warmup: int,
    samples: int,
    chains: int,
    target_accept: float,
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Per-chain draws of the kept parameters (GARCH adds the last conditional variance), the
    divergence flags and the sampler's wall time in seconds."""
    t0 = time.perf_counter()
    raw, diverging = run_nuts(
        model,
        returns.values,
        returns.dt,
        key,
        dist=dist,
        gjr=gjr,
        fixed=fixed,
        warmup=warmup,
        samples=samples,
        chains=chains,
        target_accept=target_accept,
    )
    seconds = time.perf_counter() - t0
    keep = list(estimated_params(model, dist)) + (["h_last"] if model == "garch" else [])
    return {k: np.asarray(raw[k], np.float64) for k in keep}, diverging, seconds
