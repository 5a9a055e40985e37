"""Path models: one-step transitions of log-prices, looked up by name in :data:`MODELS`."""

from levopt.paths._base import MODELS, ModelConfig, PathModel, StepOut, register_model
from levopt.paths.bootstrap import Bootstrap
from levopt.paths.dcc import DccGarch
from levopt.paths.garch import Garch
from levopt.paths.gbm import GBM
from levopt.paths.merton import Merton

__all__ = [
    "GBM",
    "Bootstrap",
    "DccGarch",
    "MODELS",
    "Garch",
    "Merton",
    "ModelConfig",
    "PathModel",
    "StepOut",
    "register_model",
]
