"""Typed results: what ``levopt evaluate | run | calibrate`` and sweeps write, and what the CLI, the
report and the sweep table read back.

The writers build these models (so a result that does not fit its schema fails where it is made)
and store ``to_dict()``; the readers validate the files with :func:`read_result` (so a damaged or
foreign file is one error naming the file and the field). The Python API keeps returning plain
dicts with the same keys (``levopt.evaluate(cfg)["metrics"]``). The JSON schemas are in
``docs/results.md`` (made by ``python docs/make_schemas.py``).

Numbers: a metric may be undefined, NaN (a standard error from too few paths) or ±inf (the log-growth
of a ruined scenario); files are strict JSON and store every non-finite number as ``null``, which
reads back as NaN (the strings ``"inf"`` / ``"-inf"`` of files from earlier versions still read).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from levopt.errors import ConfigError


def _number(value: Any) -> Any:
    if value is None:
        return math.nan
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value


Number = Annotated[float, BeforeValidator(_number)]
"""A float that also reads ``null`` (NaN: how :mod:`levopt.io` writes non-finite numbers) and the
``"inf"``/``"-inf"`` strings of earlier files."""


class Result(BaseModel):
    """Base of the result models: known keys typed, further keys kept (forward compatible)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    _optional: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the keys the writer gave (an optional section given as None is left out)."""
        out = self.model_dump(exclude_unset=True)
        for key in self._optional:
            if out.get(key) is None:
                out.pop(key, None)
        return out


class Estimates(Result):
    """Metric values and their Monte Carlo standard errors, by label."""

    metrics: dict[str, Number]
    stderr: dict[str, Number] = {}


class EvaluateResult(Estimates):
    """``levopt evaluate``: the metrics of the config's policy."""

    _optional = ("calibration", "sweep_point")
    config: dict[str, Any]
    seed: int
    versions: dict[str, str]
    timings: dict[str, Number] = {}
    calibration: dict[str, Any] | None = None
    sweep_point: dict[str, Any] | None = None


class InSample(Estimates):
    """Metrics at the optimum on the search's own paths (``paths``) or scenarios (``scenarios``)."""

    _optional = ("paths", "scenarios", "period_years")
    paths: int | None = None
    scenarios: int | None = None
    period_years: Number | None = None


class ConstraintResult(Result):
    """A constraint out of sample: ``satisfied`` holds within two standard errors."""

    metric: str
    sense: Literal["max", "min"]
    limit: Number
    value: Number
    stderr: Number
    in_sample: Number | None = None
    satisfied: bool
    strictly_satisfied: bool


class OptimizerReport(Result):
    """How the search went (further keys depend on the method: ``history``, ``status``, ...)."""

    method: Literal["optax", "cvxpy"]
    iterations: int | None = None
    converged: bool
    wall_s: Number


class Trajectories(Result):
    """Quantiles over paths of equity and gross leverage at each day, for plots.

    ``equity_median_ci`` and ``leverage_median_ci`` (rows: lower, upper) bound the median within
    about ± 2 standard errors: the sample quantiles at 1/2 ± 1/sqrt(``paths``), a distribution-free
    interval (absent in results written before they were added).
    """

    days: list[float]
    quantiles: list[float]
    equity: list[list[Number]]
    leverage: list[list[Number]]
    paths: int | None = None
    equity_median_ci: list[list[Number]] | None = None
    leverage_median_ci: list[list[Number]] | None = None


class LeverageProfile(Result):
    """Metrics of the chosen policy with its leverage scaled by each factor in ``scale``: one list
    per metric (``log_growth``, ``cvar``, ... as further keys), all on the same paths.

    ``stderr`` holds each value's standard error and ``diff_stderr`` the standard error of its
    difference from the value at scale 1 (the chosen policy), paired on those common paths, by
    metric; ``paths`` is their number. Results written before these were added have the lists only.
    """

    scale: list[Number]
    gross_leverage: list[Number] | None = None
    stderr: dict[str, list[Number]] = {}
    diff_stderr: dict[str, list[Number]] = {}
    paths: int | None = None


class RunResult(Result):
    """``levopt run``: the optimized policy, tested out of sample.

    ``policy_stderr`` has the keys and shapes of ``policy``: the standard deviation of each optimized
    parameter over ``optimizer.replicates`` searches on independent sets of paths (null with one).
    ``not_identified`` lists the parameters whose s.e. exceeds a tenth of their allowed range: the
    objective is too flat in them for the paths used.
    """

    _optional = ("trajectories", "leverage_profile", "calibration", "sweep_point")
    policy: dict[str, Any]
    policy_stderr: dict[str, Any] = {}
    not_identified: list[str] = []
    in_sample: InSample
    out_of_sample: Estimates
    constraints: list[ConstraintResult]
    optimizer: OptimizerReport
    config: dict[str, Any]
    seed: int
    versions: dict[str, str]
    timings: dict[str, Number] = {}
    trajectories: Trajectories | None = None
    leverage_profile: LeverageProfile | None = None
    calibration: dict[str, Any] | None = None
    sweep_point: dict[str, Any] | None = None


class SweepRow(Result):
    """One row of ``results.parquet``: the point's values, ``policy.*``, ``metrics.*``, ``stderr.*``
    and ``constraints.*.satisfied`` columns besides these."""

    point: int
    point_id: str
    wall_s: Number | None = None
    converged: bool | None = None
    iterations: int | None = None


class SweepMeta(Result):
    """``sweep.json``: the sweep's keys, its base config and the ids of its points."""

    keys: list[str]
    mode: str = "grid"
    points: int | None = None
    config: dict[str, Any]
    point_ids: list[str] = []


class ParameterSummary(Result):
    """Posterior summary of one parameter (config units)."""

    mean: Number
    sd: Number
    q05: Number
    q95: Number
    r_hat: Number | None = None
    ess: Number | None = None


class CalibrationSummary(Result):
    """``posterior.json``: per-parameter summaries (extra keys named by parameter), ``derived``
    quantities and the sampler's ``diagnostics``."""

    model: str
    diagnostics: dict[str, Any]
    derived: dict[str, ParameterSummary] | None = None

    def parameters(self) -> dict[str, ParameterSummary]:
        return {
            k: ParameterSummary.model_validate(v)
            for k, v in (self.model_extra or {}).items()
            if isinstance(v, dict) and "mean" in v
        }


RESULT_MODELS: dict[str, type[Result]] = {
    "evaluate": EvaluateResult,
    "run": RunResult,
    "sweep_row": SweepRow,
    "sweep": SweepMeta,
    "calibration": CalibrationSummary,
}


def parameter_label(name: str, index: tuple[int, ...]) -> str:
    """``name`` for a number, ``name[i]`` / ``name[i,j]`` for an element of an array parameter."""
    return f"{name}[{','.join(map(str, index))}]" if index else name


def parameter_arrays(
    policy: dict[str, Any], stderr: dict[str, Any]
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each numeric policy parameter as ``(name, values, s.e.)`` arrays of one shape (s.e. NaN where
    not reported); non-numeric entries are left out."""
    out = []
    for name, value in policy.items():
        try:
            values = np.asarray(value, float)
            errors = np.asarray(stderr.get(name, math.nan), float)
        except (TypeError, ValueError):
            continue
        out.append(
            (name, values, errors if errors.shape == values.shape else np.full(values.shape, math.nan))
        )
    return out


def parameter_rows(policy: dict[str, Any], stderr: dict[str, Any]) -> list[tuple[str, float, float]]:
    """Each numeric policy element as ``(label, value, s.e.)`` (s.e. NaN when not reported), with the
    labels ``not_identified`` uses."""
    rows = []
    for name, values, errors in parameter_arrays(policy, stderr):
        rows += [
            (parameter_label(name, i), float(values[i]), float(errors[i])) for i in np.ndindex(values.shape)
        ]
    return rows


def result_kind(data: dict[str, Any]) -> str:
    """``run`` for an optimized policy, else ``evaluate``."""
    return "run" if "out_of_sample" in data or "policy" in data else "evaluate"


def parse_result(data: Any, kind: str | None = None, source: str = "result") -> Result:
    """Validate loaded JSON as the result model of ``kind`` (guessed for run/evaluate results)."""
    if not isinstance(data, dict):
        raise ConfigError(source, f"expected a JSON object, got {type(data).__name__}")
    model = RESULT_MODELS[kind or result_kind(data)]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(source, f"not a levopt {model.__name__}: {where}: {err['msg']}") from None


def read_result(path: str | Path, kind: str | None = None) -> Result:
    """Read and validate a result file (errors name the file and the field)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read it as JSON ({exc})") from None
    return parse_result(data, kind, str(path))
