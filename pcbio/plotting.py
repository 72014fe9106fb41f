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
    """A figure of ``nrows × ncols`` panels, ``width`` × ``height`` inches (journal width 7 in).
    Draw it inside ``with style():`` so that text sizes follow :data:`STYLE`."""
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


def save_single(fig, path):
    """Write one figure file whose format follows the path's extension (.pdf, .png, .svg)."""
    fmt = str(path).rsplit(".", 1)[-1].lower()
    if fmt not in ("pdf", "png", "svg"):
        raise ValueError(f"plot file must end in .pdf, .png or .svg, got {path}")
    with style():
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt))
    plt.close(fig)
    return path


def mapping_figure(result, title=None, max_lines=6):
    """Four panels from a :class:`pcbio.mapping.MappingResult`: (a) latent trajectories, circuit
    vs VAE iterative inference vs reference; (b) gradient agreement over time; (c) circuit dz/dt
    against ∇_μ L/τ; (d) ELBO along the trajectory."""
    with style():
        return _mapping_figure(result, title, max_lines)


def _mapping_figure(result, title, max_lines):
    import numpy as np
    s = result.series
    t_ms = s["t"] * 1e3
    fig, axes = figure(4, width=7.2, height=2.2)
    ax = axes[0, 0]
    n = 0
    for l, (m, ref) in enumerate(zip(s["means"], s["reference"]), start=1):
        for k in range(m.shape[2]):
            if n >= max_lines:
                break
            lab = dict(label="circuit") if n == 0 else {}
            ax.plot(t_ms, m[:, 0, k], color=CIRCUIT, **lab)
            if "vae_means" in s:
                lab = dict(label=r"VAE, $\alpha = dt/\tau$") if n == 0 else {}
                ax.plot(s["vae_t"] * 1e3, s["vae_means"][l - 1][:, 0, k], ls=(0, (2, 2)),
                        color=VAE, **lab)
            ax.axhline(ref[0, k], color=REFERENCE, lw=0.6, ls=":",
                       **(dict(label=result.report["reference"].replace("_", " ")) if n == 0 else {}))
            n += 1
    ax.set(xlabel="time (ms)", ylabel="latent estimate $z$ (model units)")
    ax.legend(frameon=False)
    panel_label(ax, "a")

    ax = axes[0, 1]
    for l, (rel, err) in enumerate(zip(s["rel"], s["errors_rel"][1:]), start=1):
        ax.semilogy(t_ms, np.maximum(rel, 1e-17), label=f"level {l}: $dz/dt$ vs $\\nabla_\\mu L/\\tau$")
        ax.semilogy(t_ms, np.maximum(err, 1e-17), ls="--", label=f"level {l}: error units vs $\\varepsilon$")
    ax.set(xlabel="time (ms)", ylabel="relative error")
    ax.legend(frameon=False, fontsize=6)
    panel_label(ax, "b")

    ax = axes[0, 2]
    for l, (d, g) in enumerate(zip(s["dzdt"], s["grads"]), start=1):
        ax.plot(g.ravel(), d.ravel(), ".", ms=2, alpha=0.5, label=f"level {l}")
    lim = max(np.abs(np.concatenate([g.ravel() for g in s["grads"]])).max(), 1e-12)
    ax.plot([-lim, lim], [-lim, lim], color=REFERENCE, lw=0.6, ls=":", label="identity")
    ax.set(xlabel=r"$\nabla_\mu L / \tau$ (1/s)", ylabel=r"circuit $dz/dt$ (1/s)")
    ax.legend(frameon=False)
    panel_label(ax, "c")

    ax = axes[0, 3]
    ax.plot(s["elbo_t"] * 1e3, s["elbo"].sum(axis=1), color=CIRCUIT, label="ELBO of circuit state")
    if s["log_px"] is not None:
        ax.axhline(np.sum(s["log_px"]), color=REFERENCE, ls=":", lw=0.8, label=r"$\log p(x)$")
    ax.set(xlabel="time (ms)", ylabel="ELBO (nats, summed over batch)")
    ax.legend(frameon=False)
    panel_label(ax, "d")
    if title:
        fig.suptitle(title)
    return fig
