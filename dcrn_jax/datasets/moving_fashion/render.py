"""Pure-numpy rendering of `moving_fashion` clips (no TensorFlow; `builder.py` wraps it).

Each clip shows two real Fashion-MNIST items of different classes on a black frame: one moves at
constant speed along a random direction and bounces off the edges, the other stands still. The
label is the class of the item that moves. Any single frame shows both items and cannot tell
which one moves, so the label needs time (motion) as well as recognition (appearance).
"""

from collections.abc import Iterator
import math

import numpy as np

from dcrn_jax.datasets import bouncing

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
SPLITS = ("train", "test")


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
  max_pos = image_size - images.shape[1]
  angle = rng.uniform(0, 2 * math.pi)
  speed = rng.uniform(*bouncing.speed_range(image_size))
  pos = rng.uniform(0, max_pos, size=(2, 2))
  # The second item stands still: zero velocity is never reflected.
  vel = np.array([[-math.sin(angle), math.cos(angle)], [0.0, 0.0]]) * speed
  video, positions = bouncing.draw(images[source_index], pos, vel, num_frames=num_frames,
                                   image_size=image_size)
  return {"video": video, "label": int(pair[0]),
          "classes": pair.astype(np.int64), "source_index": source_index.astype(np.int64),
          "positions": positions}


def generate_examples(split: str, num_examples: int, images: np.ndarray, classes: np.ndarray, *,
                      seed: int, num_frames: int,
                      image_size: int) -> Iterator[tuple[int, dict]]:
  """Yields (index, example) for index in [0, num_examples); see `render_clip`.

  Args:
    split: 'train' or 'test'.
    num_examples: clips to draw.
    images: uint8 (N, 28, 28) Fashion-MNIST images of this split; classes int (N,) theirs.
    seed, num_frames, image_size: the builder config's fields.

  Example i depends only on (seed, split, i) and the images, so any subset can be redrawn alone.
  """
  size = item_size(image_size)
  if size != images.shape[1]:
    images = np.clip(np.rint(bouncing.resize_bilinear(images / 255.0, size) * 255), 0, 255)
    images = images.astype(np.uint8)
  for index in range(num_examples):
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    yield index, render_clip(rng, images, classes, num_frames=num_frames, image_size=image_size)
