"""Declared structure: consistency checks and the within-step schedule of instantaneous chains."""

import numpy as np
import pytest

from conftest import random_model
from pcbio.circuits import build_circuit
from pcbio.circuits.structure import Pathway, Population, check_structure, schedule
from pcbio.encoding import RateEncoding
from pcbio.neurons import rate as neurons
from pcbio.nonlinearities import NONLINEARITIES


def instant(name, size=2):
    return Population(name, "error", 0, size, neurons.instant_error_unit(), RateEncoding())


def value(name, size=2):
    return Population(name, "value", 1, size, neurons.value_unit(NONLINEARITIES["identity"]),
                      RateEncoding())


def test_schedule_is_the_longest_path_through_instantaneous_neurons():
    """value → e1 → e2 → e3 (instantaneous): e_k's output can be known only after k deliveries,
    so its stage is k and the pathway reading it has stage k; integrated state is stage 0."""
    pops = [value("v"), instant("e1"), instant("e2"), instant("e3")]
    one = np.ones(2)
    paths = [Pathway("a", "v", "z", "e1", "I_in", one), Pathway("b", "e1", "eps", "e2", "I_in", one),
             Pathway("c", "e2", "eps", "e3", "I_in", one), Pathway("d", "e3", "eps", "v", "I_in", one)]
    out, pw = schedule(pops, paths)
    assert out[("v", "z")] == 0 and out[("e1", "eps")] == 1 and out[("e3", "eps")] == 3
    assert pw == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_algebraic_loop_is_refused():
    """Two instantaneous neurons feeding each other within one step have no consistent order."""
    one = np.ones(2)
    with pytest.raises(ValueError, match="algebraic loop"):
        schedule([instant("e1"), instant("e2")],
                 [Pathway("a", "e1", "eps", "e2", "I_in", one), Pathway("b", "e2", "eps", "e1", "I_in", one)])


@pytest.mark.parametrize("bad, message", [
    (Pathway("p", "v", "nope", "e", "I_in", np.ones(2)), "has no output 'nope'"),
    (Pathway("p", "v", "z", "e", "I_bu", np.ones(2)), "has no port 'I_bu'"),
    (Pathway("p", "v", "z", "x", "I_in", np.ones(2)), "unknown population 'x'"),
    (Pathway("p", "v", "z", "e", "I_in", np.ones((3, 2))), "weights have shape"),
    (Pathway("p", "v", "z", "e", "v", np.ones(2), kind="jump"), "a jump needs a spiking source"),
])
def test_inconsistent_declarations_are_refused(bad, message):
    """A pathway must name existing populations, an output of its source, a port of its
    target, and weights of shape (post, pre) or (size,); only a spiking source can make the
    instantaneous jumps of fast inhibition."""
    with pytest.raises(ValueError, match=message):
        check_structure([value("v"), instant("e")], [bad])


def test_populations_must_be_distinct_and_one_to_one_pathways_equal_in_size():
    """Two populations of one name would be one brian2 group; a one-to-one pathway pairs unit
    k with unit k, which needs as many on both sides (its weights, one per target unit, could
    not show the mismatch)."""
    with pytest.raises(ValueError, match="population names must be unique"):
        check_structure([value("v"), instant("v")], [])
    with pytest.raises(ValueError, match="one-to-one needs equal sizes"):
        check_structure([value("v", 2), instant("e", 3)],
                        [Pathway("p", "v", "z", "e", "I_in", np.ones(3))])


def test_rate_circuit_structure_for_an_mlp_link():
    """An MLP link adds hidden units between the value units above and the error units below,
    with forward (A), prediction (−ΠW), bottom-up (Wᵀ) and backward (Aᵀ) pathways."""
    m = random_model(3, dims=(3, 2), fs=["tanh"], hidden=[4])
    pops, paths = build_circuit(m, "rate").structure()
    roles = {p.name: p.role for p in pops}
    assert roles["hidden_0"] == "hidden" and {p.size for p in pops if p.role == "hidden"} == {4}
    names = {pw.name: (pw.pre, pw.post) for pw in paths}
    assert names["fwd_0"] == ("value_1", "hidden_0") and names["back_0"] == ("hidden_0", "value_1")
    assert names["pred_0"] == ("hidden_0", "error_0") and names["bu_0"] == ("error_0", "hidden_0")
