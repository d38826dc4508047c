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
grid of h and starts (the bifurcation diagram in h, with escapes and Lyapunov exponents);
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

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import solvers as _solvers
from . import systems as _systems
from .errors import InvalidArgument, require_positive, warn_if_float32
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
    "max_stable_step",
    "ROUND_OFF",
]

#: |R| - 1 (or max |multiplier| - 1) within ±ROUND_OFF of 0 is round-off: it decides nothing.
ROUND_OFF = 1e-12
#: A Newton solution counts as a fixed point when |Φ_h^k(y) - y| ≤ this·max(1, |y|).
FIXED_POINT_TOL = 1e-10
#: A fixed point is spurious when the h = 0 field there exceeds this in max-norm.
SPURIOUS_TOL = 1e-8

_CHUNK = 1024  # every vectorised evaluation is padded to this many points: one compile each
_COMPILED: dict = {}


# ----------------------------------------------------------------------------- the map itself


def _map_solver(solver):
    """`solver` ready to be a map: StepAware, constant-step Newton tolerances if implicit, and
    Runge–Kutta stages in a plain lax loop (diffrax's default checkpointed loop has no jvp)."""
    solver = _solvers.get(solver)
    if isinstance(solver, StepAware):
        return StepAware(_map_solver(solver.solver).solver, signed=solver.signed)
    if isinstance(solver, diffrax.HalfSolver):
        return StepAware(diffrax.HalfSolver(_map_solver(solver.solver).solver))
    solver = _solvers.for_fixed_steps(solver)
    if isinstance(solver, diffrax.AbstractRungeKutta):
        solver = dataclasses.replace(solver, scan_kind="lax")
    return StepAware(solver)


def _step_function(system, solver) -> Callable:
    """(y, h, t0, args) -> one StepAware step of `solver` on `system`; NaN if it failed."""
    stepper = _map_solver(solver)
    term = system.term()

    def step(y, h, t0, args):
        t1 = t0 + h
        state = stepper.init(term, t0, t1, y, args)
        y1, _, _, _, result = stepper.step(term, t0, t1, y, args, state, False)
        # A failed implicit solve (Newton divergence) is no step at all.
        return jnp.where(result == diffrax.RESULTS.successful, y1, jnp.nan)

    return step


def one_step_map(system, solver, h, *, t=None) -> Callable:
    """Φ_h: one step of `solver` with step h on `system`, as a jax function y -> y_next.

    The step is StepAware, so a step-dependent field sees this h in every stage. `system` and
    `solver` may be names. The map is built from `solver.step` directly (no diffeqsolve loop), so
    it composes with jit, vmap (over y and over h) and jacfwd. Implicit solvers use the
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
    system = _systems.get(system)
    step = _step_function(system, solver)
    t0 = jnp.asarray(system.t0 if t is None else t, dtype=jnp.result_type(float))
    return lambda y: step(y, h, t0, system.args)


def _cached(key, build):
    """Memoise compiled functions per (kind, system object, solver, ...); unhashable: no cache."""
    try:
        hash(key)
    except TypeError:
        return build()
    if key not in _COMPILED:
        _COMPILED[key] = build()
    return _COMPILED[key]


def _solver_key(solver):
    """The solver object as a cache key (equal solvers share compiled code); validates names."""
    return _solvers.get(solver)


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


def _amplifier(solver, field):
    def build():
        step = _step_function(_complex_linear_system(field), solver)
        y0 = jnp.array([1.0, 0.0])
        t0 = jnp.zeros(())
        return jax.jit(jax.vmap(lambda lam, h: step(y0, h, t0, lam), in_axes=(0, None)))

    return _cached(("amplification", _solver_key(solver), field), build)


def amplification(solver, z, *, field: Callable | None = None, h: float = 1.0) -> np.ndarray:
    """R(z): one step of `solver` on y' = λy with step h and λ = z/h, from y = 1.

    For an h-free linear field R depends on z = hλ only (h = 1 is the convention). With `field`,
    a complex-linear step-dependent field y' = field(y, λ, h) (e.g. ``lambda y, lam, h: lam*y +
    h*mu*y``) runs instead and R is its effective amplification per step at this h: Euler on
    λy + h·μ·y gives 1 + z + h²μ. The step is real (see `_complex_linear_system`), so every
    solver works, implicit ones included (their Newton solve is exact on a linear problem).
    `z` is any array of complex numbers; the result has its shape. Compiled once per (solver,
    field).

    Examples:
        >>> amplification("Heun", [-1.0, 1j])     # 1 + z + z²/2
        array([0.5+0.j, 0.5+1.j])
    """
    z = np.asarray(z, dtype=complex)
    if not np.all(np.isfinite(z)):
        raise InvalidArgument(f"z={z!r} is invalid; every z must be a finite complex number")
    h = require_positive("h", h)
    warn_if_float32("amplification")
    fn = _amplifier(solver, _linear if field is None else field)
    lam = z.ravel() / h
    if lam.size == 0:
        return z.copy()
    out = _padded(fn, np.stack([lam.real, lam.imag], axis=-1), h)
    return (out[:, 0] + 1j * out[:, 1]).reshape(z.shape)


#: (A, b) of the one-stage methods diffrax implements without a ButcherTableau.
_ONE_STAGE = {
    "Euler": (np.zeros((1, 1)), np.ones(1)),
    "ImplicitEuler": (np.ones((1, 1)), np.ones(1)),
}


def tableau_amplification(solver, z) -> np.ndarray:
    """R(z) = 1 + z bᵀ(I - zA)⁻¹1 from the solver's Butcher tableau (explicit or diagonally
    implicit Runge–Kutta); InvalidArgument for a solver without a tableau.

    Examples:
        >>> tableau_amplification("Euler", -2.0)
        array(-1.+0.j)
    """
    meta = _solvers.info(solver)
    tab = meta.tableau
    if meta.name in _ONE_STAGE:
        a, b = _ONE_STAGE[meta.name]
    elif tab is None:
        raise InvalidArgument(
            f"solver={meta.name!r} has no Butcher tableau; use amplification() instead"
        )
    else:
        b = np.asarray(tab.b_sol)
        a = np.zeros((len(b), len(b)))
        for i, row in enumerate(tab.a_lower):
            a[i + 1, : i + 1] = row
        if tab.a_diagonal is not None:
            a[np.diag_indices(len(b))] = tab.a_diagonal
    s = len(b)
    z = np.asarray(z, dtype=complex)
    m = np.eye(s) - z[..., None, None] * a
    x = np.linalg.solve(m, np.broadcast_to(np.ones(s, dtype=complex), (*z.shape, s))[..., None])
    return np.asarray(1 + z * (x[..., 0] @ b))


def _boundary(excess, grid, tol, *, geometric=False) -> float:
    """The end of the stable stretch [grid[0], x*) where excess(x) ≤ 0, bisected to tol.

    `excess` is vectorised: |R| - 1 or max |multiplier| - 1. Bracketing: the first grid point
    with excess > ROUND_OFF is unstable; the stretch before it counts only if some point there
    is decidedly stable (excess < -ROUND_OFF): near z = 0 a consistent method has
    |R| = 1 + O(|z|^{p+1}), within round-off of 1, which decides nothing. So the result is 0 if
    no point before the first unstable one is decidedly stable, inf if no grid point is
    unstable. Bisection then treats |excess| ≤ ROUND_OFF as stable. With geometric=True the
    bisection is in log x and tol is relative.
    """
    d = excess(grid)
    unstable = d > ROUND_OFF
    if not unstable.any():
        return math.inf
    first = int(np.argmax(unstable))
    decided = np.flatnonzero(d[:first] < -ROUND_OFF)
    if decided.size == 0:
        return 0.0
    lo, hi = float(grid[decided[-1]]), float(grid[first])
    while hi - lo > (tol * hi if geometric else tol):
        mid = math.sqrt(lo * hi) if geometric else 0.5 * (lo + hi)
        if excess(np.array([mid]))[0] > ROUND_OFF:
            hi = mid
        else:
            lo = mid
    return math.sqrt(lo * hi) if geometric else 0.5 * (lo + hi)


def _interval(solver, direction, x_max, spacing, field, h) -> float:
    require_positive("x_max", x_max)
    _solvers.get(solver)
    grid = np.linspace(0.0, x_max, int(round(x_max / spacing)) + 1)
    return _boundary(
        lambda x: np.abs(amplification(solver, direction * x, field=field, h=h)) - 1, grid, 1e-6
    )


def real_interval(solver, *, x_max=20.0, spacing=0.01, field=None, h=1.0) -> float:
    """The real stability interval: the largest r with |R(-x)| ≤ 1 for all x in [0, r].

    Bracketed on a grid of `spacing` over [0, x_max], then bisected to 1e-6 (see `_boundary`
    for how round-off near z = 0 is treated). inf means stable on the whole of [0, x_max], as
    for A-stable methods. `field`, `h`: as in `amplification` (an effective region).

    Examples:
        >>> round(real_interval("Euler"), 5), round(real_interval("Bosh3"), 5)  # 1+z+z²/2+z³/6
        (2.0, 2.51275)
    """
    return _interval(solver, -1.0, x_max, spacing, field, h)


def imag_interval(solver, *, x_max=20.0, spacing=0.01, field=None, h=1.0) -> float:
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
    """The shape of the system's state and its number of components d."""
    shape = np.shape(system.y0)
    d = int(np.prod(shape))
    return shape, d


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


def _state_fn(system, solver):
    """Φ on flat states: (y_flat, h, t0) -> Φ_h(y) flat, with the system's args."""
    shape, d = _flat(system)
    step = _step_function(system, solver)

    def phi(y, h, t0):
        return step(y.reshape(shape), h, t0, system.args).reshape(d)

    return phi, d


def _fixed_point_fn(system, solver, period, iterations):
    def build():
        phi, d = _state_fn(system, solver)
        t0 = jnp.asarray(system.t0, dtype=jnp.result_type(float))
        shape = np.shape(system.y0)

        def phi_k(y, h):
            return jax.lax.fori_loop(0, period, lambda _, yy: phi(yy, h, t0), y)

        def solve(y, h):
            def newton(_, y):
                jac = jax.jacfwd(phi_k)(y, h) - jnp.eye(d)
                return y - jnp.linalg.solve(jac, phi_k(y, h) - y)

            y = jax.lax.fori_loop(0, iterations, newton, y)
            orbit = jax.lax.scan(lambda yy, _: (phi(yy, h, t0),) * 2, y, length=period)[1]

            def limit(yy):
                return system.limit_field(t0, yy.reshape(shape), system.args).reshape(d)

            return y, orbit, jax.jacfwd(phi_k)(y, h), limit(y), jax.jacfwd(limit)(y)

        return jax.jit(jax.vmap(jax.vmap(solve, in_axes=(0, None)), in_axes=(None, 0)))

    return _cached(("fixed", system, _solver_key(solver), period, iterations), build)


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
            # spurious: the limit field is nonzero by more than the position's uncertainty allows
            "spurious": bool(
                np.abs(field[i]).max()
                > SPURIOUS_TOL + np.abs(field_jac[i]).sum(axis=1).max() * uncertainty[i]
            ),
        }
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
    stable (every eigenvalue of DΦ_h^k inside the unit circle), uncertainty (δ), spurious (the
    h = 0 field does not vanish there, by more than 1e-8 + |Df|·δ: not an equilibrium of the
    ODE), multiplier_0, multiplier_1, ... (complex, by decreasing modulus).
    `bounds` is (lo, hi) or one (lo, hi) per component. Autonomous use: Φ_h steps from t0.

    Examples:
        >>> df = fixed_point_branches("logistic", "Heun", [1.0, 3.0], (-1, 3))
        >>> df[df.spurious].y.round(4).tolist()         # ((h+2) ± √(h²-4))/(2h) at h = 3
        [0.4607, 1.206]
    """
    system = _check_system_and_solver(system, solver)
    hs = _check_hs(hs)
    period = _check_int("period", period, 1)
    n_starts = _check_int("n_starts", n_starts, 1)
    iterations = _check_int("iterations", iterations, 1)
    _, d = _flat(system)
    box = _check_bounds(bounds, d)
    fn = _fixed_point_fn(system, solver, period, iterations)
    y, orbit, jac, field, field_jac = (np.asarray(a) for a in fn(_starts(box, n_starts, seed), hs))
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
    columns += ["spurious"]
    columns += [f"multiplier_{k}" for k in range(d)]
    return pd.DataFrame(rows, columns=columns)


def fixed_points(system, solver, h, bounds, **options) -> pd.DataFrame:
    """All fixed points of Φ_h (period=k: of Φ_h^k) in the box `bounds`; one row per point.

    Options and columns as in `fixed_point_branches`.

    Examples:
        >>> fixed_points("logistic", "Euler", 0.5, (-1, 2)).y.round(9).tolist()  # equilibria only
        [0.0, 1.0]
        >>> df = fixed_points("logistic", "Heun", 3.0, (-1, 3))  # h > 2: ((h+2) ± √(h²-4))/(2h)
        >>> df[["y", "spurious"]].round(4).values.tolist()     # are spurious fixed points too
        [[0.0, False], [0.4607, True], [1.0, False], [1.206, True]]
    """
    return fixed_point_branches(system, solver, [require_positive("h", h)], bounds, **options)


# -------------------------------------------------------------------------- orbit diagrams


def _orbit_fn(system, solver, n_transient, n_keep, escape_radius):
    def build():
        phi, d = _state_fn(system, solver)
        t0 = jnp.asarray(system.t0, dtype=jnp.result_type(float))

        def advance(carry, h):
            y, v, escaped_at, n = carry
            y1, v1 = jax.jvp(lambda yy: phi(yy, h, t0), (y,), (v,))
            grow = jnp.linalg.norm(v1)
            bad = ~jnp.all(jnp.isfinite(y1)) | (jnp.max(jnp.abs(y1)) > escape_radius)
            escaped_at = jnp.where((escaped_at < 0) & bad, n + 1, escaped_at)
            alive = escaped_at < 0
            y = jnp.where(alive, y1, y)
            v = jnp.where(alive, v1 / grow, v)
            return (y, v, escaped_at, n + 1), (y, jnp.log(grow))

        def run(y0, h):
            carry = (y0, jnp.ones(d) / math.sqrt(d), jnp.asarray(-1), jnp.asarray(0))
            carry = jax.lax.fori_loop(0, n_transient, lambda _, c: advance(c, h)[0], carry)
            carry, (ys, logs) = jax.lax.scan(lambda c, _: advance(c, h), carry, length=n_keep)
            return ys, carry[2], jnp.mean(logs)

        return jax.jit(jax.vmap(jax.vmap(run, in_axes=(0, None)), in_axes=(None, 0)))

    key = ("orbit", system, _solver_key(solver), n_transient, n_keep, escape_radius)
    return _cached(key, build)


def orbit_diagram(
    system, solver, hs, y0s=None, *, n_transient=500, n_keep=100, escape_radius=1e6
) -> pd.DataFrame:
    """Iterate Φ_h from each start in `y0s` for each h in `hs` (vmapped, one compile).

    The first `n_transient` iterates are discarded and the next `n_keep` kept: the attractor.
    An orbit that leaves |y| ≤ escape_radius (or turns non-finite) has escaped and is one row
    with y = NaN, escaped = True and `iterate` the step at which it left. Columns: system, solver,
    h, start (index into y0s), iterate (n of y_n), y (or y0, y1, ...), escaped, lyapunov: the
    largest Lyapunov exponent of that orbit, the mean of log |DΦ_h v| over the kept iterates
    with v the unit tangent vector carried along since the start (< 0 on a stable periodic
    orbit, > 0 on a chaotic one, NaN if escaped); `df.groupby("h").lyapunov.max()` is per h.
    `y0s` defaults to the system's y0.

    Examples:
        >>> df = orbit_diagram("logistic", "Euler", [1.5, 2.2], [0.3], n_keep=2)
        >>> df.groupby("h").y.nunique().tolist()       # a fixed point, then a 2-cycle
        [1, 2]
    """
    system = _check_system_and_solver(system, solver)
    hs = _check_hs(hs)
    n_transient = _check_int("n_transient", n_transient, 0)
    n_keep = _check_int("n_keep", n_keep, 1)
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
    fn = _orbit_fn(system, solver, n_transient, n_keep, float(escape_radius))
    ys, escaped_at, lyap = (np.asarray(a) for a in fn(starts.reshape(len(starts), d), hs))
    n_h, n_s = escaped_at.shape
    escaped = escaped_at >= 0
    keep = np.where(escaped, 1, n_keep)
    idx_h, idx_s = np.repeat(np.arange(n_h), n_s), np.tile(np.arange(n_s), n_h)
    counts = keep.ravel()
    rows_h, rows_s = np.repeat(idx_h, counts), np.repeat(idx_s, counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    esc = escaped[rows_h, rows_s]
    values = np.where(esc[:, None], np.nan, ys[rows_h, rows_s, offset])
    df = pd.DataFrame(
        {
            "system": system.name,
            "solver": _solvers.name_of(solver),
            "h": hs[rows_h],
            "start": rows_s,
            "iterate": np.where(esc, escaped_at[rows_h, rows_s], n_transient + 1 + offset),
        }
    )
    for k in range(d):
        df["y" if d == 1 else f"y{k}"] = values[:, k]
    df["escaped"] = esc
    df["lyapunov"] = np.where(esc, np.nan, lyap[rows_h, rows_s])
    return df


# ------------------------------------------------------------------------ largest stable h


def _multiplier_fn(system, solver):
    def build():
        phi, d = _state_fn(system, solver)

        def jac(h, y, t0):
            return jax.jacfwd(phi)(y, h, t0)

        return jax.jit(jax.vmap(jac, in_axes=(0, None, None)))

    return _cached(("multipliers", system, _solver_key(solver)), build)


def max_stable_step(
    system, solver, y_star, *, h_min=1e-8, h_max=100.0, n_grid=400, rtol=1e-6, t=None
) -> float:
    """The largest h for which every multiplier of Φ_h at y_star lies in the unit disk.

    The multipliers are the eigenvalues of DΦ_h(y_star). y_star should be a fixed point of Φ_h
    for every h probed (an equilibrium of an h-free field is one for every Runge–Kutta method),
    or any point if Φ_h is affine (a linear field plus a forcing, as Prothero–Robinson): then
    DΦ_h is the same everywhere. Bracketed on `n_grid` geometrically spaced h in
    [h_min, h_max], bisected in log h to relative `rtol` (see `_boundary`); 0 if y_star is not
    stable even at h_min, inf if stable up to h_max (an A-stable method on a stable point).

    Examples:
        >>> from analysis import systems
        >>> round(max_stable_step(systems.get("linear", lam=10.0), "Euler", 0.0), 6)  # 2/λ
        0.2
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
    fn = _multiplier_fn(system, solver)
    t0 = jnp.asarray(system.t0 if t is None else t, dtype=jnp.result_type(float))
    y_flat = jnp.asarray(y.reshape(d))

    def excess(hs):
        jacs = _padded(fn, hs, y_flat, t0).reshape(len(hs), d, d)
        return np.abs(np.linalg.eigvals(jacs)).max(axis=1) - 1

    grid = np.geomspace(h_min, h_max, _check_int("n_grid", n_grid, 2))
    return _boundary(excess, grid, rtol, geometric=True)
