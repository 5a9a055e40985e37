r"""A static option book held to expiry as a one-period scenario program.

Legs bought at t = 0 and held to an expiry at the horizon end with wealth
:math:`W = 1 + \sum_i q_i (P_i - C_i) - c\sum_i |q_i| C_i` (P_i the leg's payoff, C_i its premium at
the implied vol, c the trading fee) plus the cash's interest, which is the scenario wealth of
:mod:`levopt.optimize.scenarios` for "assets" of simple return :math:`R_i = P_i / C_i - 1` held
with weights :math:`w_i = q_i C_i` (the premium notional) and no funding. So the Kelly and CVaR
programs over the legs' quantities are the convex programs over weights, solved by the same code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from levopt.engine.book import opening_legs
from levopt.engine.simulate import simulate_returns_jit
from levopt.errors import ConfigError
from levopt.optimize.scenarios import Scenarios
from levopt.policies import Bounds


def premiums(problem: Any) -> np.ndarray:
    """``(k,)`` premium of one option of each leg at t = 0, at the implied vol of t = 0."""
    model = problem.model
    _, _, g = opening_legs(problem.policy, model, model.init(problem.dtype), problem.cfg.dt)
    return np.asarray(g.price, float)


def check_static_book(problem: Any) -> Bounds:
    """The book must be one the program models: long legs held to expiry at the horizon end, no
    hedge, no roll, quantities the only free parameters. Returns the quantities' bounds."""
    policy, cfg = problem.policy, problem.cfg
    horizon = cfg.steps * cfg.dt
    if policy.rebalance_every > 0:
        raise ConfigError(
            "policy.hedge.rebalance", "a hedged book is not static; use optimizer.method: optax"
        )
    if policy.roll_before is not None:
        raise ConfigError(
            "policy.roll_days_before", "a rolled book is not static; use optimizer.method: optax"
        )
    if "strike" in problem.free:
        raise ConfigError(
            "policy.legs", "strikes are not linear in the payoff; free them with optimizer.method: optax"
        )
    bounds = problem.free.get("quantity")
    if bounds is None:
        raise ConfigError("policy.legs", "no free quantities: write a leg's quantity as {init, min, max}")
    expiry = np.asarray(policy.expiry, float)
    for i, e in enumerate(expiry):
        if abs(e - horizon) > 1e-9 * max(horizon, 1.0):
            raise ConfigError(
                f"policy.legs.{i}.expiry_days",
                f"{e * 365:g} days; allowed with optimizer.method cvxpy: the horizon ({cfg.horizon_days:g} days), "
                "so that every leg is held to its payoff",
            )
    lower = np.asarray(bounds.lower, float)
    if np.any(lower < 0):
        i = int(np.argmax(lower < 0))
        raise ConfigError(
            f"policy.legs.{i}.quantity",
            "may go short, and a short leg's margin can liquidate the book before expiry; allowed with "
            "optimizer.method cvxpy: min >= 0, or optimizer.method: optax",
        )
    return bounds


def option_scenarios(problem: Any, key: Any, n_scenarios: int) -> tuple[Scenarios, np.ndarray]:
    """Scenarios of the legs' simple returns :math:`P_i / C_i - 1` over the horizon, from the path
    model's paths of ``key`` (path p is path p of ``problem.simulate(key)``), and the premiums."""
    cfg, policy = problem.cfg, problem.policy
    x = simulate_returns_jit(
        key,
        problem.model,
        paths=n_scenarios,
        steps=cfg.steps,
        dt=cfg.dt,
        dtype=problem.dtype,
        n_draws=problem.n_draws,
    )
    final = np.exp(np.asarray(x, float)[:, :, 0].sum(axis=1))
    omega, strike = np.asarray(policy.omega, float), np.asarray(policy.strike, float)
    payoff = np.maximum(omega * (final[:, None] - strike), 0.0)
    cost = premiums(problem)
    scen = Scenarios(payoff / cost - 1.0, np.ones_like(payoff), cfg.steps * cfg.dt, total_loss=True)
    return scen, cost


def scenario_market(problem: Any) -> dict[str, float]:
    """The market of the program: the account's fees and rates; option legs pay no funding."""
    m = problem.cfg.market
    return {
        "fee": m.fee,
        "slippage": m.slippage,
        "cash_rate": m.cash_rate,
        "borrow_rate": m.borrow_rate,
        "funding_rate": 0.0,
    }
