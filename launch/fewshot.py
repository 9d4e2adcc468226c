r"""Imbalanced few-shot MAML (Table IV, Fig. 5): cil.experiments.fewshot.

The commands (the embedded default, miniImageNet's Table IV, the Omniglot
study of RESULTS.md) are in `configs/fewshot.py`'s docstring, their one
home.

Every config field can be overridden (`--config.maml.inner_lr=0.4`).
Writes `results.json`, `table.md` (Table IV's shape),
`accuracy_vs_lambda.{png,pdf,csv}` (Fig. 5's), `metrics/` and `tensorboard/`
to --workdir; rerunning the same command resumes.
"""

from absl import flags
from ml_collections import config_flags

from cil.experiments import fewshot
from cil import distributed
from launch import common

_CONFIG = config_flags.DEFINE_config_file(
    'config', common.config_file('fewshot'),
    'Experiment config: configs/fewshot.py[:variant].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'results/fewshot',
                               'Output and checkpoint directory.')


def run():
  cfg = fewshot.FewShotConfig.from_config(_CONFIG.value)
  results = fewshot.run(cfg, _WORKDIR.value)
  if not distributed.is_primary():  # It wrote nothing; process 0 reports.
    return
  print(f"\n{cfg.ways}-way meta-test accuracy (%), {results['splits']}:\n")
  print(results['table_markdown'])
  print(f'\nWrote {_WORKDIR.value}/results.json, table.md, '
        f'accuracy_vs_lambda.png')


if __name__ == '__main__':
  common.launch(run)
