"""Where pcbio finds the project's ``models/`` and ``experiments/`` folders.

They live beside the ``pcbio`` package in a checkout (``pip install -e .``); the environment
variable ``PCBIO_HOME`` points elsewhere (a copy of the project) when needed.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    return Path(os.environ.get("PCBIO_HOME", Path(__file__).resolve().parent.parent))


def _folder(name):
    folder = project_root() / name
    if not folder.is_dir():
        raise FileNotFoundError(f"no {name}/ folder at {folder}; install pcbio from a checkout "
                                f"(pip install -e .) or set PCBIO_HOME to the project folder")
    return folder


def models_dir() -> Path:
    return _folder("models")


def experiments_dir() -> Path:
    return _folder("experiments")


def list_models() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.toml"))


def list_experiments() -> list[str]:
    return sorted(p.stem for p in experiments_dir().glob("*.py") if not p.stem.startswith("_"))


def find_model(path_or_name: str | Path) -> Path:
    """A model file path: an existing path as given, else ``models/NAME.toml``."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a model file (give a .toml file or the name "
                         "of a model in models/)")
    candidate = models_dir() / f"{path.stem}.toml"
    if path.suffix in ("", ".toml") and candidate.is_file() and path.parent == Path("."):
        return candidate
    raise FileNotFoundError(f"model file not found: {path_or_name} "
                            f"(known models: {', '.join(list_models())})")


def find_experiment(name: str) -> Path:
    path = experiments_dir() / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"unknown experiment {name!r}; available: "
                                f"{', '.join(list_experiments())}")
    return path
