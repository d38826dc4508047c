"""The benchmark's contracts, without timing anything.

The baselines compute what they claim (the lax.scan reference and solve_ivp at forced constant
steps reproduce the sweep's numbers; the naive loop really recompiles per Python float), the
workloads compile once per group whatever the grid, and a chunked sweep's memory is set by its
chunk, not by its grid.
"""

import json
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from helpers import checkout_env

import analysis
from analysis import systems
from benchmarks import baselines, workloads
from benchmarks._measure import xla_compiles

ROOT = Path(__file__).resolve().parents[1]


def _y_final(df):
    return df[[c for c in df if c.startswith("y_final_")]].to_numpy()


def test_scan_reference_reproduces_the_sweep_and_eulers_closed_form():
    lin = systems.get("linear")
    n = np.array([4, 8, 16])
    for solver in ("Euler", "Bosh3", "Tsit5"):
        y = np.asarray(baselines.scan_rk(lin, solver, int(n.max()))(jnp.asarray(1 / n), n))
        swept = analysis.sweep(lin, solver, dt0=1 / n)
        np.testing.assert_allclose(y, swept["y_final_0"], rtol=1e-13)
        if solver == "Euler":  # y' = -y: N Euler steps give (1 - 1/N)^N
            np.testing.assert_allclose(y, (1 - 1 / n) ** n, rtol=1e-13)


def test_numpy_fields_match_the_catalog_fields():
    rng = np.random.default_rng(0)
    for name, kw in [("linear10", {}), ("lotka_volterra", {}), *workloads.ADAPTIVE_SYSTEMS]:
        s = systems.get(name, **kw)
        fun = baselines.numpy_field(name, s)
        for _ in range(3):
            y = np.asarray(s.y0) + 0.1 * rng.standard_normal(np.shape(s.y0))
            np.testing.assert_allclose(fun(0.0, y), s.limit_field(0.0, y, s.args), rtol=1e-13)


@pytest.mark.parametrize(
    ("method", "solver", "per_step"), [("RK45", "Dopri5", 6), ("RK23", "Bosh3", 3)]
)
def test_solve_ivp_forced_to_constant_steps_takes_the_sweeps_steps(method, solver, per_step):
    s = systems.get("linear10")
    fun = baselines.numpy_field("linear10", s)
    y, steps, nfev = baselines.solve_ivp_fixed(fun, s, method, 1 / 50)
    assert steps == 50 and nfev == 1 + per_step * 50  # FSAL pairs: one evaluation to start
    swept = analysis.sweep(s, solver, dt0=[1 / 50])
    np.testing.assert_allclose(y, _y_final(swept)[0], rtol=1e-12)  # the same Runge–Kutta pair


def test_naive_loop_recompiles_for_each_python_float_and_the_jit_loop_does_not():
    lin = systems.get("linear")
    before = xla_compiles()
    for dt in (0.1, 0.05, 0.1):
        baselines.naive_solve(lin, "Heun", dt0=dt, max_steps=64)
    naive = xla_compiles() - before
    assert naive >= 2  # one per distinct float; the repeated 0.1 is cached
    solve = baselines.jit_solver(lin, "Heun", max_steps=64)
    before = xla_compiles()
    ys = [float(solve(dt)[0]) for dt in (0.1, 0.05, 0.025)]
    assert xla_compiles() - before == 1
    np.testing.assert_allclose(ys, [(1 - h + h**2 / 2) ** round(1 / h) for h in (0.1, 0.05, 0.025)])


def test_fixed_step_workload_compiles_once_per_system_and_solver_and_never_again(
    fresh_compile_cache,
):
    scale = workloads.Scale(fixed_steps=3, repeats=1, fast_repeats=1)
    rec = workloads.fixed_sweep(scale)
    assert rec.compilations == len(workloads.FIXED_SYSTEMS) * len(workloads.FIXED_SOLVERS)
    assert rec.warm_compilations == 0 and rec.n_solves == rec.compilations * 3


def test_adaptive_sweep_compiles_once_per_group_whatever_the_number_of_tolerances(
    fresh_compile_cache,
):
    counts = []
    for n_tols in (2, 9):
        kepler = systems.get("kepler")  # a fresh System object is a fresh group
        df = analysis.sweep(
            kepler, ["Tsit5", "Kvaerno5"], controller="PI34", rtol=workloads.tolerances(n_tols)
        )
        assert (df["status"] == "ok").all() and len(df) == 2 * n_tols
        counts.append(df.attrs["compilations"])
    assert counts == [2, 2]


@pytest.mark.slow  # three fresh processes, each importing jax and compiling
def test_chunked_sweep_memory_is_set_by_the_chunk_not_the_grid():
    """Peak RSS of three fresh processes: grid G and 10G at one chunk size, and 10G unchunked."""
    env = checkout_env(JAX_ENABLE_X64="1")
    methods = ("grid G, chunk C", "grid 10G, chunk C", "grid 10G, unchunked")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "--child", "memory", m, "--quick"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for m in methods
    ]
    recs = {}
    for m, p in zip(methods, procs, strict=True):
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        recs[m] = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RECORD "))[7:])
    grow = {m: r["peak_rss_mb"] - r["extra"]["rss_before_mb"] for m, r in recs.items()}
    per_grid = grow["grid 10G, unchunked"] - grow["grid G, chunk C"]
    per_chunked = grow["grid 10G, chunk C"] - grow["grid G, chunk C"]
    assert per_grid > 20  # holding the whole 10G grid at once costs real memory...
    assert per_chunked < 0.5 * per_grid  # ...and chunking avoids most of it
    assert all(r["compilations"] == 1 for r in recs.values())


def _whole(workload, method, seconds, notes="", **extra):
    return {
        "workload": workload,
        "method": method,
        "n_solves": 0,
        "nfev": 0,
        "end_to_end_s": seconds,
        "compile_s": 0.0,
        "run_s": None,
        "run_repeats": [],
        "compilations": 0,
        "xla_compilations": 0,
        "notes": notes,
        "extra": extra,
        "device": "cpu: cpu",
    }


def test_report_gives_each_whole_toolkit_target_its_ratio_and_verdict():
    from benchmarks import report

    records = [
        _whole("cache", "study run, cold cache", 40.0, "convergence --force", cache_hits=0),
        _whole("cache", "study run, warm cache", 20.0, "convergence --force", cache_hits=12),
        _whole(
            "toolkit", "make figures, cold cache", 180.0, studies_s={"demo": 3.0, "neural": 99.0}
        ),
        _whole("toolkit", "make figures, warm cache", 100.0),
        _whole("toolkit", "make test, cold cache", 230.0),
    ]
    machine = report.machine() | {"load_after": (0.0, 0.0, 0.0), "total_wall_s": 1.0}
    text = report.render(records, machine, "make bench")
    assert "with a warm cache ≤ 60% of cold | 50% (20 s against 40 s) | met |" in text
    assert "| cold cache 3 min 00 s; warm cache 1 min 40 s | **missed** |" in text
    assert (
        "`make test` from a fresh clone ≤ 4 min 00 s on this machine | cold cache 3 min 50 s"
        in text
    )
    assert "Devices: cpu: cpu. No GPU was available" in text
    assert "spends its time** (cold cache, per study): neural 99 s, demo 3 s." in text


def test_toolkit_reads_the_runner_and_pytest_outputs():
    from benchmarks import toolkit

    runner = (
        "[demo] computing: ...\n[demo] done in 2.9 s (1.5 s of it tracing and compiling)\n"
        "[neural] done in 110.9 s\nall done in 114 s"
    )
    assert toolkit._study_times(runner) == {"demo": 2.9, "neural": 110.9}
    assert toolkit._study_times(runner, "compile") == {"demo": 1.5}
    pytest_out = "55.56s setup    tests/a.py::t\n4.1s call tests/b.py::u[x y]\n1 failed, 2 passed"
    assert toolkit._slowest_tests(pytest_out) == [
        (55.56, "setup tests/a.py::t"),
        (4.1, "call tests/b.py::u[x y]"),
    ]
