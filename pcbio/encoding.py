"""Encodings: how the activity of neurons codes model variables.

An encoding is the only place that converts between neural quantities (brian2 units: Hz, mV,
spikes) and the dimensionless model variables of the VAE side — in both directions, both as
numpy functions (to set states and to decode recordings) and as the brian2 expressions that a
population's generated equations need (``docs/architecture.md`` §2).

Every encoding implements :class:`Encoding`; circuits never check the concrete class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import brian2
import numpy as np
from brian2 import Equations
from scipy.optimize import nnls


class Encoding(ABC):
    """How one population's neural state codes a model variable.

    Attributes
    ----------
    variable : str
        Name of the neural state variable in the population's equations (e.g. ``"r"``).
    unit : brian2 unit of that variable (e.g. ``Hz``).
    runaway : float
        Neural values (SI units) beyond which a simulation counts as diverged.
    """

    variable: str
    unit: brian2.Unit
    runaway: float

    @abstractmethod
    def equations(self, model_var: str, suffix: str, derivative: str | None = None,
                  value: str | None = None) -> Equations:
        """Equations tying the neural variable to the model variable ``model_var``.

        At most one of ``derivative`` (the name of a subexpression holding ``d model_var/dt``
        in 1/s: the neural variable is integrated) or ``value`` (an expression in model units:
        the neural variable follows it instantaneously); with neither, the neural variable is a
        parameter set from outside (an input population).  Constants are named with ``suffix``
        (see :meth:`namespace`).  The equations always define ``model_var`` as a subexpression
        decoding the neural variable.
        """

    @abstractmethod
    def namespace(self, suffix: str) -> dict:
        """The constants used by :meth:`equations`, as brian2 quantities."""

    @abstractmethod
    def encode(self, z: np.ndarray) -> np.ndarray:
        """Neural values (plain floats in the SI unit of :attr:`unit`) coding model values ``z``."""

    @abstractmethod
    def decode(self, raw: np.ndarray) -> np.ndarray:
        """Model values from recorded neural values (plain floats in SI units, or a quantity)."""

    @abstractmethod
    def describe(self) -> dict:
        """Parameters as plain JSON."""

    def derivative(self, values: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Estimate ``d z/dt`` (1/s) from decoded values (T, …) recorded at times ``t`` (T,) s,
        for populations whose derivative is not a state equation: central differences (one-sided
        at the ends).  Encodings whose decoder filters (with a delay) refine this."""
        if len(t) < 2:
            return np.zeros_like(values)
        return np.gradient(values, t, axis=0)


def _check_quantity(value, name, unit, noun, example):
    if not isinstance(value, brian2.Quantity) or not value.has_same_dimensions(unit):
        raise TypeError(f"encoding {name} must be a {noun} with brian2 units (e.g. {example}), "
                        f"got {value!r}")
    if not np.isfinite(float(value)):
        raise ValueError(f"encoding {name} must be finite, got {value!r}")
    return value


class LinearEncoding(Encoding):
    """Linear code ``n = n0 + κ z``: a neural variable ``n`` codes the model variable ``z``
    (dimensionless) around a baseline ``n0`` with gain ``κ``.  Subclasses fix the neural
    variable and its unit (a firing rate, a membrane potential)."""

    #: the unit in brian2 equations, its name in results files (``"Hz"``, ``"mV"``), that unit's
    #: size in SI units, and what the neural variable is (for error messages)
    eq_unit: str
    unit_name: str
    unit_scale: float
    noun: str

    def __init__(self, baseline, gain):
        example = f"1*{self.unit_name}"
        self.baseline = _check_quantity(baseline, "baseline", self.unit, self.noun, example)
        self.gain = _check_quantity(gain, "gain", self.unit, self.noun, example)
        if float(gain) == 0:
            raise ValueError("encoding gain must be non-zero")
        self._n0, self._gain = float(baseline), float(gain)     # plain floats: decode is hot

    def equations(self, model_var: str, suffix: str, derivative: str | None = None,
                  value: str | None = None) -> Equations:
        if derivative is not None and value is not None:
            raise ValueError("give at most one of derivative or value")
        n, unit = self.variable, self.eq_unit
        n0, gain = f"{n}0_{suffix}", f"gain_{suffix}"
        if derivative is not None:
            state = f"d{n}/dt = {gain} * {derivative} : {unit}"
        else:
            state = f"{n} : {unit}" if value is None else f"{n} = {n0} + {gain} * ({value}) : {unit}"
        return Equations(f"{state}\n{model_var} = ({n} - {n0}) / {gain} : 1")

    def namespace(self, suffix: str) -> dict:
        return {f"{self.variable}0_{suffix}": self.baseline, f"gain_{suffix}": self.gain}

    def encode(self, z: np.ndarray) -> np.ndarray:
        return self._n0 + self._gain * np.asarray(z, dtype=float)

    def decode(self, raw: np.ndarray) -> np.ndarray:
        n = np.asarray(raw / self.unit if isinstance(raw, brian2.Quantity) else raw, dtype=float)
        return (n - self._n0) / self._gain

    def describe(self) -> dict:
        scale = self.unit_scale
        return {"kind": self.code, f"baseline_{self.unit_name}": self._n0 / scale,
                f"gain_{self.unit_name}": self._gain / scale}


class RateEncoding(LinearEncoding):
    """Linear rate code ``r = r0 + κ z``: a unit's firing rate ``r`` (Hz) codes the model
    variable ``z`` (dimensionless) around a baseline ``r0`` with gain ``κ``.

    A linear code goes negative where ``z < −r0/κ``; choose the baseline to keep rates
    physiological (every circuit run reports the range each population used).

    Parameters
    ----------
    baseline : brian2 quantity in Hz (default 0 Hz)
    gain : brian2 quantity in Hz, non-zero (default 10 Hz)
    """

    variable, unit, eq_unit, code = "r", brian2.Hz, "Hz", "rate"
    unit_name, unit_scale, noun = "Hz", 1.0, "rate"
    runaway = 1e12

    def __init__(self, baseline=0 * brian2.Hz, gain=10 * brian2.Hz):
        super().__init__(baseline, gain)


class VoltageEncoding(LinearEncoding):
    """Membrane-potential code ``v = E + κ z`` of a compartment (soma, dendrite, branch): its
    potential ``v`` codes the model variable ``z`` as a deviation from the resting potential
    ``E`` with gain ``κ`` (``docs/mathematics.md`` §12).

    Parameters
    ----------
    baseline : brian2 quantity in volt (default −70 mV, the resting potential of Urbanczik &
        Senn 2014)
    gain : brian2 quantity in volt, non-zero (default 1 mV per model unit)
    """

    variable, unit, eq_unit, code = "v", brian2.volt, "volt", "voltage"
    unit_name, unit_scale, noun = "mV", 1e-3, "membrane potential"
    runaway = 1e3       # volt: a membrane potential beyond a kilovolt has diverged

    def __init__(self, baseline=-70 * brian2.mV, gain=1 * brian2.mV):
        super().__init__(baseline, gain)


class SpikeTrainEncoding(Encoding):
    """Model values read out linearly from filtered spike trains.

    Every neuron keeps a synaptic trace ``s`` (Hz): ``ds/dt = −s/τ_s``, ``s += 1/τ_s`` at each of
    its spikes, so ``s`` is its spike train filtered by an exponential synapse (a firing rate
    estimate).  A population's outputs are linear read-outs of the traces (:meth:`decode`); the
    same traces, weighted, are what a downstream synapse with time constant τ_s delivers.
    Subclasses define the read-out weights.
    """

    variable = "s"
    unit = brian2.Hz
    runaway = 1e4        # Hz: no trace can exceed ~1/t_ref for long; beyond this it has diverged

    def __init__(self, tau_synapse):
        self.tau_synapse = tau_synapse

    def equations(self, model_var: str, suffix: str, derivative: str | None = None,
                  value: str | None = None) -> Equations:
        return Equations(f"ds/dt = -s / tau_s_{suffix} : Hz")

    def spike_code(self, suffix: str) -> str:
        """What a spike adds to the neuron's trace."""
        return f"s += 1 / tau_s_{suffix}"

    def namespace(self, suffix: str) -> dict:
        return {f"tau_s_{suffix}": self.tau_synapse}

    @abstractmethod
    def decode(self, raw: np.ndarray, output: str | None = None) -> np.ndarray:
        """Output ``output`` (default: the represented variable) from traces (…, units) in Hz."""


class EnsembleEncoding(SpikeTrainEncoding):
    """Population code: each of ``n_vars`` variables is carried by its own ensemble of N LIF
    neurons with the same heterogeneous tuning (:class:`pcbio.neurons.lif.Tuning`), representing
    values in [−radius, radius] (``docs/mathematics.md`` §8).

    ``decoders``: output name → (N,) weights reading that output (model units) from one
    ensemble's traces; ``radius``: the scale of the represented values (per represented dimension).
    """

    def __init__(self, tuning, decoders: dict, radius, tau_synapse, default_output: str = "x"):
        super().__init__(tau_synapse)
        self.tuning, self.decoders = tuning, decoders
        self.radius = np.atleast_1d(np.asarray(radius, dtype=float))
        self.n = len(tuning.gains)
        self.default_output = default_output

    def encode(self, z: np.ndarray) -> np.ndarray:
        """Steady rates (Hz) of each ensemble's neurons representing ``z`` (…, n_vars) (the
        first represented dimension for two-dimensional ensembles; the others at 0)."""
        z = np.asarray(z, dtype=float)
        points = np.zeros(z.shape + (self.tuning.encoders.shape[1],))
        points[..., 0] = z / self.radius[0]
        rates = self.tuning.rates(points.reshape(-1, points.shape[-1]))
        return rates.reshape(z.shape[:-1] + (z.shape[-1] * self.n,))

    def decode(self, raw: np.ndarray, output: str | None = None) -> np.ndarray:
        raw = np.asarray(raw / brian2.Hz if isinstance(raw, brian2.Quantity) else raw, dtype=float)
        blocks = raw.reshape(raw.shape[:-1] + (-1, self.n))
        return blocks @ self.decoders[output or self.default_output]

    def describe(self) -> dict:
        return {"kind": "ensemble", "neurons_per_variable": self.n,
                "tau_synapse_ms": float(self.tau_synapse / brian2.ms),
                "radius": self.radius.tolist(), "outputs": sorted(self.decoders)}


class SpikeCodingEncoding(SpikeTrainEncoding):
    """Spike-coding network read-out (Boerlin, Machens & Denève 2013): ``x̂ = D s`` with one
    decoding matrix over all the population's neurons (units × variables)."""

    def __init__(self, decoders: np.ndarray, tau_synapse):
        super().__init__(tau_synapse)
        self.decoders = decoders

    def encode(self, z: np.ndarray) -> np.ndarray:
        """Non-negative traces (rates, Hz) whose read-out is ``z`` (…, variables): non-negative
        least squares per data point, with a small ridge so that the activity is shared among
        the neurons facing ``z`` rather than piled on a few (a starting state)."""
        z = np.asarray(z, dtype=float)
        flat = z.reshape(-1, z.shape[-1])
        D = self.decoders
        ridge = np.sqrt(1e-2 * np.mean(np.sum(D * D, axis=1)))
        system = np.vstack([D.T, ridge * np.eye(len(D))])
        s = np.stack([nnls(system, np.concatenate([row, np.zeros(len(D))]))[0] for row in flat])
        return s.reshape(z.shape[:-1] + (D.shape[0],))

    def decode(self, raw: np.ndarray, output: str | None = None) -> np.ndarray:
        raw = np.asarray(raw / brian2.Hz if isinstance(raw, brian2.Quantity) else raw, dtype=float)
        return raw @ self.decoders

    def describe(self) -> dict:
        return {"kind": "spike_coding", "units": self.decoders.shape[0],
                "variables": self.decoders.shape[1],
                "tau_synapse_ms": float(self.tau_synapse / brian2.ms)}
