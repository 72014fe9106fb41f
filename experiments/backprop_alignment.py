"""Whittington & Bogacz (2017): a predictive-coding network with local Hebbian plasticity
approximates backpropagation, the better the weaker its output precision.

Model ``models/whittington_bogacz_digits.toml``: digits (64 pixels) → 32 hidden → 10 outputs,
input clamped at the top, one-hot labels clamped at the output.  (a) For one minibatch of 100
digits, the brian2 circuit settles (deterministic value units) and its local weight updates
ε f(z)ᵀ are compared with backpropagation's δ f(z)ᵀ at output precisions from 1 down to 0.003:
cosine → 1 and relative distance ∝ precision.  (b) The same network trained on the digits by the
circuit (output precision 0.1) and by backpropagation from the same initial weights with the
same rates and minibatches: held-out accuracy per epoch.
"""

import numpy as np
from brian2 import ms

from pcbio import load_model
from pcbio.data import digit_labels, load_data, split
from pcbio.learning import BackpropLearner, CircuitLearner, LearningRates, accuracy, train
from pcbio.plotting import CIRCUIT, VAE, figure, headroom, panel_label, style
from pcbio.progress import SILENT

DESCRIPTION = "Whittington & Bogacz (2017): PC weight updates approach backprop; digits accuracy"
PRECISIONS = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003]
RATES = LearningRates(weights=1.0, bias=1.0)
BATCH, SETTLE, DT = 20, 60 * ms, 0.5 * ms


def with_output_precision(model, precision):
    """The model with output noise variance 1/precision."""
    return model.replaced(links=[model.links[0].replaced(cov=1.0 / precision),
                                 *model.links[1:]])


def run(quick=False, seed=0, progress=SILENT):
    model = load_model("whittington_bogacz_digits")
    pixels, labels = load_data("digits"), digit_labels()
    targets = np.eye(10)[labels]
    index = np.arange(len(labels), dtype=float)[:, None]
    train_idx, test_idx = (part[:, 0].astype(int) for part in split(index, 0.2, seed))

    cosines, gaps = [], []
    for precision in PRECISIONS:
        progress(f"alignment at output precision {precision:g}")
        learner = CircuitLearner(with_output_precision(model, precision), LearningRates(),
                                 batch=100, settle=SETTLE, dt=DT, top="clamped")
        rec = learner.epoch(targets[train_idx[:100]][None], seed=(seed, 0),
                            tops=pixels[train_idx[:100]][None])[0]
        cosines.append(rec["weight_cosine_all"])
        gaps.append(rec["weight_relative_gap_all"])

    epochs = 2 if quick else 15
    start = with_output_precision(model, 0.1)

    def score(m, _x, inputs):
        return {"accuracy": accuracy(m, inputs, labels[test_idx])}
    data_args = (targets[train_idx], targets[test_idx], epochs, BATCH, seed)
    inputs = (pixels[train_idx], pixels[test_idx])
    progress(f"training by the circuit: {epochs} epochs of {len(train_idx) // BATCH} updates")
    pc = train(CircuitLearner(start, RATES, BATCH, settle=SETTLE, dt=DT, top="clamped",
                              compare_every=10), *data_args, inputs=inputs, score=score,
               progress=progress)
    progress("training by backpropagation")
    bp = train(BackpropLearner(start, RATES), *data_args, inputs=inputs, score=score)
    acc_pc = [h["accuracy"] for h in pc["history"]["heldout"]]
    acc_bp = [h["accuracy"] for h in bp["history"]["heldout"]]
    train_cos = [r["weight_cosine_all"] for r in pc["history"]["updates"]
                 if "weight_cosine_all" in r]
    data = {"output_precision": PRECISIONS, "cosine": cosines, "relative_gap": gaps,
            "test_accuracy_pc": acc_pc[-1], "test_accuracy_backprop": acc_bp[-1],
            "training_output_precision": 0.1, "accuracy_pc_by_epoch": acc_pc,
            "accuracy_backprop_by_epoch": acc_bp, "training_update_cosine": train_cos,
            "n_train": len(train_idx), "n_test": len(test_idx)}

    with style():
        fig, axes = figure(2, width=5.6, height=2.4)
        ax = axes[0, 0]
        ax.loglog(PRECISIONS, 1 - np.array(cosines), "o-", color=CIRCUIT, label="1 − cosine")
        ax.loglog(PRECISIONS, gaps, "s--", color=VAE, label="‖ΔW_PC − ΔW_BP‖ / ‖ΔW_BP‖")
        ax.set(xlabel="output precision Π₀", ylabel="distance to backprop update")
        headroom(ax, 0.2)                                    # for the legend
        ax.legend(frameon=False, fontsize=6, loc="upper left")
        ax = axes[0, 1]
        ax.plot(range(len(acc_pc)), acc_pc, color=CIRCUIT, label="PC circuit (local rule)")
        ax.plot(range(len(acc_bp)), acc_bp, color=VAE, ls="--", label="backprop")
        ax.set(xlabel="epoch", ylabel="held-out accuracy", ylim=(0, 1))
        ax.legend(frameon=False, loc="lower right")
        for a, letter in zip(axes.ravel(), "ab"):
            panel_label(a, letter)
    params = {"model": "whittington_bogacz_digits", "precisions": PRECISIONS,
              "rates": RATES.to_json(), "batch": BATCH, "epochs": epochs,
              "settle_ms": float(SETTLE / ms), "dt_ms": float(DT / ms), "test_fraction": 0.2,
              "alignment_batch": 100}
    return fig, data, params
