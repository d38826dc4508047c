"""Invariant drift: how far a solver's steps move a conserved quantity, as a function of h.

For a system with invariants I (energy, angular momentum, a first integral), a constant-step
solve y_0, y_1, ..., y_N (t_N = t1) drifts by

    D(h) = max_{0 ≤ n ≤ N} |I(y_n) - I(y_0)|.

A method of order p has D(h) = O(h^p) on a fixed span, unless it conserves I: the implicit
midpoint rule conserves every quadratic invariant (D is round-off), and a symplectic method
keeps the energy error bounded without secular growth. Euler on the harmonic oscillator
q' = p, p' = -ω²q multiplies the energy by exactly 1 + ω²h² per step, so
D(h) = E_0((1 + ω²h²)^N - 1) ≈ E_0·ω²·t1·h: order 1.

`drift(system, solvers, dt0)` returns an `InvariantDrift` with one row per (solver, step,
invariant) and the observed order of each (solver, invariant) line, fitted once by
`analysis.convergence.fit_order` (with the round-off floor eps·|I_0|·N, so a conserved invariant
is "not_converging" at round-off, not an order); `analysis.plotting.invariant_drift` draws it.

Examples:
    >>> from analysis import invariants
    >>> result = invariants.drift("harmonic", ["Euler", "Heun"], dt0=[0.02, 0.01, 0.005, 0.0025])
    >>> result.fits[["solver", "invariant", "status"]].values.tolist()
    [['Euler', 'energy', 'ok'], ['Heun', 'energy', 'ok']]
    >>> [round(p) for p in result.fits["order"]]                 # |R(ih)|² = 1 + h⁴/4 for Heun
    [1, 3]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import convergence as _convergence
from . import solvers as _solvers
from . import systems as _systems
from ._diffrax_private import result_code
from .batch import status_of
from .errors import InvalidArgument
from .prepare import Prepared, prepare
from .result import Result

__all__ = ["InvariantDrift", "drift"]


@dataclasses.dataclass(frozen=True, repr=False)
class InvariantDrift(Result):
    """Drift of each invariant under each solver and step, with the fitted order of each line.

    Attributes:
        rows: one row per (solver, dt0, invariant): system, solver, h, invariant, drift
            (max_n |I(y_n) - I(y_0)|), initial (I(y_0)), steps (N), roundoff_floor
            (eps·max(1, |I_0|)·N), status (the sweep's status words: "ok", "nonfinite", ...).
        fits: one row per (solver, invariant): order, ci_low, ci_high, status and reason of
            `analysis.convergence.fit_order` on that line.

    Examples:
        >>> result = drift("harmonic", "Euler", dt0=[0.02, 0.01, 0.005])
        >>> list(result.fits.columns)
        ['system', 'solver', 'invariant', 'order', 'ci_low', 'ci_high', 'status', 'reason']
    """

    rows: pd.DataFrame
    fits: pd.DataFrame


@eqx.filter_jit
def _drifts(prepared: Prepared, dt0s, max_steps: int, names: tuple[str, ...]):
    """Per step size: (drift per invariant, I(y_0) per invariant, steps, result code, y_N)."""
    invariants = [prepared.system.invariants[name] for name in names]

    def one(dt0):
        sol = prepared.solve(dt0, saveat=diffrax.SaveAt(t0=True, steps=True), max_steps=max_steps)
        steps = sol.stats["num_accepted_steps"]
        taken = jnp.arange(max_steps + 1) <= steps  # y_0 and the steps; the rest is padding
        values = jnp.stack([jax.vmap(inv)(sol.ys) for inv in invariants])
        change = jnp.where(taken, jnp.abs(values - values[:, :1]), 0.0)
        y_last = jax.tree_util.tree_map(lambda y: y[steps], sol.ys)
        return change.max(axis=1), values[:, 0], steps, result_code(sol.result), y_last

    return jax.vmap(one)(dt0s)


def _check(system, solvers, dt0, invariants):
    if not system.invariants:
        raise InvalidArgument(
            f"system={system.name!r} has no invariants; drift needs a System with "
            "invariants={'name': y -> scalar} (e.g. 'harmonic', 'kepler')"
        )
    names = tuple(system.invariants) if invariants is None else tuple(invariants)
    unknown = [n for n in names if n not in system.invariants]
    if unknown or not names:
        raise InvalidArgument(
            f"invariants={invariants!r} is invalid for {system.name!r}; choose from "
            f"{sorted(system.invariants)}"
        )
    h = np.asarray(dt0, dtype=float).ravel()
    if h.size == 0 or not np.all(np.isfinite(h) & (h > 0)):
        raise InvalidArgument(f"dt0={dt0!r} is invalid; give one or more finite steps > 0")
    solvers = [solvers] if isinstance(solvers, str) else list(solvers)
    if not solvers:
        raise InvalidArgument("solvers=[] is invalid; give one or more solvers")
    for solver in solvers:
        _solvers.get(solver)  # an unknown name is refused before anything is compiled
    return names, h, solvers


def drift(
    system, solvers: str | Sequence, dt0, *, invariants: Sequence[str] | None = None
) -> InvariantDrift:
    """Drift D(h) = max_n |I(y_n) - I(y_0)| of a system's invariants under constant steps h.

    Every (solver, dt0) is one solve through `analysis.prepare` (StepAware where the field reads
    h); the steps of a solver are vmapped in one compiled call, cached on structure.

    Args:
        system: a `System` with `invariants`, or a catalog name ("harmonic", "kepler", ...).
        solvers: a solver (name or diffrax solver) or a list of them.
        dt0: the constant steps h (each must divide the span into at most 2^20 steps).
        invariants: the names to measure (default: all of the system's).

    Returns:
        An `InvariantDrift` (rows and fitted orders).

    Raises:
        InvalidArgument: no invariants, an unknown invariant, a step that is not > 0.

    Examples:
        >>> result = drift("kepler", "Heun", dt0=[0.01, 0.005, 0.0025], invariants=["energy"])
        >>> result.rows[["h", "invariant", "status"]].values.tolist()[0]
        [0.01, 'energy', 'ok']
    """
    system = _systems.get(system)
    names, h, solver_list = _check(system, solvers, dt0, invariants)
    span = system.t1 - system.t0
    needed = math.ceil(span / h.min() * (1 + 1e-9))
    if needed > 2**20:
        raise InvalidArgument(
            f"dt0={h.min()!r} is too small: {needed} steps over [{system.t0}, {system.t1}]; "
            "at most 2^20 steps are stored per solve"
        )
    max_steps = 1 << max(needed, 1).bit_length()  # powers of two: grids share compiles
    rows = []
    for solver in solver_list:
        prepared = prepare(system, solver)
        label = solver if isinstance(solver, str) else type(solver).__name__
        change, initial, steps, codes, y_last = jax.device_get(
            _drifts(prepared, jnp.asarray(h), max_steps, names)
        )
        eps = np.finfo(np.asarray(initial).dtype).eps
        for i, step in enumerate(h):
            y_final = np.concatenate(
                [np.ravel(leaf[i]) for leaf in jax.tree_util.tree_leaves(y_last)]
            )
            status = status_of(int(codes[i]), y_final)
            for k, name in enumerate(names):
                rows.append(
                    dict(
                        system=system.name,
                        solver=label,
                        h=float(step),
                        invariant=name,
                        drift=float(change[i, k]) if status == "ok" else math.nan,
                        initial=float(initial[i, k]),
                        steps=int(steps[i]),
                        roundoff_floor=eps * max(1.0, abs(float(initial[i, k]))) * int(steps[i]),
                        status=status,
                    )
                )
    table = pd.DataFrame(rows)
    return InvariantDrift(rows=table, fits=_fits(table))


def _fits(rows: pd.DataFrame) -> pd.DataFrame:
    fits = []
    for (system, solver, name), line in rows.groupby(["system", "solver", "invariant"], sort=False):
        fit = _convergence.fit_order(
            line["h"].to_numpy(),
            line["drift"].to_numpy(),
            status=line["status"].to_numpy(),
            floor=line["roundoff_floor"].to_numpy(),
        )
        fits.append(
            dict(
                system=system,
                solver=solver,
                invariant=name,
                order=fit.order,
                ci_low=fit.ci_low,
                ci_high=fit.ci_high,
                status=fit.status,
                reason=fit.reason,
            )
        )
    return pd.DataFrame(fits)
