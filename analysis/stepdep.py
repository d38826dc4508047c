"""Step-dependent vector fields f(t, y, args, h) and the solver wrapper that feeds them h.

A *step-dependent system* is a vector field that takes the step size as an input::

    dy/dt = f(t, y, args, h)

(a neural field that sees h, a hypersolver correction, a modifying integrator f + h/2·f'f, a map
written as (Φ(y) - y)/h). Its numerical solution depends on the discretization itself. Two pieces
make diffrax solve such systems:

- `StepTerm(f)`: a diffrax term holding f. It has no h of its own: given to a solver that is
  not `StepAware`, a field that uses h is refused at trace time (`InvalidArgument` naming
  StepAware) instead of being silently integrated at h = 0. A field that ignores h works with
  any solver.
- `StepAware(solver)`: wraps any diffrax ODE solver so that every vector-field evaluation *inside*
  a step (every stage, rejected trial steps, the clipped final step) sees h = t1 - t0 of that
  very step. Outside a step (its `init` and `func`: the first FSAL stage, initial step-size
  selection) it binds h = 0 explicitly, the h → 0 limit. First-same-as-last (FSAL) solvers
  reuse the previous step's last stage as the next step's first stage; that stage was evaluated
  at the previous h, so StepAware makes them re-evaluate it whenever the terms contain a
  StepTerm whose field uses h.

Examples:
    >>> import diffrax, jax.numpy as jnp
    >>> from analysis import StepTerm, StepAware
    >>> term = StepTerm(lambda t, y, args, h: -y + h * y)   # Euler on this is exact-ish nonsense
    >>> sol = diffrax.diffeqsolve(term, StepAware(diffrax.Euler()), 0.0, 1.0, 0.5, jnp.array(1.0))
    >>> # two Euler steps of size h = 0.5 on y' = (-1 + 0.5) y: (1 - 0.25)^2 = 0.5625
    >>> float(sol.ys[-1])
    0.5625
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.extend.core as jcore
import jax.numpy as jnp
import jax.tree_util as jtu
from diffrax import AbstractTerm

from ._diffrax_private import WrapTerm
from .errors import InvalidArgument

__all__ = ["StepTerm", "FrozenStepTerm", "StepAware", "StaleFSAL", "bind_step", "uses_h"]


def _scale(tree, control):
    return jtu.tree_map(lambda v: v * control, tree)


class _ODELikeTerm(AbstractTerm):
    """Shared ODE plumbing: the control is dt = t1 - t0 and prod is a scalar multiply."""

    def contr(self, t0, t1, **kwargs):
        return t1 - t0

    def prod(self, vf, control):
        return _scale(vf, control)


# diffeqsolve checks that terms suit the solver by tracing term.vf under jax.eval_shape (output
# types only, nothing is evaluated); that one call may see a StepTerm without an h.
_TERM_CHECK = getattr(getattr(diffrax, "_integrate", None), "_assert_term_compatible", None)
_TERM_CHECK_CODE = getattr(_TERM_CHECK, "__code__", None)


def _in_diffrax_term_check(max_depth: int = 200) -> bool:
    """Whether the caller runs inside diffrax's term-compatibility check (a shape-only trace).

    If a diffrax release renames the check, this returns False and every StepTerm solve with a
    field that uses h raises: loudly, in the tests, never silently.
    """
    if _TERM_CHECK_CODE is None:
        return False
    frame = sys._getframe(1)
    for _ in range(max_depth):
        if frame is None:
            return False
        if frame.f_code is _TERM_CHECK_CODE:
            return True
        frame = frame.f_back
    return False


class StepTerm(_ODELikeTerm):
    """A diffrax term whose vector field is f(t, y, args, h).

    Solve it with a `StepAware` solver: inside each step the term is bound to that step's h,
    and where StepAware means the h → 0 limit (its `init` and `func`) to h = 0 explicitly. The
    term itself has no h: `vf` of a field that uses h raises `InvalidArgument` at trace time,
    so a plain diffrax solver (or a custom solver calling `terms.vf`) cannot silently integrate
    the h → 0 limit instead of the model. A field that never touches h (decided from its
    jaxpr, see `uses_h`) is an ordinary ODE and works with any solver. Use `freeze(h0)` for
    "h as a parameter", `bind_step(term, 0.0)` for the limit field on purpose.

    Attributes:
        vector_field: f(t, y, args, h) -> dy/dt, jax-traceable, returning y's shape and dtype.

    Examples:
        >>> term = StepTerm(lambda t, y, args, h: -y + h * y)
        >>> sol = diffrax.diffeqsolve(term, diffrax.Euler(), 0.0, 1.0, 0.5, jnp.array(1.0))
        Traceback (most recent call last):
            ...
        analysis.errors.InvalidArgument: StepTerm: the vector field uses h, but it was evaluated ...
        >>> float(bind_step(term, 0.0).vf(0.0, jnp.array(2.0), None))   # the limit, on purpose
        -2.0
        >>> float(term.freeze(0.5).vf(0.0, jnp.array(2.0), None))
        -1.0
        >>> h_free = StepTerm(lambda t, y, args, h: -y)                 # any solver will do
        >>> float(diffrax.diffeqsolve(h_free, diffrax.Euler(), 0.0, 1.0, 0.5, 1.0).ys[-1])
        0.25
    """

    vector_field: Callable

    def vf(self, t, y, args):
        if uses_h(self.vector_field, t, y, args) and not _in_diffrax_term_check():
            raise InvalidArgument(
                "StepTerm: the vector field uses h, but it was evaluated outside a step of a "
                "StepAware solver, where no step size exists (a plain diffrax solver would "
                "integrate the h → 0 limit instead of the model). Wrap the solver: "
                "diffrax.diffeqsolve(term, analysis.StepAware(solver), ...). For h as a fixed "
                "parameter use term.freeze(h0); for the h → 0 limit on purpose, "
                "analysis.stepdep.bind_step(term, 0.0)"
            )
        return self.vector_field(t, y, args, jnp.zeros((), jnp.result_type(t, float)))

    def freeze(self, h0) -> FrozenStepTerm:
        """The same field with h held at h0: an ordinary ODE with h as a parameter.

        Args:
            h0: the step size the field sees at every evaluation, whatever the solver's steps.

        Returns:
            A `FrozenStepTerm`, usable with any plain diffrax solver (no StepAware needed).
        """
        return FrozenStepTerm(self.vector_field, jnp.asarray(h0, dtype=float))


class FrozenStepTerm(_ODELikeTerm):
    """f(t, y, args, h0) with h0 fixed: h as a parameter rather than an input.

    Built by `StepTerm.freeze(h0)`, and by `bind_step` (which StepAware uses to bind each step's
    h). h0 is an array, so it can be vmapped or differentiated.

    Attributes:
        vector_field: f(t, y, args, h).
        h: the fixed h0 (a 0-d float array).

    Examples:
        >>> term = StepTerm(lambda t, y, args, h: -y + h * y)
        >>> frozen = term.freeze(0.5)                # y' = -0.5·y, whatever the steps
        >>> sol = diffrax.diffeqsolve(frozen, diffrax.Tsit5(), 0.0, 1.0, 0.1, jnp.array(1.0))
        >>> round(float(sol.ys[-1]), 6)              # exp(-0.5)
        0.606531
    """

    vector_field: Callable
    h: jnp.ndarray

    def vf(self, t, y, args):
        return self.vector_field(t, y, args, self.h)


def uses_h(vector_field: Callable, t, y, args) -> bool:
    """Whether f(t, y, args, h)'s output depends on h, decided from its jaxpr at trace time.

    Dependence is propagated forward through the traced equations (conservatively: an equation
    with any h-dependent input makes all its outputs h-dependent), so a field that merely
    mentions h, like f + 0·h, counts as dependent; one that never touches h does not.

    Args:
        vector_field: f(t, y, args, h).
        t: an example time to trace the field at (only shapes and dtypes matter).
        y: an example state.
        args: the field's args.

    Returns:
        True if the output depends on h.

    Examples:
        >>> y = jnp.array(1.0)
        >>> uses_h(lambda t, y, args, h: -y + h * jnp.sin(y), 0.0, y, None)
        True
        >>> uses_h(lambda t, y, args, h: -y, 0.0, y, None)
        False
    """
    h = jnp.zeros((), jnp.result_type(t, float))
    closed = jax.make_jaxpr(lambda hh: vector_field(t, y, args, hh))(h)
    tainted = set(closed.jaxpr.invars)
    for eqn in closed.jaxpr.eqns:
        if any(isinstance(v, jcore.Var) and v in tainted for v in eqn.invars):
            tainted.update(eqn.outvars)
    return any(isinstance(v, jcore.Var) and v in tainted for v in closed.jaxpr.outvars)


def _step_terms(terms) -> list[StepTerm]:
    leaves = jtu.tree_leaves(terms, is_leaf=lambda x: isinstance(x, StepTerm))
    return [x for x in leaves if isinstance(x, StepTerm)]


def bind_step(terms, h, *, signed: bool = False):
    """Replace every StepTerm in `terms` by the same field evaluated at step size h.

    diffrax solves reverse-time problems in negated time and marks that by wrapping each term in
    a `WrapTerm` whose `direction` is -1. With `signed=True` that direction multiplies h, so the
    field sees h < 0 when time runs backwards; otherwise it sees h as given.

    Args:
        terms: a diffrax term or a pytree of terms (as passed to a solver's `step`).
        h: the step size to bind.
        signed: multiply h by the direction of reverse-time wrappers.

    Returns:
        `terms` with each StepTerm replaced by a term evaluating f(t, y, args, h); other terms
        unchanged.

    Examples:
        >>> term = StepTerm(lambda t, y, args, h: -y + h * y)
        >>> bound = bind_step(term, jnp.asarray(0.5))
        >>> float(bound.vf(0.0, jnp.array(2.0), None))   # -2 + 0.5·2
        -1.0
    """

    def _bind(term, h):
        if isinstance(term, StepTerm):
            return FrozenStepTerm(term.vector_field, h)
        if isinstance(term, WrapTerm):
            inner_h = h * term.direction if signed else h
            return WrapTerm(_bind_all(term.term, inner_h), term.direction)
        return term

    def _bind_all(tree, h):
        return jtu.tree_map(
            lambda x: _bind(x, h), tree, is_leaf=lambda x: isinstance(x, (StepTerm, WrapTerm))
        )

    return _bind_all(terms, h)


def _limit_terms(terms, t):
    """`terms` with every StepTerm bound to h = 0 (in t's float dtype): the h → 0 limit."""
    return bind_step(terms, jnp.zeros((), jnp.result_type(t, float)))


class StepAware(diffrax.AbstractWrappedSolver):
    """Wrap a diffrax ODE solver so every evaluation inside a step sees that step's h.

    h = |t1 - t0| of the step being attempted (rejected trial steps and the clipped last step
    included). With `signed=True`, h = t1 - t0 in the user's time direction, so h < 0 when
    integrating backwards. Terms that are not StepTerms (e.g. `diffrax.ODETerm`) pass through
    unchanged, and so does a StepTerm whose field never touches h (checked on its jaxpr at trace
    time, see `uses_h`): then StepAware(solver) computes exactly what `solver` computes.

    FSAL solvers (Tsit5, Dopri5, Dopri8, Bosh3, Kvaerno3/4/5) re-evaluate their first stage at
    the current h when a field depends on h: one extra evaluation per step, the price of
    correctness (the reused stage would carry the previous step's h).

    `isinstance` checks (adaptive, implicit, ...) forward to the wrapped solver, as for diffrax's
    `HalfSolver`, and so do orders, interpolation, root finder and term structure.

    Attributes:
        solver: the diffrax ODE solver to wrap (explicit, implicit or HalfSolver).
        signed: if True, the field sees h = t1 - t0 with its sign (h < 0 in reverse time).

    Examples:
        >>> solver = StepAware(diffrax.Tsit5())
        >>> term = StepTerm(lambda t, y, args, h: -y + h * jnp.sin(y))
        >>> sol = diffrax.diffeqsolve(term, solver, 0.0, 10.0, 0.1, jnp.array(1.0),
        ...     stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6))
        >>> sol.result == diffrax.RESULTS.successful
        Array(True, dtype=bool)
    """

    solver: diffrax.AbstractSolver
    signed: bool = eqx.field(static=True, default=False)

    @property
    def term_structure(self):
        return self.solver.term_structure

    @property
    def interpolation_cls(self):
        return self.solver.interpolation_cls

    @property
    def term_compatible_contr_kwargs(self):
        return self.solver.term_compatible_contr_kwargs

    @property
    def root_finder(self):
        return self.solver.root_finder

    @property
    def root_find_max_steps(self):
        return self.solver.root_find_max_steps

    @property
    def scan_kind(self):
        return self.solver.scan_kind

    @property
    def tableau(self):
        return self.solver.tableau

    def order(self, terms):
        return self.solver.order(terms)

    def strong_order(self, terms):
        return self.solver.strong_order(terms)

    def error_order(self, terms):
        return self.solver.error_order(terms)

    def init(self, terms, t0, t1, y0, args):
        # Before any step (e.g. an FSAL solver's first stage): the h → 0 limit, bound explicitly.
        return self.solver.init(_limit_terms(terms, t0), t0, t1, y0, args)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        if not any(uses_h(term.vector_field, t0, y0, args) for term in _step_terms(terms)):
            # Nothing sees h: the inner solver's own step, FSAL reuse included, is exact. (Bound
            # at h = 0, which the fields ignore, so no stage re-checks them for h.)
            bound = _limit_terms(terms, t0)
            return self.solver.step(bound, t0, t1, y0, args, solver_state, made_jump)
        h = t1 - t0  # diffrax steps forward in (possibly negated) time, so h > 0 here
        bound = bind_step(terms, h, signed=self.signed)
        # made_jump=True makes FSAL solvers re-evaluate their first stage at this step's h.
        return self.solver.step(bound, t0, t1, y0, args, solver_state, True)

    def func(self, terms, t0, y0, args):
        # Outside a step (initial step-size selection, derivatives): the h → 0 limit, bound
        # explicitly.
        return self.solver.func(_limit_terms(terms, t0), t0, y0, args)


class StaleFSAL(StepAware):
    """StepAware without the first-stage refresh: what a wrapper that only passes h to the field
    computes. For measuring how much the refresh matters (the `fsal` study), never for results.

    An FSAL solver then reuses its last stage f(t_{n+1}, y_{n+1}, h_n), evaluated with the
    previous step (with h = 0, the limit field, on the first step), as the first stage of step
    n + 1, so the step is not the Runge–Kutta method applied to f(·, ·, h_{n+1}); the embedded
    error estimate sees the mismatch too. Solvers without FSAL compute what StepAware computes.
    Constructed like StepAware: `StaleFSAL(solver, signed=False)`.

    Examples:
        >>> term = StepTerm(lambda t, y, args, h: -y + h * jnp.sin(y))
        >>> def accepted_steps(solver):
        ...     sol = diffrax.diffeqsolve(term, solver, 0.0, 5.0, None, jnp.array(1.0),
        ...         stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-10),
        ...         max_steps=10**5)
        ...     return int(sol.stats["num_accepted_steps"])
        >>> fresh = accepted_steps(StepAware(diffrax.Tsit5()))
        >>> stale = accepted_steps(StaleFSAL(diffrax.Tsit5()))   # polluted error estimate
        >>> stale > 10 * fresh
        True
    """

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        bound = bind_step(terms, t1 - t0, signed=self.signed)
        return self.solver.step(bound, t0, t1, y0, args, solver_state, made_jump)
