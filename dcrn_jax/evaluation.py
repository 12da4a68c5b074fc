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
  per class and averaged (scikit-learn, from argmax p_n): `per_class` {class name: precision,
             recall, f1, support}, macro_precision, macro_recall, macro_f1, weighted_f1,
             mean_class_accuracy (balanced accuracy: the mean recall over the classes present,
             the UCF101 convention) and `confusion_matrix` (counts, rows = true class, columns
             = predicted, in label order). A value that divides by zero (recall of a class absent
             from the split; precision of a class never predicted) is None, never NaN, and the
             averages leave it out (scikit-learn's zero_division=nan).
"""

import dataclasses
import functools

import jax
import numpy as np

from dcrn_jax import host, parallel
from dcrn_jax.errors import UserError

TOP_K = 5
# Forecasting (tasks/forecast_evaluation.py) scores each frame metric for three forecasts, named by
# these prefixes: the model's, the last input frame repeated, all zeros.
FORECASTS = ("", "baseline_last_frame_", "baseline_zeros_")
FORECAST_FRAME_METRICS = {"mse": "min", "mae": "min", "ssim": "max", "psnr": "max"}

# Which way is better for each metric an evaluation reports: "max" or "min". best_metric must
# be one of these (and reported by the run's evaluation); Orbax ranks checkpoints by it
# (checkpoint.py, best_mode). A new metric needs one line here, else it cannot be a best_metric
# (tests/test_training_features.py checks that every reported metric has its line). Names that
# no evaluation of a dataset reports are refused for it with the list of those it does report.
METRIC_DIRECTIONS = {
    # Classification (`metrics` below).
    "loss": "min",
    "accuracy": "max",
    "top5_accuracy": "max",
    "view_accuracy": "max",
    "macro_precision": "max",
    "macro_recall": "max",
    "macro_f1": "max",
    "weighted_f1": "max",
    "mean_class_accuracy": "max",
    # Forecasting (tasks/forecast_evaluation.py): each frame metric of the model's forecast and of the
    # two baselines (which do not depend on the checkpoint, so they rank nothing useful).
    **{prefix + name: direction for prefix in FORECASTS
       for name, direction in FORECAST_FRAME_METRICS.items()},
}
# Reported beside the metrics, but counts that rank nothing.
COUNTS = ("num_examples", "num_views")


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


def _average(log_probs: np.ndarray, ids: np.ndarray):
  """(unique ids, inverse, views per id, float64 mean of exp(log_probs) per id)."""
  unique, inverse = np.unique(ids, return_inverse=True)
  inverse = inverse.reshape(-1)
  views = np.bincount(inverse, minlength=len(unique))
  probabilities = np.zeros((len(unique), log_probs.shape[1]))
  np.add.at(probabilities, inverse, np.exp(log_probs))
  probabilities /= np.maximum(views, 1)[:, None]
  return unique, inverse, views, probabilities


def average_views(log_probs: np.ndarray, example_ids: np.ndarray):
  """The views of each example averaged, as evaluation averages them (predict uses this).

  Args:
    log_probs: float (R, classes), one row per view (no padding rows).
    example_ids: int (R,); the views of one example share its id.

  Returns:
    (ids int64 (N,) sorted, probabilities float64 (N, classes), views int (N,)).
  """
  unique, _, views, probabilities = _average(np.asarray(log_probs, np.float64),
                                             np.asarray(example_ids))
  return unique.astype(np.int64), probabilities, views


def combine_views(log_probs: np.ndarray, labels: np.ndarray, mask: np.ndarray,
                  example_ids: np.ndarray) -> Predictions:
  """Rows (padding included, mask 0) -> one prediction per example, views averaged."""
  real = np.asarray(mask) > 0
  log_probs = np.asarray(log_probs, np.float64)[real]
  labels, ids = np.asarray(labels)[real], np.asarray(example_ids)[real]
  unique, inverse, views, probabilities = _average(log_probs, ids)
  n = len(unique)
  example_labels = np.zeros(n, np.int64)
  example_labels[inverse] = labels
  if np.any(example_labels[inverse] != labels):
    raise RuntimeError("the views of one example carry different labels")
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


def metrics(predictions: Predictions, class_names=None) -> dict:
  """The metrics of the module docstring, plus num_examples (and num_views for multi-view).

  class_names: the names `per_class` is keyed by, one per class (default: "0", "1", ...).
  """
  p = predictions
  n, num_classes = len(p.label), p.probabilities.shape[1]
  if n == 0:
    return {"loss": 0.0, "accuracy": 0.0, "num_examples": 0}
  predicted = p.probabilities.argmax(axis=1)
  out = {"loss": float(np.mean(p.loss)), "accuracy": float(np.mean(predicted == p.label))}
  if num_classes >= TOP_K:
    out["top5_accuracy"] = float(np.mean(top_k_hits(p.probabilities, p.label, TOP_K)))
  if np.any(p.views > 1):
    out["view_accuracy"] = float(p.view_hits.sum() / p.views.sum())
    out["num_views"] = int(p.views.sum())
  out.update(per_class_metrics(p.label, predicted, num_classes, class_names))
  out["num_examples"] = int(n)
  return out


def metric_names(num_classes: int, eval_views: int = 1) -> list[str]:
  """The names of the metrics `metrics` reports for this dataset (found by running it on two
  made-up examples, so it never disagrees with `metrics`), counts and tables left out."""
  views = np.full(2, max(eval_views, 1))
  probe = Predictions(example_id=np.arange(2), label=np.zeros(2, np.int64),
                      probabilities=np.full((2, num_classes), 1.0 / num_classes), views=views,
                      view_hits=np.zeros(2, np.int64), loss=np.zeros(2))
  # per_class and confusion_matrix are tables, not figures a checkpoint can be ranked by.
  return [name for name, value in metrics(probe).items()
          if name not in COUNTS and not isinstance(value, (dict, list))]


def metric_direction(name: str) -> str:
  """'max' or 'min': which way `name` is better; a UserError naming the known ones."""
  if name not in METRIC_DIRECTIONS:
    raise UserError(f"best_metric={name!r} is not a metric known to dcrn_jax: choose one of "
                    f"{', '.join(METRIC_DIRECTIONS)}")
  return METRIC_DIRECTIONS[name]


def check_best_metric(name: str, reported: list[str] | None = None) -> None:
  """Raises UserError unless `name` ("" = off) has a direction and, when `reported` (the metric
  names this run's evaluation reports) is given, is among them."""
  if not name:
    return
  metric_direction(name)
  if reported is not None and name not in reported:
    ranked = [m for m in reported if m in METRIC_DIRECTIONS]
    raise UserError(f"best_metric={name!r} is not among the eval metrics of this dataset: choose "
                    f"one of {', '.join(ranked)}")


def _number(x):
  """A float, or None where scikit-learn divided by zero (NaN is not JSON)."""
  return None if np.isnan(x) else float(x)


def per_class_metrics(labels: np.ndarray, predicted: np.ndarray, num_classes: int,
                      class_names=None) -> dict:
  """scikit-learn's per-class and averaged figures of the module docstring, JSON-ready."""
  # Imported here: scikit-learn with SciPy takes seconds to import and only evaluations need it.
  from sklearn import metrics as sk_metrics  # pylint: disable=g-import-not-at-top
  names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
  if len(names) != num_classes:
    raise ValueError(f"{len(names)} class names for {num_classes} classes")
  classes = np.arange(num_classes)
  precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
      labels, predicted, labels=classes, zero_division=np.nan)
  out = {"per_class": {name: {"precision": _number(precision[c]), "recall": _number(recall[c]),
                              "f1": _number(f1[c]), "support": int(support[c])}
                       for c, name in enumerate(names)}}
  for average in ("macro", "weighted"):
    prf = sk_metrics.precision_recall_fscore_support(labels, predicted, labels=classes,
                                                     average=average, zero_division=np.nan)
    if average == "macro":
      out["macro_precision"], out["macro_recall"] = _number(prf[0]), _number(prf[1])
    out[f"{average}_f1"] = _number(prf[2])
  # balanced_accuracy_score, as macro recall over the classes present: the same number without
  # its warning when a class that is absent from the split was predicted.
  out["mean_class_accuracy"] = float(sk_metrics.recall_score(
      labels, predicted, labels=np.unique(labels), average="macro"))
  out["confusion_matrix"] = sk_metrics.confusion_matrix(
      labels, predicted, labels=classes).tolist()
  return out


def to_records(predictions: Predictions, class_names, eval_ids=()) -> list[dict]:
  """One JSON-ready dict per example (eval_predictions.jsonl), in example order.

  id: eval_ids[index] when the dataset names its examples (a video's file path), else the
  index; index: the example's position in the eval split; probabilities: one per class, views
  averaged, to 6 significant digits.
  """
  records = []
  for i, index in enumerate(predictions.example_id):
    probs = predictions.probabilities[i]
    label, predicted = int(predictions.label[i]), int(probs.argmax())
    records.append({
        "id": eval_ids[index] if eval_ids else int(index), "index": int(index),
        "label": label, "label_name": class_names[label],
        "prediction": predicted, "prediction_name": class_names[predicted],
        "probabilities": [float(f"{x:.6g}") for x in probs], "views": int(predictions.views[i])})
  return records


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


def evaluate(log_probs_fn, variables, batches, mesh, prefetch: int = 2, class_names=None):
  """(metrics, predictions) of one pass over `batches`; see the module docstring."""
  predictions = predict_rows(log_probs_fn, variables, batches, mesh, prefetch)
  return metrics(predictions, class_names), predictions
