"""Rate circuit simulation time vs a plain numpy Euler integration of the same ODE.

Run:  python benchmarks/bench_rate_circuit.py [--targets cython numpy cpp_standalone] [--batch 16]

For each model size the reference is a numpy Euler loop of ``τ dz/dt = Jᵀε_below − ε_own``
written directly with matrix products (no pcbio code), timed in the same process; the ratio is
circuit wall time / reference wall time for the same number of steps.  Build and code-generation
time is reported separately (a first run includes compilation; the timed run reuses the cache;
for cpp_standalone the timed figure is the C++ main loop as brian2 reports it, without the
compilation that every standalone run repeats).
"""

import argparse
import time

import numpy as np
from brian2 import ms

from pcbio.circuits import build_circuit
from pcbio.model import GenerativeModel, Link
from pcbio.simulate import simulate


def random_model(dims, seed=0):
    rng = np.random.default_rng(seed)
    links = [Link(rng.normal(size=(dims[l], dims[l + 1])) / np.sqrt(dims[l + 1]) * 0.5,
                  cov=1.0, name=f"link{l}") for l in range(len(dims) - 1)]
    return GenerativeModel(np.zeros(dims[-1]), 1.0, links, name="x".join(map(str, dims)))


def numpy_euler(model, x, steps, alpha):
    """Reference: Euler steps of the PC dynamics with precomputed matrices."""
    Ws = [link.W for link in model.links]
    precs = [1.0 / link.cov.variances for link in model.links] + [1.0 / model.top_cov.variances]
    z = [np.zeros((len(x), d)) for d in model.latent_dims]
    for _ in range(steps):
        levels = [x] + z
        eps = [precs[l] * (levels[l] - (levels[l + 1] @ Ws[l].T)) for l in range(len(Ws))]
        eps.append(precs[-1] * (z[-1] - model.top_mean))
        z = [z[l] + alpha * (eps[l] @ Ws[l] - eps[l + 1]) for l in range(len(z))]
    return z


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def circuit_arguments(description: str) -> argparse.Namespace:
    """The command line of the circuit benchmarks: code-generation targets, batch, simulated
    duration and how many timed repeats."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--targets", nargs="+", default=["cython", "numpy"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--duration-ms", type=float, default=200.0)
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args()


def main():
    args = circuit_arguments(__doc__.splitlines()[0])
    dt, tau = 0.1 * ms, 10 * ms
    steps = int(round(args.duration_ms / 0.1))
    print(f"{'model':>12s} {'target':>15s} {'coupling':>9s} {'ref (s)':>9s} {'circuit (s)':>12s} "
          f"{'ratio':>7s} {'first run (s)':>14s}")
    for dims in [(8, 4, 2), (784, 256, 64)]:
        model = random_model(dims)
        x = model.sample(args.batch, seed=1)[0]
        ref = best_of(lambda: numpy_euler(model, x, steps, float(dt / tau)), args.repeats)
        for target in args.targets:
            coupling = "synapses" if target == "cpp_standalone" else "matrix"
            circuit = build_circuit(model, "rate", tau=tau)
            init = [np.zeros((args.batch, d)) for d in model.latent_dims]

            def run():
                return simulate(circuit, x, duration=steps * dt, dt=dt, target=target,
                                coupling=coupling, init=init, record_every=steps)
            first = best_of(run, 1)
            if target == "cpp_standalone":    # the C++ main loop alone, as brian2 measured it
                timed = run().info.standalone_run_time_s
            else:
                timed = best_of(run, args.repeats)
            print(f"{model.name:>12s} {target:>15s} {coupling:>9s} {ref:9.4f} {timed:12.4f} "
                  f"{timed / ref:7.2f} {first:14.2f}", flush=True)


if __name__ == "__main__":
    main()
