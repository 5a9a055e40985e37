r"""Metrics of any number of paths in memory bounded by one chunk: mergeable partial results.

Paths are simulated chunk by chunk; each chunk is reduced to a small *partial* and partials are
merged. Merging is deterministic given the order, so the same partition of the paths into chunks
and tasks gives bit-identical numbers whether the chunks run on one device, several devices or Ray
workers (:mod:`levopt.estimate` fixes that partition from the path count and chunk size alone).

Means (``aggregate="mean"``) are running moments :class:`Moments` (count, mean, sum of squared
deviations), merged with Chan, Golub and LeVeque's pairwise update, so the standard error
sqrt(M2 / (n - 1)) / sqrt(n) needs no second pass and is numerically stable.

Quantile statistics (a :class:`~levopt.objectives.TailForm`: VaR and CVaR of loss atoms) are found
*exactly* by regenerating the atoms from their counter-based keys in further passes:

1. A pilot chunk fixes histogram edges around the level's quantile (its atoms whose cumulative
   probability lies within a few binomial standard errors of the level).
2. Pass 1 histograms every atom: weight, weighted loss, count, min and max per bin. The bin where
   the cumulative weight reaches ``level`` holds the quantile; the weight below it and the weight
   and weighted loss above it are now known exactly.
3. Pass 2 collects the atoms of that bin alone (a few thousand at 10⁸ paths) and sorts them: the
   quantile a is the first atom whose cumulative weight reaches ``level`` (as
   :func:`levopt.objectives.metrics.weighted_var` on all atoms at once) and
   CVaR = a + [Σ_above w (ℓ − a) + Σ_bin w (ℓ − a)_+] / (W (1 − level)) (Rockafellar–Uryasev at its
   minimizer, as :func:`levopt.objectives.metrics.conditional_value_at_risk`).

A bin with more atoms than :data:`COLLECT_CAP` is subdivided in another histogram pass (each divides
its width by :data:`REFINE_BINS`); a bin whose atoms all tie is resolved at once. The standard error
comes from batch means, as in memory: the statistic on ``STDERR_BATCHES`` contiguous groups of
paths (group g holds paths [g n, (g + 1) n), n = paths // groups), each group searched alongside the
whole sample.

References:
    T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample variance",
    The American Statistician 37(3), 1983.
    R. T. Rockafellar, S. Uryasev, "Optimization of conditional value-at-risk", J. Risk 2(3), 2000.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.engine import Outcome
from levopt.objectives._base import STDERR_BATCHES, Context, MetricSpecs, get_metric, hashable

COLLECT_CAP = 1 << 18
"""Most atoms one group's quantile bin may hold to be collected; more are subdivided first."""
REFINE_BINS = 4096
PILOT_SPREAD = 6.0
"""Half-width of the pilot's window around the level, in binomial standard errors of the pilot."""
MAX_EDGES = 8192


# --- which metrics stream, and how ---------------------------------------------------------------


@dataclass(frozen=True)
class StreamPlan:
    """How each reported metric is computed in a stream.

    Attributes:
        means: labels of per-path metrics (running moments).
        tails: search key -> (metric name, atom options, level): one quantile search serves every
            VaR and CVaR label on the same atoms and level.
        tail_of: label -> (search key, "var" | "cvar").
        other: labels that need every outcome at once (statistics without a :class:`TailForm`).
    """

    means: tuple[str, ...]
    tails: dict[tuple, tuple[str, dict[str, Any], float]]
    tail_of: dict[str, tuple[tuple, str]]
    other: tuple[str, ...]

    @property
    def streamable(self) -> bool:
        return not self.other


def _dummy_outcome(dtype: Any) -> Outcome:
    f = jax.ShapeDtypeStruct((64,), dtype)
    return Outcome(
        f, jax.ShapeDtypeStruct((64,), bool), jax.ShapeDtypeStruct((64,), jnp.int32), f, f, f, f, f
    )


def stream_plan(specs: MetricSpecs, ctx: Context, dtype: Any) -> StreamPlan:
    means, other, tails, tail_of = [], [], {}, {}
    for label, (name, options) in specs.items():
        metric = get_metric(name)
        if metric.tail is not None:
            atom_opts = {k: v for k, v in options.items() if k != "level"}
            level = float(options.get("level", metric.defaults().get("level")))
            atoms = metric.tail.atoms
            key = (f"{atoms.__module__}.{atoms.__qualname__}", hashable(atom_opts), level)
            tails.setdefault(key, (name, atom_opts, level))
            tail_of[label] = (key, metric.tail.statistic)
            continue
        per_path = metric.aggregate == "mean"
        if metric.aggregate == "auto":
            shape = jax.eval_shape(lambda o, m=metric, op=options: m.fn(o, ctx, **op), _dummy_outcome(dtype))
            per_path = len(shape.shape) > 0
        (means if per_path else other).append(label)
    return StreamPlan(tuple(means), tails, tail_of, tuple(other))


def chunk_arrays(
    outcome: Outcome, ctx: Context, specs: MetricSpecs, plan: StreamPlan
) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
    """Traceable per-path values of the mean metrics (by label) and the loss atoms of each tail
    search (in the order of ``plan.tails``)."""
    means = {}
    for label in plan.means:
        name, options = specs[label]
        means[label] = get_metric(name).fn(outcome, ctx, **options)
    tails = [get_metric(name).tail.atoms(outcome, ctx, **opts) for name, opts, _ in plan.tails.values()]
    return means, tails


# --- running moments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Moments:
    """Count, mean and sum of squared deviations of a stream of values (float64)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        v = np.asarray(values, np.float64)
        if v.size == 0:
            return cls()
        mean = float(np.mean(v))
        return cls(int(v.size), mean, float(np.sum(np.square(v - mean))))

    def merge(self, other: Moments) -> Moments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        return Moments(
            n,
            self.mean + delta * other.n / n,
            self.m2 + other.m2 + delta * delta * self.n * other.n / n,
        )

    @property
    def stderr(self) -> float:
        return math.sqrt(self.m2 / (self.n - 1) / self.n) if self.n > 1 else math.nan


# --- exact quantiles in passes ------------------------------------------------------------------


@dataclass
class _Search:
    """One group's search for its quantile: the candidate interval [lo, hi) and what lies outside."""

    lo: float = -math.inf
    hi: float = math.inf
    below: float = 0.0
    above_w: float = 0.0
    above_wl: float = 0.0
    edges: np.ndarray | None = None  # histogram edges inside [lo, hi); None: collect the atoms
    total: float = math.nan  # all the group's weight (known after the first pass)
    quantile: float | None = None
    inside: float = 0.0  # Σ w (ℓ − a)_+ over the interval's atoms, once resolved


@dataclass
class GroupPartial:
    """One group's reduction of some atoms: a histogram on its edges, or the collected atoms."""

    w: np.ndarray | None = None
    wl: np.ndarray | None = None
    n: np.ndarray | None = None
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None
    losses: list[np.ndarray] = field(default_factory=list)
    weights: list[np.ndarray] = field(default_factory=list)

    def merge(self, other: GroupPartial) -> GroupPartial:
        if other.w is not None:
            if self.w is None:
                return GroupPartial(other.w, other.wl, other.n, other.lo, other.hi)
            return GroupPartial(
                self.w + other.w,
                self.wl + other.wl,
                self.n + other.n,
                np.minimum(self.lo, other.lo),
                np.maximum(self.hi, other.hi),
            )
        return GroupPartial(losses=self.losses + other.losses, weights=self.weights + other.weights)


def merge_partials(a: dict[int, GroupPartial], b: dict[int, GroupPartial]) -> dict[int, GroupPartial]:
    out = dict(a)
    for g, part in b.items():
        out[g] = out[g].merge(part) if g in out else part
    return out


@dataclass(frozen=True)
class PassRequest:
    """What one pass asks of every chunk for one tail search, per group: the interval [lo, hi) and
    its histogram edges, or ``"collect"`` (keep the interval's atoms), or None (resolved: skip)."""

    lo: np.ndarray
    hi: np.ndarray
    modes: tuple[np.ndarray | str | None, ...]


class TailSearch:
    """The exact VaR and CVaR at ``level`` of a stream of weighted loss atoms, for the whole sample
    (group 0) and each batch group (1..``STDERR_BATCHES``), found in passes (module docstring)."""

    def __init__(self, level: float, paths: int) -> None:
        self.level = level
        self.paths = paths
        self.group_size = paths // STDERR_BATCHES
        self.n_groups = 1 + (STDERR_BATCHES if self.group_size >= 2 else 0)
        self.searches = [_Search() for _ in range(self.n_groups)]

    # -- the first edges -----------------------------------------------------------------------

    def start(self, losses: np.ndarray, weights: np.ndarray, pilot_paths: int) -> None:
        """Histogram edges from a pilot chunk's atoms: every distinct loss whose cumulative
        probability lies within :data:`PILOT_SPREAD` binomial standard errors of the level."""
        keep = weights > 0
        losses, weights = losses[keep], weights[keep]
        order = np.argsort(losses, kind="stable")
        losses, cum = losses[order], np.cumsum(weights[order])
        frac = cum / cum[-1] if cum.size else cum
        half = PILOT_SPREAD * math.sqrt(self.level * (1 - self.level) / max(pilot_paths, 1)) + 4.0 / max(
            pilot_paths, 1
        )
        window = losses[(frac >= self.level - half) & (frac <= self.level + half)]
        edges = np.unique(window if window.size >= 2 else losses)
        if edges.size > MAX_EDGES:
            edges = edges[np.linspace(0, edges.size - 1, MAX_EDGES).round().astype(int)]
        for s in self.searches:
            s.edges = edges

    # -- one pass ------------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return all(s.quantile is not None for s in self.searches)

    def request(self) -> PassRequest:
        modes = [
            None if s.quantile is not None else "collect" if s.edges is None else s.edges
            for s in self.searches
        ]
        return PassRequest(
            np.array([s.lo for s in self.searches]), np.array([s.hi for s in self.searches]), tuple(modes)
        )

    def resolve(self, parts: Mapping[int, GroupPartial]) -> None:
        """Narrow each unresolved group's interval with a pass's merged result."""
        for g, s in enumerate(self.searches):
            if s.quantile is not None:
                continue
            part = parts.get(g, GroupPartial())
            if s.edges is None:
                self._finish(s, part)
            else:
                self._narrow(s, part)

    def _narrow(self, s: _Search, part: GroupPartial) -> None:
        nb = s.edges.size + 1
        w = part.w if part.w is not None else np.zeros(nb)
        wl = part.wl if part.wl is not None else np.zeros(nb)
        count = part.n if part.n is not None else np.zeros(nb, np.int64)
        if math.isnan(s.total):
            s.total = float(np.sum(w))
        target = self.level * s.total
        cum = s.below + np.cumsum(w)
        b = min(int(np.searchsorted(cum, target)), nb - 1)
        while count[b] == 0 and b > 0:  # rounding left the target past the last occupied bin
            b -= 1
        bounds = np.concatenate([[s.lo], s.edges, [s.hi]])
        s.below = float(cum[b - 1]) if b else s.below
        s.above_w += float(np.sum(w[b + 1 :]))
        s.above_wl += float(np.sum(wl[b + 1 :]))
        s.lo, s.hi = float(bounds[b]), float(bounds[b + 1])
        if count[b] <= COLLECT_CAP:
            s.edges = None
        elif part.lo[b] == part.hi[b]:
            s.quantile, s.inside = float(part.lo[b]), 0.0  # all tie: (ℓ − a)_+ = 0 inside
        else:
            lo, hi = float(part.lo[b]), float(part.hi[b])
            s.edges = np.unique(np.linspace(lo, hi, REFINE_BINS + 1)[1:])

    def _finish(self, s: _Search, part: GroupPartial) -> None:
        losses = np.concatenate(part.losses) if part.losses else np.zeros(0)
        weights = np.concatenate(part.weights) if part.weights else np.zeros(0)
        if losses.size == 0:
            s.quantile, s.inside = s.lo, 0.0
            return
        order = np.argsort(losses, kind="stable")
        losses, weights = losses[order], weights[order]
        cum = s.below + np.cumsum(weights)
        idx = min(int(np.searchsorted(cum, self.level * s.total)), losses.size - 1)
        a = float(losses[idx])
        s.quantile, s.inside = a, float(np.sum(weights * np.maximum(losses - a, 0.0)))

    # -- results -------------------------------------------------------------------------------

    def _cvar(self, s: _Search) -> float:
        a = s.quantile
        tail = s.above_wl - a * s.above_w + s.inside
        return a + tail / (s.total * (1.0 - self.level))

    def value(self, statistic: str, group: int = 0) -> float:
        s = self.searches[group]
        return s.quantile if statistic == "var" else self._cvar(s)

    def stderr(self, statistic: str) -> float:
        if self.n_groups == 1:
            return math.nan
        values = [self.value(statistic, g) for g in range(1, self.n_groups)]
        return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def reduce_atoms(
    request: PassRequest, losses: np.ndarray, weights: np.ndarray, path_index: np.ndarray, group_size: int
) -> dict[int, GroupPartial]:
    """One chunk's atoms reduced for one tail search's pass (groups with nothing to do left out).

    ``path_index`` gives each atom's path; atoms of padded paths must already be dropped.
    """
    n_groups = request.lo.size
    if n_groups > 1:
        batch = path_index // group_size + 1
        batch[batch > n_groups - 1] = 0  # the remainder paths belong to the whole sample only
        groups = [0, *np.unique(batch[batch > 0]).tolist()]
    else:
        batch, groups = None, [0]
    out: dict[int, GroupPartial] = {}
    for g in groups:
        mode = request.modes[g]
        if mode is None:
            continue
        mask = (losses >= request.lo[g]) & (losses < request.hi[g])
        if g:
            mask &= batch == g
        ell, w = losses[mask], weights[mask]
        if isinstance(mode, str):
            out[g] = GroupPartial(losses=[ell], weights=[w])
        else:
            out[g] = _histogram(mode, ell, w)
    return out


def _histogram(edges: np.ndarray, ell: np.ndarray, w: np.ndarray) -> GroupPartial:
    nb = edges.size + 1
    idx = np.searchsorted(edges, ell, side="right")
    lo = np.full(nb, np.inf)
    hi = np.full(nb, -np.inf)
    np.minimum.at(lo, idx, ell)
    np.maximum.at(hi, idx, ell)
    return GroupPartial(
        w=np.bincount(idx, w, nb),
        wl=np.bincount(idx, w * ell, nb),
        n=np.bincount(idx, minlength=nb),
        lo=lo,
        hi=hi,
    )
