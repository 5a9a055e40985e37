"""levopt: leverage optimization for crypto derivatives by simulation and optimization.

Importing levopt changes no global setting: JAX's 64-bit mode is enabled only inside levopt's own
calls (see :mod:`levopt.precision`), and JAX's persistent compilation cache is pointed at levopt's
cache directory by the first of them (see :mod:`levopt.cache`; ``LEVOPT_CACHE_DIR=DIR`` moves it,
``LEVOPT_CACHE_DIR=off`` disables it). Optional heavy dependencies (cvxpy, numpyro) are imported
when first used.
"""

__version__ = "0.1.0"

from levopt.config import Config, load_config
from levopt.errors import ConfigError, DataError, InfeasibleError, LevoptError, SolverError
from levopt.objectives import METRICS, ConvexForm, Metric, objective, register_metric
from levopt.paths import MODELS, PathModel, register_model
from levopt.policies import POLICIES, Policy, register_policy
from levopt.position import position_risk
from levopt.problem import Problem
from levopt.runner import build, evaluate, run, simulate
from levopt.sweep import run_sweep

__all__ = [
    "METRICS",
    "MODELS",
    "POLICIES",
    "Config",
    "ConfigError",
    "ConvexForm",
    "DataError",
    "InfeasibleError",
    "LevoptError",
    "Metric",
    "PathModel",
    "Policy",
    "Problem",
    "SolverError",
    "build",
    "evaluate",
    "load_config",
    "objective",
    "position_risk",
    "register_metric",
    "register_model",
    "register_policy",
    "run",
    "run_sweep",
    "simulate",
]
