"""Multi-view video eval: score every view (clip x crop) of a video, average per video.

Video sources yield each eval video as `info.eval_views` rows sharing an 'example_id' (see
dcrn_jax/data). `evaluate_views` runs the model on every row, gathers logits and ids to every
host, and averages the softmax scores of each video's views before taking the argmax — the
usual multi-clip protocol of video toolkits. Single-view accuracy is reported beside it.
"""

import functools

import jax
import numpy as np

from dcrn_jax import host, parallel


def logits_step(variables: dict, batch: dict, *, apply_fn) -> dict:
  """Per-row logits float32 (B, classes) with the row's label, mask and example_id (B,)."""
  return {"logits": apply_fn(variables, batch["inputs"], train=False),
          "label": batch["label"], "mask": batch["mask"], "example_id": batch["example_id"]}


def make_logits_fn(model, mesh):
  """jit(logits_step): batch split on `data`, outputs replicated so every host can read them."""
  return jax.jit(functools.partial(logits_step, apply_fn=model.apply),
                 in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh),
                 compiler_options=host.compiler_options())


def video_metrics(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                  video_ids: np.ndarray) -> dict[str, float]:
  """Per-video metrics from per-view rows.

  Args:
    logits: float (N, classes), one row per view (padding rows included).
    labels: int (N,), the video's label on each of its rows.
    mask: float (N,), 1 for real rows, 0 for padding.
    video_ids: int (N,), equal for the views of one video.

  Returns:
    loss: mean over videos of -log(mean softmax of its views)[label]; accuracy and (5+
    classes) top5_accuracy of the mean softmax; view_accuracy: top-1 of single views;
    num_examples: videos; num_views: real rows.
  """
  real = mask > 0
  logits, labels, ids = logits[real].astype(np.float64), labels[real], video_ids[real]
  probs = np.exp(logits - logits.max(axis=1, keepdims=True))
  probs /= probs.sum(axis=1, keepdims=True)
  videos, inverse = np.unique(ids, return_inverse=True)
  counts = np.bincount(inverse, minlength=len(videos))
  mean_probs = np.zeros((len(videos), logits.shape[1]))
  np.add.at(mean_probs, inverse, probs)
  mean_probs /= np.maximum(counts, 1)[:, None]
  video_labels = np.zeros(len(videos), np.int64)
  video_labels[inverse] = labels
  true_prob = mean_probs[np.arange(len(videos)), video_labels]
  out = {
      "loss": float(np.mean(-np.log(np.maximum(true_prob, 1e-12)))) if len(videos) else 0.0,
      "accuracy": float(np.mean(mean_probs.argmax(axis=1) == video_labels)) if len(videos)
                  else 0.0,
      "view_accuracy": float(np.mean(logits.argmax(axis=1) == labels)) if len(labels) else 0.0,
  }
  if logits.shape[1] >= 5 and len(videos):
    # Ties count as hits: a class is in the top 5 if fewer than 5 classes score higher.
    higher = (mean_probs > true_prob[:, None]).sum(axis=1)
    out["top5_accuracy"] = float(np.mean(higher < 5))
  out["num_examples"] = int(len(videos))
  out["num_views"] = int(len(labels))
  return out


def evaluate_views(logits_fn, variables, batches, mesh, prefetch: int = 2) -> dict[str, float]:
  """Runs logits_fn over host-local eval batches and returns `video_metrics` of all of them.

  Args:
    logits_fn: from `make_logits_fn`.
    variables: the model variables (replicated).
    batches: this process's eval batches (data.eval_batches of a video source).
    mesh: the device mesh.
    prefetch: batches transferred ahead.
  """
  parts = {"logits": [], "label": [], "mask": [], "example_id": []}
  for batch in parallel.prefetch_to_device(batches, mesh, prefetch):
    out = jax.device_get(logits_fn(variables, batch))
    for key in parts:
      parts[key].append(np.asarray(out[key]))
  if not parts["logits"]:
    return video_metrics(np.zeros((0, 1)), np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
  return video_metrics(*(np.concatenate(parts[k]) for k in ("logits", "label", "mask",
                                                             "example_id")))
