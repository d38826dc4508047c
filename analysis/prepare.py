"""Preparing a solve: the one place that turns (system, solver, step control) into diffrax's parts.

Every analysis that solves — the sweep, step logging, the one-step map, neural models, the
studies — starts from `prepare`, so the rules live here once:

- a field that reads h (``system.h_dependent``) is solved by ``wrapper(solver)``, by default
  `StepAware`, which hands h = t1 - t0 to the field in every stage of every step (the fsal study
  passes its `StaleFSAL` instead); an h-free field is solved by the bare solver;
- constant steps (``controller=None``) use `analysis.solvers.for_fixed_steps`: an implicit
  method's Newton tolerances are fixed instead of waiting for a controller's;
- an adaptive solve takes a controller preset name (with rtol, atol: `analysis.controller.make`)
  or any diffrax step-size controller, optionally wrapped in a `StepLogger`.

`Prepared.solve` then calls `diffrax.diffeqsolve` (the only call of it in the toolkit),
`Prepared.march` solves at constant steps without it (`analysis.fixed_steps`: the same numbers,
without the adaptive machinery) and `Prepared.step` takes one step, the map y_n -> y_{n+1}
that stability and discrete analyses study. A `Prepared` is an equinox Module: its arrays (y0,
args, tolerances, trained weights) are leaves, so `eqx.filter_jit` compiles once per structure
and takes numbers as arguments.

Examples:
    >>> import jax.numpy as jnp
    >>> p = prepare("linear", "Heun")                            # constant steps
    >>> sol = p.solve(dt0=0.1)
    >>> round(float(sol.ys[-1]), 6)                              # e^-1 to O(h²)
    0.368541
    >>> y1, ok = p.step(jnp.asarray(1.0), 0.5)                   # R(z) = 1 + z + z²/2, z = -0.5
    >>> float(y1), bool(ok)
    (0.625, True)
    >>> round(float(p.march(0.1).y1), 6)                         # the same solve, marched
    0.368541
    >>> adaptive = prepare("linear", "Tsit5", controller="PI34", rtol=1e-8)
    >>> round(float(adaptive.solve().ys[-1]), 6)                # e^-1
    0.367879
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp

from . import controller as _controller
from . import fixed_steps as _fixed_steps
from . import solvers as _solvers
from . import systems as _systems
from .errors import InvalidArgument
from .stepdep import StepAware

__all__ = ["prepare", "Prepared", "DEFAULT_MAX_STEPS"]

#: diffrax's step limit when a caller gives none.
DEFAULT_MAX_STEPS = 4096


class Prepared(eqx.Module):
    """A system, its term, the solver to use on it, and the step-size controller: ready to solve.

    Built by `prepare`; use `solve` for a whole solve (`march` at constant steps, without
    diffeqsolve) and `step` for one step.

    Attributes:
        system: the `analysis.systems.System`.
        term: the diffrax term (`StepTerm` for a field that reads h, else an `ODETerm`).
        solver: the solver as used: wrapped when the field reads h, with fixed Newton
            tolerances at constant steps.
        controller: the diffrax step-size controller (`ConstantStepSize` at constant steps).
        fixed: whether steps are constant (then `solve` needs dt0).

    Examples:
        >>> p = prepare("linear", "Euler")
        >>> p.fixed, type(p.controller).__name__
        (True, 'ConstantStepSize')
        >>> float(p.solve(dt0=0.5).ys[-1])                         # (1 - 1/2)^2
        0.25
    """

    system: _systems.System
    term: diffrax.AbstractTerm
    solver: diffrax.AbstractSolver
    controller: diffrax.AbstractStepSizeController
    fixed: bool = eqx.field(static=True)

    def solve(
        self,
        dt0=None,
        *,
        y0=None,
        args=None,
        t0=None,
        t1=None,
        saveat: diffrax.SaveAt | None = None,
        max_steps: int | None = DEFAULT_MAX_STEPS,
        adjoint: diffrax.AbstractAdjoint | None = None,
        throw: bool = False,
    ) -> diffrax.Solution:
        """Solve from t0 to t1: `diffrax.diffeqsolve` with the prepared parts.

        Args:
            dt0: the step (constant steps; required) or the first step (adaptive; None lets
                diffrax choose it).
            y0: the initial state (None: the system's).
            args: the field's args (None: the system's).
            t0: the start time (None: the system's).
            t1: the end time (None: the system's).
            saveat: what to save (default: the final state only).
            max_steps: diffrax's step limit.
            adjoint: how to differentiate (default: diffrax's recursive checkpointing).
            throw: raise on a failed solve (default False: read ``sol.result``).

        Returns:
            The `diffrax.Solution`.
        """
        if self.fixed and dt0 is None:
            raise InvalidArgument(
                "dt0=None is invalid at constant steps; give the step dt0 > 0, or prepare with "
                "a controller for adaptive steps"
            )
        t0, t1, y0, args = self._problem(t0, t1, y0, args)
        controller = self.controller
        if dt0 is not None:
            _fixed_steps.check_times(t0, t1, dt0)
            controller = _with_first_step(controller, dt0)
        return diffrax.diffeqsolve(
            self.term,
            self.solver,
            t0,
            t1,
            None,
            y0,
            args,
            stepsize_controller=controller,
            saveat=diffrax.SaveAt(t1=True) if saveat is None else saveat,
            max_steps=max_steps,
            adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
            throw=throw,
        )

    def march(
        self,
        dt0,
        *,
        y0=None,
        args=None,
        t0=None,
        t1=None,
        max_steps: int | None = DEFAULT_MAX_STEPS,
        ts=None,
        reverse_mode: bool = False,
    ) -> _fixed_steps.Marched:
        """Solve from t0 to t1 at the constant step dt0 without diffeqsolve's adaptive machinery.

        `analysis.fixed_steps.march` with the prepared parts: the final state of `solve` to
        round-off, with the same result and step counts, in a plain loop (explicit Runge–Kutta
        stages unrolled, no error estimate, no dense output), and with ``ts`` its states at
        save times on the step grid. Forward mode, or reverse mode with ``reverse_mode``.

        Args:
            dt0: the step.
            y0: the initial state (None: the system's).
            args: the field's args (None: the system's).
            t0: the start time (None: the system's).
            t1: the end time (None: the system's).
            max_steps: the step limit (None: none; an int with reverse_mode).
            ts: save times, each the end of a step (None: none).
            reverse_mode: a `lax.scan` of max_steps iterations, for `jax.grad`.

        Returns:
            An `analysis.fixed_steps.Marched` (y1, result, num_steps, stats, ys).

        Raises:
            InvalidArgument: adaptive steps (prepared with a controller), a bad dt0, or
                concrete save times off the step grid.
        """
        if not self.fixed:
            raise InvalidArgument(
                "march is for constant steps; this solve was prepared with a controller "
                f"({type(self.controller).__name__}): use solve"
            )
        t0, t1, y0, args = self._problem(t0, t1, y0, args)
        return _fixed_steps.march(
            self.term,
            self.solver,
            t0,
            t1,
            dt0,
            y0,
            args,
            max_steps=max_steps,
            ts=ts,
            reverse_mode=reverse_mode,
        )

    def _problem(self, t0, t1, y0, args) -> tuple:
        """(t0, t1, y0, args), each given one or else the system's."""
        system = self.system
        return (
            system.t0 if t0 is None else t0,
            system.t1 if t1 is None else t1,
            system.y0 if y0 is None else y0,
            system.args if args is None else args,
        )

    def step(self, y, h, *, t0=None, args=None):
        """One step of size h from (t0, y): y -> y_next, and whether the step succeeded.

        Runge–Kutta stages run in a plain lax loop (diffrax's default checkpointed loop has no
        forward-mode derivative), so the step composes with jit, vmap (over y and over h) and
        jacfwd. A failed implicit solve (Newton divergence) reports False.

        Args:
            y: the state.
            h: the step (a float or a traced value).
            t0: the time the step starts at (None: the system's t0).
            args: the field's args (None: the system's).

        Returns:
            (y_next, ok): the new state and a boolean array.
        """
        t0 = jnp.asarray(self.system.t0 if t0 is None else t0, dtype=jnp.result_type(float))
        args = self.system.args if args is None else args
        solver = _lax_stages(self.solver)
        state = solver.init(self.term, t0, t0 + h, y, args)
        y1, _, _, _, result = solver.step(self.term, t0, t0 + h, y, args, state, False)
        return y1, result == diffrax.RESULTS.successful


def _lax_stages(solver):
    """`solver` with its Runge–Kutta stages in a plain lax loop, through any wrapper."""
    if isinstance(solver, diffrax.AbstractWrappedSolver | diffrax.HalfSolver):
        return dataclasses.replace(solver, solver=_lax_stages(solver.solver))
    if isinstance(solver, diffrax.AbstractRungeKutta):
        return dataclasses.replace(solver, scan_kind="lax")
    return solver


class _FirstStepInside(diffrax.AbstractStepSizeController):
    """A step-size controller holding the first step dt0 (the step, at constant steps), so that
    diffeqsolve is called with dt0=None and hands the controller's own dt0 to ``init``: the same
    solve, step for step. Given a dt0, diffeqsolve checks (t1 - t0)·dt0 ≥ 0 at run time through
    a host callback when either is traced, and jax does not store a program with a host callback
    in its persistent compilation cache; `Prepared.solve` checks concrete times on the host."""

    controller: eqx.AbstractVar[diffrax.AbstractStepSizeController]
    dt0: eqx.AbstractVar[object]

    def wrap(self, direction):
        return dataclasses.replace(
            self, controller=self.controller.wrap(direction), dt0=self.dt0 * direction
        )

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        dt0 = jnp.asarray(self.dt0, jnp.result_type(t0))
        return self.controller.init(terms, t0, t1, y0, dt0, args, func, error_order)

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        return self.controller.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state
        )


class _ConstantFirstStep(_FirstStepInside):
    controller: diffrax.AbstractStepSizeController
    dt0: object


class _AdaptiveFirstStep(_FirstStepInside, _controller.AdaptiveWrapper):
    """The adaptive form, with the wrapped controller's tolerances (as for it alone)."""

    controller: diffrax.AbstractAdaptiveStepSizeController
    dt0: object


def _with_first_step(controller, dt0) -> _FirstStepInside:
    if isinstance(controller, diffrax.AbstractAdaptiveStepSizeController):
        return _AdaptiveFirstStep(controller, dt0)
    return _ConstantFirstStep(controller, dt0)


def prepare(
    system,
    solver,
    *,
    controller=None,
    rtol=None,
    atol=None,
    log_steps: int = 0,
    wrapper: Callable = StepAware,
    **controller_options,
) -> Prepared:
    """The parts of a solve of `system` by `solver`, at constant steps or under a controller.

    Args:
        system: a `System` or a catalog name.
        solver: a diffrax solver or a registry name.
        controller: None (or "fixed") for constant steps; a preset name (see
            `analysis.controller.PRESETS`), made at `rtol`, `atol` with `controller_options`;
            or a diffrax step-size controller, used as given.
        rtol: a preset's relative tolerance; may be traced.
        atol: a preset's absolute tolerance (default: rtol); may be traced.
        log_steps: with a controller, record this many attempted steps (`StepLogger`).
        wrapper: solver -> solver used when the field reads h (default `StepAware`). A solver
            already wrapped by `StepAware` is used as given.
        **controller_options: options of a preset controller (dtmin, dtmax, safety, ...).

    Returns:
        A `Prepared`.

    Raises:
        InvalidArgument: a preset without rtol, tolerances or options without a preset.

    Examples:
        >>> p = prepare("perturbed", "Euler")                    # the field reads h
        >>> type(p.solver).__name__, p.fixed
        ('StepAware', True)
        >>> type(prepare("linear", "Tsit5", controller="PI34", rtol=1e-6).controller).__name__
        'SoderlindController'
    """
    system, solver = _systems.get(system), _solvers.get(solver)
    if system.h_dependent and not isinstance(solver, StepAware):
        solver = wrapper(solver)
    fixed = controller is None or controller == _controller.FIXED
    if fixed:
        _refuse_tolerances(rtol, atol, log_steps, controller_options, "at constant steps")
        return Prepared(
            system,
            system.term(),
            _solvers.for_fixed_steps(solver),
            diffrax.ConstantStepSize(),
            fixed=True,
        )
    if isinstance(controller, str):
        if rtol is None:
            raise InvalidArgument(
                f"rtol=None is invalid with controller={controller!r}; give rtol > 0"
            )
        ctrl = _controller.make(
            controller, rtol, rtol if atol is None else atol, **controller_options
        )
    elif isinstance(controller, diffrax.AbstractStepSizeController):
        _refuse_tolerances(rtol, atol, 0, controller_options, "with a controller object")
        ctrl = controller
    else:
        raise InvalidArgument(
            f"controller={controller!r} is invalid; give None for constant steps, a preset "
            f"name ({', '.join(_controller.PRESETS)}) or a diffrax step-size controller"
        )
    if log_steps:
        ctrl = _controller.StepLogger(ctrl, int(log_steps))
    return Prepared(system, system.term(), solver, ctrl, fixed=False)


def _refuse_tolerances(rtol, atol, log_steps, options, where: str) -> None:
    given = {"rtol": rtol, "atol": atol, "log_steps": log_steps or None} | options
    given = {k: v for k, v in given.items() if v is not None}
    if given:
        name, value = next(iter(given.items()))
        raise InvalidArgument(
            f"{name}={value!r} is invalid {where}: tolerances, step logging and controller "
            "options belong to a preset controller (controller='PI34', rtol=...)"
        )
