"""Tolerance experiments: how error, cost and the answer follow the tolerance and the controller.

Over sweep rows (`analysis.sweep` with ``controller=`` and a list of rtol):

- `proportionality`: the least-squares slope s of log10 error on log10 rtol per line; s = 1
  means error ∝ rtol (tolerance proportionality), s < 1 that tightening rtol buys less.
- `spread(rows)` -> `Spread`: max - min of an output over the rows of each (system, rtol) group,
  i.e. over controllers (and solvers): how far the answer moves when only the controller
  changes. For an h-free field it is at the level of the tolerance; for a field with h as input
  it is the size of the h-effect.
- `work_precision(systems, pairs, rtol)` -> `WorkPrecision`: error against nfev and best-of-n
  wall time for (solver, controller) pairs, with the proportionality of every line fitted once.
- `output_vs_tolerance(rows, reference)` -> `OutputVsTolerance`: y(T) minus a reference value
  on a fine tolerance grid, and the largest jump between neighbouring tolerances.

`analysis.plotting` draws each result (`spread_vs_tolerance`, `work_precision`,
`output_vs_tolerance`) without computing anything again.

Examples:
    >>> from analysis import tolerance
    >>> rows = pd.DataFrame({"system": "linear", "controller": ["I", "PI34"], "rtol": 1e-6,
    ...                      "status": "ok", "y_final_0": [0.36788, 0.36790]})
    >>> round(float(tolerance.spread(rows).spread["spread"].iloc[0]), 8)
    2e-05
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from . import chunk_store as _chunk_store
from . import convergence as _convergence
from . import systems as _systems
from ._sweep import sweep
from .errors import InvalidArgument
from .result import Result, require_columns

__all__ = [
    "proportionality",
    "Spread",
    "spread",
    "WorkPrecision",
    "work_precision",
    "OutputVsTolerance",
    "output_vs_tolerance",
]


@dataclasses.dataclass(frozen=True, repr=False)
class Spread(Result):
    """The spread of an output over the rows of each group (`spread`).

    Attributes:
        rows: the sweep rows the spread was taken over.
        spread: one row per group: the group's columns, spread (max - min over its ok rows,
            the max-norm over the state's components), n (ok rows) and center (the median).

    Examples:
        >>> rows = pd.DataFrame({"system": "linear", "controller": ["I", "PI34"], "rtol": 1e-6,
        ...                      "status": "ok", "y_final_0": [1.0, 1.5]})
        >>> spread(rows).spread[["spread", "n"]].values.tolist()
        [[0.5, 2.0]]
    """

    rows: pd.DataFrame
    spread: pd.DataFrame


@dataclasses.dataclass(frozen=True, repr=False)
class WorkPrecision(Result):
    """Work-precision rows and the tolerance proportionality of each line (`work_precision`).

    Attributes:
        rows: sweep rows, one per (system, solver, controller, tolerance), wall_s the best run.
        proportionality: `proportionality(rows)`: one row per (system, solver, controller).

    Examples:
        >>> wp = work_precision("linear", [("Tsit5", "PI34")], rtol=[1e-4, 1e-8], repeats=1)
        >>> wp.proportionality[["solver", "controller", "points", "status"]].values.tolist()
        [['Tsit5', 'PI34', 2, 'ok']]
    """

    rows: pd.DataFrame
    proportionality: pd.DataFrame


@dataclasses.dataclass(frozen=True, repr=False)
class OutputVsTolerance(Result):
    """An output minus a reference against rtol, and its largest jumps (`output_vs_tolerance`).

    Attributes:
        rows: the sweep rows with a column offset (the output minus the reference).
        jumps: one row per group (the `by` column first): largest_jump (the largest
            |Δ output| between neighbouring rtol), between_rtol_lo, between_rtol_hi (those two
            rtol), jump_over_rtol (largest_jump / between_rtol_hi) and median_jump.

    Examples:
        >>> rows = pd.DataFrame({"system": "linear", "rtol": [1e-3, 1e-4, 1e-5],
        ...                      "status": "ok", "y_final_0": [1.3, 1.1, 1.0]})
        >>> out = output_vs_tolerance(rows, reference=1.0)
        >>> out.rows["offset"].round(12).tolist(), round(float(out.jumps["largest_jump"][0]), 12)
        ([0.3, 0.1, 0.0], 0.2)
    """

    rows: pd.DataFrame
    jumps: pd.DataFrame


def proportionality(rows: pd.DataFrame, by=("system", "solver", "controller")) -> pd.DataFrame:
    """Tolerance proportionality: least-squares slope of log error on log rtol per group.

    A slope of 1 means the error is proportional to the tolerance. Only rows with status "ok"
    and error > 0 count; `points` says how many. Every group of `rows` is a row of the result,
    also one whose rows all failed: `n_failed` counts its rows whose status is not "ok", and
    `reason` says how many of each status (and why a slope is missing).

    Args:
        rows: sweep rows with columns rtol, error, status and the `by` columns.
        by: the grouping columns.

    Returns:
        One row per group: the `by` columns, slope, intercept (of log10 error on log10 rtol),
        points, n_failed, status ("ok", or "too_few_points" with slope NaN when fewer than two
        distinct rtol are usable) and reason ("" for an ok fit without failed rows).

    Examples:
        >>> rtol = np.array([1e-3, 1e-5, 1e-7])
        >>> rows = pd.DataFrame({"system": "linear", "solver": "Tsit5", "controller": "PI34",
        ...                      "rtol": rtol, "error": 5 * rtol**0.8, "status": "ok"})
        >>> proportionality(rows)[["solver", "slope", "points", "status"]]  # error ∝ rtol^0.8
          solver  slope  points status
        0  Tsit5    0.8       3     ok
        >>> rows["status"] = ["ok", "max_steps", "max_steps"]
        >>> fit = proportionality(rows).iloc[0]
        >>> print(fit["slope"], fit["points"], fit["n_failed"], fit["status"])
        nan 1 2 too_few_points
        >>> fit["reason"]
        '1 usable point(s) with 1 distinct rtol, need 2 distinct rtol; 2 failed (2 max_steps)'
    """
    by = list(by)
    records = []
    for key, g in rows.groupby(by, sort=False, dropna=False):
        failed = g["status"] != "ok"
        use = g[~failed & (g["error"] > 0)]
        counts = g.loc[failed, "status"].value_counts(sort=False)
        listed = ", ".join(f"{c} {status}" for status, c in counts.items())
        why = [f"{int(failed.sum())} failed ({listed})"] if len(counts) else []
        if (zero := int((~failed & ~(g["error"] > 0)).sum())) > 0:
            why.append(f"{zero} ok row(s) without a positive error left out")
        record = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        record |= {"points": len(use), "n_failed": int(failed.sum())}
        if use["rtol"].nunique() < 2:
            why.insert(
                0,
                f"{len(use)} usable point(s) with {use['rtol'].nunique()} distinct rtol, "
                "need 2 distinct rtol",
            )
            record |= {"slope": np.nan, "intercept": np.nan, "status": "too_few_points"}
        else:
            fit = _convergence.log_slope(use["rtol"], use["error"], base=10)
            record |= {"slope": fit.slope, "intercept": fit.intercept, "status": "ok"}
        records.append(record | {"reason": "; ".join(why)})
    columns = [*by, "slope", "intercept", "points", "n_failed", "status", "reason"]
    out = pd.DataFrame(records, columns=columns)
    return out.astype({"points": int, "n_failed": int, "slope": float, "intercept": float})


def spread(rows: pd.DataFrame, output=None, by=("system", "rtol")) -> Spread:
    """Controller-induced spread: max - min of an output over the rows of each `by` group.

    With by=("system", "rtol") the spread runs over everything else in the rows (controllers,
    solvers): how far the answer moves when only the controller changes. For a field that does
    not depend on h it is at the level of the tolerance; for a step-dependent field it is the
    size of the h-effect. `output` is a column name, or None for the final state: the spread of
    each y_final_i, maximised over i (the max-norm). Only rows with status "ok" count; `n` is
    how many, `center` the median output.

    Args:
        rows: sweep rows (e.g. several sweeps with different controllers, concatenated).
        output: a column name, or None for the final state.
        by: the grouping columns.

    Returns:
        A `Spread`: the rows, and one row per group with the `by` columns, spread, n and center.

    Raises:
        InvalidArgument: `output` is not a column, or a `by` column or status is missing.

    Examples:
        >>> rows = pd.DataFrame({"system": "linear", "controller": ["I", "PI34", "H211b"],
        ...                      "rtol": 1e-6, "status": "ok",
        ...                      "y_final_0": [0.3678, 0.3681, 0.3679]})
        >>> spread(rows).spread
           system      rtol  spread  n  center
        0  linear  0.000001  0.0003  3  0.3679
    """
    require_columns(rows, ["status", *by], "spread's rows")
    ok = rows[rows["status"] == "ok"]
    cols = [output] if output else [c for c in rows.columns if c.startswith("y_final_")]
    if not cols or not set(cols) <= set(rows.columns):
        raise InvalidArgument(f"output={output!r} is not a column of the rows")
    g = ok.groupby(list(by), sort=False)[cols]
    out = (g.max() - g.min()).max(axis=1).rename("spread").to_frame()
    out["n"] = g.size()
    out["center"] = g.median()[cols[0]]
    return Spread(rows=rows, spread=out.reset_index())


def work_precision(
    systems, pairs, rtol, *, atol=None, repeats=3, log_steps=0, **sweep_kw
) -> WorkPrecision:
    """Error, nfev and wall time over a tolerance sweep for (solver, controller) pairs.

    Each (system, solver, controller) group is compiled once and run `repeats` times one solve
    at a time (chunk_size=1, so a row's time is its own); `wall_s` is the best of the repeats.
    Only the first run uses an active chunk store (`analysis.chunk_store.recording`); the repeats
    always solve, so their times are real. rtol and atol are paired as in `sweep`.
    `log_steps` > 0 adds the `analysis.step_log.STEP_METRICS` columns (see `sweep`). The
    tolerance proportionality of every (system, solver, controller) line is fitted once, here.

    Args:
        systems: a System or catalog name, or a list of them.
        pairs: (solver, controller preset name) pairs.
        rtol: relative tolerances.
        atol: absolute tolerances (None: atol = rtol).
        repeats: runs per group; wall_s is the best.
        log_steps: attempted steps to log per solve (0: none).
        **sweep_kw: other `sweep` arguments (e.g. dt0, max_steps, controller_options).

    Returns:
        A `WorkPrecision`: the sweep rows of every pair, one per (system, tolerance), with the
        best wall_s, and their `proportionality`.

    Examples:
        >>> wp = work_precision("linear", [("Tsit5", "PI34")], rtol=[1e-4, 1e-8], repeats=1)
        >>> wp.rows[["solver", "controller", "rtol", "status"]]
          solver controller          rtol status
        0  Tsit5       PI34  1.000000e-04     ok
        1  Tsit5       PI34  1.000000e-08     ok
        >>> rows = wp.rows
        >>> bool(rows["error"].is_monotonic_decreasing and rows["nfev"].is_monotonic_increasing)
        True
    """
    if int(repeats) != repeats or repeats < 1:
        raise InvalidArgument(f"repeats={repeats!r} is invalid; it must be an integer ≥ 1")
    one = isinstance(systems, (str, _systems.System))
    systems = [_systems.get(s) for s in ([systems] if one else systems)]  # one group per object
    rtols = np.atleast_1d(np.asarray(rtol, float))
    atols = rtols if atol is None else np.broadcast_to(np.asarray(atol, float), rtols.shape)
    # The first solve of every sweep call runs slower (dispatch warm-up, ~2x for sub-ms solves).
    # Sweeps run the loosest rtol first, ties in input order: a copy of it leads and is dropped.
    i = [int(np.argmax(rtols))]
    kw = dict(rtol=np.r_[rtols[i], rtols], atol=np.r_[atols[i], atols], chunk_size=1)
    frames = []
    for solver, controller in pairs:
        kw.update(controller=controller, log_steps=log_steps)
        runs = [sweep(systems, solver, **kw, **sweep_kw)]
        with _chunk_store.recording(None):  # repeats are timed, never loaded from a chunk store
            runs += [sweep(systems, solver, **kw, **sweep_kw) for _ in range(int(repeats) - 1)]
        compilations = sum(r.attrs["compilations"] for r in runs)
        runs = [r[r.index % (len(rtols) + 1) != 0] for r in runs]  # drop each system's warm-up
        best = runs[0].reset_index(drop=True)
        best["wall_s"] = np.min(np.stack([r["wall_s"].to_numpy() for r in runs]), axis=0)
        best.attrs["compilations"] = compilations
        frames.append(best)
    out = pd.concat(frames, ignore_index=True)
    out.attrs["compilations"] = sum(f.attrs["compilations"] for f in frames)
    return WorkPrecision(rows=out, proportionality=proportionality(out))


def output_vs_tolerance(
    rows: pd.DataFrame, reference: float, *, output: str = "y_final_0", by: str = "system"
) -> OutputVsTolerance:
    """An output of sweep rows minus `reference`, and its jumps between neighbouring rtol.

    With the rows of each `by` group sorted by rtol, r_1 < r_2 < ... and outputs y_i, the jumps
    are |y_{i+1} - y_i|; the largest one is where the accepted step sequence changes most. For
    an h-free field y(T) moves smoothly with rtol (jumps of the order of the tolerance); for a
    field with h as input a change of the step sequence changes the model, so the jump does not
    shrink like the tolerance (jump_over_rtol ≫ 1).

    Args:
        rows: sweep rows with columns rtol, status, `output` and `by`.
        reference: the value the output is compared with (e.g. the limit's exact y(T)).
        output: the output column.
        by: the column whose groups are measured separately (a panel each when drawn).

    Returns:
        An `OutputVsTolerance`.

    Raises:
        InvalidArgument: a column is missing.

    Examples:
        >>> rows = pd.DataFrame({"system": "linear", "rtol": [1e-4, 1e-3, 1e-5],
        ...                      "status": "ok", "y_final_0": [2.0, 2.5, 2.1]})
        >>> output_vs_tolerance(rows, 2.0).jumps[["system", "largest_jump", "between_rtol_lo"]]
           system  largest_jump  between_rtol_lo
        0  linear           0.5           0.0001
    """
    require_columns(rows, ["rtol", "status", output, by], "output_vs_tolerance's rows")
    rows = rows.assign(offset=rows[output] - reference)
    jumps = []
    for group, g in rows.sort_values("rtol").groupby(by, sort=False):
        dy = np.abs(np.diff(g[output].to_numpy()))
        if not len(dy):
            raise InvalidArgument(
                f"rows has one rtol for {by}={group!r}; output_vs_tolerance needs two or more"
            )
        i = int(np.argmax(dy))
        r = g["rtol"].to_numpy()
        jumps.append(
            {
                by: group,
                "largest_jump": dy[i],
                "between_rtol_lo": r[i],
                "between_rtol_hi": r[i + 1],
                "jump_over_rtol": dy[i] / r[i + 1],
                "median_jump": float(np.median(dy)),
            }
        )
    return OutputVsTolerance(rows=rows, jumps=pd.DataFrame(jumps))
