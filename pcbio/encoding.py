"""Encodings: how the activity of neurons codes model variables.

The encoding is the only place that converts between brian2 quantities (neural units) and the
dimensionless model variables of the VAE side.
"""

import brian2
import numpy as np


class RateEncoding:
    """Linear rate code ``r = r0 + κ z``: a unit's firing rate ``r`` (Hz) codes the model
    variable ``z`` (dimensionless) around a baseline ``r0`` with gain ``κ``.

    Parameters
    ----------
    baseline : brian2 quantity in Hz
    gain : brian2 quantity in Hz, non-zero
    """

    def __init__(self, baseline=0 * brian2.Hz, gain=10 * brian2.Hz):
        for name, value in (("baseline", baseline), ("gain", gain)):
            if not isinstance(value, brian2.Quantity) or not value.has_same_dimensions(brian2.Hz):
                raise TypeError(f"encoding {name} must be a rate with brian2 units (e.g. 10*Hz), "
                                f"got {value!r}")
            if not np.isfinite(float(value)):
                raise ValueError(f"encoding {name} must be finite, got {value!r}")
        if float(gain) == 0:
            raise ValueError("encoding gain must be non-zero")
        self.baseline = baseline
        self.gain = gain

    def encode(self, z):
        """Rates (Hz quantity) coding the model values ``z`` (array)."""
        return self.baseline + self.gain * np.asarray(z, dtype=float)

    def decode(self, r):
        """Model values from rates: ``r`` a Hz quantity, or a float array in Hz."""
        r = np.asarray(r / brian2.Hz if isinstance(r, brian2.Quantity) else r, dtype=float)
        return (r - float(self.baseline)) / float(self.gain)

    def namespace(self, suffix):
        """Constants ``r0_<suffix>``, ``gain_<suffix>`` used by :mod:`pcbio.neurons.rate`."""
        return {f"r0_{suffix}": self.baseline, f"gain_{suffix}": self.gain}

    def describe(self):
        return {"kind": "rate", "baseline_Hz": float(self.baseline), "gain_Hz": float(self.gain)}
