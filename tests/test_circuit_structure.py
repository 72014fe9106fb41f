"""Declared structure: consistency checks, the within-step schedule of instantaneous chains,
and the encodings' parameters."""

import brian2
import numpy as np
import pytest

from conftest import random_model
from pcbio.circuits import build_circuit
from pcbio.circuits.structure import Pathway, Population, check_structure, schedule
from pcbio.encoding import RateEncoding, VoltageEncoding
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


@pytest.mark.parametrize("make, error, message", [
    (lambda: RateEncoding(gain=0 * brian2.Hz), ValueError, "gain must be non-zero"),
    (lambda: RateEncoding(gain=10 * brian2.mV), TypeError, "gain must be a rate"),
    (lambda: RateEncoding(baseline=5), TypeError, "baseline must be a rate"),
    (lambda: VoltageEncoding(baseline=np.inf * brian2.mV), ValueError,
     "baseline must be finite"),
    (lambda: RateEncoding().equations("z", "s", derivative="dzdt", value="I_in"), ValueError,
     "at most one of derivative or value"),
])
def test_encodings_refuse_parameters_that_code_nothing(make, error, message):
    """A linear code ``n = n0 + κ z`` needs a baseline and a gain in the neural variable's unit,
    finite, and κ ≠ 0 (else z cannot be decoded); a neural variable is either integrated or
    follows a value, not both.  Each is an error naming the parameter."""
    with pytest.raises(error, match=message):
        make()


def test_encodings_describe_themselves_in_their_own_units():
    """Results files record an encoding in the unit it is written in (Hz for a rate code, mV for
    a membrane potential), not in SI: a −65 mV, 2 mV/unit voltage code is ``-65`` and ``2``."""
    assert VoltageEncoding(-65 * brian2.mV, 2 * brian2.mV).describe() == {
        "kind": "voltage", "baseline_mV": pytest.approx(-65), "gain_mV": pytest.approx(2)}
    assert RateEncoding(40 * brian2.Hz, 3 * brian2.Hz).describe() == {
        "kind": "rate", "baseline_Hz": 40, "gain_Hz": 3}
