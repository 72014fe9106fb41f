"""Learning the generative model: local plasticity in brian2 circuits and the ELBO gradient on
the VAE side, with one training loop, checkpoints and the comparison between the two
(``docs/mathematics.md`` §10)."""

from .circuit import CircuitLearner, reference_gradient
from .closed_form import ppca_maximum_likelihood
from .rules import (LearningRates, activity_gradient, apply_gradient, compare_updates,
                    interneuron_rule)
from .supervised import BackpropLearner, accuracy, backprop_gradient, predict
from .train import heldout_score, train
from .vae import VaeLearner

__all__ = ["BackpropLearner", "CircuitLearner", "LearningRates", "VaeLearner", "accuracy",
           "activity_gradient", "apply_gradient", "backprop_gradient", "compare_updates",
           "heldout_score", "interneuron_rule", "ppca_maximum_likelihood", "predict",
           "reference_gradient", "train"]
