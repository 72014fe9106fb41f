"""Spiking predictive-coding circuits (``docs/mathematics.md`` §8), two codes chosen per run.

**Population code** (``code="population"``, every model pcbio accepts).  Each model variable is
carried by an ensemble of N leaky integrate-and-fire neurons (ON and OFF cells, heterogeneous
tuning) and read out linearly from its filtered spike trains (Eliasmith & Anderson 2003).  The
rate circuit's computation is laid out on ensembles:

* ``error_l`` ensembles represent ``ε_l``; their input is ``Π z_l − Π W f(·) − Π b`` (they follow
  it through their synapses, like dynamic error units);
* ``value_l`` ensembles are integrators: a recurrent connection of weight 1 through synapses with
  time constant ``τ_s`` and the input ``(τ_s/τ)(J_{l-1}ᵀ ε_{l-1} − ε_l)`` make the represented
  value follow ``τ dz/dt = J_{l-1}ᵀ ε_{l-1} − ε_l``;
* a nonlinear or MLP link adds ``hidden_l`` ensembles, one two-dimensional ensemble per hidden
  unit representing ``(u, b) = (A z + a, Wᵀ ε)`` — dendrite-like subunits reading out ``f(u)``
  (the prediction) and ``f'(u)·b`` (the backward error).

Dense pathways act on the read-out values (a factorised, rank-``d`` connectivity: decoders,
then the model's weights, then each neuron's encoder), so their cost grows with N·d, not with
(N·d)²; under the Synapses coupling (cpp_standalone) the same weights are expanded into one
synapse per neuron pair — right for small models only.

**Spike-coding network** (``code="scn"``, linear-Gaussian models).  Boerlin, Machens & Denève
(2013): for a linear model the predictive-coding dynamics ``τ dz/dt = h(x) − H z`` are a linear
dynamical system ``dz/dt = A z + c`` (A = −H/τ, c = h(x)/τ), and N neurons per variable with
read-out ``ẑ = Γ r`` implement it: each voltage is its share of the coding error,
``V = Γᵀ(z − ẑ)``, a neuron spikes only when that reduces the error (``V_i > ‖Γ_i‖²/2``), fast
recurrent inhibition ``−ΓᵀΓ`` removes what a spike explained, slow recurrent connections
``Γᵀ(A + λ_d I)Γ`` carry the dynamics.  Nonlinear links have no such linear system: the
spike-coding network refuses them (use the population code).
"""

from __future__ import annotations

import zlib

import numpy as np
from brian2 import Quantity, ms

from ..encoding import EnsembleEncoding, RateEncoding, SpikeCodingEncoding
from ..inference import neg_hessian, posterior_precision
from ..neurons import lif
from ..neurons import rate as rate_neurons
from ..trajectory import Trajectory
from .base import Circuit, register
from .parameters import Parameter
from .structure import Pathway, Population

#: radii cover this quantile of the values a run meets (samples of the model, at the true
#: latents and at the prior means), times RADIUS_MARGIN
RADIUS_QUANTILE, RADIUS_MARGIN = 0.9, 1.2
#: a spike-coding network's neurons fire at about SCN_RATE (Hz) for a variable at its radius,
#: but the population together at most SCN_TOTAL_RATE: one spike per time step is the greedy
#: rule's capacity (10 kHz at dt = 0.1 ms), and it must stay well below it
SCN_RATE, SCN_TOTAL_RATE = 40.0, 2000.0
#: a spike-coding network's quadratic cost on rates (Boerlin et al.'s μλ², relative to ‖Γ_i‖²):
#: it raises thresholds to (1 + c)‖Γ_i‖²/2 and adds c‖Γ_i‖² to each neuron's own reset, so that
#: a spike cannot push an opposite neuron over threshold (no ping-pong)
SCN_COST = 1.0

APPROXIMATE_FLOW = ("spiking population code: dz/dt of the decoded read-out follows "
                    "grad_z log p / tau up to decoding error (~1/sqrt(N)) and synaptic lag")


@register
class SpikingCircuit(Circuit):
    """Spiking predictive-coding circuit for ``model`` (see the module docstring)."""

    kind = "spiking"
    VARIANTS = ({"code": "population"}, {"code": "scn"})
    description = "leaky integrate-and-fire neurons: population code or spike-coding network"
    PARAMETERS = (
        Parameter("code", "choice", "population", "population: ensembles of LIF neurons per "
                  "variable, read out from filtered spike trains (any model); scn: a spike-"
                  "coding network, Boerlin et al. 2013 (linear models)", ("population", "scn")),
        Parameter("neurons_per_unit", "int", 100, "neurons per model variable"),
        Parameter("tau", "time", 100 * ms, "time constant of the predictive-coding dynamics"),
        Parameter("tau_synapse", "time", 10 * ms, "synaptic time constant of error and hidden "
                  "populations (AMPA/GABA-A-like)"),
        Parameter("tau_recurrent", "time", 100 * ms, "synaptic time constant of value "
                  "populations, whose recurrent connections integrate (NMDA-like, Wang 1999; the "
                  "spike-coding network's read-out filter)"),
        Parameter("tau_membrane", "time", lif.TAU_MEMBRANE, "membrane time constant"),
        Parameter("refractory", "time", lif.REFRACTORY, "absolute refractory period"),
        Parameter("readout_window", "time", 100 * ms, "estimates average the decoded values "
                  "over this last part of a run"),
        Parameter("radius_scale", "number", 1.0, "scales the represented ranges estimated "
                  "from the model"),
        Parameter("synapse_density", "number", 1.0, "fraction of neuron pairs that get a synapse "
                  "when pathways become per-pair Synapses (cpp_standalone), weights scaled up to "
                  "match; in (0, 1]"),
        Parameter("tuning_seed", "seed", 0, "seed of the neurons' heterogeneous tuning and the "
                  "spike-coding network's read-out directions"),
    )

    def __init__(self, model, **params):
        super().__init__(model, **params)
        if self.params["synapse_density"] > 1:
            raise ValueError(f"synapse_density must be in (0, 1], got {self.params['synapse_density']}")
        if model.flow is not None:
            raise ValueError(f"{model.name} has a [flow]: the spiking circuits have no "
                             "lateral-inhibition front end yet; use the rate circuit")
        if self.params["code"] == "scn" and not model.is_linear:
            raise ValueError(f"code='scn' (a spike-coding network) implements linear dynamics; "
                             f"{model.name} has nonlinear links — use code='population'")

    @property
    def tau(self) -> Quantity | None:
        return self.params["tau"]

    def checks(self) -> dict[str, str]:
        checks = {"gradient_flow": APPROXIMATE_FLOW,
                  "fixed_point": "decoded fixed point: exact posterior mean (linear) or MAP",
                  "elbo": "ELBO of the decoded state with the Laplace covariance at the reference",
                  "variance_gap": "nonlinear links: grad_mu ELBO at posterior std s vs the update",
                  "firing": "rates, ISI variability and silent fraction of every population",
                  "rate_equivalence": "decoded trajectory against the rate circuit's (same "
                                      "model, input, tau and start)"}
        if self.params["code"] == "population":
            checks["error_units"] = "decoded error ensembles against eps of the decoded values"
        return checks

    def skipped_checks(self) -> dict[str, str]:
        skipped = {"step_equivalence": "spiking dynamics are not an Euler discretisation of "
                                       "the gradient flow",
                   "front_end": "the spiking circuits take models without a [flow]"}
        if self.params["code"] == "scn":
            skipped["error_units"] = ("a spike-coding network has no error populations: the "
                                      "coding error lives in its voltages")
        return skipped

    def lag_limits(self, x: np.ndarray, z: list) -> list:
        """Stability of the population code's feedback loop.  Linearised at (x, z), a value
        ensemble integrates ``τ dz/dt = −λ e`` of an error it sees through synaptic filters of
        time constant τ_s.  Through one filter (linear links) the loop is second order and always
        stable (damped oscillations at most).  Through two (error and hidden ensembles, for
        nonlinear or MLP links) it is third order, ``τ τ_s² s³ + 2τ τ_s s² + τ s + λ = 0``, and
        the Routh–Hurwitz condition is ``λ τ_s / (2τ) < 1``: a lag of τ_s/2 against the largest
        curvature λ of log p."""
        model = self.model
        if self.params["code"] == "scn" or all(link.is_linear and not link.is_mlp
                                               for link in model.links):
            return []
        lam = np.abs(np.linalg.eigvalsh(neg_hessian(model, x, z))).max()
        return [(self.params["tau"], lam, self.params["tau_synapse"] / 2,
                 "the largest curvature of log p(x, z)")]

    def estimate(self, traj: Trajectory) -> tuple[list, dict]:
        """Decoded means averaged over the last ``readout_window`` of the run (spike noise
        averages out), and that window."""
        window = float(self.params["readout_window"])
        keep = traj.t >= traj.t[-1] - window
        return [m[keep].mean(axis=0) for m in traj.means], {
            "readout_window_s": float(traj.t[-1] - traj.t[keep][0])}

    # -- structure -------------------------------------------------------------------------------
    def build_structure(self) -> tuple[list[Population], list[Pathway]]:
        pops, paths = (self._spike_coding_network() if self.params["code"] == "scn"
                       else self._population_code())
        spiking = {p.name for p in pops if p.neuron.spiking}
        for pw in paths:
            if pw.pre in spiking and pw.kind == "continuous":
                pw.density = self.params["synapse_density"]
        return pops, paths

    def radii(self) -> tuple[list[float], list[float], list[float], list[float]]:
        """Represented ranges per level: values (levels 1 … L), errors (0 … L), and per link the
        hidden preactivation and backward error — quantiles of what a run meets."""
        m = self.model
        x, z = m.sample(500, seed=self.params["tuning_seed"] + 1)
        starts = [z, m.prior_means(len(x))]
        values = [np.concatenate([s[l] for s in starts]) for l in range(m.n_latent)]
        errors = [np.concatenate(e) for e in zip(*[m.errors(x, s) for s in starts])]
        hidden_u = [np.concatenate([link.preactivation(s[l]) for s in starts])
                    for l, link in enumerate(m.links)]
        hidden_b = [e @ link.W for e, link in zip(errors, m.links)]

        def radius(a):
            return RADIUS_MARGIN * self.params["radius_scale"] * max(
                float(np.quantile(np.abs(a), RADIUS_QUANTILE)), 1e-3)
        return ([radius(v) for v in values], [radius(e) for e in errors],
                [radius(u) for u in hidden_u], [radius(b) for b in hidden_b])

    def _ensemble(self, name, role, level, dims, radius, tau_s, outputs):
        """A population of ensembles: ``dims`` variables × N neurons, one tuning shared by its
        ensembles, decoders fitted for each of ``outputs`` (name → function of the normalised
        point, returning model units)."""
        p = self.params
        n, k = p["neurons_per_unit"], len(np.atleast_1d(radius))
        seed = p["tuning_seed"] * 1000 + zlib.crc32(name.encode()) % 1000
        tuning = lif.Tuning.random(n, k, seed, float(p["tau_membrane"]), float(p["refractory"]))
        points = lif.evaluation_points(k, seed)
        decoders = {out: tuning.decoders(points, fn(points))[:, 0] for out, fn in outputs.items()}
        enc = EnsembleEncoding(tuning, decoders, radius, tau_s, default_output=next(iter(outputs)))
        neuron = lif.ensemble_neuron(k, radius, p["tau_membrane"], p["refractory"])
        params = {"gain": np.tile(tuning.gains, dims), "bias": np.tile(tuning.biases, dims)}
        for j in range(k):
            params[f"enc{j}"] = np.tile(tuning.encoders[:, j], dims)
        return Population(name, role, level, dims * n, neuron, enc, dims=dims, params=params,
                          input_map=("repeat", n))

    def _weigh(self, l, weights):
        """Pathway weights into error_l: ``Π_l W`` (:meth:`Covariance.weigh`)."""
        return self.model.level_covariance(l).weigh(weights)

    def _population_code(self):
        m, p = self.model, self.params
        L, dims = m.n_latent, m.dims
        r_value, r_error, r_u, r_b = self.radii()
        gain = float(p["tau_recurrent"] / p["tau"])            # input gain of the integrators
        pops = [Population("data", "data", 0, dims[0], rate_neurons.data_unit(), RateEncoding())]
        paths = []
        for l in range(L + 1):
            R = r_error[l]
            pops.append(self._ensemble(f"error_{l}", "error", l, dims[l], R, p["tau_synapse"],
                                       {"x": lambda pts, R=R: R * pts}))
            constant = m.top_mean if l == L else m.links[l].b
            pops[-1].bias = {"I_in": -self._weigh(l, constant[:, None])[:, 0]}
            below = "data" if l == 0 else f"value_{l}"
            paths.append(Pathway(f"zin_{l}", below, "x", f"error_{l}", "I_in",
                                 self._weigh(l, np.ones(dims[l]))))
            if l == 0:
                continue
            R = r_value[l - 1]
            pops.append(self._ensemble(f"value_{l}", "value", l, dims[l], R, p["tau_recurrent"],
                                       {"x": lambda pts, R=R: R * pts}))
            paths += [Pathway(f"rec_{l}", f"value_{l}", "x", f"value_{l}", "I_in", np.ones(dims[l])),
                      Pathway(f"own_{l}", f"error_{l}", "x", f"value_{l}", "I_in",
                              -gain * np.ones(dims[l]))]
            link = m.links[l - 1]
            if link.is_linear and not link.is_mlp:
                paths += [Pathway(f"pred_{l - 1}", f"value_{l}", "x", f"error_{l - 1}", "I_in",
                                  -self._weigh(l - 1, link.W)),
                          Pathway(f"bu_{l - 1}", f"error_{l - 1}", "x", f"value_{l}", "I_in",
                                  gain * link.W.T)]
                continue
            Ru, Rb, nl = r_u[l - 1], r_b[l - 1], link.nl
            hidden = self._ensemble(
                f"hidden_{l - 1}", "hidden", l - 1, link.W.shape[1], (Ru, Rb), p["tau_synapse"],
                {"fu": lambda pts, Ru=Ru, nl=nl: nl.f(Ru * pts[:, :1]),
                 "back": lambda pts, Ru=Ru, Rb=Rb, nl=nl: nl.df(Ru * pts[:, :1]) * Rb * pts[:, 1:]})
            A = np.eye(dims[l]) if link.A is None else link.A
            if link.a is not None:
                hidden.bias = {"I_u": link.a}
            pops.append(hidden)
            paths += [Pathway(f"fwd_{l - 1}", f"value_{l}", "x", hidden.name, "I_u", A),
                      Pathway(f"pred_{l - 1}", hidden.name, "fu", f"error_{l - 1}", "I_in",
                              -self._weigh(l - 1, link.W)),
                      Pathway(f"bu_{l - 1}", f"error_{l - 1}", "x", hidden.name, "I_b", link.W.T.copy()),
                      Pathway(f"back_{l - 1}", hidden.name, "back", f"value_{l}", "I_in", gain * A.T)]
        return pops, paths

    def _spike_coding_network(self):
        m, p = self.model, self.params
        L, dims, n = m.n_latent, m.dims, p["neurons_per_unit"]
        tau, tau_d = float(p["tau"]), float(p["tau_recurrent"])
        H, h = self._linear_system()
        offsets = np.concatenate([[0], np.cumsum(m.latent_dims)])
        r_value = self.radii()[0]
        rng = np.random.default_rng(p["tuning_seed"])
        pops, paths = [Population("data", "data", 0, dims[0], rate_neurons.data_unit(),
                                  RateEncoding())], []
        for l in range(1, L + 1):
            d, units = dims[l], n * dims[l]
            directions = rng.normal(size=(units, d))
            directions /= np.linalg.norm(directions, axis=1, keepdims=True)
            # a variable at its radius needs ~rate from each of the N·d/2 neurons facing it
            rate = min(SCN_RATE, SCN_TOTAL_RATE / units)
            gamma = directions * (2 * r_value[l - 1] / (tau_d * rate * units))
            enc = SpikeCodingEncoding(tau_d * gamma, p["tau_recurrent"])
            neuron = lif.spike_coding_neuron(p["tau_membrane"], p["refractory"])
            sl = slice(offsets[l - 1], offsets[l])
            norm2 = np.sum(gamma ** 2, axis=1)
            pops.append(Population(f"value_{l}", "value", l, units, neuron, enc, dims=d,
                                   params={"vth": 0.5 * (1 + SCN_COST) * norm2,
                                           "vcost": SCN_COST * norm2},
                                   input_map=gamma, bias={"I_in": h["bias"][sl] / tau}))
            paths.append(Pathway(f"jump_{l}", f"value_{l}", "x", f"value_{l}", "v",
                                 -np.ones(d), kind="jump"))
            if np.any(h["data"][sl]):
                paths.append(Pathway(f"input_{l}", "data", "x", f"value_{l}", "I_in",
                                     h["data"][sl] / tau))
            for k in range(1, L + 1):
                block = -H[sl, offsets[k - 1]:offsets[k]] / tau + (1 / tau_d) * (k == l) * np.eye(d, dims[k])
                if np.any(block):
                    paths.append(Pathway(f"slow_{k}_{l}", f"value_{k}", "x", f"value_{l}", "I_in",
                                         block))
        return pops, paths

    def _linear_system(self):
        """``∇_z log p(x, z) = h(x) − H z`` for the linear model: H (D, D) and h as an affine
        function of x, ``h(x) = data · x + bias`` (read off the model's own gradient)."""
        m = self.model
        d0 = m.dims[0]
        H, h0 = posterior_precision(m, np.zeros((1, d0)))
        _, hx = posterior_precision(m, np.eye(d0))
        return H, {"data": (hx - h0).T, "bias": h0[0]}
