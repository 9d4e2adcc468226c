"""Imbalance measures, the Class Imbalance (CI) loss and its peer losses.

Pure JAX functions, usable from any JAX project. Conventions (as optax):

* `logits` is a floating `[..., num_classes]` array (the class axis is
  `axis`, default -1), `labels` an integer `[...]` array of class indices or
  a floating `[..., num_classes]` array of probabilities (soft labels: the
  loss is the label-weighted sum of the per-class losses), `class_counts` a
  `[num_classes]` array of positive numbers (sample counts of the training
  set, of a few-shot task's support set, or any positive weights such as
  effective numbers). The functions below document the `[batch, C]` case;
  any leading axes are flattened and restored.
* Hyperparameters are keyword-only. Nothing is reduced inside a loss: each
  returns the per-example loss with shape `[...]`; the caller reduces.
  `where` (boolean, broadcastable to `[...]`) masks examples: a masked
  example has loss 0 and gets zero gradient, and its label is not checked
  (padding may use -1).
* An eager call checks its inputs and then runs one jitted program (its
  cost is a few dispatches, below optax's eager cross-entropy); inside a
  caller's `jit` that program is inlined.
* The paper (Zhang et al. 2020) uses base-10 logarithms throughout, so
  `log_base=10.0` is the default of every loss here. `log_base=math.e` gives
  the natural-log scaling of optax and of the peers' original papers; the two
  differ by the constant factor ln(10).
* Everything works under `jit`, `vmap`, `grad` and `pmap`, with `class_counts`
  a traced array: the lambda branch of the CI factor is chosen with
  `jnp.where`.
* Computation is in at least float32 (bfloat16/float16 logits are promoted).
  Losses are computed from `log_softmax`, and 1 - p as `-expm1(log p)`, so
  losses and gradients stay finite for logits up to +-1e4 in float32.

Input checking. Shapes, ranks and dtypes are checked in every call, eager or
traced, and raise `ValueError` (under `jit`, at trace time). Values (labels in
`[0, C)`, positive and finite class counts, hyperparameter ranges) can only be
checked on concrete arrays: they raise `ValueError` in eager calls (and for
concrete arrays closed over by a jitted function), computed on the arrays'
device with one scalar fetched explicitly, so they work under
`jax.transfer_guard('disallow')`; traced values are not checked. Under
`jit`, a label outside `[0, C)` is clipped to the nearest valid class and
a non-positive count gives an infinite factor, so validate data where it
enters (the data pipeline and launchers of `cil` do;
any eager call of a loss does too). Traced value checks are deliberately not
emitted as `checkify` checks: the effect costs every jitted step JAX's fast
dispatch path (measured 16 us -> 313 us per call on CPU). For debugging,
`checked(get_loss(name))` opts in to them (same messages, inside `jit`).

Reference:
  Zhang et al., "A Class Imbalance Loss for Imbalanced Object Recognition",
  IEEE J. Sel. Topics Appl. Earth Observ. Remote Sens. 13 (2020) 2778-2792,
  https://doi.org/10.1109/JSTARS.2020.2995703.
"""

import functools
import inspect
import math
from typing import Any, Callable, Optional, Protocol

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from cil import _validation as v

__all__ = [
    'LOSS_NAMES',
    'LossFn',
    'ci_class_factors',
    'ci_grad_p',
    'ci_loss',
    'ci_loss_grad_logits',
    'canonical_spec',
    'class_balanced_loss',
    'cross_entropy',
    'checked',
    'cross_entropy_grad_p',
    'focal_grad_p',
    'focal_loss',
    'get_loss',
    'imbalance_degree',
    'imbalance_ratio',
    'ldam_loss',
    'logit_adjusted_loss',
    'split_spec',
    'weighted_cross_entropy',
]

_HALF_PI = math.pi / 2

# lambda <= threshold is tested with this relative tolerance, so that cases
# that are exactly on the boundary in exact arithmetic (e.g. counts [100, 1],
# lambda = 1) take the paper's `lambda <= 1` branch whatever the rounding.
_LAMBDA_RTOL = 1e-5


# --------------------------------------------------------------------------
# Helpers.


def _host_sequence_to_array(x):
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


def _counts_as_float(class_counts, dtype=None) -> jax.Array:
  counts = jnp.asarray(class_counts)
  return counts.astype(dtype or _compute_dtype(counts))


def _check_classification_inputs(logits, labels, where, class_counts=None):
  """Static checks always; value checks when concrete. Returns (B, C)."""
  v.check_logits(logits)
  batch_size, num_classes = jnp.shape(logits)
  v.check_where(where, batch_size)
  v.check_labels(labels, num_classes, batch_size, where)
  if class_counts is not None:
    v.check_class_counts(class_counts, num_classes)
  return batch_size, num_classes


def _is_soft(labels) -> bool:
  """Soft (probability) labels are floating `[batch, C]`; hard ones integer."""
  return jnp.issubdtype(jnp.result_type(labels), jnp.floating)


def _prepare(logits, labels, where):
  """Casts logits to the compute dtype; gives masked rows a valid label."""
  logits = jnp.asarray(logits)
  logits = logits.astype(_compute_dtype(logits))
  labels = jnp.asarray(labels)
  if _is_soft(labels):
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


def _true_class_log_prob(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """log p of the true class: `[batch]`; `[batch, C]` for soft labels.

  Hard labels: z_t - logsumexp(z). Gathering z_t and subtracting the
  log-normaliser avoids materialising the `[batch, num_classes]`
  log-softmax (and its backward pass): 2.5x faster than
  `take(log_softmax(z))` at [1024, 1000] on CPU. Soft labels: every class's
  log p (the loss is then the label-weighted sum, `_finish`).
  """
  if _is_soft(labels):
    return jax.nn.log_softmax(logits, axis=-1)
  true_logit = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
  return true_logit - jax.nn.logsumexp(logits, axis=-1)


def _take(values: jax.Array, labels: jax.Array) -> jax.Array:
  """A per-class `[C]` quantity at the true class: `[batch]` (or `[1, C]`)."""
  if _is_soft(labels):
    return values[None, :]
  return values[labels]


def _finish(loss: jax.Array, labels: jax.Array, where) -> jax.Array:
  """Per-class losses `[batch, C]` -> label-weighted sum (soft); masks."""
  if _is_soft(labels):
    loss = jnp.sum(labels * loss, axis=-1)
  return _mask(loss, where)


def _one_minus_p(log_p: jax.Array) -> jax.Array:
  """1 - p from log p, accurate for p near 1, never negative."""
  return jnp.maximum(-jnp.expm1(log_p), 0.0)


def _neg_log(log_p: jax.Array, log_base) -> jax.Array:
  """-log_base(p) from the natural log."""
  return -log_p / jnp.log(jnp.asarray(log_base, log_p.dtype))


def _safe_pow(x: jax.Array, exponent) -> jax.Array:
  """x ** exponent for x >= 0 with finite gradients at x = 0 (0 ** 0 = 1)."""
  positive = x > 0
  x_safe = jnp.where(positive, x, 1.0)
  at_zero = jnp.where(exponent == 0, 1.0, 0.0).astype(x.dtype)
  return jnp.where(positive, jnp.exp(exponent * jnp.log(x_safe)), at_zero)


def _ci_modulation(one_minus_p: jax.Array) -> jax.Array:
  """(1 - sin(pi p / 2)) cos(pi p / 2), written in q = 1 - p.

  With a = pi p / 2: 1 - sin(a) = 1 - cos(pi q / 2) = 2 sin^2(pi q / 4) and
  cos(a) = sin(pi q / 2). The q form keeps full relative precision as p -> 1,
  where the direct form cancels.
  """
  q = one_minus_p
  return 2.0 * jnp.sin(q * (math.pi / 4)) ** 2 * jnp.sin(q * _HALF_PI)


def _optax_shaped(*, returns_classes: bool = False):
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
      logits = _host_sequence_to_array(logits)
      labels = _host_sequence_to_array(labels)
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
      soft = _is_soft(labels)
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
        where = _host_sequence_to_array(where)
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


def _check_gamma(gamma) -> None:
  if v.is_concrete(gamma) and not float(gamma) >= 0:
    raise ValueError(f'`gamma` must be >= 0, got {gamma}.')


# --------------------------------------------------------------------------
# Imbalance measures (Section III-A).


def imbalance_ratio(class_counts: ArrayLike) -> jax.Array:
  r"""Imbalance ratio rho, eq. (1): the largest class count over the smallest.

  .. math::
    \rho = \max_i N_i / \min_i N_i

  Args:
    class_counts: `[num_classes]` positive class counts.

  Returns:
    A scalar >= 1 (1 exactly when balanced).

  Examples:
    >>> round(float(imbalance_ratio([1, 2, 3, 4, 5])), 4)
    5.0

  References:
    Zhang et al., `A Class Imbalance Loss for Imbalanced Object Recognition
    <https://doi.org/10.1109/JSTARS.2020.2995703>`_, 2020.
  """
  class_counts = _host_sequence_to_array(class_counts)
  v.check_class_counts(class_counts)
  counts = _counts_as_float(class_counts)
  return jnp.max(counts) / jnp.min(counts)


def imbalance_degree(class_counts: ArrayLike) -> jax.Array:
  r"""Imbalance degree (ID) lambda, eq. (2), with base-10 logarithms.

  .. math::
    \lambda = -\frac{1}{C} \sum_{i=1}^{C} \log_{10} \frac{N_i}{N_{\max}}

  lambda >= 0, and 0 exactly when the classes are balanced. It chooses the
  exponent of the CI class factor (`ci_class_factors`).

  Args:
    class_counts: `[num_classes]` positive class counts.

  Returns:
    A scalar lambda >= 0.

  Examples:
    >>> round(float(imbalance_degree([1, 2, 3, 4, 5])), 4)
    0.2831
    >>> round(float(imbalance_degree([256, 1])), 4)
    1.2041

  References:
    Zhang et al., `A Class Imbalance Loss for Imbalanced Object Recognition
    <https://doi.org/10.1109/JSTARS.2020.2995703>`_, 2020.
  """
  class_counts = _host_sequence_to_array(class_counts)
  v.check_class_counts(class_counts)
  counts = _counts_as_float(class_counts)
  return -jnp.mean(jnp.log10(counts / jnp.max(counts)))


def ci_class_factors(
    class_counts: ArrayLike,
    *,
    threshold: float = 1.0,
    low_exponent: float = 0.5,
    high_exponent: float = 0.125,
    transition_width: float = 0.0,
) -> jax.Array:
  r"""The CI loss's per-class factor f(lambda, N_i, N_max), eq. (5).

  .. math::
    f_i = (N_{\max} / N_i)^{e(\lambda)}, \qquad
    e(\lambda) = \begin{cases}
      1/2 & \lambda \le 1 \\
      1/8 & \text{otherwise}
    \end{cases}

  The majority class gets f = 1; rarer classes get larger factors, damped
  (exponent 1/8) when the imbalance degree is large, so that a huge factor
  does not destabilise training. The branch is chosen with `jnp.where`, so
  `class_counts` may be traced (e.g. a few-shot task's support counts).
  `lambda <= threshold` is tested with a relative tolerance of 1e-5, so exact
  boundary cases such as `[100, 1]` (lambda = 1) take the first branch.

  The defaults are the paper's rule. The other values make its ablations:
  `high_exponent=0.5` is "always 1/2", `low_exponent=0.125` "always 1/8",
  and `transition_width=w > 0` replaces the jump at the threshold by a
  linear ramp of the exponent from `low_exponent` at `threshold - w/2` to
  `high_exponent` at `threshold + w/2`, so that f is continuous in the
  counts (the paper's rule jumps: at rho = 100 the minority factor falls
  from 10 to 1.78 as lambda crosses 1).

  Args:
    class_counts: `[num_classes]` positive class counts.
    threshold: the lambda at which the exponent switches (paper: 1).
    low_exponent: exponent when lambda <= threshold (paper: 1/2).
    high_exponent: exponent when lambda > threshold (paper: 1/8).
    transition_width: width in lambda of the ramp between the two exponents;
      0 (the paper) is a step.

  Returns:
    `[num_classes]` factors, all >= 1.

  Examples:
    >>> ci_class_factors([256, 1]).tolist()
    [1.0, 2.0]
    >>> ci_class_factors([4, 1]).tolist()
    [1.0, 2.0]
    >>> [round(x, 4) for x in ci_class_factors(
    ...     [100, 1], transition_width=1.0).tolist()]
    [1.0, 4.217]

  References:
    Zhang et al., `A Class Imbalance Loss for Imbalanced Object Recognition
    <https://doi.org/10.1109/JSTARS.2020.2995703>`_, 2020.
  """
  class_counts = _host_sequence_to_array(class_counts)
  v.check_class_counts(class_counts)
  factor_hparams = _factor_hparams(threshold, low_exponent, high_exponent,
                                   transition_width)
  counts = _counts_as_float(class_counts)
  log_max, exponent = _ci_log_max_and_exponent(counts, **factor_hparams)
  return jnp.exp(exponent * (log_max - jnp.log(counts)))


def _factor_hparams(threshold, low_exponent, high_exponent,
                    transition_width) -> dict:
  """Eq. (5)'s hyperparameters as keyword arguments, checked."""
  hparams = dict(threshold=threshold, low_exponent=low_exponent,
                 high_exponent=high_exponent,
                 transition_width=transition_width)
  _check_factor_hparams(**hparams)
  return hparams


def _check_factor_hparams(*, threshold, low_exponent, high_exponent,
                          transition_width) -> None:
  """Eager checks of eq. (5)'s hyperparameters (concrete values only)."""
  for name, value in (('threshold', threshold), ('low_exponent', low_exponent),
                      ('high_exponent', high_exponent),
                      ('transition_width', transition_width)):
    if not v.is_concrete(value):
      continue
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
      raise ValueError(f'`{name}` must be finite and >= 0, got {value}.')


def _ci_log_max_and_exponent(counts, *, threshold=1.0, low_exponent=0.5,
                             high_exponent=0.125, transition_width=0.0):
  """ln N_max and the exponent of eq. (5), chosen by lambda with jnp.where.

  A positive `transition_width` w ramps the exponent linearly from
  `low_exponent` at lambda = threshold - w/2 to `high_exponent` at
  threshold + w/2; w = 0 is the paper's step.
  """
  dtype = counts.dtype
  log_max = jnp.log(jnp.max(counts))
  lam = (log_max - jnp.mean(jnp.log(counts))) / math.log(10)  # eq. (2)
  low = jnp.asarray(low_exponent, dtype)
  high = jnp.asarray(high_exponent, dtype)
  threshold = jnp.asarray(threshold, dtype)
  width = jnp.asarray(transition_width, dtype)
  step = jnp.where(lam <= threshold * (1 + _LAMBDA_RTOL) + _LAMBDA_RTOL,
                   low, high)
  t = jnp.clip((lam - threshold) / jnp.where(width > 0, width, 1) + 0.5,
               0, 1)
  exponent = jnp.where(width > 0, low + (high - low) * t, step)
  return log_max, exponent.astype(dtype)


# --------------------------------------------------------------------------
# CE, focal and CI losses (eq. 3, 6, 4).


@_optax_shaped()
def cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
) -> jax.Array:
  r"""Softmax cross-entropy with integer labels, eq. (3).

  .. math::
    L_{CE} = -\log_{b} p_t, \qquad p = \mathrm{softmax}(z)

  With `log_base=math.e` this equals
  `optax.softmax_cross_entropy_with_integer_labels`.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices in `[0, num_classes)`, or soft
      labels: `[..., num_classes]` probabilities (floating).
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (paper: 10).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  Examples:
    >>> logits = jnp.array([[2.0, 0.0, 0.0]])
    >>> round(float(cross_entropy(logits, jnp.array([0]))[0]), 4)
    0.104
  """
  _check_classification_inputs(logits, labels, where)
  v.check_log_base(log_base)
  return _cross_entropy_core(logits, labels, where, log_base)


@jax.jit
def _cross_entropy_core(logits, labels, where, log_base):
  """`cross_entropy` past its checks, jitted."""
  logits, labels = _prepare(logits, labels, where)
  log_p = _true_class_log_prob(logits, labels)
  return _finish(_neg_log(log_p, log_base), labels, where)


def _focal_from_log_p(log_p, gamma, log_base):
  return _safe_pow(_one_minus_p(log_p), gamma) * _neg_log(log_p, log_base)


@_optax_shaped()
def focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: Optional[ArrayLike] = None,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
) -> jax.Array:
  r"""Softmax focal loss, eq. (6).

  .. math::
    L_{FL} = -\alpha_t (1 - p_t)^{\gamma} \log_{b} p_t

  `gamma=0` and no `alpha` is `cross_entropy`. The gradient is finite for all
  `gamma >= 0`, including `gamma < 1` at p -> 1.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices in `[0, num_classes)`, or soft
      labels: `[..., num_classes]` probabilities (floating).
    gamma: focusing parameter >= 0.
    alpha: optional `[num_classes]` per-class weights (Lin et al.'s alpha
      balancing, generalised to C classes); None means 1.
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (paper: 10).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  Examples:
    >>> logits = jnp.array([[2.0, 0.0, 0.0]])
    >>> round(float(focal_loss(logits, jnp.array([0]), gamma=2.0)[0]), 5)
    0.00472

  References:
    Lin, Goyal, Girshick, He and Dollar, `Focal Loss for Dense Object
    Detection <https://arxiv.org/abs/1708.02002>`_, ICCV 2017.
  """
  _, num_classes = _check_classification_inputs(logits, labels, where)
  v.check_log_base(log_base)
  _check_gamma(gamma)
  if alpha is not None:
    v.check_rank(alpha, 1, 'alpha')
    if jnp.shape(alpha)[0] != num_classes:
      raise ValueError(
          f'`alpha` has length {jnp.shape(alpha)[0]} but `logits` has '
          f'{num_classes} classes; they must match.')
    v.check_non_negative_finite(alpha, 'alpha')
  return _focal_loss_core(logits, labels, where, gamma, alpha, log_base)


@jax.jit
def _focal_loss_core(logits, labels, where, gamma, alpha, log_base):
  """`focal_loss` past its checks, jitted."""
  logits, labels = _prepare(logits, labels, where)
  log_p = _true_class_log_prob(logits, labels)
  loss = _focal_from_log_p(log_p, gamma, log_base)
  if alpha is not None:
    loss = _take(jnp.asarray(alpha, loss.dtype), labels) * loss
  return _finish(loss, labels, where)


@_optax_shaped()
def ci_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
    threshold: float = 1.0,
    low_exponent: float = 0.5,
    high_exponent: float = 0.125,
    transition_width: float = 0.0,
) -> jax.Array:
  r"""Class Imbalance (CI) loss, eq. (4).

  .. math::
    L_{CI} = -\left(1 - \sin\tfrac{\pi}{2} p_t\right)
             \cos\left(\tfrac{\pi}{2} p_t\right)
             f(\lambda, N_t, N_{\max}) \log_{b} p_t

  where f is `ci_class_factors(class_counts)` (eq. 5) and lambda is
  `imbalance_degree(class_counts)`. The sin/cos modulation is <= 1 and 0 at
  p = 1, so for the majority class (f = 1) CI lies below CE; the factor f
  lifts the loss of rarer classes.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices in `[0, num_classes)`, or soft
      labels: `[..., num_classes]` probabilities (floating).
    class_counts: `[num_classes]` positive counts: the training set's class
      counts, or a few-shot task's support counts (may be traced).
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (paper: 10).
    threshold, low_exponent, high_exponent, transition_width: the class
      factor's rule, eq. (5) (`ci_class_factors`; the defaults are the
      paper's).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  Examples:
    >>> logits = jnp.array([[0.0, 0.0], [0.0, 0.0]])
    >>> loss = ci_loss(logits, jnp.array([0, 1]), jnp.array([256, 1]))
    >>> [round(x, 4) for x in loss.tolist()]
    [0.0623, 0.1247]

  References:
    Zhang et al., `A Class Imbalance Loss for Imbalanced Object Recognition
    <https://doi.org/10.1109/JSTARS.2020.2995703>`_, 2020.
  """
  class_counts = _host_sequence_to_array(class_counts)
  _check_classification_inputs(logits, labels, where, class_counts)
  v.check_log_base(log_base)
  factor_hparams = _factor_hparams(threshold, low_exponent, high_exponent,
                                   transition_width)
  return _ci_loss_core(logits, labels, where, class_counts, log_base,
                       factor_hparams)


@jax.jit
def _ci_loss_core(logits, labels, where, class_counts, log_base,
                  factor_hparams):
  """`ci_loss` past its checks, jitted."""
  logits, labels = _prepare(logits, labels, where)
  factor = _ci_true_class_factor(
      _counts_as_float(class_counts, logits.dtype), labels, factor_hparams)
  log_p = _true_class_log_prob(logits, labels)
  loss = (_ci_modulation(_one_minus_p(log_p)) * factor
          * _neg_log(log_p, log_base))
  return _finish(loss, labels, where)


def _ci_true_class_factor(counts: jax.Array, labels: jax.Array,
                          factor_hparams: dict) -> jax.Array:
  """`ci_class_factors(counts)[labels]` without the `[C]` power: `[batch]`.

  Two reductions over the classes (max, mean log) and the rest per example,
  which XLA fuses into the loss; same values as `ci_class_factors`.
  """
  log_max, exponent = _ci_log_max_and_exponent(counts, **factor_hparams)
  return jnp.exp(exponent * (log_max - jnp.log(_take(counts, labels))))


# --------------------------------------------------------------------------
# Closed-form derivatives with respect to p (eq. 13-15, as corrected).


def _check_probabilities(p, name='p', allow_one=True):
  v.check_floating(p, name)
  if v.is_concrete(p):
    import numpy as np  # pylint: disable=g-import-not-at-top
    values = np.asarray(p)
    upper_ok = values <= 1 if allow_one else values < 1
    if not np.all((values > 0) & upper_ok):
      raise ValueError(
          f'`{name}` must lie in (0, 1{"]" if allow_one else ")"}, got values '
          f'in [{values.min()}, {values.max()}].')


def cross_entropy_grad_p(p: ArrayLike, *, log_base: float = 10.0) -> jax.Array:
  r"""dL_CE/dp, eq. (13), elementwise for p in (0, 1].

  .. math::
    \frac{\partial L_{CE}}{\partial p} = -\frac{1}{p \ln b}

  Args:
    p: probabilities of the true class, any shape.
    log_base: base b of the loss's logarithm (paper: 10).

  Returns:
    The derivative, same shape as `p`.
  """
  _check_probabilities(p)
  v.check_log_base(log_base)
  p = jnp.asarray(p)
  return -1.0 / (p * jnp.log(jnp.asarray(log_base, p.dtype)))


def focal_grad_p(p: ArrayLike, *, gamma: float,
                 log_base: float = 10.0) -> jax.Array:
  r"""dL_FL/dp, eq. (14), elementwise for p in (0, 1) (p = 1 too if gamma >= 1).

  .. math::
    \frac{\partial L_{FL}}{\partial p} = -\frac{(1-p)^{\gamma-1}}{\ln b}
      \left(\frac{1-p}{p} - \gamma \ln p\right)

  Args:
    p: probabilities of the true class, any shape.
    gamma: focusing parameter >= 0.
    log_base: base b of the loss's logarithm (paper: 10).

  Returns:
    The derivative, same shape as `p`.
  """
  _check_gamma(gamma)
  _check_probabilities(
      p, allow_one=not v.is_concrete(gamma) or float(gamma) >= 1)
  v.check_log_base(log_base)
  p = jnp.asarray(p)
  ln_b = jnp.log(jnp.asarray(log_base, p.dtype))
  return (-(1 - p) ** (gamma - 1) / ln_b
          * ((1 - p) / p - gamma * jnp.log(p)))


def ci_grad_p(p: ArrayLike, factor: ArrayLike, *,
              log_base: float = 10.0) -> jax.Array:
  r"""dL_CI/dp, eq. (15) as corrected in PAPER.md, elementwise for p in (0, 1].

  With a = pi p / 2:

  .. math::
    \frac{\partial L_{CI}}{\partial p} = -\frac{f}{\ln b}\left(
      \frac{\cos(a)(1 - \sin a)}{p}
      - \frac{\pi}{2} \ln p \, (\cos(\pi p) + \sin a)\right)

  The extracted text of the paper lost the factor -pi/2 and the parentheses
  around (cos(pi p) + sin a); this is the derivative of eq. (4).

  Args:
    p: probabilities of the true class, any shape.
    factor: f of the true class (`ci_class_factors(counts)[label]`),
      broadcastable against `p`.
    log_base: base b of the loss's logarithm (paper: 10).

  Returns:
    The derivative, shape of `p` broadcast with `factor`.
  """
  _check_probabilities(p)
  v.check_log_base(log_base)
  p = jnp.asarray(p)
  a = _HALF_PI * p
  ln_b = jnp.log(jnp.asarray(log_base, p.dtype))
  return (-jnp.asarray(factor, p.dtype) / ln_b
          * (jnp.cos(a) * (1 - jnp.sin(a)) / p
             - _HALF_PI * jnp.log(p) * (jnp.cos(math.pi * p) + jnp.sin(a))))


@_optax_shaped(returns_classes=True)
def ci_loss_grad_logits(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
    threshold: float = 1.0,
    low_exponent: float = 0.5,
    high_exponent: float = 0.125,
    transition_width: float = 0.0,
) -> jax.Array:
  r"""Closed-form gradient of `ci_loss` with respect to the logits.

  By the chain rule through the softmax,

  .. math::
    \frac{\partial L_{CI}}{\partial z_k} =
      \frac{\partial L_{CI}}{\partial p_t} \, p_t (\delta_{tk} - p_k),

  with dL/dp from eq. (15). The product (dL/dp) p is formed analytically so
  that the 1/p of eq. (15) never appears: finite as p -> 0.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices, or `[..., num_classes]`
      probabilities (soft labels).
    class_counts: `[num_classes]` positive counts.
    where: optional boolean mask broadcastable to `[...]`; masked rows are 0.
    log_base: base b of the loss's logarithm (paper: 10).
    threshold, low_exponent, high_exponent, transition_width: eq. (5)'s
      rule, as `ci_loss`.
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    The shape of `logits`: the gradient of `ci_loss(...)` summed over the
    batch, i.e. of each example's loss with respect to its own logits.
  """
  class_counts = _host_sequence_to_array(class_counts)
  _, num_classes = _check_classification_inputs(
      logits, labels, where, class_counts)
  v.check_log_base(log_base)
  factor_hparams = _factor_hparams(threshold, low_exponent, high_exponent,
                                   transition_width)
  return _ci_loss_grad_logits_core(logits, labels, where, class_counts,
                                   log_base, factor_hparams)


@jax.jit
def _ci_loss_grad_logits_core(logits, labels, where, class_counts, log_base,
                              factor_hparams):
  """`ci_loss_grad_logits` past its checks, jitted."""
  num_classes = jnp.shape(logits)[1]
  logits, labels = _prepare(logits, labels, where)
  counts = _counts_as_float(class_counts, logits.dtype)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  probs = jnp.exp(log_probs)
  # y: the label distribution (one-hot for integer labels). With g_c the
  # (dL/dp) p of class c from eq. (15), dL/dz_k = y_k g_k - p_k sum_c y_c g_c.
  y = (labels if _is_soft(labels)
       else jax.nn.one_hot(labels, num_classes, dtype=logits.dtype))
  log_max, exponent = _ci_log_max_and_exponent(counts, **factor_hparams)
  factor = jnp.exp(exponent * (log_max - jnp.log(counts)))[None, :]
  a = _HALF_PI * probs
  ln_b = jnp.log(jnp.asarray(log_base, logits.dtype))
  # (dL/dp) * p, eq. (15) multiplied through by p.
  dl_dp_times_p = -factor / ln_b * (
      _ci_modulation(_one_minus_p(log_probs))
      - _HALF_PI * probs * log_probs * (jnp.cos(math.pi * probs)
                                        + jnp.sin(a)))
  weighted = y * dl_dp_times_p
  grad = weighted - probs * jnp.sum(weighted, axis=-1, keepdims=True)
  if where is not None:
    grad = jnp.where(jnp.asarray(where)[:, None], grad, 0.0)
  return grad


# --------------------------------------------------------------------------
# Peers: the imbalance-aware losses a researcher compares CI against.


@_optax_shaped()
def class_balanced_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    beta: float = 0.9999,
    gamma: float = 0.0,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
) -> jax.Array:
  r"""Class-balanced loss (Cui et al. 2019): re-weighting by effective numbers.

  .. math::
    w_i = \frac{1 - \beta}{1 - \beta^{N_i}}, \quad
    \tilde w_i = C \, w_i / \textstyle\sum_j w_j, \quad
    L_{CB} = -\tilde w_t (1 - p_t)^{\gamma} \log_b p_t

  `gamma=0` (default) is class-balanced softmax cross-entropy; `gamma > 0`
  class-balanced softmax focal loss. `beta=0` gives CE (all weights 1); as
  beta -> 1 the weights approach inverse frequency.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices, or `[..., num_classes]`
      probabilities (soft labels).
    class_counts: `[num_classes]` positive counts.
    beta: in [0, 1); the paper's choices are 0.9, 0.99, 0.999, 0.9999.
    gamma: optional focal focusing parameter >= 0.
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (default 10 as the rest of `cil`).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    Cui, Jia, Lin, Song and Belongie, `Class-Balanced Loss Based on Effective
    Number of Samples <https://arxiv.org/abs/1901.05555>`_, CVPR 2019.
  """
  class_counts = _host_sequence_to_array(class_counts)
  _, num_classes = _check_classification_inputs(
      logits, labels, where, class_counts)
  v.check_log_base(log_base)
  _check_gamma(gamma)
  if v.is_concrete(beta) and not 0 <= float(beta) < 1:
    raise ValueError(f'`beta` must be in [0, 1), got {beta}.')
  return _class_balanced_loss_core(logits, labels, where, class_counts, beta,
                                   gamma, log_base)


@jax.jit
def _class_balanced_loss_core(logits, labels, where, class_counts, beta, gamma,
                              log_base):
  """`class_balanced_loss` past its checks, jitted."""
  num_classes = jnp.shape(logits)[1]
  logits, labels = _prepare(logits, labels, where)
  counts = _counts_as_float(class_counts, logits.dtype)
  beta = jnp.asarray(beta, logits.dtype)
  # 1 - beta^N, accurate for beta near 1 (beta = 0 gives 1).
  effective_num = -jnp.expm1(counts * jnp.log(beta))
  weights = (1 - beta) / effective_num
  weights = weights * num_classes / jnp.sum(weights)
  log_p = _true_class_log_prob(logits, labels)
  loss = _take(weights, labels) * _focal_from_log_p(log_p, gamma, log_base)
  return _finish(loss, labels, where)


@_optax_shaped()
def ldam_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    max_margin: float = 0.5,
    scale: float = 30.0,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
) -> jax.Array:
  r"""Label-distribution-aware margin (LDAM) loss (Cao et al. 2019).

  .. math::
    \Delta_i \propto N_i^{-1/4}, \ \max_i \Delta_i = \text{max\_margin}, \quad
    L = -\log_b \mathrm{softmax}(s \, (z - \Delta_t e_t))_t

  The true-class logit is reduced by a margin that is larger for rarer
  classes. Cao et al.'s `scale` s = 30 assumes cosine-similarity logits in
  [-1, 1] (a normalised last layer); with an ordinary linear head use a scale
  near 1. The deferred re-weighting (DRW) schedule of the paper is a training
  schedule, not part of the loss: combine with `weighted_cross_entropy`-style
  weights in the training loop if wanted.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices, or `[..., num_classes]`
      probabilities (soft labels).
    class_counts: `[num_classes]` positive counts.
    max_margin: the margin of the rarest class (paper: 0.5).
    scale: s, multiplies the margin-adjusted logits (paper: 30).
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (default 10 as the rest of `cil`).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    Cao, Wei, Gaidon, Arechiga and Ma, `Learning Imbalanced Datasets with
    Label-Distribution-Aware Margin Loss <https://arxiv.org/abs/1906.07413>`_,
    NeurIPS 2019.
  """
  class_counts = _host_sequence_to_array(class_counts)
  _, num_classes = _check_classification_inputs(
      logits, labels, where, class_counts)
  v.check_log_base(log_base)
  v.check_positive_scalar(scale, 'scale')
  if v.is_concrete(max_margin) and not float(max_margin) >= 0:
    raise ValueError(f'`max_margin` must be >= 0, got {max_margin}.')
  return _ldam_loss_core(logits, labels, where, class_counts, max_margin, scale,
                         log_base)


@jax.jit
def _ldam_loss_core(logits, labels, where, class_counts, max_margin, scale,
                    log_base):
  """`ldam_loss` past its checks, jitted."""
  num_classes = jnp.shape(logits)[1]
  logits, labels = _prepare(logits, labels, where)
  counts = _counts_as_float(class_counts, logits.dtype)
  margins = counts ** -0.25
  margins = margins * (max_margin / jnp.max(margins))
  if num_classes == 1:  # softmax is 1 whatever the margin: the loss is 0.
    return _finish(jnp.zeros_like(logits[:, 0]), labels, where)
  # log softmax(s (z - m_t e_t))_t from the unadjusted log p_t of s z:
  #   log p'_t = log p_t - s m_t - log(1 - p_t + p_t exp(-s m_t)),
  # the last term as logaddexp(log(1 - p_t), log p_t - s m_t). No logit is
  # shifted, so nothing cancels at large |z| (the shifted form went
  # negative under jit at +-1e4 and non-finite at 1e30). log(1 - p_c) must
  # be accurate when p_c is near 1 (the margin multiplies it by exp(s m)):
  # for the largest logit it is the log-sum-exp of the others, for the rest
  # (p_c <= 1/2) -expm1(log p_c) is accurate.
  # Shift before scaling: the largest scaled logit is then exactly 0 however
  # XLA fuses the product (recomputed products 1 ulp apart made jitted
  # log-sum-exps -inf at logits ~1e30).
  # (No stop_gradient: log p below is then exactly a function of z - z_top,
  # so its derivatives are right although the top term is written as 1.)
  shifted = logits - jnp.max(logits, -1, keepdims=True)
  scaled = scale * shifted
  is_top = jax.nn.one_hot(jnp.argmax(scaled, axis=-1), num_classes,
                          dtype=bool)
  # With the top scaled logit at 0, the normaliser is 1 + rest: log1p keeps
  # full precision for log p of a confident top class.
  rest = jnp.sum(jnp.where(is_top, 0.0, jnp.exp(scaled)), axis=-1,
                 keepdims=True)
  log1p_rest = jnp.log1p(rest)
  log_probs = scaled - log1p_rest
  has_rest = rest > 0
  log_rest_of_top = jnp.where(
      has_rest, jnp.log(jnp.where(has_rest, rest, 1.0)), -jnp.inf) - log1p_rest
  safe = jnp.where(is_top, math.log(0.5), log_probs)  # No log(0) below.
  log_q_all = jnp.where(is_top, log_rest_of_top,
                        jnp.log(-jnp.expm1(safe)))
  if _is_soft(labels):
    log_p, log_q = log_probs, log_q_all
  else:
    log_p = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    log_q = jnp.take_along_axis(log_q_all, labels[:, None], axis=-1)[:, 0]
  shift = scale * _take(margins, labels)
  # log(1 - p + p e^-shift) = log1p(x), x = p expm1(-shift) in (-1, 0]:
  # log1p is accurate (and exactly 0 without a margin) unless x nears -1,
  # where the logaddexp of the accurate log(1 - p) takes over.
  x = jnp.exp(log_p) * jnp.expm1(-shift)
  log_norm = jnp.where(x > -0.5, jnp.log1p(jnp.maximum(x, -0.5)),
                       jnp.logaddexp(log_q, log_p - shift))
  log_p_margin = log_p - shift - log_norm
  loss = jnp.maximum(_neg_log(jnp.minimum(log_p_margin, 0.0), log_base), 0.0)
  return _finish(loss, labels, where)


@_optax_shaped()
def logit_adjusted_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    tau: float = 1.0,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
) -> jax.Array:
  r"""Logit-adjusted softmax cross-entropy (Menon et al. 2021).

  .. math::
    \pi_i = N_i / \textstyle\sum_j N_j, \quad
    L = -\log_b \mathrm{softmax}(z + \tau \log \pi)_t

  `tau=1` is the balanced softmax of Ren et al. (2020). Predict with the
  unadjusted logits: the adjustment is only in the loss.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices, or `[..., num_classes]`
      probabilities (soft labels).
    class_counts: `[num_classes]` positive counts (only their proportions
      matter).
    tau: temperature of the adjustment (paper: 1).
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (default 10 as the rest of `cil`).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    Menon, Jayasumana, Rawat, Jain, Veit and Kumar, `Long-tail learning via
    logit adjustment <https://arxiv.org/abs/2007.07314>`_, ICLR 2021.
    Ren et al., `Balanced Meta-Softmax for Long-Tailed
    Visual Recognition <https://arxiv.org/abs/2007.10740>`_, NeurIPS 2020.
  """
  class_counts = _host_sequence_to_array(class_counts)
  _check_classification_inputs(logits, labels, where, class_counts)
  v.check_log_base(log_base)
  v.check_finite_scalar(tau, 'tau')
  return _logit_adjusted_loss_core(logits, labels, where, class_counts, tau,
                                   log_base)


@jax.jit
def _logit_adjusted_loss_core(logits, labels, where, class_counts, tau,
                              log_base):
  """`logit_adjusted_loss` past its checks, jitted."""
  logits, labels = _prepare(logits, labels, where)
  counts = _counts_as_float(class_counts, logits.dtype)
  log_prior = jnp.log(counts) - jnp.log(jnp.sum(counts))
  log_p = _true_class_log_prob(logits + tau * log_prior, labels)
  return _finish(_neg_log(log_p, log_base), labels, where)


@_optax_shaped()
def weighted_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    where: Optional[ArrayLike] = None,
    log_base: float = 10.0,
) -> jax.Array:
  r"""Inverse-frequency weighted (cost-sensitive) cross-entropy.

  .. math::
    w_i = \frac{\sum_j N_j}{C \, N_i}, \quad L = -w_t \log_b p_t

  The weights are scikit-learn's `class_weight='balanced'`: each class
  contributes equally in total, and the count-weighted mean weight is 1.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices, or `[..., num_classes]`
      probabilities (soft labels).
    class_counts: `[num_classes]` positive counts.
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (default 10 as the rest of `cil`).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    King and Zeng, Logistic Regression in Rare Events Data, Political
    Analysis 9(2), 2001 (the inverse-frequency weighting scikit-learn
    adopts as `class_weight='balanced'`).
  """
  class_counts = _host_sequence_to_array(class_counts)
  _, num_classes = _check_classification_inputs(
      logits, labels, where, class_counts)
  v.check_log_base(log_base)
  return _weighted_cross_entropy_core(logits, labels, where, class_counts,
                                      log_base)


@jax.jit
def _weighted_cross_entropy_core(logits, labels, where, class_counts, log_base):
  """`weighted_cross_entropy` past its checks, jitted."""
  num_classes = jnp.shape(logits)[1]
  logits, labels = _prepare(logits, labels, where)
  counts = _counts_as_float(class_counts, logits.dtype)
  weights = jnp.sum(counts) / (num_classes * counts)
  log_p = _true_class_log_prob(logits, labels)
  return _finish(_take(weights, labels) * _neg_log(log_p, log_base), labels,
                 where)


# --------------------------------------------------------------------------
# Registry: one call shape for launchers (`--loss=NAME`).


class LossFn(Protocol):
  """`(logits [B, C], labels [B], class_counts [C], **hparams) -> [B]`."""

  def __call__(self, logits: ArrayLike, labels: ArrayLike,
               class_counts: ArrayLike, **hparams) -> jax.Array:
    ...


def _ignoring_counts(fn: Callable[..., jax.Array]) -> LossFn:
  """Adapts a loss that does not use class counts to the uniform shape.

  The counts are still checked (length must match the logits), so a wrong
  dataset wiring fails the same way for every loss.
  """

  @functools.wraps(fn)
  def wrapped(logits, labels, class_counts=None, **hparams):
    class_counts = _host_sequence_to_array(class_counts)
    shape = jnp.shape(_host_sequence_to_array(logits))
    axis = hparams.get('axis', -1)
    if (class_counts is not None and shape and isinstance(axis, int)
        and -len(shape) <= axis < len(shape)):
      v.check_floating(logits, 'logits')
      v.check_class_counts(class_counts, shape[axis])
    return fn(logits, labels, **hparams)

  return wrapped


_REGISTRY: dict[str, LossFn] = {
    'ce': _ignoring_counts(cross_entropy),
    'focal': _ignoring_counts(focal_loss),
    'ci': ci_loss,
    'cb': class_balanced_loss,
    'ldam': ldam_loss,
    'la': logit_adjusted_loss,
    'wce': weighted_cross_entropy,
}

_ALIASES = {'fl': 'focal', 'balanced_softmax': 'la'}

LOSS_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def checked(loss_fn: Callable[..., jax.Array]) -> Callable[..., tuple]:
  """An opt-in checked registry loss: value checks that work inside `jit`.

  Value checks (labels in range, soft labels a distribution, positive
  finite counts) cannot raise on traced values, so under `jit` a bad label
  is clipped and a bad count gives inf (see the module docstring). For
  debugging, `checked(fn)` adds them as `jax.experimental.checkify` checks,
  with the messages of the eager errors; the default losses stay unchanged
  (no effect, no cost). The result returns `(error, loss)`; call
  `error.throw()` outside `jit`:

      step_loss = jax.jit(losses.checked(losses.get_loss('ci')))
      err, loss = step_loss(logits, labels, counts)
      err.throw()   # checkify.JaxRuntimeError: `labels` must be in [0, C) ...

  Args:
    loss_fn: a registry loss (`get_loss(name)`), called as
      `fn(logits, labels, class_counts, **hparams)`.

  Returns:
    `checkify.checkify` of the loss with the checks added.
  """
  from jax.experimental import checkify  # pylint: disable=g-import-not-at-top

  def fn(logits, labels, class_counts=None, **hparams):
    axis = hparams.get('axis', -1)
    where = hparams.get('where')
    num_classes = jnp.shape(logits)[axis]
    labels_ = jnp.asarray(labels)
    if _is_soft(labels_):
      ok = jnp.all((labels_ >= 0) & jnp.isfinite(labels_), axis=axis)
      message = ('Soft `labels` must be finite and non-negative (a '
                 'distribution over the classes per example).')
    else:
      ok = (labels_ >= 0) & (labels_ < num_classes)
      message = (f'`labels` must be in [0, {num_classes}) (num_classes = the '
                 f'size of the class axis of `logits`).')
    if where is not None:
      ok = ok | ~jnp.broadcast_to(jnp.asarray(where), ok.shape)
    checkify.check(jnp.all(ok), message)
    if class_counts is not None:
      counts = jnp.asarray(_host_sequence_to_array(class_counts))
      checkify.check(jnp.all(jnp.isfinite(counts) & (counts > 0)),
                     '`class_counts` must be positive and finite: every class '
                     'needs at least one example.')
    return loss_fn(logits, labels, class_counts, **hparams)

  return checkify.checkify(fn, errors=checkify.user_checks)


def get_loss(name: str) -> LossFn:
  """Returns the loss called `name`, with the uniform registry call shape.

  Every returned function is called as
  `fn(logits, labels, class_counts, **hparams) -> [batch]`, where `hparams`
  are the keyword arguments of the underlying loss (`where`, `log_base`,
  `gamma`, `beta`, `tau`, ...). `ce` and `focal` accept and check
  `class_counts` but do not use them.

  Args:
    name: one of `LOSS_NAMES` = ce, focal, ci, cb, ldam, la, wce (aliases: fl
      for focal, balanced_softmax for la), case-insensitive; or a loss spec
      `name:key=value,...` (`split_spec`), whose values are bound as
      keyword defaults (a keyword given in the call overrides them).

  Returns:
    The loss function.

  Examples:
    >>> loss_fn = get_loss('ci')
    >>> loss_fn(jnp.zeros((1, 2)), jnp.array([1]), jnp.array([256, 1])).shape
    (1,)
    >>> always_half = get_loss('ci:high_exponent=0.5')
  """
  base, overrides = split_spec(name)
  fn = _REGISTRY[base]
  if not overrides:
    return fn
  return functools.partial(fn, **overrides)


def split_spec(spec: str) -> tuple[str, dict]:
  """Parses a loss spec `name[:key=value,...]` into (canonical name, values).

  A spec names a registry loss with some of its scalar hyperparameters
  fixed, so that variants of one loss can run side by side (the eq. (5)
  ablation: `ci:high_exponent=0.5`, `ci:transition_width=1`). Values are
  numbers; keys must be hyperparameters the loss takes.

  Examples:
    >>> split_spec('FL:gamma=0.5')
    ('focal', {'gamma': 0.5})
    >>> split_spec('ci')
    ('ci', {})
  """
  name, colon, arg_text = str(spec).strip().partition(':')
  base = canonical_name(name)
  if colon and not arg_text.strip():
    raise ValueError(f'Loss spec {spec!r} has a colon but no key=value '
                     f'arguments.')
  known = default_hparams(base)
  overrides = v.spec_arguments(arg_text, spec, 'Loss spec')
  for key in overrides:
    if key not in known:
      raise ValueError(f'Loss spec {spec!r}: {base!r} takes no '
                       f'hyperparameter {key!r}; it takes '
                       f'{", ".join(known) or "none"}.')
  return base, overrides


def canonical_spec(spec: str) -> str:
  """A loss spec with its name canonical and its arguments sorted.

  Examples:
    >>> canonical_spec('CI: transition_width=1, threshold=0.9')
    'ci:threshold=0.9,transition_width=1.0'
    >>> canonical_spec('fl')
    'focal'
  """
  base, overrides = split_spec(spec)
  if not overrides:
    return base
  return base + ':' + ','.join(f'{k}={overrides[k]!r}'
                               for k in sorted(overrides))


def canonical_name(name: str) -> str:
  """The registry name of `name` (aliases resolved, case-insensitive).

  Examples:
    >>> canonical_name('FL')
    'focal'
  """
  key = str(name).strip().lower()
  key = _ALIASES.get(key, key)
  if key not in _REGISTRY:
    raise ValueError(
        f'Unknown loss {name!r}; choose one of {", ".join(LOSS_NAMES)} '
        f'(aliases: {", ".join(_ALIASES)}).')
  return key


def _keyword_defaults(name: str) -> dict:
  fn = _REGISTRY[canonical_name(name)]
  fn = getattr(fn, '__wrapped__', fn)
  return {p.name: p.default for p in inspect.signature(fn).parameters.values()
          if p.kind == p.KEYWORD_ONLY and p.name != 'where'}


def default_hparams(name: str) -> dict:
  """The scalar keyword hyperparameters of a registry loss, at defaults.

  Read from the loss's signature (so they are stated once). Array-valued
  ones that default to None (focal's per-class `alpha`) are left out.

  Examples:
    >>> default_hparams('fl')
    {'gamma': 2.0, 'log_base': 10.0}
  """
  return {k: v for k, v in _keyword_defaults(name).items()
          if isinstance(v, (bool, int, float, str))}


def freeze_hparams(table: Any) -> tuple:
  """`{loss: {name: value}}` -> sorted nested tuples (hashable, static).

  Keys are made canonical (`fl` -> `focal`).
  """
  if isinstance(table, tuple):
    return table
  out = {}
  for name, hparams in dict(table or {}).items():
    out[canonical_name(name)] = tuple(sorted(dict(hparams).items()))
  return tuple(sorted(out.items()))


def resolve_hparams(name: str, table: Any = None) -> dict:
  """The hyperparameters of loss `name` from a table keyed by loss name.

  Aliases are resolved first, so `resolve_hparams('fl', {'focal':
  {'gamma': 0.5}})` is `{'gamma': 0.5}`; keys the loss does not take are an
  error naming them. A spec's values (`split_spec`) override the table's:
  `resolve_hparams('ci:high_exponent=0.5', table)` is the table's `ci`
  entry with `high_exponent` 0.5.

  Args:
    name: a registry name or alias, or a loss spec.
    table: loss name (canonical) -> keyword arguments (a mapping, or the
      tuples of `freeze_hparams`); None for none.

  Returns:
    The keyword arguments for `get_loss(name)`.
  """
  key, overrides = split_spec(name)
  if isinstance(table, tuple):  # As `freeze_hparams` makes it.
    table = {k: dict(v) for k, v in table}
  table = dict(table or {})
  for k in table:
    if k != canonical_name(k):
      raise ValueError(f'Loss hyperparameters must be keyed by canonical '
                       f'name: use {canonical_name(k)!r}, not {k!r}.')
  hparams = dict(table.get(key) or {})
  known = _keyword_defaults(key)
  unknown = sorted(set(hparams) - set(known))
  if unknown:
    raise ValueError(f'Loss {key!r} takes no hyperparameter(s) '
                     f'{", ".join(unknown)}; it takes '
                     f'{", ".join(known) or "none"}.')
  hparams.update(overrides)
  return hparams
