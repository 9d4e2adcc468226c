r"""Writes a synthetic long-tailed harbour-ship dataset (DOTA layout).

    python -m launch.make_ships --out data/ships --images 200 --size 512 \
        --seed 0

Writes `images/Pxxxx.png`, `labelTxt/Pxxxx.txt` and `meta.json` (settings
and per-class instance counts) to --out; see cil.detection.synthetic.
"""

from absl import app
from absl import flags

from cil.detection import synthetic

_OUT = flags.DEFINE_string('out', None, 'Output folder.')
_IMAGES = flags.DEFINE_integer('images', 100, 'Number of images.')
_SIZE = flags.DEFINE_integer('size', 512, 'Image side in pixels.')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed.')
_SHIP_SCALE = flags.DEFINE_float(
    'ship_scale', None, 'Ship size factor (default size / 512; 1.0 keeps '
    'the 512-pixel sizes, as a crop of a larger scene).')
flags.mark_flag_as_required('out')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  meta = synthetic.write_dataset(
      _OUT.value, images=_IMAGES.value, size=_SIZE.value, seed=_SEED.value,
      ship_scale=_SHIP_SCALE.value,
      progress=lambda i: print(f'\r{i}/{_IMAGES.value} images', end='',
                               flush=True))
  print()
  for name, count in meta['instances'].items():
    print(f'{name:10s} {count}')


if __name__ == '__main__':
  app.run(main)
