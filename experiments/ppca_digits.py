"""Probabilistic PCA of the digits learned by a brian2 predictive-coding circuit with local
plasticity, against the closed-form maximum-likelihood solution (Tipping & Bishop 1999).

Model ``models/ppca_digits.toml`` (8 latents, 64 pixels, W random, b = 0, σ² = 0.1) learns
W, b and σ² from scikit-learn's digits (pixels in [0, 1]; 80 % for training, 20 % held out).
The circuit's value units are noisy (temperature 1: they sample the posterior), so each
synapse's Hebbian update ε zᵀ is an unbiased one-sample estimate of ∇_W log p(x) (Oliviers,
Bogacz & Meulemans 2024); the VAE side learns the same model by variational EM with the exact
posterior.  (a) Held-out log p(x) per digit over epochs, with the closed form; (b) the learned
noise variance over updates; (c) cosine between each circuit update and ∇_W log p(x) of the
same minibatch; (d) the leading principal directions of the learned W Wᵀ against those of the
maximum-likelihood solution, as 8×8 images.
"""

import numpy as np
from brian2 import ms

from pcbio import load_model
from pcbio.data import load_data, split
from pcbio.learning import (CircuitLearner, LearningRates, VaeLearner, heldout_score,
                            ppca_maximum_likelihood, train)
from pcbio.plotting import CIRCUIT, REFERENCE, VAE, figure, panel_label, style
from pcbio.progress import SILENT

DESCRIPTION = "PPCA of the digits learned by the noisy PC circuit vs closed-form maximum likelihood"
RATES = LearningRates(weights=0.03, bias=0.03, cov=1e-5)
BATCH, DECAY, SETTLE, DT = 100, 0.93, 45 * ms, 0.015 * ms


def _directions(model, k):
    """The k leading eigenvectors of W Wᵀ (unique, unlike W), signs fixed by their largest entry."""
    lam, vec = np.linalg.eigh(model.links[0].W @ model.links[0].W.T)
    vec = vec[:, ::-1][:, :k]
    return vec * np.sign(vec[np.abs(vec).argmax(axis=0), range(k)])


def _subspace_overlap(a, b):
    """Mean squared cosine of the principal angles between the column spaces of a and b."""
    qa, qb = np.linalg.qr(a)[0], np.linalg.qr(b)[0]
    return float(np.mean(np.linalg.svd(qa.T @ qb, compute_uv=False) ** 2))


def run(quick=False, seed=0, progress=SILENT):
    epochs = 2 if quick else 30
    x_train, x_test = split(load_data("digits"), 0.2, seed)
    init = load_model("ppca_digits")
    q = init.latent_dims[0]
    ml = ppca_maximum_likelihood(x_train, q)
    progress(f"circuit: {epochs} epochs of {len(x_train) // BATCH} updates, batch {BATCH}")
    circuit = CircuitLearner(init, RATES, BATCH, settle=SETTLE, dt=DT, temperature=1.0)
    state_c = train(circuit, x_train, x_test, epochs, BATCH, seed, rate_decay=DECAY,
                    progress=progress)
    progress("VAE side: variational EM with the exact posterior")
    state_v = train(VaeLearner(init, RATES), x_train, x_test, epochs, BATCH, seed,
                    rate_decay=DECAY)
    learned = circuit.model
    loglik = [h["log_likelihood"] for h in state_c["history"]["heldout"]]
    loglik_vae = [h["log_likelihood"] for h in state_v["history"]["heldout"]]
    closed = heldout_score(ml, x_test)["log_likelihood"]
    updates = state_c["history"]["updates"]
    cosine = [r["weight_cosine"][0] for r in updates]
    variance = [r["noise_variance"][0] for r in updates]
    W, W_ml = learned.links[0].W, ml.links[0].W
    data = {"q": q, "loglik_learned": loglik[-1], "loglik_closed_form": closed,
            "loglik_vae_em": loglik_vae[-1], "loglik_per": "held-out digit (nats, 64 pixels)",
            "loglik_learned_train": heldout_score(learned, x_train)["log_likelihood"],
            "loglik_closed_form_train": heldout_score(ml, x_train)["log_likelihood"],
            "noise_variance_learned": float(learned.links[0].cov.value),
            "noise_variance_closed_form": float(ml.links[0].cov.value),
            "subspace_overlap": _subspace_overlap(W, W_ml),
            "wwt_relative_error": float(np.linalg.norm(W @ W.T - W_ml @ W_ml.T)
                                        / np.linalg.norm(W_ml @ W_ml.T)),
            "update_cosine_mean_last_epoch": float(np.mean(cosine[-(len(x_train) // BATCH):])),
            "loglik_by_epoch": loglik, "loglik_vae_by_epoch": loglik_vae,
            "noise_variance_by_update": variance, "update_cosine": cosine}

    with style():
        fig, axes = figure(4, width=7.2, height=2.2)
        ax = axes[0, 0]
        ax.plot(range(len(loglik)), loglik, color=CIRCUIT, label="circuit (local rule)")
        ax.plot(range(len(loglik_vae)), loglik_vae, color=VAE, ls="--", label="VAE side (EM)")
        ax.axhline(closed, color=REFERENCE, ls=":", label="closed form (ML)")
        ax.set_ylim(min(closed - 8, loglik[1] if len(loglik) > 1 else closed - 8), closed + 2)
        ax.set(xlabel="epoch", ylabel="held-out log p(x) (nats per digit)")
        ax.legend(frameon=False)
        ax = axes[0, 1]
        ax.plot(variance, color=CIRCUIT)
        ax.axhline(ml.links[0].cov.value, color=REFERENCE, ls=":", label="closed form")
        ax.set(xlabel="update", ylabel="noise variance σ² (pixel²)", yscale="log")
        ax.legend(frameon=False)
        ax = axes[0, 2]
        ax.plot(cosine, color=CIRCUIT, lw=0.6)
        ax.set(xlabel="update", ylabel="cos(ΔW circuit, ∇_W log p(x))", ylim=(0, 1))
        ax = axes[0, 3]
        k = 4
        tiles = np.concatenate([np.concatenate([d.reshape(8, 8) for d in dirs.T], axis=1)
                                for dirs in (_directions(learned, k), _directions(ml, k))])
        ax.imshow(tiles, cmap="RdBu_r", vmin=-np.abs(tiles).max(), vmax=np.abs(tiles).max())
        ax.set(xticks=[], yticks=[4, 12], yticklabels=["circuit", "ML"],
               xlabel="leading directions\nof W Wᵀ (8×8 px)")
        for a, letter in zip(axes.ravel(), "abcd"):
            panel_label(a, letter)
    params = {"model": "ppca_digits", "rates": RATES.to_json(), "batch": BATCH, "epochs": epochs,
              "rate_decay": DECAY, "settle_ms": float(SETTLE / ms), "dt_ms": float(DT / ms),
              "temperature": 1.0, "test_fraction": 0.2, "data": "digits / 16"}
    return fig, data, params
