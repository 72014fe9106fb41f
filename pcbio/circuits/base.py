"""The interface every circuit implements, so that :func:`pcbio.simulate.simulate`, the
:class:`~pcbio.Trajectory` and :mod:`pcbio.mapping` serve all circuit kinds alike."""

from abc import ABC, abstractmethod


class Circuit(ABC):
    """A neural realisation of ``model``'s inference, not yet a brian2 network.

    Attributes: ``model`` (GenerativeModel), ``kind`` (str), ``tau`` (brian2 time: the value
    units follow ``τ dz/dt = ∇_z log p`` once any faster variables have settled).
    """

    kind = "circuit"

    @abstractmethod
    def describe(self):
        """Parameters as plain JSON (merged into every trajectory's ``info``)."""

    @abstractmethod
    def check_coupling(self, coupling):
        """Raise ValueError if this circuit cannot use ``coupling`` ("matrix" or "synapses")."""

    @abstractmethod
    def euler_limits(self, x, init):
        """``[(name, τ, λ, what), …]``: explicit Euler with step dt is stable only if
        ``dt·λ/τ < 2`` for each entry (x: (batch, d_0), init: list of (batch, d_l))."""

    @abstractmethod
    def build(self, stimulus, stimulus_dt, dt, init, coupling, record_dt):
        """Create the brian2 objects for ``stimulus`` (frames, batch, d_0); returns an object
        with ``network`` (brian2.Network), ``check_finite(t)``, ``max_drift()`` (max |τ dx/dt|
        over all populations at the last record) and ``recordings()`` (plain arrays)."""

    @abstractmethod
    def trajectory(self, recordings, batch, info):
        """Decode ``recordings`` through the circuit's encodings into a Trajectory."""
