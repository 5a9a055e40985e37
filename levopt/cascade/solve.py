r"""One time step of the liquidation cascade: the endogenous move of the price given the exogenous one.

The exogenous log-return :math:`x` of a step liquidates the accounts whose levels it crosses; their
forced sales (buys, for shorts) move the price further, which liquidates more. With :math:`F(y)`
the notional liquidated by a fall :math:`y < 0` (levels in :math:`[p + y, p)`) and :math:`I` the
impact law (:mod:`levopt.cascade.impact`), the endogenous move is the largest fixed point

.. math:: y^* = \max\{\,y \le x : y = x - I(F(y))\,\},

the limit of :math:`y_{k+1} = x - I(F(y_k))` from :math:`y_0 = x` (the map is non-decreasing in
:math:`y`, so the iterates fall monotonically to it). A rise mirrors this with the shorts. With a
uniform density :math:`d` of levels and linear impact :math:`\lambda/V` it is the geometric series
:math:`y^* = x/(1 - \lambda d/V)` while :math:`\lambda d/V < 1`.

Exact solution. Between two consecutive bin edges :math:`F` is linear, :math:`F(y) = F_a + d(b - y)`
(:math:`F_a` the notional above the segment's top :math:`b`, :math:`d` its density), and the
residual :math:`h(y) = y - x + I(F(y))` is linear (``linear``) or concave (``sqrt``) there. Since
:math:`h > 0` on :math:`(y^*, x]`, the segment holding :math:`y^*` is the first one, walking down
from :math:`x`, whose lower end :math:`a` has :math:`h(a) \le 0`; every segment's :math:`h(a)` comes
from one cumulative sum, so the search is vectorized over bins, O(bins). In that segment

.. math::

    \text{linear: } y^* = \frac{x - c(F_a + d\,b)}{1 - c\,d},\qquad
    \text{sqrt: } y^* = x - c\,t,\ t = \tfrac12\Big(c\,d + \sqrt{c^2d^2 + 4(F_a + d(b - x))}\Big)

(for ``sqrt``, :math:`t = \sqrt{F(y^*)}` solves :math:`t^2 - c\,d\,t - F(x) = 0`, extended linearly,
and the larger root is the crossing from above of the concave :math:`h`). A segment where
:math:`c\,d \ge 1` (linear) has :math:`h` non-increasing downwards: the cascade runs through it.
Point masses (the re-levering classes, the caller's own account) make :math:`F` jump; they are
taken in order of level, each pass solving again below the mass just reached, so the answer is
exact for them too. Below the grid the density is zero.

Gradients. The solution is found under ``stop_gradient``; one Newton step on the residual,
:math:`y = y^* - h(y^*)/h'(y^*)`, whose value is replaced by :math:`y^*` but whose derivative is
:math:`-\partial_\theta h/\partial_y h`, gives the implicit-function-theorem gradient with respect
to :math:`x`, the impact parameters, the crowd's notional (hence open interest, leverage shares,
spread, maintenance) and the state.

Which points have no derivative: where :math:`y^*` jumps — the move reaches a point mass, or
(``sqrt``) the top of a band of levels, where the square-root law's infinite marginal impact makes
the cascade jump by about :math:`c^2 d` at once — and where :math:`h'(y^*) = 0` (a critical cascade;
below :math:`\sqrt{\varepsilon}` the slope is taken as :math:`\sqrt{\varepsilon}`, so the derivative
stays finite). Both impact laws are solved in closed form, to rounding: no iteration count or
tolerance to choose.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike

from levopt.cascade.crowd import (
    LONG,
    CascadeParams,
    CrowdState,
    crowd_leverage,
    deposit,
    grid_edges,
    level_offsets,
    open_interest,
    side_support,
)
from levopt.cascade.impact import ImpactLaw

MULTIPLIER_GUARD = 1e-12
"""|x| at or below which the reported multiplier y/x is 1 (no exogenous move to amplify)."""


class OwnAccount(NamedTuple):
    """An account of the caller's added to the crowd for one step (its forced flow moves the price).

    Attributes:
        level: its liquidation log-price, relative to the start price (the crowd's frame).
        notional: what is sold (a long, > 0) or bought (a short, < 0) when the price reaches
            ``level``, in the settlement currency.
    """

    level: Array
    notional: Array


class CascadeInfo(NamedTuple):
    """What one step of the cascade reports (scalars, for one path).

    Attributes:
        exogenous: :math:`x`, the path model's log-return.
        move: :math:`y`, the log-return with impact and cascade.
        multiplier: :math:`y/x` (1 where :math:`|x| \\le` :data:`MULTIPLIER_GUARD`).
        long_liquidated: notional of the crowd's longs liquidated (settlement currency, at the
            liquidation prices; the own account excluded).
        short_liquidated: the same for the shorts.
        relever_flow: net purchase by the re-levering accounts at the start of the step (< 0: a sale).
        refilled: notional of liquidated open interest that re-entered at the start of the step.
        crowd_leverage: notional-weighted mean leverage of the crowd left after the step.
        long_open_interest: current notional of the crowd's longs after the step.
        short_open_interest: the same for the shorts.
        runaway: the cascade crossed a bin whose local gain :math:`I'(F)\\,d` is at least 1.
        off_grid: the move left the grid (levels beyond it are not represented).
        own_liquidated: the move reached the own account's level (False without one).
    """

    exogenous: Array
    move: Array
    multiplier: Array
    long_liquidated: Array
    short_liquidated: Array
    relever_flow: Array
    refilled: Array
    crowd_leverage: Array
    long_open_interest: Array
    short_open_interest: Array
    runaway: Array
    off_grid: Array
    own_liquidated: Array


def relever_flow(notional: ArrayLike, leverage: ArrayLike, move: ArrayLike, side: int) -> tuple[Array, Array]:
    r"""The trade that restores an account's leverage after a log-move, and its new notional.

    A long of notional :math:`N` at leverage :math:`L` has equity :math:`N/L`. After the move
    :math:`g` its notional is :math:`Ne^g` and its equity :math:`N/L + N(e^g - 1)`; restoring
    :math:`L` means holding :math:`L` times that equity, :math:`N(Le^g - L + 1)`, so it buys

    .. math:: (L - 1)\,N\,(e^g - 1)

    — it buys in rallies and sells in falls. A short (notional :math:`N > 0`) has equity
    :math:`N/L - N(e^g - 1)` and target notional :math:`N(L + 1 - Le^g)`; it buys back
    :math:`Ne^g - N(L + 1 - Le^g) = (L + 1)\,N\,(e^g - 1)`: also buying in rallies. Both trades
    push the price the way it just moved: the leverage loop. Per unit of equity :math:`E = N/L`
    they are :math:`\beta(\beta - 1)E(e^g - 1)` with :math:`\beta = L` and :math:`\beta = -L`, the
    rebalancing of leveraged and inverse ETFs (Cheng & Madhavan, "The dynamics of leveraged and
    inverse exchange-traded funds", J. Investment Management 7 (2009)).

    Args:
        notional: :math:`N \ge 0` at the price of the last re-lever (settlement currency).
        leverage: :math:`L`.
        move: :math:`g`, the log-move since then.
        side: +1 long, −1 short.

    Returns:
        ``(buy, new_notional)``: the purchase (negative: a sale) and the notional after it.
    """
    growth = jnp.expm1(move)
    buy = (leverage - side) * notional * growth
    held = notional * jnp.exp(move)
    # Past its liquidation price an account has no equity left to re-lever: it closes (notional 0).
    wiped = held + side * buy < 0
    return jnp.where(wiped, -side * held, buy), jnp.where(wiped, 0.0, held + side * buy)


class _Segments(NamedTuple):
    """The side being liquidated, mirrored so that the move is a fall, as segments walked downwards.

    Segment 0 is the gap between the price and the top of the grid (empty), then the grid's bins
    from the top down, then the (empty) region below the grid, whose lower end is −∞. Levels are
    relative to the current price; each segment's notional lies uniformly in ``[lo, hi]``.
    """

    lo: Array
    hi: Array
    notional: Array


def _segments(edges: Array, log_price: Array, notional: Array) -> tuple[_Segments, Array, Array]:
    """Segments of the down frame, the stale notional and the mask of live bins.

    Stale notional sits in bins wholly at or above the price (possible only once the price has left
    the grid, where levels are clamped into its end bins); any fall liquidates it at once, and a
    step with no driving move at all counts as a fall."""
    a, top = side_support(edges, log_price, LONG)
    live = top > a
    stale = jnp.sum(jnp.where(live, 0.0, notional))
    zero = jnp.zeros((1,), edges.dtype)
    lo = jnp.concatenate(
        [jnp.minimum(edges[-1:] - log_price, 0.0), jnp.minimum(a - log_price, 0.0)[::-1], zero - jnp.inf]
    )
    hi = jnp.concatenate(
        [zero, jnp.minimum(top - log_price, 0.0)[::-1], jnp.minimum(edges[:1] - log_price, 0.0)]
    )
    n = jnp.concatenate([zero, jnp.where(live, notional, 0.0)[::-1], zero])
    return _Segments(lo, hi, n), stale, live


def _density(seg: _Segments) -> Array:
    w = seg.hi - seg.lo
    ok = jnp.isfinite(w) & (w > 0)
    return jnp.where(ok, seg.notional / jnp.where(ok, w, 1.0), 0.0)


def _root_below(x: Array, start: Array, offset: Array, seg: _Segments, law: ImpactLaw) -> tuple[Array, Array]:
    """Largest root ``y <= start`` of ``y - x + I(F(y) + offset)``, given that the residual is ≥ 0 at
    ``start``; returns it and the density of the segment that holds it."""
    n = seg.notional
    above = jnp.cumsum(n) - n + offset
    h_lo = seg.lo - x + law(above + n)
    hits = (seg.lo <= start) & (h_lo <= 0)
    hits = hits.at[-1].set(True)
    j = jnp.argmax(hits)
    dens = _density(seg)[j]
    fa, hi = above[j], seg.hi[j]
    cd = law.scale * dens
    if law.kind == "linear":
        den = 1.0 - cd
        y = (x - law.scale * (fa + dens * hi)) / jnp.where(den > 0, den, 1.0)
    else:
        t = 0.5 * (cd + jnp.sqrt(jnp.maximum(cd * cd + 4.0 * (fa + dens * (hi - x)), 0.0)))
        y = x - law.scale * t
    y = jnp.minimum(y, jnp.minimum(hi, start))
    y = jnp.where(j == n.shape[0] - 1, y, jnp.maximum(y, seg.lo[j]))
    return y, dens


def _solve_down(
    x: Array, seg: _Segments, stale: Array, levels: Array, amounts: Array, law: ImpactLaw
) -> tuple[Array, Array, Array]:
    """The largest fixed point ``y <= x`` with point masses ``amounts`` at relative ``levels``:
    ``(y, triggered masses (bool, in the given order), density at y)``, all without gradients."""
    order = jnp.argsort(-levels)
    y, dens = _root_below(x, x, stale, seg, law)

    def reach(carry, mass):
        y, dens, offset = carry
        level, amount = mass
        go = y <= level
        offset = offset + jnp.where(go, amount, 0.0)
        y_k, dens_k = _root_below(x, jnp.minimum(level, x), offset, seg, law)
        return (jnp.where(go, y_k, y), jnp.where(go, dens_k, dens), offset), go

    (y, dens, _), hit = jax.lax.scan(reach, (y, dens, stale), (levels[order], amounts[order]))
    triggered = jnp.zeros(levels.shape, bool).at[order].set(hit)
    return y, triggered, dens


def _liquidated_fraction(y: Array, seg: _Segments) -> Array:
    """Fraction of each segment's notional whose level lies in ``[y, 0)``."""
    w = seg.hi - seg.lo
    ok = jnp.isfinite(w) & (w > 0)
    return jnp.where(ok, jnp.clip((seg.hi - y) / jnp.where(ok, w, 1.0), 0.0, 1.0), 0.0)


class _Fall(NamedTuple):
    """A cascade solved in the down frame, with gradients."""

    move: Array  # y <= 0 in the down frame
    crowd_sold: Array  # the crowd's notional liquidated (the own account excluded)
    bin_fraction: Array  # (bins,) liquidated fraction of each bin, in the frame's ascending order
    triggered: Array  # (K,) which point masses were reached
    runaway: Array  # a crossed bin had local gain >= 1
    beyond_grid: Array  # the move passed the end of the grid


def _fall(
    x: Array,
    edges: Array,
    log_price: Array,
    notional: Array,
    levels: Array,
    amounts: Array,
    own_mask: Array,
    law: ImpactLaw,
) -> _Fall:
    """Solve the fall from driving move ``x <= 0`` exactly, then attach the implicit gradient."""
    seg, stale, live = _segments(edges, log_price, notional)
    frozen = jax.lax.stop_gradient((x, seg, stale, levels, amounts, law.scale))
    x0, seg0, stale0, lev0, amt0, scale0 = frozen
    y0, triggered, dens = _solve_down(x0, seg0, stale0, lev0, amt0, law._replace(scale=scale0))

    def sold(y: Array) -> Array:
        return (
            stale
            + jnp.sum(seg.notional * _liquidated_fraction(y, seg))
            + jnp.sum(jnp.where(triggered, amounts, 0.0))
        )

    total = sold(y0)
    residual = y0 - x + law(total)
    slope = jax.lax.stop_gradient(1.0 - law.slope(total) * dens)
    floor = jnp.sqrt(jnp.finfo(x.dtype).eps)
    step = -residual / jnp.where(slope > floor, slope, floor)
    y = y0 + (step - jax.lax.stop_gradient(step))

    bin_fraction = jnp.where(live, _liquidated_fraction(y, seg)[1:-1][::-1], 1.0)
    own_sold = jnp.sum(jnp.where(triggered & own_mask, amounts, 0.0))
    crossed = (seg0.lo > y0) & (seg0.notional > 0)
    gain = law.slope(stale0 + jnp.cumsum(seg0.notional)) * _density(seg0)
    return _Fall(
        move=y,
        crowd_sold=sold(y) - own_sold,
        bin_fraction=bin_fraction,
        triggered=triggered,
        runaway=jnp.any(crossed & (gain >= 1.0)),
        beyond_grid=y0 < seg0.hi[-1],
    )


def _relever_and_refill(
    crowd: CrowdState, params: CascadeParams, dt_hours: Array, offsets: tuple[Array, Array]
) -> tuple[CrowdState, Array, Array]:
    """Start of a step, at the price ``crowd.log_price``: the re-levering classes restore their
    leverage (their net purchase is returned), then a fraction ``1 - exp(-dt/refill_hours)`` of the
    liquidated open interest re-enters, split like the starting crowd: its holding part spread over
    one bin width around each class's level, its re-levering part added to the classes."""
    p = crowd.log_price
    move = p - crowd.target_price
    buy_l, tl = relever_flow(crowd.target_long, params.leverage, move, 1)
    buy_s, ts = relever_flow(crowd.target_short, params.leverage, move, -1)
    rate = -jnp.expm1(-dt_hours / params.refill_hours)
    enter_l, enter_s = crowd.refill_long * rate, crowd.refill_short * rate
    edges = grid_edges(params)
    half = jnp.asarray(params.half_width / params.bins, params.dtype)
    dl, ds = offsets
    hold = (1.0 - params.target_share) * params.shares * jnp.exp(-p)
    long_n = crowd.long_notional + deposit(
        edges, p + dl - half, jnp.minimum(p + dl + half, p), hold * enter_l
    )
    short_n = crowd.short_notional + deposit(
        edges, jnp.maximum(p + ds - half, p), p + ds + half, hold * enter_s
    )
    join = params.target_share * params.shares
    crowd = crowd._replace(
        long_notional=long_n,
        short_notional=short_n,
        target_long=tl + join * enter_l,
        target_short=ts + join * enter_s,
        target_price=p,
        refill_long=crowd.refill_long - enter_l,
        refill_short=crowd.refill_short - enter_s,
    )
    return crowd, jnp.sum(buy_l) + jnp.sum(buy_s), enter_l + enter_s


def cascade_step(  # long because its docstring states the five stages of a step and their math
    x: ArrayLike,
    crowd: CrowdState,
    params: CascadeParams,
    *,
    dt_hours: ArrayLike,
    own: OwnAccount | None = None,
    daily_vol: ArrayLike | None = None,
) -> tuple[Array, CascadeInfo, CrowdState]:
    r"""Replace one step's exogenous log-return by the endogenous one, and advance the crowd.

    In order, at the price :math:`p` where the step starts:

    1. the temporary impact relaxes, :math:`D \to De^{-\Delta t/\tau}`, adding
       :math:`r = D(e^{-\Delta t/\tau} - 1)` to the move;
    2. the re-levering classes restore their leverage after the previous step's move
       (:func:`relever_flow`), a net purchase :math:`B` whose impact :math:`\pm I(|B|)` is its own
       metaorder (additive with the forced flow's; exact for linear impact);
    3. liquidated open interest re-enters at :math:`p` (``refill_days``), without impact;
    4. the forced flow: with :math:`z = x + r \pm I(|B|)`, a fall (:math:`z \le 0`) solves
       :math:`y = z - I(F_{long}(y))`, a rise :math:`y = z + I(F_{short}(y))` (module docstring),
       the re-levering classes and ``own`` being point masses at their levels;
    5. the liquidated notional leaves the crowd (waiting to re-enter), :math:`p \to p + y`, and
       :math:`D \to De^{-\Delta t/\tau} + \phi\,(y - x - r)`, :math:`\phi` the temporary fraction.

    The re-levering thus lags one step: the trade that follows a step's move is executed at the
    start of the next step, as for products that rebalance at fixed times. With no impact (all of
    ``permanent``, ``temporary``, ``coefficient`` zero) or no crowd, :math:`y = x` bit for bit.

    Args:
        x: scalar exogenous log-return of the step.
        crowd: the crowd at the start of the step (:func:`~levopt.cascade.init_crowd`).
        params: :class:`~levopt.cascade.CascadeParams`.
        dt_hours: length of the step in hours.
        own: an account of the caller's included in this step's flow, or None.
        daily_vol: σ_day for the square-root law, replacing ``params.daily_vol`` (e.g. the path
            model's current volatility).

    Returns:
        ``(y, info, crowd)``: the endogenous log-return (with implicit-function-theorem
        gradients), a :class:`CascadeInfo`, and the crowd at the end of the step.

    Example:
        >>> params = CascadeParams.from_config(cfg, jnp.float64)          # doctest: +SKIP
        >>> crowd = init_crowd(params)                                     # doctest: +SKIP
        >>> y, info, crowd = cascade_step(-0.05, crowd, params, dt_hours=24.0)  # doctest: +SKIP

    References:
        R. Almgren, C. Thum, E. Hauptmann, H. Li, "Direct estimation of equity market impact",
        Risk (2005). B. Tóth et al., "Anomalous price impact and the critical nature of
        liquidity in financial markets", Phys. Rev. X 1 (2011). J. Donier, J. Bonart, "A
        million metaorder analysis of market impact on the Bitcoin", arXiv:1412.4503.
    """
    dtype = params.dtype
    x = jnp.asarray(x, dtype)
    dt_hours = jnp.asarray(dt_hours, dtype)
    law = ImpactLaw.of(params, daily_vol)
    offsets = level_offsets(params)
    reversion = crowd.displacement * jnp.expm1(-dt_hours / params.decay_hours)
    crowd, buy, refilled = _relever_and_refill(crowd, params, dt_hours, offsets)
    z = x + reversion + law.signed(buy)
    up = z > 0
    sign = jnp.where(up, -1.0, 1.0).astype(dtype)  # mirrors a rise into a fall
    levels, amounts, own_mask = _point_masses(crowd, up, sign, own, offsets)
    edges = grid_edges(params)
    fall = _fall(
        sign * z,
        jnp.where(up, -edges[::-1], edges),
        sign * crowd.log_price,
        jnp.where(up, crowd.short_notional[::-1], crowd.long_notional),
        levels,
        amounts,
        own_mask,
        law,
    )
    y = sign * fall.move
    # A zero move keeps the sign of a zero x (bit for bit); the derivative is lost only there.
    y = jnp.where((y == 0) & (x == 0), x, y)
    y, clamped = _within_grid(x, y, crowd.log_price, params.half_width)
    displacement = crowd.displacement + reversion + law.temporary * (y - x - reversion)
    new = _settle(crowd, up, fall, y, displacement)
    long_oi, short_oi = open_interest(new, params)
    big = jnp.abs(x) > MULTIPLIER_GUARD
    info = CascadeInfo(
        exogenous=x,
        move=y,
        multiplier=jnp.where(big, y / jnp.where(big, x, 1.0), 1.0),
        long_liquidated=jnp.where(up, 0.0, fall.crowd_sold),
        short_liquidated=jnp.where(up, fall.crowd_sold, 0.0),
        relever_flow=buy,
        refilled=refilled,
        crowd_leverage=crowd_leverage(new, params),
        long_open_interest=long_oi,
        short_open_interest=short_oi,
        runaway=fall.runaway,
        off_grid=fall.beyond_grid | clamped | (jnp.abs(new.log_price) > params.half_width),
        own_liquidated=jnp.any(fall.triggered & own_mask),
    )
    return y, info, new


def _within_grid(x: Array, y: Array, log_price: Array, half_width: float) -> tuple[Array, Array]:
    """The move with its endogenous part y − x cut where it would carry the price off the grid.

    Beyond the grid no level is represented and a runaway loop (constant-leverage accounts
    re-levering into their own impact) can grow without bound; the cut keeps every number finite
    and ``off_grid`` reports it. The exogenous move x itself is never cut, so a crowd without
    impact leaves x unchanged wherever the price goes.
    """
    low = jnp.minimum(0.0, -half_width - log_price - x)
    high = jnp.maximum(0.0, half_width - log_price - x)
    endogenous = y - x
    clamped = (endogenous < low) | (endogenous > high) | ~jnp.isfinite(endogenous)
    cut = x + jnp.clip(jnp.nan_to_num(endogenous), low, high)
    return jnp.where(clamped, cut, y), clamped


def _point_masses(
    crowd: CrowdState, up: Array, sign: Array, own: OwnAccount | None, offsets: tuple[Array, Array]
) -> tuple[Array, Array, Array]:
    """Levels (relative, in the down frame) and notional of the point masses on the side being
    liquidated: the re-levering classes, just re-levered at the price, then ``own`` if given."""
    dl, ds = offsets
    dtype = crowd.log_price.dtype
    levels = jnp.where(up, -ds, dl)
    amounts = jnp.where(up, crowd.target_short * jnp.exp(ds), crowd.target_long * jnp.exp(dl))
    own_mask = jnp.zeros(levels.shape, bool)
    if own is not None:
        own_level = jnp.asarray(own.level, dtype)
        own_notional = jnp.asarray(own.notional, dtype)
        levels = jnp.concatenate([levels, (sign * (own_level - crowd.log_price))[None]])
        amounts = jnp.concatenate([amounts, jnp.maximum(sign * own_notional, 0.0)[None]])
        own_mask = jnp.concatenate([own_mask, (sign * own_notional > 0)[None]])  # on the side that moves
    return levels, amounts, own_mask


def _settle(crowd: CrowdState, up: Array, fall: _Fall, y: Array, displacement: Array) -> CrowdState:
    """The crowd after the move: the liquidated notional removed and queued to re-enter."""
    n_classes = crowd.target_long.shape[0]
    kept = 1.0 - fall.triggered[:n_classes].astype(y.dtype)
    left = jnp.where(up, crowd.short_notional[::-1], crowd.long_notional) * (1.0 - fall.bin_fraction)
    return CrowdState(
        log_price=crowd.log_price + y,
        long_notional=jnp.where(up, crowd.long_notional, left),
        short_notional=jnp.where(up, left[::-1], crowd.short_notional),
        target_long=jnp.where(up, crowd.target_long, crowd.target_long * kept),
        target_short=jnp.where(up, crowd.target_short * kept, crowd.target_short),
        target_price=crowd.target_price,
        displacement=displacement,
        refill_long=crowd.refill_long + jnp.where(up, 0.0, fall.crowd_sold),
        refill_short=crowd.refill_short + jnp.where(up, fall.crowd_sold, 0.0),
    )
