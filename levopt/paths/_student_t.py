r"""Exact, rejection-free Student-t draws (one or several dimensions), differentiable in ``nu``.

Bailey's polar method (1994) draws (U, V) uniform on the unit disk, W = U² + V², and returns
T = U sqrt(nu (W^{-2/nu} - 1) / W) ~ t_nu. The disk point has an angle θ uniform on [0, 2π)
independent of W ~ U(0, 1), so U / sqrt(W) = cos θ and, with E = -log W ~ Exp(1),

.. math::
    T = \cos\theta \, \sqrt{\nu\,\operatorname{expm1}(2E/\nu)}

with no rejection at all: two uniforms, a logarithm, an exponential and a polynomial per draw,
the same work for every lane (no lane waits for a slower one). (cos θ, sin θ) times the same
radius is a bivariate t: the radius R satisfies P(R² > r) = (1 + r/nu)^{-nu/2}, i.e.
R²/2 ~ F(2, nu), which is the radial law of the spherical bivariate t.

Several dimensions. A spherical t in dimension 2k is T = R Z / |Z| with Z standard normal in R^{2k}
and R independent of Z / |Z|, where B = R² / (nu + R²) ~ Beta(k, nu/2). By the product rule
Beta(a, b) · Beta(a + b, c) = Beta(a, b + c) (Jambunathan 1954), 1 - B ~ Beta(nu/2, k) is the
product of the independent Beta(nu/2 + j, 1) = U_j^{2/(nu + 2j)}, j = 0..k-1, so

.. math::
    R^2 = \nu\,\operatorname{expm1}\Big(\sum_{j<k} \frac{2E_j}{\nu + 2j}\Big),\qquad E_j \sim
    \mathrm{Exp}(1)\ \text{i.i.d.}

(for k = 1 this is Bailey's radius). A t in dimension d takes the first d coordinates of the one
in dimension 2⌈d/2⌉: a sub-vector of Z / sqrt(chi²_nu / nu) has the same form, so the shocks stay
multivariate t with one shared mixing variable. The direction Z / |Z| needs no normals either:
pair by pair (Z_2j, Z_2j+1) = sqrt(2 G_j) (cos θ_j, sin θ_j) with G_j ~ Exp(1) and θ_j uniform
(Box-Muller read backwards), so Z / |Z| = (sqrt(G_j / sum G) (cos θ_j, sin θ_j))_j.

The random inputs (direction and exponentials) do not depend on nu; T is a smooth function of nu
given them, so ``jax.grad`` through :func:`student_t` is the exact pathwise derivative
(reparameterization: for fixed inputs T(nu) is the quantile map of the radius), and noise drawn
once keeps its derivative in nu.

Uniforms are taken on the open grid (k + 1/2) 2^-m, k = 0..2^m - 1 (m mantissa bits), so
E = -log U is never 0 (no infinite derivative of the square root) and never beyond (m + 1) log 2
(float32: 16.6): the tail of R is resolved to the probability 2^-m of one grid cell, as for any
inverse-CDF draw from m-bit uniforms.

References: R. W. Bailey, "Polar generation of random variates with the t-distribution",
Math. Comp. 62 (1994) 779-781; L. Devroye, *Non-Uniform Random Variate Generation* (1986),
ch. IX.4-5 (beta products, t) and V.4 (radially symmetric distributions); M. V. Jambunathan,
"Some properties of beta and gamma distributions", Ann. Math. Statist. 25 (1954) 401-405;
S. Kotz, S. Nadarajah, *Multivariate t Distributions and Their Applications* (2004), ch. 1.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array

# Taylor coefficients of sin(pi x) / x in powers of x^2: truncation below 7e-10 (float32, 7 terms)
# and 1.2e-18 (float64, 11 terms) for |x| <= 1/2, under half an ulp of the result.
_SIN_PI = {
    bits: tuple((-1) ** k * math.pi ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(terms))
    for bits, terms in ((32, 7), (64, 11))
}


# Rotation constants of Threefry-2x32 (Salmon et al. 2011, table 4), for rounds 4i..4i+3.
_THREEFRY_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry2x32(k1: Array, k2: Array, x1: Array, x2: Array) -> tuple[Array, Array]:
    """Threefry-2x32 with 20 rounds (Salmon, Moraes, Dror, Shaw, SC'11), written out.

    The same function as JAX's ``threefry2x32`` primitive (a test checks the words bit for bit);
    XLA's CPU lowering of the primitive runs its rounds as a loop of separate kernels, about 2.5x
    slower than this straight-line version, which fuses into one.
    """

    def rotl(x: Array, r: int) -> Array:
        return (x << jnp.uint32(r)) | (x >> jnp.uint32(32 - r))

    keys = (k1, k2, k1 ^ k2 ^ jnp.uint32(0x1BD11BDA))
    x1, x2 = x1 + k1, x2 + k2
    for i in range(5):
        for r in _THREEFRY_ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = rotl(x2, r) ^ x1
        x1, x2 = x1 + keys[(i + 1) % 3], x2 + keys[(i + 2) % 3] + jnp.uint32(i + 1)
    return x1, x2


def _random_words(key: Array, shape: tuple[int, ...], nbits: int) -> tuple[Array, Array]:
    """Two independent arrays of random words of ``nbits`` bits (32 or 64) and shape ``shape``.

    With JAX's threefry keys these are the words of ``jax.random.split(key, shape)`` (32 bits) and
    ``jax.random.bits(key, (2, *shape), uint64)`` (64 bits) in JAX's partitionable mode, the
    default: threefry blocks at counters 0, 1, ... Both words of a block are used; ``bits(...,
    uint32)`` would spend one block per 32-bit word (it returns their xor).
    """
    n_blocks = math.prod(shape) * (2 if nbits == 64 else 1)
    if n_blocks >= 2**32:
        raise ValueError(f"at most 2^32 threefry blocks per key, asked for {n_blocks}")
    if str(jax.random.key_impl(key)) != "threefry2x32":
        words = jax.random.key_data(jax.random.split(key, n_blocks))[:, :2]
        hi, lo = words[:, 0], words[:, 1]
    else:
        k = jax.random.key_data(key)
        count = jax.lax.iota(jnp.uint32, n_blocks)  # the high word of the counter is 0 (n < 2^32)
        hi, lo = _threefry2x32(k[0], k[1], jnp.zeros_like(count), count)
    if nbits == 64:
        words = ((hi.astype(jnp.uint64) << jnp.uint64(32)) | lo).reshape((2, *shape))
        return words[0], words[1]
    return hi.reshape(shape), lo.reshape(shape)


def open_uniform(key: Array, shape: tuple[int, ...], dtype: Any) -> tuple[Array, Array]:
    """Two independent arrays of Uniform(0, 1) draws on the grid (k + 1/2) 2^-m, k = 0..2^m - 1,
    m = mantissa bits of ``dtype``: never 0 or 1, and symmetric about 1/2."""
    # Without x64 a float64 request yields float32 arrays (as jax.random does): size the bit
    # manipulation for the dtype the arrays will have, not the one asked for.
    dtype = jax.dtypes.canonicalize_dtype(dtype)
    finfo = jnp.finfo(dtype)
    nbits, nmant = finfo.bits, finfo.nmant
    uint = {32: jnp.uint32, 64: jnp.uint64}[nbits]
    one = jax.lax.bitcast_convert_type(jnp.ones((), dtype), uint)
    half_ulp_below_one = jnp.asarray(1.0 - finfo.eps / 2, dtype)

    def uniform(bits: Array) -> Array:
        # 1 + k 2^-m in [1, 2) from the top m bits; subtracting 1 - 2^-(m+1) is exact (Sterbenz).
        floats = jax.lax.bitcast_convert_type((bits >> (nbits - nmant)) | one, dtype)
        return floats - half_ulp_below_one

    a, b = _random_words(key, shape, nbits)
    return uniform(a), uniform(b)


def sin_pi(x: Array) -> Array:
    """sin(pi x) for |x| <= 1/2 by its Taylor polynomial (cheaper than ``jnp.sin`` on XLA's CPU)."""
    coef = _SIN_PI[jnp.finfo(x.dtype).bits]
    x2 = x * x
    acc = jnp.full_like(x, coef[-1])
    for c in coef[-2::-1]:
        acc = acc * x2 + c
    return acc * x


def _circle_point(u: Array) -> tuple[Array, Array]:
    """(cos θ, sin θ) for θ = π (2u - 1), uniform on the circle when u is uniform on (0, 1)."""
    x = 2 * u - 1  # exact on the grid of `open_uniform`, never ±1/2
    r = jnp.round(x)  # x = r + y, |y| < 1/2: the angle π y turned by π r
    y, sign = x - r, 1 - 2 * jnp.abs(r)
    # cos(π y) = sin(π (1/2 - |y|)), with 1/2 - |y| exact: accurate to the ulp near its zeros too.
    return sign * sin_pi(0.5 - jnp.abs(y)), sign * sin_pi(y)


def normal(key: Array, shape: tuple[int, ...], dtype: Any) -> Array:
    r"""Standard normal draws of shape ``shape`` by Box-Muller on :func:`open_uniform` pairs.

    .. math:: (Z_1, Z_2) = \sqrt{-2 \log U}\,(\cos\theta, \sin\theta),\qquad \theta = \pi (2V - 1)

    is an exact pair of independent N(0, 1) draws for U, V independent uniform (Box and Muller,
    Ann. Math. Statist. 29 (1958) 610-611). Here U and V are the two words of one threefry block
    (the written-out hash, one fused kernel) on the open grid of ``m`` mantissa bits, so
    ``log U`` is finite and the radius is at most sqrt(2 (m + 1) log 2) (5.77 in float32, 8.57 in
    float64): the law is the exact normal's resolved to the probability 2^-m of one grid cell, as
    for any inverse-CDF draw from m-bit uniforms (``jax.random.normal`` in float32 stops near 5.4).
    The angle goes through :func:`_circle_point` (a polynomial, accurate to the ulp).

    Consecutive pairs fill the flattened ``shape`` (the first half of the draws are the cosines,
    the second half the sines), so the numbers depend only on ``key`` and ``shape``. Half a threefry
    block per number in float32 (one in float64), against one per number for ``jax.random.normal``.
    """
    count = math.prod(shape)
    u_radius, u_angle = open_uniform(key, (-(-count // 2),), dtype)
    radius = jnp.sqrt(-2 * jnp.log(u_radius))
    cos, sin = _circle_point(u_angle)
    return jnp.concatenate([radius * cos, radius * sin])[:count].reshape(shape)


def _uniform_columns(key: Array, n: int, count: int, dtype: Any) -> Array:
    """``(n, count)`` independent :func:`open_uniform` draws."""
    return jnp.concatenate(open_uniform(key, (n, -(-count // 2)), dtype), axis=-1)[:, :count]


def student_t_noise(key: Array, n: int, dim: int, dtype: Any) -> dict[str, Array]:
    """The random inputs of ``n`` draws of a ``dim``-dimensional spherical Student-t (any nu).

    Returns:
        ``direction``: ``(n, dim)``, the first ``dim`` coordinates of a uniform point on the unit
        sphere of R^{2k}, k = ceil(dim / 2) (for dim = 1: cos θ, θ uniform).
        ``exponential``: ``(n, k)`` i.i.d. Exp(1) draws (the radius, see :func:`student_t`).
    """
    k = -(-dim // 2)
    if dim == 1:
        u_radius, u_angle = open_uniform(key, (n, 1), dtype)
        # cos θ, θ uniform on [0, 2π), has the law of sin(pi x), x uniform on (-1/2, 1/2).
        return {"direction": sin_pi(u_angle - 0.5), "exponential": -jnp.log(u_radius)}
    # Z / |Z| for Z normal in R^{2k}, pair by pair (module docstring): angles θ_j, weights G_j / sum G.
    u = _uniform_columns(key, n, 2 * k if k == 1 else 3 * k, dtype)
    cos, sin = _circle_point(u[:, k : 2 * k])
    if k > 1:
        g = -jnp.log(u[:, 2 * k :])
        scale = jnp.sqrt(g / jnp.sum(g, axis=-1, keepdims=True))
        cos, sin = cos * scale, sin * scale
    direction = jnp.stack([cos, sin], axis=-1).reshape(n, 2 * k)[:, :dim]
    return {"direction": direction, "exponential": -jnp.log(u[:, :k])}


def student_t(noise: dict[str, Array], nu: Array, scale_df: Array | None = None) -> Array:
    r"""The Student-t vector of one draw from its :func:`student_t_noise` inputs (shape ``(dim,)``).

    .. math::
        T = d\,\sqrt{s\,\operatorname{expm1}\big(\textstyle\sum_{j<k} 2E_j / (\nu + 2j)\big)}

    with s = nu: a standard multivariate t_nu (identity scale matrix, covariance nu / (nu - 2) I);
    ``scale_df`` replaces s, e.g. nu - 2 for unit variance. Broadcasts over leading axes of ``noise``
    when ``nu`` broadcasts against them.
    """
    e = noise["exponential"]
    j = jnp.arange(e.shape[-1], dtype=e.dtype)
    nu = jnp.asarray(nu, e.dtype)
    log_inv_beta = jnp.sum(2 * e / (nu[..., None] + 2 * j), axis=-1, keepdims=True)
    s = nu if scale_df is None else jnp.asarray(scale_df, e.dtype)
    return noise["direction"] * jnp.sqrt(s[..., None] * jnp.expm1(log_inv_beta))
