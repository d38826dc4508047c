"""What a researcher would write instead of `analysis.sweep`, and the near-limit reference.

- `naive_solve`: one `diffrax.diffeqsolve` per setting with the setting as a Python float.
  diffeqsolve is an `equinox.filter_jit` function and equinox treats Python floats as static,
  so every new step size or tolerance is a new compilation.
- `jit_solver`: the same solve under one `jax.jit` with the setting as a traced argument,
  compiled once per (system, solver, controller kind) and called once per setting.
- `solve_ivp_fixed` / `solve_ivp_adaptive`: scipy.integrate.solve_ivp per setting. solve_ivp has
  no fixed-step mode; `solve_ivp_fixed` forces one by first_step = max_step = h and tolerances
  so loose (rtol = atol = 1e10) that every step is accepted, so it takes the same steps as a
  fixed-step diffrax solve (RK45 is the Dormand–Prince pair of diffrax's Dopri5, RK23 the
  Bogacki–Shampine pair of Bosh3).
- `scan_rk`: a hand-written fixed-step explicit Runge–Kutta loop, `jax.lax.scan` over the
  largest step count with finished lanes masked, vmapped over the whole grid: what the hardware
  allows for a grid of fixed-step solves, with no step-size machinery at all.

Example:
    >>> from analysis import systems
    >>> run = scan_rk(systems.get("linear"), "Heun", n_max=4)
    >>> run(jnp.array([0.25]), jnp.array([4]))  # 4 Heun steps of y' = -y: (1 - h + h²/2)^4
    Array([0.37252903], dtype=float64)
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import scipy.integrate

from analysis import controller as _controller
from analysis import solvers

__all__ = [
    "SCIPY_FIXED",
    "naive_solve",
    "jit_solver",
    "NUMPY_FIELDS",
    "numpy_field",
    "solve_ivp_fixed",
    "solve_ivp_adaptive",
    "scan_rk",
    "scan_solver_step",
]

#: The solve_ivp method used for each diffrax solver: the same pair where scipy has it
#: (RK23 = Bosh3's Bogacki–Shampine, RK45 = Dopri5's Dormand–Prince; Tsit5 has the same 7 FSAL
#: stages), DOP853 for Dopri8 (an 8th-order 12-stage pair, not the same tableau), and RK23, the
#: cheapest method solve_ivp has, for Euler and Heun, which it lacks.
SCIPY_FIXED = {
    "Euler": "RK23",
    "Heun": "RK23",
    "Bosh3": "RK23",
    "Tsit5": "RK45",
    "Dopri5": "RK45",
    "Dopri8": "DOP853",
}


def _term_solver(system, solver, fixed: bool):
    solver = solvers.get(solver)
    if fixed:
        solver = solvers.for_fixed_steps(solver)
    return diffrax.ODETerm(system.limit_field), solver


def naive_solve(system, solver, *, dt0=None, controller=None, rtol=None, atol=None, max_steps):
    """One solve written the obvious way, settings as Python floats; returns (y1, num_steps).

    Fixed steps when controller is None (dt0 = the step), else the preset `controller` at
    (rtol, atol). Each distinct float is a distinct compilation of diffeqsolve.
    """
    term, solver = _term_solver(system, solver, controller is None)
    if controller is None:
        ctrl, dt0 = diffrax.ConstantStepSize(), float(dt0)
    else:
        ctrl = _controller.make(controller, float(rtol), float(atol))
    sol = diffrax.diffeqsolve(
        term,
        solver,
        system.t0,
        system.t1,
        dt0,
        system.y0,
        system.args,
        stepsize_controller=ctrl,
        saveat=diffrax.SaveAt(t1=True),
        max_steps=max_steps,
        throw=False,
    )
    return np.asarray(sol.ys[-1]), int(sol.stats["num_steps"])


def jit_solver(system, solver, *, controller=None, max_steps):
    """A jitted single solve: fixed `f(dt0)` or adaptive `f(rtol, atol)` -> (y1, num_steps).

    Settings are traced arguments, so one compilation serves every setting of the loop.
    """
    term, solver = _term_solver(system, solver, controller is None)

    def solve(*setting):
        if controller is None:
            ctrl, dt0 = diffrax.ConstantStepSize(), setting[0]
        else:
            ctrl, dt0 = _controller.make(controller, *setting), None
        sol = diffrax.diffeqsolve(
            term,
            solver,
            system.t0,
            system.t1,
            dt0,
            system.y0,
            system.args,
            stepsize_controller=ctrl,
            saveat=diffrax.SaveAt(t1=True),
            max_steps=max_steps,
            throw=False,
        )
        return sol.ys[-1], sol.stats["num_steps"]

    return jax.jit(solve)


#: The four benchmark systems' fields in plain numpy, as a scipy user would write them (a jitted
#: jax field called from scipy pays jax's per-call dispatch, ~10 µs, on every evaluation).
NUMPY_FIELDS = {
    "linear10": lambda t, y, a: a @ y,
    "lotka_volterra": lambda t, y, a: np.array(
        [a[0] * y[0] - a[1] * y[0] * y[1], a[2] * y[0] * y[1] - a[3] * y[1]]
    ),
    "van_der_pol": lambda t, y, a: np.array([y[1], a * (1 - y[0] ** 2) * y[1] - y[0]]),
    "kepler": lambda t, y, a: np.concatenate([y[2:], -y[:2] / np.sum(y[:2] ** 2) ** 1.5]),
}


def numpy_field(name: str, system):
    """fun(t, y) for solve_ivp: the catalog system `name`'s field in numpy, its args bound."""
    f, args = NUMPY_FIELDS[name], system.args
    args = None if args is None else np.asarray(args)
    return lambda t, y: f(t, y, args)


def solve_ivp_fixed(fun, system, method: str, h: float):
    """solve_ivp of fun = `numpy_field(...)` forced to constant steps h; (y1, steps, nfev)."""
    sol = scipy.integrate.solve_ivp(
        fun,
        (system.t0, system.t1),
        np.asarray(system.y0),
        method=method,
        first_step=h,
        max_step=h,
        rtol=1e10,
        atol=1e10,
    )
    return sol.y[:, -1], len(sol.t) - 1, sol.nfev


def solve_ivp_adaptive(fun, system, method: str, rtol: float, atol: float):
    """solve_ivp of fun at tolerances (rtol, atol); (y1, steps, evaluations, status).

    Evaluations are scipy's nfev plus dim per Jacobian (Radau's finite-difference Jacobian
    calls the field once per column, and scipy does not count those calls in nfev).
    """
    sol = scipy.integrate.solve_ivp(
        fun,
        (system.t0, system.t1),
        np.asarray(system.y0),
        method=method,
        rtol=rtol,
        atol=atol,
    )
    return sol.y[:, -1], len(sol.t) - 1, sol.nfev + sol.njev * sol.y.shape[0], sol.status


def _tableau(solver: str):
    """(a rows, b, c, fsal) of an explicit RK solver as Python floats; Euler by hand."""
    if solver == "Euler":
        return [], [1.0], [], False
    tab = solvers.info(solver).tableau
    rows = [[float(a) for a in row] for row in tab.a_lower]
    return rows, [float(b) for b in tab.b_sol], [float(c) for c in tab.c], bool(tab.fsal)


def scan_rk(system, solver: str, n_max: int):
    """run(h, n) -> y after n[i] steps of size h[i], for a batch of (h, n); compiled on first use.

    One `lax.scan` of n_max steps, lanes past their own n frozen by `jnp.where`; vmapped over the
    batch. Zero tableau coefficients are skipped at trace time; FSAL tableaus reuse their last
    stage as the next first stage, so evaluations per step are those of diffrax (stages, or
    stages - 1 with FSAL).
    """
    a_rows, b, c, fsal = _tableau(solver)
    f, args, t0 = system.limit_field, system.args, system.t0

    def combine(y, h, coeffs, ks):
        terms = [a * k for a, k in zip(coeffs, ks, strict=False) if a != 0.0]
        return y + h * sum(terms[1:], terms[0]) if terms else y

    def one(h, n):
        def step(carry, i):
            y, k_first = carry
            t = t0 + i * h
            ks = [k_first]
            for row, ci in zip(a_rows, c, strict=True):
                ks.append(f(t + ci * h, combine(y, h, row, ks), args))
            y_new = combine(y, h, b, ks)
            k_next = ks[-1] if fsal else f(t + h, y_new, args)
            live = i < n
            return (jnp.where(live, y_new, y), jnp.where(live, k_next, k_first)), None

        y0 = jnp.asarray(system.y0)
        (y, _), _ = jax.lax.scan(step, (y0, f(t0, y0, args)), jnp.arange(n_max))
        return y

    return jax.jit(jax.vmap(one))


def scan_solver_step(system, solver: str, n_max: int):
    """Like `scan_rk`, but each step is diffrax's own `solver.step` (a diagnostic).

    Separates the cost of diffrax's Runge–Kutta step (stages in an inner loop, error estimate,
    dense output) from the cost of diffeqsolve's loop and step-size machinery.
    """
    term = diffrax.ODETerm(system.limit_field)
    stepper = solvers.get(solver)
    t0, args = system.t0, system.args

    def one(h, n):
        def body(carry, i):
            y, state = carry
            t = t0 + i * h
            y1, _, _, state1, _ = stepper.step(term, t, t + h, y, args, state, False)
            live = i < n
            keep = jax.tree.map(lambda a, b: jnp.where(live, a, b), (y1, state1), (y, state))
            return keep, None

        y0 = jnp.asarray(system.y0)
        state = stepper.init(term, t0, t0 + h, y0, args)
        (y, _), _ = jax.lax.scan(body, (y0, state), jnp.arange(n_max))
        return y

    return jax.jit(jax.vmap(one))
