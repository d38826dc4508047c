"""Whole-toolkit measurements: the persistent compilation cache, `make figures` and `make test`.

6. cache: one study run with ``--force`` in a fresh process, first with an empty persistent
   compilation cache (cold), then in a second fresh process with the cache the first one
   filled (warm). FULL runs the convergence study, QUICK the demo's quick config.
8. diagnose: `stepdep diagnose examples/diagnose_my_model.py:model --quick` (a 2-component
   model) in a fresh process, with an empty compilation cache (cold) and with the cache the
   cold run filled (warm). The target (#20) is ≤ 60 s on two cores.
7. toolkit: the commands of `make figures` (every study from scratch: no stored results) and
   `make test` (pytest -n auto --maxprocesses 2 --dist loadfile), run in a fresh clone of this
   repository's HEAD that shares this checkout's virtual environment, each with an empty
   compilation cache (cold: what a first run on a new machine pays) and again with the cache
   the cold run filled (warm: every later run). Only in FULL runs (minutes each).

Measurements of one benchmark run share folders named by the parent process's id, so the warm
child finds what the cold child wrote; the parent (`benchmarks.__main__`) removes them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax.monitoring

from ._measure import Record, compile_seconds, xla_compiles

ROOT = Path(__file__).resolve().parent.parent
PYTEST = ["-m", "pytest", "-n", "auto", "--maxprocesses", "2", "--dist", "loadfile", "-q"]
PYTEST_DURATIONS = ["--durations=12"]  # the make target prints 15; 12 is enough to say where
TOOLKIT_TIMEOUT_S = 3600


def shared_folder(kind: str, parent: int | None = None) -> Path:
    """A folder the children of one benchmark run share (named by the parent's process id)."""
    return Path(tempfile.gettempdir()) / f"stepdep-bench-{kind}-{parent or os.getppid()}"


def remove_shared_folders(parent: int) -> None:
    """Remove the folders the children of benchmark run `parent` made."""
    for kind in ("cache", "out", "clone", "clone-cache", "diagnose-cache"):
        shutil.rmtree(shared_folder(kind, parent), ignore_errors=True)


def _cache_hits() -> list:
    hits = []

    def listener(name: str, **_):
        if name == "/jax/compilation_cache/cache_hits":
            hits.append(name)

    jax.monitoring.register_event_listener(listener)
    return hits


def study_run(scale, warm: bool) -> Record:
    """`python -m studies run STUDY --force` in this fresh process, with a cold or warm cache."""
    from studies.__main__ import main

    study, quick = scale.cache_study
    cache, out = shared_folder("cache"), shared_folder("out")
    if not warm:
        shutil.rmtree(cache, ignore_errors=True)
    hits = _cache_hits()
    args = ["run", study, "--force", "--out", str(out), "--compile-cache", str(cache)]
    c0, s0, start = xla_compiles(), compile_seconds(), time.perf_counter()
    if main(args + (["--quick"] if quick else [])) != 0:
        raise RuntimeError(f"the {study} study failed")
    seconds = time.perf_counter() - start
    entries = sum(1 for p in cache.iterdir() if not p.name.startswith("."))
    return Record(
        workload="cache",
        method="study run, warm cache" if warm else "study run, cold cache",
        n_solves=0,
        nfev=0,
        end_to_end_s=seconds,
        compile_s=compile_seconds() - s0,
        run_s=None,
        run_repeats=[],
        compilations=0,
        xla_compilations=xla_compiles() - c0,
        notes=f"{study}{' --quick' if quick else ''} --force",
        extra={"cache_hits": len(hits), "cache_entries": entries},
    )


def diagnose_run(scale, warm: bool) -> Record:
    """`stepdep diagnose examples/diagnose_my_model.py:model --quick` in this fresh process."""
    from studies.__main__ import main

    cache, out = shared_folder("diagnose-cache"), shared_folder("out") / "diagnose"
    if not warm:
        shutil.rmtree(cache, ignore_errors=True)
    target = f"{ROOT / 'examples' / 'diagnose_my_model.py'}:model"
    args = ["diagnose", target, "--quick", "--out", str(out), "--compile-cache", str(cache)]
    c0, s0, start = xla_compiles(), compile_seconds(), time.perf_counter()
    if main(args) != 0:
        raise RuntimeError("stepdep diagnose failed")
    return Record(
        workload="diagnose",
        method=f"diagnose --quick, {'warm' if warm else 'cold'} cache",
        n_solves=0,
        nfev=0,
        end_to_end_s=time.perf_counter() - start,
        compile_s=compile_seconds() - s0,
        run_s=None,
        run_repeats=[],
        compilations=0,
        xla_compilations=xla_compiles() - c0,
        notes="examples/diagnose_my_model.py:model (2 components), --quick",
    )


def _clone() -> Path:
    """A fresh clone of HEAD (made once per benchmark run) using this checkout's .venv."""
    clone = shared_folder("clone")
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        (clone / ".venv").symlink_to(ROOT / ".venv")
    return clone


def _toolkit(scale, what: str, warm: bool) -> Record:
    if not scale.toolkit:
        raise RuntimeError("not measured at this scale (FULL runs only)")
    clone = _clone()
    cache = shared_folder("clone-cache") / what
    if not warm:
        shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "JAX_ENABLE_X64": "1", "STEPDEP_COMPILE_CACHE": str(cache)}
    env.pop("PYTHONPATH", None)  # the clone's code, from its working directory
    if what == "figures":
        shutil.rmtree(clone / "results", ignore_errors=True)  # from scratch: nothing stored
        command = [sys.executable, "-m", "studies", "run", "all"]
    else:
        command = [sys.executable, *PYTEST, *PYTEST_DURATIONS]
    start = time.perf_counter()
    proc = subprocess.run(
        command, cwd=clone, env=env, capture_output=True, text=True, timeout=TOOLKIT_TIMEOUT_S
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        failed = [ln for ln in proc.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
        said = "; ".join(failed) if failed else (proc.stdout + proc.stderr)[-300:]
        raise RuntimeError(f"make {what} failed: {said}")
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    extra = {}
    if what == "figures":
        extra["studies_s"] = _study_times(proc.stdout)
        extra["studies_compile_s"] = _study_times(proc.stdout, "compile")
    if what == "test":
        extra["slowest"] = _slowest_tests(proc.stdout)
    return Record(
        workload="toolkit",
        method=f"make {what}, {'warm' if warm else 'cold'} cache",
        n_solves=0,
        nfev=0,
        end_to_end_s=seconds,
        compile_s=0.0,
        run_s=None,
        run_repeats=[],
        compilations=0,
        xla_compilations=0,
        notes=summary.strip("= "),
        extra=extra,
    )


#: The runner's line for a finished study (the compile part since it reports one).
_DONE = re.compile(
    r"^\[(?P<name>[^\]]+)\] done in (?P<wall>[0-9.]+) s"
    r"(?: \((?P<compile>[0-9.]+) s of it tracing and compiling\))?$"
)


def _study_times(stdout: str, part: str = "wall") -> dict:
    """{study: seconds} from the runner's "[NAME] done in X s (Y s of it tracing and
    compiling)" lines: X for part="wall", Y for part="compile" (where the line has it)."""
    out = {}
    for line in stdout.splitlines():
        done = _DONE.match(line)
        if done and done[part] is not None:
            out[done["name"]] = float(done[part])
    return out


def _slowest_tests(stdout: str) -> list:
    """[(seconds, "setup|call test id")] from pytest's --durations block."""
    out = []
    for line in stdout.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) == 3 and parts[0].endswith("s") and parts[1] in ("setup", "call"):
            try:
                out.append((float(parts[0][:-1]), f"{parts[1]} {parts[2]}"))
            except ValueError:
                continue
    return out


MEASUREMENTS = {
    ("cache", "study run, cold cache"): lambda scale: study_run(scale, warm=False),
    ("cache", "study run, warm cache"): lambda scale: study_run(scale, warm=True),
    ("diagnose", "diagnose --quick, cold cache"): lambda scale: diagnose_run(scale, warm=False),
    ("diagnose", "diagnose --quick, warm cache"): lambda scale: diagnose_run(scale, warm=True),
    ("toolkit", "make figures, cold cache"): lambda scale: _toolkit(scale, "figures", False),
    ("toolkit", "make figures, warm cache"): lambda scale: _toolkit(scale, "figures", True),
    ("toolkit", "make test, cold cache"): lambda scale: _toolkit(scale, "test", False),
    ("toolkit", "make test, warm cache"): lambda scale: _toolkit(scale, "test", True),
}
