"""Bayesian calibration of path models (numpyro NUTS) and the posterior as simulation input."""

from __future__ import annotations

from levopt.calibrate.fit import CalibrationResult, CalibrationWarning, calibrate, check_diagnostics
from levopt.calibrate.funding import (
    FundingFit,
    fit_funding,
    fit_funding_mle,
    funding_ppc,
    read_funding,
    simulate_funding,
)
from levopt.calibrate.garch_mle import GarchFit, filter_garch, fit_garch_mle
from levopt.calibrate.posterior import calibrate_config, funding_from_calibration, model_from_calibration
from levopt.calibrate.ppc import posterior_predictive_check
from levopt.config.calibrated import CalibratedModelConfig, CalibrateSpec, check_model_section

__all__ = [
    "CalibrateSpec",
    "CalibratedModelConfig",
    "CalibrationResult",
    "CalibrationWarning",
    "FundingFit",
    "GarchFit",
    "calibrate",
    "calibrate_config",
    "check_diagnostics",
    "check_model_section",
    "filter_garch",
    "fit_funding",
    "fit_funding_mle",
    "fit_garch_mle",
    "funding_from_calibration",
    "funding_ppc",
    "model_from_calibration",
    "posterior_predictive_check",
    "read_funding",
    "simulate_funding",
]
