r"""Rotated-box ship detection (Tables V-VII): cil.experiments.detect.

The commands (the embedded synthetic default, the Cascade, HRSC2016 and
DOTA layouts) are in `configs/detect.py`'s docstring, their one home.

Every config field can be overridden (`--config.model.loss=focal`,
`--config.mode=eval`). Rerunning resumes from the last good checkpoint.
Writes `table.md`, `results.json`, `detections.{png,pdf,csv}`, `metrics/`
and `tensorboard/` to --workdir.
"""

from absl import flags
from ml_collections import config_flags

from cil.detection import metrics
from cil.experiments import detect
from launch import common

_CONFIG = config_flags.DEFINE_config_file(
    'config', common.config_file('detect'),
    'Experiment config: configs/detect.py[:variant].', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', 'results/detect',
                               'Output and checkpoint directory.')


def run():
  cfg = detect.TrainConfig.from_config(_CONFIG.value)
  result = detect.run(cfg, _WORKDIR.value)
  if result is not None:
    print(metrics.table_markdown(result))
    print(metrics.protocols_table_markdown(result['ap_protocols']), end='')
    print(f'Wrote {_WORKDIR.value}/table.md, results.json, detections.png')


if __name__ == '__main__':
  common.launch(run)
