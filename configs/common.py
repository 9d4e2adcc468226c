"""Pieces shared by the config files."""

from typing import Optional, Sequence

import ml_collections

from cil import losses


def loss_hparams() -> ml_collections.ConfigDict:
  """Every registry loss's scalar hyperparameters at their defaults.

  Keyed by canonical name (`--config.loss_hparams.focal.gamma=0.5`; an alias
  such as 'fl' in `losses` reads 'focal''s entry). The defaults come from
  the loss functions' signatures, so they are stated once, in
  `cil/losses.py`.
  """
  return ml_collections.ConfigDict(
      {name: losses.default_hparams(name) for name in losses.LOSS_NAMES})


def split_variant(arg: Optional[str], known: Sequence[str]) -> str:
  """The variant named by `--config=file.py:VARIANT` ('' is 'default')."""
  variant = (arg or 'default').strip()
  if variant not in known:
    raise ValueError(f'Unknown config variant {variant!r}; known: '
                     f'{", ".join(known)}.')
  return variant
