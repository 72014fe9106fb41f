"""Declared circuit parameters: each circuit kind lists its own, with type, default and help.

:func:`pcbio.circuits.build_circuit`, :func:`pcbio.simulate.infer_with_circuit`,
:func:`pcbio.mapping.map_circuit` and the command line pass them through generically; the CLI
builds its ``--option`` list (and ``--help``) from these declarations, so a new circuit kind's
options appear without editing the CLI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import brian2

from ..checks import one_of, positive_int, positive_number, positive_quantity
from ..encoding import Encoding

#: kind -> (unit, command-line suffixes, noun, example in Python, example on the command line,
#: the unit results files use)
_QUANTITIES = {
    "time": (brian2.second, {"ms": brian2.ms, "us": brian2.us, "s": brian2.second}, "time",
             "10*ms", "10ms", "ms"),
    "capacitance": (brian2.farad, {"pF": brian2.pF, "nF": brian2.nF}, "capacitance", "300*pF",
                    "300pF", "pF"),
}
_QUANTITY_TEXT = re.compile(r"^\s*([-+0-9.eE]+)\s*([A-Za-z]+)\s*$")


@dataclass(frozen=True)
class Parameter:
    """One circuit parameter.

    kind: ``"time"`` / ``"capacitance"`` (a positive brian2 quantity), ``"choice"`` (one of
    ``choices``), ``"int"`` (>= 1), ``"seed"`` (an integer >= 0), ``"number"`` (> 0),
    ``"nonnegative"`` (a number >= 0), ``"encoding"`` (an
    :class:`~pcbio.encoding.Encoding` or None), ``"update"`` (a learned
    :class:`~pcbio.inference.amortized.IterativeUpdate` or None); the last two are Python only,
    not on the command line.
    """
    name: str
    kind: str
    default: Any
    help: str
    choices: tuple = ()

    @property
    def option(self) -> str:
        """The command-line option: ``tau_error`` → ``--tau-error``."""
        return "--" + self.name.replace("_", "-")

    @property
    def on_command_line(self) -> bool:
        return self.kind not in ("encoding", "update")

    def check(self, value: Any, where: str | None = None) -> Any:
        """``value`` validated (raises TypeError/ValueError naming the parameter)."""
        where = where or self.name
        if self.kind in _QUANTITIES:
            unit, _, noun, example, _, _ = _QUANTITIES[self.kind]
            return positive_quantity(value, where, unit, noun, example)
        if self.kind == "choice":
            return one_of(value, where, self.choices)
        if self.kind == "int":
            return positive_int(value, where)
        if self.kind == "seed":
            return positive_int(value, where, minimum=0)
        if self.kind in ("number", "nonnegative"):
            return positive_number(value, where, allow_zero=self.kind == "nonnegative")
        if self.kind == "update":
            from ..inference.amortized import IterativeUpdate
            if value is not None and not isinstance(value, IterativeUpdate):
                raise TypeError(f"{where} must be a pcbio.inference.amortized.IterativeUpdate, "
                                f"got {type(value).__name__}")
            return value
        if value is not None and not isinstance(value, Encoding):     # "encoding"
            raise TypeError(f"{where} must be a pcbio.encoding.Encoding, got {type(value).__name__}")
        return value

    def parse(self, text: str) -> Any:
        """A command-line string converted and validated; errors name the option."""
        if self.kind in _QUANTITIES:
            _, suffixes, noun, _, example, _ = _QUANTITIES[self.kind]
            match = _QUANTITY_TEXT.match(text)
            try:
                if match and match.group(2) in suffixes:
                    return self.check(float(match.group(1)) * suffixes[match.group(2)], self.option)
            except ValueError:
                pass
            raise ValueError(f"{self.option} must be a positive {noun} like '{example}', got {text!r}")
        convert = {"int": int, "seed": int, "number": float, "nonnegative": float}.get(self.kind)
        if convert is None:
            return self.check(text, self.option)
        try:
            return self.check(convert(text), self.option)
        except (ValueError, TypeError):
            bound = {"int": "an integer >= 1", "seed": "an integer >= 0",
                     "nonnegative": "a number >= 0"}.get(self.kind, "a number > 0")
            raise ValueError(f"{self.option} must be {bound}, got {text!r}") from None

    def to_json(self, value: Any) -> tuple[str, Any]:
        """``(key, value)`` for results files: times in ms, capacitances in pF, encodings
        described."""
        if self.kind in _QUANTITIES:
            name = _QUANTITIES[self.kind][5]
            return f"{self.name}_{name}", float(value / getattr(brian2, name))
        if self.kind == "encoding":
            return self.name, None if value is None else value.describe()
        if self.kind == "update":
            return self.name, None if value is None else {"kind": "iterative_update",
                                                          "hidden": len(value.c)}
        return self.name, value


def resolve(parameters: tuple, given: dict, kind: str) -> dict:
    """Defaults merged with ``given``, every value checked; an unknown name is an error that
    lists the circuit kind's parameters."""
    known = {p.name: p for p in parameters}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(f"circuit {kind!r} has no parameter(s) {unknown}; its parameters: "
                         f"{sorted(known)}")
    return {name: p.check(given.get(name, p.default)) for name, p in known.items()}
