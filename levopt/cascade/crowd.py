r"""The crowd of levered accounts, held as notional per bin of a fixed grid of liquidation levels.

Frame: log-prices are measured from the start price :math:`S_0` (so :math:`S_0 = 1`,
log-price 0). The grid has ``bins`` bins of equal width :math:`h = 2R/\text{bins}` over
:math:`[-R, R]`, :math:`R` = ``range``; it never moves, the price moves across it.

What a bin holds: the notional, in the settlement currency valued at the liquidation price, of the
accounts whose liquidation level lies in the bin (what the venue sells or buys when they are
liquidated). Within a bin that notional is spread uniformly in log-price over the part of the bin
on the accounts' side of the current price (below it for longs, above it for shorts), so the
notional liquidated by a move is piecewise linear in the move, and one step costs O(bins)
whatever the number of accounts. After the price has crossed part of a bin and come back, the
rest of that bin is spread again over the whole of its side of the price: a level is then
misplaced by at most one bin width.

Leverage-targeting accounts (``target_share``) re-lever every step, so all accounts of a leverage
class sit at one level, a fixed distance below (longs) or above (shorts) the price at which they
last re-levered; they are held apart from the grid as one notional per class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax import Array

from levopt.cascade.config import LONG, SHORT, CascadeConfig, liquidation_offset, parse_cascade
from levopt.cascade.history import CrowdHistory, crowd_history
from levopt.errors import ConfigError

HOURS_PER_DAY = 24.0


class EntryBands(eqx.Module):
    r"""Entries of a crowd reconstructed from history (:mod:`levopt.cascade.history`).

    For each side and leverage class, the cohorts' surviving entry log-prices ``[lo, hi]``
    relative to the start price and each cohort's share ``weight`` of its class's notional (rows
    sum to one). A class :math:`L` of the longs holds
    :math:`(1 - \tau)\,w_L\,OI_{long}\,\text{weight}_{L,k}` at levels
    :math:`[lo + \delta_L, hi + \delta_L]`.

    Attributes:
        lo_long, hi_long, weight_long: ``(n, K)`` the longs' bands and weights.
        lo_short, hi_short, weight_short: ``(n, K)`` the shorts'.
    """

    lo_long: Array
    hi_long: Array
    weight_long: Array
    lo_short: Array
    hi_short: Array
    weight_short: Array


class CascadeParams(eqx.Module):
    r"""The crowd's and the impact law's parameters as arrays (a pytree: ``jit``, ``vmap``, ``grad``).

    Built from a :class:`~levopt.cascade.CascadeConfig` by :meth:`from_config`; the fields mirror
    the config's keys (units in :class:`~levopt.cascade.CrowdConfig` and
    :class:`~levopt.cascade.ImpactConfig`). Gradients of a cascade with respect to any array field
    are the implicit-function-theorem ones (:func:`~levopt.cascade.cascade_step`).

    Attributes:
        impact_kind: ``"linear"`` or ``"sqrt"`` (static).
        bins: number of grid bins (static).
        half_width: :math:`R`, the grid spans log-prices :math:`[-R, R]` (static).
        long_oi, short_oi: open interest at the start price, settlement currency.
        leverage: ``(n,)`` leverages of the mix, ascending; shares: ``(n,)`` their shares.
        maintenance: maintenance-margin rate :math:`m`.
        entry_spread: half-width of the entry band in log-price.
        target_share: fraction of each class that re-levers every step.
        refill_hours: mean re-entry time of liquidated open interest in hours (``inf``: never).
        daily_volume: :math:`V`, settlement currency per day.
        permanent, temporary: linear impact :math:`\lambda_p, \lambda_t` (zero for ``sqrt``).
        coefficient: square-root law :math:`Y` (zero for ``linear``).
        daily_vol: :math:`\sigma_{day}` for the square-root law.
        temporary_fraction: decaying part of a square-root move (zero for ``linear``).
        decay_hours: e-folding time of temporary impact, hours.
        entries: a crowd reconstructed from history (:class:`EntryBands`); None: entries uniform
            over ``±entry_spread``.
    """

    impact_kind: str = eqx.field(static=True)
    bins: int = eqx.field(static=True)
    half_width: float = eqx.field(static=True)
    long_oi: Array
    short_oi: Array
    leverage: Array
    shares: Array
    maintenance: Array
    entry_spread: Array
    target_share: Array
    refill_hours: Array
    daily_volume: Array
    permanent: Array
    temporary: Array
    coefficient: Array
    daily_vol: Array
    temporary_fraction: Array
    decay_hours: Array
    entries: EntryBands | None = None

    def __check_init__(self):
        if self.impact_kind not in ("linear", "sqrt"):
            raise ValueError(f"impact_kind {self.impact_kind!r}; allowed: linear, sqrt")

    @classmethod
    def from_config(
        cls,
        cfg: CascadeConfig | dict[str, Any],
        dtype: Any = jnp.float32,
        *,
        n_assets: int = 1,
        base_dir: str | Path = ".",
    ) -> CascadeParams:
        """The parameters of a ``cascade:`` block (a mapping is validated by
        :func:`~levopt.cascade.parse_cascade` first), as arrays of ``dtype``, for a path model of
        ``n_assets`` (the crowd trades one asset: more is a config error naming ``cascade``).
        A crowd with ``data`` is reconstructed from its files (relative to ``base_dir``) by
        :func:`~levopt.cascade.history.crowd_history`: its entries, its open interest unless
        given, and its leverage shares when they are fitted."""
        cfg = parse_cascade(cfg)
        if n_assets != 1:
            raise ConfigError(
                "cascade",
                f"the crowd trades one asset; the model has {n_assets}: allowed with a one-asset model",
            )
        crowd, imp = cfg.crowd, cfg.impact

        def arr(v: Any) -> Array:
            return jnp.asarray(v, dtype)

        linear = imp.kind == "linear"
        refill = np.inf if crowd.refill_days is None else crowd.refill_days * HOURS_PER_DAY
        long_oi, short_oi, shares = crowd.long_oi, crowd.short_oi, list(crowd.leverage.values())
        entries = None
        if crowd.data is not None:
            history = crowd_history(crowd, base_dir)
            entries = _entry_bands(history, crowd, cfg.range, arr)
            long_oi = history.open_interest if long_oi is None else long_oi
            short_oi = history.open_interest if short_oi is None else short_oi
            shares = history.shares
        return cls(
            impact_kind=imp.kind,
            bins=cfg.bins,
            half_width=float(cfg.range),
            long_oi=arr(long_oi),
            short_oi=arr(short_oi),
            leverage=arr(list(crowd.leverage)),
            shares=arr(shares),
            maintenance=arr(crowd.maintenance),
            entry_spread=arr(crowd.entry_spread),
            target_share=arr(crowd.target_share),
            refill_hours=arr(refill),
            daily_volume=arr(imp.daily_volume),
            permanent=arr(imp.permanent if linear else 0.0),
            temporary=arr(imp.temporary if linear else 0.0),
            coefficient=arr(0.0 if linear else imp.coefficient),
            daily_vol=arr(imp.daily_vol),
            temporary_fraction=arr(0.0 if linear else imp.temporary_fraction),
            decay_hours=arr(imp.decay_hours),
            entries=entries,
        )

    @property
    def dtype(self) -> Any:
        return self.long_oi.dtype


def _entry_bands(history: CrowdHistory, crowd: Any, half_width: float, arr: Any) -> EntryBands:
    """The reconstructed books as :class:`EntryBands`, cohorts no class holds dropped; a level
    beyond the grid is a config error naming ``cascade.range``."""
    lo_l, hi_l, w_l = history.entry_weights(LONG)
    lo_s, hi_s, w_s = history.entry_weights(SHORT)
    held = (w_l > 0).any(axis=0) | (w_s > 0).any(axis=0)
    lev = np.asarray(list(crowd.leverage), float)
    reach = 0.0
    for lo, w, side in ((lo_l, w_l, LONG), (hi_s, w_s, SHORT)):
        level = lo + np.asarray(liquidation_offset(lev, crowd.maintenance, side))[:, None]
        reach = max(reach, float(np.abs(np.where(w > 0, level, 0.0)).max(initial=0.0)))
    if not reach < half_width:
        raise ConfigError(
            "cascade.range",
            f"{half_width:g}; the reconstructed crowd's liquidation levels reach {reach:.4g} in log-price "
            f"from the start; allowed: range > {reach:.4g}",
        )
    return EntryBands(
        *(arr(a[:, held]) for a in (lo_l, hi_l, w_l, lo_s, hi_s, w_s)),
    )


class CrowdState(NamedTuple):
    r"""The crowd at one time on one path (the engine ``vmap``\ s it over paths).

    Attributes:
        log_price: :math:`p`, the current log-price relative to :math:`S_0` (the sum of the
            endogenous moves so far).
        long_notional: ``(bins,)`` notional of the holding longs liquidated in each bin, valued at
            the liquidation price (settlement currency).
        short_notional: ``(bins,)`` the same for the shorts.
        target_long: ``(n,)`` notional of each leverage class of re-levering longs, valued at
            ``target_price``.
        target_short: ``(n,)`` the same for the re-levering shorts (positive numbers).
        target_price: log-price at which the re-levering accounts last restored their leverage;
            their liquidation levels are ``target_price + liquidation_offset(L, m, ±1)``.
        displacement: :math:`D`, the part of :math:`p` that is temporary impact still decaying.
        refill_long: liquidated long notional waiting to re-enter (settlement currency).
        refill_short: the same for the shorts.
    """

    log_price: Array
    long_notional: Array
    short_notional: Array
    target_long: Array
    target_short: Array
    target_price: Array
    displacement: Array
    refill_long: Array
    refill_short: Array


def grid_edges(params: CascadeParams) -> Array:
    """``(bins + 1,)`` log-price edges of the grid, :math:`-R` to :math:`R` in equal steps."""
    return jnp.linspace(-params.half_width, params.half_width, params.bins + 1, dtype=params.dtype)


def level_offsets(params: CascadeParams) -> tuple[Array, Array]:
    """``(n,)`` liquidation offsets of the leverage classes, longs (< 0) and shorts (> 0), from
    :func:`~levopt.cascade.liquidation_offset`."""
    lev, m = params.leverage, params.maintenance
    return (
        liquidation_offset(lev, m, LONG, xp=jnp),
        liquidation_offset(lev, m, SHORT, xp=jnp),
    )


def side_support(edges: Array, log_price: Array, side: int) -> tuple[Array, Array]:
    """``(bins,)`` lower and upper ends of the part of each bin where that side's notional lies:
    below the price for longs, above it for shorts (an empty interval has ``hi <= lo``)."""
    a, b = edges[:-1], edges[1:]
    if side == LONG:
        return a, jnp.minimum(b, log_price)
    return jnp.maximum(a, log_price), b


def deposit(edges: Array, lo: Array, hi: Array, quantity: Array) -> Array:
    r"""Spread quantities uniformly over log-price bands and return notional per bin at the level.

    A quantity :math:`q` (units of the asset at :math:`S_0 = 1`, i.e. notional at the start price)
    spread uniformly over levels :math:`[l, u]` puts, in bin :math:`[a, b]`, the notional at the
    liquidation price

    .. math:: \frac{q}{u - l}\int_{\max(a,l)}^{\min(b,u)} e^{\ell}\,d\ell.

    A band of zero width is a point at :math:`l`: its whole :math:`q e^{l}` goes to the bin that
    holds it. Levels beyond the grid are put in its first or last bin (valued at their own level).

    Args:
        edges: ``(bins + 1,)`` grid edges.
        lo, hi: ``(n,)`` ends of the bands, ``hi >= lo``.
        quantity: ``(n,)`` quantities.

    Returns:
        ``(bins,)`` notional per bin, summed over the bands.
    """
    inf = jnp.asarray(jnp.inf, edges.dtype)
    a = edges[:-1].at[0].set(-inf)[None, :]
    b = edges[1:].at[-1].set(inf)[None, :]
    lo_, hi_ = lo[:, None], hi[:, None]
    width = hi - lo
    band = width > 0
    safe_width = jnp.where(band, width, 1.0)[:, None]
    u = jnp.clip(lo_, a, b)
    v = jnp.clip(hi_, a, b)
    spread = quantity[:, None] / safe_width * jnp.exp(u) * jnp.expm1(v - u)
    k = jnp.clip(jnp.searchsorted(edges, lo, side="right") - 1, 0, edges.shape[0] - 2)
    point = (quantity * jnp.exp(lo))[:, None] * (jnp.arange(edges.shape[0] - 1)[None, :] == k[:, None])
    return jnp.sum(jnp.where(band[:, None], spread, point), axis=0)


def init_crowd(params: CascadeParams) -> CrowdState:
    r"""The crowd at the start price (differentiable in every array of ``params``).

    Class :math:`L` (share :math:`w_L`) of the holding longs has quantity
    :math:`(1 - \tau)\,w_L\,OI_{long}`, :math:`\tau` = ``target_share``, entered uniformly in
    log-price over :math:`[-s, s]`, so its levels are uniform over
    :math:`[\delta_L - s, \delta_L + s]`, :math:`\delta_L` = :func:`liquidation_offset`; the part at
    or above the start price (already liquidated) is cut off and the rest scaled up to the same
    quantity. Shorts mirror this above the price. The re-levering part :math:`\tau\,w_L\,OI` of each
    class starts on target at the start price.
    """
    edges = grid_edges(params)
    dl, ds = level_offsets(params)
    s = params.entry_spread
    hold = (1.0 - params.target_share) * params.shares
    zero = jnp.zeros((), params.dtype)
    if params.entries is None:
        long_n = deposit(edges, dl - s, jnp.minimum(dl + s, zero), hold * params.long_oi)
        short_n = deposit(edges, jnp.maximum(ds - s, zero), ds + s, hold * params.short_oi)
    else:
        e = params.entries
        long_n = deposit(
            edges,
            (e.lo_long + dl[:, None]).ravel(),
            jnp.minimum(e.hi_long + dl[:, None], zero).ravel(),
            ((hold * params.long_oi)[:, None] * e.weight_long).ravel(),
        )
        short_n = deposit(
            edges,
            jnp.maximum(e.lo_short + ds[:, None], zero).ravel(),
            (e.hi_short + ds[:, None]).ravel(),
            ((hold * params.short_oi)[:, None] * e.weight_short).ravel(),
        )
    return CrowdState(
        log_price=zero,
        long_notional=long_n,
        short_notional=short_n,
        target_long=params.target_share * params.shares * params.long_oi,
        target_short=params.target_share * params.shares * params.short_oi,
        target_price=zero,
        displacement=zero,
        refill_long=zero,
        refill_short=zero,
    )


def build_crowd(cfg: CascadeConfig | dict[str, Any], dtype: Any = jnp.float32) -> CrowdState:
    """The starting crowd of a ``cascade:`` block: :func:`init_crowd` of
    :meth:`CascadeParams.from_config`."""
    return init_crowd(CascadeParams.from_config(cfg, dtype))


def _mean_exp(lo: Array, hi: Array, sign: float) -> Array:
    """Mean of :math:`e^{\\pm\\ell}` over :math:`[lo, hi]` (its value at ``lo`` for an empty interval)."""
    w = jnp.maximum(hi - lo, 0.0)
    safe = jnp.where(w > 0, w, 1.0)
    ratio = jnp.where(w > 0, jnp.expm1(sign * w) / (sign * safe), 1.0)
    return jnp.exp(sign * lo) * ratio


def crowd_positions(crowd: CrowdState, params: CascadeParams) -> tuple[Array, Array, Array, Array]:
    r"""Current notional and leverage of every group of the crowd at ``crowd.log_price``.

    A long liquidated at log-level :math:`\ell` holds quantity :math:`n e^{-\ell}` for notional
    :math:`n` at the level; at the price :math:`p` its notional is :math:`n e^{p - \ell}` and, from
    equity :math:`= q(P - P_{liq}(1 - m))` (the liquidation condition solved for the margin), its
    leverage is :math:`1/(1 - (1 - m)e^{\ell - p})`; a short's is :math:`1/((1 + m)e^{\ell - p} - 1)`.
    Grid bins use their mean notional and the leverage at the middle of their occupied part.

    Returns:
        ``(notional, leverage, is_long, total)``: arrays over the groups (the long bins and
        re-levering long classes, then the same for the shorts), a mask of the long groups, and the
        total current notional.
    """
    edges = grid_edges(params)
    p, m = crowd.log_price, params.maintenance
    dl, ds = level_offsets(params)
    lo_l, hi_l = side_support(edges, p, LONG)
    lo_s, hi_s = side_support(edges, p, SHORT)
    now_l = crowd.long_notional * jnp.exp(p) * _mean_exp(lo_l, jnp.maximum(hi_l, lo_l), -1.0)
    now_s = crowd.short_notional * jnp.exp(p) * _mean_exp(lo_s, jnp.maximum(hi_s, lo_s), -1.0)
    mid_l = jnp.minimum(0.5 * (lo_l + jnp.maximum(hi_l, lo_l)), p)
    mid_s = jnp.maximum(0.5 * (lo_s + jnp.maximum(hi_s, lo_s)), p)
    move = p - crowd.target_price
    lev_long = 1.0 / (1.0 - (1.0 - m) * jnp.exp(jnp.concatenate([mid_l, crowd.target_price + dl]) - p))
    lev_short = 1.0 / ((1.0 + m) * jnp.exp(jnp.concatenate([mid_s, crowd.target_price + ds]) - p) - 1.0)
    notional = jnp.concatenate(
        [now_l, crowd.target_long * jnp.exp(move), now_s, crowd.target_short * jnp.exp(move)]
    )
    leverage = jnp.concatenate([lev_long, lev_short])
    is_long = jnp.arange(notional.shape[0]) < now_l.shape[0] + dl.shape[0]
    return notional, leverage, is_long, jnp.sum(notional)


def open_interest(crowd: CrowdState, params: CascadeParams) -> tuple[Array, Array]:
    """Current notional of the crowd's longs and shorts at ``crowd.log_price`` (settlement currency)."""
    notional, _, is_long, _ = crowd_positions(crowd, params)
    return jnp.sum(jnp.where(is_long, notional, 0.0)), jnp.sum(jnp.where(is_long, 0.0, notional))


def crowd_leverage(crowd: CrowdState, params: CascadeParams) -> Array:
    r"""Notional-weighted mean leverage :math:`\sum_i N_i L_i / \sum_i N_i` of the crowd's open
    accounts at the current price (0 when the crowd is empty); see :func:`crowd_positions`."""
    notional, leverage, _, total = crowd_positions(crowd, params)
    live = notional > 0
    weighted = jnp.sum(jnp.where(live, notional * jnp.where(live, leverage, 0.0), 0.0))
    return jnp.where(total > 0, weighted / jnp.where(total > 0, total, 1.0), 0.0)
