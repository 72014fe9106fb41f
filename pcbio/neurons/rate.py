"""Rate-neuron equations of the predictive-coding circuit (DESIGN.md §2; Bogacz 2017 §2.3, §5).

Every population codes its model variable with a :class:`pcbio.encoding.RateEncoding`
``r = r0 + gain·x``; the constants come from the namespace with a suffix per population
(``r0_v, gain_v, tau_v`` value units; ``_e`` error units; ``_i`` interneurons), so that a synapse
between two populations can resolve both sides' expressions.
Inputs (``zin``, ``pred``, ``lat``, ``eps_own``, ``wte``, ``bu``, ``sig_eps``) are dimensionless and
are delivered by the circuit's coupling: summed ``Synapses`` or a matrix product each step.

Value unit (latent ``z_l``)::

    τ dz/dt = bu − eps_own,        bu = [J_{l-1}ᵀ ε_{l-1}],  eps_own = ε_l

Error unit (level l), ``c`` the constant part of the prediction (bias, or top prior mean; 0 when
the matrix coupling delivers the whole prediction in ``pred``)::

    instant:  ε = zin − pred − c                       (zin = Π z_l, pred = Π W f(z_{l+1}), c = Π b)
    dynamic:  τ_ε dε/dt = zin − pred − c − lat         (zin = z_l, pred = W f(z_{l+1}), c = b,
                                                         lat = Σ ε, or the interneuron's i)

Precision interneuron (Bogacz 2017 §5, his ``e``): ``τ_i d inh/dt = sig_eps − inh`` with
``sig_eps = Σ ε``, and the error unit's ``lat = inh``; at the fixed point ``inh = Σ ε``, so
``ε = Π (z − g)``.
"""


def value_equations(fz_expr="z", fp_expr="1.0", synaptic_bu=False):
    """Value units of one latent level.

    ``fz_expr`` / ``fp_expr``: ``f(z)`` and ``f'(z)`` of the link this level feeds (in ``z``), used
    by synaptic coupling (presynaptic ``fz``; ``bu = fp · wte`` with ``wte = Wᵀ ε`` summed).
    """
    bu = "bu = fp * wte : 1\nwte : 1" if synaptic_bu else "bu : 1"
    return f"""
dr/dt = gain_v * (bu - eps_own) / tau_v : Hz
z = (r - r0_v) / gain_v : 1
dzdt = (bu - eps_own) / tau_v : Hz
fz = {fz_expr} : 1
fp = {fp_expr} : 1
{bu}
eps_own : 1
"""


def error_equations(dynamic, data_level=False):
    """Error units of one level; ``data_level``: ``zin`` is the stimulus ``stim(t, i)``."""
    zin = "zin = stim(t, i) : 1" if data_level else "zin : 1"
    if dynamic:
        core = """
dr/dt = gain_e * (zin - pred - c - lat) / tau_e : Hz
eps = (r - r0_e) / gain_e : 1
dzdt = (zin - pred - c - lat) / tau_e : Hz
lat : 1
"""
    else:
        core = """
eps = zin - pred - c : 1
r = r0_e + gain_e * eps : Hz
"""
    return core + f"{zin}\npred : 1\nc : 1 (constant)\n"


INTERNEURON_EQUATIONS = """
dr/dt = gain_i * (sig_eps - inh) / tau_i : Hz
inh = (r - r0_i) / gain_i : 1
dzdt = (sig_eps - inh) / tau_i : Hz
sig_eps : 1
"""
