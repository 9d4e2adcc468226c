"""Test-suite set-up, run before any test module imports JAX.

* Four fake CPU devices (`XLA_FLAGS=--xla_force_host_platform_device_count=4`)
  so multi-device code (pmap / shard_map) is exercised on the CPU. Modules
  that need them also call `chex.set_n_cpu_devices(4)` in `setUpModule` so
  they work when run directly with `python tests/x_test.py`.
* JAX's persistent compilation cache in `.jax_cache/` (git-ignored), so a
  second run of the suite skips most XLA compiles (slow on 2 CPU cores).
* `jax_disable_most_optimizations`, as the Flax examples' tests: tiny test
  shapes spend their time compiling, not running, and this took a cold
  run of the MAML, R2CNN and loss tests from 379 s to 282 s (same results).
  Set through the environment so launchers run by tests inherit it.
"""

import os

_FLAG = '--xla_force_host_platform_device_count=4'
if _FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' ' + _FLAG)
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('JAX_DISABLE_MOST_OPTIMIZATIONS', 'true')

import jax  # noqa: E402  pylint: disable=g-import-not-at-top

_CACHE = os.path.join(os.path.dirname(os.path.dirname(__file__)), '.jax_cache')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
