"""Constant steps without diffeqsolve's adaptive machinery: `march` from t0 to t1.

A constant-step solve needs none of what `diffrax.diffeqsolve` carries for adaptive ones: no
error estimate, no dense output, no accept/reject, no interpolated saves. `march` steps one
`lax.while_loop` (under vmap: one loop over the lanes, finished lanes masked) from t0 to t1 on
exactly diffeqsolve's time grid and returns the final state, the result, the step count and,
given save times ``ts`` on that grid, the states there.

- Time grid: that of diffrax 0.7.2's `ConstantStepSize` (not dt0 accumulated): T_1 =
  min(t0 + dt0, t1), T_n = t0 + (t1 - t0)·(n/N) for n ≥ 2 with N = ⌈(t1 - t0)/dt0⁺⌉, dt0⁺ the
  float after dt0, T_N = t1, clipped to t1 within 100 ulp as diffeqsolve clips (`_Grid`);
  reverse time (t1 < t0) in negated time with the terms wrapped, as there.
- Explicit Runge–Kutta solvers with one `ButcherTableau` (Heun, Midpoint, Ralston, Bosh3, Tsit5,
  Dopri5, Dopri8, ...) and `diffrax.Euler` (b = [1]), bare or in `StepAware`: the stages are
  unrolled at trace time, zero coefficients skipped,

      k_i = h·f(t0 + c_i·h, y0 + Σ_j a_ij·k_j),    y1 = y0 + Σ_i b_i·k_i,

  with the term's ``vf_prod`` (``vf`` then ``prod`` for an FSAL tableau), as diffrax does. An
  FSAL tableau reuses f of its last stage as the next step's first, unless the field reads h:
  a `StepTerm` under `StepAware` sees h = t1 - t0 of each step in every stage (signed if the
  wrapper is), so its first stage is evaluated afresh.
- Any other solver (implicit, `HalfSolver`, `StaleFSAL`, ...): its own ``init`` and ``step``
  in the same loop; a failed step (Newton divergence) ends the solve with the solver's result.

- Saves: each time of ``ts`` must be a step's end T_n (to round-off); the state there is
  saved, where diffeqsolve's ``SaveAt(ts=ts)`` evaluates its interpolant at T_n, equal to
  round-off. A time off the grid is refused (InvalidArgument) when the times are concrete and
  saved as NaN when traced: the loop carries no host-callback check, so a jitted march can be
  stored in jax's persistent compilation cache.

max_steps steps that do not reach t1 give `RESULTS.max_steps_reached`, as in diffeqsolve; all
steps are accepted (num_accepted_steps = num_steps, num_rejected_steps = 0). The while loop has
forward-mode derivatives (jit, vmap, jvp); ``reverse_mode=True`` takes exactly max_steps
iterations in a `lax.scan`, the steps after t1 masked, so that `jax.grad` goes through it
(training through a solve).

Examples:
    >>> import diffrax, jax.numpy as jnp
    >>> end = march(diffrax.ODETerm(lambda t, y, args: -y), diffrax.Euler(), 0.0, 1.0, 0.25,
    ...             jnp.array(1.0), None)
    >>> float(end.y1), int(end.num_steps)                      # (1 - 1/4)^4
    (0.31640625, 4)
    >>> end = march(diffrax.ODETerm(lambda t, y, args: -y), diffrax.Heun(), 0.0, 1.0, 0.25,
    ...             jnp.array(1.0), None, max_steps=3)
    >>> end.result == diffrax.RESULTS.max_steps_reached
    Array(True, dtype=bool)
    >>> grad = jax.grad(lambda a: march(diffrax.ODETerm(lambda t, y, a: -a * y), diffrax.Euler(),
    ...                 0.0, 1.0, 0.5, 1.0, a, ts=[0.5, 1.0], max_steps=2,
    ...                 reverse_mode=True).ys[-1])
    >>> float(grad(1.0))                                       # d/da (1 - a/2)² = -(1 - a/2)
    -0.5
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
from jax import lax

from ._diffrax_private import WrapTerm
from .errors import InvalidArgument
from .stepdep import StepAware, StepTerm, bind_step, uses_h

__all__ = ["march", "Marched", "Tableau", "tableau_of", "check_times"]

#: diffeqsolve rounds a step ending within this many ulp below t1 up to t1.
_CLIP_ULPS = 100
#: A save time within this many ulp (of max(|t0|, |t1|)) of a step's end is saved there.
_SAVE_ULPS = 1024


class Marched(eqx.Module):
    """The end of a constant-step solve: final state, result and step count.

    Attributes:
        y1: the state at the last step's end (t1 if the solve succeeded).
        result: the `diffrax.RESULTS` value (max_steps_reached, or an implicit solver's
            failure).
        num_steps: the steps taken (all accepted).
        ys: the states at the save times ``ts`` (leading axis: the save times; inf where the
            solve stopped first, NaN at a traced time off the grid), or None without ``ts``.

    Examples:
        >>> from analysis.prepare import prepare
        >>> out = prepare("linear", "Euler").march(0.25)               # (1 - 1/4)^4
        >>> float(out.y1), int(out.num_steps), int(out.stats["num_rejected_steps"])
        (0.31640625, 4, 0)
    """

    y1: object
    result: diffrax.RESULTS
    num_steps: jax.Array
    ys: object = None

    @property
    def stats(self) -> dict:
        """diffeqsolve's step statistics: num_steps, num_accepted_steps, num_rejected_steps."""
        n = self.num_steps
        return {"num_steps": n, "num_accepted_steps": n, "num_rejected_steps": jnp.zeros_like(n)}


@dataclasses.dataclass(frozen=True)
class Tableau:
    """An explicit Runge–Kutta method as Python floats: stage s at ``t0 + c[s]·h`` from
    ``y0 + Σ_j a[s][j]·k_j`` (``a[0]`` empty), then ``y1 = y0 + Σ_i b[i]·k_i``.

    Attributes:
        a: the strictly lower rows, one tuple per stage.
        b: the weights.
        c: the nodes, c[0] = 0.
        fsal: whether the last stage is f(t1, y1), the next step's first.

    Examples:
        >>> heun = tableau_of(diffrax.Heun())       # k1 = h·f(y0), k2 = h·f(y0 + k1)
        >>> heun.a, heun.b, heun.c
        (((), (1.0,)), (0.5, 0.5), (0.0, 1.0))
    """

    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]
    fsal: bool


def tableau_of(solver) -> Tableau | None:
    """The explicit Runge–Kutta tableau that `march` unrolls for `solver`, or None if it steps
    with the solver's own ``step``.

    Euler, and any diffrax explicit Runge–Kutta solver with one `ButcherTableau` and diffrax's
    step, bare or in `StepAware` (not a subclass such as `StaleFSAL`, whose step differs).

    Args:
        solver: a diffrax solver.

    Returns:
        A `Tableau` or None.

    Examples:
        >>> tableau_of(diffrax.Heun())
        Tableau(a=((), (1.0,)), b=(0.5, 0.5), c=(0.0, 1.0), fsal=False)
        >>> tableau_of(StepAware(diffrax.Euler())).b, tableau_of(diffrax.Kvaerno5())
        ((1.0,), None)
    """
    if type(solver) is StepAware:
        solver = solver.solver
    if type(solver) is diffrax.Euler:
        return Tableau(a=((),), b=(1.0,), c=(0.0,), fsal=False)
    tab = getattr(solver, "tableau", None)
    if (
        not isinstance(solver, diffrax.AbstractERK)
        or type(solver).step is not diffrax.AbstractRungeKutta.step
        or not isinstance(tab, diffrax.ButcherTableau)
        or tab.implicit
    ):
        return None
    rows = ((),) + tuple(tuple(float(x) for x in row) for row in tab.a_lower)
    c = (float(tab.c1),) + tuple(float(x) for x in tab.c)
    return Tableau(a=rows, b=tuple(float(x) for x in tab.b_sol), c=c, fsal=bool(tab.fsal))


def march(
    term: diffrax.AbstractTerm,
    solver: diffrax.AbstractSolver,
    t0,
    t1,
    dt0,
    y0,
    args,
    *,
    max_steps: int | None = 4096,
    ts=None,
    reverse_mode: bool = False,
) -> Marched:
    """Solve from t0 to t1 at the constant step dt0: diffeqsolve's numbers without its loop.

    The result equals ``diffrax.diffeqsolve(term, solver, t0, t1, dt0, y0, args,
    stepsize_controller=diffrax.ConstantStepSize(), max_steps=max_steps)`` at t1 (and with
    ``saveat=diffrax.SaveAt(ts=ts)`` at ts) to round-off, with the same result and step counts.
    The loop carries only the step count, the state (an FSAL stage or an implicit solver's
    state, the saves): the step's times are `_Grid.time` of the count.

    Args:
        term: the diffrax term (an `ODETerm` or a `StepTerm`).
        solver: the diffrax solver (StepAware-wrapped for a field that reads h; an implicit
            one with its Newton tolerances set, see `analysis.solvers.for_fixed_steps`).
        t0: the start time.
        t1: the end time (finite).
        dt0: the step, with the sign of t1 - t0.
        y0: the initial state, an array or a PyTree of arrays.
        args: the field's args.
        max_steps: the step limit (None: none; an int with reverse_mode).
        ts: save times, each a step's end (shape (K,); None: save nothing but y1).
        reverse_mode: loop in a `lax.scan` of max_steps iterations, for `jax.grad`.

    Returns:
        A `Marched`.

    Raises:
        InvalidArgument: concrete times that are not finite, a dt0 that is zero or against
            the direction, save times off the step grid (traced ones are not checked), or
            reverse_mode without an int max_steps.

    Examples:
        >>> import jax.numpy as jnp
        >>> term = diffrax.ODETerm(lambda t, y, args: -y)
        >>> end = march(term, diffrax.Heun(), 0.0, 1.0, 0.5, jnp.array(1.0), None)
        >>> float(end.y1), end.stats["num_rejected_steps"].item()   # (1 - 1/2 + 1/8)^2
        (0.390625, 0)
        >>> march(term, diffrax.Heun(), 0.0, 1.0, 0.5, jnp.array(1.0), None, ts=[0.0, 0.5]).ys
        Array([1.   , 0.625], dtype=float64)
    """
    check_times(t0, t1, dt0)
    with jax.numpy_dtype_promotion("standard"):
        time_dtype = jnp.result_type(t0, t1, dt0)
        if not jnp.issubdtype(time_dtype, jnp.floating):
            time_dtype = jnp.result_type(float)
        y0 = jtu.tree_map(lambda x: jnp.asarray(x, jnp.result_type(x, time_dtype)), y0)
    t0, t1, dt0 = (jnp.asarray(x, time_dtype) for x in (t0, t1, dt0))
    # diffeqsolve's normalisation: time runs forwards, reverse time through WrapTerm.
    direction = jnp.where(t0 < t1, 1, -1)
    t0, t1, dt0 = t0 * direction, t1 * direction, dt0 * direction
    terms = WrapTerm(term, direction)
    grid = _Grid.of(t0, t1, dt0)
    step, state, fails = _stepper(term, solver, terms, t0, grid.time(1), y0, args)
    saves = None if ts is None else _Saves.of(grid, jnp.asarray(ts, time_dtype) * direction, y0)
    _check_saves(ts, saves)

    def running(carry):
        _, tprev, _, _, result, _ = carry
        going = tprev < t1
        return going & (result == diffrax.RESULTS.successful) if fails else going

    def cond(carry):
        if max_steps is None:
            return running(carry)
        return running(carry) & (carry[0] < max_steps)

    def body(carry):
        n, tprev, y, state, _, ys = carry
        tnext = grid.time(n + 1)
        y1, state, result = step(tprev, tnext, y, state)
        ys = None if saves is None else saves.record(ys, n + 1, y1)
        return n + 1, tnext, y1, state, result if fails else None, ys

    ok = diffrax.RESULTS.successful
    ys = None if saves is None else saves.record(saves.empty, 0, y0)
    carry = (jnp.asarray(0), t0, y0, state, ok if fails else None, ys)
    if reverse_mode:
        if not isinstance(max_steps, int):
            raise InvalidArgument(
                f"max_steps={max_steps!r} is invalid with reverse_mode=True; give the number "
                "of steps the scan takes (an int)"
            )

        def masked(carry, _):  # steps past t1 (or a failure) leave the carry as it is
            going = cond(carry)
            return jtu.tree_map(lambda a, b: jnp.where(going, a, b), body(carry), carry), None

        carry, _ = lax.scan(masked, carry, None, length=max_steps)
    else:
        carry = lax.while_loop(cond, body, carry)
    n, _, y1, _, result, ys = carry
    result = ok if result is None else result
    result = diffrax.RESULTS.where(running(carry), diffrax.RESULTS.max_steps_reached, result)
    ys = None if saves is None else saves.finish(ys)
    return Marched(y1=y1, result=result, num_steps=n, ys=ys)


class _Saves(eqx.Module):
    """Save times on the step grid, as step numbers: ys[i] is the state after step k[i].

    k[i] is the n whose T_n (`_Grid.time`) is ts[i] within `_SAVE_ULPS` ulp of max(|t0|, |t1|);
    a save time near no T_n is off the grid, and its entry is NaN.
    """

    steps: jax.Array  # k, shape (K,)
    on_grid: jax.Array  # shape (K,)
    empty: object  # the buffer before any save: inf, as diffeqsolve fills unsaved entries

    @classmethod
    def of(cls, grid: _Grid, ts, y0) -> _Saves:
        span = grid.t1 - grid.t0
        tol = _SAVE_ULPS * jnp.finfo(ts.dtype).eps * jnp.maximum(abs(grid.t0), abs(grid.t1))
        near = lambda k: abs(grid.time(k) - ts) <= tol  # noqa: E731
        frac = (ts - grid.t0) / jnp.where(span == 0, 1, span)
        k = jnp.clip(jnp.round(frac * grid.count), 0, grid.count).astype(grid.count.dtype)
        k = jnp.where(near(k) | ~near(1), k, 1)  # T_1 = t0 + dt0 is off the even spacing
        full = lambda y: jnp.full((ts.shape[0], *jnp.shape(y)), jnp.inf, jnp.result_type(y))  # noqa: E731
        return cls(k, near(k), jtu.tree_map(full, y0))

    def record(self, ys, n, y):
        """ys with the state y after step n written where k = n."""
        return jtu.tree_map(lambda buf, x: jnp.where(self._rows(self.steps == n, x), x, buf), ys, y)

    def finish(self, ys):
        """ys with NaN for save times off the grid."""
        return jtu.tree_map(
            lambda buf: jnp.where(self._rows(self.on_grid, buf[0]), buf, jnp.nan), ys
        )

    @staticmethod
    def _rows(mask, like):
        return mask.reshape(mask.shape + (1,) * jnp.ndim(like))


class _Grid(eqx.Module):
    """diffrax 0.7.2's ConstantStepSize grid in time running forwards (t0 < t1).

    T_0 = t0, T_1 = min(t0 + dt0, t1), and for k ≥ 2: t1 if k = N, else
    t0 + (t1 - t0)·(k/N) rounded up to t1 when within 100 ulp below it (diffeqsolve's clip),
    where N = ⌈(t1 - t0)/dt0⁺⌉ in int32 and dt0⁺ is the float after dt0.
    """

    t0: jax.Array
    t1: jax.Array
    dt0: jax.Array
    count: jax.Array  # N
    floor: jax.Array  # t1 less 100 ulp

    @classmethod
    def of(cls, t0, t1, dt0) -> _Grid:
        # N and the clip's floor are not differentiated (nextafter and bitcasts have no rule).
        t0_, t1_, dt0_ = (lax.stop_gradient(x) for x in (t0, t1, dt0))
        after = jnp.where(dt0_ == 0, jnp.finfo(dt0.dtype).tiny, jnp.nextafter(dt0_, jnp.inf))
        count = jnp.astype(jnp.ceil((t1_ - t0_) / after), jnp.int32)
        floor = _ulps_below(t1_, _CLIP_ULPS)
        return cls(t0, t1, dt0, count, floor)

    def time(self, k):
        """T_k, the end of step k (k an integer, may be traced)."""
        frac = jnp.astype(k, self.t0.dtype) / jnp.astype(self.count, self.t0.dtype)
        inner = jnp.where(k == self.count, self.t1, self.t0 + (self.t1 - self.t0) * frac)
        inner = jnp.where(inner > self.floor, self.t1, inner)
        first = jnp.minimum(self.t0 + self.dt0, self.t1)
        return jnp.where(k == 0, self.t0, jnp.where(k == 1, first, inner))


def _ulps_below(t, ulps: int):
    """The float `ulps` steps below t towards -inf: equinox's `prevbefore` applied `ulps` times
    (which diffeqsolve does for its clip) as one step of the bit pattern, which is ordered like
    the floats of one sign. From 0, prevbefore's first step is to -tiny (the smallest normal);
    a t within `ulps` subnormal steps above 0 is not supported."""
    ints = jnp.dtype(f"int{8 * t.dtype.itemsize}")
    start = jnp.where(t == 0, -jnp.finfo(t.dtype).tiny, t)
    steps = jnp.where(t == 0, ulps - 1, ulps)
    bits = lax.bitcast_convert_type(start, ints)
    return lax.bitcast_convert_type(jnp.where(start > 0, bits - steps, bits + steps), t.dtype)


def check_times(t0, t1, dt0) -> None:
    """Refuse concrete times that are not finite, or a dt0 that is zero or against the
    direction t1 - t0 (traced ones are not checked: that would need a host callback).

    Raises:
        InvalidArgument: naming the three values.

    Examples:
        >>> check_times(0.0, 1.0, 0.1)                  # fine: returns None
        >>> try:
        ...     check_times(0.0, 1.0, -0.1)
        ... except InvalidArgument as e:
        ...     print(str(e).split(";")[0])
        t0=0.0, t1=1.0, dt0=-0.1 are invalid
    """
    if any(isinstance(x, jax.core.Tracer) for x in (t0, t1, dt0)):
        return
    t0, t1, dt0 = float(t0), float(t1), float(dt0)
    if not all(map(math.isfinite, (t0, t1, dt0))) or dt0 == 0 or (t1 - t0) * dt0 < 0:
        raise InvalidArgument(
            f"t0={t0!r}, t1={t1!r}, dt0={dt0!r} are invalid; give finite times and a step "
            "dt0 ≠ 0 with the sign of t1 - t0"
        )


def _check_saves(ts, saves: _Saves | None) -> None:
    if saves is None or isinstance(saves.on_grid, jax.core.Tracer):
        return
    times = jnp.ravel(jnp.asarray(ts))
    off = [float(t) for t, on in zip(times, saves.on_grid, strict=True) if not on]
    if off:
        raise InvalidArgument(
            f"ts has times off the step grid ({off[:3]}{'...' if len(off) > 3 else ''}); "
            "march saves at the ends of its steps only: give dt0 = (save spacing)/m for an "
            "integer m, or save with diffeqsolve, which interpolates"
        )


def _stepper(term, solver, terms, t0, tnext, y0, args) -> tuple[Callable, object, bool]:
    """(step, state0, fails): step(t0, t1, y0, state) -> (y1, state, result), its first state,
    and whether a step can fail (the solver's own step; an unrolled one never does)."""
    tab = tableau_of(solver)
    if (
        tab is None
        or isinstance(term, diffrax.MultiTerm)
        or term.is_vf_expensive(t0, tnext, y0, args)
    ):
        state = solver.init(terms, t0, tnext, y0, args)
        return _solver_step(solver, terms, args), state, True
    reads_h = (
        isinstance(solver, StepAware)
        and isinstance(term, StepTerm)
        and uses_h(term.vector_field, t0, y0, args)
    )
    if reads_h:
        bind = lambda t0, t1: bind_step(terms, t1 - t0, signed=solver.signed)  # noqa: E731
    elif isinstance(solver, StepAware):  # the field ignores h: StepAware binds the limit
        limit = bind_step(terms, jnp.zeros((), jnp.result_type(t0, float)))
        bind = lambda t0, t1: limit  # noqa: E731
    else:
        bind = lambda t0, t1: terms  # noqa: E731
    reuse = tab.fsal and not reads_h
    f0 = bind(t0, tnext).vf(t0, y0, args) if reuse else None
    return _rk_step(tab, bind, args, reuse), f0, False


def _solver_step(solver, terms, args) -> Callable:
    def step(t0, t1, y0, state):
        y1, _, _, state, result = solver.step(terms, t0, t1, y0, args, state, False)
        return y1, state, result

    return step


def _rk_step(tab: Tableau, bind: Callable, args, reuse: bool) -> Callable:
    """One explicit Runge–Kutta step of `tab`, stages unrolled; with `reuse` the state is f of
    the last stage (FSAL), the next step's first stage."""

    def step(t0, t1, y0, f_last):
        terms = bind(t0, t1)
        control, dt = terms.contr(t0, t1), t1 - t0
        ks, f = [], None
        for i, (c, row) in enumerate(zip(tab.c, tab.a, strict=True)):
            t = t1 if c == 1 else t0 + c * dt  # as diffrax: no rounding at c = 1
            y = _combine(y0, row, ks)
            if i == 0 and reuse:
                f = f_last
            elif tab.fsal:
                f = terms.vf(t, y, args)
            if tab.fsal:
                ks.append(terms.prod(f, control))
            else:
                ks.append(terms.vf_prod(t, y, args, control))
        y1 = _combine(y0, tab.b, ks)
        return y1, (f if reuse else None), diffrax.RESULTS.successful

    return step


def _combine(y0, coeffs, ks):
    """y0 + Σ_j coeffs[j]·ks[j] over the nonzero coefficients (leafwise on PyTrees)."""
    terms = [(a, k) for a, k in zip(coeffs, ks, strict=False) if a != 0.0]
    if not terms:
        return y0

    def leaf(y, *k_leaves):
        parts = [a * k for (a, _), k in zip(terms, k_leaves, strict=True)]
        return y + sum(parts[1:], parts[0])

    return jtu.tree_map(leaf, y0, *(k for _, k in terms))
