"""Rate-neuron types of the predictive-coding circuit (``docs/mathematics.md`` §3; Bogacz 2017
§2.3, §5), in model units.  Each right-hand side is written once; the rate code that turns the
model variable into a firing rate comes from the population's encoding, and every input arrives
through an open port (see :mod:`pcbio.neurons.base`).

* value unit (latent ``z_l``):     ``τ dz/dt = f'(z)·I_bu + I_in [+ √(2Tτ) ξ(t)]``
  (``I_bu`` = ``W_{l-1}ᵀ ε_{l-1}``, the bottom-up error; ``I_in`` = ``−ε_l`` and anything else);
  outputs ``z`` and ``f(z)`` (what the level below is predicted from).  With temperature
  ``T > 0`` the unit is noisy: a Langevin equation whose stationary density is
  ``∝ p(x, z)^{1/T}`` — the posterior itself at T = 1 (``docs/mathematics.md`` §9).
* error unit, instantaneous:       ``ε = I_in``  (``I_in`` = ``Π z − Π g``, delivered)
* error unit, dynamic:             ``τ_ε dε/dt = I_in``  (``I_in`` = ``z − g − Σ ε``; Bogacz eqs. 12–14)
* precision interneuron:           ``τ_i d inh/dt = I_in − inh``  (``I_in`` = ``Σ ε``; Bogacz §5)
* hidden unit of an MLP link:      ``u = I_in`` (``A z + a``); outputs ``f(u)`` forward and
  ``f'(u)·I_bu`` backward (``I_bu`` = ``Wᵀ ε`` from below)
* lateral unit (flow front end):    ``τ_y dy/dt = I_in − shunt·y``  (``I_in`` = ``F x − L y`` and a
  bias: feed-forward and lateral inhibition; the steady state is the flow's normalized y)
* data unit: its rate is set from outside (the stimulus); output ``x``.
"""

from __future__ import annotations

from brian2 import Quantity, ms

from ..nonlinearities import Nonlinearity
from .base import NeuronModel


def _in(nl: Nonlinearity, var: str):
    """The nonlinearity's brian2 expressions ``(f, f')`` in the variable ``var``."""
    return nl.expression(var), nl.derivative_expression(var)


def value_unit(nl: Nonlinearity, tau: Quantity = 10 * ms, temperature: float = 0.0,
               gain: bool = False) -> NeuronModel:
    """Latent estimate z of one level; ``nl`` is the link nonlinearity applied to z when the
    level below is predicted (identity when an MLP's hidden units apply it instead).
    ``temperature`` T >= 0 adds the white noise ``√(2T/τ) ξ(t)`` to dz/dt (none at 0).
    ``gain``: the drive is multiplied by a port ``I_gain`` (a learned, state-dependent step,
    ``docs/mathematics.md`` §13)."""
    f, df = _in(nl, "z")
    noisy = temperature > 0
    return NeuronModel(f"""
dzdt = {"I_gain * " if gain else ""}(gate * I_bu + I_in) / tau : Hz
gate = {df} : 1
fz = {f} : 1
""", model_var="z", derivative="dzdt", ports=("I_in", "I_bu") + (("I_gain",) if gain else ()),
        outputs=("z", "fz"),
        constants={"tau": tau, **({"temperature": temperature} if noisy else {})},
        noise="sqrt(2 * temperature / tau) * xi" if noisy else None)


def relay_unit(model_var: str) -> NeuronModel:
    """A unit whose model variable ``model_var`` follows its input ``I_in`` instantly."""
    return NeuronModel("", model_var=model_var, value="I_in", ports=("I_in",),
                       outputs=(model_var,))


def instant_error_unit() -> NeuronModel:
    """Precision-weighted prediction error that follows its input instantly."""
    return relay_unit("eps")


def dynamic_error_unit(tau: Quantity = 2 * ms) -> NeuronModel:
    """Error unit with its own time constant; its fixed point is the precision-weighted error
    once ``−Σ ε`` arrives in ``I_in`` (laterally or from an interneuron)."""
    return NeuronModel("depsdt = I_in / tau : Hz", model_var="eps", derivative="depsdt",
                       ports=("I_in",), outputs=("eps",), constants={"tau": tau})


def interneuron(tau: Quantity = 2 * ms) -> NeuronModel:
    """Precision interneuron: a leaky integrator of ``Σ ε`` (Bogacz 2017 §5, his ``e``)."""
    return NeuronModel("dinhdt = (I_in - inh) / tau : Hz", model_var="inh", derivative="dinhdt",
                       ports=("I_in",), outputs=("inh",), constants={"tau": tau})


def lateral_unit(tau: Quantity = 2 * ms) -> NeuronModel:
    """Lateral-inhibition unit: ``τ dy/dt = I_in − shunt·y``.  ``I_in`` carries the feed-forward
    input and the lateral inhibition from its neighbours; the per-unit ``shunt`` is a divisive
    (shunting) gain: the steady state divides the input by it (``docs/mathematics.md`` §11)."""
    return NeuronModel("dydt = (I_in - shunt * y) / tau : Hz", model_var="y", derivative="dydt",
                       ports=("I_in",), outputs=("y",), constants={"tau": tau},
                       params=("shunt",))


def hidden_unit(nl: Nonlinearity) -> NeuronModel:
    """Hidden unit of an MLP link: forward ``f(u)``, backward ``f'(u) · I_bu``."""
    f, df = _in(nl, "u")
    return NeuronModel(f"""
fu = {f} : 1
back = ({df}) * I_bu : 1
""", model_var="u", value="I_in", ports=("I_in", "I_bu"), outputs=("fu", "back"))


def data_unit() -> NeuronModel:
    """Sensory input: its neural state is the stimulus, set from outside."""
    return NeuronModel("", model_var="x", outputs=("x",))
