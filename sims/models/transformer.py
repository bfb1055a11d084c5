"""A small softmax transformer that learns linear regression in context, in a self-consuming loop.

Three pieces, after von Oswald et al.'s ICL code (STYLE.md), in flax linen:

* ``ICLTransformer``: tokens ``(x, y, 0)`` for the context pairs and ``(x_q, 0, 1)`` for the
  query; pre-layer-norm blocks of softmax multi-head attention and a GELU MLP; the query
  token's output is the prediction of ``y_q``.
* ``sample_prompts(key, spec, count)``: prompts ``x, w ~ N(0, I_d)``, ``y = w.x + sigma xi``,
  a pure function of the key.
* ``train(key, spec, prompts, targets) -> (params, TrainInfo)``: Adam with warm-up cosine
  schedule, the optimizer steps in one ``lax.scan``; a NaN/Inf loss is carried out as a
  ``finite`` flag, never raised inside ``vmap``.

``loop_trajectory`` runs one replica of the self-consuming loop of claim A4 (a ``lax.scan``
over generations); ``run_loops`` / ``run_loop`` / ``run_coupled`` vmap it over ``lam``
values, replicas and the two twins of the coupled-replacement experiment, all one flat
batch under one ``jit``. ``run_loops`` uses common random numbers: replica ``r`` has the
same prompts and keys at every ``lam``, so differences between ``lam`` values are paired.

**Which labels the loop replaces.** Each replica draws one training set ``S0`` of
``train_prompts`` prompts, reused by every generation (the ``reuse`` scheme). Generation 0
trains on the real query targets. Generation ``i >= 1`` trains on the same prompts, but the
query targets of all prompts with index ``>= round(lam * train_prompts)`` are replaced by
``G_{i-1}``'s prediction plus fresh noise ``sigma xi`` (a sample of ``y | prompt`` under the
previous model with the real noise level); the first ``round(lam * train_prompts)`` keep their
real targets. Context labels are never replaced: they are the model's *input*, and at test
time the model is evaluated on real prompts, so keeping them real means the loop changes
what the network is trained to output, not the input distribution it sees (replacing them
would mix a covariate shift into the loop, a different experiment).

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

__all__ = ["TransformerSpec", "Prompts", "TrainInfo", "ICLTransformer", "make_spec",
           "sample_prompts", "replica_data", "ReplicaData", "tokens", "init_params", "predict",
           "train", "train_replicas", "linear_readout", "fit_gamma", "LoopOutput", "Coupled",
           "loop_trajectory", "run_loops", "run_loop", "run_coupled"]


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


def init_params(key: jax.Array, spec: TransformerSpec) -> Any:
    """Fresh parameters from a key."""
    dummy = jnp.zeros((1, spec.context + 1, spec.dim + 2), spec.dtype)
    return network(spec).init(key, dummy)


def predict(params: Any, spec: TransformerSpec, prompts: Prompts) -> jax.Array:
    """The network's prediction of every prompt's query label (float64)."""
    return network(spec).apply(params, tokens(prompts)).astype(jnp.float64)


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
    if not isinstance(spec, TransformerSpec):
        raise TypeError(f"spec must be a TransformerSpec from make_spec, got {type(spec).__name__}")
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


# --- the self-consuming loop ---------------------------------------------------------------

class LoopOutput(NamedTuple):
    """Per-generation measurements of one replica (leading axis: generation).

    Attributes:
      test_error: MSE on the replica's fresh real test prompts (targets with noise).
      gamma: effective ``gamma`` fitted on the probe prompts.
      linearity: ``R^2`` of that fit.
      probe_predictions: the network's predictions on the probe prompts.
      lsa_gamma: ``gamma`` of a one-parameter linear-attention model trained by least squares
        in the *same* loop (same prompts, same synthetic-label noise): the architecture
        counterpart.
      lsa_test_error: that model's test error.
      train_loss: final minibatch loss.
      finite: the training loss stayed finite.
    """

    test_error: jax.Array
    gamma: jax.Array
    linearity: jax.Array
    probe_predictions: jax.Array
    lsa_gamma: jax.Array
    lsa_test_error: jax.Array
    train_loss: jax.Array
    finite: jax.Array


class ReplicaData(NamedTuple):
    """A replica's fixed prompt sets."""

    train: Prompts
    test: Prompts
    probe: Prompts


def replica_data(key: jax.Array, spec: TransformerSpec) -> ReplicaData:
    k_train, k_test, k_probe = jax.random.split(key, 3)
    return ReplicaData(sample_prompts(k_train, spec, spec.train_prompts),
                       sample_prompts(k_test, spec, spec.test_prompts),
                       sample_prompts(k_probe, spec, spec.probe_prompts))


def loop_trajectory(key: jax.Array, spec: TransformerSpec, data: ReplicaData, lam: jax.Array,
                    generations: int) -> LoopOutput:
    """One replica of A4's loop: a ``lax.scan`` over generations ``0 .. generations-1``.

    Generation ``i`` trains a fresh network (key ``fold_in(key, i)``) on ``data.train`` whose
    query targets are real for the first ``round(lam * train_prompts)`` prompts and, from
    generation 1 on, ``G_{i-1}``'s prediction plus ``N(0, sigma^2)`` noise for the others
    (module docstring). ``lam`` is traced: one compilation serves every ``lam``.
    """
    train_set = data.train
    real = jnp.arange(spec.train_prompts) < jnp.round(lam * spec.train_prompts)
    s_train, s_test = linear_readout(train_set), linear_readout(data.test)

    def lsa_fit(targets):  # least-squares gamma of the one-parameter linear-attention model
        return jnp.sum(s_train * targets) / jnp.sum(s_train ** 2)

    # One forward pass over train + test + probe prompts: one instance of the network in
    # the compiled graph besides the training step (compile time dominates small runs).
    everything = jax.tree.map(lambda *a: jnp.concatenate(a), train_set, data.test, data.probe)
    cut_test, cut_probe = spec.train_prompts, spec.train_prompts + spec.test_prompts

    def generation(carry, i):
        targets, lsa_targets = carry
        k_fit, k_label = jax.random.split(jax.random.fold_in(key, i))
        params, info = train(k_fit, spec, train_set, targets)
        gamma_lsa = lsa_fit(lsa_targets)
        predictions = predict(params, spec, everything)
        probe = predictions[cut_probe:]
        gamma, r2 = fit_gamma(probe, data.probe)
        out = LoopOutput(jnp.mean((predictions[cut_test:cut_probe] - data.test.target) ** 2),
                         gamma, r2, probe, gamma_lsa,
                         jnp.mean((gamma_lsa * s_test - data.test.target) ** 2),
                         info.final_loss.astype(jnp.float64), info.finite)
        noise = spec.noise * jax.random.normal(k_label, targets.shape, jnp.float64)
        def relabel(synthetic):
            return jnp.where(real, train_set.target, synthetic + noise)
        return (relabel(predictions[:cut_test]), relabel(gamma_lsa * s_train)), out

    start = (train_set.target, train_set.target)
    _, out = jax.lax.scan(generation, start, jnp.arange(generations))
    return out


def _check(spec, lams, generations, replicas):
    if not isinstance(spec, TransformerSpec):
        raise TypeError(f"spec must be a TransformerSpec from make_spec, got {type(spec).__name__}")
    for lam in lams:
        validate.check_proportion("lam", lam)  # before jnp.asarray: a clear error, no trace
    validate.check_positive_int("generations", generations)
    validate.check_positive_int("replicas", replicas)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _replica_streams(key, spec, replicas):
    """Per replica: its loop key, its prompt sets, and an independent replacement prompt."""
    def one(k):
        k_data, k_loop, k_swap = jax.random.split(k, 3)
        return k_loop, replica_data(k_data, spec), sample_prompts(k_swap, spec, 1)
    return jax.vmap(one)(jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(replicas)))


@functools.partial(jax.jit, static_argnums=(1, 4))
def _loops(keys, spec, data, lams, generations):
    # One flat batch of loops, each with its own lam: lam values, replicas and coupled
    # twins all call the same function, so every run with the same number of loops (and
    # the same spec and generations) shares one compilation.
    return jax.vmap(loop_trajectory, (0, None, 0, 0, None))(keys, spec, data, lams, generations)


def _tile(tree, times):
    return jax.tree.map(lambda a: jnp.tile(a, (times,) + (1,) * (a.ndim - 1)), tree)


def run_loops(key: jax.Array, spec: TransformerSpec, lams, generations: int,
              replicas: int) -> LoopOutput:
    """``replicas`` loops at every ``lam`` in ``lams``, with common random numbers.

    Replica ``r`` (key ``fold_in(key, r)``) has the same training, test and probe prompts
    and the same initialisation, minibatch and label-noise keys at every ``lam``: only the
    real/synthetic split differs, so per-replica differences between ``lam`` values are
    paired. All ``len(lams) * replicas`` loops are one vmapped batch (one compilation).

    Returns:
      ``LoopOutput`` with leading ``(lam, replica, generation)`` axes. Check ``finite``: a
      diverged training run leaves NaNs in its loop's rows.
    """
    lams = tuple(np.atleast_1d(lams).tolist())
    if not lams:
        raise ValueError("lams must hold at least one lam in [0, 1], got none")
    _check(spec, lams, generations, replicas)
    keys, data, _ = _replica_streams(key, spec, replicas)
    count = len(lams)
    out = _loops(_tile(keys, count), spec, _tile(data, count),
                 jnp.repeat(jnp.asarray(lams, jnp.float64), replicas), generations)
    return jax.tree.map(lambda a: a.reshape((count, replicas) + a.shape[1:]), out)


def run_loop(key: jax.Array, spec: TransformerSpec, lam: float, generations: int,
             replicas: int) -> LoopOutput:
    """``run_loops`` at one ``lam``: ``LoopOutput`` with ``(replica, generation)`` axes."""
    return jax.tree.map(lambda a: a[0], run_loops(key, spec, (lam,), generations, replicas))


class Coupled(NamedTuple):
    """The coupled-replacement experiment's output (leading ``(replica, ...)`` axes).

    Attributes:
      loops: ``LoopOutput`` with ``(replica, twin, generation)`` axes.
      distance: mean over probe prompts of ``(f_i(P) - f'_i(P))^2``, the twins' networks.
      lsa_distance: the same for the one-parameter linear-attention models trained in the
        same coupled loops: ``(gamma_i - gamma'_i)^2 mean_P s(P)^2``.
    """

    loops: LoopOutput
    distance: jax.Array
    lsa_distance: jax.Array


def run_coupled(key: jax.Array, spec: TransformerSpec, lam: float, generations: int,
                replicas: int) -> Coupled:
    """The coupled-replacement experiment: per replica, two loops whose training sets differ
    in prompt 0 only and which share all other randomness (init, minibatch and label keys).

    Prompt 0 is real in every generation whenever ``round(lam * train_prompts) >= 1``; at
    ``lam = 0`` it differs only in generation 0's real targets (and in its inputs after).
    Twin 0 of replica ``r`` is exactly ``run_loop``'s replica ``r`` (tested).

    Returns:
      ``Coupled``.
    """
    _check(spec, (lam,), generations, replicas)
    keys, data, other = _replica_streams(key, spec, replicas)
    swapped = jax.tree.map(lambda a, b: a.at[:, 0].set(b[:, 0]), data.train, other)
    pair = lambda a, b: jnp.stack([a, b], 1).reshape((2 * replicas,) + a.shape[1:])  # noqa: E731
    twins = data._replace(train=jax.tree.map(pair, data.train, swapped))
    out = _loops(pair(keys, keys), spec, jax.tree.map(lambda a: pair(a, a), data)._replace(
        train=twins.train), jnp.full(2 * replicas, lam, jnp.float64), generations)
    out = jax.tree.map(lambda a: a.reshape((replicas, 2) + a.shape[1:]), out)
    power = jnp.mean(linear_readout(data.probe) ** 2, -1)  # (replica,)
    return Coupled(out, jnp.mean((out.probe_predictions[:, 0] - out.probe_predictions[:, 1]) ** 2,
                                 -1),
                   (out.lsa_gamma[:, 0] - out.lsa_gamma[:, 1]) ** 2 * power[:, None])
