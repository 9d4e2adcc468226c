"""The registry: one call shape for launchers and configs, loss specs
(`ci:high_exponent=0.5`) and their hyperparameter tables, resolved once into
one hashable value (`LossSpec`, from `get_loss`).

Private: import the public names from `cil.losses`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Protocol

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from cil import _validation as v
from cil._losses._classification import ci_loss
from cil._losses._classification import cross_entropy
from cil._losses._classification import focal_loss
from cil._losses._common import host_sequence_to_array
from cil._losses._components import ci_components_loss
from cil._losses._common import is_soft
from cil._losses._peers import class_balanced_loss
from cil._losses._peers import ldam_loss
from cil._losses._peers import logit_adjusted_loss
from cil._losses._peers import vs_loss
from cil._losses._peers import weighted_cross_entropy


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
    class_counts = host_sequence_to_array(class_counts)
    shape = jnp.shape(host_sequence_to_array(logits))
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
    'vs': vs_loss,
    'ci_parts': ci_components_loss,
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
    if is_soft(labels_):
      tolerance = v.soft_label_sum_tolerance(labels_.dtype)
      ok = (jnp.all((labels_ >= 0) & jnp.isfinite(labels_), axis=axis)
            & (jnp.abs(jnp.sum(labels_.astype(jnp.float32), axis=axis) - 1)
               <= tolerance))
      message = (f'Soft `labels` must be finite, non-negative and sum to 1 '
                 f'(within {tolerance:g}): a distribution over the classes '
                 f'per example.')
    else:
      ok = (labels_ >= 0) & (labels_ < num_classes)
      message = (f'`labels` must be in [0, {num_classes}) (num_classes = the '
                 f'size of the class axis of `logits`).')
    if where is not None:
      ok = ok | ~jnp.broadcast_to(jnp.asarray(where), ok.shape)
    checkify.check(jnp.all(ok), message)
    if class_counts is not None:
      counts = jnp.asarray(host_sequence_to_array(class_counts))
      checkify.check(jnp.all(jnp.isfinite(counts) & (counts > 0)),
                     '`class_counts` must be positive and finite: every class '
                     'needs at least one example.')
    return loss_fn(logits, labels, class_counts, **hparams)

  return checkify.checkify(fn, errors=checkify.user_checks)


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """A registry loss with all its hyperparameters bound: one hashable value.

  The one form a loss takes from a config to a jitted step: `get_loss`
  builds it once from a spec string (`ci:high_exponent=0.5`) and a table of
  hyperparameters; it is a static argument of the runners' jitted steps and
  of `cil.maml.MamlConfig`, and a run records it as it is. Call it as a
  registry loss: `spec(logits, labels, class_counts, where=...)`; keywords
  given in the call override the bound ones.

  Attributes:
    name: the canonical registry name (`LOSS_NAMES`).
    hparams: its keyword hyperparameters as `(name, value)` pairs sorted by
      name: the table's and the spec's (the loss's own defaults hold for
      the others; the runners' tables state every one).
  """
  name: str
  hparams: tuple[tuple[str, Any], ...] = ()

  def __post_init__(self):
    if self.name not in _REGISTRY:
      raise ValueError(f'LossSpec.name must be a canonical loss name, one of '
                       f'{", ".join(LOSS_NAMES)}; got {self.name!r} (build '
                       f'specs with cil.losses.get_loss).')

  def __call__(self, logits: ArrayLike, labels: ArrayLike,
               class_counts: ArrayLike = None, **hparams) -> jax.Array:
    return _REGISTRY[self.name](logits, labels, class_counts,
                                **{**dict(self.hparams), **hparams})

  @property
  def kwargs(self) -> dict:
    """The bound hyperparameters as a dict."""
    return dict(self.hparams)

  def __str__(self) -> str:
    """The spec string: `name:key=value,...` ('ce' with none bound)."""
    if not self.hparams:
      return self.name
    return self.name + ':' + ','.join(f'{k}={v!r}' for k, v in self.hparams)


def get_loss(spec: 'str | LossSpec', table: Any = None) -> LossSpec:
  """The loss a spec names, with the uniform registry call shape.

  The returned `LossSpec` is called as
  `fn(logits, labels, class_counts, **hparams) -> [batch]`, where `hparams`
  are the keyword arguments of the underlying loss (`where`, `log_base`,
  `gamma`, `beta`, `tau`, ...). `ce` and `focal` accept and check
  `class_counts` but do not use them.

  Args:
    spec: one of `LOSS_NAMES` = ce, focal, ci, cb, ldam, la, wce, vs,
      ci_parts (aliases: fl for focal, balanced_softmax for la),
      case-insensitive; or a loss spec `name:key=value,...` (`split_spec`);
      or a `LossSpec` (returned as it is when `table` is None), or its
      record (`dataclasses.asdict` of one, as a run's `config.json` holds
      it: `{'name': ..., 'hparams': [[key, value], ...]}`).
    table: hyperparameters keyed by canonical loss name (a mapping, or the
      tuples of `freeze_hparams`; `resolve_hparams`); the spec's own values
      override the table's. None binds the spec's values only.

  Returns:
    The `LossSpec`: name and hyperparameters bound once.

  Examples:
    >>> loss_fn = get_loss('ci')
    >>> loss_fn(jnp.zeros((1, 2)), jnp.array([1]), jnp.array([256, 1])).shape
    (1,)
    >>> get_loss('CI:high_exponent=0.5')
    LossSpec(name='ci', hparams=(('high_exponent', 0.5),))
    >>> str(get_loss('fl', {'focal': {'gamma': 1.0}}))
    'focal:gamma=1.0'
  """
  if isinstance(spec, dict) and set(spec) == {'name', 'hparams'}:
    name = canonical_name(spec['name'])
    bound = resolve_hparams(name, {name: dict(spec['hparams'])})
    spec = LossSpec(name, tuple(sorted(bound.items())))
  if isinstance(spec, LossSpec):
    if table is None:
      return spec
    spec = str(spec)
  name, _ = split_spec(spec)
  hparams = resolve_hparams(spec, table)
  return LossSpec(name, tuple(sorted(hparams.items())))


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
  return str(LossSpec(base, tuple(sorted(overrides.items()))))


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
    {'gamma': 2.0, 'log_base': 2.718281828459045}
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
