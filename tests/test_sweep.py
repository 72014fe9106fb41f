"""Parameter sweeps: the sweep file, a 2-worker Dask cluster against running the points one by
one, resuming, failing points, bad files."""

import csv
import json

import pytest

from pcbio.cli import main
from pcbio.sweep import load_sweep, run_point, run_sweep

EXAMPLE = '''command = "infer"
model = "linear_gaussian_2d"
[fixed]
x = "1,-2,0.5"
method = "gradient"
[grid]
steps = [10, 100, 1000]
step_size = [0.05, 0.1]
'''


def write(tmp_path, text, name="sweep.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_issue_example_has_every_combination(tmp_path):
    """[grid] is the Cartesian product (3 × 2 points), [fixed] goes to every point, and each
    point is the command line the user would type."""
    _, points = load_sweep(write(tmp_path, EXAMPLE))
    assert len(points) == 6 and len({p.key for p in points}) == 6
    assert {(p.params["steps"], p.params["step_size"]) for p in points} == {
        (s, a) for s in (10, 100, 1000) for a in (0.05, 0.1)}
    assert points[0].argv[:2] == ["infer", "linear_gaussian_2d"] and "--method=gradient" in points[0].argv


def test_zipped_lists_go_together(tmp_path):
    """[zip] lists are taken element by element (2 points per grid combination, not 4)."""
    _, points = load_sweep(write(tmp_path, EXAMPLE.replace("[grid]\nsteps = [10, 100, 1000]\n"
                                                           "step_size = [0.05, 0.1]",
                                                           "[zip]\nseed = [0, 1]\nsteps = [5, 7]")))
    assert [(p.params["seed"], p.params["steps"]) for p in points] == [(0, 5), (1, 7)]
    assert [p.seed for p in points] == [0, 1]          # what the results file will carry


def test_a_switch_is_on_the_command_line_only_when_true(tmp_path):
    """An on/off option (``quick = true``) becomes the bare flag ``--quick``, as a user would
    type it; ``false`` leaves it out, so a grid over [true, false] gives two different points."""
    _, points = load_sweep(write(tmp_path, 'command = "run"\nexperiment = "demo"\n'
                                           '[grid]\nquick = [true, false]\n'))
    assert [p.argv for p in points] == [["run", "demo", "--quick", "--quiet"],
                                        ["run", "demo", "--quiet"]]


def test_a_failing_point_records_the_last_line_its_command_wrote(monkeypatch):
    """A point's command may write warnings to stderr before it fails; the one-line error of the
    command line is its last line, and that is what the point records (with the exit status
    when it wrote nothing)."""
    import sys

    import pcbio.cli

    def failing(argv):
        print("brian2 WARNING: something the user may ignore", file=sys.stderr)
        print("error: --steps must be an integer >= 0, got -1", file=sys.stderr)
        return 2
    monkeypatch.setattr(pcbio.cli, "main", failing)
    outcome = run_point(["infer", "linear_gaussian_2d"])
    assert outcome["status"] == "error"
    assert outcome["error"] == "error: --steps must be an integer >= 0, got -1"
    monkeypatch.setattr(pcbio.cli, "main", lambda argv: 3)
    assert run_point(["infer", "linear_gaussian_2d"])["error"] == "exit status 3"


def test_a_local_cluster_has_one_worker_per_core_this_process_may_use():
    """``default_workers``: one single-threaded worker per core in this process's CPU affinity
    (what the operating system lets it run on, not the machine's count), at least one."""
    import os

    from pcbio.sweep import default_workers
    assert default_workers() == max(1, len(os.sched_getaffinity(0)))


@pytest.mark.parametrize("text, message", [
    ('command = "train"\nmodel = "linear_gaussian_2d"\n', "command must be one of"),
    (EXAMPLE.replace("steps = [10", "stepz = [10"), "unrecognized arguments: --stepz"),
    (EXAMPLE.replace("[10, 100, 1000]", "[]"), "[grid].steps must be a non-empty list"),
    (EXAMPLE + "[zip]\nseed = [0, 1]\ntol = [1e-6]\n", "must have equal lengths"),
    (EXAMPLE.replace('model = "linear_gaussian_2d"\n', ""), 'needs model = "NAME"'),
    (EXAMPLE.replace("step_size = [0.05, 0.1]", "step_size = [-1.0]"), "--step-size"),
    (EXAMPLE.replace("[grid]", "[grid]\na = " + str(list(range(400))) + "\nb = "
                     + str(list(range(400))) + "\n"), "960,000 points"),
    ("command = [", "not a valid TOML sweep file"),
    ('command = "run"\nexperiment = "rao_ballard"\n[grid]\nset = ["prior=gaussian", '
     '"prior=cauchy"]\n', "--set prior must be one of ['gaussian', 'sparse']"),
    (EXAMPLE.replace('method = "gradient"', 'method = ["gradient", "exact"]'),
     "option 'method' takes one value"),
    (EXAMPLE + "[zip]\nsteps = [1, 2]\n", "option(s) ['steps'] given in more than one table"),
    ('modle = "linear_gaussian_2d"\n' + EXAMPLE, "unknown key(s) ['modle']"),
])
def test_bad_sweep_files_fail_in_one_line(tmp_path, capsys, text, message):
    """A bad sweep file is refused before anything runs: status 2, one line naming the file and
    the problem, no output folder."""
    code = main(["sweep", str(write(tmp_path, text)), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert message in err and "sweep.toml" in err
    assert not (tmp_path / "out").exists()


def test_resume_and_failing_points(tmp_path, capsys):
    """Serially in this process: a point beyond the stability limit fails with its one-line
    error while the others finish (status 1 from the command line); running again skips the
    finished points and retries only the failed one; deleting a finished point (as an
    interrupt would leave it) reruns just that one.  results.csv has a row per point."""
    path = write(tmp_path, EXAMPLE.replace("[0.05, 0.1]", "[0.05, 0.5]"))
    out = tmp_path / "out"
    first = run_sweep(path, out, workers=0)
    assert first == {"total": 6, "skipped": 0, "ran": 6, "failed": 3}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 6
    failed = [r for r in rows if r["status"] == "error"]
    assert len(failed) == 3 and all("--step-size 0.5 is beyond" in r["error"] for r in failed)
    assert all(r["result.means.level1.0"] for r in rows if r["status"] == "ok")
    again = run_sweep(path, out, workers=0)
    assert again == {"total": 6, "skipped": 3, "ran": 3, "failed": 3}
    victim = next(p for p in (out / "points").glob("*.json")
                  if json.loads(p.read_text())["status"] == "ok")
    victim.unlink()
    assert run_sweep(path, out, workers=0)["ran"] == 4
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 1
    assert "3 of 6 points failed" in capsys.readouterr().err


def test_dask_cluster_gives_the_same_results_as_one_by_one(tmp_path):
    """On a local Dask cluster of 2 worker processes every point's result equals running its
    command here, one by one (the points are deterministic); each point's file carries the seed
    its command ran with (here none is given: the command's default, 0)."""
    path = write(tmp_path, EXAMPLE)
    run_sweep(path, tmp_path / "out", workers=2)
    _, points = load_sweep(path)
    for p in points:
        record = json.loads((tmp_path / "out" / "points" / f"{p.key}.json").read_text())
        assert record["status"] == "ok" and record["parameters"] == p.params
        assert record["result"] == run_point(p.argv)["result"]
        assert record["pcbio_version"] and record["git_commit"]
        assert record["seed"] == p.seed == 0


def _blas_threads():
    import threadpoolctl
    return [lib["num_threads"] for lib in threadpoolctl.threadpool_info()]


def test_local_cluster_workers_use_one_blas_thread_each():
    """A local cluster has one single-threaded worker per core, so each worker's BLAS must run
    one thread too, or the workers' matrix products oversubscribe the cores (workers forked from
    this process would otherwise keep its BLAS thread pool)."""
    from pcbio.sweep import Pool
    with Pool(workers=2) as pool:
        per_worker = pool.client.run(_blas_threads)
    assert len(per_worker) == 2
    assert all(threads and set(threads) == {1} for threads in per_worker.values())


def test_a_learning_sweep_writes_each_point_into_its_own_folder(tmp_path):
    """command = "learn": every point learns into OUT/points/KEY/ (model.toml, learn.json), and
    results.csv carries its held-out scores; 'out' cannot be set per point."""
    import numpy as np
    from pcbio import load_model
    data = tmp_path / "data.npy"
    np.save(data, load_model("linear_gaussian_2d").sample(40, seed=0)[0])
    text = (f'command = "learn"\nmodel = "linear_gaussian_2d"\n[fixed]\ndata = "{data}"\n'
            'circuit = "vae"\nbatch = 8\nepochs = 2\n[grid]\nlr_weights = [0.0, 0.05]\n')
    summary = run_sweep(write(tmp_path, text), tmp_path / "out", workers=0)
    assert summary == {"total": 2, "ran": 2, "skipped": 0, "failed": 0}
    rows = list(csv.DictReader(open(tmp_path / "out" / "results.csv")))
    assert {r["status"] for r in rows} == {"ok"}
    assert all(float(r["result.heldout_final.log_likelihood"]) < 0 for r in rows)
    assert len(list((tmp_path / "out" / "points").glob("*/model.toml"))) == 2
    with pytest.raises(ValueError, match="'out' is not an option"):
        load_sweep(write(tmp_path, text + '[zip]\nout = ["a"]\n', "bad.toml"))


@pytest.mark.standalone
def test_a_worker_compiles_a_standalone_project_once_and_reruns_it(tmp_path):
    """Sweep workers keep their cpp_standalone project (keep_projects): a second point with
    the same circuit and new data re-runs the compiled program — the same project object, and
    the same numbers as a fresh compilation; a run from other initial latents starts there and
    lands where the runtime device does; the program refuses data of another batch size; a model
    with other weights (its circuit's description unchanged) gets a new program, not the numbers
    of the old weights, and so does a longer run (300 records of 0.1 ms, not the 200 the old
    program makes); a runtime run closes the kept project, and so does turning keeping off,
    which gives brian2 back its runtime device."""
    import brian2
    import numpy as np
    from brian2 import ms
    from brian2.devices.device import RuntimeDevice
    from pcbio import load_model, standalone
    from pcbio.circuits import build_circuit
    from pcbio.simulate import simulate
    model = load_model("linear_gaussian_2d")
    circuit = build_circuit(model, "rate")
    xs = [np.array([[1.0, -2.0, 0.5]]), np.array([[0.3, 0.1, -1.0]])]
    fresh = [simulate(circuit, x, duration=20 * ms, target="cpp_standalone").final_means()[0]
             for x in xs]
    init = [np.full((1, d), 0.7) for d in model.latent_dims]
    other = build_circuit(model.replaced(links=[model.links[0].replaced(
        weights=2 * model.links[0].W)]), "rate")
    # the runtime's numbers, first: a runtime run closes a kept project
    runtime_init, runtime_other = (simulate(c, xs[0], duration=20 * ms, init=i, target="numpy")
                                   .final_means()[0] for c, i in ((circuit, init), (other, None)))
    standalone.keep_projects(True)
    try:
        first = simulate(circuit, xs[0], duration=20 * ms, target="cpp_standalone")
        project = standalone._kept["project"]
        second = simulate(circuit, xs[1], duration=20 * ms, target="cpp_standalone")
        assert standalone._kept["project"] is project is not None
        assert np.allclose(first.final_means()[0], fresh[0], rtol=1e-12)
        assert np.allclose(second.final_means()[0], fresh[1], rtol=1e-12)
        started = simulate(circuit, xs[0], duration=20 * ms, init=init, target="cpp_standalone")
        assert standalone._kept["project"] is project
        np.testing.assert_allclose(started.means[0][0], init[0], rtol=1e-12)
        np.testing.assert_allclose(started.final_means()[0], runtime_init, rtol=1e-9)
        with pytest.raises(ValueError, match="this project was compiled for 1"):
            project.run(np.zeros((2, 3)))
        moved = simulate(other, xs[0], duration=20 * ms, target="cpp_standalone")
        assert standalone._kept["project"] is not project
        np.testing.assert_allclose(moved.final_means()[0], runtime_other, rtol=1e-9)
        project = standalone._kept["project"]
        longer = simulate(other, xs[0], duration=30 * ms, target="cpp_standalone")
        assert standalone._kept["project"] not in (project, None)
        assert longer.info.duration_s == pytest.approx(0.03) and len(longer) == 300
        simulate(circuit, xs[0], duration=5 * ms, target="numpy")
        assert standalone._kept["project"] is None
        simulate(circuit, xs[0], duration=5 * ms, target="cpp_standalone")
        assert standalone._kept["project"] is not None
        standalone.keep_projects(False)
        assert standalone._kept["project"] is None
        assert isinstance(brian2.get_device(), RuntimeDevice)
    finally:
        standalone.keep_projects(False)


def test_the_shipped_sweep_files_are_valid():
    """Every sweep file under experiments/sweeps/ passes the same checks as a user's (command,
    target, every option through the command-line parser) before anything runs; the Rao &
    Ballard ones have the five seeds README's table is read from, each a distinct point, the
    sparse prior's two, which set it, and the unit-length basis' three, which set both of its
    options."""
    from pcbio.paths import experiments_dir
    files = sorted((experiments_dir() / "sweeps").glob("*.toml"))
    assert files
    for path in files:
        load_sweep(path)
    _, points = load_sweep(experiments_dir() / "sweeps" / "rao_ballard_seeds.toml")
    assert [p.argv[:2] for p in points] == [["run", "rao_ballard"]] * 5
    assert [p.params["seed"] for p in points] == [0, 1, 2, 3, 4]
    assert len({p.key for p in points}) == 5
    _, points = load_sweep(experiments_dir() / "sweeps" / "rao_ballard_sparse.toml")
    assert [(p.seed, p.argv[2]) for p in points] == [(0, "--set=prior=sparse"),
                                                     (1, "--set=prior=sparse")]
    # a list for --set gives the option once per item: both of the variant's options
    _, points = load_sweep(experiments_dir() / "sweeps" / "rao_ballard_unit_norm.toml")
    assert [(p.seed, p.argv[2:4]) for p in points] == [
        (s, ["--set=prior=sparse", "--set=basis=unit_norm"]) for s in (0, 1, 2)]


@pytest.mark.parametrize("address, message", [
    ("localhost", "missing port number"),
    ("tcp://127.0.0.1:1", "no Dask scheduler answered at tcp://127.0.0.1:1"),
])
def test_a_scheduler_that_cannot_be_reached_is_the_users_mistake(tmp_path, capsys, address,
                                                                 message):
    """A malformed --scheduler address, or one where nothing answers (port 1 on this machine,
    with Dask's connect timeout cut to 1 s), is bad input: status 2 and one line naming
    --scheduler, nothing written — not an "internal error" (status 3) as it used to be."""
    import importlib

    import dask
    # distributed's defaults must be in dask's config before the change: leaving the context
    # would otherwise remove the whole "distributed" section
    importlib.import_module("distributed")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["run", "demo", "--quick", "--quiet", "--scheduler", address,
                     "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "--scheduler" in err and message in err
    assert not (tmp_path / "out").exists()


def test_a_point_is_identified_by_its_model_file_s_content(tmp_path):
    """A point's identity (what a resumed sweep skips) covers the model file's content, not just
    its name: the same file gives the same identities, an edited one new identities, so a sweep
    resumed after the model changed runs every point again instead of keeping stale results."""
    from pcbio.paths import find_model
    model = tmp_path / "my_model.toml"
    model.write_text(find_model("linear_gaussian_2d").read_text())
    sweep = write(tmp_path, EXAMPLE.replace('"linear_gaussian_2d"', f'"{model}"'))
    keys = [p.key for p in load_sweep(sweep)[1]]
    assert keys == [p.key for p in load_sweep(sweep)[1]]
    model.write_text(model.read_text().replace("mean = [0.5, -1.0]", "mean = [0.5, -1.5]"))
    assert not set(keys) & {p.key for p in load_sweep(sweep)[1]}


def test_results_csv_keeps_lists_up_to_its_limit_and_names_levels_from_one():
    """``flatten`` (the columns of results.csv): a list of CSV_MAX_LIST values is kept, one entry
    longer is left out (it stays in the point's JSON); per-level lists are named level1, level2
    … as the model's levels are."""
    from pcbio.sweep import CSV_MAX_LIST, flatten
    assert len(flatten({"a": list(range(CSV_MAX_LIST))})) == CSV_MAX_LIST
    assert flatten({"a": list(range(CSV_MAX_LIST + 1)), "b": 1}) == {"b": 1}
    assert flatten({"means": [[0.5], [2.0]]}) == {"means.level1.0": 0.5, "means.level2.0": 2.0}


def test_the_size_limit_counts_zipped_points_and_gives_way_to_force(tmp_path, monkeypatch):
    """A sweep has (product of the [grid] lists' lengths) × (the [zip] lists' common length)
    points; more than MAX_POINTS is refused unless forced.  With the limit put at 5: a grid of 3
    alone passes, the same grid with a [zip] of 2 (6 points) is refused, and loads with
    ``force``; with the limit at 6 it loads without."""
    import pcbio.sweep as sweep
    monkeypatch.setattr(sweep, "MAX_POINTS", 5)
    grid = EXAMPLE.replace("\nstep_size = [0.05, 0.1]", "")
    assert len(load_sweep(write(tmp_path, grid))[1]) == 3
    zipped = write(tmp_path, grid + "[zip]\nseed = [0, 1]\ntol = [1e-6, 1e-8]\n", "zipped.toml")
    with pytest.raises(ValueError, match="the grid has 6 points"):
        load_sweep(zipped)
    assert len(load_sweep(zipped, force=True)[1]) == 6
    monkeypatch.setattr(sweep, "MAX_POINTS", 6)          # the limit itself is allowed
    assert len(load_sweep(zipped)[1]) == 6
