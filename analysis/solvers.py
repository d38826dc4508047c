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
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.flatten_util as jfu
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from ._diffrax_private import USE_STEPSIZE_TOL
from .errors import InvalidArgument
from .stepdep import StepAware

__all__ = [
    "NAMES",
    "SolverInfo",
    "StateScaledNewton",
    "get",
    "info",
    "name_of",
    "for_fixed_steps",
    "nfev",
]

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

#: Newton tolerance of implicit solvers at fixed steps, relative to the stage state: a Newton
#: increment is small enough when, mapped to the state, it is below
#: FIXED_STEP_ROOT_ATOL + rtol·|Y| componentwise (see `StateScaledNewton`). diffrax otherwise
#: borrows the adaptive controller's tolerances, which a fixed-step solve does not have.
FIXED_STEP_ROOT_RTOL = 1e-10
#: The absolute part of that tolerance, in the state's units: only matters where |Y| ≲ 1e-2.
FIXED_STEP_ROOT_ATOL = 1e-12


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
        stage_order: the largest q with Σ_j a_ij·c_j^(k-1) = c_i^k / k for every stage i and
            k ≤ q (the simplifying condition C(q)): each stage is a q-th order quadrature. On
            stiff problems (|h·λ| ≫ 1) Runge–Kutta methods fall to about this order (order
            reduction; 2 for the Kvaerno ESDIRKs, 1 for implicit Euler and explicit methods).

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
    stage_order: int = 1


def _full_tableau(tableau: diffrax.ButcherTableau) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, b, c) of a diffrax tableau as dense arrays, the first stage included."""
    s = len(tableau.b_sol)
    a = np.zeros((s, s))
    for i, row in enumerate(tableau.a_lower, start=1):
        a[i, : len(row)] = row
    if tableau.a_diagonal is not None:
        a[np.diag_indices(s)] = tableau.a_diagonal
    c = np.concatenate([[tableau.c1], np.asarray(tableau.c, dtype=float)])
    return a, np.asarray(tableau.b_sol, dtype=float), c


def _stage_order(tableau: diffrax.ButcherTableau | None, order: int) -> int:
    """The largest q ≤ order for which C(q) holds (1 without a tableau: implicit Euler)."""
    if tableau is None:
        return 1
    a, _, c = _full_tableau(tableau)
    q = 0
    while q < order and np.allclose(a @ c**q, c ** (q + 1) / (q + 1), rtol=0, atol=1e-12):
        q += 1
    return q


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
        stage_order=_stage_order(tableau, obj.order(None)),
    )


def _stage_maps(args):
    """How a Newton unknown z of diffrax's implicit stage equations maps to the state.

    Returns (state, increment): state(z) is the stage value Y the equation is solved for,
    increment(dz) the change of Y caused by a change dz of the unknown. diffrax solves its
    Runge–Kutta stages either for the stage derivative f_i ("f-space": Y = Y_partial +
    γ·h·f_i, the ESDIRKs on an ODETerm) or for the stage increment k_i ("k-space": Y =
    Y_partial + γ·k_i), and ImplicitEuler for k = Y - y0. These are recognised from the
    argument tuples diffrax passes with the equation (diffrax 0.7); for any other equation the
    unknown is taken as the state itself.
    """
    identity = (lambda z: z), (lambda dz: dz)
    if not isinstance(args, tuple):
        return identity
    if len(args) == 8 and callable(args[2]) and callable(args[3]):
        # runge_kutta._implicit_relation_f: (stage, γ, vf, prod, t_i, Y_partial, args, control)
        _, diag, _, prod, _, partial, _, control = args

        def increment(dz):
            return jax.tree.map(lambda a: diag * a, prod(dz, control))

        return (lambda z: jax.tree.map(jnp.add, partial, increment(z))), increment
    if len(args) == 7 and callable(args[2]) and not callable(args[3]):
        # runge_kutta._implicit_relation_k: (stage, γ, vf_prod, t_i, Y_partial, args, control)
        _, diag, _, _, partial, _, _ = args

        def increment(dz):
            return jax.tree.map(lambda a: diag * a, dz)

        return (lambda z: jax.tree.map(jnp.add, partial, increment(z))), increment
    if len(args) == 5 and callable(args[0]):
        # implicit_euler._implicit_relation: (vf_prod, t1, y0, args, control); Y = y0 + k
        y0 = args[2]
        return (lambda z: jax.tree.map(jnp.add, y0, z)), (lambda dz: dz)
    return identity


class _NewtonState(eqx.Module):
    diffsize: jax.Array  # the last increment in units of its tolerance (≤ 1: converged)
    result: optx.RESULTS
    step: jax.Array


class StateScaledNewton(optx.AbstractRootFinder):
    """Newton's method whose stopping test is on the state, scaled to the Newton system.

    Each iteration solves M·Δ = r(z) with the exact Jacobian M = ∂r/∂z and stops when the
    increment, mapped to the stage state Y it changes (diffrax's f-space unknown f_i moves Y by
    γ·h·Δ, its k-space unknown by γ·Δ), satisfies componentwise

        |ΔY| ≤ atol + max(rtol, 10·ε·a(M))·|Y|,    a(M) = ‖M⁻¹‖∞·(‖M‖∞ + 1), ε = machine eps.

    Why this test and not optimistix's `Newton(rtol, atol)`: that one also demands
    |r(z)| < atol. In a stiff stage equation r = f_i - f(Y_partial + γ·h·f_i) the residual is
    computed from terms of size |λ|·|Y| that cancel, so its round-off is about ε·|λ|·|Y|
    (2e-10 at λ = 1e6), above any absolute atol of 1e-12 however exact the stage: every Kvaerno
    step of Prothero–Robinson at λ = 1e6 then ends in `nonlinear_max_steps_reached`. The
    increment is that residual divided by M = I - γ·h·J, so in the state's units its round-off
    is ε·|M⁻¹·γhJ|·|Y| ≤ ε·a(M)·|Y| (the same bound in k-space and for implicit Euler, where
    M = h·J - I): about ε·|Y| whatever h·λ is, so a relative tolerance on the state is always
    attainable; only where the Newton system is ill-conditioned or nearly singular (γ·h·λ ≈ 1
    for an unstable mode) does a(M) grow, and the relative tolerance with it, to 10·ε·a(M).
    Measured relative to the state and not to the unknown, the test also holds where the
    unknown passes through zero (f_i = y' = 0 at a turning point).

    The iterate after the accepted increment is returned; Newton converges quadratically, so
    its error is far below the tolerance (on a linear problem the first increment is exact to
    round-off and the second only confirms it). It stops early on a non-finite increment
    (`nonlinear_divergence`); otherwise the solver's `root_find_max_steps` bounds the
    iterations (`nonlinear_max_steps_reached`).

    Attributes:
        rtol: the relative tolerance on the stage state.
        atol: the absolute tolerance, in the state's units.
        norm: reduces the scaled increment (≤ 1 converged); the max norm by default.

    Examples:
        >>> import diffrax, jax.numpy as jnp
        >>> solver = diffrax.Kvaerno5(root_finder=StateScaledNewton())
        >>> term = diffrax.ODETerm(lambda t, y, lam: lam * (y - jnp.sin(t)) + jnp.cos(t))
        >>> sol = diffrax.diffeqsolve(term, solver, 0.0, 1.0, 0.1, jnp.array(0.0),
        ...                           args=jnp.array(-1e6), throw=False)
        >>> error = float(sol.ys[-1] - jnp.sin(1.0))    # h²/λ: stage order 2 (see info())
        >>> bool(sol.result == diffrax.RESULTS.successful), f"{error:.2e}"
        (True, '-3.27e-10')
        >>> newton = diffrax.Kvaerno5(root_finder=optx.Newton(rtol=1e-12, atol=1e-12))
        >>> sol = diffrax.diffeqsolve(term, newton, 0.0, 1.0, 0.1, jnp.array(0.0),
        ...                           args=jnp.array(-1e6), throw=False)
        >>> sol.result == diffrax.RESULTS.nonlinear_max_steps_reached   # the residual test
        Array(True, dtype=bool)
    """

    rtol: float = FIXED_STEP_ROOT_RTOL
    atol: float = FIXED_STEP_ROOT_ATOL
    norm: Callable = optx.max_norm

    def init(self, fn, y, args, options, f_struct, aux_struct, tags):
        del fn, y, args, options, f_struct, aux_struct, tags
        # diffrax may hand a precomputed state in options["init_state"] (for VeryChord's
        # frozen Jacobian); full Newton recomputes the Jacobian every iteration, so ignore it.
        return _NewtonState(
            diffsize=jnp.array(jnp.inf),
            result=optx.RESULTS.successful,
            step=jnp.array(0),
        )

    def step(self, fn, y, args, options, state, tags):
        del options, tags
        flat, unravel = jfu.ravel_pytree(y)

        def residual(v):
            out, aux = fn(unravel(v), args)
            r = jfu.ravel_pytree(out)[0]
            return r, (r, aux)

        jac, (r, aux) = jax.jacfwd(residual, has_aux=True)(flat)
        jac = jnp.atleast_2d(jac)
        diff = jnp.linalg.solve(jac, r)
        new = flat - diff
        state_of, increment_of = _stage_maps(args)
        stage = jfu.ravel_pytree(state_of(unravel(new)))[0]
        moved = jfu.ravel_pytree(increment_of(unravel(diff)))[0]
        eps = jnp.finfo(flat.dtype).eps
        inv_norm = jnp.linalg.norm(jnp.linalg.inv(jac), jnp.inf)
        amplification = inv_norm * (jnp.linalg.norm(jac, jnp.inf) + 1)
        rtol = jnp.maximum(self.rtol, 10 * eps * amplification)
        scale = self.atol + rtol * jnp.abs(stage)
        diffsize = self.norm(moved / scale)
        finite = jnp.all(jnp.isfinite(new)) & jnp.isfinite(diffsize)
        new_state = _NewtonState(
            diffsize=jnp.where(finite, diffsize, jnp.inf).astype(state.diffsize.dtype),
            result=optx.RESULTS.where(
                finite, optx.RESULTS.successful, optx.RESULTS.nonlinear_divergence
            ),
            step=state.step + 1,
        )
        return unravel(jnp.where(finite, new, flat)), new_state, aux

    def terminate(self, fn, y, args, options, state, tags):
        del fn, y, args, options, tags
        failed = state.result != optx.RESULTS.successful
        return failed | (state.diffsize <= 1), state.result

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        del fn, args, options, state, tags, result
        return y, aux, {}


def _default_root_finder(solver: diffrax.AbstractImplicitSolver):
    try:
        return type(solver)().root_finder
    except TypeError:  # a solver class that needs constructor arguments
        return None


def _waits_for_controller(root_finder) -> bool:
    return any(
        getattr(root_finder, attr, None) is USE_STEPSIZE_TOL for attr in ("rtol", "atol", "norm")
    )


def for_fixed_steps(solver: diffrax.AbstractSolver) -> diffrax.AbstractSolver:
    """Give an implicit solver a Newton tolerance so that it runs at constant steps.

    diffrax's implicit solvers take their Newton tolerances from an adaptive controller; at
    fixed steps there is none. A solver with diffrax's default root finder gets
    `StateScaledNewton()`: full Newton stopped when its increment, in the state's units, is
    below FIXED_STEP_ROOT_ATOL + max(FIXED_STEP_ROOT_RTOL, 10·ε·a)·|Y| (a = ‖M⁻¹‖(‖M‖ + 1),
    M the Newton matrix). (diffrax's default VeryChord reports divergence at fixed steps even
    where plain Newton converges, e.g. ImplicitEuler on Lotka–Volterra at h = 0.05.)

    A root finder the user passed is kept. If it still waits for a controller's tolerances
    (made with `diffrax.with_stepsize_controller_tols`), those are filled in with
    FIXED_STEP_ROOT_RTOL, FIXED_STEP_ROOT_ATOL and the max norm; otherwise it is used as given.
    Other solvers pass unchanged; every other field of the solver is kept.

    Args:
        solver: a diffrax solver, possibly StepAware-wrapped.

    Returns:
        The solver to use with `diffrax.ConstantStepSize` (the same object if not implicit or
        if its root finder already has tolerances).

    Examples:
        >>> implicit = for_fixed_steps(get("ImplicitEuler"))
        >>> type(implicit.root_finder).__name__, implicit.root_finder.rtol
        ('StateScaledNewton', 1e-10)
        >>> mine = diffrax.Kvaerno5(root_finder=optx.Chord(rtol=1e-9, atol=1e-9))
        >>> for_fixed_steps(mine) is mine
        True
        >>> explicit = get("Tsit5")
        >>> for_fixed_steps(explicit) is explicit
        True
    """
    if isinstance(solver, StepAware | diffrax.HalfSolver):  # the wrapper's class is kept
        inner = for_fixed_steps(solver.solver)
        return solver if inner is solver.solver else dataclasses.replace(solver, solver=inner)
    if not isinstance(solver, diffrax.AbstractImplicitSolver):
        return solver
    root = solver.root_finder
    if eqx.tree_equal(root, _default_root_finder(solver)) is True:
        return eqx.tree_at(lambda s: s.root_finder, solver, StateScaledNewton())
    if _waits_for_controller(root):  # the user's class, without tolerances: give it ours
        filled = dict(rtol=FIXED_STEP_ROOT_RTOL, atol=FIXED_STEP_ROOT_ATOL, norm=optx.max_norm)
        names = [a for a in filled if getattr(root, a) is USE_STEPSIZE_TOL]
        return eqx.tree_at(
            lambda s: [getattr(s.root_finder, a) for a in names],
            solver,
            [filled[a] for a in names],
        )
    return solver


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
