"""The mapping layer: it must report exactness where the mathematics says so, and a gap where
it does not."""

import numpy as np
import pytest
from brian2 import ms

from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.inference import log_evidence
from pcbio.mapping import map_trajectory, relative_error, variance_gap
from pcbio.simulate import simulate


def run_and_map(name, x, errors="instant", duration=300 * ms, **kw):
    m = load_model(name)
    traj = simulate(build_circuit(m, "rate", errors=errors), x, duration=duration, target="numpy",
                    record_every=2)
    return m, map_trajectory(traj, m, x, **kw)


@pytest.mark.parametrize("name", ["linear_gaussian_2d", "linear_gaussian_3level"])
def test_linear_circuit_is_exact_elbo_gradient_ascent(name):
    """Linear-Gaussian, instantaneous errors: at every recorded step and level the circuit's dz/dt
    equals ∇_μ L/τ to round-off (cosine 1), error units equal ε, the fixed point is the exact
    posterior mean, Euler steps equal VAE iterative inference with α = dt/τ, and the ELBO of the
    final state (with the exact posterior covariance) equals log p(x); the variance gap, 0 by
    the mathematics, is skipped with the reason.  The circuit computes the
    gradient independently (in its neurons and pathways), so the two differ by round-off of the
    terms, ε·‖terms‖: relative to gradients down to 1e-6 of their peak (the mapping's cut-off)
    that is at most ~1e-16·1e6·‖terms‖/‖g‖_max < 1e-8; the median step is far from that bound."""
    m = load_model(name)
    x, _ = m.sample(2, seed=3)
    _, res = run_and_map(name, x)
    r = res.report
    assert r["reference"] == "exact_posterior" and r["exactness"] == "linear"
    for lev in r["levels"]:
        assert lev["grad_rel_err_max"] < 1e-8 and lev["grad_rel_err_median"] < 1e-11
        assert lev["grad_cosine_min"] > 1 - 1e-12
        assert lev["error_units_rel_err_max"] < 1e-12
        assert lev["fixed_point_rel_err"] < 1e-6
    assert max(r["step_equivalence_max_abs"]) < 1e-12
    np.testing.assert_allclose(r["elbo"]["final"], log_evidence(m, x), rtol=1e-9)
    assert np.all(np.array(r["elbo"]["initial"]) < np.array(r["elbo"]["final"]))
    # ∇_μ L does not depend on s for a linear model: the variance gap is left out, saying why
    assert "variance_gap" not in r and "linear model" in r["skipped_checks"]["variance_gap"]


def test_dynamic_errors_are_measured_as_a_departure():
    """With dynamic error units the circuit is not gradient ascent while the errors lag: the
    mapping reports a large gradient error and a step-equivalence gap, yet the same exact fixed
    point (so the metrics can tell the two modes apart)."""
    m = load_model("linear_gaussian_2d")
    x, _ = m.sample(1, seed=0)
    _, res = run_and_map("linear_gaussian_2d", x, errors="dynamic")
    lev = res.report["levels"][0]
    assert lev["grad_rel_err_max"] > 0.1 and lev["fixed_point_rel_err"] < 1e-6
    assert res.report["step_equivalence_max_abs"][0] > 1e-3


def test_nonlinear_gap_vanishes_as_s_goes_to_zero_and_grows_with_s():
    """tanh link: the circuit's fixed point is the MAP; its update equals ∇_μ L only as s → 0.
    The measured gap is below 1% at s = 0.01, and increases with s to O(1) at s = 1 — far beyond
    its Monte-Carlo standard error."""
    x = np.array([[1.0, 0.5, -0.8]])
    _, res = run_and_map("tanh_2level", x, s_values=(0.01, 0.1, 0.3, 1.0))
    r = res.report
    assert r["reference"] == "map" and r["exactness"] == "nonlinear"
    assert r["levels"][0]["fixed_point_rel_err"] < 1e-6
    gaps = r["variance_gap"]
    assert gaps[0]["rel_gap"] < 0.01
    values = [g["rel_gap"] for g in gaps]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert gaps[-1]["rel_gap"] > 0.3 and gaps[-1]["rel_gap"] > 10 * gaps[-1]["stderr"]


@pytest.mark.parametrize("name, x, exact", [("linear_gaussian_2d", [[1.0, -2.0, 0.5]], True),
                                             ("tanh_2level", [[1.0, 0.5, -0.8]], False)])
def test_comparing_against_elbo_gradient_at_finite_variance(name, x, exact):
    """Against ∇_μ L of q = N(z(t), s² I) with s = 0.5: the linear circuit still matches to
    round-off (∇_μ L does not depend on s; the expectation over points at ±s√D carries rounding of
    order 1e-16·s·‖H‖, large only relative to the vanishing gradient near the fixed point), the
    tanh circuit does not (its per-step gradient error is of the size of the variance gap)."""
    m = load_model(name)
    traj = simulate(build_circuit(m, "rate"), x, duration=50 * ms, target="numpy", record_every=5)
    lev = map_trajectory(traj, m, x, posterior_std=0.5, vae=False).report["levels"][0]
    if exact:
        assert lev["grad_rel_err_median"] < 1e-10 and lev["grad_cosine_min"] > 1 - 1e-10
    else:
        assert 0.05 < lev["grad_rel_err_median"] < 2.0 and lev["grad_cosine_min"] < 0.999


def test_variance_gap_scales_as_s_squared():
    """The gap is a bias E_q[∇ log p(μ + sγ)] − ∇ log p(μ) = ½ s² E[∇³ log p γγ] + O(s⁴) (Taylor
    expansion; odd terms vanish by symmetry), so for small s its log-log slope is 2."""
    m = load_model("tanh_2level")
    gaps = variance_gap(m, np.array([[1.0, 0.5, -0.8]]), [np.array([[0.3, -0.4]])], [0.003, 0.03])
    slope = np.log(gaps[1]["rel_gap"] / gaps[0]["rel_gap"]) / np.log(10)
    assert slope == pytest.approx(2.0, abs=0.1)


def test_variance_gap_is_zero_for_linear_models():
    """Linear-Gaussian: ∇_μ L does not depend on s, so the gap is exactly 0 (to round-off)."""
    m = load_model("linear_gaussian_3level")
    x, z = m.sample(2, seed=1)
    for g in variance_gap(m, x, z, [0.1, 1.0, 3.0]):
        assert g["rel_gap"] < 1e-12


def test_a_sampling_or_clamped_circuit_is_not_held_to_the_free_gradient_flow():
    """A nonlinear model (tanh_2level), where every check applies to the plain rate circuit.
    Noisy value units (temperature 1) sample around the fixed point instead of reaching it, and
    only their drift is a gradient step: the map skips ``fixed_point`` and
    ``step_equivalence``, saying why, and keeps the rest.  With the top clamped the circuit
    follows the gradient of log p(x, z) with z_L held fixed, not the posterior over every
    level: ``gradient_flow``, ``fixed_point``, ``elbo``, ``step_equivalence`` and
    ``variance_gap`` are all skipped."""
    import brian2
    brian2.seed(0)
    m = load_model("tanh_2level")
    x = m.sample(2, seed=0)[0]
    flow_checks = {"gradient_flow", "fixed_point", "elbo", "step_equivalence", "variance_gap"}
    for params, skipped, why in (({"temperature": 1.0}, {"fixed_point", "step_equivalence"},
                                  "noisy value units"),
                                 ({"top": "clamped"}, flow_checks, "the top level is clamped")):
        traj = simulate(build_circuit(m, "rate", **params), x, duration=5 * ms, target="numpy")
        report = map_trajectory(traj, m, x, vae=False).report
        assert flow_checks & set(report["skipped_checks"]) == skipped
        assert all(why in report["skipped_checks"][name] for name in skipped)
        assert flow_checks - skipped <= set(report["applicable_checks"])


def test_relative_error_ignores_vanishing_reference():
    """At a fixed point the reference gradient is 0 and a relative error is undefined: those
    steps are NaN, not a spurious huge number."""
    b = np.ones((3, 1, 2))
    b[2] = 0.0
    rel = relative_error(b * 1.1, b)
    np.testing.assert_allclose(rel[:2], 0.1)
    assert np.isnan(rel[2])


def test_firing_statistics_of_known_spike_trains():
    """``firing_statistics`` on spike trains written down by hand (2 s): a 10 Hz clock (20
    spikes, CV 0), a train with intervals 0.2, 0.1 and 0.4 s (CV = their standard deviation
    over their mean), one spike (no CV: fewer than 3 spikes) and a silent unit.  Rates are
    spikes per second, the CV averages the two units with 3 or more spikes, one unit in four
    is silent."""
    from pcbio.mapping import firing_statistics
    from pcbio.trajectory import CircuitRunInfo, Trajectory
    trains = {0: np.arange(1, 21) * 0.1, 1: np.array([0.1, 0.3, 0.4, 0.8]), 2: np.array([1.0])}
    idx = np.concatenate([np.full(len(t), k) for k, t in trains.items()])
    times = np.concatenate(list(trains.values()))
    order = np.argsort(times, kind="stable")           # a monitor lists spikes in time order
    info = CircuitRunInfo({"circuit": "spiking"}, {}, {}, 0.1, 1e-4, 1e-3, 1, "numpy", "matrix",
                          duration_s=2.0)
    traj = Trajectory(t=np.zeros(1), time_unit="s", means=[np.zeros((1, 1, 1))], info=info,
                      raw={"p": np.zeros((1, 1, 4))}, spikes={"p": (idx[order], times[order])})
    stats = firing_statistics(traj)["p"]
    intervals = np.diff(trains[1])
    cv = np.std(intervals) / np.mean(intervals)
    assert stats["units"] == 4 and stats["fraction_silent"] == 0.25
    assert stats["mean_rate_hz"] == pytest.approx((20 + 4 + 1) / 2.0 / 4, rel=1e-12)
    assert stats["max_rate_hz"] == pytest.approx(10.0, rel=1e-12)
    assert stats["cv_isi"] == pytest.approx((0.0 + cv) / 2, abs=1e-9)


def test_variance_gap_averages_independent_seeds_and_gives_their_standard_error():
    """For a nonlinear model the gap at each s is the mean over ``repeats`` Monte-Carlo
    estimates with seeds seed, seed + 1, … and its standard error is their sample standard
    deviation over √repeats — the same estimates computed one seed at a time."""
    m = load_model("tanh_2level")
    x, z = np.array([[1.0, 0.5, -0.8]]), [np.array([[0.3, -0.4]])]
    one = [variance_gap(m, x, z, [0.3], n_samples=50, repeats=1, seed=7 + r)[0]["rel_gap"]
           for r in range(4)]
    got = variance_gap(m, x, z, [0.3], n_samples=50, repeats=4, seed=7)[0]
    assert got["rel_gap"] == pytest.approx(np.mean(one), rel=1e-12)
    assert got["stderr"] == pytest.approx(np.std(one, ddof=1) / 2, rel=1e-12)
    assert got["stderr"] > 0


def test_report_measures_are_the_documented_distances_of_the_run():
    """The report's numbers, recomputed from the trajectory: a run stopped after 20 ms with
    τ = 100 ms (far from converged) has ``fixed_point_rel_err = ‖z(T) − μ*‖ / ‖μ*‖`` against the exact
    posterior mean, and ``map_circuit`` records at most 2000 steps (10,000 steps of 0.1 ms are
    recorded every 0.5 ms)."""
    from pcbio.inference import exact_posterior
    from pcbio.mapping import map_circuit
    m = load_model("linear_gaussian_2d")
    x = np.array([[1.0, -2.0, 0.5]])
    traj = simulate(build_circuit(m, "rate", tau=100 * ms), x, duration=20 * ms, target="numpy")
    report = map_trajectory(traj, m, x, vae=False).report
    mu = exact_posterior(m, x).means[0]
    want = np.linalg.norm(traj.means[0][-1] - mu) / np.linalg.norm(mu)
    assert want > 0.05
    assert report["levels"][0]["fixed_point_rel_err"] == pytest.approx(want, rel=1e-12)
    long = map_circuit(m, x, "rate", duration=1000 * ms, target="numpy")
    assert long["circuit"]["record_dt_s"] == pytest.approx(5e-4, rel=1e-12)
