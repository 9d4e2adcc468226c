"""Checks a built documentation site reads offline (run by .ci/release-checks).

    python docs/check_site.py docs/_build/html [--browser]

Every page that holds math must load MathJax from the site itself (a
relative script path to a file that exists; the build copies it from the
docs extra's package, docs/conf.py), no page may load a script from the
network, and array arguments read `ArrayLike`, not the union it stands for
or Sphinx's wrapper of it. With `--browser`, every page that holds math is
also loaded in headless Chromium (`chromium --dump-dom`, no network used:
the pages are files) and must show typeset equations (MathJax's
`mjx-container`s) and no raw TeX (`\\[`, `\\(`, `\\frac`, `$$`) in its
visible text. Exits 1 naming each page that fails.
"""

import html
import html.parser
import os
import re
import shutil
import subprocess
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


_RAW_TEX = ('\\[', '\\(', '\\frac', '$$')


def unrendered_math(dom: str) -> list[str]:
  """What a page's rendered DOM (after its scripts ran) shows of raw TeX,
  or that it has no typeset equation; [] when its math is typeset."""
  if '<mjx-container' not in dom:
    return ['no typeset equation (MathJax did not run)']
  visible = re.sub(r'<(script|style|mjx-assistive-mml)\b[\s\S]*?</\1>', '',
                   dom)
  visible = html.unescape(re.sub(r'<[^>]+>', ' ', visible))
  return [f'raw TeX {tex!r} in its text' for tex in _RAW_TEX
          if tex in visible]


def rendered_dom(page: str, browser: str) -> str:
  """The DOM of `page` after its scripts ran, from headless Chromium."""
  out = subprocess.run(
      [browser, '--headless', '--no-sandbox', '--disable-gpu',
       '--virtual-time-budget=15000', '--dump-dom',
       'file://' + os.path.abspath(page)],
      capture_output=True, text=True, timeout=180, check=False)
  return out.stdout


def problems(site: str, *, browser: str = '') -> list[str]:
  """`page: what is wrong` for every page of `site` that would not read
  offline; [] when all do. `browser`: a Chromium to render the pages that
  hold math in ('' skips that check)."""
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
        if browser:
          found += [f'{page} in {browser}: {p}'
                    for p in unrendered_math(rendered_dom(page, browser))]
  if not math_pages:
    found.append(f'{site}: no page holds math (is this a built site?)')
  return found


if __name__ == '__main__':
  args = [a for a in sys.argv[1:] if a != '--browser']
  chromium = ''
  if '--browser' in sys.argv:
    chromium = shutil.which('chromium') or shutil.which('chromium-browser')
    if not chromium:
      sys.exit('--browser: no chromium on PATH (apt-get install chromium).')
  bad = problems(args[0] if args else 'docs/_build/html', browser=chromium)
  for line in bad:
    print(line)
  sys.exit(1 if bad else 0)
