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
    """Bad input, detected before anything is compiled."""


def require_positive(name: str, value) -> float:
    """`value` as a float if it is one finite number > 0; InvalidArgument naming it otherwise.

    Example:
        >>> require_positive("h", 0.5)
        0.5
    """
    try:
        ok = np.ndim(value) == 0 and math.isfinite(float(value)) and float(value) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidArgument(f"{name}={value!r} is invalid; it must be finite and > 0")
    return float(value)


class PrecisionWarning(UserWarning):
    """A measurement is about to run in float32, where round-off dominates."""


def warn_if_float32(what: str) -> None:
    """Warn that `what` (a convergence or stability measurement) runs in float32."""
    if not jax.config.read("jax_enable_x64"):
        warnings.warn(
            f"{what} is computed in float32, where round-off (~1e-7) dominates small errors. "
            "Enable float64 first: jax.config.update('jax_enable_x64', True) "
            "(or set JAX_ENABLE_X64=1).",
            PrecisionWarning,
            stacklevel=3,
        )
