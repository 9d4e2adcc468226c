"""The documentation site's API pages cover every public name.

The site itself is built with warnings as errors by `.ci/run`; this checks,
without building it, that each module's `__all__` is listed in an
autosummary of its API page under `docs/api/`, so a new public name cannot
go undocumented.
"""

import importlib
import pathlib
import re

from absl.testing import absltest
from absl.testing import parameterized

_DOCS = pathlib.Path(__file__).resolve().parents[1] / 'docs'

# Module -> the API page that documents it.
_PAGES = {
    'cil.losses': 'losses',
    'cil.maml': 'maml',
    'cil.models': 'models',
    'cil.data': 'data',
    **{f'cil.detection.{m}': 'detection' for m in (
        'anchors', 'boxes', 'cascade', 'evaluate', 'io', 'metrics', 'r2cnn',
        'roi_align', 'synthetic')},
    'cil.experiments.classify': 'experiments',
    'cil.experiments.fewshot': 'experiments',
    'cil.experiments.detect': 'experiments',
    'cil.errors': 'infrastructure',
    'cil.metrics': 'infrastructure',
    'cil.distributed': 'infrastructure',
    'cil.runtime': 'infrastructure',
    'cil.workdir': 'infrastructure',
}


def _listed(page: str) -> dict[str, set[str]]:
  """Module -> names in the autosummary blocks after its currentmodule."""
  listed, module, in_summary = {}, None, False
  for line in (_DOCS / 'api' / f'{page}.md').read_text().splitlines():
    if m := re.match(r'\.\. currentmodule:: (\S+)', line):
      module, in_summary = m.group(1), False
    elif line.startswith('.. autosummary::'):
      in_summary = True
    elif in_summary and re.match(r'   [A-Za-z_]\w*$', line):
      listed.setdefault(module, set()).add(line.strip())
    elif line.startswith('```'):
      in_summary = False
  return listed


class ApiPagesTest(parameterized.TestCase):

  @parameterized.parameters(*_PAGES.items())
  def test_every_public_name_has_an_api_entry(self, module, page):
    names = set(importlib.import_module(module).__all__)
    listed = _listed(page).get(module, set())
    self.assertEqual(sorted(names - listed), [],
                     f'add them to docs/api/{page}.md')
    self.assertEqual(sorted(listed - names), [],
                     f'docs/api/{page}.md lists names not in {module}.__all__')

  def test_every_api_page_is_in_the_api_toctree(self):
    index = (_DOCS / 'api' / 'index.md').read_text()
    for page in set(_PAGES.values()):
      self.assertIn(f'\n{page}\n', index)


if __name__ == '__main__':
  absltest.main()
