"""`moving_fashion_seq` and `moving_digits_seq`: unlabelled sequences for forecasting (numpy only).

Both follow OpenSTL's Moving MNIST protocol (`dcrn_jax/datasets/sequences.py`): `data.num_digits`
items (2 in the protocol) bounce in `data.num_frames` frames of `data.image_size` pixels.

  moving_fashion_seq  Fashion-MNIST's images (idx files in data.manual_dir, Debian's folder by
                      default): train sequences from its train images, test ones from its test
                      images; 28x28 items in 64x64 frames, as OpenSTL's Moving Fashion-MNIST.
  moving_digits_seq   scikit-learn's handwritten digits, upscaled (24x24 in 64x64 frames), from
                      moving_digits' fixed train/test partition of the source images.

Training sequences are drawn fresh every epoch: `data.num_train_examples` per epoch, sequence i of
epoch e from (config.seed, e, i) alone, so runs are reproducible and a resumed run sees the same
sequences. The test set is fixed: `data.num_test_examples` sequences from a seed of its own,
the same for every config.seed. Nothing is written to disk. Batches carry no 'label'.
"""

from collections.abc import Iterator

import numpy as np

from dcrn_jax.data import common
from dcrn_jax.data.info import DatasetInfo
from dcrn_jax.datasets import bouncing, sequences
from dcrn_jax.datasets.fashion_mnist import idx
from dcrn_jax.datasets.moving_digits import render as digits_render
from dcrn_jax.datasets.moving_fashion import render as fashion_render
from dcrn_jax.errors import UserError

# The fixed test set's seed: a test sequence never depends on config.seed.
_TEST_SEED = 2_015_0613
_MAX_ITEMS = 4
_MIN_SIZE = {"moving_fashion_seq": 32, "moving_digits_seq": 16}


def _check(data_config) -> None:
  d = data_config
  common.check_pipeline_config(d)
  if not 1 <= d.num_digits <= _MAX_ITEMS:
    raise UserError(f"data.num_digits is {d.num_digits}; {d.name} draws 1 to {_MAX_ITEMS} "
                    "items per sequence (2 in OpenSTL's protocol).")
  if d.num_frames < 2:
    raise UserError(f"data.num_frames is {d.num_frames}; a sequence to forecast needs 2 or more "
                    "frames (20 in OpenSTL's protocol: 10 in, 10 out).")
  if d.image_size < _MIN_SIZE[d.name]:
    raise UserError(f"data.image_size is {d.image_size}; {d.name} needs "
                    f"{_MIN_SIZE[d.name]} or more (64 in OpenSTL's protocol).")
  for field in ("num_train_examples", "num_test_examples"):
    if d[field] < 1:
      raise UserError(f"data.{field} is {d[field]}; {d.name} needs at least 1.")


def get_info(data_config) -> DatasetInfo:
  _check(data_config)
  d = data_config
  if d.name == "moving_fashion_seq" and not idx.has_files(idx.fashion_dir(d)):
    _sprites(d, "test")  # Raises the UserError that names the missing file.
  return DatasetInfo(num_classes=0, input_shape=(d.num_frames, d.image_size, d.image_size, 1),
                     num_train_examples=d.num_train_examples,
                     num_eval_examples=d.num_test_examples, class_names=())


def _sprites(data_config, split: str) -> np.ndarray:
  """uint8 (N, d, d): the items sequences of `split` ('train' or 'test') are drawn from."""
  d = data_config
  if d.name == "moving_digits_seq":
    bank, classes = digits_render.load_digit_bank(d.image_size)
    return bank[digits_render.split_sources(classes, split)]
  images = idx.load_split(idx.fashion_dir(d), split)[0][..., 0]
  size = fashion_render.item_size(d.image_size)
  if size != images.shape[1]:
    images = np.clip(np.rint(bouncing.resize_bilinear(images / 255.0, size) * 255), 0, 255)
  return images.astype(np.uint8)


def _draw(sprites, seed_parts, index, data_config) -> np.ndarray:
  d = data_config
  rng = np.random.default_rng([*seed_parts, int(index)])
  return sequences.render(rng, sprites, num_items=d.num_digits, num_frames=d.num_frames,
                          image_size=d.image_size)


def train_batches(data_config, *, local_batch_size: int, seed: int, start_step: int,
                  process_index: int = 0,
                  process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Endless {'inputs': uint8 (B, T, S, S, 1)} batches of fresh sequences.

  The process draws its block of each epoch's sequence numbers (`common.process_share`), in
  order: the sequences are random already, so there is nothing to shuffle.
  """
  _check(data_config)
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count, start_step=start_step)
  share = common.process_share(
      data_config.num_train_examples, process_index=process_index, process_count=process_count,
      train=True, split=f"The {data_config.name} train epoch (data.num_train_examples)")
  epoch, offset = common.epoch_and_offset(start_step, local_batch_size, share.count)
  sprites = _sprites(data_config, "train")
  useed = common.unsigned_seed(seed)

  def stream():
    e, position = epoch, offset
    rows = share.rows()
    while True:
      batch = np.zeros((local_batch_size,) + (data_config.num_frames, data_config.image_size,
                                              data_config.image_size, 1), np.uint8)
      for b in range(local_batch_size):
        batch[b] = _draw(sprites, (useed, sequences.TRAIN, e), rows[position], data_config)
        position += 1
        if position == len(rows):
          e, position = e + 1, 0
      yield {"inputs": batch}

  return stream()


def eval_batches(data_config, *, local_batch_size: int, process_index: int = 0,
                 process_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """One pass over this process's block of the fixed test set: {'inputs', 'mask',
  'example_id'} batches of exactly local_batch_size rows (`common.padded_eval_batches`)."""
  _check(data_config)
  common.check_batch_args(local_batch_size=local_batch_size, process_index=process_index,
                          process_count=process_count)
  share = common.process_share(data_config.num_test_examples, process_index=process_index,
                               process_count=process_count, train=False)
  rows = share.rows()
  d = data_config
  shape = (d.num_frames, d.image_size, d.image_size, 1)

  def batches():
    sprites = _sprites(data_config, "test")
    for lo in range(0, len(rows), local_batch_size):
      index = rows[lo:lo + local_batch_size]
      video = np.stack([_draw(sprites, (_TEST_SEED, sequences.TEST), i, d) for i in index])
      yield {"inputs": video, "example_id": index.astype(np.int32)}

  return common.padded_eval_batches(
      batches(), local_batch_size=local_batch_size,
      num_batches=share.num_batches(local_batch_size), input_shape=shape, labels=False)


def resident_reason(data_config, *, train: bool) -> str | None:
  """The fixed test set can live on the device; training sequences are new every epoch."""
  if train:
    return (f"{data_config.name} draws new training sequences every epoch (an endless split, "
            "not a stored one)")
  return None


def split_pixels(data_config, *, train: bool, start: int, stop: int) -> dict[str, np.ndarray]:
  """Test sequences [start, stop): {'inputs': uint8 (n, T, S, S, 1)} (no labels)."""
  if train:
    raise ValueError("training sequences are drawn afresh every epoch")
  _check(data_config)
  d = data_config
  sprites = _sprites(data_config, "test")
  shape = (d.num_frames, d.image_size, d.image_size, 1)
  video = np.zeros((max(stop - start, 0),) + shape, np.uint8)
  for j, i in enumerate(range(start, stop)):
    video[j] = _draw(sprites, (_TEST_SEED, sequences.TEST), i, d)
  return {"inputs": video}
