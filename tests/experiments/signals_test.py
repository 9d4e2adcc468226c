"""A SIGTERM or SIGINT at any moment of a run stops it as pre-emption
(`cil.errors.Preempted`, exit status 75 from a launcher, one line), and
the rerun resumes to the uninterrupted run's result: classify and
few-shot, at five moments each (data loading, the first step's
compilation, between cells, evaluation or meta-test, twice during a
checkpoint save)."""

import os
import pkgutil
import shutil
import signal
import tempfile
from unittest import mock

from absl.testing import absltest
import pytest

from cil import errors
from cil.experiments import classify
from cil.experiments import fewshot
from cil.experiments import loop
import configs
import testutil


def _sending(target: str, *, signals=(signal.SIGTERM,), after=False,
             returned=False):
  """Patches `target` so that its first call sends `signals` to this
  process (before the call, or after it returns); with `returned`, the
  first call of the function it returns does."""
  real = pkgutil.resolve_name(target)
  sent = []
  if returned:
    def factory(*args, **kwargs):
      inner = real(*args, **kwargs)

      def call(*a, **k):
        if not sent:
          sent.append(True)
          for signum in signals:
            os.kill(os.getpid(), signum)
        return inner(*a, **k)
      return call
    return mock.patch(target, factory), sent

  def send():
    if not sent:
      sent.append(True)
      for signum in signals:
        os.kill(os.getpid(), signum)

  def wrapped(*args, **kwargs):
    if not after:
      send()
    out = real(*args, **kwargs)
    if after:
      send()
    return out

  return mock.patch(target, wrapped), sent


class _Moments:
  """Each moment: a name, the patch that signals there, and what the
  `Preempted` message must say."""

  def moments(self):
    raise NotImplementedError

  def check_moments(self, run, whole, same):
    for name, target, kwargs, message in self.moments():
      with self.subTest(name):
        workdir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, workdir, ignore_errors=True)
        patch, sent = _sending(target, **kwargs)
        handlers = [signal.getsignal(s) for s in loop.StopSignals.SIGNALS]
        with patch, self.assertRaisesRegex(errors.Preempted, message):
          run(workdir)
        self.assertTrue(sent, f'{target} was not called')
        # Outside a run the signals do what they did before it.
        self.assertEqual(
            [signal.getsignal(s) for s in loop.StopSignals.SIGNALS],
            handlers)
        runs = os.path.join(workdir, 'runs')
        if name != 'between cells':  # Only the first cell can be finished.
          self.assertFalse(os.path.exists(runs) and os.listdir(runs), name)
        same(whole, run(workdir), name)


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': '', 'CIL_DATA_DIR': ''})
class ClassifySignalsTest(_Moments, absltest.TestCase):

  def moments(self):
    runner = 'cil.experiments.classify.runner'
    return [
        ('data loading', 'cil.data.load', {}, 'stopped by SIGTERM;'),
        ('compilation', f'{runner}.train_chunk', {},
         r'odd25/ce: stopped by SIGTERM in epoch 1 of 2, after 1 of its '
         r'\d+ parts, with a checkpoint there'),
        ('between cells', 'cil.workdir.Workdir.finish', {'after': True},
         'stopped by SIGTERM;'),
        ('evaluation', f'{runner}.predict_logits',
         {'signals': (signal.SIGINT,)}, 'stopped by SIGINT;'),
        ('twice during a save', 'cil.workdir.Checkpointer.save',
         {'signals': (signal.SIGTERM, signal.SIGTERM)},
         'odd25/ce: stopped by SIGTERM after epoch 1 of 2'),
    ]

  def test_a_signal_at_any_moment_stops_and_resumes_to_the_same_run(self):
    data_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
    config = configs.load('classify', 'smoke')
    config.update(data_dir=data_dir, protocols=('odd25',),
                  losses=('ce', 'ci'), seeds=1, epochs=2,
                  checkpoint_every=1)
    cfg = classify.ClassifyConfig.from_config(config)

    def run(workdir):
      return classify.run(cfg, workdir, show_progress=False)

    def same(a, b, name):
      for x, y in zip(a['runs'], b['runs'], strict=True):
        self.assertEqual(x['train_loss_per_epoch'],
                         y['train_loss_per_epoch'], name)
        self.assertEqual([s['confusion'] for s in x['per_seed']],
                         [s['confusion'] for s in y['per_seed']], name)

    whole_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, whole_dir, ignore_errors=True)
    self.check_moments(run, run(whole_dir), same)


@mock.patch.dict(os.environ, {'CIL_MANUAL_DIR': ''})
class FewShotSignalsTest(_Moments, absltest.TestCase):

  def moments(self):
    runner = 'cil.experiments.fewshot.runner'
    return [
        ('data loading', 'cil.data.load_fewshot', {}, 'stopped by SIGTERM;'),
        ('compilation', 'cil.maml.parallel_meta_train_step',
         {'returned': True},
         'ce: stopped by SIGTERM after step 1 of 2, with a checkpoint'),
        ('between cells', 'cil.workdir.Workdir.finish', {'after': True},
         'stopped by SIGTERM;'),
        ('meta-test', f'{runner}.evaluate', {}, 'stopped by SIGTERM;'),
        ('twice during a save', 'cil.workdir.Checkpointer.save',
         {'signals': (signal.SIGTERM, signal.SIGTERM)},
         'ce: stopped by SIGTERM after step 1 of 2'),
    ]

  @pytest.mark.slow  # ~40 s: ten few-shot runs.
  def test_a_signal_at_any_moment_stops_and_resumes_to_the_same_run(self):
    data_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, data_dir, ignore_errors=True)
    config = configs.load('fewshot', 'smoke')
    config.update(support=((1, 1, 1, 1, 4),), losses=('ce', 'ci'),
                  meta_batch=2, meta_steps=2, features=4, test_tasks=2,
                  checkpoint_every=1, parallel='none', data_dir=data_dir)
    config.maml.update(adaptation_steps=1, test_adaptation_steps=1)
    cfg = fewshot.FewShotConfig.from_config(config)

    def run(workdir):
      return fewshot.run(cfg, workdir, show_progress=False)

    def same(a, b, name):
      for x, y in zip(a['runs'], b['runs'], strict=True):
        self.assertEqual(x['meta_loss'], y['meta_loss'], name)
        self.assertEqual(x['distributions'], y['distributions'], name)

    whole_dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, whole_dir, ignore_errors=True)
    self.check_moments(run, run(whole_dir), same)


class StopSignalsTest(absltest.TestCase):
  """The states of `loop.StopSignals`, without a run."""

  def test_held_at_step_boundaries_and_in_saves_ignored_once_stopping(self):
    kill = lambda: os.kill(os.getpid(), signal.SIGTERM)  # noqa: E731
    with loop.stop_signals() as stop:
      with stop.at_step_boundaries():
        kill()  # Held for the boundary ...
        self.assertTrue(stop.agreed())
        with self.assertRaisesRegex(errors.Preempted, 'a second signal'):
          kill()  # ... a second one stops at once.
        kill()  # Stopping already: ignored.
    with loop.stop_signals() as stop:
      with self.assertRaisesRegex(errors.Preempted, 'stopped by SIGINT'):
        with stop.critical():
          os.kill(os.getpid(), signal.SIGINT)
          os.kill(os.getpid(), signal.SIGINT)
          done = True  # The save finishes; then the run stops.
      self.assertTrue(done)
    with loop.stop_signals() as stop:  # Nothing held: at once.
      with self.assertRaisesRegex(errors.Preempted, 'stopped by SIGTERM'):
        kill()
        self.fail('not stopped')


class LauncherSignalsTest(absltest.TestCase):

  def test_sigterm_before_the_run_starts_is_one_line_and_status_75(self):
    # The launcher holds the handlers from its start: a signal while JAX
    # starts (here: sent by the process to itself as its main begins)
    # ends as pre-emption, not as a 143 or a KeyboardInterrupt traceback.
    for signum in (signal.SIGTERM, signal.SIGINT):
      code = (
          'import os, signal, sys\n'
          'sys.argv = ["launch.classify", "--workdir=/nonexistent/never"]\n'
          'from launch import classify, common\n'
          'real = common.distributed.initialize\n'
          'def initialize(settings):\n'
          f'  os.kill(os.getpid(), {int(signum)})\n'
          '  return real(settings)\n'
          'common.distributed.initialize = initialize\n'
          'common.launch(classify.run)\n')
      with self.subTest(signal.Signals(signum).name):
        result = testutil.run_python(code, env={'CIL_HUGE_PAGES': '0'})
        self.assertEqual(result.returncode, errors.Preempted.EXIT_CODE,
                         result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        self.assertLen(lines, 1, result.stderr)
        self.assertStartsWith(
            lines[0], f'stopped: stopped by {signal.Signals(signum).name};')


if __name__ == '__main__':
  absltest.main()
