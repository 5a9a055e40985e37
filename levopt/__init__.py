"""levopt: leverage optimization for crypto derivatives by simulation and optimization."""

import jax

# float64 must be available for `precision: float64`; every array levopt creates carries an explicit
# dtype, so float32 runs stay float32.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from levopt.config import Config, load_config  # noqa: E402
from levopt.errors import ConfigError, DataError, InfeasibleError, LevoptError, SolverError  # noqa: E402
from levopt.objectives import METRICS, objective  # noqa: E402
from levopt.paths import MODELS, register_model  # noqa: E402
from levopt.policies import POLICIES, register_policy  # noqa: E402
from levopt.runner import build, evaluate, run, simulate  # noqa: E402
from levopt.sweep import run_sweep  # noqa: E402

__all__ = [
    "METRICS", "MODELS", "POLICIES", "Config", "ConfigError", "DataError", "InfeasibleError", "LevoptError",
    "SolverError", "build", "evaluate", "load_config", "objective", "register_model", "register_policy", "run",
    "run_sweep", "simulate",
]
