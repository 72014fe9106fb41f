"""The dendritic circuit: pyramidal somata hold the estimates, basal dendrites the bottom-up error,
apical dendrites the own-level error (``docs/mathematics.md`` §12)."""

import json

import numpy as np
import pytest
from brian2 import ms
from conftest import random_model

from pcbio.circuits import CircuitNetwork, build_circuit
from pcbio.cli import main
from pcbio.inference import exact_posterior, gradient_inference, map_estimate
from pcbio.mapping import map_trajectory
from pcbio.model_file import model_text
from pcbio.simulate import run, simulate


def _mlp_model():
    return random_model(21, dims=(4, 3, 2), fs=["tanh", "identity"], hidden=[5, None])


def test_linear_model_converges_to_the_exact_posterior_mean():
    """Linear-Gaussian 2-level model: the somata's fixed point is the exact posterior mean
    (``docs/mathematics.md`` §4: the gradient flow's only fixed point); required ≤ 1e-3."""
    m = random_model(4, dims=(4, 3, 2), cov_kinds=["diag", "scalar"])
    x, _ = m.sample(3, seed=2)
    traj = simulate(build_circuit(m, "dendritic"), x, duration=300 * ms, target="numpy")
    for got, want in zip(traj.final_means(), exact_posterior(m, x).means):
        assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-3


def test_mlp_link_converges_to_the_map_and_its_branches_are_the_hidden_layer():
    """Nonlinear MLP link computed by apical branches: the fixed point is the MAP (≤ 1e-2), the
    Euler steps equal gradient iterative inference with α = dt/τ (round-off: the dendrites are
    instantaneous), and each branch's output equals the MLP's hidden unit ``f(A z + a)`` at every
    recorded step."""
    m = _mlp_model()
    x, _ = m.sample(2, seed=5)
    traj = simulate(build_circuit(m, "dendritic"), x, duration=400 * ms, target="numpy")
    ref = map_estimate(m, x)[0]
    for got, want in zip(traj.final_means(), ref):
        assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-2
    vae = gradient_inference(m, x, steps=len(traj) - 1, step_size=0.01, init=traj.at(0))
    for c, v in zip(traj.means, vae.means):
        np.testing.assert_allclose(c, v, atol=1e-10)
    report = map_trajectory(traj, m, x).report
    assert report["data_level"]["branch_vs_hidden_layer_rel_err_max"] < 1e-12


@pytest.mark.parametrize("mlp", [False, True], ids=["linear", "mlp"])
def test_compartments_are_the_two_terms_of_the_gradient_at_every_step(mlp):
    """``∇_z log p = J_{l-1}ᵀ ε_{l-1} − ε_l``: at every recorded step the basal potential is the
    first term (before the soma's f'(z) gate; for an MLP link the branches gate it), the apical
    potential the second, and the soma's dz/dt their sum over τ — to round-off, since the
    dendrites are instantaneous (exact for a linear model's ∇_μ ELBO at any posterior variance)."""
    m = _mlp_model() if mlp else random_model(8, dims=(3, 3, 2), fs=["tanh", "identity"])
    x, _ = m.sample(2, seed=1)
    traj = simulate(build_circuit(m, "dendritic"), x, duration=100 * ms, target="numpy")
    report = map_trajectory(traj, m, x).report
    for lev in report["levels"]:
        assert lev["basal_vs_bottom_up_rel_err_max"] < 1e-10
        assert lev["apical_vs_own_error_rel_err_max"] < 1e-10
        assert lev["grad_rel_err_median"] < 1e-8
    assert report["data_level"]["apical_vs_own_error_rel_err_max"] < 1e-10


@pytest.mark.slow
def test_leaky_dendrites_lag_the_gradient_and_the_mapping_measures_it():
    """With leaky dendrites (τ_d = 2 ms) the compartments lag their inputs: early on the apical
    potential departs from −ε by a visible amount, and the gap closes as the circuit settles,
    where it still reaches the exact posterior mean (the fixed points are the same)."""
    m = random_model(4, dims=(4, 3, 2))
    x, _ = m.sample(2, seed=3)
    circ = build_circuit(m, "dendritic", dendrites="leaky", tau_dendrite=2 * ms)
    traj = simulate(circ, x, duration=400 * ms, target="numpy")
    rel = map_trajectory(traj, m, x).report["levels"][0]
    assert rel["apical_vs_own_error_rel_err_max"] > 1e-2
    for got, want in zip(traj.final_means(), exact_posterior(m, x).means):
        assert np.linalg.norm(got - want) / np.linalg.norm(want) <= 1e-3


def test_leaky_apical_potentials_are_euler_steps_of_their_membrane_equation():
    """A leaky apical compartment obeys ``τ_d dv/dt = −ε_l − v`` (its input is its level's own
    error, as the instantaneous form shows): at every recorded step
    ``v[k+1] = v[k] + (dt/τ_d)(−ε_l(z[k]) − v[k])``, with ε computed here by the model from the
    recorded value units, to round-off (τ_d = 2 ms, dt = 0.1 ms, every level)."""
    m = random_model(4, dims=(4, 3, 2))
    x, _ = m.sample(2, seed=3)
    dt, tau_d = 0.1 * ms, 2 * ms
    circ = build_circuit(m, "dendritic", dendrites="leaky", tau_dendrite=tau_d)
    traj = simulate(circ, x, duration=10 * ms, dt=dt, target="numpy")
    step = float(dt / tau_d)
    eps = [m.errors(x, [z[k] for z in traj.means]) for k in range(len(traj.t))]
    for l in range(m.n_latent + 1):
        v, e = traj.compartments[f"apical_{l}"], np.stack([eps_k[l] for eps_k in eps])
        np.testing.assert_allclose(v[1:], v[:-1] + step * (-e[:-1] - v[:-1]), rtol=0,
                                   atol=1e-12 * np.abs(v).max())


def test_leaky_dendrites_faster_than_the_step_are_refused():
    """Explicit Euler on a dendritic membrane needs dt < 2 τ_d: a larger step is refused before
    the run, naming the time constant."""
    m = random_model(4, dims=(3, 2))
    circ = build_circuit(m, "dendritic", dendrites="leaky", tau_dendrite=0.04 * ms)
    with pytest.raises(ValueError, match="tau_dendrite"):
        simulate(circ, m.sample(1, seed=0)[0], duration=5 * ms, dt=0.1 * ms, target="numpy")


def _apical_at_start(circ, m, x, z):
    net = CircuitNetwork(circ, batch=len(x), dt=0.1 * ms, target="numpy")
    traj = run(net, x, duration=0.1 * ms, init=z)
    return [traj.compartments[f"apical_{l}"][0] for l in range(m.n_latent + 1)]


def test_self_predicting_state_leaves_the_apical_tree_at_rest():
    """Sacramento et al. (2018)'s self-predicting state: the interneurons copy the cells' own
    estimate and cancel it at the apical tree with the same weight the top-down prediction
    arrives with (``w_PI w_IP = Π``).  With no top-down mismatch (``z_1 = g_1(z_2)``) the apical
    potential of level 1 is 0 to round-off; with random interneuron weights it is not."""
    m = random_model(6, dims=(3, 3, 2), fs=["identity", "tanh"])
    x, _ = m.sample(2, seed=4)
    z2 = np.array([[0.4, -0.3], [1.1, 0.2]])
    z = [m.links[1].predict(z2), z2]
    apical = _apical_at_start(build_circuit(m, "dendritic"), m, x, z)
    assert np.abs(apical[1]).max() < 1e-12
    assert np.abs(apical[0]).max() > 0.1             # the data still disagree with the prediction
    random_weights = build_circuit(m, "dendritic")
    rng = np.random.default_rng(0)
    for pw in random_weights.structure()[1]:
        if pw.name == "pi_1":
            pw.weights = rng.normal(size=pw.weights.shape)
    assert np.abs(_apical_at_start(random_weights, m, x, z)[1]).max() > 0.1


def test_the_circuit_records_its_coupling_conductance_in_nanosiemens():
    """The dendro-somatic coupling conductance is ``C/τ`` (``tau dz/dt = basal + apical`` with
    the soma's capacitance C): 300 pF / 10 ms = 30 nS by default — Urbanczik & Senn (2014)'s
    somatic leak — and 200 pF / 5 ms = 40 nS; results files record it in nS."""
    from brian2 import pF
    m = random_model(4, dims=(3, 2))
    assert build_circuit(m, "dendritic").describe()["coupling_conductance_nS"] == 30
    described = build_circuit(m, "dendritic", capacitance=200 * pF, tau=5 * ms).describe()
    assert described["coupling_conductance_nS"] == 40


def test_command_line_maps_and_infers_with_the_dendritic_circuit(tmp_path, capsys):
    """``pcbio map … --circuit dendritic --json`` reports the per-compartment comparisons and
    ``pcbio infer … --method dendritic`` the circuit's estimate in the shape of every method."""
    m = random_model(4, dims=(3, 2))
    path = tmp_path / "m.toml"
    path.write_text(model_text(m))
    x = "0.5,-0.2,1.0"
    main(["map", str(path), "--x", x, "--circuit", "dendritic", "--json", "--quiet",
          "--target", "numpy", "--duration", "100ms"])
    report = json.loads(capsys.readouterr().out)
    assert "compartments" in report["applicable_checks"]
    assert report["levels"][0]["basal_vs_bottom_up_rel_err_max"] < 1e-10
    main(["infer", str(path), "--x", x, "--method", "dendritic", "--json", "--quiet",
          "--target", "numpy", "--duration", "300ms"])
    out = json.loads(capsys.readouterr().out)
    want = exact_posterior(m, np.array([[0.5, -0.2, 1.0]])).means[0]
    np.testing.assert_allclose(out["means"][0], want[0], atol=1e-6)


@pytest.mark.slow
def test_pyramidal_dendrites_experiment_writes_what_the_issue_asks(tmp_path):
    """`pcbio run pyramidal_dendrites --quick` writes JSON, PDF and PNG; its numbers are the
    exactness statements: fixed point at the exact posterior mean, compartments equal to the
    gradient's terms and the two-layer cells equal to the MLP, all to round-off."""
    from pcbio.experiment import run_experiment
    run_experiment("pyramidal_dendrites", tmp_path, quick=True, seed=0)
    res = json.loads((tmp_path / "pyramidal_dendrites.json").read_text())["results"]
    assert (tmp_path / "pyramidal_dendrites.pdf").exists()
    assert (tmp_path / "pyramidal_dendrites.png").exists()
    assert res["fixed_point_rel_err"] < 1e-6
    assert res["fixed_point_rel_err_map"] < 1e-2
    for key in ("basal_vs_bottom_up_rel_err", "apical_vs_own_error_rel_err",
                "branch_vs_hidden_layer_rel_err"):
        assert res[key] < 1e-10
    assert res["mlp_forward_max_abs_err"] < 1e-9
