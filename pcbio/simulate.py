"""Run circuits: check the input, build or reuse a brian2 network, run it with a chosen target,
watch its stability, decode the recordings into a :class:`~pcbio.Trajectory`.

* :func:`simulate` builds a fresh network for a circuit and runs it on a stimulus.
* :func:`run` runs an existing :class:`~pcbio.circuits.CircuitNetwork` on (a new stimulus),
  keeping its state and weights: a stream of data points through one network.

Everything the user passes is checked before brian2 is touched: the stimulus shape, units, that
``dt`` is small enough for explicit Euler (``dt·λ_max/τ < 2``, :meth:`Circuit.euler_limits`) and
that the coupling fits the target.  During a run the stability guard (NaN, Inf, runaway
activity) and, at every check interval, the Euler limit at the current state are checked: an
unstable run raises :class:`~pcbio.errors.SimulationError`; nothing partial is returned.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import tempfile
from dataclasses import dataclass
from typing import Callable

import brian2
import numpy as np
from brian2 import ms

from . import standalone
from .checks import as_array, one_of, positive_int, positive_number, time_quantity
from .circuits import CircuitNetwork, build_circuit
from .circuits.network import codegen_target
from .circuits.base import Circuit
from .errors import SimulationError
from .model import GenerativeModel
from .progress import SILENT, Reporter
from .trajectory import CircuitRunInfo, Trajectory

TARGETS = {"auto", "numpy", "cython", "cpp_standalone"}


def check_stability(circuit: Circuit, x: np.ndarray, z: list, dt: brian2.Quantity,
                    t: float | None = None) -> None:
    """Explicit Euler is stable only if ``dt·λ/τ < 2`` for every time constant of the circuit
    (:meth:`Circuit.euler_limits` at data ``x`` and latent state ``z``), and feedback through
    synapses only if ``λ·lag/τ < 1`` (:meth:`Circuit.lag_limits`).  Before a run (``t`` None) a
    violation is a ValueError naming dt or τ; during a run (at time ``t``) a SimulationError."""
    for name, tau, rate, what in circuit.euler_limits(x, z):
        if float(dt / tau) * rate >= 2:
            limit = f"use dt < {2 * float(tau / ms) / rate:.3g} ms"
            if t is None:
                raise ValueError(f"dt={dt} is too large: explicit Euler needs dt*lambda/{name} < 2 "
                                 f"with lambda={rate:.3g} ({what}) and {name}={tau}; {limit}")
            raise SimulationError(f"the run became unstable by t = {t:.4g} s: dt*lambda/{name} = "
                                  f"{float(dt / tau) * rate:.3g} >= 2 with lambda={rate:.3g} ({what} "
                                  f"at the current state); {limit}")
    for tau, rate, lag, what in circuit.lag_limits(x, z):
        if rate * float(lag / tau) >= 1:
            advice = (f"feedback through synapses of {lag} total at curvature lambda={rate:.3g} "
                      f"({what}) needs lambda*lag/tau < 1; use tau > {rate * float(lag / ms):.3g} ms")
            if t is None:
                raise ValueError(f"tau={tau} is too fast for this circuit: {advice}")
            raise SimulationError(f"the run became unstable by t = {t:.4g} s: {advice}")


@dataclass
class _Request:
    """A run's validated input: stimulus frames (frames, batch, d_0), when each frame ends
    (seconds from the start of the run), the duration, the initial latents (or None: keep the
    network's state; with ``reset_each_frame`` every frame starts from them) and the stopping
    rule."""
    stimulus: np.ndarray
    frame_ends: list
    duration: object
    init: list | None
    until_converged: bool
    tol: float
    reset_each_frame: bool = False
    frame_inits: list | None = None

    def start(self, k: int) -> list:
        """The latents frame k starts from (with ``reset_each_frame``)."""
        return self.init if self.frame_inits is None else self.frame_inits[k]


def _request(circuit, x, duration, dt, init, until_converged, tol, stimulus_dt, batch=None,
             reset_each_frame=False):
    """Check everything about a run before brian2 is touched (ValueError/TypeError naming the
    parameter); ``batch`` is the network's, when one exists already."""
    model = circuit.model
    duration = time_quantity(duration, "duration")
    if dt > duration:
        raise ValueError(f"dt={dt} must not exceed duration={duration}")
    tol = positive_number(tol, "tol")
    arr = as_array(x, "x", ndim=(1, 2, 3))
    if arr.ndim < 3:
        stimulus, frame_ends = model.check_x(arr)[None], [float(duration)]
    else:
        if stimulus_dt is None:
            raise ValueError("x has a time axis (frames, batch, d_0): give stimulus_dt, the "
                             "duration of one frame")
        model.check_x(arr[0], "x[frame 0]")
        frame = float(time_quantity(stimulus_dt, "stimulus_dt"))
        if abs(frame / float(dt) - round(frame / float(dt))) > 1e-6:
            raise ValueError(f"stimulus_dt={stimulus_dt} must be a whole number of time steps "
                             f"dt={dt}")
        stimulus = arr
        frame_ends = [min((k + 1) * frame, float(duration)) for k in range(len(arr) - 1)]
        frame_ends.append(float(duration))
        if until_converged:
            raise ValueError("until_converged needs a clamped stimulus (batch, d_0), not frames")
    if batch is not None and stimulus.shape[1] != batch:
        raise ValueError(f"x has batch {stimulus.shape[1]}; this network was built for batch {batch}")
    frame_inits = None
    if init is not None and reset_each_frame and np.ndim(init[0]) == 3:   # one start per frame
        if any(np.shape(zl)[0] != len(stimulus) for zl in init):
            raise ValueError(f"init with a frame axis must have one entry per frame "
                             f"({len(stimulus)}) at every level")
        frame_inits = [model.check_latents([zl[k] for zl in init], stimulus.shape[1],
                                           f"init[frame {k}]") for k in range(len(stimulus))]
        init = frame_inits[0]
    elif init is not None:
        init = model.check_latents(init, stimulus.shape[1], "init")
    if reset_each_frame and init is None:
        raise ValueError("reset_each_frame needs init, the latents every frame starts from")
    return _Request(stimulus, frame_ends, duration, init, bool(until_converged), tol,
                    bool(reset_each_frame), frame_inits)


def check_run(circuit: Circuit, x: np.ndarray, duration: brian2.Quantity, dt: brian2.Quantity,
              init: list, until_converged: bool = False, tol: float = 1e-8,
              stimulus_dt: brian2.Quantity | None = None,
              reset_each_frame: bool = False) -> _Request:
    """What a run of ``circuit`` from ``init`` checks before its start, done before any brian2
    object exists: the arguments (:func:`_request`) and explicit Euler's step at the first
    frame (:func:`check_stability`).  For :func:`simulate` and for callers that build their
    network only when it first runs."""
    request = _request(circuit, x, duration, dt, init, until_converged, tol, stimulus_dt,
                       reset_each_frame=reset_each_frame)
    check_stability(circuit, request.stimulus[0], request.init, dt)
    return request


def _run_info(circuit, dt, record_every, batch, target, coupling, request):
    return CircuitRunInfo(circuit=circuit.describe(), checks=circuit.checks(),
                          skipped_checks=circuit.skipped_checks(),
                          tau_s=None if circuit.tau is None else float(circuit.tau),
                          dt_s=float(dt), record_dt_s=float(record_every * dt), batch=batch,
                          target=target, coupling=coupling,
                          max_duration_s=float(request.duration), tol=request.tol)


def simulate(circuit: Circuit, x: np.ndarray, duration: brian2.Quantity = 200 * ms,
             dt: brian2.Quantity = 0.1 * ms, target: str = "auto", coupling: str | None = None,
             init: list[np.ndarray] | None = None, record_every: int = 1,
             until_converged: bool = False, tol: float = 1e-8,
             check_interval: brian2.Quantity | None = None,
             stimulus_dt: brian2.Quantity | None = None, reset_each_frame: bool = False,
             progress: Reporter = SILENT) -> Trajectory:
    """Build ``circuit``'s network for the batch in ``x`` and run it; returns a Trajectory.

    Parameters
    ----------
    circuit : a circuit from :func:`pcbio.circuits.build_circuit`
    x : array (batch, d_0) — clamped data — or (frames, batch, d_0) with ``stimulus_dt``
    duration, dt : brian2 times (``duration`` is the maximum when ``until_converged``)
    target : ``"auto"`` (Cython when a compiler works, else numpy), ``"numpy"``, ``"cython"`` or
        ``"cpp_standalone"``
    coupling : ``"matrix"`` (default on runtime targets) or ``"synapses"`` (default and only
        choice under cpp_standalone); see :mod:`pcbio.circuits.network`
    init : list of (batch, d_l), initial latent values; default the prior means
    record_every : int, record one step in this many
    until_converged : stop once ``max |τ dx/dt| < tol`` for every population with dynamics
        (runtime targets check every ``check_interval``; cpp_standalone runs the whole duration).
        Either way ``info`` reports ``converged``, ``t_converged_s`` (the first recorded time from
        which the value units' drift stayed below ``tol``) and ``stop_reason``.
    check_interval : brian2 time between stability and convergence checks (default 10 τ when
        converging or for nonlinear models, else the whole run)
    stimulus_dt : brian2 time each frame of a time-varying ``x`` is shown (a whole number of dt)
    reset_each_frame : start every frame from ``init`` (a stream of independent data points)
    progress : callable reporting progress (see :class:`pcbio.progress.Progress`)
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be built by pcbio.circuits.build_circuit, got "
                        f"{type(circuit).__name__}")
    dt = time_quantity(dt, "dt")
    one_of(target, "target", TARGETS)
    coupling = coupling or ("synapses" if target == "cpp_standalone" else "matrix")
    one_of(coupling, "coupling", {"matrix", "synapses"})
    circuit.check_coupling(coupling)
    if target == "cpp_standalone" and coupling != "synapses":
        raise ValueError("target='cpp_standalone' needs coupling='synapses' (network operations "
                         "do not exist in standalone mode)")
    record_every = positive_int(record_every, "record_every")
    batch = as_array(x, "x", ndim=(1, 2, 3)).shape[-2] if np.ndim(x) > 1 else 1
    init = circuit.model.prior_means(batch) if init is None else init
    request = check_run(circuit, x, duration, dt, init, until_converged, tol, stimulus_dt,
                        reset_each_frame)
    interval = _check_interval(circuit, request, check_interval)
    if target == "cpp_standalone":
        project = (standalone.kept_project(circuit, batch, request.duration, dt, record_every)
                   if len(request.stimulus) == 1 else None)
        if project is not None:            # a sweep worker: compiled once, run with new data
            return project.run(request.stimulus[0], request.init)
        standalone.close_kept()
        return _simulate_standalone(circuit, request, dt, record_every, progress)
    network = CircuitNetwork(circuit, batch, dt, coupling, record_every, target=target)
    return _run(network, request, interval, progress)


def run(network: CircuitNetwork, x: np.ndarray, duration: brian2.Quantity = 200 * ms,
        init: list[np.ndarray] | None = None, until_converged: bool = False, tol: float = 1e-8,
        check_interval: brian2.Quantity | None = None,
        stimulus_dt: brian2.Quantity | None = None, reset_each_frame: bool = False,
        on_frame_end: Callable[[int], None] | None = None,
        progress: Reporter = SILENT) -> Trajectory:
    """Run an existing network on stimulus ``x`` for ``duration``; it keeps its state and
    weights from earlier runs unless ``init`` (list of (batch, d_l)) resets the latent estimates.

    A stream of data points is one call: ``x`` of shape (points, batch, d_0), ``stimulus_dt``
    the time each is shown, ``duration = points · stimulus_dt``, and ``reset_each_frame=True``
    to start every point from ``init`` (one brian2 run for the whole stream; a network
    operation switches the stimulus) — or, with a frame axis on every level of ``init``
    ((points, batch, d_l)), each point from its own start.  ``on_frame_end(k)``, if given, is called with the
    network holding its state at the end of frame k, before the next frame is shown (plasticity
    that acts once per data point: :mod:`pcbio.learning`).  Times in the returned Trajectory count from the start of
    this run.  Other parameters as in :func:`simulate`."""
    circuit, dt = network.circuit, network.dt
    request = _request(circuit, x, duration, dt, init, until_converged, tol, stimulus_dt,
                       batch=network.batch, reset_each_frame=reset_each_frame)
    if request.init is None:             # run on from the network's state: it must be sound
        try:
            network.check_stable()
        except FloatingPointError as err:
            raise SimulationError(f"the network is unstable before the run ({err}); reset it "
                                  "with init=... or restore() a stored state") from None
    state = request.init if request.init is not None else _current_latents(network)
    check_stability(circuit, request.stimulus[0], state, dt)
    return _run(network, request, _check_interval(circuit, request, check_interval), progress,
                on_frame_end)


def _run(network, request, interval, progress, on_frame_end=None):
    circuit, dt = network.circuit, network.dt
    info = _run_info(circuit, dt, network.record_every, network.batch, network.target,
                     network.coupling, request)
    progress(f"simulating {circuit.kind} circuit for {circuit.model!r}, batch {network.batch}, "
             f"target {network.target}")
    if request.init is not None:
        network.reset(request.init)
    network.set_stimulus(request.stimulus[0])
    start_record, t_start = network.record_count(), float(network.network.t)
    switch = (_FrameSwitch(network, request, on_frame_end) if len(request.stimulus) > 1
              else None)
    elapsed, stopped_early, total = 0.0, False, float(request.duration)
    if switch:
        network.network.add(switch.operation)
    try:
        with codegen_target(network.target):
            while elapsed < total * (1 - 1e-9) and not stopped_early:
                chunk = min(float(interval), total - elapsed)
                _run_chunk(network, chunk, elapsed, total, progress)
                if switch and switch.error:
                    raise switch.error
                elapsed += chunk
                frame = request.stimulus[switch.current if switch else 0]
                check_stability(circuit, frame, _current_latents(network), dt, t=elapsed)
                stopped_early = request.until_converged and network.max_drift() < request.tol
        if on_frame_end is not None:
            on_frame_end(len(request.stimulus) - 1)
    finally:
        if switch:
            network.network.remove(switch.operation)
    recordings = network.recordings(start_record)
    recordings["t"] = recordings["t"] - t_start
    recordings["spikes"] = {name: (idx, times - t_start)
                            for name, (idx, times) in recordings["spikes"].items()}
    info.duration_s = elapsed
    return _finish(circuit, recordings, info, stopped_early, request.tol)


class _FrameSwitch:
    """A network operation, every time step of one run, that shows stimulus frame k from step
    k·(stimulus_dt/dt) on (and resets the latents there with ``reset_each_frame``), after
    calling ``on_frame_end(k − 1)``."""

    def __init__(self, network, request, on_frame_end=None):
        self.network, self.request, self.on_frame_end = network, request, on_frame_end
        self.error = None
        frame = request.frame_ends[0]
        self.steps_per_frame = int(round(frame / float(network.dt)))
        self.step, self.current = 0, 0
        self.operation = brian2.NetworkOperation(self, clock=network.clock, when="groups", order=-10,
                                                 name="frame_switch")

    def __call__(self):
        k = self.step // self.steps_per_frame
        if self.step % self.steps_per_frame == 0 and 0 < k < len(self.request.stimulus):
            if self.on_frame_end is not None:
                try:
                    self.on_frame_end(k - 1)
                except SimulationError as err:     # stop the run; _run raises it afterwards
                    self.error = err
                    self.network.network.stop()
                    return
            self.current = k
            self.network.set_stimulus(self.request.stimulus[k])
            if self.request.reset_each_frame:
                self.network.reset(self.request.start(k))
        self.step += 1


def _check_interval(circuit, request, check_interval):
    """Time between stability/convergence checks: given, else 10 τ where convergence is
    watched or the curvature can change (nonlinear models), else the whole run (each brian2
    ``run()`` call costs set-up time: chunk only when needed)."""
    if check_interval is not None:
        return time_quantity(check_interval, "check_interval")
    if (request.until_converged or not circuit.model.is_linear) and circuit.tau is not None:
        return min(10 * circuit.tau, request.duration)
    return request.duration


def _current_latents(network):
    levels = network.decoded("value")
    return [levels[l] for l in sorted(levels)]


def _run_chunk(network, chunk, done, total, progress):
    """Run the network for ``chunk`` seconds; instability raised inside brian2 becomes a
    SimulationError naming the time (from the run's start) at which the guard found it."""
    def report(_elapsed, completed, _start, _duration):
        progress(f"simulating {total * 1e3:.0f} ms", (done + chunk * completed) / total)
    reporting = {} if progress is SILENT else {"report": report, "report_period": 5 * brian2.second}
    start = float(network.network.t)
    try:       # overflow on the way to NaN is detected and reported, not warned
        with np.errstate(over="ignore", invalid="ignore"), _frozen_heap():
            network.network.run(chunk * brian2.second, namespace={}, **reporting)
            network.check_stable()
    except Exception as err:      # brian2 wraps errors raised inside network operations
        cause = err if isinstance(err, FloatingPointError) else err.__cause__
        if isinstance(cause, FloatingPointError):   # the guard stops the run where it finds it
            found = done + float(network.network.t) - start
            raise SimulationError(f"the simulation became unstable by t = {found:.4g} s "
                                  f"({cause}); reduce dt or check the model") from None
        raise


def _finish(circuit, recordings, info, stopped_early, tol):
    """Decode, check the decoded values, and record how the run ended."""
    traj = circuit.trajectory(recordings, info)
    _check_trajectory(traj)
    converged_at = _first_converged(traj, tol)
    info.converged = converged_at is not None
    info.t_converged_s = converged_at
    info.stop_reason = "converged" if stopped_early else "duration"
    return traj


@contextlib.contextmanager
def _frozen_heap():
    """brian2's ``Network.run`` starts with a full ``gc.collect()`` (to warn about objects left
    out of the network), which costs ~0.1 s with brian2 and sympy loaded.  Freezing the objects
    that already exist (``gc.freeze``, undone on exit) limits that collection to new objects."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _simulate_standalone(circuit, request, dt, record_every, progress):
    """Build the network under brian2's cpp_standalone device, compile and run it once (it
    cannot stop early; convergence is reported from the recordings)."""
    batch = request.stimulus.shape[1]
    directory = tempfile.mkdtemp(prefix="pcbio-standalone-")
    brian2.set_device("cpp_standalone", directory=directory, build_on_run=False)
    try:
        network = CircuitNetwork(circuit, batch, dt, "synapses", record_every, standalone=True)
        start = 0.0
        for k, (frame, end) in enumerate(zip(request.stimulus, request.frame_ends)):
            if start == 0.0 or request.reset_each_frame:
                network.reset(request.start(k))
            network.set_stimulus(frame)
            network.network.run((end - start) * brian2.second, namespace={})
            start = end
        progress("compiling and running the C++ standalone project")
        brian2.device.build(directory=directory, compile=True, run=True, with_output=False)
        recordings = network.recordings()
        run_time = getattr(brian2.device, "_last_run_time", None)
    finally:
        brian2.device.reinit()
        brian2.set_device("runtime")
        shutil.rmtree(directory, ignore_errors=True)
    info = _run_info(circuit, dt, record_every, batch, "cpp_standalone", "synapses", request)
    info.duration_s = float(request.duration)
    info.standalone_run_time_s = None if run_time is None else float(run_time)
    return _finish(circuit, recordings, info, False, request.tol)


def _check_trajectory(traj):
    """Raise SimulationError where decoded activity holds NaN/Inf (e.g. after a standalone run,
    which cannot stop early)."""
    T = len(traj)
    for name, arrays, first in (("value", traj.means, 1), ("error", traj.errors or [], 0)):
        for l, a in enumerate(arrays, start=first):
            bad = ~np.all(np.isfinite(a).reshape(T, -1), axis=1)
            if bad.any():
                raise SimulationError(f"{name} units of level {l} hold NaN/Inf from "
                                      f"t = {traj.t[np.argmax(bad)]:.4g} s; reduce dt or check "
                                      "the model")


def _first_converged(traj, tol):
    """First recorded time from which on the value units' drift ``max |τ dz/dt|`` stays below
    ``tol`` (None if it never does, or the circuit has no such drift)."""
    if traj.dzdt is None or traj.info.tau_s is None:
        return None
    drift = np.max([np.abs(d).reshape(len(traj), -1).max(axis=1) for d in traj.dzdt], axis=0)
    above = np.nonzero(drift * traj.info.tau_s >= tol)[0]
    if above.size == 0:
        return float(traj.t[0])
    return float(traj.t[above[-1] + 1]) if above[-1] + 1 < len(traj) else None


def infer_with_circuit(model: GenerativeModel, x: np.ndarray, circuit: str = "rate",
                       duration: brian2.Quantity = 1000 * ms, dt: brian2.Quantity = 0.1 * ms,
                       target: str = "auto", tol: float = 1e-8, progress: Reporter = SILENT,
                       **params) -> tuple[list[np.ndarray], dict]:
    """Run a circuit until it converges (``max |τ dx/dt| < tol``) or ``duration`` passes; return
    the final latent estimates (list of (batch, d_l)) and what happened (a JSON-ready dict).
    ``params`` are the circuit kind's own parameters."""
    circ = build_circuit(model, circuit, **params)
    traj = simulate(circ, x, duration=duration, dt=dt, target=target, record_every=10,
                    until_converged=True, tol=tol, progress=progress)
    means, how = circ.estimate(traj)
    return means, {**traj.info.summary(), **circ.describe(), **how}
