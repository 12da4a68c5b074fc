"""Device mesh, shardings, and host-local numpy batches -> global sharded jax.Arrays.

Data parallelism over every device of every process: the batch is split along a `data` mesh axis
and parameters are replicated. Everything is `jax.jit` with explicit shardings (no pmap), so
the same code runs on one CPU, one GPU or many hosts.
"""

import collections
import itertools
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
  """Host-local numpy batch (this process's rows) -> global jax.Arrays sharded on `data`."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def prefetch_to_device(batches: Iterator[dict], mesh: Mesh, size: int = 2) -> Iterator[dict]:
  """Keeps `size` batches already transferred (transfers are asynchronous) ahead of the step."""
  queue = collections.deque()
  batches = iter(batches)
  for batch in itertools.islice(batches, size):
    queue.append(to_global(batch, mesh))
  while queue:
    yield queue.popleft()
    for batch in itertools.islice(batches, 1):
      queue.append(to_global(batch, mesh))


def own_rows(batches: Iterator[dict], process_index: int, process_count: int) -> Iterator[dict]:
  """This process's rows of every global batch, from a stream of whole global batches.

  Used with data.shard_by_process=False: every process reads the same global stream and keeps
  rows [p * n, (p + 1) * n), so the global batch does not depend on the number of processes.
  """
  for batch in batches:
    n = len(next(iter(batch.values()))) // process_count
    yield {k: v[process_index * n:(process_index + 1) * n] for k, v in batch.items()}
