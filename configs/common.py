"""Pieces shared by the config files."""

from typing import Optional, Sequence

import ml_collections

from cil import losses


# The CI paper's logarithms: base 10 (Zhang et al. 2020, eq. (3)-(9)). The
# losses' own default is the natural log (optax's and the peers'); configs
# that reproduce the paper, and the studies of RESULTS.md run on its scale,
# state this base.
PAPER_LOG_BASE = 10.0


def loss_hparams(*, log_base: Optional[float] = None
                 ) -> ml_collections.ConfigDict:
  """Every registry loss's scalar hyperparameters at their defaults.

  Keyed by canonical name (`--config.loss_hparams.focal.gamma=0.5`; an alias
  such as 'fl' in `losses` reads 'focal''s entry). The defaults come from
  the loss functions' signatures, so they are stated once, in
  `cil/losses.py`; `log_base`, when given, replaces every loss's (the
  paper's configs pass `PAPER_LOG_BASE`).
  """
  table = {name: losses.default_hparams(name) for name in losses.LOSS_NAMES}
  if log_base is not None:
    for hparams in table.values():
      hparams['log_base'] = float(log_base)
  return ml_collections.ConfigDict(table)


def split_variant(arg: Optional[str], known: Sequence[str]) -> str:
  """The variant named by `--config=file.py:VARIANT` ('' is 'default')."""
  variant = (arg or 'default').strip()
  if variant not in known:
    raise ValueError(f'Unknown config variant {variant!r}; known: '
                     f'{", ".join(known)}.')
  return variant
