"""Writing a model as a TOML model file that ``load_model`` reads back exactly (floats are
written with Python's shortest round-trip representation)."""

import numpy as np

from .model import GenerativeModel


def _value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if np.ndim(v) == 0:
        return repr(float(v))
    if np.ndim(v) == 1:
        return "[" + ", ".join(repr(float(a)) for a in v) + "]"
    return "[\n" + ",\n".join("  " + _value(row) for row in v) + ",\n]"


def model_text(model: GenerativeModel, comment: str = "", description: str = "") -> str:
    """The model as TOML text (links top-down, as model files list them); ``comment`` lines
    go first (provenance), ``description`` into the file's ``description``."""
    spec = model.to_dict()
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"name = {_value(spec['name'])}"]
    if description:
        lines.append(f"description = {_value(description)}")
    lines += ["", "[top]"] + [f"{k} = {_value(v)}" for k, v in spec["top"].items()]
    for link in spec["links"]:
        lines += ["", "[[links]]"] + [f"{k} = {_value(v)}" for k, v in link.items()]
    if "flow" in spec:
        lines += ["", "[flow]"] + [f"{k} = {_value(v)}" for k, v in spec["flow"].items()]
    return "\n".join(lines) + "\n"
