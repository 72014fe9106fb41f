"""Rao & Ballard (1999): their inference equation's steady state, their learning rule, the
equivalent Gaussian model pcbio infers with, and the analysis tools (``docs/mathematics.md``
§14)."""

import json
from dataclasses import replace

import numpy as np
import pytest
from brian2 import ms

from pcbio.circuits import build_circuit
from pcbio.data import natural_image
from pcbio.rao_ballard import (RaoBallardNetwork, bar_field, edge_energy_ratio,
                               filtered_images, gabor, gabor_fit, level2_covariance,
                               load_parameters, map_fixed_point, orientation_index,
                               training_inputs, whitening_covariance)
from pcbio.simulate import simulate


def _small(prior="gaussian", **overrides):
    """A small network with the paper's σ², σ_td², α, α_h and λ (4×4 patches, 3 modules offset by
    1 pixel, 3 level-1 units each, 4 level-2 units; ``overrides``: other values) and random,
    not small, weights."""
    p = load_parameters(patch=4, offset=1, level1_units=3, level2_units=4, prior=prior,
                        **overrides)
    net = RaoBallardNetwork.initial(p, seed=1)
    rng = np.random.default_rng(2)
    net.U = rng.normal(size=net.U.shape) * 0.5
    net.Uh = rng.normal(size=net.Uh.shape) * 0.5
    return p, net


def _energy(net, I, r, rh):
    """RB99's energy, written here from the paper: |I − Ur|²/2σ² + |r − U_h r_h|²/2σ_td²
    + α|r|²/2 + α_h|r_h|²/2 (per input)."""
    p = net.params
    return (0.5 * np.sum((I - r @ net.block_weights().T) ** 2, -1) / p.sigma2
            + 0.5 * np.sum((r - rh @ net.Uh.T) ** 2, -1) / p.sigma_td2
            + 0.5 * p.alpha * np.sum(r ** 2, -1) + 0.5 * p.alpha_top * np.sum(rh ** 2, -1))


def test_steady_state_of_the_inference_equation_is_the_closed_form():
    """With U fixed and a top-down prediction r_td, RB99's equation
    ``dr/dt = k1[Uᵀ(I − Ur)/σ² + (r_td − r)/σ_td² − α r]`` settles at
    ``r* = (UᵀU/σ² + (α + 1/σ_td²) I)⁻¹ (UᵀI/σ² + r_td/σ_td²)``: integrated here by hand
    (Euler steps of k1·0.2, k1 = 0.5 as in the paper), by pcbio's rate circuit on the equivalent model with the
    level-2 units clamped (r_td = U_h r_h), and in pcbio's joint inference with its own r_h —
    each to 1e-6."""
    p, net = _small()
    I = training_inputs(2, p, seed=0)
    rh = np.random.default_rng(3).normal(size=(2, p.level2_units))
    U, r_td = net.block_weights(), rh @ net.Uh.T
    n1 = U.shape[1]
    A = U.T @ U / p.sigma2 + (p.alpha + 1 / p.sigma_td2) * np.eye(n1)
    closed = np.linalg.solve(A, (I @ U / p.sigma2 + r_td / p.sigma_td2).T).T
    r = np.zeros_like(closed)
    for _ in range(4000):
        r += p.k1 * 0.2 * ((I - r @ U.T) @ U / p.sigma2 + (r_td - r) / p.sigma_td2 - p.alpha * r)
    np.testing.assert_allclose(r, closed, atol=1e-6)
    circuit = build_circuit(net.equivalent_model(), "rate", top="clamped")
    traj = simulate(circuit, I, duration=400 * ms, target="numpy", init=[np.zeros_like(closed), rh])
    np.testing.assert_allclose(traj.final_means()[0], closed, atol=1e-6)
    r_joint, rh_joint = net.infer(I)
    joint = np.linalg.solve(A, (I @ U / p.sigma2 + rh_joint @ net.Uh.T / p.sigma_td2).T).T
    np.testing.assert_allclose(r_joint, joint, atol=1e-9)


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_equivalent_model_has_the_papers_energy(alpha):
    """Folding the level-1 prior α into the hierarchy (``p(r | r_h) = N(c U_h r_h, S)`` and a top
    prior of precision ``α_h I + κ U_hᵀU_h``) changes the energy only by a constant:
    ``−log p_equiv(I, r, r_h) − E_RB(I, r, r_h)`` is the same at every (r, r_h).  Also at
    α = 0.3: at the paper's α = 1, ``κ = α S/σ_td²`` equals ``S/σ_td²``, so a factor α dropped
    from it would go unseen."""
    p, net = _small(alpha=alpha)
    I = training_inputs(1, p, seed=0)
    model = net.equivalent_model()
    rng = np.random.default_rng(5)
    gaps = [(-model.log_joint(I, [r, rh]) - _energy(net, I, r, rh))[0]
            for r, rh in ((rng.normal(size=(1, 9)), rng.normal(size=(1, 4))) for _ in range(5))]
    np.testing.assert_allclose(gaps, gaps[0], atol=1e-9)


def test_one_learning_step_is_the_papers_weight_update():
    """RB99's learning rule for one input, written here from the paper:
    ``ΔU = k2((1/σ²)(I − U r) rᵀ − λ U)`` per module and ``ΔU_h = k2((1/σ_td²)(r − U_h r_h)
    r_hᵀ − λ U_h)`` — pcbio's step (Hebbian ``parameter_gradient`` of the model without the
    level-1 prior, block-masked, plus weight decay) equals it exactly.  A step on a minibatch
    is the sum of the rule's updates for its inputs at the same weights (the decay counted
    once per input), as its docstring says: checked on one input and on three."""
    p, net0 = _small()
    n_in, n1, k2 = p.patch ** 2, p.level1_units, 0.7
    for n in (1, 3):
        net = RaoBallardNetwork(p, net0.U.copy(), net0.Uh.copy())
        I = training_inputs(n, p, seed=4)
        r, rh = net.infer(I)
        U0, Uh0 = net.U.copy(), net.Uh.copy()
        resid = I - r @ net.block_weights().T
        want_U, want_Uh = U0.copy(), Uh0.copy()
        for k in range(n):
            want_U += np.stack([k2 * (np.outer(resid[k, m * n_in:(m + 1) * n_in],
                                               r[k, m * n1:(m + 1) * n1]) / p.sigma2
                                      - p.weight_decay * U0[m]) for m in range(p.modules)])
            want_Uh += k2 * (np.outer(r[k] - rh[k] @ Uh0.T, rh[k]) / p.sigma_td2
                             - p.weight_decay * Uh0)
        net.learning_step(I, r, rh, k2)
        np.testing.assert_allclose(net.U, want_U, rtol=0, atol=1e-13)
        np.testing.assert_allclose(net.Uh, want_Uh, rtol=0, atol=1e-13)


def test_a_held_basis_length_rescales_each_column_after_the_papers_step():
    """``basis_norm`` > 0 (Olshausen & Field's normalisation, not RB99's): one learning step is
    the paper's update (checked exactly above) followed by rescaling each level-1 basis vector
    to that length; the level above is the paper's update unchanged.  ``basis_norm_top`` does
    the same for the level-2 basis vectors and leaves level 1 to the paper's update."""
    p, net = _small()
    U0, Uh0 = net.U.copy(), net.Uh.copy()
    held = RaoBallardNetwork(replace(p, basis_norm=2.0), U0.copy(), Uh0.copy())
    I = training_inputs(3, p, seed=4)
    r, rh = net.infer(I)
    net.learning_step(I, r, rh, 0.7)
    held.learning_step(I, r, rh, 0.7)
    want = 2.0 * net.U / np.linalg.norm(net.U, axis=1, keepdims=True)
    np.testing.assert_allclose(held.U, want, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.linalg.norm(held.U, axis=1), 2.0, rtol=1e-13)
    np.testing.assert_array_equal(held.Uh, net.Uh)
    # basis_norm_top: the level-2 basis vectors (columns of U_h) likewise, level 1 untouched
    top = RaoBallardNetwork(replace(p, basis_norm_top=0.5), U0, Uh0)
    top.learning_step(I, r, rh, 0.7)
    np.testing.assert_allclose(top.Uh, 0.5 * net.Uh / np.linalg.norm(net.Uh, axis=0),
                               rtol=0, atol=1e-13)
    np.testing.assert_array_equal(top.U, net.U)


def test_the_experiments_options_set_the_papers_values_or_name_their_variant():
    """``rao_ballard``'s options map to the network file's values: none gives the paper's
    network; ``basis=unit_norm`` holds the level-1 basis vectors at length 1 (with contrast 1
    and k2 from 0.1) and leaves level 2 to the paper's weight decay, whatever its prior;
    ``alpha_top`` sets level 2's prior weight α_h, by default the paper's (the file's 0.05);
    ``front_end`` is RB99's DoG by default, or the lateral-inhibition whitening filter;
    ``image_rotation`` turns the photographs by 0° (the default) or 90°; ``window_sigma`` sets
    the patches' Gaussian window, by default the file's 4 px."""
    from pcbio.experiment import load_experiment
    experiment = load_experiment("rao_ballard")
    parameters = experiment.parameters
    assert parameters() == load_parameters()
    assert float(experiment.OPTIONS["alpha_top"].default) == load_parameters().alpha_top == 0.05
    assert parameters(prior_top="sparse", alpha_top="0.02") == load_parameters(
        prior_top="sparse", alpha_top=0.02)
    held = parameters(prior="sparse", basis="unit_norm")
    assert (held.prior, held.basis_norm, held.basis_norm_top, held.contrast, held.k2_initial) \
        == ("sparse", 1.0, 0.0, 1.0, 0.1)
    both = parameters(prior="sparse", basis="unit_norm", prior_top="sparse")
    assert (both.prior_top, both.basis_norm, both.basis_norm_top) == ("sparse", 1.0, 0.0)
    assert parameters(prior_top="sparse").basis_norm_top == 0.0
    assert experiment.OPTIONS["images"][0] == "grey"
    assert parameters(images="balanced", prior="sparse") == load_parameters(
        prior="sparse", images=experiment.BALANCED_IMAGES)
    assert experiment.OPTIONS["front_end"][0] == load_parameters().front_end == "dog"
    assert parameters(front_end="lateral") == load_parameters(front_end="lateral")
    assert experiment.OPTIONS["image_rotation"][0] == "0"
    assert parameters(image_rotation="90") == load_parameters(image_rotation=90)
    assert float(experiment.OPTIONS["window_sigma"].default) == load_parameters().window_sigma
    assert parameters(window_sigma="6") == load_parameters(window_sigma=6.0)


def test_edge_energy_ratio_is_the_ratio_of_squared_derivatives():
    """``edge_energy_ratio`` is ``mean((∂I/∂y)²)/mean((∂I/∂x)²)`` with forward differences: for
    the plane ``I = a x + b y`` every difference is ``b`` down and ``a`` across, so it is b²/a²
    exactly; transposing an image swaps the two means, inverting it; an image that does not
    vary along its rows, or is not 2-D, is refused."""
    y, x = np.mgrid[:16, :26].astype(float)
    assert edge_energy_ratio(0.5 * x + 2.0 * y) == pytest.approx(16.0, rel=1e-14)
    image = np.random.default_rng(0).normal(size=(20, 30))
    assert edge_energy_ratio(image.T) == pytest.approx(1 / edge_energy_ratio(image), rel=1e-14)
    with pytest.raises(ValueError, match="vary along its rows"):
        edge_energy_ratio(y)
    with pytest.raises(ValueError, match="2-D array"):
        edge_energy_ratio(np.ones(5))


def test_the_balanced_images_have_as_much_horizontal_as_vertical_structure():
    """The experiment's ``images=balanced`` set is chosen for edge-energy ratios within 0.8–1.25
    (neither orientation 25 % ahead), after the DoG filtering training uses; the network file's
    grey set is not: together its images have at least 1.4 times as much vertical as horizontal
    energy (they are scaled to the same variance, so their energies add), which is what the
    option is for.  ``filtered_images`` has each image at standard deviation ``contrast``."""
    from pcbio.experiment import load_experiment
    experiment = load_experiment("rao_ballard")
    balanced = filtered_images(experiment.parameters(images="balanced"))
    assert all(0.8 <= edge_energy_ratio(image) <= 1.25 for image in balanced)
    grey = filtered_images(load_parameters(contrast=2.0))
    np.testing.assert_allclose([image.std() for image in grey], 2.0, rtol=1e-12)
    down = sum(np.mean(np.diff(image, axis=0) ** 2) for image in grey)
    across = sum(np.mean(np.diff(image, axis=1) ** 2) for image in grey)
    assert across / down > 1.4


def test_turning_the_photographs_turns_the_training_images_and_inverts_their_edge_energy():
    """``image_rotation = 90`` turns each photograph a quarter turn before the front end.  The
    DoG (isotropic Gaussians, mirror-symmetric boundary) commutes with a quarter turn, so each
    training image is the unturned one turned, to round-off, and as the turn maps ∂/∂x to ∂/∂y
    its edge-energy ratio is the reciprocal: the grey photographs' excess of vertical
    structure becomes one of horizontal structure, along the row of modules."""
    p = load_parameters(images=("camera", "brick"), contrast=2.0)
    turned = filtered_images(replace(p, image_rotation=90))
    for image, original in zip(turned, filtered_images(p)):
        np.testing.assert_allclose(image, np.rot90(original), rtol=0, atol=1e-12)
        assert edge_energy_ratio(image) == pytest.approx(1 / edge_energy_ratio(original),
                                                         rel=1e-12)


def _ar1_field(size, rho, seed):
    """A stationary Gaussian image (size, size) of unit variance whose pixels' covariance is
    ``rho^(|Δrow| + |Δcol|)``: AR(1) along each row, then along each column."""
    rng = np.random.default_rng(seed)
    field = rng.normal(size=(size, size))
    for axis in (1, 0):
        field = np.moveaxis(field, axis, 0)
        for i in range(1, size):
            field[i] = rho * field[i - 1] + np.sqrt(1 - rho ** 2) * field[i]
        field = np.moveaxis(field, 0, axis)
    return field


def test_the_lateral_kernel_is_the_centre_row_of_the_inverse_square_root_covariance():
    """``whitening_kernel`` is the centre row of ``(C + noise·I)^{-1/2}`` of the images' 9×9
    patches, checked against closed forms.  White noise (C = I): a single centre weight
    ``1/√(1 + noise)``.  A separable AR(1) image (C = C₁ ⊗ C₁, ``C₁ = ρ^|i−j|``), noise 0:
    ``C^{-1/2} = C₁^{-1/2} ⊗ C₁^{-1/2}``, so the kernel is the outer product of the centre row
    of ``C₁^{-1/2}`` with itself — a centre–surround filter (centre 3.8, nearest neighbours
    −1.2 at ρ = 0.8).  Both from ~20,000 patches of one seeded image, to within their sampling
    error (about 1 % of the centre weight).  An even size is refused (no centre pixel)."""
    from pcbio.rao_ballard import whitening_kernel
    white = np.random.default_rng(1).normal(size=(300, 300))
    want = np.zeros((9, 9))
    want[4, 4] = 1 / np.sqrt(1.5)
    np.testing.assert_allclose(whitening_kernel([white], 0.5), want, atol=0.02)

    C1 = 0.8 ** np.abs(np.subtract.outer(np.arange(9), np.arange(9)))
    lam, vec = np.linalg.eigh(C1)
    row = ((vec / np.sqrt(lam)) @ vec.T)[4]
    np.testing.assert_allclose(whitening_kernel([_ar1_field(600, 0.8, seed=0)], 0.0),
                               np.outer(row, row), atol=0.04)
    with pytest.raises(ValueError, match="size must be odd"):
        whitening_kernel([white], 0.5, size=8)


def test_the_lateral_front_end_whitens_the_training_photographs_with_a_centre_surround_filter():
    """With ``front_end="lateral"`` the training images are each photograph correlated with the
    whitening kernel learned from the training set (``lateral_kernel``, input noise 0.05),
    scaled to standard deviation ``contrast`` — built here from that definition.  The kernel
    learned from natural photographs is centre–surround: positive centre, negative nearest
    neighbours (Atick & Redlich 1992).  RB99's front end, the default, is the DoG unchanged."""
    from scipy.ndimage import correlate

    from pcbio.rao_ballard import dog, lateral_kernel
    p = load_parameters(front_end="lateral", images=("camera", "grass"))
    kernel = lateral_kernel(p.images, p.lateral_noise)
    assert kernel[4, 4] > 0
    assert max(kernel[3, 4], kernel[5, 4], kernel[4, 3], kernel[4, 5]) < 0
    for name, image in zip(p.images, filtered_images(p)):
        want = correlate(natural_image(name), kernel, mode="reflect")
        np.testing.assert_allclose(image, p.contrast * want / want.std(), rtol=1e-12)
    dog_p = replace(p, front_end="dog")
    want = dog(natural_image("camera"), dog_p.dog_center, dog_p.dog_surround)
    np.testing.assert_array_equal(filtered_images(dog_p)[0], dog_p.contrast * (want / want.std()))


def test_error_units_carry_the_response_whitened_by_the_level_above():
    """At the network's equilibrium ``r_h = (U_hᵀU_h + α_h σ_td² I)⁻¹U_hᵀ r`` (∂E/∂r_h = 0), so by
    the Woodbury identity the error units carry ``r − U_h r_h = σ_td² Σ⁻¹ r`` with
    ``Σ = σ_td² I + U_h U_hᵀ/α_h``, the covariance of r under the level above's model
    (``docs/mathematics.md`` §14)."""
    p, net = _small()
    r, rh = net.infer(training_inputs(5, p, seed=3))
    want = p.sigma_td2 * np.linalg.solve(level2_covariance(net.Uh, p), r.T).T
    np.testing.assert_allclose(r - rh @ net.Uh.T, want, rtol=1e-10, atol=1e-12)


def _responses_of_second_moment(seed):
    """A 3-module, 3-unit network's parameters and 9 responses ``r`` (9, 9) whose outer
    products sum to exactly 9C (rows of √9·C^½), C = Q diag(v) Qᵀ with v from 4 (far above the
    rule's floor v₀ = 0.1) to 1e-3 (below it)."""
    p = load_parameters(patch=4, offset=1, level1_units=3, level2_units=12)
    Q = np.linalg.qr(np.random.default_rng(seed).normal(size=(9, 9)))[0]
    v = np.geomspace(4.0, 1e-3, 9)
    return p, Q, v, (Q * v) @ Q.T, 3.0 * (Q * np.sqrt(v)) @ Q.T


def test_learning_rule_is_stationary_where_the_level_above_half_whitens():
    """RB99's level-2 rule ``ΔU_h ∝ (r − U_h r_h) r_hᵀ/σ_td² − λU_h``, averaged over responses
    of second moment C, vanishes where ``(s² + α_h σ_td²)² = v α_h/λ`` along each eigenvector of C
    (eigenvalue v; s = 0 where v < α_h λ σ_td⁴), i.e. where the level above's covariance is
    ``max(√(C/(α_h λ)), σ_td²)`` — half-whitening, not whitening (§14, derived there).  Checked
    with 9 responses whose sum of outer products is exactly 9C (rows of √9·C^½), one step of the
    rule as pcbio takes it; weights 10 % larger or rotated are not stationary, and the larger
    ones are pulled back."""
    p, Q, v, C, r = _responses_of_second_moment(5)
    net = RaoBallardNetwork(p, np.zeros((3, 16, 3)), map_fixed_point(C, p))

    def step(Uh):
        net.Uh = Uh.copy()
        rh = np.linalg.solve(Uh.T @ Uh + p.alpha_top * p.sigma_td2 * np.eye(12), Uh.T @ r.T).T
        net.learning_step(np.zeros((9, 48)), r, rh, k2=1.0)
        return net.Uh - Uh

    Uh = map_fixed_point(C, p)
    assert np.abs(step(Uh)).max() < 1e-12 * np.abs(Uh).max()
    want = (Q * np.maximum(np.sqrt(v / (p.alpha_top * p.weight_decay)), p.sigma_td2)) @ Q.T
    np.testing.assert_allclose(level2_covariance(Uh, p), want, rtol=1e-10)
    assert np.sum(step(1.1 * Uh) * Uh) < -1e-3 * np.abs(Uh).max()
    turn = np.linalg.qr(np.random.default_rng(7).normal(size=(9, 9)))[0]
    assert np.abs(step(turn @ Uh)).max() > 1e-3 * np.abs(Uh).max()
    # the fully whitening comparison meets the rule's covariance at its floor and is ∝ C above
    W = whitening_covariance(C, p)
    v0 = p.alpha_top * p.weight_decay * p.sigma_td2 ** 2
    np.testing.assert_allclose(W, (Q * (p.sigma_td2 * np.maximum(v, v0) / v0)) @ Q.T, rtol=1e-10)


def test_the_fully_whitening_level_2_is_what_maximum_likelihood_fits():
    """The comparison level 2 (``whitening_covariance``) is the one maximum likelihood fits: for
    a level 2 with top-down noise variance v₀ = α_h λ σ_td⁴, probabilistic PCA (Tipping &
    Bishop 1999) puts ``U_h U_hᵀ/α_h = V (v − v₀)₊ Vᵀ``, so its covariance is ``max(C, v₀)``.
    There the VAE side's exact ELBO gradient w.r.t. U_h (exact posterior, data whose outer
    products sum to 9C) vanishes — at half-whitening weights (``Σ = max(√(v₀C), v₀)``, what the
    predictive-coding rule learns) it does not — and its errors ``v₀ max(C, v₀)⁻¹ r`` are the
    ``σ_td² Σ_w⁻¹ r`` that ``end_stopping`` reports."""
    from pcbio.inference import exact_posterior
    from pcbio.inference.elbo import elbo_gradient
    from pcbio.model import GenerativeModel, Link
    p, Q, v, C, r = _responses_of_second_moment(6)
    v0 = p.alpha_top * p.weight_decay * p.sigma_td2 ** 2

    def weight_gradient(Uh):
        model = GenerativeModel(np.zeros(12), 1.0 / p.alpha_top, [Link(Uh, cov=v0)])
        g = elbo_gradient(model, r, exact_posterior(model, r), method="exact")
        return g.params.links[0].weights, model

    Uh = np.zeros((9, 12))
    Uh[:, :9] = Q * np.sqrt(p.alpha_top * np.maximum(v - v0, 0.0))
    grad, model = weight_gradient(Uh)
    assert np.abs(grad).max() < 1e-9 * np.abs(Uh).max()
    sigma = v0 * np.eye(9) + Uh @ Uh.T / p.alpha_top
    np.testing.assert_allclose(sigma, (Q * np.maximum(v, v0)) @ Q.T, atol=1e-12)
    np.testing.assert_allclose(v0 * np.linalg.solve(sigma, r.T),
                               p.sigma_td2 * np.linalg.solve(whitening_covariance(C, p), r.T),
                               rtol=1e-9, atol=1e-12)
    half = np.zeros((9, 12))
    half[:, :9] = Q * np.sqrt(v0 * p.alpha_top * np.maximum(np.sqrt(v / v0) - 1, 0.0))
    assert np.abs(weight_gradient(half)[0]).max() > 1e-2 * np.abs(half).max()


def test_learning_rate_schedule_is_the_papers():
    """k2 starts at 1 and is divided by 1.015 after every 40 training inputs."""
    p = load_parameters()
    assert p.k2(0) == 1.0 and p.k2(39) == 1.0
    assert p.k2(40) == pytest.approx(1 / 1.015) and p.k2(4000) == pytest.approx(1.015 ** -100)


def test_sparse_prior_finds_a_stationary_point_of_its_energy():
    """The kurtotic prior ``G(r) = α Σ log(1 + r²)/2``: the inferred responses are a stationary
    point of the energy (its finite-difference gradient vanishes there), with the level above
    and without it."""
    p, net = _small("sparse")
    I = training_inputs(1, p, seed=6)
    r, rh = net.infer(I)

    def energy(z):
        rr, hh = z[:, :9], z[:, 9:]
        return (_energy(net, I, rr, hh) - 0.5 * p.alpha * np.sum(rr ** 2, -1)
                + 0.5 * p.alpha * np.sum(np.log1p(rr ** 2), -1))[0]
    z = np.concatenate([r, rh], axis=1)
    h = 1e-5
    grad = [(energy(z + h * e) - energy(z - h * e)) / (2 * h) for e in np.eye(z.shape[1])[:, None]]
    assert np.abs(grad).max() < 1e-5
    r_alone, _ = net.infer(I, feedback=False)       # level 1 alone: |I − Ur|²/2σ² + sparse prior
    U = net.block_weights()

    def alone(rr):
        return (0.5 * np.sum((I - rr @ U.T) ** 2) / p.sigma2
                + 0.5 * p.alpha * np.sum(np.log1p(rr ** 2)))
    grad = [(alone(r_alone + h * e) - alone(r_alone - h * e)) / (2 * h) for e in np.eye(9)[:, None]]
    assert np.abs(grad).max() < 1e-5


def test_sparse_map_converges_on_the_badly_conditioned_weights_of_training():
    """The full-size network after the paper's first learning step (k2 = 1, ten inputs) under
    the sparse prior: U's columns grow to norms in the hundreds against α_h = 0.05, an energy
    with condition number ~1e6 on which L-BFGS stalled and training stopped.  The inferred
    responses are still a minimum of RB99's sparse energy written out here (its analytic
    gradient, from the energy's terms, vanishes relative to the energy's scale; no random
    perturbation lowers it), with the level above and without it."""
    p = load_parameters(prior="sparse")
    net = RaoBallardNetwork.initial(p, seed=0)
    I = training_inputs(12, p, seed=0)
    r, rh = net.infer(I[:10])
    net.learning_step(I[:10], r, rh, p.k2(0))
    assert np.linalg.norm(net.U, axis=1).mean() > 100          # the ill-conditioned case
    U, probe = net.block_weights(), I[10:]

    def energy(r_, rh_):
        """Per input: the Gaussian energy's terms with the sparse prior in place of α|r|²/2
        (without the level above: level 1 alone, |I − Ur|²/2σ² + the prior)."""
        top = (0.5 * np.sum((r_ - rh_ @ net.Uh.T) ** 2, -1) / p.sigma_td2
               + 0.5 * p.alpha_top * np.sum(rh_ ** 2, -1)) if rh_ is not None else 0.0
        return (0.5 * np.sum((probe - r_ @ U.T) ** 2, -1) / p.sigma2 + top
                + 0.5 * p.alpha * np.sum(np.log1p(r_ ** 2), -1))

    rng = np.random.default_rng(1)
    for feedback in (True, False):
        r, rh = net.infer(probe, feedback)
        g_r = -(probe - r @ U.T) @ U / p.sigma2 + p.alpha * r / (1 + r ** 2)
        grads = [g_r]
        if feedback:
            e_td = (r - rh @ net.Uh.T) / p.sigma_td2
            grads = [g_r + e_td, -e_td @ net.Uh + p.alpha_top * rh]
        scale = np.abs(energy(r, rh))
        assert np.all(np.abs(np.concatenate(grads, -1)).max(-1) <= 1e-8 * scale)
        for _ in range(20):
            dr = rng.normal(size=r.shape) * 1e-3
            dh = rng.normal(size=rh.shape) * 1e-3 if feedback else None
            assert np.all(energy(r + dr, None if rh is None else rh + dh) >= energy(r, rh)
                          - 1e-12 * scale)


def _prior_terms(x, kind, weight):
    """A level's prior written out from the paper: gradient and Hessian diagonal of
    ``w Σ x²/2`` (Gaussian) or ``w Σ log(1 + x²)/2`` (sparse)."""
    if kind == "gaussian":
        return weight * x, np.full_like(x, weight)
    return weight * x / (1 + x ** 2), weight * (1 - x ** 2) / (1 + x ** 2) ** 2


@pytest.mark.parametrize("prior, prior_top, scale", [("sparse", "gaussian", 30.0),
                                                     ("sparse", "sparse", 10.0),
                                                     ("gaussian", "sparse", 10.0)])
def test_sparse_map_is_a_strict_minimum_where_responses_reach_the_priors_concave_range(
        prior, prior_top, scale):
    """Unit-length basis vectors at contrast 1 (``basis=unit_norm``'s regime): many responses
    of a level with the sparse prior exceed 1, where ``α log(1 + r²)/2`` is concave and the
    energy is not convex — on level 1, on level 2 (``prior_top``, weight α_h) or on both.  The
    inferred responses still satisfy the second-order conditions of a strict local minimum of
    RB99's energy with those priors (:func:`_assert_strict_minimum`) — with the level above and
    (for a sparse level 1) without it."""
    p = load_parameters(prior=prior, prior_top=prior_top, contrast=1.0, basis_norm=1.0)
    net = RaoBallardNetwork.initial(p, seed=0)
    net.U /= np.linalg.norm(net.U, axis=1, keepdims=True)
    net.Uh *= scale                                 # a level above that predicts something
    I = training_inputs(8, p, seed=3)
    for feedback in (True, False) if prior == "sparse" else (True,):
        r, rh = net.infer(I, feedback)
        sparse = [x for x, kind in ((r, prior), (rh, prior_top)) if kind == "sparse"
                  and x is not None]
        assert all(np.sum(np.abs(x) > 1) >= len(I) for x in sparse)  # the concave range
        _assert_strict_minimum(net, I, r, rh)


def test_sparse_map_walks_far_into_the_priors_flat_tails():
    """Both levels sparse, unit-length level-1 basis vectors and two strong inputs (contrast 20
    instead of 1, as the strongest patches of training with both levels sparse): their MAP lies
    far in the priors' flat tails, level-1 responses beyond 20 and level-2 ones in the hundreds,
    where the pull of ``α log(1 + r²)/2``, ``α r/(1 + r²)``, is about ``α/|r|``.  The solver
    walks there (it took 221 and 288 steps, where it used to stop at 200 with an error) and ends
    at a strict local minimum of RB99's energy (:func:`_assert_strict_minimum`)."""
    p = load_parameters(prior="sparse", prior_top="sparse", contrast=1.0, basis_norm=1.0)
    net = RaoBallardNetwork.initial(p, seed=0)
    net.U /= np.linalg.norm(net.U, axis=1, keepdims=True)
    I = 20.0 * training_inputs(16, p, seed=3)[[8, 12]]
    r, rh = net.infer(I)
    assert np.all(np.abs(r).max(axis=1) > 20) and np.all(np.abs(rh).max(axis=1) > 300)
    _assert_strict_minimum(net, I, r, rh)


@pytest.mark.slow
def test_sparse_map_walks_thousands_of_steps_where_training_needs_it():
    """The input that stopped a training run with an error at the solver's old limit of 2000
    steps: the balanced images, both levels sparse with α_h = 0.02, unit-length level-1 basis
    vectors, seed 2, the 97th input of the shuffled order after nine updates.  Its MAP lies
    thousands out in level 2's flat tail, where the prior's pull is about ``α_h/|r_h|``; the
    solver walks there (about 2500 steps) and ends at a strict local minimum of RB99's energy."""
    from pcbio.experiment import load_experiment
    from pcbio.rao_ballard import RaoBallardLearner
    p = load_experiment("rao_ballard").parameters(prior="sparse", prior_top="sparse",
                                                  basis="unit_norm", alpha_top="0.02",
                                                  images="balanced")
    x = training_inputs(12400, p, seed=2)[:12000]
    x = x[np.random.default_rng([2, 0]).permutation(12000)[:97]]   # the experiment's order
    learner = RaoBallardLearner(RaoBallardNetwork.initial(p, seed=2))
    learner.epoch(x[:90].reshape(9, 10, -1), seed=(2, 0))
    r, rh = learner.network.infer(x[96:])
    assert np.abs(rh).max() > 1000
    _assert_strict_minimum(learner.network, x[96:], r, rh)


def _assert_strict_minimum(net, I, r, rh):
    """The second-order conditions of a strict local minimum of RB99's energy at responses
    ``(r, rh)`` to inputs I (``rh`` None: level 1 alone), each input: the gradient vanishes
    (below 1e-5 of its size at r = 0; the solver stops at 1e-9 of −log p(I, r), whose
    normalising constants are in the hundreds) and the Hessian, from the energy's terms, is
    positive definite."""
    p, U, Uh = net.params, net.block_weights(), net.Uh
    n1 = Uh.shape[0]
    for n in range(len(I)):
        g_prior, h_prior = _prior_terms(r[n], p.prior, p.alpha)
        g = -(I[n] - U @ r[n]) @ U / p.sigma2 + g_prior
        H = U.T @ U / p.sigma2 + np.diag(h_prior)
        if rh is not None:
            g_top, h_top = _prior_terms(rh[n], p.prior_top, p.alpha_top)
            e_td = (r[n] - Uh @ rh[n]) / p.sigma_td2
            g = np.concatenate([g + e_td, -e_td @ Uh + g_top])
            H = np.block([[H + np.eye(n1) / p.sigma_td2, -Uh / p.sigma_td2],
                          [-Uh.T / p.sigma_td2, Uh.T @ Uh / p.sigma_td2 + np.diag(h_top)]])
        assert np.abs(g).max() <= 1e-5 * np.abs(I[n] @ U).max()        # the gradient at r = 0
        assert np.linalg.eigvalsh(H).min() > 0


def test_orientation_index_of_gratings_and_bars():
    """A horizontal-stripe grating has orientation index ≈ 1 and preferred (stripe) orientation
    0; the same grating turned 90° has preferred orientation π/2; a round blob has index ≈ 0;
    a constant added to the grating changes neither (the index is taken over non-zero
    frequencies, and a constant has power at zero frequency only).
    A bar of the level-2 field is as long and as thick as asked, and a shift moves it across
    its length, whatever its angle."""
    y, x = np.mgrid[:16, :16]
    stripes = np.cos(2 * np.pi * y / 4).ravel()
    turned = np.cos(2 * np.pi * x / 4).ravel()
    blob = np.exp(-((y - 7.5) ** 2 + (x - 7.5) ** 2) / 8).ravel()
    osi, angle = orientation_index(np.stack([stripes, turned, blob, stripes + 3.0], axis=1), 16)
    assert osi[0] > 0.99 and osi[1] > 0.99 and osi[2] < 0.05
    assert osi[3] == pytest.approx(osi[0], abs=1e-12) and angle[3] == pytest.approx(angle[0])
    assert min(angle[0], np.pi - angle[0]) < 1e-6 and abs(angle[1] - np.pi / 2) < 1e-6
    p = load_parameters()
    bar = bar_field(p, 10, 0.0, (7.5, 12.5), thickness=2)
    assert bar.sum(axis=1).max() == 10 and bar.sum(axis=0).max() == 2
    # a bar moved across its length: every lit pixel lies within half its length along it and
    # within half its thickness of the moved centre line (so at least 2 px from the unmoved one)
    for angle in (0.3, 1.2, 2.5):
        rows, cols = np.nonzero(bar_field(p, 8, angle, (7.5, 12.5), thickness=1, shift=2.5))
        along = (cols - 12.5) * np.cos(angle) + (rows - 7.5) * np.sin(angle)
        across = -(cols - 12.5) * np.sin(angle) + (rows - 7.5) * np.cos(angle)
        assert rows.size and np.all(np.abs(along) <= 4) and np.all(np.abs(across - 2.5) <= 0.5)


def test_gabor_fit_recovers_gabors_and_rejects_noise():
    """Ten random Gabors on the 16×16 patch (envelopes 1.5–3.5 px, 0.08–0.3 cycles/px, any
    orientation and phase) are fitted exactly — R² = 1 to 1e-8, the centre to 1e-4 px and the
    frequency to 1e-5 cycles/px (the other parameters have symmetries: θ + π with the phase
    turned, for one) — and white noise, which no Gabor explains, gets R² below 0.2; a zero
    vector gets 0, and a basis of the wrong size is refused."""
    rng = np.random.default_rng(0)
    true = np.array([[rng.uniform(0.5, 2), rng.uniform(5, 10), rng.uniform(5, 10),
                      rng.uniform(0, np.pi), rng.uniform(1.5, 3.5), rng.uniform(1.5, 3.5),
                      rng.uniform(0.08, 0.3), rng.uniform(-np.pi, np.pi)] for _ in range(10)])
    r2, fitted = gabor_fit(np.stack([gabor(q, 16) for q in true], axis=1), 16)
    np.testing.assert_allclose(r2, 1.0, atol=1e-8)
    np.testing.assert_allclose(fitted[:, 1:3], true[:, 1:3], atol=1e-4)
    np.testing.assert_allclose(fitted[:, 6], true[:, 6], atol=1e-5)
    noise_r2, _ = gabor_fit(rng.normal(size=(256, 5)), 16)
    assert np.all(noise_r2 < 0.2)
    assert gabor_fit(np.zeros((256, 1)), 16)[0][0] == 0.0
    with pytest.raises(ValueError, match="basis must have size"):
        gabor_fit(np.zeros((255, 1)), 16)


def test_colour_sample_images_become_their_luminance():
    """A colour training image is its luminance, 0.2125 R + 0.7154 G + 0.0721 B (ITU-R BT.709, on
    RGB scaled to [0, 1]), scaled to zero mean and unit variance like the grey ones; a name
    scikit-image does not ship is refused when the parameters are made, before any work."""
    from skimage import data
    lum = (data.astronaut() / 255.0) @ np.array([0.2125, 0.7154, 0.0721])
    np.testing.assert_allclose(natural_image("astronaut"), (lum - lum.mean()) / lum.std(),
                               atol=1e-10)
    camera = data.camera().astype(float)
    np.testing.assert_allclose(natural_image("camera"), (camera - camera.mean()) / camera.std())
    with pytest.raises(ValueError, match="images must be one of"):
        load_parameters(images=("camera", "eagle"))       # eagle needs a download


@pytest.mark.parametrize("overrides, message", [
    (dict(patch=0), "patch must be an integer >= 1"),
    (dict(sigma_td2=-1.0), "sigma_td2 must be a finite number > 0"),
    (dict(level2_units=2.5), "level2_units must be an integer"),
    (dict(k2_divisor=0.5), "k2_divisor must be >= 1"),
    (dict(basis_norm=-1.0), "basis_norm must be a finite number >= 0"),
    (dict(basis_norm_top=-1.0), "basis_norm_top must be a finite number >= 0"),
    (dict(prior_top="laplace"), "prior_top must be one of"),
    (dict(dog_surround=0.5), "dog_surround (0.5) must exceed dog_center"),
    (dict(front_end="retina"), "front_end must be one of"),
    (dict(image_rotation=45), "image_rotation must be one of [0, 90, 180, 270]"),
    (dict(image_rotation=90.0), "image_rotation must be an integer"),
    (dict(lateral_noise=-0.1), "lateral_noise must be a finite number >= 0"),
    (dict(images=()), "images must name at least one"),
    (dict(window=4.0), "unknown parameter(s) ['window']"),
])
def test_bad_parameters_are_refused_in_one_line_before_any_image_is_loaded(monkeypatch,
                                                                           overrides, message):
    """Each value of the network file (or an override) is checked when the parameters are
    made — a one-line error naming the key, what was wrong and what is allowed — so that no
    image is loaded and no training starts with, e.g., a negative variance (which used to be
    accepted)."""
    import pcbio.rao_ballard as rb
    monkeypatch.setattr(rb, "natural_image", lambda name: pytest.fail("an image was loaded"))
    with pytest.raises((ValueError, TypeError)) as err:
        load_parameters(**overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_network_file_without_a_table_and_bad_analysis_arguments_are_refused(tmp_path):
    """A network file missing a table is named in the error; end_stopping refuses a module that
    does not exist, non-positive or no bar lengths, and lengths that leave no plateau (the index
    would be 0/0), before any response is computed; bar_responses an unknown condition or the
    whitened one without a covariance; tuning and rotated_counts a rotation that is not an
    orthogonal matrix of the module's size, or any rotation of a sparse-prior network (which
    is not rotation invariant) or of one whose basis vectors are held at a length; bars at
    each unit's own angle need one finite angle per unit, and their responses refuse a
    rotation (it would mix units that saw different bars); the rule's fixed point and the
    level-2 covariance, derived for a Gaussian level 2, refuse a sparse one."""
    from pcbio.rao_ballard import end_stopping
    path = tmp_path / "net.toml"
    path.write_text("[architecture]\npatch = 16\n")
    with pytest.raises(ValueError, match=r"missing table\(s\) \['inference', 'learning'"):
        load_parameters(path)
    p, net = _small()
    for kwargs, message in ((dict(lengths=[2, 20], module=3), "module must be below"),
                            (dict(lengths=[]), "lengths must be bar lengths"),
                            (dict(lengths=[-2, 20]), "lengths must be bar lengths"),
                            (dict(lengths=[2, 4, 8]), "lengths must include one above")):
        with pytest.raises(ValueError, match=message):
            end_stopping(net, **kwargs)
    from pcbio.rao_ballard import bar_responses, rotated_counts, tuning
    for kwargs, message in ((dict(conditions=("whitened",)), "'whitened' needs covariance"),
                            (dict(conditions=("lateral",)), "conditions must be one of")):
        with pytest.raises(ValueError, match=message):
            bar_responses(net, [2, 20], **kwargs)
    # a rotation of the basis: orthogonal, of the module's size, and for the Gaussian prior only
    bars = bar_responses(net, [2, 20])
    for rotation, message in ((np.eye(4), "rotation must be 3 × 3"),
                              (2 * np.eye(3), "rotation must be orthogonal")):
        with pytest.raises(ValueError, match=message):
            tuning(bars, rotation)
    with pytest.raises(ValueError, match="must be 3 × 3"):
        rotated_counts(bars, np.eye(3), 0.2)
    _, sparse = _small("sparse")
    with pytest.raises(ValueError, match="sparse prior a rotated basis is another network"):
        rotated_counts(bar_responses(sparse, [2, 20]), np.eye(3)[None], 0.2)
    held = RaoBallardNetwork(replace(p, basis_norm=1.0), net.U, net.Uh)
    with pytest.raises(ValueError, match="basis_norm = 1.0 each basis vector is held"):
        rotated_counts(bar_responses(held, [2, 20]), np.eye(3)[None], 0.2)
    # the rule's fixed point and the level-2 covariance are derived for a Gaussian level 2
    sparse_top = replace(p, prior_top="sparse")
    for call in (lambda: map_fixed_point(np.eye(9), sparse_top),
                 lambda: level2_covariance(net.Uh, sparse_top)):
        with pytest.raises(ValueError, match="derived for a Gaussian level 2"):
            call()
    # bars at each unit's own angle: one angle per unit, and no rotation of such responses
    for angles in (np.zeros(4), np.array([0.0, np.nan, 1.0])):
        with pytest.raises(ValueError, match=r"angles must be one finite angle .* shape \(3,\)"):
            bar_responses(net, [2, 20], angles=angles)
    with pytest.raises(ValueError, match="each unit saw bars at its own orientation"):
        tuning(bar_responses(net, [2, 20], angles=np.zeros(3)), np.eye(3))


def _full_size(seed):
    """A full-size network (the paper's sizes and values) with random, not small, weights, a
    second moment C of its responses with eigenvalues spread over 0.04–9, and the generator
    that made them, for more draws."""
    p = load_parameters()
    rng = np.random.default_rng(seed)
    net = RaoBallardNetwork(p, rng.normal(size=(3, 256, 32)) * 0.3,
                            rng.normal(size=(96, 128)) * 0.3)
    C = np.cov(rng.normal(size=(96, 400)) * np.linspace(0.2, 3, 96)[:, None])
    return p, net, C, rng


def test_end_stopping_index_is_the_issues_definition():
    """The end-stopping index of a unit, from responses written here by hand: ``(peak −
    plateau)/peak``, the plateau the mean response to bars longer than 18 px (the issue's
    definition: 20–26 px here, not 18), read at the shift where the short bar drives the unit
    most in magnitude, with the polarity that makes that drive positive.  Unit 0: driven most,
    negatively, at the second shift; its curve peaks at 1 (8 px), is 0.1 at 18 px and 0.4 on
    average above: index 0.6.  Unit 1: a curve that grows with length to its peak 1 at 26 px,
    0.88 on average above 18 px: index 0.12.
    Unit 2, which no short bar drives (drive 0 at every shift): read at the first shift with
    its own polarity."""
    from pcbio.rao_ballard import BarResponses, tuning
    lengths = np.arange(2, 27, 2.0)
    c0 = np.array([0.2, 0.6, 0.9, 1.0, 0.8, 0.6, 0.4, 0.3, 0.1, 0.4, 0.5, 0.3, 0.4])
    c1 = np.linspace(0.04, 1.0, len(lengths))
    rng = np.random.default_rng(0)
    responses = rng.normal(size=(3, len(lengths), 3))        # the other shifts: not to be read
    responses[1, :, 0], responses[2, :, 1], responses[0, :, 2] = -c0, c1, c0
    drive = np.array([[0.1, 0.2, 0.0], [-0.5, 0.1, 0.0], [0.3, 0.4, 0.0]])
    bars = BarResponses(lengths, 18.0, drive, {"feedback": responses})
    t = tuning(bars)
    np.testing.assert_allclose(t["feedback"]["curves"], [c0, c1, c0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(t["feedback"]["index"], [0.6, 0.12, 0.6], rtol=1e-12)


@pytest.mark.parametrize("front_end", ["dog", "lateral"])
def test_bars_are_filtered_at_three_standard_deviations_of_the_training_pixels(front_end):
    """The stimulus, built here from its definition: a bright horizontal bar, filtered like the
    training images (RB99's DoG, or the lateral front end's whitening kernel applied by
    correlation) and scaled so that the full-length (26 px) bar's filtered peak is 3 standard
    deviations (3 × contrast) of the training images' pixels, windowed and split into the
    modules' patches.  With the Gaussian prior the response without feedback is the level-1
    posterior mean of that input (linear in it, so a wrong scale shows), and it is what
    bar_responses reports for the centre module at shift 0 and every length."""
    from scipy.ndimage import correlate

    from pcbio.rao_ballard import BAR_SHIFTS, bar_responses, dog, lateral_kernel, split_field
    p, net, _, _ = _full_size(8)
    p = replace(p, front_end=front_end)
    net = RaoBallardNetwork(p, net.U, net.Uh)

    def filtered(bar):
        if front_end == "dog":
            return dog(bar, p.dog_center, p.dog_surround)
        return correlate(bar, lateral_kernel(p.images, p.lateral_noise), mode="reflect")
    lengths = np.array([6.0, 26.0])
    center = ((p.patch - 1) / 2, p.offset + (p.patch - 1) / 2)
    scale = 3 * p.contrast / np.abs(filtered(bar_field(p, p.width, 0.0, center))).max()
    I = split_field(np.stack([scale * filtered(bar_field(p, L, 0.0, center))
                              for L in lengths]), p)
    want = net.infer(I, feedback=False)[0][:, 32:64]
    got = bar_responses(net, lengths, conditions=("no_feedback",))
    np.testing.assert_allclose(got.responses["no_feedback"][list(BAR_SHIFTS).index(0)], want,
                               rtol=1e-10, atol=1e-12 * np.abs(want).max())


def test_response_covariance_is_the_mean_outer_product_over_every_chunk():
    """``response_covariance`` is ``E[r rᵀ] = (1/n) Σ_n r_n r_nᵀ`` of the level-1 responses
    inferred with feedback, accumulated over chunks of the inputs: the same, to round-off, with
    chunks of 3 of 7 inputs as with all at once."""
    from pcbio.rao_ballard import response_covariance
    p, net = _small()
    I = training_inputs(7, p, seed=2)
    r, _ = net.infer(I)
    want = r.T @ r / 7
    for chunk in (3, 500):
        np.testing.assert_allclose(response_covariance(net, I, chunk=chunk), want, rtol=1e-12,
                                   atol=1e-14 * np.abs(want).max())


def test_a_rotated_basis_is_the_same_network_and_its_tuning_is_rotated():
    """With the Gaussian prior, turning a module's basis (``U_m → U_m R``, the module's rows of
    ``U_h`` by ``Rᵀ``) leaves the energy unchanged, so the responses and errors turn with it
    (``r_m → Rᵀ r_m``, §14): end_stopping of the explicitly rotated network equals ``tuning`` of
    the original's bar responses with that rotation (to round-off), in all three conditions;
    and the identity rotation is ``end_stopping`` itself."""
    from pcbio.rao_ballard import bar_responses, end_stopping, random_rotations, tuning
    p, net, C, _ = _full_size(3)
    lengths = np.arange(2, 27, 4)
    R = random_rotations(1, 32, seed=5)[0]
    U, Uh = net.U.copy(), net.Uh.copy()
    U[1] = U[1] @ R
    Uh[32:64] = R.T @ Uh[32:64]
    C_rot = C.copy()                              # the responses' second moment turns too
    C_rot[32:64] = R.T @ C_rot[32:64]
    C_rot[:, 32:64] = C_rot[:, 32:64] @ R
    rotated = end_stopping(RaoBallardNetwork(p, U, Uh), lengths, covariance=C_rot)
    bars = bar_responses(net, lengths, covariance=C,
                         conditions=("feedback", "no_feedback", "whitened"))
    turned, plain = tuning(bars, R), tuning(bars)
    direct = end_stopping(net, lengths, covariance=C)
    for key in ("feedback", "no_feedback", "whitened"):
        a, b = np.array(rotated[key]["curves"]), np.array(turned[key]["curves"])
        assert np.abs(a - b).max() < 1e-9 * np.abs(a).max()
        assert np.array(plain[key]["curves"]) == pytest.approx(np.array(direct[key]["curves"]))
        assert not np.allclose(a, np.array(plain[key]["curves"]))     # the rotation did act


def test_bars_at_each_units_own_angle_reduce_to_the_horizontal_protocol():
    """Bars at each unit's own angle (a physiologist's protocol) are the horizontal protocol
    when every angle is 0: each unit's curves are its horizontal ones at the shift where the
    short bar drives it most, so the tuning is the same to 1e-12 in every condition.  A bar at
    angle a + π is the same bar as at a, and its shift s across the bar the shift −s at a;
    the shifts are symmetric about 0, so turning every angle by π changes nothing (to 1e-12) —
    the shift is taken across the bar consistently at every angle.  At other angles the bars,
    and so the curves, differ."""
    from pcbio.rao_ballard import bar_responses, tuning
    _, net, C, rng = _full_size(6)
    lengths = np.arange(2, 27, 4)
    conditions = ("feedback", "no_feedback", "whitened")
    horizontal = tuning(bar_responses(net, lengths, covariance=C, conditions=conditions))
    angles = rng.uniform(0, np.pi, 32)
    own = {a: tuning(bar_responses(net, lengths, covariance=C, conditions=conditions,
                                   angles=angles + a)) for a in (0.0, np.pi)}
    at_zero = tuning(bar_responses(net, lengths, covariance=C, conditions=conditions,
                                   angles=np.zeros(32)))
    for key in conditions:
        h, z = np.array(horizontal[key]["curves"]), np.array(at_zero[key]["curves"])
        assert np.abs(h - z).max() <= 1e-12 * np.abs(h).max()
        a, b = (np.array(own[x][key]["curves"]) for x in (0.0, np.pi))
        assert np.abs(a - b).max() <= 1e-12 * np.abs(a).max()
        assert not np.allclose(a, h)


def test_extreme_basis_is_an_orthonormal_basis_that_counts_as_it_scores():
    """extreme_basis returns an orthonormal basis of the module's units (so, with the Gaussian
    prior, the same network), the same one for the same seed; its first column is the best of
    its samples, so when a fraction f of all directions is end-stopped with feedback and not
    without (measured here on the units of 20 independent random rotations), the first unit is
    such a direction unless all 300 samples missed them, which has probability (1 − f)³⁰⁰; it
    needs both conditions and the Gaussian prior."""
    from pcbio.rao_ballard import bar_responses, extreme_basis, random_rotations, tuning
    p = load_parameters()
    rng = np.random.default_rng(4)
    net = RaoBallardNetwork(p, rng.normal(size=(3, 256, 32)) * 0.3,
                            rng.normal(size=(96, 128)) * 0.3)
    bars = bar_responses(net, np.arange(2, 27, 4))

    def good(t):
        return (np.array(t["feedback"]["index"]) > 0.2) & ~(np.array(t["no_feedback"]["index"])
                                                             > 0.2)

    f = np.mean([good(tuning(bars, R)) for R in random_rotations(20, 32, seed=7)])
    assert (1 - f) ** 300 < 1e-3
    Q = extreme_basis(bars, 0.2, samples=300, seed=1)
    assert np.abs(Q.T @ Q - np.eye(32)).max() < 1e-12
    assert np.array_equal(Q, extreme_basis(bars, 0.2, samples=300, seed=1))
    first = tuning(bars, Q)
    assert first["feedback"]["index"][0] > 0.2 and first["no_feedback"]["index"][0] <= 0.2
    with pytest.raises(ValueError, match="needs the condition 'no_feedback'"):
        extreme_basis(bar_responses(net, [2, 20], conditions=("feedback",)), 0.2)
    _, sparse = _small("sparse")
    with pytest.raises(ValueError, match="sparse prior"):
        extreme_basis(bar_responses(sparse, [2, 20]), 0.2)


def test_random_rotations_are_haar_distributed():
    """random_rotations draws from the Haar measure on the orthogonal group: each matrix is
    orthogonal, an entry has mean 0 and variance 1/n (its square is Beta(1/2, (n−1)/2)), and
    the determinant is +1 or −1 equally often.  (QR of a Gaussian matrix without the sign
    correction fails the mean: its Q₁₁ takes one sign.)"""
    from pcbio.rao_ballard import random_rotations
    n, k = 32, 2000
    Q = random_rotations(k, n, seed=0)
    assert np.abs(Q @ Q.transpose(0, 2, 1) - np.eye(n)).max() < 1e-12
    q11 = Q[:, 0, 0]
    assert abs(q11.mean()) < 5 / np.sqrt(n * k)                    # 5 standard errors
    assert abs((q11 ** 2).mean() - 1 / n) < 5 * np.sqrt(2 / k) / n
    assert abs(np.mean(np.linalg.det(Q) > 0) - 0.5) < 5 * 0.5 / np.sqrt(k)


@pytest.mark.slow
def test_rao_ballard_experiment_writes_what_the_issue_asks(tmp_path):
    """`pcbio run rao_ballard --quick` writes JSON, PDF and PNG with the end-stopped fractions
    with and without feedback, under a fully whitening level 2 and under the rule's fixed point
    (also among the units tuned along the row of modules, and at thresholds 0.1 to 0.5: a higher
    threshold counts no more units), the number of error units, the tuning curves and indices,
    and the same with bars at each unit's preferred orientation (its counts those of its
    indices, fewer among the units tuned along the row); the rate circuit of the trained model steps exactly as gradient inference on the VAE side."""
    from pcbio.experiment import run_experiment
    run_experiment("rao_ballard", tmp_path, quick=True, seed=0)
    res = json.loads((tmp_path / "rao_ballard.json").read_text())["results"]
    for key in ("end_stopped_fraction_feedback", "end_stopped_fraction_no_feedback",
                "end_stopped_fraction_whitened", "end_stopped_fraction_fixed_point"):
        assert 0 <= res[key] <= 1
    assert len(res["gabor_r2"]) == 32 and 0 <= res["gabor_fraction"] <= 1
    along = res["end_stopped_along_modules"]
    assert set(along) == {"feedback", "no_feedback", "whitened", "fixed_point"}
    assert max(along.values()) <= res["n_units_along_modules"] <= 32
    by_threshold = res["end_stopped_by_threshold"]        # a higher threshold counts fewer
    for key in along:
        counts = by_threshold[key]
        assert counts[by_threshold["thresholds"].index(res["threshold"])] == \
            res[f"end_stopped_{key}"]
        assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert np.isfinite(res["level2_covariance_vs_fixed_point"])
    assert res["n_error_units"] == 32
    for key in along:
        curves = np.array(res["tuning_curves"][key])
        assert curves.shape == (32, len(res["tuning_curves"]["lengths_px"]))
    own = res["preferred_orientation"]                  # bars at each unit's orientation
    assert set(own["end_stopped"]) == set(along) == set(own["end_stopped_along_modules"])
    for key in along:
        assert own["end_stopped"][key] == sum(i > res["threshold"]
                                              for i in own["end_stopping_index"][key])
        assert own["end_stopped_along_modules"][key] <= own["end_stopped"][key]
        assert np.array(own["tuning_curves"][key]).shape == (32, len(res["tuning_curves"][
            "lengths_px"]))
    assert max(res["circuit_step_equivalence_max_abs"]) < 1e-10
    assert (tmp_path / "rao_ballard.pdf").exists()
    assert list(res["image_edge_energy_ratio"]) == list(load_parameters().images)
    rotations = res["end_stopped_over_rotations"]      # Gaussian prior: over the basis' rotations
    assert rotations["n_rotations"] == 1000
    for key in along:
        c = rotations[key]
        assert 0 <= c["percentile_5"] <= c["mean"] <= c["percentile_95"] <= 32
    assert rotations["feedback_minus_no_feedback"]["mean"] == pytest.approx(
        rotations["feedback"]["mean"] - rotations["no_feedback"]["mean"])
    assert rotations["feedback_minus_no_feedback"]["max"] <= 32
    assert set(rotations["extreme_basis"]) == set(along)
    assert all(0 <= n <= 32 for n in rotations["extreme_basis"].values())


@pytest.mark.slow
def test_the_sparse_prior_and_a_unit_length_basis_are_options_of_the_experiment(tmp_path):
    """`pcbio run rao_ballard --quick --set prior=sparse --set basis=unit_norm --set
    images=balanced` trains and measures the network with the paper's sparse prior and its basis
    held at unit length, on the balanced images: the results file records the options, the
    network's prior and the values the variant sets (basis_norm 1, contrast 1, k2 from 0.1, the
    images and each one's edge-energy ratio), every learned level-1 basis vector has length 1,
    the analysis is complete, and no counts over rotations are reported (a rotated basis would
    not have unit-length columns: not the same network)."""
    from pcbio.cli import main
    from pcbio.experiment import load_experiment
    assert main(["run", "rao_ballard", "--quick", "--set", "prior=sparse", "--set",
                 "basis=unit_norm", "--set", "images=balanced", "--out", str(tmp_path),
                 "--quiet"]) == 0
    record = json.loads((tmp_path / "rao_ballard.json").read_text())
    assert record["options"] == {"prior": "sparse", "basis": "unit_norm", "images": "balanced"}
    params = record["parameters"]
    assert (params["prior"], params["basis_norm"], params["contrast"], params["k2_initial"]) == (
        "sparse", 1.0, 1.0, 0.1)
    balanced = list(load_experiment("rao_ballard").BALANCED_IMAGES)
    assert params["images"] == list(record["results"]["image_edge_energy_ratio"]) == balanced
    U = np.array(record["results"]["weights"]["U"])
    np.testing.assert_allclose(np.linalg.norm(U, axis=1), 1.0, rtol=1e-12)
    assert record["results"]["end_stopped_over_rotations"] == {}
    assert all(len(record["results"]["end_stopping_index"][key]) == 32
               for key in ("feedback", "no_feedback", "whitened", "fixed_point"))


@pytest.mark.slow
def test_a_sparse_level_2_is_an_option_of_the_experiment(tmp_path):
    """`pcbio run rao_ballard --quick --set prior_top=sparse --set alpha_top=0.02 --set
    front_end=lateral --set image_rotation=90 --set window_sigma=6` trains and measures the
    network with the kurtotic prior on level 2 of weight 0.02, on the photographs turned a
    quarter turn and whitened by the lateral-inhibition front end, through a 6-px window: the
    results file records the options and the network's ``prior_top``, ``alpha_top``,
    ``front_end``, ``image_rotation`` and ``window_sigma``; the rule's fixed
    point, derived for a Gaussian level 2, is not reported, while the other conditions are,
    with bars along the module row and at each unit's preferred orientation; level 1 keeps
    the Gaussian prior, so the counts over rotations of its basis are reported."""
    from pcbio.cli import main
    assert main(["run", "rao_ballard", "--quick", "--set", "prior_top=sparse", "--set",
                 "alpha_top=0.02", "--set", "front_end=lateral", "--set", "image_rotation=90",
                 "--set", "window_sigma=6", "--out", str(tmp_path), "--quiet"]) == 0
    record = json.loads((tmp_path / "rao_ballard.json").read_text())
    assert record["options"] == {"prior_top": "sparse", "alpha_top": "0.02",
                                 "front_end": "lateral", "image_rotation": "90",
                                 "window_sigma": "6"}
    assert (record["parameters"]["alpha_top"], record["parameters"]["window_sigma"]) == (0.02,
                                                                                        6.0)
    assert (record["parameters"]["front_end"], record["parameters"]["image_rotation"]) == (
        "lateral", 90)
    assert (record["parameters"]["prior"], record["parameters"]["prior_top"]) == ("gaussian",
                                                                                 "sparse")
    res = record["results"]
    conditions = {"feedback", "no_feedback", "whitened"}
    assert set(res["end_stopping_index"]) == conditions
    assert set(res["preferred_orientation"]["end_stopped"]) == conditions
    assert "end_stopped_fixed_point" not in res and res["level2_covariance_vs_fixed_point"] is None
    assert res["end_stopped_over_rotations"]["n_rotations"] == 1000

