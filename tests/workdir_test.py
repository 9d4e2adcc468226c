"""Tests for cil.workdir: lock, claim, atomic JSON, checkpoints, guard, logs."""

import errno
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from cil import errors
from cil import workdir as wd
import testutil
from testutil import ROOT


def _tree(value: float) -> dict:
  # Random values: Orbax compresses, and a constant array would be tiny.
  w = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
  return {'params': {'w': w + np.float32(value),
                     'b': np.arange(3, dtype=np.float32) + value},
          'step': np.array(0 if np.isnan(value) else int(value), np.int32)}


def _data_files(step_dir: str) -> list[str]:
  """Orbax's array data files of one step (largest first)."""
  found = [os.path.join(root, n) for root, _, names in os.walk(step_dir)
           for n in names if os.path.basename(root) == 'd']
  return sorted(found, key=os.path.getsize, reverse=True)


class CheckpointerTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

  def _saved(self):
    ckpt = wd.Checkpointer(self.dir)
    for step in (1, 2, 3):
      ckpt.save(step, _tree(float(step)))
    ckpt.close()
    self.assertEqual(wd.Checkpointer(self.dir).steps(), [2, 3])

  def _restore(self):
    ckpt = wd.Checkpointer(self.dir)
    step, tree = ckpt.restore(_tree(0.0))
    ckpt.close()
    return step, tree, ckpt.skipped

  def test_restores_the_newest(self):
    self._saved()
    step, tree, skipped = self._restore()
    self.assertEqual(step, 3)
    np.testing.assert_array_equal(tree['params']['w'],
                                  _tree(3.0)['params']['w'])
    self.assertEmpty(skipped)

  def test_byte_flip_in_newest_falls_back_to_previous(self):
    self._saved()
    data = _data_files(os.path.join(self.dir, '3'))
    self.assertNotEmpty(data)
    with open(data[0], 'r+b') as f:
      blob = bytearray(f.read())
      # Flip bytes in the middle of the chunk (array values, not headers).
      for i in range(len(blob) // 2, len(blob) // 2 + 64):
        blob[i] ^= 0x5A
      f.seek(0)
      f.write(blob)
    step, tree, skipped = self._restore()
    self.assertEqual(step, 2)
    np.testing.assert_array_equal(tree['params']['w'],
                                  _tree(2.0)['params']['w'])
    self.assertLen(skipped, 1)
    self.assertRegex(skipped[0], r'/3 (does not match|could not be read|holds)')
    # The damaged step is gone, so training can save step 3 again.
    ckpt = wd.Checkpointer(self.dir)
    ckpt.save(3, _tree(3.0))
    self.assertEqual(ckpt.restore(_tree(0.0))[0], 3)
    ckpt.close()

  def test_truncated_newest_falls_back_to_previous(self):
    self._saved()
    for path in _data_files(os.path.join(self.dir, '3')):
      with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 3)
    step, _, skipped = self._restore()
    self.assertEqual(step, 2)
    self.assertLen(skipped, 1)

  def test_a_half_removed_newest_step_does_not_condemn_the_previous(self):
    # The newest step's item folder deleted (a half-removed step): its
    # error is reported for it alone, and step 2 restores.
    self._saved()
    shutil.rmtree(os.path.join(self.dir, '3', 'default'))
    step, tree, skipped = self._restore()
    self.assertEqual(step, 2)
    np.testing.assert_array_equal(tree['params']['w'],
                                  _tree(2.0)['params']['w'])
    self.assertLen(skipped, 1)
    self.assertIn(f'{self.dir}/3 could not be read', skipped[0])

  def test_a_lost_or_damaged_checksum_record_keeps_good_checkpoints(self):
    sums = os.path.join(self.dir, 'checksums.json')
    for damage in ('garbled', 'deleted'):
      with self.subTest(damage):
        self._saved()
        if damage == 'garbled':
          with open(sums, 'w') as f:
            f.write('{garbage')
        else:
          os.remove(sums)
        with self.assertLogs(level='WARNING') as logs:
          step, tree, _ = self._restore()
        self.assertEqual(step, 3)  # Reads and is finite: kept.
        np.testing.assert_array_equal(tree['params']['w'],
                                      _tree(3.0)['params']['w'])
        self.assertTrue(any('restored without a recorded checksum' in m
                            for m in logs.output), logs.output)
        # Its checksum is recorded again, so the next restore verifies it.
        self.assertEqual(list(wd.read_json(sums)), ['3'])
        self.assertEqual(self._restore()[0], 3)
        if damage == 'garbled':
          self.assertTrue(os.path.exists(sums + '.damaged'))
        shutil.rmtree(self.dir)
        os.makedirs(self.dir)

  def test_a_full_disk_during_a_save_keeps_the_previous_checkpoints(self):
    self._saved()
    ckpt = wd.Checkpointer(self.dir)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with mock.patch.object(ckpt._manager, 'save', side_effect=full):
      with self.assertRaisesRegex(
          errors.WriteError, 'Could not write the checkpoint of step 4 under '
          '.*No space left on device. The previous checkpoints are '
          'unchanged'):
        ckpt.save(4, _tree(4.0))
    ckpt.close()
    step, tree, skipped = self._restore()
    self.assertEqual(step, 3)
    self.assertEmpty(skipped)

  def test_a_disk_that_fills_during_a_save_is_one_named_error(self):
    # A real Orbax/TensorStore write that fails part-way (a file size limit
    # stands in for a full disk), in a child process, to see its stderr:
    # Orbax's writer threads used to print hundreds of lines.
    code = (
        'import resource, signal, numpy as np\n'
        'from cil import errors, workdir as wd\n'
        f'd = {self.dir!r}\n'
        'tree = lambda v, n: {"w": np.random.default_rng(v).normal(size=(n, '
        'n)).astype(np.float32)}\n'
        'c = wd.Checkpointer(d); c.save(1, tree(1, 8)); c.close()\n'
        'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n'
        'resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n'
        'c = wd.Checkpointer(d)\n'
        'try:\n'
        '  c.save(2, tree(2, 400))\n'
        'except errors.WriteError as e:\n'
        '  print("named:", e)\n'
        'c.close()\n'
        'print("restored", wd.Checkpointer(d).restore(tree(0, 8))[0])\n')
    result = testutil.run_python(code)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn('named: Could not write the checkpoint of step 2 under '
                  f'{self.dir}: File too large. The previous checkpoints '
                  'are unchanged', result.stdout)
    self.assertIn('restored 1', result.stdout)
    self.assertNotIn('Traceback', result.stderr)
    self.assertNotIn('RESOURCE_EXHAUSTED', result.stderr)

  def test_a_truncated_step_falls_back_without_a_raw_traceback(self):
    # In a child process, to see what it prints: Orbax's I/O threads used
    # to leave "Event loop is closed" tracebacks on stderr.
    code = (
        'import os, numpy as np\n'
        'from cil import workdir as wd\n'
        f'd = {self.dir!r}\n'
        'tree = lambda v: {"params": {"w": np.full((64, 64), v, '
        'np.float32)}, "step": np.array(int(v), np.int32)}\n'
        'c = wd.Checkpointer(d); c.save(1, tree(1.0)); c.save(2, tree(2.0))\n'
        'c.close()\n'
        'for root, _, names in os.walk(os.path.join(d, "2")):\n'
        '  if os.path.basename(root) == "d":\n'
        '    for n in names:\n'
        '      p = os.path.join(root, n)\n'
        '      open(p, "r+b").truncate(os.path.getsize(p) // 3)\n'
        'c = wd.Checkpointer(d); print("restored", c.restore(tree(0.0))[0])\n'
        'c.close()\n')
    result = testutil.run_python(code)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn('restored 1', result.stdout)
    self.assertIn('2 could not be read', result.stderr)
    self.assertNotIn('Traceback', result.stderr)
    self.assertNotIn('Event loop is closed', result.stderr)

  def test_all_damaged_is_a_named_error(self):
    self._saved()
    with open(os.path.join(self.dir, 'checksums.json'), 'w') as f:
      json.dump({'2': 'x', '3': 'y'}, f)
    with self.assertRaisesRegex(errors.CheckpointError,
                                'No checkpoint under .* can be restored'):
      self._restore()

  def test_non_finite_tree_is_not_saved(self):
    ckpt = wd.Checkpointer(self.dir)
    with self.assertRaisesRegex(errors.NonFiniteError,
                                r"non-finite \['params'\]"):
      ckpt.save(1, _tree(float('nan')))
    self.assertEqual(ckpt.steps(), [])
    ckpt.close()


class GuardAndFilesTest(absltest.TestCase):

  def test_check_finite_names_cell_step_and_quantity(self):
    wd.check_finite('odd10/ci', 3, loss=np.float32(1.0))
    with self.assertRaisesRegex(
        errors.NonFiniteError, r'odd10/ci: non-finite loss at step 7'):
      wd.check_finite('odd10/ci', 7, loss=np.float32(np.nan))
    with self.assertRaisesRegex(errors.NonFiniteError,
                                r"non-finite params \(at \['a'\]\['b'\]\)"):
      wd.check_finite('c', 1, params={'a': {'b': np.array([0.0, np.inf])}})

  def test_json_is_strict_and_corrupt_json_is_named(self):
    path = os.path.join(tempfile.mkdtemp(), 'x.json')
    wd.write_json(path, {'a': float('nan'), 'b': [1.5, np.float32(2)]})
    self.assertEqual(wd.read_json(path), {'a': None, 'b': [1.5, 2.0]})
    with open(path, 'w') as f:
      f.write('{"a": [1, 2')
    with self.assertRaisesRegex(errors.CorruptFileError, f'{path} is damaged'):
      wd.read_json(path)

  def test_metrics_log_is_cut_back_to_the_resumed_step(self):
    path = os.path.join(tempfile.mkdtemp(), 'm.jsonl')
    log = wd.MetricsLog(path, resume_step=0)
    for step in range(1, 6):
      log.write(step, loss=1.0 / step)
    log.close()
    with open(path, 'a') as f:
      f.write('{"step": 6, "lo')  # Torn by a kill.
    log = wd.MetricsLog(path, resume_step=3)
    self.assertEqual([r['step'] for r in log.records()], [1, 2, 3])
    log.write(4, loss=0.25)
    log.close()
    self.assertEqual([r['step'] for r in wd.read_metrics(path)], [1, 2, 3, 4])

  def test_corrupt_metrics_line_is_named(self):
    path = os.path.join(tempfile.mkdtemp(), 'm.jsonl')
    with open(path, 'w') as f:
      f.write('{"step": 1}\nnot json\n{"step": 2}\n{"step": 3}\n')
    with self.assertRaisesRegex(errors.CorruptFileError, 'm.jsonl, line 2'):
      wd.MetricsLog(path, resume_step=5)

  def test_a_full_disk_is_named_and_leaves_the_previous_file(self):
    path = os.path.join(tempfile.mkdtemp(), 'runs', 'odd10__ci.json')
    wd.write_json(path, {'accuracy': 0.5})
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with mock.patch.object(os, 'fsync', side_effect=full):
      with self.assertRaisesRegex(errors.WriteError,
                                  f'Could not write {path}: No space left '
                                  'on device; what it held before is '
                                  'unchanged'):
        wd.write_json(path, {'accuracy': 0.9})
    self.assertEqual(wd.read_json(path), {'accuracy': 0.5})
    self.assertEqual(os.listdir(os.path.dirname(path)), ['odd10__ci.json'])
    # A metrics line that cannot be written names the log.
    log_path = os.path.join(os.path.dirname(path), 'm.jsonl')
    log = wd.MetricsLog(log_path, resume_step=0)
    log.write(1, loss=0.5)
    with mock.patch.object(log._file, 'write', side_effect=full):
      with self.assertRaisesRegex(errors.WriteError,
                                  f'Could not write {log_path}'):
        log.write(2, loss=0.25)
    log.close()
    self.assertEqual([r['step'] for r in wd.read_metrics(log_path)], [1])

  def test_metrics_log_of_random_bytes_is_named(self):
    path = os.path.join(tempfile.mkdtemp(), 'm.jsonl')
    with open(path, 'wb') as f:
      f.write(bytes([0x82, 0xff, 0x00, 0x13]) * 8)
    for read in (lambda: wd.MetricsLog(path, resume_step=1),
                 lambda: wd.read_metrics(path)):
      with self.assertRaisesRegex(errors.CorruptFileError,
                                  f'{path} is damaged: not UTF-8'):
        read()


class WorkdirTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.path, ignore_errors=True)

  def test_claim_refuses_a_different_config(self):
    with wd.Workdir(self.path, {'lr': 0.1}, runtime={'backend': 'cpu'}):
      pass
    with wd.Workdir(self.path, {'lr': 0.1}, runtime={'backend': 'gpu'}):
      pass  # The runtime record may change.
    with self.assertRaisesRegex(errors.ConfigMismatchError,
                                'different config .*fields lr differ'):
      with wd.Workdir(self.path, {'lr': 0.2}):
        pass

  def test_empty_config_json_is_named(self):
    open(os.path.join(self.path, 'config.json'), 'w').close()
    with self.assertRaisesRegex(errors.CorruptFileError,
                                'config.json is damaged'):
      with wd.Workdir(self.path, {'lr': 0.1}):
        pass

  def test_corrupt_cell_is_named(self):
    with wd.Workdir(self.path, {}) as w:
      w.finish('odd10/ci', {'accuracy': 0.5})
      self.assertEqual(w.finished('odd10/ci'), {'accuracy': 0.5})
      with open(w.file('runs', 'odd10__ci.json'), 'w') as f:
        f.write('{"accur')
      with self.assertRaisesRegex(errors.CorruptFileError, 'odd10__ci.json'):
        w.finished('odd10/ci')

  def test_cell_record_of_the_wrong_shape_is_named(self):
    with wd.Workdir(self.path, {}) as w:
      w.finish('odd10/ci', {'x': 1})
      with self.assertRaisesRegex(errors.CorruptFileError,
                                  'odd10__ci.json is not a result record of '
                                  'this runner: it lacks per_seed'):
        w.finished('odd10/ci', keys=('per_seed',))
    with self.assertRaisesRegex(errors.CorruptFileError,
                                'odd10__ci.json .* lacks loss, per_seed'):
      wd.read_runs(self.path, keys=('loss', 'per_seed'))
    wd.write_json(os.path.join(self.path, 'runs', 'odd10__ci.json'), [1])
    with self.assertRaisesRegex(errors.CorruptFileError,
                                'a JSON object, got list'):
      wd.read_runs(self.path)

  def test_a_workdir_that_cannot_be_one_is_named(self):
    existing_file = os.path.join(self.path, 'file')
    with open(existing_file, 'w') as f:
      f.write('x')
    with self.assertRaisesRegex(errors.WorkdirError,
                                'is an existing file, not a directory'):
      wd.Workdir(existing_file, {}).open()
    with self.assertRaisesRegex(errors.WorkdirError,
                                'under-a-file/w cannot be created'):
      wd.Workdir(os.path.join(existing_file, 'under-a-file', 'w'), {}).open()

  def test_disk_and_permission_faults_at_the_lock_are_named(self):
    os.makedirs(os.path.join(self.path, 'dir-lock', '.lock'))
    with self.assertRaisesRegex(
        errors.WorkdirError, r'dir-lock/\.lock cannot be written \(it is a '
        r'directory; remove it\)'):
      wd.Workdir(os.path.join(self.path, 'dir-lock'), {}).open()
    read_only = OSError(errno.EROFS, os.strerror(errno.EROFS))
    with mock.patch('cil.workdir.directory.open', create=True,
                    side_effect=read_only):
      with self.assertRaisesRegex(
          errors.WorkdirError, r'\.lock cannot be written \(Read-only file '
          r'system\); choose a --workdir on a writable disk'):
        wd.Workdir(self.path, {}).open()

    class FullFile(io.StringIO):
      def flush(self):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with mock.patch('cil.workdir.directory.open', create=True,
                    side_effect=lambda *a, **k: FullFile()), \
        mock.patch('fcntl.flock'):
      with self.assertRaisesRegex(
          errors.WorkdirError, r'\.lock cannot be written \(No space left '
          r'on device\); free space'):
        wd.Workdir(self.path, {}).open()
    with self.assertRaisesRegex(errors.WorkdirError, '--workdir is empty'):
      wd.Workdir('', {}).open()
    # A workdir that opens but whose config record cannot be written.
    with mock.patch('tempfile.mkstemp', side_effect=read_only):
      with self.assertRaisesRegex(errors.WriteError,
                                  'Could not write .*config.json: Read-only'):
        wd.Workdir(self.path, {}).open()

  def test_second_process_on_a_locked_workdir_fails_fast(self):
    code = ('import sys; from cil import errors, workdir as wd\n'
            'try:\n'
            f'  wd.Workdir({self.path!r}, {{}}).open()\n'
            'except errors.WorkdirLockedError as e:\n'
            '  print(e); sys.exit(3)\n')
    with wd.Workdir(self.path, {}):
      held = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            check=False)
    self.assertEqual(held.returncode, 3, held.stderr)
    self.assertIn(f'Workdir {self.path} is in use by another run (pid '
                  f'{os.getpid()}', held.stdout)
    free = subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          check=False)
    self.assertEqual(free.returncode, 0, free.stdout + free.stderr)


if __name__ == '__main__':
  absltest.main()
