"""The architecture's promises: layers, one metric catalogue, declared interfaces, no global state.

References are independent of the code under test where numbers are compared: the closed-form
mean of a drift-compensated uniform-shock model, and each layer's optimum checked against the
other on identical scenarios (consistency of two solvers on one definition).
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

import cvxpy as cp
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Z, make_config

import levopt
from levopt.config import parse_objective
from levopt.engine import simulate_outcome
from levopt.objectives import METRICS, ConvexForm, Metric, get_metric
from levopt.optimize import ConvexProblem, optimize_policy, scenarios_from_simulation, solve_convex
from levopt.optimize.convex import _Builder, _parse_metric, _solve_with_retry, evaluate_metric
from levopt.paths import GBM, MODELS, ModelConfig, PathModel, StepOut
from levopt.policies import POLICIES, Policy
from levopt.problem import STREAM_PATHS

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --- no hidden global state ---------------------------------------------------------------------


def test_import_leaves_jax_x64_alone():
    assert _python("import levopt, jax; print(jax.config.jax_enable_x64)") == "False"


FLOAT64 = make_config(paths=2048, horizon_days=20, market__borrow_rate=0.07, market__cash_rate=0.02)


@pytest.mark.no_x64
def test_float64_config_is_float64_whether_or_not_x64_was_enabled():
    assert not jax.config.jax_enable_x64
    off = levopt.evaluate(FLOAT64)
    with jax.enable_x64(True):
        on = levopt.evaluate(FLOAT64)
    assert off["metrics"] == on["metrics"] and off["stderr"] == on["stderr"]
    x = levopt.simulate(FLOAT64)
    assert x.dtype == np.float64 and not jax.config.jax_enable_x64


@pytest.mark.no_x64
def test_sweep_threads_and_run_scope_x64_themselves(tmp_path):
    cfg = make_config(
        paths=512,
        horizon_days=10,
        policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 4.0}, "rebalance": 1},
        objective={"maximize": "log_growth"},
        optimizer={"method": "optax", "replicates": 1, "steps": 20},
        sweep={"model.sigma": [0.5, 0.7]},
    )
    frame = levopt.run_sweep(cfg, tmp_path)
    with jax.enable_x64(True):
        again = levopt.run_sweep(cfg, tmp_path / "again")
    assert np.array_equal(frame["metrics.log_growth"].to_numpy(), again["metrics.log_growth"].to_numpy())


def test_simulate_needs_no_policy_or_market():
    x = levopt.simulate({"paths": 256, "horizon_days": 5, "model": {"kind": "gbm", "sigma": 0.5}})
    assert x.shape == (256, 5)
    with pytest.raises(levopt.ConfigError, match="^policy: required key"):
        levopt.evaluate({"paths": 256, "horizon_days": 5, "model": {"kind": "gbm", "sigma": 0.5}})


# --- one metric catalogue: a new metric with a convex form, optimized by both layers -----------


def _shortfall(o, ctx, floor: float = 0.9):
    """E[(floor − W_T)_+]: exact when the equity left after a liquidation is below ``floor``."""
    return o.survival * jnp.maximum(floor - o.wealth, 0.0) + (1 - o.survival) * floor - o.liq_wealth


def _shortfall_expression(s, floor: float = 0.9):
    return s.pi @ s.cp.pos(floor - s.wealth)


def _shortfall_value(v, floor: float = 0.9):
    return float(v.pi @ np.maximum(floor - v.wealth, 0.0))


@pytest.fixture(scope="module")
def shortfall_metric():
    name = "test_expected_shortfall_below"
    if name not in METRICS:
        levopt.register_metric(
            Metric(
                name,
                _shortfall,
                higher_is_better=False,
                unit="pct",
                aggregate="mean",
                convex=ConvexForm(_shortfall_expression, _shortfall_value),
            )
        )
    return name


def test_new_metric_with_convex_form_gives_one_optimum_in_both_layers(shortfall_metric):
    constraint = {"metric": shortfall_metric, "floor": 0.85, "max": 0.01}
    paths = 2048
    cfg = make_config(
        paths=paths,
        model={"kind": "gbm", "mu": 0.8, "sigma": 0.7},
        policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 5.0}, "rebalance": "never"},
        market={"borrow_rate": 0.08, "cash_rate": 0.02, "fee": 0.0005, "maintenance_margin": 0.0},
        objective={"maximize": "log_growth", "constraints": [constraint]},
        optimizer={
            "method": "optax",
            "replicates": 1,
            "steps": 400,
            "paths": paths,
            "tol": 1e-6,
            "feasibility_tol": 1e-6,
        },
    )
    problem = levopt.build(cfg)
    found = optimize_policy(problem, parse_objective(cfg["objective"]))
    scen = scenarios_from_simulation(problem, problem.key(STREAM_PATHS), paths)
    convex = solve_convex(
        ConvexProblem("log_growth", [constraint], lower=0.0, upper=5.0), scen, problem.market
    )
    assert convex.constraints[0].binding  # the new metric decides the optimum
    w_grad, w_cvx = float(np.ravel(found.params["weights"])[0]), float(convex.weights[0])
    assert w_grad == pytest.approx(w_cvx, rel=0.01)
    assert found.in_sample["metrics"]["log_growth"] == pytest.approx(convex.value, abs=1e-4)


def test_catalogue_carries_every_fact_about_a_metric():
    cvar = get_metric("cvar")
    assert not cvar.higher_is_better and cvar.unit == "pct" and cvar.aggregate == "statistic"
    assert cvar.defaults() == {"level": 0.95, "returns": "log"} and cvar.convex is not None
    with pytest.raises(levopt.ConfigError, match=r"^objective\.constraints\[0\]\.level"):
        parse_objective(
            {"maximize": "log_growth", "constraints": [{"metric": "cvar", "level": 1.5, "max": 1}]}
        )
    assert get_metric("var").not_convex and get_metric("gross_leverage").weights_fn is not None


def test_convex_layer_errors_name_the_objective_section():
    with pytest.raises(levopt.ConfigError, match=r"^objective\.constraints\[0\]\.metric: 'var'"):
        ConvexProblem("log_growth", [{"metric": "var", "max": 0.1}])


# --- explicit interfaces -------------------------------------------------------------------------


class UniformConfig(ModelConfig):
    kind: str = "test_uniform_shocks"
    mu: float = 0.0
    sigma: float = 0.5


@levopt.register_model("test_uniform_shocks")
class UniformShocks(PathModel):
    """Log-return μdt − log(sinh a / a) + a·u, u ~ U(−1, 1), a = σ√(3 dt): E[S_T/S_0] = exp(μT)."""

    Config = UniformConfig
    example: ClassVar[dict] = {"kind": "test_uniform_shocks", "sigma": 0.5}
    mu: jax.Array
    sigma: jax.Array
    corr_chol: jax.Array

    @classmethod
    def from_config(cls, cfg, dt, dtype, **_):
        return cls(
            mu=jnp.asarray([cfg.mu], dtype),
            sigma=jnp.asarray([cfg.sigma], dtype),
            corr_chol=jnp.eye(1, dtype=dtype),
        )

    def noise(self, key, n, dtype):
        return jax.random.uniform(key, (n, 1), dtype, -1.0, 1.0)

    def init(self, dtype):
        return ()

    def step(self, state, u, dt):
        a = self.sigma * jnp.sqrt(3 * dt)
        x = self.mu * dt - jnp.log(jnp.sinh(a) / a) + a * u
        return state, StepOut(x, self.sigma * jnp.sqrt(dt), jnp.zeros((), bool))

    def current_vol(self, state, dt):
        return self.sigma


def test_new_path_model_in_under_40_lines_runs_through_evaluate_and_run():
    source = Path(__file__).read_text().splitlines()
    start = next(i for i, line in enumerate(source) if line.startswith("class UniformConfig"))
    end = next(i for i, line in enumerate(source) if line.startswith("def test_new_path_model"))
    assert end - start < 40 + 3  # the model, its schema and the blank lines around them
    mu, T = 0.3, 30 / 365
    cfg = make_config(
        paths=20000,
        model={"kind": "test_uniform_shocks", "mu": mu, "sigma": 0.6},
        policy={"kind": "constant", "leverage": 1.0, "rebalance": "never"},
        market={"maintenance_margin": 0.0},
    )
    res = levopt.evaluate(cfg)
    # A fully invested unlevered long earns E[S_T/S_0] − 1 = exp(μT) − 1 (closed form of the model).
    assert abs(res["metrics"]["mean_return"] - math.expm1(mu * T)) < Z * res["stderr"]["mean_return"]
    cfg |= {
        "paths": 2048,
        "policy": {"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}, "rebalance": 1},
        "objective": {"maximize": "log_growth"},
        "optimizer": {"method": "optax", "replicates": 1, "steps": 60},
    }
    ran = levopt.run(cfg, profiles=False)
    # Kelly under an i.i.d. model with variance σ² (daily rebalancing, no costs): f* = μ/σ²; the
    # argmax of the sample growth errs by about 1/(σ sqrt(N T)) (N paths over T years).
    kelly, se = mu / 0.6**2, 1 / (0.6 * math.sqrt(2048 * 30 / 365))
    assert ran["optimizer"]["converged"] and abs(ran["policy"]["leverage"] - kelly) < Z * se


def test_a_missing_piece_fails_when_the_class_is_defined():
    with pytest.raises(TypeError, match="does not implement current_vol, field corr_chol"):

        @levopt.register_model("test_incomplete")
        class Incomplete(PathModel):
            Config = UniformConfig
            example: ClassVar[dict] = {}
            mu: jax.Array

            @classmethod
            def from_config(cls, cfg, dt, dtype, **_):
                return cls(jnp.zeros(1))

            def noise(self, key, n, dtype):
                return jnp.zeros((n, 1))

            def init(self, dtype):
                return ()

            def step(self, state, z, dt):
                return state, None

    with pytest.raises(TypeError, match="does not implement target"):

        @levopt.register_policy("test_incomplete_policy")
        class NoTarget(Policy):
            Config = POLICIES.get("constant").Config
            example: ClassVar[dict] = {}

            @classmethod
            def from_config(cls, cfg, n_assets, steps, dt, dtype, *, market=None):
                return cls(rebalance_every=0), {}


# --- conformance over every registry entry --------------------------------------------------------

CASCADE = {
    "crowd": {"long_oi": 5e9, "short_oi": 4e9},
    "impact": {"kind": "linear", "permanent": 0.5, "daily_volume": 2e10},
    "bins": 100,
}
"""A crowd for the metrics that read one."""

MODEL_NAMES = [n for n in MODELS.names() if not n.startswith("test_")]
POLICY_NAMES = [n for n in POLICIES.names() if not n.startswith("test_")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A returns file for models that resample data (their examples name ``returns.csv``)."""
    d = tmp_path_factory.mktemp("data")
    r = np.random.default_rng(0).normal(0.0, 0.03, 400)
    (d / "returns.csv").write_text("ret\n" + "\n".join(f"{x:.8f}" for x in r) + "\n")
    return d


def _config(model: dict, policy: dict, precision: str) -> dict[str, Any]:
    return make_config(
        paths=512,
        horizon_days=8,
        precision=precision,
        model=model,
        policy=policy,
        market={"maintenance_margin": 0.01, "fee": 0.0005, "borrow_rate": 0.05},
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_model_conformance(name, data_dir):
    """float64: shapes, determinism given a key, finite gradients; float32: dtypes, vmap over keys."""
    cls = MODELS.get(name)
    policy = POLICIES.get("constant").example
    n_assets = max(
        (len(v) for v in cls.example.values() if isinstance(v, list) and np.ndim(v) == 1), default=1
    )
    if n_assets > 1:
        weights = [policy["leverage"] / n_assets] * n_assets
        policy = {k: v for k, v in policy.items() if k != "leverage"} | {"weights": weights}
    problem = levopt.build(_config(cls.example, policy, "float64"), base_dir=data_dir)
    key = problem.key(STREAM_PATHS)
    outcome = problem.simulate(key, paths=256)
    assert outcome.wealth.shape == (256,) and outcome.wealth.dtype == np.float64
    assert np.array_equal(
        outcome.wealth, problem.simulate(key, paths=256).wealth
    )  # deterministic given a key
    growth = get_metric("log_growth")
    params, static = eqx.partition(problem.model, eqx.is_inexact_array)
    grads = jax.grad(
        lambda p: growth.value(_simulate_with_model(problem, eqx.combine(p, static), key), problem.ctx)
    )(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))

    problem = levopt.build(_config(cls.example, policy, "float32"), base_dir=data_dir)
    keys = jax.random.split(key, 2)
    batched = jax.jit(jax.vmap(lambda k: problem.simulate(k, paths=256).wealth))(keys)
    assert (
        batched.shape == (2, 256)
        and batched.dtype == np.float32
        and not np.array_equal(batched[0], batched[1])
    )
    # vmap may order floating-point operations differently: equal to a few ulps.
    single = problem.simulate(keys[0], paths=256).wealth
    eps = np.finfo(np.float32).eps
    np.testing.assert_allclose(batched[0], single, rtol=16 * eps, atol=16 * eps)


def _simulate_with_model(problem, model, key):
    cfg = problem.cfg
    return simulate_outcome(
        key,
        model,
        problem.policy,
        problem.market,
        paths=256,
        steps=cfg.steps,
        dt=cfg.dt,
        dtype=problem.dtype,
        ruin_floor=cfg.ruin_floor,
    )


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_policy_conformance(name):
    """float64: determinism, finite gradients in every parameter, scaling, words; float32: dtypes."""
    cls = POLICIES.get(name)
    problem = levopt.build(_config(GBM.example, cls.example, "float64"))
    key = problem.key(STREAM_PATHS)
    outcome = problem.simulate(key, paths=256)
    assert outcome.wealth.dtype == np.float64
    assert np.array_equal(outcome.wealth, problem.simulate(key, paths=256).wealth)
    growth = get_metric("log_growth")
    params, static = eqx.partition(problem.policy, eqx.is_inexact_array)
    grads = jax.grad(
        lambda p: growth.value(problem.simulate(key, policy=eqx.combine(p, static), paths=256), problem.ctx)
    )(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    scaled = problem.policy.scaled(jnp.asarray(0.5, problem.dtype))
    assert jax.tree.structure(scaled) == jax.tree.structure(problem.policy)
    text, _ = cls.describe(dict(cls.example), dict(cls.example), 30.0, "rebalanced daily")
    assert isinstance(text, str) and text
    single = levopt.build(_config(GBM.example, cls.example, "float32"))
    assert single.simulate(key, paths=256).wealth.dtype == np.float32


@pytest.mark.parametrize("name", [n for n in METRICS.names() if not n.startswith("test_")])
def test_metric_conformance(name):
    metric = get_metric(name)
    options = dict(metric.example)
    cfg = _config(GBM.example, {"kind": "constant", "weights": [1.5], "rebalance": 1}, "float64")
    if metric.requires == "cascade":
        cfg["cascade"] = CASCADE
    if metric.requires == "options":
        cfg["policy"] = dict(POLICIES.get("options").example)
    problem = levopt.build(cfg)
    if metric.on_outcomes:
        key = problem.key(STREAM_PATHS)
        value = jax.jit(lambda o: metric.value(o, problem.ctx, **options))(problem.simulate(key))
        assert np.isfinite(value) and np.isfinite(
            metric.stderr(problem.simulate(key), problem.ctx, **options)
        )
        grad = jax.grad(
            lambda w: metric.value(
                problem.simulate(key, policy=problem.policy.scaled(w)), problem.ctx, **options
            )
        )(jnp.asarray(1.0))
        assert np.isfinite(grad)
    if metric.convex is not None:
        # The cvxpy expression and the numpy evaluation are one definition: equal at any weights.
        scen = scenarios_from_simulation(problem, problem.key(STREAM_PATHS), 500)
        spec = _parse_metric({"metric": name, **options}, "metric", constraint=False)[0]
        builder = _Builder(scen, problem.market)
        expr = builder.expression(spec)
        builder.w.value = np.array([1.3])
        for var in expr.variables():
            if var is not builder.w:  # an auxiliary variable (CVaR's a) is minimized over: solve for it
                # Through the convex layer's own solve, with its retry on a numerical stall.
                status, failure = _solve_with_retry(
                    cp.Problem(cp.Minimize(expr), [builder.w == builder.w.value]), "CLARABEL", {}
                )
                assert status == cp.OPTIMAL, failure
        expected = evaluate_metric({"metric": name, **options}, [1.3], scen, problem.market)
        assert float(expr.value) == pytest.approx(expected, rel=1e-6, abs=1e-9)


# --- size of functions ------------------------------------------------------------------------------


def test_no_function_longer_than_80_lines_without_a_reason():
    """A longer function must say why in a comment on its first lines ("long because ...")."""
    offenders = []
    for path in sorted((ROOT / "levopt").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno + 1 > 80
            ):
                head = "\n".join(lines[node.lineno - 1 : node.lineno + 12])
                if "long because" not in head:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not offenders, offenders


def test_result_schemas_in_the_docs_are_current():
    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import make_schemas
    finally:
        sys.path.pop(0)
    assert (ROOT / "docs" / "results.md").read_text() == make_schemas.render(), (
        "run python docs/make_schemas.py"
    )


def test_results_written_by_run_read_back_typed(tmp_path):
    from levopt.io import write_json
    from levopt.results import RunResult, read_result

    result = levopt.run(
        make_config(
            paths=512,
            horizon_days=10,
            policy={"kind": "constant", "leverage": {"init": 1.0, "min": 0.0, "max": 3.0}, "rebalance": 1},
            objective={"maximize": "log_growth", "constraints": [{"metric": "cvar", "max": 0.5}]},
            optimizer={"method": "optax", "replicates": 1, "steps": 20},
        ),
        profiles=False,
    )
    write_json(tmp_path / "results.json", result)
    typed = read_result(tmp_path / "results.json")
    assert isinstance(typed, RunResult) and typed.constraints[0].metric == "cvar"
    assert typed.out_of_sample.metrics == result["out_of_sample"]["metrics"]
    (tmp_path / "bad.json").write_text('{"policy": {}, "in_sample": 3}')
    with pytest.raises(levopt.ConfigError, match=r"bad\.json: not a levopt RunResult: in_sample"):
        read_result(tmp_path / "bad.json")
