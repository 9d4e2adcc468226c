"""One process of the multi-process runs of `distributed_test.py`.

    python tests/distributed_worker.py MODE PROCESS_ID NUM_PROCESSES PORT OUT

joins a `NUM_PROCESSES`-process run (coordinator 127.0.0.1:PORT, gloo
collectives, two fake CPU devices per process) and does MODE:

* `step`: one MAML meta-step of `step_problem()` on this process's share of
  the meta-batch, with `pmap` and with `shard_map`; writes the new
  parameters to `OUT/step_<parallel>_<id>.npz`.
* `classify`: `cil.experiments.classify.run(classify_config(), OUT/classify)`;
  `classify_stream` the same with `input_pipeline='stream'`;
  `classify_dp_stream` runs `longtail_config(OUT/../data)` (each batch
  over every device, streamed, with the references' random crops). The
  stream modes write the training images this process read to
  `OUT/train_reads_<id>.json`.
* `fewshot` / `fewshot_kill`: `cil.experiments.fewshot.run(fewshot_config(),
  OUT/work)`
  (`fewshot_kill` ends the process with `os._exit(KILLED)` right after
  meta-step `KILL_AT`, as a kill would). Every file this process opens for
  writing under OUT/work is listed in `OUT/writes_<id>.json` (a Python
  audit hook).
"""

import json
import os
import signal
import sys

KILLED = 17
KILL_AT = 3
CPU_DEVICES = 2


def step_problem():
  """`(cfg, model, tasks)`: a tiny second-order MAML meta-step, 4 tasks."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from cil import maml
  from cil import models
  cfg = maml.MamlConfig(ways=3, inner_lr=0.1, meta_lr=1e-2,
                        adaptation_steps=1, test_adaptation_steps=1,
                        task_map='calls')
  model = models.Conv4(num_classes=3, features=4, pools=2)
  rng = np.random.default_rng(0)
  labels = np.tile(np.array([0, 1, 1, 2, 2, 2]), (4, 1))
  tasks = {
      'support_images': rng.integers(0, 256, (4, 6, 8, 8, 1), np.uint8),
      'support_labels': labels.astype(np.int32),
      'support_counts': np.tile(np.array([1, 2, 3], np.int32), (4, 1)),
      'query_images': rng.integers(0, 256, (4, 6, 8, 8, 1), np.uint8),
      'query_labels': labels.astype(np.int32),
  }
  return cfg, model, tasks


def fewshot_config():
  """The few-shot run of the resume test (the `smoke` variant, one loss)."""
  # pylint: disable=g-import-not-at-top
  from cil.experiments import fewshot
  from configs import fewshot as fewshot_configs
  c = fewshot_configs.get_config('smoke')
  c.losses = ('ci',)
  c.meta_steps = 4
  c.checkpoint_every = 2
  return fewshot.FewShotConfig.from_config(c)


def classify_config():
  """The classification run (the `smoke` variant: digits, one epoch; CI
  only, four seeds: one per device of two processes)."""
  # pylint: disable=g-import-not-at-top
  from cil.experiments import classify
  from configs import classify as classify_configs
  c = classify_configs.get_config('smoke')
  c.losses = ('ci',)
  c.seeds = 4
  return classify.ClassifyConfig.from_config(c)


def longtail_config(root: str):
  """A streamed run on the ImageNet-LT fixture under `root`
  (`prepare_longtail`): two seeds, batches of 4 split over every device,
  random resized crops with colour jitter (drawn from each image's
  position in its seed's epoch), two epochs of 3 steps."""
  # pylint: disable=g-import-not-at-top
  from cil.experiments import classify
  import configs
  c = configs.load('classify', 'smoke')
  c.update(dataset='imagenet_lt', manual_dir=os.path.join(root, 'manual'),
           data_dir=os.path.join(root, 'prepared'), image_size=28,
           protocols=(), losses=('ce',), seeds=2, epochs=2, batch_size=4,
           augment='resized_crop_flip_jitter', input_pipeline='stream',
           data_parallel=-1, decouple=())
  return classify.ClassifyConfig.from_config(c)


def three_classes():
  """The fixture's ImageNet-LT has 3 classes (a patch of the builder)."""
  # pylint: disable=g-import-not-at-top
  from unittest import mock
  from cil.data import longtail
  return mock.patch.object(longtail.CilImagenetLt, 'NUM_CLASSES', 3)


def prepare_longtail(root: str) -> None:
  """Writes the ImageNet-LT fixture of `tests/data/longtail_test.py`
  under `root` and prepares it (before the processes start)."""
  # pylint: disable=g-import-not-at-top
  import importlib.util
  from cil import data
  spec = importlib.util.spec_from_file_location(
      'longtail_test', os.path.join(os.path.dirname(__file__), 'data',
                                    'longtail_test.py'))
  fixture = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(fixture)
  fixture.write_split_lists(os.path.join(root, 'manual', 'imagenet_lt'),
                            'ImageNet_LT')
  cfg = longtail_config(root)
  with three_classes():
    for split in ('train', cfg.test_split):
      data.stream(cfg.dataset, split, manual_dir=cfg.manual_dir,
                  data_dir=cfg.data_dir, options=cfg.data_options())


def _audit_writes(root: str, log: list) -> None:
  root = os.path.abspath(root)

  def hook(event, args):
    if event == 'open' and isinstance(args[0], (str, os.PathLike)):
      path, mode, flags = args[0], args[1], args[2]
      writing = (mode and any(c in mode for c in 'wax+')) or (
          flags and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
      full = os.path.abspath(os.fspath(path))
      if writing and full.startswith(root):
        log.append(os.path.relpath(full, root))
  sys.addaudithook(hook)


def main(argv):
  mode, pid, num, port, out = argv[1:]
  pid, num = int(pid), int(num)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, root)
  # pylint: disable=g-import-not-at-top
  from cil import distributed
  distributed.initialize(distributed.Settings(
      coordinator_address=f'127.0.0.1:{port}', num_processes=num,
      process_id=pid, cpu_devices=CPU_DEVICES, timeout_s=120))
  import jax
  import numpy as np
  jax.config.update('jax_compilation_cache_dir',
                    os.path.join(root, '.jax_cache'))
  from cil import maml

  if mode == 'step':
    cfg, model, tasks = step_problem()
    start, stop = distributed.process_share(4)
    share = {k: v[start:stop] for k, v in tasks.items()}
    state = maml.create_state(model, cfg, jax.random.key(0),
                              tasks['support_images'][0])
    for parallel in ('pmap', 'shard_map'):
      new, _ = maml.parallel_meta_train_step(cfg, parallel=parallel)(
          state, share)
      params = distributed.to_host(new.params)
      flat = {jax.tree_util.keystr(p): np.asarray(x) for p, x in
              jax.tree_util.tree_leaves_with_path(params)}
      np.savez(os.path.join(out, f'step_{parallel}_{pid}.npz'), **flat)
    return

  if mode in ('classify', 'classify_stream', 'classify_dp',
              'classify_dp_stream'):
    import contextlib
    import dataclasses
    from cil.experiments import classify
    cfg = classify_config()
    read = []
    patch = contextlib.nullcontext()
    if mode == 'classify_dp':  # Each seed's batch over all 4 devices.
      cfg = dataclasses.replace(cfg, data_parallel=-1)
    if mode == 'classify_stream':  # Images read by index as chunks need them.
      cfg = dataclasses.replace(cfg, input_pipeline='stream')
    if mode == 'classify_dp_stream':
      cfg = longtail_config(os.path.join(os.path.dirname(out), 'data'))
      patch = three_classes()
    if cfg.input_pipeline == 'stream':
      from cil.data import streaming
      chunks = streaming.StreamedSplit.chunks

      def counted(split, indices, *args, start=0, **kwargs):
        if split.split == 'train':  # The training images this process read.
          read.append(len(indices) - start)
        return chunks(split, indices, *args, start=start, **kwargs)
      streaming.StreamedSplit.chunks = counted
    with patch:
      classify.run(cfg, os.path.join(out, 'classify'), show_progress=False)
    with open(os.path.join(out, f'train_reads_{pid}.json'), 'w') as f:
      json.dump(sum(read), f)
    return

  from cil.experiments import fewshot
  writes = []
  work = os.path.join(out, 'work')
  _audit_writes(work, writes)

  from cil import errors

  def callback(unused_loss, step):
    if mode == 'fewshot_kill' and step == KILL_AT:
      os._exit(KILLED)  # pylint: disable=protected-access
    if mode == 'fewshot_sigterm' and step == 1 and pid == 1:
      os.kill(os.getpid(), signal.SIGTERM)  # This process only.

  try:
    fewshot.run(fewshot_config(), work, show_progress=False,
                step_callback=callback)
  except errors.Preempted:
    sys.exit(errors.Preempted.EXIT_CODE)
  finally:
    with open(os.path.join(out, f'writes_{pid}.json'), 'w',
              encoding='utf-8') as f:
      json.dump(sorted(set(writes)), f)


if __name__ == '__main__':
  main(sys.argv)
