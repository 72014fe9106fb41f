"""A sweep on a 2-worker local Dask cluster against the same points run serially in one process.

Run:  python benchmarks/bench_sweep.py [--points 20] [--duration-ms 1000] [--repeats 2]

Each point infers the linear_gaussian_2d model's latents for one data point with the spiking
population code (100 neurons per variable, ``--duration-ms`` of simulated time, numpy target) —
a few seconds of work per simulated second.  Timed in the same
process: (1) the points' commands run one after another here (``run_point``), (2) ``run_sweep``
on a local cluster of 2 worker processes (cluster start-up, worker imports and result files
included), (3) one direct ``infer_with_circuit`` call, for the per-point overhead of going
through the command line and the sweep's bookkeeping.  The serial and the parallel runs
alternate ``--repeats`` times, so that load on a shared machine falls on both alike.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from brian2 import ms

from pcbio import load_model
from pcbio.simulate import infer_with_circuit
from pcbio.sweep import load_sweep, run_point, run_sweep

SWEEP = '''command = "infer"
model = "linear_gaussian_2d"
[fixed]
method = "spiking"
neurons_per_unit = 100
target = "numpy"
duration = "{duration}ms"
[grid]
x = {xs}
'''


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", type=int, default=20)
    p.add_argument("--duration-ms", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    model = load_model("linear_gaussian_2d")
    xs = model.sample(args.points, seed=3)[0]
    texts = [",".join(f"{v:.6f}" for v in x) for x in xs]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.toml"
        path.write_text(SWEEP.format(xs="[" + ", ".join(f'"{t}"' for t in texts) + "]",
                                     duration=args.duration_ms))
        _, points = load_sweep(path)
        run_point(points[0].argv)                                  # warm caches
        serial_s, parallel_s, serial_points, worker_points = [], [], [], []
        for repeat in range(args.repeats):
            t0 = time.perf_counter()
            serial = [run_point(pt.argv) for pt in points]
            serial_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = Path(tmp) / f"out{repeat}"
            summary = run_sweep(path, out, workers=2)
            parallel_s.append(time.perf_counter() - t0)
            assert summary["failed"] == 0 and all(r["status"] == "ok" for r in serial)
            serial_points += [r["seconds"] for r in serial]
            worker_points += [json.loads(f.read_text())["seconds"]
                              for f in (out / "points").glob("*.json")]
            print(f"{len(points)} points: serial in one process {serial_s[-1]:.1f} s, 2-worker "
                  f"Dask cluster {parallel_s[-1]:.1f} s (speed-up "
                  f"{serial_s[-1] / parallel_s[-1]:.2f}x, cluster start-up included)", flush=True)
        t0 = time.perf_counter()
        for x in xs[:5]:
            infer_with_circuit(model, x[None], "spiking", duration=args.duration_ms * ms,
                               target="numpy", neurons_per_unit=100)
        direct_s = (time.perf_counter() - t0) / 5
    through_cli = np.mean([r["seconds"] for r in serial[:5]])     # the same five points
    print(f"all {args.repeats} repeats: {sum(serial_s):.1f} s against {sum(parallel_s):.1f} s "
          f"(speed-up {sum(serial_s) / sum(parallel_s):.2f}x)")
    print(f"per point (the first five): direct call {direct_s:.3f} s, through the command line "
          f"{through_cli:.3f} s (overhead {through_cli - direct_s:+.3f} s)")
    print(f"point times: median {np.median(serial_points):.2f} s serially, "
          f"{np.median(worker_points):.2f} s on the workers; time the cluster adds to the "
          f"points' work (start, scheduling, the last point's wait): "
          f"{(sum(parallel_s) - sum(worker_points) / 2) / args.repeats:.1f} s per sweep")


if __name__ == "__main__":
    main()
