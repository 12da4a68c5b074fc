"""Sequences for forecasting, drawn the way OpenSTL's Moving MNIST generator draws them (numpy).

OpenSTL (the PyTorch benchmark of spatio-temporal forecasting) makes its Moving MNIST and Moving
Fashion-MNIST training sequences on the fly: each of two 28x28 items starts at a uniform position,
moves along a uniform direction at 0.1 of its free range per frame (3.6 px at 64 px), stops on an
edge and turns back when it reaches one, and overlapping items combine with max(). `render`
draws the same process with any sprites: our `moving_fashion_seq` uses Fashion-MNIST's images,
`moving_digits_seq` scikit-learn's handwritten digits (upscaled, `moving_digits.render`).

Sequence i of a set depends only on (seed, set, i): any sequence can be redrawn alone, a training
epoch can be redrawn from its number, and a resumed run sees the very same sequences.
"""

import math

import numpy as np

from dcrn_jax.datasets import bouncing

# Per-frame step as a fraction of the free range (image_size - sprite size), as in OpenSTL.
STEP_FRACTION = 0.1
TRAIN, TEST = 0, 1  # The `set` part of a sequence's seed.


def render(rng: np.random.Generator, sprites: np.ndarray, *, num_items: int, num_frames: int,
           image_size: int) -> np.ndarray:
  """Draws one sequence of `num_items` sprites picked uniformly from `sprites`.

  Args:
    rng: the sequence's own generator.
    sprites: uint8 (N, d, d), d < image_size.
    num_items, num_frames, image_size: items per sequence, frames T and frame side S.

  Returns:
    uint8 (T, S, S, 1).
  """
  size = sprites.shape[1]
  max_pos = image_size - size
  chosen = rng.integers(0, len(sprites), size=num_items)
  pos = rng.uniform(0, max_pos, size=(num_items, 2))
  angle = rng.uniform(0, 2 * math.pi, size=num_items)
  vel = np.stack([np.sin(angle), np.cos(angle)], axis=1) * (STEP_FRACTION * max_pos)
  video, _ = bouncing.draw(sprites[chosen], pos, vel, num_frames=num_frames,
                           image_size=image_size, edge="clamp")
  return video

