"""Encodings: how the activity of neurons codes model variables.

An encoding is the only place that converts between neural quantities (brian2 units: Hz, mV,
spikes) and the dimensionless model variables of the VAE side — in both directions, both as
numpy functions (to set states and to decode recordings) and as the brian2 expressions that a
population's generated equations need (``docs/architecture.md`` §2).

Every encoding implements :class:`Encoding`; circuits never check the concrete class.
"""

from abc import ABC, abstractmethod

import brian2
import numpy as np
from brian2 import Equations


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


def _check_rate(value, name):
    if not isinstance(value, brian2.Quantity) or not value.has_same_dimensions(brian2.Hz):
        raise TypeError(f"encoding {name} must be a rate with brian2 units (e.g. 10*Hz), "
                        f"got {value!r}")
    if not np.isfinite(float(value)):
        raise ValueError(f"encoding {name} must be finite, got {value!r}")
    return value


class RateEncoding(Encoding):
    """Linear rate code ``r = r0 + κ z``: a unit's firing rate ``r`` (Hz) codes the model
    variable ``z`` (dimensionless) around a baseline ``r0`` with gain ``κ``.

    A linear code goes negative where ``z < −r0/κ``; choose the baseline to keep rates
    physiological (every circuit run reports the range each population used).

    Parameters
    ----------
    baseline : brian2 quantity in Hz (default 0 Hz)
    gain : brian2 quantity in Hz, non-zero (default 10 Hz)
    """

    variable = "r"
    unit = brian2.Hz
    runaway = 1e12

    def __init__(self, baseline=0 * brian2.Hz, gain=10 * brian2.Hz):
        self.baseline = _check_rate(baseline, "baseline")
        self.gain = _check_rate(gain, "gain")
        if float(gain) == 0:
            raise ValueError("encoding gain must be non-zero")

    def equations(self, model_var, suffix, derivative=None, value=None):
        if derivative is not None and value is not None:
            raise ValueError("give at most one of derivative or value")
        r0, gain = f"r0_{suffix}", f"gain_{suffix}"
        if derivative is not None:
            state = f"dr/dt = {gain} * {derivative} : Hz"
        else:
            state = "r : Hz" if value is None else f"r = {r0} + {gain} * ({value}) : Hz"
        return Equations(f"{state}\n{model_var} = (r - {r0}) / {gain} : 1")

    def namespace(self, suffix):
        return {f"r0_{suffix}": self.baseline, f"gain_{suffix}": self.gain}

    def encode(self, z):
        return float(self.baseline) + float(self.gain) * np.asarray(z, dtype=float)

    def decode(self, raw):
        r = np.asarray(raw / brian2.Hz if isinstance(raw, brian2.Quantity) else raw, dtype=float)
        return (r - float(self.baseline)) / float(self.gain)

    def describe(self):
        return {"kind": "rate", "baseline_Hz": float(self.baseline), "gain_Hz": float(self.gain)}
