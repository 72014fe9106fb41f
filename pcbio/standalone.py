"""Compile a circuit once under brian2's ``cpp_standalone`` device and run it for many data
points: each run passes the new stimulus (and initial latents) to the compiled program on its
command line (brian2 ≥ 2.6 ``device.run(run_args=…)``), so a sweep over data points pays the
compilation once.

Usage::

    with StandaloneProject(circuit, batch=1, duration=500 * ms) as project:
        for x in data:
            traj = project.run(x)          # a Trajectory, decoded as usual

brian2's device is global: while a project is open, brian2 runs in standalone mode.

A process that runs many points of a sweep keeps its project between points
(:func:`keep_projects`, which :func:`pcbio.sweep.run_point` turns on in Dask workers): a
``simulate(…, target="cpp_standalone")`` with the same circuit, model, batch, duration, dt and
recording then re-runs the compiled program with the new data instead of compiling again; any
other run closes the kept project first.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time

import brian2
import numpy as np
from brian2 import ms

from .checks import positive_int, time_quantity
from .circuits import CircuitNetwork
from .circuits.base import Circuit
from .trajectory import Trajectory


class StandaloneProject:
    """``circuit`` built for ``batch`` data points, run for ``duration`` at step ``dt``,
    compiled once (``compile_seconds`` records how long that took)."""

    def __init__(self, circuit: Circuit, batch: int = 1, duration: brian2.Quantity = 200 * ms,
                 dt: brian2.Quantity = 0.1 * ms, record_every: int = 1):
        from .simulate import _run_info, _request
        self.circuit, self.batch = circuit, positive_int(batch, "batch")
        self.duration, self.dt = time_quantity(duration, "duration"), time_quantity(dt, "dt")
        self.record_every = positive_int(record_every, "record_every")
        zeros = np.zeros((self.batch, circuit.model.dims[0]))
        self._request = _request(circuit, zeros, self.duration, self.dt, None, False, 1e-8, None)
        self._run_info = _run_info
        self.directory = tempfile.mkdtemp(prefix="pcbio-project-")
        brian2.set_device("cpp_standalone", directory=self.directory, build_on_run=False)
        try:
            t0 = time.perf_counter()
            self.network = CircuitNetwork(circuit, self.batch, self.dt, "synapses",
                                          self.record_every, standalone=True)
            self.network.set_stimulus(zeros)
            brian2.device.apply_run_args()          # values given to run() replace these
            self.network.network.run(self.duration, namespace={})
            brian2.device.build(directory=self.directory, compile=True, run=False,
                                with_output=False)
            self.compile_seconds = time.perf_counter() - t0
        except BaseException:
            self.close()
            raise

    def run(self, x: np.ndarray, init: list[np.ndarray] | None = None) -> Trajectory:
        """Run the compiled program on data ``x`` (batch, d_0) from latents ``init`` (default
        the prior means); returns the decoded Trajectory (``info.standalone_run_time_s`` is the
        C++ main loop's time), checked as every run is: NaN or Inf in it raises
        :class:`~pcbio.errors.SimulationError` naming the population, level and time."""
        from .simulate import _finish
        model = self.circuit.model
        x = model.check_x(x)
        if len(x) != self.batch:
            raise ValueError(f"x has batch {len(x)}; this project was compiled for {self.batch}")
        init = model.prior_means(self.batch) if init is None else model.check_latents(
            init, self.batch, "init")
        args = {}
        values = self.circuit.initial_values(init, self.batch)
        for name, pop in self.network.populations.items():
            group = self.network.groups[name]
            if pop.role == "data":
                args[getattr(group, pop.encoding.variable)] = pop.encoding.encode(x).ravel() * pop.encoding.unit
            elif pop.role == "value":
                args[getattr(group, pop.encoding.variable)] = (
                    pop.encoding.encode(values[name]).ravel() * pop.encoding.unit)
        brian2.device.run(run_args=args, with_output=False)
        info = self._run_info(self.circuit, self.dt, self.record_every, self.batch,
                              "cpp_standalone", "synapses", self._request)
        info.duration_s = float(self.duration)
        info.standalone_run_time_s = float(brian2.device._last_run_time)
        return _finish(self.circuit, self.network.recordings(), info, False, 1e-8)

    def close(self) -> None:
        """Give the device back to brian2's runtime mode and delete the project."""
        brian2.device.reinit()
        brian2.set_device("runtime")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_kept = {"on": False, "key": None, "project": None}


def keep_projects(on: bool = True) -> None:
    """Keep (``on``) or stop keeping compiled projects between ``simulate`` calls in this
    process; stopping closes the one kept."""
    _kept["on"] = bool(on)
    if not on:
        close_kept()


def close_kept() -> None:
    """Close the kept project, if any (brian2 returns to its runtime device)."""
    if _kept["project"] is not None:
        _kept["project"].close()
    _kept.update(key=None, project=None)


def kept_project(circuit: Circuit, batch: int, duration: brian2.Quantity, dt: brian2.Quantity,
                 record_every: int) -> StandaloneProject | None:
    """The kept project for this configuration, compiled now if it is not the one kept (a
    process keeps one: brian2's device holds one project); None when keeping is off."""
    if not _kept["on"]:
        return None
    key = json.dumps([circuit.describe(), circuit.model.to_dict(), batch, float(duration),
                      float(dt), record_every], sort_keys=True, default=str)
    if _kept["key"] != key:
        close_kept()
        _kept.update(key=key, project=StandaloneProject(circuit, batch, duration, dt,
                                                        record_every))
    return _kept["project"]
