"""Peers: the imbalance-aware losses a researcher compares CI against
(class-balanced, LDAM, logit-adjusted / balanced softmax, VS,
inverse-frequency weighted cross-entropy).

Private: import the public names from `cil.losses`.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from cil import _validation as v
from cil._losses._classification import focal_from_log_p
from cil._losses._common import check_classification_inputs
from cil._losses._common import check_gamma
from cil._losses._common import counts_as_float
from cil._losses._common import finish_loss
from cil._losses._common import host_sequence_to_array
from cil._losses._common import is_soft
from cil._losses._common import neg_log
from cil._losses._common import optax_shaped
from cil._losses._common import prepare_inputs
from cil._losses._common import take_class
from cil._losses._common import true_class_log_prob
from cil._losses._weights import effective_number_core
from cil._losses._weights import inverse_frequency_core


@optax_shaped()
def class_balanced_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    beta: float = 0.9999,
    gamma: float = 0.0,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
) -> jax.Array:
  r"""Class-balanced loss (Cui et al. 2019): re-weighting by effective numbers.

  .. math::
    w_i = \frac{1 - \beta}{1 - \beta^{N_i}}, \quad
    \tilde w_i = C \, w_i / \textstyle\sum_j w_j, \quad
    L_{CB} = -\tilde w_t (1 - p_t)^{\gamma} \log_b p_t

  `gamma=0` (default) is class-balanced softmax cross-entropy: softmax
  cross-entropy weighted per example by `effective_number_weights`, as Cui
  et al.'s TensorFlow code (github.com/richardaecn/class-balanced-loss)
  trains its softmax models. `gamma > 0` is a class-balanced *softmax*
  focal loss. It is not Cui et al.'s CB focal loss, which is a *sigmoid*
  focal loss over one-hot labels, summed over classes and divided by the
  number of positives (their code's and the common PyTorch port's
  `focal_loss`, `class_balanced_loss.py`). `beta=0` gives CE (all weights
  1); as beta -> 1 the weights approach inverse frequency. The loss is per
  example: reduce with the mean (as their softmax code) or with
  `weighted_mean` for PyTorch's `weight=` normalisation.

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
    log_base: base b of the logarithm (default e, the reference code's).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    Cui, Jia, Lin, Song and Belongie, `Class-Balanced Loss Based on Effective
    Number of Samples <https://arxiv.org/abs/1901.05555>`_, CVPR 2019.
  """
  class_counts = host_sequence_to_array(class_counts)
  _, num_classes = check_classification_inputs(
      logits, labels, where, class_counts)
  v.check_log_base(log_base)
  check_gamma(gamma)
  if v.is_concrete(beta) and not 0 <= float(beta) < 1:
    raise ValueError(f'`beta` must be in [0, 1), got {beta}.')
  return _class_balanced_loss_core(logits, labels, where, class_counts, beta,
                                   gamma, log_base)


def class_balanced_weights(counts: jax.Array, beta) -> jax.Array:
  """Cui et al.'s `[C]` weights (1 - beta) / (1 - beta^N_i), normalised to
  sum to C (all 1 at beta = 0): `cil.losses.effective_number_weights`."""
  return effective_number_core(counts, jnp.log(jnp.asarray(beta,
                                                           counts.dtype)))


@jax.jit
def _class_balanced_loss_core(logits, labels, where, class_counts, beta, gamma,
                              log_base):
  """`class_balanced_loss` past its checks, jitted."""
  logits, labels = prepare_inputs(logits, labels, where)
  weights = class_balanced_weights(
      counts_as_float(class_counts, logits.dtype), beta)
  log_p = true_class_log_prob(logits, labels)
  loss = take_class(weights, labels) * focal_from_log_p(log_p, gamma, log_base)
  return finish_loss(loss, labels, where)


@optax_shaped()
def ldam_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    max_margin: float = 0.5,
    scale: float = 30.0,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
) -> jax.Array:
  r"""Label-distribution-aware margin (LDAM) loss (Cao et al. 2019).

  .. math::
    \Delta_i \propto N_i^{-1/4}, \ \max_i \Delta_i = \text{max\_margin}, \quad
    L = -\log_b \mathrm{softmax}(s \, (z - \Delta_t e_t))_t

  The true-class logit is reduced by a margin that is larger for rarer
  classes. Cao et al.'s `scale` s = 30 assumes cosine-similarity logits in
  [-1, 1] (a normalised last layer); with an ordinary linear head use a scale
  near 1 (or `cil.models` ResNet-32's `normed_head`). The deferred
  re-weighting (DRW) of the paper is a training schedule, not part of the
  loss: LDAM-DRW's `cifar_train.py` weights the batch mean by
  effective-number weights from epoch 160 on, which is
  `weighted_mean(ldam_loss(...), labels, drw_class_weights(counts,
  epoch=epoch, drw_epoch=160))` (not inverse-frequency weights).

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
    log_base: base b of the logarithm (default e, the reference code's).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    Cao, Wei, Gaidon, Arechiga and Ma, `Learning Imbalanced Datasets with
    Label-Distribution-Aware Margin Loss <https://arxiv.org/abs/1906.07413>`_,
    NeurIPS 2019.
  """
  class_counts = host_sequence_to_array(class_counts)
  _, num_classes = check_classification_inputs(
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
  logits, labels = prepare_inputs(logits, labels, where)
  counts = counts_as_float(class_counts, logits.dtype)
  margins = counts ** -0.25
  margins = margins * (max_margin / jnp.max(margins))
  if num_classes == 1:  # softmax is 1 whatever the margin: the loss is 0.
    return finish_loss(jnp.zeros_like(logits[:, 0]), labels, where)
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
  if is_soft(labels):
    log_p, log_q = log_probs, log_q_all
  else:
    log_p = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    log_q = jnp.take_along_axis(log_q_all, labels[:, None], axis=-1)[:, 0]
  shift = scale * take_class(margins, labels)
  # log(1 - p + p e^-shift) = log1p(x), x = p expm1(-shift) in (-1, 0]:
  # log1p is accurate (and exactly 0 without a margin) unless x nears -1,
  # where the logaddexp of the accurate log(1 - p) takes over.
  x = jnp.exp(log_p) * jnp.expm1(-shift)
  log_norm = jnp.where(x > -0.5, jnp.log1p(jnp.maximum(x, -0.5)),
                       jnp.logaddexp(log_q, log_p - shift))
  log_p_margin = log_p - shift - log_norm
  loss = jnp.maximum(neg_log(jnp.minimum(log_p_margin, 0.0), log_base), 0.0)
  return finish_loss(loss, labels, where)


@optax_shaped()
def logit_adjusted_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    tau: float = 1.0,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
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
    log_base: base b of the logarithm (default e, the reference code's).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    Menon, Jayasumana, Rawat, Jain, Veit and Kumar, `Long-tail learning via
    logit adjustment <https://arxiv.org/abs/2007.07314>`_, ICLR 2021.
    Ren et al., `Balanced Meta-Softmax for Long-Tailed
    Visual Recognition <https://arxiv.org/abs/2007.10740>`_, NeurIPS 2020.
  """
  class_counts = host_sequence_to_array(class_counts)
  check_classification_inputs(logits, labels, where, class_counts)
  v.check_log_base(log_base)
  v.check_finite_scalar(tau, 'tau')
  return _logit_adjusted_loss_core(logits, labels, where, class_counts, tau,
                                   log_base)


@jax.jit
def _logit_adjusted_loss_core(logits, labels, where, class_counts, tau,
                              log_base):
  """`logit_adjusted_loss` past its checks, jitted."""
  logits, labels = prepare_inputs(logits, labels, where)
  counts = counts_as_float(class_counts, logits.dtype)
  log_prior = jnp.log(counts) - jnp.log(jnp.sum(counts))
  log_p = true_class_log_prob(logits + tau * log_prior, labels)
  return finish_loss(neg_log(log_p, log_base), labels, where)


@optax_shaped()
def weighted_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
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
    log_base: base b of the logarithm (default e, the reference code's).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    King and Zeng, Logistic Regression in Rare Events Data, Political
    Analysis 9(2), 2001 (the inverse-frequency weighting scikit-learn
    adopts as `class_weight='balanced'`).
  """
  class_counts = host_sequence_to_array(class_counts)
  _, num_classes = check_classification_inputs(
      logits, labels, where, class_counts)
  v.check_log_base(log_base)
  return _weighted_cross_entropy_core(logits, labels, where, class_counts,
                                      log_base)


@jax.jit
def _weighted_cross_entropy_core(logits, labels, where, class_counts, log_base):
  """`weighted_cross_entropy` past its checks, jitted."""
  logits, labels = prepare_inputs(logits, labels, where)
  weights = inverse_frequency_core(
      counts_as_float(class_counts, logits.dtype))
  log_p = true_class_log_prob(logits, labels)
  return finish_loss(take_class(weights, labels) * neg_log(log_p, log_base),
                     labels, where)


@optax_shaped()
def vs_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    gamma: float = 0.2,
    tau: float = 1.0,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
) -> jax.Array:
  r"""Vector-scaling (VS) loss (Kini et al. 2021).

  .. math::
    \Delta_i = (N_i / N_{\max})^{\gamma}, \quad
    \iota_i = \tau \log \pi_i, \quad \pi_i = N_i / \textstyle\sum_j N_j,
    \quad L = -\log_b \mathrm{softmax}(\Delta \odot z + \iota)_t

  A multiplicative per-class logit scaling Δ (smaller for rarer classes,
  which widens their margin as the logits grow; the CDT loss's form) and an
  additive one ι (the logit adjustment of Menon et al.). `gamma=0` is
  `logit_adjusted_loss` with the same `tau`; `gamma=0, tau=0` is
  cross-entropy. Δ is normalised so that the largest class has Δ = 1, as
  in Kini et al.'s code (the VS-Loss repository's `losses.py`, `VSLoss`,
  divides the logits by `(N_max / N_i)^γ`).
  Both hyperparameters are tuned per dataset in the paper; the defaults
  here (γ = 0.2, τ = 1) are a starting point, not their tuned values.
  Predict with the unadjusted logits.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices, or `[..., num_classes]`
      probabilities (soft labels).
    class_counts: `[num_classes]` positive counts.
    gamma: exponent of the multiplicative adjustment, >= 0.
    tau: temperature of the additive adjustment (finite).
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (default e, the reference code's).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  References:
    Kini, Paraskevas, Oymak and Thrampoulidis, `Label-Imbalanced and
    Group-Sensitive Classification under Overparameterization
    <https://arxiv.org/abs/2103.01550>`_, NeurIPS 2021.
  """
  class_counts = host_sequence_to_array(class_counts)
  check_classification_inputs(logits, labels, where, class_counts)
  v.check_log_base(log_base)
  check_gamma(gamma)
  v.check_finite_scalar(tau, 'tau')
  return _vs_loss_core(logits, labels, where, class_counts, gamma, tau,
                       log_base)


@jax.jit
def _vs_loss_core(logits, labels, where, class_counts, gamma, tau, log_base):
  """`vs_loss` past its checks, jitted."""
  logits, labels = prepare_inputs(logits, labels, where)
  counts = counts_as_float(class_counts, logits.dtype)
  log_counts = jnp.log(counts)
  scaling = jnp.exp(gamma * (log_counts - jnp.max(log_counts)))
  offset = tau * (log_counts - jnp.log(jnp.sum(counts)))
  log_p = true_class_log_prob(scaling * logits + offset, labels)
  return finish_loss(neg_log(log_p, log_base), labels, where)


def posthoc_adjusted_logits(
    logits: ArrayLike,
    class_counts: ArrayLike,
    *,
    tau: float = 1.0,
) -> jax.Array:
  r"""Post-hoc logit adjustment (Menon et al. 2021): predict with these.

  .. math::
    \pi_i = N_i / \textstyle\sum_j N_j, \quad
    \hat y = \arg\max_i \; z_i - \tau \log \pi_i

  The prediction-time counterpart of `logit_adjusted_loss`: a model trained
  with plain cross-entropy estimates p(y | x), which carries the training
  prior pi; subtracting tau log pi moves the decision rule towards the
  balanced error's Bayes rule. `tau=0` returns the logits unchanged (plain
  argmax); Menon et al. use `tau=1` (or tune it on held-out data). Not a
  loss, so nothing is trained through it.

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading axes).
    class_counts: `[num_classes]` positive counts of the training set (only
      their proportions matter).
    tau: temperature of the adjustment.

  Returns:
    `[..., num_classes]` adjusted logits, in at least float32.

  References:
    Menon, Jayasumana, Rawat, Jain, Veit and Kumar, `Long-tail learning via
    logit adjustment <https://arxiv.org/abs/2007.07314>`_, ICLR 2021
    (Section 4, eq. 9).
  """
  class_counts = host_sequence_to_array(class_counts)
  v.check_floating(logits, 'logits')
  if jnp.ndim(logits) < 1:
    raise ValueError('logits must have a class axis ([..., num_classes]), '
                     'got a scalar.')
  v.check_class_counts(class_counts, jnp.shape(logits)[-1])
  v.check_finite_scalar(tau, 'tau')
  return _posthoc_adjusted_logits_core(logits, class_counts, tau)


@jax.jit
def _posthoc_adjusted_logits_core(logits, class_counts, tau):
  """`posthoc_adjusted_logits` past its checks, jitted."""
  logits = jnp.asarray(logits)
  logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
  counts = counts_as_float(class_counts, logits.dtype)
  log_prior = jnp.log(counts) - jnp.log(jnp.sum(counts))
  return logits - tau * log_prior
