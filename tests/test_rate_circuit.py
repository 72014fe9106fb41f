"""The brian2 rate circuit: fixed points, Euler-step equivalence, couplings, targets, errors."""

import numpy as np
import pytest
from brian2 import Hz, ms

from conftest import bogacz_curvature, bogacz_posterior_mode, random_model
from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.encoding import RateEncoding
from pcbio.inference import exact_posterior, gradient_inference, map_estimate
from pcbio.model import GenerativeModel, Link
from pcbio.simulate import SimulationError, simulate

LINEAR = ["linear_gaussian_2d", "linear_gaussian_3level"]


def flat(z):
    return np.concatenate(z, axis=-1)


@pytest.mark.parametrize("name", LINEAR)
def test_linear_fixed_point_is_exact_posterior_mean(name):
    """Linear-Gaussian, 2 and 3 levels, instantaneous errors: the circuit's fixed point is the
    exact posterior mean (docs/mathematics.md §4), relative error ≤ 1e-6 once converged."""
    m = load_model(name)
    x, _ = m.sample(3, seed=4)
    traj = simulate(build_circuit(m, "rate"), x, duration=2000 * ms, target="numpy",
                    until_converged=True, tol=1e-10, record_every=10)
    assert traj.info.converged and traj.info.stop_reason == "converged"
    want = exact_posterior(m, x).flat_mean()
    assert np.linalg.norm(flat(traj.final_means()) - want) / np.linalg.norm(want) <= 1e-6


@pytest.mark.parametrize("coupling", ["matrix", "synapses"])
def test_euler_steps_equal_gradient_iterative_inference(coupling):
    """A circuit with instantaneous errors integrated with Euler step dt is gradient ascent on the
    ELBO with α = dt/τ: the two trajectories agree step for step to round-off."""
    m = load_model("linear_gaussian_3level")
    x, _ = m.sample(2, seed=1)
    traj = simulate(build_circuit(m, "rate", tau=5 * ms), x, duration=10 * ms, dt=0.1 * ms,
                    target="numpy", coupling=coupling)
    vae = gradient_inference(m, x, steps=len(traj) - 1, step_size=0.1 / 5)
    for c, v in zip(traj.means, vae.means):
        np.testing.assert_allclose(c, v, rtol=0, atol=1e-13)


@pytest.mark.parametrize("errors, precision", [("instant", "synaptic"), ("dynamic", "synaptic"),
                                               ("dynamic", "interneuron")])
def test_synaptic_and_matrix_couplings_give_the_same_dynamics(errors, precision):
    """brian2 Synapses with summed variables and the matrix-product coupling implement the same
    ODE, so their recorded trajectories agree to round-off (full and diagonal noise covariances,
    nonlinear link, baseline-shifted rate codes)."""
    m = random_model(5, dims=(3, 3, 2), fs=["tanh", "identity"], cov_kinds=["full", "diag"])
    x, _ = m.sample(2, seed=2)
    kw = dict(errors=errors, precision=precision, value_encoding=RateEncoding(5 * Hz, 8 * Hz),
              error_encoding=RateEncoding(20 * Hz, 4 * Hz))
    runs = [simulate(build_circuit(m, "rate", **kw), x, duration=20 * ms, target="numpy",
                     coupling=c) for c in ("matrix", "synapses")]
    for a, b in zip(runs[0].means + runs[0].errors, runs[1].means + runs[1].errors):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-11)


def test_bogacz_circuit_converges_to_posterior_mode_and_dynamic_errors_oscillate():
    """Bogacz (2017) worked example (u = 2, g(v) = v², v_p = 3, Σ_p = Σ_u = 1).  Instantaneous
    errors: φ descends monotonically to the exact posterior mode.  Dynamic error units (his
    eqs. 12–14, equal time constants as in his Exercise 3): the same point, reached later, with
    damped oscillations around it."""
    m = load_model("bogacz2017")
    mode = bogacz_posterior_mode()
    runs = {e: simulate(build_circuit(m, "rate", errors=e, tau=10 * ms, tau_error=10 * ms),
                        [[2.0]], duration=300 * ms, target="numpy") for e in ("instant", "dynamic")}
    settle = {}
    for errors, traj in runs.items():
        v = traj.means[0][:, 0, 0]
        assert v[-1] == pytest.approx(mode, abs=1e-8)
        far = np.nonzero(np.abs(v - mode) > 1e-4)[0]
        settle[errors] = traj.t[far[-1] + 1]
        signs = np.sign(v - mode)[np.abs(v - mode) > 1e-6]
        crossings = np.count_nonzero(np.diff(signs))
        if errors == "instant":
            assert crossings == 0 and np.all(np.diff(v) <= 1e-15)
        else:
            assert crossings >= 3
    assert settle["dynamic"] > 2 * settle["instant"]


def test_interneuron_precision_reaches_exact_posterior():
    """Precision by inhibitory interneurons (Bogacz 2017 §5): at the fixed point i = Σ ε, so the
    circuit still settles at the exact posterior mean of a model with full noise covariances."""
    m = random_model(8, dims=(3, 2), cov_kinds=["full"])
    x, _ = m.sample(2, seed=3)
    traj = simulate(build_circuit(m, "rate", errors="dynamic", precision="interneuron"), x,
                    duration=500 * ms, target="numpy")
    np.testing.assert_allclose(flat(traj.final_means()), exact_posterior(m, x).flat_mean(), atol=1e-9)
    np.testing.assert_allclose(traj.errors[0][-1], m.errors(x, traj.final_means())[0], atol=1e-9)


def test_nonlinear_fixed_point_is_map():
    """tanh link: the circuit settles where ∇_z log p = 0, i.e. at the MAP estimate found by the
    VAE side's optimiser."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8], [-0.5, 1.2, 0.3]])
    traj = simulate(build_circuit(m, "rate"), x, duration=400 * ms, target="numpy")
    np.testing.assert_allclose(traj.final_means()[0], map_estimate(m, x)[0][0], atol=1e-8)


@pytest.mark.parametrize("coupling", ["matrix", "synapses"])
def test_mlp_link_is_euler_integration_of_pc_dynamics(coupling):
    """An MLP ("dendrites as deep networks") link, computed by hidden units (forward f(Az + a),
    backward f'(u)·Wᵀε): the circuit still follows ∇ log p exactly, i.e. it is Euler-equivalent
    to gradient iterative inference, with either coupling."""
    m = random_model(9, dims=(3, 2), fs=["tanh"], hidden=[4])
    x, _ = m.sample(1, seed=0)
    traj = simulate(build_circuit(m, "rate"), x, duration=5 * ms, target="numpy", coupling=coupling)
    vae = gradient_inference(m, x, steps=len(traj) - 1, step_size=0.01)
    np.testing.assert_allclose(traj.means[0], vae.means[0], atol=1e-13)


def test_time_varying_stimulus_is_tracked():
    """With a stimulus that switches between two data points, the circuit settles at the exact
    posterior mean of each in turn (frames of 150 ms)."""
    m = load_model("linear_gaussian_2d")
    xs, _ = m.sample(2, seed=6)
    frames = xs[:, None, :]                                  # (2 frames, batch 1, d_0)
    traj = simulate(build_circuit(m, "rate"), frames, stimulus_dt=150 * ms, duration=300 * ms,
                    target="numpy")
    for k, t_end in enumerate((0.1499, 0.2999)):
        idx = np.searchsorted(traj.t, t_end)
        np.testing.assert_allclose(traj.means[0][idx, 0], exact_posterior(m, xs[k:k + 1]).means[0][0],
                                   atol=1e-8)
    # the Synapses coupling reads the stimulus through a brian2 TimedArray: same frame timing
    syn = simulate(build_circuit(m, "rate"), frames, stimulus_dt=150 * ms, duration=300 * ms,
                   target="numpy", coupling="synapses")
    np.testing.assert_allclose(syn.means[0], traj.means[0], atol=1e-12)


def test_recording_every_n_steps_and_raw_monitors():
    """record_every thins the trajectory; raw monitors are kept in neural units (Hz) and decode
    through the encoding r = r0 + κ z."""
    m = load_model("linear_gaussian_2d")
    enc = RateEncoding(10 * Hz, 5 * Hz)
    traj = simulate(build_circuit(m, "rate", value_encoding=enc), [[1.0, -2.0, 0.5]],
                    duration=10 * ms, record_every=10, target="numpy")
    assert len(traj) == 10 and np.allclose(np.diff(traj.t), 1e-3)
    np.testing.assert_allclose(traj.raw["value_1"], 10 + 5 * traj.means[0])
    lo, hi = traj.info.activity_range["value_1"]
    assert lo == traj.raw["value_1"].min() and hi == traj.raw["value_1"].max()
    assert traj.info.raw_units["value_1"] == "Hz"


@pytest.mark.compiled
def test_cython_target_matches_numpy_target():
    """brian2's Cython target integrates the same equations as the numpy target."""
    m = load_model("linear_gaussian_2d")
    x = [[1.0, -2.0, 0.5]]
    runs = [simulate(build_circuit(m, "rate", errors="dynamic"), x, duration=5 * ms, target=t)
            for t in ("numpy", "cython")]
    np.testing.assert_allclose(runs[0].means[0], runs[1].means[0], atol=1e-12)


@pytest.mark.standalone
def test_cpp_standalone_matches_runtime():
    """cpp_standalone (C++ code generation, Synapses coupling) reproduces the runtime trajectory
    and reaches the exact posterior mean."""
    m = load_model("linear_gaussian_2d")
    x, _ = m.sample(2, seed=5)
    circuit = build_circuit(m, "rate")
    sa = simulate(circuit, x, duration=150 * ms, target="cpp_standalone", record_every=10)
    rt = simulate(circuit, x, duration=150 * ms, target="numpy", record_every=10)
    np.testing.assert_allclose(sa.means[0], rt.means[0], atol=1e-12)
    np.testing.assert_allclose(sa.final_means()[0], exact_posterior(m, x).means[0], atol=1e-9)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(dt=5 * ms), ValueError, "dt=5. ms is too large"),
    (dict(dt=0.1), TypeError, "dt must be a time with brian2 units"),
    (dict(dt=0 * ms), ValueError, "dt must be > 0"),
    (dict(target="gpu"), ValueError, "target must be one of"),
    (dict(target="cpp_standalone", coupling="matrix"), ValueError, "needs coupling='synapses'"),
    (dict(x=[[1.0, 2.0]]), ValueError, "must have 3 entries per data point"),
    (dict(x=np.zeros((2, 1, 3))), ValueError, "give stimulus_dt"),
    (dict(x=np.zeros((2, 1, 3)), stimulus_dt=1.05 * ms), ValueError,
     "stimulus_dt=1.05 ms must be a whole number of time steps"),
    (dict(x=np.zeros((2, 1, 3)), stimulus_dt=5 * ms, until_converged=True), ValueError,
     "until_converged needs a clamped stimulus"),
    (dict(duration=0.05 * ms), ValueError, "must not exceed duration"),
    (dict(record_every=0), ValueError, "record_every must be an integer >= 1"),
])
def test_bad_simulation_input_is_rejected_before_running(kwargs, error, message):
    """Bad input raises a clear error naming the parameter, before brian2 runs anything."""
    m = load_model("linear_gaussian_2d")
    x = kwargs.pop("x", [[1.0, -2.0, 0.5]])
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        simulate(build_circuit(m, "rate"), x, **{"duration": 10 * ms, "target": "numpy", **kwargs})


def test_dynamic_errors_interneurons_and_lateral_units_have_their_own_euler_limits():
    """Dynamic error units follow ``τ_ε dε/dt = (z − g) − Σ ε``: on their own they relax at the
    rates λ(Σ)/τ_ε, so Euler needs ``dt < 2τ_ε/λ_max(Σ)``, the largest noise variance of any
    level.  Precision interneurons ``τ_i di/dt = Σε − i`` leak at 1/τ_i, so ``dt < 2τ_i``.
    Recurrent lateral units ``τ_l dy/dt = (x − m) − (I + M) y`` relax at the eigenvalues of
    ``I + M = A⁻¹`` over τ_l.  With variances 4 and 0.5 below a unit prior and τ_ε = 10 ms,
    dt = 5 ms is refused naming tau_error and 4.9 ms runs; with interneurons of τ_i = 2 ms
    (τ_ε = 100 ms), dt = 4 ms is refused naming tau_inter and 3.9 ms runs; behind a flow with
    ``A⁻¹ = diag(4, 1)`` and τ_l = 2 ms, dt = 1 ms is refused naming tau_lateral and 0.9 ms
    runs.  The value units (τ = 1 s) are far from their limit throughout."""
    from pcbio.flows import LinearFlow
    m = GenerativeModel([0.0], 1.0, [Link([[1.0], [0.5]], cov=[4.0, 0.5])])
    dynamic = dict(tau=1000 * ms, errors="dynamic", tau_error=10 * ms)
    interneurons = dict(dynamic, tau_error=100 * ms, precision="interneuron", tau_inter=2 * ms)
    behind = m.replaced(flow=LinearFlow(np.zeros(2), np.diag([0.25, 1.0])))
    for model, params, name, limit in (
            (m, dynamic, "tau_error", 5), (m, interneurons, "tau_inter", 4),
            (behind, dict(tau=1000 * ms, tau_lateral=2 * ms), "tau_lateral", 1)):
        refused = rf"is too large.*lambda/{name} < 2.*use dt < {limit} ms"
        with pytest.raises(ValueError, match=refused):
            simulate(build_circuit(model, "rate", **params), [[1.0, -1.0]], duration=20 * ms,
                     dt=limit * ms, target="numpy")
        simulate(build_circuit(model, "rate", **params), [[1.0, -1.0]], duration=20 * ms,
                 dt=(limit - 0.1) * ms, target="numpy")


def test_a_clamped_top_stays_put_while_the_levels_below_sample():
    """``top="clamped"`` holds the top level at its start (an input): nothing drives it, and with
    ``temperature`` 1 it takes no Langevin noise either — it stays exactly where it started
    while the level below, noisy, moves."""
    import brian2
    brian2.seed(1)
    m = load_model("linear_gaussian_3level")
    x = m.sample(2, seed=0)[0]
    start = [np.zeros((2, d)) for d in m.latent_dims[:-1]] + [np.full((2, m.dims[-1]), 0.7)]
    traj = simulate(build_circuit(m, "rate", top="clamped", temperature=1.0), x,
                    duration=20 * ms, dt=0.1 * ms, init=start, target="numpy")
    assert np.array_equal(traj.means[-1], np.broadcast_to(start[-1], traj.means[-1].shape))
    assert np.ptp(traj.means[0], axis=0).min() > 0


def test_the_euler_limit_takes_the_stiffest_data_point_in_the_model_s_space():
    """Bogacz's square link (u = v² + noise, prior N(3, 1), both variances 1), started at the
    prior mean v = 3: its curvature there is λ(u) = 1 + 6v² − 2u = 55 − 2u
    (conftest.bogacz_curvature), and Euler with step dt is stable while dt·λ/τ < 2.  At
    dt = 2τ/71, u = 2 (λ = 51) runs, but a batch that also holds u = −20 (λ = 95) is refused:
    the limit is the batch's largest.  Behind a flow y = −u the hierarchy sees y, so raw u = 20
    (λ would be 15) is refused for y = −20."""
    from brian2 import second
    from pcbio.flows import LinearFlow
    m = load_model("bogacz2017")
    tau = build_circuit(m, "rate").tau
    lam = {u: bogacz_curvature(3.0, u) for u in (2.0, -20.0, 20.0)}
    assert lam[2.0] < 71 < lam[-20.0] and lam[20.0] < 71
    dt = float(2 * tau / 71) * second
    run = dict(duration=20 * dt, dt=dt, target="numpy")
    simulate(build_circuit(m, "rate"), [[2.0]], **run)
    with pytest.raises(ValueError, match="is too large"):
        simulate(build_circuit(m, "rate"), [[2.0], [-20.0]], **run)
    flipped = m.replaced(flow=LinearFlow([0.0], [[-1.0]]))
    with pytest.raises(ValueError, match="is too large"):
        simulate(build_circuit(flipped, "rate"), [[20.0]], **run)
    simulate(build_circuit(flipped, "rate"), [[-2.0]], **run)


def test_dynamic_error_units_start_at_rest_wherever_the_values_start():
    """Integrated error units (errors='dynamic') start at 0 — they have seen no prediction yet —
    whatever latents the value units are started from (``Circuit.initial_values``); the value
    units start at ``init``.  They then move towards ε, which is not 0 there."""
    m = load_model("linear_gaussian_3level")
    x, _ = m.sample(2, seed=0)
    init = [np.full((2, d), 0.4) for d in m.latent_dims]
    traj = simulate(build_circuit(m, "rate", errors="dynamic"), x, duration=1 * ms,
                    target="numpy", init=init)
    for e in traj.errors:
        np.testing.assert_array_equal(e[0], 0.0)
        assert np.abs(e[-1]).max() > 1e-3
    for z, z0 in zip(traj.means, init):
        np.testing.assert_allclose(z[0], z0, rtol=1e-12)


def test_bad_circuit_parameters_are_rejected():
    """Time constants need time units and must be positive; interneuron precision needs
    dynamic errors."""
    m = load_model("linear_gaussian_2d")
    with pytest.raises(TypeError, match="tau must be a time"):
        build_circuit(m, "rate", tau=10)
    with pytest.raises(ValueError, match="tau must be > 0"):
        build_circuit(m, "rate", tau=0 * ms)
    with pytest.raises(ValueError, match="needs errors='dynamic'"):
        build_circuit(m, "rate", precision="interneuron")
    with pytest.raises(ValueError, match="circuit must be one of"):
        build_circuit(m, "spiking-but-not-yet")
    with pytest.raises(TypeError, match="encoding gain must be a rate"):
        RateEncoding(0 * Hz, 10)


def test_decoded_nan_is_reported_with_its_population_level_and_first_time():
    """After a run that cannot stop early (cpp_standalone), the decoded values are checked:
    NaN in the value units of level 2 from the third record on (t = 2 ms) is reported as
    exactly that; levels count like the model's (values 1 … L, errors 0 … L)."""
    from pcbio.simulate import _check_trajectory
    from pcbio.trajectory import Trajectory
    t = np.arange(5) * 1e-3
    means = [np.zeros((5, 1, 2)), np.zeros((5, 1, 2))]
    errors = [np.zeros((5, 1, 3)), np.zeros((5, 1, 2)), np.zeros((5, 1, 2))]
    means[1][2:, 0, 1] = np.nan
    with pytest.raises(SimulationError, match=r"value units of level 2 hold NaN/Inf from "
                                              r"t = 0\.002 s"):
        _check_trajectory(Trajectory(t=t, time_unit="s", means=means, errors=errors))
    means[1][:] = 0.0
    errors[0][4, 0, 0] = np.inf
    with pytest.raises(SimulationError, match=r"error units of level 0 hold NaN/Inf from "
                                              r"t = 0\.004 s"):
        _check_trajectory(Trajectory(t=t, time_unit="s", means=means, errors=errors))


def test_instability_during_a_run_is_detected():
    """A stimulus that jumps to a value where the square link's curvature makes Euler unstable:
    the run stops with SimulationError instead of returning NaNs (the start was stable, so the
    up-front dt check could not see it)."""
    m = load_model("bogacz2017")
    frames = np.array([[[2.0]], [[1e7]]])
    for coupling in ("matrix", "synapses"):
        with pytest.raises(SimulationError, match="unstable|NaN"):
            simulate(build_circuit(m, "rate"), frames, stimulus_dt=5 * ms, duration=20 * ms,
                     target="numpy", coupling=coupling)


@pytest.mark.parametrize("coupling", ["matrix", "synapses"])
def test_the_numpy_target_generates_no_cython_code(cython_forbidden, coupling):
    """target="numpy" is numpy from the network's construction on: brian2 generates code when
    Synapses connect, not only when they run, and a network built under the default target
    compiled 13 Cython extensions (2–3 min on a fresh machine) before its numpy run.  With
    Cython as brian2's default and refused, the run still matches gradient inference
    (α = dt/τ; the rate circuit's definition) to 1e-10, and brian2's default is Cython again
    after it (the run's target is its own, not the session's)."""
    import brian2
    m = random_model(10, dims=(3, 2, 2), fs=["tanh", "identity"], cov_kinds=["full", "diag"])
    x, _ = m.sample(2, seed=4)
    traj = simulate(build_circuit(m, "rate"), x, duration=5 * ms, target="numpy",
                    coupling=coupling)
    assert brian2.prefs.codegen.target == "cython"
    vae = gradient_inference(m, x, steps=len(traj) - 1, step_size=0.01)
    for c, v in zip(traj.means, vae.means):
        np.testing.assert_allclose(c, v, rtol=0, atol=1e-10)


@pytest.mark.standalone
@pytest.mark.parametrize("errors, precision", [("dynamic", "synaptic"), ("dynamic", "interneuron")])
def test_cpp_standalone_dynamic_errors_match_runtime(errors, precision):
    """Dynamic error units and precision interneurons under cpp_standalone follow the runtime
    trajectory (full noise covariance, tanh link)."""
    m = random_model(10, dims=(3, 2, 2), fs=["tanh", "identity"], cov_kinds=["full", "diag"])
    x, _ = m.sample(2, seed=4)
    circuit = build_circuit(m, "rate", errors=errors, precision=precision)
    sa = simulate(circuit, x, duration=30 * ms, target="cpp_standalone")
    rt = simulate(circuit, x, duration=30 * ms, target="numpy", coupling="synapses")
    for a, b in zip(sa.means + sa.errors, rt.means + rt.errors):
        np.testing.assert_allclose(a, b, atol=1e-11)


@pytest.mark.compiled
def test_large_circuit_is_euler_integration_of_pc_dynamics():
    """A 784-256-64 circuit (the benchmark's size, batch 4, Cython target) equals gradient
    iterative inference with α = dt/τ step for step."""
    m = random_model(11, dims=(784, 256, 64), cov_kinds=["scalar", "diag"], top_kind="diag")
    x, _ = m.sample(4, seed=0)
    traj = simulate(build_circuit(m, "rate"), x, duration=20 * ms, target="cython")
    vae = gradient_inference(m, x, steps=len(traj) - 1, step_size=0.01)
    for c, v in zip(traj.means, vae.means):
        np.testing.assert_allclose(c, v, rtol=0, atol=1e-10)


def test_trajectory_file_keeps_the_provenance_it_was_saved_with(tmp_path):
    """Trajectory.save(path, provenance) stores the provenance given, which load returns (every
    array and the run info round-trip for every circuit kind in test_circuit_contract.py)."""
    from pcbio.io import provenance
    from pcbio.trajectory import Trajectory
    m = load_model("linear_gaussian_3level")
    x, _ = m.sample(2, seed=0)
    traj = simulate(build_circuit(m, "rate", errors="dynamic"), x, duration=5 * ms, target="numpy")
    traj.save(tmp_path / "run.npz", provenance(0, {"duration_ms": 5}))
    back = Trajectory.load(tmp_path / "run.npz")
    assert back.provenance["seed"] == 0 and back.provenance["parameters"] == {"duration_ms": 5}


def test_curvature_growing_on_the_way_is_caught_during_the_run():
    """Bogacz's square link with a stimulus that jumps from 2 to 1e4 after 2 ms: the start is
    stable (dt·λ/τ = 0.5 at the prior mean), but on the way to v ≈ 100 the curvature
    λ = 1 + 6v² − 2u grows to ~4e4 and explicit Euler diverges: the run stops with a
    SimulationError naming when, not with a result."""
    m = load_model("bogacz2017")
    frames = np.array([[[2.0]], [[1e4]]])
    with pytest.raises(SimulationError, match="unstable by t = "):
        simulate(build_circuit(m, "rate"), frames, stimulus_dt=2 * ms, duration=100 * ms,
                 target="numpy")
