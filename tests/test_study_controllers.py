"""The controllers study's QUICK config end to end: tables, what they must say, and the figures."""

import pytest

import studies
from analysis import step_log
from studies import controllers as study

STUDY = "controllers"  # the QUICK run every test here gets as `quick_study`
pytestmark = pytest.mark.slow  # end to end: the study's whole QUICK config


def test_tables_are_present_and_complete(quick_study):
    assert set(quick_study.tables) == {
        "nonstiff",
        "proportionality",
        "histories",
        "history_solves",
        "spread_rows",
        "spread",
        "fine",
        "jumps",
    }
    assert set(study.PAPER_TABLES) <= set(quick_study.tables)
    q = study.QUICK
    rows = quick_study.tables["nonstiff"]
    assert len(rows) == len(q.solvers) * len(q.presets) * len(q.rtols)
    assert (rows["status"] == "ok").all() and set(step_log.STEP_METRICS) <= set(rows.columns)
    assert (rows["attempts_logged"] == rows["num_steps"]).all()  # the log buffer was large enough
    assert len(quick_study.tables["proportionality"]) == len(q.solvers) * len(q.presets)


def test_logged_histories_agree_with_the_solver_counts(quick_study):
    for _, log in quick_study.tables["histories"].groupby("controller"):
        assert log["step"].tolist() == list(range(len(log)))
        assert ((log["error"] < 1) == log["accepted"]).all()


def test_spread_follows_the_tolerance_only_without_h_as_input(quick_study):
    s = quick_study.tables["spread"]
    free = s[s["variant"] != "h input"]
    # Limit and frozen-h fields are ordinary ODEs: every solve is within a small multiple of
    # rtol of the same y(T) (global error ≈ accumulated local errors on a contractive problem).
    assert (free["spread"] <= 10 * free["rtol"]).all()
    with_h = s[s["variant"] == "h input"].set_index(["family", "rtol"])["spread"]
    worst_free = free.groupby(["family", "rtol"])["spread"].max()
    assert (with_h >= 100 * worst_free.reindex(with_h.index)).all()


def test_the_step_dependent_output_jumps_far_more_than_the_h_free_one(quick_study):
    j = quick_study.tables["jumps"].set_index("field")
    assert j.loc["h-free", "largest_jump"] <= j.loc["h-free", "between_rtol_hi"]
    assert j.loc["h input", "largest_jump"] > 100 * j.loc["h-free", "largest_jump"]


def test_plot_returns_every_captioned_figure(quick_study):
    figs = quick_study.figures
    assert set(figs) == set(study.CAPTIONS)
    # The spread figure draws the stored spread: a panel per family, a line per variant.
    spread = quick_study.tables["spread"]
    for ax, (family, s) in zip(
        figs["spread"].axes, spread.groupby("family", sort=False), strict=True
    ):
        assert ax.get_title() == family
        for line, (variant, g) in zip(
            ax.get_lines()[:-1], s.groupby("variant", sort=False), strict=True
        ):
            assert line.get_label() == variant
            assert list(line.get_ydata()) == list(g.sort_values("rtol")["spread"].clip(lower=1e-17))
    assert studies.describe("controllers").startswith("Controllers:")
