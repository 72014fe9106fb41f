"""Pyramidal cells with a soma, a basal and an apical dendrite (``docs/mathematics.md`` §12).

Two things live here:

* :class:`PyramidalCell` — the biophysical cell in SI units (Urbanczik & Senn 2014, Neuron 81:521;
  Sacramento, Ponte Costa, Bengio & Senn 2018, NeurIPS): three compartments, each with its own
  potential, leak and dendro-somatic coupling conductance, in two forms — ``"compartmental"``
  (every potential integrated; stiff when the coupling is strong) and ``"instant"`` (the
  dendritic potentials follow their input at once, Sacramento's form, no stiffness) — with the
  closed forms the simulation is checked against (steady state, time constants, attenuation)
  and the explicit-integration stability condition, checked before a run;
  :func:`two_layer_cells` compiles a one-hidden-layer MLP into such cells whose apical branches
  are the hidden units (Poirazi, Brannon & Mel 2003, Neuron 37:989).
* the compartments of the ``dendritic`` predictive-coding circuit as neuron types in model units
  (:func:`dendrite`, :func:`interneuron`); the soma is the rate circuit's value unit (with a
  gain port when it runs a learned update) and a branch its MLP hidden unit
  (:mod:`pcbio.neurons.rate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import brian2
import numpy as np
from brian2 import mV, ms, nS, pF

from .base import NeuronModel
from .rate import relay_unit

if TYPE_CHECKING:
    from ..model import Link

#: explicit methods and the largest stable ``dt·λ`` on a decaying linear mode (the real-axis
#: extent of their stability regions)
STABILITY = {"euler": 2.0, "rk2": 2.0, "heun": 2.0, "rk4": 2.785}


@dataclass(frozen=True)
class PyramidalParameters:
    """Passive parameters of a three-compartment pyramidal cell (brian2 quantities).

    Defaults: soma ``capacitance`` 300 pF, ``g_leak`` 30 nS and ``E_leak`` −70 mV as in Urbanczik
    & Senn (2014); the coupling conductances are Sacramento et al. (2018)'s ``g_B = 1.0`` and
    ``g_A = 0.8`` in units of ``C/ms`` (300 nS, 240 nS; their ``g_lk = 0.1`` is the 30 nS leak).
    The dendrites' own capacitance and leak (absent from Sacramento's form, where dendrites are
    instantaneous) default to the soma's: the same membrane on an equal area.
    """
    capacitance: object = field(default_factory=lambda: 300 * pF)
    g_leak: object = field(default_factory=lambda: 30 * nS)
    g_basal: object = field(default_factory=lambda: 300 * nS)
    g_apical: object = field(default_factory=lambda: 240 * nS)
    E_leak: object = field(default_factory=lambda: -70 * mV)
    dendrite_capacitance: object = field(default_factory=lambda: 300 * pF)
    dendrite_leak: object = field(default_factory=lambda: 30 * nS)

    def __post_init__(self):
        for name, unit in (("capacitance", pF), ("g_leak", nS), ("g_basal", nS),
                           ("g_apical", nS), ("dendrite_capacitance", pF), ("dendrite_leak", nS),
                           ("E_leak", mV)):
            value = getattr(self, name)
            if not isinstance(value, brian2.Quantity) or not value.has_same_dimensions(unit):
                raise TypeError(f"PyramidalParameters.{name} must be a brian2 quantity in the "
                                f"units of {unit!r}, got {value!r}")
            if name != "E_leak" and not float(value) > 0:
                raise ValueError(f"PyramidalParameters.{name} must be > 0, got {value!r}")


@dataclass
class PyramidalCell:
    """The cell's equations, their closed forms and their stability (see the module docstring).

    Potentials are ``v_s`` (soma), ``v_b`` (basal), ``v_a`` (apical), in volt; inputs are
    currents ``I_s``, ``I_b``, ``I_a`` (amp), one per compartment::

        C   dv_s/dt = g_L (E − v_s) + g_B (v_b − v_s) + g_A (v_a − v_s) + I_s
        C_d dv_b/dt = g_Ld (E − v_b) + g_B (v_s − v_b) + I_b          (compartmental)
        C_d dv_a/dt = g_Ld (E − v_a) + g_A (v_s − v_a) + I_a
        v_b = E + I_b / g_Ld,   v_a = E + I_a / g_Ld                  (instant)
    """
    params: PyramidalParameters = field(default_factory=PyramidalParameters)
    form: str = "compartmental"

    def __post_init__(self):
        if self.form not in ("compartmental", "instant"):
            raise ValueError(f"PyramidalCell form must be 'compartmental' or 'instant', got "
                             f"{self.form!r}")

    @property
    def compartments(self) -> tuple:
        return ("v_s", "v_b", "v_a") if self.form == "compartmental" else ("v_s",)

    def equations(self) -> brian2.Equations:
        dendrites = ("dv_b/dt = (g_Ld * (E_L - v_b) + g_B * (v_s - v_b) + I_b) / C_d : volt\n"
                     "dv_a/dt = (g_Ld * (E_L - v_a) + g_A * (v_s - v_a) + I_a) / C_d : volt"
                     if self.form == "compartmental" else
                     "v_b = E_L + I_b / g_Ld : volt\nv_a = E_L + I_a / g_Ld : volt")
        return brian2.Equations(
            "dv_s/dt = (g_L * (E_L - v_s) + g_B * (v_b - v_s) + g_A * (v_a - v_s) + I_s) / C : volt\n"
            + dendrites + "\nI_s : amp\nI_b : amp\nI_a : amp")

    def namespace(self) -> dict:
        p = self.params
        return {"C": p.capacitance, "C_d": p.dendrite_capacitance, "g_L": p.g_leak,
                "g_Ld": p.dendrite_leak, "g_B": p.g_basal, "g_A": p.g_apical, "E_L": p.E_leak}

    # -- closed forms ------------------------------------------------------------------------
    def linear_system(self) -> tuple[np.ndarray, np.ndarray]:
        """``(c, G)`` with ``diag(c) dv/dt = −G (v − E) + I`` over the integrated potentials
        (plain SI floats; the instant form's dendrites are folded into the soma's input)."""
        p = self.params
        gL, gLd, gB, gA = (float(p.g_leak), float(p.dendrite_leak), float(p.g_basal),
                           float(p.g_apical))
        if self.form == "instant":
            return np.array([float(p.capacitance)]), np.array([[gL + gB + gA]])
        c = np.array([float(p.capacitance), float(p.dendrite_capacitance),
                      float(p.dendrite_capacitance)])
        G = np.array([[gL + gB + gA, -gB, -gA], [-gB, gLd + gB, 0.0], [-gA, 0.0, gLd + gA]])
        return c, G

    def _drive(self, I_s, I_b, I_a) -> np.ndarray:
        """The input of :meth:`linear_system` (…, n): currents, with the instant form's dendritic
        currents reaching the soma through their coupling conductances."""
        p = self.params
        I_s, I_b, I_a = (np.asarray(I, dtype=float) for I in (I_s, I_b, I_a))
        if self.form == "compartmental":
            return np.stack(np.broadcast_arrays(I_s, I_b, I_a), axis=-1)
        gLd = float(p.dendrite_leak)
        return (I_s + float(p.g_basal) * I_b / gLd + float(p.g_apical) * I_a / gLd)[..., None]

    def steady_state(self, I_s: brian2.Quantity | float = 0.0, I_b: brian2.Quantity | float = 0.0,
                     I_a: brian2.Quantity | float = 0.0) -> dict:
        """Steady potentials (volt, plain floats) for constant input currents (amp, any
        broadcastable shape): ``v_s``, ``v_b``, ``v_a``.  In the instant form this is
        ``v_s = (g_L E + g_B v_b + g_A v_a) / (g_L + g_B + g_A)`` (Sacramento et al. 2018)."""
        c, G = self.linear_system()
        E = float(self.params.E_leak)
        v = E + np.linalg.solve(G, self._drive(I_s, I_b, I_a)[..., None])[..., 0]
        if self.form == "compartmental":
            return {"v_s": v[..., 0], "v_b": v[..., 1], "v_a": v[..., 2]}
        gLd = float(self.params.dendrite_leak)
        return {"v_s": v[..., 0], "v_b": E + np.asarray(I_b) / gLd,
                "v_a": E + np.asarray(I_a) / gLd}

    def response(self, t: np.ndarray, I_s: brian2.Quantity | float = 0.0,
                 I_b: brian2.Quantity | float = 0.0,
                 I_a: brian2.Quantity | float = 0.0) -> np.ndarray:
        """Integrated potentials (T, n) at times ``t`` (s) from rest, for input currents switched
        on at t = 0: ``v(t) = v* + exp(−diag(c)⁻¹ G t)(E − v*)`` — the linear circuit's exact
        solution."""
        from scipy.linalg import expm
        c, G = self.linear_system()
        star = self.steady_state(I_s, I_b, I_a)
        v_star = np.array([star[name] for name in self.compartments], dtype=float)
        start = float(self.params.E_leak) - v_star
        M = -G / c[:, None]
        return np.array([v_star + expm(M * tk) @ start for tk in np.asarray(t, dtype=float)])

    def time_constants(self) -> np.ndarray:
        """The cell's time constants (s), slowest first: ``1/λ`` for the eigenvalues λ of
        ``diag(c)⁻¹ G``."""
        c, G = self.linear_system()
        return np.sort(1.0 / np.linalg.eigvals(G / c[:, None]).real)[::-1]

    def attenuation(self) -> dict:
        """Steady-state dendro-somatic attenuation: for a current into the basal (apical)
        dendrite, the somatic depolarisation over the dendritic one."""
        out = {}
        for tree, key in (("basal", "I_b"), ("apical", "I_a")):
            v = self.steady_state(**{key: 1e-12})
            E = float(self.params.E_leak)
            out[tree] = float((v["v_s"] - E) / (v["v" + key[1:].lower()] - E))
        return out

    def largest_stable_dt(self, method: str) -> float:
        """The largest step (s) with which ``method`` integrates the cell stably:
        ``dt < limit / λ_max`` (λ_max the fastest decay rate of the linear circuit)."""
        if method not in STABILITY:
            raise ValueError(f"method must be one of {sorted(STABILITY)} (explicit methods with a "
                             f"known stability limit), got {method!r}")
        return STABILITY[method] * float(self.time_constants().min())

    def check_step(self, dt: brian2.Quantity, method: str) -> None:
        """Raise ValueError, before any simulation, if ``dt`` (brian2 time) is too large for
        ``method`` on this cell (strong dendro-somatic coupling makes the equations stiff)."""
        limit = self.largest_stable_dt(method)
        if float(dt) >= limit:
            raise ValueError(
                f"dt = {float(dt / ms):g} ms is too large for {method!r} on this cell: its "
                f"fastest time constant is {float(self.time_constants().min()) * 1e3:.3g} ms, so "
                f"{method} is stable only for dt < {limit * 1e3:.3g} ms; use a smaller dt or "
                "the instant form (dendrites follow their input at once, no stiffness)")

    def group(self, n: int, dt: brian2.Quantity, method: str = "rk4", name: str = "pyramidal") -> brian2.NeuronGroup:
        """``n`` cells at rest as a brian2 NeuronGroup (the step is checked first)."""
        self.check_step(dt, method)
        group = brian2.NeuronGroup(n, self.equations(), method=method, namespace=self.namespace(),
                                   dt=dt, name=name)
        for var in self.compartments:
            setattr(group, var, self.params.E_leak)
        return group


def two_layer_cells(link: Link, z: np.ndarray, gain: brian2.Quantity = 1 * mV,
                    duration: brian2.Quantity = 20 * ms, dt: brian2.Quantity = 0.05 * ms,
                    params: PyramidalParameters | None = None, target: str = "numpy") -> dict:
    """Run pyramidal cells (instant form) whose apical trees compute the MLP link
    ``g(z) = W f(A z + a) + b`` of ``link`` (a :class:`pcbio.model.Link` with hidden weights),
    ``d_below`` cells for each input of ``z`` (batch, d_above), in one brian2 network.

    Cell k has one apical branch per hidden unit j.  The branch's potential is driven by
    synapses from the input neurons (whose potentials code z with ``gain``) to ``κ (A z + a)_j``
    above rest and its sigmoidal output ``f`` reaches the apical trunk with weight ``W_kj``
    (Poirazi, Brannon & Mel 2003's two-layer neuron); the bias ``a_j`` is a tonic branch
    depolarisation and ``b_k`` a tonic somatic current worth the apical one.
    The apical weights are scaled by the dendro-somatic attenuation ``(g_L + g_B + g_A)/g_A``
    so that the steady somatic depolarisation codes ``g(z)`` with the same gain.

    ``target``: brian2's code generation (``"numpy"``, ``"cython"``, ``"auto"``; the network is
    small, so numpy avoids a compilation).

    Returns ``{"soma": (batch, d_below), "branches": (batch, d_below, hidden)}`` — the somatic
    potentials and the branches' outputs, decoded to model units, at the end of ``duration``.
    """
    from ..circuits.network import codegen_target
    if not link.is_mlp:
        raise ValueError("two_layer_cells needs an MLP link (hidden_weights A)")
    z = np.atleast_2d(np.asarray(z, dtype=float))
    if z.ndim != 2 or z.shape[1] != link.d_above:
        raise ValueError(f"z must have shape (batch, {link.d_above}), got {z.shape}")
    params = params or PyramidalParameters()
    cell = PyramidalCell(params, "instant")
    batch, (n_out, hidden), d_in = len(z), link.W.shape, link.d_above
    gain_si, rest = float(gain), params.E_leak
    # built under the target too: brian2 generates code when it connects synapses
    with codegen_target(target):
        inputs = brian2.NeuronGroup(batch * d_in, "v : volt", name="inputs")
        inputs.v = rest + z.ravel() * gain
        branch_eqs = (f"v = E_L + tonic + drive : volt\ntonic : volt (constant)\ndrive : volt\n"
                      f"out = {link.nl.expression('(v - E_L) / kappa')} : 1")
        per_point = n_out * hidden          # branch (b, k, j) = b·per_point + k·hidden + j
        branches = brian2.NeuronGroup(batch * per_point, branch_eqs, name="branches",
                                      namespace={"E_L": rest, "kappa": gain})
        branches.tonic = np.tile(link.a, batch * n_out) * gain
        syn_in = brian2.Synapses(inputs, branches,
                                 "w : 1\ndrive_post = w * (v_pre - E_L) : volt (summed)",
                                 namespace={"E_L": rest}, name="syn_in")
        b, i, kj = np.meshgrid(np.arange(batch), np.arange(d_in), np.arange(per_point),
                               indexing="ij")
        syn_in.connect(i=(b * d_in + i).ravel(), j=(b * per_point + kj).ravel())
        syn_in.w = link.A[kj % hidden, i].ravel()
        cells = cell.group(batch * n_out, dt, method="euler", name="cells")
        scale = float((params.g_leak + params.g_basal + params.g_apical) / params.g_apical)
        # the trunk potential above rest is I_a / g_Ld: currents that make it scale·κ·g(z)
        to_current = float(params.dendrite_leak) * scale * gain_si
        syn_out = brian2.Synapses(branches, cells,
                                  "w : amp\nI_a_post = w * out_pre : amp (summed)",
                                  namespace={"E_L": rest, "kappa": gain}, name="syn_out")
        syn_out.connect(j="i // hidden", namespace={"hidden": hidden})
        syn_out.w = np.tile(link.W.ravel(), batch) * to_current * brian2.amp
        # the bias b_k: a tonic current at the soma worth the apical one (g_A/g_Ld times it)
        cells.I_s = (np.tile(link.b, batch) * to_current
                     * float(params.g_apical / params.dendrite_leak) * brian2.amp)
        brian2.Network(inputs, branches, syn_in, cells, syn_out).run(duration, namespace={})
    soma = (np.asarray(cells.v_s[:]) - float(rest)) / gain_si
    return {"soma": soma.reshape(batch, n_out),
            "branches": np.asarray(branches.out[:]).reshape(batch, n_out, hidden)}


# -- compartments of the dendritic predictive-coding circuit (model units) ------------------------
def dendrite(tau: brian2.Quantity | None = None) -> NeuronModel:
    """A dendritic compartment of the circuit: its potential (model units) follows its summed
    synaptic input ``I_in`` at once (Sacramento's form; ``tau`` None) or as a leaky membrane,
    ``τ_d dvd/dt = I_in − vd``."""
    if tau is None:
        return relay_unit("vd")
    return NeuronModel("dvddt = (I_in - vd) / tau : Hz", model_var="vd", derivative="dvddt",
                       ports=("I_in",), outputs=("vd",), constants={"tau": tau})


def interneuron() -> NeuronModel:
    """A dendrite-targeting (SST-like) interneuron of the circuit: it follows its input from the
    pyramidal cells of its own level instantly and inhibits their apical trees."""
    return relay_unit("inh")


