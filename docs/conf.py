"""Sphinx configuration of cil's documentation site.

Build it from the repository root (the `docs` extra installs Sphinx):

    python -m sphinx -W --keep-going -n -b html docs docs/_build/html

`-W` turns every warning into an error and `-n` (nitpicky) reports every
cross-reference that does not resolve, which is the internal link check;
the Markdown pages are read by myst-parser, the API pages are generated from
the docstrings by autosummary.
"""

import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..'))
sys.path.insert(0, ROOT)  # `configs` (the how-to pages show their docstrings).

import cil  # noqa: E402  pylint: disable=g-import-not-at-top
# MathJax from a package (the docs extra's django-static-mathjax ships its
# files; Django is not needed), copied into the site: equations render with
# the network off. `docs/check_site.py` checks the built pages load it.
# pylint: disable-next=g-import-not-at-top
import mathjax as _mathjax_files  # noqa: E402

MATHJAX_FILE = 'tex-mml-svg.js'  # SVG output: no web fonts to fetch.

project = 'cil'
author = 'The cil authors'
copyright = '2026, The cil authors'  # pylint: disable=redefined-builtin
release = cil.__version__
version = cil.__version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.doctest',
    'sphinx.ext.mathjax',
    'sphinx.ext.napoleon',
    'sphinx.ext.viewcode',
]
source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build']
root_doc = 'index'
templates_path = ['_templates']

html_theme = 'furo'
html_title = f'cil {release}'
html_static_path = [os.path.join(os.path.dirname(_mathjax_files.__file__),
                                 'static', 'mathjax', 'es5', MATHJAX_FILE)]
mathjax_path = MATHJAX_FILE  # Relative: the copy in _static.

myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence']
myst_heading_anchors = 3

autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {'members': True, 'show-inheritance': False}
autodoc_typehints = 'description'
# `jax.typing.ArrayLike` shown by its name, not expanded into the union it
# stands for (the loss modules' annotations are strings: PEP 563).
autodoc_type_aliases = {'ArrayLike': 'ArrayLike'}
autodoc_member_order = 'bysource'
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
add_module_names = False

# Cross-references the nitpicky check cannot resolve because they point into
# other projects' documentation (no intersphinx: the build runs offline).
nitpick_ignore_regex = [
    ('py:.*', r'(jax|jnp|np|numpy|flax|nn|optax|chex|ml_collections|orbax|'
              r'tfds|tensorflow_datasets|collections|typing|enum|dataclasses|'
              r'pathlib|os|abc|train_state|Any|Callable|Optional|Sequence|'
              r'Iterable|Iterator|Mapping|Union|PyTree|ArrayLike|Array|'
              r'Literal|NamedTuple|TypeVar|Self)(\..*)?'),
    ('py:.*', r'(array|float|int|str|bool|dict|list|tuple|bytes|object|'
              r'None|callable|optional|sequence|iterable|function|module|'
              r'pytree|PRNGKey|ndarray|dtype|Array-like)'),
    # Shapes and other words in the docstrings' type fields.
    ('py:.*', r'.*[\[\]\(\) ,].*'),
    ('py:class', r'cil\..*\.(Module|TrainState|ConfigDict)'),
    ('py:class', r'ArrayTree'),  # flax.training.train_state's annotation
    # `autodoc_type_aliases`' ArrayLike, as Sphinx wraps it.
    ('py:class', r"'ArrayLike'|TypeAliasForwardRef"),
]


# Links between the repository's Markdown files, as the site lays them out:
# the root pages are included by the pages below, the `docs/` pages are
# pages of their own.
_ROOT_PAGES = {'README.md': 'quickstart.md', 'WORKSPACE.md': 'workspace.md',
               'RESULTS.md': 'results.md', 'CHANGELOG.md': 'changelog.md'}
_LINK = re.compile(r'\]\(([^)#\s]+)(#[^)\s]*)?\)')


def _site_link(match: 're.Match') -> str:
  target, anchor = match.group(1), match.group(2) or ''
  if '://' in target or target.startswith('mailto:'):
    return match.group(0)
  if target in _ROOT_PAGES:
    target = _ROOT_PAGES[target]
  elif target.startswith('docs/'):
    target = target[len('docs/'):]
  elif os.path.exists(os.path.join(ROOT, target)):
    target = os.path.join('..', target)  # A source file, from docs/.
  return f']({target}{anchor})'


def _rewrite_included(app, relative_path, parent_docname, content):
  """Rewrites the links of a root Markdown page included into the site."""
  del app, parent_docname
  if os.path.basename(str(relative_path)) in _ROOT_PAGES:
    content[0] = _LINK.sub(_site_link, content[0])


def _drop_type_docstrings(app, what, name, obj, options, lines):
  """A constant (`LOSS_NAMES`, `DEFAULT_MODELS`) is shown by its value, not
  by the docstring of its type (tuple's, dict's)."""
  del app, name, options
  if what in ('data', 'attribute') and lines and (
      type(obj).__doc__ or '').strip().startswith(lines[0].strip()):
    lines.clear()


def _alias_names(app, doctree, docname):
  """`Optional[ArrayLike]` shows as `ArrayLike | None`: inside a union,
  Sphinx writes an alias as the nodes `TypeAliasForwardRef`, `(`,
  `'ArrayLike'`, `)`; they become the one name."""
  del app, docname
  from docutils import nodes  # pylint: disable=g-import-not-at-top
  for text in list(doctree.findall(nodes.Text)):
    if str(text) != 'TypeAliasForwardRef':
      continue
    node = text
    while (node.parent is not None and node.parent.parent is not None
           and node.parent.astext() == 'TypeAliasForwardRef'):
      node = node.parent
    parent = node.parent
    if parent is None:
      continue
    i = parent.index(node)
    parts = parent.children[i:i + 4]
    if (len(parts) < 4 or parts[1].astext() != '('
        or not parts[3].astext().startswith(')')):
      continue
    name, rest = parts[2].astext().strip("'"), parts[3].astext()[1:]
    for part in parts:
      parent.remove(part)
    parent.insert(i, nodes.emphasis(text=name + rest))


def setup(app):
  app.connect('doctree-resolved', _alias_names)
  app.connect('include-read', _rewrite_included)
  app.connect('autodoc-process-docstring', _drop_type_docstrings)
