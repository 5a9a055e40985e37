"""NUTS on the calibration models, convergence diagnostics, and the posterior as path models."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from levopt.calibrate import dcc
from levopt.calibrate.diagnostics import (
    R_HAT_MAX,
    CalibrationWarning,
    check_diagnostics,
    diagnostics_block,
    summarize_draws,
)
from levopt.calibrate.models import FIXABLE, estimated_params, model_function
from levopt.calibrate.returns import Returns, check_enough_returns, multi_returns, single_returns
from levopt.errors import ConfigError
from levopt.paths import GBM, Garch, Merton, PathModel
from levopt.precision import scoped_x64

__all__ = [
    "R_HAT_MAX",
    "CalibrationResult",
    "CalibrationWarning",
    "Returns",
    "calibrate",
    "check_diagnostics",
    "nuts_scan",
    "run_nuts",
    "summarize_draws",
]

MODEL_CLASSES: dict[str, type[PathModel]] = {"gbm": GBM, "merton": Merton, "garch": Garch}
KINDS = (*MODEL_CLASSES, dcc.KIND)
"""The models :func:`calibrate` fits."""

DENSE_MASS = frozenset({dcc.KIND})
"""Models sampled with a dense mass matrix: the DCC persistence and news share, and each asset's
long-run volatility and persistence, are correlated a posteriori; a dense metric adapted in warmup
cuts NUTS's leapfrog steps per draw by about a third (7 against 10.6 on 2 assets)."""


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
        key,
        model,
        args,
        warmup=warmup,
        samples=samples,
        chains=chains,
        target_accept=target_accept,
        dense_mass=kind in DENSE_MASS,
    )


def nuts_scan(
    key: jax.Array,
    model: Any,
    args: tuple,
    *,
    warmup: int,
    samples: int,
    chains: int,
    target_accept: float,
    dense_mass: bool = False,
) -> tuple[dict[str, jax.Array], jax.Array, jax.Array]:
    """NUTS chains of a numpyro ``model(*args)`` traced as one program (call it inside ``jit``).

    Each chain starts at the median of 15 prior draws, adapts for ``warmup`` transitions (step
    size, and a diagonal or with ``dense_mass`` a full mass matrix) and keeps ``samples``; chains
    run one after another (``lax.map``). Returns the constrained draws ``(chains, samples)`` per
    site, the divergence flags and the tree sizes.
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
            dense_mass=dense_mass,
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
        jnp.asarray(np.std(returns, axis=0, ddof=1) / np.sqrt(dt), jnp.float64),
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
        kind: ``gbm``, ``merton``, ``garch`` or ``dcc_garch``.
        dist, gjr: the GARCH shock distribution and asymmetry (ignored for gbm/merton).
        draws: config key -> ``(chains * samples,)`` draws in path-model config units (a fixed
            parameter repeats its value); garch adds ``h_last``, the conditional variance of the
            first step after the data. dcc_garch draws have the parameter's shape after the draw
            axis (``(n,)`` per asset, ``(n, n)`` for ``corr``; :mod:`levopt.calibrate.dcc`) and
            add ``h_last`` ``(n,)`` and ``corr_last`` ``(n, n)``, R_{T+1}.
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

    @property
    def assets(self) -> tuple[str, ...]:
        """The assets of a multi-asset calibration, in the order of the parameters' entries."""
        return self.returns.assets

    def mean_params(self) -> dict[str, Any]:
        """Posterior means of the path-model parameters (config units; dcc_garch: lists per asset
        and the mean Q̄, as in :meth:`model_config`)."""
        if self.kind == dcc.KIND:
            cfg = dcc.config(self.draws, self.dist)
            return {k: cfg[k] for k in self.params}
        return {k: float(np.mean(self.draws[k])) for k in self.params}

    def model_config(
        self,
        draw: int | None = None,
        *,
        initial_variance: Literal["unconditional", "last"] = "unconditional",
        h0: float | list[float] | None = None,
    ) -> dict[str, Any]:
        """The model section (``kind`` and parameters) of posterior draw ``draw``, or of the
        posterior mean: a config that builds the path model (:mod:`levopt.calibrate.dcc` lists
        the dcc_garch keys). ``initial_variance`` and ``h0`` as in :meth:`to_model`."""
        if self.kind == dcc.KIND:
            return dcc.config(self.draws, self.dist, draw, initial_variance=initial_variance, h0=h0)
        if draw is None:
            params = self.mean_params()
        else:
            params = {k: float(self.draws[k][draw]) for k in self.params}
        out: dict[str, Any] = {"kind": self.kind, **params}
        if self.kind == "garch":
            out["dist"] = self.dist
            if h0 is not None:
                out["h0"] = float(h0)  # type: ignore[arg-type]
            elif initial_variance == "last":
                h_last = self.draws["h_last"]
                out["h0"] = float(np.mean(h_last) if draw is None else h_last[draw])
        return out

    def to_frame(self) -> pd.DataFrame:
        """Draws as a table: columns chain, draw and one per parameter (what ``draws.parquet`` holds;
        dcc_garch: one per label, ``omega[0]``, ``corr[0,1]``)."""
        n = self.n_draws
        per_chain = n // self.chains
        cols = {
            "chain": np.repeat(np.arange(self.chains), per_chain),
            "draw": np.tile(np.arange(per_chain), self.chains),
        }
        cols |= dcc.flat_columns(self.draws)
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
            initial_variance: garch, dcc_garch: start at each draw's unconditional variance, or at
                the variance filtered through the data (``last``: a forecast from the end of the
                data). A dcc_garch model starts its correlation recursion at Q̄ either way.
            h0: garch, dcc_garch: a fixed initial variance (per step; dcc_garch: a number or one
                per asset), overriding ``initial_variance``.
            draws: indices of the draws to use with ``posterior`` (default: all).
        """
        if uncertainty not in ("mean", "posterior"):
            raise ConfigError("model.uncertainty", f"unknown value {uncertainty!r}; allowed: mean, posterior")
        if self.kind == dcc.KIND:
            return dcc.path_model(
                self.draws,
                self.dist,
                self.returns.dt,
                dtype,
                uncertainty=uncertainty,
                draw_indices=draws,
                initial_variance=initial_variance,
                h0=h0,
            )
        cls = MODEL_CLASSES[self.kind]
        if uncertainty == "mean":
            cfg = self.model_config(initial_variance=initial_variance, h0=h0)
            return cls.from_config(cls.Config(**cfg), self.returns.dt, dtype)
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
    volatility and the annualized volatility at the end of the data. dcc_garch:
    :func:`levopt.calibrate.dcc.summary`.
    """
    if kind == dcc.KIND:
        return dcc.summary(dist, gjr, draws, diverging, returns, settings, fixed)
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
    out["diagnostics"] = diagnostics_block(per_param | derived, diverging, settings)
    out["n_obs"] = int(returns.values.shape[0])
    out["data"] = returns.source
    out["range"] = [returns.start, returns.end] if returns.start else None
    out["step_years"] = returns.dt
    out["gaps"] = returns.n_gaps
    out["fixed"] = dict(fixed)
    return out


@scoped_x64
def calibrate(
    # long because it documents every input of a calibration in one place
    data: str | Path | pd.DataFrame | pd.Series | np.ndarray | list | Returns,
    model: str = "garch",
    dist: str = "normal",
    gjr: bool = False,
    steps_per_day: float = 1,
    *,
    fixed: Mapping[str, Any] | None = None,
    warmup: int = 500,
    samples: int = 500,
    chains: int = 2,
    seed: int = 0,
    key: jax.Array | None = None,
    target_accept: float = 0.8,
    column: str | list[str] | None = None,
    timestamp_col: str | None = None,
    frequency: str | None = None,
    drop_last_partial: bool = False,
    start: str | None = None,
    end: str | None = None,
    fmt: str | None = None,
    data_field: str = "data",
) -> CalibrationResult:
    r"""Bayesian calibration of a path model to a price history or a return series, by NUTS.

    Args:
        data: a price file (any layout :func:`levopt.data.load_prices` reads), a price
            DataFrame/Series with a DatetimeIndex, or an array of per-step log-returns (taken to
            be at ``steps_per_day``). dcc_garch: several assets, as a ``(steps, assets)`` array of
            log-returns, a price file with one price column per asset, or a list of price files
            (or frames), one asset each, aligned on the timestamps they all have
            (:func:`levopt.calibrate.returns.multi_returns`; the summary's ``alignment`` says how
            many timestamps of each were dropped). Or :class:`Returns` already read (the reading
            options are then unused).
        model: ``gbm``, ``merton``, ``garch`` or ``dcc_garch``.
        dist, gjr: GARCH shocks (``normal`` or ``t``; dcc_garch: a multivariate t with one ν) and
            the GJR asymmetry term.
        steps_per_day: the simulation's step; GARCH needs returns at exactly this frequency
            (resample with ``frequency``), gbm/merton parameters are annualized so any works.
        fixed: parameters held at a value instead of estimated (``mu``; merton ``jump_mean``;
            garch and dcc_garch ``nu``; dcc_garch ``mu`` a number or one per asset).
        warmup, samples, chains: NUTS settings (chains run sequentially).
        seed, key: the PRNG key is ``key`` if given, else ``PRNGKey(seed)``.
        column, timestamp_col, frequency, drop_last_partial, start, end: how to read the file:
            price column (dcc_garch: of each file, or a list of a wide file's asset columns),
            time column, resampling ('1d', '4h'), dropping the last partial bar, and the date
            range kept (inclusive).
        fmt: dcc_garch: the files' format (csv, json, parquet; default: from the extension).
        data_field: how errors about several assets' ``data`` name it (``--data``).

    The dcc_garch posterior (:func:`levopt.calibrate.models.dcc_garch_model`) has GARCH/GJR margins
    per asset and the DCC parameters ``dcc_alpha``, ``dcc_beta``; Q̄ (``corr``) is targeted at the
    sample correlation of each draw's standardized residuals rather than estimated.

    Returns:
        :class:`CalibrationResult`; a :class:`CalibrationWarning` is issued when r̂ > 1.01 or a
        transition diverged.

    Example:
        >>> res = calibrate("btc_usd_daily.csv", model="garch", dist="t", drop_last_partial=True)
        >>> res.summary["alpha"]["mean"], res.to_model("posterior").alpha.shape
        >>> two = calibrate(["btc_usd_daily.csv", "eth_usd_daily.csv"], model="dcc_garch", drop_last_partial=True)
        >>> two.summary["dcc_alpha"]["mean"], two.summary["alignment"], two.model_config()["corr"]
    """
    fixed = _checked_fixed(model, dist, fixed)
    read = dict(
        steps_per_day=steps_per_day,
        column=column,
        frequency=frequency,
        drop_last_partial=drop_last_partial,
        start=start,
        end=end,
        timestamp_col=timestamp_col,
    )
    if isinstance(data, Returns):
        returns = data
    elif model == dcc.KIND:
        returns = multi_returns(data, fmt=fmt, field=data_field, **read)  # type: ignore[arg-type]
    else:
        returns = single_returns(data, kind=model, **read)  # type: ignore[arg-type]
    if model == dcc.KIND:
        if returns.values.ndim != 2 or returns.values.shape[1] < 2:
            raise ConfigError(data_field, "dcc_garch needs the returns of at least 2 assets")
        fixed = dcc.checked_fixed(fixed, returns.values.shape[1])
    check_enough_returns(returns)
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
    flat = {k: v.reshape((-1, *v.shape[2:])) for k, v in draws_by_chain.items()}
    return CalibrationResult(model, dist, gjr, flat, summary, returns, chains, fixed, seconds)


def _checked_fixed(model: str, dist: str, fixed: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fixed parameters as floats (dcc_garch ``mu``: also a list, checked once the number of
    assets is known), once the model, shocks and each fixed name are known to fit."""
    if model not in KINDS:
        raise ConfigError("model.kind", f"cannot calibrate {model!r}; allowed: {', '.join(KINDS)}")
    if dist not in ("normal", "t"):
        raise ConfigError("model.dist", f"unknown shock distribution {dist!r}; allowed: normal, t")
    multi = lambda k, v: model == dcc.KIND and k == "mu" and isinstance(v, list | tuple | np.ndarray)  # noqa: E731
    out = {k: (list(v) if multi(k, v) else float(v)) for k, v in (fixed or {}).items()}
    garch_like = model in ("garch", dcc.KIND)
    allowed = FIXABLE[model] if not (garch_like and dist == "normal") else ("mu",)
    for k in out:
        if k not in allowed:
            raise ConfigError(
                f"model.{k}", f"cannot be fixed when calibrating {model}; fixable: {', '.join(allowed)}"
            )
    if "nu" in out and out["nu"] <= 2:
        raise ConfigError("model.nu", f"must be > 2 (finite variance), got {out['nu']}")
    return out


def _sample_posterior(
    model: str,
    dist: str,
    gjr: bool,
    fixed: Mapping[str, Any],
    returns: Returns,
    key: jax.Array,
    *,
    warmup: int,
    samples: int,
    chains: int,
    target_accept: float,
) -> tuple[dict[str, np.ndarray], np.ndarray, float]:
    """Per-chain draws of the kept parameters (GARCH adds the last conditional variance, DCC also
    the last correlation), the divergence flags and the sampler's wall time in seconds."""
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
    extra = {"garch": ["h_last"], dcc.KIND: list(dcc.KEPT)}.get(model, [])
    keep = list(estimated_params(model, dist)) + extra
    return {k: np.asarray(raw[k], np.float64) for k in keep}, diverging, seconds
