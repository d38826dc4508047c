"""jax's persistent compilation cache: compiled programs kept on disk between processes.

Compiling dominates this toolkit's cost (a vmapped diffrax solve takes seconds to compile and
milliseconds to run). jax keeps compiled programs in memory for the life of a process; with a
persistent cache folder it also writes each compiled XLA executable to disk, keyed by the
program's text, the compile options, jax/jaxlib versions and the device, and a later process
that compiles the same program loads it instead of running XLA. Tracing (Python) still runs;
only the XLA compilation is skipped. Numbers are arguments of the compiled programs here, so a
re-run with other step sizes, tolerances or parameters hits the same entries.

`enable` turns it on; the study runner, the test suite and the benchmarks call it at start-up.
The folder is, in order: the `path` argument; the environment variable ``STEPDEP_COMPILE_CACHE``
(a folder, or ``off`` / ``0`` / ``false`` / ``no`` / empty to turn the cache off); else
``$XDG_CACHE_HOME/stepdep/jax`` (``~/.cache/stepdep/jax``). The folder is created private to the
user (mode 0700): jax trusts its contents, so a folder others can write to would let them run
code in this process. Entries are kept at most `MAX_BYTES` in all, least recently used evicted
first; programs that compile in under `MIN_COMPILE_S` are not written (tiny eager kernels).

Examples:
    >>> from analysis import compile_cache
    >>> compile_cache.enable()                  # doctest: +SKIP
    PosixPath('/home/me/.cache/stepdep/jax')
    >>> compile_cache.folder("off") is None     # what STEPDEP_COMPILE_CACHE=off gives
    True
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.monitoring

from .errors import InvalidArgument

__all__ = [
    "enable",
    "folder",
    "seconds_compiling",
    "xla_compilations",
    "ENV",
    "MAX_BYTES",
    "MIN_COMPILE_S",
]

#: Environment variable naming the cache folder, or turning the cache off.
ENV = "STEPDEP_COMPILE_CACHE"
#: Most bytes the folder keeps (least recently used entries are evicted beyond it).
MAX_BYTES = 2 * 1024**3
#: Programs compiling faster than this (seconds) are not written to the cache.
MIN_COMPILE_S = 0.1
_OFF = {"", "0", "off", "false", "no"}
#: jax's monitoring events whose durations add up to the time spent compiling.
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_SPENT = {"seconds": 0.0, "xla": 0}


def _count(event: str, duration: float, **_) -> None:
    if event in _COMPILE_EVENTS:
        _SPENT["seconds"] += duration
    if event == _COMPILE_EVENTS[-1]:
        _SPENT["xla"] += 1


jax.monitoring.register_event_duration_secs_listener(_count)


def seconds_compiling() -> float:
    """Seconds this process has spent so far tracing, lowering and compiling jax programs
    (from jax's own monitoring events; a program loaded from the cache counts its tracing and
    lowering, not an XLA compile). The study runner reports it per study.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> before = seconds_compiling()
        >>> _ = jax.jit(lambda x: jnp.sin(x) * 2)(1.0)
        >>> seconds_compiling() > before
        True
    """
    return _SPENT["seconds"]


def xla_compilations() -> int:
    """XLA compilations in this process so far, small eager kernels and cache loads included
    (jax reports a program loaded from the persistent cache as a compilation too).

    Examples:
        >>> import jax
        >>> before = xla_compilations()
        >>> _ = jax.jit(lambda x: x + 41)(1)
        >>> xla_compilations() - before
        1
    """
    return _SPENT["xla"]


def folder(path: str | os.PathLike | None = None) -> Path | None:
    """The cache folder `enable` would use: `path`, else ``$STEPDEP_COMPILE_CACHE``, else the
    user's cache directory; None when the environment variable turns the cache off.

    Args:
        path: a folder, "off" (no cache), or None to look at the environment.

    Returns:
        The folder (not created), or None.

    Examples:
        >>> folder("/tmp/my-cache"), folder("off")
        (PosixPath('/tmp/my-cache'), None)
    """
    chosen = os.environ.get(ENV) if path is None else os.fspath(path)
    if chosen is not None:
        return None if chosen.strip().lower() in _OFF else Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stepdep" / "jax"


def enable(path: str | os.PathLike | None = None) -> Path | None:
    """Turn on jax's persistent compilation cache in `folder(path)` (None: leave it off).

    Call it before the first compilation of the process: jax reads the setting once, at its
    first compile.

    Args:
        path: the cache folder, "off" to leave the cache off, or None for
            ``$STEPDEP_COMPILE_CACHE`` / the user's cache directory.

    Returns:
        The folder in use, or None when `path` or the environment turns the cache off.

    Raises:
        InvalidArgument: the folder cannot be created or is not a folder.

    Examples:
        >>> import os, tempfile
        >>> os.environ[ENV] = "off"
        >>> enable() is None
        True
        >>> del os.environ[ENV]
    """
    where = folder(path)
    if where is None:
        return None
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        where.chmod(0o700)
    except OSError as e:
        raise InvalidArgument(
            f"compile cache folder {str(where)!r} is invalid ({e.strerror}); give a writable "
            f"folder, or set {ENV}=off to compile without a persistent cache"
        ) from None
    jax.config.update("jax_compilation_cache_dir", str(where))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return where
