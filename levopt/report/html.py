"""``report.html``: one self-contained page (inline CSS, images as data URIs, no network) that
puts the answer first, then the evidence: metrics with standard errors, constraints, the optimizer,
the pictures, the sweep and calibration tables and the full resolved config.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from levopt.fmt import fmt_duration, fmt_lev, fmt_number, num
from levopt.io import atomic_write_bytes
from levopt.report._inputs import (
    RunInputs,
    base_metric,
    describe_policy,
    fmt_metric,
    goal,
    load_inputs,
    metric_description,
)
from levopt.report.plots import draw_all, is_optimized, sweep_leverage
from levopt.results import parameter_rows

SWEEP_ROWS = 20
"""Rows of the sweep table (the best points by the objective)."""


class Markup(str):
    """Text that is already HTML (built here from escaped parts); everything else gets escaped."""


def esc(value: Any) -> str:
    return value if isinstance(value, Markup) else html.escape(str(value), quote=True)


def _policy_uncertainty(results: dict[str, Any]) -> list[str]:
    """Each optimized parameter with its standard error over the replicate searches, and a warning
    naming the parameters the objective leaves undetermined."""
    rows = [
        [label, fmt_number(v), "–" if not math.isfinite(se) else f"± {fmt_number(se, 2)}"]
        for label, v, se in parameter_rows(results.get("policy") or {}, results.get("policy_stderr") or {})
    ]
    if not rows:
        return []
    n = (results.get("optimizer") or {}).get("replicates")
    parts = [
        f"<p>Standard error of each optimized parameter: the spread of the optimum over {esc(n)} searches "
        "on independent sets of paths.</p>",
        _table(["parameter", "value", "± s.e."], rows, classes="compact"),
    ]
    loose = results.get("not_identified") or []
    if loose:
        parts.append(
            f'<p class="status warn">⚠ not identified: {esc(", ".join(map(str, loose)))} — the objective is '
            "nearly flat in these parameters; their values are noise of the search paths.</p>"
        )
    return parts


def _table(
    columns: list[str],
    rows: list[list[Any]],
    *,
    numeric_from: int = 1,
    text_cols: tuple[int, ...] = (),
    caption: str | None = None,
    classes: str = "",
) -> Markup:
    """A table; columns from ``numeric_from`` on (except ``text_cols``) are right-aligned numbers."""

    def attr(i: int) -> str:
        return (
            " class=num"
            if i >= numeric_from and i not in text_cols and i - len(columns) not in text_cols
            else ""
        )

    # Long identifiers (model.sigma, liquidation_probability) may break after "." and "_".
    head = "".join(
        f'<th scope="col"{attr(i)}>{esc(c).replace(".", ".<wbr>").replace("_", "_<wbr>")}</th>'
        for i, c in enumerate(columns)
    )
    body = []
    for row in rows:
        cells = "".join(f"<td{attr(i)}>{esc(c)}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    cls = f' class="{esc(classes)}"' if classes else ""
    return Markup(
        f"<div class=scroll><table{cls}>{cap}<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _mark(
    ok: bool | None, yes: str = "holds", no: str = "violated", maybe: str | None = None, short: bool = False
) -> Markup:
    """A colored ✓ / ✗ / ≈ with its word (``short``: the symbol alone, the word as a tooltip)."""
    if ok is None:
        return Markup('<span class="mark unknown">–</span>')
    cls, symbol, word = (
        ("warn", "≈", maybe) if maybe is not None else (("ok", "✓", yes) if ok else ("bad", "✗", no))
    )
    text = symbol if short else f"{symbol} {esc(word)}"
    return Markup(f'<span class="mark {cls}" title="{esc(word)}">{text}</span>')


def _section(anchor: str, title: str, body: str, intro: str | None = None) -> Markup:
    lead = f'<p class="lead">{esc(intro)}</p>' if intro else ""
    return Markup(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{lead}{body}</section>')


# ---------------------------------------------------------------------------------------------
# Sections


def _header(inputs: RunInputs) -> Markup:
    cfg = inputs.config
    results = inputs.results or {}
    name = cfg.get("name") or inputs.run_dir.resolve().name
    what = {"run": "optimized policy", "evaluate": "policy evaluation"}.get(inputs.kind or "", "")
    if inputs.sweep is not None:
        what = "sweep" if not what else what + " and sweep"
    if inputs.posterior is not None and not what:
        what = "calibration"
    seed = results.get("seed", cfg.get("seed"))
    source = inputs.results_file or next(
        (inputs.run_dir / n for n in ("results.parquet", "posterior.json") if (inputs.run_dir / n).is_file()),
        None,
    )
    when = (
        datetime.fromtimestamp(source.stat().st_mtime, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        if source is not None
        else "–"
    )
    facts = [
        f"seed {seed}" if seed is not None else None,
        f"results saved {when}",
        f"{fmt_number(cfg['paths'])} paths" if "paths" in cfg else None,
        f"{fmt_number(cfg['horizon_days'])}-day horizon" if "horizon_days" in cfg else None,
        f"model {cfg['model'].get('kind', '?')}" if isinstance(cfg.get("model"), dict) else None,
    ]
    versions = results.get("versions") or {}
    chips = "".join(f"<span class=chip>{esc(k)} {esc(v)}</span>" for k, v in versions.items())
    return Markup(
        f"<header><p class=kicker>levopt report{' · ' + esc(what) if what else ''}</p>"
        f"<h1>{esc(name)}</h1>"
        f"<p class=meta>{esc(' · '.join(f for f in facts if f))}</p>"
        f"{f'<p class=versions>{chips}</p>' if chips else ''}</header>"
    )


KEY_FIGURES = ("log_growth", "cvar", "liquidation_probability", "max_drawdown")
"""Metrics shown as cards under the answer (the first label of each, e.g. ``cvar`` before ``cvar(level=0.99)``)."""


def _key_figures(metrics: dict[str, Any], stderr: dict[str, Any]) -> Markup:
    first: dict[str, str] = {}
    for name in metrics:
        if base_metric(name) in KEY_FIGURES:
            first.setdefault(base_metric(name), name)
    cards = []
    for base in KEY_FIGURES:
        if base in first:
            name = first[base]
            text, err = fmt_metric(name, metrics[name], stderr.get(name))
            cards.append(
                f"<div class=figure-card><div class=fig-value>{esc(text)}</div>"
                f"<div class=fig-err>{esc(err)}</div><div class=fig-label>{esc(name)}</div></div>"
            )
    return Markup(f"<div class=cards>{''.join(cards)}</div>" if cards else "")


def _answer(inputs: RunInputs) -> Markup:
    results = inputs.results or {}
    cfg = inputs.config
    parts = []
    if inputs.kind in ("run", "evaluate"):
        sentence, schedule = describe_policy(results if inputs.kind == "run" else None, cfg)
        lead = "" if inputs.kind == "run" else "Evaluated policy: "
        parts.append(f"<p class=answer>{esc(lead + sentence)}</p>")
        if schedule:
            parts.append(_table(schedule["columns"], schedule["rows"], numeric_from=2, classes="compact"))
        if inputs.kind == "run":
            parts.extend(_policy_uncertainty(results))
        block = results.get("out_of_sample") if inputs.kind == "run" else results
        if isinstance(block, dict) and isinstance(block.get("metrics"), dict):
            parts.append(_key_figures(block["metrics"], block.get("stderr") or {}))
        constraints = [c for c in results.get("constraints") or [] if isinstance(c, dict)]
        if constraints:
            bad = [c for c in constraints if not c.get("satisfied", False)]
            if bad:
                names = ", ".join(str(c.get("metric")) for c in bad)
                parts.append(
                    f'<p class="status bad">✗ {len(bad)} of {len(constraints)} constraints violated '
                    f"out of sample: {esc(names)}</p>"
                )
            else:
                parts.append(
                    f'<p class="status ok">✓ all {len(constraints)} constraints hold out of sample '
                    "(within 2 standard errors)</p>"
                )
        opt = results.get("optimizer")
        if isinstance(opt, dict) and opt.get("converged") is False:
            parts.append(
                '<p class="status warn">⚠ the optimizer did not converge: treat the policy as a '
                "best effort and check the optimizer section</p>"
            )
    elif inputs.sweep is not None:
        parts.append(_best_sweep_point(inputs))
    elif inputs.posterior is not None:
        post = inputs.posterior
        model = post.get("model", "the")
        shown = [
            f"{k} = {fmt_number(v.get('mean'), 3)} [{fmt_number(v.get('q05'), 3)}, {fmt_number(v.get('q95'), 3)}]"
            for k, v in post.items()
            if isinstance(v, dict) and "mean" in v
        ][:6]
        parts.append(
            f"<p class=answer>Posterior of the {esc(model)} model (mean and 90% interval): "
            f"{esc('; '.join(shown))}.</p>"
        )
    if not parts:
        return Markup("")
    return _section("answer", "The answer", "".join(parts))


def _metrics_rows(metrics: dict[str, Any], stderr: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, value in metrics.items():
        text, err = fmt_metric(name, value, stderr.get(name))
        rows.append([name, text, err, metric_description(name)])
    return rows


def _metrics_section(inputs: RunInputs) -> Markup:
    results = inputs.results or {}
    block = results.get("out_of_sample") if inputs.kind == "run" else results
    if not isinstance(block, dict) or not isinstance(block.get("metrics"), dict):
        return Markup("")
    rows = _metrics_rows(block["metrics"], block.get("stderr") or {})
    paths = inputs.config.get("paths")
    if inputs.kind == "run":
        intro = (
            f"The optimized policy on {fmt_number(paths)} fresh paths, independent of the ones it was "
            "optimized on. ± is one Monte Carlo standard error."
            if paths
            else "The optimized policy on fresh paths. ± is one Monte Carlo standard error."
        )
        title = "Out-of-sample metrics"
    else:
        intro = f"Metrics of the policy on {fmt_number(paths)} simulated paths. ± is one Monte Carlo standard error."
        title = "Metrics"
    table = _table(["metric", "value", "± std. error", "meaning"], rows, text_cols=(3,))
    return _section("metrics", title, table, intro)


def _constraints_section(results: dict[str, Any]) -> Markup:
    constraints = [c for c in results.get("constraints") or [] if isinstance(c, dict)]
    if not constraints:
        return Markup("")
    rows = []
    for c in constraints:
        label = str(c.get("metric", "?"))
        sense = (
            "≤" if c.get("sense") == "max" else "≥" if c.get("sense") == "min" else str(c.get("sense", ""))
        )
        limit_text, _ = fmt_metric(label, c.get("limit"))
        value_text, err = fmt_metric(label, c.get("value"), c.get("stderr"))
        in_text, _ = fmt_metric(label, c.get("in_sample"))
        satisfied, strict = c.get("satisfied"), c.get("strictly_satisfied")
        if satisfied and strict is False:
            mark = _mark(True, maybe="within 2 s.e. of the limit")
        else:
            mark = _mark(None if satisfied is None else bool(satisfied))
        rows.append([label, f"{sense} {limit_text}", value_text, err, in_text, mark])
    table = _table(
        ["constraint", "limit", "out of sample", "± std. error", "in sample", "status"], rows, text_cols=(5,)
    )
    return _section(
        "constraints",
        "Constraints",
        table,
        "A constraint holds when its out-of-sample value is within the limit up to two standard errors.",
    )


def _in_vs_out_section(results: dict[str, Any]) -> Markup:
    ins, oos = results.get("in_sample"), results.get("out_of_sample")
    if not isinstance(ins, dict) or not isinstance(oos, dict):
        return Markup("")
    im, om = ins.get("metrics") or {}, oos.get("metrics") or {}
    ise, ose = ins.get("stderr") or {}, oos.get("stderr") or {}
    names = [n for n in om if n in im] + [n for n in im if n not in om]
    if not names:
        return Markup("")
    rows = []
    for name in names:
        a, b = num(im.get(name)), num(om.get(name))
        diff = b - a
        se = math.hypot(num(ise.get(name, math.nan)), num(ose.get(name, math.nan)))
        z = diff / se if math.isfinite(se) and se > 0 else math.nan
        rows.append(
            [
                name,
                fmt_metric(name, im.get(name))[0],
                fmt_metric(name, om.get(name))[0],
                fmt_metric(name, diff)[0] if math.isfinite(diff) else "–",
                f"{z:+.1f}".replace("-", "−") if math.isfinite(z) else "–",
            ]
        )
    paths_in = ins.get("paths") or ins.get("scenarios")
    unit = "scenarios" if "scenarios" in ins and "paths" not in ins else "paths"
    intro = (
        "In sample: the paths the optimizer saw"
        + (f" ({fmt_number(paths_in)} {unit})" if paths_in else "")
        + "; out of sample: fresh paths. A large gap (many standard errors) means the policy was fitted to "
        "noise in its sample."
    )
    table = _table(["metric", "in sample", "out of sample", "difference", "difference / s.e."], rows)
    return _section("in-vs-out", "In sample vs out of sample", table, intro)


def _optimizer_section(results: dict[str, Any]) -> Markup:
    opt = results.get("optimizer")
    if not isinstance(opt, dict):
        return Markup("")
    rows: list[list[Any]] = [["method", str(opt.get("method", "–"))]]
    for key in ("solver", "status"):
        if key in opt:
            rows.append([key, str(opt[key])])
    rows.append(["iterations", fmt_number(opt.get("iterations"))])
    conv = opt.get("converged")
    rows.append(["converged", _mark(None if conv is None else bool(conv), yes="yes", no="no")])
    rows.append(["wall time", fmt_duration(opt.get("wall_s"))])
    history = opt.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], dict):
        last = history[-1]
        label = goal(results.get("config") or {})
        name = label[0] if label else "objective"
        rows.append([f"final {name} (in sample)", fmt_metric(name, last.get("objective"))[0]])
        rows.append(["final max constraint violation", fmt_number(last.get("max_violation"))])
        rows.append(["history records", fmt_number(len(history))])
    total = (results.get("timings") or {}).get("total_s")
    if total is not None:
        rows.append(["total run time", fmt_duration(total)])
    return _section("optimizer", "Optimizer", _table(["", "value"], rows, classes="kv"))


def _figures_section(images: list[tuple[Path, str]]) -> Markup:
    if not images:
        return Markup("")
    figs = []
    for path, caption in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        figs.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(caption)}" loading="eager">'
            f"<figcaption>{esc(caption)} <span class=file>({esc(path.name)})</span></figcaption></figure>"
        )
    return _section("plots", "Pictures", "".join(figs))


def _sweep_order(inputs: RunInputs) -> tuple[Any, str, str | None]:
    """The sweep table sorted best first, the sort's description and the objective column."""
    table = inputs.sweep
    target = goal(inputs.config)
    label, sign = target if target else ("log_growth", 1.0)
    col = f"metrics.{label}"
    if col not in table.columns:
        col = next(
            (
                c
                for c in table.columns
                if c.startswith("metrics.") and base_metric(c[8:]) == base_metric(label)
            ),
            None,
        )
    frame = table.copy()
    how = []
    keys = []
    sat_cols = [c for c in frame.columns if c.startswith("constraints.") and c.endswith(".satisfied")]
    if sat_cols:
        frame["_feasible"] = frame[sat_cols].fillna(False).astype(bool).all(axis=1)
        keys.append(("_feasible", False))
        how.append("points meeting every constraint first")
    if col is not None:
        frame["_score"] = [sign * num(v) for v in frame[col]]
        keys.append(("_score", False))
        how.insert(0, f"{'highest' if sign > 0 else 'lowest'} {label} first")
    if keys:
        frame = frame.sort_values(
            [k for k, _ in keys], ascending=[a for _, a in keys], kind="stable", na_position="last"
        )
    return frame, "; ".join(how) or "in sweep order", col


def _cell(value: Any) -> str:
    if isinstance(value, float | int) and not isinstance(value, bool):
        return fmt_number(value)
    if hasattr(value, "item"):
        return _cell(value.item())
    return str(value)


def _fmt_policy(label: str, value: float) -> str:
    """A sweep's policy number: leverage as 2.30x, other parameters (target_vol, ...) as numbers."""
    return fmt_lev(value) if "leverage" in label else fmt_number(value)


def _best_sweep_point(inputs: RunInputs) -> Markup:

    frame, how, col = _sweep_order(inputs)
    best = frame.iloc[0]
    keys = inputs.swept_keys
    where = ", ".join(f"{k} = {_cell(best[k])}" for k in keys)
    lev = sweep_leverage(inputs)
    text = f"Best of {len(frame)} sweep points ({how}): {where}"
    if lev is not None and is_optimized(inputs):
        text += f" → optimal {lev[1]} {_fmt_policy(lev[1], lev[0][inputs.sweep.index.get_loc(best.name)])}"
    if col is not None:
        value, err = fmt_metric(col[8:], best[col], best.get("stderr." + col[8:]))
        text += f", {col[8:]} {value} {err}".rstrip()
    return Markup(f"<p class=answer>{esc(text)}.</p>")


def _sweep_section(inputs: RunInputs) -> Markup:
    if inputs.sweep is None:
        return Markup("")

    frame, how, col = _sweep_order(inputs)
    keys = inputs.swept_keys
    lev = sweep_leverage(inputs) if is_optimized(inputs) else None  # else the policy is an input
    constrained = {
        c[len("constraints.") : -len(".satisfied")]
        for c in frame.columns
        if c.startswith("constraints.") and c.endswith(".satisfied")
    }
    metric_cols = [
        c
        for c in ([col] if col else [])
        + [
            c
            for c in frame.columns
            if c.startswith("metrics.")
            and (base_metric(c[8:]) in ("log_growth", "cvar") or c[8:] in constrained)
        ]
        if c is not None
    ]
    metric_cols = list(dict.fromkeys(metric_cols))
    columns = ["point", *keys]
    if lev is not None:
        columns.append(lev[1].split(" (")[0])
    columns += [c[8:] for c in metric_cols]
    has_conv = "converged" in frame.columns
    has_feasible = "_feasible" in frame.columns
    if has_conv:
        columns.append("converged")
    if has_feasible:
        columns.append("constraints")
    rows = []
    for idx, row in frame.head(SWEEP_ROWS).iterrows():
        cells: list[Any] = [_cell(row.get("point", idx))] + [_cell(row[k]) for k in keys]
        if lev is not None:
            cells.append(_fmt_policy(lev[1], lev[0][inputs.sweep.index.get_loc(idx)]))
        for c in metric_cols:
            value, err = fmt_metric(c[8:], row[c], row.get("stderr." + c[8:]))
            cells.append(f"{value} {err}".strip())
        if has_conv:
            v = row["converged"]
            cells.append(
                _mark(
                    None if v is None or v != v else bool(v),
                    yes="converged",
                    no="did not converge",
                    short=True,
                )
            )
        if has_feasible:
            cells.append(
                _mark(
                    bool(row["_feasible"]),
                    yes="all constraints hold",
                    no="a constraint is violated",
                    short=True,
                )
            )
        rows.append(cells)
    meta = inputs.sweep_meta or {}
    n = len(frame)
    total = meta.get("points", n)
    parts = [
        f"{n} of {total} points finished" if total != n else f"{n} points",
        f"swept: {', '.join(keys)}" if keys else None,
        f"{'optimal ' if has_conv else ''}{lev[1]}" if lev is not None and " (" in lev[1] else None,
        f"sorted {how}",
        f"showing the top {min(SWEEP_ROWS, n)}",
    ]
    if has_conv:
        conv = frame["converged"].fillna(False).astype(bool)
        parts.append(f"{int(conv.sum())} of {n} converged")
    table = _table(columns, rows, numeric_from=1)
    return _section("sweep", "Sweep", table, "; ".join(p for p in parts if p) + ".")


def _calibration_section(inputs: RunInputs) -> Markup:
    post = inputs.posterior
    if post is None and inputs.ppc is None:
        return Markup("")
    body = _posterior_parts(post, inputs.posterior_source) if isinstance(post, dict) else []
    stats = (inputs.ppc or {}).get("statistics")
    if isinstance(stats, dict) and (ppc := _ppc_table(stats)):
        body.append(ppc)
    if not body:
        return Markup("")
    return _section("calibration", "Calibration", "".join(body))


_POSTERIOR_COLUMNS = ["parameter", "mean", "sd", "5%", "95%", "r̂", "ESS"]


def _posterior_parts(post: dict[str, Any], source: Any) -> list[Any]:
    """Intro, posterior, derived-quantity and diagnostics tables of a posterior summary."""
    body: list[Any] = []
    rows = _posterior_rows(post)
    if rows:
        intro = _posterior_intro(post)
        body.append(f"<p>{esc(intro + ('. ' if intro else '') + 'Source: ' + str(source))}.</p>")
        body.append(_table(_POSTERIOR_COLUMNS, rows, caption="Posterior of the path-model parameters"))
    derived = post.get("derived")
    if isinstance(derived, dict) and (drows := _posterior_rows(derived)):
        body.append(_table(_POSTERIOR_COLUMNS, drows, caption="Derived quantities"))
    diag = post.get("diagnostics")
    if isinstance(diag, dict):
        names = {
            "max_r_hat": "largest r̂",
            "min_ess": "smallest ESS",
            "divergences": "divergent transitions",
        }
        drows = [
            [
                names.get(k, k.replace("_", " ")),
                _cell(v) if not isinstance(v, list) else "; ".join(map(str, v)) or "none",
            ]
            for k, v in diag.items()
        ]
        body.append(_table(["diagnostic", "value"], drows, caption="Sampler diagnostics", classes="kv"))
    return body


def _posterior_intro(post: dict[str, Any]) -> str:
    """Model, shocks, number of returns, source and date range, each where the summary has it."""
    model = post.get("model")
    intro = f"Model {model}" + (f", {post.get('dist')} shocks" if post.get("dist") else "") if model else ""
    if post.get("n_obs"):
        intro += f"{'; ' if intro else ''}{fmt_number(post['n_obs'])} returns"
    if post.get("data"):
        intro += f" from {post['data']}"
    if isinstance(post.get("range"), list) and all(post["range"]):
        intro += f" ({post['range'][0]} to {post['range'][1]})"
    return intro


def _posterior_rows(d: dict[str, Any]) -> list[list[Any]]:
    """One row per parameter summary in ``d``, r̂ above 1.01 flagged."""
    out = []
    for name, s in d.items():
        if not isinstance(s, dict) or "mean" not in s:
            continue
        r_hat = num(s.get("r_hat"))
        r_cell = f"{r_hat:.3f}" if math.isfinite(r_hat) else "–"
        if math.isfinite(r_hat) and r_hat > 1.01:
            r_cell = Markup(f'<span class="mark bad">{esc(r_cell)}</span>')
        out.append(
            [
                name + (" (fixed)" if s.get("fixed") else ""),
                fmt_number(s.get("mean")),
                fmt_number(s.get("sd"), 3),
                fmt_number(s.get("q05")),
                fmt_number(s.get("q95")),
                r_cell,
                fmt_number(round(num(s["ess"])) if math.isfinite(num(s.get("ess"))) else None),
            ]
        )
    return out


def _ppc_table(stats: dict[str, Any]) -> Markup | None:
    """The posterior predictive check's statistics, p-values in the outer 5% flagged; None if empty."""
    rows = []
    for name, s in stats.items():
        if not isinstance(s, dict):
            continue
        p = num(s.get("p_value"))
        p_cell: Any = f"{p:.2f}" if math.isfinite(p) else "–"
        if math.isfinite(p):
            extreme = p < 0.05 or p > 0.95
            p_cell = Markup(f'<span class="mark {"bad" if extreme else "ok"}">{esc(p_cell)}</span>')
        rows.append(
            [
                name,
                fmt_number(s.get("realized")),
                fmt_number(s.get("mean")),
                f"{fmt_number(s.get('q05'))} – {fmt_number(s.get('q95'))}",
                p_cell,
            ]
        )
    if not rows:
        return None
    return _table(
        ["statistic", "data", "predictive mean", "predictive 5–95%", "p-value"],
        rows,
        caption="Posterior predictive check: p-values near 0 or 1 mean the model does not "
        "reproduce that feature of the data",
    )


def _config_section(inputs: RunInputs) -> Markup:
    cfg = inputs.config
    if not cfg:
        return Markup("")

    text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    return _section(
        "config",
        "Resolved config",
        f"<pre>{esc(text)}</pre>",
        "Every setting, defaults filled in: save it as a YAML file to rerun exactly this experiment.",
    )


def _notes_section(notes: list[str]) -> Markup:
    if not notes:
        return Markup("")
    items = "".join(f"<li>{esc(n)}</li>" for n in notes)
    return _section("notes", "Notes", f"<ul>{items}</ul>")


# ---------------------------------------------------------------------------------------------

_CSS = """
:root{--ink:#1f2933;--muted:#616e7c;--line:#e4e7eb;--bg:#f7f8fa;--accent:#1f5fa8;--ok:#1e7b46;
--bad:#b42318;--warn:#a15c07}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.55 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,"Liberation Sans",sans-serif}
main{max-width:1120px;margin:0 auto;padding:28px 28px 60px}
header{margin-bottom:18px}
.kicker{margin:0;color:var(--accent);font-weight:600;text-transform:uppercase;letter-spacing:.06em;font-size:12px}
h1{margin:2px 0 4px;font-size:28px;line-height:1.2}
.meta{margin:0;color:var(--muted)}
.versions{margin:8px 0 0}
.chip{display:inline-block;margin:0 6px 4px 0;padding:1px 8px;border:1px solid var(--line);border-radius:999px;
background:#fff;color:var(--muted);font-size:12px}
nav{margin:14px 0 8px;font-size:13px}
nav a{color:var(--accent);text-decoration:none;margin-right:14px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px;margin:16px 0}
h2{margin:0 0 10px;font-size:19px}
.lead{margin:0 0 12px;color:var(--muted)}
#answer{border-left:5px solid var(--accent)}
.answer{font-size:20px;font-weight:600;margin:0 0 12px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.figure-card{flex:1 1 180px;border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:#fbfcfd}
.fig-value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums}
.fig-err{color:var(--muted);font-size:13px;min-height:1em}
.fig-label{color:var(--muted);font-size:13px}
.status{margin:8px 0 0;font-weight:600}
.status.ok,.mark.ok{color:var(--ok)} .status.bad,.mark.bad{color:var(--bad)} .status.warn,.mark.warn{color:var(--warn)}
.mark{font-weight:600;white-space:nowrap}
table{border-collapse:collapse;width:100%;margin:6px 0 14px;font-size:14px}
table.compact,table.kv{width:auto;min-width:40%}
caption{text-align:left;font-weight:600;margin-bottom:6px;color:var(--ink)}
th,td{padding:6px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-size:13px;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line)}
.scroll{overflow-x:auto}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
tbody tr:nth-child(even){background:#fafbfc}
table.kv td:first-child{color:var(--muted)}
figure{margin:0 0 22px}
figure img{display:block;max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
figcaption{color:var(--muted);font-size:13px;margin-top:6px}
.file{font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12px}
pre{background:#f3f4f6;border-radius:6px;padding:12px 14px;overflow:auto;font:13px/1.45 ui-monospace,
"DejaVu Sans Mono",Menlo,Consolas,monospace;margin:0}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
@media print{body{background:#fff}section{break-inside:avoid;border:none;padding:0}}
"""

_SCRIPT = (
    'window.addEventListener("load",function(){var im=document.images,n=0;'
    "for(var i=0;i<im.length;i++){if(im[i].complete&&im[i].naturalWidth>0)n++;}"
    'document.body.setAttribute("data-images-loaded",String(n));});'
)
"""Marks how many images decoded (``data-images-loaded``): the report's own end-to-end check."""


def render_report(
    inputs: RunInputs, images: list[tuple[Path, str]], problems: list[str] | None = None
) -> str:
    """The report page as a string (see the module docstring)."""
    results = inputs.results or {}
    sections = [
        _answer(inputs),
        _metrics_section(inputs),
        _constraints_section(results),
        _in_vs_out_section(results),
        _optimizer_section(results),
        _figures_section(images),
        _sweep_section(inputs),
        _calibration_section(inputs),
        _config_section(inputs),
        _notes_section([*inputs.notes, *(problems or [])]),
    ]
    titles = {
        "answer": "Answer",
        "metrics": "Metrics",
        "constraints": "Constraints",
        "in-vs-out": "In vs out",
        "optimizer": "Optimizer",
        "plots": "Pictures",
        "sweep": "Sweep",
        "calibration": "Calibration",
        "config": "Config",
        "notes": "Notes",
    }
    present = [a for a in titles if f'<section id="{a}">' in "".join(sections)]
    nav = "".join(f'<a href="#{a}">{esc(titles[a])}</a>' for a in present)
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    csp = (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'; "
        "base-uri 'none'; form-action 'none'"
    )
    title = inputs.config.get("name") or inputs.run_dir.resolve().name
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
        f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">\n'
        '<meta name=viewport content="width=device-width,initial-scale=1">\n'
        f"<title>{esc(title)} · levopt report</title>\n<style>{_CSS}</style>\n"
        f"<script>{_SCRIPT}</script>\n</head>\n<body>\n<main>\n"
        f"{_header(inputs)}\n<nav>{nav}</nav>\n"
        + "\n".join(s for s in sections if s)
        + f"\n<footer>Generated by levopt report {esc(now)} from the saved results in "
        f"{esc(inputs.run_dir.resolve().name)}/ — nothing was re-simulated.</footer>\n</main>\n</body>\n</html>\n"
    )


def make_report(run_dir: str | Path) -> Path:
    """(Re)draw the pictures of a run directory and write its self-contained ``report.html``.

    Reads ``results.json`` (levopt run; or evaluate output), ``results.parquet`` and ``sweep.json``
    (levopt sweep), ``posterior.json``, ``draws.parquet`` and ``ppc.json`` (levopt calibrate) —
    whatever is present — and never simulates.

    Returns:
        The path of ``report.html`` (written atomically).

    Raises:
        ConfigError: ``run_dir`` does not exist or holds none of those files.
    """
    return write_report(run_dir)[0]


def write_report(run_dir: str | Path) -> tuple[Path, list[Path]]:
    """:func:`make_report`, also returning the pictures drawn (the ones the page embeds)."""

    inputs = load_inputs(run_dir)
    images, problems = draw_all(inputs)
    page = render_report(inputs, images, problems)
    path = atomic_write_bytes(inputs.run_dir / "report.html", page.encode("utf-8"))
    return path, [image for image, _ in images]
