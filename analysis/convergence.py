"""Convergence: error norms, references, and observed orders of accuracy — and convergence to what.

A method of order p has error e(h) ≈ C·h^p as h → 0 (never assuming the steps halve). At large
h the error is not yet C·h^p (pre-asymptotic); at small h it stalls at the round-off floor (or at
the reference's own error). `fit_order` reads the local orders
q_i = log(e_{i+1}/e_i) / log(h_{i+1}/h_i) from the smallest resolved step up, extrapolates them
to h → 0 and gives an interval that includes the higher-order terms (calibrated on generated
error curves: docs/concepts/convergence.md), and a status: "ok" only when the range reached is
asymptotic; "pre_asymptotic" (local orders still drifting), "uncertain", "not_converging",
"no_asymptotic_range" or "too_few_points" otherwise, each with its reason.

For a step-dependent field f(t, y, args, h) the question "converges to what?" has a choice of
answer, the `target` (`analysis.targets`): the h = 0 limit (``"limit"``, the default: exact or a
reference solve), the exact solution, a reference solve, Richardson extrapolation from the runs
themselves, or another discrete `Setting` (the model at the step it was trained at).

`measure` returns a `ConvergenceResult`: its rows (one per solve and norm, the error taken once
against the target) and its fits (`fit`: one `fit_order` per line, with the fitted range and
log_constant, so that `analysis.plotting.error_vs_step` draws them without fitting again).
`log_slope` is the plain least-squares slope of log error on log h, for where that is wanted.

Every measured error must be `REFERENCE_MARGIN` times larger than the target's own error estimate;
points that are not are excluded from the fit, and the fit says so.

Norms (each absolute, or relative: divided by the same norm of the target):

- ``"final"``: ‖y_N − y*(t1)‖_∞;
- ``"max"``: max_k ‖y(t_k) − y*(t_k)‖_∞ over save times t_k (default 10 evenly spaced; they fall
  on step ends when the step counts are multiples of 10);
- ``"l2"``: (1/(t1 − t0) ∫ ‖y(t) − y*(t)‖₂² dt)^{1/2} by the trapezoid rule on a dense grid, where
  y(t) is the solver's dense output (diffrax's interpolant, kept whole and evaluated after the
  solve).

Examples:
    >>> from analysis import convergence
    >>> result = convergence.measure("linear", ["Euler", "Heun"], dt0=[0.1, 0.05, 0.025, 0.0125])
    >>> result.fits[["solver", "order", "nominal_order"]].round(1).values.tolist()
    [['Euler', 1.0, 1], ['Heun', 2.0, 2]]
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd

from . import solvers as _solvers
from . import systems as _systems
from . import targets as _targets
from ._sweep import sweep
from .errors import InvalidArgument, PrecisionWarning, require_positive, warn_if_float32
from .result import Result, require_columns

__all__ = [
    "NORMS",
    "ConvergenceResult",
    "LogSlope",
    "OrderFit",
    "fit",
    "fit_order",
    "fit_rows",
    "local_orders",
    "log_slope",
    "measure",
    "REFERENCE_MARGIN",
    "ROUNDOFF_FACTOR",
]

NORMS = ("final", "max", "l2")
#: A measured error counts only if it exceeds the target's own error estimate by this factor.
REFERENCE_MARGIN = 100.0
#: The round-off floor of a run of N steps is eps · ‖target‖ · max(ROUNDOFF_FACTOR, N) (same
#: norm; eps of the runs' dtype): rounding errors of the N steps add up at most linearly.
ROUNDOFF_FACTOR = 100.0
#: A point whose error is within this factor of the round-off floor is unresolved: excluded.
FLOOR_FACTOR = 10.0
#: Neighbouring local orders in the asymptotic range differ by at most this (plus their noise).
ORDER_TOL = 0.2
#: A fit is "ok" only if the finest local order is within this of its extrapolation to h → 0.
DRIFT_TOL = 0.1
#: Local orders at most this throughout the range: the errors do not converge.
FLAT_ORDER = 0.3
#: An error at least this fraction of the solution's size is pre-asymptotic (no correct digit).
MAX_RELATIVE_ERROR = 0.5
#: A fit whose interval is wider than this is "uncertain", not "ok".
MAX_OK_WIDTH = 0.5
#: The smallest half-width of an order's interval.
MIN_HALF_WIDTH = 0.02
#: How many of the finest local orders the extrapolation to h → 0 uses.
EXTRAPOLATION_POINTS = 4


# --------------------------------------------------------------------------------- order fits


def local_orders(h, err) -> np.ndarray:
    """Local orders log(e_{i+1}/e_i) / log(h_{i+1}/h_i) between consecutive points (any spacing).

    Examples:
        >>> local_orders([0.1, 0.2, 0.4], [1e-2, 4e-2, 16e-2]).round(6).tolist()
        [2.0, 2.0]
    """
    h, err = np.asarray(h, float), np.asarray(err, float)
    return np.diff(np.log(err)) / np.diff(np.log(h))


def _log_mean(a, b):
    """(b - a)/log(b/a): where the local order between steps a and b sits on the h axis.

    For e = C·h^p·(1 + c·h + O(h²)) the local order between a and b is p + c·(b - a)/log(b/a)
    + O(h²) exactly, so local orders are linear in this abscissa to first order.
    """
    return (b - a) / np.log(b / a)


@dataclasses.dataclass(frozen=True)
class OrderFit:
    """An observed order of convergence, its interval, and how far to trust it.

    `h`, `err` are the valid points (status ok, finite, positive) sorted by h; `used` marks the
    asymptotic range the estimate comes from; `excluded` lists (h, reason) for every point
    left out, failed solves included; `local_orders` are between consecutive valid points.

    `order` estimates the asymptotic order p (the h → 0 limit of the local order), and
    [ci_low, ci_high] is an interval for it that includes the deterministic higher-order terms
    (see `fit_order`); `drift` is the finest local order minus `order` (positive: the local
    orders are still falling towards it as h decreases). `status` says whether to trust it:

    - "ok": an asymptotic range reaching the smallest usable step, local orders there within
      DRIFT_TOL of their extrapolation to h → 0: the interval can go in a paper;
    - "pre_asymptotic": the local orders still drift (by more than DRIFT_TOL) at the smallest
      usable step: `order` is the best estimate, `drift` the direction, the interval wider;
    - "uncertain": the interval is wider than MAX_OK_WIDTH (noise, or errors near the floor);
    - "not_converging": the errors are flat or grow as h decreases (local orders ≤ FLAT_ORDER);
    - "no_asymptotic_range": the local orders at the smallest steps are erratic (neighbours
      differ by more than `order_tol`): order NaN;
    - "too_few_points": fewer than `min_points` usable points: order NaN.

    Examples:
        >>> h = np.array([0.4, 0.2, 0.1, 0.05, 0.025])
        >>> fit = fit_order(h, h**2 * (1 + 5 * h**2))       # order 2 with an h⁴ term
        >>> fit.status, round(fit.order, 2), fit.points_used
        ('ok', 1.94, 4)
        >>> round(fit.ci_low, 2), round(fit.ci_high, 2)             # holds the true order 2
        (1.89, 2.05)
        >>> fit.excluded_text()
        'h=0.4: pre-asymptotic (local order 2.58; 2.01 at the smallest steps)'
        >>> fit_order(h[:2], h[:2] ** 2).status              # a fit needs 3 points
        'too_few_points'
    """

    order: float
    ci_low: float
    ci_high: float
    drift: float
    log_constant: float
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
        """How many (h, error) points the estimate used."""
        return int(self.used.sum())

    def excluded_text(self) -> str:
        """The exclusions as one line, e.g. 'h=0.5: pre-asymptotic (local order 1.41; ...)'."""
        return "; ".join(f"h={h:.3g}: {why}" if np.isfinite(h) else why for h, why in self.excluded)


def _check_fit_args(h, err, status, floor, reference_error, min_points, order_tol):
    if h.ndim != 1 or h.shape != err.shape:
        raise InvalidArgument(
            f"h and err must be 1-D of equal length; got shapes {h.shape} and {err.shape}"
        )
    if status is not None and len(status) != len(h):
        raise InvalidArgument(f"status has {len(status)} entries but h has {len(h)}")
    if int(min_points) != min_points or min_points < 3:
        raise InvalidArgument(
            f"min_points={min_points!r} is invalid; it must be an integer ≥ 3 (an extrapolated "
            "order needs two local orders)"
        )
    if np.ndim(floor) not in (0, 1) or np.size(floor) not in (1, len(h)):
        raise InvalidArgument(
            f"floor has shape {np.shape(floor)}; it must be a number or one per point ({len(h)})"
        )
    for name, v in (("floor", floor), ("reference_error", reference_error)):
        if not np.all(np.isfinite(v) & (np.asarray(v) >= 0)):
            raise InvalidArgument(f"{name}={v!r} is invalid; it must be finite and ≥ 0")
    require_positive("order_tol", order_tol)


def _extrapolated(q, x, sigma, points: int = EXTRAPOLATION_POINTS):
    """Local orders `q` at abscissae `x` (finest first) extrapolated linearly to x = 0.

    A least-squares line through the finest `points` local orders, weighted by their noise
    `sigma` (floored at MIN_HALF_WIDTH); returns its value at 0, at x[0], and the standard
    error of the value at 0: from the noise, scaled up by the scatter about the line where that
    is larger (so noise nobody declared still widens the interval).
    """
    q, x = q[:points], x[:points]
    w = 1 / np.maximum(sigma[:points], MIN_HALF_WIDTH) ** 2
    design = np.stack([np.ones_like(x), x], axis=1)
    cov = np.linalg.inv(design.T @ (w[:, None] * design))
    intercept, slope = cov @ design.T @ (w * q)
    scatter = 1.0
    if len(q) > 2:
        resid = q - intercept - slope * x
        scatter = max(1.0, float(w @ resid**2) / (len(q) - 2))
    se = float(np.sqrt(cov[0, 0] * scatter))
    return float(intercept), float(intercept + slope * x[0]), se


def fit_order(
    h,
    err,
    *,
    status=None,
    floor=0.0,
    reference_error: float = 0.0,
    scale: float | None = None,
    min_points: int = 3,
    order_tol: float = ORDER_TOL,
) -> OrderFit:
    """Observed order of convergence from errors `err` at step sizes `h` (any sequence).

    1. Points whose `status` is not "ok", or whose h or error is not finite and positive, are
       excluded and counted (`n_failed` for failed solves).
    2. An error is unresolved, and excluded, only when it is within FLOOR_FACTOR of the
       round-off `floor` or within REFERENCE_MARGIN of the target's own `reference_error`.
    3. The asymptotic range starts at the smallest usable step and extends to larger h while
       neighbouring local orders q_i = log(e_{i+1}/e_i)/log(h_{i+1}/h_i) differ by at most
       `order_tol` (plus their noise, see 5); larger steps are "pre-asymptotic". No other
       point is ever excluded, so the small-h end cannot be dropped as "round-off".
    4. e = C·h^p·(1 + c·h + O(h²)) makes q_i = p + c·x_i + O(h²) at the logarithmic mean
       x_i = (h_{i+1} - h_i)/log(h_{i+1}/h_i). The estimate is the line through the two finest
       local orders extrapolated to x = 0: p̂ = q_0 - (q_1 - q_0)·x_0/(x_1 - x_0).
    5. The interval spans p̂ and q_0 (the truth lies between them when the deviation is a
       single power of h), widened on both sides by the largest of: MIN_HALF_WIDTH; how much
       the extrapolation moves when it uses the next pair instead (the O(h²) terms); twice the
       noise of p̂ propagated from each error's relative uncertainty (floor + reference_error)/e.
       Calibrated on 3000 generated curves C·h^p·(1 + a·h + b·h²) (tests/test_convergence.py,
       docs/concepts/convergence.md).
    6. The status (see `OrderFit`) is "ok" only when the errors converge, the finest local
       order is within DRIFT_TOL of p̂ and the interval is at most MAX_OK_WIDTH wide.

    Fewer than `min_points` usable points give status "too_few_points" and NaN.

    Examples:
        >>> h = np.array([0.4, 0.2, 0.1, 0.05, 0.025, 0.0125])
        >>> fit = fit_order(h, 3 * h**2 * (1 + h), floor=1e-14)
        >>> fit.status, round(fit.order, 3), fit.points_used       # h = 0.4 is pre-asymptotic
        ('ok', 2.004, 5)
        >>> round(fit.ci_low, 2), round(fit.ci_high, 2)
        (1.97, 2.05)
    """
    h = np.asarray(h, dtype=float)
    err = np.asarray(err, dtype=float)
    _check_fit_args(h, err, status, floor, reference_error, min_points, order_tol)
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise InvalidArgument(f"scale={scale!r} is invalid; it must be finite and > 0 (or None)")
    status = None if status is None else np.asarray(status)
    ok = np.ones(len(h), bool) if status is None else status == "ok"
    excluded: list[tuple[float, str]] = []
    for k in np.flatnonzero(~ok):
        excluded.append((float(h[k]), f"failed ({status[k]})"))
    finite = ok & np.isfinite(h) & (h > 0) & np.isfinite(err) & (err > 0)
    for k in np.flatnonzero(ok & ~finite):
        what = "zero error" if err[k] == 0 else "error or h not finite and positive"
        excluded.append((float(h[k]), what))
    by_h = np.argsort(h[finite], kind="stable")
    hv, ev = h[finite][by_h], err[finite][by_h]
    fv = np.broadcast_to(np.asarray(floor, dtype=float), h.shape)[finite][by_h]
    lo_all = local_orders(hv, ev) if len(hv) > 1 else np.empty(0)
    usable = np.ones(len(hv), bool)
    for k in range(len(hv)):
        if ev[k] <= FLOOR_FACTOR * fv[k]:
            usable[k] = False
            excluded.append((hv[k], f"within {FLOOR_FACTOR:g}× of the round-off floor {fv[k]:.1e}"))
        elif ev[k] <= REFERENCE_MARGIN * reference_error:
            usable[k] = False
            excluded.append(
                (hv[k], f"within {REFERENCE_MARGIN:g}× of the target's error {reference_error:.1e}")
            )
        elif scale is not None and ev[k] >= MAX_RELATIVE_ERROR * scale:
            usable[k] = False
            excluded.append(
                (
                    hv[k],
                    f"pre-asymptotic (error {ev[k]:.2g} ≥ {MAX_RELATIVE_ERROR:g}× the "
                    f"solution's size {scale:.2g})",
                )
            )
    n_failed = int((~ok).sum())

    def result(fit_status, reason, order=np.nan, low=np.nan, high=np.nan, drift=np.nan, used=None):
        used = np.zeros(len(hv), bool) if used is None else used
        log_c = np.nan
        if used.any() and np.isfinite(order):
            k = np.flatnonzero(used)[0]  # the asymptotic line through the finest used point
            log_c = float(np.log(ev[k]) - order * np.log(hv[k]))
        return OrderFit(
            order=float(order),
            ci_low=float(low),
            ci_high=float(high),
            drift=float(drift),
            log_constant=log_c,
            h=hv,
            err=ev,
            used=used,
            excluded=tuple(sorted(excluded)),
            local_orders=lo_all,
            n_failed=n_failed,
            status=fit_status,
            reason=reason,
        )

    idx = np.flatnonzero(usable)
    if len(idx) < min_points:
        return result("too_few_points", f"{len(idx)} usable point(s), need {min_points}")
    hu, eu = hv[idx], ev[idx]
    q = local_orders(hu, eu)
    x = _log_mean(hu[:-1], hu[1:])
    rel = (fv[idx] + reference_error) / eu  # each error's relative uncertainty
    sigma = (rel[:-1] + rel[1:]) / np.log(hu[1:] / hu[:-1])  # of each local order
    k = 1  # the range holds local orders q[:k] (k + 1 points), from the smallest step up
    # each local order may move by twice its own noise to fit the range
    while (
        k < len(q)
        and np.max(q[: k + 1] - 2 * sigma[: k + 1]) - np.min(q[: k + 1] + 2 * sigma[: k + 1])
        <= order_tol
    ):
        k += 1
    finest = " ".join(f"{v:.2f}" for v in q[: min(len(q), 4)])
    if k + 1 < min_points:
        return result(
            "no_asymptotic_range",
            f"local orders at the smallest steps ({finest}, from the smallest h up) differ by "
            f"more than {order_tol}: no asymptotic range",
        )
    used = np.zeros(len(hv), bool)
    used[idx[: k + 1]] = True
    for j in range(k + 1, len(idx)):
        excluded.append(
            (
                hu[j],
                f"pre-asymptotic (local order {q[j - 1]:.2f}; {q[0]:.2f} at the smallest steps)",
            )
        )
    p_hat, q0_hat, se = _extrapolated(q[:k], x[:k], sigma[:k])
    if k >= 3:  # the O(h²) terms: how far the estimate moves on the next local orders
        model = abs(p_hat - _extrapolated(q[1:k], x[1:k], sigma[1:k])[0])
    else:
        model = abs(q0_hat - p_hat)
    margin = max(MIN_HALF_WIDTH, model, 2 * se)
    low, high = min(p_hat, q0_hat) - margin, max(p_hat, q0_hat) + margin
    drift = q0_hat - p_hat
    fit = dict(order=p_hat, low=low, high=high, drift=drift, used=used)
    if max(q[:k]) <= FLAT_ORDER:
        what = "grow" if q[0] < 0 else "do not decrease"
        reason = f"the errors {what} as h decreases (local orders {finest}, from the smallest h up)"
        return result("not_converging", reason, **fit)
    if abs(drift) > DRIFT_TOL:
        direction = "falling" if drift > 0 else "rising"
        reason = (
            f"local orders still {direction} as h decreases ({finest}, from the smallest h up); "
            f"extrapolated to h → 0: {p_hat:.2f}"
        )
        return result("pre_asymptotic", reason, **fit)
    if high - low > MAX_OK_WIDTH:
        reason = (
            f"the interval [{low:.2f}, {high:.2f}] is wider than {MAX_OK_WIDTH:g}: the errors are "
            f"too noisy or too close to the floor (local orders {finest}, from the smallest h up)"
        )
        return result("uncertain", reason, **fit)
    return result("ok", "", **fit)


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


@dataclasses.dataclass(frozen=True, repr=False)
class ConvergenceResult(Result):
    """A convergence measurement: its rows and the order fitted to each line of them, once.

    Attributes:
        rows: one row per (solve, norm), see `measure`.
        fits: one row per (system, solver, target, norm, relative) line, see `fit`: the order,
            its interval and status, the fitted range [h_min, h_max] and log_constant, so the
            fitted line is e(h) = exp(log_constant)·h^order there.

    Examples:
        >>> result = measure("linear", "Euler", dt0=[0.1, 0.05, 0.025])
        >>> list(result.tables()), len(result.rows), len(result.fits)
        (['rows', 'fits'], 3, 1)
        >>> result.fits[["solver", "status"]].values.tolist()
        [['Euler', 'ok']]
    """

    rows: pd.DataFrame
    fits: pd.DataFrame


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
) -> ConvergenceResult:
    """Fixed-step solves of `system` with each solver at steps `dt0`, their errors, fitted orders.

    The errors are those of the runs against the `target` (an `analysis.targets` object or its
    string form), taken once here in each norm; `fit` then fits each line once.

    Args:
        system: a System or catalog name.
        solvers: solver name(s) or object(s).
        dt0: step sizes (each snapped to (t1 - t0)/N as in `analysis.sweep`).
        norms: any of NORMS ("final", "max", "l2").
        relative: divide each error by the same norm of the target.
        target: a target (`analysis.targets`) or "limit", "exact", "reference", "richardson".
        save_ts: save times of the "max" norm (default: 10 evenly spaced in (t0, t1]).
        n_dense: grid points of the "l2" norm.
        richardson_order: order used by the "richardson" target (default: the solver's nominal
            order for an h-free field, the three-grid observed order for a step-dependent one).

    Returns:
        A `ConvergenceResult`. Its rows are the sweep's rows (without trajectories), one per
        (solve, norm), with `error` that norm against the target and new columns target, norm,
        relative, reference_error (the target's own error estimate in that norm),
        roundoff_floor (eps·‖target‖·max(ROUNDOFF_FACTOR, N) for N steps), target_size
        (‖target‖ in that norm; 1 if relative), reference_point (True for the runs a
        Richardson target was built from); its fits are `fit(rows)`.

    Examples:
        >>> result = measure("linear", ["Euler", "Heun"], dt0=[1 / n for n in (10, 20, 40, 80)])
        >>> df = result.rows
        >>> len(df), df["target"].iloc[0]                  # y' = -y has an exact solution
        (8, 'limit: exact')
        >>> e = df[df["solver"] == "Heun"]["error"].to_numpy()
        >>> (e[:-1] / e[1:]).round(1).tolist()             # halving h quarters Heun's error
        [4.2, 4.1, 4.0]
    """
    warn_if_float32("a convergence measurement")
    with warnings.catch_warnings():  # one warning per measurement, not one per nested step
        warnings.simplefilter("ignore", PrecisionWarning)
        rows = _measure(
            system, solvers, dt0, norms, relative, target, save_ts, n_dense, richardson_order
        )
    return ConvergenceResult(rows=rows, fits=fit(rows))


def _measure(system, solvers, dt0, norms, relative, target, save_ts, n_dense, richardson_order):
    system = _systems.get(system)
    norms = _check_norms(norms)
    target = _targets.as_target(target, richardson_order)
    ts, idx = _grid(system, norms, save_ts, n_dense)
    shared = None if target.from_runs else target.values(system, ts)  # refused before the sweep
    rows = sweep(system, solvers, dt0=dt0, save_ts=ts)
    if target.from_runs and rows.groupby("solver").size().min() < 3:
        raise InvalidArgument("target='richardson' needs at least 3 step sizes per solver")
    frames = []
    for solver, g in rows.groupby("solver", sort=False):
        ok = (g["status"] == "ok").to_numpy()
        ys = np.stack([np.asarray(y).reshape(len(ts), -1) for y in g["ys"]])
        values = (
            shared
            if shared is not None
            else target.values_from_runs(system, solver, ys[ok], g["h"].to_numpy()[ok])
        )
        is_ref = np.zeros(len(g), bool)
        is_ref[np.flatnonzero(ok)[values.built_from]] = True
        ref = np.asarray(values.ys).reshape(len(ts), -1)
        ref_e = np.broadcast_to(np.asarray(values.error).reshape(len(ts), -1), ref.shape)
        for norm in norms:
            err = _norm(ys - ref[None], norm, ts, idx)
            ref_error = float(_norm(ref_e[None], norm, ts, idx)[0])
            size = float(_norm(ref[None], norm, ts, idx)[0])
            denom = size if relative else 1.0
            out = g.drop(columns="ys").copy()
            out["error"] = np.where(ok, err / denom, np.nan)
            out["error_source"] = values.label
            out["target"] = values.label
            out["norm"] = norm
            out["relative"] = relative
            out["reference_error"] = ref_error / denom
            eps = np.finfo(ys.dtype if np.issubdtype(ys.dtype, np.inexact) else float).eps
            steps = np.maximum(ROUNDOFF_FACTOR, g["num_steps"].to_numpy(float))
            out["roundoff_floor"] = eps * size * steps / denom
            out["target_size"] = size / denom
            out["reference_point"] = is_ref
            frames.append(out)
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------- tables


def fit_rows(rows: pd.DataFrame, **fit_options) -> OrderFit:
    """`fit_order` of one line of rows (one system, solver, target and norm), told what the
    rows know: `measure`'s round-off floor, target error and target size where they have those
    columns (plain `analysis.sweep` rows with an error column work too), without the runs a
    Richardson target was built from.

    Args:
        rows: `measure` rows of one (system, solver, target, norm, relative) group.
        **fit_options: min_points, order_tol (see `fit_order`).

    Returns:
        The OrderFit.

    Examples:
        >>> rows = measure("linear", "Heun", dt0=[1 / n for n in (10, 20, 40, 80)]).rows
        >>> line = fit_rows(rows)
        >>> line.status, round(line.order, 2)
        ('ok', 2.0)
    """

    def column(name, default):
        if name not in rows:
            return np.full(len(rows), default)
        return np.nan_to_num(rows[name].to_numpy(float), nan=default)

    refs = rows["reference_point"].to_numpy(bool) if "reference_point" in rows else None
    keep = np.ones(len(rows), bool) if refs is None else ~refs
    size = float(column("target_size", 0.0)[0]) if len(rows) else 0.0
    return fit_order(
        rows["h"].to_numpy(float)[keep],
        rows["error"].to_numpy(float)[keep],
        status=rows["status"].to_numpy()[keep],
        floor=column("roundoff_floor", 0.0)[keep],
        reference_error=float(column("reference_error", 0.0)[0]) if len(rows) else 0.0,
        scale=size if size > 0 else None,
        **fit_options,
    )


#: The columns of a line of rows: one fit each.
LINE = ["system", "solver", "target", "norm", "relative"]


def fit(rows: pd.DataFrame, **fit_options) -> pd.DataFrame:
    """Fit an order per (system, solver, target, norm, relative) line of `measure` rows.

    Returns one row per line: system, solver, target, norm, relative, order (the estimated
    asymptotic order), ci_low, ci_high (its interval), drift (finest local order − order),
    nominal_order, points_used, excluded (text: each left-out h and why), n_failed, status,
    reason, h_min, h_max (of the fitted range), local_orders (text, between consecutive valid
    points from the smallest h up), reference_error (the target's own error) and log_constant:
    the fitted line is e(h) = exp(log_constant)·h^order on [h_min, h_max], through the error
    at h_min. `fit_options` go to `fit_order` (min_points, order_tol).

    Plain `analysis.sweep` rows (with their error column) are fitted per (system, solver).

    Args:
        rows: rows from `measure` (`ConvergenceResult.rows`), or `analysis.sweep` rows.
        **fit_options: min_points, order_tol (see `fit_order`).

    Returns:
        A DataFrame, one row per line, columns as above.

    Examples:
        >>> result = measure("linear", ["Euler", "Heun"], dt0=[1 / n for n in (10, 20, 40, 80)])
        >>> fits = fit(result.rows)
        >>> columns = ["solver", "order", "nominal_order", "points_used", "status"]
        >>> fits[columns].round(1).values.tolist()         # Heun's observed order ≈ 2
        [['Euler', 1.0, 1, 4, 'ok'], ['Heun', 2.0, 2, 4, 'ok']]
    """
    require_columns(rows, ["system", "solver", "h", "error", "status"], "fit's rows")
    keys = [c for c in LINE if c in rows]  # plain sweep rows: system, solver
    out = []
    for key, g in rows.groupby(keys, sort=False):
        refs = g["reference_point"].to_numpy(bool) if "reference_point" in g else np.zeros(0, bool)
        line = fit_rows(g, **fit_options)
        ref_error = float(g["reference_error"].iloc[0]) if "reference_error" in g else 0.0
        if np.isnan(ref_error):  # e.g. a failed reference: every error NaN
            line = dataclasses.replace(line, reason=f"{line.reason}; no errors: {key[2]}")
        excluded = line.excluded_text()
        if refs.any():
            hs = ", ".join(f"{h:.3g}" for h in g["h"][refs])
            excluded = "; ".join(filter(None, [f"h={hs}: build the Richardson target", excluded]))
        used_h = line.h[line.used]
        out.append(
            dict(
                zip(keys, key, strict=True),
                order=line.order,
                ci_low=line.ci_low,
                ci_high=line.ci_high,
                drift=line.drift,
                nominal_order=_solvers.info(key[1]).order,
                points_used=line.points_used,
                excluded=excluded,
                n_failed=line.n_failed,
                status=line.status,
                reason=line.reason,
                h_min=float(used_h.min()) if len(used_h) else np.nan,
                h_max=float(used_h.max()) if len(used_h) else np.nan,
                local_orders=" ".join(f"{x:.2f}" for x in line.local_orders),
                reference_error=ref_error,
                log_constant=line.log_constant,
            )
        )
    return pd.DataFrame(out)


@dataclasses.dataclass(frozen=True)
class LogSlope:
    """A least-squares line log y = slope·log x + intercept.

    Attributes:
        slope: the fitted power (an order, when x is a step and y an error).
        intercept: log of the constant: y ≈ base^intercept·x^slope.
        points: how many (x, y) points were fitted.
        base: the base of the logarithms (e, or 10 for decades).

    Examples:
        >>> LogSlope(2.0, 0.0, 3).at([0.1, 0.2]).round(12).tolist()
        [0.01, 0.04]
    """

    slope: float
    intercept: float
    points: int
    base: float = math.e

    def at(self, x) -> np.ndarray:
        """The fitted line base^intercept·x^slope at `x`."""
        constant = np.exp(self.intercept) if self.base == math.e else self.base**self.intercept
        return constant * np.asarray(x, dtype=float) ** self.slope


def log_slope(x, y, *, base: float = math.e) -> LogSlope:
    """Least-squares slope of log y on log x: the one slope fit of the toolkit.

    Minimises Σ (log y_i − s·log x_i − c)² over (s, c) (NumPy's polyfit of degree 1). Unlike
    `fit_order`, it takes every point as given: no floor, no exclusions, no status.

    Args:
        x: positive abscissae (e.g. step sizes h).
        y: positive values (e.g. errors), as many as x.
        base: the logarithms' base: e (default) or 10 (the intercept is then in decades).

    Returns:
        A `LogSlope`.

    Raises:
        InvalidArgument: fewer than 2 points, unequal lengths, or a value not finite and > 0.

    Examples:
        >>> fit = log_slope([0.1, 0.05, 0.025], [3e-2, 7.5e-3, 1.875e-3])   # 3·h²
        >>> round(fit.slope, 12), round(float(np.exp(fit.intercept)), 12)
        (2.0, 3.0)
        >>> round(log_slope([1e-4, 1e-6], [1e-3, 1e-5], base=10).intercept, 12)  # 10·rtol
        1.0
    """
    if base not in (math.e, 10):
        raise InvalidArgument(f"base={base!r} is invalid; it must be math.e or 10")
    log = np.log if base == math.e else np.log10
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape or len(x) < 2:
        raise InvalidArgument(
            f"x and y have {len(x)} and {len(y)} points; a slope needs ≥ 2 of each, as many"
        )
    for name, v in (("x", x), ("y", y)):
        if not np.all(np.isfinite(v) & (v > 0)):
            raise InvalidArgument(f"{name}={v.tolist()!r} is invalid; every value must be > 0")
    slope, intercept = np.polyfit(log(x), log(y), 1)
    return LogSlope(float(slope), float(intercept), len(x), base)
