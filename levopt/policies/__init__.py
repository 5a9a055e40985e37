"""Leverage policies, looked up by name in :data:`POLICIES`."""

from levopt.policies._base import (
    POLICIES,
    Bounds,
    FreeParam,
    HoldsWeights,
    Param,
    Policy,
    PolicyConfig,
    register_policy,
    resolve_param,
)
from levopt.policies.constant import Constant
from levopt.policies.dynamic import Cppi, FractionalKelly, VolTarget
from levopt.policies.options import Options
from levopt.policies.schedule import Schedule

__all__ = [
    "POLICIES",
    "Bounds",
    "Constant",
    "Cppi",
    "FractionalKelly",
    "FreeParam",
    "HoldsWeights",
    "Options",
    "Policy",
    "PolicyConfig",
    "Schedule",
    "VolTarget",
    "Param",
    "register_policy",
    "resolve_param",
]
