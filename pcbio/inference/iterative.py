"""Gradient iterative inference (Marino, Yue & Mandt 2018 with ``f = λ + α∇``).

``μ ← μ + α ∇_μ L`` (and optionally ``log s² ← log s² + α_s ∇_{log s²} L``).  With a point
posterior (``log_var=None``) the update is ``μ ← μ + α ∇_z log p(x, μ)``: an Euler step of the
predictive-coding dynamics with ``α = dt/τ`` — the update every circuit is compared with.
"""

import numpy as np

from ..checks import positive_int, positive_number
from ..trajectory import Trajectory
from .elbo import elbo_gradient, resolve_method
from .posterior import GaussianPosterior


def gradient_inference(model, x, steps=100, step_size=0.1, init=None, log_var=None,
                       learn_variance=False, variance_step_size=None, method="auto",
                       n_samples=64, seed=0, record_every=1):
    """Run ``steps`` gradient-ascent steps on the ELBO from ``init``.

    Parameters
    ----------
    x : array (batch, d_0)
    steps : int
    step_size : float
        ``α`` (dimensionless; equals ``dt/τ`` for the circuit it corresponds to).
    init : list of (batch, d_l), optional
        Initial means; default the prior means (:meth:`GenerativeModel.prior_means`).
    log_var : list of (batch, d_l) or float, optional
        Posterior log-variances; None for a point posterior (s → 0).
    learn_variance : bool
        Also ascend the ELBO in ``log_var`` (requires ``log_var``).
    method, n_samples, seed
        How expectations are taken (see :mod:`pcbio.inference.elbo`); step k uses noise seed
        ``seed + k``.
    record_every : int
        Record steps 0, k, 2k, … only (long runs of large models).

    Returns
    -------
    Trajectory with t = the recorded step numbers (0 … steps), means, errors ε at the means,
    scores ``log_joint`` (at the means) and, when q has variances, ``elbo``.
    """
    x = model.check_x(x)
    steps = positive_int(steps, "steps", minimum=0)
    record_every = positive_int(record_every, "record_every")
    alpha = positive_number(step_size, "step_size")
    alpha_s = alpha if variance_step_size is None else positive_number(variance_step_size,
                                                                         "variance_step_size")
    if learn_variance and log_var is None:
        raise ValueError("learn_variance=True needs initial log_var")
    method = resolve_method(model, method)
    z = model.prior_means(len(x)) if init is None else model.check_latents(init, len(x), "init")
    if np.isscalar(log_var):
        log_var = [np.full(m.shape, float(log_var)) for m in z]
    elif log_var is not None:
        log_var = [np.broadcast_to(np.asarray(lv, float), m.shape).copy()
                   for lv, m in zip(log_var, z)]

    rec = {"t": [], "means": [], "errors": [], "log_var": [], "log_joint": [], "elbo": []}
    for k in range(steps + 1):
        eps = model.errors(x, z)
        record = k % record_every == 0
        if record:
            rec["t"].append(k)
            rec["means"].append(z)
            rec["errors"].append(eps)
            rec["log_joint"].append(model.log_joint(x, z))
        if log_var is None:
            grad = model.grad_from_errors(z, eps)
        else:
            g = elbo_gradient(model, x, GaussianPosterior(z, log_var=log_var), method,
                              n_samples, seed + k, parameters=False)
            if record:
                rec["log_var"].append(log_var)
                rec["elbo"].append(g.elbo.value)
            grad = g.means
            if learn_variance and k < steps:
                log_var = [lv + alpha_s * gl for lv, gl in zip(log_var, g.log_var)]
        if not all(np.all(np.isfinite(g_)) for g_ in grad):
            raise FloatingPointError(f"gradient iterative inference diverged at step {k} "
                                     f"(step_size={alpha} is too large for this model)")
        z = [zl + alpha * gl for zl, gl in zip(z, grad)]

    def stack(seq):
        return [np.stack(level) for level in zip(*seq)] if seq else None

    scores = {"log_joint": np.stack(rec["log_joint"])}
    if rec["elbo"]:
        scores["elbo"] = np.stack(rec["elbo"])
    return Trajectory(t=np.array(rec["t"], dtype=float), time_unit="step",
                      means=stack(rec["means"]), errors=stack(rec["errors"]),
                      log_var=stack(rec["log_var"]), scores=scores,
                      info={"source": "gradient iterative inference", "step_size": alpha,
                            "steps": steps, "method": method if log_var is not None else "point",
                            "learn_variance": bool(learn_variance), "seed": seed})
