r"""Paired comparison of a run's losses against a baseline.

    python -m launch.compare --workdir results/mnist_sweep --baseline ce \
        --metric minority_recall [--out FILE.md] [--per_seed_csv FILE.csv]
    python -m launch.compare --workdir results/omniglot_lambda --baseline ce \
        [--per_task_csv FILE.csv]

Reads `<workdir>/results.json` (or, for a run still going, its finished
cells in `runs/`) and prints, per protocol (column, with its lambda) and
loss (row), the mean difference from the baseline over seeds, paired by
seed, with its 95 % CI in percentage points; `*` marks a CI that excludes
0 (`cil.experiments.report.paired_differences`). `--per_seed_csv` also
writes every seed's scores (`cil.experiments.report.per_seed_csv`).
`--tuned=focal,cb,la,vs` replaces each of those losses' grid by the row
chosen per protocol on the validation split (`report.tuned`).

On a `launch.fewshot` workdir it prints, per support distribution (row)
and loss (column), the mean difference of meta-test accuracy from the
baseline, paired by meta-test task (every loss meets the same tasks), with
its 95 % CI over the tasks (`report.fewshot_paired_differences`); only
`--metric=accuracy` applies there, and `--per_task_csv` writes every
task's accuracy (`report.per_task_csv`).
"""

from absl import flags

from cil import workdir
from cil.experiments import report
from launch import common

_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'A launch.classify or launch.fewshot workdir; or '
    'several launch.classify workdirs, comma-separated, read as one (their '
    'seeds pair: the same data, validation split and protocols).',
    required=True)
_BASELINE = flags.DEFINE_string(
    'baseline', 'ce', "The loss to subtract (a loss spec, or '<loss>+posthoc' "
    'for a run with --config.posthoc_tau).')
_METRIC = flags.DEFINE_enum(
    'metric', 'accuracy', ['accuracy', 'balanced_accuracy',
                           'minority_recall', 'macro_f1', 'g_mean',
                           'many_shot', 'medium_shot', 'few_shot'],
    'Per-seed metric to compare (many/medium/few_shot: the accuracy of the '
    'classes with > 100, 20-100, < 20 training images, or the run\'s '
    '--config.shot_thresholds).')
_OUT = flags.DEFINE_string('out', None, 'Also write the table here.')
_PER_SEED_CSV = flags.DEFINE_string(
    'per_seed_csv', None, 'Also write every seed\'s scores here, one row '
    'per (protocol, loss, seed).')
_TUNED = flags.DEFINE_list(
    'tuned', [], 'Losses whose grid rows (e.g. vs:gamma=0.1,tau=1, ...) '
    'are replaced by the row chosen per protocol on the validation split '
    "(a run with --config.validation): rows '<loss> (tuned)', the choices "
    'listed under the table.')
_PER_TASK_CSV = flags.DEFINE_string(
    'per_task_csv', None, 'A launch.fewshot workdir: also write every '
    'meta-test task\'s accuracy here, one row per (distribution, loss, '
    'task).')


def run():
  workdirs = _WORKDIR.value.split(',')
  if len(workdirs) > 1 and any(report.is_fewshot_workdir(w)
                               for w in workdirs):
    raise ValueError(f'--workdir={_WORKDIR.value}: several workdirs are '
                     'read as one for launch.classify workdirs only.')
  if len(workdirs) == 1 and report.is_fewshot_workdir(workdirs[0]):
    if _TUNED.value:
      raise ValueError(
          f'--tuned={",".join(_TUNED.value)}: {_WORKDIR.value} is a '
          'launch.fewshot workdir; choices on a validation split are made '
          'in launch.classify workdirs (drop --tuned).')
    if _METRIC.value != 'accuracy' or _PER_SEED_CSV.value:
      raise ValueError(
          f'--metric={_METRIC.value} / --per_seed_csv: {_WORKDIR.value} is a '
          'launch.fewshot workdir, which is compared by meta-test accuracy '
          'per task only (leave --metric at accuracy, drop --per_seed_csv).')
    if _PER_TASK_CSV.value:
      workdir.write_text(_PER_TASK_CSV.value,
                         report.per_task_csv(_WORKDIR.value))
    table = report.compare_fewshot_workdir(_WORKDIR.value,
                                           baseline=_BASELINE.value)
    print(table)
    if _OUT.value:
      workdir.write_text(_OUT.value, table + '\n')
    return
  if _PER_TASK_CSV.value:
    raise ValueError(f'--per_task_csv: {_WORKDIR.value} is a launch.classify '
                     'workdir, whose scores are per seed (--per_seed_csv).')
  if _PER_SEED_CSV.value:  # First: a workdir of one loss has no table.
    workdir.write_text(_PER_SEED_CSV.value,
                       report.per_seed_csv(workdirs))
  table = report.compare_workdir(workdirs, baseline=_BASELINE.value,
                                 metric=_METRIC.value,
                                 tuned_families=_TUNED.value)
  print(table)
  if _OUT.value:
    # Its folders are made; a path it cannot write is a named error.
    workdir.write_text(_OUT.value, table + '\n')


if __name__ == '__main__':
  common.launch(run)
