r"""Writes a dataset's train and test splits as a folder of images or an .npz.

    python -m launch.export_dataset --dataset=digits --format=folder \
        --out=/tmp/digits_folder
    python -m launch.export_dataset --dataset=digits --format=npz \
        --out=/tmp/digits.npz

The output is read back by `--config.dataset=folder:DIR` or `npz:FILE`
(`cil.data.custom`): a way to try those forms on a built-in set (any
`cil.data` name or spec; `--data_dir`/`--manual_dir` as the runners'), or
to hand a prepared set to another program. Prints the spec to use.
"""

from absl import flags

from cil import data
from cil.data import custom
from launch import common

_DATASET = flags.DEFINE_string('dataset', 'digits', 'A cil.data dataset.')
_FORMAT = flags.DEFINE_enum('format', 'folder', ['folder', 'npz'],
                            'folder: out/{train,test}/<class>/*.png; npz: '
                            'x_train, y_train, x_test, y_test, class_names.')
_OUT = flags.DEFINE_string('out', None, 'Output folder (or .npz file).',
                           required=True)
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'As --config.data_dir.')
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None,
                                  'As --config.manual_dir.')


def run():
  kw = {'data_dir': _DATA_DIR.value, 'manual_dir': _MANUAL_DIR.value}
  train = data.load(_DATASET.value, 'train', **kw)
  test = data.load(_DATASET.value, 'test', **kw)
  spec = custom.export(train, test, _OUT.value, fmt=_FORMAT.value)
  print(f'Wrote {len(train)} train and {len(test)} test images of '
        f'{train.num_classes} classes; read them with '
        f'--config.dataset={spec}')


if __name__ == '__main__':
  common.launch(run)
