"""Amortized and learned iterative inference: analytic gradients against finite differences,
the gradient special case, the learners' Adam steps, seeds and scores, training with exact
resume, saving by name, and the dendritic circuit running a learned update."""

import inspect

import numpy as np
import pytest
from brian2 import ms
from conftest import adam_step, central_difference, random_model

from pcbio.circuits import build_circuit
from pcbio.inference import elbo, gradient_inference
from pcbio.inference.amortized import Encoder, IterativeUpdate, curvature_log_var, point_elbo
from pcbio.inference.posterior import GaussianPosterior
from pcbio.learning.amortized import (AmortizedLearner, UpdateLearner, load_inference,
                                      save_inference)
from pcbio.learning.train import epoch_seed, train
from pcbio.mapping import map_trajectory
from pcbio.simulate import simulate


def _model():
    return random_model(5, dims=(5, 3), fs=["tanh"], hidden=[4])


def _update(model, seed=2):
    u = IterativeUpdate.gradient_step(model, 0.05, hidden=6, seed=seed, scale=1.0)
    u.V[:] = np.random.default_rng(seed + 1).normal(size=u.V.shape) * 0.02
    return u


def test_encoder_gradient_equals_finite_differences():
    """The encoder's weights' gradient (the ELBO's reparameterised gradients w.r.t. μ and log s²
    pushed back through the MLP by hand) against central differences of the same Monte-Carlo
    ELBO (fixed noise: a deterministic function of the weights)."""
    m = _model()
    x, _ = m.sample(3, seed=0)
    enc = Encoder.initial(m, 4, seed=1)
    rng = np.random.default_rng(2)
    enc = Encoder(**{k: v + 0.3 * rng.normal(size=v.shape) for k, v in enc.params().items()})
    _, grads, _ = enc.elbo_gradient(m, x, n_samples=5, seed=7)
    for name in Encoder.NAMES:
        def f(value, name=name):
            e = Encoder(**{**enc.params(), name: value})
            return elbo(m, x, e.posterior(x), method="mc", n_samples=5, seed=7).value.sum()
        np.testing.assert_allclose(grads[name], central_difference(f, enc.params()[name]),
                                   rtol=1e-5, atol=1e-7)


def test_update_gradient_equals_finite_differences():
    """The learned update's weight gradient of ``Σ_b g_b · μ_{t+1,b}`` (one step, inputs held)
    against central differences; and the model's encoder-side parameter gradient of the VAE is
    the model's own (tested elsewhere)."""
    m = _model()
    x, _ = m.sample(4, seed=1)
    u = _update(m)
    mu = np.random.default_rng(3).normal(size=(4, 3))
    g = np.random.default_rng(4).normal(size=(4, 3))
    _, cache = u.step(m, x, mu)
    grads = u.backward(cache, g)
    for name in IterativeUpdate.NAMES:
        def f(value, name=name):
            return np.sum(g * IterativeUpdate(**{**u.params(), name: value}).step(m, x, mu)[0])
        np.testing.assert_allclose(grads[name], central_difference(f, u.params()[name]),
                                   rtol=1e-6, atol=1e-8)


def test_identity_plus_step_is_gradient_iterative_inference():
    """With the learned gain off (V = 0) and a = α the update is gradient iterative inference:
    the same iterates as :func:`gradient_inference` with step size α, to round-off."""
    m = _model()
    x, _ = m.sample(3, seed=2)
    mus = IterativeUpdate.gradient_step(m, 0.05).run(m, x, m.prior_means(3)[0], 20)
    ref = gradient_inference(m, x, steps=20, step_size=0.05)
    np.testing.assert_allclose(np.array(mus), ref.means[0], atol=1e-13)


def test_curvature_variances_are_exact_for_a_linear_model():
    """For a linear-Gaussian model ``1/diag H`` is the ELBO-optimal diagonal variance
    (``docs/mathematics.md`` §4): the ELBO's log-variance gradient vanishes there."""
    m = random_model(6, dims=(4, 3))
    x, _ = m.sample(2, seed=0)
    mu = np.random.default_rng(0).normal(size=(2, 3))
    from pcbio.inference import elbo_gradient
    q = GaussianPosterior([mu], log_var=[curvature_log_var(m, x, mu)])
    np.testing.assert_allclose(elbo_gradient(m, x, q, parameters=False).log_var[0], 0, atol=1e-12)


def test_curvature_variance_is_never_wider_than_the_prior():
    """Bogacz (2017)'s model, curvature ``1 + 6v² − 2u`` of −log p (conftest): at v = 1.5,
    u = 2 it is 10.5 and q's variance 1/10.5 (to 1e-9: the Hessian of a nonlinear link is taken
    by finite differences); at v = 0 it is −3 (log p bends the wrong way), and q's variance is
    the prior's, 1 (``curvature_log_var``'s documented floor)."""
    from conftest import bogacz_curvature
    from pcbio import load_model
    m = load_model("bogacz2017")
    v = np.array([[1.5], [0.0]])
    log_var = curvature_log_var(m, np.array([[2.0], [2.0]]), v)
    assert bogacz_curvature(0.0, 2.0) < 1 / m.top_cov.variances[0]
    np.testing.assert_allclose(log_var[:, 0], [-np.log(bogacz_curvature(1.5, 2.0)),
                                               np.log(m.top_cov.variances[0])], rtol=1e-9)


def test_an_untrained_encoder_outputs_the_prior():
    """``Encoder.initial``: before training, q(z | x) is the prior for every x — μ the prior
    mean, s² its variances (a model whose prior is neither N(0, ·) nor of unit variance)."""
    m = random_model(5, dims=(5, 3), fs=["tanh"], hidden=[4], top_kind="diag")
    variances = m.top_cov.variances
    assert not np.allclose(m.top_mean, 0) and not np.allclose(variances, 1)
    q = Encoder.initial(m, hidden=7, seed=0).posterior(m.sample(4, seed=1)[0])
    np.testing.assert_allclose(q.means[0], np.tile(m.top_mean, (4, 1)), rtol=1e-15)
    np.testing.assert_allclose(np.exp(q.log_var[0]), np.tile(variances, (4, 1)), rtol=1e-14)


def test_encoder_and_update_refuse_a_model_with_two_latent_levels():
    """The encoder and the learned update are written for one latent level (``z`` one array);
    a deeper model is refused in one line saying so, before any weight is drawn."""
    deep = random_model(1, dims=(4, 3, 2))
    for make, what in ((lambda: Encoder.initial(deep, 3, seed=0), "the encoder"),
                       (lambda: IterativeUpdate.gradient_step(deep, 0.1), "the iterative update")):
        with pytest.raises(ValueError, match=f"{what} is written for models with one latent "
                                             "level; this model has 2"):
            make()


def test_point_elbo_error_falls_as_one_over_root_n_samples():
    """``point_elbo`` is a Monte Carlo estimate with ``n_samples`` draws: over 30 seeds its
    standard deviation with 16 draws is √(1024/16) = 8 times that with 1024 (independent draws;
    the test asks for more than 4, well outside the sampling spread of 30 seeds)."""
    m = _model()
    x = m.sample(1, seed=0)[0]
    mu = m.prior_means(1)[0]
    spread = [np.std([point_elbo(m, x, mu, n_samples=n, seed=s)[0] for s in range(30)])
              for n in (16, 1024)]
    assert spread[0] / spread[1] > 4


def test_a_gradient_step_without_scale_has_silent_hidden_units():
    """``IterativeUpdate.gradient_step``: with ``scale`` 0 (the default) the learned part is off
    in full — no input reaches its hidden units (all input weights 0, so h = tanh(c) = 0); with
    ``scale`` > 0 each input weight matrix is random."""
    m = _model()
    off = IterativeUpdate.gradient_step(m, 0.05, hidden=4, seed=1)
    on = IterativeUpdate.gradient_step(m, 0.05, hidden=4, seed=1, scale=1.0)
    for name in ("Ux", "Uz", "Umu"):
        assert not getattr(off, name).any() and np.all(getattr(on, name) != 0)


def test_training_resumes_exactly_and_saved_weights_load_by_path(tmp_path):
    """A VAE and a learned update trained through ``train`` with checkpoints: interrupted after
    one epoch and resumed, they end bit for bit where an uninterrupted run ends (the encoder,
    update and Adam moments are in the checkpoint); saved weights load back with provenance."""
    m = _model()
    x, _ = m.sample(60, seed=3)
    xtr, xte = x[:40], x[40:]

    def uninterrupted_and_resumed(make, name):
        """Two epochs in one go, and one epoch then a resumed second: (learner, learner)."""
        def trained(epochs, folder):
            learner = make()
            train(learner, xtr, xte, epochs=epochs, batch=10, seed=1, score=learner.score,
                  checkpoint_dir=tmp_path / folder)
            return learner
        whole = trained(2, name + "_whole")
        trained(1, name + "_resumed")
        return whole, trained(2, name + "_resumed")

    a, b = uninterrupted_and_resumed(lambda: AmortizedLearner(m, Encoder.initial(m, 4, 0)), "vae")
    for name in Encoder.NAMES:
        assert np.array_equal(a.encoder.params()[name], b.encoder.params()[name])
    assert np.array_equal(a.model.links[0].W, b.model.links[0].W)
    c, d = uninterrupted_and_resumed(
        lambda: UpdateLearner(a.model, _update(a.model), steps=3), "update")
    for name in IterativeUpdate.NAMES:
        assert np.array_equal(c.update.params()[name], d.update.params()[name])
    save_inference(tmp_path / "u.json", c.update, {"seed": 1})
    loaded, prov = load_inference(tmp_path / "u.json")
    assert prov == {"seed": 1}
    for name in IterativeUpdate.NAMES:
        assert np.array_equal(loaded.params()[name], c.update.params()[name])
    with pytest.raises(FileNotFoundError, match="no saved inference model"):
        load_inference("no_such_model.encoder")


def test_a_minibatch_is_one_annealed_adam_step_on_the_average_gradient(monkeypatch):
    """The learners' contract (``pcbio/learning/amortized.py``): one minibatch of n points is
    one Adam ascent step on the gradient averaged over them, at the rate times the annealing
    factor ``train`` sets in ``rates``.  Adam's first step is ``lr·g/(|g| + ε)``, so after one
    minibatch at half the rate every encoder parameter, every weight and bias of the model,
    and every parameter of a learned update has moved by exactly that, with g from the same
    seed.  A VAE's prior N(μ, Σ) stays fixed; with ``learn_model=False`` the model does not
    move at all.  The record is the ELBO per data point (per point and step for an update).
    Every minibatch of an epoch draws its own samples."""
    m = _model()
    x = m.sample(6, seed=0)[0]
    n, lr, seed = len(x), 1e-2, epoch_seed((0, 0))
    enc = Encoder.initial(m, 4, 0)
    value, grads, pgrad = enc.elbo_gradient(m, x, 4, seed, parameters=True)
    learner = AmortizedLearner(m, enc, lr=lr, n_samples=4)
    learner.rates = learner.rates.scaled(0.5)
    record = learner.epoch(x[None], seed=(0, 0))
    assert record[0]["elbo"] == pytest.approx(value / n, rel=1e-12)
    for name, before in enc.params().items():
        np.testing.assert_allclose(learner.encoder.params()[name] - before,
                                   adam_step(0.5 * lr, grads[name] / n), atol=1e-15)
    for new, old, g in zip(learner.model.links, m.links, pgrad.links):
        for field, gf in (("W", g.weights), ("b", g.bias), ("A", g.hidden_weights),
                          ("a", g.hidden_bias)):
            np.testing.assert_allclose(getattr(new, field) - getattr(old, field),
                                       adam_step(0.5 * lr, gf / n), atol=1e-15)
    np.testing.assert_array_equal(learner.model.top_mean, m.top_mean)
    np.testing.assert_array_equal(learner.model.top_cov.value, m.top_cov.value)

    fixed = AmortizedLearner(m, Encoder.initial(m, 4, 0), lr=lr, learn_model=False)
    fixed.epoch(x[None], seed=(0, 0))
    assert fixed.model is m

    u = _update(m)
    value, grads = u.objective_gradient(m, x, m.prior_means(n)[0], 3, 4, seed)
    learner = UpdateLearner(m, u, steps=3, lr=lr, n_samples=4)
    learner.rates = learner.rates.scaled(0.5)
    record = learner.epoch(x[None], seed=(0, 0))
    assert record[0]["elbo_per_step"] == pytest.approx(value / (n * 3), rel=1e-12)
    for name, before in u.params().items():
        np.testing.assert_allclose(learner.update.params()[name] - before,
                                   adam_step(0.5 * lr, grads[name] / n), atol=1e-15)

    seeds = []
    for cls, method in ((Encoder, "elbo_gradient"), (IterativeUpdate, "objective_gradient")):
        original = getattr(cls, method)

        def spy(self, *args, _f=original, **kwargs):
            seeds.append(inspect.signature(_f).bind(self, *args, **kwargs).arguments["seed"])
            return _f(self, *args, **kwargs)
        monkeypatch.setattr(cls, method, spy)
    AmortizedLearner(m, Encoder.initial(m, 4, 0)).epoch(np.stack([x[:3], x[3:]]))
    UpdateLearner(m, _update(m), steps=3).epoch(np.stack([x[:3], x[3:]]))
    assert len(seeds) == 4 and seeds[0] != seeds[1] and seeds[2] != seeds[3]


def test_a_learned_updates_score_is_the_elbo_after_its_steps():
    """``UpdateLearner.score`` is the ELBO after the learner's ``steps`` updates from the prior
    mean: for the update that is gradient iterative inference (V = 0), the ELBO of
    :func:`gradient_inference`'s iterate after that many steps, scored with the curvature
    variances as every iterative method is."""
    m = _model()
    x = m.sample(5, seed=4)[0]
    ref = gradient_inference(m, x, steps=7, step_size=0.05).means[0][-1]
    learner = UpdateLearner(m, IterativeUpdate.gradient_step(m, 0.05), steps=7)
    assert learner.score(m, x, seed=1)["elbo"] == pytest.approx(
        float(point_elbo(m, x, ref, seed=1).mean()), rel=1e-10)


def test_dendritic_circuit_runs_the_learned_update():
    """The pyramidal circuit with gain branches (basal ε_x, apical ε_z): with dt = τ each Euler
    step of its somata is one iteration of the learned update (round-off), and the mapping's
    ``learned_update`` check finds its τ dz/dt equal to the update's step at every recorded
    step, and the plain gradient flow's checks are left out, saying that check replaces them;
    the compartments still carry the gradient's two terms.  A step longer than one
    iteration (dt > τ) is refused before the run, and so is an update for a model deeper than
    one latent level or for data and latents of other sizes."""
    m = _model()
    x, _ = m.sample(4, seed=1)
    u = _update(m)
    traj = simulate(build_circuit(m, "dendritic", update=u, tau=1 * ms), x, duration=8 * ms,
                    dt=1 * ms, target="numpy")
    mus = u.run(m, x, m.prior_means(4)[0], len(traj) - 1)
    np.testing.assert_allclose(traj.means[0], np.array(mus), atol=1e-12)
    report = map_trajectory(traj, m, x, update=u).report
    assert report["levels"][0]["learned_update_rel_err_max"] < 1e-10
    assert report["levels"][0]["basal_vs_bottom_up_rel_err_max"] < 1e-10
    for check in ("gradient_flow", "step_equivalence", "variance_gap"):   # it is no plain flow
        assert "compared by 'learned_update'" in report["skipped_checks"][check]
    with pytest.raises(ValueError, match="at most one iteration per step"):
        simulate(build_circuit(m, "dendritic", update=u, tau=1 * ms), x, duration=8 * ms,
                 dt=1.5 * ms, target="numpy")
    with pytest.raises(ValueError, match="one latent level"):
        build_circuit(random_model(1, dims=(4, 3, 2)), "dendritic", update=u)
    with pytest.raises(ValueError, match="its weights are for data of dimension 5 and 3 "
                                         "latents; the model has 4 and 3"):
        build_circuit(random_model(1, dims=(4, 3)), "dendritic", update=u)


@pytest.mark.slow
def test_iterative_amortized_experiment_orders_the_methods(tmp_path):
    """`pcbio run iterative_amortized --quick` (fixed seeds) on held-out digits: after each of
    K = 1 … 8 steps the learned update's ELBO is above gradient inference's with the best fixed
    step size for that K; the encoder's amortization gap is positive and iterative refinement
    shrinks it; the pyramidal circuit's iterates are the learned update's (round-off)."""
    import json

    from pcbio.experiment import run_experiment
    run_experiment("iterative_amortized", tmp_path, quick=True, seed=0)
    res = json.loads((tmp_path / "iterative_amortized.json").read_text())["results"]
    assert res["iterations"] == list(range(9))
    elbo_, gap = res["elbo"], res["amortization_gap_nats"]
    for k in range(1, 9):
        assert elbo_["learned"][k] > elbo_["gradient"][k]
    assert gap > 0
    for key in ("gradient", "learned"):
        assert max(res["refined_gap_nats"][key][1:]) < gap
    assert res["circuit_vs_learned_max_abs"] < 1e-10


def test_shipped_digits_weights_load_by_name():
    """`models/digits_mlp.*` (written by the experiment's ``--save``) load by name, fit the
    model's shapes and carry their provenance."""
    from pcbio.model import load_model
    model = load_model("digits_mlp")
    enc, prov = load_inference("digits_mlp.encoder")
    upd, _ = load_inference("digits_mlp.update")
    assert enc.W1.shape[1] == model.dims[0] and enc.Wm.shape[0] == model.dims[1]
    assert upd.Ux.shape[1] == model.dims[0] and len(upd.a) == model.dims[1]
    assert prov["seed"] == 0 and "git_commit" in prov
