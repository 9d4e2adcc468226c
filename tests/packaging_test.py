"""Packaging: the base install's imports, declared dependencies, extras."""

import ast
import configparser
import os
import re
import subprocess
import sys
from unittest import mock

from absl.testing import absltest

from cil import _extras
from testutil import ROOT


# Import name -> distribution, where they differ.
_DISTRIBUTIONS = {'PIL': 'pillow', 'sklearn': 'scikit-learn',
                  'tensorflow_datasets': 'tensorflow-datasets',
                  'orbax': 'orbax-checkpoint', 'absl': 'absl-py',
                  'jaxlib': 'jaxlib'}
_STDLIB = set(sys.stdlib_module_names)
_LOCAL = {'cil', 'configs', 'launch', 'benchmarks', 'tests'}


def _requirements():
  parser = configparser.ConfigParser()
  parser.read(os.path.join(ROOT, 'setup.cfg'))

  def names(text):
    return {re.split(r'[<>=!~ ;\[]', line.strip())[0].lower()
            for line in text.splitlines()
            if line.strip() and not line.strip().startswith('#')}

  base = names(parser['options']['install_requires'])
  extras = {k: names(v) for k, v in parser['options.extras_require'].items()}
  return base, extras


def _imports(directory):
  """Top-level names imported (or `_extras.require`d) under `directory`."""
  found = set()
  for root, _, files in os.walk(os.path.join(ROOT, directory)):
    for name in files:
      if not name.endswith('.py'):
        continue
      with open(os.path.join(root, name), encoding='utf-8') as f:
        tree = ast.parse(f.read())
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          found |= {a.name.split('.')[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and (
            not node.level):
          found.add(node.module.split('.')[0])
        elif (isinstance(node, ast.Call)
              and getattr(node.func, 'attr', '') == 'require'
              and node.args and isinstance(node.args[0], ast.Constant)):
          found.add(node.args[0].value.split('.')[0])
  return found - _STDLIB - _LOCAL


class PackagingTest(absltest.TestCase):

  def test_every_imported_package_is_declared(self):
    base, extras = _requirements()
    declared = base.union(*extras.values())
    for directory in ('cil', 'configs', 'launch'):
      for module in sorted(_imports(directory)):
        dist = _DISTRIBUTIONS.get(module, module).lower()
        self.assertIn(dist, declared, msg=f'{directory} imports {module}')

  def test_base_install_is_what_losses_maml_models_need(self):
    base, extras = _requirements()
    self.assertEqual(base, {'jax', 'jaxlib', 'flax', 'optax', 'chex',
                            'absl-py', 'numpy'})
    self.assertLessEqual(extras['data'], extras['experiments'])
    self.assertLessEqual(extras['experiments'], extras['all'])
    # The three base modules import with every extra-only package blocked.
    blocked = ['tensorflow_datasets', 'sklearn', 'matplotlib', 'pyarrow',
               'ml_collections', 'tqdm', 'PIL', 'tensorboardX']
    code = ('import sys\n'
            'class Block:\n'
            '  def find_spec(self, name, path=None, target=None):\n'
            f'    if name.split(".")[0] in {blocked!r}:\n'
            '      raise ImportError("blocked: " + name)\n'
            'sys.meta_path.insert(0, Block())\n'
            'import cil.losses, cil.maml, cil.models\n'
            'print("ok")\n')
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    self.assertEqual(out.stdout.strip(), 'ok', out.stderr[-2000:])

  def test_a_missing_extra_is_named(self):
    with mock.patch('importlib.import_module',
                    side_effect=ImportError('No module')):
      with self.assertRaisesRegex(
          ImportError, r"cil.data needs tensorflow-datasets, which is not "
          r"installed: pip install 'cil\[data\]'"):
        _extras.require('tensorflow_datasets', what='cil.data')

  def test_license_and_typing_marker(self):
    with open(os.path.join(ROOT, 'LICENSE'), encoding='utf-8') as f:
      self.assertIn('Apache License', f.read(200))
    self.assertTrue(os.path.exists(os.path.join(ROOT, 'cil', 'py.typed')))


if __name__ == '__main__':
  absltest.main()
