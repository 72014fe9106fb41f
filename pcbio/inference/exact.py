"""Exact inference for all-linear hierarchies, which are jointly Gaussian.

* The posterior ``p(z | x) = N(m, H⁻¹)``: ``log p(x, z)`` is quadratic in the stacked latents, so
  its gradient is ``h − H z``; ``h`` and the posterior precision ``H`` are read off the model's own
  gradient at ``z = 0`` and at the unit vectors (no second copy of the equations).
* The evidence ``log p(x)`` by propagating the prior down the hierarchy:
  ``m_l = W_l m_{l+1} + b_l``, ``C_l = W_l C_{l+1} W_lᵀ + Σ_l`` and ``log N(x; m_0, C_0)`` — an
  independent route, so ``ELBO(exact posterior) = log p(x)`` is a real check.
"""

from __future__ import annotations

import numpy as np

from ..model import GenerativeModel
from .posterior import GaussianPosterior


def _require_linear(model, what):
    if not model.is_linear:
        raise ValueError(f"{what} is closed-form only for linear models (all links f='identity'); "
                         "use pcbio.inference.map_estimate or optimal_posterior for nonlinear links")


def posterior_precision(model: GenerativeModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``H`` (D, D) and ``h`` (batch, D) with ``∇_z log p(x, z) = h − H z`` (linear models)."""
    _require_linear(model, "the exact posterior")
    x = model.check_x(x)
    D = sum(model.latent_dims)
    split = np.cumsum(model.latent_dims)[:-1]
    h = np.concatenate(model.grad_log_joint(x, np.split(np.zeros((len(x), D)), split, axis=-1)), -1)
    # H does not depend on the data: probe the unit vectors with the first data point only
    probes = np.eye(D)[:, None, :]                                           # (D, 1, D)
    g = np.concatenate(model.grad_log_joint(x[:1], np.split(probes, split, axis=-1)), -1)
    H = -(g[:, 0, :] - h[0]).T
    return 0.5 * (H + H.T), h


def exact_posterior(model: GenerativeModel, x: np.ndarray) -> GaussianPosterior:
    """The exact posterior of a linear model as a full-covariance :class:`GaussianPosterior`."""
    H, h = posterior_precision(model, x)
    cov = np.linalg.inv(H)
    cov = 0.5 * (cov + cov.T)
    mean = h @ cov
    return GaussianPosterior(np.split(mean, np.cumsum(model.latent_dims)[:-1], axis=-1), cov=cov)


def optimal_diagonal_log_var(model: GenerativeModel, x: np.ndarray) -> list[np.ndarray]:
    """Optimal diagonal variances of a linear model, ``s² = 1/diag(H)``
    (``docs/mathematics.md`` §4); list of (batch, d_l) log-variances."""
    H, h = posterior_precision(model, x)
    lv = np.broadcast_to(-np.log(np.diag(H)), h.shape)
    return np.split(lv, np.cumsum(model.latent_dims)[:-1], axis=-1)


def marginal_moments(model: GenerativeModel) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d_0,) and covariance (d_0, d_0) of the data under a linear model."""
    _require_linear(model, "the marginal p(x)")
    m, C = model.top_mean, model.top_cov.matrix
    for link in model.links[::-1]:
        W = link.W if link.A is None else link.W @ link.A
        bias = link.b if link.A is None else link.W @ link.a + link.b
        m, C = W @ m + bias, W @ C @ W.T + link.cov.matrix
    return m, C


def log_evidence(model: GenerativeModel, x: np.ndarray) -> np.ndarray:
    """Exact ``log p(x)`` for a linear model, shape (batch,)."""
    x = model.check_x(x)
    m, C = marginal_moments(model)
    L = np.linalg.cholesky(C)
    r = np.linalg.solve(L, (x - m).T)
    return -0.5 * (np.sum(r ** 2, axis=0) + 2 * np.log(np.diag(L)).sum() + len(m) * np.log(2 * np.pi))
