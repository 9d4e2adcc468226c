"""Optional dependencies: import them, or name the extra that provides them.

The base install (`pip install cil`) is what `cil.losses`, `cil.maml` and
`cil.models` need. Datasets, experiments and figures need extras
(`setup.cfg`): `data`, `experiments` (which includes `data`), `all`.
"""

import importlib
from types import ModuleType

# Import name -> (distribution, extra that provides it).
_PROVIDERS = {
    'tensorflow_datasets': ('tensorflow-datasets', 'data'),
    'sklearn': ('scikit-learn', 'data'),
    'sklearn.datasets': ('scikit-learn', 'data'),
    'PIL': ('pillow', 'data'),
    'PIL.Image': ('pillow', 'data'),
    'matplotlib': ('matplotlib', 'experiments'),
    'matplotlib.figure': ('matplotlib', 'experiments'),
    'orbax.checkpoint': ('orbax-checkpoint', 'experiments'),
    'tqdm': ('tqdm', 'experiments'),
    'tqdm.auto': ('tqdm', 'experiments'),
    'scipy': ('scipy', 'experiments'),
    'scipy.stats': ('scipy', 'experiments'),
    'ml_collections': ('ml_collections', 'experiments'),
    'tensorboardX': ('tensorboardX', 'tb'),
}


def require(name: str, *, what: str) -> ModuleType:
  """Imports module `name`; if it is missing, says which extra to install.

  Args:
    name: the import name ('tensorflow_datasets', 'matplotlib', ...).
    what: what needs it, for the message ('cil.data', 'figures', ...).

  Raises:
    ImportError: naming the package and the extra, e.g. "cil.data needs
      tensorflow-datasets: pip install 'cil[data]' (or '.[data]' from a
      checkout)".
  """
  try:
    return importlib.import_module(name)
  except ImportError as e:
    package, extra = _PROVIDERS.get(name, (name, 'all'))
    raise ImportError(
        f"{what} needs {package}, which is not installed: pip install "
        f"'cil[{extra}]' (or '.[{extra}]' from a checkout; '[all]' for "
        f"everything).") from e
