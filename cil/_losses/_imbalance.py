"""Imbalance measures (Section III-A): the imbalance ratio rho, the
imbalance degree lambda (eq. 2) and the CI class factor f (eq. 5).

Private: import the public names from `cil.losses`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from cil import _validation as v
from cil._losses._common import counts_as_float
from cil._losses._common import host_sequence_to_array


class _Rule(NamedTuple):
  """Eq. (5)'s rule for the class factor's exponent (`ci_class_factors`)."""
  threshold: float
  low_exponent: float
  high_exponent: float
  transition_width: float


# The paper's rule: the one place its values are written. Every function
# that takes the rule (`ci_class_factors`, `ci_loss`, `ci_loss_grad_logits`)
# defaults to these, and the registry reads them from those signatures.
PAPER_RULE = _Rule(threshold=1.0, low_exponent=0.5, high_exponent=0.125,
                   transition_width=0.0)

# lambda <= threshold is tested with this relative tolerance, so that cases
# that are exactly on the boundary in exact arithmetic (e.g. counts [100, 1],
# lambda = 1) take the paper's `lambda <= 1` branch whatever the rounding.
_LAMBDA_RTOL = 1e-5


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
  class_counts = host_sequence_to_array(class_counts)
  v.check_class_counts(class_counts)
  counts = counts_as_float(class_counts)
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
  class_counts = host_sequence_to_array(class_counts)
  v.check_class_counts(class_counts)
  counts = counts_as_float(class_counts)
  return -jnp.mean(jnp.log10(counts / jnp.max(counts)))


def ci_class_factors(
    class_counts: ArrayLike,
    *,
    threshold: float = PAPER_RULE.threshold,
    low_exponent: float = PAPER_RULE.low_exponent,
    high_exponent: float = PAPER_RULE.high_exponent,
    transition_width: float = PAPER_RULE.transition_width,
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
  class_counts = host_sequence_to_array(class_counts)
  v.check_class_counts(class_counts)
  factor_hparams = pack_factor_hparams(threshold, low_exponent,
                                       high_exponent, transition_width)
  counts = counts_as_float(class_counts)
  log_max, exponent = ci_log_max_and_exponent(counts, **factor_hparams)
  return jnp.exp(exponent * (log_max - jnp.log(counts)))


def pack_factor_hparams(threshold, low_exponent, high_exponent,
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


def ci_log_max_and_exponent(counts, *, threshold, low_exponent,
                            high_exponent, transition_width):
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
