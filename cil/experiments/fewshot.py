"""Imbalanced few-shot learning with MAML (Table IV, Fig. 5): the experiment.

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
"""

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cil import _validation as v
from cil import data
from cil import distributed
from cil import losses
from cil import maml as maml_lib
from cil import metrics
from cil import models
from cil import plots
from cil import runtime
from cil import workdir as workdir_lib
from cil.experiments import loop
from cil.experiments import report


DTYPES = ('float32', 'bfloat16')  # `FewShotConfig.dtype`.


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
  """A few-shot experiment; build it with `FewShotConfig.from_config`.

  `configs/fewshot.py` states every default, once.

  Attributes:
    dataset: `cil.data.load_fewshot` name (digits, omniglot, omniglot_small,
      mini_imagenet).
    class_split: mini_imagenet's 'standard' (64/16/20) or 'paper' split.
    support: support distributions (meta-test evaluates each; meta-train
      draws one per task unless `train_support` is given).
    train_support: the distributions meta-train draws from; empty means
      `support`. Omniglot has 20 drawings per character, so meta-train
      queries of p * N_i cannot follow a support class of 11 (11 + 11 >
      20): train on the distributions that fit and test on all.
    query_multiple: p, meta-train queries per class = p * N_i.
    test_queries: balanced meta-test queries per class.
    losses: loss specs (`cil.losses.canonical_spec`: a registry name or a
      variant such as `ci:transition_width=1.0`), each used for the inner
      and the outer loss.
    maml: the MAML hyperparameters (its `inner_loss`/`outer_loss` are set
      per loss by `maml_config`; its `loss_hparams` hold every loss's).
    meta_batch: tasks per meta-step.
    meta_steps: meta-training steps.
    features: Conv4 filters.
    dtype: Conv4's computation dtype, 'float32' or 'bfloat16' (`DTYPES`).
      With bfloat16 the convolutions, normalisation and dense layer
      compute in it; the parameters, the logits (so the losses), the
      meta-gradients and Adam stay float32.
    conv_impl: Conv4's convolution lowering (`cil.models.Conv3x3.impl`:
      'winograd', 'im2col' or 'xla'), or '' for the backend policy's
      choice for the MAML order (`cil.runtime.Policy.maml_conv_impl`:
      Winograd for first order on the CPU, else im2col).
    test_tasks: meta-test tasks per distribution (paper: 600).
    parallel: 'pmap' (plain jit on one device), 'shard_map' or 'none'.
    seed: sampling and initialisation seed.
    checkpoint_every: meta-steps between checkpoints.
    data_dir, manual_dir: as `cil.data.load` (None: environment).
  """
  dataset: str
  class_split: str
  support: tuple
  train_support: tuple
  query_multiple: int
  test_queries: int
  losses: tuple[str, ...]
  maml: maml_lib.MamlConfig
  meta_batch: int
  meta_steps: int
  features: int
  dtype: str
  conv_impl: str
  test_tasks: int
  parallel: str
  seed: int
  checkpoint_every: int
  data_dir: Optional[str]
  manual_dir: Optional[str]

  @classmethod
  def from_config(cls, config: Any) -> 'FewShotConfig':
    """From a `configs/fewshot.py` config (a ConfigDict or a dict)."""
    c = dict(config)
    hparams = losses.freeze_hparams(c.pop('loss_hparams', {}))
    c = v.config_fields(c, cls, 'fewshot config')
    c['losses'] = tuple(losses.canonical_spec(n)
                        for n in v.as_names('losses', c['losses']))
    maml = v.config_fields(c['maml'], maml_lib.MamlConfig, 'maml config')
    c['maml'] = maml_lib.MamlConfig(**maml, loss_hparams=hparams)
    for key in ('support', 'train_support'):
      try:
        c[key] = tuple(tuple(int(n) for n in d) for d in c[key])
      except (TypeError, ValueError):
        raise ValueError(f'{key} must be a sequence of distributions of '
                         f'integers, e.g. ((1, 1, 1, 1, 11), (3, 3, 3, 3, '
                         f'3)); got {c[key]!r}.') from None
    return cls(**c)

  @property
  def meta_train_support(self) -> tuple:
    return self.train_support or self.support

  @property
  def ways(self) -> int:
    return self.maml.ways

  def resolve(self, policy: runtime.Policy) -> 'FewShotConfig':
    """This config with the backend's choices made (`run` calls it once;
    nothing below it reads the policy): `conv_impl` ('' = the policy's
    lowering for the MAML order, `Policy.maml_conv_impl`) and
    `maml.task_map` ('' = the policy's) concrete."""
    return dataclasses.replace(
        self, conv_impl=policy.maml_conv_impl(
            first_order=self.maml.first_order, requested=self.conv_impl),
        maml=dataclasses.replace(
            self.maml, task_map=self.maml.task_map or policy.task_map))

  def validate(self) -> None:
    """Checks every field before any work (or workdir) is touched."""
    if min(self.maml.ways, self.meta_batch, self.meta_steps,
           self.test_tasks,
           self.checkpoint_every, self.query_multiple, self.test_queries,
           self.features, self.maml.adaptation_steps,
           self.maml.test_adaptation_steps) < 1:
      raise ValueError('maml.ways, meta_batch, meta_steps, test_tasks, '
                       'checkpoint_every, query_multiple, test_queries, '
                       'features and maml.(test_)adaptation_steps must be '
                       'positive.')
    if self.dtype not in DTYPES:
      raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got "
                       f'{self.dtype!r}.')
    if self.conv_impl not in ('',) + models.cnn.CONV_IMPLS:
      raise ValueError(f"conv_impl must be '' (the backend's choice) or one "
                       f"of {', '.join(models.cnn.CONV_IMPLS)}, got "
                       f'{self.conv_impl!r}.')
    if not self.losses:
      raise ValueError('losses must not be empty.')
    for name in self.losses:
      self.maml.loss_fn(name)
    if not self.support:
      raise ValueError('support must hold at least one distribution.')
    for dist in self.support + self.train_support:
      data.episodes.check_distribution(dist, self.ways)
    if len({sum(d) for d in self.support + self.train_support}) != 1:
      raise ValueError('All support and train_support distributions must '
                       'have the same total (fixed shapes for jit), got '
                       f'{self.support + self.train_support}.')
    for name in ('inner_lr', 'meta_lr'):
      value = getattr(self.maml, name)
      if not math.isfinite(value):
        raise ValueError(f'maml.{name} is non-finite ({value}); it must be '
                         f'a finite positive number.')
      if value <= 0:
        raise ValueError(f'maml.{name} must be positive, got {value}.')
    if self.parallel not in ('pmap', 'shard_map', 'none'):
      raise ValueError(f"parallel must be 'pmap', 'shard_map' or 'none', "
                       f'got {self.parallel!r}.')
    if self.maml.task_map not in ('',) + maml_lib.TASK_MAPS:
      raise ValueError(f"maml.task_map must be '' or one of "
                       f"{', '.join(maml_lib.TASK_MAPS)}, got "
                       f'{self.maml.task_map!r}.')
    if self.seed < 0:
      raise ValueError(f'seed must be >= 0, got {self.seed}.')

  def maml_config(self, loss: str) -> maml_lib.MamlConfig:
    return dataclasses.replace(self.maml, inner_loss=loss, outer_loss=loss)


def _as_jax(tasks: data.Tasks) -> dict:
  return {k: jnp.asarray(getattr(tasks, k)) for k in maml_lib.TASK_KEYS}


def _concat(tasks: list) -> data.Tasks:
  return data.Tasks(**{f.name: np.concatenate([getattr(t, f.name)
                                               for t in tasks])
                       for f in dataclasses.fields(data.Tasks)})


def train_tasks(cfg: FewShotConfig, sampler: data.EpisodeSampler, step: int,
                tasks: Optional[tuple[int, int]] = None) -> dict:
  """Tasks `[start, stop)` of meta-step `step`'s meta-batch (default: this
  process's share, `cil.distributed.process_share`).

  Task t is a function of (seed, step, t) only (its support distribution
  drawn from `meta_train_support`, then its classes and images), so a
  resumed run, or one split over a different number of processes, meets
  the same meta-batches.
  """
  start, stop = tasks or distributed.process_share(
      cfg.meta_batch, what='tasks of the meta-batch')
  train_support = cfg.meta_train_support
  out = []
  for t in range(start, stop):
    rng = np.random.default_rng([cfg.seed, step, 11, t])
    dist = train_support[rng.integers(len(train_support))]
    out.append(sampler.sample(rng, dist, query_multiple=cfg.query_multiple))
  return _as_jax(_concat(out))


@functools.partial(jax.jit, static_argnames=('apply_fn', 'cfg'))
def _adapt_and_predict(params, apply_fn, tasks, *, cfg: maml_lib.MamlConfig):
  """Meta-test: adapt each task (no meta-gradient) and predict its queries."""
  def one(task):
    adapted = maml_lib.inner_adapt(
        params, apply_fn, (task['support_images'], task['support_labels'],
                           task['support_counts']),
        loss=cfg.loss_fn(cfg.inner_loss), inner_lr=cfg.inner_lr,
        num_steps=cfg.test_adaptation_steps, first_order=True)
    return jnp.argmax(apply_fn({'params': adapted}, task['query_images']), -1)
  return maml_lib.map_tasks(one, tasks, cfg.task_map)


def _score_batch(params, apply_fn, batch: data.Tasks,
                 mcfg: maml_lib.MamlConfig) -> tuple[np.ndarray, np.ndarray]:
  """`[T, ways]`: each task's correct queries per class, classes ordered
  by their support count (queries are balanced: `test_queries` each)."""
  pred = np.asarray(_adapt_and_predict(params, apply_fn, _as_jax(batch),
                                       cfg=mcfg))
  per_class = []
  for t in range(pred.shape[0]):
    correct = pred[t] == batch.query_labels[t]
    order = np.argsort(batch.support_counts[t], kind='stable')
    per_class.append([correct[batch.query_labels[t] == c].sum()
                      for c in order])
  return np.asarray(per_class, np.int32)


def evaluate(state, cfg: FewShotConfig, sampler: data.EpisodeSampler,
             loss: str) -> list[dict]:
  """Meta-test accuracy for each support distribution of `cfg`.

  A distribution's tasks come in batches of `meta_batch`, batch b drawn
  from (seed, 999, distribution, b); with several processes, batch b is
  scored by process b mod count and the scores are gathered on every
  process (`cil.distributed.allgather`), so the result does not depend on
  the number of processes.
  """
  mcfg = cfg.maml_config(loss)
  params = distributed.to_host(state.params)
  count, index = distributed.process_count(), distributed.process_index()
  batches = math.ceil(cfg.test_tasks / cfg.meta_batch)
  rounds = math.ceil(batches / count)
  results = []
  for d, dist in enumerate(cfg.support):
    correct = np.zeros((rounds, cfg.meta_batch, cfg.ways), np.int32)
    for r in range(rounds):
      b = r * count + index
      if b < batches:
        batch = sampler.sample(np.random.default_rng([cfg.seed, 999, d, b]),
                               dist, query_per_class=cfg.test_queries,
                               num_tasks=cfg.meta_batch)
        correct[r] = _score_batch(params, state.apply_fn, batch, mcfg)
    # [processes, rounds, ...] -> batch order (b = r * count + process).
    correct = np.swapaxes(distributed.allgather(correct), 0, 1).reshape(
        -1, cfg.ways)[:cfg.test_tasks]
    per_class = correct / cfg.test_queries
    accs = [float(a) for a in correct.sum(1) / (cfg.test_queries * cfg.ways)]
    mean, half = metrics.mean_confidence_interval(accs)
    per_class_mean = np.mean(per_class, axis=0).tolist()
    results.append({
        'distribution': list(dist),
        'imbalance_degree': round(float(losses.imbalance_degree(
            np.asarray(dist))), 4) + 0.0,  # No "-0.0".
        'accuracy_mean': mean, 'accuracy_ci95': half,
        'per_class_accuracy_by_support_size': per_class_mean,
        'num_tasks': len(accs),
        # Every loss meets the same tasks (the sampler's seed depends on
        # the distribution only), so losses can be paired task by task.
        'task_accuracies': accs})
  return results


def train_and_evaluate(cfg: FewShotConfig, splits, loss: str,
                       work: workdir_lib.Workdir, *,
                       compiler_options: Sequence[tuple[str, str]] = (),
                       progress=None,
                       step_callback: Optional[Callable[[int], None]] = None
                       ) -> dict:
  """Meta-trains with `loss` (resuming if checkpointed) and meta-tests.

  Every meta-step appends its meta-loss, query accuracy and wall time to
  the cell's metrics log (`metrics/<loss>.jsonl`).

  Raises:
    errors.NonFiniteError: the meta-loss or the meta-parameters became
      NaN/inf.
  """
  mcfg = cfg.maml_config(loss)
  train_sampler = data.EpisodeSampler(splits.train, ways=cfg.ways)
  test_sampler = data.EpisodeSampler(splits.test, ways=cfg.ways)
  side = min(splits.train.image_shape[:2])
  model = models.Conv4(num_classes=cfg.ways, features=cfg.features,
                       pools=min(4, int(np.log2(side))),
                       conv_impl=cfg.conv_impl,
                       dtype=jnp.dtype(cfg.dtype))
  first = train_tasks(cfg, train_sampler, 0, tasks=(0, 1))
  state = maml_lib.create_state(model, mcfg, jax.random.key(cfg.seed),
                                first['support_images'][0])
  step_fn = maml_lib.parallel_meta_train_step(
      mcfg, parallel=cfg.parallel, compiler_options=compiler_options)

  def meta_step(state, step):
    state, m = step_fn(state, train_tasks(cfg, train_sampler, step))
    m = distributed.to_host(m)
    if progress is not None:
      progress.update(1)
      progress.set_postfix(loss=loss, meta_loss=f"{m['meta_loss']:.4f}",
                           refresh=False)
    return state, {'meta_loss': m['meta_loss'],
                   'query_accuracy': m['accuracy']}

  callback = None
  if step_callback is not None:
    callback = lambda step, *_: step_callback(step)  # noqa: E731
  with loop.CellTraining(work, loss, state,
                         checkpoint_every=cfg.checkpoint_every) as training:
    if progress is not None:
      progress.update(training.start)
    history = training.run(cfg.meta_steps, meta_step, callback=callback)
    state = training.state
  return {'loss': loss,
          'meta_loss': [r['meta_loss'] for r in history],
          'distributions': evaluate(state, cfg, test_sampler, loss)}


def _cell_settings(cfg: FewShotConfig, loss: str) -> dict:
  """What one cell runs with: its MAML settings (inner and outer loss, the
  loss's hyperparameters, the task map) and Conv4's lowering."""
  mcfg = cfg.maml_config(loss)
  settings = dataclasses.asdict(mcfg)
  settings['loss_hparams'] = losses.resolve_hparams(loss, mcfg.loss_hparams)
  settings['conv_impl'] = cfg.conv_impl
  settings['dtype'] = cfg.dtype
  return settings


def run(cfg: FewShotConfig, workdir: str, *, show_progress: bool = True,
        step_callback: Optional[Callable[[str, int], None]] = None) -> dict:
  """Runs every loss of `cfg`; writes results to `workdir`.

  The config and the data are checked before the workdir is touched; then
  it is locked and claimed (`cil.workdir`). Outputs: `results.json`,
  `table.md` (Table IV's shape), `accuracy_vs_lambda.{png,pdf,csv}` (Fig.
  5's shape), `metrics/<loss>.jsonl`, `tensorboard/`; finished losses are
  kept in `runs/<loss>.json`.

  Raises:
    errors.RunError: a locked workdir, a different config, a damaged file,
      a non-finite meta-loss or parameter (nothing is then recorded as
      finished).
  """
  cfg.validate()
  splits = data.load_fewshot(cfg.dataset, class_split=cfg.class_split,
                             data_dir=cfg.data_dir,
                             manual_dir=cfg.manual_dir)
  # Every task of the run must fit the splits' smallest classes: fail now,
  # not after meta-training.
  data.EpisodeSampler(splits.train, ways=cfg.ways).check_fits(
      cfg.meta_train_support, query_multiple=cfg.query_multiple)
  data.EpisodeSampler(splits.test, ways=cfg.ways).check_fits(
      cfg.support, query_per_class=cfg.test_queries)
  distributed.process_share(cfg.meta_batch, what='tasks of the meta-batch '
                            '(config field meta_batch)')
  several = jax.device_count() > 1
  policy = runtime.policy()
  resolved_cfg = cfg.resolve(policy)
  record = runtime.describe(policy, fewshot={
      'conv_impl': resolved_cfg.conv_impl,
      'parallel': cfg.parallel if several else 'none',
      'task_sampling': 'numpy default_rng([seed, step, 11, task]) per '
                       'meta-train task; meta-test batches '
                       'default_rng([seed, 999, distribution, batch])',
      'cells': {loss: _cell_settings(resolved_cfg, loss)
                for loss in cfg.losses}})
  # Where the data lives may change between a run and its resumption.
  config = dataclasses.asdict(cfg)
  record['data_location'] = {k: config.pop(k)
                             for k in ('data_dir', 'manual_dir')}
  # Each cell sets the inner and outer loss (its settings in the runtime
  # record and its result); the shared block does not pretend to.
  for key in ('inner_loss', 'outer_loss'):
    config['maml'].pop(key)
  with workdir_lib.Workdir(workdir, config, runtime=record) as work:

    def train_cell(loss, bar):
      callback = (functools.partial(step_callback, loss)
                  if step_callback is not None else None)
      result = train_and_evaluate(
          resolved_cfg, splits, loss, work, progress=bar,
          compiler_options=policy.meta_step_compiler_options,
          step_callback=callback)
      result['settings'] = record['fewshot']['cells'][loss]
      return result

    runs = loop.run_cells(work, list(cfg.losses), train_cell,
                          steps_of=lambda _: cfg.meta_steps,
                          desc='meta-steps', show_progress=show_progress)
    table = report.fewshot_table(runs, cfg.support)
    results = {'config': work.config, 'splits': splits.description,
               'batch_norm': 'transductive batch statistics (BatchStatNorm)',
               'runs': runs, 'table_markdown': table}
    work.write_json('results.json', results)
    work.write_text('table.md', (
        f'{cfg.ways}-way meta-test accuracy (%), mean ± 95 % CI over '
        f'{cfg.test_tasks} tasks per distribution; {splits.description}; '
        f'{cfg.meta_steps} meta-steps.\n\n{table}\n'))
    if work.primary:
      plots.accuracy_vs_lambda(runs, work.file('accuracy_vs_lambda'))
  return results
