"""Gaussian approximate posteriors ``q(z) = N(μ, S)`` over all latent levels.

``S`` is diagonal (given by per-level log-variances) or a full covariance over the stacked latent
vector ``[z_1; …; z_L]`` of size ``D = Σ_l d_l`` (the exact posterior of a linear model has
correlations within and across levels).
"""

from __future__ import annotations

import copy

import numpy as np

from ..checks import as_array


class GaussianPosterior:
    """``q(z) = N(μ, S)``, batched over data points.

    Parameters
    ----------
    means : list of arrays (batch, d_l), levels 1 … L
    log_var : list of arrays (batch, d_l), optional
        Diagonal ``S`` as log-variances.
    cov : array (D, D) or (batch, D, D), optional
        Full ``S`` over the stacked latents.  Give ``log_var`` or ``cov``, not both.
    """

    def __init__(self, means, log_var=None, cov=None):
        self.means = [as_array(m, f"means[level {l}]", ndim=2) for l, m in enumerate(means, 1)]
        self.dims = tuple(m.shape[1] for m in self.means)
        self.batch = self.means[0].shape[0]
        if any(m.shape[0] != self.batch for m in self.means):
            raise ValueError("means: every level must have the same batch size")
        self.D = sum(self.dims)
        if (log_var is None) == (cov is None):
            raise ValueError("give exactly one of log_var (diagonal q) or cov (full q)")
        self.log_var = None
        self.cov = None
        if log_var is not None:
            self.log_var = []
            for l, (lv, m) in enumerate(zip(log_var, self.means), 1):
                lv = as_array(lv, f"log_var[level {l}]")
                self.log_var.append(np.broadcast_to(lv, m.shape).copy())
        else:
            cov = as_array(cov, "cov", ndim=(2, 3))
            if cov.shape[-2:] != (self.D, self.D):
                raise ValueError(f"cov must be ({self.D}, {self.D}) over the stacked latents, "
                                 f"got {cov.shape}")
            try:
                self.chol = np.linalg.cholesky(np.broadcast_to(cov, (self.batch, self.D, self.D)))
            except np.linalg.LinAlgError:
                raise ValueError("cov must be positive definite") from None
            self.cov = cov

    def astype(self, dtype: np.typing.DTypeLike) -> GaussianPosterior:
        """The same q with its arrays in ``dtype``."""
        if self.means[0].dtype == np.dtype(dtype):
            return self
        new = copy.copy(self)
        new.means = [m.astype(dtype) for m in self.means]
        if self.log_var is not None:
            new.log_var = [lv.astype(dtype) for lv in self.log_var]
        else:
            new.cov, new.chol = self.cov.astype(dtype), self.chol.astype(dtype)
        return new

    @property
    def is_diagonal(self) -> bool:
        """S is diagonal (given by log-variances), not a full covariance."""
        return self.cov is None

    def flat_mean(self) -> np.ndarray:
        """μ stacked over levels, (batch, D)."""
        return np.concatenate(self.means, axis=-1)

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """Split (..., D) into a list of (..., d_l)."""
        ends = np.cumsum(self.dims).tolist()
        return [flat[..., a:b] for a, b in zip([0] + ends[:-1], ends)]

    def std(self) -> np.ndarray:
        """Diagonal q only: standard deviations stacked over levels, (batch, D)."""
        return np.exp(0.5 * np.concatenate(self.log_var, axis=-1))

    def transform(self, gamma: np.ndarray) -> np.ndarray:
        """Reparameterisation ``z = μ + S^{1/2} γ`` for standard-normal ``γ`` (K, batch, D);
        returns (K, batch, D)."""
        if self.is_diagonal:
            return self.flat_mean() + self.std() * gamma
        return self.flat_mean() + np.einsum("bij,kbj->kbi", self.chol, gamma)

    def entropy(self) -> np.ndarray:
        """``H[q]``, shape (batch,)."""
        if self.is_diagonal:
            logdet = np.concatenate(self.log_var, axis=-1).sum(axis=-1)
        else:
            logdet = 2.0 * np.log(np.diagonal(self.chol, axis1=-2, axis2=-1)).sum(axis=-1)
        return 0.5 * (logdet + self.D * (1.0 + np.log(2.0 * np.pi)))
