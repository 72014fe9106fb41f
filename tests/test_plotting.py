"""Figure helpers: the room left for legends and the split of a figure's height among rows."""

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pcbio.plotting import figure, headroom


@pytest.mark.parametrize("scale", ["linear", "log"])
def test_headroom_leaves_the_top_fraction_of_the_panel_free(scale):
    """After ``headroom(ax, f)`` the old top of the y range sits at 1 − f of the panel's height
    (in the axis's own coordinates: linear, or log for a log axis), and the bottom is unchanged."""
    fig, axes = figure(1)
    ax = axes[0, 0]
    ax.plot([1, 2, 3], [1e-3, 1e-1, 10.0])
    ax.set_yscale(scale)
    lo, hi = ax.get_ylim()
    headroom(ax, 0.3)
    new_lo, new_hi = ax.get_ylim()
    plt.close(fig)
    to_axis = np.log10 if scale == "log" else (lambda v: v)
    assert new_lo == lo
    position = (to_axis(hi) - to_axis(lo)) / (to_axis(new_hi) - to_axis(lo))
    assert position == pytest.approx(0.7, rel=1e-12)


def test_headroom_refuses_a_fraction_outside_0_to_1():
    """A fraction of 1 or more would put the data's top at or beyond the panel's (a division by
    zero or a flipped axis), and a negative one would cut the data off: both are refused in one
    line, and the axis is left as it was."""
    fig, axes = figure(1)
    ax = axes[0, 0]
    ax.plot([1, 2, 3], [1.0, 2.0, 3.0])
    before = ax.get_ylim()
    for fraction in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
            headroom(ax, fraction)
    assert ax.get_ylim() == before
    plt.close(fig)


def test_height_ratios_share_the_figure_height_among_rows():
    """``figure(…, height_ratios=(1, 2))``: the second row's panels are twice as tall as the
    first's, and the figure is ``height · nrows`` inches tall."""
    fig, axes = figure(2, nrows=2, width=6.0, height=2.0, height_ratios=(1, 2))
    assert fig.get_size_inches()[1] == pytest.approx(4.0)
    fig.canvas.draw()
    top, bottom = (axes[r, 0].get_position().height for r in (0, 1))
    plt.close(fig)
    assert bottom / top == pytest.approx(2.0, rel=0.05)
