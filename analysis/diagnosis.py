"""What the step size does to a model: every measurement of the toolkit on one System, a verdict.

`diagnose(system)` runs, for a step-dependent model f(t, y, args, h) at its operating step h0:

1. **convergence** (`analysis.convergence.measure`): fixed-step solves at h0·2^-j against the
   h → 0 limit (what the model tends to as h → 0, at which observed order), and the model frozen
   at h0, y' = f(t, y, args, h0) (`System.freeze`), against its own solution (a proper ODE
   converges at the solver's nominal order);
2. **controllers** (`analysis.sweep` with ``log_steps``, `analysis.tolerance.spread`): y(T)
   across controller presets and tolerances for the model, its h → 0 limit and its frozen
   version; rejection rate and step-ratio roughness per preset;
3. **loop** (`analysis.control_loop.loop_analysis`): the exponent k_a of the error estimate
   e ≈ φ·h^k_a measured on the model, each preset's closed-loop poles with the gain k_a/k, the
   predicted behaviour against the measured step sequences;
4. **stability** (`analysis.stability`): fixed points of Φ_h0 classified (equilibrium / moved
   with h / solver-spurious), the largest stable step along each stable branch, and for a state
   of at most two components an orbit diagram in h;
5. **discrete** (`analysis.discrete`): the one-step map Φ_h0 iterated against the limit ODE, and
   the defects of the solver's modified equation of the model;
6. **formulations** and the **verdict**: y(T) of the model run at h0 (the behaviour it was built
   for) against three continuous/discrete formulations — the h → 0 limit ODE, the frozen-h0 ODE
   and the discrete-time map Φ_h0 — with their costs in field evaluations; and plain answers
   with the numbers and thresholds used (`THRESHOLDS`).

h0 is, in order: the `h` argument, the system's `frozen_h` (a lifted map's training step), its
``params["h_train"]``, else the median accepted step of an adaptive solve (`solver`, PI34,
rtol = 1e-5): the step an adaptive user of the model meets.

A section that fails is kept, with its error, in `Diagnosis.sections`; the others still run.
`Diagnosis.report()` renders everything as one self-contained HTML page (`analysis.report`),
`Diagnosis.save(folder)` writes it with every table as parquet.

Examples:
    >>> import jax.numpy as jnp
    >>> from analysis import diagnose
    >>> from analysis.systems import System
    >>> model = System(name="damped", y0=jnp.array([1.0, 0.0]), t1=4.0,
    ...                vector_field=lambda t, y, a, h: jnp.stack([y[1], -y[0] - (0.3 + h) * y[1]]))
    >>> d = diagnose(model, h=0.2, sections=("formulations",), progress=False)  # one section
    >>> d.formulations["formulation"].tolist()
    ['model at h0 (fixed steps, Tsit5)', 'h → 0 limit ODE', 'ODE frozen at h0 = 0.2']
    >>> d.formulations["gap"].round(4).tolist()          # damping 0.3 + h: frozen is exact
    [0.0, 0.1804, 0.0]
    >>> d.verdict["answer"].iloc[0]
    'h can be frozen as a parameter at h0 = 0.2'
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from . import control_loop as _control_loop
from . import convergence as _convergence
from . import discrete as _discrete
from . import progress as _progress
from . import reference as _reference
from . import solvers as _solvers
from . import stability as _stability
from . import systems as _systems
from . import tolerance as _tolerance
from ._sweep import sweep
from .batch import flat_state
from .errors import InvalidArgument, require_positive
from .result import Result
from .targets import FrozenFieldWarning

__all__ = ["Diagnosis", "diagnose", "THRESHOLDS", "SECTIONS"]

#: The sections, in the order they run and are shown.
SECTIONS = ("convergence", "controllers", "loop", "stability", "discrete", "formulations")

#: The numbers the verdict compares against (documented in docs/diagnose.md).
THRESHOLDS = {
    # a formulation reproduces the model at h0 when its solution stays this close to the model's
    # run at every t0 + n·h0 (max-norm, relative to the largest |y| of the run)
    "reproduces": 1e-2,
    # the controller matters more than the tolerance when the spread across presets at the
    # tightest rtol exceeds this multiple of the change of y(T) between the two tightest rtols
    "controller_over_tolerance": 1.0,
    # a model is controller-sensitive when its spread exceeds its limit's by this factor
    "spread_over_limit": 10.0,
    # below this step-size safety margin (largest stable step / h0) the operating step is fragile
    "stability_margin": 2.0,
}

_FULL = {
    "presets": ("I", "PI34", "H211b", "H312b"),
    "rtols": (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8),
    "halvings": 7,
    "orbit_hs": 200,
    "defect_orders": (0, 1, 2),
    "frozen_solvers": None,  # the frozen model's convergence: every solver
    "n_lyapunov": 5000,
}
_QUICK = {
    "presets": ("I", "PI34", "H211b"),
    "rtols": (1e-3, 1e-5, 1e-7),
    "halvings": 5,
    "orbit_hs": 80,
    "defect_orders": (0, 1),
    "frozen_solvers": ("Heun",),  # one solver shows the frozen model is an ODE
    "n_lyapunov": 1000,
}
_LOOP_RTOL = 1e-6  # the tolerance of the loop analysis' solves
_H0_RTOL = 1e-5  # the adaptive solve that finds a typical step when none is given
_LOG_STEPS = 2048  # attempts logged per adaptive solve
_COST_RTOL = 1e-6  # the tolerance at which continuous formulations are costed
_COST_PRESET = "PI34"
_COMPARE_RTOL = 1e-12  # the limit ODE against the map (discrete.compare's default)


@dataclasses.dataclass(frozen=True, repr=False)
class Diagnosis(Result):
    """Everything `diagnose` measured, as tables (each section's; empty where it failed).

    Attributes:
        verdict: question, answer, evidence (the numbers) and threshold (what was compared).
        sections: section, status ("ok" or "failed"), message (the error of a failed section),
            seconds.
        settings: one row: system, solver, h0, h0_source, quick, presets, rtols, t0, t1, dim.
        convergence: the fixed-step rows (h, error, status, solver, formulation).
        orders: the fitted orders per (formulation, solver): order, ci_low, ci_high,
            nominal_order, status, reason.
        controllers: the adaptive rows (system, formulation, controller, rtol, status,
            num_steps, nfev, y_final_*, rejection_rate, roughness_mean, ...).
        spread: max - min of y(T) over presets per (formulation, rtol).
        loop: one row per preset: measured exponent, gain, poles, predicted and measured
            behaviour (`analysis.control_loop.LoopAnalysis.presets`).
        exponents: the loop analysis' probes (`LoopAnalysis.exponents`).
        loop_steps: the step log of its solves, one row per attempt (`LoopAnalysis.steps`).
        fixed_points: fixed points of Φ_h0 (`analysis.stability.fixed_points` columns).
        stable_steps: per followed branch: start point, largest stable step, status, h0 margin.
        orbits: the orbit diagram's tidy rows (empty for states of more than two components).
        map_gap: `analysis.discrete.compare` rows of Φ_h0 against the limit ODE.
        defects: `analysis.discrete.modified_equation_defect` rows.
        formulations: per formulation: how it is solved, gap (the largest max-norm distance
            from the model's run at t0 + n·h0, relative to the run's largest |y|), gap_at_T,
            nfev (its cost), status, y_final_*.

    Complex numbers (multipliers) are stored as two columns NAME_real and NAME_imag, so every
    table is parquet-ready and `Diagnosis.from_tables` of the stored files gives it back.

    Examples:
        >>> import jax.numpy as jnp
        >>> from analysis.systems import System
        >>> decay = System(name="decay", y0=jnp.array(1.0), vector_field=lambda t, y, a, h: -y)
        >>> d = diagnose(decay, h=0.25, sections=("formulations",), progress=False)
        >>> d.h0, d.system_name, d.sections["status"].tolist()
        (0.25, 'decay', ['ok'])
        >>> d.verdict["answer"].iloc[0]                  # a field that does not read h
        'h is no input here: the field does not read h'
    """

    verdict: pd.DataFrame
    sections: pd.DataFrame
    settings: pd.DataFrame
    convergence: pd.DataFrame
    orders: pd.DataFrame
    controllers: pd.DataFrame
    spread: pd.DataFrame
    loop: pd.DataFrame
    exponents: pd.DataFrame
    loop_steps: pd.DataFrame
    fixed_points: pd.DataFrame
    stable_steps: pd.DataFrame
    orbits: pd.DataFrame
    map_gap: pd.DataFrame
    defects: pd.DataFrame
    formulations: pd.DataFrame

    @property
    def h0(self) -> float:
        """The operating step the diagnosis used."""
        return float(self.settings["h0"].iloc[0])

    @property
    def system_name(self) -> str:
        """The diagnosed system's name."""
        return str(self.settings["system"].iloc[0])

    def report(self, *, command: str | None = None, provenance: dict | None = None) -> str:
        """The diagnosis as one self-contained HTML page (`analysis.diagnosis_report`)."""
        from .diagnosis_report import render

        return render(self, command=command, provenance=provenance)

    def save(self, folder, *, command: str | None = None, provenance: dict | None = None) -> Path:
        """Write report.html and every table as parquet (with provenance) under `folder`.

        Returns:
            The report's path.
        """
        from . import report as _report
        from . import run_store

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        prov = provenance or run_store.provenance("diagnose", self.settings.iloc[0].to_dict())
        run_store.write_tables(folder, self.tables(), prov)
        return _report.write(folder / "report.html", self.report(command=command, provenance=prov))


def _storable(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Complex columns (poles, multipliers) as two columns NAME_real, NAME_imag: parquet has no
    complex type, and a diagnosis read back from its files must equal the one computed."""
    out = {}
    for name, t in tables.items():
        t = t.copy()
        for c in list(t.columns):
            if t[c].dtype == object and len(t) and isinstance(t[c].iloc[0], complex):
                t[c] = t[c].astype(complex)
            if np.iscomplexobj(t[c].to_numpy()):
                v = t[c].to_numpy(complex)
                t.insert(t.columns.get_loc(c), f"{c}_real", v.real)
                t[c] = v.imag
                t = t.rename(columns={c: f"{c}_imag"})
        out[name] = t
    return out


# ------------------------------------------------------------------------------------- inputs


def as_system(model, *, y0=None, t0: float = 0.0, t1: float | None = None) -> _systems.System:
    """`model` as a System: a System (or catalog name) as is, or a field f(t, y, args, h) with
    `y0` and `t1` given (or found as the field's attributes ``y0``, ``t0``, ``t1``).

    Raises:
        InvalidArgument: a field without y0 or t1, or something that is neither.
    """
    if isinstance(model, _systems.System | str):
        if y0 is not None or t1 is not None:
            raise InvalidArgument(
                "y0 and t1 are only for a bare field; a System carries its own "
                "(use system.with_(y0=..., t1=...))"
            )
        return _systems.get(model)
    if not callable(model):
        raise InvalidArgument(
            f"model={model!r} is invalid; give a System, a catalog name, or a field "
            "f(t, y, args, h) with y0 and t1"
        )
    y0 = getattr(model, "y0", None) if y0 is None else y0
    t1 = getattr(model, "t1", None) if t1 is None else t1
    t0 = getattr(model, "t0", t0)
    if y0 is None or t1 is None:
        raise InvalidArgument(
            f"model={getattr(model, '__name__', type(model).__name__)!r} is a field without "
            f"{'y0' if y0 is None else 't1'}; pass y0=... and t1=... (or give it those attributes)"
        )
    name = getattr(model, "__name__", type(model).__name__)
    if isinstance(y0, list | tuple):
        y0 = np.asarray(y0, dtype=float)
    return _systems.System(name=name, vector_field=model, y0=y0, t0=t0, t1=t1)


def _typical_step(run: _Run) -> tuple[float, str]:
    """(h0, how it was chosen): see the module docstring."""
    system = run.system
    if system.frozen_h is not None:
        return float(system.frozen_h), "the system's frozen_h (its training step)"
    if "h_train" in system.params:
        return float(system.params["h_train"]), "params['h_train']"
    row = _nearest_rtol(run.adaptive(system, _COST_PRESET), _H0_RTOL)
    if row["status"] != "ok" or not row["num_accepted"]:
        raise InvalidArgument(
            f"no typical step: the adaptive solve of {system.name!r} at rtol={row['rtol']:g} "
            f"ended with status {row['status']!r}; pass h=..."
        )
    h0 = (system.t1 - system.t0) / int(row["num_accepted"])
    name = _solvers.name_of(run.solver)
    return float(h0), f"mean accepted step of {name}/{_COST_PRESET} at rtol={row['rtol']:g}"


def _nearest_rtol(rows: pd.DataFrame, rtol: float) -> pd.Series:
    """The row of `rows` whose rtol is nearest `rtol` on a log scale."""
    return rows.iloc[int(np.argmin(np.abs(np.log(rows["rtol"].to_numpy()) - math.log(rtol))))]


def _grid_steps(system, h0) -> int:
    """Steps of h0 that fit the span (at least one): the grid t0 + n·h0 maps are compared on."""
    return max(1, round((system.t1 - system.t0) / h0))


@dataclasses.dataclass
class _Run:
    """One diagnosis in progress: its inputs, the tables so far, and the sweeps two sections
    share (the model's adaptive solves, the fixed-step solve at h0)."""

    system: _systems.System
    solver: object
    cfg: dict
    h0: float = np.nan
    tables: dict = dataclasses.field(default_factory=dict)
    sweeps: dict = dataclasses.field(default_factory=dict)

    def adaptive(self, system, preset) -> pd.DataFrame:
        """Adaptive solves of `system` with `preset` at every rtol (logged), once."""
        key = (system, preset)
        if key not in self.sweeps:
            rtols = list(self.cfg["rtols"])
            self.sweeps[key] = sweep(
                system, self.solver, controller=preset, rtol=rtols, log_steps=_LOG_STEPS
            )
        return self.sweeps[key]

    def cost(self, label: str) -> tuple[float, str]:
        """(nfev, how): the adaptive solve of formulation `label` at the preset and rtol
        nearest PI34, 1e-6 (from the controllers section; NaN if it did not run)."""
        ctrl = self.tables["controllers"]
        if not len(ctrl):
            return np.nan, "not costed (the controllers section did not run)"
        names = set(ctrl["controller"])
        preset = _COST_PRESET if _COST_PRESET in names else ctrl["controller"].iloc[0]
        pick = _nearest_rtol(
            ctrl[(ctrl["formulation"] == label) & (ctrl["controller"] == preset)], _COST_RTOL
        )
        how = f"adaptive {_solvers.name_of(self.solver)}, {preset}, rtol={pick['rtol']:g}"
        if pick["status"] != "ok":
            return np.nan, how + f": {pick['status']}"
        return float(pick["nfev"]), how

    def fixed_at_h0(self) -> pd.DataFrame:
        """The model at constant step h0 with its solver: a convergence row when there is one."""
        conv = self.tables["convergence"]
        name = _solvers.name_of(self.solver)
        if len(conv):
            rows = conv[
                conv["formulation"].str.startswith("model")
                & (conv["solver"] == name)
                & np.isclose(conv["dt0"], self.h0, rtol=1e-12, atol=0)
            ]
            if len(rows):
                return rows.iloc[:1]
        return sweep(self.system, self.solver, dt0=[self.h0])


def _formulations(system, h0) -> dict[str, _systems.System]:
    """The model and its continuous stand-ins, by label: the h → 0 limit ODE (if the system has
    a limit; a lifted map's "limit" is frozen at h_train) and the ODE frozen at h0."""
    out = {"model": system}
    if system.has_limit:
        out["h → 0 limit ODE"] = system.limit()
    out[f"ODE frozen at h0 = {h0:.4g}"] = system.freeze(h0)
    return out


# ----------------------------------------------------------------------------------- sections


def _convergence_section(run: _Run):
    system, solver, h0, cfg = run.system, run.solver, run.h0, run.cfg
    span = system.t1 - system.t0
    steps = [h0 * 2.0**-j for j in range(cfg["halvings"]) if h0 * 2.0**-j <= span]
    names = list(dict.fromkeys(["Euler", "Heun", "Tsit5", _solvers.name_of(solver)]))
    rows, fits = [], []
    for label, target_system, solvers in (
        ("model → h → 0 limit" if system.has_limit else "model → frozen field", system, names),
        ("frozen at h0 → its solution", system.freeze(h0), cfg["frozen_solvers"] or names),
    ):
        with warnings.catch_warnings():  # a frozen "limit" is said so in the label
            warnings.simplefilter("ignore", FrozenFieldWarning)
            result = _convergence.measure(target_system, solvers, dt0=steps, target="limit")
        rows.append(result.rows.assign(formulation=label))
        fits.append(result.fits.assign(formulation=label))
    return {
        "convergence": pd.concat(rows, ignore_index=True),
        "orders": pd.concat(fits, ignore_index=True),
    }


def _controllers_section(run: _Run):
    rows = []
    for label, s in _formulations(run.system, run.h0).items():
        for preset in run.cfg["presets"]:
            r = run.adaptive(s, preset)
            rows.append(r.assign(formulation=label))
    rows = pd.concat(rows, ignore_index=True)
    spread = _tolerance.spread(rows, by=("formulation", "rtol")).spread
    return {"controllers": rows, "spread": spread}


def _loop_section(run: _Run):
    presets = list(run.cfg["presets"])
    result = _control_loop.loop_analysis(run.system, run.solver, presets, rtol=_LOOP_RTOL)
    return {"loop": result.presets, "exponents": result.exponents, "loop_steps": result.steps}


def _box(system, h0) -> np.ndarray:
    """A box around the limit trajectory (min/max per component, widened by half its size).

    The trajectory is taken on the grid t0 + n·h0 at the tolerance `discrete.compare` uses, so
    the discrete section's comparison reuses this compiled solve."""
    ts = system.t0 + h0 * np.arange(_grid_steps(system, h0) + 1)
    ys, _ = _reference.limit_solution(system.with_(t1=float(ts[-1])), ts, rtol=_COMPARE_RTOL)
    ys = np.asarray(ys).reshape(len(ts), -1)
    ys = ys[np.all(np.isfinite(ys), axis=1)]
    if not len(ys):
        ys = np.asarray(flat_state(system.y0))[None]
    lo, hi = ys.min(axis=0), ys.max(axis=0)
    pad = 0.5 * (hi - lo) + 0.1 * np.maximum(1.0, np.abs(ys).max(axis=0))
    return np.stack([lo - pad, hi + pad], axis=1)


def _stability_section(run: _Run):
    system, solver, h0, cfg = run.system, run.solver, run.h0, run.cfg
    d = int(np.asarray(flat_state(system.y0)).size)
    box = _box(system, h0)
    fixed = _stability.fixed_points(system, solver, h0, box)
    # branches: stable points at a small step, followed up in h
    h_small = h0 / 64
    start = _stability.fixed_points(system, solver, h_small, box)
    start = start[start["stable"] & (start["kind"] != "spurious")].head(3)
    comps = ["y"] if d == 1 else [f"y{k}" for k in range(d)]
    branches = []
    for _, point in start.iterrows():
        y_star = np.asarray([point[c] for c in comps]).reshape(np.shape(system.y0))
        bound = _stability.max_stable_step(
            system, solver, y_star, h_min=h_small, h_max=max(100.0, 1e3 * h0), n_grid=200
        )
        branches.append(
            {c: point[c] for c in comps}
            | {
                "kind": point["kind"],
                "max_stable_step": float(bound),
                "status": bound.status,
                "reason": bound.reason,
                "margin": float(bound) / h0,
            }
        )
    stable_steps = pd.DataFrame(
        branches, columns=[*comps, "kind", "max_stable_step", "status", "reason", "margin"]
    )
    orbits = pd.DataFrame()
    if d <= 2:
        finite = stable_steps["max_stable_step"][np.isfinite(stable_steps["max_stable_step"])]
        top = max(4 * h0, 1.5 * float(finite.max())) if len(finite) else 4 * h0
        hs = np.geomspace(h0 / 4, top, cfg["orbit_hs"])
        od = _stability.orbit_diagram(
            system, solver, hs, n_transient=300, n_keep=40, n_lyapunov=cfg["n_lyapunov"]
        )
        orbits = od.to_frame()
    return {"fixed_points": fixed, "stable_steps": stable_steps, "orbits": orbits}


def _discrete_section(run: _Run):
    system, solver, h0, cfg = run.system, run.solver, run.h0, run.cfg
    horizon = h0 * _grid_steps(system, h0)
    phi = _discrete.to_map(system, solver, h0)
    gap = _discrete.compare(system, phi, h0, horizon, rtol=_COMPARE_RTOL)
    out = {"map_gap": gap, "defects": pd.DataFrame()}
    if _solvers.info(solver).tableau is not None and not _solvers.info(solver).implicit:
        hs = [h0 * 2.0**-j for j in range(4)]
        defects = _discrete.modified_equation_defect(solver, system, cfg["defect_orders"], hs)
        out["defects"] = defects.rows
    return out


def _formulations_section(run: _Run):
    """Each continuous stand-in against the model run at h0, along the whole run: the largest
    gap at t0 + n·h0 (`discrete.compare` of the map Φ_h0 with the stand-in's solution), relative
    to the largest |y| of the model's run; y(T) of each; and what each costs."""
    system, solver, h0 = run.system, run.solver, run.h0
    phi = _discrete.to_map(system, solver, h0)
    horizon = h0 * _grid_steps(system, h0)
    model = run.fixed_at_h0()
    stand_ins = [(k, s) for k, s in _formulations(system, h0).items() if k != "model"]
    gaps = [_discrete.compare(s, phi, h0, horizon, rtol=_COMPARE_RTOL) for _, s in stand_ins]
    n = len([c for c in gaps[0].columns if c.startswith("y_map_")])
    ymap = gaps[0][[f"y_map_{i}" for i in range(n)]].to_numpy(float)  # the model's run
    # the state's size over the model's run (not at T: it may decay)
    scale = max(float(np.nanmax(np.abs(ymap))) if np.isfinite(ymap).any() else 0.0, 1e-300)
    records = [
        {
            "formulation": f"model at h0 (fixed steps, {_solvers.name_of(solver)})",
            "how": "the model as built: the discrete-time map Φ_h0 iterated",
            "gap": 0.0,
            "gap_at_T": 0.0,
            "nfev": int(model["nfev"].iloc[0]),
            "status": model["status"].iloc[0],
        }
        | {f"y_final_{i}": float(ymap[-1, i]) for i in range(n)}
    ]
    for (label, _), gap in zip(stand_ins, gaps, strict=True):
        final = gap[[f"y_ode_{i}" for i in range(n)]].to_numpy(float)[-1]
        nfev, how = run.cost(label)
        records.append(
            {
                "formulation": label,
                "how": how,
                "gap": float(gap["error"].max()) / scale,
                "gap_at_T": float(gap["error"].iloc[-1]) / scale,
                "nfev": nfev,
                "status": "ok" if (gap["status"] == "ok").all() else str(gap["status"].iloc[-1]),
            }
            | {f"y_final_{i}": float(final[i]) for i in range(n)}
        )
    return {"formulations": pd.DataFrame(records)}


_RUNNERS: dict[str, Callable] = {
    "convergence": _convergence_section,
    "controllers": _controllers_section,
    "loop": _loop_section,
    "stability": _stability_section,
    "discrete": _discrete_section,
    "formulations": _formulations_section,
}


# ------------------------------------------------------------------------------------ verdict


def _verdict(system, h0, t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    rows = []

    def say(question, answer, evidence, threshold=""):
        rows.append(
            {"question": question, "answer": answer, "evidence": evidence, "threshold": threshold}
        )

    orders = t["orders"]
    if len(orders):
        main = orders[orders["formulation"].str.startswith("model")]
        parts = [f"{r.solver}: {_order_text(r)}" for r in main.itertuples()]
        target = "its h → 0 limit" if system.has_limit else "its field frozen at h_train"
        ok = main[main["status"] == "ok"]
        answer = (
            f"Towards {target} at observed order {_fmt(ok['order'].min())}–"
            f"{_fmt(ok['order'].max())}"
            if len(ok)
            else f"No clean convergence towards {target} was measured"
        )
        say("What does the model converge to as h → 0, and how fast?", answer, "; ".join(parts))

    if len(t["controllers"]):
        say(*_controller_verdict(t["controllers"], t["spread"]))

    loop = t["loop"]
    if len(loop):
        bad = loop[loop["predicted"] != "smooth"]
        k = loop["measured_k"].median()
        answer = (
            "Every preset is predicted to settle smoothly"
            if not len(bad)
            else "Predicted trouble: "
            + ", ".join(f"{r.preset} {r.predicted}" for r in bad.itertuples())
        )
        agree = int(loop["agrees"].sum())
        say(
            "Is adaptive step control of this model stable?",
            answer,
            f"measured error exponent k_a = {_fmt(k)} against the assumed "
            f"{_fmt(loop['assumed_k'].iloc[0])} (gain {_fmt(loop['gain'].median())}); "
            f"prediction agrees with the measured step sequences for {agree} of {len(loop)} "
            "presets",
            "spectral radius < 1, dominant pole real and ≥ 0",
        )

    forms = t["formulations"]
    if len(forms):
        stand_ins = forms.iloc[1:]
        frozen = stand_ins[stand_ins["formulation"].str.startswith("ODE frozen")].iloc[0]
        gap_frozen = float(frozen["gap"])
        reproduce = THRESHOLDS["reproduces"]
        if not system.h_dependent:
            answer = "h is no input here: the field does not read h"
        elif frozen["status"] != "ok":  # a gap over a run that stopped being finite says nothing
            answer = f"Undecided: the comparison with the frozen-h0 ODE ended {frozen['status']!r}"
        elif gap_frozen <= reproduce:
            answer = f"h can be frozen as a parameter at h0 = {h0:.4g}"
        else:
            answer = "h acts as an input: freezing it at h0 changes the result"
        say(
            "Does h act as an input, or could it be frozen as a parameter?",
            answer,
            f"largest relative gap, frozen-h0 ODE against the model run at h0: {_fmt(gap_frozen)}",
            f"gap ≤ {reproduce:g}",
        )
        good = stand_ins[(stand_ins["gap"] <= reproduce) & (stand_ins["status"] == "ok")]
        model_cost = forms["nfev"].iloc[0]
        if len(good):
            best = good.sort_values("gap").iloc[0]
            cost = (
                f"{_fmt(best['nfev'])} field evaluations ({best['how']}) against "
                f"{_fmt(model_cost)} for the model at h0"
                if np.isfinite(best["nfev"])
                else "its cost is measured by the controllers section, which did not run"
            )
            answer = f"The {best['formulation']} reproduces it (gap {_fmt(best['gap'])}); {cost}"
        else:
            answer = (
                f"Only the discrete-time map at h0 does ({_fmt(model_cost)} field evaluations): "
                "no continuous formulation comes within the threshold"
            )
        say(
            "Which formulation reproduces the model's behaviour at h0, at what cost?",
            answer,
            "; ".join(f"{r.formulation}: gap {_fmt(r.gap)}" for r in stand_ins.itertuples()),
            f"largest gap along the run ≤ {reproduce:g} of the run's largest |y|",
        )

    steps = t["stable_steps"]
    if len(steps):
        worst = steps.sort_values("max_stable_step").iloc[0]
        margin = float(worst["margin"])
        fragile = margin < THRESHOLDS["stability_margin"]
        spurious = t["fixed_points"]
        n_spur = int(spurious["spurious"].sum()) if len(spurious) else 0
        say(
            "Is the operating step safely stable?",
            ("No: " if fragile else "Yes: ")
            + f"the largest stable step is {_fmt(worst['max_stable_step'])} "
            f"({_fmt(margin)}× h0)",
            f"{len(steps)} stable branch(es) followed from h0/64; "
            f"{n_spur} solver-spurious fixed point(s) of Φ_h0 in the box",
            f"margin ≥ {THRESHOLDS['stability_margin']:g}",
        )
    return pd.DataFrame(rows, columns=["question", "answer", "evidence", "threshold"])


def _controller_verdict(ctrl, spread) -> tuple[str, str, str, str]:
    """Controller against tolerance: the spread over presets at the tightest rtol against the
    median change of y(T) between the two tightest rtols, for the model."""
    question = "Do the results depend more on the controller than on the tolerance?"
    limit = THRESHOLDS["controller_over_tolerance"]
    model = ctrl[ctrl["formulation"] == "model"]
    ok = model[model["status"] == "ok"]
    if ok["controller"].nunique() < 2:
        failed = model[model["status"] != "ok"]
        return (
            question,
            "No controller solves the model: its adaptive solves fail",
            f"{len(failed)} of {len(model)} adaptive solves of the model failed "
            f"({', '.join(sorted(set(failed['status'])))}); see the loop section for why",
            f"ratio > {limit:g}",
        )
    ycols = [c for c in ok.columns if c.startswith("y_final_")]
    rt = np.sort(ok["rtol"].unique())
    tight = spread[(spread["formulation"] == "model") & (spread["rtol"] == rt[0])].iloc[0]
    change = np.nan
    if len(rt) >= 2:
        a = ok[ok["rtol"] == rt[0]].set_index("controller")[ycols]
        b = ok[ok["rtol"] == rt[1]].set_index("controller")[ycols].reindex(a.index)
        change = float(np.nanmedian(np.max(np.abs(a.to_numpy() - b.to_numpy()), axis=1)))
    ratio = tight["spread"] / change if change > 0 else np.inf
    others = spread[(spread["formulation"] != "model") & (spread["rtol"] == rt[0])]["spread"]
    over = tight["spread"] / others.max() if len(others) and others.max() > 0 else np.nan
    sensitive = over > THRESHOLDS["spread_over_limit"]
    answer = (
        "Yes: the controller moves y(T) more than the tolerance does"
        if ratio > limit
        else "No: the tolerance moves y(T) at least as much as the choice of controller"
    )
    answer += (
        f"; the model is controller-sensitive ({_fmt(over)}× the spread of its continuous "
        "stand-ins)"
        if sensitive
        else ""
    )
    evidence = (
        f"spread over {int(tight['n'])} presets at rtol={rt[0]:g}: {_fmt(tight['spread'])}; "
        + (
            f"median change of y(T) from rtol={rt[1]:g} to {rt[0]:g}: {_fmt(change)} "
            if len(rt) > 1
            else ""
        )
        + f"(ratio {_fmt(ratio)}); model spread / largest spread of its continuous stand-ins at "
        f"that rtol: {_fmt(over)} (sensitive above {THRESHOLDS['spread_over_limit']:g})"
    )
    return question, answer, evidence, f"ratio > {limit:g}"


def _order_text(r) -> str:
    if r.status != "ok":
        return str(r.status)
    return f"{_fmt(r.order)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"


def _fmt(x) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if not np.isfinite(x):
        return "∞" if x == np.inf else "—"
    return f"{x:.3g}"


# --------------------------------------------------------------------------------- the driver


def diagnose(
    model,
    *,
    solver="Tsit5",
    h: float | None = None,
    quick: bool = False,
    y0=None,
    t1: float | None = None,
    sections=SECTIONS,
    progress: bool | None = None,
) -> Diagnosis:
    """Diagnose what the step size does to `model` (module docstring).

    Args:
        model: a System, a catalog name, or a field f(t, y, args, h) with `y0` and `t1`.
        solver: the model's solver (adaptive sections need an error estimate), default Tsit5.
        h: the model's operating step h0 (default: see the module docstring).
        quick: fewer presets, tolerances and steps (a first look in well under a minute for
            a small model).
        y0: a bare field's initial state.
        t1: a bare field's end time.
        sections: which of `SECTIONS` to run (the verdict uses what ran).
        progress: a bar per section on a terminal (None: `analysis.progress`'s default).

    Returns:
        A `Diagnosis`.

    Raises:
        InvalidArgument: bad input (before anything is compiled).

    Examples:
        >>> field = lambda t, y, args, h: -(1.0 + h) * y             # a bare field
        >>> d = diagnose(field, y0=1.0, t1=2.0, h=0.1, sections=("formulations",), progress=False)
        >>> d.formulations["gap"].round(4).tolist()   # max e^-t - e^-1.1t, at t = 10·ln 1.1
        [0.0, 0.035, 0.0]
    """
    system = as_system(model, y0=y0, t1=t1)
    solver_obj = _solvers.get(solver)
    if not _solvers.info(solver_obj).adaptive:
        raise InvalidArgument(
            f"solver={_solvers.name_of(solver)!r} has no error estimate; diagnose needs one "
            "for its controller sections (e.g. 'Tsit5', 'Heun', 'Bosh3')"
        )
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or isinstance(sections, str):
        raise InvalidArgument(f"sections={sections!r} is invalid; choose from {SECTIONS}")
    if h is not None:
        h = require_positive("h", h)
        if h > system.t1 - system.t0:
            raise InvalidArgument(
                f"h={h!r} is longer than the span [{system.t0}, {system.t1}]; it must be ≤ "
                f"{system.t1 - system.t0}"
            )
    cfg = _QUICK if quick else _FULL
    tables = {f.name: pd.DataFrame() for f in dataclasses.fields(Diagnosis)}
    status = []
    run = _Run(system=system, solver=solver_obj, cfg=cfg, tables=tables)
    switch = contextlib.nullcontext() if progress is None else _progress.enabled(bool(progress))
    with switch:
        for name in _progress.steps(["h0", *sections], f"diagnose {system.name}"):
            if name == "h0":
                run.h0, h0_source = (h, "given") if h is not None else _typical_step(run)
                continue
            start = time.perf_counter()
            try:
                tables |= _RUNNERS[name](run)
                status.append({"section": name, "status": "ok", "message": ""})
            except Exception as e:  # a failed section is reported; the others still run
                status.append(
                    {"section": name, "status": "failed", "message": f"{type(e).__name__}: {e}"}
                )
            status[-1]["seconds"] = round(time.perf_counter() - start, 2)
    h0 = run.h0
    d = int(np.asarray(flat_state(system.y0)).size)
    tables["settings"] = pd.DataFrame(
        [
            {
                "system": system.name,
                "solver": _solvers.name_of(solver_obj),
                "h0": float(h0),
                "h0_source": h0_source,
                "quick": bool(quick),
                "presets": ", ".join(cfg["presets"]),
                "rtols": ", ".join(f"{r:g}" for r in cfg["rtols"]),
                "t0": float(system.t0),
                "t1": float(system.t1),
                "dim": d,
                "h_dependent": bool(system.h_dependent),
                "has_limit": bool(system.has_limit),
            }
        ]
    )
    tables["sections"] = pd.DataFrame(status, columns=["section", "status", "message", "seconds"])
    tables["verdict"] = _verdict(system, h0, tables)
    return Diagnosis(**_storable(tables))
