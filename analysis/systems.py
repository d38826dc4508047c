"""The system catalog: classic ODEs, step-dependent families, and maps lifted to fields.

Every entry is a `System` whose vector field has the step-dependent signature
f(t, y, args, h); h-free systems simply ignore h. `get(name, **params)` builds one, `names()`
lists them.

Classic (h-free): ``linear`` (scalar decay, exact), ``linear10`` (10-dimensional linear system,
exact by the matrix exponential), ``logistic`` (exact), ``harmonic`` (exact), ``lotka_volterra``,
``van_der_pol`` (stiff for large mu), ``prothero_robinson`` (exact; stiffness parameter),
``kepler`` (exact via Kepler's equation; energy and angular momentum as invariants).

Step-dependent families:

- ``perturbed``: f(t, y) + c·h^q·g(y) on any base; converges to the base ODE as h → 0.
- ``modified_euler``: the modifying-integrator field f + (h/2)·Df [+ (h²/6)·D²f], where
  D g = ∂g/∂t + (∂g/∂y)·f is the derivative along the flow (for autonomous f:
  Df = f'f, D²f = f''(f, f) + f'f'f). Euler on it is second order (terms=1) or third (terms=2).
- ``lifted_map``: a map Φ read as the field (Φ(y) - y)/h, so Euler at step h iterates Φ exactly.
  Ships ``logistic`` (Φ(y) = μy(1 - y)), ``henon`` and ``residual`` (x + tanh(Wx + b)).

Examples:
    >>> from analysis import systems
    >>> sys = systems.get("perturbed", base="linear", c=1.0, q=2)
    >>> sys.name, sys.h_dependent
    ('perturbed(linear, c=1.0, q=2, g=sin)', True)
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .errors import InvalidArgument, require_positive
from .stepdep import StepTerm, uses_h

__all__ = ["System", "get", "names", "register", "shipped_map", "tree_equal"]


class System(eqx.Module):
    """A (possibly step-dependent) initial value problem, as an equinox Module (a pytree).

    Numbers are leaves: y0, args, the arrays inside the field (a map's weights, a trained
    model's parameters), inside `exact` and inside `invariants`. The name, `stiff` and
    `h_dependent` are static. So `eqx.filter_jit` compiles once per *structure*: a system that
    differs only in the values of those arrays reuses the compiled code; a changed name, span or
    python-number parameter compiles afresh. Two systems are equal (`==`) when
    `eqx.tree_equal` says so, and their hash covers the structure, the non-array leaves and the
    arrays' shapes and dtypes, so equal systems hash alike.

    Attributes:
        name: readable identifier, including the non-default parameters.
        vector_field: f(t, y, args, h) -> dy/dt, jax-traceable; h = 0 is the limit ODE. A
            module-level function or an equinox Module (a closure would hash by identity, so
            every rebuilt system would compile afresh).
        y0: initial state: a float array or any pytree of float arrays (dict, tuple, nested);
            python floats and numpy arrays are converted to jax arrays, a python list is refused.
        t0: the start time.
        t1: the end time.
        args: pytree passed to the field (parameters that may be vmapped).
        exact: optional exact solution t -> y(t) of the h = 0 ODE (jax-traceable).
        equilibria: optional known equilibria of the h = 0 ODE, as a tuple of states.
        stiff: whether explicit solvers need tiny steps here.
        h_dependent: whether the field depends on h at all. Leave it out (None) and it is read
            from the field's jaxpr (`analysis.stepdep.uses_h`); False for a field that uses h
            is refused (use `limit()` for the h → 0 limit of a step-dependent system).
        invariants: optional named conserved quantities y -> scalar.
        params: the parameters the catalog built it from (for provenance).
        frozen_h: None (the default) when f(t, y, args, 0) is the field's h → 0 limit. A step
            h0 when the field has no h → 0 limit and at h = 0 falls back to itself frozen at
            h0: a lifted map (Φ(y) - y)/h reads (Φ(y) - y)/h_train there. Then `limit_field`,
            `limit()` and every "limit" target (a sweep's `error`, convergence's
            target="limit") are that frozen field, not a limit; `limit()` is named
            "NAME (frozen at h = h0)" and keeps frozen_h, and `has_limit` is False. A new
            `vector_field` given to `with_` keeps it (a perturbation of a frozen field is still
            frozen at h = 0); pass frozen_h=None if the new field has a genuine limit.

    Construction checks the span, that every leaf of y0 is a finite float array (an error names
    the leaf, e.g. ``y0['v']``), that args are finite, and that the field returns y0's structure,
    shapes and dtypes; a bad problem raises InvalidArgument before anything is compiled.

    Examples:
        >>> model = System(name="damped", vector_field=lambda t, y, args, h: -(1.0 + h) * y,
        ...                y0=jnp.array(1.0), t1=2.0, exact=lambda t: jnp.exp(-t))
        >>> model.h_dependent                                     # read from the field
        True
        >>> float(model.limit_field(0.0, jnp.array(2.0), None))   # h → 0: y' = -y
        -2.0
        >>> model.limit().name, model.limit().h_dependent
        ('damped (h → 0)', False)
        >>> model.with_(t1=4.0).t1
        4.0
        >>> model.has_limit, model.frozen_h
        (True, None)
        >>> lifted = get("lifted_map", map="logistic", h_train=0.5)    # (Φ(y) - y)/h
        >>> lifted.has_limit, lifted.frozen_h, lifted.limit().name
        (False, 0.5, 'lifted_map(logistic, mu=3.2, h_train=0.5) (frozen at h = 0.5)')
        >>> get("linear", lam=2.0) == get("linear", lam=2.0)      # equal, built twice
        True
        >>> [leaf.shape for leaf in jax.tree_util.tree_leaves(get("harmonic"))
        ...  if eqx.is_array(leaf)]                               # y0, args, an equilibrium
        [(2,), (), (2,)]
    """

    name: str = eqx.field(static=True)
    vector_field: Callable
    y0: Any
    t0: float = 0.0
    t1: float = 1.0
    args: Any = None
    exact: Callable | None = None
    equilibria: tuple | None = None
    stiff: bool = eqx.field(static=True, default=False)
    h_dependent: bool | None = eqx.field(static=True, default=None)
    invariants: dict = eqx.field(default_factory=dict)
    params: dict = eqx.field(default_factory=dict)
    frozen_h: float | None = None

    def __post_init__(self):
        """Check the problem before anything is compiled: span, finite data, field shape.

        Systems built inside a jax trace (traced t1, y0 or args) are internal and not checked.
        """
        if self.frozen_h is not None:
            try:
                self.frozen_h = require_positive("frozen_h", self.frozen_h)
            except InvalidArgument as e:
                raise InvalidArgument(
                    f"system {self.name!r}: {e}; or None when f(t, y, args, 0) is the h → 0 limit"
                ) from None
        leaves = jax.tree_util.tree_leaves((self.t0, self.t1, self.y0, self.args))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            if self.h_dependent is None:  # StepAware passes an h-free field through unchanged
                self.h_dependent = True
            return
        t0, t1 = self.t0, self.t1
        if not (np.isfinite(t0) and np.isfinite(t1)) or not t1 > t0:
            raise InvalidArgument(
                f"system {self.name!r}: t0={t0!r}, t1={t1!r} is invalid; t1 must be finite and "
                "after t0 (for reverse time, call diffrax.diffeqsolve with t1 < t0 and "
                "StepAware(solver, signed=True) directly)"
            )
        self.y0 = _as_state(self.name, self.y0)
        for path, leaf in jax.tree_util.tree_flatten_with_path(self.args)[0]:
            if not _all_finite(leaf):
                raise InvalidArgument(
                    f"system {self.name!r}: args{jax.tree_util.keystr(path)} has non-finite "
                    f"entries ({leaf!r}); args must be finite"
                )
        h = jnp.zeros((), jnp.result_type(float))
        try:
            out = jax.eval_shape(self.vector_field, t0, self.y0, self.args, h)
        except Exception as e:  # the user's field failed to trace: say where
            raise InvalidArgument(
                f"system {self.name!r}: vector_field(t, y, args, h) fails on y0 "
                f"{_describe(self.y0)}: {type(e).__name__}: {e}"
            ) from e
        _check_like_state(self.name, out, self.y0)
        reads_h = uses_h(self.vector_field, t0, self.y0, self.args)
        if self.h_dependent is None:
            self.h_dependent = reads_h
        elif reads_h and not self.h_dependent:
            raise InvalidArgument(
                f"system {self.name!r}: h_dependent=False, but vector_field uses h; leave "
                "h_dependent out to have it read from the field, or use system.limit() for "
                "the h → 0 limit"
            )

    def __eq__(self, other) -> bool:
        return tree_equal(self, other)

    def __hash__(self) -> int:
        leaves, treedef = jax.tree_util.tree_flatten(self)
        shown = tuple(
            (leaf.shape, str(leaf.dtype)) if eqx.is_array(leaf) else leaf for leaf in leaves
        )
        return hash((treedef, shown))

    @property
    def has_limit(self) -> bool:
        """Whether f(t, y, args, 0) is the field's h → 0 limit (False: frozen, see `frozen_h`)."""
        return self.frozen_h is None

    def limit_field(self, t, y, args):
        """The field at h = 0, f(t, y, args, 0): the h → 0 limit ODE, or for a system with
        `frozen_h` (a lifted map) the field frozen at h = frozen_h, which is no limit."""
        return _AtZero(self.vector_field)(t, y, args)

    def term(self):
        """The diffrax term to solve: StepTerm(f) if the field uses h (solve it with a StepAware
        solver), else the ODETerm of the limit field. Equal (`eqx.tree_equal`) on every call."""
        if self.h_dependent:
            return StepTerm(self.vector_field)
        return diffrax.ODETerm(_AtZero(self.vector_field))

    def limit(self) -> System:
        """The field at h = 0 as an h-free System, y' = f(t, y, args, 0): the h → 0 limit
        (named "NAME (h → 0)"), the baseline a step-dependent model is compared with.

        For a system with `frozen_h` (a lifted map) this is *not* a limit: it is the field
        frozen at h = frozen_h, e.g. (Φ(y) - y)/h_train, named "NAME (frozen at h = h0)" and
        keeping `frozen_h`, so that code measuring against it can tell (`has_limit` is False).
        Every call returns an equal system of the same structure, so jitted code taking it
        compiles once.

        Returns:
            An h-free `System` (h_dependent=False) with the same y0, span and args.

        Examples:
            >>> damped = System(name="damped", vector_field=lambda t, y, args, h: -(1.0 + h) * y,
            ...                 y0=jnp.array(1.0))
            >>> damped.limit().name, damped.limit().has_limit
            ('damped (h → 0)', True)
            >>> damped.limit() == damped.limit()
            True
            >>> half = get("lifted_map", map=lambda y: 0.5 * y, y0=1.0, h_train=0.25)
            >>> frozen = half.limit()                       # (Φ(y) - y)/h_train = -2·y
            >>> frozen.name, frozen.frozen_h, frozen.has_limit
            ('lifted_map(<lambda>, h_train=0.25, y0=1.0) (frozen at h = 0.25)', 0.25, False)
            >>> float(frozen.vector_field(0.0, jnp.array(1.0), None, 0.0))
            -2.0
        """
        suffix = "(h → 0)" if self.frozen_h is None else f"(frozen at h = {self.frozen_h:g})"
        return self.with_(
            name=f"{self.name} {suffix}",
            vector_field=_AtZero(self.vector_field),
            h_dependent=False,
        )

    def freeze(self, h0: float) -> System:
        """h as a parameter: the h-free System y' = f(t, y, args, h0), named "NAME (h = h0)".

        The ODE a step-dependent model becomes when its step input is held at h0 whatever
        step the solver takes (`StepTerm.freeze` for a term); its solution is the model's
        "frozen-h" baseline. Every call with the same h0 returns an equal system.

        Args:
            h0: the step the field sees, > 0.

        Returns:
            An h-free `System` (h_dependent=False, no exact solution) with the same y0, span
            and args.

        Examples:
            >>> damped = System(name="damped", vector_field=lambda t, y, args, h: -(1.0 + h) * y,
            ...                 y0=jnp.array(1.0))
            >>> frozen = damped.freeze(0.5)                          # y' = -1.5·y
            >>> frozen.name, frozen.h_dependent
            ('damped (h = 0.5)', False)
            >>> float(frozen.vector_field(0.0, jnp.array(2.0), None, 0.1))
            -3.0
        """
        h0 = require_positive("h0", h0)
        return self.with_(
            name=f"{self.name} (h = {h0:g})",
            vector_field=_AtStep(self.vector_field, h0),
            h_dependent=False,
            exact=None,
        )

    def traced_form(self) -> tuple[System, jax.Array]:
        """The system as compiled code takes it, and its span [t0, t1] as an array.

        The labels (name, params) are blanked and the span becomes a number to pass, so
        systems equal up to their names and numbers (y0, args, t0, t1, the arrays in the
        field) share one trace of an `eqx.filter_jit` function: only the field's structure
        (and `stiff`, `h_dependent`, `frozen_h`) stays static.

        Returns:
            (blank, span): the blanked System (t0 = 0, t1 = 1) and jnp.array([t0, t1]).

        Examples:
            >>> a, span_a = get("van_der_pol", mu=1.0).traced_form()
            >>> b, span_b = get("van_der_pol", mu=2.0, t1=5.0).traced_form()
            >>> eqx.tree_equal(a.vector_field, b.vector_field), a.name == b.name == ""
            (True, True)
            >>> span_b.tolist()
            [0.0, 5.0]
        """
        blank = dataclasses.replace(self, name="", params={}, t0=0.0, t1=1.0)
        return blank, jnp.asarray([self.t0, self.t1], dtype=jnp.result_type(float))

    def with_(self, **changes) -> System:
        """A copy with some attributes replaced, e.g. `sys.with_(t1=20.0)`. A new
        `vector_field` without `h_dependent` has its h-dependence read afresh."""
        if "vector_field" in changes:
            changes.setdefault("h_dependent", None)
        return dataclasses.replace(self, **changes)


class _AtZero(eqx.Module):
    """f(t, y, args, 0): a field at h = 0, callable with or without an h (which it ignores)."""

    field: Callable

    def __call__(self, t, y, args, h=None):
        return self.field(t, y, args, jnp.zeros((), jnp.result_type(float)))


class _AtStep(eqx.Module):
    """f(t, y, args, h0): a field with its step input held at h0 (h as a parameter)."""

    field: Callable
    h0: float

    def __call__(self, t, y, args, h=None):
        return self.field(t, y, args, self.h0)


def _describe(tree) -> str:
    if eqx.is_array(tree):
        return f"of shape {tree.shape}"
    shapes = jax.tree_util.tree_map(lambda leaf: getattr(leaf, "shape", leaf), tree)
    return f"with leaf shapes {shapes}"


def tree_equal(a, b):
    """`eqx.tree_equal` (same structure, equal leaves; arrays of equal shape, dtype and values),
    compared on the host with numpy where no leaf is traced: jax's eager comparison would
    compile a small XLA kernel per leaf shape. The equality of a `System` and of a sweep's
    group (`analysis.batch.Group`), which caches compare on every lookup.

    Examples:
        >>> import jax.numpy as jnp
        >>> tree_equal({"a": jnp.ones(2)}, {"a": jnp.ones(2)}), tree_equal(1.0, jnp.ones(1))
        (True, False)
    """
    leaves_a, tree_a = jax.tree_util.tree_flatten(a)
    leaves_b, tree_b = jax.tree_util.tree_flatten(b)
    if tree_a != tree_b:
        return False
    if any(isinstance(x, jax.core.Tracer) for x in leaves_a + leaves_b):
        return eqx.tree_equal(a, b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        if eqx.is_array(x) != eqx.is_array(y):
            return False
        if not eqx.is_array(x):
            if not bool(x == y):
                return False
            continue
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape or x.dtype != y.dtype or not np.array_equal(x, y):
            return False
    return True


def _as_state(name: str, y0):
    """y0 with python floats and numpy arrays as jax arrays; InvalidArgument naming a bad leaf."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(y0, is_leaf=lambda x: isinstance(x, list))
    if not flat:
        raise InvalidArgument(f"system {name!r}: y0={y0!r} has no arrays; give a float array")
    leaves = []
    for path, leaf in flat:
        where = f"y0{jax.tree_util.keystr(path)}"
        if isinstance(leaf, list):
            raise InvalidArgument(
                f"system {name!r}: {where} is a python list ({leaf!r}), which is no array; pass "
                f"jnp.asarray({where}) for a vector, or a tuple or dict for a pytree state"
            )
        if isinstance(leaf, float | np.ndarray | np.generic):
            leaf = jnp.asarray(leaf)
        if not isinstance(leaf, jax.Array):
            raise InvalidArgument(
                f"system {name!r}: {where} is a {type(leaf).__name__} ({leaf!r}), not an array; "
                "every leaf of y0 must be a float array"
            )
        if not jnp.issubdtype(leaf.dtype, jnp.floating):
            raise InvalidArgument(
                f"system {name!r}: {where} has dtype {leaf.dtype}, not floating; every leaf of "
                "y0 must be a float array (e.g. jnp.asarray(y0, dtype=float))"
            )
        if not _all_finite(leaf):
            raise InvalidArgument(
                f"system {name!r}: {where} has non-finite entries ({leaf!r}); y0 must be finite"
            )
        leaves.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, leaves)


def _check_like_state(name: str, out, y0) -> None:
    """InvalidArgument unless the field's output `out` has y0's structure, shapes and dtypes."""
    if jax.tree_util.tree_structure(out) != jax.tree_util.tree_structure(y0):
        raise InvalidArgument(
            f"system {name!r}: vector_field returns {jax.tree_util.tree_structure(out)}; it must "
            f"return y0's structure {jax.tree_util.tree_structure(y0)}"
        )
    for (path, got), want in zip(
        jax.tree_util.tree_flatten_with_path(out)[0], jax.tree_util.tree_leaves(y0), strict=True
    ):
        if getattr(got, "shape", None) != want.shape or getattr(got, "dtype", None) != want.dtype:
            raise InvalidArgument(
                f"system {name!r}: vector_field returns shape {getattr(got, 'shape', got)} and "
                f"dtype {getattr(got, 'dtype', type(got).__name__)} at y0"
                f"{jax.tree_util.keystr(path)}; it must return y0's shape {want.shape} and "
                f"dtype {want.dtype} there"
            )


_CATALOG: dict[str, Callable[..., System]] = {}


def register(name: str):
    """Decorator adding a builder `fn(**params) -> System` to the catalog under `name`.

    The builder's keyword parameters become the system's parameters in `get(name, **params)`.
    Build the field from module-level functions (numbers in `args`, or in an `eqx.Partial`),
    not closures: then every `get` builds an equal system and jitted code compiles once.

    Args:
        name: the catalog name (an existing name is replaced).

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Examples:
        >>> def decay(t, y, args, h):
        ...     return -args * y
        >>> def decay_exact(lam, t):
        ...     return jnp.exp(-lam * t)
        >>> @register("my_decay")
        ... def _my_decay(lam: float = 2.0) -> System:
        ...     return System(name=f"my_decay(lam={lam})", y0=jnp.array(1.0),
        ...                   vector_field=decay, args=jnp.asarray(lam),
        ...                   exact=eqx.Partial(decay_exact, lam))
        >>> sys = get("my_decay", lam=3.0)
        >>> sys.name, round(float(sys.exact(1.0)), 6)                # e^-3
        ('my_decay(lam=3.0)', 0.049787)
        >>> get("my_decay", lam=3.0) == sys                          # built afresh, equal
        True
    """

    def deco(fn):
        _CATALOG[name] = fn
        return fn

    return deco


def names() -> list[str]:
    """The catalog's system names, sorted.

    Returns:
        A list of names accepted by `get`.

    Examples:
        >>> names()
        ['harmonic', 'kepler', 'lifted_map', 'linear', 'linear10', 'logistic', 'lotka_volterra',
         'modified_euler', 'perturbed', 'prothero_robinson', 'van_der_pol']
    """
    return sorted(_CATALOG)


def _suggest(value: str, valid) -> str:
    close = difflib.get_close_matches(value, list(valid), n=3)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def get(name: str | System, **params) -> System:
    """Build the catalog system `name` with the given parameters.

    A `System` passed as `name` is returned unchanged (parameters are not allowed then). The same
    name and parameters build an equal system of the same structure (no closures inside), so
    jitted code taking it compiles once per process. Raises InvalidArgument (a ValueError) naming
    the valid systems or parameters.

    Args:
        name: a catalog name (see `names()`), or a System (returned as is).
        **params: the builder's parameters, e.g. `lam=2.0` for "linear" or `base="linear",
            c=1.0, q=1` for "perturbed".

    Returns:
        The `System`.

    Examples:
        >>> get("logistic", r=1.0).exact(0.0)
        Array(0.1, dtype=float64)
    """
    if isinstance(name, System):
        if params:
            raise InvalidArgument(
                f"get(): parameters {sorted(params)} given with a System object; "
                "build it with them instead"
            )
        return name
    if name not in _CATALOG:
        raise InvalidArgument(
            f"system={name!r} is not in the catalog.{_suggest(str(name), _CATALOG)} "
            f"Valid systems: {', '.join(names())}"
        )
    builder = _CATALOG[name]
    valid = [p for p in inspect.signature(builder).parameters]
    unknown = [p for p in params if p not in valid]
    if unknown:
        raise InvalidArgument(
            f"system {name!r} has no parameter {unknown[0]!r}.{_suggest(unknown[0], valid)} "
            f"Valid parameters: {', '.join(valid) or '(none)'}"
        )
    return builder(**params)


def _f64(x):
    return jnp.asarray(x, dtype=jnp.result_type(float))


def _all_finite(leaf) -> bool:
    arr = np.asarray(leaf)
    return not np.issubdtype(arr.dtype, np.number) or bool(np.all(np.isfinite(arr)))


def _label(base: str, **shown) -> str:
    inner = ", ".join(f"{k}={v}" for k, v in shown.items())
    return f"{base}({inner})" if inner else base


def _changed(builder: Callable, **values) -> dict:
    """The `values` that differ from `builder`'s defaults: what a system's name must show so
    that different systems never share a name in a results table."""
    defaults = inspect.signature(builder).parameters
    return {k: v for k, v in values.items() if v != defaults[k].default}


# ----------------------------------------------------------------------------- classic systems
# Fields, exact solutions and invariants are module-level functions; their parameters ride along
# as leaves of an eqx.Partial, so a rebuilt system has the same structure (no closure identity).


def _decay_field(t, y, args, h):
    return -args * y


def _decay_exact(y0, lam, t):
    return y0 * jnp.exp(-lam * t)


@register("linear")
def _linear(lam: float = 1.0, y0: float = 1.0, t1: float = 1.0) -> System:
    """y' = -lam·y, exact y0·exp(-lam·t)."""
    return System(
        name=_label("linear", **_changed(_linear, lam=lam, y0=y0)),
        vector_field=_decay_field,
        y0=_f64(y0),
        t1=t1,
        args=_f64(lam),
        exact=eqx.Partial(_decay_exact, _f64(y0), lam),
        equilibria=(_f64(0.0),),
        params=dict(lam=lam, y0=y0, t1=t1),
    )


def _linear10_matrix(dim: int, seed: int) -> np.ndarray:
    """A stable, non-normal matrix: -(M Mᵀ/dim + I/2) + (S - Sᵀ)/2 from a seeded generator."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((dim, dim))
    s = rng.standard_normal((dim, dim))
    return -(m @ m.T / dim + 0.5 * np.eye(dim)) + 0.5 * (s - s.T)


def _matrix_field(t, y, args, h):
    return args @ y


def _matrix_exact(a, y0, t):
    return jax.scipy.linalg.expm(a * t) @ y0


@register("linear10")
def _linear10(dim: int = 10, seed: int = 0, t1: float = 1.0) -> System:
    """y' = A·y with a seeded stable 10×10 A; exact expm(A t)·y0."""
    a = _f64(_linear10_matrix(dim, seed))
    y0 = _f64(np.linspace(1.0, -1.0, dim))
    return System(
        name=_label("linear10", **_changed(_linear10, dim=dim, seed=seed)),
        vector_field=_matrix_field,
        y0=y0,
        t1=t1,
        args=a,
        exact=eqx.Partial(_matrix_exact, a, y0),
        equilibria=(jnp.zeros(dim),),
        params=dict(dim=dim, seed=seed, t1=t1),
    )


def _logistic_field(t, y, args, h):
    return args * y * (1 - y)


def _logistic_exact(r, y0, t):
    e = jnp.exp(r * t)
    return _f64(y0) * e / (1 - y0 + y0 * e)


@register("logistic")
def _logistic(r: float = 1.0, y0: float = 0.1, t1: float = 5.0) -> System:
    """y' = r·y(1 - y), exact y0·e^{rt} / (1 - y0 + y0·e^{rt}); equilibria 0 and 1."""
    return System(
        name=_label("logistic", **_changed(_logistic, r=r, y0=y0)),
        vector_field=_logistic_field,
        y0=_f64(y0),
        t1=t1,
        args=_f64(r),
        exact=eqx.Partial(_logistic_exact, r, y0),
        equilibria=(_f64(0.0), _f64(1.0)),
        params=dict(r=r, y0=y0, t1=t1),
    )


def _harmonic_field(t, y, args, h):
    return jnp.stack([y[1], -(args**2) * y[0]])


def _harmonic_exact(omega, t):
    return jnp.stack([jnp.cos(omega * t), -omega * jnp.sin(omega * t)])


def _harmonic_energy(omega, y):
    return 0.5 * (y[1] ** 2 + omega**2 * y[0] ** 2)


@register("harmonic")
def _harmonic(omega: float = 1.0, t1: float = 2 * np.pi) -> System:
    """q' = p, p' = -ω²q from (1, 0); exact (cos ωt, -ω sin ωt); energy conserved."""
    return System(
        name=_label("harmonic", **({"omega": omega} if omega != 1.0 else {})),
        vector_field=_harmonic_field,
        y0=_f64([1.0, 0.0]),
        t1=t1,
        args=_f64(omega),
        exact=eqx.Partial(_harmonic_exact, omega),
        equilibria=(jnp.zeros(2),),
        invariants={"energy": eqx.Partial(_harmonic_energy, omega)},
        params=dict(omega=omega, t1=t1),
    )


def _lotka_volterra_field(t, y, args, h):
    a, b, d, g = args
    return jnp.stack([a * y[0] - b * y[0] * y[1], d * y[0] * y[1] - g * y[1]])


def _lotka_volterra_integral(alpha, beta, delta, gamma, y):
    return delta * y[0] - gamma * jnp.log(y[0]) + beta * y[1] - alpha * jnp.log(y[1])


@register("lotka_volterra")
def _lotka_volterra(
    alpha: float = 1.5, beta: float = 1.0, delta: float = 1.0, gamma: float = 3.0, t1: float = 10.0
) -> System:
    """x' = αx - βxy, y' = δxy - γy from (1, 1); no closed form (a reference solve is used)."""
    conserved = eqx.Partial(_lotka_volterra_integral, alpha, beta, delta, gamma)
    return System(
        name=_label(
            "lotka_volterra",
            **_changed(_lotka_volterra, alpha=alpha, beta=beta, delta=delta, gamma=gamma),
        ),
        vector_field=_lotka_volterra_field,
        y0=_f64([1.0, 1.0]),
        t1=t1,
        args=_f64([alpha, beta, delta, gamma]),
        equilibria=(jnp.zeros(2), _f64([gamma / delta, alpha / beta])),
        invariants={"first_integral": conserved},
        params=dict(alpha=alpha, beta=beta, delta=delta, gamma=gamma, t1=t1),
    )


def _van_der_pol_field(t, y, args, h):
    return jnp.stack([y[1], args * (1 - y[0] ** 2) * y[1] - y[0]])


@register("van_der_pol")
def _van_der_pol(mu: float = 1.0, t1: float | None = None) -> System:
    """x' = y, y' = mu·(1 - x²)·y - x from (2, 0); stiff for mu ≥ 100. Default t1 = 2·(mu + 1)."""
    require_positive("mu", mu)
    t1 = 2.0 * (mu + 1.0) if t1 is None else t1
    return System(
        name=_label("van_der_pol", mu=mu),
        vector_field=_van_der_pol_field,
        y0=_f64([2.0, 0.0]),
        t1=t1,
        args=_f64(mu),
        equilibria=(jnp.zeros(2),),
        stiff=mu >= 100,
        params=dict(mu=mu, t1=t1),
    )


def _prothero_robinson_field(t, y, args, h):
    return -args * (y - jnp.sin(t)) + jnp.cos(t)


def _sine(t):
    return jnp.sin(_f64(t))


@register("prothero_robinson")
def _prothero_robinson(stiffness: float = 1e3, t1: float = 2.0) -> System:
    """y' = -stiffness·(y - sin t) + cos t from y(0) = 0; exact y = sin t for any stiffness."""
    require_positive("stiffness", stiffness)
    return System(
        name=_label("prothero_robinson", stiffness=stiffness),
        vector_field=_prothero_robinson_field,
        y0=_f64(0.0),
        t1=t1,
        args=_f64(stiffness),
        exact=_sine,
        stiff=stiffness >= 100,
        params=dict(stiffness=stiffness, t1=t1),
    )


def _kepler_anomaly(t, e, iterations: int = 40):
    """Solve Kepler's equation E - e·sin E = t by Newton's method (converges for e < 0.9)."""
    mean = jnp.asarray(t, dtype=jnp.result_type(float))

    def newton(_, big_e):
        return big_e - (big_e - e * jnp.sin(big_e) - mean) / (1 - e * jnp.cos(big_e))

    return jax.lax.fori_loop(0, iterations, newton, mean + e * jnp.sin(mean))


def _kepler_field(t, y, args, h):
    q, p = y[:2], y[2:]
    return jnp.concatenate([p, -q / jnp.sum(q**2) ** 1.5])


def _kepler_exact(e, root, t):
    big_e = _kepler_anomaly(t, e)
    c, s = jnp.cos(big_e), jnp.sin(big_e)
    return jnp.stack([c - e, root * s, -s / (1 - e * c), root * c / (1 - e * c)])


def _kepler_energy(y):
    return 0.5 * jnp.sum(y[2:] ** 2) - 1 / jnp.sqrt(jnp.sum(y[:2] ** 2))


def _kepler_angular_momentum(y):
    return y[0] * y[3] - y[1] * y[2]


@register("kepler")
def _kepler(eccentricity: float = 0.5, t1: float = 2 * np.pi) -> System:
    """Two-body problem y = (q1, q2, p1, p2), q'' = -q/|q|³, period 2π, semi-major axis 1.

    Exact solution from Kepler's equation; invariants energy = -1/2 and angular momentum
    sqrt(1 - e²).
    """
    e = eccentricity
    if not 0 <= e < 0.9:
        raise InvalidArgument(f"eccentricity={e!r} is invalid; it must be in [0, 0.9)")
    return System(
        name=_label("kepler", **({"e": e} if e != 0.5 else {})),
        vector_field=_kepler_field,
        y0=_f64([1 - e, 0.0, 0.0, np.sqrt((1 + e) / (1 - e))]),
        t1=t1,
        exact=eqx.Partial(_kepler_exact, e, float(np.sqrt(1 - e**2))),
        invariants={"energy": _kepler_energy, "angular_momentum": _kepler_angular_momentum},
        params=dict(eccentricity=e, t1=t1),
    )


# ------------------------------------------------------------------ step-dependent families
# Each family is a small eqx.Module wrapping the base field: its parameters are leaves and the
# base field is a sub-pytree, so the same family of the same base has one structure.


def _leafwise(fn: Callable) -> Callable:
    return eqx.Partial(jax.tree_util.tree_map, fn)


def _identity(y):
    return y


def _square(y):
    return y**2


_PERTURBATIONS = {
    "sin": _leafwise(jnp.sin),
    "identity": _leafwise(_identity),
    "square": _leafwise(_square),
}


def _resolve_base(base, base_params) -> System:
    if isinstance(base, System):
        if base_params:
            raise InvalidArgument("base_params given with a System object as base; pass one")
        return base
    return get(base, **(base_params or {}))


class _Perturbed(eqx.Module):
    """f(t, y, args, h) + c·h^q·g(y), leaf by leaf for a pytree state."""

    base: Callable
    c: float
    q: float
    g: Callable

    def __call__(self, t, y, args, h):
        return jax.tree_util.tree_map(
            lambda fi, gi: fi + self.c * h**self.q * gi, self.base(t, y, args, h), self.g(y)
        )


@register("perturbed")
def _perturbed(
    base: str | System = "linear",
    c: float = 1.0,
    q: float = 1,
    g: str | Callable = "sin",
    base_params: dict | None = None,
) -> System:
    """f(t, y, args, h) + c·h^q·g(y): an O(h^q) perturbation of `base`, same limit as h → 0.

    g is a callable y -> a state of y's structure, or one of 'sin', 'identity', 'square' (taken
    leaf by leaf).
    """
    sys = _resolve_base(base, base_params)
    require_positive("q", q)
    if isinstance(g, str):
        if g not in _PERTURBATIONS:
            raise InvalidArgument(
                f"g={g!r} is not a known perturbation; use a callable or one of "
                f"{sorted(_PERTURBATIONS)}"
            )
        g_name, g_fn = g, _PERTURBATIONS[g]
    else:
        g_name, g_fn = getattr(g, "__name__", "g"), g
    return sys.with_(
        name=f"perturbed({sys.name}, c={c}, q={q}, g={g_name})",
        vector_field=_Perturbed(sys.vector_field, c, q, g_fn),
        h_dependent=True,
        params=dict(base=sys.name, base_params=sys.params, c=c, q=q, g=g_name),
    )


class _FlowDerivative(eqx.Module):
    """D g(t, y, args) = ∂g/∂t + (∂g/∂y)·field(t, y, args)."""

    field: Callable
    g: Callable

    def __call__(self, t, y, args):
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        tangent = (jnp.ones_like(t), self.field(t, y, args))
        return jax.jvp(lambda tt, yy: self.g(tt, yy, args), (t, y), tangent)[1]


def flow_derivative(field: Callable, g: Callable) -> Callable:
    """D g(t, y, args) = ∂g/∂t + (∂g/∂y)·field(t, y, args): the derivative of g along the flow.

    Args:
        field: the flow's field (t, y, args) -> dy/dt.
        g: the function (t, y, args) -> array to differentiate.

    Returns:
        D g as an equinox Module called as (t, y, args).

    Examples:
        >>> dg = flow_derivative(lambda t, y, args: -y, lambda t, y, args: y**2)
        >>> float(dg(0.0, jnp.asarray(3.0), None))      # 2y·(-y)
        -18.0
    """
    return _FlowDerivative(field, g)


class _ModifiedEuler(eqx.Module):
    """f + (h/2)·Df [+ (h²/6)·D²f] for the h-free field `base` (read at h = 0)."""

    base: Callable
    terms: int = eqx.field(static=True)

    def __call__(self, t, y, args, h):
        f = _AtZero(self.base)
        df = _FlowDerivative(f, f)
        out = jax.tree_util.tree_map(lambda a, b: a + (h / 2) * b, f(t, y, args), df(t, y, args))
        if self.terms == 2:
            d2f = _FlowDerivative(f, df)(t, y, args)
            out = jax.tree_util.tree_map(lambda a, b: a + (h**2 / 6) * b, out, d2f)
        return out


@register("modified_euler")
def _modified_euler(
    base: str | System = "logistic", terms: int = 1, base_params: dict | None = None
) -> System:
    """The modifying integrator for Euler: f + (h/2)·Df (+ (h²/6)·D²f with terms=2).

    Euler on this field agrees with the exact flow of `base` to order 1 + terms, because
    y(t + h) = y + h·f + (h²/2)·Df + (h³/6)·D²f + O(h⁴) along the exact flow.
    """
    sys = _resolve_base(base, base_params)
    if terms not in (1, 2):
        raise InvalidArgument(f"terms={terms!r} is invalid; it must be 1 or 2")
    if sys.h_dependent:
        raise InvalidArgument(
            f"base={sys.name!r} depends on h; modified_euler needs an h-free base"
        )
    return sys.with_(
        name=f"modified_euler({sys.name}, terms={terms})",
        vector_field=_ModifiedEuler(sys.vector_field, terms),
        h_dependent=True,
        params=dict(base=sys.name, base_params=sys.params, terms=terms),
    )


def _residual_weights(dim: int, seed: int, scale: float):
    rng = np.random.default_rng(seed)
    rotation = np.zeros((dim, dim))
    for i in range(0, dim - 1, 2):
        rotation[i, i + 1], rotation[i + 1, i] = -1.0, 1.0
    w = scale * (rng.standard_normal((dim, dim)) / np.sqrt(dim) + rotation) - 0.5 * np.eye(dim)
    return _f64(w), _f64(0.1 * rng.standard_normal(dim))


class _LogisticMap(eqx.Module):
    """Φ(y) = μ·y(1 - y)."""

    mu: float

    def __call__(self, y):
        return self.mu * y * (1 - y)


class _HenonMap(eqx.Module):
    """Φ(x, y) = (1 - a·x² + y, b·x)."""

    a: float
    b: float

    def __call__(self, y):
        return jnp.stack([1 - self.a * y[0] ** 2 + y[1], self.b * y[0]])


class _ResidualMap(eqx.Module):
    """Φ(x) = x + tanh(W·x + b): one residual layer."""

    w: jax.Array
    bias: jax.Array

    def __call__(self, y):
        return y + jnp.tanh(self.w @ y + self.bias)


def _map_catalog(name: str, mu: float, a: float, b: float, dim: int, seed: int, scale: float):
    if name == "logistic":
        return _LogisticMap(mu), _f64(0.2), f"logistic, mu={mu}"
    if name == "henon":
        return _HenonMap(a, b), _f64([0.1, 0.1]), f"henon, a={a}, b={b}"
    if name == "residual":
        return (
            _ResidualMap(*_residual_weights(dim, seed, scale)),
            _f64(np.full(dim, 0.5)),
            f"residual, dim={dim}, seed={seed}" + (f", scale={scale}" if scale != 1.0 else ""),
        )
    raise InvalidArgument(
        f"map={name!r} is not a shipped map.{_suggest(name, ['logistic', 'henon', 'residual'])} "
        "Valid maps: 'logistic', 'henon', 'residual', or pass a callable"
    )


def shipped_map(
    name: str,
    *,
    mu: float = 3.2,
    a: float = 1.4,
    b: float = 0.3,
    dim: int = 2,
    seed: int = 0,
    scale: float = 1.0,
):
    """A map that ``lifted_map`` ships, as (Φ, default y0), e.g. to iterate Φ itself.

    Args:
        name: "logistic" (Φ(y) = μ·y(1 - y)), "henon" or "residual" (x + tanh(Wx + b)).
        mu: the logistic map's parameter.
        a: the Hénon map's parameter a.
        b: the Hénon map's parameter b.
        dim: the residual map's dimension.
        seed: the seed of the residual map's random weights.
        scale: the scale of the residual map's random weights.

    Returns:
        (Φ, y0): the map as an equinox Module y -> Φ(y) (its parameters are leaves), and its
        default initial state.

    Examples:
        >>> phi, y0 = shipped_map("logistic", mu=2.0)
        >>> float(phi(y0))          # 2·0.2·0.8
        0.32000000000000006
    """
    phi, y0, _ = _map_catalog(name, mu, a, b, dim, seed, scale)
    return phi, y0


class _Lifted(eqx.Module):
    """(Φ(y) - y)/h, leaf by leaf, read at h = h_train where h = 0."""

    phi: Callable
    h_train: float

    def __call__(self, t, y, args, h):
        safe_h = jnp.where(h == 0, self.h_train, h)
        return jax.tree_util.tree_map(lambda p, x: (p - x) / safe_h, self.phi(y), y)


@register("lifted_map")
def _lifted_map(
    map: str | Callable = "logistic",
    h_train: float = 1.0,
    steps: int = 100,
    y0=None,
    mu: float = 3.2,
    a: float = 1.4,
    b: float = 0.3,
    dim: int = 2,
    seed: int = 0,
    scale: float = 1.0,
) -> System:
    """A map Φ read as the step-dependent field f(y, h) = (Φ(y) - y)/h.

    Euler with step h gives y + h·(Φ(y) - y)/h = Φ(y): it iterates Φ exactly, whatever h. Other
    solvers (and Euler's error estimate) evaluate the field at intermediate points and do not.
    At h = 0 (outside a step) the field falls back to (Φ(y) - y)/h_train, the map's "frozen"
    reading; a general map has no h → 0 limit, so the system has `frozen_h` = h_train and its
    `limit()` is that frozen field, named "... (frozen at h = h_train)". The time span is
    [0, steps·h_train].
    Shipped maps: 'logistic' (μ·y(1-y)), 'henon' (a, b), 'residual' (x + tanh(Wx + b), seeded).
    """
    require_positive("h_train", h_train)
    if callable(map):
        if y0 is None:
            raise InvalidArgument("lifted_map with a callable map needs y0")
        phi, default_y0, label = map, None, getattr(map, "__name__", "phi")
    else:
        phi, default_y0, label = _map_catalog(map, mu, a, b, dim, seed, scale)
    # numbers, lists and arrays become one float vector; a dict state is converted leaf by leaf
    as_state = partial(jax.tree_util.tree_map, _f64) if isinstance(y0, dict) else _f64
    start = as_state(y0) if y0 is not None else default_y0

    shown = _changed(_lifted_map, h_train=h_train)
    if y0 is not None:
        shown["y0"] = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf).tolist(), y0)

    return System(
        name=f"lifted_map({', '.join([label, *(f'{k}={v}' for k, v in shown.items())])})",
        vector_field=_Lifted(phi, h_train),
        y0=start,
        t1=steps * h_train,
        h_dependent=True,
        params=dict(map=label, h_train=h_train, steps=steps),
        frozen_h=h_train,
    )
