"""Lateral inhibition as a normalizing flow: whitening of natural-image patches learned by a
brian2 circuit with a local anti-Hebbian rule, against the fitted flow.

8×8 patches of scikit-image's camera, grass, gravel and brick (each image at zero mean and unit
variance), with Gaussian input noise of variance 0.05.  The circuit is the rate circuit's
recurrent lateral front end, ``τ dy/dt = (x − m) − M y − y``, starting at M = 0; after each
minibatch its lateral weights change by ΔM ∝ y yᵀ − I (Földiák 1990), which drives them to ZCA
whitening, ``(I + M)⁻¹ = C^{-1/2}``.  (a) The learned filter of the centre pixel (a row of
``(I + M)⁻¹``) and the fitted ZCA filter: centre–surround (Atick & Redlich 1992); (b) the camera
image before and after the learned filter; (c) held-out patch covariance before and after;
(d) the fitted filters' surround against the input noise variance: it weakens and broadens as
noise rises (Srinivasan, Laughlin & Dubs 1982); (e) the learned circuit's covariance deviation
over epochs, against the fitted ZCA flow's and the sampling error's on the same held-out
patches; (f) a temporal flow (each frame predicted from the one before) on a bar jumping over a
static textured background: the background is gone from its prediction residual, the bar
stays.  The JSON also holds the held-out log-likelihood gain of a PPCA model fitted
behind the learned front end over the same model on raw patches.  The points of (d) go to the
pool the experiment is given (``pcbio run lateral_inhibition --workers 2``).
"""

import time

import numpy as np
from brian2 import ms
from scipy.ndimage import convolve, gaussian_filter

from pcbio.data import image_patches, natural_image
from pcbio.flows import LinearFlow, TemporalFlow, data_log_evidence
from pcbio.inference import log_evidence
from pcbio.learning import CircuitLearner, LearningRates, ppca_maximum_likelihood
from pcbio.learning import train as train_learner
from pcbio.model import GenerativeModel, Link
from pcbio.plotting import CIRCUIT, REFERENCE, VAE, figure, headroom, panel_label, style
from pcbio.progress import SILENT
from pcbio.sweep import Pool

DESCRIPTION = "lateral inhibition learns whitening of image patches: centre-surround, noise, flow"
SIZE, NOISE, CENTRE = 8, 0.05, (3, 3)
NOISE_LEVELS = [0.0, 0.01, 0.03, 0.1, 0.3, 1.0]
RATE, EPOCHS = 0.02, 5            # lateral learning rate, halved after every epoch
TAU, DT, SETTLE, BATCH = 2 * ms, 0.4 * ms, 100 * ms, 100    # TAU: the lateral units' default


def filter_stats(matrix):
    """The centre pixel's filter (a row of the normalizing matrix) as an 8×8 image and its
    numbers: centre weight, mean of the 4 nearest neighbours, the summed negative weight
    relative to the centre ("surround") and the negative weights' mean distance (pixels)."""
    k = CENTRE[0] * SIZE + CENTRE[1]
    w = matrix[k].reshape(SIZE, SIZE)
    r, c = CENTRE
    neighbours = np.mean([w[r - 1, c], w[r + 1, c], w[r, c - 1], w[r, c + 1]])
    rel = w / w[r, c]
    dist = np.hypot(*np.mgrid[0:SIZE, 0:SIZE] - np.array(CENTRE)[:, None, None])
    neg = rel < 0
    return w, {"center_weight": float(w[r, c]), "neighbor_weight": float(neighbours),
               "surround": float(rel[neg].sum()),
               "surround_extent_px": float(np.sum(-rel[neg] * dist[neg]) / -rel[neg].sum())}


def moving_bar(frames, size=12, seed=0):
    """A bright vertical bar that jumps to a random column every frame over a static, smoothed
    random texture, with a little noise: frames (frames, size²), the background (size, size)
    and the bar alone (frames, size²)."""
    rng = np.random.default_rng(seed)
    background = gaussian_filter(rng.normal(size=(size, size)), 1.5)
    background /= background.std()
    bar = np.zeros((frames, size, size))
    bar[np.arange(frames), :, rng.integers(0, size, frames)] = 3.0
    seq = background + bar + 0.05 * rng.normal(size=(frames, size, size))
    return seq.reshape(frames, -1), background, bar.reshape(frames, -1)


def _correlation(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def cov_deviation(flow, x):
    """``‖Cov(y) − I‖_F / ‖I‖_F`` of the flow's output on data ``x`` (n, d).  For n samples of a
    perfectly whitened input its expected value is ≈ √((d + 1)/n) (sampling error alone)."""
    y = flow.normalize(x)
    return float(np.linalg.norm(np.cov(y, rowvar=False) - np.eye(x.shape[1]))
                 / np.sqrt(x.shape[1]))


def surround_point(task):
    """One point of the surround-against-noise sweep: ``task = (patches, noise variance)``."""
    patches, noise = task
    return {"noise": noise, **filter_stats(LinearFlow.fit(patches, "zca", noise).matrix)[1]}


def surround_against_noise(patches, noise_levels, pool):
    """The fitted ZCA filter's centre and surround at each input noise variance, the points
    computed on ``pool`` (serially here, or on a Dask cluster)."""
    return pool.map(surround_point, [(patches, noise) for noise in noise_levels])


def run(quick=False, seed=0, progress=SILENT, pool=None):
    per_image = 1000 if quick else 6000
    patches = image_patches(SIZE, per_image, seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(patches))
    n_test = len(patches) // 5
    test, train = patches[order[:n_test]], patches[order[n_test:]]
    noisy = lambda x: x + np.sqrt(NOISE) * rng.normal(size=x.shape)      # noqa: E731
    train_noisy, test_noisy = noisy(train), noisy(test)
    d = SIZE * SIZE

    progress(f"learning lateral weights on {len(train)} patches in the brian2 circuit")
    start = GenerativeModel(np.zeros(1), 1.0, [Link(np.zeros((d, 1)), None, "identity", 1.0)],
                            name="whitening_front_end", flow=LinearFlow(np.zeros(d), np.eye(d)))
    learner = CircuitLearner(start, LearningRates(lateral=RATE), BATCH, settle=SETTLE, dt=DT,
                             compare_every=0)
    epochs = 1 if quick else EPOCHS
    t0 = time.perf_counter()
    state = train_learner(learner, train_noisy, test_noisy, epochs, BATCH, seed, rate_decay=0.5,
                  progress=progress,
                  score=lambda model, x, _: {"cov_deviation": cov_deviation(model.flow, x)})
    seconds = time.perf_counter() - t0
    deviation = [h["cov_deviation"] for h in state["history"]["heldout"][1:]]
    learned = learner.model.flow
    fitted = LinearFlow.fit(train, "zca", NOISE)
    w_learned, stats_learned = filter_stats(learned.matrix)
    w_fitted, stats_fitted = filter_stats(fitted.matrix)

    surround = surround_against_noise(train, NOISE_LEVELS, pool or Pool())

    progress("PPCA behind the front end against PPCA on raw patches")
    q = 16
    raw = ppca_maximum_likelihood(train, q)
    behind = ppca_maximum_likelihood(learned.normalize(train), q)
    behind = behind.replaced(flow=learned)
    gain = float(data_log_evidence(behind, test).mean() - log_evidence(raw, test).mean())

    frames, background, bar = moving_bar(800 if quick else 3000, seed=seed)
    temporal = TemporalFlow.fit(frames, order=1, noise=1e-3)
    residual = frames[1:] - temporal.predict(frames)
    bg = background.ravel()
    before = float(frames.mean(axis=0) @ bg / (bg @ bg))      # how much background is in there
    after = float(residual.mean(axis=0) @ bg / (bg @ bg))
    kept = _correlation(residual, bar[1:] - bar.mean(axis=0))

    camera = natural_image("camera")[128:384, 128:384]
    whitened = convolve(camera, w_learned[::-1, ::-1], mode="reflect")
    cov_before = np.cov(test_noisy, rowvar=False)
    cov_after = np.cov(learned.normalize(test_noisy), rowvar=False)
    lam, vec = np.linalg.eigh(np.cov(train_noisy, rowvar=False, bias=True))
    zca_root = (vec * np.sqrt(lam)) @ vec.T
    data = {**stats_learned, "cov_deviation": deviation[-1], "loglik_gain_nats": gain,
            "cov_deviation_note": "held-out noisy patches; the fitted ZCA flow's value on the "
                                  "same patches and the sampling error sqrt((d+1)/n) bound what "
                                  "any whitening can reach there",
            "cov_deviation_fitted_zca": cov_deviation(fitted, test_noisy),
            "cov_deviation_sampling": float(np.sqrt((d + 1) / len(test_noisy))),
            "cov_deviation_train": cov_deviation(learned, train_noisy),
            "surround_vs_noise": [{"noise": s["noise"], "surround": s["surround"],
                                   "surround_extent_px": s["surround_extent_px"],
                                   "neighbor_over_center": s["neighbor_weight"] / s["center_weight"]}
                                  for s in surround],
            "fitted_zca": stats_fitted, "input_noise_variance": NOISE,
            "cov_deviation_by_epoch": deviation, "learning_seconds": seconds,
            "lateral_vs_zca_relative_error": float(np.linalg.norm(
                np.eye(d) + learned.recurrent() - zca_root) / np.linalg.norm(zca_root)),
            "logdet_learned": learned.logdet, "logdet_zca": fitted.logdet,
            "ppca_latents": q, "loglik_per": "held-out 8x8 patch (nats)",
            "temporal_background_coefficient_before": before,
            "temporal_background_coefficient_after": after,
            "temporal_bar_correlation_after": kept,
            "n_train": len(train), "n_test": len(test)}

    with style():
        # the top row's images are twice as wide as high: they need less height than the plots
        fig, axes = figure(3, nrows=2, width=7.2, height=2.0, height_ratios=(1, 1.8))
        ax = axes[0, 0]
        both = np.concatenate([w_learned / w_learned[CENTRE], w_fitted / w_fitted[CENTRE]], axis=1)
        ax.imshow(both, cmap="RdBu_r", vmin=-0.3, vmax=0.3)
        ax.set(xticks=[3, 11], xticklabels=["circuit", "ZCA"], yticks=[],
               xlabel="centre filter ÷ centre")
        ax = axes[0, 1]
        ax.imshow(np.concatenate([camera / np.abs(camera).max(),
                                  whitened / np.abs(whitened).max()], axis=1), cmap="gray")
        ax.set(xticks=[128, 384], xticklabels=["before", "after"], yticks=[],
               xlabel="learned filter on camera")
        ax = axes[0, 2]
        ax.imshow(np.concatenate([cov_before / np.abs(cov_before).max(),
                                  cov_after / np.abs(cov_after).max()], axis=1),
                  cmap="RdBu_r", vmin=-1, vmax=1)
        ax.set(xticks=[32, 96], xticklabels=["Cov(x)", "Cov(y)"], yticks=[],
               xlabel="held-out covariance")
        ax = axes[1, 0]
        noise_axis = [max(s["noise"], 1e-3) for s in surround]
        ax.semilogx(noise_axis, [-s["surround"] for s in surround], "o-", color=CIRCUIT)
        ax2 = ax.twinx()
        ax2.semilogx(noise_axis, [s["surround_extent_px"] for s in surround], "s--", color=VAE)
        ax.set(xlabel="input noise variance\n(0 plotted at 10⁻³)",
               ylabel="surround: −Σ negative / centre")
        ax.yaxis.label.set_color(CIRCUIT)
        ax2.set_ylabel("surround extent (px)", color=VAE)
        ax = axes[1, 1]
        ax.plot(range(1, len(deviation) + 1), deviation, "o-", color=CIRCUIT,
                label="learned circuit")
        ax.axhline(data["cov_deviation_fitted_zca"], color=VAE, ls="--", label="fitted ZCA flow")
        ax.axhline(data["cov_deviation_sampling"], color=REFERENCE, ls=":",
                   label="sampling error alone")
        ax.set(xlabel="epoch", ylabel="held-out ‖Cov(y) − I‖_F / ‖I‖_F", ylim=(0, None))
        headroom(ax, 0.3)
        ax.legend(frameon=False, fontsize=6, loc="upper right")
        ax = axes[1, 2]
        side = background.shape[0]
        parts = [background, frames[7].reshape(side, side), residual[6].reshape(side, side)]
        ax.imshow(np.concatenate([p / np.abs(p).max() for p in parts], axis=1), cmap="gray")
        ax.set(xticks=[side // 2, 3 * side // 2, 5 * side // 2],
               xticklabels=["bg", "frame", "resid."], yticks=[], xlabel="temporal flow")
        for a, letter in zip(axes.ravel(), "abcdef"):
            panel_label(a, letter)
    params = {"patch_size": SIZE, "patches_per_image": per_image, "images": "camera, grass, "
              "gravel, brick", "input_noise_variance": NOISE, "lateral_rate": RATE,
              "lateral_rate_decay_per_epoch": 0.5, "epochs": epochs,
              "tau_lateral_ms": float(TAU / ms), "dt_ms": float(DT / ms),
              "settle_ms": float(SETTLE / ms), "batch": BATCH, "noise_levels": NOISE_LEVELS}
    return fig, data, params
