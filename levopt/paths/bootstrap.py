"""Stationary block bootstrap of historical returns (Politis & Romano 1994)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import Field

from levopt.data.load import read_frame
from levopt.errors import ConfigError, DataError
from levopt.paths._base import ModelConfig, PathModel, StepOut, register_model


class BootstrapConfig(ModelConfig):
    kind: str = "bootstrap"
    data: str
    values: Literal["returns", "prices"] = "returns"
    returns: Literal["simple", "log"] = "simple"
    block: float = Field(5.0, ge=1, description="mean block length in steps")
    columns: list[str] | None = None


def read_table(path: Path, columns: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Numeric columns of a CSV or Parquet file (a date/time column, if any, is dropped)."""
    if not path.is_file():
        raise ConfigError("model.data", f"file not found: {path}")
    frame = read_frame(path)
    if columns is not None:
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ConfigError(
                "model.columns", f"{path.name} has no column(s) {missing}; it has {list(frame.columns)}"
            )
        frame = frame[columns]
    else:
        frame = frame.select_dtypes(include="number")
    if frame.shape[1] == 0 or frame.shape[0] < 2:
        raise DataError(f"{path}: needs at least 2 rows and one numeric column, got shape {frame.shape}")
    values = frame.to_numpy(dtype=float)
    bad = np.argwhere(~np.isfinite(values))
    if bad.size:
        row, col = bad[0]
        raise DataError(f"{path} row {row + 2}: column {frame.columns[col]!r} is not a finite number")
    return values, [str(c) for c in frame.columns]


def load_log_returns(cfg: BootstrapConfig, path: Path) -> np.ndarray:
    """``(rows, assets)`` log-returns from a returns or prices file."""
    values, names = read_table(path, cfg.columns)
    if cfg.values == "prices":
        if np.any(values <= 0):
            row = int(np.argwhere(values <= 0)[0][0])
            raise DataError(f"{path} row {row + 2}: prices must be > 0")
        return np.diff(np.log(values), axis=0)
    if cfg.returns == "log":
        return values
    if np.any(values <= -1):
        row = int(np.argwhere(values <= -1)[0][0])
        raise DataError(f"{path} row {row + 2}: a simple return must be > -1")
    return np.log1p(values)


@register_model("bootstrap")
class Bootstrap(PathModel):
    r"""Paths resampled from historical per-step returns in blocks of random (geometric) length.

    Each step continues the current block (next row, wrapping around) with probability 1 - 1/block
    and otherwise jumps to a uniformly drawn row; this keeps short-range dependence (volatility
    clustering) and cross-asset dependence of the rows. The within-step volatility used by the
    liquidation bridge is the sample standard deviation of each column.

    Reference: D. Politis, J. Romano, "The stationary bootstrap", JASA 89 (1994).
    """

    Config = BootstrapConfig
    example: ClassVar[dict] = {"kind": "bootstrap", "data": "returns.csv", "block": 5.0}
    """Resamples ``returns.csv`` (a column of simple returns) relative to the config's directory."""
    log_returns: Array  # (rows, n_assets)
    restart: Array  # probability of starting a new block
    mu: Array
    sigma: Array
    corr_chol: Array

    @classmethod
    def from_config(
        cls, cfg: BootstrapConfig, dt: float, dtype: Any, *, base_dir: Path = Path(".")
    ) -> Bootstrap:
        path = Path(cfg.data).expanduser()
        if not path.is_absolute():
            path = base_dir / path
        x = load_log_returns(cfg, path)
        sd = x.std(axis=0, ddof=1)
        # A constant column (zero variance) has no correlation: treat it as independent of the rest.
        corr = np.eye(x.shape[1])
        varying = sd > 0
        if varying.sum() > 1:
            corr[np.ix_(varying, varying)] = np.corrcoef(x[:, varying].T)
        chol = np.linalg.cholesky(corr + 1e-12 * np.eye(x.shape[1]))
        mean_growth = np.log(np.mean(np.exp(x), axis=0)) / dt
        arr = lambda a: jnp.asarray(a, dtype)  # noqa: E731
        return cls(
            log_returns=arr(x),
            restart=arr(1.0 / cfg.block),
            mu=arr(mean_growth),
            sigma=arr(sd / np.sqrt(dt)),
            corr_chol=arr(chol),
        )

    def noise(self, key: Array, n: int, dtype: Any) -> dict[str, Array]:
        k1, k2 = jax.random.split(key)
        return {
            "u": jax.random.uniform(k1, (n,), dtype),
            "row": jax.random.randint(k2, (n,), 0, self.log_returns.shape[-2]),
        }

    def init(self, dtype: Any) -> Array:
        return jnp.asarray(-1, jnp.int32)

    def step(self, row: Array, noise: dict[str, Array], dt: float) -> tuple[Array, StepOut]:
        rows = self.log_returns.shape[0]
        new_block = (row < 0) | (noise["u"] < self.restart)
        row = jnp.where(new_block, noise["row"], (row + 1) % rows).astype(jnp.int32)
        return row, StepOut(self.log_returns[row], self.sigma * jnp.sqrt(dt), jnp.zeros((), bool))

    def current_vol(self, state: Array, dt: float) -> Array:
        return self.sigma

    def data_returns(self) -> np.ndarray:
        return np.expm1(np.asarray(self.log_returns))
