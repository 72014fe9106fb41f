"""A stream of data points through one persistent network against rebuilding per point.

Run:  python benchmarks/bench_stream.py [--points 100] [--targets cython numpy]

Each of ``--points`` data points (drawn from a 64-32-8 linear model) is inferred by running the
rate circuit for ``--duration-ms`` from the prior means, three ways, timed in the same process
after a warm-up (code generation is cached after the first build) and checked to give the same
estimates (the stream is checked against separate runs in the contract tests):

* *rebuild*: ``simulate(circuit, x)`` per point — a new brian2 network each time;
* *run per point*: one :class:`~pcbio.circuits.CircuitNetwork`, ``run(network, x, init=prior)``
  per point — one brian2 ``run()`` (and its set-up) per point;
* *stream*: the same network, all points in one ``run(network, xs, stimulus_dt=T,
  reset_each_frame=True)`` — one brian2 ``run()`` for the whole stream.
"""

import argparse
import time

import numpy as np
from brian2 import ms

from pcbio.circuits import CircuitNetwork, build_circuit
from pcbio.model import GenerativeModel, Link
from pcbio.simulate import run, simulate


def model_64_32_8(seed=0):
    rng = np.random.default_rng(seed)
    dims = (64, 32, 8)
    links = [Link(rng.normal(size=(dims[l], dims[l + 1])) / np.sqrt(dims[l + 1]) * 0.5, cov=1.0)
             for l in range(2)]
    return GenerativeModel(np.zeros(dims[-1]), 1.0, links, name="64x32x8")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--duration-ms", type=float, default=50.0)
    p.add_argument("--targets", nargs="+", default=["cython", "numpy"])
    args = p.parse_args()
    model = model_64_32_8()
    xs = model.sample(args.points + 1, seed=1)[0][:, None, :]       # (points, batch 1, d_0)
    prior = model.prior_means(1)
    duration = args.duration_ms * ms
    circuit = build_circuit(model, "rate")
    print(f"{'target':>8s} {'points':>7s} {'rebuild':>9s} {'run/point':>10s} {'stream':>9s} "
          f"{'rebuild/run':>12s} {'rebuild/stream':>15s}   (seconds per point)")
    steps = int(round(args.duration_ms * 10))
    for target in args.targets:
        net = CircuitNetwork(circuit, 1, 0.1 * ms, target=target, record_every=steps)
        run(net, xs[0], duration, init=prior)                     # warm-up: code generation
        simulate(circuit, xs[0], duration=duration, target=target, record_every=steps)
        t0 = time.perf_counter()
        fresh = [simulate(circuit, x, duration=duration, target=target,
                          record_every=steps).final_means()[0] for x in xs[1:]]
        rebuild = (time.perf_counter() - t0) / args.points
        t0 = time.perf_counter()
        kept = [run(net, x, duration, init=prior).final_means()[0] for x in xs[1:]]
        per_run = (time.perf_counter() - t0) / args.points
        t0 = time.perf_counter()
        traj = run(net, xs[1:], duration * args.points, stimulus_dt=duration, init=prior,
                   reset_each_frame=True)
        stream = (time.perf_counter() - t0) / args.points
        assert np.allclose(kept, fresh, atol=1e-12), "persistent and rebuilt runs disagree"
        assert len(traj) == args.points      # stream = separate runs: tests/test_circuit_contract.py
        print(f"{target:>8s} {args.points:7d} {rebuild:9.4f} {per_run:10.4f} {stream:9.4f} "
              f"{rebuild / per_run:12.2f} {rebuild / stream:15.2f}", flush=True)


if __name__ == "__main__":
    main()
