"""Experiment configs: one file per family, `get_config(variant)` each.

Load them through a launcher (`--config=configs/classify.py:smoke`) or with
`configs.load('classify', 'smoke')` in Python; see each file's docstring.
"""

import importlib

from cil import _extras

_extras.require('ml_collections', what='configs/')


def load(family: str, variant: str = ''):
  """`configs/<family>.py`'s `get_config(variant)`: a ConfigDict."""
  module = importlib.import_module(f'configs.{family}')
  return module.get_config(variant or None)
