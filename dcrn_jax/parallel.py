"""Device mesh, shardings, host-local numpy batches -> global sharded jax.Arrays (in a thread).

Data parallelism over every device of every process: the batch is split along a `data` mesh axis
and parameters are replicated. Everything is `jax.jit` with explicit shardings (no pmap), so
the same code runs on one CPU, one GPU or many hosts.
"""

import queue as queue_lib
import threading
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dcrn_jax.errors import UserError

DATA_AXIS = "data"


def create_mesh() -> Mesh:
  """A 1-D mesh over all devices of all processes."""
  return Mesh(np.asarray(jax.devices()), (DATA_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over the `data` axis; other dimensions whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def local_batch_size(global_batch_size: int, mesh: Mesh, name: str = "batch_size") -> int:
  """This process's share of a global batch; an error unless it splits evenly over devices."""
  num_devices = mesh.devices.size
  if global_batch_size <= 0 or global_batch_size % num_devices:
    raise UserError(
        f"{name}={global_batch_size} must be a positive multiple of the {num_devices} devices "
        f"(global batch, split evenly); try --config.{name}="
        f"{max(num_devices, global_batch_size // num_devices * num_devices)}")
  return global_batch_size // jax.process_count()


def to_global(batch: dict, mesh: Mesh) -> dict:
  """Host-local numpy batch (this process's rows) -> global jax.Arrays sharded on `data`.

  Values that are global jax.Arrays already (made on the device) pass as they are."""
  sharding = batch_sharding(mesh)
  return {k: v if isinstance(v, jax.Array) else
          jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


class _Failed:
  """What the feeding thread hands over when its stream raised: the exception, re-raised by
  the consumer (so a UserError there is the same one line as on the main thread)."""

  def __init__(self, error: BaseException):
    self.error = error


_END = object()
_POLL_S = 0.1


def _put(queue: queue_lib.Queue, stop: threading.Event, item) -> bool:
  while not stop.is_set():
    try:
      queue.put(item, timeout=_POLL_S)
      return True
    except queue_lib.Full:
      continue
  return False


def _fill(batches, mesh, transform, queue, stop):
  """The feeding thread: no reference to its Prefetcher, which the consumer may drop."""
  try:
    for batch in batches:
      batch = to_global(batch, mesh)
      if transform is not None:
        batch = transform(batch)
      if not _put(queue, stop, batch):
        return
    _put(queue, stop, _END)
  except BaseException as e:  # pylint: disable=broad-except  # Handed to the main thread.
    _put(queue, stop, _Failed(e))
  finally:
    close = getattr(batches, "close", None)
    if close is not None:
      try:
        close()
      except ValueError:  # A generator still running elsewhere: nothing to do.
        pass


class Prefetcher:
  """Global batches made ahead of the step by a background thread.

  The thread runs the whole host pipeline (the source's iterator -> numpy -> `to_global`, whose
  transfer is asynchronous) and keeps up to `size` batches in a bounded queue, so the main
  thread only takes a ready batch and dispatches the step. An exception in the thread is raised
  again by `__next__` in the main thread; `close()` (or the end of a `with` block, or dropping
  the Prefetcher) stops the thread after the batch it is making.
  """

  def __init__(self, batches: Iterator[dict], mesh: Mesh, size: int = 2, transform=None):
    """transform: applied to each global batch in the thread (e.g. scaling on the device)."""
    self._queue = queue_lib.Queue(maxsize=max(size, 1))
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(
        target=_fill, args=(iter(batches), mesh, transform, self._queue, self._stop),
        name="dcrn_jax-feed", daemon=True)
    self._thread.start()

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    if self._done:
      raise StopIteration
    item = self._queue.get()
    if item is _END:
      self._done = True
      raise StopIteration
    if isinstance(item, _Failed):
      self._done = True
      raise item.error
    return item

  def close(self):
    """Stops the thread and waits for it (it finishes the batch it is making)."""
    self._stop.set()
    self._done = True
    self._thread.join()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    self._stop.set()


def prefetch_to_device(batches: Iterator[dict], mesh: Mesh, size: int = 2,
                       transform=None) -> Prefetcher:
  """Keeps `size` global batches ready ahead of the step, made by a background thread
  (`Prefetcher`; close it when done early). size 0 still runs the pipeline in the thread,
  one batch ahead."""
  return Prefetcher(batches, mesh, size, transform)


def own_rows(batches: Iterator[dict], process_index: int, process_count: int) -> Iterator[dict]:
  """This process's rows of every global batch, from a stream of whole global batches.

  Used with data.shard_by_process=False: every process reads the same global stream and keeps
  rows [p * n, (p + 1) * n), so the global batch does not depend on the number of processes.
  """
  for batch in batches:
    n = len(next(iter(batch.values()))) // process_count
    yield {k: v[process_index * n:(process_index + 1) * n] for k, v in batch.items()}
