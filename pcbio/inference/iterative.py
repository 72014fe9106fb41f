"""Gradient iterative inference (Marino, Yue & Mandt 2018 with ``f = λ + α∇``;
``docs/mathematics.md`` §5).

``μ ← μ + α ∇_μ L`` (and optionally ``log s² ← log s² + α_s ∇_{log s²} L``).  With a point
posterior (``log_var=None``) the update is ``μ ← μ + α ∇_z log p(x, μ)``: an Euler step of the
predictive-coding dynamics with ``α = dt/τ`` — the update every circuit is compared with.

The loop does only what is asked for: one forward pass per step, written into the same arrays
at every step (:class:`pcbio.model.FlatPass`: every level side by side, one numpy call for all
levels), whose errors the gradient reuses; recording (and the log joint) only every
``record_every`` steps; validation, dtype conversion and the stability limit before the loop.
Divergence is caught, not returned: for a linear model the step size is checked against the
stability limit ``α < 2/λ_max(H)`` before the loop, and for any point posterior the log joint
must not fall from one regular check to the next (gradient ascent with a stable step never
lowers it).
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from ..checks import positive_int, positive_number
from ..model import GenerativeModel
from ..trajectory import InferenceRunInfo, Trajectory
from .elbo import elbo_gradient, resolve_method
from .posterior import GaussianPosterior

#: the log joint is checked at step 0, every multiple of this and the last step, each time
#: against the previous check (odd: a period-2 oscillation shows a fall at every other check)
CHECK_EVERY = 11


class DivergenceError(ValueError):
    """Gradient iterative inference diverged: the step size is too large for the model.

    ``template`` is the message with ``{step}`` where the step size is named, so that the
    command line can name its option: ``str(err)`` says ``step_size=0.2``,
    ``err.message("--step-size")`` says ``--step-size 0.2``."""

    def __init__(self, template: str, step_size: float):
        self.template, self.step_size = template, step_size
        super().__init__(self.message("step_size="))

    def message(self, option: str) -> str:
        sep = "" if option.endswith("=") else " "
        return self.template.format(step=f"{option}{sep}{self.step_size:g}")


def stability_limit(model: GenerativeModel, x: np.ndarray) -> float | None:
    """``2 / λ_max(H)`` for a linear model (H the constant posterior precision, from Lanczos on
    Hessian-vector products of the model's own gradient), None for nonlinear models."""
    if not model.is_linear:
        return None
    x = x[:1].astype(float)
    dims = model.latent_dims
    split = np.cumsum(dims)[:-1]
    zero = model.grad_log_joint(x, [np.zeros((1, d)) for d in dims])

    def hv(v):     # H v = ∇ log p(0) − ∇ log p(v) for a quadratic log p
        g = model.grad_log_joint(x, np.split(np.asarray(v, float).reshape(1, -1), split, axis=-1))
        return np.concatenate([a - b for a, b in zip(zero, g)], axis=-1).ravel()
    D = sum(dims)
    if D <= 2:
        lam = np.linalg.eigvalsh(np.stack([hv(e) for e in np.eye(D)])).max()
    else:
        op = LinearOperator((D, D), matvec=hv, dtype=float)
        lam = eigsh(op, k=1, which="LA", tol=1e-6, v0=np.ones(D), return_eigenvectors=False)[0]
    return float(2.0 / lam)


def gradient_inference(model: GenerativeModel, x: np.ndarray, steps: int = 100,
                       step_size: float = 0.1, init: list[np.ndarray] | None = None,
                       log_var: list[np.ndarray] | None = None, learn_variance: bool = False,
                       variance_step_size: float | None = None, method: str = "auto",
                       n_samples: int = 64, seed: int = 0, record_every: int = 1,
                       dtype: np.dtype | None = None) -> Trajectory:
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
        Record steps 0, k, 2k, … and the last step only (long runs of large models).
    dtype : ``"float32"`` or ``"float64"``, optional
        Compute in this type (the model is converted once); default the model's own.

    Returns
    -------
    Trajectory with t = the recorded step numbers, means, errors ε at the means, scores
    ``log_joint`` (at the means) and, when q has variances, ``elbo``.

    Raises
    ------
    DivergenceError (a ValueError) when ``step_size`` is beyond a linear model's stability limit,
    or when the log joint falls between two steps or values overflow.
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
    limit = stability_limit(model, x)
    if limit is not None and alpha >= limit:
        raise DivergenceError("{step} is beyond this model's stability limit 2/lambda_max = "
                              f"{limit:.4g}; use a step size below it", alpha)
    dtype = np.dtype(dtype or model.dtype)
    model, x = model.astype(dtype), x.astype(dtype)
    latents = np.concatenate(z, axis=-1, dtype=dtype)   # every level side by side, updated in place
    z = model.split(latents)
    if np.isscalar(log_var):
        log_var = [np.full(m.shape, float(log_var), dtype=dtype) for m in z]
    elif log_var is not None:
        log_var = [np.broadcast_to(np.asarray(lv, dtype), m.shape).copy()
                   for lv, m in zip(log_var, z)]

    recorded = sorted(set(range(0, steps + 1, record_every)) | {steps})
    checked = set(range(0, steps + 1, CHECK_EVERY)) | {steps} if log_var is None else set()
    rec = _Records(recorded, len(x), model, dtype, log_var is not None)
    previous = fw = None
    with np.errstate(over="ignore", invalid="ignore"):     # overflow is caught and reported
        for k in range(steps + 1):
            record, check = k in rec.steps, k in checked
            if log_var is None:
                fw = model.forward(x, latents, fw)         # the arrays of step 0's pass, reused
                grad = model.flat_gradient(fw) if k < steps else None  # the last step records only
                logp = model.log_joint(x, latents, fw) if (record or check) else None
            else:
                g = elbo_gradient(model, x, GaussianPosterior(z, log_var=log_var), method,
                                  n_samples, seed + k, parameters=False, dtype=dtype)
                grad = np.concatenate(g.means, axis=-1)
                if record:                                 # errors and log joint at the means
                    fw = model.forward(x, latents)
                    logp = model.log_joint(x, latents, fw)
            if record:
                rec.add(latents, fw.flat, logp, log_var, None if log_var is None else g.elbo.value)
            if check:
                previous = _check_progress(logp, previous, k, alpha)
            if k < steps:        # the gradient is this step's own array: scaled in place
                if log_var is not None and learn_variance:
                    for lv, gl in zip(log_var, g.log_var):
                        gl *= alpha_s
                        lv += gl
                grad *= alpha
                latents += grad
    if log_var is not None and not np.isfinite(latents).all():   # a point q: its last check did it
        raise DivergenceError("gradient iterative inference diverged (values overflowed; {step} "
                              "is too large for this model)", alpha)
    scores = {"log_joint": rec.log_joint}
    if log_var is not None:
        scores["elbo"] = rec.elbo
    return Trajectory(t=np.array(recorded, dtype=float), time_unit="step", means=rec.means,
                      errors=rec.errors, log_var=rec.log_var, scores=scores,
                      info=InferenceRunInfo(source="gradient iterative inference",
                                            step_size=alpha, steps=steps,
                                            method=method if log_var is not None else "point",
                                            learn_variance=bool(learn_variance), seed=seed))


class _Records:
    """The recorded ``steps``, written into arrays allocated once, every latent level side by
    side as in a pass (:class:`pcbio.model.FlatPass`), so that recording a step is a few copies:
    means and log-variances (T, batch, d_l) for levels 1 … L, errors (T, batch, d_l) for levels
    0 … L (per-level views), log joint and ELBO (T, batch)."""

    def __init__(self, steps, batch, model, dtype, variances):
        n, self.steps, self.k = len(steps), set(steps), 0
        width = sum(model.latent_dims)
        self.latents = np.empty((n, batch, width), dtype)
        self.errors0 = np.empty((n, batch, model.dims[0]), dtype)
        self.latent_errors = np.empty((n, batch, width), dtype)
        self.means = model.split(self.latents)
        self.errors = [self.errors0] + model.split(self.latent_errors)
        self.log_joint = np.empty((n, batch), dtype)
        self.log_var = ([np.empty((n, batch, d), dtype) for d in model.latent_dims]
                        if variances else None)
        self.elbo = np.empty((n, batch)) if variances else None

    def add(self, latents, flat, logp, log_var, elbo):
        """Record the latents (batch, n), the errors of a pass at them (its ``FlatPass``), the
        log joint and, with a Gaussian q, its log-variances and ELBO."""
        k = self.k
        self.latents[k], self.errors0[k], self.latent_errors[k] = latents, flat.eps0, flat.eps
        self.log_joint[k] = logp
        if log_var is not None:
            for buf, value in zip(self.log_var, log_var):
                buf[k] = value
            self.elbo[k] = elbo
        self.k += 1


def _check_progress(logp, previous, k, alpha):
    """Gradient ascent with a stable step never lowers the log joint: compare step k's
    ``logp`` with the previous check ``previous = (step, log p, floor)`` and raise
    DivergenceError if it is not finite or fell below ``floor``, the previous value less its
    round-off.  Returns this check's ``(step, log p, floor)``."""
    ok = np.isfinite(logp).all() if previous is None else (logp >= previous[2]).all()
    if not ok:                                   # NaN and −∞ fail the comparison too
        if not np.isfinite(logp).all():
            raise DivergenceError(f"gradient iterative inference diverged at step {k} (log "
                                  "p(x, z) is not finite; {step} is too large for this model)",
                                  alpha)
        raise DivergenceError(
            f"gradient iterative inference is unstable: log p(x, z) fell by "
            f"{float((previous[1] - logp).max()):.3g} between steps {previous[0]} and {k}; "
            "{step} is too large for this model (gradient ascent with a stable step never "
            "lowers it); use a smaller step", alpha)
    tol = 1e-6 if logp.dtype == np.float32 else 1e-10
    return k, logp, logp - tol * (1.0 + np.abs(logp))
