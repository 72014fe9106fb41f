"""The training loop every learner shares: epochs of seeded, shuffled minibatches, the held-out
score after each, progress, a checkpoint after each epoch and resumption from it.

A *learner* (:class:`~pcbio.learning.circuit.CircuitLearner`,
:class:`~pcbio.learning.vae.VaeLearner`) holds the current ``model`` and implements
``epoch(batches, seed, tops) -> list of per-update records`` (``batches``: (updates, batch,
d_0); ``tops``: the clamped inputs of supervised learning, else None),
``set_model(model)`` and ``describe() -> dict``; a learner with weights of its own (an encoder,
an optimiser's moments) also ``state() -> dict`` and ``set_state(dict)``, kept in the
checkpoint.  Epoch k shows the training points in the order
``default_rng([seed, k]).permutation`` (dropping the last ``n mod batch``) and seeds the learner's
own noise with ``(seed, k)``, so a run resumed from the checkpoint after epoch k gives the same
numbers as one that was never interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from ..checks import positive_int, positive_number
from ..flows import data_log_evidence
from ..inference import laplace_elbo, map_estimate
from ..io import atomic_write, json_text
from ..model import GenerativeModel
from ..progress import SILENT, Reporter
from .rules import LearningRates

CHECKPOINT = "checkpoint.json"


class Learner(Protocol):
    """What :func:`train` needs of a learner (see the module docstring); ``state`` and
    ``set_state`` only where it has weights of its own."""
    model: GenerativeModel
    rates: LearningRates

    def epoch(self, batches: np.ndarray, seed: tuple[int, int],
              tops: np.ndarray | None = None) -> list[dict]: ...

    def set_model(self, model: GenerativeModel) -> None: ...

    def describe(self) -> dict: ...


def epoch_seed(seed: tuple[int, int]) -> int:
    """One integer seed for an epoch's noise from its ``(seed, epoch)`` pair."""
    return int(np.random.SeedSequence(list(seed)).generate_state(1)[0] % 2**31)


def heldout_score(model: GenerativeModel, x: np.ndarray, seed: int = 0) -> dict:
    """Average per data point of ``x`` (n, d_0), in data space (a flow's log-det included):
    exact ``log p(x)`` for a linear model, else the Laplace ELBO at the MAP (a lower bound)."""
    if model.is_linear:
        return {"log_likelihood": float(data_log_evidence(model, x).mean())}
    x, shift = model.model_space(x)
    z, _ = map_estimate(model, x)
    return {"elbo": float(laplace_elbo(model, x, z, n_samples=64, seed=seed).value.mean())
            + shift}


def train(learner: Learner, x_train: np.ndarray, x_test: np.ndarray, epochs: int, batch: int,
          seed: int, rate_decay: float = 1.0, checkpoint_dir: str | Path | None = None,
          progress: Reporter = SILENT,
          inputs: tuple[np.ndarray, np.ndarray] | None = None,
          score: Callable[[GenerativeModel, np.ndarray, np.ndarray], dict] | None = None) -> dict:
    """Train ``learner`` for ``epochs`` on ``x_train`` (n, d_0) in minibatches of ``batch``,
    scoring ``x_test`` after every epoch.  The learner's rates are multiplied by
    ``rate_decay ** epoch`` in epoch ``epoch`` (annealing: with constant rates, stochastic
    updates end up hovering around the optimum at a distance set by the rate).  Supervised
    learning (:mod:`pcbio.learning.supervised`): ``inputs = (inputs_train, inputs_test)``, the
    top levels that go with the targets ``x``, and ``score(model, x_test, inputs_test) -> dict``
    replaces the held-out likelihood.  With ``checkpoint_dir``, the state after each epoch
    is written there (atomically) and a run finds it and goes on from it.  Returns the final
    state: ``epoch``, ``model`` (model-file dict), ``history`` (``heldout``: a score per epoch,
    the first before training; ``updates``: the learner's per-update records), ``config``."""
    epochs, batch = positive_int(epochs, "epochs"), positive_int(batch, "batch")
    seed = positive_int(seed, "seed", minimum=0)
    rate_decay = positive_number(rate_decay, "rate_decay")
    if rate_decay > 1:
        raise ValueError(f"rate_decay must lie in (0, 1], got {rate_decay}")
    rates = learner.rates
    inputs_train, inputs_test = inputs if inputs is not None else (None, None)

    def evaluate(model):
        if score is None:
            return heldout_score(model, x_test, seed)
        return score(model, x_test, inputs_test)
    if batch > len(x_train):
        raise ValueError(f"batch={batch} exceeds the {len(x_train)} training points")
    config = {"learner": learner.describe(), "batch": batch, "seed": seed, "rate_decay": rate_decay,
              "n_train": len(x_train), "n_test": len(x_test),
              "data_checksum": float(np.sum(x_train) + 2 * np.sum(x_test) + (
                  0 if inputs is None else 3 * np.sum(inputs_train) + 4 * np.sum(inputs_test)))}
    path = None if checkpoint_dir is None else Path(checkpoint_dir) / CHECKPOINT
    if path is not None and path.is_file():
        state = json.loads(path.read_text())
        if state["config"] != json.loads(json_text(config)):
            raise ValueError(f"{path} was written by a run with other settings or data; give "
                             "another output folder (or delete it) to start afresh")
        learner.set_model(GenerativeModel.from_dict(state["model"]))
        if "learner" in state:
            learner.set_state(state["learner"])
        progress(f"resuming from {path} after epoch {state['epoch']}")
    else:
        state = {"epoch": 0, "model": learner.model.to_dict(), "config": config,
                 "history": {"heldout": [evaluate(learner.model)],
                             "updates": []}}
    n_updates = len(x_train) // batch
    for epoch in range(state["epoch"], epochs):
        learner.rates = rates.scaled(rate_decay ** epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(x_train))[:n_updates * batch]
        tops = (None if inputs_train is None
                else inputs_train[order].reshape(n_updates, batch, -1))
        records = learner.epoch(x_train[order].reshape(n_updates, batch, -1), seed=(seed, epoch),
                                tops=tops)
        state["history"]["updates"] += [{"epoch": epoch, **r} for r in records]
        scores = evaluate(learner.model)
        state["history"]["heldout"].append(scores)
        state.update(epoch=epoch + 1, model=learner.model.to_dict())
        if hasattr(learner, "state"):          # weights of its own (an encoder) and optimiser
            state["learner"] = learner.state()
        learner.rates = rates
        if path is not None:
            text = json_text(state)
            atomic_write(path, lambda tmp: Path(tmp).write_text(text))
        progress(f"epoch {epoch + 1}/{epochs}: held-out " +
                 ", ".join(f"{k} {v:.4g}" for k, v in scores.items()), (epoch + 1) / epochs)
    return state
