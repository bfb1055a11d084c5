"""Random-feature score diffusion in 1-D and 2-D, trained exactly (B2, B3-diffusion).

Forward process: the OU process ``dX = −X dt + √2 dB``, so
``p_{t|0}(· | x) = N(x e^{-t}, 1 − e^{-2t})`` and ``p_t → N(0, 1)``.

Score network (one hidden layer, random frozen first layer, trained readout):
``s(x, t) = (1/W) Σ_j A_j relu(w_j·x + u_j · e(t))`` with the time embedding
``e(t) = (1, e^{-t}, 1 − e^{-2t})`` (a bias, the OU mean factor and the OU variance:
a feature's kink ``x = −u_j·e(t)/w_j`` can follow a mode as it drifts in and
spreads). ``w_j ~ N(0, I_d)``, ``u_j ~ N(0, diag(feature_scale²))``. The dimension
``d ∈ {1, 2}`` is that of ``slope``: ``(W,)`` with scalar data and readout ``(W,)`` in
1-D; ``(W, d)`` with data ``(..., d)`` and readout ``A`` of shape ``(W, d)`` otherwise.

Training (docs/diffusion.md §1): the denoising score-matching loss with fixed draws
``(t_r, ε_r)`` (``draws`` per data point, ``t`` stratified uniform on
``[t_min, T]``) is a quadratic in ``A``,
``L(A) = AᵀGA/W² − 2Aᵀb/W + c`` with ``G = Σ_r ω_r φ_r φ_rᵀ``, ``b = Σ_r ω_r φ_r y_r``,
``y_r = −ε_r/σ_{t_r}``, ``ω_r`` the normalised data weights. Gradient flow
``dA/dτ = −(W/2)∇L = b − (G/W)A`` from ``A = 0`` is, with ``G/W = V diag(μ) Vᵀ``,
``A(τ) = V diag((1 − e^{−μτ})/μ) Vᵀ b`` exactly (``(1−e^{−μτ})/μ → τ`` at ``μ = 0``);
in ``d`` dimensions ``b`` has one column per output coordinate and ``G`` is shared, so one
eigendecomposition trains every column.
The normalisation makes the function-space flow the kernel flow of
``k(z, z') = φ(z)·φ(z')/W``, whose scale does not depend on ``W``.
Li et al.'s estimator (docs/diffusion.md §1.1; 1-D): ``dsm_quadratic_averaged`` gives the same
quadratic averaged over ``ε`` exactly (Gaussian partial moments of relu pairs) and over ``t`` by
quadrature, the expectation of the ``draws`` estimate; ``diffusion(..., estimator="averaged")``.

Samplers (reverse time, from ``N(0, 1)`` at ``T`` to ``t = 0``, uniform steps):
* reverse SDE, exponential integrator: ``Y ← e^h Y + 2(e^h − 1) s(Y, t) + sqrt(e^{2h} − 1) ξ``
  (the linear drift and the noise integrated exactly, the score frozen over the step);
* probability-flow ODE ``dx/dt = −x − s(x, t)``, Heun's method.

Densities: the SDE sampler's law on a grid by Chapman–Kolmogorov (each step's
transition kernel is Gaussian, so the density is propagated by a quadrature on the
grid; in 2-D the isotropic kernel factorises over coordinates, so a step is two
``(G² × G)`` kernel factors and a matmul); the ODE's density by the instantaneous change of
variables ``log q(x) = log N(x(T); 0, I) + ∫_0^T ∇·f(x(t), t) dt`` along ``dx/dt = f = −x − s``
(``∇·s`` exact: relu is piecewise linear).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import erfc, ndtr

from bounds import validate
from sims.model import GenerativeModel

__all__ = ["ScoreParams", "DsmQuadratic", "time_embedding", "ou_mean_std", "random_features",
           "dimension", "features", "score", "score_divergence", "dsm_draws", "dsm_quadratic",
           "dsm_loss", "train_exact", "Spectrum", "flow_spectrum", "readout_at",
           "gaussian_partial_moments", "relu_product_moment",
           "relu_noise_moment", "time_quadrature", "dsm_quadratic_averaged",
           "dsm_quadratic_averaged_prefixes", "sample_sde",
           "sample_ode", "grid_points",
           "sde_density_on_grid", "sde_density_for_score", "ode_log_density", "diffusion",
           "diffusion_tv_metric", "early_stopping_time", "check_diffusion_args",
           "check_estimator"]

EMBEDDING = 3


class ScoreParams(NamedTuple):
    """The score network: frozen ``slope`` (W,) or (W, d) and ``time_weights`` (W, 3), trained
    ``readout`` of ``slope``'s shape."""

    slope: jax.Array
    time_weights: jax.Array
    readout: jax.Array


class DsmQuadratic(NamedTuple):
    """``L(A) = AᵀGA/W² − 2Aᵀb/W + c``: ``gram`` G (W, W), ``linear`` b (W,), ``constant`` c."""

    gram: jax.Array
    linear: jax.Array
    constant: jax.Array


def time_embedding(t):
    """``e(t) = (1, e^{-t}, 1 − e^{-2t})``, shape ``t.shape + (3,)``."""
    t = jnp.asarray(t)
    return jnp.stack([jnp.ones_like(t), jnp.exp(-t), -jnp.expm1(-2.0 * t)], axis=-1)


def ou_mean_std(t):
    """``(e^{-t}, sqrt(1 − e^{-2t}))``: ``p_{t|0}(·|x) = N(x e^{-t}, 1 − e^{-2t})``."""
    t = jnp.asarray(t)
    return jnp.exp(-t), jnp.sqrt(-jnp.expm1(-2.0 * t))


def random_features(key, width: int, feature_scale=(2.0, 2.0, 2.0), dim: int = 1) -> ScoreParams:
    """Draw the frozen first layer (readout zero): ``w ~ N(0, I_dim)``, ``u ~ N(0, diag(scale²))``."""
    key_w, key_u = jax.random.split(key)
    shape = (width,) if dim == 1 else (width, dim)
    slope = jax.random.normal(key_w, shape, jnp.float64)
    time_weights = jax.random.normal(key_u, (width, EMBEDDING), jnp.float64) * jnp.asarray(
        feature_scale, jnp.float64)
    return ScoreParams(slope, time_weights, jnp.zeros(shape, jnp.float64))


def dimension(params: ScoreParams) -> int:
    """The data dimension ``d`` of a score network (1 for scalar data)."""
    return 1 if params.slope.ndim == 1 else params.slope.shape[1]


def _preactivation(params: ScoreParams, x, t):
    x, t = jnp.asarray(x, jnp.float64), jnp.asarray(t, jnp.float64)
    if params.slope.ndim == 1:
        x, t = jnp.broadcast_arrays(x, t)
        return x[..., None] * params.slope + time_embedding(t) @ params.time_weights.T
    t = jnp.broadcast_to(t, x.shape[:-1])
    return x @ params.slope.T + time_embedding(t) @ params.time_weights.T


def features(params: ScoreParams, x, t):
    """``relu(w·x + u·e(t))``, shape ``batch + (W,)`` (batch: ``x``'s points broadcast with ``t``)."""
    return jax.nn.relu(_preactivation(params, x, t))


def score(params: ScoreParams, x, t):
    """``s(x, t) = (1/W) Aᵀ relu(w·x + u·e(t))``: shape of ``x`` (scalar or ``d``-vector points)."""
    return features(params, x, t) @ params.readout / params.readout.shape[0]


def score_divergence(params: ScoreParams, x, t):
    """``∇·s = (1/W) Σ_j (A_j·w_j) 1[w_j·x + u_j·e(t) > 0]`` (exact; relu is piecewise linear).

    In 1-D this is ``∂s/∂x``.
    """
    active = (_preactivation(params, x, t) > 0).astype(jnp.float64)
    gain = params.readout * params.slope
    gain = gain if gain.ndim == 1 else gain.sum(axis=1)
    return active @ gain / params.readout.shape[0]


def dsm_draws(key, slots: int, draws: int, horizon: float, t_min: float, dim: int = 1):
    """Fixed DSM draws: ``t`` (slots, draws) stratified uniform on ``[t_min, T]``, ``ε`` N(0, I_dim)
    of shape (slots, draws) in 1-D, (slots, draws, dim) otherwise.

    Stratification (one ``t`` per stratum of width ``(T − t_min)/draws``) keeps the
    quadrature over ``t`` even for every data point.
    """
    key_t, key_eps = jax.random.split(key)
    u = jax.random.uniform(key_t, (slots, draws), jnp.float64)
    t = t_min + (horizon - t_min) * (jnp.arange(draws) + u) / draws
    shape = (slots, draws) if dim == 1 else (slots, draws, dim)
    return t, jax.random.normal(key_eps, shape, jnp.float64)


def dsm_quadratic(params: ScoreParams, data, weights, t, eps) -> DsmQuadratic:
    """The DSM loss with fixed draws as an explicit quadratic in the readout.

    Row ``r = (point k, draw j)``: ``x_t = x_k e^{-t} + σ_t ε``, target
    ``y = −ε/σ_t`` (the conditional score), weight ``ω = weights_k / (draws Σ weights)``.
    Zero weights (empty buffer slots) drop out. In ``d`` dimensions (data ``(N, d)``,
    ``eps`` ``(N, J, d)``) the loss is a sum over output coordinates: ``linear`` is
    ``(W, d)`` and ``gram`` is shared.
    """
    mean, std = ou_mean_std(t)
    if eps.ndim == 3:
        mean, std = mean[..., None], std[..., None]
    noisy = data[:, None] * mean + std * eps
    target = -eps / std
    phi = features(params, noisy, t)                                   # (N, J, W)
    omega = weights[:, None] / (weights.sum() * t.shape[1])
    omega = jnp.broadcast_to(omega, t.shape)
    gram = jnp.einsum("nj,nja,njb->ab", omega, phi, phi)
    linear = jnp.einsum("nj,nja,nj...->a...", omega, phi, target)
    squares = target ** 2 if eps.ndim == 2 else jnp.sum(target ** 2, axis=-1)
    return DsmQuadratic(gram, linear, jnp.sum(omega * squares))


def dsm_loss(quadratic: DsmQuadratic, readout):
    """``L(A) = Σ_columns (AᵀGA/W² − 2Aᵀb/W) + c``."""
    width = readout.shape[0]
    return (jnp.sum(readout * (quadratic.gram @ readout)) / width ** 2
            - 2.0 * jnp.sum(readout * quadratic.linear) / width + quadratic.constant)


@jax.custom_batching.custom_vmap
def _eigh_one_matrix(matrix):
    return tuple(jnp.linalg.eigh(matrix))


@_eigh_one_matrix.def_vmap
def _eigh_one_matrix_at_a_time(axis_size, in_batched, matrix):
    # vmap would hand XLA:CPU's LAPACK kernel the whole batch; a scan hands it one matrix,
    # which the kernel decomposes inline (a batch of one never reaches the thread pool).
    # The scan body calls the custom function again, so an outer vmap lands here too.
    del axis_size
    if not in_batched[0]:
        return _eigh_one_matrix(matrix), (False, False)
    return jax.lax.map(_eigh_one_matrix, matrix), (True, True)


def _eigh(matrix):
    """``eigh`` of a symmetric matrix (any leading batch axes, and under any ``vmap``).

    On CPU, one matrix at a time: XLA:CPU's batched ``eigh`` kernel splits its batch over the
    intra-op thread pool and blocks until it is done, so two of them running at once (B3's
    loop fits the real-only and the mixed buffers side by side) each held one of a 2-core
    machine's two pool threads and waited for ever (gdb: both in ``BlockingCounter::Wait``
    under ``ParallelBatchMap``). A batch of one runs inline on the calling thread (jaxlib's
    ``ParallelBatchMap``: one chunk, no pool), so the scan cannot wedge, and unlike a host
    callback it compiles to a program JAX's persistent cache stores (docs/engine.md §4).
    Elsewhere, XLA's own batched kernel.
    """
    if jax.default_backend() != "cpu":
        return jnp.linalg.eigh(matrix)
    decompose = _eigh_one_matrix
    for _ in range(matrix.ndim - 2):
        decompose = jax.vmap(decompose)
    return decompose(matrix)


class Spectrum(NamedTuple):
    """The gradient flow's spectral data: ``G/W = V diag(mu) Vᵀ`` and ``Vᵀ b``."""
    mu: jax.Array          # (W,) eigenvalues of G/W, clipped at 0
    vectors: jax.Array     # (W, W)
    projected: jax.Array   # (W,) or (W, d): Vᵀ b, NaN for a non-finite G


def flow_spectrum(quadratic: DsmQuadratic) -> Spectrum:
    """One eigendecomposition of the flow ``dA/dτ = b − (G/W) A``; ``readout_at`` then gives
    ``A(τ)`` for any ``τ`` (a continuous training time: the early-stopping search, B2)."""
    width = quadratic.linear.shape[0]
    # Scaled so that eigh never squares entries near the overflow range: a collapsed loop's
    # samples can drift to |x| ~ 1e150 (G ~ x²), where eigh of G itself returned NaN
    # (B2-loop, seed 3). A finite G gives a finite readout; only a non-finite G gives NaN.
    scale = jnp.max(jnp.abs(jnp.diagonal(quadratic.gram)))
    scale = jnp.where(scale > 0, scale, 1.0)
    mu, vectors = _eigh(quadratic.gram / scale)
    mu = jnp.maximum(mu, 0.0) * (scale / width)
    projected = vectors.T @ quadratic.linear                 # (W,) or (W, d): one column each
    # eigh may return finite vectors for a non-finite input: say so with NaN, never hide it.
    projected = jnp.where(jnp.all(jnp.isfinite(quadratic.gram)), projected, jnp.nan)
    return Spectrum(mu, vectors, projected)


def readout_at(spectrum: Spectrum, tau):
    """``A(τ) = V diag((1 − e^{−μτ})/μ) Vᵀ b`` (``tau`` may be an array: leading axes)."""
    mu, vectors, projected = spectrum
    tau = jnp.asarray(tau, jnp.float64)[..., None]
    filt = jnp.where(mu * tau > 1e-12, -jnp.expm1(-mu * tau) / jnp.where(mu > 0, mu, 1.0), tau)
    if projected.ndim == 1:
        return (filt * projected) @ vectors.T
    return vectors @ (filt[..., None] * projected)


def train_exact(quadratic: DsmQuadratic, tau):
    """Gradient flow ``dA/dτ = −(W/2)∇L`` from ``A = 0`` for time ``τ``, in closed form.

    ``A(τ) = V diag((1 − e^{−μτ})/μ) Vᵀ b`` with ``G/W = V diag(μ) Vᵀ``; ``μ`` is
    clipped at 0 (round-off) and the filter written with ``expm1`` so that small
    and zero eigenvalues give ``τ`` without cancellation. ``tau`` may be an array
    (leading axes are broadcast: one eigendecomposition serves every ``τ``).
    """
    return readout_at(flow_spectrum(quadratic), tau)


# --- Li et al.'s estimator: the DSM loss averaged over (t, ε) per data point (1-D) ----------
# ±CLIP stands for ±∞ in the Gaussian partial moments: φ(40) and Φ(−40) underflow to 0 in
# float64, so the clipped tails are exact to round-off and no ∞·0 = nan can arise.
CLIP = 40.0
# (points, nodes, W) elements of one scan step of the averaged moments: bounds its memory
# (six float64 moments each, 12 MB a block; under vmap, one block per replica) whatever N is.
AVERAGED_BLOCK = 2 ** 18
ESTIMATORS = ("draws", "averaged")


def _half_line(a, c):
    """The active set ``{ε : a + cε > 0}`` as ``[lo, hi]`` (±CLIP for ±∞; empty when lo = hi).

    ``c = 0`` (``w = 0`` or ``σ_t = 0``) is the whole line when ``a > 0`` and empty otherwise.
    """
    root = jnp.clip(-a / jnp.where(c == 0, 1.0, c), -CLIP, CLIP)
    flat_lo = jnp.where(a > 0, -CLIP, CLIP)
    lo = jnp.where(c > 0, root, jnp.where(c < 0, -CLIP, flat_lo))
    hi = jnp.where(c < 0, root, CLIP)
    return lo, hi


def _endpoint_table(x):
    """What the moments need at an endpoint: ``(x, Φ(x), Φ(−x), φ(x))`` stacked on axis −1.

    Stacked on purpose: the table is then materialised once per feature; as separate arrays XLA
    fused ``ndtr`` into the per-pair loop and the averaged Gram ran 5× slower (measured).
    """
    pdf = jnp.exp(-0.5 * x ** 2) / math.sqrt(2.0 * math.pi)
    return jnp.stack([x, ndtr(x), ndtr(-x), pdf], axis=-1)


def _moments_from_tables(lo, hi):
    """``(M0, M1, M2)`` on ``[lo, hi]`` from endpoint tables (zero when the interval is empty)."""
    l, cdf_l, tail_l, pdf_l = (lo[..., i] for i in range(4))
    u, cdf_u, tail_u, pdf_u = (hi[..., i] for i in range(4))
    inside = (u > l).astype(lo.dtype)
    # Difference of upper tails right of 0: Φ(u) − Φ(l) would cancel to round-off there.
    m0 = jnp.where(l > 0, tail_l - tail_u, cdf_u - cdf_l)
    m1 = pdf_l - pdf_u
    m2 = m0 + l * pdf_l - u * pdf_u
    return inside * m0, inside * m1, inside * m2


def gaussian_partial_moments(lo, hi):
    """``E[ε^k 1{lo < ε < hi}]``, ``k = 0, 1, 2``, for ``ε ~ N(0, 1)`` (broadcasting; ±inf allowed).

    ``M0 = Φ(hi) − Φ(lo)``, ``M1 = φ(lo) − φ(hi)``, ``M2 = M0 + lo φ(lo) − hi φ(hi)``; zero
    when ``hi <= lo``.
    """
    lo = jnp.clip(jnp.asarray(lo, jnp.float64), -CLIP, CLIP)
    hi = jnp.clip(jnp.asarray(hi, jnp.float64), -CLIP, CLIP)
    return _moments_from_tables(_endpoint_table(lo), _endpoint_table(hi))


def _features_tables(a, c):
    lo, hi = _half_line(a, c)
    return _endpoint_table(lo), _endpoint_table(hi)


def _pair_moment(a, c, tables_1, b, d, tables_2):
    """``E[relu(a + cε) relu(b + dε)]`` from the two features' endpoint tables (broadcasting).

    The product is non-zero on the intersection ``[max lo, min hi]`` of the half-lines, where it
    is ``(a + cε)(b + dε)``; Φ and φ are monotone-selected from the tables (no erf per pair).
    """
    (lo_1, hi_1), (lo_2, hi_2) = tables_1, tables_2
    lo = jnp.where((lo_1[..., :1] >= lo_2[..., :1]), lo_1, lo_2)
    hi = jnp.where((hi_1[..., :1] <= hi_2[..., :1]), hi_1, hi_2)
    m0, m1, m2 = _moments_from_tables(lo, hi)
    return a * b * m0 + (a * d + b * c) * m1 + c * d * m2


def relu_product_moment(a, c, b, d):
    """``E[relu(a + cε) relu(b + dε)]`` for ``ε ~ N(0, 1)``, closed form (broadcasting).

    ``= ab M0 + (ad + bc) M1 + cd M2`` on the intersection of the two active half-lines;
    ``c = 0`` or ``d = 0`` (a constant feature) is handled exactly.
    """
    a, c, b, d = (jnp.asarray(v, jnp.float64) for v in (a, c, b, d))
    return _pair_moment(a, c, _features_tables(a, c), b, d, _features_tables(b, d))


def relu_noise_moment(a, c):
    """``E[relu(a + cε) ε] = a M1 + c M2`` on the active half-line (equals ``c·P(a + cε > 0)``)."""
    a, c = jnp.asarray(a, jnp.float64), jnp.asarray(c, jnp.float64)
    return _noise_moment(a, c, _features_tables(a, c))


def _noise_moment(a, c, tables):
    _, m1, m2 = _moments_from_tables(*tables)
    return a * m1 + c * m2


def time_quadrature(horizon, t_min, nodes: int):
    """Nodes ``t_i`` and weights ``q_i`` with ``Σ q_i f(t_i) ≈ (1/(T − t_min)) ∫_{t_min}^T f dt``.

    Gauss–Legendre in ``v = sqrt(t)`` (``dt = 2v dv``): ``σ_t ~ sqrt(2t)`` makes the DSM
    integrand a smooth function of ``sqrt(t)`` at small ``t``, so the rule does not degrade as
    ``t_min → 0``. Measured at ``t_min = 1e-3`` (docs/diffusion.md §1.1): for ``G`` within 2×
    of Gauss–Legendre in ``t``, for ``b`` up to 100× better; 2–10× better than in ``log t``.
    Convergence is algebraic, not spectral: a feature with small ``|w|`` switches on over a
    short time where ``u·e(t)`` changes sign, and two features' kinks crossing make a jump in
    the third derivative. ``horizon`` and ``t_min`` may be traced, ``nodes`` is static.
    """
    x, w = np.polynomial.legendre.leggauss(nodes)
    lo, hi = jnp.sqrt(t_min), jnp.sqrt(horizon)
    v = 0.5 * (hi - lo) * jnp.asarray(x) + 0.5 * (hi + lo)
    return v ** 2, (hi - lo) * jnp.asarray(w) * v / (horizon - t_min)


def _check_nodes(nodes):
    if isinstance(nodes, bool) or not isinstance(nodes, (int, np.integer)) or nodes < 1:
        raise ValueError(f"nodes (time quadrature nodes) must be a positive integer, got {nodes!r}")


def _check_averaged_args(horizon, t_min, nodes):
    _check_nodes(nodes)
    if validate.is_concrete(horizon) and validate.is_concrete(t_min):
        if not (math.isfinite(float(horizon)) and 0 < float(t_min) < float(horizon)):
            raise ValueError("the averaged estimator needs 0 < t_min < T (at t_min = 0 the "
                             f"loss's constant E[1/σ_t²] diverges), got t_min={t_min!r}, "
                             f"T={horizon!r}")


def dsm_quadratic_averaged(params: ScoreParams, data, weights, horizon, t_min,
                           nodes: int = 64) -> DsmQuadratic:
    """The DSM loss averaged over ``ε ~ N(0, 1)`` and uniform ``t ∈ [t_min, T]`` per data point.

    Li et al.'s estimator: the expectation of ``dsm_quadratic``'s ``(G, b, c)`` over the draws,
    exactly in ``ε`` and by ``time_quadrature`` (``nodes`` points) in ``t``. For ``x_t = x e^{-t}
    + σ_t ε`` feature ``j`` is ``relu(a_j + c_j ε)`` with ``a_j = w_j x e^{-t} + u_j·e(t)``,
    ``c_j = w_j σ_t``, so ``E[φ_j φ_k]`` is ``relu_product_moment`` and
    ``E[φ_j y] = −relu_noise_moment/σ_t``; ``c = E_t[1/σ_t²]`` in closed form
    (``½ log(e^{2t} − 1)`` is its antiderivative). Computed without a per-point pair: the
    moments are summed over the points at the data-independent kinks first (``_averaged``).
    Weights as in ``dsm_quadratic`` (zero weights drop out). 1-D only. Memory: a ``lax.scan``
    over blocks of data points keeps one ``(points, nodes, W)`` block under ``AVERAGED_BLOCK``.
    """
    if params.slope.ndim != 1:
        raise ValueError("dsm_quadratic_averaged is 1-D only (closed-form Gaussian moments of "
                         "scalar relu features); in 2-D use draws (dsm_quadratic)")
    _check_averaged_args(horizon, t_min, nodes)
    if jnp.shape(weights) != jnp.shape(data)[:1] or jnp.ndim(data) != 1:
        raise ValueError(f"data (N,) and weights (N,) must match, got data {jnp.shape(data)} "
                         f"and weights {jnp.shape(weights)}")
    quadratic = _averaged(params, jnp.asarray(data, jnp.float64),
                          jnp.asarray(weights, jnp.float64)[None], horizon, t_min, int(nodes))
    return quadratic._replace(gram=quadratic.gram[0], linear=quadratic.linear[0])


def dsm_quadratic_averaged_prefixes(params: ScoreParams, data, weight_sets, horizon, t_min,
                                    nodes: int = 64) -> DsmQuadratic:
    """``dsm_quadratic_averaged`` for several weightings of one data set at the cost of one.

    ``weight_sets`` is ``(S, N)`` (e.g. the indicators of nested prefixes ``n_1 < … < n_S``):
    the moment evaluations, the expensive part, depend on the points only, and each weighting
    is one more contraction. Returns a ``DsmQuadratic`` with a leading axis ``S`` on every field.
    """
    if params.slope.ndim != 1:
        raise ValueError("dsm_quadratic_averaged_prefixes is 1-D only; in 2-D use draws")
    _check_averaged_args(horizon, t_min, nodes)
    if jnp.ndim(weight_sets) != 2 or jnp.shape(weight_sets)[1:] != jnp.shape(data)[:1]:
        raise ValueError(f"weight_sets must be (S, N) for data (N,), got {jnp.shape(weight_sets)} "
                         f"and data {jnp.shape(data)}")
    quadratic = _averaged(params, jnp.asarray(data, jnp.float64),
                          jnp.asarray(weight_sets, jnp.float64), horizon, t_min, int(nodes))
    sets = jnp.shape(weight_sets)[0]
    return quadratic._replace(constant=jnp.broadcast_to(quadratic.constant, (sets,)))


def _points_per_block(nodes: int, width: int) -> int:
    return max(1, AVERAGED_BLOCK // (nodes * width))


@functools.partial(jax.jit, static_argnames="nodes")
def _averaged(params, data, weights, horizon, t_min, nodes):
    """Averaged quadratic for each row of ``weights`` (S, N): gram (S, W, W), linear (S, W).

    In terms of ``y = x_t = x e^{-t} + σ_t ε`` feature ``j`` is ``relu(w_j y + d_j(t))``,
    ``d_j = u_j·e(t)``: it is active on a half-line cut at the kink ``κ_j = −d_j/w_j``, which
    does not depend on the data point. So a pair's product is ``(w_j y + d_j)(w_k y + d_k)``
    on an interval whose ends are kinks (or ±∞) for every point alike, and its expectation is
    linear in the partial moments ``E[y^r; y ≶ κ]``, ``r ≤ 2``. Summing those over the
    weighted points first (``N·nodes·W``) leaves ``nodes·W²`` pair terms independent of ``N``
    (docs/diffusion.md §1.1): the same numbers as ``relu_product_moment`` per point and pair,
    ``W`` times less work. The linear term is Stein's ``E[φ_j ε]/σ_t = w_j P(j active)``.
    """
    width = params.slope.shape[0]
    slope = params.slope
    t, q = time_quadrature(horizon, t_min, nodes)
    mean, std = ou_mean_std(t)                                         # (Q,)
    drift = time_embedding(t) @ params.time_weights.T                  # (Q, W): d_j(t)
    flat = slope == 0                                                  # constant features
    kink = -drift / jnp.where(flat, 1.0, slope)                        # (Q, W)

    per_block = _points_per_block(nodes, width)
    size = data.shape[0]
    blocks = -(-size // per_block)
    pad = blocks * per_block - size
    # Padded slots: x = 0 (finite moments) with weight 0, like empty buffer slots.
    sets = weights.shape[0]
    x = jnp.pad(data, (0, pad)).reshape(blocks, per_block)
    omega = jnp.pad(weights / weights.sum(axis=1, keepdims=True), ((0, 0), (0, pad)))
    omega = omega.reshape(sets, blocks, per_block).transpose(1, 0, 2)     # (blocks, S, P)

    def block(carry, inputs):
        xb, wb = inputs
        mu = xb[:, None] * mean                                         # (P, Q)
        z = jnp.clip((kink - mu[..., None]) / std[:, None], -CLIP, CLIP)  # (P, Q, W)
        # Φ(z) and Φ(−z) each from its own erfc (exact far out; ndtr costs 3× as much).
        below = 0.5 * erfc(-z / math.sqrt(2.0))
        above = 0.5 * erfc(z / math.sqrt(2.0))
        density = jnp.exp(-0.5 * z ** 2) / math.sqrt(2.0 * math.pi)
        powers = wb[:, :, None, None] * jnp.stack([jnp.ones_like(mu), mu, mu ** 2], axis=-1)
        # Σ_points ω μ^r g(z) for g = Φ(z), Φ(−z), φ(z): matrix products batched over nodes.
        sums = tuple(c + jnp.einsum("spqr,pqw->sqwr", powers, g)
                     for c, g in zip(carry[:3], (below, above, density)))
        return sums + (carry[3] + powers.sum(axis=1),), None

    zeros = (*(jnp.zeros((sets, nodes, width, 3)),) * 3, jnp.zeros((sets, nodes, 3)))
    (b, a, e, totals), _ = jax.lax.scan(block, zeros, (x, omega))
    # E[y^r; y ≶ κ] for y ~ N(μ, σ²), r = 0, 1, 2, summed over the weighted points:
    # E[y; y < κ] = μΦ(z) − σφ(z), E[y²; y < κ] = (μ² + σ²)Φ(z) − σφ(z)(μ + κ); mirrored above.
    sd = std[:, None]                                                  # (Q, 1)
    var = std[:, None] ** 2
    edge = sd * (e[..., 1] + kink * e[..., 0])                         # Σ ω σφ(z)(μ + κ)
    below = jnp.stack([b[..., 0], b[..., 1] - sd * e[..., 0],
                       b[..., 2] + var * b[..., 0] - edge], axis=-1)   # (S, Q, W, 3)
    above = jnp.stack([a[..., 0], a[..., 1] + sd * e[..., 0],
                       a[..., 2] + var * a[..., 0] + edge], axis=-1)
    totals = totals.at[..., 2].add(std ** 2 * totals[..., 0])          # E[y^r]: (S, Q, 3)
    total = jnp.broadcast_to(totals[:, :, None, :], below.shape)       # the same at every kink
    # Each feature's active set [lo, hi]; at each end its value and the sums (F: below, T:
    # above) there: a kink's own sums, at −∞ (0, total), at +∞ (total, 0).
    rising, falling = slope > 0, slope < 0
    everywhere = flat & (drift > 0)                                    # (Q, W)

    def end(at_kink, at_minus_inf):
        value = jnp.where(at_kink, kink, jnp.where(at_minus_inf, -jnp.inf, jnp.inf))
        at_kink, at_minus_inf = at_kink[..., None], at_minus_inf[..., None]
        below_end = jnp.where(at_kink, below, jnp.where(at_minus_inf, 0.0, total))
        above_end = jnp.where(at_kink, above, jnp.where(at_minus_inf, total, 0.0))
        return value, below_end, above_end

    lo, lo_f, lo_t = end(rising, falling | everywhere)
    hi, hi_f, hi_t = end(falling, ~(rising | falling | everywhere))    # a never-active one: empty

    def pick(table, take_j):
        """Pairwise ``(…, W, W, 3)``: feature j's sums where ``take_j``, else feature k's."""
        return jnp.where(take_j[..., None], table[..., :, None, :], table[..., None, :, :])

    take_j_lo = lo[:, :, None] >= lo[:, None, :]                       # (Q, W, W): max lo
    take_j_hi = hi[:, :, None] <= hi[:, None, :]                       # min hi
    pair_lo_f, pair_lo_t = pick(lo_f, take_j_lo), pick(lo_t, take_j_lo)
    pair_hi_f, pair_hi_t = pick(hi_f, take_j_hi), pick(hi_t, take_j_hi)
    inside = jnp.maximum(lo[:, :, None], lo[:, None, :]) < jnp.minimum(hi[:, :, None],
                                                                        hi[:, None, :])
    # Subtract the smaller pair of sums: tails when the interval is right of most of the mass.
    tails = pair_lo_t[..., :1] <= pair_hi_f[..., :1]
    moments = jnp.where(inside[..., None], jnp.where(tails, pair_lo_t - pair_hi_t,
                                                     pair_hi_f - pair_lo_f), 0.0)
    m0, m1, m2 = moments[..., 0], moments[..., 1], moments[..., 2]     # (S, Q, W, W)
    w_j, d_j = slope[:, None], drift[:, :, None]
    w_k, d_k = slope[None, :], drift[:, None, :]
    pair = w_j * w_k * m2 + (w_j * d_k + w_k * d_j) * m1 + d_j * d_k * m0
    gram = jnp.einsum("q,sqab->sab", q, pair)
    active = jnp.where(rising, above[..., 0], below[..., 0])            # P(j active), w ≠ 0
    linear = -jnp.einsum("q,sqa->sa", q, slope * active)
    constant = (jnp.log(jnp.expm1(2.0 * horizon)) - jnp.log(jnp.expm1(2.0 * t_min))) / (
        2.0 * (horizon - t_min))
    return DsmQuadratic(gram, linear, constant)


def _reverse_times(horizon: float, steps: int):
    """Uniform reverse-time grid ``t_k = T (1 − k/steps)``, and the step ``h`` (validated)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps (sampler step count) must be a positive integer, got {steps!r}")
    if not (isinstance(horizon, (int, float)) and math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"time horizon T must be finite and > 0, got {horizon!r}")
    return horizon * (1.0 - jnp.arange(steps) / steps), horizon / steps


def sample_sde(key, params: ScoreParams, m: int, horizon: float, steps: int):
    """``m`` draws of the reverse SDE (exponential integrator) from ``N(0,1)`` at ``T``."""
    key_start, key_noise = jax.random.split(key)
    times, h = _reverse_times(horizon, steps)
    grow, noise_std = math.exp(h), math.sqrt(math.expm1(2.0 * h))

    def step(y, inputs):
        t, k = inputs
        xi = jax.random.normal(jax.random.fold_in(key_noise, k), y.shape, jnp.float64)
        return grow * y + 2.0 * (grow - 1.0) * score(params, y, t) + noise_std * xi, None

    y0 = jax.random.normal(key_start, _sample_shape(params, m), jnp.float64)
    y, _ = jax.lax.scan(step, y0, (times, jnp.arange(steps)))
    return y


def _sample_shape(params: ScoreParams, m: int):
    dim = dimension(params)
    return (m,) if dim == 1 else (m, dim)


def _flow_step(params, x, t, h):
    """One Heun step of ``dx/dt = −x − s(x, t)`` backwards in time (``t → t − h``)."""
    drift = lambda y, s: -y - score(params, y, s)  # noqa: E731
    first = drift(x, t)
    guess = x - h * first
    return x - 0.5 * h * (first + drift(guess, t - h))


def sample_ode(key, params: ScoreParams, m: int, horizon: float, steps: int):
    """``m`` draws of the probability-flow ODE (Heun) from ``N(0,1)`` at ``T``."""
    times, h = _reverse_times(horizon, steps)
    x0 = jax.random.normal(key, _sample_shape(params, m), jnp.float64)
    x, _ = jax.lax.scan(lambda x, t: (_flow_step(params, x, t, h), None), x0, times)
    return x


def ode_log_density(params: ScoreParams, x, horizon: float, steps: int):
    """``log q(x)`` of the probability-flow ODE's output by the change of variables.

    Integrates ``dx/dt = f = −x − s`` forward from ``t = 0`` with Heun's method,
    accumulating ``∫_0^T ∇·f dt`` (``∇·f = −d − ∇·s``, trapezoid with the same
    nodes), and returns ``log N(x(T); 0, I_d) + ∫_0^T ∇·f dt``. ``x``: points of shape
    ``(...,)`` in 1-D or ``(..., d)``.
    """
    _, h = _reverse_times(horizon, steps)
    dim = dimension(params)
    drift = lambda y, s: -y - score(params, y, s)                 # noqa: E731
    div = lambda y, s: -dim - score_divergence(params, y, s)      # noqa: E731

    def step(carry, t):
        y, logdet = carry
        f0 = drift(y, t)
        guess = y + h * f0
        y_new = y + 0.5 * h * (f0 + drift(guess, t + h))
        logdet = logdet + 0.5 * h * (div(y, t) + div(y_new, t + h))
        return (y_new, logdet), None

    x = jnp.asarray(x, jnp.float64)
    batch = x.shape if dim == 1 else x.shape[:-1]
    (y, logdet), _ = jax.lax.scan(step, (x, jnp.zeros(batch)), jnp.arange(steps) * h)
    square = y ** 2 if dim == 1 else jnp.sum(y ** 2, axis=-1)
    return -0.5 * square - 0.5 * dim * math.log(2.0 * math.pi) + logdet


def sde_density_on_grid(params: ScoreParams, nodes, horizon: float, steps: int):
    """``sde_density_for_score`` of the network ``s(·; params)`` (its own dimension)."""
    return sde_density_for_score(lambda x, t: score(params, x, t), nodes, horizon, steps,
                                 dimension(params))


def grid_points(nodes, dim: int):
    """The grid's points: ``nodes`` in 1-D; ``(G², 2)`` in 2-D, first coordinate slowest."""
    nodes = jnp.asarray(nodes, jnp.float64)
    if dim == 1:
        return nodes
    return jnp.stack(jnp.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2)


def sde_density_for_score(score_fn, nodes, horizon: float, steps: int, dim: int = 1):
    """The density of ``sample_sde``'s output on the grid of ``nodes``, and the mass lost.

    Start from ``N(0,1)`` at the nodes; each exponential-integrator step maps ``y`` to
    ``N(e^h y + 2(e^h − 1)s(y, t), e^{2h} − 1)``, so
    ``p_{k+1}(x_a) = Σ_b δ p_k(y_b) N(x_a; mean(y_b), var)`` (Chapman–Kolmogorov by
    the midpoint rule, spectrally accurate while the step's noise ``sqrt(e^{2h} − 1)``
    spans several cells ``δ``; checked against sampling in tests). Returns
    ``(density, lost)`` with ``lost = 1 − δ Σ density``: the mass outside the grid
    (start tail plus leaks), to be budgeted as TV error.

    2-D (``dim=2``): the grid is ``nodes × nodes`` (density ``(G, G)``, first axis the
    first coordinate). The kernel ``N(x; m(y), σ²I)`` factorises over coordinates, so
    ``p_{k+1}[a, b] = δ²/(2πσ²) Σ_y p_k(y) Φ_1[y, a] Φ_2[y, b]`` with
    ``Φ_i[y, a] = exp(−(c_a − m_i(y))²/(2σ²))``: ``2G³`` exponentials and a ``G²×G`` by
    ``G²×G`` matmul per step. ``score_fn`` maps ``(G², 2)`` points to ``(G², 2)``.
    """
    validate.check_choice("dim", dim, (1, 2))
    nodes = jnp.asarray(nodes, jnp.float64)
    delta = nodes[1] - nodes[0]
    times, h = _reverse_times(horizon, steps)
    grow, noise_std = math.exp(h), math.sqrt(math.expm1(2.0 * h))
    if dim == 2:
        return _sde_density_2d(score_fn, nodes, delta, times, grow, noise_std)
    norm = delta / (math.sqrt(2.0 * math.pi) * noise_std)
    start = jnp.exp(-0.5 * nodes ** 2) / math.sqrt(2.0 * math.pi)

    def step(p, t):
        mean = grow * nodes + 2.0 * (grow - 1.0) * score_fn(nodes, t)           # (G,) sources
        kernel = jnp.exp(-0.5 * ((nodes[:, None] - mean[None, :]) / noise_std) ** 2)
        return norm * (kernel @ p), None

    density, _ = jax.lax.scan(step, start, times)
    return density, 1.0 - delta * jnp.sum(density)


def _sde_density_2d(score_fn, nodes, delta, times, grow, noise_std):
    size = nodes.shape[0]
    points = grid_points(nodes, 2)                                         # (G², 2)
    norm = delta ** 2 / (2.0 * math.pi * noise_std ** 2)
    start = jnp.exp(-0.5 * jnp.sum(points ** 2, -1)) / (2.0 * math.pi)

    def step(p, t):
        mean = grow * points + 2.0 * (grow - 1.0) * score_fn(points, t)   # (G², 2) sources
        phi = jnp.exp(-0.5 * ((nodes[None, None, :] - mean[:, :, None]) / noise_std) ** 2)
        return norm * (phi[:, 0, :].T @ (p[:, None] * phi[:, 1, :])).reshape(-1), None

    density, _ = jax.lax.scan(step, start, times)
    return density.reshape(size, size), 1.0 - delta ** 2 * jnp.sum(density)


def early_stopping_time(tau: float, rule: str, size, exponent: float = 0.4):
    """``τ`` for a training set of ``size`` points: ``tau`` (fixed), ``tau · size^(2/5)``
    (early) or ``tau · size^exponent`` (power: a law fitted on separate runs, B3)."""
    if rule == "fixed":
        return tau
    return tau * size ** (exponent if rule == "power" else 0.4)


def check_diffusion_args(width, tau, horizon, steps, draws=1, t_min=1e-3, dim=1):
    """Validate the model's parameters at the public boundary (ValueError naming each)."""
    validate.check_choice("dim", dim, (1, 2))
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width W must be a positive integer, got {width!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps (sampler step count) must be a positive integer, got {steps!r}")
    validate.check_positive_int("draws", draws)
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"training time tau must be finite and > 0, got {tau!r}")
    if not (isinstance(horizon, (int, float)) and math.isfinite(horizon) and horizon > 0):
        raise ValueError(f"time horizon T must be finite and > 0, got {horizon!r}")
    if not (isinstance(t_min, (int, float)) and 0 <= t_min < horizon):
        raise ValueError(f"t_min must lie in [0, T), got {t_min!r}")


def check_estimator(estimator, nodes, horizon, t_min, dim=1):
    """Validate the DSM estimator's arguments (ValueError naming each).

    ``nodes`` is validated even when unused (``"draws"``): a typo fails early.
    """
    validate.check_choice("estimator", estimator, ESTIMATORS)
    _check_nodes(nodes)
    if estimator == "averaged":
        if dim != 1:
            raise ValueError(f"estimator='averaged' is 1-D only, got dim={dim}; in 2-D use draws")
        _check_averaged_args(horizon, t_min, nodes)


@functools.lru_cache(maxsize=None)
def diffusion(width: int, tau: float, *, horizon: float = 4.0, steps: int = 100, draws: int = 8,
              t_min: float = 1e-3, rule: str = "fixed", tau_exponent: float = 0.4,
              sampler: str = "sde",
              feature_scale: tuple = (2.0, 2.0, 2.0), dim: int = 1, estimator: str = "draws",
              nodes: int = 64) -> GenerativeModel:
    """Random-feature score diffusion as a ``GenerativeModel`` (data ``(N,)`` or ``(N, dim)``).

    ``fit(key, data, weights, time=None)`` draws a fresh random first layer and fresh DSM
    draws from ``key`` (``estimator="averaged"``: no draws, the loss averaged over them) and
    trains the readout exactly for time ``τ`` (``rule="early"``:
    ``τ = tau · N^(2/5)``, ``N = Σ weights``; ``time``, possibly traced, overrides the
    rule); ``sample`` runs the reverse SDE
    (exponential integrator) or the probability-flow ODE for ``steps`` steps.

    Args:
      width: number of random features ``W >= 1``.
      tau: training time ``> 0`` (or its constant under ``rule="early"``).
      horizon: time horizon ``T > 0``.
      steps: sampler steps ``>= 1``.
      draws: DSM draws ``(t, ε)`` per data point.
      t_min: smallest training time of the DSM draws, in ``[0, T)``.
      rule: ``"fixed"``, ``"early"`` or ``"power"`` (``τ = tau · N^tau_exponent``).
      tau_exponent: the exponent of ``rule="power"`` (finite).
      sampler: ``"sde"`` or ``"ode"``.
      feature_scale: standard deviations of the three time weights ``u``.
      dim: data dimension, 1 or 2.
      estimator: ``"draws"`` (``draws`` fixed ``(t, ε)`` per point, ``dsm_quadratic``) or
        ``"averaged"`` (Li et al.: the loss averaged over ``ε`` exactly and over ``t`` by
        ``nodes``-point quadrature, ``dsm_quadratic_averaged``; 1-D, ``t_min > 0``).
      nodes: time quadrature nodes of ``estimator="averaged"`` (unused by ``"draws"``).
    """
    check_diffusion_args(width, tau, horizon, steps, draws, t_min, dim)
    validate.check_choice("rule", rule, ("fixed", "early", "power"))
    if not (isinstance(tau_exponent, (int, float)) and math.isfinite(tau_exponent)):
        raise ValueError(f"tau_exponent (of rule='power') must be finite, got {tau_exponent!r}")
    validate.check_choice("sampler", sampler, ("sde", "ode"))
    check_estimator(estimator, nodes, horizon, t_min, dim)

    def fit(key, data, weights, time=None):
        """``time``, when given (may be traced), replaces the rule's training time: a caller
        that varies the time with its inputs (B3's fitted law) then compiles once."""
        # The same key split for both estimators: equal keys give equal first layers.
        key_features, key_draws = jax.random.split(key)
        params = random_features(key_features, width, feature_scale, dim)
        if estimator == "averaged":
            quadratic = dsm_quadratic_averaged(params, data, weights, horizon, t_min, nodes)
        else:
            t, eps = dsm_draws(key_draws, data.shape[0], draws, horizon, t_min, dim)
            quadratic = dsm_quadratic(params, data, weights, t, eps)
        if time is None:
            time = early_stopping_time(tau, rule, weights.sum(), tau_exponent)
        return params._replace(readout=train_exact(quadratic, time))

    draw = sample_sde if sampler == "sde" else sample_ode

    def sample(key, params, m):
        return draw(key, params, m, horizon, steps)

    label = "" if dim == 1 else f"{dim}d"
    averaged = f"-avg{nodes}" if estimator == "averaged" else ""   # default names unchanged
    return GenerativeModel(
        f"rf-diffusion{label}-W{width}-tau{tau:g}-{rule}"
        f"{f'{tau_exponent:g}' if rule == 'power' else ''}-{sampler}{steps}{averaged}", fit, sample)


@functools.lru_cache(maxsize=None)
def diffusion_tv_metric(grid, horizon: float = 4.0, steps: int = 100, coarse_steps: int | None = None):
    """Metric ``(key, Generation, p0) -> {tv, tv_error[, disc]}`` for diffusion loops.

    ``tv = TV(G_i, p0)`` with ``G_i``'s density from ``sde_density_on_grid`` (the law
    of the ``steps``-step sampler the loop draws from); ``tv_error`` is the grid
    budget (step doubling + kink term, half the mass lost off the grid, half of
    ``p0``'s tail). With ``coarse_steps``, ``disc = TV(q_steps, q_coarse)``: the
    discretisation budget. The grid's ``dim`` (1 or 2) must be the model's: in 2-D the
    density is the separable Chapman–Kolmogorov one on ``nodes × nodes`` and the budget
    has the same three pieces (B2-oneshot's 2-D point uses them). Cached, so compiled
    loops are reused.
    """
    from sims import metrics  # noqa: PLC0415 (metrics imports the models package)

    nodes = jnp.asarray(metrics.grid_nodes(grid))

    def metric(key, gen, truth):
        del key
        p0 = metrics.mixture_density(grid, truth)
        if dimension(gen.params) != grid.dim:   # shapes are static: raised at trace time
            raise ValueError(f"grid dim {grid.dim} != the model's data dimension "
                             f"{dimension(gen.params)}")
        p0_tail = 0.5 * metrics.mixture_tail_mass(grid, truth)
        density, lost = sde_density_on_grid(gen.params, nodes, horizon, steps)
        tv, quad = metrics.tv_on_grid(grid, density, p0)
        out = {"tv": tv, "tv_error": quad + 0.5 * jnp.abs(lost) + p0_tail}
        if coarse_steps is not None:
            coarse, _ = sde_density_on_grid(gen.params, nodes, horizon, coarse_steps)
            out["disc"] = metrics.tv_on_grid(grid, density, coarse)[0]
        return out

    return metric
