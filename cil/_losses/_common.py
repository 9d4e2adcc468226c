"""Helpers shared by the loss families: input checks, dtypes, the
optax-shaped wrapper, the true-class log-probability and masking.

Private: import the public names from `cil.losses`.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from cil import _validation as v

HALF_PI = math.pi / 2


# Helpers.


def host_sequence_to_array(x):
  """Lets class counts be given as a Python list or tuple (e.g. [256, 1])."""
  if isinstance(x, (list, tuple)):
    import numpy as np  # pylint: disable=g-import-not-at-top
    return np.asarray(x)
  return x


def _compute_dtype(x) -> jnp.dtype:
  """At least float32; float64 stays float64."""
  dtype = jnp.result_type(x)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.result_type(float)
  return jnp.promote_types(dtype, jnp.float32)


def counts_as_float(class_counts, dtype=None) -> jax.Array:
  counts = jnp.asarray(class_counts)
  return counts.astype(dtype or _compute_dtype(counts))


def check_classification_inputs(logits, labels, where, class_counts=None):
  """Static checks always; value checks when concrete. Returns (B, C)."""
  v.check_logits(logits)
  batch_size, num_classes = jnp.shape(logits)
  check_argument_order(batch_size, num_classes, labels, class_counts)
  v.check_where(where, batch_size)
  v.check_labels(labels, num_classes, batch_size, where)
  if class_counts is not None:
    v.check_class_counts(class_counts, num_classes)
  return batch_size, num_classes


_ORDER = ('The order is `loss(logits, labels, class_counts)` (PyTorch\'s '
          'long-tail losses take the counts in their constructor instead).')


def check_argument_order(batch_size: int, num_classes: int, labels,
                         class_counts=None) -> None:
  """Named errors for the common slips: class counts where the labels go,
  labels where the counts go, logits with the class axis first.

  Told apart by shapes, and by values where they are concrete (counts are
  positive and need not be below the number of classes; labels are class
  indices); where neither tells, nothing is raised here and the plain
  shape errors follow.
  """
  if batch_size == num_classes:
    return  # Shapes cannot tell the slips apart.

  def host(x):
    return np.asarray(jax.device_get(x)) if v.is_concrete(x) else None

  def labels_like(x, bound):  # Integer class indices in [0, bound).
    values = host(x)
    return (values is not None and values.size > 0
            and bool(np.all(values == np.round(values)))
            and bool(np.all((values >= 0) & (values < bound))))

  def counts_like(x):  # Positive, and not all class indices.
    values = host(x)
    return (values is not None and bool(np.all(values > 0))
            and (jnp.issubdtype(values.dtype, jnp.floating)
                 or bool(np.any(values >= batch_size))))

  labels_shape = tuple(jnp.shape(labels))
  counts_shape = (None if class_counts is None
                  else tuple(jnp.shape(class_counts)))
  transposed = (f'`logits` {(batch_size, num_classes)} look like '
                f'`[num_classes, batch]`: pass `[batch, num_classes]` '
                f'logits (or `axis=0`).')
  if labels_shape == (num_classes,) and counts_shape == (batch_size,):
    if (labels_like(labels, batch_size) and counts_like(class_counts)
        and not labels_like(class_counts, num_classes)):
      raise ValueError(f'`labels` has shape {labels_shape} and '
                       f'`class_counts` {counts_shape}: {transposed}')
    raise ValueError(
        f'`labels` has shape {labels_shape} (the number of classes) and '
        f'`class_counts` {counts_shape} (the batch size): they look '
        f'swapped. {_ORDER} Or {transposed}')
  if labels_shape == (num_classes,) and (
      is_soft(labels) or counts_like(labels)):
    raise ValueError(
        f'`labels` has shape {labels_shape}, the number of classes, not the '
        f'batch size {batch_size}, and holds counts, not class indices: '
        f'class counts where the labels go? {_ORDER}')
  if (counts_shape == (batch_size,) and labels_shape == (batch_size,)
      and labels_like(class_counts, num_classes)):
    raise ValueError(
        f'`class_counts` has shape {counts_shape}, the batch size, not the '
        f'number of classes {num_classes}, and holds class indices: labels '
        f'where the counts go? {_ORDER}')


def is_soft(labels) -> bool:
  """Soft (probability) labels are floating `[batch, C]`; hard ones integer."""
  return jnp.issubdtype(jnp.result_type(labels), jnp.floating)


def prepare_inputs(logits, labels, where):
  """Casts logits to the compute dtype; gives masked rows a valid label."""
  logits = jnp.asarray(logits)
  logits = logits.astype(_compute_dtype(logits))
  labels = jnp.asarray(labels)
  if is_soft(labels):
    labels = labels.astype(logits.dtype)
    if where is not None:
      labels = jnp.where(jnp.asarray(where)[:, None], labels, 0.0)
    return logits, labels
  if where is not None:
    labels = jnp.where(where, labels, 0)
  # Out-of-range labels can only reach here when traced (eager calls raise);
  # clip them so the result stays finite (see the module docstring).
  labels = jnp.clip(labels, 0, logits.shape[1] - 1)
  return logits, labels


def true_class_log_prob(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """log p of the true class: `[batch]`; `[batch, C]` for soft labels.

  Hard labels: z_t - logsumexp(z). Gathering z_t and subtracting the
  log-normaliser avoids materialising the `[batch, num_classes]`
  log-softmax (and its backward pass), which is faster than
  `take(log_softmax(z))` (docs/performance.md). Soft labels: every class's
  log p (the loss is then the label-weighted sum, `finish_loss`).
  """
  if is_soft(labels):
    return jax.nn.log_softmax(logits, axis=-1)
  true_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  return true_logit - jax.nn.logsumexp(logits, axis=-1)


def take_class(values: jax.Array, labels: jax.Array) -> jax.Array:
  """A per-class `[C]` quantity at the true class: `[batch]` (or `[1, C]`)."""
  if is_soft(labels):
    return values[None, :]
  return values[labels]


def finish_loss(loss: jax.Array, labels: jax.Array, where) -> jax.Array:
  """Per-class losses `[batch, C]` -> label-weighted sum (soft); masks."""
  if is_soft(labels):
    loss = jnp.sum(labels * loss, axis=-1)
  return _mask(loss, where)


def one_minus_prob(log_p: jax.Array) -> jax.Array:
  """1 - p from log p, accurate for p near 1, never negative."""
  return jnp.maximum(-jnp.expm1(log_p), 0.0)


def neg_log(log_p: jax.Array, log_base) -> jax.Array:
  """-log_base(p) from the natural log."""
  return -log_p / jnp.log(jnp.asarray(log_base, log_p.dtype))


def safe_pow(x: jax.Array, exponent) -> jax.Array:
  """x ** exponent for x >= 0 with finite gradients at x = 0 (0 ** 0 = 1)."""
  positive = x > 0
  x_safe = jnp.where(positive, x, 1.0)
  at_zero = jnp.where(exponent == 0, 1.0, 0.0).astype(x.dtype)
  return jnp.where(positive, jnp.exp(exponent * jnp.log(x_safe)), at_zero)


def ci_modulation(one_minus_p: jax.Array) -> jax.Array:
  """(1 - sin(pi p / 2)) cos(pi p / 2), written in q = 1 - p.

  With a = pi p / 2: 1 - sin(a) = 1 - cos(pi q / 2) = 2 sin^2(pi q / 4) and
  cos(a) = sin(pi q / 2). The q form keeps full relative precision as p -> 1,
  where the direct form cancels.
  """
  q = one_minus_p
  return 2.0 * jnp.sin(q * (math.pi / 4)) ** 2 * jnp.sin(q * HALF_PI)


def optax_shaped(*, returns_classes: bool = False):
  """Gives a `[batch, C]` loss optax's shapes: `[..., C]` with `axis`.

  The wrapped function takes logits with any leading axes and the class axis
  at `axis`, labels `[...]` (integer) or `[..., C]` (soft, class axis at
  `axis` too), `where` broadcastable to `[...]`; it flattens them, calls the
  `[batch, C]` function, and returns `[...]` (or, with `returns_classes`,
  the shape of `logits`). Rank-2 inputs with the class axis last pass
  straight through.
  """

  def decorate(fn):

    @functools.wraps(fn)
    def wrapped(logits, labels, *args, axis: int = -1, where=None,
                **kwargs):
      logits = host_sequence_to_array(logits)
      labels = host_sequence_to_array(labels)
      shape = tuple(jnp.shape(logits))
      ndim = len(shape)
      if ndim == 0:
        raise ValueError('`logits` must have a class axis; got a scalar.')
      if not isinstance(axis, int) or not -ndim <= axis < ndim:
        raise ValueError(f'`axis` must index an axis of `logits` (shape '
                         f'{shape}), got {axis!r}.')
      axis %= ndim
      if ndim == 2 and axis == 1:
        return fn(logits, labels, *args, where=where, **kwargs)
      soft = is_soft(labels)
      expected = shape if soft else shape[:axis] + shape[axis + 1:]
      if tuple(jnp.shape(labels)) != expected:
        kind = ('soft labels need the shape of `logits`' if soft else
                'integer labels need the shape of `logits` without its class '
                'axis')
        raise ValueError(f'`labels` has shape {tuple(jnp.shape(labels))} but '
                         f'{kind}: {expected} (logits {shape}, axis {axis}).')
      num_classes = shape[axis]
      logits = jnp.moveaxis(logits, axis, -1)
      if soft:
        labels = jnp.moveaxis(labels, axis, -1)
      lead = logits.shape[:-1]
      if where is not None:
        where = host_sequence_to_array(where)
        try:
          where = jnp.broadcast_to(where, lead)
        except ValueError:
          raise ValueError(f'`where` (shape {tuple(jnp.shape(where))}) must '
                           f'broadcast to the batch shape {lead}.') from None
        where = where.reshape(-1)
      n = math.prod(lead)
      out = fn(logits.reshape(n, num_classes),
               labels.reshape((n, num_classes) if soft else (n,)), *args,
               where=where, **kwargs)
      if returns_classes:
        return jnp.moveaxis(out.reshape(lead + (num_classes,)), -1, axis)
      return out.reshape(lead)

    return wrapped

  return decorate


def _mask(loss: jax.Array, where) -> jax.Array:
  if where is None:
    return loss
  return jnp.where(where, loss, 0.0)


def check_gamma(gamma) -> None:
  if v.is_concrete(gamma) and not float(gamma) >= 0:
    raise ValueError(f'`gamma` must be >= 0, got {gamma}.')
