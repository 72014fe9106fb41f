"""The contract every registered circuit kind meets (build, run, decode, map, save/load, NaN
detection, persistent networks, command line).  A new kind that registers itself gets these
tests for free; each expectation follows from what the contract promises, not from a kind."""

import json

import numpy as np
import pytest
from brian2 import ms

from conftest import random_model
from pcbio.circuits import CIRCUITS, CircuitNetwork, build_circuit
from pcbio.cli import main
from pcbio.encoding import Encoding
from pcbio.errors import SimulationError
from pcbio.io import to_jsonable
from pcbio.mapping import CHECKS, map_trajectory
from pcbio.simulate import run, simulate
from pcbio.trajectory import LEVEL_FIELDS, Trajectory

KINDS = sorted(CIRCUITS)
#: (kind, parameters): every registered kind in every variant it declares
VARIANTS = [(kind, params) for kind in KINDS for params in CIRCUITS[kind].VARIANTS]
IDS = [kind + "".join(f"-{v}" for v in params.values()) for kind, params in VARIANTS]


def small_model():
    return random_model(21, dims=(3, 2, 2))


@pytest.mark.parametrize("kind, params", VARIANTS, ids=IDS)
def test_declarations_are_complete(kind, params):
    """Every population has an encoding implementing the Encoding interface; every declared
    check is one the mapping layer knows; parameters have help and describe as JSON."""
    circuit = build_circuit(small_model(), kind, **params)
    pops, paths = circuit.structure()
    assert pops and all(isinstance(p.encoding, Encoding) for p in pops)
    assert {p.role for p in pops} >= {"value"}
    assert set(circuit.checks()) <= set(CHECKS) and set(circuit.skipped_checks()) <= set(CHECKS)
    assert all(p.help for p in CIRCUITS[kind].PARAMETERS)
    json.dumps(to_jsonable(circuit.describe()))
    with pytest.raises(ValueError, match="has no parameter"):
        build_circuit(small_model(), kind, no_such_parameter=1, **params)


def test_command_line_values_convert_with_their_units():
    """An option's text becomes the value it names: each unit suffix scales by its SI prefix
    (1 us = 10⁻³ ms, 1 nF = 10³ pF); an integer option stays an integer and a fraction is
    refused naming the option; results files record times in ms and capacitances in pF, the
    unit their key names.  The parameters are the circuits' own."""
    declared = {p.name: p for kind in KINDS for p in CIRCUITS[kind].PARAMETERS}
    tau, capacitance = declared["tau"], declared["capacitance"]
    assert float(tau.parse("50us") / ms) == pytest.approx(0.05, rel=1e-12)
    assert float(tau.parse("0.02s") / ms) == pytest.approx(20.0, rel=1e-12)
    assert tau.to_json(tau.parse("2.5ms")) == ("tau_ms", pytest.approx(2.5, rel=1e-12))
    assert capacitance.to_json(capacitance.parse("1nF")) == ("capacitance_pF",
                                                             pytest.approx(1000.0, rel=1e-12))
    count = declared["neurons_per_unit"]
    assert count.parse("3") == 3 and isinstance(count.parse("3"), int)
    with pytest.raises(ValueError, match="--neurons-per-unit must be an integer >= 1"):
        count.parse("2.5")


@pytest.mark.parametrize("kind, params", VARIANTS, ids=IDS)
def test_run_decode_map_and_round_trip(kind, params, tmp_path):
    """A few ms on a batch of 2: decoded means have one (T, batch, d_l) array per level and
    start where they were initialised (the encoded initial state, decoded); the mapping runs
    exactly the declared checks that apply and gives a reason for every other one; save/load
    keeps every array (each level, each population, spikes and compartments) and the run
    information."""
    m = small_model()
    x, _ = m.sample(2, seed=0)
    init = [np.full((2, d), 0.3) for d in m.latent_dims]
    circuit = build_circuit(m, kind, **params)
    traj = simulate(circuit, x, duration=3 * ms, target="numpy", init=init)
    assert [a.shape[1:] for a in traj.means] == [(2, d) for d in m.latent_dims]
    for a, z0, pop in zip(traj.means, init, circuit.populations("value")):
        np.testing.assert_allclose(a[0], pop.encoding.decode(pop.encoding.encode(z0)), atol=1e-12)
    report = map_trajectory(traj, m, x, vae=True).report
    assert set(report["applicable_checks"]) | set(report["skipped_checks"]) == set(CHECKS)
    assert set(report["applicable_checks"]) <= set(traj.info.checks)
    assert all(report["skipped_checks"].values())
    traj.save(tmp_path / "run.npz")
    back = Trajectory.load(tmp_path / "run.npz")
    assert back.info == traj.info and back.time_unit == traj.time_unit
    for name in LEVEL_FIELDS:
        ours, theirs = getattr(traj, name), getattr(back, name)
        assert (ours is None) == (theirs is None), name
        for a, b in zip(ours or [], theirs or [], strict=True):
            np.testing.assert_array_equal(a, b)
    for group in ("scores", "raw", "compartments", "spikes"):
        ours, theirs = getattr(traj, group), getattr(back, group)
        assert ours.keys() == theirs.keys(), group
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key])


@pytest.mark.parametrize("kind, params", VARIANTS, ids=IDS)
def test_instability_is_detected_during_the_run(kind, params):
    """NaN appearing in any integrated population's state in the middle of a run (put there by
    a network operation at 2 ms) stops the run with a SimulationError naming when — the
    stability guard, whatever the kind, which checks every GUARD_STEPS steps (50 × 0.1 ms): it
    stops a 20 ms run at its first check after 2 ms, 5 ms, and says so.  A network whose state
    already holds NaN refuses to run on from it."""
    import brian2
    m = small_model()
    x = m.sample(1, seed=0)[0]
    net = CircuitNetwork(build_circuit(m, kind, **params), 1, 0.1 * ms, target="numpy")
    pop = next(p for p in net.populations.values() if p.neuron.dynamic)
    state = net.groups[pop.name].variables[pop.encoding.variable].get_value()

    def poison():
        if net.network.t >= 2 * ms:
            state[:] = np.nan
    net.network.add(brian2.NetworkOperation(poison, dt=0.1 * ms, when="end"))
    with pytest.raises(SimulationError, match=r"unstable by t = 0\.005 s"):
        run(net, x, duration=20 * ms)
    assert net.network.t == 5 * ms
    net = CircuitNetwork(build_circuit(m, kind, **params), 1, 0.1 * ms, target="numpy")
    setattr(net.groups[pop.name], pop.encoding.variable + "_", np.nan)
    with pytest.raises(SimulationError, match="unstable before the run"):
        run(net, x, duration=2 * ms)


@pytest.mark.parametrize("kind, params", VARIANTS, ids=IDS)
def test_the_guard_refuses_runaway_values_and_nan_in_any_integrated_state(kind, params):
    """The stability guard's promise (``CircuitNetwork.check_stable``): a coded state beyond its
    encoding's ``runaway`` bound is unstable although finite, one just inside it is not, and NaN
    in any integrated state variable of a population (a membrane potential, a synaptic
    current), not only in the coded one, is unstable too."""
    m = small_model()
    net = CircuitNetwork(build_circuit(m, kind, **params), 1, 0.1 * ms, target="numpy")
    for pop in (p for p in net.populations.values() if p.neuron.dynamic):
        group = net.groups[pop.name]
        coded = group.variables[pop.encoding.variable].get_value()
        saved = coded.copy()
        coded[0] = 0.99 * pop.encoding.runaway
        net.check_stable()
        coded[0] = -1.01 * pop.encoding.runaway
        with pytest.raises(FloatingPointError, match=f"runaway activity in {pop.name}"):
            net.check_stable()
        coded[:] = saved
        for var in set(group.equations.diff_eq_names) - {pop.encoding.variable}:
            values = group.variables[var].get_value()
            kept = values.copy()
            values[-1] = np.nan
            with pytest.raises(FloatingPointError, match=f"NaN or Inf in {pop.name}.{var}"):
                net.check_stable()
            values[:] = kept
    net.check_stable()


@pytest.mark.parametrize("kind, params", VARIANTS, ids=IDS)
def test_a_network_runs_on_and_restores(kind, params):
    """A persistent network keeps its state: two runs of 3 ms equal one run of 6 ms, their
    spikes included (each run reports its own, timed from its start); a new stimulus continues
    from where the last one left; restore() gives back the stored state, so the run after it
    repeats the first run exactly."""
    m = small_model()
    x = m.sample(2, seed=1)[0]
    circuit = build_circuit(m, kind, **params)
    whole = simulate(circuit, x, duration=6 * ms, target="numpy")
    net = CircuitNetwork(circuit, 2, 0.1 * ms, target="numpy")
    net.store()
    first = run(net, x, duration=3 * ms)
    second = run(net, x, duration=3 * ms)
    for a, b, c in zip(whole.means, first.means, second.means):
        np.testing.assert_allclose(np.concatenate([b, c]), a, atol=1e-12)
    assert second.t[0] == 0.0
    for pop, (units, times) in whole.spikes.items():     # each run's spikes, times from its start
        np.testing.assert_array_equal(np.concatenate([first.spikes[pop][0],
                                                      second.spikes[pop][0]]), units)
        np.testing.assert_allclose(np.concatenate([first.spikes[pop][1],
                                                   second.spikes[pop][1] + 3e-3]), times,
                                   rtol=0, atol=1e-12)
    net.restore()
    again = run(net, x, duration=3 * ms)
    for a, b in zip(first.means, again.means):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind, params", VARIANTS, ids=IDS)
def test_a_stream_in_one_run_equals_separate_runs(kind, params):
    """Three data points shown for 3 ms each in one run, every one starting from the same
    latents (reset_each_frame), give the trajectories of three separate simulations."""
    m = small_model()
    xs = m.sample(3, seed=2)[0][:, None, :]                    # (points, batch 1, d_0)
    init = m.prior_means(1)
    circuit = build_circuit(m, kind, **params)
    net = CircuitNetwork(circuit, 1, 0.1 * ms, target="numpy")
    stream = run(net, xs, duration=9 * ms, stimulus_dt=3 * ms, init=init, reset_each_frame=True)
    for k, x in enumerate(xs):
        alone = simulate(circuit, x, duration=3 * ms, target="numpy", init=init)
        for a, b in zip(stream.means, alone.means):
            np.testing.assert_allclose(a[30 * k: 30 * (k + 1)], b, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_command_line_runs_each_kind(kind, capsys):
    """`pcbio map --circuit KIND --json` and `pcbio infer --method KIND --json` run with the
    kind's defaults, and `--help` lists the kind's own options."""
    assert main(["map", "linear_gaussian_2d", "--x", "1,-2,0.5", "--circuit", kind,
                 "--duration", "5ms", "--target", "numpy", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["circuit"]["circuit"]["circuit"] == kind
    assert main(["infer", "linear_gaussian_2d", "--x", "1,-2,0.5", "--method", kind,
                 "--duration", "5ms", "--target", "numpy", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["means"]) == 1
    with pytest.raises(SystemExit):
        main(["map", "--help"])
    help_text = capsys.readouterr().out
    assert f"options of the {kind} circuit" in help_text
    for param in CIRCUITS[kind].PARAMETERS:
        if param.on_command_line:
            assert param.option in help_text
