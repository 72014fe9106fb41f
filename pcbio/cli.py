"""The ``pcbio`` command: ``infer``, ``map``, ``learn``, ``list``, ``run``, ``sweep``.

Errors in the input (a bad model file, a bad ``--x``, a bad option value) exit with status 2 and a
one-line message on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import numpy as np

from . import __version__
from .checks import as_array
from .cost import JSON_COV_LIMIT, check_affordable, inference_cost, simulation_cost
from .data import read_numbers
from .io import to_jsonable
from .progress import Progress

if TYPE_CHECKING:
    import brian2

    from .model import GenerativeModel

EXIT_USAGE = 2


class UsageError(ValueError):
    """Bad command-line input."""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: a bad option is reported like every other bad input."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog.removeprefix('pcbio ')}: {message}")


def _number(kind, option, minimum, strict):
    """An argparse type: an int or float >= (or >) ``minimum``; errors name the option."""
    def convert(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not np.isfinite(value) or value < minimum or (strict and value == minimum):
            bound = f"{'>' if strict else '>='} {minimum}"
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {noun} {bound}, got {text!r}")
        return value
    convert.__name__ = option
    return convert


def parse_x(text: str, model: GenerativeModel) -> np.ndarray:
    """``--x``: comma-separated numbers (one data point; ``;`` separates points), or a path to a
    ``.npy`` / ``.csv`` file with one data point per row (:func:`pcbio.data.read_numbers`).
    Returns (batch, d_0), checked like any data (real, finite, non-empty, within float64's
    useful range for the model)."""
    dim = model.dims[0]
    if Path(text).suffix in (".npy", ".csv"):
        x = read_numbers(text, "--x")
    else:
        try:
            x = [[float(v) for v in row.split(",")] for row in text.split(";")]
        except ValueError:
            raise UsageError(f"--x must be comma-separated numbers (';' between data points) or a "
                             f".npy/.csv file, got {text!r}") from None
    x = as_array(x, "--x", ndim=(1, 2))
    # a 1-D array (text or .npy) is one data point, or — for one-dimensional data — one data
    # point per entry
    x = x.reshape(-1, 1) if (x.ndim == 1 and dim == 1) else np.atleast_2d(x)
    if x.shape[1] != dim:
        raise UsageError(f"--x must have {dim} values per data point (the model's data "
                         f"dimension), got shape {x.shape}")
    return model.check_x(x, "--x")


def quantity(text: str, unit_name: str, option: str) -> brian2.Quantity:
    """Parse '200ms' / '0.1 ms' / '1s' into a brian2 quantity of time."""
    import brian2
    text = text.strip().replace(" ", "")
    for suffix, unit in (("ms", brian2.ms), ("us", brian2.us), ("s", brian2.second)):
        if text.endswith(suffix):
            try:
                value = float(text[: -len(suffix)])
            except ValueError:
                break
            if not np.isfinite(value) or value <= 0:
                break
            return value * unit
    raise UsageError(f"{option} must be a positive {unit_name} like '200ms', '0.1ms' or '1s', "
                     f"got {text!r}")


def _means_json(means):
    """Latent means for JSON: per level, a flat list for one data point, else rows."""
    return [m[0].tolist() if len(m) == 1 else m.tolist() for m in means]


def _batch_json(values):
    return values[0] if len(values) == 1 else list(values)


def cmd_infer(args: argparse.Namespace) -> int:
    from .inference import (DivergenceError, elbo, exact_posterior, gradient_inference,
                            laplace_elbo, log_evidence, map_estimate)
    from .model import load_model
    model = load_model(args.model)
    x = parse_x(args.x, model)
    progress = Progress(quiet=args.quiet)
    if args.method == "exact" and not model.is_linear:
        raise UsageError(f"--method exact needs a linear model; {model.name} has nonlinear "
                         "links (use --method map, gradient or a circuit)")
    circuit = args.method not in ("exact", "gradient", "map")
    options = _circuit_options(args, args.method) if circuit else {}
    cost = inference_cost(model, len(x), "gradient" if circuit else args.method, args.steps)
    if circuit:
        dt, duration = options["dt"], options["duration"]
        cost_sim = simulation_cost(model, len(x), int(round(float(duration / dt))), 10)
        cost = type(cost)(cost.seconds + cost_sim.seconds, max(cost.bytes, cost_sim.bytes),
                          cost_sim.what)
    check_affordable(cost, args.force, progress)
    out = {"model": model.name, "method": args.method, "batch": len(x)}
    data, (x, shift) = x, model.model_space(x)     # the model describes y; shift: log |det|
    if model.flow is not None:
        out["flow"] = {"kind": model.flow.kind, "logdet": shift,
                       "note": "the model describes the flow's y = A (x - m); elbo and log_px "
                               "are in data space (log-det included)"}
    log_px = log_evidence(model, x) + shift if model.is_linear else None
    if args.method == "exact":
        q = exact_posterior(model, x)
        means, value = q.means, elbo(model, x, q)
        D = sum(model.latent_dims)
        out["posterior_var"] = [v.tolist() for v in q.split(np.diag(q.cov))]
        out["posterior_cov"] = np.asarray(q.cov).tolist() if D * D <= JSON_COV_LIMIT else None
        if out["posterior_cov"] is None:
            out["posterior_cov_note"] = (f"omitted: {D} x {D} entries; posterior_var holds its "
                                         "diagonal (pcbio.inference.exact_posterior gives all)")
    else:
        if args.method == "gradient":
            try:
                traj = gradient_inference(model, x, steps=args.steps, step_size=args.step_size)
            except DivergenceError as err:
                raise UsageError(err.message("--step-size")) from None
            means = traj.final_means()
            out.update(steps=args.steps, step_size=args.step_size)
        elif args.method == "map":
            means, info = map_estimate(model, x)
            out.update(info)
        else:
            from .simulate import infer_with_circuit
            means, info = infer_with_circuit(model, data, circuit=args.method, tol=args.tol,
                                             progress=progress, **options)
            out.update(info)
        value = laplace_elbo(model, x, means, seed=args.seed)
        out["elbo_q"] = "Laplace: N(estimate, inverse Hessian of -log p(x, z) at the estimate)"
    out.update(means=_means_json(means), elbo=_batch_json((value.value + shift).tolist()),
               elbo_stderr=_batch_json(value.stderr.tolist()),
               log_px=None if log_px is None else _batch_json(log_px.tolist()))
    if args.json:
        print(json.dumps(to_jsonable(out)))
    else:
        print(f"{model.name}: method={args.method}, batch={len(x)}")
        for l, m in enumerate(means, start=1):
            print(f"  level {l} mean: {np.array2string(m, precision=6)}")
        print(f"  ELBO: {np.array2string(value.value + shift, precision=6)}"
              + ("" if log_px is None else f"   log p(x): {np.array2string(log_px, precision=6)}"))
    return 0


def _circuit_options(args, kind):
    """Simulation options plus the options of circuit ``kind`` that were given; an option of
    another kind is an error naming the options this kind has."""
    from .circuits import CIRCUITS
    options = {"duration": quantity(args.duration, "duration", "--duration"),
               "dt": quantity(args.dt, "time step", "--dt"), "target": args.target}
    own = {p.name: p for p in CIRCUITS[kind].PARAMETERS if p.on_command_line}
    for name, param in _all_circuit_parameters().items():
        text = getattr(args, name)
        if text is None:
            continue
        if name not in own:
            allowed = ", ".join(p.option for p in own.values()) or "none"
            raise UsageError(f"{param.option} does not apply to circuit {kind!r} (its options: "
                             f"{allowed})")
        options[name] = own[name].parse(text)
    return options


def _default_text(param):
    """A declared parameter's default as ``--help`` shows it: ``10.0ms``, ``instant``, …"""
    key, value = param.to_json(param.default)
    unit = key.rsplit("_", 1)[-1] if key.endswith(("_ms", "_Hz", "_pF")) else ""
    return f"{value}{unit}"


def _all_circuit_parameters():
    """Every command-line parameter of every circuit kind, by name (first declaration wins)."""
    from .circuits import CIRCUITS
    params = {}
    for kind in sorted(CIRCUITS):
        for p in CIRCUITS[kind].PARAMETERS:
            if p.on_command_line:
                params.setdefault(p.name, p)
    return params


def cmd_map(args: argparse.Namespace) -> int:
    from .mapping import map_circuit
    from .model import load_model
    model = load_model(args.model)
    x = parse_x(args.x, model)
    options = _circuit_options(args, args.circuit)
    steps = int(round(float(options["duration"] / options["dt"])))
    check_affordable(simulation_cost(model, len(x), steps, max(1, steps // 2000)), args.force,
                     Progress(quiet=args.quiet))
    report = map_circuit(model, x, circuit=args.circuit, plot=args.plot, seed=args.seed,
                         posterior_std=args.posterior_std, progress=Progress(quiet=args.quiet),
                         **options)
    print(json.dumps(to_jsonable(report), indent=None if args.json else 2))
    return 0


#: options of ``pcbio learn`` for the circuit learner itself (not the circuit), with defaults
LEARNER_OPTIONS = (("settle", "45ms"), ("dt", "0.015ms"), ("target", "auto"),
                   ("compare_every", 1))
#: where ``pcbio learn`` departs from the rate circuit's own defaults: noisy value units, so
#: that the local rule is an unbiased estimate of the likelihood gradient
LEARN_CIRCUIT_DEFAULTS = {"temperature": 1.0}


def _learn_circuit_parameters():
    """The rate circuit's declared parameters that ``pcbio learn`` offers (all but the clamped
    top of supervised learning)."""
    from .circuits import RateCircuit
    return [p for p in RateCircuit.PARAMETERS if p.on_command_line and p.name != "top"]


def cmd_learn(args: argparse.Namespace) -> int:
    from .learning import LearningRates
    from .learning.session import learn
    from .model import load_model
    model = load_model(args.model)
    rates = LearningRates(weights=args.lr_weights, bias=args.lr_bias, cov=args.lr_cov,
                          top_mean=args.lr_top_mean, top_cov=args.lr_top_cov,
                          lateral=args.lr_lateral,
                          variance_floor=args.variance_floor)
    circuit_params = {p.name: p for p in _learn_circuit_parameters()}
    given = {name: getattr(args, name) for name in [n for n, _ in LEARNER_OPTIONS] +
             list(circuit_params) if getattr(args, name) is not None}
    options = None
    if args.circuit == "rate":
        learner = {**dict(LEARNER_OPTIONS), **given}
        options = {"settle": quantity(learner["settle"], "duration", "--settle"),
                   "dt": quantity(learner["dt"], "time step", "--dt"),
                   "target": learner["target"], "compare_every": learner["compare_every"],
                   **LEARN_CIRCUIT_DEFAULTS,
                   **{name: circuit_params[name].parse(text) for name, text in given.items()
                      if name in circuit_params}}
    elif given:
        raise UsageError(f"--{next(iter(given)).replace('_', '-')} applies to --circuit rate only")
    summary = learn(model, args.data, args.out, learner=args.circuit, epochs=args.epochs,
                    batch=args.batch, rates=rates, rate_decay=args.rate_decay,
                    test_fraction=args.test_fraction, seed=args.seed, circuit_options=options,
                    progress=Progress(quiet=args.quiet))
    before, after = summary["heldout_initial"], summary["heldout_final"]
    key = next(iter(after))
    print(f"{model.name}: {summary['epochs']} epochs ({args.circuit}); held-out {key} per data "
          f"point {before[key]:.6g} -> {after[key]:.6g}; wrote {Path(args.out) / 'model.toml'} "
          f"and {Path(args.out) / 'learn.json'}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import tomllib

    from .experiment import describe_option, load_experiment
    from .model import load_model
    from .paths import list_experiments, list_models, models_dir
    print("models (models/):")
    for name in list_models():
        model = load_model(name)
        print(f"  {name:28s} dims {model.dims}  {model!r}")
    print("published networks (models/networks/):")
    for path in sorted((models_dir() / "networks").glob("*.toml")):
        with open(path, "rb") as fh:
            print(f"  {path.stem:28s} {tomllib.load(fh).get('description', '')}")
    print("experiments (experiments/, run with `pcbio run NAME`):")
    for name in list_experiments():
        module = load_experiment(name)
        print(f"  {name:28s} {module.DESCRIPTION}")
        for option, allowed in getattr(module, "OPTIONS", {}).items():
            print(f"  {'':28s}   --set {option}={describe_option(allowed)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment import experiment_options, run_experiment
    from .io import check_output_folder
    from .paths import find_experiment, list_experiments
    from .sweep import Pool
    names = list_experiments() if args.experiment == "all" else [args.experiment]
    if args.set and len(names) > 1:
        raise UsageError("--set applies to one experiment, not to 'all'")
    for name in names:                       # every name, option and the folder, before any runs
        find_experiment(name)
    options = experiment_options(names[0], args.set) if args.set else {}
    check_output_folder(args.out, "--out")
    from .inference import OptimisationError
    from .simulate import SimulationError
    failed = []
    with Pool(workers=args.workers, scheduler=args.scheduler) as pool:
        for name in names:
            try:
                paths = run_experiment(name, args.out, quick=args.quick, seed=args.seed,
                                       progress=Progress(quiet=args.quiet), pool=pool,
                                       options=options)
            except (OptimisationError, SimulationError) as err:
                if len(names) == 1:
                    raise
                # 'all': a failed computation leaves nothing written and the others still run
                print(f"pcbio: {name} failed: {' '.join(str(err).split())}", file=sys.stderr)
                failed.append(name)
                continue
            print("\n".join(paths))
    if failed:
        raise SimulationError(f"{len(failed)} of {len(names)} experiments failed "
                              f"({', '.join(failed)}: their errors are above, nothing of theirs "
                              f"was written); the others' results are in {args.out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import run_sweep
    summary = run_sweep(args.file, args.out, scheduler=args.scheduler, workers=args.workers,
                        force=args.force, progress=Progress(quiet=args.quiet))
    print(f"{summary['total']} points: ran {summary['ran']}, skipped {summary['skipped']} "
          f"(finished before), failed {summary['failed']}; results in "
          f"{Path(args.out) / 'results.csv'}")
    if summary["failed"]:
        from .simulate import SimulationError
        raise SimulationError(f"{summary['failed']} of {summary['total']} points failed (their "
                              "errors are in results.csv); run the sweep again to retry them")
    return 0


def build_parser() -> Parser:
    from .circuits import CIRCUITS
    p = Parser(prog="pcbio", description="Predictive coding circuits in brian2, checked against "
               "the ELBO.")
    p.add_argument("--version", action="version", version=f"pcbio {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    seed = _number(int, "--seed", 0, strict=False)

    def common(sp):
        sp.add_argument("--seed", type=seed, default=0, help="seed for Monte-Carlo estimates")
        sp.add_argument("--quiet", action="store_true", help="no progress messages")
        sp.add_argument("--force", action="store_true",
                        help="run even when the estimated time or memory is very large")

    def circuit_args(sp, duration):
        sp.add_argument("--duration", default=duration, help="simulated time (the maximum for "
                        f"circuit inference, which stops at convergence), e.g. {duration}")
        sp.add_argument("--dt", default="0.1ms", help="integration time step, e.g. 0.1ms")
        sp.add_argument("--target", choices=["numpy", "cython", "cpp_standalone", "auto"],
                        default="auto", help="brian2 code-generation target")
        common(sp)
        seen = set()
        for kind in sorted(CIRCUITS):       # each kind's own options, in a group of their own
            group = sp.add_argument_group(f"options of the {kind} circuit "
                                          f"({CIRCUITS[kind].description})")
            for param in CIRCUITS[kind].PARAMETERS:
                if not param.on_command_line or param.name in seen:
                    continue
                seen.add(param.name)
                users = [k for k in sorted(CIRCUITS) if any(q.name == param.name for q in
                                                            CIRCUITS[k].PARAMETERS)]
                also = f"; also: {', '.join(u for u in users if u != kind)}" if len(users) > 1 else ""
                default = _default_text(param)
                group.add_argument(param.option, dest=param.name, default=None,
                                   choices=param.choices or None,
                                   help=f"{param.help} (default {default}{also})")

    sp = sub.add_parser("infer", help="infer the latent causes of data points")
    sp.add_argument("model", help="model file (TOML) or the name of a model in models/")
    sp.add_argument("--x", required=True, help="data: '1,-2,0.5' ('; ' between points) or .npy/.csv")
    sp.add_argument("--method", choices=["exact", "gradient", "map"] + sorted(CIRCUITS),
                    default="gradient", help="VAE-side inference, or a circuit kind")
    sp.add_argument("--steps", type=_number(int, "--steps", 0, strict=False), default=1000,
                    help="gradient steps (--method gradient)")
    sp.add_argument("--step-size", type=_number(float, "--step-size", 0, strict=True),
                    default=0.05, help="α of μ ← μ + α∇_μ L (--method gradient)")
    sp.add_argument("--tol", type=_number(float, "--tol", 0, strict=True), default=1e-8,
                    help="circuit methods: stop when max |τ dz/dt| < tol")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    circuit_args(sp, "1000ms")
    sp.set_defaults(func=cmd_infer)

    sp = sub.add_parser("map", help="run a circuit and measure its distance to the ELBO gradient")
    sp.add_argument("model", help="model file (TOML) or the name of a model in models/")
    sp.add_argument("--x", required=True, help="data: '1,-2,0.5' ('; ' between points) or .npy/.csv")
    sp.add_argument("--circuit", choices=sorted(CIRCUITS), default="rate")
    sp.add_argument("--json", action="store_true", help="print one JSON object (compact)")
    sp.add_argument("--plot", help="write the mapping figure to this file (.pdf, .png or .svg)")
    sp.add_argument("--posterior-std", type=_number(float, "--posterior-std", 0, strict=True),
                    default=None, help="compare dz/dt with grad_mu ELBO of N(z, s^2 I) at this s "
                                       "(default: the s -> 0 limit, grad_z log p)")
    circuit_args(sp, "200ms")
    sp.set_defaults(func=cmd_map)

    sp = sub.add_parser("learn", help="learn a model's parameters from data (a brian2 circuit "
                        "with local plasticity, or the VAE side)")
    sp.add_argument("model", help="initial model: a model file (TOML) or a name in models/")
    sp.add_argument("--data", required=True, help="a bundled data set (digits) or a .npy/.csv "
                                                  "file, one data point per row")
    sp.add_argument("--out", required=True, help="folder for model.toml, learn.json and the "
                                                 "checkpoint (a rerun resumes from it)")
    sp.add_argument("--circuit", choices=["rate", "vae"], default="rate",
                    help="rate: brian2 rate circuit with local plasticity; vae: variational EM")
    sp.add_argument("--epochs", type=_number(int, "--epochs", 1, strict=False), default=20)
    sp.add_argument("--batch", type=_number(int, "--batch", 1, strict=False), default=100,
                    help="data points per update (side by side in the circuit)")
    sp.add_argument("--test-fraction", type=_number(float, "--test-fraction", 0, strict=True),
                    default=0.2, help="share of the data held out for scoring")
    rate = _number(float, "rate", 0, strict=False)
    for name, default, what in (("weights", 0.03, "weights W"), ("bias", 0.03, "biases b"),
                                ("cov", 1e-5, "noise (co)variances"),
                                ("top-mean", 0.0, "the top prior's mean"),
                                ("top-cov", 0.0, "the top prior's covariance"),
                                ("lateral", 0.0, "the lateral weights of a [flow] front end "
                                                 "(rate circuit, decorrelating rule)")):
        sp.add_argument(f"--lr-{name}", type=rate, default=default,
                        help=f"learning rate of {what} per update (0: fixed; default {default})")
    sp.add_argument("--variance-floor", type=_number(float, "--variance-floor", 0, strict=True),
                    default=1e-3, help="no learned variance goes below this")
    sp.add_argument("--rate-decay", type=_number(float, "--rate-decay", 0, strict=True),
                    default=1.0, help="rates are multiplied by this after every epoch (<= 1)")
    helps = {"settle": "time each minibatch is shown (the inference phase)",
             "dt": "integration time step", "target": "brian2 code-generation target",
             "compare_every": "compare every k-th update with the ELBO gradient (0: never)"}
    sp.add_argument("--settle", default=None, help=f"rate circuit: {helps['settle']} (default 45ms)")
    sp.add_argument("--dt", default=None, help=f"rate circuit: {helps['dt']} (default 0.015ms)")
    sp.add_argument("--target", default=None, choices=["numpy", "cython", "auto"],
                    help=f"rate circuit: {helps['target']} (default auto)")
    sp.add_argument("--compare-every", default=None, dest="compare_every",
                    type=_number(int, "--compare-every", 0, strict=False),
                    help=f"rate circuit: {helps['compare_every']} (default 1)")
    for param in _learn_circuit_parameters():        # the circuit's own declarations
        default = LEARN_CIRCUIT_DEFAULTS.get(param.name, _default_text(param))
        sp.add_argument(param.option, dest=param.name, default=None,
                        choices=param.choices or None,
                        help=f"rate circuit: {param.help} (default {default})")
    sp.add_argument("--seed", type=seed, default=0, help="seed of the split, order and noise")
    sp.add_argument("--quiet", action="store_true", help="no progress messages")
    sp.set_defaults(func=cmd_learn)

    sp = sub.add_parser("list", help="list models and experiments")
    sp.set_defaults(func=cmd_list)

    def parallel(sp, default_help):
        sp.add_argument("--workers", type=_number(int, "--workers", 1, strict=False),
                        default=None, help=f"run on a local Dask cluster of this many worker "
                                           f"processes ({default_help})")
        sp.add_argument("--scheduler", default=None, help="address of an existing Dask "
                        "scheduler (e.g. tcp://host:8786) to send the work to")

    sp = sub.add_parser("run", help="run an experiment (a paper figure); 'all' runs every one")
    sp.add_argument("experiment")
    sp.add_argument("--quick", action="store_true", help="smaller, faster version")
    sp.add_argument("--out", default="results", help="output folder")
    sp.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="an option of the experiment (repeatable), e.g. rao_ballard's "
                         "prior=sparse; 'pcbio list' shows each experiment's options")
    common(sp)
    parallel(sp, "default: in this process")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("sweep", help="run every point of a parameter sweep file on Dask")
    sp.add_argument("file", help="sweep file (TOML): command, model/experiment, [fixed], [grid], "
                                 "[zip]")
    sp.add_argument("--out", required=True, help="folder for points/*.json and results.csv")
    sp.add_argument("--quiet", action="store_true", help="no progress messages")
    sp.add_argument("--force", action="store_true", help="run a grid of more than 100,000 points")
    parallel(sp, "default: one per core")
    sp.set_defaults(func=cmd_sweep)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0 done, 2 bad input (nothing computed,
    nothing written), 1 a computation that failed (unstable simulation, optimiser), 3 an
    internal error, 130 interrupted."""
    from .inference import OptimisationError
    from .simulate import SimulationError
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError) as err:
        return _fail(err, EXIT_USAGE)
    except (OptimisationError, SimulationError) as err:
        return _fail(err, 1)
    except KeyboardInterrupt:
        return _fail("interrupted; no results were written", 130)
    except Exception as err:      # a bug, not the user's mistake: say so in one line
        if os.environ.get("PCBIO_DEBUG"):
            raise
        return _fail(f"internal error ({type(err).__name__}: {err}); please report it with the "
                     "command line (PCBIO_DEBUG=1 shows the traceback)", 3)


def _fail(err, code):
    print("pcbio: error: " + " ".join(str(err).split()), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
