"""The one evaluation path (dcrn_jax/evaluation.py): rows -> per-example probabilities -> metrics,
for single-view examples, multi-view videos, padded batches and the train step's top-5 rule."""

import jax.numpy as jnp
import numpy as np
import pytest

from dcrn_jax import evaluation, parallel, steps

pytestmark = pytest.mark.usefixtures("highest_precision")  # Compares with reference math.


def _log_softmax(logits):
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def test_views_of_a_video_are_averaged_and_padding_is_ignored():
  # Video 0 (label 1): one confident wrong view, two mild right ones -> right on average.
  logits = np.array([[0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [9.0, 0.0, 0.0],
                     [0.0, 0.0, 5.0], [7.0, 7.0, 7.0]])
  labels = np.array([1, 1, 1, 2, 0])
  mask = np.array([1, 1, 1, 1, 0])
  ids = np.array([0, 0, 0, 1, -1])
  predictions = evaluation.combine_views(_log_softmax(logits), labels, mask, ids)
  out = evaluation.metrics(predictions)
  assert out["num_examples"] == 2 and out["num_views"] == 4
  assert out["view_accuracy"] == 0.75
  probs = np.exp(logits[:3]) / np.exp(logits[:3]).sum(1, keepdims=True)
  np.testing.assert_allclose(predictions.probabilities[0], probs.mean(0))
  assert out["accuracy"] == (0.5 if probs.mean(0).argmax() != 1 else 1.0)
  p1 = np.exp(5.0) / (np.exp(5.0) + 2)
  expected_loss = (-np.log(probs.mean(0)[1]) - np.log(p1)) / 2
  assert abs(out["loss"] - expected_loss) < 1e-9
  np.testing.assert_array_equal(predictions.example_id, [0, 1])
  np.testing.assert_array_equal(predictions.views, [3, 1])


def test_single_views_give_cross_entropy_accuracy_and_top5_of_their_logits():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(37, 7)) * 3
  labels = rng.integers(0, 7, size=37)
  mask = np.ones(40)
  mask[37:] = 0  # A padded last batch.
  ids = np.concatenate([np.arange(37), -np.ones(3)])
  rows = np.concatenate([logits, np.zeros((3, 7))])
  out = evaluation.metrics(evaluation.combine_views(
      _log_softmax(rows), np.concatenate([labels, np.zeros(3, int)]), mask, ids))
  lp = _log_softmax(logits)
  assert out["num_examples"] == 37 and "num_views" not in out and "view_accuracy" not in out
  np.testing.assert_allclose(out["loss"], -lp[np.arange(37), labels].mean(), rtol=1e-12)
  assert out["accuracy"] == np.mean(logits.argmax(1) == labels)
  top5 = np.argsort(-logits, axis=1)[:, :5]
  assert out["top5_accuracy"] == np.mean([l in t for l, t in zip(labels, top5)])


def test_a_confident_mistake_has_its_exact_loss_not_a_clipped_one():
  lp = _log_softmax(np.array([[0.0, 200.0]]))
  out = evaluation.metrics(evaluation.combine_views(lp, np.array([0]), np.ones(1), np.zeros(1)))
  np.testing.assert_allclose(out["loss"], 200.0, rtol=1e-9)


def test_one_top_k_rule_ties_with_the_true_class_count_as_hits_in_eval_and_train():
  # Label 0 ties with five other classes: no class scores strictly higher -> a hit.
  logits = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
                     [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
  labels = np.array([0, 1])  # Row 1: five classes score higher than the label -> a miss.
  probs = np.exp(_log_softmax(logits))
  np.testing.assert_array_equal(evaluation.top_k_hits(probs, labels, 5), [True, False])
  train_hits = steps._correct(jnp.asarray(logits, jnp.float32), jnp.asarray(labels))  # pylint: disable=protected-access
  np.testing.assert_array_equal(np.asarray(train_hits["top5_accuracy"]), [1.0, 0.0])


def test_evaluate_runs_the_jitted_step_over_batches_and_scores_per_example():
  class Stub:  # logits = the first 3 input values, scaled by a "parameter".
    @staticmethod
    def apply(variables, x, train):
      del train
      return x.reshape(x.shape[0], -1)[:, :3] * variables["w"]

  rng = np.random.default_rng(0)
  batches = []
  for first in (0, 2):  # Two batches of 4 rows: examples 0..3, 2 views each, last row padding.
    ids = np.repeat(np.arange(first, first + 2), 2).astype(np.int32)
    mask = np.ones(4, np.float32)
    if first == 2:
      ids[-1], mask[-1] = -1, 0.0
    batches.append({"inputs": rng.normal(size=(4, 2, 2, 1)).astype(np.float32),
                    "label": (np.maximum(ids, 0) % 3).astype(np.int32), "mask": mask,
                    "example_id": ids})
  mesh = parallel.create_mesh()
  out, predictions = evaluation.evaluate(
      evaluation.make_log_probs_fn(Stub, mesh), {"w": jnp.float32(2.0)}, iter(batches), mesh)
  cat = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  logits = cat["inputs"].reshape(8, -1)[:, :3] * 2.0
  expected = evaluation.metrics(evaluation.combine_views(
      _log_softmax(logits), cat["label"], cat["mask"], cat["example_id"]))
  numbers = lambda d: {k: v for k, v in d.items() if not isinstance(v, (dict, list))}
  assert numbers(out) == pytest.approx(numbers(expected), rel=1e-6)
  assert out["per_class"] == expected["per_class"]  # Same argmax: the same counts.
  assert out["confusion_matrix"] == expected["confusion_matrix"]
  assert out["num_examples"] == 4 and out["num_views"] == 7
  np.testing.assert_array_equal(predictions.example_id, [0, 1, 2, 3])
  np.testing.assert_allclose(predictions.probabilities.sum(1), 1.0, rtol=1e-6)


def test_an_empty_eval_split_is_a_user_error():
  from dcrn_jax import UserError  # pylint: disable=g-import-not-at-top
  mesh = parallel.create_mesh()
  with pytest.raises(UserError, match="empty"):
    evaluation.evaluate(None, {}, iter([]), mesh)


def test_views_with_different_labels_are_a_programming_error():
  with pytest.raises(RuntimeError, match="different labels"):
    evaluation.combine_views(np.zeros((2, 3)), np.array([0, 1]), np.ones(2), np.zeros(2))
