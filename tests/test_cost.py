"""The cost estimates that announce or refuse a large computation before it starts
(``pcbio/cost.py``): their thresholds, their scaling, and their memory against a real run."""

import numpy as np
import pytest
from brian2 import ms
from conftest import random_model

from pcbio import load_model
from pcbio.circuits import build_circuit
from pcbio.cost import Cost, check_affordable, inference_cost, simulation_cost
from pcbio.inference.laplace import laplace_posterior
from pcbio.simulate import simulate


def test_announcement_and_refusal_follow_the_documented_thresholds():
    """``check_affordable``'s contract (its docstring): silent below 10 s and 1 GB, an
    announcement ("expect about …") above either, a one-line refusal naming --force above an
    hour or 8 GB unless forced.  The durations are written in the unit a reader expects:
    seconds below 2 min, minutes below 2 h, hours above."""
    notes = []
    check_affordable(Cost(5.0, 1e6, "small"), False, notes.append)
    assert notes == []
    check_affordable(Cost(60.0, 1e6, "medium"), False, notes.append)
    assert notes == ["expect about 60 s and 1.0 MB of memory (medium)"]
    check_affordable(Cost(1.0, 2e9, "wide"), False, notes.append)
    assert notes[-1] == "expect about 1 s and 2.0 GB of memory (wide)"
    for cost in (Cost(2 * 3600.0, 1e6, "long"), Cost(1.0, 9e9, "big")):
        with pytest.raises(ValueError, match="add --force to run it anyway"):
            check_affordable(cost, False, notes.append)
    check_affordable(Cost(600.0, 5e3, "forced"), True, notes.append)
    assert notes[-1] == "expect about 10 min and 5 kB of memory (forced)"
    check_affordable(Cost(3 * 3600.0, 1e6, "forced"), True, notes.append)
    assert notes[-1].startswith("expect about 3.0 h")


def test_inference_cost_is_linear_in_the_batch_and_covers_its_result():
    """Every data point costs the same work (its own gradient passes and its own Laplace
    Hessian), so the estimate for 2000 points is twice that for 1000, in time and memory; and
    the memory announced is at least what the result holds: the Laplace posterior that point
    estimates are reported with, a (batch, D, D) covariance, computed here for 50 points of a
    model with D = 60 latent dimensions."""
    model = random_model(0, dims=(40, 40, 20))
    x = model.sample(50, seed=0)[0]
    held = laplace_posterior(model, x, model.prior_means(50)).cov.nbytes
    for method, steps in (("gradient", 500), ("map", 0)):
        one, two = (inference_cost(model, n, method, steps) for n in (1000, 2000))
        assert two.seconds == pytest.approx(2 * one.seconds, rel=1e-12)
        assert two.bytes == pytest.approx(2 * one.bytes, rel=1e-12)
        assert inference_cost(model, 50, method, steps).bytes >= held


def test_simulation_memory_estimate_matches_what_a_run_records():
    """The memory announced for a simulation is what its trajectory then holds, within the
    factor of a few the module promises: a real run of the rate circuit (4 points, 1000 steps,
    every 10th recorded) and the bytes of every array in the trajectory it returns."""
    model = load_model("linear_gaussian_3level")
    x = model.sample(4, seed=0)[0]
    traj = simulate(build_circuit(model, "rate"), x, duration=100 * ms, target="numpy",
                    record_every=10)
    held = traj.t.nbytes + sum(np.asarray(a).nbytes for field in (traj.means, traj.errors,
                                                                  traj.dzdt) for a in field)
    held += sum(np.asarray(a).nbytes for a in traj.raw.values())
    estimate = simulation_cost(model, 4, 1000, 10).bytes
    assert held / 3 < estimate < 3 * held
