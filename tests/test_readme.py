"""README's Python examples run as printed: a user who copies one gets no NameError, no
mismatched shapes and no renamed function."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: examples left to the full runs they describe: text in the block -> why it is not run here
NOT_RUN = {
    "SLURMCluster": "needs a SLURM cluster and dask-jobqueue",
    "epochs=150": "trains a VAE and a learned update for minutes (the iterative_amortized "
                  "experiment's runs, tested there)",
    "training_inputs(12400": "trains Rao & Ballard's network for about a minute (the "
                             "rao_ballard experiment's run, tested there)",
}


def examples():
    """README's ```python blocks, in order."""
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_examples_run(tmp_path, monkeypatch):
    """Every Python block of README, run in order in one namespace (a block may use what the one
    before it made, as the text reads), in a scratch folder; only the blocks of ``NOT_RUN`` are
    left out, and each of those must still be in README (so the list cannot go stale)."""
    monkeypatch.chdir(tmp_path)
    blocks = examples()
    assert len(blocks) >= 5
    for marker in NOT_RUN:
        assert sum(marker in block for block in blocks) == 1, marker
    namespace: dict = {}
    for block in blocks:
        if any(marker in block for marker in NOT_RUN):
            continue
        try:
            exec(compile(block, "README.md", "exec"), namespace)
        except Exception as err:                    # name the example that failed
            pytest.fail(f"README example failed ({type(err).__name__}: {err}):\n{block}")
