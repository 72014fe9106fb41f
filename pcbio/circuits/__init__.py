"""Circuit kinds that compile a generative model into brian2 populations and pathways.

``build_circuit(model, kind, **params)`` is the one entry point.  Each kind lives in its own
module, declares its parameters, structure and applicable checks (:class:`Circuit`), and
registers itself; importing it here (one line) makes it available everywhere — ``simulate``, the
mapping layer and the command line.
"""

from __future__ import annotations

from ..checks import one_of
from ..model import GenerativeModel
from .base import CIRCUITS, Circuit, register
from .dendritic import DendriticCircuit
from .network import CircuitNetwork
from .rate import RateCircuit
from .spiking import SpikingCircuit


def build_circuit(model: GenerativeModel, kind: str = "rate", **params) -> Circuit:
    """A circuit of the given kind for ``model``; ``params`` are the kind's declared
    parameters (see ``CIRCUITS[kind].PARAMETERS``)."""
    one_of(kind, "circuit", CIRCUITS)
    return CIRCUITS[kind](model, **params)


__all__ = ["CIRCUITS", "Circuit", "CircuitNetwork", "DendriticCircuit", "RateCircuit", "SpikingCircuit",
           "build_circuit", "register"]
