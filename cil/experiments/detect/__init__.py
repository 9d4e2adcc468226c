"""Training and evaluating R2CNN or the rotated Cascade R-CNN on a
DOTA-layout folder (or generated ships).

`run(TrainConfig.from_config(config), workdir)`, the config from
`configs/detect.py`:

* `cfg.data`: a folder with `train/` and `test/` subfolders, each in DOTA layout
  (`images/*.png|jpg`, `labelTxt/*.txt`) or HRSC2016's (`AllImages/*.bmp`,
  `Annotations/*.xml`); with None a synthetic ship set is generated
  into `workdir/data` (`cil.detection.synthetic`).
* trains with Adam and a cosine schedule, one jitted step; the workdir
  (`cil.workdir`) is locked, checkpoints are verified and resumed (rerun
  the same command), per-step losses go to `metrics/train.jsonl`;
* evaluates on the test split the paper's way (rotated IoU > 0.6, 11-point
  AP, P, R, F1, G-mean) and writes `table.md`, `results.json`,
  `predictions/<image>.txt` (every detection, DOTA-style with scores, for
  `launch.compare_detections`) and `detections.{png,pdf,csv}` (test images
  with labelled rotated boxes).

By concern: `config` (`TrainConfig`, `DETECTORS`), `data` (folders,
synthetic ships, pretrained weights), `runner` (`run`, through
`cil.experiments.loop`), `report` (the detections figure).
"""

from cil.experiments.detect.config import detector_module
from cil.experiments.detect.config import DETECTORS
from cil.experiments.detect.config import TrainConfig
from cil.experiments.detect.data import class_names
from cil.experiments.detect.data import load_pretrained
from cil.experiments.detect.data import load_split
from cil.experiments.detect.data import synthetic_batch
from cil.experiments.detect.report import figure_detections
from cil.experiments.detect.runner import create_state
from cil.experiments.detect.runner import predictions
from cil.experiments.detect.runner import run

__all__ = [
    'DETECTORS',
    'TrainConfig',
    'class_names',
    'create_state',
    'detector_module',
    'figure_detections',
    'load_pretrained',
    'load_split',
    'predictions',
    'run',
    'synthetic_batch',
]
