"""Memory a config's computation keeps, estimated before anything is compiled and compared with
the memory available, so that an oversized run fails at once in one line that says what fits,
instead of minutes later inside XLA.

Evaluations stream their paths in chunks, so what scales with a config's sizes is:

* one chunk of the simulation (``chunk_size``, or ``paths`` when smaller): per path, the carried
  account state (twice: XLA keeps the old and the new step), the step's noise (twice: the step
  draws the next one ahead) and the outcome;
* the gradient search (``optimizer.method: optax``): its ``optimizer.paths`` are one chunk whose
  noise is drawn once for every step (common random numbers) and whose state is kept at every step
  for the reverse pass (the step is rematerialized, its inputs are not), i.e. per path and step the
  noise and the carried state;
* the convex program (``optimizer.method: cvxpy``): ``scenarios`` simulated returns and cvxpy's
  canonicalized problem, about :data:`CVXPY_BYTES_PER_TERM` per scenario for the objective and
  each outcome constraint (measured with Clarabel: 2.8 kB for Kelly alone, 5.0 kB with a CVaR
  constraint, nearly independent of the number of assets).

The per-path sizes come from the model and the policy themselves (``jax.eval_shape`` of their
``noise`` and ``init``: nothing is computed). The estimates are upper bounds, about twice the peak
resident memory measured on CPU for GBM, GARCH and Merton models.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from levopt.cascade import CascadeParams, init_crowd
from levopt.config import Config, CvxpyConfig, OptaxConfig, parse_objective, parse_optimizer
from levopt.engine import BLOCK
from levopt.engine.simulate import plan_chunks
from levopt.errors import ResourceError
from levopt.paths import MODELS
from levopt.policies import POLICIES
from levopt.precision import scoped_x64
from levopt.problem import build_model, dtype_of

CARRY_SCALARS = 9
"""Per-path scalars of the engine's account state besides the notionals, the model's and the
policy's state: wealth, alive, liquidation step, peak, drawdown, survival and three liquidation sums."""
CASCADE_SCALARS = 7
"""Per-path cascade totals carried with a ``cascade:`` block (:class:`levopt.engine.CascadeTotals`)."""
OUTCOME_SCALARS = 8
"""Per-path fields of an outcome (:class:`levopt.engine.Outcome`)."""
CVXPY_BYTES_PER_TERM = 3_000
"""cvxpy's memory per scenario for the objective and for each outcome constraint (Clarabel)."""
DEFAULT_SEARCH_PATHS = 20_000
"""Search paths when ``optimizer.paths`` is not given: ``min(paths, 20000)`` (levopt.optimize)."""


@dataclass(frozen=True)
class Need:
    """Memory of one part of a computation, linear in one setting.

    Attributes:
        field: the config key that scales it (``chunk_size``, ``optimizer.paths``, ...).
        value: its value (the effective one: a chunk is at most ``paths``, rounded to blocks).
        per_unit: bytes per unit of ``value``.
        what: what the memory holds, for the message.
        unit: what one unit of ``value`` is (``paths``, ``scenarios``).
    """

    field: str
    value: int
    per_unit: float
    what: str
    unit: str = "paths"

    @property
    def bytes(self) -> float:
        return self.value * self.per_unit

    def most_that_fits(self, available: float) -> int:
        """The largest ``value`` whose memory fits in ``available`` bytes (whole blocks of paths)."""
        most = int(available // self.per_unit) if self.per_unit > 0 else self.value
        return most - most % BLOCK if self.unit == "paths" and most >= BLOCK else most


def _nbytes(tree: Any) -> int:
    return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


@dataclass(frozen=True)
class PathSizes:
    """Bytes per path: of the carried state, of one step's noise, of the outcome, and of the model's
    parameters when each path has its own posterior draw (else 0)."""

    carry: int
    noise: int
    outcome: int
    params: int
    n_assets: int


def _model(cfg: Config, base_dir: Path, dtype: Any) -> Any:
    """The config's path model; for a calibrated one (not run here: it samples a posterior), the
    example model of its kind, which has the same state and noise."""
    if "calibrate" not in cfg.model:
        return build_model(cfg, base_dir)
    cls = MODELS.get(cfg.model["kind"], "model.kind")
    example = cls.Config.model_validate(cls.example)
    return cls.from_config(example, cfg.dt, dtype, base_dir=base_dir)


@scoped_x64
def path_sizes(cfg: Config, base_dir: str | Path = ".") -> PathSizes:
    """Bytes per path of the simulation's state, noise and outcome (shapes only, nothing runs)."""
    dtype = dtype_of(cfg)
    f = np.dtype(dtype).itemsize
    model = _model(cfg, Path(base_dir), dtype)
    n = model.n_assets
    state = jax.eval_shape(lambda: model.init(dtype))
    noise = jax.eval_shape(lambda k: model.noise(k, BLOCK, dtype), jax.random.PRNGKey(0))
    policy_bytes = 0
    if cfg.policy is not None:
        policy_cls = POLICIES.get(cfg.policy["kind"], "policy.kind")
        policy, _ = policy_cls.from_config(
            cfg.policy_config_typed(), n, cfg.steps, cfg.dt, dtype, market=cfg.market
        )

        def policy_init() -> Any:
            s = model.init(dtype)
            return policy.init(n, dtype, model.current_vol(s, cfg.dt), model.mean_return())

        policy_bytes = _nbytes(jax.eval_shape(policy_init))
    posterior = "calibrate" in cfg.model and cfg.model.get("uncertainty") == "posterior"
    crowd_bytes = 0
    if cfg.cascade is not None:
        # The crowd on its level grid and the path's cascade totals (levopt.engine.CascadeTotals).
        params = CascadeParams.from_config(cfg.cascade, dtype, base_dir=base_dir)
        crowd_bytes = _nbytes(jax.eval_shape(lambda: init_crowd(params))) + CASCADE_SCALARS * f
    return PathSizes(
        carry=(CARRY_SCALARS + n) * f + _nbytes(state) + policy_bytes + crowd_bytes,
        noise=math.ceil(_nbytes(noise) / BLOCK),
        outcome=OUTCOME_SCALARS * f,
        params=_nbytes(model) if posterior else 0,
        n_assets=n,
    )


def needs(cfg: Config, base_dir: str | Path = ".") -> list[Need]:
    """The parts of the config's computation whose memory grows with a setting (see the module
    docstring): the simulation chunk always; the search when the config has an objective."""
    sizes = path_sizes(cfg, base_dir)
    per_chunk, _ = plan_chunks(cfg.paths, cfg.chunk_size)
    chunk = per_chunk * BLOCK
    field = "chunk_size" if cfg.chunk_size <= cfg.paths else "paths"
    step = 2 * sizes.carry + 2 * sizes.noise + sizes.outcome + sizes.params
    out = [Need(field, chunk, step, "a chunk of the simulation")]
    if cfg.objective is None:
        return out
    objective = parse_objective(cfg.objective)
    opt = parse_optimizer(cfg.optimizer)
    if isinstance(opt, OptaxConfig):
        paths = opt.paths or min(cfg.paths, DEFAULT_SEARCH_PATHS)
        blocks = math.ceil(paths / BLOCK) * BLOCK
        per_path = cfg.steps * (sizes.noise + sizes.carry) + 2 * sizes.carry + sizes.outcome + sizes.params
        what = f"the gradient search's noise and states over {cfg.steps} steps"
        if not opt.paths:
            what += f" (optimizer.paths defaults to min(paths, {DEFAULT_SEARCH_PATHS}))"
        out.append(Need("optimizer.paths", blocks, per_path, what))
    elif isinstance(opt, CvxpyConfig) and opt.scenarios != "data":
        terms = 1 + len(objective.constraints)
        f = np.dtype(dtype_of(cfg)).itemsize
        per_scenario = terms * CVXPY_BYTES_PER_TERM + 3 * cfg.steps * sizes.n_assets * f
        out.append(
            Need("optimizer.scenarios", int(opt.scenarios), per_scenario, "the convex program", "scenarios")
        )
    return out


def available_memory() -> tuple[float, str] | None:
    """Bytes free for arrays and where: the default device's free memory on an accelerator, else the
    host's available memory (psutil, else ``/proc/meminfo``); None when it cannot be told."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
        except Exception:  # backends without memory statistics
            stats = {}
        if "bytes_limit" in stats:
            return float(stats["bytes_limit"] - stats.get("bytes_in_use", 0)), f"{device.platform} memory"
    host = _host_available()
    if host is None:
        return None
    limit = _cgroup_headroom()
    if limit is not None and limit < host:
        return limit, "memory (the container's limit)"
    return host, "memory"


def _host_available() -> float | None:
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if hasattr(os, "sysconf") and "SC_AVPHYS_PAGES" in os.sysconf_names:
        return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return None


def _cgroup_headroom() -> float | None:
    """Limit minus usage of the process's memory cgroup (v2, else v1); None when unlimited."""
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            limit = Path(limit_file).read_text().strip()
            usage = Path(usage_file).read_text().strip()
        except OSError:
            continue
        if limit == "max" or not limit.isdigit() or not usage.isdigit() or int(limit) >= 2**60:
            return None
        return float(int(limit) - int(usage))
    return None


def _size(n: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def check_memory(
    cfg: Config, base_dir: str | Path = ".", available: tuple[float, str] | None = None
) -> list[Need]:
    """Refuse a config whose computation would not fit in memory, before anything is compiled.

    Args:
        cfg: a validated config (one sweep point).
        base_dir: where its relative data paths resolve.
        available: ``(bytes, where)``; default :func:`available_memory`.

    Returns:
        The estimates (:func:`needs`).

    Raises:
        ResourceError: naming the setting, its value, the estimate, the memory available and the
            largest value that fits.
    """
    estimates = needs(cfg, base_dir)
    available = available_memory() if available is None else available
    if available is None:
        return estimates
    free, where = available
    for need in estimates:
        if need.bytes > free:
            most = need.most_that_fits(free)
            fits = f"at most {most:,} {need.unit} fit" if most > 0 else "none fit"
            raise ResourceError(
                need.field,
                f"{need.value:,} {need.unit} need about {_size(need.bytes)} for {need.what}, "
                f"but {_size(free)} of {where} is available; allowed: {fits}",
            )
    return estimates


def _structure(value: Any) -> Any:
    """A config section with its numbers left out (sizes of arrays kept): what shapes depend on."""
    if isinstance(value, dict):
        return {str(k): _structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure(v) for v in value]
    return type(value).__name__ if isinstance(value, int | float) and not isinstance(value, bool) else value


def check_memory_all(configs: list[Config], base_dir: str | Path = ".") -> None:
    """:func:`check_memory` of each config (sweep points), once per distinct structure and sizes."""
    available = available_memory()
    seen: set[str] = set()
    for cfg in configs:
        sizes = (cfg.paths, cfg.chunk_size, cfg.steps, cfg.precision)
        key = repr((sizes, _structure(cfg.model), _structure(cfg.policy), cfg.objective, cfg.optimizer))
        if key in seen:
            continue
        seen.add(key)
        check_memory(cfg, base_dir, available)
