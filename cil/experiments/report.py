"""Tables and paired statistics of the runners' results.

* Classification (`cil.experiments.classify`): `summarize` (mean and 95 %
  CI over seeds of each per-seed metric; the metrics themselves are
  `cil.metrics.seed_scores`'), `with_variants` (other prediction rules of
  the same models as rows: post-hoc adjustment, decoupled classifiers),
  `markdown_table` (Table I's shape), `paired_differences` /
  `compare_workdir` (each loss minus a baseline, paired by seed: `python
  -m launch.compare`).
* Few-shot (`cil.experiments.fewshot`): `fewshot_table` (Table IV's
  shape), `fewshot_paired_differences` / `compare_fewshot_workdir` (each
  loss minus a baseline, paired by meta-test task: `python -m
  launch.compare` on a `launch.fewshot` workdir).

Detection's tables are `cil.detection.metrics.table_markdown` and
`launch.compare_detections`'.
"""

import csv
import io
import math
import os
from typing import Sequence, Union

import numpy as np

from cil import losses
from cil import metrics
from cil import workdir as workdir_lib

# What a finished cell's record holds (checked when it is read back).
CLASSIFY_RECORD_KEYS = ('protocol', 'loss', 'per_seed')
FEWSHOT_RECORD_KEYS = ('loss', 'meta_loss', 'distributions')


# A classify run's other prediction rules for the same trained models: each
# seed's record holds their scores under these keys, and `with_variants`
# makes them rows of their own, named '<loss>+<key>': post-hoc logit
# adjustment (`--config.posthoc_tau`) and the decoupled classifiers
# (`--config.decouple`: cRT, tau-normalisation, LWS).
POSTHOC = 'posthoc'
VARIANTS = (POSTHOC, 'crt', 'tau_norm', 'lws')
# With `--config.validation`, each seed's (and each rule's) accuracy and
# balanced accuracy on the held-out split, under this key: what `tuned`
# chooses by (never the test scores).
VALIDATION = 'validation'
VALIDATION_METRICS = ('accuracy', 'balanced_accuracy')
VALIDATION_PREFIX = 'val_'  # Their columns in `per_seed_csv`.


def with_variants(runs: Sequence[dict]) -> list[dict]:
  """`runs` followed by each run's other prediction rules as runs.

  A run whose seeds hold scores under a key of `VARIANTS` (the same
  models' test predictions under that rule) gives a second run, loss
  `'<loss>+<key>'`, with those scores as its `per_seed` (beside the seed's
  split summary), so tables, paired comparisons (`ce+posthoc` minus `ce`
  is the rule's effect on the same models) and plots treat it as a loss of
  its own. Runs without them are returned as they are.
  """
  out = list(runs)
  for variant in VARIANTS:
    for run in runs:
      if not run['per_seed'] or variant not in run['per_seed'][0]:
        continue
      # The seed's split description, its scores replaced by the variant's.
      # A rule without validation scores of its own has none (not the
      # plain model's).
      per_seed = [{**{k: v for k, v in s.items()
                      if k not in VARIANTS + (VALIDATION,)},
                   **s[variant]} for s in run['per_seed']]
      out.append({'protocol': run['protocol'],
                  'loss': f"{run['loss']}+{variant}",
                  'loss_hparams': run.get('loss_hparams', {}),
                  'per_seed': per_seed})
  return out


SUMMARY_METRICS = ('accuracy', 'balanced_accuracy', 'minority_recall',
                   'macro_f1', 'g_mean') + metrics.SHOT_GROUPS + (
                       'imbalance_degree', 'imbalance_ratio')


def summarize(run: dict) -> dict:
  """Mean and 95 % CI over seeds of each scalar metric."""
  out = {}
  for key in SUMMARY_METRICS:
    values = [s.get(key) for s in run['per_seed']]
    # None: no such classes (a balanced set has no minority, a set of
    # 50-image classes no many-shot ones) or a record from before the
    # metric.
    if any(x is None for x in values):
      out[key] = {'mean': None, 'ci95': None}
      continue
    mean, half = metrics.mean_confidence_interval(values)
    out[key] = {'mean': mean, 'ci95': half}
  if all('per_class_recall' in s for s in run['per_seed']):
    recalls = np.array([s['per_class_recall'] for s in run['per_seed']],
                       dtype=float)  # None (absent class, from JSON) -> NaN.
    with np.errstate(invalid='ignore'):  # A class no seed tested: NaN.
      tested = (~np.isnan(recalls)).sum(axis=0)
      mean = np.where(tested > 0, np.nansum(recalls, axis=0)
                      / np.maximum(tested, 1), np.nan)
    out['per_class_recall_mean'] = mean.tolist()
  return out


def paired_differences(runs: Sequence[dict], baseline: str,
                       metric: str = 'accuracy') -> list[dict]:
  """Each loss minus `baseline`, paired by seed, per protocol.

  Seeds share the training subsample, the initialisation and the batch
  order across losses, so the per-seed difference removes most of the
  sampling noise that the CIs of the two means carry.

  Args:
    runs: `results.json`'s runs (with `per_seed`).
    baseline: the loss (spec) to subtract.
    metric: a per-seed metric (accuracy, balanced_accuracy,
      minority_recall, macro_f1, g_mean, many_shot, medium_shot, few_shot).

  Returns:
    One dict per (protocol, loss != baseline): protocol, lambda (mean over
    seeds), loss, seeds, mean and ci95 of the difference (in the metric's
    units), and `significant` (the 95 % CI excludes 0).

  Raises:
    ValueError: the baseline is missing for a protocol, or the two runs
      hold different seeds.
  """
  by_key = {(r['protocol'], r['loss']): r for r in runs}
  out = []
  for (protocol, loss), run in by_key.items():
    if loss == baseline:
      continue
    base = by_key.get((protocol, baseline))
    if base is None:
      raise ValueError(f'No {baseline!r} run for protocol {protocol!r}; '
                       f'losses present: {sorted({k[1] for k in by_key})}.')
    a = {s['seed']: s for s in run['per_seed']}
    b = {s['seed']: s for s in base['per_seed']}
    if set(a) != set(b):
      raise ValueError(f'{protocol}: {loss!r} has seeds {sorted(a)} but '
                       f'{baseline!r} has {sorted(b)}; pairing needs the '
                       f'same seeds.')
    if any(a[k].get(metric) is None or b[k].get(metric) is None for k in a):
      continue  # e.g. minority recall of a balanced protocol.
    diffs = [a[k][metric] - b[k][metric] for k in sorted(a)]
    mean, half = metrics.mean_confidence_interval(diffs)
    out.append({'protocol': protocol, 'loss': loss,
                'lambda': float(np.mean([s['imbalance_degree']
                                         for s in run['per_seed']])),
                'seeds': len(diffs), 'mean': mean, 'ci95': half,
                'significant': bool(half == half and abs(mean) > half)})
  return out


TUNED_SUFFIX = ' (tuned)'


def _family(loss: str) -> str:
  """The registry name of a row's loss ('vs:gamma=0.1' -> 'vs'); '' for
  a prediction rule's row ('ce+posthoc') or a cell's own name."""
  if '+' in loss:
    return ''
  try:
    return losses.split_spec(loss)[0]
  except ValueError:
    return ''


def tuned(runs: Sequence[dict], families: Sequence[str], *,
          metric: str = 'balanced_accuracy') -> tuple[list, list]:
  """Each family's hyperparameters chosen on the validation split.

  For every protocol and every loss family named (e.g. 'vs'), the rows of
  that loss (its grid: 'vs:gamma=0.1,tau=1', 'vs:gamma=0.2,tau=1', ...)
  compete by their seeds' mean `metric` on the held-out split (each
  seed's `VALIDATION` scores, `--config.validation`); the test scores are
  never read for the choice. The winner (the first of equals, in `runs`'
  order) is added as a row '<family> (tuned)' with its seeds' scores, so
  that paired statistics compare it with any other row of the protocol;
  one choice per protocol (per lambda), shared by its seeds.

  Args:
    runs: a workdir's runs (`with_variants` or not).
    families: registry names of the losses to choose for.
    metric: 'balanced_accuracy' or 'accuracy' on the validation split.

  Returns:
    `(runs + tuned rows, choices)`: one choice per (protocol, family):
    protocol, family, chosen (the row's loss), and candidates (each row's
    mean validation score, in `runs`' order).

  Raises:
    ValueError: a family with no row in a protocol, or a candidate seed
      without validation scores (a run without `--config.validation`).
  """
  protocols = list(dict.fromkeys(r['protocol'] for r in runs))
  added, choices = [], []
  for family in families:
    family = losses.canonical_name(family)
    for protocol in protocols:
      candidates = [r for r in runs if r['protocol'] == protocol
                    and _family(r['loss']) == family]
      if not candidates:
        raise ValueError(
            f'--tuned={family}: no {family!r} row in protocol {protocol!r} '
            f'(rows: {sorted({r["loss"] for r in runs})}).')
      scores = {}
      for run in candidates:
        values = []
        for seed in run['per_seed']:
          held = seed.get(VALIDATION) or {}
          if held.get(metric) is None:
            raise ValueError(
                f'{protocol}/{run["loss"]}, seed {seed["seed"]}: no '
                f'{metric} on a validation split; a choice needs a run with '
                f'--config.validation (train:F or a split).')
          values.append(held[metric])
        scores[run['loss']] = float(np.mean(values))
      best = max(candidates, key=lambda r: scores[r['loss']])
      choices.append({'protocol': protocol, 'family': family,
                      'chosen': best['loss'], 'metric': metric,
                      'candidates': scores})
      added.append({**best, 'loss': family + TUNED_SUFFIX,
                    'chosen': best['loss']})
  return list(runs) + added, choices


def with_tuned(runs: Sequence[dict], families: Sequence[str]
               ) -> tuple[list, list]:
  """`tuned`'s rows in place of the grids they were chosen from (the
  grids' other prediction rules, '<spec>+posthoc', ..., stay); `(runs,
  choices)`, `runs` as given when `families` is empty."""
  if not families:
    return list(runs), []
  runs, choices = tuned(runs, families)
  grids = {c['family'] for c in choices}
  return [r for r in runs if _family(r['loss']) not in grids], choices


def select_rows(runs: Sequence[dict], rows: Sequence[str]) -> list[dict]:
  """The runs whose row (loss) is in `rows`; all of them when `rows` is
  empty.

  Raises:
    ValueError: a row named is not among the runs'.
  """
  if not rows:
    return list(runs)
  present = {r['loss'] for r in runs}
  missing = sorted(set(rows) - present)
  if missing:
    raise ValueError(f'--rows: {missing} not among the rows '
                     f'{sorted(present)}.')
  return [r for r in runs if r['loss'] in rows]


def choices_markdown(choices: Sequence[dict]) -> str:
  """`tuned`'s choices as a table: protocol, loss, the chosen row, and each
  candidate's mean validation score (%)."""
  lines = ['Chosen on the validation split by mean '
           f'{choices[0]["metric"] if choices else "score"} over seeds '
           '(the test split is not read):', '',
           '| protocol | loss | chosen | candidates (validation, %) |',
           '|---|---|---|---|']
  for c in choices:
    candidates = ', '.join(f'{k} {100 * v:.2f}'
                           for k, v in c['candidates'].items())
    lines.append(f'| {c["protocol"]} | {c["family"]} | {c["chosen"]} | '
                 f'{candidates} |')
  return '\n'.join(lines)


# What must agree for seeds of two classify workdirs to be paired: the same
# (protocol, seed) then draws the same training subsample.
_PAIRING_FIELDS = ('dataset', 'validation', 'image_size', 'test_split')


def classify_runs(workdirs: Union[str, Sequence[str]]) -> list[dict]:
  """The finished runs of one or more `launch.classify` workdirs, the
  other prediction rules as rows (`with_variants`).

  Several workdirs (e.g. a second run that adds losses) are read as one:
  the same (protocol, seed) gives the same subsample in each, so their
  seeds pair.

  Raises:
    ValueError: two workdirs hold the same (protocol, loss), or differ in
      what decides the subsample (dataset, validation split, image size,
      test split).
  """
  if isinstance(workdirs, str):
    workdirs = [workdirs]
  runs, owner, settings = [], {}, {}
  for workdir in workdirs:
    config_path = os.path.join(workdir, 'config.json')
    if os.path.exists(config_path):
      config = workdir_lib.read_json(config_path).get('config', {})
      mine = {k: config.get(k) for k in _PAIRING_FIELDS}
      if settings and mine != settings[1]:
        raise ValueError(
            f'{workdir} and {settings[0]} cannot be paired by seed: they '
            f'differ in {sorted(k for k in mine if mine[k] != settings[1][k])} '
            f'({mine} vs {settings[1]}).')
      settings = settings or (workdir, mine)
    for run in with_variants(
        workdir_lib.read_runs(workdir, keys=CLASSIFY_RECORD_KEYS)):
      key = (run['protocol'], run['loss'])
      if key in owner:
        raise ValueError(f'{key[0]}/{key[1]} is in both {owner[key]} and '
                         f'{workdir}; compare them separately.')
      owner[key] = workdir
      runs.append(run)
  return runs


def per_seed_csv(workdir: Union[str, Sequence[str]]) -> str:
  """A workdir's per-seed scores as CSV text, one row per (protocol, loss,
  seed), the other prediction rules as losses '<loss>+posthoc', ...
  (`with_variants`): the numbers behind every table and paired comparison,
  for analyses of one's own. Columns: protocol, lambda, loss, seed, then
  `SUMMARY_METRICS` without the protocol's own (empty where a metric has no
  classes), then the validation split's scores ('val_accuracy',
  'val_balanced_accuracy'; empty without `--config.validation`). Several
  workdirs are read as one (`classify_runs`)."""
  runs = classify_runs(workdir)
  scores = [m for m in SUMMARY_METRICS
            if m not in ('imbalance_degree', 'imbalance_ratio')]
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  held = [VALIDATION_PREFIX + m for m in VALIDATION_METRICS]
  writer.writerow(['protocol', 'lambda', 'loss', 'seed'] + scores + held)
  for run in runs:
    for s in run['per_seed']:
      val = s.get(VALIDATION) or {}
      writer.writerow(
          [run['protocol'], f"{s['imbalance_degree']:.4f}", run['loss'],
           s['seed']] + ['' if s.get(m) is None else f'{s[m]:.6g}'
                         for m in scores]
          + ['' if val.get(m) is None else f'{val[m]:.6g}'
             for m in VALIDATION_METRICS])
  return out.getvalue()


def compare_workdir(workdir: Union[str, Sequence[str]], *, baseline: str,
                    metric: str = 'accuracy',
                    tuned_families: Sequence[str] = ()) -> str:
  """`paired_differences` of a workdir's runs as a markdown table.

  Reads `results.json`, or the finished cells in `runs/` while a run is
  still going; other prediction rules of the same models are rows
  '<loss>+posthoc', '<loss>+crt', ... (`with_variants`). Rows: losses;
  columns: protocols in order of lambda; cells: mean difference ± 95 % CI
  in percentage points, `*` where the CI excludes 0. With
  `tuned_families`, each of those losses' grid is replaced by its row
  chosen on the validation split ('<loss> (tuned)', `tuned`), and the
  choices are listed under the table. Several workdirs are read as one
  (`classify_runs`).
  """
  runs = classify_runs(workdir)
  runs, choices = with_tuned(runs, tuned_families)
  if not baseline.endswith(TUNED_SUFFIX):
    name, plus, suffix = baseline.partition('+')  # 'ce+posthoc'
    baseline = losses.canonical_spec(name) + plus + suffix
  diffs = paired_differences(runs, baseline, metric)
  if not diffs:
    raise ValueError(f'{workdir}: nothing to compare with {baseline!r} '
                     f'(finished cells: {len(runs)}).')
  protocols = sorted({(d['lambda'], d['protocol']) for d in diffs})
  names = list(dict.fromkeys(d['loss'] for d in diffs))
  cell = {(d['protocol'], d['loss']): d for d in diffs}
  lines = [f'{metric}: loss - {baseline}, percentage points, mean ± 95 % CI '
           f'over seeds (paired by seed); * = CI excludes 0.', '',
           '| loss | ' + ' | '.join(f'λ {lam:.2f}' for lam, _ in protocols)
           + ' |', '|' + '---|' * (len(protocols) + 1)]
  for name in names:
    row = []
    for _, protocol in protocols:
      d = cell.get((protocol, name))
      row.append('' if d is None else _difference_cell(d, 'seed'))
    lines.append(f'| {name} | ' + ' | '.join(row) + ' |')
  lines += ['', 'Protocols: ' + ', '.join(f'λ {lam:.3f} = {p}'
                                          for lam, p in protocols)]
  if choices:
    lines += ['', choices_markdown(choices)]
  return '\n'.join(lines)


def runs_from_per_seed_csv(path: str) -> list[dict]:
  """The runs of a `per_seed_csv` file (its rows grouped by protocol and
  loss, each seed's scores as numbers, None where empty): what the paired
  statistics and the sweep figures need, from a committed CSV without the
  workdir that made it."""
  try:
    with open(path, encoding='utf-8', newline='') as f:
      rows = list(csv.DictReader(f))
  except OSError as e:
    raise ValueError(f'{path}: cannot be read ({e.strerror}).') from None
  needed = {'protocol', 'lambda', 'loss', 'seed'}
  if not rows or not needed <= set(rows[0]):
    raise ValueError(f'{path} is not a per-seed CSV of launch.compare '
                     f'(needs the columns {sorted(needed)} and a row).')
  runs = {}
  for line, row in enumerate(rows, start=2):
    run = runs.setdefault((row['protocol'], row['loss']), {
        'protocol': row['protocol'], 'loss': row['loss'], 'per_seed': []})
    try:
      seed = {'seed': int(row['seed']),
              'imbalance_degree': float(row['lambda'])}
      for key, value in row.items():
        if key not in needed:
          value = float(value) if value not in ('', None) else None
          if key.startswith(VALIDATION_PREFIX):
            seed.setdefault(VALIDATION, {})[
                key[len(VALIDATION_PREFIX):]] = value
          else:
            seed[key] = value
    except (TypeError, ValueError):
      raise ValueError(f'{path}, line {line}: not numbers where scores go: '
                       f'{row}.') from None
    run['per_seed'].append(seed)
  return list(runs.values())


def _difference_cell(d: dict, unit: str) -> str:
  """A paired difference in points: 'mean ± ci95' with `*` where the CI
  excludes 0, or the mean alone when one `unit` (seed, task) gave no CI."""
  if d['ci95'] != d['ci95']:  # One pair: no interval.
    return f'{100 * d["mean"]:+.2f} (1 {unit}, no CI)'
  return (f'{100 * d["mean"]:+.2f} ± {100 * d["ci95"]:.2f}'
          + ('*' if d['significant'] else ''))


def markdown_table(runs: Sequence[dict], protocols: Sequence[str],
                   loss_names: Sequence[str], metric: str = 'accuracy'
                   ) -> str:
  """Table I's shape: rows losses, columns situations, mean ± 95 % CI (%)."""
  by_key = {(r['protocol'], r['loss']): r for r in runs}
  header = '| loss | ' + ' | '.join(protocols) + ' |'
  lines = [header, '|' + '---|' * (len(protocols) + 1)]
  for loss_name in loss_names:
    cells = []
    for protocol in protocols:
      run = by_key.get((protocol, loss_name))
      values = [s.get(metric) for s in run['per_seed']] if run else []
      cells.append(metrics.format_mean_ci(values)
                   if values and None not in values else '')
    lines.append(f'| {loss_name} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def _percent(row: dict) -> str:
  """'mean ± half-width' in percent (no half-width from a single task)."""
  half = row['accuracy_ci95']
  if half is None or not math.isfinite(half):
    return f"{100 * row['accuracy_mean']:.2f}"
  return f"{100 * row['accuracy_mean']:.2f} ± {100 * half:.2f}"


def fewshot_table(runs: list[dict], support: Sequence[Sequence[int]]) -> str:
  """Table IV's shape: distribution, lambda, accuracy ± 95 % CI per loss."""
  names = [r['loss'] for r in runs]
  lines = ['| distribution | λ | ' + ' | '.join(names) + ' |',
           '|' + '---|' * (2 + len(names))]
  for d, dist in enumerate(support):
    row = runs[0]['distributions'][d]
    cells = [_percent(r['distributions'][d]) for r in runs]
    lines.append(f"| {list(dist)} | {row['imbalance_degree']:.4f} | "
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def fewshot_paired_differences(runs: Sequence[dict], baseline: str
                               ) -> list[dict]:
  """Each loss minus `baseline`, paired by meta-test task, per support
  distribution.

  Every loss of a `launch.fewshot` run meets the same meta-test tasks (the
  sampler's seed depends on the run's seed and the distribution only, and
  support over-sampling draws after the task), so the per-task difference
  of accuracy removes the tasks' difficulty from the comparison. The CI
  covers the meta-test tasks' sampling only; the meta-training seed's
  effect shows across runs of other seeds.

  Args:
    runs: `results.json`'s runs of one workdir (each with `distributions`
      holding `task_accuracies`).
    baseline: the loss to subtract (as the run names it, e.g. 'ce').

  Returns:
    One dict per (distribution, loss != baseline): distribution, lambda,
    loss, tasks, mean and ci95 of the difference (accuracy units), and
    `significant` (the 95 % CI excludes 0).

  Raises:
    ValueError: the baseline is missing, a run lacks per-task accuracies
      (a record from before they were stored), or two runs disagree on
      the distributions or on the number of tasks.
  """
  by_loss = {r['loss']: r for r in runs}
  base = by_loss.get(baseline)
  if base is None:
    raise ValueError(f'No {baseline!r} run; losses present: '
                     f'{sorted(by_loss)}.')
  out = []
  for loss, run in by_loss.items():
    if loss == baseline:
      continue
    if len(run['distributions']) != len(base['distributions']):
      raise ValueError(f'{loss!r} holds {len(run["distributions"])} support '
                       f'distributions but {baseline!r} holds '
                       f'{len(base["distributions"])}; pairing needs the same.')
    for a, b in zip(run['distributions'], base['distributions']):
      if a['distribution'] != b['distribution']:
        raise ValueError(f'{loss!r} and {baseline!r} list the support '
                         f'distributions in another order ({a["distribution"]}'
                         f' against {b["distribution"]}).')
      if 'task_accuracies' not in a or 'task_accuracies' not in b:
        raise ValueError(f'{a["distribution"]}: no per-task accuracies in '
                         f'this record (written before they were stored); '
                         'rerun it to pair by task.')
      ta, tb = a['task_accuracies'], b['task_accuracies']
      if len(ta) != len(tb):
        raise ValueError(f'{a["distribution"]}: {loss!r} has {len(ta)} tasks '
                         f'but {baseline!r} has {len(tb)}.')
      mean, half = metrics.mean_confidence_interval(np.subtract(ta, tb))
      out.append({'distribution': list(a['distribution']),
                  'lambda': a['imbalance_degree'], 'loss': loss,
                  'tasks': len(ta), 'mean': mean, 'ci95': half,
                  'significant': bool(half == half and abs(mean) > half)})
  return out


def compare_fewshot_workdir(workdir: str, *, baseline: str) -> str:
  """`fewshot_paired_differences` of a workdir's runs as a markdown table.

  Rows: support distributions (with lambda); columns: each loss minus the
  baseline, in percentage points, mean ± 95 % CI over the meta-test tasks
  (paired by task); `*` where the CI excludes 0.
  """
  runs = workdir_lib.read_runs(workdir, keys=FEWSHOT_RECORD_KEYS)
  diffs = fewshot_paired_differences(runs, baseline)
  if not diffs:
    raise ValueError(f'{workdir}: nothing to compare with {baseline!r} '
                     f'(finished losses: {[r["loss"] for r in runs]}).')
  names = list(dict.fromkeys(d['loss'] for d in diffs))
  rows = list(dict.fromkeys((tuple(d['distribution']), d['lambda'])
                            for d in diffs))
  cell = {(tuple(d['distribution']), d['loss']): d for d in diffs}
  tasks = sorted({d['tasks'] for d in diffs})
  lines = [f'meta-test accuracy: loss - {baseline}, percentage points, '
           f'mean ± 95 % CI over {"/".join(map(str, tasks))} tasks '
           '(paired by task); * = CI excludes 0.', '',
           '| support | λ | ' + ' | '.join(f'{n} − {baseline}' for n in names)
           + ' |', '|' + '---|' * (len(names) + 2)]
  for dist, lam in rows:
    row = []
    for name in names:
      row.append(_difference_cell(cell[(dist, name)], 'task'))
    lines.append(f'| {list(dist)} | {lam:.3f} | ' + ' | '.join(row) + ' |')
  return '\n'.join(lines)


def per_task_csv(workdir: str) -> str:
  """A `launch.fewshot` workdir's meta-test accuracies as CSV text, one row
  per (distribution, loss, task): the numbers behind its table and
  `compare_fewshot_workdir`. Columns: distribution ('1-1-1-1-11'), lambda,
  loss, task (the index every loss shares), accuracy."""
  runs = workdir_lib.read_runs(workdir, keys=FEWSHOT_RECORD_KEYS)
  out = io.StringIO()
  writer = csv.writer(out, lineterminator='\n')
  writer.writerow(['distribution', 'lambda', 'loss', 'task', 'accuracy'])
  for run in runs:
    for d in run['distributions']:
      name = '-'.join(str(n) for n in d['distribution'])
      for t, acc in enumerate(d.get('task_accuracies', [])):
        writer.writerow([name, f"{d['imbalance_degree']:.4f}", run['loss'],
                         t, f'{acc:.6g}'])
  return out.getvalue()


def is_fewshot_workdir(workdir: str) -> bool:
  """Whether a workdir's records are `launch.fewshot`'s (they hold
  `distributions`) rather than `launch.classify`'s.

  Raises:
    ValueError: it is a `launch.detect` workdir (its runs are compared
      with `launch.compare_detections`).
  """
  _refuse_detection_workdir(workdir)
  runs = workdir_lib.read_runs(workdir)
  return bool(runs) and 'distributions' in runs[0]


def _refuse_detection_workdir(workdir: str) -> None:
  """A named error for a `launch.detect` workdir (one detector, no
  cells): its record is not damaged, it is another runner's."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return
  record = workdir_lib.read_json(path)
  config = record.get('config') if isinstance(record, dict) else None
  if isinstance(config, dict) and 'detector' in config:
    raise ValueError(
        f'{workdir} is a launch.detect workdir (one detector, no losses to '
        f'pair); compare detection runs on one test set with python -m '
        f'launch.compare_detections --gt {workdir}/data/test --runs '
        f'NAME={workdir}/predictions,...')
