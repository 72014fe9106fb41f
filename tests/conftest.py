"""Shared test helpers: random models of any shape, Adam's step, and finite differences."""

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from pcbio.model import GenerativeModel, Link


def random_cov(rng, d, kind):
    """A random covariance of the given form, well conditioned."""
    if kind == "scalar":
        return float(rng.uniform(0.3, 1.5))
    if kind == "diag":
        return rng.uniform(0.3, 1.5, d)
    A = rng.normal(size=(d, d)) / np.sqrt(d)
    return A @ A.T + 0.5 * np.eye(d)


def random_model(seed, dims=(4, 3, 2), fs=None, cov_kinds=None, hidden=None, top_kind="full"):
    """A random model with levels ``dims = (d_0, d_1, …, d_L)``; ``fs``/``cov_kinds``/``hidden``
    give each link (bottom-up) its nonlinearity, noise form and MLP hidden size (None: affine)."""
    rng = np.random.default_rng(seed)
    L = len(dims) - 1
    fs = fs or ["identity"] * L
    cov_kinds = cov_kinds or ["diag"] * L
    hidden = hidden or [None] * L
    links = []
    for l in range(L):
        d_in = hidden[l] or dims[l + 1]
        kw = {}
        if hidden[l]:
            kw = dict(hidden_weights=rng.normal(size=(hidden[l], dims[l + 1])) / np.sqrt(dims[l + 1]),
                      hidden_bias=rng.normal(size=hidden[l]) * 0.3)
        links.append(Link(rng.normal(size=(dims[l], d_in)) / np.sqrt(d_in),
                          rng.normal(size=dims[l]) * 0.3, fs[l],
                          random_cov(rng, dims[l], cov_kinds[l]), **kw))
    return GenerativeModel(rng.normal(size=dims[-1]) * 0.5, random_cov(rng, dims[-1], top_kind), links)


def adam_step(lr, g, eps=1e-8):
    """Adam's step under bias-corrected moments m̂ = g, v̂ = g² (Kingma & Ba 2015, Algorithm 1):
    the first step for any gradient, and every step for a constant one: ``lr·g/(|g| + ε)``."""
    return lr * g / (np.abs(g) + eps)


def linear_relaxation(A, x_star, x0, times):
    """Exact solution of ``dx/dt = −A (x − x*)`` from ``x0``: ``x(t) = x* + exp(−A t)(x0 − x*)``
    at each of ``times``; returns (T, d)."""
    from scipy.linalg import expm
    return np.array([x_star + expm(-A * t) @ (x0 - x_star) for t in times])


def central_difference(fun, x, h=1e-6):
    """Numerical gradient of scalar ``fun`` at array ``x`` (any shape) by central differences."""
    x = np.array(x, dtype=float)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        grad[idx] = (fun(xp) - fun(xm)) / (2 * h)
    return grad


def live_brian2_objects() -> int:
    """How many brian2 objects exist now (after a garbage collection)."""
    import gc

    from brian2 import BrianObject
    gc.collect()
    return sum(isinstance(o, BrianObject) for o in gc.get_objects())


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def bogacz_curvature(v, u):
    """Bogacz (2017)'s model (prior N(3, 1), u = v² + noise of variance 1): −log p(v, u) =
    ½(v − 3)² + ½(u − v²)² + const, so its curvature −∂²log p/∂v² = 1 + 6v² − 2u."""
    return 1 + 6 * v ** 2 - 2 * u


def bogacz_posterior_mode():
    """Mode of Bogacz (2017)'s exact posterior p(v | u=2) ∝ N(v; 3, 1) N(2; v², 1), found by
    bounded scalar maximisation of the normalised density (normalised by quadrature)."""
    density = lambda v: stats.norm.pdf(v, 3, 1) * stats.norm.pdf(2, v ** 2, 1)  # noqa: E731
    Z, _ = integrate.quad(density, -10, 10)
    res = optimize.minimize_scalar(lambda v: -density(v) / Z, bounds=(0, 3), method="bounded",
                                   options={"xatol": 1e-10})
    return res.x


def pytest_collection_modifyitems(items):
    """Compiled and standalone tests leave the quick loop (``-m "not slow"``) too."""
    for item in items:
        if item.get_closest_marker("compiled") or item.get_closest_marker("standalone"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def brian2_defaults():
    """As brian2's own suite does: every test starts and ends with the runtime device and the
    default code-generation target, whatever an earlier test left behind."""
    import brian2
    # the module's object: the attribute brian2.devices.device is the current-device proxy, on
    # which .runtime_device is a warning and a dummy (so the test below was always true)
    from brian2.devices.device import runtime_device
    target = brian2.prefs.codegen.target
    yield
    if brian2.get_device() is not runtime_device:
        brian2.device.reinit()
        brian2.set_device("runtime")
    brian2.prefs.codegen.target = target


@pytest.fixture
def cython_forbidden(monkeypatch):
    """brian2's default target set to Cython, and any Cython code object refused: a test using
    this fixture fails if anything it builds or runs with ``target="numpy"`` generates code
    under the default target (which compiles, minutes on a fresh machine)."""
    import brian2
    from brian2.codegen.runtime.cython_rt import CythonCodeObject

    def refuse(self, owner, *args, **kwargs):
        raise AssertionError(f"Cython code generated for {owner.name}")
    monkeypatch.setattr(CythonCodeObject, "__init__", refuse)
    brian2.prefs.codegen.target = "cython"     # restored by brian2_defaults
