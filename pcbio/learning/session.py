"""One learning run from data to files, as ``pcbio learn`` does it: split the data, train a
circuit or the VAE side with checkpoints, and write the learned model as a model file plus a
results file with the history and provenance."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import load_data, split
from ..io import check_output_folder, check_output_path, json_text, provenance, write_together
from ..model import GenerativeModel
from ..model_file import model_text
from ..progress import SILENT, Reporter
from .circuit import CircuitLearner
from .rules import LearningRates
from .train import heldout_score, train
from .vae import VaeLearner


def learn(model: GenerativeModel, data: str | Path | np.ndarray, out_dir: str | Path,
          learner: str = "rate", epochs: int = 20,
          batch: int = 100, rates: LearningRates | None = None, rate_decay: float = 1.0,
          test_fraction: float = 0.2, seed: int = 0, circuit_options: dict | None = None,
          progress: Reporter = SILENT) -> dict:
    """Learn ``model``'s parameters from ``data`` (a bundled data set's name, a ``.npy``/``.csv``
    path, or an array (n, d_0)) with ``learner`` (``"rate"``: a brian2 rate circuit with local
    plasticity, options ``circuit_options`` for :class:`CircuitLearner`; ``"vae"``: the VAE
    side's variational EM).  Writes ``OUT/model.toml`` (the learned model, readable by
    ``pcbio infer``/``map``), ``OUT/learn.json`` (history, held-out scores, provenance) and
    keeps ``OUT/checkpoint.json`` (a rerun of the same command resumes from it).  Returns the
    summary written to ``learn.json``."""
    out = check_output_folder(out_dir, "--out")
    paths = [check_output_path(out / name, "--out") for name in ("model.toml", "learn.json")]
    x = load_data(data) if isinstance(data, (str, Path)) else np.asarray(data, dtype=float)
    x = model.check_x(x, "data")
    x_train, x_test = split(x, test_fraction, seed)
    rates = rates or LearningRates()
    if learner == "vae":
        agent = VaeLearner(model, rates)
    elif learner == "rate":
        agent = CircuitLearner(model, rates, batch, **(circuit_options or {}))
    else:
        raise ValueError(f"learner must be 'rate' (a brian2 circuit) or 'vae', got {learner!r}")
    state = train(agent, x_train, x_test, epochs, batch, seed, rate_decay=rate_decay,
                  checkpoint_dir=out, progress=progress)
    learned = GenerativeModel.from_dict(state["model"], name=f"{model.name}_learned")
    summary = {"learner": learner, "epochs": state["epoch"], "data": str(data) if isinstance(
        data, (str, Path)) else "array", "n_train": len(x_train), "n_test": len(x_test),
        "heldout_initial": state["history"]["heldout"][0],
        "heldout_final": heldout_score(learned, x_test, seed),
        "train_final": heldout_score(learned, x_train, seed),
        "history": state["history"], "config": state["config"], "model": state["model"]}
    text = json_text({**provenance(seed, state["config"]), "results": summary})
    toml = model_text(learned, comment=f"learned by pcbio learn ({learner}, {state['epoch']} "
                      f"epochs, seed {seed}) from {summary['data']}; see learn.json",
                      description=f"{model.name} after learning from {summary['data']}")
    write_together([(paths[0], lambda tmp: Path(tmp).write_text(toml)),
                    (paths[1], lambda tmp: Path(tmp).write_text(text))])
    progress(f"wrote {paths[0]} and {paths[1]}")
    return summary
