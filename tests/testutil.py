"""What the test files share.

* `ROOT`: the repository root (launchers run from there).
* `launch(module, *flags, env=...)`: `python -m MODULE FLAGS...` in a child
  process from `ROOT`, its output captured (not checked: tests assert on
  the exit status and the output).
* `run_python(code, env=...)`: `python -c CODE` likewise.
* `four_cpu_devices()`: for `setUpModule` of a module that uses several
  devices, so it gets them when run on its own as well.
* `random_boxes(rng, n)`, `TINY_R2CNN`: the detection tests' boxes and
  detector.
* `binary_logits(p)`, `random_batch(seed, batch, classes)` and the count
  vectors (`LOW_DEGREE_COUNTS`, ...): the loss tests' small inputs.

Test files import it as `import testutil` (pytest puts `tests/` on the
path for `conftest.py`).
"""

import os
import subprocess
import sys
from typing import Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

from cil.detection import r2cnn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(module: str, *flags: str, env: Optional[dict] = None,
           timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs `python -m module *flags` from the repository root.

  Args:
    module: e.g. 'launch.classify'.
    *flags: its command-line arguments.
    env: variables set on top of this process's environment.
    timeout: seconds before the child is killed (a test failure).
  """
  return subprocess.run([sys.executable, '-m', module, *flags], cwd=ROOT,
                        env=dict(os.environ, **(env or {})),
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


def run_python(code: str, *, env: Optional[dict] = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
  """Runs `python -c code` from the repository root (output captured)."""
  return subprocess.run([sys.executable, '-c', code], cwd=ROOT,
                        env=dict(os.environ, **(env or {})),
                        capture_output=True, text=True, timeout=timeout,
                        check=False)


def four_cpu_devices() -> None:
  """Asks XLA for 4 CPU devices unless the environment already does.

  Under pytest, `tests/conftest.py` has set `XLA_FLAGS` before JAX
  started; a module run as `python tests/x_test.py` gets them here.
  """
  if 'xla_force_host_platform_device_count' not in os.environ.get(
      'XLA_FLAGS', ''):
    chex.set_n_cpu_devices(4)


def binary_logits(p):
  """Logits of a two-class softmax whose class-0 probability is exactly p."""
  return jnp.stack([jnp.log(p), jnp.log1p(-p)], axis=-1)


def random_batch(seed, batch, num_classes, dtype=jnp.float32, scale=3.0):
  """`scale`-wide normal logits `[batch, C]` and uniform labels `[batch]`."""
  key_z, key_y = jax.random.split(jax.random.key(seed))
  logits = scale * jax.random.normal(key_z, (batch, num_classes), dtype)
  labels = jax.random.randint(key_y, (batch,), 0, num_classes)
  return logits, labels


# The loss tests' class counts whose imbalance degree is <= 1 (square-root
# factor) and > 1 (eighth root), used by every test that depends on the CI
# factor f.
LOW_DEGREE_COUNTS = (9.0, 1.0, 4.0, 3.0, 2.0)     # lambda = 0.40 -> f = sqrt

HIGH_DEGREE_COUNTS = (4096.0, 1.0, 16.0, 2.0, 300.0)  # lambda = 1.93 -> 1/8

DEGREE_CASES = (
    ('lambda_le_1', LOW_DEGREE_COUNTS, 0.5),
    ('lambda_gt_1', HIGH_DEGREE_COUNTS, 0.125),
)

# The eq. (5) ablation rules (`RESULTS.md`), as ci_loss keyword arguments.
RULE_CASES = (
    ('paper', {}),
    ('always_half', {'high_exponent': 0.5}),
    ('always_eighth', {'low_exponent': 0.125}),
    ('ramp', {'transition_width': 1.0}),
    ('threshold', {'threshold': 0.3, 'low_exponent': 0.25}),
)

# NumPy, not jnp: importing this module must not start JAX's backend.
COUNTS = np.array([50.0, 5.0, 1.0, 20.0, 400.0], np.float32)


def random_boxes(rng, n, *, centre=50.0, side=(0.5, 40.0)):
  """`[n, 5]` rotated boxes (cx, cy, w, h, theta) drawn from `rng`."""
  return np.stack([rng.uniform(0, centre, n), rng.uniform(0, centre, n),
                   rng.uniform(*side, n), rng.uniform(*side, n),
                   rng.uniform(-4, 4, n)], -1)


# A detector small enough to compile and train on the CPU in a test.
TINY_R2CNN = r2cnn.R2CNNConfig(image_size=128, width=8, head_dim=64,
                               pre_nms=200, post_nms=32, rpn_batch=64,
                               roi_batch=16, loss='ci')
