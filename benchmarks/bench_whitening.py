"""The local whitening rule on 8×8 natural-image patches: time to a covariance deviation of 0.1,
in the brian2 circuit and in a hand-written numpy loop of the same updates.

Run:  python benchmarks/bench_whitening.py [--per-image 6000] [--max-epochs 8]

Patches of scikit-image's camera, grass, gravel and brick (input noise variance 0.05), 64
lateral units starting at M = 0, minibatches of 100, the decorrelating rule ΔM = η (y yᵀ − I)
with η halved every epoch from 0.02.  *circuit*: :class:`~pcbio.learning.CircuitLearner` on the
rate circuit's recurrent front end (the lateral units settle for 100 ms at dt = 0.4 ms,
τ = 2 ms, before each update); *numpy*: the same updates with the steady state computed exactly,
``y = (I + M)⁻¹ (x − m)``.  After every epoch the deviation ``‖Cov(y) − I‖_F / ‖I‖_F`` on the
training patches (sampling error ≈ √(65/n) ≈ 0.06 here) is printed with the elapsed time.
"""

import argparse
import time

import numpy as np
from brian2 import ms

from pcbio.data import image_patches
from pcbio.flows import LinearFlow
from pcbio.learning import CircuitLearner, LearningRates
from pcbio.learning.rules import lateral_step
from pcbio.model import GenerativeModel, Link

D, BATCH = 64, 100


def deviation(flow, x):
    y = flow.normalize(x)
    return np.linalg.norm(np.cov(y, rowvar=False) - np.eye(D)) / np.sqrt(D)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-image", type=int, default=6000)
    p.add_argument("--max-epochs", type=int, default=8)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    x = image_patches(8, args.per_image, 0)
    x = x + np.sqrt(0.05) * rng.normal(size=x.shape)
    n = len(x) // BATCH
    start = GenerativeModel(np.zeros(1), 1.0, [Link(np.zeros((D, 1)), None, "identity", 1.0)],
                            flow=LinearFlow(np.zeros(D), np.eye(D)))
    learner = CircuitLearner(start, LearningRates(), BATCH, settle=100 * ms, dt=0.4 * ms,
                             compare_every=0)
    learner.epoch(x[:BATCH][None], seed=(0, 999))                # warm-up: code generation
    learner.set_model(start)
    flow = start.flow
    clock = {"circuit": 0.0, "numpy": 0.0}
    reached = {}
    print(f"{len(x)} patches, {n} updates per epoch")
    for epoch in range(args.max_epochs):
        rate = 0.02 / 2 ** epoch
        batches = x[np.random.default_rng([0, epoch]).permutation(len(x))][:n * BATCH]
        batches = batches.reshape(n, BATCH, D)
        learner.rates = LearningRates(lateral=rate)
        t0 = time.perf_counter()
        learner.epoch(batches, seed=(0, epoch))
        clock["circuit"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for xb in batches:
            y = np.linalg.solve(np.eye(D) + flow.recurrent(), (xb - flow.mean).T).T
            flow = lateral_step(flow, xb, y, rate)
        clock["numpy"] += time.perf_counter() - t0
        devs = {"circuit": deviation(learner.model.flow, x), "numpy": deviation(flow, x)}
        for name in devs:
            if devs[name] < 0.1 and name not in reached:
                reached[name] = clock[name]
        print(f"epoch {epoch + 1}: deviation circuit {devs['circuit']:.3f} ({clock['circuit']:.1f} s), "
              f"numpy {devs['numpy']:.3f} ({clock['numpy']:.1f} s)")
        if len(reached) == 2:
            break
    for name in ("circuit", "numpy"):
        print(f"{name}: deviation < 0.1 after " +
              (f"{reached[name]:.1f} s" if name in reached else "more than the epochs run"))
    if len(reached) == 2:
        print(f"circuit / numpy: {reached['circuit'] / reached['numpy']:.1f}")


if __name__ == "__main__":
    main()
