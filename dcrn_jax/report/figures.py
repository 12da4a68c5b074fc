"""The report's pictures: matplotlib figures (PNG) and moving clips (animated WebP).

Every function writes one file and returns its name; matplotlib runs on its file-only backend
(Agg) so no display is needed, and each figure is closed once written.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from PIL import Image  # pylint: disable=g-import-not-at-top,wrong-import-position

DPI = 90
MAX_STRIP_FRAMES = 16  # Longer clips show this many evenly spaced frames (bars show all).


def _save(fig, folder: str, name: str) -> str:
  fig.savefig(os.path.join(folder, name), dpi=DPI, bbox_inches="tight")
  plt.close(fig)
  return name


def _series(records, split: str, key: str):
  points = [(r["step"], r[key]) for r in records
            if r.get("split") == split and isinstance(r.get(key), (int, float))]
  return tuple(zip(*points)) if points else ((), ())


def training_curves(records: list[dict], folder: str) -> str | None:
  """Train and test loss and accuracy, learning rate and gradient norm against the step, from
  metrics.jsonl records; None when there is no training record."""
  if not any(r.get("split") == "train" for r in records):
    return None
  panels = [("loss", "loss", ("train", "test")), ("accuracy", "accuracy", ("train", "test")),
            ("learning_rate", "learning rate", ("train",)),
            ("grad_norm", "gradient norm (before clipping)", ("train",))]
  panels = [p for p in panels if any(_series(records, s, p[0])[0] for s in p[2])]
  fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.8), squeeze=False)
  for ax, (key, title, splits) in zip(axes[0], panels):
    for split in splits:
      steps, values = _series(records, split, key)
      if steps:
        ax.plot(steps, values, marker="o" if split == "test" else None, markersize=3,
                label=split)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    if key in ("loss", "grad_norm") and _positive(records, key):
      ax.set_yscale("log")
    if len(splits) > 1:
      ax.legend(fontsize=8)
  fig.tight_layout()
  return _save(fig, folder, "curves.png")


def _positive(records, key):
  values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
  return values and min(values) > 0 and max(values) / min(values) > 20


def per_step_curves(series: dict[str, list[float]], folder: str) -> str | None:
  """Each `name: [value per forecast step]` list of eval.json against the step ahead."""
  if not series:
    return None
  fig, axes = plt.subplots(1, len(series), figsize=(3.6 * len(series), 2.8), squeeze=False)
  for ax, (name, values) in zip(axes[0], sorted(series.items())):
    ax.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=3)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("step ahead", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
  fig.tight_layout()
  return _save(fig, folder, "per_step.png")


def _display(frame: np.ndarray) -> np.ndarray:
  """(H, W, C) in any range -> (H, W) or (H, W, 3) in [0, 1] for imshow."""
  lo, hi = float(frame.min()), float(frame.max())
  if lo < 0.0 or hi > 1.0:  # Normalised inputs: stretch back to [0, 1] for display.
    frame = (frame - lo) / max(hi - lo, 1e-12)
  frame = np.clip(frame, 0.0, 1.0)
  return frame[..., 0] if frame.shape[-1] == 1 else frame[..., :3]


def animation(clip: np.ndarray, folder: str, name: str, size: int = 128,
              ms_per_frame: int = 150) -> str:
  """clip (T, H, W, C) -> an animated WebP that loops, frames scaled up to `size` pixels."""
  frames = []
  for frame in clip:
    pixels = np.uint8(np.round(_display(frame) * 255))
    image = Image.fromarray(pixels).convert("RGB")
    scale = max(1, size // max(image.size))
    frames.append(image.resize((image.width * scale, image.height * scale), Image.NEAREST))
  frames[0].save(os.path.join(folder, name), save_all=True, append_images=frames[1:],
                 duration=ms_per_frame, loop=0, lossless=True)
  return name


def still(image: np.ndarray, folder: str, name: str, size: int = 128) -> str:
  """image (H, W, C) -> a PNG scaled up to `size` pixels."""
  pixels = Image.fromarray(np.uint8(np.round(_display(image) * 255))).convert("RGB")
  scale = max(1, size // max(pixels.size))
  pixels.resize((pixels.width * scale, pixels.height * scale), Image.NEAREST).save(
      os.path.join(folder, name))
  return name


def _rgb(frame: np.ndarray) -> np.ndarray:
  shown = _display(frame)
  return np.repeat(shown[..., None], 3, axis=-1) if shown.ndim == 2 else shown


def _mosaic(tiles: list[np.ndarray], gap: int) -> np.ndarray:
  """(H, W, 3) tiles side by side with white gaps."""
  height = tiles[0].shape[0]
  spacer = np.ones((height, gap, 3))
  parts = [p for tile in tiles for p in (tile, spacer)][:-1]
  return np.concatenate(parts, axis=1)


def evidence_strip(inputs: np.ndarray, saliency: np.ndarray, folder: str, name: str,
                   occlusion: np.ndarray | None = None,
                   frame_mass: np.ndarray | None = None) -> str:
  """One example's frames, its saliency over them and, for clips, where in time the evidence is.

  inputs: (T, H, W, C) or (H, W, C); saliency: (T, H, W) or (H, W), overlaid with one colour
  scale per example (so frames compare); occlusion, frame_mass: (T,) bars under the strip.
  Frames and overlays are composed as one picture (one matplotlib image, not one per frame).
  """
  if inputs.ndim == 3:
    inputs, saliency = inputs[None], saliency[None]
  num_frames, height, width = inputs.shape[:3]
  shown = np.unique(np.linspace(0, num_frames - 1, min(num_frames, MAX_STRIP_FRAMES)).round()
                    .astype(int))
  top = float(np.percentile(saliency, 99.5)) or 1.0
  heat = plt.get_cmap("inferno")
  frames, overlays = [], []
  for t in shown:
    frame = _rgb(inputs[t])
    alpha = 0.65 * np.clip(saliency[t] / top, 0, 1)[..., None]
    frames.append(frame)
    overlays.append((1 - alpha) * frame * 0.6 + alpha * heat(np.clip(saliency[t] / top, 0, 1))
                    [..., :3])
  gap = max(1, width // 16)
  picture = np.concatenate([_mosaic(frames, gap), np.ones((gap, 1, 3)).repeat(
      len(shown) * (width + gap) - gap, axis=1), _mosaic(overlays, gap)], axis=0)
  temporal = occlusion is not None
  inches = max(0.9 * len(shown), 2.0)
  picture_inches = inches * picture.shape[0] / picture.shape[1]
  fig = plt.figure(figsize=(inches, picture_inches + 1.3 * temporal))
  grid = fig.add_gridspec(1 + temporal, 1, height_ratios=[picture_inches, 1.1][:1 + temporal],
                          hspace=0.15)
  ax = fig.add_subplot(grid[0])
  # x runs 0.5 .. T + 0.5 as in the bars below (same axes box): frame t sits over its bar.
  ax.imshow(picture, interpolation="nearest", aspect="auto",
            extent=(0.5, num_frames + 0.5, picture.shape[0], 0))
  centres = 0.5 + (np.arange(len(shown)) * (width + gap) + width / 2) / picture.shape[1] * (
      num_frames)
  ax.set_yticks([])
  if temporal:
    ax.set_xticks(centres, [str(t + 1) for t in shown], fontsize=7)
  else:
    ax.set_xticks([])
  ax.xaxis.tick_top()
  ax.tick_params(length=0, pad=1)
  for side in ax.spines.values():
    side.set_visible(False)
  if temporal:
    ax = fig.add_subplot(grid[1])
    x = np.arange(1, num_frames + 1)
    ax.bar(x - 0.2, occlusion, width=0.4, color="tab:blue")
    scale = max(float(np.abs(occlusion).max()), 1e-6) / max(float(frame_mass.max()), 1e-12)
    ax.bar(x + 0.2, frame_mass * scale, width=0.4, color="tab:orange")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlim(0.5, num_frames + 0.5)
    ax.set_xticks(x if num_frames <= 32 else x[::max(1, num_frames // 16)])
    ax.tick_params(labelsize=7)  # Colours are explained once, on the page.
  return _save(fig, folder, name)


def temporal_profile(drops: np.ndarray, labels: np.ndarray, class_names, folder: str) -> str:
  """drops (N, T): the true-class probability drop per occluded frame of N eval clips. Left:
  its mean and interquartile range per frame; right: the mean per true class and frame."""
  num_frames = drops.shape[1]
  x = np.arange(1, num_frames + 1)
  fig, (left, right) = plt.subplots(
      1, 2, figsize=(10, 0.8 + max(2.4, 0.22 * len(class_names))),
      gridspec_kw={"width_ratios": [1, 1.3]})
  q25, q75 = np.percentile(drops, [25, 75], axis=0)
  left.fill_between(x, q25, q75, alpha=0.3, label="25-75 %")
  left.plot(x, drops.mean(axis=0), marker="o", markersize=3, label="mean")
  left.axhline(0, color="black", linewidth=0.5)
  left.set_xticks(x if num_frames <= 32 else x[::max(1, num_frames // 16)])
  left.set_xlabel("frame", fontsize=9)
  left.set_ylabel("true-class probability drop", fontsize=9)
  left.set_title(f"{len(drops)} eval clips", fontsize=10)
  left.legend(fontsize=8)
  left.tick_params(labelsize=8)
  left.grid(alpha=0.3)
  present = [c for c in range(len(class_names)) if np.any(labels == c)]
  table = np.stack([drops[labels == c].mean(axis=0) for c in present])
  limit = float(np.abs(table).max()) or 1.0
  shown = right.imshow(table, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                       extent=(0.5, num_frames + 0.5, len(present) - 0.5, -0.5))
  right.set_yticks(range(len(present)))
  right.set_yticklabels([class_names[c] for c in present], fontsize=8)
  right.set_xticks(x if num_frames <= 32 else x[::max(1, num_frames // 16)])
  right.set_xlabel("frame", fontsize=9)
  right.set_title("mean drop per true class", fontsize=10)
  right.tick_params(labelsize=8)
  fig.colorbar(shown, ax=right, fraction=0.04)
  fig.tight_layout()
  return _save(fig, folder, "temporal_profile.png")
