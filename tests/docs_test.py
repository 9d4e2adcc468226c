"""The documentation site's API pages cover every public name.

The site itself is built with warnings as errors by `.ci/run`; this checks,
without building it, that each module's `__all__` is listed in an
autosummary of its API page under `docs/api/`, so a new public name cannot
go undocumented.
"""

import importlib
import importlib.util
import pathlib
import re
import shutil
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

_DOCS = pathlib.Path(__file__).resolve().parents[1] / 'docs'

# Module -> the API page that documents it.
_PAGES = {
    'cil.losses': 'losses',
    'cil.maml': 'maml',
    'cil.models': 'models',
    'cil.data': 'data',
    'cil.data.transforms': 'data',
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


def _check_site():
  """docs/check_site.py as a module (docs/ is not a package)."""
  spec = importlib.util.spec_from_file_location(
      'check_site', _DOCS / 'check_site.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class SiteCheckTest(absltest.TestCase):
  """docs/check_site.py (run on the built site by .ci/release-checks)
  tells a site that reads offline from one that fetches MathJax."""

  def _site(self, script: str) -> str:
    site = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, site, ignore_errors=True)
    (pathlib.Path(site) / '_static').mkdir()
    (pathlib.Path(site) / '_static' / 'tex-mml-svg.js').write_text('//')
    (pathlib.Path(site) / 'page.html').write_text(
        f'<html><body><div class="math notranslate">\\[x\\]</div>'
        f'{script}</body></html>')
    return site

  def test_local_mathjax_passes_and_a_cdn_fails(self):
    check = _check_site()
    self.assertEqual(check.problems(self._site(
        '<script defer src="_static/tex-mml-svg.js"></script>')), [])
    cdn = check.problems(self._site(
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/'
        'tex-mml-chtml.js"></script>'))
    self.assertLen(cdn, 2)
    self.assertIn('loads scripts from the network', cdn[0])
    self.assertIn('holds math but loads no local MathJax', cdn[1])
    missing = check.problems(self._site(
        '<script src="_static/sub/tex-mml-svg.js"></script>'))
    self.assertRegex(missing[0], 'is not in the site')
    union = check.problems(self._site(
        '<script src="_static/tex-mml-svg.js"></script>'
        '<em>Array | ndarray | bool</em>'))
    self.assertRegex(union[0], "shows 'Array | ndarray' where ArrayLike")

  def test_rendered_math_is_typeset_and_shows_no_raw_tex(self):
    check = _check_site()
    typeset = ('<p>Loss <mjx-container class="MathJax"><svg></svg>'
               '<mjx-assistive-mml><math>x</math></mjx-assistive-mml>'
               '</mjx-container></p><script>var t = "\\\\[";</script>')
    self.assertEqual(check.unrendered_math(typeset), [])
    self.assertEqual(check.unrendered_math('<p>\\[ L = -\\log p \\]</p>'),
                     ['no typeset equation (MathJax did not run)'])
    self.assertEqual(
        check.unrendered_math(typeset + '<p>and \\frac{1}{p} raw</p>'),
        ["raw TeX '\\\\frac' in its text"])


if __name__ == '__main__':
  absltest.main()
