"""A circuit's structure realised as one persistent brian2 ``Network`` (``docs/architecture.md``
§3–4).

:class:`CircuitNetwork` creates one ``NeuronGroup`` per population (``batch × size`` units), one
transmission per pathway, monitors and a stability guard.  It keeps its state and weights
between runs: give it a new stimulus and run on (a stream of data points in one network), or
``store``/``restore`` for a clean start.

Transmission (*coupling*) of the pathways:

* ``"matrix"`` — one ``network_operation`` per stage computes ``in = out_pre @ Wᵀ`` (BLAS) for
  every pathway of that stage: it stands only for dense synaptic transmission.  It reads a
  presynaptic output as the neural state decoded by the population's encoding (the output is the
  coded model variable), as the summed input of an instantaneous neuron whose model variable
  is that sum, or otherwise as a copy (``mat_<output>``) that the group writes in its own code
  (``run_regularly``) at the output's stage (:meth:`NeuronModel.output_source`).  Runtime
  targets only.
* ``"synapses"`` — one brian2 ``Synapses`` with a summed variable per pathway, one synapse per
  non-zero weight and data point.  Every target, ``cpp_standalone`` included.

Schedule within a time step (all in the ``groups`` slot, see :func:`structure.schedule`):
stage-s outputs are copied (order 10·s), stage-s pathways deliver (10·s + 5), then the monitors
record (990) and the groups integrate (1000).  Every recorded value and every update therefore
uses the state at the start of the step: an explicit Euler step of the circuit's ODE.
"""

from __future__ import annotations

import contextlib
import zlib
from typing import TYPE_CHECKING

import brian2
import numpy as np

from .structure import check_structure, schedule

if TYPE_CHECKING:
    from ..model import GenerativeModel

ORDER_MONITOR, ORDER_GUARD, ORDER_STATE = 990, 995, 1000
GUARD_STEPS = 50          # the runtime guard checks states this often


@contextlib.contextmanager
def codegen_target(target: str):
    """brian2's runtime code-generation target set to ``target`` (``"numpy"``, ``"cython"``,
    ``"auto"``) while the block runs, restored after it; ``"cpp_standalone"`` leaves it as is
    (the device, not the target, decides there)."""
    saved = brian2.prefs.codegen.target
    if target != "cpp_standalone":
        brian2.prefs.codegen.target = target
    try:
        yield
    finally:
        brian2.prefs.codegen.target = saved


def _stage_order(stage, delivery=False):
    return 10 * stage + (5 if delivery else 0)


def _deliverer(jobs):
    """The body of a matrix-coupling operation: ``post = pre @ Wᵀ`` (or ``pre ⊙ w`` one-to-one),
    spread over the postsynaptic units where they are more than its variables, for each
    (presynaptic reader, post view, weights, one_to_one, spread or None) job."""
    def deliver():
        for read, post, w, one_to_one, spread in jobs:
            pre = read()
            if spread is not None:
                post[:] = spread(pre * w if one_to_one else pre @ w)
            elif one_to_one:
                np.multiply(pre, w, out=post)
            else:
                np.matmul(pre, w, out=post)
    return deliver


class CircuitNetwork:
    """The brian2 network of ``circuit`` for ``batch`` data points.

    Parameters
    ----------
    circuit : :class:`pcbio.circuits.base.Circuit`
    batch : int — data points side by side
    dt : brian2 time — integration step
    coupling : ``"matrix"`` or ``"synapses"`` (see the module docstring)
    record_every : int — monitors record one step in this many
    standalone : bool — built under brian2's ``cpp_standalone`` device (no Python operations)
    target : brian2 code-generation target of its runs (``"auto"``, ``"numpy"``, ``"cython"``)

    Attributes: ``network`` (brian2.Network), ``groups`` (population name → NeuronGroup),
    ``populations`` (name → Population), ``pathways`` (name → Pathway), ``monitors``.
    """

    def __init__(self, circuit, batch, dt, coupling="matrix", record_every=1, standalone=False,
                 target="auto"):
        if not standalone:          # a compiled project kept by a sweep worker gives way
            from ..standalone import close_kept
            close_kept()
        self.circuit, self.batch, self.dt = circuit, int(batch), dt
        self.coupling, self.standalone, self.target = coupling, standalone, target
        self.record_every = record_every
        # Clocks with fixed names: generated code names the clock's arrays, so automatically
        # numbered clocks (one per group, numbered on while older networks are alive) would
        # make every new network's code new to brian2's compilation cache.
        self.clock = brian2.Clock(dt, name="pcbio_clock")
        self.record_clock = brian2.Clock(record_every * dt, name="pcbio_record_clock")
        self.guard_clock = brian2.Clock(GUARD_STEPS * dt, name="pcbio_guard_clock")
        pops, paths = circuit.structure()
        check_structure(pops, paths)
        for pop in pops:                # before any brian2 object: one never run is left behind
            if standalone and pop.neuron.one_spike_per_step:
                raise ValueError(f"{pop.name}: one spike per step needs a runtime target (numpy "
                                 "or cython), not cpp_standalone")
        # brian2 generates code when objects are built (Synapses.connect, group set-up), not
        # only when they run: under the default target a numpy network would compile Cython
        with codegen_target("cpp_standalone" if standalone else target):
            self._build(pops, paths)

    def _build(self, pops, paths):
        """The brian2 objects of the populations ``pops`` and pathways ``paths``, in one
        Network, reset to the prior means."""
        circuit, coupling, batch = self.circuit, self.coupling, self.batch
        self.populations = {p.name: p for p in pops}
        self.pathways = {pw.name: pw for pw in paths}
        out_stage, self.pathway_stage = schedule(pops, paths)
        read = {(pw.pre, pw.output) for pw in paths} if coupling == "matrix" else set()
        self.copied = {(pop, out) for pop, out in read
                       if self.populations[pop].neuron.output_source(out) == ("copy",)}
        self.groups, self.namespaces, objects = {}, {}, []
        self.weights = {}          # pathway name -> the array (matrix) or Synapses it transmits with
        self._deliveries = []      # the matrix coupling's delivery functions, in stage order
        for pop in pops:
            group = self._group(pop, paths, out_stage)
            self.groups[pop.name] = group
            objects.append(group)
        if coupling == "matrix":
            objects += self._matrix_coupling([pw for pw in paths if pw.kind != "jump"])
            objects += [self._jump_operation(pw) for pw in paths if pw.kind == "jump"]
        else:
            objects += [self._synapses(pw) for pw in paths]
        objects += [self._winner_operation(pop) for pop in pops if pop.neuron.one_spike_per_step]
        self.monitors, self.spike_monitors = {}, {}
        for pop in pops:
            variables = [pop.encoding.variable] + ([pop.neuron.derivative]
                                                   if pop.neuron.derivative else [])
            self.monitors[pop.name] = brian2.StateMonitor(
                self.groups[pop.name], variables, record=True, clock=self.record_clock,
                when="groups", order=ORDER_MONITOR, name=f"monitor_{pop.name}")
            if pop.neuron.spiking:
                self.spike_monitors[pop.name] = brian2.SpikeMonitor(
                    self.groups[pop.name], name=f"spikes_{pop.name}")
        objects += list(self.monitors.values()) + list(self.spike_monitors.values())
        if not self.standalone:
            objects.append(brian2.NetworkOperation(self.check_stable, clock=self.guard_clock,
                                                   when="groups", order=ORDER_GUARD,
                                                   name="stability_guard"))
        self.network = brian2.Network(*objects)
        self.reset(circuit.model.prior_means(batch))

    def _group(self, pop, paths, out_stage):
        """The NeuronGroup of one population: its neuron bound to its encoding and to the
        pathways delivering into its ports, per-unit constants set, copies of outputs that a
        matrix coupling reads written at their stage."""
        terms = {port: [(pop.port_term(pw.name), self._synaptic_filter(pw)) for pw in paths
                        if pw.post == pop.name and pw.port == port and pw.kind != "jump"]
                 for port in pop.neuron.ports}
        copies = [out for out in pop.neuron.outputs if (pop.name, out) in self.copied]
        eqs, ns = pop.neuron.bind(pop.name, pop.encoding, terms, tuple(f"mat_{o}" for o in copies))
        spiking = {}
        if pop.neuron.spiking:
            spiking = dict(threshold=pop.neuron.threshold, refractory=pop.neuron.refractory or False,
                           reset="\n".join(c for c in (pop.neuron.reset,
                                                         pop.encoding.spike_code(pop.name)) if c))
        group = brian2.NeuronGroup(self.batch * pop.size, eqs, method=pop.neuron.method,
                                   clock=self.clock, order=ORDER_STATE, name=pop.name,
                                   namespace=ns, **spiking)
        for name, values in pop.params.items():
            setattr(group, name, np.tile(values, self.batch))
        for port, value in pop.bias.items():
            setattr(group, f"bias_{port}", np.tile(pop.spread(np.asarray(value)), self.batch))
        for stage in sorted({out_stage[(pop.name, out)] for out in copies}):
            group.run_regularly("\n".join(f"mat_{out} = {out}" for out in copies
                                          if out_stage[(pop.name, out)] == stage),
                                when="groups", order=_stage_order(stage),
                                name=f"{pop.name}_copy_{stage}")
        self.namespaces[pop.name] = ns
        return group

    def _synaptic_filter(self, pw):
        """The time constant of the synaptic current a spiking source's pathway feeds under the
        Synapses coupling (None where the pathway writes its input directly)."""
        pre = self.populations[pw.pre]
        if self.coupling == "synapses" and pre.neuron.spiking:
            return pre.encoding.tau_synapse
        return None

    # -- transmission ---------------------------------------------------------------------------
    def _view(self, pop, variable):
        """The runtime storage of a group variable as a (batch, size) view (writes reach brian2)."""
        return self.groups[pop].variables[variable].get_value().reshape(self.batch, -1)

    def _reader(self, pop_name, output):
        """A function returning the current value of a population's output, (batch, dims)."""
        pop = self.populations[pop_name]
        source = pop.neuron.output_source(output)
        if source[0] == "decoded":
            traces, decode = self._view(pop_name, pop.encoding.variable), pop.encoding.decode
            return lambda: decode(traces, output)
        if source[0] == "state":
            state, decode = self._view(pop_name, pop.encoding.variable), pop.encoding.decode
            return lambda: decode(state)
        if source[0] == "port":
            parts = [self._view(pop_name, f"bias_{source[1]}")] + [
                self._view(pop_name, pop.port_term(pw.name)) for pw in self.pathways.values()
                if pw.post == pop_name and pw.port == source[1] and pw.kind != "jump"]
            return lambda: sum(parts[1:], parts[0])
        copy = self._view(pop_name, f"mat_{output}")
        return lambda: copy

    def _matrix_coupling(self, paths):
        """One network_operation per stage: ``in_post = spread(out_pre @ Wᵀ)`` for its pathways."""
        ops = []
        for stage in sorted({self.pathway_stage[pw.name] for pw in paths}):
            jobs = []
            for pw in paths:
                if self.pathway_stage[pw.name] == stage:
                    post_pop = self.populations[pw.post]
                    post = self._view(pw.post, post_pop.port_term(pw.name))
                    w = np.array(pw.weights) if pw.one_to_one else np.ascontiguousarray(pw.weights.T)
                    self.weights[pw.name] = w
                    spread = None if post_pop.input_map is None else post_pop.spread
                    jobs.append((self._reader(pw.pre, pw.output), post, w, pw.one_to_one, spread))
            self._deliveries.append(_deliverer(jobs))
            ops.append(brian2.NetworkOperation(self._deliveries[-1], clock=self.clock,
                                               when="groups",
                                               order=_stage_order(stage, delivery=True),
                                               name=f"matrix_coupling_{stage}"))
        return ops

    def deliver(self) -> None:
        """Deliver every continuous pathway now, stage by stage (matrix coupling): what the
        next step would deliver, so that instantaneous units (error units, hidden units) show
        the values of the current state between steps, e.g. for plasticity at a frame's end."""
        for deliver in self._deliveries:
            deliver()

    def _spike_increments(self, pop, output):
        """(units, dims): what one spike of each unit adds to the population's read-out."""
        return pop.encoding.decode(np.eye(pop.size) / float(pop.encoding.tau_synapse), output)

    def _jump_operation(self, pw):
        """After each step's spikes: ``post += spread(Δread-out @ Wᵀ)`` for a jump pathway."""
        pre, post_pop = self.populations[pw.pre], self.populations[pw.post]
        spikespace = self.groups[pw.pre].variables["_spikespace"].get_value()
        target = self._view(pw.post, pw.port)
        per_spike = self._spike_increments(pre, pw.output) @ pw.dense_matrix().T   # (units, dims)
        per_spike = np.stack([post_pop.spread(row) for row in per_spike])         # (units, size)
        size = pre.size

        def jump():
            n = spikespace[-1]
            if n:
                units = spikespace[:n]
                np.add.at(target, (units // size,), per_spike[units % size])
        return brian2.NetworkOperation(jump, clock=self.clock, when="synapses",
                                       name=f"jump_{pw.name}")

    def _winner_operation(self, pop):
        """Before each step's threshold test: ``winner = 1`` for the one neuron per data point
        furthest above its threshold (among those not refractory), 0 for every other."""
        v, vth = self._view(pop.name, "v"), self._view(pop.name, "vth")
        winner = self._view(pop.name, "winner")
        ready = (self._view(pop.name, "not_refractory") if pop.neuron.refractory is not None
                 else np.ones_like(v, dtype=bool))
        rows = np.arange(self.batch)

        def choose():
            excess = np.where(ready, v - vth, -np.inf)
            best = excess.argmax(axis=1)
            winner[:] = 0.0
            winner[rows, best] = excess[rows, best] > 0
        return brian2.NetworkOperation(choose, clock=self.clock, when="thresholds", order=0,
                                       name=f"winner_{pop.name}")

    def _synapses(self, pw):
        """Block-diagonal (per data point) Synapses, one synapse per non-zero weight between
        units: a summed variable for continuous sources, ``on_pre`` increments of a decaying
        synaptic current (or of the target state, for jumps) for spiking ones."""
        pre_pop, post_pop = self.populations[pw.pre], self.populations[pw.post]
        if pre_pop.neuron.spiking:
            per_spike = self._spike_increments(pre_pop, pw.output)            # (pre units, dims)
            W = post_pop.spread_matrix() @ pw.dense_matrix() @ per_spike.T
            if pw.density < 1:
                keep = np.random.default_rng(zlib.crc32(pw.name.encode())).random(W.shape)
                W = np.where(keep < pw.density, W / pw.density, 0.0)
        else:
            W = post_pop.spread_matrix() @ pw.dense_matrix()
        ns = {**self.namespaces[pw.pre], **self.namespaces[pw.post]}
        if pw.kind == "jump":
            kw = dict(model="w : 1 (constant)", on_pre=f"{pw.port}_post += w")
        elif pre_pop.neuron.spiking:
            kw = dict(model="w : 1 (constant)", on_pre=f"{post_pop.port_term(pw.name)}_post += w")
        else:
            term = post_pop.port_term(pw.name)
            kw = dict(model=f"w : 1 (constant)\n{term}_post = w * {pw.output}_pre : 1 (summed)")
        syn = brian2.Synapses(self.groups[pw.pre], self.groups[pw.post], clock=self.clock,
                              name=pw.name, namespace=ns, **kw)
        post_k, pre_k = np.nonzero(W)
        offsets = np.arange(self.batch)[:, None]
        syn.connect(i=(offsets * pre_pop.size + pre_k).ravel(),
                    j=(offsets * post_pop.size + post_k).ravel())
        syn.w = np.tile(W[post_k, pre_k], self.batch)
        self.weights[pw.name] = syn
        if pw.kind == "continuous" and not pre_pop.neuron.spiking:
            term = post_pop.port_term(pw.name)
            syn.summed_updaters[f"{term}_post"].order = _stage_order(self.pathway_stage[pw.name],
                                                                     True)
        return syn

    def update_model(self, model: GenerativeModel) -> None:
        """Give the circuit new model parameters (learning): its structure is declared anew and
        every pathway's weights and every population's constant input are written into the
        running network in place — the state and the monitors are kept.  The structure must
        not change (same populations, pathways and sizes)."""
        if self.coupling != "matrix" or any(pw.kind == "jump" for pw in self.pathways.values()):
            raise ValueError("weights can change during a run only under the matrix coupling "
                             "without spike jumps (rate circuits); use coupling='matrix'")
        self.circuit.set_model(model)
        pops, paths = self.circuit.structure()
        for pw in paths:
            self.weights[pw.name][...] = pw.weights if pw.one_to_one else pw.weights.T
            self.pathways[pw.name] = pw
        for pop in pops:
            group = self.groups[pop.name]
            for port, value in pop.bias.items():
                group.variables[f"bias_{port}"].set_value(
                    np.tile(pop.spread(np.asarray(value, dtype=float)), self.batch))
            self.populations[pop.name] = pop

    # -- stability ------------------------------------------------------------------------------
    def check_stable(self) -> None:
        """The stability guard, the one place where every circuit kind's run is checked: NaN,
        Inf or runaway values (beyond the encoding's ``runaway``) in an integrated state raise
        FloatingPointError.  Runs every GUARD_STEPS steps inside a run and after each run
        (:func:`pcbio.simulate.run` reports it as a SimulationError)."""
        for name, pop in self.populations.items():
            if not pop.neuron.dynamic:
                continue
            group = self.groups[name]
            values = group.variables[pop.encoding.variable].get_value()
            if not np.abs(values).max(initial=0.0) <= pop.encoding.runaway:   # NaN too
                raise FloatingPointError(f"NaN, Inf or runaway activity in {name}")
            for var in group.equations.diff_eq_names:
                if not np.isfinite(group.variables[var].get_value()).all():
                    raise FloatingPointError(f"NaN or Inf in {name}.{var}")

    def max_drift(self) -> float:
        """max |τ dx/dt| over every integrated population with a time constant ``tau``, at the
        last recorded step (model units)."""
        drifts = [np.abs(getattr(self.monitors[name], p.neuron.derivative + "_")[:, -1]).max()
                  * float(p.neuron.constants["tau"])
                  for name, p in self.populations.items()
                  if p.neuron.derivative and "tau" in p.neuron.constants]
        return max(drifts, default=0.0)

    # -- state ----------------------------------------------------------------------------------
    def state(self, pop: str) -> np.ndarray:
        """The neural state of population ``pop`` now: (batch, size), SI units."""
        var = self.populations[pop].encoding.variable
        return np.array(getattr(self.groups[pop], var + "_")[:]).reshape(self.batch, -1)

    def decoded(self, role: str) -> dict[int, np.ndarray]:
        """Decoded model values of every population with ``role``, by level: {level: (batch,
        size)}."""
        return {p.level: p.encoding.decode(self.state(p.name))
                for p in self.populations.values() if p.role == role}

    def set_stimulus(self, x: np.ndarray) -> None:
        """Clamp the data population(s) to ``x`` (batch, d_0)."""
        for pop in self.populations.values():
            if pop.role == "data":
                self._set(pop, np.asarray(x).reshape(self.batch, -1))

    def reset(self, init: list[np.ndarray]) -> None:
        """A clean start from the latent estimates ``init`` (list of (batch, d_l)): every
        integrated state at rest (membranes, synaptic currents, refractoriness), then each
        population's coded state at the circuit's initial values."""
        values = self.circuit.initial_values(init, self.batch)
        states = {}             # population name -> the neural state it starts from
        for name, pop in self.populations.items():
            if not pop.neuron.dynamic:
                continue
            group = self.groups[name]
            for var in group.equations.diff_eq_names:
                self._assign(group, var, 0.0)
            if "not_refractory" in group.variables:
                self._assign(group, "not_refractory", True)
                self._assign(group, "lastspike", -1e4)
            states[name] = self._set(pop, values[name])
        if self.coupling == "synapses":
            self._start_synaptic_currents(states)

    def _start_synaptic_currents(self, states):
        """Under the Synapses coupling, the synaptic current of each pathway from a spiking
        source starts at what the source's initial traces transmit (the current decays and is
        incremented exactly as the traces are), as the matrix coupling reads it from the traces
        at once — not at 0, which would hide the starting state downstream for ~τ_s."""
        for pw in self.pathways.values():
            pre, post = self.populations[pw.pre], self.populations[pw.post]
            if pw.kind != "continuous" or not pre.neuron.spiking:
                continue
            read = pre.encoding.decode(states[pw.pre], pw.output)
            self._assign(self.groups[pw.post], post.port_term(pw.name),
                         post.spread(read @ pw.dense_matrix().T).ravel())

    def _set(self, pop, model_values) -> np.ndarray:
        """Set ``pop``'s coded state to represent ``model_values`` (batch, dims); returns that
        neural state (batch, size)."""
        state = pop.encoding.encode(model_values)
        self._assign(self.groups[pop.name], pop.encoding.variable, state.ravel())
        return state

    def _assign(self, group, var, values):
        if self.standalone:        # recorded as an assignment in the standalone project
            setattr(group, var + "_", values)
        else:
            group.variables[var].get_value()[:] = values

    def store(self, name: str = "default") -> None:
        """Snapshot the network's state under ``name`` (brian2's ``Network.store``)."""
        self.network.store(name)

    def restore(self, name: str = "default") -> None:
        """Return to the state stored under ``name``."""
        self.network.restore(name)

    # -- recordings -----------------------------------------------------------------------------
    def record_count(self) -> tuple[int, dict[str, int]]:
        """A bookmark of what the monitors hold now (give it to :meth:`recordings`)."""
        return (len(next(iter(self.monitors.values())).t_),
                {name: int(m.num_spikes) for name, m in self.spike_monitors.items()})

    def recordings(self, start: tuple[int, dict[str, int]] = (0, {})) -> dict:
        """Monitor contents since the bookmark ``start``, as plain arrays: ``t`` (T,) seconds;
        per population, per recorded variable, (T, batch, size) in SI units; and under
        ``"spikes"``, per spiking population, (unit indices, times in s)."""
        first, spikes_from = start
        out = {"t": np.array(next(iter(self.monitors.values())).t_[first:])}
        for name, mon in self.monitors.items():
            out[name] = {var: np.array(getattr(mon, var + "_")[:, first:]).T.reshape(
                len(out["t"]), self.batch, -1) for var in mon.record_variables}
        out["spikes"] = {name: (np.array(m.i_[spikes_from.get(name, 0):]),
                                np.array(m.t_[spikes_from.get(name, 0):]))
                         for name, m in self.spike_monitors.items()}
        return out
