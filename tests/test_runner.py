"""The study runner: cache reuse, recompute reasons, resume after kill -9, failures, outputs."""

import importlib.util
import io
import json
import os
import struct
import subprocess
import sys
import time

import pandas as pd
import pytest

import studies
import studies.__main__ as runner
from analysis import results

# A small study for the runner's rules: two groups (Euler, Heun) of 12 fixed steps on y' = -y.
TINY = '''"""Tiny: Euler and Heun on y' = -y at fixed steps (a runner test study)."""
import dataclasses

import numpy as np

import analysis


@dataclasses.dataclass(frozen=True)
class Config:
    steps: tuple = tuple(range(4, 16))
    fail: bool = False


CONFIG = Config()
QUICK = Config(steps=(4, 8))
CAPTIONS = {"err": "Error against h for Euler and Heun."}
PAPER_TABLES = ("orders",)


def run(config):
    if config.fail:
        raise RuntimeError("this study fails on purpose")
    rows = analysis.sweep("linear", ["Euler", "Heun"], dt0=[1 / n for n in config.steps])
    fit = lambda g: np.polyfit(np.log(g["h"]), np.log(g["error"]), 1)[0]
    orders = rows.groupby("solver").apply(fit, include_groups=False).rename("order").reset_index()
    return {"rows": rows, "orders": orders}


def plot(results):
    from analysis import plotting

    return {"err": plotting.error_vs_step(results["rows"])}
'''
BROKEN = TINY.replace("fail: bool = False", "fail: bool = True").replace("Tiny:", "Broken:")

# The subprocess that is killed: the tiny study, with each stored chunk followed by a pause so
# the kill lands mid-sweep.
KILLED = """
import importlib.util, sys, time
import studies, studies.__main__ as runner
from analysis import results
spec = importlib.util.spec_from_file_location("studies.tiny", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.modules["studies.tiny"] = module
studies.STUDIES += ("tiny",)
runner.STUDIES += ("tiny",)
save = results.ChunkStore.save
def slow_save(self, key, out):
    save(self, key, out)
    time.sleep(0.5)
results.ChunkStore.save = slow_save
results.source_hashes = lambda *extra: {"pinned": "0"}
sys.exit(runner.main(["run", "tiny", "--out", sys.argv[2], "--chunk-size", "2"]))
"""


@pytest.fixture(autouse=True)
def pinned_sources(monkeypatch):
    """Library sources as seen by the cache rule, fixed: edits made to the checkout while these
    tests run must not turn their cache hits into misses (the rule itself is in test_results)."""
    monkeypatch.setattr(results, "source_hashes", lambda *extra: {"pinned": "0"})


def _register(tmp_path, monkeypatch, name, source):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"studies.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, f"studies.{name}", module)
    monkeypatch.setattr(studies, "STUDIES", studies.STUDIES + (name,))
    monkeypatch.setattr(runner, "STUDIES", runner.STUDIES + (name,))
    return path, module


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    return _register(tmp_path, monkeypatch, "tiny", TINY)


def _outputs(out):
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in (out / "figures").rglob("*")
        if p.is_file()
    }


def test_list_describes_every_study_and_unknown_names_fail_before_running(capsys):
    assert runner.main(["list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(studies.STUDIES)
    assert all(len(line.split(maxsplit=1)) == 2 for line in listed)  # name + description
    assert runner.main(["run", "demo", "dmeo"]) == 2
    assert "'demo'" in capsys.readouterr().err  # did you mean


def test_demo_quick_outputs_are_byte_identical_when_reused_and_when_recomputed(tmp_path, capsys):
    argv = ["run", "demo", "--quick", "--out", str(tmp_path)]
    assert runner.main(argv) == 0
    first = _outputs(tmp_path)
    assert set(first) >= {
        "figures/README.md",
        "figures/demo/orders.pdf",
        "figures/demo/orders.png",
        "figures/demo/orders.csv",
        "figures/demo/orders.tex",
    }
    png, pdf = first["figures/demo/orders.png"], first["figures/demo/orders.pdf"]
    phys = png.index(b"pHYs")
    assert struct.unpack(">II", png[phys + 4 : phys + 12]) == (11811, 11811)  # 300 dpi
    assert b"CreationDate" not in pdf and b"ModDate" not in pdf
    gallery = first["figures/README.md"].decode()
    assert "![orders](demo/orders.png)" in gallery
    assert "Regenerate: `python -m studies run demo --quick`" in gallery
    assert studies.load("demo").CAPTIONS["orders"] in gallery
    assert "\\toprule" in first["figures/demo/orders.tex"].decode()
    assert not (tmp_path / "results/demo/chunks").exists()  # removed once the run finished
    capsys.readouterr()

    assert runner.main(argv) == 0
    assert "reusing them" in capsys.readouterr().out
    assert _outputs(tmp_path) == first
    assert runner.main([*argv, "--force"]) == 0
    assert "computing (quick): --force" in capsys.readouterr().out
    assert _outputs(tmp_path) == first

    assert runner.main(["show", "demo", "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "status:  current" in shown and "orders: 6 rows" in shown and "h-input" in shown


def test_changed_inputs_recompute_and_say_why(tmp_path, tiny, capsys):
    argv = ["run", "tiny", "--out", str(tmp_path)]
    assert runner.main(argv) == 0
    out = capsys.readouterr()
    assert "computing: no stored results" in out.out
    assert "[tiny] sweep 1: 2/2 chunks, 24/24 solves" in out.err  # plain log line, no TTY
    prov_path = tmp_path / "results/tiny/provenance.json"
    prov = json.loads(prov_path.read_text())
    jax_version = prov["versions"]["jax"]
    prov["versions"]["jax"] = "0.0.1"
    prov_path.write_text(json.dumps(prov))
    assert runner.main(argv) == 0
    assert f"package versions changed (jax 0.0.1 -> {jax_version})" in capsys.readouterr().out
    assert runner.main([*argv, "--quick"]) == 0
    assert "stored results are from the full config" in capsys.readouterr().out
    tables, prov = results.read_tables(tmp_path / "results/tiny")
    assert prov["quick"] is True and len(tables["rows"]) == 4


def test_corrupted_result_is_reported_and_recomputed(tmp_path, tiny, capsys):
    argv = ["run", "tiny", "--out", str(tmp_path)]
    assert runner.main(argv) == 0
    before, _ = results.read_tables(tmp_path / "results/tiny")
    path = tmp_path / "results/tiny/rows.parquet"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    capsys.readouterr()
    assert runner.main(argv) == 0
    assert "rows.parquet does not match its checksum" in capsys.readouterr().out
    after, _ = results.read_tables(tmp_path / "results/tiny")
    for name in before:
        pd.testing.assert_frame_equal(
            after[name].drop(columns="wall_s", errors="ignore"),
            before[name].drop(columns="wall_s", errors="ignore"),
        )


def test_a_failing_study_is_named_and_the_others_still_run(tmp_path, tiny, monkeypatch, capsys):
    _register(tmp_path, monkeypatch, "broken", BROKEN)
    assert runner.main(["run", "broken", "tiny", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "failed studies: broken" in err and "fails on purpose" in err
    assert (tmp_path / "results/tiny/provenance.json").exists()
    assert (tmp_path / "figures/tiny/err.png").exists()
    assert not (tmp_path / "results/broken").exists()


def test_kill_9_mid_sweep_resumes_from_finished_chunks_to_the_identical_table(
    tmp_path, tiny, capsys
):
    path, module = tiny
    out = tmp_path / "out"
    env = {**os.environ, "JAX_ENABLE_X64": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(path), str(out)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    chunks = out / "results/tiny/chunks"
    deadline = time.monotonic() + 240
    while len(list(chunks.glob("*/*.npz"))) < 3 and proc.poll() is None:
        assert time.monotonic() < deadline, "the subprocess stored no chunks in time"
        time.sleep(0.05)
    proc.kill()
    assert proc.wait() == -9
    stored = len(list(chunks.glob("*/*.npz")))
    assert 3 <= stored < 12 and not (out / "results/tiny/provenance.json").exists()

    assert runner.main(["run", "tiny", "--out", str(out), "--chunk-size", "2"]) == 0
    assert f"resumed {stored} finished chunk(s)" in capsys.readouterr().out
    resumed, _ = results.read_tables(out / "results/tiny")
    with results.recording(results.ChunkStore(tmp_path / "fresh", chunk_size=2)):
        whole = module.run(module.CONFIG)  # the same chunks, uninterrupted
    pd.testing.assert_frame_equal(
        resumed["rows"].drop(columns="wall_s"), whole["rows"].drop(columns="wall_s")
    )
    pd.testing.assert_frame_equal(resumed["orders"], whole["orders"])


def test_progress_draws_a_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = runner.Progress("demo", stream)
    progress.begin(chunks=4, solves=40)
    progress.advance(1, 10, cached=True)
    progress.advance(1, 10, cached=False)
    text = stream.getvalue()
    assert text.count("\r") == 2 and "##########.........." in text
    assert "2/4 chunks, 20/40 solves (10 resumed)" in text and "left" in text
