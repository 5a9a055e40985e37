"""The typed YAML schema of an experiment. Unknown keys and out-of-range values are errors that
name the field and what is allowed, raised before anything is compiled."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from levopt.engine.market import MarketConfig
from levopt.errors import ConfigError
from levopt.paths import MODELS
from levopt.policies import POLICIES, PolicyConfig


def format_validation_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    """Turn pydantic's report into one line naming the first offending field."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    field = ".".join(p for p in (prefix, loc) if p)
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        parent = field.rsplit(".", 1)[0] if "." in field else "top level"
        return ConfigError(field, f"unknown key (not allowed in {parent})")
    if err["type"] == "missing":
        return ConfigError(field, "required key is missing")
    if "input" in err and "got" not in msg and not isinstance(err["input"], dict):
        msg = f"{msg} (got {err['input']!r})"
    return ConfigError(field, msg)


class MetricSpec(BaseModel):
    """A metric with options, e.g. ``{metric: cvar, level: 0.99}``; extra keys are its options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    metric: str
    label: str | None = None

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def name(self) -> str:
        return self.label or self.metric


class Config(BaseModel):
    """An experiment: market model, venue rules, leverage policy and what to compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0)
    paths: int = Field(100_000, gt=0)
    horizon_days: float = Field(30.0, gt=0)
    steps_per_day: int = Field(1, ge=1)
    precision: Literal["float32", "float64"] = "float64"
    chunk_size: int = Field(32_768, ge=256, description="paths per chunk (memory bound)")
    ruin_floor: float = Field(1e-6, gt=0, lt=1)
    model: dict[str, Any]
    market: MarketConfig = MarketConfig()
    policy: dict[str, Any]
    metrics: list[str | MetricSpec] | None = None
    objective: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None
    name: str | None = None
    _base_dir: str = PrivateAttr(".")

    @field_validator("model", "policy")
    @classmethod
    def _has_kind(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "kind" not in v:
            raise ValueError("needs a 'kind'")
        return v

    @model_validator(mode="after")
    def _whole_steps(self):
        steps = self.horizon_days * self.steps_per_day
        if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
            raise ValueError(
                f"horizon_days x steps_per_day must be a whole number of steps >= 1, got {steps:g}"
            )
        return self

    @property
    def steps(self) -> int:
        return round(self.horizon_days * self.steps_per_day)

    @property
    def dt(self) -> float:
        """Step length in years (365-day year: crypto trades every day)."""
        return 1.0 / (365.0 * self.steps_per_day)

    @property
    def years(self) -> float:
        return self.horizon_days / 365.0

    def model_config_typed(self) -> Any:
        """The validated model section: the path model's schema, or the calibrated-model schema
        (``levopt.calibrate.config``) when the section has a ``calibrate`` block."""
        if "calibrate" in self.model:
            from levopt.calibrate.config import check_model_section

            return check_model_section(self.model)
        return validate_section(self.model, MODELS.get(self.model["kind"], "model.kind").Config, "model")

    def policy_config_typed(self) -> PolicyConfig:
        return validate_section(self.policy, POLICIES.get(self.policy["kind"], "policy.kind").Config, "policy")

    def metric_specs(self) -> dict[str, tuple[str, dict[str, Any]]]:
        from levopt.objectives import DEFAULT_METRICS, get_metric

        entries = self.metrics if self.metrics is not None else list(DEFAULT_METRICS)
        specs: dict[str, tuple[str, dict[str, Any]]] = {}
        for i, entry in enumerate(entries):
            spec = MetricSpec(metric=entry) if isinstance(entry, str) else entry
            get_metric(spec.metric, f"metrics[{i}]").check_options(spec.options, f"metrics[{i}]")
            specs[spec.name] = (spec.metric, spec.options)
        return specs

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in (what results record)."""
        out = self.model_dump(mode="json", exclude_none=True)
        out["model"] = self.model_config_typed().model_dump(mode="json", exclude_none=True)
        out["policy"] = self.policy_config_typed().model_dump(mode="json", exclude_none=True)
        return out


EXTRA_MODEL_KEYS = ("calibrate", "uncertainty")
"""Model keys handled by the runner rather than the path model's own schema."""


def validate_section(section: dict[str, Any], schema: type[BaseModel], prefix: str) -> Any:
    body = {k: v for k, v in section.items() if k not in EXTRA_MODEL_KEYS or prefix != "model"}
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        raise format_validation_error(exc, prefix) from None


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """``data['a']['b'] = value`` for ``dotted = 'a.b'``, creating intermediate mappings."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(dotted, f"{part!r} is not a mapping, cannot set a key inside it")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``'model.sigma=0.6'`` -> ``('model.sigma', 0.6)`` (value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError("--set", f"expected key=value, got {item!r}")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"cannot parse value {raw!r}: {exc}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config", f"file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path}: the top level must be a mapping of keys")
    return data


def load_config(source: str | Path | dict[str, Any] | Config, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Parse and validate a config from a YAML path, a dict or a :class:`Config`.

    ``overrides`` are ``key=value`` strings with dotted keys (the CLI's ``--set``).
    """
    if isinstance(source, Config) and not overrides:
        return source
    if isinstance(source, Config):
        data = source.model_dump(mode="json", exclude_none=True)
    elif isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        data = read_yaml(source)
        base = Path(source).resolve().parent
        data.setdefault("_base_dir", str(base))
    for item in overrides:
        set_dotted(data, *parse_override(item))
    base_dir = data.pop("_base_dir", None)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc) from None
    cfg.model_config_typed()
    cfg.policy_config_typed()
    cfg.metric_specs()
    if base_dir is not None:
        cfg._base_dir = base_dir
    return cfg


def resolve_path(cfg: Config, path: str | Path) -> Path:
    """A data path from the config: absolute, or relative to the config file's directory."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(cfg._base_dir) / p
