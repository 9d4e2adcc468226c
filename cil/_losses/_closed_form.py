"""Closed-form derivatives with respect to p (eq. 13-15, eq. 15 as
corrected in the paper restatement) and of the CI loss with respect to
the logits.

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
from cil._losses._common import HALF_PI
from cil._losses._common import host_sequence_to_array
from cil._losses._common import is_soft
from cil._losses._common import one_minus_prob
from cil._losses._common import optax_shaped
from cil._losses._common import prepare_inputs
from cil._losses._imbalance import ci_log_max_and_exponent
from cil._losses._imbalance import pack_factor_hparams
from cil._losses._imbalance import PAPER_RULE


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


def cross_entropy_grad_p(p: ArrayLike, *,
                         log_base: float = math.e) -> jax.Array:
  r"""dL_CE/dp, eq. (13), elementwise for p in (0, 1].

  .. math::
    \frac{\partial L_{CE}}{\partial p} = -\frac{1}{p \ln b}

  Args:
    p: probabilities of the true class, any shape.
    log_base: base b of the loss's logarithm (default e; the paper's is
      10).

  Returns:
    The derivative, same shape as `p`.
  """
  _check_probabilities(p)
  v.check_log_base(log_base)
  p = jnp.asarray(p)
  return -1.0 / (p * jnp.log(jnp.asarray(log_base, p.dtype)))


def focal_grad_p(p: ArrayLike, *, gamma: float,
                 log_base: float = math.e) -> jax.Array:
  r"""dL_FL/dp, eq. (14), elementwise for p in (0, 1) (p = 1 too if gamma >= 1).

  .. math::
    \frac{\partial L_{FL}}{\partial p} = -\frac{(1-p)^{\gamma-1}}{\ln b}
      \left(\frac{1-p}{p} - \gamma \ln p\right)

  Args:
    p: probabilities of the true class, any shape.
    gamma: focusing parameter >= 0.
    log_base: base b of the loss's logarithm (default e; the paper's is
      10).

  Returns:
    The derivative, same shape as `p`.
  """
  check_gamma(gamma)
  _check_probabilities(
      p, allow_one=not v.is_concrete(gamma) or float(gamma) >= 1)
  v.check_log_base(log_base)
  p = jnp.asarray(p)
  ln_b = jnp.log(jnp.asarray(log_base, p.dtype))
  return (-(1 - p) ** (gamma - 1) / ln_b
          * ((1 - p) / p - gamma * jnp.log(p)))


def ci_grad_p(p: ArrayLike, factor: ArrayLike, *,
              log_base: float = math.e) -> jax.Array:
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
    log_base: base b of the loss's logarithm (default e; the paper's is
      10).

  Returns:
    The derivative, shape of `p` broadcast with `factor`.
  """
  _check_probabilities(p)
  v.check_log_base(log_base)
  p = jnp.asarray(p)
  a = HALF_PI * p
  ln_b = jnp.log(jnp.asarray(log_base, p.dtype))
  return (-jnp.asarray(factor, p.dtype) / ln_b
          * (jnp.cos(a) * (1 - jnp.sin(a)) / p
             - HALF_PI * jnp.log(p) * (jnp.cos(math.pi * p) + jnp.sin(a))))


@optax_shaped(returns_classes=True)
def ci_loss_grad_logits(
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
    log_base: base b of the loss's logarithm (default e; the paper's is
      10).
    threshold, low_exponent, high_exponent, transition_width: eq. (5)'s
      rule, as `ci_loss`.
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    The shape of `logits`: the gradient of `ci_loss(...)` summed over the
    batch, i.e. of each example's loss with respect to its own logits.
  """
  class_counts = host_sequence_to_array(class_counts)
  _, num_classes = check_classification_inputs(
      logits, labels, where, class_counts)
  v.check_log_base(log_base)
  factor_hparams = pack_factor_hparams(threshold, low_exponent,
                                       high_exponent, transition_width)
  return _ci_loss_grad_logits_core(logits, labels, where, class_counts,
                                   log_base, factor_hparams)


@jax.jit
def _ci_loss_grad_logits_core(logits, labels, where, class_counts, log_base,
                              factor_hparams):
  """`ci_loss_grad_logits` past its checks, jitted."""
  num_classes = jnp.shape(logits)[1]
  logits, labels = prepare_inputs(logits, labels, where)
  counts = counts_as_float(class_counts, logits.dtype)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  probs = jnp.exp(log_probs)
  # y: the label distribution (one-hot for integer labels). With g_c the
  # (dL/dp) p of class c from eq. (15), dL/dz_k = y_k g_k - p_k sum_c y_c g_c.
  y = (labels if is_soft(labels)
       else jax.nn.one_hot(labels, num_classes, dtype=logits.dtype))
  log_max, exponent = ci_log_max_and_exponent(counts, **factor_hparams)
  factor = jnp.exp(exponent * (log_max - jnp.log(counts)))[None, :]
  a = HALF_PI * probs
  ln_b = jnp.log(jnp.asarray(log_base, logits.dtype))
  # (dL/dp) * p, eq. (15) multiplied through by p.
  dl_dp_times_p = -factor / ln_b * (
      ci_modulation(one_minus_prob(log_probs))
      - HALF_PI * probs * log_probs * (jnp.cos(math.pi * probs)
                                       + jnp.sin(a)))
  weighted = y * dl_dp_times_p
  grad = weighted - probs * jnp.sum(weighted, axis=-1, keepdims=True)
  if where is not None:
    grad = jnp.where(jnp.asarray(where)[:, None], grad, 0.0)
  return grad
