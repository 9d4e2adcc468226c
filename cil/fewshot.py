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
import json
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from cil import checkpoints
from cil import data
from cil import losses
from cil import maml
from cil import metrics
from cil import models

DEFAULT_SUPPORT = ((1, 1, 1, 1, 11), (1, 2, 3, 4, 5), (3, 3, 3, 3, 3))


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
  """A few-shot experiment.

  Attributes:
    dataset: `cil.data.load_fewshot` name (digits, omniglot, omniglot_small,
      mini_imagenet).
    ways: classes per task.
    support: support distributions (meta-train draws one per task; meta-test
      evaluates each).
    query_multiple: p, meta-train queries per class = p * N_i.
    test_queries: balanced meta-test queries per class.
    losses: registry names, each used for inner and outer loss.
    meta_batch, meta_steps, inner_steps, test_inner_steps, inner_lr, meta_lr,
    first_order: MAML hyperparameters.
    features: Conv4 filters.
    test_tasks: meta-test tasks per distribution (paper: 600).
    parallel: 'pmap' (default; plain jit on one device), 'shard_map' or
      'none'.
    seed: sampling and initialisation seed.
    checkpoint_every: meta-steps between checkpoints.
    data_dir, manual_dir: as `cil.data.load`.
  """
  dataset: str = 'digits'
  ways: int = 5
  support: tuple = DEFAULT_SUPPORT
  query_multiple: int = 1
  test_queries: int = 15
  losses: tuple[str, ...] = ('ce', 'ci')
  meta_batch: int = 4
  meta_steps: int = 600
  inner_steps: int = 1
  test_inner_steps: int = 10
  inner_lr: float = 0.1
  meta_lr: float = 1e-3
  first_order: bool = False
  features: int = 32
  test_tasks: int = 600
  parallel: str = 'pmap'
  seed: int = 0
  checkpoint_every: int = 100
  data_dir: Optional[str] = None
  manual_dir: Optional[str] = None

  def validate(self) -> None:
    for name in self.losses:
      losses.get_loss(name)
    for dist in self.support:
      data.episodes.check_distribution(dist, self.ways)
    if len({sum(d) for d in self.support}) != 1:
      raise ValueError('All support distributions must have the same total '
                       f'(fixed shapes for jit), got {self.support}.')
    if min(self.meta_batch, self.meta_steps, self.test_tasks,
           self.checkpoint_every, self.query_multiple,
           self.test_queries) < 1:
      raise ValueError('meta_batch, meta_steps, test_tasks, '
                       'checkpoint_every, query_multiple and test_queries '
                       'must be positive.')

  def maml_config(self, loss: str) -> maml.MamlConfig:
    return maml.MamlConfig(
        ways=self.ways, inner_lr=self.inner_lr, meta_lr=self.meta_lr,
        adaptation_steps=self.inner_steps,
        test_adaptation_steps=self.test_inner_steps,
        first_order=self.first_order, inner_loss=loss, outer_loss=loss)


def _as_jax(tasks: data.Tasks) -> dict:
  return {k: jnp.asarray(getattr(tasks, k)) for k in maml.TASK_KEYS}


def _train_tasks(cfg: FewShotConfig, sampler: data.EpisodeSampler,
                 step: int) -> dict:
  """The meta-batch of meta-step `step`: a function of (seed, step) only."""
  rng = np.random.default_rng([cfg.seed, step, 11])
  dist = cfg.support[rng.integers(len(cfg.support))]
  return _as_jax(sampler.sample(rng, dist, query_multiple=cfg.query_multiple,
                                num_tasks=cfg.meta_batch))


@functools.partial(jax.jit, static_argnames=('apply_fn', 'cfg'))
def _adapt_and_predict(params, apply_fn, tasks, *, cfg: maml.MamlConfig):
  """Meta-test: adapt each task (no meta-gradient) and predict its queries."""
  def one(task):
    adapted = maml.inner_adapt(
        params, apply_fn, (task['support_images'], task['support_labels'],
                           task['support_counts']),
        loss=losses.get_loss(cfg.inner_loss), inner_lr=cfg.inner_lr,
        num_steps=cfg.test_adaptation_steps, first_order=True)
    return jnp.argmax(apply_fn({'params': adapted}, task['query_images']), -1)
  return maml.map_tasks(one, tasks, cfg.resolved_task_map())


def evaluate(state, cfg: FewShotConfig, sampler: data.EpisodeSampler,
             loss: str) -> list[dict]:
  """Meta-test accuracy for each support distribution of `cfg`."""
  mcfg = cfg.maml_config(loss)
  results = []
  for d, dist in enumerate(cfg.support):
    rng = np.random.default_rng([cfg.seed, 999, d])
    accs, per_class = [], []
    remaining = cfg.test_tasks
    while remaining > 0:
      batch = sampler.sample(rng, dist, query_per_class=cfg.test_queries,
                             num_tasks=cfg.meta_batch)
      pred = np.asarray(_adapt_and_predict(state.params, state.apply_fn,
                                           _as_jax(batch), cfg=mcfg))
      take = min(remaining, cfg.meta_batch)
      for t in range(take):
        correct = pred[t] == batch.query_labels[t]
        accs.append(float(correct.mean()))
        # Per-class accuracy, classes ordered by their support count.
        order = np.argsort(batch.support_counts[t], kind='stable')
        per_class.append([correct[batch.query_labels[t] == c].mean()
                          for c in order])
      remaining -= take
    mean, half = metrics.mean_confidence_interval(accs)
    per_class_mean = np.mean(per_class, axis=0).tolist()
    results.append({
        'distribution': list(dist),
        'imbalance_degree': round(float(losses.imbalance_degree(
            np.asarray(dist))), 4) + 0.0,  # No "-0.0".
        'accuracy_mean': mean, 'accuracy_ci95': half,
        'per_class_accuracy_by_support_size': per_class_mean,
        'num_tasks': len(accs)})
  return results


def train_and_evaluate(cfg: FewShotConfig, splits, loss: str, workdir: str,
                       *, progress=None,
                       step_callback: Optional[Callable[[int], None]] = None
                       ) -> dict:
  """Meta-trains with `loss` (resuming if checkpointed) and meta-tests."""
  mcfg = cfg.maml_config(loss)
  train_sampler = data.EpisodeSampler(splits.train, ways=cfg.ways)
  test_sampler = data.EpisodeSampler(splits.test, ways=cfg.ways)
  side = min(splits.train.image_shape[:2])
  model = models.Conv4(num_classes=cfg.ways, features=cfg.features,
                       pools=min(4, int(np.log2(side))))
  first = _train_tasks(cfg, train_sampler, 0)
  state = maml.create_state(model, mcfg, jax.random.key(cfg.seed),
                            first['support_images'][0])
  checkpointer = checkpoints.Checkpointer(
      os.path.join(workdir, 'checkpoints', loss))
  start, restored = checkpointer.restore(
      {'params': state.params, 'opt_state': state.opt_state,
       'step': state.step})
  state = state.replace(**restored)
  step_fn = maml.parallel_meta_train_step(mcfg, parallel=cfg.parallel)
  history = []
  for step in range(start, cfg.meta_steps):
    state, m = step_fn(state, _train_tasks(cfg, train_sampler, step))
    history.append(float(m['meta_loss']))
    if progress is not None:
      progress.update(1)
      progress.set_postfix(loss=loss, meta_loss=f'{history[-1]:.4f}',
                           refresh=False)
    if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.meta_steps:
      checkpointer.save(step + 1, {'params': state.params,
                                   'opt_state': state.opt_state,
                                   'step': state.step})
    if step_callback is not None:
      step_callback(step + 1)
  checkpointer.close()
  return {'loss': loss, 'meta_loss_resumed_part': history,
          'distributions': evaluate(state, cfg, test_sampler, loss)}


def markdown_table(runs: list[dict], cfg: FewShotConfig) -> str:
  """Table IV's shape: distribution, lambda, accuracy ± 95 % CI per loss."""
  names = [r['loss'] for r in runs]
  lines = ['| distribution | λ | ' + ' | '.join(names) + ' |',
           '|' + '---|' * (2 + len(names))]
  for d, dist in enumerate(cfg.support):
    row = runs[0]['distributions'][d]
    cells = [f"{100 * r['distributions'][d]['accuracy_mean']:.2f} ± "
             f"{100 * r['distributions'][d]['accuracy_ci95']:.2f}"
             for r in runs]
    lines.append(f"| {list(dist)} | {row['imbalance_degree']:.4f} | "
                 + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def plot_accuracy_vs_lambda(runs: list[dict], path: str) -> None:
  """Fig. 5's shape: accuracy against lambda, one series per loss."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for r in runs:
    pts = sorted((d['imbalance_degree'], d['accuracy_mean'],
                  d['accuracy_ci95']) for d in r['distributions'])
    lam, acc, ci = map(np.array, zip(*pts))
    ax.errorbar(lam, acc, yerr=np.nan_to_num(ci), marker='o', capsize=3,
                label=r['loss'])
  ax.set(xlabel='imbalance degree λ of the support set',
         ylabel='meta-test accuracy (balanced queries)',
         title='Fig. 5: accuracy against λ')
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(cfg: FewShotConfig, workdir: str, *, show_progress: bool = True,
        step_callback: Optional[Callable[[str, int], None]] = None) -> dict:
  """Runs every loss of `cfg`; writes results.json, table.md, fig5.png."""
  cfg.validate()
  config = checkpoints.claim_workdir(workdir, dataclasses.asdict(cfg))
  os.makedirs(os.path.join(workdir, 'runs'), exist_ok=True)
  splits = data.load_fewshot(cfg.dataset, data_dir=cfg.data_dir,
                             manual_dir=cfg.manual_dir)
  bar = None
  if show_progress:
    from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm.tqdm(total=cfg.meta_steps * len(cfg.losses), unit='step',
                    desc='meta-training', mininterval=1.0)
  runs = []
  for loss in cfg.losses:
    path = os.path.join(workdir, 'runs', f'{loss}.json')
    if os.path.exists(path):
      with open(path) as f:
        runs.append(json.load(f))
      if bar is not None:
        bar.update(cfg.meta_steps)
      continue
    callback = (functools.partial(step_callback, loss)
                if step_callback is not None else None)
    result = train_and_evaluate(cfg, splits, loss, workdir, progress=bar,
                                step_callback=callback)
    with open(path + '.tmp', 'w') as f:
      json.dump(result, f)
    os.replace(path + '.tmp', path)
    runs.append(result)
  if bar is not None:
    bar.close()
  table = markdown_table(runs, cfg)
  results = {'config': config, 'splits': splits.description,
             'batch_norm': 'transductive batch statistics (BatchStatNorm)',
             'runs': runs, 'table_markdown': table}
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(workdir, 'table.md'), 'w') as f:
    f.write(f'{cfg.ways}-way meta-test accuracy (%), mean ± 95 % CI over '
            f'{cfg.test_tasks} tasks per distribution; {splits.description}; '
            f'{cfg.meta_steps} meta-steps.\n\n{table}\n')
  plot_accuracy_vs_lambda(runs, os.path.join(workdir, 'fig5.png'))
  return results
