"""Learning PPCA of the digits in the brian2 circuit against the same updates on the VAE side.

Run:  python benchmarks/bench_learning.py [--epochs 1] [--batch 100] [--targets cython numpy]

One epoch of ``models/ppca_digits.toml`` on the digits (80 % split, minibatches of ``--batch``),
each update preceded by ``--steps`` inference steps of size dt/τ from the prior means, timed in
the same process after a warm-up:

* *circuit*: :class:`~pcbio.learning.CircuitLearner` — the brian2 rate circuit (deterministic
  value units, temperature 0), one brian2 run for the epoch, the local rule at each frame's end;
* *VAE side*: :class:`~pcbio.learning.VaeLearner` with ``inference="gradient"`` — the same
  number of gradient steps in numpy (:func:`pcbio.inference.gradient_inference`), then the same
  local rule at the point reached;

and checked to reach the same model (they integrate the same ODE with the same Euler steps).
Also printed: the circuit with noisy value units (temperature 1, what the experiment uses) and
variational EM with the exact posterior (no inference steps at all) for scale.
"""

import argparse
import time

import numpy as np
from brian2 import ms

from pcbio import load_model
from pcbio.data import load_data, split
from pcbio.learning import CircuitLearner, LearningRates, VaeLearner

RATES = LearningRates(weights=0.03, bias=0.03, cov=1e-5)


def timed(learner, batches):
    t0 = time.perf_counter()
    learner.epoch(batches, seed=(0, 1))
    return time.perf_counter() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--steps", type=int, default=3000, help="inference steps per update")
    p.add_argument("--targets", nargs="+", default=["cython", "numpy"])
    args = p.parse_args()
    x_train, _ = split(load_data("digits"), 0.2, 0)
    n = len(x_train) // args.batch
    batches = x_train[: n * args.batch].reshape(n, args.batch, -1)
    model = load_model("ppca_digits")
    dt, tau = 0.015 * ms, 10 * ms
    settle = args.steps * dt
    print(f"{n} updates of batch {args.batch}, {args.steps} steps each (dt/tau = {dt / tau:g})")
    vae = VaeLearner(model, RATES, inference="gradient", steps=args.steps,
                     step_size=float(dt / tau))
    t_vae = timed(vae, batches)
    em = VaeLearner(model, RATES)
    t_em = timed(em, batches)
    print(f"VAE side, gradient inference + local rule: {t_vae:.2f} s;  variational EM (exact "
          f"posterior): {t_em:.2f} s")
    for target in args.targets:
        for temperature in (0.0, 1.0):
            learner = CircuitLearner(model, RATES, args.batch, settle=settle, dt=dt, tau=tau,
                                     temperature=temperature, target=target, compare_every=0)
            learner.epoch(batches[:1], seed=(0, 0))                  # warm-up: code generation
            learner.set_model(model)
            t = timed(learner, batches)
            line = (f"circuit {target:7s} temperature {temperature:g}: {t:.2f} s, "
                    f"circuit / VAE side {t / t_vae:.2f}")
            if temperature == 0:
                gap = max(np.abs(a.W - b.W).max() for a, b in zip(learner.model.links,
                                                                  vae.model.links))
                line += f"  (max |W difference| {gap:.1e})"
            print(line)


if __name__ == "__main__":
    main()
