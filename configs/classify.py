r"""Imbalanced classification (the paper's Tables I-III): `launch.classify`.

Variants (`--config=configs/classify.py:VARIANT`):

* `default`: the embedded default. Scikit-learn's bundled 8x8 digits with
  the odd classes at 10 % (lambda 0.5), CE vs focal vs CI, 5 seeds, 30
  epochs (about 3 minutes on 2 CPU cores):

      python -m launch.classify

* `smoke`: the whole path in seconds once compiled (2 seeds, 1 epoch, CE
  and CI):

      python -m launch.classify --config=configs/classify.py:smoke

* `mnist_table1`: Table I on MNIST, LeNet, the four situations, 20
  samplings (the manual dir holds mnist/ with the four IDX files; see
  WORKSPACE.md for where it is on the project machines):

      python -m launch.classify --config=configs/classify.py:mnist_table1 \
          --config.manual_dir=/path/to/manual --workdir=results/mnist_table1

* `mnist_sweep`: the imbalance sweep and the eq. (5) ablation on MNIST
  (`RESULTS.md`): LeNet, 500 images per majority class, the `step`
  protocol with the last five classes at 250 ... 1 image (lambda 0.15 ...
  1.35, both sides of the switch at lambda = 1), CE, FL, CI, logit
  adjustment, class-balanced and LDAM, and CI with "always 1/2", "always
  1/8" and a ramp of width 1; 5 seeds, 3 epochs (135-180 Adam steps). Writes
  `lambda_sweep.{png,pdf,csv}`:

      python -m launch.classify --config=configs/classify.py:mnist_sweep \
          --config.manual_dir=/path/to/manual --workdir=results/mnist_sweep

* `mstar`: Tables II-III on MSTAR SOC, A-ConvNets, five minority classes at
  24 or 12 chips, 100 samplings:

      python -m launch.classify --config=configs/classify.py:mstar \
          --config.manual_dir=/data/manual --workdir=results/mstar

Any field can be overridden: `--config.losses=fl
--config.loss_hparams.focal.gamma=0.5`, `--config.seeds=20`, or a list
`--config.protocols="('odd10', 'step:ratio=100,mu=0.5')"` (quote a spec that
holds commas: `--config.protocols="'step:ratio=100,mu=0.5'"`).
"""

import ml_collections

from configs import common

VARIANTS = ('default', 'smoke', 'mnist_table1', 'mnist_sweep', 'mstar')

# The sweep's minority sizes: 500 // ratio = 250, 100, 50, 16, 6, 4, 2, 1.
SWEEP_RATIOS = (2, 5, 10, 31.25, 83, 125, 250, 500)


def get_config(arg=None) -> ml_collections.ConfigDict:
  """The config of `arg` (one of `VARIANTS`; None is 'default')."""
  variant = common.split_variant(arg, VARIANTS)
  c = ml_collections.ConfigDict()
  # Data: 'digits' (embedded), 'mnist' or 'mstar_soc' (`cil.data.load`).
  c.dataset = 'digits'
  c.data_dir = ml_collections.config_dict.placeholder(str)  # $CIL_DATA_DIR
  c.manual_dir = ml_collections.config_dict.placeholder(str)  # $CIL_MANUAL_DIR
  # Imbalance protocols (`cil.data.get_protocol` specs) x losses = cells.
  c.protocols = ('odd10',)
  c.losses = ('ce', 'focal', 'ci')
  c.loss_hparams = common.loss_hparams()
  # Model: a `cil.models` name; '' picks the dataset's (digits_cnn, lenet,
  # aconvnet).
  c.model = ''
  # Seeds: random samplings per cell, first_seed .. first_seed + seeds - 1.
  c.seeds = 5
  c.first_seed = 0
  # Optimisation.
  c.epochs = 30
  c.batch_size = 64
  c.optimizer = 'adam'  # or 'sgd' (momentum 0.9)
  c.lr = 1e-3
  c.weight_decay = 0.0
  # Speed: 0 / '' pick the backend's choice (`cil.runtime.policy`).
  c.chunk_steps = 0
  c.seed_parallel = ''  # 'loop' or 'vmap'
  c.eval_batch_size = 1000
  # Save every this many epochs (and after the last).
  c.checkpoint_every = 5

  if variant == 'smoke':
    c.losses = ('ce', 'ci')
    c.seeds = 2
    c.epochs = 1
  elif variant == 'mnist_table1':
    c.dataset = 'mnist'
    c.protocols = ('odd10', 'odd25', 'even10', 'even25')
    c.seeds = 20
    c.epochs = 10
  elif variant == 'mnist_sweep':
    c.dataset = 'mnist'
    c.protocols = tuple(f'step:ratio={r},mu=0.5,n_max=500'
                        for r in SWEEP_RATIOS)
    c.losses = ('ce', 'focal', 'ci', 'la', 'cb', 'ldam',
                'ci:high_exponent=0.5',      # always 1/2
                'ci:low_exponent=0.125',     # always 1/8
                'ci:transition_width=1.0')   # ramp over 0.5 <= lambda <= 1.5
    c.seeds = 5
    c.epochs = 3
  elif variant == 'mstar':
    c.dataset = 'mstar_soc'
    c.protocols = ('mstar24', 'mstar12')
    c.seeds = 100
  return c
