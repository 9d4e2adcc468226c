r"""Imbalanced classification (Tables I-III): cil.experiments.classify.

The commands (the embedded default, the paper's protocols, the studies of
RESULTS.md) are in `configs/classify.py`'s docstring, their one home.

Every config field can be overridden (`--config.seeds=20`,
`--config.losses=fl --config.loss_hparams.focal.gamma=0.5`). Writes
`results.json`, `table.md`, `per_class_recall.{png,pdf,csv}`, `metrics/` and
`tensorboard/` to --workdir and prints the table. Rerunning the same command
resumes an interrupted run; `-v 0` shows INFO logs.
"""

from absl import flags
from ml_collections import config_flags

from cil.experiments import classify
from cil import distributed
from launch import common

_CONFIG = config_flags.DEFINE_config_file(
    'config', common.config_file('classify'),
    'Experiment config: configs/classify.py[:variant].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'results/classify',
                               'Output and checkpoint directory.')


def run():
  cfg = classify.ClassifyConfig.from_config(_CONFIG.value)
  results = classify.run(cfg, _WORKDIR.value)
  if not distributed.is_primary():  # It wrote nothing; process 0 reports.
    return
  print(f'\nRecognition rate (%), mean ± 95 % CI over {cfg.seeds} seeds '
        f"({cfg.dataset}, {results['config']['model']}):\n")
  print(results['table_markdown'])
  print(f'\nWrote {_WORKDIR.value}/results.json, table.md, '
        f'per_class_recall.png')


if __name__ == '__main__':
  common.launch(run)
