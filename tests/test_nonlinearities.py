"""The brian2 expressions of every link nonlinearity against their numpy twins, over a wide
range with extreme inputs: a circuit's neurons compute f and f' in brian2, the VAE side in
numpy, and the mapping is only meaningful if the two agree everywhere (and stay finite)."""

import brian2
import numpy as np
import pytest

from pcbio.nonlinearities import NONLINEARITIES

U = np.concatenate([np.linspace(-50, 50, 2001), [-1e4, -800, -745, -710, -40, -1e-8, 0.0, 1e-8,
                                                  40, 710, 745, 800, 1e4]])


def evaluate(nl, target):
    """f and f' of ``nl`` computed by brian2 code (subexpressions of a NeuronGroup) at U."""
    brian2.prefs.codegen.target = target
    group = brian2.NeuronGroup(len(U), f"u : 1\nf = {nl.expression('u')} : 1\n"
                               f"df = {nl.derivative_expression('u')} : 1", namespace={})
    group.u = U
    brian2.Network(group).run(0 * brian2.ms, namespace={})     # a group that took part in a run
    with np.errstate(over="ignore"):
        return np.array(group.f_[:]), np.array(group.df_[:])


def check_against_numpy(target):
    for nl in NONLINEARITIES.values():
        f, df = evaluate(nl, target)
        with np.errstate(over="ignore"):
            want_f, want_df = nl.f(U), nl.df(U)
        np.testing.assert_allclose(f, want_f, rtol=1e-12, atol=1e-15, err_msg=nl.name)
        np.testing.assert_allclose(df, want_df, rtol=1e-9, atol=1e-15, err_msg=nl.name)
        if nl.name != "square":          # every bounded or log-linear f stays finite
            assert np.all(np.isfinite(f)) and np.all(np.isfinite(df)), nl.name


def test_brian2_expressions_match_numpy():
    """numpy target: f and f' agree with the numpy versions to round-off over [-1e4, 1e4],
    through the overflow points of exp (±710, ±745), and are finite (square excepted)."""
    check_against_numpy("numpy")


@pytest.mark.compiled
def test_brian2_expressions_match_numpy_in_cython():
    """The same under brian2's Cython target (C math functions instead of numpy's)."""
    check_against_numpy("cython")


def test_derivatives_are_derivatives():
    """Each f' is the derivative of its f: central differences of the numpy f at moderate u."""
    u = np.linspace(-6, 6, 241)
    h = 1e-6
    for nl in NONLINEARITIES.values():
        np.testing.assert_allclose(nl.df(u), (nl.f(u + h) - nl.f(u - h)) / (2 * h), atol=1e-8,
                                   err_msg=nl.name)


@pytest.mark.parametrize("name", sorted(NONLINEARITIES))
def test_f_into_an_array_equals_f(name):
    """``f(u, out=buf)`` (a pass writes f(z) into its own array at every step) returns ``buf``
    holding exactly ``f(u)``, in float64 and float32, for every nonlinearity."""
    nl = NONLINEARITIES[name]
    for dtype in (np.float64, np.float32):
        u = np.linspace(-30, 30, 60, dtype=dtype).reshape(3, 20)
        buf = np.full_like(u, np.nan)
        with np.errstate(over="ignore"):
            assert nl.f(u, out=buf) is buf
            np.testing.assert_array_equal(buf, nl.f(u))
