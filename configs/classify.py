r"""Imbalanced classification (the paper's Tables I-III): `launch.classify`.

Variants (`--config=configs/classify.py:VARIANT`):

* `default`: the embedded default. Scikit-learn's bundled 8x8 digits with
  the odd classes at 10 % (lambda 0.5), CE vs focal vs CI, 5 seeds, 30
  epochs (under 2 minutes on 2 CPU cores; docs/performance.md):

      python -m launch.classify

* `smoke`: the whole path in seconds once compiled (2 seeds, 1 epoch, CE
  and CI):

      python -m launch.classify --config=configs/classify.py:smoke

* `mnist_table1`: Table I on MNIST, LeNet, the four situations, 20
  samplings (the manual dir holds mnist/ with the four IDX files; see
  docs/data.md):

      python -m launch.classify --config=configs/classify.py:mnist_table1 \
          --config.manual_dir=/path/to/manual --workdir=results/mnist_table1

* `mnist_sweep`: the imbalance sweep and the eq. (5) ablation on MNIST
  (`RESULTS.md`): LeNet, 500 images per majority class, the `step`
  protocol with the last five classes at 250 ... 1 image (lambda 0.15 ...
  1.35, both sides of the switch at lambda = 1), CE, FL, CI, logit
  adjustment, class-balanced, LDAM and VS, and CI with "always 1/2",
  "always 1/8" and a ramp of width 1; every model also scored with post-hoc
  logit adjustment (tau 1) and Kang et al.'s cRT, tau-norm and LWS
  classifiers; 5 seeds, 3 epochs (135-180 Adam steps). Writes
  `lambda_sweep.{png,pdf,csv}`:

      python -m launch.classify --config=configs/classify.py:mnist_sweep \
          --config.manual_dir=/path/to/manual --workdir=results/mnist_sweep

* `components`: which part of CI does the work (`RESULTS.md`, study A):
  the `mnist_sweep` protocol at lambda 0.50, 0.96, 1.05 and 1.35 (minority
  classes of 50, 6, 4 and 1 images against 500), a factorial over CI's
  parts as `ci_parts` specs (`cil.losses.ci_components_loss`): modulation
  on / off x class factor none / CI's eq. (5) / CI's at 1/2 always / the
  class-balanced weight (beta 0.9999) x plain / logit-adjusted (tau 1)
  logits; its corners CE, `la` and `cb` under their own names, VS beside
  them; every model also scored with post-hoc logit adjustment, cRT and
  tau-norm; 5 seeds, 3 epochs:

      python -m launch.classify --config=configs/classify.py:components \
          --config.manual_dir=/path/to/manual --workdir=results/components

* `convergence`: training length (`RESULTS.md`, study B): the sweep's
  protocol at lambda 0.96 and 1.35, CE, CI (the paper's rule and always
  1/2), `la`, `cb` and VS trained 15 epochs instead of 3 (600-645 Adam
  steps), 5 seeds; deferred re-weighting is a second run of the same
  variant with `--config.losses=ce --config.drw_epoch=10`:

      python -m launch.classify --config=configs/classify.py:convergence \
          --config.manual_dir=/path/to/manual --workdir=results/convergence

* `mnist_longtail`: the exponential long-tail profile trained until the
  training loss levels off (`RESULTS.md`, study 13): MNIST's
  `longtail:ratio=R,n_max=500` at R = 10, 50, 100, 200 (lambda 0.50,
  0.86, 1.01, 1.17; the study adds R = 5, lambda 0.35, as a second run),
  LeNet, Adam 1e-3, 20 epochs, 5 seeds, the losses'
  natural logarithms; 10 % of each MNIST training class held out before
  the profile is drawn (`validation='train:0.1'`, about 590 images per
  class, balanced as the test split) on which every hyperparameter is
  chosen: a grid of four points each for focal's gamma, class-balanced
  beta, logit adjustment's tau and VS's (gamma, tau) (`TUNING_GRIDS`; pick
  with `launch.compare --tuned`), post-hoc adjustment's tau (`TAU_GRID`);
  CE, CI (the paper's rule and always 1/2) and LDAM-DRW (Cao et al.'s
  margin 0.5 and scale 30 on the cosine head, `lenet_normed`, DRW from
  epoch 16 as their 160 of 200) untuned;
  every model also scored with post-hoc adjustment and cRT. The second
  architecture is `--config.model=resnet8
  --config.cells.ldam_drw.model=resnet8_normed`:

      python -m launch.classify --config=configs/classify.py:mnist_longtail \
          --config.manual_dir=/path/to/manual --workdir=results/mnist_longtail

* `cifar10_lt`, `cifar100_lt`: CIFAR-LT as Cao et al. (2019) train it
  (`kaidic/LDAM-DRW`, `cifar_train.py`, `losses.py`,
  `models/resnet_cifar.py`), for users with the data and a GPU:
  `longtail` at ratios 100 and 10, ResNet-32, SGD 200 epochs with warm-up
  and the reference's step decay (x 0.01 after epoch 160, x 0.0001 after
  180), crop + flip, inputs normalised by the reference's CIFAR mean and
  std (`input_norm`), natural logarithms (the reference code's; every other
  variant uses the CI paper's base 10). One table with the reference's
  rows, each trained as its paper does (`cells`): ERM (`ce`), focal
  (gamma 1), LDAM with the cosine head (`ldam_cosine`), CE-DRW and
  LDAM-DRW (deferred re-weighting from epoch 160), and on the same
  schedule logit adjustment (`la`, tau 1), VS and CI (their own papers'
  recipes differ and are not reproduced here). The manual dir holds
  `cifar10/cifar-10-batches-py/` (or `cifar100/cifar-100-python/`). Not
  run here (no CIFAR files reach this machine); published top-1 at ratio
  100, CIFAR-10-LT / CIFAR-100-LT: LDAM-DRW 77.03 / 42.04 (Cao et al.),
  logit adjustment 77.67 / 43.89 (Menon et al. 2021, their own recipe);
  CIFAR-10-LT at ratio 100 / 10: ERM 70.36 / 86.39, focal 70.38 / 86.66,
  LDAM-DRW 77.03 / 88.16 (Cao et al.):

      python -m launch.classify --config=configs/classify.py:cifar10_lt \
          --config.manual_dir=/path/to/manual --workdir=results/cifar10_lt

* `imagenet_lt`, `inaturalist2018`: Kang et al. (2020)'s decoupling as
  their code trains it (`facebookresearch/classifier-balancing`,
  `config/ImageNet_LT/feat_uniform.yaml` and `cls_crt.yaml`,
  `config/iNaturalist18/feat_unifrom.yaml` and `cls_crt.yaml`,
  `run_networks.py`, `data/ClassAwareSampler.py`): instance-balanced
  joint training of ResNeXt-50 (ImageNet-LT; ResNet-50 for iNaturalist),
  90 epochs, batch 512, SGD momentum 0.9, lr 0.2 with per-epoch cosine
  annealing to 0, weight decay 5e-4 (1e-4), random-resized crops + flips
  at 224 (ImageNet-LT with `ColorJitter(0.4, 0.4, 0.4)`: their
  `data/dataloader.py`) and the test's resize + centre crop, inputs
  normalised by that file's `RGB_statistics` (ImageNet's; iNaturalist18's
  own), streamed; CE
  and logit
  adjustment (Menon et al. 2021) rows, and post-hoc logit adjustment with
  its tau chosen on ImageNet-LT's `val` split (iNaturalist is tested on
  `val`, the long-tail papers' practice, with the stated tau); each
  model's batch over every device (`data_parallel=-1`) with batch norm's
  statistics per device (`batch_norm_groups=0`: their `nn.DataParallel`
  without SyncBN), bfloat16. The
  cRT, tau-norm and LWS rows (`--config.decouple="('crt','tau_norm','lws')"`:
  stage 2 with the class-aware sampler, SGD at lr 0.2 annealed per epoch
  (`coslr`) with the stage-1 weight decay, 10 epochs; 30 for iNaturalist;
  tau-norm's tau chosen on `val`). Still differing from the reference:
  stage 2 trains on features of the test transform's images, extracted
  once (theirs pass augmented images through the frozen network each
  step); images are scaled to [0, 1], not normalised by the RGB mean and
  std. Not run here
  (no ImageNet or iNaturalist files, no GPU); published top-1 on
  ImageNet-LT with ResNeXt-50 (the reference's README): joint 44.4, cRT
  49.6, tau-norm 49.4, LWS 49.9:

      python -m launch.classify --config=configs/classify.py:imagenet_lt \
          --config.manual_dir=/path/to/manual --workdir=results/imagenet_lt

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

from cil import metrics
from configs import common

VARIANTS = ('default', 'smoke', 'mnist_table1', 'mnist_sweep', 'components',
            'convergence', 'mnist_longtail', 'mstar', 'cifar10_lt',
            'cifar100_lt', 'imagenet_lt', 'inaturalist2018')

# The sweep's minority sizes: 500 // ratio = 250, 100, 50, 16, 6, 4, 2, 1.
SWEEP_RATIOS = (2, 5, 10, 31.25, 83, 125, 250, 500)
# The components study's: lambda = 0.5 log10(ratio) = 0.50, 0.96, 1.05, 1.35.
COMPONENT_RATIOS = (10, 83, 125, 500)


# `mnist_longtail`'s: R = 10, 50, 100, 200 at 500 images in the largest class.
LONGTAIL_RATIOS = (10, 50, 100, 200)
# The hyperparameters chosen on the validation split, four points per loss
# (the same budget for each; `launch.compare --tuned`).
TUNING_GRIDS = {
    'focal': tuple(f'focal:gamma={g}' for g in (0.5, 1, 2, 3)),
    'cb': tuple(f'cb:beta={b}' for b in (0.9, 0.99, 0.999, 0.9999)),
    'la': tuple(f'la:tau={t}' for t in (0.5, 1, 1.5, 2)),
    'vs': tuple(f'vs:gamma={g},tau={t}'
                for g, t in ((0.1, 1), (0.2, 1), (0.3, 1), (0.2, 1.5))),
}


def component_losses() -> tuple[str, ...]:
  """The factorial of the components study as loss specs: modulation
  (on, off) x class factor (none, CI's, CI's at 1/2, class-balanced) x
  logits (plain, adjusted), the corners that are losses of their own
  (CE, la, cb, ci) under their names."""
  factors = {'none': 'low_exponent=0,high_exponent=0', 'ci': '',
             'half': 'high_exponent=0.5', 'cb': 'cb_beta=0.9999'}
  named = {('on', 'ci', ''): 'ci', ('off', 'none', ''): 'ce',
           ('off', 'cb', ''): 'cb', ('off', 'none', 'tau=1'): 'la'}
  specs = []
  for logits in ('', 'tau=1'):
    for modulation in ('on', 'off'):
      for factor, args in factors.items():
        if (modulation, factor, logits) in named:
          specs.append(named[(modulation, factor, logits)])
          continue
        parts = [a for a in ('modulation=0' if modulation == 'off' else '',
                             args, logits) if a]
        specs.append('ci_parts:' + ','.join(parts) if parts else 'ci_parts')
  return tuple(specs)


def get_config(arg=None) -> ml_collections.ConfigDict:
  """The config of `arg` (one of `VARIANTS`; None is 'default')."""
  variant = common.split_variant(arg, VARIANTS)
  c = ml_collections.ConfigDict()
  # Data: 'digits' (embedded), 'mnist', 'mstar_soc', 'cifar10', 'cifar100'
  # (`cil.data.load`).
  c.dataset = 'digits'
  # Your own data instead (`cil.data.custom`): 'folder:/path' (one folder of
  # images per class, with or without train/ and test/), 'npz:/path.npz'
  # (x_train, y_train, x_test, y_test) or 'tfds:NAME[/CONFIG][:VERSION]'.
  c.image_size = 0  # folder: 0 keeps the size; S resizes + crops to S x S.
  c.test_fraction = 0.2  # folder without train/ and test/: test share.
  c.image_feature = 'image'  # tfds: the image and label features.
  c.label_feature = 'label'
  c.data_dir = ml_collections.config_dict.placeholder(str)  # $CIL_DATA_DIR
  c.manual_dir = ml_collections.config_dict.placeholder(str)  # $CIL_MANUAL_DIR
  # Imbalance protocols (`cil.data.get_protocol` specs) x losses = cells;
  # () picks the dataset's: odd classes at 10 % for the built-in sets (the
  # paper's Table I), every example of your own data ('all').
  c.protocols = ()
  c.losses = ('ce', 'focal', 'ci')
  # Rows with settings of their own (the references' tables): name ->
  # {'loss': spec, field: value, ...} (`ClassifyConfig.CELL_FIELDS`), run
  # when `losses` names them, e.g. {'ldam_drw': {'loss': 'ldam', 'model':
  # 'resnet32_normed', 'drw_epoch': 160}}.
  c.cells = {}
  # The paper's base-10 logarithms (as every study of RESULTS.md ran);
  # the CIFAR-LT recipes below take the losses' natural-log default, as
  # their reference code.
  c.loss_hparams = common.loss_hparams(log_base=common.PAPER_LOG_BASE)
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
  # Learning-rate schedule: warm-up over lr_warmup_epochs (lr (e + 1) / W in
  # epoch e, as Cao et al.'s code), then times
  # lr_decay_factor after each epoch in lr_decay_epochs.
  c.lr_warmup_epochs = 0
  # 'step' (below) or 'cosine' (to 0 over the run, per epoch: Kang et al.).
  c.lr_schedule = 'step'
  c.lr_decay_epochs = ()
  c.lr_decay_factor = 0.1
  # Data augmentation: '' or 'crop_flip' (pad 4, random crop, random flip).
  c.augment = ''
  # Deferred re-weighting (Cao et al. 2019) from this epoch on; 0 is off.
  c.drw_epoch = 0
  c.drw_beta = 0.9999
  # Re-sampling (Kang et al. 2020; `cil.data.samplers`): 'instance' (each
  # example once per epoch), 'class_balanced', 'sqrt' or 'progressive'.
  c.sampler = 'instance'
  # The models' computation: 'float32' or 'bfloat16' (mixed precision:
  # float32 parameters, optimizer state and loss).
  c.dtype = 'float32'
  # Devices each model's batch is split over (-1: all); 1: one per model.
  c.data_parallel = 1
  # Batch norm's statistics per this many parts of a batch (PyTorch's
  # DataParallel / DDP without SyncBN on that many GPUs); 1: the whole
  # batch; 0: one part per device of `data_parallel`.
  c.batch_norm_groups = 1
  # Per-channel (mean, std) of the [0, 1]-scaled inputs that the ResNets
  # subtract and divide by (torchvision's Normalize); (): [0, 1] only.
  c.input_norm = ()
  # How the compiled step runs: 0 / '' / None pick the backend's choice
  # (`cil.runtime.Policy`); `run` resolves them once and records the values.
  c.chunk_steps = 0  # optimizer steps per compiled call
  c.seed_parallel = ''  # 'loop' or 'vmap'
  c.step_loop = ''  # 'unroll' (steps of a chunk in Python) or 'scan'
  c.conv_pool = ''  # LeNet's conv + pool: 'xla', 's2d' or 's2d_train'
  # XLA options of the train step, ((name, value), ...); () for none.
  c.compiler_options = ml_collections.config_dict.placeholder(tuple)
  c.eval_batch_size = 1000
  # 'memory' (splits decoded in memory), 'stream' (images read by index as
  # each chunk of steps needs them, through Grain) or '' (by the data's
  # size: streamed past 256 MiB of decoded training images).
  c.input_pipeline = ''
  # Save every this many epochs (and after the last), and inside an epoch
  # every this many optimizer steps (0: epoch ends only; a SIGTERM saves at
  # the next chunk either way).
  c.checkpoint_every = 5
  c.checkpoint_every_steps = 0
  # Evaluation. posthoc_tau > 0 also scores every model with post-hoc logit
  # adjustment (Menon et al. 2021), rows '<loss>+posthoc'; shot_thresholds
  # (low, high) define few- (< low), medium- and many-shot (> high) classes.
  c.posthoc_tau = 0.0
  # The split the tables score ('val' for iNaturalist 2018, as its papers).
  c.test_split = 'test'
  # A held-out split on which those taus (and tau-norm's) are chosen: ''
  # (none), 'train:F' (F of each training class) or a split ('val').
  c.validation = ''
  c.shot_thresholds = metrics.DEFAULT_SHOT_THRESHOLDS  # Liu et al.: (20, 100)
  # Decoupled classifiers (Kang et al. 2020) scored beside each trained
  # model, rows '<loss>+<method>': any of 'crt', 'tau_norm', 'lws'.
  c.decouple = ()
  c.decouple_epochs = 10
  c.decouple_tau = 1.0

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
    c.losses = ('ce', 'focal', 'ci', 'la', 'cb', 'ldam', 'vs',
                'ci:high_exponent=0.5',      # always 1/2
                'ci:low_exponent=0.125',     # always 1/8
                'ci:transition_width=1.0')   # ramp over 0.5 <= lambda <= 1.5
    # The same models also scored with post-hoc logit adjustment and the
    # decoupled classifiers (rows '<loss>+posthoc', '+crt', ...).
    c.posthoc_tau = 1.0
    c.decouple = ('crt', 'tau_norm', 'lws')
    c.seeds = 5
    c.epochs = 3
  elif variant == 'components':
    c.dataset = 'mnist'
    c.protocols = tuple(f'step:ratio={r},mu=0.5,n_max=500'
                        for r in COMPONENT_RATIOS)
    c.losses = component_losses() + ('vs',)
    c.posthoc_tau = 1.0
    c.decouple = ('crt', 'tau_norm')
    c.seeds = 5
    c.epochs = 3
  elif variant == 'convergence':
    c.dataset = 'mnist'
    c.protocols = tuple(f'step:ratio={r},mu=0.5,n_max=500' for r in (83, 500))
    c.losses = ('ce', 'ci', 'ci:high_exponent=0.5', 'la', 'cb', 'vs')
    c.seeds = 5
    c.epochs = 15
  elif variant == 'mnist_longtail':
    c.dataset = 'mnist'
    c.protocols = tuple(f'longtail:ratio={r},n_max=500'
                        for r in LONGTAIL_RATIOS)
    c.losses = (('ce', 'ci', 'ci:high_exponent=0.5', 'ldam_drw')
                + sum(TUNING_GRIDS.values(), ()))
    c.cells = {'ldam_drw': {'loss': 'ldam', 'model': 'lenet_normed',
                            'drw_epoch': 16}}
    c.loss_hparams = common.loss_hparams()  # Natural logs.
    c.validation = 'train:0.1'
    c.posthoc_tau = 1.0  # Chosen per seed on the validation split.
    c.decouple = ('crt',)
    c.seeds = 5
    c.epochs = 20
  elif variant == 'mstar':
    c.dataset = 'mstar_soc'
    c.protocols = ('mstar24', 'mstar12')
    c.seeds = 100
  elif variant in ('cifar10_lt', 'cifar100_lt'):
    # Cao et al. (2019), kaidic/LDAM-DRW `cifar_train.py`: ResNet-32, SGD
    # with momentum 0.9, lr 0.1, weight decay 2e-4, batch 128, 200 epochs, 5
    # warm-up epochs (lr (e + 1) / 5 in epoch e), lr x 0.01 after epoch 160
    # and x 0.0001 after 180 (`adjust_learning_rate`: each boundary
    # multiplies by 0.01 here), crop + flip; DRW from epoch 160 for the
    # -DRW rows, LDAM on the cosine head (`resnet32(use_norm=True)`), each
    # a cell of its own.
    c.dataset = variant.split('_')[0]
    c.protocols = ('longtail:ratio=100', 'longtail:ratio=10')
    c.losses = ('ce', 'focal', 'ldam_cosine', 'ce_drw', 'ldam_drw', 'la',
                'vs', 'ci')
    c.cells = {
        'ldam_cosine': {'loss': 'ldam', 'model': 'resnet32_normed'},
        'ce_drw': {'loss': 'ce', 'drw_epoch': 160},
        'ldam_drw': {'loss': 'ldam', 'model': 'resnet32_normed',
                     'drw_epoch': 160},
    }
    c.loss_hparams = common.loss_hparams()  # Natural logs (their code's).
    c.loss_hparams.focal.gamma = 1.0
    c.model = 'resnet32'
    c.seeds = 1
    c.epochs = 200
    c.batch_size = 128
    c.optimizer = 'sgd'
    c.lr = 0.1
    c.weight_decay = 2e-4
    c.lr_warmup_epochs = 5
    c.lr_decay_epochs = (160, 180)
    c.lr_decay_factor = 0.01
    c.augment = 'crop_flip'
    # cifar_train.py's transforms.Normalize (after the crop and flip).
    c.input_norm = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    c.drw_epoch = 0  # The -DRW cells set their own.
    c.checkpoint_every = 10
  elif variant in ('imagenet_lt', 'inaturalist2018'):
    # classifier-balancing's feat_uniform.yaml / feat_unifrom.yaml (stage
    # 1) and cls_crt.yaml (stage 2: the same lr, momentum, weight decay and
    # per-epoch cosine); see the module docstring.
    imagenet = variant == 'imagenet_lt'
    c.dataset = variant
    c.protocols = ('all',)  # Their own long tail.
    c.losses = ('ce', 'la')
    c.loss_hparams = common.loss_hparams()  # Natural logs (their code's).
    c.model = 'resnext50' if imagenet else 'resnet50'
    c.image_size = 224
    c.input_pipeline = 'stream'
    c.augment = ('resized_crop_flip_jitter' if imagenet
                 else 'resized_crop_flip')
    # data/dataloader.py's RGB_statistics: ImageNet's ('default') and
    # iNaturalist18's own mean and std.
    c.input_norm = (((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
                    if imagenet else
                    ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192)))
    c.dtype = 'bfloat16'
    c.data_parallel = -1
    c.batch_norm_groups = 0  # Per device, as their nn.DataParallel.
    c.seeds = 1
    c.epochs = 90
    c.batch_size = 512
    c.optimizer = 'sgd'
    c.lr = 0.2
    c.weight_decay = 5e-4 if imagenet else 1e-4
    c.lr_schedule = 'cosine'
    # iNaturalist's papers test on `val` (it has no other held-out split,
    # so its taus are the stated ones).
    c.test_split = 'test' if imagenet else 'val'
    c.validation = 'val' if imagenet else ''
    c.posthoc_tau = 1.0
    c.decouple_epochs = 10 if imagenet else 30  # With --config.decouple.
    c.checkpoint_every = 1
    c.checkpoint_every_steps = 100
    c.eval_batch_size = 500
  return c
