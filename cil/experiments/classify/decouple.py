r"""Decoupled classifier learning (Kang et al., ICLR 2020): a second stage.

Stage 1 is the cell's training (any loss, any sampler). Stage 2 keeps its
representation f(x) (the input of the model's last `Dense` layer, W, b; of
a cosine head, `cil.models.NormedLinear`, the unit-norm input and the
unit-norm class weights, no bias) and changes only the classifier:

* `crt` (classifier re-training): W, b re-initialised (LeCun normal, zero
  bias) and trained with cross-entropy on the frozen features, each epoch
  drawn by the reference's class-aware sampler (C x n_max draws:
  `cil.data.samplers.class_aware_order`).
* `tau_norm` (tau-normalised classifier): no training;
  .. math:: \tilde w_j = w_j / \lVert w_j \rVert^\tau, \quad
            z_j = \tilde w_j \cdot f(x)
  with the bias dropped, as Kang et al.; tau = 0 is the plain classifier
  without its bias, tau = 1 normalises every class's weight vector.
* `lws` (learnable weight scaling): z_j = s_j (w_j \cdot f(x) + b_j), only
  the scales s (initialised to 1, so training starts from the stage-1
  model) trained like cRT.

Training uses the run's optimizer and learning rate (constant), batch size
and `decouple_epochs` epochs (Kang et al.: 10). Everything is a function of
the seed, so a cell killed in stage 2 repeats it exactly.

Reference: Kang, Xie, Rohrbach, Yan, Gordo, Feng and Kalantidis,
`Decoupling Representation and Classifier for Long-Tailed Recognition
<https://arxiv.org/abs/1910.09217>`_, ICLR 2020, Section 4.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from cil import loops
from cil import metrics
from cil.data import samplers
from cil.models import NormedLinear

METHODS = ('crt', 'tau_norm', 'lws')


def check_methods(methods: Sequence[str]) -> None:
  unknown = [m for m in methods if m not in METHODS]
  if unknown:
    raise ValueError(f'decouple methods must be among {", ".join(METHODS)}, '
                     f'got {unknown}.')


def _last_dense(model: nn.Module, variables: dict, images):
  """`(features, logits, head_path)`: the input of the last `Dense` (or
  `NormedLinear`, its input at unit norm) the model calls, its output
  logits, and that layer's parameter path."""
  seen = {}

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name == '__call__' and isinstance(
        context.module, (nn.Dense, NormedLinear)):
      seen['features'] = args[0]
      if isinstance(context.module, NormedLinear):
        seen['features'] = NormedLinear.unit_features(args[0])
      seen['path'] = context.module.scope.path
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    logits = model.apply(variables, images, train=False)
  if 'path' not in seen:
    raise ValueError(f'{type(model).__name__} calls no Dense layer; '
                     f'decoupling needs a linear classifier on top.')
  return seen['features'], logits, seen['path']


def head_path(model: nn.Module, variables: dict, sample) -> tuple:
  """The parameter path of the model's classifier (its last `Dense`)."""
  out = {}

  def trace(v, x):
    _, _, out['path'] = _last_dense(model, v, x)
    return 0
  jax.eval_shape(trace, variables, sample)
  return out['path']


@functools.partial(jax.jit, static_argnames=('model',))
def _features_batch(model, variables, images):
  features, logits, _ = _last_dense(model, variables, images)
  return features.reshape(features.shape[0], -1), logits


def features(model: nn.Module, variables: dict, images: Any,
             batch_size: int) -> tuple[np.ndarray, np.ndarray]:
  """`([n, D] features, [n, C] logits)` of one seed's model, in batches of
  `batch_size` (the last padded to keep one compiled shape). `images`:
  `[n, H, W, C]`, or an iterable of such arrays (a streamed split read
  chunk by chunk), their rows in order."""
  chunks = [images] if isinstance(images, np.ndarray) else images
  feats, logits = [], []
  for chunk in chunks:
    for batch, n in loops.padded_batches(chunk, batch_size):
      f, z = _features_batch(model, variables, batch)
      feats.append(np.asarray(f)[:n])
      logits.append(np.asarray(z)[:n])
  return np.concatenate(feats), np.concatenate(logits)


def get_head(params: dict, path: Sequence[str]) -> dict:
  """`{'kernel': [D, C], 'bias': [C] or None}` of the classifier at
  `path` (`head_path`): a cosine head's unit-norm class weights."""
  for name in path:
    params = params[name]
  if path and path[-1].startswith('NormedLinear'):
    return {'kernel': NormedLinear.unit_weights(params['kernel']),
            'bias': None}
  return {'kernel': params['kernel'], 'bias': params.get('bias')}


def classifier_logits(method: str, head: dict, feats, *, tau: float = 1.0):
  """`[n, C]` logits of a stage-2 classifier (module docstring).

  Args:
    method: 'crt' and 'plain' (z = f W + b), 'tau_norm' or 'lws'.
    head: {'kernel': [D, C], 'bias': [C] or None} and, for 'lws', 'scale'
      [C].
    feats: `[n, D]`.
    tau: tau-normalisation's exponent.
  """
  w, b = head['kernel'], head['bias']
  if method == 'tau_norm':
    norms = jnp.linalg.norm(w, axis=0)  # One per class (column).
    return feats @ (w / norms ** tau)
  z = feats @ w + (0.0 if b is None else b)
  if method == 'lws':
    return z * head['scale']
  if method in ('crt', 'plain'):
    return z
  raise ValueError(f'Unknown classifier method {method!r}.')


@functools.partial(jax.jit, static_argnames=('method', 'tx'))
def _train_epoch(trainable, frozen, opt_state, feats, labels, idx, mask, *,
                 method, tx):
  """One epoch of scanned steps; `idx`, `mask`: `[steps, B]`."""
  def loss_fn(trainable, i, m):
    z = classifier_logits(method, {**frozen, **trainable}, feats[i])
    ce = optax.softmax_cross_entropy_with_integer_labels(z, labels[i])
    return jnp.sum(jnp.where(m, ce, 0.0)) / jnp.maximum(jnp.sum(m), 1)

  def step(carry, xs):
    trainable, opt_state = carry
    loss, grads = jax.value_and_grad(loss_fn)(trainable, *xs)
    updates, opt_state = tx.update(grads, opt_state, trainable)
    return (optax.apply_updates(trainable, updates), opt_state), loss
  (trainable, opt_state), losses = jax.lax.scan(step, (trainable, opt_state),
                                                (idx, mask))
  return trainable, opt_state, losses


def steps_per_epoch(labels: np.ndarray, batch_size: int) -> int:
  """Optimizer steps of one stage-2 epoch: C x n_max class-aware draws
  (`class_aware_order`) in batches of `batch_size`."""
  counts = np.unique(np.asarray(labels), return_counts=True)[1]
  return -(-int(counts.max()) * counts.size // batch_size)


def fit(method: str, head: dict, feats: np.ndarray, labels: np.ndarray, *,
        tx: Any, epochs: int, batch_size: int,
        seed: int) -> tuple[dict, list]:
  """Stage 2 of one seed: the trained classifier and the epochs' mean
  losses ('tau_norm' trains nothing: `head` is returned as it is).

  Args:
    method: one of `METHODS`.
    head: the stage-1 classifier {'kernel', 'bias'}.
    feats: `[n, D]` frozen features of the seed's training set.
    labels: `[n]` their labels.
    tx: the optimizer, or a function of the steps per epoch
      (`steps_per_epoch`) that returns it (a schedule by epoch).
    epochs, batch_size: of class-aware sampling (`class_aware_order`).
    seed: the seed of the draws and of cRT's initialisation.
  """
  check_methods([method])
  if method == 'tau_norm':
    return head, []
  if not isinstance(tx, optax.GradientTransformation):
    tx = tx(steps_per_epoch(labels, batch_size))
  num_classes = head['kernel'].shape[1]
  if method == 'crt':
    key = jax.random.fold_in(jax.random.key(seed), 2)
    trainable = {'kernel': nn.initializers.lecun_normal()(
        key, head['kernel'].shape, jnp.float32),
                 'bias': jnp.zeros((num_classes,), jnp.float32)}
    frozen = {}
  else:  # lws
    trainable = {'scale': jnp.ones((num_classes,), jnp.float32)}
    frozen = head
  opt_state = tx.init(trainable)
  history = []
  positions = np.arange(labels.size)
  for epoch in range(epochs):
    order = samplers.class_aware_order(positions, labels, seed=seed,
                                       epoch=epoch)
    n = order.size
    steps = -(-n // batch_size)
    idx = np.zeros(steps * batch_size, np.int32)
    idx[:n] = order
    mask = np.arange(steps * batch_size) < n
    trainable, opt_state, losses = _train_epoch(
        trainable, frozen, opt_state, jnp.asarray(feats),
        jnp.asarray(labels, jnp.int32),
        jnp.asarray(idx.reshape(steps, batch_size)),
        jnp.asarray(mask.reshape(steps, batch_size)), method=method, tx=tx)
    history.append(float(np.mean(np.asarray(losses))))
  return {**frozen, **trainable}, history


def stage_two_fit(model: nn.Module, variables: dict, train_images: Any,
                  train_labels: np.ndarray, *, methods: Sequence[str],
                  tx: Any, epochs: int, batch_size: int, eval_batch_size: int,
                  tau: float, seed: int, validation: Any = None,
                  taus: Sequence[float] = (), sample: Any = None) -> dict:
  """Stage 2 of one seed's model without its test split: every method's
  trained head, its stage-2 losses and (for `tau_norm`) its tau,
  `{method: (head, losses, tau)}`.

  Images are arrays or iterables of arrays (`features`): the features are
  extracted once, then only they are held. With `validation`, `(features,
  labels)` of a held-out split (`features`' first output, so a streamed
  split read once serves every seed), tau-norm's tau is the one of `taus`
  with the largest balanced accuracy there (the first of equals);
  otherwise `tau`. `sample`: one image `[1, H, W, C]` (default the first
  of `train_images`, an array).
  """
  path = head_path(model, variables,
                   train_images[:1] if sample is None else sample)
  head = get_head(variables['params'], path)
  train_feats, _ = features(model, variables, train_images, eval_batch_size)
  val_feats = None if validation is None else validation[0]
  out = {}
  for method in methods:
    trained, losses = fit(method, head, train_feats, train_labels, tx=tx,
                          epochs=epochs, batch_size=batch_size, seed=seed)
    chosen = tau
    if method == 'tau_norm' and val_feats is not None:
      chosen = choose_tau(
          lambda t, h=trained: np.asarray(classifier_logits(
              method, h, jnp.asarray(val_feats), tau=t)),
          validation[1], taus)
    out[method] = (trained, losses, chosen)
  return out


def stage_two_logits(model: nn.Module, variables: dict, fitted: dict,
                     test_feats: np.ndarray, test_logits: np.ndarray, *,
                     sample: Any) -> dict:
  """Every fitted method's `[n_test, C]` test logits, `{method: logits}`
  (`stage_two_fit`'s heads and taus), from the test split's `features`
  (`[n, D]` features and the model's `[n, C]` logits, which the plain
  classifier must give back). `sample`: one image `[1, H, W, C]`."""
  path = head_path(model, variables, sample)
  plain = np.asarray(classifier_logits(
      'plain', get_head(variables['params'], path), test_feats))
  if not np.allclose(plain, test_logits, rtol=1e-3, atol=1e-3):
    raise ValueError(
        f'{type(model).__name__}: its last Dense layer {"/".join(path)} is '
        f'not its output layer (f W + b differs from the logits by '
        f'{np.abs(plain - test_logits).max():.3g}); decoupling needs a '
        f'model that ends in a linear classifier.')
  return {method: np.asarray(classifier_logits(
      method, head, jnp.asarray(test_feats), tau=tau))
          for method, (head, _, tau) in fitted.items()}


def choose_tau(logits_of: Any, labels: np.ndarray,
               taus: Sequence[float]) -> float:
  """The tau of `taus` whose `logits_of(tau)` has the largest balanced
  accuracy (`cil.metrics`: mean recall over the classes present in
  `labels`) on `labels`; the first of equals."""
  best, best_tau = -1.0, None
  for tau in taus:
    logits = logits_of(tau)
    recall = metrics.classification_metrics(metrics.confusion_matrix(
        labels, np.argmax(logits, -1), logits.shape[-1]))['balanced_accuracy']
    if recall > best:
      best, best_tau = recall, float(tau)
  return best_tau
