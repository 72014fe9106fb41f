"""Spiking circuits against the rate circuit and the ELBO gradient flow.

Linear-Gaussian model ``models/linear_gaussian_2d.toml``, one data point.  (a) Rasters of the
population code's value and error ensembles; (b) its decoded latent estimates against the rate
circuit (the ELBO gradient flow of the same τ, from the same start) and the exact posterior
mean; (c) the same for the spike-coding network; (d) the decoded fixed point's relative error
against neurons per model variable, log-log, for both codes, with fitted slopes (a rate code
is expected near −½).  The runs behind (d) are independent: they go to the pool the experiment
is given (``pcbio run spiking_vs_elbo --workers 2`` or ``--scheduler ADDRESS``).
"""

import numpy as np
from brian2 import ms

from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.inference import exact_posterior
from pcbio.mapping import firing_statistics, map_trajectory
from pcbio.plotting import CIRCUIT, REFERENCE, VAE, figure, panel_label, style
from pcbio.progress import SILENT
from pcbio.simulate import simulate
from pcbio.sweep import Pool

DESCRIPTION = "spiking population code and spike-coding network vs rate circuit and ELBO"
TARGET = "numpy"
X = [[1.0, -2.0, 0.5]]


def scaling_point(task):
    """One run of the sweep over codes, neurons per variable and tuning seeds: the decoded
    fixed point's relative error and the mean firing rate (a task for any Pool)."""
    code, n, seed, duration_ms, window_ms = task
    model = load_model("linear_gaussian_2d")
    x = np.array(X)
    truth = exact_posterior(model, x).means[0][0]
    circuit = build_circuit(model, "spiking", code=code, neurons_per_unit=n, tuning_seed=seed,
                            readout_window=window_ms * ms)
    traj = simulate(circuit, x, duration=duration_ms * ms, target=TARGET, record_every=10)
    est = circuit.estimate(traj)[0][0][0]
    rate = np.mean([f["mean_rate_hz"] for f in firing_statistics(traj).values()])
    return float(np.linalg.norm(est - truth) / np.linalg.norm(truth)), float(rate)


def run(quick=False, seed=0, progress=SILENT, pool=None):
    model = load_model("linear_gaussian_2d")
    x = np.array(X)
    truth = exact_posterior(model, x).means[0][0]
    neurons = [10, 30, 100] if quick else [10, 20, 50, 100, 200, 400]
    seeds = [seed] if quick else [seed, seed + 1, seed + 2]
    duration = (800 if quick else 1500) * ms
    window = 300 * ms
    tasks = [(code, n, s, float(duration / ms), float(window / ms))
             for code in ("population", "scn") for n in neurons for s in seeds]
    progress(f"{len(tasks)} runs: both codes, {neurons} neurons per variable, seeds {seeds}")
    outcome = dict(zip(tasks, (pool or Pool()).map(scaling_point, tasks)))
    codes = {}
    for code in ("population", "scn"):
        errors = [float(np.mean([outcome[t][0] for t in tasks if t[:2] == (code, n)]))
                  for n in neurons]
        rates = [outcome[t][1] for t in tasks if t[0] == code]
        slope = float(np.polyfit(np.log(neurons), np.log(errors), 1)[0])
        codes[code] = {"neurons_per_unit": neurons, "fixed_point_rel_err": errors,
                       "slope": slope, "mean_rate_hz": float(np.mean(rates))}

    progress("example runs with rasters and the mapping against the rate circuit")
    examples = {}
    for code in ("population", "scn"):
        circuit = build_circuit(model, "spiking", code=code, neurons_per_unit=50,
                                tuning_seed=seed, readout_window=window)
        traj = simulate(circuit, x, duration=duration, target=TARGET, record_every=10)
        examples[code] = (traj, map_trajectory(traj, model, x, vae=False, seed=seed))

    with style():
        fig, axes = figure(4, width=7.2, height=2.4)
        traj = examples["population"][0]
        _raster(axes[0, 0], traj, ["value_1", "error_0"], 0.5)
        for ax, code in zip(axes[0, 1:3], ("population", "scn")):
            _trajectories(ax, *examples[code], truth, code)
        _scaling(axes[0, 3], codes)
        for ax, letter in zip(axes[0], "abcd"):
            panel_label(ax, letter)

    data = {**codes, "slope": {c: codes[c]["slope"] for c in codes},
            "mean_rate_hz": {c: codes[c]["mean_rate_hz"] for c in codes},
            "examples": {code: res.report for code, (_, res) in examples.items()},
            "exact_posterior_mean": truth}
    params = {"model": model.name, "x": X, "neurons_per_unit": neurons, "seeds": seeds,
              "duration_ms": float(duration / ms), "readout_window_ms": float(window / ms),
              "target": TARGET}
    return fig, data, params


def _raster(ax, traj, names, seconds):
    """Spike rasters of the first ``seconds`` of the listed populations, stacked."""
    offset = 0
    for name, color in zip(names, (CIRCUIT, VAE)):
        idx, t = traj.spikes[name]
        keep = t < seconds
        ax.plot(t[keep] * 1e3, idx[keep] + offset, "|", ms=1.5, color=color, label=name)
        offset += traj.raw[name].shape[-1]
    ax.set(xlabel="time (ms)", ylabel="neuron (population code)")
    ax.legend(frameon=True, fontsize=6, loc="upper right", markerscale=4, framealpha=0.9)


def _trajectories(ax, traj, result, truth, code):
    """Decoded latents of data point 0 against the rate circuit (ELBO gradient flow) and the
    exact posterior mean."""
    s = result.series
    for k in range(traj.means[0].shape[2]):
        first = k == 0
        ax.plot(traj.t * 1e3, traj.means[0][:, 0, k], color=CIRCUIT, lw=0.8,
                label="spiking (decoded)" if first else None)
        ax.plot(s["rate_t"] * 1e3, s["rate_means"][0][:, 0, k], color=VAE, ls="--",
                label="rate circuit (ELBO flow)" if first else None)
        ax.axhline(truth[k], color=REFERENCE, lw=0.6, ls=":",
                   label="exact posterior mean" if first else None)
    ax.set(xlabel="time (ms)", ylabel="latent estimate (model units)")
    ax.set_title({"population": "population code", "scn": "spike-coding network"}[code],
                 fontsize=7, loc="right")
    ax.legend(frameon=False, fontsize=5, loc="center right")


def _scaling(ax, codes):
    for (code, c), color in zip(codes.items(), (CIRCUIT, VAE)):
        n, err = np.array(c["neurons_per_unit"]), np.array(c["fixed_point_rel_err"])
        ax.loglog(n, err, "o-", ms=3, color=color, label=f"{code} (slope {c['slope']:.2f})")
    n = np.array(codes["population"]["neurons_per_unit"], dtype=float)
    ref = codes["population"]["fixed_point_rel_err"][0]
    ax.loglog(n, ref * (n / n[0]) ** -0.5, color=REFERENCE, ls=":", lw=0.8, label=r"$N^{-1/2}$")
    ax.set(xlabel="neurons per model variable", ylabel="fixed-point relative error")
    ax.legend(frameon=False, fontsize=6)
