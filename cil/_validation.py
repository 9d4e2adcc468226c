"""Input checks shared by the public functions of `cil`.

Every public function checks its inputs up front and raises `ValueError`
naming the argument and what was expected, in the style of optax's
`utils.check_rank` / `check_shapes_equal`.

Two kinds of checks:

* Static checks (rank, dtype, shapes) use only shapes and dtypes, so they run
  eagerly *and* at trace time under `jit`, `vmap`, `grad`, `pmap`.
* Value checks (positive counts, labels in range) need concrete values. They
  raise `ValueError` when the array is concrete (an eager call) and are
  skipped when it is a tracer (inside `jit`, ...). They are deliberately not
  emitted as `checkify.debug_check`s: a jitted function carrying such an
  effect loses JAX's fast C++ dispatch path (docs/performance.md), a cost
  every training step would pay.
"""

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
  """True when `x` holds values we can inspect on the host."""
  return not isinstance(x, jax.core.Tracer)


def check_rank(x, rank: int, name: str) -> None:
  if jnp.ndim(x) != rank:
    raise ValueError(
        f'`{name}` must have rank {rank}, got shape {jnp.shape(x)} '
        f'(rank {jnp.ndim(x)}).')


def check_floating(x, name: str) -> None:
  if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
    raise ValueError(
        f'`{name}` must be a floating-point array, got dtype '
        f'{jnp.result_type(x)}.')


def check_integer(x, name: str) -> None:
  if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
    raise ValueError(
        f'`{name}` must hold integer class indices, got dtype '
        f'{jnp.result_type(x)}.')


def check_logits(logits) -> None:
  """`logits` must be a floating `[batch, num_classes]` array, C >= 1."""
  check_rank(logits, 2, 'logits')
  check_floating(logits, 'logits')
  if jnp.shape(logits)[1] < 1:
    raise ValueError(
        f'`logits` must have at least one class, got shape '
        f'{jnp.shape(logits)}.')


def _host_values(x, dtype=None) -> np.ndarray:
  """The values of a concrete array on the host, by an explicit transfer.

  `jax.device_get` is explicit, so value checks work under
  `jax.transfer_guard('disallow')` (as big_vision runs).
  """
  if isinstance(x, jax.Array):
    x = jax.device_get(x)
  return np.asarray(x, dtype=dtype)


@functools.partial(jax.jit, static_argnums=(1,))
def _hard_labels_bad(labels, num_classes, where):
  bad = (labels < 0) | (labels >= num_classes)
  return jnp.any(bad if where is None else bad & where)


def soft_label_sum_tolerance(dtype) -> float:
  """How far from 1 a soft label row may sum: 1e-2 in 16-bit floats
  (bfloat16 keeps 8 significant bits, float16 11), 1e-4 in float32 and
  wider."""
  return 1e-2 if jnp.finfo(dtype).bits <= 16 else 1e-4


@jax.jit
def _soft_labels_bad(labels, where):
  bad = ~(labels >= 0) | ~jnp.isfinite(labels)  # NaN fails both.
  return jnp.any(bad if where is None else bad & where[:, None])


@jax.jit
def _soft_labels_off_sum(labels, where):
  """The largest |row sum - 1| of the unmasked rows."""
  off = jnp.abs(jnp.sum(labels.astype(jnp.float32), axis=-1) - 1)
  return jnp.max(off if where is None else jnp.where(where, off, 0),
                 initial=0.0)


def _fetch_flag(fn, *args) -> bool:
  """`bool(fn(*args))` for a jitted reduction to one scalar.

  The check runs on the arrays' device (its constants are compiled in, so
  no host-to-device transfer), eagerly even while a caller is being traced
  (concrete arrays closed over by a jitted function), and only the scalar
  comes back, explicitly: value checks work under
  `jax.transfer_guard('disallow')`.
  """
  with jax.ensure_compile_time_eval():
    return bool(jax.device_get(fn(*args)))


def check_labels(labels, num_classes: int, batch_size: int,
                 where=None) -> None:
  """Hard labels: integer `[batch]` in `[0, num_classes)`; soft labels:
  floating `[batch, num_classes]`, non-negative and finite.

  Labels of rows masked out by `where` are not checked (padding rows often
  carry a label such as -1). Values are checked when concrete, on the device
  for device arrays (one scalar comes back to the host).
  """
  dtype = jnp.result_type(labels)
  if jnp.issubdtype(dtype, jnp.floating):
    if jnp.shape(labels) != (batch_size, num_classes):
      raise ValueError(
          f'Soft (probability) `labels` must have the shape of `logits`, '
          f'{(batch_size, num_classes)}; got {jnp.shape(labels)}. Integer '
          f'labels are class indices with the shape of `logits` without its '
          f'class axis.')
    if is_concrete(labels) and (where is None or is_concrete(where)):
      if _fetch_flag(_soft_labels_bad, labels, where):
        raise ValueError('Soft `labels` must be finite and non-negative '
                         '(a distribution over the classes per example).')
      with jax.ensure_compile_time_eval():
        off = float(jax.device_get(_soft_labels_off_sum(labels, where)))
      tolerance = soft_label_sum_tolerance(dtype)
      if off > tolerance:
        raise ValueError(
            f'Soft `labels` must sum to 1 over the classes (a distribution '
            f'per example; {tolerance:g} allowed in {jnp.dtype(dtype).name}); '
            f'a row is off by {off:.4g}.')
    return
  check_rank(labels, 1, 'labels')
  check_integer(labels, 'labels')
  if jnp.shape(labels)[0] != batch_size:
    raise ValueError(
        f'`labels` has batch size {jnp.shape(labels)[0]} but `logits` has '
        f'batch size {batch_size}; they must match.')
  if is_concrete(labels) and (where is None or is_concrete(where)):
    if isinstance(labels, jax.Array) and (
        where is None or isinstance(where, jax.Array)):
      if not _fetch_flag(_hard_labels_bad, labels, num_classes, where):
        return
    values = _host_values(labels)
    if where is not None:
      values = values[_host_values(where)]
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
      raise ValueError(
          f'`labels` must be in [0, {num_classes}) (num_classes = the size of '
          f'the class axis of `logits`); got out-of-range values '
          f'{np.unique(values[bad])[:10]}.')


def check_where(where, batch_size: int) -> None:
  if where is None:
    return
  check_rank(where, 1, 'where')
  if jnp.result_type(where) != jnp.bool_:
    raise ValueError(
        f'`where` must be a boolean mask, got dtype {jnp.result_type(where)}.')
  if jnp.shape(where)[0] != batch_size:
    raise ValueError(
        f'`where` has length {jnp.shape(where)[0]} but the batch size is '
        f'{batch_size}; they must match.')


def check_class_counts(class_counts, num_classes: Optional[int] = None,
                       name: str = 'class_counts') -> None:
  """`class_counts` must be `[C]`, positive and finite (when concrete)."""
  check_rank(class_counts, 1, name)
  length = jnp.shape(class_counts)[0]
  if length < 1:
    raise ValueError(f'`{name}` must have at least one entry, got length 0.')
  if num_classes is not None and length != num_classes:
    raise ValueError(
        f'`{name}` has length {length} but `logits` has {num_classes} '
        f'classes (logits.shape[1]); they must match.')
  dtype = jnp.result_type(class_counts)
  if not (jnp.issubdtype(dtype, jnp.integer)
          or jnp.issubdtype(dtype, jnp.floating)):
    raise ValueError(f'`{name}` must be numeric, got dtype {dtype}.')
  if is_concrete(class_counts):
    values = _host_values(class_counts, np.float64)  # [C]: small.
    if not np.all(np.isfinite(values)):
      raise ValueError(
          f'`{name}` must be finite, got {values.tolist()[:20]}.')
    if np.any(values <= 0):
      bad = np.flatnonzero(values <= 0)
      raise ValueError(
          f'`{name}` must be positive: every class needs at least one '
          f'example; classes {bad.tolist()[:20]} have counts '
          f'{values[bad].tolist()[:20]}.')
    # The losses compute in float32 unless x64 is on and the counts are
    # float64: counts outside float32's range would become inf or 0.
    if not (jax.config.read('jax_enable_x64') and dtype == jnp.float64):
      f32 = np.finfo(np.float32)
      if np.any(values > f32.max) or np.any(values < f32.tiny):
        raise ValueError(
            f'`{name}` must lie within float32\'s range [{f32.tiny:.3g}, '
            f'{f32.max:.3g}] (the losses compute in float32), got '
            f'{values.tolist()[:20]}; rescale them (the CI factors, LDAM '
            f'margins and logit adjustments depend only on ratios).')


def check_finite_scalar(value, name: str) -> None:
  if is_concrete(value):
    v = _host_values(value, np.float64)
    if v.ndim != 0 or not np.isfinite(v):
      raise ValueError(f'`{name}` must be a finite scalar, got {value}.')


def check_non_negative_finite(values, name: str) -> None:
  """Per-class weights: finite and >= 0 (when concrete)."""
  if is_concrete(values):
    v = _host_values(values, np.float64)
    if not np.all(np.isfinite(v)) or np.any(v < 0):
      raise ValueError(f'`{name}` must be finite and non-negative, got '
                       f'{v.tolist()[:20]}.')


def check_positive_scalar(value, name: str) -> None:
  if is_concrete(value):
    v = _host_values(value)
    if v.ndim != 0 or not np.isfinite(v) or v <= 0:
      raise ValueError(
          f'`{name}` must be a positive finite scalar, got {value}.')


def check_log_base(log_base) -> None:
  if is_concrete(log_base):
    v = _host_values(log_base, np.float64)
    if v.ndim != 0 or not np.isfinite(v) or v <= 0 or v == 1:
      raise ValueError(
          f'`log_base` must be a positive finite scalar other than 1, got '
          f'{log_base}.')


def config_fields(config, dataclass_type, what: str) -> dict:
  """`config` (a ConfigDict or mapping) as a dict with exactly the fields of
  `dataclass_type`; unknown or missing fields raise `ValueError` naming them
  and `what` ('classify config', 'model config', ...)."""
  import dataclasses  # pylint: disable=g-import-not-at-top
  c = dict(config)
  fields = {f.name for f in dataclasses.fields(dataclass_type)}
  required = {f.name for f in dataclasses.fields(dataclass_type)
              if f.default is dataclasses.MISSING
              and f.default_factory is dataclasses.MISSING}
  unknown = sorted(set(c) - fields)
  if unknown:
    raise ValueError(f'Unknown {what} field(s): {", ".join(unknown)}; known: '
                     f'{", ".join(sorted(fields))}.')
  missing = sorted(required - set(c))
  if missing:
    raise ValueError(f'{what} lacks field(s): {", ".join(missing)}.')
  return c


def check_choice(field: str, value, choices, *, empty: str = '') -> None:
  """Raises `ValueError` naming `field` unless `value` is one of `choices`,
  or '' when `empty` says what '' stands for (e.g. "the backend's")."""
  if value in tuple(choices) or (empty and value == ''):
    return
  also = f" ('' for {empty})" if empty else ''
  raise ValueError(f"{field} must be one of "
                   f"{', '.join(repr(c) for c in choices)}{also}, got "
                   f'{value!r}.')


def check_positive_fields(obj, names, what: str = 'config') -> None:
  """Raises `ValueError` naming the first field of `names` below 1.

  Args:
    obj: a config dataclass.
    names: its fields that must be positive integers; dotted for nested
      ones ('maml.ways').
    what: the config's name in the message.
  """
  for name in names:
    value = obj
    for part in name.split('.'):
      value = getattr(value, part)
    if not value >= 1:
      raise ValueError(f'{what} field {name} must be a positive integer, '
                       f'got {value!r}.')


def as_names(field: str, value) -> tuple[str, ...]:
  """A tuple of names from a sequence (or one name: `--config.losses=ci`)."""
  if isinstance(value, str):
    value = (value,)
  names = tuple(str(x).strip() for x in value)
  if not all(names):
    raise ValueError(f'{field} holds an empty name: {value!r}.')
  return names


def spec_arguments(arg_text: str, spec: str, what: str) -> dict:
  """Parses the `key=value,...` of a spec `name:key=value,...` into floats.

  Used by the protocol and the loss specs; errors name the argument and the
  spec (`what` is 'Protocol' or 'Loss spec').
  """
  out = {}
  for item in filter(None, (x.strip() for x in arg_text.split(','))):
    key, eq, value = item.partition('=')
    key, value = key.strip(), value.strip()
    if not eq:
      raise ValueError(f'{what} argument {item!r} in {spec!r} must be '
                       f'key=value.')
    if key in out:
      raise ValueError(f'{what} {spec!r} sets {key!r} twice.')
    try:
      number = float(value)
    except ValueError:
      raise ValueError(f'{what} argument {key!r} in {spec!r} must be a '
                       f'number, got {value!r}.') from None
    if not math.isfinite(number):
      raise ValueError(f'{what} argument {key!r} in {spec!r} must be '
                       f'finite, got {value!r}.')
    out[key] = number
  return out


def check_path_component(value, what: str) -> str:
  """`value` if it can name one file or folder inside another; else a
  `ValueError` naming `what` and the value.

  A name from a dataset, a config or a file (a class, a cell, a split)
  that becomes part of a path must stay inside its folder: no separator
  (`/`, `\\`), not empty, `.` or `..`, no NUL, no leading `.` (hidden, so
  skipped when the folder is read back), at most 255 bytes.
  """
  problem = None
  if not isinstance(value, str) or not value:
    problem = 'is empty' if value == '' else 'is not a string'
  elif value in ('.', '..') or any(c in value for c in '/\\\0'):
    problem = 'would name a path outside its folder'
  elif value.startswith('.'):
    problem = 'starts with "." (a hidden name, skipped when read back)'
  elif len(value.encode('utf-8', 'surrogatepass')) > 255:
    problem = 'is longer than 255 bytes'
  if problem:
    raise ValueError(f'{what} {value!r} {problem}; it names a file or folder '
                     f'and must be one plain name (no "/", "\\", "..").')
  return value
