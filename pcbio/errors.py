"""Exceptions shared across pcbio."""


class SimulationError(RuntimeError):
    """A simulation became unstable (NaN, Inf or runaway activity)."""
