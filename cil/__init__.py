"""cil: the Class Imbalance (CI) loss and its uses, in JAX.

Modules:
  cil.losses: imbalance measures, the CI loss, its peers and a registry.
"""

__version__ = '0.1.0'
