"""The ELBO ``L(q) = E_q[log p(x, z)] + H[q]`` and its gradients.

Expectations over ``q = N(μ, S)`` are weighted sums over points ``z_k = μ + S^{1/2} γ_k``:

* ``method="exact"`` (linear models): the ``2D`` symmetric sigma points ``γ = ±√D e_i`` with
  equal weights.  They reproduce the mean and covariance of ``q`` exactly, so the expectation of
  any polynomial of degree ≤ 3 is exact (Julier & Uhlmann 1997).  For a linear-Gaussian model
  ``log p(x, z)`` is quadratic in z and every weight gradient is quadratic too, so this is the
  closed-form ELBO, evaluated without writing the trace terms out by hand.
* ``method="mc"``: reparameterised Monte Carlo with ``γ ~ N(0, I)`` drawn from ``seed``
  (Kingma & Welling 2014), with a standard error; ``antithetic=True`` pairs every ``γ`` with
  ``−γ``, which cancels the odd terms of the expansion in ``s`` (the standard error is then taken
  over pair averages).  The gradients returned are the exact gradients
  of that estimator (same ``γ``), so finite differences with the same seed reproduce them.

Gradients (``docs/mathematics.md`` §4): ``∇_μ L = E_q[∇_z log p]``;
``∂L/∂ log s² = ½ s ⊙ E_q[∇_z log p ⊙ γ] + ½``; w.r.t. the Cholesky factor C of a full S,
``E_q[∇_z log p γᵀ] + diag(1/C_ii)`` (lower triangle); model parameters from
:meth:`GenerativeModel.parameter_gradient` averaged over the points (summed over the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import one_of, positive_int
from ..model import GenerativeModel
from .posterior import GaussianPosterior


@dataclass
class ElboEstimate:
    """ELBO per data point: ``value`` and ``stderr`` (0 for exact), both (batch,)."""
    value: np.ndarray
    stderr: np.ndarray
    method: str


@dataclass
class ElboGradient:
    """ELBO and its gradients.

    ``means`` and ``log_var``: lists of (batch, d_l) — per data point.  ``chol``: (batch, D, D)
    for a full q.  ``params``: :class:`pcbio.model.ParameterGradient` of the batch-summed ELBO.
    """
    elbo: ElboEstimate
    means: list
    log_var: list = None
    chol: np.ndarray = None
    params: object = None


def resolve_method(model: GenerativeModel, method: str) -> str:
    """``method`` checked (auto, exact or mc) and resolved: auto is exact for a linear model,
    Monte Carlo otherwise; exact for a nonlinear model is refused."""
    one_of(method, "method", {"auto", "exact", "mc"})
    if method == "auto":
        return "exact" if model.is_linear else "mc"
    if method == "exact" and not model.is_linear:
        raise ValueError("method='exact' needs a linear model (all links f='identity'); "
                         "use method='mc' for nonlinear links")
    return method


def expectation_points(q: GaussianPosterior, method: str, n_samples: int = 256, seed: int = 0,
                       antithetic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Standard-normal points ``γ`` (K, batch, D) and weights (K,) for expectations under q; with
    ``antithetic`` the second half of the points is the negated first half."""
    if method == "exact":
        eye = np.sqrt(q.D) * np.eye(q.D)
        gamma = np.concatenate([eye, -eye])[:, None, :]
        gamma = np.broadcast_to(gamma, (2 * q.D, q.batch, q.D))
        return gamma, np.full(2 * q.D, 1.0 / (2 * q.D))
    n_samples = positive_int(n_samples, "n_samples", minimum=2)
    if antithetic and n_samples % 2:
        raise ValueError(f"n_samples must be even with antithetic=True, got {n_samples}")
    n_draw = n_samples // 2 if antithetic else n_samples
    gamma = np.random.default_rng(seed).standard_normal((n_draw, q.batch, q.D))
    if antithetic:
        gamma = np.concatenate([gamma, -gamma])
    return gamma, np.full(n_samples, 1.0 / n_samples)


def _expectation(w, values):
    """``Σ_k w_k values_k`` over the points' axis: one matrix-vector product over the
    flattened trailing axes."""
    return (w @ values.reshape(len(w), -1)).reshape(values.shape[1:])


def _evaluate(model, x, q, method, n_samples, seed, antithetic=False, dtype=None):
    if dtype is not None:
        model, q = model.astype(dtype), q.astype(dtype)
    x = model.check_x(x).astype(model.dtype, copy=False)
    if q.dims != model.latent_dims or q.batch != x.shape[0]:
        raise ValueError(f"q has latent dims {q.dims} and batch {q.batch}; the model needs "
                         f"{model.latent_dims} and x has batch {x.shape[0]}")
    method = resolve_method(model, method)
    gamma, w = expectation_points(q, method, n_samples, seed, antithetic)
    gamma = gamma.astype(model.dtype, copy=False)
    fw = model.forward(x, q.transform(gamma))                       # the sampled latents, flat
    z = fw.z
    logp = model.log_joint(x, z, fw)                                # (K, batch)
    value = w @ logp + q.entropy()
    if method == "mc":
        units = 0.5 * (logp[: len(w) // 2] + logp[len(w) // 2:]) if antithetic else logp
        stderr = units.std(axis=0, ddof=1) / np.sqrt(len(units))
    else:
        stderr = np.zeros_like(value)
    return x, z, fw, gamma, w, ElboEstimate(value, stderr, method)


def elbo(model: GenerativeModel, x: np.ndarray, q: GaussianPosterior, method: str = "auto", n_samples: int = 256, seed: int = 0,
         antithetic: bool = False, dtype: np.dtype | None = None) -> ElboEstimate:
    """ELBO of q for each data point in ``x`` (batch, d_0). Returns :class:`ElboEstimate`.
    ``dtype`` (e.g. ``"float32"``): compute in that type (default: the model's own)."""
    return _evaluate(model, x, q, method, n_samples, seed, antithetic, dtype)[-1]


def elbo_gradient(model: GenerativeModel, x: np.ndarray, q: GaussianPosterior,
                  method: str = "auto", n_samples: int = 256, seed: int = 0,
                  parameters: bool = True, antithetic: bool = False,
                  dtype: np.dtype | None = None) -> ElboGradient:
    """ELBO and its gradients w.r.t. q's means, its (log-)variances or Cholesky factor, and
    (``parameters=True``) every model parameter, from one forward pass through the model.  See
    the module docstring for the formulas.  ``dtype``: as for :func:`elbo`."""
    if dtype is not None:
        model, q = model.astype(dtype), q.astype(dtype)
    x, z, fw, gamma, w, value = _evaluate(model, x, q, method, n_samples, seed, antithetic)
    gflat = model.flat_gradient(fw)                                # (K, batch, D)
    out = ElboGradient(elbo=value, means=q.split(_expectation(w, gflat)))
    if q.is_diagonal:
        g_gamma = _expectation(w, gflat * gamma)                   # (batch, D)
        out.log_var = q.split(0.5 * q.std() * g_gamma + 0.5)
    else:
        outer = np.einsum("k,kbi,kbj->bij", w, gflat, gamma)
        out.chol = np.tril(outer) + np.einsum("bi,ij->bij",
                                              1.0 / np.diagonal(q.chol, axis1=-2, axis2=-1),
                                              np.eye(q.D))
    if parameters:
        # the points have equal weights (Monte Carlo and sigma points alike)
        out.params = model.parameter_gradient(x, z, float(w[0]), forward=fw)
    return out
