"""Learning in a brian2 rate circuit with local plasticity (``docs/mathematics.md`` §10).

One persistent :class:`~pcbio.circuits.CircuitNetwork` holds ``batch`` copies of the circuit
side by side.  Each minibatch is one frame of a stimulus stream: the value units start from the
prior means, settle (deterministic units) or sample the posterior (noisy units, temperature 1)
for ``settle``; at the frame's end every plastic synapse changes by the local rule of
:mod:`pcbio.learning.rules` from the activity of its pre- and postsynaptic units — inference
and learning in alternating phases (Bogacz 2017 §2.4; Whittington & Bogacz 2017), the
learning rate setting how much slower learning is.  The new weights are written into the
running network; the whole epoch is one brian2 run.

After every ``compare_every`` updates the update is compared with the VAE side's
``∇_θ ELBO`` at the same data: the exact posterior's for a linear model (then it is
``∇_θ log p(x)``), the Laplace posterior's at the circuit's state otherwise — or, in supervised
learning with a clamped top, with backpropagation's update (:mod:`pcbio.learning.supervised`).
"""

import brian2
import numpy as np
from brian2 import ms

from ..checks import one_of, positive_int, time_quantity
from ..circuits import CircuitNetwork, build_circuit
from ..inference import elbo_gradient, exact_posterior, laplace_posterior
from ..model import GenerativeModel, ParameterGradient
from ..simulate import check_run, check_stability, run
from .rules import (LearningRates, activity_gradient, apply_gradient, check_local_learning,
                    compare_updates, lateral_step, mean_variances)
from .supervised import backprop_gradient
from .train import epoch_seed


def reference_gradient(model: GenerativeModel, x: np.ndarray, z: list[np.ndarray] | None,
                       seed: int = 0) -> ParameterGradient:
    """``∇_θ ELBO`` summed over ``x`` (N, d_0), at the exact posterior (linear model) or at the
    Laplace posterior around ``z`` (list of (N, d_l); Monte Carlo with 64 antithetic samples)."""
    if model.is_linear:
        return elbo_gradient(model, x, exact_posterior(model, x), method="exact").params
    return elbo_gradient(model, x, laplace_posterior(model, x, z), method="mc", n_samples=64,
                         seed=seed, antithetic=True).params


class CircuitLearner:
    """A rate circuit that learns ``model``'s parameters from minibatches of ``batch`` points.

    Parameters
    ----------
    model : the initial generative model (affine links ``W f(z) + b``)
    rates : :class:`LearningRates`
    batch : int — data points per update (side by side in the network)
    settle : brian2 time each minibatch is shown (inference phase)
    dt : brian2 time step
    target : brian2 code-generation target (``"auto"``, ``"numpy"``, ``"cython"``)
    compare_every : compare every k-th update with the ELBO gradient (0: never)
    circuit_params : the rate circuit's own parameters (:class:`~pcbio.circuits.RateCircuit`),
        among them ``temperature`` (0: deterministic, the MAP; 1: Langevin noise sampling the
        posterior), ``errors`` and ``precision`` (``"interneuron"`` learns variances by
        Bogacz's interneuron rule), ``lateral`` (the front end of a model with a flow;
        ``rates.lateral`` > 0 learns its weights, recurrent form only) and ``top``
        (``"clamped"`` for supervised learning: each minibatch's top level is held at its input,
        ``epoch(…, tops=…)``, and the levels below start from the feed-forward pass;
        Whittington & Bogacz 2017)
    """

    def __init__(self, model: GenerativeModel, rates: LearningRates, batch: int,
                 settle=60 * ms, dt=0.1 * ms, target: str = "auto", compare_every: int = 1,
                 **circuit_params):
        if not isinstance(rates, LearningRates):
            raise TypeError(f"rates must be a LearningRates, got {type(rates).__name__}")
        self.rates, self.batch = rates, positive_int(batch, "batch")
        self.settle, self.dt = time_quantity(settle, "settle"), time_quantity(dt, "dt")
        self.compare_every = positive_int(compare_every, "compare_every", minimum=0)
        steps = float(self.settle / self.dt)
        if abs(steps - round(steps)) > 1e-6:
            raise ValueError(f"settle={settle} must be a whole number of time steps dt={dt}")
        self.circuit = build_circuit(model, "rate", **circuit_params)
        if rates.lateral and self.circuit.params["lateral"] != "recurrent":
            raise ValueError("a lateral learning rate needs a model with a [flow] and the "
                             "recurrent lateral front end (the decorrelating rule acts on its "
                             "lateral weights)")
        check_local_learning(model)
        self.target = one_of(target, "target", {"auto", "numpy", "cython"})
        self.record_every = int(round(steps))
        # built when it first runs, once that run's inputs have passed its checks: a network
        # never run would only leave brian2 objects behind (and a warning about each)
        self.network: CircuitNetwork | None = None
        self.interneurons = self.circuit.params["precision"] == "interneuron"
        self._frames, self._records, self._seed = None, [], 0

    @property
    def model(self) -> GenerativeModel:
        return self.circuit.model

    def set_model(self, model: GenerativeModel) -> None:
        if self.network is None:
            self.circuit.set_model(model)
        else:
            self.network.update_model(model)

    def describe(self) -> dict:
        return {"learner": "circuit", **self.circuit.describe(), "rates": self.rates.to_json(),
                "settle_ms": float(self.settle / ms), "dt_ms": float(self.dt / ms),
                "rule": "local: eps f(z)^T, eps, " + ("interneuron eps e^T - I" if
                                                     self.interneurons else "1/2(eps eps^T - Pi)")}

    def epoch(self, batches: np.ndarray, seed: tuple[int, int] = (0, 0),
              tops: np.ndarray | None = None) -> list[dict]:
        """Learn from ``batches`` (updates, batch, d_0), one update per minibatch, in one brian2
        run; with a clamped top, ``tops`` (updates, batch, d_L) are the inputs.  Returns a record
        per update: the mean noise variance per level after it and, where made, the comparison
        with the ELBO gradient."""
        clamped = self.circuit.params["top"] == "clamped"
        if clamped != (tops is not None):
            raise ValueError("tops (the inputs) go with top='clamped', and only with it")
        self._seed = epoch_seed(seed)
        brian2.seed(self._seed)               # the noise of noisy value units
        self._frames, self._tops, self._records = batches, tops, []
        if clamped:
            passes = [self.model.prior_means(self.batch, top=x) for x in tops]
            init = [np.stack([p[l] for p in passes]) for l in range(self.model.n_latent)]
        else:
            init = self.model.prior_means(self.batch)
        duration = len(batches) * self.settle
        if self.network is None:
            check_run(self.circuit, batches, duration, self.dt, init, stimulus_dt=self.settle,
                      reset_each_frame=True)
            self.network = CircuitNetwork(self.circuit, self.batch, self.dt, "matrix",
                                          record_every=self.record_every, target=self.target)
        run(self.network, batches, duration=duration, init=init, stimulus_dt=self.settle,
            reset_each_frame=True, on_frame_end=self._learn)
        return self._records

    def _learn(self, k: int) -> None:
        """The plasticity at the end of frame ``k``: the local rule from the activity now."""
        x, model, net = self._frames[k], self.model, self.network
        net.deliver()            # instantaneous error units: their values at the current state
        z = [v for _, v in sorted(net.decoded("value").items())]
        eps = [e for _, e in sorted(net.decoded("error").items())]
        inter = ([i for _, i in sorted(net.decoded("interneuron").items())]
                 if self.interneurons else None)
        grad = activity_gradient(model, x, z, eps, inter)
        record = {"update": k}
        if self.compare_every and k % self.compare_every == 0:
            seen = model.model_space(x)[0]
            reference = (reference_gradient(model, seen, z, self._seed + k) if self._tops is None
                         else backprop_gradient(model, seen, self._tops[k]))
            record.update(compare_updates(grad, reference))
        new = apply_gradient(model, grad, self.rates, self.batch)
        if self.rates.lateral:
            new = new.replaced(flow=lateral_step(model.flow, x, net.decoded("lateral")[0],
                                                 self.rates.lateral))
        net.update_model(new)
        check_stability(self.circuit, x, z, self.dt, t=float(net.network.t))
        record["noise_variance"] = mean_variances(self.model)
        self._records.append(record)
