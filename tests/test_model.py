"""The generative model: log joint, prediction errors, gradients, sampling, files, validation."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from conftest import central_difference, random_model
from pcbio import GenerativeModel, Link, load_model
from pcbio.checks import largest_abs
from pcbio.covariance import Covariance
from pcbio.inference import log_evidence
from pcbio.inference.exact import marginal_moments
from pcbio.learning.optim import gradient_dict
from pcbio.nonlinearities import NONLINEARITIES

ALL_F = sorted(NONLINEARITIES)


def test_log_joint_is_sum_of_gaussian_log_densities():
    """log p(x, z) = Σ_l log N(z_l; g_l(z_{l+1}), Σ_l) + log N(z_L; μ_L, Σ_L), evaluated here
    independently with scipy's multivariate normal and g written out by hand."""
    m = random_model(1, dims=(4, 3, 2), fs=["tanh", "identity"], cov_kinds=["full", "scalar"])
    x, z = m.sample(5, seed=2)
    for b in range(5):
        l0, l1 = m.links
        want = (multivariate_normal(l0.W @ np.tanh(z[0][b]) + l0.b, l0.cov.matrix).logpdf(x[b])
                + multivariate_normal(l1.W @ z[1][b] + l1.b, l1.cov.matrix).logpdf(z[0][b])
                + multivariate_normal(m.top_mean, m.top_cov.matrix).logpdf(z[1][b]))
        assert m.log_joint(x[b:b + 1], [z[0][b:b + 1], z[1][b:b + 1]])[0] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("value, message", [
    ([1.0, 2.0], "(variances) must have length 3 to match its level, got 2"),
    (np.eye(2), "must be a (3, 3) matrix to match its level, got shape (2, 2)"),
    ([1.0, 0.0, 1.0], "variances must be > 0"),
])
def test_a_covariance_of_the_wrong_size_or_a_zero_variance_is_refused(value, message):
    """Variances or a matrix must match their level's dimension, and a variance of 0 (no noise:
    an infinite precision) is refused as such, naming the parameter."""
    with pytest.raises(ValueError) as err:
        Covariance(value, 3, "links[0].var")
    assert str(err.value).startswith("links[0].var") and message in str(err.value)


def test_a_covariance_is_symmetrised_and_knows_its_smallest_eigenvalue():
    """A full matrix asymmetric within round-off (1e-12) is accepted as its symmetric part,
    exactly; its smallest variance is its smallest eigenvalue (1 − 0.9 for unit variances with
    correlation 0.9), not its smallest diagonal entry; variances (1, 2) are not the unit
    covariance, so their errors are weighted: ε = r/σ²."""
    asym = np.array([[1.0, 0.9 + 1e-12], [0.9, 1.0]])
    c = Covariance(asym, 2)
    assert np.array_equal(c.matrix, 0.5 * (asym + asym.T))
    assert c.smallest_variance == pytest.approx(0.1, rel=1e-9)
    r = np.array([[1.0, 1.0]])
    np.testing.assert_array_equal(Covariance([1.0, 2.0], 2).apply_precision(r), [[1.0, 0.5]])


def test_errors_are_precision_weighted():
    """ε_l = Σ_l⁻¹ (z_l − g_l(z_{l+1})) — docs/mathematics.md §2 (not divided by the standard deviation)."""
    m = random_model(3, dims=(3, 2), cov_kinds=["full"])
    x, z = m.sample(4, seed=0)
    eps = m.errors(x, z)
    r0 = x - (z[0] @ m.links[0].W.T + m.links[0].b)
    np.testing.assert_allclose(eps[0], np.linalg.solve(m.links[0].cov.matrix, r0.T).T, rtol=1e-10)
    np.testing.assert_allclose(eps[1], np.linalg.solve(m.top_cov.matrix, (z[0] - m.top_mean).T).T,
                               rtol=1e-10)


@pytest.mark.parametrize("f", ALL_F)
@pytest.mark.parametrize("hidden", [None, 4])
def test_grad_log_joint_matches_finite_differences(f, hidden):
    """∂ log p / ∂z_l = −ε_l + J_{l-1}ᵀ ε_{l-1} agrees with central differences of log p, for every
    nonlinearity and for MLP links, in a 3-level model with mixed covariance forms."""
    m = random_model(7, dims=(3, 3, 2), fs=[f, "tanh" if f == "identity" else "identity"],
                     cov_kinds=["full", "diag"], hidden=[hidden, None])
    x, z = m.sample(2, seed=1)
    grads = m.grad_log_joint(x, z)
    for l in range(2):
        def f_of(zl, l=l):
            zz = list(z)
            zz[l] = zl
            return m.log_joint(x, zz).sum()
        np.testing.assert_allclose(grads[l], central_difference(f_of, z[l]), rtol=1e-6, atol=1e-6)


UNIT = dict(cov_kinds=["scalar"] * 3, top_kind="scalar")     # variances replaced by 1 below


@pytest.mark.parametrize("fs, covs, unit", [
    (["tanh"] * 3, UNIT, "every"),                      # one shared f, every Π = I: ε is r
    (["tanh"] * 3, UNIT, "data"),                       # Π_0 = I only: the others weigh
    (["sigmoid"] * 3, dict(cov_kinds=["diag", "scalar", "diag"], top_kind="diag"), None),
    (["identity"] * 3, dict(cov_kinds=["full", "scalar", "diag"], top_kind="full"), None),
    (["tanh", "softplus", "identity"], dict(cov_kinds=["diag"] * 3, top_kind="scalar"), None),
])
def test_every_pass_layout_gives_the_log_joint_and_its_gradient(fs, covs, unit):
    """A pass keeps the latent levels side by side and takes one of several routes (one shared
    f or one per link; Π = I for every level or the data's only, diagonal or full).  On every
    route: log p(x, z) equals the sum of per-level Gaussian log densities written out here with
    scipy; the gradient equals central differences of it; a pass reused after the latents
    changed in place equals a fresh pass — also when the latents are samples in Fortran
    order, and not when the data are others (a pass is for its own x: another x gets a new pass); latents with
    a leading sample axis (K, batch, d) give, per sample, what that sample alone gives; and one
    row of latents is shared by every data point."""
    m = random_model(11, dims=(5, 4, 3, 2), fs=fs, **covs)
    if unit == "every":
        m = m.replaced(links=[lk.replaced(cov=1.0) for lk in m.links], top_cov=1.0)
    elif unit == "data":
        m = m.replaced(links=[m.links[0].replaced(cov=1.0)] + m.links[1:])
    x, z = m.sample(3, seed=4)
    want = sum(multivariate_normal(g, c.matrix).logpdf(v) for g, c, v in
               zip([lk.predict(zl)[0] for lk, zl in zip(m.links, z)] + [m.top_mean],
                   m.covariances, [x[0]] + [zl[0] for zl in z]))
    assert m.log_joint(x, z)[0] == pytest.approx(want, rel=1e-12)
    latents = np.concatenate(z, axis=-1)
    fw = m.forward(x, latents)
    grad = m.flat_gradient(fw).copy()
    np.testing.assert_allclose(grad, central_difference(lambda v: m.log_joint(x, v).sum(),
                                                        latents), rtol=1e-6, atol=1e-6)
    latents += 0.1 * grad                                 # in place: the pass is reused
    assert m.forward(x, latents, fw) is fw
    fresh = m.forward(x, [zl.copy() for zl in m.split(latents)])
    for a, b in zip(fw.errors + [m.flat_gradient(fw)], fresh.errors + [m.flat_gradient(fresh)]):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)
    # samples (K, batch, n) in Fortran order: their rows cannot be views of a (K·batch, n) array
    columns = np.asfortranarray(np.stack([latents, latents + 0.3]))
    view = m.forward(x, columns)
    columns += 0.1                                        # in place again
    again = m.forward(x, columns, view)
    np.testing.assert_allclose(m.log_joint(x, columns, again),
                               m.log_joint(x, np.ascontiguousarray(columns)), rtol=1e-13)
    other = x + 0.5
    np.testing.assert_allclose(m.log_joint(other, latents, m.forward(other, latents, fw)),
                               m.log_joint(other, latents.copy()), rtol=1e-13)
    np.testing.assert_allclose(m.log_joint(x, latents[:1]),
                               m.log_joint(x, np.repeat(latents[:1], len(x), axis=0)), rtol=1e-13)
    samples = np.stack([latents, latents + 0.3, latents - 0.2])          # (K, batch, n)
    np.testing.assert_allclose(m.log_joint(x, samples),
                               [m.log_joint(x, s) for s in samples], rtol=1e-13)
    np.testing.assert_allclose(m.flat_gradient(m.forward(x, samples)),
                               [m.flat_gradient(m.forward(x, s)) for s in samples], rtol=1e-12,
                               atol=1e-13)


def test_sampling_is_seeded_and_matches_the_marginal():
    """Ancestral samples: same seed → same numbers; sample mean/covariance of x agree with the
    closed-form marginal (m_0, C_0) within sampling error (5 standard errors)."""
    m = random_model(4, dims=(3, 2, 2), cov_kinds=["full", "diag"])
    x1, _ = m.sample(20000, seed=9)
    x2, _ = m.sample(20000, seed=9)
    np.testing.assert_array_equal(x1, x2)
    mean, cov = marginal_moments(m)
    se = np.sqrt(np.diag(cov) / len(x1))
    assert np.all(np.abs(x1.mean(0) - mean) < 5 * se)
    np.testing.assert_allclose(np.cov(x1.T), cov, atol=5 * np.sqrt(2 / len(x1)) * np.diag(cov).max())


def test_model_file_round_trip(tmp_path):
    """to_dict → TOML-equivalent dict → from_dict reproduces the model (same log joint)."""
    m = load_model("linear_gaussian_3level")
    again = GenerativeModel.from_dict(m.to_dict())
    x, z = m.sample(3, seed=0)
    np.testing.assert_allclose(again.log_joint(x, z), m.log_joint(x, z), rtol=1e-14)
    assert again.dims == m.dims == (4, 3, 2)


def test_a_replaced_copy_keeps_what_was_not_replaced():
    """``replaced`` changes only what it is given: the name, the links and the flow stay."""
    from pcbio.flows import LinearFlow
    m = load_model("linear_gaussian_2d")
    m = m.replaced(flow=LinearFlow(np.zeros(3), 2 * np.eye(3)))
    copy = m.replaced(top_cov=2.0)
    assert copy.name == "linear_gaussian_2d" and copy.flow is m.flow and copy.links == m.links
    assert np.all(copy.top_cov.matrix == 2 * np.eye(2))


def test_example_file_from_the_issue_loads():
    """The file format in the README (top-down links, cov/var forms) gives the stated shapes."""
    m = load_model("linear_gaussian_2d")
    assert m.dims == (3, 2) and m.top_cov.kind == "full" and m.links[0].cov.kind == "full"


def _spec(**changes):
    spec = {"top": {"mean": [0.0, 1.0], "var": 1.0},
            "links": [{"weights": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "var": [1.0, 1.0, 1.0]}]}
    for key, value in changes.items():
        where, field = key.split("__")
        table = spec["top"] if where == "top" else spec["links"][0]
        if field == "cov" and where == "link":
            table.pop("var")
        table[field] = value
    return spec


@pytest.mark.parametrize("changes, message", [
    ({"link__weights": [[1.0, 0.0, 2.0]] * 3}, "links[0] takes input of dimension 3"),
    ({"link__cov": [[1.0, 0.5, 0], [0, 1.0, 0], [0, 0, 1.0]]}, "must be symmetric"),
    ({"link__cov": [[1.0, 2.0, 0], [2.0, 1.0, 0], [0, 0, 1.0]]}, "positive definite"),
    ({"link__var": [1.0, -1.0, 1.0]}, "variances must be > 0"),
    ({"link__f": "relu"}, "links[0].f must be one of"),
    ({"top__mean": [0.0, float("nan")]}, "NaN or Inf"),
    ({"link__bias": [0.0, 0.0]}, "links[0].bias must have shape (3)"),
    ({"link__gain": 1.0}, "unknown key(s) ['gain']"),
    ({"top__cov": [[1.0, 0], [0, 1.0]]}, "either 'cov' or 'var'"),
    ({"link__var": np.eye(3).tolist()}, "'var' must be a number or a list of variances"),
    ({"link__hidden_weights": [[1.0, 0.0]] * 3},
     "links[0].hidden_weights has 3 rows but links[0].weights has 2 columns"),
])
def test_validation_names_the_problem(changes, message):
    """Bad model input raises ValueError whose message names the key and what is allowed."""
    with pytest.raises(ValueError) as err:
        GenerativeModel.from_dict(_spec(**changes))
    assert message in str(err.value)


def test_errors_name_the_file_and_the_link(tmp_path):
    """A model file's error names the file and the key; a model built in Python names its links
    ``links[l]`` (bottom-up) in its errors; a folder is not a model file."""
    path = tmp_path / "bad.toml"
    path.write_text('[top]\nmean = [0.0]\nvar = 1.0\n[[links]]\nweights = [[1.0]]\nvar = -1.0\n')
    with pytest.raises(ValueError, match=r"^bad\.toml: links\[0\]\.var"):
        GenerativeModel.load(path)
    with pytest.raises(ValueError, match=r"^links\[0\] takes input of dimension 3"):
        GenerativeModel(np.zeros(2), 1.0, [Link(np.ones((3, 3)))])
    with pytest.raises(ValueError, match="is a folder, not a model file"):
        GenerativeModel.load(tmp_path)


@pytest.mark.parametrize("kind", ["full", "diag", "scalar"])
def test_parameter_gradient_weighs_each_sample_and_data_point(kind):
    """``parameter_gradient(weights=w)`` is ``Σ_kb w_kb ∇_θ log p(x_b, z_kb)``: for samples
    (K, batch, n) and weights (K, batch) it equals the weighted sum of every (sample, point)'s
    own gradient (linearity of the sum), for an MLP link and each form of covariance (whose
    gradient has its own weighted sum per form)."""
    m = random_model(4, dims=(4, 3), fs=["tanh"], cov_kinds=[kind], hidden=[5], top_kind=kind)
    x, _ = m.sample(2, seed=0)
    z = np.random.default_rng(1).normal(size=(3, 2, 3))
    w = np.random.default_rng(2).uniform(0.1, 2.0, size=(3, 2))

    def flat(g):                      # every parameter's gradient, in gradient_dict's order
        return np.concatenate([np.ravel(v) for v in gradient_dict(g).values()])
    want = sum(w[k, b] * flat(m.parameter_gradient(x[b:b + 1], [z[k, b:b + 1]]))
               for k in range(3) for b in range(2))
    np.testing.assert_allclose(flat(m.parameter_gradient(x, [z], weights=w)), want, rtol=1e-12)


def test_wrong_data_dimension_is_reported():
    """x with the wrong number of entries per data point is rejected before any computation."""
    m = load_model("linear_gaussian_2d")
    with pytest.raises(ValueError, match="must have 3 entries per data point"):
        log_evidence(m, [[1.0, 2.0]])
    for bad in (np.inf, -np.inf, np.nan):
        with pytest.raises(ValueError, match="NaN or Inf"):
            log_evidence(m, [[1.0, bad, 0.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_largest_magnitude_without_a_temporary_is_max_abs(dtype):
    """``largest_abs`` (what every data check uses) equals ``max |a|`` taken directly — whether
    the largest magnitude is a maximum or a minimum — and is NaN when an entry is NaN."""
    rng = np.random.default_rng(0)
    for shape in [(1,), (5, 3), (2, 4, 7)]:
        for sign in (1.0, -1.0):
            a = (rng.normal(size=shape) + sign * 10.0 * (rng.random(shape) > 0.7)).astype(dtype)
            assert largest_abs(a) == np.abs(a).max()
        a = rng.normal(size=shape).astype(dtype)
        a.flat[-1] = np.nan
        assert np.isnan(largest_abs(a))


def test_link_takes_python_objects():
    """A model built in Python (links bottom-up) equals the same model from a dict (top-down)."""
    top = Link([[1.0, 0.5], [0.0, 1.0]], f="tanh", cov=0.5)
    bottom = Link([[1.0, 0.0], [0.3, 1.0], [0.0, -1.0]], cov=[1.0, 2.0, 0.5])
    m = GenerativeModel([0.0, 0.0], 1.0, [bottom, top])
    assert m.dims == (3, 2, 2) and m.links[1].nl.name == "tanh"
    with pytest.raises(TypeError, match="links\\[0\\] must be a pcbio.model.Link"):
        GenerativeModel([0.0], 1.0, [{"weights": [[1.0]]}])


def test_data_beyond_float64_resolution_are_refused_and_latents_broadcast():
    """check_x refuses data whose float64 round-off (2.2e-16 × the largest value) exceeds 1e-4
    of the data noise's standard deviation (1 here): 1e12 (round-off 2.2e-4) is refused, 1e11
    (2.2e-5) is not; with noise standard deviation 0.01 the bound is 100 times tighter, so 1e11
    is refused too.  check_latents broadcasts one vector per level to every data point."""
    m = GenerativeModel(np.zeros(1), 1.0, [Link(np.ones((2, 1)), cov=1.0)])
    with pytest.raises(ValueError, match="round-off .* exceeds 1e-4 of the data noise"):
        m.check_x([[1e12, 0.0]])
    assert m.check_x([[1e11, 0.0]]).shape == (1, 2)
    tight = GenerativeModel(np.zeros(1), 1.0, [Link(np.ones((2, 1)), cov=1e-4)])
    with pytest.raises(ValueError, match="round-off"):
        tight.check_x([[1e11, 0.0]])
    z = m.check_latents([np.array([0.5])], 3)
    assert z[0].shape == (3, 1) and np.all(z[0] == 0.5)
