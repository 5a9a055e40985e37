"""The path-model interface: one time step of the log-price dynamics, plus a registry.

A model is a frozen pytree (``equinox.Module``) holding its parameters as arrays, so it can be
``vmap``-ped over parameter draws or sweep points and differentiated. It describes a single path;
the engine batches it. Randomness is drawn by :meth:`PathModel.noise` for a block of paths at once
and the transition :meth:`PathModel.step` is a deterministic function of that noise, which keeps
paths reproducible whatever the chunking of the simulation.
"""

import abc
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import numpy as np
from equinox import AbstractVar
from jax import Array
from pydantic import BaseModel, field_validator

from levopt.errors import ConfigError
from levopt.registry import Registry, check_implements
from levopt.schema import StrictModel

PathState = Any  # a pytree of per-path arrays


class StepOut(NamedTuple):
    """What one step of a path model reports to the engine (single path).

    Attributes:
        log_return: ``(n_assets,)`` log-price change over the step.
        vol: ``(n_assets,)`` conditional standard deviation of the continuous (diffusion) part of
            the step's log-return; the Brownian bridge between the step's end points uses it.
        gap: scalar bool, True when the step contains a jump, so that a liquidation triggered in it
            happens at the post-jump price rather than at the liquidation level.
        corr_chol: ``(n_assets, n_assets)`` lower Cholesky factor of the step's conditional
            correlation, for models whose correlation moves (DCC); None means the model's constant
            :attr:`PathModel.corr_chol`. The multi-asset liquidation bridge reads it.
    """

    log_return: Array
    vol: Array
    gap: Array
    corr_chol: Array | None = None


class PathModel(eqx.Module):
    """Abstract base: a model of log-returns defined by its one-step transition.

    What the engine and the policies read is declared here; :func:`register_model` refuses a class
    that leaves any of it out, so a missing piece fails where the class is defined.

    Declared fields (``AbstractVar``: a subclass declares them as ordinary fields):
        mu: ``(n_assets,)`` annualized arithmetic drift, E[S_T/S_0] = exp(mu T) (for policies).
        corr_chol: ``(n_assets, n_assets)`` lower Cholesky factor of the shocks' correlation (the
            multi-asset liquidation bridge reads it; the identity for one asset).

    Class attributes:
        Config: a pydantic schema (subclass of :class:`ModelConfig`) whose fields are the config keys.
        example: a config section that builds the model (the conformance tests run every
            registered model from it).
    """

    Config: ClassVar[type[BaseModel]]
    example: ClassVar[dict[str, Any]]
    mu: AbstractVar[Array]
    corr_chol: AbstractVar[Array]

    @property
    def n_assets(self) -> int:
        return int(self.corr_chol.shape[-1])

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Any, dt: float, dtype: Any, *, base_dir: Path = Path(".")) -> "PathModel":
        """Build the model from its validated config section (``base_dir`` resolves data paths)."""

    @abc.abstractmethod
    def noise(self, key: Array, n: int, dtype: Any) -> Any:
        """Standardized random inputs for ``n`` paths of one step (pytree, leading axis ``n``)."""

    @abc.abstractmethod
    def init(self, dtype: Any) -> PathState:
        """The state of one path at t = 0."""

    @abc.abstractmethod
    def step(self, state: PathState, noise: Any, dt: float) -> tuple[PathState, StepOut]:
        """Advance one path by one step of length ``dt`` years given its noise."""

    @abc.abstractmethod
    def current_vol(self, state: PathState, dt: float) -> Array:
        """``(n_assets,)`` annualized conditional volatility of the next step (for policies)."""

    def forecast_vol(self, state: PathState, dt: float, horizon: Array) -> Array:
        """``(n_assets,)`` annualized volatility expected over the next ``horizon`` years: the root
        of the mean conditional variance (what an option's implied volatility forecasts). Models
        whose variance does not move return :meth:`current_vol`."""
        return self.current_vol(state, dt)

    def mean_return(self) -> Array:
        """``(n_assets,)`` annualized arithmetic drift (for policies): :attr:`mu`."""
        return self.mu

    def data_returns(self) -> np.ndarray | None:
        """``(rows, n_assets)`` simple returns of the data file the model resamples, if any (the
        convex layer's ``scenarios: data``)."""
        return None


MODELS: Registry[type[PathModel]] = Registry("path model")


def register_model(name: str):
    """Class decorator registering a :class:`PathModel` under ``name`` (the config's ``kind``).

    Checks that the class implements the whole interface, so a missing method or field fails here.
    """
    register = MODELS.register(name)

    def decorator(cls: type[PathModel]) -> type[PathModel]:
        check_implements(cls, PathModel, "path model")
        return register(cls)

    return decorator


class ModelConfig(StrictModel):
    """Base for model schemas: unknown keys are errors."""

    kind: str


def as_vector(value: float | list[float], n: int, field: str) -> np.ndarray:
    """Broadcast a scalar or length-``n`` list to an ``(n,)`` float array."""
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if arr.ndim != 1 or arr.shape[0] not in (1, n):
        raise ConfigError(field, f"expected a number or a list of {n} numbers, got {value!r}")
    return np.broadcast_to(arr, (n,)).copy()


def n_assets_of(*values: Any) -> int:
    """The number of assets implied by list-valued parameters (1 when all are scalars)."""
    sizes = {len(v) for v in values if isinstance(v, list | tuple)}
    if len(sizes) > 1:
        raise ConfigError("model", f"per-asset lists have different lengths {sorted(sizes)}")
    return sizes.pop() if sizes else 1


def correlation_cholesky(corr: list[list[float]] | None, n: int, field: str = "model.corr") -> np.ndarray:
    """Validate a correlation matrix and return its lower Cholesky factor (identity when None)."""
    if corr is None:
        return np.eye(n)
    c = np.asarray(corr, dtype=float)
    if c.shape != (n, n):
        raise ConfigError(field, f"must be a {n}x{n} matrix, got shape {c.shape}")
    if not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1.0) or np.any(np.abs(c) > 1):
        raise ConfigError(field, "must be symmetric with unit diagonal and entries in [-1, 1]")
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise ConfigError(field, "must be positive definite") from None


def _check_nonneg(value: Any, strict: bool) -> Any:
    if value is None:
        return value
    arr = np.atleast_1d(np.asarray(value, dtype=float))
    if np.any(arr <= 0 if strict else arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"must be {'>' if strict else '>='} 0, got {value!r}")
    return value


def nonneg(*names: str, strict: bool = False):
    """A pydantic field validator requiring the named fields to be (strictly) non-negative."""
    return field_validator(*names)(lambda v: _check_nonneg(v, strict))
