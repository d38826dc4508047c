"""Maps and step-dependent ODEs: one as the other, modified equations, and how far apart they are.

A solver at a fixed step h turns a (step-dependent) system into a map y_{n+1} = Φ_h(y_n)
(`to_map`, `iterate`); any map Φ is the Euler discretization of the step-dependent field
(Φ(y) - y)/h (`lift`). A family of maps Φ_h(y) = y + h·g(y) + O(h²) has the h → 0 limit
y' = g(y) (`continuous_limit`). Backward error analysis goes the other way: the modified field
f̃_h = f + h·f₂ + h²·f₃ + … whose exact time-h flow is Φ_h (`modified_equation`, checked by
`modified_equation_defect`). `compare` measures how far a map's orbit and an ODE's solution drift
apart.

Examples:
    >>> from analysis import discrete, systems
    >>> phi = discrete.to_map(systems.get("logistic", r=1.0), "Euler", 2.0)
    >>> discrete.iterate(phi, jnp.asarray(0.1), 3).shape      # y0 and three iterates
    (4,)
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import solvers as _solvers
from . import systems as _systems
from .convergence import log_slope
from .errors import InvalidArgument, require_positive, warn_if_float32
from .prepare import prepare
from .reference import limit_solution, solve_limit
from .result import Result, require_columns
from .stability import one_step_map

__all__ = [
    "lift",
    "to_map",
    "iterate",
    "continuous_limit",
    "modified_equation",
    "modified_equation_defect",
    "ModifiedDefects",
    "compare",
    "DEFECT_RTOL",
]

#: Tolerance of the Dopri8 solve of the modified field in `modified_equation_defect`.
DEFECT_RTOL = 1e-14


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_step(name: str, h) -> None:
    """A concrete step must be finite and > 0 (traced steps are the caller's business)."""
    if _is_concrete(h) and np.ndim(h) == 0:
        require_positive(name, h)


def _check_callable(name: str, value) -> None:
    if not callable(value):
        raise InvalidArgument(f"{name}={value!r} is invalid; it must be a callable y -> array")


# ------------------------------------------------------------------------------ maps <-> ODEs


def lift(phi: str | Callable, h_train: float = 1.0, y0=None, *, steps: int = 100, **map_params):
    """A map Φ as the step-dependent System f(t, y, args, h) = (Φ(y) - y)/h.

    This is the catalog's ``lifted_map`` (`phi` a callable, or 'logistic', 'henon', 'residual'
    with their `map_params`), spanning [0, steps·h_train]. What solvers do to it:

    - Euler at any step h: y + h·(Φ(y) - y)/h = Φ(y), the map itself (to round-off). At
      h = h_train its n-th step lands at time n·h_train; at another h the same orbit is
      replayed on the time grid n·h.
    - Any other explicit RK: stage values Y_i = y + Σ_j a_ij·(Φ(Y_j) - Y_j) no longer depend on
      h, so the solver iterates a *different* map, the same for every h (Heun:
      y -> (y + Φ(Φ(y)))/2).
    - Adaptive stepping: that different map, once per accepted step, with the steps chosen by an
      error estimate that is itself h-independent, so shrinking h does not reduce it.
    - h → 0: there is no limit. At h = 0 the field falls back to (Φ(y) - y)/h_train, so the
      system's `limit()` (and any "limit" target) is that field frozen at h_train, named
      "... (frozen at h = h_train)"; `frozen_h` = h_train marks it (None for a genuine limit).

    Args:
        phi: a callable y -> y_next, or a shipped map name ('logistic', 'henon', 'residual').
        h_train: the step the map is read at: one map iterate per time h_train.
        y0: the start (default: the shipped map's).
        steps: the time span is [0, steps·h_train].
        **map_params: parameters of a shipped map (e.g. mu=3.2 for 'logistic').

    Returns:
        A step-dependent `analysis.systems.System` (h_dependent=True).

    Examples:
        >>> lifted = lift(lambda y: 0.5 * y, h_train=0.1, y0=1.0)
        >>> float(to_map(lifted, "Euler", 0.1)(jnp.asarray(1.0)))
        0.5
        >>> lifted.frozen_h, lifted.limit().name      # (Φ(y) - y)/0.1 = -5·y: no h → 0 limit
        (0.1, 'lifted_map(<lambda>, h_train=0.1, y0=1.0) (frozen at h = 0.1)')
    """
    if not (isinstance(phi, str) or callable(phi)):
        raise InvalidArgument(
            f"phi={phi!r} is invalid; it must be a callable y -> y_next or a shipped map name"
        )
    return _systems.get("lifted_map", map=phi, h_train=h_train, steps=steps, y0=y0, **map_params)


def to_map(system, solver, h) -> Callable:
    """The discrete-time map y_n -> y_{n+1} of (`system`, `solver`, fixed step `h`).

    This is `analysis.stability.one_step_map` (one StepAware step starting at the system's t0),
    so it composes with jit, vmap (over y and h) and forward-mode jax derivatives (jacfwd, jvp:
    explicit Runge–Kutta stage loops run as plain lax loops; reverse mode, jax.grad, does not
    pass them). For a non-autonomous system the map is that of the first step; `iterate` treats
    maps as autonomous.

    Args:
        system: a System or catalog name.
        solver: a diffrax solver or its name.
        h: the fixed step (finite, > 0; may be a jax tracer, e.g. under vmap).

    Returns:
        A jax function y -> Φ_h(y) of the system's state shape.

    Examples:
        >>> from analysis import systems
        >>> phi = to_map(systems.get("logistic"), "Heun", 0.1)
        >>> float(jax.jacfwd(phi)(jnp.asarray(0.0)))    # DΦ_h(0) = R(hr) = 1 + h + h²/2
        1.105
    """
    _check_step("h", h)
    return one_step_map(system, solver, h)


def iterate(phi: Callable, y0, n: int):
    """The orbit y0, Φ(y0), …, Φⁿ(y0) as an array of shape (n + 1, *y0.shape), by lax.scan.

    A PyTree state gives the same PyTree with each leaf stacked along a new leading axis.

    `n` is a Python int (it fixes the output shape); `iterate` can be vmapped over `y0` and over
    anything `phi` closes over, e.g. the step: ``jax.vmap(lambda h: iterate(to_map(sys, "Euler",
    h), y0, n))(hs)``.

    Args:
        phi: a jax function y -> y_next (e.g. from `to_map`).
        y0: the start, an array, a scalar or a PyTree of them.
        n: the number of iterates, a non-negative Python int.

    Returns:
        A jax array of shape (n + 1, *y0.shape), y0 first (a PyTree state: per leaf).

    Examples:
        >>> from analysis import systems
        >>> phi = to_map(systems.get("linear"), "Euler", 0.5)   # y' = -y: y -> (1 - h)·y
        >>> iterate(phi, 1.0, 3).tolist()
        [1.0, 0.5, 0.25, 0.125]
    """
    _check_callable("phi", phi)
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InvalidArgument(f"n={n!r} is invalid; it must be a non-negative Python int")
    y0 = jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype=jnp.result_type(float)), y0)

    def step(y, _):
        y_next = phi(y)
        return y_next, y_next

    _, orbit = jax.lax.scan(step, y0, None, length=int(n))
    return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), y0, orbit)


def continuous_limit(family: Callable, y0=None, *, t1: float = 1.0, name: str | None = None):
    """The ODE y' = g(y), g = ∂Φ_h/∂h at h = 0, of a map family Φ_h(y) = y + h·g(y) + O(h²).

    `family(h)` returns the map at step h and must be differentiable in h (it is called with a
    jax tracer). g is computed by forward-mode differentiation, not by a finite difference.
    Returns an h-free, autonomous `System` starting from `y0` on [0, t1].

    Examples:
        >>> from analysis import systems
        >>> logistic = systems.get("logistic")
        >>> ode = continuous_limit(lambda h: to_map(logistic, "Heun", h), logistic.y0)
        >>> float(ode.limit_field(0.0, jnp.asarray(0.5), None))   # 0.5·(1 - 0.5)
        0.25
    """
    _check_callable("family", family)

    def g(t, y, args, h):
        zero = jnp.zeros((), jnp.result_type(float))
        return jax.jvp(lambda hh: family(hh)(y), (zero,), (jnp.ones_like(zero),))[1]

    label = name or f"continuous_limit({getattr(family, '__name__', 'family')})"
    return _systems.System(
        name=label,
        vector_field=g,
        y0=None if y0 is None else jnp.asarray(y0, dtype=jnp.result_type(float)),
        t1=t1,
        params=dict(family=label),
    )


# ----------------------------------------------------------------------- modified equations


def _taylor_coefficient(fn: Callable, n: int):
    """[hⁿ] fn(h) at h = 0: the n-th derivative by nested forward mode, over n!."""
    for _ in range(n):
        fn = jax.jacfwd(fn)
    return fn(jnp.zeros((), jnp.result_type(float))) / math.factorial(n)


def _compositions(n: int, k: int):
    """The ordered ways of writing n as a sum of k positive integers."""
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = (0, *cuts, n)
        yield tuple(b - a for a, b in zip(bounds, bounds[1:], strict=False))


def _modified_terms(system, solver: str, order: int) -> list[Callable]:
    """f_1 = f, f_2, …, f_{order+1}, each a function (t, y, args) -> array.

    Write Φ_h(y) = y + Σ_n hⁿ·d_n(y) (d_n by differentiating the solver's step, `Prepared.step`,
    in h with nested forward mode) and
    L_j g = g'·f_j for the Lie derivative along f_j (L_1 also takes ∂/∂t, since the time
    component of the flow is t + h). The exact time-h flow of f̃_h = Σ_j h^{j-1} f_j is
    exp(h·L_{f̃_h}) id, whose hⁿ coefficient is
        Σ_k 1/k! Σ_{j_1+…+j_k = n} L_{j_1}⋯L_{j_{k-1}} f_{j_k}.
    Matching it with d_n gives, with the k = 1 term f_n isolated,
        f_n = d_n - Σ_{k≥2} 1/k! Σ_{j_1+…+j_k = n} L_{j_1}⋯L_{j_{k-1}} f_{j_k},
    in which only f_1, …, f_{n-1} appear (e.g. f_2 = d_2 - ½f'f for any one-step method).
    """
    fs = {1: system.limit_field}
    prepared = prepare(system, solver)

    def lie(j, g):
        if j == 1:
            return _systems.flow_derivative(fs[1], g)
        fj = fs[j]

        def lg(t, y, args):
            return jax.jvp(lambda yy: g(t, yy, args), (y,), (fj(t, y, args),))[1]

        return lg

    def term(n):
        flow_parts = []
        for k in range(2, n + 1):
            for js in _compositions(n, k):
                g = fs[js[-1]]
                for j in reversed(js[:-1]):
                    g = lie(j, g)
                flow_parts.append((1.0 / math.factorial(k), g))

        def fn(t, y, args):
            out = _taylor_coefficient(lambda h: prepared.step(y, h, t0=t, args=args)[0], n)
            for weight, g in flow_parts:
                out = out - weight * g(t, y, args)
            return out

        return fn

    for n in range(2, order + 2):
        # jit caches each term's trace: diffrax traces a field several times, and the nested
        # derivatives make every fresh trace expensive.
        fs[n] = jax.jit(term(n))
    return [fs[n] for n in range(1, order + 2)]


def _check_order(order) -> None:
    if isinstance(order, bool) or not isinstance(order, int | np.integer) or not 0 <= order <= 3:
        raise InvalidArgument(f"order={order!r} is invalid; it must be an int in 0..3")


def _truncated_series(terms, keep, t, y, args, h):
    """f_1 + Σ_{1 ≤ j ≤ keep} h^j·f_{j+1} at (t, y); `keep` may be traced (the others still run)."""
    out = terms[0](t, y, args)
    for j, fj in enumerate(terms[1:], start=1):
        out = out + jnp.where(j <= keep, h**j, 0.0) * fj(t, y, args)
    return out


def _modified_setup(solver, system, order):
    """Validate, then (system, solver name, [f_1, …, f_{order+1}])."""
    system = _systems.get(system)
    _check_order(order)
    solver_name = _solvers.name_of(solver)
    if solver_name not in _solvers.EXPLICIT_RK:
        raise InvalidArgument(
            f"solver={solver_name!r} is invalid for modified_equation; it needs an explicit "
            f"Runge–Kutta tableau: one of {', '.join(_solvers.EXPLICIT_RK)}"
        )
    return system, solver_name, _modified_terms(system, solver_name, int(order))


def modified_equation(solver, system, order: int = 2) -> _systems.System:
    """Backward error analysis: the step-dependent System f̃_h = f + h·f₂ + … + h^order·f_{order+1}.

    The terms make the exact time-h flow of f̃_h (frozen at h) agree with the solver's one-step
    map Φ_h up to a defect O(h^{order+2}) — and higher where the solver's own order p makes the
    first corrections vanish (f₂ = … = f_p = 0 for an order-p method). `solver` is an explicit
    Runge–Kutta method (`analysis.solvers.EXPLICIT_RK`); the terms are computed by matching the
    Taylor series in h of its one-step map (`Prepared.step`) with that of the exact flow, with
    jax derivatives, so non-autonomous and step-dependent systems work too (the field's own
    h-dependence is expanded with the step's). For Euler on an autonomous f: f₂ = -½f'f,
    f₃ = (1/12)f''(f, f) + (1/3)f'f'f. Cost grows quickly with `order`; 0 ≤ order ≤ 3.

    Examples:
        >>> from analysis import systems
        >>> mod = modified_equation("Euler", systems.get("logistic"), order=1)
        >>> float(mod.vector_field(0.0, jnp.asarray(0.5), mod.args, 0.1))  # f - (h/2)·f'f = f
        0.25
    """
    system, solver_name, terms = _modified_setup(solver, system, order)

    def field(t, y, args, h):
        return _truncated_series(terms, len(terms) - 1, t, y, args, h)

    return system.with_(
        name=f"modified_equation({solver_name}, {system.name}, order={order})",
        vector_field=field,
        h_dependent=order > 0,
        exact=None,
        equilibria=None,
        invariants={},
        params=dict(
            solver=solver_name,
            base=system.name,
            base_params=system.params,
            order=order,
        ),
    )


@dataclasses.dataclass(frozen=True, repr=False)
class ModifiedDefects(Result):
    """Modified-equation defects and their fitted orders: `modified_equation_defect`'s result.

    ``rows``: solver, system, order, h, defect, status (one row per (order, h)). ``slopes``:
    solver, order, fitted_slope, the least-squares slope p of log defect = p·log h + c over the
    rows with status "ok" and defect > 0 (NaN with fewer than two): the defect's order in h,
    order + 2 for Euler. `analysis.plotting.defects` draws both.

    Examples:
        >>> import pandas as pd
        >>> rows = pd.DataFrame({"solver": "Euler", "order": 0, "h": [0.1, 0.2],
        ...                      "defect": [1e-3, 4e-3], "status": "ok"})
        >>> ModifiedDefects.from_rows(rows).slopes.fitted_slope.round(6).tolist()  # 4 = 2²
        [2.0]
    """

    rows: pd.DataFrame
    slopes: pd.DataFrame

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> ModifiedDefects:
        """The result for `rows` (e.g. several solvers' rows concatenated), slopes fitted."""
        require_columns(rows, ["solver", "order", "h", "defect", "status"], "defect rows")
        ok = rows[(rows["status"] == "ok") & (rows["defect"] > 0)]
        fits = [
            {
                "solver": solver,
                "order": order,
                "fitted_slope": log_slope(g["h"], g["defect"]).slope if len(g) >= 2 else np.nan,
            }
            for (solver, order), g in ok.groupby(["solver", "order"], sort=False)
        ]
        return cls(
            rows=rows, slopes=pd.DataFrame(fits, columns=["solver", "order", "fitted_slope"])
        )


def modified_equation_defect(solver, system, orders, hs, y=None) -> ModifiedDefects:
    """max-norm |flow_h(f̃_h)(y) - Φ_h(y)| per (order, h): the honest check of `modified_equation`.

    The modified field with `order` correction terms, frozen at h, is integrated over
    [t0, t0 + h] from `y` (default: the system's y0) by `reference.solve_limit` (Dopri8,
    rtol = atol = DEFECT_RTOL) and compared with one diffrax step of `solver` (`to_map`).
    Expect O(h^{order+2}) for Euler, and a floor near 1e-15·|y|. `orders` is an int or a
    sequence of ints; all (order, h) pairs run in one vmapped compilation. Returns a
    `ModifiedDefects`: rows (solver, system, order, h, defect, status: "ok" or "solve_failed",
    defect NaN) and the fitted slope per order.

    Examples:
        >>> result = modified_equation_defect("Euler", "logistic", (0, 1), [0.1, 0.05])
        >>> list(result.rows["order"])
        [0, 0, 1, 1]
        >>> result.slopes.fitted_slope.round().tolist()            # O(h^(order+2))
        [2.0, 3.0]
    """
    orders = tuple(np.atleast_1d(orders).tolist())
    for order in orders:
        _check_order(order)
    hs = np.asarray(hs, dtype=float)
    if hs.ndim != 1 or hs.size == 0 or not np.all(np.isfinite(hs) & (hs > 0)):
        raise InvalidArgument(f"hs={hs!r} is invalid; it must be a 1-d array of finite steps > 0")
    system, solver_name, terms = _modified_setup(solver, system, max(orders))
    warn_if_float32("a modified-equation defect")
    y = system.y0 if y is None else jnp.asarray(y, dtype=jnp.result_type(float))
    t0 = jnp.asarray(system.t0, dtype=jnp.result_type(float))

    def one(keep, h):
        frozen = system.with_(
            vector_field=lambda t, yy, args, _: _truncated_series(terms, keep, t, yy, args, h),
            y0=y,
            t1=t0 + h,
        )
        flow, result = solve_limit(frozen, (t0 + h)[None], rtol=DEFECT_RTOL, solver_name="Dopri8")
        gap = jnp.max(jnp.abs(flow[0] - to_map(system, solver, h)(y)))
        return jnp.where(result == diffrax.RESULTS.successful, gap, jnp.nan)

    keep, h = np.meshgrid(np.asarray(orders), hs, indexing="ij")
    defect = np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(keep.ravel()), jnp.asarray(h.ravel())))
    rows = pd.DataFrame(
        {
            "solver": solver_name,
            "system": system.name,
            "order": keep.ravel(),
            "h": h.ravel(),
            "defect": defect,
            "status": np.where(np.isfinite(defect), "ok", "solve_failed"),
        }
    )
    return ModifiedDefects.from_rows(rows)


# ------------------------------------------------------------------------------- comparison


def compare(
    ode_system,
    phi: Callable,
    h: float,
    horizon: float,
    *,
    threshold: float = 1e-2,
    rtol: float = 1e-12,
    label: str | None = None,
) -> pd.DataFrame:
    """The map's orbit against the ODE's solution at matching times t_n = t0 + n·h, tidily.

    The ODE (the h → 0 limit of `ode_system`, from its y0) is solved accurately by
    `reference.solve_limit`; the map is iterated from the same y0 for n = 0 … round(horizon/h).
    One row per n with columns: system, map, h, step, t, error (max-norm gap e_n),
    divergence_rate (the finite-time rate ln(e_n/e_1)/(t_n - t_1), NaN for n ≤ 1 or e_1 = 0),
    time_to_threshold (first t_n with e_n > threshold; NaN if never), threshold, status
    ("ok", "nonfinite" once the orbit or solution is not finite, "ode_failed"), and the states
    y_map_i, y_ode_i (phase-portrait data).

    Args:
        ode_system: a System or catalog name with a y0; its h → 0 limit is the ODE.
        phi: the map y -> y_next (e.g. from `to_map`), iterated from the system's y0.
        h: the time one map iterate stands for.
        horizon: compare up to t0 + horizon (≥ h).
        threshold: the gap that defines time_to_threshold.
        rtol: tolerance of the ODE solve.
        label: the map's name in the table (default: phi's __name__).

    Returns:
        A DataFrame with one row per iterate n = 0 … round(horizon/h), columns as above.

    Examples:
        >>> from analysis import systems
        >>> logistic = systems.get("logistic")
        >>> df = compare(logistic, to_map(logistic, "Euler", 0.1), 0.1, 5.0, threshold=1e-3)
        >>> len(df), bool(df["time_to_threshold"].iloc[0] > 0)
        (51, True)
    """
    system = _systems.get(ode_system)
    _check_callable("phi", phi)
    _check_step("h", h)
    if not (np.isfinite(horizon) and horizon >= h):
        raise InvalidArgument(f"horizon={horizon!r} is invalid; it must be finite and >= h={h}")
    require_positive("threshold", threshold)
    if system.y0 is None:
        raise InvalidArgument(f"ode_system={system.name!r} has no y0; build it with one")
    warn_if_float32("a map/ODE comparison")
    n = int(round(horizon / h))
    ts = system.t0 + h * np.arange(n + 1)
    orbit = np.asarray(jax.jit(lambda y0: iterate(phi, y0, n))(system.y0))
    ode, result = limit_solution(system.with_(t1=float(ts[-1])), ts, rtol=rtol)
    ode = np.asarray(ode)
    orbit2 = orbit.reshape(n + 1, -1)
    ode2 = ode.reshape(n + 1, -1)
    finite = np.all(np.isfinite(orbit2), axis=1) & np.all(np.isfinite(ode2), axis=1)
    finite = np.logical_and.accumulate(finite)
    error = np.where(finite, np.max(np.abs(orbit2 - ode2), axis=1), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.log(error / error[1]) / (ts - ts[1])  # n >= 1 since horizon >= h
    rate[:2] = np.nan
    rate[~np.isfinite(rate)] = np.nan
    exceeded = np.flatnonzero(error > threshold)
    if result != diffrax.RESULTS.successful:
        status = np.full(n + 1, "ode_failed", dtype=object)
    else:
        status = np.where(finite, "ok", "nonfinite").astype(object)
    df = pd.DataFrame(
        {
            "system": system.name,
            "map": label or getattr(phi, "__name__", "map"),
            "h": float(h),
            "step": np.arange(n + 1),
            "t": ts,
            "error": error,
            "divergence_rate": rate,
            "time_to_threshold": ts[exceeded[0]] if exceeded.size else np.nan,
            "threshold": float(threshold),
            "status": status,
        }
    )
    for i in range(orbit2.shape[1]):
        df[f"y_map_{i}"] = orbit2[:, i]
    for i in range(ode2.shape[1]):
        df[f"y_ode_{i}"] = ode2[:, i]
    return df
