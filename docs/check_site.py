"""Checks a built documentation site reads offline (run by .ci/release-checks).

    python docs/check_site.py docs/_build/html

Every page that holds math must load MathJax from the site itself (a
relative script path to a file that exists; the build copies it from the
docs extra's package, docs/conf.py), no page may load a script from the
network, and array arguments read `ArrayLike`, not the union it stands for
or Sphinx's wrapper of it. Exits 1 naming each page that fails.
"""

import html.parser
import os
import sys


class _Scripts(html.parser.HTMLParser):
  """The `src` of every <script> and whether the page holds math."""

  def __init__(self):
    super().__init__()
    self.sources = []
    self.has_math = False

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == 'script' and attrs.get('src'):
      self.sources.append(attrs['src'])
    if 'math' in (attrs.get('class') or '').split():
      self.has_math = True


def problems(site: str) -> list[str]:
  """`page: what is wrong` for every page of `site` that would not read
  offline; [] when all do."""
  found, math_pages = [], 0
  for root, _, files in os.walk(site):
    for name in files:
      if not name.endswith('.html'):
        continue
      page = os.path.join(root, name)
      parser = _Scripts()
      with open(page, encoding='utf-8') as f:
        text = f.read()
      parser.feed(text)
      for expanded in ('Array | ndarray', 'TypeAliasForwardRef'):
        if expanded in text:
          found.append(f'{page}: shows {expanded!r} where ArrayLike goes')
      remote = [s for s in parser.sources if '://' in s or s.startswith('//')]
      if remote:
        found.append(f'{page}: loads scripts from the network: {remote}')
      if parser.has_math:
        math_pages += 1
        local = [s for s in parser.sources if 'tex-mml-svg' in s]
        if not local:
          found.append(f'{page}: holds math but loads no local MathJax')
        for src in local:
          path = os.path.normpath(os.path.join(root, src.split('?')[0]))
          if not os.path.isfile(path):
            found.append(f'{page}: MathJax {src} is not in the site')
  if not math_pages:
    found.append(f'{site}: no page holds math (is this a built site?)')
  return found


if __name__ == '__main__':
  bad = problems(sys.argv[1] if len(sys.argv) > 1 else 'docs/_build/html')
  for line in bad:
    print(line)
  sys.exit(1 if bad else 0)
