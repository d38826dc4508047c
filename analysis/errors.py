"""The toolkit's exception and its float32 warning.

Errors knowable before tracing (a negative step, an unknown solver name) are raised as
`InvalidArgument`, a ValueError whose message names the argument, the value and what is valid.
"""

from __future__ import annotations

import math
import warnings

import jax
import numpy as np

__all__ = ["InvalidArgument", "PrecisionWarning", "require_positive", "warn_if_float32"]


class InvalidArgument(ValueError):
    """Bad input, detected before anything is compiled.

    A subclass of ValueError, so `except ValueError` also catches it. The message names the
    argument, the value given and what is valid (with close matches for misspelt names).

    Examples:
        >>> from analysis import solvers
        >>> solvers.get("Tsit")
        Traceback (most recent call last):
            ...
        analysis.errors.InvalidArgument: solver='Tsit' is unknown. Did you mean 'Tsit5'? ...
        >>> issubclass(InvalidArgument, ValueError)
        True
    """


def require_positive(name: str, value) -> float:
    """`value` as a float if it is one finite number > 0; InvalidArgument naming it otherwise.

    Args:
        name: the argument's name, used in the error message.
        value: the value to check (a Python or NumPy scalar, or a 0-d array).

    Returns:
        `value` as a Python float.

    Examples:
        >>> require_positive("h", 0.5)
        0.5
        >>> require_positive("h", -0.1)
        Traceback (most recent call last):
            ...
        analysis.errors.InvalidArgument: h=-0.1 is invalid; it must be finite and > 0
    """
    try:
        ok = np.ndim(value) == 0 and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidArgument(f"{name}={value!r} is invalid; it must be finite and > 0")
    return float(value)


class PrecisionWarning(UserWarning):
    """A measurement is about to run in float32, where round-off dominates.

    Issued by `warn_if_float32` (sweeps, references, convergence and stability measurements)
    when jax's x64 mode is off. Silence it with the `warnings` module, or better, turn float64 on.

    Examples:
        >>> import warnings
        >>> with jax.enable_x64(False), warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_if_float32("a convergence fit")
        >>> caught[0].category.__name__, "jax_enable_x64" in str(caught[0].message)
        ('PrecisionWarning', True)
    """


def warn_if_float32(what: str) -> None:
    """Warn that `what` (a convergence or stability measurement) runs in float32.

    Args:
        what: the measurement, as it should read in the message (e.g. "a sweep's errors").

    Returns:
        None. Issues a `PrecisionWarning` if jax's x64 mode is off; does nothing otherwise.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_if_float32("a convergence fit")    # float64 is on: no warning
        >>> len(caught)
        0
    """
    if not jax.config.read("jax_enable_x64"):
        warnings.warn(
            f"{what} is computed in float32, where round-off (~1e-7) dominates small errors. "
            "Enable float64 first: jax.config.update('jax_enable_x64', True) "
            "(or set JAX_ENABLE_X64=1).",
            PrecisionWarning,
            stacklevel=3,
        )
