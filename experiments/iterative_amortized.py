"""Amortized, gradient and learned iterative inference — and a pyramidal circuit running the
learned update — on a nonlinear model of the digits.

A one-latent-level model ``z (8) → W tanh(A z + a) + b (32 hidden) → x (64)`` is fitted to 80 % of
scikit-learn's digits as a VAE (encoder and model ascend the same ELBO); a learned iterative
update (``docs/mathematics.md`` §13) is then trained on the fitted model for 8 steps from the
prior mean.  On the held-out 20 %:

(a) ELBO (nats per digit) against inference iteration 0 … 8 for (i) the amortized encoder (one
    pass), (ii) gradient iterative inference (predictive coding's Euler step) with the best fixed
    step size for each number of steps, (iii) the learned update and (iv) the dendritic circuit
    running it (one Euler step of its somata per iteration, τ = dt = 25 ms, a gamma cycle);
    iterations 1–8 are marked.  Every iterative method's q has the curvature variances.
(b) The amortization gap (optimised q against the encoder's q for the same digits) and what is
    left of it after refining the encoder's estimate by gradient or learned steps.
(c) The circuit's somata against the learned iterates for three latents of one digit.
(d) Training: the VAE's held-out ELBO per epoch and the learned update's per epoch.

``python experiments/iterative_amortized.py --save models/`` writes the fitted model and the
trained encoder and update (``digits_mlp.toml``, ``digits_mlp.encoder.json``,
``digits_mlp.update.json``, with provenance) that ``load_model`` and
``pcbio.learning.amortized.load_inference`` find by name.
"""

import numpy as np
from brian2 import ms

from pcbio.circuits import build_circuit
from pcbio.data import load_data, split
from pcbio.inference import elbo, optimal_posterior
from pcbio.inference.amortized import Encoder, IterativeUpdate, point_elbo
from pcbio.learning.amortized import AmortizedLearner, UpdateLearner
from pcbio.learning.train import train
from pcbio.mapping import map_trajectory
from pcbio.model import GenerativeModel, Link
from pcbio.plotting import CIRCUIT, REFERENCE, VAE, figure, headroom, panel_label, style
from pcbio.progress import SILENT
from pcbio.simulate import simulate

DESCRIPTION = "amortized vs gradient vs learned iterative inference vs the pyramidal circuit"
STEPS = 8
PERIOD = 25 * ms           # one iteration per gamma cycle
ALPHAS = (0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04)
LATENTS, HIDDEN, ENCODER_HIDDEN, UPDATE_HIDDEN = 8, 32, 64, 64
AMORTIZED_COLOR = "#7d3c98"


def initial_model(x_train: np.ndarray, seed: int) -> GenerativeModel:
    """The untrained model: standard-normal prior, random MLP link (W 0.1·N(0, 1), A
    N(0, 1)/√8), b the training mean, noise variance 0.05."""
    rng = np.random.default_rng(seed)
    d = x_train.shape[1]
    link = Link(rng.normal(size=(d, HIDDEN)) * 0.1, x_train.mean(0), "tanh", 0.05,
                hidden_weights=rng.normal(size=(HIDDEN, LATENTS)) / np.sqrt(LATENTS),
                hidden_bias=np.zeros(HIDDEN))
    return GenerativeModel(np.zeros(LATENTS), 1.0, [link], name="digits_mlp")


def fit(quick=False, seed=0, progress=SILENT):
    """Fit the model and encoder (VAE), then the learned update.  Returns the held-out split,
    model, encoder, update and both training histories."""
    x_train, x_test = split(load_data("digits"), 0.2, seed)
    start = initial_model(x_train, seed)
    vae = AmortizedLearner(start, Encoder.initial(start, ENCODER_HIDDEN, seed))
    epochs = 40 if quick else 150
    progress(f"VAE: {epochs} epochs on {len(x_train)} digits")
    vae_state = train(vae, x_train, x_test, epochs=epochs, batch=50, seed=seed, rate_decay=0.99,
                      score=vae.score, progress=progress)
    model = vae.model
    learner = UpdateLearner(model, IterativeUpdate.gradient_step(
        model, 0.01, hidden=UPDATE_HIDDEN, seed=seed, scale=1.0), steps=STEPS)
    epochs = 15 if quick else 60
    progress(f"learned update: {epochs} epochs, {STEPS} steps each")
    update_state = train(learner, x_train, x_test, epochs=epochs, batch=100, seed=seed,
                         rate_decay=0.1 ** (1 / epochs), score=learner.score, progress=progress)
    return (x_train, x_test, model, vae.encoder, learner.update,
            {"vae": vae_state["history"]["heldout"], "update": update_state["history"]["heldout"]})


def _elbos(model, x, mus, seed):
    return [float(point_elbo(model, x, mu, seed=seed).mean()) for mu in mus]


def run(quick=False, seed=0, progress=SILENT):
    x_train, x_test, model, encoder, update, history = fit(quick, seed, progress)
    if quick:
        x_test = x_test[:100]
    n = len(x_test)
    prior = model.prior_means(n)[0]

    progress("gradient inference: the best fixed step size for each number of steps")
    probe = x_train[:200]
    grid = {a: _elbos(model, probe, IterativeUpdate.gradient_step(model, a).run(
        model, probe, model.prior_means(len(probe))[0], STEPS), seed) for a in ALPHAS}
    best = [max(ALPHAS, key=lambda a: grid[a][k]) for k in range(STEPS + 1)]
    runs = {a: IterativeUpdate.gradient_step(model, a).run(model, x_test, prior, STEPS)
            for a in set(best)}
    gradient = [_elbos(model, x_test, [runs[best[k]][k]], seed)[0] for k in range(STEPS + 1)]
    learned_mus = update.run(model, x_test, prior, STEPS)
    learned = _elbos(model, x_test, learned_mus, seed)

    progress(f"the dendritic circuit running the learned update ({n} digits)")
    circuit = build_circuit(model, "dendritic", update=update, tau=PERIOD)
    traj = simulate(circuit, x_test, duration=(STEPS + 1) * PERIOD, dt=PERIOD, target="numpy")
    mapping = map_trajectory(traj, model, x_test, update=update, seed=seed).report
    circuit_elbo = _elbos(model, x_test, traj.means[0], seed)

    progress("the optimised q and the amortization gap")
    q_enc = encoder.posterior(x_test)
    enc_elbo = float(elbo(model, x_test, q_enc, method="mc", n_samples=64, seed=seed).value.mean())
    q_opt, _ = optimal_posterior(model, x_test, init=q_enc, n_samples=64, seed=seed + 1,
                                 gtol=1e-5)
    opt_elbo = float(elbo(model, x_test, q_opt, method="mc", n_samples=64, seed=seed).value.mean())
    start = q_enc.means[0]
    refined = {"gradient": [opt_elbo - e for e in _elbos(
                   model, x_test, IterativeUpdate.gradient_step(model, best[-1]).run(
                       model, x_test, start, STEPS), seed)],
               "learned": [opt_elbo - e for e in _elbos(
                   model, x_test, update.run(model, x_test, start, STEPS), seed)]}

    iterations = list(range(STEPS + 1))
    data = {"iterations": iterations,
            "elbo": {"amortized": [enc_elbo] * len(iterations), "gradient": gradient,
                     "learned": learned, "circuit": circuit_elbo},
            "elbo_unit": "nats per held-out digit",
            "best_step_size": best, "step_size_grid": list(ALPHAS),
            "amortization_gap_nats": opt_elbo - enc_elbo, "optimal_q_elbo": opt_elbo,
            "refined_gap_nats": refined,
            "circuit_vs_learned_max_abs": float(np.abs(traj.means[0] - np.array(learned_mus)).max()),
            "learned_update_rel_err_max": mapping["levels"][0]["learned_update_rel_err_max"],
            "compartments": {k: v for k, v in mapping["levels"][0].items() if "vs" in k},
            "training": history, "n_test": n, "n_train": len(x_train),
            "learned_update_weights": update.params(), "encoder_weights": encoder.params(),
            "model": model.to_dict()}

    with style():
        fig, axes = figure(4, width=7.4, height=2.5)
        ax = axes[0, 0]
        ax.axvspan(1, STEPS, color="0.92", lw=0, label="1-8 iterations")
        for key, color, marker, ls in (("amortized", AMORTIZED_COLOR, None, "--"),
                                       ("gradient", VAE, "o", "-"), ("learned", CIRCUIT, "s", "-"),
                                       ("circuit", "k", "x", "none")):
            ax.plot(iterations, data["elbo"][key], color=color, marker=marker, ms=4, ls=ls,
                    label=key if key != "circuit" else "pyramidal circuit")
        ax.set(xlabel="inference iteration", ylabel="held-out ELBO (nats/digit)",
               ylim=(min(gradient[2], learned[1]) - 5, opt_elbo + 2))
        ax.legend(frameon=False, fontsize=6, loc="lower right")
        ax = axes[0, 1]
        ax.axhline(opt_elbo - enc_elbo, color=AMORTIZED_COLOR, ls="--", label="encoder's gap")
        for key, color in (("gradient", VAE), ("learned", CIRCUIT)):
            ax.plot(iterations, refined[key], marker="o", ms=3, color=color,
                    label=f"refined by {key} steps")
        ax.axhline(0, color=REFERENCE, lw=0.6)
        ax.set(xlabel="refinement steps from the encoder", ylabel="gap to optimised q (nats)")
        headroom(ax, 0.45)
        ax.legend(frameon=False, fontsize=6, loc="upper right")
        ax = axes[0, 2]
        t = traj.t * 1e3
        for k in range(3):
            ax.plot(t, traj.means[0][:, 0, k], color=CIRCUIT, lw=0.8,
                    label="circuit somata" if k == 0 else None)
            ax.plot(t, np.array(learned_mus)[:, 0, k], "o", ms=3, mfc="none", color=VAE,
                    label="learned update" if k == 0 else None)
        ax.set(xlabel="time (ms)", ylabel="latent estimate (model units)")
        headroom(ax, 0.3)
        ax.legend(frameon=False, fontsize=6, loc="upper right")
        ax = axes[0, 3]
        ax.plot([h["elbo"] for h in history["vae"]], color=AMORTIZED_COLOR, label="VAE (encoder q)")
        ax.plot([h["elbo"] for h in history["update"]], color=CIRCUIT,
                label=f"learned update, {STEPS} steps")
        ax.set(xlabel="epoch", ylabel="held-out ELBO (nats/digit)",
               ylim=(min(h["elbo"] for h in history["vae"][3:]) - 5, opt_elbo + 2))
        ax.legend(frameon=False, fontsize=6)
        for ax, letter in zip(axes[0], "abcd"):
            panel_label(ax, letter)
    params = {"data": "digits", "test_fraction": 0.2, "latents": LATENTS, "hidden": HIDDEN,
              "encoder_hidden": ENCODER_HIDDEN, "update_hidden": UPDATE_HIDDEN, "steps": STEPS,
              "period_ms": float(PERIOD / ms), "step_size_grid": list(ALPHAS)}
    return fig, data, params


def save_models(folder, seed=0, progress=SILENT):
    """Fit (full run) and write ``digits_mlp.toml``, ``digits_mlp.encoder.json`` and
    ``digits_mlp.update.json`` to ``folder``, each with provenance."""
    from pathlib import Path

    from pcbio.io import provenance
    from pcbio.learning.amortized import save_inference
    from pcbio.model_file import model_text
    _, _, model, encoder, update, _ = fit(False, seed, progress)
    prov = provenance(seed, {"experiment": "iterative_amortized", "latents": LATENTS,
                             "hidden": HIDDEN, "steps": STEPS})
    folder = Path(folder)
    (folder / "digits_mlp.toml").write_text(model_text(
        model, comment="Fitted to scikit-learn's digits (80 % split, seed 0) as a VAE by "
                       "experiments/iterative_amortized.py --save; see that file.",
        description="8 latents -> 64 pixels through W tanh(A z + a) + b (32 hidden), fitted "
                    "by the ELBO"))
    save_inference(folder / "digits_mlp.encoder.json", encoder, prov)
    save_inference(folder / "digits_mlp.update.json", update, prov)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description="fit and save the digits model, encoder and update")
    parser.add_argument("--save", required=True, help="folder to write the three files to")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    save_models(args.save, args.seed, progress=lambda text, fraction=None: print(text))
