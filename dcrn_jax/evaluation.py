"""One evaluation path for every dataset: model rows -> per-example probabilities -> metrics.

    rows (eval batches)  ->  log-probabilities per row (jit, batch split over devices, results
                             on every process)
                         ->  per example: the mean of its views' probabilities (a video's clips
                             x crops; images and stored clips have one view)
                         ->  metrics (one function, one top-k rule) and the predictions

Eval batches carry 'inputs', 'label', 'mask' (0 on padding rows) and 'example_id' (the
example's index in the whole eval split; the views of an example share it). The jitted step
returns its rows replicated, so every process holds every row of the global batch and computes
the same metrics; padding rows are dropped by their mask, so each example counts exactly once
whatever the number of processes and however the last batch is padded.

Definitions (examples indexed by n, views by v, V_n views of example n):
  p_n        = mean_v softmax(logits_nv)               the example's class probabilities
  loss       = mean_n -log p_n[label_n]                (logsumexp over views: exact, no clipping)
  accuracy   = mean_n [argmax p_n == label_n]
  top5_accuracy (5+ classes) = mean_n [fewer than 5 classes have p_n[c] > p_n[label_n]]:
             ties with the true class count as hits
  view_accuracy (multi-view data only) = top-1 accuracy of single views
"""

import dataclasses
import functools

import jax
import numpy as np

from dcrn_jax import host, parallel
from dcrn_jax.errors import UserError

TOP_K = 5
# Forecasting (forecast_evaluation.py) scores each frame metric for three forecasts, named by
# these prefixes: the model's, the last input frame repeated, all zeros.
FORECASTS = ("", "baseline_last_frame_", "baseline_zeros_")
FORECAST_FRAME_METRICS = {"mse": "min", "mae": "min", "ssim": "max", "psnr": "max"}
# Whether a larger value of each metric is better ("max") or worse ("min"): every metric name
# an evaluation writes to eval.json, classification's and forecasting's (for choosing the best
# checkpoint by name).
METRIC_DIRECTIONS = {
    "loss": "min", "accuracy": "max", "top5_accuracy": "max", "view_accuracy": "max",
    **{prefix + name: direction for prefix in FORECASTS
       for name, direction in FORECAST_FRAME_METRICS.items()},
}


def log_probs_step(variables: dict, batch: dict, *, apply_fn) -> dict:
  """Per-row log-probabilities float32 (B, classes), with the rows' label, mask and id (B,)."""
  logits = apply_fn(variables, batch["inputs"], train=False)
  return {"log_probs": jax.nn.log_softmax(logits.astype(np.float32)), "label": batch["label"],
          "mask": batch["mask"], "example_id": batch["example_id"]}


def make_log_probs_fn(model, mesh):
  """jit(log_probs_step): variables replicated, batch split on `data`, outputs replicated."""
  return jax.jit(functools.partial(log_probs_step, apply_fn=model.apply),
                 in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh)),
                 out_shardings=parallel.replicated(mesh),
                 compiler_options=host.compiler_options())


@dataclasses.dataclass(frozen=True)
class Predictions:
  """Per-example results of one evaluation, sorted by example id.

  Attributes:
    example_id: int (N,), index in the eval split.
    label: int (N,).
    probabilities: float64 (N, classes), views averaged.
    views: int (N,), rows that were averaged.
    view_hits: int (N,), views whose own top-1 was right.
    loss: float64 (N,), -log probabilities[label].
  """

  example_id: np.ndarray
  label: np.ndarray
  probabilities: np.ndarray
  views: np.ndarray
  view_hits: np.ndarray
  loss: np.ndarray


def combine_views(log_probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                  example_ids: np.ndarray) -> Predictions:
  """Rows (padding included, mask 0) -> one prediction per example, views averaged."""
  real = np.asarray(mask) > 0
  log_probs = np.asarray(log_probs, np.float64)[real]
  labels, ids = np.asarray(labels)[real], np.asarray(example_ids)[real]
  unique, inverse = np.unique(ids, return_inverse=True)
  n, classes = len(unique), log_probs.shape[1]
  views = np.bincount(inverse, minlength=n)
  example_labels = np.zeros(n, np.int64)
  example_labels[inverse] = labels
  if np.any(example_labels[inverse] != labels):
    raise RuntimeError("the views of one example carry different labels")
  probabilities = np.zeros((n, classes))
  np.add.at(probabilities, inverse, np.exp(log_probs))
  probabilities /= np.maximum(views, 1)[:, None]
  # -log mean_v exp(lp_v[label]) computed as a log-sum-exp, exact for confident mistakes too.
  true_lp = log_probs[np.arange(len(labels)), labels]
  top = np.full(n, -np.inf)
  np.maximum.at(top, inverse, true_lp)
  sums = np.zeros(n)
  np.add.at(sums, inverse, np.exp(true_lp - top[inverse]))
  loss = -(top + np.log(sums) - np.log(np.maximum(views, 1)))
  view_hits = np.bincount(inverse, weights=log_probs.argmax(axis=1) == labels, minlength=n)
  return Predictions(example_id=unique.astype(np.int64), label=example_labels,
                     probabilities=probabilities, views=views,
                     view_hits=view_hits.astype(np.int64), loss=loss)


def top_k_hits(probabilities: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
  """bool (N,): the label is among the top k (fewer than k classes score strictly higher)."""
  true = probabilities[np.arange(len(labels)), labels]
  return (probabilities > true[:, None]).sum(axis=1) < k


def metrics(predictions: Predictions) -> dict:
  """The metrics of the module docstring, plus num_examples (and num_views for multi-view)."""
  p = predictions
  n = len(p.label)
  if n == 0:
    return {"loss": 0.0, "accuracy": 0.0, "num_examples": 0}
  out = {"loss": float(np.mean(p.loss)),
         "accuracy": float(np.mean(p.probabilities.argmax(axis=1) == p.label))}
  if p.probabilities.shape[1] >= TOP_K:
    out["top5_accuracy"] = float(np.mean(top_k_hits(p.probabilities, p.label, TOP_K)))
  if np.any(p.views > 1):
    out["view_accuracy"] = float(p.view_hits.sum() / p.views.sum())
    out["num_views"] = int(p.views.sum())
  out["num_examples"] = int(n)
  return out


def gather_rows(fn, variables, batches, mesh, prefetch: int = 2, wrap=None) -> dict:
  """Runs a jitted per-row step over this process's eval batches: {key: rows of every global
  batch, concatenated} (the step's outputs are replicated, so every process holds every row).

  wrap, if given, is applied to the stream of global batches (to look at some on the way).
  """
  parts = {}
  stream = parallel.prefetch_to_device(batches, mesh, prefetch)
  for batch in (wrap(stream) if wrap else stream):
    out = jax.device_get(fn(variables, batch))
    for key, value in out.items():
      parts.setdefault(key, []).append(np.asarray(value))
  if not parts:
    raise UserError("the eval split is empty: there is nothing to evaluate")
  return {key: np.concatenate(value) for key, value in parts.items()}


def predict_rows(log_probs_fn, variables, batches, mesh, prefetch: int = 2) -> Predictions:
  """Runs the jitted step over this process's eval batches and combines every process's rows."""
  rows = gather_rows(log_probs_fn, variables, batches, mesh, prefetch)
  return combine_views(rows["log_probs"], rows["label"], rows["mask"], rows["example_id"])


def evaluate(log_probs_fn, variables, batches, mesh, prefetch: int = 2):
  """(metrics, predictions) of one pass over `batches`; see the module docstring."""
  predictions = predict_rows(log_probs_fn, variables, batches, mesh, prefetch)
  return metrics(predictions), predictions
