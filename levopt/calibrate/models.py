r"""numpyro models of per-step log-returns, parameterized exactly as the path models simulate them.

Each model takes ``returns`` (decimal log-returns, one per simulation step of ``dt`` years) and
``scale``, the sample standard deviation of the returns annualized (``std / sqrt(dt)``), which sets
the scale of the priors, so that the same priors suit hourly and daily data of any asset.
Parameters named in ``fixed`` are held at the given value (a config's ``mu: 0.0``). Every path-model
parameter is recorded as a sample or deterministic site under its config key, in config units.

Priors (weakly informative; σ̂ = ``scale``):

======================  =======================================================================
all models              drift ``mu = σ̂ · S``, annual Sharpe ratio ``S ~ Normal(0, 1)``
gbm                     ``sigma ~ LogNormal(log σ̂, 1)`` (annualized volatility)
merton                  ``sigma ~ LogNormal(log σ̂, 1)``; ``lam ~ LogNormal(log 10, 1)`` jumps a year;
                        ``jump_std ~ LogNormal(log 3σ̂√dt, 0.75)`` (jumps are a few step s.d.);
                        ``jump_mean ~ Normal(0, σ̂√dt)``
garch                   long-run annualized vol ``sqrt(V/dt) ~ LogNormal(log σ̂, 1)``;
                        persistence ``P = α + β + γ/2 ~ Beta(5, 1.5)``;
                        ARCH share ``s = (α + γ/2)/P ~ Beta(2, 8)``;
                        GJR asymmetry ``u ~ Beta(2, 2)`` (u = 1/2 is γ = 0);
                        Student-t ``ν − 2 ~ Gamma(2, 0.1)`` (Juárez & Steel 2010, shifted to ν > 2)
======================  =======================================================================

The GARCH map (P, s, u) -> (α, β, γ) is ``α = 2sPu``, ``γ = 2sP(1 − 2u)``, ``β = P(1 − s)`` and
``ω = V(1 − P)``: every draw satisfies α ≥ 0, α + γ ≥ 0 (the variance stays positive after a
negative shock), β ≥ 0 and α + β + γ/2 = P < 1 (covariance stationarity), the constraint set of
``arch``'s maximum-likelihood estimator, by construction rather than by rejection.

References:
    T. Bollerslev, "Generalized autoregressive conditional heteroskedasticity", J. Econometrics 31
    (1986). L. Glosten, R. Jagannathan, D. Runkle, J. Finance 48 (1993). R. C. Merton, J. Financial
    Economics 3 (1976). M. A. Juárez, M. F. J. Steel, "Model-based clustering of non-Gaussian panel
    data based on skew-t distributions", J. Business & Economic Statistics 28 (2010) (the ν prior).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import gammaln, logsumexp

# numpyro is imported by the model functions, which run only when a calibration is traced:
# `import levopt` does without its ~0.5 s import.
if TYPE_CHECKING:
    import numpyro.distributions as dist

MAX_JUMPS = 10
"""Truncation of the Merton likelihood's Poisson mixture: at most this many jumps in one step.
For the prior's 99.9% quantile of ``lam`` (about 220 jumps a year) and daily steps the neglected
probability P(N > 10) is below 1e-10 (``tests/test_calibrate.py::test_merton_truncation``)."""

SHARPE_PRIOR_SD = 1.0
LAM_PRIOR_MEDIAN, LAM_PRIOR_LOG_SD = 10.0, 1.0
PERSISTENCE_PRIOR = (5.0, 1.5)
ARCH_SHARE_PRIOR = (2.0, 8.0)
ASYMMETRY_PRIOR = (2.0, 2.0)
NU_PRIOR = (2.0, 0.1)  # Gamma(shape, rate) of nu - 2

PARAMS: dict[str, tuple[str, ...]] = {
    "gbm": ("mu", "sigma"),
    "merton": ("mu", "sigma", "lam", "jump_mean", "jump_std"),
    "garch": ("mu", "omega", "alpha", "beta", "gamma", "nu"),
}
"""Path-model parameters each model estimates (config keys; ``nu`` only with ``dist='t'``)."""

FIXABLE: dict[str, tuple[str, ...]] = {
    "gbm": ("mu",),
    "merton": ("mu", "jump_mean"),
    "garch": ("mu", "nu"),
}
"""Parameters a config may hold fixed instead of estimating."""


def _param(
    name: str, prior: Callable[[], dist.Distribution], fixed: Mapping[str, float], dtype: Any
) -> Array:
    import numpyro

    if name in fixed:
        return numpyro.deterministic(name, jnp.asarray(fixed[name], dtype))
    return numpyro.sample(name, prior())


def _drift(scale: Array, fixed: Mapping[str, float], dtype: Any) -> Array:
    import numpyro
    import numpyro.distributions as dist

    if "mu" in fixed:
        return numpyro.deterministic("mu", jnp.asarray(fixed["mu"], dtype))
    sharpe = numpyro.sample("sharpe", dist.Normal(jnp.zeros((), dtype), SHARPE_PRIOR_SD))
    return numpyro.deterministic("mu", sharpe * scale)


def gbm_model(returns: Array, dt: float, scale: Array, fixed: Mapping[str, float] | None = None) -> None:
    r"""GBM: :math:`r_t \sim N((\mu - \sigma^2/2)\Delta, \sigma^2\Delta)` i.i.d."""
    import numpyro
    import numpyro.distributions as dist

    fixed = fixed or {}
    dtype = returns.dtype
    mu = _drift(scale, fixed, dtype)
    sigma = numpyro.sample("sigma", dist.LogNormal(jnp.log(scale), 1.0))
    numpyro.sample("obs", dist.Normal((mu - 0.5 * sigma**2) * dt, sigma * jnp.sqrt(dt)), obs=returns)


def merton_log_density(
    r: Array,
    mu: Array,
    sigma: Array,
    lam: Array,
    jump_mean: Array,
    jump_std: Array,
    dt: float,
    max_jumps: int = MAX_JUMPS,
) -> Array:
    r"""Log-density of one step's log-return under the drift-compensated Merton model.

    .. math::
        p(r) = \sum_{n=0}^{K} \frac{e^{-\lambda\Delta}(\lambda\Delta)^n}{n!}
               \,\phi\!\left(r;\ (\mu - \sigma^2/2 - \lambda k)\Delta + n m,\ \sigma^2\Delta + n s^2\right)

    with k = exp(m + s²/2) − 1 and the Poisson series truncated at K = ``max_jumps``.
    """
    k = jnp.expm1(jump_mean + 0.5 * jump_std**2)
    n = jnp.arange(max_jumps + 1, dtype=r.dtype)
    rate = lam * dt
    log_pois = n * jnp.log(rate) - rate - gammaln(n + 1.0)
    loc = (mu - 0.5 * sigma**2 - lam * k) * dt + n * jump_mean
    var = sigma**2 * dt + n * jump_std**2
    log_norm = -0.5 * (jnp.log(2 * jnp.pi * var) + (r[..., None] - loc) ** 2 / var)
    return logsumexp(log_pois + log_norm, axis=-1)


def merton_model(returns: Array, dt: float, scale: Array, fixed: Mapping[str, float] | None = None) -> None:
    """Merton jump-diffusion with the Poisson-mixture likelihood of :func:`merton_log_density`."""
    import numpyro
    import numpyro.distributions as dist

    fixed = fixed or {}
    dtype = returns.dtype
    step_sd = scale * jnp.sqrt(dt)
    mu = _drift(scale, fixed, dtype)
    sigma = numpyro.sample("sigma", dist.LogNormal(jnp.log(scale), 1.0))
    lam = numpyro.sample(
        "lam", dist.LogNormal(jnp.log(jnp.asarray(LAM_PRIOR_MEDIAN, dtype)), LAM_PRIOR_LOG_SD)
    )
    jump_mean = _param("jump_mean", lambda: dist.Normal(jnp.zeros((), dtype), step_sd), fixed, dtype)
    jump_std = numpyro.sample("jump_std", dist.LogNormal(jnp.log(3.0 * step_sd), 0.75))
    numpyro.factor("obs", jnp.sum(merton_log_density(returns, mu, sigma, lam, jump_mean, jump_std, dt)))


def garch_variances(
    returns: Array, mu: Array, omega: Array, alpha: Array, beta: Array, gamma: Array, h1: Array, dt: float
) -> tuple[Array, Array]:
    r"""Conditional variances of the returns under the simulator's GARCH/GJR recursion.

    .. math:: e_t = r_t - \mu\Delta + h_t/2,\qquad
              h_{t+1} = \omega + (\alpha + \gamma\,1[e_t < 0])\,e_t^2 + \beta h_t

    Returns:
        ``(h, h_next)``: ``(T,)`` variances of the observed returns and the variance of the first
        step after the data (the filtered state a forecast starts from).
    """

    def step(h: Array, r: Array) -> tuple[Array, Array]:
        e = r - mu * dt + 0.5 * h
        h_next = omega + (alpha + gamma * (e < 0)) * e**2 + beta * h
        return h_next, h

    h_next, h = jax.lax.scan(step, h1, returns)
    return h, h_next


def garch_model(
    returns: Array,
    dt: float,
    scale: Array,
    fixed: Mapping[str, float] | None = None,
    *,
    dist_name: str = "normal",
    gjr: bool = False,
) -> None:
    r"""GARCH(1,1) or GJR-GARCH with normal or unit-variance Student-t shocks.

    .. math:: r_t = \mu\Delta - h_t/2 + \sqrt{h_t}\,\varepsilon_t

    The recursion starts at the unconditional variance, h_1 = ω / (1 − P), as the simulator does.
    """
    import numpyro
    import numpyro.distributions as dist

    fixed = fixed or {}
    dtype = returns.dtype
    mu = _drift(scale, fixed, dtype)
    vol_long = numpyro.sample("vol_long_run", dist.LogNormal(jnp.log(scale), 1.0))
    persistence = numpyro.sample(
        "persistence", dist.Beta(*(jnp.asarray(v, dtype) for v in PERSISTENCE_PRIOR))
    )
    share = numpyro.sample("arch_share", dist.Beta(*(jnp.asarray(v, dtype) for v in ARCH_SHARE_PRIOR)))
    if gjr:
        u = numpyro.sample("asymmetry", dist.Beta(*(jnp.asarray(v, dtype) for v in ASYMMETRY_PRIOR)))
    else:
        u = jnp.asarray(0.5, dtype)
    variance = vol_long**2 * dt
    alpha = numpyro.deterministic("alpha", 2 * share * persistence * u)
    gamma = numpyro.deterministic("gamma", 2 * share * persistence * (1 - 2 * u))
    beta = numpyro.deterministic("beta", persistence * (1 - share))
    omega = numpyro.deterministic("omega", variance * (1 - persistence))
    h, h_next = garch_variances(returns, mu, omega, alpha, beta, gamma, variance, dt)
    numpyro.deterministic("h_last", h_next)
    loc = mu * dt - 0.5 * h
    if dist_name == "t":
        shape, rate = (jnp.asarray(v, dtype) for v in NU_PRIOR)
        nu = _param(
            "nu",
            lambda: dist.TransformedDistribution(
                dist.Gamma(shape, rate), dist.transforms.AffineTransform(jnp.asarray(2.0, dtype), 1.0)
            ),
            fixed,
            dtype,
        )
        likelihood = dist.StudentT(nu, loc, jnp.sqrt(h * (nu - 2) / nu))
    else:
        likelihood = dist.Normal(loc, jnp.sqrt(h))
    numpyro.sample("obs", likelihood, obs=returns)


def model_function(kind: str, dist_name: str = "normal", gjr: bool = False) -> Callable[..., None]:
    """The numpyro model for a path-model kind (``gbm``, ``merton``, ``garch``)."""
    if kind == "gbm":
        return gbm_model
    if kind == "merton":
        return merton_model
    if kind == "garch":
        return lambda returns, dt, scale, fixed=None: garch_model(
            returns, dt, scale, fixed, dist_name=dist_name, gjr=gjr
        )
    raise ValueError(f"no calibration model for {kind!r}; allowed: gbm, merton, garch")


def estimated_params(kind: str, dist_name: str = "normal") -> tuple[str, ...]:
    """The path-model config keys a calibration of ``kind`` reports."""
    names = PARAMS[kind]
    if kind == "garch" and dist_name != "t":
        names = tuple(n for n in names if n != "nu")
    return names
