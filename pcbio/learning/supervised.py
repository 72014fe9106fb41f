"""Supervised learning by predictive coding (Whittington & Bogacz 2017) and the
backpropagation it approximates.

The generative chain runs from an input to an output: the top level ``z_L`` is the input
(clamped: a circuit with ``top="clamped"``), the data level is the target ``t`` (clamped while
learning), the levels between are hidden.  The network's prediction is the feed-forward pass
from the input, ``ŷ = g_0(g_1(… g_{L-1}(z_L)))`` (:func:`predict`).  Backpropagation of the
loss ``½ (t − ŷ)ᵀ Π_0 (t − ŷ)`` sends ``δ_0 = Π_0 (t − ŷ)`` down as ``δ_l = J_{l-1}ᵀ δ_{l-1}``
and changes ``W_l`` by ``δ_l f(z_{l+1})ᵀ`` — the same outer product as the local rule, with δ in
place of the prediction errors ε: :func:`backprop_gradient` feeds δ to the one equation of it,
:meth:`~pcbio.model.GenerativeModel.parameter_gradient`.  Whittington & Bogacz show that at the
equilibrium of inference ε_l → δ_l as the output precision Π_0 → 0.
"""

import numpy as np

from ..model import Forward, GenerativeModel, ParameterGradient
from .rules import LearningRates, apply_gradient, mean_variances


def feedforward(model: GenerativeModel, inputs: np.ndarray) -> list[np.ndarray]:
    """Latents of the feed-forward pass from ``inputs`` (batch, d_L) at the top: list over
    levels 1 … L of (batch, d_l)."""
    return model.prior_means(len(inputs), top=inputs)


def predict(model: GenerativeModel, inputs: np.ndarray) -> np.ndarray:
    """The network's output ``ŷ`` (batch, d_0) for ``inputs`` (batch, d_L)."""
    return model.links[0].predict(feedforward(model, inputs)[0])


def accuracy(model: GenerativeModel, inputs: np.ndarray, labels: np.ndarray) -> float:
    """Share of ``inputs`` whose largest output is at their ``labels`` (integer classes)."""
    return float(np.mean(predict(model, inputs).argmax(axis=1) == labels))


def backprop_gradient(model: GenerativeModel, targets: np.ndarray,
                      inputs: np.ndarray) -> ParameterGradient:
    """``−∇_θ ½ Σ_n (t_n − ŷ_n)ᵀ Π_0 (t_n − ŷ_n)`` for the links' weights and biases (the
    covariance and top-prior entries are 0): backpropagation, summed over the batch."""
    z = feedforward(model, inputs)
    u = [link.preactivation(zl) for link, zl in zip(model.links, z)]
    fu = [link.nl.f(ul) for link, ul in zip(model.links, u)]
    deltas = [model.links[0].cov.apply_precision(targets - model.links[0].predict(z[0]))]
    for l in range(1, model.n_latent):
        deltas.append(model.links[l - 1].backward(u[l - 1], fu[l - 1], deltas[-1]))
    deltas.append(np.zeros_like(z[-1]))
    grad = model.parameter_gradient(targets, z, forward=Forward(z, u, fu, None, deltas))
    for g in grad.links:
        g.cov = np.zeros_like(g.cov)
    grad.top_mean, grad.top_cov = np.zeros_like(grad.top_mean), np.zeros_like(grad.top_cov)
    return grad


class BackpropLearner:
    """Trains the same network by backpropagation: one step of ``rates`` (weights and biases)
    per minibatch of targets, with the matching inputs."""

    def __init__(self, model: GenerativeModel, rates: LearningRates):
        self.model, self.rates = model, rates

    def set_model(self, model: GenerativeModel) -> None:
        self.model = model

    def describe(self) -> dict:
        return {"learner": "backprop", "rates": self.rates.to_json()}

    def epoch(self, batches: np.ndarray, seed: tuple[int, int] = (0, 0),
              tops: np.ndarray | None = None) -> list[dict]:
        """``batches`` (updates, batch, d_0) targets, ``tops`` (updates, batch, d_L) inputs."""
        records = []
        for k, (t, x) in enumerate(zip(batches, tops)):
            self.model = apply_gradient(self.model, backprop_gradient(self.model, t, x),
                                        self.rates, len(t))
            records.append({"update": k, "noise_variance": mean_variances(self.model)})
        return records
