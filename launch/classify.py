r"""Imbalanced classification (the paper's Tables I and III).

The embedded default (digits, odd classes at 10 %, CE vs FL vs CI, 5 seeds):

    python -m launch.classify

Table I on MNIST (the four situations, 20 samplings):

    CIL_MANUAL_DIR=/path/to/manual python -m launch.classify --dataset=mnist \
        --protocol=all --seeds=20 --epochs=10 --workdir=results/mnist_table1

(the manual dir holds mnist/ with the four IDX files; on the project machines
it is the shared data folder, see WORKSPACE.md).

Tables II-III on MSTAR SOC (five minority classes at 24 or 12 chips):

    python -m launch.classify --dataset=mstar_soc --protocol=all --seeds=100 \
        --manual_dir=/data/manual --workdir=results/mstar

Writes `results.json`, `table.md` and `per_class_recall.png` to --workdir and
prints the table. Rerunning the same command resumes an interrupted run.
"""

from absl import app
from absl import flags
from absl import logging
import jax

from cil import classify
from cil import data
from cil import losses

_DATASET = flags.DEFINE_enum('dataset', 'digits',
                             ['digits', 'mnist', 'mstar_soc'], 'Dataset.')
_PROTOCOL = flags.DEFINE_string(
    'protocol', 'odd10', 'Imbalance protocol(s), comma-separated, or "all" '
    '(Table I situations; mstar24,mstar12 for MSTAR). Known: '
    + ', '.join(data.PROTOCOL_NAMES))
_LOSS = flags.DEFINE_string(
    'loss', 'ce,focal,ci', 'Loss name(s), comma-separated, or "all". Known: '
    + ', '.join(losses.LOSS_NAMES))
_GAMMA = flags.DEFINE_float('gamma', 2.0, 'Focal loss gamma.')
_SEEDS = flags.DEFINE_integer('seeds', 5, 'Random samplings per cell.')
_FIRST_SEED = flags.DEFINE_integer('first_seed', 0, 'First seed.')
_EPOCHS = flags.DEFINE_integer('epochs', 30, 'Training epochs.')
_BATCH = flags.DEFINE_integer('batch_size', 64, 'Batch size per seed.')
_LR = flags.DEFINE_float('lr', 1e-3, 'Learning rate.')
_OPTIMIZER = flags.DEFINE_enum('optimizer', 'adam', ['adam', 'sgd'],
                               'Optimizer.')
_WEIGHT_DECAY = flags.DEFINE_float('weight_decay', 0.0, 'Weight decay.')
_MODEL = flags.DEFINE_string('model', '', 'Model (default: per dataset).')
_SEED_PARALLEL = flags.DEFINE_enum(
    'seed_parallel', '', ['', 'vmap', 'loop'],
    'How seeds share a compiled step (default: loop on CPU, vmap else).')
_WORKDIR = flags.DEFINE_string('workdir', 'results/classify',
                               'Output and checkpoint directory.')
_DATA_DIR = flags.DEFINE_string('data_dir', None,
                                'Prepared TFDS datasets ($CIL_DATA_DIR).')
_MANUAL_DIR = flags.DEFINE_string(
    'manual_dir', None, 'Hand-downloaded files ($CIL_MANUAL_DIR).')
_SMOKE = flags.DEFINE_bool('smoke', False,
                           'Seconds-long run: 2 seeds, 1 epoch.')


def _names(value: str, all_names) -> tuple[str, ...]:
  if value.strip() == 'all':
    return tuple(all_names)
  return tuple(v.strip() for v in value.split(',') if v.strip())


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Too many command-line arguments: {argv[1:]}')
  logging.info('JAX devices: %s', jax.devices())
  cfg = classify.ClassifyConfig(
      dataset=_DATASET.value,
      protocols=_names(_PROTOCOL.value,
                       classify.ALL_PROTOCOLS[_DATASET.value]),
      losses=_names(_LOSS.value, losses.LOSS_NAMES),
      loss_hparams=(('focal', (('gamma', _GAMMA.value),)),),
      model=_MODEL.value,
      seeds=2 if _SMOKE.value else _SEEDS.value,
      first_seed=_FIRST_SEED.value,
      epochs=1 if _SMOKE.value else _EPOCHS.value,
      batch_size=_BATCH.value, lr=_LR.value, optimizer=_OPTIMIZER.value,
      weight_decay=_WEIGHT_DECAY.value, seed_parallel=_SEED_PARALLEL.value,
      data_dir=_DATA_DIR.value, manual_dir=_MANUAL_DIR.value)
  results = classify.run(cfg, _WORKDIR.value)
  print(f'\nRecognition rate (%), mean ± 95 % CI over {cfg.seeds} seeds '
        f'({cfg.dataset}, {cfg.model_name()}):\n')
  print(results['table_markdown'])
  print(f'\nWrote {_WORKDIR.value}/results.json, table.md, '
        f'per_class_recall.png')


if __name__ == '__main__':
  app.run(main)
