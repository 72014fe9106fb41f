"""Figure style and saving: publication-ready vector PDF plus PNG, written atomically."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .io import check_output_path, write_together  # noqa: E402

if TYPE_CHECKING:
    from .mapping import MappingResult

STYLE = {
    "font.size": 8, "axes.titlesize": 9, "axes.labelsize": 8, "legend.fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "axes.spines.top": False,
    "axes.spines.right": False, "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 300,
    "figure.constrained_layout.use": True, "lines.linewidth": 1.2,
}

#: colours for "circuit" and "VAE side" wherever both appear
CIRCUIT, VAE, REFERENCE = "#c0392b", "#2471a3", "0.35"


@contextmanager
def style() -> Iterator[None]:
    with plt.rc_context(STYLE):
        yield


def figure(ncols: int, nrows: int = 1, width: float = 7.0, height: float = 2.4,
           height_ratios: Sequence[float] | None = None) -> tuple[plt.Figure, np.ndarray]:
    """A figure of ``nrows × ncols`` panels, ``width`` × ``height`` inches a row (journal width
    7 in); ``height_ratios`` shares the ``height · nrows`` inches unequally among the rows (a
    row of images needs less than a row of plots).  Draw it inside ``with style():`` so that
    text sizes follow :data:`STYLE`."""
    with style():
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False,
                                 height_ratios=height_ratios)
    return fig, axes


def headroom(ax: plt.Axes, fraction: float) -> None:
    """Raise the top of ``ax``'s y range so that the top ``fraction`` of the panel is free of
    data (room for a legend above the curves); works on linear and log axes.  ``fraction`` must
    be in [0, 1): 1 would leave no room for the data."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1) (the share of the panel left free), "
                         f"got {fraction}")
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(top=lo * (hi / lo) ** (1 / (1 - fraction)))
    else:
        ax.set_ylim(top=lo + (hi - lo) / (1 - fraction))


def panel_label(ax: plt.Axes, letter: str) -> None:
    """The panel's letter (a, b, …), bold, above its top-left corner."""
    ax.text(-0.18, 1.05, letter, transform=ax.transAxes, fontweight="bold", fontsize=10)


FIGURE_FORMATS = ("pdf", "png", "svg")


def check_figure_path(path: str | Path, what: str = "figure file") -> str:
    """The format of a figure path, from its extension; ValueError if it is not one we write or
    the file could not be written (checked before any computation)."""
    fmt = str(path).rsplit(".", 1)[-1].lower()
    if fmt not in FIGURE_FORMATS:
        raise ValueError(f"{what} must end in .pdf, .png or .svg, got {path}")
    check_output_path(path, what)
    return fmt


def figure_writers(fig: plt.Figure,
                   *paths: str | Path) -> list[tuple[str | Path, Callable[[str], None]]]:
    """``(path, write)`` pairs for :func:`pcbio.io.write_together`: ``fig`` in each format (from
    the extension: vector PDF/SVG, 300-dpi PNG)."""
    def writer(fmt):
        def write(tmp):
            with style():
                fig.savefig(tmp, format=fmt)
        return write
    return [(p, writer(check_figure_path(p))) for p in paths]


def save_figure(fig: plt.Figure, *paths: str | Path,
                together: Iterable[tuple[str | Path, Callable[[str], None]]] = ()) -> list[str]:
    """Write ``fig`` to every path — and the ``(path, write)`` items of ``together`` (e.g. the
    JSON behind it) — all together or none, then close it; returns the paths."""
    try:
        return write_together(list(together) + figure_writers(fig, *paths))
    finally:
        plt.close(fig)


def mapping_figure(result: MappingResult, title: str | None = None) -> plt.Figure:
    """Four panels from a :class:`pcbio.mapping.MappingResult`: (a) latent trajectories, circuit
    vs VAE iterative inference vs reference; (b) agreement over time; (c) circuit dz/dt against
    ∇_μ L/τ; (d) ELBO along the trajectory.  A panel whose comparison did not apply to the
    circuit says so instead."""
    needs = {plot_agreement: ("rel", "gradient_flow"), plot_gradient_scatter: ("grads", "gradient_flow"),
             plot_elbo: ("elbo", "elbo")}
    with style():
        fig, axes = figure(4, width=7.2, height=2.2)
        for ax, draw, letter in zip(axes[0], (plot_latents, plot_agreement, plot_gradient_scatter,
                                              plot_elbo), "abcd"):
            key, check = needs.get(draw, (None, None))
            if key is None or key in result.series:
                draw(ax, result)
            else:
                reason = result.report["skipped_checks"].get(check, "not computed")
                ax.text(0.5, 0.5, f"{check}: not applicable\n({reason})", ha="center",
                        va="center", wrap=True, fontsize=6, transform=ax.transAxes)
                ax.set_axis_off()
            panel_label(ax, letter)
        if title:
            fig.suptitle(title)
    return fig


def plot_latents(ax: plt.Axes, result: MappingResult, max_lines: int = 6) -> None:
    """Latent estimates of data point 0 over time: circuit, VAE iterative inference, reference."""
    s = result.series
    n = 0
    for l, (m, ref) in enumerate(zip(s["means"], s["reference"]), start=1):
        for k in range(m.shape[2]):
            if n >= max_lines:
                break
            first = n == 0
            ax.plot(s["t"] * 1e3, m[:, 0, k], color=CIRCUIT, label="circuit" if first else None)
            if "vae_means" in s:
                ax.plot(s["vae_t"] * 1e3, s["vae_means"][l - 1][:, 0, k], ls=(0, (2, 2)), color=VAE,
                        label=r"VAE, $\alpha = dt/\tau$" if first else None)
            ax.axhline(ref[0, k], color=REFERENCE, lw=0.6, ls=":",
                       label=result.report["reference"].replace("_", " ") if first else None)
            n += 1
    ax.set(xlabel="time (ms)", ylabel="latent estimate $z$ (model units)")
    ax.legend(frameon=False)


def plot_agreement(ax: plt.Axes, result: MappingResult, label: str | None = None,
                   color: str | None = None) -> None:
    """Relative error over time (all levels) of dz/dt against ∇_μ L/τ (solid) and of the error
    units against ε (dashed).  With ``label`` (several results on one axis) the solid line carries
    the label and the title explains the line styles."""
    s = result.series
    t_ms = s["t"] * 1e3
    color = color or CIRCUIT
    errors = s.get("errors_rel", [None] * (len(s["rel"]) + 1))[1:]
    for l, (rel, err) in enumerate(zip(s["rel"], errors)):
        first = l == 0
        solid = (label or r"$dz/dt$ vs $\nabla_\mu L/\tau$") if first else None
        dashed = r"error units vs $\varepsilon$" if first and label is None else None
        ax.semilogy(t_ms, np.maximum(rel, 1e-17), color=color, lw=0.8, label=solid)
        if err is not None:
            ax.semilogy(t_ms, np.maximum(err, 1e-17), ls="--", color=color, lw=0.8, label=dashed)
    handles, labels = ax.get_legend_handles_labels()
    if label is not None:          # explain the line styles once, in grey
        from matplotlib.lines import Line2D
        handles += [Line2D([], [], color=REFERENCE, lw=0.8),
                    Line2D([], [], color=REFERENCE, lw=0.8, ls="--")]
        labels += [r"$dz/dt$ vs $\nabla_\mu L/\tau$", r"error units vs $\varepsilon$"]
    ax.set(xlabel="time (ms)", ylabel="relative error (all levels)")
    ax.legend(handles, labels, frameon=False, fontsize=5, loc="center right")


def plot_gradient_scatter(ax: plt.Axes, result: MappingResult) -> None:
    """Circuit dz/dt against ∇_μ L/τ at the circuit's own states (all levels, units, steps)."""
    s = result.series
    for l, (d, g) in enumerate(zip(s["dzdt"], s["grads"]), start=1):
        ax.plot(g.ravel(), d.ravel(), ".", ms=2, alpha=0.5, label=f"level {l}")
    lim = max(np.abs(np.concatenate([g.ravel() for g in s["grads"]])).max(), 1e-12)
    ax.plot([-lim, lim], [-lim, lim], color=REFERENCE, lw=0.6, ls=":", label="identity")
    ax.set(xlabel=r"$\nabla_\mu L / \tau$ (1/s)", ylabel=r"circuit $dz/dt$ (1/s)")
    ax.legend(frameon=False)


def plot_elbo(ax: plt.Axes, result: MappingResult) -> None:
    """ELBO of the circuit's state along the run, with log p(x) where it is known."""
    s = result.series
    ax.plot(s["elbo_t"] * 1e3, s["elbo"].sum(axis=1), color=CIRCUIT, label="ELBO of circuit state")
    if s["log_px"] is not None:
        ax.axhline(np.sum(s["log_px"]), color=REFERENCE, ls=":", lw=0.8, label=r"$\log p(x)$")
    ax.set(xlabel="time (ms)", ylabel="ELBO (nats, summed over batch)")
    ax.legend(frameon=False)


def plot_variance_gap(ax: plt.Axes, gaps: list[dict]) -> None:
    """Relative gap between ∇_μ L at posterior std s and the circuit's update, against s."""
    s = np.array([g["s"] for g in gaps])
    gap = np.array([g["rel_gap"] for g in gaps])
    err = np.array([g["stderr"] for g in gaps])
    ax.errorbar(s, gap, yerr=err, marker="o", ms=3, color=CIRCUIT, capsize=2,
                label=r"$\|\nabla_\mu L - \nabla_z \log p\| / \|\nabla_z \log p\|$")
    ax.plot(s, gap[0] * (s / s[0]) ** 2, color=REFERENCE, ls=":", lw=0.8, label=r"$\propto s^2$")
    ax.set(xscale="log", yscale="log", xlabel="posterior std $s$ (model units)",
           ylabel="relative gap")
    ax.legend(frameon=False, fontsize=6, loc="upper left")
