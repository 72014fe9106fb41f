"""Mutation testing: does the quick test suite catch realistic one-line bugs?

Run:  python tools/mutants.py [--jobs 2] [--only NAME …] [--timeout 300]

Each mutant below changes one line of ``pcbio/`` the way a tired maintainer might — a flipped
sign, Σ for Π, a dropped factor, an off-by-one, ``>`` for ``>=``.  For each, a copy of the
project is mutated and ``pytest -m "not slow" -x`` runs on it; the mutant is *killed* when a
test fails.  The script prints each result and the fraction killed, and exits 1 when that
fraction is below 90 % or when a mutant no longer applies (its original text is not in its file
exactly once: BROKEN).  The working tree is never touched.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.90

#: name -> (file, original text, mutated text); the original must occur exactly once
MUTANTS = {
    "encoder tanh derivative dropped": ("pcbio/inference/amortized.py",
                                        "dh = (dmu @ self.Wm + dlv @ self.Ws) * (1 - h * h)",
                                        "dh = (dmu @ self.Wm + dlv @ self.Ws)"),
    "learned gain ignores the gradient": ("pcbio/inference/amortized.py", "gg = g * grad",
                                          "gg = g"),
    "gain branch error sign": ("pcbio/circuits/dendritic.py",
                               'Pathway("gx_1", "apical_0", "vd", "gain_1", "I_in", -u.Ux)',
                               'Pathway("gx_1", "apical_0", "vd", "gain_1", "I_in", u.Ux)'),
    "basal error sign": ("pcbio/circuits/dendritic.py",
                         'f"basal_{l + 1}", "I_in",\n                                -link.W.T)',
                         'f"basal_{l + 1}", "I_in",\n                                link.W.T)'),
    "interneuron copies nothing": ("pcbio/circuits/dendritic.py",
                                   '"I_in", np.ones(dims[l])),\n                      Pathway(f"pi_{l}"',
                                   '"I_in", 0.5 * np.ones(dims[l])),\n                      Pathway(f"pi_{l}"'),
    "branch error sign": ("pcbio/circuits/dendritic.py", '"I_bu", -to_trunk.T)',
                          '"I_bu", to_trunk.T)'),
    "cell coupling left out": ("pcbio/neurons/pyramidal.py",
                               "G = np.array([[gL + gB + gA, -gB, -gA], [-gB, gLd + gB, 0.0]",
                               "G = np.array([[gL + gB + gA, -gB, -gA], [-gB, gLd, 0.0]"),
    "residual sign": ("pcbio/model.py", "np.subtract(fl.x_minus_b, fl.res0, out=fl.res0)",
                      "np.subtract(fl.res0, fl.x_minus_b, out=fl.res0)"),
    "latent residual sign": ("pcbio/model.py", "np.subtract(fl.latents, fl.pred, out=fl.res)",
                             "np.subtract(fl.pred, fl.latents, out=fl.res)"),
    "own error sign": ("pcbio/model.py", "        fl.grad -= fl.eps\n", "        fl.grad += fl.eps\n"),
    "dropped f'": ("pcbio/model.py", "back *= self.nl.df_given(u, fu)", "back *= 1.0"),
    "weight gradient uses z": ("pcbio/model.py", "_weighted_outer(eps[l], fw.fu[l], weights)",
                               "_weighted_outer(eps[l], fw.z[l], weights)"),
    "sampling without noise": ("pcbio/model.py",
                               "z.insert(0, link.predict(z[0]) + link.cov.sample(rng, n))",
                               "z.insert(0, link.predict(z[0]))"),
    "sigma for pi": ("pcbio/covariance.py", "            return r * self._inv_var",
                     "            return r * self._var"),
    "log density factor": ("pcbio/model.py", "return -0.5 * (np.vecdot(fl.res0, fl.eps0)",
                           "return -1.0 * (np.vecdot(fl.res0, fl.eps0)"),
    "variance gradient": ("pcbio/covariance.py", "            prec = self._inv_var\n",
                          "            prec = self._var\n"),
    "log-determinant factor": ("pcbio/covariance.py", "float(2.0 * np.sum(np.log(np.diag(self.chol))))",
                               "float(np.sum(np.log(np.diag(self.chol))))"),
    "tanh derivative": ("pcbio/nonlinearities.py", "lambda u, fu: 1.0 - fu * fu",
                        "lambda u, fu: 1.0 + fu * fu"),
    "brian2 sigmoid derivative": ("pcbio/nonlinearities.py", '"(0.25 * (1.0 - tanh(0.5 * {u})**2))"',
                                  '"(0.5 * (1.0 - tanh(0.5 * {u})**2))"'),
    "softplus derivative": ("pcbio/nonlinearities.py", "lambda u, fu: _sigmoid(u)",
                            "lambda u, fu: _sigmoid(-u)"),
    "log-variance gradient": ("pcbio/inference/elbo.py", "0.5 * q.std() * g_gamma + 0.5",
                              "0.5 * q.std() * g_gamma + 1.0"),
    "sigma points scale": ("pcbio/inference/elbo.py", "eye = np.sqrt(q.D) * np.eye(q.D)",
                           "eye = np.eye(q.D)"),
    "standard error": ("pcbio/inference/elbo.py", "units.std(axis=0, ddof=1) / np.sqrt(len(units))",
                       "units.std(axis=0, ddof=1) / len(units)"),
    "entropy constant": ("pcbio/inference/posterior.py", "self.D * (1.0 + np.log(2.0 * np.pi))",
                         "self.D * np.log(2.0 * np.pi)"),
    "evidence log-determinant": ("pcbio/inference/exact.py", "2 * np.log(np.diag(L)).sum()",
                                 "np.log(np.diag(L)).sum()"),
    "marginal without noise": ("pcbio/inference/exact.py", "W @ C @ W.T + link.cov.matrix",
                               "W @ C @ W.T"),
    "descent instead of ascent": ("pcbio/inference/iterative.py", "latents += grad",
                                  "latents -= grad"),
    "seed schedule": ("pcbio/inference/iterative.py", "n_samples, seed + k, parameters=False",
                      "n_samples, seed, parameters=False"),
    "first recorded step": ("pcbio/inference/iterative.py", "set(range(0, steps + 1, record_every))",
                            "set(range(1, steps + 1, record_every))"),
    "hessian step": ("pcbio/inference/laplace.py", "/ (2 * h)", "/ h"),
    "precision weighting": ("pcbio/covariance.py",
                            "return weights * self._inv_var if self.is_diagonal",
                            "return weights * self._var if self.is_diagonal"),
    "lateral precision sign": ("pcbio/circuits/rate.py",
                               "-(cov.variances if cov.is_diagonal else cov.matrix)))",
                               "(cov.variances if cov.is_diagonal else cov.matrix)))"),
    "prediction bias sign": ("pcbio/circuits/rate.py", 'bias={"I_in": -self._weigh(l, constant',
                             'bias={"I_in": self._weigh(l, constant'),
    "own error pathway sign": ("pcbio/circuits/rate.py", '"I_in",\n                                     -np.ones(dims[l])))',
                               '"I_in",\n                                     np.ones(dims[l])))'),
    "value unit sign": ("pcbio/neurons/rate.py", "(gate * I_bu + I_in) / tau : Hz",
                        "(gate * I_bu - I_in) / tau : Hz"),
    "interneuron leak sign": ("pcbio/neurons/rate.py", '"dinhdt = (I_in - inh) / tau : Hz"',
                              '"dinhdt = (I_in + inh) / tau : Hz"'),
    "stability boundary": ("pcbio/simulate.py", "if float(dt / tau) * rate >= 2:",
                           "if float(dt / tau) * rate > 2:"),
    "convergence time off by one": ("pcbio/simulate.py", "return float(traj.t[above[-1] + 1]) if",
                                    "return float(traj.t[above[-1]]) if"),
    "relative error": ("pcbio/mapping.py", "rel = _norm(a - b, (-2, -1))", "rel = _norm(a + b, (-2, -1))"),
    "variance gap log-variance": ("pcbio/mapping.py",
                                  "q = GaussianPosterior(z, log_var=[np.full_like(zl, 2 * np.log(s))",
                                  "q = GaussianPosterior(z, log_var=[np.full_like(zl, np.log(s))"),
    "posterior std dropped": ("pcbio/mapping.py", "posterior_std, c.n_samples, c.seed)",
                              "None, c.n_samples, c.seed)"),
    "decode gain": ("pcbio/encoding.py", "return (n - self._n0) / self._gain",
                    "return (n - self._n0) * self._gain"),
    "instant rate code": ("pcbio/encoding.py", 'f"{n} = {n0} + {gain} * ({value}) : {unit}"',
                          'f"{n} = {n0} - {gain} * ({value}) : {unit}"'),
    "one-to-one transmission": ("pcbio/circuits/network.py", "np.multiply(pre, w, out=post)",
                                "np.add(pre, w, out=post)"),
    "learning descends": ("pcbio/learning/rules.py", "weights=link.W + rates.weights",
                          "weights=link.W - rates.weights"),
    "interneuron rule constant": ("pcbio/learning/rules.py",
                                  "return float(np.sum(eps * inter)) - n * cov.dim",
                                  "return float(np.sum(eps * inter)) - n"),
    "decorrelating rule sign": ("pcbio/learning/rules.py", "rate * (y.T @ y / n - np.eye(d))",
                                "rate * (np.eye(d) - y.T @ y / n)"),
    "stale errors at a frame's end": ("pcbio/learning/circuit.py",
                                      "        net.deliver()            # instantaneous",
                                      "        pass  # net.deliver()            # instantaneous"),
    "backprop delta sign": ("pcbio/learning/supervised.py",
                            "deltas.append(model.links[l - 1].backward(",
                            "deltas.append(-model.links[l - 1].backward("),
    "Langevin noise scale": ("pcbio/neurons/rate.py", 'noise="sqrt(2 * temperature / tau) * xi"',
                             'noise="sqrt(temperature / tau) * xi"'),
    "front-end log-det sign": ("pcbio/circuits/rate.py",
                               "np.linalg.slogdet(feedforward)[1] - np.linalg.slogdet(system)[1]",
                               "np.linalg.slogdet(feedforward)[1] + np.linalg.slogdet(system)[1]"),
    "subtractive prediction sign": ("pcbio/circuits/rate.py",
                                    "ff, lateral = np.eye(d) - prediction, []",
                                    "ff, lateral = np.eye(d) + prediction, []"),
    "Cholesky prediction": ("pcbio/flows.py",
                            "return np.eye(self.dim) - beta[:, None] * self.matrix, beta",
                            "return np.eye(self.dim) - beta[None, :] * self.matrix, beta"),
    "RB kappa without alpha": ("pcbio/rao_ballard.py",
                               "c, kappa = S / p.sigma_td2, p.alpha * S / p.sigma_td2",
                               "c, kappa = S / p.sigma_td2, S / p.sigma_td2"),
    "RB S with sigma2": ("pcbio/rao_ballard.py",
                         "S = 1.0 / (1.0 / p.sigma_td2 + p.alpha)",
                         "S = 1.0 / (1.0 / p.sigma2 + p.alpha)"),
    "RB decay once per batch": ("pcbio/rao_ballard.py",
                                "self.U = self.U + k2 * (blocks - n * p.weight_decay * self.U)",
                                "self.U = self.U + k2 * (blocks - p.weight_decay * self.U)"),
    "RB basis norm of rows": ("pcbio/rao_ballard.py",
                              "np.linalg.norm(self.U, axis=1, keepdims=True)",
                              "np.linalg.norm(self.U, axis=2, keepdims=True)"),
    "RB error unit sign": ("pcbio/rao_ballard.py",
                           'out["feedback"] = (r_fb - rh @ network.Uh.T)[:, units]',
                           'out["feedback"] = (r_fb + rh @ network.Uh.T)[:, units]'),
    "RB sparse prior gradient": ("pcbio/rao_ballard.py",
                                 "weight * x / (1 + x ** 2),",
                                 "weight * x / (1 + x ** 2) ** 2,"),
    "RB k2 schedule off by one": ("pcbio/rao_ballard.py",
                                  "self.k2_divisor ** (inputs_seen // self.k2_every)",
                                  "self.k2_divisor ** (inputs_seen // self.k2_every + 1)"),
    "RB fixed point sign": ("pcbio/rao_ballard.py",
                            "p.alpha_top / p.weight_decay) - c, 0.0)",
                            "p.alpha_top / p.weight_decay) + c, 0.0)"),
    "RB stripes for frequency": ("pcbio/rao_ballard.py",
                                 "return osi, np.mod(freq_angle + np.pi / 2, np.pi)",
                                 "return osi, np.mod(freq_angle, np.pi)"),
    "RB plateau includes 18 px": ("pcbio/rao_ballard.py",
                                  "plateau = bars.lengths > bars.plateau_from",
                                  "plateau = bars.lengths >= bars.plateau_from"),
    "RB best shift by signed drive": ("pcbio/rao_ballard.py",
                                      "best = np.argmax(np.abs(short), axis=1)",
                                      "best = np.argmax(short, axis=1)"),
    "RB bars at unit contrast": ("pcbio/rao_ballard.py", "contrast = 3.0 * p.contrast /",
                                 "contrast = 3.0 /"),
    "RB covariance of the last chunk": ("pcbio/rao_ballard.py", "C = C + r.T @ r", "C = r.T @ r"),
    "RB orientation index with DC": ("pcbio/rao_ballard.py",
                                     "osi = np.abs(vec) / np.sum(power[:, keep], axis=1)",
                                     "osi = np.abs(vec) / np.sum(power, axis=(1, 2))"),
    "LIF rate log sign": ("pcbio/neurons/lif.py", "np.log1p(-1.0 / J[above])",
                          "np.log1p(1.0 / J[above])"),
    "LIF bias sign": ("pcbio/neurons/lif.py", "1.0 - gains * intercepts, tau_m, t_ref)",
                      "1.0 + gains * intercepts, tau_m, t_ref)"),
    "decoder ridge not per point": ("pcbio/neurons/lif.py", "len(points) * sigma ** 2",
                                    "sigma ** 2"),
    "disk points not uniform": ("pcbio/neurons/lif.py",
                                "r, angle = np.sqrt(rng.uniform(0, 1, count))",
                                "r, angle = (rng.uniform(0, 1, count))"),
    "spike-coding neuron reset to 0": ("pcbio/neurons/lif.py", 'reset="v -= vcost"',
                                       'reset="v = 0"'),
    "spike-coding threshold doubled": ("pcbio/circuits/spiking.py",
                                       '"vth": 0.5 * (1 + SCN_COST) * norm2',
                                       '"vth": (1 + SCN_COST) * norm2'),
    "spike-coding reset without the rate cost": ("pcbio/circuits/spiking.py",
                                                 '"vcost": SCN_COST * norm2}', '"vcost": 0 * norm2}'),
    "Adam first moment not bias-corrected": ("pcbio/learning/optim.py",
                                             "m_hat, v_hat = m / (1 - self.beta1 ** self.t),",
                                             "m_hat, v_hat = m,"),
    "same order every epoch": ("pcbio/learning/train.py", "np.random.default_rng([seed, epoch])",
                               "np.random.default_rng([seed, 0])"),
    "annealing from the second epoch": ("pcbio/learning/train.py",
                                        "rates.scaled(rate_decay ** epoch)",
                                        "rates.scaled(rate_decay ** (epoch + 1))"),
    "held-out ELBO log-det sign": ("pcbio/learning/train.py", "            + shift}",
                                   "            - shift}"),
    "temporal flow coefficients transposed": ("pcbio/flows.py",
                                              "coef[1:].reshape(p, d, d).transpose(0, 2, 1)",
                                              "coef[1:].reshape(p, d, d)"),
    "temporal residual covariance over N - 1": ("pcbio/flows.py",
                                                "residual.T @ residual / len(residual)",
                                                "residual.T @ residual / (len(residual) - 1)"),
    "sweep point ignores its model file": ("pcbio/sweep.py",
                                           "[command, target, params, model_text, __version__]",
                                           "[command, target, params, __version__]"),
    "sweep size ignores zipped points": ("pcbio/sweep.py", "total *= lengths.pop() if lengths else 1",
                                         "total *= 1"),
    "commit never dirty": ("pcbio/io.py", 'return commit + ("-dirty" if dirty else "")',
                           "return commit"),
    "digits over 15": ("pcbio/data.py", "return _digits().data / 16.0",
                       "return _digits().data / 15.0"),
    "patches never in row 0": ("pcbio/data.py",
                               "rows = rng.integers(0, image.shape[0] - size + 1, per_image)",
                               "rows = rng.integers(1, image.shape[0] - size + 1, per_image)"),
    "ensemble start ignores its radius": ("pcbio/encoding.py", "points[..., 0] = z / self.radius[0]",
                                          "points[..., 0] = z"),
    "spike-coding start on a few neurons": ("pcbio/encoding.py",
                                            "nnls(system, np.concatenate([row, np.zeros(len(D))]))[0]",
                                            "nnls(D.T, row)[0]"),
    "derivative by backward differences": ("pcbio/encoding.py",
                                           "return np.gradient(values, t, axis=0)",
                                           "return np.diff(values, axis=0, prepend=values[:1]) / "
                                           "np.gradient(t)[:, None, None]"),
    "saved trajectory loses its compartments": ("pcbio/trajectory.py",
                                                'for group in ("scores", "raw", "params", "compartments"):',
                                                'for group in ("scores", "raw", "params"):'),
    "loaded spikes swap units and times": ("pcbio/trajectory.py",
                                           'spikes = {name: (idx, groups["spikes_t"][name])',
                                           'spikes = {name: (groups["spikes_t"][name], idx)'),
    "MAP polish stepping downhill": ("pcbio/inference/optimize.py",
                                     "+ np.linalg.solve(neg_hessian(model, x, z), grad[..., None])",
                                     "- np.linalg.solve(neg_hessian(model, x, z), grad[..., None])"),
    "zero time quantity accepted": ("pcbio/checks.py",
        "or float(value) <= 0:",
        "or float(value) < 0:"),
    "cost note threshold": ("pcbio/cost.py",
        "if cost.seconds > 10 or cost.bytes > 1e9:",
        "if cost.seconds > 1000 or cost.bytes > 1e9:"),
    "cost records": ("pcbio/cost.py",
        "records = steps // max(record_every, 1) + 1",
        "records = steps + 1"),
    "cost pass flops": ("pcbio/cost.py",
        "return 4.0 * batch * weights",
        "return 4.0 * weights"),
    "cost minutes from hours": ("pcbio/cost.py",
        "f\"{seconds / 60:.0f} min\"",
        "f\"{seconds / 3600:.0f} min\""),
    "cost map bytes": ("pcbio/cost.py",
        "30 * 8.0 * batch * D + batch * dense",
        "30 * 8.0 * batch * D"),
    "unique names unchecked": ("pcbio/circuits/structure.py",
        "if len(pops) != len(populations):",
        "if len(pops) > len(populations):"),
    "jump source unchecked": ("pcbio/circuits/structure.py",
        "if pw.kind == \"jump\" and not pre.neuron.spiking:",
        "if False:"),
    "one-to-one sizes unchecked": ("pcbio/circuits/structure.py",
        "if pw.one_to_one and pre.dims != post.dims:",
        "if False:"),
    "option times saved in seconds": ("pcbio/circuits/parameters.py",
        "return f\"{self.name}_{name}\", float(value / getattr(brian2, name))",
        "return f\"{self.name}_{name}\", float(value)"),
    "option us read as ms": ("pcbio/circuits/parameters.py",
        "\"us\": brian2.us",
        "\"us\": brian2.ms"),
    "parse int as float": ("pcbio/circuits/parameters.py",
        "{\"int\": int, \"seed\": int,",
        "{\"int\": float, \"seed\": int,"),
    "experiment options not passed": ("pcbio/experiment.py",
        "    kwargs.update(options)\n",
        ""),
    "experiment options not recorded": ("pcbio/experiment.py",
        "\"options\": options, **provenance",
        "\"options\": {}, **provenance"),
    "encoder lr unscaled": ("pcbio/learning/amortized.py",
        "self.adam_encoder.lr = self.lr * scale",
        "self.adam_encoder.lr = self.lr"),
    "model lr unannealed": ("pcbio/learning/amortized.py",
        "self.adam_model.lr = self.lr\n",
        "self.adam_model.lr = self.lr * 2\n"),
    "learn_model ignored": ("pcbio/learning/amortized.py",
        "            if self.learn_model:\n                g = gradient_dict",
        "            if True:\n                g = gradient_dict"),
    "update minibatches share a seed": ("pcbio/learning/amortized.py",
        "base + 1000 * k)",
        "base)"),
    "update lr unannealed": ("pcbio/learning/amortized.py",
        "self.adam.lr = self.lr * self.rates.weights",
        "self.adam.lr = self.lr"),
    "update record per step": ("pcbio/learning/amortized.py",
        "\"elbo_per_step\": value / (n * self.steps)",
        "\"elbo_per_step\": value / n"),
    "update score from zero": ("pcbio/learning/amortized.py",
        "mu = self.update.run(model, x, model.prior_means(len(x))[0], self.steps)[-1]",
        "mu = self.update.run(model, x, model.prior_means(len(x))[0], 1)[-1]"),
    "session split seed": ("pcbio/learning/session.py",
        "x_train, x_test = split(x, test_fraction, seed)",
        "x_train, x_test = split(x, test_fraction, 0)"),
    "session final on test": ("pcbio/learning/session.py",
        "\"train_final\": heldout_score(learned, x_train, seed)",
        "\"train_final\": heldout_score(learned, x_test, seed)"),
    "session n_test": ("pcbio/learning/session.py",
        "\"n_test\": len(x_test)",
        "\"n_test\": len(x_train)"),
    "VAE learner takes a lateral rate": ("pcbio/learning/vae.py",
        "        if rates.lateral:\n            raise",
        "        if False:\n            raise"),
    "VAE minibatches share a seed": ("pcbio/learning/vae.py",
        "self.update(x, base + k)",
        "self.update(x, base)"),
    "PPCA with q = d": ("pcbio/learning/closed_form.py",
        "if q >= d:",
        "if q > d:"),
    "model file quotes unescaped": ("pcbio/model_file.py",
        ".replace('\"', '\\\\\"')",
        ""),
    "model file drops its description": ("pcbio/model_file.py",
        "        lines.append(f\"description = {_value(description)}\")",
        "        pass"),
}


def copy_project(dest: Path):
    # README.md: tests/test_readme.py runs its examples (without it every mutant that reached
    # that test would count as caught)
    for name in ("pcbio", "tests", "models", "experiments", "setup.cfg", "README.md"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)


def run_mutant(name, timeout):
    """``(name, killed, seconds, first failing test or reason)``."""
    path, original, mutated = MUTANTS[name]
    with tempfile.TemporaryDirectory(prefix="pcbio-mutant-") as tmp:
        tmp = Path(tmp)
        copy_project(tmp)
        source = (tmp / path).read_text()
        if source.count(original) != 1:
            return name, None, 0.0, f"original text occurs {source.count(original)} times in {path}"
        (tmp / path).write_text(source.replace(original, mutated))
        env = {**os.environ, "PYTHONPATH": str(tmp), "PCBIO_HOME": str(tmp),
               "PYTHONDONTWRITEBYTECODE": "1"}
        t0 = time.monotonic()
        try:
            # test_tools.py checks the mutants against unmutated code; the copy has no tools/
            out = subprocess.run([sys.executable, "-m", "pytest", "-m", "not slow", "-x", "-q",
                                  "-p", "no:cacheprovider", "-p", "no:logging",
                                  "--ignore=tests/test_tools.py", "tests"], cwd=tmp,
                                 env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return name, True, time.monotonic() - t0, "timed out (counted as killed)"
        failed = [line for line in out.stdout.splitlines() if line.startswith("FAILED")]
        return name, out.returncode != 0, time.monotonic() - t0, (failed[0][7:] if failed else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", nargs="+", choices=sorted(MUTANTS), default=sorted(MUTANTS))
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    killed = tested = 0
    with ThreadPoolExecutor(args.jobs) as pool:
        results = pool.map(lambda n: run_mutant(n, args.timeout), args.only)
        for name, dead, seconds, detail in results:
            if dead is None:
                print(f"BROKEN   {name}: {detail}", flush=True)
                continue
            tested += 1
            killed += dead
            print(f"{'killed ' if dead else 'SURVIVED'} {name:32s} {seconds:6.1f} s  {detail}",
                  flush=True)
    fraction = killed / max(tested, 1)
    print(f"\n{killed} of {tested} mutants killed ({100 * fraction:.0f} %; target "
          f"{100 * TARGET:.0f} %)")
    return 0 if fraction >= TARGET and tested == len(args.only) else 1


if __name__ == "__main__":
    sys.exit(main())
