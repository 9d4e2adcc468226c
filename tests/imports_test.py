"""Tests of how the code's modules import one another, read from their
source (imports inside functions count): no circle among `cil`'s modules,
and no module reaches for a private name of another. The layering itself
is `lint-imports`'s (setup.cfg's contracts, run by .ci/run).
"""

import ast
import os
import shutil
import tempfile

from absl.testing import absltest

from testutil import ROOT

# The trees whose modules follow the rules: the package and what runs it.
TREES = ('cil', 'launch', 'configs', 'benchmarks')


def _modules(tree: str) -> dict:
  """Module name -> path of every module under `tree` (in ROOT)."""
  out = {}
  for dirpath, _, files in os.walk(os.path.join(ROOT, tree)):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(dirpath, f)
        name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        out[name.removesuffix('.__init__')] = path
  return out


_ALL = {k: v for tree in TREES for k, v in _modules(tree).items()}


def _private(name: str) -> bool:
  return name.startswith('_') and not name.endswith('__')


def _imports(path: str):
  """`(node, module, names)` of every import in the file, at any depth."""
  with open(path, encoding='utf-8') as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield node, a.name, ()
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      yield node, node.module, tuple(a.name for a in node.names)


def import_edges(modules: dict) -> dict:
  """Module -> the modules of `modules` it imports (a `from pkg import
  mod` is an edge to `pkg.mod`; a name from a package is one to it)."""
  edges = {m: set() for m in modules}
  for m, path in modules.items():
    for _, module, names in _imports(path):
      targets = [f'{module}.{n}' if f'{module}.{n}' in modules else module
                 for n in names] or [module]
      for t in targets:
        while t and t not in modules:
          t = t.rpartition('.')[0]
        if t and t != m:
          edges[m].add(t)
  return edges


def circles(edges: dict) -> list:
  """The strongly connected components with more than one module."""
  index, low, stack, on, out = {}, {}, [], set(), []

  def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        out.append(sorted(component))

  for v in sorted(edges):
    if v not in index:
      visit(v)
  return out


def private_uses(modules: dict) -> list:
  """`path:line: what` for each private name of another module that a
  module imports (`from m import _x`) or reads (`m._x`). Private modules
  (`cil._validation`) are the package's own and may be imported; the names
  they share are public in them."""
  found = []
  for m, path in modules.items():
    aliases = {}
    for node, module, names in _imports(path):
      for a in node.names:
        if not names:  # import a.b [as c]
          aliases[a.asname or a.name.split('.')[0]] = a.name
          continue
        full = f'{module}.{a.name}'
        if full in _ALL:
          aliases[a.asname or a.name] = full
        elif _private(a.name) and module in _ALL:
          found.append(f'{path}:{node.lineno}: from {module} import '
                       f'{a.name}')
    with open(path, encoding='utf-8') as f:
      tree = ast.parse(f.read(), path)
    for node in ast.walk(tree):
      if (isinstance(node, ast.Attribute) and _private(node.attr)
          and isinstance(node.value, ast.Name)
          and aliases.get(node.value.id) in _ALL
          and f'{aliases[node.value.id]}.{node.attr}' not in _ALL):
        found.append(f'{path}:{node.lineno}: {node.value.id}.{node.attr}')
  return found


class ImportsTest(absltest.TestCase):

  def test_no_circle_among_cil_modules_counting_imports_in_functions(self):
    self.assertEqual(circles(import_edges(_modules('cil'))), [])

  def test_the_circle_finder_finds_a_circle(self):
    # Positive control: a function-level import that closes a circle.
    edges = {'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}
    self.assertEqual(circles(edges), [['a', 'b', 'c']])
    modules = _modules('cil')
    edges = import_edges(modules)
    self.assertIn('cil.data.preparation', edges['cil.data.custom'])
    edges['cil.data.preparation'].add('cil.data.custom')
    self.assertEqual(circles(edges),
                     [['cil.data.custom', 'cil.data.preparation']])

  def test_no_module_uses_a_private_name_of_another(self):
    self.assertEqual(private_uses(_ALL), [])

  def test_the_private_name_finder_finds_both_forms(self):
    # Positive control on a file written here.
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
    path = os.path.join(folder, 'probe.py')
    with open(path, 'w', encoding='utf-8') as f:
      f.write('from cil.data.datasets import _DATASETS\n'
              'from cil import _validation\n'
              'from cil.experiments.classify import step\n'
              'def f():\n'
              '  return step._jitted_chunk, _validation.is_concrete\n')
    self.assertEqual(
        [u.split(': ', 1)[1] for u in private_uses({'probe': path})],
        ['from cil.data.datasets import _DATASETS', 'step._jitted_chunk'])


if __name__ == '__main__':
  absltest.main()
