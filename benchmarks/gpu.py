r"""The accelerator benchmark: everything worth timing on a GPU, in one call.

    bash benchmarks/gpu.sh                 # on the GPU machine
    python -m benchmarks.gpu --cpu_smoke   # tiny shapes on the CPU (CI)

A GPU is lent now and then for minutes, so this prints each measurement as
one JSON line as soon as it is done (a section that fails prints its
error and the others still run):

* `maml`: the second- and first-order meta-step of the paper's
  miniImageNet setting (Conv4-64, 84x84x3, 5-way, 15 support + 75 query
  images per task, meta-batch 4, 5 inner steps; `cil.runtime.policy()`
  picks `vmap` over tasks and im2col convolutions on a GPU; the meta-batch
  is on the device, as a prefetching pipeline's would be): compile
  time, median and spread of `--steps` steps, meta-steps per second and
  the projected time of the paper's 60,000-step schedule (target: under 15
  minutes on one H100, 15 ms per meta-step; "How to train your MAML"
  reports about 0.36 s per meta-iteration on a V100).
* `classify`: `cil.experiments.classify.train_chunk` with the CI loss, LeNet on
  28x28 MNIST-shaped data, 5 seeds together: examples per second.
* `detect`: R2CNN's and the rotated Cascade R-CNN's train steps with the
  CI loss at 800x800, ResNet-50 at width 64, 2 images: images per second
  (one line each).
* `resnet50`: the iNaturalist 2018 recipe's train step (ImageNet-LT's
  trains ResNeXt-50), ResNet-50 in bfloat16 (float32 parameters),
  224x224x3, batch 256 split over every device
  (`--config.data_parallel=-1`: `classify.data_parallel_chunk` on a
  `data_mesh`), SGD with momentum, CE: images per second per device and
  in all. Its PyTorch peer is `benchmarks/torch_resnet50_ref.py`.

`--cpu_smoke` shrinks every shape so the whole script runs on the CPU in
about a minute (its numbers mean nothing; it checks the script).
"""

import json
import statistics
import sys
import time
import traceback

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

_CPU_SMOKE = flags.DEFINE_bool(
    'cpu_smoke', False, 'Tiny shapes, on the CPU: checks the script runs.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps per measurement.')
_SECTIONS = flags.DEFINE_list('sections',
                              ['maml', 'classify', 'detect', 'resnet50'],
                              'Which measurements to run, in order.')

PAPER_META_STEPS = 60_000

# Dense peak TFLOP/s by device kind (NVIDIA's data sheets, SXM parts):
# plain FP32 and TF32 on tensor cores (which XLA uses for float32 matmuls
# and convolutions unless jax_default_matmul_precision asks for 'highest').
PEAK_TFLOPS = {'H100': {'fp32': 67.0, 'tf32': 494.7},
               'H200': {'fp32': 67.0, 'tf32': 494.7},
               'A100': {'fp32': 19.5, 'tf32': 156.0},
               'V100': {'fp32': 15.7, 'tf32': None}}


def peak_tflops(device_kind: str) -> dict:
  """The chip's dense peaks, or {} for a chip not in `PEAK_TFLOPS`."""
  for name, peak in PEAK_TFLOPS.items():
    if name in device_kind:
      return peak
  return {}


def _time(fn, steps: int) -> dict:
  """Compile (first call) and the median of `steps` further calls."""
  start = time.perf_counter()
  jax.block_until_ready(fn())
  compile_s = time.perf_counter() - start
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return {'compile_s': round(compile_s, 2),
          'median_s': statistics.median(times),
          'p10_s': float(np.percentile(times, 10)),
          'p90_s': float(np.percentile(times, 90)), 'steps': steps}


def maml_section(smoke: bool, steps: int) -> list[dict]:
  # pylint: disable=g-import-not-at-top
  from benchmarks import maml_setup
  from cil import runtime
  shape = (8, 8, 1) if smoke else (84, 84, 3)
  policy = runtime.policy()
  out = []
  peak = peak_tflops(jax.devices()[0].device_kind)
  for first_order in (False, True):
    step = maml_setup.meta_step(shape, first_order=first_order, smoke=smoke)
    r = _time(step, steps)
    flops = step.flops()
    achieved = flops / r['median_s'] / 1e12
    r.update({'flops_per_step': flops,
              'achieved_tflops': round(achieved, 3),
              'peak_tflops_fp32': peak.get('fp32'),
              'peak_tflops_tf32': peak.get('tf32'),
              'fraction_of_fp32_peak': (round(achieved / peak['fp32'], 4)
                                        if peak.get('fp32') else None)})
    r.update({'section': 'maml', 'order': 'first' if first_order else
              'second', 'shape': 'x'.join(map(str, shape)),
              'task_map': policy.task_map,
              'conv_impl': policy.maml_conv_impl(first_order=first_order),
              'meta_steps_per_s': round(1 / r['median_s'], 2),
              'projected_60k_min': round(
                  PAPER_META_STEPS * r['median_s'] / 60, 1),
              'target_60k_min': 15})
    out.append(r)
  return out


def classify_section(smoke: bool, steps: int) -> list[dict]:
  # pylint: disable=g-import-not-at-top
  import configs
  from cil.experiments import classify
  from cil import losses
  from cil import runtime
  seeds, batch, n = (2, 16, 256) if smoke else (5, 128, 8192)
  chunk = 1 if smoke else runtime.policy().classify_chunk_steps
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (n, 28, 28, 1), np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n), jnp.int32)
  tx = classify.make_optimizer(
      classify.ClassifyConfig.from_config(configs.load('classify')))
  keys = jax.vmap(jax.random.key)(jnp.arange(seeds))
  lenet = classify.model_for('lenet', 10,
                             runtime.policy().classify_conv_pool)
  holder = {'states': classify.create_states(lenet, tx, keys, images[:1])}
  idx = jnp.asarray(rng.integers(0, n, (chunk, seeds, batch)), jnp.int32)
  mask = jnp.ones((chunk, seeds, batch), bool)
  counts = jnp.tile(jnp.geomspace(5000., 50., 10), (seeds, 1))
  rngs = jax.random.split(jax.random.key(1), (chunk, seeds))
  policy = runtime.policy()

  def run():
    holder['states'], m = classify.train_chunk(
        holder['states'], images, labels, idx, mask, counts, rngs,
        loss=losses.get_loss('ci'), seed_parallel=policy.seed_parallel,
        unroll=policy.unroll_loops,
        compiler_options=policy.classify_step_compiler_options)
    return m

  r = _time(run, steps)
  r.update({'section': 'classify', 'model': 'lenet', 'seeds': seeds,
            'batch_per_seed': batch, 'steps_per_call': chunk,
            'examples_per_s': round(seeds * batch * chunk / r['median_s'])})
  return [r]


def detect_section(smoke: bool, steps: int) -> list[dict]:
  """R2CNN's and the rotated Cascade R-CNN's train steps (CI loss)."""
  # pylint: disable=g-import-not-at-top
  from benchmarks import detect_setup
  from cil.experiments import detect
  size, backbone, width, images = ((128, 'resnet18', 8, 1) if smoke else
                                   (800, 'resnet50', 64, 2))
  batch = detect.synthetic_batch(images, size=size, max_gt=32)
  rows = []
  for detector in detect.DETECTORS:
    step, state = detect_setup.train_step(
        detector, loss='ci', image_size=size, width=width, backbone=backbone)
    holder = {'state': state}

    def run(step=step, holder=holder):
      holder['state'], m = step(holder['state'], batch)
      return m

    r = _time(run, steps)
    r.update({'section': 'detect', 'detector': detector, 'image_size': size,
              'backbone': backbone, 'width': width, 'images_per_step': images,
              'images_per_s': round(images / r['median_s'], 2)})
    rows.append(r)
  return rows


def resnet50_section(smoke: bool, steps: int) -> list[dict]:
  """ResNet-50, bfloat16, one seed's batch over every device."""
  # pylint: disable=g-import-not-at-top
  import configs
  from cil import distributed
  from cil import losses
  from cil import models
  from cil.experiments import classify
  from cil.experiments.classify import parallel
  devices = jax.device_count()
  size, per_device = (32, 2) if smoke else (224, 256 // devices)
  batch = per_device * devices
  # The smoke test's net is two one-block stages (compiles in seconds).
  model = (models.ImageNetResNet(num_classes=10, stage_sizes=(1, 1),
                                 dtype=jnp.bfloat16) if smoke else
           models.get_model('resnet50', 1000, dtype=jnp.bfloat16))
  config = configs.load('classify')
  config.update(optimizer='sgd', lr=0.1, weight_decay=5e-4)
  tx = classify.make_optimizer(classify.ClassifyConfig.from_config(config),
                               100)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (batch, size, size, 3), np.uint8)
  labels = rng.integers(0, model.num_classes, batch).astype(np.int32)
  mesh = parallel.data_mesh(1, -1, batch)
  P = jax.sharding.PartitionSpec  # pylint: disable=invalid-name
  holder = {'states': distributed.put(classify.create_states(
      model, tx, jax.vmap(jax.random.key)(jnp.arange(1)),
      jnp.asarray(images[:1])), mesh, P('seeds'))}
  fn = parallel.data_parallel_chunk(
      mesh, False, False, loss=losses.get_loss('ce'), seed_parallel='vmap',
      unroll=True, augment='')
  args = (*distributed.put((images, labels), mesh, P()),
          *distributed.put((np.arange(batch, dtype=np.int32).reshape(
              1, 1, batch), np.ones((1, 1, batch), bool)), mesh,
                           P(None, 'seeds', 'data')),
          *distributed.put((np.full((1, model.num_classes), 10.0,
                                    np.float32), np.arange(1)), mesh,
                           P('seeds')),
          distributed.put(np.arange(1), mesh, P()))

  def run():
    holder['states'], m = fn(holder['states'], *args)
    return m

  r = _time(run, steps)
  r.update({'section': 'resnet50', 'dtype': 'bfloat16', 'image_size': size,
            'batch': batch, 'devices': devices,
            'images_per_s': round(batch / r['median_s'], 1),
            'images_per_s_per_device': round(batch / r['median_s'] / devices,
                                             1)})
  return [r]


SECTIONS = {'maml': maml_section, 'classify': classify_section,
            'detect': detect_section, 'resnet50': resnet50_section}


def main(argv):
  del argv
  unknown = [n for n in _SECTIONS.value if n not in SECTIONS]
  if unknown:
    raise app.UsageError(f'--sections: unknown {unknown[0]!r}; known: '
                         f'{", ".join(SECTIONS)}')
  smoke = _CPU_SMOKE.value
  if smoke:
    jax.config.update('jax_platforms', 'cpu')
  steps = min(_STEPS.value, 2) if smoke else _STEPS.value
  device = str(jax.devices()[0])
  print(json.dumps({'benchmark': 'gpu', 'backend': jax.default_backend(),
                    'device': device, 'cpu_smoke': smoke,
                    'jax': jax.__version__}), flush=True)
  failed = False
  for name in _SECTIONS.value:
    try:
      for row in SECTIONS[name](smoke, steps):
        print(json.dumps({**row, 'device': device}), flush=True)
    except Exception as e:  # pylint: disable=broad-except
      failed = True
      print(json.dumps({'section': name, 'error': f'{type(e).__name__}: '
                        f'{e}'[:500]}), flush=True)
      traceback.print_exc(file=sys.stderr)
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
