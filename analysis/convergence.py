"""Convergence: error norms, references, and observed orders of accuracy — and convergence to what.

A method of order p has error e(h) ≈ C·h^p as h → 0, so log e = log C + p·log h: the observed order
is the least-squares slope of log error on log h over the *asymptotic range* (never assuming the
steps halve). At large h the error is not yet C·h^p (pre-asymptotic); at small h it stalls at
the round-off floor (or at the reference's own error). `fit_order` finds the range where the local
order p_i = log(e_{i+1}/e_i) / log(h_{i+1}/h_i) is constant and fits there, with a t-interval.

For a step-dependent field f(t, y, args, h) the question "converges to what?" has a choice of
answer, the `target`:

- ``"limit"`` (default): the flow of the h = 0 ODE, exact when the system has an exact solution,
  else a high-accuracy solve (`analysis.reference.REFERENCE_SETTINGS`: Dopri8 at rtol = atol =
  1e-13, Kvaerno5 at 1e-12 if stiff) whose error is estimated by a 100× looser solve (in
  float32, 100 eps ≈ 1.2e-5 and a 10× looser solve: `analysis.reference.settings`). If that solve
  fails, the rows keep their statuses with error NaN and error_source/target saying why;
- ``"richardson"``: the h → 0 limit extrapolated from the sweep itself,
  y* = y_1 + (y_1 - y_2)/((h_2/h_1)^p - 1) from the two finest runs (p = the solver's nominal
  order or `richardson_order`), with its error estimated by extrapolating the next pair;
- ``Setting(solver, h)``: another discrete solution, e.g. the discretization a model was trained
  at, to ask how far a run is from it.

Every measured error must be `REFERENCE_MARGIN` times larger than the target's own error estimate;
points that are not are excluded from the fit, and the fit says so.

Norms (each absolute, or relative: divided by the same norm of the target):

- ``"final"``: ‖y_N − y*(t1)‖_∞;
- ``"max"``: max_k ‖y(t_k) − y*(t_k)‖_∞ over save times t_k (default 10 evenly spaced; they fall
  on step ends when the step counts are multiples of 10);
- ``"l2"``: (1/(t1 − t0) ∫ ‖y(t) − y*(t)‖₂² dt)^{1/2} by the trapezoid rule on a dense grid, where
  y(t) is the solver's dense output (diffrax's interpolant, evaluated by SaveAt(ts) in the solve).

Examples:
    >>> from analysis import convergence
    >>> df = convergence.measure("linear", ["Euler", "Heun"], dt0=[1 / n for n in (10, 20, 40, 80)])
    >>> table = convergence.orders(df)
    >>> table[["solver", "order", "nominal_order"]].round(1).values.tolist()
    [['Euler', 1.0, 1], ['Heun', 2.0, 2]]
"""

from __future__ import annotations

import dataclasses
import warnings
import weakref

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.stats

from . import reference as _reference
from . import solvers as _solvers
from . import systems as _systems
from ._sweep import sweep
from .errors import InvalidArgument, PrecisionWarning, require_positive, warn_if_float32

__all__ = [
    "NORMS",
    "OrderFit",
    "Setting",
    "fit_order",
    "local_orders",
    "measure",
    "orders",
    "REFERENCE_MARGIN",
    "ROUNDOFF_FACTOR",
]

NORMS = ("final", "max", "l2")
#: A measured error counts only if it exceeds the target's own error estimate by this factor.
REFERENCE_MARGIN = 100.0
#: Errors below ROUNDOFF_FACTOR · eps · ‖target‖ (same norm; eps of the runs' dtype) are round-off.
ROUNDOFF_FACTOR = 100.0
#: Local orders that differ by at most this much count as one plateau (the asymptotic range).
ORDER_TOL = 0.2


# --------------------------------------------------------------------------------- order fits


def local_orders(h, err) -> np.ndarray:
    """Local orders log(e_{i+1}/e_i) / log(h_{i+1}/h_i) between consecutive points (any spacing).

    Examples:
        >>> local_orders([0.1, 0.2, 0.4], [1e-2, 4e-2, 16e-2]).round(6).tolist()
        [2.0, 2.0]
    """
    h, err = np.asarray(h, float), np.asarray(err, float)
    return np.diff(np.log(err)) / np.diff(np.log(h))


@dataclasses.dataclass(frozen=True)
class OrderFit:
    """An observed order: the slope of log error on log h over the asymptotic range.

    `h`, `err` are the valid points (status ok, finite, positive) sorted by h; `used` marks the
    fitted ones; `excluded` lists (h, reason) for every point left out, failed solves included;
    `local_orders` are between consecutive valid points. `status` is "ok", "too_few_points"
    (order NaN) or "no_asymptotic_range" (order fitted on all valid points, local orders vary by
    more than the tolerance everywhere).

    Examples:
        >>> h = np.array([0.4, 0.2, 0.1, 0.05, 0.025])
        >>> fit = fit_order(h, h**2 * (1 + 5 * h**2))       # order 2 with an h⁴ term
        >>> fit.status, round(fit.order, 2), fit.points_used
        ('ok', 2.08, 4)
        >>> fit.excluded_text()
        'h=0.4: pre-asymptotic (local order 2.58 vs 2.05)'
        >>> fit_order(h[:2], h[:2] ** 2).status              # a fit needs 3 points
        'too_few_points'
    """

    order: float
    ci_low: float
    ci_high: float
    stderr: float
    log_constant: float
    confidence: float
    h: np.ndarray
    err: np.ndarray
    used: np.ndarray
    excluded: tuple[tuple[float, str], ...]
    local_orders: np.ndarray
    n_failed: int
    status: str
    reason: str = ""

    @property
    def points_used(self) -> int:
        """How many (h, error) points the fit used."""
        return int(self.used.sum())

    def excluded_text(self) -> str:
        """The exclusions as one line, e.g. 'h=0.5: pre-asymptotic (local order 1.41 vs 2.00)'."""
        return "; ".join(f"h={h:.3g}: {why}" if np.isfinite(h) else why for h, why in self.excluded)


def _check_fit_args(h, err, status, floor, reference_error, confidence, min_points, order_tol):
    if h.ndim != 1 or h.shape != err.shape:
        raise InvalidArgument(
            f"h and err must be 1-D of equal length; got shapes {h.shape} and {err.shape}"
        )
    if status is not None and len(status) != len(h):
        raise InvalidArgument(f"status has {len(status)} entries but h has {len(h)}")
    if not 0 < confidence < 1:
        raise InvalidArgument(f"confidence={confidence!r} is invalid; it must be in (0, 1)")
    if int(min_points) != min_points or min_points < 3:
        raise InvalidArgument(
            f"min_points={min_points!r} is invalid; it must be an integer ≥ 3 (a confidence "
            "interval needs at least one residual degree of freedom)"
        )
    for name, v in (("floor", floor), ("reference_error", reference_error)):
        if not (np.isfinite(v) and v >= 0):
            raise InvalidArgument(f"{name}={v!r} is invalid; it must be finite and ≥ 0")
    require_positive("order_tol", order_tol)


def _asymptotic_window(lo: np.ndarray, min_points: int, tol: float) -> tuple[int, int] | None:
    """The asymptotic range [i, j] (point indices, by h) from the local orders `lo`.

    A candidate is a run of at least `min_points` consecutive points whose local orders differ by
    at most `tol` (max - min): a plateau of the local order. Runs that converge (median local
    order > tol) are preferred over flat ones (a round-off floor is a plateau at order ~0); among
    those the longest wins, and ties go to the run at smaller h. None if there is no candidate.
    """
    n = len(lo) + 1
    runs = [
        (i, j) for i in range(n) for j in range(i + min_points - 1, n) if np.ptp(lo[i:j]) <= tol
    ]
    converging = [r for r in runs if np.median(lo[r[0] : r[1]]) > tol]
    pool = converging or runs
    return max(pool, key=lambda r: (r[1] - r[0], -r[0])) if pool else None


def _regression(x, y, confidence):
    n = len(x)
    xm = x - x.mean()
    sxx = float(xm @ xm)
    slope = float(xm @ (y - y.mean()) / sxx)
    intercept = float(y.mean() - slope * x.mean())
    resid = y - intercept - slope * x
    stderr = float(np.sqrt(resid @ resid / (n - 2) / sxx))
    t = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 2))
    return slope, intercept, stderr, t * stderr


def fit_order(
    h,
    err,
    *,
    status=None,
    floor: float = 0.0,
    reference_error: float = 0.0,
    confidence: float = 0.95,
    min_points: int = 3,
    order_tol: float = ORDER_TOL,
) -> OrderFit:
    """Observed order of convergence from errors `err` at step sizes `h` (any sequence).

    1. Points whose `status` is not "ok", or whose h or error is not finite and positive, are
       excluded and counted (`n_failed` for failed solves).
    2. Errors at or below `floor` (round-off) or below REFERENCE_MARGIN × `reference_error`
       (the target's own error) are excluded.
    3. The asymptotic range is the longest run of consecutive points (by h) whose local orders
       differ by at most `order_tol` (preferring a converging plateau to a flat floor); points
       at larger h are "pre-asymptotic", points at smaller h lie past the asymptotic range
       (round-off or the target's error: the local order drops).
    4. The order is the least-squares slope of log err on log h there; the interval is
       slope ± t_{(1+confidence)/2, n-2} · stderr(slope).

    Fewer than `min_points` usable points give status "too_few_points" and NaN.

    Examples:
        >>> h = np.array([0.4, 0.2, 0.1, 0.05, 0.025, 0.0125])
        >>> fit = fit_order(h, 3 * h**2 + 1e-13)
        >>> round(fit.order, 3), fit.points_used
        (2.0, 6)
    """
    h = np.asarray(h, dtype=float)
    err = np.asarray(err, dtype=float)
    _check_fit_args(h, err, status, floor, reference_error, confidence, min_points, order_tol)
    status = None if status is None else np.asarray(status)
    ok = np.ones(len(h), bool) if status is None else status == "ok"
    excluded: list[tuple[float, str]] = []
    for k in np.flatnonzero(~ok):
        excluded.append((float(h[k]), f"failed ({status[k]})"))
    finite = ok & np.isfinite(h) & (h > 0) & np.isfinite(err) & (err > 0)
    for k in np.flatnonzero(ok & ~finite):
        what = "zero error" if err[k] == 0 else "error or h not finite and positive"
        excluded.append((float(h[k]), what))
    order = np.argsort(h[finite], kind="stable")
    hv, ev = h[finite][order], err[finite][order]
    lo_all = local_orders(hv, ev) if len(hv) > 1 else np.empty(0)
    used = np.ones(len(hv), bool)
    ref_floor = REFERENCE_MARGIN * reference_error
    for k in range(len(hv)):
        if ev[k] <= floor:
            used[k] = False
            excluded.append((hv[k], f"at or below the round-off floor {floor:.1e}"))
        elif ev[k] <= ref_floor:
            used[k] = False
            excluded.append(
                (hv[k], f"within {REFERENCE_MARGIN:g}× of the target's error {reference_error:.1e}")
            )
    n_failed = int((~ok).sum())

    def result(slope, ci, stderr, intercept, mask, fit_status, reason=""):
        return OrderFit(
            order=slope,
            ci_low=slope - ci,
            ci_high=slope + ci,
            stderr=stderr,
            log_constant=intercept,
            confidence=confidence,
            h=hv,
            err=ev,
            used=mask,
            excluded=tuple(sorted(excluded)),
            local_orders=lo_all,
            n_failed=n_failed,
            status=fit_status,
            reason=reason,
        )

    idx = np.flatnonzero(used)
    if len(idx) < min_points:
        reason = f"{len(idx)} usable point(s), need {min_points}"
        return result(np.nan, np.nan, np.nan, np.nan, used, "too_few_points", reason)
    x, y = np.log(hv[idx]), np.log(ev[idx])
    lo = local_orders(hv[idx], ev[idx])
    window = _asymptotic_window(lo, min_points, order_tol)
    if window is None:
        slope, intercept, stderr, ci = _regression(x, y, confidence)
        reason = (
            f"no {min_points} consecutive points have local orders within {order_tol} "
            f"(local orders {np.round(lo, 2).tolist()}); fitted all usable points"
        )
        return result(slope, ci, stderr, intercept, used, "no_asymptotic_range", reason)
    i, j = window
    p_ref = float(np.median(lo[i:j]))
    for k in range(len(idx)):
        if k < i:  # smaller h than the range: the error stopped following C·h^p
            what = "round-off or target floor" if lo[k] < p_ref else "past the asymptotic range"
            excluded.append((hv[idx[k]], f"{what} (local order {lo[k]:.2f} vs {p_ref:.2f})"))
        elif k > j:
            excluded.append(
                (hv[idx[k]], f"pre-asymptotic (local order {lo[k - 1]:.2f} vs {p_ref:.2f})")
            )
    mask = np.zeros(len(hv), bool)
    mask[idx[i : j + 1]] = True
    slope, intercept, stderr, ci = _regression(x[i : j + 1], y[i : j + 1], confidence)
    return result(slope, ci, stderr, intercept, mask, "ok")


# ------------------------------------------------------------------------------------ targets


@dataclasses.dataclass(frozen=True)
class Setting:
    """A discrete solution as convergence target: `solver` at the fixed step `h` on `system`
    (default: the system being measured).

    Example: ``Setting("Euler", 0.1)`` asks how far each run is from Euler at h = 0.1 — for a
    model trained at that discretization, how far it drifts from its training setting.

    Args:
        solver: the target's solver (name or object).
        h: its fixed step.
        system: the target's System or catalog name (default: the measured system).

    Examples:
        >>> target = Setting("Euler", 0.0125)
        >>> df = measure("linear", "Euler", dt0=[1 / n for n in (10, 20, 40, 80)], target=target)
        >>> df["target"].iloc[0], bool(df["error"].iloc[-1] < 1e-12)   # the run at h = 0.0125
        ('Euler at h=0.0125', True)
    """

    solver: str
    h: float
    system: object = None

    def label(self) -> str:
        """The setting in words, e.g. 'Euler at h=0.1'."""
        return f"{self.solver} at h={self.h:g}"


_LIMIT_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _limit_trajectory(system: _systems.System, ts: np.ndarray):
    """y of the h = 0 ODE at `ts` (last entry t1), its per-time error estimate, and its source."""
    cache = _LIMIT_CACHE.setdefault(system, {})
    key = tuple(ts.tolist())
    if key not in cache:
        if system.exact is not None:
            ys = np.asarray(jax.vmap(system.exact)(jnp.asarray(ts)))
            cache[key] = (ys, np.zeros(len(ts)), "exact")
        else:
            name, rtol, _, _ = _reference.settings(system)
            setting = f"{name}, rtol={rtol:.2g}{_reference._precision_suffix(system)}"
            fine, est, failed = _reference._estimated_solve(system, ts)
            if failed:  # no target: the rows keep their statuses, with error NaN and the reason
                nan = np.full((len(ts), *np.shape(system.y0)), np.nan)
                source = f"none (reference solve failed: {failed}; {setting})"
                cache[key] = (nan, np.full(len(ts), np.nan), source)
            else:
                cache[key] = (fine, est, f"reference ({setting})")
    return cache[key]


# -------------------------------------------------------------------------------------- norms


def _norm(e: np.ndarray, norm: str, ts: np.ndarray, idx: dict) -> np.ndarray:
    """Norm of errors e with shape (rows, times, state) on the union grid `ts`."""
    if norm == "final":
        return np.max(np.abs(e[:, idx["final"][0]]), axis=-1)
    if norm == "max":
        return np.max(np.abs(e[:, idx["max"]]), axis=(1, 2))
    t = ts[idx["l2"]]
    sq = np.sum(e[:, idx["l2"]] ** 2, axis=-1)
    return np.sqrt(np.trapezoid(sq, t, axis=1) / (t[-1] - t[0]))


def _check_norms(norms) -> tuple[str, ...]:
    norms = (norms,) if isinstance(norms, str) else tuple(norms)
    bad = [n for n in norms if n not in NORMS]
    if bad or not norms:
        raise InvalidArgument(f"norms={norms!r} is invalid; choose from {NORMS}")
    return norms


def _grid(system, norms, save_ts, n_dense):
    """The union of save times needed by the norms (t1 last) and each norm's indices in it."""
    t0, t1 = float(system.t0), float(system.t1)
    parts = {"final": np.array([t1])}
    if "max" in norms:
        parts["max"] = (
            t0 + (t1 - t0) * np.arange(1, 11) / 10
            if save_ts is None
            else np.asarray(save_ts, dtype=float)
        )
    if "l2" in norms:
        if int(n_dense) != n_dense or n_dense < 2:
            raise InvalidArgument(f"n_dense={n_dense!r} is invalid; it must be an integer ≥ 2")
        parts["l2"] = np.linspace(t0, t1, int(n_dense))
    ts = np.unique(np.concatenate(list(parts.values())))
    ts = ts if t1 >= t0 else ts[::-1]  # ordered from t0 to t1, so t1 is last
    pos = {t: i for i, t in enumerate(ts.tolist())}
    idx = {k: np.array([pos[t] for t in v.tolist()]) for k, v in parts.items()}
    return ts, idx


def _richardson(ys: np.ndarray, h: np.ndarray, p: float):
    """Extrapolated limit from the two finest runs and an error estimate from the next pair."""
    order = np.argsort(h)
    y1, y2, y3 = (ys[order[k]] for k in range(3))
    h1, h2, h3 = h[order[:3]]
    best = y1 + (y1 - y2) / ((h2 / h1) ** p - 1)
    next_ = y2 + (y2 - y3) / ((h3 / h2) ** p - 1)
    return best, np.abs(best - next_), order[:2]


def measure(
    system,
    solvers,
    *,
    dt0,
    norms=("final",),
    relative: bool = False,
    target="limit",
    save_ts=None,
    n_dense: int = 201,
    richardson_order: float | None = None,
) -> pd.DataFrame:
    """Fixed-step solves of `system` with each solver at steps `dt0`, and their errors.

    Args:
        system: a System or catalog name.
        solvers: solver name(s) or object(s).
        dt0: step sizes (each snapped to (t1 - t0)/N as in `analysis.sweep`).
        norms: any of NORMS ("final", "max", "l2").
        relative: divide each error by the same norm of the target.
        target: "limit", "richardson" or a `Setting` (see the module docstring).
        save_ts: save times of the "max" norm (default: 10 evenly spaced in (t0, t1]).
        n_dense: grid points of the "l2" norm.
        richardson_order: order used by the "richardson" target (default: the solver's nominal).

    Returns:
        The sweep's rows (without trajectories), one per (solve, norm), with `error` replaced by
        that norm and new columns target, norm, relative, reference_error (the target's own
        error estimate in that norm), roundoff_floor, reference_point (True for the runs a
        Richardson target was built from).

    Examples:
        >>> df = measure("linear", ["Euler", "Heun"], dt0=[1 / n for n in (10, 20, 40, 80)])
        >>> len(df), df["target"].iloc[0]                  # y' = -y has an exact solution
        (8, 'limit: exact')
        >>> e = df[df["solver"] == "Heun"]["error"].to_numpy()
        >>> (e[:-1] / e[1:]).round(1).tolist()             # halving h quarters Heun's error
        [4.2, 4.1, 4.0]
    """
    warn_if_float32("a convergence measurement")
    with warnings.catch_warnings():  # one warning per measurement, not one per nested step
        warnings.simplefilter("ignore", PrecisionWarning)
        return _measure(
            system, solvers, dt0, norms, relative, target, save_ts, n_dense, richardson_order
        )


def _measure(system, solvers, dt0, norms, relative, target, save_ts, n_dense, richardson_order):
    system = _systems.get(system)
    norms = _check_norms(norms)
    if not (target in ("limit", "richardson") or isinstance(target, Setting)):
        raise InvalidArgument(
            f"target={target!r} is invalid; use 'limit', 'richardson' or a convergence.Setting"
        )
    if richardson_order is not None and not richardson_order > 0:
        raise InvalidArgument(f"richardson_order={richardson_order!r} must be > 0")
    ts, idx = _grid(system, norms, save_ts, n_dense)
    rows = sweep(system, solvers, dt0=dt0, save_ts=ts)
    if target == "richardson" and rows.groupby("solver").size().min() < 3:
        raise InvalidArgument("target='richardson' needs at least 3 step sizes per solver")
    label, ref_ys, ref_err = _target(system, target, ts)
    frames = []
    for solver, g in rows.groupby("solver", sort=False):
        ok = (g["status"] == "ok").to_numpy()
        ys = np.stack([np.asarray(y).reshape(len(ts), -1) for y in g["ys"]])
        is_ref = np.zeros(len(g), bool)
        if target == "richardson":
            p = richardson_order or _solvers.info(solver).order
            if ok.sum() < 3:
                ref_ys, ref_err = np.full(ys.shape[1:], np.nan), np.full(ys.shape[1:], np.nan)
            else:
                ref_ys, ref_err, used = _richardson(ys[ok], g["h"].to_numpy()[ok], p)
                is_ref[np.flatnonzero(ok)[used]] = True
        ref = np.asarray(ref_ys).reshape(len(ts), -1)
        ref_e = np.broadcast_to(np.asarray(ref_err).reshape(len(ts), -1), ref.shape)
        for norm in norms:
            err = _norm(ys - ref[None], norm, ts, idx)
            ref_error = float(_norm(ref_e[None], norm, ts, idx)[0])
            size = float(_norm(ref[None], norm, ts, idx)[0])
            denom = size if relative else 1.0
            out = g.drop(columns="ys").copy()
            out["error"] = np.where(ok, err / denom, np.nan)
            out["error_source"] = label
            out["target"] = label
            out["norm"] = norm
            out["relative"] = relative
            out["reference_error"] = ref_error / denom
            eps = np.finfo(ys.dtype if np.issubdtype(ys.dtype, np.inexact) else float).eps
            out["roundoff_floor"] = ROUNDOFF_FACTOR * eps * size / denom
            out["reference_point"] = is_ref
            frames.append(out)
    return pd.concat(frames, ignore_index=True)


def _target(system, target, ts):
    """(label, trajectory on ts, its error estimate) of a target."""
    if target == "richardson":
        return "richardson", None, None
    if isinstance(target, Setting):
        other = _systems.get(target.system) if target.system is not None else system
        if (other.t0, other.t1) != (system.t0, system.t1):
            raise InvalidArgument(
                f"target system {other.name!r} spans [{other.t0}, {other.t1}], but the measured "
                f"system spans [{system.t0}, {system.t1}]; they must agree"
            )
        row = sweep(other, target.solver, dt0=[target.h], save_ts=ts).iloc[0]
        if row["status"] != "ok":
            raise RuntimeError(f"the target solve {target.label()} failed ({row['status']})")
        return target.label(), np.asarray(row["ys"]), np.zeros(len(ts))
    ys, est, source = _limit_trajectory(system, ts)
    return f"limit: {source}", ys, est


# ------------------------------------------------------------------------------------- tables


def orders(df: pd.DataFrame, *, confidence: float = 0.95, **fit_options) -> pd.DataFrame:
    """Fit an order per (system, solver, target, norm, relative) group of `measure` rows.

    Returns one row per group: system, solver, target, norm, relative, order, ci_low, ci_high,
    nominal_order, points_used, excluded (text: each left-out h and why), n_failed, status,
    reason, h_min, h_max (of the fitted range), local_orders (text, between consecutive valid
    points from the smallest h up), reference_error (the target's own error).
    `fit_options` go to `fit_order` (min_points, order_tol).

    Args:
        df: rows from `measure`.
        confidence: the level of the confidence interval [ci_low, ci_high].
        **fit_options: min_points, order_tol (see `fit_order`).

    Returns:
        A DataFrame, one row per group, columns as above.

    Examples:
        >>> df = measure("linear", ["Euler", "Heun"], dt0=[1 / n for n in (10, 20, 40, 80)])
        >>> table = orders(df)
        >>> columns = ["solver", "order", "nominal_order", "points_used", "status"]
        >>> table[columns].round(1).values.tolist()         # Heun's observed order ≈ 2
        [['Euler', 1.0, 1, 4, 'ok'], ['Heun', 2.0, 2, 4, 'ok']]
    """
    keys = ["system", "solver", "target", "norm", "relative"]
    out = []
    for key, g in df.groupby(keys, sort=False):
        refs = g["reference_point"].to_numpy(bool)
        floor, ref_error = float(g["roundoff_floor"].iloc[0]), float(g["reference_error"].iloc[0])
        no_target = np.isnan(ref_error)  # e.g. a failed reference solve: every error is NaN
        fit = fit_order(
            g["h"].to_numpy()[~refs],
            g["error"].to_numpy()[~refs],
            status=g["status"].to_numpy()[~refs],
            floor=0.0 if np.isnan(floor) else floor,
            reference_error=0.0 if no_target else ref_error,
            confidence=confidence,
            **fit_options,
        )
        if no_target:
            fit = dataclasses.replace(fit, reason=f"{fit.reason}; no errors: {key[2]}")
        excluded = fit.excluded_text()
        if refs.any():
            hs = ", ".join(f"{h:.3g}" for h in g["h"][refs])
            excluded = "; ".join(filter(None, [f"h={hs}: build the Richardson target", excluded]))
        used_h = fit.h[fit.used]
        out.append(
            dict(
                zip(keys, key, strict=True),
                order=fit.order,
                ci_low=fit.ci_low,
                ci_high=fit.ci_high,
                nominal_order=_solvers.info(key[1]).order,
                points_used=fit.points_used,
                excluded=excluded,
                n_failed=fit.n_failed,
                status=fit.status,
                reason=fit.reason,
                h_min=float(used_h.min()) if len(used_h) else np.nan,
                h_max=float(used_h.max()) if len(used_h) else np.nan,
                local_orders=" ".join(f"{x:.2f}" for x in fit.local_orders),
                reference_error=float(g["reference_error"].iloc[0]),
            )
        )
    return pd.DataFrame(out)
