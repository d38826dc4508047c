"""Training a neural field through a discretization: the data, the solves, the fit.

A neural ODE is trained *through* a discretization (discretize-then-optimise), so it can learn a
continuous vector field, or a map that only works at the step and solver it was trained with.

- `Discretization`: a solver at a fixed step h, or adaptive (PID, atol = rtol).
- `trajectories`: true states of a system's h → 0 limit from random initial values, by the
  reference solver of `analysis.reference` (`true_states`).
- `train`: full-batch Adam on the loss through the solve; every solve of a model (here and in
  `analysis.neural`) goes through `analysis.prepare.prepare(...).solve`.

Loss = mean of squared differences between the model's and the true states over trajectories,
save times after t0 and components.

Examples:
    >>> from analysis import models, systems, training
    >>> spiral = systems.get("linear10", dim=2, seed=0)        # damped spiral
    >>> data = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=0)
    >>> euler = training.Discretization("Euler", h=0.5)
    >>> model, losses = training.train(models.make("h_input", spiral), data, euler, steps=20)
    >>> losses.shape, bool(losses[-1] < losses[0])
    ((20,), True)
"""

from __future__ import annotations

import dataclasses

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import reference as _reference
from . import solvers as _solvers
from . import systems as _systems
from ._diffrax_private import result_code
from .errors import InvalidArgument, require_positive, warn_if_float32
from .models import require_model
from .prepare import prepare

__all__ = [
    "ADAPTIVE_MAX_STEPS",
    "Discretization",
    "Trajectories",
    "trajectories",
    "true_states",
    "steps_to",
    "solve",
    "train",
]

#: Step budget of an adaptive solve (a solve that needs more ends with status "max_steps").
ADAPTIVE_MAX_STEPS = 4096


@dataclasses.dataclass(frozen=True)
class Discretization:
    """One discretization: a solver at a fixed step h, or adaptive (PID, atol = rtol).

    Args:
        solver: a solver registry name.
        h: the fixed step (give h or rtol, not both).
        rtol: the tolerance of an adaptive solve (atol = rtol).

    Examples:
        >>> Discretization("Euler", h=0.5).label, Discretization("Tsit5", rtol=1e-6).label
        ('Euler h=0.5', 'Tsit5 rtol=1e-06')
    """

    solver: str
    h: float | None = None
    rtol: float | None = None

    def __post_init__(self):
        _solvers.get(self.solver)  # raises InvalidArgument for an unknown name
        if (self.h is None) == (self.rtol is None):
            raise InvalidArgument(
                f"Discretization({self.solver!r}, h={self.h!r}, rtol={self.rtol!r}): give "
                "exactly one of h (fixed steps) or rtol (adaptive steps)"
            )
        name, value = ("h", self.h) if self.h is not None else ("rtol", self.rtol)
        require_positive(name, value)
        if self.rtol is not None and not _solvers.info(self.solver).adaptive:
            raise InvalidArgument(
                f"solver={self.solver!r} has no error estimate, so rtol={self.rtol!r} cannot "
                "control it; give h instead or pick an adaptive solver"
            )

    @property
    def control(self) -> str:
        """ "fixed" or "adaptive"."""
        return "fixed" if self.h is not None else "adaptive"

    @property
    def step(self) -> float:
        """h for fixed steps, rtol for adaptive ones: the number a grid varies."""
        return self.h if self.h is not None else self.rtol

    @property
    def label(self) -> str:
        """The discretization in words, e.g. 'Euler h=0.5' or 'Dopri5 rtol=1e-06'."""
        if self.h is not None:
            return f"{self.solver} h={self.h:g}"
        return f"{self.solver} rtol={self.rtol:g}"


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectories:
    """True trajectories of `system`: ys[i, k] = y(ts[k]) from the initial value ys[i, 0].

    Attributes:
        system: the `System` they solve (its h → 0 limit ODE).
        ts: the save times, shape (K,), ts[0] = t0.
        ys: the states, shape (N, K, d); `y0` is ys[:, 0].

    Examples:
        >>> from analysis import systems
        >>> data = trajectories(systems.get("linear10", dim=2, seed=0), 4, horizon=2.0, saves=5)
        >>> data.ys.shape, data.ts.tolist(), data.y0.shape
        ((4, 5, 2), [0.0, 0.5, 1.0, 1.5, 2.0], (4, 2))
    """

    system: _systems.System
    ts: np.ndarray
    ys: np.ndarray

    @property
    def y0(self) -> np.ndarray:
        """The initial states, shape (trajectories, *state)."""
        return self.ys[:, 0]


@eqx.filter_jit
def true_states(system, y0s, ts):
    """y(ts[i]) of the system's limit ODE from y(ts[i, 0]) = y0s[i], for every i.

    The reference solver and tolerance of `analysis.reference.settings`
    (`analysis.reference.solve_limit` on the system started at (ts[i, 0], y0s[i])); compiled
    once per system and shapes.

    Args:
        system: a `System`.
        y0s: initial states, shape (N, d).
        ts: increasing save times per initial state, shape (N, K).

    Returns:
        The states, shape (N, K, d).

    Examples:
        >>> from analysis import systems
        >>> linear = systems.get("linear")                         # y' = -y
        >>> ys = true_states(linear, jnp.array([[1.0], [2.0]]), jnp.array([[0.0, 1.0]] * 2))
        >>> np.round(np.asarray(ys[:, 1, 0]), 9).tolist()          # y0·e^-1
        [0.367879441, 0.735758882]
    """
    _, rtol, _, _ = _reference.settings(system)

    def one(y0, t):
        started = system.with_(y0=y0, t0=t[0], t1=t[-1])
        return _reference.solve_limit(started, t, rtol=rtol)[0]

    return jax.vmap(one)(y0s, ts)


def trajectories(
    system,
    count: int,
    *,
    horizon: float | None = None,
    saves: int = 9,
    spread: float = 0.5,
    seed: int = 0,
) -> Trajectories:
    """`count` true trajectories from y0 = system.y0 + spread·N(0, I) (seeded), saved at
    `saves` equally spaced times over [t0, t0 + horizon] (default horizon: t1 - t0).

    Different seeds give disjoint draws: use one for training and another for held-out tests.

    Args:
        system: a `System` or a catalog name; its h → 0 limit is solved by the reference solver.
        count: number of trajectories N.
        horizon: length of the time span saved.
        saves: number of save times K (t0 included).
        spread: standard deviation of the initial values around system.y0.
        seed: seed of the initial values.

    Returns:
        `Trajectories` with ys of shape (N, K, d).

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)  # y' = A·y
        >>> data = trajectories(spiral, 4, horizon=2.0, saves=5, seed=0)
        >>> exact = data.y0 @ np.asarray(jax.scipy.linalg.expm(2.0 * spiral.args)).T
        >>> bool(np.allclose(data.ys[:, -1], exact, rtol=1e-9, atol=1e-12))  # y(2) = e^{2A}·y0
        True
    """
    warn_if_float32("neural training data")
    system = _systems.get(system)
    horizon = system.t1 - system.t0 if horizon is None else horizon
    if not isinstance(count, int) or count < 1:
        raise InvalidArgument(f"count={count!r} is invalid; it must be an integer >= 1")
    if not isinstance(saves, int) or saves < 2:
        raise InvalidArgument(f"saves={saves!r} is invalid; it must be an integer >= 2")
    require_positive("horizon", horizon)
    rng = np.random.default_rng(seed)
    base = np.asarray(system.y0, dtype=float)
    y0s = base + spread * rng.standard_normal((count, *base.shape))
    ts = system.t0 + np.linspace(0.0, horizon, saves)
    ys = true_states(system, jnp.asarray(y0s), jnp.broadcast_to(ts, (count, saves)))
    return Trajectories(system, ts, np.asarray(ys))


def steps_to(setting: Discretization, ts) -> int:
    """The step budget of a solve over `ts`: for fixed steps the number of steps to ts[-1]
    (every save time must lie on the step grid), for adaptive ones `ADAPTIVE_MAX_STEPS`.

    Args:
        setting: the `Discretization`.
        ts: the save times.

    Returns:
        The number of steps.

    Examples:
        >>> steps_to(Discretization("Euler", h=0.25), [0.0, 0.5, 1.0])
        4
        >>> steps_to(Discretization("Euler", h=0.3), [0.0, 0.5, 1.0])
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: h=0.3 does not divide the save times [0.0, 0.5, 1.0]; ...
    """
    if setting.h is None:
        return ADAPTIVE_MAX_STEPS
    ts = np.asarray(ts, dtype=float)
    ratios = (ts - ts[0]) / setting.h
    if np.max(np.abs(ratios - np.round(ratios))) > 1e-8 * max(1.0, np.max(ratios)):
        raise InvalidArgument(
            f"h={setting.h!r} does not divide the save times {np.round(ts - ts[0], 12).tolist()}; "
            "choose h = (save spacing)/m for an integer m, so errors are measured at steps"
        )
    return int(round(ratios[-1]))


def solve(model, solver: str, control: str, step, y0, ts, max_steps: int, *, forward=False):
    """One solve of ``model(t, y, h)`` from y0 over ts, through `analysis.prepare`.

    The field is solved as step-dependent (StepAware hands it h in every stage); `step` is h
    (control "fixed") or rtol = atol of a PID controller ("adaptive"), and may be traced.
    Fixed steps are marched (`analysis.fixed_steps.march`, diffeqsolve's numbers to round-off,
    saved at the step ends ts): a `lax.scan` of max_steps steps, reverse-mode differentiable,
    or with `forward=True` a while loop (forward mode; cheaper for one scalar input such as h,
    and when nothing is differentiated). Adaptive steps go through diffeqsolve: recursive
    checkpointing, or diffrax.ForwardMode with `forward=True`. Never raises; a traced save
    time off the step grid gives NaN there.

    Args:
        model: a callable (t, y, h) -> dy/dt, e.g. an equinox Module.
        solver: a solver name.
        control: "fixed" or "adaptive".
        step: h or rtol.
        y0: the initial state.
        ts: the save times (ts[0] is the start).
        max_steps: the step budget (`steps_to`; fixed steps: the scan's length).
        forward: differentiate in forward mode (or not at all).

    Returns:
        (ys at ts, diffrax result code, number of steps).

    Examples:
        >>> ys, code, n = solve(lambda t, y, h: -y, "Euler", "fixed", 0.5, jnp.array([1.0]),
        ...                     jnp.array([0.0, 1.0]), 2)
        >>> float(ys[-1, 0]), int(code), int(n)                    # (1 - 1/2)²
        (0.25, 0, 2)
    """
    ts = jnp.asarray(ts)
    system = _systems.System(
        name="model",
        vector_field=lambda t, y, args, h: model(t, y, h),
        y0=y0,
        t0=ts[0],
        t1=ts[-1],
        h_dependent=True,
    )
    if control == "fixed":
        end = prepare(system, solver).march(
            step, ts=ts, max_steps=max_steps, reverse_mode=not forward
        )
        return end.ys, result_code(end.result), end.num_steps
    prepared = prepare(system, solver, controller=diffrax.PIDController(rtol=step, atol=step))
    sol = prepared.solve(
        saveat=diffrax.SaveAt(ts=ts),
        max_steps=max_steps,
        adjoint=diffrax.ForwardMode() if forward else None,
    )
    return sol.ys, result_code(sol.result), sol.stats["num_steps"]


def train(
    model,
    data: Trajectories,
    setting: Discretization,
    *,
    steps: int = 300,
    learning_rate: float = 1e-2,
):
    """Fit the model to `data` through the discretization `setting` (discretize-then-optimise).

    Full-batch Adam on the mean squared error, gradients by backpropagation through the
    diffrax solve (RecursiveCheckpointAdjoint; under an adaptive controller diffrax stops
    gradients through the step-size choice). The whole loop is one compiled `lax.scan`,
    compiled once per model structure, so training is deterministic for a given model, data
    and setting, and a second model of the same structure compiles nothing.

    Args:
        model: any equinox module called as ``model(t, y, h)`` (e.g. from `models.make`).
        data: the training `Trajectories`.
        setting: the `Discretization` trained through; fixed steps must divide the save spacing.
        steps: number of Adam updates.
        learning_rate: Adam's learning rate.

    Returns:
        (trained model, losses), losses[k] being the loss before update k.

    Examples:
        >>> from analysis import models, systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = trajectories(spiral, 4, horizon=2.0, saves=5, seed=0)
        >>> euler = Discretization("Euler", h=0.5)
        >>> model, losses = train(models.make("h_input", spiral), data, euler, steps=20)
        >>> losses.shape, bool(losses[-1] < losses[0])
        ((20,), True)
    """
    require_model(model)
    if not isinstance(steps, int) or steps < 1:
        raise InvalidArgument(f"steps={steps!r} is invalid; it must be an integer >= 1")
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise InvalidArgument(f"learning_rate={learning_rate!r} is invalid; it must be > 0")
    if not isinstance(setting, Discretization):
        raise InvalidArgument(f"setting={setting!r} is not a training.Discretization")
    max_steps = steps_to(setting, data.ts)
    arrays = (jnp.asarray(data.ts), jnp.asarray(data.y0), jnp.asarray(data.ys))
    model, losses = _fit(model, setting, max_steps, steps, learning_rate, *arrays)
    return model, np.asarray(losses)


@eqx.filter_jit
def _fit(model, setting, max_steps, steps, learning_rate, ts, y0s, truth):
    """The training loop of `train`, compiled once per (model structure, setting, steps, lr)."""
    params, static = eqx.partition(model, eqx.is_inexact_array)
    optimiser = optax.adam(learning_rate)

    def objective(p):
        m = eqx.combine(p, static)
        s = setting
        ys = jax.vmap(lambda y0: solve(m, s.solver, s.control, s.step, y0, ts, max_steps)[0])(y0s)
        return jnp.mean((ys[:, 1:] - truth[:, 1:]) ** 2)

    def update(carry, _):
        p, state = carry
        value, grads = jax.value_and_grad(objective)(p)
        updates, state = optimiser.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), value

    init = (params, optimiser.init(params))
    (params, _), losses = jax.lax.scan(update, init, None, length=steps)
    return eqx.combine(params, static), losses
