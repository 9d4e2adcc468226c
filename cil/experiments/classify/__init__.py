"""Imbalanced classification: CNNs trained with a registry loss, many seeds.

The protocol of the paper (Section V, Tables I and III): draw an imbalanced
training set from a balanced one (`cil.data` protocols), train a CNN with
CE, FL, CI or any `cil.losses` loss whose class counts are the training
set's, and measure the recognition rate on the full balanced test set;
repeat over many random samplings (seeds) and report mean +- 95 %
confidence interval.

By concern:

* `config`: `ClassifyConfig` (from a `configs/classify.py` config;
  `validate`, `resolve` against the backend policy once, in `run`);
* `step`: the pure step (`train_step`, its halves `seed_gradients` and
  `apply_gradients`, `train_chunk` over seeds and steps, the seeds'
  states stacked or split (`split_seeds`, `stack_seeds`),
  the optimizer, augmentation, deferred re-weighting, batch orders);
* `parallel`: the seeds across devices and processes (`seed_mesh`,
  `predict_logits`);
* `runner`: `run(cfg, workdir)`, one cell's `train_and_evaluate` and
  the compiled step's settings from a resolved config (`step_settings`),
  through `cil.experiments.loop`; tables and statistics are
  `cil.experiments.report`'s.
"""

from cil.experiments.classify.config import AUGMENTATIONS
from cil.experiments.classify.config import ClassifyConfig
from cil.experiments.classify.config import CELL_FIELDS
from cil.experiments.classify.config import DEFAULT_MODELS
from cil.experiments.classify.config import TAU_GRID
from cil.experiments.classify.parallel import predict_logits
from cil.experiments.classify.parallel import seed_mesh
from cil.experiments.classify.runner import cell_name
from cil.experiments.classify.runner import run
from cil.experiments.classify.runner import step_settings
from cil.experiments.classify.runner import train_and_evaluate
from cil.experiments.classify.step import apply_gradients
from cil.experiments.classify.step import augment_batch
from cil.experiments.classify.step import chunk_program
from cil.experiments.classify.step import create_states
from cil.experiments.classify.step import epoch_batches
from cil.experiments.classify.step import learning_rate
from cil.experiments.classify.step import make_optimizer
from cil.experiments.classify.step import model_for
from cil.experiments.classify.step import seed_gradients
from cil.experiments.classify.step import split_seeds
from cil.experiments.classify.step import stack_seeds
from cil.experiments.classify.step import train_chunk
from cil.experiments.classify.step import train_step
from cil.experiments.classify.step import TrainState

__all__ = [
    'AUGMENTATIONS',
    'ClassifyConfig',
    'CELL_FIELDS',
    'DEFAULT_MODELS',
    'TrainState',
    'apply_gradients',
    'augment_batch',
    'cell_name',
    'chunk_program',
    'create_states',
    'epoch_batches',
    'learning_rate',
    'make_optimizer',
    'model_for',
    'predict_logits',
    'run',
    'seed_gradients',
    'seed_mesh',
    'split_seeds',
    'stack_seeds',
    'step_settings',
    'TAU_GRID',
    'train_and_evaluate',
    'train_chunk',
    'train_step',
]
