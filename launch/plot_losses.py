r"""Reproduces the paper's Fig. 2: loss and gradient against p for CE, FL, CI.

    python -m launch.plot_losses --out results/fig2

Writes `fig2_losses.png`, `fig2_losses.pdf` and the plotted numbers,
`fig2_losses.csv`.
"""

from absl import flags

from cil import plots
from launch import common

_OUT = flags.DEFINE_string('out', 'results/fig2', 'Directory to write to.')
_POINTS = flags.DEFINE_integer('points', 400, 'Points on the p axis (>= 2).')


def run():
  paths = plots.plot_loss_curves(_OUT.value, num_points=_POINTS.value)
  print(f"Fig. 2 written to {paths['png']} (also {paths['pdf']}; data: "
        f"{paths['csv']})")


if __name__ == '__main__':
  common.launch(run)
