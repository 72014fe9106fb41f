"""Running a figure script from ``experiments/``.

An experiment is a module ``experiments/NAME.py`` with a one-line ``DESCRIPTION`` and a function
``run(quick, seed, progress) -> (figure, data, parameters)``; one that sweeps also takes
``pool`` (a :class:`pcbio.sweep.Pool`) and maps its independent runs over it, so that it runs
serially, on a local Dask cluster or on a remote one alike.  An experiment with variants declares
them in ``OPTIONS`` (name → allowed values, the first the default, or a :class:`NumberOption`
for any number > 0), and its ``run`` takes them as keyword arguments, as the command line gives
them, text (``pcbio run NAME --set name=value``).  :func:`run_experiment` calls it and
writes ``OUT/NAME.json`` (the numbers behind the figure plus provenance) and ``OUT/NAME.pdf`` /
``OUT/NAME.png`` — nothing is written unless the run succeeds.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .checks import one_of, positive_number
from .io import check_output_folder, check_output_path, json_text, provenance
from .paths import find_experiment
from .plotting import save_figure
from .progress import SILENT, Reporter
from .sweep import Pool


@dataclass(frozen=True)
class NumberOption:
    """An experiment option that takes any finite number > 0 (``--set name=0.01``), passed to
    ``run`` as the text given; ``default`` is the text of the default value."""
    default: str

    def check(self, value: str, name: str) -> str:
        """``value`` if it reads as a finite number > 0; a one-line ValueError otherwise."""
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number > 0, got {value!r}") from None
        positive_number(number, name)
        return value

    def __str__(self) -> str:
        return f"NUMBER > 0 (default {self.default})"


def describe_option(allowed: Sequence[str] | NumberOption) -> str:
    """What an option of ``OPTIONS`` allows, for ``pcbio list``: ``a|b (default a)`` or
    ``NUMBER > 0 (default x)``."""
    if isinstance(allowed, NumberOption):
        return str(allowed)
    return f"{'|'.join(allowed)} (default {allowed[0]})"


def load_experiment(name: str) -> ModuleType:
    """The module of ``experiments/NAME.py`` (its ``DESCRIPTION`` and ``run``).  A script that
    is not valid Python, or lacks either, is refused in one line (ValueError) naming it."""
    path = find_experiment(name)
    spec = importlib.util.spec_from_file_location(f"pcbio_experiment_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        raise ValueError(f"{path}: not valid Python (line {err.lineno}: {err.msg})") from None
    if not isinstance(getattr(module, "DESCRIPTION", None), str) or not callable(
            getattr(module, "run", None)):
        raise ValueError(f"{path}: an experiment needs a one-line DESCRIPTION and a function "
                         "run(quick, seed, progress) -> (figure, data, parameters)")
    return module


def experiment_options(name: str, settings: Sequence[str] = (),
                       module: ModuleType | None = None) -> dict[str, str]:
    """The options ``settings`` (``"name=value"`` strings, from ``--set``) as a dict, checked by
    :func:`check_options`; a one-line ValueError naming ``--set`` otherwise."""
    options = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise ValueError(f"--set must be NAME=VALUE, got {setting!r}")
        if key in options:
            raise ValueError(f"--set: option {key!r} is given twice")
        options[key] = value
    return check_options(name, options, module)


def check_options(name: str, options: dict[str, str],
                  module: ModuleType | None = None) -> dict[str, str]:
    """``options`` checked against what experiment ``name`` (its loaded ``module``, if given)
    declares in ``OPTIONS``, before anything runs: a one-line ValueError naming ``--set`` for an
    option it does not have or a value it does not allow."""
    declared = getattr(module or load_experiment(name), "OPTIONS", {})
    for key, value in options.items():
        if key not in declared:
            raise ValueError(f"--set: experiment {name} has no option {key!r}"
                             + (f"; its options: {', '.join(declared)}" if declared
                                else " (it takes none)"))
        if isinstance(declared[key], NumberOption):
            declared[key].check(value, f"--set {key}")
        else:
            one_of(value, f"--set {key}", declared[key])
    return dict(options)


def run_experiment(name: str, out_dir: str | Path = "results", quick: bool = False, seed: int = 0,
                   progress: Reporter = SILENT, pool: Pool | None = None,
                   options: dict[str, str] | None = None) -> list[str]:
    """Run experiment ``name`` (its sweeps on ``pool`` if it takes one; default serially here)
    with its ``options`` (see :func:`experiment_options`; default: each one's first value);
    returns the paths written (json, pdf, png)."""
    module = load_experiment(name)
    options = check_options(name, options or {}, module)
    stem = check_output_folder(out_dir, "--out") / name
    for suffix in (".json", ".pdf", ".png"):
        check_output_path(f"{stem}{suffix}", "--out")
    progress(f"experiment {name}: {module.DESCRIPTION}")
    kwargs = {"pool": pool or Pool()} if "pool" in inspect.signature(module.run).parameters else {}
    kwargs.update(options)
    fig, data, parameters = module.run(quick=quick, seed=seed, progress=progress, **kwargs)
    text = json_text({"experiment": name, "description": module.DESCRIPTION, "quick": quick,
                      "options": options, **provenance(seed, parameters),
                      "results": data})                                  # fails before writing
    paths = save_figure(fig, f"{stem}.pdf", f"{stem}.png",
                        together=[(f"{stem}.json", lambda tmp: Path(tmp).write_text(text))])
    progress(f"wrote {', '.join(paths)}")
    return paths
