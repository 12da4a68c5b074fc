"""Pure-numpy rendering of `moving_digits` clips (no TensorFlow; `builder.py` wraps it).

A clip shows one or two real handwritten digits (scikit-learn's bundled 8x8 `load_digits`
images, upscaled) moving at constant speed along one of 8 compass directions and bouncing off
the frame edges. The label is a direction, so a single frame cannot predict it.
"""

from collections.abc import Iterator
import math

import numpy as np

from dcrn_jax.datasets import bouncing

DIRECTION_NAMES = ("east", "north_east", "north", "north_west", "west", "south_west", "south",
                   "south_east")
SPLITS = ("train", "test")
NUM_DIGIT_CLASSES = 10
# Fixed, so a source image is a test image under every config and seed.
_PARTITION_SEED = 8_8_1797
_TRAIN_FRACTION = 0.8


def digit_size(image_size: int) -> int:
  """Side of an upscaled digit: 3/8 of the frame (24 px in 64 px frames)."""
  return max(4, round(image_size * 3 / 8))


def direction_vectors() -> np.ndarray:
  """Unit (row, col) steps of the 8 directions, float64 (8, 2); north is decreasing row."""
  angles = np.arange(8) * (math.pi / 4)
  # Rounding turns cos(90 deg) = 6e-17 into an exact 0, so straight moves stay on one axis.
  return np.round(np.stack([-np.sin(angles), np.cos(angles)], axis=1), 12)


def load_digit_bank(image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """All 1797 scikit-learn digits, upscaled for `image_size` frames.

  Returns:
    images: uint8 (1797, d, d) with d = digit_size(image_size), values 0..255.
    classes: int64 (1797,) digit classes 0..9.
  """
  # Imported here: scikit-learn is slow to import and only dataset preparation needs it.
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  images = bouncing.resize_bilinear(digits.images / 16.0, digit_size(image_size))
  return (np.clip(np.rint(images * 255), 0, 255).astype(np.uint8),
          digits.target.astype(np.int64))


def split_sources(classes: np.ndarray, split: str) -> np.ndarray:
  """Sorted indices of the source images of `split`: a fixed ~80/20 partition per class.

  Args:
    classes: int (N,) digit class of every source image.
    split: 'train' or 'test'; the two sets are disjoint and cover all N images.
  """
  rng = np.random.default_rng(_PARTITION_SEED)
  chosen = []
  for c in range(NUM_DIGIT_CLASSES):
    members = rng.permutation(np.flatnonzero(classes == c))
    num_train = round(len(members) * _TRAIN_FRACTION)
    chosen.append(members[:num_train] if split == "train" else members[num_train:])
  return np.sort(np.concatenate(chosen))


def render_example(rng: np.random.Generator, bank: np.ndarray, classes: np.ndarray,
                   sources: np.ndarray, *, num_frames: int, image_size: int,
                   num_digits: int) -> dict[str, np.ndarray | int]:
  """Draws one clip.

  Args:
    rng: the example's own generator (all randomness of the clip comes from it).
    bank, classes: from `load_digit_bank`.
    sources: indices into `bank` this split may use.
    num_frames, image_size: clip shape T and S.
    num_digits: 1 (label: its initial direction) or 2 (two different digit classes; label:
      initial direction of the digit with the smaller class).

  Returns:
    video uint8 (T, S, S, 1); label int in [0, 8); digits, directions, source_index int64
    (num_digits,); positions float32 (T, num_digits, 2), top-left (row, col) per frame.
  """
  if num_digits == 1:
    source_index = rng.choice(sources, size=1)
  else:
    digit_classes = rng.choice(NUM_DIGIT_CLASSES, size=num_digits, replace=False)
    source_index = np.array([rng.choice(sources[classes[sources] == c]) for c in digit_classes])
  max_pos = image_size - bank.shape[1]
  directions = rng.integers(0, 8, size=num_digits)
  speeds = rng.uniform(*bouncing.speed_range(image_size), size=num_digits)
  pos = rng.uniform(0, max_pos, size=(num_digits, 2))
  vel = speeds[:, None] * direction_vectors()[directions]
  video, positions = bouncing.draw(bank[source_index], pos, vel, num_frames=num_frames,
                                   image_size=image_size)
  digits = classes[source_index]
  return {
      "video": video,
      "label": int(directions[np.argmin(digits)]),
      "digits": digits.astype(np.int64),
      "directions": directions.astype(np.int64),
      "source_index": source_index.astype(np.int64),
      "positions": positions,
  }


def generate_examples(split: str, num_examples: int, *, seed: int, num_frames: int,
                      image_size: int, num_digits: int) -> Iterator[tuple[int, dict]]:
  """Yields (index, example) for index in [0, num_examples); see `render_example`.

  Example i depends only on (seed, split, i), so any subset can be regenerated alone.
  """
  bank, classes = load_digit_bank(image_size)
  sources = split_sources(classes, split)
  for index in range(num_examples):
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    yield index, render_example(rng, bank, classes, sources, num_frames=num_frames,
                                image_size=image_size, num_digits=num_digits)
