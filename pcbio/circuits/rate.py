"""The rate-neuron predictive-coding circuit (``docs/mathematics.md`` §3; Bogacz 2017).

Populations, each ``batch × d`` units (unit ``b·d + k`` is dimension k of data point b):

* ``data`` — the stimulus x (level 0);
* ``value_l`` (l = 1 … L) — latent estimates, ``τ dz_l/dt = J_{l-1}ᵀ ε_{l-1} − ε_l``;
* ``error_l`` (l = 0 … L) — precision-weighted prediction errors ``ε_l = Π_l (z_l − g_l(z_{l+1}))``,
  instantaneous or with their own dynamics ``τ_ε dε/dt = z − g − Σ ε`` (Bogacz 2017 eqs. 12–14);
* ``inter_l`` — precision interneurons (Bogacz 2017 §5), with dynamic errors;
* ``hidden_l`` — the hidden units of an MLP link ``g_l(z) = W f(A z + a) + b``.

Pathways (weights per data point): ``zin_l`` z_l → error_l, ``pred_l`` f(z_{l+1}) → error_l
(−W), ``own_l`` ε_l → value_l (−1), ``bu_l`` ε_l → value_{l+1} (Wᵀ, gated by f'(z) in the value
unit), for MLP links ``fwd_l`` z → hidden (A) and ``back_l`` hidden → value (Aᵀ), and for
dynamic errors the precision pathways ``lat_l`` (−Σ) or ``sig_l``/``inh_l`` via interneurons.
Precision weighting of instantaneous errors is applied in one place, :meth:`RateCircuit._weigh`.
"""

from __future__ import annotations

import numpy as np
from brian2 import Quantity, ms

from ..encoding import RateEncoding
from ..neurons import rate as neurons
from ..nonlinearities import NONLINEARITIES
from .base import Circuit, gradient_flow_limit, register
from .parameters import Parameter
from .structure import Pathway, Population

EXACT_FLOW = ("instantaneous error units: dz/dt = grad_z log p(x, z) / tau exactly; for a "
              "linear-Gaussian model that is grad_mu ELBO for any posterior variance")
LAGGING_FLOW = ("dynamic error units: dz/dt equals grad_z log p / tau only once the error units "
                "have settled; the departure while they lag is measured")


LANGEVIN_ACCURACY = 8.0      # Euler limit factor for noisy value units: dt·λ/τ < 2/8


@register
class RateCircuit(Circuit):
    """A rate-neuron predictive-coding circuit for ``model`` (see the module docstring)."""

    kind = "rate"
    VARIANTS = ({}, {"errors": "dynamic", "precision": "interneuron"})
    description = "rate neurons: value, error and optional precision-interneuron populations"
    PARAMETERS = (
        Parameter("tau", "time", 10 * ms, "value-unit time constant (tau dz/dt = grad_z log p)"),
        Parameter("errors", "choice", "instant", "error units: algebraic (instant: exact gradient "
                  "flow) or with their own time constant (dynamic, Bogacz 2017 eqs. 12-14)",
                  ("instant", "dynamic")),
        Parameter("tau_error", "time", 2 * ms, "error-unit time constant (dynamic errors)"),
        Parameter("precision", "choice", "synaptic", "Sigma*eps through lateral weights "
                  "(synaptic) or a precision interneuron (interneuron, Bogacz 2017 sec. 5; "
                  "dynamic errors only)", ("synaptic", "interneuron")),
        Parameter("tau_inter", "time", 2 * ms, "precision-interneuron time constant"),
        Parameter("temperature", "nonnegative", 0.0, "Langevin noise on the value units: 0 is "
                  "the deterministic gradient flow to the MAP, 1 samples the posterior (Monte "
                  "Carlo predictive coding, Oliviers, Bogacz & Meulemans 2024)"),
        Parameter("top", "choice", "free", "the top latent level: inferred (free) or held at "
                  "its initial value (clamped: an input, as in supervised learning, Whittington "
                  "& Bogacz 2017)", ("free", "clamped")),
        Parameter("lateral", "choice", "auto", "front end for a model with a [flow]: lateral "
                  "inhibition computing the flow's normalized data, recurrent (steady state "
                  "(I + M)^-1 (x - m)) or feedforward (subtractive prediction and divisive "
                  "shunting); auto: recurrent when the model has a flow, else none",
                  ("auto", "none", "recurrent", "feedforward")),
        Parameter("tau_lateral", "time", 2 * ms, "lateral-unit time constant"),
        Parameter("value_encoding", "encoding", None,
                  "code of the value and data units (default rate code r = 0 Hz + 10 Hz * z)"),
        Parameter("error_encoding", "encoding", None,
                  "code of the error units and interneurons (default r = 0 Hz + 10 Hz * eps)"),
    )

    def __init__(self, model, **params):
        super().__init__(model, **params)
        p = self.params
        if p["precision"] == "interneuron" and p["errors"] != "dynamic":
            raise ValueError("precision='interneuron' needs errors='dynamic' (the interneuron "
                             "and error units settle together)")
        for name in ("value_encoding", "error_encoding"):
            p[name] = p[name] or RateEncoding()
        has_flow = model.flow is not None
        if p["lateral"] == "auto":
            p["lateral"] = "recurrent" if has_flow else "none"
        if has_flow != (p["lateral"] != "none"):
            raise ValueError("lateral='none' needs a model without a [flow], and a lateral front "
                             "end (recurrent or feedforward) a model with one" if has_flow else
                             f"lateral={p['lateral']!r} needs a model with a [flow] (the "
                             "transform the lateral units compute)")

    @property
    def tau(self) -> Quantity | None:
        return self.params["tau"]

    @property
    def instant(self) -> bool:
        return self.params["errors"] == "instant"

    @property
    def front_end(self) -> bool:
        return self.params["lateral"] != "none"

    def _lateral_system(self) -> tuple[np.ndarray, np.ndarray]:
        """The front end's steady state ``y = (S − L)⁻¹ (F x − b)`` as declared by its
        structure: ``F`` (feed-forward weights) and ``S − L`` (shunting gains minus lateral
        weights), both (d_0, d_0)."""
        pops, paths = self.structure()
        by_name = {pw.name: pw for pw in paths}
        shunt = next(p for p in pops if p.role == "lateral").params["shunt"]
        lateral = by_name["lat_y"].dense_matrix() if "lat_y" in by_name else 0.0
        return by_name["ff_y"].dense_matrix(), np.diag(shunt) - lateral

    def front_end_logdet(self) -> float:
        """``log |det ∂y/∂x|`` of the transform the lateral units' steady state computes, from
        the circuit's own weights: ``log |det F| − log |det (S − L)|``."""
        feedforward, system = self._lateral_system()
        return float(np.linalg.slogdet(feedforward)[1] - np.linalg.slogdet(system)[1])

    def describe(self) -> dict:
        out = super().describe()
        if self.front_end:
            out["front_end_logdet"] = self.front_end_logdet()
        return out

    @property
    def noisy(self) -> bool:
        return self.params["temperature"] > 0

    def checks(self) -> dict[str, str]:
        flow = EXACT_FLOW if self.instant else LAGGING_FLOW
        if self.noisy:
            flow += "; the recorded dz/dt is the drift of the noisy (Langevin) value units"
        checks = {"gradient_flow": flow,
                "error_units": "error units against eps computed from the value units",
                "fixed_point": "fixed point: exact posterior mean (linear) or MAP (nonlinear)",
                "elbo": "ELBO of the circuit state with the Laplace covariance at the reference",
                "step_equivalence": ("Euler step dt against gradient iterative inference with "
                                     "alpha = dt/tau: " + ("round-off" if self.instant else
                                                           "a real difference while errors lag")),
                "variance_gap": "nonlinear links: grad_mu ELBO at posterior std s vs the update",
                "front_end": "lateral units at the end against the flow's normalized data, and "
                             "the circuit's implied log-det against the flow's"}
        for name in self.skipped_checks():
            checks.pop(name)
        return checks

    def skipped_checks(self) -> dict[str, str]:
        skipped = ({"step_equivalence": "the lateral front end settles with its own time "
                                        "constant while gradient iterative inference sees the "
                                        "normalized data from the first step"}
                   if self.front_end else {"front_end": "the model has no [flow]"})
        if self.noisy:
            why = ("noisy value units (temperature > 0) sample around the fixed point instead "
                   "of reaching it")
            skipped.update({"fixed_point": why,
                            "step_equivalence": why + "; only the drift is a gradient step"})
        if self.params["top"] == "clamped":
            why = ("the top level is clamped (an input): the circuit follows the gradient of "
                   "log p(x, z) with z_L held fixed, not the posterior over every level")
            skipped.update({name: why for name in ("gradient_flow", "fixed_point", "elbo",
                                                    "step_equivalence", "variance_gap")})
        return skipped

    def euler_limits(self, x: np.ndarray, z: list) -> list:
        """Value units: the largest curvature of log p at ``z`` (for linear models the same for
        every data point); dynamic error units: the largest noise variance; interneurons: their
        leak."""
        model, p = self.model, self.params
        limits = [gradient_flow_limit(model, p["tau"], x, z)]
        lam = limits[0][2]
        if self.noisy:     # Euler–Maruyama inflates the sampled variance by 1/(1 − dt·λ/2τ)
            limits.append(("tau", p["tau"], LANGEVIN_ACCURACY * lam, "the largest curvature "
                           "of log p(x, z), times 8: noisy value units sample the posterior to "
                           "within a few percent only while dt*lambda/tau < 0.25"))
        if not self.instant:
            sig = max(np.linalg.eigvalsh(model.level_covariance(l).matrix).max()
                      for l in range(model.n_latent + 1))
            limits.append(("tau_error", p["tau_error"], sig, "the largest noise variance"))
        if p["precision"] == "interneuron":
            limits.append(("tau_inter", p["tau_inter"], 1.0, "the interneuron leak"))
        if self.front_end:
            rate = np.abs(np.linalg.eigvals(self._lateral_system()[1])).max()
            limits.append(("tau_lateral", p["tau_lateral"], rate,
                           "the fastest mode of the lateral units"))
        return limits

    # -- structure -------------------------------------------------------------------------------
    def _weigh(self, l, weights):
        """Weights of a pathway into error_l: ``Π_l W`` for instantaneous errors
        (:meth:`Covariance.weigh`), W itself for dynamic ones (Σ then acts laterally).
        ``weights``: (d_l, n) matrix or (d_l,) one-to-one vector."""
        return self.model.level_covariance(l).weigh(weights) if self.instant else weights

    def build_structure(self) -> tuple[list[Population], list[Pathway]]:
        m, p = self.model, self.params
        L, dims = m.n_latent, m.dims
        venc, eenc = p["value_encoding"], p["error_encoding"]
        error = neurons.instant_error_unit() if self.instant else neurons.dynamic_error_unit(p["tau_error"])
        identity = NONLINEARITIES["identity"]
        pops = [Population("data", "data", 0, dims[0], neurons.data_unit(), venc)]
        paths = []
        if self.front_end:
            pops_f, paths_f = self._front_end()
            pops += pops_f
            paths += paths_f
        for l in range(L + 1):
            cov = m.level_covariance(l)
            constant = m.top_mean if l == L else m.links[l].b
            pops.append(Population(f"error_{l}", "error", l, dims[l], error, eenc,
                                   bias={"I_in": -self._weigh(l, constant[:, None])[:, 0]}))
            below, out = (("lateral_y", "y") if self.front_end else ("data", "x")) if l == 0 \
                else (f"value_{l}", "z")
            paths.append(Pathway(f"zin_{l}", below, out, f"error_{l}", "I_in",
                                 self._weigh(l, np.ones(dims[l]))))
            if l > 0:
                link = m.links[l - 1]
                held = l == L and p["top"] == "clamped"
                pops.append(Population(f"value_{l}", "value", l, dims[l],
                                       neurons.value_unit(identity if link.is_mlp else link.nl,
                                                          p["tau"],
                                                          0.0 if held else p["temperature"]),
                                       venc))
                paths.append(Pathway(f"own_{l}", f"error_{l}", "eps", f"value_{l}", "I_in",
                                     -np.ones(dims[l])))
            if l < L:
                link_pops, link_paths = self._link(l)
                pops += link_pops
                paths += link_paths
            if not self.instant and p["precision"] == "synaptic":
                paths.append(Pathway(f"lat_{l}", f"error_{l}", "eps", f"error_{l}", "I_in",
                                     -(cov.variances if cov.is_diagonal else cov.matrix)))
            elif not self.instant:
                pops.append(Population(f"inter_{l}", "interneuron", l, dims[l],
                                       neurons.interneuron(p["tau_inter"]), eenc))
                paths += [Pathway(f"sig_{l}", f"error_{l}", "eps", f"inter_{l}", "I_in",
                                  cov.variances if cov.is_diagonal else cov.matrix),
                          Pathway(f"inh_{l}", f"inter_{l}", "inh", f"error_{l}", "I_in",
                                  -np.ones(dims[l]))]
        if p["top"] == "clamped":      # nothing drives the top value units: they keep their start
            paths = [pw for pw in paths if pw.post != f"value_{L}"]
        return pops, paths

    def _front_end(self):
        """Lateral units ``lateral_y`` computing the flow's ``y`` from the data
        (``docs/mathematics.md`` §11): recurrent — ``τ dy/dt = (x − m) − M y − y``, steady state
        ``(I + M)⁻¹ (x − m)``; feedforward — ``τ dy/dt = (I − P)(x − m) − β y``, a subtractive
        prediction from the other inputs and a divisive (shunting) gain β."""
        flow, d = self.model.flow, self.model.dims[0]
        if self.params["lateral"] == "recurrent":
            ff, shunt = np.ones(d), np.ones(d)
            lateral = [Pathway("lat_y", "lateral_y", "y", "lateral_y", "I_in", -flow.recurrent())]
        else:
            prediction, shunt = flow.autoregressive()
            ff, lateral = np.eye(d) - prediction, []
        pop = Population("lateral_y", "lateral", 0, d, neurons.lateral_unit(
            self.params["tau_lateral"]), self.params["value_encoding"],
            bias={"I_in": -(ff * flow.mean if ff.ndim == 1 else ff @ flow.mean)},
            params={"shunt": shunt})
        return [pop], [Pathway("ff_y", "data", "x", "lateral_y", "I_in", ff)] + lateral

    def _link(self, l):
        """Populations and pathways of link g_l (level l+1 → level l): the top-down prediction
        and the bottom-up error, through hidden units for an MLP link."""
        link, above = self.model.links[l], f"value_{l + 1}"
        if not link.is_mlp:
            return [], [Pathway(f"pred_{l}", above, "fz", f"error_{l}", "I_in",
                                -self._weigh(l, link.W)),
                        Pathway(f"bu_{l}", f"error_{l}", "eps", above, "I_bu", link.W.T.copy())]
        hidden = f"hidden_{l}"
        pop = Population(hidden, "hidden", l, link.A.shape[0], neurons.hidden_unit(link.nl),
                         self.params["value_encoding"], bias={"I_in": link.a})
        return [pop], [Pathway(f"fwd_{l}", above, "z", hidden, "I_in", link.A),
                       Pathway(f"pred_{l}", hidden, "fu", f"error_{l}", "I_in",
                               -self._weigh(l, link.W)),
                       Pathway(f"bu_{l}", f"error_{l}", "eps", hidden, "I_bu", link.W.T.copy()),
                       Pathway(f"back_{l}", hidden, "back", above, "I_bu", link.A.T.copy())]
