"""The logged steps of adaptive solves: every attempt, and metrics of the accepted sequence.

A `analysis.controller.StepLogger` records, inside the compiled solve, each attempted step n:
its start t0_n, size h_n, scaled error e_n (`analysis.controller.scaled_error`; the step is
acceptable iff e_n < 1) and whether it was accepted. From a log:

- `step_metrics`: rejection rate (rejected / attempted) and step-ratio roughness
  |log(h_{n+1}/h_n)| over consecutive accepted steps (`STEP_METRICS`, what a sweep with
  ``log_steps`` adds to its rows, read with `logged_steps`);
- `step_log(system, solver, controller, rtol)`: one adaptive solve per controller, solved through
  `analysis.prepare.prepare`, as a `StepLog` with the tables ``steps`` (one row per attempt) and
  ``solves`` (one row per solve); `analysis.plotting.step_histories` draws it.

Examples:
    >>> from analysis import step_log
    >>> log = step_log.step_log("lotka_volterra", "Tsit5", "PI34", rtol=1e-6)
    >>> solve = log.solves.iloc[0]
    >>> int(solve["attempts"]) == len(log.steps), int(solve["num_steps"]) == len(log.steps)
    (True, True)
"""

from __future__ import annotations

import dataclasses

import diffrax
import numpy as np
import pandas as pd

from . import controller as _controller
from . import solvers as _solvers
from .errors import InvalidArgument
from .prepare import prepare
from .result import Result

__all__ = ["StepLog", "step_log", "logged_steps", "step_metrics", "STEP_METRICS"]

#: The columns of `StepLog.steps`.
STEP_COLUMNS = ("system", "solver", "controller", "step", "t0", "h", "error", "accepted")


@dataclasses.dataclass(frozen=True, repr=False)
class StepLog(Result):
    """Every attempted step of one adaptive solve per controller.

    Attributes:
        steps: one row per logged attempt: system, solver, controller, step (the attempt's
            index), t0, h, error (the scaled error e_n) and accepted.
        solves: one row per solve: system, solver, controller, rtol, atol, attempts (all
            attempts, logged or not), num_steps (diffrax's count of attempts), logged (rows in
            `steps`; fewer than attempts when the buffer was too small) and successful.

    Examples:
        >>> log = step_log("linear", "Tsit5", ["I", "PI34"], rtol=1e-6)
        >>> log.solves[["controller", "successful"]].values.tolist()
        [['I', True], ['PI34', True]]
        >>> list(log.steps.columns) == list(STEP_COLUMNS)
        True
    """

    steps: pd.DataFrame
    solves: pd.DataFrame


def logged_steps(sol) -> dict:
    """A solve's StepLogger buffers as {"log_h", "log_accepted", "log_count"}; {} if not logged.

    The solve must use a `StepLogger` and `SaveAt(controller_state=True)`.

    Args:
        sol: a `diffrax.Solution`.

    Returns:
        A dict of the log's step sizes, accepted flags and attempt count (jax arrays).

    Examples:
        >>> p = prepare("linear", "Tsit5", controller="PI34", rtol=1e-6, log_steps=64)
        >>> sol = p.solve(saveat=diffrax.SaveAt(t1=True, controller_state=True))
        >>> log = logged_steps(sol)
        >>> sorted(log), int(log["log_count"]) == int(sol.stats["num_steps"])
        (['log_accepted', 'log_count', 'log_h'], True)
    """
    state = sol.controller_state
    if state is None:
        return {}
    return {f"log_{k}": state[1][k] for k in ("h", "accepted", "count")}


#: Columns `step_metrics` adds to a sweep row.
STEP_METRICS = (
    "attempts_logged",
    "rejection_rate",
    "roughness_mean",
    "roughness_max",
    "h_min",
    "h_max",
)


def step_metrics(h, accepted, count) -> dict[str, float]:
    """Rejection rate and step-ratio roughness of one logged solve.

    roughness = |log(h_{n+1}/h_n)| over consecutive *accepted* steps, the last accepted step
    excluded (diffrax shortens it to land on t1); the start-up ramp from dt0 is included, so
    roughness_max is often its first growth factor. NaN if fewer than three steps were accepted.
    `attempts_logged` < count means the buffer was too small and the metrics cover a prefix.

    Args:
        h: logged step sizes (a StepLogger buffer; entries past `count` are ignored).
        accepted: logged accepted flags.
        count: the number of attempts.

    Returns:
        A dict with the keys `STEP_METRICS`.

    Examples:
        >>> m = step_metrics([0.1, 0.2, 0.1, 0.4, 0.3], [True, False, True, True, True], 5)
        >>> m["rejection_rate"], round(m["roughness_max"], 6), m["h_max"]   # 1/5, log 4
        (0.2, 1.386294, 0.4)
    """
    n = min(int(count), len(h))
    h, accepted = np.asarray(h[:n]), np.asarray(accepted[:n], bool)
    steps = h[accepted & (h > 0)][:-1]  # h = 0: a step that underflowed, not a step size
    jumps = np.abs(np.diff(np.log(steps))) if len(steps) >= 2 else np.array([np.nan])
    return {
        "attempts_logged": n,
        "rejection_rate": float(np.mean(~accepted)) if n else np.nan,
        "roughness_mean": float(np.mean(jumps)),
        "roughness_max": float(np.max(jumps)),
        "h_min": float(steps.min()) if len(steps) else np.nan,
        "h_max": float(steps.max()) if len(steps) else np.nan,
    }


def step_log(
    system, solver, controller, rtol, atol=None, *, size=4096, max_steps=2**14, **opts
) -> StepLog:
    """Every attempted step of an adaptive solve of `system` by `solver`, for each controller.

    Each solve is `analysis.prepare.prepare(system, solver, controller=name, rtol=rtol,
    atol=atol, log_steps=size, **opts)` solved from the system's t0 to t1 with diffrax's
    initial step, so a step-dependent field is solved by `StepAware`, as in `analysis.sweep`.
    The controller's numbers are arrays (`analysis.controller.numbers_as_arrays`), so the
    presets share one compilation.
    For an accepted step e_n < 1 (diffrax's rule, the default of every preset).

    Args:
        system: a System or catalog name.
        solver: a diffrax solver or registry name (with an error estimate).
        controller: a preset name, or a sequence of them (one solve each).
        rtol: relative tolerance.
        atol: absolute tolerance (None: atol = rtol).
        size: the most attempts recorded per solve.
        max_steps: diffrax's step limit.
        **opts: controller options for `analysis.controller.make`.

    Returns:
        A `StepLog`.

    Raises:
        InvalidArgument: size is not an integer ≥ 1, or a controller is not a preset name.

    Examples:
        >>> log = step_log("lotka_volterra", "Tsit5", "PI34", rtol=1e-6)
        >>> list(log.steps.columns)
        ['system', 'solver', 'controller', 'step', 't0', 'h', 'error', 'accepted']
        >>> accepted = log.steps[log.steps["accepted"]]
        >>> bool((accepted["error"] < 1).all())   # a step is accepted iff its error is < 1
        True
    """
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise InvalidArgument(f"size={size!r} is invalid; it must be an integer ≥ 1")
    many = isinstance(controller, list | tuple)
    names = list(controller) if many else [controller]
    if not names or not all(isinstance(n, str) for n in names):
        raise InvalidArgument(
            f"controller={controller!r} is invalid; give a preset name or a sequence of them"
        )
    atol = rtol if atol is None else atol
    saveat = diffrax.SaveAt(t1=True, controller_state=True)
    steps, solves = [], []
    for name in names:
        # The preset's numbers as arrays: the presets share diffeqsolve's one compilation.
        ctrl = _controller.numbers_as_arrays(_controller.make(name, rtol, atol, **opts))
        p = prepare(system, solver, controller=ctrl, log_steps=int(size))
        sol = p.solve(saveat=saveat, max_steps=int(max_steps), throw=False)
        log = sol.controller_state[1]
        n = min(int(log["count"]), int(size))
        labels = {"system": p.system.name, "solver": _solvers.name_of(solver), "controller": name}
        frame = pd.DataFrame({k: np.asarray(log[k])[:n] for k in ("t0", "h", "error", "accepted")})
        frame.insert(0, "step", np.arange(n))
        steps.append(frame.assign(**labels)[list(STEP_COLUMNS)])
        solves.append(
            labels
            | {
                "rtol": float(rtol),
                "atol": float(atol),
                "attempts": int(log["count"]),
                "num_steps": int(sol.stats["num_steps"]),
                "logged": n,
                "successful": bool(sol.result == diffrax.RESULTS.successful),
            }
        )
    return StepLog(steps=pd.concat(steps, ignore_index=True), solves=pd.DataFrame(solves))
