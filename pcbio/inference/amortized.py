"""Amortized and learned iterative inference (``docs/mathematics.md`` §13).

* :class:`Encoder` — amortized inference: a one-hidden-layer MLP ``x → (μ, log s²)`` giving
  ``q(z | x) = N(μ, diag s²)`` in one pass (Kingma & Welling 2014).
* :class:`IterativeUpdate` — learned iterative amortized inference in error-encoding form
  (Marino, Yue & Mandt 2018), for models with one latent level:

      μ_{t+1} = μ_t + G_t ⊙ (Jᵀ ε_x − ε_z),   G_t = a + V tanh(U_x ε_x + U_z ε_z + U_μ μ_t + c)

  with the prediction errors ``ε_x = Π_x (x − g(μ_t))`` and ``ε_z = Π_z (μ_t − μ_prior)``: a
  learned, state-dependent gain on each latent's gradient (a diagonal preconditioner), so the
  update vanishes where the gradient does and the fixed points are the MAP's.  With ``V = 0``
  and ``a = α`` it is gradient iterative inference (predictive coding's Euler step); the learned
  gain is what a pyramidal cell's dendritic branches add (basal input ε_x, apical input ε_z).
* :func:`curvature_log_var` — the variances every iterative method's q uses:
  ``s² = 1/diag H(μ)``, the optimal diagonal variances of a Gaussian with the curvature of
  ``−log p(x, z)`` at μ (exact for linear models).

Every gradient here is analytic — prediction errors pushed through the model and the small
networks by hand — and checked against finite differences in the tests.
"""

from dataclasses import dataclass

import numpy as np

from ..checks import positive_int, positive_number
from ..model import GenerativeModel
from .elbo import elbo, elbo_gradient
from .laplace import neg_hessian
from .posterior import GaussianPosterior

def _check_one_level(model: GenerativeModel, what: str) -> None:
    if model.n_latent != 1:
        raise ValueError(f"{what} is written for models with one latent level; this model has "
                         f"{model.n_latent}")


def curvature_log_var(model: GenerativeModel, x: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``log s² = −log diag H(μ)`` (batch, D), ``H`` the Hessian of ``−log p(x, z)`` at ``z = μ``
    (one latent level).  A curvature below the prior's precision (where ``log p`` bends the
    wrong way) is raised to it: q is never wider than the prior."""
    H = np.diagonal(neg_hessian(model, x, [mu]), axis1=-2, axis2=-1)
    return -np.log(np.maximum(H, 1.0 / model.top_cov.variances))


def point_elbo(model: GenerativeModel, x: np.ndarray, mu: np.ndarray, n_samples: int = 64,
               seed: int = 0) -> np.ndarray:
    """The ELBO (nats, per data point, (batch,)) of ``q = N(μ, diag s²)`` with the curvature
    variances of :func:`curvature_log_var` — how every iterative method is scored."""
    q = GaussianPosterior([mu], log_var=[curvature_log_var(model, x, mu)])
    return elbo(model, x, q, n_samples=n_samples, seed=seed).value


def _init(rng, shape, fan_in, scale=1.0):
    return rng.normal(size=shape) * scale / np.sqrt(fan_in)


@dataclass
class Encoder:
    """``h = tanh(W1 x + b1)``, ``μ = Wm h + bm``, ``log s² = Ws h + bs``.

    Shapes: ``W1`` (hidden, d_0), ``Wm``/``Ws`` (D, hidden), ``D`` the latent dimension.
    """
    W1: np.ndarray
    b1: np.ndarray
    Wm: np.ndarray
    bm: np.ndarray
    Ws: np.ndarray
    bs: np.ndarray

    NAMES = ("W1", "b1", "Wm", "bm", "Ws", "bs")

    @classmethod
    def initial(cls, model: GenerativeModel, hidden: int, seed: int) -> "Encoder":
        """Random first layer, outputs at the prior: μ = prior mean, log s² = log prior variance."""
        _check_one_level(model, "the encoder")
        hidden = positive_int(hidden, "hidden")
        rng = np.random.default_rng(seed)
        d, D = model.dims[0], model.latent_dims[0]
        return cls(W1=_init(rng, (hidden, d), d), b1=np.zeros(hidden),
                   Wm=np.zeros((D, hidden)), bm=model.top_mean.copy(),
                   Ws=np.zeros((D, hidden)), bs=np.log(model.top_cov.variances).copy())

    def params(self) -> dict:
        return {name: getattr(self, name) for name in self.NAMES}

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(μ, log s², h)`` for data ``x`` (batch, d_0)."""
        h = np.tanh(x @ self.W1.T + self.b1)
        return h @ self.Wm.T + self.bm, h @ self.Ws.T + self.bs, h

    def posterior(self, x: np.ndarray) -> GaussianPosterior:
        mu, log_var, _ = self.forward(x)
        return GaussianPosterior([mu], log_var=[log_var])

    def elbo_gradient(self, model: GenerativeModel, x: np.ndarray, n_samples: int = 8,
                      seed: int = 0, parameters: bool = False) -> tuple:
        """The summed ELBO of the encoder's q over the batch, its gradient w.r.t. every encoder
        weight (dict like :meth:`params`) and, with ``parameters``, the model's
        :class:`~pcbio.model.ParameterGradient` (reparameterised Monte Carlo, ``n_samples``)."""
        mu, log_var, h = self.forward(x)
        g = elbo_gradient(model, x, GaussianPosterior([mu], log_var=[log_var]),
                          method="mc", n_samples=n_samples, seed=seed, parameters=parameters)
        dmu, dlv = g.means[0], g.log_var[0]
        dh = (dmu @ self.Wm + dlv @ self.Ws) * (1 - h * h)
        grads = {"W1": dh.T @ x, "b1": dh.sum(0), "Wm": dmu.T @ h, "bm": dmu.sum(0),
                 "Ws": dlv.T @ h, "bs": dlv.sum(0)}
        return float(g.elbo.value.sum()), grads, (g.params if parameters else None)


@dataclass
class IterativeUpdate:
    """The learned update of the module docstring.  Shapes: ``a`` (D,), ``V`` (D, hidden),
    ``Ux`` (hidden, d_0), ``Uz`` and ``Umu`` (hidden, D), ``c`` (hidden,)."""
    a: np.ndarray
    V: np.ndarray
    Ux: np.ndarray
    Uz: np.ndarray
    Umu: np.ndarray
    c: np.ndarray

    NAMES = ("a", "V", "Ux", "Uz", "Umu", "c")

    @classmethod
    def gradient_step(cls, model: GenerativeModel, step_size: float, hidden: int = 0,
                      seed: int = 0, scale: float = 0.0) -> "IterativeUpdate":
        """``a = step_size``, the learned part off (``V = 0``): gradient iterative inference.
        ``hidden`` units with random input weights (``scale`` > 0) start a learned update."""
        _check_one_level(model, "the iterative update")
        hidden = positive_int(hidden, "hidden", minimum=0)
        step_size = positive_number(step_size, "step_size")
        scale = positive_number(scale, "scale", allow_zero=True)
        rng = np.random.default_rng(seed)
        d, D = model.dims[0], model.latent_dims[0]
        return cls(a=np.full(D, float(step_size)), V=np.zeros((D, hidden)),
                   Ux=_init(rng, (hidden, d), d, scale), Uz=_init(rng, (hidden, D), D, scale),
                   Umu=_init(rng, (hidden, D), D, scale), c=np.zeros(hidden))

    def params(self) -> dict:
        return {name: getattr(self, name) for name in self.NAMES}

    def inputs(self, model: GenerativeModel, x: np.ndarray, mu: np.ndarray) -> tuple:
        """``(ε_x, ε_z, ∇)`` at ``μ``: the errors a pyramidal cell's dendrites receive and the
        gradient ``Jᵀ ε_x − ε_z`` they sum to."""
        eps = model.errors(x, [mu])
        return eps[0], eps[1], model.grad_from_errors([mu], eps)[0]

    def step(self, model: GenerativeModel, x: np.ndarray, mu: np.ndarray) -> tuple:
        """``(μ_{t+1}, cache)`` from ``μ_t`` (batch, D)."""
        ex, ez, grad = self.inputs(model, x, mu)
        h = np.tanh(ex @ self.Ux.T + ez @ self.Uz.T + mu @ self.Umu.T + self.c)
        return mu + (self.a + h @ self.V.T) * grad, (ex, ez, grad, h, mu)

    def run(self, model: GenerativeModel, x: np.ndarray, mu0: np.ndarray, steps: int) -> list:
        """``[μ_0, μ_1, …, μ_steps]`` (each (batch, D))."""
        out = [np.asarray(mu0, dtype=float)]
        for _ in range(steps):
            out.append(self.step(model, x, out[-1])[0])
        return out

    def backward(self, cache: tuple, g: np.ndarray) -> dict:
        """Gradient w.r.t. every weight of ``Σ_b g_b · μ_{t+1,b}`` for the step that produced
        ``cache`` (its inputs held fixed: Marino et al. 2018 train each step's output)."""
        ex, ez, grad, h, mu = cache
        gg = g * grad
        dh = (gg @ self.V) * (1 - h * h)
        return {"a": gg.sum(0), "V": gg.T @ h, "Ux": dh.T @ ex, "Uz": dh.T @ ez,
                "Umu": dh.T @ mu, "c": dh.sum(0)}

    def objective_gradient(self, model: GenerativeModel, x: np.ndarray, mu0: np.ndarray,
                           steps: int, n_samples: int = 8, seed: int = 0) -> tuple:
        """``Σ_t ELBO(μ_t)`` over steps 1 … ``steps`` (summed over the batch; q with the curvature
        variances, held fixed when differentiating) and its gradient w.r.t. the weights, each
        step's output differentiated with its inputs held fixed."""
        total, grads, mu = 0.0, {name: np.zeros_like(v) for name, v in self.params().items()}, mu0
        for t in range(steps):
            mu, cache = self.step(model, x, mu)
            q = GaussianPosterior([mu], log_var=[curvature_log_var(model, x, mu)])
            g = elbo_gradient(model, x, q, method="mc", n_samples=n_samples, seed=seed + t,
                              parameters=False)
            total += float(g.elbo.value.sum())
            for name, value in self.backward(cache, g.means[0]).items():
                grads[name] += value
        return total, grads
