"""The three-compartment pyramidal cell against the closed forms of its linear circuit, the
stability condition of its stiff equations, and the two-layer (MLP) cell."""

import brian2
import numpy as np
import pytest
from brian2 import mV, ms, nA, nS, pF
from scipy.optimize import brentq

from conftest import linear_relaxation
from pcbio.model import Link
from pcbio.neurons.pyramidal import PyramidalCell, PyramidalParameters, two_layer_cells

P = PyramidalParameters()
#: dendrites with their own membrane, unlike the soma's (300 pF, 30 nS): where the code takes a
#: soma constant for a dendrite's, or the reverse, these parameters show it and the defaults not
OWN_DENDRITES = PyramidalParameters(dendrite_capacitance=150 * pF, dendrite_leak=10 * nS)
E = float(P.E_leak)


def _conductances(p):
    """``(g_L, g_Ld, g_B, g_A)`` of parameters ``p`` as plain floats (S)."""
    return float(p.g_leak), float(p.dendrite_leak), float(p.g_basal), float(p.g_apical)


def _circuit(p):
    """The compartmental cell's capacitances and conductance matrix with parameters ``p``, read
    off its equations (soma, basal, apical): ``diag(c) dv/dt = −G (v − E) + I``."""
    gL, gLd, gB, gA = _conductances(p)
    G = np.array([[gL + gB + gA, -gB, -gA], [-gB, gLd + gB, 0], [-gA, 0, gLd + gA]])
    return np.array([float(p.capacitance), *[float(p.dendrite_capacitance)] * 2]), G


CAPACITANCES, G = _circuit(P)
C = CAPACITANCES[0]
gL, gLd, gB, gA = _conductances(P)


def _run(cell, dt, duration, method="euler", check=True, **currents):
    """Run one cell (numpy target) from rest with constant input currents; returns times (s)
    and the recorded potentials (T, n) in volt."""
    brian2.prefs.codegen.target = "numpy"
    if check:
        group = cell.group(1, dt, method=method)
    else:
        group = brian2.NeuronGroup(1, cell.equations(), method=method, dt=dt,
                                   namespace=cell.namespace())
        for var in cell.compartments:
            setattr(group, var, P.E_leak)
    for name, value in currents.items():
        setattr(group, name, value)
    mon = brian2.StateMonitor(group, list(cell.compartments), record=0, dt=dt)
    net = brian2.Network(group, mon)
    net.run(duration, namespace={})
    return mon.t_[:], np.stack([getattr(mon, v + "_")[0] for v in cell.compartments], axis=1)


def test_instant_form_steady_state_is_the_conductance_weighted_average():
    """Sacramento et al. (2018): with instantaneous dendrites the soma settles at
    ``u* = (g_L E + g_B v_B + g_A v_A)/(g_L + g_B + g_A)`` with the effective time constant
    ``C/(g_L + g_B + g_A)``; the dendritic potentials here are ``E + I/g_Ld`` (a dendritic
    leak of 10 nS, not the soma's 30 nS)."""
    cell = PyramidalCell(OWN_DENDRITES, "instant")
    I_b, I_a = 0.3 * nA, -0.2 * nA
    t, v = _run(cell, 0.005 * ms, 10 * ms, method="rk4", I_b=I_b, I_a=I_a)
    g_ld = float(OWN_DENDRITES.dendrite_leak)
    vb, va = E + float(I_b) / g_ld, E + float(I_a) / g_ld
    u_star = (gL * E + gB * vb + gA * va) / (gL + gB + gA)
    assert abs(v[-1, 0] - u_star) < 1e-9 * abs(u_star)
    star = cell.steady_state(I_b=float(I_b), I_a=float(I_a))
    assert star["v_s"] == pytest.approx(u_star, rel=1e-12)
    assert (star["v_b"], star["v_a"]) == (pytest.approx(vb, rel=1e-15), pytest.approx(va, rel=1e-15))
    tau = C / (gL + gB + gA)
    assert cell.time_constants()[0] == pytest.approx(tau, rel=1e-12)
    k = np.searchsorted(t, tau)         # one time constant: 1 − 1/e of the way
    assert (v[k, 0] - E) / (u_star - E) == pytest.approx(1 - np.exp(-t[k] / tau), abs=1e-4)


def test_time_constants_are_the_inverse_decay_rates_slowest_first():
    """The compartmental cell's modes decay as ``exp(−λ t)`` with λ the eigenvalues of
    ``diag(c)⁻¹ G``: ``time_constants()`` are the 1/λ, slowest first as documented."""
    rates = np.sort(np.linalg.eigvals(G / CAPACITANCES[:, None]).real)
    np.testing.assert_allclose(PyramidalCell(P, "compartmental").time_constants(), 1 / rates,
                               rtol=1e-12)


@pytest.mark.slow
def test_compartmental_form_follows_the_linear_circuit_solution():
    """Three integrated compartments: the simulated potentials equal the exact solution
    ``v(t) = v* + exp(−C⁻¹G t)(E − v*)`` of the linear circuit (G read off the
    equations), the slowest decay matches the slowest eigenvalue, and the steady-state
    apical→soma attenuation is ``g_A / (g_L + g_A + g_B g_Ld/(g_Ld + g_B))``."""
    cell = PyramidalCell(P, "compartmental")
    c = CAPACITANCES
    I = np.array([0.1e-9, 0.0, 0.4e-9])
    t, v = _run(cell, 0.01 * ms, 40 * ms, method="rk4", I_s=I[0] * brian2.amp,
                I_a=I[2] * brian2.amp)
    v_star = E + np.linalg.solve(G, I)
    exact = linear_relaxation(G / c[:, None], v_star, np.full(3, E), t)
    assert np.abs(v - exact).max() < 1e-9            # volt: rk4 at dt 10 µs
    eig = np.sort(np.linalg.eigvals(G / c[:, None]).real)
    late = (t > 20e-3) & (t < 30e-3)           # only the slowest mode is left
    slope = np.polyfit(t[late], np.log(np.abs(v[late, 0] - v_star[0])), 1)[0]
    assert -1 / slope == pytest.approx(1 / eig[0], rel=1e-3)
    att = gA / (gL + gA + gB * gLd / (gLd + gB))
    assert cell.attenuation()["apical"] == pytest.approx(att, rel=1e-12)
    only_apical = PyramidalCell(P, "compartmental")
    _, va = _run(only_apical, 0.05 * ms, 250 * ms, method="rk4", I_a=0.4 * nA)
    assert (va[-1, 0] - E) / (va[-1, 2] - E) == pytest.approx(att, rel=1e-6)


def test_dendrites_with_their_own_membrane_follow_the_closed_forms():
    """Dendrites of 150 pF and 10 nS on a soma of 300 pF and 30 nS: the simulated compartmental
    cell (rk4, 10 µs) equals the exact solution ``v* + exp(−diag(c)⁻¹G t)(E − v*)`` of the linear
    circuit read off its equations, ``response`` returns that solution, and the steady-state
    attenuations are those of the circuit: a current into one dendrite reaches the soma through
    its coupling while the other dendrite loads the soma as its leak in series with its
    coupling, ``g_A / (g_L + g_A + g_B g_Ld/(g_Ld + g_B))`` (apical) and
    ``g_B / (g_L + g_B + g_A g_Ld/(g_Ld + g_A))`` (basal)."""
    cell = PyramidalCell(OWN_DENDRITES, "compartmental")
    c, G_own = _circuit(OWN_DENDRITES)
    I = np.array([0.1e-9, -0.3e-9, 0.4e-9])
    t, v = _run(cell, 0.01 * ms, 5 * ms, method="rk4",
                **{name: value * brian2.amp for name, value in zip(("I_s", "I_b", "I_a"), I)})
    exact = linear_relaxation(G_own / c[:, None], E + np.linalg.solve(G_own, I), np.full(3, E), t)
    assert np.abs(v - exact).max() < 1e-9                # volt
    np.testing.assert_allclose(cell.response(t, *I), exact, rtol=0, atol=1e-12)
    g_l, g_ld, g_b, g_a = _conductances(OWN_DENDRITES)
    assert cell.attenuation() == {
        "apical": pytest.approx(g_a / (g_l + g_a + g_b * g_ld / (g_ld + g_b)), rel=1e-12),
        "basal": pytest.approx(g_b / (g_l + g_b + g_a * g_ld / (g_ld + g_a)), rel=1e-12)}


@pytest.mark.parametrize("method, taylor", [("euler", [1, 1]), ("rk2", [1, 1, 1 / 2]),
                                            ("heun", [1, 1, 1 / 2]),
                                            ("rk4", [1, 1, 1 / 2, 1 / 6, 1 / 24])])
def test_stability_limits_are_where_each_methods_amplification_reaches_one(method, taylor):
    """On a decaying mode ``dv/dt = −λ v`` an explicit Runge–Kutta method with as many stages as
    its order p ≤ 4 multiplies v per step by ``R(−dt λ)``, R the Taylor polynomial of exp to
    order p; it is stable up to the first ``dt λ`` where ``|R| = 1``: 2 for Euler and the
    second-order methods, 2.785 for RK4 (Hairer & Wanner, Solving ODEs II, §IV.2).  The cell's
    largest stable step is that over its fastest decay rate."""
    R = np.polynomial.Polynomial(taylor)
    limit = brentq(lambda x: abs(R(-x)) - 1, 1.0, 3.0, xtol=1e-12)
    cell = PyramidalCell(P, "compartmental")
    fastest = 1 / cell.time_constants().min()
    assert cell.largest_stable_dt(method) * fastest == pytest.approx(limit, rel=2e-4)


def test_stiff_coupling_is_refused_before_the_run_because_euler_diverges():
    """Strong dendro-somatic coupling (g = 6 µS on 300 pF) makes the equations stiff: explicit
    Euler is stable only while dt·λ_max < 2.  The cell refuses a larger step before running; run
    anyway (bypassing the check), Euler diverges, and just below the limit it settles."""
    stiff = PyramidalCell(PyramidalParameters(g_basal=6000 * nS, g_apical=6000 * nS), "compartmental")
    lam = 1 / stiff.time_constants().min()
    limit = 2 / lam
    above, below = 1.2 * limit * brian2.second, 0.8 * limit * brian2.second
    with pytest.raises(ValueError, match="too large for 'euler'"):
        stiff.check_step(above, "euler")
    stiff.check_step(below, "euler")
    _, v = _run(stiff, above, 5 * ms, check=False, I_a=0.2 * nA)
    assert not np.all(np.abs(v[-1] - E) < 1.0)             # grown beyond a volt (or NaN)
    _, v = _run(stiff, below, 400 * ms, check=False, I_a=0.2 * nA)
    star = stiff.steady_state(I_a=0.2e-9)
    assert abs(v[-1, 0] - star["v_s"]) < 1e-9
    with pytest.raises(ValueError, match="rk4"):          # the group refuses it up front too
        stiff.group(1, 1.01 * 2.785 * stiff.time_constants().min() * brian2.second, method="rk4")


def test_bad_cell_parameters_are_refused():
    """Parameters without units or non-positive conductances are errors naming the field."""
    with pytest.raises(TypeError, match="g_basal"):
        PyramidalParameters(g_basal=300)
    with pytest.raises(ValueError, match="capacitance"):
        PyramidalParameters(capacitance=0 * pF)
    with pytest.raises(TypeError, match="E_leak"):
        PyramidalParameters(E_leak=-70)
    with pytest.raises(ValueError, match="form"):
        PyramidalCell(P, "cable")


def test_two_layer_cells_refuse_a_link_or_inputs_they_cannot_compute():
    """``two_layer_cells`` needs an MLP link (the branches are its hidden units) and inputs with
    the link's width; anything else is a one-line error before any brian2 object exists."""
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="needs an MLP link"):
        two_layer_cells(Link(rng.normal(size=(3, 2)), np.zeros(3)), np.zeros((1, 2)))
    mlp = Link(rng.normal(size=(3, 4)), np.zeros(3), f="tanh",
               hidden_weights=rng.normal(size=(4, 2)), hidden_bias=np.zeros(4))
    with pytest.raises(ValueError, match=r"z must have shape \(batch, 2\)"):
        two_layer_cells(mlp, np.zeros((1, 3)))


def test_two_layer_cells_compute_the_mlp_forward_pass(cython_forbidden):
    """Poirazi, Brannon & Mel (2003): a cell whose apical branches are sigmoidal subunits is a
    two-layer network.  Compiled from an MLP link, the cells' steady somatic potentials equal
    the MLP's output ``W f(A z + a) + b`` and their branches' outputs its hidden layer.  Built
    and run with the numpy target (its default) without generating any Cython code, whatever
    brian2's default target."""
    rng = np.random.default_rng(3)
    link = Link(rng.normal(size=(3, 6)), rng.normal(size=3), f="tanh",
                hidden_weights=rng.normal(size=(6, 2)), hidden_bias=rng.normal(size=6) * 0.5)
    z = np.array([[0.4, -0.9], [-1.2, 0.3], [0.0, 2.0]])
    out = two_layer_cells(link, z, gain=2 * mV)
    hidden = np.tanh(z @ link.A.T + link.a)
    np.testing.assert_allclose(out["branches"], np.repeat(hidden[:, None, :], 3, axis=1),
                               atol=1e-12)
    np.testing.assert_allclose(out["soma"], hidden @ link.W.T + link.b, atol=1e-9)
