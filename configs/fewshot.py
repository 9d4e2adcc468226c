r"""Imbalanced few-shot learning with MAML (Table IV, Fig. 5): `launch.fewshot`.

Variants (`--config=configs/fewshot.py:VARIANT`):

* `default`: the embedded default. Digits (meta-train classes 0-4,
  meta-test 5-9), support [1,1,1,1,11], [1,2,3,4,5], [3,3,3,3,3], CE vs CI,
  600 second-order meta-steps, 100 test tasks per distribution (about 2.5
  minutes on 2 CPU cores; docs/performance.md):

      python -m launch.fewshot

* `smoke`: the whole path in seconds once compiled (4 meta-steps, 4 test
  tasks, Conv4 with 8 filters):

      python -m launch.fewshot --config=configs/fewshot.py:smoke

* `miniimagenet_table4`: all 30 distributions of eq. (21) on miniImageNet
  as the paper (Conv4-64, 5 inner steps, 600 test tasks, 60,000
  meta-steps); the manual dir holds mini_imagenet/ (docs/data.md):

      python -m launch.fewshot --config=configs/fewshot.py:miniimagenet_table4 \
          --config.manual_dir=DIR --workdir=results/mini_table4

* `omniglot`: 5-way Omniglot (1200 / 423 characters with rotations), the
  [1,2,3,4,5] and balanced supports, 28x28.

* `omniglot_lambda`: the few-shot study of `RESULTS.md` on the small
  Omniglot sets (`omniglot_small`: alphabet-disjoint, rotations as
  classes): CE vs CI over eight support distributions of eq. (21)
  spanning lambda 0 ... 0.83, 300 test tasks each with 9 balanced queries
  per class (a character has 20 drawings; 11 + 9 = 20); meta-train on the
  seven that leave room for p * N_i queries (all but [1,1,1,1,11]).
  Conv4-32, first-order MAML, 1 inner step at 0.4 (5 at test), meta-batch
  8, 1000 meta-steps:

      python -m launch.fewshot --config=configs/fewshot.py:omniglot_lambda \
          --config.manual_dir=/path/to/manual --workdir=results/omniglot_lambda

* `omniglot_paper_loop`: `omniglot_lambda` with the inner loop the paper
  took from MAML (Finn et al. 2017, its miniImageNet settings, which the
  paper's Fig. 5 follows): second-order, 5 inner steps at 0.01 (10 at
  test), meta-batch 4, Adam 1e-3 on the meta-loss. RESULTS.md's study 9
  runs it and `omniglot_lambda` with CE, CI and support over-sampling:

      python -m launch.fewshot --config=configs/fewshot.py:omniglot_paper_loop \
          --config.manual_dir=/path/to/manual \
          --config.losses="('ce','ci','ce+ros','ci+ros')" \
          --workdir=results/omniglot_paper_loop

Any field can be overridden: `--config.maml.inner_lr=0.4`,
`--config.losses=ci`, `--config.support="((1,1,1,1,11),(3,3,3,3,3))"`.
"""

import ml_collections

from configs import common

VARIANTS = ('default', 'smoke', 'miniimagenet_table4', 'omniglot',
            'omniglot_lambda', 'omniglot_paper_loop')

# Eq. (21)'s 30 support distributions of 15 images over 5 classes, in
# lexicographic order (`cil.data.partitions(15, 5)`; a test checks they
# agree).
ALL_DISTRIBUTIONS = (
    (1, 1, 1, 1, 11), (1, 1, 1, 2, 10), (1, 1, 1, 3, 9), (1, 1, 1, 4, 8),
    (1, 1, 1, 5, 7), (1, 1, 1, 6, 6), (1, 1, 2, 2, 9), (1, 1, 2, 3, 8),
    (1, 1, 2, 4, 7), (1, 1, 2, 5, 6), (1, 1, 3, 3, 7), (1, 1, 3, 4, 6),
    (1, 1, 3, 5, 5), (1, 1, 4, 4, 5), (1, 2, 2, 2, 8), (1, 2, 2, 3, 7),
    (1, 2, 2, 4, 6), (1, 2, 2, 5, 5), (1, 2, 3, 3, 6), (1, 2, 3, 4, 5),
    (1, 2, 4, 4, 4), (1, 3, 3, 3, 5), (1, 3, 3, 4, 4), (2, 2, 2, 2, 7),
    (2, 2, 2, 3, 6), (2, 2, 2, 4, 5), (2, 2, 3, 3, 5), (2, 2, 3, 4, 4),
    (2, 3, 3, 3, 4), (3, 3, 3, 3, 3))

# Eight of eq. (21)'s distributions, lambda 0 ... 0.83 (RESULTS.md).
LAMBDA_SPAN = ((3, 3, 3, 3, 3), (1, 2, 4, 4, 4), (1, 2, 3, 4, 5),
               (2, 2, 2, 2, 7), (1, 1, 1, 5, 7), (1, 1, 1, 4, 8),
               (1, 1, 1, 2, 10), (1, 1, 1, 1, 11))


def get_config(arg=None) -> ml_collections.ConfigDict:
  """The config of `arg` (one of `VARIANTS`; None is 'default')."""
  variant = common.split_variant(arg, VARIANTS)
  c = ml_collections.ConfigDict()
  # Data (`cil.data.load_fewshot`): digits, omniglot, omniglot_small,
  # mini_imagenet; class_split 'standard' (64/16/20) or 'paper' (64/12/24).
  c.dataset = 'digits'
  # Or your own data (`cil.data.custom`): 'folder:/path', 'npz:/path.npz',
  # 'tfds:NAME'; its classes split by a seed-0 permutation, this share of
  # them to meta-test. image_size: 0 keeps the size (Omniglot: 28); S
  # resizes (and centre-crops your images) to S x S.
  c.meta_test_fraction = 0.25
  c.image_size = 0
  c.class_split = 'standard'
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.manual_dir = ml_collections.config_dict.placeholder(str)
  # Tasks: support distributions (meta-train draws one per task, meta-test
  # evaluates each); meta-train queries per class = query_multiple * N_i;
  # balanced meta-test queries per class.
  c.support = ((1, 1, 1, 1, 11), (1, 2, 3, 4, 5), (3, 3, 3, 3, 3))
  # Meta-train draws from these; () means `support`.
  c.train_support = ()
  c.query_multiple = 1
  c.test_queries = 15
  # Losses, each used in the inner and the outer loop; '<loss>+ros' also
  # over-samples each support set (and the meta-train queries) at random,
  # Ochal et al. 2023: --config.losses="('ci', 'ce+ros', 'ci+ros')".
  c.losses = ('ce', 'ci')
  # The paper's base-10 logarithms (the losses' default is natural).
  c.loss_hparams = common.loss_hparams(log_base=common.PAPER_LOG_BASE)
  # MAML (learn2learn's names; `cil.maml.MamlConfig`).
  c.maml = ml_collections.ConfigDict()
  c.maml.ways = 5
  c.maml.inner_lr = 0.1
  c.maml.meta_lr = 1e-3
  c.maml.adaptation_steps = 1
  c.maml.test_adaptation_steps = 10
  c.maml.first_order = False
  c.maml.task_map = ''  # '' picks the backend's ('calls' on CPU, else 'vmap')
  c.meta_batch = 4
  c.meta_steps = 600
  # Model: Conv4 filters, and its computation dtype: 'float32' or
  # 'bfloat16' (parameters, logits, losses and meta-gradients stay float32).
  c.features = 32
  c.dtype = 'float32'
  # Conv4's convolution lowering: '' (the backend's choice: Winograd for
  # first-order MAML on the CPU, else im2col), 'winograd', 'im2col', 'xla'.
  c.conv_impl = ''
  # XLA options of the meta-step, ((name, value), ...); () for none, None
  # for the backend's (the CPU: the memory-optimised scheduler).
  c.compiler_options = ml_collections.config_dict.placeholder(tuple)
  # Meta-test tasks per distribution (the paper: 600).
  c.test_tasks = 100
  # 'pmap' (plain jit on one device), 'shard_map' or 'none'.
  c.parallel = 'pmap'
  c.seed = 0
  c.checkpoint_every = 100

  if variant == 'smoke':
    c.features = 8
    c.meta_steps = 4
    c.checkpoint_every = 2
    c.test_tasks = 4
    c.maml.test_adaptation_steps = 2
  elif variant == 'miniimagenet_table4':
    c.dataset = 'mini_imagenet'
    c.support = ALL_DISTRIBUTIONS
    c.features = 64
    c.maml.adaptation_steps = 5
    c.maml.inner_lr = 0.01
    c.meta_steps = 60000
    c.test_tasks = 600
    c.checkpoint_every = 1000
  elif variant in ('omniglot_lambda', 'omniglot_paper_loop'):
    c.dataset = 'omniglot_small'
    c.support = LAMBDA_SPAN
    c.train_support = LAMBDA_SPAN[:-1]
    c.test_queries = 9
    c.features = 32
    c.maml.inner_lr = 0.4
    c.maml.first_order = True
    c.maml.test_adaptation_steps = 5
    c.meta_batch = 8
    c.meta_steps = 1000
    c.test_tasks = 300
    c.checkpoint_every = 250
    if variant == 'omniglot_paper_loop':
      c.maml.first_order = False
      c.maml.adaptation_steps = 5
      c.maml.inner_lr = 0.01
      c.maml.test_adaptation_steps = 10
      c.meta_batch = 4
  elif variant == 'omniglot':
    c.dataset = 'omniglot'
    c.support = ((1, 2, 3, 4, 5), (3, 3, 3, 3, 3))
    c.features = 64
    c.meta_steps = 20000
    c.maml.inner_lr = 0.4
    c.test_tasks = 600
    c.checkpoint_every = 1000
  return c
