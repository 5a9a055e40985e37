"""A built config: the path model, policy and market as arrays, the PRNG streams, and the metrics
the config reports. Below the optimizers and the runner, which take a :class:`Problem`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from levopt.config import Config
from levopt.engine import Market, Outcome, draw_noise, simulate_outcome_jit
from levopt.engine.book import opening_legs
from levopt.errors import ConfigError
from levopt.objectives import Context, MetricSpecs, evaluate_metrics, get_metric, hashable
from levopt.paths import MODELS, PathModel
from levopt.policies import POLICIES, Bounds, Policy
from levopt.precision import scoped_x64

STREAM_PATHS, STREAM_OUT_OF_SAMPLE, STREAM_CALIBRATION = 0, 1, 2
"""Independent random streams derived from the config's seed by ``fold_in``."""


@dataclass(frozen=True)
class Problem:
    """Everything a simulation needs, built from a validated config.

    Attributes:
        cfg: the validated config.
        model, policy, market: the path model, the policy and the venue's rules as pytrees.
        free: bounds of the policy's free parameters, by field name.
        dtype: the config's precision.
        n_draws: with posterior uncertainty, the number of parameter draws on the model's leading
            axis (path p uses draw p % n_draws); else None.
        calibration: the calibration summary when the model was calibrated.
    """

    cfg: Config
    model: PathModel
    policy: Policy
    free: dict[str, Bounds]
    market: Market
    dtype: Any
    n_draws: int | None = None
    calibration: dict[str, Any] | None = None

    @property
    def ctx(self) -> Context:
        return Context(self.cfg.years, self.cfg.ruin_floor)

    def key(self, stream: int) -> jax.Array:
        return jax.random.fold_in(jax.random.PRNGKey(self.cfg.seed), stream)

    @scoped_x64
    def simulate(
        self, key: jax.Array, policy: Policy | None = None, paths: int | None = None, noise: Any = None
    ) -> Outcome:
        cfg = self.cfg
        return simulate_outcome_jit(
            key,
            self.model,
            self.policy if policy is None else policy,
            self.market,
            paths=paths or cfg.paths,
            steps=cfg.steps,
            dt=cfg.dt,
            dtype=self.dtype,
            ruin_floor=cfg.ruin_floor,
            chunk_size=cfg.chunk_size,
            n_draws=self.n_draws,
            noise=noise,
        )

    @scoped_x64
    def draw_noise(self, key: jax.Array, paths: int) -> Any:
        return draw_noise(
            key, self.model, paths=paths, steps=self.cfg.steps, dtype=self.dtype, n_draws=self.n_draws
        )

    @scoped_x64
    def metrics(self, outcome: Outcome, extra: MetricSpecs | None = None) -> dict[str, Any]:
        """``{"metrics", "stderr"}`` of the config's metrics plus ``extra`` ones (see :func:`report_specs`)."""
        specs, _ = report_specs(self.cfg, extra or {})
        values, errors = evaluate_metrics(outcome, self.ctx, specs)
        return {"metrics": values, "stderr": errors}


def dtype_of(cfg: Config) -> Any:
    return jnp.float64 if cfg.precision == "float64" else jnp.float32


@scoped_x64
def build_problem(
    cfg: Config,
    base_dir: str | Path = ".",
    *,
    model: PathModel | None = None,
    n_draws: int | None = None,
    calibration: dict[str, Any] | None = None,
    funding_draws: dict[str, np.ndarray] | None = None,
) -> Problem:
    """Build the model (unless given, e.g. from a calibration), the policy and the market arrays.

    ``base_dir`` resolves the relative data paths of the config (see :func:`levopt.config.config_dir`).
    """
    dtype = dtype_of(cfg)
    if cfg.policy is None:
        raise ConfigError("policy", "required key is missing (e.g. {kind: constant, leverage: 2.0})")
    model = build_model(cfg, base_dir) if model is None else model
    policy_cls = POLICIES.get(cfg.policy["kind"], "policy.kind")
    policy, free = policy_cls.from_config(
        cfg.policy_config_typed(), model.n_assets, cfg.steps, cfg.dt, dtype, market=cfg.market
    )
    weights = policy.opening_weights()
    market = Market.from_config(
        cfg.market,
        dtype,
        n_assets=model.n_assets,
        base_dir=base_dir,
        position_weights=weights,
        funding_draws=funding_draws,
        cascade=cfg.cascade,
    )
    check_opening(cfg, policy, market)
    check_option_book(cfg, policy, market, model)
    if market.tiers is not None and market.isolated_margin is None and "weights" in free:
        # Both optimizers search within the tiers' maximum leverage (exact for one asset).
        cap = market.tiers.max_weights()
        b = free["weights"]
        free = {**free, "weights": Bounds(np.clip(b.lower, -cap, cap), np.clip(b.upper, -cap, cap))}
    return Problem(cfg, model, policy, free, market, dtype, n_draws, calibration)


@scoped_x64
def build_model(cfg: Config, base_dir: str | Path = ".") -> PathModel:
    """The config's path model (not a calibrated one: :func:`levopt.build` runs calibrations)."""
    if "calibrate" in cfg.model:
        raise ConfigError(
            "model.calibrate", "a calibrated model is built by levopt.build (it runs the calibration)"
        )
    model_cls = MODELS.get(cfg.model["kind"], "model.kind")
    return model_cls.from_config(cfg.model_config_typed(), cfg.dt, dtype_of(cfg), base_dir=Path(base_dir))


def check_opening(cfg: Config, policy: Policy, market: Market | None = None) -> None:
    """Reject a position that the maintenance margin would liquidate at the opening trade, or that
    the venue's tiers do not allow (leverage above the tier's maximum).

    Applies to policies whose opening weights are known before the simulation
    (:meth:`~levopt.policies.Policy.opening_weights`); the opening of state-dependent policies is
    an outcome of the simulation (capped at the tiers' maximum leverage, counted in ``capped``).
    """
    weights = policy.opening_weights()
    if weights is None:
        return
    if cfg.market.venue is not None:
        _check_tier_leverage(cfg, np.abs(np.asarray(weights, float)).reshape(-1), market)
        return
    gross = float(np.sum(np.abs(np.asarray(weights, float))))
    mkt = cfg.market
    equity = 1.0 - (mkt.fee + mkt.slippage) * gross
    if gross > 0 and equity <= mkt.maintenance_margin * gross:
        raise ConfigError(
            "market.maintenance_margin",
            f"{mkt.maintenance_margin} liquidates a {gross:g}x position at open "
            f"(equity after fees {equity:.4f} <= margin {mkt.maintenance_margin * gross:.4f}); "
            f"allowed: < {equity / gross:.4f} at this leverage, or lower the leverage",
        )


def check_option_book(cfg: Config, policy: Policy, market: Market, model: PathModel) -> None:
    """An option book: the market features it runs with, and long premium within the equity."""
    if policy.instrument != "options":
        if cfg.market.margin is not None:
            raise ConfigError("market.margin", "applies to option books; allowed with policy.kind: options")
        return
    unsupported = [
        ("market.margin_mode", market.margin_mode == "isolated", "cross margin"),
        ("market.venue", market.tiers is not None, "the flat maintenance_margin for the perpetual hedge"),
        ("market.basis", market.basis is not None, "no basis"),
        ("cascade", cfg.cascade is not None, "no cascade block"),
    ]
    for field, bad, allowed in unsupported:
        if bad:
            raise ConfigError(field, f"not supported with an option book; allowed: {allowed}")
    _, _, g = opening_legs(policy, model, model.init(dtype_of(cfg)), cfg.dt)
    value = np.asarray(g.price, float)
    q = np.asarray(policy.quantity, float)
    rate = float(cfg.market.fee + cfg.market.slippage)
    # The net debit: short legs' premium is received in cash and pays for long ones (a spread).
    paid = float(np.sum(q * value) + rate * np.sum(np.abs(q) * value))
    if paid > 1.0:
        i = int(np.argmax(q * value))
        raise ConfigError(
            f"policy.legs.{i}.quantity",
            f"the book's premium, net of short legs and with fees, is {paid:.4g} of the equity; allowed: "
            f"at most 1 (this leg costs {q[i] * value[i]:.4g}; lower its quantity)",
        )


def _check_tier_leverage(cfg: Config, weights: np.ndarray, market: Market | None) -> None:
    """Opening above a tier's maximum leverage is a config error naming the tier and the maximum."""
    mkt = cfg.market
    n_assets = weights.size
    if market is None or market.tiers is None:
        return
    equity = mkt.equity()
    labels = mkt.asset_labels(n_assets)
    tiers = np.asarray(market.tiers.tier(jnp.asarray(weights)))
    lev_cols = np.asarray(market.tiers.max_leverage, float)
    bounds = np.asarray(market.tiers.bounds, float)
    margins = np.asarray(market.isolated_margin, float) if market.isolated_margin is not None else None
    im_total = 0.0
    for i, w in enumerate(weights):
        k = int(tiers[i])
        max_lev = float(lev_cols[i, k])
        im_total += w / max_lev
        lower = 0.0 if k == 0 else bounds[i, k - 1] * equity
        upper = bounds[i, k] * equity if k < bounds.shape[1] else math.inf
        where = f"{labels[i]} tier {k + 1} (notional {lower:,.0f} to {upper:,.0f})"
        if margins is not None and w / margins[i] > max_lev * (1 + 1e-9):
            raise ConfigError(
                "policy.leverage",
                f"{w / margins[i]:g}x on the isolated margin of asset {i} ({w * equity:,.0f} notional on "
                f"{margins[i] * equity:,.0f}) is above the {max_lev:g}x allowed in {where}; allowed: at most "
                f"{max_lev:g}x, or more margin (market.isolated_margin)",
            )
        if margins is None and n_assets == 1 and w > max_lev * (1 + 1e-9):
            raise ConfigError(
                "policy.leverage",
                f"{w:g}x ({w * equity:,.0f} notional on {equity:,.0f}) is above the {max_lev:g}x allowed in "
                f"{where}; allowed: at most {max_lev:g}x at this notional",
            )
    if margins is None and n_assets > 1 and im_total > 1 + 1e-9:
        raise ConfigError(
            "policy.weights",
            f"initial margin {im_total:.4g} × equity (Σ notional / tier maximum leverage) exceeds the equity; "
            "allowed: a book whose initial margin at the tiers' maximum leverages fits in the equity",
        )


def versions() -> dict[str, str]:
    out = {}
    for pkg in ("levopt", "jax", "jaxlib", "optax", "numpyro", "cvxpy", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    out["backend"] = jax.default_backend()
    return out


def _canonical(name: str, options: dict[str, Any]) -> tuple:
    """A metric with its options, defaults filled in (``cvar`` equals ``cvar(level=0.95)``)."""
    return name, hashable(get_metric(name).defaults() | options)


def report_specs(cfg: Config, extra: MetricSpecs) -> tuple[MetricSpecs, dict[str, str]]:
    """The config's metrics plus ``extra`` ones not already among them, and where each extra label
    is reported (``cvar(level=0.95)`` is reported as ``cvar``)."""
    specs = dict(cfg.metric_specs())
    known = {_canonical(name, opts): label for label, (name, opts) in specs.items()}
    where = {}
    for label, spec in extra.items():
        where[label] = known.setdefault(_canonical(*spec), label)
        specs.setdefault(where[label], spec)
    return specs, where
