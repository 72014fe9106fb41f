"""Laplace approximation: ``q = N(ẑ, H(ẑ)⁻¹)`` with ``H = −∇²_z log p(x, z)``.

Used to give a point estimate (a circuit state, a MAP estimate) an ELBO: for linear models ``H`` is
the exact posterior precision, so ``ELBO(N(μ, H⁻¹)) = log p(x) − ½ (μ − m)ᵀ H (μ − m)`` and equals
``log p(x)`` at the exact posterior mean; for nonlinear models ``H`` is the Hessian at ``ẑ`` by
central differences of the analytic gradient.
"""

from __future__ import annotations

import numpy as np

from ..model import GenerativeModel
from .elbo import ElboEstimate, elbo
from .exact import posterior_precision
from .posterior import GaussianPosterior


def neg_hessian(model: GenerativeModel, x: np.ndarray, z: list[np.ndarray], h: float = 1e-5) -> np.ndarray:
    """``H(z) = −∇²_z log p(x, z)`` over the stacked latents, (batch, D, D): exact for linear
    models, central differences of the analytic gradient otherwise."""
    x = model.check_x(x)
    z = model.check_latents(z, len(x))
    B, D = len(x), sum(model.latent_dims)
    if model.is_linear:
        return np.broadcast_to(posterior_precision(model, x)[0], (B, D, D))
    flat = np.concatenate(z, axis=-1)
    steps = np.concatenate([np.eye(D), -np.eye(D)])[:, None, :] * h        # (2D, 1, D)
    probes = np.split(flat + steps, np.cumsum(model.latent_dims)[:-1], axis=-1)
    g = np.concatenate(model.grad_log_joint(x, probes), axis=-1)            # (2D, B, D)
    H = -np.transpose(g[:D] - g[D:], (1, 0, 2)) / (2 * h)
    return 0.5 * (H + np.transpose(H, (0, 2, 1)))


def laplace_posterior(model: GenerativeModel, x: np.ndarray, z: list[np.ndarray]) -> GaussianPosterior:
    """Full-covariance Gaussian centred on ``z`` (list of (batch, d_l)) with covariance
    ``H(z)⁻¹``, (batch, D, D).  Raises ``ValueError`` where H is not positive definite (z is not a
    local maximum of log p)."""
    H = neg_hessian(model, x, z)
    eig = np.linalg.eigvalsh(H).min()
    if eig <= 0:
        raise ValueError(f"the Laplace approximation needs a local maximum of log p(x, z); the "
                         f"Hessian at the given point has eigenvalue {eig:.3g} <= 0")
    return GaussianPosterior(model.check_latents(z, H.shape[0]), cov=np.linalg.inv(H))


def laplace_elbo(model: GenerativeModel, x: np.ndarray, z: list[np.ndarray], n_samples: int = 512,
                 seed: int = 0) -> ElboEstimate:
    """ELBO of the Laplace approximation at ``z``: exact for linear models, seeded Monte Carlo
    otherwise.  Returns :class:`ElboEstimate`."""
    return elbo(model, x, laplace_posterior(model, x, z), n_samples=n_samples, seed=seed)
