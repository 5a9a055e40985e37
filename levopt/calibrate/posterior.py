"""From a config's calibrated ``model`` section to a path model for the engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import numpy as np

from levopt.calibrate.fit import CalibrationResult, calibrate
from levopt.calibrate.funding import fit_funding, read_funding
from levopt.config import CalibratedModelConfig, Config, check_model_section, resolve_path
from levopt.data.load import load_prices
from levopt.paths import PathModel
from levopt.problem import STREAM_CALIBRATION


def calibration_key(cfg: Config, spec: CalibratedModelConfig) -> jax.Array:
    """The calibration stream: ``fold_in(PRNGKey(seed), 2)``, seed = calibrate.seed or the config's."""
    seed = spec.calibrate.seed if spec.calibrate.seed is not None else cfg.seed
    return jax.random.fold_in(jax.random.PRNGKey(seed), STREAM_CALIBRATION)


def calibrate_config(
    cfg: Config, base_dir: str | Path = "."
) -> tuple[CalibrationResult, CalibratedModelConfig]:
    """Run the calibration a config's ``model.calibrate`` block describes (``data`` relative to
    ``base_dir``; dcc_garch: a list of files, or one file with a price column per asset)."""
    spec = check_model_section(cfg.model)
    c = spec.calibrate
    common = {
        "model": spec.kind,
        "dist": spec.dist or "normal",
        "gjr": c.gjr,
        "steps_per_day": cfg.steps_per_day,
        "fixed": spec.fixed,
        "warmup": c.warmup,
        "samples": c.samples,
        "chains": c.chains,
        "key": calibration_key(cfg, spec),
        "target_accept": c.target_accept,
        "frequency": c.frequency,
        "start": c.start,
        "end": c.end,
    }
    if spec.kind == "dcc_garch":
        # Several files (errors name ``model.calibrate.data``), read with the block's options.
        files = c.data if isinstance(c.data, list) else [c.data]
        paths = [Path(os.path.normpath(resolve_path(base_dir, f))) for f in files]
        result = calibrate(
            paths if len(paths) > 1 else paths[0],
            column=c.column,
            timestamp_col=c.timestamp_column,
            fmt=c.format,
            drop_last_partial=c.drop_last_partial,
            data_field="model.calibrate.data",
            **common,
        )
    else:
        path = Path(os.path.normpath(resolve_path(base_dir, c.data)))
        result = calibrate(_load(path, c), **common)
        result.summary["data"] = str(path)
    result.summary["diagnostics"]["seed"] = c.seed if c.seed is not None else cfg.seed
    return result, spec


def _load(path: Any, c: Any) -> Any:
    df = load_prices(
        path,
        timestamp_col=c.timestamp_column,
        price_col=c.column,
        fmt=c.format,
        drop_last_partial=c.drop_last_partial,
        option_names=("model.calibrate.timestamp_column", "model.calibrate.column"),
    )
    df.attrs["source"] = str(path)
    return df


def model_from_calibration(
    cfg: Config, dtype: Any, base_dir: str | Path = "."
) -> tuple[PathModel, int | None, dict[str, Any]]:
    """Calibrate the config's model to its data and build the path model to simulate.

    Called by :func:`levopt.build` when ``model`` has a ``calibrate`` key.

    Returns:
        ``(model, n_draws, summary)``. With ``uncertainty: posterior`` every array leaf of the
        model has a leading axis of ``n_draws`` posterior draws (path p simulates draw
        p % n_draws), so the simulation integrates over parameter uncertainty; with
        ``uncertainty: mean`` the model holds the posterior means and ``n_draws`` is None.
        ``summary`` is the calibration summary (posterior mean, sd, 5%/95% quantiles, r̂, ESS
        per parameter, diagnostics, data).
    """
    result, spec = calibrate_config(cfg, base_dir)
    model = result.to_model(
        spec.uncertainty, dtype, initial_variance=spec.calibrate.initial_variance, h0=spec.h0
    )
    summary = dict(result.summary)
    summary["uncertainty"] = spec.uncertainty
    n_draws = result.n_draws if spec.uncertainty == "posterior" else None
    return model, n_draws, summary


def funding_from_calibration(
    cfg: Config, base_dir: str | Path = "."
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Calibrate ``market.funding`` (kind ar1 or two_factor, with a ``calibrate`` block) to its
    funding file: :func:`levopt.calibrate.funding.fit_funding` with ``model`` the kind.

    Returns the posterior draws the engine simulates with (``mean``, ``phi``, ``vol`` per
    interval, and ``slow_phi``, ``slow_vol`` for two_factor; ``draws`` of them evenly spaced
    through the chains; path p uses draw p % draws) and the calibration summary. Student-t
    innovations (ar1 only) are simulated as normal ones of the same standard deviation,
    vol·sqrt(df / (df − 2)); the config refuses them with two_factor when it is loaded.
    """
    spec = cfg.market.funding
    c = spec.calibrate  # type: ignore[union-attr]
    model = "two_factor" if spec.kind == "two_factor" else "ar1"  # type: ignore[union-attr]
    path = Path(os.path.normpath(resolve_path(base_dir, c.data)))
    rates = read_funding(path, c.column, field="market.funding.calibrate.column")
    fit = fit_funding(
        rates,
        model=model,
        interval_hours=cfg.market.interval_hours() or 8.0,
        dist=c.dist,
        num_warmup=c.warmup,
        num_samples=c.samples,
        num_chains=c.chains,
        seed=cfg.seed,
        source=str(path),
    )
    n = fit.draws["mean"].size
    pick = np.linspace(0, n - 1, min(c.draws, n)).round().astype(int)
    draws = {k: np.asarray(fit.draws[k])[pick] for k in fit.point() if k != "df"}
    if "df" in fit.draws:
        df = np.asarray(fit.draws["df"])[pick]
        draws["vol"] = draws["vol"] * np.sqrt(df / (df - 2.0))
    summary = fit.to_dict()
    summary.pop("draws", None)
    return draws, summary
