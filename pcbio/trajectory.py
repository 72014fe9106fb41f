"""The one trajectory type shared by every circuit and by iterative inference on the VAE side.

A circuit run (times in seconds) and an iterative-inference run (times in steps) both produce a
:class:`Trajectory`, so the mapping layer compares any two of them, or one with the model.
"""

import json
from dataclasses import dataclass, field

import numpy as np

LIST_FIELDS = ("means", "errors", "dzdt", "log_var")


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

    def final_means(self):
        """Latent estimates at the last recorded time: list of (batch, d_l)."""
        return [m[-1] for m in self.means]

    def at(self, k):
        """Latent estimates at recorded step ``k``: list of (batch, d_l)."""
        return [m[k] for m in self.means]

    def save(self, path, provenance=None):
        """Write the trajectory to ``path`` (.npz, written atomically): every array, plus ``info``
        and an optional ``provenance`` dict (see :func:`pcbio.io.provenance`) as JSON."""
        from .io import atomic_write, to_jsonable
        arrays = {"t": self.t}
        for name in LIST_FIELDS:
            for l, a in enumerate(getattr(self, name) or []):
                arrays[f"{name}/{l}"] = a
        for name, a in self.scores.items():
            arrays[f"scores/{name}"] = a
        for name, levels in self.raw.items():
            for l, a in enumerate(levels):
                arrays[f"raw/{name}/{l}"] = a
        meta = json.dumps(to_jsonable({"time_unit": self.time_unit, "info": self.info,
                                       "provenance": provenance}))

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, meta=np.array(meta), **arrays)
        atomic_write(path, write)

    @classmethod
    def load(cls, path):
        """Read a trajectory written by :meth:`save`; its provenance is in ``info["provenance"]``."""
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            keys = [k for k in data.files if k != "meta"]

            def levels(prefix):
                found = sorted((int(k.rsplit("/", 1)[1]), k) for k in keys
                               if k.rsplit("/", 1)[0] == prefix)
                return [data[k] for _, k in found] or None
            raw_names = {k.split("/")[1] for k in keys if k.startswith("raw/")}
            return cls(t=data["t"], time_unit=meta["time_unit"],
                       **{name: levels(name) for name in LIST_FIELDS},
                       scores={k.split("/", 1)[1]: data[k] for k in keys if k.startswith("scores/")},
                       info={**meta["info"], "provenance": meta["provenance"]},
                       raw={name: levels(f"raw/{name}") for name in raw_names})
