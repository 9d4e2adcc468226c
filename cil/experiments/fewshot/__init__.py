"""Imbalanced few-shot learning with MAML (Table IV, Fig. 5).

For each loss (e.g. CE and CI, used in both the inner and the outer loop):
meta-train MAML on imbalanced N-way tasks whose support distribution is
drawn from `support` (one of them per task, classes assigned at random;
queries proportional, p * N_i), then meta-test on every distribution of
`support`: `test_tasks` tasks each, adapted with `test_adaptation_steps`
steps on the imbalanced support set and scored on a balanced query set
(`test_queries` per class). Reports accuracy mean +- 95 % CI per
distribution with its lambda, and per-class accuracy by support size.

Meta-parameters and optimizer state are checkpointed with Orbax under
`workdir/checkpoints/<loss>/` every `checkpoint_every` meta-steps; task
sampling is a function of (seed, step), so a resumed run equals an
uninterrupted one. Finished losses are kept in `workdir/runs/<loss>.json`.

By concern: `config` (`FewShotConfig`), `runner` (meta-train tasks,
meta-test, `run`); the step is `cil.maml`'s, the tables
`cil.experiments.report`'s.
"""

from cil.experiments.fewshot.config import DTYPES
from cil.experiments.fewshot.config import FewShotConfig
from cil.experiments.fewshot.runner import evaluate
from cil.experiments.fewshot.runner import run
from cil.experiments.fewshot.runner import train_and_evaluate
from cil.experiments.fewshot.runner import train_tasks

__all__ = [
    'DTYPES',
    'FewShotConfig',
    'evaluate',
    'run',
    'train_and_evaluate',
    'train_tasks',
]
