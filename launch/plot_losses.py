r"""Reproduces the paper's Fig. 2: loss and gradient against p for CE, FL, CI.

    python -m launch.plot_losses --out results/fig2

Writes `fig2_losses.png` and the plotted numbers, `fig2_losses.csv`.
"""

from absl import app
from absl import flags
from absl import logging

from cil import plots

_OUT = flags.DEFINE_string('out', 'results/fig2', 'Directory to write to.')
_POINTS = flags.DEFINE_integer('points', 400, 'Points on the p axis.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  paths = plots.plot_loss_curves(_OUT.value, num_points=_POINTS.value)
  logging.info('Wrote %s', paths)
  print(f"Fig. 2 written to {paths['png']} (data: {paths['csv']})")


if __name__ == '__main__':
  app.run(main)
