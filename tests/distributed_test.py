"""Multi-process runs on localhost: JAX's distributed runtime over gloo.

Each test starts the processes of `distributed_worker.py` (two per run,
two fake CPU devices each, a free port) and checks what they wrote:

* one MAML meta-step on the 4-device global mesh equals the one-process
  4-device step (this process), with `pmap` and with `shard_map`;
* a few-shot run killed in both processes resumes and ends with the
  parameters, meta-loss history and results of an uninterrupted run, and
  meets the same tasks as a one-process (two-device) run;
* only the primary process wrote files in the workdir;
* classification seeds spread over two processes give the per-seed results
  of one process; a streamed run whose batches are split over the devices
  of two processes equals one process's, each process reading only its
  half of every batch.

`SettingsTest` (default suite) checks how the settings are read and
refused.

`TwoProcessTest` is slow (process launches that each compile): run by
`.ci/run` with `pytest -m slow`.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import chex
import jax
import numpy as np
import pytest

from cil import distributed
from cil import errors
from cil import maml
from cil import workdir as workdir_lib

sys.path.insert(0, os.path.dirname(__file__))
import distributed_worker  # tests/, beside this file  # noqa: E402
import testutil  # noqa: E402

_WORKER = os.path.join(os.path.dirname(__file__), 'distributed_worker.py')


def setUpModule():
  testutil.four_cpu_devices()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _run_workers(mode: str, out: str, num_processes: int = 2,
                 timeout: int = 600) -> list[subprocess.CompletedProcess]:
  """Runs `num_processes` workers to the end; returns their results."""
  port = _free_port()
  env = dict(os.environ)
  # The workers set their own device count.
  env['XLA_FLAGS'] = ' '.join(
      f for f in env.get('XLA_FLAGS', '').split()
      if 'xla_force_host_platform_device_count' not in f)
  procs = [subprocess.Popen(
      [sys.executable, _WORKER, mode, str(i), str(num_processes), str(port),
       out], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True) for i in range(num_processes)]
  results = []
  for i, p in enumerate(procs):
    try:
      stdout, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise AssertionError(f'process {i} of {mode} timed out') from None
    results.append(subprocess.CompletedProcess(p.args, p.returncode, stdout))
  return results


def _check_ok(results, mode):
  for i, r in enumerate(results):
    if r.returncode:
      raise AssertionError(f'process {i} of {mode} exited {r.returncode}:\n'
                           f'{r.stdout[-3000:]}')


def _final_params(work: str, steps: int) -> dict:
  ocp = pytest.importorskip('orbax.checkpoint')
  path = os.path.join(work, 'checkpoints', 'ci', str(steps), 'default')
  return ocp.StandardCheckpointer().restore(path)['params']


@pytest.mark.slow
class TwoProcessTest(absltest.TestCase):

  def test_meta_step_on_two_processes_equals_one_process(self):
    if jax.local_device_count() < 4:
      self.skipTest('needs 4 (fake) devices in this process')
    cfg, model, tasks = distributed_worker.step_problem()
    state = maml.create_state(model, cfg, jax.random.key(0),
                              tasks['support_images'][0])
    reference, _ = maml.parallel_meta_train_step(cfg, parallel='pmap')(
        state, tasks)
    want = {jax.tree_util.keystr(p): np.asarray(x) for p, x in
            jax.tree_util.tree_leaves_with_path(reference.params)}
    moved = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                for a, b in zip(jax.tree.leaves(reference.params),
                                jax.tree.leaves(state.params)))
    self.assertGreater(moved, 1e-4)  # The step did change the parameters.
    with tempfile.TemporaryDirectory() as out:
      _check_ok(_run_workers('step', out), 'step')
      for parallel in ('pmap', 'shard_map'):
        for pid in range(2):
          got = dict(np.load(os.path.join(out, f'step_{parallel}_{pid}.npz')))
          self.assertEqual(set(got), set(want))
          chex.assert_trees_all_close(got, want, atol=1e-6, rtol=1e-5)

  def test_killed_run_resumes_to_the_uninterrupted_result(self):
    cfg = distributed_worker.fewshot_config()
    with tempfile.TemporaryDirectory() as out:
      dirs = {name: os.path.join(out, name)
              for name in ('uninterrupted', 'one_process')}
      for name, d in dirs.items():
        os.makedirs(d)
        _check_ok(_run_workers('fewshot', d, num_processes=(
            1 if name == 'one_process' else 2)), name)

      killed = _run_workers('fewshot_kill', out)
      self.assertEqual([r.returncode for r in killed],
                       [distributed_worker.KILLED] * 2,
                       [r.stdout[-2000:] for r in killed])
      work = os.path.join(out, 'work')
      self.assertFalse(os.path.exists(os.path.join(work, 'results.json')))
      ckpt = os.path.join(work, 'checkpoints', 'ci')
      self.assertIn('2', os.listdir(ckpt))
      self.assertNotIn(str(cfg.meta_steps), os.listdir(ckpt))

      _check_ok(_run_workers('fewshot', out), 'resumed')
      uninterrupted = os.path.join(dirs['uninterrupted'], 'work')

      # SIGTERM to process 1 alone after meta-step 1 (not a checkpoint
      # step): both processes stop after that step with its checkpoint and
      # exit 75; the rerun resumes to the uninterrupted result.
      sigterm = os.path.join(out, 'sigterm')
      os.makedirs(sigterm)
      stopped = _run_workers('fewshot_sigterm', sigterm)
      self.assertEqual([r.returncode for r in stopped],
                       [errors.Preempted.EXIT_CODE] * 2,
                       [r.stdout[-2000:] for r in stopped])
      self.assertEqual(sorted(os.listdir(os.path.join(
          sigterm, 'work', 'checkpoints', 'ci'))), ['1', 'checksums.json'])
      _check_ok(_run_workers('fewshot', sigterm), 'after SIGTERM')
      chex.assert_trees_all_close(
          _final_params(os.path.join(sigterm, 'work'), cfg.meta_steps),
          _final_params(uninterrupted, cfg.meta_steps), atol=1e-6, rtol=1e-6)
      chex.assert_trees_all_close(_final_params(work, cfg.meta_steps),
                                  _final_params(uninterrupted,
                                                cfg.meta_steps),
                                  atol=1e-6, rtol=1e-6)
      got = workdir_lib.read_json(os.path.join(work, 'results.json'))
      self.assertLen(got['runs'][0]['meta_loss'], cfg.meta_steps)
      # The resumed run, and a one-process (two-device) run, meet the same
      # tasks: the same meta-losses and meta-test accuracies. (Parameters
      # are compared only on the same devices: Adam turns the float noise
      # of near-zero gradients into steps of up to meta_lr.)
      for name in dirs:
        want = workdir_lib.read_json(os.path.join(dirs[name], 'work',
                                                  'results.json'))
        np.testing.assert_allclose(got['runs'][0]['meta_loss'],
                                   want['runs'][0]['meta_loss'], rtol=1e-5,
                                   err_msg=name)
        for g, w in zip(got['runs'][0]['distributions'],
                        want['runs'][0]['distributions']):
          self.assertEqual(g['task_accuracies'], w['task_accuracies'], name)
      runtime = workdir_lib.read_json(os.path.join(work, 'config.json'))
      self.assertEqual(runtime['runtime']['devices']['process_count'], 2)
      self.assertEqual(runtime['runtime']['devices']['count'], 4)

      # Only the primary wrote: process 1 opened nothing under the workdir.
      with open(os.path.join(out, 'writes_1.json'), encoding='utf-8') as f:
        self.assertEqual(json.load(f), [])
      with open(os.path.join(out, 'writes_0.json'), encoding='utf-8') as f:
        primary = json.load(f)
      for name in ('results.json', 'table.md', 'config.json',
                   'runs/ci.json', 'metrics/ci.jsonl'):
        # Atomic writes go through a temporary file beside the target.
        self.assertTrue(any(
            os.path.dirname(w) == os.path.dirname(name)
            and w.endswith(os.path.basename(name)) for w in primary),
                        (name, primary))

  def test_seeds_spread_over_processes_equal_one_process(self):
    cfg = distributed_worker.classify_config()
    with tempfile.TemporaryDirectory() as out:
      runs = {}
      # Two processes, in memory and streamed (each process reads only its
      # seeds' images), against one process.
      for num, mode in ((1, 'classify'), (2, 'classify'),
                        (2, 'classify_stream'), (2, 'classify_dp')):
        d = os.path.join(out, f'{num}{mode}')
        os.makedirs(d)
        _check_ok(_run_workers(mode, d, num_processes=num),
                  f'{num} procs {mode}')
        runs[num, mode] = workdir_lib.read_json(
            os.path.join(d, 'classify', 'results.json'))['runs'][0]
      one = runs[1, 'classify']
      for key in ((2, 'classify'), (2, 'classify_stream')):
        self.assertLen(runs[key]['per_seed'], cfg.seeds)
        for metric in ('accuracy', 'balanced_accuracy'):
          np.testing.assert_allclose(
              [r[metric] for r in runs[key]['per_seed']],
              [r[metric] for r in one['per_seed']], atol=1e-6,
              err_msg=f'{key} {metric}')
        np.testing.assert_allclose(runs[key]['train_loss_per_epoch'],
                                   one['train_loss_per_epoch'], rtol=1e-4)
      # Each seed's batches split over the 4 devices of the 2 processes
      # (`data_parallel=-1`): the same run up to float32 sums' order.
      dp = runs[2, 'classify_dp']
      self.assertEqual(dp['settings']['data_parallel'], -1)
      np.testing.assert_allclose(dp['train_loss_per_epoch'],
                                 one['train_loss_per_epoch'], rtol=1e-4)
      np.testing.assert_allclose([r['accuracy'] for r in dp['per_seed']],
                                 [r['accuracy'] for r in one['per_seed']],
                                 atol=0.01)
      # Streamed, each process read the training images of its two seeds:
      # half of every seed's epochs of whole batches.
      steps = max(-(-sum(r['class_counts']) // cfg.batch_size)
                  for r in one['per_seed'])
      reads = [workdir_lib.read_json(os.path.join(
          out, '2classify_stream', f'train_reads_{p}.json')) for p in (0, 1)]
      self.assertEqual(reads, [cfg.seeds // 2 * cfg.epochs * steps
                               * cfg.batch_size] * 2)
      record = workdir_lib.read_json(os.path.join(out, '2classify',
                                                  'classify', 'config.json'))
      self.assertEqual(record['runtime']['devices']['process_count'], 2)

  def test_batches_split_over_processes_read_only_their_part(self):
    with tempfile.TemporaryDirectory() as out:
      distributed_worker.prepare_longtail(os.path.join(out, 'data'))
      runs, reads = {}, {}
      # One process (its 2 devices) and two (4 devices): each seed's batch
      # of 4 split over every device, crops drawn per image.
      for num in (1, 2):
        d = os.path.join(out, str(num))
        os.makedirs(d)
        _check_ok(_run_workers('classify_dp_stream', d, num_processes=num),
                  f'{num} procs classify_dp_stream')
        runs[num] = workdir_lib.read_json(
            os.path.join(d, 'classify', 'results.json'))['runs'][0]
        reads[num] = [workdir_lib.read_json(os.path.join(
            d, f'train_reads_{p}.json')) for p in range(num)]
      self.assertEqual(runs[2]['settings']['data_parallel'], -1)
      # The same crops of the same images (an image cropped with another
      # position's generator moves the loss far more than float32 sums).
      np.testing.assert_allclose(runs[2]['train_loss_per_epoch'],
                                 runs[1]['train_loss_per_epoch'], rtol=1e-5)
      # Each process read its half of every batch: 2 seeds x 2 epochs x 3
      # steps x 4 images in one process, half of that in each of two.
      self.assertEqual(reads[1], [2 * 2 * 3 * 4])
      self.assertEqual(reads[2], [2 * 2 * 3 * 2] * 2)


class SettingsTest(absltest.TestCase):

  def test_one_process_needs_nothing(self):
    settings = distributed.Settings().resolved()
    self.assertFalse(settings.multi_process)

  def test_bad_settings_are_named(self):
    cases = [
        (dict(num_processes=2), 'needs coordinator_address'),
        (dict(num_processes=2, coordinator_address='localhost'),
         'must be host:port'),
        (dict(num_processes=2, coordinator_address='h:1', process_id=2),
         r'process_id must be in \[0, 2\)'),
        (dict(process_id=1), 'needs num_processes > 1'),
        # An address without a port is refused even for one process.
        (dict(coordinator_address='localhost'), 'must be host:port'),
        (dict(cpu_devices=-1), 'cpu_devices must be >= 0'),
    ]
    for kwargs, message in cases:
      with self.subTest(**kwargs), self.assertRaisesRegex(ValueError,
                                                          message):
        distributed.Settings(**kwargs).resolved()

  def test_environment_fills_unset_settings(self):
    env = {'JAX_COORDINATOR_ADDRESS': '10.0.0.1:1234',
           'JAX_NUM_PROCESSES': '4', 'JAX_PROCESS_ID': '3'}
    with mock.patch.dict(os.environ, env):
      settings = distributed.Settings().resolved()
      self.assertEqual((settings.coordinator_address, settings.num_processes,
                        settings.process_id), ('10.0.0.1:1234', 4, 3))
      # Flags win over the environment.
      self.assertEqual(distributed.Settings(process_id=0).resolved()
                       .process_id, 0)
    with mock.patch.dict(os.environ, {'JAX_NUM_PROCESSES': 'two'}):
      with self.assertRaisesRegex(ValueError, 'JAX_NUM_PROCESSES'):
        distributed.Settings().resolved()

  def test_initialize_after_jax_started_is_refused(self):
    jax.devices()
    with self.assertRaisesRegex(ValueError, 'before any JAX computation'):
      distributed.initialize(distributed.Settings(cpu_devices=2))

  def test_process_share_of_one_process_is_everything(self):
    self.assertEqual(distributed.process_share(6), (0, 6))
    self.assertEqual(distributed.allgather(np.arange(3)).shape, (1, 3))


if __name__ == '__main__':
  absltest.main()
