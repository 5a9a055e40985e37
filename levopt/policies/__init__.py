"""Leverage policies, looked up by name in :data:`POLICIES`."""

from levopt.policies._base import POLICIES, Bounds, FreeParam, Policy, PolicyConfig, register_policy
from levopt.policies.constant import Constant

__all__ = ["POLICIES", "Bounds", "Constant", "FreeParam", "Policy", "PolicyConfig", "register_policy"]
