"""Attacks on the results store and the runner, each performed for real (issue 17).

Every attack plants wrong numbers where it can and checks that they are never used: the run ends
with tables identical to an uninterrupted clean run, a refusal is a clear message, and nothing
outside the output folder changes. Hangs fail (SIGALRM or subprocess timeouts), they never block.
"""

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import checkout_env

import studies
import studies.__main__ as runner
from analysis import run_store

ROOT = Path(__file__).resolve().parent.parent

# The runner-test study (two groups, Euler and Heun, of fixed steps on y' = -y).
TINY = '''"""Tiny: Euler and Heun on y' = -y at fixed steps (a store-attack test study)."""
import dataclasses

import numpy as np

import analysis


@dataclasses.dataclass(frozen=True)
class Config:
    steps: tuple = tuple(range(4, 16))


CONFIG = Config()
QUICK = Config(steps=(4, 8))
CAPTIONS = {"err": "Error against h for Euler and Heun."}
PAPER_TABLES = ("orders",)


def run(config):
    rows = analysis.sweep("linear", ["Euler", "Heun"], dt0=[1 / n for n in config.steps])
    fit = lambda g: analysis.convergence.log_slope(g["h"], g["error"]).slope
    orders = rows.groupby("solver").apply(fit, include_groups=False).rename("order").reset_index()
    return {"rows": rows, "orders": orders}


def plot(results):
    from analysis import plotting

    return {"err": plotting.error_vs_step(results["rows"])}
'''

# A runner process on the tiny study: argv = study file, out, "slow"|"fast", extra runner args.
# "slow" pauses after each stored chunk, and holds while a file `hold` exists beside `out`, so
# another process (or a kill) lands mid-sweep. Right after the study is published (still under
# its lock) it snapshots what a reader sees to `published-<speed>` beside `out`.
PROCESS = """
import importlib.util, shutil, sys, time
from pathlib import Path
import studies, studies.__main__ as runner
from analysis import chunk_store, run_store
spec = importlib.util.spec_from_file_location("studies.tiny", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["studies.tiny"] = module
studies.STUDIES += ("tiny",)
runner.STUDIES += ("tiny",)
run_store.source_hashes = lambda *extra: {"pinned": "0"}
if sys.argv[3] == "slow":
    save = chunk_store.ChunkStore.save
    hold = Path(sys.argv[2]).parent / "hold"
    def slow_save(self, key, out):
        save(self, key, out)
        time.sleep(0.1)
        started = time.monotonic()
        while hold.exists() and time.monotonic() - started < 60:
            time.sleep(0.05)
    chunk_store.ChunkStore.save = slow_save
locked = runner._run_locked
def snapshot_then_release(*args):
    outcome = locked(*args)
    out = Path(sys.argv[2])
    shutil.copytree(out / "results" / "tiny", out.parent / ("published-" + sys.argv[3]),
                    ignore=shutil.ignore_patterns("chunks"))
    shutil.copy(out / "figures" / "tiny" / "err.png", out.parent / ("published-" + sys.argv[3]))
    return outcome
runner._run_locked = snapshot_then_release
sys.exit(runner.main(["run", "tiny", "--out", sys.argv[2], *sys.argv[4:]]))
"""


@pytest.fixture(autouse=True)
def tiny(tmp_path, monkeypatch):
    """The tiny study registered, sources pinned (edits to the checkout elsewhere must not turn
    cache hits into misses), and an `elsewhere/` folder beside the output that must not change."""
    monkeypatch.setattr(run_store, "source_hashes", lambda *extra: {"pinned": "0"})
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    spec = importlib.util.spec_from_file_location("studies.tiny", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "studies.tiny", module)
    monkeypatch.setattr(studies, "STUDIES", studies.STUDIES + ("tiny",))
    monkeypatch.setattr(runner, "STUDIES", runner.STUDIES + ("tiny",))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _planted(elsewhere / "x.parquet")
    before = _tree(tmp_path, skip="out")
    yield path
    assert _tree(tmp_path, skip="out") == before, "something outside the output folder changed"


@pytest.fixture
def deadline():
    """Fail (instead of hanging) when the block takes more than `seconds`."""

    def alarm(signum, frame):
        raise TimeoutError("the runner hung")

    previous = signal.signal(signal.SIGALRM, alarm)
    yield lambda seconds: signal.alarm(seconds)
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _tree(folder: Path, skip: str = "") -> dict:
    """{relative path: sha256 or link target} of everything under `folder` except `skip`/ and
    the published-* snapshots the subprocesses write."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if rel.parts[0] in (skip, "__pycache__") or rel.parts[0].startswith("published-"):
            continue
        if p.is_symlink():
            out[rel.as_posix()] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


WRONG = 12345.0  # the planted wrong number


def _planted(path: Path) -> str:
    """Write a valid parquet table of wrong numbers at `path`; return its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = pd.DataFrame({"solver": ["Euler"], "h": [0.1], "error": [WRONG]}).to_parquet()
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _run(out: Path, *extra: str) -> int:
    return runner.main(["run", "tiny", "--out", str(out), *extra])


def _rows(out: Path) -> pd.DataFrame:
    tables, _ = run_store.read_tables(out / "results/tiny")
    return tables["rows"].drop(columns="wall_s", errors="ignore")


_REFERENCES = {}  # (flags) -> folder of an uninterrupted clean run, made once per session


@pytest.fixture
def clean(tmp_path_factory):
    """`clean(*flags)`: the folder of an uninterrupted clean run with those runner flags."""

    def get(*flags: str) -> Path:
        if flags not in _REFERENCES:
            ref = tmp_path_factory.mktemp("reference")
            assert _run(ref, *flags) == 0
            _REFERENCES[flags] = ref
        return _REFERENCES[flags]

    return get


def _stored(clean, out: Path) -> pd.DataFrame:
    """Put a clean QUICK run's results and figures in `out`; return its rows (the reference)."""
    shutil.copytree(clean("--quick"), out)
    return _rows(out)


def _assert_right_numbers(out: Path, reference: pd.DataFrame) -> None:
    rows = _rows(out)
    pd.testing.assert_frame_equal(rows, reference)
    assert WRONG not in rows["error"].to_numpy()


def _edit_provenance(out: Path, edit) -> None:
    path = out / "results/tiny/provenance.json"
    prov = json.loads(path.read_text())
    path.write_text(json.dumps(edit(prov)))


# -- Containment ---------------------------------------------------------------------------------


def test_a_table_name_with_dotdot_is_refused_and_nothing_outside_is_read(tmp_path, capsys, clean):
    out = tmp_path / "out"
    reference = _stored(clean, out)
    # provenance names a table outside the folder, with the correct checksum of that file
    sha = hashlib.sha256((tmp_path / "elsewhere/x.parquet").read_bytes()).hexdigest()
    name = "../../../elsewhere/x"

    def edit(prov):
        return {**prov, "tables": [name], "files": {f"{name}.parquet": sha}}

    _edit_provenance(out, edit)
    with pytest.raises(run_store.CorruptResult, match="is not a plain file name"):
        run_store.read_tables(out / "results/tiny")
    capsys.readouterr()
    assert runner.main(["show", "tiny", "--out", str(out)]) == 1
    shown = capsys.readouterr().out
    assert "corrupt" in shown and "not a plain file name" in shown and str(WRONG) not in shown
    assert _run(out, "--quick") == 0
    assert "stored result is corrupt, recomputing" in capsys.readouterr().out
    _assert_right_numbers(out, reference)
    with pytest.raises(ValueError, match="cannot be a file name"):
        run_store.write_tables(out / "w", {"../x": reference}, run_store.provenance("tiny", {}))


@pytest.mark.parametrize("kind", ["fifo", "symlink to /dev/zero", "symlink outside"])
def test_a_table_that_is_not_a_regular_file_is_refused_without_hanging(
    tmp_path, capsys, deadline, kind, clean
):
    out = tmp_path / "out"
    reference = _stored(clean, out)
    table = out / "results/tiny/rows.parquet"
    table.unlink()
    if kind == "fifo":
        os.mkfifo(table)
    elif kind == "symlink to /dev/zero":
        table.symlink_to("/dev/zero")
    else:  # a symlink to a valid table of wrong numbers; even its checksum is made to match
        table.symlink_to(tmp_path / "elsewhere/x.parquet")
        sha = hashlib.sha256(table.read_bytes()).hexdigest()
        _edit_provenance(out, lambda p: {**p, "files": {**p["files"], "rows.parquet": sha}})
    # the reader refuses before reading a byte (a regression would hang or read /dev/zero)
    with pytest.raises(run_store.CorruptResult, match="symbolic link|not a regular file"):
        run_store.read_regular_file(table)
    deadline(30)
    started = time.perf_counter()
    capsys.readouterr()
    assert runner.main(["show", "tiny", "--out", str(out)]) == 1
    assert "corrupt" in capsys.readouterr().out
    assert _run(out, "--quick") == 0
    assert "stored result is corrupt, recomputing" in capsys.readouterr().out
    assert time.perf_counter() - started < 30
    assert table.is_file() and not table.is_symlink()  # replaced by the recomputed table
    _assert_right_numbers(out, reference)


def test_show_escapes_control_characters_from_provenance(tmp_path, capsys, clean):
    out = tmp_path / "out"
    _stored(clean, out)
    evil = "\x1b[2J\x1b]0;pwned\x07\x1b[31mRED\r"
    _edit_provenance(out, lambda p: {**p, "device": evil, "platform": evil, "started": evil})
    capsys.readouterr()
    assert runner.main(["show", "tiny", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "\\x1b[31mRED" in shown  # shown, escaped
    # a stored package version with escapes: `run` names the change, escaped, and recomputes
    _edit_provenance(out, lambda p: {**p, "versions": {**p["versions"], "jax": evil}})
    assert _run(out, "--quick") == 0
    said = capsys.readouterr()
    assert "package versions changed (jax \\x1b[2J" in said.out
    assert "\x1b" not in said.out


# -- Integrity -----------------------------------------------------------------------------------


MALFORMED = {
    "no checksum list": lambda p: {k: v for k, v in p.items() if k != "files"},
    "checksum dropped": lambda p: {**p, "files": {"orders.parquet": p["files"]["orders.parquet"]}},
    "checksum empty": lambda p: {**p, "files": {**p["files"], "rows.parquet": ""}},
    "versions a string": lambda p: {**p, "versions": "jax 0.4"},
    "sources a list": lambda p: {**p, "sources": ["analysis"]},
    "tables empty": lambda p: {**p, "tables": [], "files": {}},
    "tables a string": lambda p: {**p, "tables": "rows"},
    "x64 missing": lambda p: {k: v for k, v in p.items() if k != "x64"},
    "not a dict": lambda p: [p],
}


@pytest.mark.parametrize("attack", list(MALFORMED) + ["truncated"])
def test_malformed_provenance_is_stale_with_its_reason_and_an_edited_table_is_never_used(
    tmp_path, capsys, attack, clean
):
    out = tmp_path / "out"
    reference = _stored(clean, out)
    _planted(out / "results/tiny/rows.parquet")  # an edited table: wrong numbers
    if attack == "truncated":  # a partial provenance, as a crash mid-write could leave
        path = out / "results/tiny/provenance.json"
        path.write_bytes(path.read_bytes()[:100])
    else:
        _edit_provenance(out, MALFORMED[attack])
    capsys.readouterr()
    assert runner.main(["show", "tiny", "--out", str(out)]) == 1
    assert "corrupt" in capsys.readouterr().out
    assert _run(out, "--quick") == 0
    said = capsys.readouterr()
    assert "stored result is corrupt, recomputing" in said.out
    assert "Traceback" not in said.err
    _assert_right_numbers(out, reference)


def test_stale_reason_says_malformed_instead_of_raising():
    current = run_store.provenance("tiny", {})
    assert "malformed" in run_store.stale_reason({**current, "versions": "x"}, current)
    assert "malformed" in run_store.stale_reason([current], current)


# -- Concurrency ---------------------------------------------------------------------------------


def _start(tiny_path: Path, out: Path, speed: str, *extra: str) -> subprocess.Popen:
    env = checkout_env(JAX_ENABLE_X64="1", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-c", PROCESS, str(tiny_path), str(out), speed, *extra]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for_chunks(out: Path, process: subprocess.Popen, count: int = 2) -> None:
    deadline = time.monotonic() + 60
    while len(list((out / "results/tiny/chunks").glob("*/*.npz"))) < count:
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "the first runner stored no chunk"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_runner_waits_and_the_first_results_are_published_whole(tmp_path, tiny, clean):
    out = tmp_path / "out" / "shared"
    hold = tmp_path / "out" / "hold"  # the first runner holds after each chunk while it exists
    hold.parent.mkdir(parents=True)
    hold.touch()
    first = _start(tiny, out, "slow", "--chunk-size", "2")  # full config, 12 slow chunks
    _wait_for_chunks(out, first, count=1)
    second = _start(tiny, out, "fast", "--quick")  # another config on the same output
    timer = threading.Timer(180, lambda: [p.kill() for p in (first, second)])
    timer.start()
    try:
        lines = []
        for line in second.stdout:  # until the second says it waits (or ends: a failure)
            lines.append(line)
            if "waiting for it to finish" in line:
                break
        hold.unlink()
        log1, _ = first.communicate(timeout=120)
        log2 = "".join(lines) + second.communicate(timeout=120)[0]
    finally:
        timer.cancel()
    assert first.returncode == 0, log1
    assert second.returncode == 0, log2
    assert "waiting for it to finish" in log2 and "the other runner finished" in log2
    print(log1, log2, sep="\n")  # shown with -rP: how long the second waited
    assert "discarded" not in log1 + log2 and "Traceback" not in log1 + log2
    # what the first published (snapshot taken under its lock) equals an uninterrupted full run
    reference = _rows(clean())
    published, prov = run_store.read_tables(tmp_path / "out/published-slow")
    assert prov["quick"] is False
    pd.testing.assert_frame_equal(published["rows"].drop(columns="wall_s"), reference)
    ref_png = (clean() / "figures/tiny/err.png").read_bytes()
    assert (tmp_path / "out/published-slow/err.png").read_bytes() == ref_png
    # the second then published its own (quick) unit: tables, provenance, figures all quick
    quick_ref = clean("--quick")
    pd.testing.assert_frame_equal(_rows(out), _rows(quick_ref))
    assert run_store.read_provenance(out / "results/tiny")["quick"] is True
    for name in ("err.png", "err.pdf", "orders.csv"):
        assert (out / "figures/tiny" / name).read_bytes() == (
            quick_ref / "figures/tiny" / name
        ).read_bytes()
    assert not (out / "results/tiny/chunks").exists()


# -- Litter --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_after_kill_9_the_next_run_resumes_cleans_litter_and_ends_identical(
    tmp_path, tiny, capsys, clean
):
    out = tmp_path / "out" / "killed"
    process = _start(tiny, out, "slow", "--chunk-size", "2")
    _wait_for_chunks(out, process, count=3)
    process.kill()  # kill -9
    process.wait(timeout=30)
    # what a kill between writes leaves: temporary files of a table, a figure and the gallery
    litter = [
        out / "results/tiny/.rows.parquet.k1x2y3.tmp",
        out / "figures/tiny/.err.png.k1x2y3.tmp",
        out / "figures/.README.md.k1x2y3.tmp",
    ]
    for path in litter:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    capsys.readouterr()
    assert _run(out, "--chunk-size", "2") == 0
    said = capsys.readouterr().out
    assert "resumed" in said and "removed 1 temporary file(s)" in said
    assert not any(p.exists() for p in litter)
    assert not (out / "results/tiny/chunks").exists()
    _assert_right_numbers(out, _rows(clean("--chunk-size", "2")))
    assert runner.main(["show", "tiny", "--out", str(out)]) == 0
    assert ".tmp" not in capsys.readouterr().out

    # killed after the provenance was written but before the chunk folder was removed
    chunks = out / "results/tiny/chunks"
    leftover = chunks / ("0123456789abcdef" * 2)
    leftover.mkdir(parents=True)
    (leftover / ("ab" * 16 + ".npz")).write_bytes(b"chunk")
    assert _run(out, "--chunk-size", "2") == 0
    said = capsys.readouterr().out
    assert "reusing them" in said and "left by a run killed after its results" in said
    assert not chunks.exists()
    # a symlink in the chunks folder (to a folder outside): never deleted through, reported
    leftover.mkdir(parents=True)
    (leftover / ("ab" * 16 + ".npz")).write_bytes(b"chunk")
    (chunks / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert _run(out, "--chunk-size", "2") == 0
    said = capsys.readouterr().out
    assert "chunks/linked is a symbolic link" in said
    assert not leftover.exists() and (chunks / "linked").is_symlink()
    assert (tmp_path / "elsewhere/x.parquet").exists()  # the autouse fixture checks its bytes


def test_a_gallery_write_failure_still_prints_the_summary_and_fails(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "figures/README.md").mkdir(parents=True)  # the gallery cannot be written there
    assert _run(out, "--quick") == 1
    said = capsys.readouterr()
    assert "[tiny] done in" in said.out and "all done in" in said.out
    assert "the gallery" in said.err and "was not written" in said.err
    assert "failed studies: (gallery)" in said.err
    assert (out / "results/tiny/provenance.json").exists()


# -- Where output goes ---------------------------------------------------------------------------


def test_without_out_a_run_writes_under_the_working_directory(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out" / "somewhere"
    out.mkdir(parents=True)
    monkeypatch.chdir(out)
    package = _tree(ROOT / "studies") | _tree(ROOT / "figures")
    assert runner.main(["run", "tiny", "--quick"]) == 0
    assert "[tiny] figures: quick-output/figures/tiny/" in capsys.readouterr().out
    assert (out / "quick-output/results/tiny/provenance.json").exists()
    gallery = (out / "quick-output/figures/README.md").read_text()
    assert "Regenerate: `python -m studies run tiny --quick`" in gallery
    assert runner.main(["show", "tiny"]) == 1  # nothing in ./results: it points to the quick ones
    assert "`python -m studies show tiny --quick`" in capsys.readouterr().out
    assert runner.main(["run", "tiny"]) == 0  # the full config: the working directory itself
    assert (out / "results/tiny/provenance.json").exists()
    assert (out / "figures/tiny/err.png").exists()
    assert runner.main(["show", "tiny", "--quick"]) == 0
    assert "QUICK" in capsys.readouterr().out
    assert _tree(ROOT / "studies") | _tree(ROOT / "figures") == package


@pytest.mark.slow
def test_a_quick_example_run_leaves_the_committed_figures_alone(tmp_path):
    figures = _tree(ROOT / "figures")
    env = checkout_env(JAX_ENABLE_X64="1", MPLBACKEND="Agg")
    script = ROOT / "examples/paper_figure.py"
    where = tmp_path / "out"
    where.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), "--quick"], cwd=where, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert (where / "quick-output/figures/demo/orders_for_paper.pdf").stat().st_size > 1000
    assert _tree(ROOT / "figures") == figures
