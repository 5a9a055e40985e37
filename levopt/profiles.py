"""Summaries of a policy for plots: equity and leverage quantiles over time, growth against leverage.

Both are Monte Carlo estimates and carry their standard errors: the median's order-statistic
interval for the quantiles over time, per-scale and paired standard errors for the leverage profile.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.engine import BLOCK, Outcome, simulate_chunk
from levopt.objectives import STDERR_BATCHES, Context, Metric, get_metric
from levopt.policies import Policy
from levopt.precision import scoped_x64
from levopt.problem import Problem

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

PROFILE_METRICS = ("log_growth", "liquidation_probability", "cvar", "mean_return")
PROFILE_SCALES = tuple(np.linspace(0.25, 2.0, 8).tolist())
PROFILE_MIN_PATHS = 16_384
PROFILE_MAX_PATHS = 131_072
RESOLUTION = 0.5
"""The leverage profile doubles its paths (from max(paths, PROFILE_MIN_PATHS), up to
PROFILE_MAX_PATHS) until the typical (median) step of the growth curve between neighbouring scales
is at least 1 / RESOLUTION = 2 of its standard errors, paired on the common paths."""


@scoped_x64
def trajectory_quantiles(
    problem: Problem, policy: Policy, key: jax.Array, paths: int = 4096
) -> dict[str, Any]:
    """Quantiles over paths of equity W_t/W_0 and gross leverage at every step (discrete monitoring).

    The median comes with a distribution-free interval: the sample quantiles at 1/2 ± 1/sqrt(n)
    (order statistics n/2 ± sqrt(n), a binomial ±2 standard errors), about ± 2 s.e. of the
    sample median whatever the distribution.

    Returns ``{"days", "quantiles", "equity", "leverage", "paths", "equity_median_ci",
    "leverage_median_ci"}``: ``equity[i][t]`` is quantile i at day t; ``*_median_ci`` hold the
    interval's lower and upper rows.
    """
    cfg = problem.cfg
    n_blocks = max(1, math.ceil(paths / BLOCK))
    n = n_blocks * BLOCK
    half = 1.0 / math.sqrt(n)
    probs = (*QUANTILES, 0.5 - half, 0.5 + half)

    @jax.jit
    def record(k):
        _, traj = simulate_chunk(
            k,
            jnp.zeros((), jnp.int32),
            problem.model,
            policy,
            problem.market,
            n_blocks=n_blocks,
            steps=cfg.steps,
            dt=cfg.dt,
            dtype=problem.dtype,
            ruin_floor=cfg.ruin_floor,
            n_draws=problem.n_draws,
            record=True,
        )
        q = jnp.asarray(probs, problem.dtype)
        return jnp.quantile(traj.equity, q, axis=1), jnp.quantile(traj.leverage, q, axis=1)

    equity, leverage = (np.asarray(a) for a in record(key))
    equity = np.concatenate([np.ones((len(probs), 1)), equity], axis=1)
    leverage = np.concatenate([leverage[:, :1], leverage], axis=1)
    days = (np.arange(1, cfg.steps + 1) / cfg.steps_per_day).tolist()
    k = len(QUANTILES)
    return {
        "days": [0.0, *days],
        "quantiles": list(QUANTILES),
        "equity": equity[:k].tolist(),
        "leverage": leverage[:k].tolist(),
        "paths": n,
        "equity_median_ci": equity[k:].tolist(),
        "leverage_median_ci": leverage[k:].tolist(),
    }


def paired_stderr(metric: Metric, a: Outcome, b: Outcome, ctx: Context) -> jax.Array:
    """Standard error of ``metric(a) - metric(b)`` when ``a`` and ``b`` were simulated on the same
    paths (common random numbers): the difference is estimated path by path (per-path metrics) or
    batch by batch over the catalogue's ``STDERR_BATCHES`` groups (statistics such as CVaR), so
    the noise the two share cancels."""
    va, vb = metric.fn(a, ctx), metric.fn(b, ctx)
    if metric.aggregate == "mean" or (metric.aggregate == "auto" and va.ndim > 0):
        d = va - vb
        return jnp.std(d, ddof=1) / jnp.sqrt(d.shape[0])
    n = a.wealth.shape[0] // STDERR_BATCHES
    if n < 2:
        return jnp.asarray(jnp.nan)

    def groups(o: Outcome) -> jax.Array:
        batched = jax.tree.map(
            lambda x: x[: n * STDERR_BATCHES].reshape((STDERR_BATCHES, n) + x.shape[1:]), o
        )
        return jax.vmap(lambda g: metric.fn(g, ctx))(batched)

    return jnp.std(groups(a) - groups(b), ddof=1) / jnp.sqrt(STDERR_BATCHES)


@partial(jax.jit, static_argnums=(1, 2, 3))
def _profile_stats(outcomes: Outcome, ctx: Context, names: tuple[str, ...], chosen: int) -> dict[str, Any]:
    """Per metric and scale (leading axis of ``outcomes``): value, standard error, s.e. of the
    difference from the chosen scale and, for neighbouring scales, s.e. of their difference."""
    at = lambda i: jax.tree.map(lambda x: x[i], outcomes)  # noqa: E731
    shifted = lambda lo, hi: jax.tree.map(lambda x: x[lo:hi], outcomes)  # noqa: E731
    stats: dict[str, Any] = {}
    for name in names:
        m = get_metric(name)
        k = outcomes.wealth.shape[0]
        stats[name] = {
            "value": jax.vmap(lambda o, m=m: m.value(o, ctx))(outcomes),
            "stderr": jax.vmap(lambda o, m=m: m.stderr(o, ctx))(outcomes),
            "diff": jax.vmap(lambda o, m=m: paired_stderr(m, o, at(chosen), ctx))(outcomes),
            "step": jax.vmap(lambda o, p, m=m: paired_stderr(m, o, p, ctx))(shifted(1, k), shifted(0, k - 1)),
        }
    return stats


def _resolution(values: np.ndarray, step_se: np.ndarray) -> float:
    """Median over neighbouring scales of s.e.(difference) / |difference| (0 where both are 0)."""
    steps = np.abs(np.diff(values))
    ratio = np.where(step_se == 0, 0.0, step_se / np.maximum(steps, np.finfo(float).tiny))
    return float(np.median(ratio)) if ratio.size else 0.0


def _scaled_chunks(
    problem: Problem, policy: Policy, key: jax.Array, scales: np.ndarray, chunk_blocks: int
) -> Any:
    """A compiled ``chunk(first_block)``: the outcomes of ``chunk_blocks`` blocks of paths for the
    policy scaled by each factor, ``(scales, paths)`` leading axes, the same noise at every scale."""
    cfg = problem.cfg
    factors = jnp.asarray(scales, problem.dtype)

    @jax.jit
    def chunk(first_block):
        def one(scale):
            outcome, _ = simulate_chunk(
                key,
                first_block,
                problem.model,
                policy.scaled(scale),
                problem.market,
                n_blocks=chunk_blocks,
                steps=cfg.steps,
                dt=cfg.dt,
                dtype=problem.dtype,
                ruin_floor=cfg.ruin_floor,
                n_draws=problem.n_draws,
            )
            return outcome

        return jax.vmap(one)(factors)

    return chunk


@scoped_x64
def leverage_profile(
    problem: Problem,
    policy: Policy,
    key: jax.Array,
    paths: int | None = None,
    scales: Any = None,
    max_paths: int = PROFILE_MAX_PATHS,
) -> dict[str, Any]:
    """Growth, liquidation probability, CVaR and mean return of the policy with its leverage scaled
    by each factor, with standard errors.

    The policy scales itself (:meth:`~levopt.policies.Policy.scaled`: weights, a volatility target,
    a CPPI multiplier, a Kelly fraction). Every factor uses the same paths, those of ``key``
    (``levopt.run`` passes the out-of-sample key, so scale 1 estimates the out-of-sample figures on
    a superset of their paths): with common random numbers the differences between scales are far
    less noisy than the values. Without ``paths`` the count starts at max(config paths,
    :data:`PROFILE_MIN_PATHS`) and doubles until the growth curve is resolved (:data:`RESOLUTION`)
    or reaches ``max_paths``; with ``paths`` it is fixed.

    Returns:
        Lists keyed by metric name plus ``scale`` and ``gross_leverage`` (the initial gross
        leverage at each factor, when the policy's opening weights are known); ``stderr`` (the s.e.
        of each value), ``diff_stderr`` (the s.e. of each value minus the value at the scale
        closest to 1, paired on common paths), by metric; ``paths``.
    """
    cfg = problem.cfg
    scales = np.asarray(PROFILE_SCALES if scales is None else scales, float)
    chosen = int(np.argmin(np.abs(scales - 1.0)))
    adaptive = paths is None
    start = min(max(cfg.paths, PROFILE_MIN_PATHS), max_paths) if adaptive else int(paths)
    chunk_blocks = max(1, math.ceil(min(cfg.chunk_size, start) / BLOCK))
    chunk = _scaled_chunks(problem, policy, key, scales, chunk_blocks)
    parts: list[Outcome] = []
    count = math.ceil(start / (chunk_blocks * BLOCK))
    while True:
        parts += [
            chunk(jnp.asarray(i * chunk_blocks, jnp.int32)) for i in range(len(parts), len(parts) + count)
        ]
        outcomes = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=1), *parts)
        stats = jax.device_get(_profile_stats(outcomes, problem.ctx, PROFILE_METRICS, chosen))
        n = int(outcomes.wealth.shape[1])
        growth = stats["log_growth"]
        if (
            not adaptive
            or 2 * n > max_paths
            or _resolution(np.asarray(growth["value"]), np.asarray(growth["step"])) <= RESOLUTION
        ):
            break
        count = len(parts)  # double the paths

    out: dict[str, Any] = {name: np.asarray(s["value"]).tolist() for name, s in stats.items()}
    opening = policy.opening_weights()
    gross0 = 1.0 if opening is None else float(np.sum(np.abs(np.asarray(opening))))
    out["scale"] = scales.tolist()
    out["gross_leverage"] = (scales * gross0).tolist()
    out["stderr"] = {name: np.asarray(s["stderr"]).tolist() for name, s in stats.items()}
    # The chosen scale's difference from itself is 0, not the rounding of two compiled programs.
    out["diff_stderr"] = {
        name: np.where(np.arange(len(scales)) == chosen, 0.0, np.asarray(s["diff"])).tolist()
        for name, s in stats.items()
    }
    out["paths"] = n
    return out
