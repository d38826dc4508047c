"""diffrax ODE solvers by name, with their nominal orders, stage counts and tableaus.

`get("Tsit5")` returns the diffrax solver; `info(solver)` tells its order, stage count, FSAL and
implicitness; `nfev(...)` counts vector-field evaluations from diffrax's step statistics.

Examples:
    >>> from analysis import solvers
    >>> solvers.info("Tsit5").order, solvers.info("Tsit5").stages
    (5, 7)
"""

from __future__ import annotations

import dataclasses
import difflib

import diffrax
import optimistix as optx

from .errors import InvalidArgument
from .stepdep import StepAware

__all__ = ["NAMES", "SolverInfo", "get", "info", "name_of", "for_fixed_steps", "nfev"]

_FACTORIES = {
    "Euler": diffrax.Euler,
    "Heun": diffrax.Heun,
    "Midpoint": diffrax.Midpoint,
    "Ralston": diffrax.Ralston,
    "Bosh3": diffrax.Bosh3,
    "Tsit5": diffrax.Tsit5,
    "Dopri5": diffrax.Dopri5,
    "Dopri8": diffrax.Dopri8,
    "ImplicitEuler": diffrax.ImplicitEuler,
    "Kvaerno3": diffrax.Kvaerno3,
    "Kvaerno4": diffrax.Kvaerno4,
    "Kvaerno5": diffrax.Kvaerno5,
    "HalfSolver(Euler)": lambda: diffrax.HalfSolver(diffrax.Euler()),
}
NAMES: tuple[str, ...] = tuple(_FACTORIES)
EXPLICIT_RK: tuple[str, ...] = (
    "Euler",
    "Heun",
    "Midpoint",
    "Ralston",
    "Bosh3",
    "Tsit5",
    "Dopri5",
    "Dopri8",
)

#: Root-finder tolerance used for implicit solvers at fixed steps (diffrax otherwise borrows the
#: adaptive controller's tolerances, which a fixed-step solve does not have).
FIXED_STEP_ROOT_TOL = 1e-12


@dataclasses.dataclass(frozen=True)
class SolverInfo:
    """What a solver is: order, stages per step, FSAL, implicit, adaptive, its tableau if any.

    Attributes:
        name: the registry name, e.g. "Dopri5" or "HalfSolver(Euler)".
        order: the nominal order of convergence.
        stages: vector-field evaluations per step (without FSAL reuse).
        fsal: whether the last stage is reused as the next step's first.
        implicit: whether each step solves a nonlinear system.
        adaptive: whether it has an error estimate (usable with an adaptive controller).
        tableau: its diffrax Butcher tableau, or None.

    Examples:
        >>> i = info("Dopri5")
        >>> i.order, i.stages, i.fsal, i.implicit, i.adaptive
        (5, 7, True, False, True)
    """

    name: str
    order: int
    stages: int
    fsal: bool
    implicit: bool
    adaptive: bool
    tableau: diffrax.ButcherTableau | None


def get(name: str | diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """The diffrax solver called `name` (a solver object is returned unchanged).

    Raises InvalidArgument listing the valid names (with the closest ones first).

    Args:
        name: a registry name from `NAMES`, or a diffrax solver.

    Returns:
        A new diffrax solver object (or `name` itself if it is one).

    Examples:
        >>> get("Heun")
        Heun()
        >>> get("Tsit")
        Traceback (most recent call last):
            ...
        analysis.errors.InvalidArgument: solver='Tsit' is unknown. Did you mean 'Tsit5'? ...
    """
    if isinstance(name, diffrax.AbstractSolver):
        return name
    if name not in _FACTORIES:
        close = difflib.get_close_matches(str(name), NAMES, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InvalidArgument(
            f"solver={name!r} is unknown.{hint} Valid solvers: {', '.join(NAMES)}"
        )
    return _FACTORIES[name]()


def _unwrap(solver):
    return _unwrap(solver.solver) if isinstance(solver, StepAware) else solver


def name_of(solver: str | diffrax.AbstractSolver) -> str:
    """The registry name of a solver object, e.g. 'Tsit5' or 'HalfSolver(Euler)'.

    Args:
        solver: a diffrax solver (StepAware-wrapped or not), or a name (checked and returned).

    Returns:
        The name, as used in sweep rows.

    Examples:
        >>> name_of(StepAware(diffrax.Tsit5())), name_of(diffrax.HalfSolver(diffrax.Euler()))
        ('Tsit5', 'HalfSolver(Euler)')
    """
    if isinstance(solver, str):
        get(solver)  # validates the name
        return solver
    solver = _unwrap(solver)
    if isinstance(solver, diffrax.HalfSolver):
        return f"HalfSolver({name_of(solver.solver)})"
    return type(solver).__name__


def info(solver: str | diffrax.AbstractSolver) -> SolverInfo:
    """Order, stage count and kind of a solver (by name or object, StepAware-wrapped or not).

    Args:
        solver: a registry name or a diffrax solver.

    Returns:
        A `SolverInfo`. HalfSolver(S) counts 3× the stages of S (a full step and two half
        steps), is adaptive and not FSAL.

    Examples:
        >>> info("Kvaerno5").order, info("Kvaerno5").implicit
        (5, True)
        >>> info("HalfSolver(Euler)").stages, info("HalfSolver(Euler)").adaptive
        (3, True)
    """
    obj = _unwrap(get(solver))
    if isinstance(obj, diffrax.HalfSolver):
        inner = info(obj.solver)
        return dataclasses.replace(
            inner, name=name_of(obj), stages=3 * inner.stages, fsal=False, adaptive=True
        )
    tableau = getattr(obj, "tableau", None)
    stages = len(tableau.c) + 1 if tableau is not None else 1
    return SolverInfo(
        name=name_of(obj),
        order=obj.order(None),
        stages=stages,
        fsal=bool(tableau is not None and tableau.fsal),
        implicit=isinstance(obj, diffrax.AbstractImplicitSolver),
        adaptive=isinstance(obj, diffrax.AbstractAdaptiveSolver),
        tableau=tableau,
    )


def for_fixed_steps(solver: diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """Give an implicit solver explicit root-finder tolerances so it runs at constant steps.

    diffrax's implicit solvers take their Newton tolerances from an adaptive controller; at fixed
    steps there is none, so we use full Newton at rtol = atol = FIXED_STEP_ROOT_TOL. (diffrax's
    default VeryChord reports divergence at fixed steps even where plain Newton and Chord
    converge, e.g. ImplicitEuler on Lotka–Volterra at h = 0.05.) Other solvers pass unchanged.

    Args:
        solver: a diffrax solver, possibly StepAware-wrapped.

    Returns:
        The solver to use with `diffrax.ConstantStepSize` (the same object if not implicit).

    Examples:
        >>> implicit = for_fixed_steps(get("ImplicitEuler"))
        >>> type(implicit.root_finder).__name__, implicit.root_finder.rtol
        ('Newton', 1e-12)
        >>> explicit = get("Tsit5")
        >>> for_fixed_steps(explicit) is explicit
        True
    """
    if isinstance(solver, StepAware):
        return StepAware(for_fixed_steps(solver.solver), signed=solver.signed)
    if not isinstance(solver, diffrax.AbstractImplicitSolver):
        return solver
    root = optx.Newton(rtol=FIXED_STEP_ROOT_TOL, atol=FIXED_STEP_ROOT_TOL)
    return type(solver)(root_finder=root)


def nfev(solver, num_steps, *, step_dependent: bool):
    """Vector-field evaluations of a solve, from its number of attempted steps.

    Explicit Runge–Kutta: `stages` per step, except that an FSAL method reuses its last stage as
    the next first stage (stages - 1 per step after the first) unless the field is step-dependent,
    where StepAware re-evaluates it. diffrax 0.7's automatic initial step (dt0=None) costs no
    evaluation: inside diffeqsolve the terms are wrapped, and its heuristic then returns 0.01.
    Implicit methods: the stage count only, a lower bound, since Newton iterations are not exposed
    by diffrax's statistics.

    Args:
        solver: a registry name or a diffrax solver.
        num_steps: attempted steps (diffrax's `stats["num_steps"]`), an int or an array.
        step_dependent: whether the field depends on h (then FSAL stages are re-evaluated).

    Returns:
        The number of evaluations, with `num_steps`'s shape.

    Examples:
        >>> nfev("Tsit5", 10, step_dependent=False)   # 7 stages, FSAL: 6 per step + 1
        61
        >>> nfev("Tsit5", 10, step_dependent=True)    # StepAware refreshes the first stage
        70
    """
    meta = info(solver)
    if meta.fsal and not step_dependent:
        return num_steps * (meta.stages - 1) + (num_steps > 0)
    return num_steps * meta.stages
