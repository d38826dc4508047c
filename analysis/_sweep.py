"""The sweep engine: a grid of settings → compiled-once, vmapped solves → one tidy DataFrame.

`sweep(systems, solvers, dt0=[...])` runs a fixed-step sweep; `sweep(..., controller="PI34",
rtol=[...])` an adaptive one. For each (system, solver, controller kind) the solve is traced and
compiled once, then the numeric grid (dt0, rtol, atol) is vmapped over in chunks of
`chunk_size`, so memory is bounded by the chunk, not the grid. Every solve is a row; a solve that
fails (max_steps, non-finite state, dt below dtmin, Newton failure) is a row with that status.

Examples:
    >>> import analysis
    >>> df = analysis.sweep("linear", ["Euler", "Heun"], dt0=[0.1, 0.05, 0.025])
    >>> df[["solver", "dt0", "status", "error"]].shape
    (6, 4)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import math
import os
import re
import warnings
from collections.abc import Sequence
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import batch as _batch
from . import chunk_store as _chunk_store
from . import controller as _controller
from . import distributed as _distributed
from . import progress as _progress
from . import reference as _reference
from . import solvers as _solvers
from . import step_log as _step_log
from . import systems as _systems
from .errors import InvalidArgument, PrecisionWarning, warn_if_float32

__all__ = ["sweep"]

DEFAULT_CHUNK = 128
DEFAULT_ADAPTIVE_MAX_STEPS = 2**14
#: Largest max_steps a sweep takes: diffrax counts constant steps in int32.
MAX_STEPS_LIMIT = 2**31 - 1
#: Relative accuracy to which every step of a sweep must be representable on its time grid.
#: A step h is taken as fl(t_{k+1}) - fl(t_k), off from h by up to one float spacing at
#: T = max(|t0|, |t1|), so a sweep requires spacing(T) ≤ STEP_RTOL·h. At 1e-4 a measured error
#: C·h^p (p ≤ 8) moves by under 0.1 %, below the digits a table or an order fit reports, and a
#: field that reads h sees it to 4 digits. In float64 this allows h ≥ 2.2e-12·T (T = 1.7e9, an
#: epoch time: h ≥ 2.4e-3); in float32, h ≥ 1.2e-3·T.
STEP_RTOL = 1e-4


def _as_list(x) -> list:
    if x is None:
        return []
    if isinstance(x, (str, bytes)) or not isinstance(x, Sequence | np.ndarray):
        return [x]
    return list(np.asarray(x).ravel()) if isinstance(x, np.ndarray) else list(x)


def _check_positive_finite(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise InvalidArgument(
            f"{name}={float(arr[bad][0])!r} is invalid; every {name} must be finite and > 0"
        )
    return arr


def _grid(fixed: bool, dt0, rtol, atol) -> pd.DataFrame:
    dts = _as_list(dt0)
    if fixed:
        for name, value in (("rtol", rtol), ("atol", atol)):
            if _as_list(value):
                raise InvalidArgument(
                    f"{name}={value!r} is given to a fixed-step sweep (controller=None), which "
                    f"has no error control and would ignore it; for an adaptive sweep pass "
                    f"controller= a preset from {sorted(_controller.PRESETS)} (e.g. "
                    f"controller='PI34', {name}=...), or leave rtol and atol out for fixed steps"
                )
        if not dts:
            raise InvalidArgument(
                "dt0 is required for a fixed-step sweep (controller=None); "
                "give a list of step sizes, e.g. dt0=[0.1, 0.05]"
            )
        _check_positive_finite("dt0", dts)
        return pd.DataFrame({"dt0": np.asarray(dts, float), "rtol": np.nan, "atol": np.nan})
    rtols = _as_list(rtol)
    if not rtols:
        raise InvalidArgument("rtol is required for an adaptive sweep; e.g. rtol=[1e-3, 1e-6]")
    atols = _as_list(atol) or rtols
    if len(atols) == 1 and len(rtols) > 1:
        atols = atols * len(rtols)
    if len(rtols) == 1 and len(atols) > 1:
        rtols = rtols * len(atols)
    if len(atols) != len(rtols):
        raise InvalidArgument(
            f"atol has {len(atols)} values and rtol {len(rtols)}; they are paired, so give "
            "equal lengths, one value to broadcast, or atol=None to use atol = rtol"
        )
    _check_positive_finite("rtol", rtols)
    _check_positive_finite("atol", atols)
    if dts:
        _check_positive_finite("dt0", dts)
    tols = pd.DataFrame({"rtol": np.asarray(rtols, float), "atol": np.asarray(atols, float)})
    dts_col = pd.DataFrame({"dt0": np.asarray(dts, float) if dts else [np.nan]})
    return dts_col.merge(tols, how="cross")


def _check_span(system, grid: pd.DataFrame):
    span = abs(system.t1 - system.t0)
    too_big = grid["dt0"] > span
    if too_big.any():
        raise InvalidArgument(
            f"dt0={float(grid['dt0'][too_big].iloc[0])!r} is larger than the time span {span} of "
            f"system {system.name!r}; use dt0 ≤ (t1 - t0)"
        )


def _check_max_steps(max_steps) -> None:
    try:
        ok = float(max_steps).is_integer() and 1 <= int(max_steps) <= MAX_STEPS_LIMIT
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok or isinstance(max_steps, bool):
        raise InvalidArgument(
            f"max_steps={max_steps!r} is invalid; it must be an integer from 1 to "
            f"2**31 - 1 = {MAX_STEPS_LIMIT} (diffrax counts steps in int32)"
        )


def _check_representable(system, grid: pd.DataFrame, fixed: bool) -> None:
    """Refuse steps that the system's time grid cannot represent to STEP_RTOL (module docs).

    Fixed steps: the smallest h. Adaptive: the smallest initial step dt0 if given, and always
    the span itself (no step is longer, so if the span fails, every step does).
    """
    dtype = np.dtype(jnp.result_type(float))  # diffrax's time dtype
    t0, t1 = float(system.t0), float(system.t1)
    spacing0, spacing1 = (float(np.spacing(np.asarray(abs(t), dtype))) for t in (t0, t1))
    spacing = max(spacing0, spacing1)
    span = abs(t1 - t0)
    need = spacing / STEP_RTOL  # the smallest step represented to STEP_RTOL on this grid
    where = f"at t0={t0!r} the {dtype.name} spacing is np.spacing(t0)={spacing0:.3g}" + (
        f" ({spacing1:.3g} at t1={t1!r})" if spacing1 != spacing0 else ""
    )
    steps = grid["h"] if fixed else grid["dt0"].dropna()
    # Far from the origin a shifted span (t0 = 0) is what makes small steps representable.
    shift = (
        f"shift the time origin (e.g. system.with_(t0=0.0, t1={span:.6g}), with the old t0 "
        "added to t inside the field if it reads t)"
        if min(abs(t0), abs(t1)) > span
        else ""
    )
    if len(steps) and float(steps.min()) < need:
        i = steps.idxmin()
        dt0, h = float(grid["dt0"][i]), float(steps[i])
        what = f"dt0={dt0!r}" + ("" if fixed else " (the initial step)")
        raise InvalidArgument(
            f"{what} cannot be represented on the time grid of system "
            f"{system.name!r}: {where}, so a step t_(k+1) - t_k of {h:.3g} is off by up to "
            f"{spacing / h:.2g} relative; a sweep needs every step to within {STEP_RTOL:g} "
            f"relative (analysis._sweep.STEP_RTOL), i.e. dt0 ≥ {need:.3g} here. "
            + (f"Use a larger dt0, or {shift}" if shift else "Use a larger dt0")
        )
    if span < need:
        raise InvalidArgument(
            f"system {system.name!r} spans t0={t0!r} to t1={t1!r}: {where}, so even one step "
            f"over the whole span ({span:.3g}) is off by up to {spacing / span:.2g} relative; a "
            f"sweep needs every step to within {STEP_RTOL:g} relative (steps ≥ {need:.3g}). "
            + (shift[0].upper() + shift[1:] if shift else "Use a longer span")
        )


def _check_step_count(system, grid: pd.DataFrame) -> int:
    """The steps the smallest fixed h needs, refused beyond MAX_STEPS_LIMIT."""
    span = abs(system.t1 - system.t0)
    i = grid["h"].idxmin()
    needed = math.ceil(span / float(grid["h"][i])) + 1
    if needed > MAX_STEPS_LIMIT:
        raise InvalidArgument(
            f"dt0={float(grid['dt0'][i])!r} needs {needed - 1:.3g} steps over the span {span!r} "
            f"of system {system.name!r}; a sweep takes at most 2**31 - 1 = {MAX_STEPS_LIMIT} "
            f"steps per solve, so dt0 must be ≥ {span / (MAX_STEPS_LIMIT - 1):.3g}"
        )
    return needed


def _check_save_ts(systems, save_ts) -> tuple:
    """save_ts as a tuple of floats, checked to be increasing and inside every system's span."""
    if save_ts is None:
        return ()
    ts = np.asarray(save_ts, dtype=float).ravel()
    for s in systems:
        lo, hi = sorted((float(s.t0), float(s.t1)))
        if ts.size == 0 or not np.all(np.isfinite(ts)) or ts.min() < lo or ts.max() > hi:
            raise InvalidArgument(
                f"save_ts={save_ts!r} is invalid for system {s.name!r}; give finite times "
                f"inside its span [{lo}, {hi}]"
            )
        if np.any(np.diff(ts) * np.sign(s.t1 - s.t0) < 0):
            raise InvalidArgument(f"save_ts={save_ts!r} must be ordered from t0 to t1")
    return tuple(float(t) for t in ts)


#: Packages whose code computes a chunk's numbers; their versions are part of every chunk key.
_KEY_PACKAGES = ("jax", "jaxlib", "diffrax", "equinox", "optimistix", "lineax", "numpy")


def _describe(x, depth: int = 0) -> str:
    """Canonical text of an object for a chunk key: stable across processes, exact in values.

    Modules and dataclasses by class and every field (static ones included), arrays by dtype,
    shape and SHA-256 of their bytes, Python scalars by type and repr, functions by qualified
    name (plus a hash of the code of a lambda or a local function), and anything else by its
    type and repr with memory addresses removed.
    """
    if depth > 40:
        return "..."
    d = depth + 1
    if x is None or isinstance(x, bool | int | float | complex | str | bytes):
        return f"{type(x).__name__}:{x!r}"
    if isinstance(x, np.ndarray | np.generic | jax.Array):
        a = np.ascontiguousarray(np.asarray(x))
        return f"array:{a.dtype.str}{a.shape}:{hashlib.sha256(a.tobytes()).hexdigest()[:32]}"
    if isinstance(x, list | tuple):
        return f"{type(x).__name__}[{','.join(_describe(v, d) for v in x)}]"
    if isinstance(x, set | frozenset):
        return f"{type(x).__name__}{{{','.join(sorted(_describe(v, d) for v in x))}}}"
    if isinstance(x, dict):
        items = sorted((repr(k), _describe(v, d)) for k, v in x.items())
        return "dict{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(x, functools.partial):
        return f"partial({_describe(x.func, d)},{_describe(x.args, d)},{_describe(x.keywords, d)})"
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        fields = ",".join(
            f"{f.name}={_describe(getattr(x, f.name, None), d)}" for f in dataclasses.fields(x)
        )
        return f"{type(x).__module__}.{type(x).__qualname__}({fields})"
    if inspect.ismethod(x):
        return f"method({_describe(x.__self__, d)}.{x.__func__.__qualname__})"
    if callable(x) and hasattr(x, "__qualname__"):
        name = f"{getattr(x, '__module__', '')}.{x.__qualname__}"
        code = getattr(x, "__code__", None)
        if code is not None and ("<lambda>" in name or "<locals>" in name):
            consts = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(code.co_consts))
            name += ":" + hashlib.sha256(code.co_code + consts.encode()).hexdigest()[:16]
        return f"fn:{name}"
    return (
        f"{type(x).__module__}.{type(x).__qualname__}:{re.sub(r' at 0x[0-9a-fA-F]+', '', repr(x))}"
    )


def _identity(group: _batch.Group) -> str:
    """Text naming what a group's chunk outputs depend on, stable across processes (a chunk key).

    Everything that determines the numbers enters: the system (every field: name, span, y0,
    args, parameters, ...) and its field by its traced jaxpr and closed-over constants, so two
    fields that compute differently (two trained models under one name) never share a key; the
    solver as a whole (class and every field, static ones included: the root finder with its
    tolerances and norm, ...); the controller preset as it builds, with its options; every
    other group field (max_steps, save_ts, signed_h, ...); the float dtype, the x64 flag, the
    jax backend and the versions of the packages that compute (`_KEY_PACKAGES`).
    """
    s = group.system
    t0 = jnp.asarray(s.t0, jnp.result_type(float))
    field = jax.make_jaxpr(s.vector_field)(t0, s.y0, s.args, jnp.zeros((), t0.dtype))
    rest = [
        (f.name, _describe(getattr(group, f.name)))
        for f in dataclasses.fields(group)
        if f.name not in ("system", "solver")
    ]  # every other group field, so a new one is part of the key without further edits
    if group.controller != _controller.FIXED:
        preset = _controller.make(group.controller, 1.0, 1.0, **dict(group.controller_options))
        rest.append(("controller_built", _describe(preset)))
    env = (
        str(jnp.result_type(float)),
        bool(jax.config.read("jax_enable_x64")),
        jax.default_backend(),
        _package_versions(),
    )
    return repr(
        (
            _describe(s),  # every System field: name, span, y0, args, h_dependent, ...
            _chunk_store.ChunkStore.key(str(field.jaxpr), *field.consts),
            _describe(group.solver),
            env,
        )
        + tuple(rest)
    )


@functools.cache
def _package_versions() -> tuple:
    """(name, version or None) of each of `_KEY_PACKAGES`, read once per process."""
    versions = []
    for pkg in _KEY_PACKAGES:
        try:
            versions.append((pkg, metadata.version(pkg)))
        except metadata.PackageNotFoundError:
            versions.append((pkg, None))
    return tuple(versions)


def _chunks(group: _batch.Group, grid: pd.DataFrame):
    """The group's grid sorted by expected cost and cut into chunks of `chunk_size` inputs.

    Returns (order, sorted columns, [(h, rtol, atol) arrays, number of real solves] per chunk);
    a short last chunk is padded by repeating its last point, so every chunk has the same shape.
    """
    # Sort by expected cost so each vmapped chunk holds solves of similar length.
    order = np.lexsort((-grid["rtol"].fillna(0).to_numpy(), -grid["h"].fillna(0).to_numpy()))
    n, size = len(grid), group.chunk_size
    cols = {c: grid[c].to_numpy()[order] for c in ("dt0", "h", "rtol", "atol")}
    filled = {c: np.nan_to_num(v, nan=1.0) for c, v in cols.items()}
    chunks = []
    for start in range(0, n, size):
        idx = np.arange(start, start + size).clip(max=n - 1)  # pad by repeating the last point
        chunks.append((tuple(filled[c][idx] for c in ("h", "rtol", "atol")), min(size, n - start)))
    return order, cols, chunks


def _rows(group: _batch.Group, order, cols: dict, outs: list[dict]) -> pd.DataFrame:
    """The group's rows, in grid order, from its chunks' outputs (in chunk order).

    The columns are built as arrays in chunk order, put back in grid order, and made into one
    DataFrame at once (a column at a time would copy the table for each).
    """
    system = group.system
    n = len(order)
    inverse = np.empty(n, dtype=int)
    inverse[order] = np.arange(n)
    out = {k: np.concatenate([o[k] for o in outs])[inverse] for k in outs[0] if np.ndim(outs[0][k])}
    walls = np.concatenate([np.full(len(o["num_steps"]), o["wall_s"]) for o in outs])[inverse]
    y_final = out["y_final"].reshape(n, -1)
    status = np.array([_batch.status_of(c, y) for c, y in zip(out["result"], y_final, strict=True)])
    steps = {k: out[k].astype(np.int64) for k in ("num_steps", "num_accepted", "num_rejected")}
    with warnings.catch_warnings():  # the sweep has warned already
        warnings.simplefilter("ignore", PrecisionWarning)
        ref = _reference.final_state(system)
    if ref.y is None:
        error = np.full(n, np.nan)
    else:
        err = np.max(np.abs(y_final - ref.y.reshape(1, -1)), axis=1)
        error = np.where(status == "ok", err, np.nan)
    columns = {
        "system": system.name,
        "solver": _solvers.name_of(group.solver),
        "controller": group.controller,
        **{c: v[inverse] for c, v in cols.items()},
        "t1": float(system.t1),
        "status": status,
        **steps,
        "nfev": _solvers.nfev(group.solver, steps["num_steps"], step_dependent=system.h_dependent),
        "error": error,
        "error_source": f"{ref.source} ({ref.reason})" if ref.reason else ref.source,
        "wall_s": walls,
        **{f"y_final_{i}": y_final[:, i] for i in range(y_final.shape[1])},
    }
    if group.save_ts:
        columns["ys"] = list(out["ys"])
    if group.log_steps:
        logs = zip(out["log_h"], out["log_accepted"], out["log_count"], strict=True)
        metrics = pd.DataFrame([_step_log.step_metrics(*log) for log in logs])
        columns |= {k: metrics[k].to_numpy() for k in metrics}
    rows = pd.DataFrame(columns, index=pd.RangeIndex(n))
    rows.attrs["compile_s"] = max(float(o.get("compile_s", 0.0)) for o in outs)
    return rows


def _run_groups(groups: list, store, executor, bar) -> tuple[list[pd.DataFrame], int]:
    """Solve every (group, grid) pair's chunks with `executor`, through `store`; (frames, compiles).

    `bar` (an `analysis.progress.bar`) counts the solves of each chunk done, loaded or solved.

    Stored chunks are loaded (a group whose chunks are all stored never compiles); the others go
    to the executor together, and each is saved to the store as soon as it comes back, so an
    interrupted run loses only unfinished chunks. A stored chunk is used only if it records this
    chunk's key and inputs, passes its checksum and has the outputs
    `analysis.batch.chunk_problem` expects; otherwise the store reports it and it is solved again.
    """
    plans, outs, tasks = [], [], []
    for g, (group, grid) in enumerate(groups):
        order, cols, chunks = _chunks(group, grid)
        plans.append((order, cols))
        outs.append([None] * len(chunks))
        identity = _identity(group) if store is not None else ""
        for c, (inputs, count) in enumerate(chunks):
            key = store.key(identity, *inputs) if store is not None else None
            check = functools.partial(_batch.chunk_problem, group, count)
            out = store.load(key, inputs=inputs, check=check) if store is not None else None
            if out is None:
                tasks.append(((g, c, key), group, inputs, count))
            else:
                outs[g][c] = out
                store.advance(1, count, cached=True)
                bar.update(count)
    compilations = 0
    for i, out in executor.map([t[1:] for t in tasks]):
        (g, c, key) = tasks[i][0]
        compilations += int(out.pop("compiled"))
        if store is not None:
            store.save(key, {k: v for k, v in out.items() if k != "compile_s"})
            store.advance(1, len(out["num_steps"]), cached=False)
        bar.update(tasks[i][3])
        outs[g][c] = out
    frames = [
        _rows(group, *plan, o) for (group, _), plan, o in zip(groups, plans, outs, strict=True)
    ]
    return frames, compilations


def _available_bytes() -> int:
    """Physical memory this process could still use (Linux: MemAvailable), in bytes."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def chunk_bytes(
    system, solver, chunk_size: int, n_save: int = 0, log_steps: int = 0, dense_steps: int = 0
) -> int:
    """Estimated working memory of one vmapped chunk, in bytes (float64).

    Per solve: the state and its error estimate, one vector per Runge–Kutta stage, a dense-output
    copy of the stages, saved states and logged steps, plus ~1 KiB of solver and controller
    state: 8·n·(2·stages + 4 + n_save) + 32·log_steps + 1024; and where the whole interpolant is
    kept (constant steps with save times: `analysis.batch`), 8·n·(stages + 2) per step for
    `dense_steps` steps. XLA's own accounting of compiled sweeps (see the README's "bigger than
    one machine" section) stays below this bound.
    """
    n = int(np.asarray(system.y0).size)
    stages = _solvers.info(solver).stages
    per_solve = 8 * n * (2 * stages + 4 + n_save + (stages + 2) * dense_steps)
    return chunk_size * (per_solve + 32 * log_steps + 1024)


def _check_chunk_memory(system_objs, solver_objs, size, n_save, log_steps, dense_steps=0) -> None:
    """Refuse, before compiling, a chunk whose estimated memory exceeds half the free memory."""
    budget = _available_bytes() // 2
    for system in system_objs:
        for solver in solver_objs:
            need = chunk_bytes(system, solver, size, n_save, log_steps, dense_steps)
            if need > budget:
                fits = size * budget // need
                advice = (
                    f"use chunk_size={fits} or less"
                    if fits >= 1
                    else "even one solve per chunk does not fit"
                )
                raise InvalidArgument(
                    f"chunk_size={size} needs about {need / 2**30:.1f} GiB per chunk for system "
                    f"{system.name!r} with {_solvers.name_of(solver)} (estimate), more than half "
                    f"the {2 * budget / 2**30:.1f} GiB available; {advice}"
                    + (
                        f" (the save times keep the interpolant of all max_steps={dense_steps} "
                        "steps: a smaller max_steps, or larger steps, needs less)"
                        if dense_steps
                        else ""
                    )
                )


def sweep(
    systems,
    solvers,
    *,
    dt0=None,
    controller=None,
    rtol=None,
    atol=None,
    chunk_size: int | None = None,
    max_steps: int | None = None,
    signed_h: bool = False,
    controller_options: dict | None = None,
    save_ts=None,
    log_steps: int = 0,
    store: _chunk_store.ChunkStore | None = None,
    executor=None,
    scheduler: str | None = None,
) -> pd.DataFrame:
    """Solve every (system, solver, setting) combination and return one row per solve.

    Args:
        systems: a System, a catalog name, or a list of them.
        solvers: a diffrax solver, a registry name (e.g. "Tsit5"), or a list of them.
        dt0: step sizes. With controller=None (or "fixed") a fixed-step sweep, one row per dt0,
            solved with the uniform step h = (t1 - t0)/⌈(t1 - t0)/dt0⌉ (equal to dt0 when it
            divides the span; column `h`). With an adaptive controller, initial step sizes
            (default: diffrax's, which is 0.01 in diffrax 0.7). Steps the time grid cannot
            represent to `STEP_RTOL` = 1e-4 relative (float spacing at max(|t0|, |t1|) above
            1e-4·h, e.g. t0 = 1.7e9 with dt0 = 1e-6) are refused, as is a span no step of
            which could be, and a fixed grid of more than 2**31 - 1 steps.
        controller: None/"fixed" for constant steps, or a preset name from
            `analysis.controller.PRESETS` (e.g. "PI34").
        rtol: relative tolerances for adaptive sweeps, paired element by element with atol (a
            single value broadcasts). Refused without an adaptive `controller`.
        atol: absolute tolerances, paired with rtol; atol=None means atol = rtol.
        chunk_size: solves per vmapped batch (default min(grid size, 128)); bounds memory.
        max_steps: step bound per solve, an integer from 1 to 2**31 - 1 (default: enough for
            the smallest fixed dt0, or 2**14).
        signed_h: pass h = t1 - t0 with its sign (negative in reverse time) to the field.
        controller_options: extra controller arguments (dtmin, dtmax, factormax, ...).
        save_ts: optional times (ordered, inside [t0, t1]) at which each solve also returns its
            state, read from the solver's dense output; adds a column `ys` holding one array
            (len(save_ts), *y0.shape) per row (used by `analysis.convergence` for norms over time).
        log_steps: adaptive sweeps only; if > 0, record up to this many attempted steps per
            solve inside the compiled solve (`analysis.controller.StepLogger`) and add the
            columns `analysis.step_log.STEP_METRICS` (rejection rate, step-ratio roughness).
        store: an `analysis.chunk_store.ChunkStore` (default: the one made active by
            `analysis.chunk_store.recording`, else none). Each finished chunk is saved to it and a
            stored chunk is loaded instead of solved, so an interrupted sweep resumes; a group
            whose chunks are all stored is not compiled. Its `chunk_size` applies when
            `chunk_size` is None.
        executor: where the chunks run (`analysis.distributed`): "local" (this process, one
            chunk after another), "sharded" (each chunk's batch split over this machine's jax
            devices), "dask" (chunks as tasks on a dask.distributed cluster), or a
            dask.distributed Client. Default: the one made active by
            `analysis.distributed.using`, else "local". Every executor gives the same table.
        scheduler: with executor="dask", the address of a running Dask scheduler (e.g.
            "tcp://10.0.0.5:8786"); None starts a LocalCluster for this call.

    Returns:
        A DataFrame with columns system, solver, controller, dt0, h, rtol, atol, t1, status,
        num_steps, num_accepted, num_rejected, nfev, error, error_source, wall_s, y_final_i.
        y_final_i are the entries of y(t1): of the array for an array state, of its ravelled
        vector for a PyTree state (a dict, a tuple: `analysis.batch.flat_state`, dict keys in
        sorted order), which `ys` holds too.
        `error` is the max-norm of y(t1) minus the exact (or reference) h → 0 solution, NaN
        where there is none; error_source says which ("exact", "reference", "none (why)"; in
        float32 "reference (float32 reference: ...)", see `analysis.reference`); wall_s is
        the run time of the row's chunk divided by its solves (compilation excluded).
        `df.attrs["compilations"]` counts compilations made by this call (on workers too).

    Examples:
        >>> df = sweep("linear", ["Euler", "Heun"], dt0=[0.1, 0.05, 0.025])   # y' = -y, t1 = 1
        >>> e = df.pivot(index="dt0", columns="solver", values="error")
        >>> np.log2(e.loc[0.05] / e.loc[0.025]).round(1).to_dict()            # observed orders
        {'Euler': 1.0, 'Heun': 2.0}
        >>> round(float(e.loc[0.1, "Euler"]), 6)                               # e^-1 - 0.9^10
        0.019201
    """
    warn_if_float32("a sweep")
    runner = _distributed.resolve(executor, scheduler)  # checked before anything compiles
    system_objs = [_systems.get(s) for s in _as_list(systems)]
    solver_objs = [_solvers.get(s) for s in _as_list(solvers)]
    if not system_objs or not solver_objs:
        raise InvalidArgument("sweep needs at least one system and one solver")
    kind = _controller.FIXED if controller in (None, _controller.FIXED) else controller
    fixed = kind == _controller.FIXED
    if not fixed:
        if not isinstance(kind, str):
            raise InvalidArgument(
                f"controller={controller!r} must be None, 'fixed' or a preset name from "
                f"{sorted(_controller.PRESETS)}"
            )
        _controller.make(kind, 1.0, 1.0, **(controller_options or {}))  # checks name, options
        for s in solver_objs:
            if not _solvers.info(s).adaptive:
                raise InvalidArgument(
                    f"solver={_solvers.name_of(s)!r} has no error estimate, so it cannot be used "
                    f"with controller={kind!r}; wrap it as diffrax.HalfSolver or use dt0 only"
                )
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise InvalidArgument(f"chunk_size={chunk_size!r} is invalid; it must be an integer ≥ 1")
    if max_steps is not None:
        _check_max_steps(max_steps)
    if int(log_steps) != log_steps or log_steps < 0 or (fixed and log_steps):
        raise InvalidArgument(
            f"log_steps={log_steps!r} is invalid; it must be an integer ≥ 0, and 0 for fixed steps"
        )
    save_ts = _check_save_ts(system_objs, save_ts)
    store = store if store is not None else _chunk_store.active_store()
    settings = _grid(fixed, dt0, rtol, atol)  # the same numeric grid for every system
    n_grid = len(settings)
    default = store.chunk_size if store is not None else None
    size = int(chunk_size or default or min(n_grid, DEFAULT_CHUNK))
    _check_chunk_memory(system_objs, solver_objs, size, len(save_ts), int(log_steps))
    planned = []  # (system, grid, max_steps), every system checked before anything is stored
    for system in system_objs:
        grid = settings.copy()
        _check_span(system, grid)
        span = abs(system.t1 - system.t0)
        # diffrax's ConstantStepSize takes dt0 as the first step and spreads the rest evenly, so
        # a dt0 that does not divide the span gives uneven steps: snap to span/N, N = ⌈span/dt0⌉.
        grid["h"] = span / np.ceil(span / grid["dt0"] * (1 - 1e-12)) if fixed else grid["dt0"]
        _check_representable(system, grid, fixed)
        if fixed:
            needed = _check_step_count(system, grid)
        if max_steps is not None:
            steps = int(max_steps)
        elif fixed:
            # rounded up to a power of 2 so nearby grids share code
            steps = min(2 ** math.ceil(math.log2(needed)), MAX_STEPS_LIMIT)
        else:
            steps = DEFAULT_ADAPTIVE_MAX_STEPS
        if fixed and _batch.saves_inside(system, save_ts):  # the interpolant is kept whole
            _check_chunk_memory([system], solver_objs, size, len(save_ts), 0, dense_steps=steps)
        planned.append((system, grid, steps))
    if store is not None:
        per_group = math.ceil(n_grid / size)
        groups = len(system_objs) * len(solver_objs)
        store.begin(per_group * groups, n_grid * groups)
    groups = []
    for system, grid, steps in planned:
        for solver in solver_objs:
            group = _batch.Group(
                system=system,
                solver=solver,
                controller=kind,
                has_dt0=bool(grid["dt0"].notna().all()),
                max_steps=steps,
                chunk_size=size,
                signed_h=signed_h,
                controller_options=tuple(sorted((controller_options or {}).items())),
                save_ts=save_ts,
                log_steps=int(log_steps),
            )
            groups.append((group, grid))
    # a bar on a terminal (`analysis.progress`), unless the store reports progress itself (the
    # study runner's bar)
    quiet = store is not None and store.progress is not None
    bar = _progress.bar(n_grid * len(groups), "sweep", "solve", quiet=quiet)
    with runner as chunk_executor, bar as solves_done:
        frames, compilations = _run_groups(groups, store, chunk_executor, solves_done)
    df = pd.concat(frames, ignore_index=True)
    df.attrs["compilations"] = compilations
    return df
