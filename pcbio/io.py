"""Results files: JSON with provenance (seed, parameters, pcbio version, git commit), written
atomically so that a failed run never leaves a half-written file."""

import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from . import __version__
from .paths import project_root


def git_commit():
    """The project's git commit (with ``-dirty`` if the tree has changes), or ``"unknown"``."""
    try:
        root = project_root()
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(seed, parameters):
    """What a results file must carry to be reproduced."""
    import brian2
    return {"seed": seed, "parameters": parameters, "pcbio_version": __version__,
            "git_commit": git_commit(), "python": platform.python_version(),
            "numpy": np.__version__, "brian2": brian2.__version__,
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def to_jsonable(obj):
    """Convert numpy arrays/scalars (and nested containers of them) to plain JSON types;
    non-finite floats become ``null``."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def atomic_write(path, write):
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)         # mkstemp's 0600 would hide results from others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def json_text(data):
    """``data`` as indented JSON text (numpy converted, non-finite floats as null)."""
    return json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"
