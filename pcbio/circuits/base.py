"""The contract every circuit kind implements, and the registry of kinds
(``docs/architecture.md`` §1).

A circuit kind is a subclass of :class:`Circuit` in its own module that declares

* ``kind`` and ``PARAMETERS`` (:class:`~pcbio.circuits.parameters.Parameter`: its options, also on
  the command line),
* :meth:`Circuit.structure`: its populations and pathways,
* :meth:`Circuit.checks`: which comparisons of the mapping layer apply to it, and why the others
  do not,

and registers itself with :func:`register`.  Building the brian2 network
(:class:`~pcbio.circuits.network.CircuitNetwork`), running it (:func:`pcbio.simulate.simulate`),
decoding into a :class:`~pcbio.trajectory.Trajectory` and mapping are shared by every kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
from brian2 import Quantity

from ..inference import neg_hessian
from ..model import GenerativeModel
from ..trajectory import CircuitRunInfo, Trajectory
from .parameters import Parameter, resolve
from .structure import Pathway, Population

#: population roles decoded into ``Trajectory.compartments`` (dendritic potentials)
COMPARTMENT_ROLES = ("basal", "apical", "branch")

#: circuit kind name -> class; filled by :func:`register`
CIRCUITS: dict = {}


def gradient_flow_limit(model: GenerativeModel, tau: Quantity, x: np.ndarray, z: list) -> tuple:
    """The Euler limit of value units following ``τ dz/dt = ∇_z log p(x, z)`` (an entry of
    :meth:`Circuit.euler_limits`): ``λ`` is the largest curvature of log p at data ``x``
    (batch, d_0) and state ``z``; for linear models the same for every data point."""
    x = model.model_space(x)[0]     # behind a front end the hierarchy sees the flow's y
    if model.is_linear:      # H is the same for every data point: one eigensolve suffices
        x, z = x[:1], [zl[:1] for zl in z]
    lam = np.abs(np.linalg.eigvalsh(neg_hessian(model, x, z))).max()
    return ("tau", tau, lam, "the largest curvature of log p(x, z)")


def register(cls: type[Circuit]) -> type[Circuit]:
    """Class decorator: make a circuit kind available to ``build_circuit`` and the CLI."""
    CIRCUITS[cls.kind] = cls
    return cls


class Circuit(ABC):
    """A neural realisation of ``model``'s inference, not yet a brian2 network.

    Parameters: ``model`` and the kind's declared ``PARAMETERS`` as keyword arguments (checked;
    an unknown name is an error).  Attributes: ``model``, ``params`` (name → checked value).
    """

    kind: ClassVar[str] = "circuit"
    description: ClassVar[str] = ""
    PARAMETERS: ClassVar[tuple[Parameter, ...]] = ()
    #: parameter sets that change the circuit's structure; the contract tests run each
    VARIANTS: ClassVar[tuple[dict, ...]] = ({},)

    def __init__(self, model: GenerativeModel, **params):
        if not isinstance(model, GenerativeModel):
            raise TypeError(f"model must be a pcbio GenerativeModel, got {type(model).__name__}")
        self.model = model
        self.params = resolve(self.PARAMETERS, params, self.kind)
        self._structure = None

    # -- what a kind declares -------------------------------------------------------------------
    @abstractmethod
    def build_structure(self) -> tuple[list[Population], list[Pathway]]:
        """The circuit's populations and pathways (per data point)."""

    @abstractmethod
    def checks(self) -> dict[str, str]:
        """Comparisons of :mod:`pcbio.mapping` that apply, each with the exactness statement it
        tests."""

    def skipped_checks(self) -> dict[str, str]:
        """Why each comparison this kind leaves out does not apply (name → reason)."""
        return {}

    @property
    def tau(self) -> Quantity | None:
        """The time constant τ of the value units' gradient flow ``τ dz/dt = ∇_z log p`` (a
        brian2 time), or None when the circuit does not follow it."""
        return None

    def euler_limits(self, x: np.ndarray, z: list) -> list:
        """``[(name, τ, λ, what), …]``: explicit Euler with step dt is stable only if
        ``dt·λ/τ < 2`` for each entry, at data ``x`` (batch, d_0) and latent state ``z``."""
        return []

    def lag_limits(self, x: np.ndarray, z: list) -> list:
        """``[(τ, λ, lag, what), …]``: feedback that reaches the value units through synapses
        with a total time constant ``lag`` is stable only if ``λ·lag/τ < 1`` (a delayed gradient
        flow ``τ dz/dt = −λ z(t − lag)`` oscillates and grows beyond that)."""
        return []

    def check_coupling(self, coupling: str) -> None:
        """Raise ValueError if this circuit cannot use ``coupling``."""

    def estimate(self, traj: Trajectory) -> tuple[list, dict]:
        """The circuit's latent estimates from a run (list of (batch, d_l)) and how they were
        read (JSON-ready): the final state by default."""
        return traj.final_means(), {}

    # -- shared ---------------------------------------------------------------------------------
    def set_model(self, model: GenerativeModel) -> None:
        """New parameters for the same structure (learning); the structure is declared anew
        when next asked for."""
        self.model, self._structure = model, None

    def structure(self) -> tuple[list[Population], list[Pathway]]:
        """:meth:`build_structure`, computed once."""
        if self._structure is None:
            self._structure = self.build_structure()
        return self._structure

    def describe(self) -> dict:
        """Kind and parameters as plain JSON (times in ms, capacitances in pF)."""
        return {"circuit": self.kind,
                **dict(p.to_json(self.params[p.name]) for p in self.PARAMETERS)}

    def populations(self, role: str | None = None) -> list[Population]:
        """Populations (with ``role``), in level order."""
        pops = [p for p in self.structure()[0] if role is None or p.role == role]
        return sorted(pops, key=lambda p: p.level)

    def initial_values(self, init: list, batch: int) -> dict:
        """Model values every integrated population starts from: value units at ``init`` (list
        of (batch, d_l)), everything else at 0.  Returns name → (batch, size)."""
        return {p.name: (init[p.level - 1] if p.role == "value" else np.zeros((batch, p.dims)))
                for p in self.populations()}

    def trajectory(self, recordings: dict, info: CircuitRunInfo) -> Trajectory:
        """Decode recordings (see :meth:`CircuitNetwork.recordings`) through each population's
        encoding: value units → latent means, error units → ε, the value units' derivative →
        dz/dt (recorded where it is a state equation, else estimated by the encoding), lateral
        (front-end) units → the normalized data, dendritic compartments → their potentials in
        model units; raw neural values are kept per population."""
        def decoded(role):
            pops = self.populations(role)
            return [p.encoding.decode(recordings[p.name][p.encoding.variable]) for p in pops] or None
        t, means = recordings["t"], decoded("value")
        dendrites = {p.name: p.encoding.decode(recordings[p.name][p.encoding.variable])
                     for p in self.populations() if p.role in COMPARTMENT_ROLES}
        dzdt = [recordings[p.name][p.neuron.derivative] if p.neuron.derivative
                else p.encoding.derivative(m, t)
                for p, m in zip(self.populations("value"), means or [])] or None
        raw = {p.name: recordings[p.name][p.encoding.variable] for p in self.populations()}
        info.activity_range = {name: [float(a.min()), float(a.max())] for name, a in raw.items()}
        info.raw_units = {p.name: str(p.encoding.unit) for p in self.populations()}
        return Trajectory(t=t, time_unit="s", means=means, errors=decoded("error"), dzdt=dzdt,
                          info=info, raw=raw, spikes=recordings.get("spikes", {}),
                          normalized=decoded("lateral"), compartments=dendrites)

    def __repr__(self):
        return f"{type(self).__name__}({self.model.name!r}, {self.describe()})"
