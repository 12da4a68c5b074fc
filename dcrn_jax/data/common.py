"""Checks, the process split and batch plumbing shared by every source (numpy only).

How processes divide a split, the one rule of every source (`process_share`): process p of P
reads one contiguous block of the split, in the split's stored order (as `tfds.even_splits`
cuts it, so a TFDS source reads only its own block from disk). Training keeps N // P rows per
process, so every epoch has the same length on every process (the last N % P rows of the split
are never trained on when P does not divide N). Eval keeps every row: the first N % P processes
hold one row more, and every process yields the same number of batches, padded with masked rows.
With one process this is every row, in order. A source whose stored order is grouped (a video
folder sorted by class) orders its rows so that any block mixes the groups.
"""

from collections.abc import Iterable, Iterator
import dataclasses
import math

import numpy as np

from dcrn_jax.errors import UserError


def check_batch_args(*, local_batch_size: int, process_index: int, process_count: int,
                     start_step: int = 0) -> None:
  """Raises UserError for batch/process arguments that no pipeline can honour."""
  if not isinstance(local_batch_size, (int, np.integer)) or local_batch_size < 1:
    raise UserError(
        f"The per-process batch size is {local_batch_size!r}; it must be a positive integer. "
        "Make the global batch size at least the number of devices and divisible by it.")
  if not isinstance(process_count, (int, np.integer)) or process_count < 1:
    raise UserError(f"process_count is {process_count!r}; it must be a positive integer.")
  if not 0 <= process_index < process_count:
    raise UserError(
        f"process_index is {process_index!r}; it must be in [0, process_count={process_count}).")
  if start_step < 0:
    raise UserError(f"start_step is {start_step}; resume from step 0 or a later step.")


def check_pipeline_config(data_config) -> None:
  """Raises UserError for `data` fields that are out of range for any source."""
  if data_config.shuffle_buffer < 1:
    raise UserError(
        f"data.shuffle_buffer is {data_config.shuffle_buffer}; set it to 1 or more "
        "(1 keeps the stored order).")
  if data_config.prefetch_batches < 0:
    raise UserError(
        f"data.prefetch_batches is {data_config.prefetch_batches}; set it to 0 or more.")


def unsigned_seed(seed: int) -> int:
  """Maps any Python int seed to [0, 2**64) so negative seeds stay distinct and usable."""
  return int(seed) % (1 << 64)


def epoch_and_offset(start_step: int, local_batch_size: int, examples_per_epoch: int):
  """Where batch `start_step` starts in the endless stream of shuffled epochs.

  Batches are cut from consecutive epochs without gaps, so batch s starts at example
  s * local_batch_size of that stream. Returns (epoch, offset into that epoch).
  """
  return divmod(start_step * local_batch_size, examples_per_epoch)


@dataclasses.dataclass(frozen=True)
class Share:
  """One process's rows of a split: first, first + 1, ..., count of them.

  Attributes:
    first: the first row.
    count: how many rows this process reads.
    largest: the largest count of any process (eval: every process yields as many batches as
      that one needs).
  """

  first: int
  count: int
  largest: int

  def rows(self) -> np.ndarray:
    """int64 (count,): the rows of the split this process reads, in order."""
    return self.first + np.arange(self.count, dtype=np.int64)

  def num_batches(self, local_batch_size: int, views: int = 1) -> int:
    """Eval batches of local_batch_size rows every process yields (views rows per example)."""
    return math.ceil(self.largest * views / local_batch_size)


def process_share(num_examples: int, *, process_index: int, process_count: int, train: bool,
                  split: str = "the split") -> Share:
  """This process's rows of a split of num_examples rows, by the rule in the module docstring.

  Raises UserError when training leaves a process without any row (`split` names it then).
  """
  base, extra = divmod(num_examples, process_count)
  if train:
    if base == 0:
      raise UserError(
          f"{split} has {num_examples} example(s): too few to give each of {process_count} "
          "processes one. Use a larger split, or fewer processes.")
    return Share(first=process_index * base, count=base, largest=base)
  return Share(first=process_index * base + min(process_index, extra),
               count=base + (process_index < extra), largest=base + (extra > 0))


def padded_eval_batches(batches: Iterable[dict[str, np.ndarray]], *,
                        local_batch_size: int, num_batches: int, input_shape: tuple[int, ...],
                        labels: bool = True,
                        dtype=np.uint8) -> Iterator[dict[str, np.ndarray]]:
  """Pads a finite stream of eval batches to exactly `num_batches` full batches.

  Args:
    batches: dicts of 'inputs' (b, *input_shape) (uint8 pixels), 'label' int (b,) and
      'example_id' int (b,), with b <= local_batch_size.
    local_batch_size: rows of every yielded batch.
    num_batches: how many batches to yield; all-masked batches make up any shortfall so that
      every process runs the same number of eval steps (collectives would hang otherwise).
    input_shape: shape of one example, for the padding rows.
    labels: whether batches carry 'label' (False: unlabelled sequences, for forecasting).
    dtype: of 'inputs' (the sources' pixels: uint8).

  Yields:
    {'inputs': dtype (local_batch_size, *input_shape), 'label': int32 (local_batch_size,),
     'mask': float32 (local_batch_size,), 'example_id': int32 (local_batch_size,)}: mask 1 for
    real rows; padding rows are zeros with mask 0 and example_id -1. No 'label' if not labels.
  """
  keys = ("inputs", "label", "example_id") if labels else ("inputs", "example_id")
  count = 0
  for given in batches:
    n = len(given["example_id"])
    if count >= num_batches or n > local_batch_size:
      raise RuntimeError(
          f"Eval share larger than its split metadata says ({count + 1} batches of up to {n} "
          f"rows, expected {num_batches} of {local_batch_size}).")
    batch = _empty_batch(local_batch_size, input_shape, labels, dtype)
    for key in keys:
      batch[key][:n] = given[key]
    batch["mask"][:n] = 1.0
    count += 1
    yield batch
  for _ in range(count, num_batches):
    yield _empty_batch(local_batch_size, input_shape, labels, dtype)


def _empty_batch(batch_size: int, input_shape: tuple[int, ...], labels: bool = True,
                 dtype=np.uint8) -> dict[str, np.ndarray]:
  batch = {
      "inputs": np.zeros((batch_size, *input_shape), dtype),
      "label": np.zeros((batch_size,), np.int32),
      "mask": np.zeros((batch_size,), np.float32),
      "example_id": np.full((batch_size,), -1, np.int32),
  }
  if not labels:
    del batch["label"]
  return batch


def eval_index_batches(num_examples: int, *, local_batch_size: int, process_index: int,
                       process_count: int) -> Iterator[dict[str, np.ndarray]]:
  """The rows of this process's eval batches, for a split resident on the device: batch for
  batch what `padded_eval_batches` yields for a one-view source, with 'index' int32 (B,), the
  rows of the split (0 on padding), in place of 'inputs' and 'label'."""
  share = process_share(num_examples, process_index=process_index,
                        process_count=process_count, train=False)
  rows = share.rows()
  for lo in range(0, share.num_batches(local_batch_size) * local_batch_size, local_batch_size):
    part = rows[lo:lo + local_batch_size]
    n = len(part)
    batch = {"index": np.zeros((local_batch_size,), np.int32),
             "mask": np.zeros((local_batch_size,), np.float32),
             "example_id": np.full((local_batch_size,), -1, np.int32)}
    batch["index"][:n] = part
    batch["mask"][:n] = 1.0
    batch["example_id"][:n] = part
    yield batch
