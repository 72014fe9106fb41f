"""Run a circuit on a stimulus with a chosen brian2 target, record, decode into a Trajectory.

Everything the user passes is checked before brian2 is touched: the stimulus shape, units, that
``dt`` is small enough for the fastest time constant and the model's curvature (explicit Euler is
stable only for ``dt·λ_max/τ < 2``), and that the coupling fits the target.  NaN/Inf or
runaway activity during a run raises :class:`SimulationError`; nothing partial is returned.
"""

import contextlib
import gc
import shutil
import tempfile

import brian2
import numpy as np
from brian2 import ms, second

from .checks import as_array, one_of, positive_int, positive_number, time_quantity
from .circuits import build_circuit
from .circuits.base import Circuit
from .errors import SimulationError
from .progress import SILENT

TARGETS = {"auto", "numpy", "cython", "cpp_standalone"}


def check_stability(circuit, x, init, dt):
    """Explicit Euler is stable only if ``dt·λ/τ < 2`` for every time constant of the circuit
    (:meth:`Circuit.euler_limits`: e.g. λ the largest curvature of log p for the value units).
    Raises ValueError naming dt otherwise."""
    for name, tau, rate, what in circuit.euler_limits(x, init):
        if float(dt / tau) * rate >= 2:
            raise ValueError(f"dt={dt} is too large: explicit Euler needs dt*lambda/{name} < 2 with "
                             f"lambda={rate:.3g} ({what}) and {name}={tau}; use dt < "
                             f"{2 * float(tau / ms) / rate:.3g} ms")


def _prepare_stimulus(model, x, stimulus_dt):
    """Stimulus as (frames, batch, d_0) and its frame duration (None for a clamped stimulus)."""
    arr = as_array(x, "x", ndim=(1, 2, 3))
    if arr.ndim < 3:
        return model.check_x(arr)[None], None
    if stimulus_dt is None:
        raise ValueError("x has a time axis (frames, batch, d_0): give stimulus_dt, the duration "
                         "of one frame")
    model.check_x(arr[0], "x[frame 0]")
    return arr, time_quantity(stimulus_dt, "stimulus_dt")


def simulate(circuit, x, duration=200 * ms, dt=0.1 * ms, target="auto", coupling=None,
             init=None, record_every=1, until_converged=False, tol=1e-8, check_interval=None,
             stimulus_dt=None, progress=SILENT):
    """Simulate ``circuit`` on data ``x`` and return a :class:`Trajectory`.

    Parameters
    ----------
    circuit : a circuit from :func:`pcbio.circuits.build_circuit`
    x : array (batch, d_0) — clamped data — or (frames, batch, d_0) with ``stimulus_dt``
    duration, dt : brian2 times (``duration`` is the maximum when ``until_converged``)
    target : ``"auto"`` (Cython when a compiler works, else numpy), ``"numpy"``, ``"cython"`` or
        ``"cpp_standalone"``
    coupling : ``"matrix"`` (default on runtime targets) or ``"synapses"`` (default and only choice
        under cpp_standalone); see :mod:`pcbio.circuits.rate`
    init : list of (batch, d_l), initial latent values; default the prior means
    record_every : int, record one step in this many
    until_converged : stop once ``max |τ dz/dt| < tol`` for every population with dynamics
        (runtime targets check every ``check_interval``; cpp_standalone runs the whole duration).
        Either way ``info`` reports ``converged`` and ``t_converged_s``, the first recorded time
        from which the value units' drift stayed below ``tol``, and ``stop_reason``.
    progress : callable reporting progress (see :class:`pcbio.progress.Progress`)
    """
    if not isinstance(circuit, Circuit):
        raise TypeError(f"circuit must be built by pcbio.circuits.build_circuit, got "
                        f"{type(circuit).__name__}")
    model = circuit.model
    duration, dt = time_quantity(duration, "duration"), time_quantity(dt, "dt")
    if dt > duration:
        raise ValueError(f"dt={dt} must not exceed duration={duration}")
    one_of(target, "target", TARGETS)
    coupling = coupling or ("synapses" if target == "cpp_standalone" else "matrix")
    circuit.check_coupling(coupling)
    if target == "cpp_standalone" and coupling != "synapses":
        raise ValueError("target='cpp_standalone' needs coupling='synapses' (network operations "
                         "do not exist in standalone mode)")
    record_every = positive_int(record_every, "record_every")
    tol = positive_number(tol, "tol")
    stimulus, stimulus_dt = _prepare_stimulus(model, x, stimulus_dt)
    stimulus_dt = stimulus_dt or dt
    batch = stimulus.shape[1]
    init = model.prior_means(batch) if init is None else model.check_latents(init, batch, "init")
    check_stability(circuit, stimulus[0], init, dt)
    if check_interval is not None:
        interval = time_quantity(check_interval, "check_interval")
    else:       # each run() call costs brian2 set-up time: chunk only to test for convergence
        interval = 10 * circuit.tau if until_converged else duration

    run = _run_standalone if target == "cpp_standalone" else _run_runtime
    info = {**circuit.describe(), "target": target, "coupling": coupling, "dt_s": float(dt),
            "record_dt_s": float(record_every * dt), "max_duration_s": float(duration),
            "tol": tol, "batch": batch}
    progress(f"simulating {circuit.kind} circuit for {model!r}, batch {batch}, target {target}")
    with _codegen_target(target):
        recordings, stopped_early, elapsed = run(circuit, stimulus, stimulus_dt, dt, init,
                                                 coupling, record_every * dt, duration,
                                                 until_converged, tol, interval, progress)
    if recordings.get("standalone_run_time_s") is not None:   # C++ main loop, no compilation
        info["standalone_run_time_s"] = float(recordings["standalone_run_time_s"])
    traj = circuit.trajectory(recordings, batch, info)
    _check_trajectory(traj)
    converged_at = _first_converged(traj, circuit, tol)
    traj.info.update(converged=converged_at is not None, t_converged_s=converged_at,
                     stop_reason="converged" if stopped_early else "duration",
                     duration_s=elapsed)
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


@contextlib.contextmanager
def _codegen_target(target):
    """Set brian2's runtime code-generation target for the duration of a run."""
    saved = brian2.prefs.codegen.target
    if target != "cpp_standalone":
        brian2.prefs.codegen.target = target
    try:
        yield
    finally:
        brian2.prefs.codegen.target = saved


def _run_runtime(circuit, stimulus, stimulus_dt, dt, init, coupling, record_dt, duration,
                 until_converged, tol, interval, progress):
    built = circuit.build(stimulus, stimulus_dt, dt, init, coupling, record_dt)
    elapsed = 0 * second
    while elapsed < duration * (1 - 1e-9):
        chunk = min(interval, duration - elapsed)
        def report(_elapsed, completed, _start, _duration, done=float(elapsed / duration),
                   share=float(chunk / duration)):
            progress(f"simulating {float(duration / ms):.0f} ms", done + share * completed)
        reporting = {} if progress is SILENT else {"report": report, "report_period": 5 * second}
        try:       # overflow on the way to NaN is detected and reported below, not warned
            with np.errstate(over="ignore", invalid="ignore"), _frozen_heap():
                built.network.run(chunk, namespace={}, **reporting)
        except Exception as err:      # brian2 wraps errors raised inside network operations
            cause = err if isinstance(err, FloatingPointError) else err.__cause__
            if isinstance(cause, FloatingPointError):
                raise SimulationError(f"the simulation became unstable ({cause}); reduce dt or "
                                      "check the model") from None
            raise
        elapsed += chunk
        built.check_finite(float(elapsed))
        if until_converged and built.max_drift() < tol:
            return built.recordings(), True, float(elapsed)
    return built.recordings(), False, float(elapsed)


def _run_standalone(circuit, stimulus, stimulus_dt, dt, init, coupling, record_dt, duration,
                    until_converged, tol, interval, progress):
    directory = tempfile.mkdtemp(prefix="pcbio-standalone-")
    brian2.set_device("cpp_standalone", directory=directory, build_on_run=False)
    try:
        built = circuit.build(stimulus, stimulus_dt, dt, init, coupling, record_dt)
        built.network.run(duration, namespace={})
        progress("compiling and running the C++ standalone project")
        brian2.device.build(directory=directory, compile=True, run=True, with_output=False)
        recordings = built.recordings()          # read before the device is reset
        recordings["standalone_run_time_s"] = getattr(brian2.device, "_last_run_time", None)
        return recordings, False, float(duration)
    finally:
        brian2.device.reinit()
        brian2.set_device("runtime")
        shutil.rmtree(directory, ignore_errors=True)


def _check_trajectory(traj):
    """Raise SimulationError where decoded activity holds NaN/Inf (e.g. after a standalone run,
    which cannot stop early)."""
    T = len(traj)
    for name, arrays, first in (("value", traj.means, 1), ("error", traj.errors, 0)):
        for l, a in enumerate(arrays, start=first):
            bad = ~np.all(np.isfinite(a).reshape(T, -1), axis=1)
            if bad.any():
                raise SimulationError(f"{name} units of level {l} hold NaN/Inf from "
                                      f"t = {traj.t[np.argmax(bad)]:.4g} s; reduce dt or check "
                                      "the model")


def _first_converged(traj, circuit, tol):
    """First recorded time from which on the value units' drift ``max |τ dz/dt|`` stays below
    ``tol`` (None if it never does)."""
    drift = np.max([np.abs(d).reshape(len(traj), -1).max(axis=1) for d in traj.dzdt], axis=0)
    above = np.nonzero(drift * float(circuit.tau) >= tol)[0]
    if above.size == 0:
        return float(traj.t[0])
    return float(traj.t[above[-1] + 1]) if above[-1] + 1 < len(traj) else None


def infer_with_circuit(model, x, circuit="rate", duration=1000 * ms, dt=0.1 * ms, errors="instant",
                       target="auto", tol=1e-8, progress=SILENT, **params):
    """Run a circuit until it converges (``max |τ dz/dt| < tol``) or ``duration`` passes; return the
    final latent estimates (list of (batch, d_l)) and what happened (a JSON-ready dict)."""
    circ = build_circuit(model, circuit, errors=errors, **params)
    traj = simulate(circ, x, duration=duration, dt=dt, target=target, record_every=10,
                    until_converged=True, tol=tol, progress=progress)
    return traj.final_means(), {k: traj.info[k] for k in ("converged", "stop_reason",
                                                           "t_converged_s", "duration_s",
                                                           "target", "coupling", "errors")}
