"""The mapping layer: how far a circuit's dynamics are from the VAE side, step by step and level
by level.

For a :class:`~pcbio.Trajectory` of any circuit, on the model and data it ran on:

* **gradient agreement** — the circuit's own ``dz_l/dt`` against ``∇_{μ_l} L / τ`` evaluated at the
  circuit's state (relative error and cosine, per recorded step and level);
* **error units** — decoded error-unit activity against ``ε_l`` computed from the value units;
* **fixed point** — the final state against the reference: the exact posterior mean (linear
  models) or the MAP estimate from the VAE side (nonlinear models);
* **ELBO along the trajectory** — of ``q_t = N(z(t), S)``, S the Laplace covariance at the
  reference (for linear models the exact posterior covariance, so the ELBO reaches ``log p(x)``);
* **step equivalence** — a circuit with instantaneous errors and Euler step dt against gradient
  iterative inference with ``α = dt/τ``;
* **the variance gap** — for nonlinear links, how far the circuit's update ``∇_z log p(z)`` is from
  ``∇_μ L`` of a q with posterior standard deviation s, as s grows.

Each circuit kind declares which of these apply to it (:meth:`Circuit.checks`); the mapping runs
exactly those, and its report lists them (``applicable_checks``) and says why each other one was
left out (``skipped_checks``).  Which exactness condition applies is stated in every report
(``docs/mathematics.md`` §4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from brian2 import Quantity, second

from .inference import (GaussianPosterior, elbo, elbo_gradient, exact_posterior,
                        gradient_inference, laplace_posterior, log_evidence, map_estimate)
from .checks import positive_number
from .inference.amortized import IterativeUpdate
from .model import GenerativeModel
from .progress import Reporter
from .trajectory import CircuitRunInfo, Trajectory

EXACTNESS = {
    "linear": ("linear-Gaussian model: grad_mu ELBO = J^T eps_below - eps_own at z = mu exactly, for "
               "any posterior variance; the circuit's fixed point is the exact posterior mean"),
    "nonlinear": ("nonlinear links: the circuit follows grad_z log p(x, z), which equals grad_mu ELBO "
                  "only as the posterior variance s -> 0 (MAP / point posterior) or under the Laplace "
                  "linearisation; its fixed point is the MAP estimate. The gap at s > 0 is measured "
                  "in 'variance_gap'"),
}
#: steps whose reference gradient norm is below this fraction of its largest value are left out of
#: relative-error statistics.  At the fixed point the gradient vanishes and a relative error is
#: 0/0; near it, two independent computations of the same gradient (the circuit's and the VAE
#: side's) differ by round-off of their *terms*, ε·‖terms‖, which relative to a gradient 10⁶
#: times smaller than its peak is still only ~1e-10.
NEGLIGIBLE = 1e-6


def _spread(n, points):
    """At most ``points`` indices spread evenly over 0 … n-1, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(points, n)).astype(int))


def _norm(a, axis):
    return np.sqrt(np.sum(a * a, axis=axis))


def relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``‖a − b‖ / ‖b‖`` per leading index, norms over the last two axes (batch, units); NaN where
    ``‖b‖`` is negligible."""
    nb = _norm(b, (-2, -1))
    rel = _norm(a - b, (-2, -1)) / np.where(nb > 0, nb, 1.0)
    return np.where(nb > NEGLIGIBLE * nb.max(initial=0.0), rel, np.nan)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine between a and b per leading index (over batch and units); NaN where either is ~0."""
    na, nb = _norm(a, (-2, -1)), _norm(b, (-2, -1))
    cos = np.sum(a * b, axis=(-2, -1)) / np.where(na * nb > 0, na * nb, 1.0)
    return np.where((nb > NEGLIGIBLE * nb.max(initial=0.0)) & (na > 0), cos, np.nan)


def reference_point(model: GenerativeModel, x: np.ndarray) -> tuple[list[np.ndarray], str]:
    """The fixed point a circuit should reach: ``(z, name)`` — exact posterior mean for linear
    models, MAP for nonlinear ones."""
    if model.is_linear:
        return exact_posterior(model, x).means, "exact_posterior"
    return map_estimate(model, x)[0], "map"


def gradient_series(traj: Trajectory, model: GenerativeModel, x: np.ndarray,
                    posterior_std: float | None = None, n_samples: int = 256,
                    seed: int = 0) -> tuple:
    """Per latent level, (T,) relative error and cosine between the circuit's ``dz/dt`` and
    ``∇_μ L / τ`` at the circuit's state.  ``posterior_std=None``: the point-posterior limit s → 0,
    ``∇_z log p`` (exact for linear models at any s); a number s: ``∇_μ L`` of
    ``q = N(z(t), s² I)`` (exact for linear models, antithetic Monte Carlo otherwise).  Also returns
    the two arrays compared (lists of (T, batch, d))."""
    tau = traj.info.tau_s
    if posterior_std is None:
        grads = model.grad_log_joint(x, traj.means)
    else:
        T, B = len(traj), len(x)
        means = [m.reshape(T * B, -1) for m in traj.means]
        q = GaussianPosterior(means, log_var=[np.full_like(m, 2 * np.log(posterior_std))
                                              for m in means])
        g = elbo_gradient(model, np.tile(x, (T, 1)), q, n_samples=n_samples, seed=seed,
                          parameters=False, antithetic=not model.is_linear)
        grads = [gm.reshape(T, B, -1) for gm in g.means]
    grads = [g / tau for g in grads]
    return ([relative_error(d, g) for d, g in zip(traj.dzdt, grads)],
            [cosine(d, g) for d, g in zip(traj.dzdt, grads)], traj.dzdt, grads)


def error_series(traj: Trajectory, model: GenerativeModel, x: np.ndarray) -> list[np.ndarray]:
    """Per level 0 … L, (T,) relative error of the error units against ``ε`` from the value units."""
    return [relative_error(e, ref) for e, ref in zip(traj.errors, model.errors(x, traj.means))]


def compartment_series(traj: Trajectory, model: GenerativeModel, x: np.ndarray) -> dict:
    """The dendritic compartments against the two terms of ``∇_z log p`` at the somata's state
    (``docs/mathematics.md`` §12), each (T,) relative errors per level:

    * ``basal`` (levels 1 … L): the basal potential against the bottom-up error ``Wᵀ ε_{l-1}``
      (the soma's ``f'(z)`` gates it: their product is ``J_{l-1}ᵀ ε_{l-1}``), or ``J_{l-1}ᵀ ε_{l-1}``
      itself for an MLP link, whose branches gate it;
    * ``apical`` (levels 0 … L): the apical potential against ``−ε_l``;
    * ``branch`` (MLP links l): each branch's output ``f(u)`` against the MLP's hidden layer
      ``f(A z_{l+1} + a)`` of its cell.

    Returns name → list of (T,) arrays, and name → the levels they belong to."""
    eps = model.errors(x, traj.means)
    values = [np.broadcast_to(x, eps[0].shape)] + list(traj.means)
    out, levels = {"basal": [], "apical": [], "branch": []}, {"basal": [], "apical": [], "branch": []}
    for l, e in enumerate(eps):
        out["apical"].append(relative_error(traj.compartments[f"apical_{l}"], -e))
        levels["apical"].append(l)
        if l == 0:
            continue
        link = model.links[l - 1]
        bottom_up = link.vjp(values[l], eps[l - 1]) if link.is_mlp else eps[l - 1] @ link.W
        out["basal"].append(relative_error(traj.compartments[f"basal_{l}"], bottom_up))
        levels["basal"].append(l)
        if link.is_mlp:
            hidden = link.nl.f(link.preactivation(values[l]))
            T, B, d = eps[l - 1].shape
            branches = link.nl.f(traj.compartments[f"branch_{l - 1}"]).reshape(T, B, d, -1)
            out["branch"].append(relative_error(branches.reshape(T, B * d, -1),
                                                np.repeat(hidden, d, axis=1)))
            levels["branch"].append(l - 1)
    return out, levels


def elbo_series(model: GenerativeModel, x: np.ndarray, traj: Trajectory,
                reference: list[np.ndarray], max_points: int = 100, n_samples: int = 256,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ELBO of ``N(z(t), S)`` along the trajectory (S: Laplace covariance at ``reference``), at up
    to ``max_points`` recorded steps.  Returns (indices, values (n, batch), stderr (n, batch))."""
    S = laplace_posterior(model, x, reference).cov
    idx = _spread(len(traj), max_points)
    vals, errs = [], []
    for k in idx:
        est = elbo(model, x, GaussianPosterior(traj.at(k), cov=S), n_samples=n_samples, seed=seed)
        vals.append(est.value)
        errs.append(est.stderr)
    return idx, np.array(vals), np.array(errs)


def step_equivalence(circuit_traj: Trajectory, vae_traj: Trajectory) -> list[float]:
    """Largest absolute difference per level between a circuit trajectory (times in s) and an
    iterative-inference trajectory (times in steps) at the Euler steps both recorded."""
    c_steps = np.rint(circuit_traj.t / circuit_traj.info.dt_s).astype(int)
    _, ci, vi = np.intersect1d(c_steps, vae_traj.t.astype(int), return_indices=True)
    return [float(np.abs(c[ci] - v[vi]).max()) for c, v in zip(circuit_traj.means, vae_traj.means)]


def variance_gap(model: GenerativeModel, x: np.ndarray, z: list[np.ndarray],
                 s_values: Sequence[float], n_samples: int = 2000, repeats: int = 5,
                 seed: int = 0) -> list[dict]:
    """Relative gap ``‖∇_μ L(N(z, s² I)) − ∇_z log p(z)‖ / ‖∇_z log p(z)‖`` (all levels together)
    for each posterior standard deviation ``s``, with its Monte-Carlo standard error from
    ``repeats`` independent seeds.  Antithetic sampling removes the O(s) noise term, so the
    O(s²) bias shows at small s.  Exactly 0 for linear models (computed exactly there)."""
    for s in s_values:
        positive_number(s, "s_values (posterior standard deviations)")
    pc = np.concatenate(model.grad_log_joint(x, z), axis=-1)
    out = []
    for s in s_values:
        q = GaussianPosterior(z, log_var=[np.full_like(zl, 2 * np.log(s)) for zl in z])
        gaps = []
        for r in range(1 if model.is_linear else repeats):
            g = elbo_gradient(model, x, q, n_samples=n_samples, seed=seed + r, parameters=False,
                              antithetic=not model.is_linear)
            gaps.append(float(_norm(np.concatenate(g.means, -1) - pc, (-2, -1)) / _norm(pc, (-2, -1))))
        out.append({"s": float(s), "rel_gap": float(np.mean(gaps)),
                    "stderr": float(np.std(gaps, ddof=1) / np.sqrt(len(gaps))) if len(gaps) > 1 else 0.0})
    return out


def _stat(fn, a):
    a = np.asarray(a)
    return float(fn(a[np.isfinite(a)])) if np.isfinite(a).any() else None


@dataclass
class MappingResult:
    """A mapping report (``report``: JSON-ready dict) and the series behind its figure."""
    report: dict
    series: dict = field(default_factory=dict)

    def series_json(self, max_points: int = 200) -> dict:
        """The series behind the mapping figure, thinned to at most ``max_points`` recorded
        steps, as plain lists (times in s, derivatives in 1/s)."""
        s = self.series
        k = _spread(len(s["t"]), max_points)
        out = {"t_s": s["t"][k], "means": [m[k] for m in s["means"]], "reference": s["reference"]}
        for name, key in (("grad_rel_err", "rel"), ("grad_cosine", "cos"), ("dzdt", "dzdt"),
                          ("grad_over_tau", "grads"), ("error_units_rel_err", "errors_rel")):
            if key in s:
                out[name] = [a[k] for a in s[key]]
        if "elbo" in s:
            out.update(elbo_t_s=s["elbo_t"], elbo=s["elbo"], elbo_stderr=s["elbo_stderr"],
                       log_px=s["log_px"])
        if "vae_means" in s:
            kv = _spread(len(s["vae_t"]), max_points)
            out.update(vae_t_s=s["vae_t"][kv], vae_means=[m[kv] for m in s["vae_means"]])
        return out


@dataclass
class _Context:
    """What every comparison needs: the run, the model, the data and the reference point."""
    traj: Trajectory
    model: GenerativeModel
    x: np.ndarray
    reference: list
    levels: list
    report: dict
    series: dict
    seed: int
    n_samples: int
    data: np.ndarray = None
    update: object = None

    @property
    def seen(self) -> np.ndarray:
        """The data the value and error units saw at each recorded step: the lateral units'
        normalized data (T, batch, d_0) behind a front end (it settles with its own time
        constant), else ``x``."""
        return self.x if self.traj.normalized is None else self.traj.normalized[0]


def _check_gradient_flow(c, posterior_std=None, **_):
    rel, cos, dzdt, grads = gradient_series(c.traj, c.model,
                                            c.seen if posterior_std is None else c.x,
                                            posterior_std, c.n_samples, c.seed)
    for l, lev in enumerate(c.levels):
        lev.update(grad_rel_err_median=_stat(np.median, rel[l]), grad_rel_err_max=_stat(np.max, rel[l]),
                   grad_cosine_min=_stat(np.min, cos[l]), grad_cosine_median=_stat(np.median, cos[l]))
    c.report["gradient_compared"] = (
        "grad_z log p(x, z) (posterior std s -> 0)" if posterior_std is None
        else f"grad_mu ELBO of N(z(t), s^2 I), s = {posterior_std}")
    c.series.update(rel=rel, cos=cos, dzdt=dzdt, grads=grads)


def _check_error_units(c, **_):
    err = error_series(c.traj, c.model, c.seen)
    for l, lev in enumerate(c.levels):
        lev.update(error_units_rel_err_median=_stat(np.median, err[l + 1]),
                   error_units_rel_err_max=_stat(np.max, err[l + 1]))
    c.report["data_level"] = {"error_units_rel_err_median": _stat(np.median, err[0]),
                              "error_units_rel_err_max": _stat(np.max, err[0])}
    c.series["errors_rel"] = err


def _check_fixed_point(c, **_):
    final = c.traj.final_means()
    for l, lev in enumerate(c.levels):
        ref = c.reference[l]
        lev.update(fixed_point_rel_err=float(_norm(final[l] - ref, (-2, -1))
                                             / max(_norm(ref, (-2, -1)), 1e-300)),
                   fixed_point_abs_err=float(np.abs(final[l] - ref).max()))
    c.report["final_means"] = [f.tolist() for f in final]


def _check_compartments(c, **_):
    series, levels = compartment_series(c.traj, c.model, c.seen)
    names = {"basal": "basal_vs_bottom_up", "apical": "apical_vs_own_error",
             "branch": "branch_vs_hidden_layer"}
    by_level = {lev["level"]: lev for lev in c.levels}
    by_level[0] = c.report.setdefault("data_level", {})
    for key, rels in series.items():
        for l, rel in zip(levels[key], rels):
            by_level[l].update({f"{names[key]}_rel_err_median": _stat(np.median, rel),
                                f"{names[key]}_rel_err_max": _stat(np.max, rel)})
    c.report["compartments_note"] = (
        "per recorded step: basal potential vs the bottom-up error W^T eps (J^T eps for MLP "
        "links), apical potential vs -eps of the cell's level, branch output vs the MLP's "
        "hidden layer of the level above; relative errors")
    c.series["compartments_rel"] = series


def _check_learned_update(c, **_):
    """τ dz/dt of the circuit against the learned update's step ``μ_{t+1} − μ_t`` at the
    circuit's own state, per recorded step."""
    info, (T, B, D) = c.traj.info, c.traj.means[0].shape
    flat = c.traj.means[0].reshape(T * B, D)
    x = np.tile(c.seen, (T, 1))
    step = (c.update.step(c.model, x, flat)[0] - flat).reshape(T, B, D)
    rel = relative_error(c.traj.dzdt[0] * info.tau_s, step)
    c.levels[0].update(learned_update_rel_err_median=_stat(np.median, rel),
                       learned_update_rel_err_max=_stat(np.max, rel))
    c.series["learned_update_rel"] = rel


def _check_elbo(c, **_):
    idx, elbos, elbo_se = elbo_series(c.model, c.x, c.traj, c.reference, n_samples=c.n_samples,
                                      seed=c.seed)
    log_px = log_evidence(c.model, c.x) if c.model.is_linear else None
    c.report["elbo"] = {"q": "N(circuit state, Laplace covariance at the reference)",
                        "initial": elbos[0].tolist(), "final": elbos[-1].tolist(),
                        "final_stderr": elbo_se[-1].tolist(),
                        "log_px": None if log_px is None else log_px.tolist()}
    c.series.update(elbo_t=c.traj.t[idx], elbo=elbos, elbo_stderr=elbo_se, log_px=log_px)


def _check_step_equivalence(c, **_):
    info = c.traj.info
    steps = int(round(info.duration_s / info.dt_s))
    every = int(round(info.record_dt_s / info.dt_s))
    vae_traj = gradient_inference(c.model, c.x, steps=steps - 1, step_size=info.dt_s / info.tau_s,
                                  init=c.traj.at(0), record_every=every)
    c.report["step_equivalence_max_abs"] = step_equivalence(c.traj, vae_traj)
    c.report["step_equivalence_note"] = (
        "max |circuit - gradient iterative inference (alpha = dt/tau)| per level; round-off "
        "for instantaneous errors, a real difference for dynamic ones")
    c.series.update(vae_t=vae_traj.t * info.dt_s, vae_means=vae_traj.means)


def _check_variance_gap(c, s_values=(), **_):
    xs, probe = _probe_states(c.traj, c.x)
    c.report["variance_gap"] = variance_gap(c.model, xs, probe, s_values, seed=c.seed)
    c.report["variance_gap_note"] = (
        "relative gap between grad_mu ELBO at posterior std s and the circuit's update "
        "grad_z log p, at a circuit state away from the fixed point; ~0 as s -> 0 and growing with s")


def _check_front_end(c, **_):
    flow, y = c.model.flow, c.traj.normalized[0][-1]
    c.report["front_end"] = {
        "output_rel_err": float(_norm(y - c.x, (-2, -1)) / max(_norm(c.x, (-2, -1)), 1e-300)),
        "output_max_abs_err": float(np.abs(y - c.x).max()),
        "logdet_circuit": c.traj.info.circuit["front_end_logdet"], "logdet_flow": flow.logdet,
        "flow_kind": flow.kind,
        "note": "lateral units at the end of the run against the flow's normalized data y; "
                "log |det dy/dx| of the lateral circuit's steady state against the flow's"}


def firing_statistics(traj: Trajectory) -> dict:
    """Per spiking population: mean and largest rate over its units (Hz), the coefficient of
    variation of inter-spike intervals (averaged over units with at least 3 spikes; 1 for a
    Poisson process, 0 for a clock) and the fraction of units that never fired."""
    out = {}
    duration = traj.info.duration_s
    for name, (idx, times) in traj.spikes.items():
        units = int(np.prod(traj.raw[name].shape[1:]))
        counts = np.bincount(idx, minlength=units)
        order = np.lexsort((times, idx))
        per_unit = np.split(times[order], np.cumsum(counts)[:-1])
        cvs = [np.std(np.diff(t)) / np.mean(np.diff(t)) for t in per_unit if len(t) >= 3]
        rates = counts / duration
        out[name] = {"mean_rate_hz": float(rates.mean()), "max_rate_hz": float(rates.max()),
                     "cv_isi": float(np.mean(cvs)) if cvs else None,
                     "fraction_silent": float(np.mean(counts == 0)), "units": units}
    return out


def _check_firing(c, **_):
    c.report["firing"] = firing_statistics(c.traj)


def _check_rate_equivalence(c, **_):
    """The rate circuit (instantaneous errors) on the same model, data, τ, dt and start: the
    decoded trajectory's distance from it over time, per level."""
    from .circuits import build_circuit
    from .simulate import simulate
    info = c.traj.info
    every = max(1, int(round(info.record_dt_s / info.dt_s)))
    rate = simulate(build_circuit(c.model, "rate", tau=info.tau_s * second), c.x,
                    duration=info.duration_s * second, dt=info.dt_s * second, target="numpy",
                    init=c.traj.at(0), record_every=every)
    T = min(len(rate), len(c.traj))
    rel = [relative_error(a[:T], b[:T]) for a, b in zip(c.traj.means, rate.means)]
    for lev, r in zip(c.levels, rel):
        lev.update(rate_equivalence_rel_err_median=_stat(np.median, r),
                   rate_equivalence_rel_err_final=_stat(lambda a: a[-1], r))
    c.series.update(rate_t=rate.t[:T], rate_means=[m[:T] for m in rate.means])


#: every comparison the mapping layer knows: name -> (what it compares, function)
CHECKS = {
    "gradient_flow": ("the circuit's dz/dt against grad_mu ELBO / tau at its own state, per "
                      "recorded step and level", _check_gradient_flow),
    "error_units": ("decoded error units against eps computed from the value units",
                    _check_error_units),
    "fixed_point": ("the final state against the exact posterior mean (linear) or the MAP",
                    _check_fixed_point),
    "compartments": ("dendritic potentials against the two terms of the gradient: basal vs the "
                     "bottom-up error, apical vs the own-level error, branches vs the MLP's "
                     "hidden layer", _check_compartments),
    "learned_update": ("the somata's tau dz/dt against a learned iterative update's step "
                       "at the circuit's state", _check_learned_update),
    "elbo": ("the ELBO of N(circuit state, Laplace covariance at the reference) along the run",
             _check_elbo),
    "step_equivalence": ("Euler steps of the circuit against gradient iterative inference with "
                         "alpha = dt/tau", _check_step_equivalence),
    "variance_gap": ("for nonlinear links, grad_mu ELBO at posterior std s against the circuit's "
                     "update grad_z log p, as s grows", _check_variance_gap),
    "firing": ("per spiking population: mean and largest rate, ISI variability, silent fraction",
               _check_firing),
    "rate_equivalence": ("the decoded trajectory against the rate circuit's on the same model, "
                         "data, tau and start", _check_rate_equivalence),
    "front_end": ("lateral-inhibition units against the flow's normalized data, and their "
                  "implied log-determinant against the flow's", _check_front_end),
}


def _unavailable(name, traj, model, update=None):
    """Why a check the circuit declares cannot run on this trajectory and model (or None)."""
    if name == "learned_update" and update is None:
        return "the learned update was not given to map_trajectory (update=...)"
    if name == "variance_gap" and model.is_linear:
        return "linear model: grad_mu ELBO does not depend on s, the gap is exactly 0"
    if name in ("gradient_flow", "step_equivalence") and (traj.dzdt is None or traj.info.tau_s is None):
        return "the run has no dz/dt or no gradient-flow time constant"
    if name == "error_units" and traj.errors is None:
        return "the circuit has no error units"
    return None


def map_trajectory(traj: Trajectory, model: GenerativeModel, x: np.ndarray,
                   s_values: Sequence[float] = (0.01, 0.03, 0.1, 0.3, 1.0),
                   n_samples: int = 256, seed: int = 0, vae: bool = True,
                   posterior_std: float | None = None,
                   update: IterativeUpdate | None = None) -> MappingResult:
    """Compare a circuit trajectory with the VAE side, running exactly the comparisons the
    circuit declares (``traj.info.checks``; see :data:`CHECKS`).

    Parameters
    ----------
    traj : Trajectory of a circuit run on ``x`` (batch, d_0)
    s_values : posterior standard deviations for the variance gap (nonlinear models)
    vae : run the step-equivalence comparison (gradient iterative inference with α = dt/τ)
        where the circuit declares it
    posterior_std : compare dz/dt with ∇_μ L of q = N(z(t), s² I) at this s instead of the
        s → 0 limit (see :func:`gradient_series`)
    update : the :class:`~pcbio.inference.amortized.IterativeUpdate` a dendritic circuit ran
        (for its ``learned_update`` check)

    The report lists ``applicable_checks`` (name → the exactness statement tested) and
    ``skipped_checks`` (name → why it was left out).  Returns a :class:`MappingResult`.
    """
    data = model.check_x(x)
    x = model.model_space(data)[0]          # what the model describes
    info = traj.info
    if not isinstance(info, CircuitRunInfo):
        raise TypeError("map_trajectory needs the Trajectory of a circuit run")
    ref, ref_name = reference_point(model, x)
    applicable, skipped = {}, {}
    for name in CHECKS:
        if name not in info.checks:
            skipped[name] = info.skipped_checks.get(name, f"the {info.kind} circuit does not "
                                                          "declare it")
        elif name == "step_equivalence" and not vae:
            skipped[name] = "not asked for (vae=False)"
        elif _unavailable(name, traj, model, update):
            skipped[name] = _unavailable(name, traj, model, update)
        else:
            applicable[name] = info.checks[name]
    report = {"model": model.name, "circuit": asdict(info), "reference": ref_name,
              "exactness": "linear" if model.is_linear else "nonlinear",
              "exactness_condition": EXACTNESS["linear" if model.is_linear else "nonlinear"],
              "applicable_checks": applicable, "skipped_checks": skipped,
              "levels": [{"level": l + 1} for l in range(model.n_latent)],
              "reference_means": [r.tolist() for r in ref]}
    series = {"t": traj.t, "means": traj.means, "reference": ref}
    context = _Context(traj, model, x, ref, report["levels"], report, series, seed, n_samples,
                       data, update)
    for name in applicable:
        CHECKS[name][1](context, posterior_std=posterior_std, s_values=s_values)
    return MappingResult(report, series)


def _probe_states(traj, x, n=5):
    """Circuit states on the way to the fixed point (first half of the run, where the update is
    clearly non-zero; at the fixed point it vanishes and a relative gap is undefined), stacked
    along the batch axis with the data tiled to match."""
    idx = _spread(max(len(traj) // 2, 1), n)
    return (np.concatenate([x] * len(idx)),
            [np.concatenate([m[k] for k in idx]) for m in traj.means])


def map_circuit(model: GenerativeModel, x: np.ndarray, circuit: str = "rate",
                duration: Quantity | None = None, dt: Quantity | None = None,
                target: str = "auto", plot: str | Path | None = None, seed: int = 0,
                progress: Reporter | None = None, posterior_std: float | None = None,
                **params) -> dict:
    """Build, simulate and map a circuit in one call (``pcbio map``); ``params`` are the circuit
    kind's own parameters.  Returns the report dict and writes the mapping figure to ``plot`` (a
    .pdf, .png or .svg path) when given."""
    from brian2 import ms

    from .circuits import build_circuit
    from .plotting import check_figure_path, mapping_figure, save_figure
    from .progress import SILENT
    from .simulate import simulate
    if plot:
        check_figure_path(plot)          # before the simulation, not after it
    duration, dt = duration or 200 * ms, dt or 0.1 * ms
    circ = build_circuit(model, circuit, **params)
    traj = simulate(circ, x, duration=duration, dt=dt, target=target,
                    record_every=max(1, int(round(float(duration / dt))) // 2000),  # ≤ 2000 records
                    progress=progress or SILENT)
    result = map_trajectory(traj, model, x, seed=seed, posterior_std=posterior_std,
                            update=params.get("update"))
    if plot:
        save_figure(mapping_figure(result), plot)
    return result.report
