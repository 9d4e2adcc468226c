"""Cross-entropy, focal and CI losses (eq. 3, 6, 4).

Private: import the public names from `cil.losses`.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from cil import _validation as v
from cil._losses._common import check_classification_inputs
from cil._losses._common import check_gamma
from cil._losses._common import ci_modulation
from cil._losses._common import counts_as_float
from cil._losses._common import finish_loss
from cil._losses._common import host_sequence_to_array
from cil._losses._common import neg_log
from cil._losses._common import one_minus_prob
from cil._losses._common import optax_shaped
from cil._losses._common import prepare_inputs
from cil._losses._common import safe_pow
from cil._losses._common import take_class
from cil._losses._common import true_class_log_prob
from cil._losses._imbalance import ci_log_max_and_exponent
from cil._losses._imbalance import pack_factor_hparams
from cil._losses._imbalance import PAPER_RULE


@optax_shaped()
def cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
) -> jax.Array:
  r"""Softmax cross-entropy with integer labels, eq. (3).

  .. math::
    L_{CE} = -\log_{b} p_t, \qquad p = \mathrm{softmax}(z)

  With the default `log_base=math.e` this equals
  `optax.softmax_cross_entropy_with_integer_labels`; the paper's
  `log_base=10` is 1 / ln(10) of it.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices in `[0, num_classes)`, or soft
      labels: `[..., num_classes]` probabilities (floating).
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (default e, optax's and the peers'
      scale; the paper's is 10).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  Examples:
    >>> logits = jnp.array([[2.0, 0.0, 0.0]])
    >>> round(float(cross_entropy(logits, jnp.array([0]))[0]), 4)
    0.2395
  """
  check_classification_inputs(logits, labels, where)
  v.check_log_base(log_base)
  return _cross_entropy_core(logits, labels, where, log_base)


@jax.jit
def _cross_entropy_core(logits, labels, where, log_base):
  """`cross_entropy` past its checks, jitted."""
  logits, labels = prepare_inputs(logits, labels, where)
  log_p = true_class_log_prob(logits, labels)
  return finish_loss(neg_log(log_p, log_base), labels, where)


def focal_from_log_p(log_p, gamma, log_base):
  return safe_pow(one_minus_prob(log_p), gamma) * neg_log(log_p, log_base)


@optax_shaped()
def focal_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    gamma: float = 2.0,
    alpha: Optional[ArrayLike] = None,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
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
    log_base: base b of the logarithm (default e, optax's and the peers'
      scale; the paper's is 10).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  Examples:
    >>> logits = jnp.array([[2.0, 0.0, 0.0]])
    >>> round(float(focal_loss(logits, jnp.array([0]), gamma=2.0)[0]), 5)
    0.01087

  References:
    Lin, Goyal, Girshick, He and Dollar, `Focal Loss for Dense Object
    Detection <https://arxiv.org/abs/1708.02002>`_, ICCV 2017.
  """
  _, num_classes = check_classification_inputs(logits, labels, where)
  v.check_log_base(log_base)
  check_gamma(gamma)
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
  logits, labels = prepare_inputs(logits, labels, where)
  log_p = true_class_log_prob(logits, labels)
  loss = focal_from_log_p(log_p, gamma, log_base)
  if alpha is not None:
    loss = take_class(jnp.asarray(alpha, loss.dtype), labels) * loss
  return finish_loss(loss, labels, where)


@optax_shaped()
def ci_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
    threshold: float = PAPER_RULE.threshold,
    low_exponent: float = PAPER_RULE.low_exponent,
    high_exponent: float = PAPER_RULE.high_exponent,
    transition_width: float = PAPER_RULE.transition_width,
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
    log_base: base b of the logarithm (default e, optax's and the peers'
      scale; the paper's is 10).
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
    [0.1436, 0.2871]

  References:
    Zhang et al., `A Class Imbalance Loss for Imbalanced Object Recognition
    <https://doi.org/10.1109/JSTARS.2020.2995703>`_, 2020.
  """
  class_counts = host_sequence_to_array(class_counts)
  check_classification_inputs(logits, labels, where, class_counts)
  v.check_log_base(log_base)
  factor_hparams = pack_factor_hparams(threshold, low_exponent,
                                       high_exponent, transition_width)
  return _ci_loss_core(logits, labels, where, class_counts, log_base,
                       factor_hparams)


@jax.jit
def _ci_loss_core(logits, labels, where, class_counts, log_base,
                  factor_hparams):
  """`ci_loss` past its checks, jitted."""
  logits, labels = prepare_inputs(logits, labels, where)
  factor = ci_true_class_factor(
      counts_as_float(class_counts, logits.dtype), labels, factor_hparams)
  log_p = true_class_log_prob(logits, labels)
  loss = (ci_modulation(one_minus_prob(log_p)) * factor
          * neg_log(log_p, log_base))
  return finish_loss(loss, labels, where)


def ci_true_class_factor(counts: jax.Array, labels: jax.Array,
                         factor_hparams: dict) -> jax.Array:
  """`ci_class_factors(counts)[labels]` without the `[C]` power: `[batch]`.

  Two reductions over the classes (max, mean log) and the rest per example,
  which XLA fuses into the loss; same values as `ci_class_factors`.
  """
  log_max, exponent = ci_log_max_and_exponent(counts, **factor_hparams)
  return jnp.exp(exponent * (log_max - jnp.log(take_class(counts, labels))))
