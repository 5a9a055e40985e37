r"""Metrics of any number of paths in memory bounded by one chunk: mergeable partial results.

Paths are simulated chunk by chunk; each chunk is reduced to a small *partial* and partials are
merged. Merging is deterministic given the order, so the same partition of the paths into chunks
and tasks gives bit-identical numbers whether the chunks run on one device, several devices or Ray
workers (:mod:`levopt.estimate` fixes that partition from the path count and chunk size alone).

Means (``aggregate="mean"``) are running moments :class:`Moments` (count, mean, sum of squared
deviations), merged with Chan, Golub and LeVeque's pairwise update, so the standard error
sqrt(M2 / (n - 1)) / sqrt(n) needs no second pass and is numerically stable.

Quantile statistics (a :class:`~levopt.objectives.TailForm`: VaR and CVaR of loss atoms) are
*exact*, in one pass in all but rare cases:

1. A pilot chunk gives a window [lo, hi) of losses around the level's quantile: the pilot's atoms
   whose cumulative probability lies within :data:`PILOT_SPREAD` binomial standard errors of the
   level (:class:`WindowRequest`).
2. The pass keeps every atom inside the window and only sums the rest: the weight below, the weight
   and weighted loss above (:class:`Window`). Windows merge by intersection and narrow as paths
   arrive to the same number of standard errors of the paths seen, so O(sqrt(paths)) atoms are kept.
3. If the final quantile lies inside the window it is found exactly: the first kept atom whose
   cumulative weight (from the weight below) reaches ``level`` (as
   :func:`levopt.objectives.metrics.weighted_var` on all atoms at once), and
   CVaR = a + [Σ_above w (ℓ − a) + Σ_window w (ℓ − a)_+] / (W (1 − level)) (Rockafellar–Uryasev at
   its minimizer, as :func:`levopt.objectives.metrics.conditional_value_at_risk`).
4. Otherwise (the quantile left the window: a many-standard-error event, or a pilot of another
   sample) :class:`TailSearch` finds it exactly in further passes that regenerate the atoms from
   their counter-based keys: a histogram on edges from the pilot gives the bin holding the
   quantile, the weight below it and the weight and weighted loss above it; a second pass collects
   that bin's atoms. A bin with more atoms than :data:`COLLECT_CAP` is subdivided in another
   histogram pass (each divides its width by :data:`REFINE_BINS`); a bin whose atoms all tie is
   resolved at once.

The standard error comes from batch means, as in memory: the statistic on ``STDERR_BATCHES``
contiguous groups of paths (group g holds paths [g n, (g + 1) n), n = paths // groups), each
group searched alongside the whole sample.

References:
    T. F. Chan, G. H. Golub, R. J. LeVeque, "Algorithms for computing the sample variance",
    The American Statistician 37(3), 1983.
    R. T. Rockafellar, S. Uryasev, "Optimization of conditional value-at-risk", J. Risk 2(3), 2000.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.engine import Outcome
from levopt.objectives._base import STDERR_BATCHES, Context, MetricSpecs, get_metric, hashable

WINDOW_CAP = 1 << 15
"""Atoms one group's window may hold before it is narrowed."""
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
        f,
        jax.ShapeDtypeStruct((64,), bool),
        jax.ShapeDtypeStruct((64,), jnp.int32),
        f,
        f,
        f,
        f,
        f,
        jax.ShapeDtypeStruct((64,), jnp.int32),
    )


def stream_plan(specs: MetricSpecs, ctx: Context, dtype: Any) -> StreamPlan:
    means, other, tails, tail_of = [], [], {}, {}
    for label, (name, options) in specs.items():
        metric = get_metric(name)
        if metric.tail is not None:
            atom_opts = {k: v for k, v in options.items() if k != "level"}
            level = float(options.get("level", metric.defaults().get("level")))
            # One search serves every VaR and CVaR of the same atoms and level.
            key = (metric.tail.atoms, hashable(atom_opts), level)
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


# --- exact quantiles in one pass: a window around the quantile --------------------------------


@dataclass
class Window:
    """One group's atoms near its quantile, with the weight below and the weight and weighted loss
    above (a mergeable partial: the single-pass method of the module docstring).

    Atoms in [lo, hi) are kept; the others only add to the sums. Merging intersects the windows;
    :meth:`shrink` narrows a full window to :data:`PILOT_SPREAD` binomial standard errors of the
    paths seen around the level, so the kept atoms number O(sqrt(paths)), at most
    :data:`WINDOW_CAP` between shrinks.
    """

    level: float
    lo: float
    hi: float
    below: float = 0.0
    above_w: float = 0.0
    above_wl: float = 0.0
    total: float = 0.0
    paths: int = 0
    losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def of(cls, request: WindowRequest, losses: np.ndarray, weights: np.ndarray, paths: int) -> Window:
        win = cls(request.level, -math.inf, math.inf, total=float(np.sum(weights)), paths=paths)
        return replace(win, losses=losses, weights=weights).restrict(request.lo, request.hi)

    def restrict(self, lo: float, hi: float) -> Window:
        """The same atoms with the window narrowed to [lo, hi)."""
        low, high = self.losses < lo, self.losses >= hi
        inside = ~(low | high)
        w_high = self.weights[high]
        return Window(
            self.level,
            lo,
            hi,
            self.below + float(np.sum(self.weights[low])),
            self.above_w + float(np.sum(w_high)),
            self.above_wl + float(np.sum(w_high * self.losses[high])),
            self.total,
            self.paths,
            self.losses[inside],
            self.weights[inside],
        )

    def merge(self, other: Window) -> Window:
        lo, hi = max(self.lo, other.lo), min(self.hi, other.hi)
        a, b = self.restrict(lo, hi), other.restrict(lo, hi)
        merged = Window(
            self.level,
            lo,
            hi,
            a.below + b.below,
            a.above_w + b.above_w,
            a.above_wl + b.above_wl,
            a.total + b.total,
            a.paths + b.paths,
            np.concatenate([a.losses, b.losses]),
            np.concatenate([a.weights, b.weights]),
        )
        return merged.shrink() if merged.losses.size > WINDOW_CAP else merged

    def shrink(self) -> Window:
        """Tied losses pooled, and the window narrowed around the level's quantile so far."""
        level = self.level
        if self.total <= 0 or self.losses.size == 0:
            return self
        losses, inverse = np.unique(self.losses, return_inverse=True)
        weights = np.bincount(inverse, self.weights, losses.size)
        frac = (self.below + np.cumsum(weights)) / self.total
        half = PILOT_SPREAD * math.sqrt(level * (1 - level) / max(self.paths, 1)) + 4.0 / max(self.paths, 1)
        start = min(int(np.searchsorted(frac, level - half)), losses.size - 1)
        stop = int(np.searchsorted(frac, level + half, side="right")) + 1
        lo = max(self.lo, float(losses[start]))
        hi = min(self.hi, float(losses[stop])) if stop < losses.size else self.hi
        pooled = replace(self, losses=losses, weights=weights)
        return pooled.restrict(lo, max(hi, float(np.nextafter(lo, np.inf))))

    def quantile(self) -> tuple[float, float] | None:
        """(VaR, Σ_inside w (ℓ − VaR)_+) when the quantile lies in the window, else None."""
        level = self.level
        order = np.argsort(self.losses, kind="stable")
        losses, weights = self.losses[order], self.weights[order]
        cum = self.below + np.cumsum(weights)
        target = level * self.total
        if losses.size == 0 or self.below >= target or cum[-1] < target:
            return None
        a = float(losses[int(np.searchsorted(cum, target))])
        return a, float(np.sum(weights * np.maximum(losses - a, 0.0)))


@dataclass(frozen=True)
class WindowRequest:
    """The single pass's request for one tail search: keep the atoms in [lo, hi) (the pilot's)."""

    level: float
    lo: float
    hi: float

    @classmethod
    def from_pilot(
        cls, losses: np.ndarray, weights: np.ndarray, level: float, pilot_paths: int
    ) -> WindowRequest:
        """The pilot's losses whose cumulative probability is within :data:`PILOT_SPREAD` binomial
        standard errors of the level (the whole real line when the pilot has no atom)."""
        keep = weights > 0
        if not np.any(keep):
            return cls(level, -math.inf, math.inf)
        win = Window(level, -math.inf, math.inf, total=float(np.sum(weights[keep])), paths=pilot_paths)
        win = replace(win, losses=losses[keep], weights=weights[keep]).shrink()
        return cls(level, win.lo, win.hi)


def window_atoms(
    request: WindowRequest,
    losses: np.ndarray,
    weights: np.ndarray,
    path_index: np.ndarray,
    paths: int,
    first: int,
    count: int,
) -> list[Window | None]:
    """One chunk's atoms (of paths ``first`` to ``first + count - 1``) as windows for the whole
    sample (group 0) and each batch group it meets (None for the groups it does not meet)."""
    group_size = paths // STDERR_BATCHES
    n_groups = 1 + (STDERR_BATCHES if group_size >= 2 else 0)
    out: list[Window | None] = [None] * n_groups
    out[0] = Window.of(request, losses, weights, count)
    if n_groups > 1:
        batch = path_index // group_size + 1
        for g in range(first // group_size + 1, min((first + count - 1) // group_size + 1, n_groups - 1) + 1):
            members = min(first + count, g * group_size) - max(first, (g - 1) * group_size)
            sel = batch == g
            out[g] = Window.of(request, losses[sel], weights[sel], members)
    return out


def merge_windows(a: list[Window | None], b: list[Window | None]) -> list[Window | None]:
    return [x if y is None else y if x is None else x.merge(y) for x, y in zip(a, b, strict=True)]


def reduce_tail(
    request: WindowRequest | PassRequest,
    losses: np.ndarray,
    weights: np.ndarray,
    path_index: np.ndarray,
    paths: int,
    first: int,
    count: int,
) -> Any:
    """One chunk's atoms reduced for one tail search: windows in the single pass, group partials in
    the histogram passes."""
    if isinstance(request, WindowRequest):
        return window_atoms(request, losses, weights, path_index, paths, first, count)
    return reduce_atoms(request, losses, weights, path_index, max(paths // STDERR_BATCHES, 1))


def merge_tail(a: Any, b: Any) -> Any:
    """Merge two :func:`reduce_tail` results (None is the empty one)."""
    if a is None or b is None:
        return b if a is None else a
    return merge_windows(a, b) if isinstance(a, list) else merge_partials(a, b)


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

    def adopt(self, windows: Sequence[Window | None]) -> None:
        """Resolve the groups whose single-pass window holds their quantile; the others are left
        to the histogram passes (:meth:`start`, :meth:`request`, :meth:`resolve`)."""
        for s, win in zip(self.searches, windows, strict=True):
            if win is None:
                continue
            s.total = win.total
            if not s.total > 0:  # no atom with positive weight (e.g. every outcome undefined)
                s.quantile, s.inside = math.nan, 0.0
                continue
            found = win.quantile()
            if found is not None:
                s.quantile, s.inside = found
                s.above_w, s.above_wl = win.above_w, win.above_wl

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
        if not s.total > 0 or math.isnan(a):
            return math.nan
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
