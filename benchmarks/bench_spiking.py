"""Spiking circuits: speed per simulated second, against a bare brian2 network of the same size.

Run:  python benchmarks/bench_spiking.py [--sizes 33 100 333] [--seconds 1.0] [--density 1.0]

The workload is the population code of a linear model with 10 data and 10 latent variables and
a diagonal (sparse) weight matrix, so that the synapse count stays within what per-pair
synapses can hold: 3 × 10 ensembles of N neurons (N = 33, 100, 333 gives ≈ 10³, 3·10³, 10⁴
neurons).  For each size:

* **runtime (Cython)**: pcbio's default matrix coupling (read-outs times weights), wall time
  per simulated second;
* **cpp_standalone, compiled once**: :class:`pcbio.standalone.StandaloneProject` — compilation
  time, then the C++ main loop for three data points run with new inputs;
* **bare brian2**: the same neuron groups (equations, thresholds, resets, refractoriness, per-unit
  constants) and the same synapses (the same i, j, w and on-pre/summed code), built with brian2
  directly without pcbio, with spike monitors (spikes are the output in both) but no state
  monitors, in cpp_standalone, timed the same way.

The ratio pcbio / bare is pcbio's overhead (its monitors and read-outs).  Synapse counts and
their memory are reported; the factorised runtime coupling has no per-pair synapses at all.
"""

import argparse
import shutil
import tempfile
import time

import brian2
import numpy as np
from brian2 import ms, second

from pcbio.circuits import CircuitNetwork, build_circuit
from pcbio.model import GenerativeModel, Link
from pcbio.simulate import simulate
from pcbio.standalone import StandaloneProject

K = 10


def sparse_model():
    rng = np.random.default_rng(0)
    W = np.diag(rng.uniform(0.5, 1.5, K))
    return GenerativeModel(np.zeros(K), 1.0, [Link(W, cov=0.5)], name=f"{K}x{K}-diagonal")


def structure_of(circuit):
    """Groups and synapses of the circuit's Synapses coupling, as plain data (a runtime build
    that is never run)."""
    brian2.prefs.codegen.target = "numpy"
    net = CircuitNetwork(circuit, 1, 0.1 * ms, "synapses")
    groups = {}
    for name, g in net.groups.items():
        pop = net.populations[name]
        spiking = pop.neuron.spiking
        own = brian2.Equations([eq for eq in g.equations.values()       # brian2 re-adds these
                                if eq.varname not in ("not_refractory", "lastspike")])
        groups[name] = dict(N=len(g), model=own, threshold=pop.neuron.threshold,
                            reset="\n".join(c for c in (pop.neuron.reset,
                                                        pop.encoding.spike_code(name)) if c)
                            if spiking else None,
                            refractory=pop.neuron.refractory or False, method=pop.neuron.method,
                            namespace=net.namespaces[name],
                            values={v: np.array(g.variables[v].get_value())
                                    for v in g.variables if v in g.equations.names
                                    and g.equations[v].type == "parameter"})
    synapses = []
    for obj in net.network.objects:
        if isinstance(obj, brian2.Synapses):
            synapses.append(dict(name=obj.name, source=obj.source.name, target=obj.target.name,
                                 model=obj.equations,
                                 summed={k[:-5]: str(u.expression) for k, u in obj.summed_updaters.items()},
                                 on_pre=obj.pre.code if hasattr(obj, "pre") else None,
                                 i=np.array(obj.i[:]), j=np.array(obj.j[:]),
                                 w=np.array(obj.w[:]), namespace=obj.namespace))
    return groups, synapses


def bare_loop_time(groups, synapses, seconds):
    """C++ main-loop time of the same network built with brian2 alone (cpp_standalone)."""
    directory = tempfile.mkdtemp(prefix="bare-")
    brian2.set_device("cpp_standalone", directory=directory, build_on_run=False)
    try:
        made = {}
        for name, g in groups.items():
            kw = {} if g["threshold"] is None else dict(threshold=g["threshold"], reset=g["reset"],
                                                       refractory=g["refractory"])
            group = brian2.NeuronGroup(g["N"], g["model"], method=g["method"], name=name,
                                       namespace=g["namespace"], **kw)
            for var, values in g["values"].items():
                setattr(group, var + "_", values)
            made[name] = group
        objects = list(made.values())
        for s in synapses:
            model = s["model"]
            kw = {"on_pre": s["on_pre"]} if s["on_pre"] else {}
            syn = brian2.Synapses(made[s["source"]], made[s["target"]], model=model,
                                  namespace=s["namespace"], name=s["name"], **kw)
            syn.connect(i=s["i"], j=s["j"])
            syn.w = s["w"]
            objects.append(syn)
        objects += [brian2.SpikeMonitor(g) for name, g in made.items()      # spikes are the
                    if groups[name]["threshold"] is not None]                 # output, in both
        net = brian2.Network(*objects)
        net.run(seconds * second, namespace={})
        brian2.device.build(directory=directory, compile=True, run=True, with_output=False)
        return brian2.device._last_run_time
    finally:
        brian2.device.reinit()
        brian2.set_device("runtime")
        shutil.rmtree(directory, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[33, 100, 333])
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--density", type=float, default=1.0,
                   help="synapse_density: fraction of neuron pairs given a synapse")
    args = p.parse_args()
    model = sparse_model()
    xs = model.sample(3, seed=1)[0]
    print(f"{'N/var':>6s} {'neurons':>8s} {'synapses':>9s} {'syn MB':>7s} {'cython (s/s)':>12s} "
          f"{'compile (s)':>11s} {'pcbio C++ (s/s)':>15s} {'bare C++ (s/s)':>14s} "
          f"{'pcbio/bare':>10s}")
    for n in args.sizes:
        circuit = build_circuit(model, "spiking", neurons_per_unit=n,
                                synapse_density=args.density)
        groups, synapses = structure_of(circuit)
        neurons = sum(g["N"] for g in groups.values())
        count = sum(len(s["i"]) for s in synapses)
        t0 = time.perf_counter()
        simulate(circuit, xs[:1], duration=args.seconds * second, target="cython",
                 record_every=100)
        cython = (time.perf_counter() - t0) / args.seconds
        with StandaloneProject(circuit, 1, args.seconds * second, record_every=100) as project:
            loops = [project.run(x[None]).info.standalone_run_time_s for x in xs]
            compile_s = project.compile_seconds
        pcbio_loop = min(loops) / args.seconds
        bare = bare_loop_time(groups, synapses, args.seconds) / args.seconds
        print(f"{n:6d} {neurons:8d} {count:9d} {16 * count / 1e6:7.1f} {cython:12.3f} "
              f"{compile_s:11.1f} {pcbio_loop:15.3f} {bare:14.3f} {pcbio_loop / bare:10.2f}",
              flush=True)


if __name__ == "__main__":
    main()
