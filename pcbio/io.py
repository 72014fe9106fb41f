"""Results files: JSON with provenance (seed, parameters, pcbio version, git commit), written
atomically so that a failed run never leaves a half-written file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from . import __version__
from .paths import project_root


def git_commit() -> str:
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


def provenance(seed: int | None, parameters: dict) -> dict:
    """What a results file must carry to be reproduced: besides the seed, parameters, version
    and commit, the libraries whose round-off the numbers carry — the BLAS numpy calls, with
    the kernels it chose for this processor (OpenBLAS picks them at run time, so one seed can
    give results differing in the last bits on another processor) — and the processor."""
    import brian2
    import scipy
    from threadpoolctl import threadpool_info
    blas = [f"{lib['internal_api']} {lib['version']} ({lib.get('architecture') or 'unknown'})"
            for lib in threadpool_info() if lib["user_api"] == "blas"]
    return {"seed": seed, "parameters": parameters, "pcbio_version": __version__,
            "git_commit": git_commit(), "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__, "brian2": brian2.__version__,
            "blas": "; ".join(dict.fromkeys(blas)) or "unknown",     # numpy's and scipy's
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def to_jsonable(obj: Any) -> Any:
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


def check_output_path(path: str | Path, what: str) -> Path:
    """Refuse, before any computation, an output file that could not be written: ``path`` is an
    existing folder, or a folder on the way to it is a file, or nothing can be created there
    (:func:`_check_can_create`).  ``what`` names the option in the message."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what}: {path} is a folder; give a file name")
    _check_can_create(path, path.parent, what)
    return path


def check_output_folder(folder: str | Path, what: str) -> Path:
    """Like :func:`check_output_path`, for a folder that will hold results."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what}: {folder} is a file; give a folder")
    _check_can_create(folder, folder, what)
    return folder


def _check_can_create(path: Path, folder: Path, what: str) -> None:
    """``path`` will be written in ``folder`` (made if missing): the nearest existing folder on
    the way must be a folder in which a file can be made.  That is tried, not inferred from
    permission bits, which say yes to root even on a read-only file system or in ``/proc``: a
    temporary file is made there and removed at once."""
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"{what}: cannot create {path}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".pcbio-probe-")
    except OSError as err:
        raise ValueError(f"{what}: cannot write {path}: {(err.strerror or str(err)).lower()} "
                         f"in {folder}") from None
    os.close(fd)
    os.unlink(probe)


def _commit(pairs):
    """Move each finished temporary file to its destination with Ctrl-C held back, so that the
    set of files appears whole."""
    handler = signal.getsignal(signal.SIGINT)
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        umask = os.umask(0)
        os.umask(umask)
        for tmp, path in pairs:
            os.chmod(tmp, 0o666 & ~umask)     # mkstemp's 0600 would hide results from others
            os.replace(tmp, path)
    finally:
        if main_thread:
            signal.signal(signal.SIGINT, handler)


def write_together(items: Iterable[tuple[str | Path, Callable[[str], None]]]) -> list[str]:
    """Write several files so that they appear together or not at all: each ``(path, write)``
    calls ``write(tmp_path)`` on a temporary file beside ``path``; only when every one succeeded
    are they moved into place (an error or Ctrl-C before that leaves none of them)."""
    pairs = []
    try:
        for path, write in items:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
            os.close(fd)
            pairs.append((tmp, path))
            write(tmp)
        _commit(pairs)
    finally:
        for tmp, _ in pairs:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return [str(path) for _, path in pairs]


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` only if it succeeded."""
    write_together([(path, write)])


def json_text(data: Any) -> str:
    """``data`` as indented JSON text (numpy converted, non-finite floats as null)."""
    return json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n"
