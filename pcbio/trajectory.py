"""The one trajectory type shared by every circuit and by iterative inference on the VAE side.

A circuit run (times in seconds) and an iterative-inference run (times in steps) both produce a
:class:`Trajectory`, so the mapping layer compares any two of them, or one with the model.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trajectory:
    """Recorded inference dynamics.

    Attributes
    ----------
    t : array (T,)
        Recording times: seconds for circuits, step numbers for iterative inference
        (see ``time_unit``).
    time_unit : str
        ``"s"`` or ``"step"``.
    means : list of arrays (T, batch, d_l), levels 1 … L
        Decoded latent estimates (circuit value units, or posterior means μ).
    errors : list of arrays (T, batch, d_l), levels 0 … L, or None
        Decoded error-unit activity (circuits) or the prediction errors ε at the means.
    dzdt : list of arrays (T, batch, d_l), or None
        The circuit's own time derivative of the decoded latents, in 1/s.
    log_var : list of arrays (T, batch, d_l), or None
        Posterior log-variances when they are part of the state.
    scores : dict of name -> array (T, batch)
        Objectives along the run (``"log_joint"``, ``"elbo"``, …).
    info : dict
        What produced it (source, dt, τ, convergence, …); JSON-serialisable.
    raw : dict
        Raw recordings in neural units (brian2 monitors' arrays), when there are any.
    """
    t: np.ndarray
    time_unit: str
    means: list
    errors: list = None
    dzdt: list = None
    log_var: list = None
    scores: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.t)

    @property
    def n_latent(self):
        return len(self.means)

    @property
    def batch(self):
        return self.means[0].shape[1]

    def final_means(self):
        """Latent estimates at the last recorded time: list of (batch, d_l)."""
        return [m[-1] for m in self.means]

    def at(self, k):
        """Latent estimates at recorded step ``k``: list of (batch, d_l)."""
        return [m[k] for m in self.means]
