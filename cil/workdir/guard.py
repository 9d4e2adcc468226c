"""The non-finite guard (`check_finite`) and the checksums of saved trees."""

import hashlib
from typing import Any, Iterable, Optional

import jax
import numpy as np

from cil import distributed
from cil import errors


def _leaves_with_paths(tree: Any) -> Iterable[tuple[str, Any]]:
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    yield jax.tree_util.keystr(path), leaf


def first_non_finite(tree: Any) -> Optional[str]:
  """The path of the first leaf of `tree` holding NaN/inf, or None.

  Leaves sharded across processes are gathered (`cil.distributed.to_host`),
  so every process must call it on such a tree.
  """
  for name, leaf in _leaves_with_paths(distributed.to_host(tree)):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.inexact) and not np.all(np.isfinite(a)):
      return name or '(value)'
  return None


def check_finite(cell: str, step: int, **quantities: Any) -> None:
  """Raises `errors.NonFiniteError` if any quantity (a pytree) has NaN/inf.

  Args:
    cell: what is being run (e.g. 'odd10/ci').
    step: the step (or epoch) the quantities belong to.
    **quantities: name -> array or pytree, e.g. `loss=...`, `params=...`.
  """
  for name, value in quantities.items():
    where = first_non_finite(value)
    if where is not None:
      leaf = '' if where == '(value)' else f' (at {where})'
      raise errors.NonFiniteError(
          f'{cell}: non-finite {name}{leaf} at step {step}. The run '
          f'diverged (check the learning rates and loss hyperparameters); '
          f'nothing was recorded as finished and the last good checkpoint '
          f'is kept.')


def tree_checksum(tree: Any) -> str:
  """SHA-256 of a pytree's structure, shapes, dtypes and values."""
  digest = hashlib.sha256()
  for name, leaf in _leaves_with_paths(distributed.to_host(tree)):
    a = np.asarray(leaf)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
      # A step counter saved as an int32 array restores as whatever the
      # target holds (a Python int): compare values, not widths.
      a = a.astype(np.int64)
    a = np.ascontiguousarray(a)
    digest.update(f'{name}|{a.dtype.kind}|{a.shape}|'.encode())
    digest.update(a.tobytes())
  return digest.hexdigest()
