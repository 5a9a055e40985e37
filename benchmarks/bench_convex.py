"""Solve time of ``solve_convex`` against a hand-written cvxpy program of the same problem.

The problem: CVaR-constrained Kelly (maximize E log W s.t. CVaR_0.95(-log W) <= limit) on S
scenarios of 3 correlated GBM assets over a 7-day period, with fees and a borrow/cash spread.
Rows: the first call (build + canonicalize + solve), re-solves (median of ``--repeats``), a sweep
over three CVaR limits, and Riskfolio-Lib when it is importable.

    .venv/bin/python benchmarks/bench_convex.py [--scenarios 20000] [--repeats 5]

Prints a markdown table and writes ``benchmarks/results/convex.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import cvxpy as cp
import numpy as np

import levopt
from levopt.optimize.convex import ConvexProblem, evaluate_metric, scenarios_from_simulation, solve_convex
from levopt.problem import versions

MARKET = {
    "borrow_rate": 0.07,
    "cash_rate": 0.03,
    "fee": 0.0005,
    "slippage": 0.0005,
    "maintenance_margin": 0.0,
}
MODEL = {
    "kind": "gbm",
    "mu": [0.5, 0.3, 0.2],
    "sigma": [0.8, 0.6, 0.5],
    "corr": [[1.0, 0.5, 0.3], [0.5, 1.0, 0.4], [0.3, 0.4, 1.0]],
}
LEVEL = 0.95


def riskfolio_comparison(R: np.ndarray, years: float, repeats: int) -> dict:
    """levopt's convex layer against Riskfolio-Lib's exact-Kelly CVaR optimization on the same rows.

    Riskfolio's problem (``obj='MaxRet', kelly='exact', rm='CVaR'`` with ``upperCVaR``): maximize the
    mean of log(1 + w.R) over the rows, CVaR at 95% of the loss -w.R at most a limit, budget 1,
    long-only, no costs. The limit is halfway between the minimum CVaR and the unconstrained
    optimum's CVaR, so it binds.
    """
    try:
        import pandas as pd
        import riskfolio as rp
    except ImportError:
        return {"case": "Riskfolio-Lib", "status": "skipped: not installed (pip install riskfolio-lib)"}
    from levopt.optimize import scenarios_from_returns

    scen = scenarios_from_returns(R, "simple", years)
    free = solve_convex(ConvexProblem("log_growth", [], lower=0.0, upper=1.0, budget=1.0), scen)
    cvar_spec = {"metric": "cvar", "level": LEVEL, "returns": "simple"}
    cvar_free = evaluate_metric(cvar_spec, free.weights, scen)
    safest = solve_convex(ConvexProblem(cvar_spec, [], lower=0.0, upper=1.0, budget=1.0), scen)
    # Halfway between the minimum-CVaR and the unconstrained Kelly portfolio: the limit binds.
    limit = 0.5 * (safest.value + cvar_free)
    problem = ConvexProblem(
        "log_growth",
        [{"metric": "cvar", "level": LEVEL, "returns": "simple", "max": limit}],
        lower=0.0,
        upper=1.0,
        budget=1.0,
    )

    def ours():
        return solve_convex(problem, scen).weights

    def theirs():
        port = rp.Portfolio(returns=pd.DataFrame(R, columns=[f"a{i}" for i in range(R.shape[1])]))
        port.assets_stats(method_mu="hist", method_cov="hist")
        port.alpha = 1 - LEVEL
        port.upperCVaR = limit
        port.solvers = ["CLARABEL"]
        w = port.optimization(model="Classic", rm="CVaR", obj="MaxRet", kelly="exact", rf=0, l=0, hist=True)
        if w is None:
            raise RuntimeError(f"Riskfolio-Lib found no solution on {R.shape[0]} scenarios")
        return np.asarray(w).reshape(-1)

    t_ours = [timed(ours)[0] for _ in range(repeats)]
    t_theirs, w_theirs = [], None
    for _ in range(repeats):
        t, w_theirs = timed(theirs)
        t_theirs.append(t)
    w_ours = ours()
    return {
        "case": "Riskfolio-Lib exact Kelly + CVaR",
        "status": "ok",
        "scenarios": int(R.shape[0]),
        "limit": limit,
        "levopt_s": statistics.median(t_ours),
        "riskfolio_s": statistics.median(t_theirs),
        "ratio": statistics.median(t_ours) / statistics.median(t_theirs),
        "weights_levopt": w_ours.tolist(),
        "weights_riskfolio": w_theirs.tolist(),
        "max_weight_gap": float(np.max(np.abs(w_ours - w_theirs))),
        "log_growth_levopt": evaluate_metric("log_growth", w_ours, scen),
        "log_growth_riskfolio": evaluate_metric("log_growth", w_theirs, scen),
    }


def direct_program(R: np.ndarray, years: float, limit: float) -> tuple[cp.Problem, cp.Variable]:
    """The same problem written by hand: plain Variables, cp.log, Rockafellar–Uryasev CVaR."""
    s, n = R.shape
    fee = MARKET["fee"] + MARKET["slippage"]
    w, a = cp.Variable(n), cp.Variable()
    cash = 1 - cp.sum(w) - fee * cp.norm1(w)
    interest = cp.minimum(
        cash * math.expm1(MARKET["cash_rate"] * years), cash * math.expm1(MARKET["borrow_rate"] * years)
    )
    log_wealth = cp.log(cash + cp.sum(w) + R @ w + interest)
    cvar = a + cp.sum(cp.pos(-log_wealth - a)) / (s * (1 - LEVEL))
    return cp.Problem(cp.Maximize(cp.sum(log_wealth) / (s * years)), [cvar <= limit]), w


def _compiled_data(problem: ConvexProblem, scen, market) -> dict:
    from levopt.optimize import convex

    return convex._compile(problem, scen, market).problem.get_problem_data("CLARABEL")[0]


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2,000 scenarios, 2 repeats (smoke run)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "convex.json"))
    args = parser.parse_args()
    if args.quick:
        args.scenarios, args.repeats = 2000, 2

    problem = levopt.build(
        {
            "seed": 0,
            "paths": 1024,
            "horizon_days": 28,
            "precision": "float64",
            "model": MODEL,
            "market": MARKET,
            "policy": {"kind": "constant", "weights": [0.3, 0.3, 0.3], "rebalance": 7},
        }
    )
    scen = scenarios_from_simulation(problem, problem.key(0), args.scenarios)
    kelly = solve_convex(ConvexProblem("log_growth"), scen, problem.market)
    kelly_cvar = evaluate_metric({"metric": "cvar", "level": LEVEL}, kelly.weights, scen, problem.market)
    limits = [0.5 * kelly_cvar, 0.6 * kelly_cvar, 0.7 * kelly_cvar]

    def ours_problem(limit: float) -> ConvexProblem:
        return ConvexProblem(
            "log_growth", [{"metric": "cvar", "max": limit, "level": LEVEL, "returns": "log"}]
        )

    rows: list[dict] = []
    # First calls: build + canonicalize + solve (levopt caches its program after this).
    t_first, res = timed(lambda: solve_convex(ours_problem(limits[0]), scen, problem.market))

    def build_and_solve():
        prob, w = direct_program(scen.returns, scen.years, limits[0])
        prob.solve(solver="CLARABEL")
        return prob, w

    direct_first, (prob, w_direct) = timed(build_and_solve)
    # Repeats interleaved, so that load from other processes hits both sides alike.
    ours_wall, ours_solver, direct_wall, direct_solver, direct_resolve = [], [], [], [], []
    for _ in range(args.repeats):
        t, r = timed(lambda: solve_convex(ours_problem(limits[0]), scen, problem.market))
        ours_wall.append(t)
        ours_solver.append(r.solve_time)
        t, (fresh, _) = timed(build_and_solve)
        direct_wall.append(t)
        direct_solver.append(fresh.solver_stats.solve_time)
        t, _ = timed(lambda: prob.solve(solver="CLARABEL"))  # the same cp.Problem object again
        direct_resolve.append(t)
    iterations = {"levopt": res.iterations, "direct": prob.solver_stats.num_iters}
    # Both sides hand Clarabel the same (A, b, c)? Then timing differences are machine noise.
    ours_data = _compiled_data(ours_problem(limits[0]), scen, problem.market)
    direct_data = prob.get_problem_data("CLARABEL")[0]
    identical = all(
        (ours_data[k] != direct_data[k]).nnz == 0
        if k == "A"
        else np.array_equal(ours_data[k], direct_data[k])
        for k in ("A", "b", "c")
    )
    w_direct = np.asarray(w_direct.value)
    gap = float(np.max(np.abs(res.weights - w_direct)))

    def med(xs):
        return statistics.median(xs)

    rows.append(
        {"case": "first call (build + compile + solve)", "levopt_s": t_first, "direct_s": direct_first}
    )
    rows.append(
        {
            "case": f"solve, median of {args.repeats} (levopt cached / direct rebuilt)",
            "levopt_s": med(ours_wall),
            "direct_s": med(direct_wall),
        }
    )
    rows.append(
        {
            "case": "solve, same cp.Problem re-solved (direct)",
            "levopt_s": med(ours_wall),
            "direct_s": med(direct_resolve),
        }
    )
    rows.append(
        {"case": "solver time only (Clarabel)", "levopt_s": med(ours_solver), "direct_s": med(direct_solver)}
    )
    # A sweep of 3 limits: levopt re-solves its DPP program; by hand, one program per limit.
    t_ours_sweep, _ = timed(lambda: [solve_convex(ours_problem(lim), scen, problem.market) for lim in limits])
    t_direct_sweep, _ = timed(
        lambda: [direct_program(scen.returns, scen.years, lim)[0].solve(solver="CLARABEL") for lim in limits]
    )
    rows.append({"case": "sweep over 3 cvar limits", "levopt_s": t_ours_sweep, "direct_s": t_direct_sweep})
    for row in rows:
        row["ratio"] = row["levopt_s"] / row["direct_s"]

    # Riskfolio's Clarabel call returns no solution on this problem from about 5,000 rows up (levopt
    # retries Clarabel with a shorter step in that case), so the comparison uses the first 2,000 rows.
    riskfolio_row = riskfolio_comparison(scen.returns[:2000], scen.years, args.repeats)

    print(
        f"\nCVaR-constrained Kelly, {args.scenarios} scenarios x 3 assets, level {LEVEL}, "
        f"limit {limits[0]:.4f}; |w_levopt - w_direct|_inf = {gap:.2e}; Clarabel iterations "
        f"{iterations['levopt']} (levopt) vs {iterations['direct']} (direct); "
        f"identical solver data (A, b, c): {identical}\n"
    )
    print("| case | levopt (s) | hand-written cvxpy (s) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['case']} | {row['levopt_s']:.3f} | {row['direct_s']:.3f} | {row['ratio']:.2f} |")
    if "levopt_s" in riskfolio_row:
        r = riskfolio_row
        print(
            f"\nRiskfolio-Lib exact-Kelly CVaR ({r['scenarios']} identical scenarios, budget 1, long-only, "
            f"simple-return CVaR <= {r['limit']:.4f}): levopt {r['levopt_s']:.3f} s, Riskfolio {r['riskfolio_s']:.3f} s "
            f"(ratio {r['ratio']:.2f}); |w_levopt - w_riskfolio|_inf = {r['max_weight_gap']:.2e}"
        )
    else:
        print(f"| {riskfolio_row['case']} | — | — | {riskfolio_row['status']} |")

    out = {
        "problem": {
            "scenarios": args.scenarios,
            "assets": 3,
            "level": LEVEL,
            "limit": limits[0],
            "period_days": 7,
            "market": MARKET,
        },
        "weights_levopt": res.weights.tolist(),
        "weights_direct": w_direct.tolist(),
        "max_weight_gap": gap,
        "iterations": iterations,
        "identical_solver_data": identical,
        "rows": rows,
        "riskfolio": riskfolio_row,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor(),
        },
        "versions": versions(),
        "repeats": args.repeats,
        "quick": args.quick,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
