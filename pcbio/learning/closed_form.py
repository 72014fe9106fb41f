"""Closed-form maximum-likelihood models that learning is checked against."""

from __future__ import annotations

import numpy as np

from ..checks import as_array, positive_int
from ..model import GenerativeModel, Link


def ppca_maximum_likelihood(x: np.ndarray, q: int, name: str = "ppca_ml") -> GenerativeModel:
    """Probabilistic PCA fitted by maximum likelihood in closed form (Tipping & Bishop 1999,
    J. R. Stat. Soc. B 61:611, eqs. 7–8): ``z ~ N(0, I_q)``, ``x = W z + μ + N(0, σ² I)`` with
    μ the data mean, ``σ² = mean of the d − q smallest eigenvalues of the sample covariance``
    and ``W = U_q (Λ_q − σ² I)^{1/2}`` (the leading eigenvectors; W is unique only up to a
    rotation, so compare ``W Wᵀ`` or the column space).  ``x``: (n, d) data."""
    x = as_array(x, "x", ndim=2)
    n, d = x.shape
    q = positive_int(q, "q")
    if q >= d:
        raise ValueError(f"q must be smaller than the data dimension {d}, got {q}")
    mean = x.mean(axis=0)
    lam, vec = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    lam, vec = lam[::-1], vec[:, ::-1]
    var = float(lam[q:].mean())
    if var <= 1e-12 * lam[0]:          # round-off leaves ±1e-16 λ_max where the data have none
        raise ValueError("the data lie (to round-off) in a subspace of dimension <= q: PPCA's "
                         "noise variance would be 0; choose a smaller q")
    W = vec[:, :q] * np.sqrt(np.maximum(lam[:q] - var, 0.0))
    return GenerativeModel(np.zeros(q), 1.0, [Link(W, mean, "identity", var)], name=name)
