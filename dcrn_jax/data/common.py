"""Checks and batch plumbing shared by every data source (numpy only, no TensorFlow)."""

from collections.abc import Iterable, Iterator
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


def num_eval_batches(shares: Iterable[int], local_batch_size: int) -> int:
  """Batches every process yields for eval: enough for the largest per-process share."""
  return math.ceil(max(shares, default=0) / local_batch_size)


def padded_eval_batches(batches: Iterable[dict[str, np.ndarray]], *,
                        local_batch_size: int, num_batches: int,
                        input_shape: tuple[int, ...],
                        id_keys: tuple[str, ...] = ()) -> Iterator[dict[str, np.ndarray]]:
  """Pads a finite stream of eval batches to exactly `num_batches` full batches.

  Args:
    batches: dicts of 'inputs' float32 (b, *input_shape), 'label' int (b,) and each of
      id_keys int (b,), with b <= local_batch_size.
    local_batch_size: rows of every yielded batch.
    num_batches: how many batches to yield; all-masked batches make up any shortfall so that
      every process runs the same number of eval steps (collectives would hang otherwise).
    input_shape: shape of one example, for the padding rows.
    id_keys: int32 keys passed through (e.g. 'video_id'); padding rows hold -1 there.

  Yields:
    {'inputs': float32 (local_batch_size, *input_shape), 'label': int32 (local_batch_size,),
     'mask': float32 (local_batch_size,), and id_keys int32 (local_batch_size,)}, mask 1 for
    real rows and 0 for zero padding.
  """
  count = 0
  for given in batches:
    n = len(given["label"])
    if count >= num_batches or n > local_batch_size:
      raise RuntimeError(
          f"Eval share larger than its split metadata says ({count + 1} batches of up to {n} "
          f"rows, expected {num_batches} of {local_batch_size}).")
    batch = _empty_batch(local_batch_size, input_shape, id_keys)
    for key in ("inputs", "label") + tuple(id_keys):
      batch[key][:n] = given[key]
    batch["mask"][:n] = 1.0
    count += 1
    yield batch
  for _ in range(count, num_batches):
    yield _empty_batch(local_batch_size, input_shape, id_keys)


def _empty_batch(batch_size: int, input_shape: tuple[int, ...],
                 id_keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
  batch = {
      "inputs": np.zeros((batch_size, *input_shape), np.float32),
      "label": np.zeros((batch_size,), np.int32),
      "mask": np.zeros((batch_size,), np.float32),
  }
  for key in id_keys:
    batch[key] = np.full((batch_size,), -1, np.int32)
  return batch


def even_shares(num_examples: int, process_count: int) -> list[int]:
  """Sizes of process_count contiguous blocks covering num_examples, differing by at most 1."""
  base, extra = divmod(num_examples, process_count)
  return [base + (i < extra) for i in range(process_count)]
