"""The project's own tools stay in step with the code they work on."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_mutant_of_the_mutation_tool_applies_to_the_current_code():
    """``tools/mutants.py`` changes one line per mutant by text replacement; a mutant whose
    original text no longer occurs exactly once (the code around it was rewritten) is reported
    BROKEN and not run, so README's count of bugs the suite catches would silently cover fewer.
    Each original must occur once in its file, and each mutation must change it."""
    spec = importlib.util.spec_from_file_location("mutants", ROOT / "tools" / "mutants.py")
    mutants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutants)
    stale = {}
    for name, (path, original, mutated) in mutants.MUTANTS.items():
        count = (ROOT / path).read_text().count(original)
        if count != 1 or original == mutated:
            stale[name] = count
    assert not stale, f"mutants that no longer apply (name: occurrences): {stale}"
