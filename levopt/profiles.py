"""Summaries of a policy for plots: equity and leverage quantiles over time, growth against leverage."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.engine import BLOCK, simulate_chunk
from levopt.objectives import get_metric
from levopt.policies import Policy
from levopt.precision import scoped_x64
from levopt.problem import Problem

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


@scoped_x64
def trajectory_quantiles(
    problem: Problem, policy: Policy, key: jax.Array, paths: int = 1024
) -> dict[str, Any]:
    """Quantiles over paths of equity W_t/W_0 and gross leverage at every step (discrete monitoring).

    Returns ``{"days": [...], "quantiles": [...], "equity": [[q per step] per quantile], "leverage": ...}``.
    """
    cfg = problem.cfg
    n_blocks = max(1, paths // BLOCK)

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
        q = jnp.asarray(QUANTILES, problem.dtype)
        return jnp.quantile(traj.equity, q, axis=1), jnp.quantile(traj.leverage, q, axis=1)

    equity, leverage = (np.asarray(a) for a in record(key))
    days = (np.arange(1, cfg.steps + 1) / cfg.steps_per_day).tolist()
    return {
        "days": [0.0, *days],
        "quantiles": list(QUANTILES),
        "equity": np.concatenate([np.ones((len(QUANTILES), 1)), equity], axis=1).tolist(),
        "leverage": np.concatenate([leverage[:, :1], leverage], axis=1).tolist(),
    }


@scoped_x64
def leverage_profile(
    problem: Problem, policy: Policy, key: jax.Array, paths: int = 2048, scales: np.ndarray | None = None
) -> dict[str, Any]:
    """Growth, liquidation probability and CVaR of the policy with its leverage scaled by each factor.

    The policy scales itself (:meth:`~levopt.policies.Policy.scaled`: weights, a volatility target,
    a CPPI multiplier, a Kelly fraction); all factors use the same paths. Returns lists keyed by
    metric plus ``scale`` and ``gross_leverage`` (the initial gross leverage at each factor, when
    the policy's opening weights are known).
    """
    scales = np.linspace(0.25, 2.0, 8) if scales is None else np.asarray(scales, float)
    names = ("log_growth", "liquidation_probability", "cvar", "mean_return")
    metrics = {n: get_metric(n) for n in names}

    def one(scale):
        outcome = problem.simulate(key, policy=policy.scaled(scale), paths=paths)
        return {n: m.value(outcome, problem.ctx) for n, m in metrics.items()}

    values = jax.jit(jax.vmap(one))(jnp.asarray(scales, problem.dtype))
    out = {n: np.asarray(v).tolist() for n, v in values.items()}
    opening = policy.opening_weights()
    gross0 = 1.0 if opening is None else float(np.sum(np.abs(np.asarray(opening))))
    out["scale"] = scales.tolist()
    out["gross_leverage"] = (scales * gross0).tolist()
    return out
