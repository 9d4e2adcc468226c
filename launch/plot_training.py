r"""Training-loss curves of classification runs: has training levelled off?

    python -m launch.plot_training \
        --workdir=results/studies/mnist_longtail_lenet --tuned=focal,cb,la,vs \
        --out=docs/results/study13_lenet_training

Reads one or more `launch.classify` workdirs (comma-separated, read as
one) and writes `<out>.{png,pdf,csv}`: each row's mean training loss per
epoch, a panel per protocol (`cil.plots.training_curves`). Prints, per
(protocol, row), the first and last epochs' losses and the change over
the last `--last` epochs as a share of the first epoch's loss, and whether
that is within `--tolerance` ("levelled off"). `--tuned` plots each grid's
row chosen on the validation split instead of the grid (as
`launch.compare --tuned`); `--rows` keeps only the rows named.
"""

from absl import flags
import numpy as np

from cil import plots
from cil.experiments import report
from launch import common

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'launch.classify workdir(s), comma-separated.',
    required=True)
_OUT = flags.DEFINE_string('out', None, 'Output stem.', required=True)
_TUNED = flags.DEFINE_list('tuned', [], 'As launch.compare --tuned.')
_ROWS = flags.DEFINE_list('rows', [], 'Only these rows; all when empty.')
_LAST = flags.DEFINE_integer('last', 3, 'Epochs the change is measured '
                             'over.', lower_bound=1)
_TOLERANCE = flags.DEFINE_float(
    'tolerance', 0.01, 'Levelled off: the change over the last epochs is '
    'at most this share of the first epoch\'s loss.', lower_bound=0.0)


def levelled_off(losses, *, last: int, tolerance: float) -> dict:
  """First and last epoch's loss, the change over the last `last` epochs
  as a share of the first's, and whether it is within `tolerance`."""
  losses = np.asarray(losses, float)
  if losses.size <= last:
    raise ValueError(f'{losses.size} epochs: --last={last} needs more.')
  change = abs(losses[-1] - losses[-1 - last]) / losses[0]
  return {'first': float(losses[0]), 'last': float(losses[-1]),
          'change': float(change), 'levelled': bool(change <= tolerance)}


def run():
  runs = [r for r in report.classify_runs(_WORKDIR.value.split(','))
          if '+' not in r['loss']]  # Prediction rules share the training.
  runs, choices = report.with_tuned(runs, _TUNED.value)
  if choices:
    print(report.choices_markdown(choices) + '\n')
  runs = report.select_rows(runs, _ROWS.value)
  print(f'| protocol | row | first epoch | last epoch | change over the '
        f'last {_LAST.value} (share of the first) | levelled off '
        f'(<= {_TOLERANCE.value:g}) |\n|---|---|---|---|---|---|')
  for r in runs:
    level = levelled_off(r['train_loss_per_epoch'], last=_LAST.value,
                         tolerance=_TOLERANCE.value)
    print(f"| {r['protocol']} | {r['loss']} | {level['first']:.4g} | "
          f"{level['last']:.4g} | {level['change']:.2e} | "
          f"{'yes' if level['levelled'] else 'no'} |")
  paths = plots.training_curves(runs, _OUT.value)
  print(f"\nWrote {paths['png']} (with its .pdf and .csv)")


if __name__ == '__main__':
  common.launch(run)
