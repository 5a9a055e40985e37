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
dcc_garch               each asset's GARCH margin as garch (one common ν with t shocks);
                        correlation persistence ``p = a + b ~ Beta(5, 1.5)``;
                        correlation news share ``a/p ~ Beta(2, 8)``
======================  =======================================================================

The GARCH map (P, s, u) -> (α, β, γ) is ``α = 2sPu``, ``γ = 2sP(1 − 2u)``, ``β = P(1 − s)`` and
``ω = V(1 − P)``: every draw satisfies α ≥ 0, α + γ ≥ 0 (the variance stays positive after a
negative shock), β ≥ 0 and α + β + γ/2 = P < 1 (covariance stationarity), the constraint set of
``arch``'s maximum-likelihood estimator, by construction rather than by rejection.

DCC-GARCH (Engle 2002) puts each asset's GARCH margin (the map above, per asset) under a dynamic
correlation of the standardized residuals ε_t; its map (p, s) -> (a, b) is ``a = ps``,
``b = p(1 − s)``, so every draw has a, b ≥ 0 and a + b = p < 1. Q̄ is *correlation-targeted*:
the sample correlation of the draw's own standardized residuals (:func:`sample_correlation`), not a
sampled parameter; it is recorded per draw as the deterministic site ``corr``.

References:
    T. Bollerslev, "Generalized autoregressive conditional heteroskedasticity", J. Econometrics 31
    (1986). L. Glosten, R. Jagannathan, D. Runkle, J. Finance 48 (1993). R. C. Merton, J. Financial
    Economics 3 (1976). R. Engle, "Dynamic conditional correlation: a simple class of multivariate
    generalized autoregressive conditional heteroskedasticity models", J. Business & Economic
    Statistics 20 (2002). M. A. Juárez, M. F. J. Steel, "Model-based clustering of non-Gaussian panel
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
DCC_PERSISTENCE_PRIOR = (5.0, 1.5)
DCC_SHARE_PRIOR = (2.0, 8.0)

UNROLLED_CHOLESKY_MAX = 8
"""Up to this many assets the per-step Cholesky factors are written out as elementwise operations
over all steps at once (fast to run and differentiate on a CPU); above it ``jnp.linalg``'s."""

PARAMS: dict[str, tuple[str, ...]] = {
    "gbm": ("mu", "sigma"),
    "merton": ("mu", "sigma", "lam", "jump_mean", "jump_std"),
    "garch": ("mu", "omega", "alpha", "beta", "gamma", "nu"),
    "dcc_garch": ("mu", "omega", "alpha", "beta", "gamma", "nu", "dcc_alpha", "dcc_beta", "corr"),
}
"""Path-model parameters each model estimates (config keys; ``nu`` only with ``dist='t'``; the
dcc_garch ``corr`` is Q̄, targeted at the sample correlation of each draw's residuals)."""

FIXABLE: dict[str, tuple[str, ...]] = {
    "gbm": ("mu",),
    "merton": ("mu", "jump_mean"),
    "garch": ("mu", "nu"),
    "dcc_garch": ("mu", "nu"),
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
    """Annualized drift ``mu``, one per entry of ``scale`` (a number, or one per asset)."""
    import numpyro
    import numpyro.distributions as dist

    shape = jnp.shape(scale)
    if "mu" in fixed:
        return numpyro.deterministic("mu", jnp.broadcast_to(jnp.asarray(fixed["mu"], dtype), shape))
    sharpe = numpyro.sample("sharpe", dist.Normal(jnp.zeros(shape, dtype), SHARPE_PRIOR_SD))
    return numpyro.deterministic("mu", sharpe * scale)


def _beta_prior(params: tuple[float, float], shape: tuple[int, ...], dtype: Any) -> dist.Distribution:
    import numpyro.distributions as dist

    prior = dist.Beta(*(jnp.asarray(v, dtype) for v in params))
    return prior.expand(shape) if shape else prior


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


def _garch_margins(
    scale: Array, dt: float, fixed: Mapping[str, float], dtype: Any, gjr: bool
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """GARCH parameters ``(mu, omega, alpha, beta, gamma, V)`` with their priors (module docstring),
    one per entry of ``scale``; V = ω / (1 − P) is the per-step unconditional variance."""
    import numpyro
    import numpyro.distributions as dist

    shape = jnp.shape(scale)
    mu = _drift(scale, fixed, dtype)
    vol_long = numpyro.sample("vol_long_run", dist.LogNormal(jnp.log(scale), 1.0))
    persistence = numpyro.sample("persistence", _beta_prior(PERSISTENCE_PRIOR, shape, dtype))
    share = numpyro.sample("arch_share", _beta_prior(ARCH_SHARE_PRIOR, shape, dtype))
    if gjr:
        u = numpyro.sample("asymmetry", _beta_prior(ASYMMETRY_PRIOR, shape, dtype))
    else:
        u = jnp.full(shape, 0.5, dtype)
    variance = vol_long**2 * dt
    alpha = numpyro.deterministic("alpha", 2 * share * persistence * u)
    gamma = numpyro.deterministic("gamma", 2 * share * persistence * (1 - 2 * u))
    beta = numpyro.deterministic("beta", persistence * (1 - share))
    omega = numpyro.deterministic("omega", variance * (1 - persistence))
    return mu, omega, alpha, beta, gamma, variance


def _nu(fixed: Mapping[str, float], dtype: Any) -> Array:
    """Student-t degrees of freedom, ν − 2 ~ Gamma(2, 0.1), or the fixed value."""
    import numpyro.distributions as dist

    shape, rate = (jnp.asarray(v, dtype) for v in NU_PRIOR)
    return _param(
        "nu",
        lambda: dist.TransformedDistribution(
            dist.Gamma(shape, rate), dist.transforms.AffineTransform(jnp.asarray(2.0, dtype), 1.0)
        ),
        fixed,
        dtype,
    )


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
    mu, omega, alpha, beta, gamma, variance = _garch_margins(scale, dt, fixed, dtype, gjr)
    h, h_next = garch_variances(returns, mu, omega, alpha, beta, gamma, variance, dt)
    numpyro.deterministic("h_last", h_next)
    loc = mu * dt - 0.5 * h
    if dist_name == "t":
        nu = _nu(fixed, dtype)
        likelihood = dist.StudentT(nu, loc, jnp.sqrt(h * (nu - 2) / nu))
    else:
        likelihood = dist.Normal(loc, jnp.sqrt(h))
    numpyro.sample("obs", likelihood, obs=returns)


def sample_correlation(eps: Array) -> Array:
    r"""Correlation targeting: :math:`\bar Q = D^{-1/2} S D^{-1/2}`, :math:`S = T^{-1}\sum_t
    \varepsilon_t\varepsilon_t^\top`, D = diag(S) — the sample correlation of the standardized
    residuals ``eps`` ``(T, n)`` (second moments about zero, their model mean; Engle 2002, §3)."""
    s = eps.T @ eps / eps.shape[0]
    d = 1.0 / jnp.sqrt(jnp.diagonal(s))
    return s * d[:, None] * d[None, :]


def _to_correlation(q: Array) -> Array:
    """R = diag(Q)^-1/2 Q diag(Q)^-1/2 over the last two axes."""
    d = 1.0 / jnp.sqrt(jnp.diagonal(q, axis1=-2, axis2=-1))
    return q * d[..., :, None] * d[..., None, :]


def dcc_correlations(eps: Array, a: Array, b: Array, qbar: Array) -> tuple[Array, Array]:
    r"""Conditional correlations of the DCC recursion (Engle 2002, eqs. 21–22).

    .. math::
        Q_1 = \bar Q,\qquad Q_{t+1} = (1 - a - b)\,\bar Q + a\,\varepsilon_t\varepsilon_t^\top
        + b\,Q_t,\qquad R_t = \operatorname{diag}(Q_t)^{-1/2} Q_t \operatorname{diag}(Q_t)^{-1/2}

    Args:
        eps: ``(T, n)`` standardized residuals; a, b: the DCC parameters; qbar: ``(n, n)`` Q̄.

    Returns:
        ``(R, R_next)``: ``(T, n, n)`` correlations of the observed steps and ``(n, n)`` that of
        the first step after the data.
    """
    base = (1 - a - b) * qbar

    def step(q: Array, e: Array) -> tuple[Array, Array]:
        return base + a * (e[:, None] * e[None, :]) + b * q, q

    q_next, q = jax.lax.scan(step, qbar, eps)
    return _to_correlation(q), _to_correlation(q_next)


def _logdet_and_quadratic(corr: Array, x: Array) -> tuple[Array, Array]:
    """``(log|R_t|, x_tᵀ R_t⁻¹ x_t)`` for ``corr`` ``(T, n, n)`` and ``x`` ``(T, n)``, by Cholesky
    factors L_t (R_t = L_t L_tᵀ; log|R_t| = 2 Σ log L_ii, the quadratic form |L_t⁻¹ x_t|²)."""
    n = corr.shape[-1]
    if n > UNROLLED_CHOLESKY_MAX:
        chol = jnp.linalg.cholesky(corr)
        z = jax.scipy.linalg.solve_triangular(chol, x[..., None], lower=True)[..., 0]
        diag = jnp.diagonal(chol, axis1=-2, axis2=-1)
        return 2 * jnp.sum(jnp.log(diag), axis=-1), jnp.sum(z**2, axis=-1)
    # Cholesky–Banachiewicz and forward substitution written out: every entry is one elementwise
    # operation over the T steps (one small factorization per step would be T library calls).
    chol: list[list[Any]] = [[None] * n for _ in range(n)]
    for j in range(n):
        chol[j][j] = jnp.sqrt(corr[:, j, j] - sum(chol[j][k] ** 2 for k in range(j)))
        for i in range(j + 1, n):
            chol[i][j] = (corr[:, i, j] - sum(chol[i][k] * chol[j][k] for k in range(j))) / chol[j][j]
    z: list[Any] = []
    for i in range(n):
        z.append((x[:, i] - sum(chol[i][k] * z[k] for k in range(i))) / chol[i][i])
    logdet = 2 * sum(jnp.log(chol[i][i]) for i in range(n))
    return logdet, sum(zi**2 for zi in z)


def dcc_log_density(eps: Array, corr: Array, nu: Array | None = None) -> Array:
    r"""``(T,)`` log-densities of standardized shocks ``eps`` ``(T, n)`` with correlations ``corr``.

    Normal: :math:`-\tfrac12\,(n\log 2\pi + \log|R_t| + \varepsilon_t^\top R_t^{-1}\varepsilon_t)`.
    Student-t with ``nu`` (ν > 2), the multivariate t of covariance R_t (one mixing variable
    shared by the assets, as the simulator draws it; Kotz & Nadarajah 2004, eq. 1.1, with scale
    matrix R_t (ν − 2)/ν):

    .. math::
        \log\Gamma\big(\tfrac{\nu+n}{2}\big) - \log\Gamma\big(\tfrac{\nu}{2}\big)
        - \tfrac n2\log((\nu-2)\pi) - \tfrac12\log|R_t|
        - \tfrac{\nu+n}{2}\log\Big(1 + \frac{\varepsilon_t^\top R_t^{-1}\varepsilon_t}{\nu-2}\Big)
    """
    n = eps.shape[-1]
    logdet, quad = _logdet_and_quadratic(corr, eps)
    if nu is None:
        return -0.5 * (n * jnp.log(2 * jnp.pi) + logdet + quad)
    return (
        gammaln((nu + n) / 2)
        - gammaln(nu / 2)
        - 0.5 * n * jnp.log((nu - 2) * jnp.pi)
        - 0.5 * logdet
        - 0.5 * (nu + n) * jnp.log1p(quad / (nu - 2))
    )


def dcc_log_likelihood(
    eps: Array, a: Array, b: Array, qbar: Array, nu: Array | None = None
) -> tuple[Array, Array]:
    """Log-likelihood of standardized residuals ``eps`` ``(T, n)`` under DCC(a, b) with Q̄ ``qbar``
    (the correlation part of the DCC likelihood, Engle 2002 eq. 26, with the full normalizing
    constants), and the correlation of the first step after the data."""
    corr, corr_next = dcc_correlations(eps, a, b, qbar)
    return jnp.sum(dcc_log_density(eps, corr, nu)), corr_next


def dcc_garch_model(
    returns: Array,
    dt: float,
    scale: Array,
    fixed: Mapping[str, float] | None = None,
    *,
    dist_name: str = "normal",
    gjr: bool = False,
) -> None:
    r"""DCC-GARCH (Engle 2002): GARCH/GJR margins under a dynamic conditional correlation.

    .. math::
        r_{t,i} = \mu_i\Delta - h_{t,i}/2 + \sqrt{h_{t,i}}\,\varepsilon_{t,i},\qquad
        \varepsilon_t \mid \mathcal F_{t-1} \sim N(0, R_t)\ \text{or unit-variance } t_\nu(R_t)

    with h_{t,i} each asset's GARCH/GJR recursion (:func:`garch_variances`, started at its
    unconditional variance) and R_t the DCC correlation (:func:`dcc_correlations`). Q̄ is targeted
    at the sample correlation of the draw's residuals (:func:`sample_correlation`), as in Engle's
    two-step estimator; it is not sampled. The log-likelihood is
    Σ_t [log f(ε_t; R_t) − ½ Σ_i log h_{t,i}] (the Jacobian of r -> ε).

    Args:
        returns: ``(T, n)`` per-step log-returns, n ≥ 2 assets; scale: ``(n,)`` their annualized
            sample standard deviations (prior scales).
    """
    import numpyro

    fixed = fixed or {}
    dtype = returns.dtype
    mu, omega, alpha, beta, gamma, variance = _garch_margins(scale, dt, fixed, dtype, gjr)
    h, h_next = garch_variances(returns, mu, omega, alpha, beta, gamma, variance, dt)
    numpyro.deterministic("h_last", h_next)
    eps = (returns - mu * dt + 0.5 * h) / jnp.sqrt(h)
    qbar = numpyro.deterministic("corr", sample_correlation(eps))
    shape = ()
    persistence = numpyro.sample("dcc_persistence", _beta_prior(DCC_PERSISTENCE_PRIOR, shape, dtype))
    share = numpyro.sample("dcc_share", _beta_prior(DCC_SHARE_PRIOR, shape, dtype))
    a = numpyro.deterministic("dcc_alpha", persistence * share)
    b = numpyro.deterministic("dcc_beta", persistence * (1 - share))
    nu = _nu(fixed, dtype) if dist_name == "t" else None
    loglik, corr_next = dcc_log_likelihood(eps, a, b, qbar, nu)
    numpyro.deterministic("corr_last", corr_next)
    numpyro.factor("obs", loglik - 0.5 * jnp.sum(jnp.log(h)))


def model_function(kind: str, dist_name: str = "normal", gjr: bool = False) -> Callable[..., None]:
    """The numpyro model for a path-model kind (``gbm``, ``merton``, ``garch``, ``dcc_garch``)."""
    if kind == "gbm":
        return gbm_model
    if kind == "merton":
        return merton_model
    if kind in ("garch", "dcc_garch"):
        fn = garch_model if kind == "garch" else dcc_garch_model
        return lambda returns, dt, scale, fixed=None: fn(
            returns, dt, scale, fixed, dist_name=dist_name, gjr=gjr
        )
    raise ValueError(f"no calibration model for {kind!r}; allowed: gbm, merton, garch, dcc_garch")


def estimated_params(kind: str, dist_name: str = "normal") -> tuple[str, ...]:
    """The path-model config keys a calibration of ``kind`` reports."""
    names = PARAMS[kind]
    if kind in ("garch", "dcc_garch") and dist_name != "t":
        names = tuple(n for n in names if n != "nu")
    return names
