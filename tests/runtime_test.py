"""Tests for cil.runtime: the backend policy, its resolution into the
runners' configs, compiler options and the run record."""

import dataclasses
import tempfile

from absl.testing import absltest
import jax

from cil import runtime
from cil.experiments import classify
from cil.experiments import fewshot
import configs

_YNN_DOTS = (('xla_cpu_experimental_ynn_fusion_type',
              'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT'),)


class PolicyTest(absltest.TestCase):

  def test_each_backend_gets_its_choices(self):
    gpu = runtime.policy('gpu')
    self.assertEqual(
        dataclasses.asdict(gpu),
        {'backend': 'gpu', 'unroll_loops': False, 'classify_chunk_steps': 25,
         'seed_parallel': 'vmap', 'task_map': 'vmap', 'conv_impl': 'im2col',
         'first_order_conv_impl': 'im2col', 'meta_step_compiler_options': (),
         'classify_step_compiler_options': (),
         'batch_norm_step_compiler_options': (), 'classify_conv_pool': 'xla'})
    self.assertEqual(runtime.policy('tpu').conv_impl, 'xla')
    cpu = runtime.policy('cpu')
    self.assertEqual(
        (cpu.unroll_loops, cpu.classify_chunk_steps, cpu.seed_parallel,
         cpu.task_map, cpu.first_order_conv_impl, cpu.classify_conv_pool),
        (True, 1, 'loop', 'calls', 'winograd', 's2d_train'))
    self.assertEqual(cpu.meta_step_compiler_options, (
        ('xla_cpu_scheduler_type', 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'),))
    # This jaxlib's XLA knows the option (else the policy leaves it out).
    self.assertEqual(cpu.classify_step_compiler_options, _YNN_DOTS)
    self.assertEqual(cpu.batch_norm_step_compiler_options, (
        ('xla_cpu_experimental_ynn_fusion_type',
         'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_ELTWISE,'
         'LIBRARY_FUSION_TYPE_REDUCE'),))
    self.assertEqual(runtime.policy().backend, jax.default_backend())

  def test_maml_lowering_follows_the_order_unless_one_is_requested(self):
    cpu = runtime.policy('cpu')
    self.assertEqual(cpu.maml_conv_impl(first_order=True), 'winograd')
    self.assertEqual(cpu.maml_conv_impl(first_order=False), 'im2col')
    self.assertEqual(cpu.maml_conv_impl(first_order=True, requested='xla'),
                     'xla')

  def test_option_pairs_from_a_config_or_a_record(self):
    self.assertIsNone(runtime.option_pairs(None))
    self.assertEqual(runtime.option_pairs(()), ())
    self.assertEqual(runtime.option_pairs([['a', 'b']]), (('a', 'b'),))
    self.assertEqual(runtime.option_pairs({'a': 'b'}), (('a', 'b'),))
    for bad in ('a=b', [('a',)], [('a', 1)], [3]):
      with self.assertRaisesRegex(ValueError, 'compiler_options'):
        runtime.option_pairs(bad)

  def test_the_record_holds_the_policy_devices_and_versions(self):
    record = runtime.describe(runtime.policy('gpu'), classify={'x': 1})
    self.assertEqual(record['policy']['backend'], 'gpu')
    self.assertEqual(record['classify'], {'x': 1})
    self.assertEqual(record['devices']['count'], jax.device_count())
    self.assertEqual(record['versions']['jax'], jax.__version__)
    with tempfile.TemporaryDirectory() as outside:  # Not a git checkout.
      self.assertEqual(runtime.code_version(outside)['commit'], None)


class ResolveTest(absltest.TestCase):
  """The runners' configs take every backend choice from the policy once,
  as plain values, and a resolved config resolves to itself."""

  def test_classify_config_resolves_every_backend_choice(self):
    cfg = classify.ClassifyConfig.from_config(
        configs.load('classify', 'mnist_table1'))
    self.assertEqual((cfg.chunk_steps, cfg.seed_parallel, cfg.step_loop,
                      cfg.conv_pool, cfg.compiler_options),
                     (0, '', '', '', None))
    cpu = cfg.resolve(runtime.policy('cpu'))
    self.assertEqual((cpu.model, cpu.chunk_steps, cpu.seed_parallel,
                      cpu.step_loop, cpu.conv_pool, cpu.compiler_options),
                     ('lenet', 1, 'loop', 'unroll', 's2d_train', _YNN_DOTS))
    gpu = cfg.resolve(runtime.policy('gpu'))
    self.assertEqual((gpu.chunk_steps, gpu.seed_parallel, gpu.step_loop,
                      gpu.conv_pool, gpu.compiler_options),
                     (25, 'vmap', 'scan', 'xla', ()))
    self.assertEqual(cpu.resolve(runtime.policy('gpu')), cpu)
    self.assertEqual(classify.step_settings(cpu, 'ci'), {
        'loss': cfg.loss_spec('ci'), 'seed_parallel': 'loop',
        'unroll': True, 'augment': '', 'compiler_options': _YNN_DOTS})
    # What a config states is kept; a model without the choice is 'xla'.
    mine = dataclasses.replace(cfg, dataset='digits', model='',
                               compiler_options=(), step_loop='scan')
    mine = mine.resolve(runtime.policy('cpu'))
    self.assertEqual((mine.model, mine.conv_pool, mine.compiler_options,
                      mine.step_loop), ('digits_cnn', 'xla', (), 'scan'))

  def test_classify_config_names_a_bad_backend_choice(self):
    cfg = classify.ClassifyConfig.from_config(configs.load('classify'))
    for field, value, message in (
        ('step_loop', 'while', "step_loop must be one of 'unroll', 'scan' "
                               r"\('' for the backend's\), got 'while'"),
        ('conv_pool', 'fft', 'conv_pool must be one of'),
        ('conv_pool', 's2d', "lowering of lenet, lenet_normed only; model "
         "'digits_cnn'")):
      with self.assertRaisesRegex(ValueError, message):
        dataclasses.replace(cfg, **{field: value}).validate()

  def test_fewshot_config_resolves_every_backend_choice(self):
    cfg = fewshot.FewShotConfig.from_config(
        configs.load('fewshot', 'omniglot_lambda'))
    cpu = cfg.resolve(runtime.policy('cpu'))
    self.assertEqual((cpu.conv_impl, cpu.maml.task_map, cpu.compiler_options),
                     ('winograd', 'calls', runtime.policy(
                         'cpu').meta_step_compiler_options))
    gpu = cfg.resolve(runtime.policy('gpu'))
    self.assertEqual((gpu.conv_impl, gpu.maml.task_map, gpu.compiler_options),
                     ('im2col', 'vmap', ()))
    self.assertEqual(cpu.resolve(runtime.policy('gpu')), cpu)
    self.assertEqual(cpu.maml_config('ci+ros').inner_loss,
                     cpu.maml_config('ci').outer_loss)


if __name__ == '__main__':
  absltest.main()
