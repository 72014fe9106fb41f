"""Checks against independent facts for corners that a comparison of pcbio with itself would not
see: Monte-Carlo seed schedules, the finite-difference Hessian, the rate code as a change of
variables, the derivative estimated from decoded values, how the mapping passes a posterior
standard deviation on, the exact boundary of the Euler stability check, and the reported
convergence time."""

import numpy as np
import pytest
from brian2 import Hz, ms

from conftest import bogacz_curvature
from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.encoding import RateEncoding
from pcbio.inference import GaussianPosterior, elbo_gradient, gradient_inference, neg_hessian
from pcbio.mapping import map_trajectory
from pcbio.model import GenerativeModel, Link
from pcbio.simulate import simulate


def one_dimensional(w=1.0, var_x=1.0, var_z=1.0, mean=0.0):
    return GenerativeModel([mean], var_z, [Link([[w]], cov=var_x)], name="1d")


def one_dimensional_posterior(w, var_x, var_z, mean, x):
    """Precision λ and mean z* of the exact posterior of :func:`one_dimensional` given x
    (a product of two Gaussians): λ = w²/σ_x² + 1/σ_z², z* = (w x/σ_x² + m/σ_z²)/λ."""
    lam = w * w / var_x + 1 / var_z
    return lam, (w * x / var_x + mean / var_z) / lam


def test_monte_carlo_seed_schedule_of_gradient_inference():
    """With a Gaussian q, step k of gradient inference uses noise seed ``seed + k`` (documented):
    three steps equal three explicit ELBO-gradient steps with seeds 7, 8, 9."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8]])
    z = m.prior_means(1)
    traj = gradient_inference(m, x, steps=3, step_size=0.1, log_var=-2.0, n_samples=8, seed=7)
    for k in range(3):
        q = GaussianPosterior(z, log_var=[np.full_like(zl, -2.0) for zl in z])
        g = elbo_gradient(m, x, q, n_samples=8, seed=7 + k, parameters=False)
        z = [zl + 0.1 * gl for zl, gl in zip(z, g.means)]
        np.testing.assert_allclose(traj.means[0][k + 1], z[0], rtol=1e-12)


@pytest.mark.parametrize("v", [0.3, 1.0, 1.567, 2.5])
def test_finite_difference_hessian_matches_bogacz_closed_form(v):
    """Bogacz (2017): the finite-difference Hessian is the closed-form curvature
    1 + 6v² − 2u (conftest.bogacz_curvature; here u = 2)."""
    m = load_model("bogacz2017")
    H = neg_hessian(m, [[2.0]], [np.array([[v]])])
    assert H[0, 0, 0] == pytest.approx(bogacz_curvature(v, 2.0), rel=1e-7)


def test_rate_code_is_only_a_change_of_variables():
    """A different baseline and gain (r = 40 Hz + 3 Hz·z instead of 0 Hz + 10 Hz·z) changes the
    rates but not the decoded dynamics (nonlinear link, dynamic errors)."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8]])
    runs = [simulate(build_circuit(m, "rate", errors="dynamic", value_encoding=enc,
                                   error_encoding=enc), x, duration=20 * ms, target="numpy")
            for enc in (RateEncoding(), RateEncoding(40 * Hz, 3 * Hz))]
    for a, b in zip(runs[0].means + runs[0].errors, runs[1].means + runs[1].errors):
        np.testing.assert_allclose(a, b, atol=1e-10)
    assert not np.allclose(runs[0].raw["value_1"], runs[1].raw["value_1"])


def test_estimated_derivative_is_exact_for_a_quadratic_between_the_ends():
    """Decoded values without a state derivative get ``dz/dt`` from central differences, which
    on any grid (second order, also for uneven steps) are exact for a quadratic: for
    z(t) = 3t² − t recorded at uneven times, 6t − 1 at every inner time; at the two ends the
    one-sided difference quotients."""
    t = np.cumsum([0.0, 0.01, 0.02, 0.015, 0.03, 0.01])
    z = (3 * t ** 2 - t)[:, None, None] * np.ones((1, 2, 3))            # (T, batch, d)
    dz = RateEncoding().derivative(z, t)
    np.testing.assert_allclose(dz[1:-1], (6 * t[1:-1] - 1)[:, None, None] * np.ones((1, 2, 3)),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dz[[0, -1], 0, 0], [(z[1, 0, 0] - z[0, 0, 0]) / (t[1] - t[0]),
                                                   (z[-1, 0, 0] - z[-2, 0, 0]) / (t[-1] - t[-2])])


def test_mapping_passes_the_posterior_std_on():
    """map_trajectory(posterior_std=s) compares dz/dt with ∇_μ L of N(z(t), s² I): for a run of
    one recorded step its gradient series equals elbo_gradient evaluated here at that s (same
    antithetic noise), divided by τ — and differs from ∇_z log p, the s → 0 limit."""
    m = load_model("tanh_2level")
    x = np.array([[1.0, 0.5, -0.8]])
    traj = simulate(build_circuit(m, "rate", tau=10 * ms), x, duration=0.1 * ms, target="numpy")
    assert len(traj) == 1
    s = 0.4
    res = map_trajectory(traj, m, x, posterior_std=s, vae=False)
    z = traj.at(0)
    q = GaussianPosterior(z, log_var=[np.full_like(zl, 2 * np.log(s)) for zl in z])
    g = elbo_gradient(m, x, q, n_samples=256, seed=0, parameters=False, antithetic=True)
    np.testing.assert_allclose(res.series["grads"][0][0], g.means[0] / 10e-3, rtol=1e-12)
    point = m.grad_log_joint(x, z)[0] / 10e-3
    assert np.abs(res.series["grads"][0][0] - point).max() > 1e-3 * np.abs(point).max()
    assert "s = 0.4" in res.report["gradient_compared"]


def test_stability_check_boundary_is_exact():
    """1-D linear model with w = 1 and unit variances: λ = w²/σ_x² + 1/σ_z² = 2, so with
    τ = 10 ms Euler is stable only for dt < 10 ms: dt = 10 ms is refused, 9.9 ms accepted."""
    m = one_dimensional()
    circuit = build_circuit(m, "rate", tau=10 * ms)
    with pytest.raises(ValueError, match="dt=10. ms is too large.*use dt < 10 ms"):
        simulate(circuit, [[1.0]], duration=50 * ms, dt=10 * ms, target="numpy")
    simulate(circuit, [[1.0]], duration=50 * ms, dt=9.9 * ms, target="numpy")


def test_reported_convergence_time_has_the_euler_closed_form():
    """1-D linear model under Euler: z_k − z* = (1 − αλ)^k (z_0 − z*) with α = dt/τ, and the
    drift |τ dz/dt| = λ |z_k − z*|.  The first recorded time from which the drift stays below
    tol is t = k·dt with k the smallest integer where λ|z_0 − z*|(1 − αλ)^k < tol; a run until
    convergence, checked every 10 τ, stops at the first check after it — for a slow mode too,
    where comparing |dz/dt| instead of τ|dz/dt| with tol would stop a check later."""
    w, var_x, var_z, mean, x = 1.5, 0.5, 2.0, 0.3, 1.2
    m = one_dimensional(w, var_x, var_z, mean)
    lam, z_star = one_dimensional_posterior(w, var_x, var_z, mean, x)
    dt, tau, tol = 0.1e-3, 10e-3, 1e-6
    alpha = dt / tau
    k = int(np.ceil(np.log(tol / (lam * abs(mean - z_star))) / np.log(1 - alpha * lam)))
    traj = simulate(build_circuit(m, "rate", tau=10 * ms), [[x]], duration=100 * ms, dt=0.1 * ms,
                    target="numpy", tol=tol)
    assert traj.info.t_converged_s == pytest.approx(k * dt, abs=1e-12)
    # run until converged, the circuit is checked every 10 τ (the documented interval): it
    # stops at the first check after k·dt, not at the end of the 1 s allowed
    until = simulate(build_circuit(m, "rate", tau=10 * ms), [[x]], duration=1000 * ms,
                     dt=0.1 * ms, target="numpy", tol=tol, until_converged=True)
    assert until.info.stop_reason == "converged"
    assert until.info.duration_s == pytest.approx(np.ceil(k * dt / (10 * tau)) * 10 * tau,
                                                  rel=1e-9)
    # a slow mode (λ = 0.5) and tol = drift₀ e⁻⁴: k = 798 steps, so the run stops at the first
    # check, 10 τ = 1000 steps; the drift is τ|dz/dt| (model units), and comparing |dz/dt| (1/s,
    # 100 × larger here) with tol would take ln 100/(αλ) ≈ 919 more steps, past that check
    slow = one_dimensional(0.5, 1.0, 4.0, mean)
    lam, z_star = one_dimensional_posterior(0.5, 1.0, 4.0, mean, x)
    tol = lam * abs(mean - z_star) * np.exp(-4)
    k = int(np.ceil(-4 / np.log(1 - alpha * lam)))
    assert k < 1000 < k + np.log(100) / -np.log(1 - alpha * lam)
    until = simulate(build_circuit(slow, "rate", tau=10 * ms), [[x]], duration=1000 * ms,
                     dt=0.1 * ms, target="numpy", tol=tol, until_converged=True)
    assert until.info.t_converged_s == pytest.approx(k * dt, abs=1e-12)
    assert until.info.duration_s == pytest.approx(10 * tau, rel=1e-9)
