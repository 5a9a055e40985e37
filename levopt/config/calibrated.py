"""The schema of a calibrated model section: ``model: {kind, ..., calibrate: {...}, uncertainty}``.

Example::

    model:
      kind: garch
      dist: t
      mu: 0.0                      # optional: hold a parameter fixed instead of estimating it
      calibrate:
        data: ../data/btc_usd_daily.csv
        frequency: 1d
        warmup: 500
        samples: 500
      uncertainty: posterior       # simulate path p with posterior draw p % n_draws

Several assets (``kind: dcc_garch``): ``data`` is a list of price files, one asset each (aligned on
their common timestamps), or one file with a price column per asset::

    model:
      kind: dcc_garch
      dist: t
      calibrate:
        data: [../data/btc_usd_daily.csv, ../data/eth_usd_daily.csv]
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from levopt.config.limits import MAX_INDEX, MAX_SEED
from levopt.errors import ConfigError
from levopt.schema import StrictModel, format_validation_error

CALIBRATED_KINDS = ("gbm", "merton", "garch", "dcc_garch")
GARCH_KINDS = ("garch", "dcc_garch")
"""Kinds with GARCH margins: ``dist``, ``nu``, ``h0`` and ``calibrate.gjr`` apply."""


class CalibrateSpec(StrictModel):
    """The ``model.calibrate`` mapping: where the data are and how to sample the posterior.

    Attributes:
        data: price file (CSV, JSON or Parquet in any layout ``levopt.data.load_prices`` reads),
            relative to the config file; dcc_garch: a list of them (one asset each), or one file
            with a price column per asset.
        column, timestamp_column, format: overrides of the detected close column (dcc_garch: of
            each file, or a list of a wide file's asset columns), time column and file format.
        frequency: resample the prices to this bar length before taking returns ('1d', '4h').
        start, end: keep prices in this date range (inclusive, UTC).
        drop_last_partial: drop the file's last bar, usually still open when the file was saved.
        gjr: garch, dcc_garch: add the GJR asymmetry term gamma.
        warmup, samples, chains: NUTS settings; ``chains`` run one after another.
        target_accept: NUTS target acceptance probability (raise towards 0.95 on divergences).
        seed: seed of the calibration stream (default: the config's seed).
        initial_variance: garch, dcc_garch: simulate from each draw's unconditional variance, or
            from the variance filtered to the end of the data (``last``: a forecast from today).
    """

    data: str | list[str]
    column: str | list[str] | None = None
    timestamp_column: str | None = None
    format: Literal["csv", "parquet", "json"] | None = None
    frequency: str | None = None
    start: str | None = None
    end: str | None = None
    drop_last_partial: bool = True
    gjr: bool = False
    warmup: int = Field(500, ge=1, le=MAX_INDEX)
    samples: int = Field(500, ge=4, le=MAX_INDEX)
    chains: int = Field(2, ge=1, le=MAX_INDEX)
    target_accept: float = Field(0.8, gt=0, lt=1)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    initial_variance: Literal["unconditional", "last"] = "unconditional"


class CalibratedModelConfig(StrictModel):
    """A ``model`` section whose parameters come from a calibration (what results record)."""

    kind: Literal["gbm", "merton", "garch", "dcc_garch"]
    calibrate: CalibrateSpec
    uncertainty: Literal["mean", "posterior"] = "mean"
    dist: Literal["normal", "t"] | None = None
    mu: float | list[float] | None = None
    nu: float | None = Field(None, gt=2)
    jump_mean: float | None = None
    h0: float | list[float] | None = None

    @field_validator("h0")
    @classmethod
    def _positive(cls, v: float | list[float] | None) -> float | list[float] | None:
        if v is not None and not all(x > 0 for x in (v if isinstance(v, list) else [v])):
            raise ValueError(f"must be > 0 (a per-step variance), got {v!r}")
        return v

    @model_validator(mode="after")
    def _fits_kind(self):
        if self.kind not in GARCH_KINDS:
            for key in ("dist", "nu", "h0"):
                if getattr(self, key) is not None:
                    raise ValueError(f"'{key}' is a garch key, not allowed with kind {self.kind}")
            if self.calibrate.gjr:
                raise ValueError("calibrate.gjr is a garch option, not allowed with kind " + self.kind)
        if self.kind != "dcc_garch":
            for key, value in (("mu", self.mu), ("h0", self.h0), ("calibrate.data", self.calibrate.data)):
                if isinstance(value, list):
                    raise ValueError(f"'{key}' is a list, allowed with kind dcc_garch only (several assets)")
        if self.kind != "merton" and self.jump_mean is not None:
            raise ValueError(f"'jump_mean' is a merton key, not allowed with kind {self.kind}")
        if self.nu is not None and self.dist != "t":
            raise ValueError("nu is only used with dist: t")
        return self

    @property
    def fixed(self) -> dict[str, float | list[float]]:
        """Parameters held fixed instead of estimated (dcc_garch ``mu``: a number or one per asset)."""
        return {
            k: [float(x) for x in v] if isinstance(v, list) else float(v)
            for k in ("mu", "nu", "jump_mean")
            if (v := getattr(self, k)) is not None
        }


_ESTIMATED = {
    "gbm": ("sigma", "cov", "corr"),
    "merton": ("sigma", "lam", "jump_std", "corr"),
    "garch": ("omega", "alpha", "beta", "gamma", "corr"),
    "dcc_garch": ("omega", "alpha", "beta", "gamma", "corr", "dcc_alpha", "dcc_beta"),
}
_FIXABLE = {
    "gbm": "mu",
    "merton": "mu, jump_mean",
    "garch": "mu, nu (dist t), h0",
    "dcc_garch": "mu (a number or one per asset), nu (dist t), h0",
}


def check_model_section(model: dict[str, Any]) -> CalibratedModelConfig:
    """Validate a ``model`` mapping that has a ``calibrate`` key; errors name the field.

    Raises:
        ConfigError: e.g. ``model.calibrate.warmup: ...`` or ``model.sigma: estimated by the
            calibration; remove it (keys that can be fixed: mu)``.
    """
    kind = model.get("kind")
    if kind not in CALIBRATED_KINDS:
        raise ConfigError(
            "model.kind", f"cannot calibrate {kind!r}; allowed with calibrate: {', '.join(CALIBRATED_KINDS)}"
        )
    for key in _ESTIMATED[kind]:
        if key in model:
            single = key in ("cov", "corr") and kind != "dcc_garch"
            what = "single-asset only" if single else "estimated by the calibration"
            raise ConfigError(f"model.{key}", f"{what}; remove it (keys that can be fixed: {_FIXABLE[kind]})")
    calibrate = model.get("calibrate")
    if not isinstance(calibrate, dict):
        raise ConfigError("model.calibrate", f"must be a mapping with at least 'data', got {calibrate!r}")
    try:
        return CalibratedModelConfig.model_validate(model)
    except ValidationError as exc:
        raise format_validation_error(exc, "model") from None
