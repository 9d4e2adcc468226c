r"""Imbalanced few-shot learning with MAML (the paper's Table IV and Fig. 5).

The embedded default (digits: meta-train classes 0-4, meta-test 5-9; three
support distributions; CE vs CI):

    python -m launch.fewshot

All 30 distributions of eq. (21) on miniImageNet, as the paper:

    python -m launch.fewshot --dataset=mini_imagenet --manual_dir=DIR \
        --sweep --features=64 --meta_steps=60000 --inner_steps=5 \
        --inner_lr=0.01 --test_tasks=600 --parallel=pmap \
        --workdir=results/mini_table4

Writes results.json, table.md (Table IV's shape) and fig5.png (accuracy
against lambda) to --workdir; rerunning the same command resumes.
"""

from absl import app
from absl import flags
from absl import logging
import jax

from cil import data
from cil import fewshot
from cil import losses

_DATASET = flags.DEFINE_enum('dataset', 'digits', list(data.FEWSHOT_NAMES),
                             'Few-shot dataset.')
_WAYS = flags.DEFINE_integer('ways', 5, 'Classes per task.')
_SUPPORT = flags.DEFINE_string(
    'support', '1,1,1,1,11;1,2,3,4,5;3,3,3,3,3',
    'Support distributions, ";"-separated, each ","-separated.')
_SWEEP = flags.DEFINE_bool('sweep', False, 'All partitions of 15 over the '
                           'ways (eq. 21; 30 for 5-way), instead of --support.')
_QUERY_MULTIPLE = flags.DEFINE_integer(
    'query_multiple', 1, 'p: meta-train queries per class = p * N_i.')
_TEST_QUERIES = flags.DEFINE_integer('test_queries', 15,
                                     'Balanced meta-test queries per class.')
_LOSS = flags.DEFINE_string('loss', 'ce,ci', 'Loss names, comma-separated. '
                            'Known: ' + ', '.join(losses.LOSS_NAMES))
_META_BATCH = flags.DEFINE_integer('meta_batch', 4, 'Tasks per meta-step.')
_META_STEPS = flags.DEFINE_integer('meta_steps', 600, 'Meta-steps.')
_INNER_STEPS = flags.DEFINE_integer('inner_steps', 1,
                                    'Inner SGD steps (meta-train).')
_TEST_INNER_STEPS = flags.DEFINE_integer('test_inner_steps', 10,
                                         'Inner SGD steps (meta-test).')
_INNER_LR = flags.DEFINE_float('inner_lr', 0.1, 'Inner learning rate.')
_META_LR = flags.DEFINE_float('meta_lr', 1e-3, 'Meta learning rate (Adam).')
_FIRST_ORDER = flags.DEFINE_bool('first_order', False, 'FOMAML.')
_FEATURES = flags.DEFINE_integer('features', 32, 'Conv4 filters.')
_TEST_TASKS = flags.DEFINE_integer(
    'test_tasks', 100, 'Meta-test tasks per distribution (the paper: 600; '
    '100 keeps the embedded default under 5 minutes on 2 CPU cores).')
_PARALLEL = flags.DEFINE_enum(
    'parallel', 'pmap', ['none', 'pmap', 'shard_map'],
    'Split the meta-batch over the devices (one device: plain jit).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed.')
_WORKDIR = flags.DEFINE_string('workdir', 'results/fewshot',
                               'Output and checkpoint directory.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, '$CIL_DATA_DIR')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, '$CIL_MANUAL_DIR')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Seconds-long run.')


def _support():
  if _SWEEP.value:
    return tuple(data.partitions(15, _WAYS.value))
  return tuple(tuple(int(n) for n in d.split(','))
               for d in _SUPPORT.value.split(';') if d.strip())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  logging.info('JAX devices: %s', jax.devices())
  cfg = fewshot.FewShotConfig(
      dataset=_DATASET.value, ways=_WAYS.value, support=_support(),
      query_multiple=_QUERY_MULTIPLE.value, test_queries=_TEST_QUERIES.value,
      losses=tuple(n.strip() for n in _LOSS.value.split(',') if n.strip()),
      meta_batch=_META_BATCH.value,
      meta_steps=3 if _SMOKE.value else _META_STEPS.value,
      inner_steps=_INNER_STEPS.value, test_inner_steps=_TEST_INNER_STEPS.value,
      inner_lr=_INNER_LR.value, meta_lr=_META_LR.value,
      first_order=_FIRST_ORDER.value, features=_FEATURES.value,
      test_tasks=4 if _SMOKE.value else _TEST_TASKS.value,
      parallel=_PARALLEL.value, seed=_SEED.value,
      data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)
  results = fewshot.run(cfg, _WORKDIR.value)
  print(f"\n{cfg.ways}-way meta-test accuracy (%), {results['splits']}:\n")
  print(results['table_markdown'])
  print(f'\nWrote {_WORKDIR.value}/results.json, table.md, fig5.png')


if __name__ == '__main__':
  app.run(main)
