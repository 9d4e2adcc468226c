"""Figures: the paper's, and those of the classification and few-shot runners
(the detection figure is `cil.experiments.detect.figure_detections`).

Matplotlib's object API (`matplotlib.figure.Figure`, no pyplot state, no
`matplotlib.use`), so drawing works headless and inside any program. Every
figure is saved as PNG and PDF with a CSV of the plotted numbers beside it
(`save`); spread over seeds or tasks is drawn as 95 % CI error bars.
Matplotlib is imported when a figure is drawn (extra `experiments`).
"""

import csv
import math
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cil import _extras
from cil import losses
from cil import metrics


def _binary_logits(p: jax.Array) -> jax.Array:
  """`[n, 2]` logits whose class-0 softmax probability is exactly `p`."""
  return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)


def loss_curves(p: Sequence[float], *, majority_counts=(256, 1),
                log_base: float = 10.0) -> dict:
  """Fig. 2's curves: loss and dL/dp against the true-class probability p.

  Losses come from `cil.losses` evaluated on two-class logits whose softmax
  gives exactly p (so the plotted loss is the implementation's). Gradients
  come from the closed forms (13)-(15). The CI curves are for a 256:1
  two-class task (lambda = 1.20 > 1): the majority class (f = 1) and the
  minority class (f = 256 ** (1/8) = 2).

  Args:
    p: probabilities in (0, 1).
    majority_counts: counts of the two-class task used for the CI curves.
    log_base: the losses' logarithm; the paper's figure uses base 10 (the
      losses' own default is the natural log).

  Returns:
    A dict name -> (loss `[n]`, dL/dp `[n]`) as NumPy arrays, plus 'p'.
  """
  with jax.enable_x64(True):
    p = jnp.asarray(p, jnp.float64)
    n = p.shape[0]
    z = _binary_logits(p)
    counts = jnp.asarray(majority_counts, jnp.float64)
    factors = losses.ci_class_factors(counts)
    majority = int(jnp.argmax(counts))
    minority = 1 - majority
    zeros = jnp.zeros(n, jnp.int32)
    b = log_base
    # The true class is column 0; order the counts so that column 0 is the
    # majority (resp. minority) class.
    as_majority = counts[jnp.array([majority, minority])]
    as_minority = counts[jnp.array([minority, majority])]
    curves = {
        'CE': (losses.cross_entropy(z, zeros, log_base=b),
               losses.cross_entropy_grad_p(p, log_base=b)),
        'FL (gamma=0.5)': (losses.focal_loss(z, zeros, gamma=0.5, log_base=b),
                           losses.focal_grad_p(p, gamma=0.5, log_base=b)),
        'FL (gamma=5)': (losses.focal_loss(z, zeros, gamma=5.0, log_base=b),
                         losses.focal_grad_p(p, gamma=5.0, log_base=b)),
        f'CI majority (f={float(factors[majority]):g})': (
            losses.ci_loss(z, zeros, as_majority, log_base=b),
            losses.ci_grad_p(p, factors[majority], log_base=b)),
        f'CI minority (f={float(factors[minority]):g})': (
            losses.ci_loss(z, zeros, as_minority, log_base=b),
            losses.ci_grad_p(p, factors[minority], log_base=b)),
    }
    out = {k: (np.asarray(a), np.asarray(b)) for k, (a, b) in curves.items()}
    out['p'] = np.asarray(p)
  return out


_COLOURS = ('black', 'tab:green', 'tab:red', 'goldenrod', 'tab:blue')


def figure(**kw):
  """A `matplotlib.figure.Figure(**kw)` (no pyplot state)."""
  module = _extras.require('matplotlib.figure', what='cil.plots')
  return module.Figure(**kw)


def save(fig, stem: str, header: Sequence[str],
         rows: Sequence[Sequence]) -> dict:
  """Writes `stem.png`, `stem.pdf` and `stem.csv` (header + rows).

  Returns:
    The paths written, keyed 'png', 'pdf', 'csv'.
  """
  os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
  paths = {ext: f'{stem}.{ext}' for ext in ('png', 'pdf', 'csv')}
  fig.savefig(paths['png'], dpi=120)
  fig.savefig(paths['pdf'])
  with open(paths['csv'], 'w', newline='', encoding='utf-8') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    for row in rows:
      writer.writerow([f'{x:.6g}' if isinstance(x, float) else x
                       for x in row])
  return paths


def plot_loss_curves(out_dir: str, *, num_points: int = 400) -> dict:
  """The paper's Fig. 2 as `fig2_losses.{png,pdf,csv}` in `out_dir`.

  Left: loss against p. Right: the magnitude of the gradient, -dL/dp.

  Args:
    out_dir: directory to write to (created if missing).
    num_points: points on the p axis (at least 2).

  Returns:
    The paths written ('png', 'pdf', 'csv').
  """
  if num_points < 2:
    raise ValueError(f'num_points must be at least 2, got {num_points}.')
  p = np.linspace(1e-3, 1 - 1e-3, num_points)
  curves = loss_curves(p)
  names = [k for k in curves if k != 'p']

  fig = figure(figsize=(11, 4.3), layout='tight')
  ax_loss, ax_grad = fig.subplots(1, 2)
  for name, colour in zip(names, _COLOURS):
    loss, grad = curves[name]
    ax_loss.plot(p, loss, color=colour, label=name, lw=1.8)
    ax_grad.plot(p, -grad, color=colour, label=name, lw=1.8)
  ax_loss.set(xlabel='probability of the ground-truth class $\\hat y_i$',
              ylabel='loss (log base 10)', xlim=(0, 1), ylim=(0, 2.5),
              title='Loss')
  ax_grad.set(xlabel='probability of the ground-truth class $\\hat y_i$',
              ylabel='$-\\partial L / \\partial \\hat y_i$', xlim=(0, 1),
              ylim=(0, 4), title='Gradient magnitude')
  for ax in (ax_loss, ax_grad):
    ax.grid(alpha=0.3)
  ax_loss.legend(frameon=False)
  fig.suptitle('CE, FL and CI against p (256:1 task, $\\lambda$ = 1.20)')
  header = (['p'] + [f'{n} loss' for n in names]
            + [f'{n} dL/dp' for n in names])
  rows = [[float(p[i])] + [float(curves[n][0][i]) for n in names]
          + [float(curves[n][1][i]) for n in names] for i in range(len(p))]
  return save(fig, os.path.join(out_dir, 'fig2_losses'), header, rows)


def per_class_recall(runs: Sequence[dict], class_names: Sequence[str],
                     stem: str) -> dict:
  """Classification: per-class recall, a bar per loss, 95 % CI over seeds.

  One panel per protocol; tick labels give each class's training count
  (of the first seed).

  Args:
    runs: `cil.experiments.classify` run results (`protocol`, `loss`,
      `per_seed` with `per_class_recall` and `class_counts`).
    class_names: the dataset's class names.
    stem: output path without extension.
  """
  protocols = list(dict.fromkeys(r['protocol'] for r in runs))
  loss_names = list(dict.fromkeys(r['loss'] for r in runs))
  fig = figure(figsize=(max(6, 0.7 * len(class_names) + 2) + 2.5,
                        3.2 * len(protocols)), layout='constrained')
  axes = fig.subplots(len(protocols), 1, squeeze=False)[:, 0]
  width = 0.8 / len(loss_names)
  x = np.arange(len(class_names))
  rows = []
  for ax, protocol in zip(axes, protocols):
    for j, loss_name in enumerate(loss_names):
      run = next((r for r in runs if r['protocol'] == protocol
                  and r['loss'] == loss_name), None)
      if run is None:
        continue
      recalls = np.array([s['per_class_recall'] for s in run['per_seed']],
                         dtype=float)
      stats = [metrics.mean_confidence_interval(recalls[:, c])
               for c in range(recalls.shape[1])]
      mean = np.array([m for m, _ in stats])
      half = np.nan_to_num(np.array([h for _, h in stats]))
      ax.bar(x + (j - (len(loss_names) - 1) / 2) * width, mean, width,
             yerr=half, capsize=2, label=loss_name)
      rows += [[protocol, loss_name, class_names[c], float(mean[c]),
                float(half[c]), len(recalls)] for c in range(len(mean))]
    counts = next(r['per_seed'][0]['class_counts'] for r in runs
                  if r['protocol'] == protocol)
    ax.set_xticks(x, [f'{n}\n(n={c})' for n, c in zip(class_names, counts)],
                  fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_ylabel('recall')
    ax.set_title(f'per-class recall on the balanced test set: {protocol}')
    ax.grid(axis='y', alpha=0.3)
  _outside_legend(fig, *axes[0].get_legend_handles_labels(), 'loss')
  return save(fig, stem, ['protocol', 'loss', 'class', 'recall_mean',
                          'recall_ci95', 'seeds'], rows)


def accuracy_vs_lambda(runs: Sequence[dict], stem: str) -> dict:
  """Few-shot: meta-test accuracy against the support's lambda (Fig. 5).

  Args:
    runs: `cil.experiments.fewshot` run results (`loss`, `distributions` with
      `imbalance_degree`, `accuracy_mean`, `accuracy_ci95`).
    stem: output path without extension.
  """
  fig = figure(figsize=(8, 4), layout='constrained')
  ax = fig.subplots()
  rows = []
  for r in runs:
    pts = sorted((d['imbalance_degree'], d['accuracy_mean'],
                  d['accuracy_ci95'] or 0.0, str(d['distribution']),
                  d['num_tasks']) for d in r['distributions'])
    lam, acc, ci = (np.array([p[i] for p in pts]) for i in range(3))
    ax.errorbar(lam, acc, yerr=np.nan_to_num(ci), marker='o', capsize=3,
                label=r['loss'])
    rows += [[r['loss'], p[3], p[0], p[1], p[2], p[4]] for p in pts]
  ax.set(xlabel='imbalance degree λ of the support set',
         ylabel='meta-test accuracy (balanced queries)',
         title='accuracy against λ (95 % CI over tasks)')
  ax.grid(alpha=0.3)
  _outside_legend(fig, *ax.get_legend_handles_labels(), 'loss')
  return save(fig, stem, ['loss', 'distribution', 'lambda', 'accuracy_mean',
                          'accuracy_ci95', 'tasks'], rows)


def _base_and_rule(name: str) -> tuple[str, str]:
  """'ce+posthoc' -> ('ce', 'posthoc'): a row name's trained loss and its
  prediction rule ('' for the trained model's own argmax)."""
  base, plus, rule = name.rpartition('+')
  return (base, rule) if plus else (name, '')


def _styles(names: Sequence[str]) -> dict:
  """A distinct (colour, line style, marker) per name, for up to 60 names
  (tab20's colours x 3 line styles), then repeating."""
  module = _extras.require('matplotlib', what='cil.plots')
  colours = module.colormaps['tab20'].colors
  dashes = ('-', '--', ':')
  markers = ('o', 's', '^')
  return {n: {'color': colours[k % 20], 'ls': dashes[(k // 20) % 3],
              'marker': markers[(k // 20) % 3]}
          for k, n in enumerate(names)}


_LEGEND_ROWS = 28  # Entries per legend column.


def _legend_height(entries: int) -> float:
  """Inches a figure needs for `_figure_legend` of this many entries."""
  rows = math.ceil(entries / max(1, math.ceil(entries / _LEGEND_ROWS)))
  return 0.16 * rows + 1.0


def _outside_legend(fig, handles, labels, title: str) -> None:
  """One legend for the whole figure, outside the axes on the right, in
  as many columns as 28 entries each need (constrained layout makes room).
  """
  fig.legend(handles, labels, loc='outside right upper', fontsize=7,
             ncol=max(1, math.ceil(len(labels) / _LEGEND_ROWS)), title=title,
             title_fontsize=8)


def _figure_legend(fig, styles: dict, title: str) -> None:
  """`_outside_legend` of one line per style (name -> line style)."""
  lines = _extras.require('matplotlib.lines', what='cil.plots')
  handles = [lines.Line2D([], [], ms=4, **style) for style in styles.values()]
  _outside_legend(fig, handles, list(styles), title)


def _rows_by_rule(names: Sequence[str]) -> list[tuple[str, list[str]]]:
  """`[(rule, names)]`: the trained models first, then each prediction
  rule (post-hoc adjustment, decoupled classifiers) in a row of its own."""
  rules = list(dict.fromkeys(_base_and_rule(n)[1] for n in names))
  rules.sort(key=lambda r: r != '')
  return [(rule, [n for n in names if _base_and_rule(n)[1] == rule])
          for rule in rules]


def metrics_vs_lambda(runs: Sequence[dict], stem: str, *,
                      metrics: Sequence[str] = (
                          'accuracy', 'balanced_accuracy',
                          'minority_recall')) -> dict:
  """Classification sweep: metrics against the training set's lambda.

  One column per metric, one line per loss with its 95 % CI over seeds as a
  band, and lambda = 1 (where eq. (5) switches exponent) marked. Each
  prediction rule gets a row of its own (the trained models' argmax, then
  '+posthoc', '+crt', ... rows), a loss has one style in every row, and
  one legend outside the axes names them: readable with any number of
  losses (`differences_vs_lambda` compares many against one).

  Args:
    runs: `cil.experiments.classify` runs with `summary`
      (`cil.experiments.report.summarize`); each protocol's lambda is the
      mean over its seeds.
    stem: output path without extension.
    metrics: summary keys to plot.
  """
  fig, rows = sweep_figure(runs, metrics)
  return save(fig, stem, ['loss', 'metric', 'protocol', 'lambda', 'mean',
                          'ci95', 'seeds'], rows)


def sweep_figure(runs: Sequence[dict], metrics: Sequence[str]) -> tuple:
  """`metrics_vs_lambda`'s figure and the rows of its CSV, unsaved."""
  names = list(dict.fromkeys(r['loss'] for r in runs))
  styles = _styles(list(dict.fromkeys(_base_and_rule(n)[0] for n in names)))
  rows_by_rule = _rows_by_rule(names)
  fig = figure(figsize=(3.8 * len(metrics) + 2.5,
                        max(3.0 * len(rows_by_rule),
                            _legend_height(len(styles)))),
               layout='constrained')
  axes = fig.subplots(len(rows_by_rule), len(metrics), squeeze=False)
  by_loss = {}
  for r in runs:
    by_loss.setdefault(r['loss'], []).append(r)
  rows = []
  for i, (rule, row_names) in enumerate(rows_by_rule):
    for j, metric in enumerate(metrics):
      ax = axes[i, j]
      for name in row_names:
        pts = sorted(
            (r['summary']['imbalance_degree']['mean'],
             r['summary'][metric]['mean'], r['summary'][metric]['ci95'] or 0.0,
             r['protocol'], len(r['per_seed'])) for r in by_loss[name]
            if r['summary'][metric]['mean'] is not None)
        if not pts:
          continue
        lam, mean, ci = (np.array([p[k] for p in pts], float)
                         for k in range(3))
        ci = np.nan_to_num(ci)
        style = styles[_base_and_rule(name)[0]]
        ax.plot(lam, 100 * mean, ms=3, lw=1.2, **style)
        # Metrics are rates: the band is clipped to [0, 100] %.
        ax.fill_between(lam, np.clip(100 * (mean - ci), 0, 100),
                        np.clip(100 * (mean + ci), 0, 100),
                        color=style['color'], alpha=0.08, lw=0)
        rows += [[name, metric, p[3], p[0], p[1], p[2], p[4]] for p in pts]
      ax.axvline(1.0, color='k', ls=':', lw=1)
      ax.set(xlabel='imbalance degree λ of the training set',
             ylabel=f'{metric.replace("_", " ")} (%)',
             title=f'{"trained" if not rule else "+" + rule}: '
                   f'{metric.replace("_", " ")}')
      ax.title.set_fontsize(9)
      ax.grid(alpha=0.3)
  _figure_legend(fig, styles, 'loss')
  fig.suptitle('test metrics against λ (bands: 95 % CI over seeds; '
               'dotted: λ = 1)')
  return fig, rows


def differences_vs_lambda(differences: Sequence[dict], stem: str, *,
                          baseline: str, metric: str = 'accuracy') -> dict:
  """Each loss minus `baseline`, paired by seed, against lambda.

  The comparison many losses need: one row per prediction rule, the
  difference in points with its paired 95 % CI as an error bar, zero
  marked, one legend outside the axes.

  Args:
    differences: `cil.experiments.report.paired_differences` records
      (`protocol`, `lambda`, `loss`, `seeds`, `mean`, `ci95`).
    stem: output path without extension.
    baseline: the loss subtracted (for the labels).
    metric: the metric the differences are of (for the labels).
  """
  fig, rows = differences_figure(differences, baseline=baseline,
                                 metric=metric)
  return save(fig, stem, ['loss', 'protocol', 'lambda', 'difference',
                          'ci95', 'seeds'], rows)


def differences_figure(differences: Sequence[dict], *, baseline: str,
                       metric: str) -> tuple:
  """`differences_vs_lambda`'s figure and the rows of its CSV, unsaved."""
  names = list(dict.fromkeys(d['loss'] for d in differences))
  bases = list(dict.fromkeys(_base_and_rule(n)[0] for n in names))
  if baseline in bases:  # First, as in `sweep_figure`: the same colours.
    bases = [baseline] + [b for b in bases if b != baseline]
  styles = _styles(bases)
  rows_by_rule = _rows_by_rule(names)
  fig = figure(figsize=(11, max(3.0 * len(rows_by_rule),
                                _legend_height(len(styles)))),
               layout='constrained')
  axes = fig.subplots(len(rows_by_rule), 1, squeeze=False)[:, 0]
  rows = []
  for ax, (rule, row_names) in zip(axes, rows_by_rule):
    for k, name in enumerate(row_names):
      pts = sorted((d['lambda'], d['mean'], d['ci95'], d['protocol'],
                    d['seeds']) for d in differences if d['loss'] == name)
      lam, mean, ci = (np.array([p[i] for p in pts], float) for i in range(3))
      # A small offset per loss keeps the error bars of one lambda apart.
      offset = 0.006 * (k - (len(row_names) - 1) / 2)
      style = styles[_base_and_rule(name)[0]]
      ax.errorbar(lam + offset, 100 * mean, yerr=100 * np.nan_to_num(ci),
                  capsize=2, ms=3, lw=1, elinewidth=0.8, **style)
      rows += [[name, p[3], p[0], p[1], p[2], p[4]] for p in pts]
    ax.axhline(0.0, color='k', lw=0.8)
    ax.set(xlabel='imbalance degree λ of the training set',
           ylabel=f'{metric.replace("_", " ")} − {baseline} (points)',
           title=f'{"trained" if not rule else "+" + rule} minus {baseline}')
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
  _figure_legend(fig, styles, 'loss')
  fig.suptitle(f'{metric.replace("_", " ")} − {baseline}, paired by seed '
               f'(95 % CI)')
  return fig, rows


def training_curves(runs: Sequence[dict], stem: str) -> dict:
  """Each run's mean training loss per epoch (`train_loss_per_epoch`),
  one panel per protocol (in order of lambda), log scale: whether a
  training has levelled off. Writes `stem.{png,pdf,csv}` (protocol,
  lambda, loss, epoch, train_loss).
  """
  lam_of = {r['protocol']: float(np.mean([s['imbalance_degree']
                                          for s in r['per_seed']]))
            for r in runs}
  protocols = sorted(lam_of, key=lam_of.get)
  names = list(dict.fromkeys(r['loss'] for r in runs))
  styles = _styles(names)
  columns = min(2, len(protocols))
  panel_rows = math.ceil(len(protocols) / columns)
  fig = figure(figsize=(11, max(3.2 * panel_rows, _legend_height(len(names)))),
               layout='constrained')
  axes = fig.subplots(panel_rows, columns, squeeze=False).ravel()
  rows = []
  for ax, protocol in zip(axes, protocols):
    for run in runs:
      if run['protocol'] != protocol:
        continue
      losses = np.asarray(run['train_loss_per_epoch'], float)
      epochs = np.arange(1, losses.size + 1)
      ax.plot(epochs, losses, ms=3, lw=1, **styles[run['loss']])
      rows += [[protocol, lam_of[protocol], run['loss'], int(e), float(v)]
               for e, v in zip(epochs, losses)]
    ax.set(yscale='log', xlabel='epoch', ylabel='mean training loss',
           title=f'λ {lam_of[protocol]:.2f}: {protocol}')
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
  for ax in axes[len(protocols):]:
    ax.set_visible(False)
  _figure_legend(fig, styles, 'loss')
  fig.suptitle('training loss per epoch (mean over seeds)')
  return save(fig, stem, ['protocol', 'lambda', 'loss', 'epoch',
                          'train_loss'], rows)
