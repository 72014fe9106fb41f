"""Normalizing flows: linear whitening and temporal prediction, fitted from data
(``docs/mathematics.md`` §11).

A flow maps data ``x`` to a normalized variable ``y`` and back, with the log-determinant of its
Jacobian, so that a density on ``y`` becomes one on ``x``:
``log p(x) = log p_Y(y(x)) + log |det ∂y/∂x|``.

* :class:`LinearFlow` — ``y = A (x − m)``.  Fitted as ``"cholesky"`` (``A = L⁻¹`` with
  ``C = L Lᵀ``: the ordered, autoregressive form ``y_i = (x_i − α_i(x_<i)) / β_i`` with
  ``β_i = L_ii``) or ``"zca"`` (``A = C^{-1/2}``, symmetric), from the data covariance plus a
  noise variance on the diagonal (``C + σ_n² I``: whitening that does not amplify noise).
* :class:`TemporalFlow` — each frame predicted from the ``order`` frames before it,
  ``r_t = x_t − c − Σ_k B_k x_{t−k}``, then the residual whitened by its Cholesky factor:
  ``y_t = L_r⁻¹ r_t`` (an affine autoregressive flow over time).

A linear flow can sit in front of a generative model (``[flow]`` in a model file): inference and
learning then see ``y``, and :func:`data_log_evidence` reports ``log p(x)`` in data space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .checks import as_array, one_of, positive_int, positive_number
from .covariance import LOG_2PI

if TYPE_CHECKING:
    from .model import GenerativeModel

KINDS = ("cholesky", "zca")


class LinearFlow:
    """``y = A (x − m)`` for data of dimension d.

    Parameters
    ----------
    mean : array (d,)
    matrix : array (d, d), invertible — the normalizing matrix A
    kind : ``"cholesky"``, ``"zca"`` or ``"general"`` (how A was made; recorded in model files)
    """

    def __init__(self, mean, matrix, kind: str = "general"):
        self.mean = as_array(mean, "flow.mean", ndim=1)
        self.matrix = as_array(matrix, "flow.matrix", shape=(self.mean.size, self.mean.size))
        self.kind = one_of(kind, "flow.kind", set(KINDS) | {"general"})
        sign, logdet = np.linalg.slogdet(self.matrix)
        if sign == 0 or not np.isfinite(logdet):
            raise ValueError("flow.matrix must be invertible")
        self.logdet = float(logdet)            # log |det ∂y/∂x|, the same for every x
        self.inverse = np.linalg.inv(self.matrix)

    @property
    def dim(self) -> int:
        return self.mean.size

    @classmethod
    def fit(cls, x: np.ndarray, kind: str = "zca", noise: float = 0.0) -> LinearFlow:
        """Fit to data ``x`` (n, d): whiten ``C + noise·I``, C the (maximum-likelihood) sample
        covariance."""
        x = as_array(x, "x", ndim=2)
        one_of(kind, "kind", set(KINDS))
        noise = positive_number(noise, "noise", allow_zero=True)
        mean = x.mean(axis=0)
        cov = np.cov(x, rowvar=False, bias=True) + noise * np.eye(x.shape[1])
        lam = np.linalg.eigvalsh(cov)
        if lam[0] <= 1e-12 * lam[-1]:
            raise ValueError("the data covariance is singular (constant or collinear inputs); "
                             "give a noise variance > 0")
        if kind == "cholesky":
            matrix = np.linalg.inv(np.linalg.cholesky(cov))
        else:
            lam, vec = np.linalg.eigh(cov)
            matrix = (vec / np.sqrt(lam)) @ vec.T
        return cls(mean, matrix, kind)

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """``y = A (x − m)``, (…, d)."""
        return (x - self.mean) @ self.matrix.T

    def generate(self, y: np.ndarray) -> np.ndarray:
        """``x = A⁻¹ y + m``, the inverse of :meth:`normalize`."""
        return y @ self.inverse.T + self.mean

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """``log p(x)`` with a standard normal ``y``: (…,)."""
        y = self.normalize(x)
        return -0.5 * (np.sum(y * y, axis=-1) + self.dim * LOG_2PI) + self.logdet

    def autoregressive(self) -> tuple[np.ndarray, np.ndarray]:
        """The flow as ``y = (x − m − P (x − m)) / β``: ``P`` (d, d) (strictly lower triangular
        for a Cholesky flow: each input predicted from the ones before it) and ``β`` (d,)."""
        beta = 1.0 / np.diag(self.matrix)
        return np.eye(self.dim) - beta[:, None] * self.matrix, beta

    def recurrent(self) -> np.ndarray:
        """Lateral weights M of a recurrent circuit whose steady state ``(I + M)⁻¹ (x − m)`` is
        ``y``: ``M = A⁻¹ − I``."""
        return self.inverse - np.eye(self.dim)

    @classmethod
    def from_recurrent(cls, mean: np.ndarray, lateral: np.ndarray,
                       kind: str = "general") -> LinearFlow:
        """The flow a recurrent circuit with lateral weights M computes: ``A = (I + M)⁻¹``."""
        return cls(mean, np.linalg.inv(np.eye(len(lateral)) + lateral), kind)

    def to_spec(self) -> dict:
        return {"kind": self.kind, "mean": self.mean.tolist(), "matrix": self.matrix.tolist()}

    @classmethod
    def from_spec(cls, spec: dict) -> "LinearFlow":
        if not isinstance(spec, dict):
            raise ValueError("[flow] must be a table with kind, mean and matrix")
        unknown = set(spec) - {"kind", "mean", "matrix"}
        if unknown:
            raise ValueError(f"[flow]: unknown key(s) {sorted(unknown)}; allowed: kind, mean, matrix")
        for key in ("mean", "matrix"):
            if key not in spec:
                raise ValueError(f"[flow]: missing required key '{key}'")
        return cls(spec["mean"], spec["matrix"], spec.get("kind", "general"))


class TemporalFlow:
    """``y_t = L_r⁻¹ (x_t − c − Σ_{k=1}^{p} B_k x_{t−k})`` for t ≥ p (p = ``order``).

    Parameters
    ----------
    intercept : array (d,) — c
    coefficients : array (p, d, d) — B_1 … B_p
    residual_cov : array (d, d) — covariance of the prediction residual (its Cholesky factor
        whitens it)
    """

    def __init__(self, intercept, coefficients, residual_cov):
        self.intercept = as_array(intercept, "intercept", ndim=1)
        self.coefficients = as_array(coefficients, "coefficients", ndim=3)
        d = self.intercept.size
        self.residual = LinearFlow(np.zeros(d), np.linalg.inv(np.linalg.cholesky(
            as_array(residual_cov, "residual_cov", shape=(d, d)))), "cholesky")

    @property
    def order(self) -> int:
        return self.coefficients.shape[0]

    @classmethod
    def fit(cls, frames: np.ndarray, order: int = 1, noise: float = 0.0) -> TemporalFlow:
        """Least-squares prediction of each frame from the ``order`` before it, over a sequence
        ``frames`` (T, d); ``noise`` is added to the residual covariance's diagonal."""
        frames = as_array(frames, "frames", ndim=2)
        p = positive_int(order, "order")
        T, d = frames.shape
        if T <= p + d * p:
            raise ValueError(f"{T} frames are too few to fit an order-{p} prediction of {d} "
                             "values")
        past = np.concatenate([np.ones((T - p, 1))] +
                              [frames[p - k:T - k] for k in range(1, p + 1)], axis=1)
        coef, *_ = np.linalg.lstsq(past, frames[p:], rcond=None)
        residual = frames[p:] - past @ coef
        cov = residual.T @ residual / len(residual) + positive_number(
            noise, "noise", allow_zero=True) * np.eye(d)
        return cls(coef[0], coef[1:].reshape(p, d, d).transpose(0, 2, 1), cov)

    def predict(self, frames: np.ndarray) -> np.ndarray:
        """Predictions of frames p … T−1 from the ones before: (T − p, d)."""
        T = len(frames)
        return self.intercept + sum(frames[self.order - k:T - k] @ B.T
                                    for k, B in enumerate(self.coefficients, start=1))

    def normalize(self, frames: np.ndarray) -> np.ndarray:
        """``y_t`` for t = p … T−1: (T − p, d)."""
        return self.residual.normalize(frames[self.order:] - self.predict(frames))

    def log_prob(self, frames: np.ndarray) -> float:
        """``log p(x_p, …, x_{T−1} | x_0, …, x_{p−1})`` with standard normal ``y_t``."""
        return float(self.residual.log_prob(frames[self.order:] - self.predict(frames)).sum())


def data_log_evidence(model: GenerativeModel, x: np.ndarray) -> np.ndarray:
    """``log p(x)`` in data space for a linear model with a flow in front:
    ``log p_model(y) + log |det A|`` (the model's own evidence if it has no flow); (batch,)."""
    from .inference import log_evidence
    y, logdet = model.model_space(x)
    return log_evidence(model, y) + logdet
