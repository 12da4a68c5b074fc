"""`moving_fashion`: our TFDS dataset of Moving Fashion-MNIST clips, generated offline.

Each clip shows two real Fashion-MNIST items of different classes on a black frame: one moves at
constant speed along a random direction and bounces off the edges, the other stands still. The
label is the class of the item that moves. Any single frame shows both items and cannot tell
which one moves, so the label needs time (motion) as well as recognition (appearance).

Train clips use Fashion-MNIST's train images, test clips its test images. The images come from
the idx files in data.manual_dir (Debian's `dataset-fashion-mnist` folder by default), so
preparing needs no download. Settings are builder configs, like `moving_digits`.
"""

import math

import numpy as np

from dcrn_jax.data import idx, render, tfds_prepare
from dcrn_jax.data.local_builder import LocalBuilder
from dcrn_jax.data.tf_import import tfds
from dcrn_jax.errors import UserError

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
_SPLIT_INDEX = {"train": 0, "test": 1}


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


def item_size(image_size: int) -> int:
  """Side of an item: 28 px (Fashion-MNIST's own size) in 64 px frames, proportional otherwise."""
  return max(8, round(28 * image_size / 64))


def render_clip(rng: np.random.Generator, images: np.ndarray, classes: np.ndarray, *,
                num_frames: int, image_size: int) -> dict:
  """Draws one clip.

  Args:
    rng: the clip's own generator.
    images: uint8 (N, d, d) items of this split, d = item_size(image_size).
    classes: int64 (N,) their classes.
    num_frames, image_size: clip shape T and S.

  Returns:
    video uint8 (T, S, S, 1); label: class of the moving item; classes, source_index int64 (2,)
    (moving item first); positions float32 (T, 2, 2), top-left (row, col) per frame.
  """
  pair = rng.choice(len(CLASS_NAMES), size=2, replace=False)
  source_index = np.array([rng.choice(np.flatnonzero(classes == c)) for c in pair])
  size = images.shape[1]
  max_pos = image_size - size
  angle = rng.uniform(0, 2 * math.pi)
  speed = rng.uniform(*render.speed_range(image_size))
  pos = rng.uniform(0, max_pos, size=(2, 2))
  # The second item stands still: zero velocity is never reflected.
  vel = np.array([[-math.sin(angle), math.cos(angle)], [0.0, 0.0]]) * speed
  video = np.zeros((num_frames, image_size, image_size), np.uint8)
  positions = np.zeros((num_frames, 2, 2), np.float32)
  for t in range(num_frames):
    positions[t] = pos
    for (row, col), src in zip(np.rint(pos).astype(int), source_index):
      window = video[t, row:row + size, col:col + size]
      np.maximum(window, images[src], out=window)  # Overlapping items combine with max().
    pos, vel = render.bounce_step(pos, vel, max_pos)
  return {"video": video[..., None], "label": int(pair[0]),
          "classes": pair.astype(np.int64), "source_index": source_index.astype(np.int64),
          "positions": positions}


class MovingFashion(LocalBuilder, tfds.core.GeneratorBasedBuilder):
  """Moving Fashion-MNIST clips; the label is the class of the one moving item.

  Features: video uint8 (T, S, S, 1); label (10 Fashion-MNIST classes); classes, source_index
  int64 (2,) (moving item first); positions float32 (T, 2, 2).
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release."}
  BUILDER_CONFIGS = [MovingFashionConfig()]

  def __init__(self, *, idx_dir: str = tfds_prepare.DEBIAN_FASHION_MNIST, **kwargs):
    self._idx_dir = idx_dir
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "video": tfds.features.Tensor(
                shape=(c.num_frames, c.image_size, c.image_size, 1), dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
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
    images = images[..., 0]
    size = item_size(c.image_size)
    if size != images.shape[1]:
      images = np.clip(np.rint(render.resize_bilinear(images / 255.0, size) * 255), 0, 255)
      images = images.astype(np.uint8)
    for index in range(num_examples):
      rng = np.random.default_rng([c.seed, _SPLIT_INDEX[split], index])
      yield index, render_clip(rng, images, classes, num_frames=c.num_frames,
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
  idx_dir = tfds_prepare.fashion_idx_dir(d)
  builder = MovingFashion(config=config, data_dir=d.data_dir or None, idx_dir=idx_dir)
  if not builder.is_prepared() and not idx.has_files(idx_dir):
    raise UserError(
        f"moving_fashion is not prepared in {builder.data_dir} and is drawn from Fashion-MNIST "
        f"images, but {idx_dir} lacks their idx files. `apt-get install dataset-fashion-mnist`, "
        "or set data.manual_dir to a folder with the four idx files.")
  return builder
