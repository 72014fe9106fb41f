"""Learning on the VAE side, in numpy: the same minibatches and the same update of the
parameters as :class:`~pcbio.learning.circuit.CircuitLearner`, with the inference done by the
VAE side's own code.

* ``inference="posterior"`` — variational EM: q is the exact posterior (linear models; the
  update is then ``∇_θ log p(x)``) or the Laplace posterior at the MAP (nonlinear), and the
  update is ``∇_θ ELBO(q)``.
* ``inference="gradient"`` — what a deterministic circuit computes: ``steps`` gradient steps of
  size ``step_size`` (= dt/τ) from the prior means, then the local rule at the point reached.
"""

import numpy as np

from ..checks import one_of, positive_int, positive_number
from ..inference import gradient_inference, map_estimate
from ..model import GenerativeModel, ParameterGradient
from .circuit import reference_gradient
from .rules import LearningRates, activity_gradient, apply_gradient, mean_variances
from .train import epoch_seed


class VaeLearner:
    """Learns ``model``'s parameters with rates ``rates`` (see the module docstring)."""

    def __init__(self, model: GenerativeModel, rates: LearningRates, inference: str = "posterior",
                 steps: int = 600, step_size: float = 0.01):
        if not isinstance(rates, LearningRates):
            raise TypeError(f"rates must be a LearningRates, got {type(rates).__name__}")
        if rates.lateral:
            raise ValueError("the lateral (front-end) rate acts on a circuit's lateral weights; "
                             "use the rate circuit (pcbio learn --circuit rate)")
        self.model, self.rates = model, rates
        self.inference = one_of(inference, "inference", {"posterior", "gradient"})
        self.steps = positive_int(steps, "steps")
        self.step_size = positive_number(step_size, "step_size")

    def set_model(self, model: GenerativeModel) -> None:
        self.model = model

    def describe(self) -> dict:
        out = {"learner": "vae", "inference": self.inference, "rates": self.rates.to_json()}
        if self.inference == "gradient":
            out.update(steps=self.steps, step_size=self.step_size)
        return out

    def update(self, x: np.ndarray, seed: int = 0) -> ParameterGradient:
        """The summed update for minibatch ``x`` (N, d_0) at the current model."""
        model = self.model
        x = model.model_space(x)[0]
        if self.inference == "gradient":
            traj = gradient_inference(model, x, steps=self.steps, step_size=self.step_size,
                                      record_every=self.steps)
            z = traj.final_means()
            return activity_gradient(model, x, z, model.errors(x, z))
        z = None if model.is_linear else map_estimate(model, x)[0]
        return reference_gradient(model, x, z, seed)

    def epoch(self, batches: np.ndarray, seed: tuple[int, int] = (0, 0),
              tops: np.ndarray | None = None) -> list[dict]:
        """One update per minibatch of ``batches`` (updates, batch, d_0) (unsupervised: ``tops``
        must be None)."""
        if tops is not None:
            raise ValueError("the VAE-side learner is unsupervised; train a clamped-top network "
                             "with CircuitLearner(top='clamped') or BackpropLearner")
        base = epoch_seed(seed)
        records = []
        for k, x in enumerate(batches):
            self.model = apply_gradient(self.model, self.update(x, base + k), self.rates, len(x))
            records.append({"update": k, "noise_variance": mean_variances(self.model)})
        return records
