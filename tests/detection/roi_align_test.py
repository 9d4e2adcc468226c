"""Tests for cil.detection.roi_align against direct references.
"""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from cil.detection import boxes as B
from cil.detection import roi_align


def _bilinear_reference(features, y, x):
  """One bilinear sample in cells by Detectron2's rule, written out."""
  height, width, channels = features.shape
  if y < -1 or y > height or x < -1 or x > width:
    return np.zeros(channels)
  y, x = max(y, 0.0), max(x, 0.0)
  y0, x0 = min(int(y), height - 1), min(int(x), width - 1)
  y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
  ly = 0.0 if y0 == height - 1 else y - y0
  lx = 0.0 if x0 == width - 1 else x - x0
  return ((1 - ly) * (1 - lx) * features[y0, x0]
          + (1 - ly) * lx * features[y0, x1]
          + ly * (1 - lx) * features[y1, x0] + ly * lx * features[y1, x1])


def _roi_align_reference(features, rois, ph, pw, scale, ratio, aligned):
  """RoIAlign written out sample by sample (Detectron2's definition)."""
  out = np.zeros((len(rois), ph, pw, features.shape[-1]))
  off = 0.5 if aligned else 0.0
  for r, (x1, y1, x2, y2) in enumerate(rois):
    x1, y1, x2, y2 = x1 * scale - off, y1 * scale - off, (
        x2 * scale - off), y2 * scale - off
    rw, rh = x2 - x1, y2 - y1
    if not aligned:
      rw, rh = max(rw, 1.0), max(rh, 1.0)
    for i in range(ph):
      for j in range(pw):
        for a in range(ratio):
          for b in range(ratio):
            out[r, i, j] += _bilinear_reference(
                features, y1 + (i + (a + 0.5) / ratio) * rh / ph,
                x1 + (j + (b + 0.5) / ratio) * rw / pw) / ratio ** 2
  return out


def _rotated_roi_align_reference(features, rois, ph, pw, scale, ratio):
  """Rotated RoIAlign sample by sample: walk from corner p0 along the box's
  w edge (toward p1) and h edge (toward p3), then bilinear as Detectron2."""
  out = np.zeros((len(rois), ph, pw, features.shape[-1]))
  corners = B.rbox_to_corners(np.asarray(rois, np.float64), xp=np)
  for r in range(len(rois)):
    p0, p1, _, p3 = corners[r] * scale - 0.5
    for i in range(ph):
      for j in range(pw):
        for a in range(ratio):
          for b in range(ratio):
            fw = (j + (b + 0.5) / ratio) / pw  # Fraction along p0 -> p1.
            fh = (i + (a + 0.5) / ratio) / ph  # Fraction along p0 -> p3.
            x, y = p0 + fw * (p1 - p0) + fh * (p3 - p0)
            out[r, i, j] += _bilinear_reference(features, y, x) / ratio ** 2
  return out


class RoiAlignTest(parameterized.TestCase):

  @parameterized.parameters(True, False)
  def test_matches_the_sample_by_sample_reference(self, aligned):
    rng = np.random.default_rng(6)
    features = rng.standard_normal((9, 11, 3))
    rois = np.array([[0, 0, 64, 64], [10, 20, 50, 30], [-20, -8, 30, 40],
                     [150, 120, 200, 190], [40, 40, 41, 42],
                     [5.5, 7.25, 120.0, 60.5]])
    with jax.enable_x64(True):
      got = jax.jit(roi_align.roi_align, static_argnames=(
          'output_size', 'spatial_scale', 'sampling_ratio', 'aligned'))(
              jnp.asarray(features), jnp.asarray(rois), output_size=(3, 4),
              spatial_scale=1 / 16, sampling_ratio=2, aligned=aligned)
    ref = _roi_align_reference(features, rois, 3, 4, 1 / 16, 2, aligned)
    np.testing.assert_allclose(got, ref, atol=1e-12)

  def test_r2cnn_pooled_sizes_concatenated(self):
    features = jnp.ones((8, 8, 2))
    out = roi_align.multi_roi_align(features, jnp.array([[0., 0, 64, 64]]),
                                    spatial_scale=1 / 8)
    self.assertEqual(out.shape, (1, (49 + 33 + 33) * 2))
    np.testing.assert_allclose(out, 1.0, atol=1e-6)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r'rois must be \[R, 4\]'):
      roi_align.roi_align(jnp.ones((4, 4, 1)), jnp.ones((2, 5)),
                          output_size=(2, 2), spatial_scale=1.0)


class RotatedRoiAlignTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.align = staticmethod(jax.jit(roi_align.rotated_roi_align,
                                     static_argnames=(
                                         'output_size', 'spatial_scale',
                                         'sampling_ratio', 'aligned')))

  @parameterized.parameters(0.0, 0.3, -0.7, np.pi / 2, -np.pi / 2, np.pi,
                            2.5)
  def test_matches_the_sample_by_sample_reference(self, theta):
    rng = np.random.default_rng(7)
    features = rng.standard_normal((9, 11, 3))
    rois = np.array([[80, 70, 90, 30, 0], [30, 40, 60, 20, 0],
                     [5, 10, 70, 40, 0],  # Partly outside (top left).
                     [170, 140, 60, 50, 0],  # Partly outside (bottom right).
                     [90, 60, 2, 1, 0], [60.5, 81.25, 120.0, 14.5, 0]])
    rois[:, 4] = theta + np.arange(len(rois)) * 0.05 * (theta != 0)
    with jax.enable_x64(True):
      got = self.align(jnp.asarray(features), jnp.asarray(rois),
                       output_size=(3, 5), spatial_scale=1 / 16,
                       sampling_ratio=2)
    ref = _rotated_roi_align_reference(features, rois, 3, 5, 1 / 16, 2)
    np.testing.assert_allclose(got, ref, atol=1e-12)

  def test_zero_angle_is_roi_align_of_the_corners(self):
    rng = np.random.default_rng(8)
    features = jnp.asarray(rng.standard_normal((8, 8, 2)), jnp.float32)
    aabb = jnp.array([[4., 6, 60, 30], [-10, 20, 40, 140]])
    rboxes = B.aabb_to_rbox(aabb)
    for aligned in (True, False):
      got = self.align(features, rboxes, output_size=(4, 3),
                       spatial_scale=1 / 8, aligned=aligned)
      want = roi_align.roi_align(features, aabb, output_size=(4, 3),
                                 spatial_scale=1 / 8, aligned=aligned)
      np.testing.assert_allclose(got, want, atol=1e-5)

  def test_a_half_turn_reverses_the_bins(self):
    # theta + pi is the same rectangle walked from the opposite corner.
    features = jnp.asarray(np.random.default_rng(9).standard_normal(
        (10, 10, 1)), jnp.float32)
    box = jnp.array([[70., 80, 64, 24, 0.4]])
    a = self.align(features, box, output_size=(2, 4), spatial_scale=1 / 16)
    b = self.align(features, box.at[0, 4].add(np.pi), output_size=(2, 4),
                   spatial_scale=1 / 16)
    np.testing.assert_allclose(a, b[:, ::-1, ::-1], atol=1e-5)

  def test_bad_shapes(self):
    with self.assertRaisesRegex(ValueError, r'rois must be \[R, 5\]'):
      roi_align.rotated_roi_align(jnp.ones((4, 4, 1)), jnp.ones((2, 4)),
                                  output_size=(2, 2), spatial_scale=1.0)
    with self.assertRaisesRegex(ValueError, r'features must be \[H, W, C\]'):
      roi_align.rotated_roi_align(jnp.ones((4, 4)), jnp.ones((2, 5)),
                                  output_size=(2, 2), spatial_scale=1.0)


if __name__ == '__main__':
  absltest.main()
