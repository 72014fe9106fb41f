"""Training amortized and learned iterative inference (``docs/mathematics.md`` §13), as learners
of the shared loop :func:`pcbio.learning.train.train` (epochs, held-out scores, checkpoints,
exact resume), and saving them with provenance.

* :class:`AmortizedLearner` — a VAE: the encoder and the generative model's parameters ascend
  the same reparameterised ELBO (amortized variational EM; the model's gradient is
  :meth:`GenerativeModel.parameter_gradient` at the samples, the encoder's its chain rule).
* :class:`UpdateLearner` — the learned iterative update, on a fixed model: each minibatch runs
  ``steps`` updates from the prior mean and ascends the summed ELBO of the steps' outputs.

Both use Adam; a learner's ``rates`` (a :class:`LearningRates`, annealed by ``train``) scale its
Adam steps.
"""

import json
from pathlib import Path

import numpy as np

from ..checks import positive_int, positive_number
from ..inference import elbo
from ..inference.amortized import Encoder, IterativeUpdate, point_elbo
from ..io import atomic_write, json_text
from ..model import GenerativeModel
from ..paths import models_dir
from .optim import Adam, gradient_dict, gradient_from_dict
from .rules import LearningRates, apply_gradient
from .train import epoch_seed

#: the parameters a VAE learns: the links' weights, biases and noise; the prior stays N(μ, Σ)
MODEL_RATES = LearningRates(weights=1.0, bias=1.0, cov=1.0)


def _arrays(params: dict) -> dict:
    return {k: np.asarray(v, dtype=float) for k, v in params.items()}


class AmortizedLearner:
    """A VAE on ``model``: encoder and model parameters learn by Adam (rate ``lr``) on the
    ELBO of the encoder's q, ``n_samples`` reparameterised samples per data point; with
    ``learn_model=False`` only the encoder learns (amortized inference for a fixed model)."""

    def __init__(self, model: GenerativeModel, encoder: Encoder, lr: float = 3e-3,
                 n_samples: int = 4, learn_model: bool = True):
        self.model, self.encoder = model, encoder
        self.lr = positive_number(lr, "lr")
        self.n_samples = positive_int(n_samples, "n_samples")
        self.learn_model = bool(learn_model)
        self.rates = MODEL_RATES
        self.adam_encoder, self.adam_model = Adam(self.lr), Adam(self.lr)

    def set_model(self, model: GenerativeModel) -> None:
        self.model = model

    def describe(self) -> dict:
        return {"learner": "amortized", "lr": self.lr, "n_samples": self.n_samples,
                "learn_model": self.learn_model, "encoder_hidden": len(self.encoder.b1)}

    def score(self, model: GenerativeModel, x: np.ndarray, _inputs: np.ndarray | None = None,
              seed: int = 0) -> dict:
        """Held-out ELBO of the encoder's q (nats per data point, 64 samples)."""
        return {"elbo": float(elbo(model, x, self.encoder.posterior(x), method="mc",
                                   n_samples=64, seed=seed).value.mean())}

    def epoch(self, batches: np.ndarray, seed: tuple[int, int] = (0, 0),
              tops: np.ndarray | None = None) -> list[dict]:
        if tops is not None:
            raise ValueError("amortized inference is unsupervised (no clamped tops)")
        base, records = epoch_seed(seed), []
        scale = self.rates.weights
        for k, x in enumerate(batches):
            n = len(x)
            value, grads, pgrad = self.encoder.elbo_gradient(
                self.model, x, self.n_samples, base + k, parameters=self.learn_model)
            self.adam_encoder.lr = self.lr * scale
            self.encoder = Encoder(**self.adam_encoder.step(
                self.encoder.params(), {name: g / n for name, g in grads.items()}))
            if self.learn_model:
                g = gradient_dict(pgrad)
                zero = {name: np.zeros_like(v) for name, v in g.items()}
                self.adam_model.lr = self.lr
                step = self.adam_model.step(zero, {name: v / n for name, v in g.items()})
                self.model = apply_gradient(self.model, gradient_from_dict(
                    step, self.model.n_latent), self.rates, 1)
            records.append({"update": k, "elbo": value / n})
        return records

    def state(self) -> dict:
        return {"encoder": self.encoder.params(), "adam_encoder": self.adam_encoder.state(),
                "adam_model": self.adam_model.state()}

    def set_state(self, state: dict) -> None:
        self.encoder = Encoder(**_arrays(state["encoder"]))
        self.adam_encoder = Adam.from_state(state["adam_encoder"])
        self.adam_model = Adam.from_state(state["adam_model"])


class UpdateLearner:
    """Learns ``update`` (an :class:`IterativeUpdate`) on a fixed ``model``: per minibatch,
    ``steps`` updates from the prior mean, Adam (rate ``lr``) on the summed ELBO of their
    outputs (``n_samples`` samples per point, q with the curvature variances)."""

    def __init__(self, model: GenerativeModel, update: IterativeUpdate, steps: int = 8,
                 lr: float = 1e-3, n_samples: int = 4):
        self.model, self.update = model, update
        self.steps = positive_int(steps, "steps")
        self.lr = positive_number(lr, "lr")
        self.n_samples = positive_int(n_samples, "n_samples")
        self.rates = MODEL_RATES
        self.adam = Adam(self.lr)

    def set_model(self, model: GenerativeModel) -> None:
        self.model = model

    def describe(self) -> dict:
        return {"learner": "iterative_update", "steps": self.steps, "lr": self.lr,
                "n_samples": self.n_samples, "hidden": len(self.update.c)}

    def score(self, model: GenerativeModel, x: np.ndarray, _inputs: np.ndarray | None = None,
              seed: int = 0) -> dict:
        """Held-out ELBO after ``steps`` updates from the prior mean (nats per data point)."""
        mu = self.update.run(model, x, model.prior_means(len(x))[0], self.steps)[-1]
        return {"elbo": float(point_elbo(model, x, mu, seed=seed).mean())}

    def epoch(self, batches: np.ndarray, seed: tuple[int, int] = (0, 0),
              tops: np.ndarray | None = None) -> list[dict]:
        if tops is not None:
            raise ValueError("learned inference is unsupervised (no clamped tops)")
        base, records = epoch_seed(seed), []
        for k, x in enumerate(batches):
            n = len(x)
            value, grads = self.update.objective_gradient(
                self.model, x, self.model.prior_means(n)[0], self.steps, self.n_samples,
                base + 1000 * k)
            self.adam.lr = self.lr * self.rates.weights
            self.update = IterativeUpdate(**self.adam.step(
                self.update.params(), {name: g / n for name, g in grads.items()}))
            records.append({"update": k, "elbo_per_step": value / (n * self.steps)})
        return records

    def state(self) -> dict:
        return {"update": self.update.params(), "adam": self.adam.state()}

    def set_state(self, state: dict) -> None:
        self.update = IterativeUpdate(**_arrays(state["update"]))
        self.adam = Adam.from_state(state["adam"])


# -- saving and loading by name ---------------------------------------------------------------------
KINDS = {"encoder": Encoder, "iterative_update": IterativeUpdate}


def save_inference(path: str | Path, obj: Encoder | IterativeUpdate,
                   provenance: dict | None = None) -> None:
    """Write an :class:`Encoder` or :class:`IterativeUpdate` to ``path`` (JSON, atomically),
    with its kind and ``provenance`` (seed, parameters, version, …)."""
    kind = next(k for k, cls in KINDS.items() if isinstance(obj, cls))
    text = json_text({"kind": kind, "params": obj.params(), "provenance": provenance})
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def load_inference(name_or_path: str | Path) -> tuple[Encoder | IterativeUpdate, dict | None]:
    """An :class:`Encoder` or :class:`IterativeUpdate` from a file written by
    :func:`save_inference`, or by name from ``models/`` (``digits_mlp.encoder`` →
    ``models/digits_mlp.encoder.json``).  Returns ``(obj, provenance)``."""
    path = Path(name_or_path)
    if not path.is_file():
        path = models_dir() / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no saved inference model {name_or_path!r} (looked for that "
                                f"file and for {path})")
    data = json.loads(path.read_text())
    if data.get("kind") not in KINDS:
        raise ValueError(f"{path}: not a saved inference model (kind must be one of {sorted(KINDS)})")
    return KINDS[data["kind"]](**_arrays(data["params"])), data.get("provenance")
