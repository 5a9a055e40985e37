"""Leverage policies, looked up by name in :data:`POLICIES`."""

from levopt.policies._base import POLICIES, Bounds, FreeParam, Policy, PolicyConfig, register_policy
from levopt.policies.constant import Constant
from levopt.policies.dynamic import Cppi, FractionalKelly, VolTarget
from levopt.policies.schedule import Schedule

__all__ = [
    "POLICIES", "Bounds", "Constant", "Cppi", "FractionalKelly", "FreeParam", "Policy", "PolicyConfig",
    "Schedule", "VolTarget", "register_policy",
]
