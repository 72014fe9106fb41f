"""The VAE side: exact posterior, ELBO, ELBO gradients, optimal q, MAP, iterative inference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from conftest import (bogacz_curvature, bogacz_posterior_mode, central_difference,
                      random_model)
from pcbio import load_model
from pcbio.inference import (GaussianPosterior, elbo, elbo_gradient, exact_posterior,
                             gradient_inference, log_evidence, map_estimate,
                             optimal_diagonal_log_var, optimal_posterior)


def joint_gaussian(model):
    """Mean and covariance of the stacked vector [x, z_1, …, z_L] of a linear model, built by
    writing every level as an affine map of the independent noises (no pcbio inference code)."""
    dims = model.dims
    L = len(dims) - 1
    n_noise = sum(dims)
    offs = np.concatenate([[0], np.cumsum(dims)])
    maps, means = [None] * (L + 1), [None] * (L + 1)
    maps[L] = np.zeros((dims[L], n_noise))
    maps[L][:, offs[L]:offs[L + 1]] = model.top_cov.chol
    means[L] = model.top_mean
    for l in range(L - 1, -1, -1):
        link = model.links[l]
        maps[l] = link.W @ maps[l + 1]
        maps[l][:, offs[l]:offs[l + 1]] += link.cov.chol
        means[l] = link.W @ means[l + 1] + link.b
    M = np.concatenate(maps)
    return np.concatenate(means), M @ M.T


def gaussian_kl(m1, S1, m2, S2):
    """KL(N(m1, S1) ‖ N(m2, S2)) in closed form."""
    S2inv = np.linalg.inv(S2)
    d = m2 - m1
    return 0.5 * (np.trace(S2inv @ S1) + d @ S2inv @ d - len(m1)
                  + np.linalg.slogdet(S2)[1] - np.linalg.slogdet(S1)[1])


LINEAR_CASES = [dict(dims=(3, 2), cov_kinds=["diag"]),
                dict(dims=(4, 3, 2), cov_kinds=["full", "scalar"]),
                dict(dims=(3, 2, 2, 1), cov_kinds=["diag", "full", "diag"])]


@pytest.mark.parametrize("case", LINEAR_CASES)
def test_exact_posterior_equals_gaussian_conditioning(case):
    """For a linear model the posterior p(z|x) is the Gaussian conditional of the joint
    N([x; z]) — computed here by textbook conditioning of the joint built from the noises."""
    m = random_model(11, **case)
    x, _ = m.sample(3, seed=5)
    mean, C = joint_gaussian(m)
    d0 = m.dims[0]
    gain = C[d0:, :d0] @ np.linalg.inv(C[:d0, :d0])
    q = exact_posterior(m, x)
    np.testing.assert_allclose(q.flat_mean(), mean[d0:] + (x - mean[:d0]) @ gain.T, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(q.cov, C[d0:, d0:] - gain @ C[:d0, d0:], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(log_evidence(m, x),
                               stats.multivariate_normal(mean[:d0], C[:d0, :d0]).logpdf(x), rtol=1e-12)


@pytest.mark.parametrize("case", LINEAR_CASES)
def test_elbo_at_exact_posterior_is_log_evidence(case):
    """log p(x) = L(q) + KL(q ‖ p(z|x)), so L = log p(x) at q = exact posterior."""
    m = random_model(12, **case)
    x, _ = m.sample(4, seed=6)
    np.testing.assert_allclose(elbo(m, x, exact_posterior(m, x)).value, log_evidence(m, x), rtol=1e-10)


def test_linear_elbo_equals_the_written_out_closed_form():
    """For a linear model, E_q[log N(r_l; 0, Σ_l)] = −½ (d log 2π + log|Σ_l| + r̄ᵀ Π r̄ +
    tr(Π Cov_q(r))) with r_l = z_l − W_l z_{l+1} − b_l — written out here by hand for a 3-level
    model and a full-covariance q, against pcbio's sigma-point evaluation."""
    m = random_model(15, dims=(3, 2, 2), cov_kinds=["full", "diag"])
    x, _ = m.sample(1, seed=2)
    rng = np.random.default_rng(4)
    C = np.tril(rng.normal(size=(4, 4)) * 0.4) + np.eye(4)
    S = C @ C.T
    mu = rng.normal(size=4)
    W0, W1 = m.links[0].W, m.links[1].W
    # residuals as affine maps of the stacked latents Z = [z_1; z_2]: r = B Z + c
    maps = [(np.hstack([-W0, np.zeros((3, 2))]), x[0] - m.links[0].b, m.links[0].cov.matrix),
            (np.hstack([np.eye(2), -W1]), -m.links[1].b, m.links[1].cov.matrix),
            (np.hstack([np.zeros((2, 2)), np.eye(2)]), -m.top_mean, m.top_cov.matrix)]
    want = 0.5 * (np.linalg.slogdet(S)[1] + 4 * (1 + np.log(2 * np.pi)))
    for B, c, Sigma in maps:
        P = np.linalg.inv(Sigma)
        r = B @ mu + c
        want -= 0.5 * (len(c) * np.log(2 * np.pi) + np.linalg.slogdet(Sigma)[1] + r @ P @ r
                       + np.trace(P @ B @ S @ B.T))
    q = GaussianPosterior([mu[None, :2], mu[None, 2:]], cov=S)
    assert elbo(m, x, q).value[0] == pytest.approx(want, rel=1e-12)


def test_evidence_gap_is_the_kl_divergence():
    """For an arbitrary diagonal q: log p(x) − L(q) = KL(q ‖ p(z|x)) (closed-form Gaussian KL)."""
    m = random_model(13, dims=(4, 3, 2), cov_kinds=["full", "diag"])
    x, _ = m.sample(2, seed=1)
    rng = np.random.default_rng(0)
    q = GaussianPosterior([rng.normal(size=(2, 3)), rng.normal(size=(2, 2))],
                          log_var=[rng.normal(size=(2, 3)), rng.normal(size=(2, 2))])
    post = exact_posterior(m, x)
    gap = log_evidence(m, x) - elbo(m, x, q).value
    for b in range(2):
        kl = gaussian_kl(q.flat_mean()[b], np.diag(q.std()[b] ** 2), post.flat_mean()[b], post.cov)
        assert gap[b] == pytest.approx(kl, rel=1e-9)
        assert gap[b] > 0


def test_monte_carlo_elbo_agrees_with_exact_within_its_standard_error():
    """The reparameterised MC estimate is unbiased: within 4 standard errors of the exact value;
    and seeded: same seed, same number."""
    m = random_model(14, dims=(3, 2, 2))
    x, _ = m.sample(3, seed=2)
    q = GaussianPosterior(m.prior_means(3), log_var=[np.zeros((3, 2))] * 2)
    exact = elbo(m, x, q, method="exact").value
    mc = elbo(m, x, q, method="mc", n_samples=4000, seed=3)
    assert np.all(np.abs(mc.value - exact) < 4 * mc.stderr)
    assert np.array_equal(mc.value, elbo(m, x, q, method="mc", n_samples=4000, seed=3).value)


def _fd_check(m, x, q, method, seed=0):
    """Compare every analytic ELBO gradient with central differences of the ELBO itself
    (same noise seed for MC, so the estimator is a deterministic function)."""
    g = elbo_gradient(m, x, q, method=method, n_samples=64, seed=seed)

    def value(model=m, q_=q):
        return elbo(model, x, q_, method=method, n_samples=64, seed=seed).value.sum()

    for l in range(len(q.means)):
        def of_mean(v, l=l):
            means = list(q.means)
            means[l] = v
            return value(q_=GaussianPosterior(means, log_var=q.log_var))

        def of_logvar(v, l=l):
            lv = list(q.log_var)
            lv[l] = v
            return value(q_=GaussianPosterior(q.means, log_var=lv))
        np.testing.assert_allclose(g.means[l], central_difference(of_mean, q.means[l]), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(g.log_var[l], central_difference(of_logvar, q.log_var[l]), rtol=1e-5, atol=1e-6)

    for l, link in enumerate(m.links):
        links = list(m.links)
        for field, arr in [("weights", link.W), ("bias", link.b), ("hidden_weights", link.A),
                           ("hidden_bias", link.a)]:
            if arr is None:
                continue

            def of_param(v, l=l, field=field):
                new = list(links)
                new[l] = link.replaced(**{field: v})
                return value(model=m.replaced(links=new))
            np.testing.assert_allclose(getattr(g.params.links[l], field), central_difference(of_param, arr),
                                       rtol=1e-5, atol=1e-6, err_msg=f"link {l} {field}")
        cov = link.cov

        def of_cov(v, l=l):
            new = list(links)
            # a full Σ stays symmetric: a step h in Σ_ij moves Σ_ij and Σ_ji by h/2 each
            new[l] = link.replaced(cov=0.5 * (v + v.T) if v.ndim == 2 else v)
            return value(model=m.replaced(links=new))
        fd = central_difference(of_cov, cov.value)
        np.testing.assert_allclose(g.params.links[l].cov, fd, rtol=1e-5, atol=1e-6, err_msg=f"link {l} cov")
    np.testing.assert_allclose(g.params.top_mean,
                               central_difference(lambda v: value(model=m.replaced(top_mean=v)), m.top_mean),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g.params.top_cov,
                               central_difference(lambda v: value(model=m.replaced(
                                   top_cov=0.5 * (v + v.T) if v.ndim == 2 else v)),
                                                  m.top_cov.value), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", [
    dict(dims=(3, 2), cov_kinds=["full"], method="exact"),
    dict(dims=(3, 3, 2), cov_kinds=["scalar", "diag"], method="exact", top_kind="diag"),
    dict(dims=(3, 2, 2), fs=["tanh", "sigmoid"], cov_kinds=["diag", "full"], method="mc"),
    dict(dims=(2, 2), fs=["softplus"], hidden=[3], cov_kinds=["full"], method="mc", top_kind="scalar"),
    dict(dims=(2, 1), fs=["square"], method="mc", cov_kinds=["scalar"]),
])
def test_elbo_gradients_match_finite_differences(case):
    """Analytic ∇ of the ELBO w.r.t. means, log-variances, weights, biases, hidden (MLP) weights,
    noise (co)variances and the prior's parameters equal central finite differences."""
    method = case.pop("method")
    m = random_model(21, **case)
    x, _ = m.sample(2, seed=4)
    rng = np.random.default_rng(1)
    q = GaussianPosterior([rng.normal(size=(2, d)) * 0.5 for d in m.latent_dims],
                          log_var=[rng.normal(size=(2, d)) * 0.3 - 1 for d in m.latent_dims])
    _fd_check(m, x, q, method)


def test_full_covariance_cholesky_gradient_matches_finite_differences():
    """∂L/∂C for q = N(μ, CCᵀ) (lower-triangular C) equals central differences."""
    m = random_model(22, dims=(3, 2, 1), cov_kinds=["full", "diag"])
    x, _ = m.sample(1, seed=0)
    rng = np.random.default_rng(2)
    C = np.tril(rng.normal(size=(3, 3)) * 0.3) + np.eye(3)
    mean = [rng.normal(size=(1, 2)), rng.normal(size=(1, 1))]
    g = elbo_gradient(m, x, GaussianPosterior(mean, cov=C @ C.T), method="exact")

    def of_chol(c):
        c = np.tril(c)
        return elbo(m, x, GaussianPosterior(mean, cov=c @ c.T)).value.sum()
    np.testing.assert_allclose(g.chol[0], np.tril(central_difference(of_chol, C)), rtol=1e-6, atol=1e-7)


def test_linear_mean_gradient_is_pc_update_for_any_variance():
    """Linear-Gaussian: ∇_μ L = Jᵀ ε_x − ε_z at z = μ exactly, whatever the posterior variance
    (docs/mathematics.md §4) — here with variances from 1e-4 to 1e2."""
    m = random_model(23, dims=(4, 3, 2), cov_kinds=["full", "diag"])
    x, _ = m.sample(3, seed=1)
    means = m.prior_means(3)
    pc = m.grad_log_joint(x, means)
    for log_var in [-9.0, 0.0, 4.6]:
        g = elbo_gradient(m, x, GaussianPosterior(means, log_var=[np.full((3, d), log_var)
                                                                  for d in m.latent_dims]))
        for gl, pl in zip(g.means, pc):
            np.testing.assert_allclose(gl, pl, rtol=1e-9, atol=1e-10)


def test_nonlinear_mean_gradient_departs_from_pc_update_at_large_variance():
    """tanh link: ∇_μ L = E_q[∇ log p] equals the PC update ∇ log p(μ) only as s → 0.  At
    s = 0.001 they agree to O(s²); at s = 1.5 they differ by far more than the MC error."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8]])
    mean = [np.array([[0.4, 0.6]])]
    pc = m.grad_log_joint(x, mean)[0]
    small = elbo_gradient(m, x, GaussianPosterior(mean, log_var=[np.full((1, 2), np.log(1e-6))]),
                          n_samples=2000, seed=0, parameters=False).means[0]
    np.testing.assert_allclose(small, pc, rtol=1e-4, atol=1e-4)
    grads = [elbo_gradient(m, x, GaussianPosterior(mean, log_var=[np.full((1, 2), np.log(2.25))]),
                           n_samples=2000, seed=s, parameters=False).means[0] for s in range(5)]
    spread = np.std(grads, axis=0).max()
    assert np.abs(np.mean(grads, axis=0) - pc).max() > 20 * spread


def test_optimal_diagonal_variance_for_linear_model():
    """For linear models the ELBO-optimal diagonal variance is s² = 1/diag(H) (docs/mathematics.md §4):
    its log-variance gradient vanishes there, and the generic optimiser finds the same q."""
    m = random_model(24, dims=(3, 3, 2), cov_kinds=["full", "diag"])
    x, _ = m.sample(2, seed=3)
    post = exact_posterior(m, x)
    lv = optimal_diagonal_log_var(m, x)
    g = elbo_gradient(m, x, GaussianPosterior(post.means, log_var=lv), parameters=False)
    for gl in g.log_var + g.means:
        np.testing.assert_allclose(gl, 0, atol=1e-10)
    q, _ = optimal_posterior(m, x)
    np.testing.assert_allclose(np.concatenate(q.log_var, -1), np.concatenate(lv, -1), atol=1e-5)
    np.testing.assert_allclose(q.flat_mean(), post.flat_mean(), atol=1e-6)


def test_bogacz_example_gradient_method_finds_posterior_mode():
    """Bogacz (2017) Exercise 2: gradient ascent on log p(u, v) from the prior mean v_p = 3
    converges to the posterior mode (≈ 1.6 in the paper's Fig. 2) of the exactly normalised
    posterior density."""
    m = load_model("bogacz2017")
    mode = bogacz_posterior_mode()
    assert 1.5 < mode < 1.7
    traj = gradient_inference(m, [[2.0]], steps=5000, step_size=0.01)
    assert traj.final_means()[0][0, 0] == pytest.approx(mode, abs=1e-6)
    z, _ = map_estimate(m, [[2.0]])
    assert z[0][0, 0] == pytest.approx(mode, abs=1e-6)


def test_gradient_inference_steps_are_euler_steps_of_pc_dynamics():
    """Each step is μ ← μ + α (Jᵀε_below − ε_own) (docs/mathematics.md §5); for a linear model
    the iterates converge to the exact posterior mean and the log joint increases monotonically for small α."""
    m = random_model(25, dims=(4, 3, 2), cov_kinds=["full", "diag"])
    x, _ = m.sample(2, seed=7)
    traj = gradient_inference(m, x, steps=3000, step_size=0.05)
    z0, z1 = traj.at(0), traj.at(1)
    eps = m.errors(x, z0)
    step = [-eps[1] + eps[0] @ m.links[0].W, -eps[2] + eps[1] @ m.links[1].W]
    for a, b, s in zip(z1, z0, step):
        np.testing.assert_allclose(a, b + 0.05 * s, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(traj.final_means(), -1),
                               exact_posterior(m, x).flat_mean(), rtol=1e-8)
    assert np.all(np.diff(traj.scores["log_joint"], axis=0) > -1e-12)


def test_recording_every_k_steps_keeps_the_same_iterates():
    """record_every only thins what is stored: the iterates at steps 0, k, 2k, … and the last
    step are those of the fully recorded run."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8]])
    full = gradient_inference(m, x, steps=50, step_size=0.02)
    thin = gradient_inference(m, x, steps=50, step_size=0.02, record_every=7)
    kept = list(range(0, 51, 7)) + [50]
    np.testing.assert_array_equal(thin.t, kept)
    np.testing.assert_array_equal(thin.means[0], full.means[0][kept])
    np.testing.assert_array_equal(thin.final_means()[0], full.final_means()[0])


def test_variance_learning_reaches_optimal_elbo():
    """Ascending the ELBO in means and log-variances of a diagonal q converges to the optimum
    s² = 1/diag(H), μ = exact posterior mean, for a linear model."""
    m = random_model(26, dims=(3, 2), cov_kinds=["diag"])
    x, _ = m.sample(1, seed=0)
    traj = gradient_inference(m, x, steps=3000, step_size=0.05, log_var=0.0, learn_variance=True)
    np.testing.assert_allclose(traj.log_var[0][-1], optimal_diagonal_log_var(m, x)[0], atol=1e-6)
    np.testing.assert_allclose(traj.final_means()[0], exact_posterior(m, x).means[0], atol=1e-8)
    assert np.all(np.diff(traj.scores["elbo"][:, 0]) > -1e-12)


def test_an_inference_trajectory_survives_its_file(tmp_path):
    """Trajectory.save then load gives back a run of iterative inference unchanged: its means,
    errors, log-variances (learned here, so part of the state), scores (log joint and ELBO) and
    run information.  The circuit kinds' round trip is in test_circuit_contract.py; their
    trajectories carry no log-variances or scores, so this is where those are checked."""
    from pcbio.trajectory import Trajectory
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8], [0.2, -0.4, 0.3]])
    traj = gradient_inference(m, x, steps=20, step_size=0.02, log_var=-1.0, learn_variance=True)
    traj.save(tmp_path / "run.npz")
    back = Trajectory.load(tmp_path / "run.npz")
    assert back.info == traj.info and back.time_unit == "step"
    for name in ("means", "errors", "log_var"):
        for ours, theirs in zip(getattr(traj, name), getattr(back, name), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    assert traj.scores.keys() == back.scores.keys() == {"log_joint", "elbo"}
    for key in traj.scores:
        np.testing.assert_array_equal(traj.scores[key], back.scores[key])


def test_one_step_moves_means_and_log_variances_at_their_own_step_sizes():
    """One step of gradient_inference with learned variances is μ ← μ + α ∂L/∂μ and
    log s² ← log s² + α_s ∂L/∂log s², the gradients of the exact ELBO (a linear model) at the
    start, computed here by elbo_gradient; the run records the ELBO method it used ("point"
    when q has no variances)."""
    m = random_model(27, dims=(3, 2, 2), cov_kinds=["diag", "diag"])
    x, _ = m.sample(2, seed=1)
    z0 = [np.full((2, d), 0.2) for d in m.latent_dims]
    lv0 = [np.full((2, d), -0.5) for d in m.latent_dims]
    g = elbo_gradient(m, x, GaussianPosterior(z0, log_var=lv0), method="exact")
    traj = gradient_inference(m, x, steps=1, step_size=0.01, init=z0, log_var=lv0,
                              learn_variance=True, variance_step_size=0.003, method="exact")
    for l in range(m.n_latent):
        np.testing.assert_allclose(traj.means[l][1], z0[l] + 0.01 * g.means[l], rtol=1e-12)
        np.testing.assert_allclose(traj.log_var[l][1], lv0[l] + 0.003 * g.log_var[l], rtol=1e-12)
    assert traj.info.method == "exact"
    assert gradient_inference(m, x, steps=1, step_size=0.01).info.method == "point"


def test_the_laplace_approximation_needs_a_local_maximum():
    """Bogacz's square link (u = v² + noise, prior N(3, 1), both variances 1), curvature
    H(v) = 1 + 6v² − 2u (conftest.bogacz_curvature).  At u = 2 and v = 1.5, H = 10.5 and the
    Laplace covariance is 1/10.5; at v = 0, H = −3 — log p is convex there, no maximum is near —
    and laplace_posterior refuses it, naming the eigenvalue.  A finite-difference Hessian of a
    nonlinear model is returned exactly symmetric (its two triangles averaged)."""
    from pcbio.inference import laplace_posterior, neg_hessian
    m = load_model("bogacz2017")
    u = np.array([[2.0]])
    np.testing.assert_allclose(laplace_posterior(m, u, [np.array([[1.5]])]).cov[0],
                               [[1 / bogacz_curvature(1.5, 2.0)]], rtol=1e-6)
    with pytest.raises(ValueError, match=rf"needs a local maximum.*eigenvalue "
                                         rf"{bogacz_curvature(0.0, 2.0):g} <= 0"):
        laplace_posterior(m, u, [np.array([[0.0]])])
    t = load_model("tanh_2level")
    xt, zt = t.sample(3, seed=2)
    H = neg_hessian(t, xt, zt)
    np.testing.assert_array_equal(H, np.transpose(H, (0, 2, 1)))


def test_a_map_tolerance_below_round_off_is_reported_not_returned():
    """map_estimate returns only a point whose largest gradient entry is within 100 × gtol;
    gtol = 1e-20 is below what double precision reaches for log p of order 1, so it raises an
    OptimisationError naming the gradient it got, instead of returning that point as if it met
    the tolerance."""
    from pcbio.inference.optimize import OptimisationError
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8]])
    with pytest.raises(OptimisationError, match="did not converge.*largest gradient entry"):
        map_estimate(m, x, gtol=1e-20)
    assert map_estimate(m, x)[1]["max_abs_gradient"] <= 100 * 1e-9


def test_batch_is_independent_data_points():
    """Batched inference equals inference on each data point alone."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8], [-0.3, 0.2, 0.9]])
    both, _ = map_estimate(m, x)
    for b in range(2):
        one, _ = map_estimate(m, x[b:b + 1])
        np.testing.assert_allclose(one[0], both[0][b:b + 1], atol=1e-7)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(dims=st.lists(st.integers(1, 4), min_size=2, max_size=4),
       f=st.sampled_from(["identity", "tanh", "sigmoid", "softplus", "square"]),
       cov_kind=st.sampled_from(["scalar", "diag", "full"]), seed=st.integers(0, 10_000))
def test_mean_gradient_matches_finite_differences_for_random_models(dims, f, cov_kind, seed):
    """Property test over random depths, widths, links and noise forms: ∇_μ L from
    elbo_gradient equals central differences of the (fixed-noise) ELBO."""
    L = len(dims) - 1
    m = random_model(seed, dims=tuple(dims), fs=[f] * L, cov_kinds=[cov_kind] * L)
    x, z = m.sample(2, seed=seed)
    q = GaussianPosterior(z, log_var=[np.full_like(zl, -2.0) for zl in z])
    g = elbo_gradient(m, x, q, n_samples=16, seed=seed, parameters=False)
    for l in range(L):
        def of_mean(v, l=l):
            means = list(z)
            means[l] = v
            return elbo(m, x, GaussianPosterior(means, log_var=q.log_var), n_samples=16,
                        seed=seed).value.sum()
        np.testing.assert_allclose(g.means[l], central_difference(of_mean, z[l]), rtol=1e-5, atol=1e-5)


def test_bad_arguments_are_rejected():
    """Clear errors for exact inference on a nonlinear model and for non-positive step sizes."""
    m = load_model("tanh_2level")
    with pytest.raises(ValueError, match="closed-form only for linear models"):
        exact_posterior(m, [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="method='exact' needs a linear model"):
        elbo(m, [[0.0, 0.0, 0.0]], GaussianPosterior([[[0.0, 0.0]]], log_var=[[[0.0, 0.0]]]),
             method="exact")
    with pytest.raises(ValueError, match="step_size must be a finite number > 0"):
        gradient_inference(m, [[0.0, 0.0, 0.0]], step_size=-1.0)


def test_step_size_beyond_the_stability_limit_is_refused():
    """Gradient ascent on a quadratic log p converges iff α < 2/λ_max(H), H = WᵀΠ_xW + Π_z
    (written out here from the model's parameters).  Just above the limit, and at it,
    gradient_inference refuses to run and names step_size and the limit; just below it
    converges to the exact posterior mean."""
    from pcbio.inference.iterative import DivergenceError
    m = load_model("linear_gaussian_2d")
    W, Sx = m.links[0].W, m.links[0].cov.matrix
    H = W.T @ np.linalg.inv(Sx) @ W + np.linalg.inv(m.top_cov.matrix)
    limit = 2 / np.linalg.eigvalsh(H).max()
    x = np.array([[1.0, -2.0, 0.5]])
    with pytest.raises(DivergenceError, match=f"step_size={1.01 * limit:g}.*{limit:.4g}"):
        gradient_inference(m, x, steps=100, step_size=1.01 * limit)
    # at the limit itself the stiffest mode flips sign each step without decaying: refused too
    from pcbio.inference.iterative import stability_limit
    assert stability_limit(m, x) == pytest.approx(limit, rel=1e-9)
    with pytest.raises(DivergenceError, match="beyond this model's stability limit"):
        gradient_inference(m, x, steps=100, step_size=stability_limit(m, x))
    traj = gradient_inference(m, x, steps=4000, step_size=0.99 * limit)
    np.testing.assert_allclose(traj.final_means()[0], exact_posterior(m, x).means[0], atol=1e-8)


def test_falling_log_joint_is_reported_as_divergence():
    """Bogacz's example (g(v) = v², u = 2): the curvature at the posterior mode is
    λ = 1 + 6v² − 2u ≈ 11.7, so α = 0.2 oscillates instead of converging; a stable ascent never
    lowers log p, and the run fails naming the step size instead of returning a wrong answer."""
    from pcbio.inference.iterative import DivergenceError
    m = load_model("bogacz2017")
    with pytest.raises(DivergenceError, match="step_size=0.2 is too large"):
        gradient_inference(m, [[2.0]], steps=200, step_size=0.2)
    assert gradient_inference(m, [[2.0]], steps=2000, step_size=0.05).final_means()[0][0, 0] == \
        pytest.approx(bogacz_posterior_mode(), abs=1e-6)


def test_a_log_joint_that_falls_but_stays_finite_stops_the_run():
    """A nonlinear model has no stability limit checked before the loop.  Near the mode z* the
    update z ← z + α∇ log p is linear with matrix I − αH, H = −∇² log p(x, z*) (here from
    central differences of the log joint), so it converges iff α < 2/λ_max(H).  At twice that
    limit the oscillation grows by |1 − αλ_max| = 3 per step near z* and stays finite for the
    first checks: the run must stop because the log joint fell between two checks (gradient ascent
    with a stable step never lowers it), naming the step size; at half the limit it reaches z*."""
    from pcbio.inference import DivergenceError, map_estimate
    m = load_model("tanh_2level")
    x = m.sample(1, seed=0)[0]
    mode = map_estimate(m, x)[0]
    dims = m.latent_dims
    split = np.cumsum(dims)[:-1]

    def neg_log_p(v):
        return -float(m.log_joint(x, np.split(v[None], split, axis=-1))[0])
    flat = np.concatenate(mode, axis=-1)[0]
    H = np.array([central_difference(lambda v: central_difference(neg_log_p, v, 1e-4)[i],
                                     flat, 1e-4) for i in range(flat.size)])
    limit = 2 / np.linalg.eigvalsh(0.5 * (H + H.T)).max()
    with pytest.raises(DivergenceError, match=r"fell by .* between steps .*"
                                              rf"step_size={2 * limit:g} is too large"):
        gradient_inference(m, x, steps=100, step_size=2 * limit)
    traj = gradient_inference(m, x, steps=2000, step_size=0.5 * limit)
    for a, b in zip(traj.final_means(), mode):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_slightly_unstable_step_is_caught_at_the_first_check():
    """Near Bogacz's mode v* the update is ``v ← v + α∇ log p`` with curvature λ =
    1 + 6v*² − 2u (conftest), so a distance from v* grows by |1 − αλ| per step.  Started 10⁻³
    from v* with α·λ = 2.1 it grows by 1.1 per step, 8× in 22 steps, and log p falls by about
    λ·10⁻⁶·(1.1²² − 1)/2 ≈ 4·10⁻⁵ — some 10⁻⁵ of |log p| — by the first check (step 11).
    The log joint is compared to round-off (10⁻¹⁰ relative), so the run stops there, naming
    steps 0 and 11; a floor at 1 % would let the oscillation grow for some 45 steps."""
    from pcbio.inference import DivergenceError
    m = load_model("bogacz2017")
    mode = bogacz_posterior_mode()
    step = 2.1 / bogacz_curvature(mode, 2.0)
    with pytest.raises(DivergenceError, match="fell by .* between steps 0 and 11"):
        gradient_inference(m, [[2.0]], steps=40, step_size=step, init=[[[mode + 1e-3]]])


def test_map_estimate_reaches_its_tolerance_on_a_large_batch():
    """The MAP is where ∇_z log p(x, z) vanishes.  For 2000 points at once the summed objective
    is large enough that L-BFGS stops on its round-off (relative reduction of f below machine
    precision) with gradient entries near 1e-7; the estimate must still reach the requested
    tolerance, 1e-9, at every point — checked with the model's own gradient at the result."""
    m = load_model("tanh_2level")
    x = m.sample(2000, seed=1)[0]
    z, info = map_estimate(m, x, gtol=1e-9)
    assert max(np.abs(g).max() for g in m.grad_log_joint(x, z)) <= 1e-9
    assert info["max_abs_gradient"] <= 1e-9
