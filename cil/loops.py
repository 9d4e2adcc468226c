"""A loop structure that XLA:CPU runs fast.

`unrolled_map(fn, xs)` is `jax.lax.map(fn, xs)` unrolled in Python: one copy
of `fn` per index of the leading axis, outputs stacked. `lax.map` and
`lax.scan` lower to a while loop, inside which XLA:CPU runs convolutions
much slower; `vmap` instead gives convolutions with batched weights, also
slower than this loop (docs/performance.md, "Numbers behind the code's
choices"). Compile time grows with the leading size, so use it for small
axes (seeds, tasks of a meta-batch).

`padded_batches(xs, batch_size)` feeds a jitted function a host array in
batches of one shape, so that it compiles once.

`stack(trees)` stacks pytrees of one structure leaf by leaf (the outputs
of `unrolled_map`, the seeds' states and metrics of the classifier step);
`unstack(tree)` slices one apart again.
"""

from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def unrolled_map(fn: Callable[[Any], Any], xs: Any) -> Any:
  """Applies `fn` to each slice of `xs` along axis 0; stacks the results."""
  return stack([fn(x) for x in unstack(xs)])


def stack(trees: Sequence[Any]) -> Any:
  """Pytrees of one structure stacked leaf by leaf on a new axis 0."""
  return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def unstack(tree: Any) -> list[Any]:
  """`stack`'s inverse: the slices of `tree` along its leaves' axis 0."""
  n = jax.tree.leaves(tree)[0].shape[0]
  return [jax.tree.map(lambda a, i=i: a[i], tree) for i in range(n)]


def padded_batches(xs: np.ndarray, batch_size: int
                   ) -> Iterator[tuple[np.ndarray, int]]:
  """`(batch, n)` over `xs` in order, `n` of the batch's rows real.

  Every batch has `batch_size` rows, the last zero-padded, so one compiled
  shape serves them all; an array no longer than one batch is given as it
  is.
  """
  for start in range(0, len(xs), batch_size):
    batch = xs[start:start + batch_size]
    n = len(batch)
    if len(xs) > batch_size and n < batch_size:
      batch = np.concatenate([batch, np.zeros((batch_size - n,)
                                              + batch.shape[1:], batch.dtype)])
    yield batch, n
