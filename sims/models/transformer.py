"""A small softmax transformer that learns linear regression in context, in a self-consuming loop.

Three pieces, after von Oswald et al.'s ICL code (STYLE.md), in flax linen:

* ``ICLTransformer``: tokens ``(x, y, 0)`` for the context pairs and ``(x_q, 0, 1)`` for the
  query; pre-layer-norm blocks of softmax multi-head attention and a GELU MLP; the query
  token's output is the prediction of ``y_q``.
* ``sample_prompts(key, spec, count)``: prompts ``x, w ~ N(0, I_d)``, ``y = w.x + sigma xi``,
  a pure function of the key.
* ``fit(key, spec, TrainingSet) -> (params, TrainInfo)``: Adam with warm-up cosine schedule
  on minibatches drawn from a training set, the optimizer steps in one ``lax.scan``; a
  NaN/Inf loss is carried out as a ``finite`` flag, never raised inside ``vmap``.

``loop_trajectory`` runs one replica of THEORY §1's loop (a ``lax.scan`` over generations,
a ``vmap`` over ``lam`` values): ``G_0`` on ``n`` real prompts, generation ``i`` on the same
``n`` real prompts plus ``m`` prompts sampled from ``G_{i-1}``'s joint law
(docs/transformer.md §2). ``run_loops`` / ``run_calibration`` run it over replicas (common
random numbers: replica ``r`` has the same prompts and keys at every ``lam``).
``run_coupled`` / ``run_stability`` run two twins per replica whose real sets differ in one
prompt, every key shared, and measure their distance in TV (R2, docs/transformer.md §5).

Numerics: the network trains in float32 (``TransformerSpec.dtype``), which is the usual
precision for SGD and about twice as fast on CPU (verify/bench.py measures it); every
measured quantity (errors, fitted gamma, coupled distances) is computed in float64.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from bounds import validate
from sims.loop import run_replicas

__all__ = ["TransformerSpec", "Prompts", "TrainInfo", "ICLTransformer", "make_spec",
           "sample_prompts", "replica_data", "ReplicaData", "tokens", "init_params", "predict",
           "train", "train_replicas", "linear_readout", "fit_gamma", "bayes_prediction",
           "TrainingSet", "synthetic_labels", "draw_batch", "fit", "synthetic_count", "LoopRules",
           "SECTION1", "Measures", "LoopOutput", "Calibration", "loop_trajectory",
           "calibration", "run_loops", "run_calibration", "run_loop", "twin_distance",
           "Coupled", "coupled_trajectory", "Stability", "coupled_lams", "run_coupled",
           "run_stability"]


class TransformerSpec(NamedTuple):
    """Static sizes of the task, the network, its training and the loop (hashable: a jit key).

    Attributes:
      dim: ``d``, dimension of ``x`` and ``w``.
      context: ``N``, number of ``(x, y)`` pairs before the query.
      noise: ``sigma``, label noise of real prompts (and of synthetic targets).
      width: ``d_model``.
      heads: attention heads.
      layers: transformer blocks (>= 2 for claim A4).
      mlp: hidden width of each block's MLP.
      steps: Adam steps per training run.
      batch: prompts per step.
      learning_rate: peak of the warm-up cosine schedule.
      warmup: warm-up steps.
      train_prompts: size of the training set ``S0`` of every generation. ``steps * batch``
        (one pass) is the natural choice: a few hundred prompts are memorised instead of
        learned in context (test error above the zero predictor's ``d + sigma^2``).
      test_prompts: fresh real prompts for the test error (per replica, fixed over generations).
      probe_prompts: prompts on which gamma is fitted and the coupled twins are compared.
      dtype: the network's floating type (``"float32"`` or ``"float64"``).
    """

    dim: int = 3
    context: int = 10
    noise: float = 0.5
    width: int = 16
    heads: int = 2
    layers: int = 2
    mlp: int = 32
    steps: int = 200
    batch: int = 32
    learning_rate: float = 3e-3
    warmup: int = 20
    train_prompts: int = 6400
    test_prompts: int = 256
    probe_prompts: int = 256
    dtype: str = "float32"


def make_spec(**overrides) -> TransformerSpec:
    """A validated ``TransformerSpec`` (ValueError/TypeError name the bad field)."""
    spec = TransformerSpec(**overrides)
    for name in ("dim", "context", "width", "heads", "layers", "mlp", "steps", "batch",
                 "train_prompts", "test_prompts", "probe_prompts"):
        validate.check_positive_int(name, getattr(spec, name))
    validate.check_nonnegative_int("warmup", spec.warmup)
    validate.check_positive("noise", spec.noise)
    validate.check_positive("learning_rate", spec.learning_rate)
    if spec.width % spec.heads:
        raise ValueError(f"width must be a multiple of heads, got width={spec.width}, "
                         f"heads={spec.heads}")
    if spec.warmup >= spec.steps:
        raise ValueError(f"warmup must be < steps, got warmup={spec.warmup}, steps={spec.steps}")
    validate.check_choice("dtype", spec.dtype, ("float32", "float64"))
    return spec


class Prompts(NamedTuple):
    """In-context regression prompts (leading axes are batch axes).

    Attributes:
      x: ``(..., N, d)`` context inputs.
      y: ``(..., N)`` context labels.
      query: ``(..., d)`` query input ``x_q``.
      target: ``(...)`` real query label ``y_q = w.x_q + sigma xi``.
    """

    x: jax.Array
    y: jax.Array
    query: jax.Array
    target: jax.Array


def sample_prompts(key: jax.Array, spec: TransformerSpec, count: int) -> Prompts:
    """``count`` prompts with ``x, w ~ N(0, I_d)`` and ``y = w.x + sigma xi`` (float64)."""
    k_w, k_x, k_noise = jax.random.split(key, 3)
    n, d = spec.context, spec.dim
    w = jax.random.normal(k_w, (count, d), jnp.float64)
    x = jax.random.normal(k_x, (count, n + 1, d), jnp.float64)
    y = jnp.einsum("cnd,cd->cn", x, w) + spec.noise * jax.random.normal(k_noise, (count, n + 1),
                                                                         jnp.float64)
    return Prompts(x[:, :n], y[:, :n], x[:, n], y[:, n])


def tokens(prompts: Prompts) -> jax.Array:
    """Token matrix ``(..., N + 1, d + 2)``: rows ``(x, y, 0)`` then ``(x_q, 0, 1)``."""
    zeros = jnp.zeros(prompts.y.shape + (1,), prompts.x.dtype)
    context = jnp.concatenate([prompts.x, prompts.y[..., None], zeros], axis=-1)
    query = jnp.concatenate([prompts.query, jnp.zeros(prompts.query.shape[:-1] + (1,)),
                             jnp.ones(prompts.query.shape[:-1] + (1,))], axis=-1)
    return jnp.concatenate([context, query[..., None, :].astype(prompts.x.dtype)], axis=-2)


class Block(nn.Module):
    """Pre-layer-norm block: softmax self-attention, then a GELU MLP, both residual."""

    width: int
    heads: int
    mlp: int
    dtype: Any

    @nn.compact
    def __call__(self, h):
        h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads, qkv_features=self.width,
                                                dtype=self.dtype, param_dtype=self.dtype)(
            nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype)(h))
        z = nn.LayerNorm(dtype=self.dtype, param_dtype=self.dtype)(h)
        z = nn.gelu(nn.Dense(self.mlp, dtype=self.dtype, param_dtype=self.dtype)(z))
        return h + nn.Dense(self.width, dtype=self.dtype, param_dtype=self.dtype)(z)


class ICLTransformer(nn.Module):
    """Embed tokens, ``layers`` blocks, final layer norm, read ``y_q`` off the query token."""

    width: int
    heads: int
    layers: int
    mlp: int
    dtype: Any

    @nn.compact
    def __call__(self, toks):
        kw = dict(dtype=self.dtype, param_dtype=self.dtype)
        h = nn.Dense(self.width, **kw)(toks.astype(self.dtype))
        for _ in range(self.layers):
            h = Block(self.width, self.heads, self.mlp, self.dtype)(h)
        h = nn.LayerNorm(**kw)(h)
        return nn.Dense(1, **kw)(h[..., -1, :])[..., 0]


@functools.lru_cache(maxsize=None)
def network(spec: TransformerSpec) -> ICLTransformer:
    return ICLTransformer(spec.width, spec.heads, spec.layers, spec.mlp, jnp.dtype(spec.dtype))


# The flax module is traced once per process and shape: as jitted functions, every program
# that trains or evaluates the network (loops, calibrations, coupled twins; under vmap and
# grad) reuses one jaxpr instead of tracing flax again (docs/transformer.md §7).
@functools.partial(jax.jit, static_argnums=1)
def init_params(key: jax.Array, spec: TransformerSpec) -> Any:
    """Fresh parameters from a key."""
    dummy = jnp.zeros((1, spec.context + 1, spec.dim + 2), spec.dtype)
    return network(spec).init(key, dummy)


@functools.partial(jax.jit, static_argnums=1)
def _apply(params: Any, spec: TransformerSpec, toks: jax.Array) -> jax.Array:
    return network(spec).apply(params, toks)


def predict(params: Any, spec: TransformerSpec, prompts: Prompts) -> jax.Array:
    """The network's prediction of every prompt's query label (float64)."""
    return _apply(params, spec, tokens(prompts)).astype(jnp.float64)


class TrainInfo(NamedTuple):
    """What a training run reports besides its parameters.

    Attributes:
      first_loss, final_loss: minibatch MSE of the first and of the last step.
      finite: every step's loss was finite (a NaN/Inf is data, reported by the caller).
    """

    first_loss: jax.Array
    final_loss: jax.Array
    finite: jax.Array


def optimizer(spec: TransformerSpec) -> optax.GradientTransformation:
    """Adam on a warm-up cosine schedule, gradients clipped at global norm 1."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, spec.learning_rate, spec.warmup,
                                                  spec.steps, spec.learning_rate * 0.05)
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(schedule))


def train(key: jax.Array, spec: TransformerSpec, prompts: Prompts,
          targets: jax.Array) -> tuple[Any, TrainInfo]:
    """Train a fresh network to map each prompt to its ``targets`` entry (MSE).

    Minibatches of ``spec.batch`` consecutive prompts of one random permutation of the
    training set (cycled if ``steps * batch`` exceeds it), so every prompt is used and one
    replaced prompt touches as few steps as possible. Pure in ``key``: vmap it over replicas.

    Args:
      key: initialisation and minibatch key.
      spec: sizes (static).
      prompts: the training prompts (leading axis: ``train_prompts``).
      targets: the query label each prompt is trained to output (real or synthetic).

    Returns:
      ``(params, TrainInfo)``.
    """
    init_key, batch_key = jax.random.split(key)
    params = init_params(init_key, spec)
    opt = optimizer(spec)
    count = targets.shape[0]
    order = jax.random.permutation(batch_key, count)

    def loss_fn(p, batch, y):
        return jnp.mean((predict(p, spec, batch) - y) ** 2)

    def step(carry, t):
        p, state, finite = carry
        idx = order[(t * spec.batch + jnp.arange(spec.batch)) % count]
        batch = jax.tree.map(lambda a: a[idx], prompts)
        loss, grads = jax.value_and_grad(loss_fn)(p, batch, targets[idx])
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state, finite & jnp.isfinite(loss)), loss

    (params, _, finite), losses = jax.lax.scan(step, (params, opt.init(params), jnp.asarray(True)),
                                               jnp.arange(spec.steps))
    return params, TrainInfo(losses[0], losses[-1], finite)


@functools.partial(jax.jit, static_argnums=1)
def _train_replicas(keys, spec, prompts, targets):
    return jax.vmap(train, (0, None, 0, 0))(keys, spec, prompts, targets)


def train_replicas(keys: jax.Array, spec: TransformerSpec, prompts: Prompts,
                   targets: jax.Array) -> tuple[Any, TrainInfo]:
    """``train`` vmapped over a leading replica axis of ``keys``, ``prompts`` and ``targets``."""
    _check_spec(spec)
    return _train_replicas(keys, spec, prompts, targets)


# --- the linear-attention readout ---------------------------------------------------------

def linear_readout(prompts: Prompts) -> jax.Array:
    """``(1/N) sum_j y_j x_j . x_q``: the linear-attention prediction at ``gamma = 1``."""
    return jnp.einsum("...nd,...n,...d->...", prompts.x, prompts.y, prompts.query) / \
        prompts.y.shape[-1]


def fit_gamma(predictions: jax.Array, prompts: Prompts) -> tuple[jax.Array, jax.Array]:
    """Least-squares ``gamma`` of ``prediction ~ gamma * readout`` and its ``R^2`` (float64).

    ``R^2 = 1 - RSS / sum prediction^2`` (no intercept: a linear-attention layer has none).
    """
    s = linear_readout(prompts)
    gamma = jnp.sum(predictions * s, -1) / jnp.sum(s * s, -1)
    resid = predictions - gamma[..., None] * s
    return gamma, 1.0 - jnp.sum(resid ** 2, -1) / jnp.sum(predictions ** 2, -1)


class ReplicaData(NamedTuple):
    """Stored prompt sets of one replica (``train_replicas`` and the benchmark)."""

    train: Prompts
    test: Prompts


def replica_data(key: jax.Array, spec: TransformerSpec) -> ReplicaData:
    k_train, k_test = jax.random.split(key)
    return ReplicaData(sample_prompts(k_train, spec, spec.train_prompts),
                       sample_prompts(k_test, spec, spec.test_prompts))


# --- the Bayes predictor --------------------------------------------------------------------

def bayes_prediction(prompts: Prompts, noise: float) -> jax.Array:
    """The posterior-mean prediction ``x_q . (X^T X + sigma^2 I)^{-1} X^T y`` (float64).

    With ``w ~ N(0, I_d)`` and Gaussian noise the posterior of ``w`` given the context is
    Gaussian with this mean (ridge at penalty ``sigma^2``): no predictor of ``y_q`` from the
    prompt has a smaller mean squared error (the Bayes risk, docs/transformer.md §1).
    """
    x, y = prompts.x.astype(jnp.float64), prompts.y.astype(jnp.float64)
    gram = jnp.einsum("...nd,...ne->...de", x, x) + noise ** 2 * jnp.eye(x.shape[-1])
    w = spd_solve(gram, jnp.einsum("...nd,...n->...d", x, y))
    return jnp.einsum("...d,...d->...", w, prompts.query.astype(jnp.float64))


def spd_solve(a: jax.Array, b: jax.Array) -> jax.Array:
    """``a⁻¹ b`` for symmetric positive definite ``a`` (``(..., d, d)``, ``b``: ``(..., d)``).

    Cholesky and two triangular solves in plain arithmetic, ``d`` steps each: no LAPACK call.
    XLA:CPU's batched LAPACK kernels split their batch over the intra-op pool and block on it,
    so two of A4's programs running at once could each hold one of a 2-core machine's two
    pool threads and wait for ever (the diffusion fit's ``eigh`` did; docs/engine.md §4).
    """
    d = a.shape[-1]
    rows = jnp.arange(d)
    chol = jnp.zeros_like(a)
    for j in range(d):   # column j of L: (a[:, j] - L[:, :j] L[j, :j]) / L[j, j], rows >= j
        col = a[..., :, j] - jnp.einsum("...ik,...k->...i", chol[..., :, :j], chol[..., j, :j])
        col = jnp.where(rows >= j, col / jnp.sqrt(col[..., j:j + 1]), 0.0)
        chol = chol.at[..., :, j].set(col)
    z = jnp.zeros_like(b)
    for i in range(d):                      # L z = b
        z = z.at[..., i].set((b[..., i] - jnp.einsum("...k,...k->...", chol[..., i, :i],
                                                     z[..., :i])) / chol[..., i, i])
    out = jnp.zeros_like(b)
    for i in reversed(range(d)):            # Lᵀ out = z
        out = out.at[..., i].set((z[..., i] - jnp.einsum("...k,...k->...", chol[..., i + 1:, i],
                                                         out[..., i + 1:])) / chol[..., i, i])
    return out


# --- training sets of the loop, drawn lazily ---------------------------------------------------

class TrainingSet(NamedTuple):
    """One generation's training set: ``real_count`` real plus ``extra_count`` extra prompts.

    Prompt ``j < real_count`` is ``real[j]`` (the reused set ``S0``). Prompt
    ``real_count + k`` is ``extra[k]``: inputs and context from the input law; its query
    label is ``teacher(extra[k]) + sigma * extra_noise[k]`` when ``synthetic`` (a sample of
    the teacher's joint law), else its real label (the "all real" control). Only the first
    ``extra_count`` rows of ``extra`` belong to the set (counts are traced, the arrays have a
    static capacity). The label of ``extra[k]`` is a fixed function of ``k`` (its noise is
    drawn once), so ``fit`` labels all prompts first or each minibatch's slots as it draws
    them, whichever is fewer forward passes: the same labels. ``synthetic`` is a bool
    (``False``, a Python bool, skips the teacher statically) or a traced boolean.
    """

    real: Prompts
    real_count: jax.Array
    extra: Prompts
    extra_noise: jax.Array
    extra_count: jax.Array
    teacher: Any
    synthetic: jax.Array


def synthetic_labels(spec: TransformerSpec, data: TrainingSet) -> jax.Array:
    """Every extra prompt's synthetic label ``teacher(extra[k]) + sigma * extra_noise[k]``."""
    return jax.lax.stop_gradient(predict(data.teacher, spec, data.extra)) + \
        spec.noise * data.extra_noise


def draw_batch(key: jax.Array, spec: TransformerSpec, data: TrainingSet,
               labels: jax.Array | None = None) -> tuple[Prompts, jax.Array]:
    """A minibatch of ``spec.batch`` prompts drawn uniformly (with replacement) from ``data``,
    and the query labels the network is trained to output.

    ``labels``: the extra prompts' synthetic labels when already computed
    (``synthetic_labels``); ``None`` labels the minibatch's slots with the teacher here.
    """
    size = data.real_count + data.extra_count
    index = jax.random.randint(key, (spec.batch,), 0, jnp.maximum(size, 1))
    is_real = index < data.real_count
    real_rows = jnp.clip(index, 0, data.real.target.shape[0] - 1)
    extra_rows = jnp.clip(index - data.real_count, 0, data.extra.target.shape[0] - 1)
    batch = jax.tree.map(lambda a, b: jnp.where(
        is_real.reshape((-1,) + (1,) * (a.ndim - 1)), a[real_rows], b[extra_rows]),
        data.real, data.extra)
    if data.synthetic is False:               # static: real labels only, no teacher at all
        return batch, batch.target
    if labels is None:
        # The teacher labels every slot (a where is cheaper than gathering the synthetic
        # ones); its output is used for the synthetic prompts only.
        taught = jax.lax.stop_gradient(predict(data.teacher, spec, batch)) + \
            spec.noise * data.extra_noise[extra_rows]
    else:
        taught = labels[extra_rows]
    return batch, jnp.where(is_real | ~jnp.asarray(data.synthetic), batch.target, taught)


def fit(key: jax.Array, spec: TransformerSpec, data: TrainingSet) -> tuple[Any, TrainInfo]:
    """Train a fresh network (init from ``key``) on ``data`` for ``spec.steps`` Adam steps.

    The loop's learner: a pure function of its key and training set, so two twins with the
    same key and sets differing in one prompt see the same initialisation and minibatch
    indices (the coupling of THEORY §4).
    """
    real_labels = data.synthetic is False
    # jit would trace the Python False as an array: pass the fact as a static argument and a
    # placeholder leaf in its place (``_fit`` puts the static False back).
    return _fit(key, spec, data._replace(synthetic=True) if real_labels else data, real_labels)


@functools.partial(jax.jit, static_argnums=(1, 3))
def _fit(key, spec, data, real_labels):
    # One trace per (spec, set shapes, real_labels), shared by every training of every loop,
    # calibration and twin run in the process: tracing the flax network dominated A4's
    # start-up (about 2 s a trace, a dozen traces), far more than it costs to run.
    if real_labels:
        data = data._replace(synthetic=False)
    init_key, batch_key = jax.random.split(key)
    params = init_params(init_key, spec)
    opt = optimizer(spec)
    # Label every extra prompt once when there are fewer of them than minibatch slots (the
    # teacher's pass per step cost about 30% of training); else label the slots drawn.
    labels = None
    if data.synthetic is not False and data.extra.target.shape[0] <= spec.steps * spec.batch:
        labels = synthetic_labels(spec, data)

    def loss_fn(p, batch, y):
        return jnp.mean((predict(p, spec, batch) - y) ** 2)

    def step(carry, t):
        p, state, finite = carry
        batch, y = draw_batch(jax.random.fold_in(batch_key, t), spec, data, labels)
        loss, grads = jax.value_and_grad(loss_fn)(p, batch, y)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state, finite & jnp.isfinite(loss)), loss

    (params, _, finite), losses = jax.lax.scan(step, (params, opt.init(params), jnp.asarray(True)),
                                               jnp.arange(spec.steps))
    return params, TrainInfo(losses[0], losses[-1], finite)


# --- the self-consuming loop (THEORY §1) -----------------------------------------------------

def synthetic_count(spec: TransformerSpec, lam: jax.Array) -> jax.Array:
    """``m`` for real proportion ``lam`` at ``n = spec.train_prompts`` real prompts:
    ``round(n (1-lam)/lam)``, and ``n`` at ``lam = 0`` (fully synthetic: ``N = n``)."""
    n = spec.train_prompts
    safe = jnp.where(lam > 0, lam, 1.0)
    return jnp.where(lam > 0, jnp.round(n * (1.0 - lam) / safe), n).astype(jnp.int32)


def latest_teacher(first: Any, previous: Any) -> Any:
    """§1: generation ``i`` learns from ``G_{i-1}``."""
    del first
    return previous


def keep_real(spec: TransformerSpec, lam: jax.Array) -> jax.Array:
    """§1: the ``n`` real prompts stay in every generation's set (none at ``lam = 0``)."""
    return jnp.where(lam > 0, spec.train_prompts, 0).astype(jnp.int32)


class LoopRules(NamedTuple):
    """How a generation's training set is formed (the loop of THEORY §1 is ``SECTION1``).

    Attributes:
      teacher: ``(G_0 params, G_{i-1} params) -> params`` that label the synthetic prompts.
      real_count: ``(spec, lam) -> int`` real prompts of ``S0`` in generation ``i >= 1``'s set.
    """

    teacher: Any = latest_teacher
    real_count: Any = keep_real


SECTION1 = LoopRules()


class Measures(NamedTuple):
    """What is measured of one fitted network on the replica's fresh real test prompts.

    Attributes:
      test_error: MSE against the real (noisy) query labels.
      excess: ``mean_P (f(P) - f_B(P))^2``, the distance to the Bayes predictor: the excess
        risk over the Bayes risk (the cross term has mean 0), without label noise.
      gamma: the effective linear-attention ``gamma`` (``fit_gamma``).
      finite: the training loss stayed finite.
      prediction: ``f(P)`` on every test prompt (the probe prompts of the coupled twins).
    """

    test_error: jax.Array
    excess: jax.Array
    gamma: jax.Array
    finite: jax.Array
    prediction: jax.Array


def _measures(params, info, spec, test, bayes):
    f = predict(params, spec, test)
    gamma, _ = fit_gamma(f, test)
    finite = info.finite & jnp.all(jnp.isfinite(f))
    nan = jnp.asarray(jnp.nan, jnp.float64)
    bad = lambda v: jnp.where(finite, v, nan)  # noqa: E731  (NaN is located, never averaged)
    return Measures(bad(jnp.mean((f - test.target) ** 2)), bad(jnp.mean((f - bayes) ** 2)),
                    bad(gamma), finite, bad(f))


class LoopOutput(NamedTuple):
    """One replica of A4 (leading axes: generation, then ``lam``).

    Attributes:
      loop: ``Measures`` of ``G_i`` at every ``lam`` (generation 0 is shared by all ``lam``).
      all_real: the "all real" control: a network trained on ``n + m`` real prompts (the
        loop's own extra prompts with real labels, generation 1's keys); constant in ``i``.
        ``None`` when the loop was run without controls.
      bayes_error: the Bayes predictor's test MSE (the Bayes risk, estimated).
      lsa_error: the test MSE of the optimal linear-attention layer ``gamma* s(P)``.
    """

    loop: Measures
    all_real: Measures
    bayes_error: jax.Array
    lsa_error: jax.Array


class GenerationKeys(NamedTuple):
    fit: jax.Array
    extra: jax.Array


def generation_keys(key: jax.Array, i) -> GenerationKeys:
    return GenerationKeys(*jax.random.split(jax.random.fold_in(key, i), 2))


class ReplicaKeys(NamedTuple):
    real: jax.Array
    test: jax.Array
    loop: jax.Array
    replacement: jax.Array


def replica_keys(key: jax.Array) -> ReplicaKeys:
    return ReplicaKeys(*jax.random.split(key, 4))


def extra_prompts(key: jax.Array, spec: TransformerSpec, capacity: int) -> tuple[Prompts,
                                                                                jax.Array]:
    """A generation's extra prompts (inputs, contexts, real labels) and synthetic noise."""
    k_prompts, k_noise = jax.random.split(key)
    return (sample_prompts(k_prompts, spec, capacity),
            jax.random.normal(k_noise, (capacity,), jnp.float64))


def capacity(spec: TransformerSpec, lams) -> int:
    """Static size of the extra-prompt arrays: the largest ``m`` over ``lams`` (at least 1)."""
    return max(1, max(int(synthetic_count(spec, jnp.asarray(lam))) for lam in lams))


def loop_trajectory(key: jax.Array, spec: TransformerSpec, lams: jax.Array, generations: int,
                    extra_capacity: int, rules: LoopRules = SECTION1,
                    twin: jax.Array | bool = False, controls: bool = True) -> LoopOutput:
    """One replica of THEORY §1's loop at every ``lam`` in ``lams`` (common random numbers).

    ``G_0`` trains on the ``n`` real prompts of ``S0`` (shared by every ``lam``). Generation
    ``i >= 1`` trains a fresh network (keys ``generation_keys(key, i)``, the same at every
    ``lam``) on ``rules.real_count`` real prompts plus ``m = synthetic_count(lam)`` synthetic
    ones: fresh inputs and contexts from the input law, query label ``G_{i-1}(P) +
    N(0, sigma^2)`` (a sample of ``G_{i-1}``'s joint law; docs/transformer.md §2).
    ``extra_capacity`` (static) is at least every ``m``. ``twin`` (traced bool) replaces real
    prompt 0 by an independent prompt: the coupled-replacement experiment. ``controls``
    (static) trains the "all real" control (``LoopOutput.all_real``; ``None`` without).
    Generations are one ``lax.scan``; ``lam`` values one ``vmap``.
    """
    keys = replica_keys(key)
    n = spec.train_prompts
    real = sample_prompts(keys.real, spec, n)
    other = sample_prompts(keys.replacement, spec, 1)
    real = jax.tree.map(lambda a, b: a.at[0].set(jnp.where(twin, b[0], a[0])), real, other)
    test = sample_prompts(keys.test, spec, spec.test_prompts)
    bayes = bayes_prediction(test, spec.noise)
    g_star = spec.context / (spec.context + spec.dim + 1 + spec.noise ** 2)
    lsa = g_star * linear_readout(test)

    def train_on(keys_i, extra, real_count, extra_count, teacher, synthetic):
        # ``synthetic`` stays a Python bool: a set with real labels only never runs a teacher.
        data = TrainingSet(real, jnp.asarray(real_count, jnp.int32), extra[0], extra[1],
                           jnp.asarray(extra_count, jnp.int32), teacher, synthetic)
        params, info = fit(keys_i.fit, spec, data)
        return params, _measures(params, info, spec, test, bayes)

    keys0, keys1 = generation_keys(keys.loop, 0), generation_keys(keys.loop, 1)
    # Extra prompts of the same capacity as every later set (none is used: count 0), so
    # that G_0's training is the same traced program as the all-real control's.
    first, first_measures = train_on(keys0, extra_prompts(keys0.extra, spec, extra_capacity), n,
                                     0, init_params(keys0.fit, spec), False)
    all_real = None
    if controls:
        extra1 = extra_prompts(keys1.extra, spec, extra_capacity)
        _, all_real = jax.vmap(lambda lam: train_on(keys1, extra1, n, synthetic_count(spec, lam),
                                                    first, False))(lams)
    stacked = jax.tree.map(lambda a: jnp.broadcast_to(a, (lams.shape[0],) + a.shape), first)

    def generation(previous, i):
        keys_i = generation_keys(keys.loop, i)
        extra = extra_prompts(keys_i.extra, spec, extra_capacity)  # shared by every lam

        def one(lam, prev):
            return train_on(keys_i, extra, rules.real_count(spec, lam),
                            synthetic_count(spec, lam), rules.teacher(first, prev), True)

        return jax.vmap(one)(lams, previous)

    _, rest = jax.lax.scan(generation, stacked, jnp.arange(1, generations))
    loop = jax.tree.map(lambda a, b: jnp.concatenate([jnp.broadcast_to(a, (1,) + b.shape[1:]), b]),
                        first_measures, rest)
    per_gen = lambda a: jnp.broadcast_to(a, (generations,) + jnp.shape(a))  # noqa: E731
    return LoopOutput(loop, jax.tree.map(per_gen, all_real),
                      per_gen(jnp.mean((bayes - test.target) ** 2)),
                      per_gen(jnp.mean((lsa - test.target) ** 2)))


class Calibration(NamedTuple):
    """One-generation quantities from separate runs (leading axis: a length-1 generation).

    Attributes:
      first: ``Measures`` of a network trained on ``n`` real prompts (``eps(n)``).
      all_real: ``Measures`` of networks trained on ``N = n + m(lam)`` real prompts per
        ``lam`` (``eps(N)``).
    """

    first: Measures
    all_real: Measures


def calibration(key: jax.Array, spec: TransformerSpec, lams: jax.Array,
                extra_capacity: int) -> Calibration:
    """``eps(n)`` and ``eps(N)`` of one replica, keys independent of every loop's."""
    out = loop_trajectory(key, spec, lams, 1, extra_capacity)
    return Calibration(jax.tree.map(lambda a: a[:, 0], out.loop), out.all_real)


def _check_spec(spec):
    if not isinstance(spec, TransformerSpec):
        raise TypeError(f"spec must be a TransformerSpec from make_spec, got {type(spec).__name__}")


def _check(spec, lams, generations, replicas):
    _check_spec(spec)
    if not lams:
        raise ValueError("lams must hold at least one lam in [0, 1), got none")
    for lam in lams:
        validate.check_proportion("lam", lam, allow_one=False)
    validate.check_positive_int("generations", generations)
    validate.check_positive_int("replicas", replicas)


def _lams(lams):
    return tuple(float(v) for v in np.atleast_1d(lams).tolist())


def run_loops(key: jax.Array, spec: TransformerSpec, lams, generations: int, replicas: int,
              rules: LoopRules = SECTION1, *, batch_size: int | None = None,
              devices=None) -> LoopOutput:
    """``replicas`` loops at every ``lam`` (common random numbers), via ``sims.loop.run_replicas``.

    Replica ``r`` has key ``fold_in(key, r)`` and the same ``S0``, test prompts and keys at
    every ``lam``: per-replica differences between ``lam`` values are paired. ``lams`` are
    traced (one compilation per number of ``lam`` values).

    ``batch_size`` (replicas per device per chunk) defaults to all replicas in one chunk:
    ``run_replicas`` pads a chunk with replicas it computes and discards, and one training
    run costs about a second.

    Returns:
      ``LoopOutput`` with leading ``(replica, generation, lam)`` axes. Raises
      ``NonFiniteError`` (generation and replica) when a training run diverged.
    """
    lams = _lams(lams)
    _check(spec, lams, generations, replicas)
    size = capacity(spec, lams)
    return run_replicas(
        key, lambda k, t: loop_trajectory(k, spec, t, generations, size, rules),
        ("transformer-loop", spec, generations, size, rules), jnp.asarray(lams, jnp.float64),
        replicas=replicas, batch_size=_chunk(replicas, batch_size, devices), devices=devices,
        description="A4 transformer loops")


def _chunk(replicas, batch_size, devices):
    if batch_size is not None:
        return batch_size
    return -(-replicas // len(devices or jax.devices()))


def run_calibration(key: jax.Array, spec: TransformerSpec, lams, replicas: int, *,
                    batch_size: int | None = None, devices=None) -> Calibration:
    """``calibration`` for ``replicas`` independent replicas (leading ``(replica, 1, ...)``)."""
    lams = _lams(lams)
    _check(spec, lams, 1, replicas)
    size = capacity(spec, lams)
    return run_replicas(key, lambda k, t: calibration(k, spec, t, size),
                        ("transformer-calibration", spec, size), jnp.asarray(lams, jnp.float64),
                        replicas=replicas, batch_size=_chunk(replicas, batch_size, devices),
                        devices=devices, description="A4 calibration")


def run_loop(key: jax.Array, spec: TransformerSpec, lam: float, generations: int,
             replicas: int) -> LoopOutput:
    """``run_loops`` at one ``lam``: leading ``(replica, generation, 1)`` axes."""
    return run_loops(key, spec, (lam,), generations, replicas)


# --- the coupled-replacement experiment (R2, docs/transformer.md §5) ----------------------------

def twin_distance(f: jax.Array, g: jax.Array, noise: float) -> jax.Array:
    """Mean over probe prompts (last axis) of ``TV(N(f, sigma^2), N(g, sigma^2))``.

    Two Gaussians of equal variance: ``TV = 2 Phi(|f - g| / (2 sigma)) - 1 =
    erf(|f - g| / (2 sqrt(2) sigma))`` (THEORY §4), float64.
    """
    diff = jnp.abs(jnp.asarray(f, jnp.float64) - jnp.asarray(g, jnp.float64))
    return jnp.mean(jax.scipy.special.erf(diff / (2.0 * np.sqrt(2.0) * noise)), -1)


class Coupled(NamedTuple):
    """Twin distances of one replica (leading axes: generation, then ``m``).

    Attributes:
      loop: ``gamma_i``: the twins' ``G_i`` (``gamma_0``: their ``G_0``, fits on the ``n``
        real prompts of ``S0`` and ``S0'``).
      fit: the twins' one fit on ``n + m`` real prompts (``S0``/``S0'`` plus ``m`` shared
        real prompts), drawn beside every generation; ``None`` when run without controls.
    """

    loop: jax.Array
    fit: Any


def coupled_trajectory(key: jax.Array, spec: TransformerSpec, lams: jax.Array, generations: int,
                       extra_capacity: int, controls: bool) -> Coupled:
    """Two ``loop_trajectory`` twins on one key (``twin`` False and True: real prompt 0
    replaced, initialisation, minibatches, synthetic prompts and their noise shared), and
    their ``twin_distance`` on the test prompts at every generation and ``lam``."""
    twins = jax.vmap(lambda t: loop_trajectory(key, spec, lams, generations, extra_capacity,
                                               twin=t, controls=controls))(
        jnp.asarray([False, True]))
    apart = lambda m: twin_distance(m.prediction[0], m.prediction[1], spec.noise)  # noqa: E731
    return Coupled(apart(twins.loop), None if twins.all_real is None else apart(twins.all_real))


class Stability(NamedTuple):
    """One-fit replace-one constants in TV, from twin fits on i.i.d. real sets (per replica).

    Attributes:
      eps_n: twins trained on ``n`` real prompts differing in one.
      eps_N: per ``m``: twins trained on ``N = n + m`` real prompts differing in one.
    """

    eps_n: jax.Array
    eps_N: jax.Array


def coupled_lams(spec: TransformerSpec, ms) -> tuple[float, ...]:
    """``lam = n / (n + m)`` for every synthetic count ``m >= 1`` (``ValueError`` names ``m``).

    ``synthetic_count(spec, lam)`` gives ``m`` back exactly (tested)."""
    ms = tuple(np.atleast_1d(ms).tolist())
    if not ms:
        raise ValueError("ms must hold at least one synthetic count m >= 1, got none")
    for m in ms:
        validate.check_positive_int("m", m)
    return tuple(spec.train_prompts / (spec.train_prompts + m) for m in ms)


def _run_coupled(key, spec, ms, generations, pairs, controls, batch_size, devices, what):
    _check_spec(spec)
    validate.check_positive_int("pairs", pairs)
    lams = coupled_lams(spec, ms)
    _check(spec, lams, generations, pairs)
    size = capacity(spec, lams)
    return run_replicas(
        key, lambda k, t: coupled_trajectory(k, spec, t, generations, size, controls),
        ("transformer-coupled", spec, generations, size, controls),
        jnp.asarray(lams, jnp.float64), replicas=pairs,
        batch_size=_chunk(pairs, batch_size, devices), devices=devices, description=what)


def run_coupled(key: jax.Array, spec: TransformerSpec, ms, generations: int, pairs: int, *,
                batch_size: int | None = None, devices=None) -> jax.Array:
    """``gamma_i`` of ``pairs`` coupled loops at every synthetic count ``m`` in ``ms``.

    Loop ``m`` keeps the ``n`` real prompts and adds ``m`` synthetic prompts per generation
    (``lam = n/(n+m)``); the twins' real sets differ in prompt 0, every other draw is shared.

    Returns:
      float64 array ``(pairs, generations, len(ms))``. Raises ``NonFiniteError`` when a
      training run diverged, ``ValueError`` naming ``m``, ``generations`` or ``replicas``.
    """
    return _run_coupled(key, spec, ms, generations, pairs, False, batch_size, devices,
                        "A4 coupled loops").loop


def run_stability(key: jax.Array, spec: TransformerSpec, ms, pairs: int, *,
                  batch_size: int | None = None, devices=None) -> Stability:
    """``eps_n`` and ``eps_N`` (``N = n + m`` for ``m`` in ``ms``) of ``pairs`` twin fits on
    i.i.d. real sets differing in one prompt, same initialisation and minibatch keys.

    Use keys independent of the loops' (separate runs). Returns ``Stability`` with leading
    axis ``pairs``.
    """
    out = _run_coupled(key, spec, ms, 1, pairs, True, batch_size, devices, "A4 stability")
    return Stability(out.loop[:, 0, 0], out.fit[:, 0])
