"""A `Diagnosis` as one self-contained HTML page: each section's figures, tables, how to read them.

Everything here is drawn from the Diagnosis' tables only, so a diagnosis read back from its
parquet files (`Diagnosis.from_tables`) renders the same page. The page itself is laid out by
`analysis.report`.

Examples:
    >>> from analysis.diagnosis_report import HOW_TO_READ
    >>> sorted(HOW_TO_READ)[:2]
    ['controllers', 'convergence']
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import plotting
from . import report as _report
from .control_loop import LoopAnalysis
from .convergence import ConvergenceResult
from .discrete import ModifiedDefects
from .tolerance import Spread

__all__ = ["render", "sections", "HOW_TO_READ", "TITLES"]

TITLES = {
    "convergence": "Convergence: what the model tends to as h → 0",
    "controllers": "Controller sensitivity",
    "loop": "Controller and model as one loop",
    "stability": "Stability of the one-step map",
    "discrete": "Discrete-time view",
    "formulations": "Formulations: limit ODE, frozen h, discrete map",
}

HOW_TO_READ = {
    "convergence": (
        "Each line is one solver at fixed steps h0·2^-j. Left: the model against its h → 0 "
        "limit. An h-free field converges at the solver's nominal order; a field that reads h "
        "converges at the lower of that and the order of its own h-dependence (f + c·h·g: "
        "order 1 whatever the solver). Right: the model with h frozen at h0, an ordinary ODE, "
        "against its own solution: nominal orders there say the frozen model is a proper ODE. "
        "A fit whose status is not 'ok' has no clean asymptotic range; its reason says why."
    ),
    "controllers": (
        "Adaptive solves with each controller preset at each rtol, for the model, its h → 0 "
        "limit and its frozen-h0 version. The spread is max - min of y(T) over presets at one "
        "rtol. For an ODE it falls with rtol, near the dashed line spread = rtol; for a model "
        "that reads h, different controllers choose different steps, so they solve different "
        "systems and the spread stays at the size of the h-effect. The heatmaps show the "
        "model's rejection rate and step-ratio roughness per preset and rtol."
    ),
    "loop": (
        "A controller assumes the error estimate behaves like e ≈ φ·h^k with k the solver's "
        "error order. The probes measure the actual local exponent k_a on the model; with the "
        "gain k_a/k each preset's closed-loop poles move. Inside the unit circle with a "
        "dominant pole real and ≥ 0: smooth; negative or complex dominant pole: the step "
        "oscillates; a pole at 1 (k_a ≈ 0): the step drifts with no restoring force; outside: "
        "diverges. The measured columns come from an actual adaptive solve with the preset."
    ),
    "stability": (
        "Fixed points of the one-step map Φ_h0 in a box around the trajectory: 'equilibrium' "
        "of the h → 0 field, 'model' equilibrium that moved with h (the field's own doing), or "
        "'spurious' (the solver's doing). Each stable branch found at h0/64 is followed in h "
        "to the largest step at which it stays stable; a margin below 2 means the operating "
        "step is close to an instability. The orbit diagram shows the attractor of Φ_h "
        "against h (red ticks: orbits that escaped)."
    ),
    "discrete": (
        "Left: the map Φ_h0 iterated from y0 against the h → 0 limit ODE at the same times; "
        "the gap is how far the discrete-time model is from the continuous one. Right: the "
        "defect of the solver's modified equation of the model (backward error analysis) with "
        "0, 1, 2 correction terms: each term should raise the slope by one."
    ),
    "formulations": (
        "The model as run at h0 (the behaviour it was built with) against three ways "
        "to write it: the h → 0 limit ODE, the ODE with h frozen at h0, and the discrete-time "
        "map itself. gap is the largest max-norm distance from the model's run at t0 + n·h0, "
        "relative to the run's largest |y| (gap_at_T: at T only); nfev the field evaluations "
        "each costs (adaptive solves at rtol near 1e-6)."
    ),
}


def _convergence(d):
    figs, text = [], []
    for label, rows in d.convergence.groupby("formulation", sort=False):
        fits = d.orders[d.orders["formulation"] == label]
        result = ConvergenceResult(rows=rows, fits=fits)
        figs.append((label, plotting.error_vs_step(result, title=label)))
        parts = [
            f"{r.solver} {r.order:.3g} [{r.ci_low:.3g}, {r.ci_high:.3g}] (nominal "
            f"{r.nominal_order})"
            if r.status == "ok"
            else f"{r.solver}: {r.status}"
            for r in fits.itertuples()
        ]
        text.append(f"{label}: " + "; ".join(parts) + ".")
    cols = ["formulation", "solver", "order", "ci_low", "ci_high", "nominal_order", "status"]
    cols += ["reason", "h_min", "h_max"]
    return "\n\n".join(text), figs, [("Fitted orders", d.orders[cols])]


def _controllers(d):
    ctrl = d.controllers
    spread = Spread(rows=ctrl, spread=d.spread)
    figs = [("Spread of y(T) over presets", plotting.spread_vs_tolerance(spread))]
    model = ctrl[ctrl["formulation"] == "model"]
    if "rejection_rate" in model:
        figs.append(
            (
                "The model: rejection rate and roughness per preset and rtol",
                plotting.controller_heatmaps(model, ("rejection_rate", "roughness_mean")),
            )
        )
    tight = d.spread.sort_values("rtol").groupby("formulation", sort=False).head(1)
    text = "Spread of y(T) over presets at the tightest rtol: " + "; ".join(
        f"{r.formulation} {r.spread:.3g} (rtol {r.rtol:g})" for r in tight.itertuples()
    )
    cols = ["formulation", "controller", "rtol", "status", "num_steps", "num_rejected", "nfev"]
    cols += [c for c in ("rejection_rate", "roughness_mean") if c in ctrl]
    cols += [c for c in ctrl.columns if c.startswith("y_final_")]
    tables = [("Spread per rtol", d.spread), ("Adaptive solves", ctrl[cols])]
    return text + ".", figs, tables


def _loop(d):
    loop = LoopAnalysis(presets=d.loop, exponents=d.exponents, steps=d.loop_steps)
    text = (
        f"Measured error exponent k_a = {d.loop['measured_k'].median():.3g} against the "
        f"assumed k = {d.loop['assumed_k'].iloc[0]:.3g}. "
        + "; ".join(
            f"{r.preset}: predicted {r.predicted}, measured {r.measured}"
            for r in d.loop.itertuples()
        )
        + "."
    )
    cols = ["preset", "assumed_k", "measured_k", "gain", "radius", "design_radius"]
    cols += ["predicted", "measured", "agrees", "rejection_rate", "roughness", "autocorrelation"]
    cols += ["successful", "retry_k", "retries"]
    presets = d.loop[[c for c in cols if c in d.loop]]
    figures = [("Closed-loop poles and step sequences", plotting.plot_loop(loop))]
    tables = [("Presets: predicted against measured", presets), ("Exponent probes", d.exponents)]
    return text, figures, tables


def _stability(d):
    figs = []
    if len(d.orbits):
        ycol = "y" if "y" in d.orbits else "y0"
        fig = plotting.orbit_diagram(d.orbits, y=ycol, title=f"attractor of Φ_h ({ycol})")
        fig.axes[0].axvline(d.h0, color="0.3", ls=":", lw=0.8, label="h0")
        figs.append(("Orbit diagram in h", fig))
    n = len(d.fixed_points)
    kinds = d.fixed_points["kind"].value_counts().to_dict() if n else {}
    text = f"{n} fixed point(s) of Φ_h0 in the box: " + (
        ", ".join(f"{v} {k}" for k, v in kinds.items()) if kinds else "none"
    )
    if len(d.stable_steps):
        text += ". Largest stable steps along the branches: " + "; ".join(
            f"{r.max_stable_step:.4g} ({r.status}, {r.margin:.3g}× h0)"
            for r in d.stable_steps.itertuples()
        )
    tables = [("Fixed points of Φ_h0", d.fixed_points), ("Stable branches", d.stable_steps)]
    return text + ".", figs, tables


def _discrete(d):
    figs = [("Φ_h0 against the limit ODE", plotting.map_vs_limit(d.map_gap))]
    last = d.map_gap.iloc[-1]
    text = f"After {int(last['step'])} steps (t = {last['t']:.4g}) the map is {last['error']:.3g} "
    text += "from the limit ODE (max norm)."
    tables = []
    if len(d.defects):
        result = ModifiedDefects.from_rows(d.defects)
        figs.append(("Modified-equation defects", plotting.defects(result)))
        text += (
            " Modified-equation defect slopes: "
            + ", ".join(
                f"{int(r.order)} terms: {r.fitted_slope:.3g}" for r in result.slopes.itertuples()
            )
            + "."
        )
        tables.append(("Defect slopes", result.slopes))
    return text, figs, tables


def _formulations(d):
    f = d.formulations
    text = "; ".join(f"{r.formulation}: gap {r.gap:.3g}, {r.nfev} nfev" for r in f.itertuples())
    return text + ".", [], [("Formulations", f)]


_BUILDERS = {
    "convergence": _convergence,
    "controllers": _controllers,
    "loop": _loop,
    "stability": _stability,
    "discrete": _discrete,
    "formulations": _formulations,
}


def sections(d) -> list:
    """The report's sections (`analysis.report.Section`), one per section the diagnosis ran; a
    failed one shows its error.

    Examples:
        >>> from analysis import diagnose
        >>> d = diagnose(lambda t, y, a, h: -(1.0 + h) * y, y0=1.0, t1=1.0, h=0.1,
        ...              sections=("formulations",), progress=False)
        >>> [(s.key, s.status, len(s.tables)) for s in sections(d)]
        [('formulations', 'ok', 1)]
    """
    out = []
    for row in d.sections.itertuples():
        name, text = row.section, HOW_TO_READ[row.section]
        if row.status != "ok":  # failed while measuring: its message is all there is
            summary = f"This section failed: {row.message}"
            out.append(_report.Section(name, TITLES[name], summary, text, status="failed"))
            continue
        try:
            summary, figs, tables = _BUILDERS[name](d)
        except Exception as e:  # a figure that cannot be drawn must not hide the numbers
            out.append(_report.Section.failed(name, TITLES[name], e, how_to_read=text))
            continue
        out.append(_report.Section(name, TITLES[name], summary, text, tuple(figs), tuple(tables)))
    return out


def render(d, *, command: str | None = None, provenance: dict | None = None) -> str:
    """The HTML page of Diagnosis `d` (`analysis.report.render`): verdict, sections, provenance.

    Examples:
        >>> from analysis import diagnose
        >>> d = diagnose(lambda t, y, a, h: -(1.0 + h) * y, y0=1.0, t1=1.0, h=0.1,
        ...              sections=("formulations",), progress=False)
        >>> page = render(d, command="my command")
        >>> page.startswith("<!DOCTYPE html>"), "my command" in page, "<script" in page
        (True, True, False)
    """
    s = d.settings.iloc[0]
    title = f"What the step size does to {s['system']}"
    verdict = [tuple(r) for r in d.verdict[["question", "answer", "evidence"]].itertuples(False)]
    settings = {k: _plain(v) for k, v in s.to_dict().items()}
    return _report.render(
        title,
        sections(d),
        verdict=verdict,
        provenance=provenance or {"settings": settings},
        command=command,
    )


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v if not isinstance(v, pd.Timestamp) else str(v)
