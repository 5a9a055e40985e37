"""The policy interface: target leverage per asset as a function of time and account state.

A policy is a frozen pytree whose array fields are its parameters. Each parameter in a config is
either a number (fixed) or ``{init, min, max}`` (free, optimized by :mod:`levopt.optimize`).
"""

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from equinox import AbstractVar
from jax import Array
from pydantic import field_validator, model_validator

from levopt.errors import ConfigError
from levopt.registry import Registry, check_implements
from levopt.schema import StrictModel

PolicyState = Any


class FreeParam(StrictModel):
    """A parameter left to the optimizer: start at ``init``, stay within ``[min, max]``."""

    init: float | list[float] | list[list[float]]
    min: float | list[float] | list[list[float]] | None = None
    max: float | list[float] | list[list[float]] | None = None


Param = float | list[float] | list[list[float]] | FreeParam


@dataclass(frozen=True)
class Bounds:
    """Box bounds of a free parameter, broadcast to its shape (``-inf``/``inf`` when open)."""

    lower: np.ndarray
    upper: np.ndarray


def resolve_param(spec: Param, shape: tuple[int, ...], field: str) -> tuple[np.ndarray, Bounds | None]:
    """Initial value (broadcast to ``shape``) and bounds (None when fixed) of a parameter spec."""

    def broadcast(value: Any, what: str) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        try:
            return np.broadcast_to(arr, shape).astype(float)
        except ValueError:
            raise ConfigError(
                field, f"{what} must be a number or a list of {shape[0] if shape else 1}, got {value!r}"
            ) from None

    if not isinstance(spec, FreeParam):
        return broadcast(spec, "value"), None
    init = broadcast(spec.init, "init")
    lower = broadcast(-np.inf if spec.min is None else spec.min, "min")
    upper = broadcast(np.inf if spec.max is None else spec.max, "max")
    if np.any(lower >= upper):
        raise ConfigError(field, f"min must be < max, got min={spec.min}, max={spec.max}")
    if np.any(init < lower) or np.any(init > upper):
        raise ConfigError(field, f"init {spec.init} must lie within [min, max] = [{spec.min}, {spec.max}]")
    return init, Bounds(lower, upper)


class PolicyConfig(StrictModel):
    """Base of policy schemas: unknown keys are errors."""

    kind: str
    rebalance: Literal["never"] | int = 1

    @property
    def weight_budget(self) -> float | None:
        """Σ w_i fixed by the config (``budget``), for policies that have one."""
        return None

    @field_validator("rebalance")
    @classmethod
    def _positive(cls, v):
        if v != "never" and v < 1:
            raise ValueError(f"must be 'never' or an integer >= 1 (steps between rebalances), got {v!r}")
        return v


class LeverageOrWeightsConfig(PolicyConfig):
    """Schemas holding either ``leverage`` (one asset, long) or ``weights`` (per asset, signed)."""

    leverage: Param | None = None
    weights: Param | None = None

    @field_validator("leverage")
    @classmethod
    def _long_only(cls, v: Param | None) -> Param | None:
        values = [v.init, v.min] if isinstance(v, FreeParam) else [v]
        if any(x is not None and np.any(np.asarray(x, float) < 0) for x in values):
            raise ValueError(f"must be >= 0 (use 'weights' for short positions), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_of(self):
        if (self.leverage is None) == (self.weights is None):
            raise ValueError("give exactly one of 'leverage' (one asset) or 'weights' (per asset)")
        return self


class Policy(eqx.Module):
    """Abstract policy: the target leverage per asset (notional / equity) at each step.

    ``rebalance_every`` is 0 for a position opened at t = 0 and held, else the number of steps
    between trades back to the target. What the engine, the optimizers, the profiles and the report
    need to know about a kind is asked of its class, never special-cased outside it;
    :func:`register_policy` refuses a class that leaves an abstract method undefined.

    Class attributes:
        Config: the pydantic schema of the config section.
        example: a config section that builds the policy (the conformance tests run every
            registered policy from it).
        static: the policy holds its ``weights`` unchanged over the horizon (a static allocation,
            which the convex layer can optimize).
        leverage_fields: parameters that scale its leverage (the report's leverage profile
            multiplies them).
        segmented: its weights have a leading axis of time segments (a schedule).
        instrument: what it holds: ``"linear"`` (perpetual or margined spot notionals, sized by
            :meth:`target`) or ``"options"`` (option legs the engine prices, margins and hedges).
    """

    Config: ClassVar[type[PolicyConfig]]
    example: ClassVar[dict[str, Any]]
    static: ClassVar[bool] = False
    leverage_fields: ClassVar[tuple[str, ...]] = ()
    segmented: ClassVar[bool] = False
    instrument: ClassVar[str] = "linear"
    rebalance_every: int = eqx.field(static=True)

    @classmethod
    @abc.abstractmethod
    def from_config(
        cls, cfg: PolicyConfig, n_assets: int, steps: int, dt: float, dtype: Any, *, market: Any = None
    ) -> "tuple[Policy, dict[str, Bounds]]":
        """Build the policy and the bounds of its free parameters (by field name).

        ``market`` is the :class:`~levopt.engine.MarketConfig`, for policies that need the
        financing rate.
        """

    def init(self, n_assets: int, dtype: Any, model_vol: Array, model_mu: Array) -> PolicyState:
        """State at t = 0; estimators start from the model's ``(n_assets,)`` volatility and drift."""
        return ()

    def observe(self, state: PolicyState, log_return: Array, equity: Array) -> PolicyState:
        """Update the policy's estimators with the step's ``(n_assets,)`` log-return."""
        return state

    @abc.abstractmethod
    def target(self, state: PolicyState, t: Array, equity: Array, model_vol: Array, model_mu: Array) -> Array:
        """``(n_assets,)`` target leverage at step ``t`` (before the step's return).

        ``model_vol`` and ``model_mu`` are the path model's annualized conditional volatility and
        drift for the coming step, for policies that use the model's view.
        """

    def position_weights(self) -> Array | None:
        """The explicit weights the policy holds (``(n_assets,)`` or ``(segments, n_assets)``), if
        any: constraints on weights (``gross_leverage``) and a budget bound them."""
        return None

    def opening_weights(self) -> Array | None:
        """``(n_assets,)`` weights of the opening trade when known before simulating, else None."""
        w = self.position_weights()
        return None if w is None else jnp.reshape(w, (-1, w.shape[-1]))[0]

    def scaled(self, factor: Array) -> "Policy":
        """The policy with its leverage multiplied by ``factor`` (its :attr:`leverage_fields`)."""
        names = self.leverage_fields
        return eqx.tree_at(
            lambda p: [getattr(p, n) for n in names], self, [getattr(self, n) * factor for n in names]
        )

    def report_params(self, params: dict[str, Any], cfg: PolicyConfig) -> dict[str, Any]:
        """Optimized parameters as results report them, under the config's own names."""
        return {name: np.asarray(value, float).tolist() for name, value in params.items()}

    @classmethod
    def target_gross(
        cls, values: dict[str, Any], horizon_days: float
    ) -> "tuple[np.ndarray, np.ndarray] | None":
        """Days and target gross leverage over the horizon from saved values, when the parameters
        alone fix it (held weights); None for policies whose leverage follows the paths."""
        return None

    @classmethod
    def describe(
        cls, values: dict[str, Any], spec: dict[str, Any], horizon_days: float, rebalance: str
    ) -> tuple[str, Any]:
        """The policy in plain words, and a table ``{"columns", "rows"}`` or None, from saved values
        (``values``: its parameters, optimized ones included; ``rebalance``: how often it trades)."""
        shown = ", ".join(f"{k} = {v}" for k, v in values.items() if k not in ("kind", "rebalance"))
        return f"Policy '{spec.get('kind')}': {shown}; {rebalance}.", None


class HoldsWeights(Policy):
    """Abstract base of policies holding explicit weights (``leverage`` for one asset)."""

    weights: AbstractVar[Array]
    leverage_fields: ClassVar[tuple[str, ...]] = ("weights",)

    @classmethod
    def target_gross(
        cls, values: dict[str, Any], horizon_days: float
    ) -> "tuple[np.ndarray, np.ndarray] | None":
        """Days and target gross leverage Σ|w| over the horizon (step edges), from saved values."""
        raw = values.get("leverage", values.get("weights"))
        try:
            lev = np.abs(np.asarray(raw, float))
        except (TypeError, ValueError):
            return None
        if not np.all(np.isfinite(lev)) or lev.size == 0:
            return None
        rows = lev.reshape(lev.shape[0], -1) if cls.segmented and lev.ndim else lev.reshape(1, -1)
        gross = rows.sum(axis=1)
        return np.linspace(0.0, horizon_days, len(gross) + 1), np.append(gross, gross[-1])

    def position_weights(self) -> Array:
        return self.weights

    def report_params(self, params: dict[str, Any], cfg: PolicyConfig) -> dict[str, Any]:
        out = super().report_params(params, cfg)
        if "weights" in out and getattr(cfg, "leverage", None) is not None:
            value = np.asarray(params["weights"], float)
            del out["weights"]
            out["leverage"] = value.reshape(-1).tolist() if value.size > 1 else float(value.reshape(-1)[0])
        return out


POLICIES: Registry[type[Policy]] = Registry("policy")


def register_policy(name: str):
    """Class decorator registering a :class:`Policy` under ``name`` (the config's ``kind``).

    Checks that the class implements the whole interface, so a missing method fails here.
    """
    register = POLICIES.register(name)

    def decorator(cls: type[Policy]) -> type[Policy]:
        check_implements(cls, Policy, "policy")
        return register(cls)

    return decorator


def rebalance_steps(rebalance: Literal["never"] | int) -> int:
    return 0 if rebalance == "never" else int(rebalance)
