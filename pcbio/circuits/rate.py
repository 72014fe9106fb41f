"""Compile a :class:`~pcbio.model.GenerativeModel` into a brian2 network of rate neurons.

Per latent level ``l = 1 … L`` a population of *value* units (one per latent dimension); per level
``l = 0 … L`` a population of *error* units (one per dimension of the level they compare,
including the data); optionally a population of precision *interneurons* per level.  Each
population holds ``batch × d_l`` units (unit ``b·d_l + k`` is dimension k of data point b): several
data points run side by side in one network.

The dense top-down and bottom-up pathways are delivered by one of two *couplings*:

* ``"matrix"`` — one ``network_operation`` per step computes the model's predictions, precision
  products and ``Jᵀε`` with BLAS matrix products (any link, MLP links included).  Runtime targets
  only; fast for dense weights.
* ``"synapses"`` — brian2 ``Synapses`` with summed variables, one synapse per non-zero weight and
  data point.  Works under every target including ``cpp_standalone``; affine links only.

Neuron equations live in :mod:`pcbio.neurons.rate`; the model equations in :mod:`pcbio.model`.
Scheduling (within each time step, ``when="groups"``): coupling (order 4 / 8–9) → monitors (9.5) →
state updates (10), so every recorded quantity and every update uses the state at the start of
the step: an explicit Euler step of the circuit ODE.
"""

import re

import brian2
import numpy as np
from brian2 import ms

from ..checks import one_of, time_quantity
from ..encoding import RateEncoding
from ..errors import SimulationError
from ..inference import neg_hessian
from ..neurons import rate as eqs
from ..trajectory import Trajectory
from .base import Circuit

ORDER_STATE, ORDER_MONITOR, ORDER_MATRIX = 10, 9.5, 8
ORDER_INSTANT_ERRORS = 5     # instant errors must be summed before the value units read them
FINITE_CHECK_STEPS = 50      # the matrix coupling checks for NaN/Inf this often
RUNAWAY = 1e12               # |rate| beyond this (in Hz) counts as a diverged simulation


class RateCircuit(Circuit):
    """A rate-neuron predictive-coding circuit for ``model`` (not yet a brian2 network:
    :func:`pcbio.simulate.simulate` builds and runs it on a stimulus).

    Parameters
    ----------
    model : GenerativeModel
    tau : time, value-unit time constant τ (``τ dz/dt = ∇_z log p``)
    errors : ``"instant"`` (algebraic error units: exact gradient flow) or ``"dynamic"``
        (error units with time constant ``tau_error``, Bogacz 2017 eqs. 12–14)
    tau_error : time, error-unit time constant (dynamic errors)
    precision : ``"synaptic"`` (Σε through lateral weights) or ``"interneuron"`` (Bogacz 2017 §5;
        dynamic errors only)
    tau_inter : time, interneuron time constant
    value_encoding, error_encoding : :class:`RateEncoding` (default ``r = 0 Hz + 10 Hz · z``)
    """

    kind = "rate"

    def __init__(self, model, tau=10 * ms, errors="instant", tau_error=2 * ms,
                 precision="synaptic", tau_inter=2 * ms, value_encoding=None, error_encoding=None):
        self.model = model
        self.tau = time_quantity(tau, "tau")
        self.errors = one_of(errors, "errors", {"instant", "dynamic"})
        self.tau_error = time_quantity(tau_error, "tau_error")
        self.precision = one_of(precision, "precision", {"synaptic", "interneuron"})
        self.tau_inter = time_quantity(tau_inter, "tau_inter")
        if precision == "interneuron" and errors != "dynamic":
            raise ValueError("precision='interneuron' needs errors='dynamic' (the interneuron "
                             "and error units settle together)")
        self.value_encoding = value_encoding or RateEncoding()
        self.error_encoding = error_encoding or RateEncoding()
        for name, enc in (("value_encoding", self.value_encoding),
                          ("error_encoding", self.error_encoding)):
            if not isinstance(enc, RateEncoding):
                raise TypeError(f"{name} must be a pcbio.encoding.RateEncoding")

    @property
    def dynamic(self):
        return self.errors == "dynamic"

    def describe(self):
        """Parameters as plain JSON."""
        return {"circuit": "rate", "tau_ms": float(self.tau / ms), "errors": self.errors,
                "tau_error_ms": float(self.tau_error / ms), "precision": self.precision,
                "tau_inter_ms": float(self.tau_inter / ms),
                "value_encoding": self.value_encoding.describe(),
                "error_encoding": self.error_encoding.describe()}

    def euler_limits(self, x, init):
        """Value units: the largest curvature of log p at the start (for linear models the same
        for every data point); error units: the largest noise variance; interneurons: their
        leak."""
        model = self.model
        if model.is_linear:      # H is the same for every data point: one eigensolve suffices
            x, init = x[:1], [z[:1] for z in init]
        lam = np.abs(np.linalg.eigvalsh(neg_hessian(model, x, init))).max()
        limits = [("tau", self.tau, lam, "the largest curvature of log p(x, z) at the start")]
        if self.dynamic:
            sig = max(np.linalg.eigvalsh(model.level_covariance(l).matrix).max()
                      for l in range(model.n_latent + 1))
            limits.append(("tau_error", self.tau_error, sig, "the largest noise variance"))
        if self.precision == "interneuron":
            limits.append(("tau_inter", self.tau_inter, 1.0, "the interneuron leak"))
        return limits

    def check_coupling(self, coupling):
        one_of(coupling, "coupling", {"matrix", "synapses"})
        if coupling == "synapses":
            for link in self.model.links:
                if link.is_mlp:
                    raise ValueError(f"coupling='synapses' supports affine links only; {link.name} "
                                     "is an MLP link (use coupling='matrix' on a runtime target)")

    def build(self, stimulus, stimulus_dt, dt, init, coupling, record_dt):
        """Create the brian2 objects.

        stimulus : array (frames, batch, d_0); init : list of (batch, d_l); dt, record_dt, stimulus_dt :
        times.  Returns a :class:`BuiltCircuit`.
        """
        return BuiltCircuit(self, stimulus, stimulus_dt, dt, init, coupling, record_dt)

    def trajectory(self, recordings, batch, info):
        """Decode the recorded rates: value units → latent estimates, error units → ε; the raw
        rates (Hz) are kept in ``raw``."""
        t = recordings["t"]
        T = len(t)

        def levels(arrays, decode=None):
            return [(decode(a) if decode else a).reshape(T, batch, -1) for a in arrays]

        def rate_range(arrays):     # a linear code r0 + κz goes negative where z < −r0/κ
            return [min(float(a.min()) for a in arrays), max(float(a.max()) for a in arrays)]
        info = {**info, "rate_range_Hz": {kind: rate_range(recordings[kind])
                                          for kind in ("values", "errors", "inters")
                                          if recordings[kind]}}
        return Trajectory(t=t, time_unit="s",
                          means=levels(recordings["values"], self.value_encoding.decode),
                          errors=levels(recordings["errors"], self.error_encoding.decode),
                          dzdt=levels(recordings["values_dzdt"]), info=info,
                          raw={"value_rates_Hz": levels(recordings["values"]),
                               "error_rates_Hz": levels(recordings["errors"]),
                               "interneuron_rates_Hz": levels(recordings["inters"])})


def _level_constant(model, l, instant):
    """``c``: the constant part of level l's prediction (bias; prior mean at the top),
    precision-weighted for instant errors."""
    c = model.top_mean if l == model.n_latent else model.links[l].b
    return model.level_covariance(l).apply_precision(c) if instant else c


def _expr_in_z(expr):
    return re.sub(r"\bu\b", "z", expr)


class BuiltCircuit:
    """The brian2 objects of a :class:`RateCircuit` on one stimulus (see :meth:`RateCircuit.build`).

    Attributes: ``network``; ``values`` (levels 1 … L), ``errors`` (0 … L), ``inters`` (0 … L or
    empty) — NeuronGroups; ``monitors`` — dict of lists of StateMonitors.
    """

    def __init__(self, circuit, stimulus, stimulus_dt, dt, init, coupling, record_dt):
        self.circuit = circuit
        model = circuit.model
        self.batch = stimulus.shape[1]
        self.coupling = coupling
        self.instant = not circuit.dynamic
        B, L, dims = self.batch, model.n_latent, model.dims
        data = stimulus if circuit.dynamic else model.level_covariance(0).apply_precision(stimulus)
        self.stim = brian2.TimedArray(data.reshape(len(stimulus), -1), dt=stimulus_dt, name="stim")
        self.stimulus, self.stimulus_dt = stimulus, stimulus_dt
        venc, eenc = circuit.value_encoding, circuit.error_encoding
        self.namespace = {**venc.namespace("v"), **eenc.namespace("e"), **eenc.namespace("i"),
                          "tau_v": circuit.tau, "tau_e": circuit.tau_error,
                          "tau_i": circuit.tau_inter, "stim": self.stim}
        objects = []

        self.values = []
        for l in range(1, L + 1):
            nl = model.links[l - 1].nl
            g = brian2.NeuronGroup(
                B * dims[l], eqs.value_equations(_expr_in_z(nl.f_expr), _expr_in_z(nl.df_expr),
                                                 synaptic_bu=coupling == "synapses"),
                method="euler", dt=dt, order=ORDER_STATE, name=f"value_{l}",
                namespace=self.namespace)
            g.r = venc.encode(init[l - 1].ravel())
            self.values.append(g)

        error_order = ORDER_INSTANT_ERRORS if (self.instant and coupling == "synapses") else ORDER_STATE
        self.errors, self.inters = [], []
        for l in range(L + 1):
            data_level = l == 0 and coupling == "synapses"
            g = brian2.NeuronGroup(B * dims[l], eqs.error_equations(circuit.dynamic, data_level),
                                   method="euler", dt=dt, order=error_order, name=f"error_{l}",
                                   namespace=self.namespace)
            if coupling == "synapses":     # the matrix coupling delivers the whole prediction
                g.c = np.tile(_level_constant(model, l, self.instant), B)
            if circuit.dynamic:
                g.r = eenc.encode(np.zeros(B * dims[l]))
            self.errors.append(g)
            if circuit.precision == "interneuron":
                gi = brian2.NeuronGroup(B * dims[l], eqs.INTERNEURON_EQUATIONS, method="euler", dt=dt,
                                        order=ORDER_STATE, name=f"inter_{l}",
                                        namespace=self.namespace)
                gi.r = eenc.encode(np.zeros(B * dims[l]))
                self.inters.append(gi)
        objects += self.values + self.errors + self.inters

        if coupling == "synapses":
            objects += self._synapses(dt)
        else:
            objects.append(self._matrix_coupling(dt))

        def monitor(group, variables):
            return brian2.StateMonitor(group, variables, record=True, dt=record_dt, when="groups",
                                       order=ORDER_MONITOR, name=f"monitor_{group.name}")
        self.monitors = {"values": [monitor(g, ["r", "dzdt"]) for g in self.values],
                         "errors": [monitor(g, ["r", "dzdt"] if circuit.dynamic else ["r"])
                                    for g in self.errors],
                         "inters": [monitor(g, ["r", "dzdt"]) for g in self.inters]}
        objects += [m for ms_ in self.monitors.values() for m in ms_]
        self.network = brian2.Network(*objects)

    # -- what simulate() asks of a built circuit --------------------------------------------------
    def check_finite(self, t):
        """Raise SimulationError if any population holds NaN/Inf or runaway rates (runtime)."""
        for group in self.values + self.errors + self.inters:
            r = np.asarray(group.r_[:])
            if not np.all(np.isfinite(r)) or np.abs(r).max() > RUNAWAY:
                raise SimulationError(f"the simulation became unstable by t = {t:.4g} s (NaN, Inf "
                                      f"or runaway activity in {group.name}); reduce dt or check "
                                      "the model")

    def max_drift(self):
        """max |τ dx/dt| over every population with dynamics, at the last recorded step."""
        c = self.circuit
        taus = {"values": c.tau, "errors": c.tau_error, "inters": c.tau_inter}
        return max(float(np.abs(m.dzdt_[:, -1]).max() * taus[kind])
                   for kind, mons in self.monitors.items() for m in mons
                   if "dzdt" in m.record_variables)

    def recordings(self):
        """Monitor contents as plain arrays (T, units): ``t`` (s), rates in Hz, drifts in 1/s."""
        mons = self.monitors
        return {"t": np.array(mons["values"][0].t_),
                "values": [np.array(m.r_).T for m in mons["values"]],
                "values_dzdt": [np.array(m.dzdt_).T for m in mons["values"]],
                "errors": [np.array(m.r_).T for m in mons["errors"]],
                "inters": [np.array(m.r_).T for m in mons["inters"]]}

    # -- couplings ----------------------------------------------------------------------------
    def _connect(self, pre, post, weights, model_eq, name, dt):
        """Block-diagonal (per data point) Synapses for a (d_post, d_pre) weight matrix; one
        synapse per non-zero weight."""
        d_post, d_pre = weights.shape
        post_k, pre_k = np.nonzero(weights)
        offsets = np.arange(self.batch)[:, None]
        syn = brian2.Synapses(pre, post, model="w : 1 (constant)\n" + model_eq, dt=dt, name=name,
                              namespace=self.namespace)
        syn.connect(i=(offsets * d_pre + pre_k).ravel(), j=(offsets * d_post + post_k).ravel())
        syn.w = np.tile(weights[post_k, pre_k], self.batch)
        return syn

    def _synapses(self, dt):
        model, circuit, L = self.circuit.model, self.circuit, self.circuit.model.n_latent
        syns = []
        for l in range(L + 1):
            cov = model.level_covariance(l)
            err = self.errors[l]
            weigh = cov.apply_precision if self.instant else (lambda a: a)
            if l < L:      # top-down prediction from the level above: W (Π W for instant errors)
                W = weigh(model.links[l].W.T).T
                syns.append(self._connect(self.values[l], err, W, "pred_post = w * fz_pre : 1 (summed)",
                                          f"pred_{l}", dt))
            if l > 0:      # the level's own value units: I (Π for instant errors)
                syns.append(self._connect(self.values[l - 1], err, weigh(np.eye(cov.dim)),
                                          "zin_post = w * z_pre : 1 (summed)", f"zin_{l}", dt))
                syns.append(self._connect(err, self.values[l - 1], np.eye(cov.dim),
                                          "eps_own_post = w * eps_pre : 1 (summed)", f"own_{l}", dt))
            if l < L:      # bottom-up: Wᵀ ε to the value units above (times f'(z) in the neuron)
                syns.append(self._connect(err, self.values[l], model.links[l].W.T,
                                          "wte_post = w * eps_pre : 1 (summed)", f"wte_{l}", dt))
            if circuit.dynamic and circuit.precision == "synaptic":
                syns.append(self._connect(err, err, cov.matrix, "lat_post = w * eps_pre : 1 (summed)",
                                          f"lat_{l}", dt))
            elif circuit.dynamic:
                inter = self.inters[l]
                syns.append(self._connect(err, inter, cov.matrix,
                                          "sig_eps_post = w * eps_pre : 1 (summed)", f"sig_{l}", dt))
                syns.append(self._connect(inter, err, np.eye(cov.dim),
                                          "lat_post = w * inh_pre : 1 (summed)", f"inh_{l}", dt))
        return syns

    def _matrix_coupling(self, dt):
        """One network_operation computing every dense pathway with matrix products."""
        model, circuit = self.circuit.model, self.circuit
        B, L = self.batch, model.n_latent
        venc, eenc = circuit.value_encoding, circuit.error_encoding

        def arr(group, name):
            """The variable's own storage as a (batch, d) view: writes go straight to brian2."""
            return group.variables[name].get_value().reshape(B, -1)

        v_r = [arr(g, "r") for g in self.values]
        v_bu = [arr(g, "bu") for g in self.values]
        v_own = [arr(g, "eps_own") for g in self.values]
        e_zin = [arr(g, "zin") for g in self.errors]
        e_pred = [arr(g, "pred") for g in self.errors]
        e_r = [arr(g, "r") for g in self.errors] if circuit.dynamic else None
        e_lat = [arr(g, "lat") for g in self.errors] if circuit.dynamic else None
        i_sig = [arr(g, "sig_eps") for g in self.inters]
        i_r = [arr(g, "r") for g in self.inters]
        covs = [model.level_covariance(l) for l in range(L + 1)]
        frames = len(self.stimulus)
        steps_per_frame = float(self.stimulus_dt / dt)
        step = [0]          # time step counter: t = step·dt

        @brian2.network_operation(dt=dt, when="groups", order=ORDER_MATRIX, name="matrix_coupling")
        def couple():
            n = step[0]
            step[0] += 1
            frame = self.stimulus[min(int(n / steps_per_frame + 1e-9), frames - 1)]
            z = [venc.decode(r) for r in v_r]
            if n % FINITE_CHECK_STEPS == 0 and not all(np.isfinite(zl.sum()) for zl in z):
                raise FloatingPointError(f"NaN/Inf in the value units at step {n}")
            levels = [frame] + z
            if self.instant:     # error units: ε = Π z − Π g, delivered as zin and pred
                eps = model.errors(frame, z)
            else:                # error units integrate z − g − Σε: read their own state
                preds = model.predictions(z)
                eps = [eenc.decode(r) for r in e_r]
            for l in range(L + 1):
                if self.instant:
                    zin = covs[l].apply_precision(levels[l])
                    pred = zin - eps[l]
                else:
                    zin, pred = levels[l], preds[l]
                    if circuit.precision == "interneuron":
                        i_sig[l][:] = covs[l].apply(eps[l])
                        e_lat[l][:] = eenc.decode(i_r[l])
                    else:
                        e_lat[l][:] = covs[l].apply(eps[l])
                e_zin[l][:] = zin
                e_pred[l][:] = pred
            for l in range(1, L + 1):
                v_own[l - 1][:] = eps[l]
                v_bu[l - 1][:] = model.links[l - 1].vjp(z[l - 1], eps[l - 1])
        return couple
