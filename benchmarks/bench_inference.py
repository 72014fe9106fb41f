"""The VAE side against hand-written numpy: gradient iterative inference and one ELBO gradient.

Run:  python benchmarks/bench_inference.py [--batches 1 128 1024] [--repeats 5]

Workloads (a standard predictive-coding benchmark): latents 10 → 128 → 128 → data 784 with links
``W tanh(z) + b`` and unit variances, and a small 64-32-8 model of the same kind.

* *inference*: 20 steps of ``μ ← μ + 0.1 ∇_z log p(x, μ)`` from the prior means, recording only
  the final state — ``gradient_inference(model, x, steps=20, step_size=0.1,
  record_every=20)`` against a loop written here directly with numpy (``tanh`` computed once per
  level and reused for its derivative), in float64 and float32;
* *ELBO gradient*: one ``elbo_gradient`` of a diagonal q (8 reparameterised samples) with respect
  to the means, log-variances and every model parameter (the learning step), against the same
  mathematics written out here.

Every pair is checked to give the same numbers before it is timed (best of ``--repeats`` runs,
or of as many as fill a second, run alternately in the same process). GFLOP/s counts the matrix
products only (2·B·m·n each) and is set against the roofline: one float32 product of the
workload's largest shape, timed here.
"""

import argparse
import time

import numpy as np

from pcbio.inference import GaussianPosterior, elbo_gradient, gradient_inference
from pcbio.model import GenerativeModel, Link

STEPS, ALPHA, SAMPLES = 20, 0.1, 8


def workload(dims, seed=0):
    """``dims`` = (d_0, d_1, …, d_L); links W tanh(z) + b, unit variances; weights scaled by
    1/sqrt(d_l + d_{l+1}) so that step size 0.1 is stable (the log joint rises at every step)."""
    rng = np.random.default_rng(seed)
    links = [Link(rng.normal(size=(dims[l], dims[l + 1])) / np.sqrt(dims[l] + dims[l + 1]),
                  rng.normal(size=dims[l]) * 0.1, "tanh", cov=1.0) for l in range(len(dims) - 1)]
    return GenerativeModel(np.zeros(dims[-1]), 1.0, links, name="x".join(map(str, dims)))


def params(model, dtype):
    """The weights, biases and top mean in ``dtype``: converted once, outside the timed calls,
    as pcbio's model is (``model.astype``)."""
    return ([lk.W.astype(dtype) for lk in model.links], [lk.b.astype(dtype) for lk in model.links],
            model.top_mean.astype(dtype))


def hand_inference(params_, x, z0, dtype):
    """20 Euler steps of τ dz/dt = −ε_l + f'(z_l) ⊙ W_{l-1}ᵀ ε_{l-1}, unit variances, from
    ``params(model, dtype)``."""
    Ws, bs, top = params_
    x = x.astype(dtype)
    z = [zl.astype(dtype) for zl in z0]
    L = len(z)
    for _ in range(STEPS):
        f = [np.tanh(zl) for zl in z]
        eps = [x - (f[0] @ Ws[0].T + bs[0])]
        eps += [z[l] - (f[l + 1] @ Ws[l + 1].T + bs[l + 1]) for l in range(L - 1)]
        eps.append(z[-1] - top)
        for l in range(L):
            z[l] = z[l] + ALPHA * ((1 - f[l] * f[l]) * (eps[l] @ Ws[l]) - eps[l + 1])
    return z


def hand_elbo_gradient(params_, x, q, seed):
    """The Monte-Carlo ELBO and its gradient w.r.t. μ, log s², every W and b, the (scalar, unit)
    noise variances and the top mean, written out for unit variances (noise drawn here, as
    pcbio draws it), from ``params(model, float64)``."""
    Ws, bs, top = params_
    gamma = np.random.default_rng(seed).standard_normal((SAMPLES,) + q.flat_mean().shape)
    std = q.std()
    zs = q.split(q.flat_mean() + std * gamma)                     # (K, B, d_l)
    K, L = len(gamma), len(zs)
    f = [np.tanh(zl) for zl in zs]
    eps = [x - (f[0] @ Ws[0].T + bs[0])] + [zs[l] - (f[l + 1] @ Ws[l + 1].T + bs[l + 1])
                                          for l in range(L - 1)] + [zs[-1] - top]
    sq = [np.vecdot(e, e) for e in eps]                           # (K, B) per level
    dims = [e.shape[-1] for e in eps]
    logp = -0.5 * (sum(sq) + sum(dims) * np.log(2 * np.pi))
    entropy = 0.5 * (np.log(std ** 2).sum(-1) + std.shape[-1] * (1 + np.log(2 * np.pi)))
    value = logp.mean(0) + entropy
    g = [(1 - f[l] * f[l]) * (eps[l] @ Ws[l]) - eps[l + 1] for l in range(L)]
    gflat = np.concatenate(g, -1)
    grad_mu = gflat.mean(0)
    grad_lv = 0.5 * std * (gflat * gamma).mean(0) + 0.5
    grad_W = [eps[l].reshape(-1, eps[l].shape[-1]).T @ f[l].reshape(-1, f[l].shape[-1]) / K
              for l in range(L)]
    grad_b = [eps[l].sum((0, 1)) / K for l in range(L)]
    grad_var = [0.5 * (s.sum() - s.size * d) / K for s, d in zip(sq, dims)]
    return value, grad_mu, grad_lv, grad_W, grad_b, eps[-1].sum((0, 1)) / K, grad_var


def best_of(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def compare(mine, reference, repeats, min_seconds=1.0):
    """Best-of times of two functions run alternately (so that load on the shared machine
    falls on both alike), with their last results: at least ``repeats`` runs each, and more
    until each has run for ``min_seconds`` (a sub-millisecond call needs thousands of runs to
    meet a quiet moment)."""
    times, outs = [[], []], [None, None]
    while len(times[0]) < repeats or min(sum(times[0]), sum(times[1])) < min_seconds:
        for k, fn in enumerate((mine, reference)):
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return min(times[0]), min(times[1]), outs[0], outs[1]


def matmul_flops(dims, batch):
    """Matrix-product FLOPs of one forward + backward pass (2·B·m·n per product)."""
    return sum(2 * 2 * batch * dims[l] * dims[l + 1] for l in range(len(dims) - 1))


def roofline(dims, batch, repeats):
    """GFLOP/s of one float32 product of the largest (batch × d_1) @ (d_1 × d_0) shape."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(batch, dims[1])).astype(np.float32)
    b = rng.normal(size=(dims[1], dims[0])).astype(np.float32)
    seconds, _ = best_of(lambda: [a @ b for _ in range(20)], repeats)
    return 20 * 2 * batch * dims[0] * dims[1] / seconds / 1e9


def bench_inference(dims, batches, repeats):
    model = workload(dims)
    print(f"\ninference, {model.name}, {STEPS} steps of size {ALPHA}")
    print(f"{'batch':>6s} {'dtype':>8s} {'pcbio (ms)':>11s} {'numpy (ms)':>11s} {'ratio':>6s} "
          f"{'GFLOP/s':>8s} {'roofline':>9s}")
    for batch in batches:
        x = model.sample(batch, seed=1)[0]
        z0 = model.prior_means(batch)
        for dtype in ("float64", "float32"):
            converted = model.astype(dtype)            # once, as a user computing in float32 does
            hand_params = params(model, dtype)         # and once for the hand-written loop
            mine, ref, traj, z = compare(
                lambda: gradient_inference(converted, x, steps=STEPS, step_size=ALPHA, init=z0,
                                           record_every=STEPS),
                lambda: hand_inference(hand_params, x, z0, np.dtype(dtype)), repeats)
            tol = 1e-10 if dtype == "float64" else 1e-3
            for a, b in zip(traj.final_means(), z):
                assert np.allclose(a, b, rtol=tol, atol=tol), "pcbio and numpy disagree"
            gflops = STEPS * matmul_flops(dims, batch) / mine / 1e9
            roof = roofline(dims, batch, repeats) if dtype == "float32" else float("nan")
            print(f"{batch:6d} {dtype:>8s} {1e3 * mine:11.2f} {1e3 * ref:11.2f} {mine / ref:6.2f} "
                  f"{gflops:8.1f} {roof:9.1f}", flush=True)


def bench_elbo_gradient(dims, batches, repeats):
    model = workload(dims)
    print(f"\nELBO gradient w.r.t. q and every parameter, {model.name}, {SAMPLES} samples")
    print(f"{'batch':>6s} {'pcbio (ms)':>11s} {'numpy (ms)':>11s} {'ratio':>6s}")
    hand_params = params(model, np.float64)
    for batch in batches:
        x = model.sample(batch, seed=1)[0]
        rng = np.random.default_rng(2)
        q = GaussianPosterior([rng.normal(size=(batch, d)) * 0.3 for d in model.latent_dims],
                              log_var=[np.full((batch, d), -2.0) for d in model.latent_dims])
        mine, ref, g, (value, mu, lv, gW, gb, gtop, gvar) = compare(
            lambda: elbo_gradient(model, x, q, method="mc", n_samples=SAMPLES, seed=3),
            lambda: hand_elbo_gradient(hand_params, x, q, seed=3), repeats)
        assert np.allclose(g.elbo.value, value) and np.allclose(np.concatenate(g.means, -1), mu)
        assert np.allclose(np.concatenate(g.log_var, -1), lv)
        assert all(np.allclose(a.weights, b) and np.allclose(a.bias, c) and np.allclose(a.cov, v)
                   for a, b, c, v in zip(g.params.links, gW, gb, gvar[:-1]))
        assert np.allclose(g.params.top_mean, gtop) and np.allclose(g.params.top_cov, gvar[-1])
        print(f"{batch:6d} {1e3 * mine:11.2f} {1e3 * ref:11.2f} {mine / ref:6.2f}", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 128, 1024])
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    for dims in [(784, 128, 128, 10), (64, 32, 8)]:
        bench_inference(dims, args.batches, args.repeats)
    bench_elbo_gradient((784, 128, 128, 10), args.batches, args.repeats)


if __name__ == "__main__":
    main()
