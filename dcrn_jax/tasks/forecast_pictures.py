"""Pictures of forecasts, written by `--mode=eval` of a forecasting run (numpy, Pillow, matplotlib).

    WORKDIR/forecast_examples.png            one block of three rows per test sequence: its
                                             input frames, the true future frames, the
                                             predicted ones (prediction clipped to [0, 1])
    WORKDIR/forecast_examples/<id>.gif       one animation per sequence: the true frames on the
                                             left, the prediction on the right (the inputs on
                                             both sides while they play), looping
    WORKDIR/forecast_mse_per_step.png        MSE against the horizon (eval.json's mse_per_step),
                                             the model's and the last-frame baseline's (matplotlib)

`<id>` is the sequence's example_id, its index in the eval split. Frames are (H, W, 1) grey or
(H, W, 3) colour in [0, 1]; frames smaller than 48 px are enlarged (nearest) to be seen.
"""

import os

import numpy as np
from PIL import Image, ImageDraw

PNG_NAME = "forecast_examples.png"
PER_STEP_NAME = "forecast_mse_per_step.png"
GIF_FOLDER = "forecast_examples"
_GAP = 2  # pixels between frames
_LABEL_WIDTH = 72
_GIF_FRAME_MS = 200
_MIN_SIDE = 48


def _to_uint8(frames: np.ndarray, scale: int) -> np.ndarray:
  """float (T, H, W, C) in [0, 1] -> uint8 (T, H*scale, W*scale, 3)."""
  x = np.clip(np.rint(np.asarray(frames, np.float64) * 255), 0, 255).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  elif x.shape[-1] != 3:
    x = np.repeat(x[..., :1], 3, axis=-1)  # Show the first channel of other data.
  return x.repeat(scale, axis=1).repeat(scale, axis=2)


def _scale(side: int) -> int:
  return max(1, -(-_MIN_SIDE // side))


def strip_png(inputs: np.ndarray, predictions: np.ndarray, targets: np.ndarray | None = None,
              title: str = "") -> Image.Image:
  """One sequence as rows of frames: its inputs (Tin, H, W, C), the true future frames (Tout,
  H, W, C; the row is left out when targets is None) and the predicted ones; `title` labels
  the first row."""
  rows = [("input", inputs)] + ([("truth", targets)] if targets is not None else []) + [
      ("prediction", predictions)]
  h, w = inputs.shape[1:3]
  s = _scale(min(h, w))
  fh, fw = h * s, w * s
  cols = max(len(frames) for _, frames in rows)
  canvas = Image.new("RGB", (_LABEL_WIDTH + cols * (fw + _GAP), len(rows) * (fh + _GAP) + _GAP),
                     (255, 255, 255))
  draw = ImageDraw.Draw(canvas)
  for r, (name, frames) in enumerate(rows):
    top = r * (fh + _GAP)
    draw.text((4, top + fh // 2 - 6), f"{title} {name}" if title and r == 0 else name,
              fill=(0, 0, 0))
    # Future rows start under the first input column, so frames line up by horizon step.
    for t, frame in enumerate(_to_uint8(frames, s)):
      canvas.paste(Image.fromarray(frame), (_LABEL_WIDTH + t * (fw + _GAP), top))
  return canvas


def examples_png(examples: dict) -> Image.Image:
  """The forecast_examples.png picture of `examples` ('inputs' (k, Tin, H, W, C), 'targets' and
  'predictions' (k, Tout, H, W, C), 'example_id' (k,)): one `strip_png` per sequence."""
  strips = [strip_png(examples["inputs"][i], examples["predictions"][i],
                      examples["targets"][i], f"#{int(examples['example_id'][i])}")
            for i in range(len(examples["inputs"]))]
  block = strips[0].height + 2 * _GAP
  canvas = Image.new("RGB", (strips[0].width, len(strips) * block), (255, 255, 255))
  for i, strip in enumerate(strips):
    canvas.paste(strip, (0, i * block))
  return canvas


def sequence_gif(inputs: np.ndarray, targets: np.ndarray | None,
                 predictions: np.ndarray) -> list[Image.Image]:
  """Animation frames of one sequence: (truth | prediction) side by side, the inputs on both
  sides first; without targets (None), the inputs then the prediction alone. inputs (Tin, H,
  W, C), targets and predictions (Tout, H, W, C)."""
  s = _scale(min(inputs.shape[1:3]))
  right = _to_uint8(np.concatenate([inputs, predictions]), s)
  if targets is None:
    return [Image.fromarray(frame) for frame in right]
  left = _to_uint8(np.concatenate([inputs, targets]), s)
  gap = np.full(left.shape[:2] + (_GAP * 2, 3), 255, np.uint8)
  return [Image.fromarray(np.concatenate([a, g, b], axis=1))
          for a, g, b in zip(left, gap, right)]


def save_animation(frames: list[Image.Image], path: str) -> None:
  """Writes looping animation frames to `path` (.gif, or .webp written lossless), whole under
  a temporary name and then renamed."""
  fmt = "WEBP" if path.lower().endswith(".webp") else "GIF"
  extra = {"lossless": True} if fmt == "WEBP" else {}
  frames[0].save(path + ".tmp", format=fmt, save_all=True, append_images=frames[1:],
                 duration=_GIF_FRAME_MS, loop=0, **extra)
  os.replace(path + ".tmp", path)


def write(workdir: str, examples: dict) -> list[str]:
  """Writes forecast_examples.png and one GIF per sequence into workdir; returns their paths.

  Each file is written whole under a temporary name and renamed, so a kill never leaves half a
  picture behind.
  """
  paths = []
  png = os.path.join(workdir, PNG_NAME)
  examples_png(examples).save(png + ".tmp", format="PNG")
  os.replace(png + ".tmp", png)
  paths.append(png)
  folder = os.path.join(workdir, GIF_FOLDER)
  os.makedirs(folder, exist_ok=True)
  for i, example_id in enumerate(examples["example_id"]):
    frames = sequence_gif(examples["inputs"][i], examples["targets"][i],
                          examples["predictions"][i])
    path = os.path.join(folder, f"{int(example_id)}.gif")
    save_animation(frames, path)
    paths.append(path)
  return paths


def mse_per_step_png(workdir: str, results: dict) -> str:
  """Writes forecast_mse_per_step.png from eval results ('mse_per_step',
  'baseline_last_frame_mse_per_step', 'step', 'num_examples'); returns its path."""
  # The object API, not pyplot: no global figure state, no display backend needed.
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  fig = Figure(figsize=(5, 3.2), dpi=120, layout="constrained")
  ax = fig.subplots()
  for key, label, style in (("mse_per_step", "model", "o-"),
                            ("baseline_last_frame_mse_per_step", "last input frame repeated",
                             "s--")):
    values = results[key]
    ax.plot(range(1, len(values) + 1), values, style, label=label, markersize=4)
  ax.set_xlabel("frames ahead")
  ax.set_ylabel("MSE per frame (sum over pixels)")
  ax.set_ylim(bottom=0)
  ax.set_title(f"step {results['step']}, {results['num_examples']} test sequences", fontsize=9)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  path = os.path.join(workdir, PER_STEP_NAME)
  fig.savefig(path + ".tmp", format="png")
  os.replace(path + ".tmp", path)
  return path
