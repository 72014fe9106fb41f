"""Rao & Ballard (1999)'s hierarchical predictive-coding network of natural images
(``docs/mathematics.md`` §14; parameters in ``models/networks/rao_ballard1999.toml``).

Three level-1 modules (32 units each) explain three Gaussian-windowed 16×16 patches offset by
5 pixels; 128 level-2 units explain the 96 level-1 responses.  With linear f the energy is

    E = |I − U r|²/2σ² + |r − U_h r_h|²/2σ_td² + G(r) + α_h |r_h|²/2,

``U`` block-diagonal (each module its own basis), ``G(r) = α|r|²/2`` (the paper's Gaussian
prior) or ``α Σ log(1 + r²)/2`` (its sparse, kurtotic option).  RB99's inference equation is
gradient descent on E with rate k1, its learning rule gradient descent on E (plus the weight
decay λ) with rate k2.

pcbio runs both through its own code.  The Hebbian updates are
:meth:`GenerativeModel.parameter_gradient` of the hierarchical Gaussian model *without* the
level-1 prior (``original_model``; the prior does not involve the weights), block-masked, plus
weight decay.  For inference the Gaussian level-1 prior is folded into an exactly equivalent
hierarchical Gaussian model (``equivalent_model``, same energy up to a constant): completing the
square in r, ``p(r | r_h) = N(c U_h r_h, S)`` with ``S = (1/σ_td² + α)⁻¹``, ``c = S/σ_td²``, and
the top prior's precision becomes ``α_h I + κ U_hᵀU_h`` with ``κ = α S/σ_td²`` — so the exact
posterior mean, the rate circuit and the mapping layer apply unchanged.  The sparse prior is
not Gaussian: its MAP is found by damped Newton on E, input by input.

Training images and test bars go through one front end (:func:`front_end`): RB99's difference
of Gaussians, or the whitening filter that pcbio's lateral-inhibition circuit learns from the
training images (:func:`lateral_kernel`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import correlate, gaussian_filter

from .checks import one_of, positive_int, positive_number
from .data import SAMPLE_IMAGES, natural_image
from .flows import LinearFlow
from .inference import exact_posterior
from .inference.exact import posterior_precision
from .inference.optimize import OptimisationError
from .learning.rules import LearningRates
from .model import GenerativeModel, Link
from .paths import models_dir


@dataclass(frozen=True)
class RaoBallardParameters:
    """The values of ``models/networks/rao_ballard1999.toml`` (see its comments)."""
    patch: int = 16
    modules: int = 3
    offset: int = 5
    level1_units: int = 32
    level2_units: int = 128
    window_sigma: float = 4.0
    k1: float = 0.5
    sigma2: float = 1.0
    sigma_td2: float = 10.0
    alpha: float = 1.0
    alpha_top: float = 0.05
    prior: str = "gaussian"
    prior_top: str = "gaussian"
    k2_initial: float = 1.0
    k2_divisor: float = 1.015
    k2_every: int = 40
    weight_decay: float = 0.02
    basis_norm: float = 0.0
    basis_norm_top: float = 0.0
    images: tuple = ("camera", "grass", "gravel", "brick", "moon")
    image_rotation: int = 0
    front_end: str = "dog"
    dog_center: float = 1.0
    dog_surround: float = 3.0
    lateral_noise: float = 0.05
    contrast: float = 5.0

    def __post_init__(self):
        """Every value checked before any image is loaded (one-line errors naming the key)."""
        for name in ("patch", "modules", "level1_units", "level2_units", "k2_every"):
            positive_int(getattr(self, name), name)
        positive_int(self.offset, "offset", minimum=0)
        for name in ("window_sigma", "k1", "sigma2", "sigma_td2", "alpha_top", "k2_initial",
                     "k2_divisor", "weight_decay", "dog_center", "dog_surround", "contrast"):
            positive_number(getattr(self, name), name)
        positive_number(self.alpha, "alpha", allow_zero=True)
        positive_number(self.basis_norm, "basis_norm", allow_zero=True)
        positive_number(self.basis_norm_top, "basis_norm_top", allow_zero=True)
        positive_number(self.lateral_noise, "lateral_noise", allow_zero=True)
        if self.k2_divisor < 1:
            raise ValueError(f"k2_divisor must be >= 1 (the learning rate is divided by it), got "
                             f"{self.k2_divisor}")
        if self.dog_surround <= self.dog_center:
            raise ValueError(f"dog_surround ({self.dog_surround}) must exceed dog_center "
                             f"({self.dog_center}) for a centre-surround filter")
        one_of(self.prior, "prior", ("gaussian", "sparse"))
        one_of(self.prior_top, "prior_top", ("gaussian", "sparse"))
        one_of(self.front_end, "front_end", FRONT_ENDS)
        turns = (0, 90, 180, 270)
        if positive_int(self.image_rotation, "image_rotation", minimum=0) not in turns:
            raise ValueError(f"image_rotation must be one of [0, 90, 180, 270] (degrees), got "
                             f"{self.image_rotation!r}")
        if not self.images:
            raise ValueError("images must name at least one sample image")
        for name in self.images:
            one_of(name, "images", SAMPLE_IMAGES)

    @property
    def width(self) -> int:
        """Width of the level-2 field: ``patch + (modules − 1)·offset`` (26)."""
        return self.patch + (self.modules - 1) * self.offset

    def why_not_rotation_invariant(self) -> str | None:
        """None when every rotation ``U_m → U_m R`` of a module's basis is the same network (the
        Gaussian prior, with the basis vectors' length left to the weight decay;
        ``docs/mathematics.md`` §14); otherwise why not, in words."""
        if self.prior != "gaussian":
            return (f"with the {self.prior} prior a rotated basis is another network (only the "
                    "Gaussian prior is rotation invariant)")
        if self.basis_norm:
            return (f"with basis_norm = {self.basis_norm} each basis vector is held at that "
                    "length, which a rotated basis is not (use basis_norm = 0)")
        return None

    def k2(self, inputs_seen: int) -> float:
        """RB99's learning-rate schedule after ``inputs_seen`` training inputs."""
        return self.k2_initial / self.k2_divisor ** (inputs_seen // self.k2_every)


def load_parameters(path: str | Path | None = None, **overrides) -> RaoBallardParameters:
    """The network's parameters from its TOML file (default the one in ``models/networks/``),
    with ``overrides`` (e.g. ``prior="sparse"``)."""
    path = path or models_dir() / "networks" / "rao_ballard1999.toml"
    with open(path, "rb") as fh:
        spec = tomllib.load(fh)
    missing = [t for t in ("architecture", "inference", "learning", "images") if t not in spec]
    if missing:
        raise ValueError(f"{path}: missing table(s) {missing}; see models/networks/"
                         "rao_ballard1999.toml")
    images = dict(spec["images"])
    names = images.pop("names", RaoBallardParameters.images)
    if not isinstance(names, (list, tuple)):
        raise ValueError(f"{path}: [images] names must be a list of sample image names, got "
                         f"{names!r}")
    values = {**spec["architecture"], **spec["inference"], **spec["learning"], **images,
              "images": tuple(names), **overrides}
    known = [f.name for f in fields(RaoBallardParameters)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{path}: unknown parameter(s) {unknown}; known: {', '.join(known)}")
    return RaoBallardParameters(**values)


# -- inputs ----------------------------------------------------------------------------------------
#: the front ends that prepare images and bars: RB99's difference of Gaussians, or the whitening
#: filter pcbio's lateral-inhibition circuit learns from the training images
FRONT_ENDS = ("dog", "lateral")
#: side (px) of the patches whose whitening gives the lateral front end's kernel
LATERAL_SIZE = 9


def dog(image: np.ndarray, center: float, surround: float) -> np.ndarray:
    """Difference-of-Gaussians filter (widths in pixels): an LGN-like centre–surround image."""
    return gaussian_filter(image, center) - gaussian_filter(image, surround)


def whitening_kernel(images: Sequence[np.ndarray], noise: float,
                     size: int = LATERAL_SIZE) -> np.ndarray:
    """The centre pixel's whitening filter, (size, size): the centre row of the ZCA matrix
    ``(C + noise·I)^{-1/2}`` (:meth:`LinearFlow.fit`), C the covariance of every
    ``size`` × ``size`` patch of ``images`` (2-D arrays) at a stride of 2 px — the steady state
    ``(I + M)⁻¹`` to which the lateral-inhibition circuit's anti-Hebbian rule drives its
    lateral weights (``docs/mathematics.md`` §11).  Applied by :func:`scipy.ndimage.correlate`
    it whitens an image whose statistics do not depend on position."""
    size = positive_int(size, "size")
    if size % 2 == 0:
        raise ValueError(f"size must be odd (the kernel is centred on a pixel), got {size}")
    patches = np.concatenate([sliding_window_view(np.asarray(image, dtype=float),
                                                  (size, size))[::2, ::2].reshape(-1, size * size)
                              for image in images])
    flow = LinearFlow.fit(patches, "zca", noise=noise)
    return flow.matrix[size * size // 2].reshape(size, size)


def raw_images(names: Sequence[str], rotation: int = 0) -> list[np.ndarray]:
    """The photographs ``names`` (:func:`natural_image`: zero mean, unit variance), each turned
    anticlockwise by ``rotation`` degrees (a multiple of 90)."""
    return [np.rot90(natural_image(name), rotation // 90) for name in names]


@lru_cache(maxsize=8)
def lateral_kernel(images: tuple, noise: float, rotation: int = 0) -> np.ndarray:
    """:func:`whitening_kernel` of the sample images named in ``images`` turned by ``rotation``
    degrees (:func:`raw_images`), computed once per set."""
    kernel = whitening_kernel(raw_images(images, rotation), noise)
    kernel.flags.writeable = False
    return kernel


def front_end(image: np.ndarray, params: RaoBallardParameters) -> np.ndarray:
    """``image`` through the network's front end (``params.front_end``): RB99's difference of
    Gaussians (:func:`dog`) or the lateral-inhibition whitening filter learned from the
    training images (:func:`lateral_kernel`, input noise variance ``params.lateral_noise``)."""
    if params.front_end == "dog":
        return dog(image, params.dog_center, params.dog_surround)
    kernel = lateral_kernel(params.images, params.lateral_noise, params.image_rotation)
    return correlate(image, kernel, mode="reflect")


def filtered_images(params: RaoBallardParameters) -> list[np.ndarray]:
    """The training images: each of ``params.images``, turned by ``params.image_rotation``
    degrees (:func:`raw_images`), through the front end (:func:`front_end`) and scaled to
    standard deviation ``params.contrast``."""
    images = [front_end(image, params)
              for image in raw_images(params.images, params.image_rotation)]
    return [params.contrast * (image / image.std()) for image in images]


def edge_energy_ratio(image: np.ndarray) -> float:
    """``mean((∂I/∂y)²) / mean((∂I/∂x)²)`` of an image (rows = y), with forward differences:
    above 1 the image has more horizontal structure (edges and bars running along its rows, the
    row of the network's modules), below 1 more vertical.  Transposing the image inverts it."""
    image = np.asarray(image, dtype=float)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"image must be a 2-D array at least 2 × 2, got shape {image.shape}")
    across = np.mean(np.diff(image, axis=1) ** 2)
    if across == 0:
        raise ValueError("image must vary along its rows (mean((∂I/∂x)²) is 0)")
    return float(np.mean(np.diff(image, axis=0) ** 2) / across)


def window(params: RaoBallardParameters) -> np.ndarray:
    """The Gaussian window over one patch, (patch²,), peak 1."""
    c = (params.patch - 1) / 2
    y, x = np.mgrid[:params.patch, :params.patch]
    return np.exp(-((y - c) ** 2 + (x - c) ** 2) / (2 * params.window_sigma ** 2)).ravel()


def split_field(fields: np.ndarray, params: RaoBallardParameters) -> np.ndarray:
    """Level-2 fields (n, patch, width) → the windowed module patches, concatenated:
    (n, modules·patch²)."""
    w = window(params)
    parts = [fields[:, :, m * params.offset:m * params.offset + params.patch]
             .reshape(len(fields), -1) * w for m in range(params.modules)]
    return np.concatenate(parts, axis=1)


def training_inputs(n: int, params: RaoBallardParameters, seed: int) -> np.ndarray:
    """``n`` training inputs (n, modules·patch²): 16×26 fields at seeded random positions of the
    filtered images (:func:`filtered_images`), split into the modules' windowed patches."""
    n = positive_int(n, "n")
    rng = np.random.default_rng(seed)
    images = filtered_images(params)
    which = rng.integers(0, len(images), n)
    fields = np.empty((n, params.patch, params.width))
    for k, i in enumerate(which):
        img = images[i]
        r = rng.integers(0, img.shape[0] - params.patch + 1)
        c = rng.integers(0, img.shape[1] - params.width + 1)
        fields[k] = img[r:r + params.patch, c:c + params.width]
    return split_field(fields, params)


# -- the network -----------------------------------------------------------------------------------
class RaoBallardNetwork:
    """Weights ``U`` (modules, patch², level1_units) and ``Uh`` (modules·level1_units,
    level2_units), and the two pcbio models they define (see the module docstring)."""

    def __init__(self, params: RaoBallardParameters, U: np.ndarray, Uh: np.ndarray):
        self.params, self.U, self.Uh = params, np.asarray(U, float), np.asarray(Uh, float)

    @classmethod
    def initial(cls, params: RaoBallardParameters, seed: int) -> "RaoBallardNetwork":
        """Small random weights (normal, scaled by 1/√(fan-in)·0.1)."""
        rng = np.random.default_rng(seed)
        n_in, n1 = params.patch ** 2, params.level1_units
        U = rng.normal(size=(params.modules, n_in, n1)) * 0.1 / np.sqrt(n1)
        Uh = rng.normal(size=(params.modules * n1, params.level2_units)) * 0.1 / np.sqrt(
            params.level2_units)
        return cls(params, U, Uh)

    def block_weights(self) -> np.ndarray:
        """``U`` as one block-diagonal matrix (modules·patch², modules·level1_units)."""
        p = self.params
        W = np.zeros((p.modules * p.patch ** 2, p.modules * p.level1_units))
        for m in range(p.modules):
            W[m * p.patch ** 2:(m + 1) * p.patch ** 2, m * p.level1_units:(m + 1) * p.level1_units] = self.U[m]
        return W

    def original_model(self) -> GenerativeModel:
        """The hierarchical Gaussian model without the level-1 prior: what the Hebbian
        updates are the gradient of (the prior does not involve the weights)."""
        p = self.params
        return GenerativeModel(np.zeros(p.level2_units), 1.0 / p.alpha_top,
                               [Link(self.block_weights(), cov=p.sigma2, name="U"),
                                Link(self.Uh, cov=p.sigma_td2, name="Uh")], name="rao_ballard1999")

    def equivalent_model(self, feedback: bool = True) -> GenerativeModel:
        """The hierarchical Gaussian model with the same energy as RB99's (Gaussian prior);
        ``feedback=False``: level 1 alone with its prior N(0, 1/α) (no top-down prediction)."""
        p = self.params
        bottom = Link(self.block_weights(), cov=p.sigma2, name="U")
        if not feedback:
            return GenerativeModel(np.zeros(self.Uh.shape[0]), 1.0 / p.alpha, [bottom],
                                   name="rao_ballard1999_no_feedback")
        S = 1.0 / (1.0 / p.sigma_td2 + p.alpha)
        c, kappa = S / p.sigma_td2, p.alpha * S / p.sigma_td2
        top_precision = p.alpha_top * np.eye(p.level2_units) + kappa * self.Uh.T @ self.Uh
        top_cov = np.linalg.inv(top_precision)
        return GenerativeModel(np.zeros(p.level2_units), 0.5 * (top_cov + top_cov.T),
                               [bottom, Link(c * self.Uh, cov=S, name="Uh")],
                               name="rao_ballard1999")

    def infer(self, I: np.ndarray, feedback: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Steady-state responses ``(r, r_h)`` to inputs ``I`` (n, modules·patch²): the minimum
        of E (RB99's inference equation at equilibrium).  Gaussian prior: the exact posterior
        mean of :meth:`equivalent_model`; a sparse prior at either level: damped Newton on E from
        it.  Without feedback ``r_h`` is None and ``r`` ignores the level above."""
        q = exact_posterior(self.equivalent_model(feedback), I)
        r, rh = q.means[0], (q.means[1] if feedback else None)
        if self.params.prior == "sparse" or (feedback and self.params.prior_top == "sparse"):
            r, rh = self._sparse_map(I, r, rh)
        return r, rh

    def _sparse_map(self, I, r, rh, gtol: float = 1e-9, max_iter: int = 10000):
        """The MAP with a sparse prior at either level: E of the Gaussian hierarchy without its
        priors (:meth:`original_model` less its Gaussian top prior; without feedback, level 1
        alone, :meth:`equivalent_model` less its Gaussian prior) plus each level's prior —
        ``α Σ r²/2`` or ``α Σ log(1 + r²)/2`` on r, ``α_h`` likewise on r_h
        (:func:`_prior_terms`) — minimised for each input by damped Newton from the Gaussian
        priors' responses ``(r, rh)``.

        The inputs' energies are separate, so every input takes its own step.  The Hessian is
        the likelihood's (constant: linear links) plus each prior's curvature on its diagonal,
        ``α (1 − r²)/(1 + r²)²`` for a sparse one.  Where it is positive definite (near a
        minimum) the step is Newton's, which
        converges quadratically; for an input where it is not (responses in the prior's concave
        tails, |r| > 1), it is shifted by ``(10⁻³ − 1.1 λ_min) I``, λ_min its lowest eigenvalue,
        which makes it positive definite and the step a descent direction that still follows the
        negative curvature out of the concave region (a modified Newton step; leaving the
        negative curvature out instead took hundreds of steps there).  A backtracking (Armijo)
        line search makes every step lower the energy.  Converged when
        every gradient entry is below ``gtol·max(1, |E_n|)``; otherwise, after ``max_iter``
        steps, OptimisationError.  Most inputs converge within ten steps; a strong input whose
        MAP lies far in a sparse prior's flat tail (responses in the tens on level 1, hundreds
        on level 2) walks there through the concave region, where the shift bounds each step,
        and took 200–1000 steps in training with both levels sparse, and about 2500 for one
        input (level-2 responses near 4000) of a run on the balanced images with α_h = 0.02;
        hence the large limit, which costs only the inputs still walking.
        (L-BFGS stalled here on trained weights: their large singular values against α_h's
        weak curvature make the energy badly conditioned.)"""
        p, feedback = self.params, rh is not None
        model = self.original_model() if feedback else self.equivalent_model(False)
        n1 = r.shape[1]
        # the model's own Gaussian prior, on its top level (r_h; without feedback r), is taken
        # out of its energy, and each level's prior put in: (kind, weight) for r, r_h
        own = p.alpha_top if feedback else p.alpha
        top = slice(n1 if feedback else 0, None)             # that level's entries of z
        priors = [(p.prior, p.alpha)] + ([(p.prior_top, p.alpha_top)] if feedback else [])

        def energy(I, z):
            """Per-input energies (n,) and gradients (n, D) at responses z to inputs I."""
            levels = [z[:, :n1], z[:, n1:]] if feedback else [z]
            value = -model.log_joint(I, levels) - 0.5 * own * np.sum(z[:, top] ** 2, axis=-1)
            grad = -np.concatenate(model.grad_log_joint(I, levels), axis=-1)
            grad[:, top] -= own * z[:, top]
            for x, at, (kind, weight) in zip(levels, (0, n1), priors):
                v, g, _ = _prior_terms(x, kind, weight)
                value += v
                grad[:, at:at + x.shape[1]] += g
            return value, grad

        z = np.concatenate([r, rh], axis=1) if feedback else r.copy()
        # the likelihood's Hessian (constant: linear links)
        H0 = posterior_precision(model, I[:1])[0]
        diagonal = np.arange(z.shape[1])
        H0[diagonal[top], diagonal[top]] -= own
        value, grad = energy(I, z)
        for _ in range(max_iter):
            # only the inputs not yet converged take a step
            a = np.flatnonzero(np.abs(grad).max(axis=1) > gtol * np.maximum(1.0, np.abs(value)))
            if not len(a):
                return z[:, :n1], (z[:, n1:] if feedback else None)
            H = np.repeat(H0[None], len(a), axis=0)
            levels = [z[a, :n1], z[a, n1:]] if feedback else [z[a]]
            H[:, diagonal, diagonal] += np.concatenate(      # the priors' curvatures
                [_prior_terms(x, kind, weight)[2] for x, (kind, weight) in zip(levels, priors)],
                axis=1)
            indefinite = np.flatnonzero(~_positive_definite(H))
            if len(indefinite):
                lowest = np.linalg.eigvalsh(H[indefinite])[:, 0]
                H[indefinite] += (1e-3 - 1.1 * lowest)[:, None, None] * np.eye(H.shape[1])
            step = np.linalg.solve(H, grad[a, :, None])[..., 0]
            slope = np.sum(grad[a] * step, axis=1)                  # > 0: H is positive definite
            t = np.ones(len(a))
            for _ in range(60):
                new_z = z[a] - t[:, None] * step
                new_value, new_grad = energy(I[a], new_z)
                worse = new_value > value[a] - 1e-4 * t * slope
                # round-off: a step that cannot lower E measurably is accepted as it is
                worse &= np.abs(new_value - value[a]) > 1e-15 * np.abs(value[a])
                if not worse.any():
                    break
                t = np.where(worse, 0.5 * t, t)
            z[a], value[a], grad[a] = new_z, new_value, new_grad
        raise OptimisationError(f"Rao-Ballard sparse MAP: damped Newton did not converge in "
                                f"{max_iter} steps (largest gradient entry "
                                f"{np.abs(grad).max():.3g})")

    def learning_step(self, I: np.ndarray, r: np.ndarray, rh: np.ndarray, k2: float) -> None:
        """RB99's weight update for inputs ``I`` (n, …) at their responses, summed over the n
        inputs: ``ΔU = k2 ((1/σ²)(I − U r) rᵀ − λ U)`` (each module's block) and
        ``ΔU_h = k2 ((1/σ_td²)(r − U_h r_h) r_hᵀ − λ U_h)`` — the Hebbian gradient of
        :meth:`original_model` (``parameter_gradient``) plus weight decay.  With ``basis_norm``
        > 0 each level-1 basis vector (column of a module's U) is then rescaled to that length,
        as Olshausen & Field (1996) hold theirs, in place of the size the decay would set; with
        ``basis_norm_top`` > 0 each level-2 one (column of U_h) likewise."""
        p, n1, n_in = self.params, self.params.level1_units, self.params.patch ** 2
        grad = self.original_model().parameter_gradient(I, [r, rh])
        G = grad.links[0].weights
        blocks = np.stack([G[m * n_in:(m + 1) * n_in, m * n1:(m + 1) * n1]
                           for m in range(p.modules)])
        n = len(I)
        self.U = self.U + k2 * (blocks - n * p.weight_decay * self.U)
        if p.basis_norm:
            self.U *= p.basis_norm / np.linalg.norm(self.U, axis=1, keepdims=True)
        self.Uh = self.Uh + k2 * (grad.links[1].weights - n * p.weight_decay * self.Uh)
        if p.basis_norm_top:
            self.Uh *= p.basis_norm_top / np.linalg.norm(self.Uh, axis=0, keepdims=True)


def _prior_terms(x: np.ndarray, kind: str, weight: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A level's prior energy on responses ``x`` (n, units): per input its value (n,), and its
    gradient and Hessian's diagonal (n, units) — ``"gaussian"``: ``w Σ x²/2``, ``w x``, ``w``;
    ``"sparse"`` (RB99's kurtotic prior): ``w Σ log(1 + x²)/2``, ``w x/(1 + x²)``,
    ``w (1 − x²)/(1 + x²)²``, concave where |x| > 1."""
    if kind == "gaussian":
        return 0.5 * weight * np.sum(x ** 2, axis=-1), weight * x, np.full_like(x, weight)
    return (0.5 * weight * np.sum(np.log1p(x ** 2), axis=-1), weight * x / (1 + x ** 2),
            weight * (1 - x ** 2) / (1 + x ** 2) ** 2)


def _positive_definite(H: np.ndarray) -> np.ndarray:
    """Whether each symmetric matrix of the stack ``H`` (n, d, d) is positive definite, (n,)
    bool: one Cholesky factorisation of the stack, and one per matrix only if that fails."""
    def one(h):
        try:
            np.linalg.cholesky(h)
            return True
        except np.linalg.LinAlgError:
            return False
    if one(H):
        return np.ones(len(H), bool)
    return np.array([one(h) for h in H])


class RaoBallardLearner:
    """The network as a learner of :func:`pcbio.learning.train.train`: each minibatch is
    inferred and then updates the weights with the k2 of RB99's schedule (``inputs_seen``
    counts the training inputs); ``model`` is the equivalent Gaussian model, so held-out scores
    are its exact log-likelihood."""

    def __init__(self, network: RaoBallardNetwork):
        self.network, self.inputs_seen = network, 0
        self.rates = LearningRates(weights=1.0)
        self.model = network.equivalent_model()

    def set_model(self, model: GenerativeModel) -> None:
        self.model = model

    def describe(self) -> dict:
        from dataclasses import asdict
        return {"learner": "rao_ballard1999", **asdict(self.network.params)}

    def epoch(self, batches: np.ndarray, seed: tuple[int, int] = (0, 0),
              tops: np.ndarray | None = None) -> list[dict]:
        records = []                # no noise of its own: train() orders the inputs by epoch
        for k, I in enumerate(batches):
            r, rh = self.network.infer(I)
            k2 = self.network.params.k2(self.inputs_seen)
            resid = I - r @ self.network.block_weights().T
            self.network.learning_step(I, r, rh, k2)
            self.inputs_seen += len(I)
            records.append({"update": k, "k2": k2,
                            "reconstruction_error": float(np.mean(np.sum(resid ** 2, axis=1)))})
        self.model = self.network.equivalent_model()
        return records

    def state(self) -> dict:
        return {"U": self.network.U, "Uh": self.network.Uh, "inputs_seen": self.inputs_seen}

    def set_state(self, state: dict) -> None:
        self.network.U, self.network.Uh = np.asarray(state["U"]), np.asarray(state["Uh"])
        self.inputs_seen = int(state["inputs_seen"])
        self.model = self.network.equivalent_model()


# -- analysis --------------------------------------------------------------------------------------
def _fourier_power(basis: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Fourier power of each basis vector (columns of ``basis``) as a size × size image,
    (k, size, size), and the frequencies (cycles/px) of its rows and columns, fy and fx
    (size, size)."""
    power = np.abs(np.fft.fft2(basis.T.reshape(-1, size, size))) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    return power, fy, fx


def orientation_index(basis: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per basis vector (columns of ``basis``, (size², k)): the orientation selectivity of its
    Fourier power, ``|Σ P(f) e^{2iθ(f)}| / Σ P(f)`` over non-zero frequencies (0: no preferred
    orientation, 1: all power along one orientation), and the preferred orientation of its
    stripes (radians, 0 = horizontal stripes)."""
    power, fy, fx = _fourier_power(basis, size)
    theta = np.arctan2(fy, fx)
    keep = (fx != 0) | (fy != 0)
    vec = np.sum((power * np.exp(2j * theta))[:, keep], axis=1)
    osi = np.abs(vec) / np.sum(power[:, keep], axis=1)
    freq_angle = 0.5 * np.angle(vec)                 # orientation of the frequency vector
    return osi, np.mod(freq_angle + np.pi / 2, np.pi)  # stripes run perpendicular to it


GABOR_PARAMETERS = ("amplitude", "row", "col", "theta", "sigma_along", "sigma_across",
                    "frequency", "phase")


def gabor(params: np.ndarray, size: int) -> np.ndarray:
    """A Gabor function on a ``size`` × ``size`` pixel grid, (size²,) row-major.  ``params``
    (:data:`GABOR_PARAMETERS`): amplitude; centre (row, col) in pixels; θ, the direction (radians,
    0 = along the columns) in which the carrier varies; the Gaussian envelope's widths along
    and across that direction (pixels); the carrier's frequency (cycles per pixel) and phase:
    ``A exp(−u²/2σ_u² − v²/2σ_v²) cos(2π f u + φ)`` with ``u, v`` the pixel offsets from the
    centre turned by θ."""
    amp, row, col, theta, s_u, s_v, freq, phase = params
    y, x = np.mgrid[:size, :size].astype(float)
    u = (x - col) * np.cos(theta) + (y - row) * np.sin(theta)
    v = -(x - col) * np.sin(theta) + (y - row) * np.cos(theta)
    return (amp * np.exp(-u ** 2 / (2 * s_u ** 2) - v ** 2 / (2 * s_v ** 2))
            * np.cos(2 * np.pi * freq * u + phase)).ravel()


def gabor_fit(basis: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares Gabor fit of each basis vector (columns of ``basis``, (size², k)): the
    fraction of its variance the fit explains, R² (k,), and the fitted parameters (k, 8) in the
    order of :data:`GABOR_PARAMETERS`.  The usual measure of how localised and oriented a
    receptive field is (R² near 1: a Gabor; a spatially spread or unoriented pattern fits
    poorly).  Starts: the centre of the vector's energy, the frequency and direction of its
    Fourier peak, envelope widths of a quarter of the patch, and four carrier phases; the best
    of the four fits is kept.  Bounds: the centre within a pixel of the patch, widths 0.5 px to
    the patch size, frequencies up to the Nyquist 0.5 cycles/px.  A zero vector gets R² = 0."""
    from scipy.optimize import least_squares
    basis = np.asarray(basis, dtype=float)
    if basis.ndim != 2 or basis.shape[0] != positive_int(size, "size") ** 2:
        raise ValueError(f"basis must have size² = {size ** 2} rows (one basis vector per "
                         f"column), got shape {basis.shape}")
    y, x = np.mgrid[:size, :size].astype(float)
    powers, fy, fx = _fourier_power(basis, size)
    lower = [-np.inf, -1, -1, -np.inf, 0.5, 0.5, 0.0, -np.inf]
    upper = [np.inf, size, size, np.inf, size, size, 0.5, np.inf]
    r2, fitted = np.zeros(basis.shape[1]), np.zeros((basis.shape[1], len(GABOR_PARAMETERS)))
    for k, vector in enumerate(basis.T):
        if not np.any(vector):
            continue
        energy = vector.reshape(size, size) ** 2 / np.sum(vector ** 2)
        power = powers[k].copy()
        power[0, 0] = 0.0
        peak = np.unravel_index(np.argmax(power), power.shape)
        freq = float(np.hypot(fy[peak], fx[peak]))
        theta = float(np.arctan2(fy[peak], fx[peak]))
        best = None
        for phase in (0.0, np.pi / 2, np.pi, 3 * np.pi / 2):
            start = [np.abs(vector).max(), np.sum(energy * y), np.sum(energy * x), theta,
                     size / 4, size / 4, min(freq, 0.49), phase]
            fit = least_squares(lambda q: gabor(q, size) - vector, start, bounds=(lower, upper))
            if best is None or fit.cost < best.cost:
                best = fit
        r2[k] = 1.0 - 2 * best.cost / np.sum((vector - vector.mean()) ** 2)
        fitted[k] = best.x
    return r2, fitted


def bar_field(params: RaoBallardParameters, length: float, angle: float,
              center: tuple[float, float], thickness: float = 2.0,
              shift: float = 0.0) -> np.ndarray:
    """A bright bar on a zero background over the level-2 field (patch, width): ``length``
    pixels long at ``angle`` (radians, 0 = horizontal, rows growing downwards) through
    ``center`` (row, col) moved ``shift`` pixels across the bar."""
    y, x = np.mgrid[:params.patch, :params.width].astype(float)
    dy, dx = y - center[0], x - center[1]
    along = dx * np.cos(angle) + dy * np.sin(angle)
    across = -dx * np.sin(angle) + dy * np.cos(angle) - shift
    return ((np.abs(along) <= length / 2) & (np.abs(across) <= thickness / 2)).astype(float)


#: px by which a bar may be moved across its length from the module's centre to drive a unit most
BAR_SHIFTS = np.arange(-3, 4)


@dataclass(frozen=True)
class BarResponses:
    """One module's error units under bars of each length: ``responses[condition]`` (shifts,
    lengths, level1_units) and ``drive`` (shifts, level1_units), the responses without feedback
    to a short (6 px) bar, by which each unit's shift and polarity are chosen (see
    :func:`end_stopping`).  For horizontal bars every unit has a row per shift of
    :data:`BAR_SHIFTS`; for bars at each unit's own orientation one, the shift already chosen.
    ``not_rotation_invariant``: why a rotation of the module's basis may not be applied to
    these responses (the network's :meth:`~RaoBallardParameters.why_not_rotation_invariant`,
    or that each unit saw other bars), or None."""
    lengths: np.ndarray
    plateau_from: float
    drive: np.ndarray
    responses: dict
    not_rotation_invariant: str | None = None


def bar_responses(network: RaoBallardNetwork, lengths: Sequence[float], module: int = 1,
                  plateau_from: float = 18.0, covariance: np.ndarray | None = None,
                  conditions: Sequence[str] = ("feedback", "no_feedback"),
                  angles: np.ndarray | None = None) -> BarResponses:
    """The error units' responses (:class:`BarResponses`) of one level-1 module (the centre one
    by default) to bright bars of each of ``lengths`` (px), in ``conditions``: ``"feedback"``
    (the error ``r − U_h r_h``), ``"no_feedback"`` (the level above removed: the error is the
    response itself) and, given ``covariance`` (the second moment C of the level-1 responses,
    :func:`response_covariance`), ``"whitened"``: the error ``σ_td² Σ_w⁻¹ r`` of a level 2
    that whitens the responses fully (:func:`whitening_covariance`; ``r`` without feedback).
    Bars go through the front end like the training images (:func:`front_end`) and are centred
    on the module's patch, shifted across their length by each of :data:`BAR_SHIFTS`.
    ``angles`` None: horizontal bars, along the row of modules, for every unit (the level-2
    field is 16 px high: only along that axis does a bar longer than a module's patch reach
    into its neighbours').  ``angles``
    (level1_units,) in radians: each unit sees bars at its own angle — its preferred
    orientation (:func:`orientation_index`), as a physiologist measures end-stopping — at the
    shift where the short bar drives it most."""
    p = network.params
    positive_int(module, "module", minimum=0)
    if module >= p.modules:
        raise ValueError(f"module must be below the number of modules ({p.modules}), got {module}")
    lengths = np.asarray(lengths, dtype=float)
    if lengths.ndim != 1 or not lengths.size or not np.all(np.isfinite(lengths) & (lengths > 0)):
        raise ValueError(f"lengths must be bar lengths in pixels, all > 0, got {lengths.tolist()}")
    if not np.any(lengths > plateau_from):
        raise ValueError(f"lengths must include one above plateau_from = {plateau_from} px (the "
                         f"plateau is their mean response), got at most {lengths.max():g}")
    for key in conditions:
        one_of(key, "conditions", ("feedback", "no_feedback", "whitened"))
    if "whitened" in conditions and covariance is None:
        raise ValueError("the condition 'whitened' needs covariance (the responses' second "
                         "moment, response_covariance)")
    n1 = p.level1_units
    if angles is not None:
        angles = np.asarray(angles, dtype=float)
        if angles.shape != (n1,) or not np.all(np.isfinite(angles)):
            raise ValueError(f"angles must be one finite angle (radians) per unit of the module, "
                             f"shape ({n1},), got shape {angles.shape}")
    center = ((p.patch - 1) / 2, module * p.offset + (p.patch - 1) / 2)
    units = slice(module * n1, (module + 1) * n1)

    # bars of one contrast: a full-length bar's filtered peak is 3 standard deviations of the
    # training images' pixels (with the Gaussian prior the indices do not depend on it: the
    # responses are linear in the image)
    contrast = 3.0 * p.contrast / np.abs(front_end(bar_field(p, p.width, 0.0, center), p)).max()

    def inputs(bars):
        """The level-1 inputs of bars given as (length, angle, shift) triples."""
        return split_field(np.stack([
            contrast * front_end(bar_field(p, L, a, center, shift=s), p)
            for L, a, s in bars]), p)

    def errors(I):
        """Per condition, the module's error units (len(I), level1_units)."""
        out = {}
        if "feedback" in conditions:
            r_fb, rh = network.infer(I)
            out["feedback"] = (r_fb - rh @ network.Uh.T)[:, units]
        if {"no_feedback", "whitened"} & set(conditions):
            r = network.infer(I, feedback=False)[0]
        if "no_feedback" in conditions:
            out["no_feedback"] = r[:, units]
        if "whitened" in conditions:
            whiten = p.sigma_td2 * np.linalg.inv(whitening_covariance(covariance, p))
            out["whitened"] = (r @ whiten.T)[:, units]
        return out

    if angles is None:
        drive = network.infer(inputs([(6, 0.0, s) for s in BAR_SHIFTS]), feedback=False)[0]
        shape = (len(BAR_SHIFTS), len(lengths), n1)
        out = errors(inputs([(L, 0.0, s) for s in BAR_SHIFTS for L in lengths]))
        return BarResponses(lengths, plateau_from, drive[:, units],
                            {key: e.reshape(shape) for key, e in out.items()},
                            p.why_not_rotation_invariant())
    # each unit its own bars: the short bar at every shift, then all lengths at the best shift
    own = np.arange(n1)
    short = network.infer(inputs([(6, a, s) for a in angles for s in BAR_SHIFTS]),
                          feedback=False)[0][:, units].reshape(n1, len(BAR_SHIFTS), n1)
    short = short[own, :, own]                                           # (units, shifts)
    best = np.argmax(np.abs(short), axis=1)
    out = errors(inputs([(L, a, BAR_SHIFTS[b]) for a, b in zip(angles, best) for L in lengths]))
    return BarResponses(lengths, plateau_from, short[own, best][None],
                        {key: e.reshape(n1, len(lengths), n1)[own, :, own].T[None]
                         for key, e in out.items()},
                        "each unit saw bars at its own orientation, so a rotation would mix "
                        "units that saw different bars")


def tuning(bars: BarResponses, rotation: np.ndarray | None = None) -> dict:
    """Each unit's length tuning and end-stopping index from :func:`bar_responses`.  A unit
    sees the bar at the shift where the short bar drives it most, with the polarity that
    makes that response positive (responses are odd in the image, for either prior); the index
    is ``(peak − plateau)/peak``, the plateau the mean response for lengths above
    ``plateau_from``.  ``rotation`` (an orthogonal level1_units × level1_units matrix R): the
    units of the module's rotated basis ``U_m R`` instead, whose responses and errors are
    ``Rᵀ`` times these — with the Gaussian prior the rotated network has the same energy, so
    this is exact (``docs/mathematics.md`` §14).  Returns the lengths and, per condition, the
    curves (units, lengths) and indices (units,)."""
    n1 = bars.drive.shape[1]
    R = np.eye(n1) if rotation is None else _check_rotations(bars, np.asarray(rotation)[None])[0]
    out = {"lengths": bars.lengths.tolist()}
    for key, (curves, index) in _tuning(bars, R).items():
        out[key] = {"curves": curves.tolist(), "index": index.tolist()}
    return out


def _tuning(bars: BarResponses, R: np.ndarray) -> dict:
    """:func:`tuning` as arrays, for units along the columns of R (level1_units, m), any unit
    vectors: per condition, (curves (m, lengths), index (m,))."""
    drive = bars.drive @ R
    best = np.argmax(np.abs(drive), axis=0)
    units = np.arange(drive.shape[1])
    sign = np.sign(drive[best, units])
    sign[sign == 0] = 1.0
    plateau = bars.lengths > bars.plateau_from
    out = {}
    for key, resp in bars.responses.items():
        curves = sign[:, None] * (resp @ R)[best, :, units]           # (units, lengths)
        peak = curves.max(axis=1)
        out[key] = curves, (peak - curves[:, plateau].mean(axis=1)) / np.where(peak > 0, peak,
                                                                                np.nan)
    return out


def end_stopping(network: RaoBallardNetwork, lengths: Sequence[float], module: int = 1,
                 plateau_from: float = 18.0, covariance: np.ndarray | None = None,
                 angles: np.ndarray | None = None) -> dict:
    """Tuning of the error units ``r − U_h r_h`` of one level-1 module (the centre one by
    default) to bars of increasing length — horizontal, or given ``angles`` each unit's at its
    own — with and without feedback (and, given ``covariance``, under a level 2 that whitens
    fully): :func:`tuning` of :func:`bar_responses`.  Returns the lengths and, per condition,
    the curves (units, lengths) and indices (units,)."""
    conditions = ("feedback", "no_feedback") + (() if covariance is None else ("whitened",))
    return tuning(bar_responses(network, lengths, module, plateau_from, covariance, conditions,
                                angles))


def _require_rotation_invariance(bars: BarResponses) -> None:
    """Refuse in one line a rotation where it does not apply: a network of which a rotated
    basis is another network, or bars that differed between units."""
    if bars.not_rotation_invariant:
        raise ValueError(f"rotation: {bars.not_rotation_invariant}")


def _check_rotations(bars: BarResponses, rotations) -> np.ndarray:
    """``rotations`` (n, units, units) as an array, refused in one line unless they are
    orthogonal matrices of the module's size and the network is rotation invariant."""
    _require_rotation_invariance(bars)
    n1 = bars.drive.shape[1]
    rotations = np.asarray(rotations, dtype=float)
    if rotations.ndim != 3 or rotations.shape[1:] != (n1, n1):
        raise ValueError(f"rotation must be {n1} × {n1} (one per unit of the module), got shape "
                         f"{rotations.shape[1:] if rotations.ndim == 3 else rotations.shape}")
    if np.abs(rotations @ rotations.transpose(0, 2, 1) - np.eye(n1)).max() > 1e-8:
        raise ValueError("rotation must be orthogonal (R Rᵀ = I to 1e-8)")
    return rotations


def extreme_basis(bars: BarResponses, threshold: float, samples: int = 5000,
                  seed: int = 0) -> np.ndarray:
    """An orthonormal basis (level1_units, level1_units) of the module's units chosen to make as
    many of them as it can end-stopped with feedback and as few as it can without: column by
    column, the best of ``samples`` random unit vectors orthogonal to the columns before it,
    scored by (index with feedback > ``threshold``) + (index without ≤ ``threshold``), ties
    broken by the two margins.  A greedy search, so what it finds is what some basis reaches,
    not the most any can.  With the Gaussian prior every orthonormal basis is the same trained
    network (:func:`rotated_counts`), so this says how far the counts can go without changing
    the network; pass the result to :func:`tuning` as its rotation."""
    _require_rotation_invariance(bars)
    for key in ("feedback", "no_feedback"):
        if key not in bars.responses:
            raise ValueError(f"extreme_basis needs the condition {key!r} in bars")
    # only the two scored conditions, in the loop over 32 × samples directions
    bars = replace(bars, responses={key: bars.responses[key]
                                    for key in ("feedback", "no_feedback")})
    rng = np.random.default_rng(seed)
    n1 = bars.drive.shape[1]
    Q = np.zeros((n1, 0))
    for _ in range(n1):
        W = (np.eye(n1) - Q @ Q.T) @ rng.normal(size=(n1, positive_int(samples, "samples")))
        W /= np.linalg.norm(W, axis=0)
        index = _tuning(bars, W)
        with_fb = np.nan_to_num(index["feedback"][1], nan=-np.inf)
        without = np.nan_to_num(index["no_feedback"][1], nan=np.inf)
        margins = np.clip(with_fb - threshold, -1, 1) + np.clip(threshold - without, -1, 1)
        score = (with_fb > threshold).astype(float) + (without <= threshold) + 0.01 * margins
        w = W[:, np.argmax(score)]
        w -= Q @ (Q.T @ w)                                   # orthogonal to round-off
        Q = np.column_stack([Q, w / np.linalg.norm(w)])
    return Q


def random_rotations(n: int, size: int, seed: int) -> np.ndarray:
    """``n`` orthogonal matrices (n, size, size; rotations and reflections) drawn uniformly (Haar
    measure) from the orthogonal group: the QR decomposition of a Gaussian matrix with the signs
    of R's diagonal moved into Q."""
    rng = np.random.default_rng(seed)
    Q, R = np.linalg.qr(rng.normal(size=(positive_int(n, "n"), size, size)))
    return Q * np.sign(np.diagonal(R, axis1=1, axis2=2))[:, None, :]


def rotated_counts(bars: BarResponses, rotations: np.ndarray, threshold: float) -> dict:
    """The number of units with an end-stopping index above ``threshold`` in each condition of
    ``bars``, for the module's basis turned by each of ``rotations`` (n, units, units): (n,) per
    condition.  With the Gaussian prior every rotation of a module's basis is the same network
    (same energy, same weight decay), so training ends at one of them as round-off decides;
    the counts over Haar-random rotations are what the learned model itself implies."""
    rotations = _check_rotations(bars, rotations)
    counts = {key: np.zeros(len(rotations), dtype=int) for key in bars.responses}
    for n, R in enumerate(rotations):
        for key, (_, index) in _tuning(bars, R).items():
            counts[key][n] = int(np.sum(index > threshold))
    return counts


# -- what the level above learns -------------------------------------------------------------------
def response_covariance(network: RaoBallardNetwork, inputs: np.ndarray,
                        chunk: int = 500) -> np.ndarray:
    """The second moment ``C = E[r rᵀ]`` (modules·level1_units, same) of the level-1 responses
    to ``inputs`` (n, modules·patch²), inferred with feedback as in training."""
    C = 0.0
    for start in range(0, len(inputs), chunk):
        r, _ = network.infer(inputs[start:start + chunk])
        C = C + r.T @ r
    return C / len(inputs)


def _require_gaussian_top(params: RaoBallardParameters, what: str) -> None:
    """Refuse in one line a network with a sparse level 2, for which ``what`` (derived for the
    Gaussian one, §14) does not hold."""
    if params.prior_top != "gaussian":
        raise ValueError(f"{what} is derived for a Gaussian level 2 (prior_top = 'gaussian'), "
                         f"got prior_top = {params.prior_top!r}")


def level2_covariance(Uh: np.ndarray, params: RaoBallardParameters) -> np.ndarray:
    """The covariance of the level-1 responses under the level above's model with weights
    ``Uh`` (``r = U_h r_h`` plus noise of variance σ_td², ``r_h ~ N(0, I/α_h)``):
    ``Σ = σ_td² I + U_h U_hᵀ/α_h``.  At the level-2 equilibrium the error units carry
    ``r − U_h r_h = σ_td² Σ⁻¹ r`` (§14).  A Gaussian level 2 only."""
    _require_gaussian_top(params, "level2_covariance")
    return params.sigma_td2 * np.eye(len(Uh)) + Uh @ Uh.T / params.alpha_top


def map_fixed_point(C: np.ndarray, params: RaoBallardParameters) -> np.ndarray:
    """The level-2 weights ``U_h`` (len(C), level2_units) at which RB99's learning rule is
    stationary when the level-1 responses have second moment ``C`` (§14): along each eigenvector
    of C with eigenvalue v a singular value s with ``(s² + α_h σ_td²)² = v α_h/λ``, zero where
    that has no positive root; the remaining columns zero (any rotation of the columns is
    stationary too).  With enough level-2 units its :func:`level2_covariance` is
    ``max(√(C/(α_h λ)), σ_td²)``.  A Gaussian level 2 only."""
    _require_gaussian_top(params, "the learning rule's fixed point")
    p, (v, V) = params, np.linalg.eigh(C)
    c = p.alpha_top * p.sigma_td2
    s2 = np.maximum(np.sqrt(np.maximum(v, 0.0) * p.alpha_top / p.weight_decay) - c, 0.0)
    top = np.argsort(v)[::-1][:p.level2_units]
    Uh = np.zeros((len(C), p.level2_units))
    Uh[:, :len(top)] = V[:, top] * np.sqrt(s2[top])
    return Uh


def whitening_covariance(C: np.ndarray, params: RaoBallardParameters) -> np.ndarray:
    """The covariance of a level 2 that whitens the responses fully, for comparison with the
    learning rule's ``max(√(C/(α_h λ)), σ_td²)`` (:func:`map_fixed_point`):
    ``Σ_w = σ_td² max(C, v₀)/v₀`` with the rule's own floor ``v₀ = α_h λ σ_td⁴`` (the
    eigenvalue below which the rule learns nothing), so the two agree at and below v₀.  Its
    error ``σ_td² Σ_w⁻¹ r = v₀ max(C, v₀)⁻¹ r`` is that of the level 2 maximum likelihood fits
    when the top-down noise variance is v₀ (§14)."""
    p, (v, V) = params, np.linalg.eigh(C)
    v0 = p.alpha_top * p.weight_decay * p.sigma_td2 ** 2
    return (V * (p.sigma_td2 * np.maximum(v, v0) / v0)) @ V.T
