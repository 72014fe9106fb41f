"""Elementwise link nonlinearities ``f`` and their derivatives.

Each entry gives ``f(u)`` and ``f'(u)`` twice: as numpy functions (the VAE side) and as brian2
expressions (circuits, whose neurons compute them in their own equations).  Both forms are
written to stay finite for every finite input — the logistic function through ``tanh``, softplus
as ``max(u, 0) + log(1 + e^{−|u|})`` — and a test compares them over a wide range, extreme
inputs included.  ``square`` is the link of Bogacz (2017)'s worked example, ``g(v) = v²``.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .checks import one_of


@dataclass(frozen=True)
class Nonlinearity:
    """``f`` and ``f'``: numpy functions, and brian2 expression templates in ``{u}``.

    ``f(u, out=None)`` writes into ``out`` when given (a forward pass's own array, reused at
    every step).  ``df_given(u, fu)`` is ``f'(u)`` given ``fu = f(u)`` already computed
    (``1 − fu²`` for tanh): a forward pass keeps ``f(u)`` and the backward pass reuses it.
    """
    name: str
    f: Callable[..., np.ndarray]
    df_given: Callable[[np.ndarray, np.ndarray], np.ndarray]
    f_template: str
    df_template: str

    @property
    def is_identity(self) -> bool:
        return self.name == "identity"

    def df(self, u: np.ndarray) -> np.ndarray:
        """``f'(u)``."""
        return self.df_given(u, self.f(u))

    def expression(self, var: str) -> str:
        """brian2 expression of ``f(var)``."""
        return self.f_template.format(u=var)

    def derivative_expression(self, var: str) -> str:
        """brian2 expression of ``f'(var)``."""
        return self.df_template.format(u=var)


def _identity(u, out=None):
    if out is None:
        return u
    np.copyto(out, u)
    return out


def _sigmoid(u, out=None):
    """The logistic function as ``½ (1 + tanh(u/2))``: overflow-free."""
    t = np.tanh(np.multiply(u, 0.5, out=out), out=out)
    t += 1.0
    t *= 0.5
    return t


NONLINEARITIES = {
    n.name: n for n in [
        Nonlinearity("identity", _identity, lambda u, fu: np.ones_like(u), "{u}", "1.0"),
        Nonlinearity("tanh", np.tanh, lambda u, fu: 1.0 - fu * fu,
                     "tanh({u})", "(1.0 - tanh({u})**2)"),
        Nonlinearity("sigmoid", _sigmoid, lambda u, fu: fu * (1.0 - fu),
                     "(0.5 * (1.0 + tanh(0.5 * {u})))", "(0.25 * (1.0 - tanh(0.5 * {u})**2))"),
        Nonlinearity("softplus", lambda u, out=None: np.logaddexp(0.0, u, out=out),
                     lambda u, fu: _sigmoid(u),
                     "(clip({u}, 0, inf) + log1p(exp(-abs({u}))))",
                     "(0.5 * (1.0 + tanh(0.5 * {u})))"),
        Nonlinearity("square", np.square, lambda u, fu: 2.0 * u, "({u})**2", "(2.0 * {u})"),
    ]
}


def get(name: str, where: str = "f") -> Nonlinearity:
    """Look up a nonlinearity by name; ``where`` names the parameter in the error message."""
    one_of(name, where, NONLINEARITIES)
    return NONLINEARITIES[name]
