r"""Compares detection runs on one test set: per-class AP and paired CIs.

    python -m launch.compare_detections --gt results/det_r2cnn_ce/data/test \
        --runs r2cnn_ce=results/det_r2cnn_ce/predictions,\
cascade_ce=results/det_cascade_ce/predictions --baseline r2cnn_ce \
        [--differences cascade_ce:r2cnn_ce,...] [--samples 1000] [--seed 0] \
        [--images N] [--out FILE.md]

Each `launch.detect` workdir holds its test-set detections in
`predictions/` (`<image>.txt`, `x1 y1 ... y4 class score` lines). Prints a
table of per-class AP by run, each run's mAP, and paired differences (every
run minus --baseline, then the --differences pairs), with 95 % CIs from a
paired bootstrap over the test images (`cil.detection.metrics.
bootstrap_map`): what this test set can resolve.
"""

import json
import os

from absl import flags

from cil import workdir
from cil.detection import evaluate
from launch import common

_GT = flags.DEFINE_string('gt', None, 'Ground-truth label folder.')
_RUNS = flags.DEFINE_list('runs', None, 'name=prediction folder, ...')
_BASELINE = flags.DEFINE_string('baseline', None,
                                'Run to subtract from every other run.')
_DIFFERENCES = flags.DEFINE_list(
    'differences', [], 'More paired differences, a:b meaning run a minus '
    'run b, e.g. cascade_ci:r2cnn_ci.')
_SAMPLES = flags.DEFINE_integer('samples', 1000, 'Bootstrap draws.')
_SEED = flags.DEFINE_integer('seed', 0, 'Bootstrap seed.')
_IOU = flags.DEFINE_float('iou', 0.6, 'IoU threshold (a match needs >).')
_OUT = flags.DEFINE_string('out', None, 'Also write the table here (and '
                           'the numbers as JSON beside it).')
_MISSING_AS_EMPTY = flags.DEFINE_bool(
    'missing_as_empty', False, 'Count a test image without a prediction '
    'file in a run folder as having no detections (the table says how '
    'many); by default a missing file is an error.')
_IMAGES = flags.DEFINE_integer(
    'images', None, 'Evaluate the first this many test images only (in name '
    'order): what a smaller test set would resolve.', lower_bound=1)
flags.mark_flags_as_required(['gt', 'runs'])


def _parse_runs(items) -> dict:
  runs = {}
  for item in items:
    name, sep, folder = item.partition('=')
    if not sep or not name or not folder:
      raise ValueError(f'--runs: {item!r} is not name=folder.')
    if name in runs:
      raise ValueError(f'--runs: run name {name!r} appears twice.')
    runs[name] = folder
  return runs


def _parse_differences(items) -> list:
  pairs = []
  for item in items:
    a, sep, b = item.partition(':')
    if not sep or not a or not b:
      raise ValueError(f'--differences: {item!r} is not a:b (run a minus '
                       f'run b).')
    pairs.append((a, b))
  return pairs


def run():
  result = evaluate.compare_folders(
      _GT.value, _parse_runs(_RUNS.value), baseline=_BASELINE.value,
      differences=_parse_differences(_DIFFERENCES.value),
      samples=_SAMPLES.value, seed=_SEED.value, iou_threshold=_IOU.value,
      missing_as_empty=_MISSING_AS_EMPTY.value, max_images=_IMAGES.value)
  table = evaluate.comparison_markdown(result)
  print(table, end='')
  if _OUT.value:
    # Its folders are made; a path it cannot write is a named error.
    workdir.write_text(_OUT.value, table)
    workdir.write_text(os.path.splitext(_OUT.value)[0] + '.json',
                       json.dumps(result, indent=1))
    print(f'Wrote {_OUT.value}')


if __name__ == '__main__':
  common.launch(run)
