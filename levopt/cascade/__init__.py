"""Liquidation cascades: a crowd of levered accounts whose forced flow moves the price.

For a one-asset path model, a step's exogenous log-return :math:`x` liquidates part of the crowd;
their forced sales (or buys) move the price through an impact law, which liquidates more. The
endogenous move :math:`y` is the largest fixed point :math:`y = x - I(F(y))` below :math:`x`
(above, for a rise), solved exactly bin by bin on a fixed grid of liquidation levels and
differentiated by the implicit function theorem.

Public API:

- :class:`CascadeConfig` (with :class:`CrowdConfig`, :class:`ImpactConfig`) and
  :func:`parse_cascade`: the ``cascade:`` config block, checked field by field;
- :class:`CascadeParams`: the block as arrays (a pytree);
- :class:`CrowdState`, :func:`init_crowd`, :func:`build_crowd`: the crowd on the level grid;
- :class:`CrowdDataConfig`, :func:`crowd_history` (:class:`CrowdHistory`, :class:`EntryBands`):
  a crowd reconstructed from open-interest history, its leverage mix fitted to liquidations;
- :func:`cascade_step` with :class:`CascadeInfo` and :class:`OwnAccount`: one step for one path;
- :func:`liquidation_offset`, :func:`relever_flow`, :class:`ImpactLaw`: the economic rules it
  rests on; :func:`grid_edges`, :func:`open_interest`, :func:`crowd_leverage`: read-outs.

Example::

    params = CascadeParams.from_config(
        {"crowd": {"long_oi": 5e9, "short_oi": 4e9}, "impact": {"permanent": 0.3, "daily_volume": 2e10}},
        jnp.float64,
    )
    crowd = init_crowd(params)
    y, info, crowd = cascade_step(-0.05, crowd, params, dt_hours=24.0)
"""

from levopt.cascade.config import (
    CascadeConfig,
    CrowdConfig,
    CrowdDataConfig,
    ImpactConfig,
    liquidation_offset,
    parse_cascade,
)
from levopt.cascade.crowd import (
    CascadeParams,
    CrowdState,
    EntryBands,
    build_crowd,
    crowd_leverage,
    deposit,
    grid_edges,
    init_crowd,
    level_offsets,
    open_interest,
)
from levopt.cascade.history import CrowdHistory, crowd_history, reconstruct
from levopt.cascade.impact import ImpactLaw
from levopt.cascade.solve import (
    MULTIPLIER_GUARD,
    CascadeInfo,
    OwnAccount,
    cascade_step,
    relever_flow,
)

__all__ = [
    "MULTIPLIER_GUARD",
    "CascadeConfig",
    "CascadeInfo",
    "CascadeParams",
    "CrowdConfig",
    "CrowdDataConfig",
    "CrowdHistory",
    "CrowdState",
    "EntryBands",
    "ImpactConfig",
    "ImpactLaw",
    "OwnAccount",
    "build_crowd",
    "cascade_step",
    "crowd_history",
    "crowd_leverage",
    "deposit",
    "grid_edges",
    "init_crowd",
    "level_offsets",
    "liquidation_offset",
    "open_interest",
    "parse_cascade",
    "reconstruct",
    "relever_flow",
]
