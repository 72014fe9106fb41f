"""Elementwise link nonlinearities ``f`` and their derivatives.

Each entry gives ``f(u)`` and ``f'(u)`` as numpy functions and as brian2 expression strings
(for circuits whose dendritic input is computed by brian2 itself).  ``square`` is the link of
Bogacz (2017)'s worked example, ``g(v) = v**2``.
"""

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .checks import one_of


@dataclass(frozen=True)
class Nonlinearity:
    name: str
    f: Callable[[np.ndarray], np.ndarray]
    df: Callable[[np.ndarray], np.ndarray]
    f_expr: str      # brian2 expression in the dimensionless variable ``u``
    df_expr: str

    @property
    def is_identity(self):
        return self.name == "identity"


def _sigmoid(u):
    return 0.5 * (1.0 + np.tanh(0.5 * u))   # overflow-free logistic function


NONLINEARITIES = {
    n.name: n for n in [
        Nonlinearity("identity", lambda u: u, np.ones_like, "u", "1.0"),
        Nonlinearity("tanh", np.tanh, lambda u: 1.0 - np.tanh(u) ** 2,
                     "tanh(u)", "(1.0 - tanh(u)**2)"),
        Nonlinearity("sigmoid", _sigmoid, lambda u: _sigmoid(u) * (1.0 - _sigmoid(u)),
                     "1.0/(1.0 + exp(-u))", "(exp(-u)/(1.0 + exp(-u))**2)"),
        Nonlinearity("softplus", lambda u: np.logaddexp(0.0, u), _sigmoid,
                     "log(1.0 + exp(u))", "1.0/(1.0 + exp(-u))"),
        Nonlinearity("square", np.square, lambda u: 2.0 * u, "u**2", "(2.0*u)"),
    ]
}


def get(name, where="f"):
    """Look up a nonlinearity by name; ``where`` names the parameter in the error message."""
    one_of(name, where, NONLINEARITIES)
    return NONLINEARITIES[name]
