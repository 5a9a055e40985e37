"""Config validation and the CLI: bad input is one readable line and exit code 2."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from conftest import Z, make_config

import levopt
from levopt.cli import main
from levopt.errors import ConfigError


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.argv", ["levopt", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(make_config(paths=512)))
    return path


@pytest.mark.parametrize(
    "override,field,allowed",
    [
        ("model.kind=heston", "model.kind", "gbm"),
        ("model.volatility=0.5", "model.volatility", "unknown key"),
        ("surprise=1", "surprise", "unknown key"),
        ("model.sigma=-0.5", "model.sigma", ">= 0"),
        ("paths=-10", "paths", "greater than 0"),
        ("policy.leverage=-2", "policy.leverage", ">= 0"),
        ("policy.kind=martingale", "policy.kind", "constant"),
        ("precision=float16", "precision", "float32"),
        ("market.maintenance_margin=0.25", "market.maintenance_margin", "allowed"),
        ("model={kind: garch, omega: 1.0e-5, alpha: 0.3, beta: 0.7}", "model", "< 1"),
        ("model={kind: garch, omega: 1.0e-5, alpha: 0.1, beta: 0.7, gamma: 0.4}", "model", "< 1"),
        ("horizon_days=2.5", "horizon_days", "whole number"),
        ("market.borrow_rate=0.01", "market", "cash_rate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(monkeypatch, capsys, config_file, override, field, allowed):
    if override.startswith("market.borrow_rate"):
        override_list = ["--set", "market.cash_rate=0.05", "--set", override]
    else:
        override_list = ["--set", override]
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", str(config_file), *override_list)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and field in lines[0] and allowed in lines[0]


def test_missing_file_and_bad_yaml(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", str(tmp_path / "none.yaml"))
    assert code == 2 and "file not found" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("paths: [1, 2\n")
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", str(bad))
    assert code == 2 and "invalid YAML" in err


def test_evaluate_writes_the_contract_json(monkeypatch, capsys, config_file, tmp_path):
    out = tmp_path / "res" / "result.json"
    code, _, _ = run_cli(
        monkeypatch, capsys, "evaluate", str(config_file), "--out", str(out), "--set", "model.sigma=0.5"
    )
    assert code in (0, None)
    result = json.loads(out.read_text())
    assert set(result) >= {"metrics", "stderr", "config", "seed", "versions", "timings"}
    assert result["config"]["model"] == {"kind": "gbm", "mu": 0.0, "sigma": 0.5}
    assert result["config"]["market"]["maintenance_margin"] == 0.005
    assert set(result["metrics"]) >= {
        "log_growth",
        "cvar",
        "var",
        "liquidation_probability",
        "liquidation_probability_discrete",
        "max_drawdown",
        "mean_return",
    }
    assert set(result["stderr"]) == set(result["metrics"])
    assert not list(out.parent.glob(".*.tmp"))


def test_python_api_matches_cli(monkeypatch, capsys, config_file):
    """The CLI's JSON on stdout and the Python API (from the file and from a dict) agree exactly."""
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", str(config_file))
    assert code in (0, None)
    cli = json.loads(out)
    a = levopt.evaluate(config_file)
    b = levopt.evaluate(yaml.safe_load(config_file.read_text()))
    assert cli["metrics"] == a["metrics"] == b["metrics"] and cli["stderr"] == a["stderr"]


def test_metric_options_and_custom_metric():
    @levopt.objective("test_loss_probability", higher_is_better=False)
    def loss_probability(outcome, ctx):
        return outcome.survival * (outcome.wealth < 1) + (1 - outcome.survival)

    cfg = make_config(
        paths=1024,
        metrics=["log_growth", {"metric": "cvar", "level": 0.99, "label": "cvar99"}, "test_loss_probability"],
    )
    res = levopt.evaluate(cfg)
    assert set(res["metrics"]) == {"log_growth", "cvar99", "test_loss_probability"}
    assert 0 < res["metrics"]["test_loss_probability"] < 1
    with pytest.raises(ConfigError, match="unknown option"):
        levopt.evaluate(make_config(metrics=[{"metric": "cvar", "alpha": 0.9}]))
    with pytest.raises(ConfigError, match="unknown metric"):
        levopt.evaluate(make_config(metrics=["sharpe_of_my_dreams"]))


def test_metric_by_import_path():
    cfg = make_config(paths=512, metrics=[{"metric": "levopt.objectives.metrics:mean_return", "label": "mr"}])
    direct = levopt.evaluate(make_config(paths=512, metrics=["mean_return"]))
    # An unregistered function is treated as a general metric (batch-means standard error).
    res = levopt.evaluate(cfg)
    assert res["metrics"]["mr"] == pytest.approx(direct["metrics"]["mean_return"], rel=1e-12)


def test_user_registered_model():
    from levopt.paths import GBM

    class TwiceVolConfig(GBM.Config):
        kind: str = "test_gbm_twice_vol"

    @levopt.register_model("test_gbm_twice_vol")
    class TwiceVol(GBM):
        Config = TwiceVolConfig

        @classmethod
        def from_config(cls, cfg, dt, dtype, **_):
            base = GBM.from_config(cfg, dt, dtype)
            return cls(mu=base.mu, sigma=2 * base.sigma, corr_chol=base.corr_chol)

    x = levopt.simulate(make_config(paths=4096, model={"kind": "test_gbm_twice_vol", "sigma": 0.2}))
    # The sample standard deviation of n normal draws has relative standard error 1/sqrt(2n).
    assert abs(x.std() / (0.4 / math.sqrt(365.0)) - 1) < Z / math.sqrt(2 * x.size)
