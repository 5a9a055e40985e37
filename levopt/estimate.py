"""Metrics of one evaluation in memory bounded by ``chunk_size``, on every local device or on Ray.

The paths are cut into equal chunks (:func:`levopt.engine.simulate.plan_chunks`) and the chunks
into at most :data:`TASKS` contiguous tasks. Each chunk is simulated by one compiled program and
reduced on the host to a mergeable partial (:mod:`levopt.objectives.streaming`); partials merge in
chunk order within a task and in task order across tasks. The partition depends on ``paths`` and
``chunk_size`` only, so one device, several devices and Ray workers give bit-identical numbers.

Quantile metrics (VaR, CVaR) come from the same pass (atoms kept in a window around the quantile);
only if a quantile falls outside its window do further passes run, re-reading the reduced chunks
when they fit in :data:`RETAIN_BYTES` and otherwise regenerating them from their counter-based keys
(same numbers).
"""

from __future__ import annotations

import math
import socket
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, NamedTuple

import jax
import numpy as np

from levopt.engine import BLOCK, simulate_chunk
from levopt.engine.simulate import plan_chunks
from levopt.errors import ConfigError, LevoptError
from levopt.objectives import (
    Context,
    MetricSpecs,
    evaluate_metrics,
    freeze_specs,
    thaw_specs,
)
from levopt.objectives.streaming import (
    Moments,
    StreamPlan,
    TailSearch,
    WindowRequest,
    chunk_arrays,
    merge_tail,
    reduce_tail,
    stream_plan,
)
from levopt.policies import Policy
from levopt.precision import scoped_x64
from levopt.problem import Problem, report_specs

TASKS = 64
"""Most tasks one evaluation is cut into (the unit of work of a Ray worker)."""
RETAIN_BYTES = 1 << 27
"""Reduced chunks kept in memory for the quantile passes, at most (else they are regenerated)."""
MAX_PASSES = 12
EXECUTORS = ("local", "ray")


def check_executor(executor: str, address: str | None) -> None:
    """Fail fast, in one line, on an unknown executor, a missing Ray or an unreachable cluster."""
    if executor not in EXECUTORS:
        raise ConfigError("--executor", f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise ConfigError("--address", "only used with --executor ray")
    if executor != "ray":
        return
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ConfigError("--executor", "ray is not installed: pip install 'levopt[ray]'") from None
    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("--address", f"expected host:port (or ray://host:port, or auto), got {address!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except OSError as exc:
        raise ConfigError(
            "--address", f"cannot reach a Ray cluster at {address} ({exc.strerror or exc})"
        ) from None


class ChunkSetup(NamedTuple):
    """The static settings of one chunk's compiled program (hashable)."""

    per_chunk: int  # blocks per chunk
    steps: int
    dt: float
    dtype: Any
    ruin_floor: float
    n_draws: int | None
    ctx: Context
    frozen: tuple  # the metric specs (freeze_specs)


@dataclass(frozen=True)
class Job:
    """Everything needed to simulate and reduce any chunk of one evaluation (picklable)."""

    key: Any
    model: Any
    policy: Policy
    market: Any
    paths: int
    n_chunks: int
    setup: ChunkSetup

    @property
    def chunk_paths(self) -> int:
        return self.setup.per_chunk * BLOCK

    def tasks(self) -> list[range]:
        size = math.ceil(self.n_chunks / min(TASKS, self.n_chunks))
        return [range(s, min(s + size, self.n_chunks)) for s in range(0, self.n_chunks, size)]


@partial(jax.jit, static_argnums=5)
def _chunk_arrays(key, chunk, model, policy, market, setup: ChunkSetup):
    outcome, _ = simulate_chunk(
        key,
        chunk * setup.per_chunk,
        model,
        policy,
        market,
        n_blocks=setup.per_chunk,
        steps=setup.steps,
        dt=setup.dt,
        dtype=setup.dtype,
        ruin_floor=setup.ruin_floor,
        n_draws=setup.n_draws,
    )
    specs = thaw_specs(setup.frozen)
    return chunk_arrays(outcome, setup.ctx, specs, stream_plan(specs, setup.ctx, setup.dtype))


@dataclass
class HostChunk:
    """A chunk reduced to host arrays: per-path values of the mean metrics, and each tail search's
    atoms (losses, weights, path index) with padded paths and zero-weight atoms dropped."""

    means: dict[str, np.ndarray]
    tails: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
    first: int  # the chunk's first path
    count: int  # its paths, padding excluded

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.means.values()) + sum(a.nbytes for t in self.tails for a in t)


def _to_host(job: Job, chunk: int, arrays: Any) -> HostChunk:
    means, tails = arrays
    first = chunk * job.chunk_paths
    valid = min(job.chunk_paths, job.paths - first)
    host_means = {k: np.asarray(v, np.float64)[:valid] for k, v in means.items()}
    host_tails = []
    for losses, weights in tails:
        ell, w = np.asarray(losses, np.float64), np.asarray(weights, np.float64)
        local = np.arange(ell.size) % job.chunk_paths
        keep = (local < valid) & (w > 0)
        host_tails.append((ell[keep], w[keep], first + local[keep]))
    return HostChunk(host_means, host_tails, first, valid)


class ChunkRunner:
    """Simulates chunks on ``devices`` round-robin, a few in flight, yielding them in order."""

    def __init__(self, job: Job, devices: Sequence[Any] | None = None) -> None:
        self.job = job
        self.devices = list(devices or jax.devices())
        self._args = {
            i: jax.device_put((job.key, job.model, job.policy, job.market), d)
            for i, d in enumerate(self.devices)
        }

    def _launch(self, chunk: int, slot: int) -> Any:
        key, model, policy, market = self._args[slot]
        index = jax.device_put(np.int32(chunk), self.devices[slot])
        return _chunk_arrays(key, index, model, policy, market, self.job.setup)

    def iterate(self, chunks: Sequence[int]) -> Iterator[tuple[int, HostChunk]]:
        depth = len(self.devices) + 1
        pending: deque = deque()
        for i, chunk in enumerate(chunks):
            pending.append((chunk, self._launch(chunk, i % len(self.devices))))
            if len(pending) >= depth:
                done, arrays = pending.popleft()
                yield done, _to_host(self.job, done, arrays)
        while pending:
            done, arrays = pending.popleft()
            yield done, _to_host(self.job, done, arrays)


@dataclass
class Partial:
    """A task's (or a whole pass's) merged reduction: moments of the mean metrics (first pass only)
    and, per tail search, the groups' partials."""

    means: dict[str, Moments] | None
    tails: list[Any]

    def merge(self, other: Partial) -> Partial:
        means = None
        if self.means is not None:
            means = {k: m.merge(other.means[k]) for k, m in self.means.items()}
        return Partial(means, [merge_tail(a, b) for a, b in zip(self.tails, other.tails, strict=True)])


def reduce_chunk(job: Job, chunk: HostChunk, requests: Sequence[Any], with_means: bool) -> Partial:
    means = {k: Moments.of(v) for k, v in chunk.means.items()} if with_means else None
    tails = [
        reduce_tail(req, ell, w, idx, job.paths, chunk.first, chunk.count)
        for req, (ell, w, idx) in zip(requests, chunk.tails, strict=True)
    ]
    return Partial(means, tails)


def _empty(n_tails: int, with_means: bool, labels: Sequence[str]) -> Partial:
    return Partial({k: Moments() for k in labels} if with_means else None, [None] * n_tails)


def run_task(
    job: Job,
    chunks: Sequence[int],
    requests: Sequence[Any],
    with_means: bool,
    labels: Sequence[str],
    devices: Sequence[Any] | None = None,
) -> Partial:
    """One task's partial: its chunks simulated and reduced in order (what a Ray worker runs)."""
    total = _empty(len(requests), with_means, labels)
    for _, chunk in ChunkRunner(job, devices).iterate(list(chunks)):
        total = total.merge(reduce_chunk(job, chunk, requests, with_means))
    return total


class LocalBackend:
    """Runs the passes in this process over ``devices``, keeping reduced chunks while they fit."""

    def __init__(self, job: Job, labels: Sequence[str], devices: Sequence[Any] | None = None) -> None:
        self.job, self.labels = job, list(labels)
        self.runner = ChunkRunner(job, devices)
        self.kept: dict[int, HostChunk] | None = {}
        self._kept_bytes = 0

    def _keep(self, index: int, chunk: HostChunk) -> None:
        if self.kept is None:
            return
        self._kept_bytes += chunk.nbytes
        if self._kept_bytes > RETAIN_BYTES:
            self.kept = None
        else:
            self.kept[index] = chunk

    def _chunks(self, chunks: Sequence[int]) -> Iterator[tuple[int, HostChunk]]:
        if self.kept is not None and all(c in self.kept for c in chunks):
            yield from ((c, self.kept[c]) for c in chunks)
            return
        for index, chunk in self.runner.iterate(chunks):
            self._keep(index, chunk)
            yield index, chunk

    def pilot(self) -> HostChunk:
        return next(self._chunks([0]))[1]

    def run_pass(self, requests: Sequence[Any], with_means: bool) -> Partial:
        # Chunks stream through the devices across task boundaries; partials merge as in run_task.
        tasks = self.job.tasks()
        stream = self._chunks([c for task in tasks for c in task])
        total = _empty(len(requests), with_means, self.labels)
        for task in tasks:
            current = _empty(len(requests), with_means, self.labels)
            for _ in task:
                _, chunk = next(stream)
                current = current.merge(reduce_chunk(self.job, chunk, requests, with_means))
            total = total.merge(current)
        return total


class RayBackend:
    """Runs each task of a pass as a Ray task (``address``: a running cluster, or None: local)."""

    def __init__(self, job: Job, labels: Sequence[str], address: str | None = None) -> None:
        import ray

        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        # Arrays travel as numpy: a jax array unpickled outside x64 mode would lose its float64.
        host = lambda tree: jax.tree.map(lambda x: np.asarray(x) if isinstance(x, jax.Array) else x, tree)  # noqa: E731
        self.job_ref = ray.put(
            replace(
                job,
                key=host(job.key),
                model=host(job.model),
                policy=host(job.policy),
                market=host(job.market),
            )
        )
        self.job, self.labels = job, list(labels)
        self.task = ray.remote(_ray_task)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()

    def _get(self, refs: list[Any]) -> list[Any]:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, LevoptError):
                raise cause from None
            raise

    def pilot(self) -> HostChunk:
        return self._get([self.ray.remote(_ray_pilot).remote(self.job_ref)])[0]

    def run_pass(self, requests: Sequence[Any], with_means: bool) -> Partial:
        refs = [
            self.task.remote(self.job_ref, list(task), list(requests), with_means, self.labels)
            for task in self.job.tasks()
        ]
        total = _empty(len(requests), with_means, self.labels)
        for part in self._get(refs):
            total = total.merge(part)
        return total


def _ray_task(job: Job, chunks: list[int], requests: list[Any], with_means: bool, labels: list[str]):
    with jax.enable_x64(True):
        return run_task(job, chunks, requests, with_means, labels, devices=jax.devices()[:1])


def _ray_pilot(job: Job) -> HostChunk:
    with jax.enable_x64(True):
        return next(ChunkRunner(job, jax.devices()[:1]).iterate([0]))[1]


def make_job(problem: Problem, key: Any, policy: Policy | None, specs: MetricSpecs) -> Job:
    cfg = problem.cfg
    per_chunk, n_chunks = plan_chunks(cfg.paths, cfg.chunk_size)
    return Job(
        key=key,
        model=problem.model,
        policy=problem.policy if policy is None else policy,
        market=problem.market,
        paths=cfg.paths,
        n_chunks=n_chunks,
        setup=ChunkSetup(
            per_chunk,
            cfg.steps,
            cfg.dt,
            problem.dtype,
            cfg.ruin_floor,
            problem.n_draws,
            problem.ctx,
            freeze_specs(specs),
        ),
    )


@scoped_x64
def estimate(
    problem: Problem,
    key: Any,
    policy: Policy | None = None,
    extra: MetricSpecs | None = None,
    *,
    executor: str = "local",
    address: str | None = None,
    devices: Sequence[Any] | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``{"metrics", "stderr"}`` of the config's metrics (plus ``extra``) on ``problem.cfg.paths``
    paths drawn from ``key``, in memory bounded by ``chunk_size`` (see the module docstring).

    Metrics that need every outcome at once (user statistics without a
    :class:`~levopt.objectives.TailForm`) are computed in memory instead. ``info``, if given,
    receives ``passes`` (simulations of the paths: 1 unless a quantile fell outside its window and
    the chunks were not kept), ``chunks`` and ``devices``.
    """
    check_executor(executor, address)
    specs, _ = report_specs(problem.cfg, extra or {})
    plan = stream_plan(specs, problem.ctx, problem.dtype)
    if not plan.streamable:
        outcome = problem.simulate(key, policy=policy)
        values, errors = evaluate_metrics(outcome, problem.ctx, specs)
        return {"metrics": values, "stderr": errors}
    job = make_job(problem, key, policy, specs)
    backend = (
        RayBackend(job, plan.means, address) if executor == "ray" else LocalBackend(job, plan.means, devices)
    )
    info = {} if info is None else info
    info.update(chunks=job.n_chunks, devices=len(devices or jax.devices()) if executor == "local" else None)
    try:
        return _passes(job, plan, specs, backend, info)
    finally:
        if isinstance(backend, RayBackend):
            backend.close()


def _passes(
    job: Job, plan: StreamPlan, specs: MetricSpecs, backend: Any, info: dict[str, Any]
) -> dict[str, Any]:
    """One pass for everything (the quantiles from windows around the pilot's); further
    histogram passes only for a quantile that fell outside its window."""
    searches = [TailSearch(level, job.paths) for _, _, level in plan.tails.values()]
    requests: list[Any] = []
    if searches:
        pilot = backend.pilot()
        for search, (ell, w, _) in zip(searches, pilot.tails, strict=True):
            requests.append(WindowRequest.from_pilot(ell, w, search.level, pilot.count))
    first = backend.run_pass(requests, with_means=True)
    info["passes"] = 1
    for search, windows in zip(searches, first.tails, strict=True):
        search.adopt(windows)
    if not all(s.done for s in searches):
        for search, (ell, w, _) in zip(searches, pilot.tails, strict=True):
            search.start(ell, w, pilot.count)
    for _ in range(MAX_PASSES):
        if all(s.done for s in searches):
            break
        more = backend.run_pass([s.request() for s in searches], with_means=False)
        info["passes"] += 0 if getattr(backend, "kept", None) else 1
        for search, parts in zip(searches, more.tails, strict=True):
            search.resolve(parts)
    else:  # pragma: no cover - each pass divides the interval by REFINE_BINS
        raise RuntimeError("the quantile search did not converge")
    index = {key: i for i, key in enumerate(plan.tails)}
    values, errors = {}, {}
    for label in specs:
        if label in plan.tail_of:
            key, statistic = plan.tail_of[label]
            search = searches[index[key]]
            values[label], errors[label] = search.value(statistic), search.stderr(statistic)
        else:
            moments = first.means[label]
            values[label], errors[label] = moments.mean, moments.stderr
    return {"metrics": values, "stderr": errors}
