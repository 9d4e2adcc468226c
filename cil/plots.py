"""Figures of the paper, drawn from the library's own functions."""

import csv
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from cil import losses


def _binary_logits(p: jax.Array) -> jax.Array:
  """`[n, 2]` logits whose class-0 softmax probability is exactly `p`."""
  return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)


def loss_curves(p: Sequence[float], *, majority_counts=(256, 1)) -> dict:
  """Fig. 2's curves: loss and dL/dp against the true-class probability p.

  Losses come from `cil.losses` evaluated on two-class logits whose softmax
  gives exactly p (so the plotted loss is the implementation's). Gradients
  come from the closed forms (13)-(15). The CI curves are for a 256:1
  two-class task (lambda = 1.20 > 1): the majority class (f = 1) and the
  minority class (f = 256 ** (1/8) = 2).

  Args:
    p: probabilities in (0, 1).
    majority_counts: counts of the two-class task used for the CI curves.

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
    # The true class is column 0; order the counts so that column 0 is the
    # majority (resp. minority) class.
    as_majority = counts[jnp.array([majority, minority])]
    as_minority = counts[jnp.array([minority, majority])]
    curves = {
        'CE': (losses.cross_entropy(z, zeros),
               losses.cross_entropy_grad_p(p)),
        'FL (gamma=0.5)': (losses.focal_loss(z, zeros, gamma=0.5),
                           losses.focal_grad_p(p, gamma=0.5)),
        'FL (gamma=5)': (losses.focal_loss(z, zeros, gamma=5.0),
                         losses.focal_grad_p(p, gamma=5.0)),
        f'CI majority (f={float(factors[majority]):g})': (
            losses.ci_loss(z, zeros, as_majority),
            losses.ci_grad_p(p, factors[majority])),
        f'CI minority (f={float(factors[minority]):g})': (
            losses.ci_loss(z, zeros, as_minority),
            losses.ci_grad_p(p, factors[minority])),
    }
    out = {k: (np.asarray(a), np.asarray(b)) for k, (a, b) in curves.items()}
    out['p'] = np.asarray(p)
  return out


_COLOURS = ('black', 'tab:green', 'tab:red', 'goldenrod', 'tab:blue')


def plot_loss_curves(out_dir: str, *, num_points: int = 400) -> dict:
  """Writes Fig. 2 (`fig2_losses.png`) and its data (`fig2_losses.csv`).

  Left: loss against p. Right: the magnitude of the gradient, -dL/dp.

  Args:
    out_dir: directory to write to (created if missing).
    num_points: points on the p axis.

  Returns:
    A dict with the paths written ('png', 'csv').
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  os.makedirs(out_dir, exist_ok=True)
  p = np.linspace(1e-3, 1 - 1e-3, num_points)
  curves = loss_curves(p)
  names = [k for k in curves if k != 'p']

  fig, (ax_loss, ax_grad) = plt.subplots(1, 2, figsize=(11, 4.3))
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
  fig.suptitle('Fig. 2: CE, FL and CI (256:1 task, $\\lambda$ = 1.20)')
  fig.tight_layout()
  png = os.path.join(out_dir, 'fig2_losses.png')
  fig.savefig(png, dpi=120)
  plt.close(fig)

  path_csv = os.path.join(out_dir, 'fig2_losses.csv')
  with open(path_csv, 'w', newline='') as f:
    writer = csv.writer(f)
    writer.writerow(['p'] + [f'{n} loss' for n in names]
                    + [f'{n} dL/dp' for n in names])
    for i in range(len(p)):
      writer.writerow([f'{p[i]:.6g}']
                      + [f'{curves[n][0][i]:.6g}' for n in names]
                      + [f'{curves[n][1][i]:.6g}' for n in names])
  return {'png': png, 'csv': path_csv}
