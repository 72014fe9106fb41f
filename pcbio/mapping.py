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

Which exactness condition applies is stated in every report (DESIGN.md §2).
"""

from dataclasses import dataclass, field

import numpy as np

from .inference import (GaussianPosterior, elbo, elbo_gradient, exact_posterior,
                        gradient_inference, laplace_posterior, log_evidence, map_estimate)

EXACTNESS = {
    "linear": ("linear-Gaussian model: grad_mu ELBO = J^T eps_below - eps_own at z = mu exactly, for "
               "any posterior variance; the circuit's fixed point is the exact posterior mean"),
    "nonlinear": ("nonlinear links: the circuit follows grad_z log p(x, z), which equals grad_mu ELBO "
                  "only as the posterior variance s -> 0 (MAP / point posterior) or under the Laplace "
                  "linearisation; its fixed point is the MAP estimate. The gap at s > 0 is measured "
                  "in 'variance_gap'"),
}
#: steps whose reference gradient norm is below this fraction of its largest value are left out of
#: relative-error statistics (0/0 at the fixed point)
NEGLIGIBLE = 1e-9


def _spread(n, points):
    """At most ``points`` indices spread evenly over 0 … n-1, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(points, n)).astype(int))


def _norm(a, axis):
    return np.sqrt(np.sum(a * a, axis=axis))


def relative_error(a, b):
    """``‖a − b‖ / ‖b‖`` per leading index, norms over the last two axes (batch, units); NaN where
    ``‖b‖`` is negligible."""
    nb = _norm(b, (-2, -1))
    rel = _norm(a - b, (-2, -1)) / np.where(nb > 0, nb, 1.0)
    return np.where(nb > NEGLIGIBLE * nb.max(initial=0.0), rel, np.nan)


def cosine(a, b):
    """Cosine between a and b per leading index (over batch and units); NaN where either is ~0."""
    na, nb = _norm(a, (-2, -1)), _norm(b, (-2, -1))
    cos = np.sum(a * b, axis=(-2, -1)) / np.where(na * nb > 0, na * nb, 1.0)
    return np.where((nb > NEGLIGIBLE * nb.max(initial=0.0)) & (na > 0), cos, np.nan)


def reference_point(model, x):
    """The fixed point a circuit should reach: ``(z, name)`` — exact posterior mean for linear
    models, MAP for nonlinear ones."""
    if model.is_linear:
        return exact_posterior(model, x).means, "exact_posterior"
    return map_estimate(model, x)[0], "map"


def gradient_series(traj, model, x, posterior_std=None, n_samples=256, seed=0):
    """Per latent level, (T,) relative error and cosine between the circuit's ``dz/dt`` and
    ``∇_μ L / τ`` at the circuit's state.  ``posterior_std=None``: the point-posterior limit s → 0,
    ``∇_z log p`` (exact for linear models at any s); a number s: ``∇_μ L`` of
    ``q = N(z(t), s² I)`` (exact for linear models, antithetic Monte Carlo otherwise).  Also returns
    the two arrays compared (lists of (T, batch, d))."""
    tau = traj.info["tau_ms"] * 1e-3
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


def error_series(traj, model, x):
    """Per level 0 … L, (T,) relative error of the error units against ``ε`` from the value units."""
    return [relative_error(e, ref) for e, ref in zip(traj.errors, model.errors(x, traj.means))]


def elbo_series(model, x, traj, reference, max_points=100, n_samples=256, seed=0):
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


def step_equivalence(circuit_traj, vae_traj):
    """Largest absolute difference per level between a circuit trajectory (times in s) and an
    iterative-inference trajectory (times in steps) at the Euler steps both recorded."""
    c_steps = np.rint(circuit_traj.t / circuit_traj.info["dt_s"]).astype(int)
    _, ci, vi = np.intersect1d(c_steps, vae_traj.t.astype(int), return_indices=True)
    return [float(np.abs(c[ci] - v[vi]).max()) for c, v in zip(circuit_traj.means, vae_traj.means)]


def variance_gap(model, x, z, s_values, n_samples=2000, repeats=5, seed=0):
    """Relative gap ``‖∇_μ L(N(z, s² I)) − ∇_z log p(z)‖ / ‖∇_z log p(z)‖`` (all levels together)
    for each posterior standard deviation ``s``, with its Monte-Carlo standard error from
    ``repeats`` independent seeds.  Antithetic sampling removes the O(s) noise term, so the
    O(s²) bias shows at small s.  Exactly 0 for linear models (computed exactly there)."""
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

    def series_json(self, max_points=200):
        """The series behind the mapping figure, thinned to at most ``max_points`` recorded
        steps, as plain lists (times in s, derivatives in 1/s)."""
        s = self.series
        k = _spread(len(s["t"]), max_points)
        out = {"t_s": s["t"][k], "grad_rel_err": [r[k] for r in s["rel"]],
               "grad_cosine": [c[k] for c in s["cos"]],
               "error_units_rel_err": [e[k] for e in s["errors_rel"]],
               "means": [m[k] for m in s["means"]], "dzdt": [d[k] for d in s["dzdt"]],
               "grad_over_tau": [g[k] for g in s["grads"]], "reference": s["reference"],
               "elbo_t_s": s["elbo_t"], "elbo": s["elbo"], "elbo_stderr": s["elbo_stderr"],
               "log_px": s["log_px"]}
        if "vae_means" in s:
            kv = _spread(len(s["vae_t"]), max_points)
            out.update(vae_t_s=s["vae_t"][kv], vae_means=[m[kv] for m in s["vae_means"]])
        return out


def map_trajectory(traj, model, x, s_values=(0.01, 0.03, 0.1, 0.3, 1.0), n_samples=256, seed=0,
                   vae=True, posterior_std=None):
    """Compare a circuit trajectory with the VAE side (see the module docstring).

    Parameters
    ----------
    traj : Trajectory of a circuit run on ``x`` (batch, d_0)
    s_values : posterior standard deviations for the variance gap (nonlinear models)
    vae : also run gradient iterative inference with ``α = dt/τ`` for step equivalence
    posterior_std : compare dz/dt with ∇_μ L of q = N(z(t), s² I) at this s instead of the
        s → 0 limit (see :func:`gradient_series`)
    Returns a :class:`MappingResult`.
    """
    x = model.check_x(x)
    ref, ref_name = reference_point(model, x)
    rel, cos, dzdt, grads = gradient_series(traj, model, x, posterior_std, n_samples, seed)
    err = error_series(traj, model, x)
    final = traj.final_means()
    levels = []
    for l in range(model.n_latent):
        fp = float(_norm(final[l] - ref[l], (-2, -1)) / max(_norm(ref[l], (-2, -1)), 1e-300))
        levels.append({"level": l + 1, "grad_rel_err_median": _stat(np.median, rel[l]),
                       "grad_rel_err_max": _stat(np.max, rel[l]),
                       "grad_cosine_min": _stat(np.min, cos[l]),
                       "grad_cosine_median": _stat(np.median, cos[l]),
                       "error_units_rel_err_median": _stat(np.median, err[l + 1]),
                       "error_units_rel_err_max": _stat(np.max, err[l + 1]),
                       "fixed_point_rel_err": fp,
                       "fixed_point_abs_err": float(np.abs(final[l] - ref[l]).max())})
    idx, elbos, elbo_se = elbo_series(model, x, traj, ref, n_samples=n_samples, seed=seed)
    log_px = log_evidence(model, x) if model.is_linear else None
    report = {
        "model": model.name, "circuit": traj.info, "reference": ref_name,
        "exactness": "linear" if model.is_linear else "nonlinear",
        "exactness_condition": EXACTNESS["linear" if model.is_linear else "nonlinear"],
        "gradient_compared": ("grad_z log p(x, z) (posterior std s -> 0)" if posterior_std is None
                              else f"grad_mu ELBO of N(z(t), s^2 I), s = {posterior_std}"),
        "levels": levels,
        "data_level": {"error_units_rel_err_median": _stat(np.median, err[0]),
                       "error_units_rel_err_max": _stat(np.max, err[0])},
        "elbo": {"q": "N(circuit state, Laplace covariance at the reference)",
                 "initial": elbos[0].tolist(), "final": elbos[-1].tolist(),
                 "final_stderr": elbo_se[-1].tolist(),
                 "log_px": None if log_px is None else log_px.tolist()},
        "reference_means": [r.tolist() for r in ref],
        "final_means": [f.tolist() for f in final],
    }
    series = {"t": traj.t, "rel": rel, "cos": cos, "dzdt": dzdt, "grads": grads, "errors_rel": err,
              "elbo_t": traj.t[idx], "elbo": elbos, "elbo_stderr": elbo_se, "log_px": log_px,
              "means": traj.means, "reference": ref}
    if vae:
        steps = int(round(traj.info["duration_s"] / traj.info["dt_s"]))
        every = int(round(traj.info["record_dt_s"] / traj.info["dt_s"]))
        vae_traj = gradient_inference(model, x, steps=steps - 1,
                                      step_size=traj.info["dt_s"] / (traj.info["tau_ms"] * 1e-3),
                                      init=traj.at(0), record_every=every)
        report["step_equivalence_max_abs"] = step_equivalence(traj, vae_traj)
        report["step_equivalence_note"] = (
            "max |circuit - gradient iterative inference (alpha = dt/tau)| per level; round-off "
            "for instantaneous errors, a real difference for dynamic ones")
        series["vae_t"] = vae_traj.t * traj.info["dt_s"]
        series["vae_means"] = vae_traj.means
    if not model.is_linear:
        xs, probe = _probe_states(traj, x)
        report["variance_gap"] = variance_gap(model, xs, probe, s_values, seed=seed)
        report["variance_gap_note"] = ("relative gap between grad_mu ELBO at posterior std s and the "
                                       "circuit's update grad_z log p, at a circuit state away from "
                                       "the fixed point; ~0 as s -> 0 and growing with s")
    return MappingResult(report, series)


def _probe_states(traj, x, n=5):
    """Circuit states on the way to the fixed point (first half of the run, where the update is
    clearly non-zero; at the fixed point it vanishes and a relative gap is undefined), stacked
    along the batch axis with the data tiled to match."""
    idx = _spread(max(len(traj) // 2, 1), n)
    return (np.concatenate([x] * len(idx)),
            [np.concatenate([m[k] for k in idx]) for m in traj.means])


def map_circuit(model, x, circuit="rate", duration=None, dt=None, errors="instant", target="auto",
                plot=None, seed=0, progress=None, posterior_std=None, **params):
    """Build, simulate and map a circuit in one call (``pcbio map``).  Returns the report dict and
    writes the mapping figure to ``plot`` (a .pdf or .png path) when given."""
    from brian2 import ms

    from .circuits import build_circuit
    from .plotting import check_figure_path, mapping_figure, save_figure
    from .progress import SILENT
    from .simulate import simulate
    if plot:
        check_figure_path(plot)          # before the simulation, not after it
    duration, dt = duration or 200 * ms, dt or 0.1 * ms
    circ = build_circuit(model, circuit, errors=errors, **params)
    traj = simulate(circ, x, duration=duration, dt=dt, target=target,
                    record_every=max(1, int(round(float(duration / dt))) // 2000),  # ≤ 2000 records
                    progress=progress or SILENT)
    result = map_trajectory(traj, model, x, seed=seed, posterior_std=posterior_std)
    if plot:
        save_figure(mapping_figure(result), plot)
    return result.report

