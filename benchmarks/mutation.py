"""Mutation check of the margin engine: apply realistic mistakes to ``levopt/engine/`` one at a time
and run the tests that cover it; a mutation the tests do not notice "survives".

Each mutation is a one-line change a careful person could still make (a sign, a side, a dropped
term, an off-by-one). The repository is copied to a temporary directory per mutation, so the
working tree is never touched; the tests import the mutated copy first on ``PYTHONPATH``.

    python benchmarks/mutation.py            # all mutations, writes benchmarks/results/mutation.json
    python benchmarks/mutation.py --only funding_sign,fee_dropped
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/test_engine.py",
    "tests/test_numpy_reference.py",
    "tests/test_verify_accounting.py",
    "tests/test_verify_portfolio_metrics.py",
    "tests/test_policies.py",
    "tests/test_convex.py",
]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    what: str


SIM, MARKET = "levopt/engine/simulate.py", "levopt/engine/market.py"
MUTATIONS = [
    Mutation(
        "funding_sign",
        MARKET,
        "return -funding_rate * dt * net_notional",
        "return funding_rate * dt * net_notional",
        "longs receive funding instead of paying it",
    ),
    Mutation(
        "funding_on_gross",
        SIM,
        "funding_payment(jnp.sum(n), market.funding_rate, dt)",
        "funding_payment(jnp.sum(jnp.abs(n)), market.funding_rate, dt)",
        "funding on gross instead of net notional",
    ),
    Mutation(
        "financing_max",
        MARKET,
        "xp.minimum(cash * cash_growth, cash * borrow_growth)",
        "xp.maximum(cash * cash_growth, cash * borrow_growth)",
        "borrowing at the cash rate, lending at the borrow rate",
    ),
    Mutation(
        # (Swapping the two rates' arguments is an equivalent mutant: financing is min(c a, c b).)
        "cash_earns_borrow_rate",
        SIM,
        "financing(cash, jnp.expm1(market.cash_rate * dt),",
        "financing(cash, jnp.expm1(market.borrow_rate * dt),",
        "idle cash earns the borrow rate",
    ),
    Mutation(
        "slippage_dropped",
        MARKET,
        "return self.fee + self.slippage",
        "return self.fee",
        "slippage not charged",
    ),
    Mutation(
        "rebalance_fee_dropped",
        SIM,
        "cost = trading_cost(n_target - n, market.trading_cost_rate)",
        "cost = 0.0 * trading_cost(n_target - n, market.trading_cost_rate)",
        "no fee on rebalancing trades",
    ),
    Mutation(
        "opening_fee_dropped",
        SIM,
        "w0 = one - trading_cost(n0, market.trading_cost_rate)",
        "w0 = one",
        "no fee on the opening trade",
    ),
    Mutation(
        "rebalance_off_by_one",
        SIM,
        "due = alive & ((t + 1) % policy.rebalance_every == 0)",
        "due = alive & (t % policy.rebalance_every == 0)",
        "rebalancing one step early",
    ),
    Mutation(
        "short_barrier_side",
        SIM,
        "denom = jnp.where(long, n[0] * (1 - mm), n[0] * (1 + mm))",
        "denom = jnp.where(long, n[0] * (1 + mm), n[0] * (1 - mm))",
        "maintenance margin on the wrong side of a short's barrier",
    ),
    Mutation(
        "bridge_factor",
        SIM,
        "exponent = -2.0 * jnp.abs(barrier)",
        "exponent = -1.0 * jnp.abs(barrier)",
        "bridge crossing probability exp(-(...)/v) instead of exp(-2(...)/v)",
    ),
    Mutation(
        "survival_update",
        SIM,
        "survival=carry.survival * (1.0 - p),",
        "survival=carry.survival - p,",
        "survival decremented instead of multiplied",
    ),
    Mutation(
        "maintenance_on_start_gross",
        SIM,
        "hit = carry.alive & (w_end <= maintenance_requirement(gross_end, mm))",
        "hit = carry.alive & (w_end <= maintenance_requirement(jnp.sum(jnp.abs(n)), mm))",
        "maintenance checked on the start-of-step notional",
    ),
    Mutation(
        "liquidation_fee_dropped",
        SIM,
        "w_at_level = jnp.maximum((mm - lf) * gross_at_level, 0.0)",
        "w_at_level = jnp.maximum(mm * gross_at_level, 0.0)",
        "liquidation fee not charged at the level",
    ),
    Mutation(
        "gap_ignored",
        SIM,
        "w_liq = jnp.where(out.gap, jnp.minimum(w_gap, w_at_level), w_at_level)",
        "w_liq = w_at_level",
        "jumps liquidate at the maintenance level instead of gapping through",
    ),
    Mutation(
        "liquidated_cash_not_grown",
        SIM,
        "w_liq_T = w_liq * jnp.exp(market.cash_rate * remaining)",
        "w_liq_T = w_liq",
        "a liquidated account earns no cash rate to the horizon",
    ),
    Mutation(
        "remaining_off_by_one",
        SIM,
        "remaining = (steps - t - 1) * dt",
        "remaining = (steps - t) * dt",
        "liquidated account grown one step too long",
    ),
    Mutation(
        "drawdown_not_relative",
        SIM,
        "max_dd = jnp.maximum(carry.max_dd, 1.0 - w_next / peak)",
        "max_dd = jnp.maximum(carry.max_dd, 1.0 - w_next)",
        "drawdown measured from W_0 instead of the peak",
    ),
    Mutation(
        "portfolio_margin_weights",
        SIM,
        "c = n * (1 - mm * jnp.sign(n))",
        "c = n",
        "the portfolio bridge ignores the maintenance margin on the moving notional",
    ),
]


def run_one(m: Mutation, tests: list[str], timeout: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="levopt-mutant-") as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(
            ROOT, copy, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "__pycache__", "*.egg-info")
        )
        target = copy / m.file
        text = target.read_text()
        if text.count(m.old) != 1:
            return {"name": m.name, "status": "not applied", "what": m.what}
        target.write_text(text.replace(m.old, m.new))
        env = dict(os.environ, PYTHONPATH=str(copy))
        present = [t for t in tests if (copy / t).is_file()]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *present],
                cwd=copy,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            status = "killed" if proc.returncode != 0 else "survived"
            tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout else []
        except subprocess.TimeoutExpired:
            status, tail = "timeout", []
        return {
            "name": m.name,
            "status": status,
            "what": m.what,
            "seconds": round(time.perf_counter() - t0, 1),
            "summary": tail[0] if tail else "",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated mutation names")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only.split(",")]
    results = []
    for m in chosen:
        res = run_one(m, TESTS, args.timeout)
        results.append(res)
        print(f"{res['status']:>11}  {m.name:<28} {res.get('seconds', '')!s:>7}s  {m.what}", flush=True)
    out = ROOT / "benchmarks" / "results" / "mutation.json"
    if args.only and out.is_file():  # keep the other mutations' last results
        rerun, listed = {m.name for m in chosen}, {m.name for m in MUTATIONS}
        previous = json.loads(out.read_text())["results"]
        kept = [r for r in previous if r["name"] not in rerun and r["name"] in listed]
        results = kept + results
    survivors = [r["name"] for r in results if r["status"] == "survived"]
    out.write_text(json.dumps({"tests": TESTS, "results": results, "survivors": survivors}, indent=2) + "\n")
    print(
        f"{len(results) - len(survivors)} of {len(results)} killed; survivors: {', '.join(survivors) or 'none'}"
    )


if __name__ == "__main__":
    main()
