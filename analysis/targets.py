"""Convergence targets: what a run's error is measured against.

For a step-dependent field f(t, y, args, h) "converges to what?" has a choice of answer. A
target gives, on the save times ts of a measurement, the target trajectory y*(ts), an estimate
of its own error per time, and a label; `analysis.convergence.measure` takes the norms of
y(ts) - y*(ts). Every reference solve goes through `analysis.reference.trajectory` (one path:
`analysis.reference.solve_limit`, i.e. `analysis.prepare`).

- `Limit()` (the string ``"limit"``): the flow of the h = 0 ODE, exact when the system has an
  exact solution, else the reference solve (`analysis.reference.settings`: Dopri8 at
  rtol = atol = 1e-13, Kvaerno5 at 1e-12 if stiff) with its error estimated by a 100× looser
  solve; a failed solve gives NaN errors and a label saying why;
- `Exact()` (``"exact"``): the system's exact solution y(t), refused when there is none;
- `ReferenceSolve()`: the reference solve even where an exact solution exists (to check one
  against the other);
- `Richardson(order=None)` (``"richardson"``): the h → 0 limit extrapolated from the runs
  themselves, y* = y_1 + (y_1 - y_2)/((h_2/h_1)^p - 1) from the two finest runs (which are then
  left out of the fit), its error estimated by extrapolating the next pair. p is `order` if
  given, else the solver's nominal order for an h-free field, else (a step-dependent field,
  whose order need not be nominal) the three-grid observed order of the three finest runs;
- `Setting(solver, h)`: another discrete solution, e.g. the model at the step it was trained
  at: how far each run is from it.

`as_target` turns the strings above into targets.

Examples:
    >>> import numpy as np
    >>> from analysis import systems
    >>> linear = systems.get("linear")                       # y' = -y, y(1) = e^-1
    >>> values = as_target("limit").values(linear, np.array([1.0]))
    >>> values.label, values.ys.round(6).tolist(), values.error.tolist()
    ('limit: exact', [[0.367879]], [0.0])
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import scipy.optimize

from . import reference as _reference
from . import solvers as _solvers
from . import systems as _systems
from ._sweep import sweep
from .errors import InvalidArgument

__all__ = [
    "Exact",
    "FrozenFieldWarning",
    "Limit",
    "ReferenceSolve",
    "Richardson",
    "Setting",
    "Target",
    "TargetValues",
    "as_target",
    "three_grid_order",
]


class FrozenFieldWarning(UserWarning):
    """A convergence target called "limit" is a field frozen at some h (`System.frozen_h`), such
    as a lifted map's (Φ(y) − y)/h_train: the errors measure convergence to that ODE, which is
    no h → 0 limit of the model.

    Examples:
        >>> from analysis import discrete
        >>> lifted = discrete.lift(lambda y: 0.5 * y, h_train=0.25, y0=1.0)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = Limit().values(lifted, np.array([1.0]))
        >>> [w.category.__name__ for w in caught]
        ['FrozenFieldWarning']
    """


@dataclasses.dataclass(frozen=True)
class TargetValues:
    """A target on a grid of save times: what the errors are measured against.

    Attributes:
        label: the target in words (the `target` column of a measurement).
        ys: the target trajectory, shape (len(ts), state size); NaN where there is none.
        error: the target's own error estimate per time (0 for an exact solution).
        built_from: indices (into the runs given) of the runs the target was built from
            (Richardson), which a fit must leave out; empty otherwise.

    Examples:
        >>> v = TargetValues("limit: exact", np.zeros((1, 2)), np.zeros(1))
        >>> v.built_from.tolist()
        []
    """

    label: str
    ys: np.ndarray
    error: np.ndarray
    built_from: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, int))


class Target:
    """Base of the targets. A target built from the runs (`from_runs` True) implements
    `values_from_runs`, the others `values`.

    Examples:
        >>> Limit().from_runs, Richardson().from_runs
        (False, True)
    """

    from_runs = False

    def values(self, system, ts: np.ndarray) -> TargetValues:
        """The target of `system` at the save times `ts` (from t0 to t1)."""
        raise NotImplementedError(f"{type(self).__name__} is built from the runs")

    def values_from_runs(self, system, solver, ys: np.ndarray, h: np.ndarray) -> TargetValues:
        """The target from successful runs `ys` (runs, times, state) at steps `h` of `solver`."""
        raise NotImplementedError(f"{type(self).__name__} is not built from the runs")


def _flat(ys, n: int) -> np.ndarray:
    return np.asarray(ys).reshape(n, -1)


@dataclasses.dataclass(frozen=True)
class Limit(Target):
    """The h = 0 ODE's flow: exact where the system has an exact solution, else the reference
    solve of `analysis.reference.trajectory`. Warns (`FrozenFieldWarning`) for a field frozen at
    some h, whose "limit" is that frozen field's ODE.

    Examples:
        >>> from analysis import systems
        >>> Limit().values(systems.get("lotka_volterra"), np.array([1.0])).label
        'limit: reference (Dopri8, rtol=1e-13)'
    """

    def values(self, system, ts):
        self._warn_if_frozen(system)
        ref = _reference.trajectory(system, ts, exact=self._use_exact())
        return TargetValues(f"limit: {ref.source}", _flat(ref.ys, len(ts)), ref.error_estimate)

    def _use_exact(self) -> bool:
        return True

    @staticmethod
    def _warn_if_frozen(system):
        if getattr(system, "frozen_h", None) is not None:
            warnings.warn(
                f"system {system.name!r} is frozen at h = {system.frozen_h:g} (a lifted map): "
                "its target='limit' is the ODE of that frozen field, not an h → 0 limit of the map",
                FrozenFieldWarning,
                stacklevel=5,
            )


@dataclasses.dataclass(frozen=True)
class ReferenceSolve(Limit):
    """The reference solve of the h = 0 ODE, even where the system has an exact solution.

    Examples:
        >>> from analysis import systems
        >>> v = ReferenceSolve().values(systems.get("linear"), np.array([1.0]))
        >>> v.label, bool(abs(v.ys[0, 0] - np.exp(-1)) < 1e-12)
        ('limit: reference (Dopri8, rtol=1e-13)', True)
    """

    def _use_exact(self) -> bool:
        return False


@dataclasses.dataclass(frozen=True)
class Exact(Limit):
    """The system's exact solution y(t) of the h = 0 ODE; refused for a system without one.

    Examples:
        >>> from analysis import systems
        >>> Exact().values(systems.get("harmonic"), np.array([np.pi])).ys.round(12).tolist()
        [[-1.0, -0.0]]
    """

    def values(self, system, ts):
        if system.exact is None:
            raise InvalidArgument(
                f"target=Exact() is invalid for system {system.name!r}: it has no exact "
                "solution; use Limit() (a reference solve) or Richardson()"
            )
        return super().values(system, ts)


@dataclasses.dataclass(frozen=True)
class Richardson(Target):
    """The h → 0 limit extrapolated from the two finest runs with order `order` (see the module
    docstring for the default), its error estimated by extrapolating the next pair.

    Args:
        order: the order p of the extrapolation (None: nominal, or observed for a field that
            reads h).

    Examples:
        >>> h = np.array([0.1, 0.05, 0.025])
        >>> ys = (1 + 3 * h**2)[:, None, None]                       # y_h = 1 + 3h²: limit 1
        >>> from analysis import systems
        >>> v = Richardson(order=2).values_from_runs(systems.get("linear"), "Heun", ys, h)
        >>> v.label, v.ys.round(12).tolist(), v.built_from.tolist()
        ('richardson (order 2, given)', [[1.0]], [2, 1])
    """

    order: float | None = None
    from_runs = True

    def __post_init__(self):
        if self.order is not None and not self.order > 0:
            raise InvalidArgument(f"richardson_order={self.order!r} must be > 0")

    def values_from_runs(self, system, solver, ys, h):
        p, label = self._order(system, solver, ys, h)
        if len(h) < 3 or not np.isfinite(p):
            nan = np.full(ys.shape[1:], np.nan)
            return TargetValues(label, nan, nan)
        by_h = np.argsort(h)
        y1, y2, y3 = (ys[by_h[k]] for k in range(3))
        h1, h2, h3 = h[by_h[:3]]
        best = y1 + (y1 - y2) / ((h2 / h1) ** p - 1)
        next_ = y2 + (y2 - y3) / ((h3 / h2) ** p - 1)
        return TargetValues(label, best, np.abs(best - next_), by_h[:2])

    def _order(self, system, solver, ys, h) -> tuple[float, str]:
        """The order to extrapolate with, and the label saying where it came from."""
        if self.order is not None:
            return float(self.order), f"richardson (order {self.order:g}, given)"
        if not system.h_dependent:
            p = _solvers.info(solver).order
            return float(p), f"richardson (nominal order {p:g})"
        if len(h) < 3:
            return np.nan, "richardson (no order: fewer than 3 successful runs)"
        p = three_grid_order(ys, h)
        if not np.isfinite(p):
            return p, "richardson (no order: the 3 finest runs do not converge)"
        return p, f"richardson (order {p:.2f} observed on the 3 finest runs)"


def three_grid_order(ys: np.ndarray, h: np.ndarray) -> float:
    """The order p with (h₃^p − h₂^p)/(h₂^p − h₁^p) = ‖y₃ − y₂‖/‖y₂ − y₁‖ from the three finest
    runs (h₁ < h₂ < h₃; final states, the last save time), i.e. y_h = y* + C·h^p solved for p;
    NaN if none in (0, 20).

    Examples:
        >>> h = np.array([0.4, 0.2, 0.1])
        >>> round(three_grid_order((2 + h**1.5)[:, None, None], h), 6)
        1.5
    """
    order = np.argsort(h)[:3]
    (y1, y2, y3), (h1, h2, h3) = ys[order][:, -1], h[order]
    ratio = np.max(np.abs(y3 - y2)) / np.max(np.abs(y2 - y1))

    def mismatch(p):
        return np.log((h3**p - h2**p) / (h2**p - h1**p)) - np.log(ratio)

    lo, hi = 1e-3, 20.0
    if not np.isfinite(ratio) or mismatch(lo) * mismatch(hi) > 0:
        return np.nan
    return float(scipy.optimize.brentq(mismatch, lo, hi, xtol=1e-10))


@dataclasses.dataclass(frozen=True)
class Setting(Target):
    """A discrete solution as target: `solver` at the fixed step `h` on `system` (default: the
    system being measured), e.g. the discretization a model was trained at.

    Args:
        solver: the target's solver (name or object).
        h: its fixed step.
        system: the target's System or catalog name (default: the measured system).

    Examples:
        >>> from analysis import systems
        >>> v = Setting("Euler", 0.5).values(systems.get("linear"), np.array([1.0]))
        >>> v.label, v.ys.tolist()                                    # (1 - 1/2)²
        ('Euler at h=0.5', [[0.25]])
    """

    solver: str
    h: float
    system: object = None

    def label(self) -> str:
        """The setting in words, e.g. 'Euler at h=0.1'."""
        return f"{self.solver} at h={self.h:g}"

    def values(self, system, ts):
        other = _systems.get(self.system) if self.system is not None else system
        if (other.t0, other.t1) != (system.t0, system.t1):
            raise InvalidArgument(
                f"target system {other.name!r} spans [{other.t0}, {other.t1}], but the measured "
                f"system spans [{system.t0}, {system.t1}]; they must agree"
            )
        row = sweep(other, self.solver, dt0=[self.h], save_ts=ts).iloc[0]
        if row["status"] != "ok":
            raise RuntimeError(f"the target solve {self.label()} failed ({row['status']})")
        return TargetValues(self.label(), _flat(row["ys"], len(ts)), np.zeros(len(ts)))


_NAMED = {"limit": Limit, "exact": Exact, "reference": ReferenceSolve}


def as_target(target, richardson_order: float | None = None) -> Target:
    """A `Target` from a target or its string form.

    Args:
        target: a `Target`, or "limit", "exact", "reference" or "richardson".
        richardson_order: the order of a "richardson" target (see `Richardson`).

    Returns:
        The `Target`.

    Raises:
        InvalidArgument: anything else.

    Examples:
        >>> as_target("richardson", richardson_order=2)
        Richardson(order=2)
        >>> as_target("limit"), as_target(Setting("Euler", 0.1)).label()
        (Limit(), 'Euler at h=0.1')
    """
    if isinstance(target, Target):
        return target
    if target == "richardson":
        return Richardson(richardson_order)
    if isinstance(target, str) and target in _NAMED:
        return _NAMED[target]()
    raise InvalidArgument(
        f"target={target!r} is invalid; use 'limit', 'exact', 'reference', 'richardson' or a "
        "target object (analysis.targets.Limit, Exact, ReferenceSolve, Richardson, Setting)"
    )
