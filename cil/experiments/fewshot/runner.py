"""The few-shot runner: meta-train tasks drawn from (seed, step, task),
meta-test per support distribution, and `run(cfg, workdir)` over the
losses through `cil.experiments.loop`; the package docstring
(`cil.experiments.fewshot`) describes the protocol."""

import dataclasses
import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

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
from cil.experiments.fewshot.config import FewShotConfig
from cil.experiments.fewshot.config import split_loss


def _as_jax(tasks: data.Tasks) -> dict:
  return {k: jnp.asarray(getattr(tasks, k))
          for k in maml_lib.TASK_KEYS + maml_lib.OVERSAMPLE_KEYS
          if getattr(tasks, k) is not None}


def _concat(tasks: list) -> data.Tasks:
  return data.Tasks(**{
      f.name: (None if getattr(tasks[0], f.name) is None else
               np.concatenate([getattr(t, f.name) for t in tasks]))
      for f in dataclasses.fields(data.Tasks)})


def train_tasks(cfg: FewShotConfig, sampler: data.EpisodeSampler, step: int,
                tasks: Optional[tuple[int, int]] = None, *,
                oversample: bool = False) -> dict:
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
    out.append(sampler.sample(rng, dist, query_multiple=cfg.query_multiple,
                              oversample=oversample))
  return _as_jax(_concat(out))


@functools.partial(jax.jit, static_argnames=('apply_fn', 'cfg'))
def _adapt_and_predict(params, apply_fn, tasks, *, cfg: maml_lib.MamlConfig):
  """Meta-test: adapt each task (no meta-gradient) and predict its queries."""
  def one(task):
    adapted = maml_lib.adapt_to_task(
        params, apply_fn, task, cfg=cfg,
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
                               num_tasks=cfg.meta_batch,
                               oversample=split_loss(loss)[1])
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
                       work: workdir_lib.Workdir, *, progress=None,
                       step_callback: Optional[Callable[[int], None]] = None
                       ) -> dict:
  """Meta-trains with `loss` (resuming if checkpointed) and meta-tests.

  Every meta-step appends its meta-loss, query accuracy and wall time to
  the cell's metrics log (`metrics/<loss>.jsonl`).

  Raises:
    cil.errors.NonFiniteError: the meta-loss or the meta-parameters became
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
  oversample = split_loss(loss)[1]
  first = train_tasks(cfg, train_sampler, 0, tasks=(0, 1),
                      oversample=oversample)
  state = maml_lib.create_state(model, mcfg, jax.random.key(cfg.seed),
                                first['support_images'][0])
  step_fn = maml_lib.parallel_meta_train_step(
      mcfg, parallel=cfg.parallel, compiler_options=cfg.compiler_options)

  def meta_step(state, step):
    state, m = step_fn(state, train_tasks(cfg, train_sampler, step,
                                          oversample=oversample))
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
  base, oversample = split_loss(loss)
  settings['inner_loss'] = settings['outer_loss'] = base
  settings['loss_hparams'] = mcfg.inner_loss.kwargs
  settings['oversample'] = oversample
  settings['conv_impl'] = cfg.conv_impl
  settings['dtype'] = cfg.dtype
  return settings


@loop.stops_on_signals
def run(cfg: FewShotConfig, workdir: str, *, show_progress: bool = True,
        step_callback: Optional[Callable[[str, int], None]] = None) -> dict:
  """Runs every loss of `cfg`; writes results to `workdir`.

  The config and the data are checked before the workdir is touched; then
  it is locked and claimed (`cil.workdir`). Outputs: `results.json`,
  `table.md` (Table IV's shape), `accuracy_vs_lambda.{png,pdf,csv}` (Fig.
  5's shape), `metrics/<loss>.jsonl`, `tensorboard/`; finished losses are
  kept in `runs/<loss>.json`.

  Raises:
    cil.errors.RunError: a locked workdir, a different config, a damaged file,
      a non-finite meta-loss or parameter (nothing is then recorded as
      finished).
  """
  cfg.validate()
  splits = data.load_fewshot(cfg.dataset, class_split=cfg.class_split,
                             data_dir=cfg.data_dir,
                             manual_dir=cfg.manual_dir,
                             image_size=cfg.image_size,
                             meta_test_fraction=cfg.meta_test_fraction)
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
  cfg = cfg.resolve(policy)
  record = runtime.describe(policy, fewshot={
      'conv_impl': cfg.conv_impl,
      'parallel': cfg.parallel if several else 'none',
      'task_sampling': 'numpy default_rng([seed, step, 11, task]) per '
                       'meta-train task; meta-test batches '
                       'default_rng([seed, 999, distribution, batch])',
      'cells': {loss: _cell_settings(cfg, loss) for loss in cfg.losses}})
  # The resolved config is the claim and the record (what ran); where the
  # data lives may change between a run and its resumption.
  config = dataclasses.asdict(cfg)
  record['data_location'] = {k: config.pop(k)
                             for k in ('data_dir', 'manual_dir')}
  # Each cell sets the inner and outer loss (its settings in the runtime
  # record and its result); the shared block does not pretend to.
  for key in ('inner_loss', 'outer_loss'):
    config['maml'].pop(key)
  with workdir_lib.Workdir(workdir, config, runtime=record) as work:
    work.claim_data({name: split.record() for name, split in (
        ('meta_train', splits.train), ('meta_val', splits.val),
        ('meta_test', splits.test)) if split is not None})

    def train_cell(loss, bar):
      callback = (functools.partial(step_callback, loss)
                  if step_callback is not None else None)
      result = train_and_evaluate(cfg, splits, loss, work, progress=bar,
                                  step_callback=callback)
      result['settings'] = record['fewshot']['cells'][loss]
      return result

    runs = loop.run_cells(work, list(cfg.losses), train_cell,
                          steps_of=lambda _: cfg.meta_steps,
                          desc='meta-steps',
                          record_keys=report.FEWSHOT_RECORD_KEYS,
                          show_progress=show_progress)
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
