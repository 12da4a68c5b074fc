"""Small test videos written with PyAV, whose frames say which frame they are.

Frame i of a clip has brightness LEVEL * i (mod 256 after 28 frames) in its right half and half
that in its left half, so a decoded clip tells which frames were sampled and whether it was
flipped. Codecs are lossless per container, so decoded brightness is exact (to rounding).
"""

import os

import numpy as np

LEVEL = 9  # Brightness step per frame: 28 frames stay below 255.
H, W = 36, 48
CODECS = {".mp4": ("libx264", {"qp": "0"}), ".avi": ("ffv1", {}), ".mkv": ("ffv1", {}),
          ".webm": ("libvpx-vp9", {"lossless": "1"})}


def frame_image(i: int, height: int = H, width: int = W) -> np.ndarray:
  """uint8 (height, width, 3): frame i of every test clip."""
  frame = np.full((height, width, 3), (LEVEL * i) % 256, np.uint8)
  frame[:, : width // 2] //= 2  # A darker left half: a flip shows.
  return frame


def write_clip(path, num_frames: int, *, height: int = H, width: int = W, rate: int = 25,
               codec: str = "", options=None, frames=None) -> str:
  """Writes a clip of frame_image(0..num_frames-1) (or of `frames`, uint8 (T, H, W, 3))."""
  import av  # pylint: disable=g-import-not-at-top
  default_codec, default_options = CODECS[os.path.splitext(str(path))[1].lower()]
  with av.open(str(path), "w") as container:
    stream = container.add_stream(codec or default_codec, rate=rate,
                                  options=default_options if options is None else options)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    for i in range(num_frames):
      image = frame_image(i, height, width) if frames is None else frames[i]
      for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return str(path)


def frame_numbers(clip) -> np.ndarray:
  """The source frame index of each frame of a decoded clip, float (T, H, W, 3) in [0, 1]."""
  brighter_half = clip.mean(axis=(1, 3)).max(axis=1)  # The brightest column.
  return np.rint(brighter_half * 255 / LEVEL).astype(int)
