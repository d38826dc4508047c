"""Measuring primitives: compile events, repeat timing, peak memory, one measurement record.

Compilation is counted from jax's own monitoring events (`/jax/core/compile/*`): every XLA
compilation in the process is one `backend_compile_duration` event, and trace + lowering +
backend compile durations add up to the compile time. Peak memory is the process's high-water
resident set (VmHWM in /proc/self/status; ru_maxrss elsewhere): XLA allocates outside Python's
heap, so tracemalloc would not see it. Each measurement runs in a fresh process (see
`benchmarks.__main__`), so the high-water mark belongs to that measurement alone.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from collections.abc import Callable

import jax

from analysis import compile_cache


def xla_compiles() -> int:
    """XLA compilations in this process so far (eager op kernels included)."""
    return compile_cache.xla_compilations()


def compile_seconds() -> float:
    """Seconds spent tracing, lowering and compiling in this process so far."""
    return compile_cache.seconds_compiling()


def peak_rss_mb() -> float:
    """High-water resident memory of this process in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device() -> str:
    """The device jax computes on in this process, e.g. "cpu: cpu" or "gpu: NVIDIA H200"."""
    first = jax.devices()[0]
    return f"{first.platform}: {first.device_kind}"


def timed(fn: Callable, *args):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def repeat(fn: Callable, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls of fn()."""
    return [timed(fn)[1] for _ in range(repeats)]


@dataclasses.dataclass
class Record:
    """One measured method on one workload; what the report tabulates.

    end_to_end_s: the first full pass (compilation, reference solutions, run).
    compile_s: trace + lower + compile seconds inside that pass (jax's monitoring events).
    compilations: solve programs compiled; xla_compilations: every XLA compilation in the
        first pass; warm_compilations: XLA compilations during the warm passes (0 expected).
    run_s: median of the warm passes (nothing left to compile), or None where every pass
        compiles (the naive loop).
    nfev: vector-field evaluations of one pass (counted by the solver, or the exact formula).
    extrapolated: how a subsampled baseline was scaled up, else "".
    """

    workload: str
    method: str
    n_solves: int
    nfev: int
    end_to_end_s: float
    compile_s: float
    run_s: float | None
    run_repeats: list[float]
    compilations: int
    xla_compilations: int
    warm_compilations: int | None = None
    peak_rss_mb: float = 0.0
    extrapolated: str = ""
    notes: str = ""
    extra: dict = dataclasses.field(default_factory=dict)

    def finish(self) -> dict:
        self.peak_rss_mb = peak_rss_mb()
        return dataclasses.asdict(self) | {"device": device()}


def measure_jitted(
    workload: str,
    method: str,
    run_pass: Callable[[], tuple[int, int, int]],
    repeats: int,
    notes: str = "",
) -> Record:
    """Time a method whose first pass compiles and later passes reuse the compiled code.

    run_pass() does the whole workload once and returns (n_solves, nfev, solve_programs).
    """
    c0, s0 = xla_compiles(), compile_seconds()
    (n, nfev, programs), cold = timed(run_pass)
    compiles, compile_s = xla_compiles() - c0, compile_seconds() - s0
    c1 = xla_compiles()
    warm = repeat(run_pass, repeats)
    return Record(
        workload=workload,
        method=method,
        n_solves=n,
        nfev=nfev,
        end_to_end_s=cold,
        compile_s=compile_s,
        run_s=statistics.median(warm),
        run_repeats=warm,
        compilations=programs,
        xla_compilations=compiles,
        warm_compilations=xla_compiles() - c1,
        notes=notes,
    )
