"""Figure helpers: the room left for legends, the split of a figure's height among rows, the
files a figure is written to, and what the mapping figure draws."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from brian2 import ms

from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.mapping import map_trajectory
from pcbio.plotting import (STYLE, figure, headroom, mapping_figure, plot_variance_gap,
                            save_figure)
from pcbio.simulate import simulate


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


def test_a_figure_is_written_in_every_format_asked_for_and_closed(tmp_path):
    """``save_figure`` writes each path in the format its extension names, whatever its case:
    vector PDF with TrueType fonts (type 42, which journals require; type 3 fonts are bitmaps),
    SVG, and PNG at STYLE's 300 dpi (a 7-inch figure is 2100 px wide); then it closes the figure
    (a loop of figures must not keep them all open)."""
    fig, axes = figure(1, width=7.0, height=2.0)
    axes[0, 0].plot([0, 1], [0, 1])
    axes[0, 0].set(xlabel="time (ms)", ylabel="rate (Hz)")
    paths = [tmp_path / "f.pdf", tmp_path / "f.PNG", tmp_path / "f.svg"]
    save_figure(fig, *paths)
    assert not plt.fignum_exists(fig.number)
    pdf, png, svg = (p.read_bytes() for p in paths)
    assert pdf.startswith(b"%PDF") and b"/FontFile2" in pdf and b"/Type3" not in pdf
    assert b"<svg" in svg[:1000]
    assert png.startswith(b"\x89PNG")
    width = int.from_bytes(png[16:20], "big")           # the IHDR chunk's width field
    assert STYLE["savefig.dpi"] == 300 and width == pytest.approx(7.0 * 300, abs=2)


def _mapped(top):
    m = load_model("linear_gaussian_2d")
    x, _ = m.sample(2, seed=0)
    traj = simulate(build_circuit(m, "rate", top=top), x, duration=20 * ms, target="numpy")
    return map_trajectory(traj, m, x, vae=False)


def test_the_mapping_figure_draws_its_series_in_the_units_its_axes_name():
    """Panel (a) plots data point 0's latents against time in ms (its axis says ms; the series
    is in s); panel (d) the ELBO summed over the batch (its axis says so) against time in ms."""
    result = _mapped("free")
    s = result.series
    fig = mapping_figure(result)
    a, _, _, d = fig.axes[:4]
    line = a.lines[0]
    np.testing.assert_allclose(line.get_xdata(), s["t"] * 1e3)
    np.testing.assert_allclose(line.get_ydata(), s["means"][0][:, 0, 0])
    assert "ms" in a.get_xlabel()
    elbo = next(l for l in d.lines if l.get_label() == "ELBO of circuit state")
    np.testing.assert_allclose(elbo.get_xdata(), s["elbo_t"] * 1e3)
    np.testing.assert_allclose(elbo.get_ydata(), s["elbo"].sum(axis=1))
    assert s["elbo"].shape[1] == 2 and "summed over batch" in d.get_ylabel()
    plt.close(fig)


def test_a_comparison_that_does_not_apply_says_so_in_its_panel():
    """With the top level clamped the rate circuit declares no gradient flow and no ELBO (the
    report gives why): panels (b)–(d) draw nothing and say which check does not apply and why;
    panel (a) is drawn as usual."""
    result = _mapped("clamped")
    skipped = result.report["skipped_checks"]
    assert {"gradient_flow", "elbo"} <= set(skipped)
    fig = mapping_figure(result)
    a, b, c, d = fig.axes[:4]
    assert a.lines
    for ax, check in ((b, "gradient_flow"), (c, "gradient_flow"), (d, "elbo")):
        assert not ax.lines and not ax.axison
        text = " ".join(t.get_text() for t in ax.texts)
        assert f"{check}: not applicable" in text and skipped[check] in text
    plt.close(fig)


def test_the_variance_gap_guide_is_the_s_squared_law_through_the_first_point():
    """For a nonlinear link the gap between ∇_μ L at posterior std s and the circuit's update
    grows as s² for small s (docs/mathematics.md): the guide line is gap₀ (s/s₀)²."""
    gaps = [{"s": 0.01, "rel_gap": 2e-4, "stderr": 1e-5}, {"s": 0.1, "rel_gap": 0.03, "stderr": 1e-3},
            {"s": 1.0, "rel_gap": 1.5, "stderr": 0.1}]
    fig, axes = figure(1)
    plot_variance_gap(axes[0, 0], gaps)
    guide = next(l for l in axes[0, 0].lines if "s^2" in l.get_label())
    np.testing.assert_allclose(guide.get_ydata(), [2e-4, 2e-2, 2.0])
    plt.close(fig)
