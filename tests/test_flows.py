"""Flows and lateral inhibition: exact log-determinants and inverses, the circuits' steady states
against the flow, local learning that whitens, and precision learning of a full covariance."""

import numpy as np
import pytest
from brian2 import ms
from scipy import stats

from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.flows import LinearFlow, TemporalFlow, data_log_evidence
from pcbio.inference import exact_posterior, log_evidence
from pcbio.learning import CircuitLearner, LearningRates
from pcbio.learning.circuit import reference_gradient
from pcbio.mapping import map_circuit
from pcbio.model import GenerativeModel, Link


def _correlated(d=4, n=3000, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    C = A @ A.T / d + 0.2 * np.eye(d)
    return rng.multivariate_normal(np.linspace(-1, 1, d), C, size=n), C


@pytest.mark.parametrize("kind", ["cholesky", "zca"])
def test_linear_flow_is_the_gaussian_it_was_fitted_to(kind):
    """A whitening flow fitted to data x is the maximum-likelihood Gaussian N(m, C): y has
    identity covariance on the data, log|det A| = −½ log det C, log p(x) with a standard normal
    y equals log N(x; m, C) (scipy), and generate inverts normalize. Cholesky: A is lower
    triangular (each input predicted from the ones before it); ZCA: A is symmetric."""
    x, _ = _correlated()
    flow = LinearFlow.fit(x, kind)
    C = np.cov(x, rowvar=False, bias=True)
    y = flow.normalize(x)
    assert np.allclose(np.cov(y, rowvar=False, bias=True), np.eye(4), atol=1e-10)
    assert flow.logdet == pytest.approx(-0.5 * np.linalg.slogdet(C)[1], rel=1e-12)
    want = stats.multivariate_normal(x.mean(axis=0), C).logpdf(x[:10])
    assert np.allclose(flow.log_prob(x[:10]), want, rtol=1e-10)
    assert np.allclose(flow.generate(y[:10]), x[:10], atol=1e-12)
    A = flow.matrix
    assert np.allclose(A, np.tril(A)) if kind == "cholesky" else np.allclose(A, A.T)
    P, beta = flow.autoregressive()
    if kind == "cholesky":
        assert np.allclose(P, np.tril(P, -1))          # predictions only from earlier inputs
    assert np.allclose((x[:5] - flow.mean - (x[:5] - flow.mean) @ P.T) / beta, y[:5])


def test_noise_shrinks_the_whitening_gain():
    """Whitening C + σ_n² I instead of C: the largest gain (1/√λ_min) falls as the noise
    variance rises, so noise is not amplified (Atick & Redlich 1992)."""
    x, _ = _correlated()
    gains = [np.abs(np.linalg.eigvalsh(LinearFlow.fit(x, "zca", noise).matrix)).max()
             for noise in (0.0, 0.1, 1.0)]
    assert gains[0] > gains[1] > gains[2]


def test_flows_refuse_what_they_cannot_invert_or_fit():
    """A flow must be invertible (its log-determinant and inverse exist); a fit needs a
    covariance that is not singular (collinear inputs need a noise variance, and with one they
    fit); a temporal flow of order p on d values fits 1 + dp coefficients per value, so it needs
    more than p + dp frames; a [flow] table has only kind, mean and matrix.  Each is a one-line
    error."""
    with pytest.raises(ValueError, match="flow.matrix must be invertible"):
        LinearFlow(np.zeros(2), [[1.0, 2.0], [2.0, 4.0]])
    x = np.random.default_rng(0).normal(size=(50, 1)) * [1.0, -2.0]      # collinear
    with pytest.raises(ValueError, match="covariance is singular.*noise variance > 0"):
        LinearFlow.fit(x)
    assert np.isfinite(LinearFlow.fit(x, noise=0.1).logdet)
    frames = np.random.default_rng(1).normal(size=(3, 2))               # p + dp = 3
    with pytest.raises(ValueError, match="3 frames are too few to fit an order-1 prediction"):
        TemporalFlow.fit(frames, order=1)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['scale'\]"):
        LinearFlow.from_spec({"mean": [0.0], "matrix": [[1.0]], "scale": 2})


def test_temporal_flow_noise_is_added_to_the_residual_covariance():
    """``TemporalFlow.fit(noise=σ²)`` whitens the residual covariance plus σ² on its diagonal:
    ``A⁻¹A⁻ᵀ`` of the residual flow grows by exactly 0.5 I when σ² = 0.5."""
    frames = np.cumsum(np.random.default_rng(2).normal(size=(200, 2)), axis=0)
    covs = [np.linalg.inv(f.residual.matrix) @ np.linalg.inv(f.residual.matrix).T
            for f in (TemporalFlow.fit(frames), TemporalFlow.fit(frames, noise=0.5))]
    np.testing.assert_allclose(covs[1] - covs[0], 0.5 * np.eye(2), atol=1e-10)


def test_temporal_flow_of_an_ar1_sequence_is_its_exact_likelihood():
    """For an AR(1) sequence x_t = a x_{t−1} + √(1 − a²) ξ_t the temporal flow with the true
    coefficients gives log p(x_1 … x_T | x_0) = log N(x_{0…T}; 0, Σ_ij = a^|i−j|) − log N(x_0; 0, 1)
    (the stationary Gaussian sequence, closed form); fitted to a long sequence it recovers a and
    a unit innovation variance."""
    a, T = 0.8, 30
    rng = np.random.default_rng(2)
    x = np.zeros((T + 1, 1))
    x[0] = rng.normal()
    for t in range(1, T + 1):
        x[t] = a * x[t - 1] + np.sqrt(1 - a * a) * rng.normal()
    flow = TemporalFlow(np.zeros(1), np.array([[[a]]]), np.array([[1 - a * a]]))
    idx = np.arange(T + 1)
    sigma = a ** np.abs(idx[:, None] - idx[None, :])
    want = stats.multivariate_normal(np.zeros(T + 1), sigma).logpdf(x[:, 0]) - stats.norm.logpdf(x[0, 0])
    assert flow.log_prob(x) == pytest.approx(want, rel=1e-10)
    long = np.zeros((20000, 1))
    for t in range(1, len(long)):
        long[t] = a * long[t - 1] + np.sqrt(1 - a * a) * rng.normal()
    fitted = TemporalFlow.fit(long, order=1)
    assert fitted.coefficients[0, 0, 0] == pytest.approx(a, abs=0.02)
    assert np.var(fitted.normalize(long)) == pytest.approx(1.0, abs=0.01)


def test_temporal_flow_fits_a_two_dimensional_var1_and_whitens_its_residuals_exactly():
    """``x_t = c + B x_{t−1} + ξ_t`` with a non-symmetric B (2-D): least squares on a long
    sequence recovers c and B (row i of B predicts x_i; standard errors ≈ 0.01), and on the
    sequence it was fitted to the flow's y has zero mean and identity second moment to round-off
    — the least-squares residuals, with an intercept, have zero mean, and their maximum-likelihood
    covariance ``Σ r rᵀ / N`` is what the Cholesky factor whitens."""
    c, B = np.array([0.5, -1.0]), np.array([[0.6, 0.3], [-0.2, 0.1]])
    rng = np.random.default_rng(5)
    x = np.zeros((20000, 2))
    for t in range(1, len(x)):
        x[t] = c + B @ x[t - 1] + rng.normal(size=2) * [1.0, 0.5]
    fitted = TemporalFlow.fit(x, order=1)
    np.testing.assert_allclose(fitted.coefficients[0], B, atol=0.03)
    np.testing.assert_allclose(fitted.intercept, c, atol=0.05)
    short = TemporalFlow.fit(x[:200], order=1)
    y = short.normalize(x[:200])
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.T @ y / len(y), np.eye(2), atol=1e-12)


def test_held_out_elbo_of_a_nonlinear_model_behind_a_flow_is_in_data_space():
    """Change of variables: behind a flow y = A(x − m), a density on y is one on x times
    |det A|, so the held-out score of a nonlinear model (its Laplace ELBO, a bound on log p) in
    data space is the score of the same model without the flow on y, plus log|det A| (computed
    here from A itself); the same seed draws the same samples, so the two agree to round-off."""
    from pcbio.learning import heldout_score
    model = load_model("tanh_2level")
    x = model.sample(50, seed=4)[0]
    flow = LinearFlow.fit(3 * x, "cholesky", 0.1)          # any invertible A: |det A| ≠ 1
    behind = model.replaced(flow=flow)
    logdet = np.linalg.slogdet(flow.matrix)[1]
    assert abs(logdet) > 1
    want = heldout_score(model, flow.normalize(x[:10]), seed=3)["elbo"] + logdet
    assert heldout_score(behind, x[:10], seed=3)["elbo"] == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("lateral", ["recurrent", "feedforward"])
@pytest.mark.parametrize("kind", ["cholesky", "zca"])
def test_lateral_circuit_steady_state_is_the_flow(kind, lateral):
    """The brian2 lateral-inhibition front end — recurrent (steady state (I + M)⁻¹ (x − m)) or
    feed-forward subtractive prediction with divisive shunting — settles to the flow's
    normalized data to round-off, its weights imply the flow's log-determinant, and the
    predictive-coding hierarchy behind it then follows the gradient flow on y exactly (its
    error units are ε of the lateral units' output at every step)."""
    x, _ = _correlated()
    model = load_model("linear_gaussian_3level").replaced(flow=LinearFlow.fit(x, kind, 0.05))
    report = map_circuit(model, x[:3], "rate", target="numpy", lateral=lateral,
                         duration=100 * ms)
    fe = report["front_end"]
    assert fe["output_rel_err"] < 1e-10
    assert fe["logdet_circuit"] == pytest.approx(fe["logdet_flow"], rel=1e-10)
    assert max(lv["grad_rel_err_max"] for lv in report["levels"]) < 1e-8
    # error units against ε of what they saw: the lateral units' output, settling from 0
    assert max(lv["error_units_rel_err_max"] for lv in report["levels"]
               + [report["data_level"]]) < 1e-8
    assert "step_equivalence" in report["skipped_checks"]


def test_model_files_declare_a_flow_and_scores_are_in_data_space(tmp_path):
    """A model file's [flow] table is read back exactly; log p(x) in data space is the model's
    evidence of y plus log|det A| — for a linear model behind a linear flow, the evidence of the
    Gaussian x = A⁻¹ y + m (closed form)."""
    from pcbio.model_file import model_text
    x, _ = _correlated(d=3)
    base = load_model("linear_gaussian_2d")
    model = base.replaced(flow=LinearFlow.fit(x, "cholesky", 0.1))
    path = tmp_path / "flow.toml"
    path.write_text(model_text(model))
    back = load_model(str(path))
    assert np.array_equal(back.flow.matrix, model.flow.matrix)
    assert back.flow.kind == "cholesky"
    from pcbio.inference.exact import marginal_moments
    m, C = marginal_moments(model)
    Ainv = model.flow.inverse
    want = stats.multivariate_normal(Ainv @ m + model.flow.mean, Ainv @ C @ Ainv.T).logpdf(x[:5])
    assert np.allclose(data_log_evidence(back, x[:5]), want, rtol=1e-10)
    assert not np.allclose(log_evidence(back, x[:5]), want)


def test_circuits_refuse_a_front_end_that_does_not_match_the_model():
    """lateral='recurrent' without a [flow], lateral='none' with one, and a spiking or
    dendritic circuit (neither has a front end) for a model with a flow are one-line errors."""
    x, _ = _correlated(d=3)
    plain = load_model("linear_gaussian_2d")
    with pytest.raises(ValueError, match="needs a model with a \\[flow\\]"):
        build_circuit(plain, "rate", lateral="recurrent")
    flowed = plain.replaced(flow=LinearFlow.fit(x, "zca"))
    with pytest.raises(ValueError, match="lateral='none' needs a model without"):
        build_circuit(flowed, "rate", lateral="none")
    with pytest.raises(ValueError, match="no lateral-inhibition front end"):
        build_circuit(flowed, "spiking")
    with pytest.raises(ValueError, match="the dendritic circuit has no lateral front end"):
        build_circuit(flowed, "dendritic")


def _flow_only_model(d, cov=1.0, mean=None):
    """A model whose hierarchy does nothing (one latent with zero weights) behind a flow of
    dimension d starting at the identity."""
    return GenerativeModel(np.zeros(1), 1.0, [Link(np.zeros((d, 1)), mean, "identity", cov)],
                           flow=LinearFlow(np.zeros(d), np.eye(d)))


def test_decorrelating_rule_whitens_a_correlated_input():
    """The anti-Hebbian rule ΔM ∝ y yᵀ − I on the recurrent lateral weights, using only the
    lateral units' activity, drives the output covariance to I (Földiák 1990): on held-out
    samples ‖Cov(y) − I‖_F / ‖I‖_F < 0.12 (the sampling error of 1000 held-out points alone is
    ≈ 0.07), and I + M reaches the symmetric square root C^{1/2} (ZCA) within 8 %."""
    x, C = _correlated(n=4000)
    learner = CircuitLearner(_flow_only_model(4), LearningRates(lateral=0.05), batch=50,
                             settle=20 * ms, dt=0.1 * ms, compare_every=0, target="numpy")
    for epoch, rate in enumerate((0.05, 0.02, 0.01)):
        learner.rates = LearningRates(lateral=rate)
        learner.epoch(x[:3000].reshape(60, 50, 4), seed=(0, epoch))
    flow = learner.model.flow
    y = flow.normalize(x[3000:])
    assert np.linalg.norm(np.cov(y, rowvar=False) - np.eye(4)) / 2 < 0.12
    lam, vec = np.linalg.eigh(C)
    root = (vec * np.sqrt(lam)) @ vec.T
    assert np.linalg.norm(np.eye(4) + flow.recurrent() - root) / np.linalg.norm(root) < 0.08


def test_precision_interneurons_learn_a_full_covariance():
    """Bogacz (2017) §5 generalised to a covariance: error units with precision interneurons
    learning Σ by ΔΣ ∝ ε eᵀ − I from a stream of correlated Gaussian inputs reach the rule's
    fixed point, the stream's residual covariance E[r rᵀ] around the prediction, within 4 %
    (Frobenius; what remains is the rule's own fluctuation at this rate), and the covariance
    the stream was drawn from within 6 % (the sampling error of 2000 draws is ≈ 4 %)."""
    rng = np.random.default_rng(1)
    C = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 1.5]])
    mean = np.array([1.0, -1.0, 0.5])
    x = rng.multivariate_normal(mean, C, size=2000)
    model = GenerativeModel(np.zeros(1), 1.0, [Link(np.zeros((3, 1)), mean, "identity",
                                                    np.eye(3))])
    learner = CircuitLearner(model, LearningRates(cov=0.05), batch=20, settle=40 * ms,
                             dt=0.2 * ms, tau=2 * ms, errors="dynamic", precision="interneuron",
                             compare_every=0, target="numpy")
    for epoch in range(2):
        learner.epoch(x.reshape(100, 20, 3), seed=(0, epoch))
    learned = learner.model.links[0].cov.matrix
    residual = (x - mean).T @ (x - mean) / len(x)
    assert np.linalg.norm(learned - residual) / np.linalg.norm(residual) < 0.04
    assert np.linalg.norm(learned - C) / np.linalg.norm(C) < 0.06


def test_infer_reports_data_space_scores_for_a_model_with_a_flow(tmp_path, capsys):
    """`pcbio infer` on a model file with a [flow]: the VAE side works on y, the rate circuit
    computes y with its lateral front end, both reach the same posterior mean, and `log_px` is
    the data-space evidence (log-det included)."""
    import json
    from pcbio.cli import main
    from pcbio.model_file import model_text
    x, _ = _correlated(d=3)
    model = load_model("linear_gaussian_2d").replaced(flow=LinearFlow.fit(x, "zca", 0.1))
    path = tmp_path / "m.toml"
    path.write_text(model_text(model))
    results = {}
    for method in ("exact", "rate"):
        assert main(["infer", str(path), "--x", "1,-2,0.5", "--method", method, "--json",
                     "--quiet", "--target", "numpy"] if method == "rate" else
                    ["infer", str(path), "--x", "1,-2,0.5", "--method", method, "--json"]) == 0
        results[method] = json.loads(capsys.readouterr().out)
    assert np.allclose(results["rate"]["means"], results["exact"]["means"], atol=1e-8)
    want = data_log_evidence(model, np.array([[1.0, -2.0, 0.5]]))[0]
    assert results["exact"]["log_px"] == pytest.approx(want, rel=1e-12)
    assert results["exact"]["elbo"] == pytest.approx(want, rel=1e-10)


@pytest.mark.slow
def test_lateral_inhibition_experiment_writes_what_the_issue_asks(tmp_path):
    """`pcbio run lateral_inhibition --quick`: figure and JSON with center_weight,
    neighbor_weight, cov_deviation, loglik_gain_nats and surround_vs_noise; the learned filter is
    centre–surround (positive centre, negative nearest neighbours), the surround weakens as the
    noise rises, and the temporal flow's residual holds no background."""
    import json
    from pcbio.experiment import run_experiment
    run_experiment("lateral_inhibition", tmp_path, quick=True, seed=0)
    res = json.loads((tmp_path / "lateral_inhibition.json").read_text())["results"]
    assert res["center_weight"] > 0 > res["neighbor_weight"]
    surround = [s["surround"] for s in res["surround_vs_noise"]]
    assert surround == sorted(surround)                  # negative, rising towards 0
    assert res["loglik_gain_nats"] > 0 and 0 < res["cov_deviation"] < 1
    assert abs(res["temporal_background_coefficient_after"]) < 1e-6


def test_surround_against_noise_on_a_dask_cluster_equals_the_serial_sweep():
    """The lateral-inhibition experiment's surround-against-noise points, sent to a 2-worker
    local Dask cluster, give exactly the serial numbers (each point is a deterministic fit), and
    the surround weakens as the noise rises (Srinivasan, Laughlin & Dubs 1982)."""
    from pcbio.data import image_patches
    from pcbio.experiment import load_experiment
    from pcbio.sweep import Pool
    experiment = load_experiment("lateral_inhibition")
    patches = image_patches(8, 300, seed=0)
    levels = [0.0, 0.1, 1.0]
    serial = experiment.surround_against_noise(patches, levels, Pool())
    with Pool(workers=2) as pool:
        parallel = experiment.surround_against_noise(patches, levels, pool)
    assert parallel == serial
    surround = [s["surround"] for s in serial]
    assert surround == sorted(surround) and surround[0] < 0


def test_learning_behind_a_flow_works_on_y_and_scores_in_data_space():
    """A model with a flow learns on y on either side: the deterministic circuit (which computes
    y with its lateral units, settling in a few τ_lateral) and the VAE side's gradient inference
    on y, both run to equilibrium before each update, reach the same model (to 1e-6), and the
    held-out score is the data-space log p(x) (log-det included).  The circuit's update is
    compared with ∇_W ELBO on y too: at the fixed point its local rule misses that gradient by
    exactly N Π W S (test_learning.py), so the first update's relative gap is ‖N Π W S‖/‖∇_W‖
    with the exact posterior N(μ, S) of the first minibatch's y."""
    from pcbio.learning import VaeLearner, heldout_score
    x, _ = _correlated(d=3, n=400)
    model = load_model("linear_gaussian_2d").replaced(flow=LinearFlow.fit(x, "zca", 0.1))
    rates = LearningRates(weights=0.05, bias=0.05)
    batches = x[:40].reshape(4, 10, 3)
    circuit = CircuitLearner(model, rates, batch=10, settle=300 * ms, dt=0.5 * ms,
                             target="numpy", compare_every=1)
    records = circuit.epoch(batches)
    vae = VaeLearner(model, rates, inference="gradient", steps=600, step_size=0.05)
    vae.epoch(batches)
    assert np.allclose(circuit.model.links[0].W, vae.model.links[0].W, rtol=1e-6, atol=1e-8)
    y = model.flow.normalize(batches[0])
    link, S = model.links[0], exact_posterior(model, y).cov
    reference = reference_gradient(model, y, None).links[0].weights
    gap = np.linalg.norm(len(y) * link.cov.precision @ link.W @ S) / np.linalg.norm(reference)
    assert records[0]["weight_relative_gap"][0] == pytest.approx(gap, rel=1e-4)
    score = heldout_score(circuit.model, x[200:])["log_likelihood"]
    assert score == pytest.approx(data_log_evidence(circuit.model, x[200:]).mean(), rel=1e-12)
