"""The `moving_fashion` TFDS builder: Moving Fashion-MNIST clips drawn by `render.py`.

Train clips use Fashion-MNIST's train images, test clips its test images, read from the idx files
in data.manual_dir (Debian's `dataset-fashion-mnist` folder by default): preparing needs no
download. Settings are builder configs, like `moving_digits`.
"""

import numpy as np

from dcrn_jax.data.tf_import import tfds
from dcrn_jax.datasets.fashion_mnist import idx
from dcrn_jax.datasets.local_builder import LocalBuilder
from dcrn_jax.datasets.moving_fashion import render
from dcrn_jax.errors import UserError

# Stored in every prepared copy's dataset_info.json: changing it changes the prepared files.
DESCRIPTION = (
    "`moving_fashion`: our TFDS dataset of Moving Fashion-MNIST clips, generated offline.\n"
    "\n"
    "Each clip shows two real Fashion-MNIST items of different classes on a black frame: one "
    "moves at\nconstant speed along a random direction and bounces off the edges, the other "
    "stands still. The\nlabel is the class of the item that moves. Any single frame shows both "
    "items and cannot tell\nwhich one moves, so the label needs time (motion) as well as "
    "recognition (appearance).\n"
    "\n"
    "Train clips use Fashion-MNIST's train images, test clips its test images. The images come "
    "from\nthe idx files in data.manual_dir (Debian's `dataset-fashion-mnist` folder by default), "
    "so\npreparing needs no download. Settings are builder configs, like `moving_digits`.\n")


class MovingFashionConfig(tfds.core.BuilderConfig):
  """Clip shape and counts; the name encodes every field."""

  def __init__(self, *, num_frames: int = 10, image_size: int = 64, num_train: int = 8000,
               num_test: int = 1000, seed: int = 0):
    super().__init__(
        name=f"f{num_frames}_s{image_size}_tr{num_train}_te{num_test}_seed{seed}",
        description=(f"{num_frames} frames of {image_size}x{image_size}, {num_train} train / "
                     f"{num_test} test clips, seed {seed}."))
    self.num_frames = num_frames
    self.image_size = image_size
    self.num_train = num_train
    self.num_test = num_test
    self.seed = seed


class MovingFashion(LocalBuilder, tfds.core.GeneratorBasedBuilder):
  """Moving Fashion-MNIST clips; the label is the class of the one moving item.

  Features: video uint8 (T, S, S, 1); label (10 Fashion-MNIST classes); classes, source_index
  int64 (2,) (moving item first); positions float32 (T, 2, 2).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [MovingFashionConfig()]

  def __init__(self, *, idx_dir: str = idx.DEBIAN_FASHION_MNIST, **kwargs):
    self._idx_dir = idx_dir
    super().__init__(**kwargs)

  def check_sources(self) -> None:
    if not idx.has_files(self._idx_dir):
      raise UserError(
          f"moving_fashion is not prepared in {self.data_dir} and is drawn from Fashion-MNIST "
          f"images, but {self._idx_dir} lacks their idx files. `apt-get install "
          "dataset-fashion-mnist`, or set data.manual_dir to a folder with the four idx files.")

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=DESCRIPTION,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(
                shape=(c.num_frames, c.image_size, c.image_size, 1), dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.ClassLabel(names=render.CLASS_NAMES),
            "classes": tfds.features.Tensor(shape=(2,), dtype=np.int64),
            "source_index": tfds.features.Tensor(shape=(2,), dtype=np.int64),
            "positions": tfds.features.Tensor(shape=(c.num_frames, 2, 2), dtype=np.float32),
        }),
        supervised_keys=("video", "label"),
        disable_shuffling=True,  # Training shuffles anyway; see moving_digits.
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, num_examples: int):
    c = self.builder_config
    images, classes = idx.load_split(self._idx_dir, split)
    yield from render.generate_examples(split, num_examples, images[..., 0], classes,
                                        seed=c.seed, num_frames=c.num_frames,
                                        image_size=c.image_size)


def make_builder(data_config) -> MovingFashion:
  """The (maybe not yet prepared) builder for a `data` config, reading from data.data_dir."""
  d = data_config
  if d.num_frames < 2:
    raise UserError(f"data.num_frames is {d.num_frames}; the label needs motion, so use 2 or "
                    "more frames (10 by default).")
  if d.image_size < 32:
    raise UserError(f"data.image_size is {d.image_size}; moving_fashion needs 32 or more.")
  for field in ("num_train_examples", "num_test_examples"):
    if d[field] < 1:
      raise UserError(f"data.{field} is {d[field]}; moving_fashion needs at least 1.")
  config = MovingFashionConfig(num_frames=d.num_frames, image_size=d.image_size,
                               num_train=d.num_train_examples, num_test=d.num_test_examples)
  config = MovingFashion.builder_configs.get(config.name, config)
  return MovingFashion(config=config, data_dir=d.data_dir or None, idx_dir=idx.fashion_dir(d))
