"""Float32 on the VAE side: the same mathematics in single precision agrees with double
precision to float32 round-off, and really computes in float32."""

import numpy as np
import pytest

from conftest import random_model
from pcbio import load_model
from pcbio.inference import GaussianPosterior, elbo, elbo_gradient, gradient_inference

F32_EPS = np.finfo(np.float32).eps      # 1.2e-7


@pytest.mark.parametrize("name, fs, hidden", [("affine", ["tanh", "sigmoid"], [None, None]),
                                              ("mlp", ["softplus", "identity"], [5, None])])
def test_gradient_inference_float32_matches_float64(name, fs, hidden):
    """50 gradient steps in float32 reach the float64 iterates to float32 round-off: every
    operation carries a relative error ~ε₃₂ and the dynamics are contractive, so the states
    differ by a small multiple of ε₃₂ (here bounded by 1e3·ε₃₂ ≈ 1e-4, relative to their size)."""
    m = random_model(31, dims=(6, 4, 3), fs=fs, hidden=hidden)
    x, _ = m.sample(5, seed=1)
    lo = gradient_inference(m, x, steps=50, step_size=0.05, dtype="float32")
    hi = gradient_inference(m, x, steps=50, step_size=0.05)
    for a, b in zip(lo.means, hi.means):
        assert a.dtype == np.float32 and b.dtype == np.float64
        np.testing.assert_allclose(a, b, rtol=0, atol=1e3 * F32_EPS * np.abs(b).max())
    np.testing.assert_allclose(lo.scores["log_joint"], hi.scores["log_joint"], rtol=1e3 * F32_EPS)


def test_model_converted_once_computes_in_float32():
    """model.astype('float32') converts every parameter once; errors, log joint and gradients
    then come out in float32 and equal the float64 ones to round-off."""
    m = load_model("tanh_2level")
    m32 = m.astype("float32")
    assert m32.dtype == np.float32 and m32.astype("float32") is m32
    x, z = m.sample(4, seed=2)
    x32, z32 = x.astype(np.float32), [zl.astype(np.float32) for zl in z]
    for a, b in zip(m32.grad_log_joint(x32, z32), m.grad_log_joint(x, z)):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e2 * F32_EPS, atol=1e2 * F32_EPS * np.abs(b).max())
    np.testing.assert_allclose(m32.log_joint(x32, z32), m.log_joint(x, z), rtol=1e2 * F32_EPS)


def test_elbo_gradient_float32_matches_float64():
    """The ELBO and its gradients w.r.t. q and every parameter (full noise covariance, MLP
    link) in float32 equal the float64 ones to float32 round-off (same noise γ)."""
    m = random_model(32, dims=(5, 3, 2), fs=["tanh", "identity"], hidden=[4, None],
                     cov_kinds=["full", "scalar"])
    x, z = m.sample(3, seed=3)
    q = GaussianPosterior(z, log_var=[np.full_like(zl, -1.5) for zl in z])
    lo = elbo_gradient(m, x, q, method="mc", n_samples=16, seed=4, dtype="float32")
    hi = elbo_gradient(m, x, q, method="mc", n_samples=16, seed=4)
    tol = 1e3 * F32_EPS
    np.testing.assert_allclose(lo.elbo.value, hi.elbo.value, rtol=tol)
    for a, b in zip(lo.means + lo.log_var, hi.means + hi.log_var):
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max())
    for a, b in zip(lo.params.links, hi.params.links):
        for field in ("weights", "bias", "cov", "hidden_weights", "hidden_bias"):
            va, vb = getattr(a, field), getattr(b, field)
            if vb is not None:
                np.testing.assert_allclose(va, vb, rtol=0, atol=tol * np.abs(vb).max())
    np.testing.assert_allclose(elbo(m, x, q, dtype="float32").value, elbo(m, x, q).value,
                               rtol=tol)
