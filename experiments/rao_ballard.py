"""Rao & Ballard (1999) re-run: hierarchical predictive coding of natural images, its level-1
filters and end-stopped error units, with and without feedback.

The network of ``models/networks/rao_ballard1999.toml`` (three 16×16 level-1 modules offset by
5 px, 32 units each, 128 level-2 units, the paper's σ², σ_td², α, α_h, λ and k2 schedule) learns
from DoG-filtered natural images through pcbio's shared training loop: every minibatch of 10
inputs is inferred exactly (the equivalent hierarchical Gaussian model's posterior mean — the
steady state of the paper's inference equation) and the weights take the paper's Hebbian step.

(a) The centre module's 32 learned basis vectors; the JSON has how localised and oriented they
    are: each one's orientation index and least-squares Gabor fit (R², envelope width).
(b) Tuning of example error units (``r − U_h r_h``) to the length of a horizontal bar (along
    the row of modules, RB99's geometry), with feedback and without it (the level above
    removed: the error is the response itself), each divided by its largest magnitude: the
    three whose end-stopping index feedback raises most.
(c) The end-stopping index ``(peak − plateau)/peak`` of all 32 error units for horizontal bars;
    a unit counts as end-stopped when its index exceeds 0.2 (the plateau: bars longer than
    18 px; the JSON gives the counts at thresholds 0.1 to 0.5 too, as RB99 does not state its
    criterion).  RB99 found 28 of 32 end-stopped with feedback, 5 without.  For comparison, the
    index with level 2 at the fixed point of the paper's learning rule (training run to
    convergence), where level 2 half-whitens the responses (``docs/mathematics.md`` §14), and
    under a level 2 that whitens them fully.  The JSON also says how far the learned level 2 is
    from that fixed point.  With the Gaussian prior every rotation of a module's basis is the
    same network, and training ends at one of them as round-off decides: the legend gives, in
    brackets, the mean count over 1000 Haar-random rotations of the centre module's basis (the
    JSON also its 5th and 95th percentiles), and the counts in the basis that a greedy search
    picks to make the most units end-stopped with feedback and the fewest without
    (``extreme_basis``).
(d) Training: the reconstruction error of each minibatch and its running mean over 200 inputs
    (the JSON also has the held-out log-likelihood of the equivalent model).
(e), (f) As (b) and (c), with each unit shown bars at its own preferred orientation, shifted
    across their length to drive it most, as a physiologist measures end-stopping (the JSON's
    ``preferred_orientation``).  In brackets in (f)'s legend, the counts among the units whose
    preferred orientation lies within 45° of the row of modules, whose bars, once longer than
    the centre patch, run on into the neighbouring modules' patches.
The rate circuit of the trained (equivalent) model is mapped on two held-out inputs: its Euler
steps against gradient iterative inference on the VAE side (the dynamics whose fixed point is the
exact posterior mean the training used).

Options: ``--set prior=sparse`` (the paper's kurtotic prior on level 1), ``--set
prior_top=sparse`` (the same on level 2; the rule's fixed point, derived for a Gaussian level 2,
is then not reported) and ``--set basis=unit_norm`` (not the paper's: each level-1 basis vector
held at length 1, as Olshausen & Field hold theirs, with the contrast and first k2 of
``UNIT_NORM``; level 2 is left to the paper's weight decay; with the sparse prior it learns
Gabor-like filters); ``--set alpha_top=0.02`` (any number > 0) sets level 2's prior weight α_h
instead of the paper's 0.05; ``--set images=balanced`` trains on five photographs with as much
horizontal as vertical structure instead of the network file's five, which have about 1.5 times
as much vertical (the JSON's ``image_edge_energy_ratio`` gives each image's); ``--set
image_rotation=90`` turns the photographs a quarter turn, so that the row of modules runs along
what was their vertical axis; ``--set front_end=lateral`` filters images and bars with the
whitening filter the lateral-inhibition circuit learns from the training photographs instead of
RB99's difference of Gaussians; ``--set window_sigma=6`` (any number > 0) sets the width (px) of
the Gaussian window on each module's patch, which RB99 does not give (the network file's 4).
"""

from dataclasses import replace

import numpy as np
from brian2 import ms
from threadpoolctl import threadpool_limits

from pcbio.circuits.base import gradient_flow_limit
from pcbio.experiment import NumberOption
from pcbio.learning.train import train
from pcbio.mapping import map_circuit
from pcbio.plotting import CIRCUIT, REFERENCE, VAE, figure, headroom, panel_label, style
from pcbio.progress import SILENT
from pcbio.rao_ballard import (RaoBallardLearner, RaoBallardNetwork, bar_responses,
                               edge_energy_ratio, extreme_basis, filtered_images, gabor_fit,
                               level2_covariance, load_parameters, map_fixed_point,
                               orientation_index, random_rotations, response_covariance,
                               rotated_counts, training_inputs, tuning)

DESCRIPTION = "Rao & Ballard (1999): natural-image filters and end-stopped error units"
THRESHOLD = 0.2            # end-stopped: long bars at least 20 % below the peak
# RB99 does not give its criterion: the counts are also reported at these thresholds
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
ORIENTED = 0.3             # orientation index above which a basis vector counts as oriented
GABOR_R2 = 0.8             # a good Gabor fit explains at least 80 % of a basis vector's variance
PAPER = {"end_stopped_feedback": 28, "end_stopped_no_feedback": 5, "n_error_units": 32}
CONDITIONS = ("feedback", "no_feedback", "whitened", "fixed_point")
N_ROTATIONS = 1000         # random rotations of the centre module's basis (Gaussian prior)
#: ``pcbio run rao_ballard --set prior=sparse``: the paper's sparse (kurtotic) prior on level 1;
#: ``--set prior_top=sparse``: the same on level 2 (weight α_h);
#: ``--set basis=unit_norm``: level-1 basis vectors held at unit length (not the paper's);
#: ``--set alpha_top=0.02``: level 2's prior weight α_h, any number > 0 (the paper's 0.05)
#: ``--set images=balanced``: training photographs with as much horizontal as vertical
#: structure (:data:`BALANCED_IMAGES`)
#: ``--set front_end=lateral``: images and bars whitened by the filter the lateral-inhibition
#: circuit learns from the training photographs, instead of RB99's difference of Gaussians
#: ``--set image_rotation=90``: the training photographs turned by 90°, so that the row of
#: modules runs along what was their vertical axis (a test of how the images' orientation
#: statistics set the counts, not RB99's)
#: ``--set window_sigma=6``: the Gaussian window's width (px) on each module's patch, any
#: number > 0 (RB99 gives none; the network file's 4)
OPTIONS = {"prior": ("gaussian", "sparse"), "prior_top": ("gaussian", "sparse"),
           "basis": ("weight_decay", "unit_norm"), "alpha_top": NumberOption("0.05"),
           "images": ("grey", "balanced"), "front_end": ("dog", "lateral"),
           "image_rotation": ("0", "90"), "window_sigma": NumberOption("4")}
#: ``images=balanced``: training photographs (scikit-image's samples; RB99 names none of its
#: five) whose edge-energy ratios (:func:`edge_energy_ratio`, DoG-filtered) are 0.8–1.2, so
#: that neither orientation dominates the filters; the network file's five grey photographs
#: (``images=grey``) have ratios 0.2–1.0, more vertical than horizontal structure, and with
#: localised filters feedback along the row of modules reaches mainly units tuned near the
#: horizontal
BALANCED_IMAGES = ("astronaut", "coffee", "chelsea", "grass", "gravel")
#: ``basis=unit_norm``: each level-1 basis vector is rescaled to length 1 after every step
#: (Olshausen & Field 1996) instead of the size RB99's weight decay sets, at contrast 1 so that
#: the responses reach the sparse prior's non-Gaussian range (|r| ~ 1), and with k2 starting
#: at 0.1, as k2 = 1 turns a unit-length vector too far per step (docs/rao_ballard.md §2)
UNIT_NORM = {"basis_norm": 1.0, "contrast": 1.0, "k2_initial": 0.1}


def run(quick=False, seed=0, progress=SILENT, prior="gaussian", basis="weight_decay",
        prior_top="gaussian", alpha_top="0.05", images="grey", front_end="dog",
        image_rotation="0", window_sigma="4"):
    # One BLAS thread: with the Gaussian prior a module's basis can turn freely within its
    # subspace (docs/mathematics.md §14), so round-off decides where training ends, and BLAS
    # sums in an order that depends on its thread count; one thread gives the same network on
    # any number of cores (about as fast: the matrices are small).
    with threadpool_limits(limits=1):
        return _run(quick, seed, progress, parameters(prior, basis, prior_top, alpha_top,
                                                      images, front_end, image_rotation,
                                                      window_sigma))


def parameters(prior="gaussian", basis="weight_decay", prior_top="gaussian", alpha_top="0.05",
               images="grey", front_end="dog", image_rotation="0", window_sigma="4"):
    """The network's parameters for the experiment's options (:data:`OPTIONS`; each as the
    command line gives it, text: ``alpha_top``, ``image_rotation`` and ``window_sigma`` are read
    as numbers)."""
    held = UNIT_NORM if basis == "unit_norm" else {}
    if images == "balanced":
        held = {**held, "images": BALANCED_IMAGES}
    return load_parameters(prior=prior, prior_top=prior_top, alpha_top=float(alpha_top),
                           front_end=front_end, image_rotation=int(image_rotation),
                           window_sigma=float(window_sigma), **held)


def _run(quick, seed, progress, params):
    n_train, n_test = (1500, 100) if quick else (12000, 400)
    inputs = training_inputs(n_train + n_test, params, seed)
    learner = RaoBallardLearner(RaoBallardNetwork.initial(params, seed))
    progress(f"training on {n_train} inputs from {len(params.images)} images (front end: "
             f"{params.front_end})")
    state = train(learner, inputs[:n_train], inputs[n_train:], epochs=1, batch=10, seed=seed,
                  progress=progress)
    net = learner.network
    lengths = np.arange(2, params.width + 1, 2)
    # the rule's fixed point is derived for a Gaussian level 2 (docs/mathematics.md §14)
    conditions = CONDITIONS if params.prior_top == "gaussian" else CONDITIONS[:3]
    progress("what level 2 learned: the responses' second moment" + (
        " and the rule's fixed point" if "fixed_point" in conditions else ""))
    C = response_covariance(net, inputs[:n_train])
    if "fixed_point" in conditions:
        Uh_fixed = map_fixed_point(C, params)
        fixed = level2_covariance(Uh_fixed, params)
        # the same level 1 under the level 2 that the rule would end at if trained to the end
        at_fixed_point = RaoBallardNetwork(params, net.U, Uh_fixed)

    def measure(angles=None):
        """The centre module's bar responses in all of ``conditions``."""
        bars = bar_responses(net, lengths, covariance=C, angles=angles,
                             conditions=("feedback", "no_feedback", "whitened"))
        if "fixed_point" not in conditions:
            return bars
        return replace(bars, responses={**bars.responses, "fixed_point": bar_responses(
            at_fixed_point, lengths, conditions=("feedback",), angles=angles
        ).responses["feedback"]})

    progress("end-stopping: horizontal bars of 2 to 26 px")
    bars = measure()
    es = tuning(bars)
    index = {key: np.array(es[key]["index"]) for key in conditions}
    osi, angle = orientation_index(net.U[1], params.patch)
    # units whose preferred orientation is within 45° of the row of modules: only for them does
    # a bar near their preferred orientation continue into the neighbouring modules' patches
    along = np.abs(np.mod(angle + np.pi / 2, np.pi) - np.pi / 2) < np.pi / 4
    progress("end-stopping: bars at each unit's preferred orientation")
    preferred = tuning(measure(angle))
    own = {key: np.array(preferred[key]["index"]) for key in conditions}
    rotated = {}
    if params.why_not_rotation_invariant() is None:
        # every rotation of the centre module's basis is the same trained network (Gaussian
        # prior, no held basis length): the counts over Haar-random rotations are those of the
        # learned model, not of the basis that round-off happened to pick
        counts = rotated_counts(bars, random_rotations(N_ROTATIONS, params.level1_units, seed),
                                THRESHOLD)
        gain = counts["feedback"] - counts["no_feedback"]
        rotated = {"n_rotations": N_ROTATIONS,
                   **{key: {"mean": float(c.mean()), "percentile_5": float(np.percentile(c, 5)),
                            "percentile_95": float(np.percentile(c, 95))}
                      for key, c in counts.items()},
                   "feedback_minus_no_feedback": {"mean": float(gain.mean()),
                                                  "max": int(gain.max())}}
        # and the basis of the same network a greedy search finds for RB99's contrast
        chosen = extreme_basis(bars, THRESHOLD, seed=seed)
        rotated["extreme_basis"] = {key: int(c[0]) for key, c in
                                    rotated_counts(bars, chosen[None], THRESHOLD).items()}
    gabor_r2, gabor_params = gabor_fit(net.U[1], params.patch)

    progress("mapping: the rate circuit of the trained model against the VAE side")
    model, probe = net.equivalent_model(), inputs[n_train:n_train + 2]
    # the trained model is stiff (curvatures from ~0.05 to ~1e4): τ is set so that one step
    # moves the stiffest direction by dt·λ/τ = 1, and 300 steps are compared step by step
    lam = gradient_flow_limit(model, 1 * ms, probe, model.prior_means(len(probe)))[2]
    mapping = map_circuit(model, probe, "rate", duration=30 * ms, dt=0.1 * ms,
                          target="numpy", seed=seed, tau=0.1 * ms * lam)
    n_units = params.level1_units
    data = {
        **{f"end_stopped_fraction_{key}": float(np.mean(i > THRESHOLD))
           for key, i in index.items()},
        **{f"end_stopped_{key}": int(np.sum(i > THRESHOLD)) for key, i in index.items()},
        "n_error_units": n_units, "threshold": THRESHOLD, "paper": PAPER,
        # > 1: more horizontal than vertical structure in a training image (filtered)
        "image_edge_energy_ratio": {name: edge_energy_ratio(image) for name, image
                                    in zip(params.images, filtered_images(params))},
        "end_stopping_index": {key: i.tolist() for key, i in index.items()},
        # Gaussian prior: the counts over random rotations of the module's basis
        "end_stopped_over_rotations": rotated,
        "end_stopped_by_threshold": {"thresholds": list(THRESHOLDS),
                                     **{key: [int(np.sum(i > t)) for t in THRESHOLDS]
                                        for key, i in index.items()}},
        "tuning_curves": {"lengths_px": lengths.tolist(),
                          **{key: es[key]["curves"] for key in conditions}},
        # None for a sparse level 2, for which the fixed point is not derived
        "level2_covariance_vs_fixed_point": float(
            np.linalg.norm(level2_covariance(net.Uh, params) - fixed) / np.linalg.norm(fixed))
        if "fixed_point" in conditions else None,
        "orientation_index": osi.tolist(),
        "n_units_along_modules": int(along.sum()),
        "end_stopped_along_modules": {key: int(np.sum(i[along] > THRESHOLD))
                                      for key, i in index.items()},
        # the physiologist's protocol: each unit's bars at its own preferred orientation
        "preferred_orientation": {
            "end_stopped": {key: int(np.sum(i > THRESHOLD)) for key, i in own.items()},
            "end_stopped_along_modules": {key: int(np.sum(i[along] > THRESHOLD))
                                          for key, i in own.items()},
            "end_stopping_index": {key: preferred[key]["index"] for key in conditions},
            "tuning_curves": {key: preferred[key]["curves"] for key in conditions}},
        "orientation_rad": angle.tolist(),
        "oriented_fraction": float(np.mean(osi > ORIENTED)),
        "orientation_index_median": float(np.median(osi)),
        "gabor_r2": gabor_r2.tolist(),
        "gabor_fraction": float(np.mean(gabor_r2 > GABOR_R2)),
        "gabor_r2_median": float(np.median(gabor_r2)),
        # the envelope's geometric-mean width (px): how localised each fit is
        "gabor_envelope_px": np.sqrt(gabor_params[:, 4] * gabor_params[:, 5]).tolist(),
        "heldout_log_likelihood": state["history"]["heldout"],
        "reconstruction_error": [u["reconstruction_error"] for u in state["history"]["updates"]],
        "circuit_step_equivalence_max_abs": mapping["step_equivalence_max_abs"],
        "circuit_gradient_rel_err_max": [lev["grad_rel_err_max"] for lev in mapping["levels"]],
        "weights": {"U": net.U, "Uh": net.Uh},
    }

    along_counts = data["preferred_orientation"]["end_stopped_along_modules"]
    with style():
        fig, axes = figure(3, nrows=2, width=7.4, height=2.4)
        ax = axes[0, 0]
        tiles = net.U[1].T.reshape(4, 8, params.patch, params.patch)
        mosaic = np.block([[np.pad(t / np.abs(t).max(), 1) for t in row] for row in tiles])
        ax.imshow(mosaic, cmap="gray", vmin=-1, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("level-1 basis vectors\n(centre module)\nGabor fit: median R² "
                      f"{data['gabor_r2_median']:.2f}", fontsize=7)
        # row 1: horizontal bars, along the row of modules (RB99's geometry)
        _plot_tuning(axes[0, 1], lengths, es, index, "horizontal bars")
        mean = {key: f" ({rotated[key]['mean']:.1f})" if rotated else "" for key in conditions}
        counts = {key: f"{data['end_stopped_' + key]}{mean[key]}" for key in conditions}
        extreme = rotated.get("extreme_basis")
        _plot_indices(axes[0, 2], index, counts,
                      f"end-stopped of {n_units}, horizontal bars" + (
                          "\n(mean over rotations; a chosen basis:\n"
                          f"{extreme['feedback']} with, {extreme['no_feedback']} without)"
                          if rotated else ""))
        # row 2: training, and bars at each unit's preferred orientation (the physiologist's)
        ax = axes[1, 0]
        err = np.array(data["reconstruction_error"])
        smooth = np.convolve(err, np.ones(20) / 20, mode="valid")      # 200 inputs
        ax.semilogy(np.arange(1, len(err) + 1) * 10, err, color=CIRCUIT, lw=0.3, alpha=0.4)
        ax.semilogy((np.arange(len(smooth)) + 20) * 10, smooth, color=CIRCUIT)
        ax.set(xlabel="training inputs", ylabel=r"reconstruction error $|I - Ur|^2$")
        _plot_tuning(axes[1, 1], lengths, preferred, own, "bars at each unit's orientation")
        own_counts = data["preferred_orientation"]["end_stopped"]
        counts = {key: f"{own_counts[key]} ({along_counts[key]})" for key in conditions}
        _plot_indices(axes[1, 2], own, counts,
                      f"end-stopped of {n_units}, bars at each\nunit's orientation (of the "
                      f"{data['n_units_along_modules']}\ntuned along the row)")
        for ax, letter in zip(axes.flat, "abcdef"):
            panel_label(ax, letter)
    run_params = {"network": "rao_ballard1999", "n_train": n_train, "n_test": n_test,
                  "batch": 10, "bar_lengths_px": lengths.tolist(), "threshold": THRESHOLD,
                  "oriented_threshold": ORIENTED, "gabor_r2_threshold": GABOR_R2,
                  **{k: (list(v) if isinstance(v, tuple) else v)
                     for k, v in vars(params).items()}}
    return fig, data, run_params


#: how each condition is named in the figure's legends and drawn in its histograms
LEGEND = {"feedback": "feedback", "no_feedback": "no feedback", "whitened": "whitening",
          "fixed_point": "fixed point"}
HIST_STYLE = {"feedback": {"color": CIRCUIT, "alpha": 0.7},
              "no_feedback": {"color": VAE, "alpha": 0.5},
              "whitened": {"histtype": "step", "color": REFERENCE},
              "fixed_point": {"histtype": "step", "color": REFERENCE, "ls": ":"}}


def _plot_tuning(ax, lengths, curves, index, title):
    """Three error units' responses against bar length (px), each divided by its largest
    magnitude, with feedback (solid) and without (dotted): the units whose end-stopping index
    feedback raises most, among those with an index in [0, 1] (above 1 the error changes sign
    on long bars).  ``curves[key]["curves"]``: (32, len(lengths)); ``index[key]``: (32,)."""
    fb, nf = index["feedback"], index["no_feedback"]
    gain = np.where((fb >= 0) & (fb <= 1), fb - np.nan_to_num(nf), -np.inf)
    for k, color in zip(np.argsort(gain)[::-1][:3], (CIRCUIT, VAE, REFERENCE)):
        for key, ls in (("feedback", "-"), ("no_feedback", ":")):
            curve = np.array(curves[key]["curves"][k])
            ax.plot(lengths, curve / np.abs(curve).max(), color=color, ls=ls,
                    label=str(k) if key == "feedback" else None)
    ax.axvline(18, color="0.6", lw=0.6)
    ax.set(xlabel="bar length (px)", ylabel="error-unit response (/ max |·|)")
    ax.set_yticks([t for t in ax.get_yticks() if abs(t) <= 1 + 1e-9])
    headroom(ax, 0.35)                                   # for the legend
    ax.legend(frameon=False, fontsize=6, loc="upper center", ncol=3, columnspacing=0.6,
              handlelength=1.2, handletextpad=0.3, title_fontsize=6,
              title=f"{title}\nunits (dotted: no feedback)")


def _plot_indices(ax, index, counts, title):
    """The distribution of the end-stopping index over the error units in each condition of
    ``index`` (key -> (32,)), clipped to [−0.2, 1], with the threshold; ``counts[key]`` is the
    text after the condition's name in the legend."""
    bins = np.linspace(-0.2, 1.0, 13)
    for key, i in index.items():
        ax.hist(np.clip(i, bins[0], bins[-1]), bins, label=f"{LEGEND[key]}: {counts[key]}",
                **HIST_STYLE[key])
    top = ax.get_ylim()[1]
    ax.plot([THRESHOLD, THRESHOLD], [0, top], color=REFERENCE, ls="--", lw=0.8)
    ax.set(xlabel="end-stopping index\n(clipped to [−0.2, 1])", ylabel="error units")
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
    headroom(ax, 0.6)                                    # for the legend
    ax.set_yticks([t for t in ax.get_yticks() if 0 <= t <= top])
    ax.legend(frameon=False, fontsize=6, loc="upper right", title_fontsize=6, handlelength=1.2,
              bbox_to_anchor=(1.04, 1.0), title=title)
