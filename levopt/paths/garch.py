"""GARCH(1,1) and GJR-GARCH with normal or Student-t shocks (constant correlation across assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array
from pydantic import model_validator

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
from levopt.paths._student_t import normal, student_t, student_t_noise


class GarchConfig(ModelConfig):
    kind: str = "garch"
    mu: float | list[float] = 0.0
    omega: float | list[float]
    alpha: float | list[float]
    beta: float | list[float]
    gamma: float | list[float] = 0.0
    dist: Literal["normal", "t"] = "normal"
    nu: float | None = None
    h0: float | list[float] | None = None
    corr: list[list[float]] | None = None

    _nonneg = nonneg("alpha", "beta", "h0")
    _positive = nonneg("omega", strict=True)

    @model_validator(mode="after")
    def _stationary(self):
        n = n_assets_of(self.mu, self.omega, self.alpha, self.beta, self.gamma)
        a, b, g = (
            as_vector(v, n, k) for k, v in (("alpha", self.alpha), ("beta", self.beta), ("gamma", self.gamma))
        )
        if np.any(a + g < 0):
            raise ValueError(
                f"alpha + gamma must be >= 0 so the variance stays positive, got {(a + g).tolist()}"
            )
        persistence = a + b + g / 2
        if np.any(persistence >= 1):
            raise ValueError(
                f"alpha + beta + gamma/2 must be < 1 (covariance stationarity), got {persistence.tolist()}"
            )
        if self.dist == "t" and (self.nu is None or self.nu <= 2):
            raise ValueError(f"dist 't' needs nu > 2 (finite variance), got nu={self.nu}")
        if self.dist == "normal" and self.nu is not None:
            raise ValueError("nu is only used with dist: t")
        return self


@register_model("garch")
class Garch(PathModel):
    r"""GARCH(1,1) / GJR-GARCH on per-step log-returns.

    .. math::
        r_t = \mu\Delta - \tfrac12 h_t + \sqrt{h_t}\,\varepsilon_t,\qquad
        h_{t+1} = \omega + (\alpha + \gamma\,1[\varepsilon_t < 0])\,h_t\varepsilon_t^2 + \beta h_t

    ``omega``, ``alpha``, ``beta``, ``gamma`` are in per-step variance units of decimal log-returns;
    ``mu`` is annualized. With normal shocks the -h/2 term makes ``mu`` the arithmetic drift, as for
    gbm. With Student-t shocks E[exp(sqrt(h) eps)] is infinite, so ``mu`` is the drift of the
    log-price plus h/2 (the arithmetic drift of a normal model with the same variance), and
    policies that read the model's drift see that value. Shocks are
    standard normal or Student-t scaled by sqrt((nu-2)/nu) to unit variance; with several assets
    they are correlated by ``corr`` (constant conditional correlation, a common chi-square mixing
    variable for t, drawn without rejection: :mod:`levopt.paths._student_t`). The t noise does not
    depend on ``nu``, so noise drawn once keeps its pathwise derivative in ``nu``. The process
    starts at the unconditional variance omega / (1 - alpha - beta - gamma/2) unless ``h0`` is
    given.

    References: T. Bollerslev (1986); L. Glosten, R. Jagannathan, D. Runkle (1993).
    """

    Config = GarchConfig
    example: ClassVar[dict] = {
        "kind": "garch",
        "mu": 0.1,
        "omega": 2e-5,
        "alpha": 0.08,
        "beta": 0.9,
        "gamma": 0.02,
        "dist": "t",
        "nu": 5.0,
    }
    mu: Array
    omega: Array
    alpha: Array
    beta: Array
    gamma: Array
    nu: Array
    h0: Array
    corr_chol: Array
    dist: str = eqx.field(static=True, default="normal")

    @classmethod
    def from_config(cls, cfg: GarchConfig, dt: float, dtype: Any, *, base_dir: Path = Path(".")) -> Garch:
        n = n_assets_of(cfg.mu, cfg.omega, cfg.alpha, cfg.beta, cfg.gamma)
        return cls(
            **margin_arrays(cfg, n, dtype),
            corr_chol=jnp.asarray(correlation_cholesky(cfg.corr, n), dtype),
            dist=cfg.dist,
        )

    def unconditional_variance(self) -> Array:
        return self.omega / (1 - self.alpha - self.beta - self.gamma / 2)

    def noise(self, key: Array, n: int, dtype: Any) -> dict[str, Array]:
        return margin_noise(key, n, self.n_assets, self.dist, dtype)

    def standardized_shock(self, noise: dict[str, Array]) -> Array:
        """``(n_assets,)`` unit-variance shock of one path from its noise.

        Normal: L z. Student-t: L T sqrt((nu - 2) / nu) with T a standard multivariate t_nu drawn
        by Bailey's method (:mod:`levopt.paths._student_t`), L = ``corr_chol``.
        """
        if self.dist == "t":
            return self.corr_chol @ student_t(noise, self.nu, scale_df=self.nu - 2)
        return self.corr_chol @ noise["z"]

    def init(self, dtype: Any) -> Array:
        return self.h0

    def step(self, h: Array, noise: dict[str, Array], dt: float) -> tuple[Array, StepOut]:
        x, vol, h_next = margin_step(self, h, self.standardized_shock(noise), dt)
        return h_next, StepOut(x, vol, jnp.zeros((), bool))

    def current_vol(self, h: Array, dt: float) -> Array:
        return jnp.sqrt(h / dt)

    def forecast_vol(self, h: Array, dt: float, horizon: Array) -> Array:
        return variance_term_structure(self, h, dt, horizon)


def variance_term_structure(m: Any, h: Array, dt: float, horizon: Array) -> Array:
    r"""Annualized volatility over the next ``horizon`` years of GARCH margins at variance ``h``.

    With :math:`\phi = \alpha + \beta + \gamma/2` and :math:`\bar h = \omega / (1 - \phi)`,
    :math:`E_t[h_{t+k}] = \bar h + \phi^k (h_t - \bar h)` (symmetric unit-variance shocks), so the
    mean over the :math:`n = \text{horizon}/\Delta` steps ahead is
    :math:`\bar h + (h_t - \bar h)\,(1 - \phi^n) / (n (1 - \phi))`, :math:`h_t` at :math:`n \to 0`.
    """
    phi = m.alpha + m.beta + m.gamma / 2
    h_bar = m.omega / (1 - phi)
    n = jnp.maximum(horizon / dt, 1e-12)
    # (1 − φ^n) / (n (1 − φ)) written with expm1/log1p to stay accurate for small n.
    ratio = -jnp.expm1(n * jnp.log(phi)) / (n * (1 - phi))
    mean = h_bar + (h - h_bar) * ratio
    return jnp.sqrt(jnp.maximum(mean, 0.0) / dt)


def margin_arrays(cfg: GarchConfig, n: int, dtype: Any) -> dict[str, Array]:
    """The per-asset GARCH parameters of a garch-family config as ``(n,)`` arrays (``nu`` a scalar,
    ``inf`` for normal shocks; ``h0`` the unconditional variance unless given)."""
    vec = lambda name: as_vector(getattr(cfg, name), n, f"model.{name}")  # noqa: E731
    omega, alpha, beta, gamma = vec("omega"), vec("alpha"), vec("beta"), vec("gamma")
    h0 = vec("h0") if cfg.h0 is not None else omega / (1 - alpha - beta - gamma / 2)
    arr = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    return {
        "mu": arr(vec("mu")),
        "omega": arr(omega),
        "alpha": arr(alpha),
        "beta": arr(beta),
        "gamma": arr(gamma),
        "nu": arr(cfg.nu if cfg.nu is not None else np.inf),
        "h0": arr(h0),
    }


def margin_noise(key: Array, n: int, n_assets: int, dist: str, dtype: Any) -> dict[str, Array]:
    """Noise of ``n`` paths for GARCH margins: normals, or the inputs of a multivariate t shared by
    all assets (one mixing variable per path-step; they do not depend on nu, which enters later)."""
    if dist == "t":
        return student_t_noise(key, n, n_assets, dtype)
    return {"z": normal(key, (n, n_assets), dtype)}


def margin_step(m: Any, h: Array, eps: Array, dt: float) -> tuple[Array, Array, Array]:
    """One step of GARCH/GJR margins given the unit-variance shocks ``eps``: (log-return, sqrt(h),
    next h), the recursion of :class:`Garch` (``m`` holds mu, omega, alpha, beta, gamma)."""
    vol = jnp.sqrt(h)
    x = m.mu * dt - 0.5 * h + vol * eps
    h_next = m.omega + (m.alpha + m.gamma * (eps < 0)) * h * eps**2 + m.beta * h
    return x, vol, h_next
