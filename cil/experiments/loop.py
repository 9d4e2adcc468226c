"""The one run loop: cells of a run, and the steps of one cell.

Every runner (`classify`, `fewshot`, `detect`) is a list of cells (a
(protocol, loss) pair, a loss, or one detector), each trained for a number
of steps (epochs, meta-steps, optimizer steps) and then evaluated. What
happens around those steps is the same for all of them and lives here:

* `run_cells(work, cells, train_cell, ...)`: skips the cells the workdir
  has already finished, trains the others in order under one progress bar,
  and records each as finished (`Workdir.finish`) only once it has returned
  a result, so an interrupted or diverged cell is never recorded;
* `CellTraining(work, cell, state)`: restores the cell's newest good
  checkpoint (falling back to the previous one; `cil.workdir.Checkpointer`)
  into `state`, and `.run(num_steps, step)` steps from there: each step's
  scalars pass the non-finite guard and go to the cell's metrics log, the
  parameters pass the guard and are checkpointed every `checkpoint_every`
  steps and at the end, and a callback (tests use it to interrupt a run)
  sees each step. A step made of parts (an epoch of compiled chunks:
  `parts=`) is checkpointed inside, every `checkpoint_parts` parts and
  at a stop request, with the step's partial results (`carry`); a run
  restored there resumes inside the step, at the next part.
* Pre-emption (`stops_on_signals`, around each runner's `run`): a SIGTERM
  (what SLURM, Kubernetes and TPU VMs send before they kill) or a SIGINT
  (Ctrl-C) at any moment of a run stops it as `cil.errors.Preempted`
  (launchers exit with its `EXIT_CODE`, 75, and one line). During a
  cell's steps the run stops at the next step boundary, with the state
  checkpointed there; elsewhere (data loading, compilation, between
  cells, evaluation) at once, since nothing there is lost that a rerun
  does not redo. A checkpoint being saved is always finished first, a
  second signal during a step stops at once (from the last checkpoint),
  and signals after the first stop are ignored while the run unwinds.
  A step made of parts (classify's epoch of chunks) stops at the next
  part, checkpointed inside the step. Nothing unfinished is recorded as
  finished. With several processes
  they agree on the step boundary (one flag gathered per step), so every
  process saves the same checkpoint. Rerunning the same command resumes
  to the result of an uninterrupted run.

A runner supplies only what differs: its step function, its scalars and
its evaluation.
"""

import contextlib
import functools
import signal
import threading
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from cil import distributed
from cil import errors
from cil import workdir as workdir_lib


def state_tree(state: Any) -> dict:
  """The arrays of a `TrainState` that a checkpoint holds.

  Params, optimizer state and step, and the batch-norm statistics of
  states that carry them.
  """
  tree = {'params': state.params, 'opt_state': state.opt_state,
          'step': state.step}
  if getattr(state, 'batch_stats', None) is not None:
    tree['batch_stats'] = state.batch_stats
  return tree


class CellTraining:
  """Restore, step, guard, log and checkpoint one cell (a context manager).

  Checkpoints are numbered by parts done, `step * parts + part` (with one
  part per step, by steps).

  Attributes:
    cell: the cell's name (`odd10/ci`, `ci`, `train`).
    start: the step restored from the checkpoint (0 for a fresh cell); with
      parts, the step a checkpoint inside a step resumes.
    state: the current state (restored on entry, advanced by `run`).
  """

  def __init__(self, work: workdir_lib.Workdir, cell: str, state: Any, *,
               checkpoint_every: int, guard_name: Optional[str] = None,
               parts: int = 1, checkpoint_parts: int = 0,
               carry: Any = None, unit: str = 'step'):
    """Restores `cell`'s newest good checkpoint into `state`.

    Args:
      work: the open workdir.
      cell: the cell's name; its checkpoints and metrics log are named by it.
      state: a freshly initialised state (the restore target).
      checkpoint_every: save every this many steps (and at the last).
      guard_name: the name the non-finite guard reports (default `cell`).
      parts: parts of each step (>= 1).
      checkpoint_parts: inside a step, save every this many parts as well
        (0: only at step ends and stop requests).
      carry: a step's partial results at its start (a pytree of fixed-shape
        arrays, e.g. running sums), saved with every checkpoint; given,
        `run`'s step function takes a third argument, the step's
        `StepParts` (required with more than one part).
      unit: what a step is called in messages ('epoch').
    """
    if parts < 1 or checkpoint_parts < 0:
      raise ValueError(f'parts must be >= 1 and checkpoint_parts >= 0, got '
                       f'{parts} and {checkpoint_parts}.')
    if parts > 1 and carry is None:
      raise ValueError('A step of several parts needs a carry template.')
    self.cell = cell
    self._work = work
    self._every = checkpoint_every
    self._guard = guard_name or cell
    self._parts = parts
    self._part_every = checkpoint_parts
    self._carry0 = carry
    self._unit = unit
    self._checkpointer = work.checkpointer(cell)
    self._log = None
    try:
      done, restored = self._checkpointer.restore(self._tree(state, carry))
    except BaseException:
      self._checkpointer.close()
      raise
    self.start, self._first_part = divmod(done, parts)
    self._carry = restored.pop('carry', carry)
    self.state = state.replace(**restored)

  def _tree(self, state: Any, carry: Any) -> dict:
    tree = state_tree(state)
    if self._carry0 is not None:
      tree['carry'] = carry
    return tree

  def __enter__(self) -> 'CellTraining':
    return self

  def __exit__(self, exc_type, *exc) -> None:
    try:
      self.close()
    except (OSError, errors.RunError):
      if exc_type is None:
        raise
      # The error that stopped the run says what failed; closing after a
      # full disk fails the same way.

  def close(self) -> None:
    self._checkpointer.close()
    if self._log is not None:
      log, self._log = self._log, None
      log.close()

  def run(self, num_steps: int,
          step: Callable[[Any, int], tuple[Any, dict]], *,
          seconds_key: str = 'step_seconds',
          callback: Optional[Callable[[int, Any, dict], None]] = None
          ) -> list[dict]:
    """Steps `start .. num_steps`; returns the cell's metrics records.

    Args:
      num_steps: the cell's last step.
      step: `step(state, i) -> (state, scalars)` for step `i` (from 0);
        `scalars` (host numbers or arrays) are checked by the guard and
        logged at step `i + 1` with the step's wall time. With a carry,
        `step(state, i, parts)`: it runs parts `parts.first ..` from
        `parts.carry` and calls `parts.done(...)` after each
        (`StepParts`).
      seconds_key: the name of that wall time in the log.
      callback: `callback(i + 1, state, scalars)` after each step (and its
        checkpoint, when one is due); an exception raised there stops the
        run, which the next call resumes from the last checkpoint.

    Raises:
      cil.errors.NonFiniteError: a scalar or the parameters became NaN or
        infinite (the last good checkpoint stays).
      cil.errors.Preempted: a SIGTERM or SIGINT arrived; the state was
        checkpointed at the step it stopped after.
    """
    self._log = self._work.metrics(self.cell, resume_step=self.start)
    with stop_signals() as signals, signals.at_step_boundaries() as stop:
      for i in range(self.start, num_steps):
        started = time.perf_counter()
        if self._carry0 is None:
          self.state, scalars = step(self.state, i)
        else:
          first, carry = self._first_part, self._carry
          self._first_part, self._carry = 0, self._carry0
          self.state, scalars = step(self.state, i, StepParts(
              functools.partial(self._save, i), f'{self._unit} {i + 1} of '
              f'{num_steps}', count=self._parts, every=self._part_every,
              first=first, carry=carry, stop=stop, cell=self.cell))
        workdir_lib.check_finite(self._guard, i + 1, **scalars)
        self._log.write(i + 1, **scalars,
                        **{seconds_key: time.perf_counter() - started})
        saved = (i + 1) % self._every == 0 or i + 1 == num_steps
        if saved:
          with stop.critical():
            self._save(i + 1, 0, self.state, self._carry0)
        if callback is not None:
          callback(i + 1, self.state, scalars)
        if i + 1 < num_steps and stop.agreed():
          if not saved:
            with stop.critical():
              self._save(i + 1, 0, self.state, self._carry0)
          stop.stop_at_boundary(
              self.cell, f'after {self._unit} {i + 1} of {num_steps}, with '
              f'a checkpoint of that {self._unit}')
    if self.start >= num_steps:  # Restored finished: nothing checked it yet.
      workdir_lib.check_finite(self._guard, num_steps,
                               params=self.state.params)
    # Otherwise the last step was checkpointed, and its parameters checked.
    return self._log.records()

  def _save(self, step: int, part: int, state: Any, carry: Any) -> None:
    workdir_lib.check_finite(self._guard, step, params=state.params)
    self._checkpointer.save(step * self._parts + part,
                            self._tree(state, carry))


class StepParts:
  """One step's parts, as `CellTraining.run` hands them to a step made of
  parts (an epoch of chunks).

  Attributes:
    first: the first part to run (0, or where a checkpoint inside this
      step left off).
    carry: the step's partial results before part `first`.
    count: the step's parts.
  """

  def __init__(self, save: Callable[[int, Any, Any], None], where: str, *,
               count: int, every: int, first: int, carry: Any,
               stop: 'StopSignals', cell: str):
    self._save = save
    self._where = where
    self._every = every
    self._stop = stop
    self._cell = cell
    self.count = count
    self.first = first
    self.carry = carry

  def done(self, part: int, state: Callable[[], Any], carry: Any) -> None:
    """After part `part` (1-based) of the step, short of the last:
    saves the state (`state()`, called only when a save is due) and
    `carry` every `checkpoint_parts` parts; on a stop request, saves and
    raises `errors.Preempted` (with several processes, agreed between
    them)."""
    if part >= self.count:
      return
    saved = bool(self._every) and part % self._every == 0
    if saved:
      with self._stop.critical():
        self._save(part, state(), carry)
    if self._stop.agreed():
      if not saved:
        with self._stop.critical():
          self._save(part, state(), carry)
      self._stop.stop_at_boundary(
          self._cell, f'in {self._where}, after {part} of its {self.count} '
          f'parts, with a checkpoint there')


class StopSignals:
  """While active, SIGTERM and SIGINT stop the run as `errors.Preempted`.

  One per process at a time (`stops_on_signals` enters it around a run;
  nested entries share it). Only the main thread can install signal
  handlers; elsewhere (a runner called from a worker thread) the signals
  keep their actions. The previous handlers are put back on exit.

  States: by default a signal raises `Preempted` where the main thread
  is; inside `at_step_boundaries()` the first one is held for the loop to
  act on at the next boundary (a second one raises at once); inside
  `critical()` (a checkpoint being written) every one is held. Once
  `Preempted` was raised, later signals are ignored.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: list[str] = []
    self._hold = 0
    self._critical = 0
    self._raised = False
    self._previous = {}

  def __enter__(self) -> 'StopSignals':
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous = {}

  @property
  def signal_name(self) -> str:
    return self.received[0] if self.received else 'a stop request'

  def _handle(self, signum, frame) -> None:
    del frame
    self.received.append(signal.Signals(signum).name)
    if self._raised or self._critical:
      return
    if self._hold and len(self.received) == 1:
      return
    self._stop(f'stopped by {self.received[-1]}'
               + (' (a second signal, during a step: the run resumes from '
                  'the last checkpoint)' if self._hold else ''))

  def _stop(self, what: str) -> None:
    self._raised = True
    raise errors.Preempted(
        f'{what}; finished cells and checkpoints are kept and nothing '
        f'unfinished was recorded as finished. Rerun the same command to '
        f'resume.')

  def _release(self) -> None:
    """A held signal acts once nothing holds it any more."""
    if (self.received and not self._raised and not self._hold
        and not self._critical):
      self._stop(f'stopped by {self.signal_name}')

  @contextlib.contextmanager
  def at_step_boundaries(self):
    """The first signal is held: the step loop checks `agreed()` between
    steps, saves and raises; on leaving, a held one raises."""
    self._hold += 1
    try:
      yield self
    finally:
      self._hold -= 1
    self._release()

  @contextlib.contextmanager
  def critical(self):
    """Every signal is held until the block (a checkpoint save) is done."""
    self._critical += 1
    try:
      yield
    finally:
      self._critical -= 1
    if not self._hold:
      self._release()

  def agreed(self) -> bool:
    """Whether any process was asked to stop (a collective with several)."""
    if distributed.process_count() == 1:
      return bool(self.received)
    return bool(distributed.allgather(np.array(bool(self.received))).any())

  def stop_at_boundary(self, cell: str, when: str) -> None:
    """Raises `Preempted` for a signal held until a step boundary."""
    self._stop(f'{cell}: stopped by {self.signal_name} {when}')


_ACTIVE: Optional[StopSignals] = None


@contextlib.contextmanager
def stop_signals():
  """The process's `StopSignals`: entered here unless one is active."""
  global _ACTIVE
  if _ACTIVE is not None:
    yield _ACTIVE
    return
  with StopSignals() as stop:
    _ACTIVE = stop
    try:
      yield stop
    finally:
      _ACTIVE = None


def stops_on_signals(run: Callable[..., Any]) -> Callable[..., Any]:
  """`run` with SIGTERM and SIGINT turned into `errors.Preempted` at any
  moment (the module docstring): each runner's `run` is wrapped."""

  @functools.wraps(run)
  def wrapped(*args, **kwargs):
    with stop_signals():
      return run(*args, **kwargs)

  return wrapped


def run_cells(work: workdir_lib.Workdir, cells: Sequence[str],
              train_cell: Callable[[str, Any], dict], *,
              steps_of: Callable[[str], int], desc: str,
              record_keys: Sequence[str] = (),
              show_progress: bool = True) -> list[dict]:
  """Every cell's result: the finished ones read back, the others trained.

  Args:
    work: the open workdir.
    cells: the cells' names, in run order.
    train_cell: `train_cell(cell, progress) -> result` trains and evaluates
      one cell (`progress` is the shared bar: advance it per step).
    steps_of: the number of progress units of an unfinished cell.
    desc: the progress bar's label.
    record_keys: the keys a finished cell's record must hold (a record
      without them is a named error, not a KeyError later).
    show_progress: draw the bar (on the primary process only).

  Returns:
    The cells' results in `cells` order; each newly trained one has been
    recorded (`runs/<cell>.json`) before the next cell starts.
  """
  done = {cell: work.finished(cell, keys=record_keys) for cell in cells}
  total = sum(steps_of(cell) for cell, result in done.items()
              if result is None)
  bar = workdir_lib.progress(total, desc=desc, unit='step', enabled=bool(
      show_progress and total and work.primary))
  results = []
  try:
    for cell in cells:
      result = done[cell]
      if result is None:
        result = train_cell(cell, bar)
        work.finish(cell, result)
      results.append(result)
  finally:
    bar.close()
  return results
