"""Learning: local plasticity in the rate circuit against the ELBO gradient, Langevin sampling,
the closed-form PPCA solution, Bogacz (2017) §5, checkpoints and the model file a run writes."""

import json
import tomllib

import numpy as np
import pytest
from brian2 import ms

from conftest import adam_step, live_brian2_objects, random_model
from pcbio import load_model
from pcbio.circuits import CircuitNetwork, build_circuit
from pcbio.covariance import Covariance
from pcbio.data import load_data, split
from pcbio.inference import exact_posterior, log_evidence
from pcbio.learning import (CircuitLearner, LearningRates, VaeLearner, activity_gradient,
                            heldout_score, interneuron_rule, ppca_maximum_likelihood,
                            reference_gradient, train)
from pcbio.model import GenerativeModel, Link
from pcbio.model_file import model_text
from pcbio.paths import list_models
from pcbio.simulate import SimulationError, run, simulate


def test_noisy_value_units_sample_the_exact_posterior():
    """Value units with temperature 1 follow the Langevin equation τ dz = ∇ log p dt + √(2τ) dW,
    whose stationary density is the posterior (Gardiner, Handbook of Stochastic Methods §5.3):
    400 independent chains of linear_gaussian_2d reach the exact posterior's mean (within 4
    standard errors) and covariance (within 15 %, several times the sampling error of 400
    draws plus the Euler–Maruyama bias at dt·λ/τ ≤ 0.25)."""
    import brian2
    brian2.seed(3)
    m = load_model("linear_gaussian_2d")
    x = np.tile([[1.0, -2.0, 0.5]], (400, 1))
    traj = simulate(build_circuit(m, "rate", temperature=1.0), x, duration=80 * ms,
                    dt=0.1 * ms, target="numpy", record_every=100)
    z = traj.final_means()[0]
    post = exact_posterior(m, x[:1])
    se = np.sqrt(np.diag(post.cov) / len(z))
    assert np.all(np.abs(z.mean(0) - post.flat_mean()[0]) < 4 * se)
    assert np.allclose(np.cov(z, rowvar=False), post.cov, rtol=0.15, atol=0.15 * post.cov.max())


def test_noisy_circuit_refuses_a_dt_that_biases_sampling():
    """Euler–Maruyama inflates the sampled variance along a direction of curvature λ by
    1/(1 − dt·λ/2τ) (the stationary variance of the discretised Ornstein–Uhlenbeck process):
    a noisy circuit is refused before the run when dt·λ/τ ≥ 0.25, with the dt to use."""
    m = load_model("linear_gaussian_2d")
    with pytest.raises(ValueError, match=r"dt.*too large.*use dt <"):
        simulate(build_circuit(m, "rate", temperature=1.0), [[1.0, -2.0, 0.5]],
                 duration=10 * ms, dt=1 * ms, target="numpy")


def test_local_rule_at_the_fixed_point_misses_the_elbo_gradient_by_N_Pi_W_S():
    """For a linear model, ∇_W ELBO at the exact posterior N(μ, S) is Σ_n Π(x_n − Wμ_n − b)μ_nᵀ
    − N Π W S (expectation of a quadratic, docs/mathematics.md §10), while the circuit's local
    rule ε fᵀ at its fixed point is the first term alone: their difference is N Π W S exactly
    (to the circuit's convergence), the bias of point-estimate learning for s > 0."""
    m = random_model(5, dims=(4, 3), cov_kinds=["full"])
    x, _ = m.sample(5, seed=2)
    traj = simulate(build_circuit(m, "rate"), x, duration=1000 * ms, target="numpy",
                    until_converged=True, tol=1e-12, record_every=10)
    z, eps = traj.final_means(), [e[-1] for e in traj.errors]
    local = activity_gradient(m, x, z, eps).links[0].weights
    ref = reference_gradient(m, x, z).links[0].weights
    S = exact_posterior(m, x).cov
    want = len(x) * m.links[0].cov.precision @ m.links[0].W @ S
    assert np.allclose(local - ref, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("kind", ["scalar", "diag", "full"])
def test_interneuron_rule_is_the_gradient_rule_scaled_by_sigma(kind):
    """Bogacz (2017) §5: with the interneurons settled, e = Σ ε, so his rule Σ_n (ε eᵀ − I) is
    Σ_n (ε εᵀ Σ − I) = 2 · ½ Σ_n (ε εᵀ − Π) Σ — the gradient rule times 2Σ (symmetrised; for a
    scalar or diagonal Σ the matching trace/diagonal), so both stop where E[r rᵀ] = Σ."""
    rng = np.random.default_rng(0)
    value = {"scalar": 1.7, "diag": np.array([0.5, 1.0, 2.0]),
             "full": np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.4], [0.0, 0.4, 1.5]])}[kind]
    cov = Covariance(value, 3)
    eps = rng.normal(size=(6, 3))
    got = interneuron_rule(cov, eps, cov.apply(eps))
    grad = cov.gradient(eps)
    if kind == "full":
        half = grad @ cov.matrix
        want = half + half.T
    elif kind == "diag":
        want = 2 * grad * cov.variances
    else:
        want = 2 * value * grad
    assert np.allclose(got, want, rtol=1e-12)


def test_ppca_closed_form_is_a_maximum_of_the_likelihood():
    """Tipping & Bishop (1999): W = U_q(Λ_q − σ²I)^{1/2}, σ² = mean of the discarded eigenvalues,
    b = data mean maximise log p(x): the exact gradient ∇_θ log p(x) vanishes there (relative
    1e-9), and random perturbations of W, b or σ² lower the likelihood."""
    x_train, _ = split(load_data("digits"), 0.2, 0)
    ml = ppca_maximum_likelihood(x_train, 8)
    g = reference_gradient(ml, x_train, None)
    link = ml.links[0]
    assert np.abs(g.links[0].weights).max() / len(x_train) < 1e-9 * np.abs(link.W).max() / link.cov.value
    assert abs(g.links[0].cov) / len(x_train) < 1e-9 / link.cov.value
    best = log_evidence(ml, x_train).mean()
    rng = np.random.default_rng(1)
    for _ in range(3):
        for params in ({"weights": link.W + 1e-3 * rng.normal(size=link.W.shape)},
                       {"bias": link.b + 1e-3 * rng.normal(size=link.b.shape)},
                       {"cov": link.cov.value * (1 + 1e-2 * rng.choice([-1, 1]))}):
            other = ml.replaced(links=[link.replaced(**params)])
            assert log_evidence(other, x_train).mean() < best


def test_update_model_rewires_a_running_network_like_a_fresh_one():
    """Learning writes new parameters into a running network (CircuitNetwork.update_model): the
    network must then compute exactly what a network built for the new model computes — same
    trajectory to round-off from the same start — and its declared pathways are the new ones.
    Under the Synapses coupling, whose weights live in brian2's synapses, it is refused in one
    line."""
    a, b = random_model(1, dims=(3, 2)), random_model(2, dims=(3, 2))
    x, _ = b.sample(2, seed=0)
    net = CircuitNetwork(build_circuit(a, "rate"), 2, 0.1 * ms, target="numpy")
    net.update_model(b)
    got = run(net, x, duration=20 * ms, init=b.prior_means(2)).final_means()
    want = simulate(build_circuit(b, "rate"), x, duration=20 * ms, target="numpy").final_means()
    assert np.allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    for pw in build_circuit(b, "rate").structure()[1]:
        assert np.array_equal(net.pathways[pw.name].weights, pw.weights)
    synapses = CircuitNetwork(build_circuit(a, "rate"), 2, 0.1 * ms, "synapses", target="numpy")
    run(synapses, x, duration=0.2 * ms)            # a network is built to run
    with pytest.raises(ValueError, match="only under the matrix coupling"):
        synapses.update_model(b)


def _bogacz_numpy(phi, steps, dt, sigma, rate):
    """Bogacz (2017) Exercise 5 as written in the paper (eqs. 59-61), by explicit Euler in
    numpy: ε' = ε + dt(φ − g − e), e' = e + dt(Σε − e) from ε = e = 0, then Σ += α(εe − 1)."""
    out = []
    for p in phi:
        eps = e = 0.0
        for _ in range(steps):
            eps, e = eps + dt * (p - 5.0 - e), e + dt * (sigma * eps - e)
        sigma += rate * (eps * e - 1.0)
        out.append(sigma)
    return np.array(out)


def test_interneuron_circuit_learns_variance_like_bogacz_exercise_5():
    """The brian2 circuit with dynamic error units and a precision interneuron, learning Σ by
    Bogacz's local rule, is his Exercise 5: trial by trial, its Σ equals an explicit-Euler numpy
    integration of the paper's equations 59–61 (step dt/τ = 0.1, the same inputs) to 1e-9."""
    m = load_model("bogacz2017_variance")
    phi = 5 + np.sqrt(2) * np.random.default_rng(0).standard_normal(30)
    learner = CircuitLearner(m, LearningRates(cov=0.01), batch=1, settle=20 * ms, dt=0.2 * ms,
                             tau=2 * ms, errors="dynamic", precision="interneuron",
                             target="numpy", compare_every=0)
    records = learner.epoch(phi[:, None, None], seed=(0, 0))
    got = [r["noise_variance"][0] for r in records]
    assert np.allclose(got, _bogacz_numpy(phi, 100, 0.1, 1.0, 0.01), rtol=0, atol=1e-9)


@pytest.mark.slow
def test_bogacz_exercise_5_variance_converges_to_the_input_variance():
    """Bogacz (2017) Exercise 5: after 1000 trials of φ ~ N(5, 2) with α = 0.01 the learned Σ
    hovers around the input variance 2 (the rule's fixed point E[(φ − g)²]); the average of the
    last 300 trials lies within 0.35 of it (the stationary spread of Σ is √(2α) ≈ 0.14 per trial,
    correlated over ~Σ/α = 200 trials)."""
    m = load_model("bogacz2017_variance")
    phi = 5 + np.sqrt(2) * np.random.default_rng(0).standard_normal(1000)
    learner = CircuitLearner(m, LearningRates(cov=0.01), batch=1, settle=20 * ms, dt=0.2 * ms,
                             tau=2 * ms, errors="dynamic", precision="interneuron",
                             compare_every=0)
    records = learner.epoch(phi[:, None, None], seed=(0, 0))
    assert abs(np.mean([r["noise_variance"][0] for r in records[-300:]]) - 2.0) < 0.35


def _small_problem():
    m = load_model("linear_gaussian_2d")
    x, _ = random_model(9, dims=(3, 2)).sample(60, seed=1)
    return m, *split(x, 0.25, 0)


@pytest.mark.parametrize("kind", ["vae", "circuit"])
def test_resuming_from_a_checkpoint_gives_the_same_numbers(kind, tmp_path):
    """A run stopped after epoch 1 and resumed from its checkpoint ends with exactly the model
    and history of a run that was never interrupted (data order and neural noise are seeded per
    epoch; the checkpoint stores floats exactly)."""
    m, x_train, x_test = _small_problem()
    rates = LearningRates(weights=0.02, bias=0.02, cov=0.01)

    def learner():
        if kind == "vae":
            return VaeLearner(m, rates)
        return CircuitLearner(m, rates, batch=5, settle=10 * ms, dt=0.1 * ms, temperature=1.0,
                              target="numpy", compare_every=3)
    whole = train(learner(), x_train, x_test, epochs=2, batch=5, seed=4, rate_decay=0.9)
    train(learner(), x_train, x_test, epochs=1, batch=5, seed=4, rate_decay=0.9,
          checkpoint_dir=tmp_path)
    resumed = train(learner(), x_train, x_test, epochs=2, batch=5, seed=4, rate_decay=0.9,
                    checkpoint_dir=tmp_path)
    assert json.dumps(resumed["model"]) == json.dumps(whole["model"])
    assert json.dumps(resumed["history"]) == json.dumps(whole["history"])
    with pytest.raises(ValueError, match="other settings"):
        train(learner(), x_train, x_test, epochs=2, batch=6, seed=4, checkpoint_dir=tmp_path)


def test_circuit_learning_raises_the_likelihood_and_reports_the_update_gap():
    """Local learning in the circuit (noisy units, temperature 1) on data drawn from a linear
    model raises the held-out log p(x) (exact, Tipping–Bishop-style evidence of a linear model),
    and every compared update reports a cosine with ∇_W log p(x) in [-1, 1]."""
    m, x_train, x_test = _small_problem()
    learner = CircuitLearner(m, LearningRates(weights=0.02, bias=0.02), batch=5,
                             settle=20 * ms, dt=0.1 * ms, temperature=1.0, target="numpy")
    state = train(learner, x_train, x_test, epochs=3, batch=5, seed=0)
    scores = [h["log_likelihood"] for h in state["history"]["heldout"]]
    assert scores[-1] > scores[0]
    cosines = [r["weight_cosine"][0] for r in state["history"]["updates"]]
    assert all(-1 <= c <= 1 for c in cosines)


def test_learning_that_makes_the_circuit_stiff_is_stopped_with_the_dt_to_use():
    """A learning rate so large that the curvature of log p outgrows the Euler limit is caught
    at the update that causes it (SimulationError naming dt), not left to produce NaN."""
    m, x_train, x_test = _small_problem()
    learner = CircuitLearner(m, LearningRates(weights=5.0, cov=5.0), batch=5, settle=10 * ms,
                             dt=0.5 * ms, target="numpy", compare_every=0)
    with pytest.raises(SimulationError, match="dt"):
        train(learner, x_train, x_test, epochs=3, batch=5, seed=0)


@pytest.mark.parametrize("settings, error", [
    ({"dt": 10 * ms}, "dt=10. ms is too large"),
    ({"rate_decay": 2.0}, "rate_decay must lie in"),
    ({"batch": 100}, "batch=100 exceeds the 45 training points"),
])
def test_settings_that_cannot_run_are_refused_before_any_brian2_object_exists(settings, error):
    """A training run whose settings fail a check (Euler's limit dt·λ/τ < 2 at the first
    minibatch; the schedule) raises before a brian2 object is made: a network that is never
    run would only be left behind, with brian2's warning about each of its objects.  Counted
    as the live brian2 objects before and after, with the learner still referenced."""
    m, x_train, x_test = _small_problem()
    batch = settings.get("batch", 5)
    before = live_brian2_objects()
    learner = CircuitLearner(m, LearningRates(), batch=batch, settle=settings.get("dt", 1 * ms),
                             dt=settings.get("dt", 0.1 * ms), target="numpy", compare_every=0)
    with pytest.raises(ValueError, match=error):
        train(learner, x_train, x_test, epochs=1, batch=batch, seed=0,
              rate_decay=settings.get("rate_decay", 1.0))
    assert live_brian2_objects() == before


def test_noisy_circuit_learning_draws_its_noise_from_the_epoch_s_seed():
    """Noisy value units (temperature 1) draw their noise from brian2's generator, seeded per
    epoch with ``epoch_seed``: the same (seed, epoch) gives the same run bit for bit, another
    epoch other noise (so epochs do not repeat one noise sequence)."""
    m = random_model(0, dims=(3, 2))
    batches = m.sample(4, seed=0)[0].reshape(2, 2, 3)
    learner = CircuitLearner(m, LearningRates(), batch=2, settle=2 * ms, dt=0.1 * ms,
                             temperature=1.0, target="numpy", compare_every=0)

    def final(seed):
        learner.epoch(batches, seed=seed)
        return learner.network.decoded("value")[1].copy()
    first, other, again = final((0, 0)), final((0, 1)), final((0, 0))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).min() > 0


def test_learning_rates_are_checked():
    """Rates must be finite and >= 0 and the variance floor positive: one-line errors naming
    the parameter."""
    with pytest.raises(ValueError, match="learning rate weights"):
        LearningRates(weights=-1.0)
    with pytest.raises(ValueError, match="variance_floor"):
        LearningRates(variance_floor=0.0)
    with pytest.raises(ValueError, match="affine links"):
        CircuitLearner(random_model(0, dims=(3, 2), hidden=[4]), LearningRates(), batch=1)


def test_one_ascent_step_moves_each_parameter_by_its_own_rate_and_keeps_variances_above_the_floor():
    """``apply_gradient`` is ``θ + η g / n`` (docs/mathematics.md §10) with the rate of the
    parameter's kind — weights (W and an MLP link's A), biases (b and its a), covariances, the
    top mean and covariance — and variances never below the floor: a diagonal variance pushed
    below it lands on it, and a full covariance keeps its eigenvectors with every eigenvalue
    ``max(λ, floor)``.  Each rate differs, so a parameter stepped with another kind's rate, or
    not divided by n, is off."""
    from pcbio.learning import apply_gradient
    from pcbio.model import LinkGradient, ParameterGradient
    model = random_model(1, dims=(4, 3, 2), hidden=[5, None], cov_kinds=["diag", "full"])
    rng = np.random.default_rng(2)
    rates = LearningRates(weights=0.1, bias=0.2, cov=0.3, top_mean=0.4, top_cov=0.5,
                          variance_floor=0.05)
    n = 7

    def like(a):
        return rng.normal(size=np.shape(a))
    grads = []
    for link in model.links:
        g = LinkGradient(like(link.W), like(link.b), like(link.cov.value))
        if link.is_mlp:
            g.hidden_weights, g.hidden_bias = like(link.A), like(link.a)
        grads.append(g)
    grads[0].cov[0] = -n * (model.links[0].cov.value[0] + 1.0) / rates.cov   # below the floor
    v = rng.normal(size=3)
    v /= np.linalg.norm(v)
    grads[1].cov = -n * 10.0 * np.outer(v, v) / rates.cov           # one eigenvalue below it
    top_cov = like(model.top_cov.value)
    grad = ParameterGradient(grads, like(model.top_mean), top_cov + top_cov.T)   # symmetric
    new = apply_gradient(model, grad, rates, n)
    for old, link, g in zip(model.links, new.links, grads):
        np.testing.assert_allclose(link.W, old.W + 0.1 * g.weights / n, rtol=1e-14)
        np.testing.assert_allclose(link.b, old.b + 0.2 * g.bias / n, rtol=1e-14)
        if old.is_mlp:
            np.testing.assert_allclose(link.A, old.A + 0.1 * g.hidden_weights / n, rtol=1e-14)
            np.testing.assert_allclose(link.a, old.a + 0.2 * g.hidden_bias / n, rtol=1e-14)
    diag = model.links[0].cov.value + 0.3 * grads[0].cov / n
    assert diag[0] < 0.05
    np.testing.assert_allclose(new.links[0].cov.value, np.maximum(diag, 0.05), rtol=1e-14)
    full = model.links[1].cov.value + 0.3 * grads[1].cov / n
    lam, got = np.linalg.eigvalsh(full), new.links[1].cov.value
    assert lam[0] < 0.05 < lam[1]
    np.testing.assert_allclose(np.linalg.eigvalsh(got), np.maximum(lam, 0.05), rtol=1e-12)
    np.testing.assert_allclose(got @ np.linalg.eigh(full)[1], np.linalg.eigh(full)[1]
                               * np.maximum(lam, 0.05), atol=1e-12)   # same eigenvectors
    np.testing.assert_allclose(new.top_mean, model.top_mean + 0.4 * grad.top_mean / n, rtol=1e-14)
    np.testing.assert_allclose(new.top_cov.value, model.top_cov.value
                               + 0.5 * grad.top_cov / n, rtol=1e-12)


def test_annealing_scales_every_rate_but_not_the_floor_and_records_mean_variances():
    """``LearningRates.scaled(c)`` multiplies every rate by c (an annealing schedule) and keeps
    the variance floor, which is a bound, not a rate; ``mean_variances`` is each level's mean
    noise variance (the diagonal's mean for a full covariance, the variance for a scalar)."""
    from pcbio.learning.rules import mean_variances
    rates = LearningRates(weights=0.1, bias=0.2, cov=0.3, top_mean=0.4, top_cov=0.5,
                          lateral=0.6, variance_floor=0.01)
    half = rates.scaled(0.5)
    assert half.to_json() == {**{k: v / 2 for k, v in rates.to_json().items()},
                              "variance_floor": 0.01}
    model = random_model(3, dims=(4, 3, 2), cov_kinds=["diag", "scalar"])
    want = [float(np.mean(model.links[0].cov.value)), float(model.links[1].cov.value),
            float(np.mean(np.diag(model.top_cov.value)))]
    assert mean_variances(model) == pytest.approx(want, rel=1e-14)


def test_update_comparison_measures_cosine_and_gap_relative_to_the_reference():
    """``compare_updates``: per link and over all weights, the cosine between the update and
    the reference gradient and ``‖g − g_ref‖ / ‖g_ref‖`` — relative to the reference: an
    update twice its reference is 100 % off (cosine 1), one orthogonal to it and half as long
    √1.25 off (cosine 0), whereas relative to the update they would be 50 % and √5."""
    from pcbio.learning import compare_updates
    from pcbio.model import LinkGradient, ParameterGradient

    def gradient(*weights):
        return ParameterGradient([LinkGradient(np.asarray(w, float), None, None)
                                  for w in weights], None, None)
    reference = gradient([[3.0, 4.0]], [[1.0, 0.0]])
    got = compare_updates(gradient([[6.0, 8.0]], [[0.0, 0.5]]), reference)
    assert got["weight_cosine"] == pytest.approx([1.0, 0.0], abs=1e-15)
    assert got["weight_relative_gap"] == pytest.approx([1.0, np.sqrt(1.25)], rel=1e-14)
    all_ref, all_got = np.array([3, 4, 1, 0.0]), np.array([6, 8, 0, 0.5])
    assert got["weight_relative_gap_all"] == pytest.approx(
        np.linalg.norm(all_got - all_ref) / np.linalg.norm(all_ref), rel=1e-14)
    assert got["weight_cosine_all"] == pytest.approx(
        all_got @ all_ref / np.linalg.norm(all_got) / np.linalg.norm(all_ref), rel=1e-14)


def test_a_decorrelating_step_that_would_destabilise_the_lateral_circuit_is_an_error():
    """The recurrent front end ``(I + M) y = x − m`` is stable only while ``I + M`` is positive
    definite.  From M = 0, silent lateral units (y = 0) and rate η, the step gives
    ``I + M = (1 − η) I``: η = 0.5 is fine (M = −I/2), η = 1.5 must raise SimulationError."""
    from pcbio.flows import LinearFlow
    from pcbio.learning.rules import lateral_step
    flow = LinearFlow(np.zeros(3), np.eye(3))
    x, y = np.ones((4, 3)), np.zeros((4, 3))
    np.testing.assert_allclose(lateral_step(flow, x, y, 0.5).recurrent(), -0.5 * np.eye(3),
                               atol=1e-14)
    with pytest.raises(SimulationError, match="unstable"):
        lateral_step(flow, x, y, 1.5)


def test_vae_learner_refuses_a_lateral_rate_and_draws_new_samples_per_minibatch(monkeypatch):
    """The VAE side has no lateral (front-end) weights, so a lateral rate would silently learn
    nothing: refused naming it.  For a nonlinear model the update is a Monte-Carlo ELBO
    gradient; each minibatch of an epoch gets its own seed, so no two share their samples."""
    import pcbio.learning.vae as vae
    m = random_model(0, dims=(3, 2), fs=["tanh"])
    with pytest.raises(ValueError, match="lateral"):
        VaeLearner(m, LearningRates(weights=0.1, lateral=0.1))
    seeds = _reference_seeds(monkeypatch, vae)
    x = m.sample(4, seed=0)[0]
    VaeLearner(m, LearningRates(weights=0.01)).epoch(np.stack([x[:2], x[2:]]))
    assert len(seeds) == 2 and seeds[0] != seeds[1]


def _reference_seeds(monkeypatch, module) -> list:
    """The seeds ``module.reference_gradient`` is called with from now on (a spy)."""
    seeds, original = [], module.reference_gradient
    monkeypatch.setattr(module, "reference_gradient",
                        lambda model, x, z, seed: (seeds.append(seed),
                                                   original(model, x, z, seed))[1])
    return seeds


def test_circuit_learner_compares_each_update_with_fresh_samples(monkeypatch):
    """For a nonlinear model the circuit's update is compared with a Monte-Carlo ELBO gradient
    at the Laplace posterior: each update of an epoch gets its own seed, so the comparisons'
    sampling errors are independent rather than one error repeated."""
    import pcbio.learning.circuit as circuit
    m = random_model(0, dims=(3, 2), fs=["tanh"])
    seeds = _reference_seeds(monkeypatch, circuit)
    x = m.sample(6, seed=0)[0]
    learner = CircuitLearner(m, LearningRates(weights=0.01), batch=2, settle=2 * ms,
                             dt=0.1 * ms, target="numpy")
    records = learner.epoch(x.reshape(3, 2, 3))
    assert len(seeds) == 3 and len(set(seeds)) == 3
    assert all("weight_cosine_all" in r for r in records)


def test_ppca_needs_fewer_components_than_dimensions():
    """Tipping & Bishop's σ² is the mean of the d − q smallest eigenvalues: with q = d there
    are none, and the fit would be NaN, so it is refused in one line.  Data of rank q leave
    those eigenvalues at round-off (about ±1e-16 of the largest, positive for half of these
    seeds): σ² would be 0, and that is refused as such, not as a noise variance out of range."""
    x = np.random.default_rng(0).normal(size=(50, 3))
    with pytest.raises(ValueError, match="q must be smaller than the data dimension 3"):
        ppca_maximum_likelihood(x, 3)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        flat = rng.normal(size=(40, 2)) @ rng.normal(size=(2, 6))          # rank 2 in 6-D
        with pytest.raises(ValueError, match="subspace of dimension <= q.*choose a smaller q"):
            ppca_maximum_likelihood(flat, 2)


def test_model_file_text_keeps_quotes_backslashes_and_the_description():
    """A model file's description is a TOML string: quotes and backslashes in it are escaped,
    so the file parses and gives it back as written."""
    m = load_model("linear_gaussian_2d")
    text = 'fitted to "digits" in C:\\data'
    spec = tomllib.loads(model_text(m, "comment", description=text))
    assert spec["description"] == text


@pytest.mark.parametrize("name", list_models())
def test_model_files_written_by_pcbio_read_back_exactly(name):
    """A learned model is written as a TOML model file: every bundled model survives the round
    trip bit for bit (floats are written in Python's shortest round-trip form)."""
    m = load_model(name)
    back = GenerativeModel.from_dict(tomllib.loads(model_text(m, "comment")))
    assert json.dumps(back.to_dict()) == json.dumps(m.to_dict())


@pytest.mark.slow
def test_ppca_learned_by_the_noisy_circuit_approaches_maximum_likelihood():
    """Monte Carlo predictive coding (Oliviers, Bogacz & Meulemans 2024): with noisy value units
    the local rule is an unbiased estimate of ∇ log p(x), so the circuit learns PPCA of the
    digits towards the closed-form maximum-likelihood model (Tipping & Bishop 1999): held-out
    log-likelihood within 0.5 nats per digit (of ≈ 14), noise variance within 10 % and the
    learned subspace (compared through W Wᵀ, as W is unique only up to a rotation) within 20 %
    after 25 epochs with annealed rates."""
    x_train, x_test = split(load_data("digits"), 0.2, 0)
    learner = CircuitLearner(load_model("ppca_digits"),
                             LearningRates(weights=0.03, bias=0.03, cov=1e-5), batch=100,
                             settle=45 * ms, dt=0.015 * ms, temperature=1.0, compare_every=0)
    state = train(learner, x_train, x_test, epochs=25, batch=100, seed=0, rate_decay=0.93)
    ml = ppca_maximum_likelihood(x_train, 8)
    C, C_ml = (m.links[0].W @ m.links[0].W.T for m in (learner.model, ml))
    assert np.linalg.norm(C - C_ml) < 0.2 * np.linalg.norm(C_ml)
    assert heldout_score(learner.model, x_test)["log_likelihood"] > \
        heldout_score(ml, x_test)["log_likelihood"] - 0.5
    assert learner.model.links[0].cov.value == pytest.approx(ml.links[0].cov.value, rel=0.1)
    assert state["epoch"] == 25


def test_deterministic_circuit_learning_equals_the_same_updates_on_the_vae_side():
    """With deterministic value units the circuit integrates τ dz/dt = ∇ log p by Euler steps of
    dt, which are gradient steps of size dt/τ (docs/mathematics.md §5), and its local rule is
    ∇_θ log p(x, z) at the state reached: an epoch of circuit learning equals, update for
    update, gradient inference with the same steps followed by the same rule (round-off)."""
    m, x_train, _ = _small_problem()
    rates = LearningRates(weights=0.05, bias=0.05, cov=0.02)
    batches = x_train[:40].reshape(4, 10, -1)
    circuit = CircuitLearner(m, rates, batch=10, settle=15 * ms, dt=0.1 * ms, target="numpy",
                             compare_every=0)
    circuit.epoch(batches)
    vae = VaeLearner(m, rates, inference="gradient", steps=150, step_size=0.01)
    vae.epoch(batches)
    for a, b in zip(circuit.model.links, vae.model.links):
        assert np.allclose(a.W, b.W, rtol=1e-10, atol=1e-12)
        assert np.allclose(a.cov.value, b.cov.value, rtol=1e-10)


def _supervised_problem(precision):
    from pcbio.model import Link
    rng = np.random.default_rng(3)
    model = GenerativeModel(np.zeros(4), 1.0, [
        Link(rng.normal(size=(3, 5)) / 2, rng.normal(size=3) * 0.1, "tanh", 1.0 / precision),
        Link(rng.normal(size=(5, 4)) / 2, rng.normal(size=5) * 0.1, "identity", 1.0)])
    inputs = rng.normal(size=(6, 4))
    targets = rng.normal(size=(6, 3))
    return model, targets, inputs


def test_backprop_gradient_is_minus_the_loss_gradient():
    """backprop_gradient is −∇ of ½ Σ_n (t_n − ŷ_n)ᵀ Π_0 (t_n − ŷ_n) for every weight and bias,
    ŷ the feed-forward pass from the inputs: checked against central differences."""
    from conftest import central_difference
    from pcbio.learning import backprop_gradient, predict
    model, targets, inputs = _supervised_problem(0.5)
    grad = backprop_gradient(model, targets, inputs)

    def loss(link, name, value):
        links = list(model.links)
        links[link] = links[link].replaced(**{name: value})
        r = targets - predict(model.replaced(links=links), inputs)
        return 0.5 * np.sum(r * model.links[0].cov.apply_precision(r))
    for l, link in enumerate(model.links):
        for name, got in (("weights", grad.links[l].weights), ("bias", grad.links[l].bias)):
            value = link.W if name == "weights" else link.b
            want = -central_difference(lambda v: loss(l, name, v), value)
            assert np.allclose(got, want, rtol=1e-6, atol=1e-8)


def test_pc_updates_approach_backprop_as_the_output_precision_weakens():
    """Whittington & Bogacz (2017): with input clamped at the top and target at the output, the
    circuit's equilibrium errors approach backprop's deltas (times the output precision Π_0) as
    Π_0 → 0, so its local updates ε f(z)ᵀ approach backprop's: the relative distance falls in
    proportion to Π_0 (first order in Π_0: a tenfold weaker precision, a tenfold smaller gap,
    within a factor 2) and is below 2 % at Π_0 = 0.01."""
    gaps = []
    for precision in (0.1, 0.01):
        model, targets, inputs = _supervised_problem(precision)
        learner = CircuitLearner(model, LearningRates(), batch=6, settle=150 * ms, dt=0.2 * ms,
                                 top="clamped", target="numpy")
        record = learner.epoch(targets[None], tops=inputs[None])[0]
        gaps.append(record["weight_relative_gap_all"])
    assert gaps[1] < 0.02
    assert 5 < gaps[0] / gaps[1] < 20
    with pytest.raises(ValueError, match="tops"):
        learner.epoch(targets[None])


@pytest.mark.slow
def test_pc_trained_digit_classifier_matches_backprop():
    """Whittington & Bogacz (2017) report that the PC network trained with local rules reaches
    the accuracy of the same network trained by backprop; on the digits (64-32-10, output
    precision 0.1, 5 epochs, same initial weights, rates and minibatches) both exceed 90 %
    held-out accuracy and differ by less than 3 points."""
    from pcbio.data import digit_labels
    from pcbio.learning import BackpropLearner, accuracy
    model = load_model("whittington_bogacz_digits")
    pixels, labels = load_data("digits"), digit_labels()
    idx = np.random.default_rng(0).permutation(len(labels))
    tr, te = idx[:1400], idx[1400:]
    targets = np.eye(10)[labels]
    rates = LearningRates(weights=1.0, bias=1.0)

    def score(m, _x, inputs):
        return {"accuracy": accuracy(m, inputs, labels[te])}
    args = dict(x_train=targets[tr], x_test=targets[te], epochs=5, batch=20, seed=0,
                inputs=(pixels[tr], pixels[te]), score=score)
    pc = train(CircuitLearner(model, rates, 20, settle=60 * ms, dt=0.5 * ms, top="clamped",
                              compare_every=0), **args)
    bp = train(BackpropLearner(model, rates), **args)
    a_pc, a_bp = pc["history"]["heldout"][-1]["accuracy"], bp["history"]["heldout"][-1]["accuracy"]
    assert a_pc > 0.9 and a_bp > 0.9 and abs(a_pc - a_bp) < 0.03


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["ppca_digits", "precision_learning", "backprop_alignment"])
def test_learning_experiments_write_what_the_issue_asks(experiment, tmp_path):
    """`pcbio run NAME --quick` for the learning experiments writes JSON, PDF and PNG, and the
    JSON holds the quantities the figures rest on: PPCA's learned and closed-form log-likelihoods
    per digit and q; Bogacz's learned and true variance; output precisions with their cosines
    (cosine rising as the precision weakens, as Whittington & Bogacz predict) and both test
    accuracies."""
    from pcbio.experiment import run_experiment
    run_experiment(experiment, tmp_path, quick=True, seed=0)
    res = json.loads((tmp_path / f"{experiment}.json").read_text())["results"]
    assert (tmp_path / f"{experiment}.pdf").exists() and (tmp_path / f"{experiment}.png").exists()
    if experiment == "ppca_digits":
        assert res["q"] == 8 and res["loglik_learned"] < res["loglik_closed_form"]
        assert res["loglik_learned"] > res["loglik_by_epoch"][0]
    elif experiment == "precision_learning":
        assert res["variance_true"] == 2.0 and 1.0 < res["variance_learned"] < 3.0
    else:
        assert len(res["output_precision"]) == len(res["cosine"])
        assert res["cosine"] == sorted(res["cosine"]) and res["cosine"][-1] > 0.9999
        assert 0.5 < res["test_accuracy_pc"] <= 1 and 0.5 < res["test_accuracy_backprop"] <= 1


def test_adam_moves_each_weight_by_its_learning_rate_under_a_constant_gradient():
    """Kingma & Ba (2015), Algorithm 1: with bias-corrected moments a constant gradient g gives
    m̂ = g and v̂ = g² at every step t, so each step moves each weight by ``lr·g/(|g| + ε)``
    (ascent), from the first step on — what makes one rate serve weights of any scale.  Without
    the corrections the first step would be 10 times too small (m) or √1000 times too large
    (v).  A moment state saved and loaded (``state``/``from_state``) continues with the same
    steps."""
    from pcbio.io import json_text
    from pcbio.learning.optim import Adam
    lr, eps = 0.01, 1e-8
    params = {"w": np.array([1.0, -2.0, 0.5]), "b": np.array([[3.0]])}
    grads = {"w": np.array([4.0, -0.5, 1e-3]), "b": np.array([[-2.0]])}
    adam = Adam(lr, eps=eps)
    for t in range(6):
        if t == 3:
            adam = Adam.from_state(json.loads(json_text(adam.state())))   # as a checkpoint
        new = adam.step(params, grads)
        for name, g in grads.items():
            np.testing.assert_allclose(new[name] - params[name], adam_step(lr, g, eps),
                                       rtol=1e-9)
        params = new


def test_training_loop_shows_each_epoch_its_documented_order_and_annealed_rates():
    """The contract of :func:`pcbio.learning.train` (its docstring), with a learner that records
    what it is shown: epoch k sees the points in the order ``default_rng([seed, k])
    .permutation(n)``, the last ``n mod batch`` dropped, in minibatches of ``batch``, with the
    seed pair ``(seed, k)`` and the rates times ``rate_decay**k`` (the first epoch at full rate);
    afterwards the learner holds its own rates again."""
    from pcbio.learning import train

    class Recorder:
        def __init__(self, model, rates):
            self.model, self.rates, self.seen = model, rates, []

        def epoch(self, batches, seed, tops=None):
            self.seen.append((batches.copy(), self.rates, seed))
            return []

        def set_model(self, model):
            self.model = model

        def describe(self):
            return {"learner": "recorder"}

    rates = LearningRates(weights=0.2, bias=0.1)
    learner = Recorder(load_model("linear_gaussian_2d"), rates)
    x = np.arange(23.0)[:, None] * np.ones((1, 3))            # row k holds k: its own label
    train(learner, x, x[:2], epochs=3, batch=5, seed=7, rate_decay=0.5,
          score=lambda model, x_test, inputs: {"score": 0.0})
    assert len(learner.seen) == 3 and learner.rates is rates
    for k, (batches, seen_rates, seed) in enumerate(learner.seen):
        assert batches.shape == (4, 5, 3) and seed == (7, k)
        np.testing.assert_array_equal(batches[..., 0].ravel(),
                                      np.random.default_rng([7, k]).permutation(23)[:20])
        assert (seen_rates.weights, seen_rates.bias) == pytest.approx((0.2 * 0.5 ** k,
                                                                       0.1 * 0.5 ** k))


def test_bundled_digits_are_scaled_to_the_unit_interval_and_patches_are_row_major(monkeypatch):
    """``digits`` is scikit-learn's 8 × 8 digits, whose pixels are counts 0–16, divided by 16:
    values in [0, 1] reaching both ends, on a grid of 1/16.  An image patch is the image's
    ``size × size`` block read row by row, at any of the positions that fit: in an image whose
    pixel (r, c) holds r·1000 + c, each of 2000 patches of 4 × 4 is its own position's block, and
    the first and last rows and columns that fit are all drawn (each is missed with probability
    below 1e-20)."""
    import pcbio.data as data
    x = load_data("digits")
    assert x.shape == (1797, 64) and (x.min(), x.max()) == (0.0, 1.0)
    np.testing.assert_array_equal(x * 16, np.round(x * 16))
    rows, cols = np.mgrid[:40, :30]
    monkeypatch.setattr(data, "natural_image", lambda name: rows * 1000.0 + cols)
    patches = data.image_patches(4, 2000, seed=1, images=("camera",))
    r, c = patches[:, 0] // 1000, patches[:, 0] % 1000
    offsets = np.arange(4)
    np.testing.assert_array_equal(patches, ((r[:, None, None] + offsets[:, None]) * 1000
                                            + c[:, None, None] + offsets).reshape(2000, 16))
    assert (r.min(), r.max(), c.min(), c.max()) == (0, 36, 0, 26)


def test_learn_scores_the_learned_model_on_its_seeded_split(tmp_path):
    """``learn`` (what ``pcbio learn`` runs) holds out ``test_fraction`` of the data by a split
    seeded with ``seed``; its summary counts both parts and scores the learned model it wrote
    on each, exactly: a linear model's held-out score is its exact ``log p(x)`` per point
    (Gaussian marginal likelihood), recomputed here from the written model file."""
    from pcbio.learning.session import learn
    model = load_model("linear_gaussian_2d")
    x = model.sample(40, seed=1)[0]
    summary = learn(model, x, tmp_path, learner="vae", epochs=2, batch=8,
                    rates=LearningRates(weights=0.05, bias=0.05), test_fraction=0.25, seed=3)
    x_train, x_test = split(x, 0.25, 3)
    assert (summary["n_train"], summary["n_test"]) == (30, 10)
    learned = GenerativeModel.load(tmp_path / "model.toml")
    for key, part in (("heldout_final", x_test), ("train_final", x_train)):
        assert summary[key]["log_likelihood"] == pytest.approx(
            float(log_evidence(learned, part).mean()), rel=1e-9)
    assert summary["heldout_final"] != summary["heldout_initial"]


def test_circuit_learner_inputs_are_checked_before_anything_runs():
    """The circuit learner refuses, in one line each and before a brian2 object exists: a
    settling time that is not a whole number of steps (the plasticity would fall between
    steps), a lateral learning rate for a model without the recurrent front end (the
    decorrelating rule has no lateral weights to act on), and inputs for the top level of a
    circuit whose top is not clamped."""
    m = load_model("linear_gaussian_2d")
    rates = LearningRates(weights=0.01)
    with pytest.raises(ValueError, match="settle=1.05 ms must be a whole number of time steps"):
        CircuitLearner(m, rates, 2, settle=1.05 * ms, dt=0.1 * ms)
    with pytest.raises(ValueError, match="a lateral learning rate needs a model with a"):
        CircuitLearner(m, LearningRates(weights=0.01, lateral=0.01), 2)
    learner = CircuitLearner(m, rates, 2, settle=5 * ms, target="numpy")
    x, _ = m.sample(4, seed=0)
    with pytest.raises(ValueError, match="tops .* go with top='clamped', and only with it"):
        learner.epoch(x.reshape(2, 2, -1), tops=np.zeros((2, 2, 2)))
    assert learner.network is None


def test_circuit_learner_compares_with_the_elbo_gradient_every_nth_update():
    """compare_every = 2: updates 0 and 2 carry the comparison with the ELBO gradient, 1 and 3
    do not; 0 turns it off."""
    m = load_model("linear_gaussian_2d")
    x, _ = m.sample(8, seed=0)
    for every, compared in ((2, [True, False, True, False]), (0, [False] * 4)):
        learner = CircuitLearner(m, LearningRates(weights=0.001), 2, settle=5 * ms,
                                 target="numpy", compare_every=every)
        records = learner.epoch(x.reshape(4, 2, -1))
        assert ["weight_cosine" in r for r in records] == compared


def test_a_backprop_step_is_the_mean_over_its_minibatch_and_leaves_the_noise():
    """Backpropagation's step uses the minibatch's mean gradient: a minibatch holding one
    (target, input) pair twice moves the weights exactly as the pair alone; it trains weights
    and biases only, so every link's noise variance stays as it was, even with a rate for it."""
    from pcbio.learning import BackpropLearner
    m = random_model(5, dims=(3, 2, 2), cov_kinds=["diag", "diag"])
    rates = LearningRates(weights=0.05, bias=0.05, cov=0.05)
    t, x = np.array([[0.5, -1.0, 0.2]]), np.array([[1.0, -0.5]])
    once = BackpropLearner(m, rates)
    once.epoch(t[None], tops=x[None])
    twice = BackpropLearner(m, rates)
    twice.epoch(np.repeat(t, 2, axis=0)[None], tops=np.repeat(x, 2, axis=0)[None])
    for a, b, orig in zip(once.model.links, twice.model.links, m.links):
        np.testing.assert_allclose(a.W, b.W, rtol=1e-12)
        np.testing.assert_allclose(a.b, b.b, rtol=1e-12)
        assert not np.allclose(a.W, orig.W)
        np.testing.assert_array_equal(a.cov.value, orig.cov.value)


def test_accuracy_is_the_fraction_of_points_whose_largest_output_is_their_label():
    """With one identity link the network's output is its input, so accuracy is the fraction
    of rows whose arg-max is the label, counted here by hand: rows 0 and 2 of 3."""
    from pcbio.learning import accuracy
    m = GenerativeModel(np.zeros(3), 1.0, [Link(np.eye(3))])
    inputs = np.array([[0.9, 0.1, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    assert accuracy(m, inputs, np.array([0, 1, 2])) == pytest.approx(2 / 3)
