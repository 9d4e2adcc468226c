"""The README's example runs as written."""

import os
import re

from absl.testing import absltest
from testutil import ROOT


class ReadmeTest(absltest.TestCase):

  def test_python_example_runs(self):
    with open(os.path.join(ROOT, 'README.md')) as f:
      blocks = re.findall(r'```python\n(.*?)```', f.read(), flags=re.S)
    self.assertNotEmpty(blocks)
    for block in blocks:
      namespace = {}
      exec(compile(block, 'README.md', 'exec'), namespace)  # noqa: S102
    self.assertEqual(namespace['loss'].shape, ())

  def test_commands_match_ci(self):
    with open(os.path.join(ROOT, 'README.md')) as f:
      readme = f.read()
    with open(os.path.join(ROOT, 'WORKSPACE.md')) as f:
      workspace = f.read()
    with open(os.path.join(ROOT, '.ci', 'run')) as f:
      ci_commands = [line for line in f.read().splitlines()
                     if line and not line.startswith(('#', 'set ', 'cd '))]
    # The README's test command, the layering contracts, the release
    # checks (with the extras they need), then the slow suite (as WORKSPACE
    # says).
    self.assertLen(ci_commands, 5)
    self.assertIn(ci_commands[0], readme)
    self.assertEqual(ci_commands[1:], [
        '.venv/bin/lint-imports',
        ".venv/bin/pip install -q -e '.[docs,release]'",
        '.ci/release-checks',
        '.venv/bin/python -m pytest -m slow'])
    for command in ('.venv/bin/lint-imports', '.ci/release-checks',
                    '.venv/bin/python -m pytest -m slow'):
      self.assertIn(command, workspace)

  def test_readme_starts_with_the_two_commands(self):
    with open(os.path.join(ROOT, 'README.md')) as f:
      readme = f.read()
    commands = re.findall(r'```bash\n(.*?)```', readme, flags=re.S)
    self.assertGreaterEqual(len(commands), 2)
    self.assertIn('python -m launch.classify', commands[0])
    self.assertIn('python -m pytest', commands[1])
    # They open the README: before the first, only the title, the
    # introduction and the heading of their own section (no other section
    # and no other code).
    head = readme[:readme.index('```bash')]
    self.assertLen(re.findall(r'^## ', head, flags=re.M), 1)
    self.assertNotIn('```', head)


if __name__ == '__main__':
  absltest.main()
