"""Every relative link and image in the Markdown pages resolves to a file
or folder the repository tracks (a fresh clone has it)."""

import os
import re
import subprocess

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# [text](target) and ![alt](target); the target ends at a space or ')'.
_LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')


def _tracked() -> set[str]:
  out = subprocess.run(['git', '-C', _ROOT, 'ls-files'], capture_output=True,
                       text=True, check=True, timeout=60).stdout
  return set(out.split())


def _targets(text: str) -> list[str]:
  """The relative targets of a page's links, without `#fragment`s, outside
  code blocks and code spans."""
  text = re.sub(r'```.*?```', '', text, flags=re.S)
  text = re.sub(r'`[^`\n]*`', '', text)
  out = []
  for target in _LINK.findall(text):
    if re.match(r'^[a-z][a-z0-9+.-]*:', target) or target.startswith('#'):
      continue  # http:, https:, mailto: and in-page anchors.
    out.append(target.split('#')[0])
  return out


class MarkdownLinksTest(absltest.TestCase):

  def test_finds_links_and_images_but_not_code_or_urls(self):
    page = ('See [a](docs/a.md#x), ![f](docs/f.png) and [w](https://x.org)'
            '; `[c](not/me.md)`\n```\n[d](nor/me.md)\n```\n')
    self.assertEqual(_targets(page), ['docs/a.md', 'docs/f.png'])

  def test_every_relative_link_resolves_to_a_tracked_path(self):
    tracked = _tracked()
    folders = {os.path.dirname(p) for p in tracked}
    folders |= {f for p in folders for f in _parents(p)}
    pages = sorted(p for p in tracked if p.endswith('.md'))
    self.assertIn('README.md', pages)
    broken = []
    for page in pages:
      with open(os.path.join(_ROOT, page), encoding='utf-8') as f:
        text = f.read()
      for target in _targets(text):
        path = os.path.normpath(os.path.join(os.path.dirname(page), target))
        if path not in tracked and path.rstrip('/') not in folders:
          broken.append(f'{page}: {target}')
    self.assertEmpty(broken, 'links to files a clone does not have')


def _parents(path: str) -> list[str]:
  out = []
  while path:
    out.append(path)
    path = os.path.dirname(path)
  return out


if __name__ == '__main__':
  absltest.main()
