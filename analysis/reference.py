"""Reference solutions of a system's h → 0 limit ODE, for measuring errors.

When a system has an exact solution it is used. Otherwise the reference is a high-accuracy
adaptive solve of the limit field f(t, y, args, 0): Dopri8 at rtol = atol = 1e-13 (Kvaerno5 at
1e-12 for stiff systems), with its own error estimated by a second solve at 100× looser
tolerances. References are cached per system object.

In float32 (x64 off, or a float32 y0) 1e-13 is far below the resolution (eps ≈ 1.2e-7): the
error estimate of every step carries round-off of a few eps, so the step-size controller can
never meet 1e-13, shrinks the step until it runs out of steps, and there is no reference. The
tolerance is therefore never below `EPS_FACTOR` × eps of the state's dtype (100 eps: 1.2e-5 in
float32, while float64's 2.2e-14 leaves 1e-13 unchanged), and the estimate solve of such a
floored reference is `FLOORED_LOOSER`× (10×) looser, since 100× (~1e-3) would overstate an error
of ~1e-5 fifty-fold. See `settings`. A float32 reference says so in `Reference.reason`.

Examples:
    >>> from analysis import systems, reference
    >>> ref = reference.final_state(systems.get("lotka_volterra"))
    >>> ref.source, ref.error_estimate < 1e-9
    ('reference', True)
"""

from __future__ import annotations

import dataclasses
import weakref

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np

from .batch import flat_state, flat_states, state_shape
from .errors import warn_if_float32
from .prepare import prepare
from .systems import System

__all__ = [
    "EPS_FACTOR",
    "REFERENCE_SETTINGS",
    "Reference",
    "Trajectory",
    "final_state",
    "settings",
    "solve_limit",
    "limit_solution",
    "trajectory",
]

#: (solver, rtol) used for non-stiff and stiff reference solves (in float64).
REFERENCE_SETTINGS = {"nonstiff": ("Dopri8", 1e-13), "stiff": ("Kvaerno5", 1e-12)}
#: A reference's rtol is never below EPS_FACTOR × eps of the state's dtype (float32: 1.2e-5).
EPS_FACTOR = 100.0
#: The error-estimate solve is LOOSER× looser than the reference, FLOORED_LOOSER× when floored.
LOOSER = 100.0
FLOORED_LOOSER = 10.0
_MAX_STEPS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Reference:
    """y(t1) of the limit ODE, where it came from, and an estimate of its own error.

    Attributes:
        y: y(t1) as a NumPy array, or None if no reference could be computed.
        source: "exact" (the system's exact solution), "reference" (a solve) or "none".
        error_estimate: 0 for an exact solution; for a solve, the max-norm distance to a second
            solve at 100× looser tolerance (10× for a float32 reference); NaN for "none".
        reason: why there is no reference, or, for a reference in a precision lower than
            float64, which precision and tolerance it has ("" otherwise).

    Examples:
        >>> from analysis import systems
        >>> ref = final_state(systems.get("harmonic"))    # y(2π) = (cos 2π, -sin 2π) = (1, 0)
        >>> ref.source, ref.error_estimate, bool(np.allclose(ref.y, [1.0, 0.0], atol=1e-12))
        ('exact', 0.0, True)
    """

    y: np.ndarray | None
    source: str  # "exact", "reference" or "none"
    error_estimate: float
    reason: str = ""


def _state_dtype(system: System):
    leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(system.y0)]
    dtype = jnp.result_type(*leaves) if leaves else jnp.result_type(float)
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else jnp.result_type(float)


def settings(system: System) -> tuple[str, float, float, str]:
    """The solver and tolerances of `system`'s reference solve, for the dtype of its state.

    The rtol (= atol) is REFERENCE_SETTINGS's, raised to EPS_FACTOR × eps of the dtype of y0
    where that is larger (float32), since no controller can meet a tolerance below round-off.

    Args:
        system: the System (its `stiff` flag picks the solver, its y0 the dtype).

    Returns:
        (solver name, rtol, rtol of the error-estimate solve, note): the note is "" in float64
        and says the precision and why the tolerance was raised otherwise.

    Examples:
        >>> from analysis import systems
        >>> name, rtol, looser, note = settings(systems.get("lotka_volterra"))   # float64
        >>> name, rtol, f"{looser:g}", note
        ('Dopri8', 1e-13, '1e-11', '')
        >>> decay32 = systems.System(name="decay32", vector_field=lambda t, y, args, h: -y,
        ...                          y0=jnp.array([1.0], jnp.float32))
        >>> name, rtol, looser, note = settings(decay32)               # 100·eps of float32
        >>> name, f"{rtol:.2g}", f"{looser:.2g}"
        ('Dopri8', '1.2e-05', '0.00012')
        >>> note
        'float32 reference: Dopri8 at rtol=1.2e-05 (100 eps; 1e-13 is below float32 resolution)'
    """
    name, nominal = REFERENCE_SETTINGS["stiff" if system.stiff else "nonstiff"]
    dtype = _state_dtype(system)
    floor = EPS_FACTOR * float(jnp.finfo(dtype).eps)
    if floor <= nominal:
        return name, nominal, LOOSER * nominal, ""
    note = (
        f"{jnp.dtype(dtype).name} reference: {name} at rtol={floor:.2g} ({EPS_FACTOR:g} eps; "
        f"{nominal:g} is below {jnp.dtype(dtype).name} resolution)"
    )
    return name, floor, FLOORED_LOOSER * floor, note


def solve_limit(
    system: System,
    ts,
    *,
    rtol: float,
    solver_name: str | None = None,
    y0=None,
    t0=None,
    t1=None,
    args=None,
):
    """Solve the h → 0 limit ODE of `system` adaptively and return y at the times `ts`.

    The solve is `analysis.prepare.prepare` of the limit system y' = f(t, y, args, 0) (the
    system itself when its field does not read h) with a PID controller at rtol = atol:
    the toolkit's one solve path.

    Args:
        system: the System; its limit field f(t, y, args, 0) is solved from t0.
        ts: increasing times in [t0, t1] at which to return y, or None for t1 alone (the
            solve's own last state, no interpolation).
        rtol: relative tolerance of the PID controller (atol = rtol).
        solver_name: a diffrax solver class name (default: Dopri8, or Kvaerno5 if stiff).
        y0: the initial state (default: the system's).
        t0: the start time (default: the system's).
        t1: the end time (default: the system's).
        args: the field's args (default: the system's).

    Returns:
        (ys, result): y at `ts` (shape (len(ts), *y0.shape); (1, *y0.shape) for ts=None) and
        the diffrax result code; the solve does not raise, so check the result.

    Examples:
        >>> from analysis import systems
        >>> sys = systems.get("logistic")            # exact y(t) = 0.1·e^t / (0.9 + 0.1·e^t)
        >>> ys, result = solve_limit(sys, [1.0, 5.0], rtol=1e-10)
        >>> result == diffrax.RESULTS.successful, [round(float(y), 6) for y in ys]
        (Array(True, dtype=bool), [0.231969, 0.942826])
        >>> ys, _ = solve_limit(sys, [1.0], rtol=1e-10, y0=jnp.array(0.5))   # 1/(1 + e^-1)
        >>> round(float(ys[0]), 6)
        0.731059
    """
    kind = "stiff" if system.stiff else "nonstiff"
    name = solver_name or REFERENCE_SETTINGS[kind][0]
    limit = system.limit() if system.h_dependent else system
    controller = diffrax.PIDController(rtol=rtol, atol=rtol)
    sol = prepare(limit, getattr(diffrax, name)(), controller=controller).solve(
        y0=y0,
        args=args,
        t0=t0,
        t1=t1,
        saveat=diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=jnp.asarray(ts)),
        max_steps=_MAX_STEPS,
    )
    return sol.ys, sol.result


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def final_state(system: System) -> Reference:
    """The reference value of y(t1) for `system`'s limit ODE (exact when available).

    Computed once per system object (cached). Without an exact solution, two adaptive solves
    (see the module docstring) give y(t1) and the error estimate.

    Args:
        system: the System.

    Returns:
        A `Reference`.

    Examples:
        >>> from analysis import systems
        >>> ref = final_state(systems.get("linear"))     # y(1) = e^-1
        >>> ref.source, round(float(ref.y), 6)
        ('exact', 0.367879)
    """
    if system in _CACHE:
        return _CACHE[system]
    warn_if_float32("a reference solution")
    if system.exact is not None:
        ref = Reference(flat_state(_exact_at(system, system.t1)), "exact", 0.0)
    else:
        ref = _reference_solve(system)
    _CACHE[system] = ref
    return ref


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """y of the limit ODE at a grid of times, with an error estimate per time and its source.

    Attributes:
        ys: y at the times, shape (len(ts), *y0.shape); NaN where the solve failed.
        error_estimate: per time, 0 for an exact solution, else the max-norm distance to the
            looser solve (see `final_state`); NaN where the solve failed.
        source: "exact", "reference (SOLVER, rtol=...)" or "none (reference solve failed:
            WHY; SOLVER, rtol=...)"; ", float32" is added where the tolerance was floored.

    Examples:
        >>> from analysis import systems
        >>> ref = trajectory(systems.get("linear"), np.array([0.5, 1.0]))   # e^-t
        >>> ref.source, ref.ys.round(6).tolist(), ref.error_estimate.tolist()
        ('exact', [0.606531, 0.367879], [0.0, 0.0])
    """

    ys: np.ndarray
    error_estimate: np.ndarray
    source: str


_TRAJECTORIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def trajectory(system: System, ts, *, exact: bool = True) -> Trajectory:
    """The limit ODE's solution at the times `ts` (increasing, last t1): exact where the system
    has an exact solution (unless `exact` is False), else the reference solve of `settings`
    with its error estimated by the looser solve. Cached per system object and grid.

    Args:
        system: the System.
        ts: the times (NumPy array, from t0 to t1).
        exact: use the system's exact solution where it has one (False: always solve).

    Returns:
        A `Trajectory`; a failed solve gives NaN values and says why in its source.

    Examples:
        >>> from analysis import systems
        >>> sys = systems.get("linear")
        >>> ref = trajectory(sys, np.array([1.0]), exact=False)
        >>> close = bool(abs(ref.ys[0] - np.exp(-1)) < 1e-12)
        >>> ref.source, close, bool(ref.error_estimate[0] < 1e-10)
        ('reference (Dopri8, rtol=1e-13)', True, True)
    """
    ts = np.asarray(ts, dtype=float)
    cache = _TRAJECTORIES.setdefault(system, {})
    key = (tuple(ts.tolist()), exact and system.exact is not None)
    if key not in cache:
        if key[1]:
            ys = np.asarray(flat_states(_exact_at_times(system.exact, jnp.asarray(ts))))
            cache[key] = Trajectory(ys, np.zeros(len(ts)), "exact")
        else:
            name, rtol, _, _ = settings(system)
            setting = f"{name}, rtol={rtol:.2g}{_precision_suffix(system)}"
            fine, est, failed = _estimated_solve(system, ts)
            if failed:  # no reference: NaN values and the reason
                nan = np.full((len(ts), *state_shape(system.y0)), np.nan)
                source = f"none (reference solve failed: {failed}; {setting})"
                cache[key] = Trajectory(nan, np.full(len(ts), np.nan), source)
            else:
                cache[key] = Trajectory(fine, est, f"reference ({setting})")
    return cache[key]


@eqx.filter_jit
def _exact_at_times(exact, ts):
    """The exact solution at the times ts, one compiled program per exact solution's structure
    (its arrays are arguments): evaluated op by op, jax would compile a kernel per operation
    (0.5 s for linear10's matrix exponential), and a program is kept by the persistent cache."""
    return jax.vmap(exact)(ts)


def _exact_at(system: System, t):
    """system.exact(t), compiled (`_exact_at_times`); an exact solution written for concrete
    numbers (numpy on a float t) is called as it is."""
    try:
        return jtu.tree_map(lambda y: y[0], _exact_at_times(system.exact, jnp.asarray([t])))
    except (
        jax.errors.ConcretizationTypeError,
        jax.errors.TracerArrayConversionError,
        jax.errors.TracerIntegerConversionError,
    ):
        return system.exact(t)


def _reference_solve(system: System) -> Reference:
    name, rtol, _, note = settings(system)
    fine, estimate, failed = _estimated_solve(system, None)
    if failed:
        where = f"{name} at rtol={rtol:.2g}" + _precision_suffix(system)
        return Reference(None, "none", np.nan, reason=f"reference solve failed: {failed} ({where})")
    return Reference(fine[-1], "reference", float(estimate.max()), reason=note)


def _precision_suffix(system: System) -> str:
    """ ", float32" (the state's precision) where `settings` floored the tolerance, else ""."""
    return f", {jnp.dtype(_state_dtype(system)).name}" if settings(system)[3] else ""


def _estimated_solve(system: System, ts) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The reference solve of `system`'s limit ODE at `ts` (None: at t1 alone) with the
    tolerances of `settings` and, per time, its error estimate: the max-norm distance to the
    looser solve.

    Returns:
        (ys, estimate, failure): ys of shape (len(ts), *y0.shape) and estimate of shape
        (len(ts),), or None and None with `failure` saying what went wrong ("" on success).
    """
    _, rtol, looser, _ = settings(system)
    fine, coarse = (limit_solution(system, ts, rtol=tol) for tol in (rtol, looser))
    failed = _failure(*fine, *coarse)
    if failed:
        return None, None, failed
    fine, coarse = np.asarray(flat_states(fine[0])), np.asarray(flat_states(coarse[0]))
    return fine, np.max(np.abs(fine - coarse).reshape(len(fine), -1), axis=1), ""


def limit_solution(system: System, ts, *, rtol: float):
    """`solve_limit` run now, compiled once per field structure and number of times: the
    system's numbers (`System.traced_form`), the times and the tolerance are arguments, so a
    reference and its looser estimate, or systems equal up to their numbers, share one program.

    Args:
        system: the System (its limit field is solved from t0 to t1).
        ts: increasing times in [t0, t1], or None for t1 alone (then the program holds no
            run-time check of the times, so the persistent compilation cache can keep it).
        rtol: the tolerance (rtol = atol).

    Returns:
        (ys, result) as `solve_limit` gives them.

    Examples:
        >>> from analysis import systems
        >>> ys, result = limit_solution(systems.get("linear"), [0.5, 1.0], rtol=1e-12)
        >>> np.round(np.asarray(ys), 9).tolist()                    # e^-t
        [0.60653066, 0.367879441]
    """
    blank, span = system.traced_form()
    ts = None if ts is None else jnp.asarray(ts, dtype=span.dtype)
    return _compiled_limit_solve(blank, ts, jnp.asarray(rtol, dtype=span.dtype), span)


@eqx.filter_jit
def _compiled_limit_solve(blank: System, ts, rtol, span):
    return solve_limit(blank, ts, rtol=rtol, t0=span[0], t1=span[1])


def _failure(*solves) -> str:
    """'' if every (ys, result) pair in `solves` succeeded with finite ys, else what went wrong."""
    for ys, result in zip(solves[::2], solves[1::2], strict=True):
        if result != diffrax.RESULTS.successful:
            return str(result).split("<", 1)[-1].rstrip(">").split(". ")[0].lower()
        if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree_util.tree_leaves(ys)):
            return "non-finite values"
    return ""
