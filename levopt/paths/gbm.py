"""Geometric Brownian motion, single or multi-asset."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import model_validator

from levopt.errors import ConfigError
from levopt.paths._base import (
    ModelConfig,
    PathModel,
    StepOut,
    as_vector,
    correlation_cholesky,
    n_assets_of,
    nonneg,
    register_model,
)
from levopt.paths._student_t import normal


class GBMConfig(ModelConfig):
    kind: str = "gbm"
    mu: float | list[float] = 0.0
    sigma: float | list[float] | None = None
    corr: list[list[float]] | None = None
    cov: list[list[float]] | None = None

    _nonneg = nonneg("sigma")

    @model_validator(mode="after")
    def _one_scale(self):
        if (self.sigma is None) == (self.cov is None):
            raise ValueError("give exactly one of 'sigma' (with optional 'corr') or 'cov'")
        if self.cov is not None and self.corr is not None:
            raise ValueError("'corr' goes with 'sigma', not with 'cov'")
        return self


def sigma_and_corr_from_cov(cov: list[list[float]], field: str) -> tuple[np.ndarray, list]:
    c = np.asarray(cov, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.allclose(c, c.T):
        raise ConfigError(field, "must be a symmetric square matrix")
    sd = np.sqrt(np.clip(np.diag(c), 0, None))
    if np.any(sd <= 0):
        raise ConfigError(field, "diagonal (variances) must be > 0")
    return sd, (c / np.outer(sd, sd)).tolist()


@register_model("gbm")
class GBM(PathModel):
    r"""Geometric Brownian motion.

    .. math:: \log S_{t+\Delta}/S_t = (\mu - \tfrac12\sigma^2)\Delta + \sigma\sqrt{\Delta}\,L z

    with ``L`` the Cholesky factor of the correlation matrix, so that E[S_T/S_0] = exp(mu T).
    ``z`` is drawn by :func:`levopt.paths._student_t.normal` (Box-Muller on written-out threefry).

    Attributes:
        mu: ``(n,)`` annualized arithmetic drift.
        sigma: ``(n,)`` annualized volatility.
        corr_chol: ``(n, n)`` lower Cholesky factor of the correlation matrix.
    """

    Config = GBMConfig
    example: ClassVar[dict] = {"kind": "gbm", "mu": 0.1, "sigma": 0.6}
    mu: Array
    sigma: Array
    corr_chol: Array

    @classmethod
    def from_config(cls, cfg: GBMConfig, dt: float, dtype: Any, *, base_dir: Path = Path(".")) -> GBM:
        if cfg.cov is not None:
            sigma, corr = sigma_and_corr_from_cov(cfg.cov, "model.cov")
            n = len(sigma)
        else:
            n = n_assets_of(cfg.mu, cfg.sigma)
            sigma, corr = as_vector(cfg.sigma, n, "model.sigma"), cfg.corr
        return cls(
            mu=jnp.asarray(as_vector(cfg.mu, n, "model.mu"), dtype),
            sigma=jnp.asarray(sigma, dtype),
            corr_chol=jnp.asarray(correlation_cholesky(corr, n), dtype),
        )

    def noise(self, key: Array, n: int, dtype: Any) -> Array:
        return normal(key, (n, self.n_assets), dtype)

    def init(self, dtype: Any) -> tuple:
        return ()

    def step(self, state: tuple, z: Array, dt: float) -> tuple[tuple, StepOut]:
        vol = self.sigma * jnp.sqrt(dt)
        x = (self.mu - 0.5 * self.sigma**2) * dt + vol * (self.corr_chol @ z)
        return state, StepOut(x, vol, jnp.zeros((), bool))

    def current_vol(self, state: tuple, dt: float) -> Array:
        return self.sigma
