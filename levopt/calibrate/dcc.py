r"""The DCC-GARCH posterior as a summary, as ``dcc_garch`` model configs and as a path model.

Draws of a ``dcc_garch`` calibration (:func:`levopt.calibrate.models.dcc_garch_model`) are arrays
per draw: ``(n,)`` per asset (``mu``, ``omega``, ``alpha``, ``beta``, ``gamma``, ``h_last``),
``(n, n)`` correlation matrices (``corr``: Q̄, targeted at the sample correlation of the draw's
standardized residuals; ``corr_last``: R_{T+1}, the correlation of the first step after the
data) and numbers (``dcc_alpha``, ``dcc_beta``, ``nu``). In summaries and tables they are labelled
``omega[i]`` and ``corr[i,j]`` (i < j), i the position of the asset in ``assets``.

Each draw is a config of the path model (:class:`levopt.paths.dcc.DccGarch`)::

    {kind: dcc_garch, mu: [..], omega: [..], alpha: [..], beta: [..], gamma: [..], dist, nu,
     h0: [..] (initial_variance: last), corr: Q̄, dcc_alpha: a, dcc_beta: b}

in per-step variance units as the ``garch`` model. Every draw is a valid config (α ≥ 0,
α + γ ≥ 0, β ≥ 0, α + β + γ/2 < 1 per asset; a, b ≥ 0, a + b < 1; Q̄ a correlation matrix) and so
is the posterior mean, since those sets are convex.

References:
    R. Engle, "Dynamic conditional correlation: a simple class of multivariate generalized
    autoregressive conditional heteroskedasticity models", J. Business & Economic Statistics 20
    (2002) 339-350.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from levopt.calibrate.diagnostics import diagnostics_block, summarize_draws
from levopt.calibrate.models import estimated_params
from levopt.calibrate.returns import Returns
from levopt.errors import ConfigError
from levopt.paths import MODELS, PathModel
from levopt.results import parameter_label

KIND = "dcc_garch"
PER_ASSET = ("mu", "omega", "alpha", "beta", "gamma")
KEPT = ("h_last", "corr_last")
"""Deterministic sites kept besides the parameters: the filtered state at the end of the data."""


def model_class() -> type[PathModel]:
    """The ``dcc_garch`` path model (:class:`levopt.paths.dcc.DccGarch`, registered by its module)."""
    if KIND not in MODELS:
        try:
            importlib.import_module("levopt.paths.dcc")
        except ModuleNotFoundError:
            raise ConfigError("model.kind", "dcc_garch needs the path model levopt.paths.dcc") from None
    return MODELS.get(KIND, "model.kind")


def labelled(name: str, x: np.ndarray, lead: int) -> dict[str, np.ndarray]:
    """``x`` (``lead`` leading draw axes, then the parameter's shape) as one array per label:
    ``name``, ``name[i]``, or ``name[i,j]`` for i < j of a correlation matrix."""
    shape = x.shape[lead:]
    if len(shape) == 2:
        return {
            parameter_label(name, (i, j)): x[(...,) + (i, j)]
            for i in range(shape[0])
            for j in range(i + 1, shape[1])
        }
    return {parameter_label(name, idx): x[(...,) + idx] for idx in np.ndindex(*shape)}


def flat_columns(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Draws ``(n_draws, ...)`` as ``(n_draws,)`` columns by label (what ``draws.parquet`` holds)."""
    out: dict[str, np.ndarray] = {}
    for name, x in draws.items():
        out |= labelled(name, np.asarray(x, np.float64), 1)
    return out


def summary(
    dist: str,
    gjr: bool,
    draws: Mapping[str, np.ndarray],
    diverging: np.ndarray,
    returns: Returns,
    settings: Mapping[str, Any],
    fixed: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``posterior.json`` of a dcc_garch calibration.

    ``{model, dist, gjr, assets, corr_target, <label>: {mean, sd, q05, q95, r_hat, ess}, derived,
    diagnostics, n_obs, data, range, step_years, gaps, alignment, fixed}``: a summary per
    parameter label (``mu[0]``, ..., ``nu``, ``dcc_alpha``, ``dcc_beta``, ``corr[0,1]``) in
    config units; ``derived`` adds per asset the persistence α + β + γ/2, the long-run and the
    end-of-data annualized volatility, and the DCC persistence a + b and the end-of-data
    correlation R_{T+1}; ``alignment`` how many timestamps of each asset's history were dropped
    to align the assets. ``draws`` are ``(chains, samples, ...)``.
    """
    out: dict[str, Any] = {
        "model": KIND,
        "dist": dist,
        "gjr": gjr,
        "assets": list(returns.assets),
        "corr_target": "sample correlation of the standardized residuals, per draw",
    }
    per_param: dict[str, Any] = {}
    for name in estimated_params(KIND, dist):
        for label, x in labelled(name, draws[name], 2).items():
            per_param[label] = summarize_draws(x)
            if name in fixed:
                per_param[label]["fixed"] = True
    out |= per_param
    persistence = draws["alpha"] + draws["beta"] + draws["gamma"] / 2
    derived: dict[str, Any] = {}
    for name, x in (
        ("persistence", persistence),
        ("vol_long_run", np.sqrt(draws["omega"] / (1 - persistence) / returns.dt)),
        ("vol_last", np.sqrt(draws["h_last"] / returns.dt)),
        ("dcc_persistence", draws["dcc_alpha"] + draws["dcc_beta"]),
        ("corr_last", draws["corr_last"]),
    ):
        derived |= {k: summarize_draws(v) for k, v in labelled(name, x, 2).items()}
    out["derived"] = derived
    out["diagnostics"] = diagnostics_block(per_param | derived, diverging, settings)
    out["n_obs"] = int(returns.values.shape[0])
    out["data"] = list(returns.sources) if returns.sources else None
    out["range"] = [returns.start, returns.end] if returns.start else None
    out["step_years"] = returns.dt
    out["gaps"] = returns.n_gaps
    out["alignment"] = {"dropped": dict(returns.dropped)} if returns.sources else None
    out["fixed"] = {k: (np.asarray(v).tolist()) for k, v in fixed.items()}
    return out


def config(
    draws: Mapping[str, np.ndarray],
    dist: str,
    draw: int | None = None,
    *,
    initial_variance: Literal["unconditional", "last"] = "unconditional",
    h0: float | list[float] | None = None,
) -> dict[str, Any]:
    """The ``dcc_garch`` model section of one posterior draw (``draw``), or of the posterior mean.

    Args:
        draws: ``(n_draws, ...)`` draws by site.
        initial_variance: ``last`` starts each asset's variance at the one filtered to the end of
            the data (``h0``); ``unconditional`` leaves ``h0`` out (the model's default).
        h0: fixed initial per-step variances (a number for every asset, or one per asset).
    """

    def pick(name: str) -> np.ndarray:
        x = np.asarray(draws[name], np.float64)
        return x.mean(axis=0) if draw is None else x[draw]

    cfg: dict[str, Any] = {"kind": KIND}
    for name in PER_ASSET:
        cfg[name] = pick(name).tolist()
    cfg["dist"] = dist
    if dist == "t":
        cfg["nu"] = float(pick("nu"))
    n = len(cfg["mu"])
    if h0 is not None:
        cfg["h0"] = np.broadcast_to(np.asarray(h0, np.float64), (n,)).tolist()
    elif initial_variance == "last":
        cfg["h0"] = pick("h_last").tolist()
    corr = pick("corr")
    corr = (corr + corr.T) / 2  # exact symmetry and unit diagonal (off by rounding only)
    np.fill_diagonal(corr, 1.0)
    cfg["corr"] = corr.tolist()
    cfg["dcc_alpha"] = float(pick("dcc_alpha"))
    cfg["dcc_beta"] = float(pick("dcc_beta"))
    return cfg


def path_model(
    draws: Mapping[str, np.ndarray],
    dist: str,
    dt: float,
    dtype: Any,
    *,
    uncertainty: Literal["mean", "posterior"] = "mean",
    draw_indices: np.ndarray | None = None,
    initial_variance: Literal["unconditional", "last"] = "unconditional",
    h0: float | list[float] | None = None,
) -> PathModel:
    """The posterior as a :class:`levopt.paths.dcc.DccGarch`: at the posterior mean, or (``posterior``)
    with a leading axis of draws on every array leaf (path p simulates draw p % n_draws), each
    draw's model built from its config (:func:`config`) by the model's own ``from_config``."""
    cls = model_class()

    def build(draw: int | None) -> PathModel:
        cfg = config(draws, dist, draw, initial_variance=initial_variance, h0=h0)
        return cls.from_config(cls.Config.model_validate(cfg), dt, dtype)

    if uncertainty == "mean":
        return build(None)
    idx = np.arange(len(draws["dcc_alpha"])) if draw_indices is None else np.asarray(draw_indices)
    models = [build(int(i)) for i in idx]
    # stacked on the host: one transfer per leaf rather than one device op over all the draws
    return jax.tree.map(lambda *leaves: jnp.asarray(np.stack([np.asarray(x) for x in leaves])), *models)


def checked_fixed(fixed: Mapping[str, Any], n_assets: int) -> dict[str, Any]:
    """Fixed ``mu`` (a number for every asset or one per asset) and ``nu`` as floats."""
    out: dict[str, Any] = {}
    for name, value in fixed.items():
        arr = np.asarray(value, np.float64)
        if name == "mu" and arr.ndim == 1:
            if arr.shape[0] != n_assets:
                raise ConfigError(
                    "model.mu", f"{arr.shape[0]} values for {n_assets} assets; give one per asset"
                )
            out[name] = arr.tolist()
        elif arr.ndim == 0:
            out[name] = float(arr)
        else:
            raise ConfigError(f"model.{name}", f"{value!r}; allowed: a number")
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"model.{name}", f"{value!r}; allowed: finite numbers")
    return out
