"""The one trajectory type shared by every circuit and by iterative inference on the VAE side.

A circuit run (times in seconds) and an iterative-inference run (times in steps) both produce a
:class:`Trajectory`, so the mapping layer compares any two of them, or one with the model.  What
produced it is a typed record: :class:`CircuitRunInfo` or :class:`InferenceRunInfo`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

LEVEL_FIELDS = ("means", "errors", "dzdt", "log_var", "normalized")


@dataclass
class CircuitRunInfo:
    """What a circuit run was and how it ended.

    ``circuit``: kind and parameters (:meth:`Circuit.describe`); ``checks``: comparisons of the
    mapping layer that apply (name → the exactness statement tested) and ``skipped_checks``
    (name → why not); ``tau_s``: time constant of the value units' gradient flow (None when the
    circuit does not follow one); times in seconds; ``activity_range``: per population the
    [min, max] of its recorded neural variable, in ``raw_units``.
    """
    circuit: dict
    checks: dict
    skipped_checks: dict
    tau_s: float | None
    dt_s: float
    record_dt_s: float
    batch: int
    target: str
    coupling: str
    duration_s: float = 0.0
    max_duration_s: float = 0.0
    tol: float | None = None
    converged: bool | None = None
    t_converged_s: float | None = None
    stop_reason: str = "duration"
    standalone_run_time_s: float | None = None
    activity_range: dict = field(default_factory=dict)
    raw_units: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.circuit["circuit"]

    def summary(self) -> dict:
        """What a command reports about the run (convergence, time, target)."""
        return {"circuit": self.kind, "converged": self.converged, "stop_reason": self.stop_reason,
                "t_converged_s": self.t_converged_s, "duration_s": self.duration_s,
                "target": self.target, "coupling": self.coupling}


@dataclass
class InferenceRunInfo:
    """What an iterative-inference run on the VAE side was."""
    source: str
    step_size: float
    steps: int
    method: str
    learn_variance: bool
    seed: int


_INFO_TYPES = {"circuit": CircuitRunInfo, "inference": InferenceRunInfo}


def _info_to_json(info):
    kind = next(k for k, cls in _INFO_TYPES.items() if isinstance(info, cls))
    return {"type": kind, **asdict(info)}


def _info_from_json(data):
    cls = _INFO_TYPES[data.pop("type")]
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Trajectory:
    """Recorded inference dynamics.

    Attributes
    ----------
    t : array (T,)
        Recording times: seconds from the start of the run for circuits, step numbers for
        iterative inference (see ``time_unit``).
    time_unit : str
        ``"s"`` or ``"step"``.
    means : list of arrays (T, batch, d_l), levels 1 … L
        Decoded latent estimates (circuit value units, or posterior means μ).
    errors : list of arrays (T, batch, d_l), levels 0 … L, or None
        Decoded error-unit activity (circuits) or the prediction errors ε at the means.
    dzdt : list of arrays (T, batch, d_l), or None
        Time derivative of the decoded latents in 1/s: recorded where it is a state derivative,
        estimated by the decoder otherwise.
    log_var : list of arrays (T, batch, d_l), or None
        Posterior log-variances when they are part of the state.
    scores : dict of name -> array (T, batch)
        Objectives along the run (``"log_joint"``, ``"elbo"``, …).
    info : CircuitRunInfo or InferenceRunInfo
    raw : dict of population name -> array (T, batch, units)
        Recorded neural variables in SI units (see ``info.raw_units``).
    spikes : dict of population name -> (unit indices, times in s)
        Spike events, ragged.
    normalized : list with one array (T, batch, d_0), or None
        Decoded lateral-inhibition (front-end) units: the flow's normalized data ``y``.
    compartments : dict of population name -> array (T, batch, dims)
        Decoded dendritic compartments (model units): ``basal_l``, ``apical_l``, ``branch_l``.
    provenance : dict or None
        Seed, parameters, versions (see :func:`pcbio.io.provenance`) when saved with them.
    """
    t: np.ndarray
    time_unit: str
    means: list
    errors: list = None
    dzdt: list = None
    log_var: list = None
    scores: dict = field(default_factory=dict)
    info: CircuitRunInfo | InferenceRunInfo | None = None
    raw: dict = field(default_factory=dict)
    spikes: dict = field(default_factory=dict)
    provenance: dict | None = None
    normalized: list = None
    compartments: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)

    def final_means(self) -> list[np.ndarray]:
        """Latent estimates at the last recorded time: list of (batch, d_l)."""
        return [m[-1] for m in self.means]

    def at(self, k: int) -> list[np.ndarray]:
        """Latent estimates at recorded step ``k``: list of (batch, d_l)."""
        return [m[k] for m in self.means]

    def save(self, path: str | Path, provenance: dict | None = None) -> None:
        """Write the trajectory to ``path`` (.npz, written atomically): every array, the run
        information and an optional ``provenance`` dict, read back by :meth:`load`."""
        from .io import atomic_write, to_jsonable
        arrays = {"t": self.t}
        for name in LEVEL_FIELDS:
            for l, a in enumerate(getattr(self, name) or []):
                arrays[f"{name}/{l}"] = a
        for group in ("scores", "raw", "compartments"):
            for name, a in getattr(self, group).items():
                arrays[f"{group}/{name}"] = a
        for name, (idx, times) in self.spikes.items():
            arrays[f"spikes_i/{name}"], arrays[f"spikes_t/{name}"] = idx, times
        meta = json.dumps(to_jsonable({
            "time_unit": self.time_unit,
            "info": None if self.info is None else _info_to_json(self.info),
            "provenance": provenance if provenance is not None else self.provenance}))

        def write(tmp):
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, meta=np.array(meta), **arrays)
        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        """Read a trajectory written by :meth:`save`."""
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            groups = {}
            for key in data.files:
                if "/" in key:
                    group, name = key.split("/", 1)
                    groups.setdefault(group, {})[name] = data[key]

            def levels(name):
                found = groups.get(name, {})
                return [found[str(l)] for l in range(len(found))] or None
            spikes = {name: (idx, groups["spikes_t"][name])
                      for name, idx in groups.get("spikes_i", {}).items()}
            return cls(t=data["t"], time_unit=meta["time_unit"],
                       **{name: levels(name) for name in LEVEL_FIELDS},
                       scores=groups.get("scores", {}), raw=groups.get("raw", {}),
                       spikes=spikes, compartments=groups.get("compartments", {}),
                       info=None if meta["info"] is None else _info_from_json(meta["info"]),
                       provenance=meta["provenance"])
