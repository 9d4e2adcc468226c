"""The CI loss taken apart, for ablations: which of its parts does the work.

Private: import the public names from `cil.losses`.
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from cil import _validation as v
from cil._losses._classification import ci_true_class_factor
from cil._losses._common import check_classification_inputs
from cil._losses._common import ci_modulation
from cil._losses._common import counts_as_float
from cil._losses._common import finish_loss
from cil._losses._common import host_sequence_to_array
from cil._losses._common import neg_log
from cil._losses._common import one_minus_prob
from cil._losses._common import optax_shaped
from cil._losses._common import prepare_inputs
from cil._losses._common import take_class
from cil._losses._common import true_class_log_prob
from cil._losses._imbalance import pack_factor_hparams
from cil._losses._imbalance import PAPER_RULE
from cil._losses._peers import class_balanced_weights


@optax_shaped()
def ci_components_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    class_counts: ArrayLike,
    *,
    modulation: float = 1.0,
    threshold: float = PAPER_RULE.threshold,
    low_exponent: float = PAPER_RULE.low_exponent,
    high_exponent: float = PAPER_RULE.high_exponent,
    transition_width: float = PAPER_RULE.transition_width,
    cb_beta: float = 0.0,
    tau: float = 0.0,
    where: Optional[ArrayLike] = None,
    log_base: float = math.e,
) -> jax.Array:
  r"""The CI loss as three switchable parts: modulation, class factor, logits.

  .. math::
    \tilde p_t = \mathrm{softmax}(z + \tau \log \pi)_t, \quad
    m = \mu \left(1 - \sin\tfrac{\pi}{2}\tilde p_t\right)
        \cos\tfrac{\pi}{2}\tilde p_t + (1 - \mu), \quad
    L = -m \, w_t \log_b \tilde p_t

  with :math:`\pi_i = N_i / \sum_j N_j` and the class weight :math:`w` either
  CI's factor of eq. (5), :math:`(N_{\max}/N_i)^e` under the rule
  `threshold`, `low_exponent`, `high_exponent`, `transition_width`
  (`ci_class_factors`), when `cb_beta` is 0, or the class-balanced weight
  of Cui et al. (effective numbers, normalised to mean 1 over the classes,
  as `class_balanced_loss`) when `cb_beta` > 0. At its defaults it is
  `ci_loss`; the other corners of the factorial are known losses:

  ============================================  ==========================
  hyperparameters                               equals
  ============================================  ==========================
  defaults                                      `ci_loss`
  `high_exponent=0.5`                           CI, factor "always 1/2"
  `modulation=0, low_exponent=0,`               `cross_entropy`
  `high_exponent=0`
  the same and `tau=1`                          `logit_adjusted_loss`
  `modulation=0, cb_beta=beta`                  `class_balanced_loss`
  ============================================  ==========================

  so that a factorial over (modulation on/off) x (no factor, CI's factor,
  CI's factor at 1/2, the class-balanced weight) x (plain or logit-adjusted
  logits) is a set of loss specs, e.g. `ci_parts:modulation=0` (CI's factor
  on plain CE) or `ci_parts:tau=1` (CI on logit-adjusted logits).

  Args:
    logits: `[..., num_classes]` unnormalized scores (any leading batch
      axes; the class axis is `axis`).
    labels: `[...]` integer class indices, or `[..., num_classes]`
      probabilities (soft labels).
    class_counts: `[num_classes]` positive counts (may be traced).
    modulation: mu in [0, 1]: 1 is CI's (1 - sin) cos modulation, 0 none
      (the log loss itself).
    threshold: eq. (5)'s lambda threshold (`ci_class_factors`).
    low_exponent: the factor's exponent at or below the threshold; 0 with
      `high_exponent=0` is no class factor.
    high_exponent: the exponent above it.
    transition_width: a linear ramp between the two (0: the paper's jump).
    cb_beta: 0 for CI's factor; in (0, 1), the class-balanced weight with
      this beta instead (the factor's rule is then not used).
    tau: logit adjustment of the probability the loss sees (Menon et al.
      2021); 0 for plain logits.
    where: optional boolean mask broadcastable to `[...]`; masked examples
      give 0.
    log_base: base b of the logarithm (default e, optax's and the peers'
      scale; the paper's is 10).
    axis: the class axis of `logits` (and of soft `labels`), as optax.

  Returns:
    `[...]` losses (one per example; nothing is reduced).

  Examples:
    >>> from cil import losses
    >>> logits, labels = jnp.array([[1.0, -1.0]]), jnp.array([1])
    >>> counts = jnp.array([256, 1])
    >>> bool(jnp.allclose(losses.ci_components_loss(logits, labels, counts),
    ...                   losses.ci_loss(logits, labels, counts)))
    True
  """
  class_counts = host_sequence_to_array(class_counts)
  check_classification_inputs(logits, labels, where, class_counts)
  v.check_log_base(log_base)
  v.check_finite_scalar(tau, 'tau')
  factor_hparams = pack_factor_hparams(threshold, low_exponent,
                                       high_exponent, transition_width)
  if v.is_concrete(modulation) and not 0 <= float(modulation) <= 1:
    raise ValueError(f'`modulation` must be in [0, 1], got {modulation}.')
  if v.is_concrete(cb_beta) and not 0 <= float(cb_beta) < 1:
    raise ValueError(f'`cb_beta` must be in [0, 1), got {cb_beta}.')
  return _ci_components_core(logits, labels, where, class_counts, modulation,
                             factor_hparams, cb_beta, tau, log_base)


@jax.jit
def _ci_components_core(logits, labels, where, class_counts, modulation,
                        factor_hparams, cb_beta, tau, log_base):
  """`ci_components_loss` past its checks, jitted."""
  logits, labels = prepare_inputs(logits, labels, where)
  counts = counts_as_float(class_counts, logits.dtype)
  log_prior = jnp.log(counts) - jnp.log(jnp.sum(counts))
  log_p = true_class_log_prob(logits + tau * log_prior, labels)
  modulation = jnp.asarray(modulation, logits.dtype)
  m = (modulation * ci_modulation(one_minus_prob(log_p)) + (1 - modulation))
  # The class-balanced weight where cb_beta > 0 (all 1, finite, at 0).
  cb = take_class(class_balanced_weights(counts, cb_beta), labels)
  ci = ci_true_class_factor(counts, labels, factor_hparams)
  weight = jnp.where(jnp.asarray(cb_beta) > 0, cb, ci)
  return finish_loss(m * weight * neg_log(log_p, log_base), labels, where)
