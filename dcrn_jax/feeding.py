"""How batches reach the jitted steps: streamed from the host, or gathered from the device.

    data.on_device  "auto" (default): a split that fits under data.on_device_max_bytes lives on
                    the device; one that does not, or whose source cannot, is streamed (one
                    printed line says so). True: resident or one `error:` line. False: streamed.

A resident split is read once, as the source's uint8 pixels (and int32 labels), into one global
array of its N rows (padded to a multiple of the devices), sharded over the mesh's `data`
axis: each device holds a contiguous block of rows and each process reads only its devices'
rows. The host then sends only the rows' indices, in exactly the order of the streamed batches
(`data.train_indices`), and the step gathers them (`gather`): the batches are the streamed
ones, bit for bit. Training augmentation of resident images (random crop after zero padding,
random flip) runs on the device from the step's key (`augment_fn`): a random stream of its own,
not tf.data's, equally reproducible on resume.

Streamed batches carry uint8 pixels; either way the step scales them with
dcrn_jax/input_scaling.py by data.normalize_mean/std (`Spec.scale`). Evaluation's jitted
functions get the same front (`fed_eval`).

The loop hands this room values, not the config: train.py reads the `data` fields it needs
once into a `Spec`, asks the source (data/) whether each split can be resident and reads a
resident split's pixels. Only `scaling`, for the tools that start from a run's saved config
(predict, streaming), reads a config.
"""

import dataclasses
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

from dcrn_jax import host, input_scaling, metrics as metrics_lib, parallel
from dcrn_jax.errors import UserError

MODES = ("auto", True, False)
# The default budget: this fraction of one device's memory (of the RAM per CPU device).
BUDGET_FRACTION = 0.25
_LABEL_BYTES = 4


def _floats(values) -> tuple[float, ...]:
  return tuple(float(v) for v in values)


@dataclasses.dataclass(frozen=True)
class Spec:
  """The `data` fields feeding reads (config.data's fields of the same names), checked when
  made (UserError).

  Attributes:
    name, train_split, eval_split: the dataset and its splits (named in messages).
    on_device: "auto", True or False ('true'/'false'/'auto' from a command line too):
      which splits live on the device (this module's docstring); read as `mode`.
    on_device_max_bytes: "auto" or a positive number of bytes (`budget_bytes`).
    normalize_mean, normalize_std: per-channel statistics (empty: none); `scale`.
    augment_crop_padding, augment_flip: the device's augmentation of resident images
      (`augment_fn`).
  """

  name: str
  train_split: str
  eval_split: str
  on_device: object
  on_device_max_bytes: object
  normalize_mean: tuple
  normalize_std: tuple
  augment_crop_padding: int
  augment_flip: bool

  def __post_init__(self):
    on_device_mode(self.on_device)
    _check_max_bytes(self.on_device_max_bytes)

  @property
  def mode(self):
    """on_device as "auto", True or False."""
    return on_device_mode(self.on_device)

  @property
  def scale(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(normalize_mean, normalize_std) as tuples of floats (empty: none), which
    input_scaling.model_input takes."""
    return _floats(self.normalize_mean), _floats(self.normalize_std)


def on_device_mode(on_device):
  """data.on_device as "auto", True or False ('true'/'false' from a command line too)."""
  mode = on_device
  if isinstance(mode, str) and mode.lower() in ("true", "false", "auto"):
    mode = {"true": True, "false": False, "auto": "auto"}[mode.lower()]
  if isinstance(mode, bool) or mode == "auto":
    return mode
  raise UserError(f"data.on_device={on_device!r} must be 'auto', True or False")


def device_memory_bytes(device) -> int:
  """Memory of one device: its allocator's limit, or on CPU the RAM per local CPU device."""
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # pylint: disable=broad-except  # Backends without memory statistics.
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  return ram // max(jax.local_device_count(), 1)


def _check_max_bytes(limit) -> None:
  if isinstance(limit, str) and limit == "auto":
    return
  if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
    raise UserError(f"data.on_device_max_bytes={limit!r} must be 'auto' or a positive number "
                    "of bytes (of each device's memory the resident splits may take)")


def budget_bytes(spec: Spec) -> int:
  """data.on_device_max_bytes, or for "auto" BUDGET_FRACTION of a device's memory."""
  limit = spec.on_device_max_bytes
  _check_max_bytes(limit)
  if isinstance(limit, str):
    return int(BUDGET_FRACTION * device_memory_bytes(jax.local_devices()[0]))
  return int(limit)


def scaling(data_config) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(data.normalize_mean, data.normalize_std) of a run's config as `Spec.scale` gives them,
  for the tools that start from a trained workdir (predict, streaming)."""
  return _floats(data_config.normalize_mean), _floats(data_config.normalize_std)


@dataclasses.dataclass(frozen=True)
class Feed:
  """A split resident on the device, and the step's front for it.

  Attributes:
    arrays: {'inputs': uint8 (Npad, ...), 'label': int32 (Npad,) if labelled}, global jax.Arrays
      sharded over `data`.
    gather: (arrays, batch with 'index') -> batch with 'inputs' (and 'label').
    augment: (pixels (B, ...), key) -> pixels, or None (eval; no augmentation).
  """

  arrays: dict
  gather: object
  augment: object = None


def _rows_per_device(num_rows: int, mesh) -> int:
  return math.ceil(num_rows / mesh.devices.size)


def split_bytes(num_rows: int, input_shape, mesh, labels: bool) -> int:
  """Bytes one device holds of a resident split of num_rows uint8 examples."""
  per_row = int(np.prod(input_shape)) + (_LABEL_BYTES if labels else 0)
  return _rows_per_device(num_rows, mesh) * per_row


def plan(spec: Spec, info, mesh, reasons: dict[str, str | None]) -> dict[str, bool]:
  """{'train': resident?, 'eval': resident?} for this run; prints the line of an "auto" that
  streams, raises the `error:` of a True that cannot be honoured. The train split has the
  first claim on the budget.

  reasons: {split: None if the source can keep it on the device, else why not, in words}
  (data.resident_reason) for the splits asked about; the others stream. Not read when
  spec.mode is False.
  """
  mode = spec.mode
  out = {"train": False, "eval": False}
  if mode is False:
    return out
  left = budget_bytes(spec)
  for split, name, rows in (("train", spec.train_split, info.num_train_examples),
                            ("eval", spec.eval_split, info.num_eval_examples)):
    if split not in reasons:
      continue
    reason = reasons[split]
    need = split_bytes(rows, info.input_shape, mesh, labels=info.num_classes > 0)
    if reason is None and need > left:
      reason = (f"its {rows} examples take {need:,} bytes per device, over the "
                f"{left:,} of data.on_device_max_bytes left")
    if reason is not None and mode is True:
      raise UserError(f"data.on_device=True, but split {name!r} of {spec.name!r} cannot live on "
                      f"the device: {reason}. Set data.on_device='auto' (or False) to stream it"
                      + (", or raise data.on_device_max_bytes" if "bytes" in reason else ""))
    if reason is not None and jax.process_index() == 0:
      print(f"data: split {name!r} streams from the host ({reason})", flush=True)
    out[split] = reason is None
    left -= need if reason is None else 0
  return out


def local_rows(num_rows: int, mesh) -> tuple[int, int]:
  """[start, stop): the rows of a resident split of num_rows examples that this process's
  devices hold (what it reads; `resident_feed` takes them)."""
  per_device = _rows_per_device(num_rows, mesh)
  local = [i for i, dev in enumerate(mesh.devices.flat) if dev.process_index == jax.process_index()]
  lo = min(local) * per_device
  hi = min((max(local) + 1) * per_device, num_rows)
  return lo, max(hi, lo)


def resident_feed(pixels: dict, *, start: int, num_rows: int, mesh, labels: bool,
                  augment=None) -> Feed:
  """A split resident on the device, from this process's rows of it.

  pixels: rows [start, stop) of the split (`local_rows`) as the source stores them
    ({'inputs': uint8 (n, ...), 'label': int32 (n,)}; data.split_pixels).
  labels: whether the split's labels go on the device too.
  augment: the train split's augmentation (`augment_fn`); None for eval.
  """
  per_device = _rows_per_device(num_rows, mesh)
  padded = per_device * mesh.devices.size
  sharding = parallel.batch_sharding(mesh)
  lo, hi = start, start + len(pixels["inputs"])

  def part(key, dtype):
    def block(index):
      rows = index[0]
      a, b = rows.start or 0, padded if rows.stop is None else rows.stop
      got = pixels[key][max(a - lo, 0):max(min(b, hi) - lo, 0)]
      out = np.zeros((b - a,) + got.shape[1:], dtype)
      out[:len(got)] = got
      return out
    shape = (padded,) + pixels[key].shape[1:]
    return jax.make_array_from_callback(shape, sharding, block)

  arrays = {"inputs": part("inputs", pixels["inputs"].dtype)}
  if labels:
    arrays["label"] = part("label", np.int32)
  return Feed(arrays, gather_fn(mesh), augment)


def _take_rows(array, index):
  """array[index] along axis 0, taken as rows of one flat axis: on XLA:CPU ~10x faster than
  a take of the 5-D array (0.6 vs 6.4 ms for 256 of 2048 clips of 10x64x64x1, this VM)."""
  flat = jnp.take(array.reshape(array.shape[0], -1), index, axis=0)
  return flat.reshape(index.shape + array.shape[1:])


def gather_fn(mesh):
  """(arrays, batch) -> batch with the rows batch['index'] (B,) of every array.

  One device: a take. Several: every device takes the batch's rows it holds (zeros for the
  others) and a reduce-scatter over `data` sums them into each device's share of the batch:
  exact, since exactly one device contributes each row.
  """
  if mesh.devices.size == 1:
    def take(arrays, index):
      return {k: _take_rows(v, index) for k, v in arrays.items()}
  else:
    def local(block, index):
      n = block.shape[0]
      here = index - jax.lax.axis_index(parallel.DATA_AXIS) * n
      ok = (here >= 0) & (here < n)
      rows = _take_rows(block, jnp.clip(here, 0, n - 1))
      rows = jnp.where(ok.reshape((-1,) + (1,) * (rows.ndim - 1)), rows, jnp.zeros_like(rows))
      return jax.lax.psum_scatter(rows, parallel.DATA_AXIS, scatter_dimension=0, tiled=True)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(parallel.DATA_AXIS), P()),
                            out_specs=P(parallel.DATA_AXIS))

    def take(arrays, index):
      return {k: sharded(v, index) for k, v in arrays.items()}

  def gather(arrays, batch):
    batch = dict(batch)
    batch.update(take(arrays, batch.pop("index")))
    return batch
  return gather


def augment_fn(spec: Spec):
  """(uint8 pixels (B, H, W, C), key) -> pixels: random crop after zero padding by
  data.augment_crop_padding, random left-right flip (data.augment_flip); None when both are
  off. Each example draws from the key folded with its row in the batch."""
  pad, flip = spec.augment_crop_padding, spec.augment_flip
  if not pad and not flip:
    return None

  def one(image, key):
    crop_key, flip_key = jax.random.split(key)
    h, w = image.shape[0], image.shape[1]
    if pad:
      padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
      top, left = jax.random.randint(crop_key, (2,), 0, 2 * pad + 1)
      image = jax.lax.dynamic_slice(padded, (top, left, 0), (h, w, image.shape[2]))
    if flip:
      image = jnp.where(jax.random.bernoulli(flip_key), image[:, ::-1], image)
    return image

  def augment(pixels, key):
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(pixels.shape[0]))
    return jax.vmap(one)(pixels, keys)
  return augment


def fed_eval(fn, mesh, scale: tuple, feed: Feed | None = None, quiet: bool = False):
  """An evaluation's jitted (variables, batch) -> rows, fed as the train step is: the batch's
  rows gathered from `feed` (when resident), then scaled by scale = (mean, std) (`Spec.scale`);
  one jit around both. Prints the time of its first call (its compilation) on process 0 unless
  quiet."""
  mean, std = scale
  fn = getattr(fn, "__wrapped__", fn)  # The function a jax.jit wraps: one jit around it all.

  def front(variables, batch, arrays):
    if feed is not None:
      batch = feed.gather(arrays, batch)
    return fn(variables, input_scaling.scale_batch(batch, mean, std))

  jitted = jax.jit(front, in_shardings=(parallel.replicated(mesh), parallel.batch_sharding(mesh),
                                        parallel.batch_sharding(mesh)),
                   out_shardings=parallel.replicated(mesh),
                   compiler_options=host.compiler_options())
  arrays = feed.arrays if feed is not None else {}
  first = []

  def run(variables, batch):
    if first:
      return jitted(variables, batch, arrays)
    t = time.perf_counter()
    out = jax.block_until_ready(jitted(variables, batch, arrays))
    first.append(True)
    if jax.process_index() == 0 and not quiet:
      print(f"first eval step (with compilation) took "
            f"{metrics_lib.format_duration(time.perf_counter() - t)}", flush=True)
    return out
  return run
