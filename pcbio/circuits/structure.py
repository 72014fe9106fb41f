"""What a circuit is made of: declared populations and the pathways between them, and the order
in which, within one time step, pathways deliver and instantaneous neurons respond
(``docs/architecture.md`` §1–3).

A circuit kind declares its structure; :class:`pcbio.circuits.network.CircuitNetwork` turns it
into brian2 objects.  Nothing here depends on a particular circuit kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from brian2 import Equations

from ..encoding import Encoding
from ..neurons.base import NeuronModel


@dataclass
class Population:
    """A group of neurons of one type that codes one model quantity.

    Attributes
    ----------
    name : str
        Unique in the circuit; also the brian2 group's name (e.g. ``"value_1"``).
    role : str
        What it codes: ``"data"``, ``"value"``, ``"error"``, ``"interneuron"``, ``"hidden"``,
        later ``"soma"``, ``"dendrite"``, ``"lateral"``, …  Decoded read-outs are grouped by role.
    level : int
        Model level (0 = data).
    size : int
        Units (neurons) per data point; the network holds ``batch × size`` units (unit
        ``b·size + k`` is unit k for data point b).
    neuron : NeuronModel
    encoding : Encoding
    bias : dict
        Port name → constant input (dims,) in model units, added to that port's sum.
    dims : int
        Model variables the population codes (default ``size``: one unit per variable).
    params : dict
        Per-unit constants of the neuron (``NeuronModel.params``): name → (size,).
    input_map : None, ``("repeat", n)`` or a (size, dims) matrix
        How an input in model variables reaches the units: one unit per variable (None), each
        variable's n units alike (``("repeat", n)``), or a projection (e.g. a spike-coding
        network's decoding weights, transposed).
    """
    name: str
    role: str
    level: int
    size: int
    neuron: NeuronModel
    encoding: Encoding
    bias: dict = field(default_factory=dict)
    dims: int | None = None
    params: dict = field(default_factory=dict)
    input_map: object = None

    def __post_init__(self):
        if self.dims is None:
            self.dims = self.size

    def port_term(self, pathway_name: str) -> str:
        """The variable a pathway delivers into."""
        return f"in_{pathway_name}"

    def spread(self, values: np.ndarray) -> np.ndarray:
        """Per-unit input (…, size) from an input in model variables (…, dims)."""
        if self.input_map is None:
            return values
        if isinstance(self.input_map, tuple):
            return np.repeat(values, self.input_map[1], axis=-1)
        return values @ self.input_map.T

    def spread_matrix(self) -> np.ndarray:
        """:meth:`spread` as a (size, dims) matrix."""
        return self.spread(np.eye(self.dims)).T


@dataclass
class Pathway:
    """Synaptic transmission from one population's output to another population.

    ``weights`` act on model variables: a (post dims, pre dims) matrix — dense transmission, a
    matrix product — or a (dims,) vector for one-to-one connections.  Zero entries are absent
    synapses.  Every data point of a batch gets its own copy (block-diagonal connectivity).

    ``kind``: ``"continuous"`` — the presynaptic output, read out of the population, is delivered
    into ``port`` every step; for spiking presynaptic neurons that read-out is their filtered
    spike trains, which is what exponential synapses with the encoding's time constant deliver;
    ``"jump"`` — each presynaptic spike adds its (weighted, read-out) contribution to the
    postsynaptic state variable ``port`` at once (fast inhibition in a spike-coding network).

    ``density`` < 1 thins the per-pair synapses a spiking source's pathway becomes under the
    Synapses coupling: each pair is kept with that probability (seeded by the pathway's name)
    and its weight divided by it — the same mean transmission through fewer synapses, with more
    noise.  The matrix coupling transmits read-outs and ignores it.
    """
    name: str
    pre: str
    output: str
    post: str
    port: str
    weights: np.ndarray
    kind: str = "continuous"
    density: float = 1.0

    @property
    def one_to_one(self) -> bool:
        return np.ndim(self.weights) == 1

    def dense_matrix(self) -> np.ndarray:
        """The weights as a (post, pre) matrix."""
        return np.diag(self.weights) if self.one_to_one else self.weights


def check_structure(populations: list[Population], pathways: list[Pathway]) -> None:
    """Raise ValueError for inconsistent declarations (unknown names, wrong shapes)."""
    pops = {p.name: p for p in populations}
    if len(pops) != len(populations):
        raise ValueError("population names must be unique")
    for pw in pathways:
        for end in (pw.pre, pw.post):
            if end not in pops:
                raise ValueError(f"pathway {pw.name}: unknown population {end!r}")
        pre, post = pops[pw.pre], pops[pw.post]
        if pw.output not in pre.neuron.outputs:
            raise ValueError(f"pathway {pw.name}: {pre.name} has no output {pw.output!r} "
                             f"(outputs: {pre.neuron.outputs})")
        if pw.kind == "jump" and not pre.neuron.spiking:
            raise ValueError(f"pathway {pw.name}: a jump needs a spiking source")
        if pw.kind != "jump" and pw.port not in post.neuron.ports:
            raise ValueError(f"pathway {pw.name}: {post.name} has no port {pw.port!r} "
                             f"(ports: {post.neuron.ports})")
        want = (post.dims,) if pw.one_to_one else (post.dims, pre.dims)
        if pw.one_to_one and pre.dims != post.dims:
            raise ValueError(f"pathway {pw.name}: one-to-one needs equal sizes")
        if np.shape(pw.weights) != want:
            raise ValueError(f"pathway {pw.name}: weights have shape {np.shape(pw.weights)}, "
                             f"expected {want}")


def _depends_on_ports(pop: Population, name: str) -> set:
    """The ports that the variable ``name`` of ``pop`` depends on within one time step
    (through subexpressions; integrated state variables depend on nothing within a step, and
    a spiking population's read-out is of its filtered spike trains, which are state)."""
    if pop.neuron.spiking:
        return set()
    eqs = Equations(pop.neuron.equations) if pop.neuron.equations.strip() else Equations("")
    eqs += pop.encoding.equations(pop.neuron.model_var, "s", derivative=pop.neuron.derivative,
                                  value=pop.neuron.value)
    ports = set(pop.neuron.ports)
    seen, found, todo = set(), set(), [name]
    while todo:
        var = todo.pop()
        if var in seen:
            continue
        seen.add(var)
        if var in ports:
            found.add(var)
        elif var in eqs and eqs[var].type == "subexpression":
            todo += list(eqs[var].identifiers)
    return found


def schedule(populations: list[Population],
             pathways: list[Pathway]) -> tuple[dict, dict]:
    """Stages within one time step: ``(output_stage, pathway_stage)``.

    ``output_stage[(pop, output)]``: 0 for outputs that depend on integrated state only; one more
    than the latest pathway feeding a port the output depends on.  ``pathway_stage[name]``: the
    stage of the output it reads.  A pathway of stage s delivers after every output of stage s is
    known and before any output of stage s + 1 is computed.  Raises ValueError for an
    algebraic loop (instantaneous neurons feeding each other within one step).
    """
    pops = {p.name: p for p in populations}
    deps = {(p.name, out): _depends_on_ports(p, out) for p in populations for out in p.neuron.outputs}
    into = {}
    for pw in pathways:
        if pw.kind != "jump":         # jumps act after the spikes of a step, not within it
            into.setdefault((pw.post, pw.port), []).append(pw)
    out_stage = {key: 0 for key in deps}
    for _ in range(len(out_stage) + 1):
        changed = False
        for (pop, out), ports in deps.items():
            stage = max([0] + [out_stage[(pw.pre, pw.output)] + 1
                               for port in ports for pw in into.get((pop, port), [])])
            if stage != out_stage[(pop, out)]:
                out_stage[(pop, out)], changed = stage, True
        if not changed:
            return out_stage, {pw.name: out_stage[(pw.pre, pw.output)] for pw in pathways}
    loop = sorted({pop for (pop, _), s in out_stage.items() if s >= len(out_stage)})
    raise ValueError(f"algebraic loop: instantaneous populations {loop or sorted(pops)} feed "
                     "each other within one time step; give one of them dynamics")
