"""Sprites bouncing inside a square frame: the drawing moving_digits and moving_fashion share.

Numpy only. A sprite moves at constant velocity and is reflected off the frame edges; sprites are
drawn as they are (uint8 intensities on black) and overlapping ones combine with max().
"""

import numpy as np


def speed_range(image_size: int) -> tuple[float, float]:
  """Speeds in px/frame: 2 to 4 at 64 px, proportional to the frame size."""
  return 2 * image_size / 64, 4 * image_size / 64


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resizing with aligned corners: float (N, h, w) -> float64 (N, size, size)."""
  def weights(n):
    coords = np.linspace(0, n - 1, size)
    low = np.minimum(np.floor(coords).astype(int), n - 2)
    return low, coords - low

  rows, row_frac = weights(images.shape[1])
  cols, col_frac = weights(images.shape[2])
  x = images[:, rows] * (1 - row_frac)[:, None] + images[:, rows + 1] * row_frac[:, None]
  return x[:, :, cols] * (1 - col_frac) + x[:, :, cols + 1] * col_frac


EDGES = ("reflect", "clamp")


def bounce_step(pos: np.ndarray, vel: np.ndarray, max_pos: float, edge: str = "reflect"):
  """One frame of motion in the box [0, max_pos]^2: returns the new (pos, vel), float (k, 2).

  A position that leaves the box comes back inside and that velocity component flips: mirrored
  about the edge (edge='reflect'; one reflection suffices because a step is far shorter than
  the free range), or stopped on the edge (edge='clamp', the rule of the Moving MNIST generator
  that OpenSTL uses).
  """
  pos = pos + vel
  low, high = pos < 0, pos > max_pos
  if edge == "clamp":
    pos = np.clip(pos, 0, max_pos)
  else:
    pos = np.where(low, -pos, np.where(high, 2 * max_pos - pos, pos))
  return pos, np.where(low | high, -vel, vel)


def draw(sprites: np.ndarray, pos: np.ndarray, vel: np.ndarray, *, num_frames: int,
         image_size: int, edge: str = "reflect") -> tuple[np.ndarray, np.ndarray]:
  """Draws k sprites moving and bouncing for num_frames frames.

  Args:
    sprites: uint8 (k, d, d), d <= image_size.
    pos: float (k, 2) top-left (row, col) of each sprite at the first frame, in [0, S - d].
    vel: float (k, 2) its (row, col) step per frame; a zero velocity stands still.
    num_frames, image_size: clip shape T and S.
    edge: what a sprite does at the frame edge (`bounce_step`).

  Returns:
    video uint8 (T, S, S, 1) and positions float32 (T, k, 2), the top-left of each sprite in
    each frame (drawn at the rounded position).
  """
  size = sprites.shape[1]
  max_pos = image_size - size
  video = np.zeros((num_frames, image_size, image_size), np.uint8)
  positions = np.zeros((num_frames, len(sprites), 2), np.float32)
  for t in range(num_frames):
    positions[t] = pos
    for (row, col), sprite in zip(np.rint(pos).astype(int), sprites):
      window = video[t, row:row + size, col:col + size]
      np.maximum(window, sprite, out=window)  # Overlapping sprites combine with max().
    pos, vel = bounce_step(pos, vel, max_pos, edge)
  return video[..., None], positions
