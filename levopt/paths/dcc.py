"""DCC-GARCH: per-asset GARCH/GJR margins with dynamic conditional correlation (Engle, 2002)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import model_validator

from levopt.paths._base import (
    PathModel,
    StepOut,
    correlation_cholesky,
    n_assets_of,
    nonneg,
    register_model,
)
from levopt.paths._student_t import student_t
from levopt.paths.garch import GarchConfig, margin_arrays, margin_noise, margin_step, variance_term_structure


class DccGarchConfig(GarchConfig):
    """The ``garch`` keys (per-asset lists) plus the correlation dynamics.

    ``corr`` is Q̄, the long-run target of Q_t (a correlation matrix, positive definite; the
    identity when omitted); ``dcc_alpha`` (a) and ``dcc_beta`` (b) are non-negative with a + b < 1.
    """

    kind: str = "dcc_garch"
    dcc_alpha: float
    dcc_beta: float

    _dcc_nonneg = nonneg("dcc_alpha", "dcc_beta")

    @model_validator(mode="after")
    def _dcc_stationary(self):
        if self.dcc_alpha + self.dcc_beta >= 1:
            raise ValueError(
                f"dcc_alpha + dcc_beta must be < 1 (Q_t mean-reverting to corr), got "
                f"{self.dcc_alpha} + {self.dcc_beta} = {self.dcc_alpha + self.dcc_beta}"
            )
        return self


def correlation_of(q: Array) -> Array:
    """R = diag(Q)^-½ Q diag(Q)^-½ with the diagonal set to exactly 1 (so one asset is exactly 1)."""
    d = 1.0 / jnp.sqrt(jnp.diagonal(q))
    r = q * d[:, None] * d[None, :]
    eye = jnp.eye(q.shape[-1], dtype=bool)
    return jnp.where(eye, jnp.ones_like(r), r)


@register_model("dcc_garch")
class DccGarch(PathModel):
    r"""GARCH(1,1) / GJR-GARCH margins joined by a dynamic conditional correlation.

    Per asset i, as the ``garch`` model (per-step variance units, ``mu`` annualized):

    .. math::
        r_{i,t} = \mu_i\Delta - \tfrac12 h_{i,t} + \sqrt{h_{i,t}}\,\varepsilon_{i,t},\qquad
        h_{i,t+1} = \omega_i + (\alpha_i + \gamma_i 1[\varepsilon_{i,t} < 0])\,h_{i,t}\varepsilon_{i,t}^2
        + \beta_i h_{i,t}

    and the standardized shocks ε_t have the conditional correlation R_t of the DCC recursion

    .. math::
        Q_{t+1} = (1 - a - b)\,\bar Q + a\,\varepsilon_t\varepsilon_t^\top + b\,Q_t,\qquad
        R_t = \operatorname{diag}(Q_t)^{-1/2} Q_t \operatorname{diag}(Q_t)^{-1/2},\qquad Q_1 = \bar Q,

    so ε_t = chol(R_t) z_t with z_t standard normal, or a unit-variance multivariate Student-t with
    one mixing variable per step (as ``garch``). E[Q_t] = Q̄ when E[εεᵀ] = Q̄; R_t is then close to
    Q̄ on average (not exactly: the normalization is non-linear). Each step reports chol(R_t), which
    the engine's multi-asset liquidation bridge uses as that step's correlation.

    With one asset R_t = 1 and the model is ``garch`` number for number (same noise, same
    recursion); with a = b = 0, Q_t = Q̄ and it is ``garch`` with ``corr`` = Q̄.

    Config keys: those of ``garch`` plus ``dcc_alpha`` (a) and ``dcc_beta`` (b); ``corr`` is Q̄.

    References: R. Engle, "Dynamic conditional correlation", J. Business & Economic Statistics 20
    (2002) 339-350; R. Engle, K. Sheppard, NBER WP 8554 (2001).
    """

    Config = DccGarchConfig
    example: ClassVar[dict] = {
        "kind": "dcc_garch",
        "mu": [0.1, 0.15],
        "omega": [2e-5, 3e-5],
        "alpha": [0.08, 0.1],
        "beta": [0.9, 0.88],
        "gamma": [0.02, 0.0],
        "dist": "t",
        "nu": 6.0,
        "corr": [[1.0, 0.7], [0.7, 1.0]],
        "dcc_alpha": 0.05,
        "dcc_beta": 0.9,
    }
    mu: Array
    omega: Array
    alpha: Array
    beta: Array
    gamma: Array
    nu: Array
    h0: Array
    qbar: Array
    dcc_alpha: Array
    dcc_beta: Array
    corr_chol: Array
    dist: str = eqx.field(static=True, default="normal")

    @classmethod
    def from_config(
        cls, cfg: DccGarchConfig, dt: float, dtype: Any, *, base_dir: Path = Path(".")
    ) -> DccGarch:
        n = n_assets_of(cfg.mu, cfg.omega, cfg.alpha, cfg.beta, cfg.gamma)
        arr = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        return cls(
            **margin_arrays(cfg, n, dtype),
            qbar=arr(np.asarray(cfg.corr, float) if cfg.corr is not None else np.eye(n)),
            dcc_alpha=arr(cfg.dcc_alpha),
            dcc_beta=arr(cfg.dcc_beta),
            corr_chol=arr(correlation_cholesky(cfg.corr, n)),
            dist=cfg.dist,
        )

    def unconditional_variance(self) -> Array:
        return self.omega / (1 - self.alpha - self.beta - self.gamma / 2)

    def noise(self, key: Array, n: int, dtype: Any) -> dict[str, Array]:
        return margin_noise(key, n, self.n_assets, self.dist, dtype)

    def init(self, dtype: Any) -> tuple[Array, Array]:
        """(h, Q): the margins' variances and the correlation recursion's Q at t = 0 (Q̄)."""
        return self.h0, self.qbar

    def step(self, state: tuple[Array, Array], noise: dict[str, Array], dt: float) -> tuple[Any, StepOut]:
        h, q = state
        chol = jnp.linalg.cholesky(correlation_of(q))
        if self.dist == "t":
            eps = chol @ student_t(noise, self.nu, scale_df=self.nu - 2)
        else:
            eps = chol @ noise["z"]
        x, vol, h_next = margin_step(self, h, eps, dt)
        a, b = self.dcc_alpha, self.dcc_beta
        q_next = (1 - a - b) * self.qbar + a * jnp.outer(eps, eps) + b * q
        return (h_next, q_next), StepOut(x, vol, jnp.zeros((), bool), chol)

    def current_vol(self, state: tuple[Array, Array], dt: float) -> Array:
        return jnp.sqrt(state[0] / dt)

    def forecast_vol(self, state: tuple[Array, Array], dt: float, horizon: Array) -> Array:
        return variance_term_structure(self, state[0], dt, horizon)
