"""The VAE side: ELBO and its gradients, exact posteriors, optimal q, iterative inference."""

from .elbo import ElboEstimate, ElboGradient, elbo, elbo_gradient
from .exact import (exact_posterior, log_evidence, optimal_diagonal_log_var,
                    posterior_precision)
from .iterative import DivergenceError, gradient_inference, stability_limit
from .laplace import laplace_elbo, laplace_posterior, neg_hessian
from .optimize import OptimisationError, map_estimate, optimal_posterior
from .posterior import GaussianPosterior

__all__ = ["DivergenceError", "ElboEstimate", "ElboGradient", "GaussianPosterior",
           "OptimisationError", "elbo", "elbo_gradient", "exact_posterior", "gradient_inference", "laplace_elbo",
           "laplace_posterior", "log_evidence", "map_estimate", "neg_hessian",
           "optimal_diagonal_log_var", "optimal_posterior", "posterior_precision", "stability_limit"]
