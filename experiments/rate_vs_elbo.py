"""Rate circuit vs ELBO gradient: the predictive-coding / VAE correspondence, measured.

Top row, linear-Gaussian (models/linear_gaussian_3level.toml): (a) the brian2 circuit's latent
trajectories against VAE gradient iterative inference (α = dt/τ) and the exact posterior mean;
(b) per-step agreement of dz/dt with ∇_μ L/τ and of the error units with ε — round-off for
instantaneous error units, a real departure for dynamic ones; (c) dz/dt against ∇_μ L/τ; (d) the
ELBO of the circuit's state rising to log p(x).

Bottom row, nonlinear (models/tanh_2level.toml): (e) trajectories reaching the MAP; (f) dz/dt
against ∇_z log p/τ; (g) the gap between the circuit's update and ∇_μ L at posterior standard
deviation s, growing as s²; (h) the Laplace ELBO along the run.  The three circuit runs and
their mappings are independent: they go to the pool the experiment is given
(``pcbio run rate_vs_elbo --workers 3`` or ``--scheduler ADDRESS``).
"""

from brian2 import ms

from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.mapping import map_trajectory
from pcbio.plotting import (CIRCUIT, VAE, figure, panel_label, plot_agreement, plot_elbo, plot_gradient_scatter,
                            plot_latents, plot_variance_gap, style)
from pcbio.progress import SILENT
from pcbio.simulate import simulate
from pcbio.sweep import Pool

DESCRIPTION = "rate circuit vs ELBO gradient, linear (exact) and tanh (gap growing with s)"
TARGET = "numpy"     # small networks: brian2's numpy target needs no compilation


DT, TAU, BATCH = 0.1 * ms, 10 * ms, 4
S_VALUES = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]
RUNS = [("linear_gaussian_3level", "instant"), ("linear_gaussian_3level", "dynamic"),
        ("tanh_2level", "instant")]


def mapped_run(task):
    """One circuit run and its mapping, including the variance-gap sweep over S_VALUES (a task
    for any Pool): ``task = (model name, error units, duration in ms, seed)``."""
    name, errors, duration_ms, seed = task
    model = load_model(name)
    x, _ = model.sample(BATCH, seed=seed)
    traj = simulate(build_circuit(model, "rate", tau=TAU, errors=errors), x,
                    duration=duration_ms * ms, dt=DT, target=TARGET, record_every=2)
    return map_trajectory(traj, model, x, s_values=S_VALUES, seed=seed)


def run(quick=False, seed=0, progress=SILENT, pool=None):
    duration = 40 * ms if quick else 100 * ms
    dt, tau, batch, s_values = DT, TAU, BATCH, S_VALUES
    tasks = [(name, errors, float(duration / ms), seed) for name, errors in RUNS]
    progress(f"{len(tasks)} circuit runs, each mapped against the VAE side (variance gap at "
             f"s = {s_values})")
    results = dict(zip(RUNS, (pool or Pool()).map(mapped_run, tasks)))

    lin, lin_dyn = results[("linear_gaussian_3level", "instant")], results[("linear_gaussian_3level", "dynamic")]
    nonlin = results[("tanh_2level", "instant")]
    with style():
        fig, axes = figure(4, nrows=2, width=7.2, height=2.3)
        plot_latents(axes[0, 0], lin)
        plot_agreement(axes[0, 1], lin, label="instant errors", color=CIRCUIT)
        plot_agreement(axes[0, 1], lin_dyn, label="dynamic errors", color=VAE)
        plot_gradient_scatter(axes[0, 2], lin)
        plot_elbo(axes[0, 3], lin)
        plot_latents(axes[1, 0], nonlin)
        plot_gradient_scatter(axes[1, 1], nonlin)
        plot_variance_gap(axes[1, 2], nonlin.report["variance_gap"])
        plot_elbo(axes[1, 3], nonlin)
        for ax, letter in zip(axes.ravel(), "abcdefgh"):
            panel_label(ax, letter)
        for ax, text in ((axes[0, 0], "linear, 3 levels"), (axes[1, 0], "tanh link, 2 levels")):
            ax.text(0.02, 1.05, text, transform=ax.transAxes, fontsize=7)

    data = {f"{name}/{errors}": {**res.report, "series": res.series_json()}
            for (name, errors), res in results.items()}
    params = {"duration_ms": float(duration / ms), "dt_ms": float(dt / ms), "tau_ms": float(tau / ms),
              "batch": batch, "s_values": s_values, "target": TARGET, "record_every": 2}
    return fig, data, params
