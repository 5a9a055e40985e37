"""The typed YAML schema of an experiment: the top-level config, the calibrated-model section and
the objective and optimizer sections. Unknown keys, non-finite numbers and out-of-range values are
errors that name the field and what is allowed, raised before anything is compiled."""

from levopt.config.calibrated import (
    CALIBRATED_KINDS,
    CalibratedModelConfig,
    CalibrateSpec,
    check_model_section,
)
from levopt.config.experiment import (
    EXTRA_MODEL_KEYS,
    Config,
    config_dir,
    load_config,
    parse_override,
    read_yaml,
    resolve_path,
    set_dotted,
    validate_section,
)
from levopt.config.objective import (
    Constraint,
    CvxpyConfig,
    ObjectiveConfig,
    OptaxConfig,
    parse_objective,
    parse_optimizer,
)
from levopt.schema import format_validation_error

__all__ = [
    "CALIBRATED_KINDS",
    "EXTRA_MODEL_KEYS",
    "CalibrateSpec",
    "CalibratedModelConfig",
    "Config",
    "Constraint",
    "CvxpyConfig",
    "ObjectiveConfig",
    "OptaxConfig",
    "check_model_section",
    "config_dir",
    "format_validation_error",
    "load_config",
    "parse_objective",
    "parse_optimizer",
    "parse_override",
    "read_yaml",
    "resolve_path",
    "set_dotted",
    "validate_section",
]
