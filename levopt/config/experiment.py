"""The typed YAML schema of an experiment. Unknown keys and out-of-range values are errors that
name the field and what is allowed, raised before anything is compiled."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from levopt.cascade import CascadeConfig
from levopt.config.calibrated import check_model_section
from levopt.config.limits import MAX_INDEX, MAX_SEED
from levopt.config.objective import parse_objective, parse_optimizer
from levopt.engine.market import MarketConfig
from levopt.errors import ConfigError
from levopt.io import read_text
from levopt.objectives import DEFAULT_METRICS, MetricRef, MetricSpecs, get_metric
from levopt.paths import MODELS
from levopt.policies import POLICIES, PolicyConfig
from levopt.schema import StrictModel, format_validation_error


class Config(StrictModel):
    """An experiment: market model, venue rules, leverage policy and what to compute."""

    seed: int = Field(0, ge=0, le=MAX_SEED)
    paths: int = Field(100_000, gt=0, le=MAX_INDEX)
    horizon_days: float = Field(30.0, gt=0)
    steps_per_day: int = Field(1, ge=1, le=MAX_INDEX)
    precision: Literal["float32", "float64"] = "float64"
    chunk_size: int = Field(32_768, ge=256, le=MAX_INDEX, description="paths per chunk (memory bound)")
    ruin_floor: float = Field(1e-6, gt=0, lt=1)
    model: dict[str, Any]
    market: MarketConfig = MarketConfig()
    cascade: CascadeConfig | None = None
    policy: dict[str, Any] | None = None
    metrics: list[str | MetricRef] | None = None
    objective: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    sweep: dict[str, Any] | None = None
    name: str | None = None

    @field_validator("model", "policy")
    @classmethod
    def _has_kind(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and "kind" not in v:
            raise ValueError("needs a 'kind'")
        if v is not None and not isinstance(v["kind"], str):
            raise ValueError(f"'kind' must be a name, got {v['kind']!r}")
        return v

    @field_validator("sweep")
    @classmethod
    def _sweep_keys(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        """Sweep keys are dotted config keys (text); ``grid``/``zip`` hold more of them."""
        for key, value in (v or {}).items():
            nested = value.items() if key in ("grid", "zip") and isinstance(value, dict) else ()
            for k in [key, *(k for k, _ in nested)]:
                if not isinstance(k, str):
                    raise ValueError(f"keys are dotted config keys such as model.sigma, got {k!r}")
        return v

    @model_validator(mode="after")
    def _whole_steps(self):
        steps = self.horizon_days * self.steps_per_day
        if not steps <= MAX_INDEX:
            raise ValueError(
                f"horizon_days x steps_per_day is {steps:g} steps; allowed: at most {MAX_INDEX} "
                "(steps are counted in 32-bit integers)"
            )
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
        (:mod:`levopt.config.calibrated`) when the section has a ``calibrate`` block."""
        if "calibrate" in self.model:
            return check_model_section(self.model)
        return validate_section(self.model, MODELS.get(self.model["kind"], "model.kind").Config, "model")

    def policy_config_typed(self) -> PolicyConfig:
        if self.policy is None:
            raise ConfigError("policy", "required key is missing (e.g. {kind: constant, leverage: 2.0})")
        return validate_section(
            self.policy, POLICIES.get(self.policy["kind"], "policy.kind").Config, "policy"
        )

    def metric_refs(self) -> list[MetricRef]:
        """The ``metrics`` entries (default: :data:`~levopt.objectives.DEFAULT_METRICS`, and with a
        venue ``leverage_capped``, how often the venue's maximum leverage capped the policy; with a
        ``cascade:`` block the cascade multiplier, the crowd's liquidated notional and how often the
        price left the crowd's grid)."""
        entries = self.metrics if self.metrics is not None else list(DEFAULT_METRICS)
        if self.metrics is None and self.market.venue is not None:
            entries.append("leverage_capped")
        if self.metrics is None and self.cascade is not None:
            entries += ["cascade_multiplier", "crowd_liquidated", "cascade_off_grid"]
        return [MetricRef(metric=e) if isinstance(e, str) else e for e in entries]

    def metric_specs(self) -> MetricSpecs:
        """``label -> (metric, options)`` of the ``metrics`` section; an entry is reported under its
        ``label``, else under the metric's name."""
        specs: MetricSpecs = {}
        for i, ref in enumerate(self.metric_refs()):
            ref.resolve(f"metrics[{i}]")
            requires = get_metric(ref.metric).requires
            if requires == "cascade" and self.cascade is None:
                raise ConfigError(
                    f"metrics[{i}]", f"{ref.metric} reads the crowd; allowed with a cascade: block"
                )
            if requires == "options" and (self.policy or {}).get("kind") != "options":
                raise ConfigError(
                    f"metrics[{i}]", f"{ref.metric} reads an option book; allowed with policy.kind: options"
                )
            name = ref.label or ref.metric
            if name in specs:
                raise ConfigError(
                    f"metrics[{i}]", f"a second entry reported as {name!r}; give one of them a label"
                )
            specs[name] = ref.spec()
        return specs

    def resolved(self) -> dict[str, Any]:
        """The config with every default filled in (what results record)."""
        out = self.model_dump(mode="json", exclude_none=True)
        out["model"] = self.model_config_typed().model_dump(mode="json", exclude_none=True)
        if self.policy is not None:
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
    key = key.strip()
    if not sep or not key:
        raise ConfigError("--set", f"expected key=value, got {item!r}")
    if any(not part.strip() for part in key.split(".")):
        raise ConfigError("--set", f"{key!r} has an empty key between dots; expected e.g. model.sigma=0.6")
    try:
        return key, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(key, f"cannot parse value {raw!r} as YAML ({yaml_problem(exc)})") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: ``line L, column C: problem``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return " ".join(f"{where}{problem}".split())


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file.

    Raises:
        ConfigError: ``config: ...`` naming the file when it is missing, not a regular file, larger
            than :data:`levopt.io.MAX_TEXT_BYTES`, binary, not UTF-8, not YAML, or not a mapping.
    """
    path = Path(path)
    text = read_text(path, "config")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path}: invalid YAML ({yaml_problem(exc)})") from None
    except RecursionError:
        raise ConfigError("config", f"{path}: nested too deeply to be a config") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError("config", f"{path}: the top level must be a mapping of keys, got {got}")
    return data


def load_config(
    source: str | Path | dict[str, Any] | Config, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Parse and validate a config from a YAML path, a dict or a :class:`Config`.

    ``overrides`` are ``key=value`` strings with dotted keys (the CLI's ``--set``). Relative data
    paths in a config are resolved against :func:`config_dir` of its source, passed on explicitly.
    """
    if isinstance(source, Config) and not overrides:
        return source
    if isinstance(source, Config):
        data = source.model_dump(mode="json", exclude_none=True)
    elif isinstance(source, dict):
        data = copy.deepcopy(source)
    else:
        data = read_yaml(source)
    for item in overrides:
        set_dotted(data, *parse_override(item))
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc) from None
    cfg.model_config_typed()
    if cfg.policy is not None:
        cfg.policy_config_typed()
    if cfg.cascade is not None:
        cfg.cascade.check()
    cfg.metric_specs()
    if cfg.objective is not None:
        parse_objective(cfg.objective)
    if cfg.optimizer is not None:
        parse_optimizer(cfg.optimizer)
    return cfg


def config_dir(source: Any, base_dir: str | Path | None = None) -> Path:
    """The directory relative data paths are resolved against: ``base_dir`` when given, else the
    config file's directory, else the working directory."""
    if base_dir is not None:
        return Path(base_dir)
    if isinstance(source, str | Path):
        return Path(source).expanduser().resolve().parent
    return Path.cwd()


def resolve_path(base_dir: str | Path, path: str | Path) -> Path:
    """A data path from a config: absolute, or relative to ``base_dir``."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base_dir) / p
