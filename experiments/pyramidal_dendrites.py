"""Pyramidal dendrites carry the two terms of the ELBO gradient.

Two models from ``models/``: ``linear_gaussian_3level`` (exact posterior known) and
``pyramidal_mlp`` (an MLP link computed by apical branches; reference: the MAP), each inferred by
the ``dendritic`` circuit on data sampled from it.

(a) One level-1 pyramidal cell of the MLP model: soma, basal and apical potentials (mV) over the
    first 50 ms.
(b) Its basal potential against the bottom-up error ``Wᵀε₀`` and its apical potential against
    ``−ε₁``, computed on the VAE side from the somata's state at each recorded step.
(c) The two-layer cells compiled from the MLP link: their steady somatic output against the
    network's forward pass ``W f(A z + a) + b`` for random inputs z.
(d) Convergence of both circuits against the ELBO gradient flow (gradient iterative inference
    with α = dt/τ from the same start): distance to the reference over time.
"""

import numpy as np
from brian2 import ms

from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.inference import gradient_inference
from pcbio.mapping import map_trajectory
from pcbio.neurons.pyramidal import PyramidalCell, two_layer_cells
from pcbio.plotting import CIRCUIT, REFERENCE, VAE, figure, headroom, panel_label, style
from pcbio.progress import SILENT
from pcbio.simulate import simulate

DESCRIPTION = "pyramidal cells: basal = bottom-up error, apical = own error, branches = MLP"
TARGET = "numpy"
DT = 0.1 * ms
ZOOM_MS = 50        # panels (a) and (b) show the first 50 ms, where the compartments move


def _worst(report, key):
    """The largest of a per-level statistic over the data level and every latent level."""
    values = [lev.get(key) for lev in report["levels"] + [report.get("data_level", {})]]
    return max(v for v in values if v is not None)


def _infer(model, batch, seed, duration):
    x, _ = model.sample(batch, seed=seed)
    circuit = build_circuit(model, "dendritic")
    traj = simulate(circuit, x, duration=duration, dt=DT, target=TARGET)
    result = map_trajectory(traj, model, x, seed=seed)
    flow = gradient_inference(model, x, steps=len(traj) - 1, step_size=float(DT / circuit.tau),
                              init=traj.at(0))
    return x, traj, result, flow


def run(quick=False, seed=0, progress=SILENT):
    batch, n_inputs = (4, 10) if quick else (32, 100)
    duration = (200 if quick else 400) * ms
    runs = {}
    for name in ("linear_gaussian_3level", "pyramidal_mlp"):
        progress(f"{name}: dendritic circuit, batch {batch}, {float(duration / ms):g} ms")
        runs[name] = _infer(load_model(name), batch, seed, duration)
    mlp = load_model("pyramidal_mlp")
    progress(f"two-layer cells of the MLP link on {n_inputs} random inputs")
    rng = np.random.default_rng(seed)
    link = mlp.links[0]
    zs = rng.normal(size=(n_inputs, link.d_above))
    cells = two_layer_cells(link, zs)
    soma, branches = cells["soma"], cells["branches"]
    forward = link.predict(zs)
    hidden = link.nl.f(link.preactivation(zs))
    cell = PyramidalCell()

    reports = {name: r[2].report for name, r in runs.items()}
    lin, non = reports["linear_gaussian_3level"], reports["pyramidal_mlp"]
    data = {
        "fixed_point_rel_err": max(lev["fixed_point_rel_err"] for lev in lin["levels"]),
        "fixed_point_rel_err_map": max(lev["fixed_point_rel_err"] for lev in non["levels"]),
        "basal_vs_bottom_up_rel_err": max(_worst(r, "basal_vs_bottom_up_rel_err_max")
                                          for r in reports.values()),
        "apical_vs_own_error_rel_err": max(_worst(r, "apical_vs_own_error_rel_err_max")
                                           for r in reports.values()),
        "branch_vs_hidden_layer_rel_err": _worst(non, "branch_vs_hidden_layer_rel_err_max"),
        "soma_vs_gradient_rel_err": max(_worst(r, "grad_rel_err_max") for r in reports.values()),
        "step_equivalence_max_abs": {n: r["step_equivalence_max_abs"] for n, r in reports.items()},
        "mlp_forward_max_abs_err": float(np.abs(soma - forward).max()),
        "mlp_hidden_max_abs_err": float(np.abs(branches - hidden[:, None, :]).max()),
        "cell": {"time_constants_ms": (cell.time_constants() * 1e3).tolist(),
                 "attenuation": cell.attenuation(),
                 "largest_stable_dt_ms": {m: cell.largest_stable_dt(m) * 1e3
                                          for m in ("euler", "rk4")}},
        "mappings": reports,
    }

    with style():
        fig, axes = figure(4, width=7.4, height=2.4)
        _, traj, result, flow = runs["pyramidal_mlp"]
        _cell_potentials(axes[0, 0], traj)
        _compartment_terms(axes[0, 1], traj, mlp, runs["pyramidal_mlp"][0])
        ax = axes[0, 2]
        ax.plot(forward.ravel(), soma.ravel(), "o", ms=2, color=CIRCUIT)
        lim = [forward.min(), forward.max()]
        ax.plot(lim, lim, color=REFERENCE, lw=0.6, ls=":")
        ax.set(xlabel="MLP output $W f(Az+a)+b$", ylabel="soma, two-layer cell (model units)")
        ax.set_title(f"max |diff| {data['mlp_forward_max_abs_err']:.1e}", fontsize=7, loc="right")
        _convergence(axes[0, 3], runs)
        for ax, letter in zip(axes[0], "abcd"):
            panel_label(ax, letter)
    params = {"models": list(runs), "batch": batch, "duration_ms": float(duration / ms),
              "dt_ms": float(DT / ms), "target": TARGET, "two_layer_inputs": n_inputs,
              "circuit": runs["pyramidal_mlp"][1].info.circuit}
    return fig, data, params


def _cell_potentials(ax, traj):
    """Soma, basal and apical potentials of cell 0 of level 1, data point 0, in mV."""
    t = traj.t * 1e3
    for name, color, label in (("soma_1", CIRCUIT, "soma"), ("basal_1", VAE, "basal"),
                               ("apical_1", REFERENCE, "apical")):
        ax.plot(t, traj.raw[name][:, 0, 0] * 1e3, color=color, label=label)
    ax.set(xlabel="time (ms)", ylabel="membrane potential (mV)", xlim=(0, ZOOM_MS))
    ax.legend(frameon=False)


def _compartment_terms(ax, traj, model, x):
    """Basal potential vs ``Wᵀ ε₀`` and apical potential vs ``−ε₁`` over time (cell 0, point 0)."""
    eps = model.errors(x, traj.means)
    bottom_up = model.links[0].vjp(traj.means[0], eps[0])
    t = traj.t * 1e3
    ax.plot(t, traj.compartments["basal_1"][:, 0, 0], color=VAE, label="basal potential")
    ax.plot(t[::20], bottom_up[::20, 0, 0], "o", ms=2.5, mfc="none", color=VAE,
            label=r"$J^\top\varepsilon_0$ (VAE side)")
    ax.plot(t, traj.compartments["apical_1"][:, 0, 0], color=CIRCUIT, label="apical potential")
    ax.plot(t[::20], -eps[1][::20, 0, 0], "s", ms=2.5, mfc="none", color=CIRCUIT,
            label=r"$-\varepsilon_1$ (VAE side)")
    ax.set(xlabel="time (ms)", ylabel="compartment potential (model units)", xlim=(0, ZOOM_MS))
    ax.legend(frameon=False, fontsize=5)


def _convergence(ax, runs):
    """Distance to the reference (exact posterior mean or MAP), circuit against gradient flow."""
    for (name, (x, traj, result, flow)), ls in zip(runs.items(), ("-", "--")):
        ref = np.concatenate(result.series["reference"], axis=-1)
        circuit = np.concatenate(traj.means, axis=-1)
        vae = np.concatenate(flow.means, axis=-1)
        norm = np.linalg.norm(ref)
        ax.semilogy(traj.t * 1e3, np.linalg.norm(circuit - ref, axis=(1, 2)) / norm, color=CIRCUIT,
                    ls=ls, label=name)                      # red lines: the circuits
        ax.semilogy(traj.t[::40] * 1e3, np.linalg.norm(vae - ref, axis=(1, 2))[::40] / norm, "o",
                    ms=2, mfc="none", color=VAE, label="ELBO gradient flow" if ls == "-" else None)
    ax.set(xlabel="time (ms)", ylabel="relative distance to reference")
    headroom(ax, 0.15)                                   # for the legend
    ax.legend(frameon=False, fontsize=5, loc="upper right")
