"""The dendritic predictive-coding circuit: latent estimates in pyramidal somata, errors in their
dendrites (``docs/mathematics.md`` §12; Sacramento et al. 2018; Urbanczik & Senn 2014).

Level l holds ``d_l`` pyramidal cells (level 0: sensory cells whose somata are clamped to the
data).  Per cell, as populations of one compartment each (all potentials in model units, coded by
a :class:`~pcbio.encoding.VoltageEncoding`):

* ``soma_l`` (l ≥ 1) — the estimate z_l, ``τ dz/dt = f'(z)·v_B + v_A`` with ``τ = C/g``: the
  basal and apical compartments drive the soma through coupling conductances ``g = C/τ``;
* ``apical_l`` — ``v_A = Π_l (g_l(z_{l+1}) − z_l) = −ε_l``: top-down synapses carry the
  precision-weighted prediction, and dendrite-targeting interneurons ``inter_l`` (driven by the
  cells' own somata, SST-like) subtract the cells' own estimate (the self-predicting state of
  Sacramento et al.: with no top-down mismatch the apical tree is at rest);
* ``basal_l`` (l ≥ 1) — ``v_B = J_{l-1}ᵀ ε_{l-1}``: the bottom-up error, the apical potentials of
  the cells below read through the transposed weights;
* ``branch_l`` — for an MLP link ``g_l(z) = W f(A z + a) + b``, each cell's apical tree has one
  branch per hidden unit: branch (k, j) gets ``A_j z_{l+1} + a_j`` from the level above, its
  sigmoidal output ``f`` reaches cell k's apical trunk with weight ``Π W_kj`` (the two-layer neuron
  of Poirazi, Brannon & Mel 2003), and its ``f'`` gates the apical error back to the basal trees
  above: the dendritic tree is the deep network and its own backward pass.

The soma is the rate circuit's value unit, a branch its MLP hidden unit.  With a learned
iterative update (``update``, ``docs/mathematics.md`` §13) a population ``gain_1`` of branches,
driven by the data cells' and the cells' own apical potentials (ε_x, ε_z) and the somata,
multiplies each soma's drive by a learned gain.
"""

from __future__ import annotations

import numpy as np
from brian2 import Quantity, ms, nS, pF

from ..encoding import RateEncoding, VoltageEncoding
from ..inference.amortized import IterativeUpdate
from ..neurons import pyramidal as compartments
from ..neurons import rate as neurons
from ..nonlinearities import NONLINEARITIES
from .base import Circuit, gradient_flow_limit, register
from .parameters import Parameter
from .structure import Pathway, Population

EXACT_FLOW = ("instantaneous dendrites: tau dz/dt = f'(z) v_B + v_A = grad_z log p(x, z) exactly; "
              "for a linear-Gaussian model that is grad_mu ELBO for any posterior variance")
ELBO = "ELBO of the circuit state with the Laplace covariance at the reference"
COMPARTMENTS = ("basal potential against J^T eps of the level below, apical potential against -eps "
                "of the cell's own level")
LAGGING_FLOW = ("leaky dendrites: the somata follow grad_z log p / tau once the dendritic "
                "potentials have settled; the departure while they lag is measured")


@register
class DendriticCircuit(Circuit):
    """Pyramidal cells whose dendrites carry the prediction errors (see the module docstring)."""

    kind = "dendritic"
    VARIANTS = ({}, {"dendrites": "leaky"})
    description = ("multi-compartment pyramidal cells: basal dendrites take the bottom-up error, "
                   "apical dendrites the cells' own error through interneurons, somata integrate")
    PARAMETERS = (
        Parameter("tau", "time", 10 * ms, "somatic time constant C/g (tau dz/dt = basal + apical)"),
        Parameter("capacitance", "capacitance", 300 * pF, "somatic capacitance C (Urbanczik & "
                  "Senn 2014); the dendro-somatic coupling conductances are C/tau"),
        Parameter("dendrites", "choice", "instant", "dendritic potentials follow their synaptic "
                  "input at once (instant, Sacramento et al. 2018: exact gradient flow) or as a "
                  "leaky membrane with time constant tau_dendrite (leaky)", ("instant", "leaky")),
        Parameter("tau_dendrite", "time", 1 * ms, "dendritic membrane time constant (leaky "
                  "dendrites)"),
        Parameter("compartment_encoding", "encoding", None, "code of the compartments "
                  "(default membrane potential v = -70 mV + 1 mV * value)"),
        Parameter("interneuron_encoding", "encoding", None, "code of the interneurons (default "
                  "rate r = 0 Hz + 10 Hz * value)"),
        Parameter("update", "update", None, "a learned iterative update (IterativeUpdate, one "
                  "latent level): gain branches driven by the errors multiply the somata's "
                  "drive; tau is then the iteration period (dt = tau: one Euler step is one "
                  "iteration)"),
    )

    def __init__(self, model, **params):
        super().__init__(model, **params)
        if model.flow is not None:
            raise ValueError("the dendritic circuit has no lateral front end; use a model without "
                             "a [flow] (or the rate circuit, whose front end computes it)")
        self.params["compartment_encoding"] = self.params["compartment_encoding"] or VoltageEncoding()
        self.params["interneuron_encoding"] = self.params["interneuron_encoding"] or RateEncoding()
        update = self.params["update"]
        if update is not None:
            if model.n_latent != 1:
                raise ValueError("update: a learned iterative update is written for models with "
                                 f"one latent level; this model has {model.n_latent}")
            if update.Ux.shape[1] != model.dims[0] or len(update.a) != model.dims[1]:
                raise ValueError(f"update: its weights are for data of dimension "
                                 f"{update.Ux.shape[1]} and {len(update.a)} latents; the model "
                                 f"has {model.dims[0]} and {model.dims[1]}")

    @property
    def tau(self) -> Quantity | None:
        return self.params["tau"]

    @property
    def leaky(self) -> bool:
        return self.params["dendrites"] == "leaky"

    def describe(self) -> dict:
        out = super().describe()
        out["coupling_conductance_nS"] = round(float(self.params["capacitance"] / self.params["tau"] / nS), 9)
        return out

    @property
    def update(self) -> IterativeUpdate | None:
        return self.params["update"]

    def checks(self) -> dict[str, str]:
        if self.update is not None:
            return {"learned_update": "tau dz/dt against the learned update's step at the "
                                      "circuit's state" + (", lagging while the leaky dendrites "
                                                           "settle" if self.leaky else
                                                           ": exact; with dt = tau each Euler "
                                                           "step is one iteration"),
                    "compartments": COMPARTMENTS,
                    "fixed_point": "the learned gain multiplies the gradient: the fixed points "
                                   "are the MAP's",
                    "elbo": ELBO}
        return {"gradient_flow": LAGGING_FLOW if self.leaky else EXACT_FLOW,
                "compartments": COMPARTMENTS + ", branch output against the MLP's hidden layer" +
                                ("; they lag while the leaky dendrites settle" if self.leaky
                                 else ", exact at every step"),
                "fixed_point": "fixed point: exact posterior mean (linear) or MAP (nonlinear)",
                "elbo": ELBO,
                "step_equivalence": "Euler step dt against gradient iterative inference with "
                                    "alpha = dt/tau: " + ("a real difference while dendrites lag"
                                                          if self.leaky else "round-off"),
                "variance_gap": "nonlinear links: grad_mu ELBO at posterior std s vs the update"}

    def skipped_checks(self) -> dict[str, str]:
        skipped = {"error_units": "the errors are dendritic potentials, compared by "
                                  "'compartments'",
                   "front_end": "the dendritic circuit has no lateral front end"}
        if self.update is not None:
            why = ("the somata follow the learned update (a state-dependent gain on the "
                   "gradient), compared by 'learned_update'")
            skipped.update({name: why for name in ("gradient_flow", "step_equivalence",
                                                   "variance_gap")})
        return skipped

    def euler_limits(self, x: np.ndarray, z: list) -> list:
        if self.update is None:
            limits = [gradient_flow_limit(self.model, self.params["tau"], x, z)]
        else:
            # the learned update is a discrete map: with dt = tau each Euler step is one of its
            # iterations (whose stability is the update's own, learned); dt < tau integrates its
            # continuous version; dt > tau would extrapolate beyond what was learned
            limits = [("tau", self.params["tau"], 2.0 / (1.0 + 1e-9),
                       "a learned update runs at most one iteration per step (dt <= tau)")]
        if self.leaky:
            limits.append(("tau_dendrite", self.params["tau_dendrite"], 1.0,
                           "the dendritic membrane's leak"))
        return limits

    # -- structure -------------------------------------------------------------------------------
    def build_structure(self) -> tuple[list[Population], list[Pathway]]:
        m, p = self.model, self.params
        L, dims = m.n_latent, m.dims
        venc, ienc = p["compartment_encoding"], p["interneuron_encoding"]
        dendrite = compartments.dendrite(p["tau_dendrite"] if self.leaky else None)
        identity = NONLINEARITIES["identity"]
        pops = [Population("data", "data", 0, dims[0], neurons.data_unit(), venc)]
        paths = []
        for l in range(L + 1):
            cov = m.level_covariance(l)
            cell, out = ("data", "x") if l == 0 else (f"soma_{l}", "z")
            constant = m.top_mean if l == L else m.links[l].b
            pops += [Population(f"apical_{l}", "apical", l, dims[l], dendrite, venc,
                                bias={"I_in": cov.weigh(constant[:, None])[:, 0]}),
                     Population(f"inter_{l}", "interneuron", l, dims[l],
                                compartments.interneuron(), ienc)]
            paths += [Pathway(f"ip_{l}", cell, out, f"inter_{l}", "I_in", np.ones(dims[l])),
                      Pathway(f"pi_{l}", f"inter_{l}", "inh", f"apical_{l}", "I_in",
                              -cov.weigh(np.ones(dims[l])))]
            if l > 0:
                link = m.links[l - 1]
                pops += [Population(f"soma_{l}", "value", l, dims[l], neurons.value_unit(
                             identity if link.is_mlp else link.nl, p["tau"],
                             gain=self.update is not None), venc,
                             bias={"I_gain": self.update.a} if self.update is not None else {}),
                         Population(f"basal_{l}", "basal", l, dims[l], dendrite, venc)]
                paths += [Pathway(f"bas_{l}", f"basal_{l}", "vd", f"soma_{l}", "I_bu",
                                  np.ones(dims[l])),
                          Pathway(f"api_{l}", f"apical_{l}", "vd", f"soma_{l}", "I_in",
                                  np.ones(dims[l]))]
            if l < L:
                link_pops, link_paths = self._link(l)
                pops += link_pops
                paths += link_paths
        if self.update is not None:
            pops_g, paths_g = self._gain()
            pops += pops_g
            paths += paths_g
        return pops, paths

    def _gain(self):
        """The learned update's branches (``docs/mathematics.md`` §13): ``tanh(U_x ε_x + U_z ε_z
        + U_μ z + c)`` from the apical potentials of the data cells (−ε_x) and of the cells
        themselves (−ε_z) and from their somata; their output, weighted by V, is the somata's
        gain on top of ``a``."""
        u = self.update
        pop = Population("gain_1", "branch", 1, len(u.c), neurons.hidden_unit(
            NONLINEARITIES["tanh"]), self.params["compartment_encoding"], bias={"I_in": u.c})
        return [pop], [Pathway("gx_1", "apical_0", "vd", "gain_1", "I_in", -u.Ux),
                       Pathway("gz_1", "apical_1", "vd", "gain_1", "I_in", -u.Uz),
                       Pathway("gmu_1", "soma_1", "z", "gain_1", "I_in", u.Umu.copy()),
                       Pathway("gain_1", "gain_1", "fu", "soma_1", "I_gain", u.V.copy())]

    def _link(self, l):
        """Top-down prediction into the apical trees of level l and the bottom-up error into the
        basal trees of level l + 1, through apical branches for an MLP link."""
        link, cov = self.model.links[l], self.model.level_covariance(l)
        above, d = f"soma_{l + 1}", self.model.dims[l]
        if not link.is_mlp:
            return [], [Pathway(f"td_{l}", above, "fz", f"apical_{l}", "I_in", cov.weigh(link.W)),
                        Pathway(f"bu_{l}", f"apical_{l}", "vd", f"basal_{l + 1}", "I_in",
                                -link.W.T)]
        hidden = link.A.shape[0]
        # branch (k, j) = unit k·hidden + j; cell k's branches feed cell k's trunk with W_k
        to_trunk = np.zeros((d, d * hidden))
        for k in range(d):
            to_trunk[k, k * hidden:(k + 1) * hidden] = link.W[k]
        branch = Population(f"branch_{l}", "branch", l, d * hidden,
                            neurons.hidden_unit(link.nl), self.params["compartment_encoding"],
                            bias={"I_in": np.tile(link.a, d)})
        return [branch], [
            Pathway(f"td_{l}", above, "z", branch.name, "I_in", np.tile(link.A, (d, 1))),
            Pathway(f"trunk_{l}", branch.name, "fu", f"apical_{l}", "I_in", cov.weigh(to_trunk)),
            Pathway(f"err_{l}", f"apical_{l}", "vd", branch.name, "I_bu", -to_trunk.T),
            Pathway(f"bu_{l}", branch.name, "back", f"basal_{l + 1}", "I_in",
                    np.tile(link.A.T, (1, d)))]
