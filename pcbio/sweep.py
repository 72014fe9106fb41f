"""Parameter sweeps on Dask: every point of a grid run as a ``pcbio`` command, in parallel, on
this machine or a cluster; resumable and fault-tolerant.

A sweep file (TOML) names a command and its options::

    command = "infer"               # infer, map, learn or run (an experiment)
    model = "linear_gaussian_2d"    # for infer, map and learn;  experiment = "NAME" for run
    [fixed]                         # options every point gets
    x = "1,-2,0.5"
    method = "gradient"
    [grid]                          # every combination of these
    steps = [10, 100, 1000]
    step_size = [0.05, 0.1]
    [zip]                           # optional: lists of equal length, taken together
    seed = [0, 1]
    tol = [1e-6, 1e-8]

Options are the command line's (``step_size`` is ``--step-size``) and are checked by the same
parser before anything runs, so a bad file gets the same one-line errors as a bad command.  Each
point is identified by a hash of its command, options, the model file's content and the pcbio
version: running a sweep again skips the points already finished, a failing point is recorded
with its one-line error and does not stop the others, and every finished point is kept when a
sweep is interrupted.  Results: ``DIR/points/<id>.json`` (with provenance) and
``DIR/results.csv`` (a row per point: its parameters, its scalar results flattened, ``status``,
``error``).

By default the points run on a local Dask cluster sized to the machine, started and stopped
here; ``scheduler="tcp://host:8786"`` sends them to an existing cluster instead.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import itertools
import json
import os
import signal
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import __version__
from .checks import positive_int
from .io import atomic_write, check_output_folder, json_text, provenance
from .progress import SILENT, Reporter

COMMANDS = ("infer", "map", "run", "learn")
#: commands that write into a folder of their own (``--out``), one per point
FOLDER_COMMANDS = {"run": "{name}.json", "learn": "learn.json"}
#: a grid larger than this is refused unless forced
MAX_POINTS = 100_000
#: lists longer than this are left out of results.csv (they stay in each point's JSON)
CSV_MAX_LIST = 32


@dataclass
class Point:
    """One point of a sweep: its options (fixed and varied), command line, identity, and the
    seed its command runs with (given, or the command's default; None if it takes none)."""
    params: dict
    argv: list
    key: str
    seed: int | None = None


def _option(name):
    return "--" + name.replace("_", "-")


def _argv(command, target, options):
    """The command line of one point (``--json`` added where the command prints results)."""
    argv = [command, target] if target else [command]
    for name, value in options.items():
        if isinstance(value, bool):
            if value:
                argv.append(_option(name))
        elif isinstance(value, list):             # a repeatable option, given once per item
            if name != "set":
                raise ValueError(f"option {name!r} takes one value, got the list {value}; only "
                                 "'set' (an experiment's options) takes a list")
            argv += [f"{_option(name)}={item}" for item in value]
        else:
            argv.append(f"{_option(name)}={value}")
    return argv + (["--json", "--quiet"] if command in ("infer", "map") else ["--quiet"])


def load_sweep(path: str | Path, force: bool = False) -> tuple[dict, list[Point]]:
    """Read and check a sweep file; returns its table and its points.  Errors name the file and
    the key (ValueError), before anything runs."""
    from .cli import UsageError, build_parser
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file not found: {path}")
    try:
        spec = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path.name}: not a valid TOML sweep file ({err})") from None
    unknown = set(spec) - {"command", "model", "experiment", "fixed", "grid", "zip",
                           "description"}
    if unknown:
        raise ValueError(f"{path.name}: unknown key(s) {sorted(unknown)}; allowed: command, model, "
                         "experiment, description, [fixed], [grid], [zip]")
    command = spec.get("command")
    if command not in COMMANDS:
        raise ValueError(f"{path.name}: command must be one of {list(COMMANDS)}, got {command!r}")
    target_key = "experiment" if command == "run" else "model"
    target = spec.get(target_key)
    if not isinstance(target, str) or not target:
        raise ValueError(f"{path.name}: command {command!r} needs {target_key} = \"NAME\"")
    tables = {}
    for table in ("fixed", "grid", "zip"):
        value = spec.get(table, {})
        if not isinstance(value, dict):
            raise ValueError(f"{path.name}: [{table}] must be a table of options")
        tables[table] = value
    for table in ("grid", "zip"):
        for name, values in tables[table].items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{path.name}: [{table}].{name} must be a non-empty list of values")
    seen = [n for t in tables.values() for n in t]
    if "out" in seen:
        raise ValueError(f"{path.name}: 'out' is not an option of a sweep point: each point "
                         "writes into OUT/points/ (pcbio sweep FILE --out OUT)")
    repeated = sorted({n for n in seen if seen.count(n) > 1})
    if repeated:
        raise ValueError(f"{path.name}: option(s) {repeated} given in more than one table")
    lengths = {len(v) for v in tables["zip"].values()}
    if len(lengths) > 1:
        raise ValueError(f"{path.name}: the lists in [zip] must have equal lengths, got "
                         f"{ {n: len(v) for n, v in tables['zip'].items()} }")
    total = 1
    for values in tables["grid"].values():
        total *= len(values)
    total *= lengths.pop() if lengths else 1
    if total > MAX_POINTS and not force:
        raise ValueError(f"{path.name}: the grid has {total:,} points (more than {MAX_POINTS:,}); "
                         "add --force to run it anyway")
    names = list(tables["grid"])
    zipped = list(zip(*tables["zip"].values())) or [()]
    model_text = _target_text(command, target)
    parser = build_parser()
    points, experiment = [], None
    for combination in itertools.product(*tables["grid"].values()):
        for row in zipped:
            params = {**tables["fixed"], **dict(zip(names, combination)),
                      **dict(zip(tables["zip"], row))}
            try:
                argv = _argv(command, target, params)
                parsed = parser.parse_args(
                    argv + (["--out", "OUT"] if command in FOLDER_COMMANDS else []))
                if getattr(parsed, "set", None):          # an experiment's options
                    from .experiment import experiment_options, load_experiment
                    experiment = experiment or load_experiment(target)      # loaded once
                    experiment_options(target, parsed.set, experiment)
            except (UsageError, ValueError) as err:
                raise ValueError(f"{path.name}: {err}") from None
            key = hashlib.sha256(json.dumps([command, target, params, model_text, __version__],
                                            sort_keys=True, default=str).encode()).hexdigest()[:16]
            points.append(Point(params, argv, key, getattr(parsed, "seed", None)))
    return spec, points


def _target_text(command, target):
    """The model file's (or experiment script's) content, part of each point's identity."""
    from .paths import find_experiment, find_model
    try:
        path = find_experiment(target) if command == "run" else find_model(target)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(str(err)) from None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _import_brian2_off_the_main_thread():
    """brian2 installs a Ctrl-C handler when it is imported, which Python allows only in the
    main thread; a Dask worker runs tasks in other threads, so import it there without one."""
    if "brian2" in sys.modules or threading.current_thread() is threading.main_thread():
        return
    original = signal.signal
    signal.signal = lambda *args, **kwargs: None
    try:
        import brian2  # noqa: F401
    finally:
        signal.signal = original


def run_point(argv: list, out_dir: str | None = None) -> dict:
    """Run one point's command in this process (a Dask worker): ``{"status": "ok", "result":
    …}`` or ``{"status": "error", "error": one line}``, and the seconds it took."""
    _import_brian2_off_the_main_thread()
    from .cli import main
    from .standalone import keep_projects
    keep_projects(True)          # cpp_standalone points: compile once per worker, re-run
    if out_dir is not None:
        argv = argv + ["--out", out_dir]
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    seconds = time.perf_counter() - start
    if code != 0:
        message = stderr.getvalue().strip().splitlines()
        return {"status": "error", "error": message[-1] if message else f"exit status {code}",
                "seconds": seconds}
    if out_dir is not None:
        results_file = FOLDER_COMMANDS[argv[0]].format(name=argv[1])
        result = json.loads((Path(out_dir) / results_file).read_text())["results"]
    else:
        result = json.loads(stdout.getvalue())
    return {"status": "ok", "result": result, "seconds": seconds}


class Pool:
    """Where independent tasks run: serially here (``workers=None`` and no scheduler), on a local
    Dask cluster of ``workers`` processes started and stopped by the pool, or on an existing
    Dask cluster at ``scheduler``.  Use as a context manager."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        if workers is not None:
            workers = positive_int(workers, "workers", minimum=0)     # 0: serially, here
        self.workers, self.scheduler = workers, scheduler
        self.client = self.cluster = None

    def __enter__(self):
        if self.scheduler or self.workers:
            from dask.distributed import Client
            if self.scheduler:
                self.client = _connect(self.scheduler)
            else:
                self.cluster = _local_cluster(self.workers)
                self.client = Client(self.cluster)
                self.client.run(_one_blas_thread)
        return self

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def imap(self, fn: Callable[[Any], Any], items: Sequence) -> Iterator[tuple[int, Any]]:
        """``(index, fn(item))`` for every item, in the order they finish."""
        if self.client is None:
            for k, item in enumerate(items):
                yield k, fn(item)
            return
        from dask.distributed import as_completed
        futures = {self.client.submit(fn, item, pure=False): k for k, item in enumerate(items)}
        for future in as_completed(futures):
            yield futures[future], future.result()

    def map(self, fn: Callable[[Any], Any], items: Sequence) -> list:
        """``[fn(item) for item in items]``, computed wherever the pool runs."""
        out = [None] * len(items)
        for k, value in self.imap(fn, items):
            out[k] = value
        return out


def _connect(address: str):
    """A client of the Dask scheduler at ``address``.  A malformed address or one where no
    scheduler answers within Dask's connect timeout (``distributed.comm.timeouts.connect``,
    30 s by default) is the user's mistake: a one-line ValueError naming ``--scheduler``."""
    from dask.distributed import Client
    try:
        return Client(address)
    except ValueError as err:                       # no port, unknown scheme
        raise ValueError(f"--scheduler: {err}; give an address like tcp://host:8786") from None
    except OSError as err:                          # nothing answered (timed out, refused)
        raise ValueError(f"--scheduler: no Dask scheduler answered at {address} ({err}); start "
                         "one ('dask scheduler') or check the address") from None


def _local_cluster(workers: int):
    """A cluster of ``workers`` single-threaded worker processes on this machine.  On Linux the
    workers are forked: they start as copies of this process — 0.2 s instead of the 3 s a fresh
    interpreter needs to import numpy, brian2 and pcbio again (measured on the 2-core
    development machine) — and inherit what it has already loaded.  Elsewhere they are spawned
    (macOS's system libraries are not safe to use after a fork).  Dask's statistical profiler,
    which samples each worker's stack every 10 ms for a dashboard this cluster does not serve,
    is off."""
    import dask
    from dask.distributed import LocalCluster
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    with dask.config.set({"distributed.worker.multiprocessing-method": method,
                          "distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None)


def _one_blas_thread():
    """One BLAS thread per single-threaded worker, so that the workers do not oversubscribe the
    cores (a forked worker keeps the thread pool its parent's BLAS started with; the
    ``OMP_NUM_THREADS=1`` Dask sets for spawned workers comes too late for it)."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1)          # stays in force: not used as a context


def default_workers() -> int:
    """A local cluster's size: one single-threaded worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def run_sweep(path: str | Path, out: str | Path, scheduler: str | None = None,
              workers: int | None = None, force: bool = False,
              progress: Reporter = SILENT) -> dict:
    """Run every point of the sweep file at ``path`` that is not finished in ``out`` yet, on a
    local Dask cluster of ``workers`` processes (default one per core; 0: serially in this
    process) or on the cluster at ``scheduler``; returns how many points there are and how many
    ran, were skipped and failed."""
    spec, points = load_sweep(path, force=force)
    out = check_output_folder(out, "--out")
    point_dir = out / "points"
    todo = [p for p in points if not _finished(point_dir / f"{p.key}.json")]
    summary = {"total": len(points), "skipped": len(points) - len(todo), "ran": 0, "failed": 0}
    progress(f"sweep {Path(path).name}: {len(points)} points, {summary['skipped']} already "
             f"finished, {len(todo)} to run")
    base, start = provenance(None, {}), time.monotonic()
    run_dirs = [str(point_dir / p.key) if spec["command"] in FOLDER_COMMANDS else None
                for p in todo]
    try:
        size = default_workers() if workers is None and not scheduler else workers
        with Pool(workers=size or None, scheduler=scheduler) as pool:
            for k, outcome in pool.imap(_run_task, list(zip((p.argv for p in todo), run_dirs))):
                point = todo[k]
                record = {"point": point.key, "command": spec["command"], "argv": point.argv,
                          **base, "seed": point.seed, "parameters": point.params, **outcome}
                atomic_write(point_dir / f"{point.key}.json",
                             lambda tmp, text=json_text(record): Path(tmp).write_text(text))
                summary["ran"] += 1
                summary["failed"] += outcome["status"] != "ok"
                done = summary["ran"]
                elapsed = time.monotonic() - start
                progress(f"{done + summary['skipped']}/{len(points)} points, {elapsed:.0f} s elapsed, "
                         f"~{elapsed / done * (len(todo) - done):.0f} s left", done / len(todo))
    finally:
        write_results_csv(points, point_dir, out / "results.csv")
        from .standalone import keep_projects
        keep_projects(False)     # points run in this process (workers=0) kept one
    return summary


def _run_task(task):
    return run_point(*task)


def _finished(path):
    try:
        return json.loads(path.read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def flatten(value: Any, prefix: str = "") -> dict:
    """Scalars of a nested result with dotted names (``result.means.level1.0``,
    ``result.levels.level1.fixed_point_rel_err``); lists longer than CSV_MAX_LIST are left out."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        if len(value) > CSV_MAX_LIST:
            return {}
        level_lists = prefix.rsplit(".", 1)[-1] in ("means", "levels", "posterior_var")
        items = ((f"level{k + 1}" if level_lists else str(k), v) for k, v in enumerate(value))
    else:
        return {prefix: value}
    out = {}
    for key, item in items:
        out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def write_results_csv(points: list[Point], point_dir: Path, path: Path) -> None:
    """One row per point: its identity, parameters, flattened scalar results, status, error."""
    rows, result_columns = [], set()
    for p in points:
        try:
            record = json.loads((point_dir / f"{p.key}.json").read_text())
        except (OSError, ValueError):
            record = {"status": "not run"}
        results = (flatten(record.get("result", {}), "result") if record.get("status") == "ok"
                   else {})
        result_columns |= set(results)
        rows.append({"point": p.key, **p.params, **results, "status": record.get("status"),
                     "error": record.get("error", "")})
    params = sorted({n for p in points for n in p.params})
    columns = ["point"] + params + sorted(result_columns) + ["status", "error"]

    def write(tmp):
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
    atomic_write(path, write)
