"""Where sweep chunks run: this process, the devices of this machine, or a Dask cluster.

`analysis.sweep` cuts each (system, solver, controller kind) group's grid into chunks of
`chunk_size` settings, each one call of the group's compiled jit(vmap(solve)). An executor says
where those calls run (`sweep(..., executor=...)`, or for a whole block `using(...)`):

- ``"local"`` (default): in this process, one chunk after another.
- ``"sharded"``: in this process, each chunk's batch axis split over `jax.devices()` with a
  `jax.sharding.NamedSharding` on a one-axis `Mesh` ("batch"): several GPUs, or CPU devices made
  with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (set before jax is imported).
- ``"dask"``: each chunk a task on a dask.distributed cluster: an existing one
  (``scheduler="tcp://host:8786"``, or pass a `dask.distributed.Client` as the executor), or a
  loopback LocalCluster started for the call. A task carries the group (its System with only
  what the solve needs, the solver, the controller preset name and options), pickled once with
  cloudpickle, and the chunk's inputs; each worker compiles a group once and reuses it for its
  later chunks. Chunk outputs come back as arrays and go through the sweep's ChunkStore as each
  one finishes, so an interrupted run keeps its finished chunks. Chunks are pure functions of
  their task, so Dask reruns the chunks of a lost worker elsewhere and nothing is lost.

Every executor solves the same chunks (same size, same order, same padding), so the same
config gives the same table: fixed-step rows agree to round-off, adaptive rows too. A chunk that
raises while it runs (an `eqx.error_if` in the field) is solved again one setting at a time:
each solve that raises alone is a row with status "field_error" (and a `FieldErrorWarning`),
the others keep their numbers, whatever the chunk size. On Dask, a chunk that kills every worker
that runs it ends the sweep with `ChunkKilledWorkers`, naming its system, solver and settings.

Examples:
    >>> import analysis
    >>> df = analysis.sweep("linear", "Euler", dt0=[0.1, 0.05], executor="dask")  # doctest: +SKIP
    >>> with analysis.distributed.using("dask", scheduler="tcp://10.0.0.5:8786"):  # doctest: +SKIP
    ...     df = analysis.sweep("van_der_pol", ["Tsit5", "Dopri5"], controller="PI34", rtol=tols)
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import dataclasses
import hashlib
import logging
import re
import warnings

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from . import batch as _batch
from . import controller as _controller
from . import solvers as _solvers
from .errors import InvalidArgument

__all__ = [
    "EXECUTORS",
    "Local",
    "Sharded",
    "Dask",
    "resolve",
    "using",
    "activate",
    "ChunkKilledWorkers",
    "FieldErrorWarning",
]

#: Executor names accepted by `analysis.sweep(executor=...)` and `--executor`.
EXECUTORS = ("local", "sharded", "dask")


def _error_message(e: Exception) -> str:
    """The message a raising vector field gave (an `eqx.error_if`'s own text where present)."""
    text = str(e)
    found = re.search(r"EquinoxRuntimeError: (.*?)(?:\n\s*\n|$)", text, re.S)
    lines = (found.group(1) if found else text).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:500]


class FieldErrorWarning(RuntimeWarning):
    """A solve of a sweep raised in its vector field; its row has status "field_error".

    Every executor solves a chunk that raises again one setting at a time, so only the solves
    that raise on their own fail, whatever the chunk size; the warning names each one's system,
    solver, settings and message.

    Examples:
        >>> import warnings, equinox as eqx, numpy as np, analysis
        >>> def f(t, y, args, h):  # Euler on y' = -30 y blows up for h > 1/15
        ...     return -30.0 * eqx.error_if(y, abs(y) > 10, "left |y| <= 10")
        >>> guarded = analysis.systems.System("guarded", f, y0=np.float64(1.0))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always", FieldErrorWarning)
        ...     df = analysis.sweep(guarded, "Euler", dt0=[0.1, 0.01])
        >>> list(df["status"]), str(caught[0].message).split(": ")[-1]
        (['field_error', 'ok'], 'left |y| <= 10')
    """


def _solve_isolated(group, inputs, count: int, mesh=None) -> dict:
    """`analysis.batch.solve_chunk`, where a solve that raises at run time is its own row.

    An error raised while a chunk runs (an `eqx.error_if` in the field, a failing callback)
    stops the whole vmapped chunk, and it may come from a lane that finished early and kept
    evaluating its field at its final state (a vmapped loop steps every lane until the last is
    done). So the chunk is solved again one setting at a time (the group at chunk_size=1,
    compiled once): each solve that raises alone gets result `analysis.batch.FIELD_ERROR` (status
    "field_error", NaN state, zero steps) and the others their own numbers, the rows a
    chunk_size=1 sweep gives. A chunk that runs is untouched. Returns `solve_chunk`'s outputs,
    plus "field_errors": [(index in the chunk, message)] when some solve raised (the executor
    warns with `FieldErrorWarning` and drops it).
    """
    quiet = _QuietCallbackErrors()  # jax logs each raising callback's traceback; we report it
    logger = logging.getLogger("jax._src.callback")
    logger.addFilter(quiet)
    try:
        return _solve_lanes(group, inputs, count, mesh)
    finally:
        logger.removeFilter(quiet)


class _QuietCallbackErrors(logging.Filter):
    def filter(self, record):
        return not record.getMessage().endswith("callback failed")


def _solve_lanes(group, inputs, count: int, mesh) -> dict:
    before = _batch.compile_count()
    try:
        return _batch.solve_chunk(group, inputs, count, mesh)
    except jax.errors.JaxRuntimeError as e:
        chunk_error = e
    one = dataclasses.replace(group, chunk_size=1)
    inputs = [np.asarray(x, dtype=float) for x in inputs]
    outs, errors = [], []
    for i in range(count):
        lane = tuple(x[i : i + 1] for x in inputs)
        error = chunk_error
        if group.chunk_size > 1:  # a chunk of one solve has raised already: nothing to split
            try:
                outs.append(_batch.solve_chunk(one, lane, 1, mesh))
                continue
            except jax.errors.JaxRuntimeError as e:
                error = e
        errors.append((i, _error_message(error)))
        outs.append(_failed_lane(one))
    merged = {k: np.concatenate([o[k] for o in outs]) for k in outs[0] if np.ndim(outs[0][k])}
    return merged | {
        "wall_s": np.float64(np.mean([o["wall_s"] for o in outs])),
        "compile_s": np.float64(max(o["compile_s"] for o in outs)),
        "compiled": np.int64(_batch.compile_count() - before),
        "field_errors": errors,
    }


def _failed_lane(one) -> dict:
    """Outputs of one solve that raised: FIELD_ERROR, NaN floats, zero counts."""
    zero = {"wall_s": np.float64(0.0), "compile_s": np.float64(0.0), "compiled": 0}
    return _failed_template(one) | zero


def _failed_template(one) -> dict:
    """The per-solve outputs of a chunk_size=1 group, filled for a solve that raised."""
    shapes = _batch.output_shapes(one)

    def fill(name, s):
        if name == "result":
            return np.full(s.shape, _batch.FIELD_ERROR, s.dtype)
        return np.full(s.shape, np.nan if jnp.issubdtype(s.dtype, jnp.inexact) else 0, s.dtype)

    return {k: fill(k, s) for k, s in shapes.items()}


def _settings(group, inputs, i: int) -> str:
    """The settings of solve `i` of a chunk, as a sweep's arguments name them."""
    h, rtol, atol = (float(np.asarray(x)[i]) for x in inputs)
    if group.controller == _controller.FIXED:
        return f"h={h!r}"
    dt0 = f"dt0={h!r}, " if group.has_dt0 else ""
    return f"{dt0}rtol={rtol!r}, atol={atol!r} (controller {group.controller!r})"


def _reported(group, inputs, out: dict) -> dict:
    """Drop the "field_errors" of a chunk's outputs after warning about each raising solve."""
    for i, message in out.pop("field_errors", []):
        warnings.warn(
            f"system {group.system.name!r} with {_solvers.name_of(group.solver)} at "
            f"{_settings(group, inputs, i)} raised in its vector field; its row has status "
            f"'field_error': {message}",
            FieldErrorWarning,
            stacklevel=3,
        )
    return out


def _primitives(jaxpr):
    """Names of every primitive in a jaxpr, its sub-jaxprs (cond branches, loops, ...) too."""
    for eqn in jaxpr.eqns:
        yield eqn.primitive.name
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    yield from _primitives(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    yield from _primitives(sub)


def _calls_back(system) -> bool:
    """Whether the system's field calls back into Python (an `eqx.error_if` does)."""
    t0 = jnp.asarray(system.t0, jnp.result_type(float))
    h = jnp.zeros((), t0.dtype)
    traced = jax.make_jaxpr(system.vector_field)(t0, system.y0, system.args, h)
    return any("callback" in name for name in _primitives(traced.jaxpr))


class Local:
    """Chunks solved in this process, in order (the default executor).

    Examples:
        >>> import analysis
        >>> df = analysis.sweep("linear", "Euler", dt0=[0.1, 0.05], executor=Local())
        >>> round(float(df["error"].iloc[0]), 6)  # |0.9**10 - exp(-1)|, Euler on y' = -y
        0.019201
    """

    def map(self, tasks):
        """Yield (index, outputs) for each (group, inputs, count) task as it finishes."""
        for i, (group, inputs, count) in enumerate(tasks):
            yield i, _reported(group, inputs, _solve_isolated(group, inputs, count))


class Sharded:
    """Chunks solved in this process with their batch axis split over `devices`.

    Examples:
        >>> Sharded().mesh.axis_names
        ('batch',)
    """

    def __init__(self, devices=None):
        self.mesh = jax.sharding.Mesh(np.array(list(devices or jax.devices())), ("batch",))

    def map(self, tasks):
        """Yield (index, outputs) for each task, its batch split over the mesh's devices.

        A group whose field calls back into Python (`eqx.error_if`, a pure or io callback) runs
        unsplit: a callback that raises on one device leaves the others waiting in the loop's
        collective, and XLA aborts the process; unsplit, the raise is the solve's row.
        """
        split = {}
        for i, (group, inputs, count) in enumerate(tasks):
            if group not in split:
                split[group] = not _calls_back(group.system)
            mesh = self.mesh if split[group] else None
            yield i, _reported(group, inputs, _solve_isolated(group, inputs, count, mesh=mesh))


class Dask:
    """Chunks submitted as tasks through a `dask.distributed.Client`, yielded as they finish.

    On a real cluster, connect a client to its scheduler (``Dask(Client("tcp://host:8786"))``)
    or let `resolve` do it (``sweep(..., executor="dask", scheduler="tcp://host:8786")``); the
    workers need this package installed and one thread each (``dask worker ... --nthreads 1``).
    The example uses a small in-process cluster (threads, no worker processes; it starts in
    well under a second and is shut down at the end of the block).

    Args:
        client: a connected `dask.distributed.Client`; it is left open.

    Examples:
        >>> import analysis
        >>> from dask.distributed import Client, LocalCluster
        >>> with LocalCluster(processes=False, n_workers=1, dashboard_address=None) as cluster:
        ...     with Client(cluster) as client:
        ...         df = analysis.sweep("linear", "Euler", dt0=[0.1, 0.05], executor=Dask(client))
        >>> list(df["h"]), round(float(df["error"].iloc[0]), 6)  # the table of the local run
        ([0.1, 0.05], 0.019201)
    """

    def __init__(self, client):
        self.client = client

    def map(self, tasks):
        """Yield (index, outputs) for each task as the cluster finishes it (in any order)."""
        from dask.distributed import KilledWorker, as_completed

        packed = {}
        for group, _, _ in tasks:  # pickling fails here, before anything is submitted
            if group not in packed:
                packed[group] = _pack(group)
        x64 = bool(jax.config.read("jax_enable_x64"))
        futures = {}
        for i, (group, inputs, count) in enumerate(tasks):
            digest, payload = packed[group]
            inputs = tuple(np.asarray(x) for x in inputs)
            future = self.client.submit(
                _run_on_worker, digest, payload, inputs, count, x64, pure=False
            )
            futures[future] = i
        try:
            for future in as_completed(futures):
                i = futures[future]
                group, inputs, count = tasks[i]
                try:
                    out = future.result()
                except KilledWorker as e:
                    raise ChunkKilledWorkers(_killed_message(group, inputs, count, e)) from e
                yield i, _reported(group, inputs, out)
        finally:  # an interrupted sweep leaves no work behind on the cluster
            self.client.cancel(list(futures))


class ChunkKilledWorkers(RuntimeError):
    """A sweep chunk ended every Dask worker that ran it (dask's KilledWorker, named).

    Raised by the "dask" executor instead of `distributed.KilledWorker` (its cause), with the
    chunk's system, solver and settings rather than an opaque task key.

    Examples:
        >>> issubclass(ChunkKilledWorkers, RuntimeError)
        True
    """


def _killed_message(group, inputs, count: int, e: Exception) -> str:
    """What a KilledWorker is about: the chunk's system, solver and settings, and what to do."""
    settings = "; ".join(_settings(group, inputs, i) for i in range(count))
    allowed = getattr(e, "allowed_failures", None)
    deaths = (
        f" ({allowed + 1} worker death(s), allowed_failures={allowed})"
        if allowed is not None
        else ""
    )
    return (
        f"a sweep chunk of system {group.system.name!r} with "
        f"{_solvers.name_of(group.solver)} was given up: the Dask worker running it died"
        f"{deaths}; its {count} setting(s): {settings}. A worker process dies like this when a "
        "solve crashes it (a field or callback that exits, a segfault) or runs it out of "
        "memory: try executor='local' for these settings to see the error, or a smaller "
        f"chunk_size (Dask's task key: {getattr(e, 'task', None)!r})"
    )


def _pack(group) -> tuple[str, bytes]:
    """The group as cloudpickle bytes (and their SHA-256), keeping what the solve needs."""
    import cloudpickle

    system = group.system
    slim = dataclasses.replace(
        group, system=system.with_(exact=None, equilibria=None, invariants={})
    )
    try:
        payload = cloudpickle.dumps(slim)
    except Exception as e:  # pickling raises many types (TypeError, PicklingError, ...)
        raise InvalidArgument(
            f"system={system.name!r} cannot be sent to Dask workers: pickling its group "
            f"failed ({type(e).__name__}: {e}); build its vector field and args from picklable "
            "parts (functions, arrays, numbers), or use executor='local' or 'sharded'"
        ) from e
    return hashlib.sha256(payload).hexdigest(), payload


_WORKER_GROUPS: dict = {}  # digest -> unpickled group, so a worker compiles each group once


def _run_on_worker(digest: str, payload: bytes, inputs, count: int, x64: bool) -> dict:
    """A chunk on a Dask worker: the same x64 mode as the client, then `batch.solve_chunk`."""
    import cloudpickle

    jax.config.update("jax_enable_x64", x64)  # before unpickling, so float64 arrays stay so
    if digest not in _WORKER_GROUPS:
        _WORKER_GROUPS[digest] = cloudpickle.loads(payload)
    return _solve_isolated(_WORKER_GROUPS[digest], inputs, count)


@contextlib.contextmanager
def _dask(scheduler: str | None):
    from dask.distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler) as client:
            yield Dask(client)
        return
    cluster = LocalCluster(
        processes=True, threads_per_worker=1, dashboard_address=None, host="127.0.0.1"
    )
    with cluster, Client(cluster) as client:
        yield Dask(client)


_ACTIVE: contextvars.ContextVar = contextvars.ContextVar("executor", default=None)


def resolve(executor=None, scheduler: str | None = None):
    """Check an executor choice; return a context manager that yields the executor.

    `executor` is None (the one made active by `using`, else "local"; with a `scheduler`,
    "dask"), a name in `EXECUTORS`, a `dask.distributed.Client`, or a `Local`/`Sharded`/`Dask`.
    Entering it connects to `scheduler` (or starts a LocalCluster for "dask" without one), and
    leaving it disconnects (or shuts that cluster down). A client passed in is left open.
    Raises InvalidArgument for anything else, before anything connects or compiles.

    Args:
        executor: the choice, as above.
        scheduler: a Dask scheduler address ("tcp://host:8786"), only with "dask" or None.

    Returns:
        A context manager yielding a `Local`, `Sharded` or `Dask`.

    Examples:
        >>> with resolve("local") as executor:
        ...     type(executor).__name__
        'Local'
        >>> resolve("sharded", scheduler="tcp://10.0.0.5:8786")
        Traceback (most recent call last):
        ...
        analysis.errors.InvalidArgument: scheduler='tcp://10.0.0.5:8786' was given with ...
    """
    if scheduler is not None and not isinstance(scheduler, str):
        raise InvalidArgument(
            f"scheduler={scheduler!r} is invalid; give a Dask scheduler address such as "
            "'tcp://10.0.0.5:8786', or None"
        )
    if executor is None:
        if scheduler is None and _ACTIVE.get() is not None:
            return contextlib.nullcontext(_ACTIVE.get())
        executor = "local" if scheduler is None else "dask"
    if scheduler is not None and executor != "dask":
        raise InvalidArgument(
            f"scheduler={scheduler!r} was given with executor={executor!r}; a scheduler "
            "address is only used with executor='dask'"
        )
    if isinstance(executor, Local | Sharded | Dask):
        return contextlib.nullcontext(executor)
    if isinstance(executor, str) and executor in EXECUTORS:
        if executor == "dask":
            return _dask(scheduler)
        return contextlib.nullcontext(Local() if executor == "local" else Sharded())
    from dask.distributed import Client

    if isinstance(executor, Client):
        return contextlib.nullcontext(Dask(executor))
    raise InvalidArgument(
        f"executor={executor!r} is invalid; use one of {', '.join(map(repr, EXECUTORS))} "
        "or a dask.distributed.Client"
    )


@contextlib.contextmanager
def using(executor, scheduler: str | None = None):
    """Make `executor` the default of every `analysis.sweep` call in the block.

    A Dask client or LocalCluster it opens is shared by those sweeps and closed at the end.

    Examples:
        >>> import analysis
        >>> with using("local") as executor:
        ...     df = analysis.sweep("linear", "Euler", dt0=[0.1])  # runs on `executor`
        >>> with using("dask", scheduler="tcp://10.0.0.5:8786"):  # doctest: +SKIP
        ...     tables = study.run(study.CONFIG)
    """
    with resolve(executor, scheduler) as chosen:
        token = _ACTIVE.set(chosen)
        try:
            yield chosen
        finally:
            _ACTIVE.reset(token)


_ACTIVATED: list[contextlib.ExitStack] = []  # what the last `activate` opened


def activate(executor, scheduler: str | None = None):
    """Like `using`, for the rest of this process (the study runner's --executor).

    What it opens is closed by the next `activate` or when the process exits.

    Args:
        executor: as for `resolve`.
        scheduler: a Dask scheduler address, only with "dask".

    Returns:
        The executor now active.

    Examples:
        >>> chosen = activate("local")  # what `python -m studies run ...` does by default
        >>> with resolve() as executor:  # sweeps without an executor= now use it
        ...     executor is chosen
        True

        For a cluster: ``activate("dask", scheduler="tcp://10.0.0.5:8786")``.
    """
    block = resolve(executor, scheduler)
    _close_activated()
    stack = contextlib.ExitStack()
    chosen = stack.enter_context(block)
    _ACTIVATED.append(stack)
    _ACTIVE.set(chosen)
    return chosen


@atexit.register
def _close_activated():
    while _ACTIVATED:
        _ACTIVATED.pop().close()
