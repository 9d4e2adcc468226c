"""Per-class weights and the weighted mean (PyTorch's `weight=`).

Private: import the public names from `cil.losses`.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from cil import _validation as v
from cil._losses._common import counts_as_float
from cil._losses._common import host_sequence_to_array


def _check_counts(class_counts) -> None:
  counts = host_sequence_to_array(class_counts)
  if jnp.ndim(counts) < 1:
    raise ValueError(f'`class_counts` must be a `[..., num_classes]` array, '
                     f'got shape {jnp.shape(counts)}.')
  if v.is_concrete(counts):
    v.check_class_counts(jnp.reshape(jnp.asarray(counts), (-1,)))


def _log_beta(beta, dtype) -> jax.Array:
  """ln(beta), in float64 on the host when beta is a concrete number (so
  that float32 weights are as accurate as the reference's float64 ones)."""
  if v.is_concrete(beta):
    b = float(beta)
    if not 0 <= b < 1:
      raise ValueError(f'`beta` must be in [0, 1), got {beta}.')
    return jnp.asarray(math.log(b) if b > 0 else -math.inf, dtype)
  return jnp.log(jnp.asarray(beta, dtype))


def effective_number_weights(class_counts: ArrayLike, *,
                             beta: float = 0.9999) -> jax.Array:
  r"""Cui et al.'s class-balanced weights: the inverse effective number.

  .. math::
    w_c = \frac{1 - \beta}{1 - \beta^{N_c}}, \qquad
    w \leftarrow C \, w / \textstyle\sum_c w_c

  normalised to mean 1 over the classes, as the reference code does
  (Cui et al., `class_balanced_loss.py`: `weights / sum(weights) * C`;
  Cao et al., LDAM-DRW's `cifar_train.py`, the same for DRW). `beta = 0`
  gives all ones; `beta -> 1` tends to inverse frequency.

  Args:
    class_counts: `[..., C]` positive counts (leading axes: e.g. seeds).
    beta: in [0, 1) (Cui et al. and Cao et al.: 0.9999).

  Returns:
    `[..., C]` float weights, mean 1 over the last axis.

  Examples:
    >>> w = effective_number_weights(jnp.array([5000.0, 50.0]))
    >>> [round(x, 4) for x in w.tolist()]
    [0.025, 1.975]

  References:
    Cui, Jia, Lin, Song and Belongie, `Class-Balanced Loss Based on
    Effective Number of Samples <https://arxiv.org/abs/1901.05555>`_,
    CVPR 2019.
  """
  _check_counts(class_counts)
  counts = counts_as_float(class_counts)
  log_beta = _log_beta(beta, counts.dtype)
  return jax.jit(effective_number_core)(counts, log_beta)


def effective_number_core(counts: jax.Array, log_beta: jax.Array
                          ) -> jax.Array:
  """`effective_number_weights` of float `counts` given ln(beta)."""
  # 1 / (1 - beta^N), with 1 - beta^N = -expm1(N ln beta) accurate for beta
  # near 1; the constant 1 - beta cancels in the normalisation.
  inverse = -1.0 / jnp.expm1(counts * log_beta)
  return inverse * counts.shape[-1] / jnp.sum(inverse, -1, keepdims=True)


def drw_class_weights(class_counts: ArrayLike, *, epoch: int, drw_epoch: int,
                      beta: float = 0.9999) -> jax.Array:
  """Cao et al.'s deferred re-weighting (DRW): the class weights of `epoch`.

  All ones before `drw_epoch` (0-based), `effective_number_weights` from
  it on, as LDAM-DRW's `cifar_train.py` (`betas = [0, 0.9999]`, switched at
  epoch 160). Use them for the batch mean with `weighted_mean`.

  Args:
    class_counts: `[..., C]` positive training counts.
    epoch: the current epoch (0-based).
    drw_epoch: the first re-weighted epoch (Cao et al.: 160 of 200).
    beta: the effective number's beta from then on.

  Returns:
    `[..., C]` weights (mean 1 over the classes).

  References:
    Cao, Wei, Gaidon, Arechiga and Ma, `Learning Imbalanced Datasets with
    Label-Distribution-Aware Margin Loss
    <https://arxiv.org/abs/1906.07413>`_, NeurIPS 2019.
  """
  return effective_number_weights(
      class_counts, beta=beta if epoch >= drw_epoch else 0.0)


def inverse_frequency_weights(class_counts: ArrayLike) -> jax.Array:
  r"""Inverse class frequency, `N / (C N_c)` (scikit-learn's 'balanced'
  `class_weight`; the weights of `weighted_cross_entropy`).

  Args:
    class_counts: `[..., C]` positive counts.

  Returns:
    `[..., C]` weights; a balanced set gets all ones.

  Examples:
    >>> inverse_frequency_weights(jnp.array([30.0, 10.0])).tolist()
    [0.6666666865348816, 2.0]
  """
  _check_counts(class_counts)
  return inverse_frequency_core(counts_as_float(class_counts))


def inverse_frequency_core(counts: jax.Array) -> jax.Array:
  """`inverse_frequency_weights` of float `counts`."""
  return jnp.sum(counts, -1, keepdims=True) / (counts.shape[-1] * counts)


def weighted_mean(per_example: ArrayLike, labels: ArrayLike,
                  class_weights: ArrayLike, *,
                  where: Optional[ArrayLike] = None) -> jax.Array:
  r"""The class-weighted mean of per-example losses, as PyTorch's
  `CrossEntropyLoss(weight=w)` reduces them.

  .. math::
    \bar L = \frac{\sum_i w_{y_i} L_i}{\sum_i w_{y_i}}

  over the examples `where` holds (all by default). The losses of
  `cil.losses` do not reduce; this is the reduction a PyTorch user's
  `weight=` (DRW's, class-balanced, inverse-frequency weights) implies.

  Args:
    per_example: `[B]` losses.
    labels: `[B]` integer labels in `[0, C)`.
    class_weights: `[C]` non-negative weights.
    where: optional `[B]` mask; masked examples count for nothing.

  Returns:
    A scalar (0 when no example holds weight).

  Examples:
    >>> weighted_mean(jnp.array([1.0, 3.0]), jnp.array([0, 1]),
    ...               jnp.array([1.0, 3.0])).tolist()
    2.5
  """
  v.check_rank(per_example, 1, 'per_example')
  v.check_rank(labels, 1, 'labels')
  v.check_integer(labels, 'labels')
  v.check_rank(class_weights, 1, 'class_weights')
  if jnp.shape(labels) != jnp.shape(per_example):
    raise ValueError(f'`labels` must have the shape of `per_example` '
                     f'{jnp.shape(per_example)}, got {jnp.shape(labels)}.')
  if where is not None:
    v.check_where(where, jnp.shape(per_example)[0])
  v.check_labels(labels, jnp.shape(class_weights)[0],
                 jnp.shape(per_example)[0], where)
  return _weighted_mean_core(per_example, labels, class_weights, where)


@jax.jit
def _weighted_mean_core(per_example, labels, class_weights, where):
  w = jnp.asarray(class_weights)[labels]
  if where is not None:
    w = jnp.where(where, w, 0.0)
  total = jnp.sum(w * jnp.where(w > 0, per_example, 0.0))
  return total / jnp.maximum(jnp.sum(w), jnp.finfo(total.dtype).tiny)
