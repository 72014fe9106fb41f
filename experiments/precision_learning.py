"""Bogacz (2017) §5, Exercise 5: an error unit and a precision interneuron learn the variance of
their input with a local rule.

Model ``models/bogacz2017_variance.toml``: the prediction is fixed at g = 5 and the input
φ ~ N(5, 2) arrives trial after trial; each trial the brian2 circuit (dynamic error unit,
precision interneuron, τ = 2 ms) settles for 20 τ (Bogacz's 20 time units), then the synapse
from error unit to interneuron changes by ΔΣ = α(ε e − 1), α = 0.01, from Σ = 1.  The figure: the
learned Σ over 1000 trials against the true variance 2, the rule's fixed point E[(φ − g)²].
"""

import numpy as np
from brian2 import ms

from pcbio import load_model
from pcbio.learning import CircuitLearner, LearningRates
from pcbio.plotting import CIRCUIT, REFERENCE, figure, panel_label, style
from pcbio.progress import SILENT

DESCRIPTION = "Bogacz (2017) Exercise 5: a precision interneuron learns the input variance"
VARIANCE, MEAN, RATE, TAU = 2.0, 5.0, 0.01, 2 * ms


def run(quick=False, seed=0, progress=SILENT):
    trials = 200 if quick else 1000
    phi = MEAN + np.sqrt(VARIANCE) * np.random.default_rng(seed).standard_normal(trials)
    learner = CircuitLearner(load_model("bogacz2017_variance"), LearningRates(cov=RATE),
                             batch=1, settle=20 * TAU, dt=0.1 * TAU, tau=TAU, errors="dynamic",
                             precision="interneuron", compare_every=0)
    progress(f"{trials} trials of 20 tau each")
    records = learner.epoch(phi[:, None, None], seed=(seed, 0))
    sigma = np.array([r["noise_variance"][0] for r in records])
    tail = sigma[len(sigma) // 2:]
    data = {"variance_learned": float(tail.mean()), "variance_learned_final": float(sigma[-1]),
            "variance_learned_std": float(tail.std()), "variance_true": VARIANCE,
            "variance_sample": float(np.var(phi)), "learned_over": "the second half of the trials",
            "variance_by_trial": sigma}
    with style():
        fig, axes = figure(1, width=3.5, height=2.4)
        ax = axes[0, 0]
        ax.plot(np.arange(1, trials + 1), sigma, color=CIRCUIT, label="learned Σ (circuit)")
        ax.axhline(VARIANCE, color=REFERENCE, ls=":", label="true variance")
        ax.set(xlabel="trial", ylabel="Σ (input units²)")
        ax.legend(frameon=False)
        panel_label(ax, "a")
    params = {"model": "bogacz2017_variance", "trials": trials, "learning_rate": RATE,
              "tau_ms": float(TAU / ms), "settle_ms": float(20 * TAU / ms),
              "dt_ms": float(0.1 * TAU / ms), "input_mean": MEAN, "input_variance": VARIANCE}
    return fig, data, params
