"""The hierarchical latent Gaussian generative model — pcbio's single source of truth.

Levels ``z_0 = x`` (data), ``z_1 … z_L`` (latents).  For ``l = 0 … L-1``::

    p(z_l | z_{l+1}) = N(z_l ; g_l(z_{l+1}), Σ_l),      p(z_L) = N(μ_L, Σ_L)

with ``g_l(z) = W_l f(z) + b_l`` (an *affine link*) or ``g_l(z) = W_l f(A_l z + a_l) + b_l``
(an *MLP link*, one hidden layer: "dendrites as deep networks").

Prediction errors are precision weighted (``docs/mathematics.md`` §2)::

    ε_l = Π_l (z_l − g_l(z_{l+1})),    ε_L = Π_L (z_L − μ_L),    Π = Σ⁻¹

and the gradient of the log joint with respect to a latent level is::

    ∂ log p(x, z) / ∂z_l = −ε_l + J_{l-1}(z_l)ᵀ ε_{l-1},    J_{l-1} = ∂g_{l-1}/∂z_l .

This module is the one place where these equations are written.

Shapes: data ``x`` is ``(batch, d_0)``; latents are a list ``z = [z_1, …, z_L]`` with ``z[l-1]``
of shape ``(..., batch, d_l)`` — extra leading axes (posterior samples) broadcast against ``x``.
A pass through the model (:meth:`GenerativeModel.forward`) also takes, and internally keeps, the
latent levels side by side in one array ``(..., batch, d_1 + … + d_L)``: elementwise steps are
then one numpy call for all levels (:class:`FlatPass`).
"""

from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import nonlinearities
from .checks import as_array, checked_array
from .covariance import LOG_2PI, Covariance

if TYPE_CHECKING:
    from .flows import LinearFlow

#: float64's relative round-off (a constant: ``np.finfo`` is looked up once, not per call)
FLOAT64_EPS = float(np.finfo(float).eps)


class Link:
    """One top-down link ``g(z) = W f(A z + a) + b`` with Gaussian noise ``N(0, Σ)``.

    Parameters
    ----------
    weights : array (d_below, d_in)
        Output weights ``W``; ``d_in`` is ``d_above`` for an affine link, the hidden size for an
        MLP link.
    bias : array (d_below,), optional
        Output bias ``b`` (default 0).
    f : str
        Nonlinearity, one of :data:`pcbio.nonlinearities.NONLINEARITIES`.
    cov : float | array (d_below,) | array (d_below, d_below)
        Noise covariance ``Σ`` of the level below (scalar, diagonal or full).
    hidden_weights : array (hidden, d_above), optional
        ``A``: present only for an MLP link.
    hidden_bias : array (hidden,), optional
        ``a`` (default 0), MLP links only.
    name : str
        Used in error messages (a model names unnamed links ``links[l]``).
    cov_key : str
        How the noise covariance is called in error messages (``"var"`` when a file said so).
    """

    def __init__(self, weights, bias=None, f="identity", cov=1.0, hidden_weights=None,
                 hidden_bias=None, name="link", cov_key="cov"):
        self.name = name
        self.W = as_array(weights, f"{name}.weights", ndim=2)
        self.d_below, d_in = self.W.shape
        self.b = (np.zeros(self.d_below) if bias is None
                  else as_array(bias, f"{name}.bias", shape=(self.d_below,)))
        self.nl = nonlinearities.get(f, f"{name}.f")
        if hidden_weights is None:
            if hidden_bias is not None:
                raise ValueError(f"{name}.hidden_bias given without {name}.hidden_weights")
            self.A, self.a = None, None
            self.d_above = d_in
        else:
            self.A = as_array(hidden_weights, f"{name}.hidden_weights", ndim=2)
            if self.A.shape[0] != d_in:
                raise ValueError(f"{name}.hidden_weights has {self.A.shape[0]} rows but "
                                 f"{name}.weights has {d_in} columns; they must match (hidden size)")
            self.a = (np.zeros(d_in) if hidden_bias is None
                      else as_array(hidden_bias, f"{name}.hidden_bias", shape=(d_in,)))
            self.d_above = self.A.shape[1]
        self.cov = cov if isinstance(cov, Covariance) else Covariance(cov, self.d_below,
                                                                      f"{name}.{cov_key}")
        if self.cov.dim != self.d_below:
            raise ValueError(f"{name}.cov has dimension {self.cov.dim}, expected {self.d_below}")

    @property
    def is_mlp(self) -> bool:
        return self.A is not None

    @property
    def is_linear(self) -> bool:
        """True when g is affine in z (identity f), so the model stays jointly Gaussian."""
        return self.nl.is_identity

    def preactivation(self, z: np.ndarray) -> np.ndarray:
        """``u = A z + a`` (MLP) or ``u = z`` (affine); shape (..., d_in)."""
        return z if self.A is None else z @ self.A.T + self.a

    def predict(self, z: np.ndarray) -> np.ndarray:
        """``g(z)``, shape (..., d_below), for ``z`` of shape (..., d_above)."""
        return self.nl.f(self.preactivation(z)) @ self.W.T + self.b

    def vjp(self, z: np.ndarray, e: np.ndarray) -> np.ndarray:
        """``J(z)ᵀ e`` with ``J = ∂g/∂z``: shape (..., d_above) for ``e`` of shape (..., d_below)."""
        u = self.preactivation(z)
        return self.backward(u, self.nl.f(u), e)

    def backward(self, u: np.ndarray, fu: np.ndarray, e: np.ndarray) -> np.ndarray:
        """``J ᵀ e`` given the forward pass's preactivation ``u`` and ``f(u)``
        (``docs/mathematics.md`` §2): ``f'(u) ⊙ Wᵀe``, then ``Aᵀ`` for an MLP link."""
        back = e @ self.W
        if not self.nl.is_identity:
            back *= self.nl.df_given(u, fu)
        return back if self.A is None else back @ self.A

    def astype(self, dtype: np.typing.DTypeLike) -> Link:
        """The same link computing in ``dtype`` (e.g. ``"float32"``)."""
        new = copy.copy(self)
        new.W, new.b = self.W.astype(dtype), self.b.astype(dtype)
        if self.A is not None:
            new.A, new.a = self.A.astype(dtype), self.a.astype(dtype)
        new.cov = self.cov.astype(dtype)
        return new

    def spec(self) -> dict:
        """The link as a model-file table."""
        d = {"weights": self.W.tolist(), "bias": self.b.tolist(), "f": self.nl.name,
             "cov": self.cov.to_spec()}
        if self.A is not None:
            d.update(hidden_weights=self.A.tolist(), hidden_bias=self.a.tolist())
        return d

    def replaced(self, **params) -> Link:
        """A copy with some of ``weights, bias, cov, hidden_weights, hidden_bias`` replaced."""
        spec = dict(weights=self.W, bias=self.b, f=self.nl.name, cov=self.cov.value,
                    hidden_weights=self.A, hidden_bias=self.a, name=self.name)
        spec.update(params)
        return Link(**spec)


@dataclass
class Forward:
    """One pass through the model at ``(x, z)`` — everything ``log p(x, z)`` and its gradients
    need, computed once (``docs/mathematics.md`` §2).

    ``u[l]``, ``fu[l]``: link g_l's preactivation (``z_{l+1}`` itself for an affine link) and
    ``f(u)``; ``residuals[l] = z_l − g_l(z_{l+1})`` and ``errors[l] = Π_l residuals[l]`` for
    levels 0 … L.  In a pass from :meth:`GenerativeModel.forward` these lists are views of the
    flat arrays in ``flat``.
    """
    z: list
    u: list
    fu: list
    residuals: list
    errors: list
    flat: "FlatPass | None" = None


@dataclass
class FlatPass:
    """The arrays behind a pass.  The latent levels sit side by side in the last axis, so that
    each elementwise step is one numpy call for all of them (at small batches the number of
    calls, not the arithmetic, sets the time), and every elementwise step runs on whole,
    contiguous arrays (a strided view costs a loop per row).

    ``latents`` (…, n), n = d_1 + … + d_L, is the caller's array when the caller gave one
    contiguous array (used in place, not copied), else a copy;
    ``fz`` (…, n) is ``f(latents)`` when every link is affine with one shared nonlinearity
    (``latents`` itself when that is the identity), else None.
    The data level's residual and error are ``res0`` and ``eps0`` (…, d_0) (its prediction
    ``W_0 f(u_0)`` is written into ``res0`` and then subtracted from ``x − b_0`` in place: one
    array of the data's size fewer to allocate); the latent levels' are ``pred`` (…, n:
    ``W_l f(u_l)`` for levels 1 … L−1, 0 in the top's place), ``res`` and ``eps`` (…, n); errors
    and residuals are the same arrays when every Π = I.
    ``grad`` (…, n) the gradient, written by :meth:`GenerativeModel.flat_gradient`.  Fixed for
    the pass's life: ``x``; ``x_minus_b`` (x − b_0); ``offset`` (b_1 … b_{L−1} and μ_L side by
    side), so that ``res = latents − pred − offset``; ``inv_var0``, ``inv_var`` (1/σ² of the data
    and of the latent levels when every Σ is diagonal and some is not I, else None);
    ``log_norm``, Σ_l (log det Σ_l + d_l log 2π).

    The matrix products read and write each level as rows, ``(N, d_l)`` with N the number of
    leading entries (samples × batch): one product per link instead of one per sample.
    ``f_rows``, ``pred_rows``, ``err_rows`` and ``grad_rows`` are those 2-D views, per link.
    """
    x: np.ndarray
    latents: np.ndarray
    fz: np.ndarray | None
    pred: np.ndarray
    res0: np.ndarray
    res: np.ndarray
    eps0: np.ndarray
    eps: np.ndarray
    grad: np.ndarray
    x_minus_b: np.ndarray
    offset: np.ndarray
    inv_var0: np.ndarray | None
    inv_var: np.ndarray | None
    log_norm: float
    f_rows: list
    pred_rows: list
    err_rows: list
    grad_rows: list


@dataclass
class LinkGradient:
    """Gradient of an objective w.r.t. one link's parameters (shapes as the parameters)."""
    weights: np.ndarray
    bias: np.ndarray
    cov: np.ndarray
    hidden_weights: np.ndarray = None
    hidden_bias: np.ndarray = None


@dataclass
class ParameterGradient:
    """Gradient w.r.t. all model parameters: ``links[l]`` for link ``g_l`` (bottom-up, as in
    :attr:`GenerativeModel.links`), plus the top prior's mean and covariance."""
    links: list
    top_mean: np.ndarray
    top_cov: np.ndarray


def _rows(a, lead):
    """``a`` (..., i) broadcast to ``lead + (i,)`` and viewed as rows (n, i)."""
    if a.shape[:-1] != lead:
        a = np.broadcast_to(a, lead + a.shape[-1:])
    return a.reshape(-1, a.shape[-1])


def _weighted_outer(a, b, w):
    """``Σ_n w_n a_n b_nᵀ`` over all leading axes; a (..., i), b (..., j), w a number or broadcast
    to the leading axes."""
    lead = a.shape[:-1]
    if np.ndim(w) == 0:                       # equal weights: one product, then one scale
        if b.shape[:-1] != lead:
            lead = np.broadcast_shapes(lead, b.shape[:-1])
        return w * (_rows(a, lead).T @ _rows(b, lead))
    lead = np.broadcast_shapes(lead, b.shape[:-1], np.shape(w))
    return (_rows(a, lead) * np.broadcast_to(w, lead).reshape(-1)[:, None]).T @ _rows(b, lead)


def _weighted_sum(a, w):
    """``Σ_n w_n a_n`` over all leading axes of a (..., i)."""
    if np.ndim(w) == 0:
        return w * a.reshape(-1, a.shape[-1]).sum(axis=0)
    lead = np.broadcast_shapes(a.shape[:-1], np.shape(w))
    return (_rows(a, lead) * np.broadcast_to(w, lead).reshape(-1)[:, None]).sum(axis=0)


class GenerativeModel:
    """Hierarchical latent Gaussian model of depth ``L = len(links) >= 1``.

    Parameters
    ----------
    top_mean : array (d_L,)
        Prior mean ``μ_L`` of the top level.
    top_cov : float | array (d_L,) | array (d_L, d_L)
        Prior covariance ``Σ_L``.
    links : list of :class:`Link`, **bottom-up**
        ``links[l]`` is ``g_l``: it predicts level ``l`` from level ``l+1``; ``links[0]`` predicts
        the data.  (Model files list links top-down, the way one writes a generative process;
        :meth:`from_dict` reverses them.)
    name : str
    flow : :class:`pcbio.flows.LinearFlow`, optional
        A normalizing flow in front of the data: the model describes ``y = flow.normalize(x)``
        (lateral inhibition, whitening; ``docs/mathematics.md`` §11).
    """

    def __init__(self, top_mean, top_cov, links, name="model", flow=None):
        self.name = str(name)
        self.flow = flow
        if len(links) < 1:
            raise ValueError("links: a model needs at least one link (L >= 1)")
        for l, link in enumerate(links):
            if not isinstance(link, Link):
                raise TypeError(f"links[{l}] must be a pcbio.model.Link, got {type(link).__name__}")
            if link.name == "link":
                link.name = f"links[{l}]"
        self.links = list(links)
        self.top_mean = as_array(top_mean, "top.mean", ndim=1)
        self.top_cov = (top_cov if isinstance(top_cov, Covariance)
                        else Covariance(top_cov, self.top_mean.size, "top.cov"))
        for l in range(len(links)):
            above = self.top_mean.size if l == len(links) - 1 else links[l + 1].d_below
            if links[l].d_above != above:
                raise ValueError(
                    f"{links[l].name} takes input of dimension {links[l].d_above} but the level "
                    f"above it has dimension {above}: weights must be shaped (dim below, dim above)")
        self.dims = tuple([links[0].d_below] + [lk.d_above for lk in links])
        ends = np.cumsum(self.dims).tolist()          # where each level sits in a pass's arrays
        self._level_slices = [slice(a, b) for a, b in zip([0] + ends[:-1], ends)]
        self._latent_slices = [slice(a - self.dims[0], b - self.dims[0])
                               for a, b in zip(ends[:-1], ends[1:])]
        names = {link.nl.name for link in self.links}
        #: the links' one nonlinearity when all are affine and share it (f, f' over all levels
        #: at once), else None
        self._shared_nl = (self.links[0].nl if len(names) == 1
                           and not any(link.is_mlp for link in self.links) else None)
        if flow is not None and flow.dim != self.dims[0]:
            raise ValueError(f"[flow] has dimension {flow.dim}; the data have {self.dims[0]}")

    # -- structure -------------------------------------------------------------------------
    @property
    def n_latent(self) -> int:
        """Number of latent levels ``L``."""
        return len(self.links)

    @property
    def latent_dims(self) -> tuple:
        return self.dims[1:]

    @property
    def is_linear(self) -> bool:
        """All links affine: the joint p(x, z) is Gaussian and everything is closed-form."""
        return all(link.is_linear for link in self.links)

    def level_covariance(self, l: int) -> Covariance:
        """Σ_l of level ``l`` (0 = data, L = top prior)."""
        return self.covariances[l]

    @property
    def covariances(self) -> list[Covariance]:
        """``[Σ_0, …, Σ_L]``: every level's covariance, data level first."""
        return [link.cov for link in self.links] + [self.top_cov]

    def model_space(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """The data as the model describes them and the log-determinant that takes densities
        back to data space: ``(flow.normalize(x), log |det ∂y/∂x|)`` for a model with a flow,
        ``(x, 0)`` without one."""
        if self.flow is None:
            return x, 0.0
        return self.flow.normalize(x), self.flow.logdet

    # -- input checking ---------------------------------------------------------------------
    def check_x(self, x: np.typing.ArrayLike, name: str = "x") -> np.ndarray:
        """Data as an array of shape (batch, d_0); a single vector (d_0,) becomes batch 1.

        Data whose float64 round-off would exceed 1e-4 standard deviations of the data noise
        (large values against a tiny variance) are refused: every error computed from them would
        be round-off."""
        x, largest = checked_array(x, name, ndim=(1, 2))
        x = x[None, :] if x.ndim == 1 else x
        if x.shape[1] != self.dims[0]:
            raise ValueError(f"{name} must have {self.dims[0]} entries per data point "
                             f"(the model's data dimension), got {x.shape[1]}")
        noise = math.sqrt(self.links[0].cov.smallest_variance)
        roundoff = FLOAT64_EPS * largest
        if roundoff > 1e-4 * noise:
            raise ValueError(f"{name} has values up to {largest:.3g}: their float64 "
                             f"round-off ({roundoff:.2g}) exceeds 1e-4 of the data noise's "
                             f"standard deviation ({noise:.2g}, {self.links[0].name}); rescale "
                             "the data or the model")
        return x

    def check_latents(self, z: list[np.typing.ArrayLike], batch: int,
                      name: str = "z") -> list[np.ndarray]:
        """Latents as a list of L arrays of shape (batch, d_l)."""
        if len(z) != self.n_latent:
            raise ValueError(f"{name} must have one array per latent level ({self.n_latent}), "
                             f"got {len(z)}")
        out = []
        for l, (zl, d) in enumerate(zip(z, self.latent_dims), start=1):
            zl = as_array(zl, f"{name}[level {l}]", ndim=(1, 2))
            zl = np.broadcast_to(zl, (batch, d)).copy() if zl.ndim == 1 and zl.size == d else zl
            if zl.shape != (batch, d):
                raise ValueError(f"{name}[level {l}] must have shape ({batch}, {d}), got {zl.shape}")
            out.append(zl)
        return out

    def prior_means(self, batch: int, top: np.ndarray | None = None) -> list[np.ndarray]:
        """The latent means of the generative model run without noise: a natural start for
        inference.  List of (batch, d_l).  With ``top`` (batch, d_L) the top level is set to it
        and the levels below follow from it (a feed-forward pass from a clamped top)."""
        z = [np.broadcast_to(self.top_mean if top is None else top, (batch, self.dims[-1])).copy()]
        for link in self.links[:0:-1]:
            z.insert(0, link.predict(z[0]))
        return z

    # -- the equations ----------------------------------------------------------------------
    def split(self, latents: np.ndarray) -> list[np.ndarray]:
        """Views of each latent level ``(…, d_l)`` in an array ``(…, n)`` holding them side by
        side (n = d_1 + … + d_L)."""
        return [latents[..., s] for s in self._latent_slices]

    def forward(self, x: np.ndarray, z: list[np.ndarray] | np.ndarray,
                reuse: Forward | None = None) -> Forward:
        """Predictions, residuals and precision-weighted errors at ``(x, z)``, with the
        intermediate values the backward pass reuses.

        ``z``: a list of ``(…, d_l)``, or one array ``(…, n)`` with the levels side by side,
        which the pass then uses in place.  ``reuse``: a previous pass from this ``x`` whose
        ``flat.latents`` is ``z`` (changed in place since); its arrays are overwritten and it is
        returned, so repeated passes (iterative inference) allocate only ``f(z)``."""
        if reuse is None or reuse.flat.latents is not z or reuse.flat.x is not x:
            reuse = self._new_pass(x, z)
        fw, fl = reuse, reuse.flat
        shared = self._shared_nl
        if shared is None:
            for l, (link, zl) in enumerate(zip(self.links, fw.z)):
                fw.u[l] = link.preactivation(zl)
                fw.fu[l] = link.nl.f(fw.u[l])
                fl.f_rows[l] = fw.fu[l].reshape(-1, fw.fu[l].shape[-1])
        elif not shared.is_identity:                  # one call for every level
            shared.f(fl.latents, out=fl.fz)
        for link, f, p in zip(self.links, fl.f_rows, fl.pred_rows):
            np.matmul(f, link.W.T, out=p)
        # z_l − (W_l f(u_l) + b_l) and z_L − μ_L: the data level, then every latent level at once
        np.subtract(fl.x_minus_b, fl.res0, out=fl.res0)
        np.subtract(fl.latents, fl.pred, out=fl.res)
        fl.res -= fl.offset
        if fl.inv_var is not None:
            np.multiply(fl.res0, fl.inv_var0, out=fl.eps0)
            np.multiply(fl.res, fl.inv_var, out=fl.eps)
        elif fl.eps is not fl.res:
            for cov, r, e in zip(self.covariances, fw.residuals, fw.errors):
                e[...] = cov.apply_precision(r)
        return fw

    def _new_pass(self, x: np.ndarray, z) -> Forward:
        """A pass's arrays and views, allocated for ``x`` and latents ``z`` (see :meth:`forward`)."""
        if not isinstance(z, np.ndarray):
            lead = np.broadcast_shapes(*(zl.shape[:-1] for zl in z))
            z = np.concatenate([np.broadcast_to(zl, lead + zl.shape[-1:]) for zl in z], axis=-1)
        lead = z.shape[:-1]
        if x.shape[:-1] != lead and np.broadcast_shapes(x.shape[:-1], lead) != lead:
            lead = np.broadcast_shapes(x.shape[:-1], lead)   # latents shared by all data points
            z = np.broadcast_to(z, lead + z.shape[-1:])
        if not z.flags.c_contiguous:                  # rows must be views of the latents
            z = np.ascontiguousarray(z)
        dtype = np.result_type(x, z, self.top_mean)
        rows, d0, n = math.prod(lead), self.dims[0], z.shape[-1]

        def new(width, fill=np.empty):                # (N, width) and its (…, width) view
            a = fill((rows, width), dtype)
            return a, a.reshape(lead + (width,))

        def levels(a):                                # per latent level, (N, d_l) views
            return [a[:, s] for s in self._latent_slices]

        covs = self.covariances
        (res0_r, res0), (res_r, res), (pred_r, pred) = new(d0), new(n), new(n, np.zeros)
        (eps0_r, eps0), (eps_r, eps), inv_var0, inv_var = (res0_r, res0), (res_r, res), None, None
        if not all(c.is_unit for c in covs):
            (eps0_r, eps0), (eps_r, eps) = new(d0), new(n)
            if all(c.is_diagonal for c in covs):
                inv_var0 = covs[0].inverse_variances.astype(dtype)
                inv_var = np.concatenate([c.inverse_variances for c in covs[1:]]).astype(dtype)
        grad_r, grad = new(n)
        zs = self.split(z)
        shared, fz, f_rows = self._shared_nl, None, [None] * self.n_latent
        u, fu = [None] * self.n_latent, [None] * self.n_latent   # per link, set by every pass
        if shared is not None:                            # views of the latents and of f(latents)
            fz_r, fz = (z.reshape(rows, n), z) if shared.is_identity else new(n)
            u, fu, f_rows = list(zs), self.split(fz), levels(fz_r)
        flat = FlatPass(
            x=x, latents=z, fz=fz, pred=pred, res0=res0, res=res, eps0=eps0, eps=eps,
            grad=grad, x_minus_b=x - self.links[0].b,
            offset=np.concatenate([lk.b for lk in self.links[1:]] + [self.top_mean], dtype=dtype),
            inv_var0=inv_var0, inv_var=inv_var, f_rows=f_rows,
            log_norm=sum(c.logdet for c in covs) + sum(self.dims) * LOG_2PI,
            pred_rows=[res0_r] + levels(pred_r)[:-1], err_rows=[eps0_r] + levels(eps_r),
            grad_rows=levels(grad_r))
        return Forward(zs, u, fu, [res0] + self.split(res), [eps0] + self.split(eps), flat)

    def predictions(self, z: list[np.ndarray]) -> list[np.ndarray]:
        """Top-down predictions ``[g_0(z_1), …, g_{L-1}(z_L), μ_L]``: one per level 0 … L."""
        return [link.predict(zl) for link, zl in zip(self.links, z)] + [self.top_mean]

    def residuals(self, x: np.ndarray, z: list[np.ndarray]) -> list[np.ndarray]:
        """``z_l − g_l(z_{l+1})`` for levels 0 … L (level 0: ``x − g_0(z_1)``)."""
        return self.forward(x, z).residuals

    def errors(self, x: np.ndarray, z: list[np.ndarray]) -> list[np.ndarray]:
        """Precision-weighted prediction errors ``ε_l = Π_l (z_l − g_l(z_{l+1}))``, l = 0 … L."""
        return self.forward(x, z).errors

    def log_joint(self, x: np.ndarray, z: list[np.ndarray] | np.ndarray,
                  forward: Forward | None = None) -> np.ndarray:
        """``log p(x, z) = Σ_l log N(z_l; g_l(z_{l+1}), Σ_l)``, shape (…, batch) (from
        ``forward`` when given): ``−½ (rᵀ Π r + log det Σ + d log 2π)`` per level, the
        quadratic forms of all latent levels in one product."""
        fl = (forward or self.forward(x, z)).flat
        return -0.5 * (np.vecdot(fl.res0, fl.eps0) + np.vecdot(fl.res, fl.eps) + fl.log_norm)

    def flat_gradient(self, fw: Forward) -> np.ndarray:
        """``∂ log p/∂z_l = −ε_l + J_{l-1}(z_l)ᵀ ε_{l-1}`` for every latent level side by side,
        ``(…, n)``, from a pass of :meth:`forward` (written into the pass's own array, which the
        next call overwrites)."""
        fl, shared = fw.flat, self._shared_nl
        if shared is None:
            for g, link, u, f, e in zip(self.split(fl.grad), self.links, fw.u, fw.fu, fw.errors):
                g[...] = link.backward(u, f, e)
        else:         # Link.backward's two factors: Wᵀε per link, then f'(z) for all levels
            for link, e, g in zip(self.links, fl.err_rows, fl.grad_rows):
                np.matmul(e, link.W, out=g)
            if not shared.is_identity:
                fl.grad *= shared.df_given(fl.latents, fl.fz)
        fl.grad -= fl.eps
        return fl.grad

    def gradient(self, fw: Forward) -> list[np.ndarray]:
        """:meth:`flat_gradient` as a list of ``(…, d_l)`` views, l = 1 … L."""
        return self.split(self.flat_gradient(fw))

    def grad_from_errors(self, z: list[np.ndarray], eps: list[np.ndarray]) -> list[np.ndarray]:
        """The same gradient given the errors ``eps`` (levels 0 … L) at latents ``z``."""
        return [self.links[l - 1].vjp(z[l - 1], eps[l - 1]) - eps[l]
                for l in range(1, self.n_latent + 1)]

    def grad_log_joint(self, x: np.ndarray, z: list[np.ndarray]) -> list[np.ndarray]:
        """Gradient of ``log p(x, z)`` w.r.t. each latent level: list of (..., batch, d_l)."""
        return self.gradient(self.forward(x, z))

    def parameter_gradient(self, x: np.ndarray, z: list[np.ndarray],
                           weights: float | np.ndarray = 1.0,
                           forward: Forward | None = None) -> ParameterGradient:
        """Gradient of ``Σ_n w_n log p(x, z_n)`` w.r.t. every parameter, summed over all leading
        axes (samples, batch) with weights ``w`` broadcast to them (from ``forward`` when
        given)."""
        fw = forward or self.forward(x, z)
        eps = fw.errors
        grads = []
        for l, link in enumerate(self.links):
            g = LinkGradient(weights=_weighted_outer(eps[l], fw.fu[l], weights),
                             bias=_weighted_sum(eps[l], weights),
                             cov=link.cov.gradient(eps[l], weights))
            if link.is_mlp:
                back = (eps[l] @ link.W) * link.nl.df_given(fw.u[l], fw.fu[l])
                g.hidden_weights = _weighted_outer(back, fw.z[l], weights)
                g.hidden_bias = _weighted_sum(back, weights)
            grads.append(g)
        return ParameterGradient(links=grads, top_mean=_weighted_sum(eps[-1], weights),
                                 top_cov=self.top_cov.gradient(eps[-1], weights))

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, n: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Ancestral samples: returns ``x`` (n, d_0) and ``z`` (list of (n, d_l))."""
        rng = np.random.default_rng(seed)
        z = [self.top_mean + self.top_cov.sample(rng, n)]
        for link in self.links[::-1]:
            z.insert(0, link.predict(z[0]) + link.cov.sample(rng, n))
        return z[0], z[1:]

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: dict, name: str | None = None) -> GenerativeModel:
        """Build from a model-file dictionary (see README: ``[top]`` and ``[[links]]`` top-down)."""
        if not isinstance(spec, dict):
            raise TypeError(f"model spec must be a table/dict, got {type(spec).__name__}")
        _check_keys(spec, {"name", "top", "links", "description", "reference", "flow"},
                    "model file")
        for key in ("top", "links"):
            if key not in spec:
                raise ValueError(f"model file: missing required key '{key}'")
        top = spec["top"]
        if not isinstance(top, dict):
            raise ValueError("model file: 'top' must be a table with 'mean' and 'cov' or 'var'")
        _check_keys(top, {"mean", "cov", "var"}, "[top]")
        if "mean" not in top:
            raise ValueError("[top]: missing required key 'mean'")
        if not isinstance(spec["links"], list) or not spec["links"]:
            raise ValueError("model file: 'links' must be a non-empty array of tables [[links]]")
        links = []
        for i, ls in enumerate(spec["links"]):
            where = f"links[{i}]"
            if not isinstance(ls, dict):
                raise ValueError(f"{where} must be a table")
            _check_keys(ls, {"weights", "bias", "f", "cov", "var", "hidden_weights",
                             "hidden_bias"}, where)
            if "weights" not in ls:
                raise ValueError(f"{where}: missing required key 'weights'")
            cov, key = _cov_entry(ls, where, default=1.0)
            links.append(Link(ls["weights"], ls.get("bias"), ls.get("f", "identity"), cov,
                              ls.get("hidden_weights"), ls.get("hidden_bias"), name=where,
                              cov_key=key))
        cov, key = _cov_entry(top, "[top]")
        from .flows import LinearFlow
        flow = LinearFlow.from_spec(spec["flow"]) if "flow" in spec else None
        return cls(top["mean"], Covariance(cov, np.size(as_array(top["mean"], "[top].mean")),
                                           f"[top].{key}"),
                   links[::-1], name=name or spec.get("name", "model"), flow=flow)

    @classmethod
    def load(cls, path: str | Path) -> GenerativeModel:
        """Read a TOML model file."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder, not a model file (a .toml file or a model "
                             "name)")
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        try:
            spec = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise ValueError(f"{path}: not a text file (a model file is TOML text)") from None
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: not valid TOML ({err})") from None
        try:
            return cls.from_dict(spec, name=spec.get("name", path.stem))
        except (ValueError, TypeError) as err:
            raise type(err)(f"{path.name}: {err}") from None

    def to_dict(self) -> dict:
        """The model as a model-file dictionary (links top-down)."""
        spec = {"name": self.name,
                "top": {"mean": self.top_mean.tolist(), "cov": self.top_cov.to_spec()},
                "links": [link.spec() for link in self.links[::-1]]}
        if self.flow is not None:
            spec["flow"] = self.flow.to_spec()
        return spec

    @property
    def dtype(self) -> np.dtype:
        """The floating-point type the model computes in (float64 unless converted)."""
        return self.top_mean.dtype

    def astype(self, dtype: np.typing.DTypeLike) -> GenerativeModel:
        """The same model computing in ``dtype`` (e.g. ``"float32"``): every parameter converted
        once, so that everything computed from it follows."""
        if np.dtype(dtype) == self.dtype:
            return self
        new = copy.copy(self)
        new.links = [link.astype(dtype) for link in self.links]
        new.top_mean, new.top_cov = self.top_mean.astype(dtype), self.top_cov.astype(dtype)
        return new

    def replaced(self, links: list[Link] | None = None, top_mean: np.ndarray | None = None,
                 top_cov: float | np.ndarray | None = None,
                 flow: LinearFlow | None = None) -> GenerativeModel:
        """A copy with some parts replaced (``links`` bottom-up)."""
        return GenerativeModel(self.top_mean if top_mean is None else top_mean,
                               self.top_cov.value if top_cov is None else top_cov,
                               self.links if links is None else links, name=self.name,
                               flow=self.flow if flow is None else flow)

    def __repr__(self):
        fs = ",".join(link.nl.name + ("-mlp" if link.is_mlp else "") for link in self.links[::-1])
        return f"GenerativeModel({self.name!r}, dims={self.dims}, links(top-down)=[{fs}])"


def _check_keys(table, allowed, where):
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")


def _cov_entry(table, where, default=None):
    """The noise entry of a model-file table and the key it was given under (``cov``/``var``)."""
    if "cov" in table and "var" in table:
        raise ValueError(f"{where}: give either 'cov' or 'var', not both")
    key = "cov" if "cov" in table else "var"
    value = table.get(key, default)
    if value is None:
        raise ValueError(f"{where}: missing 'cov' (matrix) or 'var' (variances or one variance)")
    if key == "var" and np.ndim(value) == 2:
        raise ValueError(f"{where}: 'var' must be a number or a list of variances; "
                         "use 'cov' for a matrix")
    return value, key


def load_model(path_or_name: str | Path) -> GenerativeModel:
    """Load a model from a TOML path, or by name from the project's ``models/`` folder."""
    from .paths import find_model
    return GenerativeModel.load(find_model(path_or_name))
