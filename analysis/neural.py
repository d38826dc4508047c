"""Neural step-dependent vector fields: train one that sees h, then measure what it learned.

A neural ODE is trained *through* a discretization (discretize-then-optimise), so it can learn a
continuous vector field, or a map that only works at the step and solver it was trained with.
Three model kinds, all called as ``model(t, y, h)`` (autonomous: t is accepted and ignored):

- `HInputMLP`: f_θ(y, h), an MLP with the step size h as an extra input feature.
- `HFreeMLP`: f_θ(y), the h-free control (StepAware leaves it alone: its jaxpr never reads h).
- `Hypersolver`: f(y) + h·g_θ(y, h) for a known field f; Euler on it is
  y_{n+1} = y_n + h·f(y_n) + h²·g_θ(y_n, h), a learned correction of Euler's local error.

The test from Ott et al., "ResNet After All? Neural ODEs and Their Numerical Solution"
(ICLR 2021): evaluate the trained model on held-out trajectories under other solvers and steps
(`discretization_matrix`). A model that behaves like an ODE keeps its error as h shrinks or the
solver improves; one whose error jumps has learned the discretization. `step_adaptation` runs
their check (halve h until a cheap and an accurate solver agree); `step_sensitivity` gives
d(loss)/dh. `as_system` turns a model into a catalog `System`, so `analysis.sweep` (convergence
towards its own h → 0 limit) and `analysis.stability.one_step_map` apply to it unchanged.

Losses and errors compare the model's states with the true ones at the save times after t0:
loss = mean of squared differences over trajectories, save times and components; error = √loss.

The whole test (train, then the matrix) is worked through on the API page (docs/api/neural.md).

Examples:
    >>> from analysis import neural, systems
    >>> spiral = systems.get("linear10", dim=2, seed=0)        # damped spiral
    >>> model = neural.make("h_input", spiral, seed=0)
    >>> type(model).__name__, model(0.0, spiral.y0, 0.5).shape  # f_θ(y, h)
    ('HInputMLP', (2,))
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from . import reference as _reference
from . import run_store as _run_store
from . import solvers as _solvers
from . import systems as _systems
from .batch import status_of
from .errors import InvalidArgument, require_positive, warn_if_float32
from .stepdep import StepAware, StepTerm

__all__ = [
    "KINDS",
    "HInputMLP",
    "HFreeMLP",
    "Hypersolver",
    "make",
    "kind_of",
    "fingerprint",
    "Setting",
    "Trajectories",
    "trajectories",
    "predict",
    "train",
    "save",
    "load",
    "discretization_matrix",
    "predictions",
    "step_sensitivity",
    "StepAdaptation",
    "step_adaptation",
    "as_system",
]

#: Model kinds accepted by `make`.
KINDS = ("h_input", "h_free", "hypersolver")

#: Step budget of an adaptive solve (a solve that needs more ends with status "max_steps").
ADAPTIVE_MAX_STEPS = 4096

# ----------------------------------------------------------------------------------- models


def _features(y, h):
    return jnp.concatenate([y, jnp.reshape(h, (1,)).astype(y.dtype)])


class HInputMLP(eqx.Module):
    """f_θ(y, h): an MLP (tanh) whose input is the state and the step size.

    Examples:
        >>> m = HInputMLP(2, key=jax.random.key(0))
        >>> m(0.0, jnp.ones(2), 0.1).shape
        (2,)
    """

    mlp: eqx.nn.MLP

    def __init__(self, dim: int, *, width: int = 16, depth: int = 2, key):
        self.mlp = eqx.nn.MLP(dim + 1, dim, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, t, y, h):
        return self.mlp(_features(y, h))


class HFreeMLP(eqx.Module):
    """f_θ(y): the same MLP without h, the control. Its h → 0 limit is itself.

    Args:
        dim: the state dimension d (input and output size).
        width: the MLP's hidden width.
        depth: its number of hidden layers.
        key: a `jax.random.key` for the initial weights.

    Examples:
        >>> m = HFreeMLP(2, key=jax.random.key(0))
        >>> y = jnp.array([1.0, -0.5])
        >>> bool(jnp.all(m(0.0, y, 0.1) == m(0.0, y, 0.5)))  # h is ignored
        True
    """

    mlp: eqx.nn.MLP

    def __init__(self, dim: int, *, width: int = 16, depth: int = 2, key):
        self.mlp = eqx.nn.MLP(dim, dim, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, t, y, h):
        return self.mlp(y)


class Hypersolver(eqx.Module):
    """f(t, y) + h·g_θ(y, h) for a known field f (not trained); its h → 0 limit is f.

    Euler on it takes the step y + h·f(y) + h²·g_θ(y, h): g_θ learns Euler's local error.
    `field` is a plain function (t, y) -> dy/dt, so it holds no trainable arrays.

    Args:
        field: the known field f(t, y).
        dim: the state dimension d.
        width: the correction MLP g_θ's hidden width.
        depth: its number of hidden layers.
        key: a `jax.random.key` for g_θ's initial weights.

    Examples:
        >>> hyper = Hypersolver(lambda t, y: -y, 2, key=jax.random.key(0))
        >>> hyper(0.0, jnp.array([1.0, -0.5]), 0.0)  # at h = 0 it is the known field -y
        Array([-1. ,  0.5], dtype=float64)
    """

    field: Callable
    g: eqx.nn.MLP

    def __init__(self, field: Callable, dim: int, *, width: int = 16, depth: int = 2, key):
        self.field = field
        self.g = eqx.nn.MLP(dim + 1, dim, width, depth, activation=jnp.tanh, key=key)

    def __call__(self, t, y, h):
        return self.field(t, y) + h * self.g(_features(y, h))


_CLASSES = {"h_input": HInputMLP, "h_free": HFreeMLP, "hypersolver": Hypersolver}


def make(kind: str, system, *, width: int = 16, depth: int = 2, seed: int = 0) -> eqx.Module:
    """A freshly initialised model of `kind` (one of KINDS) for `system`'s state dimension.

    The hypersolver's known field is the system's limit field f(t, y, args, 0). The same
    arguments always give the same model: this is also the skeleton `load` reads into.

    Args:
        kind: "h_input" (`HInputMLP`), "h_free" (`HFreeMLP`) or "hypersolver" (`Hypersolver`).
        system: a `System` or a catalog name.
        width: the MLP's hidden width.
        depth: its number of hidden layers.
        seed: seed of the initial weights.

    Returns:
        The model, an equinox Module called as ``model(t, y, h)``.

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> model = make("hypersolver", spiral, width=8)
        >>> kind_of(model), model.g.width_size, model(0.0, spiral.y0, 0.5).shape
        ('hypersolver', 8, (2,))
    """
    if kind not in _CLASSES:
        raise InvalidArgument(f"kind={kind!r} is not a model kind; valid kinds: {', '.join(KINDS)}")
    for name, value in (("width", width), ("depth", depth)):
        if not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{name}={value!r} is invalid; it must be an integer >= 1")
    system = _systems.get(system)
    dim = int(np.size(system.y0))
    key = jax.random.key(seed)
    if kind == "hypersolver":

        def field(t, y):
            return system.limit_field(t, y, system.args)

        return Hypersolver(field, dim, width=width, depth=depth, key=key)
    return _CLASSES[kind](dim, width=width, depth=depth, key=key)


def kind_of(model) -> str:
    """The KINDS name of a model built by `make` (InvalidArgument for any other object).

    Examples:
        >>> kind_of(make("h_free", "linear")), kind_of(HInputMLP(1, key=jax.random.key(0)))
        ('h_free', 'h_input')
    """
    for kind, cls in _CLASSES.items():
        if isinstance(model, cls):
            return kind
    raise InvalidArgument(f"model of type {type(model).__name__} is not one of {', '.join(KINDS)}")


def fingerprint(model) -> str:
    """A short digest of the model's array values (and shapes, dtypes): equal iff same values.

    Returns:
        12 hex digits of a SHA-256 over the model's arrays.

    Examples:
        >>> a, b = make("h_input", "linear", seed=0), make("h_input", "linear", seed=1)
        >>> len(fingerprint(a)), fingerprint(a) == fingerprint(make("h_input", "linear", seed=0))
        (12, True)
        >>> fingerprint(a) == fingerprint(b)
        False
    """
    digest = hashlib.sha256()
    for leaf in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array)):
        x = np.asarray(leaf)
        digest.update(f"{x.dtype}{x.shape}".encode())
        digest.update(x.tobytes())
    return digest.hexdigest()[:12]


def as_system(model, like) -> _systems.System:
    """The model as a catalog `System` with the initial value and time span of `like`.

    Its name carries the parameters' `fingerprint`, so result caches keyed on the system name
    tell trained models apart. Its limit (h = 0) is what `analysis.sweep` measures convergence
    towards, and
    `analysis.stability.one_step_map(as_system(model, like), "Euler", h)` is the trained map.

    Args:
        model: a model built by `make` (trained or not).
        like: the `System` (or catalog name) whose y0, t0, t1 the new system takes.

    Returns:
        A `System` whose field is ``model(t, y, h)`` (args None, no exact solution).

    Examples:
        >>> from analysis import stability
        >>> model = make("h_free", "linear10", seed=0)
        >>> system = as_system(model, "linear10")
        >>> system.name, system.h_dependent
        ('neural(h_free, linear10, params=...)', False)
        >>> step = stability.one_step_map(system, "Euler", 0.5)  # y -> y + h·f(y)
        >>> bool(jnp.allclose(step(system.y0), system.y0 + 0.5 * model(0.0, system.y0, 0.5)))
        True
    """
    like = _systems.get(like)
    return like.with_(
        name=f"neural({kind_of(model)}, {like.name}, params={fingerprint(model)})",
        vector_field=lambda t, y, args, h: model(t, y, h),
        args=None,
        exact=None,
        equilibria=None,
        invariants={},
        h_dependent=kind_of(model) != "h_free",
    )


# -------------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Setting:
    """One discretization: a solver at a fixed step h, or adaptive (PID, atol = rtol).

    Examples:
        >>> Setting("Euler", h=0.5).label, Setting("Tsit5", rtol=1e-6).label
        ('Euler h=0.5', 'Tsit5 rtol=1e-06')
    """

    solver: str
    h: float | None = None
    rtol: float | None = None

    def __post_init__(self):
        _solvers.get(self.solver)  # raises InvalidArgument for an unknown name
        if (self.h is None) == (self.rtol is None):
            raise InvalidArgument(
                f"Setting({self.solver!r}, h={self.h!r}, rtol={self.rtol!r}): give exactly one "
                "of h (fixed steps) or rtol (adaptive steps)"
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
        """The setting in words, e.g. 'Euler h=0.5' or 'Dopri5 rtol=1e-06'."""
        return (
            f"{self.solver} h={self.h:g}"
            if self.h is not None
            else (f"{self.solver} rtol={self.rtol:g}")
        )


# ------------------------------------------------------------------------------------ data


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


def _true_solve(system, y0, ts):
    """y(ts) of the system's limit ODE from y(ts[0]) = y0, by the reference solver."""
    name, rtol, _, _ = _reference.settings(system)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(system.limit_field),
        getattr(diffrax, name)(),
        ts[0],
        ts[-1],
        None,
        y0,
        system.args,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol),
        max_steps=100_000,
    )
    return sol.ys


#: y(ts[b]) from y0s[b] for a batch of initial values and time grids; compiled once per system.
_true_batch = jax.jit(jax.vmap(_true_solve, in_axes=(None, 0, 0)), static_argnums=0)


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
    ys = _true_batch(system, jnp.asarray(y0s), jnp.broadcast_to(ts, (count, saves)))
    return Trajectories(system, ts, np.asarray(ys))


# ---------------------------------------------------------------------------------- solving


def _check_on_grid(setting: Setting, ts) -> int:
    """For fixed steps, the number of steps to ts[-1]; every save time must be on the grid."""
    if setting.h is None:
        return ADAPTIVE_MAX_STEPS
    ratios = (np.asarray(ts) - ts[0]) / setting.h
    if np.max(np.abs(ratios - np.round(ratios))) > 1e-8 * max(1.0, np.max(ratios)):
        raise InvalidArgument(
            f"h={setting.h!r} does not divide the save times {list(np.round(ts - ts[0], 12))}; "
            "choose h = (save spacing)/m for an integer m, so errors are measured at steps"
        )
    return int(round(ratios[-1]))


def _solve(model, solver: str, control: str, step, y0, ts, max_steps: int, *, forward=False):
    """Solve the model from y0 over ts with `solver` at step (h, or rtol if adaptive) `step`.

    Reverse-mode differentiable (RecursiveCheckpointAdjoint), or forward-mode with
    `forward=True` (diffrax.ForwardMode: cheaper for one scalar input such as h).
    Returns (ys at ts, diffrax result code, number of steps); never raises.
    """
    stepper = StepAware(_solvers.for_fixed_steps(_solvers.get(solver)))
    if control == "fixed":
        controller, dt0 = diffrax.ConstantStepSize(), step
    else:
        controller, dt0 = diffrax.PIDController(rtol=step, atol=step), None
    sol = diffrax.diffeqsolve(
        StepTerm(lambda t, y, args, h: model(t, y, h)),
        stepper,
        ts[0],
        ts[-1],
        dt0,
        y0,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=controller,
        adjoint=diffrax.ForwardMode() if forward else diffrax.RecursiveCheckpointAdjoint(),
        max_steps=max_steps,
        throw=False,
    )
    return sol.ys, sol.result._value, sol.stats["num_steps"]


_TRACES = {"count": 0}


@eqx.filter_jit
def _run(model, solver: str, control: str, max_steps: int, steps, y0s, ts):
    """Every (step, initial value) pair: ys (S, N, K, d), codes (S, N), num_steps (S, N).

    Compiled once per (model structure, solver, control, max_steps, array shapes): models of
    the same kind share it, whatever their trained values.
    """
    _TRACES["count"] += 1  # runs only while tracing, i.e. once per compilation

    def one(step, y0):
        return _solve(model, solver, control, step, y0, ts, max_steps)

    return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(steps, y0s)


def _mse(ys, truth):
    return jnp.mean((ys[:, 1:] - truth[:, 1:]) ** 2)


def predict(model, setting: Setting, y0s, ts) -> np.ndarray:
    """The model's states at `ts` from each initial value in `y0s` (shape (N, len(ts), d)).

    Fixed steps must divide the spacing of `ts` (InvalidArgument otherwise).

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = trajectories(spiral, 4, horizon=2.0, saves=5)
        >>> model = make("h_free", spiral)
        >>> ys = predict(model, Setting("Euler", h=0.5), data.y0, data.ts)
        >>> one_step = data.y0 + 0.5 * jax.vmap(lambda y: model(0.0, y, 0.5))(data.y0)
        >>> ys.shape, bool(np.allclose(ys[:, 1], one_step))  # Euler: y1 = y0 + h·f(y0)
        ((4, 5, 2), True)
    """
    max_steps = _check_on_grid(setting, np.asarray(ts))
    steps = jnp.asarray([setting.step], dtype=float)
    ys, _, _ = _run(model, setting.solver, setting.control, max_steps, steps, y0s, ts)
    return np.asarray(ys[0])


def train(
    model,
    data: Trajectories,
    setting: Setting,
    *,
    steps: int = 300,
    learning_rate: float = 1e-2,
):
    """Fit the model to `data` through the discretization `setting` (discretize-then-optimise).

    Full-batch Adam on the mean squared error, gradients by backpropagation through the
    diffrax solve (RecursiveCheckpointAdjoint; under an adaptive controller diffrax stops
    gradients through the step-size choice). The whole loop is one compiled `lax.scan`, so
    training is deterministic for a given model, data and setting.

    Args:
        model: a model from `make` (or any equinox module called as ``model(t, y, h)``).
        data: the training `Trajectories`.
        setting: the discretization trained through; fixed steps must divide the save spacing.
        steps: number of Adam updates.
        learning_rate: Adam's learning rate.

    Returns:
        (trained model, losses), losses[k] being the loss before update k.

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = trajectories(spiral, 4, horizon=2.0, saves=5, seed=0)
        >>> model, losses = train(make("h_input", spiral), data, Setting("Euler", h=0.5), steps=20)
        >>> losses.shape, bool(losses[-1] < losses[0])
        ((20,), True)
    """
    if not isinstance(steps, int) or steps < 1:
        raise InvalidArgument(f"steps={steps!r} is invalid; it must be an integer >= 1")
    if not np.isfinite(learning_rate) or learning_rate <= 0:
        raise InvalidArgument(f"learning_rate={learning_rate!r} is invalid; it must be > 0")
    max_steps = _check_on_grid(setting, data.ts)
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
        ys = jax.vmap(lambda y0: _solve(m, s.solver, s.control, s.step, y0, ts, max_steps)[0])(y0s)
        return _mse(ys, truth)

    def update(carry, _):
        p, state = carry
        value, grads = jax.value_and_grad(objective)(p)
        updates, state = optimiser.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), value

    init = (params, optimiser.init(params))
    (params, _), losses = jax.lax.scan(update, init, None, length=steps)
    return eqx.combine(params, static), losses


# ----------------------------------------------------------------------------- persistence


def save(path, model) -> None:
    """Write the model's arrays with `eqx.tree_serialise_leaves` (atomically; no pickle).

    Only the arrays are stored; `load` needs a skeleton of the same kind and sizes.

    Examples:
        >>> model = make("h_input", "linear", seed=3)
        >>> save("model.eqx", model)
        >>> fingerprint(load("model.eqx", make("h_input", "linear"))) == fingerprint(model)
        True
    """
    buffer = io.BytesIO()
    eqx.tree_serialise_leaves(buffer, model)
    _run_store.atomic_write_bytes(Path(path), buffer.getvalue())


def load(path, like):
    """Read arrays saved by `save` into the skeleton `like` (e.g. `make(kind, system, ...)`).

    A file whose arrays do not match `like` leaf for leaf (count, shapes, dtypes) is refused
    with InvalidArgument.

    Returns:
        A model like `like` holding the stored arrays.

    Examples:
        >>> save("model.eqx", make("h_input", "linear", seed=3))
        >>> kind_of(load("model.eqx", make("h_input", "linear")))
        'h_input'
        >>> load("model.eqx", make("h_input", "linear", width=8))  # another skeleton
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: model.eqx does not hold parameters of this model: ...
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidArgument(f"path={str(path)!r} is not a file")
    refusal = (
        f"{path} does not hold parameters of this model: the skeleton "
        f"{type(like).__name__} with leaf shapes "
        f"{[tuple(x.shape) for x in jax.tree_util.tree_leaves(eqx.filter(like, eqx.is_array))]}"
    )
    with path.open("rb") as fh:
        try:
            model = eqx.tree_deserialise_leaves(fh, like)
        except Exception as err:  # numpy/equinox raise several types on a foreign file
            raise InvalidArgument(f"{refusal} ({type(err).__name__}: {err})") from err
        if fh.read(1):
            raise InvalidArgument(f"{refusal} (the file holds more arrays than the skeleton)")
    return model


# ------------------------------------------------------------------ discretization matrix


def _grouped(settings: Sequence[Setting]):
    groups: dict[tuple[str, str], list[int]] = {}
    for i, s in enumerate(settings):
        if not isinstance(s, Setting):
            raise InvalidArgument(f"test_settings[{i}]={s!r} is not a neural.Setting")
        groups.setdefault((s.solver, s.control), []).append(i)
    return groups


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _evaluate(model, settings: Sequence[Setting], data: Trajectories):
    """Per setting: (status, error, mean steps, states (N, K, d)), and how many solve functions
    were compiled.

    One `_run` per (solver, control) group, vmapped over the group's steps or tolerances.
    """
    truth = np.asarray(data.ys)
    out: dict[int, tuple] = {}
    before = _TRACES["count"]
    for (solver, control), index in _grouped(settings).items():
        members = [settings[i] for i in index]
        # Step budgets and grid lengths rounded up to powers of two: grids of similar size (a
        # matrix, a step check, predictions) then share one compiled function.
        max_steps = _pow2(max(_check_on_grid(s, data.ts) for s in members))
        padded = [s.step for s in members] + [members[0].step] * (
            _pow2(len(members)) - len(members)
        )
        steps = jnp.asarray(padded, dtype=float)
        ys, codes, nsteps = (
            np.asarray(x) for x in _run(model, solver, control, max_steps, steps, data.y0, data.ts)
        )
        for j, i in enumerate(index):
            statuses = [status_of(c, y) for c, y in zip(codes[j], ys[j], strict=True)]
            bad = [s for s in statuses if s != "ok"]
            err = math.sqrt(np.mean((ys[j][:, 1:] - truth[:, 1:]) ** 2)) if not bad else np.nan
            out[i] = (bad[0] if bad else "ok", err, float(np.mean(nsteps[j])), ys[j])
    return [out[i] for i in range(len(settings))], _TRACES["count"] - before


def discretization_matrix(
    model, train_setting: Setting, test_settings: Sequence[Setting], data: Trajectories
) -> pd.DataFrame:
    """The model's error on held-out trajectories `data` under every test setting.

    One row per test setting, columns: model (its kind), train_setting (label), test_setting
    (label), test_solver, control ("fixed"/"adaptive"), test_h (NaN if adaptive), test_rtol
    (NaN if fixed), status ("ok" or the first failure among the trajectories), error (RMS over
    trajectories, save times after t0 and components; NaN unless ok), num_steps (mean per
    trajectory). Each (solver, control) group is one vmapped solve over its steps or
    tolerances, compiled once per model structure (`df.attrs["compilations"]`: how many this
    call compiled; 0 when a model of the same kind was evaluated on the same grid before).
    Fixed steps must divide the save spacing of `data`.

    Args:
        model: the (trained) model.
        train_setting: the `Setting` it was trained with (recorded in the table).
        test_settings: the `Setting`s to evaluate it under.
        data: held-out `Trajectories`.

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> tests = [Setting(solver, h=h) for solver in ("Euler", "Tsit5") for h in (0.5, 0.25)]
        >>> df = discretization_matrix(make("h_input", spiral), tests[0], tests, test)
        >>> df[["test_setting", "control", "test_h", "status", "num_steps"]]
          test_setting control  test_h status  num_steps
        0  Euler h=0.5   fixed    0.50     ok        4.0
        1 Euler h=0.25   fixed    0.25     ok        8.0
        2  Tsit5 h=0.5   fixed    0.50     ok        4.0
        3 Tsit5 h=0.25   fixed    0.25     ok        8.0
    """
    if not isinstance(train_setting, Setting):
        raise InvalidArgument(f"train_setting={train_setting!r} is not a neural.Setting")
    if len(test_settings) == 0:
        raise InvalidArgument("test_settings is empty; give at least one neural.Setting")
    results, compiles = _evaluate(model, test_settings, data)
    df = pd.DataFrame(
        {
            "model": kind_of(model),
            "train_setting": train_setting.label,
            "test_setting": [s.label for s in test_settings],
            "test_solver": [s.solver for s in test_settings],
            "control": [s.control for s in test_settings],
            "test_h": [np.nan if s.h is None else s.h for s in test_settings],
            "test_rtol": [np.nan if s.rtol is None else s.rtol for s in test_settings],
            "status": [r[0] for r in results],
            "error": [r[1] for r in results],
            "num_steps": [r[2] for r in results],
        }
    )
    df.attrs["compilations"] = compiles
    return df


def predictions(
    model, settings: Sequence[Setting], data: Trajectories, *, which: Sequence[int] = (0,)
) -> pd.DataFrame:
    """The model's states at data.ts for trajectories `which` of `data`, under each setting.

    Long format: model, setting, solver, control, h, rtol, trajectory, t, y0, y1, ... The solves
    are those of `discretization_matrix` (same groups, same compiled functions), so calling both
    with the same settings and data compiles nothing twice.

    Args:
        model: the (trained) model.
        settings: the `Setting`s to solve it under.
        data: the `Trajectories` whose initial values and save times are used.
        which: indices of the trajectories to return.

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> settings = [Setting(solver, h=h) for solver in ("Euler", "Tsit5") for h in (0.5, 0.25)]
        >>> df = predictions(make("h_input", spiral), settings, test)
        >>> len(df), list(df.columns)  # 4 settings × 5 save times of trajectory 0
        (20, ['model', 'setting', 'solver', 'control', 'h', 'rtol', 'trajectory', 't', 'y0', 'y1'])
    """
    results, _ = _evaluate(model, settings, data)
    frames = []
    for s, r in zip(settings, results, strict=True):
        for i in which:
            states = r[3][i]
            frames.append(
                pd.DataFrame(
                    {
                        "model": kind_of(model),
                        "setting": s.label,
                        "solver": s.solver,
                        "control": s.control,
                        "h": np.nan if s.h is None else s.h,
                        "rtol": np.nan if s.rtol is None else s.rtol,
                        "trajectory": i,
                        "t": data.ts,
                    }
                    | {f"y{c}": states[:, c] for c in range(states.shape[1])}
                )
            )
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------- sensitivity


def _scaled_times(t0, h, m, count):
    return t0 + h * m * jnp.arange(count + 1)


def _scaled_truth(data: Trajectories, h_arr, m_arr):
    """y at the save times m·k·h of every h (shape (H, N, K, d)), by the reference solver.

    One batch per h, shaped like `trajectories`' own, so they share one compiled solver.
    """
    count, n = len(data.ts) - 1, len(data.y0)
    out = []
    for h, m in zip(np.asarray(h_arr), np.asarray(m_arr), strict=True):
        grid = jnp.broadcast_to(_scaled_times(data.ts[0], h, m, count), (n, count + 1))
        out.append(_true_batch(data.system, jnp.asarray(data.y0), grid)[:, 1:])
    return jnp.stack(out)


@eqx.filter_jit
def _scaled_loss(model, data, solver: str, max_steps: int, wrt, h_arr, m_arr, shifts, truth):
    """The loss after m·k steps of size h against y(m·k·h), for each (h, m), the field seeing
    h + shift; with its derivative (forward mode) with respect to h (wrt="h") or to the shift
    (wrt="h_input"), or without (wrt=None). Compiled once per (model structure, data, solver,
    max_steps, wrt, shapes)."""
    system, y0s = data.system, jnp.asarray(data.y0)
    field = jax.vmap(lambda t, y: system.limit_field(t, y, system.args))

    def loss_at(h, m, shift, true):
        t = _scaled_times(data.ts[0], h, m, true.shape[1])

        def shifted(t, y, hh):
            return model(t, y, hh + shift)

        ys = jax.vmap(
            lambda y0: _solve(shifted, solver, "fixed", h, y0, t, max_steps, forward=True)[0]
        )(y0s)
        # y(t(h)) to first order around the computed truth: the exact value and exact d/dh.
        moved = t[1:] - jax.lax.stop_gradient(t[1:])
        true_h = true + jax.vmap(lambda y: field(t[1:], y))(true) * moved[None, :, None]
        return jnp.mean((ys[:, 1:] - true_h) ** 2)

    def tangent(h, m, shift, true):
        if wrt == "h":
            return jax.jvp(lambda x: loss_at(x, m, shift, true), (h,), (1.0,))
        return jax.jvp(lambda x: loss_at(h, m, x, true), (shift,), (1.0,))

    if wrt is None:
        return jax.vmap(loss_at)(h_arr, m_arr, shifts, truth), None
    return jax.vmap(tangent)(h_arr, m_arr, shifts, truth)


def step_sensitivity(
    model,
    data: Trajectories,
    solver: str,
    *,
    hs: Sequence[float] = (),
    rtols: Sequence[float] = (),
    method: str = "autodiff",
    wrt: str = "h",
    relative_step: float = 1e-4,
    log_rtol_step: float = 0.1,
) -> pd.DataFrame:
    """d(loss)/dh at fixed steps and d(loss)/d(log rtol) under adaptive control.

    Fixed steps h = Δ/m (Δ the save spacing of `data`, m an integer): the loss after m·k steps
    of size h is compared with the true y(m·k·h) for k = 1..K, so with m held fixed the loss is
    a smooth function of h whose value at h is the ordinary loss (h = T/n with n fixed).
    wrt="h": the total derivative, in which the horizon n·h grows with h too (the true
    solution's motion dy/dt = f enters exactly), so even an h-free model has dL/dh ≠ 0 when
    its error changes along the trajectory. wrt="h_input": only the h the field is fed moves
    (steps and save times stay): exactly 0 for an h-free model, the learned reliance on h.
    method="autodiff" differentiates through the fixed-step solve in forward mode (h a traced
    input); method="finite_difference" uses central differences ±relative_step·h (a check).

    Adaptive (rtols): diffrax stops gradients through the controller, so d(loss)/d(log rtol) is
    always a central difference, at rtol·exp(±log_rtol_step) (a tolerance change moves whole
    steps, so this step is not small).

    Columns: model, solver, control, h, rtol, loss, dloss, wrt ("h", "h_input" or
    "log_rtol"), method.

    Args:
        model: the (trained) model.
        data: `Trajectories` with equally spaced save times.
        solver: the solver name.
        hs: fixed step sizes, each (save spacing)/m for an integer m.
        rtols: tolerances of adaptive solves.
        method: "autodiff" or "finite_difference" (fixed steps).
        wrt: "h" or "h_input" (fixed steps), as above.
        relative_step: the finite-difference step in h, relative to h.
        log_rtol_step: the finite-difference step in log rtol.

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = trajectories(spiral, 4, horizon=2.0, saves=5)
        >>> df = step_sensitivity(make("h_free", spiral), data, "Euler", hs=[0.5], wrt="h_input")
        >>> df[["model", "h", "dloss", "wrt"]]  # an h-free model does not read h: exactly 0
            model    h  dloss      wrt
        0  h_free  0.5    0.0  h_input
    """
    if method not in ("autodiff", "finite_difference"):
        raise InvalidArgument(
            f"method={method!r} is invalid; valid: 'autodiff', 'finite_difference'"
        )
    if wrt not in ("h", "h_input"):
        raise InvalidArgument(f"wrt={wrt!r} is invalid; valid: 'h', 'h_input'")
    if not hs and not rtols:
        raise InvalidArgument("give hs (fixed steps) or rtols (adaptive), or both")
    spacing = np.diff(data.ts)
    if not np.allclose(spacing, spacing[0], rtol=1e-12):
        raise InvalidArgument("step_sensitivity needs equally spaced save times in data.ts")
    rows = []
    if hs:
        ms = [_check_on_grid(Setting(solver, h=h), data.ts[:2]) for h in hs]
        h_arr, m_arr = jnp.asarray(hs, dtype=float), jnp.asarray(ms, dtype=float)
        zero = jnp.zeros_like(h_arr)
        max_steps = max(ms) * (len(data.ts) - 1)
        args = (model, data, solver, max_steps)
        if method == "autodiff":
            truth = _scaled_truth(data, h_arr, m_arr)
            values, slopes = _scaled_loss(*args, wrt, h_arr, m_arr, zero, truth)
        else:
            dh = relative_step * h_arr
            if wrt == "h":  # the steps and the save times move: new true values
                grid = jnp.concatenate([h_arr, h_arr + dh, h_arr - dh])
                shifts = jnp.zeros_like(grid)
            else:  # only the h the field sees moves
                grid = jnp.concatenate([h_arr, h_arr, h_arr])
                shifts = jnp.concatenate([zero, dh, -dh])
            mm = jnp.concatenate([m_arr, m_arr, m_arr])
            truth = _scaled_truth(data, grid, mm)
            both, _ = _scaled_loss(*args, None, grid, mm, shifts, truth)
            both = both.reshape(3, -1)
            values, slopes = both[0], (both[1] - both[2]) / (2 * dh)
        for h, v, d in zip(hs, np.asarray(values), np.asarray(slopes), strict=True):
            rows.append(("fixed", h, np.nan, v, d, wrt, method))
    if rtols:
        r = np.asarray(rtols, dtype=float)
        grid = jnp.asarray(
            np.concatenate([r, r * math.exp(log_rtol_step), r * math.exp(-log_rtol_step)])
        )
        ys, codes, _ = _run(model, solver, "adaptive", ADAPTIVE_MAX_STEPS, grid, data.y0, data.ts)
        ok = np.all(np.asarray(codes) == 0, axis=1) & np.all(np.isfinite(ys), axis=(1, 2, 3))
        mse = np.mean((np.asarray(ys)[:, :, 1:] - data.ys[None, :, 1:]) ** 2, axis=(1, 2, 3))
        values = np.where(ok, mse, np.nan).reshape(3, len(rtols))
        for rtol, v, up, down in zip(rtols, *values, strict=True):
            slope = (up - down) / (2 * log_rtol_step)
            rows.append(("adaptive", np.nan, rtol, v, slope, "log_rtol", "finite_difference"))
    df = pd.DataFrame(rows, columns=["control", "h", "rtol", "loss", "dloss", "wrt", "method"])
    df.insert(0, "solver", solver)
    df.insert(0, "model", kind_of(model))
    return df


# ------------------------------------------------------------------- Ott et al. step check


@dataclasses.dataclass(frozen=True)
class StepAdaptation:
    """Result of `step_adaptation`: the first step that passes (None if none), and the table.

    Attributes:
        step: the largest h (first halving) at which the two solvers agree, or None.
        table: one row per h: h, error_solver, error_test, gap, agrees.

    Examples:
        >>> import pandas as pd
        >>> table = pd.DataFrame({"h": [0.5, 0.25], "agrees": [False, True]})
        >>> StepAdaptation(0.25, table).step
        0.25
    """

    step: float | None
    table: pd.DataFrame


def step_adaptation(
    model,
    data: Trajectories,
    *,
    solver: str,
    h: float,
    test_solver: str = "Tsit5",
    threshold: float = 0.1,
    max_halvings: int = 6,
) -> StepAdaptation:
    """The check of Ott et al. (ICLR 2021): from h, halve the step until the model's error with
    `solver` and with the more accurate `test_solver` (same h) agree within `threshold`
    (|e_solver - e_test| ≤ threshold·e_test). The step where they first agree is where the model
    stops depending on its discretization; `step` is None if it never does within
    `max_halvings`. The model is not retrained (their procedure then continues training at
    that step). Both solvers are evaluated in one vmapped compile each.

    Table columns: h, error_solver, error_test, gap (relative), agrees.

    Returns:
        A `StepAdaptation` (step, table).

    Examples:
        >>> from analysis import systems
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = trajectories(spiral, 4, horizon=2.0, saves=5)
        >>> model = make("h_input", spiral)
        >>> check = step_adaptation(model, data, solver="Euler", h=0.5, max_halvings=1)
        >>> check.table["h"].tolist(), list(check.table.columns)
        ([0.5, 0.25], ['h', 'error_solver', 'error_test', 'gap', 'agrees'])
    """
    require_positive("threshold", threshold)
    if not isinstance(max_halvings, int) or max_halvings < 0:
        raise InvalidArgument(f"max_halvings={max_halvings!r} must be an integer >= 0")
    if test_solver == solver:
        raise InvalidArgument(
            f"test_solver={test_solver!r} is the solver under test; pick a more accurate one"
        )
    hs = [h / 2**k for k in range(max_halvings + 1)]
    settings = [Setting(solver, h=x) for x in hs] + [Setting(test_solver, h=x) for x in hs]
    results, _ = _evaluate(model, settings, data)
    err = np.array([r[1] for r in results])
    e_solver, e_test = err[: len(hs)], err[len(hs) :]
    gap = np.abs(e_solver - e_test) / e_test
    agrees = gap <= threshold  # NaN (a failed solve) never agrees
    table = pd.DataFrame(
        {"h": hs, "error_solver": e_solver, "error_test": e_test, "gap": gap, "agrees": agrees}
    )
    passing = np.flatnonzero(agrees)
    return StepAdaptation(float(hs[passing[0]]) if passing.size else None, table)
