"""Sweeps: a grid (and zips) over config keys, batched, sharded, resumable, optionally on Ray.

A config's ``sweep:`` block maps dotted config keys to lists of values::

    sweep:
      model.sigma: [0.4, 0.6, 0.8]          # grid keys: every combination
      market.borrow_rate: [0.0, 0.1, 0.2]
      zip: {model.mu: [0.1, 0.2], policy.leverage: [2, 3]}   # zipped keys: walked together

Each point is the base config with its values set. Every finished point is written at once to
``DIR/points/<point_id>/results.json`` (atomically) and ``DIR/results.parquet`` is rebuilt from
them, so an interrupted sweep loses nothing and ``resume`` skips finished points. ``point_id`` is
a hash of the point's resolved config, so a changed config never reuses stale results. ``sweep.json``
records the sweep's config: a directory holding another sweep (or a single run) is refused before
anything runs, unless ``force``.

Points without an ``objective`` are evaluated; points that differ only in numbers (same model,
policy and sizes) run as one ``vmap``-ped computation, sharded over all local JAX devices. Points
with an objective are optimized one by one (one thread per device), or as Ray tasks.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import json
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from levopt.config import Config, config_dir, load_config, set_dotted
from levopt.engine import MarketConfig, simulate_outcome
from levopt.errors import ConfigError, LevoptError
from levopt.estimate import check_executor
from levopt.io import atomic_write_bytes, write_json
from levopt.objectives import freeze_specs, metric_arrays, thaw_specs
from levopt.outputs import claim_run_dir
from levopt.paths import MODELS
from levopt.policies import POLICIES
from levopt.precision import scoped_x64
from levopt.problem import STREAM_PATHS, Problem, versions
from levopt.results import EvaluateResult, SweepMeta, SweepRow, read_result
from levopt.runner import build, evaluate, run

MAX_BATCH_PATHS = 1 << 17
"""Paths x points simulated at once in an evaluation batch (memory bound)."""


@dataclass(frozen=True)
class Point:
    """One sweep point: its index, the swept values, its config (a plain dict) and its id."""

    index: int
    values: dict[str, Any]
    config: dict[str, Any]
    point_id: str


def _grid_points(sweep: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    sweep = dict(sweep)
    zipped = sweep.pop("zip", None) or {}
    grid = sweep.pop("grid", None) or {}
    grid = {**grid, **sweep}
    if not isinstance(zipped, dict) or not isinstance(grid, dict):
        raise ConfigError(
            "sweep", "must map dotted config keys to lists of values (and optionally zip: {...})"
        )
    for key, values in {**grid, **zipped}.items():
        if not isinstance(values, list):
            raise ConfigError(f"sweep.{key}", f"must be a list of values, got {values!r}")
        if not values:
            raise ConfigError(f"sweep.{key}", "empty list: give at least one value")
    lengths = {len(v) for v in zipped.values()}
    if len(lengths) > 1:
        raise ConfigError("sweep.zip", f"zipped lists must have equal lengths, got {sorted(lengths)}")
    if not grid and not zipped:
        raise ConfigError("sweep", "empty sweep: give at least one key with a list of values")
    keys = list(grid) + list(zipped)
    zip_rows = [dict(zip(zipped, row, strict=True)) for row in zip(*zipped.values(), strict=True)] or [{}]
    points = []
    for combo in itertools.product(*grid.values()):
        for zrow in zip_rows:
            points.append({**dict(zip(grid, combo, strict=True)), **zrow})
    return keys, points


def point_id(resolved: dict[str, Any]) -> str:
    blob = json.dumps(resolved, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def expand(config: Config) -> tuple[list[str], list[Point]]:
    """The sweep's keys and its points (each a validated config dict)."""
    if config.sweep is None:
        raise ConfigError("sweep", "the config has no sweep block")
    keys, rows = _grid_points(config.sweep)
    base = config.model_dump(mode="json", exclude_none=True)
    base.pop("sweep", None)
    points = []
    for i, values in enumerate(rows):
        data = copy.deepcopy(base)
        for key, value in values.items():
            _check_key_exists(base, key)
            set_dotted(data, key, value)
        try:
            cfg = load_config(data)
        except ConfigError as exc:
            raise ConfigError(f"sweep point {i} ({_describe(values)})", str(exc)) from None
        points.append(Point(i, values, data, point_id(cfg.resolved())))
    return keys, points


def _check_key_exists(base: dict[str, Any], key: str) -> None:
    """A sweep key must name a config key (or a key of a section that takes free-form keys)."""
    head, *rest = key.split(".")
    if head not in Config.model_fields or head == "sweep":
        allowed = ", ".join(k for k in Config.model_fields if k != "sweep")
        raise ConfigError(f"sweep.{key}", f"unknown config key {head!r}; allowed top-level keys: {allowed}")
    if not rest:
        return
    section = base.get(head) or {}
    fields: dict[str, Any] | None = None
    if head == "market":
        fields = MarketConfig.model_fields
    elif head == "model" and section.get("kind") in MODELS:
        fields = MODELS.get(section["kind"]).Config.model_fields | {"calibrate": None, "uncertainty": None}
    elif head == "policy" and section.get("kind") in POLICIES:
        fields = POLICIES.get(section["kind"]).Config.model_fields
    if fields is not None and rest[0] not in fields:
        raise ConfigError(f"sweep.{key}", f"unknown key in {head}; allowed: {', '.join(fields)}")


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


# ---------------------------------------------------------------------------------------------
# Computing points


def compute_point(config: dict[str, Any], base_dir: str | Path = ".") -> dict[str, Any]:
    """Result of one point: ``levopt.run`` when it has an objective, else ``levopt.evaluate``.

    A plain function of plain data, so Ray workers can run it.
    """
    cfg = load_config(config)
    # Sweep points skip the plot-only profiles: the sweep's own plots read results.parquet.
    if cfg.objective is not None:
        return run(cfg, profiles=False, base_dir=base_dir)
    return evaluate(cfg, base_dir=base_dir)


def compute_unit(
    configs: list[dict[str, Any]], base_dir: str | Path = ".", pad_to: int = 1
) -> list[dict[str, Any]]:
    """Results of a work unit: one optimized or large point, or evaluation points of one structure
    (batched)."""
    if len(configs) == 1:
        cfg = load_config(configs[0])
        if cfg.objective is not None or cfg.paths > MAX_BATCH_PATHS:
            return [compute_point(configs[0], base_dir)]
    return evaluate_batch([build(c, base_dir=base_dir) for c in configs], pad_to=pad_to)


def _structure(problem: Any) -> tuple:
    leaves, treedef = jax.tree.flatten((problem.model, problem.policy, problem.market))
    cfg = problem.cfg
    return (
        treedef,
        tuple((np.shape(x), str(np.asarray(x).dtype)) for x in leaves),
        cfg.paths,
        cfg.steps,
        cfg.dt,
        cfg.precision,
        cfg.chunk_size,
        cfg.seed,
        cfg.ruin_floor,
        json.dumps(cfg.metric_specs(), sort_keys=True),
        problem.n_draws,
        "calibrate" in cfg.model,
    )


@partial(jax.jit, static_argnums=(2,))
def _evaluate_stacked(key: jax.Array, stacked: Any, setup: tuple) -> Any:
    """Metrics of stacked (model, policy, market) points; ``setup`` holds the static settings."""
    paths, steps, dt, dtype, ruin_floor, chunk_size, n_draws, ctx, frozen = setup
    specs = thaw_specs(frozen)

    def one(item):
        model, policy, market = item
        outcome = simulate_outcome(
            key,
            model,
            policy,
            market,
            paths=paths,
            steps=steps,
            dt=dt,
            dtype=dtype,
            ruin_floor=ruin_floor,
            chunk_size=chunk_size,
            n_draws=n_draws,
        )
        return metric_arrays(outcome, ctx, specs)

    return jax.vmap(one)(stacked)


@scoped_x64
def evaluate_batch(
    problems: list[Problem], devices: list[Any] | None = None, pad_to: int = 1
) -> list[dict[str, Any]]:
    """Evaluate points of equal structure as one vmapped computation, sharded over ``devices``.

    Each point's numbers equal those of :func:`levopt.evaluate` on its own config: the same key
    and the same per-path random numbers (common random numbers across points). The batch is
    padded to a multiple of ``pad_to`` and of the device count, so equal batches share one program.
    """
    first = problems[0]
    cfg = first.cfg
    specs = cfg.metric_specs()
    devices = devices or jax.devices()
    n = len(problems)
    padded = math.ceil(max(n, pad_to) / len(devices)) * len(devices)
    items = [(p.model, p.policy, p.market) for p in problems]
    items += [items[-1]] * (padded - n)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *items)
    if len(devices) > 1:
        mesh = Mesh(np.asarray(devices), ("points",))
        stacked = jax.device_put(stacked, NamedSharding(mesh, PartitionSpec("points")))
    setup = (
        cfg.paths,
        cfg.steps,
        cfg.dt,
        first.dtype,
        cfg.ruin_floor,
        cfg.chunk_size,
        first.n_draws,
        first.ctx,
        freeze_specs(specs),
    )
    t0 = time.perf_counter()
    values, errors = jax.block_until_ready(_evaluate_stacked(first.key(STREAM_PATHS), stacked, setup))
    wall = (time.perf_counter() - t0) / n
    values, errors = jax.tree.map(np.asarray, (values, errors))
    out = []
    for i, problem in enumerate(problems):
        out.append(
            EvaluateResult(
                metrics={k: float(values[k][i]) for k in specs},
                stderr={k: float(errors[k][i]) for k in specs},
                config=problem.cfg.resolved(),
                seed=problem.cfg.seed,
                versions=versions(),
                timings={"simulate_s": wall, "total_s": wall, "batch_points": n, "devices": len(devices)},
            ).to_dict()
        )
    return out


# ---------------------------------------------------------------------------------------------
# The sweep driver


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    arr = np.asarray(value)
    if arr.ndim == 0:
        yield prefix, arr.item()
        return
    for idx in np.ndindex(arr.shape):
        yield f"{prefix}[{','.join(map(str, idx))}]", arr[idx].item()


def result_row(point: Point, result: dict[str, Any]) -> dict[str, Any]:
    """One results.parquet row: point values, policy, metrics, standard errors and timings."""
    row: dict[str, Any] = {"point": point.index, "point_id": point.point_id}
    row.update({k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in point.values.items()})
    if "policy" in result:
        policy = result["policy"]
        source = "out_of_sample"
        row["converged"] = bool(result["optimizer"]["converged"])
        row["iterations"] = result["optimizer"]["iterations"]
        for c in result.get("constraints", []):
            row[f"constraints.{c['metric']}.satisfied"] = bool(c["satisfied"])
    else:
        policy = {k: v for k, v in result["config"]["policy"].items() if isinstance(v, int | float | list)}
        source = None
    for name, value in policy.items():
        if name == "rebalance" or isinstance(value, str):
            continue
        row.update(dict(_flatten(f"policy.{name}", value)))
    metrics = result[source] if source else result
    row.update({f"metrics.{k}": v for k, v in metrics["metrics"].items()})
    row.update({f"stderr.{k}": v for k, v in metrics["stderr"].items()})
    row["wall_s"] = result.get("optimizer", {}).get("wall_s", result.get("timings", {}).get("total_s"))
    SweepRow.model_validate(row)
    return row


class SweepRunner:
    """Runs a sweep into ``out_dir``; see the module docstring."""

    def __init__(
        self,
        config: Config,
        out_dir: Path,
        *,
        resume: bool = False,
        executor: str = "local",
        address: str | None = None,
        limit: int | None = None,
        batch: int | None = None,
        base_dir: str | Path = ".",
        force: bool = False,
    ):
        check_executor(executor, address)
        self.config, self.out_dir, self.resume, self.executor = config, Path(out_dir), resume, executor
        self.address, self.limit, self.batch, self.force = address, limit, batch, force
        self.base_dir = Path(base_dir)
        self.keys, self.points = expand(config)
        self.computed = 0
        self._rows: dict[str, dict[str, Any]] = {}
        # Before anything runs: --out is a writable directory holding nothing or this sweep
        # (sweep.json records its config); a different run or sweep there needs force.
        claim_run_dir(
            self.out_dir,
            "--out",
            kind="sweep",
            identity=config.model_dump(mode="json", exclude_none=True),
            force=force,
        )
        done = self.finished()
        if done and not resume and not force:
            raise ConfigError(
                "--out",
                f"{self.out_dir} already holds {len(done)} finished point(s) of this sweep; "
                "pass --resume to continue it, --force to compute them again, or choose another --out",
            )

    def point_file(self, point: Point) -> Path:
        return self.out_dir / "points" / point.point_id / "results.json"

    def finished(self) -> set[str]:
        return {p.point_id for p in self.points if self.point_file(p).is_file()}

    @scoped_x64
    def run(self, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        # --force without --resume recomputes every point (their files are overwritten).
        done = set() if self.force and not self.resume else self.finished()
        write_json(
            self.out_dir / "sweep.json",
            SweepMeta(
                keys=self.keys,
                mode="grid",
                points=len(self.points),
                config=self.config.model_dump(mode="json", exclude_none=True),
                point_ids=[p.point_id for p in self.points],
            ).to_dict(),
        )
        todo = [p for p in self.points if p.point_id not in done]
        if self.limit is not None:
            todo = todo[: self.limit]
        total = len(todo)
        if progress:
            progress(0, total)
        if self.executor == "ray":
            self._run_ray(todo, progress)
        else:
            self._run_local(todo, progress)
        return self.write_table()

    def _store(self, point: Point, result: dict[str, Any]) -> None:
        write_json(
            self.point_file(point), result | {"sweep_point": {"index": point.index, "values": point.values}}
        )
        self.computed += 1
        self._rows[point.point_id] = result_row(point, result)
        self.write_table()

    def write_table(self) -> pd.DataFrame:
        """Rewrite results.parquet (atomically) from every finished point."""
        for p in self.points:
            if p.point_id not in self._rows and self.point_file(p).is_file():
                self._rows[p.point_id] = result_row(p, read_result(self.point_file(p)).to_dict())
        frame = pd.DataFrame([self._rows[p.point_id] for p in self.points if p.point_id in self._rows])
        if not frame.empty:
            frame = frame.sort_values("point").reset_index(drop=True)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(self.out_dir / "results.parquet", buffer.getvalue())
        return frame

    def units(self, todo: list[Point], parts: int = 1) -> list[tuple[list[Point], int, list[Any] | None]]:
        """Work units ``(points, pad_to, problems)``: evaluation points grouped by structure into
        equal-size batches (one compiled program per group); optimized points, and points with more
        paths than a batch holds (streamed by :func:`levopt.evaluate` in bounded memory), alone."""
        groups: dict[tuple, list[tuple[Point, Any]]] = {}
        units: list[tuple[list[Point], int, list[Any] | None]] = []
        for p in todo:
            if p.config.get("objective") is not None:
                units.append(([p], 1, None))
                continue
            problem = build(p.config, base_dir=self.base_dir)
            if problem.cfg.paths > MAX_BATCH_PATHS:
                units.append(([p], 1, None))
                continue
            groups.setdefault(_structure(problem), []).append((p, problem))
        for members in groups.values():
            cfg = members[0][1].cfg
            size = self.batch or max(1, MAX_BATCH_PATHS // min(cfg.paths, cfg.chunk_size))
            size = min(size, math.ceil(len(members) / parts))
            size = math.ceil(len(members) / math.ceil(len(members) / size))
            for i in range(0, len(members), size):
                chunk = members[i : i + size]
                units.append(([m[0] for m in chunk], size, [m[1] for m in chunk]))
        return units

    def _run_local(self, todo: list[Point], progress: Callable[[int, int], None] | None) -> None:
        devices = jax.devices()
        finished = 0

        def report(done: list[tuple[Point, dict[str, Any]]]) -> None:
            nonlocal finished
            for point, result in done:
                self._store(point, result)
                finished += 1
                if progress:
                    progress(finished, len(todo))

        def optimize_one(i: int, point: Point) -> list[tuple[Point, dict[str, Any]]]:
            with jax.default_device(devices[i % len(devices)]):
                return [(point, compute_point(point.config, self.base_dir))]

        units = self.units(todo)
        for points, pad_to, problems in units:
            if problems is not None:
                # Batches shard over all devices themselves.
                report(list(zip(points, evaluate_batch(problems, pad_to=pad_to), strict=True)))
        singles = [points[0] for points, _, problems in units if problems is None]
        with ThreadPoolExecutor(max_workers=len(devices)) as pool:
            for done in pool.map(lambda ip: optimize_one(*ip), enumerate(singles)):
                report(done)

    def _run_ray(self, todo: list[Point], progress: Callable[[int, int], None] | None) -> None:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(
                address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False
            )
        try:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
            task = ray.remote(compute_unit)
            pending = {
                task.remote([p.config for p in points], str(self.base_dir), pad_to): points
                for points, pad_to, _ in self.units(todo, parts=workers)
            }
            finished = 0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                points = pending.pop(ready[0])
                try:
                    results = ray.get(ready[0])
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, LevoptError):
                        raise cause from None
                    raise
                for point, result in zip(points, results, strict=True):
                    self._store(point, result)
                    finished += 1
                    if progress:
                        progress(finished, len(todo))
        finally:
            if started:
                ray.shutdown()


def run_sweep(
    config: Config | dict | str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    executor: str = "local",
    address: str | None = None,
    limit: int | None = None,
    base_dir: str | Path | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Run (or resume) a config's sweep into ``out_dir`` and return the results table.

    Relative data paths resolve against ``base_dir`` (default: the config file's directory).
    ``out_dir`` holding another run or a sweep of another config is an error unless ``force``.
    """
    cfg = load_config(config)
    return SweepRunner(
        cfg,
        Path(out_dir),
        resume=resume,
        executor=executor,
        address=address,
        limit=limit,
        base_dir=config_dir(config, base_dir),
        force=force,
    ).run()
