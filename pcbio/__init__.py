"""pcbio — biologically detailed simulation of predictive coding, checked against the ELBO.

The path through the package: :mod:`pcbio.model` (the generative model) →
:mod:`pcbio.inference` (the VAE side) → :mod:`pcbio.circuits` (brian2 circuits) →
:mod:`pcbio.simulate` (run, decode into a :class:`Trajectory`) → :mod:`pcbio.mapping`
(circuit vs ELBO gradient) → :mod:`pcbio.plotting` / ``experiments/`` (figures).
"""

__version__ = "0.1.0"

from .model import GenerativeModel, Link, load_model  # noqa: E402
from .trajectory import Trajectory  # noqa: E402

__all__ = ["GenerativeModel", "Link", "Trajectory", "load_model", "__version__"]
