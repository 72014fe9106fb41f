"""Leaky integrate-and-fire neurons and the ensembles that represent model variables with them
(``docs/mathematics.md`` §8).

A LIF neuron in normalised units, ``τ_m dv/dt = J − v`` with threshold 1, reset 0 and an
absolute refractory period ``t_ref``, fires at the steady rate

    G(J) = 1 / (t_ref − τ_m log(1 − 1/J))   for J > 1,   0 otherwise.

An *ensemble* of N such neurons represents a variable x ∈ [−R, R]ᵏ (k = 1, or 2 for products):
neuron i receives ``J_i = gain_i ⟨e_i, x/R⟩ + bias_i`` with an encoder e_i (±1 in one dimension:
ON and OFF cells; a unit vector in two), and gain and bias set so that it starts firing at its
intercept c_i and reaches its maximal rate a_i at ⟨e_i, x/R⟩ = 1.  Any function f of x is read
out linearly from the filtered spike trains, ``f(x) ≈ Σ_i d_i s_i(t)``, with decoders d fitted by
regularised least squares to the tuning curves (Eliasmith & Anderson 2003, the Neural
Engineering Framework).  Defaults are physiological: τ_m = 20 ms and t_ref = 2 ms (cortical
pyramidal cells, Dayan & Abbott 2001 ch. 5; McCormick et al. 1985), maximal rates 40–80 Hz so
that most rates stay below 100 Hz.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from brian2 import Quantity, ms

from .base import NeuronModel

#: membrane time constant and refractory period defaults (see the module docstring)
TAU_MEMBRANE, REFRACTORY = 20 * ms, 2 * ms
#: maximal rates (Hz) and intercepts of the tuning curves are drawn from these ranges
MAX_RATES, INTERCEPTS = (40.0, 80.0), (-0.9, 0.9)
#: ridge regularisation of the decoders, relative to the largest rate (Nengo's default)
REGULARISATION = 0.1


def lif_rate(J: np.typing.ArrayLike, tau_m: float, t_ref: float) -> np.ndarray:
    """Steady firing rate (Hz) of a normalised LIF neuron with input J (threshold 1); times in
    seconds."""
    J = np.asarray(J, dtype=float)
    out = np.zeros_like(J)
    above = J > 1
    out[above] = 1.0 / (t_ref - tau_m * np.log1p(-1.0 / J[above]))
    return out


@dataclass
class Tuning:
    """N neurons' tuning: encoders (N, k), gains and biases (N,), in normalised input units."""
    encoders: np.ndarray
    gains: np.ndarray
    biases: np.ndarray
    tau_m: float
    t_ref: float

    @classmethod
    def random(cls, n: int, dims: int, seed: int, tau_m: float, t_ref: float) -> "Tuning":
        """Heterogeneous tuning: ±1 encoders in one dimension (half ON, half OFF), uniform unit
        vectors in two; maximal rates and intercepts from :data:`MAX_RATES` and
        :data:`INTERCEPTS`."""
        rng = np.random.default_rng(seed)
        if dims == 1:
            enc = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
        else:
            angle = rng.uniform(0, 2 * np.pi, n)
            enc = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        rates = rng.uniform(*MAX_RATES, n)
        intercepts = rng.uniform(*INTERCEPTS, n)
        j_max = 1.0 / (1.0 - np.exp((t_ref - 1.0 / rates) / tau_m))   # G(j_max) = max rate
        gains = (j_max - 1.0) / (1.0 - intercepts)
        return cls(enc, gains, 1.0 - gains * intercepts, tau_m, t_ref)

    def rates(self, points: np.ndarray) -> np.ndarray:
        """Steady rates (M, N) at normalised points (M, k)."""
        return lif_rate(points @ self.encoders.T * self.gains + self.biases, self.tau_m, self.t_ref)

    def decoders(self, points: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Least-squares decoders (N, m) reading ``targets`` (M, m) from the rates at ``points``
        (M, k), ridge-regularised against spike noise."""
        A = self.rates(points)
        sigma = REGULARISATION * A.max()
        gram = A.T @ A + len(points) * sigma ** 2 * np.eye(A.shape[1])
        return np.linalg.solve(gram, A.T @ targets)


def evaluation_points(dims: int, seed: int, count: int = 1000) -> np.ndarray:
    """Points (count, dims) where decoders are fitted: a regular grid on [−1, 1] in one
    dimension, uniform in the unit disk in two."""
    if dims == 1:
        return np.linspace(-1.0, 1.0, count)[:, None]
    rng = np.random.default_rng(seed)
    r, angle = np.sqrt(rng.uniform(0, 1, count)), rng.uniform(0, 2 * np.pi, count)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)


def ensemble_neuron(dims: int, radius: float, tau_m: Quantity, t_ref: Quantity) -> NeuronModel:
    """A LIF neuron of an ensemble representing ``dims`` (1 or 2) variables scaled by ``radius``
    (one per dimension): ``τ_m dv/dt = J − v``, ``J = bias + gain ⟨e, x/R⟩`` with x arriving
    through the port ``I_in`` (one dimension) or ``I_u``, ``I_b`` (two).  Per-unit constants:
    ``gain``, ``bias``, ``enc0`` (, ``enc1``).  Outputs (read out by the encoding's decoders):
    ``x`` in one dimension; ``fu`` and ``back`` for the products of a nonlinear link."""
    radius = np.atleast_1d(radius)
    if dims == 1:
        drive, ports, outputs, params = "enc0 * I_in / radius0", ("I_in",), ("x",), ("enc0",)
    else:
        drive = "enc0 * I_u / radius0 + enc1 * I_b / radius1"
        ports, outputs, params = ("I_u", "I_b"), ("fu", "back"), ("enc0", "enc1")
    return NeuronModel(f"""
dv/dt = (J - v) / tau_m : 1 (unless refractory)
J = bias + gain * ({drive}) : 1
""", model_var="x", ports=ports, outputs=outputs,
        constants={"tau_m": tau_m, **{f"radius{k}": float(r) for k, r in enumerate(radius)}},
        threshold="v > 1", reset="v = 0", refractory=t_ref, params=("gain", "bias") + params)


def spike_coding_neuron(tau_v: Quantity, t_ref: Quantity) -> NeuronModel:
    """A neuron of a spike-coding network (Boerlin, Machens & Denève 2013): its voltage is its
    share of the coding error, ``dV/dt = −V/τ_V + I_in`` (``I_in`` in model units per second:
    the input and slow recurrent terms); it spikes above its threshold ``vth`` when it is the
    population's most excited neuron in that step (one spike per step: the greedy rule of the
    spike-coding network in discrete time), and fast recurrent jumps (not a reset) pull every
    voltage down by what a spike explained; its own voltage drops by ``vcost`` more (the
    quadratic cost on rates)."""
    return NeuronModel("dv/dt = -v / tau_v + I_in * Hz : 1 (unless refractory)\nwinner : 1",
                       model_var="x", ports=("I_in",), outputs=("x",),
                       constants={"tau_v": tau_v}, threshold="v > vth and winner > 0.5",
                       reset="v -= vcost", refractory=t_ref, params=("vth", "vcost"),
                       one_spike_per_step=True)
