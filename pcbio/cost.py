"""Rough cost of a computation before it starts, so that sizes that would take very long or need
much memory are announced (and refused unless the user insists) instead of hanging.

The estimates count the dominant floating-point work and the largest arrays; their constants
(``FLOPS``, ``STEP_OVERHEAD_S``) were measured on the 2-core development machine and are meant
to be right within a factor of a few, which is what an announcement needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import GenerativeModel
    from .progress import Reporter

#: sustained float64 throughput of the dense linear algebra involved, FLOP/s
FLOPS = 5e9
#: brian2's cost per simulated step beyond the arithmetic (code objects, network operations), s
STEP_OVERHEAD_S = 1e-4
#: the largest covariance written into a JSON result (entries)
JSON_COV_LIMIT = 10_000


@dataclass
class Cost:
    """Estimated seconds and bytes of one computation, and what dominates them."""
    seconds: float
    bytes: float
    what: str

    def describe(self) -> str:
        return f"about {_duration(self.seconds)} and {_size(self.bytes)} of memory ({self.what})"


def _duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _size(nbytes):
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes / 1e3:.0f} kB"


def _pass_flops(model, batch):
    """FLOPs of one forward + backward pass through the model for ``batch`` points."""
    weights = sum(link.W.size + (0 if link.A is None else link.A.size) for link in model.links)
    return 4.0 * batch * weights


def inference_cost(model: GenerativeModel, batch: int, method: str, steps: int = 0) -> Cost:
    """Cost of ``pcbio infer --method METHOD`` on the VAE side (the posterior or estimate, and the
    Laplace ELBO that point estimates are reported with)."""
    D = sum(model.latent_dims)
    dense = 8.0 * D * D
    laplace = 2 * D * _pass_flops(model, batch) + batch * D ** 3       # Hessian, then inverses
    if method == "exact":
        flops = D * _pass_flops(model, 1) + 2.0 * D ** 3 + 4.0 * batch * D ** 3
        return Cost(flops / FLOPS, 4 * dense + 16.0 * batch * D * D,
                    f"exact posterior and its ELBO over {D} latent dimensions")
    if method == "map":
        flops = 2000 * _pass_flops(model, batch) + laplace
        return Cost(flops / FLOPS, 30 * 8.0 * batch * D + batch * dense,
                    f"L-BFGS over {batch * D} unknowns and the Laplace ELBO")
    flops = steps * _pass_flops(model, batch) + laplace
    return Cost(flops / FLOPS, batch * dense, f"{steps} gradient steps and the Laplace ELBO")


def simulation_cost(model: GenerativeModel, batch: int, steps: int, record_every: int) -> Cost:
    """Cost of simulating a rate-like circuit of ``model`` for ``steps`` steps."""
    units = batch * 3 * sum(model.dims)
    records = steps // max(record_every, 1) + 1
    seconds = steps * (_pass_flops(model, batch) / FLOPS + STEP_OVERHEAD_S)
    return Cost(seconds, 16.0 * records * units,
                f"{steps} steps of {units} units, {records} recorded")


def check_affordable(cost: Cost, force: bool, note: Reporter) -> None:
    """Refuse (ValueError naming --force) a computation estimated above an hour or 8 GB unless
    ``force``; announce one above 10 s through ``note`` (a progress callable)."""
    if not force and (cost.seconds > 3600 or cost.bytes > 8e9):
        raise ValueError(f"this would take {cost.describe()}; add --force to run it anyway")
    if cost.seconds > 10 or cost.bytes > 1e9:
        note(f"expect {cost.describe()}")
