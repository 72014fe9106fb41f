"""Dendritic circuit simulation time against the rate circuit of the same model.

Run:  python benchmarks/bench_dendritic.py [--targets cython numpy] [--batch 16]

Both circuits run the same model, data, τ, dt and start in the same process (best of
``--repeats``).  The dendritic circuit has more populations per level — soma, basal, apical,
interneuron (and apical branches for an MLP link) against the rate circuit's value and error
units — so the table gives the ratio of wall times, the neurons of each, and the cost per
neuron and step.
"""

import numpy as np
from brian2 import ms
from bench_rate_circuit import best_of, circuit_arguments, random_model  # same models, timing

from pcbio.circuits import CircuitNetwork, build_circuit
from pcbio.model import load_model
from pcbio.simulate import run


def main():
    args = circuit_arguments(__doc__.splitlines()[0])
    dt = 0.1 * ms
    steps = int(round(args.duration_ms / 0.1))
    print(f"{'model':>14s} {'target':>7s} {'rate (s)':>9s} {'dendritic (s)':>14s} {'ratio':>6s} "
          f"{'neurons rate':>13s} {'dendritic':>10s} {'ns/neuron/step r':>17s} {'d':>6s}")
    for model in (random_model((8, 4, 2)), random_model((784, 256, 64)), load_model("pyramidal_mlp")):
        x = model.sample(args.batch, seed=1)[0]
        init = [np.zeros((args.batch, d)) for d in model.latent_dims]
        for target in args.targets:
            row = {}
            for kind in ("rate", "dendritic"):
                net = CircuitNetwork(build_circuit(model, kind), batch=args.batch, dt=dt,
                                     record_every=steps, target=target)

                def go():
                    run(net, x, duration=steps * dt, init=init)      # init: the same start
                go()                                   # code generation and compilation
                neurons = sum(g.N for g in net.groups.values()) // args.batch
                row[kind] = (best_of(go, args.repeats), neurons)
            (tr, nr), (td, nd) = row["rate"], row["dendritic"]
            per = lambda t, n: 1e9 * t / (n * args.batch * steps)    # noqa: E731
            print(f"{model.name:>14s} {target:>7s} {tr:9.3f} {td:14.3f} {td / tr:6.2f} "
                  f"{nr:13d} {nd:10d} {per(tr, nr):17.1f} {per(td, nd):6.1f}", flush=True)


if __name__ == "__main__":
    main()
