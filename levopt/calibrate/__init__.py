"""Bayesian calibration of path models (numpyro NUTS) and the posterior as simulation input.

Names are imported on first use (PEP 562) so that ``levopt.calibrate.cli`` imports without numpyro.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from levopt.calibrate.fit import CalibrationResult, CalibrationWarning, calibrate, check_diagnostics
    from levopt.calibrate.posterior import calibrate_config, model_from_calibration
    from levopt.calibrate.ppc import posterior_predictive_check
    from levopt.config.calibrated import CalibratedModelConfig, CalibrateSpec, check_model_section

_EXPORTS = {
    "CalibrateSpec": "levopt.config.calibrated",
    "CalibratedModelConfig": "levopt.config.calibrated",
    "check_model_section": "levopt.config.calibrated",
    "CalibrationResult": "levopt.calibrate.fit",
    "CalibrationWarning": "levopt.calibrate.fit",
    "calibrate": "levopt.calibrate.fit",
    "check_diagnostics": "levopt.calibrate.fit",
    "calibrate_config": "levopt.calibrate.posterior",
    "model_from_calibration": "levopt.calibrate.posterior",
    "posterior_predictive_check": "levopt.calibrate.ppc",
}

__all__ = [
    "CalibrateSpec",
    "CalibratedModelConfig",
    "CalibrationResult",
    "CalibrationWarning",
    "calibrate",
    "calibrate_config",
    "check_diagnostics",
    "check_model_section",
    "model_from_calibration",
    "posterior_predictive_check",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'levopt.calibrate' has no attribute {name!r}")
