"""The house style: fixed solver/controller styles, slope triangles, labels, deterministic files."""

import itertools
import struct
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from helpers import checkout_env

from analysis import InvalidArgument, controller, solvers
from analysis import plotting as aplt

ROOT = Path(__file__).resolve().parent.parent


def _triangles(ax):
    """Bounding boxes (in decades) of the slope triangles drawn on `ax`."""
    boxes = []
    for line in ax.get_lines():
        if line.get_gid() == "slope_triangle":
            x, y = np.log10(line.get_data())
            boxes.append((x.min(), x.max(), y.min(), y.max(), np.ptp(y) / np.ptp(x)))
    return boxes


def test_every_solver_and_controller_has_its_own_fixed_colour_and_marker():
    names = list(solvers.NAMES) + ["fixed", *controller.PRESETS]
    styles = [aplt.solver_style(n) for n in names]
    pairs = [(s["color"], s["marker"]) for s in styles]
    assert len(set(pairs)) == len(names)
    assert aplt.solver_style("Tsit5") == aplt.solver_style("Tsit5")
    assert aplt.solver_style("my-solver") == aplt.solver_style("my-solver")


def test_slope_triangles_have_the_slope_and_stack_without_overlapping():
    with aplt.paper_style():
        fig, ax = plt.subplots()
        for order in (1, 2, 5):
            aplt.slope_triangle(ax, 1e-2, 1e-3, order)  # all anchored at one point
    boxes = _triangles(ax)
    assert [round(b[4], 12) for b in boxes] == [1, 2, 5]  # rise over run, in decades
    for a, b in itertools.combinations(boxes, 2):
        assert a[3] <= b[2] or b[3] <= a[2]  # vertically disjoint
    aplt.close(fig)


def test_slope_triangle_moves_off_a_data_line():
    with aplt.paper_style():
        fig, ax = plt.subplots()
        h = np.logspace(-3, -1, 9)
        ax.loglog(h, h**2, "o-")
        aplt.slope_triangle(ax, 2e-3, 4e-6, 2)  # anchored on the line itself
    x0, x1, y0, y1, _ = _triangles(ax)[0]
    lx = np.linspace(x0, x1, 50)
    assert np.all((2 * lx < y0) | (2 * lx > y1))  # the line y = h² never enters the box
    aplt.close(fig)


def test_axes_helpers_label_log_axes_and_colour_bars():
    with aplt.paper_style():
        fig, ax = plt.subplots()
        mesh = ax.pcolormesh(np.arange(9.0).reshape(3, 3))
        aplt.log_axis(ax, "x", "step size h", "time units")
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "step size h (time units)"
        assert aplt.colorbar(mesh, ax, "spectral radius").ax.get_ylabel() == "spectral radius"
        with pytest.raises(InvalidArgument, match="label"):
            aplt.colorbar(mesh, ax, " ")
        with pytest.raises(InvalidArgument, match="which='z'"):
            aplt.log_axis(ax, "z", "t")
    aplt.close(fig)


def test_render_is_deterministic_300_dpi_and_timestamp_free():
    with aplt.paper_style():
        assert plt.rcParams["font.size"] == 8 and aplt.STYLE_FILE.exists()
        fig, ax = plt.subplots(figsize=(aplt.COLUMN_WIDTH, 2.4))
        ax.loglog([0.1, 0.02], [1e-2, 4e-4], **aplt.solver_style("Heun"), label="Heun")
        ax.legend()
    png, pdf = aplt.render(fig, "png"), aplt.render(fig, "pdf")
    assert aplt.render(fig, "png") == png and aplt.render(fig, "pdf") == pdf
    i = png.index(b"pHYs")
    assert struct.unpack(">II", png[i + 4 : i + 12]) == (11811, 11811)  # 300 dpi in px/m
    assert b"CreationDate" not in pdf and b"ModDate" not in pdf
    with pytest.raises(InvalidArgument, match="fmt='svg'"):
        aplt.render(fig, "svg")
    aplt.close(fig)


def _tick_labels(ax):
    """The x tick labels matplotlib draws: their numeric values and their bounding boxes."""
    ax.figure.canvas.draw()
    ticks = [*ax.xaxis.get_major_ticks(), *ax.xaxis.get_minor_ticks()]
    drawn = [t for t in ticks if t.label1.get_visible() and t.label1.get_text()]
    lo, hi = sorted(ax.get_xlim())
    inside = [t for t in drawn if lo <= t.get_loc() <= hi]
    renderer = ax.figure.canvas.get_renderer()
    return [t.get_loc() for t in inside], [t.label1.get_window_extent(renderer) for t in inside]


@pytest.mark.parametrize("made_log_by", ["log_axis", "loglog then render"])
@pytest.mark.parametrize("span", [(0.025, 0.2), (0.15, 0.8), (1e-4, 1e-1)])
def test_log_tick_labels_are_1_2_5_and_never_collide(made_log_by, span):
    with aplt.paper_style():
        fig, ax = plt.subplots(figsize=(aplt.COLUMN_WIDTH, 2.4))
        ax.loglog(span, [1.0, 2.0])
        if made_log_by == "log_axis":
            aplt.log_axis(ax, "x", "h")
        else:
            aplt.render(fig, "png")
    values, boxes = _tick_labels(ax)
    mantissas = {round(v / 10 ** np.floor(np.log10(v) + 1e-9), 6) for v in values}
    assert mantissas <= {1.0, 2.0, 5.0}, mantissas
    assert len(values) >= 2  # every span here shows at least two labelled ticks
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b)
    aplt.close(fig)


def _branch_rows(d):
    """A fixed_point_branches-shaped frame of a d-dimensional system (d = 1: column y)."""
    states = {"y": [0.0, 1.0]} if d == 1 else {f"y{k}": [0.0, k + 1.0] for k in range(d)}
    return pd.DataFrame(
        {"system": "s", "solver": "Euler", "h": [0.1, 0.1], **states,
         "stable": [True, False], "spurious": [False, True]}
    )  # fmt: skip


def test_branches_plot_draws_any_component_of_a_multi_dimensional_state():
    fig = aplt.branches(_branch_rows(2), component=1)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "fixed point $y_{1}^*$"
    drawn = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    assert sorted(drawn) == [0.0, 2.0]  # the y1 column
    aplt.close(fig)
    fig = aplt.branches(_branch_rows(1))  # a scalar system: column y, as before
    assert fig.axes[0].get_ylabel() == "fixed point y*"
    aplt.close(fig)


@pytest.mark.parametrize(
    "d, component, valid",
    [
        (2, 2, "one of 0, 1"),
        (3, -1, "one of 0, 1, 2"),
        (2, "1", "one of 0, 1"),
        (1, 1, "component = 0"),
    ],
)
def test_branches_plot_names_the_valid_components_for_a_bad_one(d, component, valid):
    with pytest.raises(InvalidArgument, match=f"component={component!r} is invalid.*{valid}"):
        aplt.branches(_branch_rows(d), component=component)


@pytest.mark.slow  # a fresh process importing jax
def test_importing_the_plotting_package_keeps_the_users_backend():
    # A notebook's backend must survive `import analysis.plotting` (it used to switch to Agg).
    code = "import analysis.plotting, matplotlib; print(matplotlib.get_backend())"
    env = checkout_env(MPLBACKEND="svg")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "svg"
