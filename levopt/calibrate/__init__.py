"""Bayesian calibration of path models (numpyro NUTS) and the posterior as simulation input."""

from __future__ import annotations

from levopt.calibrate.fit import CalibrationResult, CalibrationWarning, calibrate, check_diagnostics
from levopt.calibrate.posterior import calibrate_config, model_from_calibration
from levopt.calibrate.ppc import posterior_predictive_check
from levopt.config.calibrated import CalibratedModelConfig, CalibrateSpec, check_model_section

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
