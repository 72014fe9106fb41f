"""Demo: inference on two models from models/ — Bogacz (2017)'s worked example and a linear-Gaussian
model whose exact posterior and evidence are known.

(a) Bogacz's exact posterior p(v | u = 2) with its mode, the prior and the likelihood;
(b) gradient ascent on log p(u, v) from the prior mean (his Exercise 2) reaching the mode;
(c) gradient iterative inference on the ELBO of a linear-Gaussian model, means and variances,
    reaching the best diagonal-q ELBO, below log p(x) by the KL of the neglected correlations.
"""

import numpy as np
from scipy import integrate, optimize, stats

from pcbio import load_model
from pcbio.inference import (elbo, exact_posterior, gradient_inference, log_evidence,
                             optimal_diagonal_log_var)
from pcbio.inference.posterior import GaussianPosterior
from pcbio.plotting import CIRCUIT, REFERENCE, VAE, figure, panel_label, style
from pcbio.progress import SILENT

DESCRIPTION = "inference on Bogacz (2017)'s example and a linear-Gaussian model (exact vs gradient)"


def run(quick=False, seed=0, progress=SILENT):
    steps = 200 if quick else 500          # Bogacz's Exercise 2: 5 time units at dt = 0.01
    bogacz = load_model("bogacz2017")
    u, prior_mean, step = 2.0, float(bogacz.top_mean[0]), 0.01

    def density(v):
        return stats.norm.pdf(v, prior_mean, 1.0) * stats.norm.pdf(u, v ** 2, 1.0)
    evidence, _ = integrate.quad(density, -10, 10)
    mode = optimize.minimize_scalar(lambda v: -density(v), bounds=(0, 3), method="bounded",
                                    options={"xatol": 1e-10}).x
    progress("Bogacz (2017): gradient ascent on log p(u, v)")
    traj = gradient_inference(bogacz, [[u]], steps=steps, step_size=step)
    v_t = traj.means[0][:, 0, 0]

    linear = load_model("linear_gaussian_2d")
    x, _ = linear.sample(1, seed=seed)
    progress("linear-Gaussian model: gradient iterative inference on the ELBO")
    vi = gradient_inference(linear, x, steps=steps // 2, step_size=0.05, log_var=0.0,
                            learn_variance=True)
    post = exact_posterior(linear, x)
    best_diag = elbo(linear, x, GaussianPosterior(post.means, log_var=optimal_diagonal_log_var(linear, x)))
    log_px = log_evidence(linear, x)

    with style():
        fig, axes = figure(3, width=7.0, height=2.3)
        ax = axes[0, 0]
        v = np.linspace(-0.5, 5, 600)
        ax.plot(v, density(v) / evidence, color=CIRCUIT, label=r"posterior $p(v\mid u{=}2)$")
        ax.plot(v, stats.norm.pdf(v, prior_mean, 1.0), color=REFERENCE, ls="--", label="prior")
        ax.axvline(mode, color=VAE, lw=0.8, ls=":", label=f"mode {mode:.3f}")
        ax.set(xlabel="food size $v$ (model units)", ylabel="density (1/unit)")
        ax.legend(frameon=False)
        panel_label(ax, "a")
        ax = axes[0, 1]
        ax.plot(traj.t * step, v_t, color=CIRCUIT, label=r"$\phi$: gradient ascent")
        ax.axhline(mode, color=VAE, lw=0.8, ls=":", label="posterior mode")
        ax.set(xlabel=r"time (units of $\tau$)", ylabel=r"estimate $\phi$ (model units)")
        ax.legend(frameon=False)
        panel_label(ax, "b")
        ax = axes[0, 2]
        ax.plot(vi.t, vi.scores["elbo"][:, 0], color=CIRCUIT, label="ELBO, diagonal $q$")
        ax.axhline(best_diag.value[0], color=VAE, ls=":", lw=0.8, label="best diagonal $q$")
        ax.axhline(log_px[0], color=REFERENCE, ls="--", lw=0.8, label=r"$\log p(x)$ (exact)")
        ax.set(xlabel="iteration", ylabel="ELBO (nats)", ylim=(log_px[0] - 2, log_px[0] + 0.3))
        ax.legend(frameon=False)
        panel_label(ax, "c")

    data = {"bogacz2017": {"u": u, "posterior_mode": mode, "gradient_final": float(v_t[-1]),
                           "trajectory": v_t.tolist(), "step_size": step},
            "linear_gaussian_2d": {"x": x.tolist(), "elbo": vi.scores["elbo"][:, 0].tolist(),
                                   "best_diagonal_elbo": best_diag.value[0], "log_px": log_px[0],
                                   "exact_posterior_mean": post.flat_mean()[0].tolist(),
                                   "final_mean": np.concatenate(vi.final_means(), -1)[0].tolist()}}
    params = {"bogacz_steps": steps, "bogacz_step_size": step, "linear_steps": steps // 2,
              "linear_step_size": 0.05}
    return fig, data, params
