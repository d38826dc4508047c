"""A solver with step h as a map y_{n+1} = Φ_h(y_n), and the stability of that map.

Linear stability. On y' = λy every Runge–Kutta step multiplies y by R(z), z = hλ.
`amplification(solver, z)` measures R by taking one real step (h = 1) of the solver itself, so it
works for every solver, wrapped or not; `tableau_amplification` evaluates the Butcher formula
R(z) = 1 + z bᵀ(I - zA)⁻¹1 for comparison. With `field=` the same step runs on a step-dependent
linear field such as λy + h·μ·y, giving the effective amplification per step.
`real_interval` / `imag_interval` are the stability intervals on the negative real and the
imaginary axis (|R| ≤ 1), bracketed on a grid and bisected to 1e-6.

Nonlinear stability. `one_step_map` is Φ_h as a jax function; `fixed_points` finds the fixed
points (or period-k points) of Φ_h in a box by Newton's method from many starts, with their
multipliers (eigenvalues of DΦ_h) and whether they are spurious (the h = 0 field does not vanish
there); `fixed_point_branches` does it over a range of h; `orbit_diagram` iterates Φ_h over a
grid of h and starts (the bifurcation diagram in h, with escapes and Lyapunov exponents) into an
`OrbitDiagram` of arrays, with the tidy rows on demand (`.to_frame()`);
`max_stable_step` bisects the largest h at which a point keeps every multiplier in the unit disk.

Every `solver` argument is a diffrax solver or its name; every `system` a System or catalog name.

Examples:
    >>> from analysis import systems, stability
    >>> phi = stability.one_step_map(systems.get("logistic"), "Euler", 0.5)
    >>> float(phi(jnp.asarray(0.5)))       # 0.5 + 0.5·0.5·(1 - 0.5)
    0.625
    >>> round(stability.real_interval("Euler"), 6), stability.imag_interval("Euler")  # |1+z| ≤ 1
    (2.0, 0.0)
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.flatten_util import ravel_pytree

from . import _sweep
from . import solvers as _solvers
from . import systems as _systems
from .errors import InvalidArgument, require_positive, warn_if_float32
from .prepare import Prepared, prepare
from .result import Result
from .stepdep import StepAware

__all__ = [
    "one_step_map",
    "amplification",
    "tableau_amplification",
    "real_interval",
    "imag_interval",
    "fixed_points",
    "fixed_point_branches",
    "orbit_diagram",
    "OrbitDiagram",
    "orbit_bytes",
    "max_stable_step",
    "StabilityBound",
    "ROUND_OFF",
    "LYAPUNOV_BLOCKS",
]

#: |R| - 1 (or max |multiplier| - 1) within ±ROUND_OFF of 0 is round-off: it decides nothing.
ROUND_OFF = 1e-12
#: A Newton solution counts as a fixed point when |Φ_h^k(y) - y| ≤ this·max(1, |y|).
FIXED_POINT_TOL = 1e-10
#: A fixed point is not a zero of a field (h → 0 or frozen) when it exceeds this in max-norm.
SPURIOUS_TOL = 1e-8
#: The kinds of fixed point of Φ_h: a zero of the h → 0 field; a zero of the frozen field
#: f(t0, ·, args, h) only (it moved with h: a property of the model); neither (the solver's).
_KINDS = ("equilibrium", "model", "spurious")

_CHUNK = 1024  # every vectorised evaluation is padded to this many points: one compile each


class StabilityBound(float):
    """The end of a stable stretch: a float (use it as one) that says why the stretch ends.

    Returned by `real_interval`, `imag_interval` and `max_stable_step`. `status` is one of
    "unstable" (|R| or a multiplier leaves the unit disk there), "unknown" (an evaluation there
    was not finite, so stability beyond it is unknown: the stretch ends, it is never inf),
    "branch_lost" (`max_stable_step` only: the fixed point followed from y_star disappears or
    cannot be followed there) and "stable" (stable on the whole range probed: inf). `reason`
    says it in words, with the value where it happened; `fixed_point` is the followed fixed
    point at the bound (`max_stable_step`; None otherwise).

    Examples:
        >>> bound = real_interval("Euler")
        >>> round(bound, 6), bound.status                  # |1 + z| ≤ 1 on [-2, 0]
        (2.0, 'unstable')
        >>> float(bound) == bound
        True
    """

    status: str
    reason: str
    fixed_point: np.ndarray | None

    def __new__(cls, value=math.nan, status="unknown", reason="", fixed_point=None):
        obj = super().__new__(cls, value)
        obj.status, obj.reason, obj.fixed_point = status, reason, fixed_point
        return obj

    def __reduce__(self):
        return (type(self), (float(self), self.status, self.reason, self.fixed_point))


# ----------------------------------------------------------------------------- the map itself


def _prepared(system, solver) -> Prepared:
    """`prepare(system, solver)` at constant steps, always through `StepAware`, so that an
    h-free and a step-dependent field take the same step."""
    solver = _solvers.get(solver)
    if not isinstance(solver, StepAware):
        solver = StepAware(solver)
    return prepare(system, solver)


def _step(prepared: Prepared, y, h, t0, *, args=None, linear=False):
    """One step of `prepared` from (t0, y) with step h; NaN where the step failed.

    With linear=True (a field linear in y, as in `amplification`) an implicit step's value is
    kept whatever the root finder reports: Newton with its exact Jacobian solves a linear stage
    equation in its first iteration, and what fails at large |hλ| is only its termination test,
    on round-off of size eps·|hλ| in the residual.
    """
    y1, ok = prepared.step(y, h, t0=t0, args=args)
    if linear:
        return y1
    # A failed implicit solve (Newton divergence) is no step at all.
    return jax.tree.map(lambda leaf: jnp.where(ok, leaf, jnp.nan), y1)


def one_step_map(system, solver, h, *, t=None) -> Callable:
    """Φ_h: one step of `solver` with step h on `system`, as a jax function y -> y_next.

    The step is `analysis.prepare.Prepared.step` through `StepAware`, so a step-dependent field
    sees this h in every stage. `system` and `solver` may be names. It is one solver step (no
    diffeqsolve loop), so it composes with jit, vmap (over y and over h) and jacfwd, and takes
    PyTree states. Implicit solvers use the
    fixed-step Newton tolerance of `analysis.solvers.for_fixed_steps`; a step whose Newton solve
    fails returns NaN. For a non-autonomous system the step starts at time `t` (default: the
    system's t0).

    Args:
        system: a System or catalog name.
        solver: a diffrax solver or its name.
        h: the step (a float, or a jax tracer under vmap/jit).
        t: the time the step starts at (default: the system's t0).

    Returns:
        A jax function y -> Φ_h(y), y of the system's state shape.

    Examples:
        >>> phi = one_step_map("linear", "Heun", 0.5)           # y' = -y, z = hλ = -0.5
        >>> float(phi(jnp.asarray(1.0)))                        # R(z) = 1 + z + z²/2
        0.625
        >>> float(jax.jacfwd(one_step_map("linear", "Euler", 2.5))(jnp.asarray(1.0)))  # |1+z|>1
        -1.5
    """
    prepared = _prepared(system, solver)
    t0 = jnp.asarray(prepared.system.t0 if t is None else t, dtype=jnp.result_type(float))
    return lambda y: _step(prepared, y, h, t0)


def _padded(fn, xs, *rest):
    """fn over the leading axis of xs in chunks of _CHUNK (padded), so one compile serves all."""
    xs = np.asarray(xs)
    n = xs.shape[0]
    total = max(_CHUNK, -(-n // _CHUNK) * _CHUNK)
    pad = np.concatenate([xs, np.repeat(xs[:1], total - n, axis=0)]) if n < total else xs
    parts = [
        jax.tree.map(np.asarray, fn(pad[i : i + _CHUNK], *rest)) for i in range(0, total, _CHUNK)
    ]
    return jax.tree.map(lambda *p: np.concatenate(p)[:n], *parts)


# ----------------------------------------------------------------------- linear stability


def _linear(y, lam, h):
    return lam * y


def _complex_linear_system(field) -> _systems.System:
    """y' = field(y, λ, h) for complex y and λ, run as a real 2-vector (Re y, Im y).

    diffrax steps a real state, and multiplication by λ = a + ib is the rotation-scaling
    [[a, -b], [b, a]] on it, so one real step from (1, 0) returns (Re R, Im R).
    """

    def f(t, y, lam, h):
        out = field(y[0] + 1j * y[1], lam[0] + 1j * lam[1], h)
        return jnp.stack([jnp.real(out), jnp.imag(out)])

    # args = (Re λ, Im λ); the step functions pass their own λ, -1 is a representative value.
    return _systems.System(
        name="complex_linear",
        vector_field=f,
        y0=jnp.array([1.0, 0.0]),
        args=jnp.array([-1.0, 0.0]),
        h_dependent=True,
    )


@eqx.filter_jit
def _amplify(solver, field, lam, h):
    """R at each λ = (Re λ, Im λ) of `lam` (vmapped) and step h: one step from y = 1."""
    prepared = _prepared(_complex_linear_system(field), solver)
    y0 = jnp.array([1.0, 0.0])
    t0 = jnp.zeros(())

    def one(lam):
        # The step's value is trusted only for a field linear in y (see _step): field(c·y) =
        # c·field(y) checked at y = 1 and c = 2 - 3i, where it must hold exactly up to rounding.
        lam_c = lam[0] + 1j * lam[1]
        one_, c = jnp.asarray(1.0 + 0.0j), jnp.asarray(2.0 - 3.0j)
        at_one, at_c = field(one_, lam_c, h), field(c, lam_c, h)
        scale = jnp.abs(at_one) + jnp.abs(lam_c) + 1.0
        linear = jnp.abs(at_c - c * at_one) <= 1e-12 * scale * 8
        return jnp.where(linear, _step(prepared, y0, h, t0, args=lam, linear=True), jnp.nan)

    return jax.vmap(one)(lam)


def amplification(solver, z, *, field: Callable | None = None, h: float = 1.0) -> np.ndarray:
    """R(z): one step of `solver` on y' = λy with step h and λ = z/h, from y = 1.

    For an h-free linear field R depends on z = hλ only (h = 1 is the convention). With `field`,
    a complex-linear step-dependent field y' = field(y, λ, h) (e.g. ``lambda y, lam, h: lam*y +
    h*mu*y``) runs instead and R is its effective amplification per step at this h: Euler on
    λy + h·μ·y gives 1 + z + h²μ. The step is real (see `_complex_linear_system`), so every
    solver works, implicit ones included, at any finite |z|: on a linear field Newton is exact
    in its first iteration, so the step's value is kept even where the root finder's
    termination test fails on round-off (|z| ≳ 1e3). The stage solve's round-off leaves an
    absolute error of at most about eps·|z| (far less for L-stable methods, where R → 0);
    `tableau_amplification` is accurate at every |z| and gives R(∞) itself. A `field` that is
    not linear in y gives NaN. `z` is any array of finite complex numbers; the result has its
    shape. Compiled once per (solver, field).

    Examples:
        >>> amplification("Heun", [-1.0, 1j])     # 1 + z + z²/2
        array([0.5+0.j, 0.5+1.j])
        >>> r = amplification("ImplicitEuler", [-1e6, -1e12])   # 1/(1 - z): finite, accurate
        >>> bool(np.allclose(r, 1 / (1 + np.array([1e6, 1e12])), rtol=1e-9, atol=1e-15))
        True
    """
    z = np.asarray(z, dtype=complex)
    if not np.all(np.isfinite(z)):
        raise InvalidArgument(
            f"z={z!r} is invalid; every z must be a finite complex number (R(∞): "
            "tableau_amplification(solver, np.inf))"
        )
    h = require_positive("h", h)
    warn_if_float32("amplification")
    solver, field = _solvers.get(solver), _linear if field is None else field
    lam = z.ravel() / h
    if lam.size == 0:
        return z.copy()
    out = _padded(
        lambda chunk: _amplify(solver, field, chunk, jnp.asarray(h)),
        np.stack([lam.real, lam.imag], axis=-1),
    )
    return (out[:, 0] + 1j * out[:, 1]).reshape(z.shape)


#: (A, b) of the one-stage methods diffrax implements without a ButcherTableau.
_ONE_STAGE = {
    "Euler": (np.zeros((1, 1)), np.ones(1)),
    "ImplicitEuler": (np.ones((1, 1)), np.ones(1)),
}


def _tableau(solver) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of the solver's Butcher tableau; InvalidArgument if it has none."""
    meta = _solvers.info(solver)
    tab = meta.tableau
    if meta.name in _ONE_STAGE:
        return _ONE_STAGE[meta.name]
    if tab is None:
        raise InvalidArgument(
            f"solver={meta.name!r} has no Butcher tableau; use amplification() instead"
        )
    b = np.asarray(tab.b_sol, dtype=float)
    a = np.zeros((len(b), len(b)))
    for i, row in enumerate(tab.a_lower):
        a[i + 1, : i + 1] = row
    if tab.a_diagonal is not None:
        a[np.diag_indices(len(b))] = tab.a_diagonal
    return a, b


def _far_form(a, b):
    """R(z) for |z| > 1 in terms of w = 1/z, free of the cancellation in 1 + z·bᵀ(I - zA)⁻¹1.

    Stages whose row of A is zero are Y = y exactly (E); with I the others, v = A_IE·1 and
    A_II invertible, z(I - zA_II)⁻¹ = (wI - A_II)⁻¹ and (wI - M)⁻¹ + M⁻¹ = w(wI - M)⁻¹M⁻¹ give
        R(z) = 1 + b_Iᵀ(wI - A_II)⁻¹(1 + A_II⁻¹v) + z·c₀,   c₀ = Σb_E - b_IᵀA_II⁻¹v,
    so R(∞) = 1 - b_IᵀA_II⁻¹(1 + A_II⁻¹v) (1 - bᵀA⁻¹1 when no row is zero) if c₀ = 0, else ∞.
    Returns (a_ii, b_i, u = 1 + A_II⁻¹v, c₀), or None where A_II is singular (explicit methods:
    R is a polynomial, the direct formula is fine).
    """
    explicit = np.all(a == 0, axis=1)
    inner = ~explicit
    a_ii = a[np.ix_(inner, inner)]
    if not inner.any() or abs(np.linalg.det(a_ii)) < 1e-12:
        return None
    v = a[np.ix_(inner, explicit)].sum(axis=1)
    x = np.linalg.solve(a_ii, v)
    c0 = b[explicit].sum() - b[inner] @ x
    # c₀ is 0 in exact arithmetic for stiffly accurate methods; a float tableau leaves rounding
    if abs(c0) <= 64 * np.finfo(float).eps * (np.abs(b).sum() + np.abs(b[inner]) @ np.abs(x)):
        c0 = 0.0
    return a_ii, b[inner], 1 + x, c0


def tableau_amplification(solver, z) -> np.ndarray:
    """R(z) = 1 + z bᵀ(I - zA)⁻¹1 from the solver's Butcher tableau (explicit or diagonally
    implicit Runge–Kutta); InvalidArgument for a solver without a tableau.

    For |z| > 1 an implicit method's R is evaluated in 1/z (see `_far_form`), so it stays
    accurate (to about 1e-15 absolutely) as |z| → ∞, and an infinite z gives R(∞) (0 for an
    L-stable method; 1 - bᵀA⁻¹1 when A is invertible); an explicit method's R(∞) is inf.

    Examples:
        >>> tableau_amplification("Euler", -2.0)
        array(-1.+0.j)
        >>> abs(tableau_amplification("ImplicitEuler", [-3.0, np.inf])).tolist()  # 1/(1 - z)
        [0.25, 0.0]
        >>> float(abs(tableau_amplification("Euler", np.inf)))      # a polynomial: unbounded
        inf
    """
    a, b = _tableau(solver)
    s = len(b)
    z = np.asarray(z, dtype=complex)
    out = np.empty(z.shape, dtype=complex)
    infinite = ~np.isfinite(z)
    far_form = _far_form(a, b)
    far = np.zeros(z.shape, dtype=bool) if far_form is None else (np.abs(z) > 1) | infinite
    near = ~far & ~infinite
    if near.any():
        zn = z[near]
        m = np.eye(s) - zn[..., None, None] * a
        ones = np.broadcast_to(np.ones(s, dtype=complex), (*zn.shape, s))[..., None]
        with np.errstate(over="ignore", invalid="ignore"):
            out[near] = 1 + zn * (np.linalg.solve(m, ones)[..., 0] @ b)
    if far_form is not None and far.any():
        a_ii, b_i, u, c0 = far_form
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(infinite[far], 0.0, 1 / np.where(infinite[far], 1.0, z[far]))
        m = w[..., None, None] * np.eye(len(b_i)) - a_ii
        rhs = np.broadcast_to(u.astype(complex), (*w.shape, len(b_i)))[..., None]
        r = 1 + np.linalg.solve(m, rhs)[..., 0] @ b_i
        if c0 != 0.0:
            with np.errstate(invalid="ignore"):
                r = np.where(infinite[far], complex(np.inf), r + z[far] * c0)
        out[far] = r
    if far_form is None and infinite.any():
        out[infinite] = np.inf  # a polynomial of degree ≥ 1
    return out


#: How each cause of an ended stretch is reported (StabilityBound.status).
_UNSTABLE, _UNKNOWN, _LOST = "unstable", "unknown", "branch_lost"


def _bracket(excess, cause, grid):
    """(index of the last decidedly stable grid point before the first bad one or None,
    index of the first bad one or None). A point is bad if excess > ROUND_OFF or its cause is
    not None (non-finite, branch lost); decidedly stable if excess < -ROUND_OFF: near z = 0 a
    consistent method has |R| = 1 + O(|z|^{p+1}), within round-off of 1, which decides nothing."""
    bad = np.array([c is not None for c in cause]) | (np.nan_to_num(excess, nan=0.0) > ROUND_OFF)
    if not bad.any():
        return None, None
    first = int(np.argmax(bad))
    decided = np.flatnonzero(excess[:first] < -ROUND_OFF)
    return (int(decided[-1]) if decided.size else None), first


def _bisect(probe, lo, hi, hi_cause, tol, geometric):
    """Bisect [lo, hi] (lo good, hi bad for `hi_cause`) to tol (relative if geometric);
    probe(x) -> (excess, cause) with cause None when finite. Returns (x*, cause at the end)."""
    while hi - lo > (tol * hi if geometric else tol):
        mid = math.sqrt(lo * hi) if geometric else 0.5 * (lo + hi)
        d, cause = probe(mid)
        if cause is not None or d > ROUND_OFF:
            hi, hi_cause = mid, cause or _UNSTABLE
        else:
            lo = mid
    return (math.sqrt(lo * hi) if geometric else 0.5 * (lo + hi)), hi_cause


def _causes(excess):
    return [None if np.isfinite(d) else _UNKNOWN for d in excess]


def _boundary(excess, grid, tol, *, geometric=False, what="x") -> StabilityBound:
    """The end of the stable stretch [grid[0], x*) where excess(x) ≤ 0, bisected to tol.

    `excess` is vectorised: |R| - 1 or max |multiplier| - 1; NaN (a non-finite evaluation) is
    "unknown" and ends the stretch like instability does, with status "unknown". Bracketing:
    the first grid point that is unstable (excess > ROUND_OFF) or unknown ends the stretch; the
    stretch before it counts only if some point there is decidedly stable (excess < -ROUND_OFF).
    So the result is 0 if no point before the first bad one is decidedly stable, inf (status
    "stable") if no grid point is bad. Bisection treats |excess| ≤ ROUND_OFF as stable. With
    geometric=True the bisection is in log x and tol is relative. `what` names x in the reason.
    """
    d = np.asarray(excess(grid), dtype=float)
    lo_i, first = _bracket(d, _causes(d), grid)
    if first is None:
        return StabilityBound(
            math.inf, "stable", f"stable at every {what} probed, up to {grid[-1]:g}"
        )
    cause = _causes(d[first : first + 1])[0] or _UNSTABLE
    if lo_i is None:
        return StabilityBound(0.0, cause, _reason(cause, what, float(grid[first]), at_start=True))

    def probe(x):
        value = float(np.asarray(excess(np.array([x])), dtype=float)[0])
        return value, (None if math.isfinite(value) else _UNKNOWN)

    x, cause = _bisect(probe, float(grid[lo_i]), float(grid[first]), cause, tol, geometric)
    return StabilityBound(x, cause, _reason(cause, what, x))


def _reason(cause, what, x, *, at_start=False, detail=""):
    where = f"{what} = {x:.6g}" + (" (no decidedly stable point before it)" if at_start else "")
    text = {
        _UNSTABLE: f"unstable beyond {where}: "
        + ("a multiplier leaves the unit disk" if what == "h" else "|R(z)| > 1"),
        _UNKNOWN: f"unknown beyond {where}: an evaluation there is not finite",
        _LOST: f"branch lost at {where}: the fixed point followed from y_star is gone",
    }[cause]
    return text + (f" ({detail})" if detail else "")


def _interval(solver, direction, x_max, spacing, field, h) -> StabilityBound:
    require_positive("x_max", x_max)
    require_positive("spacing", spacing)
    _solvers.get(solver)
    grid = np.linspace(0.0, x_max, int(round(x_max / spacing)) + 1)
    axis = "x (z = -x)" if direction == -1.0 else "y (z = iy)"
    return _boundary(
        lambda x: np.abs(amplification(solver, direction * x, field=field, h=h)) - 1,
        grid,
        1e-6,
        what=axis,
    )


def real_interval(solver, *, x_max=20.0, spacing=0.01, field=None, h=1.0) -> StabilityBound:
    """The real stability interval: the largest r with |R(-x)| ≤ 1 for all x in [0, r].

    Bracketed on a grid of `spacing` over [0, x_max], then bisected to 1e-6 (see `_boundary`
    for how round-off near z = 0 is treated). inf means stable on the whole of [0, x_max], as
    for A-stable methods. A non-finite R (a field that turns NaN) ends the interval there, with
    status "unknown": never inf. `field`, `h`: as in `amplification` (an effective region).
    Returns a `StabilityBound`: a float with `.status` and `.reason`.

    Examples:
        >>> round(real_interval("Euler"), 5), round(real_interval("Bosh3"), 5)  # 1+z+z²/2+z³/6
        (2.0, 2.51275)
        >>> real_interval("Kvaerno5").status                  # A-stable: inf
        'stable'
    """
    return _interval(solver, -1.0, x_max, spacing, field, h)


def imag_interval(solver, *, x_max=20.0, spacing=0.01, field=None, h=1.0) -> StabilityBound:
    """The imaginary stability interval: the largest r with |R(iy)| ≤ 1 for all y in [0, r].

    0 when the method is unstable on the imaginary axis arbitrarily close to 0 (Euler, Heun);
    otherwise as `real_interval`.

    Examples:
        >>> round(imag_interval("Bosh3"), 5)   # √3 for every 3-stage third-order method
        1.73205
    """
    return _interval(solver, 1j, x_max, spacing, field, h)


# ------------------------------------------------------------------- fixed points of Φ_h^k


def _flat(system):
    """The shape states are given in, and their number of components d.

    An array state keeps its shape. A PyTree state (a dict, a tuple of arrays) is a flat vector
    of d components, in the order of `jax.flatten_util.ravel_pytree`: fixed points, their
    Jacobians and orbits are computed on that vector.
    """
    if system.y0 is None:
        raise InvalidArgument(
            f"system={system.name!r} has no y0; the stability analyses need its state's shape: "
            "build it with a y0"
        )
    d = int(ravel_pytree(system.y0)[0].size)
    if jax.tree_util.treedef_is_leaf(jax.tree.structure(system.y0)):
        return np.shape(system.y0), d
    return (d,), d


def _check_system_and_solver(system, solver):
    system = _systems.get(system)
    _solvers.get(solver)
    warn_if_float32("stability analysis")
    return system


def _check_int(name, value, minimum):
    try:
        value = operator.index(value)
    except TypeError:
        raise InvalidArgument(f"{name}={value!r} is invalid; it must be an integer") from None
    if value < minimum:
        raise InvalidArgument(f"{name}={value!r} is invalid; it must be ≥ {minimum}")
    return value


def _check_hs(hs):
    arr = np.atleast_1d(np.asarray(hs, dtype=float))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InvalidArgument(f"hs={hs!r} is invalid; it must be a non-empty list of finite h > 0")
    return arr


def _check_bounds(bounds, d):
    b = np.asarray(bounds, dtype=float)
    if b.shape == (2,):
        b = np.broadcast_to(b, (d, 2))
    if b.shape != (d, 2) or not np.all(np.isfinite(b)) or np.any(b[:, 0] >= b[:, 1]):
        raise InvalidArgument(
            f"bounds={bounds!r} is invalid; it must be (lo, hi) with lo < hi, or one such pair "
            f"per component ({d} components)"
        )
    return b


def _phi(prepared: Prepared, y, h, t0):
    """Φ_h on flat states (`ravel_pytree` of the system's state), with the system's args."""
    return _flat_field(prepared.system, lambda state: _step(prepared, state, h, t0))(y)


def _flat_field(system, fn):
    """state -> state `fn` as a function of flat vectors (`ravel_pytree` of the system's y0)."""
    _, unravel = ravel_pytree(system.y0)
    return lambda y: ravel_pytree(fn(unravel(y)))[0]


@eqx.filter_jit
def _fixed_point_solves(prepared: Prepared, starts, hs, period: int, iterations: int):
    """Newton on Φ_h^period(y) = y from every start, for every h (vmapped over both): the
    points, their orbits, DΦ_h^period there, and the limit and frozen fields with Jacobians."""
    system = prepared.system
    t0 = jnp.asarray(system.t0, dtype=jnp.result_type(float))
    d = starts.shape[-1]

    def phi_k(y, h):
        return jax.lax.fori_loop(0, period, lambda _, yy: _phi(prepared, yy, h, t0), y)

    def solve(y, h):
        def newton(_, y):
            jac = jax.jacfwd(phi_k)(y, h) - jnp.eye(d)
            return y - jnp.linalg.solve(jac, phi_k(y, h) - y)

        y = jax.lax.fori_loop(0, iterations, newton, y)
        orbit = jax.lax.scan(lambda yy, _: (_phi(prepared, yy, h, t0),) * 2, y, length=period)[1]
        limit = _flat_field(system, lambda state: system.limit_field(t0, state, system.args))
        # the field at this h, as an ODE in y: f(t0, ·, args, h)
        frozen = _flat_field(system, lambda state: system.vector_field(t0, state, system.args, h))
        fields = jnp.stack([limit(y), frozen(y)])
        field_jacs = jnp.stack([jax.jacfwd(limit)(y), jax.jacfwd(frozen)(y)])
        return y, orbit, jax.jacfwd(phi_k)(y, h), fields, field_jacs

    return jax.vmap(jax.vmap(solve, in_axes=(0, None)), in_axes=(None, 0))(starts, hs)


def _starts(bounds, n_starts, seed):
    d = bounds.shape[0]
    if d == 1:
        return np.linspace(bounds[0, 0], bounds[0, 1], n_starts)[:, None]
    rng = np.random.default_rng(seed)
    return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * rng.random((n_starts, d))


def _fixed_point_rows(
    system, solver_name, h, period, bounds, y, orbit, jac, field, field_jac
) -> list:
    """Filter Newton results (converged, in the box), deduplicate, classify; one dict per point."""
    scale = np.maximum(1.0, np.abs(y).max(axis=1))
    residual = np.abs(orbit[:, -1] - y).max(axis=1)
    slack = 1e-9 * np.maximum(1.0, np.abs(bounds))
    ok = (
        np.isfinite(residual)
        & (residual <= FIXED_POINT_TOL * scale)
        & np.all(y >= bounds[:, 0] - slack[:, 0], axis=1)
        & np.all(y <= bounds[:, 1] + slack[:, 1], axis=1)
    )
    d = y.shape[1]
    # How far a converged point can be from the true one: residual / σ_min(DΦ^k - I) (the
    # linearised Newton error). Near a bifurcation DΦ^k - I is singular and Newton stalls far
    # from the point (a root of multiplicity m is found only to ~eps^(1/m)): results within
    # each other's uncertainty are one point.
    sigma = np.full(len(y), np.nan)
    if ok.any():
        sigma[ok] = np.linalg.svd(jac[ok].reshape(-1, d, d) - np.eye(d), compute_uv=False)[:, -1]
    # The residual is known to rounding, eps·|y|; a root of multiplicity m lies about
    # m·residual/σ away: 3 covers folds and pitchforks.
    r = np.maximum(residual, np.finfo(y.dtype).eps * np.abs(y).max(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        uncertainty = np.where(r > 0, 3 * r / sigma, 0.0)
    kept: list[int] = []  # the most accurate point of each cluster, then in order of position
    for i in np.flatnonzero(ok)[np.argsort(uncertainty[ok], kind="stable")]:
        if all(
            np.abs(y[i] - y[j]).max() > max(1e-7 * scale[i], uncertainty[i] + uncertainty[j])
            for j in kept
        ):
            kept.append(i)
    kept = [kept[k] for k in np.lexsort(y[kept].T[::-1])] if kept else []
    # |f| beyond what the position's uncertainty allows: not a zero of f (limit, frozen)
    off = np.abs(field).max(axis=2) > (
        SPURIOUS_TOL + np.abs(field_jac).sum(axis=3).max(axis=2) * uncertainty[:, None]
    )
    rows = []
    for i in kept:
        mult = np.linalg.eigvals(jac[i].reshape(d, d))
        mult = mult[np.argsort(-np.abs(mult), kind="stable")]
        back = np.abs(orbit[i] - y[i]).max(axis=1) <= FIXED_POINT_TOL * scale[i]
        row = {"system": system.name, "solver": solver_name, "h": h, "period": period}
        row |= {"y": y[i, 0]} if d == 1 else {f"y{k}": y[i, k] for k in range(d)}
        row |= {
            "minimal_period": int(np.argmax(back)) + 1,
            "residual": residual[i],
            "max_abs_multiplier": float(np.abs(mult).max()),
            "stable": bool(np.abs(mult).max() < 1),
            "uncertainty": float(uncertainty[i]),
            "kind": _KINDS[0] if not off[i, 0] else _KINDS[1] if not off[i, 1] else _KINDS[2],
        }
        row["spurious"] = row["kind"] == _KINDS[2]
        row |= {f"multiplier_{k}": complex(m) for k, m in enumerate(mult)}
        rows.append(row)
    return rows


def fixed_point_branches(
    system, solver, hs, bounds, *, period=1, n_starts=64, iterations=60, seed=0
) -> pd.DataFrame:
    """The fixed points of Φ_h^period in the box `bounds`, for every h in `hs` (one compile).

    Newton's method on Φ_h^k(y) - y from `n_starts` starts (a uniform grid for scalar systems,
    seeded uniform samples otherwise), `iterations` steps each; a result is kept when
    |Φ_h^k(y) - y| ≤ 1e-10·max(1, |y|) and it lies in the box. Each result has an uncertainty
    δ = 3·residual/σ_min(DΦ_h^k - I) (the linearised Newton error, times 3 because a root of
    multiplicity m lies about m·residual/σ away: at a fold or pitchfork DΦ_h^k - I is singular and
    Newton stalls ~eps^(1/m) from the point); results closer than δ_i + δ_j (or 1e-7) are one
    point, reported by its most accurate member. Columns: system, solver, h, period, y (or y0,
    y1, ...), minimal_period (the least m with Φ_h^m(y) = y), residual, max_abs_multiplier,
    stable (every eigenvalue of DΦ_h^k inside the unit circle), uncertainty (δ), kind, spurious
    (kind == "spurious"), multiplier_0, multiplier_1, ... (complex, by decreasing modulus).
    `kind` says where the point comes from, a field "vanishing" there meaning |f| ≤ 1e-8 + |Df|·δ:
    "equilibrium" (the h → 0 field f(t0, ·, args, 0) vanishes: an equilibrium of the limit ODE);
    "model" (only the frozen field f(t0, ·, args, h) at this h vanishes: an equilibrium of the
    step-dependent model that moved with h, not the solver's doing); "spurious" (neither: the
    solver created it). For an h-free field the first two coincide, so there are no "model"
    points. `bounds` is (lo, hi) or one (lo, hi) per component. Autonomous use: Φ_h steps from
    t0 (the frozen field is taken at t0 too).

    Examples:
        >>> df = fixed_point_branches("logistic", "Heun", [1.0, 3.0], (-1, 3))
        >>> df[df.spurious].y.round(4).tolist()         # ((h+2) ± √(h²-4))/(2h) at h = 3
        [0.4607, 1.206]

        A step-dependent model y' = -(y - h): Euler's fixed point y* = h is the model's own
        equilibrium at this h, not one of the limit y' = -y and not the solver's doing.

        >>> from analysis.systems import System
        >>> model = System(name="moving", vector_field=lambda t, y, a, h: -(y - h), y0=1.0)
        >>> fixed_point_branches(model, "Euler", [0.5], (-1, 2))[["y", "kind"]].values.tolist()
        [[0.5, 'model']]
    """
    system = _check_system_and_solver(system, solver)
    hs = _check_hs(hs)
    period = _check_int("period", period, 1)
    n_starts = _check_int("n_starts", n_starts, 1)
    iterations = _check_int("iterations", iterations, 1)
    _, d = _flat(system)
    box = _check_bounds(bounds, d)
    y, orbit, jac, field, field_jac = (
        np.asarray(a)
        for a in _fixed_point_solves(
            _prepared(system, solver),
            jnp.asarray(_starts(box, n_starts, seed)),
            jnp.asarray(hs),
            period,
            iterations,
        )
    )
    name = _solvers.name_of(solver)
    rows = []
    for i, h in enumerate(hs):
        rows += _fixed_point_rows(
            system, name, float(h), period, box, y[i], orbit[i], jac[i], field[i], field_jac[i]
        )
    columns = ["system", "solver", "h", "period"] + (
        ["y"] if d == 1 else [f"y{k}" for k in range(d)]
    )
    columns += ["minimal_period", "residual", "max_abs_multiplier", "stable", "uncertainty"]
    columns += ["spurious", "kind"]
    columns += [f"multiplier_{k}" for k in range(d)]
    return pd.DataFrame(rows, columns=columns)


def fixed_points(system, solver, h, bounds, **options) -> pd.DataFrame:
    """All fixed points of Φ_h (period=k: of Φ_h^k) in the box `bounds`; one row per point.

    Options and columns as in `fixed_point_branches` (`kind`: "equilibrium" of the h → 0
    field, "model" equilibrium that moved with h, or solver-"spurious").

    Examples:
        >>> fixed_points("logistic", "Euler", 0.5, (-1, 2)).y.round(9).tolist()  # equilibria only
        [0.0, 1.0]
        >>> df = fixed_points("logistic", "Heun", 3.0, (-1, 3))  # h > 2: ((h+2) ± √(h²-4))/(2h)
        >>> df[["y", "spurious"]].round(4).values.tolist()     # are spurious fixed points too
        [[0.0, False], [0.4607, True], [1.0, False], [1.206, True]]
        >>> df.kind.tolist()
        ['equilibrium', 'spurious', 'equilibrium', 'spurious']
    """
    return fixed_point_branches(system, solver, [require_positive("h", h)], bounds, **options)


# -------------------------------------------------------------------------- orbit diagrams


#: The Lyapunov average is split into this many blocks; their spread gives its uncertainty.
LYAPUNOV_BLOCKS = 20


@eqx.filter_jit
def _orbits(prepared: Prepared, starts, hs, escape_radius, n_transient: int, n_keep: int, block):
    """Every start iterated under Φ_h for every h (vmapped over both): the kept iterates (NaN
    for an orbit that escaped), the iterate each orbit escaped at (-1: never) and the Lyapunov
    block means."""
    t0 = jnp.asarray(prepared.system.t0, dtype=jnp.result_type(float))
    d = starts.shape[-1]

    def advance(carry, h):
        y, v, escaped_at, n = carry
        y1, v1 = jax.jvp(lambda yy: _phi(prepared, yy, h, t0), (y,), (v,))
        grow = jnp.linalg.norm(v1)
        bad = ~jnp.all(jnp.isfinite(y1)) | (jnp.max(jnp.abs(y1)) > escape_radius)
        escaped_at = jnp.where((escaped_at < 0) & bad, n + 1, escaped_at)
        alive = escaped_at < 0
        y = jnp.where(alive, y1, y)
        v = jnp.where(alive, v1 / grow, v)
        return (y, v, escaped_at, n + 1), (y, jnp.log(grow))

    def run(y0, h):
        step = lambda c, _: advance(c, h)  # noqa: E731
        carry = (y0, jnp.ones(d) / math.sqrt(d), jnp.asarray(-1), jnp.asarray(0))
        carry = jax.lax.fori_loop(0, n_transient, lambda _, c: step(c, None)[0], carry)
        carry, (ys, logs) = jax.lax.scan(step, carry, length=n_keep)
        # The exponent: LYAPUNOV_BLOCKS blocks of `block` iterates from the end of the
        # transient on, the kept ones first; the block means give its standard error.
        sums = jnp.zeros(LYAPUNOV_BLOCKS).at[jnp.arange(n_keep) // block].add(logs)

        def tail(i, state):
            c, s = state
            c, (_, log) = step(c, None)
            return c, s.at[i // block].add(log)

        carry, sums = jax.lax.fori_loop(n_keep, LYAPUNOV_BLOCKS * block, tail, (carry, sums))
        return jnp.where(carry[2] >= 0, jnp.nan, ys), carry[2], sums / block

    return jax.vmap(jax.vmap(run, in_axes=(0, None)), in_axes=(None, 0))(starts, hs)


def orbit_bytes(d: int, n_keep: int, n_orbits: int) -> int:
    """Estimated peak memory of `orbit_diagram` keeping `n_keep` iterates of `n_orbits` orbits.

    Per kept iterate of a d-dimensional orbit: the compiled scan's stacked iterates and log
    stretches (8·(d + 1) bytes) and the masked iterates it returns (8·d), a quarter added:
    (20·d + 10) bytes, 30 for a scalar map (measured: the logistic map's peak memory grows by
    24.4 bytes per kept iterate at 20 orbits × 4·10⁶). `OrbitDiagram.to_frame` needs about
    100 bytes more per kept iterate (the tidy table; measured 104 at 12.8·10⁶ rows), on demand.

    Examples:
        >>> orbit_bytes(1, 100, 10)
        30000
    """
    return int(n_orbits) * int(n_keep) * (20 * int(d) + 10)


@dataclasses.dataclass(frozen=True, repr=False)
class OrbitDiagram(Result):
    """The orbits of `orbit_diagram` as arrays: n_h step sizes × n_s starts × n_keep iterates.

    Attributes:
        system, solver: the names (provenance, as in the tidy rows).
        h: the step sizes, shape (n_h,).
        y0s: the starts, one flat state per row, shape (n_s, d) (components as `components`).
        ys: the kept iterates y_n, n = n_transient + 1, ..., n_transient + n_keep, shape
            (n_h, n_s, n_keep, d); all NaN for an orbit that escaped.
        escaped_at: the iterate n at which each orbit left |y| ≤ escape_radius or turned
            non-finite, -1 if it never did, shape (n_h, n_s).
        lyapunov, lyapunov_se: the largest Lyapunov exponent of each orbit and its standard
            error, shape (n_h, n_s); NaN where escaped.
        n_transient: the iterates discarded before the kept ones.

    `escaped` is escaped_at ≥ 0. `to_frame()` is the tidy view: one row per kept iterate (one
    per escaped orbit), see `orbit_diagram`. `tables()` holds the same as two tables, one row
    per orbit and one per kept iterate (numbers only), and `from_tables` reads them back.

    Examples:
        >>> od = orbit_diagram("logistic", "Euler", [0.5, 3.2], [0.3], n_keep=2)
        >>> od.ys.shape, od.escaped.tolist()        # μ = 1 + h = 4.2 > 4: the orbit escapes
        ((2, 1, 2, 1), [[False], [True]])
        >>> od.ys[0, 0, :, 0].round(9).tolist(), round(float(od.lyapunov[0, 0]), 6)  # ln|1 - h|
        ([1.0, 1.0], -0.693147)
        >>> len(od.to_frame())                      # 2 kept iterates, 1 row for the escape
        3
    """

    system: str
    solver: str
    h: np.ndarray
    y0s: np.ndarray
    ys: np.ndarray
    escaped_at: np.ndarray
    lyapunov: np.ndarray
    lyapunov_se: np.ndarray
    n_transient: int

    @property
    def escaped(self) -> np.ndarray:
        """Whether each orbit escaped, shape (n_h, n_s)."""
        return self.escaped_at >= 0

    @property
    def n_keep(self) -> int:
        return self.ys.shape[2]

    @property
    def components(self) -> tuple[str, ...]:
        """The state columns of the tidy rows: ("y",) for a scalar state, else y0, y1, ..."""
        d = self.ys.shape[3]
        return ("y",) if d == 1 else tuple(f"y{k}" for k in range(d))

    def component(self, name: str) -> np.ndarray:
        """The kept iterates of state column `name` (see `components`), shape (n_h, n_s, n_keep).

        Examples:
            >>> orbit_diagram("logistic", "Euler", [0.5], [0.3], n_keep=1).component("y")
            array([[[1.]]])
        """
        if name not in self.components:
            raise InvalidArgument(
                f"component={name!r} is invalid; the state columns are {list(self.components)}"
            )
        return self.ys[..., self.components.index(name)]

    def to_frame(self) -> pd.DataFrame:
        """The tidy rows: columns system, solver, h, start, iterate, y (or y0, y1, ...),
        escaped, lyapunov, lyapunov_se; one row per kept iterate, ordered by h, start and
        iterate; an escaped orbit is one row with y = NaN and iterate = escaped_at."""
        n_h, n_s, n_keep, d = self.ys.shape
        escaped = self.escaped.ravel()

        # np.repeat and np.tile as broadcast views copied once: an order of magnitude faster
        def per_row(per_orbit):  # each orbit's value on its n_keep rows
            return np.broadcast_to(per_orbit.reshape(-1, 1), (per_orbit.size, n_keep)).ravel()

        def per_orbit(per_iterate):  # the same n_keep values on every orbit
            return np.broadcast_to(per_iterate, (n_h * n_s, n_keep)).ravel()

        h = per_row(np.broadcast_to(self.h[:, None], (n_h, n_s)))
        start = per_row(np.broadcast_to(np.arange(n_s), (n_h, n_s)))
        iterate = per_orbit(np.arange(self.n_transient + 1, self.n_transient + 1 + n_keep))
        values = self.ys.reshape(-1, d)
        esc = per_row(escaped)
        lyap, lyap_se = per_row(self.lyapunov), per_row(self.lyapunov_se)
        if escaped.any():  # an escaped orbit keeps its first row, at the iterate it left
            rows = ~esc | per_orbit(np.arange(n_keep) == 0)
            h, start, iterate, values = h[rows], start[rows], iterate[rows], values[rows]
            esc, lyap, lyap_se = esc[rows], lyap[rows], lyap_se[rows]
            iterate[esc] = self.escaped_at.ravel()[escaped]
        df = pd.DataFrame(
            {
                "system": self.system,
                "solver": self.solver,
                "h": h,
                "start": start,
                "iterate": iterate,
            }
        )
        for k, name in enumerate(self.components):
            df[name] = values[:, k]
        df["escaped"] = esc
        df["lyapunov"] = lyap
        df["lyapunov_se"] = lyap_se
        return df

    def tables(self) -> dict[str, pd.DataFrame]:
        """ "orbits": one row per (h, start) (system, solver, h, start, its state start_y...,
        escaped_at, lyapunov, lyapunov_se, n_transient); "iterates": the kept iterates, one
        column per state component, ordered by h, start and iterate."""
        n_h, n_s, n_keep, _ = self.ys.shape
        orbits = pd.DataFrame(
            {
                "system": self.system,
                "solver": self.solver,
                "h": np.repeat(self.h, n_s),
                "start": np.tile(np.arange(n_s), n_h),
            }
        )
        for k, name in enumerate(self.components):
            orbits[f"start_{name}"] = np.tile(self.y0s[:, k], n_h)
        orbits["escaped_at"] = self.escaped_at.ravel()
        orbits["lyapunov"] = self.lyapunov.ravel()
        orbits["lyapunov_se"] = self.lyapunov_se.ravel()
        orbits["n_transient"] = self.n_transient
        values = self.ys.reshape(-1, self.ys.shape[3])
        iterates = pd.DataFrame({name: values[:, k] for k, name in enumerate(self.components)})
        return {"orbits": orbits, "iterates": iterates}

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame]) -> OrbitDiagram:
        """The result from its `tables()`."""
        missing = [n for n in ("orbits", "iterates") if n not in tables]
        if missing:
            raise InvalidArgument(
                f"tables={sorted(tables)} lacks {missing} for OrbitDiagram; it needs "
                "['orbits', 'iterates']"
            )
        orbits, iterates = tables["orbits"], tables["iterates"]
        n_s = int(orbits["start"].max()) + 1
        n_h, d = len(orbits) // n_s, iterates.shape[1]
        n_keep = len(iterates) // len(orbits)
        names = ("y",) if d == 1 else tuple(f"y{k}" for k in range(d))
        grid = lambda column: orbits[column].to_numpy().reshape(n_h, n_s)  # noqa: E731
        return cls(
            system=str(orbits["system"].iloc[0]),
            solver=str(orbits["solver"].iloc[0]),
            h=orbits["h"].to_numpy()[::n_s].copy(),
            y0s=orbits[[f"start_{n}" for n in names]].to_numpy()[:n_s].copy(),
            ys=iterates[list(names)].to_numpy().reshape(n_h, n_s, n_keep, d),
            escaped_at=grid("escaped_at"),
            lyapunov=grid("lyapunov"),
            lyapunov_se=grid("lyapunov_se"),
            n_transient=int(orbits["n_transient"].iloc[0]),
        )

    def __repr__(self) -> str:
        n_h, n_s, n_keep, d = self.ys.shape
        return (
            f"OrbitDiagram({self.system}, {self.solver}: {n_h} h × {n_s} start(s) × {n_keep} "
            f"kept iterate(s) of {d} component(s), {int(self.escaped.sum())} escaped)"
        )

    def _repr_html_(self) -> str:
        return f"<pre>{self!r}</pre>"


def orbit_diagram(
    system,
    solver,
    hs,
    y0s=None,
    *,
    n_transient=500,
    n_keep=100,
    escape_radius=1e6,
    n_lyapunov=50_000,
) -> OrbitDiagram:
    """Iterate Φ_h from each start in `y0s` for each h in `hs` (vmapped, one compile).

    The first `n_transient` iterates are discarded and the next `n_keep` kept: the attractor.
    An orbit that leaves |y| ≤ escape_radius (or turns non-finite) at any iterate, the
    Lyapunov stretch included, has escaped: its kept iterates are NaN and `escaped_at` is the
    step at which it left. Returns an `OrbitDiagram` of arrays (iterates of shape
    (n_h, n_s, n_keep, d)); its `to_frame()` is the tidy view, one row per kept iterate (an
    escaped orbit: one row with y = NaN, escaped = True and `iterate` the step it left at),
    columns system, solver, h, start (index into y0s), iterate (n of y_n), y (or y0, y1, ...),
    escaped, lyapunov, lyapunov_se.

    lyapunov is the largest Lyapunov exponent of the orbit: the mean of log |DΦ_h v| over the
    max(n_keep, n_lyapunov) iterates after the transient (rounded up to a multiple of 20), with
    v the unit tangent vector carried along since the start (< 0 on a stable periodic orbit,
    > 0 on a chaotic one, NaN if escaped); `np.nanmax(od.lyapunov, axis=1)` is per h.
    lyapunov_se is its standard error from 20 block means (std/√20; blocks much longer than
    the orbit's correlation time, so they are near independent). The default n_lyapunov =
    50,000 puts the logistic map's exponents within 1 % of ln 2 (μ = 4) and 0.4960 (μ = 3.9):
    the error falls like 1/√n_lyapunov, and at n = 100 it is several percent. `y0s` defaults
    to the system's y0. A call whose kept iterates would need more than half the free memory
    (`orbit_bytes`) is refused with InvalidArgument before anything compiles.

    Examples:
        >>> od = orbit_diagram("logistic", "Euler", [1.5, 2.2], [0.3], n_keep=2)
        >>> [len(np.unique(od.ys[i])) for i in range(2)]   # a fixed point, then a 2-cycle
        [1, 2]
        >>> chaos = orbit_diagram("logistic", "Euler", [3.0], [0.3], n_keep=1)  # μ = 1 + h = 4
        >>> bool(abs(chaos.lyapunov[0, 0] - np.log(2)) < 3 * chaos.lyapunov_se[0, 0] + 1e-3)
        True
    """
    system = _check_system_and_solver(system, solver)
    hs = _check_hs(hs)
    n_transient = _check_int("n_transient", n_transient, 0)
    n_keep = _check_int("n_keep", n_keep, 1)
    n_lyapunov = _check_int("n_lyapunov", n_lyapunov, 1)
    if not (np.isfinite(escape_radius) and escape_radius > 0):
        raise InvalidArgument(f"escape_radius={escape_radius!r} is invalid; it must be > 0")
    shape, d = _flat(system)
    starts = np.asarray([system.y0] if y0s is None else y0s, dtype=float)
    if starts.ndim == len(shape):
        starts = starts[None]
    if starts.shape[1:] != shape or starts.shape[0] == 0 or not np.all(np.isfinite(starts)):
        raise InvalidArgument(
            f"y0s={y0s!r} is invalid; it must be a non-empty list of finite states of shape "
            f"{shape} (the shape of {system.name}'s y0)"
        )
    # Refused before compiling, like a sweep chunk: at most half the free memory.
    need, budget = orbit_bytes(d, n_keep, len(hs) * len(starts)), _sweep._available_bytes() // 2
    if need > budget:
        fits = max(1, n_keep * budget // need)
        raise InvalidArgument(
            f"n_keep={n_keep} needs about {need / 2**30:.3g} GiB for {len(hs)} h × "
            f"{len(starts)} start(s) of system {system.name!r} (estimate, "
            f"analysis.stability.orbit_bytes), more than half the {2 * budget / 2**30:.1f} GiB "
            f"available; use n_keep={fits} or less, or fewer h or starts per call"
        )
    block = -(-max(n_keep, n_lyapunov) // LYAPUNOV_BLOCKS)
    flat_starts = starts.reshape(len(starts), d)
    ys, escaped_at, means = (
        np.asarray(a)
        for a in _orbits(
            _prepared(system, solver),
            jnp.asarray(flat_starts),
            jnp.asarray(hs),
            jnp.asarray(float(escape_radius)),
            n_transient,
            n_keep,
            block,
        )
    )
    escaped = escaped_at >= 0
    lyap = np.where(escaped, np.nan, means.mean(axis=-1))
    lyap_se = np.where(escaped, np.nan, means.std(axis=-1, ddof=1) / math.sqrt(LYAPUNOV_BLOCKS))
    return OrbitDiagram(
        system=system.name,
        solver=_solvers.name_of(solver),
        h=hs,
        y0s=flat_starts,
        ys=ys,
        escaped_at=escaped_at,
        lyapunov=lyap,
        lyapunov_se=lyap_se,
        n_transient=n_transient,
    )


# ------------------------------------------------------------------------ largest stable h

#: Newton iterations per h when following a fixed point (it stops once the step is round-off).
_NEWTON_MAX = 50


@eqx.filter_jit
def _follow(prepared: Prepared, y_prev, h, t0):
    """Newton's fixed point y of Φ_h from y_prev, its residual |Φ_h(y) - y|, DΦ_h(y),
    dy*/dh = (I - DΦ_h)⁻¹ ∂Φ_h/∂h, and whether Φ_h(y_prev) is finite."""
    d = y_prev.shape[-1]
    eye = jnp.eye(d)

    def evaluate(y):
        """Φ_h(y), ∂Φ/∂y, ∂Φ/∂h in one forward pass, differentiated only where Φ_h(y)
        is finite: inside an implicit step a tangent solve raises on non-finite input
        (lineax), where the primal solve reports it."""
        value = _phi(prepared, y, h, t0)

        def derivatives(_):
            f = lambda yh: _phi(prepared, yh[:d], yh[d], t0)  # noqa: E731
            return jax.jacfwd(f)(jnp.concatenate([y, h[None]]))

        jac = jax.lax.cond(
            jnp.all(jnp.isfinite(value)),
            derivatives,
            lambda _: jnp.full((d, d + 1), jnp.nan),
            None,
        )
        return value, jac[:, :d], jac[:, d]

    def cond(state):
        k, y, dy = state
        small = jnp.max(jnp.abs(dy)) <= 4e-16 * jnp.maximum(1.0, jnp.max(jnp.abs(y)))
        return (k < _NEWTON_MAX) & ~small & jnp.all(jnp.isfinite(y))

    def body(state):
        k, y, _ = state
        value, jac, _ = evaluate(y)
        dy = jnp.linalg.solve(jac - eye, value - y)
        return k + 1, y - dy, dy

    start = (jnp.asarray(0), y_prev, jnp.full(d, jnp.inf))
    _, y, _ = jax.lax.while_loop(cond, body, start)
    value, jac, dphi_dh = evaluate(y)
    dy_dh = jnp.linalg.solve(eye - jac, dphi_dh)
    residual = jnp.max(jnp.abs(value - y))
    return y, residual, jac, dy_dh, jnp.all(jnp.isfinite(_phi(prepared, y_prev, h, t0)))


def max_stable_step(
    system,
    solver,
    y_star,
    *,
    h_min=1e-8,
    h_max=100.0,
    n_grid=400,
    rtol=1e-6,
    t=None,
    y_tol=1e-6,
) -> StabilityBound:
    """The largest h for which the fixed point of Φ_h through y_star keeps every multiplier
    (eigenvalue of DΦ_h) in the unit disk.

    For a step-dependent field the fixed point moves with h (y' = -(y - 2h) - (y - 2h)³ under
    Euler: y* = 2h), so it is followed: at each h of `n_grid` geometrically spaced steps in
    [h_min, h_max], Newton's method on Φ_h(y) = y starts from the fixed point at the previous h
    (at h_min from y_star, which must lie within y_tol·max(1, |y_star|) of the fixed point
    found there: an equilibrium of the h → 0 field, or of f(t, ·, h_min); otherwise
    InvalidArgument, never a number for a point that is not a fixed point). The stable stretch
    ends at the first h where a multiplier leaves the unit disk ("unstable"), Φ_h is not finite
    ("unknown"), or the branch is lost ("branch_lost": Newton finds no fixed point with
    |Φ_h(y) - y| ≤ 1e-10·max(1, |y|), or it jumps to another one, farther than twice |dy*/dh|·Δh
    from the last); that end is then bisected in log h to relative `rtol`, following the branch
    from the stable side. 0 if y_star is not decidedly stable even at h_min; inf (status
    "stable") if stable up to h_max (an A-stable method on a stable point). For a non-autonomous
    system Φ_h steps from time `t` (default t0) and y_star is a fixed point of that step
    (Prothero–Robinson at t = 0: the equilibrium 1/k of the field frozen at t = 0).

    Returns a `StabilityBound`: a float with `.status`, `.reason` and `.fixed_point` (the
    followed fixed point at the bound).

    Examples:
        >>> from analysis import systems
        >>> round(max_stable_step(systems.get("linear", lam=10.0), "Euler", 0.0), 6)  # 2/λ
        0.2
        >>> from analysis.systems import System    # y* = 2h moves; DΦ_h(y*) = 1 - h
        >>> moving = System(name="moving", y0=0.0,
        ...                 vector_field=lambda t, y, a, h: -(y - 2*h) - (y - 2*h)**3)
        >>> bound = max_stable_step(moving, "Euler", 0.0)
        >>> round(bound, 5), bound.status, round(float(bound.fixed_point), 4)
        (2.0, 'unstable', 4.0)
    """
    system = _check_system_and_solver(system, solver)
    shape, d = _flat(system)
    y = np.asarray(y_star, dtype=float)
    if y.shape != shape or not np.all(np.isfinite(y)):
        raise InvalidArgument(
            f"y_star={y_star!r} is invalid; it must be a finite state of shape {shape}"
        )
    h_min, h_max = require_positive("h_min", h_min), require_positive("h_max", h_max)
    if h_min >= h_max:
        raise InvalidArgument(f"h_min={h_min!r} must be below h_max={h_max!r}")
    if not 0 < rtol < 1:
        raise InvalidArgument(f"rtol={rtol!r} is invalid; it must be in (0, 1)")
    y_tol = require_positive("y_tol", y_tol)
    grid = np.geomspace(h_min, h_max, _check_int("n_grid", n_grid, 2))
    prepared = _prepared(system, solver)
    t0 = jnp.asarray(system.t0 if t is None else t, dtype=jnp.result_type(float))

    def at(h, prev, depth=0):
        """(excess, cause, detail, point) at h, following the branch from prev = (h, y, y', δ);
        a lost branch is retried through intermediate steps (up to 2⁶ of them) before it counts:
        Newton from too far can land on another fixed point."""
        result = at_once(h, prev)
        if result[1] == _LOST and prev[0] is not None and depth < 6:
            middle = at(math.sqrt(prev[0] * h), prev, depth + 1)
            if middle[1] is None:
                return at(h, middle[3], depth + 1)
        return result

    def at_once(h, prev):
        h_prev, y_prev, slope_prev, delta_prev = prev
        start = y_prev
        if h_prev is not None:  # the tangent predictor y + (dy*/dh)·Δh, where it is finite
            guess = y_prev + slope_prev * (h - h_prev)
            start = guess if np.all(np.isfinite(guess)) else y_prev
        y1, residual, jac, slope, finite = (
            np.asarray(a)
            for a in _follow(prepared, jnp.asarray(start), jnp.asarray(h, dtype=float), t0)
        )
        point = (h, y1, slope, math.inf)
        scale = max(1.0, float(np.abs(y1).max())) if np.all(np.isfinite(y1)) else 1.0
        if not finite:
            detail = "Φ_h is not finite there: the field, or an implicit step's root find, fails"
            return math.nan, _UNKNOWN, detail, point
        if not (np.all(np.isfinite(y1)) and np.isfinite(residual)):
            detail = (
                f"Newton from y = {_show(y_prev)} meets a non-finite Φ_h: the field, or an "
                "implicit step's root find, fails"
            )
            return math.nan, _UNKNOWN, detail, point
        if not residual <= FIXED_POINT_TOL * scale:
            detail = f"Newton from y = {_show(y_prev)} ends at residual {float(residual):.2g}"
            return math.nan, _LOST, detail, point
        if not np.all(np.isfinite(jac)):
            return math.nan, _UNKNOWN, "DΦ_h is not finite at the fixed point", point
        # How far the computed point can be from the true one (as in fixed_point_branches):
        # 3·max(residual, eps·|y|)/σ_min(DΦ_h - I); at small h, Φ_h(y) - y = h·f is known
        # only to eps·|y|, so the point jitters by ~eps/(h·|Df|).
        sigma = np.linalg.svd(jac - np.eye(d), compute_uv=False)[-1]
        with np.errstate(divide="ignore"):
            delta = 3 * max(float(residual), np.finfo(float).eps * scale) / sigma
        point = (h, y1, slope, delta)
        if h_prev is not None:
            allowed = 2 * max(np.abs(slope_prev).max(), np.abs(slope).max()) * abs(h - h_prev)
            allowed += delta + delta_prev + 1e-9 * scale
            if not np.abs(y1 - y_prev).max() <= allowed:
                detail = f"Newton jumps from y = {_show(y_prev)} to another fixed point"
                return math.nan, _LOST, detail + f" {_show(y1)}", point
        excess = float(np.abs(np.linalg.eigvals(jac)).max() - 1)
        return excess, None, "", point

    excess, cause, detail, point = at(grid[0], (None, y.reshape(d), None, 0.0))
    if cause is not None or (
        np.abs(point[1] - y.reshape(d)).max() > y_tol * max(1.0, float(np.abs(y).max()))
    ):
        raise InvalidArgument(
            f"y_star={y_star!r} is not a fixed point of Φ_h at h = h_min = {h_min:g} ("
            + (detail if cause is not None else f"the fixed point next to it is {_show(point[1])}")
            + "); pass a fixed point there (an equilibrium of the h → 0 field), since the "
            "fixed point is followed from it as h grows"
        )
    points, excesses, causes, details = [point], [excess], [cause], [detail]
    decided = None  # the last decidedly stable grid index
    for k in range(1, len(grid) + 1):
        if causes[-1] is not None or excesses[-1] > ROUND_OFF:
            break
        if excesses[-1] < -ROUND_OFF:
            decided = k - 1
        if k == len(grid):
            return StabilityBound(
                math.inf,
                "stable",
                f"stable at every h probed, up to h_max = {h_max:g}",
                points[-1][1].reshape(shape),
            )
        excess, cause, detail, point = at(grid[k], points[-1])
        points.append(point), excesses.append(excess), causes.append(cause), details.append(detail)
    first, cause, detail = len(points) - 1, causes[-1] or _UNSTABLE, details[-1]
    if decided is None:
        reason = _reason(cause, "h", float(grid[first]), at_start=True, detail=detail)
        return StabilityBound(0.0, cause, reason, points[0][1].reshape(shape))
    state = {"prev": points[decided], "detail": detail}

    def probe(h):
        excess, cause, detail, point = at(h, state["prev"])
        if cause is None and excess <= ROUND_OFF:
            state["prev"] = point
        else:
            state["detail"] = detail
        return excess, cause

    x, cause = _bisect(probe, float(grid[decided]), float(grid[first]), cause, rtol, True)
    reason = _reason(cause, "h", x, detail=state["detail"])
    return StabilityBound(x, cause, reason, state["prev"][1].reshape(shape))


def _show(y) -> str:
    y = np.asarray(y, dtype=float).ravel()
    return f"{y[0]:.6g}" if y.size == 1 else "(" + ", ".join(f"{v:.6g}" for v in y) + ")"
