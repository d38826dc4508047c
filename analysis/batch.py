"""The compiled batch of solves: one group of settings, solved by one vmapped, jitted solve.

A sweep (`analysis.sweep`) cuts its grid into chunks; each chunk is a `Group` — a system, a
solver and a controller structure (preset name and options, max_steps, save times, step log) —
and the chunk's numbers: the steps dt0 (or h), the tolerances rtol and atol, the state y0 and the
args. `solve_chunk` solves the chunk through `analysis.prepare.prepare` (the one diffeqsolve, or
at constant steps without save times its `Prepared.march`, the same numbers in a plain loop) as
``vmap(solve)`` over the settings inside the module-level `eqx.filter_jit` function, so jax's own
cache compiles once per group structure and takes every number as an argument: another grid of
the same size, or another chunk, reuses the compiled solve. The numbers of the system (y0, args,
t0, t1) and of the controller (the preset's kβ, α and numeric options) are arguments too, so
systems equal up to numbers and presets of one kind (`analysis.controller.numbers_as_arrays`)
share the compiled solve. `compile_count` counts how often it was traced (one trace, one
compilation).

Outputs per solve (`OUTPUTS`; `chunk_problem` checks a stored chunk against them): the final
state ``y_final``, the diffrax result code ``result`` (read by `status_of` into a word of
`STATUS`), the step counts, and with save times ``ys``, with a step log ``log_h``,
``log_accepted``, ``log_count``. A state that is an array is returned with y0's shape; a PyTree
state (a dict, a tuple of arrays, ...) as the vector ``jax.flatten_util.ravel_pytree(y)[0]``
(its leaves flattened in tree order, dict keys sorted), so that every chunk's outputs are plain
arrays that a chunk store can keep and a table can hold as columns y_final_0, y_final_1, ...

Examples:
    >>> import numpy as np, analysis
    >>> group = Group(analysis.systems.get("linear"), analysis.solvers.get("Euler"))
    >>> out = solve_chunk(group, (np.array([0.5, 0.25]), np.ones(2), np.ones(2)), count=2)
    >>> out["y_final"].tolist(), [status_of(c, y) for c, y in zip(out["result"], out["y_final"])]
    ([0.25, 0.31640625], ['ok', 'ok'])
"""

from __future__ import annotations

import dataclasses
import functools
import time

import diffrax
import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np

from . import controller as _controller
from . import step_log as _step_log
from . import systems as _systems
from ._diffrax_private import result_code
from .prepare import prepare
from .stepdep import StepAware

__all__ = [
    "Group",
    "solve_chunk",
    "chunk_problem",
    "output_shapes",
    "state_shape",
    "flat_state",
    "flat_states",
    "status_of",
    "compile_count",
    "STATUS",
    "FIELD_ERROR",
    "OUTPUTS",
    "LOG_OUTPUTS",
]

#: The status words of a solve (a sweep row's "status"), each with its meaning.
STATUS = {
    "ok": "the solve reached t1 and its final state is finite",
    "nonfinite": "the solve reached t1 but its final state has a NaN or an infinity",
    "max_steps": "max_steps steps were taken before t1",
    "dt_below_min": "the controller wanted a step below its dtmin",
    "implicit_nonconvergence": "an implicit stage's Newton iteration failed (diverged, ran "
    "out of iterations or met a singular matrix)",
    "event": "an event stopped the solve",
    "field_error": "the vector field raised at run time (an eqx.error_if, a failing callback)",
    "failed(<code>)": "a diffrax result this table does not name, by its code",
}
_WORD_OF_RESULT = {
    "successful": "ok",
    "max_steps_reached": "max_steps",
    "dt_min_reached": "dt_below_min",
    "nonlinear_divergence": "implicit_nonconvergence",
    "nonlinear_max_steps_reached": "implicit_nonconvergence",
    "singular": "implicit_nonconvergence",
    "event_occurred": "event",
}
_STATUS_BY_CODE = {
    int(result_code(getattr(diffrax.RESULTS, k))): v for k, v in _WORD_OF_RESULT.items()
}
#: Result code of a solve whose vector field raised at run time (an `eqx.error_if` that fired,
#: a callback that failed): status "field_error". No diffrax result has it (they are ≥ 0); the
#: executors (`analysis.distributed`) record it for each solve that raises on its own.
FIELD_ERROR = -1
_STATUS_BY_CODE[FIELD_ERROR] = "field_error"

#: The outputs of every chunk (per solve, and the chunk's run time per solve "wall_s").
OUTPUTS = ("y_final", "result", "num_steps", "num_accepted", "num_rejected", "wall_s")
#: The further outputs of a chunk whose group logs steps (`Group.log_steps` > 0).
LOG_OUTPUTS = ("log_h", "log_accepted", "log_count")

_COMPILES = {"count": 0}


def compile_count() -> int:
    """How many batch solves have been compiled in this process so far.

    Counted inside the traced function, so it is jax's own cache that decides: one compilation
    per group structure (the system's field, solver, controller kind, chunk size, max_steps,
    ...); another grid of the same size, another preset of the same kind or another system
    equal up to numbers reuses it.

    Returns:
        The number of compilations, an int.

    Examples:
        >>> import analysis
        >>> first = analysis.sweep("linear", "Euler", dt0=[0.1, 0.05, 0.025])
        >>> n = compile_count()
        >>> again = analysis.sweep("linear", "Euler", dt0=[0.08, 0.04, 0.02])  # same structure
        >>> compile_count() - n, again.attrs["compilations"]
        (0, 0)
    """
    return _COMPILES["count"]


def status_of(code: int, y_final) -> str:
    """Row status from a diffrax result code and the final state.

    Args:
        code: the integer value of a `diffrax.RESULTS` member (what a compiled solve returns).
        y_final: the solve's final state, an array or any PyTree of arrays.

    Returns:
        The row status, a word of `STATUS`: the diffrax result's, "nonfinite" for a successful
        solve whose state has a non-finite entry in any leaf, "field_error" for `FIELD_ERROR`
        (the vector field raised at run time), or "failed(<code>)" for an unlisted result.

    Examples:
        >>> ok = int(result_code(diffrax.RESULTS.successful))
        >>> too_long = int(result_code(diffrax.RESULTS.max_steps_reached))
        >>> status_of(ok, np.array([0.37])), status_of(ok, np.array([np.nan]))
        ('ok', 'nonfinite')
        >>> status_of(ok, {"q": np.array(0.5), "p": np.array(np.inf)})
        'nonfinite'
        >>> status_of(too_long, np.array([0.37])), status_of(FIELD_ERROR, np.array([np.nan]))
        ('max_steps', 'field_error')
    """
    status = _STATUS_BY_CODE.get(int(code), f"failed({int(code)})")
    finite = all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(y_final))
    if status == "ok" and not finite:
        return "nonfinite"
    return status


def state_shape(y0) -> tuple:
    """The shape of a state as a batch stores it: y0's shape for an array, else the length of
    its ravelled vector (`jax.flatten_util.ravel_pytree`).

    Args:
        y0: the initial state, an array or a PyTree of arrays.

    Returns:
        A shape tuple.

    Examples:
        >>> state_shape(np.zeros(3)), state_shape({"q": np.zeros(2), "p": np.zeros(())})
        ((3,), (3,))
    """
    if _is_array(y0):
        return np.shape(y0)
    return (sum(int(np.size(leaf)) for leaf in jax.tree.leaves(y0)),)


def flat_state(y) -> np.ndarray:
    """A state as a batch stores it: an array as it is, a PyTree of arrays as its ravelled
    vector (`jax.flatten_util.ravel_pytree`, leaves in tree order, dict keys sorted).

    Args:
        y: a state, an array or a PyTree of arrays.

    Returns:
        A numpy array.

    Examples:
        >>> flat_state(np.array([1.0, 2.0])), flat_state({"q": np.array(1.0), "p": np.array(2.0)})
        (array([1., 2.]), array([2., 1.]))
    """
    return np.asarray(y if _is_array(y) else _ravel(y))


def flat_states(ys):
    """States saved at several times (leading axis: time) as a batch stores them: an array as
    it is, a PyTree of arrays as one ravelled vector per time (`flat_state` of each); traceable.

    Args:
        ys: the saved states, an array or a PyTree of arrays with a leading time axis.

    Returns:
        An array of shape (times, *state_shape).

    Examples:
        >>> flat_states({"q": np.array([1.0, 3.0]), "p": np.array([2.0, 4.0])}).tolist()
        [[2.0, 1.0], [4.0, 3.0]]
    """
    return ys if _is_array(ys) else jax.vmap(_ravel)(ys)


def _is_array(y) -> bool:
    return isinstance(y, np.ndarray | np.generic | jax.Array | float)


def _ravel(y):
    return jax.flatten_util.ravel_pytree(y)[0]


class Group(eqx.Module):
    """One compiled unit: a system, a solver, and the controller structure around them.

    What is compiled is fixed by the structure here: the system's field, the solver, the
    controller's kind (`analysis.controller.numbers_as_arrays`: limiter, which options are
    None, ...) and the other fields; names and numbers (the system's y0, args and span, the
    preset's coefficients and numeric options, a chunk's steps and tolerances) are arguments. A
    group is hashable, and picklable for a Dask worker.

    Attributes:
        system: the `analysis.systems.System`.
        solver: the diffrax solver (unwrapped: `prepare` wraps it for a field that reads h).
        controller: "fixed" (constant steps) or a preset name of `analysis.controller.PRESETS`.
        has_dt0: whether dt0 is given (adaptive; False lets diffrax choose the first step).
        max_steps: diffrax's step limit per solve.
        chunk_size: solves per chunk (the batch size).
        signed_h: hand h = t1 - t0 with its sign to the field (`StepAware(signed=True)`).
        controller_options: the preset's options as sorted (name, value) pairs.
        save_ts: extra save times (output "ys", read from the dense output).
        log_steps: attempted steps logged per solve (outputs `LOG_OUTPUTS`).

    Examples:
        >>> import analysis
        >>> g = Group(analysis.systems.get("linear"), analysis.solvers.get("Tsit5"), "PI34")
        >>> g.controller, g.max_steps, g.chunk_size
        ('PI34', 16384, 1)
    """

    system: _systems.System
    solver: diffrax.AbstractSolver
    controller: str = eqx.field(static=True, default=_controller.FIXED)
    has_dt0: bool = eqx.field(static=True, default=True)
    max_steps: int = eqx.field(static=True, default=2**14)
    chunk_size: int = eqx.field(static=True, default=1)
    signed_h: bool = eqx.field(static=True, default=False)
    controller_options: tuple = eqx.field(static=True, default=())
    save_ts: tuple = eqx.field(static=True, default=())
    log_steps: int = eqx.field(static=True, default=0)

    def __eq__(self, other) -> bool:  # compared on the host: no eager XLA kernels
        return _systems.tree_equal(self, other)

    __hash__ = eqx.Module.__hash__  # the fields' hashes (the System's: its structure)


def _solve_one(group: Group, dt0, rtol, atol, y0, args, span, ctrl) -> dict:
    """One solve of the group at (dt0, rtol, atol): prepared by `prepare`, solved once.

    `ctrl` is the group's controller with its numbers as arguments (`_traced_form`), None at
    constant steps; this solve's rtol and atol replace its placeholders. Constant steps with
    nothing saved on the way are marched (`Prepared.march`: the final state of diffeqsolve
    without its adaptive machinery); everything else is solved by `Prepared.solve`.
    """
    wrapper = functools.partial(StepAware, signed=group.signed_h)
    if group.controller == _controller.FIXED:
        prepared = prepare(group.system, group.solver, wrapper=wrapper)
    else:
        ctrl = dataclasses.replace(ctrl, rtol=rtol, atol=atol)
        prepared = prepare(
            group.system, group.solver, controller=ctrl, log_steps=group.log_steps, wrapper=wrapper
        )
    if prepared.fixed and not group.save_ts:
        end = prepared.march(
            dt0, y0=y0, args=args, t0=span[0], t1=span[1], max_steps=group.max_steps
        )
        return _outputs(end.y1 if _is_array(end.y1) else _ravel(end.y1), end.result, end.stats)
    # Save times are read from the solver's dense output (its interpolant). At constant steps
    # the whole interpolant is kept (max_steps steps, `_sweep.chunk_bytes`) and evaluated after
    # the solve: SaveAt(ts) would check the (traced) times at run time through a host callback,
    # and jax does not store a program with a host callback in its persistent cache.
    dense = prepared.fixed and bool(group.save_ts)
    save_ts = jnp.asarray(group.save_ts) if group.save_ts else None
    saveat = diffrax.SaveAt(
        t1=True,
        ts=None if dense else save_ts,
        dense=dense,
        controller_state=group.log_steps > 0,
    )
    sol = prepared.solve(
        dt0 if group.has_dt0 else None,
        y0=y0,
        args=args,
        t0=span[0],
        t1=span[1],
        saveat=saveat,
        max_steps=group.max_steps,
    )
    ys = flat_states(sol.ys)
    saved = flat_states(jax.vmap(sol.evaluate)(save_ts)) if dense else ys[:-1]
    return (
        _outputs(ys[-1], sol.result, sol.stats)
        | _step_log.logged_steps(sol)
        | ({"ys": saved} if group.save_ts else {})
    )


def _outputs(y_final, result, stats) -> dict:
    return {
        "y_final": y_final,
        "result": result_code(result),
        "num_steps": stats["num_steps"],
        "num_accepted": stats["num_accepted_steps"],
        "num_rejected": stats["num_rejected_steps"],
    }


@eqx.filter_jit
def _solve_batch(group: Group, dt0, rtol, atol, y0, args, span, ctrl) -> dict:
    """`_solve_one` vmapped over the settings; traced (and counted) once per structure."""
    _COMPILES["count"] += 1
    return jax.vmap(_solve_one, in_axes=(None, 0, 0, 0, None, None, None, None))(
        group, dt0, rtol, atol, y0, args, span, ctrl
    )


@functools.lru_cache(maxsize=64)
def _traced_form(group: Group) -> tuple[Group, jax.Array, _controller.SoderlindController | None]:
    """The group as it is compiled, the span [t0, t1] as numbers, and the controller.

    The system is its `System.traced_form` (labels blanked, span an argument), so systems equal
    up to their names and numbers (y0, args, t0, t1) share one trace. Likewise the preset name
    and options are blanked and the controller they make is passed with its numbers as arrays
    (`analysis.controller.numbers_as_arrays`: kβ, α, safety, factor bounds, dtmin, ...), so
    presets of one kind share one trace: only the field's structure, the solver and the
    controller's kind (limiter, which options are None, ...) are static. The controller is made
    here, with concrete numbers, so its checks run before anything compiles.

    A group saving at t1 alone is compiled without save times: its final state is that save
    (`_with_end_saved`), exactly where diffrax ends the solve, with no interpolation, no
    run-time check of the save times, and at constant steps through the marched path.

    Kept for the last groups (a group is hashable), so that the chunks of a sweep do not each
    rebuild and re-check the blanked system.
    """
    system, span = group.system.traced_form()
    save_ts = () if _saves_at_the_end_only(group) else group.save_ts
    traced = dataclasses.replace(group, system=system, save_ts=save_ts)
    if group.controller == _controller.FIXED:
        return traced, span, None
    options = dict(group.controller_options)
    ctrl = _controller.make(group.controller, 1.0, 1.0, **options)  # tolerances: per solve
    traced = dataclasses.replace(traced, controller="", controller_options=())
    return traced, span, _controller.numbers_as_arrays(ctrl)


def saves_inside(system, save_ts: tuple) -> bool:
    """Whether a group of `system` saving at `save_ts` saves anywhere but at t1 alone (there
    the final state is the save: `_with_end_saved`)."""
    return bool(save_ts) and tuple(save_ts) != (float(system.t1),)


def _saves_at_the_end_only(group: Group) -> bool:
    return bool(group.save_ts) and not saves_inside(group.system, group.save_ts)


def _with_end_saved(group: Group, out: dict) -> dict:
    """The outputs with "ys" = the final state where the group saves at t1 alone."""
    if not _saves_at_the_end_only(group):
        return out
    y = out["y_final"]
    ys = (
        jax.ShapeDtypeStruct((y.shape[0], 1, *y.shape[1:]), y.dtype)
        if isinstance(y, jax.ShapeDtypeStruct)
        else y[:, None]
    )
    return out | {"ys": ys}


def solve_chunk(group: Group, inputs, count: int, mesh=None) -> dict:
    """Solve one chunk: the group's compiled vmapped solve on its (h, rtol, atol) inputs.

    A pure function of its arguments (the same chunk gives the same numbers wherever it runs),
    so an executor may run it in this process, on a Dask worker (`analysis.distributed`), or
    again after a lost worker. With a `jax.sharding.Mesh` (one axis, "batch") the chunk's batch
    axis is split over the mesh's devices, padded to a multiple of their number.

    Args:
        group: the `Group`.
        inputs: (h, rtol, atol), three equal-length float arrays (NaN-free; unused ones any).
        count: how many of the settings are real (the rest pad the chunk to its size).
        mesh: a one-axis ("batch") `jax.sharding.Mesh`, or None for this process's device.

    Returns:
        The outputs (`OUTPUTS`, and "ys" and `LOG_OUTPUTS` where the group has them) of the
        first `count` solves as numpy arrays, "wall_s" (run time per solve), "compile_s" (the
        time this call spent finding or compiling the solve) and "compiled" (1 if this call
        compiled it).

    Examples:
        >>> import analysis
        >>> g = Group(analysis.systems.get("linear"), analysis.solvers.get("Heun"), chunk_size=2)
        >>> out = solve_chunk(g, ([0.5, 0.5], [1.0, 1.0], [1.0, 1.0]), count=1)
        >>> out["y_final"].tolist(), out["num_steps"].tolist()    # (1 - 1/2 + 1/8)^2
        ([0.390625], [2])
    """
    y0, args = jax.tree.map(jnp.asarray, (group.system.y0, group.system.args))
    inputs = tuple(np.asarray(x, dtype=float) for x in inputs)
    if mesh is not None:
        pad = -len(inputs[0]) % mesh.size
        inputs = tuple(np.concatenate([x, np.repeat(x[-1:], pad)]) for x in inputs)
        batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        whole = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        inputs, (y0, args) = jax.device_put(inputs, batch), jax.device_put((y0, args), whole)
    else:
        inputs = tuple(map(jnp.asarray, inputs))
    before = compile_count()
    start = time.perf_counter()
    traced, span, ctrl = _traced_form(group)
    compiled = _solve_batch.lower(traced, *inputs, y0, args, span, ctrl).compile()
    compile_s = time.perf_counter() - start
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(traced, *inputs, y0, args, span, ctrl))
    wall = (time.perf_counter() - t) / count
    out = _with_end_saved(group, {k: np.asarray(v)[:count] for k, v in out.items()})
    return out | {
        "wall_s": np.float64(wall),
        "compile_s": np.float64(compile_s),
        "compiled": np.int64(compile_count() - before),
    }


def chunk_problem(group: Group, count: int, out: dict) -> str | None:
    """What is wrong with a stored chunk's outputs for `count` solves of `group`; None if whole.

    The outputs must be exactly those a solve of this group returns, each per-solve array with
    `count` rows and the shape that group gives (y_final like `state_shape(y0)`, ys per save
    time).

    Args:
        group: the `Group` the chunk belongs to.
        count: the number of solves in the chunk.
        out: the chunk's outputs, name -> array.

    Returns:
        None for a whole chunk, else a phrase saying what is wrong.

    Examples:
        >>> import analysis
        >>> g = Group(analysis.systems.get("linear"), analysis.solvers.get("Euler"))
        >>> out = solve_chunk(g, ([0.5], [1.0], [1.0]), count=1)
        >>> chunk_problem(g, 1, {k: out[k] for k in OUTPUTS}) is None
        True
        >>> chunk_problem(g, 2, {k: out[k] for k in OUTPUTS})
        'has y_final of shape (1,), not (2,)'
    """
    names = set(OUTPUTS) | ({"ys"} if group.save_ts else set())
    names |= set(LOG_OUTPUTS) if group.log_steps else set()
    if set(out) != names:
        missing, extra = sorted(names - set(out)), sorted(set(out) - names)
        return f"has the wrong outputs (missing {missing}, unexpected {extra})"
    y0 = state_shape(group.system.y0)
    shapes = {"y_final": (count, *y0), "ys": (count, len(group.save_ts), *y0), "wall_s": ()}
    for k, v in out.items():
        want = shapes.get(k)
        if want is not None and np.shape(v) != want:
            return f"has {k} of shape {np.shape(v)}, not {want}"
        if want is None and (np.ndim(v) < 1 or len(v) != count):
            return f"has {k} of shape {np.shape(v)}, not {count} rows"
    return None


def output_shapes(group: Group) -> dict:
    """The outputs a chunk of `group` returns, as `jax.ShapeDtypeStruct`s (a whole chunk of
    `group.chunk_size` solves; no solve runs, and a group compiled already is not traced again).

    Args:
        group: the `Group`.

    Returns:
        name -> `jax.ShapeDtypeStruct` for `OUTPUTS` but "wall_s" (and "ys", `LOG_OUTPUTS` where
        the group has them).

    Examples:
        >>> import analysis
        >>> g = Group(analysis.systems.get("van_der_pol"), analysis.solvers.get("Euler"))
        >>> {k: s.shape for k, s in output_shapes(g).items()}["y_final"]
        (1, 2)
    """
    ones = jnp.ones(group.chunk_size)
    y0, args = jax.tree.map(jnp.asarray, (group.system.y0, group.system.args))
    traced, span, ctrl = _traced_form(group)
    shapes = eqx.filter_eval_shape(_solve_batch, traced, ones, ones, ones, y0, args, span, ctrl)
    return _with_end_saved(group, shapes)
