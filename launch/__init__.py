"""`python -m launch.NAME` entry points (run from the repository root).

They need the `experiments` extra; a missing package is named up front.
"""

from cil import _extras

_extras.require('ml_collections', what='the launchers (python -m launch.*)')
