"""Tests for cil.detection.io: DOTA text and HRSC2016 XML.
"""

import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np

from cil.detection import io as det_io


class IoTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

  def _write(self, name, text):
    path = os.path.join(self.dir, name)
    with open(path, 'w') as f:
      f.write(text)
    return path

  def test_dota_labels(self):
    path = self._write('a.txt', 'imagesource:GoogleEarth\ngsd:0.6\n'
                       '6 18 14 18 14 22 6 22 tug 0\n'
                       '0 0 4 0 4 2 0 2 tanker 1\n'
                       '1 1 3 1 3 2 1 2 yacht\n')
    gt = det_io.read_dota(path)
    np.testing.assert_allclose(gt.boxes[0], [10, 20, 8, 4, 0])
    self.assertEqual(list(gt.labels), ['tug', 'tanker', 'yacht'])
    self.assertEqual(list(gt.difficult), [False, True, False])
    det_io.write_dota(os.path.join(self.dir, 'b.txt'), gt)
    back = det_io.read_dota(os.path.join(self.dir, 'b.txt'))
    np.testing.assert_allclose(back.boxes, gt.boxes, atol=1e-2)

  def test_malformed_lines_name_file_and_line(self):
    path = self._write('bad.txt', '6 18 14 18 14 22 6 22 tug 0\n'
                       '6 18 14 18 14 22 6 tug\n')
    with self.assertRaisesRegex(ValueError, r'bad\.txt:2: expected 9 or 10'):
      det_io.read_dota(path)
    path = self._write('nan.txt', '6 18 x 18 14 22 6 22 tug 0\n')
    with self.assertRaisesRegex(ValueError, r'nan\.txt:1: corner'):
      det_io.read_dota(path)
    path = self._write('flat.txt', '0 0 4 0 4 0 0 0 tug 0\n')
    with self.assertRaisesRegex(ValueError, r'flat\.txt:1: box of non-pos'):
      det_io.read_dota(path)
    path = self._write('score.txt', '6 18 14 18 14 22 6 22 tug high\n')
    with self.assertRaisesRegex(ValueError, r'score\.txt:1: bad score'):
      det_io.read_detections(path)
    path = self._write('nanscore.txt', '6 18 14 18 14 22 6 22 tug nan\n')
    with self.assertRaisesRegex(ValueError,
                                r'nanscore\.txt:1: the score must be finite'):
      det_io.read_detections(path)

  def test_hrsc_xml(self):
    obj = ('<HRSC_Object><Class_ID>100000005</Class_ID>'
           '<difficult>{d}</difficult><mbox_cx>10</mbox_cx>'
           '<mbox_cy>20</mbox_cy><mbox_w>{w}</mbox_w><mbox_h>4</mbox_h>'
           '<mbox_ang>0.5</mbox_ang></HRSC_Object>')
    path = self._write('h.xml', '<HRSC_Image><HRSC_Objects>'
                       + obj.format(d=0, w=8) + obj.format(d=1, w=9)
                       + '</HRSC_Objects></HRSC_Image>')
    gt = det_io.read_hrsc(path, class_names={'100000005': 'carrier'})
    np.testing.assert_allclose(gt.boxes[0], [10, 20, 8, 4, 0.5])
    self.assertEqual(list(gt.labels), ['carrier', 'carrier'])
    self.assertEqual(list(gt.difficult), [False, True])
    bad = self._write('z.xml', '<HRSC_Image>' + obj.format(d=0, w=0)
                      + '</HRSC_Image>')
    with self.assertRaisesRegex(ValueError, 'z.xml: HRSC_Object 0: box of'):
      det_io.read_hrsc(bad)
    with self.assertRaisesRegex(ValueError, 'not well-formed'):
      det_io.read_hrsc(self._write('y.xml', '<HRSC_Image>'))
    missing = self._write('m.xml', '<a><HRSC_Object><mbox_cx>1</mbox_cx>'
                          '</HRSC_Object></a>')
    with self.assertRaisesRegex(ValueError, 'missing <mbox_cy>'):
      det_io.read_hrsc(missing)

  def test_missing_folder(self):
    with self.assertRaisesRegex(ValueError, 'does not exist'):
      det_io.read_folder(os.path.join(self.dir, 'nope'))


if __name__ == '__main__':
  absltest.main()
