r"""The price-impact law of a one-sided flow, defined once for the solver, the re-lever flow and tests.

A net sale of notional :math:`Q \ge 0` (settlement currency) within one step moves the log-price by
:math:`-I(Q)`; a net purchase by :math:`+I(Q)`:

- ``linear`` (Kyle 1985; Almgren & Chriss 2000): :math:`I(Q) = (\lambda_p + \lambda_t)\,Q/V`;
- ``sqrt`` (Almgren, Thum, Hauptmann & Li 2005; Tóth et al. 2011; on BTC Donier & Bonart,
  arXiv:1412.4503): :math:`I(Q) = Y\sigma_{day}\sqrt{Q/V}`.

Both are :math:`c\,Q` or :math:`c\sqrt{Q}` with one scale :math:`c`; :class:`ImpactLaw` holds it. Flows
within one step add before the law is applied (one metaorder), except the re-levering accounts'
trade, which is its own metaorder (:func:`levopt.cascade.cascade_step`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
from jax import Array

from levopt.cascade.crowd import CascadeParams


class ImpactLaw(NamedTuple):
    r"""One step's impact law: :math:`I(Q) = c\,Q` (``linear``) or :math:`c\sqrt{Q}` (``sqrt``).

    Attributes:
        kind: ``"linear"`` or ``"sqrt"`` (a Python string: the solver's branch is static).
        scale: :math:`c = (\lambda_p + \lambda_t)/V` or :math:`Y\sigma_{day}/\sqrt{V}`.
        temporary: the fraction of every move that is temporary, :math:`\lambda_t/(\lambda_p +
            \lambda_t)` (0 when both are 0) or ``temporary_fraction``.
    """

    kind: str
    scale: Array
    temporary: Array

    @classmethod
    def of(cls, params: CascadeParams, daily_vol: Any = None) -> ImpactLaw:
        """The law of ``params``; ``daily_vol`` (σ_day) replaces ``params.daily_vol`` when given."""
        if params.impact_kind == "linear":
            total = params.permanent + params.temporary
            share = jnp.where(total > 0, params.temporary / jnp.where(total > 0, total, 1.0), 0.0)
            return cls("linear", total / params.daily_volume, share)
        sigma = params.daily_vol if daily_vol is None else jnp.asarray(daily_vol, params.dtype)
        return cls(
            "sqrt", params.coefficient * sigma / jnp.sqrt(params.daily_volume), params.temporary_fraction
        )

    def __call__(self, flow: Array) -> Array:
        """:math:`I(Q)` for a one-sided flow ``flow`` ≥ 0 (0 for ``flow`` ≤ 0)."""
        if self.kind == "linear":
            return self.scale * flow
        pos = flow > 0
        return jnp.where(pos, self.scale * jnp.sqrt(jnp.where(pos, flow, 1.0)), 0.0)

    def slope(self, flow: Array) -> Array:
        """:math:`I'(Q)`; for ``sqrt`` at :math:`Q \\le 0`, where it is infinite, 0 (callers treat
        that point apart)."""
        if self.kind == "linear":
            return jnp.broadcast_to(self.scale, jnp.shape(flow))
        pos = flow > 0
        return jnp.where(pos, 0.5 * self.scale / jnp.sqrt(jnp.where(pos, flow, 1.0)), 0.0)

    def signed(self, buy: Array) -> Array:
        """The log-price move of a net purchase ``buy`` (negative: a net sale): sign·I(|buy|)."""
        if self.kind == "linear":
            return self.scale * buy
        return jnp.sign(buy) * self(jnp.abs(buy))
