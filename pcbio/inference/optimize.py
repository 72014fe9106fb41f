"""Reference optima found by a robust optimiser: the MAP estimate and the optimal Gaussian q.

These are the fixed points that circuits are checked against for nonlinear models.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ..checks import positive_number
from ..model import GenerativeModel
from .elbo import elbo_gradient, resolve_method
from .laplace import neg_hessian
from .posterior import GaussianPosterior


class OptimisationError(RuntimeError):
    """The optimiser stopped without meeting its gradient tolerance."""


def _lbfgs(fun_and_grad, x0, gtol, what, polish=None):
    """L-BFGS to ``gtol``; ``polish(x) -> x`` (Newton steps) may finish the job where L-BFGS
    stalls on round-off of a large summed objective."""
    res = minimize(fun_and_grad, x0, jac=True, method="L-BFGS-B",
                   options={"maxiter": 20000, "maxcor": 30, "gtol": gtol, "ftol": 0.0})
    x, gnorm = res.x, np.max(np.abs(fun_and_grad(res.x)[1]))
    if polish is not None and np.isfinite(res.fun) and gnorm > gtol:
        for _ in range(5):
            candidate = polish(x)
            g = np.max(np.abs(fun_and_grad(candidate)[1]))
            if not g < gnorm:
                break
            x, gnorm = candidate, g
    if not np.isfinite(res.fun) or gnorm > 100 * gtol:
        raise OptimisationError(f"{what}: optimiser did not converge ({res.message}; "
                                f"largest gradient entry {gnorm:.3g})")
    return x, {"iterations": int(res.nit), "max_abs_gradient": float(gnorm)}


def map_estimate(model: GenerativeModel, x: np.ndarray, init: list[np.ndarray] | None = None,
                 gtol: float = 1e-9) -> tuple[list[np.ndarray], dict]:
    """``argmax_z log p(x, z)`` for each data point, by L-BFGS with the analytic gradient.

    Parameters
    ----------
    x : array (batch, d_0)
    init : list of (batch, d_l), optional
        Start; default :meth:`GenerativeModel.prior_means` (the mode reached by gradient ascent
        from the prior, the usual choice in predictive coding).
    Returns ``(z, info)`` with z a list of (batch, d_l).
    """
    x = model.check_x(x)
    gtol = positive_number(gtol, "gtol")
    z0 = model.prior_means(len(x)) if init is None else model.check_latents(init, len(x), "init")
    dims = model.latent_dims
    split = np.cumsum(dims)[:-1]

    def negative(flat):
        z = np.split(flat.reshape(len(x), -1), split, axis=-1)
        return (-np.sum(model.log_joint(x, z)),
                -np.concatenate(model.grad_log_joint(x, z), axis=-1).ravel())

    def newton(flat):                # per data point: z + H⁻¹ ∇ log p (H = −∇² log p)
        z = np.split(flat.reshape(len(x), -1), split, axis=-1)
        grad = np.concatenate(model.grad_log_joint(x, z), axis=-1)
        return (flat.reshape(len(x), -1)
                + np.linalg.solve(neg_hessian(model, x, z), grad[..., None])[..., 0]).ravel()

    flat, info = _lbfgs(negative, np.concatenate(z0, axis=-1).ravel(), gtol, "MAP estimate",
                        polish=newton)
    return np.split(flat.reshape(len(x), -1), split, axis=-1), info


def optimal_posterior(model: GenerativeModel, x: np.ndarray,
                      init: list[np.ndarray] | None = None, method: str = "auto", n_samples: int = 256,
                      seed: int = 0, gtol: float = 1e-7) -> tuple[GaussianPosterior, dict]:
    """The diagonal Gaussian q maximising the ELBO (exact ELBO for linear models; for nonlinear
    models the Monte-Carlo ELBO with fixed noise ``seed``, a sample-average approximation).

    Returns ``(q, info)``; ``q`` starts from ``init`` (a :class:`GaussianPosterior`) or from the
    MAP estimate with unit variances.
    """
    x = model.check_x(x)
    method = resolve_method(model, method)
    if init is None:
        z, _ = map_estimate(model, x)
        init = GaussianPosterior(z, log_var=[np.zeros_like(m) for m in z])
    B, D = len(x), sum(model.latent_dims)

    def unpack(flat):
        flat = flat.reshape(2, B, D)
        return GaussianPosterior(init.split(flat[0]), log_var=init.split(flat[1]))

    def negative(flat):
        g = elbo_gradient(model, x, unpack(flat), method, n_samples, seed, parameters=False)
        grad = np.stack([np.concatenate(g.means, -1), np.concatenate(g.log_var, -1)])
        return -np.sum(g.elbo.value), -grad.ravel()

    start = np.stack([init.flat_mean(), np.concatenate(init.log_var, -1)]).ravel()
    flat, info = _lbfgs(negative, start, gtol, "optimal posterior")
    return unpack(flat), info
