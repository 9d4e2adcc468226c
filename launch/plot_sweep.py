r"""A classification sweep's figures from its per-seed scores.

    python -m launch.plot_sweep \
        --per_seed_csv=docs/results/components_per_seed.csv \
        --baseline=ce --out=docs/results/components

Reads a per-seed CSV (`python -m launch.compare --per_seed_csv`, or the
ones committed under `docs/results/`) and writes
`<out>_lambda_sweep.{png,pdf,csv}` (every metric against lambda, a row
per prediction rule: `cil.plots.metrics_vs_lambda`) and
`<out>_lambda_differences.{png,pdf,csv}` (each loss minus `--baseline`,
paired by seed, with its 95 % CI: `cil.plots.differences_vs_lambda`), the
figures a run with three or more imbalance degrees writes itself.
`--tuned=focal,cb,la,vs` puts each grid's row chosen on the validation
split in its place (`report.with_tuned`); `--rows` keeps only the rows
named.
"""

from absl import flags

from cil import plots
from cil.experiments import report
from launch import common

_CSV = flags.DEFINE_string('per_seed_csv', None, 'A per-seed CSV of '
                           'launch.compare.', required=True)
_BASELINE = flags.DEFINE_string('baseline', 'ce', 'The loss to subtract.')
_METRIC = flags.DEFINE_string('metric', 'accuracy', 'The metric of the '
                              'differences figure.')
_OUT = flags.DEFINE_string('out', None, 'Output stem (the figures append '
                           '_lambda_sweep and _lambda_differences).',
                           required=True)
_TUNED = flags.DEFINE_list(
    'tuned', [], 'Losses whose grid is replaced by the row chosen per '
    "protocol on the validation split ('<loss> (tuned)', as launch.compare "
    '--tuned).')
_ROWS = flags.DEFINE_list(
    'rows', [], 'Only these rows (losses, tuned rows, <loss>+posthoc, ...); '
    'all when empty.')


def run():
  runs, choices = report.with_tuned(
      report.runs_from_per_seed_csv(_CSV.value), _TUNED.value)
  if choices:
    print(report.choices_markdown(choices))
  runs = report.select_rows(runs, _ROWS.value)
  for r in runs:
    r['summary'] = report.summarize(r)
  sweep = plots.metrics_vs_lambda(runs, f'{_OUT.value}_lambda_sweep')
  differences = plots.differences_vs_lambda(
      report.paired_differences(runs, _BASELINE.value, _METRIC.value),
      f'{_OUT.value}_lambda_differences', baseline=_BASELINE.value,
      metric=_METRIC.value)
  print(f"Wrote {sweep['png']} and {differences['png']} (with their .pdf "
        f'and .csv)')


if __name__ == '__main__':
  common.launch(run)
