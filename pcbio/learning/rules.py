"""Learning rules: how the generative model's parameters θ change (``docs/mathematics.md`` §10).

Every rule is ascent on the average over a minibatch of N data points, ``θ ← θ + η g / N``:

* **ELBO gradient** (VAE side): ``g = ∇_θ ELBO(q)``, from :func:`pcbio.inference.elbo_gradient`.
  With the exact posterior of a linear model it is ``∇_θ log p(x)`` (Fisher's identity):
  variational EM.
* **Local (Hebbian) rule** (circuits): ``g = ∇_θ log p(x, z)`` at the circuit's state, computed
  from the circuit's *own* error units — ``ΔW_l ∝ ε_l f(z_{l+1})ᵀ`` (postsynaptic error times
  presynaptic rate), ``Δb_l ∝ ε_l``, ``ΔΣ_l ∝ ½(ε_l ε_lᵀ − Π_l)`` — by the one equation of it,
  :meth:`pcbio.model.GenerativeModel.parameter_gradient`, fed with measured activity
  (:func:`activity_gradient`).  It equals the ELBO gradient only as the posterior spread
  s → 0; for a linear model at the posterior mean the difference is exactly ``N Π W S``
  (S the posterior covariance).  With noisy value units at temperature 1 (Langevin sampling of
  the posterior) it is an unbiased one-sample estimate of ``∇_θ log p(x)`` (Oliviers, Bogacz &
  Meulemans 2024).
* **Decorrelating lateral rule** (Földiák 1990; Atick & Redlich 1993): the lateral weights of a
  recurrent whitening front end change by ``ΔM ∝ y yᵀ − I`` (anti-Hebbian: correlated outputs
  inhibit each other more) and its mean by ``Δm ∝ x − m``; the fixed point ``E[y yᵀ] = I`` makes
  ``(I + M)² = C`` — ZCA whitening (:func:`lateral_step`).
* **Interneuron variance rule** (Bogacz 2017 §5, eq. 59): ``ΔΣ ∝ ε eᵀ − I`` with ``e`` the
  precision interneurons' activity (``Σ ε`` once they settle): local to the synapse from error
  unit to interneuron, and with the same fixed point ``Σ = E[r rᵀ]`` as the gradient rule.

Variances never fall below a floor (Bogacz 2017 and Friston 2005 keep them positive the same
way): the noise of a pixel that never varies would otherwise shrink to 0 and its precision
diverge.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..checks import MIN_VARIANCE, positive_number
from ..covariance import Covariance
from ..model import Forward, GenerativeModel, ParameterGradient

if TYPE_CHECKING:
    from ..flows import LinearFlow


@dataclass(frozen=True)
class LearningRates:
    """Learning rates η (dimensionless, per update of the average over a minibatch) for each
    kind of parameter (0: held fixed), and the floor on every learned variance."""
    weights: float = 0.0
    bias: float = 0.0
    cov: float = 0.0
    top_mean: float = 0.0
    top_cov: float = 0.0
    lateral: float = 0.0
    variance_floor: float = 1e-3

    def __post_init__(self):
        for name, value in asdict(self).items():
            positive_number(value, f"learning rate {name}" if name != "variance_floor"
                            else name, allow_zero=name != "variance_floor")
        if self.variance_floor < MIN_VARIANCE:
            raise ValueError(f"variance_floor must be >= {MIN_VARIANCE:g}, got {self.variance_floor}")

    def to_json(self) -> dict:
        return asdict(self)

    def scaled(self, factor: float) -> "LearningRates":
        """Every rate times ``factor`` (an annealing schedule); the floor unchanged."""
        return LearningRates(**{k: v * factor for k, v in asdict(self).items()
                                if k != "variance_floor"}, variance_floor=self.variance_floor)


def activity_gradient(model: GenerativeModel, x: np.ndarray, z: list, eps: list,
                      inter: list | None = None) -> ParameterGradient:
    """The circuits' local rule from measured activity: data ``x`` (N, d_0), value units ``z``
    (list of (N, d_l), l = 1 … L) and error units ``eps`` (list of (N, d_l), l = 0 … L), summed
    over the N data points.  With ``inter`` (the precision interneurons' activity, levels 0 … L)
    the covariances learn by the interneuron rule instead of the gradient rule.  Affine links
    ``W f(z) + b`` only (an MLP link's hidden units are not plastic)."""
    check_local_learning(model)
    fu = [link.nl.f(zl) for link, zl in zip(model.links, z)]
    fw = Forward(z=list(z), u=list(z), fu=fu, residuals=None, errors=list(eps))
    grad = model.parameter_gradient(x, z, forward=fw)
    if inter is not None:
        covs = model.covariances
        rules = [interneuron_rule(c, e, i) for c, e, i in zip(covs, eps, inter)]
        for link_grad, rule in zip(grad.links, rules):
            link_grad.cov = rule
        grad.top_cov = rules[-1]
    return grad


def check_local_learning(model: GenerativeModel) -> None:
    """Circuits learn affine links ``W f(z) + b``: an MLP link's hidden units are not plastic."""
    if any(link.is_mlp for link in model.links):
        raise ValueError("local learning in a circuit supports affine links W f(z) + b; learn "
                         "MLP links on the VAE side (pcbio learn --circuit vae)")


def interneuron_rule(cov: Covariance, eps: np.ndarray, inter: np.ndarray) -> np.ndarray:
    """Bogacz (2017) §5: ``Σ_n (ε_n e_nᵀ − I)`` in the covariance's own form (matrix, diagonal
    or trace for a scalar variance); ``eps``, ``inter`` (N, d)."""
    n = len(eps)
    if cov.kind == "full":
        outer = eps.T @ inter
        return 0.5 * (outer + outer.T) - n * np.eye(cov.dim)
    if cov.kind == "diag":
        return np.einsum("ni,ni->i", eps, inter) - n
    return float(np.sum(eps * inter)) - n * cov.dim


def _stepped_cov(cov: Covariance, grad, rate: float, n: int, floor: float):
    """``Σ + η g / n`` with every eigenvalue at least ``floor``, in Σ's own form."""
    if rate == 0:
        return cov.value
    value = cov.value + rate * np.asarray(grad) / n
    if cov.kind != "full":
        return np.maximum(value, floor)
    lam, vec = np.linalg.eigh(0.5 * (value + value.T))
    return (vec * np.maximum(lam, floor)) @ vec.T


def apply_gradient(model: GenerativeModel, grad: ParameterGradient, rates: LearningRates,
                   n: int) -> GenerativeModel:
    """The model after one ascent step ``θ + η g / n`` (``n``: data points ``g`` is summed over)."""
    links = []
    for link, g in zip(model.links, grad.links):
        params = dict(weights=link.W + rates.weights * g.weights / n,
                      bias=link.b + rates.bias * g.bias / n,
                      cov=_stepped_cov(link.cov, g.cov, rates.cov, n, rates.variance_floor))
        if link.is_mlp:
            params.update(hidden_weights=link.A + rates.weights * g.hidden_weights / n,
                          hidden_bias=link.a + rates.bias * g.hidden_bias / n)
        links.append(link.replaced(**params))
    return model.replaced(links=links, top_mean=model.top_mean + rates.top_mean * grad.top_mean / n,
                          top_cov=_stepped_cov(model.top_cov, grad.top_cov, rates.top_cov, n,
                                               rates.variance_floor))


def compare_updates(update: ParameterGradient, reference: ParameterGradient) -> dict:
    """How far a rule's update is from a reference gradient: cosine and relative difference
    ``‖g − g_ref‖ / ‖g_ref‖`` per link's weights (lists, bottom-up) and over all weights."""
    def measures(a, b):
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return (float(a @ b / (na * nb)) if na > 0 and nb > 0 else float("nan"),
                float(np.linalg.norm(a - b) / nb) if nb > 0 else float("nan"))
    pairs = [(g.weights.ravel(), ref.weights.ravel()) for g, ref in zip(update.links,
                                                                      reference.links)]
    per_link = [measures(a, b) for a, b in pairs]
    every = measures(np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs]))
    return {"weight_cosine": [c for c, _ in per_link],
            "weight_relative_gap": [r for _, r in per_link],
            "weight_cosine_all": every[0], "weight_relative_gap_all": every[1]}


def mean_variances(model: GenerativeModel) -> list[float]:
    """The mean noise variance of each level 0 … L (what a record of learning tracks)."""
    return [float(np.mean(cov.variances)) for cov in model.covariances]


def lateral_step(flow: LinearFlow, x: np.ndarray, y: np.ndarray, rate: float) -> LinearFlow:
    """The recurrent front end after one decorrelating step from data ``x`` (N, d) and its
    lateral units' output ``y`` (N, d): ``M + η (Σ_n y_n y_nᵀ / N − I)``, ``m + η (x̄ − m)``.
    Raises :class:`~pcbio.errors.SimulationError` if ``I + M`` stops being positive definite
    (the lateral circuit would be unstable)."""
    from ..errors import SimulationError
    from ..flows import LinearFlow
    n, d = y.shape
    lateral = flow.recurrent() + rate * (y.T @ y / n - np.eye(d))
    lateral = 0.5 * (lateral + lateral.T)
    if np.linalg.eigvalsh(np.eye(d) + lateral)[0] <= 0:
        raise SimulationError("the decorrelating rule made the lateral circuit unstable (I + M "
                              "is no longer positive definite); lower the lateral learning rate")
    return LinearFlow.from_recurrent(flow.mean + rate * (x.mean(axis=0) - flow.mean), lateral)
