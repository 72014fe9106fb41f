"""Adam (Kingma & Ba 2015) for the weights of learned inference and for model parameters given
as a :class:`~pcbio.model.ParameterGradient` — ascent on an objective, with per-weight step
sizes that make one learning rate serve weights of very different scales."""

from dataclasses import fields

import numpy as np

from ..model import LinkGradient, ParameterGradient


class Adam:
    """Adam ascent on a dict of arrays.  ``step(params, grads)`` returns the new parameters;
    ``state()``/``Adam.from_state`` keep the moment estimates for an exact resume."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m, self.v, self.t = {}, {}, 0

    def step(self, params: dict, grads: dict) -> dict:
        self.t += 1
        out = {}
        for name, value in params.items():
            g = grads[name]
            m = self.m[name] = self.beta1 * self.m.get(name, 0.0) + (1 - self.beta1) * g
            v = self.v[name] = self.beta2 * self.v.get(name, 0.0) + (1 - self.beta2) * g * g
            m_hat, v_hat = m / (1 - self.beta1 ** self.t), v / (1 - self.beta2 ** self.t)
            out[name] = value + self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
        return out

    def state(self) -> dict:
        return {"lr": self.lr, "t": self.t, "m": self.m, "v": self.v}

    @classmethod
    def from_state(cls, state: dict) -> "Adam":
        adam = cls(state["lr"])
        adam.t = state["t"]
        adam.m = {k: np.asarray(v, dtype=float) for k, v in state["m"].items()}
        adam.v = {k: np.asarray(v, dtype=float) for k, v in state["v"].items()}
        return adam


def gradient_dict(grad: ParameterGradient) -> dict:
    """A model's parameter gradient as a flat dict (``"links.0.weights"``, …, ``"top_mean"``)."""
    out = {"top_mean": grad.top_mean, "top_cov": grad.top_cov}
    for l, g in enumerate(grad.links):
        for f in fields(LinkGradient):
            value = getattr(g, f.name)
            if value is not None:
                out[f"links.{l}.{f.name}"] = np.asarray(value, dtype=float)
    return out


def gradient_from_dict(values: dict, n_links: int) -> ParameterGradient:
    """The inverse of :func:`gradient_dict`."""
    links = [LinkGradient(**{f.name: values.get(f"links.{l}.{f.name}") for f in fields(LinkGradient)})
             for l in range(n_links)]
    return ParameterGradient(links=links, top_mean=values["top_mean"], top_cov=values["top_cov"])
