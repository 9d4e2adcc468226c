"""Tests for cil.experiments.loop, the one run loop, with a fake step on a
tiny state: restore and fall back, the non-finite guard, pre-emption, and
which cells are recorded (no model, no training)."""

import os
import shutil
import signal
import tempfile

from absl.testing import absltest
from flax.training import train_state
import jax.numpy as jnp
import numpy as np
import optax

from cil import errors
from cil import workdir as workdir_lib
from cil.experiments import loop


def _state():
  return train_state.TrainState.create(
      apply_fn=None, params={'w': jnp.zeros(3)}, tx=optax.sgd(0.1))


def _step(state, i, *, bad_at=None):
  """Adds 1 to the parameters; the loss is the step number (NaN at
  `bad_at`)."""
  loss = float('nan') if i == bad_at else float(i)
  return (state.replace(params={'w': state.params['w'] + 1.0},
                        step=state.step + 1), {'loss': loss})


class _Stop(Exception):
  pass


class CellTrainingTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    self.work = workdir_lib.Workdir(os.path.join(path, 'w'), {'x': 1})
    self.work.open()
    self.addCleanup(self.work.close)

  def _train(self, num_steps, *, callback=None, bad_at=None, every=2):
    with loop.CellTraining(self.work, 'cell', _state(),
                           checkpoint_every=every) as training:
      start = training.start
      records = training.run(
          num_steps, lambda s, i: _step(s, i, bad_at=bad_at),
          callback=callback)
      return start, training.state, records

  def test_an_interrupted_cell_resumes_from_its_last_checkpoint(self):
    def stop_after_3(step, *_):
      if step == 3:
        raise _Stop()

    with self.assertRaises(_Stop):
      self._train(5, callback=stop_after_3)
    start, state, records = self._train(5)
    self.assertEqual(start, 2)  # Checkpoints at 2 and 4 (every 2).
    np.testing.assert_array_equal(state.params['w'], [5.0, 5.0, 5.0])
    self.assertEqual(int(state.step), 5)
    # The log was cut back to the checkpoint and continued from it.
    self.assertEqual([(r['step'], r['loss']) for r in records],
                     [(1, 0.0), (2, 1.0), (3, 2.0), (4, 3.0), (5, 4.0)])
    # Finished: a third call restores step 5 and steps no further.
    start, state, _ = self._train(5, bad_at=0)
    self.assertEqual(start, 5)
    np.testing.assert_array_equal(state.params['w'], [5.0, 5.0, 5.0])

  def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(self):
    self._train(4)
    newest = self.work.file('checkpoints', 'cell', '4')
    files = sorted((os.path.join(r, n) for r, _, ns in os.walk(newest)
                    for n in ns if os.path.basename(r) == 'd'),
                   key=os.path.getsize)
    with open(files[-1], 'r+b') as f:
      f.write(b'\xff' * 64)
    with self.assertLogs(level='WARNING') as logged:
      start, state, _ = self._train(4)
    self.assertRegex('\n'.join(logged.output), r'resuming from step 2')
    self.assertEqual(start, 2)
    np.testing.assert_array_equal(state.params['w'], [4.0, 4.0, 4.0])

  def test_a_non_finite_scalar_stops_the_cell_and_keeps_the_checkpoint(self):
    with self.assertRaisesRegex(errors.NonFiniteError,
                                r'cell.*step 4.*loss'):
      self._train(6, bad_at=3)
    checkpointer = self.work.checkpointer('cell')
    self.addCleanup(checkpointer.close)
    self.assertEqual(checkpointer.steps(), [2])

  def test_sigterm_stops_at_the_next_step_with_a_checkpoint(self):
    handler = signal.getsignal(signal.SIGTERM)

    def sigterm_at_1(step, *_):
      if step == 1:
        os.kill(os.getpid(), signal.SIGTERM)

    with self.assertRaisesRegex(errors.Preempted,
                                'stopped by SIGTERM after step 1 of 4'):
      self._train(4, callback=sigterm_at_1, every=10)
    self.assertEqual(signal.getsignal(signal.SIGTERM), handler)
    start, state, _ = self._train(4, every=10)
    self.assertEqual(start, 1)
    np.testing.assert_array_equal(state.params['w'], [4.0, 4.0, 4.0])


class RunCellsTest(absltest.TestCase):

  def test_only_cells_that_returned_are_recorded_and_reruns_skip_them(self):
    path = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    trained = []

    def train(cell, bar):
      del bar
      trained.append(cell)
      if cell == 'b/ce':
        raise _Stop()
      return {'loss': cell, 'value': len(trained)}

    with workdir_lib.Workdir(path, {'x': 1}) as work:
      with self.assertRaises(_Stop):
        loop.run_cells(work, ['a/ce', 'b/ce'], train, steps_of=lambda c: 1,
                       desc='steps', show_progress=False)
      self.assertEqual(work.finished('a/ce'), {'loss': 'a/ce', 'value': 1})
      self.assertIsNone(work.finished('b/ce'))
      trained.clear()
      results = loop.run_cells(
          work, ['a/ce', 'b/ce'],
          lambda cell, bar: {'loss': cell, 'value': 2},
          steps_of=lambda c: 1, desc='steps', show_progress=False,
          record_keys=('loss',))
    self.assertEqual(results, [{'loss': 'a/ce', 'value': 1},
                               {'loss': 'b/ce', 'value': 2}])
    self.assertEqual(trained, [])


if __name__ == '__main__':
  absltest.main()
