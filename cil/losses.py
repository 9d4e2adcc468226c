"""Imbalance measures, the Class Imbalance (CI) loss and its peer losses.

Pure JAX functions, usable from any JAX project. This module is the public
face; the families live in the private package `cil._losses` (as optax's
`optax/losses/`): `_common` (helpers), `_imbalance` (rho, lambda, eq. 5's
factor and its rule `PAPER_RULE`), `_classification` (CE, focal, CI),
`_closed_form` (eq. 13-15), `_components` (CI's parts switchable, for
ablations), `_peers` (CB, LDAM, LA, WCE, VS, and the
post-hoc logit adjustment used at prediction time), `_weights` (per-class
weights: effective number, DRW's schedule, inverse frequency, and the
weighted mean of PyTorch's `weight=`) and `_registry`
(`get_loss` and its `LossSpec`, loss specs, hyperparameter tables).

Conventions (as optax):

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
* Logarithms are natural by default (`log_base=math.e`), the scale of
  optax and of every peer loss's paper and reference code:
  `cross_entropy(z, y)` is `optax.softmax_cross_entropy_with_integer_labels`.
  The CI paper (Zhang et al. 2020) uses base-10 logarithms throughout; pass
  `log_base=10.0` to reproduce it (the paper's configs in `configs/` do).
  The two scales differ by the constant factor ln(10), in the loss and its
  gradients. The imbalance degree lambda, eq. (2), is base-10 by its
  definition, whatever the losses' base.
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
dispatch path (docs/performance.md). For debugging,
`checked(get_loss(name))` opts in to them (same messages, inside `jit`).

Reference:
  Zhang et al., "A Class Imbalance Loss for Imbalanced Object Recognition",
  IEEE J. Sel. Topics Appl. Earth Observ. Remote Sens. 13 (2020) 2778-2792,
  https://doi.org/10.1109/JSTARS.2020.2995703.
"""

from cil._losses._classification import ci_loss
from cil._losses._classification import cross_entropy
from cil._losses._classification import focal_loss
from cil._losses._closed_form import ci_grad_p
from cil._losses._components import ci_components_loss
from cil._losses._closed_form import ci_loss_grad_logits
from cil._losses._closed_form import cross_entropy_grad_p
from cil._losses._closed_form import focal_grad_p
from cil._losses._imbalance import ci_class_factors
from cil._losses._imbalance import imbalance_degree
from cil._losses._imbalance import imbalance_ratio
from cil._losses._imbalance import PAPER_RULE
from cil._losses._peers import class_balanced_loss
from cil._losses._peers import ldam_loss
from cil._losses._peers import logit_adjusted_loss
from cil._losses._peers import posthoc_adjusted_logits
from cil._losses._peers import vs_loss
from cil._losses._peers import weighted_cross_entropy
from cil._losses._registry import canonical_name
from cil._losses._registry import canonical_spec
from cil._losses._registry import checked
from cil._losses._registry import default_hparams
from cil._losses._registry import freeze_hparams
from cil._losses._registry import get_loss
from cil._losses._registry import LOSS_NAMES
from cil._losses._registry import LossFn
from cil._losses._registry import LossSpec
from cil._losses._registry import resolve_hparams
from cil._losses._registry import split_spec
from cil._losses._weights import drw_class_weights
from cil._losses._weights import effective_number_weights
from cil._losses._weights import inverse_frequency_weights
from cil._losses._weights import weighted_mean

__all__ = [
    'LOSS_NAMES',
    'LossFn',
    'LossSpec',
    'PAPER_RULE',
    'canonical_name',
    'canonical_spec',
    'checked',
    'ci_class_factors',
    'ci_components_loss',
    'ci_grad_p',
    'ci_loss',
    'ci_loss_grad_logits',
    'class_balanced_loss',
    'cross_entropy',
    'cross_entropy_grad_p',
    'default_hparams',
    'drw_class_weights',
    'effective_number_weights',
    'focal_grad_p',
    'focal_loss',
    'freeze_hparams',
    'get_loss',
    'imbalance_degree',
    'imbalance_ratio',
    'inverse_frequency_weights',
    'ldam_loss',
    'logit_adjusted_loss',
    'posthoc_adjusted_logits',
    'resolve_hparams',
    'split_spec',
    'vs_loss',
    'weighted_cross_entropy',
    'weighted_mean',
]
