"""Figure style and saving: publication-ready vector PDF plus PNG, written atomically."""

from contextlib import contextmanager

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import atomic_write  # noqa: E402

STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False,
    "axes.spines.right": False, "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 300,
    "figure.constrained_layout.use": True, "lines.linewidth": 1.2,
}

#: colours for "circuit" and "VAE side" wherever both appear
CIRCUIT, VAE, REFERENCE = "#c0392b", "#2471a3", "0.35"


@contextmanager
def style():
    with plt.rc_context(STYLE):
        yield


def figure(ncols, nrows=1, width=7.0, height=2.4):
    """A figure of ``nrows × ncols`` panels, ``width`` × ``height`` inches (journal width 7 in)."""
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False)
    return fig, axes


def panel_label(ax, letter):
    ax.text(-0.18, 1.05, letter, transform=ax.transAxes, fontweight="bold", fontsize=10)


def save_figure(fig, stem):
    """Write ``stem.pdf`` (vector) and ``stem.png`` (300 dpi); returns the two paths."""
    paths = [f"{stem}.pdf", f"{stem}.png"]
    with style():
        for path in paths:
            fmt = path.rsplit(".", 1)[1]
            atomic_write(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt))
    plt.close(fig)
    return paths
