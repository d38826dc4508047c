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
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from .errors import InvalidArgument, require_positive
from .stepdep import StepTerm, uses_h

__all__ = ["System", "get", "names", "register", "shipped_map"]


def _shapes(tree):
    """Shape and dtype of an array, or the tree of them for a PyTree of arrays (for messages)."""
    if hasattr(tree, "shape") and hasattr(tree, "dtype"):
        return f"{tree.shape} and dtype {tree.dtype}"
    return str(jax.tree.map(lambda x: f"{getattr(x, 'shape', x)} {getattr(x, 'dtype', '')}", tree))


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """A (possibly step-dependent) initial value problem.

    Attributes:
        name: readable identifier, including the non-default parameters.
        vector_field: f(t, y, args, h) -> dy/dt, jax-traceable; h = 0 is the limit ODE.
        y0: initial state (float64 array when x64 is on).
        t0, t1: the time span.
        args: pytree passed to the field (parameters that may be vmapped).
        exact: optional exact solution t -> y(t) of the h = 0 ODE (jax-traceable).
        equilibria: optional known equilibria of the h = 0 ODE, as a list of arrays.
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

    Construction checks the span, that y0 and args are finite, and that the field returns y0's
    shape and dtype; a bad problem raises InvalidArgument before anything is compiled.

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
    """

    name: str
    vector_field: Callable
    y0: Any
    t0: float = 0.0
    t1: float = 1.0
    args: Any = None
    exact: Callable | None = None
    equilibria: tuple | None = None
    stiff: bool = False
    h_dependent: bool | None = None
    invariants: dict = dataclasses.field(default_factory=dict)
    params: dict = dataclasses.field(default_factory=dict)
    frozen_h: float | None = None

    def __post_init__(self):
        """Check the problem before anything is compiled: span, finite data, field shape.

        Systems built inside a jax trace (traced t1, y0 or args) are internal and not checked.
        """
        if self.frozen_h is not None:
            try:
                object.__setattr__(self, "frozen_h", require_positive("frozen_h", self.frozen_h))
            except InvalidArgument as e:
                raise InvalidArgument(
                    f"system {self.name!r}: {e}; or None when f(t, y, args, 0) is the h → 0 limit"
                ) from None
        leaves = jax.tree_util.tree_leaves((self.t0, self.t1, self.y0, self.args))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            if self.h_dependent is None:  # StepAware passes an h-free field through unchanged
                object.__setattr__(self, "h_dependent", True)
            return
        t0, t1 = self.t0, self.t1
        if not (np.isfinite(t0) and np.isfinite(t1)) or not t1 > t0:
            raise InvalidArgument(
                f"system {self.name!r}: t0={t0!r}, t1={t1!r} is invalid; t1 must be finite and "
                "after t0 (for reverse time, call diffrax.diffeqsolve with t1 < t0 and "
                "StepAware(solver, signed=True) directly)"
            )
        for what, tree in (("y0", self.y0), ("args", self.args)):
            for leaf in jax.tree_util.tree_leaves(tree):
                if not _all_finite(leaf):
                    raise InvalidArgument(
                        f"system {self.name!r}: {what} has non-finite entries ({leaf!r}); "
                        f"{what} must be finite"
                    )
        # A state is an array or a PyTree of arrays (a dict, a tuple, ...), as diffrax takes.
        y0 = jax.tree.map(jnp.asarray, self.y0)
        want = jax.eval_shape(lambda: y0)
        h = jnp.zeros((), jnp.result_type(float))
        try:
            out = jax.eval_shape(self.vector_field, t0, y0, self.args, h)
        except Exception as e:  # the user's field failed to trace: say where
            raise InvalidArgument(
                f"system {self.name!r}: vector_field(t, y, args, h) fails on y0 of shape "
                f"{getattr(want, 'shape', _shapes(want))}: {type(e).__name__}: {e}"
            ) from e
        if _shapes(out) != _shapes(want):
            raise InvalidArgument(
                f"system {self.name!r}: vector_field returns shape {_shapes(out)}; it must "
                f"return y0's shape {_shapes(want)}"
            )
        reads_h = uses_h(self.vector_field, t0, y0, self.args)
        if self.h_dependent is None:
            object.__setattr__(self, "h_dependent", reads_h)
        elif reads_h and not self.h_dependent:
            raise InvalidArgument(
                f"system {self.name!r}: h_dependent=False, but vector_field uses h; leave "
                "h_dependent out to have it read from the field, or use system.limit() for "
                "the h → 0 limit"
            )

    @property
    def has_limit(self) -> bool:
        """Whether f(t, y, args, 0) is the field's h → 0 limit (False: frozen, see `frozen_h`)."""
        return self.frozen_h is None

    def limit_field(self, t, y, args):
        """The field at h = 0, f(t, y, args, 0): the h → 0 limit ODE, or for a system with
        `frozen_h` (a lifted map) the field frozen at h = frozen_h, which is no limit."""
        return self.vector_field(t, y, args, jnp.zeros((), jnp.result_type(float)))

    def term(self):
        """The diffrax term to solve: StepTerm(f) if the field uses h (solve it with a StepAware
        solver), else the ODETerm of the limit field."""
        if self.h_dependent:
            return StepTerm(self.vector_field)
        return diffrax.ODETerm(self.limit_field)

    def limit(self) -> System:
        """The field at h = 0 as an h-free System, y' = f(t, y, args, 0): the h → 0 limit
        (named "NAME (h → 0)"), the baseline a step-dependent model is compared with.

        For a system with `frozen_h` (a lifted map) this is *not* a limit: it is the field
        frozen at h = frozen_h, e.g. (Φ(y) - y)/h_train, named "NAME (frozen at h = h0)" and
        keeping `frozen_h`, so that code measuring against it can tell (`has_limit` is False).

        Returns:
            An h-free `System` (h_dependent=False) with the same y0, span and args.

        Examples:
            >>> damped = System(name="damped", vector_field=lambda t, y, args, h: -(1.0 + h) * y,
            ...                 y0=jnp.array(1.0))
            >>> damped.limit().name, damped.limit().has_limit
            ('damped (h → 0)', True)
            >>> half = get("lifted_map", map=lambda y: 0.5 * y, y0=1.0, h_train=0.25)
            >>> frozen = half.limit()                       # (Φ(y) - y)/h_train = -2·y
            >>> frozen.name, frozen.frozen_h, frozen.has_limit
            ('lifted_map(<lambda>, h_train=0.25, y0=1.0) (frozen at h = 0.25)', 0.25, False)
            >>> float(frozen.vector_field(0.0, jnp.array(1.0), None, 0.0))
            -2.0
        """
        limit_field = self.limit_field
        suffix = "(h → 0)" if self.frozen_h is None else f"(frozen at h = {self.frozen_h:g})"
        return self.with_(
            name=f"{self.name} {suffix}",
            vector_field=lambda t, y, args, h: limit_field(t, y, args),
            h_dependent=False,
        )

    def with_(self, **changes) -> System:
        """A copy with some attributes replaced, e.g. `sys.with_(t1=20.0)`. A new
        `vector_field` without `h_dependent` has its h-dependence read afresh."""
        if "vector_field" in changes:
            changes.setdefault("h_dependent", None)
        return dataclasses.replace(self, **changes)


_CATALOG: dict[str, Callable[..., System]] = {}
_BUILT: dict[tuple, System] = {}


def register(name: str):
    """Decorator adding a builder `fn(**params) -> System` to the catalog under `name`.

    The builder's keyword parameters become the system's parameters in `get(name, **params)`.

    Args:
        name: the catalog name (an existing name is replaced).

    Returns:
        A decorator that registers the builder and returns it unchanged.

    Examples:
        >>> @register("my_decay")
        ... def _my_decay(lam: float = 2.0) -> System:
        ...     return System(name=f"my_decay(lam={lam})", y0=jnp.array(1.0),
        ...                   vector_field=lambda t, y, args, h: -lam * y,
        ...                   exact=lambda t: jnp.exp(-lam * t))
        >>> sys = get("my_decay", lam=3.0)
        >>> sys.name, round(float(sys.exact(1.0)), 6)                # e^-3
        ('my_decay(lam=3.0)', 0.049787)
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
    name and (hashable) parameters return the same object, so sweeps of it compile once per
    process. Raises InvalidArgument (a ValueError) naming the valid systems or parameters.

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
    try:
        key = (name, tuple(sorted(params.items())))
        hash(key)
    except TypeError:  # unhashable parameters (a dict, an array): build afresh
        return builder(**params)
    # The same name and parameters give the same (frozen) object, so compiled sweeps are reused.
    if key not in _BUILT:
        _BUILT[key] = builder(**params)
    return _BUILT[key]


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


@register("linear")
def _linear(lam: float = 1.0, y0: float = 1.0, t1: float = 1.0) -> System:
    """y' = -lam·y, exact y0·exp(-lam·t)."""

    def f(t, y, args, h):
        return -args * y

    def exact(t):
        return _f64(y0) * jnp.exp(-lam * t)

    return System(
        name=_label("linear", **_changed(_linear, lam=lam, y0=y0)),
        vector_field=f,
        y0=_f64(y0),
        t1=t1,
        args=_f64(lam),
        exact=exact,
        equilibria=(_f64(0.0),),
        params=dict(lam=lam, y0=y0, t1=t1),
    )


def _linear10_matrix(dim: int, seed: int) -> np.ndarray:
    """A stable, non-normal matrix: -(M Mᵀ/dim + I/2) + (S - Sᵀ)/2 from a seeded generator."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((dim, dim))
    s = rng.standard_normal((dim, dim))
    return -(m @ m.T / dim + 0.5 * np.eye(dim)) + 0.5 * (s - s.T)


@register("linear10")
def _linear10(dim: int = 10, seed: int = 0, t1: float = 1.0) -> System:
    """y' = A·y with a seeded stable 10×10 A; exact expm(A t)·y0."""
    a = _f64(_linear10_matrix(dim, seed))
    y0 = _f64(np.linspace(1.0, -1.0, dim))

    def f(t, y, args, h):
        return args @ y

    def exact(t):
        return jax.scipy.linalg.expm(a * t) @ y0

    return System(
        name=_label("linear10", **_changed(_linear10, dim=dim, seed=seed)),
        vector_field=f,
        y0=y0,
        t1=t1,
        args=a,
        exact=exact,
        equilibria=(jnp.zeros(dim),),
        params=dict(dim=dim, seed=seed, t1=t1),
    )


@register("logistic")
def _logistic(r: float = 1.0, y0: float = 0.1, t1: float = 5.0) -> System:
    """y' = r·y(1 - y), exact y0·e^{rt} / (1 - y0 + y0·e^{rt}); equilibria 0 and 1."""

    def f(t, y, args, h):
        return args * y * (1 - y)

    def exact(t):
        e = jnp.exp(r * t)
        return _f64(y0) * e / (1 - y0 + y0 * e)

    return System(
        name=_label("logistic", **_changed(_logistic, r=r, y0=y0)),
        vector_field=f,
        y0=_f64(y0),
        t1=t1,
        args=_f64(r),
        exact=exact,
        equilibria=(_f64(0.0), _f64(1.0)),
        params=dict(r=r, y0=y0, t1=t1),
    )


@register("harmonic")
def _harmonic(omega: float = 1.0, t1: float = 2 * np.pi) -> System:
    """q' = p, p' = -ω²q from (1, 0); exact (cos ωt, -ω sin ωt); energy conserved."""

    def f(t, y, args, h):
        return jnp.stack([y[1], -(args**2) * y[0]])

    def exact(t):
        return jnp.stack([jnp.cos(omega * t), -omega * jnp.sin(omega * t)])

    return System(
        name=_label("harmonic", **({"omega": omega} if omega != 1.0 else {})),
        vector_field=f,
        y0=_f64([1.0, 0.0]),
        t1=t1,
        args=_f64(omega),
        exact=exact,
        equilibria=(jnp.zeros(2),),
        invariants={"energy": lambda y: 0.5 * (y[1] ** 2 + omega**2 * y[0] ** 2)},
        params=dict(omega=omega, t1=t1),
    )


@register("lotka_volterra")
def _lotka_volterra(
    alpha: float = 1.5, beta: float = 1.0, delta: float = 1.0, gamma: float = 3.0, t1: float = 10.0
) -> System:
    """x' = αx - βxy, y' = δxy - γy from (1, 1); no closed form (a reference solve is used)."""

    def f(t, y, args, h):
        a, b, d, g = args
        return jnp.stack([a * y[0] - b * y[0] * y[1], d * y[0] * y[1] - g * y[1]])

    def conserved(y):
        return delta * y[0] - gamma * jnp.log(y[0]) + beta * y[1] - alpha * jnp.log(y[1])

    return System(
        name=_label(
            "lotka_volterra",
            **_changed(_lotka_volterra, alpha=alpha, beta=beta, delta=delta, gamma=gamma),
        ),
        vector_field=f,
        y0=_f64([1.0, 1.0]),
        t1=t1,
        args=_f64([alpha, beta, delta, gamma]),
        equilibria=(jnp.zeros(2), _f64([gamma / delta, alpha / beta])),
        invariants={"first_integral": conserved},
        params=dict(alpha=alpha, beta=beta, delta=delta, gamma=gamma, t1=t1),
    )


@register("van_der_pol")
def _van_der_pol(mu: float = 1.0, t1: float | None = None) -> System:
    """x' = y, y' = mu·(1 - x²)·y - x from (2, 0); stiff for mu ≥ 100. Default t1 = 2·(mu + 1)."""
    require_positive("mu", mu)
    t1 = 2.0 * (mu + 1.0) if t1 is None else t1

    def f(t, y, args, h):
        return jnp.stack([y[1], args * (1 - y[0] ** 2) * y[1] - y[0]])

    return System(
        name=_label("van_der_pol", mu=mu),
        vector_field=f,
        y0=_f64([2.0, 0.0]),
        t1=t1,
        args=_f64(mu),
        equilibria=(jnp.zeros(2),),
        stiff=mu >= 100,
        params=dict(mu=mu, t1=t1),
    )


@register("prothero_robinson")
def _prothero_robinson(stiffness: float = 1e3, t1: float = 2.0) -> System:
    """y' = -stiffness·(y - sin t) + cos t from y(0) = 0; exact y = sin t for any stiffness."""
    require_positive("stiffness", stiffness)

    def f(t, y, args, h):
        return -args * (y - jnp.sin(t)) + jnp.cos(t)

    return System(
        name=_label("prothero_robinson", stiffness=stiffness),
        vector_field=f,
        y0=_f64(0.0),
        t1=t1,
        args=_f64(stiffness),
        exact=lambda t: jnp.sin(_f64(t)),
        stiff=stiffness >= 100,
        params=dict(stiffness=stiffness, t1=t1),
    )


def _kepler_anomaly(t, e, iterations: int = 40):
    """Solve Kepler's equation E - e·sin E = t by Newton's method (converges for e < 0.9)."""
    mean = jnp.asarray(t, dtype=jnp.result_type(float))

    def newton(_, big_e):
        return big_e - (big_e - e * jnp.sin(big_e) - mean) / (1 - e * jnp.cos(big_e))

    return jax.lax.fori_loop(0, iterations, newton, mean + e * jnp.sin(mean))


@register("kepler")
def _kepler(eccentricity: float = 0.5, t1: float = 2 * np.pi) -> System:
    """Two-body problem y = (q1, q2, p1, p2), q'' = -q/|q|³, period 2π, semi-major axis 1.

    Exact solution from Kepler's equation; invariants energy = -1/2 and angular momentum
    sqrt(1 - e²).
    """
    e = eccentricity
    if not 0 <= e < 0.9:
        raise InvalidArgument(f"eccentricity={e!r} is invalid; it must be in [0, 0.9)")
    root = np.sqrt(1 - e**2)

    def f(t, y, args, h):
        q, p = y[:2], y[2:]
        return jnp.concatenate([p, -q / jnp.sum(q**2) ** 1.5])

    def exact(t):
        big_e = _kepler_anomaly(t, e)
        c, s = jnp.cos(big_e), jnp.sin(big_e)
        return jnp.stack([c - e, root * s, -s / (1 - e * c), root * c / (1 - e * c)])

    def energy(y):
        return 0.5 * jnp.sum(y[2:] ** 2) - 1 / jnp.sqrt(jnp.sum(y[:2] ** 2))

    def angular_momentum(y):
        return y[0] * y[3] - y[1] * y[2]

    return System(
        name=_label("kepler", **({"e": e} if e != 0.5 else {})),
        vector_field=f,
        y0=_f64([1 - e, 0.0, 0.0, np.sqrt((1 + e) / (1 - e))]),
        t1=t1,
        exact=exact,
        invariants={"energy": energy, "angular_momentum": angular_momentum},
        params=dict(eccentricity=e, t1=t1),
    )


# ------------------------------------------------------------------ step-dependent families

_PERTURBATIONS = {"sin": jnp.sin, "identity": lambda y: y, "square": lambda y: y**2}


def _resolve_base(base, base_params) -> System:
    if isinstance(base, System):
        if base_params:
            raise InvalidArgument("base_params given with a System object as base; pass one")
        return base
    return get(base, **(base_params or {}))


@register("perturbed")
def _perturbed(
    base: str | System = "linear",
    c: float = 1.0,
    q: float = 1,
    g: str | Callable = "sin",
    base_params: dict | None = None,
) -> System:
    """f(t, y, args, h) + c·h^q·g(y): an O(h^q) perturbation of `base`, same limit as h → 0.

    g is a callable y -> array of y's shape, or one of 'sin', 'identity', 'square'.
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
    base_f = sys.vector_field

    def f(t, y, args, h):
        return base_f(t, y, args, h) + c * h**q * g_fn(y)

    return sys.with_(
        name=f"perturbed({sys.name}, c={c}, q={q}, g={g_name})",
        vector_field=f,
        h_dependent=True,
        params=dict(base=sys.name, base_params=sys.params, c=c, q=q, g=g_name),
    )


def flow_derivative(field: Callable, g: Callable) -> Callable:
    """D g(t, y, args) = ∂g/∂t + (∂g/∂y)·field(t, y, args): the derivative of g along the flow."""

    def dg(t, y, args):
        t = jnp.asarray(t, dtype=jnp.result_type(float))
        tangent = (jnp.ones_like(t), field(t, y, args))
        return jax.jvp(lambda tt, yy: g(tt, yy, args), (t, y), tangent)[1]

    return dg


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
    f = sys.limit_field
    df = flow_derivative(f, f)
    d2f = flow_derivative(f, df)

    def field(t, y, args, h):
        out = f(t, y, args) + (h / 2) * df(t, y, args)
        if terms == 2:
            out = out + (h**2 / 6) * d2f(t, y, args)
        return out

    return sys.with_(
        name=f"modified_euler({sys.name}, terms={terms})",
        vector_field=field,
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


def _map_catalog(name: str, mu: float, a: float, b: float, dim: int, seed: int, scale: float):
    if name == "logistic":
        return (lambda y: mu * y * (1 - y)), _f64(0.2), f"logistic, mu={mu}"
    if name == "henon":
        return (
            (lambda y: jnp.stack([1 - a * y[0] ** 2 + y[1], b * y[0]])),
            _f64([0.1, 0.1]),
            f"henon, a={a}, b={b}",
        )
    if name == "residual":
        w, bias = _residual_weights(dim, seed, scale)
        return (
            (lambda y: y + jnp.tanh(w @ y + bias)),
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
        (Φ, y0): the map as a jax function y -> Φ(y), and its default initial state.

    Examples:
        >>> phi, y0 = shipped_map("logistic", mu=2.0)
        >>> float(phi(y0))          # 2·0.2·0.8
        0.32000000000000006
    """
    phi, y0, _ = _map_catalog(name, mu, a, b, dim, seed, scale)
    return phi, y0


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
    start = _f64(y0) if y0 is not None else default_y0

    shown = _changed(_lifted_map, h_train=h_train)
    if y0 is not None:
        shown["y0"] = np.asarray(y0).tolist()

    def f(t, y, args, h):
        safe_h = jnp.where(h == 0, h_train, h)
        return (phi(y) - y) / safe_h

    return System(
        name=f"lifted_map({', '.join([label, *(f'{k}={v}' for k, v in shown.items())])})",
        vector_field=f,
        y0=start,
        t1=steps * h_train,
        h_dependent=True,
        params=dict(map=label, h_train=h_train, steps=steps),
        frozen_h=h_train,
    )
