"""What a trained neural field learned: a vector field, or the discretization it was trained with?

Any equinox module called as ``model(t, y, h)`` can be measured (the built-in kinds of
`analysis.models` are not special here); `analysis.training` fits one through a discretization.
The test from Ott et al., "ResNet After All? Neural ODEs and Their Numerical Solution"
(ICLR 2021): evaluate the trained model on held-out trajectories under other solvers and steps
(`discretization_matrix`). A model that behaves like an ODE keeps its error as h shrinks or the
solver improves; one whose error jumps has learned the discretization. `step_adaptation` runs
their check (halve h until a cheap and an accurate solver agree); `step_sensitivity` gives
d(loss)/dh; `predictions` returns the states themselves. `as_system` turns a model into a
catalog `System`, so `analysis.sweep` (convergence towards its own h → 0 limit) and
`analysis.stability.one_step_map` apply to it unchanged.

Errors compare the model's states with the true ones at the save times after t0:
error = √(mean of squared differences over trajectories, save times and components). Each
analysis returns a typed `analysis.result.Result`; its plot in `analysis.plotting` draws it.
The solves are compiled by `eqx.filter_jit` with the model as an argument: once per model
structure, not per trained model.

Examples:
    >>> from analysis import models, neural, systems, training
    >>> spiral = systems.get("linear10", dim=2, seed=0)        # damped spiral
    >>> test = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
    >>> euler = training.Discretization("Euler", h=0.5)
    >>> tests = [training.Discretization(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
    >>> matrix = neural.discretization_matrix(models.make("h_input", spiral), euler, tests, test)
    >>> matrix.rows[["test_setting", "status", "num_steps"]]  # num_steps = horizon / h
      test_setting status  num_steps
    0  Euler h=0.5     ok        4.0
    1 Euler h=0.25     ok        8.0
    2  Tsit5 h=0.5     ok        4.0
    3 Tsit5 h=0.25     ok        8.0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from . import systems as _systems
from .batch import status_of
from .errors import InvalidArgument, require_positive
from .models import HFreeMLP, fingerprint, kind_of, require_model
from .result import Result
from .training import ADAPTIVE_MAX_STEPS, Discretization, Trajectories, solve, steps_to, true_states

__all__ = [
    "as_system",
    "predict",
    "DiscretizationMatrix",
    "discretization_matrix",
    "Predictions",
    "predictions",
    "StepSensitivity",
    "step_sensitivity",
    "StepAdaptation",
    "step_adaptation",
]


class _ModelField(eqx.Module):
    """f(t, y, args, h) = model(t, y, h): the model's weights are leaves of the System, so
    trained models of one structure share compiled solves."""

    model: eqx.Module

    def __call__(self, t, y, args, h):
        return self.model(t, y, h)


def as_system(model, like) -> _systems.System:
    """The model as a catalog `System` with the initial value and time span of `like`.

    Its name carries the parameters' `analysis.models.fingerprint`, so result caches keyed on
    the system name tell trained models apart. Its limit (h = 0) is what `analysis.sweep`
    measures convergence towards, and
    `analysis.stability.one_step_map(as_system(model, like), "Euler", h)` is the trained map.
    The field counts as step-dependent unless the model is an `analysis.models.HFreeMLP`.

    Args:
        model: any equinox module called as ``model(t, y, h)`` (trained or not).
        like: the `System` (or catalog name) whose y0, t0, t1 the new system takes.

    Returns:
        A `System` whose field is ``model(t, y, h)`` (args None, no exact solution).

    Examples:
        >>> from analysis import models, stability
        >>> model = models.make("h_free", "linear10", seed=0)
        >>> system = as_system(model, "linear10")
        >>> system.name, system.h_dependent
        ('neural(h_free, linear10, params=...)', False)
        >>> step = stability.one_step_map(system, "Euler", 0.5)  # y -> y + h·f(y)
        >>> bool(jnp.allclose(step(system.y0), system.y0 + 0.5 * model(0.0, system.y0, 0.5)))
        True
    """
    like = _systems.get(like)
    return like.with_(
        name=f"neural({kind_of(model)}, {like.name}, params={fingerprint(model)})",
        vector_field=_ModelField(model),
        args=None,
        exact=None,
        equilibria=None,
        invariants={},
        h_dependent=not isinstance(model, HFreeMLP),
    )


@eqx.filter_jit
def _run(model, solver: str, control: str, max_steps: int, steps, y0s, ts):
    """Every (step, initial value) pair: ys (S, N, K, d), codes (S, N), num_steps (S, N).

    Compiled once per (model structure, solver, control, max_steps, array shapes): models of
    the same structure share it, whatever their trained values. Nothing here is
    differentiated, so the solves take their forward-mode loops (`solve`'s ``forward``).
    """

    def one(step, y0):
        return solve(model, solver, control, step, y0, ts, max_steps, forward=True)

    return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(steps, y0s)


def predict(model, setting: Discretization, y0s, ts) -> np.ndarray:
    """The model's states at `ts` from each initial value in `y0s` (shape (N, len(ts), d)).

    Fixed steps must divide the spacing of `ts` (InvalidArgument otherwise).

    Args:
        model: any equinox module called as ``model(t, y, h)``.
        setting: the `analysis.training.Discretization` to solve it with.
        y0s: initial states, shape (N, d).
        ts: save times, ts[0] the start.

    Returns:
        The states, shape (N, len(ts), d).

    Examples:
        >>> from analysis import models, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = training.trajectories(spiral, 4, horizon=2.0, saves=5)
        >>> model = models.make("h_free", spiral)
        >>> ys = predict(model, training.Discretization("Euler", h=0.5), data.y0, data.ts)
        >>> one_step = data.y0 + 0.5 * jax.vmap(lambda y: model(0.0, y, 0.5))(data.y0)
        >>> ys.shape, bool(np.allclose(ys[:, 1], one_step))  # Euler: y1 = y0 + h·f(y0)
        ((4, 5, 2), True)
    """
    require_model(model)
    max_steps = steps_to(setting, np.asarray(ts))
    steps = jnp.asarray([setting.step], dtype=float)
    ys, _, _ = _run(model, setting.solver, setting.control, max_steps, steps, y0s, ts)
    return np.asarray(ys[0])


def _grouped(settings: Sequence[Discretization], name: str):
    groups: dict[tuple[str, str], list[int]] = {}
    for i, s in enumerate(settings):
        if not isinstance(s, Discretization):
            raise InvalidArgument(f"{name}[{i}]={s!r} is not a training.Discretization")
        groups.setdefault((s.solver, s.control), []).append(i)
    return groups


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _evaluate(model, settings: Sequence[Discretization], data: Trajectories, name="settings"):
    """Per setting: (status, error, mean steps, states (N, K, d)).

    One `_run` per (solver, control) group, vmapped over the group's steps or tolerances.
    """
    require_model(model)
    if len(settings) == 0:
        raise InvalidArgument(f"{name} is empty; give at least one training.Discretization")
    truth = np.asarray(data.ys)
    out: dict[int, tuple] = {}
    for (solver, control), index in _grouped(settings, name).items():
        members = [settings[i] for i in index]
        # Step budgets and grid lengths rounded up to powers of two: grids of similar size (a
        # matrix, a step check, predictions) then share one compiled function.
        max_steps = _pow2(max(steps_to(s, data.ts) for s in members))
        padded = [s.step for s in members] + [members[0].step] * (
            _pow2(len(members)) - len(members)
        )
        steps = jnp.asarray(padded, dtype=float)
        ys, codes, nsteps = (
            np.asarray(x) for x in _run(model, solver, control, max_steps, steps, data.y0, data.ts)
        )
        for j, i in enumerate(index):
            statuses = [status_of(c, y) for c, y in zip(codes[j], ys[j], strict=True)]
            bad = [s for s in statuses if s != "ok"]
            err = math.sqrt(np.mean((ys[j][:, 1:] - truth[:, 1:]) ** 2)) if not bad else np.nan
            out[i] = (bad[0] if bad else "ok", err, float(np.mean(nsteps[j])), ys[j])
    return [out[i] for i in range(len(settings))]


def _train_columns(train_setting) -> dict:
    if train_setting is None:
        return {"train_setting": "", "train_h": np.nan}
    if not isinstance(train_setting, Discretization):
        raise InvalidArgument(f"train_setting={train_setting!r} is not a training.Discretization")
    h = np.nan if train_setting.h is None else train_setting.h
    return {"train_setting": train_setting.label, "train_h": h}


@dataclasses.dataclass(frozen=True, repr=False)
class DiscretizationMatrix(Result):
    """The model's held-out error under each test setting (`discretization_matrix`).

    Attributes:
        rows: one row per test setting: model (its kind), train_setting (label),
            test_setting (label), test_solver, control ("fixed"/"adaptive"), test_h (NaN if
            adaptive), test_rtol (NaN if fixed), status ("ok" or the first failure among the
            trajectories), error (RMS; NaN unless ok), num_steps (mean per trajectory).

    Examples:
        >>> import pandas as pd
        >>> DiscretizationMatrix(rows=pd.DataFrame({"error": [0.1, 0.2]}))
        DiscretizationMatrix(rows: 2 rows × 1 columns)
    """

    rows: pd.DataFrame


def discretization_matrix(
    model,
    train_setting: Discretization,
    test_settings: Sequence[Discretization],
    data: Trajectories,
) -> DiscretizationMatrix:
    """The model's error on held-out trajectories `data` under every test setting.

    error = √(mean over trajectories, save times after t0 and components of (y_model - y)²).
    Each (solver, control) group is one vmapped solve over its steps or tolerances, compiled
    once per model structure. Fixed steps must divide the save spacing of `data`.

    Args:
        model: the (trained) model, any equinox module called as ``model(t, y, h)``.
        train_setting: the `analysis.training.Discretization` it was trained with (recorded).
        test_settings: the discretizations to evaluate it under.
        data: held-out `analysis.training.Trajectories`.

    Returns:
        A `DiscretizationMatrix`.

    Examples:
        >>> from analysis import models, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> D = training.Discretization
        >>> tests = [D(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
        >>> result = discretization_matrix(models.make("h_input", spiral), tests[0], tests, test)
        >>> result.rows[["test_setting", "control", "test_h", "status", "num_steps"]]
          test_setting control  test_h status  num_steps
        0  Euler h=0.5   fixed    0.50     ok        4.0
        1 Euler h=0.25   fixed    0.25     ok        8.0
        2  Tsit5 h=0.5   fixed    0.50     ok        4.0
        3 Tsit5 h=0.25   fixed    0.25     ok        8.0
    """
    if not isinstance(train_setting, Discretization):
        raise InvalidArgument(f"train_setting={train_setting!r} is not a training.Discretization")
    results = _evaluate(model, test_settings, data, "test_settings")
    rows = pd.DataFrame(
        {
            "model": kind_of(model),
            "train_setting": train_setting.label,
            "test_setting": [s.label for s in test_settings],
            "test_solver": [s.solver for s in test_settings],
            "control": [s.control for s in test_settings],
            "test_h": [np.nan if s.h is None else s.h for s in test_settings],
            "test_rtol": [np.nan if s.rtol is None else s.rtol for s in test_settings],
            "status": [r[0] for r in results],
            "error": [r[1] for r in results],
            "num_steps": [r[2] for r in results],
        }
    )
    return DiscretizationMatrix(rows=rows)


@dataclasses.dataclass(frozen=True, repr=False)
class Predictions(Result):
    """The model's states under each setting, and the true states (`predictions`).

    Attributes:
        rows: long format, one row per (setting, trajectory, save time): model,
            train_setting ("" if not given), setting (label), solver, control, h, rtol,
            trajectory, t, y0, y1, ... (the state's components).
        truth: the true states of the same trajectories: trajectory, t, y0, y1, ...

    Examples:
        >>> import pandas as pd
        >>> Predictions(rows=pd.DataFrame({"t": [0.0]}), truth=pd.DataFrame({"t": [0.0]}))
        Predictions(rows: 1 rows × 1 columns, truth: 1 rows × 1 columns)
    """

    rows: pd.DataFrame
    truth: pd.DataFrame


def predictions(
    model,
    settings: Sequence[Discretization],
    data: Trajectories,
    *,
    which: Sequence[int] = (0,),
    train_setting: Discretization | None = None,
) -> Predictions:
    """The model's states at data.ts for trajectories `which` of `data`, under each setting.

    The solves are those of `discretization_matrix` (same groups, same compiled functions), so
    calling both with the same settings and data compiles nothing twice.

    Args:
        model: the (trained) model, any equinox module called as ``model(t, y, h)``.
        settings: the `analysis.training.Discretization`s to solve it under.
        data: the `analysis.training.Trajectories` whose initial values and save times are used.
        which: indices of the trajectories to return.
        train_setting: the discretization the model was trained with (recorded), if any.

    Returns:
        `Predictions` (rows and truth).

    Examples:
        >>> from analysis import models, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> test = training.trajectories(spiral, 4, horizon=2.0, saves=5, seed=1)
        >>> D = training.Discretization
        >>> settings = [D(s, h=h) for s in ("Euler", "Tsit5") for h in (0.5, 0.25)]
        >>> result = predictions(models.make("h_input", spiral), settings, test)
        >>> len(result.rows), list(result.truth.columns)  # 4 settings × 5 save times
        (20, ['trajectory', 't', 'y0', 'y1'])
    """
    train = _train_columns(train_setting)
    which = list(which)
    for i in which:
        if not isinstance(i, int | np.integer) or not 0 <= i < len(data.y0):
            raise InvalidArgument(f"which={which!r} is invalid; indices in 0..{len(data.y0) - 1}")
    results = _evaluate(model, settings, data)
    frames = []
    for s, r in zip(settings, results, strict=True):
        for i in which:
            states = r[3][i]
            frames.append(
                pd.DataFrame(
                    {
                        "model": kind_of(model),
                        "train_setting": train["train_setting"],
                        "setting": s.label,
                        "solver": s.solver,
                        "control": s.control,
                        "h": np.nan if s.h is None else s.h,
                        "rtol": np.nan if s.rtol is None else s.rtol,
                        "trajectory": i,
                        "t": data.ts,
                    }
                    | {f"y{c}": states[:, c] for c in range(states.shape[1])}
                )
            )
    truth = pd.concat(
        [
            pd.DataFrame(
                {"trajectory": i, "t": data.ts}
                | {f"y{c}": data.ys[i][:, c] for c in range(data.ys.shape[2])}
            )
            for i in which
        ],
        ignore_index=True,
    )
    return Predictions(rows=pd.concat(frames, ignore_index=True), truth=truth)


# ---------------------------------------------------------------------------- sensitivity


def _scaled_times(t0, h, m, count):
    return t0 + h * m * jnp.arange(count + 1)


def _scaled_truth(data: Trajectories, h_arr, m_arr):
    """y at the save times m·k·h of every h (shape (H, N, K, d)), by the reference solver.

    One batch per h, shaped like `trajectories`' own, so they share one compiled solver.
    """
    count, n = len(data.ts) - 1, len(data.y0)
    out = []
    for h, m in zip(np.asarray(h_arr), np.asarray(m_arr), strict=True):
        grid = jnp.broadcast_to(_scaled_times(data.ts[0], h, m, count), (n, count + 1))
        out.append(true_states(data.system, jnp.asarray(data.y0), grid)[:, 1:])
    return jnp.stack(out)


@eqx.filter_jit
def _scaled_loss(model, data, solver: str, max_steps: int, wrt, h_arr, m_arr, shifts, truth):
    """The loss after m·k steps of size h against y(m·k·h), for each (h, m), the field seeing
    h + shift; with its derivative (forward mode) with respect to h (wrt="h") or to the shift
    (wrt="h_input"), or without (wrt=None). Compiled once per (model structure, data, solver,
    max_steps, wrt, shapes)."""
    system, y0s = data.system, jnp.asarray(data.y0)
    field = jax.vmap(lambda t, y: system.limit_field(t, y, system.args))

    def loss_at(h, m, shift, true):
        t = _scaled_times(data.ts[0], h, m, true.shape[1])

        def shifted(t, y, hh):
            return model(t, y, hh + shift)

        ys = jax.vmap(
            lambda y0: solve(shifted, solver, "fixed", h, y0, t, max_steps, forward=True)[0]
        )(y0s)
        # y(t(h)) to first order around the computed truth: the exact value and exact d/dh.
        moved = t[1:] - jax.lax.stop_gradient(t[1:])
        true_h = true + jax.vmap(lambda y: field(t[1:], y))(true) * moved[None, :, None]
        return jnp.mean((ys[:, 1:] - true_h) ** 2)

    def tangent(h, m, shift, true):
        if wrt == "h":
            return jax.jvp(lambda x: loss_at(x, m, shift, true), (h,), (1.0,))
        return jax.jvp(lambda x: loss_at(h, m, x, true), (shift,), (1.0,))

    if wrt is None:
        return jax.vmap(loss_at)(h_arr, m_arr, shifts, truth), None
    return jax.vmap(tangent)(h_arr, m_arr, shifts, truth)


@dataclasses.dataclass(frozen=True, repr=False)
class StepSensitivity(Result):
    """d(loss)/dh at fixed steps and d(loss)/d(log rtol) under adaptive control
    (`step_sensitivity`).

    Attributes:
        rows: one row per step or tolerance: model, train_setting ("" if not given), train_h
            (NaN if not given or adaptive training), solver, control, h, rtol, loss, dloss,
            wrt ("h", "h_input" or "log_rtol"), method ("autodiff" or "finite_difference").

    Examples:
        >>> import pandas as pd
        >>> StepSensitivity(rows=pd.DataFrame({"dloss": [0.0]}))
        StepSensitivity(rows: 1 rows × 1 columns)
    """

    rows: pd.DataFrame


def step_sensitivity(
    model,
    data: Trajectories,
    solver: str,
    *,
    hs: Sequence[float] = (),
    rtols: Sequence[float] = (),
    method: str = "autodiff",
    wrt: str = "h",
    relative_step: float = 1e-4,
    log_rtol_step: float = 0.1,
    train_setting: Discretization | None = None,
) -> StepSensitivity:
    """d(loss)/dh at fixed steps and d(loss)/d(log rtol) under adaptive control.

    Fixed steps h = Δ/m (Δ the save spacing of `data`, m an integer): the loss after m·k steps
    of size h is compared with the true y(m·k·h) for k = 1..K, so with m held fixed the loss is
    a smooth function of h whose value at h is the ordinary loss (h = T/n with n fixed).
    wrt="h": the total derivative, in which the horizon n·h grows with h too (the true
    solution's motion dy/dt = f enters exactly), so even an h-free model has dL/dh ≠ 0 when
    its error changes along the trajectory. wrt="h_input": only the h the field is fed moves
    (steps and save times stay): exactly 0 for an h-free model, the learned reliance on h.
    method="autodiff" differentiates through the fixed-step solve in forward mode (h a traced
    input); method="finite_difference" uses central differences ±relative_step·h (a check).

    Adaptive (rtols): diffrax stops gradients through the controller, so d(loss)/d(log rtol) is
    always a central difference, at rtol·exp(±log_rtol_step) (a tolerance change moves whole
    steps, so this step is not small).

    Args:
        model: the (trained) model, any equinox module called as ``model(t, y, h)``.
        data: `analysis.training.Trajectories` with equally spaced save times.
        solver: the solver name.
        hs: fixed step sizes, each (save spacing)/m for an integer m.
        rtols: tolerances of adaptive solves.
        method: "autodiff" or "finite_difference" (fixed steps).
        wrt: "h" or "h_input" (fixed steps), as above.
        relative_step: the finite-difference step in h, relative to h.
        log_rtol_step: the finite-difference step in log rtol.
        train_setting: the discretization the model was trained with (recorded), if any.

    Returns:
        A `StepSensitivity`.

    Examples:
        >>> from analysis import models, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = training.trajectories(spiral, 4, horizon=2.0, saves=5)
        >>> model = models.make("h_free", spiral)
        >>> result = step_sensitivity(model, data, "Euler", hs=[0.5], wrt="h_input")
        >>> result.rows[["model", "h", "dloss", "wrt"]]  # an h-free model does not read h: 0
            model    h  dloss      wrt
        0  h_free  0.5    0.0  h_input
    """
    require_model(model)
    train = _train_columns(train_setting)
    if method not in ("autodiff", "finite_difference"):
        raise InvalidArgument(
            f"method={method!r} is invalid; valid: 'autodiff', 'finite_difference'"
        )
    if wrt not in ("h", "h_input"):
        raise InvalidArgument(f"wrt={wrt!r} is invalid; valid: 'h', 'h_input'")
    if not hs and not rtols:
        raise InvalidArgument("give hs (fixed steps) or rtols (adaptive), or both")
    spacing = np.diff(data.ts)
    if not np.allclose(spacing, spacing[0], rtol=1e-12):
        raise InvalidArgument("step_sensitivity needs equally spaced save times in data.ts")
    rows = []
    if hs:
        ms = [steps_to(Discretization(solver, h=h), data.ts[:2]) for h in hs]
        h_arr, m_arr = jnp.asarray(hs, dtype=float), jnp.asarray(ms, dtype=float)
        zero = jnp.zeros_like(h_arr)
        max_steps = max(ms) * (len(data.ts) - 1)
        args = (model, data, solver, max_steps)
        if method == "autodiff":
            truth = _scaled_truth(data, h_arr, m_arr)
            values, slopes = _scaled_loss(*args, wrt, h_arr, m_arr, zero, truth)
        else:
            dh = relative_step * h_arr
            if wrt == "h":  # the steps and the save times move: new true values
                grid = jnp.concatenate([h_arr, h_arr + dh, h_arr - dh])
                shifts = jnp.zeros_like(grid)
            else:  # only the h the field sees moves
                grid = jnp.concatenate([h_arr, h_arr, h_arr])
                shifts = jnp.concatenate([zero, dh, -dh])
            mm = jnp.concatenate([m_arr, m_arr, m_arr])
            truth = _scaled_truth(data, grid, mm)
            both, _ = _scaled_loss(*args, None, grid, mm, shifts, truth)
            both = both.reshape(3, -1)
            values, slopes = both[0], (both[1] - both[2]) / (2 * dh)
        for h, v, d in zip(hs, np.asarray(values), np.asarray(slopes), strict=True):
            rows.append(("fixed", h, np.nan, v, d, wrt, method))
    if rtols:
        r = np.asarray(rtols, dtype=float)
        grid = jnp.asarray(
            np.concatenate([r, r * math.exp(log_rtol_step), r * math.exp(-log_rtol_step)])
        )
        ys, codes, _ = _run(model, solver, "adaptive", ADAPTIVE_MAX_STEPS, grid, data.y0, data.ts)
        ok = np.all(np.asarray(codes) == 0, axis=1) & np.all(np.isfinite(ys), axis=(1, 2, 3))
        mse = np.mean((np.asarray(ys)[:, :, 1:] - data.ys[None, :, 1:]) ** 2, axis=(1, 2, 3))
        values = np.where(ok, mse, np.nan).reshape(3, len(rtols))
        for rtol, v, up, down in zip(rtols, *values, strict=True):
            slope = (up - down) / (2 * log_rtol_step)
            rows.append(("adaptive", np.nan, rtol, v, slope, "log_rtol", "finite_difference"))
    df = pd.DataFrame(rows, columns=["control", "h", "rtol", "loss", "dloss", "wrt", "method"])
    df.insert(0, "solver", solver)
    df.insert(0, "train_h", train["train_h"])
    df.insert(0, "train_setting", train["train_setting"])
    df.insert(0, "model", kind_of(model))
    return StepSensitivity(rows=df)


# ------------------------------------------------------------------- Ott et al. step check


@dataclasses.dataclass(frozen=True, repr=False)
class StepAdaptation(Result):
    """Ott et al.'s step check (`step_adaptation`): the errors as h is halved, and where the
    two solvers first agree.

    Attributes:
        rows: one row per h: model, start (the starting discretization's label), solver,
            test_solver, h, error_solver, error_test, gap (relative), agrees.
        summary: one row: model, start, solver, test_solver, threshold, step (the largest h
            at which the two solvers agree; NaN if none).

    Examples:
        >>> import pandas as pd
        >>> result = StepAdaptation(rows=pd.DataFrame({"h": [0.5, 0.25]}),
        ...                         summary=pd.DataFrame({"step": [0.25]}))
        >>> result.step
        0.25
    """

    rows: pd.DataFrame
    summary: pd.DataFrame

    @property
    def step(self) -> float | None:
        """The first h where the solvers agree (of the first summary row), None if none."""
        step = float(self.summary["step"].iloc[0])
        return None if math.isnan(step) else step


def step_adaptation(
    model,
    data: Trajectories,
    *,
    solver: str,
    h: float,
    test_solver: str = "Tsit5",
    threshold: float = 0.1,
    max_halvings: int = 6,
) -> StepAdaptation:
    """The check of Ott et al. (ICLR 2021): from h, halve the step until the model's error with
    `solver` and with the more accurate `test_solver` (same h) agree within `threshold`
    (|e_solver - e_test| ≤ threshold·e_test). The step where they first agree is where the model
    stops depending on its discretization; `step` is None if it never does within
    `max_halvings`. The model is not retrained (their procedure then continues training at
    that step). Both solvers are evaluated in one vmapped compile each.

    Args:
        model: the (trained) model, any equinox module called as ``model(t, y, h)``.
        data: held-out `analysis.training.Trajectories`.
        solver: the solver under test (usually the training solver).
        h: the first step (usually the training step).
        test_solver: the more accurate solver.
        threshold: the relative gap below which the two agree.
        max_halvings: how often h is halved at most.

    Returns:
        A `StepAdaptation` (rows and summary).

    Examples:
        >>> from analysis import models, systems, training
        >>> spiral = systems.get("linear10", dim=2, seed=0)
        >>> data = training.trajectories(spiral, 4, horizon=2.0, saves=5)
        >>> model = models.make("h_input", spiral)
        >>> check = step_adaptation(model, data, solver="Euler", h=0.5, max_halvings=1)
        >>> check.rows["h"].tolist(), list(check.summary.columns)
        ([0.5, 0.25], ['model', 'start', 'solver', 'test_solver', 'threshold', 'step'])
    """
    require_positive("threshold", threshold)
    if not isinstance(max_halvings, int) or max_halvings < 0:
        raise InvalidArgument(f"max_halvings={max_halvings!r} must be an integer >= 0")
    if test_solver == solver:
        raise InvalidArgument(
            f"test_solver={test_solver!r} is the solver under test; pick a more accurate one"
        )
    hs = [h / 2**k for k in range(max_halvings + 1)]
    settings = [Discretization(solver, h=x) for x in hs]
    settings += [Discretization(test_solver, h=x) for x in hs]
    results = _evaluate(model, settings, data)
    err = np.array([r[1] for r in results])
    e_solver, e_test = err[: len(hs)], err[len(hs) :]
    gap = np.abs(e_solver - e_test) / e_test
    agrees = gap <= threshold  # NaN (a failed solve) never agrees
    label = dict(
        model=kind_of(model), start=settings[0].label, solver=solver, test_solver=test_solver
    )
    rows = pd.DataFrame(
        label
        | {"h": hs, "error_solver": e_solver, "error_test": e_test, "gap": gap, "agrees": agrees}
    )
    passing = np.flatnonzero(agrees)
    step = float(hs[passing[0]]) if passing.size else np.nan
    summary = pd.DataFrame([label | {"threshold": threshold, "step": step}])
    return StepAdaptation(rows=rows, summary=summary)
