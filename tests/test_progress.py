"""Progress from the Python API (`analysis.progress`): a bar when forced on or on a terminal,
nothing at all otherwise, never a second bar under the study runner's, and a sweep's rows do not
depend on whether its bar is drawn."""

import io

import pytest

import analysis
import studies.__main__ as runner
from analysis import chunk_store, progress
from analysis.errors import InvalidArgument


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _no_env_setting(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)


def _final_line(text: str) -> str:
    """What a terminal shows last: the text after the last carriage return."""
    return text.rstrip("\n").split("\r")[-1]


def test_quiet_when_the_stream_is_not_a_terminal(capsys):
    out = io.StringIO()
    with progress.bar(10, "work", "solve", file=out) as b:
        b.update(10)
    with progress.bar(10, "work", "solve") as b:  # standard error, captured: not a terminal
        b.update(10)
    assert list(progress.steps(["a", "b"], "parts")) == ["a", "b"]
    assert out.getvalue() == ""
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal_with_the_right_final_count():
    out = Terminal()
    with progress.bar(7, "work", "solve", file=out) as b:
        for _ in range(7):
            b.update(1)
    final = _final_line(out.getvalue())
    assert "work" in final and "7/7" in final and "100%" in final


def test_forced_on_and_off(monkeypatch):
    out = io.StringIO()
    with progress.enabled(True), progress.bar(3, "work", "solve", file=out) as b:
        b.update(3)
    assert "3/3" in _final_line(out.getvalue())

    monkeypatch.setenv(progress.ENV, "1")
    out = io.StringIO()
    with progress.bar(2, "work", file=out) as b:
        b.update(2)
    assert "2/2" in _final_line(out.getvalue())
    with progress.enabled(False):  # the context wins over the environment
        assert not progress.is_enabled(Terminal())

    monkeypatch.setenv(progress.ENV, "0")
    out = Terminal()
    with progress.bar(2, "work", file=out) as b:
        b.update(2)
    assert out.getvalue() == ""

    monkeypatch.setenv(progress.ENV, "yes")
    with pytest.raises(InvalidArgument, match="STEPDEP_PROGRESS"):
        progress.is_enabled()
    with pytest.raises(InvalidArgument, match="True or False"):
        with progress.enabled(1):
            pass


def test_steps_names_the_part_running_and_counts_parts():
    out = io.StringIO()
    seen = []
    with progress.enabled(True):
        for name in progress.steps(["convergence", "controllers", "stability"], "m", file=out):
            seen.append((name, _final_line(out.getvalue())))
    assert [name for name, _ in seen] == ["convergence", "controllers", "stability"]
    for i, (name, shown) in enumerate(seen):  # while a part runs, the bar names it
        assert name in shown and f"{i}/3" in shown
    assert "3/3" in _final_line(out.getvalue())


def test_steps_closes_its_bar_when_the_loop_is_left():
    out = io.StringIO()
    with progress.enabled(True):
        parts = progress.steps(["a", "b", "c"], "m", file=out)
        for name in parts:
            if name == "b":
                break
        parts.close()  # what leaving a for loop over a generator does when it is dropped
    assert out.getvalue().endswith("\n")  # tqdm's close ends the line
    with progress.enabled(True), progress.bar(1, "next", file=out) as b:
        b.update(1)
    assert "next" in _final_line(out.getvalue())  # the next bar is a top-level one again


def test_no_second_bar_under_the_runners_store(tmp_path):
    out, runner_out = Terminal(), io.StringIO()
    store = chunk_store.ChunkStore(
        tmp_path / "chunks", progress=runner.Progress("demo", runner_out), on_event=print
    )
    with chunk_store.recording(store):
        assert not progress.is_enabled(out)
        with progress.enabled(True):  # even forced on: the runner draws the bar
            assert not progress.is_enabled(out)
            with progress.bar(3, "work", file=out) as b:
                b.update(3)
    assert out.getvalue() == ""
    # a store without a progress of its own (a user's `recording`) leaves the bar on
    with chunk_store.recording(chunk_store.ChunkStore(tmp_path / "mine")):
        assert progress.is_enabled(Terminal())


def test_a_sweep_draws_a_bar_and_returns_the_same_rows(capsys, tmp_path):
    grid = dict(dt0=[0.1, 0.05, 0.025, 0.0125, 0.00625])
    with progress.enabled(False):
        quiet = analysis.sweep("linear", ["Euler", "Heun"], chunk_size=2, **grid)
    assert capsys.readouterr().err == ""
    with progress.enabled(True):
        shown = analysis.sweep("linear", ["Euler", "Heun"], chunk_size=2, **grid)
    err = capsys.readouterr().err
    assert "sweep" in err and "10/10" in _final_line(err)
    cols = [c for c in quiet.columns if c not in ("wall_s", "compile_s", "run_s")]
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(quiet[cols], shown[cols])

    # under the runner's store (its own progress): only the runner's lines, no tqdm bar
    runner_out = io.StringIO()
    store = chunk_store.ChunkStore(
        tmp_path / "chunks", progress=runner.Progress("demo", runner_out), on_event=print
    )
    with progress.enabled(True), chunk_store.recording(store):
        again = analysis.sweep("linear", ["Euler", "Heun"], chunk_size=2, **grid)
    assert capsys.readouterr().err == ""
    assert "6/6 chunks, 10/10 solves" in runner_out.getvalue()
    pd_testing.assert_frame_equal(quiet[cols], again[cols])
