"""Builders that compile a generative model into a brian2 circuit.

``build_circuit(model, "rate", **params)`` is the one entry point; later circuit kinds (spiking,
dendritic, lateral) register here and share :func:`pcbio.simulate.simulate`, the
:class:`pcbio.Trajectory` and :mod:`pcbio.mapping`.
"""

from ..checks import one_of
from .base import Circuit
from .rate import RateCircuit

CIRCUITS = {"rate": RateCircuit}


def build_circuit(model, kind="rate", **params):
    """A circuit of the given kind for ``model``; ``params`` go to the circuit's constructor."""
    one_of(kind, "circuit", CIRCUITS)
    return CIRCUITS[kind](model, **params)


__all__ = ["CIRCUITS", "Circuit", "RateCircuit", "build_circuit"]
