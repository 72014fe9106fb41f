"""Gaussian noise covariances given as a scalar, a diagonal or a full matrix.

A :class:`Covariance` keeps the form it was given in (``kind``), because that form is a
modelling choice: it decides the shape of its gradient and, in circuits, whether precision is a
per-unit gain or a lateral connection matrix.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from .checks import MAX_VARIANCE, MIN_VARIANCE, as_array

SYMMETRY_RTOL = 1e-8
LOG_2PI = math.log(2.0 * math.pi)


class Covariance:
    """Covariance ``Σ`` of a ``dim``-dimensional Gaussian.

    Parameters
    ----------
    value : float, array (dim,), or array (dim, dim)
        Scalar variance (``Σ = v I``), variances (``Σ = diag(v)``) or a full symmetric
        positive-definite matrix.
    dim : int
        Dimension the covariance must have.
    name : str
        How the parameter is called in error messages (e.g. ``"links[0].cov"``).
    """

    def __init__(self, value, dim, name="cov"):
        arr = as_array(value, name, ndim=(0, 1, 2))
        self.dim = int(dim)
        self.kind = {0: "scalar", 1: "diag", 2: "full"}[arr.ndim]
        if arr.ndim == 1 and arr.shape != (dim,):
            raise ValueError(f"{name} (variances) must have length {dim} to match its level, "
                             f"got {arr.shape[0]}")
        if arr.ndim == 2 and arr.shape != (dim, dim):
            raise ValueError(f"{name} must be a ({dim}, {dim}) matrix to match its level, "
                             f"got shape {arr.shape}")
        if arr.ndim < 2 and np.any(arr <= 0):
            raise ValueError(f"{name}: variances must be > 0, got {np.ravel(arr)[:8].tolist()}")
        if arr.ndim == 2:
            if not np.allclose(arr, arr.T, rtol=SYMMETRY_RTOL, atol=SYMMETRY_RTOL * np.abs(arr).max()):
                raise ValueError(f"{name} must be symmetric; largest asymmetry "
                                 f"{np.abs(arr - arr.T).max():.3g}")
            arr = 0.5 * (arr + arr.T)
            try:
                np.linalg.cholesky(arr)
            except np.linalg.LinAlgError:
                raise ValueError(f"{name} must be positive definite; smallest eigenvalue "
                                 f"{np.linalg.eigvalsh(arr).min():.3g}") from None
        eig = np.linalg.eigvalsh(arr) if arr.ndim == 2 else np.ravel(arr)
        if eig.min() < MIN_VARIANCE or eig.max() > MAX_VARIANCE:
            raise ValueError(f"{name}: variances from {eig.min():.3g} to {eig.max():.3g} are outside "
                             f"[{MIN_VARIANCE:g}, {MAX_VARIANCE:g}], the range in which precision-"
                             "weighted errors, the exact posterior and the ELBO stay accurate in "
                             "float64; rescale the model")
        if eig.max() / eig.min() > 1e12:
            raise ValueError(f"{name}: condition number {eig.max() / eig.min():.3g} exceeds 1e12; "
                             "its inverse (the precision) would be dominated by round-off")
        self.value = arr
        self._smallest = float(eig.min())
        if arr.ndim < 2:                 # diagonal: no factorisation needed
            var = np.broadcast_to(arr, (dim,)).astype(arr.dtype)
            self.matrix, self.chol = np.diag(var), np.diag(np.sqrt(var))
            self.precision = np.diag(1.0 / var)
        else:
            self.matrix = arr
            self.chol = np.linalg.cholesky(self.matrix)
            self.precision = np.linalg.inv(self.matrix)
            self.precision = 0.5 * (self.precision + self.precision.T)
        self.logdet = float(2.0 * np.sum(np.log(np.diag(self.chol))))   # a Python float: keeps dtypes
        self._var = np.diag(self.matrix).copy()
        self._inv_var = 1.0 / self._var
        self.is_unit = self.is_diagonal and bool(np.all(self._var == 1.0))   # Π = Σ = I

    def astype(self, dtype: np.typing.DTypeLike) -> Covariance:
        """The same covariance computing in ``dtype`` (e.g. ``"float32"``)."""
        new = copy.copy(self)
        for name in ("value", "matrix", "chol", "precision", "_var", "_inv_var"):
            setattr(new, name, getattr(self, name).astype(dtype))
        return new

    @property
    def is_diagonal(self) -> bool:
        """Σ is a scalar or a diagonal (not a full matrix)."""
        return self.kind != "full"

    @property
    def smallest_variance(self) -> float:
        """The smallest eigenvalue of Σ."""
        return self._smallest

    @property
    def inverse_variances(self) -> np.ndarray:
        """``1/Σ_ii``, shape (dim,): Π's diagonal when Σ is diagonal."""
        return self._inv_var

    @property
    def variances(self) -> np.ndarray:
        """Diagonal of Σ, shape (dim,)."""
        return self._var.copy()

    def apply_precision(self, r: np.ndarray) -> np.ndarray:
        """``Π r`` for residuals ``r`` of shape (..., dim) (``r`` itself when Π = I)."""
        if self.is_unit:
            return r
        if self.is_diagonal:
            return r * self._inv_var
        return r @ self.precision

    def weigh(self, weights: np.ndarray) -> np.ndarray:
        """``Π W`` for synaptic weights onto this level: ``weights`` a (dim, n) matrix, or a
        (dim,) vector of one-to-one weights (a diagonal Π keeps them one-to-one; a full Π makes
        them a (dim, dim) matrix).  Circuits weigh every pathway into an error population here."""
        if np.ndim(weights) == 1:
            return weights * self._inv_var if self.is_diagonal else self.precision * weights
        return self.apply_precision(weights.T).T

    def apply(self, e: np.ndarray) -> np.ndarray:
        """``Σ e`` for vectors of shape (..., dim)."""
        if self.is_unit:
            return e
        if self.is_diagonal:
            return e * self._var
        return e @ self.matrix

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws from ``N(0, Σ)``, shape (n, dim)."""
        return rng.standard_normal((n, self.dim)) @ self.chol.T

    def gradient(self, eps: np.ndarray, weights: float | np.ndarray = 1.0) -> float | np.ndarray:
        """``∂/∂Σ Σ_n w_n log N(r_n; 0, Σ) = ½ Σ_n w_n (ε_n ε_nᵀ − Π)`` (``docs/mathematics.md``
        §2) for errors ``ε = Π r`` of shape (..., dim), weights broadcast to the leading axes, in
        this covariance's own parameters: the trace for a scalar variance, the diagonal for
        variances, the matrix for a full covariance (only what the form needs is computed)."""
        e = eps.reshape(-1, self.dim)
        equal = np.ndim(weights) == 0                      # equal weights: sums, then one scale
        w = None if equal else np.broadcast_to(weights, eps.shape[:-1]).reshape(-1)
        if self.kind == "full":                            # Σ_n w_n ε_n ε_nᵀ
            outer, prec = (e.T @ e if equal else (e * w[:, None]).T @ e), self.precision
        elif self.kind == "diag":                          # Σ_n w_n ε_n² per dimension
            outer = np.einsum("ni,ni->i", e, e) if equal else np.einsum("n,ni,ni->i", w, e, e)
            prec = self._inv_var
        else:                                              # Σ_n w_n |ε_n|²
            outer = np.vecdot(e.ravel(), e.ravel()) if equal else w @ np.vecdot(e, e)
            prec = self._inv_var.sum()
        if equal:
            return 0.5 * weights * (outer - len(e) * prec)
        return 0.5 * (outer - w.sum() * prec)

    def to_spec(self) -> float | list:
        """The value as plain lists, for model files and results files."""
        return self.value.tolist()
