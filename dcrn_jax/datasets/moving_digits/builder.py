"""The `moving_digits` TFDS builder: one builder config per setting of the `data` fields.

`render.py` draws the clips (numpy); this file only describes and writes them. Preparing needs no
download. Settings live side by side in one data dir: <data_dir>/moving_digits/<config>/<version>/.
"""

import numpy as np

from dcrn_jax.data.tf_import import tfds
from dcrn_jax.datasets.local_builder import LocalBuilder
from dcrn_jax.datasets.moving_digits import render
from dcrn_jax.errors import UserError

# Stored in every prepared copy's dataset_info.json: changing it changes the prepared files.
DESCRIPTION = (
    "`moving_digits`: our TFDS dataset of moving handwritten-digit clips, generated offline.\n"
    "\n"
    "Preparing it needs no download: the digits ship inside scikit-learn and `render` draws the\n"
    "clips. Each combination of settings is its own builder config, so several can live side by "
    "side\nin one data dir: <data_dir>/moving_digits/<config name>/<version>/.\n")


class MovingDigitsConfig(tfds.core.BuilderConfig):
  """Clip shape and content; the name encodes every field."""

  def __init__(self, *, num_frames: int = 10, image_size: int = 64, num_digits: int = 1,
               num_train: int = 8000, num_test: int = 1000, seed: int = 0):
    super().__init__(
        name=(f"f{num_frames}_s{image_size}_d{num_digits}_tr{num_train}_te{num_test}"
              f"_seed{seed}"),
        description=(f"{num_frames} frames of {image_size}x{image_size}, {num_digits} digit(s), "
                     f"{num_train} train / {num_test} test clips, seed {seed}."))
    self.num_frames = num_frames
    self.image_size = image_size
    self.num_digits = num_digits
    self.num_train = num_train
    self.num_test = num_test
    self.seed = seed


class MovingDigits(LocalBuilder, tfds.core.GeneratorBasedBuilder):
  """Moving-MNIST-style clips of scikit-learn's digits; the label is a motion direction.

  Features: video uint8 (T, S, S, 1); label (8 directions, see `render.DIRECTION_NAMES`);
  digits, directions, source_index int64 (num_digits,); positions float32 (T, num_digits, 2).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [MovingDigitsConfig()]

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    k = c.num_digits
    return tfds.core.DatasetInfo(
        builder=self,
        description=DESCRIPTION,
        features=tfds.features.FeaturesDict({
            # zlib: clips are mostly black, so this is small on disk and cheap to decode.
            "video": tfds.features.Tensor(
                shape=(c.num_frames, c.image_size, c.image_size, 1), dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.ClassLabel(names=render.DIRECTION_NAMES),
            "digits": tfds.features.Tensor(shape=(k,), dtype=np.int64),
            "directions": tfds.features.Tensor(shape=(k,), dtype=np.int64),
            "source_index": tfds.features.Tensor(shape=(k,), dtype=np.int64),
            "positions": tfds.features.Tensor(shape=(c.num_frames, k, 2), dtype=np.float32),
        }),
        supervised_keys=("video", "label"),
        # Examples are written in index order: the writer's shuffle would only cost time here,
        # since training shuffles anyway.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    return {"train": self._generate_examples("train", c.num_train),
            "test": self._generate_examples("test", c.num_test)}

  def _generate_examples(self, split: str, num_examples: int):
    c = self.builder_config
    yield from render.generate_examples(split, num_examples, seed=c.seed,
                                        num_frames=c.num_frames, image_size=c.image_size,
                                        num_digits=c.num_digits)


def make_config(data_config) -> MovingDigitsConfig:
  """The builder config for a `data` config's moving_digits fields (checked).

  The dataset seed stays 0: the data is a fixed dataset, and config.seed only orders it.
  """
  d = data_config
  if d.num_digits not in (1, 2):
    raise UserError(f"data.num_digits is {d.num_digits}; moving_digits supports 1 or 2.")
  if d.num_frames < 2:
    raise UserError(
        f"data.num_frames is {d.num_frames}; the label is a direction of motion, so use 2 or "
        "more frames (10 by default).")
  if d.image_size < 16:
    raise UserError(f"data.image_size is {d.image_size}; use 16 or more (64 by default).")
  for field in ("num_train_examples", "num_test_examples"):
    if d[field] < 1:
      raise UserError(f"data.{field} is {d[field]}; moving_digits needs at least 1.")
  return MovingDigitsConfig(num_frames=d.num_frames, image_size=d.image_size,
                            num_digits=d.num_digits, num_train=d.num_train_examples,
                            num_test=d.num_test_examples, seed=0)


def make_builder(data_config) -> MovingDigits:
  """The (maybe not yet prepared) builder for a `data` config, reading from data.data_dir."""
  config = make_config(data_config)
  # TFDS refuses a new config object named like a predefined one: reuse the predefined object.
  config = MovingDigits.builder_configs.get(config.name, config)
  return MovingDigits(config=config, data_dir=data_config.data_dir or None)
