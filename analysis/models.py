"""Neural step-dependent vector fields and their storage: the models a neural analysis measures.

Every model is an equinox Module called as ``model(t, y, h)`` (autonomous ones accept t and
ignore it); `analysis.training` fits one, `analysis.neural` measures any such module. Three
built-in kinds (`KINDS`, made by `make`):

- `HInputMLP`: f_θ(y, h), an MLP with the step size h as an extra input feature.
- `HFreeMLP`: f_θ(y), the h-free control (its h → 0 limit is itself).
- `Hypersolver`: f(y) + h·g_θ(y, h) for a known field f; Euler on it is
  y_{n+1} = y_n + h·f(y_n) + h²·g_θ(y_n, h), a learned correction of Euler's local error.

`save` / `load` store a model's arrays (no pickle) and read them into a skeleton of the same
structure; `fingerprint` tells two models' values apart.

Examples:
    >>> from analysis import models, systems
    >>> spiral = systems.get("linear10", dim=2, seed=0)
    >>> model = models.make("h_input", spiral, width=8, seed=0)
    >>> models.kind_of(model), model(0.0, spiral.y0, 0.5).shape
    ('h_input', (2,))
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import run_store as _run_store
from . import systems as _systems
from .errors import InvalidArgument

__all__ = [
    "KINDS",
    "HInputMLP",
    "HFreeMLP",
    "Hypersolver",
    "make",
    "kind_of",
    "require_model",
    "fingerprint",
    "save",
    "load",
]

#: Model kinds accepted by `make`.
KINDS = ("h_input", "h_free", "hypersolver")


def _features(y, h):
    return jnp.concatenate([y, jnp.reshape(h, (1,)).astype(y.dtype)])


class HInputMLP(eqx.Module):
    """f_θ(y, h): an MLP (tanh) whose input is the state and the step size.

    Args:
        dim: the state dimension d (the input has d + 1 features, the output d).
        width: the MLP's hidden width.
        depth: its number of hidden layers.
        key: a `jax.random.key` for the initial weights.

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


def require_model(model, name: str = "model") -> eqx.Module:
    """`model` if it is a callable equinox Module (called as ``model(t, y, h)``), else
    InvalidArgument naming `name`.

    Args:
        model: the object to check.
        name: how to name it in the message.

    Returns:
        `model`, unchanged.

    Examples:
        >>> require_model(make("h_free", "linear")) is not None
        True
        >>> require_model(lambda t, y, h: -y)
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: model=<function <lambda> at ...> is a function; ...
    """
    if not isinstance(model, eqx.Module) or not callable(model):
        raise InvalidArgument(
            f"{name}={model!r} is a {type(model).__name__}; it must be an equinox Module "
            "called as model(t, y, h)"
        )
    return model


def kind_of(model) -> str:
    """The KINDS name of a built-in model, else the module's class name (the label results use).

    Args:
        model: an equinox Module called as ``model(t, y, h)`` (InvalidArgument otherwise).

    Returns:
        "h_input", "h_free", "hypersolver", or e.g. "Damped" for a module class of your own.

    Examples:
        >>> kind_of(make("h_free", "linear")), kind_of(HInputMLP(1, key=jax.random.key(0)))
        ('h_free', 'h_input')
        >>> class Damped(eqx.Module):
        ...     def __call__(self, t, y, h):
        ...         return -y * (1 + h)
        >>> kind_of(Damped())
        'Damped'
    """
    require_model(model)
    for kind, cls in _CLASSES.items():
        if isinstance(model, cls):
            return kind
    return type(model).__name__


def fingerprint(model) -> str:
    """A short digest of the model's array values (and shapes, dtypes): equal iff same values.

    Args:
        model: any pytree (usually an equinox Module).

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


def save(path, model) -> None:
    """Write the model's arrays with `eqx.tree_serialise_leaves` (atomically; no pickle).

    Only the arrays are stored; `load` needs a skeleton of the same structure and sizes.

    Args:
        path: the file to write.
        model: the model (any equinox Module).

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

    Args:
        path: the file `save` wrote.
        like: a model of the same structure (its values are replaced).

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
