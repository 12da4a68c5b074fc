"""The report's examples: which ones to show, their inputs read back from the eval split, and
where and when their evidence is (dcrn_jax/explain.py).

Explanations are about the true class. A video scored from several views (clips x crops) is
shown and explained from its first view.
"""

import dataclasses

import numpy as np

from dcrn_jax import data, explain

# Largest batch (in bytes of inputs) handed to one explanation call: gradients of a batch keep
# a few copies of its activations.
_CHUNK_BYTES = 32 << 20


@dataclasses.dataclass
class Example:
  """One gallery entry.

  Attributes:
    record: its line of eval_predictions.jsonl.
    inputs: float32 (T, H, W, C) or (H, W, C), its first view.
    saliency: (T, H, W) or (H, W): |integrated gradients| summed over channels.
    occlusion: (T,) true-class probability drop per occluded frame (clips only).
    frame_mass: (T,) each frame's share of |integrated gradients| (clips only).
  """

  record: dict
  inputs: np.ndarray
  saliency: np.ndarray | None = None
  occlusion: np.ndarray | None = None
  frame_mass: np.ndarray | None = None


def choose(records: list[dict], count: int) -> list[dict]:
  """The most confident mistakes first (up to two thirds of `count`), then the most confident
  right answer of each class in turn, then more mistakes if the classes run out."""
  confidence = lambda r: r["probabilities"][r["prediction"]]
  wrong = sorted((r for r in records if r["prediction"] != r["label"]), key=confidence,
                 reverse=True)
  right_by_class = {}
  for r in sorted((r for r in records if r["prediction"] == r["label"]), key=confidence,
                  reverse=True):
    right_by_class.setdefault(r["label"], []).append(r)
  num_right = sum(map(len, right_by_class.values()))
  num_wrong = min(len(wrong), max(count * 2 // 3, count - num_right))
  chosen = wrong[:num_wrong]
  while len(chosen) < count and any(right_by_class.values()):
    for label in sorted(right_by_class):
      if right_by_class[label] and len(chosen) < count:
        chosen.append(right_by_class[label].pop(0))
  return chosen + wrong[num_wrong:num_wrong + count - len(chosen)]


def _chunked(fn, inputs: np.ndarray, targets: np.ndarray, rows: int) -> np.ndarray:
  """fn over chunks of `rows` rows (fewer for large examples), the last one padded by repeating
  a row: one shape, so one compilation however the inputs come."""
  size = int(max(1, min(rows, _CHUNK_BYTES // max(inputs[0].nbytes, 1))))
  outs = []
  for lo in range(0, len(inputs), size):
    x, y = inputs[lo:lo + size], targets[lo:lo + size]
    pad = size - len(x)
    if pad:
      x = np.concatenate([x, np.repeat(x[-1:], pad, axis=0)])
      y = np.concatenate([y, np.repeat(y[-1:], pad, axis=0)])
    outs.append(np.asarray(fn(x, y))[:size - pad])
  return np.concatenate(outs)


def read_inputs(config, wanted: set[int], *, profile_count: int, on_profile_batch=None):
  """One pass over the eval split (one process): the first view of each wanted example, and
  the first views of its first `profile_count` examples handed to `on_profile_batch(inputs,
  labels)` as they stream by. Returns {index: (inputs, label)}; stops as soon as it has all."""
  found, profiled, seen = {}, 0, set()
  batches = data.eval_batches(config.data, local_batch_size=config.eval_batch_size)
  for batch in batches:
    ids = np.asarray(batch["example_id"])
    rows = []  # The first view of each example (a video's views may span two batches).
    for row in np.flatnonzero(np.asarray(batch["mask"]) > 0):
      if int(ids[row]) not in seen:
        seen.add(int(ids[row]))
        rows.append(row)
        if int(ids[row]) in wanted:
          found[int(ids[row])] = (np.asarray(batch["inputs"][row]), int(batch["label"][row]))
    rows = np.asarray(rows, np.int64)
    if on_profile_batch is not None and profiled < profile_count:
      take = rows[:profile_count - profiled]
      on_profile_batch(np.asarray(batch["inputs"][take]), np.asarray(batch["label"][take]))
      profiled += len(take)
    if len(found) == len(wanted) and (on_profile_batch is None or profiled >= profile_count):
      break
  return found


def temporal_profile(model, variables, config, wanted: set[int], *, count: int, fill: str):
  """Reads the wanted examples and the occlusion drops of the split's first `count` clips.

  Returns ({index: (inputs, label)}, drops (N, T), labels (N,)); drops is None for images.
  """
  drops, labels = [], []
  clips = len(data.get_info(config.data).input_shape) == 4 and count > 0

  def profile(inputs, batch_labels):
    if len(inputs):
      drops.append(_chunked(lambda x, y: explain.occlusion_importance(
          model, variables, x, y, fill=fill), inputs, batch_labels, config.eval_batch_size))
      labels.append(batch_labels)

  found = read_inputs(config, wanted, profile_count=count if clips else 0,
                      on_profile_batch=profile if clips else None)
  if not drops:
    return found, None, None
  return found, np.concatenate(drops), np.concatenate(labels)


def explain_examples(model, variables, records: list[dict], found: dict, *, ig_steps: int,
                     fill: str) -> list[Example]:
  """The gallery: each chosen record with its inputs and its explanations (true class)."""
  examples = [Example(r, found[r["index"]][0]) for r in records if r["index"] in found]
  if not examples:
    return examples
  inputs = np.stack([e.inputs for e in examples])
  targets = np.asarray([e.record["label"] for e in examples], np.int32)
  attributions = _chunked(lambda x, y: explain.integrated_gradients(
      model, variables, x, y, steps=ig_steps), inputs, targets, len(inputs))
  saliency = explain.saliency_map(attributions)
  if inputs.ndim == 5 and inputs.shape[1] > 1:
    occlusion = _chunked(lambda x, y: explain.occlusion_importance(
        model, variables, x, y, fill=fill), inputs, targets, len(inputs))
    # Per-frame mass of integrated gradients rather than of plain gradient x input: on clips
    # whose label shows in one frame (tests/test_explain.py) the first ranked that frame first
    # for 64 of 64 test clips, the second for 2 of 64 (it follows the noise frames' pixels).
    mass = explain.frame_mass(attributions)
  else:
    occlusion = mass = [None] * len(examples)
  for e, s, o, m in zip(examples, saliency, occlusion, mass):
    e.saliency, e.occlusion, e.frame_mass = s, o, m
  return examples
