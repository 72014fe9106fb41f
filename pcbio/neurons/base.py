"""A neuron type: equations written once in model units, bound per population to an encoding,
input ports and constants (``docs/architecture.md`` §2).

Ports are *open summed inputs*: the neuron's equations use a port name (``I_in``, ``I_bu``, …)
as an identifier, and the circuit defines it as a constant plus one term per pathway that
delivers into it.  Lateral, dendritic or plastic pathways therefore plug into a neuron without
editing its equations.
"""

from dataclasses import dataclass, field

from brian2 import Equations
from brian2.utils.stringtools import word_substitute

from ..encoding import Encoding


@dataclass(frozen=True)
class NeuronModel:
    """One neuron type.

    Attributes
    ----------
    equations : str
        brian2 equations in model units (subexpressions; for spiking neurons also their own
        state).  They may use the ports and the ``constants`` as identifiers.
    model_var : str
        The model variable the neuron codes (``"z"``, ``"eps"``, …); the encoding defines it
        as a subexpression decoding the neuron's neural state.
    derivative : str or None
        Subexpression holding ``d model_var/dt`` (1/s): the neural state is integrated.
    value : str or None
        Expression (model units) the model variable follows instantaneously.  With neither
        ``derivative`` nor ``value`` the state is set from outside (an input population).
    ports : tuple of str
        Input ports (dimensionless, model units).
    outputs : tuple of str
        What pathways may read from this neuron (names defined by the equations).
    constants : dict
        Name → brian2 quantity (e.g. ``tau``); renamed per population.
    method : str
        brian2 integration method for the neural state.
    threshold, reset, refractory : spiking neurons only — the spike condition, what a spike does
        to the neuron's own state (the encoding adds its trace update), the refractory period.
        A spiking neuron's outputs are read out of the population by its encoding.
    params : tuple of str
        Per-unit constants (gains, biases, encoders, thresholds), set per population.
    one_spike_per_step : bool
        At most one neuron of the population (per data point) spikes in a time step: the one
        furthest above threshold — the discrete-time form of instantaneous lateral inhibition,
        which a spike-coding network needs.  The neuron's threshold must include
        ``winner > 0.5``; the network sets ``winner`` before each step's threshold test.
    """
    equations: str
    model_var: str
    derivative: str | None = None
    value: str | None = None
    ports: tuple = ()
    outputs: tuple = ()
    constants: dict = field(default_factory=dict)
    method: str = "euler"
    threshold: str | None = None
    reset: str = ""
    refractory: object = None
    params: tuple = ()
    one_spike_per_step: bool = False
    noise: str | None = None

    @property
    def spiking(self) -> bool:
        return self.threshold is not None

    @property
    def dynamic(self) -> bool:
        """True when the neuron's state is integrated in time."""
        return self.derivative is not None or self.spiking

    def output_source(self, output: str) -> tuple:
        """Where a reader outside brian2 (a matrix coupling) can take ``output`` from without a
        copy: ``("state",)`` when it is the decoded neural state (the state is an array —
        integrated or set from outside — and ``output`` is the model variable or a plain alias
        of it); ``("port", name)`` when the neuron is instantaneous with the model variable
        equal to a port's sum; ``("copy",)`` otherwise (the group must write it out); for a
        spiking neuron ``("decoded",)``: the encoding reads it out of the population."""
        if self.spiking:
            return ("decoded",)
        eqs = Equations(self.equations) if self.equations.strip() else Equations("")
        while output in eqs and eqs[output].expr is not None and eqs[output].expr.code.isidentifier():
            output = eqs[output].expr.code
        if output != self.model_var:
            return ("copy",)
        if self.value is None:
            return ("state",)
        return ("port", self.value) if self.value in self.ports else ("copy",)

    def bind(self, suffix: str, encoding: Encoding, port_terms: dict,
             extra: tuple = ()) -> tuple[Equations, dict]:
        """Equations and namespace of one population.

        ``suffix`` makes constant names unique in a network (``tau`` → ``tau_<suffix>``);
        ``port_terms`` maps each port to ``(name, tau)`` pairs, one per pathway delivering into
        it: a parameter written by the pathway (``tau`` None) or a synaptic current decaying with
        ``tau`` that the pathway's spikes increment; ``extra`` adds parameter names (e.g. the
        copies of outputs that a matrix coupling reads).
        """
        renames = {name: f"{name}_{suffix}" for name in self.constants}
        eqs = Equations(self.equations).substitute(**renames) if self.equations.strip() else Equations("")
        derivative = self.derivative
        if self.noise is not None:         # brian2 allows xi only in differential equations
            derivative = f"({derivative} + {word_substitute(self.noise, renames)})"
        eqs += encoding.equations(self.model_var, suffix, derivative=derivative, value=self.value)
        namespace = {**encoding.namespace(suffix),
                     **{renames[k]: v for k, v in self.constants.items()}}
        lines = [f"{name} : 1 (constant)" for name in self.params]
        for port in self.ports:
            terms = port_terms.get(port, [])
            lines.append(f"{port} = " + " + ".join([f"bias_{port}"] + [t for t, _ in terms]) + " : 1")
            lines.append(f"bias_{port} : 1 (constant)")
            for term, tau in terms:
                if tau is None:
                    lines.append(f"{term} : 1")
                else:
                    lines.append(f"d{term}/dt = -{term} / tau_{term} : 1")
                    namespace[f"tau_{term}"] = tau
        lines += [f"{name} : 1" for name in extra]
        if lines:
            eqs += Equations("\n".join(lines))
        return eqs, namespace
