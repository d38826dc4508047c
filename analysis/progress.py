"""Progress of long work from the Python API: a bar on a terminal, nothing otherwise.

`analysis.sweep` shows a bar over its solves, and a multi-part measurement (such as
`analysis.diagnose`) one over its parts with `steps`, when the user watches a terminal. Bars are
drawn by tqdm on standard error (or the stream given).

Whether a bar is drawn, first rule that applies:

1. Inside the study runner (an active `analysis.chunk_store` store that reports to a
   `progress` of its own, see `ChunkStore.begin`): never, the runner draws its own bar.
2. Inside ``with progress.enabled(True):`` (or False): on (off).
3. The environment variable ``STEPDEP_PROGRESS=1`` (or ``0``): on (off).
4. Otherwise: on exactly when the stream is a terminal (``isatty()``), so a script writing to
   a log file, a test run or a notebook's captured stderr get no output at all.

A bar opened while another is open (a sweep inside a `steps` part) is drawn below it and removed
when done (tqdm's ``leave=False``), so only the outer bar stays on the screen.

Examples:
    >>> import io
    >>> from analysis import progress
    >>> out = io.StringIO()                        # not a terminal: quiet
    >>> with progress.bar(3, "demo", "solve", file=out) as b:
    ...     b.update(3)
    >>> out.getvalue()
    ''
    >>> with progress.enabled(True), progress.bar(3, "demo", "solve", file=out) as b:
    ...     b.update(3)
    >>> "3/3" in out.getvalue()
    True
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterable, Iterator

from . import chunk_store as _chunk_store
from .errors import InvalidArgument

__all__ = ["ENV", "bar", "steps", "enabled", "is_enabled"]

#: The environment variable that turns bars on ("1") or off ("0") when no `enabled` block says.
ENV = "STEPDEP_PROGRESS"

_FORCED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("progress", default=None)
_open_bars = 0  # bars of ours open now (a bar opened inside another is nested)


def _runner_in_charge() -> bool:
    """An active chunk store reports progress somewhere else (the study runner's bar)."""
    store = _chunk_store.active_store()
    return store is not None and getattr(store, "progress", None) is not None


def _env_setting() -> bool | None:
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if value in ("1", "0"):
        return value == "1"
    raise InvalidArgument(f"{ENV}={value!r} is invalid; use 1 (bars on) or 0 (off), or unset it")


def is_enabled(file=None) -> bool:
    """Whether a bar opened now on `file` (default: standard error) would be drawn.

    The rules are those of the module's docstring: the runner's own bar, then `enabled`,
    then ``STEPDEP_PROGRESS``, then whether `file` is a terminal.

    Raises:
        InvalidArgument: ``STEPDEP_PROGRESS`` is set to something other than 0 or 1.

    Examples:
        >>> import io
        >>> is_enabled(io.StringIO())                # not a terminal
        False
        >>> with enabled(True):
        ...     is_enabled(io.StringIO())
        True
    """
    if _runner_in_charge():
        return False
    forced = _FORCED.get()
    if forced is None:
        forced = _env_setting()
    if forced is not None:
        return forced
    stream = sys.stderr if file is None else file
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def enabled(on: bool = True):
    """Within the block, draw bars (`on` True) or never draw them (False), terminal or not.

    Takes precedence over ``STEPDEP_PROGRESS``; the study runner's own bar still wins (no
    second bar under it).

    Examples:
        >>> import io
        >>> with enabled(False):
        ...     is_enabled(io.StringIO())
        False
    """
    if not isinstance(on, bool):
        raise InvalidArgument(f"on={on!r} is invalid; use True or False")
    token = _FORCED.set(on)
    try:
        yield
    finally:
        _FORCED.reset(token)


class _Quiet:
    """A bar that draws nothing (progress off)."""

    def update(self, n: int = 1) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


class _Bar:
    """A tqdm bar, with the small interface the library uses (`update`, `describe`)."""

    def __init__(self, tqdm_bar):
        self._bar = tqdm_bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def describe(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=True)


@contextlib.contextmanager
def bar(total: int | None, desc: str = "", unit: str = "it", *, file=None, quiet: bool = False):
    """A progress bar over `total` units of work, drawn only when `is_enabled` says so.

    Yields an object with ``update(n=1)`` (n more units done) and ``describe(text)`` (a note
    after the counts, e.g. the part running now); when progress is off it does nothing and
    writes nothing. The bar is closed (its final count drawn) when the block ends.

    Args:
        total: the units of work (None when unknown: a count without a bar).
        desc: a label before the bar.
        unit: what a unit is ("solve", "part").
        file: the stream to draw on (default: standard error).
        quiet: draw nothing whatever the settings (the caller shows its progress otherwise,
            e.g. a sweep given a chunk store with a `progress` of its own).

    Examples:
        >>> import io
        >>> out = io.StringIO()
        >>> with enabled(True), bar(4, "sweep", "solve", file=out) as b:
        ...     for _ in range(4):
        ...         b.update(1)
        >>> final = out.getvalue().split("\\r")[-1]
        >>> "sweep" in final, "4/4" in final
        (True, True)
    """
    stream = sys.stderr if file is None else file
    if quiet or not is_enabled(stream):
        yield _Quiet()
        return
    from tqdm import tqdm  # imported on first use: quiet runs never load it

    global _open_bars
    depth = _open_bars
    _open_bars += 1
    tq = tqdm(
        total=total,
        desc=desc or None,
        unit=unit,
        file=stream,
        leave=depth == 0,  # a bar inside another goes away when done
        dynamic_ncols=True,
        disable=False,
    )
    try:
        yield _Bar(tq)
    finally:
        tq.close()
        _open_bars -= 1


def steps(names: Iterable[str], desc: str = "", *, file=None) -> Iterator[str]:
    """Iterate over the names of a job's parts, with a bar that names the part running.

    The bar counts parts done and shows the current part's name after the counts; it is closed
    when the loop ends, is left by ``break`` or an exception (when the generator is closed).

    Args:
        names: the parts, in order (e.g. "convergence", "controllers", "stability").
        desc: a label before the bar (e.g. the model's name).
        file: the stream to draw on (default: standard error).

    Examples:
        >>> import io
        >>> out = io.StringIO()
        >>> with enabled(True):
        ...     done = [name for name in steps(["convergence", "stability"], "demo", file=out)]
        >>> done, "2/2" in out.getvalue(), "stability" in out.getvalue()
        (['convergence', 'stability'], True, True)
    """
    names = [str(n) for n in names]
    with bar(len(names), desc, "part", file=file) as b:
        for name in names:
            b.describe(name)
            yield name
            b.update(1)
