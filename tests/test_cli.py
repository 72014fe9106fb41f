"""The `pcbio` command and the experiments it runs (in-process, through pcbio.cli.main)."""

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import bogacz_posterior_mode
from pcbio import load_model
from pcbio.cli import main
from pcbio.inference import exact_posterior, log_evidence, map_estimate
from pcbio.progress import Progress


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_infer_exact_json(capsys):
    """`pcbio infer --method exact --json`: means ordered from level 1 up, ELBO = log p(x) at the
    exact posterior (both computed independently by the VAE side)."""
    code, out, _ = run_cli(capsys, "infer", "linear_gaussian_3level", "--x", "1,-2,0.5,0.3",
                           "--method", "exact", "--json")
    assert code == 0
    rep = json.loads(out)
    m = load_model("linear_gaussian_3level")
    x = np.array([[1, -2, 0.5, 0.3]])
    post = exact_posterior(m, x)
    assert rep["method"] == "exact" and len(rep["means"]) == 2
    np.testing.assert_allclose(rep["means"][0], post.means[0][0], rtol=1e-10)
    np.testing.assert_allclose(rep["means"][1], post.means[1][0], rtol=1e-10)
    assert rep["elbo"] == pytest.approx(rep["log_px"], rel=1e-10)
    assert rep["log_px"] == pytest.approx(log_evidence(m, x)[0], rel=1e-12)


def test_infer_gradient_on_bogacz_and_map(capsys):
    """`--method gradient` reaches Bogacz's posterior mode; log_px is null for a nonlinear model."""
    code, out, _ = run_cli(capsys, "infer", "bogacz2017", "--x", "2", "--method", "gradient",
                           "--steps", "3000", "--step-size", "0.01", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["log_px"] is None
    assert rep["means"][0][0] == pytest.approx(bogacz_posterior_mode(), abs=1e-6)


def test_infer_with_rate_circuit_converges(capsys, tmp_path):
    """`--method rate` runs the brian2 circuit until converged, for a batch from a .csv file, and
    reports the MAP (tanh model) with the convergence status."""
    x = np.array([[1.0, 0.5, -0.8], [-0.3, 0.2, 0.9]])
    np.savetxt(tmp_path / "x.csv", x, delimiter=",")
    code, out, _ = run_cli(capsys, "infer", "tanh_2level", "--x", str(tmp_path / "x.csv"),
                           "--method", "rate", "--target", "numpy", "--duration", "2000ms",
                           "--tol", "1e-10", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["converged"] and rep["stop_reason"] == "converged"
    assert rep["t_converged_s"] < 2.0
    np.testing.assert_allclose(rep["means"][0], map_estimate(load_model("tanh_2level"), x)[0][0],
                               atol=1e-8)


def test_a_csv_file_may_begin_with_column_names(capsys, tmp_path):
    """A .csv whose first line names the columns (no field a number) gives the same data points,
    and so the same exact posterior, as the file without that line."""
    x = np.array([[1.0, 0.5, -0.8], [-0.3, 0.2, 0.9]])
    np.savetxt(tmp_path / "plain.csv", x, delimiter=",")
    np.savetxt(tmp_path / "named.csv", x, delimiter=",", header="x1, x2, x3", comments="")
    reports = []
    for name in ("plain.csv", "named.csv"):
        code, out, _ = run_cli(capsys, "infer", "linear_gaussian_2d", "--x",
                               str(tmp_path / name), "--method", "exact", "--json")
        assert code == 0
        reports.append(json.loads(out))
    assert reports[0]["means"] == reports[1]["means"] and len(reports[0]["means"][0]) == 2


def test_circuit_options_reach_the_circuit(capsys):
    """--errors dynamic --precision interneuron --tau --tau-error build Bogacz's §5 circuit; it
    still converges to the exact posterior mode, and the run info echoes the options."""
    code, out, _ = run_cli(capsys, "infer", "bogacz2017", "--x", "2", "--method", "rate",
                           "--errors", "dynamic", "--precision", "interneuron", "--tau", "20ms",
                           "--tau-error", "5ms", "--target", "numpy", "--tol", "1e-10", "--json")
    rep = json.loads(out)
    assert code == 0 and rep["converged"] and rep["errors"] == "dynamic"
    assert rep["means"][0][0] == pytest.approx(bogacz_posterior_mode(), abs=1e-8)


def test_one_dimensional_data_file_holds_one_point_per_entry(capsys, tmp_path):
    """For a model with scalar data (Bogacz), a one-dimensional .npy and a one-column .csv are a
    batch of data points, the first (u = 2) at the paper's posterior mode."""
    np.save(tmp_path / "u.npy", np.array([2.0, 1.0, 3.0]))
    np.savetxt(tmp_path / "u.csv", np.array([2.0, 1.0, 3.0]))
    for name in ("u.npy", "u.csv"):
        code, out, _ = run_cli(capsys, "infer", "bogacz2017", "--x", str(tmp_path / name),
                               "--method", "map", "--json")
        rep = json.loads(out)
        assert code == 0 and rep["batch"] == 3 and len(rep["means"][0]) == 3
        assert rep["means"][0][0][0] == pytest.approx(bogacz_posterior_mode(), abs=1e-6)


def test_map_command_reports_required_fields(capsys, tmp_path):
    """`pcbio map … --json --plot FILE`: per-level metrics, the reference, and a figure."""
    code, out, _ = run_cli(capsys, "map", "linear_gaussian_2d", "--x", "1,-2,0.5", "--circuit",
                           "rate", "--duration", "100ms", "--target", "numpy", "--json",
                           "--plot", str(tmp_path / "map.pdf"))
    rep = json.loads(out)
    assert code == 0 and rep["reference"] == "exact_posterior"
    for key in ("grad_rel_err_median", "grad_cosine_min", "fixed_point_rel_err"):
        assert key in rep["levels"][0]
    assert rep["levels"][0]["grad_rel_err_median"] < 1e-11   # round-off (see test_mapping)
    assert (tmp_path / "map.pdf").stat().st_size > 1000


@pytest.mark.parametrize("argv, message", [
    (["infer", "nosuchmodel", "--x", "1"], "model file not found"),
    (["infer", "linear_gaussian_2d", "--x", "1,2"], "--x must have 3 values per data point"),
    (["infer", "linear_gaussian_2d", "--x", "1,a,2"], "--x must be comma-separated numbers"),
    (["infer", "tanh_2level", "--x", "1,2,3", "--method", "exact"], "needs a linear model"),
    (["infer", "linear_gaussian_2d", "--x", "1,2,3", "--method", "rate", "--dt=-1ms"],
     "--dt must be a positive time step"),
    (["map", "linear_gaussian_2d", "--x", "1,2,3", "--dt", "50ms"], "is too large"),
    (["run", "nosuchexperiment"], "unknown experiment"),
    (["map", "linear_gaussian_2d", "--x", "1,2,3", "--precision", "interneuron"],
     "precision='interneuron' needs errors='dynamic'"),
    (["map", "linear_gaussian_2d", "--x", "1,2,3", "--tau=-3ms"], "--tau must be a positive"),
    (["map", "linear_gaussian_2d", "--x", "1,2,3", "--plot", "map.jpeg"],
     "figure file must end in .pdf, .png or .svg"),
])
def test_bad_input_exits_with_one_line(capsys, argv, message):
    """Bad input: non-zero exit, a one-line message naming the problem, no traceback."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_model_file_exits_with_one_line(capsys, tmp_path):
    """A malformed model file is reported with its name and the offending key."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[top]\nmean = [0.0]\nvar = 1.0\n[[links]]\nweights = [[1.0]]\nf = "relu"\n')
    code, _, err = run_cli(capsys, "infer", str(bad), "--x", "1")
    assert code == 2 and "bad.toml: links[0].f must be one of" in err


def test_list_shows_models_and_experiments(capsys):
    """`pcbio list` names every model file and experiment script."""
    code, out, _ = run_cli(capsys, "list")
    for name in ("bogacz2017", "linear_gaussian_2d", "tanh_2level", "whittington_bogacz_digits",
                 "demo", "rate_vs_elbo", "ppca_digits", "backprop_alignment",
                 "precision_learning"):
        assert name in out


def test_model_names_and_user_experiments_resolve_or_fail_in_one_line(
        capsys, tmp_path, monkeypatch):
    """A bare name (or NAME.toml) is looked up in models/; a path with a folder is taken as a
    path, so a mistyped one is an error naming it, not silently the shipped model of the same
    name.  Under PCBIO_HOME, `pcbio list` shows the scripts in experiments/ except helpers whose
    names start with "_"; a script without a DESCRIPTION and a run function, or not valid
    Python, is refused in one line naming it."""
    code, _, err = run_cli(capsys, "infer", "no_such_folder/linear_gaussian_2d.toml", "--x", "1,2,3")
    assert code == 2 and "model file not found: no_such_folder/linear_gaussian_2d.toml" in err
    assert run_cli(capsys, "infer", "linear_gaussian_2d.toml", "--x", "1,2,3")[0] == 0
    (tmp_path / "models").mkdir()
    (tmp_path / "experiments").mkdir()
    script = 'DESCRIPTION = "my figure"\n\ndef run(quick, seed, progress):\n    pass\n'
    (tmp_path / "experiments" / "mine.py").write_text(script)
    (tmp_path / "experiments" / "_shared.py").write_text("")
    monkeypatch.setenv("PCBIO_HOME", str(tmp_path))
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "mine" in out and "my figure" in out and "_shared" not in out
    for text, message in (("x = 1\n", "an experiment needs a one-line DESCRIPTION"),
                          ("def run(:\n", "not valid Python (line 1")):
        (tmp_path / "experiments" / "mine.py").write_text(text)
        code, _, err = run_cli(capsys, "run", "mine", "--out", str(tmp_path / "out"))
        assert code == 2 and message in err and "mine.py" in err
        assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("experiment", ["demo", "rate_vs_elbo"])
def test_run_experiment_writes_figure_and_provenance(capsys, tmp_path, experiment):
    """`pcbio run NAME --quick --out DIR` writes NAME.json (results + seed, parameters, version,
    git commit, library versions, BLAS and machine), NAME.pdf and NAME.png; the numbers in it
    satisfy the experiment's claims."""
    code, out, _ = run_cli(capsys, "run", experiment, "--quick", "--out", str(tmp_path), "--quiet")
    assert code == 0
    data = json.loads((tmp_path / f"{experiment}.json").read_text())
    for key in ("seed", "parameters", "pcbio_version", "git_commit", "results"):
        assert key in data
    # the libraries whose round-off the numbers carry, numpy's BLAS and the processor
    import numpy, scipy
    assert (data["numpy"], data["scipy"]) == (numpy.__version__, scipy.__version__)
    assert data["blas"] != "unknown" and data["machine"]
    assert (tmp_path / f"{experiment}.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / f"{experiment}.png").read_bytes()[:4] == b"\x89PNG"
    res = data["results"]
    if experiment == "demo":
        assert res["bogacz2017"]["gradient_final"] == pytest.approx(res["bogacz2017"]["posterior_mode"], abs=1e-4)
        assert res["linear_gaussian_2d"]["best_diagonal_elbo"] <= res["linear_gaussian_2d"]["log_px"]
    else:
        lin = res["linear_gaussian_3level/instant"]
        assert max(lv["grad_rel_err_max"] for lv in lin["levels"]) < 1e-8   # round-off
        gaps = [g["rel_gap"] for g in res["tanh_2level/instant"]["variance_gap"]]
        assert gaps == sorted(gaps)


def test_console_script_is_installed():
    """The `pcbio` console script exists and answers --version (setup.cfg entry point)."""
    out = subprocess.run([sys.executable, "-m", "pcbio.cli", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("pcbio ")


def test_same_seed_gives_the_same_results(tmp_path):
    """Reproducibility: running an experiment twice with one seed gives identical numbers, and
    the results file records that seed."""
    from pcbio.experiment import run_experiment
    results = []
    for k in range(2):
        run_experiment("demo", tmp_path / str(k), quick=True, seed=3)
        data = json.loads((tmp_path / str(k) / "demo.json").read_text())
        assert data["seed"] == 3
        results.append(data["results"])
    assert results[0] == results[1]


@pytest.mark.slow
def test_full_rate_vs_elbo_experiment(tmp_path):
    """The full (non-quick) paper figure: exact agreement for the linear model, the fixed points
    reached, and a variance gap rising as s² at small s (log-log slope ≈ 2)."""
    from pcbio.experiment import run_experiment
    run_experiment("rate_vs_elbo", tmp_path, quick=False, seed=0)
    res = json.loads((tmp_path / "rate_vs_elbo.json").read_text())["results"]
    for lv in res["linear_gaussian_3level/instant"]["levels"]:
        assert lv["grad_rel_err_max"] < 1e-8 and lv["fixed_point_rel_err"] < 1e-6
    assert res["tanh_2level/instant"]["levels"][0]["fixed_point_rel_err"] < 1e-6
    gaps = res["tanh_2level/instant"]["variance_gap"]
    slope = np.log(gaps[1]["rel_gap"] / gaps[0]["rel_gap"]) / np.log(gaps[1]["s"] / gaps[0]["s"])
    assert slope == pytest.approx(2.0, abs=0.2)


def use_experiments(tmp_path, monkeypatch, sources: dict) -> None:
    """A project folder of its own (PCBIO_HOME) whose experiments/ holds ``sources``
    (name → the module's text), and an empty models/."""
    project = tmp_path / "project"
    (project / "experiments").mkdir(parents=True)
    (project / "models").mkdir()
    for name, text in sources.items():
        (project / "experiments" / f"{name}.py").write_text(text)
    monkeypatch.setenv("PCBIO_HOME", str(project))


def test_run_all_goes_on_after_a_failed_experiment(capsys, tmp_path, monkeypatch):
    """`pcbio run all`: an experiment whose computation fails (SimulationError) writes nothing,
    the experiments after it still run and write their files, and the command ends with exit
    status 1 naming the one that failed — the exit-status contract in README."""
    use_experiments(tmp_path, monkeypatch, {
        "a_unstable": 'DESCRIPTION = "fails"\n'
                      "def run(quick, seed, progress):\n"
                      "    from pcbio.errors import SimulationError\n"
                      '    raise SimulationError("circuit diverged at t = 3 ms")\n',
        "b_fine": 'DESCRIPTION = "works"\n'
                  "def run(quick, seed, progress):\n"
                  "    import matplotlib.pyplot as plt\n"
                  '    return plt.figure(), {"value": seed}, {}\n'})
    out = tmp_path / "out"
    code, printed, err = run_cli(capsys, "run", "all", "--quick", "--quiet", "--out", str(out))
    assert code == 1
    assert "a_unstable failed: circuit diverged at t = 3 ms" in err
    assert "1 of 2 experiments failed (a_unstable" in err
    assert sorted(p.name for p in out.iterdir()) == ["b_fine.json", "b_fine.pdf", "b_fine.png"]
    assert json.loads((out / "b_fine.json").read_text())["results"] == {"value": 0}
    # one experiment by name: its failure is the command's, as before
    code, _, err = run_cli(capsys, "run", "a_unstable", "--quiet", "--out", str(out))
    assert code == 1 and err.count("\n") == 1 and "circuit diverged" in err


def test_an_experiments_options_reach_its_run_and_its_results_file(capsys, tmp_path,
                                                                   monkeypatch):
    """`pcbio run NAME --set KEY=VALUE` (the experiment contract in ``pcbio/experiment.py``):
    each option given reaches the experiment's ``run`` as a keyword argument (a number option
    as the text given), one not given keeps the default of ``run``'s signature, and the results
    file records the options as given, so a variant's numbers say which variant made them.
    `pcbio list` shows each option's values and default."""
    use_experiments(tmp_path, monkeypatch, {
        "variants": 'from pcbio.experiment import NumberOption\n'
                    'DESCRIPTION = "echoes its options"\n'
                    'OPTIONS = {"prior": ("gaussian", "sparse"), "basis": ("free", "unit_norm"),\n'
                    '           "rate": NumberOption("0.5")}\n'
                    'def run(quick, seed, progress, prior="gaussian", basis="free", rate="0.5"):\n'
                    "    import matplotlib.pyplot as plt\n"
                    '    return plt.figure(), {"prior": prior, "basis": basis, "rate": rate}, {}\n'})
    code, _, _ = run_cli(capsys, "run", "variants", "--set", "basis=unit_norm", "--set",
                         "rate=2e-3", "--quiet", "--out", str(tmp_path / "out"))
    assert code == 0
    record = json.loads((tmp_path / "out" / "variants.json").read_text())
    assert record["results"] == {"prior": "gaussian", "basis": "unit_norm", "rate": "2e-3"}
    assert record["options"] == {"basis": "unit_norm", "rate": "2e-3"}
    code, out, _ = run_cli(capsys, "list")
    assert "--set prior=gaussian|sparse (default gaussian)" in out
    assert "--set rate=NUMBER > 0 (default 0.5)" in out


def test_git_commit_is_marked_dirty_when_tracked_files_changed(tmp_path, monkeypatch):
    """A results file's commit must say when the code that made it was not the commit's: in a
    repository with one commit, ``git_commit`` is that commit's hash; after a tracked file is
    edited, the hash with ``-dirty``; an untracked file alone does not count."""
    import subprocess
    import pcbio.io
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    subprocess.run(git + ["add", "code.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "one"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    monkeypatch.setattr(pcbio.io, "project_root", lambda: tmp_path)
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert pcbio.io.git_commit() == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert pcbio.io.git_commit() == head + "-dirty"


def test_infer_json_holds_the_posterior_covariance_up_to_its_size_limit(capsys, tmp_path):
    """``infer --method exact --json`` gives the full posterior covariance while it has at most
    ``JSON_COV_LIMIT`` (10⁴) entries — D = 100 latents — and beyond that (D = 101: 10,201
    entries) only its diagonal, ``posterior_var``, with a note saying why.  The covariance is
    the exact posterior's, ``(I + WᵀW/σ²)⁻¹`` for a standard-normal prior and noise σ² I."""
    from pcbio.cost import JSON_COV_LIMIT
    from pcbio.model import GenerativeModel, Link
    from pcbio.model_file import model_text
    assert JSON_COV_LIMIT == 100 * 100
    rng = np.random.default_rng(0)
    for D in (100, 101):
        W = rng.normal(size=(2, D)) / np.sqrt(D)
        path = tmp_path / f"wide{D}.toml"
        path.write_text(model_text(GenerativeModel(np.zeros(D), 1.0, [Link(W, np.zeros(2),
                                                                             "identity", 0.5)])))
        code, out, _ = run_cli(capsys, "infer", str(path), "--x", "1,-1", "--method", "exact",
                               "--json")
        rep = json.loads(out)
        want = np.linalg.inv(np.eye(D) + W.T @ W / 0.5)
        assert code == 0
        np.testing.assert_allclose(rep["posterior_var"][0], np.diag(want), rtol=1e-10)
        if D == 100:
            np.testing.assert_allclose(rep["posterior_cov"], want, rtol=1e-10, atol=1e-14)
        else:
            assert rep["posterior_cov"] is None and "101 x 101" in rep["posterior_cov_note"]


def test_infer_elbo_estimates_follow_the_seed(capsys):
    """The Laplace ELBO of ``--method map`` is a Monte-Carlo estimate: the same ``--seed`` gives
    the same number, another seed another one (within a few of its reported standard errors)."""
    reps = {}
    for seed in ("1", "1", "2"):
        code, out, _ = run_cli(capsys, "infer", "tanh_2level", "--x", "1,2,3", "--method", "map",
                               "--json", "--seed", seed)
        assert code == 0
        reps.setdefault(seed, []).append(json.loads(out))
    (a, b), (c,) = reps["1"], reps["2"]
    assert a["elbo"] == b["elbo"] and a["elbo"] != c["elbo"]
    assert abs(a["elbo"] - c["elbo"]) < 5 * np.hypot(a["elbo_stderr"], c["elbo_stderr"])


def test_an_interrupted_command_exits_130_with_one_line(capsys, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) ends any command with the shell's status for SIGINT, 128 + 2,
    and one line on stderr, not a traceback."""
    import pcbio.cli

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(pcbio.cli, "cmd_list", interrupted)
    code, out, err = run_cli(capsys, "list")
    assert code == 130 and out == "" and err.strip().splitlines() == [
        "pcbio: error: interrupted; no results were written"]


def test_times_on_the_command_line_carry_their_si_units():
    """``--duration`` / ``--dt`` text becomes a brian2 time by its SI prefix: 1 ms = 10⁻³ s,
    1 us = 10⁻⁶ s; spaces are allowed between number and unit."""
    from brian2 import second

    from pcbio.cli import quantity
    for text, seconds in (("200ms", 0.2), ("0.1 ms", 1e-4), ("100us", 1e-4), ("1.5s", 1.5),
                          ("2 us", 2e-6)):
        assert float(quantity(text, "duration", "--duration") / second) == pytest.approx(
            seconds, rel=1e-12), text


def test_progress_lines_give_elapsed_time_and_percent_and_quiet_silences_them():
    """A long run's progress reporter (``pcbio.progress.Progress``, what ``--quiet`` switches
    off) writes one line per call: the elapsed seconds, the fraction done as a percentage
    (0.4 → 40.0 %) where given, and the message; quiet, it writes nothing."""
    stream = io.StringIO()
    report = Progress(stream=stream)
    report("simulating", fraction=0.4)
    report("writing")
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"\[pcbio +\d+\.\ds\]  40\.0% simulating", lines[0])
    assert re.fullmatch(r"\[pcbio +\d+\.\ds\] writing", lines[1]) and len(lines) == 2
    quiet = io.StringIO()
    Progress(quiet=True, stream=quiet)("simulating", fraction=0.4)
    assert quiet.getvalue() == ""
