"""Spiking circuits: LIF neurons against their closed-form rate, ensembles' read-out, and the
decoded fixed points against the exact posterior / MAP for both codes."""

import brian2
import numpy as np
import pytest
from brian2 import ms

from conftest import bogacz_posterior_mode, linear_relaxation, live_brian2_objects
from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.inference import exact_posterior, map_estimate
from pcbio.mapping import firing_statistics
from pcbio.neurons import lif
from pcbio.simulate import run, simulate


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_lif_neurons_fire_at_the_closed_form_rate():
    """τ_m dv/dt = J − v with threshold 1, reset 0 and refractory t_ref fires at
    1/(t_ref − τ_m log(1 − 1/J)) for constant J > 1 (and not at all below 1): brian2's LIF
    neurons, as pcbio builds them, against the formula over 1 s (Euler at dt = 0.02 ms)."""
    J = np.array([0.9, 1.05, 1.5, 3.0, 10.0])
    neuron = lif.ensemble_neuron(1, 1.0, 20 * ms, 2 * ms)
    group = brian2.NeuronGroup(len(J), neuron.equations + "\nI_in : 1\nenc0 : 1\ngain : 1\nbias : 1",
                               threshold=neuron.threshold, reset=neuron.reset,
                               refractory=neuron.refractory, method="euler",
                               namespace={"tau_m": 20 * ms, "radius0": 1.0}, dt=0.02 * ms,
                               codeobj_class=brian2.NumpyCodeObject)
    group.bias = J
    spikes = brian2.SpikeMonitor(group, codeobj_class=brian2.NumpyCodeObject)
    brian2.Network(group, spikes).run(1 * brian2.second, namespace={})
    trains = spikes.spike_trains()
    measured = [1 / np.mean(np.diff(trains[k] / brian2.second)) if len(trains[k]) > 1 else 0.0
                for k in range(len(J))]                     # 1 / mean inter-spike interval
    np.testing.assert_allclose(measured, lif.lif_rate(J, 0.02, 0.002), rtol=0.01)


def test_spike_coding_neuron_drops_by_its_cost_and_fires_at_the_closed_form_rate():
    """A spike-coding neuron on its own (no recurrent jumps, always the winner), with constant
    input I: ``dV/dt = −V/τ_V + I`` rises towards ``V∞ = I τ_V``; at its threshold ϑ it spikes
    and its voltage drops by the cost ``c`` (it is not reset) and is held for t_ref.  So the
    interval between spikes is ``t_ref + τ_V log((V∞ − ϑ + c)/(V∞ − ϑ))``: brian2's neurons, as
    pcbio builds them, against the formula over 0.3 s (Euler at dt = 0.01 ms, 1 %)."""
    tau, t_ref, vth, cost = 0.02, 0.002, 1.0, 0.4
    I = np.array([60.0, 100.0, 200.0])                         # V∞ = 1.2, 2 and 4
    neuron = lif.spike_coding_neuron(tau * brian2.second, t_ref * brian2.second)
    group = brian2.NeuronGroup(len(I), neuron.equations + "\nI_in : 1\nvth : 1\nvcost : 1",
                               threshold=neuron.threshold, reset=neuron.reset,
                               refractory=neuron.refractory, method="euler",
                               namespace={"tau_v": tau * brian2.second}, dt=0.01 * ms,
                               codeobj_class=brian2.NumpyCodeObject)
    group.I_in, group.vth, group.vcost, group.winner = I, vth, cost, 1.0
    spikes = brian2.SpikeMonitor(group, codeobj_class=brian2.NumpyCodeObject)
    brian2.Network(group, spikes).run(0.3 * brian2.second, namespace={})
    trains = spikes.spike_trains()
    interval = [np.mean(np.diff(trains[k] / brian2.second)) for k in range(len(I))]
    v_inf = I * tau
    np.testing.assert_allclose(interval, t_ref + tau * np.log((v_inf - vth + cost)
                                                              / (v_inf - vth)), rtol=0.01)


def test_tuning_curves_start_at_their_intercepts_and_reach_their_maximal_rates():
    """The tuning the module docstring promises: neuron i starts firing at its intercept c_i
    (its input J crosses the threshold 1 there) and fires at its maximal rate a_i at
    ⟨e_i, x/R⟩ = 1 — with a_i in :data:`~pcbio.neurons.lif.MAX_RATES` (40–80 Hz) and c_i in
    :data:`~pcbio.neurons.lif.INTERCEPTS`, drawn across those ranges.  The rate at the preferred
    end comes from the closed form G(J) with the refractory period, so a maximal rate computed
    without it would fall below 40 Hz."""
    lo, hi = lif.MAX_RATES
    for dims in (1, 2):
        tuning = lif.Tuning.random(400, dims, seed=7, tau_m=0.02, t_ref=0.002)
        intercepts = (1.0 - tuning.biases) / tuning.gains          # where J = 1
        assert lif.INTERCEPTS[0] <= intercepts.min() and intercepts.max() <= lif.INTERCEPTS[1]
        at_encoder = np.array([tuning.rates(e[None, :])[0, i]
                               for i, e in enumerate(tuning.encoders)])
        assert lo - 1e-9 <= at_encoder.min() < lo + 2 and hi - 2 < at_encoder.max() <= hi + 1e-9
        just_below = np.array([tuning.rates(((c - 1e-6) * e)[None, :])[0, i]
                               for i, (c, e) in enumerate(zip(intercepts, tuning.encoders))])
        assert (just_below == 0).all()


def test_tuning_seed_sets_every_neuron_s_tuning():
    """Every random step takes a seed: the same ``tuning_seed`` builds the same neurons
    (gains, biases, encoders; the spike-coding network's read-out directions), another seed
    different ones, for both codes (``tanh_2level``: its hidden ensembles have two-dimensional
    encoders)."""
    def tuning(code, seed):
        m = load_model("tanh_2level" if code == "population" else "linear_gaussian_2d")
        pops, _ = build_circuit(m, "spiking", code=code, neurons_per_unit=20,
                                tuning_seed=seed).build_structure()
        arrays = {}
        for p in pops:
            if p.neuron.spiking:
                arrays.update({(p.name, k): v for k, v in p.params.items()})
                if isinstance(p.input_map, np.ndarray):       # read-out directions Γ_i/‖Γ_i‖
                    arrays[(p.name, "input_map")] = p.input_map / np.linalg.norm(
                        p.input_map, axis=1, keepdims=True)
        return arrays

    for code in ("population", "scn"):
        a, b, c = tuning(code, 0), tuning(code, 0), tuning(code, 1)
        assert a and all(np.array_equal(a[k], b[k]) for k in a)
        changed = {k[1] for k in a if not np.allclose(a[k], c[k])}
        # one-dimensional encoders are ±1 (ON and OFF cells) whatever the seed
        assert changed == ({"gain", "bias", "enc0", "enc1"} if code == "population"
                           else {"input_map", "vth", "vcost"}), (code, changed)


@pytest.mark.parametrize("code", ["population", "scn"])
def test_decoded_values_follow_the_gradient_flow_with_its_time_constant(code):
    """The circuit implements ``τ dz/dt = ∇_z log p = h − H z`` with the τ it is given, not its
    synapses' time constants: for the linear model this flow is solved exactly,
    ``z(t) = z* + exp(−H t/τ)(z₀ − z*)``, and with τ = 200 ms (twice the value populations'
    τ_recurrent) the decoded trajectory over 300 ms from the prior mean stays within 25 % of
    ‖z₀ − z*‖ (RMS) of it — a flow 10 × slower would be 60 % away, one driven by half the
    input 90 %."""
    from pcbio.inference import posterior_precision
    m = load_model("linear_gaussian_2d")
    x = np.array([[1.0, -2.0, 0.5]])
    H, h = posterior_precision(m, x)
    z_star, z0, tau = np.linalg.solve(H, h[0]), m.top_mean, 0.2
    circuit = build_circuit(m, "spiking", code=code, neurons_per_unit=200, tau=tau * brian2.second)
    traj = simulate(circuit, x, duration=300 * ms, target="numpy", record_every=10)
    want = linear_relaxation(H / tau, z_star, z0, traj.t)
    gap = np.sqrt(np.mean(np.sum((traj.means[0][:, 0] - want) ** 2, axis=1)))
    assert gap < 0.25 * np.linalg.norm(z0 - z_star)


@pytest.mark.parametrize("name", ["tanh_2level", "pyramidal_mlp"])
def test_a_population_code_started_at_the_map_stays_there(name):
    """The MAP is the fixed point of ``τ dz/dt = ∇_z log p``, so a population code started there
    (its value ensembles' traces set to the MAP; error and hidden ensembles start at 0 and
    settle within a few τ_s = 10 ms) stays there: after 200 ms with τ = 200 ms the decoded
    values of every level are within 12 % of it.
    ``pyramidal_mlp``'s hidden bias a ≠ 0 matters here: with its sign flipped the circuit drifts
    25–30 % away in the same time."""
    m = load_model(name)
    x = m.sample(1, seed=3)[0]
    z_map = map_estimate(m, x)[0]
    circuit = build_circuit(m, "spiking", neurons_per_unit=100, tau=200 * ms,
                            readout_window=100 * ms)
    traj = simulate(circuit, x, duration=200 * ms, target="numpy", record_every=10, init=z_map)
    for got, want in zip(circuit.estimate(traj)[0], z_map):
        assert rel_err(got, want) < 0.12


def test_ensemble_read_out_recovers_its_functions():
    """Decoders fitted to 100 LIF tuning curves read x, x² and the product x·y back from the
    steady rates to within a few per cent of the represented range (the NEF's static error)."""
    one = lif.Tuning.random(100, 1, seed=3, tau_m=0.02, t_ref=0.002)
    pts = lif.evaluation_points(1, 0)
    for target in (pts, pts ** 2):
        d = one.decoders(pts, target)
        assert np.sqrt(np.mean((one.rates(pts) @ d - target) ** 2)) < 0.03
    two = lif.Tuning.random(200, 2, seed=4, tau_m=0.02, t_ref=0.002)
    pts = lif.evaluation_points(2, 1)
    product = pts[:, :1] * pts[:, 1:]
    d = two.decoders(pts, product)
    assert np.sqrt(np.mean((two.rates(pts) @ d - product) ** 2)) < 0.05


def test_encodings_set_states_that_read_out_as_the_values_they_were_given():
    """``encode`` sets a population's traces for given model values (a run's start), so reading
    them out must give those values back.  An ensemble of radius 3 (values normalised by the
    radius before the tuning curves): within the NEF's static error, 3 % of the radius, for
    values across ±2.7.  A spike-coding population: its non-negative traces, slightly shrunk by
    the small ridge that shares them among the neurons facing z, read out within 1 %."""
    from pcbio.encoding import EnsembleEncoding, SpikeCodingEncoding
    tuning = lif.Tuning.random(200, 1, seed=3, tau_m=0.02, t_ref=0.002)
    pts = lif.evaluation_points(1, 0)
    radius = 3.0
    ensemble = EnsembleEncoding(tuning, {"x": tuning.decoders(pts, radius * pts)[:, 0]}, radius,
                                10 * ms)
    z = np.linspace(-2.7, 2.7, 18)[:, None] * np.ones((1, 2))     # (points, 2 variables), no 0
    assert np.abs(ensemble.decode(ensemble.encode(z)) - z).max() < 0.03 * radius
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(40, 2))
    spike_coding = SpikeCodingEncoding(0.05 * directions / np.linalg.norm(directions, axis=1,
                                                                          keepdims=True), 100 * ms)
    traces = spike_coding.encode(z)
    assert traces.min() >= 0
    # shared among the neurons facing z (about half), not the 2 of a basic NNLS solution
    assert ((traces > 0).sum(axis=1) >= 10).all()
    np.testing.assert_allclose(spike_coding.decode(traces), z, rtol=0.01, atol=1e-3)


def test_decoders_minimise_the_regularised_read_out_error():
    """The decoders are the minimum of the mean squared read-out error plus ``σ² |d|²`` with
    σ = 0.1 × the largest rate (Nengo's regularisation, relative to the rates, so that it does
    not shrink with the number of evaluation points): the objective's gradient
    ``Aᵀ(A d − t)/M + σ² d`` vanishes at them, M the number of points."""
    tuning = lif.Tuning.random(50, 1, seed=5, tau_m=0.02, t_ref=0.002)
    pts = lif.evaluation_points(1, 0, count=300)
    A, target = tuning.rates(pts), pts ** 2
    d = tuning.decoders(pts, target)
    sigma = lif.REGULARISATION * A.max()
    gradient = A.T @ (A @ d - target) / len(pts) + sigma ** 2 * d
    assert np.abs(gradient).max() < 1e-10 * np.abs(A.T @ target / len(pts)).max()


def test_evaluation_points_are_uniform_in_the_unit_disk():
    """In two dimensions the decoders are fitted at points uniform in the unit disk: all within
    radius 1, and the fraction within radius ρ is the area's, ρ² (checked at ρ = 0.5 and
    1/√2, within 5 binomial standard errors of 4000 points); their angles are uniform (mean
    of cos and sin within 5 standard errors of 0)."""
    n = 4000
    pts = lif.evaluation_points(2, seed=3, count=n)
    radius = np.hypot(pts[:, 0], pts[:, 1])
    assert radius.max() <= 1.0
    for rho in (0.5, 2 ** -0.5):
        expected = rho ** 2
        assert abs(np.mean(radius < rho) - expected) < 5 * np.sqrt(expected * (1 - expected) / n)
    unit = pts / radius[:, None]
    assert np.abs(unit.mean(axis=0)).max() < 5 * np.sqrt(0.5 / n)


@pytest.mark.parametrize("code", ["population", "scn"])
def test_linear_fixed_point_is_the_exact_posterior_mean(code):
    """2-level linear-Gaussian model: the decoded estimate (averaged over the last 300 ms of
    1.5 s) is within 10 % of the exact posterior mean with 200 neurons per variable, and every
    population fires at physiological rates: none silent, none saturated, mean below 100 Hz."""
    m = load_model("linear_gaussian_2d")
    x = np.array([[1.0, -2.0, 0.5]])
    circuit = build_circuit(m, "spiking", code=code, neurons_per_unit=200,
                            readout_window=300 * ms)
    traj = simulate(circuit, x, duration=1500 * ms, target="numpy", record_every=10)
    estimate, how = circuit.estimate(traj)
    assert rel_err(estimate[0], exact_posterior(m, x).means[0]) < 0.1
    assert how["readout_window_s"] == pytest.approx(0.3, abs=1e-3)
    for name, stats in firing_statistics(traj).items():
        assert stats["fraction_silent"] < 1.0 and 0.1 < stats["mean_rate_hz"] < 100, (name, stats)
        assert stats["max_rate_hz"] < 1 / 0.002 / 2, (name, stats)


def test_spike_coding_network_keeps_its_voltages_in_the_greedy_rule_s_box():
    """Boerlin, Machens & Denève (2013): with the loss ``‖z − ẑ‖² + μ‖r‖²``, a spike of neuron i
    (read-out direction Γ_i) lowers the loss exactly when its voltage exceeds
    ``T_i = (‖Γ_i‖² + μ_i)/2``, and it lowers that neuron's own voltage by ``‖Γ_i‖² + μ_i = 2T_i``
    (``μ_i = c‖Γ_i‖²``, c = ``SCN_COST``).  So in a running network no voltage exceeds T_i (one
    spike per step, so at most by a step's drift), and the neuron that spiked sits at −T_i just
    after its spike (to within a step's drift).  T_i here comes from Γ and c, not from the
    network's thresholds; the linear 2-level model, 100 neurons per variable, 0.2–0.5 s."""
    import brian2
    from pcbio.circuits import CircuitNetwork
    from pcbio.circuits.spiking import SCN_COST
    m = load_model("linear_gaussian_2d")
    net = CircuitNetwork(build_circuit(m, "spiking", code="scn", neurons_per_unit=100), 1,
                         0.1 * ms, target="numpy")
    group = net.groups["value_1"]
    voltages = brian2.StateMonitor(group, "v", record=True, when="end")
    net.network.add(voltages)
    run(net, np.array([[1.0, -2.0, 0.5]]), duration=500 * ms)
    gamma = net.populations["value_1"].input_map                    # (neurons, variables)
    T = 0.5 * (1 + SCN_COST) * np.sum(gamma ** 2, axis=1)
    t = voltages.t_
    v = voltages.v[:, t > 0.2] / T[:, None]
    assert v.max() < 1.01
    spikes = net.spike_monitors["value_1"]
    late = spikes.t_ > 0.2
    assert late.sum() > 50
    after = voltages.v[spikes.i[late], np.searchsorted(t, spikes.t_[late])] / T[spikes.i[late]]
    np.testing.assert_allclose(after, -1.0, atol=0.1)


def test_a_refractory_neuron_does_not_take_the_step_s_one_spike():
    """The greedy rule's one spike per step goes to the neuron furthest above threshold among
    those that can fire (``NeuronModel.one_spike_per_step``): with the most excited neuron
    refractory, the next one spikes in that step, and only it."""
    from pcbio.circuits import CircuitNetwork
    m = load_model("linear_gaussian_2d")
    net = CircuitNetwork(build_circuit(m, "spiking", code="scn", neurons_per_unit=20), 1,
                         0.1 * ms, target="numpy")
    group = net.groups["value_1"]
    vth = np.array(group.vth[:])
    v = np.zeros_like(vth)
    v[0], v[1] = 4 * vth[0], 2 * vth[1]
    group.v = v
    group.variables["not_refractory"].get_value()[0] = False
    group.variables["lastspike"].get_value()[0] = 0.0            # refractory for 2 ms from t = 0
    run(net, np.array([[1.0, -2.0, 0.5]]), duration=0.1 * ms)
    assert list(net.spike_monitors["value_1"].i[:]) == [1]


def test_rate_equivalence_is_the_distance_from_the_rate_circuit_at_the_end_of_the_run():
    """The mapping's ``rate_equivalence`` check: the rate circuit run on the same model, data,
    τ, dt and start as a spiking run (here computed separately), and the report's
    ``rate_equivalence_rel_err_final`` is ``‖z_spiking(T) − z_rate(T)‖ / ‖z_rate(T)‖`` at the
    last recorded step, its median the median over the steps."""
    from pcbio.mapping import map_trajectory
    m = load_model("linear_gaussian_2d")
    x = np.array([[1.0, -2.0, 0.5]])
    traj = simulate(build_circuit(m, "spiking", neurons_per_unit=50), x, duration=100 * ms,
                    target="numpy", record_every=10)
    level = map_trajectory(traj, m, x, vae=False).report["levels"][0]
    rate = simulate(build_circuit(m, "rate", tau=100 * ms), x, duration=100 * ms,
                    target="numpy", init=traj.at(0), record_every=10)
    gap = [rel_err(a, b) for a, b in zip(traj.means[0], rate.means[0])]
    assert level["rate_equivalence_rel_err_final"] == pytest.approx(gap[-1], rel=1e-9)
    assert level["rate_equivalence_rel_err_median"] == pytest.approx(np.median(gap), rel=1e-9)
    assert gap[0] != pytest.approx(gap[-1], rel=0.1)


def test_spike_coding_network_refuses_nonlinear_links():
    """A spike-coding network implements linear dynamics: a tanh link is refused up front,
    naming the population code as the alternative."""
    with pytest.raises(ValueError, match="use code='population'"):
        build_circuit(load_model("tanh_2level"), "spiking", code="scn")


def test_feedback_too_fast_for_the_synapses_is_refused():
    """Bogacz's square link at the prior mean has curvature λ = 51; through the error and hidden
    ensembles' synapses (τ_s = 10 ms each) the loop needs λ τ_s/(2τ) < 1 (Routh–Hurwitz), so
    τ = 100 ms is refused before running, naming the τ that would do."""
    circuit = build_circuit(load_model("bogacz2017"), "spiking")
    with pytest.raises(ValueError, match="use tau > 255 ms"):
        simulate(circuit, [[2.0]], duration=10 * ms, target="numpy")


def test_synaptic_lag_limit_boundary_is_routh_hurwitz():
    """The third-order loop through error and hidden ensembles is stable iff
    ``λ τ_s / (2τ) < 1`` (Routh–Hurwitz, :meth:`SpikingCircuit.lag_limits`).  At Bogacz's prior
    mean λ is the largest eigenvalue of −∇² log p; with τ_s = 10 ms the boundary is
    τ = 5 ms · λ: 1 % below it is refused, 1 % above it accepted (checked before anything is
    built)."""
    from pcbio.inference import neg_hessian
    from pcbio.simulate import check_run
    m = load_model("bogacz2017")
    x, z0 = np.array([[2.0]]), m.prior_means(1)
    lam = np.abs(np.linalg.eigvalsh(neg_hessian(m, x, z0))).max()
    boundary = 5 * ms * lam
    for factor, ok in ((0.99, False), (1.01, True)):
        circuit = build_circuit(m, "spiking", tau=factor * boundary)
        if ok:
            check_run(circuit, x, 10 * ms, 0.1 * ms, z0)
        else:
            with pytest.raises(ValueError, match="too fast for this circuit"):
                check_run(circuit, x, 10 * ms, 0.1 * ms, z0)


@pytest.mark.slow
@pytest.mark.parametrize("code", ["population", "scn"])
def test_error_shrinks_with_the_number_of_neurons(code):
    """Across two tuning seeds, the mean fixed-point error with 400 neurons per variable is
    smaller than with 20 (decoding error and spike noise fall with N)."""
    m = load_model("linear_gaussian_2d")
    x = np.array([[1.0, -2.0, 0.5]])
    want = exact_posterior(m, x).means[0]
    errors = {}
    for n in (20, 400):
        errs = []
        for seed in (0, 1):
            circuit = build_circuit(m, "spiking", code=code, neurons_per_unit=n,
                                    tuning_seed=seed, readout_window=300 * ms)
            traj = simulate(circuit, x, duration=1500 * ms, target="numpy", record_every=10)
            errs.append(rel_err(circuit.estimate(traj)[0][0], want))
        errors[n] = np.mean(errs)
    assert errors[400] < errors[20]


@pytest.mark.slow
def test_bogacz_population_code_lands_near_the_posterior_mode():
    """Bogacz (2017)'s example (u = 2, g(v) = v²) as a population code, with τ slow enough for
    its curvature (400 ms): the decoded estimate lands within 5 % of the exact posterior mode."""
    circuit = build_circuit(load_model("bogacz2017"), "spiking", neurons_per_unit=200,
                            tau=400 * ms, readout_window=400 * ms)
    traj = simulate(circuit, [[2.0]], duration=2500 * ms, target="numpy", record_every=10)
    assert circuit.estimate(traj)[0][0][0, 0] == pytest.approx(bogacz_posterior_mode(), rel=0.05)


@pytest.mark.slow
def test_tanh_population_code_approaches_the_map():
    """tanh link through two-dimensional (dendrite-like) ensembles reading out f(u) and
    f'(u)·Wᵀε: the decoded fixed point is within 10 % of the MAP estimate."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8]])
    circuit = build_circuit(m, "spiking", neurons_per_unit=200, tau=400 * ms,
                            readout_window=400 * ms)
    traj = simulate(circuit, x, duration=2500 * ms, target="numpy", record_every=10)
    assert rel_err(circuit.estimate(traj)[0][0], map_estimate(m, x)[0][0]) < 0.1


@pytest.mark.slow
def test_mlp_population_code_approaches_the_map():
    """An MLP link ``W tanh(A z + a) + b`` (``pyramidal_mlp``: 8 hidden units, A 8 × 3, a
    hidden bias a ≠ 0) through its hidden ensembles: the decoded fixed point of both levels is
    within 12 % of the MAP estimate (100 neurons per variable, τ = 200 ms against the
    Routh–Hurwitz bound of 47 ms at this curvature).  Leaving out the hidden bias moves the MAP by
    23 %, and the backward pathway must carry Aᵀ, not A."""
    m = load_model("pyramidal_mlp")
    x = m.sample(1, seed=3)[0]
    circuit = build_circuit(m, "spiking", neurons_per_unit=100, tau=200 * ms,
                            readout_window=300 * ms)
    traj = simulate(circuit, x, duration=1500 * ms, target="numpy", record_every=10)
    want = map_estimate(m, x)[0]
    for got, mode in zip(circuit.estimate(traj)[0], want):
        assert rel_err(got, mode) < 0.12


@pytest.mark.standalone
def test_population_code_under_cpp_standalone():
    """Synapses with post-synaptic currents (cpp_standalone) implement the same filtered
    transmission as the runtime's read-outs of pre-synaptic traces: the standalone run lands at
    the exact posterior mean too."""
    m = load_model("linear_gaussian_2d")
    x = np.array([[1.0, -2.0, 0.5]])
    circuit = build_circuit(m, "spiking", neurons_per_unit=50, readout_window=300 * ms)
    traj = simulate(circuit, x, duration=1000 * ms, target="cpp_standalone", record_every=10)
    assert rel_err(circuit.estimate(traj)[0][0], exact_posterior(m, x).means[0]) < 0.15


@pytest.mark.parametrize("name", ["linear_gaussian_2d", "tanh_2level"])
def test_synapses_coupling_is_the_matrix_coupling_spike_for_spike(name):
    """Under the Synapses coupling (the one cpp_standalone runs) a pathway from a spiking
    population is a synaptic current that decays with the source's τ_s and jumps by w/τ_s at
    each presynaptic spike: the same linear filter as the source's traces, whose weighted
    read-out the matrix coupling delivers (``SpikeTrainEncoding``), and it starts at what the
    initial traces transmit.  The two couplings are then one dynamical system: every current
    equals its source's weighted read-out to round-off, before the run and after it, and the
    runs have the same spikes and decoded values (population code, linear and tanh links)."""
    from pcbio.circuits import CircuitNetwork
    m = load_model(name)
    x = np.array([[1.0, -2.0, 0.5]])
    circuit = build_circuit(m, "spiking", neurons_per_unit=20)
    nets = {c: CircuitNetwork(circuit, 1, 0.1 * ms, c, target="numpy")
            for c in ("matrix", "synapses")}
    net = nets["synapses"]

    def gaps():
        out = []
        for pw in net.pathways.values():
            pre, post = net.populations[pw.pre], net.populations[pw.post]
            if pre.neuron.spiking:
                current = net.groups[pw.post].variables[post.port_term(pw.name)].get_value()
                read = pre.encoding.decode(net.state(pw.pre), pw.output) @ pw.dense_matrix().T
                out.append(np.abs(current - post.spread(read).ravel()).max()
                           / np.abs(read).max())
        return out
    assert len(gaps()) >= 5 and max(gaps()) < 1e-12
    trajs = {c: run(n, x, duration=60 * ms) for c, n in nets.items()}
    assert max(gaps()) < 1e-12
    a, b = trajs["matrix"], trajs["synapses"]
    assert sum(len(i) for i, _ in a.spikes.values()) > 100
    for pop in a.spikes:
        np.testing.assert_array_equal(a.spikes[pop][0], b.spikes[pop][0])
        np.testing.assert_array_equal(a.spikes[pop][1], b.spikes[pop][1])
    np.testing.assert_allclose(a.means[0], b.means[0], rtol=0, atol=1e-12)


def test_spike_coding_network_is_refused_under_cpp_standalone_before_anything_is_built():
    """The spike-coding network's one-spike-per-step rule is a network operation, which
    cpp_standalone cannot run: a one-line error naming the target, raised before a brian2 object
    exists (one never run would be left behind), with the runtime device back in place."""
    m = load_model("linear_gaussian_2d")
    before = live_brian2_objects()
    with pytest.raises(ValueError, match="one spike per step needs a runtime target") as refused:
        simulate(build_circuit(m, "spiking", code="scn"), [[1.0, -2.0, 0.5]],
                 duration=10 * ms, target="cpp_standalone")
    # the traceback keeps the refusing frames, and so anything they had built, alive
    assert refused.traceback and live_brian2_objects() == before
    assert type(brian2.get_device()).__name__ == "RuntimeDevice"


@pytest.mark.slow
def test_spiking_vs_elbo_experiment(tmp_path):
    """`pcbio run spiking_vs_elbo --quick`: the JSON holds, per code, neurons_per_unit and
    fixed_point_rel_err of equal length, a negative slope (error falls with N), physiological
    mean rates, and the mapping of each example run against the rate circuit."""
    import json

    from pcbio.experiment import run_experiment
    run_experiment("spiking_vs_elbo", tmp_path, quick=True, seed=0)
    res = json.loads((tmp_path / "spiking_vs_elbo.json").read_text())["results"]
    for code in ("population", "scn"):
        c = res[code]
        assert len(c["neurons_per_unit"]) == len(c["fixed_point_rel_err"]) >= 3
        assert c["fixed_point_rel_err"][-1] < c["fixed_point_rel_err"][0] and c["slope"] < 0
        assert res["slope"][code] == c["slope"] and 0.1 < res["mean_rate_hz"][code] < 100
        assert "rate_equivalence" in res["examples"][code]["applicable_checks"]


def test_a_thinned_synapse_carries_its_weight_divided_by_the_density():
    """synapse_density = 0.5 keeps a subset of the synapses of the full network, each with
    twice its weight, so that the expected input to every neuron is unchanged (the mean of a
    Bernoulli(p) mask times w/p is w); the run that checks where this lands is the slow test
    below.  The mask is seeded by the pathway's name: a second build keeps the same synapses."""
    import brian2
    from pcbio.circuits import CircuitNetwork
    m = load_model("linear_gaussian_2d")
    weights = []
    for density in (1.0, 0.5, 0.5):
        circuit = build_circuit(m, "spiking", neurons_per_unit=10, synapse_density=density)
        net = CircuitNetwork(circuit, 1, 0.1 * ms, "synapses", target="numpy")
        run(net, np.array([[1.0, -2.0, 0.5]]), duration=0.5 * ms)   # a network is built to run
        weights.append({o.name: dict(zip(zip(o.i[:], o.j[:]), o.w[:]))
                        for o in net.network.objects
                        if isinstance(o, brian2.Synapses) and o.source.name != "data"})
    assert weights[1] == weights[2]
    thinned = 0
    for name, kept in weights[1].items():
        full = weights[0][name]
        assert set(kept) <= set(full)
        np.testing.assert_allclose([kept[k] for k in kept], [2 * full[k] for k in kept],
                                   rtol=1e-12)
        thinned += len(full) - len(kept)
    assert thinned > 0


@pytest.mark.slow
def test_thinned_synapses_keep_the_mean_transmission():
    """synapse_density = 0.5 under the Synapses coupling keeps half of the neuron pairs (within a
    few per cent) with doubled weights: the mean transmission is unchanged, so the decoded fixed
    point lands near the exact posterior mean with either density."""
    import brian2
    from pcbio.circuits import CircuitNetwork
    m = load_model("linear_gaussian_2d")
    x = np.array([[1.0, -2.0, 0.5]])
    counts = {}
    for density in (1.0, 0.5):
        circuit = build_circuit(m, "spiking", neurons_per_unit=50, synapse_density=density,
                                readout_window=300 * ms)
        net = CircuitNetwork(circuit, 1, 0.1 * ms, "synapses", record_every=10, target="numpy")
        counts[density] = sum(len(o) for o in net.network.objects if isinstance(o, brian2.Synapses)
                              and o.source.name != "data")
        traj = run(net, x, duration=1000 * ms)
        assert rel_err(circuit.estimate(traj)[0][0], exact_posterior(m, x).means[0]) < 0.15
    assert counts[0.5] / counts[1.0] == pytest.approx(0.5, abs=0.03)
